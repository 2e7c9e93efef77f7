/*
 * s3_http.c - one signed S3 request through libcurl, with retries.
 *
 * Every body we send is in memory (single PUTs and parts are buffered by the
 * writer), so a retry simply re-sends it, and its SHA-256 goes into
 * x-amz-content-sha256 (S3 then verifies the payload too). Responses land in
 * memory as well: GETs are issued in bounded ranges by s3.c.
 *
 * Retry policy: connection failures, resets, timeouts, 5xx, 429, S3's
 * SlowDown and RequestTimeout are retried with exponential backoff and
 * jitter; any other 4xx is final, because sending it again cannot succeed.
 */
#include <curl/curl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "common/log.h"
#include "common/storage/s3/s3.h"
#include "common/util.h"

#define BACKOFF_BASE_MS 200
#define BACKOFF_CAP_MS 10000

int s3_buf_append(s3_buf *b, const void *data, size_t n)
{
    if (b->len + n + 1 > b->cap) {
        size_t nc = b->cap ? b->cap : 256;
        while (nc < b->len + n + 1) {
            nc *= 2;
        }
        char *np = realloc(b->p, nc);
        if (np == NULL) {
            return TM_ENOMEM;
        }
        b->p = np;
        b->cap = nc;
    }
    if (n > 0) {
        memcpy(b->p + b->len, data, n);
    }
    b->len += n;
    b->p[b->len] = '\0';
    return TM_OK;
}

void s3_buf_free(s3_buf *b)
{
    free(b->p);
    *b = (s3_buf){0};
}

int s3_uri_encode(s3_buf *out, const char *s, int keep_slash)
{
    static const char hex[] = "0123456789ABCDEF";
    int rc = TM_OK;
    for (const unsigned char *p = (const unsigned char *)s; *p && rc == TM_OK; p++) {
        unsigned char c = *p;
        if ((c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') ||
            c == '-' || c == '_' || c == '.' || c == '~' || (keep_slash && c == '/')) {
            rc = s3_buf_append(out, p, 1);
        } else {
            char e[3] = {'%', hex[c >> 4], hex[c & 15]};
            rc = s3_buf_append(out, e, 3);
        }
    }
    return rc;
}

void s3_req_header(s3_req *r, const char *name, const char *value)
{
    if (r->nh < S3_MAX_HEADERS) {
        r->hname[r->nh] = name;
        r->hvalue[r->nh] = value;
        r->nh++;
    }
}

void s3_resp_free(s3_resp *resp)
{
    s3_buf_free(&resp->body);
}

static CURL *handle_get(s3 *s)
{
    CURL *h = NULL;
    pthread_mutex_lock(&s->lock);
    if (s->n_idle > 0) {
        h = s->idle[--s->n_idle];
    }
    pthread_mutex_unlock(&s->lock);
    if (h == NULL) {
        h = curl_easy_init();
    } else {
        curl_easy_reset(h); /* keeps the connection cache */
    }
    return h;
}

static void handle_put(s3 *s, CURL *h)
{
    pthread_mutex_lock(&s->lock);
    if (s->n_idle < (int)(sizeof(s->idle) / sizeof(s->idle[0]))) {
        s->idle[s->n_idle++] = h;
        h = NULL;
    }
    pthread_mutex_unlock(&s->lock);
    if (h != NULL) {
        curl_easy_cleanup(h);
    }
}

void s3_http_cleanup(s3 *s)
{
    for (int i = 0; i < s->n_idle; i++) {
        curl_easy_cleanup(s->idle[i]);
    }
    s->n_idle = 0;
}

typedef struct body_src {
    const char *p;
    size_t len, pos;
} body_src;

static size_t read_cb(char *buf, size_t size, size_t nitems, void *ud)
{
    body_src *b = ud;
    size_t n = size * nitems;
    if (n > b->len - b->pos) {
        n = b->len - b->pos;
    }
    memcpy(buf, b->p + b->pos, n);
    b->pos += n;
    return n;
}

static int seek_cb(void *ud, curl_off_t offset, int origin)
{
    body_src *b = ud;
    if (origin != SEEK_SET || offset < 0 || (size_t)offset > b->len) {
        return CURL_SEEKFUNC_CANTSEEK;
    }
    b->pos = (size_t)offset;
    return CURL_SEEKFUNC_OK;
}

static size_t write_cb(char *ptr, size_t size, size_t nmemb, void *ud)
{
    s3_buf *b = ud;
    size_t n = size * nmemb;
    return s3_buf_append(b, ptr, n) == TM_OK ? n : 0;
}

/* Stall detection: abort an attempt when no byte moved either way for
 * timeout_ms. (CURLOPT_LOW_SPEED_* averages over a window, so a request whose
 * body went out fast and whose answer never comes is caught too late.) */
typedef struct progress {
    curl_off_t dl, ul;
    uint64_t last_ns;
    uint64_t limit_ns;
} progress;

static int xferinfo_cb(void *ud, curl_off_t dltotal, curl_off_t dlnow, curl_off_t ultotal,
                       curl_off_t ulnow)
{
    (void)dltotal;
    (void)ultotal;
    progress *p = ud;
    uint64_t now = tm_mono_ns();
    if (dlnow != p->dl || ulnow != p->ul) {
        p->dl = dlnow;
        p->ul = ulnow;
        p->last_ns = now;
        return 0;
    }
    return now - p->last_ns > p->limit_ns ? 1 : 0;
}

static void header_value(CURL *h, const char *name, char *out, size_t cap)
{
    struct curl_header *hd;
    out[0] = '\0';
    if (curl_easy_header(h, name, 0, CURLH_HEADER, -1, &hd) == CURLHE_OK && hd->value) {
        snprintf(out, cap, "%s", hd->value);
    }
}

static int status_retryable(long status, const char *code)
{
    if (status == 501) {
        return 0; /* NotImplemented: asking again changes nothing */
    }
    if (status >= 500 || status == 429 || status == 408) {
        return 1;
    }
    return code != NULL && (strcmp(code, "RequestTimeout") == 0 || strcmp(code, "SlowDown") == 0);
}

static int curl_retryable(CURLcode c)
{
    switch (c) {
    case CURLE_COULDNT_CONNECT:
    case CURLE_COULDNT_RESOLVE_HOST:
    case CURLE_OPERATION_TIMEDOUT:
    case CURLE_SEND_ERROR:
    case CURLE_RECV_ERROR:
    case CURLE_GOT_NOTHING:
    case CURLE_PARTIAL_FILE:
    case CURLE_SSL_CONNECT_ERROR:
    case CURLE_HTTP2:
    case CURLE_HTTP2_STREAM:
    case CURLE_WEIRD_SERVER_REPLY:
        return 1;
    default:
        return 0;
    }
}

static int status_to_code(long status, const char *s3code)
{
    if (status == 404) {
        return TM_ENOENT;
    }
    if (status == 403 || status == 401) {
        if (s3code && (strcmp(s3code, "SignatureDoesNotMatch") == 0 ||
                       strcmp(s3code, "InvalidAccessKeyId") == 0 ||
                       strcmp(s3code, "AuthorizationHeaderMalformed") == 0 ||
                       strcmp(s3code, "RequestTimeTooSkewed") == 0)) {
            return TM_EAUTH;
        }
        return TM_EPERM;
    }
    if (status == 409 || status == 412) {
        return TM_EEXIST;
    }
    if (status == 507 || (s3code && strcmp(s3code, "QuotaExceeded") == 0)) {
        return TM_ENOSPC;
    }
    if (status == 501) {
        return TM_EPROTO; /* a feature the server does not have */
    }
    /* Throttling is not an outage: the operator's fix differs (slow down). */
    if (status == 429 || (s3code && strcmp(s3code, "SlowDown") == 0)) {
        return TM_EBUSY;
    }
    if (status >= 500 || status == 429 || status == 408) {
        return TM_EUNAVAIL;
    }
    return TM_EINVAL;
}

static void backoff_sleep(int attempt)
{
    uint64_t d = BACKOFF_BASE_MS;
    for (int i = 0; i < attempt && d < BACKOFF_CAP_MS; i++) {
        d *= 2;
    }
    if (d > BACKOFF_CAP_MS) {
        d = BACKOFF_CAP_MS;
    }
    /* "Equal jitter": at least half the delay, so retries do back off, and a
     * random other half, so many clients do not retry in lockstep. */
    uint64_t ms = d / 2 + tm_rand_below(d / 2 + 1);
    struct timespec ts = {.tv_sec = (time_t)(ms / 1000), .tv_nsec = (long)(ms % 1000) * 1000000};
    nanosleep(&ts, NULL);
}

/* Build path (canonical URI) and host for the request. */
static int build_target(s3 *s, const s3_req *r, s3_buf *path, s3_buf *host)
{
    int rc = s3_buf_append(path, s->base_path, strlen(s->base_path));
    if (s->path_style) {
        rc |= s3_buf_append(host, s->host, strlen(s->host));
        rc |= s3_buf_append(path, "/", 1);
        rc |= s3_uri_encode(path, s->bucket, 0);
        if (r->key != NULL) {
            rc |= s3_buf_append(path, "/", 1);
            rc |= s3_uri_encode(path, r->key, 1);
        }
    } else {
        rc |= s3_buf_append(host, s->bucket, strlen(s->bucket));
        rc |= s3_buf_append(host, ".", 1);
        rc |= s3_buf_append(host, s->host, strlen(s->host));
        rc |= s3_buf_append(path, "/", 1);
        if (r->key != NULL) {
            rc |= s3_uri_encode(path, r->key, 1);
        }
    }
    return rc;
}

/* One attempt. Returns the CURLcode; fills resp. */
static CURLcode attempt_once(s3 *s, const s3_req *r, const char *url, const char *hostv,
                             const char *canon_path, const char *payload_hash, s3_resp *resp,
                             char *errbuf)
{
    char amz_date[17];
    time_t now = time(NULL);
    struct tm tm;
    gmtime_r(&now, &tm);
    strftime(amz_date, sizeof(amz_date), "%Y%m%dT%H%M%SZ", &tm);

    const char *hn[S3_MAX_HEADERS + 3], *hv[S3_MAX_HEADERS + 3];
    int nh = 0;
    hn[nh] = "host";
    hv[nh++] = hostv;
    hn[nh] = "x-amz-content-sha256";
    hv[nh++] = payload_hash;
    hn[nh] = "x-amz-date";
    hv[nh++] = amz_date;
    for (int i = 0; i < r->nh; i++) {
        hn[nh] = r->hname[i];
        hv[nh++] = r->hvalue[i];
    }
    char auth[1024];
    if (s3_sigv4_authorization(s, r->method, canon_path, r->query, hn, hv, nh, payload_hash,
                               amz_date, auth, sizeof(auth)) != TM_OK) {
        snprintf(errbuf, CURL_ERROR_SIZE, "cannot sign request");
        return CURLE_FAILED_INIT;
    }

    CURL *h = handle_get(s);
    if (h == NULL) {
        snprintf(errbuf, CURL_ERROR_SIZE, "curl_easy_init failed");
        return CURLE_FAILED_INIT;
    }
    struct curl_slist *hdrs = NULL;
    char line[2048];
    for (int i = 0; i < nh; i++) {
        snprintf(line, sizeof(line), "%s: %s", hn[i], hv[i]);
        hdrs = curl_slist_append(hdrs, line);
    }
    snprintf(line, sizeof(line), "Authorization: %s", auth);
    hdrs = curl_slist_append(hdrs, line);
    hdrs = curl_slist_append(hdrs, "Expect:");
    hdrs = curl_slist_append(hdrs, "Content-Type:");

    body_src src = {.p = r->body, .len = r->body_len};
    curl_easy_setopt(h, CURLOPT_URL, url);
    curl_easy_setopt(h, CURLOPT_HTTPHEADER, hdrs);
    curl_easy_setopt(h, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(h, CURLOPT_ERRORBUFFER, errbuf);
    curl_easy_setopt(h, CURLOPT_CONNECTTIMEOUT_MS, (long)s->timeout_ms);
    /* A stall (no byte for timeout_ms) ends the attempt; a big transfer
     * that keeps moving is never cut by a total deadline. */
    progress prog = {.last_ns = tm_mono_ns(), .limit_ns = (uint64_t)s->timeout_ms * 1000000ULL};
    curl_easy_setopt(h, CURLOPT_NOPROGRESS, 0L);
    curl_easy_setopt(h, CURLOPT_XFERINFOFUNCTION, xferinfo_cb);
    curl_easy_setopt(h, CURLOPT_XFERINFODATA, &prog);
    curl_easy_setopt(h, CURLOPT_TCP_KEEPALIVE, 1L);
    curl_easy_setopt(h, CURLOPT_WRITEFUNCTION, write_cb);
    curl_easy_setopt(h, CURLOPT_WRITEDATA, &resp->body);
    if (s->ca_file != NULL) {
        curl_easy_setopt(h, CURLOPT_CAINFO, s->ca_file);
    }
    curl_easy_setopt(h, CURLOPT_SSL_VERIFYPEER, s->verify_tls ? 1L : 0L);
    curl_easy_setopt(h, CURLOPT_SSL_VERIFYHOST, s->verify_tls ? 2L : 0L);

    if (strcmp(r->method, "HEAD") == 0) {
        curl_easy_setopt(h, CURLOPT_NOBODY, 1L);
    } else if (strcmp(r->method, "GET") == 0) {
        curl_easy_setopt(h, CURLOPT_HTTPGET, 1L);
    } else if (strcmp(r->method, "DELETE") == 0 && r->body == NULL) {
        curl_easy_setopt(h, CURLOPT_CUSTOMREQUEST, "DELETE");
    } else {
        /* PUT and POST: upload from memory, with Content-Length. */
        curl_easy_setopt(h, CURLOPT_UPLOAD, 1L);
        curl_easy_setopt(h, CURLOPT_READFUNCTION, read_cb);
        curl_easy_setopt(h, CURLOPT_READDATA, &src);
        curl_easy_setopt(h, CURLOPT_SEEKFUNCTION, seek_cb);
        curl_easy_setopt(h, CURLOPT_SEEKDATA, &src);
        curl_easy_setopt(h, CURLOPT_INFILESIZE_LARGE, (curl_off_t)r->body_len);
        if (strcmp(r->method, "PUT") != 0) {
            curl_easy_setopt(h, CURLOPT_CUSTOMREQUEST, r->method);
        }
    }

    CURLcode cc = curl_easy_perform(h);
    if (cc == CURLE_ABORTED_BY_CALLBACK) {
        snprintf(errbuf, CURL_ERROR_SIZE, "no progress for %d ms", s->timeout_ms);
        cc = CURLE_OPERATION_TIMEDOUT;
    }
    if (cc == CURLE_OK) {
        curl_easy_getinfo(h, CURLINFO_RESPONSE_CODE, &resp->status);
        curl_off_t cl = -1;
        curl_easy_getinfo(h, CURLINFO_CONTENT_LENGTH_DOWNLOAD_T, &cl);
        resp->have_content_length = cl >= 0;
        resp->content_length = cl >= 0 ? (uint64_t)cl : 0;
        header_value(h, "ETag", resp->etag, sizeof(resp->etag));
        header_value(h, "Content-Range", resp->content_range, sizeof(resp->content_range));
        char lm[128];
        header_value(h, "Last-Modified", lm, sizeof(lm));
        resp->last_modified = lm[0] ? (int64_t)curl_getdate(lm, NULL) : 0;
        if (resp->last_modified < 0) {
            resp->last_modified = 0;
        }
        handle_put(s, h);
    } else {
        /* The connection may be in any state: do not reuse this handle. */
        curl_easy_cleanup(h);
    }
    curl_slist_free_all(hdrs);
    return cc;
}

int s3_request(s3 *s, const s3_req *r, s3_resp *resp, tm_err *err)
{
    memset(resp, 0, sizeof(*resp));
    s3_buf path = {0}, host = {0}, url = {0};
    int rc = build_target(s, r, &path, &host);
    rc |= s3_buf_append(&url, s->scheme, strlen(s->scheme));
    rc |= s3_buf_append(&url, "://", 3);
    rc |= s3_buf_append(&url, host.p, host.len);
    rc |= s3_buf_append(&url, path.p, path.len);
    if (r->query != NULL && r->query[0] != '\0') {
        rc |= s3_buf_append(&url, "?", 1);
        rc |= s3_buf_append(&url, r->query, strlen(r->query));
    }
    if (rc != TM_OK) {
        s3_buf_free(&path);
        s3_buf_free(&host);
        s3_buf_free(&url);
        return tm_err_set(err, TM_ENOMEM, "s3 %s %s: out of memory", r->method, r->what);
    }
    char payload_hash[65];
    tm_sha256_hex(r->body ? r->body : "", r->body ? r->body_len : 0, payload_hash);

    int max_attempts = s->max_retries + 1;
    for (int attempt = 0;; attempt++) {
        char errbuf[CURL_ERROR_SIZE] = "";
        s3_resp_free(resp);
        memset(resp, 0, sizeof(*resp));
        CURLcode cc = attempt_once(s, r, url.p, host.p, path.p, payload_hash, resp, errbuf);
        int last = attempt + 1 >= max_attempts;
        if (cc != CURLE_OK) {
            int retry = curl_retryable(cc);
            if (retry && !last) {
                tm_warn("s3", "op=%s what=%s attempt=%d error=\"%s\" retrying", r->method, r->what,
                        attempt + 1, errbuf[0] ? errbuf : curl_easy_strerror(cc));
                backoff_sleep(attempt);
                continue;
            }
            int code = cc == CURLE_OPERATION_TIMEDOUT ? TM_ETIMEDOUT : retry ? TM_EUNAVAIL : TM_EIO;
            rc = tm_err_set(err, code, "s3 %s %s: %s (after %d attempt%s)", r->method, r->what,
                            errbuf[0] ? errbuf : curl_easy_strerror(cc), attempt + 1,
                            attempt ? "s" : "");
            break;
        }
        const char *bend = resp->body.p ? resp->body.p + resp->body.len : NULL;
        int ok = resp->status >= 200 && resp->status < 300;
        for (int i = 0; i < 4; i++) {
            if (r->ok_status[i] != 0 && r->ok_status[i] == resp->status) {
                ok = 1;
            }
        }
        char *code = NULL, *msg = NULL;
        /* CompleteMultipartUpload and CopyObject can answer 200 with an
         * <Error> document: that is a failure, and InternalError is retried. */
        if (resp->status == 200 && resp->body.p != NULL && strcmp(r->method, "GET") != 0 &&
            strstr(resp->body.p, "<Error>") != NULL) {
            code = s3_xml_get(resp->body.p, bend, "Code");
            msg = s3_xml_get(resp->body.p, bend, "Message");
            ok = 0;
            resp->status =
                (code && (strcmp(code, "InternalError") == 0 || strcmp(code, "SlowDown") == 0))
                    ? 500
                    : 400;
        }
        if (ok) {
            rc = TM_OK;
            break;
        }
        if (code == NULL && resp->body.p != NULL) {
            code = s3_xml_get(resp->body.p, bend, "Code");
            msg = s3_xml_get(resp->body.p, bend, "Message");
        }
        if (status_retryable(resp->status, code) && !last) {
            tm_warn("s3", "op=%s what=%s attempt=%d status=%ld code=%s retrying", r->method,
                    r->what, attempt + 1, resp->status, code ? code : "-");
            free(code);
            free(msg);
            backoff_sleep(attempt);
            continue;
        }
        const char *hint = "";
        int tc = status_to_code(resp->status, code);
        if (tc == TM_EAUTH) {
            hint = " (check the access key and secret key)";
        } else if (tc == TM_EBUSY) {
            hint = " (the server throttles requests)";
        } else if (tc == TM_EPERM && code == NULL) {
            /* HEAD answers carry no error document, so a wrong secret and a
             * missing permission look alike here. */
            hint = " (a wrong access key or secret key, or no permission: check both and the "
                   "bucket policy)";
        }
        rc = tm_err_set(err, tc, "s3 %s %s: %ld %s%s%s%s%s", r->method, r->what, resp->status,
                        code ? code : (resp->status == 404 ? "NotFound" : "Error"), msg ? ": " : "",
                        msg ? msg : "", hint, attempt ? " (retries exhausted)" : "");
        free(code);
        free(msg);
        break;
    }
    s3_buf_free(&path);
    s3_buf_free(&host);
    s3_buf_free(&url);
    return rc;
}
