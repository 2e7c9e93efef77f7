/*
 * restore.c - a PostgreSQL backup back into a data directory, from the
 * repositories alone (the coordinator may be down):
 *
 *   1. choose the backup: --backup ID, or the newest that ended before the
 *      --time / --lsn target, or the newest; a target before the oldest
 *      backup's end is refused with the window printed;
 *   2. prepare the directory: empty (created 0700), or with --delta the
 *      existing files whose size and XXH3-128 match the manifest are kept and
 *      everything the backup does not have is removed;
 *   3. write every file of the manifest in parallel, each from the backup
 *      that stored it (an incremental's references point at its ancestors),
 *      every frame and both digests checked on the way (pipeline.c);
 *   4. backup_label, tablespace_map, recovery.signal and the recovery
 *      settings in postgresql.auto.conf; ownership to the PostgreSQL user;
 *   5. with --start: pg_ctl start as that user, wait until recovery ends
 *      (pg_is_in_recovery() = false), run a verification query, report
 *      timings.
 *
 * Files are written without a per-file fsync and the file system is synced
 * once at the end (syncfs): a crash mid-restore means restoring again
 * anyway, and a thousand fsyncs cost more than the copy of small files.
 */
#include "agent/engines/postgres/pg.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <grp.h>
#include <inttypes.h>
#include <limits.h>
#include <pthread.h>
#include <pwd.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>
#include <xxhash.h>

#include "agent/restore_root.h"
#include "common/log.h"
#include "common/util.h"

/* ---- choosing the backup ---------------------------------------------- */

static void window_text(const tm_pg_backup *bs, size_t n, char *out, size_t cap)
{
    char t0[40];
    tm_pg_time_fmt(bs[0].stop_time, t0, sizeof(t0));
    char l0[32];
    tm_pg_lsn_fmt(bs[0].stop_lsn, l0, sizeof(l0));
    snprintf(out, cap,
             "the recoverable window starts at %s (LSN %s, end of backup %s, the oldest of %zu) "
             "and ends at the last archived WAL",
             t0, l0, bs[0].id, n);
}

static int choose(const tm_pg_backup *bs, size_t n, const tm_pg_restore_opts *o, const char *target,
                  size_t *pick, tm_err *err)
{
    if (n == 0) {
        return tm_err_set(err, TM_ENOENT,
                          "target %s has no PostgreSQL backup in any configured repository; take "
                          "one with `tidemarkctl backup run --target %s --type full`",
                          target, target);
    }
    char win[400];
    window_text(bs, n, win, sizeof(win));
    if (o->backup_id != NULL) {
        for (size_t i = 0; i < n; i++) {
            if (strcmp(bs[i].id, o->backup_id) == 0) {
                *pick = i;
                return TM_OK;
            }
        }
        return tm_err_set(err, TM_ENOENT,
                          "backup %s of target %s is not in any repository (%zu backups, newest "
                          "%s)",
                          o->backup_id, target, n, bs[n - 1].id);
    }
    if (o->time != NULL) {
        int64_t t;
        if (tm_pg_time_parse(o->time, &t) != TM_OK) {
            return tm_err_set(err, TM_EINVAL,
                              "--time '%.60s' is not a time, expected 'YYYY-MM-DD HH:MM:SS+00' "
                              "(a zone is required)",
                              o->time);
        }
        size_t best = n;
        for (size_t i = 0; i < n; i++) {
            if (bs[i].stop_time <= t) {
                best = i;
            }
        }
        if (best == n) {
            return tm_err_set(err, TM_EINVAL,
                              "recovery target time %s is outside the recoverable window of target "
                              "%s: %s",
                              o->time, target, win);
        }
        *pick = best;
        return TM_OK;
    }
    if (o->lsn != NULL) {
        uint64_t l;
        if (tm_pg_lsn_parse(o->lsn, &l) != TM_OK) {
            return tm_err_set(err, TM_EINVAL,
                              "--lsn '%.40s' is not an LSN, expected e.g. 0/3000028", o->lsn);
        }
        size_t best = n;
        for (size_t i = 0; i < n; i++) {
            if (bs[i].stop_lsn <= l) {
                best = i;
            }
        }
        if (best == n) {
            return tm_err_set(err, TM_EINVAL,
                              "recovery target LSN %s is outside the recoverable window of target "
                              "%s: %s",
                              o->lsn, target, win);
        }
        *pick = best;
        return TM_OK;
    }
    *pick = n - 1;
    return TM_OK;
}

/* ---- the directory ---------------------------------------------------- */

typedef struct rctx {
    const tm_pg_restore_opts *o;
    const Tidemark__Manifest *m;
    Tidemark__FileEntry **sorted; /* by path, for delta lookups */
    size_t nsorted;
    uint8_t *keep; /* per manifest file: 1 = the local copy already matches */
    /* Readers of every backup the files come from (the chosen one first). */
    char **ids;
    tm_backup_reader **rd;
    size_t nrd;
    size_t *jobs;
    size_t njobs;
    atomic_size_t next;
    uid_t uid;
    gid_t gid;
    int chown;
    uint64_t bytes_total;
    atomic_uint_fast64_t bytes_done, files_done;
    atomic_int failed;
    pthread_mutex_t mu;
    tm_err err;
    /* delta */
    uint64_t reused_files, reused_bytes, removed;
    const char *root;
    /* Every write goes through it (agent/restore_root.h). */
    tm_restore_root *rr;
    int confined; /* a task: link destinations only under restore_roots */
    const tm_agent_conf *conf;
} rctx;

/* PostgreSQL's links: pg_tblspc/<oid> and pg_wal (initdb --waldir). */
static int pg_link_ok(const char *rel)
{
    if (strcmp(rel, "pg_wal") == 0) {
        return 1;
    }
    return strncmp(rel, "pg_tblspc/", 10) == 0 && rel[10] != '\0' &&
           strspn(rel + 10, "0123456789") == strlen(rel + 10);
}

/* What an entry becomes here: pg_wal (a directory, or a link to the
 * source's WAL disk) is restored as a directory inside the target, or as a
 * link to --waldir; never through the recorded link, which would overwrite
 * the live cluster's WAL when restoring on its host. */
static int eff_type(const rctx *r, const Tidemark__FileEntry *fe)
{
    if ((fe->type == TM_PG_LINK || fe->type == TM_PG_DIR) && strcmp(fe->path, "pg_wal") == 0) {
        return r->o->waldir != NULL ? TM_PG_LINK : TM_PG_DIR;
    }
    return (int)fe->type;
}

static int path_cmp(const void *a, const void *b)
{
    const Tidemark__FileEntry *x = *(Tidemark__FileEntry *const *)a;
    const Tidemark__FileEntry *y = *(Tidemark__FileEntry *const *)b;
    return strcmp(x->path, y->path);
}

static const Tidemark__FileEntry *find_path(rctx *r, const char *rel, size_t *idx)
{
    size_t lo = 0, hi = r->nsorted;
    while (lo < hi) {
        size_t mid = (lo + hi) / 2;
        int c = strcmp(r->sorted[mid]->path, rel);
        if (c == 0) {
            if (idx != NULL) {
                *idx = mid;
            }
            return r->sorted[mid];
        }
        if (c < 0) {
            lo = mid + 1;
        } else {
            hi = mid;
        }
    }
    return NULL;
}

static int xxh3_file(rctx *r, const char *rel, char out[33])
{
    int fd = -1;
    tm_err e = {0};
    if (tm_restore_root_open_read(r->rr, rel, &fd, &e) != TM_OK) {
        return TM_EIO;
    }
    XXH3_state_t *st = XXH3_createState();
    uint8_t *buf = malloc(1u << 20);
    int rc = st == NULL || buf == NULL ? TM_ENOMEM : TM_OK;
    if (rc == TM_OK) {
        XXH3_128bits_reset(st);
    }
    ssize_t n;
    while (rc == TM_OK && (n = read(fd, buf, 1u << 20)) != 0) {
        if (n < 0) {
            rc = errno == EINTR ? TM_OK : TM_EIO;
            continue;
        }
        XXH3_128bits_update(st, buf, (size_t)n);
    }
    if (rc == TM_OK) {
        XXH128_canonical_t c;
        XXH128_canonicalFromHash(&c, XXH3_128bits_digest(st));
        tm_hex(c.digest, sizeof(c.digest), out);
    }
    free(buf);
    XXH3_freeState(st);
    close(fd);
    return rc;
}

/* nftw has no user argument. Delta runs once per process at a time. */
static rctx *delta_r;
static pthread_mutex_t delta_mu = PTHREAD_MUTEX_INITIALIZER;

static int delta_visit(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
    (void)flag;
    rctx *r = delta_r;
    if (ftw->level == 0) {
        return 0;
    }
    const char *rel = path + strlen(r->root) + 1;
    size_t idx = 0;
    const Tidemark__FileEntry *fe = find_path(r, rel, &idx);
    int want = fe ? eff_type(r, fe) : -1;
    int have = S_ISLNK(st->st_mode) ? TM_PG_LINK : S_ISDIR(st->st_mode) ? TM_PG_DIR : TM_PG_FILE;
    if (fe != NULL && want == have) {
        if (have == TM_PG_FILE && (uint64_t)st->st_size == fe->size && fe->xxh3_128 != NULL) {
            char h[33];
            if (xxh3_file(r, rel, h) == TM_OK && strcmp(h, fe->xxh3_128) == 0) {
                r->keep[idx] = 1;
                r->reused_files++;
                r->reused_bytes += fe->size;
            }
        }
        return 0;
    }
    /* Not in the backup, or of another type: remove. FTW_DEPTH visits a
     * directory after its contents, so it is empty by now unless it held
     * something we keep (then its path is in the manifest as a directory). */
    if (tm_restore_root_remove(r->rr, rel, S_ISDIR(st->st_mode), &r->err) != TM_OK) {
        tm_err_prefix(&r->err, "--delta");
        return 1;
    }
    r->removed++;
    return 0;
}

static int dir_is_empty(const char *path, int *empty)
{
    DIR *d = opendir(path);
    if (d == NULL) {
        return errno == ENOENT ? (*empty = 1, TM_OK) : TM_EIO;
    }
    *empty = 1;
    struct dirent *de;
    while ((de = readdir(d)) != NULL) {
        if (strcmp(de->d_name, ".") && strcmp(de->d_name, "..")) {
            *empty = 0;
            break;
        }
    }
    closedir(d);
    return TM_OK;
}

static int prepare_dir(rctx *r, tm_err *err)
{
    const char *dir = r->o->pgdata;
    /* Not a running server's directory (nor inside one, nor around one). */
    int rc = tm_restore_dir_busy(dir, err);
    if (rc != TM_OK) {
        return rc;
    }
    int empty = 1;
    if (dir_is_empty(dir, &empty) != TM_OK) {
        return tm_err_set(err, tm_err_from_errno(errno), "open %s: %s", dir, strerror(errno));
    }
    if (!empty && !r->o->delta) {
        return tm_err_set(err, TM_EEXIST,
                          "%s is not empty; restore into an empty or new directory, or pass "
                          "--delta to reuse the files that match the backup",
                          dir);
    }
    tm_restore_root_opts ro = {
        .chown = r->chown, .uid = r->uid, .gid = r->gid, .link_ok = pg_link_ok};
    rc = tm_restore_root_new(dir, &ro, &r->rr, err);
    if (rc != TM_OK) {
        return rc;
    }
    if (!empty) {
        pthread_mutex_lock(&delta_mu);
        delta_r = r;
        r->root = dir;
        int fr = nftw(dir, delta_visit, 32, FTW_PHYS | FTW_DEPTH);
        delta_r = NULL;
        pthread_mutex_unlock(&delta_mu);
        if (fr != 0) {
            *err = r->err.code ? r->err : *err;
            return r->err.code ? r->err.code
                               : tm_err_set(err, TM_EIO, "--delta: walking %s failed", dir);
        }
    }
    return tm_restore_root_own(r->rr, 0700, err);
}

/* ---- writing files ---------------------------------------------------- */

typedef struct fsink {
    int fd;
    rctx *r;
    const Tidemark__FileEntry *fe;
} fsink;

static int fs_write(void *arg, const void *buf, size_t len, tm_err *err)
{
    fsink *s = arg;
    const uint8_t *p = buf;
    while (len > 0) {
        ssize_t n = write(s->fd, p, len);
        if (n < 0 && errno == EINTR) {
            continue;
        }
        if (n < 0) {
            return tm_err_set(err, tm_err_from_errno(errno), "write %s/%s: %s", s->r->o->pgdata,
                              s->fe->path, strerror(errno));
        }
        p += n;
        len -= (size_t)n;
    }
    return TM_OK;
}

/* Mode, time and owner through the descriptor, then close. */
static int fs_commit(void *arg, tm_err *err)
{
    fsink *s = arg;
    int rc = tm_restore_root_attrs(s->r->rr, s->fd, s->fe->path, s->fe->mode ? s->fe->mode : 0600,
                                   s->fe->mtime, err);
    if (close(s->fd) != 0 && rc == TM_OK) {
        rc = tm_err_set(err, TM_EIO, "close %s/%s: %s", s->r->o->pgdata, s->fe->path,
                        strerror(errno));
    }
    free(s);
    return rc;
}

static void fs_abort(void *arg)
{
    fsink *s = arg;
    tm_err e = {0};
    close(s->fd);
    tm_restore_root_remove(s->r->rr, s->fe->path, 0, &e);
    free(s);
}

static tm_backup_reader *reader_for(rctx *r, const Tidemark__FileEntry *fe)
{
    const char *id = fe->backup_id && fe->backup_id[0] ? fe->backup_id : r->ids[0];
    for (size_t i = 0; i < r->nrd; i++) {
        if (strcmp(r->ids[i], id) == 0) {
            return r->rd[i];
        }
    }
    return NULL;
}

static int restore_file(rctx *r, const Tidemark__FileEntry *fe, tm_err *err)
{
    int fd = -1;
    int rc = tm_restore_root_create(r->rr, fe->path, &fd, err);
    if (rc != TM_OK) {
        return rc;
    }
    fsink *s = malloc(sizeof(*s));
    if (s == NULL) {
        close(fd);
        return tm_err_set(err, TM_ENOMEM, "out of memory");
    }
    *s = (fsink){.fd = fd, .r = r, .fe = fe};
    tm_sink sink = {
        .write = fs_write, .commit = fs_commit, .abort = fs_abort, .arg = s, .name = "restore"};
    if (fe->object == NULL || fe->object[0] == '\0') {
        rc = fs_commit(s, err); /* no content: an empty file */
    } else {
        tm_backup_reader *rd = reader_for(r, fe);
        rc = rd == NULL ? (fs_abort(s), tm_err_set(err, TM_EINTERNAL, "no reader for %s", fe->path))
                        : tm_backup_get(rd, fe->object, &sink, err);
        if (rc != TM_OK) {
            tm_err_prefix(err, "restoring %s (backup %s)", fe->path,
                          fe->backup_id && fe->backup_id[0] ? fe->backup_id : r->ids[0]);
        }
    }
    return rc;
}

static void *worker(void *arg)
{
    rctx *r = arg;
    for (;;) {
        size_t k = atomic_fetch_add(&r->next, 1);
        if (k >= r->njobs || atomic_load(&r->failed)) {
            break;
        }
        if (r->o->ctx != NULL && tm_task_cancelled(r->o->ctx)) {
            pthread_mutex_lock(&r->mu);
            if (!atomic_exchange(&r->failed, 1)) {
                tm_err_set(&r->err, TM_EBUSY, "cancelled");
            }
            pthread_mutex_unlock(&r->mu);
            break;
        }
        const Tidemark__FileEntry *fe = r->m->files[r->jobs[k]];
        tm_err e = {0};
        if (restore_file(r, fe, &e) != TM_OK) {
            pthread_mutex_lock(&r->mu);
            if (!atomic_exchange(&r->failed, 1)) {
                r->err = e;
            }
            pthread_mutex_unlock(&r->mu);
            break;
        }
        atomic_fetch_add(&r->bytes_done, fe->size);
        atomic_fetch_add(&r->files_done, 1);
        if (r->o->ctx != NULL) {
            tm_task_progress(r->o->ctx, "restore", atomic_load(&r->bytes_done), r->bytes_total,
                             (uint32_t)atomic_load(&r->files_done), (uint32_t)r->njobs);
        }
    }
    return NULL;
}

/* Directories and links first (in path order, so parents exist). */
/* Where tablespace OID goes: --tablespace-map OID=DIR, else
 * --tablespace-map-all DIR/OID, else where it was (recorded). */
static const char *ts_location(const tm_pg_restore_opts *o, const char *oid, const char *recorded,
                               char *buf, size_t cap)
{
    size_t ol = strlen(oid);
    for (size_t i = 0; i < o->n_ts_map; i++) {
        const char *m = o->ts_map[i];
        if (strncmp(m, oid, ol) == 0 && m[ol] == '=') {
            return m + ol + 1;
        }
    }
    if (o->ts_map_all != NULL) {
        snprintf(buf, cap, "%s/%s", o->ts_map_all, oid);
        return buf;
    }
    return recorded;
}

/* tablespace_map ("OID PATH" per line) with relocated paths. NULL on ENOMEM. */
static char *ts_map_rewrite(const tm_pg_restore_opts *o, const char *spc)
{
    char *out = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&out, &len);
    if (f == NULL) {
        return NULL;
    }
    for (const char *line = spc; *line != '\0';) {
        const char *nl = strchr(line, '\n');
        int ll = (int)(nl ? (size_t)(nl - line) : strlen(line));
        const char *sp = memchr(line, ' ', (size_t)ll);
        if (sp != NULL) {
            char oid[32], buf[PATH_MAX], recorded[PATH_MAX];
            snprintf(oid, sizeof(oid), "%.*s", (int)(sp - line), line);
            snprintf(recorded, sizeof(recorded), "%.*s", ll - (int)(sp - line) - 1, sp + 1);
            fprintf(f, "%s %s\n", oid, ts_location(o, oid, recorded, buf, sizeof(buf)));
        } else {
            fprintf(f, "%.*s\n", ll, line);
        }
        line = nl ? nl + 1 : line + ll;
    }
    if (fclose(f) != 0) {
        free(out);
        return NULL;
    }
    return out;
}

/* Where a link entry goes, or NULL with *err for one that may not exist. */
static const char *link_dest(rctx *r, const Tidemark__FileEntry *fe, char *buf, size_t cap,
                             int *mapped)
{
    if (strcmp(fe->path, "pg_wal") == 0) {
        *mapped = 1;
        return r->o->waldir;
    }
    const char *d = ts_location(r->o, fe->path + 10, fe->link ? fe->link : "", buf, cap);
    *mapped = d != fe->link;
    return d;
}

static int make_tree(rctx *r, tm_err *err)
{
    for (size_t i = 0; i < r->m->n_files; i++) {
        const Tidemark__FileEntry *fe = r->m->files[i];
        int type = eff_type(r, fe);
        int rc = TM_OK;
        if (type == TM_PG_DIR) {
            rc = tm_restore_root_mkdir(r->rr, fe->path, fe->mode ? fe->mode : 0700, err);
            if (rc == TM_OK && fe->type == TM_PG_LINK) {
                /* pg_wal, as a directory here: the server wants archive_status. */
                rc = tm_restore_root_mkdir(r->rr, "pg_wal/archive_status", 0700, err);
            }
        } else if (type == TM_PG_LINK) {
            char buf[PATH_MAX];
            int mapped = 0;
            const char *dest = link_dest(r, fe, buf, sizeof(buf), &mapped);
            if (r->confined) {
                rc = tm_restore_under_roots(fe->path, dest, r->conf->restore_roots,
                                            r->conf->n_restore_roots, err);
            }
            /* A recorded (not mapped) place must be empty even with --delta:
             * it came from the manifest, and may be the source's own. */
            if (rc == TM_OK) {
                rc = tm_restore_root_link(r->rr, fe->path, dest, mapped && r->o->delta, err);
            }
            if (rc == TM_OK && strcmp(fe->path, "pg_wal") == 0) {
                rc = tm_restore_root_mkdir(r->rr, "pg_wal/archive_status", 0700, err);
            }
            if (!mapped && (rc == TM_EEXIST || rc == TM_EBUSY)) {
                tm_err_prefix(err,
                              "%s: relocate it with --tablespace-map %s=DIR or "
                              "--tablespace-map-all DIR",
                              fe->path, fe->path + 10);
            }
        }
        if (rc != TM_OK) {
            return rc;
        }
    }
    return TM_OK;
}

/* Every entry, before anything is written: a path that would leave the
 * directory, a link where PostgreSQL has none, a duplicate or an unknown
 * type refuses the whole restore (naming the entry). */
static int check_manifest(rctx *r, const char *backup_id, tm_err *err)
{
    for (size_t i = 0; i < r->m->n_files; i++) {
        const Tidemark__FileEntry *fe = r->m->files[i];
        int rc = tm_restore_path_check(fe->path, fe->path ? strlen(fe->path) : 0, err);
        if (rc == TM_OK && fe->type != TM_PG_FILE && fe->type != TM_PG_DIR &&
            fe->type != TM_PG_LINK) {
            rc = tm_err_set(err, TM_ECORRUPT, "manifest entry '%s': unknown type %d", fe->path,
                            (int)fe->type);
        }
        if (rc == TM_OK && fe->type == TM_PG_LINK && !pg_link_ok(fe->path)) {
            rc = tm_err_set(err, TM_EINVAL,
                            "manifest entry '%s': a symbolic link where PostgreSQL has none "
                            "(only pg_wal and pg_tblspc/<oid> may be links); refused",
                            fe->path);
        }
        if (rc == TM_OK && fe->type == TM_PG_LINK && strncmp(fe->path, "pg_tblspc/", 10) == 0) {
            char buf[PATH_MAX];
            int mapped = 0;
            const char *dest = link_dest(r, fe, buf, sizeof(buf), &mapped);
            rc = tm_restore_dir_check("its link target", dest, err);
            if (rc != TM_OK) {
                tm_err_prefix(err, "manifest entry '%s'", fe->path);
            }
        }
        if (rc != TM_OK) {
            return tm_err_prefix(err, "backup %s", backup_id);
        }
    }
    for (size_t i = 1; i < r->nsorted; i++) {
        if (strcmp(r->sorted[i - 1]->path, r->sorted[i]->path) == 0) {
            return tm_err_set(err, TM_ECORRUPT, "backup %s: manifest entry '%s' appears twice",
                              backup_id, r->sorted[i]->path);
        }
    }
    return TM_OK;
}

/* ---- recovery settings ------------------------------------------------ */

int tm_pg_conf_quote(const char *what, const char *s, char **out, tm_err *err)
{
    *out = NULL;
    size_t n = 3;
    for (const char *p = s; *p; p++) {
        unsigned char c = (unsigned char)*p;
        if (c < 0x20 || c == 0x7f) {
            return tm_err_set(err, TM_EINVAL,
                              "%s contains a control character (0x%02x at byte %zu): refused, it "
                              "would end or bend the line in postgresql.auto.conf",
                              what, c, (size_t)(p - s));
        }
        n += c == '\'' || c == '\\' ? 2 : 1;
    }
    char *q = malloc(n);
    if (q == NULL) {
        return tm_err_set(err, TM_ENOMEM, "out of memory");
    }
    size_t k = 0;
    q[k++] = '\'';
    for (const char *p = s; *p; p++) {
        /* PostgreSQL's configuration lexer reads \ as an escape and '' as a
         * quote inside a quoted value: double both. */
        if (*p == '\'' || *p == '\\') {
            q[k++] = *p;
        }
        q[k++] = *p;
    }
    q[k++] = '\'';
    q[k] = '\0';
    *out = q;
    return TM_OK;
}

static int conf_line(FILE *f, const char *key, const char *what, const char *v, tm_err *err)
{
    char *q = NULL;
    int rc = tm_pg_conf_quote(what, v, &q, err);
    if (rc == TM_OK) {
        fprintf(f, "%s = %s\n", key, q);
        free(q);
    }
    return rc;
}

static int write_small(rctx *r, const char *name, const char *content, tm_err *err)
{
    return tm_restore_root_write(r->rr, name, content, strlen(content), 0600, err);
}

static int restores_in_place(const tm_agent_conf *conf, const tm_pg_restore_opts *o);

static int write_recovery(rctx *r, const tm_agent_conf *conf, const char *backup_id,
                          tm_pg_restore_report *rep, tm_err *err)
{
    const tm_pg_restore_opts *o = r->o;
    const char *label = tm_pg_info(r->m, "backup_label");
    const char *spc = tm_pg_info(r->m, "tablespace_map");
    if (label == NULL || label[0] == '\0') {
        return tm_err_set(err, TM_ECORRUPT, "backup %s has no backup_label in its manifest",
                          backup_id);
    }
    int rc = write_small(r, "backup_label", label, err);
    if (rc == TM_OK && spc != NULL && spc[0] != '\0') {
        char *mapped = ts_map_rewrite(o, spc);
        rc = mapped ? write_small(r, "tablespace_map", mapped, err)
                    : tm_err_set(err, TM_ENOMEM, "out of memory");
        free(mapped);
    }
    if (rc == TM_OK) {
        rc = write_small(r, "recovery.signal", "", err);
    }
    if (rc != TM_OK) {
        return rc;
    }
    char exe[PATH_MAX] = "";
    if (o->self_exe != NULL) {
        snprintf(exe, sizeof(exe), "%s", o->self_exe);
    } else {
        ssize_t l = readlink("/proc/self/exe", exe, sizeof(exe) - 1);
        exe[l > 0 ? l : 0] = '\0';
    }
    char cfg[PATH_MAX] = "";
    if (conf->path == NULL || realpath(conf->path, cfg) == NULL) {
        snprintf(cfg, sizeof(cfg), "%s", conf->path ? conf->path : "");
    }
    char *cmd = NULL;
    if (asprintf(&cmd, "%s --config %s wal-get --target %s %%f %%p", exe, cfg, o->target) < 0) {
        return tm_err_set(err, TM_ENOMEM, "out of memory");
    }
    /* Composed in memory first: a refused value leaves the file as it was. */
    char *text = NULL;
    size_t tlen = 0;
    FILE *f = open_memstream(&text, &tlen);
    if (f == NULL) {
        free(cmd);
        return tm_err_set(err, TM_ENOMEM, "out of memory");
    }
    char now[40];
    tm_pg_time_fmt(tm_now_s(), now, sizeof(now));
    fprintf(f, "\n# Recovery settings written by tidemark-agent restore of %s at %s\n", backup_id,
            now);
    rc = conf_line(f, "restore_command", "restore_command", cmd, err);
    if (rc == TM_OK && o->immediate) {
        fputs("recovery_target = 'immediate'\n", f);
        snprintf(rep->recovery_target, sizeof(rep->recovery_target), "immediate");
    } else if (rc == TM_OK && o->time != NULL) {
        rc = conf_line(f, "recovery_target_time", "--time", o->time, err);
        snprintf(rep->recovery_target, sizeof(rep->recovery_target), "time %s", o->time);
    } else if (rc == TM_OK && o->lsn != NULL) {
        rc = conf_line(f, "recovery_target_lsn", "--lsn", o->lsn, err);
        snprintf(rep->recovery_target, sizeof(rep->recovery_target), "lsn %s", o->lsn);
    } else if (rc == TM_OK) {
        snprintf(rep->recovery_target, sizeof(rep->recovery_target), "end of archived WAL");
    }
    if (o->immediate || o->time != NULL || o->lsn != NULL) {
        fputs("recovery_target_action = 'promote'\n", f);
    }
    if (o->start && o->port != 0) {
        fprintf(f, "port = %u\n", o->port);
    }
    /* A copy (staging, drill, forensics) must not archive its new timeline
     * into the target's repository: a later restore of the target would
     * follow that timeline (recovery_target_timeline = latest) and land on
     * the copy's history. Only a restore into the target's own data
     * directory keeps archiving; promote a copy by turning it back on. */
    if (!restores_in_place(conf, o)) {
        fputs("archive_mode = off  # a restored copy; set on if it becomes the primary\n", f);
    }
    free(cmd);
    if (fclose(f) != 0 && rc == TM_OK) {
        rc = tm_err_set(err, TM_ENOMEM, "out of memory");
    }
    int fd = -1;
    if (rc == TM_OK) {
        rc = tm_restore_root_append(r->rr, "postgresql.auto.conf", &fd, err);
    }
    for (size_t off = 0; rc == TM_OK && off < tlen;) {
        ssize_t n = write(fd, text + off, tlen - off);
        if (n < 0 && errno != EINTR) {
            rc = tm_err_set(err, tm_err_from_errno(errno), "write %s/postgresql.auto.conf: %s",
                            o->pgdata, strerror(errno));
        }
        off += n > 0 ? (size_t)n : 0;
    }
    if (fd >= 0) {
        if (rc == TM_OK) {
            rc = tm_restore_root_attrs(r->rr, fd, "postgresql.auto.conf", 0600, -1, err);
        }
        /* The recovery settings must be on disk before the restore says it
         * is done: fsync, and a failed close (EDQUOT/EIO on NFS) fails it. */
        if (rc == TM_OK && fsync(fd) != 0) {
            rc = tm_err_set(err, tm_err_from_errno(errno), "fsync %s/postgresql.auto.conf: %s",
                            o->pgdata, strerror(errno));
        }
        if (close(fd) != 0 && rc == TM_OK) {
            rc = tm_err_set(err, tm_err_from_errno(errno), "close %s/postgresql.auto.conf: %s",
                            o->pgdata, strerror(errno));
        }
    }
    free(text);
    return rc;
}

/* Is the destination the target's own configured data directory? */
static int restores_in_place(const tm_agent_conf *conf, const tm_pg_restore_opts *o)
{
    char a[PATH_MAX], b[PATH_MAX];
    for (size_t i = 0; i < conf->n_targets; i++) {
        const tm_pg_target_conf *pg = tm_pg_target(&conf->targets[i]);
        if (strcmp(conf->targets[i].name, o->target) != 0 || pg == NULL || pg->pgdata == NULL) {
            continue;
        }
        if (realpath(pg->pgdata, a) == NULL) {
            snprintf(a, sizeof(a), "%s", pg->pgdata);
        }
        if (realpath(o->pgdata, b) == NULL) {
            snprintf(b, sizeof(b), "%s", o->pgdata);
        }
        return strcmp(a, b) == 0;
    }
    return 0;
}

/* ---- starting the server ---------------------------------------------- */

static int has_pg_ctl(const char *dir)
{
    char p[PATH_MAX + 16];
    snprintf(p, sizeof(p), "%s/pg_ctl", dir);
    return access(p, X_OK) == 0;
}

/* bindir: configured, else `pg_config --bindir`, else (Debian, where
 * libpq-dev's pg_config names /usr/bin) the versioned directory of the
 * restored cluster's major version. */
static int find_bindir(const tm_pg_target_conf *pgc, const char *pgdata, char *out, size_t cap,
                       tm_err *err)
{
    if (pgc != NULL && pgc->bindir != NULL) {
        snprintf(out, cap, "%s", pgc->bindir);
        if (has_pg_ctl(out)) {
            return TM_OK;
        }
        return tm_err_set(err, TM_ECONFIG, "postgres.bindir %s has no pg_ctl", out);
    }
    FILE *p = popen("pg_config --bindir 2>/dev/null", "r");
    if (p != NULL) {
        if (fgets(out, (int)cap, p) != NULL) {
            out[strcspn(out, "\n")] = '\0';
        } else {
            out[0] = '\0';
        }
        pclose(p);
        if (out[0] && has_pg_ctl(out)) {
            return TM_OK;
        }
    }
    char vf[PATH_MAX + 16];
    snprintf(vf, sizeof(vf), "%s/PG_VERSION", pgdata);
    char *ver = NULL;
    size_t vl = 0;
    if (tm_file_read(vf, &ver, &vl, NULL) == TM_OK) {
        ver[strcspn(ver, "\n")] = '\0';
        snprintf(out, cap, "/usr/lib/postgresql/%s/bin", ver);
        free(ver);
        if (has_pg_ctl(out)) {
            return TM_OK;
        }
    }
    return tm_err_set(err, TM_ECONFIG,
                      "cannot find pg_ctl: set targets[].postgres.bindir, or put pg_config on "
                      "PATH");
}

/* Run argv as (uid, gid) when we are root; wait; exit status or -1. The
 * program (pg_ctl, and through it the server and its restore_command) gets
 * the minimal environment of tm_restore_env_new, never the agent's: a
 * database superuser can read its server's environment (COPY ... FROM
 * PROGRAM 'env'), and the agent's holds env: secrets. */
static int run_as(char *const argv[], int chg, uid_t uid, gid_t gid, const char *user,
                  const char *pgdata)
{
    char *extra = NULL;
    char **env = NULL;
    tm_err e = {0};
    if (asprintf(&extra, "PGDATA=%s", pgdata) < 0) {
        return -1;
    }
    const char *const ex[] = {extra, NULL};
    if (tm_restore_env_new(user, ex, &env, &e) != TM_OK) {
        free(extra);
        return -1;
    }
    free(extra);
    pid_t pid = fork();
    if (pid < 0) {
        tm_restore_env_free(env);
        return -1;
    }
    if (pid == 0) {
        if (chg && (setgid(gid) != 0 || initgroups(user, gid) != 0 || setuid(uid) != 0)) {
            _exit(127);
        }
        execve(argv[0], argv, env);
        _exit(127);
    }
    tm_restore_env_free(env);
    int st = 0;
    while (waitpid(pid, &st, 0) < 0 && errno == EINTR) {
    }
    return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}

static int start_and_verify(rctx *r, const tm_agent_conf *conf, const tm_pg_target_conf *pgc,
                            const char *user, tm_pg_restore_report *rep, tm_err *err)
{
    (void)conf;
    const tm_pg_restore_opts *o = r->o;
    char bindir[PATH_MAX];
    int rc = find_bindir(pgc, o->pgdata, bindir, sizeof(bindir), err);
    if (rc != TM_OK) {
        return rc;
    }
    char pgctl[PATH_MAX + 16], logf[PATH_MAX + 32];
    snprintf(pgctl, sizeof(pgctl), "%s/pg_ctl", bindir);
    snprintf(logf, sizeof(logf), "%s/tidemark-restore.log", o->pgdata);
    char *argv[] = {pgctl, "-D", (char *)o->pgdata, "-l", logf, "-w", "-t", "3600", "start", NULL};
    uint64_t t0 = tm_mono_ns();
    int st = run_as(argv, r->chown, r->uid, r->gid, user, o->pgdata);
    if (st != 0) {
        return tm_err_set(
            err, TM_EIO, "pg_ctl start failed (exit %d); see %s for the server's reason", st, logf);
    }
    /* Where it listens: postmaster.pid line 4 = port, line 5 = socket dir,
     * line 6 = listen address. */
    char pidf[PATH_MAX + 32], *pid = NULL;
    size_t pl = 0;
    snprintf(pidf, sizeof(pidf), "%s/postmaster.pid", o->pgdata);
    char host[PATH_MAX] = "127.0.0.1";
    uint32_t port = o->port;
    if (tm_file_read(pidf, &pid, &pl, NULL) == TM_OK) {
        char *line = pid, *save = NULL;
        int n = 0;
        for (char *tok = strtok_r(line, "\n", &save); tok; tok = strtok_r(NULL, "\n", &save)) {
            n++;
            if (n == 4 && port == 0) {
                port = (uint32_t)strtoul(tok, NULL, 10);
            } else if (n == 5 && tok[0] == '/') {
                snprintf(host, sizeof(host), "%s", tok);
            }
        }
        free(pid);
    }
    /* Where a caller (a drill) reaches the started server. */
    snprintf(rep->host, sizeof(rep->host), "%.255s", host);
    rep->port = port;
    snprintf(rep->user, sizeof(rep->user), "%s", user);
    tm_pg_conn *c = NULL;
    tm_err e = {0};
    char *v = NULL;
    /* Wait for the end of recovery: promotion after the target. */
    uint64_t deadline = tm_mono_ns() + 3600ull * 1000000000ull;
    rc = TM_ETIMEDOUT;
    while (tm_mono_ns() < deadline) {
        if (c == NULL && tm_pg_connect(pgc, host, port, user, &c, &e) != TM_OK) {
            c = NULL;
        }
        if (c != NULL) {
            free(v);
            v = NULL;
            if (tm_pg_query_value(c, "SELECT pg_is_in_recovery()::text", &v, &e) == TM_OK &&
                strcmp(v, "false") == 0) {
                rc = TM_OK;
                break;
            }
            if (e.code != 0 && e.code != TM_ENOENT) {
                tm_pg_close(c);
                c = NULL;
            }
        }
        if (access(pidf, F_OK) != 0) {
            rc = tm_err_set(err, TM_EIO,
                            "PostgreSQL stopped during recovery (no postmaster.pid); see %s", logf);
            break;
        }
        if (o->ctx != NULL && tm_task_cancelled(o->ctx)) {
            rc = tm_err_set(err, TM_EBUSY, "cancelled while waiting for recovery");
            break;
        }
        usleep(100000);
    }
    free(v);
    v = NULL;
    rep->recovery_s = (double)(tm_mono_ns() - t0) / 1e9;
    if (rc == TM_ETIMEDOUT) {
        rc = tm_err_set(err, TM_ETIMEDOUT, "recovery did not finish within an hour: %s; see %s",
                        e.msg, logf);
    }
    if (rc == TM_OK) {
        rc = tm_pg_query_value(c,
                               "SELECT format('databases=%s lsn=%s timeline=%s', "
                               "(SELECT count(*) FROM pg_database), pg_current_wal_lsn(), "
                               "(SELECT timeline_id FROM pg_control_checkpoint()))",
                               &v, err);
        if (rc == TM_OK) {
            snprintf(rep->verify, sizeof(rep->verify), "%s", v);
        }
        free(v);
    }
    tm_pg_close(c);
    return rc;
}

int tm_pg_restore_stop(const tm_agent_conf *conf, const char *target, const char *pgdata,
                       tm_err *err)
{
    char pidf[PATH_MAX + 32];
    snprintf(pidf, sizeof(pidf), "%s/postmaster.pid", pgdata);
    if (access(pidf, F_OK) != 0) {
        return TM_OK; /* not running */
    }
    const tm_pg_target_conf *pgc = NULL;
    for (size_t i = 0; target != NULL && i < conf->n_targets; i++) {
        if (strcmp(conf->targets[i].name, target) == 0 && tm_pg_target(&conf->targets[i])) {
            pgc = tm_pg_target(&conf->targets[i]);
        }
    }
    char bindir[PATH_MAX];
    int rc = find_bindir(pgc, pgdata, bindir, sizeof(bindir), err);
    if (rc != TM_OK) {
        return rc;
    }
    /* pg_ctl refuses to run as root: as the owner of the directory. */
    struct stat st;
    int chg = 0;
    uid_t uid = 0;
    gid_t gid = 0;
    const char *user = NULL;
    if (geteuid() == 0 && stat(pgdata, &st) == 0 && st.st_uid != 0) {
        struct passwd *pw = getpwuid(st.st_uid);
        if (pw != NULL) {
            chg = 1;
            uid = pw->pw_uid;
            gid = pw->pw_gid;
            user = pw->pw_name;
        }
    }
    char pgctl[PATH_MAX + 16];
    snprintf(pgctl, sizeof(pgctl), "%s/pg_ctl", bindir);
    char *argv[] = {pgctl, "-D", (char *)pgdata, "-m",   "immediate",
                    "-w",  "-t", "120",          "stop", NULL};
    int code = run_as(argv, chg, uid, gid, user, pgdata);
    if (code != 0 && access(pidf, F_OK) == 0) {
        return tm_err_set(err, TM_EIO, "pg_ctl stop -D %s failed (exit %d)", pgdata, code);
    }
    return TM_OK;
}

/* ---- the whole restore ------------------------------------------------ */

static const tm_pg_target_conf *target_pg(const tm_agent_conf *conf, const char *name)
{
    for (size_t i = 0; i < conf->n_targets; i++) {
        if (strcmp(conf->targets[i].name, name) == 0 && tm_pg_target(&conf->targets[i])) {
            return tm_pg_target(&conf->targets[i]);
        }
    }
    return NULL;
}

int tm_pg_restore(const tm_agent_conf *conf, const tm_pg_restore_opts *o, tm_pg_restore_report *rep,
                  tm_err *err)
{
    memset(rep, 0, sizeof(*rep));
    uint64_t t0 = tm_mono_ns();
    if (o->target == NULL || !tm_repo_valid_name(o->target)) {
        return tm_err_set(err, TM_EINVAL, "--target must name a target ([A-Za-z0-9._-])");
    }
    if (o->pgdata == NULL || o->pgdata[0] != '/') {
        return tm_err_set(err, TM_EINVAL, "--pgdata must be an absolute directory path");
    }
    if ((o->time != NULL) + (o->lsn != NULL) + (o->immediate != 0) > 1) {
        return tm_err_set(err, TM_EINVAL, "--time, --lsn and --immediate are exclusive");
    }
    /* Always, also with --backup: they are written into postgresql.auto.conf. */
    int64_t tt;
    uint64_t tl;
    if (o->time != NULL && tm_pg_time_parse(o->time, &tt) != TM_OK) {
        return tm_err_set(err, TM_EINVAL,
                          "--time is not a time, expected 'YYYY-MM-DD HH:MM:SS+00' (a zone is "
                          "required)");
    }
    if (o->lsn != NULL && tm_pg_lsn_parse(o->lsn, &tl) != TM_OK) {
        return tm_err_set(err, TM_EINVAL, "--lsn is not an LSN, expected e.g. 0/3000028");
    }
    int confined = o->ctx != NULL; /* a task from the coordinator */
    const tm_agent_conf *cf = conf;
    int vrc = tm_restore_dir_check("--pgdata", o->pgdata, err);
    if (vrc == TM_OK && confined) {
        vrc = tm_restore_under_roots("restore directory", o->pgdata, cf->restore_roots,
                                     cf->n_restore_roots, err);
    }
    for (size_t i = 0; vrc == TM_OK && i < o->n_ts_map; i++) {
        const char *m = o->ts_map[i], *eq = strchr(m, '=');
        size_t ol = eq ? (size_t)(eq - m) : 0;
        if (eq == NULL || ol == 0 || strspn(m, "0123456789") != ol || eq[1] != '/') {
            return tm_err_set(err, TM_EINVAL, "--tablespace-map %s: expected OID=/absolute/dir", m);
        }
        vrc = confined ? tm_restore_under_roots("--tablespace-map", eq + 1, cf->restore_roots,
                                                cf->n_restore_roots, err)
                       : tm_restore_dir_check("--tablespace-map", eq + 1, err);
    }
    if (vrc == TM_OK && o->ts_map_all != NULL) {
        vrc = confined ? tm_restore_under_roots("--tablespace-map-all", o->ts_map_all,
                                                cf->restore_roots, cf->n_restore_roots, err)
                       : tm_restore_dir_check("--tablespace-map-all", o->ts_map_all, err);
    }
    if (vrc == TM_OK && o->waldir != NULL) {
        vrc = confined ? tm_restore_under_roots("--waldir", o->waldir, cf->restore_roots,
                                                cf->n_restore_roots, err)
                       : tm_restore_dir_check("--waldir", o->waldir, err);
    }
    if (vrc != TM_OK) {
        return vrc;
    }
    const tm_pg_target_conf *pgc = target_pg(conf, o->target);
    rctx r = {.o = o, .confined = confined, .conf = conf};
    pthread_mutex_init(&r.mu, NULL);
    const char *user = o->owner ? o->owner : (pgc && pgc->user ? pgc->user : "postgres");
    if (geteuid() == 0) {
        const char *owner = o->owner ? o->owner : "postgres";
        struct passwd *pw = getpwnam(owner);
        if (pw == NULL) {
            return tm_err_set(err, TM_ECONFIG,
                              "restoring as root: the data directory must belong to the "
                              "PostgreSQL user, but there is no user '%s'; pass --owner USER",
                              owner);
        }
        r.uid = pw->pw_uid;
        r.gid = pw->pw_gid;
        r.chown = 1;
        user = o->owner ? o->owner : (pgc && pgc->user ? pgc->user : owner);
    }
    tm_repo_set *rs = NULL;
    tm_pg_backup *bs = NULL;
    size_t nbs = 0, pick = 0;
    int rc = tm_repo_set_open(&rs, conf, TM_REPO_KEYS, err);
    if (rc == TM_OK) {
        rc = tm_pg_backups_list(rs, o->target, &bs, &nbs, err);
    }
    if (rc == TM_OK) {
        rc = choose(bs, nbs, o, o->target, &pick, err);
    }
    tm_backup_reader *main_rd = NULL;
    if (rc == TM_OK) {
        snprintf(rep->backup_id, sizeof(rep->backup_id), "%s", bs[pick].id);
        rc = tm_backup_open(rs, o->target, bs[pick].id, NULL, &main_rd, err);
    }
    if (rc == TM_OK) {
        r.m = tm_manifest_proto(tm_backup_reader_manifest(main_rd));
        r.sorted = calloc(r.m->n_files + 1, sizeof(*r.sorted));
        r.keep = calloc(r.m->n_files + 1, 1);
        r.jobs = calloc(r.m->n_files + 1, sizeof(*r.jobs));
        r.ids = calloc(r.m->n_files + 2, sizeof(*r.ids));
        r.rd = calloc(r.m->n_files + 2, sizeof(*r.rd));
        if (!r.sorted || !r.keep || !r.jobs || !r.ids || !r.rd) {
            rc = tm_err_set(err, TM_ENOMEM, "out of memory");
        }
    }
    if (rc == TM_OK) {
        r.ids[0] = strdup(bs[pick].id);
        r.rd[0] = main_rd;
        main_rd = NULL;
        r.nrd = 1;
        snprintf(rep->chain, sizeof(rep->chain), "%s", bs[pick].id);
        for (size_t i = 0; i < r.m->n_files; i++) {
            if (r.m->files[i]->path == NULL) {
                rc = tm_err_set(err, TM_ECORRUPT, "backup %s: file entry %zu has no path",
                                bs[pick].id, i);
                break;
            }
            r.sorted[r.nsorted++] = r.m->files[i];
        }
        qsort(r.sorted, r.nsorted, sizeof(*r.sorted), path_cmp);
    }
    if (rc == TM_OK) {
        rc = check_manifest(&r, bs[pick].id, err);
    }
    /* Open every backup the files come from, before any byte is written:
     * a missing ancestor or a wrong key fails here, not half-way. */
    for (size_t i = 0; rc == TM_OK && i < r.m->n_files; i++) {
        const Tidemark__FileEntry *fe = r.m->files[i];
        if (fe->type != TM_PG_FILE || fe->backup_id == NULL || fe->backup_id[0] == '\0' ||
            reader_for(&r, fe) != NULL) {
            continue;
        }
        r.ids[r.nrd] = strdup(fe->backup_id);
        rc = tm_backup_open(rs, o->target, fe->backup_id, NULL, &r.rd[r.nrd], err);
        if (rc != TM_OK) {
            tm_err_prefix(err, "backup %s needs files of %s", bs[pick].id, fe->backup_id);
            free(r.ids[r.nrd]);
            break;
        }
        size_t l = strlen(rep->chain);
        snprintf(rep->chain + l, sizeof(rep->chain) - l, " <- %s", fe->backup_id);
        r.nrd++;
    }
    if (rc == TM_OK) {
        tm_info("postgres",
                "event=restore_started target=%s backup=%s chain=\"%s\" pgdata=%s delta=%d",
                o->target, bs[pick].id, rep->chain, o->pgdata, o->delta);
        rc = prepare_dir(&r, err);
    }
    if (rc == TM_OK) {
        rc = make_tree(&r, err);
    }
    if (rc == TM_OK) {
        /* Sorted positions -> manifest positions for the keep flags. */
        uint8_t *keep_m = calloc(r.m->n_files + 1, 1);
        if (keep_m == NULL) {
            rc = tm_err_set(err, TM_ENOMEM, "out of memory");
        }
        for (size_t s = 0; keep_m != NULL && s < r.nsorted; s++) {
            if (r.keep[s]) {
                for (size_t i = 0; i < r.m->n_files; i++) {
                    if (r.m->files[i] == r.sorted[s]) {
                        keep_m[i] = 1;
                        break;
                    }
                }
            }
        }
        for (size_t i = 0; keep_m != NULL && i < r.m->n_files; i++) {
            const Tidemark__FileEntry *fe = r.m->files[i];
            if (fe->type != TM_PG_FILE) {
                continue;
            }
            if (keep_m[i]) {
                /* Matching content: only the attributes are set again. */
                tm_err e = {0};
                if (tm_restore_root_set_attrs(r.rr, fe->path, fe->mode ? fe->mode : 0600, fe->mtime,
                                              &e) != TM_OK) {
                    tm_warn("postgres", "event=restore_attrs_failed msg=\"%s\"", e.msg);
                }
                continue;
            }
            r.jobs[r.njobs++] = i;
            r.bytes_total += fe->size;
        }
        free(keep_m);
    }
    if (rc == TM_OK) {
        uint32_t n = pgc && pgc->parallel ? pgc->parallel : 2;
        pthread_t th[64];
        uint32_t started = 0;
        for (; started < n && started < 64; started++) {
            if (pthread_create(&th[started], NULL, worker, &r) != 0) {
                break;
            }
        }
        if (started == 0) {
            worker(&r);
        }
        for (uint32_t i = 0; i < started; i++) {
            pthread_join(th[i], NULL);
        }
        if (atomic_load(&r.failed)) {
            *err = r.err;
            rc = r.err.code ? r.err.code : TM_EIO;
        }
    }
    if (rc == TM_OK) {
        rc = write_recovery(&r, conf, bs[pick].id, rep, err);
    }
    if (rc == TM_OK) {
        rc = tm_restore_root_own(r.rr, 0700, err);
        /* One syncfs for the whole restore (files were written without
         * per-file fsync): its failure means the restore is not durable. */
        int dfd = open(o->pgdata, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
        if (dfd < 0 || syncfs(dfd) != 0) {
            int e = errno;
            if (rc == TM_OK) {
                rc = tm_err_set(err, tm_err_from_errno(e),
                                "sync %s: %s; the restored files may "
                                "not be on disk",
                                o->pgdata, strerror(e));
            }
        }
        if (dfd >= 0) {
            close(dfd);
        }
    }
    rep->files = atomic_load(&r.files_done);
    rep->bytes = atomic_load(&r.bytes_done);
    rep->reused_files = r.reused_files;
    rep->reused_bytes = r.reused_bytes;
    rep->removed = r.removed;
    rep->files_s = (double)(tm_mono_ns() - t0) / 1e9;
    if (rc == TM_OK) {
        tm_info("postgres",
                "event=restore_files_done target=%s backup=%s files=%" PRIu64 " bytes=%" PRIu64
                " reused=%" PRIu64 " removed=%" PRIu64 " s=%.2f",
                o->target, rep->backup_id, rep->files, rep->bytes, rep->reused_files, rep->removed,
                rep->files_s);
    }
    if (rc == TM_OK && o->start) {
        rc = start_and_verify(&r, conf, pgc, user, rep, err);
    }
    rep->total_s = (double)(tm_mono_ns() - t0) / 1e9;
    for (size_t i = 0; i < r.nrd; i++) {
        tm_backup_reader_free(r.rd[i]);
        free(r.ids[i]);
    }
    tm_backup_reader_free(main_rd);
    free(r.rd);
    free(r.ids);
    free(r.sorted);
    free(r.keep);
    free(r.jobs);
    tm_pg_backups_free(bs, nbs);
    tm_repo_set_free(rs);
    tm_restore_root_free(r.rr);
    pthread_mutex_destroy(&r.mu);
    return rc;
}
