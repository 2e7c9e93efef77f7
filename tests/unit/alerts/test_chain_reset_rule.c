/*
 * test_chain_reset_rule.c - the log_chain_reset rule (coordinator/alert_rules.c)
 * over the archiver table (coordinator/archiver.c) with an injected clock:
 * a reset fires a warning naming the target, why and where the old chain
 * ended; the same report from every repository counts once; an agent that
 * restarted (its count back to 0) or cannot read its status does not erase
 * the newest reset; the alert resolves after the hold; another reset while
 * it fires notifies again; /metrics counts every reset.
 */
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
#include "coordinator/alert_rules.h"
#include "coordinator/alerts.h"
#include "coordinator/archiver.h"

#define S 1000LL
#define MIN (60 * S)
#define HOUR (60 * MIN)
#define T0 1700000000000LL

typedef struct note {
    tm_alert_notify_kind kind;
    tm_alert_severity sev;
    char target[64], summary[768];
} note;

typedef struct rec {
    note v[32];
    size_t n;
    int64_t now;
} rec;

static void on_notify(const tm_alert_notification *n, void *arg)
{
    rec *r = arg;
    if (n->kind == TM_ALERT_NOTIFY_REFRESH) {
        return;
    }
    assert_true(r->n < 32);
    note *s = &r->v[r->n++];
    s->kind = n->kind;
    s->sev = n->severity;
    snprintf(s->target, sizeof s->target, "%s", n->target);
    snprintf(s->summary, sizeof s->summary, "%s", n->summary);
}

static int64_t clock_fn(void *arg)
{
    return ((rec *)arg)->now;
}

typedef struct fixture {
    rec r;
    tm_alerts *alerts;
    tm_archiver_table *table;
    int64_t alerted;
} fixture;

static void mk(fixture *f)
{
    memset(f, 0, sizeof *f);
    f->r.now = T0;
    tm_alerts_config c = {.refresh_ms = -1,
                          .notify = on_notify,
                          .notify_arg = &f->r,
                          .clock = clock_fn,
                          .clock_arg = &f->r};
    tm_err err = {0};
    assert_int_equal(tm_alerts_new(&c, &f->alerts, &err), TM_OK);
    assert_int_equal(tm_archiver_table_new(&f->table, &err), TM_OK);
}

static void done(fixture *f)
{
    tm_alerts_free(f->alerts);
    tm_archiver_table_free(f->table);
}

/* The agent's report at the coordinator's now, once per repository. */
static void report(fixture *f, uint64_t resets, int64_t last_ms, const char *why, const char *from,
                   const char *error, int repositories)
{
    tm_archiver_status st = {.chain_resets = resets, .last_chain_reset_ms = last_ms};
    snprintf(st.chain_reset, sizeof st.chain_reset, "%s", why);
    snprintf(st.chain_reset_from, sizeof st.chain_reset_from, "%s", from);
    snprintf(st.error, sizeof st.error, "%s", error);
    for (int i = 0; i < repositories; i++) {
        assert_int_equal(tm_archiver_put(f->table, "app", &st, f->r.now), TM_OK);
    }
}

/* One evaluation of the rule at now; the notifications it sent. */
static size_t eval(fixture *f, int64_t now)
{
    size_t before = f->r.n;
    f->r.now = now;
    tm_archiver_status st;
    assert_int_equal(tm_archiver_get(f->table, "app", &st), TM_OK);
    tm_alert_rule_chain_reset(f->alerts, "app", &st, HOUR, &f->alerted, now);
    return f->r.n - before;
}

static double metric(fixture *f, const char *sample)
{
    tm_metrics *m = NULL;
    assert_int_equal(tm_metrics_new(&m), TM_OK);
    assert_int_equal(tm_metrics_add_collector(m, tm_archiver_collect, f->table), TM_OK);
    char *text = NULL;
    size_t len = 0;
    assert_int_equal(tm_metrics_render(m, &text, &len), TM_OK);
    const char *p = strstr(text, sample);
    double v = p != NULL ? strtod(p + strlen(sample), NULL) : -1;
    free(text);
    tm_metrics_free(m);
    return v;
}

static void test_reset_fires_names_target_why_and_gap(void **state)
{
    (void)state;
    fixture f;
    mk(&f);
    report(&f, 0, 0, "", "", "", 2);
    assert_int_equal(eval(&f, T0 + 30 * S), 0);
    assert_true(metric(&f, "tidemark_log_chain_resets_total{target=\"app\"} ") == 0);

    /* A reset at T0+40s (the agent's clock), reported from both
     * repositories at T0+41s. */
    f.r.now = T0 + 41 * S;
    report(&f, 1, T0 + 40 * S, "generation reset: the database file was replaced",
           "00000003:00000001.0000000000000012", "", 2);
    assert_int_equal(eval(&f, T0 + 60 * S), 1);
    note *n = &f.r.v[0];
    assert_int_equal(n->kind, TM_ALERT_NOTIFY_FIRING);
    assert_int_equal(n->sev, TM_ALERT_WARNING);
    assert_string_equal(n->target, "app");
    assert_non_null(strstr(n->summary, "log chain of app reset at "));
    assert_non_null(strstr(n->summary, "the database file was replaced"));
    assert_non_null(strstr(n->summary, "ended at 00000003:00000001.0000000000000012"));
    assert_non_null(strstr(n->summary, "gap"));
    assert_true(metric(&f, "tidemark_log_chain_resets_total{target=\"app\"} ") == 1);
    assert_true(metric(&f, "tidemark_log_last_chain_reset_timestamp_seconds{target=\"app\"} ") ==
                (double)(T0 + 40 * S) / 1000.0);

    /* Still firing, nothing new, until the hold from when the coordinator
     * heard of it (T0+41s) has passed; then resolved once. */
    assert_int_equal(eval(&f, T0 + 30 * MIN), 0);
    assert_int_equal(eval(&f, T0 + 41 * S + HOUR - S), 0);
    assert_int_equal(eval(&f, T0 + 41 * S + HOUR), 1);
    assert_int_equal(f.r.v[1].kind, TM_ALERT_NOTIFY_RESOLVED);
    assert_int_equal(eval(&f, T0 + 2 * HOUR), 0);
    done(&f);
}

static void test_agent_restart_and_unreadable_status_keep_the_reset(void **state)
{
    (void)state;
    fixture f;
    mk(&f);
    f.r.now = T0;
    report(&f, 1, T0 - S, "replaced", "a:1", "", 1);
    assert_int_equal(eval(&f, T0 + S), 1);
    /* The agent restarted (its notes gone) and then could not read its
     * status: the reset is still known, still counted once, still firing. */
    f.r.now = T0 + MIN;
    report(&f, 0, 0, "", "", "", 1);
    f.r.now = T0 + 2 * MIN;
    report(&f, 0, 0, "", "", "database file app.db: No such file or directory", 1);
    assert_int_equal(eval(&f, T0 + 3 * MIN), 0);
    tm_archiver_status st;
    assert_int_equal(tm_archiver_get(f.table, "app", &st), TM_OK);
    assert_int_equal(st.last_chain_reset_ms, T0 - S);
    assert_string_equal(st.chain_reset, "replaced");
    assert_string_equal(st.chain_reset_from, "a:1");
    assert_true(metric(&f, "tidemark_log_chain_resets_total{target=\"app\"} ") == 1);

    /* The restarted agent's own first reset, at count 1 (as before the
     * restart): a new reset, counted, and notified again while the first
     * one's alert still fires. */
    f.r.now = T0 + 10 * MIN;
    report(&f, 1, T0 + 10 * MIN, "salt changed", "b:7", "", 2);
    assert_int_equal(eval(&f, T0 + 11 * MIN), 2);
    assert_int_equal(f.r.v[1].kind, TM_ALERT_NOTIFY_RESOLVED);
    assert_int_equal(f.r.v[2].kind, TM_ALERT_NOTIFY_FIRING);
    assert_non_null(strstr(f.r.v[2].summary, "salt changed"));
    assert_non_null(strstr(f.r.v[2].summary, "ended at b:7"));
    /* Two more on the same agent run: counted by their difference. */
    f.r.now = T0 + 12 * MIN;
    report(&f, 3, T0 + 12 * MIN, "replaced", "c:2", "", 2);
    assert_int_equal(eval(&f, T0 + 12 * MIN), 2);
    assert_true(metric(&f, "tidemark_log_chain_resets_total{target=\"app\"} ") == 4);
    /* The hold counts from the newest one. */
    assert_int_equal(eval(&f, T0 + 12 * MIN + HOUR - S), 0);
    assert_int_equal(eval(&f, T0 + 12 * MIN + HOUR), 1);
    done(&f);
}

/* A coordinator that starts after the reset: the agent's time is all it
 * has, so an old reset does not fire again for a full hold. */
static void test_reset_from_before_the_coordinator(void **state)
{
    (void)state;
    fixture f;
    mk(&f);
    f.r.now = T0;
    report(&f, 2, T0 - 2 * HOUR, "replaced", "a:1", "", 1);
    assert_int_equal(eval(&f, T0 + S), 0);
    assert_true(metric(&f, "tidemark_log_chain_resets_total{target=\"app\"} ") == 2);
    done(&f);
    mk(&f);
    report(&f, 1, T0 - 20 * MIN, "replaced", "a:9", "", 1);
    assert_int_equal(eval(&f, T0 + S), 1);
    assert_int_equal(eval(&f, T0 + 40 * MIN), 1);
    assert_int_equal(f.r.v[1].kind, TM_ALERT_NOTIFY_RESOLVED);
    /* The agent restarted unseen and its first reset came with the same
     * count: a newer reset all the same. */
    f.r.now = T0 + 50 * MIN;
    report(&f, 1, T0 + 49 * MIN, "replaced", "a:12", "", 1);
    assert_int_equal(eval(&f, T0 + 50 * MIN), 1);
    assert_int_equal(f.r.v[2].kind, TM_ALERT_NOTIFY_FIRING);
    assert_true(metric(&f, "tidemark_log_chain_resets_total{target=\"app\"} ") == 2);
    done(&f);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_reset_fires_names_target_why_and_gap),
        cmocka_unit_test(test_agent_restart_and_unreadable_status_keep_the_reset),
        cmocka_unit_test(test_reset_from_before_the_coordinator),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
