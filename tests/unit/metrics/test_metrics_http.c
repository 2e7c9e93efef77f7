/*
 * test_metrics_http.c - /metrics and /healthz over a real loopback socket.
 *
 * The client is a plain TCP socket speaking HTTP/1.1 with Connection: close,
 * so the test sees exactly the bytes a Prometheus scraper would.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cmocka.h>
#include <nng/nng.h>

#include "common/err.h"
#include "common/metrics.h"
#include "coordinator/http.h"

typedef struct {
    int healthy;
    const char *why;
    int calls;
} health_state;

static int health_cb(void *arg, char *msg, size_t cap)
{
    health_state *hs = arg;
    hs->calls++;
    if (hs->healthy) {
        return 0;
    }
    snprintf(msg, cap, "%s", hs->why);
    return 1;
}

typedef struct {
    tm_metrics *m;
    tm_http *http;
    health_state health;
} fixture;

/* Send one request, read until the server closes; returns the status code
 * and a malloc'd copy of the whole response in *resp. */
static int http_do(int port, const char *method, const char *path, char **resp)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    assert_true(fd >= 0);
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    assert_int_equal(connect(fd, (struct sockaddr *)&sa, sizeof(sa)), 0);
    struct timeval tv = {.tv_sec = 10};
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));

    char req[256];
    int n = snprintf(req, sizeof(req),
                     "%s %s HTTP/1.1\r\nHost: 127.0.0.1:%d\r\nConnection: close\r\n\r\n", method,
                     path, port);
    assert_int_equal(write(fd, req, (size_t)n), n);

    size_t cap = 4096, len = 0;
    char *buf = malloc(cap);
    assert_non_null(buf);
    for (;;) {
        if (cap - len < 1024) {
            cap *= 2;
            buf = realloc(buf, cap);
            assert_non_null(buf);
        }
        ssize_t r = read(fd, buf + len, cap - len - 1);
        if (r < 0 && errno == EINTR) {
            continue;
        }
        assert_true(r >= 0); /* r < 0: timed out waiting for the server */
        if (r == 0) {
            break;
        }
        len += (size_t)r;
    }
    buf[len] = '\0';
    close(fd);

    int status = 0;
    if (sscanf(buf, "HTTP/1.1 %d", &status) != 1) {
        fail_msg("%s %s: no HTTP status in response (%zu bytes): %s", method, path, len, buf);
    }
    *resp = buf;
    return status;
}

static const char *body_of(const char *resp)
{
    const char *p = strstr(resp, "\r\n\r\n");
    assert_non_null(p);
    return p + 4;
}

static int setup(void **state)
{
    fixture *f = calloc(1, sizeof(*f));
    tm_metric *fam;
    tm_err err = {0};
    assert_non_null(f);
    f->health.healthy = 1;
    assert_int_equal(tm_metrics_new(&f->m), TM_OK);
    assert_int_equal(tm_metrics_add(f->m, &fam, TM_METRIC_COUNTER, "tidemark_rpc_requests_total",
                                    "RPC requests.", "method", NULL, 0),
                     TM_OK);
    const char *v[] = {"Heartbeat"};
    tm_metric_inc(tm_metric_child_get(fam, v, 1), 7);
    int rc = tm_http_new(&f->http, "http://127.0.0.1:0", f->m, health_cb, &f->health, &err);
    if (rc != TM_OK) {
        fail_msg("tm_http_new: %s", err.msg);
    }
    assert_true(tm_http_port(f->http) > 0);
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    fixture *f = *state;
    tm_http_free(f->http);
    tm_metrics_free(f->m);
    free(f);
    return 0;
}

static void test_metrics_endpoint(void **state)
{
    fixture *f = *state;
    char *resp;
    assert_int_equal(http_do(tm_http_port(f->http), "GET", "/metrics", &resp), 200);
    assert_non_null(strstr(resp, "\r\nContent-Type: text/plain; version=0.0.4; charset=utf-8\r\n"));
    assert_string_equal(body_of(resp), "# HELP tidemark_rpc_requests_total RPC requests.\n"
                                       "# TYPE tidemark_rpc_requests_total counter\n"
                                       "tidemark_rpc_requests_total{method=\"Heartbeat\"} 7\n");
    free(resp);

    /* A query string (Prometheus never sends one, curl users do) is ignored. */
    assert_int_equal(http_do(tm_http_port(f->http), "GET", "/metrics?x=1", &resp), 200);
    free(resp);

    /* HEAD: headers only. */
    assert_int_equal(http_do(tm_http_port(f->http), "HEAD", "/metrics", &resp), 200);
    assert_string_equal(body_of(resp), "");
    free(resp);
}

static void test_healthz(void **state)
{
    fixture *f = *state;
    char *resp;
    assert_int_equal(http_do(tm_http_port(f->http), "GET", "/healthz", &resp), 200);
    assert_string_equal(body_of(resp), "ok\n");
    free(resp);

    f->health.healthy = 0;
    f->health.why = "catalog: database is locked\nsecond line";
    assert_int_equal(http_do(tm_http_port(f->http), "GET", "/healthz", &resp), 503);
    assert_non_null(strstr(resp, "\r\nContent-Type: text/plain; charset=utf-8\r\n"));
    assert_string_equal(body_of(resp), "catalog: database is locked second line\n");
    free(resp);

    /* A failing check with no reason still says something. */
    f->health.why = "";
    assert_int_equal(http_do(tm_http_port(f->http), "GET", "/healthz", &resp), 503);
    assert_string_equal(body_of(resp), "unhealthy\n");
    free(resp);
    assert_int_equal(f->health.calls, 3);
}

static void test_not_found_and_method(void **state)
{
    fixture *f = *state;
    char *resp;
    const char *paths[] = {"/", "/metricsx", "/metrics/x", "/health", "/favicon.ico"};
    for (size_t i = 0; i < sizeof(paths) / sizeof(paths[0]); i++) {
        assert_int_equal(http_do(tm_http_port(f->http), "GET", paths[i], &resp), 404);
        free(resp);
    }
    assert_int_equal(http_do(tm_http_port(f->http), "POST", "/metrics", &resp), 405);
    free(resp);
}

/* Bind a listening socket on a kernel-chosen loopback port; returns the fd. */
static int hold_port(int *port)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    assert_true(fd >= 0);
    struct sockaddr_in sa = {.sin_family = AF_INET};
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    assert_int_equal(bind(fd, (struct sockaddr *)&sa, sizeof(sa)), 0);
    assert_int_equal(listen(fd, 1), 0);
    socklen_t sl = sizeof(sa);
    assert_int_equal(getsockname(fd, (struct sockaddr *)&sa, &sl), 0);
    *port = ntohs(sa.sin_port);
    return fd;
}

static void test_port_in_use(void **state)
{
    (void)state;
    tm_metrics *m;
    tm_http *h = NULL;
    tm_err err = {0};
    int port;
    int fd = hold_port(&port);
    char url[64], want[128];
    snprintf(url, sizeof(url), "http://127.0.0.1:%d", port);
    snprintf(want, sizeof(want), "http listen %s: Address in use", url);

    assert_int_equal(tm_metrics_new(&m), TM_OK);
    assert_int_equal(tm_http_new(&h, url, m, NULL, NULL, &err), TM_EBUSY);
    assert_null(h);
    assert_int_equal(err.code, TM_EBUSY);
    assert_true(strncmp(err.msg, want, strlen(want)) == 0);
    close(fd);

    /* Freed port: now it works, on exactly that port, with no health fn. */
    assert_int_equal(tm_http_new(&h, url, m, NULL, NULL, &err), TM_OK);
    assert_int_equal(tm_http_port(h), port);
    char *resp;
    assert_int_equal(http_do(port, "GET", "/healthz", &resp), 200);
    free(resp);

    /* A second server on the same address in this process is refused too. */
    tm_http *h2 = NULL;
    assert_int_equal(tm_http_new(&h2, url, m, NULL, NULL, &err), TM_EBUSY);
    assert_true(strncmp(err.msg, want, strlen(want)) == 0);
    /* ...and the refusal left the first one serving. The registry is
     * empty: a 200 with an empty body, not a dropped connection. */
    assert_int_equal(http_do(port, "GET", "/metrics", &resp), 200);
    assert_string_equal(body_of(resp), "");
    free(resp);

    tm_http_free(h);
    tm_http_free(NULL);
    tm_metrics_free(m);
}

static void test_bad_url(void **state)
{
    (void)state;
    tm_metrics *m;
    tm_http *h = NULL;
    tm_err err = {0};
    assert_int_equal(tm_metrics_new(&m), TM_OK);

    assert_int_equal(tm_http_new(&h, "https://127.0.0.1:0", m, NULL, NULL, &err), TM_EINVAL);
    assert_non_null(strstr(err.msg, "http listen https://127.0.0.1:0: unsupported scheme"));

    assert_int_equal(tm_http_new(&h, "tcp://127.0.0.1:0", m, NULL, NULL, &err), TM_EINVAL);
    assert_non_null(strstr(err.msg, "http listen tcp://127.0.0.1:0: "));

    assert_true(tm_http_new(&h, "not a url", m, NULL, NULL, &err) < 0);
    assert_non_null(strstr(err.msg, "http listen not a url: "));

    /* An address that is not ours to bind. */
    assert_true(tm_http_new(&h, "http://192.0.2.1:0", m, NULL, NULL, &err) < 0);
    assert_non_null(strstr(err.msg, "http listen http://192.0.2.1:0: "));

    assert_int_equal(tm_http_new(&h, NULL, m, NULL, NULL, &err), TM_EINVAL);
    assert_null(h);
    tm_metrics_free(m);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_metrics_endpoint, setup, teardown),
        cmocka_unit_test_setup_teardown(test_healthz, setup, teardown),
        cmocka_unit_test_setup_teardown(test_not_found_and_method, setup, teardown),
        cmocka_unit_test(test_port_in_use),
        cmocka_unit_test(test_bad_url),
    };
    int rc = cmocka_run_group_tests(tests, NULL, NULL);
    /* Let nng's reaper finish so LeakSanitizer sees a clean heap. */
    nng_fini();
    return rc;
}
