/*
 * drill_checks.c - the drill's check list and teardown (drill_checks.h).
 */
#include "agent/drill_checks.h"

#include <errno.h>
#include <ftw.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <unistd.h>

#include "common/log.h"

void tm_drill_check_add(tm_drill_checks *d, const char *name, int ok, const char *detail,
                        uint64_t ms)
{
    detail = detail != NULL ? detail : "";
    if (!ok && !d->failed) {
        d->failed = 1;
        snprintf(d->first, sizeof(d->first), "check %.160s failed: %.300s", name, detail);
    }
    tm_info("drill", "event=check name=\"%s\" ok=%d ms=%" PRIu64 " detail=\"%.200s\"", name, ok, ms,
            detail);
    Tidemark__DrillCheck *c = d->n < TM_DRILL_CHECKS_MAX ? malloc(sizeof(*c)) : NULL;
    if (c == NULL) {
        return;
    }
    tidemark__drill_check__init(c);
    c->name = strdup(name);
    c->detail = strdup(detail);
    c->has_ok = c->has_duration_ms = 1;
    c->ok = ok;
    c->duration_ms = ms;
    d->c[d->n++] = c;
}

void tm_drill_checks_move(tm_drill_checks *d, Tidemark__DrillResult *res)
{
    if (d->n > 0 && (res->checks = malloc(d->n * sizeof(*res->checks))) != NULL) {
        memcpy(res->checks, d->c, d->n * sizeof(*res->checks));
        res->n_checks = d->n;
    } else {
        for (size_t i = 0; i < d->n; i++) {
            tidemark__drill_check__free_unpacked(d->c[i], NULL);
        }
    }
    d->n = 0;
}

int tm_drill_value_true(const char *v)
{
    return v != NULL && strcasecmp(v, "f") != 0 && strcasecmp(v, "false") != 0 &&
           strcmp(v, "0") != 0;
}

static int rm_entry(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
    (void)st;
    (void)flag;
    (void)ftw;
    return remove(path) != 0 && errno != ENOENT ? -1 : 0;
}

int tm_drill_rmtree(const char *dir)
{
    if (nftw(dir, rm_entry, 16, FTW_DEPTH | FTW_PHYS) == 0 || access(dir, F_OK) != 0) {
        return 0;
    }
    return -1;
}
