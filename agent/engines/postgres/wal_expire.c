/*
 * wal_expire.c - which archived WAL files retention may delete
 * (tm_pg_log_before, pg.h). Pure: the cutoff backup's manifest and a file
 * name in, a yes/no out.
 *
 * The cutoff backup is the oldest backup that keeps the PITR window; a
 * restore from it (or any later backup) replays WAL from its start segment
 * on, so every WAL file of its timeline before that segment is needed by
 * nobody: older retained backups carry their own WAL (start to stop) inside
 * the backup. History files are tiny and name how timelines branched: kept.
 */
#include "agent/engines/postgres/pg.h"
#include "agent/engines/postgres/wal_name.h"

#include <stdlib.h>
#include <string.h>

static const char *info(const Tidemark__Manifest *m, const char *key)
{
    for (size_t i = 0; m != NULL && i < m->n_engine_info; i++) {
        if (m->engine_info[i]->key != NULL && strcmp(m->engine_info[i]->key, key) == 0) {
            return m->engine_info[i]->value;
        }
    }
    return NULL;
}

/* The start segment of the cutoff backup as a parsed WAL name. */
static int cutoff_start(const Tidemark__Manifest *m, const Tidemark__ExpireSpec *spec,
                        tm_wal_name *out)
{
    const char *wal = info(m, "start_wal");
    if (wal != NULL && tm_wal_name_parse(wal, out) == 0 && out->kind == TM_WAL_SEGMENT) {
        return 0;
    }
    const char *lsn_s = info(m, "start_lsn"), *tli_s = info(m, "timeline");
    const char *seg_s = info(m, "wal_segment_size");
    uint64_t seg_size = seg_s != NULL ? strtoull(seg_s, NULL, 10) : TM_WAL_SEG_SIZE_DEFAULT;
    uint32_t tli = tli_s != NULL ? (uint32_t)strtoul(tli_s, NULL, 10) : 0;
    if (lsn_s == NULL && spec != NULL && spec->log_cutoff_start_position != NULL &&
        spec->log_cutoff_start_position[0] && spec->has_log_cutoff_chain) {
        lsn_s = spec->log_cutoff_start_position;
        tli = spec->log_cutoff_chain;
        seg_size = TM_WAL_SEG_SIZE_DEFAULT;
    }
    uint64_t lsn = 0;
    if (lsn_s == NULL || tli == 0 || !tm_wal_valid_seg_size(seg_size) ||
        tm_pg_lsn_parse(lsn_s, &lsn) != TM_OK) {
        return -1;
    }
    char name[25];
    tm_wal_seg_name(tli, lsn / seg_size, seg_size, name);
    return tm_wal_name_parse(name, out);
}

int tm_pg_log_before(const Tidemark__Manifest *cutoff, const Tidemark__ExpireSpec *spec,
                     const char *rel)
{
    tm_wal_name start, f;
    const char *base = rel != NULL ? strrchr(rel, '/') : NULL;
    base = base != NULL ? base + 1 : rel;
    if (base == NULL || cutoff_start(cutoff, spec, &start) != 0 ||
        tm_wal_name_parse(base, &f) != 0) {
        return 0; /* not sure: keep */
    }
    if (f.kind == TM_WAL_HISTORY || f.tli != start.tli) {
        return 0;
    }
    /* Same timeline: names order like segment numbers. */
    return f.log < start.log || (f.log == start.log && f.seg < start.seg);
}
