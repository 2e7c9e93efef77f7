/*
 * http.h - /metrics and /healthz on nng's HTTP server (the only file that
 * touches nng's HTTP API is http.c).
 */
#ifndef TM_HTTP_H
#define TM_HTTP_H

#include <stddef.h>

#include "common/err.h"
#include "common/metrics.h"

typedef struct tm_http tm_http;

/* Returns 0 if healthy; otherwise fills msg (why) and returns non-zero. */
typedef int (*tm_http_health_fn)(void *arg, char *msg, size_t cap);

/* url like "http://127.0.0.1:9187". Serves GET /metrics and GET /healthz. */
int tm_http_new(tm_http **out, const char *url, tm_metrics *m, tm_http_health_fn health, void *arg,
                tm_err *err);
int tm_http_port(tm_http *h);
void tm_http_free(tm_http *h);

#endif
