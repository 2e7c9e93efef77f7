/* tm_fault: an LD_PRELOAD shim that makes one file-system call fail, so a
 * test can walk every write, fsync, close, rename, mkdir and unlink of a
 * whole operation and check that each failure ends cleanly.
 *
 *   TM_FAULT_OP      write|pwrite|fsync|fdatasync|close|rename|renameat|
 *                    mkdir|unlink (pwrite covers pwrite64, rename renameat2's
 *                    plain form is renameat, unlink covers unlinkat)
 *   TM_FAULT_PATH    only calls on paths under this prefix count (for fd
 *                    calls, the path the fd was opened as, from /proc)
 *   TM_FAULT_N       the Nth counted call fails (1-based); 0 or unset: only
 *                    count
 *   TM_FAULT_ERRNO   ENOSPC (default), EIO or EDQUOT
 *   TM_FAULT_SHORT   1: the Nth write/pwrite is short (half of it is
 *                    written and that count returned) instead of failing
 *   TM_FAULT_ARM     a file: calls count only while it exists, so a
 *                    long-running daemon (the coordinator) is faulted in
 *                    one operation and not in its start or its idle work
 *   TM_FAULT_REPORT  where each process that made a counted call writes
 *                    "op=O calls=K injected=I path=P" (file
 *                    TM_FAULT_REPORT.<pid>, rewritten on every counted
 *                    call, so a killed process leaves its count)
 *
 * close counts only descriptors open for writing. A failing close() closes
 * the descriptor first (as Linux does for EIO);
 * a failing write/fsync/rename/mkdir/unlink has no effect. Calls the C
 * library makes internally (stdio) are not seen: what the product calls
 * directly is. Not part of any product build. */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/types.h>
#include <unistd.h>

#include "tm_fault.h"

enum {
    OP_NONE,
    OP_WRITE,
    OP_PWRITE,
    OP_FSYNC,
    OP_FDATASYNC,
    OP_CLOSE,
    OP_RENAME,
    OP_RENAMEAT,
    OP_MKDIR,
    OP_UNLINK
};

static const char *const op_names[] = {"",      "write",  "pwrite",   "fsync", "fdatasync",
                                       "close", "rename", "renameat", "mkdir", "unlink"};

static int g_op;
static long g_n;
static int g_errno = ENOSPC;
static int g_short;
static char g_prefix[PATH_MAX];
static size_t g_prefix_len;
static char g_report_base[PATH_MAX];
static char g_arm[PATH_MAX];
static int g_report_fd = -1;
static long g_calls;
static int g_injected;
static char g_injected_path[PATH_MAX];
static pthread_mutex_t g_mu = PTHREAD_MUTEX_INITIALIZER;

static ssize_t (*real_write)(int, const void *, size_t);
static ssize_t (*real_pwrite)(int, const void *, size_t, off_t);
static ssize_t (*real_pwrite64)(int, const void *, size_t, off_t);
static int (*real_fsync)(int);
static int (*real_fdatasync)(int);
static int (*real_close)(int);
static int (*real_rename)(const char *, const char *);
static int (*real_renameat)(int, const char *, int, const char *);
static int (*real_mkdir)(const char *, mode_t);
static int (*real_unlink)(const char *);
static int (*real_unlinkat)(int, const char *, int);

static void report_open(void)
{
    if (g_report_base[0] == '\0') {
        return;
    }
    char path[PATH_MAX + 32];
    snprintf(path, sizeof(path), "%s.%ld", g_report_base, (long)getpid());
    /* raw syscalls: the shim's own I/O is never counted */
    g_report_fd =
        (int)syscall(SYS_openat, AT_FDCWD, path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0666);
}

/* Rewritten whole on every counted call, padded so a shorter line never
 * leaves the tail of a longer one. */
static void report_write(void)
{
    if (g_report_fd < 0) {
        report_open(); /* on the first counted call: quiet processes leave none */
    }
    if (g_report_fd < 0) {
        return;
    }
    char line[PATH_MAX + 128];
    int n = snprintf(line, sizeof(line), "op=%s calls=%ld injected=%d path=%s", op_names[g_op],
                     g_calls, g_injected, g_injected_path);
    if (n < 0 || (size_t)n >= sizeof(line) - 40) {
        n = (int)sizeof(line) - 40;
    }
    memset(line + n, ' ', 32);
    line[n + 32] = '\n';
    syscall(SYS_pwrite64, g_report_fd, line, (size_t)n + 33, (off_t)0);
}

static void after_fork_child(void)
{
    /* A forked child is its own process with its own count and report. */
    g_calls = 0;
    g_injected = 0;
    g_injected_path[0] = '\0';
    g_report_fd = -1;
}

static void resolve(void)
{
    real_write = dlsym(RTLD_NEXT, "write");
    real_pwrite = dlsym(RTLD_NEXT, "pwrite");
    real_pwrite64 = dlsym(RTLD_NEXT, "pwrite64");
    real_fsync = dlsym(RTLD_NEXT, "fsync");
    real_fdatasync = dlsym(RTLD_NEXT, "fdatasync");
    real_close = dlsym(RTLD_NEXT, "close");
    real_rename = dlsym(RTLD_NEXT, "rename");
    real_renameat = dlsym(RTLD_NEXT, "renameat");
    real_mkdir = dlsym(RTLD_NEXT, "mkdir");
    real_unlink = dlsym(RTLD_NEXT, "unlink");
    real_unlinkat = dlsym(RTLD_NEXT, "unlinkat");
}

/* Another library's constructor may write before ours runs. */
#define REAL(f) (real_##f != NULL ? real_##f : (resolve(), real_##f))

__attribute__((constructor)) static void tm_fault_init(void)
{
    resolve();
    const char *op = getenv("TM_FAULT_OP");
    for (int i = 1; op != NULL && i < (int)(sizeof(op_names) / sizeof(op_names[0])); i++) {
        if (strcmp(op, op_names[i]) == 0) {
            g_op = i;
        }
    }
    const char *n = getenv("TM_FAULT_N");
    g_n = n != NULL ? strtol(n, NULL, 10) : 0;
    const char *e = getenv("TM_FAULT_ERRNO");
    if (e != NULL && strcmp(e, "EIO") == 0) {
        g_errno = EIO;
    } else if (e != NULL && strcmp(e, "EDQUOT") == 0) {
        g_errno = EDQUOT;
    }
    const char *s = getenv("TM_FAULT_SHORT");
    g_short = s != NULL && strcmp(s, "1") == 0;
    const char *p = getenv("TM_FAULT_PATH");
    if (p != NULL) {
        snprintf(g_prefix, sizeof(g_prefix), "%s", p);
        g_prefix_len = strlen(g_prefix);
    }
    const char *arm = getenv("TM_FAULT_ARM");
    if (arm != NULL) {
        snprintf(g_arm, sizeof(g_arm), "%s", arm);
    }
    const char *r = getenv("TM_FAULT_REPORT");
    if (r != NULL && g_op != OP_NONE) {
        snprintf(g_report_base, sizeof(g_report_base), "%s", r);
    }
    pthread_atfork(NULL, NULL, after_fork_child);
}

static int under_prefix(const char *abs)
{
    return g_prefix_len == 0 || strncmp(abs, g_prefix, g_prefix_len) == 0;
}

static void abs_of_fd(int fd, char *out, size_t cap)
{
    char link[64];
    snprintf(link, sizeof(link), "/proc/self/fd/%d", fd);
    ssize_t n = readlink(link, out, cap - 1);
    out[n > 0 ? n : 0] = '\0';
}

static void abs_of_path(int dirfd, const char *path, char *out, size_t cap)
{
    if (path[0] == '/') {
        snprintf(out, cap, "%s", path);
        return;
    }
    char dir[PATH_MAX];
    if (dirfd == AT_FDCWD) {
        if (getcwd(dir, sizeof(dir)) == NULL) {
            dir[0] = '\0';
        }
    } else {
        abs_of_fd(dirfd, dir, sizeof(dir));
    }
    int n = snprintf(out, cap, "%s/%s", dir, path);
    if (n < 0 || (size_t)n >= cap) {
        out[0] = '\0'; /* too long to name: matches no prefix */
    }
}

/* Counts the call when it is the chosen op on a path under the prefix;
 * returns 1 when this call is the one to fail. */
static int hit(int op, const char *abs)
{
    if (op != g_op || !under_prefix(abs)) {
        return 0;
    }
    if (g_arm[0] != '\0' && syscall(SYS_faccessat, AT_FDCWD, g_arm, F_OK) != 0) {
        return 0; /* not armed: not counted */
    }
    pthread_mutex_lock(&g_mu);
    g_calls++;
    int fire = g_n > 0 && g_calls == g_n;
    if (fire) {
        g_injected = 1;
        snprintf(g_injected_path, sizeof(g_injected_path), "%s", abs);
    }
    report_write();
    pthread_mutex_unlock(&g_mu);
    return fire;
}

static int fd_hit(int op, int fd)
{
    if (op != g_op) {
        return 0;
    }
    char abs[PATH_MAX];
    abs_of_fd(fd, abs, sizeof(abs));
    return hit(op, abs);
}

ssize_t write(int fd, const void *buf, size_t len)
{
    if (fd_hit(OP_WRITE, fd)) {
        if (g_short && len > 1) {
            return REAL(write)(fd, buf, len / 2);
        }
        errno = g_errno;
        return -1;
    }
    return REAL(write)(fd, buf, len);
}

static ssize_t do_pwrite(ssize_t (*real)(int, const void *, size_t, off_t), int fd, const void *buf,
                         size_t len, off_t off)
{
    if (fd_hit(OP_PWRITE, fd)) {
        if (g_short && len > 1) {
            return real(fd, buf, len / 2, off);
        }
        errno = g_errno;
        return -1;
    }
    return real(fd, buf, len, off);
}

ssize_t pwrite(int fd, const void *buf, size_t len, off_t off)
{
    return do_pwrite(REAL(pwrite), fd, buf, len, off);
}

ssize_t pwrite64(int fd, const void *buf, size_t len, off_t off)
{
    return do_pwrite(REAL(pwrite64), fd, buf, len, off);
}

int fsync(int fd)
{
    if (fd_hit(OP_FSYNC, fd)) {
        errno = g_errno;
        return -1;
    }
    return REAL(fsync)(fd);
}

int fdatasync(int fd)
{
    if (fd_hit(OP_FDATASYNC, fd)) {
        errno = g_errno;
        return -1;
    }
    return REAL(fdatasync)(fd);
}

int close(int fd)
{
    /* Only descriptors open for writing: a failed close of a read-only one
     * (a file read back, a directory opened to fsync it) loses nothing. */
    int fl = g_op == OP_CLOSE ? fcntl(fd, F_GETFL) : -1;
    if (fl != -1 && (fl & O_ACCMODE) != O_RDONLY && fd_hit(OP_CLOSE, fd)) {
        REAL(close)(fd);
        errno = g_errno;
        return -1;
    }
    return REAL(close)(fd);
}

int rename(const char *from, const char *to)
{
    if (g_op == OP_RENAME) {
        char a[PATH_MAX], b[PATH_MAX];
        abs_of_path(AT_FDCWD, from, a, sizeof(a));
        abs_of_path(AT_FDCWD, to, b, sizeof(b));
        if (hit(OP_RENAME, under_prefix(a) ? a : b)) {
            errno = g_errno;
            return -1;
        }
    }
    return REAL(rename)(from, to);
}

int renameat(int fromfd, const char *from, int tofd, const char *to)
{
    if (g_op == OP_RENAMEAT) {
        char a[PATH_MAX], b[PATH_MAX];
        abs_of_path(fromfd, from, a, sizeof(a));
        abs_of_path(tofd, to, b, sizeof(b));
        if (hit(OP_RENAMEAT, under_prefix(a) ? a : b)) {
            errno = g_errno;
            return -1;
        }
    }
    return REAL(renameat)(fromfd, from, tofd, to);
}

int mkdir(const char *path, mode_t mode)
{
    if (g_op == OP_MKDIR) {
        char a[PATH_MAX];
        abs_of_path(AT_FDCWD, path, a, sizeof(a));
        if (hit(OP_MKDIR, a)) {
            errno = g_errno;
            return -1;
        }
    }
    return REAL(mkdir)(path, mode);
}

int unlink(const char *path)
{
    if (g_op == OP_UNLINK) {
        char a[PATH_MAX];
        abs_of_path(AT_FDCWD, path, a, sizeof(a));
        if (hit(OP_UNLINK, a)) {
            errno = g_errno;
            return -1;
        }
    }
    return REAL(unlink)(path);
}

int unlinkat(int dirfd, const char *path, int flags)
{
    if (g_op == OP_UNLINK) {
        char a[PATH_MAX];
        abs_of_path(dirfd, path, a, sizeof(a));
        if (hit(OP_UNLINK, a)) {
            errno = g_errno;
            return -1;
        }
    }
    return REAL(unlinkat)(dirfd, path, flags);
}

/* In-process control (tests/fault/tm_fault.h), for unit tests linked with the
 * static tm_fault_inproc: the same calls fail as under LD_PRELOAD, armed per
 * test case instead of from the environment. */
int tm_fault_arm(const char *op, long n, int err, int short_write, const char *prefix)
{
    int which = OP_NONE;
    for (int i = 1; i < (int)(sizeof(op_names) / sizeof(op_names[0])); i++) {
        if (strcmp(op, op_names[i]) == 0) {
            which = i;
        }
    }
    if (which == OP_NONE) {
        return -1;
    }
    pthread_mutex_lock(&g_mu);
    g_op = which;
    g_n = n;
    g_errno = err;
    g_short = short_write;
    snprintf(g_prefix, sizeof(g_prefix), "%s", prefix != NULL ? prefix : "");
    g_prefix_len = strlen(g_prefix);
    g_calls = 0;
    g_injected = 0;
    g_injected_path[0] = '\0';
    pthread_mutex_unlock(&g_mu);
    return 0;
}

void tm_fault_disarm(void)
{
    pthread_mutex_lock(&g_mu);
    g_op = OP_NONE;
    g_n = 0;
    pthread_mutex_unlock(&g_mu);
}

long tm_fault_calls(void)
{
    return g_calls;
}

int tm_fault_injected(void)
{
    return g_injected;
}
