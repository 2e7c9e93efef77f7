/*
 * ship.c - continuous AOF shipping of a Redis target (engine.h's ship hook)
 * and the log ranges the coordinator is told about.
 *
 * The shipper follows the multi-part AOF directory with aof_tail.c every
 * ship_interval: each new base, whole, and the bytes appended to the incr
 * file being followed (pinned by hard links, so a rewrite cannot pull them
 * away; the tail finishes the old incr file before it moves on) become one
 * log object each, stored in every repository (tm_ship_store) under a name
 * that sorts in shipping order and carries what a restore and the log
 * ranges need without reading the object:
 *
 *   <chain>/<k><seq>-<start>-<first_ts>-<last_ts>
 *
 * chain = the seq of the base the data builds on (%010), k = "0r"/"0a" for
 * an RDB/AOF base (sorting before) and "1i" for incr data, seq %08, start =
 * byte offset in that file (%016x), times in unix seconds (%010; 0 = no
 * "#TS:" annotation). A gap (the agent was down across a rewrite and its
 * pins were gone) starts a new chain at the current base, and a marker
 * object <chain>/0g<seq>-... (TM_REDIS_GAP_KIND, ignored by restore) says
 * that chain does not continue the one before it. A rewrite starts a new
 * chain too, but without a hole: the log ranges run on across it.
 *
 * Positions in the log ranges (and the shipped position in the status) are
 * "<chain>:<name>": the rel with ':' for '/', which the coordinator
 * compares as plain strings (in shipping order) and never as a path.
 *
 * The position (the tail's position, its last base, the last time, the
 * chain) is saved in the shipper's state directory after every poll that
 * shipped, so an agent killed mid-ship resumes where it stopped: a range
 * stored twice is the same object (the log store accepts it).
 *
 * Without `aof-timestamp-enabled yes` there are no times to restore to: the
 * shipper warns, and a restore to a time refuses (restore.c).
 */
#include "agent/engines/redis/redis.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "agent/engines/redis/aof_config.h"
#include "agent/engines/redis/aof_tail.h"
#include "agent/repo/repo_log.h"
#include "common/log.h"
#include "common/util.h"

int tm_redis_log_name_parse(const char *rel, tm_redis_log_name *out)
{
    memset(out, 0, sizeof(*out));
    unsigned long long chain, seq, start;
    long long f, l;
    char k0, k1;
    int used = 0;
    if (sscanf(rel, "%10llu/%c%c%8llu-%16llx-%10lld-%10lld%n", &chain, &k0, &k1, &seq, &start, &f,
               &l, &used) != 7 ||
        rel[used] != '\0' || (k0 != '0' && k0 != '1')) {
        return TM_EINVAL;
    }
    out->chain = chain;
    out->kind = k1;
    out->base = k0 == '0';
    out->seq = (int64_t)seq;
    out->start = start;
    out->first_ts = f;
    out->last_ts = l;
    return out->base ? (k1 == 'r' || k1 == 'a' ? TM_OK : TM_EINVAL)
                     : (k1 == 'i' ? TM_OK : TM_EINVAL);
}

typedef struct shipper {
    tm_ship_ctx *ctx;
    const tm_target_conf *t;
    uint64_t chain;
    int64_t last_ts;
    int timestamps_warned;
    int gap; /* a hole was seen: the next base gets a gap marker */
    /* Where the chain stands: the last position shipped ("<chain>:<name>",
     * as reported), or at start the saved one ("<chain>:<file>:<offset>");
     * a gap's chain reset names it as where the old chain ended. */
    char at[TM_LOG_POS_MAX];
} shipper;

void tm_redis_log_pos(const char *rel, char *out, size_t cap)
{
    snprintf(out, cap, "%s", rel);
    char *slash = strchr(out, '/');
    if (slash != NULL) {
        *slash = ':';
    }
}

int tm_redis_log_is_gap(const char *rel, uint64_t *chain)
{
    unsigned long long c;
    int used = 0;
    if (sscanf(rel, "%10llu/0" TM_REDIS_GAP_KIND "%*8u%n", &c, &used) != 1 || used == 0) {
        return 0;
    }
    *chain = c;
    return 1;
}

static int copy_fd(void *arg, const void *buf, size_t len, tm_err *err)
{
    return tm_redis_write_all(*(int *)arg, buf, len, "AOF range (memfd)", err);
}

static int ship_range(void *arg, const tm_aof_range *r, tm_err *err)
{
    shipper *s = arg;
    if (r->type == TM_AOF_BASE) {
        s->chain = (uint64_t)r->seq;
    }
    if (r->type == TM_AOF_BASE && s->gap) {
        /* Stored before the base: a chain without its marker would be
         * taken as continuing the one before. */
        char gap[128];
        snprintf(gap, sizeof(gap),
                 "%010" PRIu64 "/0" TM_REDIS_GAP_KIND "%08" PRId64
                 "-0000000000000000-0000000000-0000000000",
                 s->chain, r->seq);
        int grc = tm_ship_store_buf(s->ctx, gap, "gap\n", 4, err);
        if (grc != TM_OK) {
            return grc;
        }
        s->gap = 0;
    }
    if (r->bytes == 0) {
        return TM_OK; /* only marks a file final */
    }
    size_t nl = strlen(r->file);
    char kind = r->type == TM_AOF_BASE
                    ? (nl > 4 && strcmp(r->file + nl - 4, ".rdb") == 0 ? 'r' : 'a')
                    : 'i';
    char rel[128];
    snprintf(rel, sizeof(rel),
             "%010" PRIu64 "/%c%c%08" PRId64 "-%016" PRIx64 "-%010" PRId64 "-%010" PRId64, s->chain,
             r->type == TM_AOF_BASE ? '0' : '1', kind, r->seq, r->start, r->first_ts, r->last_ts);
    int fd = memfd_create("tidemark-aof", MFD_CLOEXEC);
    if (fd < 0) {
        return tm_err_set(err, TM_EIO, "memfd_create: %s", strerror(errno));
    }
    int rc = tm_aof_range_copy(r, copy_fd, &fd, err);
    if (rc == TM_OK) {
        rc = tm_ship_store(s->ctx, rel, fd, err);
    }
    close(fd);
    if (rc != TM_OK) {
        return rc;
    }
    tm_log_range lr = {.chain = (uint32_t)s->chain,
                       .start_time = r->first_ts,
                       .end_time = r->last_ts,
                       .bytes = r->bytes,
                       .objects = 1};
    tm_redis_log_pos(rel, lr.start, sizeof(lr.start));
    tm_redis_log_pos(rel, lr.end, sizeof(lr.end));
    tm_ship_report(s->ctx, &lr);
    snprintf(s->at, sizeof(s->at), "%s", lr.end);
    if (r->last_ts > 0) {
        s->last_ts = r->last_ts;
    }
    tm_debug("redis", "event=aof_shipped target=%s rel=%s bytes=%" PRIu64, s->t->name, rel,
             r->bytes);
    return TM_OK;
}

static int ship_gap(void *arg, const char *what, tm_err *err)
{
    shipper *s = arg;
    (void)err;
    s->gap = 1;
    tm_warn("redis", "event=aof_gap target=%s msg=\"%s\" next=\"a new chain at the current base\"",
            s->t->name, what);
    tm_ship_chain_reset(s->ctx, what, s->at);
    return TM_OK;
}

/* position file: "position\nbase\nlast_ts chain\n" */
static void state_load(const char *path, char *pos, char *base, size_t cap, shipper *s)
{
    char *buf = NULL;
    size_t len = 0;
    pos[0] = base[0] = '\0';
    if (tm_file_read(path, &buf, &len, NULL) != TM_OK) {
        return;
    }
    char *save = NULL, *l1 = strtok_r(buf, "\n", &save);
    char *l2 = l1 ? strtok_r(NULL, "\n", &save) : NULL;
    char *l3 = l2 ? strtok_r(NULL, "\n", &save) : NULL;
    long long ts = 0;
    unsigned long long chain = 0;
    if (l3 != NULL && sscanf(l3, "%lld %llu", &ts, &chain) == 2) {
        snprintf(pos, cap, "%s", strcmp(l1, "-") == 0 ? "" : l1);
        snprintf(base, cap, "%s", strcmp(l2, "-") == 0 ? "" : l2);
        s->last_ts = ts;
        s->chain = chain;
    }
    free(buf);
}

static int state_save(const char *path, tm_aof_tail *tail, const shipper *s, tm_err *err)
{
    char buf[2 * TM_AOF_POS_MAX + 64];
    const char *p = tm_aof_tail_position(tail), *b = tm_aof_tail_base(tail);
    int n = snprintf(buf, sizeof(buf), "%s\n%s\n%" PRId64 " %" PRIu64 "\n", p[0] ? p : "-",
                     b[0] ? b : "-", s->last_ts, s->chain);
    return tm_file_write_atomic(path, buf, (size_t)n, 0600, err);
}

/* The status's reason (tm_ship_snapshot_only) when the server writes no
 * "#TS:" annotations. */
#define NO_TIMESTAMPS                                                                              \
    "aof-timestamp-enabled is no: the AOF is shipped but carries no times, so a restore "          \
    "cannot go to a time between snapshots (set aof-timestamp-enabled yes)"

int tm_redis_ship(tm_ship_ctx *ctx, const tm_target_conf *t, tm_err *err)
{
    const tm_redis_target_conf *rc = tm_redis_target(t);
    if (rc == NULL) {
        return tm_err_set(err, TM_ECONFIG, "target %s is not a Redis target", t->name);
    }
    uint32_t interval = rc->ship_interval_ms ? rc->ship_interval_ms : 1000;
    char aof_dir[4096 + 300] = "";
    int timestamps = -1;
    if (rc->aof_dir != NULL) {
        snprintf(aof_dir, sizeof(aof_dir), "%s", rc->aof_dir);
    }
    /* Ask the server (CONFIG GET; needs +config|get): whether the AOF is on,
     * with timestamps, and where (when aof_dir is not configured). */
    tm_redis_conn_opts co;
    tm_redis_conn_opts_for(rc, &co);
    tm_aof_config ac;
    tm_redis_verdict v;
    tm_err e = {0};
    if (tm_aof_config_get(&co, &ac, &v, &e) == TM_OK) {
        if (!ac.appendonly && rc->aof_dir == NULL) {
            tm_warn("redis",
                    "event=aof_off target=%s window=snapshot-only msg=\"appendonly is no: no AOF "
                    "to ship, restores go to a snapshot only\"",
                    t->name);
            tm_ship_snapshot_only(ctx, "appendonly is no: no AOF to ship, restores go to a "
                                       "snapshot only (set appendonly yes and "
                                       "aof-timestamp-enabled yes)");
            while (!tm_ship_wait(ctx, 60000)) {
            }
            return TM_OK;
        }
        timestamps = ac.timestamps;
        if (aof_dir[0] == '\0') {
            snprintf(aof_dir, sizeof(aof_dir), "%s", ac.aof_dir);
        }
    } else if (aof_dir[0] == '\0') {
        tm_warn("redis",
                "event=aof_dir_unknown target=%s window=snapshot-only msg=\"%s; set "
                "targets[].redis.aof_dir to ship the AOF\"",
                t->name, e.msg);
        char why[TM_ERR_MSG_MAX];
        snprintf(why, sizeof(why),
                 "the AOF directory is unknown (%.200s): set "
                 "targets[].redis.aof_dir",
                 e.msg);
        tm_ship_snapshot_only(ctx, why);
        while (!tm_ship_wait(ctx, 60000)) {
        }
        return TM_OK;
    }
    if (timestamps == 0) {
        tm_warn(
            "redis",
            "event=aof_no_timestamps target=%s window=snapshot-only msg=\"aof-timestamp-enabled "
            "is no: the AOF is shipped but a restore cannot go to a time\"",
            t->name);
    }
    /* What the server says now; without CONFIG GET (the minimal ACL), the
     * shipped AOF itself tells below. */
    if (timestamps >= 0) {
        tm_ship_snapshot_only(ctx, timestamps ? NULL : NO_TIMESTAMPS);
    }
    char sd[PATH_MAX], state[PATH_MAX + 16];
    int r = tm_ship_state_dir(ctx, sd, sizeof(sd), err);
    if (r != TM_OK) {
        return r;
    }
    snprintf(state, sizeof(state), "%s/position", sd);
    shipper s = {.ctx = ctx, .t = t};
    char pos[TM_AOF_POS_MAX + 1], base[TM_AOF_POS_MAX + 1];
    state_load(state, pos, base, sizeof(pos), &s);
    if (pos[0] != '\0') {
        snprintf(s.at, sizeof(s.at), "%010" PRIu64 ":%.200s", s.chain, pos);
    }
    tm_aof_tail_opts o = {
        .dir = aof_dir,
        .position = pos[0] ? pos : NULL,
        .base = base[0] ? base : NULL,
        .last_ts = s.last_ts,
        .max_range = (uint64_t)16 << 20,
    };
    tm_aof_tail *tail = NULL;
    r = tm_aof_tail_new(&o, &tail, err);
    if (r != TM_OK) {
        tm_err_prefix(err, "target %s: AOF directory %s", t->name, aof_dir);
        return r;
    }
    tm_info("redis", "event=aof_shipping target=%s dir=%s interval_ms=%u resume=\"%s\"", t->name,
            aof_dir, interval, pos);
    tm_aof_tail_cbs cbs = {.range = ship_range, .gap = ship_gap, .arg = &s};
    while (r == TM_OK && !tm_ship_stopping(ctx)) {
        int n = 0;
        r = tm_aof_tail_poll(tail, &cbs, &n, err);
        if (r == TM_OK && n > 0) {
            r = state_save(state, tail, &s, err);
        }
        /* Without CONFIG GET the shipped AOF tells (an annotation seen,
         * or commands without any). */
        int seen = r == TM_OK ? tm_aof_tail_timestamps(tail) : -1;
        if (seen == 1 && timestamps != 0) {
            tm_ship_snapshot_only(ctx, NULL);
        }
        if (seen == 0 && !s.timestamps_warned) {
            s.timestamps_warned = 1;
            tm_ship_snapshot_only(ctx, NO_TIMESTAMPS);
            tm_warn("redis",
                    "event=aof_no_timestamps target=%s window=snapshot-only msg=\"the AOF has "
                    "commands without #TS: annotations (aof-timestamp-enabled no): a restore "
                    "cannot go to a time\"",
                    t->name);
        }
        if (r == TM_OK) {
            tm_ship_wait(ctx, interval);
        }
    }
    tm_aof_tail_free(tail);
    return r;
}

int tm_redis_log_ranges(const tm_target_conf *t, const tm_log_item *items, size_t n,
                        tm_log_range **out, size_t *nout, tm_err *err)
{
    (void)t;
    *out = NULL;
    *nout = 0;
    /* The chains that start after a hole (their gap marker). */
    uint64_t *gaps = calloc(n ? n : 1, sizeof(*gaps));
    size_t ng = 0;
    if (gaps == NULL) {
        return tm_err_set(err, TM_ENOMEM, "out of memory");
    }
    for (size_t i = 0; i < n; i++) {
        uint64_t c;
        if (items[i].has_meta && items[i].has_object && tm_redis_log_is_gap(items[i].rel, &c)) {
            gaps[ng++] = c;
        }
    }
    tm_log_range *v = NULL;
    size_t nv = 0;
    uint64_t last_chain = 0;
    for (size_t i = 0; i < n; i++) {
        tm_redis_log_name ln;
        if (!items[i].has_meta || !items[i].has_object ||
            tm_redis_log_name_parse(items[i].rel, &ln) != TM_OK) {
            continue;
        }
        /* A run goes on across rewrites (a new chain at its base, shipped
         * without a hole) and ends at a hole: a gap marker, or a chain whose
         * first object is not its base (the base was never shipped). */
        int hole = nv == 0;
        if (!hole && ln.chain != last_chain) {
            hole = !ln.base;
            for (size_t g = 0; g < ng && !hole; g++) {
                hole = gaps[g] == ln.chain;
            }
        }
        last_chain = ln.chain;
        if (hole) {
            tm_log_range *nr = realloc(v, (nv + 1) * sizeof(*v));
            if (nr == NULL) {
                free(v);
                free(gaps);
                return tm_err_set(err, TM_ENOMEM, "out of memory");
            }
            v = nr;
            memset(&v[nv], 0, sizeof(v[nv]));
            v[nv].chain = (uint32_t)ln.chain;
            tm_redis_log_pos(items[i].rel, v[nv].start, sizeof(v[nv].start));
            v[nv].start_time = ln.first_ts ? ln.first_ts : ln.last_ts;
            nv++;
        }
        tm_log_range *r = &v[nv - 1];
        tm_redis_log_pos(items[i].rel, r->end, sizeof(r->end));
        if (ln.last_ts > r->end_time) {
            r->end_time = ln.last_ts;
        }
        r->bytes += items[i].stored_size;
        r->objects++;
    }
    free(gaps);
    *out = v;
    *nout = nv;
    return TM_OK;
}
