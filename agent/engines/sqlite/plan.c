/*
 * plan.c - what a restore to a time starts from: a snapshot backup, or the
 * base snapshot a chain (a generation of the shipped WAL) begins with; and
 * which chain is replayed from where.
 *
 * The chains come from the log's object names (segment.h), read from every
 * repository that lists: a chain's base ("...db" + "...gen", the
 * description naming its time) and its segments (named with the time of
 * their last commit). The rule, for a time T (0 = the latest):
 *   - N = the newest chain whose base was taken at or before T;
 *   - a snapshot backup taken at or before T that recorded its place on
 *     chain c >= N: the snapshot, then chain c replayed from there (the
 *     shortest replay), kept only when the replay provably passed the
 *     snapshot's own point (tm_sqlite_plan_passed), else redone from:
 *   - otherwise chain N from its own base;
 *   - otherwise (no shipped log reaches T) the snapshot alone.
 * A snapshot of an older chain would stop at that chain's end, short of T:
 * a new generation means the shipper could not prove continuity, so only
 * the newer chain's base is a sound start.
 */
#include "agent/engines/sqlite/sqlite.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "agent/engines/sqlite/segment.h"
#include "agent/repo/repo_log.h"
#include "agent/result_kv.h"
#include "common/log.h"

/* The newest chain with a whole base at or before until_ms (0 = any). */
static uint32_t newest_chain(char *const *names, size_t n, int64_t until_ms, int64_t *base_ms)
{
    uint32_t best = 0;
    *base_ms = 0;
    for (size_t i = 0; i < n; i++) {
        tm_sqlite_name g;
        if (tm_sqlite_name_parse(names[i], &g) != TM_OK || g.kind != 'g' || g.chain <= best ||
            (until_ms > 0 && g.time_ms > until_ms)) {
            continue;
        }
        /* Its database object too: a base is the pair. */
        for (size_t k = 0; k < n; k++) {
            tm_sqlite_name d;
            if (tm_sqlite_name_parse(names[k], &d) == TM_OK && d.kind == 'd' &&
                d.chain == g.chain) {
                best = g.chain;
                *base_ms = g.time_ms;
                break;
            }
        }
    }
    return best;
}

static int cmp_name(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

int tm_sqlite_log_names_in(tm_repo_set *rs, const char *target, char ***out, size_t *nout,
                           tm_err *err)
{
    *out = NULL;
    *nout = 0;
    size_t listed = 0, cap = 0;
    char **v = NULL;
    size_t nv = 0;
    int rc = TM_OK;
    tm_err last = {0};
    /* The union of every repository's listing: an object one repository
     * misses may be in another (a fetch tries them in order). */
    for (size_t r = 0; rc == TM_OK && r < tm_repo_set_count(rs); r++) {
        tm_log_item *items = NULL;
        size_t n = 0;
        if (tm_log_scan(rs, r, target, &items, &n, &last) != TM_OK) {
            tm_warn("sqlite", "event=log_list_failed repo=%s msg=\"%s\"", tm_repo_set_name(rs, r),
                    last.msg);
            continue;
        }
        listed++;
        for (size_t i = 0; rc == TM_OK && i < n; i++) {
            if (!items[i].has_meta || !items[i].has_object) {
                continue; /* not stored whole */
            }
            if (nv == cap) {
                cap = cap ? cap * 2 : 64;
                char **nn = realloc(v, cap * sizeof(*nn));
                if (nn == NULL) {
                    rc = tm_err_set(err, TM_ENOMEM, "out of memory");
                    break;
                }
                v = nn;
            }
            if ((v[nv] = strdup(items[i].rel)) == NULL) {
                rc = tm_err_set(err, TM_ENOMEM, "out of memory");
                break;
            }
            nv++;
        }
        tm_log_items_free(items, n);
    }
    if (rc == TM_OK && listed == 0) {
        *err = last;
        rc = tm_err_prefix(err, "no repository could list the log of target %s", target);
    }
    if (rc != TM_OK) {
        tm_sqlite_names_free(v, nv);
        return rc;
    }
    /* One name per object held anywhere: sorted (names sort in shipping
     * order), then the copies of other repositories dropped. A sort, not a
     * comparison of every pair: a day's chain at a 1 s interval is 86,400
     * segments. */
    if (nv > 1) {
        qsort(v, nv, sizeof(*v), cmp_name);
        size_t w = 1;
        for (size_t i = 1; i < nv; i++) {
            if (strcmp(v[i], v[w - 1]) == 0) {
                free(v[i]);
            } else {
                v[w++] = v[i];
            }
        }
        nv = w;
    }
    *out = v;
    *nout = nv;
    return TM_OK;
}

int tm_sqlite_log_names(const tm_agent_conf *conf, const char *target, char ***out, size_t *nout,
                        tm_err *err)
{
    *out = NULL;
    *nout = 0;
    tm_repo_set *rs = NULL;
    int rc = tm_repo_set_open(&rs, conf, 0, err);
    if (rc == TM_OK) {
        rc = tm_sqlite_log_names_in(rs, target, out, nout, err);
    }
    tm_repo_set_free(rs);
    return rc;
}

void tm_sqlite_names_free(char **names, size_t n)
{
    for (size_t i = 0; names != NULL && i < n; i++) {
        free(names[i]);
    }
    free(names);
}

void tm_sqlite_plan_make(char *const *names, size_t n, const Tidemark__Manifest *snap,
                         int64_t until_ms, tm_sqlite_plan *p)
{
    memset(p, 0, sizeof(*p));
    int64_t base_ms = 0;
    uint32_t newest = newest_chain(names, n, until_ms, &base_ms);
    p->fallback_chain = newest;
    p->base_ms = base_ms;
    /* log_exact: the WAL position of the snapshot's own read transaction;
     * log_start: the shipper's saved position before it began, a start
     * that is sound only once the replay has passed the snapshot's point
     * (tm_sqlite_plan_passed). */
    const char *chain_s = snap != NULL ? tm_info_get(snap, "log_chain") : NULL;
    const char *exact = snap != NULL ? tm_info_get(snap, "log_exact") : NULL;
    const char *start = snap != NULL ? tm_info_get(snap, "log_start") : NULL;
    const char *stop = snap != NULL ? tm_info_get(snap, "stop_ms") : NULL;
    uint32_t snap_chain = chain_s != NULL ? (uint32_t)strtoul(chain_s, NULL, 10) : 0;
    p->snap_stop_ms = stop != NULL ? strtoll(stop, NULL, 10) : 0;
    if (snap != NULL && snap_chain != 0 && snap_chain >= newest &&
        ((exact != NULL && exact[0] != '\0') || (start != NULL && p->snap_stop_ms > 0))) {
        p->from_snapshot = 1;
        p->chain = snap_chain;
        p->exact = exact != NULL && exact[0] != '\0';
        snprintf(p->from, sizeof(p->from), "%s", p->exact ? exact : start);
    } else if (newest != 0) {
        p->from_snapshot = 0;
        p->chain = newest;
    } else {
        p->from_snapshot = snap != NULL;
    }
}

/* Why this holds: the shipper reads a tick's commit time while it holds
 * the write lock (ship.c). A tick stamped after the snapshot's stop_ms held
 * the lock at a moment after its read transaction began, so no commit fell
 * between that tick's lock and the snapshot: the tick shipped every commit
 * the snapshot holds. Applying through it passes the snapshot's point; a
 * replay that applied nothing leaves the snapshot as it was. Anything in
 * between may stop short of it, with pages of two moments. */
int tm_sqlite_plan_passed(const tm_sqlite_plan *p, uint64_t frames, int64_t last_ms)
{
    return !p->from_snapshot || p->exact || frames == 0 || last_ms > p->snap_stop_ms;
}
