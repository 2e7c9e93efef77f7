/*
 * engine_kinds.c - the target kind table (see engine_kinds.h).
 */
#include "common/engine_kinds.h"

#include <pthread.h>
#include <stdio.h>
#include <string.h>

#include "tidemark.pb-c.h"

#define B(t) (1u << (t))

static const tm_engine_kind kinds[] = {
    {"postgres", TIDEMARK__TARGET_KIND__POSTGRES,
     B(TIDEMARK__BACKUP_TYPE__FULL) | B(TIDEMARK__BACKUP_TYPE__INCREMENTAL), NULL},
    /* An RDB snapshot every 6 hours unless the policy says otherwise. */
    {"redis", TIDEMARK__TARGET_KIND__REDIS, B(TIDEMARK__BACKUP_TYPE__SNAPSHOT), "0 */6 * * *"},
    /* An online snapshot daily at 03:00 UTC; the WAL is shipped in between. */
    {"sqlite", TIDEMARK__TARGET_KIND__SQLITE, B(TIDEMARK__BACKUP_TYPE__SNAPSHOT), "0 3 * * *"},
    /* An off-provider SQL dump per database daily at 03:00 UTC: the
     * provider's own point-in-time recovery covers the time between. */
    {"turso", TIDEMARK__TARGET_KIND__TURSO, B(TIDEMARK__BACKUP_TYPE__SNAPSHOT), "0 3 * * *"},
    /* Managed PostgreSQL: a logical dump of every database daily at 03:00
     * UTC unless the policy says otherwise; no log shipping. */
    {"pg_dump", TIDEMARK__TARGET_KIND__PG_DUMP, B(TIDEMARK__BACKUP_TYPE__SNAPSHOT), "0 3 * * *",
     true},
};

#define N_KINDS (sizeof(kinds) / sizeof(kinds[0]))

const tm_engine_kind *tm_engine_kind_by_name(const char *name)
{
    for (size_t i = 0; name != NULL && i < N_KINDS; i++) {
        if (strcmp(kinds[i].name, name) == 0) {
            return &kinds[i];
        }
    }
    return NULL;
}

const tm_engine_kind *tm_engine_kind_by_kind(int kind)
{
    for (size_t i = 0; i < N_KINDS; i++) {
        if (kinds[i].kind == kind) {
            return &kinds[i];
        }
    }
    return NULL;
}

const tm_engine_kind *tm_engine_kinds(size_t *n)
{
    *n = N_KINDS;
    return kinds;
}

bool tm_engine_kind_takes(const tm_engine_kind *k, int type)
{
    return k != NULL && type >= 0 && type < 32 && (k->backups & B(type)) != 0;
}

static char list_or[256], list_comma[256];
static pthread_once_t list_once = PTHREAD_ONCE_INIT;

static void build_lists(void)
{
    size_t a = 0, b = 0;
    for (size_t i = 0; i < N_KINDS; i++) {
        const char *sep = i == 0 ? "" : i + 1 == N_KINDS ? " or " : ", ";
        a += (size_t)snprintf(list_or + a, sizeof(list_or) - a, "%s%s", sep, kinds[i].name);
        b += (size_t)snprintf(list_comma + b, sizeof(list_comma) - b, "%s%s", i ? ", " : "",
                              kinds[i].name);
    }
}

const char *tm_engine_kind_list(bool last_or)
{
    pthread_once(&list_once, build_lists);
    return last_or ? list_or : list_comma;
}
