/*
 * in_use.c - is a SQLite database live? An embedded database has no server
 * to find by name: what makes it live is a process that has it open. So the
 * open files of every process are looked at (/proc/<pid>/fd): the database
 * file itself, or its -wal, -shm or -journal, compared by device and inode
 * (a renamed or moved path still counts).
 *
 * Two questions: the engine's in_use hook (restore_root asks every engine
 * before any restore writes into a directory: is a SQLite database open
 * there?) and, for a SQLite restore, whether the one output file is live.
 * The agent's own process counts too: its WAL shipper holds the target's
 * database open, and a restore over it is a restore over a live database.
 */
#include "agent/engines/sqlite/sqlite.h"

#include <ctype.h>
#include <dirent.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "agent/restore_root.h"

typedef int (*open_fn)(void *arg, long pid, const char *path, const struct stat *st);

static void comm_of(long pid, char *out, size_t cap)
{
    char p[64];
    snprintf(p, sizeof(p), "/proc/%ld/comm", pid);
    snprintf(out, cap, "?");
    FILE *f = fopen(p, "re");
    if (f != NULL) {
        if (fgets(out, (int)cap, f) == NULL) {
            snprintf(out, cap, "?");
        }
        fclose(f);
    }
    out[strcspn(out, "\n")] = '\0';
}

/* fn(arg, pid, the path the descriptor names, what it is) for every open
 * descriptor of every process that can be read; stops at the first
 * nonzero fn and returns it. */
static int each_open(open_fn fn, void *arg)
{
    DIR *pd = opendir("/proc");
    if (pd == NULL) {
        return 0;
    }
    int rc = 0;
    struct dirent *de;
    while (rc == 0 && (de = readdir(pd)) != NULL) {
        if (!isdigit((unsigned char)de->d_name[0])) {
            continue;
        }
        char fdp[300];
        snprintf(fdp, sizeof(fdp), "/proc/%s/fd", de->d_name);
        DIR *fd = opendir(fdp);
        if (fd == NULL) {
            continue; /* gone, or not ours to read */
        }
        struct dirent *fe;
        while (rc == 0 && (fe = readdir(fd)) != NULL) {
            if (!isdigit((unsigned char)fe->d_name[0])) {
                continue;
            }
            char lp[600], path[PATH_MAX];
            snprintf(lp, sizeof(lp), "%s/%s", fdp, fe->d_name);
            ssize_t n = readlink(lp, path, sizeof(path) - 1);
            struct stat st;
            if (n <= 0 || path[0] != '/' || stat(lp, &st) != 0 || !S_ISREG(st.st_mode)) {
                continue;
            }
            path[n] = '\0';
            rc = fn(arg, strtol(de->d_name, NULL, 10), path, &st);
        }
        closedir(fd);
    }
    closedir(pd);
    return rc;
}

static int ends_with(const char *s, const char *suffix)
{
    size_t a = strlen(s), b = strlen(suffix);
    return a >= b && strcmp(s + a - b, suffix) == 0;
}

/* A SQLite file: a database's companion by name, or a database by its
 * 16-byte header. */
static int sqlite_file(const char *path)
{
    if (ends_with(path, "-wal") || ends_with(path, "-shm") || ends_with(path, "-journal")) {
        return 1;
    }
    char hdr[16];
    int fd = open(path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW | O_NONBLOCK);
    if (fd < 0) {
        return 0;
    }
    ssize_t n = pread(fd, hdr, sizeof(hdr), 0);
    close(fd);
    return n == (ssize_t)sizeof(hdr) && memcmp(hdr, "SQLite format 3", 16) == 0;
}

typedef struct dir_q {
    const char *dir;
    char *why;
    size_t cap;
} dir_q;

static int dir_hit(void *arg, long pid, const char *path, const struct stat *st)
{
    (void)st;
    dir_q *q = arg;
    size_t dl = strlen(q->dir);
    int beneath = strncmp(path, q->dir, dl) == 0 && (path[dl] == '/' || q->dir[dl - 1] == '/');
    if (!beneath || !sqlite_file(path)) {
        return 0;
    }
    char comm[64];
    comm_of(pid, comm, sizeof(comm));
    snprintf(q->why, q->cap,
             "%s (pid %ld) has the SQLite database file %s open in %s; stop it, or restore "
             "somewhere else",
             comm, pid, path, q->dir);
    return 1;
}

int tm_sqlite_in_use(const char *dir, char *why, size_t cap)
{
    if (dir == NULL || dir[0] != '/') {
        return 0;
    }
    dir_q q = {.dir = dir, .why = why, .cap = cap};
    return each_open(dir_hit, &q);
}

typedef struct file_q {
    struct stat st[4];
    const char *names[4];
    int n;
    char *why;
    size_t cap;
} file_q;

static int file_hit(void *arg, long pid, const char *path, const struct stat *st)
{
    file_q *q = arg;
    for (int i = 0; i < q->n; i++) {
        if (st->st_dev == q->st[i].st_dev && st->st_ino == q->st[i].st_ino) {
            char comm[64];
            comm_of(pid, comm, sizeof(comm));
            snprintf(q->why, q->cap,
                     "%s (pid %ld) has %s open (as %s): the database is live; stop the "
                     "application first, or restore to another file",
                     comm, pid, q->names[i], path);
            return 1;
        }
    }
    return 0;
}

int tm_sqlite_file_live(const char *db, char *why, size_t cap)
{
    static const char *const sfx[] = {"", "-wal", "-shm", "-journal"};
    file_q q = {.why = why, .cap = cap};
    char names[4][PATH_MAX + 16];
    for (int i = 0; i < 4; i++) {
        snprintf(names[i], sizeof(names[i]), "%s%s", db, sfx[i]);
        if (stat(names[i], &q.st[q.n]) == 0) {
            q.names[q.n++] = names[i];
        }
    }
    return q.n > 0 ? each_open(file_hit, &q) : 0;
}
