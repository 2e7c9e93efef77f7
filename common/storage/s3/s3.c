/*
 * s3.c - the S3 backend: any S3-compatible object store.
 *
 * Put: bytes are buffered up to part_size. An object that fits is sent with
 * one PUT; a larger one becomes a multipart upload (parts of part_size, the
 * last one smaller), completed on commit and aborted on abort or on any
 * failure, so an object is visible complete or not at all.
 *
 * Get: the object is fetched in bounded ranged GETs (READ_CHUNK at a time),
 * so memory stays bounded whatever the object size, each range is retried on
 * its own, and If-Match on the first ETag detects an object replaced while
 * being read.
 *
 * Keys: the backend prefix (opts->prefix) is prepended on the way in and
 * stripped on the way out; callers only see storage-relative keys.
 */
#include <curl/curl.h>
#include <openssl/evp.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/log.h"
#include "common/storage/backend.h"
#include "common/storage/s3/s3.h"
#include "common/util.h"

#define MIB ((size_t)1024 * 1024)
#define MIN_PART (5 * MIB)
#define DEFAULT_PART (16 * MIB)
#define MAX_PARTS 10000
#define READ_CHUNK (8 * MIB)
#define DELETE_BATCH 1000

typedef struct s3_writer {
    s3 *s;
    char *key; /* full key in the bucket */
    char what[TM_STORAGE_KEY_MAX + 256];
    char *buf;
    size_t len;
    char *upload_id;
    char **etags;
    int nparts;
    uint64_t total;
} s3_writer;

typedef struct s3_reader {
    s3 *s;
    char *key;
    char what[TM_STORAGE_KEY_MAX + 256];
    uint64_t pos; /* next offset to fetch */
    uint64_t end; /* exclusive; UINT64_MAX until the size is known */
    char etag[128];
    s3_buf chunk;
    size_t chunk_pos;
    int eof;
} s3_reader;

static pthread_once_t curl_once = PTHREAD_ONCE_INIT;

static void curl_init_once(void)
{
    curl_global_init(CURL_GLOBAL_DEFAULT);
}

static char *dup_or_null(const char *s)
{
    return (s != NULL && s[0] != '\0') ? strdup(s) : NULL;
}

static void s3_free(void *state)
{
    s3 *s = state;
    if (s == NULL) {
        return;
    }
    s3_http_cleanup(s);
    pthread_mutex_destroy(&s->lock);
    free(s->scheme);
    free(s->host);
    free(s->base_path);
    free(s->bucket);
    free(s->region);
    free(s->prefix);
    free(s->access_key);
    if (s->secret_key != NULL) {
        OPENSSL_cleanse(s->secret_key, strlen(s->secret_key));
        free(s->secret_key);
    }
    free(s->ca_file);
    free(s->sse);
    free(s->sse_kms_key_id);
    free(s->storage_class);
    free(s->lock_mode);
    free(s);
}

/* Virtual-host addressing cannot work with an IP literal or localhost: there
 * is no "<bucket>.127.0.0.1". Use path-style there whatever was asked. */
static int host_needs_path_style(const char *host)
{
    if (host[0] == '[' || strncmp(host, "localhost", 9) == 0) {
        return 1;
    }
    for (const char *p = host; *p && *p != ':'; p++) {
        if ((*p < '0' || *p > '9') && *p != '.') {
            return 0;
        }
    }
    return 1;
}

static int s3_open(void **state, const tm_storage_opts *o, char *describe, size_t cap, tm_err *err)
{
    pthread_once(&curl_once, curl_init_once);
    if (o->bucket == NULL || o->bucket[0] == '\0') {
        return tm_err_set(err, TM_ECONFIG, "s3 storage: no bucket given");
    }
    if (o->access_key == NULL || o->secret_key == NULL || o->access_key[0] == '\0') {
        return tm_err_set(err, TM_ECONFIG, "s3 storage %s: no access key / secret key given",
                          o->bucket);
    }
    if (o->part_size != 0 && o->part_size < MIN_PART) {
        return tm_err_set(err, TM_ECONFIG,
                          "s3 storage %s: part_size %zu is below the S3 minimum of 5 MiB",
                          o->bucket, o->part_size);
    }
    s3 *s = calloc(1, sizeof(*s));
    if (s == NULL) {
        return tm_err_set(err, TM_ENOMEM, "s3 storage: out of memory");
    }
    pthread_mutex_init(&s->lock, NULL);
    s->region = strdup(o->region && o->region[0] ? o->region : "us-east-1");
    char defep[256];
    const char *ep = o->endpoint;
    if (ep == NULL || ep[0] == '\0') {
        snprintf(defep, sizeof(defep), "https://s3.%s.amazonaws.com", s->region);
        ep = defep;
    }
    const char *rest = ep;
    const char *sep = strstr(ep, "://");
    if (sep != NULL) {
        s->scheme = strndup(ep, (size_t)(sep - ep));
        rest = sep + 3;
    } else {
        s->scheme = strdup("https");
    }
    const char *slash = strchr(rest, '/');
    s->host = slash ? strndup(rest, (size_t)(slash - rest)) : strdup(rest);
    s->base_path = strdup(slash ? slash : "");
    /* Strip trailing '/' of the endpoint path: we add our own. */
    if (s->base_path != NULL) {
        size_t bl = strlen(s->base_path);
        while (bl > 0 && s->base_path[bl - 1] == '/') {
            s->base_path[--bl] = '\0';
        }
    }
    s->bucket = strdup(o->bucket);
    s->access_key = strdup(o->access_key);
    s->secret_key = strdup(o->secret_key);
    s->ca_file = dup_or_null(o->ca_file);
    s->verify_tls = o->verify_tls;
    s->path_style = o->path_style;
    s->sse = dup_or_null(o->sse);
    s->sse_kms_key_id = dup_or_null(o->sse_kms_key_id);
    s->storage_class = dup_or_null(o->storage_class);
    s->lock_mode = dup_or_null(o->object_lock_mode);
    s->lock_days = o->object_lock_retain_days;
    s->max_retries = o->max_retries == 0 ? 5 : (o->max_retries < 0 ? 0 : o->max_retries);
    s->timeout_ms = o->timeout_ms > 0 ? o->timeout_ms : 60000;
    s->part_size = o->part_size ? o->part_size : DEFAULT_PART;

    /* Prefix: normalised to "" or "a/b/". */
    const char *pre = o->prefix ? o->prefix : "";
    while (*pre == '/') {
        pre++;
    }
    size_t pl = strlen(pre);
    while (pl > 0 && pre[pl - 1] == '/') {
        pl--;
    }
    s->prefix = malloc(pl + 2);
    if (s->prefix != NULL) {
        memcpy(s->prefix, pre, pl);
        if (pl > 0) {
            s->prefix[pl++] = '/';
        }
        s->prefix[pl] = '\0';
    }
    if (s->region == NULL || s->scheme == NULL || s->host == NULL || s->base_path == NULL ||
        s->bucket == NULL || s->access_key == NULL || s->secret_key == NULL || s->prefix == NULL) {
        s3_free(s);
        return tm_err_set(err, TM_ENOMEM, "s3 storage: out of memory");
    }
    if (strcmp(s->scheme, "http") != 0 && strcmp(s->scheme, "https") != 0) {
        tm_err_set(err, TM_ECONFIG, "s3 storage: endpoint %s: scheme must be http or https", ep);
        s3_free(s);
        return TM_ECONFIG;
    }
    if (s->host[0] == '\0') {
        tm_err_set(err, TM_ECONFIG, "s3 storage: endpoint '%s' has no host", ep);
        s3_free(s);
        return TM_ECONFIG;
    }
    if (!s->path_style && host_needs_path_style(s->host)) {
        s->path_style = 1;
    }
    if (strcmp(s->scheme, "https") == 0 && !s->verify_tls) {
        tm_warn("s3", "bucket=%s endpoint=%s msg=\"TLS peer verification is disabled\"", s->bucket,
                ep);
    }
    /* "s3:bucket@endpoint", or "s3:bucket/prefix@endpoint" (no trailing '/'). */
    snprintf(describe, cap, "s3:%s%s%.*s@%s", s->bucket, pl ? "/" : "", pl ? (int)pl - 1 : 0,
             s->prefix, ep);
    *state = s;
    return TM_OK;
}

static char *full_key(s3 *s, const char *key)
{
    size_t pl = strlen(s->prefix), kl = strlen(key);
    char *k = malloc(pl + kl + 1);
    if (k != NULL) {
        memcpy(k, s->prefix, pl);
        memcpy(k + pl, key, kl + 1);
    }
    return k;
}

static void md5_base64(const void *buf, size_t len, char out[32])
{
    unsigned char md[EVP_MAX_MD_SIZE];
    unsigned int mdlen = 0;
    EVP_Digest(buf, len, md, &mdlen, EVP_md5(), NULL);
    EVP_EncodeBlock((unsigned char *)out, md, (int)mdlen);
}

/* Headers that apply to a new object: SSE, storage class, object lock. */
typedef struct obj_headers {
    char retain[32];
} obj_headers;

static void add_object_headers(s3 *s, s3_req *r, obj_headers *oh)
{
    if (s->sse != NULL) {
        s3_req_header(r, "x-amz-server-side-encryption", s->sse);
        if (s->sse_kms_key_id != NULL) {
            s3_req_header(r, "x-amz-server-side-encryption-aws-kms-key-id", s->sse_kms_key_id);
        }
    }
    if (s->storage_class != NULL) {
        s3_req_header(r, "x-amz-storage-class", s->storage_class);
    }
    if (s->lock_mode != NULL && s->lock_days > 0) {
        tm_fmt_time(tm_now_s() + s->lock_days * 86400, oh->retain, sizeof(oh->retain));
        s3_req_header(r, "x-amz-object-lock-mode", s->lock_mode);
        s3_req_header(r, "x-amz-object-lock-retain-until-date", oh->retain);
    }
}

/* ---- put ---------------------------------------------------------------- */

static int s3_put_open(void *state, const char *key, void **out, tm_err *err)
{
    s3 *s = state;
    s3_writer *w = calloc(1, sizeof(*w));
    if (w == NULL) {
        return tm_err_set(err, TM_ENOMEM, "s3 put %s: out of memory", key);
    }
    w->s = s;
    w->key = full_key(s, key);
    w->buf = malloc(s->part_size);
    if (w->key == NULL || w->buf == NULL) {
        free(w->key);
        free(w->buf);
        free(w);
        return tm_err_set(err, TM_ENOMEM, "s3 put %s: out of memory", key);
    }
    snprintf(w->what, sizeof(w->what), "%s/%s", s->bucket, w->key);
    *out = w;
    return TM_OK;
}

static int initiate(s3_writer *w, tm_err *err)
{
    s3_req r = {.method = "POST", .key = w->key, .query = "uploads=", .what = w->what};
    obj_headers oh;
    add_object_headers(w->s, &r, &oh);
    s3_resp resp;
    int rc = s3_request(w->s, &r, &resp, err);
    if (rc == TM_OK) {
        w->upload_id =
            resp.body.p ? s3_xml_get(resp.body.p, resp.body.p + resp.body.len, "UploadId") : NULL;
        if (w->upload_id == NULL || w->upload_id[0] == '\0') {
            free(w->upload_id);
            w->upload_id = NULL;
            rc = tm_err_set(err, TM_EPROTO,
                            "s3 POST %s?uploads: no UploadId in the server's answer", w->what);
        }
    }
    s3_resp_free(&resp);
    return rc;
}

static int upload_part(s3_writer *w, tm_err *err)
{
    if (w->nparts >= MAX_PARTS) {
        return tm_err_set(err, TM_EINVAL,
                          "s3 PUT %s: object exceeds %d parts of %zu bytes; raise part_size",
                          w->what, MAX_PARTS, w->s->part_size);
    }
    if (w->upload_id == NULL) {
        int rc = initiate(w, err);
        if (rc != TM_OK) {
            return rc;
        }
    }
    s3_buf q = {0};
    char num[64];
    snprintf(num, sizeof(num), "partNumber=%d&uploadId=", w->nparts + 1);
    int rc = s3_buf_append(&q, num, strlen(num));
    rc |= s3_uri_encode(&q, w->upload_id, 0);
    if (rc != TM_OK) {
        s3_buf_free(&q);
        return tm_err_set(err, TM_ENOMEM, "s3 PUT %s: out of memory", w->what);
    }
    char what[sizeof(w->what) + 32];
    snprintf(what, sizeof(what), "%s (part %d)", w->what, w->nparts + 1);
    s3_req r = {.method = "PUT",
                .key = w->key,
                .query = q.p,
                .body = w->buf,
                .body_len = w->len,
                .what = what};
    char md5[32];
    if (w->s->lock_mode != NULL) {
        md5_base64(w->buf, w->len, md5);
        s3_req_header(&r, "content-md5", md5);
    }
    s3_resp resp;
    rc = s3_request(w->s, &r, &resp, err);
    if (rc == TM_OK && resp.etag[0] == '\0') {
        rc = tm_err_set(err, TM_EPROTO, "s3 PUT %s: no ETag in the server's answer", what);
    }
    if (rc == TM_OK) {
        char **ne = realloc(w->etags, (size_t)(w->nparts + 1) * sizeof(*ne));
        char *et = strdup(resp.etag);
        if (ne == NULL || et == NULL) {
            free(et);
            if (ne != NULL) {
                w->etags = ne;
            }
            rc = tm_err_set(err, TM_ENOMEM, "s3 PUT %s: out of memory", what);
        } else {
            w->etags = ne;
            w->etags[w->nparts++] = et;
            w->total += w->len;
            w->len = 0;
        }
    }
    s3_resp_free(&resp);
    s3_buf_free(&q);
    return rc;
}

static int s3_write(void *wp, const void *buf, size_t len, tm_err *err)
{
    s3_writer *w = wp;
    const char *p = buf;
    while (len > 0) {
        size_t room = w->s->part_size - w->len;
        size_t n = len < room ? len : room;
        memcpy(w->buf + w->len, p, n);
        w->len += n;
        p += n;
        len -= n;
        /* Upload a full part only once more bytes arrive, so that an object
         * of exactly part_size still goes out as a single PUT. */
        if (w->len == w->s->part_size && len > 0) {
            int rc = upload_part(w, err);
            if (rc != TM_OK) {
                return rc;
            }
        }
    }
    return TM_OK;
}

static void writer_free(s3_writer *w)
{
    for (int i = 0; i < w->nparts; i++) {
        free(w->etags[i]);
    }
    free(w->etags);
    free(w->upload_id);
    free(w->key);
    free(w->buf);
    free(w);
}

/* Abort the multipart upload so its parts are not kept (and billed). Best
 * effort: a bucket lifecycle rule for incomplete uploads is the backstop. */
static void abort_upload(s3_writer *w)
{
    if (w->upload_id == NULL) {
        return;
    }
    s3_buf q = {0};
    if (s3_buf_append(&q, "uploadId=", 9) == TM_OK && s3_uri_encode(&q, w->upload_id, 0) == 0) {
        s3_req r = {
            .method = "DELETE", .key = w->key, .query = q.p, .what = w->what, .ok_status = {404}};
        s3_resp resp;
        tm_err e;
        if (s3_request(w->s, &r, &resp, &e) != TM_OK) {
            tm_warn("s3", "op=abort-multipart what=%s error=\"%s\"", w->what, e.msg);
        }
        s3_resp_free(&resp);
    }
    s3_buf_free(&q);
}

static void s3_put_abort(void *wp)
{
    s3_writer *w = wp;
    abort_upload(w);
    writer_free(w);
}

static int complete(s3_writer *w, tm_err *err)
{
    s3_buf body = {0}, q = {0};
    int rc = s3_buf_append(&body, "<CompleteMultipartUpload>", 25);
    for (int i = 0; i < w->nparts && rc == TM_OK; i++) {
        char num[64];
        snprintf(num, sizeof(num), "<Part><PartNumber>%d</PartNumber><ETag>", i + 1);
        rc |= s3_buf_append(&body, num, strlen(num));
        rc |= s3_xml_escape(&body, w->etags[i]);
        rc |= s3_buf_append(&body, "</ETag></Part>", 14);
    }
    rc |= s3_buf_append(&body, "</CompleteMultipartUpload>", 26);
    rc |= s3_buf_append(&q, "uploadId=", 9);
    rc |= s3_uri_encode(&q, w->upload_id, 0);
    if (rc != TM_OK) {
        s3_buf_free(&body);
        s3_buf_free(&q);
        return tm_err_set(err, TM_ENOMEM, "s3 POST %s: out of memory", w->what);
    }
    s3_req r = {.method = "POST",
                .key = w->key,
                .query = q.p,
                .body = body.p,
                .body_len = body.len,
                .what = w->what};
    s3_resp resp;
    rc = s3_request(w->s, &r, &resp, err);
    s3_resp_free(&resp);
    s3_buf_free(&body);
    s3_buf_free(&q);
    return rc;
}

static int s3_put_commit(void *wp, tm_err *err)
{
    s3_writer *w = wp;
    int rc;
    if (w->upload_id == NULL) {
        s3_req r = {
            .method = "PUT", .key = w->key, .body = w->buf, .body_len = w->len, .what = w->what};
        obj_headers oh;
        add_object_headers(w->s, &r, &oh);
        char md5[32];
        if (w->s->lock_mode != NULL) {
            md5_base64(w->buf, w->len, md5);
            s3_req_header(&r, "content-md5", md5);
        }
        s3_resp resp;
        rc = s3_request(w->s, &r, &resp, err);
        s3_resp_free(&resp);
        writer_free(w);
        return rc;
    }
    rc = w->len > 0 ? upload_part(w, err) : TM_OK;
    if (rc == TM_OK) {
        rc = complete(w, err);
    }
    if (rc != TM_OK) {
        abort_upload(w);
    }
    writer_free(w);
    return rc;
}

/* Create-only put. `If-None-Match: *` makes S3 (and Swift's s3api) answer
 * 412 instead of replacing an existing object; a HEAD first catches servers
 * that ignore the header when the object is already there, and reading the
 * object back catches a concurrent writer that such a server let win. These
 * objects are small (key records, manifests), so the extra requests are
 * cheap next to losing a backup's key. */
static int s3_put_create(void *state, const char *key, const void *buf, size_t len, tm_err *err)
{
    s3 *s = state;
    char *fk = full_key(s, key);
    if (fk == NULL) {
        return tm_err_set(err, TM_ENOMEM, "s3 put %s: out of memory", key);
    }
    char what[TM_STORAGE_KEY_MAX + 256];
    snprintf(what, sizeof(what), "%s/%s", s->bucket, fk);
    s3_resp resp;
    s3_req h = {.method = "HEAD", .key = fk, .what = what, .ok_status = {404}};
    int rc = s3_request(s, &h, &resp, err);
    if (rc != TM_OK && resp.status == 403) {
        /* A HEAD answer has no error document, so a 403 cannot say whether
         * the secret is wrong (auth) or the policy forbids it (permission):
         * let the PUT below fail with the server's own error code. */
        rc = TM_OK;
        tm_err_clear(err);
    }
    if (rc == TM_OK && resp.status != 404 && resp.status != 403) {
        rc = tm_err_set(err, TM_EEXIST,
                        "s3 PUT %s: already exists (repositories are never overwritten)", what);
    }
    s3_resp_free(&resp);
    if (rc == TM_OK) {
        s3_req r = {.method = "PUT", .key = fk, .body = buf, .body_len = len, .what = what};
        obj_headers oh;
        add_object_headers(s, &r, &oh);
        char md5[32];
        if (s->lock_mode != NULL) {
            md5_base64(buf, len, md5);
            s3_req_header(&r, "content-md5", md5);
        }
        s3_req_header(&r, "if-none-match", "*");
        rc = s3_request(s, &r, &resp, err);
        if (rc == TM_EPROTO && resp.status == 501) {
            /* Swift's s3api: "Conditional object PUTs are not supported".
             * The HEAD above and the read-back below stand in for it. */
            if (r.nh > 0 && strcmp(r.hname[r.nh - 1], "if-none-match") == 0) {
                r.nh--;
            }
            s3_resp_free(&resp);
            rc = s3_request(s, &r, &resp, err);
        }
        s3_resp_free(&resp);
        if (rc == TM_EEXIST) {
            tm_err_set(err, TM_EEXIST,
                       "s3 PUT %s: already exists (repositories are never overwritten)", what);
        }
    }
    if (rc == TM_OK) {
        s3_req g = {.method = "GET", .key = fk, .what = what};
        rc = s3_request(s, &g, &resp, err);
        if (rc == TM_OK && (resp.body.len != len || (len > 0 && memcmp(resp.body.p, buf, len)))) {
            rc = tm_err_set(err, TM_EEXIST,
                            "s3 PUT %s: another writer created the object at the same time", what);
        }
        s3_resp_free(&resp);
    }
    free(fk);
    return rc;
}

/* ---- get ---------------------------------------------------------------- */

static int fetch_chunk(s3_reader *rd, tm_err *err)
{
    s3_buf_free(&rd->chunk);
    rd->chunk_pos = 0;
    if (rd->pos >= rd->end) {
        rd->eof = 1;
        return TM_OK;
    }
    uint64_t last = rd->pos + READ_CHUNK - 1;
    if (rd->end != UINT64_MAX && last > rd->end - 1) {
        last = rd->end - 1;
    }
    char range[80];
    snprintf(range, sizeof(range), "bytes=%llu-%llu", (unsigned long long)rd->pos,
             (unsigned long long)last);
    s3_req r = {.method = "GET", .key = rd->key, .what = rd->what, .ok_status = {416}};
    s3_req_header(&r, "range", range);
    if (rd->etag[0] != '\0') {
        s3_req_header(&r, "if-match", rd->etag);
    }
    s3_resp resp;
    int rc = s3_request(rd->s, &r, &resp, err);
    if (rc != TM_OK) {
        if (resp.status == 412) {
            rc = tm_err_set(err, TM_ECORRUPT, "s3 GET %s: object changed while being read",
                            rd->what);
        }
        s3_resp_free(&resp);
        return rc;
    }
    if (resp.status == 416) {
        /* Offset at or past the end (or an empty object): nothing to read. */
        s3_resp_free(&resp);
        rd->eof = 1;
        return TM_OK;
    }
    if (rd->etag[0] == '\0') {
        snprintf(rd->etag, sizeof(rd->etag), "%s", resp.etag);
    }
    if (resp.status == 206) {
        /* "bytes a-b/total": learn the size to stop at the end. */
        const char *slash = strchr(resp.content_range, '/');
        if (slash != NULL && slash[1] != '*' && rd->end == UINT64_MAX) {
            rd->end = strtoull(slash + 1, NULL, 10);
        }
        rd->chunk = resp.body;
    } else {
        /* 200: the server sent the whole object; keep our window of it. */
        uint64_t len = resp.body.len;
        if (rd->end == UINT64_MAX || rd->end > len) {
            rd->end = len;
        }
        if (rd->pos >= rd->end) {
            s3_resp_free(&resp);
            rd->eof = 1;
            return TM_OK;
        }
        size_t n = (size_t)(rd->end - rd->pos);
        memmove(resp.body.p, resp.body.p + rd->pos, n);
        resp.body.len = n;
        rd->chunk = resp.body;
    }
    if (rd->chunk.len == 0) {
        s3_buf_free(&rd->chunk);
        rd->eof = 1;
        return TM_OK;
    }
    rd->pos += rd->chunk.len;
    return TM_OK;
}

static int s3_get_open(void *state, const char *key, uint64_t offset, uint64_t length, void **out,
                       tm_err *err)
{
    s3 *s = state;
    s3_reader *rd = calloc(1, sizeof(*rd));
    if (rd == NULL || (rd->key = full_key(s, key)) == NULL) {
        free(rd);
        return tm_err_set(err, TM_ENOMEM, "s3 get %s: out of memory", key);
    }
    rd->s = s;
    rd->pos = offset;
    rd->end = length == 0 ? UINT64_MAX : offset + length;
    snprintf(rd->what, sizeof(rd->what), "%s/%s", s->bucket, rd->key);
    /* Fetch the first range now so a missing object fails at open. */
    int rc = fetch_chunk(rd, err);
    if (rc != TM_OK) {
        free(rd->key);
        free(rd);
        return rc;
    }
    *out = rd;
    return TM_OK;
}

static int s3_read(void *rp, void *buf, size_t cap, size_t *got, tm_err *err)
{
    s3_reader *rd = rp;
    while (!rd->eof && rd->chunk_pos == rd->chunk.len) {
        int rc = fetch_chunk(rd, err);
        if (rc != TM_OK) {
            return rc;
        }
    }
    if (rd->eof && rd->chunk_pos == rd->chunk.len) {
        return TM_OK;
    }
    size_t n = rd->chunk.len - rd->chunk_pos;
    if (n > cap) {
        n = cap;
    }
    memcpy(buf, rd->chunk.p + rd->chunk_pos, n);
    rd->chunk_pos += n;
    *got = n;
    return TM_OK;
}

static void s3_get_close(void *rp)
{
    s3_reader *rd = rp;
    s3_buf_free(&rd->chunk);
    free(rd->key);
    free(rd);
}

/* ---- list / stat / delete / copy ---------------------------------------- */

/* The caller's token is the last key it got (same as posix), sent as
 * start-after; pages beyond the first inside one call follow S3's own
 * continuation tokens. */
static int s3_list(void *state, const char *prefix, const char *token, size_t max,
                   tm_storage_info **items, size_t *n, char **next, tm_err *err)
{
    s3 *s = state;
    size_t cap = 0;
    char *fprefix = full_key(s, prefix);
    char *ftoken = token ? full_key(s, token) : NULL;
    char *cont = NULL;
    char what[TM_STORAGE_KEY_MAX + 256];
    snprintf(what, sizeof(what), "%s (list %s)", s->bucket, fprefix ? fprefix : "");
    int rc = (fprefix == NULL || (token && ftoken == NULL)) ? TM_ENOMEM : TM_OK;
    int truncated = 1;
    size_t pl = strlen(s->prefix);
    while (rc == TM_OK && truncated && *n < max) {
        size_t want = max - *n < 1000 ? max - *n : 1000;
        s3_buf q = {0};
        char num[64];
        if (cont != NULL) {
            rc |= s3_buf_append(&q, "continuation-token=", 19);
            rc |= s3_uri_encode(&q, cont, 0);
            rc |= s3_buf_append(&q, "&", 1);
        }
        snprintf(num, sizeof(num), "list-type=2&max-keys=%zu&prefix=", want);
        rc |= s3_buf_append(&q, num, strlen(num));
        rc |= s3_uri_encode(&q, fprefix, 0);
        if (cont == NULL && ftoken != NULL) {
            rc |= s3_buf_append(&q, "&start-after=", 13);
            rc |= s3_uri_encode(&q, ftoken, 0);
        }
        if (rc != TM_OK) {
            s3_buf_free(&q);
            rc = TM_ENOMEM;
            break;
        }
        s3_req r = {.method = "GET", .query = q.p, .what = what};
        s3_resp resp;
        rc = s3_request(s, &r, &resp, err);
        s3_buf_free(&q);
        if (rc != TM_OK) {
            s3_resp_free(&resp);
            break;
        }
        const char *p = resp.body.p ? resp.body.p : "";
        const char *end = p + resp.body.len;
        char *tr = s3_xml_get(p, end, "IsTruncated");
        truncated = tr != NULL && strcmp(tr, "true") == 0;
        free(tr);
        free(cont);
        cont = s3_xml_get(p, end, "NextContinuationToken");
        const char *c, *nx;
        size_t cl;
        while (rc == TM_OK && s3_xml_find(p, end, "Contents", &c, &cl, &nx)) {
            char *k = s3_xml_get(c, c + cl, "Key");
            char *sz = s3_xml_get(c, c + cl, "Size");
            char *lm = s3_xml_get(c, c + cl, "LastModified");
            if (k != NULL && strncmp(k, s->prefix, pl) == 0 && k[pl] != '\0') {
                rc = tm_storage_infos_push(items, n, &cap, k + pl, sz ? strtoull(sz, NULL, 10) : 0,
                                           s3_parse_iso8601(lm));
            }
            free(k);
            free(sz);
            free(lm);
            p = nx;
        }
        s3_resp_free(&resp);
        if (truncated && cont == NULL) {
            rc = tm_err_set(err, TM_EPROTO, "s3 GET %s: truncated listing without a token", what);
        }
    }
    if (rc == TM_ENOMEM) {
        tm_err_set(err, TM_ENOMEM, "s3 list %s: out of memory", what);
    }
    if (rc == TM_OK && truncated && *n > 0) {
        *next = strdup((*items)[*n - 1].key);
        if (*next == NULL) {
            rc = tm_err_set(err, TM_ENOMEM, "s3 list %s: out of memory", what);
        }
    }
    if (rc != TM_OK) {
        tm_storage_infos_free(*items, *n);
        *items = NULL;
        *n = 0;
    }
    free(cont);
    free(fprefix);
    free(ftoken);
    return rc;
}

static int s3_stat(void *state, const char *key, tm_storage_info *info, tm_err *err)
{
    s3 *s = state;
    char *fk = full_key(s, key);
    if (fk == NULL) {
        return tm_err_set(err, TM_ENOMEM, "s3 stat %s: out of memory", key);
    }
    char what[TM_STORAGE_KEY_MAX + 256];
    snprintf(what, sizeof(what), "%s/%s", s->bucket, fk);
    s3_req r = {.method = "HEAD", .key = fk, .what = what};
    s3_resp resp;
    int rc = s3_request(s, &r, &resp, err);
    if (rc == TM_OK) {
        info->size = resp.content_length;
        info->mtime = resp.last_modified;
    }
    s3_resp_free(&resp);
    free(fk);
    return rc;
}

static int delete_batch(s3 *s, const char *const *keys, size_t n, tm_err *err)
{
    s3_buf body = {0};
    int rc = s3_buf_append(&body, "<Delete><Quiet>true</Quiet>", 27);
    for (size_t i = 0; i < n && rc == TM_OK; i++) {
        rc |= s3_buf_append(&body, "<Object><Key>", 13);
        rc |= s3_xml_escape(&body, s->prefix);
        rc |= s3_xml_escape(&body, keys[i]);
        rc |= s3_buf_append(&body, "</Key></Object>", 15);
    }
    rc |= s3_buf_append(&body, "</Delete>", 9);
    if (rc != TM_OK) {
        s3_buf_free(&body);
        return tm_err_set(err, TM_ENOMEM, "s3 delete: out of memory");
    }
    char md5[32];
    md5_base64(body.p, body.len, md5);
    char what[TM_STORAGE_KEY_MAX + 256];
    snprintf(what, sizeof(what), "%s (delete %zu keys from %s%s)", s->bucket, n, s->prefix,
             keys[0]);
    s3_req r = {
        .method = "POST", .query = "delete=", .body = body.p, .body_len = body.len, .what = what};
    s3_req_header(&r, "content-md5", md5);
    s3_resp resp;
    rc = s3_request(s, &r, &resp, err);
    if (rc == TM_OK && resp.body.p != NULL) {
        /* Per-key failures come back as <Error> elements of a 200 answer. */
        const char *p = resp.body.p, *end = resp.body.p + resp.body.len, *c, *nx;
        size_t cl;
        while (rc == TM_OK && s3_xml_find(p, end, "Error", &c, &cl, &nx)) {
            char *k = s3_xml_get(c, c + cl, "Key");
            char *code = s3_xml_get(c, c + cl, "Code");
            char *msg = s3_xml_get(c, c + cl, "Message");
            if (code == NULL || strcmp(code, "NoSuchKey") != 0) {
                rc = tm_err_set(err, code && strcmp(code, "AccessDenied") == 0 ? TM_EPERM : TM_EIO,
                                "s3 DELETE %s/%s: %s: %s", s->bucket, k ? k : "?",
                                code ? code : "Error", msg ? msg : "");
            }
            free(k);
            free(code);
            free(msg);
            p = nx;
        }
    }
    s3_resp_free(&resp);
    s3_buf_free(&body);
    return rc;
}

static int s3_del(void *state, const char *const *keys, size_t n, tm_err *err)
{
    for (size_t off = 0; off < n; off += DELETE_BATCH) {
        size_t m = n - off < DELETE_BATCH ? n - off : DELETE_BATCH;
        int rc = delete_batch(state, keys + off, m, err);
        if (rc != TM_OK) {
            return rc;
        }
    }
    return TM_OK;
}

static int s3_copy(void *state, const char *src, const char *dst, tm_err *err)
{
    s3 *s = state;
    char *fs = full_key(s, src), *fd = full_key(s, dst);
    s3_buf source = {0};
    int rc = (fs && fd) ? TM_OK : TM_ENOMEM;
    rc |= s3_buf_append(&source, "/", 1);
    rc |= s3_uri_encode(&source, s->bucket, 0);
    rc |= s3_buf_append(&source, "/", 1);
    rc |= s3_uri_encode(&source, fs ? fs : "", 1);
    if (rc != TM_OK) {
        free(fs);
        free(fd);
        s3_buf_free(&source);
        return tm_err_set(err, TM_ENOMEM, "s3 copy: out of memory");
    }
    char what[2 * TM_STORAGE_KEY_MAX + 256];
    snprintf(what, sizeof(what), "%s/%s (copy from %s)", s->bucket, fd, fs);
    s3_req r = {.method = "PUT", .key = fd, .what = what};
    s3_req_header(&r, "x-amz-copy-source", source.p);
    obj_headers oh;
    add_object_headers(s, &r, &oh);
    s3_resp resp;
    rc = s3_request(s, &r, &resp, err);
    s3_resp_free(&resp);
    s3_buf_free(&source);
    free(fs);
    free(fd);
    return rc;
}

const tm_storage_backend tm_storage_backend_s3 = {
    .name = "s3",
    .open = s3_open,
    .free = s3_free,
    .put_open = s3_put_open,
    .write = s3_write,
    .put_commit = s3_put_commit,
    .put_abort = s3_put_abort,
    .put_create = s3_put_create,
    .get_open = s3_get_open,
    .read = s3_read,
    .get_close = s3_get_close,
    .list = s3_list,
    .stat = s3_stat,
    .del = s3_del,
    .copy = s3_copy,
};
