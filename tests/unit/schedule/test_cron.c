/*
 * test_cron.c - cron parser errors, next/prev fire times against a brute
 * force oracle built on libc's gmtime_r, presets, Vixie day rules, leap
 * years and the UTC/ISO-week calendar helpers.
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

static int64_t T(int y, int mo, int d, int h, int mi)
{
    return tm_utc_to_unix(y, mo, d, h, mi, 0);
}

static tm_cron *P(const char *expr)
{
    tm_cron *c = NULL;
    tm_err err = {0};
    int rc = tm_cron_parse(expr, &c, &err);
    if (rc != 0) {
        fail_msg("parse \"%s\": %s", expr, err.msg);
    }
    return c;
}

static void expect_error(const char *expr, const char *needle)
{
    tm_cron *c = NULL;
    tm_err err = {0};
    int rc = tm_cron_parse(expr, &c, &err);
    if (rc != TM_EINVAL || c != NULL) {
        fail_msg("\"%s\" parsed but should fail with \"%s\"", expr, needle);
    }
    if (strstr(err.msg, needle) == NULL) {
        fail_msg("\"%s\": message \"%s\" lacks \"%s\"", expr, err.msg, needle);
    }
}

static void test_errors(void **state)
{
    (void)state;
    expect_error("0 25 * * *", "cron \"0 25 * * *\": field 2 (hour): 25 is out of range 0-23");
    expect_error("60 * * * *", "field 1 (minute): 60 is out of range 0-59");
    expect_error("* * 0 * *", "field 3 (day-of-month): 0 is out of range 1-31");
    expect_error("* * 32 * *", "field 3 (day-of-month): 32 is out of range 1-31");
    expect_error("* * * 13 *", "field 4 (month): 13 is out of range 1-12");
    expect_error("* * * * 8", "field 5 (day-of-week): 8 is out of range 0-7");
    expect_error("*/0 * * * *", "field 1 (minute): step 0 in \"*/0\" is out of range 1-59");
    expect_error("*/ * * * *", "field 1 (minute): missing step after '/' in \"*/\"");
    expect_error("*/x * * * *", "step in \"*/x\" is not a number");
    expect_error("5-1 * * * *", "field 1 (minute): range \"5-1\" is reversed");
    expect_error("1,,2 * * * *", "field 1 (minute): empty item in list \"1,,2\"");
    expect_error("1, * * * *", "empty item");
    expect_error("* * * FOO *", "field 4 (month): \"FOO\" is not a number or a name (JAN..DEC)");
    expect_error("* * * * FUN", "field 5 (day-of-week): \"FUN\" is not a number or a name");
    expect_error("x * * * *", "field 1 (minute): \"x\" is not a number");
    expect_error("1x * * * *", "field 1 (minute): \"1x\" is not a number");
    expect_error("-5 * * * *", "field 1 (minute): empty value");
    expect_error("99999999999999999999 * * * *", "is out of range 0-59");
    expect_error("* * *", "expected 5 fields");
    expect_error("* * *", "got 3 fields");
    expect_error("* * * * * *", "got 6 fields");
    expect_error("", "got 0 fields");
    expect_error("@reboot", "@reboot is not supported");
    expect_error("@fortnightly", "unknown preset \"@fortnightly\"");
    expect_error("@daily 5", "unexpected \"5\" after @daily");
    expect_error("@every", "@every needs a duration");
    expect_error("@every 4s", "between 5s and 366d");
    expect_error("@every 400d", "between 5s and 366d");
    expect_error("@every 6", "missing or unknown unit");
    expect_error("@every 6x", "missing or unknown unit");
    expect_error("@every h", "expected a number");
    expect_error("@every 1h junk", "unexpected \"junk\"");
    expect_error("0 0 30 2 *", "day-of-month \"30\" never occurs in month \"2\"");
    expect_error("0 0 31 4,6,9,11 *", "never fire");
    expect_error("0 0 30,31 FEB */2", "never fire");
    char big[TM_CRON_EXPR_MAX + 10];
    memset(big, '1', sizeof(big) - 1);
    big[sizeof(big) - 1] = '\0';
    expect_error(big, "longer than");
    tm_cron *c = NULL;
    assert_int_equal(tm_cron_parse(NULL, &c, NULL), TM_EINVAL);
    assert_int_equal(tm_cron_parse("bad", &c, NULL), TM_EINVAL); /* NULL err is fine */
    assert_null(c);
}

static void test_accepts(void **state)
{
    (void)state;
    const char *ok[] = {"* * * * *",        "  0   3 * * *  ", "\t*/15\t*\t*\t*\t*",
                        "10-50/10 * * * *", "5/10 * * * *",    "0 0 29 2 *",
                        "0 0 30 2 MON",     "0 0 31 4,5 *",    "0 9-17 * JAN-mar mon-FRI",
                        "0 0 * * 7",        "0 0 * * 0-7",     "0,30 * 1,15 * *",
                        "@hourly",          "@DAILY",          "@weekly",
                        "@monthly",         "@yearly",         "@annually",
                        "@midnight",        "@every 6h",       "@every 1h30m",
                        "@every 90s",       "@every 15s",      "@every 1d",
                        "@every 366d"};
    for (size_t i = 0; i < sizeof(ok) / sizeof(ok[0]); i++) {
        tm_cron *c = P(ok[i]);
        assert_string_equal(tm_cron_expr(c), ok[i]);
        assert_true(tm_cron_next(c, T(2026, 11, 24, 6, 0)) != TM_CRON_NEVER);
        tm_cron_free(c);
    }
}

static void test_next_basic(void **state)
{
    (void)state;
    tm_cron *c = P("*/15 * * * *");
    assert_int_equal(tm_cron_next(c, T(2026, 11, 24, 10, 7)), T(2026, 11, 24, 10, 15));
    /* strictly after, also from inside a minute */
    assert_int_equal(tm_cron_next(c, T(2026, 11, 24, 10, 15)), T(2026, 11, 24, 10, 30));
    assert_int_equal(tm_cron_next(c, T(2026, 11, 24, 10, 14) + 59), T(2026, 11, 24, 10, 15));
    assert_int_equal(tm_cron_next(c, T(2026, 12, 31, 23, 50)), T(2027, 1, 1, 0, 0));
    assert_int_equal(tm_cron_prev(c, T(2026, 11, 24, 10, 15)), T(2026, 11, 24, 10, 0));
    assert_int_equal(tm_cron_prev(c, T(2026, 11, 24, 10, 15) + 1), T(2026, 11, 24, 10, 15));
    assert_int_equal(tm_cron_prev(c, T(2027, 1, 1, 0, 0)), T(2026, 12, 31, 23, 45));
    tm_cron_free(c);

    c = P("10-50/10 * * * *");
    int64_t t = T(2026, 1, 1, 0, 0);
    int want[] = {10, 20, 30, 40, 50};
    for (int i = 0; i < 5; i++) {
        t = tm_cron_next(c, t);
        assert_int_equal(t, T(2026, 1, 1, 0, want[i]));
    }
    assert_int_equal(tm_cron_next(c, t), T(2026, 1, 1, 1, 10));
    tm_cron_free(c);

    c = P("0 3 * * *");
    assert_int_equal(tm_cron_next(c, T(2026, 2, 28, 3, 0)), T(2026, 3, 1, 3, 0));
    assert_int_equal(tm_cron_next(c, T(2028, 2, 28, 3, 0)), T(2028, 2, 29, 3, 0));
    assert_int_equal(tm_cron_prev(c, T(2028, 3, 1, 2, 0)), T(2028, 2, 29, 3, 0));
    tm_cron_free(c);

    /* the 31st skips short months */
    c = P("0 0 31 * *");
    assert_int_equal(tm_cron_next(c, T(2026, 1, 31, 0, 0)), T(2026, 3, 31, 0, 0));
    assert_int_equal(tm_cron_next(c, T(2026, 3, 31, 0, 0)), T(2026, 5, 31, 0, 0));
    assert_int_equal(tm_cron_prev(c, T(2026, 3, 1, 0, 0)), T(2026, 1, 31, 0, 0));
    tm_cron_free(c);

    /* Feb 29: leap years only, 2100 is not one */
    c = P("0 12 29 2 *");
    assert_int_equal(tm_cron_next(c, T(2025, 3, 1, 0, 0)), T(2028, 2, 29, 12, 0));
    assert_int_equal(tm_cron_next(c, T(2096, 2, 29, 12, 0)), T(2104, 2, 29, 12, 0));
    assert_int_equal(tm_cron_prev(c, T(2104, 2, 29, 12, 0)), T(2096, 2, 29, 12, 0));
    assert_int_equal(tm_cron_next(c, T(1999, 3, 1, 0, 0)), T(2000, 2, 29, 12, 0));
    tm_cron_free(c);
}

static void test_day_rules(void **state)
{
    (void)state;
    /* Both restricted: OR. 2026-11-24 is a Tuesday. */
    tm_cron *c = P("0 0 1 * MON");
    int64_t t = tm_cron_next(c, T(2026, 11, 24, 0, 0));
    assert_int_equal(t, T(2026, 11, 30, 0, 0)); /* Monday */
    t = tm_cron_next(c, t);
    assert_int_equal(t, T(2026, 12, 1, 0, 0)); /* the 1st, a Tuesday */
    t = tm_cron_next(c, t);
    assert_int_equal(t, T(2026, 12, 7, 0, 0));
    tm_cron_free(c);

    /* Day-of-month starts with '*': AND (odd days that are Mondays). */
    c = P("0 0 */2 * MON");
    t = T(2026, 11, 24, 0, 0);
    for (int i = 0; i < 20; i++) {
        t = tm_cron_next(c, t);
        tm_utc u;
        tm_utc_from_unix(t, &u);
        assert_int_equal(u.wday, 1);
        assert_int_equal(u.day % 2, 1);
    }
    tm_cron_free(c);

    /* 0 and 7 are Sunday, names are case-insensitive */
    const char *sundays[] = {"0 0 * * 0", "0 0 * * 7", "0 0 * * sun", "0 0 * * Sun"};
    for (int i = 0; i < 4; i++) {
        c = P(sundays[i]);
        assert_int_equal(tm_cron_next(c, T(2026, 11, 24, 0, 0)), T(2026, 11, 29, 0, 0));
        tm_cron_free(c);
    }
    c = P("0 0 * * 5-7"); /* Fri, Sat, Sun */
    assert_int_equal(tm_cron_next(c, T(2026, 11, 24, 0, 0)), T(2026, 11, 27, 0, 0));
    assert_int_equal(tm_cron_next(c, T(2026, 11, 29, 0, 0)), T(2026, 12, 4, 0, 0));
    tm_cron_free(c);
    c = P("30 8 * jan-MAR mon-fri");
    assert_int_equal(tm_cron_next(c, T(2026, 11, 24, 0, 0)), T(2027, 1, 1, 8, 30)); /* Friday */
    assert_int_equal(tm_cron_next(c, T(2027, 1, 1, 8, 30)), T(2027, 1, 4, 8, 30));
    assert_int_equal(tm_cron_prev(c, T(2027, 1, 1, 8, 30)), T(2026, 3, 31, 8, 30));
    tm_cron_free(c);
    /* 30 Feb OR Mondays: fires on February Mondays only */
    c = P("0 0 30 2 MON");
    assert_int_equal(tm_cron_next(c, T(2026, 11, 24, 0, 0)), T(2027, 2, 1, 0, 0));
    tm_cron_free(c);
}

static void test_presets(void **state)
{
    (void)state;
    struct {
        const char *a, *b;
    } eq[] = {{"@hourly", "0 * * * *"},  {"@daily", "0 0 * * *"},   {"@midnight", "0 0 * * *"},
              {"@weekly", "0 0 * * 0"},  {"@monthly", "0 0 1 * *"}, {"@yearly", "0 0 1 1 *"},
              {"@annually", "0 0 1 1 *"}};
    for (size_t i = 0; i < sizeof(eq) / sizeof(eq[0]); i++) {
        tm_cron *a = P(eq[i].a), *b = P(eq[i].b);
        int64_t t = T(2026, 11, 24, 6, 13);
        for (int k = 0; k < 30; k++) {
            int64_t ta = tm_cron_next(a, t), tb = tm_cron_next(b, t);
            assert_int_equal(ta, tb);
            t = ta;
        }
        tm_cron_free(a);
        tm_cron_free(b);
    }
    tm_cron *c = P("@every 6h");
    assert_int_equal(tm_cron_next(c, T(2026, 11, 24, 6, 13)), T(2026, 11, 24, 12, 0));
    assert_int_equal(tm_cron_next(c, T(2026, 11, 24, 18, 0)), T(2026, 11, 25, 0, 0));
    assert_int_equal(tm_cron_prev(c, T(2026, 11, 24, 6, 0)), T(2026, 11, 24, 0, 0));
    assert_int_equal(tm_cron_prev(c, T(2026, 11, 24, 6, 0) + 1), T(2026, 11, 24, 6, 0));
    tm_cron_free(c);
    c = P("@every 1h30m");
    int64_t t = tm_cron_next(c, T(2026, 11, 24, 0, 59));
    assert_int_equal(t % 5400, 0);
    assert_int_equal(tm_cron_next(c, t), t + 5400);
    tm_cron_free(c);
}

/* ---- brute force oracle over libc gmtime_r -------------------------------- */

static uint64_t rng = 0x9E3779B97F4A7C15ull;
static uint32_t rnd(uint32_t n)
{
    rng ^= rng << 13;
    rng ^= rng >> 7;
    rng ^= rng << 17;
    return (uint32_t)(rng % n);
}

typedef struct oracle {
    uint64_t f[5];
    int dom_star, dow_star;
} oracle;

/* Build a random field text and the set it means, independently of the parser. */
static void gen_field(int idx, char *out, size_t cap, uint64_t *bits, int *star)
{
    static const int lo[5] = {0, 0, 1, 1, 0}, hi[5] = {59, 23, 31, 12, 7};
    *bits = 0;
    *star = 0;
    int kind = (int)rnd(6);
    if (kind == 0) {
        snprintf(out, cap, "*");
        *star = 1;
        for (int v = lo[idx]; v <= hi[idx]; v++) {
            *bits |= 1ull << (idx == 4 && v == 7 ? 0 : v);
        }
        return;
    }
    if (kind == 1) {
        int st = 1 + (int)rnd((uint32_t)hi[idx]);
        snprintf(out, cap, "*/%d", st);
        *star = 1;
        int top = idx == 4 ? 6 : hi[idx];
        for (int v = lo[idx]; v <= top; v += st) {
            *bits |= 1ull << v;
        }
        return;
    }
    size_t len = 0;
    int items = 1 + (int)rnd(3);
    for (int i = 0; i < items; i++) {
        int a = lo[idx] + (int)rnd((uint32_t)(hi[idx] - lo[idx] + 1));
        int b = a + (int)rnd((uint32_t)(hi[idx] - a + 1));
        int st = 1 + (int)rnd(5);
        int form = (int)rnd(3);
        if (form == 0) {
            len += (size_t)snprintf(out + len, cap - len, "%s%d", i ? "," : "", a);
            b = a;
            st = 1;
        } else if (form == 1) {
            len += (size_t)snprintf(out + len, cap - len, "%s%d-%d", i ? "," : "", a, b);
            st = 1;
        } else {
            len += (size_t)snprintf(out + len, cap - len, "%s%d-%d/%d", i ? "," : "", a, b, st);
        }
        for (int v = a; v <= b; v += st) {
            *bits |= 1ull << (idx == 4 && v == 7 ? 0 : v);
        }
    }
}

static int oracle_match(const oracle *o, int64_t t)
{
    time_t tt = (time_t)t;
    struct tm g;
    gmtime_r(&tt, &g);
    if (!((o->f[0] >> g.tm_min) & 1) || !((o->f[1] >> g.tm_hour) & 1) ||
        !((o->f[3] >> (g.tm_mon + 1)) & 1)) {
        return 0;
    }
    int dm = (o->f[2] >> g.tm_mday) & 1, wm = (o->f[4] >> g.tm_wday) & 1;
    return (o->dom_star || o->dow_star) ? dm && wm : dm || wm;
}

/* First match after t within horizon seconds, -1 if none: minute scan,
 * skipping whole days that cannot match (checked at 4 sample times: the
 * day part of the match does not depend on the time of day). */
static int64_t oracle_next(const oracle *o, int64_t t, int64_t horizon)
{
    int64_t m = (t / 60) * 60 + 60;
    int64_t end = t + horizon;
    while (m <= end) {
        time_t tt = (time_t)m;
        struct tm g;
        gmtime_r(&tt, &g);
        int dm = (o->f[2] >> g.tm_mday) & 1, wm = (o->f[4] >> g.tm_wday) & 1;
        int day_ok = ((o->f[3] >> (g.tm_mon + 1)) & 1) &&
                     ((o->dom_star || o->dow_star) ? dm && wm : dm || wm);
        if (!day_ok) {
            m = (m / 86400 + 1) * 86400;
            continue;
        }
        if (oracle_match(o, m)) {
            return m;
        }
        m += 60;
    }
    return -1;
}

static void test_oracle(void **state)
{
    (void)state;
    int compared = 0;
    for (int iter = 0; iter < 400; iter++) {
        char fieldtxt[5][128], expr[700];
        oracle o;
        int star[5];
        for (int i = 0; i < 5; i++) {
            gen_field(i, fieldtxt[i], sizeof(fieldtxt[i]), &o.f[i], &star[i]);
        }
        o.dom_star = star[2];
        o.dow_star = star[4];
        snprintf(expr, sizeof(expr), "%s %s %s %s %s", fieldtxt[0], fieldtxt[1], fieldtxt[2],
                 fieldtxt[3], fieldtxt[4]);
        tm_cron *c = NULL;
        tm_err err = {0};
        if (tm_cron_parse(expr, &c, &err) != 0) {
            /* only impossible day/month combinations may be refused */
            if (strstr(err.msg, "never fire") == NULL) {
                fail_msg("%s", err.msg);
            }
            continue;
        }
        int64_t t = T(2019, 1, 1, 0, 0) + (int64_t)rnd(10 * 365) * 86400 + rnd(86400);
        for (int k = 0; k < 5; k++) {
            int64_t want = oracle_next(&o, t, 5LL * 366 * 86400);
            int64_t got = tm_cron_next(c, t);
            if (want < 0) {
                assert_true(got > t + 5LL * 366 * 86400);
                break;
            }
            if (got != want) {
                fail_msg("%s after %lld: got %lld want %lld", expr, (long long)t, (long long)got,
                         (long long)want);
            }
            /* prev is the inverse: nothing fires in (prev, got) */
            int64_t p = tm_cron_prev(c, got);
            assert_true(p <= t);
            assert_true(p == TM_CRON_NONE || oracle_match(&o, p));
            assert_int_equal(tm_cron_next(c, p), got);
            compared++;
            t = got + (int64_t)rnd(3) * 3600;
        }
        tm_cron_free(c);
    }
    assert_true(compared > 500);
}

/* ---- calendar helpers ----------------------------------------------------- */

static void test_calendar(void **state)
{
    (void)state;
    int y, w;
    struct {
        int y, m, d, wy, ww;
    } iso[] = {{2026, 12, 31, 2026, 53}, {2027, 1, 1, 2026, 53},   {2027, 1, 3, 2026, 53},
               {2027, 1, 4, 2027, 1},    {2024, 12, 30, 2025, 1},  {2024, 12, 31, 2025, 1},
               {2020, 12, 31, 2020, 53}, {2021, 1, 3, 2020, 53},   {2008, 12, 29, 2009, 1},
               {2010, 1, 3, 2009, 53},   {2026, 11, 20, 2026, 47}, {2000, 1, 1, 1999, 52}};
    for (size_t i = 0; i < sizeof(iso) / sizeof(iso[0]); i++) {
        tm_utc_iso_week(T(iso[i].y, iso[i].m, iso[i].d, 12, 0), &y, &w);
        assert_int_equal(y, iso[i].wy);
        assert_int_equal(w, iso[i].ww);
    }
    /* every day 1900..2200 against libc (%G-%V, %Y-%m-%d, weekday) */
    for (int64_t t = T(1900, 1, 1, 13, 7); t < T(2200, 1, 1, 0, 0); t += 86400) {
        time_t tt = (time_t)t;
        struct tm g;
        gmtime_r(&tt, &g);
        char ref[32], mine[32];
        strftime(ref, sizeof(ref), "%G-%V %Y-%m-%d %w %H:%M", &g);
        tm_utc u;
        tm_utc_from_unix(t, &u);
        tm_utc_iso_week(t, &y, &w);
        snprintf(mine, sizeof(mine), "%04d-%02d %04d-%02d-%02d %d %02d:%02d", y, w, u.year, u.month,
                 u.day, u.wday, u.hour, u.minute);
        if (strcmp(ref, mine) != 0) {
            fail_msg("%lld: libc %s, mine %s", (long long)t, ref, mine);
        }
        assert_int_equal(tm_utc_to_unix(u.year, u.month, u.day, u.hour, u.minute, u.second), t);
    }
    assert_int_equal(tm_days_in_month(2100, 2), 28);
    assert_int_equal(tm_days_in_month(2000, 2), 29);
    assert_int_equal(tm_days_in_month(2024, 2), 29);
    assert_int_equal(tm_days_in_month(2026, 4), 30);
    assert_int_equal(tm_days_from_civil(1970, 1, 1), 0);
    tm_utc u;
    tm_utc_from_unix(-1, &u);
    assert_int_equal(u.year, 1969);
    assert_int_equal(u.second, 59);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_errors),     cmocka_unit_test(test_accepts),
        cmocka_unit_test(test_next_basic), cmocka_unit_test(test_day_rules),
        cmocka_unit_test(test_presets),    cmocka_unit_test(test_oracle),
        cmocka_unit_test(test_calendar),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
