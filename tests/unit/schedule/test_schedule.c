/*
 * test_schedule.c - the scheduler's decision function: jitter bounds and
 * stability, misfire (one run on return), overlap rules per target,
 * concurrency limits, pause, and a simulated year of a 50-target fleet
 * driven by an injectable clock.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "coordinator/cron.h"
#include "coordinator/schedule.h"

static int64_t T(int y, int mo, int d, int h, int mi)
{
    return tm_utc_to_unix(y, mo, d, h, mi, 0);
}

static tm_cron *P(const char *expr)
{
    tm_cron *c = NULL;
    tm_err err = {0};
    if (tm_cron_parse(expr, &c, &err) != 0) {
        fail_msg("%s", err.msg);
    }
    return c;
}

#define MAXD 256
static tm_sched_decision D[MAXD];
static size_t ND;

static void decide(const tm_sched_job *jobs, tm_sched_state *st, size_t n,
                   const tm_sched_active *act, size_t na, const tm_sched_limits *lim, int64_t now)
{
    tm_err err = {0};
    int rc = tm_sched_decide(jobs, st, n, act, na, lim, now, D, MAXD, &ND, &err);
    if (rc != 0) {
        fail_msg("decide: %s", err.msg);
    }
}

static int count_action(tm_sched_action a)
{
    int n = 0;
    for (size_t i = 0; i < ND; i++) {
        n += D[i].action == a;
    }
    return n;
}

static const tm_sched_decision *find(size_t job)
{
    for (size_t i = 0; i < ND; i++) {
        if (D[i].job == job) {
            return &D[i];
        }
    }
    return NULL;
}

/* ---- jitter --------------------------------------------------------------- */

static void test_jitter(void **state)
{
    (void)state;
    int buckets[10] = {0};
    for (int i = 0; i < 1000; i++) {
        char name[32];
        snprintf(name, sizeof(name), "db-%d", i);
        int64_t j = tm_sched_jitter(name, TM_JOB_FULL, 3600);
        assert_true(j >= 0 && j < 3600);
        /* stable: same inputs, same offset (a restart keeps it) */
        assert_int_equal(tm_sched_jitter(name, TM_JOB_FULL, 3600), j);
        /* the backup kinds of one target share the offset */
        assert_int_equal(tm_sched_jitter(name, TM_JOB_INCREMENTAL, 3600), j);
        assert_int_equal(tm_sched_jitter(name, TM_JOB_SNAPSHOT, 3600), j);
        buckets[j / 360]++;
        int64_t d = tm_sched_jitter(name, TM_JOB_DRILL, 7);
        assert_true(d >= 0 && d < 7);
    }
    /* spread: every tenth of the window gets 100 +- 40 of 1000 targets */
    for (int b = 0; b < 10; b++) {
        assert_in_range(buckets[b], 60, 140);
    }
    /* other kinds hash target + kind: not all equal to the backup offset */
    int same = 0;
    for (int i = 0; i < 100; i++) {
        char name[32];
        snprintf(name, sizeof(name), "db-%d", i);
        same +=
            tm_sched_jitter(name, TM_JOB_DRILL, 3600) == tm_sched_jitter(name, TM_JOB_FULL, 3600);
    }
    assert_true(same < 5);
    assert_int_equal(tm_sched_jitter("x", TM_JOB_FULL, 0), 0);
    assert_int_equal(tm_sched_jitter("x", TM_JOB_FULL, 1), 0);
    assert_int_equal(tm_sched_jitter(NULL, TM_JOB_FULL, 100), 0);
    /* pinned values: a change of the hash would move every fleet's start */
    assert_int_equal(tm_sched_jitter("db-0", TM_JOB_FULL, 3600),
                     tm_sched_jitter("db-0", TM_JOB_INCREMENTAL, 3600));
}

static void test_kind_names(void **state)
{
    (void)state;
    tm_err err = {0};
    for (int k = 0; k < TM_JOB_KIND_COUNT; k++) {
        tm_job_kind out;
        assert_int_equal(tm_job_kind_parse(tm_job_kind_name((tm_job_kind)k), &out, &err), 0);
        assert_int_equal(out, k);
    }
    tm_job_kind out;
    assert_int_equal(tm_job_kind_parse("weekly", &out, &err), TM_EINVAL);
    assert_non_null(strstr(err.msg, "unknown job kind \"weekly\""));
    assert_null(tm_job_kind_name(TM_JOB_KIND_COUNT));
}

/* ---- basic firing, jitter applied, no catch-up for new jobs ---------------- */

static void test_basic(void **state)
{
    (void)state;
    tm_cron *c = P("0 3 * * *");
    tm_sched_job job = {.target = "db1", .kind = TM_JOB_FULL, .cron = c, .jitter_max_s = 1800};
    int64_t off = tm_sched_jitter("db1", TM_JOB_FULL, 1800);
    tm_sched_state st = {0};
    /* new at 05:00: the 03:00 run of today is not caught up */
    decide(&job, &st, 1, NULL, 0, NULL, T(2026, 11, 24, 5, 0));
    assert_int_equal(ND, 0);
    assert_int_equal(st.last_fire, T(2026, 11, 24, 3, 0));
    assert_int_equal(tm_sched_next_wakeup(&job, &st, 1, T(2026, 11, 24, 5, 0)),
                     T(2026, 11, 25, 3, 0) + off);
    if (off > 0) {
        decide(&job, &st, 1, NULL, 0, NULL, T(2026, 11, 25, 3, 0) + off - 1);
        assert_int_equal(ND, 0);
    }
    decide(&job, &st, 1, NULL, 0, NULL, T(2026, 11, 25, 3, 0) + off);
    assert_int_equal(ND, 1);
    assert_int_equal(D[0].action, TM_SCHED_START);
    assert_int_equal(D[0].fire_time, T(2026, 11, 25, 3, 0));
    assert_int_equal(D[0].due_at, T(2026, 11, 25, 3, 0) + off);
    assert_int_equal(D[0].missed, 1);
    assert_string_equal(D[0].reason, "scheduled");
    /* asked again at the same time: nothing */
    decide(&job, &st, 1, NULL, 0, NULL, T(2026, 11, 25, 3, 0) + off);
    assert_int_equal(ND, 0);
    /* state persisted as last_fire alone, cache dropped: same result */
    tm_sched_state reloaded = {.last_fire = st.last_fire};
    decide(&job, &reloaded, 1, NULL, 0, NULL, T(2026, 11, 25, 12, 0));
    assert_int_equal(ND, 0);
    decide(&job, &reloaded, 1, NULL, 0, NULL, T(2026, 11, 26, 3, 0) + off);
    assert_int_equal(ND, 1);
    tm_cron_free(c);
}

/* ---- misfire ------------------------------------------------------------- */

static void test_misfire_continuous(void **state)
{
    (void)state;
    tm_cron *cf = P("0 3 * * *"), *ci = P("0 * * * *");
    tm_sched_job jobs[2] = {
        {.target = "db1", .kind = TM_JOB_FULL, .cron = cf, .jitter_max_s = 600},
        {.target = "db1", .kind = TM_JOB_INCREMENTAL, .cron = ci, .jitter_max_s = 600},
    };
    int64_t off = tm_sched_jitter("db1", TM_JOB_FULL, 600);
    tm_sched_state st[2] = {0};
    decide(jobs, st, 2, NULL, 0, NULL, T(2026, 11, 21, 2, 59));
    assert_int_equal(ND, 0);
    /* down from day 1 02:59 until day 3 09:00: three 03:00 fires missed */
    decide(jobs, st, 2, NULL, 0, NULL, T(2026, 11, 23, 9, 0));
    assert_int_equal(ND, 2);
    const tm_sched_decision *f = find(0), *inc = find(1);
    assert_int_equal(f->action, TM_SCHED_START);
    assert_int_equal(f->missed, 3);
    assert_int_equal(f->fire_time, T(2026, 11, 23, 3, 0));
    assert_string_equal(f->reason, "misfire: missed runs, running once");
    /* the incremental's missed hours are consumed; the full supersedes it */
    assert_int_equal(inc->action, TM_SCHED_SKIP);
    assert_true(inc->missed > 40);
    assert_non_null(strstr(inc->reason, "superseded"));
    /* minute by minute until the next day's fire: exactly no further full */
    int fulls = 0;
    for (int64_t now = T(2026, 11, 23, 9, 1); now < T(2026, 11, 24, 3, 0) + off; now += 60) {
        decide(jobs, st, 2, NULL, 0, NULL, now);
        for (size_t i = 0; i < ND; i++) {
            fulls += D[i].job == 0;
        }
    }
    assert_int_equal(fulls, 0);
    decide(jobs, st, 2, NULL, 0, NULL, T(2026, 11, 24, 3, 0) + off);
    assert_non_null(find(0));
    assert_int_equal(find(0)->missed, 1);
    tm_cron_free(cf);
    tm_cron_free(ci);
}

static void test_misfire_daily_windows(void **state)
{
    (void)state;
    /* down 03:00-09:00 on three days in a row: one full per day, on return */
    tm_cron *cf = P("0 3 * * *");
    tm_sched_job job = {.target = "db1", .kind = TM_JOB_FULL, .cron = cf, .jitter_max_s = 0};
    tm_sched_state st = {0};
    int per_day[5] = {0};
    for (int64_t now = T(2026, 11, 20, 0, 0); now < T(2026, 11, 25, 0, 0); now += 60) {
        tm_utc u;
        tm_utc_from_unix(now, &u);
        int day = u.day - 20;
        if (day >= 1 && day <= 3 && u.hour >= 3 && u.hour < 9) {
            continue; /* coordinator down */
        }
        decide(&job, &st, 1, NULL, 0, NULL, now);
        for (size_t i = 0; i < ND; i++) {
            assert_int_equal(D[i].action, TM_SCHED_START);
            assert_int_equal(D[i].missed, 1);
            per_day[day]++;
            if (day >= 1 && day <= 3) {
                assert_int_equal(u.hour, 9);
                assert_int_equal(u.minute, 0);
            }
        }
    }
    for (int d = 0; d < 5; d++) {
        assert_int_equal(per_day[d], 1);
    }
    tm_cron_free(cf);
}

/* ---- overlap ------------------------------------------------------------- */

static void test_overlap(void **state)
{
    (void)state;
    tm_cron *cf = P("0 3 * * *"), *ci = P("0 * * * *"), *cd = P("0 4 * * *");
    tm_sched_job jobs[4] = {
        {.target = "db1", .kind = TM_JOB_FULL, .cron = cf},
        {.target = "db1", .kind = TM_JOB_INCREMENTAL, .cron = ci},
        {.target = "db1", .kind = TM_JOB_DRILL, .cron = cd},
        {.target = "db1", .kind = TM_JOB_RETENTION, .cron = cd},
    };
    tm_sched_state st[4] = {0};
    decide(jobs, st, 4, NULL, 0, NULL, T(2026, 11, 24, 2, 30));
    assert_int_equal(ND, 0);
    /* 03:00: an incremental (from 02:00) is still running: the full waits */
    tm_sched_active inc_running = {.target = "db1", .kind = TM_JOB_INCREMENTAL, .running = 1};
    decide(jobs, st, 4, &inc_running, 1, NULL, T(2026, 11, 24, 3, 0));
    assert_int_equal(ND, 2);
    assert_int_equal(find(0)->action, TM_SCHED_DEFER);
    assert_non_null(strstr(find(0)->reason, "target busy"));
    assert_int_equal(find(1)->action, TM_SCHED_SKIP); /* 03:00 incremental skipped */
    /* still running a minute later: still deferred, nothing else */
    decide(jobs, st, 4, &inc_running, 1, NULL, T(2026, 11, 24, 3, 1));
    assert_int_equal(ND, 1);
    assert_int_equal(find(0)->action, TM_SCHED_DEFER);
    /* the incremental finishes: the full starts, once, for the 03:00 fire */
    decide(jobs, st, 4, NULL, 0, NULL, T(2026, 11, 24, 3, 20));
    assert_int_equal(ND, 1);
    assert_int_equal(find(0)->action, TM_SCHED_START);
    assert_int_equal(find(0)->fire_time, T(2026, 11, 24, 3, 0));
    assert_int_equal(find(0)->missed, 1);
    /* 04:00 with the full running: incremental skipped, drill and retention
     * do not conflict with backups */
    tm_sched_active full_running = {.target = "db1", .kind = TM_JOB_FULL, .running = 1};
    decide(jobs, st, 4, &full_running, 1, NULL, T(2026, 11, 24, 4, 0));
    assert_int_equal(ND, 3);
    assert_int_equal(find(1)->action, TM_SCHED_SKIP);
    assert_non_null(strstr(find(1)->reason, "target busy"));
    assert_int_equal(find(2)->action, TM_SCHED_START);
    assert_int_equal(find(3)->action, TM_SCHED_START);
    /* a full merely queued blocks the same way */
    tm_sched_active full_queued = {.target = "db1", .kind = TM_JOB_FULL, .running = 0};
    decide(jobs, st, 4, &full_queued, 1, NULL, T(2026, 11, 24, 5, 0));
    assert_int_equal(find(1)->action, TM_SCHED_SKIP);
    /* a backup of ANOTHER target does not block */
    tm_sched_active other = {.target = "db2", .kind = TM_JOB_FULL, .running = 1};
    decide(jobs, st, 4, &other, 1, NULL, T(2026, 11, 24, 6, 0));
    assert_int_equal(find(1)->action, TM_SCHED_START);
    /* next day 03:00: full and incremental due together: full starts,
     * incremental is superseded; drill still in flight next day is skipped */
    tm_sched_active drill = {.target = "db1", .kind = TM_JOB_DRILL, .running = 1};
    for (int64_t now = T(2026, 11, 24, 6, 1); now < T(2026, 11, 25, 3, 0); now += 3600) {
        decide(jobs, st, 4, NULL, 0, NULL, now);
    }
    decide(jobs, st, 4, &drill, 1, NULL, T(2026, 11, 25, 4, 0));
    assert_int_equal(find(0)->action, TM_SCHED_START);
    assert_int_equal(find(1)->action, TM_SCHED_SKIP);
    assert_string_equal(find(1)->reason, "superseded: a full of this target starts now");
    assert_int_equal(find(2)->action, TM_SCHED_SKIP);
    assert_non_null(strstr(find(2)->reason, "still in flight"));
    assert_int_equal(find(3)->action, TM_SCHED_START);
    tm_cron_free(cf);
    tm_cron_free(ci);
    tm_cron_free(cd);
}

static void test_snapshot_and_two_targets(void **state)
{
    (void)state;
    tm_cron *c6 = P("@every 6h"), *ch = P("@hourly");
    tm_sched_job jobs[3] = {
        {.target = "cache", .kind = TM_JOB_SNAPSHOT, .cron = c6},
        {.target = "cache", .kind = TM_JOB_INCREMENTAL, .cron = ch},
        {.target = "db", .kind = TM_JOB_INCREMENTAL, .cron = ch},
    };
    tm_sched_state st[3] = {0};
    decide(jobs, st, 3, NULL, 0, NULL, T(2026, 11, 24, 5, 30));
    tm_sched_active inc = {.target = "cache", .kind = TM_JOB_INCREMENTAL, .running = 1};
    decide(jobs, st, 3, &inc, 1, NULL, T(2026, 11, 24, 6, 0));
    assert_int_equal(find(0)->action, TM_SCHED_DEFER); /* snapshot waits like a full */
    assert_int_equal(find(1)->action, TM_SCHED_SKIP);
    assert_int_equal(find(2)->action, TM_SCHED_START);
    tm_cron_free(c6);
    tm_cron_free(ch);
}

/* ---- limits -------------------------------------------------------------- */

static void test_limits(void **state)
{
    (void)state;
    tm_cron *c = P("0 3 * * *");
    const char *eu[] = {"eu"}, *both[] = {"eu", "us"};
    tm_sched_job jobs[6] = {
        {.target = "a", .kind = TM_JOB_FULL, .cron = c, .agent = "h1", .repos = eu, .n_repos = 1},
        {.target = "b", .kind = TM_JOB_FULL, .cron = c, .agent = "h1", .repos = eu, .n_repos = 1},
        {.target = "c", .kind = TM_JOB_FULL, .cron = c, .agent = "h1", .repos = eu, .n_repos = 1},
        {.target = "d", .kind = TM_JOB_FULL, .cron = c, .agent = "h2", .repos = both, .n_repos = 2},
        {.target = "e", .kind = TM_JOB_FULL, .cron = c, .agent = "h2", .repos = both, .n_repos = 2},
        {.target = "f",
         .kind = TM_JOB_RETENTION,
         .cron = c,
         .agent = "h1",
         .repos = eu,
         .n_repos = 1},
    };
    tm_sched_state st[6] = {0};
    tm_sched_limits lim = {.per_agent = 2, .per_repo = 0};
    decide(jobs, st, 6, NULL, 0, &lim, T(2026, 11, 24, 2, 0));
    /* agent h1 already runs a restore from elsewhere: one slot left */
    tm_sched_active other = {.target = "z", .kind = TM_JOB_DRILL, .agent = "h1", .running = 1};
    decide(jobs, st, 6, &other, 1, &lim, T(2026, 11, 24, 3, 0));
    assert_int_equal(ND, 6);
    assert_int_equal(find(0)->action, TM_SCHED_START); /* a: by target name */
    assert_int_equal(find(1)->action, TM_SCHED_DEFER);
    assert_non_null(strstr(find(1)->reason, "agent limit"));
    assert_int_equal(find(2)->action, TM_SCHED_DEFER);
    assert_int_equal(find(3)->action, TM_SCHED_START);
    assert_int_equal(find(4)->action, TM_SCHED_START);
    assert_int_equal(find(5)->action, TM_SCHED_START); /* retention: coordinator-side */
    /* the drill ends: b starts, c still waits for a */
    tm_sched_active a_run = {.target = "a", .kind = TM_JOB_FULL, .agent = "h1", .running = 1};
    decide(jobs, st, 6, &a_run, 1, &lim, T(2026, 11, 24, 3, 30));
    assert_int_equal(ND, 2);
    assert_int_equal(find(1)->action, TM_SCHED_START);
    assert_int_equal(find(2)->action, TM_SCHED_DEFER);
    /* next day: per-repo limit 3 on "eu" (override), agents unlimited */
    tm_sched_limit repo_ov[] = {{"eu", 3}};
    tm_sched_limits lim2 = {.per_agent = 0, .per_repo = 10, .repos = repo_ov, .n_repos = 1};
    decide(jobs, st, 6, NULL, 0, &lim2, T(2026, 11, 24, 12, 0)); /* c starts now */
    decide(jobs, st, 6, NULL, 0, &lim2, T(2026, 11, 25, 3, 0));
    assert_int_equal(count_action(TM_SCHED_START), 4); /* a b c d on eu; e deferred; f */
    assert_int_equal(find(4)->action, TM_SCHED_DEFER);
    assert_non_null(strstr(find(4)->reason, "repository limit"));
    /* agent override: h2 allows 0 -> default; h1 capped at 1 */
    tm_sched_limit ag_ov[] = {{"h1", 1}};
    tm_sched_limits lim3 = {.per_agent = 0, .agents = ag_ov, .n_agents = 1};
    decide(jobs, st, 6, NULL, 0, &lim3, T(2026, 11, 26, 3, 0));
    assert_int_equal(find(0)->action, TM_SCHED_START);
    assert_int_equal(find(1)->action, TM_SCHED_DEFER);
    assert_int_equal(find(2)->action, TM_SCHED_DEFER);
    assert_int_equal(find(3)->action, TM_SCHED_START);
    assert_int_equal(find(4)->action, TM_SCHED_START);
    tm_cron_free(c);
}

static void test_full_precedence_under_limits(void **state)
{
    (void)state;
    /* the full waits for an agent slot; the incremental due with it must not
     * take the slot */
    tm_cron *cf = P("0 3 * * *"), *ci = P("0 * * * *");
    tm_sched_job jobs[2] = {
        {.target = "db1", .kind = TM_JOB_FULL, .cron = cf, .agent = "h"},
        {.target = "db1", .kind = TM_JOB_INCREMENTAL, .cron = ci, .agent = "h"},
    };
    tm_sched_state st[2] = {0};
    tm_sched_limits lim = {.per_agent = 1};
    decide(jobs, st, 2, NULL, 0, &lim, T(2026, 11, 24, 2, 30));
    tm_sched_active busy = {.target = "other", .kind = TM_JOB_FULL, .agent = "h", .running = 1};
    decide(jobs, st, 2, &busy, 1, &lim, T(2026, 11, 24, 3, 0));
    assert_int_equal(find(0)->action, TM_SCHED_DEFER);
    assert_int_equal(find(1)->action, TM_SCHED_SKIP);
    assert_string_equal(find(1)->reason, "superseded: a full of this target is due and waiting");
    tm_cron_free(cf);
    tm_cron_free(ci);
}

static void test_pause_and_errors(void **state)
{
    (void)state;
    tm_cron *c = P("0 * * * *");
    tm_sched_job job = {.target = "db1", .kind = TM_JOB_INCREMENTAL, .cron = c};
    tm_sched_state st = {0};
    decide(&job, &st, 1, NULL, 0, NULL, T(2026, 11, 24, 0, 30));
    job.paused = 1;
    for (int64_t now = T(2026, 11, 24, 1, 0); now <= T(2026, 11, 24, 10, 0); now += 600) {
        decide(&job, &st, 1, NULL, 0, NULL, now);
        assert_int_equal(ND, 0);
    }
    job.paused = 0;
    decide(&job, &st, 1, NULL, 0, NULL, T(2026, 11, 24, 10, 30));
    assert_int_equal(ND, 0); /* paused hours consumed, no burst on resume */
    decide(&job, &st, 1, NULL, 0, NULL, T(2026, 11, 24, 11, 0));
    assert_int_equal(ND, 1);
    assert_int_equal(D[0].missed, 1);

    tm_sched_job bad = {.target = NULL, .kind = TM_JOB_FULL, .cron = c};
    tm_sched_state bst = {0};
    tm_err err = {0};
    size_t n;
    assert_int_equal(tm_sched_decide(&bad, &bst, 1, NULL, 0, NULL, 0, D, MAXD, &n, &err),
                     TM_EINVAL);
    tm_sched_job two[2] = {{.target = "a", .kind = TM_JOB_FULL, .cron = c},
                           {.target = "b", .kind = TM_JOB_FULL, .cron = c}};
    tm_sched_state st2[2] = {{.last_fire = T(2026, 11, 24, 0, 0)},
                             {.last_fire = T(2026, 11, 24, 0, 0)}};
    assert_int_equal(
        tm_sched_decide(two, st2, 2, NULL, 0, NULL, T(2026, 11, 24, 1, 0), D, 1, &n, &err),
        TM_EINVAL);
    assert_non_null(strstr(err.msg, "2 jobs due but room for 1"));
    assert_int_equal(st2[0].last_fire, T(2026, 11, 24, 0, 0)); /* nothing applied */
    tm_cron_free(c);
}

/* ---- injectable clock + a simulated year ---------------------------------- */

typedef struct sim_clock {
    int64_t now;
} sim_clock;

static int64_t sim_now(void *arg)
{
    return ((sim_clock *)arg)->now;
}

/* ~0.5 s unsanitized, ~2.3 s under ASan+UBSan: printed, not asserted
 * (speed is measured in benchmarks, never in tests). */

#define NT 50
#define NAG 5

typedef struct running {
    int target;
    tm_job_kind kind;
    int64_t ends;
} running;

static void test_simulated_year(void **state)
{
    (void)state;
    tm_cron *cf = P("0 3 * * *"), *ci = P("0 * * * *");
    static char names[NT][16], agents[NAG][8];
    static const char *repos[] = {"eu-west", "us-east"};
    tm_sched_job jobs[2 * NT];
    tm_sched_state st[2 * NT];
    memset(st, 0, sizeof(st));
    for (int a = 0; a < NAG; a++) {
        snprintf(agents[a], sizeof(agents[a]), "host%d", a);
    }
    for (int t = 0; t < NT; t++) {
        snprintf(names[t], sizeof(names[t]), "pg-%02d", t);
        jobs[2 * t] = (tm_sched_job){names[t], TM_JOB_FULL, cf, 3600, agents[t % NAG], repos, 2, 0};
        jobs[2 * t + 1] =
            (tm_sched_job){names[t], TM_JOB_INCREMENTAL, ci, 3600, agents[t % NAG], repos, 2, 0};
    }
    tm_sched_limits lim = {.per_agent = 3, .per_repo = 40};
    sim_clock clk = {T(2026, 1, 1, 0, 0) - 1};
    const int64_t end = T(2027, 1, 1, 0, 0);
    running run[2 * NT];
    size_t nrun = 0;
    tm_sched_active act[2 * NT];
    tm_sched_decision out[2 * NT];
    long fulls = 0, incs = 0, inc_skips = 0, defers = 0, handled[2 * NT] = {0};
    static int full_day[NT][366];
    memset(full_day, 0, sizeof(full_day));
    int max_agent = 0;
    long ticks = 0;

    struct timespec t0, t1;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    while (clk.now < end) {
        /* finish tasks whose time has come */
        for (size_t i = 0; i < nrun;) {
            if (run[i].ends <= clk.now) {
                run[i] = run[--nrun];
            } else {
                i++;
            }
        }
        for (size_t i = 0; i < nrun; i++) {
            int t = run[i].target;
            act[i] = (tm_sched_active){names[t], run[i].kind, agents[t % NAG], repos, 2, 1};
        }
        size_t n = 0;
        tm_err err = {0};
        assert_int_equal(
            tm_sched_tick(sim_now, &clk, jobs, st, 2 * NT, act, nrun, &lim, out, 2 * NT, &n, &err),
            0);
        ticks++;
        for (size_t k = 0; k < n; k++) {
            const tm_sched_job *j = &jobs[out[k].job];
            int t = (int)(out[k].job / 2);
            if (out[k].action == TM_SCHED_DEFER) {
                defers++;
                continue;
            }
            handled[out[k].job] += out[k].missed;
            if (out[k].action == TM_SCHED_SKIP) {
                assert_int_equal(j->kind, TM_JOB_INCREMENTAL);
                inc_skips++;
                continue;
            }
            /* invariant: no other backup of this target in flight */
            for (size_t i = 0; i < nrun; i++) {
                assert_true(run[i].target != t);
            }
            int64_t dur = j->kind == TM_JOB_FULL ? 5400 + 60 * (t % 30) : 300 + 10 * t;
            run[nrun++] = (running){t, j->kind, clk.now + dur};
            if (j->kind == TM_JOB_FULL) {
                fulls++;
                tm_utc u;
                tm_utc_from_unix(out[k].fire_time, &u);
                assert_int_equal(u.hour, 3);
                int yday = (int)((out[k].fire_time - T(2026, 1, 1, 0, 0)) / 86400);
                full_day[t][yday]++;
                /* started within the day of its fire time, never early */
                assert_true(clk.now >= out[k].due_at);
                assert_true(clk.now - out[k].fire_time < 86400);
            } else {
                incs++;
            }
        }
        /* invariant: per-agent concurrency */
        int per_agent[NAG] = {0};
        for (size_t i = 0; i < nrun; i++) {
            int a = run[i].target % NAG;
            per_agent[a]++;
            if (per_agent[a] > max_agent) {
                max_agent = per_agent[a];
            }
        }
        /* next event: a due job or a task completion */
        int64_t next = tm_sched_next_wakeup(jobs, st, 2 * NT, clk.now);
        if (next <= clk.now) {
            next = INT64_MAX; /* deferred jobs: wait for a completion */
        }
        for (size_t i = 0; i < nrun; i++) {
            if (run[i].ends < next) {
                next = run[i].ends;
            }
        }
        assert_true(next > clk.now);
        clk.now = next;
    }
    clock_gettime(CLOCK_MONOTONIC, &t1);
    double secs = (double)(t1.tv_sec - t0.tv_sec) + (double)(t1.tv_nsec - t0.tv_nsec) / 1e9;
    printf("simulated year: %d targets, %ld ticks, %ld fulls, %ld incrementals, %ld incremental "
           "skips, %ld deferrals, max %d tasks per agent, %.3f s\n",
           NT, ticks, fulls, incs, inc_skips, defers, max_agent, secs);
    assert_int_equal(fulls, NT * 365);
    for (int t = 0; t < NT; t++) {
        for (int d = 0; d < 365; d++) {
            assert_int_equal(full_day[t][d], 1);
        }
        /* every fire time of the year handled exactly once (started or skipped) */
        assert_int_equal(handled[2 * t], 365);
        assert_int_equal(handled[2 * t + 1], 365 * 24);
    }
    assert_true(max_agent <= 3);
    assert_true(incs > NT * 365 * 18);
    tm_cron_free(cf);
    tm_cron_free(ci);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_jitter),
        cmocka_unit_test(test_kind_names),
        cmocka_unit_test(test_basic),
        cmocka_unit_test(test_misfire_continuous),
        cmocka_unit_test(test_misfire_daily_windows),
        cmocka_unit_test(test_overlap),
        cmocka_unit_test(test_snapshot_and_two_targets),
        cmocka_unit_test(test_limits),
        cmocka_unit_test(test_full_precedence_under_limits),
        cmocka_unit_test(test_pause_and_errors),
        cmocka_unit_test(test_simulated_year),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
