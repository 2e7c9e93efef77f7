/*
 * log_status.c - what the PostgreSQL engine tells agent/log_report.c: the
 * runs of consecutive WAL segments per timeline in a repository's listing
 * (tm_engine.log_ranges), and the server's own view of archiving from
 * pg_stat_archiver and pg_wal/archive_status (tm_engine.log_status).
 */
#include "agent/engines/postgres/pg.h"
#include "agent/engines/postgres/wal_name.h"
#include "agent/repo/repo_log.h"

#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct seg {
    uint32_t tli;
    uint64_t segno;
    char name[TM_WAL_NAME_MAX];
    int64_t mtime;
    uint64_t bytes;
} seg;

static int seg_cmp(const void *a, const void *b)
{
    const seg *x = a, *y = b;
    if (x->tli != y->tli) {
        return x->tli < y->tli ? -1 : 1;
    }
    return x->segno < y->segno ? -1 : x->segno > y->segno ? 1 : 0;
}

/* Runs of consecutive segments (chain = timeline, positions = segment
 * names). */
static size_t build_ranges(seg *segs, size_t n, tm_log_range *out)
{
    size_t nr = 0;
    qsort(segs, n, sizeof(*segs), seg_cmp);
    for (size_t i = 0; i < n; i++) {
        int extends = nr > 0 && out[nr - 1].chain == segs[i].tli && i > 0 &&
                      segs[i - 1].segno + 1 == segs[i].segno;
        if (i > 0 && segs[i - 1].tli == segs[i].tli && segs[i - 1].segno == segs[i].segno) {
            continue; /* a .partial beside its segment */
        }
        if (!extends) {
            tm_log_range *r = &out[nr++];
            memset(r, 0, sizeof(*r));
            r->chain = segs[i].tli;
            snprintf(r->start, sizeof(r->start), "%s", segs[i].name);
            r->start_time = segs[i].mtime;
        }
        tm_log_range *r = &out[nr - 1];
        snprintf(r->end, sizeof(r->end), "%s", segs[i].name);
        if (segs[i].mtime > r->end_time) {
            r->end_time = segs[i].mtime;
        }
        r->objects++;
        r->bytes += segs[i].bytes;
    }
    return nr;
}

int tm_pg_log_ranges(const tm_target_conf *t, const tm_log_item *items, size_t n,
                     tm_log_range **out, size_t *nout, tm_err *err)
{
    (void)t;
    *out = NULL;
    *nout = 0;
    seg *segs = calloc(n + 1, sizeof(*segs));
    tm_log_range *ranges = calloc(n + 1, sizeof(*ranges));
    if (segs == NULL || ranges == NULL) {
        free(segs);
        free(ranges);
        return tm_err_set(err, TM_ENOMEM, "log report: out of memory");
    }
    size_t ns = 0;
    for (size_t k = 0; k < n; k++) {
        const char *base = strrchr(items[k].rel, '/');
        base = base ? base + 1 : items[k].rel;
        tm_wal_name w;
        /* Only complete copies count: a sidecar is written last. */
        if (!items[k].has_meta || !items[k].has_object || tm_wal_name_parse(base, &w) != 0 ||
            (w.kind != TM_WAL_SEGMENT && w.kind != TM_WAL_PARTIAL)) {
            continue;
        }
        segs[ns].tli = w.tli;
        segs[ns].segno = tm_wal_segno(&w, TM_WAL_SEG_SIZE_DEFAULT);
        snprintf(segs[ns].name, sizeof(segs[ns].name), "%.24s", base);
        segs[ns].mtime = items[k].mtime;
        segs[ns].bytes = items[k].stored_size;
        ns++;
    }
    *nout = build_ranges(segs, ns, ranges);
    *out = ranges;
    free(segs);
    return TM_OK;
}

/* WAL files PostgreSQL has finished and not yet had archived: the queue
 * that grows when archiving falls behind (what an RPO alert watches). */
static uint32_t archive_queue(const tm_target_conf *tc)
{
    const tm_pg_target_conf *pg = tm_pg_target(tc);
    if (pg == NULL || pg->pgdata == NULL) {
        return 0;
    }
    char dir[4096];
    snprintf(dir, sizeof(dir), "%s/pg_wal/archive_status", pg->pgdata);
    DIR *d = opendir(dir);
    if (d == NULL) {
        return 0;
    }
    uint32_t n = 0;
    struct dirent *e;
    while ((e = readdir(d)) != NULL) {
        size_t l = strlen(e->d_name);
        if (l > 6 && strcmp(e->d_name + l - 6, ".ready") == 0) {
            n++;
        }
    }
    closedir(d);
    return n;
}

/* pg_stat_archiver of the target's server. A server that cannot be asked
 * is reported as such (st->readable = 0), so the coordinator tells
 * "archiving fails" from "cannot see". */
void tm_pg_log_status(const tm_target_conf *tc, tm_log_status *st)
{
    st->pending_count = archive_queue(tc);
    tm_pg_conn *c = NULL;
    tm_err err = {0};
    char *v = NULL;
    if (tm_pg_connect(tm_pg_target(tc), NULL, 0, NULL, &c, &err) != TM_OK ||
        tm_pg_query_value(
            c,
            "SELECT archived_count || '|' || coalesce(last_archived_wal, '') || '|' "
            "|| coalesce((extract(epoch FROM last_archived_time) * 1000)::bigint, 0) || '|' "
            "|| failed_count || '|' || coalesce(last_failed_wal, '') || '|' || "
            "coalesce((extract(epoch FROM last_failed_time) * 1000)::bigint, 0) "
            "FROM pg_stat_archiver",
            &v, &err) != TM_OK) {
        st->readable = 0;
        snprintf(st->error, sizeof(st->error), "%s", err.msg);
        tm_pg_close(c);
        return;
    }
    tm_pg_close(c);
    /* Fields may be empty (never archived / never failed): parse by hand. */
    char *f[6] = {0};
    char *p = v;
    for (int i = 0; i < 6; i++) {
        char *bar = strchr(p, '|');
        if (bar != NULL) {
            *bar = '\0';
        }
        f[i] = p;
        p = bar ? bar + 1 : p + strlen(p);
    }
    st->readable = 1;
    st->shipped_count = strtoull(f[0], NULL, 10);
    snprintf(st->last_shipped, sizeof(st->last_shipped), "%.63s", f[1]);
    st->last_shipped_ms = strtoll(f[2], NULL, 10);
    st->failed_count = strtoull(f[3], NULL, 10);
    snprintf(st->last_failed, sizeof(st->last_failed), "%.63s", f[4]);
    st->last_failed_ms = strtoll(f[5], NULL, 10);
    free(v);
}
