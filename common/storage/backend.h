/*
 * backend.h - what a storage backend implements (private to common/storage).
 *
 * This is the "tm_storage_ops table" of storage.h. A backend defines one
 * const tm_storage_backend and adds one line to the registry in
 * common/storage.c. The generic layer (storage.c) validates keys and
 * arguments, owns the tm_storage / writer / reader wrappers and calls these
 * hooks with the backend's own state pointers.
 */
#ifndef TM_STORAGE_BACKEND_H
#define TM_STORAGE_BACKEND_H

#include "common/storage.h"

typedef struct tm_storage_backend {
    const char *name; /* matches tm_storage_opts.backend */

    /* *state is the backend's handle; describe is filled (e.g. "posix:/srv/repo"). */
    int (*open)(void **state, const tm_storage_opts *opts, char *describe, size_t cap, tm_err *err);
    void (*free)(void *state);

    int (*put_open)(void *state, const char *key, void **w, tm_err *err);
    int (*write)(void *w, const void *buf, size_t len, tm_err *err);
    /* commit and abort both free w. */
    int (*put_commit)(void *w, tm_err *err);
    void (*put_abort)(void *w);
    /* Whole-buffer put that never replaces: TM_EEXIST when the key exists. */
    int (*put_create)(void *state, const char *key, const void *buf, size_t len, tm_err *err);

    int (*get_open)(void *state, const char *key, uint64_t offset, uint64_t length, void **r,
                    tm_err *err);
    int (*read)(void *r, void *buf, size_t cap, size_t *got, tm_err *err);
    void (*get_close)(void *r);

    int (*list)(void *state, const char *prefix, const char *token, size_t max,
                tm_storage_info **items, size_t *n, char **next, tm_err *err);
    int (*stat)(void *state, const char *key, tm_storage_info *info, tm_err *err);
    int (*del)(void *state, const char *const *keys, size_t n, tm_err *err);
    int (*copy)(void *state, const char *src, const char *dst, tm_err *err);
    /* Optional: remove the temporaries of writers that died (SIGKILL, power
     * loss) under prefix, last written before older_than (unix seconds);
     * *removed counts them. NULL: the backend leaves none visible or
     * billable that it could find (S3: a lifecycle rule ends incomplete
     * multipart uploads). */
    int (*sweep_temps)(void *state, const char *prefix, int64_t older_than, uint64_t *removed,
                       tm_err *err);
} tm_storage_backend;

/* Keys are '/'-separated relative paths: no leading '/', no empty, "." or
 * ".." segment, no NUL, at most TM_STORAGE_KEY_MAX bytes. */
#define TM_STORAGE_KEY_MAX 1024
int tm_storage_key_valid(const char *key);

/* Growable array of infos used by backends while listing. */
int tm_storage_infos_push(tm_storage_info **items, size_t *n, size_t *cap, const char *key,
                          uint64_t size, int64_t mtime);

#endif
