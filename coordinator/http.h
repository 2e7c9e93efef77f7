/*
 * http.h - the coordinator's HTTP endpoint: GET /metrics and GET /healthz.
 *
 * Served by nng's own HTTP server (no extra dependency); this module is the
 * only place that touches it. Plain http only: the endpoint exposes no
 * secrets and is meant to be bound to a private or loopback address.
 */
#ifndef TM_HTTP_H
#define TM_HTTP_H

#include <stddef.h>

#include "common/err.h"
#include "common/metrics.h"

typedef struct tm_http tm_http;

/* Returns 0 if healthy; otherwise fills msg (why, one line) and returns
 * non-zero. Called from nng's I/O threads, one call per request: it must be
 * quick and thread-safe. */
typedef int (*tm_http_health_fn)(void *arg, char *msg, size_t cap);

/* url like "http://127.0.0.1:9187" (port 0 picks a free port; see
 * tm_http_port). Serves GET /metrics (text/plain; version=0.0.4;
 * charset=utf-8) and GET /healthz (200 "ok\n" or 503 "<msg>\n"); HEAD works
 * too. Other paths 404, other methods 405. health may be NULL (always ok).
 * m and arg must outlive the server. Errors name the URL and the reason:
 * "http listen http://127.0.0.1:9187: Address in use". */
int tm_http_new(tm_http **out, const char *url, tm_metrics *m, tm_http_health_fn health, void *arg,
                tm_err *err);

/* The actual bound port (useful when url has port 0). */
int tm_http_port(tm_http *h);

/* Stops listening and waits until no request handler is running, so m and
 * arg may be freed right after. NULL is a no-op. */
void tm_http_free(tm_http *h);

#endif
