/*
 * s3.h - private interfaces of the S3 backend (common/storage/s3/).
 *
 *   s3.c        the tm_storage_backend ops: put (single / multipart), get,
 *               list, stat, delete, copy
 *   s3_http.c   one signed request with libcurl, retries with backoff
 *   s3_sigv4.c  AWS Signature Version 4 (OpenSSL HMAC), our own so that
 *               canonicalisation does not depend on the libcurl version
 *   s3_xml.c    a small tolerant extractor for S3's XML responses
 */
#ifndef TM_S3_H
#define TM_S3_H

#include <pthread.h>
#include <stddef.h>
#include <stdint.h>

#include "common/err.h"
#include "common/storage.h"

typedef struct s3 {
    char *scheme;    /* "http" | "https" */
    char *host;      /* host[:port] of the endpoint, as sent in Host: */
    char *base_path; /* endpoint path, "" or "/x" (rare) */
    char *bucket;
    char *region;
    char *prefix; /* "" or "a/b/" (always ends with '/') */
    char *access_key;
    char *secret_key;
    char *ca_file;
    int verify_tls;
    int path_style;
    char *sse;
    char *sse_kms_key_id;
    char *storage_class;
    char *lock_mode;
    int64_t lock_days;
    int max_retries;
    int timeout_ms;
    size_t part_size;

    /* Idle curl handles, reused so connections stay alive between requests. */
    pthread_mutex_t lock;
    void *idle[8];
    int n_idle;
} s3;

/* A growable byte buffer. */
typedef struct s3_buf {
    char *p;
    size_t len, cap;
} s3_buf;

int s3_buf_append(s3_buf *b, const void *data, size_t n);
void s3_buf_free(s3_buf *b);

#define S3_MAX_HEADERS 16

typedef struct s3_req {
    const char *method; /* GET PUT POST DELETE HEAD */
    const char *key;    /* object key inside the bucket (prefix applied), NULL = bucket */
    const char *query;  /* canonical query: sorted, encoded, "a=1&b=" or NULL */
    /* Extra headers, lowercase names, signed. */
    const char *hname[S3_MAX_HEADERS];
    const char *hvalue[S3_MAX_HEADERS];
    int nh;
    const void *body; /* request body (in memory), may be NULL */
    size_t body_len;
    /* What to name in error messages, e.g. "bucket/key". */
    const char *what;
    /* Statuses that are an expected answer, not an error (e.g. 404 for HEAD). */
    int ok_status[4];
} s3_req;

typedef struct s3_resp {
    long status;
    s3_buf body;
    uint64_t content_length;
    int have_content_length;
    char etag[128];
    char content_range[128];
    int64_t last_modified;
} s3_resp;

void s3_req_header(s3_req *r, const char *name, const char *value);

/* Perform r with retries. On return TM_OK, resp->status is 2xx or listed in
 * ok_status. Otherwise err names method, what, status and S3 error code.
 * resp must be freed with s3_resp_free in both cases. */
int s3_request(s3 *s, const s3_req *r, s3_resp *resp, tm_err *err);
void s3_resp_free(s3_resp *resp);
void s3_http_cleanup(s3 *s);

/* URI-encode (RFC 3986 unreserved kept); keep '/' if keep_slash. */
int s3_uri_encode(s3_buf *out, const char *s, int keep_slash);

/* SigV4: compute the Authorization header value. headers are "name:value"
 * lowercase-name pairs, already trimmed; they are sorted here. */
int s3_sigv4_authorization(const s3 *s, const char *method, const char *canonical_uri,
                           const char *canonical_query, const char *const *hname,
                           const char *const *hvalue, int nh, const char *payload_sha256,
                           const char *amz_date, char *out, size_t cap);

/* XML: find the next <tag>...</tag> in [p, end); returns content span.
 * Returns 1 if found, with *next after the closing tag. */
int s3_xml_find(const char *p, const char *end, const char *tag, const char **content, size_t *len,
                const char **next);
/* Decode entities of a span into a malloc'd string. */
char *s3_xml_text(const char *content, size_t len);
/* Convenience: text of the first <tag> in [p, end), malloc'd, or NULL. */
char *s3_xml_get(const char *p, const char *end, const char *tag);
/* Escape text for an XML body. */
int s3_xml_escape(s3_buf *out, const char *s);
/* Parse "2009-10-12T17:50:30.000Z". */
int64_t s3_parse_iso8601(const char *s);

#endif
