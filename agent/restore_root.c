/*
 * restore_root.c - a restore writes only beneath its directory (see
 * restore_root.h for the rules and why).
 */
#include "agent/restore_root.h"

#include <ctype.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <linux/openat2.h>
#include <pthread.h>
#include <pwd.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#include "agent/engine.h"
#include "common/util.h"

extern char **environ;

typedef struct rr_link {
    char *rel;  /* where the link is, relative to the root */
    char *dest; /* the directory it points to */
    int fd;     /* that directory, opened: paths below rel resolve beneath it */
} rr_link;

struct tm_restore_root {
    int fd;
    char *path;
    tm_restore_root_opts o;
    rr_link *links;
    size_t nlinks;
};

/* ---- validation ------------------------------------------------------- */

/* rel as it can be shown in a message: non-printable bytes as \xNN, cut. */
static void shown(const char *s, size_t len, char *out, size_t cap)
{
    size_t o = 0, i = 0;
    for (; i < len && o + 5 < cap; i++) {
        unsigned char c = (unsigned char)s[i];
        if (c < 0x20 || c >= 0x7f || c == '\'') {
            o += (size_t)snprintf(out + o, cap - o, "\\x%02x", c);
        } else {
            out[o++] = (char)c;
        }
    }
    if (i < len && cap > 4) {
        /* Cut: "..." in place of the rest (an escape may have run long). */
        o = o > cap - 4 ? cap - 4 : o;
        memcpy(out + o, "...", 3);
        o += 3;
    }
    out[o] = '\0';
}

static int bad_entry(const char *rel, size_t len, const char *why, tm_err *err)
{
    char s[120];
    shown(rel ? rel : "", rel ? len : 0, s, sizeof(s));
    return tm_err_set(err, TM_EINVAL,
                      "manifest entry '%s': %s; a restore writes only beneath its directory", s,
                      why);
}

/* Components of p (len bytes, no NUL inside): no empty, `.` or `..` one, none
 * longer than TM_RESTORE_NAME_MAX, no control character. NULL or the reason. */
static const char *components_bad(const char *p, size_t len, int allow_trailing)
{
    if (allow_trailing && len > 1 && p[len - 1] == '/') {
        len--;
    }
    size_t i = 0;
    for (;;) {
        size_t j = i;
        while (j < len && p[j] != '/') {
            unsigned char c = (unsigned char)p[j];
            if (c < 0x20 || c == 0x7f) {
                return "contains a control character";
            }
            j++;
        }
        size_t n = j - i;
        if (n == 0) {
            return "has an empty component (// or a trailing /)";
        }
        if ((n == 1 && p[i] == '.') || (n == 2 && p[i] == '.' && p[i + 1] == '.')) {
            return "has a '.' or '..' component";
        }
        if (n > TM_RESTORE_NAME_MAX) {
            return "has a name longer than 255 bytes";
        }
        if (j == len) {
            return NULL;
        }
        i = j + 1;
    }
}

int tm_restore_path_check(const char *rel, size_t len, tm_err *err)
{
    if (rel == NULL || len == 0) {
        return bad_entry("", 0, "empty path", err);
    }
    if (memchr(rel, '\0', len) != NULL) {
        return bad_entry(rel, len, "contains a NUL byte", err);
    }
    if (len > TM_RESTORE_PATH_MAX) {
        return bad_entry(rel, len, "longer than 1024 bytes", err);
    }
    if (rel[0] == '/') {
        return bad_entry(rel, len, "is an absolute path", err);
    }
    const char *why = components_bad(rel, len, 0);
    return why ? bad_entry(rel, len, why, err) : TM_OK;
}

int tm_restore_dir_check(const char *what, const char *dir, tm_err *err)
{
    size_t len = dir ? strlen(dir) : 0;
    char s[120];
    shown(dir ? dir : "", len, s, sizeof(s));
    if (len == 0 || dir[0] != '/') {
        return tm_err_set(err, TM_EINVAL, "%s '%s' is not an absolute directory path", what, s);
    }
    if (len >= PATH_MAX - 64) {
        return tm_err_set(err, TM_EINVAL, "%s '%s' is too long", what, s);
    }
    if (len == 1) {
        return tm_err_set(err, TM_EINVAL, "%s is '/': not a directory a restore may use", what);
    }
    const char *why = components_bad(dir + 1, len - 1, 1);
    if (why != NULL) {
        return tm_err_set(err, TM_EINVAL, "%s '%s' %s", what, s, why);
    }
    return TM_OK;
}

/* ---- opening beneath -------------------------------------------------- */

static pthread_once_t probe_once = PTHREAD_ONCE_INIT;
static int have_openat2;

static void probe(void)
{
    /* TM_RESTORE_NO_OPENAT2=1 forces the openat walk (tests cover both). */
    const char *off = getenv("TM_RESTORE_NO_OPENAT2");
    if (off != NULL && off[0] == '1') {
        return;
    }
#ifdef SYS_openat2
    struct open_how how = {.flags = O_RDONLY | O_DIRECTORY | O_CLOEXEC,
                           .resolve = RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS};
    long fd = syscall(SYS_openat2, AT_FDCWD, ".", &how, sizeof(how));
    if (fd >= 0) {
        close((int)fd);
        have_openat2 = 1;
    }
#endif
}

int tm_restore_root_uses_openat2(void)
{
    pthread_once(&probe_once, probe);
    return have_openat2;
}

/* Open rest (validated: relative, no `..`) beneath dirfd, following no
 * symbolic link on the way nor at the end. -1 + errno on failure. */
static int open_beneath(int dirfd, const char *rest, int flags, mode_t mode)
{
    flags |= O_CLOEXEC | O_NOFOLLOW;
    if (rest[0] == '\0') {
        return fcntl(dirfd, F_DUPFD_CLOEXEC, 0);
    }
#ifdef SYS_openat2
    if (tm_restore_root_uses_openat2()) {
        struct open_how how = {
            .flags = (uint64_t)flags,
            .mode = (flags & O_CREAT) ? mode : 0,
            .resolve = RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS | RESOLVE_NO_MAGICLINKS,
        };
        long fd;
        do {
            fd = syscall(SYS_openat2, dirfd, rest, &how, sizeof(how));
        } while (fd < 0 && errno == EAGAIN);
        return (int)fd;
    }
#endif
    /* One step at a time: every directory on the way opened O_NOFOLLOW. */
    int cur = dirfd;
    const char *p = rest;
    char name[TM_RESTORE_NAME_MAX + 1];
    for (;;) {
        const char *slash = strchr(p, '/');
        if (slash == NULL) {
            int fd = openat(cur, p, flags, mode);
            int e = errno;
            if (cur != dirfd) {
                close(cur);
            }
            errno = e;
            return fd;
        }
        size_t n = (size_t)(slash - p);
        if (n == 0 || n > TM_RESTORE_NAME_MAX) {
            if (cur != dirfd) {
                close(cur);
            }
            errno = EINVAL;
            return -1;
        }
        memcpy(name, p, n);
        name[n] = '\0';
        int next = openat(cur, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
        int e = errno;
        if (cur != dirfd) {
            close(cur);
        }
        if (next < 0) {
            errno = e;
            return -1;
        }
        cur = next;
        p = slash + 1;
    }
}

/* The directory a path resolves beneath: a declared link's when the path
 * lies below it, else the root. */
static int resolve(const tm_restore_root *r, const char *rel, const char **rest)
{
    for (size_t i = 0; i < r->nlinks; i++) {
        size_t l = strlen(r->links[i].rel);
        if (strncmp(rel, r->links[i].rel, l) == 0 && rel[l] == '/') {
            *rest = rel + l + 1;
            return r->links[i].fd;
        }
    }
    *rest = rel;
    return r->fd;
}

static int fail(tm_err *err, const tm_restore_root *r, const char *op, const char *rel)
{
    int e = errno;
    if (e == ELOOP || e == EXDEV) {
        return tm_err_set(err, TM_EPERM,
                          "%s %s/%s: the path goes through a symbolic link or leaves the "
                          "directory (%s); a restore writes only beneath its directory",
                          op, r->path, rel, strerror(e));
    }
    return tm_err_set(err, tm_err_from_errno(e), "%s %s/%s: %s", op, r->path, rel, strerror(e));
}

/* The parent directory of rel, opened beneath, and rel's last name. */
static int open_parent(const tm_restore_root *r, const char *rel, int *pfd, const char **name,
                       tm_err *err)
{
    int rc = tm_restore_path_check(rel, strlen(rel), err);
    if (rc != TM_OK) {
        return rc;
    }
    const char *slash = strrchr(rel, '/');
    *name = slash ? slash + 1 : rel;
    char parent[TM_RESTORE_PATH_MAX + 1];
    size_t pl = slash ? (size_t)(slash - rel) : 0;
    memcpy(parent, rel, pl);
    parent[pl] = '\0';
    const char *rest = parent;
    int base = pl ? resolve(r, parent, &rest) : r->fd;
    /* A link's own directory is the parent: "<link>/X" -> beneath it. */
    for (size_t i = 0; pl && i < r->nlinks; i++) {
        if (strcmp(parent, r->links[i].rel) == 0) {
            base = r->links[i].fd;
            rest = "";
        }
    }
    *pfd = open_beneath(base, rest, O_RDONLY | O_DIRECTORY, 0);
    if (*pfd < 0) {
        return fail(err, r, "open directory of", rel);
    }
    return TM_OK;
}

/* ---- the root --------------------------------------------------------- */

int tm_restore_root_new(const char *dir, const tm_restore_root_opts *o, tm_restore_root **out,
                        tm_err *err)
{
    *out = NULL;
    int rc = tm_restore_dir_check("restore directory", dir, err);
    if (rc != TM_OK) {
        return rc;
    }
    rc = tm_mkdir_p(dir, 0700, err);
    if (rc != TM_OK) {
        return rc;
    }
    int fd = open(dir, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
    if (fd < 0) {
        return tm_err_set(
            err, tm_err_from_errno(errno), "open restore directory %s: %s%s", dir, strerror(errno),
            errno == ELOOP || errno == ENOTDIR ? " (a symbolic link is refused)" : "");
    }
    tm_restore_root *r = calloc(1, sizeof(*r));
    if (r == NULL || (r->path = strdup(dir)) == NULL) {
        free(r);
        close(fd);
        return tm_err_set(err, TM_ENOMEM, "out of memory");
    }
    r->fd = fd;
    if (o != NULL) {
        r->o = *o;
    }
    *out = r;
    return TM_OK;
}

void tm_restore_root_free(tm_restore_root *r)
{
    if (r == NULL) {
        return;
    }
    for (size_t i = 0; i < r->nlinks; i++) {
        close(r->links[i].fd);
        free(r->links[i].rel);
        free(r->links[i].dest);
    }
    free(r->links);
    close(r->fd);
    free(r->path);
    free(r);
}

const char *tm_restore_root_path(const tm_restore_root *r)
{
    return r->path;
}

int tm_restore_root_attrs(tm_restore_root *r, int fd, const char *rel, uint32_t mode, int64_t mtime,
                          tm_err *err)
{
    struct timespec ts[2] = {{.tv_sec = mtime}, {.tv_sec = mtime}};
    if (fchmod(fd, (mode_t)(mode & 07777)) != 0 || (mtime >= 0 && futimens(fd, ts) != 0) ||
        (r->o.chown && fchown(fd, r->o.uid, r->o.gid) != 0)) {
        return tm_err_set(err, tm_err_from_errno(errno), "set attributes of %s/%s: %s", r->path,
                          rel, strerror(errno));
    }
    return TM_OK;
}

int tm_restore_root_own(tm_restore_root *r, uint32_t mode, tm_err *err)
{
    return tm_restore_root_attrs(r, r->fd, ".", mode, -1, err);
}

int tm_restore_root_mkdir(tm_restore_root *r, const char *rel, uint32_t mode, tm_err *err)
{
    int pfd;
    const char *name;
    int rc = open_parent(r, rel, &pfd, &name, err);
    if (rc != TM_OK) {
        return rc;
    }
    if (mkdirat(pfd, name, 0700) != 0 && errno != EEXIST) {
        rc = fail(err, r, "mkdir", rel);
        close(pfd);
        return rc;
    }
    int fd = openat(pfd, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
    if (fd < 0) {
        rc = fail(err, r, "open directory", rel);
    } else {
        rc = tm_restore_root_attrs(r, fd, rel, mode, -1, err);
        close(fd);
    }
    close(pfd);
    return rc;
}

static int open_rel(tm_restore_root *r, const char *rel, int flags, mode_t mode, int *fd,
                    const char *op, tm_err *err)
{
    int rc = tm_restore_path_check(rel, strlen(rel), err);
    if (rc != TM_OK) {
        return rc;
    }
    const char *rest;
    int base = resolve(r, rel, &rest);
    *fd = open_beneath(base, rest, flags, mode);
    return *fd < 0 ? fail(err, r, op, rel) : TM_OK;
}

int tm_restore_root_create(tm_restore_root *r, const char *rel, int *fd, tm_err *err)
{
    return open_rel(r, rel, O_WRONLY | O_CREAT | O_TRUNC, 0600, fd, "create", err);
}

int tm_restore_root_open_read(tm_restore_root *r, const char *rel, int *fd, tm_err *err)
{
    return open_rel(r, rel, O_RDONLY, 0, fd, "open", err);
}

int tm_restore_root_append(tm_restore_root *r, const char *rel, int *fd, tm_err *err)
{
    return open_rel(r, rel, O_WRONLY | O_APPEND | O_CREAT, 0600, fd, "open", err);
}

int tm_restore_root_set_attrs(tm_restore_root *r, const char *rel, uint32_t mode, int64_t mtime,
                              tm_err *err)
{
    int fd;
    int rc = open_rel(r, rel, O_RDONLY, 0, &fd, "open", err);
    if (rc == TM_OK) {
        rc = tm_restore_root_attrs(r, fd, rel, mode, mtime, err);
        close(fd);
    }
    return rc;
}

int tm_restore_root_write(tm_restore_root *r, const char *rel, const void *buf, size_t len,
                          uint32_t mode, tm_err *err)
{
    int pfd;
    const char *name;
    int rc = open_parent(r, rel, &pfd, &name, err);
    if (rc != TM_OK) {
        return rc;
    }
    char tmp[TM_RESTORE_NAME_MAX + 16];
    snprintf(tmp, sizeof(tmp), ".%.200s.tm-tmp", name);
    unlinkat(pfd, tmp, 0);
    int fd = openat(pfd, tmp, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600);
    if (fd < 0) {
        rc = fail(err, r, "create", rel);
        close(pfd);
        return rc;
    }
    const uint8_t *p = buf;
    while (rc == TM_OK && len > 0) {
        ssize_t n = write(fd, p, len);
        if (n < 0 && errno == EINTR) {
            continue;
        }
        if (n < 0) {
            rc = fail(err, r, "write", rel);
            break;
        }
        p += n;
        len -= (size_t)n;
    }
    if (rc == TM_OK) {
        rc = tm_restore_root_attrs(r, fd, rel, mode, -1, err);
    }
    if (close(fd) != 0 && rc == TM_OK) {
        rc = fail(err, r, "close", rel);
    }
    if (rc == TM_OK && renameat(pfd, tmp, pfd, name) != 0) {
        rc = fail(err, r, "rename into", rel);
    }
    if (rc != TM_OK) {
        unlinkat(pfd, tmp, 0);
    }
    close(pfd);
    return rc;
}

int tm_restore_root_remove(tm_restore_root *r, const char *rel, int is_dir, tm_err *err)
{
    int pfd;
    const char *name;
    int rc = open_parent(r, rel, &pfd, &name, err);
    if (rc != TM_OK) {
        return rc;
    }
    if (unlinkat(pfd, name, is_dir ? AT_REMOVEDIR : 0) != 0 && errno != ENOENT) {
        rc = fail(err, r, "remove", rel);
    }
    close(pfd);
    return rc;
}

int tm_restore_root_rename(tm_restore_root *r, const char *from, const char *to, tm_err *err)
{
    int ffd, tfd;
    const char *fname, *tname;
    int rc = open_parent(r, from, &ffd, &fname, err);
    if (rc != TM_OK) {
        return rc;
    }
    rc = open_parent(r, to, &tfd, &tname, err);
    if (rc != TM_OK) {
        close(ffd);
        return rc;
    }
    if (renameat(ffd, fname, tfd, tname) != 0) {
        rc = fail(err, r, "rename into", to);
    }
    /* Durable once it returns: the directories that changed are synced. */
    if (rc == TM_OK && fsync(tfd) != 0) {
        rc = fail(err, r, "sync the directory of", to);
    }
    if (rc == TM_OK && fsync(ffd) != 0) {
        rc = fail(err, r, "sync the directory of", from);
    }
    close(ffd);
    close(tfd);
    return rc;
}

static int fd_dir_empty(int fd)
{
    int d = fcntl(fd, F_DUPFD_CLOEXEC, 0);
    DIR *dp = d >= 0 ? fdopendir(d) : NULL;
    if (dp == NULL) {
        if (d >= 0) {
            close(d);
        }
        return -1;
    }
    int empty = 1;
    struct dirent *de;
    while ((de = readdir(dp)) != NULL) {
        if (strcmp(de->d_name, ".") != 0 && strcmp(de->d_name, "..") != 0) {
            empty = 0;
            break;
        }
    }
    closedir(dp);
    return empty;
}

int tm_restore_root_link(tm_restore_root *r, const char *rel, const char *dest, int allow_nonempty,
                         tm_err *err)
{
    int rc = tm_restore_path_check(rel, strlen(rel), err);
    if (rc != TM_OK) {
        return rc;
    }
    if (r->o.link_ok == NULL || !r->o.link_ok(rel)) {
        return bad_entry(rel, strlen(rel),
                         "is a symbolic link where this engine has none (refused)", err);
    }
    char what[TM_RESTORE_PATH_MAX + 32];
    snprintf(what, sizeof(what), "link target of %s", rel);
    if ((rc = tm_restore_dir_check(what, dest, err)) != TM_OK ||
        (rc = tm_restore_dir_busy(dest, err)) != TM_OK) {
        return tm_err_prefix(err, "manifest entry '%s'", rel);
    }
    rc = tm_mkdir_p_owned(dest, 0700, r->o.chown ? r->o.uid : (uid_t)-1, r->o.gid, err);
    if (rc != TM_OK) {
        return rc;
    }
    int dfd = open(dest, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
    if (dfd < 0) {
        return tm_err_set(
            err, tm_err_from_errno(errno), "%s: open %s: %s%s", what, dest, strerror(errno),
            errno == ELOOP ? " (a symbolic link is refused: name the real directory)" : "");
    }
    if (!allow_nonempty && fd_dir_empty(dfd) != 1) {
        close(dfd);
        return tm_err_set(err, TM_EEXIST,
                          "%s: directory %s is not empty; it may belong to a running cluster: "
                          "map it to an empty directory",
                          what, dest);
    }
    if ((rc = tm_restore_root_attrs(r, dfd, dest, 0700, -1, err)) != TM_OK) {
        close(dfd);
        return rc;
    }
    int pfd;
    const char *name;
    if ((rc = open_parent(r, rel, &pfd, &name, err)) != TM_OK) {
        close(dfd);
        return rc;
    }
    /* What is there now: the same link stays; another link or an empty
     * directory (from a --delta over an older restore) is replaced. */
    char cur[PATH_MAX];
    ssize_t cl = readlinkat(pfd, name, cur, sizeof(cur) - 1);
    int same = cl >= 0 && (size_t)cl == strlen(dest) && memcmp(cur, dest, (size_t)cl) == 0;
    if (cl >= 0 && !same) {
        unlinkat(pfd, name, 0);
    } else if (cl < 0 && errno == EINVAL && unlinkat(pfd, name, AT_REMOVEDIR) != 0) {
        rc = tm_err_set(err, TM_EEXIST, "%s/%s exists and is not a link nor an empty directory",
                        r->path, rel);
    }
    if (rc == TM_OK && !same && symlinkat(dest, pfd, name) != 0) {
        rc = tm_err_set(err, tm_err_from_errno(errno), "symlink %s/%s -> %s: %s", r->path, rel,
                        dest, strerror(errno));
    }
    if (rc == TM_OK && r->o.chown) {
        fchownat(pfd, name, r->o.uid, r->o.gid, AT_SYMLINK_NOFOLLOW);
    }
    close(pfd);
    rr_link *nv = rc == TM_OK ? realloc(r->links, (r->nlinks + 1) * sizeof(*nv)) : NULL;
    if (rc == TM_OK && nv == NULL) {
        rc = tm_err_set(err, TM_ENOMEM, "out of memory");
    }
    if (rc != TM_OK) {
        close(dfd);
        return rc;
    }
    r->links = nv;
    r->links[r->nlinks] = (rr_link){.rel = strdup(rel), .dest = strdup(dest), .fd = dfd};
    if (r->links[r->nlinks].rel == NULL || r->links[r->nlinks].dest == NULL) {
        free(r->links[r->nlinks].rel);
        free(r->links[r->nlinks].dest);
        close(dfd);
        return tm_err_set(err, TM_ENOMEM, "out of memory");
    }
    r->nlinks++;
    return TM_OK;
}

/* ---- in use? ---------------------------------------------------------- */

/* dir made canonical: realpath of its longest existing part + the rest. */
static int canon(const char *dir, char out[PATH_MAX])
{
    char head[PATH_MAX];
    if (snprintf(head, sizeof(head), "%s", dir) >= (int)sizeof(head)) {
        return -1;
    }
    size_t hl = strlen(head);
    while (hl > 1 && head[hl - 1] == '/') {
        head[--hl] = '\0';
    }
    for (;;) {
        char rp[PATH_MAX];
        if (realpath(head, rp) != NULL) {
            const char *tail = dir + strlen(head);
            while (*tail == '/') {
                tail++;
            }
            size_t rl = strlen(rp);
            int n = snprintf(out, PATH_MAX, "%s%s%s", rp,
                             *tail && !(rl == 1 && rp[0] == '/') ? "/" : "", tail);
            /* A trailing slash of dir. */
            while (n > 1 && out[n - 1] == '/') {
                out[--n] = '\0';
            }
            return n < PATH_MAX ? 0 : -1;
        }
        char *slash = strrchr(head, '/');
        if (slash == NULL || slash == head) {
            snprintf(head, sizeof(head), "/");
            continue;
        }
        *slash = '\0';
    }
}

/* 1 if a is b or beneath it. */
static int is_beneath(const char *a, const char *b)
{
    size_t lb = strlen(b);
    if (lb == 1 && b[0] == '/') {
        return 1;
    }
    return strncmp(a, b, lb) == 0 && (a[lb] == '\0' || a[lb] == '/');
}

int tm_restore_busy_why(const char *dir, const char *used, const char *comm, long pid, char *why,
                        size_t cap)
{
    char u[PATH_MAX];
    if (canon(used, u) != 0) {
        return 0;
    }
    if (is_beneath(dir, u) || is_beneath(u, dir)) {
        snprintf(why, cap,
                 "%s is in use by a running %s (pid %ld, directory %s); a restore never "
                 "writes into a running server's files: stop it, or restore elsewhere",
                 dir, comm, pid, u);
        return 1;
    }
    return 0;
}

int tm_restore_proc_each(const char *const *comms,
                         int (*fn)(void *arg, long pid, const char *comm, const char *cwd),
                         void *arg)
{
    DIR *pd = opendir("/proc");
    if (pd == NULL) {
        return 0;
    }
    int rc = 0;
    char last[PATH_MAX] = "";
    struct dirent *de;
    while (rc == 0 && (de = readdir(pd)) != NULL) {
        if (!isdigit((unsigned char)de->d_name[0])) {
            continue;
        }
        char p[300], comm[64] = "";
        snprintf(p, sizeof(p), "/proc/%s/comm", de->d_name);
        FILE *f = fopen(p, "re");
        if (f == NULL) {
            continue;
        }
        if (fgets(comm, sizeof(comm), f) == NULL) {
            comm[0] = '\0';
        }
        fclose(f);
        comm[strcspn(comm, "\n")] = '\0';
        int match = 0;
        for (size_t i = 0; comms[i] != NULL && !match; i++) {
            match = strcmp(comm, comms[i]) == 0;
        }
        if (!match) {
            continue;
        }
        char cwd[PATH_MAX];
        snprintf(p, sizeof(p), "/proc/%s/cwd", de->d_name);
        ssize_t n = readlink(p, cwd, sizeof(cwd) - 1);
        if (n <= 0) {
            continue;
        }
        cwd[n] = '\0';
        if (strcmp(cwd, last) == 0) {
            continue; /* a server's children share its directory */
        }
        snprintf(last, sizeof(last), "%s", cwd);
        rc = fn(arg, strtol(de->d_name, NULL, 10), comm, cwd);
    }
    closedir(pd);
    return rc;
}

typedef struct cwd_busy {
    const char *dir;
    const char *const *subdirs;
    char *why;
    size_t cap;
} cwd_busy;

static int cwd_uses(void *arg, long pid, const char *comm, const char *cwd)
{
    cwd_busy *a = arg;
    if (tm_restore_busy_why(a->dir, cwd, comm, pid, a->why, a->cap)) {
        return 1;
    }
    for (size_t i = 0; a->subdirs != NULL && a->subdirs[i] != NULL; i++) {
        const char *sub = a->subdirs[i];
        size_t sl = strlen(sub);
        char p[PATH_MAX + 300];
        if (sl == 0 || sub[sl - 1] != '/') {
            snprintf(p, sizeof(p), "%s/%s", cwd, sub);
            if (tm_restore_busy_why(a->dir, p, comm, pid, a->why, a->cap)) {
                return 1;
            }
            continue;
        }
        /* "<sub>/": each entry of that directory (links elsewhere). */
        snprintf(p, sizeof(p), "%s/%.*s", cwd, (int)(sl - 1), sub);
        DIR *d = opendir(p);
        struct dirent *e;
        int busy = 0;
        while (d != NULL && !busy && (e = readdir(d)) != NULL) {
            if (e->d_name[0] == '.') {
                continue;
            }
            char ep[2 * PATH_MAX + 300];
            snprintf(ep, sizeof(ep), "%s/%s", p, e->d_name);
            busy = tm_restore_busy_why(a->dir, ep, comm, pid, a->why, a->cap);
        }
        if (d != NULL) {
            closedir(d);
        }
        if (busy) {
            return 1;
        }
    }
    return 0;
}

int tm_restore_cwd_busy(const char *dir, const char *const *comms, const char *const *subdirs,
                        char *why, size_t cap)
{
    cwd_busy a = {.dir = dir, .subdirs = subdirs, .why = why, .cap = cap};
    return tm_restore_proc_each(comms, cwd_uses, &a) != 0;
}

int tm_restore_dir_busy(const char *dir, tm_err *err)
{
    char d[PATH_MAX];
    if (canon(dir, d) != 0) {
        return tm_err_set(err, TM_EINVAL, "%s: path too long", dir);
    }
    /* Every engine is asked, whatever the restore's engine: no restore may
     * land in any running server's files. */
    const tm_engine *e;
    for (size_t i = 0; (e = tm_engine_at(i)) != NULL; i++) {
        char why[TM_ERR_MSG_MAX] = "";
        if (e->in_use != NULL && e->in_use(d, why, sizeof(why)) == 1) {
            return tm_err_set(err, TM_EBUSY, "%s", why[0] ? why : "in use by a running server");
        }
    }
    return TM_OK;
}

int tm_restore_under_roots(const char *what, const char *dir, char *const *roots, size_t n,
                           tm_err *err)
{
    int rc = tm_restore_dir_check(what, dir, err);
    if (rc != TM_OK) {
        return rc;
    }
    char d[PATH_MAX], rp[PATH_MAX];
    if (canon(dir, d) != 0) {
        return tm_err_set(err, TM_EINVAL, "%s %s: path too long", what, dir);
    }
    char list[1024] = "";
    size_t ll = 0;
    for (size_t i = 0; i < n; i++) {
        if (canon(roots[i], rp) == 0 && is_beneath(d, rp)) {
            return TM_OK;
        }
        if (ll < sizeof(list)) {
            ll += (size_t)snprintf(list + ll, sizeof(list) - ll, "%s%s", i ? ", " : "", roots[i]);
        }
    }
    return tm_err_set(err, TM_EPERM,
                      "%s %s is outside this agent's restore roots (%s); a restore or drill task "
                      "writes only under restore_roots: in agent.yaml",
                      what, d, n ? list : "none configured");
}

/* ---- the environment of a restored server ----------------------------- */

int tm_restore_env_new(const char *user, const char *const *extra, char ***out, tm_err *err)
{
    *out = NULL;
    size_t cap = 16;
    for (char **e = environ; e && *e; e++) {
        cap++;
    }
    for (size_t i = 0; extra && extra[i]; i++) {
        cap++;
    }
    char **env = calloc(cap + 1, sizeof(*env));
    if (env == NULL) {
        return tm_err_set(err, TM_ENOMEM, "out of memory");
    }
    size_t n = 0;
    int ok = 1, has_path = 0;
    for (char **e = environ; ok && e && *e; e++) {
        const char *v = *e;
        int keep = strncmp(v, "PATH=", 5) == 0 || strncmp(v, "LANG=", 5) == 0 ||
                   strncmp(v, "LANGUAGE=", 9) == 0 || strncmp(v, "LC_", 3) == 0 ||
                   strncmp(v, "TZ=", 3) == 0;
        if (keep) {
            has_path |= strncmp(v, "PATH=", 5) == 0;
            ok = (env[n++] = strdup(v)) != NULL;
        }
    }
    if (ok && !has_path) {
        ok = (env[n++] = strdup("PATH=/usr/local/bin:/usr/bin:/bin")) != NULL;
    }
    struct passwd pw, *pp = NULL;
    char buf[4096];
    if (ok && user != NULL && getpwnam_r(user, &pw, buf, sizeof(buf), &pp) == 0 && pp != NULL) {
        const char *kv[3][2] = {
            {"HOME", pp->pw_dir}, {"USER", pp->pw_name}, {"LOGNAME", pp->pw_name}};
        for (int i = 0; ok && i < 3; i++) {
            ok = asprintf(&env[n], "%s=%s", kv[i][0], kv[i][1]) >= 0;
            env[n] = ok ? env[n] : NULL;
            n += ok;
        }
    }
    for (size_t i = 0; ok && extra && extra[i]; i++) {
        ok = (env[n++] = strdup(extra[i])) != NULL;
    }
    if (!ok) {
        tm_restore_env_free(env);
        return tm_err_set(err, TM_ENOMEM, "out of memory");
    }
    *out = env;
    return TM_OK;
}

void tm_restore_env_free(char **env)
{
    for (size_t i = 0; env && env[i]; i++) {
        free(env[i]);
    }
    free(env);
}
