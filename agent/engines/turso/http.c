/*
 * http.c - the Turso engine's HTTP client (http.h).
 */
#include "agent/engines/turso/http.h"

#include <curl/curl.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

#include "agent/engines/turso/json.h"
#include "common/log.h"
#include "common/util.h"

#define BACKOFF_BASE_MS 250
#define BACKOFF_CAP_MS 15000
/* Longest Retry-After honoured; a longer one fails the call now with the
 * server's figure in the message rather than holding a task for an hour. */
#define RETRY_AFTER_CAP_S 300

struct tm_turso_http {
    CURL *c;
    uint32_t timeout_ms, retries;
    tm_task_ctx *ctx;
    uint32_t done_retries;
    uint64_t waited_ms;
};

static pthread_once_t curl_once = PTHREAD_ONCE_INIT;

static void curl_init_once(void)
{
    curl_global_init(CURL_GLOBAL_DEFAULT);
}

int tm_turso_http_new(uint32_t timeout_ms, uint32_t retries, tm_turso_http **out, tm_err *err)
{
    pthread_once(&curl_once, curl_init_once);
    tm_turso_http *h = calloc(1, sizeof(*h));
    if (h == NULL || (h->c = curl_easy_init()) == NULL) {
        free(h);
        return tm_err_set(err, TM_ENOMEM, "turso: cannot create an HTTP client");
    }
    h->timeout_ms = timeout_ms ? timeout_ms : 60000;
    h->retries = retries;
    *out = h;
    return TM_OK;
}

void tm_turso_http_free(tm_turso_http *h)
{
    if (h != NULL) {
        curl_easy_cleanup(h->c);
        free(h);
    }
}

void tm_turso_http_set_ctx(tm_turso_http *h, tm_task_ctx *ctx)
{
    h->ctx = ctx;
}

void tm_turso_http_stats(const tm_turso_http *h, uint32_t *retries, uint64_t *waited_ms)
{
    *retries = h->done_retries;
    *waited_ms = h->waited_ms;
}

void tm_turso_resp_free(tm_turso_resp *r)
{
    free(r->body);
    *r = (tm_turso_resp){0};
}

/* One attempt's state. */
typedef struct xfer {
    tm_turso_http *h;
    char *buf;
    size_t len, cap, limit;
    tm_turso_sink_fn fn; /* streaming: 2xx bodies go here */
    void *arg;
    uint64_t delivered;
    long status;
    int64_t retry_after_s; /* -1 = none */
    tm_err sink_err;
    int sink_failed, cancelled;
} xfer;

static size_t on_header(char *p, size_t size, size_t n, void *arg)
{
    xfer *x = arg;
    size_t len = size * n;
    if (len > 12 && strncasecmp(p, "retry-after:", 12) == 0) {
        char v[128];
        size_t k = len - 12 < sizeof(v) - 1 ? len - 12 : sizeof(v) - 1;
        memcpy(v, p + 12, k);
        v[k] = '\0';
        char *s = v;
        while (*s == ' ' || *s == '\t') {
            s++;
        }
        s[strcspn(s, "\r\n")] = '\0';
        char *end = NULL;
        long long secs = strtoll(s, &end, 10);
        if (end != s && *end == '\0' && secs >= 0) {
            x->retry_after_s = secs;
        } else {
            time_t when = curl_getdate(s, NULL);
            if (when > 0) {
                int64_t d = (int64_t)when - tm_now_s();
                x->retry_after_s = d > 0 ? d : 0;
            }
        }
    }
    return len;
}

static size_t on_body(char *p, size_t size, size_t n, void *arg)
{
    xfer *x = arg;
    size_t len = size * n;
    if (x->status == 0) {
        curl_easy_getinfo(x->h->c, CURLINFO_RESPONSE_CODE, &x->status);
    }
    if (x->fn != NULL && x->status >= 200 && x->status < 300) {
        if (x->h->ctx != NULL && tm_task_cancelled(x->h->ctx)) {
            x->cancelled = 1;
            return 0;
        }
        if (x->fn(x->arg, p, len, &x->sink_err) != TM_OK) {
            x->sink_failed = 1;
            return 0;
        }
        x->delivered += len;
        return len;
    }
    if (x->len + len + 1 > x->cap) {
        if (x->len + len + 1 > x->limit) {
            return 0; /* an answer this large is not one of ours */
        }
        size_t nc = x->cap ? x->cap * 2 : 4096;
        while (nc < x->len + len + 1) {
            nc *= 2;
        }
        char *nb = realloc(x->buf, nc);
        if (nb == NULL) {
            return 0;
        }
        x->buf = nb;
        x->cap = nc;
    }
    memcpy(x->buf + x->len, p, len);
    x->len += len;
    x->buf[x->len] = '\0';
    return len;
}

static int on_progress(void *arg, curl_off_t dt, curl_off_t dn, curl_off_t ut, curl_off_t un)
{
    (void)dt;
    (void)dn;
    (void)ut;
    (void)un;
    xfer *x = arg;
    if (x->h->ctx != NULL && tm_task_cancelled(x->h->ctx)) {
        x->cancelled = 1;
        return 1;
    }
    return 0;
}

/* The "error" (or "message") of a JSON error answer, else the start of the body. */
static void server_msg(const xfer *x, char *out, size_t cap)
{
    out[0] = '\0';
    if (x->buf == NULL || x->len == 0) {
        return;
    }
    tm_tj *j = NULL;
    tm_err e = {0};
    if (tm_tj_parse(x->buf, x->len, &j, &e) == TM_OK) {
        const tm_tj *m = tm_tj_get(j, "error");
        if (m != NULL && m->type == TM_TJ_OBJ) {
            m = tm_tj_get(m, "message");
        }
        if (m == NULL) {
            m = tm_tj_get(j, "message");
        }
        if (tm_tj_str(m) != NULL) {
            snprintf(out, cap, "%.200s", tm_tj_str(m));
        }
        tm_tj_free(j);
    }
    if (out[0] == '\0') {
        snprintf(out, cap, "%.120s", x->buf);
        for (char *c = out; *c; c++) {
            if ((unsigned char)*c < 0x20) {
                *c = ' ';
            }
        }
    }
}

static uint64_t backoff_ms(uint32_t attempt)
{
    uint64_t d = (uint64_t)BACKOFF_BASE_MS << (attempt < 10 ? attempt : 10);
    if (d > BACKOFF_CAP_MS) {
        d = BACKOFF_CAP_MS;
    }
    return d / 2 + tm_rand_below(d / 2 + 1);
}

/* Sleep ms in slices, stopping early on cancellation; 1 = cancelled. */
static int nap(tm_turso_http *h, uint64_t ms)
{
    uint64_t t0 = tm_mono_ns();
    while ((tm_mono_ns() - t0) / 1000000 < ms) {
        if (h->ctx != NULL && tm_task_cancelled(h->ctx)) {
            return 1;
        }
        uint64_t left = ms - (tm_mono_ns() - t0) / 1000000;
        usleep((useconds_t)(left > 100 ? 100000 : left * 1000 + 1));
    }
    h->waited_ms += ms;
    return 0;
}

static int request(tm_turso_http *h, const char *method, const char *url, const char *token,
                   const char *body, const char *what, tm_turso_sink_fn fn, void *arg,
                   tm_turso_resp *resp, uint64_t *bytes, tm_err *err)
{
    char auth[8192];
    if (token != NULL && strlen(token) + 32 > sizeof(auth)) {
        return tm_err_set(err, TM_EINVAL, "%s: the token is too long", what);
    }
    /* A token goes into a header line: no control character may end it
     * early and smuggle another header in (a secret file, or an answer). */
    for (const char *p = token; p != NULL && *p != '\0'; p++) {
        if ((unsigned char)*p < 0x20 || *p == 0x7f) {
            return tm_err_set(err, TM_EINVAL, "%s: the token holds a control character", what);
        }
    }
    for (uint32_t attempt = 0;; attempt++) {
        xfer x = {.h = h, .fn = fn, .arg = arg, .limit = 64u << 20, .retry_after_s = -1};
        struct curl_slist *hdrs = NULL;
        if (token != NULL) {
            snprintf(auth, sizeof(auth), "Authorization: Bearer %s", token);
            hdrs = curl_slist_append(hdrs, auth);
        }
        if (body != NULL) {
            hdrs = curl_slist_append(hdrs, "Content-Type: application/json");
        }
        hdrs = curl_slist_append(hdrs, "User-Agent: tidemark-agent");
        char errbuf[CURL_ERROR_SIZE] = "";
        CURL *c = h->c;
        curl_easy_reset(c);
        curl_easy_setopt(c, CURLOPT_URL, url);
        curl_easy_setopt(c, CURLOPT_HTTPHEADER, hdrs);
        curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L);
        curl_easy_setopt(c, CURLOPT_ERRORBUFFER, errbuf);
        curl_easy_setopt(c, CURLOPT_CONNECTTIMEOUT_MS, (long)h->timeout_ms);
        /* A dump may take long: bound stalls, not the whole transfer. */
        if (fn != NULL) {
            curl_easy_setopt(c, CURLOPT_LOW_SPEED_LIMIT, 1L);
            curl_easy_setopt(c, CURLOPT_LOW_SPEED_TIME, (long)(h->timeout_ms / 1000));
        } else {
            curl_easy_setopt(c, CURLOPT_TIMEOUT_MS, (long)h->timeout_ms);
        }
        curl_easy_setopt(c, CURLOPT_HEADERFUNCTION, on_header);
        curl_easy_setopt(c, CURLOPT_HEADERDATA, &x);
        curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, on_body);
        curl_easy_setopt(c, CURLOPT_WRITEDATA, &x);
        curl_easy_setopt(c, CURLOPT_NOPROGRESS, 0L);
        curl_easy_setopt(c, CURLOPT_XFERINFOFUNCTION, on_progress);
        curl_easy_setopt(c, CURLOPT_XFERINFODATA, &x);
        curl_easy_setopt(c, CURLOPT_PROTOCOLS_STR, "http,https");
        if (body != NULL) {
            curl_easy_setopt(c, CURLOPT_POSTFIELDS, body);
            curl_easy_setopt(c, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)strlen(body));
        }
        if (strcmp(method, "GET") != 0 && strcmp(method, "POST") != 0) {
            curl_easy_setopt(c, CURLOPT_CUSTOMREQUEST, method);
        } else if (strcmp(method, "POST") == 0 && body == NULL) {
            curl_easy_setopt(c, CURLOPT_POSTFIELDS, "");
        }
        CURLcode cc = curl_easy_perform(c);
        curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &x.status);
        curl_slist_free_all(hdrs);
        if (bytes != NULL) {
            *bytes = x.delivered;
        }
        int rc = TM_OK, retry = 0;
        char msg[256];
        if (x.cancelled) {
            rc = tm_err_set(err, TM_EBUSY, "%s: cancelled", what);
        } else if (x.sink_failed) {
            rc = tm_err_set(err, x.sink_err.code, "%s", x.sink_err.msg);
        } else if (cc != CURLE_OK) {
            rc = tm_err_set(err, cc == CURLE_OPERATION_TIMEDOUT ? TM_ETIMEDOUT : TM_EUNAVAIL,
                            "%s: %s (%s)", what, errbuf[0] ? errbuf : curl_easy_strerror(cc),
                            x.delivered > 0 ? "the transfer broke after it started"
                                            : "cannot reach the server");
            retry = x.delivered == 0;
        } else if (x.status >= 200 && x.status < 300) {
            if (resp != NULL) {
                resp->status = x.status;
                resp->body = x.buf != NULL ? x.buf : strdup("");
                resp->len = x.len;
                x.buf = NULL;
            }
        } else {
            server_msg(&x, msg, sizeof(msg));
            long s = x.status;
            if (s == 401 || s == 403) {
                rc = tm_err_set(err, TM_EAUTH,
                                "%s: Turso refused the token (HTTP %ld: %s); check the "
                                "api_token of this target (revoked, expired, or of another "
                                "organization)",
                                what, s, msg);
            } else if (s == 404) {
                rc = tm_err_set(err, TM_ENOENT, "%s: not found (HTTP 404: %s)", what, msg);
            } else if (s == 409) {
                rc = tm_err_set(err, TM_EEXIST, "%s: already exists (HTTP 409: %s)", what, msg);
            } else if (s == 429) {
                rc = tm_err_set(err, TM_EUNAVAIL,
                                "%s: rate limited by Turso (HTTP 429: %s) after %u attempts", what,
                                msg, attempt + 1);
                retry = 1;
            } else if (s >= 500) {
                rc = tm_err_set(err, TM_EUNAVAIL, "%s: Turso answered HTTP %ld (%s)", what, s, msg);
                retry = 1;
            } else {
                rc = tm_err_set(err, TM_EINVAL, "%s: refused (HTTP %ld: %s)", what, s, msg);
            }
        }
        free(x.buf);
        if (rc == TM_OK || !retry || attempt >= h->retries) {
            return rc;
        }
        uint64_t wait = backoff_ms(attempt);
        if (x.retry_after_s >= 0) {
            if (x.retry_after_s > RETRY_AFTER_CAP_S) {
                return tm_err_set(err, TM_EUNAVAIL,
                                  "%s: Turso asks to retry after %" PRId64 " s (longer than %d s); "
                                  "giving up for now",
                                  what, x.retry_after_s, RETRY_AFTER_CAP_S);
            }
            wait = (uint64_t)x.retry_after_s * 1000;
        }
        tm_warn("turso",
                "event=retry what=\"%s\" status=%ld attempt=%u wait_ms=%" PRIu64
                " retry_after=%" PRId64,
                what, x.status, attempt + 1, wait, x.retry_after_s);
        h->done_retries++;
        if (nap(h, wait)) {
            return tm_err_set(err, TM_EBUSY, "%s: cancelled", what);
        }
    }
}

int tm_turso_http_call(tm_turso_http *h, const char *method, const char *url, const char *token,
                       const char *body, const char *what, tm_turso_resp *resp, tm_err *err)
{
    tm_turso_resp tmp = {0};
    int rc = request(h, method, url, token, body, what, NULL, NULL, resp ? resp : &tmp, NULL, err);
    tm_turso_resp_free(&tmp);
    return rc;
}

int tm_turso_http_stream(tm_turso_http *h, const char *url, const char *token, const char *what,
                         tm_turso_sink_fn fn, void *arg, uint64_t *bytes, tm_err *err)
{
    tm_turso_resp tmp = {0};
    int rc = request(h, "GET", url, token, NULL, what, fn, arg, &tmp, bytes, err);
    tm_turso_resp_free(&tmp);
    return rc;
}
