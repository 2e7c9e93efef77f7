/*
 * task_result.h - small builders every engine uses to fill a task result:
 * an engine-specific figure (TaskResult.extra) and a drill's checks
 * (DrillResult.checks), each logged as it is added.
 */
#ifndef TM_AGENT_TASK_RESULT_H
#define TM_AGENT_TASK_RESULT_H

#include <stddef.h>
#include <stdint.h>

#include "tidemark.pb-c.h"

/* Append key=value (printf-formatted) to r->extra; dropped when out of memory. */
void tm_result_extra(Tidemark__TaskResult *r, const char *key, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

#define TM_DRILL_CHECKS_MAX 96

typedef struct tm_drill_checks {
    Tidemark__DrillCheck *c[TM_DRILL_CHECKS_MAX];
    size_t n;
    int failed;      /* some check failed */
    char first[512]; /* "check NAME failed: DETAIL" of the first that did */
} tm_drill_checks;

/* One check, timed from t0 (tm_mono_ns), logged as a drill event. */
void tm_drill_check_add(tm_drill_checks *d, const char *name, int ok, const char *detail,
                        uint64_t t0);
/* Hand the checks to res (or free them when that cannot be allocated). */
void tm_drill_checks_move(tm_drill_checks *d, Tidemark__DrillResult *res);

#endif
