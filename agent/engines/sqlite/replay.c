/*
 * replay.c - a chain's base and its shipped frames onto a database file
 * (see replay.h).
 */
#include "agent/engines/sqlite/replay.h"
#include "agent/engines/sqlite/sqlite.h"
#include "agent/engines/sqlite/segment.h"
#include "agent/repo/repo_log.h"
#include "agent/repo/repository.h"
#include "common/log.h"
#include "common/util.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

typedef struct names {
    char **v;
    size_t n;
} names;

static void names_free(names *ns)
{
    for (size_t i = 0; i < ns->n; i++) {
        free(ns->v[i]);
    }
    free(ns->v);
    ns->v = NULL;
    ns->n = 0;
}

static int cmp_str(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

int tm_sqlite_gen_parse(const char *b, tm_sqlite_gen *g)
{
    memset(g, 0, sizeof(*g));
    int n = sscanf(b,
                   "tidemark-sqlite-generation 1\nchain %" SCNu32 "\npage %" SCNu32
                   "\nhdr %d\nsalt %" SCNu32 " %" SCNu32 "\nckpt %" SCNu32 "\nframes %" SCNu64
                   "\ns %" SCNu32 " %" SCNu32 "\ntime_ms %" SCNd64 "\nbytes %" SCNu64,
                   &g->chain, &g->page_size, &g->hdr, &g->salt1, &g->salt2, &g->ckpt, &g->frames,
                   &g->s1, &g->s2, &g->time_ms, &g->bytes);
    return n == 11 ? TM_OK : TM_EPROTO;
}

/* ---- objects into memory, or into the database file ---- */

/* A sink into a growing buffer, kept NUL-terminated (a description is
 * parsed as text); abort drops what it was given (the next copy starts
 * over). */
typedef struct membuf {
    uint8_t *p;
    size_t len, cap;
} membuf;

static int mem_write(void *arg, const void *buf, size_t len, tm_err *err)
{
    membuf *m = arg;
    if (len + 1 > m->cap - m->len) {
        size_t cap = m->cap ? m->cap : 1 << 20;
        while (len + 1 > cap - m->len) {
            cap *= 2;
        }
        uint8_t *np = realloc(m->p, cap);
        if (np == NULL) {
            return tm_err_set(err, TM_ENOMEM, "out of memory for a log object of %zu bytes",
                              m->len + len);
        }
        m->p = np;
        m->cap = cap;
    }
    memcpy(m->p + m->len, buf, len);
    m->len += len;
    m->p[m->len] = 0;
    return TM_OK;
}

static int mem_commit(void *arg, tm_err *err)
{
    membuf *m = arg;
    return mem_write(m, "", 0, err); /* a buffer even for an empty object */
}

static void mem_abort(void *arg)
{
    ((membuf *)arg)->len = 0;
}

static int mem_open(void *arg, tm_sink *out, tm_err *err)
{
    (void)err;
    membuf *m = arg;
    m->len = 0;
    *out = (tm_sink){mem_write, mem_commit, mem_abort, m, "memory"};
    return TM_OK;
}

/* A sink into the database file open on fd, from offset 0, in the writes
 * the reader produces, write-back started as it goes. Abort empties the
 * file (the next copy starts over). Nothing is fsync'd here. (A writer
 * thread of its own was tried and dropped: docs/SQLITE.md, Restore.) */
#define WRITEBACK (32u << 20)

static int pwrite_full(int fd, const void *buf, size_t len, uint64_t off)
{
    size_t done = 0;
    while (done < len) {
        ssize_t w = pwrite(fd, (const uint8_t *)buf + done, len - done, (off_t)(off + done));
        if (w < 0 && errno == EINTR) {
            continue;
        }
        if (w <= 0) {
            return -1;
        }
        done += (size_t)w;
    }
    return 0;
}

static int fd_write(void *arg, const void *buf, size_t len, tm_err *err)
{
    tm_sqlite_fd_sink *o = arg;
    if (pwrite_full(o->fd, buf, len, o->off) != 0) {
        return tm_err_set(err, errno == ENOSPC ? TM_ENOSPC : TM_EIO, "write the database: %s",
                          strerror(errno));
    }
    o->off += len;
    /* Ask the kernel to start writing back every WRITEBACK bytes: the one
     * fsync at the end then has little left to do. */
    if (o->off - o->started >= WRITEBACK) {
        (void)sync_file_range(o->fd, (off_t)o->started, (off_t)(o->off - o->started),
                              SYNC_FILE_RANGE_WRITE);
        o->started = o->off;
    }
    return TM_OK;
}

static int fd_commit(void *arg, tm_err *err)
{
    (void)arg;
    (void)err;
    return TM_OK;
}

static void fd_abort(void *arg)
{
    tm_sqlite_fd_sink *o = arg;
    /* Best effort: the restore that aborts removes its temporary file. */
    if (ftruncate(o->fd, 0) != 0) {
        tm_warn("sqlite", "event=truncate_failed msg=\"%s\"", strerror(errno));
    }
    o->off = o->started = 0;
}

int tm_sqlite_fd_sink_open(void *arg, tm_sink *out, tm_err *err)
{
    tm_sqlite_fd_sink *o = arg;
    if (ftruncate(o->fd, 0) != 0) {
        return tm_err_set(err, TM_EIO, "empty the database file: %s", strerror(errno));
    }
    o->off = o->started = 0;
    *out = (tm_sink){fd_write, fd_commit, fd_abort, o, "database file"};
    return TM_OK;
}

/* A scratch file beside db for one fetched object (a source without get). */
static void scratch_path(const char *db, char *out, size_t cap)
{
    snprintf(out, cap, "%s.tidemark-object", db);
}

/* Fetch rel into memory (a segment or a description: bounded by what the
 * shipper writes in one interval): straight into memory when the source
 * can, else through a scratch file beside db. */
static int fetch_buf(const tm_sqlite_source *src, const char *db, const char *rel, uint8_t **buf,
                     size_t *len, tm_err *err)
{
    int rc;
    if (src->get != NULL) {
        membuf m = {0};
        rc = src->get(src->arg, rel, mem_open, &m, err);
        if (rc == TM_OK) {
            *buf = m.p;
            *len = m.len;
            return TM_OK;
        }
        free(m.p);
        return tm_err_prefix(err, "log object %s", rel);
    }
    if (db == NULL) {
        return tm_err_set(err, TM_EINVAL, "log object %s: no place to fetch it to", rel);
    }
    char p[PATH_MAX + 32];
    scratch_path(db, p, sizeof(p));
    unlink(p);
    rc = src->fetch(src->arg, rel, p, err);
    char *b = NULL;
    if (rc == TM_OK) {
        rc = tm_file_read(p, &b, len, err);
    }
    unlink(p);
    if (rc != TM_OK) {
        return tm_err_prefix(err, "log object %s", rel);
    }
    *buf = (uint8_t *)b;
    return TM_OK;
}

static int list_sorted(const tm_sqlite_source *src, names *ns, tm_err *err)
{
    int rc = src->list(src->arg, &ns->v, &ns->n, err);
    if (rc != TM_OK) {
        return tm_err_prefix(err, "list the shipped log");
    }
    if (ns->n > 1) {
        qsort(ns->v, ns->n, sizeof(*ns->v), cmp_str);
    }
    return TM_OK;
}

/* The chain's description and base object names. */
static int find_base(const names *ns, uint32_t chain, const char **gen, const char **dbo)
{
    *gen = *dbo = NULL;
    for (size_t i = 0; i < ns->n; i++) {
        tm_sqlite_name nm;
        if (tm_sqlite_name_parse(ns->v[i], &nm) != TM_OK || nm.chain != chain) {
            continue;
        }
        if (nm.kind == 'g') {
            *gen = ns->v[i];
        } else if (nm.kind == 'd') {
            *dbo = ns->v[i];
        }
    }
    return *gen != NULL && *dbo != NULL ? TM_OK : TM_ENOENT;
}

static int read_gen(const tm_sqlite_source *src, const char *db, const char *rel, uint32_t chain,
                    tm_sqlite_gen *g, tm_err *err)
{
    uint8_t *b = NULL;
    size_t len = 0;
    int rc = fetch_buf(src, db, rel, &b, &len, err);
    if (rc != TM_OK) {
        return rc;
    }
    rc = tm_sqlite_gen_parse((const char *)b, g);
    free(b);
    if (rc != TM_OK || g->chain != chain) {
        return tm_err_set(err, TM_ECORRUPT, "chain description %s is malformed", rel);
    }
    return TM_OK;
}

/* The chain's base snapshot into the file open on fd (emptied first) when
 * src has get, else fetched to the new file db (which also names the
 * scratch file of a source without get; db may be NULL with get). */
static int base_into(const tm_sqlite_source *src, const names *ns, uint32_t chain, const char *db,
                     int fd, tm_sqlite_replayed *out, tm_err *err)
{
    memset(out, 0, sizeof(*out));
    out->chain = chain;
    const char *gen = NULL, *dbo = NULL;
    if (find_base(ns, chain, &gen, &dbo) != TM_OK) {
        return tm_err_set(err, TM_ENOENT,
                          "chain %08" PRIx32 " has no base snapshot in the log (%s missing)", chain,
                          gen == NULL ? "its description" : "its database");
    }
    tm_sqlite_gen g;
    int rc = read_gen(src, db, gen, chain, &g, err);
    if (rc == TM_OK) {
        tm_sqlite_fd_sink o = {.fd = fd};
        rc = src->get != NULL ? src->get(src->arg, dbo, tm_sqlite_fd_sink_open, &o, err)
                              : src->fetch(src->arg, dbo, db, err);
        if (rc != TM_OK) {
            tm_err_prefix(err, "base snapshot %s", dbo);
        }
    }
    if (rc == TM_OK) {
        tm_sqlite_pos_fmt(out->pos, sizeof(out->pos), 0, g.frames);
        out->time_ms = g.time_ms;
        out->objects = 2;
    }
    return rc;
}

int tm_sqlite_restore_base_src(const tm_sqlite_source *src, uint32_t chain, const char *db,
                               tm_sqlite_replayed *out, tm_err *err)
{
    memset(out, 0, sizeof(*out));
    out->chain = chain;
    if (access(db, F_OK) == 0) {
        return tm_err_set(err, TM_EEXIST, "%s exists: the base is written to a new file", db);
    }
    names ns = {0};
    int rc = list_sorted(src, &ns, err);
    int fd = -1;
    if (rc == TM_OK && src->get != NULL) {
        fd = open(db, O_RDWR | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600);
        if (fd < 0) {
            rc = tm_err_set(err, tm_err_from_errno(errno), "create %s: %s", db, strerror(errno));
        }
    }
    if (rc == TM_OK) {
        rc = base_into(src, &ns, chain, db, fd, out, err);
    }
    if (fd >= 0) {
        if (rc == TM_OK && fsync(fd) != 0) {
            rc = tm_err_set(err, TM_EIO, "sync %s: %s", db, strerror(errno));
        }
        close(fd);
        if (rc != TM_OK) {
            unlink(db);
        }
    }
    names_free(&ns);
    return rc;
}

/* Apply the transactions of seg whose commit is at or before until (0 =
 * all). *stop = 1 once a later commit was met. */
static int apply(int fd, const tm_sqlite_seg *seg, uint32_t wal, int64_t until,
                 tm_sqlite_replayed *out, int *stop, tm_err *err)
{
    size_t fs = tm_sqlite_wal_frame_size(&seg->wal);
    uint32_t from = 0; /* frames before it are applied */
    for (uint32_t c = 0; c < seg->ncommits; c++) {
        const tm_sqlite_commit *cm = &seg->commits[c];
        if (until != 0 && cm->time_ms > until) {
            *stop = 1;
            return TM_OK;
        }
        for (uint32_t i = from; i < cm->frame; i++) {
            const uint8_t *f = seg->frames + (size_t)i * fs;
            uint32_t pgno =
                ((uint32_t)f[0] << 24) | ((uint32_t)f[1] << 16) | ((uint32_t)f[2] << 8) | f[3];
            if (pwrite_full(fd, f + TM_SQLITE_WAL_FRAME_HDR, seg->wal.page_size,
                            (uint64_t)(pgno - 1) * seg->wal.page_size) != 0) {
                return tm_err_set(err, TM_EIO, "write page %" PRIu32 ": %s", pgno, strerror(errno));
            }
        }
        if (ftruncate(fd, (off_t)((uint64_t)cm->db_size * seg->wal.page_size)) != 0) {
            return tm_err_set(err, TM_EIO, "set the size to %" PRIu32 " pages: %s", cm->db_size,
                              strerror(errno));
        }
        out->frames += cm->frame - from;
        from = cm->frame;
        out->time_ms = cm->time_ms;
        tm_sqlite_pos_fmt(out->pos, sizeof(out->pos), wal, seg->first_frame + cm->frame - 1);
    }
    return TM_OK;
}

/* Where the replay stands: the last frame read of WAL number wal (its salts
 * when known). */
typedef struct cursor {
    uint32_t wal;
    uint64_t frame;
    int salts; /* salt1/salt2 known */
    uint32_t salt1, salt2;
} cursor;

/* 1 when segment seg (named nm) continues cursor c. */
static int continues(const cursor *c, const tm_sqlite_name *nm, const tm_sqlite_seg *seg)
{
    if (seg->first_frame != nm->first || seg->first_frame + seg->nframes - 1 != nm->last) {
        return 0; /* the name does not describe the content */
    }
    if (nm->wal == c->wal) {
        /* The same WAL: the next frame (a segment may start before the
         * cursor when the replay starts inside it: frames are page images). */
        return seg->first_frame <= c->frame + 1 && nm->last > c->frame &&
               (!c->salts || (seg->wal.salt1 == c->salt1 && seg->wal.salt2 == c->salt2));
    }
    if (nm->wal == c->wal + 1) {
        /* The WAL restarted: frame 1 of the next (other salts), which says
         * where the one before ended. The restarting connection picks the
         * new header's numbers, so they need not be the old ones plus one. */
        return seg->first_frame == 1 && seg->prev_last == c->frame &&
               (!c->salts || seg->wal.salt1 != c->salt1 || seg->wal.salt2 != c->salt2);
    }
    return 0;
}

/* The chain's frames after from up to until_ms onto the file open on fd
 * (db: for messages and a scratch file; may be NULL when src has get).
 * Nothing is fsync'd here. */
static int replay_into(const tm_sqlite_source *src, const names *ns, uint32_t chain,
                       const char *from, int64_t until_ms, const char *db, int fd,
                       tm_sqlite_replayed *out, tm_err *err)
{
    memset(out, 0, sizeof(*out));
    out->chain = chain;
    cursor c = {0};
    int rc = TM_OK;
    if (from == NULL || from[0] == '\0') {
        const char *gen = NULL, *dbo = NULL;
        tm_sqlite_gen g;
        if (find_base(ns, chain, &gen, &dbo) != TM_OK && gen == NULL) {
            rc = tm_err_set(err, TM_ENOENT, "chain %08" PRIx32 " has no description in the log",
                            chain);
        } else {
            rc = read_gen(src, db, gen, chain, &g, err);
        }
        if (rc == TM_OK) {
            c = (cursor){
                .wal = 0, .frame = g.frames, .salts = g.hdr, .salt1 = g.salt1, .salt2 = g.salt2};
            out->objects++;
        }
    } else if (tm_sqlite_pos_parse(from, &c.wal, &c.frame) != TM_OK) {
        rc = tm_err_set(err, TM_EINVAL, "bad log position \"%.100s\"", from);
    }
    tm_sqlite_pos_fmt(out->pos, sizeof(out->pos), c.wal, c.frame);
    int stop = 0;
    for (size_t i = 0; rc == TM_OK && i < ns->n && !stop; i++) {
        tm_sqlite_name nm;
        if (tm_sqlite_name_parse(ns->v[i], &nm) != TM_OK || nm.kind != 'w' || nm.chain != chain ||
            nm.wal < c.wal || (nm.wal == c.wal && nm.last <= c.frame)) {
            continue; /* not of this chain, or before the start */
        }
        uint8_t *b = NULL;
        size_t len = 0;
        rc = fetch_buf(src, db, ns->v[i], &b, &len, err);
        tm_sqlite_seg seg;
        int decoded = 0;
        if (rc == TM_OK) {
            rc = tm_sqlite_seg_decode(b, len, &seg, err);
            decoded = rc == TM_OK;
            if (rc != TM_OK) {
                tm_err_prefix(err, "log object %s", ns->v[i]);
            }
        }
        if (rc == TM_OK && (seg.chain != chain || !continues(&c, &nm, &seg))) {
            rc = tm_err_set(err, TM_ECORRUPT,
                            "chain %08" PRIx32
                            " has a hole before %s (the replay stands at WAL %" PRIu32
                            " frame %" PRIu64 ")",
                            chain, ns->v[i], c.wal, c.frame);
        }
        if (rc == TM_OK) {
            rc = apply(fd, &seg, nm.wal, until_ms, out, &stop, err);
            c = (cursor){.wal = nm.wal,
                         .frame = nm.last,
                         .salts = 1,
                         .salt1 = seg.wal.salt1,
                         .salt2 = seg.wal.salt2};
            out->objects++;
        }
        if (decoded) {
            tm_sqlite_seg_free(&seg);
        }
        free(b);
    }
    return rc;
}

int tm_sqlite_replay_src(const tm_sqlite_source *src, uint32_t chain, const char *from,
                         int64_t until_ms, const char *db, tm_sqlite_replayed *out, tm_err *err)
{
    memset(out, 0, sizeof(*out));
    out->chain = chain;
    names ns = {0};
    int rc = list_sorted(src, &ns, err);
    int fd = -1;
    if (rc == TM_OK) {
        fd = open(db, O_RDWR | O_CLOEXEC | O_NOFOLLOW);
        if (fd < 0) {
            rc = tm_err_set(err, tm_err_from_errno(errno), "open %s: %s", db, strerror(errno));
        }
    }
    if (rc == TM_OK) {
        rc = replay_into(src, &ns, chain, from, until_ms, db, fd, out, err);
    }
    if (fd >= 0) {
        if (rc == TM_OK && fsync(fd) != 0) {
            rc = tm_err_set(err, TM_EIO, "sync %s: %s", db, strerror(errno));
        }
        close(fd);
    }
    names_free(&ns);
    return rc == TM_OK ? TM_OK : tm_err_prefix(err, "replay onto %s", db);
}

/* ---- the log store as the source ---- */

typedef struct store_src {
    const char *target;
    tm_repo_set *rs;
    tm_log_store *ls;
} store_src;

static int store_list(void *arg, char ***out, size_t *nout, tm_err *err)
{
    store_src *s = arg;
    return tm_sqlite_log_names_in(s->rs, s->target, out, nout, err);
}

static int store_fetch(void *arg, const char *rel, const char *path, tm_err *err)
{
    store_src *s = arg;
    return tm_log_get_file(s->ls, rel, path, NULL, NULL, err);
}

static int store_get(void *arg, const char *rel, tm_log_sink_open open, void *open_arg, tm_err *err)
{
    store_src *s = arg;
    return tm_log_get_sink(s->ls, rel, open, open_arg, NULL, NULL, err);
}

static int store_open(store_src *s, const tm_agent_conf *conf, const char *target,
                      tm_sqlite_source *src, tm_err *err)
{
    memset(s, 0, sizeof(*s));
    s->target = target;
    int rc = tm_repo_set_open(&s->rs, conf, TM_REPO_KEYS, err);
    if (rc == TM_OK) {
        rc = tm_log_store_open(&s->ls, s->rs, target, err);
    }
    *src = (tm_sqlite_source){.list = store_list, .fetch = store_fetch, .get = store_get, .arg = s};
    return rc;
}

static void store_close(store_src *s)
{
    tm_log_store_free(s->ls);
    tm_repo_set_free(s->rs);
}

/* ---- one opening of the log for a restore (restore.c) ---- */

struct tm_sqlite_log {
    store_src s;
    tm_sqlite_source src;
    names ns;
};

int tm_sqlite_log_open(const tm_agent_conf *conf, const char *target, tm_sqlite_log **out,
                       tm_err *err)
{
    *out = NULL;
    tm_sqlite_log *l = calloc(1, sizeof(*l));
    if (l == NULL) {
        return tm_err_set(err, TM_ENOMEM, "out of memory");
    }
    int rc = store_open(&l->s, conf, target, &l->src, err);
    if (rc == TM_OK) {
        rc = list_sorted(&l->src, &l->ns, err);
    }
    if (rc != TM_OK) {
        tm_sqlite_log_close(l);
        return rc;
    }
    *out = l;
    return TM_OK;
}

void tm_sqlite_log_close(tm_sqlite_log *l)
{
    if (l != NULL) {
        names_free(&l->ns);
        store_close(&l->s);
        free(l);
    }
}

int tm_sqlite_log_base(tm_sqlite_log *l, uint32_t chain, int fd, tm_sqlite_replayed *out,
                       tm_err *err)
{
    return base_into(&l->src, &l->ns, chain, NULL, fd, out, err);
}

int tm_sqlite_log_replay(tm_sqlite_log *l, uint32_t chain, const char *from, int64_t until_ms,
                         int fd, tm_sqlite_replayed *out, tm_err *err)
{
    int rc = replay_into(&l->src, &l->ns, chain, from, until_ms, NULL, fd, out, err);
    return rc == TM_OK ? TM_OK : tm_err_prefix(err, "replay");
}

int tm_sqlite_restore_base(const tm_agent_conf *conf, const char *target, uint32_t chain,
                           const char *db, tm_sqlite_replayed *out, tm_err *err)
{
    store_src s;
    tm_sqlite_source src;
    int rc = store_open(&s, conf, target, &src, err);
    if (rc == TM_OK) {
        rc = tm_sqlite_restore_base_src(&src, chain, db, out, err);
    }
    store_close(&s);
    return rc;
}

int tm_sqlite_replay(const tm_agent_conf *conf, const char *target, uint32_t chain,
                     const char *from, int64_t until_ms, const char *db, tm_sqlite_replayed *out,
                     tm_err *err)
{
    store_src s;
    tm_sqlite_source src;
    int rc = store_open(&s, conf, target, &src, err);
    if (rc == TM_OK) {
        rc = tm_sqlite_replay_src(&src, chain, from, until_ms, db, out, err);
    }
    store_close(&s);
    return rc;
}
