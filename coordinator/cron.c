/*
 * cron.c - 5-field UTC cron: parser, next/prev fire times, calendar helpers.
 *
 * A parsed expression is five bitsets. next/prev walk forward/backward from
 * a start time, jumping by month, day, hour and minute to the next candidate
 * that matches, so one call costs at most a few hundred steps even for rare
 * expressions (Feb 29 on a Monday).
 */
#include "coordinator/cron.h"

#include <ctype.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct tm_cron {
    uint64_t minute; /* bits 0-59 */
    uint32_t hour;   /* bits 0-23 */
    uint32_t dom;    /* bits 1-31 */
    uint16_t month;  /* bits 1-12 */
    uint8_t dow;     /* bits 0-6, 0 = Sunday */
    int dom_star;    /* field started with '*' (Vixie DOM_STAR) */
    int dow_star;
    int64_t every_s; /* > 0: "@every" interval, the bitsets are unused */
    char expr[TM_CRON_EXPR_MAX + 1];
};

/* Year 1 to 9999: far beyond any schedule, and safe from overflow. */
#define TM_CRON_T_MIN (-62135596800LL)
#define TM_CRON_T_MAX (253402300799LL)
#define TM_CRON_SEARCH_YEARS 500

/* ---- calendar ------------------------------------------------------------ */

static int64_t floordiv(int64_t a, int64_t b)
{
    int64_t q = a / b;
    if ((a % b != 0) && ((a < 0) != (b < 0))) {
        q--;
    }
    return q;
}

int64_t tm_days_from_civil(int y, int m, int d)
{
    int64_t yy = (int64_t)y - (m <= 2);
    int64_t era = (yy >= 0 ? yy : yy - 399) / 400;
    int64_t yoe = yy - era * 400;
    int64_t doy = (153 * (m + (m > 2 ? -3 : 9)) + 2) / 5 + d - 1;
    int64_t doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    return era * 146097 + doe - 719468;
}

static void civil_from_days(int64_t z, int *y, int *m, int *d)
{
    z += 719468;
    int64_t era = (z >= 0 ? z : z - 146096) / 146097;
    int64_t doe = z - era * 146097;
    int64_t yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365;
    int64_t yy = yoe + era * 400;
    int64_t doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    int64_t mp = (5 * doy + 2) / 153;
    *d = (int)(doy - (153 * mp + 2) / 5 + 1);
    *m = (int)(mp < 10 ? mp + 3 : mp - 9);
    *y = (int)(yy + (*m <= 2));
}

static int weekday_from_days(int64_t z)
{
    int64_t w = (z + 4) % 7; /* 1970-01-01 was a Thursday */
    return (int)(w < 0 ? w + 7 : w);
}

static int is_leap(int y)
{
    return (y % 4 == 0 && y % 100 != 0) || y % 400 == 0;
}

int tm_days_in_month(int y, int m)
{
    static const int dim[12] = {31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};
    if (m < 1 || m > 12) {
        return 0;
    }
    return m == 2 && is_leap(y) ? 29 : dim[m - 1];
}

void tm_utc_from_unix(int64_t t, tm_utc *out)
{
    int64_t days = floordiv(t, 86400);
    int64_t secs = t - days * 86400;
    civil_from_days(days, &out->year, &out->month, &out->day);
    out->hour = (int)(secs / 3600);
    out->minute = (int)(secs % 3600 / 60);
    out->second = (int)(secs % 60);
    out->wday = weekday_from_days(days);
}

int64_t tm_utc_to_unix(int y, int mo, int d, int h, int mi, int s)
{
    return tm_days_from_civil(y, mo, d) * 86400 + (int64_t)h * 3600 + (int64_t)mi * 60 + s;
}

void tm_utc_iso_week(int64_t t, int *iso_year, int *iso_week)
{
    int64_t days = floordiv(t, 86400);
    int wd = weekday_from_days(days);
    int iso_wd = wd == 0 ? 7 : wd;          /* Monday 1 .. Sunday 7 */
    int64_t thursday = days + (4 - iso_wd); /* the week belongs to its Thursday's year */
    int y, m, d;
    civil_from_days(thursday, &y, &m, &d);
    *iso_year = y;
    *iso_week = (int)((thursday - tm_days_from_civil(y, 1, 1)) / 7 + 1);
}

/* ---- parser -------------------------------------------------------------- */

typedef struct field_spec {
    const char *name;
    int min, max;
    const char *const *names; /* names[i] is value min+i... see name_base */
    int name_base;            /* value of names[0] */
    int n_names;
} field_spec;

static const char *const month_names[] = {"JAN", "FEB", "MAR", "APR", "MAY", "JUN",
                                          "JUL", "AUG", "SEP", "OCT", "NOV", "DEC"};
static const char *const dow_names[] = {"SUN", "MON", "TUE", "WED", "THU", "FRI", "SAT"};

static const field_spec fields[5] = {
    {"minute", 0, 59, NULL, 0, 0},          {"hour", 0, 23, NULL, 0, 0},
    {"day-of-month", 1, 31, NULL, 0, 0},    {"month", 1, 12, month_names, 1, 12},
    {"day-of-week", 0, 7, dow_names, 0, 7},
};

typedef struct parse_ctx {
    const char *expr;
    int field; /* 0-based */
    tm_err *err;
} parse_ctx;

static int field_err(parse_ctx *p, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

static int field_err(parse_ctx *p, const char *fmt, ...)
{
    char detail[256];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(detail, sizeof(detail), fmt, ap);
    va_end(ap);
    return tm_err_set(p->err, TM_EINVAL, "cron \"%s\": field %d (%s): %s", p->expr, p->field + 1,
                      fields[p->field].name, detail);
}

/* Parse one value (number or name) from s[0..n). */
static int parse_value(parse_ctx *p, const char *s, size_t n, int *out)
{
    const field_spec *f = &fields[p->field];
    char tok[32];
    size_t tn = n < sizeof(tok) - 1 ? n : sizeof(tok) - 1;
    memcpy(tok, s, tn);
    tok[tn] = '\0';
    if (n == 0) {
        return field_err(p, "empty value");
    }
    if (isdigit((unsigned char)s[0])) {
        long v = 0;
        for (size_t i = 0; i < n; i++) {
            if (!isdigit((unsigned char)s[i])) {
                return field_err(p, "\"%s\" is not a number", tok);
            }
            if (v < 100000) {
                v = v * 10 + (s[i] - '0');
            }
        }
        if (v < f->min || v > f->max) {
            return field_err(p, "%s is out of range %d-%d", tok, f->min, f->max);
        }
        *out = (int)v;
        return 0;
    }
    if (f->names != NULL && n == 3) {
        for (int i = 0; i < f->n_names; i++) {
            if (strncasecmp(s, f->names[i], 3) == 0) {
                *out = f->name_base + i;
                return 0;
            }
        }
    }
    if (f->names != NULL) {
        return field_err(p, "\"%s\" is not a number or a name (%s)", tok,
                         p->field == 3 ? "JAN..DEC" : "SUN..SAT");
    }
    return field_err(p, "\"%s\" is not a number", tok);
}

/* Parse one field (text s[0..n)) into bits. */
static int parse_field(parse_ctx *p, const char *s, size_t n, uint64_t *bits, int *star)
{
    const field_spec *f = &fields[p->field];
    *bits = 0;
    *star = n > 0 && s[0] == '*';
    size_t i = 0;
    while (i <= n) {
        size_t j = i;
        while (j < n && s[j] != ',') {
            j++;
        }
        const char *it = s + i;
        size_t itn = j - i;
        char tok[64];
        size_t tn = itn < sizeof(tok) - 1 ? itn : sizeof(tok) - 1;
        memcpy(tok, it, tn);
        tok[tn] = '\0';
        if (itn == 0) {
            return field_err(p, "empty item in list \"%.*s\"", (int)(n > 64 ? 64 : n), s);
        }
        /* split off "/step" */
        const char *slash = memchr(it, '/', itn);
        size_t basen = slash != NULL ? (size_t)(slash - it) : itn;
        int lo, hi, step = 1;
        int rc;
        if (basen == 1 && it[0] == '*') {
            lo = f->min;
            hi = f->max == 7 ? 6 : f->max;
        } else {
            const char *dash = memchr(it, '-', basen);
            if (dash != NULL) {
                if ((rc = parse_value(p, it, (size_t)(dash - it), &lo)) != 0) {
                    return rc;
                }
                if ((rc = parse_value(p, dash + 1, basen - (size_t)(dash - it) - 1, &hi)) != 0) {
                    return rc;
                }
                if (hi < lo) {
                    return field_err(p, "range \"%s\" is reversed (write it as two ranges)", tok);
                }
            } else {
                if ((rc = parse_value(p, it, basen, &lo)) != 0) {
                    return rc;
                }
                /* "5/10" means 5-max/10 (Vixie); a plain "5" is just 5. */
                hi = slash != NULL ? (f->max == 7 ? 6 : f->max) : lo;
                if (slash != NULL && lo > hi) {
                    hi = lo;
                }
            }
        }
        if (slash != NULL) {
            const char *st = slash + 1;
            size_t stn = itn - basen - 1;
            if (stn == 0) {
                return field_err(p, "missing step after '/' in \"%s\"", tok);
            }
            long v = 0;
            for (size_t k = 0; k < stn; k++) {
                if (!isdigit((unsigned char)st[k])) {
                    return field_err(p, "step in \"%s\" is not a number", tok);
                }
                if (v < 100000) {
                    v = v * 10 + (st[k] - '0');
                }
            }
            if (v < 1 || v > f->max) {
                return field_err(p, "step %ld in \"%s\" is out of range 1-%d", v, tok, f->max);
            }
            step = (int)v;
        }
        for (int v = lo; v <= hi; v += step) {
            *bits |= (uint64_t)1 << (f->max == 7 && v == 7 ? 0 : v);
        }
        i = j + 1;
    }
    return 0;
}

static int parse_every(const char *expr, const char *s, int64_t *out, tm_err *err)
{
    while (*s == ' ' || *s == '\t') {
        s++;
    }
    if (*s == '\0') {
        return tm_err_set(err, TM_EINVAL,
                          "cron \"%s\": @every needs a duration, e.g. \"@every 6h\" or "
                          "\"@every 1h30m\"",
                          expr);
    }
    int64_t total = 0;
    while (*s != '\0' && *s != ' ' && *s != '\t') {
        if (!isdigit((unsigned char)*s)) {
            return tm_err_set(err, TM_EINVAL,
                              "cron \"%s\": @every: expected a number at \"%s\" (units s, m, h, d)",
                              expr, s);
        }
        int64_t v = 0;
        while (isdigit((unsigned char)*s)) {
            if (v < 100000000) {
                v = v * 10 + (*s - '0');
            }
            s++;
        }
        int64_t unit;
        switch (*s) {
        case 's':
            unit = 1;
            break;
        case 'm':
            unit = 60;
            break;
        case 'h':
            unit = 3600;
            break;
        case 'd':
            unit = 86400;
            break;
        default:
            return tm_err_set(err, TM_EINVAL,
                              "cron \"%s\": @every: missing or unknown unit after %lld (use s, m, "
                              "h or d)",
                              expr, (long long)v);
        }
        s++;
        total += v * unit;
        if (total > 366LL * 86400) {
            break;
        }
    }
    while (*s == ' ' || *s == '\t') {
        s++;
    }
    if (*s != '\0') {
        return tm_err_set(err, TM_EINVAL, "cron \"%s\": @every: unexpected \"%s\" after duration",
                          expr, s);
    }
    /* Sub-minute intervals serve demos and tests (the quick start, the
     * scheduler's integration test); 5 s keeps a typo from flooding the queue. */
    if (total < 5 || total > 366LL * 86400) {
        return tm_err_set(err, TM_EINVAL,
                          "cron \"%s\": @every: interval must be between 5s and 366d", expr);
    }
    *out = total;
    return 0;
}

static const struct {
    const char *name;
    const char *expansion;
} presets[] = {
    {"@yearly", "0 0 1 1 *"}, {"@annually", "0 0 1 1 *"}, {"@monthly", "0 0 1 * *"},
    {"@weekly", "0 0 * * 0"}, {"@daily", "0 0 * * *"},    {"@midnight", "0 0 * * *"},
    {"@hourly", "0 * * * *"},
};

/* Can a (month, day-of-month) pair ever exist? Day 29 of February counts. */
static int dom_feasible(const tm_cron *c)
{
    for (int m = 1; m <= 12; m++) {
        if (!(c->month & (1u << m))) {
            continue;
        }
        int maxd = tm_days_in_month(2000, m); /* 2000 is a leap year */
        for (int d = 1; d <= maxd; d++) {
            if (c->dom & (1u << d)) {
                return 1;
            }
        }
    }
    return 0;
}

static int parse_fields(tm_cron *c, const char *expr, const char *text, tm_err *err)
{
    const char *start[6];
    size_t len[6];
    int nf = 0;
    const char *s = text;
    for (;;) {
        while (*s == ' ' || *s == '\t') {
            s++;
        }
        if (*s == '\0') {
            break;
        }
        const char *b = s;
        while (*s != '\0' && *s != ' ' && *s != '\t') {
            s++;
        }
        if (nf < 6) {
            start[nf] = b;
            len[nf] = (size_t)(s - b);
        }
        nf++;
    }
    if (nf != 5) {
        return tm_err_set(err, TM_EINVAL,
                          "cron \"%s\": expected 5 fields (minute hour day-of-month month "
                          "day-of-week) or a preset (@hourly, @daily, @weekly, @monthly, @yearly, "
                          "@every 6h), got %d field%s",
                          expr, nf, nf == 1 ? "" : "s");
    }
    parse_ctx p = {expr, 0, err};
    uint64_t bits[5];
    int star[5];
    for (int i = 0; i < 5; i++) {
        p.field = i;
        int rc = parse_field(&p, start[i], len[i], &bits[i], &star[i]);
        if (rc != 0) {
            return rc;
        }
    }
    c->minute = bits[0];
    c->hour = (uint32_t)bits[1];
    c->dom = (uint32_t)bits[2];
    c->month = (uint16_t)bits[3];
    c->dow = (uint8_t)bits[4];
    c->dom_star = star[2];
    c->dow_star = star[4];
    /* With a '*' day-of-week the day-of-month alone decides (AND rule), and
     * every real date meets every weekday within 400 years: the expression
     * fires iff some chosen day exists in some chosen month. */
    if (!c->dom_star && c->dow_star && !dom_feasible(c)) {
        return tm_err_set(err, TM_EINVAL,
                          "cron \"%s\": day-of-month \"%.*s\" never occurs in month \"%.*s\": "
                          "the schedule would never fire",
                          expr, (int)len[2], start[2], (int)len[3], start[3]);
    }
    return 0;
}

int tm_cron_parse(const char *expr, tm_cron **out, tm_err *err)
{
    *out = NULL;
    if (expr == NULL) {
        return tm_err_set(err, TM_EINVAL, "cron: no expression");
    }
    size_t n = strlen(expr);
    if (n > TM_CRON_EXPR_MAX) {
        return tm_err_set(err, TM_EINVAL, "cron expression is %zu bytes, longer than %d", n,
                          TM_CRON_EXPR_MAX);
    }
    tm_cron *c = calloc(1, sizeof(*c));
    if (c == NULL) {
        return tm_err_set(err, TM_ENOMEM, "cron: out of memory");
    }
    memcpy(c->expr, expr, n + 1);
    const char *s = expr;
    while (*s == ' ' || *s == '\t') {
        s++;
    }
    int rc = 0;
    if (*s == '@') {
        const char *e = s;
        while (*e != '\0' && *e != ' ' && *e != '\t') {
            e++;
        }
        size_t wn = (size_t)(e - s);
        const char *rest = e;
        while (*rest == ' ' || *rest == '\t') {
            rest++;
        }
        if (wn == 6 && strncasecmp(s, "@every", 6) == 0) {
            rc = parse_every(expr, e, &c->every_s, err);
        } else if (wn == 7 && strncasecmp(s, "@reboot", 7) == 0) {
            rc = tm_err_set(err, TM_EINVAL,
                            "cron \"%s\": @reboot is not supported: schedules run in UTC wall "
                            "time (use @hourly, @daily, ... or 5 fields)",
                            expr);
        } else {
            int found = 0;
            for (size_t i = 0; i < sizeof(presets) / sizeof(presets[0]); i++) {
                if (strlen(presets[i].name) == wn && strncasecmp(s, presets[i].name, wn) == 0) {
                    rc = *rest != '\0'
                             ? tm_err_set(err, TM_EINVAL, "cron \"%s\": unexpected \"%s\" after %s",
                                          expr, rest, presets[i].name)
                             : parse_fields(c, expr, presets[i].expansion, err);
                    found = 1;
                    break;
                }
            }
            if (!found) {
                rc = tm_err_set(err, TM_EINVAL,
                                "cron \"%s\": unknown preset \"%.*s\" (use @hourly, @daily, "
                                "@weekly, @monthly, @yearly, @annually, @midnight or @every 6h)",
                                expr, (int)wn, s);
            }
        }
    } else {
        rc = parse_fields(c, expr, s, err);
    }
    if (rc != 0) {
        free(c);
        return rc;
    }
    *out = c;
    return 0;
}

void tm_cron_free(tm_cron *c)
{
    free(c);
}

const char *tm_cron_expr(const tm_cron *c)
{
    return c->expr;
}

/* ---- evaluation ---------------------------------------------------------- */

static int day_matches(const tm_cron *c, int d, int wday)
{
    int dom_ok = (c->dom >> d) & 1u;
    int dow_ok = (c->dow >> wday) & 1u;
    if (c->dom_star || c->dow_star) {
        return dom_ok && dow_ok;
    }
    return dom_ok || dow_ok;
}

/* Lowest set bit >= from in bits (width <= 64), or -1. */
static int bit_at_or_after(uint64_t bits, int from, int width)
{
    for (int i = from; i < width; i++) {
        if ((bits >> i) & 1u) {
            return i;
        }
    }
    return -1;
}

/* Highest set bit <= from, or -1. */
static int bit_at_or_before(uint64_t bits, int from)
{
    for (int i = from; i >= 0; i--) {
        if ((bits >> i) & 1u) {
            return i;
        }
    }
    return -1;
}

int64_t tm_cron_next(const tm_cron *c, int64_t after)
{
    if (after < TM_CRON_T_MIN || after >= TM_CRON_T_MAX) {
        return TM_CRON_NEVER;
    }
    if (c->every_s > 0) {
        int64_t t = floordiv(after, c->every_s) * c->every_s + c->every_s;
        return t > TM_CRON_T_MAX ? TM_CRON_NEVER : t;
    }
    int64_t t = floordiv(after, 60) * 60 + 60;
    tm_utc u;
    tm_utc_from_unix(after, &u);
    int limit_year = u.year + TM_CRON_SEARCH_YEARS;
    int64_t cached_days = INT64_MIN;
    int y = 0, m = 0, d = 0, wday = 0;
    while (t <= TM_CRON_T_MAX) {
        int64_t days = floordiv(t, 86400);
        int64_t secs = t - days * 86400;
        int h = (int)(secs / 3600), mi = (int)(secs % 3600 / 60);
        if (days != cached_days) { /* most steps stay within one day */
            civil_from_days(days, &y, &m, &d);
            wday = weekday_from_days(days);
            cached_days = days;
        }
        if (y > limit_year) {
            break;
        }
        if (!((c->month >> m) & 1u)) {
            int ny = m == 12 ? y + 1 : y, nm = m == 12 ? 1 : m + 1;
            t = tm_days_from_civil(ny, nm, 1) * 86400;
            continue;
        }
        if (!day_matches(c, d, wday)) {
            t = (days + 1) * 86400;
            continue;
        }
        if (!((c->hour >> h) & 1u)) {
            int nh = bit_at_or_after(c->hour, h + 1, 24);
            t = nh < 0 ? (days + 1) * 86400 : days * 86400 + nh * 3600;
            continue;
        }
        if (!((c->minute >> mi) & 1u)) {
            int nmi = bit_at_or_after(c->minute, mi + 1, 60);
            t = nmi < 0 ? days * 86400 + (int64_t)(h + 1) * 3600
                        : days * 86400 + h * 3600 + nmi * 60;
            continue;
        }
        return t;
    }
    return TM_CRON_NEVER;
}

int64_t tm_cron_prev(const tm_cron *c, int64_t before)
{
    if (before <= TM_CRON_T_MIN || before > TM_CRON_T_MAX) {
        return TM_CRON_NONE;
    }
    if (c->every_s > 0) {
        int64_t t = floordiv(before - 1, c->every_s) * c->every_s;
        return t < TM_CRON_T_MIN ? TM_CRON_NONE : t;
    }
    int64_t t = floordiv(before - 1, 60) * 60;
    tm_utc u;
    tm_utc_from_unix(before, &u);
    int limit_year = u.year - TM_CRON_SEARCH_YEARS;
    while (t >= TM_CRON_T_MIN) {
        int64_t days = floordiv(t, 86400);
        int64_t secs = t - days * 86400;
        int h = (int)(secs / 3600), mi = (int)(secs % 3600 / 60);
        int y, m, d;
        civil_from_days(days, &y, &m, &d);
        if (y < limit_year) {
            break;
        }
        if (!((c->month >> m) & 1u)) {
            t = tm_days_from_civil(y, m, 1) * 86400 - 60;
            continue;
        }
        if (!day_matches(c, d, weekday_from_days(days))) {
            t = days * 86400 - 60;
            continue;
        }
        if (!((c->hour >> h) & 1u)) {
            int ph = h > 0 ? bit_at_or_before(c->hour, h - 1) : -1;
            t = ph < 0 ? days * 86400 - 60 : days * 86400 + ph * 3600 + 59 * 60;
            continue;
        }
        if (!((c->minute >> mi) & 1u)) {
            int pm = mi > 0 ? bit_at_or_before(c->minute, mi - 1) : -1;
            t = pm < 0 ? days * 86400 + (int64_t)h * 3600 - 60 : days * 86400 + h * 3600 + pm * 60;
            continue;
        }
        return t;
    }
    return TM_CRON_NONE;
}
