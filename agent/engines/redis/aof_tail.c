/*
 * aof_tail.c - follow a multi-part AOF directory (see aof_tail.h).
 */
#include "agent/engines/redis/aof_tail.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "agent/engines/redis/aof_resp.h"
#include "common/util.h"

#define CHUNK (1 << 16)
/* A file that vanished between reading the manifest and pinning it means the
 * manifest changed: read it again, a few times. */
#define MANIFEST_TRIES 20
#define AGAIN 1

struct tm_aof_tail {
    char dir[4096];
    char pin[4096];
    char manifest[TM_AOF_NAME_MAX + 1];
    uint64_t max_range;
    char *last_manifest; /* text last handed to cbs->manifest */
    size_t last_manifest_len;

    /* The incr file followed. */
    int have_cur;
    char cur[TM_AOF_NAME_MAX + 1];
    int64_t cur_seq;
    int cur_fd;
    uint64_t off;      /* shipped up to here */
    tm_aof_scan *scan; /* scanned up to its offset (>= off) */

    char base[TM_AOF_NAME_MAX + 1]; /* the last base delivered */
    char pos[TM_AOF_POS_MAX];

    int64_t cur_ts;    /* the "#TS:" in effect; 0 = none yet */
    int ts_seen;       /* any annotation (also shipped before a resume) */
    int ts_run;        /* an annotation read by this tail */
    int cmd_seen;      /* any command */
    int64_t rfirst;    /* time of the range's first command; -1 = none yet */
    int64_t final_seq; /* the last incr file finished, and the time in effect */
    int64_t final_ts;  /* at its end: a new base's data is from then */
};

static int join(char *out, size_t cap, const char *a, const char *b, tm_err *err)
{
    int n = snprintf(out, cap, "%s/%s", a, b);
    if (n < 0 || (size_t)n >= cap) {
        return tm_err_set(err, TM_EINVAL, "path too long: %s/%s", a, b);
    }
    return 0;
}

int tm_aof_pos_parse(const char *pos, char *file, size_t cap, uint64_t *off, tm_err *err)
{
    const char *colon = strrchr(pos, ':');
    if (colon == NULL || colon == pos || colon[1] == '\0') {
        return tm_err_set(err, TM_EINVAL, "bad AOF position \"%.300s\" (want <file>:<offset>)",
                          pos);
    }
    size_t n = (size_t)(colon - pos);
    if (n >= cap || !tm_aof_name_ok(pos, n)) {
        return tm_err_set(err, TM_EINVAL, "bad AOF position \"%.300s\": bad file name", pos);
    }
    char *end = NULL;
    errno = 0;
    unsigned long long v = strtoull(colon + 1, &end, 10);
    if (errno != 0 || *end != '\0' || colon[1] < '0' || colon[1] > '9') {
        return tm_err_set(err, TM_EINVAL, "bad AOF position \"%.300s\": bad offset", pos);
    }
    memcpy(file, pos, n);
    file[n] = '\0';
    *off = v;
    return 0;
}

static void set_pos(tm_aof_tail *t)
{
    if (t->have_cur) {
        snprintf(t->pos, sizeof(t->pos), "%s:%" PRIu64, t->cur, t->off);
    } else {
        t->pos[0] = '\0';
    }
}

/* The seq Redis put in an incr file's name ("<prefix>.<seq>.incr.aof"), for a
 * file known only from a position (resume). */
static int64_t seq_from_name(const char *name)
{
    const char *suffix = strstr(name, ".incr.aof");
    if (suffix == NULL) {
        return 0;
    }
    const char *p = suffix;
    while (p > name && p[-1] >= '0' && p[-1] <= '9') {
        p--;
    }
    return p < suffix ? strtoll(p, NULL, 10) : 0;
}

/* Pin <dir>/name as <pin>/name and open it. TM_ENOENT when neither exists.
 * A pin left from an earlier run is kept only while the AOF directory has
 * no different file of that name (Redis reuses names after its directory is
 * wiped). */
static int pin_open(tm_aof_tail *t, const char *name, int *fd, tm_err *err)
{
    char src[8192], dst[8192];
    int rc = join(src, sizeof(src), t->dir, name, err);
    if (rc == 0) {
        rc = join(dst, sizeof(dst), t->pin, name, err);
    }
    if (rc != 0) {
        return rc;
    }
    for (int tries = 0; tries < 3; tries++) {
        if (link(src, dst) == 0) {
            break;
        }
        if (errno == ENOENT) {
            struct stat ps;
            if (stat(dst, &ps) == 0) {
                break; /* gone from the AOF directory, still pinned */
            }
            return tm_err_set(err, TM_ENOENT, "AOF file %s is gone", src);
        }
        if (errno != EEXIST) {
            return tm_err_set(err, tm_err_from_errno(errno), "pin %s as %s: %s", src, dst,
                              strerror(errno));
        }
        struct stat ss, ps;
        if (stat(src, &ss) != 0 || stat(dst, &ps) != 0 ||
            (ss.st_dev == ps.st_dev && ss.st_ino == ps.st_ino)) {
            break;
        }
        if (unlink(dst) != 0) {
            return tm_err_set(err, tm_err_from_errno(errno), "unpin stale %s: %s", dst,
                              strerror(errno));
        }
    }
    *fd = open(dst, O_RDONLY | O_CLOEXEC);
    if (*fd < 0) {
        return tm_err_set(err, tm_err_from_errno(errno), "open pinned %s: %s", dst,
                          strerror(errno));
    }
    return 0;
}

static void unpin(tm_aof_tail *t, const char *name)
{
    char dst[8192];
    if (join(dst, sizeof(dst), t->pin, name, NULL) == 0) {
        (void)unlink(dst);
    }
}

/* Only pin a file (keep it alive for later), without opening it. */
static int pin_only(tm_aof_tail *t, const char *name, tm_err *err)
{
    int fd = -1;
    int rc = pin_open(t, name, &fd, err);
    if (fd >= 0) {
        close(fd);
    }
    return rc;
}

static int find_manifest(tm_aof_tail *t, tm_err *err)
{
    DIR *d = opendir(t->dir);
    if (d == NULL) {
        return tm_err_set(err, tm_err_from_errno(errno), "AOF directory %s: %s", t->dir,
                          strerror(errno));
    }
    int found = 0;
    struct dirent *e;
    while ((e = readdir(d)) != NULL) {
        size_t n = strlen(e->d_name);
        if (n > 9 && strcmp(e->d_name + n - 9, ".manifest") == 0) {
            if (found++ == 0) {
                snprintf(t->manifest, sizeof(t->manifest), "%s", e->d_name);
            }
        }
    }
    closedir(d);
    if (found != 1) {
        return tm_err_set(err, found == 0 ? TM_ENOENT : TM_EINVAL,
                          "AOF directory %s: %s manifest files (want exactly one; is appendonly "
                          "on?)",
                          t->dir, found == 0 ? "no" : "several");
    }
    return 0;
}

int tm_aof_tail_new(const tm_aof_tail_opts *o, tm_aof_tail **out, tm_err *err)
{
    *out = NULL;
    tm_aof_tail *t = calloc(1, sizeof(*t));
    if (t == NULL) {
        return tm_err_set(err, TM_ENOMEM, "aof tail: out of memory");
    }
    t->cur_fd = -1;
    t->rfirst = -1;
    t->max_range = o->max_range ? o->max_range : (64u << 20);
    int rc = 0;
    if (snprintf(t->dir, sizeof(t->dir), "%s", o->dir) >= (int)sizeof(t->dir) ||
        snprintf(t->pin, sizeof(t->pin), "%s%s", o->pin_dir ? o->pin_dir : o->dir,
                 o->pin_dir ? "" : ".tidemark-pin") >= (int)sizeof(t->pin)) {
        rc = tm_err_set(err, TM_EINVAL, "aof tail: path too long");
        goto fail;
    }
    if (o->manifest != NULL) {
        if (!tm_aof_name_ok(o->manifest, strlen(o->manifest))) {
            rc = tm_err_set(err, TM_EINVAL, "bad manifest name \"%.64s\"", o->manifest);
            goto fail;
        }
        snprintf(t->manifest, sizeof(t->manifest), "%s", o->manifest);
    } else if ((rc = find_manifest(t, err)) != 0) {
        goto fail;
    }
    if ((rc = tm_mkdir_p(t->pin, 0700, err)) != 0) {
        goto fail;
    }
    if (o->base != NULL && o->base[0] != '\0') {
        snprintf(t->base, sizeof(t->base), "%s", o->base);
    }
    if (o->position != NULL && o->position[0] != '\0') {
        if ((rc = tm_aof_pos_parse(o->position, t->cur, sizeof(t->cur), &t->off, err)) != 0) {
            goto fail;
        }
        t->cur_seq = seq_from_name(t->cur);
        if (t->cur_seq <= 0) {
            rc = tm_err_set(err, TM_EINVAL, "AOF position %s: not an incr file", o->position);
            goto fail;
        }
        t->have_cur = 1;
        /* A new incr file can begin without "#TS:" (Redis writes one when
         * the second changes): the time, and that there are annotations at
         * all, carry over from what was shipped before. */
        t->cur_ts = o->last_ts > 0 ? o->last_ts : 0;
        t->ts_seen = o->last_ts > 0;
    }
    set_pos(t);
    *out = t;
    return 0;
fail:
    free(t);
    return rc;
}

static void drop_cur(tm_aof_tail *t)
{
    if (t->cur_fd >= 0) {
        close(t->cur_fd);
    }
    t->cur_fd = -1;
    tm_aof_scan_free(t->scan);
    t->scan = NULL;
}

void tm_aof_tail_free(tm_aof_tail *t)
{
    if (t == NULL) {
        return;
    }
    drop_cur(t);
    /* Release the pins of what is shipped; keep the followed file's and
     * newer ones: a restart from the position (or after a crash, when this
     * does not run at all) must find them even if a rewrite retires them in
     * the meantime. A tail that is never restarted leaves them behind. */
    DIR *d = opendir(t->pin);
    if (d != NULL) {
        struct dirent *e;
        while ((e = readdir(d)) != NULL) {
            if (e->d_name[0] == '.') {
                continue;
            }
            int64_t seq = seq_from_name(e->d_name);
            if (t->have_cur && seq >= t->cur_seq) {
                continue;
            }
            unpin(t, e->d_name);
        }
        closedir(d);
    }
    free(t->last_manifest);
    free(t);
}

const char *tm_aof_tail_position(const tm_aof_tail *t)
{
    return t->pos;
}

const char *tm_aof_tail_base(const tm_aof_tail *t)
{
    return t->base;
}

int tm_aof_tail_timestamps(const tm_aof_tail *t)
{
    /* What this tail read decides: the time carried over at a resume may be
     * a base file's, which says nothing about annotations. Commands without
     * one can also be the rest of a second annotated before the resume:
     * then the next second's annotation turns it back to 1. */
    if (t->ts_run) {
        return 1;
    }
    if (t->cmd_seen) {
        return 0;
    }
    return t->ts_seen ? 1 : -1;
}

int tm_aof_range_copy(const tm_aof_range *r,
                      int (*fn)(void *arg, const void *buf, size_t len, tm_err *err), void *arg,
                      tm_err *err)
{
    static __thread char buf[CHUNK];
    uint64_t off = r->start;
    while (off < r->end) {
        size_t want = r->end - off < CHUNK ? (size_t)(r->end - off) : CHUNK;
        ssize_t n = pread(r->fd, buf, want, (off_t)off);
        if (n < 0 && errno == EINTR) {
            continue;
        }
        if (n <= 0) {
            return tm_err_set(err, n == 0 ? TM_EIO : tm_err_from_errno(errno),
                              "read %s at %" PRIu64 ": %s", r->file, off,
                              n == 0 ? "file shorter than the range" : strerror(errno));
        }
        int rc = fn(arg, buf, (size_t)n, err);
        if (rc != 0) {
            return rc;
        }
        off += (uint64_t)n;
    }
    return 0;
}

static int on_unit(void *arg, const tm_aof_unit *u, tm_err *err)
{
    (void)err;
    tm_aof_tail *t = arg;
    if (u->kind == TM_AOF_UNIT_ANNOTATION) {
        if (u->ts >= 0) {
            t->cur_ts = u->ts;
            t->ts_seen = t->ts_run = 1;
        }
    } else {
        t->cmd_seen = 1;
        if (t->rfirst < 0) {
            t->rfirst = t->cur_ts;
        }
    }
    return 0;
}

static int deliver(tm_aof_tail *t, const tm_aof_tail_cbs *cbs, uint64_t end, int final,
                   uint64_t torn, int *ranges, tm_err *err)
{
    char sp[TM_AOF_POS_MAX], ep[TM_AOF_POS_MAX];
    snprintf(sp, sizeof(sp), "%s:%" PRIu64, t->cur, t->off);
    snprintf(ep, sizeof(ep), "%s:%" PRIu64, t->cur, end);
    tm_aof_range r = {.file = t->cur,
                      .type = TM_AOF_INCR,
                      .seq = t->cur_seq,
                      .start = t->off,
                      .end = end,
                      .start_pos = sp,
                      .end_pos = ep,
                      .first_ts = t->rfirst >= 0 ? t->rfirst : t->cur_ts,
                      .last_ts = t->cur_ts,
                      .bytes = end - t->off,
                      .final = final,
                      .torn = torn,
                      .fd = t->cur_fd};
    int rc = cbs->range(cbs->arg, &r, err);
    if (rc != 0) {
        return rc;
    }
    (*ranges)++;
    t->off = end;
    t->rfirst = -1;
    set_pos(t);
    return 0;
}

/* Open (pin) the followed file and a scanner at the shipped offset. */
static int open_cur(tm_aof_tail *t, tm_err *err)
{
    if (t->cur_fd >= 0) {
        return 0;
    }
    int rc = pin_open(t, t->cur, &t->cur_fd, err);
    if (rc != 0) {
        return rc;
    }
    rc = tm_aof_scan_new(&t->scan, t->off, err);
    if (rc != 0) {
        drop_cur(t);
    }
    return rc;
}

/* Ship what is new in the followed file; final = nothing more will come. */
static int ship_incr(tm_aof_tail *t, const tm_aof_tail_cbs *cbs, int final, int *ranges,
                     tm_err *err)
{
    struct stat st;
    if (fstat(t->cur_fd, &st) != 0) {
        return tm_err_set(err, tm_err_from_errno(errno), "stat %s: %s", t->cur, strerror(errno));
    }
    uint64_t size = (uint64_t)st.st_size;
    if (size < tm_aof_scan_offset(t->scan)) {
        return tm_err_set(err, TM_ECORRUPT,
                          "AOF file %s shrank to %" PRIu64
                          " bytes below the shipped offset %" PRIu64 " (truncated by hand?)",
                          t->cur, size, tm_aof_scan_offset(t->scan));
    }
    static __thread char buf[CHUNK];
    while (tm_aof_scan_offset(t->scan) < size) {
        uint64_t at = tm_aof_scan_offset(t->scan);
        size_t want = size - at < CHUNK ? (size_t)(size - at) : CHUNK;
        ssize_t n = pread(t->cur_fd, buf, want, (off_t)at);
        if (n < 0 && errno == EINTR) {
            continue;
        }
        if (n <= 0) {
            return tm_err_set(err, n == 0 ? TM_EIO : tm_err_from_errno(errno),
                              "read %s at %" PRIu64 ": %s", t->cur, at,
                              n == 0 ? "short read" : strerror(errno));
        }
        int rc = tm_aof_scan_feed(t->scan, buf, (size_t)n, on_unit, t, err);
        if (rc != 0) {
            tm_err_prefix(err, "%s/%s", t->dir, t->cur);
            return rc < 0 ? rc : TM_EINTERNAL;
        }
        uint64_t c = tm_aof_scan_complete(t->scan);
        if (c - t->off >= t->max_range) {
            if ((rc = deliver(t, cbs, c, 0, 0, ranges, err)) != 0) {
                return rc;
            }
        }
    }
    uint64_t c = tm_aof_scan_complete(t->scan);
    if (c > t->off || final) {
        return deliver(t, cbs, c, final, final ? size - c : 0, ranges, err);
    }
    return 0;
}

static int ship_base(tm_aof_tail *t, const tm_aof_tail_cbs *cbs, const tm_aof_file *b,
                     int64_t first_incr, int *ranges, tm_err *err)
{
    int fd = -1;
    int rc = pin_open(t, b->name, &fd, err);
    if (rc != 0) {
        return rc;
    }
    struct stat st;
    if (fstat(fd, &st) != 0) {
        rc = tm_err_set(err, tm_err_from_errno(errno), "stat %s: %s", b->name, strerror(errno));
        goto out;
    }
    /* The newest time the base's data can be from: the fork. A .base.aof
     * starts with the fork's "#TS:"; otherwise the time at the end of the
     * incr file just before the base's first one (Redis opens that one, then
     * forks), else the newest annotation seen or, knowing nothing, the
     * file's mtime (after the fork: later is the safe side for choosing a
     * base for a restore). */
    int64_t ts = first_incr > 0 && t->final_seq == first_incr - 1 && t->final_ts > 0 ? t->final_ts
                                                                                     : t->cur_ts;
    char head[32];
    ssize_t hn = pread(fd, head, sizeof(head) - 1, 0);
    if (hn > 4 && memcmp(head, "#TS:", 4) == 0) {
        head[hn] = '\0';
        ts = strtoll(head + 4, NULL, 10);
    } else if (ts == 0) {
        ts = (int64_t)st.st_mtime;
    }
    char sp[TM_AOF_POS_MAX], ep[TM_AOF_POS_MAX];
    snprintf(sp, sizeof(sp), "%s:0", b->name);
    snprintf(ep, sizeof(ep), "%s:%" PRIu64, b->name, (uint64_t)st.st_size);
    tm_aof_range r = {.file = b->name,
                      .type = TM_AOF_BASE,
                      .seq = b->seq,
                      .start = 0,
                      .end = (uint64_t)st.st_size,
                      .start_pos = sp,
                      .end_pos = ep,
                      .first_ts = ts,
                      .last_ts = ts,
                      .bytes = (uint64_t)st.st_size,
                      .final = 1,
                      .fd = fd};
    rc = cbs->range(cbs->arg, &r, err);
    if (rc == 0) {
        (*ranges)++;
        snprintf(t->base, sizeof(t->base), "%s", b->name);
    }
out:
    close(fd);
    unpin(t, b->name);
    return rc;
}

static int manifest_changed(tm_aof_tail *t, const tm_aof_tail_cbs *cbs, const char *text,
                            size_t len, tm_err *err)
{
    if (cbs->manifest == NULL || (t->last_manifest != NULL && t->last_manifest_len == len &&
                                  memcmp(t->last_manifest, text, len) == 0)) {
        return 0;
    }
    int rc = cbs->manifest(cbs->arg, text, len, err);
    if (rc != 0) {
        return rc;
    }
    char *copy = malloc(len + 1);
    if (copy == NULL) {
        return tm_err_set(err, TM_ENOMEM, "aof tail: out of memory");
    }
    memcpy(copy, text, len);
    free(t->last_manifest);
    t->last_manifest = copy;
    t->last_manifest_len = len;
    return 0;
}

/* Switch to incr file f at offset 0. */
static int follow(tm_aof_tail *t, const tm_aof_file *f, tm_err *err)
{
    drop_cur(t);
    t->have_cur = 1;
    snprintf(t->cur, sizeof(t->cur), "%s", f->name);
    t->cur_seq = f->seq;
    t->off = 0;
    set_pos(t);
    return open_cur(t, err);
}

static int step(tm_aof_tail *t, const tm_aof_manifest *m, const tm_aof_tail_cbs *cbs, int *ranges,
                tm_err *err)
{
    const tm_aof_file *incr[256];
    size_t ni = tm_aof_manifest_incrs(m, incr, 256);
    if (ni > 256) {
        return tm_err_set(err, TM_EPROTO, "AOF manifest lists %zu incr files (more than 256)", ni);
    }
    const tm_aof_file *base = tm_aof_manifest_base(m);
    int rc;
    if (!t->have_cur) {
        /* From scratch: the base, then its first incr file from byte 0. */
        if (base != NULL && strcmp(base->name, t->base) != 0 &&
            (rc = ship_base(t, cbs, base, ni > 0 ? incr[0]->seq : 0, ranges, err)) != 0) {
            return rc == TM_ENOENT ? AGAIN : rc;
        }
        if (ni == 0) {
            return 0;
        }
        if ((rc = follow(t, incr[0], err)) != 0) {
            return rc == TM_ENOENT ? AGAIN : rc;
        }
    } else if ((rc = open_cur(t, err)) != 0) {
        if (rc != TM_ENOENT) {
            return rc;
        }
        /* The file of our position is gone and was never pinned (the agent was
         * down across a rewrite): a gap. Start a new chain at the base. */
        int64_t seq = t->cur_seq;
        char lost[TM_AOF_NAME_MAX + 1];
        snprintf(lost, sizeof(lost), "%s", t->cur);
        t->have_cur = 0;
        t->base[0] = '\0';
        set_pos(t);
        tm_err gap = {0};
        tm_err_set(&gap, TM_ENOENT,
                   "gap: AOF file %s (seq %" PRId64 ") is gone from %s before it was shipped to "
                   "its end; a new chain starts at the current base",
                   lost, seq, t->dir);
        if (cbs->gap == NULL) {
            return tm_err_set(err, TM_ENOENT, "%s", gap.msg);
        }
        rc = cbs->gap(cbs->arg, gap.msg, err);
        /* Read the manifest again and start from scratch. */
        return rc != 0 ? rc : AGAIN;
    }
    /* Keep every newer incr file alive: a second rewrite could retire one
     * before we reach it. */
    for (size_t i = 0; i < ni; i++) {
        if (incr[i]->seq > t->cur_seq && (rc = pin_only(t, incr[i]->name, err)) != 0) {
            return rc == TM_ENOENT ? AGAIN : rc;
        }
    }
    for (;;) {
        const tm_aof_file *listed = tm_aof_manifest_find(m, t->cur);
        const tm_aof_file *next = NULL;
        for (size_t i = 0; i < ni && next == NULL; i++) {
            if (incr[i]->seq > t->cur_seq) {
                next = incr[i];
            }
        }
        /* Redis switches files (flushing the old one first) before the new
         * manifest is written: once a newer incr is listed, or ours is not an
         * incr any more, ours is at its final length. */
        int final = listed == NULL || listed->type != TM_AOF_INCR || next != NULL;
        if ((rc = ship_incr(t, cbs, final, ranges, err)) != 0) {
            return rc;
        }
        if (!final) {
            break;
        }
        t->final_seq = t->cur_seq;
        t->final_ts = t->cur_ts;
        if (next == NULL) {
            /* Retired, and nothing newer listed: only while a manifest is
             * being replaced; the next poll sees the new one. */
            return AGAIN;
        }
        if (next->seq != t->cur_seq + 1) {
            int64_t seq = t->cur_seq;
            char done[TM_AOF_NAME_MAX + 1];
            snprintf(done, sizeof(done), "%s", t->cur);
            unpin(t, done);
            drop_cur(t);
            if ((rc = follow(t, next, err)) != 0) {
                return rc;
            }
            tm_err gap = {0};
            tm_err_set(&gap, TM_ENOENT,
                       "gap: AOF incr files after %s (seq %" PRId64 ") up to seq %" PRId64
                       " are gone unshipped; following %s",
                       done, seq, next->seq, next->name);
            if (cbs->gap == NULL) {
                return tm_err_set(err, TM_ENOENT, "%s", gap.msg);
            }
            if ((rc = cbs->gap(cbs->arg, gap.msg, err)) != 0) {
                return rc;
            }
            continue;
        }
        char done[TM_AOF_NAME_MAX + 1];
        snprintf(done, sizeof(done), "%s", t->cur);
        if ((rc = follow(t, next, err)) != 0) {
            return rc == TM_ENOENT ? AGAIN : rc;
        }
        unpin(t, done);
    }
    /* A rewrite installed a new base: ship it (its chain is the incr files
     * this manifest lists, shipped or being shipped). */
    if (base != NULL && strcmp(base->name, t->base) != 0 &&
        (rc = ship_base(t, cbs, base, ni > 0 ? incr[0]->seq : 0, ranges, err)) != 0) {
        return rc == TM_ENOENT ? AGAIN : rc;
    }
    return 0;
}

int tm_aof_tail_poll(tm_aof_tail *t, const tm_aof_tail_cbs *cbs, int *ranges, tm_err *err)
{
    *ranges = 0;
    char path[8192];
    int rc = join(path, sizeof(path), t->dir, t->manifest, err);
    if (rc != 0) {
        return rc;
    }
    for (int tries = 0; tries < MANIFEST_TRIES; tries++) {
        char *text = NULL;
        size_t len = 0;
        tm_aof_manifest *m = NULL;
        if ((rc = tm_file_read(path, &text, &len, err)) != 0) {
            return rc;
        }
        rc = tm_aof_manifest_parse(text, len, &m, err);
        if (rc != 0) {
            free(text);
            return tm_err_prefix(err, "AOF manifest %s", path);
        }
        rc = step(t, m, cbs, ranges, err);
        if (rc == 0) {
            rc = manifest_changed(t, cbs, text, len, err);
        }
        tm_aof_manifest_free(m);
        free(text);
        if (rc != AGAIN) {
            return rc;
        }
        usleep(10000);
    }
    return tm_err_set(err, TM_EBUSY, "AOF manifest %s kept changing while it was read", path);
}
