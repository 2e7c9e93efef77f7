/*
 * secrets.c - see secrets.h.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE /* renameat2 */
#endif
#include "common/secrets.h"
#include "common/log.h"
#include "common/util.h"

#include <errno.h>
#include <fcntl.h>
#include <libgen.h>
#include <stdio.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <unistd.h>

/* The directory of path (for the temporary file and the directory fsync). */
static void dir_of(const char *path, char *out, size_t cap)
{
    char tmp[4096];
    snprintf(tmp, sizeof(tmp), "%s", path);
    snprintf(out, cap, "%s", dirname(tmp));
}

static int write_all(int fd, const void *buf, size_t len)
{
    const char *p = buf;
    while (len > 0) {
        ssize_t w = write(fd, p, len);
        if (w < 0 && errno == EINTR) {
            continue;
        }
        if (w <= 0) {
            return -1;
        }
        p += w;
        len -= (size_t)w;
    }
    return 0;
}

/* Move tmp to path without replacing: renameat2(RENAME_NOREPLACE) where the
 * filesystem has it, else link+unlink, which is just as atomic about the
 * target name. */
static int move_noreplace(const char *tmp, const char *path)
{
#ifdef RENAME_NOREPLACE
    if (renameat2(AT_FDCWD, tmp, AT_FDCWD, path, RENAME_NOREPLACE) == 0) {
        return 0;
    }
    if (errno != EINVAL && errno != ENOSYS && errno != ENOTSUP) {
        return -1;
    }
#endif
    if (link(tmp, path) != 0) {
        return -1;
    }
    unlink(tmp);
    return 0;
}

int tm_secret_file_write(const char *path, const void *buf, size_t len, int replace, tm_err *err)
{
    char dir[4096], tmp[4200];
    unsigned char rnd[8];
    char hex[17];
    dir_of(path, dir, sizeof(dir));
    if (tm_random_bytes(rnd, sizeof(rnd)) != TM_OK) {
        return tm_err_set(err, TM_EINTERNAL, "create %s: no randomness", path);
    }
    tm_hex(rnd, sizeof(rnd), hex);
    /* A random name (not path.tmp.<pid>) with O_EXCL|O_NOFOLLOW: another
     * user of a shared directory cannot plant a file or symlink there first. */
    snprintf(tmp, sizeof(tmp), "%s/.tm-secret.%s.tmp", dir, hex);
    int fd = open(tmp, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600);
    if (fd < 0) {
        return tm_err_set(err, tm_err_from_errno(errno), "create %s: %s", tmp, strerror(errno));
    }
    /* The umask can only remove bits; fchmod makes the mode exact anyway. */
    if (fchmod(fd, 0600) != 0 || write_all(fd, buf, len) != 0 || fsync(fd) != 0) {
        int e = errno;
        close(fd);
        unlink(tmp);
        return tm_err_set(err, tm_err_from_errno(e), "write %s: %s", tmp, strerror(e));
    }
    if (close(fd) != 0) {
        int e = errno;
        unlink(tmp);
        return tm_err_set(err, tm_err_from_errno(e), "close %s: %s", tmp, strerror(e));
    }
    int moved = replace ? rename(tmp, path) : move_noreplace(tmp, path);
    if (moved != 0) {
        int e = errno;
        unlink(tmp);
        if (e == EEXIST) {
            return tm_err_set(err, TM_EEXIST, "%s already exists; refusing to replace it", path);
        }
        return tm_err_set(err, tm_err_from_errno(e), "rename to %s: %s", path, strerror(e));
    }
    /* The file is in place; a failed directory fsync means it may not
     * survive a crash, which the caller must hear. */
    return tm_fsync_dir(dir, err);
}

int tm_secret_file_check(const char *path, const char *what, tm_secret_policy policy, tm_err *err)
{
    struct stat st;
    if (stat(path, &st) != 0) {
        return tm_err_set(err, tm_err_from_errno(errno), "%s %s: %s", what, path, strerror(errno));
    }
    if (!S_ISREG(st.st_mode)) {
        return tm_err_set(err, TM_ECONFIG, "%s %s is not a regular file", what, path);
    }
    if ((st.st_mode & 077) == 0) {
        return TM_OK;
    }
    if (policy == TM_SECRET_REFUSE) {
        return tm_err_set(err, TM_ECONFIG,
                          "%s %s is accessible by group or others (mode %04o); refusing to use "
                          "it: run chmod 600 %s (and consider it disclosed)",
                          what, path, (unsigned)(st.st_mode & 07777), path);
    }
    tm_warn("secrets",
            "file=%s what=\"%s\" mode=%04o msg=\"accessible by group or others; chmod "
            "600 it unless that group is meant to read it\"",
            path, what, (unsigned)(st.st_mode & 07777));
    return TM_OK;
}

void tm_secrets_harden_process(void)
{
    struct rlimit rl = {0, 0};
    if (setrlimit(RLIMIT_CORE, &rl) != 0) {
        tm_warn("secrets", "msg=\"cannot disable core dumps: %s\"", strerror(errno));
    }
    if (prctl(PR_SET_DUMPABLE, 0, 0, 0, 0) != 0) {
        tm_warn("secrets", "msg=\"cannot clear the dumpable flag: %s\"", strerror(errno));
    }
}
