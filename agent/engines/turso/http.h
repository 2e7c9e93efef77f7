/*
 * http.h - the Turso engine's one HTTP client (libcurl), for the Platform
 * API and the databases' own endpoints alike. Bearer tokens go in a header
 * and never into a message or a log line.
 *
 * Verdicts by status, so every caller's error reads the same:
 *   401/403 -> TM_EAUTH  "<what>: Turso refused the token (HTTP 401: ...)"
 *   404     -> TM_ENOENT, 409 -> TM_EEXIST, other 4xx -> TM_EINVAL (final)
 *   429     -> retried after its Retry-After (seconds or an HTTP date; capped
 *              by the request budget), TM_EUNAVAIL once retries run out
 *   5xx, connection errors, timeouts -> retried with exponential backoff
 *              and jitter, then TM_EUNAVAIL / TM_ETIMEDOUT (retryable)
 */
#ifndef TM_TURSO_HTTP_H
#define TM_TURSO_HTTP_H

#include <stddef.h>
#include <stdint.h>

#include "agent/engine.h"
#include "common/err.h"

typedef struct tm_turso_http tm_turso_http;

typedef struct tm_turso_resp {
    long status;
    char *body; /* NUL-terminated; malloc'd */
    size_t len;
} tm_turso_resp;

/* timeout_ms: one attempt; retries: attempts after the first. */
int tm_turso_http_new(uint32_t timeout_ms, uint32_t retries, tm_turso_http **out, tm_err *err);
void tm_turso_http_free(tm_turso_http *h);
/* Cancellation between attempts and during transfers (may be NULL). */
void tm_turso_http_set_ctx(tm_turso_http *h, tm_task_ctx *ctx);
/* Retries done and milliseconds waited for them so far (for reports). */
void tm_turso_http_stats(const tm_turso_http *h, uint32_t *retries, uint64_t *waited_ms);

/* One request; body (JSON) may be NULL. TM_OK only for a 2xx status, with
 * the answer in *resp (free with tm_turso_resp_free). what names the call
 * in messages ("list databases of acme"). */
int tm_turso_http_call(tm_turso_http *h, const char *method, const char *url, const char *token,
                       const char *body, const char *what, tm_turso_resp *resp, tm_err *err);
void tm_turso_resp_free(tm_turso_resp *r);

/* A streamed GET: fn receives the body of a 2xx answer as it arrives. An
 * attempt is retried only while no byte has reached fn. */
typedef int (*tm_turso_sink_fn)(void *arg, const void *buf, size_t len, tm_err *err);
int tm_turso_http_stream(tm_turso_http *h, const char *url, const char *token, const char *what,
                         tm_turso_sink_fn fn, void *arg, uint64_t *bytes, tm_err *err);

#endif
