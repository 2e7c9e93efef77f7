/*
 * test_registry.c - liveness rules and identity checks of the in-memory
 * registry, over a real catalog in a temp dir, with times injected so a
 * window of minutes runs in microseconds.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "common/util.h"
#include "coordinator/catalog.h"
#include "coordinator/registry.h"
#include "tidemark.pb-c.h"

#define T0 1800000000000LL /* ms */

typedef struct fixture {
    char dir[256];
    char path[300];
    tm_catalog *cat;
    tm_registry *reg;
} fixture;

static void add_agent(fixture *f, const char *id, const char *secret, int approved)
{
    char hash[65];
    tm_sha256_hex(secret, strlen(secret), hash);
    tm_agent_rec rec = {0};
    rec.id = (char *)id;
    rec.hostname = (char *)id;
    rec.version = "test";
    rec.secret_hash = hash;
    rec.enrollment = "t";
    rec.approved = approved;
    rec.state = TIDEMARK__AGENT_STATE__ONLINE;
    rec.registered_at = T0 / 1000;
    rec.last_seen_at = T0 / 1000;
    tm_err err;
    assert_int_equal(tm_catalog_agent_put(f->cat, &rec, &err), TM_OK);
    assert_int_equal(tm_registry_put(f->reg, id, hash, approved, T0), TM_OK);
}

static int setup(void **state)
{
    fixture *f = calloc(1, sizeof(*f));
    snprintf(f->dir, sizeof(f->dir), "/tmp/tm-test-registry-XXXXXX");
    assert_non_null(mkdtemp(f->dir));
    snprintf(f->path, sizeof(f->path), "%s/catalog.db", f->dir);
    tm_err err;
    assert_int_equal(tm_catalog_open(&f->cat, f->path, &err), TM_OK);
    tm_registry_opts o = {
        .heartbeat_interval_ms = 1000, .stale_after_missed = 3, .lost_after_missed = 10};
    assert_int_equal(tm_registry_new(&f->reg, f->cat, &o, T0, &err), TM_OK);
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    fixture *f = *state;
    tm_registry_free(f->reg);
    tm_catalog_free(f->cat);
    char cmd[400];
    snprintf(cmd, sizeof(cmd), "rm -rf '%s'", f->dir);
    assert_int_equal(system(cmd), 0);
    free(f);
    return 0;
}

static int state_of(fixture *f, const char *id)
{
    int s = 0;
    int64_t seen;
    assert_int_equal(tm_registry_get(f->reg, id, &s, &seen), TM_OK);
    return s;
}

static void test_auth(void **state)
{
    fixture *f = *state;
    add_agent(f, "agt-a", "secret-a", 1);
    assert_int_equal(tm_registry_auth(f->reg, "agt-a", "secret-a"), TM_OK);
    assert_int_equal(tm_registry_auth(f->reg, "agt-a", "secret-b"), TM_EAUTH);
    assert_int_equal(tm_registry_auth(f->reg, "agt-zz", "secret-a"), TM_EAUTH);
    assert_int_equal(tm_registry_auth(f->reg, NULL, NULL), TM_EAUTH);
}

static void test_liveness_windows(void **state)
{
    fixture *f = *state;
    add_agent(f, "agt-a", "a", 1);
    add_agent(f, "agt-b", "b", 1);
    int s;
    /* b beats every second, a goes silent. */
    for (int64_t t = T0; t <= T0 + 3000; t += 1000) {
        assert_int_equal(tm_registry_heartbeat(f->reg, "agt-b", t, &s), TM_OK);
        tm_registry_sweep(f->reg, t);
    }
    assert_int_equal(state_of(f, "agt-a"),
                     TIDEMARK__AGENT_STATE__ONLINE); /* exactly 3 s: not yet */
    tm_registry_sweep(f->reg, T0 + 3001);
    assert_int_equal(state_of(f, "agt-a"), TIDEMARK__AGENT_STATE__STALE);
    assert_int_equal(state_of(f, "agt-b"), TIDEMARK__AGENT_STATE__ONLINE);
    tm_registry_sweep(f->reg, T0 + 10000);
    assert_int_equal(state_of(f, "agt-a"), TIDEMARK__AGENT_STATE__STALE);
    tm_registry_sweep(f->reg, T0 + 10001);
    assert_int_equal(state_of(f, "agt-a"), TIDEMARK__AGENT_STATE__LOST);

    /* It comes back. */
    assert_int_equal(tm_registry_heartbeat(f->reg, "agt-a", T0 + 20000, &s), TM_OK);
    assert_int_equal(s, TIDEMARK__AGENT_STATE__ONLINE);

    /* Every change is in the catalog's event log, newest first. */
    tm_agent_event *ev = NULL;
    size_t n = 0;
    tm_err err;
    assert_int_equal(tm_catalog_agent_events(f->cat, "agt-a", 10, &ev, &n, &err), TM_OK);
    assert_true(n >= 3);
    assert_int_equal(ev[0].to_state, TIDEMARK__AGENT_STATE__ONLINE);
    assert_int_equal(ev[1].to_state, TIDEMARK__AGENT_STATE__LOST);
    assert_int_equal(ev[2].to_state, TIDEMARK__AGENT_STATE__STALE);
    tm_agent_events_free(ev, n);

    uint32_t counts[5];
    tm_registry_counts(f->reg, counts);
    /* a is back; b stopped beating at +3 s and the +10 s sweep made it stale. */
    assert_int_equal(counts[TIDEMARK__AGENT_STATE__ONLINE], 1);
    assert_int_equal(counts[TIDEMARK__AGENT_STATE__STALE], 1);
}

static void test_pending_and_flush(void **state)
{
    fixture *f = *state;
    add_agent(f, "agt-p", "p", 0);
    int s;
    assert_int_equal(tm_registry_heartbeat(f->reg, "agt-p", T0 + 500, &s), TM_OK);
    assert_int_equal(s, TIDEMARK__AGENT_STATE__PENDING);
    assert_int_equal(tm_registry_set_approved(f->reg, "agt-p", 1), TM_OK);
    assert_int_equal(tm_registry_heartbeat(f->reg, "agt-p", T0 + 1500, &s), TM_OK);
    assert_int_equal(s, TIDEMARK__AGENT_STATE__ONLINE);

    /* Heartbeats reach the catalog only through the batched flush. */
    tm_agent_rec *rec = NULL;
    tm_err err;
    assert_int_equal(tm_catalog_agent_get(f->cat, "agt-p", &rec, &err), TM_OK);
    assert_int_equal(rec->last_seen_at, T0 / 1000);
    tm_agent_rec_free(rec);
    assert_int_equal(tm_registry_flush(f->reg, &err), TM_OK);
    assert_int_equal(tm_catalog_agent_get(f->cat, "agt-p", &rec, &err), TM_OK);
    assert_int_equal(rec->last_seen_at, (T0 + 1500) / 1000);
    tm_agent_rec_free(rec);

    assert_int_equal(tm_registry_remove(f->reg, "agt-p"), TM_OK);
    assert_int_equal(tm_registry_heartbeat(f->reg, "agt-p", T0 + 2000, &s), TM_ENOENT);
    assert_int_equal(tm_registry_remove(f->reg, "agt-p"), TM_ENOENT);
}

static void test_many_agents_and_reload(void **state)
{
    fixture *f = *state;
    char id[32], secret[32];
    for (int i = 0; i < 3000; i++) {
        snprintf(id, sizeof(id), "agt-%05d", i);
        snprintf(secret, sizeof(secret), "s-%d", i);
        add_agent(f, id, secret, 1);
    }
    assert_int_equal(tm_registry_size(f->reg), 3000);
    /* A restarted coordinator loads the same agents and their secrets. */
    tm_registry *again = NULL;
    tm_err err;
    tm_registry_opts o = {
        .heartbeat_interval_ms = 1000, .stale_after_missed = 3, .lost_after_missed = 10};
    assert_int_equal(tm_registry_new(&again, f->cat, &o, T0, &err), TM_OK);
    assert_int_equal(tm_registry_size(again), 3000);
    assert_int_equal(tm_registry_auth(again, "agt-02999", "s-2999"), TM_OK);
    assert_int_equal(tm_registry_auth(again, "agt-02999", "s-2998"), TM_EAUTH);
    tm_registry_free(again);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_auth, setup, teardown),
        cmocka_unit_test_setup_teardown(test_liveness_windows, setup, teardown),
        cmocka_unit_test_setup_teardown(test_pending_and_flush, setup, teardown),
        cmocka_unit_test_setup_teardown(test_many_agents_and_reload, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
