/*
 * drill_checks.h - what every engine's restore drill shares: the list of
 * checks it reports (DrillResult.checks, the first failure remembered for
 * the drill's error), whether a check query's answer means "passed", and
 * removing the drill's directory at teardown.
 */
#ifndef TM_AGENT_DRILL_CHECKS_H
#define TM_AGENT_DRILL_CHECKS_H

#include <stddef.h>
#include <stdint.h>

#include "tidemark.pb-c.h"

#define TM_DRILL_CHECKS_MAX 64

typedef struct tm_drill_checks {
    Tidemark__DrillCheck *c[TM_DRILL_CHECKS_MAX];
    size_t n;
    int failed;      /* a check failed */
    char first[512]; /* "check NAME failed: DETAIL" of the first that did */
} tm_drill_checks;

/* Record one check (logged too); ms is how long it took. Past
 * TM_DRILL_CHECKS_MAX checks only the failure is remembered. */
void tm_drill_check_add(tm_drill_checks *d, const char *name, int ok, const char *detail,
                        uint64_t ms);
/* Hand the checks to res (res->checks), or free them when that fails. */
void tm_drill_checks_move(tm_drill_checks *d, Tidemark__DrillResult *res);
/* A user check's first column: anything but NULL, false, f, 0 passes. */
int tm_drill_value_true(const char *v);
/* Remove dir and everything below it, links not followed; 0 when it is
 * gone (or was never there). */
int tm_drill_rmtree(const char *dir);

#endif
