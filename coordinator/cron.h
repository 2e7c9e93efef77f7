/*
 * cron.h - 5-field cron expressions evaluated in UTC. Pure: no clock, no I/O.
 *
 * Syntax: "minute hour day-of-month month day-of-week", fields separated by
 * blanks. Each field is a comma list of items; an item is "*", "N", "A-B",
 * or any of those followed by "/STEP" (star-slash-15 = every 15, "10-50/10",
 * "5/10" = 5-max/10). Month names JAN..DEC and weekday names SUN..SAT are
 * accepted case-insensitively, also inside ranges ("MON-FRI"). Weekday 0 and
 * 7 are both Sunday.
 *
 * Day matching follows Vixie cron: when both day-of-month and day-of-week
 * are restricted (neither field starts with "*"), a day matches if EITHER
 * matches ("0 0 1 * MON" = the 1st and every Monday). When one of them starts
 * with "*" (star-slash steps too), both must match.
 *
 * Presets: @yearly @annually (0 0 1 1 *), @monthly (0 0 1 * *), @weekly
 * (0 0 * * 0), @daily @midnight (0 0 * * *), @hourly (0 * * * *), and
 * "@every DURATION" with DURATION like 90s, 30m, 6h, 1d, 1h30m (at least 60 s,
 * at most 366 d): fires at whole multiples of the interval since the Unix
 * epoch, so "@every 6h" is 00:00, 06:00, 12:00, 18:00 UTC and a restart does
 * not shift it. @reboot is rejected (the coordinator has no such event).
 *
 * Expressions that can never fire ("0 0 30 2 *", "0 0 31 4,6 *") are
 * rejected at parse time with an error, so a parsed tm_cron always fires
 * again. tm_cron_next still returns TM_CRON_NEVER defensively if no fire
 * time is found within 500 years.
 *
 * Errors name the field and the offending text:
 *   cron "0 25 * * *": field 2 (hour): 25 is out of range 0-23
 *
 * Times are Unix seconds (UTC). Fire times are whole minutes (seconds = 0),
 * except "@every" intervals that are not whole minutes.
 */
#ifndef TM_CRON_H
#define TM_CRON_H

#include <stdint.h>

#include "common/err.h"

typedef struct tm_cron tm_cron;

/* Longest expression accepted (bytes). */
#define TM_CRON_EXPR_MAX 256

/* tm_cron_next found no fire time (cannot happen for a parsed expression). */
#define TM_CRON_NEVER INT64_MAX
/* tm_cron_prev found no fire time before the given time (within 500 years). */
#define TM_CRON_NONE INT64_MIN

/* Parse expr into a new tm_cron (free with tm_cron_free). TM_EINVAL with a
 * message naming the field on a malformed or impossible expression. */
int tm_cron_parse(const char *expr, tm_cron **out, tm_err *err);
void tm_cron_free(tm_cron *c);

/* The first fire time strictly after after_unix_s, or TM_CRON_NEVER. */
int64_t tm_cron_next(const tm_cron *c, int64_t after_unix_s);
/* The last fire time strictly before before_unix_s, or TM_CRON_NONE. The
 * scheduler uses it on misfire: the newest missed fire time is
 * tm_cron_prev(c, now + 1). */
int64_t tm_cron_prev(const tm_cron *c, int64_t before_unix_s);

/* The expression as given (presets as written, e.g. "@daily"). */
const char *tm_cron_expr(const tm_cron *c);

/* UTC calendar arithmetic (proleptic Gregorian, no libc time zone state),
 * shared with retention's buckets. */
typedef struct tm_utc {
    int year, month, day; /* month 1-12, day 1-31 */
    int hour, minute, second;
    int wday; /* 0 = Sunday .. 6 = Saturday */
} tm_utc;

void tm_utc_from_unix(int64_t unix_s, tm_utc *out);
int64_t tm_utc_to_unix(int year, int month, int day, int hour, int minute, int second);
/* Days since 1970-01-01 of a civil date, and back. */
int64_t tm_days_from_civil(int year, int month, int day);
int tm_days_in_month(int year, int month);
/* ISO 8601 week date: week-year and week 1-53 (week 1 holds the year's first
 * Thursday; 2026-12-31 is 2026-W53, 2024-12-30 is 2025-W01). */
void tm_utc_iso_week(int64_t unix_s, int *iso_year, int *iso_week);

#endif
