/*
 * ship.c - the SQLite WAL shipper (see ship.h for the argument): the tick,
 * the engine hook that runs it, the saved position.
 */
#include "agent/engines/sqlite/ship.h"
#include "agent/engines/sqlite/config.h"
#include "agent/engines/sqlite/copy.h"
#include "agent/engines/sqlite/db.h"
#include "agent/engines/sqlite/segment.h"
#include "agent/engines/sqlite/wal.h"
#include "agent/engines/sqlite/watch.h"
#include "common/log.h"
#include "common/util.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <limits.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define REL_MAX TM_SQLITE_NAME_MAX

/* The frames committed after pos, up to the last commit in the file. */
typedef struct batch {
    uint8_t *buf;
    size_t len, cap;
    tm_sqlite_commit *commits;
    tm_sqlite_watch_commit *stamps; /* the commits' frames and checksums, to time them */
    uint32_t ncommits, capc;
    tm_sqlite_wal end; /* the position after the last commit */
} batch;

struct tm_sqlite_shipper {
    tm_sqlite_ship_opts o;
    tm_sqlite_sink sink;
    char db[PATH_MAX], wal[PATH_MAX + 8], spool[PATH_MAX], state[PATH_MAX];
    sqlite3 *w, *r, *c;
    tm_sqlite_watch *watch;     /* the commit observer; NULL: commits get the tick's time */
    int reading;                /* r holds a read transaction */
    int held;                   /* ... taken under the write lock at the shipped position */
    int restart_ok;             /* our own TRUNCATE reset the WAL at the shipped position */
    int restart_due;            /* re-take r after a checkpoint so the WAL can restart */
    int snap_pending;           /* a new generation's snapshot is to be taken */
    uint64_t prev_last;         /* the WAL restarted: the last frame shipped of the one before */
    char force[TM_ERR_MSG_MAX]; /* the next tick starts a new generation: why */
    /* The saved position. */
    int have, snap_done, have_hdr;
    uint32_t chain, walidx;
    tm_sqlite_wal pos; /* after the last shipped commit of the current WAL */
    uint64_t ino, dev;
    int64_t snap_ms;
    int64_t last_ckpt_ms; /* the shipper's last PASSIVE checkpoint */
    int verified;         /* the saved position was checked against the WAL */
    int force_first;      /* the saved position is unreadable: not a reset of a known chain */
    char reset_pos[TM_LOG_POS_MAX]; /* where the replaced chain ended */
    int64_t dv_locked;              /* data_version at the end of the last locked tick; -1 = none */
    /* Frames read under the lock, spooled after it (see locked_tick). */
    int has_deferred;
    batch deferred;
};

static int64_t now_ms(void)
{
    return tm_now_ms();
}

static void prune_spool(tm_sqlite_shipper *s);
static void batch_free(batch *b);

static int save(tm_sqlite_shipper *s, tm_err *err)
{
    char b[1024];
    const tm_sqlite_wal *p = &s->pos;
    int n = snprintf(b, sizeof(b),
                     "tidemark-sqlite-ship 1\nchain %" PRIu32 "\nwal %" PRIu32 "\nsnap %d\nhdr %d\n"
                     "magic %" PRIu32 "\npage %" PRIu32 "\nckpt %" PRIu32 "\nsalt %" PRIu32
                     " %" PRIu32 "\ncksum %" PRIu32 " %" PRIu32 "\nframes %" PRIu64 "\ns %" PRIu32
                     " %" PRIu32 "\ncommit %" PRIu64 " %" PRIu32 "\nfile %" PRIu64 " %" PRIu64 "\n",
                     s->chain, s->walidx, s->snap_done, s->have_hdr, p->h.magic, p->h.page_size,
                     p->h.ckpt_seq, p->h.salt1, p->h.salt2, p->h.cksum1, p->h.cksum2, p->frames,
                     p->s1, p->s2, p->commit, p->db_size, s->ino, s->dev);
    int rc = tm_file_write_atomic(s->state, b, (size_t)n, 0600, err);
    return rc == TM_OK ? TM_OK : tm_err_prefix(err, "save shipper position");
}

static int load(tm_sqlite_shipper *s, tm_err *err)
{
    char *b = NULL;
    size_t len = 0;
    int rc = tm_file_read(s->state, &b, &len, err);
    if (rc == TM_ENOENT) {
        tm_err_clear(err);
        return TM_OK; /* never shipped: the first tick starts a generation */
    }
    if (rc != TM_OK) {
        return rc;
    }
    tm_sqlite_wal_hdr h = {.version = TM_SQLITE_WAL_VERSION};
    uint64_t frames, commit;
    uint32_t s1, s2, dbsize;
    int got = sscanf(b,
                     "tidemark-sqlite-ship 1\nchain %" SCNu32 "\nwal %" SCNu32 "\nsnap %d\nhdr %d\n"
                     "magic %" SCNu32 "\npage %" SCNu32 "\nckpt %" SCNu32 "\nsalt %" SCNu32
                     " %" SCNu32 "\ncksum %" SCNu32 " %" SCNu32 "\nframes %" SCNu64 "\ns %" SCNu32
                     " %" SCNu32 "\ncommit %" SCNu64 " %" SCNu32 "\nfile %" SCNu64 " %" SCNu64,
                     &s->chain, &s->walidx, &s->snap_done, &s->have_hdr, &h.magic, &h.page_size,
                     &h.ckpt_seq, &h.salt1, &h.salt2, &h.cksum1, &h.cksum2, &frames, &s1, &s2,
                     &commit, &dbsize, &s->ino, &s->dev);
    free(b);
    if (got != 18) {
        /* Not silently: a position we cannot read means a new generation. */
        s->have = 1;
        s->force_first = 1;
        snprintf(s->force, sizeof(s->force), "the saved position %.300s is unreadable", s->state);
        return TM_OK;
    }
    s->have = 1;
    tm_sqlite_wal_resume(&s->pos, &h, frames, s1, s2, commit, dbsize);
    return TM_OK;
}

/* Three connections: `w` takes the write lock for the short critical part
 * of a tick, `r` holds the read transaction, `c` runs checkpoints. */
static int open_conns(tm_sqlite_shipper *s, tm_err *err)
{
    int rc = tm_sqlite_db_open(s->db, s->o.busy_ms, s->o.set_wal, &s->w, err);
    if (rc == TM_OK) {
        rc = tm_sqlite_db_open(s->db, s->o.busy_ms, 0, &s->r, err);
    }
    if (rc == TM_OK) {
        rc = tm_sqlite_db_open(s->db, s->o.busy_ms, 0, &s->c, err);
    }
    if (rc != TM_OK) {
        sqlite3_close(s->w);
        sqlite3_close(s->r);
        sqlite3_close(s->c);
        s->w = s->r = s->c = NULL;
    }
    return rc;
}

int tm_sqlite_ship_new(const tm_sqlite_ship_opts *o, const tm_sqlite_sink *sink,
                       tm_sqlite_shipper **out, tm_err *err)
{
    tm_sqlite_shipper *s = calloc(1, sizeof(*s));
    if (s == NULL) {
        return tm_err_set(err, TM_ENOMEM, "sqlite shipper");
    }
    s->o = *o;
    s->dv_locked = -1;
    s->sink = *sink;
    if (s->o.busy_ms <= 0) {
        s->o.busy_ms = 5000;
    }
    if (s->o.ckpt_frames == 0) {
        s->o.ckpt_frames = 1000;
    }
    if (s->o.ckpt_ms == 0) {
        s->o.ckpt_ms = 60000;
    }
    if (s->o.truncate_bytes == 0) {
        s->o.truncate_bytes = 64u << 20;
    }
    int rc = TM_OK;
    if ((size_t)snprintf(s->db, sizeof(s->db), "%s", o->db) >= sizeof(s->db) ||
        (size_t)snprintf(s->spool, sizeof(s->spool), "%s/spool", o->state_dir) >=
            sizeof(s->spool) ||
        (size_t)snprintf(s->state, sizeof(s->state), "%s/position", o->state_dir) >=
            sizeof(s->state)) {
        rc = tm_err_set(err, TM_EINVAL, "sqlite shipper: path too long");
    }
    snprintf(s->wal, sizeof(s->wal), "%s-wal", s->db);
    s->o.db = s->db;
    s->o.state_dir = NULL;
    if (rc == TM_OK) {
        rc = tm_mkdir_p(s->spool, 0700, err);
    }
    if (rc == TM_OK) {
        rc = open_conns(s, err);
    }
    if (rc == TM_OK) {
        rc = load(s, err);
    }
    if (rc == TM_OK && s->have) {
        prune_spool(s);
    }
    if (rc == TM_OK && !s->o.no_watch) {
        tm_err werr = {0};
        if (tm_sqlite_watch_new(s->db, NULL, &s->watch, &werr) != TM_OK) {
            /* Not fatal: commits then carry the time of the tick that read them. */
            tm_warn("sqlite", "event=commit_observer_failed db=%s msg=\"%s\"", s->db, werr.msg);
        }
    }
    if (rc != TM_OK) {
        tm_sqlite_ship_free(s);
        return rc;
    }
    *out = s;
    return TM_OK;
}

void tm_sqlite_ship_free(tm_sqlite_shipper *s)
{
    if (s == NULL) {
        return;
    }
    sqlite3_close(s->w);
    sqlite3_close(s->r);
    sqlite3_close(s->c);
    tm_sqlite_watch_free(s->watch);
    batch_free(&s->deferred);
    free(s);
}

uint32_t tm_sqlite_ship_chain(const tm_sqlite_shipper *s)
{
    return s->chain;
}

/* ---- the spool: objects written durably under the lock, uploaded after ---- */

static void spool_path(const tm_sqlite_shipper *s, const char *rel, char *out, size_t cap)
{
    /* "<chain>/<name>" as one file name: "<chain>_<name>". */
    snprintf(out, cap, "%s/%.8s_%s", s->spool, rel, rel + 9);
}

static int spool_write(tm_sqlite_shipper *s, const char *rel, const void *buf, size_t len,
                       tm_err *err)
{
    char p[PATH_MAX + REL_MAX];
    spool_path(s, rel, p, sizeof(p));
    return tm_file_write_atomic(p, buf, len, 0600, err);
}

static int cmp_str(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

/* The range a stored object adds, for the report (from its name). */
static void report(tm_sqlite_shipper *s, const char *rel, uint64_t bytes)
{
    tm_sqlite_name n;
    if (s->sink.report == NULL || tm_sqlite_name_parse(rel, &n) != TM_OK || n.kind == 'd') {
        return;
    }
    tm_log_range r = {.chain = n.chain,
                      .bytes = bytes,
                      .objects = 1,
                      .start_time = n.time_ms / 1000,
                      .end_time = n.time_ms / 1000};
    if (n.kind == 'g') {
        tm_sqlite_pos_fmt(r.start, sizeof(r.start), 0, n.last);
    } else {
        tm_sqlite_pos_fmt(r.start, sizeof(r.start), n.wal, n.first);
    }
    tm_sqlite_pos_fmt(r.end, sizeof(r.end), n.wal, n.last);
    s->sink.report(s->sink.arg, &r);
}

static void names_free(char **names, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        free(names[i]);
    }
    free(names);
}

/* The spooled objects' rels, sorted (the shipping order). Files that are
 * not objects (a temporary file of a write or copy that was killed) are
 * removed when clean is set. */
static int spool_list(tm_sqlite_shipper *s, int clean, char ***out, size_t *nout, tm_err *err)
{
    DIR *d = opendir(s->spool);
    if (d == NULL) {
        return tm_err_set(err, TM_EIO, "open spool %s: %s", s->spool, strerror(errno));
    }
    char **names = NULL;
    size_t n = 0, cap = 0;
    int rc = TM_OK;
    struct dirent *de;
    while ((de = readdir(d)) != NULL) {
        char rel[REL_MAX];
        tm_sqlite_name nm;
        size_t len = strlen(de->d_name);
        if (de->d_name[0] == '.') {
            continue;
        }
        if (len >= sizeof(rel) || len < 10 || de->d_name[8] != '_') {
            if (clean) {
                unlinkat(dirfd(d), de->d_name, 0);
            }
            continue;
        }
        memcpy(rel, de->d_name, len + 1); /* length checked above */
        rel[8] = '/';
        if (tm_sqlite_name_parse(rel, &nm) != TM_OK) {
            if (clean) {
                unlinkat(dirfd(d), de->d_name, 0);
            }
            continue;
        }
        if (n == cap) {
            cap = cap ? cap * 2 : 16;
            char **nn = realloc(names, cap * sizeof(*names));
            if (nn == NULL) {
                rc = tm_err_set(err, TM_ENOMEM, "spool listing");
                break;
            }
            names = nn;
        }
        names[n] = strdup(rel);
        if (names[n] == NULL) {
            rc = tm_err_set(err, TM_ENOMEM, "spool listing");
            break;
        }
        n++;
    }
    closedir(d);
    if (rc != TM_OK) {
        names_free(names, n);
        return rc;
    }
    if (n > 1) {
        qsort(names, n, sizeof(*names), cmp_str);
    }
    *out = names;
    *nout = n;
    return TM_OK;
}

/* After a restart: a segment spooled beyond the saved position (the agent
 * died between writing it and saving the position) is dropped; the next
 * tick reads its frames again from the WAL, under another name, and a
 * restore would otherwise meet two overlapping segments. */
static void prune_spool(tm_sqlite_shipper *s)
{
    char **names = NULL;
    size_t n = 0;
    if (spool_list(s, 1, &names, &n, NULL) != TM_OK) {
        return;
    }
    for (size_t i = 0; i < n; i++) {
        tm_sqlite_name nm;
        if (tm_sqlite_name_parse(names[i], &nm) == TM_OK && nm.kind == 'w' &&
            nm.chain == s->chain &&
            (nm.wal > s->walidx || (nm.wal == s->walidx && nm.first > s->pos.frames))) {
            char p[PATH_MAX + REL_MAX];
            spool_path(s, names[i], p, sizeof(p));
            unlink(p);
        }
    }
    names_free(names, n);
}

/* Store every spooled object in name order, removing each once stored;
 * what is left is counted as pending. */
static int upload(tm_sqlite_shipper *s, tm_sqlite_tick *info, tm_err *err)
{
    char **names = NULL;
    size_t n = 0, done = 0;
    int rc = spool_list(s, 0, &names, &n, err);
    if (rc != TM_OK) {
        return rc;
    }
    for (size_t i = 0; rc == TM_OK && i < n; i++) {
        char p[PATH_MAX + REL_MAX];
        spool_path(s, names[i], p, sizeof(p));
        int fd = open(p, O_RDONLY | O_CLOEXEC);
        struct stat st;
        if (fd < 0 || fstat(fd, &st) != 0) {
            rc = tm_err_set(err, TM_EIO, "open spooled %s: %s", p, strerror(errno));
            if (fd >= 0) {
                close(fd);
            }
            break;
        }
        rc = s->sink.store(s->sink.arg, names[i], fd, err);
        if (rc == TM_OK) {
            report(s, names[i], (uint64_t)st.st_size);
            unlink(p);
            done++;
        } else {
            tm_err_prefix(err, "store %s", names[i]);
            info->upload_failed = 1;
        }
        close(fd);
    }
    info->pending = 0;
    info->pending_bytes = 0;
    for (size_t k = done; k < n; k++) {
        char p[PATH_MAX + REL_MAX];
        struct stat st;
        spool_path(s, names[k], p, sizeof(p));
        if (stat(p, &st) == 0) {
            info->pending++;
            info->pending_bytes += (uint64_t)st.st_size;
        }
    }
    names_free(names, n);
    return rc;
}

/* ---- reading the WAL ---- */

static void batch_free(batch *b)
{
    free(b->buf);
    free(b->commits);
    free(b->stamps);
}

static int read_batch(int fd, const tm_sqlite_wal *pos, int64_t now, batch *b, tm_err *err)
{
    memset(b, 0, sizeof(*b));
    b->end = *pos;
    tm_sqlite_wal w = *pos;
    size_t fs = tm_sqlite_wal_frame_size(&w.h), committed = 0;
    for (;;) {
        if (b->cap - b->len < fs) {
            size_t nc = b->cap ? b->cap * 2 : fs * 64;
            uint8_t *nb = realloc(b->buf, nc);
            if (nb == NULL) {
                return tm_err_set(err, TM_ENOMEM, "WAL batch of %zu bytes", nc);
            }
            b->buf = nb;
            b->cap = nc;
        }
        size_t got = 0;
        int rc = tm_sqlite_wal_pread(fd, b->buf + b->len, fs,
                                     tm_sqlite_wal_frame_offset(&w.h, w.frames + 1), &got, err);
        if (rc != TM_OK) {
            return rc;
        }
        tm_sqlite_wal_frame fr;
        if (got < fs || !tm_sqlite_wal_next(&w, b->buf + b->len, fs, &fr)) {
            break;
        }
        b->len += fs;
        if (fr.db_size == 0) {
            continue;
        }
        if (b->ncommits == b->capc) {
            b->capc = b->capc ? b->capc * 2 : 64;
            tm_sqlite_commit *nc = realloc(b->commits, b->capc * sizeof(*nc));
            if (nc == NULL) {
                return tm_err_set(err, TM_ENOMEM, "WAL batch commits");
            }
            b->commits = nc;
            tm_sqlite_watch_commit *ns = realloc(b->stamps, b->capc * sizeof(*ns));
            if (ns == NULL) {
                return tm_err_set(err, TM_ENOMEM, "WAL batch commits");
            }
            b->stamps = ns;
        }
        b->stamps[b->ncommits] =
            (tm_sqlite_watch_commit){.frame = w.frames, .cksum1 = fr.cksum1, .cksum2 = fr.cksum2};
        b->commits[b->ncommits++] = (tm_sqlite_commit){
            .frame = (uint32_t)(w.frames - pos->frames), .db_size = fr.db_size, .time_ms = now};
        b->end = w;
        committed = b->len;
    }
    b->len = committed; /* frames of a transaction still being written wait */
    return TM_OK;
}

/* Open the WAL and read its header: TM_ENOENT when there is none yet. */
static int open_wal(tm_sqlite_shipper *s, int *fd, tm_sqlite_wal_hdr *h, tm_err *err)
{
    *fd = open(s->wal, O_RDONLY | O_CLOEXEC);
    if (*fd < 0) {
        if (errno == ENOENT) {
            return tm_err_set(err, TM_ENOENT, "no WAL file");
        }
        return tm_err_set(err, TM_EIO, "open %s: %s", s->wal, strerror(errno));
    }
    int rc = tm_sqlite_wal_read_hdr(*fd, h, err);
    if (rc != TM_OK) {
        close(*fd);
        *fd = -1;
    }
    return rc;
}

/* (Re)take the read transaction. held is set again by the caller that
 * takes it under the write lock at the shipped position. */
static int take_reader(tm_sqlite_shipper *s, tm_err *err)
{
    s->held = 0;
    if (s->reading) {
        sqlite3_exec(s->r, "ROLLBACK", NULL, NULL, NULL);
        s->reading = 0;
    }
    int rc = tm_sqlite_db_begin_read(s->r, err);
    s->reading = rc == TM_OK;
    return rc;
}

/* Under the write lock: the new generation's first position is the end of
 * what is committed now, and the reader is taken there (the snapshot runs
 * from it after the lock). */
static int start_generation(tm_sqlite_shipper *s, const char *why, tm_sqlite_tick *info,
                            tm_err *err)
{
    snprintf(info->why, sizeof(info->why), "%s", why);
    info->reset = s->have && s->force_first == 0;
    if (info->reset) {
        snprintf(s->reset_pos, sizeof(s->reset_pos), "%08" PRIx32 ":%08" PRIx32 ".%016" PRIx64,
                 s->chain, s->walidx, s->pos.frames);
    }
    s->force_first = 0;
    int fd = -1;
    tm_sqlite_wal_hdr h;
    int rc = open_wal(s, &fd, &h, err);
    memset(&s->pos, 0, sizeof(s->pos));
    s->have_hdr = 0;
    if (rc == TM_OK) {
        tm_sqlite_wal_begin(&s->pos, &h);
        batch b;
        rc = read_batch(fd, &s->pos, 0, &b, err);
        s->pos = b.end;
        batch_free(&b);
        s->have_hdr = 1;
        close(fd);
    } else if (rc == TM_ENOENT) {
        tm_err_clear(err);
        rc = TM_OK;
    }
    struct stat st;
    if (rc == TM_OK && stat(s->db, &st) != 0) {
        rc = tm_err_set(err, TM_EIO, "stat %s: %s", s->db, strerror(errno));
    }
    if (rc == TM_OK) {
        rc = take_reader(s, err);
    }
    if (rc != TM_OK) {
        return rc;
    }
    /* The base holds every commit up to now: its time (a restore to a time
     * from this time on may start from it). */
    s->snap_ms = now_ms();
    uint32_t now_s = (uint32_t)(s->snap_ms / 1000);
    s->chain = s->chain + 1 > now_s ? s->chain + 1 : now_s;
    s->walidx = 0;
    s->ino = (uint64_t)st.st_ino;
    s->dev = (uint64_t)st.st_dev;
    s->have = 1;
    s->snap_done = 0;
    s->snap_pending = 1;
    s->held = 1;
    s->verified = 1;
    s->restart_ok = 0;
    s->prev_last = 0;
    s->force[0] = '\0';
    info->new_generation = 1;
    return save(s, err);
}

/* The snapshot of a new generation, from the reader, then its description. */
static int snapshot(tm_sqlite_shipper *s, tm_err *err)
{
    char rel[REL_MAX], p[PATH_MAX + REL_MAX];
    tm_sqlite_name nm = {.kind = 'd', .chain = s->chain};
    tm_sqlite_name_fmt(rel, sizeof(rel), &nm);
    spool_path(s, rel, p, sizeof(p));
    tm_sqlite_copy_opts so = {.pages_per_step = s->o.snap_pages,
                              .sleep_ms = s->o.snap_sleep_ms,
                              .busy_ms = s->o.busy_ms,
                              .cancelled = s->o.cancelled,
                              .arg = s->o.cancel_arg};
    tm_sqlite_copy_info si;
    unlink(p); /* a copy spooled by a run that died before the chain's description */
    int rc = tm_sqlite_copy_conn(s->r, p, &so, &si, err);
    if (rc != TM_OK) {
        return rc;
    }
    const tm_sqlite_wal *q = &s->pos;
    char b[512];
    int n = snprintf(b, sizeof(b),
                     "tidemark-sqlite-generation 1\nchain %" PRIu32 "\npage %" PRIu32
                     "\nhdr %d\nsalt %" PRIu32 " %" PRIu32 "\nckpt %" PRIu32 "\nframes %" PRIu64
                     "\ns %" PRIu32 " %" PRIu32 "\ntime_ms %" PRId64 "\nbytes %" PRIu64 "\n",
                     s->chain, si.page_size, s->have_hdr, q->h.salt1, q->h.salt2, q->h.ckpt_seq,
                     q->frames, q->s1, q->s2, s->snap_ms, si.bytes);
    nm = (tm_sqlite_name){.kind = 'g', .chain = s->chain, .last = q->frames, .time_ms = s->snap_ms};
    tm_sqlite_name_fmt(rel, sizeof(rel), &nm);
    return spool_write(s, rel, b, (size_t)n, err);
}

/* PRAGMA data_version of the checkpoint connection: it changes when any
 * other connection commits (and not for checkpoints). */
static int64_t data_version(tm_sqlite_shipper *s)
{
    sqlite3_stmt *st = NULL;
    int64_t v = -1;
    if (sqlite3_prepare_v2(s->c, "PRAGMA data_version", -1, &st, NULL) == SQLITE_OK &&
        sqlite3_step(st) == SQLITE_ROW) {
        v = sqlite3_column_int64(st, 0);
    }
    sqlite3_finalize(st);
    return v;
}

/* A restarted shipper: the WAL is the one it saved (same salts), and its
 * frame at the saved position still carries the checksum saved with it. */
static int last_frame_there(const tm_sqlite_shipper *s, int fd)
{
    if (s->pos.frames == 0) {
        return 1;
    }
    uint8_t fh[TM_SQLITE_WAL_FRAME_HDR];
    size_t got = 0;
    tm_err e = {0};
    if (tm_sqlite_wal_pread(fd, fh, sizeof(fh),
                            tm_sqlite_wal_frame_offset(&s->pos.h, s->pos.frames), &got,
                            &e) != TM_OK ||
        got != sizeof(fh)) {
        return 0;
    }
    uint32_t v[4];
    for (int i = 0; i < 4; i++) {
        v[i] = tm_sqlite_wal_be32(fh + 8 + 4 * i);
    }
    return v[0] == s->pos.h.salt1 && v[1] == s->pos.h.salt2 && v[2] == s->pos.s1 &&
           v[3] == s->pos.s2;
}

/* The commits of b timed by the observer (watch.h): when each was first
 * seen committed, never later than now (the tick that read it). */
static void stamp(tm_sqlite_shipper *s, batch *b, int64_t now)
{
    if (b->ncommits == 0) {
        return;
    }
    tm_sqlite_watch_stamp(s->watch, b->end.h.salt1, b->end.h.salt2, b->stamps, b->ncommits, now);
    for (uint32_t i = 0; i < b->ncommits; i++) {
        b->commits[i].time_ms = b->stamps[i].time_ms;
    }
}

/* The batch read after the position as one segment in the spool (fsync),
 * then the position saved: only then does the position move. */
static int spool_batch(tm_sqlite_shipper *s, const batch *b, tm_sqlite_tick *info, tm_err *err)
{
    tm_sqlite_seg seg = {.chain = s->chain,
                         .wal = s->pos.h,
                         .s1 = s->pos.s1,
                         .s2 = s->pos.s2,
                         .first_frame = s->pos.frames + 1,
                         .prev_last = s->pos.frames == 0 ? s->prev_last : 0,
                         .nframes = (uint32_t)(b->end.frames - s->pos.frames),
                         .ncommits = b->ncommits,
                         .commits = b->commits,
                         .frames = b->buf};
    uint8_t *obj = NULL;
    size_t len = 0;
    char rel[REL_MAX];
    tm_sqlite_name nm = {.kind = 'w',
                         .chain = s->chain,
                         .wal = s->walidx,
                         .first = seg.first_frame,
                         .last = b->end.frames,
                         .time_ms = b->commits[b->ncommits - 1].time_ms};
    tm_sqlite_name_fmt(rel, sizeof(rel), &nm);
    int rc = tm_sqlite_seg_encode(&seg, &obj, &len, err);
    if (rc == TM_OK) {
        rc = spool_write(s, rel, obj, len, err);
    }
    free(obj);
    if (rc == TM_OK) {
        tm_sqlite_wal before = s->pos;
        s->pos = b->end;
        rc = save(s, err);
        if (rc != TM_OK) {
            s->pos = before;
        }
        info->commits = b->ncommits;
        info->frames = seg.nframes;
        info->bytes = len;
    }
    return rc;
}

/* Under the write lock. */
static int locked_tick(tm_sqlite_shipper *s, int64_t now, tm_sqlite_tick *info, tm_err *err)
{
    char why[TM_ERR_MSG_MAX] = "";
    struct stat st;
    if (!s->have) {
        snprintf(why, sizeof(why), "first run");
    } else if (s->force[0] != '\0') {
        snprintf(why, sizeof(why), "%s", s->force);
    } else if (!s->snap_done) {
        snprintf(why, sizeof(why), "the generation's snapshot did not finish");
    } else if (stat(s->db, &st) != 0 || (uint64_t)st.st_ino != s->ino ||
               (uint64_t)st.st_dev != s->dev) {
        snprintf(why, sizeof(why), "database file %.300s was replaced", s->db);
    }
    int fd = -1;
    tm_sqlite_wal_hdr h;
    int rc = why[0] != '\0' ? TM_OK : open_wal(s, &fd, &h, err);
    int cont = s->held || s->restart_ok;
    if (why[0] != '\0') {
        /* decided */
    } else if (rc == TM_ENOENT) {
        /* An empty WAL: nothing new, unless it was reset while nobody
         * protected the shipped position. */
        tm_err_clear(err);
        rc = TM_OK;
        if (s->have_hdr && !cont) {
            snprintf(why, sizeof(why), "the WAL was reset while the agent was not running");
        }
    } else if (rc != TM_OK) {
        snprintf(why, sizeof(why), "the WAL is unreadable: %.400s", err->msg);
        tm_err_clear(err);
        rc = TM_OK;
    } else if (s->have_hdr && tm_sqlite_wal_same_wal(&s->pos.h, &h)) {
        if (!s->verified && !last_frame_there(s, fd)) {
            snprintf(why, sizeof(why),
                     "the WAL no longer holds the last shipped frame %" PRIu64
                     " with its checksum (rewritten while the agent was not running)",
                     s->pos.frames);
        }
        s->verified = 1;
    } else {
        /* A new WAL header. While our reader was held from the shipped
         * position on, the locks allow exactly one restart, right there
         * (see ship.h): the chain goes on in the new WAL. The header's own
         * numbers prove nothing: the connection that restarts writes its
         * own checkpoint count (random salts when it never restarted one
         * itself), so they need not be the old ones plus one. */
        int next = !s->have_hdr || h.page_size == s->pos.h.page_size;
        if (cont && next) {
            if (s->have_hdr) {
                s->prev_last = s->pos.frames;
                s->walidx++;
                info->wal_restarted = 1;
            }
            tm_sqlite_wal_begin(&s->pos, &h);
            s->have_hdr = 1;
        } else {
            snprintf(why, sizeof(why),
                     "the WAL was restarted or replaced %s (salt %08" PRIx32 " -> %08" PRIx32
                     ", checkpoint %" PRIu32 " -> %" PRIu32 ")",
                     cont ? "with another page size" : "while the agent was not running",
                     s->pos.h.salt1, h.salt1, s->pos.h.ckpt_seq, h.ckpt_seq);
        }
    }
    if (why[0] != '\0') {
        if (fd >= 0) {
            close(fd);
        }
        return start_generation(s, why, info, err);
    }
    if (fd >= 0) {
        batch b;
        rc = read_batch(fd, &s->pos, now, &b, err);
        close(fd);
        if (rc == TM_OK) {
            stamp(s, &b, now);
        }
        /* With the reader held from before (not taken again in this tick,
         * no hand-over), the frames stay in the WAL whatever happens: the
         * segment is written and synced after the lock, so the application
         * waits only for the read. Otherwise it is spooled here. */
        if (rc == TM_OK && b.ncommits > 0 && s->reading && s->held && !s->restart_due) {
            s->deferred = b;
            s->has_deferred = 1;
            memset(&b, 0, sizeof(b));
        } else if (rc == TM_OK && b.ncommits > 0) {
            rc = spool_batch(s, &b, info, err);
        }
        batch_free(&b);
        if (rc != TM_OK) {
            return rc;
        }
    }
    if (s->restart_due) {
        /* Everything is shipped and no one writes: once this checkpoint
         * has copied the last frames, the reader lands on mark 0 and the
         * next writer restarts the WAL right at the shipped position. */
        if (s->reading) {
            sqlite3_exec(s->r, "ROLLBACK", NULL, NULL, NULL);
            s->reading = 0;
        }
        sqlite3_wal_checkpoint_v2(s->c, NULL, SQLITE_CHECKPOINT_PASSIVE, NULL, NULL);
        s->restart_due = 0;
        info->checkpointed = 1;
        info->handed_over = 1;
    }
    if (!s->reading || !s->held) {
        rc = take_reader(s, err);
    }
    if (rc == TM_OK) {
        s->held = 1;
        s->restart_ok = 0;
    }
    s->dv_locked = rc == TM_OK ? data_version(s) : -1;
    return rc;
}

/* TRUNCATE when the WAL file outgrew its bound. It needs the write lock, so
 * it runs outside ours, right after it: a commit that slipped in between
 * would be checkpointed and truncated away unshipped. SQLite reports no
 * frame count after a TRUNCATE (the WAL is empty by then), so the proof is
 * data_version: unchanged since the shipper read it under its lock means no
 * commit came in between, and the WAL restarted exactly at the shipped
 * position; changed means a new chain, never a silent gap. */
static void maybe_truncate(tm_sqlite_shipper *s, tm_sqlite_tick *info)
{
    struct stat st;
    if (stat(s->wal, &st) != 0 || (uint64_t)st.st_size <= s->o.truncate_bytes || s->dv_locked < 0 ||
        data_version(s) != s->dv_locked) {
        return; /* small enough, or commits arrived already: the next tick */
    }
    if (s->reading) {
        sqlite3_exec(s->r, "ROLLBACK", NULL, NULL, NULL);
        s->reading = 0;
    }
    s->held = 0;
    int nlog = -1, nckpt = -1;
    int rc = sqlite3_wal_checkpoint_v2(s->c, NULL, SQLITE_CHECKPOINT_TRUNCATE, &nlog, &nckpt);
    info->checkpointed = 1;
    if (rc == SQLITE_OK && data_version(s) != s->dv_locked) {
        snprintf(s->force, sizeof(s->force),
                 "a TRUNCATE checkpoint (WAL above %" PRIu64
                 " bytes) ran after commits the shipper had not read",
                 s->o.truncate_bytes);
    } else if (rc == SQLITE_OK) {
        s->restart_ok = 1; /* the WAL now starts again right at our position */
    }
    /* BUSY: nothing was reset (a reader still used the WAL). The reader
     * again; held stays 0: it was not taken at the shipped position under
     * the lock, so a restart seen before the next tick is trusted only after
     * our own TRUNCATE. */
    tm_err e = {0};
    take_reader(s, &e);
}

/* The database file was replaced (renamed over, restored): the
 * connections still hold the old file, so they are opened again, and the
 * next locked tick starts a new chain. */
static int reopen_if_replaced(tm_sqlite_shipper *s, tm_err *err)
{
    struct stat st;
    if (!s->have || stat(s->db, &st) != 0 ||
        ((uint64_t)st.st_ino == s->ino && (uint64_t)st.st_dev == s->dev)) {
        return TM_OK; /* a missing file fails the lock below, with its name */
    }
    sqlite3_close(s->w);
    sqlite3_close(s->r);
    sqlite3_close(s->c);
    s->w = s->r = s->c = NULL;
    s->reading = s->held = 0;
    snprintf(s->force, sizeof(s->force),
             "database file %.300s was replaced (inode %" PRIu64 " -> %" PRIu64 ")", s->db, s->ino,
             (uint64_t)st.st_ino);
    return open_conns(s, err);
}

int tm_sqlite_ship_tick(tm_sqlite_shipper *s, tm_sqlite_tick *info, tm_err *err)
{
    tm_sqlite_tick local;
    if (info == NULL) {
        info = &local;
    }
    memset(info, 0, sizeof(*info));
    /* Leftovers first (a failed upload, a killed agent), in order. A
     * repository that is down does not stop the spooling: the read
     * transaction keeps the WAL, the spool keeps the segments. */
    tm_err uerr = {0};
    int urc = upload(s, info, &uerr);
    int rc = s->w == NULL ? open_conns(s, err) : reopen_if_replaced(s, err);
    if (rc != TM_OK) {
        return rc;
    }
    int64_t now = now_ms();
    if (s->have_hdr && s->pos.frames > 0 && !s->restart_due &&
        (now - s->last_ckpt_ms >= (int64_t)s->o.ckpt_ms || s->pos.frames >= s->o.ckpt_frames)) {
        /* The long part of a checkpoint, outside the lock: it copies up to
         * the reader's mark, i.e. what is shipped. */
        sqlite3_wal_checkpoint_v2(s->c, NULL, SQLITE_CHECKPOINT_PASSIVE, NULL, NULL);
        s->restart_due = 1;
        s->last_ckpt_ms = now;
        info->checkpointed = 1;
    }
    rc = tm_sqlite_db_exec(s->w, "BEGIN IMMEDIATE", err);
    if (rc != TM_OK) {
        return tm_err_prefix(err, "take the write lock of %s", s->db);
    }
    rc = locked_tick(s, now_ms(), info, err);
    sqlite3_exec(s->w, "ROLLBACK", NULL, NULL, NULL);
    if (s->has_deferred) {
        /* A failure leaves the position where it was: the reader still
         * holds the frames, the next tick reads them again. */
        int drc = rc == TM_OK ? spool_batch(s, &s->deferred, info, err) : rc;
        batch_free(&s->deferred);
        memset(&s->deferred, 0, sizeof(s->deferred));
        s->has_deferred = 0;
        rc = drc;
    }
    if (rc == TM_OK && !s->snap_pending) {
        maybe_truncate(s, info);
    }
    if (rc == TM_OK && s->snap_pending) {
        /* Spooled is durable: the chain's base is safe on this host even
         * while the repositories are down. */
        rc = snapshot(s, err);
        if (rc == TM_OK) {
            s->snap_pending = 0;
            s->snap_done = 1;
            rc = save(s, err);
        }
    }
    if (rc == TM_OK && urc == TM_OK) {
        urc = upload(s, info, &uerr);
    }
    info->chain = s->chain;
    if (rc == TM_OK && urc != TM_OK) {
        *err = uerr;
        info->upload_failed = 1;
        return urc;
    }
    return rc;
}

/* ---- notes for log_status: per target, in this process ---- */

typedef struct note_entry {
    char target[72]; /* target names are at most 64 bytes */
    tm_sqlite_ship_note n;
    struct note_entry *next;
} note_entry;

static pthread_mutex_t notes_mu = PTHREAD_MUTEX_INITIALIZER;
static note_entry *notes; /* lives as long as the process, reachable */

/* The entry of target, created on first use; called with notes_mu held. */
static note_entry *note_of(const char *target)
{
    for (note_entry *e = notes; e != NULL; e = e->next) {
        if (strcmp(e->target, target) == 0) {
            return e;
        }
    }
    note_entry *e = calloc(1, sizeof(*e));
    if (e != NULL) {
        snprintf(e->target, sizeof(e->target), "%s", target);
        e->next = notes;
        notes = e;
    }
    return e;
}

int tm_sqlite_ship_note_get(const char *target, tm_sqlite_ship_note *out)
{
    int found = 0;
    pthread_mutex_lock(&notes_mu);
    for (note_entry *e = notes; e != NULL; e = e->next) {
        if (strcmp(e->target, target) == 0) {
            *out = e->n;
            found = 1;
            break;
        }
    }
    pthread_mutex_unlock(&notes_mu);
    return found;
}

static void note_tick(const char *target, const tm_sqlite_shipper *s, const tm_sqlite_tick *info,
                      const tm_err *err)
{
    pthread_mutex_lock(&notes_mu);
    note_entry *e = note_of(target);
    if (e != NULL) {
        if (info->reset) {
            e->n.resets++;
            e->n.last_reset_ms = now_ms();
            snprintf(e->n.reset_why, sizeof(e->n.reset_why),
                     "generation reset: %.300s; new chain %08" PRIx32, info->why, info->chain);
            snprintf(e->n.reset_pos, sizeof(e->n.reset_pos), "%s", s->reset_pos);
        }
        if (info->upload_failed) {
            e->n.upload_failures++;
            e->n.last_upload_failure_ms = now_ms();
            snprintf(e->n.upload_why, sizeof(e->n.upload_why), "%s", err->msg);
        }
        e->n.pending = info->pending;
        e->n.pending_bytes = info->pending_bytes;
    }
    pthread_mutex_unlock(&notes_mu);
}

/* ---- the engine hook ---- */

static int stopping(void *arg)
{
    return tm_ship_stopping(arg);
}

static int sink_store(void *arg, const char *rel, int fd, tm_err *err)
{
    return tm_ship_store(arg, rel, fd, err);
}

static void sink_report(void *arg, const tm_log_range *r)
{
    tm_ship_report(arg, r);
}

/* Errors the shipper cannot wait out inside its loop: the database is
 * missing or refused (not WAL); the daemon runs the hook again after its
 * backoff and counts the failure. */
static int fatal(int rc)
{
    return rc == TM_ENOENT || rc == TM_ECONFIG || rc == TM_EPERM || rc == TM_ECORRUPT ||
           rc == TM_ENOMEM || rc == TM_EINVAL;
}

int tm_sqlite_ship(tm_ship_ctx *ctx, const tm_target_conf *t, tm_err *err)
{
    const tm_sqlite_target *st = tm_sqlite_target_of(t);
    if (st == NULL || st->path[0] == '\0') {
        return tm_err_set(
            err, TM_ECONFIG,
            "target %s has no sqlite: path: nothing to ship (add targets[].sqlite.path)", t->name);
    }
    if (st->glob) {
        return tm_err_set(err, TM_ECONFIG,
                          "target %s: path %s is a glob; each matching database is shipped as "
                          "its own target",
                          t->name, st->path);
    }
    char dir[PATH_MAX];
    int rc = tm_ship_state_dir(ctx, dir, sizeof(dir), err);
    if (rc != TM_OK) {
        return rc;
    }
    tm_sqlite_ship_opts o = {.db = st->path,
                             .state_dir = dir,
                             .busy_ms = (int)st->busy_timeout_ms,
                             .set_wal = st->set_wal,
                             .ckpt_ms = st->checkpoint_interval_ms,
                             .truncate_bytes = st->wal_max_bytes,
                             .snap_pages = 1024,
                             .snap_sleep_ms = 1,
                             .cancelled = stopping,
                             .cancel_arg = ctx};
    tm_sqlite_sink sink = {.store = sink_store, .report = sink_report, .arg = ctx};
    tm_sqlite_shipper *s = NULL;
    rc = tm_sqlite_ship_new(&o, &sink, &s, err);
    if (rc != TM_OK) {
        return rc;
    }
    uint32_t interval = st->ship_interval_ms > 0 ? st->ship_interval_ms : 1000;
    tm_info("sqlite", "event=wal_shipping target=%s db=%s interval_ms=%" PRIu32 " chain=%08" PRIx32,
            t->name, st->path, interval, tm_sqlite_ship_chain(s));
    while (!tm_ship_stopping(ctx)) {
        tm_sqlite_tick info;
        int64_t t0 = now_ms();
        rc = tm_sqlite_ship_tick(s, &info, err);
        note_tick(t->name, s, &info, err);
        tm_ship_pending(ctx, info.pending, info.pending_bytes);
        if (info.new_generation) {
            if (info.reset) {
                tm_warn("sqlite",
                        "event=generation_reset target=%s chain=%08" PRIx32 " old=%s why=\"%s\"",
                        t->name, info.chain, s->reset_pos, info.why);
            } else {
                tm_info("sqlite", "event=generation_start target=%s chain=%08" PRIx32 " why=\"%s\"",
                        t->name, info.chain, info.why);
            }
        }
        if (rc != TM_OK && (fatal(rc) || !info.upload_failed)) {
            if (fatal(rc)) {
                break;
            }
            /* A lock held past busy_timeout, an I/O error: the read
             * transaction is kept, the next tick tries again. */
            tm_warn("sqlite", "event=ship_tick_failed target=%s msg=\"%s\"", t->name, err->msg);
        } else if (rc != TM_OK) {
            tm_warn("sqlite", "event=upload_failed target=%s pending=%" PRIu32 " msg=\"%s\"",
                    t->name, info.pending, err->msg);
        }
        rc = TM_OK;
        int64_t took = now_ms() - t0;
        uint32_t next = info.handed_over && interval > 25 ? 25 : interval;
        tm_ship_wait(ctx, took >= next ? 1 : next - (uint32_t)took);
    }
    tm_sqlite_ship_free(s);
    return rc;
}

int tm_sqlite_ship_position(const tm_agent_conf *conf, const char *target, uint32_t *chain,
                            char *pos, size_t cap, tm_err *err)
{
    *chain = 0;
    if (cap > 0) {
        pos[0] = '\0';
    }
    char path[PATH_MAX];
    if ((size_t)snprintf(path, sizeof(path), "%s/ship/%s/position", conf->state_dir, target) >=
        sizeof(path)) {
        return tm_err_set(err, TM_EINVAL, "state_dir path too long");
    }
    tm_sqlite_shipper probe;
    memset(&probe, 0, sizeof(probe));
    snprintf(probe.state, sizeof(probe.state), "%s", path);
    int rc = load(&probe, err);
    if (rc != TM_OK) {
        return tm_err_prefix(err, "shipping position of %s", target);
    }
    if (!probe.have || probe.force[0] != '\0') {
        return TM_OK; /* nothing shipped, or a new chain is coming */
    }
    *chain = probe.chain;
    char p[TM_SQLITE_POS_LEN + 1];
    tm_sqlite_pos_fmt(p, sizeof(p), probe.walidx, probe.pos.frames);
    if ((size_t)snprintf(pos, cap, "%s", p) >= cap) {
        return tm_err_set(err, TM_EINVAL, "position buffer too small");
    }
    return TM_OK;
}
