/*
 * restore.c - SQLite restore to a time (see restore.h).
 */
#include "agent/engines/sqlite/restore.h"
#include "agent/engines/sqlite/db.h"
#include "agent/engines/sqlite/segment.h"
#include "agent/restore_root.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
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
}

static int cmp_str(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

/* Fetch rel into an anonymous file and map it (objects are one segment or
 * the small generation text). */
static int fetch_buf(const tm_sqlite_source *src, const char *rel, uint8_t **buf, size_t *len,
                     tm_err *err)
{
    int fd = memfd_create("tidemark-sqlite", MFD_CLOEXEC);
    if (fd < 0) {
        return tm_err_set(err, TM_EIO, "memfd_create: %s", strerror(errno));
    }
    int rc = src->fetch(src->arg, rel, fd, err);
    struct stat st;
    if (rc == TM_OK && fstat(fd, &st) != 0) {
        rc = tm_err_set(err, TM_EIO, "stat %s: %s", rel, strerror(errno));
    }
    if (rc == TM_OK) {
        *len = (size_t)st.st_size;
        *buf = malloc(*len + 1);
        size_t got = 0;
        if (*buf == NULL) {
            rc = tm_err_set(err, TM_ENOMEM, "object %s", rel);
        } else {
            while (got < *len) {
                ssize_t r = pread(fd, *buf + got, *len - got, (off_t)got);
                if (r <= 0) {
                    break;
                }
                got += (size_t)r;
            }
            (*buf)[*len] = 0;
            if (got != *len) {
                free(*buf);
                rc = tm_err_set(err, TM_EIO, "read %s", rel);
            }
        }
    }
    close(fd);
    return rc;
}

typedef struct gen_info {
    uint32_t gen, page_size, salt1, salt2, ckpt, s1, s2;
    int hdr;
    uint64_t frames;
    int64_t time_ms;
} gen_info;

static int gen_parse(const char *b, gen_info *g)
{
    int n = sscanf(b,
                   "tidemark-sqlite-generation 1\ngen %" SCNu32 "\npage %" SCNu32
                   "\nhdr %d\nsalt %" SCNu32 " %" SCNu32 "\nckpt %" SCNu32 "\nframes %" SCNu64
                   "\ns %" SCNu32 " %" SCNu32 "\ntime_ms %" SCNd64,
                   &g->gen, &g->page_size, &g->hdr, &g->salt1, &g->salt2, &g->ckpt, &g->frames,
                   &g->s1, &g->s2, &g->time_ms);
    return n == 10 ? TM_OK : TM_EPROTO;
}

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

/* Apply the transactions of seg whose commit is at or before target.
 * *stop = 1 once a later commit was met. */
static int apply(int fd, const tm_sqlite_seg *seg, int64_t target, tm_sqlite_restore_info *info,
                 int *stop, tm_err *err)
{
    size_t fs = tm_sqlite_wal_frame_size(&seg->wal);
    uint32_t from = 0; /* frames before it are applied */
    for (uint32_t c = 0; c < seg->ncommits; c++) {
        const tm_sqlite_commit *cm = &seg->commits[c];
        if (cm->time_ms > target) {
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
            return tm_err_set(err, TM_EIO, "truncate to %" PRIu32 " pages: %s", cm->db_size,
                              strerror(errno));
        }
        from = cm->frame;
        info->commits++;
        info->last_commit_ms = cm->time_ms;
    }
    return TM_OK;
}

/* The generation to restore: the given one, or the newest whose snapshot
 * is at or before the target. */
static int choose(const tm_sqlite_source *src, const names *ns, const tm_sqlite_restore_opts *o,
                  gen_info *g, tm_err *err)
{
    int found = 0;
    for (size_t i = ns->n; i-- > 0;) {
        tm_sqlite_name nm;
        if (tm_sqlite_name_parse(ns->v[i], &nm) != TM_OK || nm.kind != 'g' ||
            (o->generation != 0 && nm.gen != o->generation)) {
            continue;
        }
        uint8_t *b = NULL;
        size_t len = 0;
        int rc = fetch_buf(src, ns->v[i], &b, &len, err);
        if (rc != TM_OK) {
            return rc;
        }
        gen_info x;
        rc = gen_parse((const char *)b, &x);
        free(b);
        if (rc != TM_OK || x.gen != nm.gen) {
            return tm_err_set(err, TM_ECORRUPT, "generation description %s is malformed", ns->v[i]);
        }
        if (x.time_ms <= o->target_ms || o->generation != 0) {
            *g = x;
            found = 1;
            break;
        }
    }
    if (!found && o->generation != 0) {
        return tm_err_set(err, TM_ENOENT, "generation %08" PRIx32 " not found", o->generation);
    }
    if (!found) {
        return tm_err_set(err, TM_ENOENT,
                          "no generation has a snapshot at or before the target time (%" PRId64
                          " ms)",
                          o->target_ms);
    }
    return TM_OK;
}

/* Replay generation g onto the scratch file open on fd. */
static int replay(const tm_sqlite_source *src, const names *ns, const gen_info *g,
                  const tm_sqlite_restore_opts *o, int fd, tm_sqlite_restore_info *info,
                  tm_err *err)
{
    uint32_t walidx = 0, salt1 = g->salt1, salt2 = g->salt2;
    uint64_t next = g->frames + 1;
    int have_hdr = g->hdr, stop = 0;
    for (size_t i = 0; i < ns->n && !stop; i++) {
        tm_sqlite_name nm;
        if (tm_sqlite_name_parse(ns->v[i], &nm) != TM_OK || nm.kind != 'w' || nm.gen != g->gen) {
            continue;
        }
        uint8_t *b = NULL;
        size_t len = 0;
        int rc = fetch_buf(src, ns->v[i], &b, &len, err);
        tm_sqlite_seg seg;
        if (rc == TM_OK) {
            rc = tm_sqlite_seg_decode(b, len, &seg, err);
        }
        if (rc != TM_OK) {
            free(b);
            return tm_err_prefix(err, "%s", ns->v[i]);
        }
        /* Continuity: the next frame of the same WAL, or frame 1 of the WAL
         * that followed its restart. */
        int ok = 0;
        uint32_t wal = nm.wal;
        if (wal == walidx && have_hdr) {
            ok = seg.first_frame == next && seg.wal.salt1 == salt1 && seg.wal.salt2 == salt2;
        } else if (wal == walidx && !have_hdr) {
            ok = seg.first_frame == 1;
        } else if (wal == walidx + 1) {
            ok = seg.first_frame == 1 && seg.prev_last == next - 1 &&
                 (!have_hdr || seg.wal.salt1 == salt1 + 1);
        }
        if (!ok || seg.first_frame != nm.first || seg.first_frame + seg.nframes - 1 != nm.last) {
            tm_sqlite_seg_free(&seg);
            free(b);
            return tm_err_set(err, TM_ECORRUPT,
                              "generation %08" PRIx32 " has a hole before %s (expected WAL %" PRIu32
                              " frame %" PRIu64 ")",
                              g->gen, ns->v[i], walidx, next);
        }
        rc = apply(fd, &seg, o->target_ms, info, &stop, err);
        walidx = wal;
        have_hdr = 1;
        salt1 = seg.wal.salt1;
        salt2 = seg.wal.salt2;
        next = seg.first_frame + seg.nframes;
        info->segments++;
        tm_sqlite_seg_free(&seg);
        free(b);
        if (rc != TM_OK) {
            return rc;
        }
    }
    return TM_OK;
}

static int check(const char *path, tm_err *err)
{
    sqlite3 *c = NULL;
    int rc = sqlite3_open_v2(path, &c, SQLITE_OPEN_READWRITE, NULL);
    sqlite3_stmt *st = NULL;
    if (rc == SQLITE_OK) {
        rc = sqlite3_prepare_v2(c, "PRAGMA integrity_check", -1, &st, NULL);
    }
    int r = TM_OK;
    if (rc == SQLITE_OK && sqlite3_step(st) == SQLITE_ROW) {
        const char *res = (const char *)sqlite3_column_text(st, 0);
        if (res == NULL || strcmp(res, "ok") != 0) {
            r = tm_err_set(err, TM_ECORRUPT, "integrity_check of the restored file: %.300s",
                           res != NULL ? res : "?");
        }
    } else {
        r = tm_err_set(err, TM_ECORRUPT, "integrity_check of the restored file: %s",
                       c != NULL ? sqlite3_errmsg(c) : "cannot open");
    }
    sqlite3_finalize(st);
    sqlite3_close(c);
    return r;
}

int tm_sqlite_restore(const tm_sqlite_source *src, const tm_sqlite_restore_opts *o,
                      tm_sqlite_restore_info *info, tm_err *err)
{
    tm_sqlite_restore_info local;
    if (info == NULL) {
        info = &local;
    }
    memset(info, 0, sizeof(*info));
    if (o->name == NULL || strchr(o->name, '/') != NULL) {
        return tm_err_set(err, TM_EINVAL, "restore file name must be one path component");
    }
    int rc = tm_restore_path_check(o->name, strlen(o->name), err);
    if (rc != TM_OK) {
        return rc;
    }
    names ns = {0};
    rc = src->list(src->arg, &ns.v, &ns.n, err);
    if (rc != TM_OK) {
        return tm_err_prefix(err, "list the shipped log");
    }
    qsort(ns.v, ns.n, sizeof(*ns.v), cmp_str);
    gen_info g = {0};
    rc = choose(src, &ns, o, &g, err);
    tm_restore_root *root = NULL;
    if (rc == TM_OK) {
        rc = tm_restore_root_new(o->dir, NULL, &root, err);
    }
    char scratch[TM_RESTORE_NAME_MAX + 32], side[TM_RESTORE_NAME_MAX + 32];
    snprintf(scratch, sizeof(scratch), ".%.200s.tidemark-restore", o->name);
    char path[PATH_MAX + TM_RESTORE_NAME_MAX + 32];
    int fd = -1, dfd = -1;
    if (rc == TM_OK) {
        snprintf(path, sizeof(path), "%s/%s", tm_restore_root_path(root), scratch);
        dfd = open(tm_restore_root_path(root), O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
        if (dfd < 0) {
            rc = tm_err_set(err, TM_EIO, "open %s: %s", o->dir, strerror(errno));
        }
    }
    if (rc == TM_OK && !o->force && faccessat(dfd, o->name, F_OK, AT_SYMLINK_NOFOLLOW) == 0) {
        rc = tm_err_set(err, TM_EEXIST,
                        "%s/%s exists: restore elsewhere, or replace it with --force (stop the "
                        "application first)",
                        o->dir, o->name);
    }
    if (rc == TM_OK) {
        info->generation = g.gen;
        info->snapshot_ms = info->last_commit_ms = g.time_ms;
        char rel[TM_SQLITE_NAME_MAX];
        tm_sqlite_name nm = {.kind = 'd', .gen = g.gen};
        tm_sqlite_name_fmt(rel, sizeof(rel), &nm);
        rc = tm_restore_root_create(root, scratch, &fd, err);
        if (rc == TM_OK) {
            rc = src->fetch(src->arg, rel, fd, err);
        }
        if (rc == TM_OK) {
            rc = replay(src, &ns, &g, o, fd, info, err);
        }
        struct stat st;
        if (rc == TM_OK && (fsync(fd) != 0 || fstat(fd, &st) != 0)) {
            rc = tm_err_set(err, TM_EIO, "sync %s: %s", scratch, strerror(errno));
        } else if (rc == TM_OK) {
            info->bytes = (uint64_t)st.st_size;
        }
    }
    if (fd >= 0) {
        close(fd);
    }
    if (rc == TM_OK) {
        rc = check(path, err);
    }
    for (int i = 0; rc == TM_OK && i < 2; i++) {
        /* A stale WAL of the replaced file would be replayed onto ours. */
        snprintf(side, sizeof(side), "%.200s-%s", o->name, i == 0 ? "wal" : "shm");
        rc = tm_restore_root_remove(root, side, 0, err);
    }
    if (rc == TM_OK && renameat(dfd, scratch, dfd, o->name) != 0) {
        rc = tm_err_set(err, TM_EIO, "rename into %s/%s: %s", o->dir, o->name, strerror(errno));
    }
    if (rc == TM_OK && fsync(dfd) != 0) {
        rc = tm_err_set(err, TM_EIO, "sync %s: %s", o->dir, strerror(errno));
    }
    if (rc != TM_OK && root != NULL && dfd >= 0) {
        tm_err keep = *err;
        tm_restore_root_remove(root, scratch, 0, NULL);
        *err = keep;
    }
    if (dfd >= 0) {
        close(dfd);
    }
    tm_restore_root_free(root);
    names_free(&ns);
    return rc == TM_OK ? TM_OK : tm_err_prefix(err, "restore %s", o->name);
}
