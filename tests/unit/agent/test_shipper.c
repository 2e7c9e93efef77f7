/*
 * test_shipper.c - the daemon side of the log shipper hook (agent/shipper.c)
 * with a test engine on real posix repositories: a shipper runs only for the
 * targets of an engine that has one; what it stores reaches every
 * repository; its reports, chain resets and failures make the target's
 * status; a failed run is started again after the backoff; a stop ends a
 * waiting shipper.
 */
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>

#include "agent/engine.h"
#include "agent/repo/repo_log.h"
#include "agent/repo/repository.h"
#include "agent/shipper.h"
#include "common/keys.h"
#include "common/util.h"

static char dir[256];
static char keyfile[300];

static pthread_mutex_t mu = PTHREAD_MUTEX_INITIALIZER;
static int kicks;
static char kicked_target[64];

static void on_kick(void *arg, const char *target)
{
    (void)arg;
    pthread_mutex_lock(&mu);
    kicks++;
    snprintf(kicked_target, sizeof(kicked_target), "%s", target);
    pthread_mutex_unlock(&mu);
}

/* Run 1 stores one object, reports it and fails; run 2 waits for the stop. */
static int test_ship(tm_ship_ctx *ctx, const tm_target_conf *t, tm_err *err)
{
    if (tm_ship_runs(t->name) == 1) {
        char sd[512];
        if (tm_ship_state_dir(ctx, sd, sizeof(sd), err) != TM_OK) {
            return err->code;
        }
        static const char data[] = "log bytes of position 1..2";
        int rc = tm_ship_store_buf(ctx, "00000007/0000000001", data, sizeof(data) - 1, err);
        if (rc != TM_OK) {
            return rc;
        }
        tm_log_range r = {
            .chain = 7, .start = "pos-1", .end = "pos-2", .objects = 1, .bytes = sizeof(data) - 1};
        tm_ship_report(ctx, &r);
        /* A new chain after it: from where the last report ended. */
        tm_ship_chain_reset(ctx, "the log restarted unseen", NULL);
        tm_ship_pending(ctx, 3, 300);
        return tm_err_set(err, TM_EIO, "boom: the test shipper fails once");
    }
    while (!tm_ship_wait(ctx, 50)) {
    }
    return TM_OK;
}

static const tm_engine test_engine = {
    /* No kind is free of a real engine (agent.yaml takes only the kinds of
     * common/engine_kinds.c, each of which has or will have one), so the
     * stand-in takes the real sqlite engine's place: tm_engine_find answers
     * the test engine first, and this test loads agent.yaml without the
     * engines' target schemas (the target needs no sqlite: block). */
    .kind = TIDEMARK__TARGET_KIND__SQLITE,
    .name = "seamtest",
    .ship = test_ship,
};

/* with_shipped: the stand-in's target too (else only the postgres one,
 * whose engine has no shipper). */
static tm_agent_conf *conf_new(int with_shipped)
{
    char yaml[4096];
    snprintf(yaml, sizeof(yaml),
             "coordinator:\n  url: tcp://127.0.0.1:7800\n  enrollment_token: env:TM_T\n"
             "state_dir: %s/state\n"
             "targets:\n"
             "%s"
             "  - name: pushed\n    kind: postgres\n"
             "repositories:\n"
             "  - name: a\n    type: posix\n    path: %s/a\n"
             "  - name: b\n    type: posix\n    path: %s/b\n"
             "encryption:\n  master_key_file: %s\n",
             dir, with_shipped ? "  - name: shipped\n    kind: sqlite\n" : "", dir, dir, keyfile);
    tm_agent_conf *c = NULL;
    tm_err err = {0};
    if (tm_agent_conf_parse("/t/agent.yaml", yaml, strlen(yaml), &c, &err) != 0) {
        fail_msg("%s", err.msg);
    }
    return c;
}

static int setup(void **state)
{
    (void)state;
    setenv("TM_T", "x", 1);
    snprintf(dir, sizeof(dir), "/tmp/tm-ship-unit-XXXXXX");
    assert_non_null(mkdtemp(dir));
    snprintf(keyfile, sizeof(keyfile), "%s/master.key", dir);
    tm_master_key k;
    tm_err err = {0};
    if (tm_keys_generate_master(keyfile, &k, &err) != 0) {
        fail_msg("%s", err.msg);
    }
    tm_engine_add_for_test(&test_engine);
    return 0;
}

static int teardown(void **state)
{
    (void)state;
    tm_engine_add_for_test(NULL);
    char cmd[512];
    snprintf(cmd, sizeof(cmd), "rm -rf %s", dir);
    return system(cmd);
}

static int64_t mono_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static void test_shipper_runs_reports_restarts_stops(void **state)
{
    (void)state;
    tm_agent_conf *conf = conf_new(1);
    tm_shippers *s = NULL;
    tm_err err = {0};
    assert_int_equal(tm_shippers_start(&s, conf, on_kick, NULL, &err), TM_OK);
    /* Only the target whose engine ships has a shipper. */
    assert_int_equal(tm_shippers_count(s), 1);
    tm_log_status st;
    assert_int_equal(tm_ship_status("pushed", &st), 0);

    /* The failed first run is followed by a second after the 1 s backoff
     * (generous deadline: the machine is shared). */
    int64_t deadline = mono_ms() + 30000;
    while (tm_ship_runs("shipped") < 2 && mono_ms() < deadline) {
        usleep(20000);
    }
    assert_int_equal(tm_ship_runs("shipped"), 2);
    memset(&st, 0, sizeof(st));
    assert_int_equal(tm_ship_status("shipped", &st), 1);
    assert_int_equal(st.readable, 1);
    assert_int_equal(st.shipped_count, 1);
    assert_string_equal(st.last_shipped, "pos-2");
    assert_true(st.last_shipped_ms > 0);
    assert_int_equal(st.failed_count, 1);
    assert_true(st.last_failed_ms >= st.last_shipped_ms);
    assert_non_null(strstr(st.last_failure, "boom"));
    assert_int_equal(st.pending_count, 3);
    assert_int_equal(st.pending_bytes, 300);
    /* The chain reset is told apart from the failure. */
    assert_int_equal(st.chain_resets, 1);
    assert_true(st.last_chain_reset_ms >= st.last_shipped_ms);
    assert_string_equal(st.chain_reset, "the log restarted unseen");
    assert_string_equal(st.chain_reset_from, "pos-2");
    pthread_mutex_lock(&mu);
    assert_int_equal(kicks, 2); /* the report, the reset */
    assert_string_equal(kicked_target, "shipped");
    pthread_mutex_unlock(&mu);

    /* The stored object is complete (object + sidecar) in both. */
    tm_repo_set *rs = NULL;
    assert_int_equal(tm_repo_set_open(&rs, conf, 0, &err), TM_OK);
    for (size_t i = 0; i < tm_repo_set_count(rs); i++) {
        tm_log_item *items = NULL;
        size_t n = 0;
        assert_int_equal(tm_log_scan(rs, i, "shipped", &items, &n, &err), TM_OK);
        assert_int_equal(n, 1);
        assert_string_equal(items[0].rel, "00000007/0000000001");
        assert_true(items[0].has_meta && items[0].has_object);
        tm_log_items_free(items, n);
    }
    tm_repo_set_free(rs);
    char sd[600];
    snprintf(sd, sizeof(sd), "%s/state/ship/shipped", dir);
    assert_int_equal(access(sd, X_OK), 0);

    /* A stop ends the waiting shipper at once; its status goes with it. */
    int64_t t0 = mono_ms();
    tm_shippers_free(s);
    assert_true(mono_ms() - t0 < 5000);
    assert_int_equal(tm_ship_status("shipped", &st), 0);
    tm_agent_conf_free(conf);
}

static void test_no_shipping_engine_no_thread(void **state)
{
    (void)state;
    tm_engine_add_for_test(NULL);
    tm_agent_conf *conf = conf_new(0);
    tm_shippers *s = NULL;
    tm_err err = {0};
    assert_int_equal(tm_shippers_start(&s, conf, NULL, NULL, &err), TM_OK);
    assert_int_equal(tm_shippers_count(s), 0);
    tm_shippers_free(s);
    tm_agent_conf_free(conf);
    tm_engine_add_for_test(&test_engine);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_shipper_runs_reports_restarts_stops),
        cmocka_unit_test(test_no_shipping_engine_no_thread),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
