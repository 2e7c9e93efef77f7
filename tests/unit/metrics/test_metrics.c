/*
 * test_metrics.c - the registry and its text exposition, byte for byte.
 */
#include <math.h>
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "common/err.h"
#include "common/metrics.h"

static char *render(tm_metrics *m)
{
    char *out = NULL;
    size_t len = 0;
    assert_int_equal(tm_metrics_render(m, &out, &len), TM_OK);
    assert_non_null(out);
    assert_int_equal(strlen(out), len);
    return out;
}

static void test_empty_registry(void **state)
{
    (void)state;
    tm_metrics *m;
    assert_int_equal(tm_metrics_new(&m), TM_OK);
    char *out = render(m);
    assert_string_equal(out, "");
    free(out);
    tm_metrics_free(m);
    tm_metrics_free(NULL);
}

static void test_counter_gauge_format(void **state)
{
    (void)state;
    tm_metrics *m;
    tm_metric *rpc, *up, *temp, *unused;
    assert_int_equal(tm_metrics_new(&m), TM_OK);
    assert_int_equal(tm_metrics_add(m, &rpc, TM_METRIC_COUNTER, "tidemark_rpc_requests_total",
                                    "RPC requests by method and code.", "method, code", NULL, 0),
                     TM_OK);
    assert_int_equal(tm_metrics_add(m, &up, TM_METRIC_GAUGE, "tidemark_up",
                                    "1 when up.\nHelp with \\ and newline.", NULL, NULL, 0),
                     TM_OK);
    assert_int_equal(
        tm_metrics_add(m, &temp, TM_METRIC_GAUGE, "tidemark:ratio", "Odd values.", "k", NULL, 0),
        TM_OK);
    /* Declared but never given a child: no series, so no lines at all. */
    assert_int_equal(tm_metrics_add(m, &unused, TM_METRIC_COUNTER, "tidemark_unused_total",
                                    "Never used.", "x", NULL, 0),
                     TM_OK);

    const char *v1[] = {"Heartbeat", "OK"};
    const char *v2[] = {"Register", "path\\with \"quotes\"\nand newline"};
    tm_metric_child *c1 = tm_metric_child_get(rpc, v1, 2);
    tm_metric_child *c2 = tm_metric_child_get(rpc, v2, 2);
    assert_non_null(c1);
    assert_non_null(c2);
    assert_ptr_equal(tm_metric_child_get(rpc, v1, 2), c1); /* same values, same child */
    tm_metric_inc(c1, 1);
    tm_metric_inc(c1, 2);
    tm_metric_inc(c2, 0.5);
    tm_metric_inc(c2, -7); /* counters never go down: ignored */

    tm_metric_child *u = tm_metric_child_get(up, NULL, 0);
    assert_non_null(u);
    tm_metric_set(u, 1);

    const char *k[][1] = {{"a"}, {"b"}, {"c"}, {"d"}, {"e"}, {"f"}, {"g"}};
    double vals[] = {0.1, -2.5, 1e20, 1e-9, NAN, INFINITY, -INFINITY};
    for (size_t i = 0; i < 7; i++) {
        tm_metric_set(tm_metric_child_get(temp, k[i], 1), vals[i]);
    }

    char *out = render(m);
    assert_string_equal(out, "# HELP tidemark_rpc_requests_total RPC requests by method and code.\n"
                             "# TYPE tidemark_rpc_requests_total counter\n"
                             "tidemark_rpc_requests_total{method=\"Heartbeat\",code=\"OK\"} 3\n"
                             "tidemark_rpc_requests_total{method=\"Register\",code=\"path\\\\with "
                             "\\\"quotes\\\"\\nand newline\"} 0.5\n"
                             "# HELP tidemark_up 1 when up.\\nHelp with \\\\ and newline.\n"
                             "# TYPE tidemark_up gauge\n"
                             "tidemark_up 1\n"
                             "# HELP tidemark:ratio Odd values.\n"
                             "# TYPE tidemark:ratio gauge\n"
                             "tidemark:ratio{k=\"a\"} 0.1\n"
                             "tidemark:ratio{k=\"b\"} -2.5\n"
                             "tidemark:ratio{k=\"c\"} 1e+20\n"
                             "tidemark:ratio{k=\"d\"} 1e-09\n"
                             "tidemark:ratio{k=\"e\"} NaN\n"
                             "tidemark:ratio{k=\"f\"} +Inf\n"
                             "tidemark:ratio{k=\"g\"} -Inf\n");
    free(out);
    tm_metrics_free(m);
}

static void test_unlabelled_starts_at_zero(void **state)
{
    (void)state;
    tm_metrics *m;
    tm_metric *f;
    assert_int_equal(tm_metrics_new(&m), TM_OK);
    assert_int_equal(tm_metrics_add(m, &f, TM_METRIC_COUNTER, "tidemark_restarts_total",
                                    "Restarts.", NULL, NULL, 0),
                     TM_OK);
    char *out = render(m);
    assert_string_equal(out, "# HELP tidemark_restarts_total Restarts.\n"
                             "# TYPE tidemark_restarts_total counter\n"
                             "tidemark_restarts_total 0\n");
    free(out);
    tm_metrics_free(m);
}

static void test_histogram_format(void **state)
{
    (void)state;
    tm_metrics *m;
    tm_metric *h, *h0;
    const double b[] = {0.005, 0.1, 1, 2.5};
    assert_int_equal(tm_metrics_new(&m), TM_OK);
    assert_int_equal(tm_metrics_add(m, &h, TM_METRIC_HISTOGRAM, "tidemark_rpc_seconds",
                                    "RPC latency.", "method", b, 4),
                     TM_OK);
    /* A trailing +Inf bound is accepted and not rendered twice. */
    const double b0[] = {1, INFINITY};
    assert_int_equal(
        tm_metrics_add(m, &h0, TM_METRIC_HISTOGRAM, "tidemark_size_bytes", "Sizes.", NULL, b0, 2),
        TM_OK);

    const char *v[] = {"Next\"Task"};
    tm_metric_child *c = tm_metric_child_get(h, v, 1);
    assert_non_null(c);
    tm_metric_observe(c, 0.005); /* on the bound: le is inclusive */
    tm_metric_observe(c, 0.05);
    tm_metric_observe(c, 0.5);
    tm_metric_observe(c, 3);
    tm_metric_observe(c, NAN); /* ignored */
    tm_metric_inc(c, 1);       /* wrong type: ignored */

    char *out = render(m);
    assert_string_equal(out, "# HELP tidemark_rpc_seconds RPC latency.\n"
                             "# TYPE tidemark_rpc_seconds histogram\n"
                             "tidemark_rpc_seconds_bucket{method=\"Next\\\"Task\",le=\"0.005\"} 1\n"
                             "tidemark_rpc_seconds_bucket{method=\"Next\\\"Task\",le=\"0.1\"} 2\n"
                             "tidemark_rpc_seconds_bucket{method=\"Next\\\"Task\",le=\"1\"} 3\n"
                             "tidemark_rpc_seconds_bucket{method=\"Next\\\"Task\",le=\"2.5\"} 3\n"
                             "tidemark_rpc_seconds_bucket{method=\"Next\\\"Task\",le=\"+Inf\"} 4\n"
                             "tidemark_rpc_seconds_sum{method=\"Next\\\"Task\"} 3.555\n"
                             "tidemark_rpc_seconds_count{method=\"Next\\\"Task\"} 4\n"
                             "# HELP tidemark_size_bytes Sizes.\n"
                             "# TYPE tidemark_size_bytes histogram\n"
                             "tidemark_size_bytes_bucket{le=\"1\"} 0\n"
                             "tidemark_size_bytes_bucket{le=\"+Inf\"} 0\n"
                             "tidemark_size_bytes_sum 0\n"
                             "tidemark_size_bytes_count 0\n");
    free(out);
    tm_metrics_free(m);
}

static void collect_agents(tm_metrics_writer *w, void *arg)
{
    int *calls = arg;
    char esc[64], labels[96];
    (*calls)++;
    tm_metrics_write_family(w, "tidemark_agents", TM_METRIC_GAUGE, "Agents by state.");
    snprintf(labels, sizeof(labels), "state=\"%s\"",
             tm_metrics_escape("on\"line", esc, sizeof(esc)));
    tm_metrics_write_sample(w, "tidemark_agents", labels, 3);
    tm_metrics_write_sample(w, "tidemark_agents", NULL, 4);
    tm_metrics_write_sample(w, "bad name", NULL, 5); /* dropped, not rendered */
}

static void test_collectors(void **state)
{
    (void)state;
    tm_metrics *m;
    tm_metric *f;
    int calls = 0;
    assert_int_equal(tm_metrics_new(&m), TM_OK);
    assert_int_equal(tm_metrics_add_collector(m, collect_agents, &calls), TM_OK);
    assert_int_equal(tm_metrics_add_collector(m, NULL, NULL), TM_EINVAL);
    assert_int_equal(
        tm_metrics_add(m, &f, TM_METRIC_GAUGE, "tidemark_first", "Declared.", NULL, NULL, 0),
        TM_OK);
    char *out = render(m);
    /* Families first, then collectors, each in registration order. */
    assert_string_equal(out, "# HELP tidemark_first Declared.\n"
                             "# TYPE tidemark_first gauge\n"
                             "tidemark_first 0\n"
                             "# HELP tidemark_agents Agents by state.\n"
                             "# TYPE tidemark_agents gauge\n"
                             "tidemark_agents{state=\"on\\\"line\"} 3\n"
                             "tidemark_agents 4\n");
    free(out);
    assert_int_equal(calls, 1);
    tm_metrics_free(m);
}

static void test_escape(void **state)
{
    (void)state;
    char out[16];
    assert_string_equal(tm_metrics_escape("a\\b\"c\nd", out, sizeof(out)), "a\\\\b\\\"c\\nd");
    /* Truncation never splits an escape (a lone trailing backslash would
     * eat the closing quote). */
    char small[4];
    assert_string_equal(tm_metrics_escape("ab\"c", small, sizeof(small)), "ab");
    assert_string_equal(tm_metrics_escape("", small, sizeof(small)), "");
}

static void test_bad_names(void **state)
{
    (void)state;
    tm_metrics *m;
    tm_metric *f = NULL;
    const double asc[] = {1, 2};
    const double desc[] = {2, 1};
    const double nan_b[] = {NAN};
    assert_int_equal(tm_metrics_new(&m), TM_OK);

    const char *bad_names[] = {"", "1abc", "a-b", "a b", "é", "a.b", NULL};
    for (size_t i = 0; bad_names[i] != NULL; i++) {
        assert_int_equal(tm_metrics_add(m, &f, TM_METRIC_GAUGE, bad_names[i], "x", NULL, NULL, 0),
                         TM_EINVAL);
    }
    assert_int_equal(tm_metrics_add(m, &f, TM_METRIC_GAUGE, NULL, "x", NULL, NULL, 0), TM_EINVAL);

    const char *bad_labels[] = {"1a", "a-b", "a:b", "__name", "a,a", "a,", ",a", "a,,b", NULL};
    for (size_t i = 0; bad_labels[i] != NULL; i++) {
        assert_int_equal(
            tm_metrics_add(m, &f, TM_METRIC_GAUGE, "ok_name", "x", bad_labels[i], NULL, 0),
            TM_EINVAL);
    }
    /* "le" belongs to histograms' buckets, fine elsewhere. */
    assert_int_equal(tm_metrics_add(m, &f, TM_METRIC_HISTOGRAM, "h", "x", "le", asc, 2), TM_EINVAL);
    assert_int_equal(tm_metrics_add(m, &f, TM_METRIC_GAUGE, "g_le", "x", "le", NULL, 0), TM_OK);

    /* Buckets: strictly ascending, finite, histograms only. */
    assert_int_equal(tm_metrics_add(m, &f, TM_METRIC_HISTOGRAM, "h", "x", NULL, desc, 2),
                     TM_EINVAL);
    assert_int_equal(tm_metrics_add(m, &f, TM_METRIC_HISTOGRAM, "h", "x", NULL, nan_b, 1),
                     TM_EINVAL);
    assert_int_equal(tm_metrics_add(m, &f, TM_METRIC_COUNTER, "c", "x", NULL, asc, 2), TM_EINVAL);
    assert_int_equal(tm_metrics_add(m, &f, (tm_metric_type)42, "t", "x", NULL, NULL, 0), TM_EINVAL);

    /* One family per name. */
    assert_int_equal(tm_metrics_add(m, &f, TM_METRIC_GAUGE, "dup", "x", "a", NULL, 0), TM_OK);
    tm_metric *f2;
    assert_int_equal(tm_metrics_add(m, &f2, TM_METRIC_COUNTER, "dup", "x", NULL, NULL, 0),
                     TM_EEXIST);

    /* Label value count must match; NULL values are refused. */
    const char *one[] = {"x"};
    const char *null_v[] = {NULL};
    assert_null(tm_metric_child_get(f, NULL, 0));
    assert_null(tm_metric_child_get(f, one, 2));
    assert_null(tm_metric_child_get(f, null_v, 1));
    assert_non_null(tm_metric_child_get(f, one, 1));

    /* NULL children are no-ops, never crashes. */
    tm_metric_inc(NULL, 1);
    tm_metric_set(NULL, 1);
    tm_metric_observe(NULL, 1);
    tm_metrics_free(m);
}

static void test_many_children(void **state)
{
    (void)state;
    tm_metrics *m;
    tm_metric *f;
    assert_int_equal(tm_metrics_new(&m), TM_OK);
    assert_int_equal(
        tm_metrics_add(m, &f, TM_METRIC_COUNTER, "tidemark_x_total", "x", "target,kind", NULL, 0),
        TM_OK);
    tm_metric_child *kids[1000];
    for (int i = 0; i < 1000; i++) {
        char t[16];
        snprintf(t, sizeof(t), "db%d", i);
        const char *v[] = {t, i % 2 ? "full" : "incr"};
        kids[i] = tm_metric_child_get(f, v, 2);
        assert_non_null(kids[i]);
        tm_metric_inc(kids[i], i);
    }
    for (int i = 0; i < 1000; i++) {
        char t[16];
        snprintf(t, sizeof(t), "db%d", i);
        const char *v[] = {t, i % 2 ? "full" : "incr"};
        assert_ptr_equal(tm_metric_child_get(f, v, 2), kids[i]);
    }
    char *out = render(m);
    /* Creation order. */
    char *a = strstr(out, "{target=\"db0\",kind=\"incr\"} 0\n");
    char *b = strstr(out, "{target=\"db999\",kind=\"full\"} 999\n");
    assert_non_null(a);
    assert_non_null(b);
    assert_true(a < b);
    free(out);
    tm_metrics_free(m);
}

/* ---- concurrency -------------------------------------------------------- */

#define N_THREADS 8
#define N_ITERS 200000

typedef struct {
    tm_metric *counter;
    tm_metric *gauge;
    tm_metric_child *hist;
    int id;
} worker_arg;

static void *worker(void *p)
{
    worker_arg *a = p;
    /* Half the threads share a child, half resolve their own: exercises both
     * the CAS loop under contention and concurrent child creation. */
    const char *shared[] = {"shared"};
    char own_name[16];
    snprintf(own_name, sizeof(own_name), "t%d", a->id);
    const char *own[] = {own_name};
    tm_metric_child *c = tm_metric_child_get(a->counter, a->id % 2 ? own : shared, 1);
    tm_metric_child *g = tm_metric_child_get(a->gauge, NULL, 0);
    for (int i = 0; i < N_ITERS; i++) {
        tm_metric_inc(c, 1);
        tm_metric_inc(g, 0.5);
        tm_metric_observe(a->hist, (i % 4) * 0.5); /* 0, .5, 1, 1.5 */
    }
    return NULL;
}

/* noinline: gcc 12 at -O3 inlines this into the test and then warns of a
 * "dangling pointer" to render()'s local (-Wdangling-pointer, a false
 * positive that breaks the Release -Werror build of the tests). */
__attribute__((noinline)) static double sample_value(const char *text, const char *line_prefix)
{
    /* Match at a line start: "# HELP level ..." must not count as "level ". */
    char needle[128];
    snprintf(needle, sizeof(needle), "\n%s", line_prefix);
    const char *p = strstr(text, needle);
    assert_non_null(p);
    return strtod(p + strlen(needle), NULL);
}

static void test_concurrent_increments(void **state)
{
    (void)state;
    tm_metrics *m;
    tm_metric *counter, *gauge, *hist;
    const double b[] = {0.5, 1};
    assert_int_equal(tm_metrics_new(&m), TM_OK);
    assert_int_equal(
        tm_metrics_add(m, &counter, TM_METRIC_COUNTER, "ops_total", "ops", "who", NULL, 0), TM_OK);
    assert_int_equal(tm_metrics_add(m, &gauge, TM_METRIC_GAUGE, "level", "lvl", NULL, NULL, 0),
                     TM_OK);
    assert_int_equal(tm_metrics_add(m, &hist, TM_METRIC_HISTOGRAM, "lat", "lat", NULL, b, 2),
                     TM_OK);
    tm_metric_child *hc = tm_metric_child_get(hist, NULL, 0);

    pthread_t th[N_THREADS];
    worker_arg args[N_THREADS];
    for (int i = 0; i < N_THREADS; i++) {
        args[i] = (worker_arg){counter, gauge, hc, i};
        assert_int_equal(pthread_create(&th[i], NULL, worker, &args[i]), 0);
    }
    /* Scrape while they run: must not crash or tear. */
    for (int i = 0; i < 20; i++) {
        free(render(m));
    }
    for (int i = 0; i < N_THREADS; i++) {
        pthread_join(th[i], NULL);
    }

    char *out = render(m);
    assert_true(sample_value(out, "ops_total{who=\"shared\"} ") == (N_THREADS / 2) * N_ITERS);
    assert_true(sample_value(out, "ops_total{who=\"t1\"} ") == N_ITERS);
    assert_true(sample_value(out, "level ") == 0.5 * N_THREADS * N_ITERS);
    double total = (double)N_THREADS * N_ITERS;
    assert_true(sample_value(out, "lat_bucket{le=\"0.5\"} ") == total / 2);
    assert_true(sample_value(out, "lat_bucket{le=\"1\"} ") == total * 3 / 4);
    assert_true(sample_value(out, "lat_bucket{le=\"+Inf\"} ") == total);
    assert_true(sample_value(out, "lat_count ") == total);
    assert_true(sample_value(out, "lat_sum ") == total * 0.75);
    free(out);
    tm_metrics_free(m);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_empty_registry),
        cmocka_unit_test(test_counter_gauge_format),
        cmocka_unit_test(test_unlabelled_starts_at_zero),
        cmocka_unit_test(test_histogram_format),
        cmocka_unit_test(test_collectors),
        cmocka_unit_test(test_escape),
        cmocka_unit_test(test_bad_names),
        cmocka_unit_test(test_many_children),
        cmocka_unit_test(test_concurrent_increments),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
