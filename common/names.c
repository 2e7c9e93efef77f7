#include "common/names.h"
#include "common/engine_kinds.h"

#include <string.h>

static const char *const agent_states[] = {"unknown", "pending", "online", "stale", "lost"};
static const char *const task_kinds[] = {"unknown", "backup", "restore", "log",
                                         "verify",  "copy",   "drill",   "expire"};
static const char *const task_states[] = {"unknown", "queued",    "running", "succeeded",
                                          "failed",  "cancelled", "partial"};
static const char *const backup_types[] = {"unknown", "full", "incremental", "snapshot"};

#define NAME(table, v)                                                                             \
    ((v) >= 0 && (size_t)(v) < sizeof(table) / sizeof(table[0]) ? table[v] : "unknown")

const char *tm_agent_state_name(int state)
{
    return NAME(agent_states, state);
}

const char *tm_target_kind_name(int kind)
{
    /* Kinds are named once, in the kind table. */
    const tm_engine_kind *k = tm_engine_kind_by_kind(kind);
    return k != NULL ? k->name : "unknown";
}

const char *tm_task_kind_name(int kind)
{
    return NAME(task_kinds, kind);
}

const char *tm_task_state_name(int state)
{
    return NAME(task_states, state);
}

const char *tm_backup_type_name(int type)
{
    return NAME(backup_types, type);
}

static int parse(const char *const *table, size_t n, const char *s)
{
    for (size_t i = 1; s != NULL && i < n; i++) {
        if (strcmp(table[i], s) == 0) {
            return (int)i;
        }
    }
    return 0;
}

int tm_agent_state_parse(const char *s)
{
    return parse(agent_states, sizeof(agent_states) / sizeof(agent_states[0]), s);
}

int tm_target_kind_parse(const char *s)
{
    const tm_engine_kind *k = tm_engine_kind_by_name(s);
    return k != NULL ? k->kind : 0;
}
