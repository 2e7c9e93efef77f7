/*
 * test_retention.c - the GFS retention plan.
 *
 * The core test runs 8 simulated years of daily fulls (with skipped days,
 * double days, failed runs, and hourly incrementals on a few days), applies
 * the plan every simulated day (dropped backups are deleted), and checks at
 * every day that the kept set equals the set a deliberately simple reference
 * computes over the WHOLE history: libc strftime buckets (%Y-%m-%d, %G-W%V,
 * %Y-%m, %Y), "distinct keys newest first, newest backup per key". Then the
 * edge cases one by one: ISO weeks, leap days, holds, minimum count, newest,
 * incremental chains, failed runs, the log cutoff, formatting, determinism.
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
#include "coordinator/retention.h"

static int64_t T(int y, int mo, int d, int h, int mi)
{
    return tm_utc_to_unix(y, mo, d, h, mi, 0);
}

static tm_retention_plan *plan_of(const tm_backup_rec *r, size_t n, const tm_retention_policy *p,
                                  int64_t now)
{
    tm_retention_plan *plan = NULL;
    tm_err err = {0};
    if (tm_retention_plan_new(r, n, p, now, &plan, &err) != 0) {
        fail_msg("plan: %s", err.msg);
    }
    return plan;
}

static const tm_retention_item *item(const tm_retention_plan *p, const char *id)
{
    for (size_t i = 0; i < p->n_items; i++) {
        if (strcmp(p->items[i].id, id) == 0) {
            return &p->items[i];
        }
    }
    fail_msg("no item %s", id);
    return NULL;
}

static void expect(const tm_retention_plan *p, const char *id, int keep, const char *reason_part)
{
    const tm_retention_item *it = item(p, id);
    if (it->keep != keep || (reason_part != NULL && strstr(it->reason, reason_part) == NULL)) {
        fail_msg("%s: %s \"%s\", want %s with \"%s\"", id, it->keep ? "keep" : "drop", it->reason,
                 keep ? "keep" : "drop", reason_part ? reason_part : "");
    }
}

/* ---- the simulation -------------------------------------------------------- */

typedef struct sim_b {
    char id[48];
    char parent[48];
    tm_backup_type type;
    int64_t finished;
    int ok;
    char key[5][24]; /* hour, day, week, month, year: strftime */
    int alive;       /* not yet deleted by the applied plans */
    long parent_ix;  /* index in B, -1 none */
} sim_b;

static sim_b *B;
static size_t NB, CAPB;

static sim_b *add_b(tm_backup_type type, int64_t fin, int ok, const char *parent)
{
    if (NB == CAPB) {
        CAPB = CAPB ? 2 * CAPB : 4096;
        B = realloc(B, CAPB * sizeof(*B));
    }
    sim_b *b = &B[NB++];
    memset(b, 0, sizeof(*b));
    time_t tt = (time_t)fin;
    struct tm g;
    gmtime_r(&tt, &g);
    char stamp[32];
    strftime(stamp, sizeof(stamp), "%Y%m%dT%H%M%SZ", &g);
    snprintf(b->id, sizeof(b->id), "%s-%s", stamp,
             type == TM_BACKUP_FULL ? "full"
             : ok                   ? "incr"
                                    : "fail");
    if (!ok && type == TM_BACKUP_FULL) {
        snprintf(b->id, sizeof(b->id), "%s-failed", stamp);
    }
    b->parent_ix = -1;
    if (parent != NULL) {
        snprintf(b->parent, sizeof(b->parent), "%s", parent);
        for (size_t i = NB - 1; i-- > 0;) {
            if (strcmp(B[i].id, parent) == 0) {
                b->parent_ix = (long)i;
                break;
            }
        }
    }
    b->type = type;
    b->finished = fin;
    b->ok = ok;
    static const char *fmts[5] = {"%Y-%m-%dT%H", "%Y-%m-%d", "%G-W%V", "%Y-%m", "%Y"};
    for (int k = 0; k < 5; k++) {
        strftime(b->key[k], sizeof(b->key[k]), fmts[k], &g);
    }
    b->alive = 1;
    return b;
}

static int by_time_desc(const void *a, const void *b)
{
    const sim_b *x = *(const sim_b *const *)a, *y = *(const sim_b *const *)b;
    if (x->finished != y->finished) {
        return x->finished > y->finished ? -1 : 1;
    }
    return -strcmp(x->id, y->id);
}

/* Reference: what must be kept, over the whole history B[0..NB). */
static void reference(const tm_retention_policy *p, int64_t now, char *want)
{
    memset(want, 0, NB);
    sim_b **all = malloc(NB * sizeof(*all));
    size_t n = 0;
    for (size_t i = 0; i < NB; i++) {
        all[n++] = &B[i];
    }
    qsort(all, n, sizeof(*all), by_time_desc);
    /* good fulls, newest first */
    int classes[5] = {p->keep_hourly, p->keep_daily, p->keep_weekly, p->keep_monthly,
                      p->keep_yearly};
    for (int c = 0; c < 5; c++) {
        int lim = classes[c] < 0 ? 1 << 30 : classes[c];
        const char *keys[64];
        int nk = 0;
        for (size_t i = 0; i < n && nk < lim && nk < 64; i++) {
            if (all[i]->type != TM_BACKUP_FULL || !all[i]->ok) {
                continue;
            }
            int seen = 0;
            for (int k = 0; k < nk; k++) {
                seen |= strcmp(keys[k], all[i]->key[c]) == 0;
            }
            if (!seen) {
                keys[nk++] = all[i]->key[c];
            }
        }
        for (int k = 0; k < nk; k++) {
            sim_b *best = NULL;
            for (size_t i = 0; i < n; i++) {
                if (all[i]->type == TM_BACKUP_FULL && all[i]->ok &&
                    strcmp(all[i]->key[c], keys[k]) == 0 &&
                    (best == NULL || all[i]->finished > best->finished)) {
                    best = all[i];
                }
            }
            want[best - B] = 1;
        }
    }
    int last = 0;
    for (size_t i = 0; i < n && last < p->keep_last; i++) {
        if (all[i]->type == TM_BACKUP_FULL && all[i]->ok) {
            want[all[i] - B] = 1;
            last++;
        }
    }
    /* newest good (the simulation's incrementals are all ok and chained) */
    sim_b *newest = NULL, *anchor = NULL, *oldest = NULL;
    for (size_t i = 0; i < n; i++) {
        if (all[i]->ok) {
            if (newest == NULL) {
                newest = all[i];
            }
            if (anchor == NULL && all[i]->finished <= now - p->pitr_window_s) {
                anchor = all[i];
            }
            oldest = all[i];
        }
    }
    if (p->pitr_window_s > 0 && anchor == NULL) {
        anchor = oldest;
    }
    sim_b *forced[2] = {newest, p->pitr_window_s > 0 ? anchor : NULL};
    for (int f = 0; f < 2; f++) {
        for (sim_b *x = forced[f]; x != NULL;) {
            want[x - B] = 1;
            x = x->parent_ix >= 0 ? &B[x->parent_ix] : NULL;
        }
    }
    int kept_fulls = 0;
    for (size_t i = 0; i < n; i++) {
        kept_fulls += want[all[i] - B] && all[i]->ok && all[i]->type == TM_BACKUP_FULL;
    }
    for (size_t i = 0; i < n && kept_fulls < p->min_count; i++) {
        if (!want[all[i] - B] && all[i]->ok && all[i]->type == TM_BACKUP_FULL) {
            want[all[i] - B] = 1;
            kept_fulls++;
        }
    }
    /* incrementals: kept iff the parent is kept; parents are older */
    for (size_t i = n; i-- > 0;) {
        if (all[i]->type == TM_BACKUP_INCREMENTAL && want[all[i]->parent_ix]) {
            want[all[i] - B] = 1;
        }
    }
    int failed = 0;
    for (size_t i = 0; i < n; i++) {
        if (!all[i]->ok && (p->keep_failed < 0 || failed < p->keep_failed)) {
            want[all[i] - B] = 1;
            failed++;
        }
    }
    free(all);
}

static void run_years(const tm_retention_policy *pol, int years, double *secs_out,
                      size_t *max_alive)
{
    free(B);
    B = NULL;
    NB = CAPB = 0;
    const int64_t start = T(2019, 12, 20, 0, 0); /* crosses 2020 and 2024 (leap), W53 years */
    const int days = years * 365 + years / 4;
    char *want = malloc((size_t)days * 30 + 64);
    tm_backup_rec *recs = malloc((size_t)days * 30 * sizeof(*recs) + 64);
    char last_id[48] = ""; /* a copy: B moves when it grows */
    double plan_secs = 0;
    *max_alive = 0;
    for (int d = 0; d < days; d++) {
        int64_t day = start + (int64_t)d * 86400;
        if (d % 11 == 5) { /* a failed attempt */
            add_b(TM_BACKUP_FULL, day + 2 * 3600 + 60, 0, NULL);
        }
        if (d % 97 != 50) { /* some days have no backup at all */
            sim_b *f = add_b(TM_BACKUP_FULL, day + 3 * 3600 + (d * 37) % 3000, 1, NULL);
            snprintf(last_id, sizeof(last_id), "%s", f->id);
            int incr_day = (d >= 100 && d < 104) || d >= days - 3;
            for (int h = 4; incr_day && h < 24; h++) {
                sim_b *i = add_b(TM_BACKUP_INCREMENTAL, day + h * 3600 + 300, 1, last_id);
                snprintf(last_id, sizeof(last_id), "%s", i->id);
            }
        }
        if (d % 13 == 7) { /* a second full on the same day */
            add_b(TM_BACKUP_FULL, day + 15 * 3600, 1, NULL);
        }
        int64_t now = day + 23 * 3600 + 59 * 60;
        /* the catalog as it is now: the backups not deleted so far */
        size_t n = 0;
        for (size_t i = 0; i < NB; i++) {
            if (B[i].alive) {
                recs[n++] = (tm_backup_rec){
                    B[i].id, "pg-main",     B[i].type, B[i].parent[0] ? B[i].parent : NULL,
                    0,       B[i].finished, B[i].ok,   0};
            }
        }
        if (n > *max_alive) {
            *max_alive = n;
        }
        struct timespec t0, t1;
        clock_gettime(CLOCK_MONOTONIC, &t0);
        tm_retention_plan *plan = plan_of(recs, n, pol, now);
        clock_gettime(CLOCK_MONOTONIC, &t1);
        plan_secs += (double)(t1.tv_sec - t0.tv_sec) + (double)(t1.tv_nsec - t0.tv_nsec) / 1e9;
        assert_int_equal(plan->n_items, n);
        /* apply: delete what the plan drops */
        for (size_t i = 0; i < plan->n_items; i++) {
            if (!plan->items[i].keep) {
                for (size_t j = 0; j < NB; j++) {
                    if (B[j].alive && strcmp(B[j].id, plan->items[i].id) == 0) {
                        B[j].alive = 0;
                    }
                }
            }
        }
        tm_retention_plan_free(plan);
        reference(pol, now, want);
        for (size_t i = 0; i < NB; i++) {
            if (B[i].alive != want[i]) {
                fail_msg("day %d (now %lld): %s is %s, reference says %s", d, (long long)now,
                         B[i].id, B[i].alive ? "kept" : "dropped", want[i] ? "keep" : "drop");
            }
        }
    }
    *secs_out = plan_secs;
    free(want);
    free(recs);
}

static void test_eight_years_default(void **state)
{
    (void)state;
    tm_retention_policy pol;
    tm_retention_policy_default(&pol);
    double secs;
    size_t max_alive;
    struct timespec t0, t1;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    run_years(&pol, 8, &secs, &max_alive);
    clock_gettime(CLOCK_MONOTONIC, &t1);
    double total = (double)(t1.tv_sec - t0.tv_sec) + (double)(t1.tv_nsec - t0.tv_nsec) / 1e9;
    size_t alive = 0, fulls = 0, incs = 0;
    for (size_t i = 0; i < NB; i++) {
        alive += B[i].alive;
        fulls += B[i].alive && B[i].type == TM_BACKUP_FULL && B[i].ok;
        incs += B[i].alive && B[i].type == TM_BACKUP_INCREMENTAL;
    }
    printf("8 years (default policy): %zu backups made, %zu kept at the end (%zu good fulls, %zu "
           "incrementals), at most %zu in the catalog, plans %.3f s, whole test %.3f s\n",
           NB, alive, fulls, incs, max_alive, secs, total);
    /* 7 daily + 4 weekly + 12 monthly + 7 yearly overlap: 30 at most + PITR */
    assert_true(fulls >= 20 && fulls <= 31);
    /* the last 3 days' incrementals (20 a day) live with their fulls, except
     * on the day with a second full at 15:00: its daily is the 15:00 one, so
     * the 03:00 full and its incrementals go */
    assert_int_equal(incs, 2 * 20);
    /* the 7 yearly buckets: the oldest kept full is from 2021 (2021..2027) */
    int64_t oldest = INT64_MAX;
    for (size_t i = 0; i < NB; i++) {
        if (B[i].alive && B[i].ok && B[i].finished < oldest) {
            oldest = B[i].finished;
        }
    }
    tm_utc u;
    tm_utc_from_unix(oldest, &u);
    assert_int_equal(u.year, 2021);
}

static void test_eight_years_other_policy(void **state)
{
    (void)state;
    tm_retention_policy pol = {.keep_last = 2,
                               .keep_hourly = 4,
                               .keep_daily = 3,
                               .keep_weekly = 2,
                               .keep_monthly = 6,
                               .keep_yearly = -1,
                               .min_count = 5,
                               .keep_failed = 0,
                               .pitr_window_s = 0};
    double secs;
    size_t max_alive;
    run_years(&pol, 8, &secs, &max_alive);
    size_t yearly = 0;
    for (size_t i = 0; i < NB; i++) {
        yearly += B[i].alive && !B[i].ok;
    }
    assert_int_equal(yearly, 0); /* keep_failed 0 */
    printf("8 years (last 2, hourly 4, 3/2/6/unlimited yearly, min 5, no PITR): plans %.3f s\n",
           secs);
}

/* ---- edge cases ------------------------------------------------------------ */

#define FULL(id, t)                                                                                \
    {                                                                                              \
        id, "db", TM_BACKUP_FULL, NULL, 0, t, 1, 0                                                 \
    }

static void test_iso_weeks(void **state)
{
    (void)state;
    tm_retention_policy pol = {.keep_weekly = 3};
    tm_backup_rec r[] = {
        FULL("a-2024-12-29", T(2024, 12, 29, 3, 0)), /* Sunday, 2024-W52 */
        FULL("b-2024-12-30", T(2024, 12, 30, 3, 0)), /* Monday, 2025-W01 */
        FULL("c-2025-01-05", T(2025, 1, 5, 3, 0)),   /* Sunday, 2025-W01 */
        FULL("d-2025-01-06", T(2025, 1, 6, 3, 0)),   /* Monday, 2025-W02 */
    };
    tm_retention_plan *p = plan_of(r, 4, &pol, T(2025, 1, 7, 0, 0));
    expect(p, "d-2025-01-06", 1, "weekly 2025-W02");
    expect(p, "c-2025-01-05", 1, "weekly 2025-W01");
    expect(p, "b-2024-12-30", 0, "not kept by any rule");
    expect(p, "a-2024-12-29", 1, "weekly 2024-W52");
    tm_retention_plan_free(p);

    /* 2026-12-28 .. 2027-01-03 is one week, 2026-W53; Jan 1 is in week 53 */
    tm_backup_rec r2[] = {
        FULL("x-2026-12-28", T(2026, 12, 28, 3, 0)),
        FULL("y-2026-12-31", T(2026, 12, 31, 3, 0)),
        FULL("z-2027-01-01", T(2027, 1, 1, 3, 0)),
        FULL("w-2027-01-04", T(2027, 1, 4, 3, 0)),
    };
    pol = (tm_retention_policy){.keep_weekly = 2, .keep_yearly = 2};
    p = plan_of(r2, 4, &pol, T(2027, 1, 5, 0, 0));
    expect(p, "w-2027-01-04", 1, "weekly 2027-W01, yearly 2027");
    expect(p, "z-2027-01-01", 1, "weekly 2026-W53");
    expect(p, "y-2026-12-31", 1, "yearly 2026"); /* calendar year, not ISO year */
    expect(p, "x-2026-12-28", 0, NULL);
    assert_null(strstr(item(p, "y-2026-12-31")->reason, "weekly"));
    tm_retention_plan_free(p);

    /* Dec 31 in week 1 of the next ISO year: 2024-12-31 is 2025-W01 */
    tm_backup_rec r3[] = {FULL("m-2024-12-31", T(2024, 12, 31, 3, 0)),
                          FULL("n-2024-12-27", T(2024, 12, 27, 3, 0))};
    pol = (tm_retention_policy){.keep_weekly = 5, .keep_monthly = 5};
    p = plan_of(r3, 2, &pol, T(2025, 1, 1, 0, 0));
    expect(p, "m-2024-12-31", 1, "weekly 2025-W01, monthly 2024-12");
    expect(p, "n-2024-12-27", 1, "weekly 2024-W52");
    tm_retention_plan_free(p);
}

static void test_leap_days(void **state)
{
    (void)state;
    tm_retention_policy pol = {.keep_daily = 3, .keep_monthly = 2};
    tm_backup_rec r[] = {
        FULL("feb28", T(2028, 2, 28, 3, 0)),   FULL("feb29a", T(2028, 2, 29, 3, 0)),
        FULL("feb29b", T(2028, 2, 29, 22, 0)), FULL("mar01", T(2028, 3, 1, 3, 0)),
        FULL("feb27", T(2028, 2, 27, 3, 0)),
    };
    tm_retention_plan *p = plan_of(r, 5, &pol, T(2028, 3, 1, 12, 0));
    expect(p, "mar01", 1, "daily 2028-03-01, monthly 2028-03");
    expect(p, "feb29b", 1, "daily 2028-02-29, monthly 2028-02");
    expect(p, "feb29a", 0, NULL);
    expect(p, "feb28", 1, "daily 2028-02-28");
    expect(p, "feb27", 0, NULL);
    tm_retention_plan_free(p);
}

static void test_holds_min_newest(void **state)
{
    (void)state;
    tm_backup_rec r[] = {
        FULL("f1", T(2026, 1, 1, 3, 0)), FULL("f2", T(2026, 2, 1, 3, 0)),
        FULL("f3", T(2026, 3, 1, 3, 0)), FULL("f4", T(2026, 4, 1, 3, 0)),
        FULL("f5", T(2026, 5, 1, 3, 0)),
    };
    r[0].keep = 1;
    /* every class off, no minimum, no PITR: still the newest and the hold */
    tm_retention_policy none = {0};
    tm_retention_plan *p = plan_of(r, 5, &none, T(2026, 6, 1, 0, 0));
    expect(p, "f5", 1, "newest");
    expect(p, "f1", 1, "permanent hold");
    expect(p, "f2", 0, "not kept by any rule");
    assert_int_equal(p->targets[0].kept, 2);
    assert_int_equal(p->targets[0].dropped, 3);
    assert_string_equal(p->targets[0].log_cutoff_id, "f5");
    tm_retention_plan_free(p);
    /* minimum count 4: the hold counts, then newest first */
    tm_retention_policy min4 = {.min_count = 4};
    p = plan_of(r, 5, &min4, T(2026, 6, 1, 0, 0));
    expect(p, "f4", 1, "minimum count");
    expect(p, "f3", 1, "minimum count");
    expect(p, "f2", 0, NULL);
    tm_retention_plan_free(p);
    /* all newer runs failed: the old good one is the newest good backup */
    r[3].ok = 0;
    r[4].ok = 0;
    tm_retention_policy d1 = {.keep_daily = 1, .keep_failed = 1};
    p = plan_of(r, 5, &d1, T(2026, 6, 1, 0, 0));
    expect(p, "f3", 1, "daily 2026-03-01, newest");
    expect(p, "f5", 1, "failed: keep-failed 1");
    expect(p, "f4", 0, "failed");
    expect(p, "f2", 0, NULL);
    tm_retention_plan_free(p);
}

static void test_pitr_cutoff(void **state)
{
    (void)state;
    tm_backup_rec r[10];
    char ids[10][16];
    for (int d = 0; d < 10; d++) {
        snprintf(ids[d], sizeof(ids[d]), "day%d", d);
        r[d] = (tm_backup_rec){ids[d],
                               "db",
                               TM_BACKUP_FULL,
                               NULL,
                               T(2026, 11, 10 + d, 3, 0),
                               T(2026, 11, 10 + d, 3, 30),
                               1,
                               0};
    }
    tm_retention_policy pol = {.keep_daily = 2, .pitr_window_s = 5 * 86400};
    /* now = day9 12:00; window start = day4 12:00 -> anchor day4 (finished 03:30) */
    tm_retention_plan *p = plan_of(r, 10, &pol, T(2026, 11, 19, 12, 0));
    expect(p, "day4", 1, "PITR window");
    expect(p, "day3", 0, NULL);
    expect(p, "day5", 0, NULL); /* logs from day4 cover it */
    expect(p, "day9", 1, "daily 2026-11-19, newest");
    assert_string_equal(p->targets[0].log_cutoff_id, "day4");
    assert_int_equal(p->targets[0].log_cutoff, T(2026, 11, 14, 3, 0)); /* its start */
    tm_retention_plan_free(p);
    /* a young target (nothing older than the window): logs from the oldest */
    p = plan_of(r + 7, 3, &pol, T(2026, 11, 19, 12, 0));
    expect(p, "day7", 1, "PITR window");
    assert_string_equal(p->targets[0].log_cutoff_id, "day7");
    tm_retention_plan_free(p);
    /* no good backup: no cutoff */
    r[0].ok = 0;
    p = plan_of(r, 1, &pol, T(2026, 11, 19, 12, 0));
    assert_null(p->targets[0].log_cutoff_id);
    assert_int_equal(p->targets[0].log_cutoff, 0);
    tm_retention_plan_free(p);
}

static void test_incremental_chains(void **state)
{
    (void)state;
    tm_backup_rec r[] = {
        {"F0", "db", TM_BACKUP_FULL, NULL, 0, T(2026, 11, 1, 3, 0), 1, 0},
        {"F0-i1", "db", TM_BACKUP_INCREMENTAL, "F0", 0, T(2026, 11, 1, 4, 0), 1, 0},
        {"F1", "db", TM_BACKUP_FULL, NULL, 0, T(2026, 11, 2, 3, 0), 1, 0},
        {"F1-i1", "db", TM_BACKUP_INCREMENTAL, "F1", 0, T(2026, 11, 2, 4, 0), 1, 0},
        {"F1-i2", "db", TM_BACKUP_INCREMENTAL, "F1-i1", 0, T(2026, 11, 2, 5, 0), 0, 0},
        {"F1-i3", "db", TM_BACKUP_INCREMENTAL, "F1-i2", 0, T(2026, 11, 2, 6, 0), 1, 0},
        {"F2", "db", TM_BACKUP_FULL, NULL, 0, T(2026, 11, 3, 3, 0), 1, 0},
        {"F2-i1", "db", TM_BACKUP_INCREMENTAL, "F2", 0, T(2026, 11, 3, 4, 0), 1, 0},
        {"F2-i2", "db", TM_BACKUP_INCREMENTAL, "F2-i1", 0, T(2026, 11, 3, 5, 0), 1, 0},
        {"orphan", "db", TM_BACKUP_INCREMENTAL, "gone", 0, T(2026, 11, 3, 6, 0), 1, 0},
    };
    tm_retention_policy pol = {.keep_daily = 2, .keep_failed = 0};
    tm_retention_plan *p = plan_of(r, 10, &pol, T(2026, 11, 4, 0, 0));
    expect(p, "F2", 1, "daily 2026-11-03");
    expect(p, "F2-i2", 1, "newest"); /* the newest good backup is an incremental */
    expect(p, "F2-i1", 1, "parent of kept incremental F2-i2");
    expect(p, "F1", 1, "daily 2026-11-02");
    expect(p, "F1-i1", 1, "incremental of kept F1");
    expect(p, "F1-i2", 0, "failed");
    expect(p, "F1-i3", 0, "chain broken: parent F1-i2 failed or broken");
    expect(p, "F0", 0, "not kept by any rule");
    expect(p, "F0-i1", 0, "incremental of dropped F0");
    expect(p, "orphan", 0, "chain broken: parent gone not in catalog");
    tm_retention_plan_free(p);
    /* a hold on an incremental keeps its full, and the full keeps its chain */
    r[1].keep = 1;
    p = plan_of(r, 10, &pol, T(2026, 11, 4, 0, 0));
    expect(p, "F0-i1", 1, "permanent hold");
    expect(p, "F0", 1, "parent of kept incremental F0-i1");
    tm_retention_plan_free(p);
    /* cycles in hostile input do not hang or crash */
    tm_backup_rec cyc[] = {
        {"a", "db", TM_BACKUP_INCREMENTAL, "b", 0, 10, 1, 0},
        {"b", "db", TM_BACKUP_INCREMENTAL, "a", 0, 20, 1, 0},
        {"c", "db", TM_BACKUP_INCREMENTAL, "c", 0, 30, 1, 0},
    };
    p = plan_of(cyc, 3, &pol, 100);
    expect(p, "a", 0, "chain broken");
    expect(p, "c", 0, "chain broken");
    tm_retention_plan_free(p);
    /* a long chain (no recursion) */
    enum { LONG = 200000 };
    tm_backup_rec *lr = calloc(LONG, sizeof(*lr));
    char(*lid)[16] = calloc(LONG, 16);
    for (int i = 0; i < LONG; i++) {
        snprintf(lid[i], 16, "b%07d", i);
        lr[i] = (tm_backup_rec){lid[i],
                                "db",
                                i ? TM_BACKUP_INCREMENTAL : TM_BACKUP_FULL,
                                i ? lid[i - 1] : NULL,
                                0,
                                1000 + i,
                                1,
                                0};
    }
    p = plan_of(lr, LONG, &pol, 1000 + LONG);
    assert_int_equal(p->targets[0].kept, LONG);
    tm_retention_plan_free(p);
    free(lr);
    free(lid);
}

static void test_failed_and_targets(void **state)
{
    (void)state;
    tm_backup_rec r[] = {
        {"x1", "a", TM_BACKUP_FULL, NULL, 0, 100, 0, 0},
        {"x2", "a", TM_BACKUP_FULL, NULL, 0, 200, 0, 0},
        {"x3", "a", TM_BACKUP_FULL, NULL, 0, 300, 0, 0},
        {"x4", "a", TM_BACKUP_FULL, NULL, 0, 400, 0, 1}, /* held failed: kept, not counted */
        {"x5", "a", TM_BACKUP_FULL, NULL, 0, 500, 0, 0},
        {"s1", "b", TM_BACKUP_SNAPSHOT, NULL, 0, 100, 1, 0},
        {"s2", "b", TM_BACKUP_SNAPSHOT, NULL, 0, 90000, 1, 0},
    };
    tm_retention_policy pol;
    tm_retention_policy_default(&pol);
    pol.keep_failed = 2;
    tm_retention_plan *p = plan_of(r, 7, &pol, 100000);
    assert_int_equal(p->n_targets, 2);
    assert_string_equal(p->targets[0].target, "a");
    expect(p, "x5", 1, "failed: keep-failed 2");
    expect(p, "x4", 1, "permanent hold");
    expect(p, "x3", 1, "failed: keep-failed 2");
    expect(p, "x2", 0, "failed");
    expect(p, "x1", 0, "failed");
    assert_null(p->targets[0].log_cutoff_id);
    /* snapshots are bases: GFS applies to them */
    expect(p, "s2", 1, "daily 1970-01-02");
    expect(p, "s1", 1, "daily 1970-01-01");
    tm_retention_plan_free(p);
}

static char *format(const tm_retention_plan *p, int json)
{
    char *buf = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&buf, &len);
    assert_int_equal(tm_retention_plan_format(p, json, f), 0);
    fclose(f);
    return buf;
}

static void test_format_and_determinism(void **state)
{
    (void)state;
    tm_backup_rec r[] = {
        {"20261120T030000Z-full", "pg \"main\"", TM_BACKUP_FULL, NULL, 0, T(2026, 11, 20, 3, 10), 1,
         0},
        {"20261121T030000Z-full", "pg \"main\"", TM_BACKUP_FULL, NULL, 0, T(2026, 11, 21, 3, 10), 1,
         0},
        {"20261121T040000Z-incr", "pg \"main\"", TM_BACKUP_INCREMENTAL, "20261121T030000Z-full", 0,
         T(2026, 11, 21, 4, 5), 1, 0},
        {"20261119T030000Z-full", "redis", TM_BACKUP_FULL, NULL, 0, T(2026, 11, 19, 3, 10), 0, 0},
        {"20261118T030000Z-full", "pg \"main\"", TM_BACKUP_FULL, NULL, 0, T(2026, 11, 18, 3, 10), 1,
         0},
    };
    tm_retention_policy pol;
    tm_retention_policy_default(&pol);
    pol.keep_daily = 1;
    pol.keep_weekly = 0;
    pol.keep_monthly = 0;
    pol.keep_yearly = 0;
    pol.pitr_window_s = 2 * 86400;
    tm_retention_plan *p = plan_of(r, 5, &pol, T(2026, 11, 21, 12, 0));
    char *text = format(p, 0);
    char *json = format(p, 1);
    if (getenv("TM_TEST_VERBOSE") != NULL) {
        fputs(text, stdout);
        fputs(json, stdout);
    }
    assert_non_null(strstr(text, "retention plan at 2026-11-21T12:00:00Z: keep last 0, hourly 0, "
                                 "daily 1, weekly 0, monthly 0, yearly 0; minimum 1; failed 3; "
                                 "PITR window 2d\n"));
    assert_non_null(strstr(text, "target pg \"main\": keep 3, drop 1; logs before "
                                 "2026-11-18T03:10:00Z (start of 20261118T030000Z-full) may go"));
    assert_non_null(strstr(text, "DROP  20261120T030000Z-full"));
    assert_non_null(strstr(text, "keep  20261118T030000Z-full        full        "
                                 "2026-11-18T03:10:00Z ok     PITR window\n"));
    assert_non_null(strstr(text, "target redis: keep 1, drop 0; no good backup: keep all logs"));
    assert_non_null(strstr(json, "\"target\":\"pg \\\"main\\\"\",\"kept\":3,\"dropped\":1,"
                                 "\"log_cutoff\":\"2026-11-18T03:10:00Z\",\"log_cutoff_id\":"
                                 "\"20261118T030000Z-full\""));
    assert_non_null(strstr(json, "{\"id\":\"20261121T040000Z-incr\",\"type\":\"incremental\","
                                 "\"finished_at\":\"2026-11-21T04:05:00Z\",\"ok\":true,"
                                 "\"action\":\"keep\",\"reason\":\"newest, incremental of kept "
                                 "20261121T030000Z-full\"}"));
    assert_non_null(strstr(json, "\"log_cutoff\":null,\"log_cutoff_id\":null"));
    assert_int_equal(json[strlen(json) - 2], '}');
    /* any input order gives the same plan, byte for byte */
    for (int perm = 0; perm < 20; perm++) {
        tm_backup_rec s[5];
        memcpy(s, r, sizeof(s));
        for (int i = 4; i > 0; i--) {
            int j = (perm * 7 + i * 3) % (i + 1);
            tm_backup_rec t = s[i];
            s[i] = s[j];
            s[j] = t;
        }
        tm_retention_plan *q = plan_of(s, 5, &pol, T(2026, 11, 21, 12, 0));
        char *j2 = format(q, 1);
        assert_string_equal(j2, json);
        free(j2);
        tm_retention_plan_free(q);
    }
    free(text);
    free(json);
    tm_retention_plan_free(p);
}

static void test_errors(void **state)
{
    (void)state;
    tm_backup_rec dup[] = {FULL("a", 1), FULL("a", 2)};
    tm_retention_plan *p = NULL;
    tm_err err = {0};
    assert_int_equal(tm_retention_plan_new(dup, 2, NULL, 10, &p, &err), TM_EINVAL);
    assert_non_null(strstr(err.msg, "target db lists backup a twice"));
    assert_null(p);
    tm_backup_rec noid[] = {{NULL, "db", TM_BACKUP_FULL, NULL, 0, 1, 1, 0}};
    assert_int_equal(tm_retention_plan_new(noid, 1, NULL, 10, &p, &err), TM_EINVAL);
    tm_backup_rec badtype[] = {{"x", "db", (tm_backup_type)0, NULL, 0, 1, 1, 0}};
    assert_int_equal(tm_retention_plan_new(badtype, 1, NULL, 10, &p, &err), TM_EINVAL);
    assert_non_null(strstr(err.msg, "unknown type 0"));
    tm_retention_policy neg = {.pitr_window_s = -1};
    assert_int_equal(tm_retention_plan_new(dup, 1, &neg, 10, &p, &err), TM_EINVAL);
    /* empty input: an empty plan */
    assert_int_equal(tm_retention_plan_new(NULL, 0, NULL, 10, &p, &err), 0);
    assert_int_equal(p->n_items, 0);
    assert_int_equal(p->n_targets, 0);
    tm_retention_plan_free(p);
    tm_retention_policy d;
    tm_retention_policy_default(&d);
    assert_int_equal(d.keep_daily, 7);
    assert_int_equal(d.keep_weekly, 4);
    assert_int_equal(d.keep_monthly, 12);
    assert_int_equal(d.keep_yearly, 7);
    assert_int_equal(d.keep_failed, 3);
    assert_int_equal(d.pitr_window_s, 7 * 86400);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_iso_weeks),
        cmocka_unit_test(test_leap_days),
        cmocka_unit_test(test_holds_min_newest),
        cmocka_unit_test(test_pitr_cutoff),
        cmocka_unit_test(test_incremental_chains),
        cmocka_unit_test(test_failed_and_targets),
        cmocka_unit_test(test_format_and_determinism),
        cmocka_unit_test(test_errors),
        cmocka_unit_test(test_eight_years_default),
        cmocka_unit_test(test_eight_years_other_policy),
    };
    int rc = cmocka_run_group_tests(tests, NULL, NULL);
    free(B);
    return rc;
}
