/*
 * storage.h - one interface for every repository backend.
 *
 * A backend (common/storage/<name>.c or common/storage/<name>/) fills a
 * tm_storage_ops table and is listed once in common/storage.c's registry.
 * Keys are '/'-separated relative paths ("orders-db/backup/<id>/manifest").
 *
 * Writes are atomic: an object becomes visible complete, or not at all
 * (posix: temp + fsync + rename + dir fsync; S3: single PUT or completed
 * multipart upload). tm_storage_put_abort() leaves nothing visible.
 */
#ifndef TM_STORAGE_H
#define TM_STORAGE_H

#include <stddef.h>
#include <stdint.h>

#include "common/err.h"

typedef struct tm_storage tm_storage;
typedef struct tm_storage_writer tm_storage_writer;
typedef struct tm_storage_reader tm_storage_reader;

typedef struct tm_storage_info {
    char *key; /* relative to the storage root */
    uint64_t size;
    int64_t mtime; /* unix seconds, 0 if unknown */
} tm_storage_info;

/* Options for opening a backend; which fields matter depends on the backend. */
typedef struct tm_storage_opts {
    const char *backend;  /* "posix" | "s3" */
    const char *path;     /* posix: root directory */
    const char *endpoint; /* s3: "https://s3.eu-west-1.amazonaws.com" or "http://127.0.0.1:8080" */
    const char *bucket;
    const char *region; /* s3: signing region, default "us-east-1" */
    const char *prefix; /* s3: key prefix inside the bucket, may be NULL */
    const char *access_key;
    const char *secret_key;
    const char *ca_file; /* s3: CA bundle; NULL = system */
    int verify_tls;      /* s3: 1 (default) verify peer and host */
    int path_style;      /* s3: 1 path-style, 0 virtual-host */
    const char *sse;     /* s3: "AES256" | "aws:kms" | NULL */
    const char *sse_kms_key_id;
    const char *storage_class;
    const char *object_lock_mode;    /* "GOVERNANCE" | "COMPLIANCE" | NULL */
    int64_t object_lock_retain_days; /* with object_lock_mode */
    int max_retries;                 /* default 5 */
    int timeout_ms;                  /* per request; default 60000 */
    size_t part_size;                /* multipart part size; default 16 MiB, >= 5 MiB */
} tm_storage_opts;

int tm_storage_open(tm_storage **out, const tm_storage_opts *opts, tm_err *err);
void tm_storage_free(tm_storage *s);
/* "posix:/srv/repo" or "s3:bucket@endpoint" for messages. */
const char *tm_storage_describe(const tm_storage *s);

/* Streaming put. The writer is freed by commit or abort. */
int tm_storage_put_open(tm_storage *s, const char *key, tm_storage_writer **out, tm_err *err);
int tm_storage_write(tm_storage_writer *w, const void *buf, size_t len, tm_err *err);
int tm_storage_put_commit(tm_storage_writer *w, tm_err *err);
void tm_storage_put_abort(tm_storage_writer *w);
/* Convenience: put a whole buffer. */
int tm_storage_put(tm_storage *s, const char *key, const void *buf, size_t len, tm_err *err);
/* Put a whole buffer only if key does not exist yet: TM_EEXIST otherwise, and
 * the existing object is untouched (posix: link(); S3: If-None-Match: *). For
 * objects that must never be replaced: manifests, data key records. */
int tm_storage_put_new(tm_storage *s, const char *key, const void *buf, size_t len, tm_err *err);

/* What kind of failure a TM_E* code from a storage call is, for operators and
 * the task's per-repository outcome: "auth", "permission", "not_found",
 * "throttled", "unreachable", "no_space", "corrupt", "exists" or "io". */
const char *tm_storage_error_class(int code);
/* What to check for that class, e.g. "check the secret key"; never NULL. */
const char *tm_storage_error_hint(int code);

/* Streaming (ranged) get: length 0 = to the end. read() sets *got = 0 at EOF. */
int tm_storage_get_open(tm_storage *s, const char *key, uint64_t offset, uint64_t length,
                        tm_storage_reader **out, tm_err *err);
int tm_storage_read(tm_storage_reader *r, void *buf, size_t cap, size_t *got, tm_err *err);
void tm_storage_get_close(tm_storage_reader *r);
/* Convenience: get a whole object (malloc'd). */
int tm_storage_get(tm_storage *s, const char *key, void **out, size_t *len, tm_err *err);

/* One page of keys under prefix, in lexical order, after `token` (NULL = from
 * the start). *next is malloc'd, NULL on the last page. Free items with
 * tm_storage_infos_free. */
int tm_storage_list(tm_storage *s, const char *prefix, const char *token, size_t max,
                    tm_storage_info **items, size_t *n, char **next, tm_err *err);
/* TM_ENOENT if absent. info->key is not filled. */
int tm_storage_stat(tm_storage *s, const char *key, tm_storage_info *info, tm_err *err);
/* Delete keys; absent keys are not an error. */
int tm_storage_delete(tm_storage *s, const char *const *keys, size_t n, tm_err *err);
/* Server-side copy inside one storage. */
int tm_storage_copy(tm_storage *s, const char *src, const char *dst, tm_err *err);
/* Remove what writers killed mid-object left under prefix ("target/"): the
 * posix backend's temporaries last written more than min_age_s seconds ago
 * (a live writer writes all the time, so an old one is abandoned). Never
 * touches a visible object. *removed = how many went. */
int tm_storage_sweep_temps(tm_storage *s, const char *prefix, int64_t min_age_s, uint64_t *removed,
                           tm_err *err);

void tm_storage_infos_free(tm_storage_info *items, size_t n);

#endif
