/*
 * files.c - what a PostgreSQL backup copies: the walk of PGDATA and its
 * tablespaces, the files PostgreSQL documents as excluded ("Backing Up the
 * Data Directory" in the manual; the same lists pg_basebackup keeps), and
 * the incremental copy-or-reference decision.
 */
#include "agent/engines/postgres/pg.h"

#include <dirent.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

/* Directories whose contents are recreated by the server (or, for pg_wal,
 * come from the WAL archive / the backup's own WAL copy): the directory is
 * recorded so it exists after a restore, its contents are not copied. */
static const char *const empty_dirs[] = {
    "pg_wal",    "pg_dynshmem",  "pg_notify",   "pg_replslot",
    "pg_serial", "pg_snapshots", "pg_stat_tmp", "pg_subtrans",
};

/* Files never copied, wherever they are in the top directory. */
static const char *const top_files[] = {
    "postmaster.pid",   "postmaster.opts",          "backup_label",
    "backup_label.old", "tablespace_map",           "recovery.signal",
    "standby.signal",   "postgresql.auto.conf.tmp", "current_logfiles.tmp",
};

int tm_pg_exclude(const char *rel, int is_dir)
{
    const char *base = strrchr(rel, '/');
    base = base ? base + 1 : rel;
    /* Temporary files and directories of sorts/hashes, at any depth. */
    if (strncmp(base, "pgsql_tmp", 9) == 0) {
        return TM_PG_SKIP;
    }
    /* Relation cache init files: rebuilt at start, stale after restore. */
    if (!is_dir && strcmp(base, "pg_internal.init") == 0) {
        return TM_PG_SKIP;
    }
    if (strchr(rel, '/') == NULL) {
        for (size_t i = 0; is_dir && i < sizeof(empty_dirs) / sizeof(empty_dirs[0]); i++) {
            if (strcmp(rel, empty_dirs[i]) == 0) {
                return TM_PG_EMPTY_DIR;
            }
        }
        for (size_t i = 0; !is_dir && i < sizeof(top_files) / sizeof(top_files[0]); i++) {
            if (strcmp(rel, top_files[i]) == 0) {
                return TM_PG_SKIP;
            }
        }
    }
    return TM_PG_KEEP;
}

int tm_pg_is_relation_file(const char *rel, uint32_t *segno)
{
    if (strncmp(rel, "base/", 5) != 0 && strncmp(rel, "global/", 7) != 0 &&
        strncmp(rel, "pg_tblspc/", 10) != 0) {
        return 0;
    }
    const char *b = strrchr(rel, '/') + 1;
    /* <filenode>[_fsm|_vm|_init][.<segment>] */
    size_t d = strspn(b, "0123456789");
    if (d == 0) {
        return 0;
    }
    const char *p = b + d;
    static const char *const forks[] = {"_fsm", "_vm", "_init"};
    for (size_t i = 0; i < sizeof(forks) / sizeof(forks[0]); i++) {
        size_t fl = strlen(forks[i]);
        if (strncmp(p, forks[i], fl) == 0 && (p[fl] == '\0' || p[fl] == '.')) {
            p += fl;
            break;
        }
    }
    uint32_t seg = 0;
    if (*p == '.') {
        p++;
        size_t sd = strspn(p, "0123456789");
        if (sd == 0 || sd > 6 || p[sd] != '\0') {
            return 0;
        }
        seg = (uint32_t)strtoul(p, NULL, 10);
    } else if (*p != '\0') {
        return 0;
    }
    if (segno != NULL) {
        *segno = seg;
    }
    return 1;
}

int tm_pg_incr_must_copy(const Tidemark__FileEntry *prev, uint64_t size, int64_t mtime,
                         int64_t prev_start)
{
    if (prev == NULL || prev->type != TM_PG_FILE || prev->object == NULL ||
        prev->object[0] == '\0') {
        return 1;
    }
    if (prev->size != size || prev->mtime != mtime) {
        return 1;
    }
    /* Same size and mtime, but the file was modified while (or just before)
     * the previous backup read it: a write later in that same second keeps
     * both, so the stored copy may be older than the file. Only a file that
     * was quiet for the whole previous backup can be trusted by metadata
     * (pgBackRest's rule too). The slack covers file systems with 1-2 s
     * timestamps. */
    if (mtime >= prev_start - TM_PG_MTIME_SLACK_S) {
        return 1;
    }
    return 0;
}

/* ---- the walk --------------------------------------------------------- */

typedef struct walk {
    tm_pg_entry *v;
    size_t n, cap;
    tm_err *err;
} walk;

static int push(walk *w, const char *rel, const char *abs, const struct stat *st, int type,
                const char *link)
{
    if (w->n == w->cap) {
        size_t cap = w->cap ? w->cap * 2 : 256;
        tm_pg_entry *nv = realloc(w->v, cap * sizeof(*nv));
        if (nv == NULL) {
            return tm_err_set(w->err, TM_ENOMEM, "out of memory");
        }
        w->v = nv;
        w->cap = cap;
    }
    tm_pg_entry *e = &w->v[w->n];
    memset(e, 0, sizeof(*e));
    e->rel = strdup(rel);
    e->abs = strdup(abs);
    e->link = link ? strdup(link) : NULL;
    w->n++;
    if (e->rel == NULL || e->abs == NULL || (link && e->link == NULL)) {
        return tm_err_set(w->err, TM_ENOMEM, "out of memory");
    }
    e->type = type;
    e->mode = (uint32_t)(st->st_mode & 07777);
    e->mtime = (int64_t)st->st_mtime;
    e->size = type == TM_PG_FILE ? (uint64_t)st->st_size : 0;
    return TM_OK;
}

static int walk_dir(walk *w, const char *abs, const char *rel, int depth);

static int visit(walk *w, const char *abs, const char *rel, int depth)
{
    struct stat st;
    if (lstat(abs, &st) != 0) {
        if (errno == ENOENT) {
            return TM_OK; /* dropped table, finished temp file: gone is fine */
        }
        return tm_err_set(w->err, tm_err_from_errno(errno), "stat %s: %s", abs, strerror(errno));
    }
    int is_dir = S_ISDIR(st.st_mode);
    int x = tm_pg_exclude(rel, is_dir);
    if (x == TM_PG_SKIP) {
        return TM_OK;
    }
    if (S_ISLNK(st.st_mode)) {
        char target[4096];
        ssize_t l = readlink(abs, target, sizeof(target) - 1);
        if (l < 0) {
            return errno == ENOENT ? TM_OK
                                   : tm_err_set(w->err, tm_err_from_errno(errno), "readlink %s: %s",
                                                abs, strerror(errno));
        }
        target[l] = '\0';
        /* A tablespace: pg_tblspc/<oid> -> its directory, whose contents are
         * backed up as if they lived under pg_tblspc/<oid>/. Any other link
         * (pg_wal on another disk, a config file) is recorded as a link. */
        int rc = push(w, rel, abs, &st, TM_PG_LINK, target);
        if (rc == TM_OK && strncmp(rel, "pg_tblspc/", 10) == 0 && strchr(rel + 10, '/') == NULL) {
            struct stat ts;
            if (stat(abs, &ts) == 0 && S_ISDIR(ts.st_mode)) {
                rc = walk_dir(w, abs, rel, depth + 1);
            }
        }
        return rc;
    }
    if (is_dir) {
        int rc = push(w, rel, abs, &st, TM_PG_DIR, NULL);
        if (rc == TM_OK && x == TM_PG_EMPTY_DIR && strcmp(rel, "pg_wal") == 0) {
            /* The server expects pg_wal/archive_status to exist. */
            struct stat as = st;
            rc = push(w, "pg_wal/archive_status", abs, &as, TM_PG_DIR, NULL);
        }
        if (rc == TM_OK && x == TM_PG_KEEP) {
            rc = walk_dir(w, abs, rel, depth + 1);
        }
        return rc;
    }
    if (S_ISREG(st.st_mode)) {
        return push(w, rel, abs, &st, TM_PG_FILE, NULL);
    }
    return TM_OK; /* sockets, fifos: nothing to restore */
}

static int walk_dir(walk *w, const char *abs, const char *rel, int depth)
{
    DIR *d = opendir(abs);
    if (d == NULL) {
        if (errno == ENOENT) {
            return TM_OK;
        }
        return tm_err_set(w->err, tm_err_from_errno(errno), "open directory %s: %s", abs,
                          strerror(errno));
    }
    int rc = TM_OK;
    struct dirent *de;
    while (rc == TM_OK && (de = readdir(d)) != NULL) {
        if (strcmp(de->d_name, ".") == 0 || strcmp(de->d_name, "..") == 0) {
            continue;
        }
        char *ca = NULL, *cr = NULL;
        if (asprintf(&ca, "%s/%s", abs, de->d_name) < 0) {
            ca = NULL;
        }
        if (rel[0] == '\0' ? asprintf(&cr, "%s", de->d_name) < 0
                           : asprintf(&cr, "%s/%s", rel, de->d_name) < 0) {
            cr = NULL;
        }
        rc = ca == NULL || cr == NULL ? tm_err_set(w->err, TM_ENOMEM, "out of memory")
                                      : visit(w, ca, cr, depth);
        free(ca);
        free(cr);
    }
    closedir(d);
    return rc;
}

static int entry_cmp(const void *a, const void *b)
{
    /* Byte order puts "base" before "base/1": parents before children. */
    return strcmp(((const tm_pg_entry *)a)->rel, ((const tm_pg_entry *)b)->rel);
}

int tm_pg_walk(const char *pgdata, tm_pg_entry **out, size_t *n, tm_err *err)
{
    *out = NULL;
    *n = 0;
    walk w = {.err = err};
    struct stat st;
    errno = 0;
    if (stat(pgdata, &st) != 0 || !S_ISDIR(st.st_mode)) {
        return tm_err_set(err, TM_ENOENT, "data directory %s: %s; check targets[].postgres.pgdata",
                          pgdata, errno ? strerror(errno) : "not a directory");
    }
    int rc = walk_dir(&w, pgdata, "", 1);
    if (rc != TM_OK) {
        tm_pg_entries_free(w.v, w.n);
        return rc;
    }
    if (w.n > 1) {
        qsort(w.v, w.n, sizeof(*w.v), entry_cmp);
    }
    *out = w.v;
    *n = w.n;
    return TM_OK;
}

void tm_pg_entries_free(tm_pg_entry *e, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        free(e[i].rel);
        free(e[i].abs);
        free(e[i].link);
    }
    free(e);
}
