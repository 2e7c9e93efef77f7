/*
 * aof_truncate.c - restore a multi-part AOF to a time (see aof_truncate.h).
 */
#include "agent/engines/redis/aof_truncate.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "agent/engines/redis/aof_resp.h"
#include "agent/engines/redis/rdb_check.h"

#define CHUNK (1 << 16)

typedef struct cut_ctx {
    int64_t target;
    int64_t last_ts;  /* the newest annotation passed */
    int64_t first_ts; /* the first annotation (a base's time); -1 = none */
    int stop;         /* 1 = an annotation newer than the target */
    uint64_t stop_at; /* its first byte */
    int64_t stop_ts;
    int in_multi;
    uint64_t multi_start;
    uint64_t annotations;
} cut_ctx;

static int on_unit(void *arg, const tm_aof_unit *u, tm_err *err)
{
    (void)err;
    cut_ctx *c = arg;
    if (u->kind == TM_AOF_UNIT_ANNOTATION) {
        if (u->ts < 0) {
            return 0;
        }
        if (c->first_ts < 0) {
            c->first_ts = u->ts;
        }
        if (c->target >= 0 && u->ts > c->target) {
            c->stop = 1;
            c->stop_at = u->start;
            c->stop_ts = u->ts;
            return 1;
        }
        c->last_ts = u->ts;
        c->annotations++;
        return 0;
    }
    if (u->multi) {
        c->in_multi = 1;
        c->multi_start = u->start;
    } else if (u->exec) {
        c->in_multi = 0;
    }
    return 0;
}

/* Stream one source to the sink through the scanner (or the RDB checker).
 * *end = how many bytes of it were kept. */
typedef struct one_result {
    uint64_t kept;
    uint64_t torn;
    uint64_t multi_cut;
    int stop;
} one_result;

static int copy_one(const tm_aof_source *src, int rdb, int may_cut, cut_ctx *c,
                    const tm_aof_sink *sink, one_result *out, tm_err *err)
{
    memset(out, 0, sizeof(*out));
    static __thread char buf[CHUNK];
    tm_aof_scan *scan = NULL;
    tm_rdb_check *check = NULL;
    int rc = rdb ? tm_rdb_check_new(&check, err) : tm_aof_scan_new(&scan, 0, err);
    if (rc != 0) {
        return rc;
    }
    if ((rc = sink->open(sink->arg, src->name, err)) != 0) {
        goto out;
    }
    uint64_t written = 0;
    for (;;) {
        size_t got = 0;
        if ((rc = src->read(src->arg, buf, sizeof(buf), &got, err)) != 0) {
            tm_err_prefix(err, "read %s", src->name);
            break;
        }
        if (got == 0) {
            break;
        }
        size_t take = got;
        if (rdb) {
            rc = tm_rdb_check_feed(check, buf, got, err);
        } else {
            uint64_t at = tm_aof_scan_offset(scan);
            rc = tm_aof_scan_feed(scan, buf, got, on_unit, c, err);
            if (rc > 0) {
                /* Stopped by a time: keep nothing from the annotation on. */
                take = (size_t)(c->stop_at > at ? c->stop_at - at : 0);
                rc = 0;
            }
        }
        if (rc != 0) {
            tm_err_prefix(err, "%s", src->name);
            break;
        }
        if (take > 0 && (rc = sink->write(sink->arg, buf, take, err)) != 0) {
            break;
        }
        written += take;
        if (c->stop) {
            break;
        }
    }
    if (rc == 0) {
        /* A stopping annotation may have begun in an earlier piece. */
        uint64_t keep = c->stop && c->stop_at < written ? c->stop_at : written;
        if (rdb) {
            rc = tm_rdb_check_finish(check, err);
            if (rc != 0) {
                tm_err_prefix(err, "base %s", src->name);
            }
        } else if (!c->stop && tm_aof_scan_partial(scan)) {
            /* A torn tail: the last complete unit is where it ends. */
            keep = tm_aof_scan_complete(scan);
            out->torn = written - keep;
            if (!may_cut) {
                rc = tm_err_set(err, TM_ECORRUPT,
                                "base %s ends inside a command at %" PRIu64 " (torn)", src->name,
                                keep);
            }
        }
        if (rc == 0 && !rdb && c->in_multi && may_cut) {
            /* The cut (or the end) falls inside MULTI ... EXEC: keep the
             * transaction whole or not at all. */
            out->multi_cut = keep - c->multi_start;
            keep = c->multi_start;
            c->in_multi = 0;
        }
        if (rc == 0 && keep < written) {
            rc = sink->truncate(sink->arg, keep, err);
        }
        out->kept = keep;
        out->stop = c->stop || out->torn > 0 || out->multi_cut > 0;
    }
    int crc = sink->close(sink->arg, rc == 0 ? err : NULL);
    if (rc == 0) {
        rc = crc;
    }
out:
    tm_aof_scan_free(scan);
    tm_rdb_check_free(check);
    return rc;
}

static int is_rdb_name(const char *name)
{
    size_t n = strlen(name);
    return n > 4 && strcmp(name + n - 4, ".rdb") == 0;
}

int tm_aof_truncate(const tm_aof_truncate_opts *o, const tm_aof_source *base,
                    const tm_aof_source *incrs, size_t nincrs, const tm_aof_sink *sink,
                    tm_aof_truncate_result *res, tm_err *err)
{
    memset(res, 0, sizeof(*res));
    if (o->base_ts > 0 && o->base_ts > o->target) {
        return tm_err_set(err, TM_EINVAL,
                          "the base %s is from %" PRId64 ", after the target %" PRId64
                          ": restore from an older base",
                          base != NULL ? base->name : "?", o->base_ts, o->target);
    }
    tm_aof_manifest *m = NULL;
    int rc = tm_aof_manifest_new(&m, err);
    if (rc != 0) {
        return rc;
    }
    cut_ctx c = {.target = o->target, .first_ts = -1};
    one_result one;
    if (base != NULL) {
        /* The base is kept whole: no cut, but an AOF base's first annotation
         * (the rewrite's fork) must not be after the target. */
        cut_ctx bc = {.target = -1, .first_ts = -1};
        int rdb = is_rdb_name(base->name);
        if ((rc = tm_aof_manifest_add(m, base->name, base->seq, TM_AOF_BASE, err)) != 0 ||
            (rc = copy_one(base, rdb, 0, &bc, sink, &one, err)) != 0) {
            goto out;
        }
        if (bc.first_ts > o->target) {
            rc = tm_err_set(err, TM_EINVAL,
                            "the base %s is from %" PRId64 ", after the target %" PRId64
                            ": restore from an older base",
                            base->name, bc.first_ts, o->target);
            goto out;
        }
        res->bytes += one.kept;
        if (bc.last_ts > 0) {
            res->last_ts = bc.last_ts;
        }
    }
    for (size_t i = 0; i < nincrs; i++) {
        const tm_aof_source *s = &incrs[i];
        if ((rc = tm_aof_manifest_add(m, s->name, s->seq, TM_AOF_INCR, err)) != 0 ||
            (rc = copy_one(s, 0, 1, &c, sink, &one, err)) != 0) {
            goto out;
        }
        res->kept_incrs++;
        res->bytes += one.kept;
        res->torn += one.torn;
        res->multi_cut += one.multi_cut;
        if (one.stop || i + 1 == nincrs) {
            snprintf(res->cut_file, sizeof(res->cut_file), "%s", s->name);
            res->cut_offset = one.kept;
        }
        if (one.stop) {
            res->dropped_incrs = nincrs - i - 1;
            break;
        }
    }
    /* Commands before a chain's first annotation are fine (Redis writes one
     * only when the second changes, so a new incr file can begin without
     * one: those writes share the base's second). No annotation at all
     * means aof-timestamp-enabled was off: the caller, who knows the
     * server's setting, must not call that a restore to a time. */
    res->annotations = c.annotations;
    res->cut = c.stop;
    res->cut_ts = c.stop ? c.stop_ts : 0;
    if (c.last_ts > 0) {
        res->last_ts = c.last_ts;
    }
    char *text = NULL;
    size_t len = 0;
    if ((rc = tm_aof_manifest_format(m, &text, &len, err)) != 0) {
        goto out;
    }
    if ((rc = sink->open(sink->arg, o->manifest_name, err)) == 0) {
        rc = sink->write(sink->arg, text, len, err);
        int crc = sink->close(sink->arg, rc == 0 ? err : NULL);
        rc = rc == 0 ? crc : rc;
    }
    free(text);
out:
    tm_aof_manifest_free(m);
    return rc;
}
