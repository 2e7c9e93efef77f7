/*
 * posix.c - a repository that is a directory (local disk, NFS).
 *
 * Atomicity: a put writes "<dir>/.tmp.<name>.<random>" next to the final
 * file, fsyncs it, renames it over the key and fsyncs the directory, so a
 * crash at any point leaves either the old state or the complete object.
 * Temp files start with ".tmp." and list() never shows them; keys whose last
 * segment starts with ".tmp." are refused for that reason.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "common/storage/backend.h"
#include "common/util.h"

#define TMP_PREFIX ".tmp."

typedef struct posix {
    char root[PATH_MAX];
} posix;

typedef struct posix_writer {
    posix *p;
    int fd;
    int excl;                     /* create only: an existing object is never replaced */
    uint64_t written, wb_started; /* write-behind (tm_writeback) */
    char tmp[PATH_MAX];
    char path[PATH_MAX];
} posix_writer;

typedef struct posix_reader {
    int fd;
    uint64_t pos;
    uint64_t end; /* exclusive; UINT64_MAX = to EOF */
    char path[PATH_MAX];
} posix_reader;

/* Disk full and permissions get their own codes: the operator's fix differs. */
static int posix_errno(int e)
{
    if (e == ENOSPC || e == EDQUOT) {
        return TM_ENOSPC;
    }
    if (e == EACCES || e == EPERM || e == EROFS) {
        return TM_EPERM;
    }
    return tm_err_from_errno(e);
}

static int fail(tm_err *err, int e, const char *what, const char *path)
{
    return tm_err_set(err, posix_errno(e), "%s %s: %s", what, path, strerror(e));
}

static int key_path(posix *p, const char *key, char *out, tm_err *err)
{
    const char *base = strrchr(key, '/');
    base = base ? base + 1 : key;
    if (strncmp(base, TMP_PREFIX, strlen(TMP_PREFIX)) == 0) {
        return tm_err_set(err, TM_EINVAL, "posix:%s: key '%s' uses the reserved prefix '%s'",
                          p->root, key, TMP_PREFIX);
    }
    int n = snprintf(out, PATH_MAX, "%s/%s", p->root, key);
    if (n < 0 || n >= PATH_MAX) {
        return tm_err_set(err, TM_EINVAL, "posix:%s: key too long: %s", p->root, key);
    }
    return TM_OK;
}

/* A rename or link is durable only once its directory is: a failed directory
 * fsync is a failed put, like a failed file fsync. */
static int fsync_dir(const char *path, tm_err *err)
{
    int fd = open(path, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd < 0) {
        return fail(err, errno, "open directory", path);
    }
    int rc = TM_OK;
    if (fsync(fd) != 0 && errno != EINVAL) {
        rc = fail(err, errno, "fsync directory", path);
    }
    if (close(fd) != 0 && rc == TM_OK) {
        rc = fail(err, errno, "close directory", path);
    }
    return rc;
}

static void dir_of(const char *path, char *out)
{
    snprintf(out, PATH_MAX, "%s", path);
    char *slash = strrchr(out, '/');
    if (slash != NULL && slash != out) {
        *slash = '\0';
    }
}

/* Create a temp file beside `path`, making parent directories as needed. A
 * concurrent delete may prune the directory between mkdir and open, so retry. */
static int create_temp(posix *p, const char *path, char *tmp, int *fd_out, tm_err *err)
{
    char dir[PATH_MAX];
    dir_of(path, dir);
    const char *base = strrchr(path, '/') + 1;
    for (int attempt = 0; attempt < 5; attempt++) {
        unsigned char rnd[8];
        char hex[17];
        tm_random_bytes(rnd, sizeof(rnd));
        tm_hex(rnd, sizeof(rnd), hex);
        /* Keep the temp name short enough for NAME_MAX even with long bases. */
        int n = snprintf(tmp, PATH_MAX, "%s/" TMP_PREFIX "%.200s.%s", dir, base, hex);
        if (n < 0 || n >= PATH_MAX) {
            return tm_err_set(err, TM_EINVAL, "posix: path too long: %s", path);
        }
        int fd = open(tmp, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
        if (fd >= 0) {
            *fd_out = fd;
            return TM_OK;
        }
        if (errno != ENOENT) {
            return fail(err, errno, "create", tmp);
        }
        tm_err tmp_err;
        if (tm_mkdir_p(dir, 0700, &tmp_err) != TM_OK) {
            return tm_err_set(err, posix_errno(errno), "posix:%s: %s", p->root, tmp_err.msg);
        }
        /* New directories are durable once their parents are: fsync each
         * one from the new leaf's parent up to the root. */
        char up[PATH_MAX];
        snprintf(up, sizeof(up), "%s", dir);
        size_t rl = strlen(p->root);
        while (strlen(up) > rl) {
            char *slash = strrchr(up, '/');
            if (slash == NULL || slash == up) {
                break;
            }
            *slash = '\0';
            int rc = fsync_dir(up, err);
            if (rc != TM_OK) {
                return rc;
            }
        }
    }
    return tm_err_set(err, TM_EIO, "create temp file in %s: directory keeps vanishing", dir);
}

static int posix_open(void **state, const tm_storage_opts *opts, char *describe, size_t cap,
                      tm_err *err)
{
    if (opts->path == NULL || opts->path[0] == '\0') {
        return tm_err_set(err, TM_ECONFIG, "posix storage: no path given");
    }
    posix *p = calloc(1, sizeof(*p));
    if (p == NULL) {
        return tm_err_set(err, TM_ENOMEM, "posix storage: out of memory");
    }
    size_t n = strlen(opts->path);
    while (n > 1 && opts->path[n - 1] == '/') {
        n--;
    }
    if (n >= sizeof(p->root)) {
        free(p);
        return tm_err_set(err, TM_ECONFIG, "posix storage: path too long");
    }
    memcpy(p->root, opts->path, n);
    p->root[n] = '\0';
    int rc = tm_mkdir_p(p->root, 0700, err);
    if (rc != TM_OK) {
        free(p);
        return rc;
    }
    struct stat st;
    if (stat(p->root, &st) != 0 || !S_ISDIR(st.st_mode)) {
        free(p);
        return tm_err_set(err, TM_ECONFIG, "posix storage: %s is not a directory", opts->path);
    }
    snprintf(describe, cap, "posix:%s", p->root);
    *state = p;
    return TM_OK;
}

static void posix_free(void *state)
{
    free(state);
}

static int posix_put_open(void *state, const char *key, void **out, tm_err *err)
{
    posix *p = state;
    posix_writer *w = calloc(1, sizeof(*w));
    if (w == NULL) {
        return tm_err_set(err, TM_ENOMEM, "put %s: out of memory", key);
    }
    w->p = p;
    int rc = key_path(p, key, w->path, err);
    if (rc == TM_OK) {
        rc = create_temp(p, w->path, w->tmp, &w->fd, err);
    }
    if (rc != TM_OK) {
        free(w);
        return rc;
    }
    *out = w;
    return TM_OK;
}

static int posix_write(void *wp, const void *buf, size_t len, tm_err *err)
{
    posix_writer *w = wp;
    const char *b = buf;
    while (len > 0) {
        ssize_t n = write(w->fd, b, len);
        if (n < 0) {
            if (errno == EINTR) {
                continue;
            }
            return fail(err, errno, "write", w->tmp);
        }
        if (n == 0) {
            /* No progress and no errno: never loop on it, never call it done. */
            return tm_err_set(err, TM_EIO, "write %s: wrote 0 of %zu bytes", w->tmp, len);
        }
        b += n;
        len -= (size_t)n;
        w->written += (uint64_t)n;
    }
    tm_writeback(w->fd, &w->wb_started, w->written);
    return TM_OK;
}

static void posix_put_abort(void *wp)
{
    posix_writer *w = wp;
    if (w->fd >= 0) {
        close(w->fd);
    }
    unlink(w->tmp);
    free(w);
}

static int posix_put_commit(void *wp, tm_err *err)
{
    posix_writer *w = wp;
    int rc = TM_OK;
    if (fsync(w->fd) != 0) {
        rc = fail(err, errno, "fsync", w->tmp);
    }
    int cfd = w->fd;
    w->fd = -1;
    if (close(cfd) != 0 && rc == TM_OK) {
        rc = fail(err, errno, "close", w->tmp);
    }
    if (rc == TM_OK && w->excl) {
        /* link() fails with EEXIST instead of replacing (and works on NFS,
         * unlike renameat2's RENAME_NOREPLACE); the temp name goes after. */
        if (link(w->tmp, w->path) != 0) {
            int e = errno;
            rc = e == EEXIST ? tm_err_set(err, TM_EEXIST,
                                          "create %s: already exists (repositories are never "
                                          "overwritten)",
                                          w->path)
                             : fail(err, e, "link to", w->path);
        } else if (unlink(w->tmp) != 0) {
            rc = fail(err, errno, "unlink", w->tmp);
            unlink(w->path);
        }
    } else if (rc == TM_OK && rename(w->tmp, w->path) != 0) {
        rc = fail(err, errno, "rename to", w->path);
    }
    if (rc != TM_OK) {
        posix_put_abort(w);
        return rc;
    }
    char dir[PATH_MAX];
    dir_of(w->path, dir);
    rc = fsync_dir(dir, err);
    if (rc != TM_OK) {
        /* Visible but maybe not durable: take it back rather than report a
         * put that a crash could undo. */
        unlink(w->path);
    }
    free(w);
    return rc;
}

static int posix_put_create(void *state, const char *key, const void *buf, size_t len, tm_err *err)
{
    void *wp = NULL;
    int rc = posix_put_open(state, key, &wp, err);
    if (rc != TM_OK) {
        return rc;
    }
    ((posix_writer *)wp)->excl = 1;
    if (len > 0 && (rc = posix_write(wp, buf, len, err)) != TM_OK) {
        posix_put_abort(wp);
        return rc;
    }
    return posix_put_commit(wp, err);
}

static int posix_get_open(void *state, const char *key, uint64_t offset, uint64_t length,
                          void **out, tm_err *err)
{
    posix *p = state;
    posix_reader *r = calloc(1, sizeof(*r));
    if (r == NULL) {
        return tm_err_set(err, TM_ENOMEM, "get %s: out of memory", key);
    }
    int rc = key_path(p, key, r->path, err);
    if (rc != TM_OK) {
        free(r);
        return rc;
    }
    r->fd = open(r->path, O_RDONLY | O_CLOEXEC);
    if (r->fd < 0) {
        rc = fail(err, errno, "open", r->path);
        free(r);
        return rc;
    }
    r->pos = offset;
    r->end = length == 0 ? UINT64_MAX : offset + length;
    *out = r;
    return TM_OK;
}

static int posix_read(void *rp, void *buf, size_t cap, size_t *got, tm_err *err)
{
    posix_reader *r = rp;
    if (r->pos >= r->end) {
        return TM_OK;
    }
    if ((uint64_t)cap > r->end - r->pos) {
        cap = (size_t)(r->end - r->pos);
    }
    for (;;) {
        ssize_t n = pread(r->fd, buf, cap, (off_t)r->pos);
        if (n < 0) {
            if (errno == EINTR) {
                continue;
            }
            return fail(err, errno, "read", r->path);
        }
        r->pos += (uint64_t)n;
        *got = (size_t)n;
        return TM_OK;
    }
}

static void posix_get_close(void *rp)
{
    posix_reader *r = rp;
    close(r->fd);
    free(r);
}

/* Listing: a sorted recursive walk. Within a directory, entries are ordered
 * by their key text with directories compared as "name/", which yields the
 * global lexical key order. Subtrees that are entirely <= token or outside
 * the prefix are skipped without being read. */
typedef struct list_ctx {
    posix *p;
    const char *prefix;
    const char *token;
    size_t max;
    tm_storage_info *items;
    size_t n, cap;
    int more; /* found one beyond max */
    tm_err *err;
} list_ctx;

typedef struct ent {
    char *name; /* "x" or "x/" for directories */
    int is_dir;
    uint64_t size;
    int64_t mtime;
} ent;

static int ent_cmp(const void *a, const void *b)
{
    return strcmp(((const ent *)a)->name, ((const ent *)b)->name);
}

static int starts_with(const char *s, const char *pre)
{
    return strncmp(s, pre, strlen(pre)) == 0;
}

static int walk(list_ctx *c, const char *rel)
{
    char dpath[PATH_MAX + 8];
    if ((size_t)snprintf(dpath, sizeof(dpath), "%s/%s", c->p->root, rel) >= PATH_MAX) {
        return TM_OK; /* cannot hold a valid key */
    }
    DIR *d = opendir(dpath);
    if (d == NULL) {
        if (errno == ENOENT || errno == ENOTDIR) {
            return TM_OK; /* deleted while listing */
        }
        return fail(c->err, errno, "opendir", dpath);
    }
    ent *ents = NULL;
    size_t n = 0, cap = 0;
    int rc = TM_OK;
    struct dirent *de;
    while ((de = readdir(d)) != NULL) {
        if (de->d_name[0] == '.' &&
            (de->d_name[1] == '\0' || (de->d_name[1] == '.' && de->d_name[2] == '\0') ||
             starts_with(de->d_name, TMP_PREFIX))) {
            continue;
        }
        struct stat st;
        if (fstatat(dirfd(d), de->d_name, &st, 0) != 0) {
            continue; /* vanished */
        }
        if (!S_ISDIR(st.st_mode) && !S_ISREG(st.st_mode)) {
            continue;
        }
        if (n == cap) {
            cap = cap ? cap * 2 : 32;
            ent *ne = realloc(ents, cap * sizeof(*ne));
            if (ne == NULL) {
                rc = tm_err_set(c->err, TM_ENOMEM, "list: out of memory");
                break;
            }
            ents = ne;
        }
        size_t len = strlen(de->d_name);
        char *name = malloc(len + 2);
        if (name == NULL) {
            rc = tm_err_set(c->err, TM_ENOMEM, "list: out of memory");
            break;
        }
        memcpy(name, de->d_name, len);
        name[len] = S_ISDIR(st.st_mode) ? '/' : '\0';
        name[len + 1] = '\0';
        ents[n++] = (ent){.name = name,
                          .is_dir = S_ISDIR(st.st_mode),
                          .size = (uint64_t)st.st_size,
                          .mtime = (int64_t)st.st_mtime};
    }
    closedir(d);
    if (rc == TM_OK && n > 1) {
        qsort(ents, n, sizeof(*ents), ent_cmp);
    }
    for (size_t i = 0; rc == TM_OK && i < n && !c->more; i++) {
        char key[PATH_MAX];
        int kl = snprintf(key, sizeof(key), "%s%s", rel, ents[i].name);
        if (kl < 0 || kl >= (int)sizeof(key)) {
            continue;
        }
        if (ents[i].is_dir) {
            /* key is "a/b/": descend only if the prefix can match below it... */
            if (!starts_with(key, c->prefix) && !starts_with(c->prefix, key)) {
                continue;
            }
            /* ...and if some key below it can sort after the token. */
            if (c->token != NULL && strcmp(key, c->token) < 0 && !starts_with(c->token, key)) {
                continue;
            }
            rc = walk(c, key);
            continue;
        }
        if (!starts_with(key, c->prefix)) {
            continue;
        }
        if (c->token != NULL && strcmp(key, c->token) <= 0) {
            continue;
        }
        if (c->n == c->max) {
            c->more = 1;
            break;
        }
        if (tm_storage_infos_push(&c->items, &c->n, &c->cap, key, ents[i].size, ents[i].mtime) !=
            TM_OK) {
            rc = tm_err_set(c->err, TM_ENOMEM, "list: out of memory");
        }
    }
    for (size_t i = 0; i < n; i++) {
        free(ents[i].name);
    }
    free(ents);
    return rc;
}

static int posix_list(void *state, const char *prefix, const char *token, size_t max,
                      tm_storage_info **items, size_t *n, char **next, tm_err *err)
{
    list_ctx c = {.p = state, .prefix = prefix, .token = token, .max = max, .err = err};
    /* A missing root is a missing repository (unmounted disk, deleted
     * directory), not an empty one. */
    struct stat st;
    if (stat(c.p->root, &st) != 0) {
        return fail(err, errno, "repository root", c.p->root);
    }
    if (!S_ISDIR(st.st_mode)) {
        return fail(err, ENOTDIR, "repository root", c.p->root);
    }
    int rc = walk(&c, "");
    if (rc != TM_OK) {
        tm_storage_infos_free(c.items, c.n);
        return rc;
    }
    if (c.more && c.n > 0) {
        *next = strdup(c.items[c.n - 1].key);
        if (*next == NULL) {
            tm_storage_infos_free(c.items, c.n);
            return tm_err_set(err, TM_ENOMEM, "list: out of memory");
        }
    }
    *items = c.items;
    *n = c.n;
    return TM_OK;
}

static int posix_stat(void *state, const char *key, tm_storage_info *info, tm_err *err)
{
    posix *p = state;
    char path[PATH_MAX];
    int rc = key_path(p, key, path, err);
    if (rc != TM_OK) {
        return rc;
    }
    struct stat st;
    if (stat(path, &st) != 0) {
        return fail(err, errno, "stat", path);
    }
    if (!S_ISREG(st.st_mode)) {
        return tm_err_set(err, TM_ENOENT, "stat %s: not an object", path);
    }
    info->size = (uint64_t)st.st_size;
    info->mtime = (int64_t)st.st_mtime;
    return TM_OK;
}

/* Remove now-empty parent directories up to (not including) the root, so
 * retention does not leave a forest of empty backup directories behind. */
static void prune_dirs(posix *p, const char *path)
{
    char dir[PATH_MAX];
    dir_of(path, dir);
    size_t rl = strlen(p->root);
    while (strlen(dir) > rl && rmdir(dir) == 0) {
        char *slash = strrchr(dir, '/');
        if (slash == NULL) {
            break;
        }
        *slash = '\0';
    }
}

static int posix_del(void *state, const char *const *keys, size_t n, tm_err *err)
{
    posix *p = state;
    for (size_t i = 0; i < n; i++) {
        char path[PATH_MAX];
        int rc = key_path(p, keys[i], path, err);
        if (rc != TM_OK) {
            return rc;
        }
        if (unlink(path) != 0) {
            if (errno == ENOENT) {
                continue;
            }
            return fail(err, errno, "unlink", path);
        }
        prune_dirs(p, path);
    }
    return TM_OK;
}

static int posix_copy(void *state, const char *src, const char *dst, tm_err *err)
{
    posix *p = state;
    char spath[PATH_MAX];
    int rc = key_path(p, src, spath, err);
    if (rc != TM_OK) {
        return rc;
    }
    int sfd = open(spath, O_RDONLY | O_CLOEXEC);
    if (sfd < 0) {
        return fail(err, errno, "open", spath);
    }
    void *w = NULL;
    rc = posix_put_open(p, dst, &w, err);
    if (rc != TM_OK) {
        close(sfd);
        return rc;
    }
    char buf[1 << 16];
    for (;;) {
        ssize_t got = read(sfd, buf, sizeof(buf));
        if (got < 0) {
            if (errno == EINTR) {
                continue;
            }
            rc = fail(err, errno, "read", spath);
            break;
        }
        if (got == 0) {
            break;
        }
        rc = posix_write(w, buf, (size_t)got, err);
        if (rc != TM_OK) {
            break;
        }
    }
    close(sfd);
    if (rc != TM_OK) {
        posix_put_abort(w);
        return rc;
    }
    return posix_put_commit(w, err);
}

const tm_storage_backend tm_storage_backend_posix = {
    .name = "posix",
    .open = posix_open,
    .free = posix_free,
    .put_open = posix_put_open,
    .write = posix_write,
    .put_commit = posix_put_commit,
    .put_abort = posix_put_abort,
    .put_create = posix_put_create,
    .get_open = posix_get_open,
    .read = posix_read,
    .get_close = posix_get_close,
    .list = posix_list,
    .stat = posix_stat,
    .del = posix_del,
    .copy = posix_copy,
};
