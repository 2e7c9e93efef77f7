/*
 * log.c - the SQLite engine's log hooks (see log.h).
 */
#include "agent/engines/sqlite/log.h"
#include "agent/engines/sqlite/config.h"
#include "agent/engines/sqlite/segment.h"
#include "agent/engines/sqlite/ship.h"
#include "agent/repo/repo_log.h"
#include "agent/result_kv.h"

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

/* 1 when segment n follows the run that ended at (wal, last). */
static int follows(uint32_t wal, uint64_t last, const tm_sqlite_name *n)
{
    return (n->wal == wal && n->first == last + 1) || (n->wal == wal + 1 && n->first == 1);
}

int tm_sqlite_log_ranges(const tm_target_conf *t, const tm_log_item *items, size_t n,
                         tm_log_range **out, size_t *nout, tm_err *err)
{
    (void)t;
    *out = NULL;
    *nout = 0;
    tm_log_range *v = NULL;
    size_t nv = 0;
    uint32_t wal = 0;
    uint64_t last = 0;
    int known = 0; /* wal/last hold where the current run ends */
    for (size_t i = 0; i < n; i++) {
        tm_sqlite_name nm;
        if (!items[i].has_meta || !items[i].has_object ||
            tm_sqlite_name_parse(items[i].rel, &nm) != TM_OK) {
            continue;
        }
        tm_log_range *r = nv > 0 ? &v[nv - 1] : NULL;
        /* Name order: a chain's base database, its description, then its
         * segments. A run ends at another chain or at a segment that does
         * not follow the one before (a hole). */
        if (r == NULL || r->chain != nm.chain ||
            (nm.kind == 'w' && known && !follows(wal, last, &nm))) {
            tm_log_range *nr = realloc(v, (nv + 1) * sizeof(*v));
            if (nr == NULL) {
                free(v);
                return tm_err_set(err, TM_ENOMEM, "log ranges");
            }
            v = nr;
            r = &v[nv++];
            memset(r, 0, sizeof(*r));
            r->chain = nm.chain;
            known = 0;
        }
        if (nm.kind == 'g' || nm.kind == 'w') {
            if (!known) {
                tm_sqlite_pos_fmt(r->start, sizeof(r->start), nm.wal,
                                  nm.kind == 'g' ? nm.last : nm.first - 1);
                r->start_time = nm.time_ms / 1000;
            }
            known = 1;
            wal = nm.wal;
            last = nm.last;
            tm_sqlite_pos_fmt(r->end, sizeof(r->end), nm.wal, nm.last);
            if (nm.time_ms / 1000 > r->end_time) {
                r->end_time = nm.time_ms / 1000;
            }
        }
        r->bytes += items[i].stored_size;
        r->objects++;
    }
    /* A run of only a base database (its description not stored yet)
     * has no position: not a run yet. */
    size_t k = 0;
    for (size_t i = 0; i < nv; i++) {
        if (v[i].start[0] != '\0') {
            v[k++] = v[i];
        }
    }
    if (k == 0) {
        free(v);
        v = NULL;
    }
    *out = v;
    *nout = k;
    return TM_OK;
}

void tm_sqlite_log_status(const tm_target_conf *t, tm_log_status *st)
{
    const tm_sqlite_target *c = tm_sqlite_target_of(t);
    struct stat sb;
    if (c != NULL && c->path[0] != '\0' && !c->glob && stat(c->path, &sb) != 0) {
        st->readable = 0;
        snprintf(st->error, sizeof(st->error), "database file %.400s: %s", c->path,
                 strerror(errno));
        return;
    }
    st->readable = 1;
    tm_sqlite_ship_note n;
    if (!tm_sqlite_ship_note_get(t->name, &n)) {
        return;
    }
    /* A new chain is not a failure (shipping goes on from a fresh base):
     * it is told as a chain reset. Upload failures the shipper's own loop
     * keeps going through (so the daemon did not count them) are. */
    st->chain_resets = n.resets;
    st->last_chain_reset_ms = n.last_reset_ms;
    snprintf(st->chain_reset, sizeof(st->chain_reset), "%s", n.reset_why);
    snprintf(st->chain_reset_from, sizeof(st->chain_reset_from), "%s", n.reset_pos);
    st->failed_count += n.upload_failures;
    if (n.last_upload_failure_ms > 0 && n.last_upload_failure_ms >= st->last_failed_ms) {
        st->last_failed_ms = n.last_upload_failure_ms;
        snprintf(st->last_failure, sizeof(st->last_failure), "%s", n.upload_why);
    }
    if (st->pending_count == 0) {
        st->pending_count = n.pending;
        st->pending_bytes = n.pending_bytes;
    }
}

int tm_sqlite_log_before(const Tidemark__Manifest *cutoff, const Tidemark__ExpireSpec *spec,
                         const char *rel)
{
    tm_sqlite_name nm;
    if (tm_sqlite_name_parse(rel, &nm) != TM_OK) {
        return 0; /* not ours: kept */
    }
    uint64_t chain = 0;
    const char *v = tm_info_get(cutoff, "log_chain");
    char *end = NULL;
    if (v != NULL && v[0] != '\0') {
        errno = 0;
        chain = strtoull(v, &end, 10);
        if (errno != 0 || *end != '\0' || chain > UINT32_MAX) {
            chain = 0;
        }
    }
    if (chain == 0 && spec != NULL && spec->has_log_cutoff_chain) {
        chain = spec->log_cutoff_chain;
    }
    /* chain 0: the cutoff snapshot was taken before anything was shipped,
     * or says nothing: every chain is kept. */
    return chain != 0 && nm.chain < (uint32_t)chain;
}
