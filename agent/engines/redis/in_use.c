/*
 * in_use.c - see in_use.h.
 */
#include "agent/engines/redis/in_use.h"
#include "agent/restore_root.h"

int tm_redis_in_use(const char *dir, char *why, size_t cap)
{
    static const char *const comms[] = {"redis-server", NULL};
    return tm_restore_cwd_busy(dir, comms, NULL, why, cap);
}
