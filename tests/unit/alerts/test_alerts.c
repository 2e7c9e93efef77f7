/*
 * test_alerts.c - the alert state machine with an injected clock: `for`,
 * repeat, refresh, resolved once, dedupe by rule+target, flapping,
 * keep_firing_for, stale sweep, severity changes, listing and limits.
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
#include "coordinator/alerts.h"

#define S 1000LL
#define MIN (60 * S)
#define HOUR (60 * MIN)

typedef struct seen {
    tm_alert_notify_kind kind;
    char rule[64], target[64], summary[128], fp[17], detail0[64];
    tm_alert_severity sev, prev;
    uint32_t seq;
    int64_t starts, ends, sent;
    size_t n_labels;
} seen;

typedef struct rec {
    seen v[256];
    size_t n;        /* notify callback */
    size_t recorded; /* record callback (no REFRESH) */
    int64_t now;
} rec;

static void on_notify(const tm_alert_notification *n, void *arg)
{
    rec *r = arg;
    assert_true(r->n < 256);
    seen *s = &r->v[r->n++];
    s->kind = n->kind;
    snprintf(s->rule, sizeof s->rule, "%s", n->rule);
    snprintf(s->target, sizeof s->target, "%s", n->target);
    snprintf(s->summary, sizeof s->summary, "%s", n->summary);
    snprintf(s->fp, sizeof s->fp, "%s", n->fingerprint);
    snprintf(s->detail0, sizeof s->detail0, "%s", n->n_details ? n->details[0].value : "");
    s->sev = n->severity;
    s->prev = n->prev_severity;
    s->seq = n->seq;
    s->starts = n->starts_at_ms;
    s->ends = n->ends_at_ms;
    s->sent = n->sent_at_ms;
    s->n_labels = n->n_labels;
}

static void on_record(const tm_alert_notification *n, void *arg)
{
    rec *r = arg;
    assert_int_not_equal(n->kind, TM_ALERT_NOTIFY_REFRESH);
    r->recorded++;
}

static int64_t clock_fn(void *arg)
{
    return ((rec *)arg)->now;
}

static tm_alerts *mk(rec *r, const tm_alerts_rule_config *rules, size_t n_rules, int64_t refresh_ms)
{
    memset(r, 0, sizeof *r);
    r->now = 1700000000000LL;
    tm_alerts_config c = {
        .refresh_ms = refresh_ms,
        .rules = rules,
        .n_rules = n_rules,
        .notify = on_notify,
        .notify_arg = r,
        .record = on_record,
        .record_arg = r,
        .clock = clock_fn,
        .clock_arg = r,
    };
    tm_alerts *a = NULL;
    tm_err err = {0};
    assert_int_equal(tm_alerts_new(&c, &a, &err), TM_OK);
    return a;
}

/* Observe at r->now (now = 0: the injected clock). */
static tm_alert_action obs(tm_alerts *a, const char *rule, const char *target, int firing,
                           tm_alert_severity sev)
{
    tm_alert_action act;
    tm_err err = {0};
    tm_alert_kv d[] = {{"kind", "full"}, {"error", "connection refused"}};
    assert_int_equal(
        tm_alerts_observe(a, rule, target, sev, firing, "backup failed", d, 2, 0, &act, &err),
        TM_OK);
    return act;
}

static void test_fires_at_once_without_for(void **state)
{
    (void)state;
    rec r;
    tm_alerts *a = mk(&r, NULL, 0, -1);
    assert_int_equal(obs(a, "backup_failed", "pg-main", 1, TM_ALERT_CRITICAL), TM_ALERT_ACT_FIRING);
    assert_int_equal(r.n, 1);
    assert_int_equal(r.v[0].kind, TM_ALERT_NOTIFY_FIRING);
    assert_string_equal(r.v[0].rule, "backup_failed");
    assert_string_equal(r.v[0].target, "pg-main");
    assert_string_equal(r.v[0].summary, "backup failed");
    assert_string_equal(r.v[0].detail0, "full");
    assert_int_equal(r.v[0].seq, 1);
    assert_int_equal(r.v[0].starts, r.now);
    assert_int_equal(r.v[0].ends, 0);
    assert_int_equal(strlen(r.v[0].fp), 16);
    assert_int_equal(r.v[0].n_labels, 3); /* alertname, target, severity */
    assert_int_equal(r.recorded, 1);
    tm_alerts_free(a);
}

static void test_firing_after_for(void **state)
{
    (void)state;
    rec r;
    tm_alerts_rule_config rules[] = {
        {.name = "backup_late", .for_ms = 5 * MIN, .keep_firing_ms = -1}};
    tm_alerts *a = mk(&r, rules, 1, -1);
    assert_int_equal(obs(a, "backup_late", "pg-main", 1, TM_ALERT_WARNING), TM_ALERT_ACT_PENDING);
    int64_t t0 = r.now;
    for (int i = 1; i < 10; i++) { /* every 30 s for 4.5 min: still pending */
        r.now += 30 * S;
        assert_int_equal(obs(a, "backup_late", "pg-main", 1, TM_ALERT_WARNING),
                         TM_ALERT_ACT_PENDING);
    }
    assert_int_equal(r.n, 0);
    tm_alert_info *v;
    size_t n;
    assert_int_equal(tm_alerts_list(a, &v, &n, NULL), TM_OK);
    assert_int_equal(n, 1);
    assert_int_equal(v[0].state, TM_ALERT_STATE_PENDING);
    assert_int_equal(v[0].active_since_ms, t0);
    tm_alert_info_free(v, n);

    r.now += 30 * S; /* 5 min held */
    assert_int_equal(obs(a, "backup_late", "pg-main", 1, TM_ALERT_WARNING), TM_ALERT_ACT_FIRING);
    assert_int_equal(r.n, 1);
    assert_int_equal(r.v[0].starts, t0 + 5 * MIN);

    /* A false observation while pending forgets it, with no notification. */
    assert_int_equal(obs(a, "backup_late", "pg-other", 1, TM_ALERT_WARNING), TM_ALERT_ACT_PENDING);
    r.now += 4 * MIN;
    assert_int_equal(obs(a, "backup_late", "pg-other", 0, TM_ALERT_WARNING),
                     TM_ALERT_ACT_FORGOTTEN);
    r.now += 2 * MIN; /* true again: the `for` clock restarts */
    assert_int_equal(obs(a, "backup_late", "pg-other", 1, TM_ALERT_WARNING), TM_ALERT_ACT_PENDING);
    assert_int_equal(r.n, 1);
    tm_alerts_free(a);
}

static void test_repeat_interval(void **state)
{
    (void)state;
    rec r;
    /* default repeat 4 h; refresh off */
    tm_alerts *a = mk(&r, NULL, 0, -1);
    int64_t t0 = r.now;
    obs(a, "rpo_breached", "pg-main", 1, TM_ALERT_CRITICAL);
    size_t repeats = 0;
    for (int64_t t = 30 * S; t <= 9 * HOUR; t += 30 * S) {
        r.now = t0 + t;
        tm_alert_action act = obs(a, "rpo_breached", "pg-main", 1, TM_ALERT_CRITICAL);
        if (act == TM_ALERT_ACT_REPEAT) {
            repeats++;
            assert_int_equal(r.v[r.n - 1].kind, TM_ALERT_NOTIFY_REPEAT);
            assert_int_equal(r.v[r.n - 1].starts, t0); /* same alert */
            assert_int_equal(r.v[r.n - 1].seq, repeats + 1);
        } else {
            assert_int_equal(act, TM_ALERT_ACT_NONE);
        }
    }
    assert_int_equal(repeats, 2); /* at 4 h and 8 h */
    assert_int_equal(r.v[1].sent, t0 + 4 * HOUR);
    assert_int_equal(r.v[2].sent, t0 + 8 * HOUR);
    assert_int_equal(r.n, 3);
    tm_alerts_free(a);

    /* A per-rule repeat interval. */
    tm_alerts_rule_config rules[] = {
        {.name = "agent_lost", .repeat_ms = 10 * MIN, .for_ms = -1, .keep_firing_ms = -1}};
    a = mk(&r, rules, 1, -1);
    t0 = r.now;
    obs(a, "agent_lost", "db-1", 1, TM_ALERT_CRITICAL);
    for (int64_t t = 30 * S; t <= HOUR; t += 30 * S) {
        r.now = t0 + t;
        obs(a, "agent_lost", "db-1", 1, TM_ALERT_CRITICAL);
    }
    assert_int_equal(r.n, 7); /* firing + 6 repeats in an hour */
    tm_alerts_free(a);
}

static void test_refresh_for_alertmanager(void **state)
{
    (void)state;
    rec r;
    tm_alerts *a = mk(&r, NULL, 0, 0); /* refresh default: 60 s */
    int64_t t0 = r.now;
    obs(a, "repo_unreachable", "s3-eu", 1, TM_ALERT_CRITICAL);
    for (int64_t t = 30 * S; t <= 10 * MIN; t += 30 * S) {
        r.now = t0 + t;
        obs(a, "repo_unreachable", "s3-eu", 1, TM_ALERT_CRITICAL);
    }
    size_t refresh = 0;
    for (size_t i = 0; i < r.n; i++) {
        refresh += r.v[i].kind == TM_ALERT_NOTIFY_REFRESH;
    }
    assert_int_equal(refresh, 10);
    assert_int_equal(r.recorded, 1); /* the catalog sees the firing only */
    tm_alerts_free(a);
}

static void test_resolved_once(void **state)
{
    (void)state;
    rec r;
    tm_alerts *a = mk(&r, NULL, 0, -1);
    int64_t t0 = r.now;
    obs(a, "drill_failed", "pg-main", 1, TM_ALERT_CRITICAL);
    r.now += 10 * MIN;
    assert_int_equal(obs(a, "drill_failed", "pg-main", 0, TM_ALERT_CRITICAL),
                     TM_ALERT_ACT_RESOLVED);
    assert_int_equal(r.n, 2);
    assert_int_equal(r.v[1].kind, TM_ALERT_NOTIFY_RESOLVED);
    assert_int_equal(r.v[1].starts, t0);
    assert_int_equal(r.v[1].ends, t0 + 10 * MIN);
    assert_int_equal(r.v[1].seq, 2);
    assert_string_equal(r.v[1].fp, r.v[0].fp);
    assert_string_equal(r.v[1].detail0, "full"); /* the firing details travel on */
    for (int i = 0; i < 20; i++) {
        r.now += 30 * S;
        assert_int_equal(obs(a, "drill_failed", "pg-main", 0, TM_ALERT_CRITICAL),
                         TM_ALERT_ACT_NONE);
    }
    assert_int_equal(r.n, 2);
    assert_int_equal(r.recorded, 2);
    tm_alert_info *v;
    size_t n;
    assert_int_equal(tm_alerts_list(a, &v, &n, NULL), TM_OK);
    assert_int_equal(n, 0);
    assert_null(v);
    /* Fires again later: a new alert (new start), same fingerprint. */
    r.now += HOUR;
    assert_int_equal(obs(a, "drill_failed", "pg-main", 1, TM_ALERT_CRITICAL), TM_ALERT_ACT_FIRING);
    assert_int_equal(r.v[2].starts, r.now);
    assert_int_equal(r.v[2].seq, 1);
    assert_string_equal(r.v[2].fp, r.v[0].fp);
    tm_alerts_free(a);
}

static void firing_cb(const char *rule, size_t cnt, void *arg)
{
    (*(size_t *)arg)++;
    assert_int_equal(cnt, strcmp(rule, "backup_failed") == 0 ? 2 : 1);
}

static void test_dedupe_rule_target(void **state)
{
    (void)state;
    rec r;
    tm_alerts *a = mk(&r, NULL, 0, -1);
    /* The same condition reported by many evaluations (and twice per
     * evaluation) is one alert and one notification. */
    for (int i = 0; i < 10; i++) {
        obs(a, "backup_failed", "pg-main", 1, TM_ALERT_CRITICAL);
        obs(a, "backup_failed", "pg-main", 1, TM_ALERT_CRITICAL);
        r.now += 30 * S;
    }
    assert_int_equal(r.n, 1);
    /* Another target, another rule: separate alerts with distinct fingerprints;
     * "a"+"bc" and "ab"+"c" do not collide. */
    obs(a, "backup_failed", "pg-other", 1, TM_ALERT_CRITICAL);
    obs(a, "rpo_breached", "pg-main", 1, TM_ALERT_WARNING);
    obs(a, "a", "bc", 1, TM_ALERT_INFO);
    obs(a, "ab", "c", 1, TM_ALERT_INFO);
    obs(a, "queue_growing", "", 1, TM_ALERT_WARNING); /* fleet-wide */
    assert_int_equal(r.n, 6);
    for (size_t i = 0; i < r.n; i++) {
        for (size_t j = i + 1; j < r.n; j++) {
            assert_string_not_equal(r.v[i].fp, r.v[j].fp);
        }
    }
    assert_int_equal(r.v[5].n_labels, 2); /* no empty target label */

    tm_alert_info *v;
    size_t n;
    assert_int_equal(tm_alerts_list(a, &v, &n, NULL), TM_OK);
    assert_int_equal(n, 6);
    /* firing first, critical first, then rule, target */
    assert_string_equal(v[0].rule, "backup_failed");
    assert_string_equal(v[0].target, "pg-main");
    assert_string_equal(v[1].target, "pg-other");
    assert_int_equal(v[2].severity, TM_ALERT_WARNING);
    assert_int_equal(v[0].notifications, 1);
    assert_int_equal(v[0].n_details, 2);
    assert_string_equal(v[0].details[1].key, "error");
    tm_alert_info_free(v, n);

    /* tidemark_alerts_firing{rule} */
    size_t calls = 0;
    tm_alerts_firing_by_rule(a, firing_cb, &calls);
    assert_int_equal(calls, 5); /* backup_failed, rpo_breached, a, ab, queue_growing */
    tm_alerts_free(a);
}

static void test_flapping(void **state)
{
    (void)state;
    rec r;
    /* With `for`, a condition flapping faster than `for` never fires. */
    tm_alerts_rule_config rules[] = {
        {.name = "replication_gap", .for_ms = 2 * MIN, .keep_firing_ms = -1},
        {.name = "backup_failed", .for_ms = 0, .keep_firing_ms = 5 * MIN},
    };
    tm_alerts *a = mk(&r, rules, 2, -1);
    for (int i = 0; i < 40; i++) {
        obs(a, "replication_gap", "pg-main", i % 3 != 2, TM_ALERT_WARNING); /* 60 s on, 30 s off */
        r.now += 30 * S;
    }
    assert_int_equal(r.n, 0);

    /* With keep_firing_for, a firing alert that flaps stays one alert:
     * one FIRING, then one RESOLVED once it has been false for 5 min. */
    int64_t t0 = r.now;
    for (int i = 0; i < 40; i++) {
        obs(a, "backup_failed", "pg-main", i % 2 == 0, TM_ALERT_CRITICAL);
        r.now += 30 * S;
    }
    assert_int_equal(r.n, 1);
    assert_int_equal(r.v[0].kind, TM_ALERT_NOTIFY_FIRING);
    tm_alert_info *v;
    size_t n;
    assert_int_equal(tm_alerts_list(a, &v, &n, NULL), TM_OK);
    assert_int_equal(n, 2); /* and replication_gap, still pending */
    assert_int_equal(v[0].state, TM_ALERT_STATE_FIRING);
    assert_int_equal(v[0].clearing, 1); /* the last observation was false */
    assert_int_equal(v[1].state, TM_ALERT_STATE_PENDING);
    tm_alert_info_free(v, n);
    int64_t clear_from = r.now - 30 * S;
    tm_alert_action act;
    do {
        act = obs(a, "backup_failed", "pg-main", 0, TM_ALERT_CRITICAL);
        r.now += 30 * S;
    } while (act == TM_ALERT_ACT_CLEARING);
    assert_int_equal(act, TM_ALERT_ACT_RESOLVED);
    assert_int_equal(r.n, 2);
    assert_int_equal(r.v[1].kind, TM_ALERT_NOTIFY_RESOLVED);
    assert_int_equal(r.v[1].starts, t0);
    assert_int_equal(r.v[1].ends, clear_from + 5 * MIN);

    /* Without either, every flap is a firing + resolved pair: the caller's
     * evaluation decides, and each pair is a distinct alert episode. */
    for (int i = 0; i < 4; i++) {
        obs(a, "agent_stale", "db-1", i % 2 == 0, TM_ALERT_WARNING);
        r.now += 30 * S;
    }
    assert_int_equal(r.n, 6);
    tm_alerts_free(a);
}

static void test_severity_change_renotifies(void **state)
{
    (void)state;
    rec r;
    tm_alerts *a = mk(&r, NULL, 0, -1);
    obs(a, "backup_too_old", "pg-main", 1, TM_ALERT_WARNING);
    r.now += 30 * S;
    assert_int_equal(obs(a, "backup_too_old", "pg-main", 1, TM_ALERT_WARNING), TM_ALERT_ACT_NONE);
    r.now += 30 * S;
    assert_int_equal(obs(a, "backup_too_old", "pg-main", 1, TM_ALERT_CRITICAL),
                     TM_ALERT_ACT_REPEAT);
    assert_int_equal(r.v[1].sev, TM_ALERT_CRITICAL);
    assert_int_equal(r.v[1].prev, TM_ALERT_WARNING);
    assert_int_equal(r.v[0].prev, TM_ALERT_WARNING); /* unchanged: prev == severity */
    r.now += 30 * S;
    assert_int_equal(obs(a, "backup_too_old", "pg-main", 1, TM_ALERT_CRITICAL), TM_ALERT_ACT_NONE);
    tm_alerts_free(a);
}

static void test_stale_sweep_and_resolve_all(void **state)
{
    (void)state;
    rec r;
    tm_alerts *a = mk(&r, NULL, 0, -1); /* stale after 15 min */
    obs(a, "backup_failed", "deleted-target", 1, TM_ALERT_CRITICAL);
    obs(a, "backup_failed", "kept-target", 1, TM_ALERT_CRITICAL);
    for (int i = 0; i < 40; i++) {
        r.now += 30 * S;
        obs(a, "backup_failed", "kept-target", 1, TM_ALERT_CRITICAL);
        if (i == 20) {
            assert_int_equal(tm_alerts_sweep(a, 0), 0);
        }
    }
    assert_int_equal(tm_alerts_sweep(a, 0), 1);
    assert_int_equal(r.v[r.n - 1].kind, TM_ALERT_NOTIFY_RESOLVED);
    assert_string_equal(r.v[r.n - 1].target, "deleted-target");
    assert_int_equal(tm_alerts_sweep(a, 0), 0);
    assert_int_equal(tm_alerts_resolve_all(a, 0), 1);
    assert_string_equal(r.v[r.n - 1].target, "kept-target");
    assert_int_equal(r.v[r.n - 1].kind, TM_ALERT_NOTIFY_RESOLVED);
    tm_alerts_free(a);
}

static void test_bad_input_and_limits(void **state)
{
    (void)state;
    tm_err err = {0};
    tm_alerts *a = NULL;
    tm_alerts_rule_config dup[] = {{.name = "x"}, {.name = "x"}};
    tm_alerts_config c = {.rules = dup, .n_rules = 2};
    assert_int_equal(tm_alerts_new(&c, &a, &err), TM_ECONFIG);
    assert_non_null(strstr(err.msg, "configured twice"));
    tm_alert_kv bad[] = {{"severity", "x"}};
    tm_alerts_config c2 = {.static_labels = bad, .n_static_labels = 1};
    assert_int_equal(tm_alerts_new(&c2, &a, &err), TM_ECONFIG);
    assert_non_null(strstr(err.msg, "reserved"));

    tm_alert_kv env[] = {{"env", "prod"}};
    tm_alerts_config c3 = {.max_active = 2, .static_labels = env, .n_static_labels = 1};
    assert_int_equal(tm_alerts_new(&c3, &a, &err), TM_OK);
    assert_int_equal(
        tm_alerts_observe(a, NULL, "t", TM_ALERT_INFO, 1, NULL, NULL, 0, 1, NULL, &err), TM_EINVAL);
    assert_int_equal(
        tm_alerts_observe(a, "r", NULL, TM_ALERT_INFO, 1, NULL, NULL, 0, 1, NULL, &err), TM_EINVAL);
    assert_int_equal(
        tm_alerts_observe(a, "r", "t", (tm_alert_severity)7, 1, NULL, NULL, 0, 1, NULL, &err),
        TM_EINVAL);
    assert_int_equal(
        tm_alerts_observe(a, "r", "t1", TM_ALERT_INFO, 1, NULL, NULL, 0, 1, NULL, &err), TM_OK);
    assert_int_equal(
        tm_alerts_observe(a, "r", "t2", TM_ALERT_INFO, 1, NULL, NULL, 0, 1, NULL, &err), TM_OK);
    assert_int_equal(
        tm_alerts_observe(a, "r", "t3", TM_ALERT_INFO, 1, NULL, NULL, 0, 1, NULL, &err), TM_ENOSPC);
    assert_non_null(strstr(err.msg, "not tracked"));
    /* Existing alerts still update; a resolved one frees a slot. */
    assert_int_equal(
        tm_alerts_observe(a, "r", "t1", TM_ALERT_INFO, 0, NULL, NULL, 0, 2, NULL, &err), TM_OK);
    assert_int_equal(
        tm_alerts_observe(a, "r", "t3", TM_ALERT_INFO, 1, NULL, NULL, 0, 2, NULL, &err), TM_OK);
    tm_alerts_free(a);
    tm_alerts_free(NULL);

    tm_alert_severity s;
    assert_int_equal(tm_alert_severity_parse("critical", &s), TM_OK);
    assert_int_equal(s, TM_ALERT_CRITICAL);
    assert_int_equal(tm_alert_severity_parse("page", &s), TM_EINVAL);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_fires_at_once_without_for),
        cmocka_unit_test(test_firing_after_for),
        cmocka_unit_test(test_repeat_interval),
        cmocka_unit_test(test_refresh_for_alertmanager),
        cmocka_unit_test(test_resolved_once),
        cmocka_unit_test(test_dedupe_rule_target),
        cmocka_unit_test(test_flapping),
        cmocka_unit_test(test_severity_change_renotifies),
        cmocka_unit_test(test_stale_sweep_and_resolve_all),
        cmocka_unit_test(test_bad_input_and_limits),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
