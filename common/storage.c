/*
 * storage.c - the backend registry and the generic half of storage.h.
 *
 * Everything that is the same for every backend lives here: argument and key
 * validation, the wrapper objects handed to callers, and the convenience
 * whole-buffer put/get. Backends only see keys that already passed
 * tm_storage_key_valid(), so a bad key is rejected the same way everywhere.
 */
#include "common/storage.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "common/storage/backend.h"

/* The registry: one line per backend. */
extern const tm_storage_backend tm_storage_backend_posix;
extern const tm_storage_backend tm_storage_backend_s3;

static const tm_storage_backend *const backends[] = {
    &tm_storage_backend_posix,
    &tm_storage_backend_s3,
};

struct tm_storage {
    const tm_storage_backend *b;
    void *state;
    char describe[512];
};

struct tm_storage_writer {
    tm_storage *s;
    void *w;
    int failed; /* a write failed: only abort is allowed now */
};

struct tm_storage_reader {
    tm_storage *s;
    void *r;
};

int tm_storage_key_valid(const char *key)
{
    if (key == NULL || key[0] == '\0' || key[0] == '/') {
        return 0;
    }
    size_t len = strlen(key);
    if (len > TM_STORAGE_KEY_MAX) {
        return 0;
    }
    const char *seg = key;
    for (;;) {
        const char *end = strchr(seg, '/');
        size_t n = end ? (size_t)(end - seg) : strlen(seg);
        if (n == 0 || (n == 1 && seg[0] == '.') || (n == 2 && seg[0] == '.' && seg[1] == '.')) {
            return 0;
        }
        if (end == NULL) {
            break;
        }
        seg = end + 1;
    }
    return 1;
}

int tm_storage_infos_push(tm_storage_info **items, size_t *n, size_t *cap, const char *key,
                          uint64_t size, int64_t mtime)
{
    if (*n == *cap) {
        size_t nc = *cap ? *cap * 2 : 64;
        tm_storage_info *ni = realloc(*items, nc * sizeof(*ni));
        if (ni == NULL) {
            return TM_ENOMEM;
        }
        *items = ni;
        *cap = nc;
    }
    char *k = strdup(key);
    if (k == NULL) {
        return TM_ENOMEM;
    }
    (*items)[*n] = (tm_storage_info){.key = k, .size = size, .mtime = mtime};
    (*n)++;
    return TM_OK;
}

static int bad_key(tm_storage *s, const char *key, tm_err *err)
{
    return tm_err_set(err, TM_EINVAL,
                      "%s: invalid key '%s' (keys are relative '/'-separated paths without "
                      "empty, '.' or '..' segments)",
                      s->describe, key ? key : "(null)");
}

int tm_storage_open(tm_storage **out, const tm_storage_opts *opts, tm_err *err)
{
    *out = NULL;
    if (opts == NULL || opts->backend == NULL) {
        return tm_err_set(err, TM_ECONFIG, "storage: no backend given (posix or s3)");
    }
    const tm_storage_backend *b = NULL;
    for (size_t i = 0; i < sizeof(backends) / sizeof(backends[0]); i++) {
        if (strcmp(backends[i]->name, opts->backend) == 0) {
            b = backends[i];
        }
    }
    if (b == NULL) {
        return tm_err_set(err, TM_ECONFIG, "storage: unknown backend '%s' (posix or s3)",
                          opts->backend);
    }
    tm_storage *s = calloc(1, sizeof(*s));
    if (s == NULL) {
        return tm_err_set(err, TM_ENOMEM, "storage: out of memory");
    }
    s->b = b;
    snprintf(s->describe, sizeof(s->describe), "%s", b->name);
    int rc = b->open(&s->state, opts, s->describe, sizeof(s->describe), err);
    if (rc != TM_OK) {
        free(s);
        return rc;
    }
    *out = s;
    return TM_OK;
}

void tm_storage_free(tm_storage *s)
{
    if (s == NULL) {
        return;
    }
    s->b->free(s->state);
    free(s);
}

const char *tm_storage_describe(const tm_storage *s)
{
    return s->describe;
}

int tm_storage_put_open(tm_storage *s, const char *key, tm_storage_writer **out, tm_err *err)
{
    *out = NULL;
    if (!tm_storage_key_valid(key)) {
        return bad_key(s, key, err);
    }
    tm_storage_writer *w = calloc(1, sizeof(*w));
    if (w == NULL) {
        return tm_err_set(err, TM_ENOMEM, "%s: put %s: out of memory", s->describe, key);
    }
    w->s = s;
    int rc = s->b->put_open(s->state, key, &w->w, err);
    if (rc != TM_OK) {
        free(w);
        return rc;
    }
    *out = w;
    return TM_OK;
}

int tm_storage_write(tm_storage_writer *w, const void *buf, size_t len, tm_err *err)
{
    if (w->failed) {
        return tm_err_set(err, TM_EINVAL, "%s: write after a failed write", w->s->describe);
    }
    if (len == 0) {
        return TM_OK;
    }
    int rc = w->s->b->write(w->w, buf, len, err);
    if (rc != TM_OK) {
        w->failed = 1;
    }
    return rc;
}

int tm_storage_put_commit(tm_storage_writer *w, tm_err *err)
{
    if (w->failed) {
        /* Never publish an object whose bytes are known to be incomplete. */
        tm_storage_put_abort(w);
        return tm_err_set(err, TM_EINVAL, "commit after a failed write: object not stored");
    }
    int rc = w->s->b->put_commit(w->w, err);
    free(w);
    return rc;
}

void tm_storage_put_abort(tm_storage_writer *w)
{
    if (w == NULL) {
        return;
    }
    w->s->b->put_abort(w->w);
    free(w);
}

int tm_storage_put(tm_storage *s, const char *key, const void *buf, size_t len, tm_err *err)
{
    tm_storage_writer *w;
    int rc = tm_storage_put_open(s, key, &w, err);
    if (rc != TM_OK) {
        return rc;
    }
    rc = tm_storage_write(w, buf, len, err);
    if (rc != TM_OK) {
        tm_storage_put_abort(w);
        return rc;
    }
    return tm_storage_put_commit(w, err);
}

int tm_storage_put_new(tm_storage *s, const char *key, const void *buf, size_t len, tm_err *err)
{
    if (!tm_storage_key_valid(key)) {
        return bad_key(s, key, err);
    }
    return s->b->put_create(s->state, key, buf, len, err);
}

const char *tm_storage_error_class(int code)
{
    switch (code) {
    case TM_EAUTH:
        return "auth";
    case TM_EPERM:
        return "permission";
    case TM_ENOENT:
        return "not_found";
    case TM_EBUSY:
        return "throttled";
    case TM_EUNAVAIL:
    case TM_ETIMEDOUT:
        return "unreachable";
    case TM_ENOSPC:
        return "no_space";
    case TM_ECORRUPT:
        return "corrupt";
    case TM_EEXIST:
        return "exists";
    default:
        return "io";
    }
}

const char *tm_storage_error_hint(int code)
{
    switch (code) {
    case TM_EAUTH:
        return "check the access key and the secret key";
    case TM_EPERM:
        return "check the permissions of the directory or the bucket policy";
    case TM_ENOENT:
        return "check that the repository's directory or bucket exists";
    case TM_EBUSY:
        return "the server throttles requests (SlowDown); retry later or lower the parallelism";
    case TM_EUNAVAIL:
    case TM_ETIMEDOUT:
        return "check the endpoint, the network and that the server is up";
    case TM_ENOSPC:
        return "free space on the repository or raise its quota";
    case TM_ECORRUPT:
        return "the stored bytes are damaged; run `tidemark-agent repo verify`";
    case TM_EEXIST:
        return "an object of that name already exists and is never overwritten";
    default:
        return "check the storage device and the system log";
    }
}

int tm_storage_get_open(tm_storage *s, const char *key, uint64_t offset, uint64_t length,
                        tm_storage_reader **out, tm_err *err)
{
    *out = NULL;
    if (!tm_storage_key_valid(key)) {
        return bad_key(s, key, err);
    }
    tm_storage_reader *r = calloc(1, sizeof(*r));
    if (r == NULL) {
        return tm_err_set(err, TM_ENOMEM, "%s: get %s: out of memory", s->describe, key);
    }
    r->s = s;
    int rc = s->b->get_open(s->state, key, offset, length, &r->r, err);
    if (rc != TM_OK) {
        free(r);
        return rc;
    }
    *out = r;
    return TM_OK;
}

int tm_storage_read(tm_storage_reader *r, void *buf, size_t cap, size_t *got, tm_err *err)
{
    *got = 0;
    if (cap == 0) {
        return TM_OK;
    }
    return r->s->b->read(r->r, buf, cap, got, err);
}

void tm_storage_get_close(tm_storage_reader *r)
{
    if (r == NULL) {
        return;
    }
    r->s->b->get_close(r->r);
    free(r);
}

int tm_storage_get(tm_storage *s, const char *key, void **out, size_t *len, tm_err *err)
{
    *out = NULL;
    *len = 0;
    tm_storage_info info;
    int rc = tm_storage_stat(s, key, &info, err);
    if (rc != TM_OK) {
        return rc;
    }
    tm_storage_reader *r;
    rc = tm_storage_get_open(s, key, 0, 0, &r, err);
    if (rc != TM_OK) {
        return rc;
    }
    /* The size from stat is a hint: grow if the object changed meanwhile. */
    size_t cap = info.size + 1, n = 0;
    char *buf = malloc(cap);
    if (buf == NULL) {
        tm_storage_get_close(r);
        return tm_err_set(err, TM_ENOMEM, "%s: get %s: out of memory", s->describe, key);
    }
    for (;;) {
        if (n == cap) {
            char *nb = realloc(buf, cap * 2);
            if (nb == NULL) {
                free(buf);
                tm_storage_get_close(r);
                return tm_err_set(err, TM_ENOMEM, "%s: get %s: out of memory", s->describe, key);
            }
            buf = nb;
            cap *= 2;
        }
        size_t got;
        rc = tm_storage_read(r, buf + n, cap - n, &got, err);
        if (rc != TM_OK) {
            free(buf);
            tm_storage_get_close(r);
            return rc;
        }
        if (got == 0) {
            break;
        }
        n += got;
    }
    tm_storage_get_close(r);
    *out = buf;
    *len = n;
    return TM_OK;
}

int tm_storage_list(tm_storage *s, const char *prefix, const char *token, size_t max,
                    tm_storage_info **items, size_t *n, char **next, tm_err *err)
{
    *items = NULL;
    *n = 0;
    *next = NULL;
    if (max == 0) {
        max = 1000;
    }
    if (prefix == NULL) {
        prefix = "";
    }
    if (token != NULL && token[0] == '\0') {
        token = NULL;
    }
    return s->b->list(s->state, prefix, token, max, items, n, next, err);
}

int tm_storage_stat(tm_storage *s, const char *key, tm_storage_info *info, tm_err *err)
{
    memset(info, 0, sizeof(*info));
    if (!tm_storage_key_valid(key)) {
        return bad_key(s, key, err);
    }
    return s->b->stat(s->state, key, info, err);
}

int tm_storage_delete(tm_storage *s, const char *const *keys, size_t n, tm_err *err)
{
    for (size_t i = 0; i < n; i++) {
        if (!tm_storage_key_valid(keys[i])) {
            return bad_key(s, keys[i], err);
        }
    }
    if (n == 0) {
        return TM_OK;
    }
    return s->b->del(s->state, keys, n, err);
}

int tm_storage_sweep_temps(tm_storage *s, const char *prefix, int64_t min_age_s, uint64_t *removed,
                           tm_err *err)
{
    *removed = 0;
    /* The prefix names a folder: "target/". */
    size_t len = strlen(prefix);
    char dir[TM_STORAGE_KEY_MAX + 1];
    if (len < 2 || len > TM_STORAGE_KEY_MAX || prefix[len - 1] != '/') {
        return bad_key(s, prefix, err);
    }
    memcpy(dir, prefix, len - 1);
    dir[len - 1] = '\0';
    if (!tm_storage_key_valid(dir)) {
        return bad_key(s, prefix, err);
    }
    if (s->b->sweep_temps == NULL) {
        return TM_OK;
    }
    return s->b->sweep_temps(s->state, prefix, (int64_t)time(NULL) - min_age_s, removed, err);
}

int tm_storage_copy(tm_storage *s, const char *src, const char *dst, tm_err *err)
{
    if (!tm_storage_key_valid(src)) {
        return bad_key(s, src, err);
    }
    if (!tm_storage_key_valid(dst)) {
        return bad_key(s, dst, err);
    }
    return s->b->copy(s->state, src, dst, err);
}

void tm_storage_infos_free(tm_storage_info *items, size_t n)
{
    if (items == NULL) {
        return;
    }
    for (size_t i = 0; i < n; i++) {
        free(items[i].key);
    }
    free(items);
}
