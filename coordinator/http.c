/*
 * http.c - /metrics and /healthz on nng's HTTP server.
 *
 * nng keeps one server object per host:port and hands out references
 * (nng_http_server_hold); handlers are registered on it and run on nng's I/O
 * threads. Both handlers here are synchronous: they build the whole response
 * and finish the aio before returning, so once nng_http_server_stop() has
 * drained the connections nothing can call back into a freed tm_http.
 */
#include "coordinator/http.h"

#include <arpa/inet.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <nng/nng.h>
#include <nng/supplemental/http/http.h>

#include "common/log.h"

#define TM_HTTP_METRICS_CTYPE "text/plain; version=0.0.4; charset=utf-8"
#define TM_HTTP_TEXT_CTYPE "text/plain; charset=utf-8"
#define TM_HTTP_HEALTH_MSG_MAX 512

struct tm_http {
    nng_http_server *srv;
    nng_http_handler *metrics; /* NULL until registered */
    nng_http_handler *healthz;
    tm_metrics *m;
    tm_http_health_fn health;
    void *arg;
    int port;
    bool started;
};

/* Finish the request with a complete response. On failure to even build
 * one, failing the aio makes nng drop the connection, which a scraper reports
 * as a scrape error: the right signal. */
static void reply(nng_aio *aio, uint16_t status, const char *ctype, const void *body, size_t len)
{
    nng_http_res *res = NULL;
    int rv;
    if ((rv = nng_http_res_alloc(&res)) != 0 || (rv = nng_http_res_set_status(res, status)) != 0 ||
        (rv = nng_http_res_set_header(res, "Content-Type", ctype)) != 0 ||
        (rv = nng_http_res_set_header(res, "Cache-Control", "no-store")) != 0 ||
        /* nng 1.5 fails copy_data for 0 bytes (nni_alloc(0) is NULL), and an
         * empty registry renders "": leave the body unset instead. */
        (len > 0 && (rv = nng_http_res_copy_data(res, body, len)) != 0)) {
        nng_http_res_free(res);
        nng_aio_finish(aio, rv);
        return;
    }
    nng_aio_set_output(aio, 0, res);
    nng_aio_finish(aio, 0);
}

static tm_http *handler_self(nng_aio *aio)
{
    return nng_http_handler_get_data(nng_aio_get_input(aio, 1));
}

static void handle_metrics(nng_aio *aio)
{
    tm_http *h = handler_self(aio);
    char *body = NULL;
    size_t len = 0;
    int rc = tm_metrics_render(h->m, &body, &len);
    if (rc != TM_OK) {
        char msg[128];
        int n = snprintf(msg, sizeof(msg), "render metrics: %s\n", tm_strerror(rc));
        tm_error("http", "event=metrics_render_failed err=%s", tm_strerror(rc));
        reply(aio, NNG_HTTP_STATUS_INTERNAL_SERVER_ERROR, TM_HTTP_TEXT_CTYPE, msg, (size_t)n);
        return;
    }
    reply(aio, NNG_HTTP_STATUS_OK, TM_HTTP_METRICS_CTYPE, body, len);
    free(body);
}

static void handle_healthz(nng_aio *aio)
{
    tm_http *h = handler_self(aio);
    char msg[TM_HTTP_HEALTH_MSG_MAX];
    msg[0] = '\0';
    if (h->health == NULL || h->health(h->arg, msg, sizeof(msg)) == 0) {
        reply(aio, NNG_HTTP_STATUS_OK, TM_HTTP_TEXT_CTYPE, "ok\n", 3);
        return;
    }
    /* The reason is one line: fold any newline the callback left in, so a
     * probe that prints the body shows one clean line. */
    msg[sizeof(msg) - 1] = '\0';
    size_t n = strlen(msg);
    for (size_t i = 0; i < n; i++) {
        if (msg[i] == '\n' || msg[i] == '\r') {
            msg[i] = ' ';
        }
    }
    if (n == 0) {
        n = (size_t)snprintf(msg, sizeof(msg), "unhealthy");
    }
    char body[TM_HTTP_HEALTH_MSG_MAX + 1];
    memcpy(body, msg, n);
    body[n++] = '\n';
    reply(aio, NNG_HTTP_STATUS_SERVICE_UNAVAILABLE, TM_HTTP_TEXT_CTYPE, body, n);
}

static int code_from_nng(int rv)
{
    switch (rv) {
    case NNG_EADDRINUSE:
        return TM_EBUSY;
    case NNG_EADDRINVAL:
    case NNG_EINVAL:
        return TM_EINVAL;
    case NNG_ENOMEM:
        return TM_ENOMEM;
    case NNG_EPERM:
        return TM_EPERM;
    default:
        return TM_EIO;
    }
}

/* Error text: "http listen <url>: <why>" plus a hint where there is one. */
static int listen_error(tm_err *err, const char *url, int rv)
{
    const char *hint = "";
    if (rv == NNG_EADDRINUSE) {
        hint = " (another process is listening there; stop it or choose another port)";
    } else if (rv == NNG_EPERM) {
        hint = " (ports below 1024 need privileges; choose a higher port)";
    } else if (rv == NNG_EADDRINVAL) {
        hint = " (expected http://HOST:PORT, e.g. http://127.0.0.1:9187)";
    }
    return tm_err_set(err, code_from_nng(rv), "http listen %s: %s%s", url, nng_strerror(rv), hint);
}

static int add_handler(tm_http *h, nng_http_handler **slot, const char *path, void (*cb)(nng_aio *))
{
    nng_http_handler *hh = NULL;
    int rv;
    if ((rv = nng_http_handler_alloc(&hh, path, cb)) != 0 ||
        (rv = nng_http_handler_set_data(hh, h, NULL)) != 0 ||
        /* GET takes no body: refuse one rather than buffer up to nng's
         * default 1 MiB from whoever can reach the port. */
        (rv = nng_http_handler_collect_body(hh, true, 0)) != 0 ||
        (rv = nng_http_server_add_handler(h->srv, hh)) != 0) {
        if (hh != NULL) {
            nng_http_handler_free(hh);
        }
        return rv;
    }
    *slot = hh; /* the server now holds the handler; we keep it to remove it */
    return 0;
}

/* Undo tm_http_new in reverse. Stopping first drains every connection (and
 * with it every running handler); only then are the handlers taken off, so
 * the server, which nng may share per host:port, never calls into freed
 * memory. */
static void http_teardown(tm_http *h)
{
    if (h->srv != NULL) {
        if (h->started) {
            nng_http_server_stop(h->srv);
        }
        if (h->metrics != NULL && nng_http_server_del_handler(h->srv, h->metrics) == 0) {
            nng_http_handler_free(h->metrics);
        }
        if (h->healthz != NULL && nng_http_server_del_handler(h->srv, h->healthz) == 0) {
            nng_http_handler_free(h->healthz);
        }
        nng_http_server_release(h->srv);
    }
    free(h);
}

int tm_http_new(tm_http **out, const char *url, tm_metrics *m, tm_http_health_fn health, void *arg,
                tm_err *err)
{
    if (out == NULL || url == NULL || m == NULL) {
        return tm_err_set(err, TM_EINVAL, "http listen: missing url or metrics registry");
    }
    nng_url *u = NULL;
    int rv = nng_url_parse(&u, url);
    if (rv != 0) {
        return listen_error(err, url, rv == NNG_EINVAL ? NNG_EADDRINVAL : rv);
    }
    /* https would need a TLS config we do not carry; say so instead of
     * failing later with an opaque handshake error. */
    if (strcmp(u->u_scheme, "http") != 0) {
        nng_url_free(u);
        return tm_err_set(err, TM_EINVAL,
                          "http listen %s: unsupported scheme (use http://HOST:PORT; put a "
                          "TLS-terminating proxy in front if you need https)",
                          url);
    }

    tm_http *h = calloc(1, sizeof(*h));
    if (h == NULL) {
        nng_url_free(u);
        return tm_err_set(err, TM_ENOMEM, "http listen %s: out of memory", url);
    }
    h->m = m;
    h->health = health;
    h->arg = arg;

    rv = nng_http_server_hold(&h->srv, u);
    nng_url_free(u);
    if (rv != 0) {
        h->srv = NULL;
        http_teardown(h);
        return listen_error(err, url, rv);
    }
    if ((rv = add_handler(h, &h->metrics, "/metrics", handle_metrics)) != 0 ||
        (rv = add_handler(h, &h->healthz, "/healthz", handle_healthz)) != 0) {
        http_teardown(h);
        /* NNG_EADDRINUSE here means another tm_http in this process already
         * serves this host:port (nng shares servers per address). */
        return listen_error(err, url, rv);
    }
    if ((rv = nng_http_server_start(h->srv)) != 0) {
        http_teardown(h);
        return listen_error(err, url, rv);
    }
    h->started = true;

    /* nng 1.5 reports the bound address (getsockname), so port 0 works. */
    nng_sockaddr sa;
    memset(&sa, 0, sizeof(sa));
    if ((rv = nng_http_server_get_addr(h->srv, &sa)) != 0) {
        http_teardown(h);
        return tm_err_set(err, code_from_nng(rv),
                          "http listen %s: cannot read bound address: %s (pass a concrete port)",
                          url, nng_strerror(rv));
    }
    if (sa.s_family == NNG_AF_INET) {
        h->port = ntohs(sa.s_in.sa_port);
    } else if (sa.s_family == NNG_AF_INET6) {
        h->port = ntohs(sa.s_in6.sa_port);
    }
    if (h->port == 0) {
        http_teardown(h);
        return tm_err_set(err, TM_EINVAL,
                          "http listen %s: bound port unknown (pass a concrete port)", url);
    }
    tm_info("http", "event=listen url=%s port=%d", url, h->port);
    *out = h;
    return TM_OK;
}

int tm_http_port(tm_http *h)
{
    return h != NULL ? h->port : 0;
}

void tm_http_free(tm_http *h)
{
    if (h == NULL) {
        return;
    }
    http_teardown(h);
}
