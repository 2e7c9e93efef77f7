/*
 * restore_root.h - the one place where a restore writes to the file system.
 *
 * Every engine's restore writes only through a tm_restore_root: a
 * directory opened once, beneath which files, directories and the links the
 * engine declares are created. Why: a backup's manifest names paths and
 * link targets that came from another host (or from whoever can write the
 * repository with its key); recreating them as-is lets a link into a live
 * server's directory or a `../` path make a scratch restore overwrite a
 * live database. So:
 *
 *   - every manifest path is checked (tm_restore_path_check): relative, no
 *     `.`/`..`/empty component, no NUL or control character, each name at
 *     most 255 bytes, the whole at most 1024;
 *   - every open resolves beneath the root without following any symbolic
 *     link: openat2(RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS) where the kernel
 *     has it (probed once at run time), else openat(O_NOFOLLOW) one path
 *     step at a time;
 *   - a link is created only where the engine's rule allows one, and only to
 *     a directory the caller chose (a mapping or the recorded place), which
 *     must be empty (or, with reuse, at least not in use) and not used by a
 *     running server; paths below a link resolve beneath that directory;
 *   - modes, times and owners are set through the opened descriptors
 *     (fchmod, futimens, fchown), never by path.
 *
 * Also here, for every engine: whether a directory is in use by a running
 * server (tm_restore_dir_busy), whether a task's directory lies under the
 * configured restore roots (tm_restore_under_roots), and the minimal
 * environment a restored server is started with (tm_restore_env_new).
 */
#ifndef TM_AGENT_RESTORE_ROOT_H
#define TM_AGENT_RESTORE_ROOT_H

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "common/err.h"

#define TM_RESTORE_NAME_MAX 255  /* one path component */
#define TM_RESTORE_PATH_MAX 1024 /* a whole manifest path */

typedef struct tm_restore_root tm_restore_root;

typedef struct tm_restore_root_opts {
    int chown; /* give what is created to uid:gid */
    uid_t uid;
    gid_t gid;
    /* The engine's rule: 1 if a symbolic link may exist at rel. NULL = none. */
    int (*link_ok)(const char *rel);
} tm_restore_root_opts;

/* Validate one manifest path of len bytes (len counts embedded NULs).
 * TM_EINVAL with a message naming the entry and the reason. */
int tm_restore_path_check(const char *rel, size_t len, tm_err *err);
/* Validate a directory given to the restore (a mapping of the engine's):
 * absolute,
 * no `.`/`..`/empty component, no control character, at most PATH_MAX. */
int tm_restore_dir_check(const char *what, const char *dir, tm_err *err);

/* Open (creating it 0700 if missing, parents included) the directory dir,
 * which must be absolute and not itself a symbolic link. */
int tm_restore_root_new(const char *dir, const tm_restore_root_opts *o, tm_restore_root **out,
                        tm_err *err);
void tm_restore_root_free(tm_restore_root *r);
const char *tm_restore_root_path(const tm_restore_root *r);
/* 1 when opens use openat2 (the kernel has it), 0 for the openat walk. */
int tm_restore_root_uses_openat2(void);

/* mode and owner of the root itself, through its descriptor. */
int tm_restore_root_own(tm_restore_root *r, uint32_t mode, tm_err *err);
/* Create directory rel (its parent must exist) or keep an existing one;
 * mode and owner set through its descriptor. */
int tm_restore_root_mkdir(tm_restore_root *r, const char *rel, uint32_t mode, tm_err *err);
/* Create or truncate file rel for writing (0600 until attrs are set);
 * *fd is the caller's to close. */
int tm_restore_root_create(tm_restore_root *r, const char *rel, int *fd, tm_err *err);
/* Open an existing file rel read-only (a --delta comparison). */
int tm_restore_root_open_read(tm_restore_root *r, const char *rel, int *fd, tm_err *err);
/* mode, mtime (if mtime >= 0) and the owner, through fd. */
int tm_restore_root_attrs(tm_restore_root *r, int fd, const char *rel, uint32_t mode, int64_t mtime,
                          tm_err *err);
/* Set the attributes of existing rel (opened beneath, not followed). */
int tm_restore_root_set_attrs(tm_restore_root *r, const char *rel, uint32_t mode, int64_t mtime,
                              tm_err *err);
/* Write a small file atomically (temporary + rename in the same directory). */
int tm_restore_root_write(tm_restore_root *r, const char *rel, const void *buf, size_t len,
                          uint32_t mode, tm_err *err);
/* Open rel for appending (created 0600 if missing). */
int tm_restore_root_append(tm_restore_root *r, const char *rel, int *fd, tm_err *err);
/* Remove rel (a file or link; a directory with is_dir), not followed. */
int tm_restore_root_remove(tm_restore_root *r, const char *rel, int is_dir, tm_err *err);

/* Rename from to to (both beneath the root, neither followed; to is
 * replaced), then sync their directories: the new name is durable. */
int tm_restore_root_rename(tm_restore_root *r, const char *from, const char *to, tm_err *err);

/* A symbolic link rel -> dest, where the engine's rule allows one. dest must
 * pass tm_restore_dir_check, is created if missing (0700, owned), must be
 * empty unless allow_nonempty, and must not be in use by a running server.
 * A link already at rel pointing elsewhere is replaced. Paths below rel then
 * resolve beneath dest. */
int tm_restore_root_link(tm_restore_root *r, const char *rel, const char *dest, int allow_nonempty,
                         tm_err *err);

/* TM_EBUSY if dir (or a directory inside it, or one it is inside) is in use
 * by a running server: every registered engine is asked (tm_engine.in_use),
 * and the message is the engine's. */
int tm_restore_dir_busy(const char *dir, tm_err *err);

/* For the engines' in_use: 1 (why filled: the server, its pid and the
 * directory) when dir (canonical) and used (canonicalised here) are the same
 * directory or one lies beneath the other; 0 otherwise. */
int tm_restore_busy_why(const char *dir, const char *used, const char *comm, long pid, char *why,
                        size_t cap);
/* For the engines' in_use: fn(arg, pid, comm, working directory) for each
 * running process whose comm is one of comms (NULL-terminated), from /proc;
 * a process with the same working directory as the one before it (a
 * server's children) is skipped. Stops at the first nonzero fn, and returns
 * it; 0 when none (or /proc cannot be read). */
int tm_restore_proc_each(const char *const *comms,
                         int (*fn)(void *arg, long pid, const char *comm, const char *cwd),
                         void *arg);
/* For the engines' in_use: 1 (why filled) when a running process whose comm
 * is one of comms works in dir, inside it, or above it; or when one of its
 * subdirs (relative to its working directory, NULL-terminated, may be NULL;
 * a trailing "/" = each entry of that directory) is (they may be links
 * elsewhere). */
int tm_restore_cwd_busy(const char *dir, const char *const *comms, const char *const *subdirs,
                        char *why, size_t cap);

/* TM_EPERM unless dir (lexically, and through the symbolic links of its
 * existing part) is one of roots or beneath one. what names it in the
 * message ("restore directory", "tablespace directory"). */
int tm_restore_under_roots(const char *what, const char *dir, char *const *roots, size_t n,
                           tm_err *err);

/* The environment of a server started from a restore: PATH, LANG, LC_*, TZ
 * of the agent; HOME, USER, LOGNAME of user; extra (the engine's
 * "NAME=value" strings, NULL-terminated, may be NULL). Nothing else of the agent's environment. */
int tm_restore_env_new(const char *user, const char *const *extra, char ***out, tm_err *err);
void tm_restore_env_free(char **env);

#endif
