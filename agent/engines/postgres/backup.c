/*
 * backup.c - full and incremental PostgreSQL backups.
 *
 *   1. one libpq session: a temporary slot that reserves WAL, then
 *      pg_backup_start(label, fast => true) (non-exclusive);
 *   2. walk PGDATA + tablespaces (files.c), decide per file: copy, or (in an
 *      incremental) reference the previous backup's copy;
 *   3. N workers stream the copies through the repository set (every
 *      repository at once), validating page checksums on the way;
 *   4. pg_backup_stop(wait_for_archive => true): stop LSN, backup_label and
 *      tablespace_map go into the manifest;
 *   5. the WAL from the start to the stop segment is copied into the backup
 *      as pg_wal/ files (see below), then the manifest is written last.
 *
 * Why the backup carries its own WAL (pg_basebackup -X fetch, pgBackRest
 * --archive-copy): a backup is only consistent once WAL up to its stop LSN
 * is replayed. With WAL archiving those segments are in the archive too, but
 * copying them makes every backup restorable by itself to its consistent
 * point (--immediate), with archiving off, and when the archive has a gap.
 * The cost is one or a few segments per backup. The temporary replication
 * slot created before the start keeps the server from recycling them until
 * this session ends; it disappears with the session, even on kill -9.
 *
 * Failure anywhere: the writer is freed without a manifest (the backup does
 * not exist), and the session is closed, which ends the server-side backup.
 */
#include "agent/engines/postgres/pg.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <limits.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "common/log.h"
#include "common/util.h"

#define COPY_BUF (1u << 20) /* a multiple of the page size */

typedef struct bctx {
    tm_task_ctx *ctx;
    tm_backup_writer *w;
    const tm_pg_entry *ents;
    Tidemark__FileEntry *fe; /* one per entry */
    size_t *jobs;            /* entries to copy */
    size_t njobs;
    atomic_size_t next;
    uint64_t start_lsn;
    int validate;
    uint64_t bytes_total;
    uint32_t files_total;
    atomic_uint_fast64_t bytes_done, stored, checksum_bad, pages_checked;
    atomic_uint files_done, vanished;
    pthread_mutex_t mu;
    atomic_int failed;
    tm_err err; /* the first failure */
} bctx;

static void fail(bctx *b, const tm_err *e)
{
    pthread_mutex_lock(&b->mu);
    if (!atomic_load(&b->failed)) {
        b->err = *e;
        atomic_store(&b->failed, 1);
    }
    pthread_mutex_unlock(&b->mu);
}

static void progress(bctx *b, const char *phase)
{
    if (b->ctx != NULL) {
        tm_task_progress(b->ctx, phase, atomic_load(&b->bytes_done), b->bytes_total,
                         atomic_load(&b->files_done), b->files_total);
    }
}

/* Read up to cap bytes, retrying short reads, so pages stay aligned. */
static ssize_t read_full(int fd, uint8_t *buf, size_t cap)
{
    size_t got = 0;
    while (got < cap) {
        ssize_t r = read(fd, buf + got, cap - got);
        if (r < 0 && errno == EINTR) {
            continue;
        }
        if (r < 0) {
            return -1;
        }
        if (r == 0) {
            break;
        }
        got += (size_t)r;
    }
    return (ssize_t)got;
}

/* Copy one file into object `name`; fill fe. A file that vanished before we
 * opened it is left out (fe->path stays NULL): a dropped relation needs no
 * restore, WAL replay deals with it. */
static int copy_file(bctx *b, const char *abs, const char *rel, const char *name,
                     Tidemark__FileEntry *fe, uint8_t *buf, tm_err *err)
{
    int fd = open(abs, O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        if (errno == ENOENT) {
            atomic_fetch_add(&b->vanished, 1);
            return TM_OK;
        }
        return tm_err_set(err, tm_err_from_errno(errno), "open %s: %s", abs, strerror(errno));
    }
    /* Metadata from before the read: a write during the read then shows as
     * a newer mtime next time, never as an unchanged file. */
    struct stat st;
    if (fstat(fd, &st) != 0) {
        int e = errno;
        close(fd);
        return tm_err_set(err, tm_err_from_errno(e), "stat %s: %s", abs, strerror(e));
    }
    uint32_t segno = 0;
    int rel_file = b->validate && tm_pg_is_relation_file(rel, &segno);
    tm_backup_object *o = NULL;
    int rc = tm_backup_object_open(b->w, name, &o, err);
    uint64_t off = 0, bad = 0;
    char first_bad[160] = "";
    while (rc == TM_OK) {
        if (b->ctx != NULL && tm_task_cancelled(b->ctx)) {
            rc = tm_err_set(err, TM_EBUSY, "cancelled");
            break;
        }
        ssize_t n = read_full(fd, buf, COPY_BUF);
        if (n < 0) {
            rc = tm_err_set(err, tm_err_from_errno(errno), "read %s: %s", abs, strerror(errno));
            break;
        }
        if (n == 0) {
            break;
        }
        if (rel_file) {
            for (size_t p = 0; p + TM_PG_BLCKSZ <= (size_t)n; p += TM_PG_BLCKSZ) {
                uint32_t blk = segno * TM_PG_RELSEG_BLOCKS + (uint32_t)((off + p) / TM_PG_BLCKSZ);
                uint16_t have = 0, want = 0;
                atomic_fetch_add(&b->pages_checked, 1);
                if (tm_pg_page_bad(buf + p, blk, b->start_lsn, &have, &want)) {
                    if (bad++ == 0) {
                        snprintf(first_bad, sizeof(first_bad),
                                 "block %u: checksum 0x%04x, computed 0x%04x", blk, have, want);
                    }
                }
            }
        }
        rc = tm_backup_object_write(o, buf, (size_t)n, err);
        off += (uint64_t)n;
        atomic_fetch_add(&b->bytes_done, (uint64_t)n);
    }
    close(fd);
    if (rc != TM_OK) {
        if (o != NULL) {
            tm_backup_object_abort(o);
        }
        return rc;
    }
    tm_object_digest d;
    if ((rc = tm_backup_object_close(o, &d, err)) != TM_OK) {
        return rc;
    }
    if (bad > 0) {
        tm_warn("postgres", "event=page_checksum_failure file=%s pages=%" PRIu64 " first=\"%s\"",
                rel, bad, first_bad);
        atomic_fetch_add(&b->checksum_bad, bad);
    }
    fe->path = strdup(rel);
    fe->object = strdup(name);
    fe->xxh3_128 = strdup(d.xxh3_128);
    fe->sha256 = strdup(d.sha256);
    if (fe->path == NULL || fe->object == NULL || fe->xxh3_128 == NULL || fe->sha256 == NULL) {
        return tm_err_set(err, TM_ENOMEM, "out of memory");
    }
    fe->has_type = fe->has_mode = fe->has_mtime = fe->has_size = 1;
    fe->type = TM_PG_FILE;
    fe->mode = (uint32_t)(st.st_mode & 07777);
    fe->mtime = (int64_t)st.st_mtime;
    fe->size = d.plain_size;
    fe->has_stored_size = fe->has_frames = 1;
    fe->stored_size = d.stored_size;
    fe->frames = d.frames;
    if (bad > 0) {
        fe->has_checksum_errors = 1;
        fe->checksum_errors = (uint32_t)bad;
    }
    atomic_fetch_add(&b->stored, d.stored_size);
    atomic_fetch_add(&b->files_done, 1);
    return TM_OK;
}

/* Object names are the data directory's relative paths (readable in a
 * listing); a name the repository would refuse (non-ASCII) gets a number. */
static char *object_name(const char *prefix, const char *rel, size_t i)
{
    char *s = NULL;
    int ok = 1;
    for (const char *p = rel; *p; p++) {
        ok &= *p >= ' ' && *p <= '~' && *p != '\\';
    }
    if ((ok ? asprintf(&s, "%s/%s", prefix, rel) : asprintf(&s, "%s-n/%zu", prefix, i)) < 0) {
        return NULL;
    }
    return s;
}

static void *worker(void *arg)
{
    bctx *b = arg;
    uint8_t *buf = malloc(COPY_BUF);
    if (buf == NULL) {
        tm_err e;
        tm_err_set(&e, TM_ENOMEM, "out of memory");
        fail(b, &e);
        return NULL;
    }
    for (;;) {
        size_t k = atomic_fetch_add(&b->next, 1);
        if (k >= b->njobs || atomic_load(&b->failed)) {
            break;
        }
        size_t i = b->jobs[k];
        tm_err e = {0};
        char *name = object_name("pgdata", b->ents[i].rel, i);
        int rc = name == NULL
                     ? tm_err_set(&e, TM_ENOMEM, "out of memory")
                     : copy_file(b, b->ents[i].abs, b->ents[i].rel, name, &b->fe[i], buf, &e);
        free(name);
        if (rc != TM_OK) {
            fail(b, &e);
            break;
        }
        progress(b, "copy");
    }
    free(buf);
    return NULL;
}

static int run_workers(bctx *b, uint32_t n, tm_err *err)
{
    pthread_t th[64];
    uint32_t started = 0;
    for (; started < n && started < 64; started++) {
        if (pthread_create(&th[started], NULL, worker, b) != 0) {
            break;
        }
    }
    if (started == 0) {
        worker(b);
    }
    for (uint32_t i = 0; i < started; i++) {
        pthread_join(th[i], NULL);
    }
    if (atomic_load(&b->failed)) {
        *err = b->err;
        return b->err.code ? b->err.code : TM_EIO;
    }
    return TM_OK;
}

static void fe_free_strings(Tidemark__FileEntry *fe)
{
    free(fe->path);
    free(fe->link);
    free(fe->object);
    free(fe->backup_id);
    free(fe->xxh3_128);
    free(fe->sha256);
}

static char *xstrdup(const char *s)
{
    return s ? strdup(s) : NULL;
}

/* Reference the previous backup's copy: same content, so same object and
 * digests; the holder is whoever stored it (maybe an older ancestor). */
static int reference(Tidemark__FileEntry *fe, const Tidemark__FileEntry *prev, const char *prev_id,
                     const tm_pg_entry *e)
{
    fe->path = xstrdup(e->rel);
    fe->object = xstrdup(prev->object);
    fe->backup_id = xstrdup(prev->backup_id && prev->backup_id[0] ? prev->backup_id : prev_id);
    fe->xxh3_128 = xstrdup(prev->xxh3_128);
    fe->sha256 = xstrdup(prev->sha256);
    fe->has_type = fe->has_mode = fe->has_mtime = fe->has_size = 1;
    fe->type = TM_PG_FILE;
    fe->mode = e->mode;
    fe->mtime = e->mtime;
    fe->size = prev->size;
    fe->has_stored_size = fe->has_frames = 1;
    fe->stored_size = prev->stored_size;
    fe->frames = prev->frames;
    return fe->path && fe->object && fe->backup_id && fe->xxh3_128 && fe->sha256 ? TM_OK
                                                                                 : TM_ENOMEM;
}

static int prev_cmp(const void *a, const void *b)
{
    const Tidemark__FileEntry *x = *(Tidemark__FileEntry *const *)a;
    const Tidemark__FileEntry *y = *(Tidemark__FileEntry *const *)b;
    return strcmp(x->path ? x->path : "", y->path ? y->path : "");
}

static const Tidemark__FileEntry *prev_find(Tidemark__FileEntry **sorted, size_t n, const char *rel)
{
    size_t lo = 0, hi = n;
    while (lo < hi) {
        size_t mid = (lo + hi) / 2;
        int c = strcmp(sorted[mid]->path ? sorted[mid]->path : "", rel);
        if (c == 0) {
            return sorted[mid];
        }
        if (c < 0) {
            lo = mid + 1;
        } else {
            hi = mid;
        }
    }
    return NULL;
}

/* Key/value list for the manifest's engine_info and the task's extra. */
typedef struct kv {
    Tidemark__Manifest__EngineInfoEntry *e;
    Tidemark__Manifest__EngineInfoEntry **p;
    size_t n, cap;
} kv;

static int kv_add(kv *k, const char *key, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static int kv_add(kv *k, const char *key, const char *fmt, ...)
{
    if (k->n == k->cap) {
        return TM_ENOMEM;
    }
    va_list ap;
    va_start(ap, fmt);
    char *v = NULL;
    int r = vasprintf(&v, fmt, ap);
    va_end(ap);
    if (r < 0) {
        return TM_ENOMEM;
    }
    Tidemark__Manifest__EngineInfoEntry *e = &k->e[k->n];
    tidemark__manifest__engine_info_entry__init(e);
    e->key = strdup(key);
    e->value = v;
    k->p[k->n++] = e;
    return e->key ? TM_OK : TM_ENOMEM;
}

static void kv_free(kv *k)
{
    for (size_t i = 0; i < k->n; i++) {
        free(k->e[i].key);
        free(k->e[i].value);
    }
    free(k->e);
    free(k->p);
}

static int result_extra(Tidemark__TaskResult *r, const char *key, uint64_t v)
{
    Tidemark__KeyValue **nv = realloc(r->extra, (r->n_extra + 1) * sizeof(*nv));
    if (nv == NULL) {
        return TM_ENOMEM;
    }
    r->extra = nv;
    Tidemark__KeyValue *e = malloc(sizeof(*e));
    if (e == NULL) {
        return TM_ENOMEM;
    }
    tidemark__key_value__init(e);
    e->key = strdup(key);
    if (asprintf(&e->value, "%" PRIu64, v) < 0) {
        e->value = NULL;
    }
    r->extra[r->n_extra++] = e;
    return e->key && e->value ? TM_OK : TM_ENOMEM;
}

/* The WAL between start and stop (inclusive), plus timeline history files,
 * read from pg_wal after pg_backup_stop (see the top of this file). */
static int copy_wal(bctx *b, const char *pgdata, const tm_pg_server *srv, uint32_t tli,
                    uint64_t start_lsn, uint64_t stop_lsn, Tidemark__FileEntry **out, size_t *nout,
                    tm_err *err)
{
    *out = NULL;
    *nout = 0;
    uint64_t first = start_lsn / srv->wal_segment_size;
    uint64_t last = (stop_lsn > 0 ? stop_lsn - 1 : 0) / srv->wal_segment_size;
    if (last < first) {
        last = first;
    }
    /* History files: the restore's timeline switch needs them. */
    char **names = NULL;
    size_t nn = 0;
    char dir[PATH_MAX];
    snprintf(dir, sizeof(dir), "%s/pg_wal", pgdata);
    DIR *d = opendir(dir);
    struct dirent *de;
    while (d != NULL && (de = readdir(d)) != NULL) {
        size_t l = strlen(de->d_name);
        if (l == 16 && strcmp(de->d_name + 8, ".history") == 0) {
            char **nv = realloc(names, (nn + 1) * sizeof(*nv));
            if (nv == NULL) {
                break;
            }
            names = nv;
            names[nn++] = strdup(de->d_name);
        }
    }
    if (d != NULL) {
        closedir(d);
    }
    size_t total = nn + (size_t)(last - first + 1);
    Tidemark__FileEntry *fe = calloc(total, sizeof(*fe));
    uint8_t *buf = malloc(COPY_BUF);
    int rc = fe == NULL || buf == NULL ? tm_err_set(err, TM_ENOMEM, "out of memory") : TM_OK;
    size_t k = 0;
    for (uint64_t s = first; rc == TM_OK && s <= last; s++, k++) {
        char seg[25], rel[64], abs[PATH_MAX + 64], *name = NULL;
        tm_pg_wal_name(tli, s, srv->wal_segment_size, seg);
        snprintf(rel, sizeof(rel), "pg_wal/%s", seg);
        snprintf(abs, sizeof(abs), "%s/%s", dir, seg);
        tidemark__file_entry__init(&fe[k]);
        if (asprintf(&name, "wal/%s", seg) < 0) {
            rc = tm_err_set(err, TM_ENOMEM, "out of memory");
            break;
        }
        unsigned before = atomic_load(&b->vanished);
        rc = copy_file(b, abs, rel, name, &fe[k], buf, err);
        free(name);
        if (rc == TM_OK && atomic_load(&b->vanished) != before) {
            rc = tm_err_set(err, TM_ENOENT,
                            "WAL segment %s, needed to make this backup consistent, was removed "
                            "from %s before it could be copied; allow the replication slot the "
                            "agent creates (max_replication_slots > 0) or raise wal_keep_size",
                            seg, dir);
        }
    }
    for (size_t i = 0; rc == TM_OK && i < nn; i++, k++) {
        char rel[300], abs[PATH_MAX + 300], *name = NULL;
        tidemark__file_entry__init(&fe[k]);
        if (names[i] == NULL || asprintf(&name, "wal/%s", names[i]) < 0) {
            rc = tm_err_set(err, TM_ENOMEM, "out of memory");
            break;
        }
        snprintf(rel, sizeof(rel), "pg_wal/%s", names[i]);
        snprintf(abs, sizeof(abs), "%s/%s", dir, names[i]);
        rc = copy_file(b, abs, rel, name, &fe[k], buf, err);
        free(name);
    }
    for (size_t i = 0; i < nn; i++) {
        free(names[i]);
    }
    free(names);
    free(buf);
    if (rc != TM_OK) {
        for (size_t i = 0; fe != NULL && i < k; i++) {
            fe_free_strings(&fe[i]);
        }
        free(fe);
        return rc;
    }
    *out = fe;
    *nout = k;
    return TM_OK;
}

/* The newest PostgreSQL backup of the target that is complete in every
 * repository: an incremental may only reference objects that exist wherever
 * the incremental itself will. */
static int find_parent(tm_repo_set *rs, const char *target, char **parent, tm_err *err)
{
    *parent = NULL;
    tm_pg_backup *bs = NULL;
    size_t n = 0;
    int rc = tm_pg_backups_list(rs, target, &bs, &n, err);
    if (rc != TM_OK) {
        return rc;
    }
    for (size_t i = n; i-- > 0;) {
        if (bs[i].everywhere) {
            *parent = strdup(bs[i].id);
            break;
        }
    }
    tm_pg_backups_free(bs, n);
    return TM_OK;
}

int tm_pg_backup_run(tm_task_ctx *ctx, const tm_agent_conf *conf, const tm_target_conf *t,
                     int incremental, Tidemark__TaskResult *result, tm_err *err)
{
    const tm_pg_target_conf *pgc = tm_pg_target(t);
    if (pgc == NULL || pgc->pgdata == NULL) {
        return tm_err_set(err, TM_ECONFIG,
                          "%s: target %s has no postgres.pgdata; add targets[].postgres: "
                          "{pgdata: /path/to/data}",
                          conf->path, t->name);
    }
    tm_repo_set *rs = NULL;
    tm_backup_reader *prev_rd = NULL;
    tm_pg_conn *pc = NULL;
    tm_backup_writer *w = NULL;
    tm_pg_entry *ents = NULL;
    size_t nents = 0;
    Tidemark__FileEntry *fe = NULL, *walfe = NULL, **fptr = NULL, **prev_sorted = NULL;
    size_t nwal = 0, nfe = 0, nprev = 0;
    char *parent = NULL;
    tm_pg_stop stop = {0};
    kv info = {0};
    bctx b = {.ctx = ctx, .validate = pgc->checksum_validation};
    pthread_mutex_init(&b.mu, NULL);
    uint64_t t0 = tm_mono_ns();
    int64_t prev_start = 0;
    uint64_t ref_bytes = 0;
    uint32_t nref = 0;
    int finished = 0;

    int rc = tm_repo_set_open(&rs, conf, TM_REPO_KEYS, err);
    if (rc == TM_OK && incremental) {
        rc = find_parent(rs, t->name, &parent, err);
        if (rc == TM_OK && parent == NULL) {
            tm_warn("postgres",
                    "event=incremental_without_parent target=%s msg=\"no backup complete in every "
                    "repository to build on; taking a full backup\"",
                    t->name);
            incremental = 0;
        }
    }
    if (rc == TM_OK && parent != NULL) {
        rc = tm_backup_open(rs, t->name, parent, NULL, &prev_rd, err);
    }
    const Tidemark__Manifest *prev =
        prev_rd ? tm_manifest_proto(tm_backup_reader_manifest(prev_rd)) : NULL;
    if (prev != NULL) {
        const char *s = tm_pg_info(prev, "start_time");
        prev_start = s ? strtoll(s, NULL, 10) : INT64_MAX; /* unknown: copy everything */
        prev_sorted = calloc(prev->n_files ? prev->n_files : 1, sizeof(*prev_sorted));
        if (prev_sorted == NULL) {
            rc = tm_err_set(err, TM_ENOMEM, "out of memory");
        }
        for (size_t i = 0; rc == TM_OK && i < prev->n_files; i++) {
            if (prev->files[i]->path != NULL) {
                prev_sorted[nprev++] = prev->files[i];
            }
        }
        if (nprev > 1) {
            qsort(prev_sorted, nprev, sizeof(*prev_sorted), prev_cmp);
        }
    }

    tm_pg_server srv;
    if (rc == TM_OK) {
        rc = tm_pg_connect(pgc, NULL, 0, NULL, &pc, err);
    }
    if (rc == TM_OK) {
        rc = tm_pg_server_info(pc, &srv, err);
    }
    if (rc == TM_OK && b.validate && !srv.data_checksums) {
        /* Nothing to validate: the cluster was initialised without them. */
        b.validate = 0;
    }
    if (rc == TM_OK) {
        char a[PATH_MAX], c[PATH_MAX];
        if (realpath(pgc->pgdata, a) == NULL || realpath(srv.data_directory, c) == NULL ||
            strcmp(a, c) != 0) {
            rc = tm_err_set(err, TM_ECONFIG,
                            "target %s: postgres.pgdata is %s but the server at port %u runs "
                            "from %s; fix targets[].postgres",
                            t->name, pgc->pgdata, pgc->port, srv.data_directory);
        }
    }
    if (rc == TM_OK) {
        tm_err e = {0};
        if (tm_pg_reserve_wal(pc, &e) != TM_OK) {
            /* Not fatal: the WAL is usually still there a few seconds later;
             * copy_wal says clearly if it was not. */
            tm_warn("postgres", "event=wal_reserve_failed target=%s msg=\"%s\"", t->name, e.msg);
        }
    }
    char id[80] = "";
    for (int attempt = 0; rc == TM_OK; attempt++) {
        tm_pg_backup_id(tm_now_s(), incremental, id, sizeof(id));
        rc = tm_backup_begin(rs, t->name, id, incremental ? "incremental" : "full", "postgres", &w,
                             err);
        if (rc != TM_OK && rc != TM_EEXIST) {
            /* No repository took the key record: say so for each. */
            tm_repo_outcomes_failed(rs, err, result);
        }
        if (rc != TM_EEXIST || attempt >= 2) {
            break;
        }
        /* Ids are per second: wait for the next one. */
        rc = TM_OK;
        usleep((useconds_t)(1000 - tm_now_ms() % 1000) * 1000 + 1000);
    }
    int64_t start_time = tm_now_s();
    char label[128];
    snprintf(label, sizeof(label), "tidemark %s", id);
    if (rc == TM_OK) {
        rc = tm_pg_backup_start(pc, srv.version_num, label, &b.start_lsn, err);
    }
    if (rc == TM_OK) {
        tm_info("postgres", "event=backup_started target=%s backup=%s parent=%s", t->name, id,
                parent ? parent : "-");
        if (ctx != NULL) {
            tm_task_progress(ctx, "walk", 0, 0, 0, 0);
        }
        rc = tm_pg_walk(pgc->pgdata, &ents, &nents, err);
    }
    if (rc == TM_OK) {
        fe = calloc(nents ? nents : 1, sizeof(*fe));
        b.jobs = calloc(nents ? nents : 1, sizeof(*b.jobs));
        if (fe == NULL || b.jobs == NULL) {
            rc = tm_err_set(err, TM_ENOMEM, "out of memory");
        }
    }
    for (size_t i = 0; rc == TM_OK && i < nents; i++) {
        const tm_pg_entry *e = &ents[i];
        tidemark__file_entry__init(&fe[i]);
        if (e->type != TM_PG_FILE) {
            fe[i].path = strdup(e->rel);
            fe[i].link = xstrdup(e->link);
            fe[i].has_type = fe[i].has_mode = fe[i].has_mtime = 1;
            fe[i].type = (uint32_t)e->type;
            fe[i].mode = e->mode;
            fe[i].mtime = e->mtime;
            if (fe[i].path == NULL) {
                rc = tm_err_set(err, TM_ENOMEM, "out of memory");
            }
            continue;
        }
        const Tidemark__FileEntry *pf = prev ? prev_find(prev_sorted, nprev, e->rel) : NULL;
        if (prev != NULL && !tm_pg_incr_must_copy(pf, e->size, e->mtime, prev_start)) {
            if (reference(&fe[i], pf, parent, e) != TM_OK) {
                rc = tm_err_set(err, TM_ENOMEM, "out of memory");
            }
            nref++;
            ref_bytes += pf->size;
            continue;
        }
        b.jobs[b.njobs++] = i;
        b.bytes_total += e->size;
        b.files_total++;
    }
    if (rc == TM_OK) {
        b.w = w;
        b.ents = ents;
        b.fe = fe;
        rc = run_workers(&b, pgc->parallel ? pgc->parallel : 2, err);
    }
    if (rc == TM_OK) {
        rc = tm_pg_backup_stop(pc, srv.version_num, &stop, err);
    }
    int64_t stop_time = (tm_now_ms() + 999) / 1000;
    tm_pg_label lab;
    if (rc == TM_OK) {
        rc = tm_pg_label_parse(stop.labelfile, &lab, err);
    }
    if (rc == TM_OK) {
        if (ctx != NULL) {
            tm_task_progress(ctx, "wal", atomic_load(&b.bytes_done), b.bytes_total,
                             atomic_load(&b.files_done), b.files_total);
        }
        rc = copy_wal(&b, pgc->pgdata, &srv, lab.timeline, lab.start_lsn, stop.stop_lsn, &walfe,
                      &nwal, err);
    }
    /* The session's work is done: closing it drops the temporary slot. */
    tm_pg_close(pc);
    pc = NULL;

    /* Manifest: every entry that still exists, then the WAL. */
    if (rc == TM_OK) {
        fptr = calloc(nents + nwal + 1, sizeof(*fptr));
        info.e = calloc(24, sizeof(*info.e));
        info.p = calloc(24, sizeof(*info.p));
        info.cap = 24;
        if (fptr == NULL || info.e == NULL || info.p == NULL) {
            rc = tm_err_set(err, TM_ENOMEM, "out of memory");
        }
    }
    if (rc == TM_OK) {
        for (size_t i = 0; i < nents; i++) {
            if (fe[i].path != NULL) {
                fptr[nfe++] = &fe[i];
            }
        }
        for (size_t i = 0; i < nwal; i++) {
            if (walfe[i].path != NULL) {
                fptr[nfe++] = &walfe[i];
            }
        }
        char s1[32], s2[32];
        tm_pg_lsn_fmt(lab.start_lsn, s1, sizeof(s1));
        tm_pg_lsn_fmt(stop.stop_lsn, s2, sizeof(s2));
        int k = kv_add(&info, "start_lsn", "%s", s1);
        k |= kv_add(&info, "stop_lsn", "%s", s2);
        k |= kv_add(&info, "timeline", "%u", lab.timeline);
        k |= kv_add(&info, "start_time", "%" PRId64, start_time);
        k |= kv_add(&info, "stop_time", "%" PRId64, stop_time);
        k |= kv_add(&info, "start_wal", "%s", lab.start_wal);
        k |= kv_add(&info, "backup_label", "%s", stop.labelfile);
        k |= kv_add(&info, "tablespace_map", "%s", stop.spcmap);
        k |= kv_add(&info, "pg_version_num", "%d", srv.version_num);
        k |= kv_add(&info, "system_identifier", "%s", srv.system_identifier);
        k |= kv_add(&info, "wal_segment_size", "%u", srv.wal_segment_size);
        k |= kv_add(&info, "pgdata", "%s", pgc->pgdata);
        k |= kv_add(&info, "wal_included", "%zu", nwal);
        k |= kv_add(&info, "checksum_errors", "%" PRIu64, (uint64_t)atomic_load(&b.checksum_bad));
        if (k != TM_OK) {
            rc = tm_err_set(err, TM_ENOMEM, "out of memory");
        }
    }
    if (rc == TM_OK) {
        Tidemark__Manifest *m = tm_manifest_proto(tm_backup_writer_manifest(w));
        m->files = fptr;
        m->n_files = nfe;
        m->engine_info = info.p;
        m->n_engine_info = info.n;
        m->parent_backup_id = parent;
        rc = tm_backup_finish(w, err);
        finished = 1;
        /* The manifest is sealed: give the borrowed pointers back before
         * anything frees it. */
        m->files = NULL;
        m->n_files = 0;
        m->engine_info = NULL;
        m->n_engine_info = 0;
        m->parent_backup_id = NULL;
    }
    size_t nres = 0;
    const tm_repo_result *res = w ? tm_backup_results(w, &nres) : NULL;
    /* TM_EIO from finish (and only from finish: an EIO from copying means
     * nothing was finished anywhere): complete in some repositories. That is
     * a backup (it exists, the coordinator records where), with the others
     * named. */
    if (rc == TM_OK || (rc == TM_EIO && finished && res != NULL)) {
        size_t okn = 0;
        for (size_t i = 0; i < nres; i++) {
            okn += res[i].code == TM_OK;
        }
        if (rc == TM_EIO && okn == 0) {
            goto done;
        }
        if (rc == TM_EIO) {
            tm_warn("postgres", "event=backup_partial backup=%s msg=\"%s\"", id, err->msg);
        }
        rc = TM_OK;
        char s1[32], s2[32];
        tm_pg_lsn_fmt(lab.start_lsn, s1, sizeof(s1));
        tm_pg_lsn_fmt(stop.stop_lsn, s2, sizeof(s2));
        result->backup_id = strdup(id);
        result->has_backup_type = 1;
        result->backup_type =
            incremental ? TIDEMARK__BACKUP_TYPE__INCREMENTAL : TIDEMARK__BACKUP_TYPE__FULL;
        result->has_bytes = result->has_stored_bytes = result->has_files = 1;
        result->bytes = atomic_load(&b.bytes_done);
        result->stored_bytes = atomic_load(&b.stored);
        result->files = (uint32_t)nfe;
        result->start_position = strdup(s1);
        result->stop_position = strdup(s2);
        result->has_chain = result->has_start_time = result->has_stop_time = 1;
        result->chain = lab.timeline;
        /* The WAL segment holding the stop LSN: the coordinator extends the
         * PITR window through the archived run that contains it. */
        char stop_seg[25];
        tm_pg_wal_name(lab.timeline, stop.stop_lsn / srv.wal_segment_size, srv.wal_segment_size,
                       stop_seg);
        result->stop_log = strdup(stop_seg);
        result->start_time = start_time;
        result->stop_time = stop_time;
        result->parent_backup_id = xstrdup(parent);
        result->repositories = calloc(nres ? nres : 1, sizeof(char *));
        for (size_t i = 0; result->repositories != NULL && i < nres; i++) {
            if (res[i].code == TM_OK) {
                result->repositories[result->n_repositories++] = strdup(res[i].repo);
            }
        }
        result_extra(result, "files_copied", b.files_total);
        result_extra(result, "files_referenced", nref);
        result_extra(result, "bytes_referenced", ref_bytes);
        result_extra(result, "wal_segments", nwal);
        result_extra(result, "pages_checked", atomic_load(&b.pages_checked));
        result_extra(result, "checksum_errors", atomic_load(&b.checksum_bad));
        result_extra(result, "files_vanished", atomic_load(&b.vanished));
        tm_info("postgres",
                "event=backup_done target=%s backup=%s type=%s files=%zu copied=%u referenced=%u "
                "bytes=%" PRIu64 " stored=%" PRIu64 " start_lsn=%s stop_lsn=%s wal=%zu "
                "checksum_errors=%" PRIu64 " ms=%" PRIu64,
                t->name, id, incremental ? "incremental" : "full", nfe, b.files_total, nref,
                (uint64_t)atomic_load(&b.bytes_done), (uint64_t)atomic_load(&b.stored), s1, s2,
                nwal, (uint64_t)atomic_load(&b.checksum_bad), (tm_mono_ns() - t0) / 1000000);
    }
done:
    /* Every repository's outcome, on failure too: where it is complete and,
     * elsewhere, why not. */
    if (w != NULL && tm_backup_outcomes(w, result) != TM_OK && rc == TM_OK) {
        rc = tm_err_set(err, TM_ENOMEM, "out of memory");
    }
    tm_pg_close(pc);
    tm_backup_writer_free(w);
    tm_backup_reader_free(prev_rd);
    tm_repo_set_free(rs);
    for (size_t i = 0; fe != NULL && i < nents; i++) {
        fe_free_strings(&fe[i]);
    }
    for (size_t i = 0; walfe != NULL && i < nwal; i++) {
        fe_free_strings(&walfe[i]);
    }
    free(fe);
    free(walfe);
    free(fptr);
    free(prev_sorted);
    free(b.jobs);
    kv_free(&info);
    tm_pg_stop_free(&stop);
    tm_pg_entries_free(ents, nents);
    free(parent);
    pthread_mutex_destroy(&b.mu);
    return rc;
}
