/*
 * ship.c - the SQLite WAL shipper's tick (see ship.h for the argument).
 *
 * Three connections: `w` takes the write lock for the short critical part
 * of a tick, `r` holds the read transaction that protects what is not yet
 * shipped, `c` runs the shipper's checkpoints (a connection in a
 * transaction cannot).
 */
#include "agent/engines/sqlite/ship.h"
#include "agent/engines/sqlite/db.h"
#include "agent/engines/sqlite/segment.h"
#include "agent/engines/sqlite/snapshot.h"
#include "agent/engines/sqlite/wal.h"
#include "common/util.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define REL_MAX TM_SQLITE_NAME_MAX

struct tm_sqlite_ship {
    tm_sqlite_ship_opts o;
    tm_sqlite_sink sink;
    char db[PATH_MAX], wal[PATH_MAX + 8], spool[PATH_MAX], state[PATH_MAX];
    sqlite3 *w, *r, *c;
    int reading;                /* r holds a read transaction */
    int held;                   /* ... taken under the write lock at the shipped position */
    int restart_ok;             /* our own TRUNCATE reset the WAL at the shipped position */
    int restart_due;            /* re-take r after a checkpoint so the WAL can restart */
    int snap_pending;           /* a new generation's snapshot is to be taken */
    uint64_t prev_last;         /* the WAL restarted: the last frame shipped of the one before */
    char force[TM_ERR_MSG_MAX]; /* the next tick starts a new generation: why */
    /* The saved position. */
    int have, snap_done, have_hdr;
    uint32_t gen, walidx;
    tm_sqlite_wal pos; /* after the last shipped commit of the current WAL */
    uint64_t ino, dev;
    int64_t snap_ms;
};

static int64_t now_ms(void)
{
    return tm_now_ms();
}

static void prune_spool(tm_sqlite_ship *s);

static int save(tm_sqlite_ship *s, tm_err *err)
{
    char b[1024];
    const tm_sqlite_wal *p = &s->pos;
    int n = snprintf(b, sizeof(b),
                     "tidemark-sqlite-ship 1\ngen %" PRIu32 "\nwal %" PRIu32 "\nsnap %d\nhdr %d\n"
                     "magic %" PRIu32 "\npage %" PRIu32 "\nckpt %" PRIu32 "\nsalt %" PRIu32
                     " %" PRIu32 "\ncksum %" PRIu32 " %" PRIu32 "\nframes %" PRIu64 "\ns %" PRIu32
                     " %" PRIu32 "\ncommit %" PRIu64 " %" PRIu32 "\nfile %" PRIu64 " %" PRIu64 "\n",
                     s->gen, s->walidx, s->snap_done, s->have_hdr, p->h.magic, p->h.page_size,
                     p->h.ckpt_seq, p->h.salt1, p->h.salt2, p->h.cksum1, p->h.cksum2, p->frames,
                     p->s1, p->s2, p->commit, p->db_size, s->ino, s->dev);
    int rc = tm_file_write_atomic(s->state, b, (size_t)n, 0600, err);
    return rc == TM_OK ? TM_OK : tm_err_prefix(err, "save shipper position");
}

static int load(tm_sqlite_ship *s, tm_err *err)
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
                     "tidemark-sqlite-ship 1\ngen %" SCNu32 "\nwal %" SCNu32 "\nsnap %d\nhdr %d\n"
                     "magic %" SCNu32 "\npage %" SCNu32 "\nckpt %" SCNu32 "\nsalt %" SCNu32
                     " %" SCNu32 "\ncksum %" SCNu32 " %" SCNu32 "\nframes %" SCNu64 "\ns %" SCNu32
                     " %" SCNu32 "\ncommit %" SCNu64 " %" SCNu32 "\nfile %" SCNu64 " %" SCNu64,
                     &s->gen, &s->walidx, &s->snap_done, &s->have_hdr, &h.magic, &h.page_size,
                     &h.ckpt_seq, &h.salt1, &h.salt2, &h.cksum1, &h.cksum2, &frames, &s1, &s2,
                     &commit, &dbsize, &s->ino, &s->dev);
    free(b);
    if (got != 18) {
        /* Not silently: a position we cannot read means a new generation. */
        s->have = 1;
        snprintf(s->force, sizeof(s->force), "the saved position %.300s is unreadable", s->state);
        return TM_OK;
    }
    s->have = 1;
    tm_sqlite_wal_resume(&s->pos, &h, frames, s1, s2, commit, dbsize);
    return TM_OK;
}

int tm_sqlite_ship_new(const tm_sqlite_ship_opts *o, const tm_sqlite_sink *sink,
                       tm_sqlite_ship **out, tm_err *err)
{
    tm_sqlite_ship *s = calloc(1, sizeof(*s));
    if (s == NULL) {
        return tm_err_set(err, TM_ENOMEM, "sqlite shipper");
    }
    s->o = *o;
    s->sink = *sink;
    if (s->o.busy_ms <= 0) {
        s->o.busy_ms = 5000;
    }
    if (s->o.ckpt_frames == 0) {
        s->o.ckpt_frames = 1000;
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
        rc = tm_sqlite_db_open(s->db, s->o.busy_ms, o->set_wal, &s->w, err);
    }
    if (rc == TM_OK) {
        rc = tm_sqlite_db_open(s->db, s->o.busy_ms, 0, &s->r, err);
    }
    if (rc == TM_OK) {
        rc = tm_sqlite_db_open(s->db, s->o.busy_ms, 0, &s->c, err);
    }
    if (rc == TM_OK) {
        rc = load(s, err);
    }
    if (rc == TM_OK && s->have) {
        prune_spool(s);
    }
    if (rc != TM_OK) {
        tm_sqlite_ship_free(s);
        return rc;
    }
    *out = s;
    return TM_OK;
}

void tm_sqlite_ship_free(tm_sqlite_ship *s)
{
    if (s == NULL) {
        return;
    }
    sqlite3_close(s->w);
    sqlite3_close(s->r);
    sqlite3_close(s->c);
    free(s);
}

uint32_t tm_sqlite_ship_generation(const tm_sqlite_ship *s)
{
    return s->gen;
}

static void pos_str(char *out, size_t cap, uint32_t wal, uint64_t frame)
{
    snprintf(out, cap, "%08" PRIx32 ".%016" PRIx64, wal, frame);
}

/* ---- the spool: objects written durably under the lock, uploaded after ---- */

static void spool_path(const tm_sqlite_ship *s, const char *rel, char *out, size_t cap)
{
    /* "<gen>/<name>" as one file name: "<gen>_<name>". */
    snprintf(out, cap, "%s/%.8s_%s", s->spool, rel, rel + 9);
}

static int spool_write(tm_sqlite_ship *s, const char *rel, const void *buf, size_t len, tm_err *err)
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
static void report(tm_sqlite_ship *s, const char *rel, uint64_t bytes)
{
    tm_sqlite_name n;
    if (s->sink.report == NULL || tm_sqlite_name_parse(rel, &n) != TM_OK || n.kind == 'd') {
        return;
    }
    tm_log_range r = {.chain = n.gen,
                      .bytes = bytes,
                      .objects = 1,
                      .start_time = n.time_ms / 1000,
                      .end_time = n.time_ms / 1000};
    if (n.kind == 'g') {
        pos_str(r.start, sizeof(r.start), 0, n.last);
    } else {
        pos_str(r.start, sizeof(r.start), n.wal, n.first);
    }
    pos_str(r.end, sizeof(r.end), n.wal, n.last);
    s->sink.report(s->sink.arg, &r);
}

/* After a restart: a segment spooled beyond the saved position (the agent
 * died between writing it and saving the position) is dropped; the next
 * tick reads its frames again from the WAL, under another name, and a
 * restore would otherwise meet two overlapping segments. */
static void prune_spool(tm_sqlite_ship *s)
{
    DIR *d = opendir(s->spool);
    struct dirent *de;
    while (d != NULL && (de = readdir(d)) != NULL) {
        char rel[REL_MAX];
        tm_sqlite_name nm;
        if (strlen(de->d_name) >= sizeof(rel) || strlen(de->d_name) < 10 || de->d_name[8] != '_') {
            continue;
        }
        memcpy(rel, de->d_name, strlen(de->d_name) + 1); /* length checked above */
        rel[8] = '/';
        if (tm_sqlite_name_parse(rel, &nm) == TM_OK && nm.kind == 'w' && nm.gen == s->gen &&
            (nm.wal > s->walidx || (nm.wal == s->walidx && nm.first > s->pos.frames))) {
            unlinkat(dirfd(d), de->d_name, 0);
        }
    }
    if (d != NULL) {
        closedir(d);
    }
}

/* Store every spooled object in name order (the shipping order), removing
 * each once stored. */
static int upload(tm_sqlite_ship *s, tm_err *err)
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
        if (strlen(de->d_name) >= sizeof(rel) || strlen(de->d_name) < 10 || de->d_name[8] != '_') {
            continue; /* ".", "..", a temporary file */
        }
        memcpy(rel, de->d_name, strlen(de->d_name) + 1); /* length checked above */
        rel[8] = '/';
        if (tm_sqlite_name_parse(rel, &nm) != TM_OK) {
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
    if (rc == TM_OK && n > 1) {
        qsort(names, n, sizeof(*names), cmp_str);
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
        } else {
            tm_err_prefix(err, "store %s", names[i]);
        }
        close(fd);
    }
    for (size_t i = 0; i < n; i++) {
        free(names[i]);
    }
    free(names);
    return rc;
}

/* ---- reading the WAL ---- */

/* The frames committed after pos, up to the last commit in the file. */
typedef struct batch {
    uint8_t *buf;
    size_t len, cap;
    tm_sqlite_commit *commits;
    uint32_t ncommits, capc;
    tm_sqlite_wal end; /* the position after the last commit */
} batch;

static void batch_free(batch *b)
{
    free(b->buf);
    free(b->commits);
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
        }
        b->commits[b->ncommits++] = (tm_sqlite_commit){
            .frame = (uint32_t)(w.frames - pos->frames), .db_size = fr.db_size, .time_ms = now};
        b->end = w;
        committed = b->len;
    }
    b->len = committed; /* frames of a transaction still being written wait */
    return TM_OK;
}

/* Open the WAL and read its header: TM_ENOENT when there is none yet. */
static int open_wal(tm_sqlite_ship *s, int *fd, tm_sqlite_wal_hdr *h, tm_err *err)
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

static int take_reader(tm_sqlite_ship *s, tm_err *err)
{
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
static int start_generation(tm_sqlite_ship *s, const char *why, tm_sqlite_tick *info, tm_err *err)
{
    snprintf(info->why, sizeof(info->why), "%s", why);
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
    uint32_t now_s = (uint32_t)(now_ms() / 1000);
    s->gen = s->gen + 1 > now_s ? s->gen + 1 : now_s;
    s->walidx = 0;
    s->ino = (uint64_t)st.st_ino;
    s->dev = (uint64_t)st.st_dev;
    s->have = 1;
    s->snap_done = 0;
    s->snap_pending = 1;
    s->held = 1;
    s->restart_ok = 0;
    s->force[0] = '\0';
    info->new_generation = 1;
    return save(s, err);
}

/* The snapshot of a new generation, from the reader, then its description. */
static int snapshot(tm_sqlite_ship *s, tm_err *err)
{
    char rel[REL_MAX], p[PATH_MAX + REL_MAX];
    tm_sqlite_name nm = {.kind = 'd', .gen = s->gen};
    tm_sqlite_name_fmt(rel, sizeof(rel), &nm);
    spool_path(s, rel, p, sizeof(p));
    tm_sqlite_snap_opts so = {.pages_per_step = s->o.snap_pages, .sleep_ms = s->o.snap_sleep_ms};
    tm_sqlite_snap_info si;
    int rc = tm_sqlite_snapshot(s->r, p, &so, &si, err);
    if (rc != TM_OK) {
        return rc;
    }
    s->snap_ms = now_ms();
    const tm_sqlite_wal *q = &s->pos;
    char b[512];
    int n = snprintf(b, sizeof(b),
                     "tidemark-sqlite-generation 1\ngen %" PRIu32 "\npage %" PRIu32
                     "\nhdr %d\nsalt %" PRIu32 " %" PRIu32 "\nckpt %" PRIu32 "\nframes %" PRIu64
                     "\ns %" PRIu32 " %" PRIu32 "\ntime_ms %" PRId64 "\nbytes %" PRIu64 "\n",
                     s->gen, si.page_size, s->have_hdr, q->h.salt1, q->h.salt2, q->h.ckpt_seq,
                     q->frames, q->s1, q->s2, s->snap_ms, si.bytes);
    nm = (tm_sqlite_name){.kind = 'g', .gen = s->gen, .last = q->frames, .time_ms = s->snap_ms};
    tm_sqlite_name_fmt(rel, sizeof(rel), &nm);
    return spool_write(s, rel, b, (size_t)n, err);
}

/* Under the write lock. */
static int locked_tick(tm_sqlite_ship *s, int64_t now, tm_sqlite_tick *info, tm_err *err)
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
    } else if (!s->have_hdr || !tm_sqlite_wal_same_wal(&s->pos.h, &h)) {
        int next =
            !s->have_hdr || (h.salt1 == s->pos.h.salt1 + 1 && h.ckpt_seq == s->pos.h.ckpt_seq + 1 &&
                             h.page_size == s->pos.h.page_size);
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
                     cont ? "more than once or by another file" : "while the agent was not running",
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
        if (rc == TM_OK && b.ncommits > 0) {
            tm_sqlite_seg seg = {.wal = s->pos.h,
                                 .s1 = s->pos.s1,
                                 .s2 = s->pos.s2,
                                 .first_frame = s->pos.frames + 1,
                                 .prev_last = s->pos.frames == 0 ? s->prev_last : 0,
                                 .nframes = (uint32_t)(b.end.frames - s->pos.frames),
                                 .ncommits = b.ncommits,
                                 .commits = b.commits,
                                 .frames = b.buf};
            uint8_t *obj = NULL;
            size_t len = 0;
            char rel[REL_MAX];
            tm_sqlite_name nm = {.kind = 'w',
                                 .gen = s->gen,
                                 .wal = s->walidx,
                                 .first = seg.first_frame,
                                 .last = b.end.frames,
                                 .time_ms = now};
            tm_sqlite_name_fmt(rel, sizeof(rel), &nm);
            rc = tm_sqlite_seg_encode(&seg, &obj, &len, err);
            if (rc == TM_OK) {
                rc = spool_write(s, rel, obj, len, err);
            }
            free(obj);
            if (rc == TM_OK) {
                tm_sqlite_wal before = s->pos;
                s->pos = b.end;
                rc = save(s, err);
                if (rc != TM_OK) {
                    s->pos = before;
                }
                info->commits = b.ncommits;
                info->frames = seg.nframes;
                info->bytes = len;
            }
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
    }
    if (!s->reading || !s->held) {
        rc = take_reader(s, err);
    }
    if (rc == TM_OK) {
        s->held = 1;
        s->restart_ok = 0;
    }
    return rc;
}

/* TRUNCATE when the WAL file outgrew its bound. It needs the write lock, so
 * it runs outside ours: what it reports tells whether it went past what is
 * shipped (then a new generation, never a silent gap). */
static void maybe_truncate(tm_sqlite_ship *s, tm_sqlite_tick *info)
{
    struct stat st;
    if (stat(s->wal, &st) != 0 || (uint64_t)st.st_size <= s->o.truncate_bytes) {
        return;
    }
    if (s->reading) {
        sqlite3_exec(s->r, "ROLLBACK", NULL, NULL, NULL);
        s->reading = 0;
    }
    s->held = 0;
    int nlog = -1, nckpt = -1;
    int rc = sqlite3_wal_checkpoint_v2(s->c, NULL, SQLITE_CHECKPOINT_TRUNCATE, &nlog, &nckpt);
    info->checkpointed = 1;
    if (nlog >= 0 && (uint64_t)nlog > s->pos.frames) {
        snprintf(s->force, sizeof(s->force),
                 "a TRUNCATE checkpoint found %d WAL frames, %" PRIu64 " shipped", nlog,
                 s->pos.frames);
    } else if (rc == SQLITE_OK) {
        s->restart_ok = 1; /* the WAL now starts again right at our position */
    }
    /* The reader again (held stays 0: it was not taken at the shipped
     * position under the lock, so a restart seen before the next tick
     * takes it there is trusted only after our own TRUNCATE). */
    tm_err e = {0};
    take_reader(s, &e);
}

int tm_sqlite_ship_tick(tm_sqlite_ship *s, tm_sqlite_tick *info, tm_err *err)
{
    tm_sqlite_tick local;
    if (info == NULL) {
        info = &local;
    }
    memset(info, 0, sizeof(*info));
    /* Leftovers first (a failed upload, a killed agent): in order. */
    int rc = upload(s, err);
    if (rc != TM_OK) {
        return rc;
    }
    if (s->have_hdr && s->pos.frames >= s->o.ckpt_frames && !s->restart_due) {
        /* The long part of a checkpoint, outside the lock: it copies up to
         * the reader's mark, i.e. what is shipped. */
        sqlite3_wal_checkpoint_v2(s->c, NULL, SQLITE_CHECKPOINT_PASSIVE, NULL, NULL);
        s->restart_due = 1;
        info->checkpointed = 1;
    }
    rc = tm_sqlite_db_exec(s->w, "BEGIN IMMEDIATE", err);
    if (rc != TM_OK) {
        return tm_err_prefix(err, "take the write lock of %s", s->db);
    }
    rc = locked_tick(s, now_ms(), info, err);
    sqlite3_exec(s->w, "ROLLBACK", NULL, NULL, NULL);
    if (rc == TM_OK && s->snap_pending) {
        rc = snapshot(s, err);
        if (rc == TM_OK) {
            s->snap_pending = 0;
            rc = upload(s, err);
        }
        if (rc == TM_OK) {
            s->snap_done = 1;
            rc = save(s, err);
        }
    } else if (rc == TM_OK) {
        rc = upload(s, err);
    }
    if (rc == TM_OK) {
        maybe_truncate(s, info);
    }
    info->generation = s->gen;
    return rc;
}
