/*
 * shipper.h - runs the continuous log shippers of the engines that have one
 * (tm_engine.ship): one thread per target, restarted with backoff when it
 * fails, stopped on shutdown. What the shippers report is the status that
 * agent/log_report.c sends for their targets.
 */
#ifndef TM_AGENT_SHIPPER_H
#define TM_AGENT_SHIPPER_H

#include "agent/engine.h"
#include "common/config.h"
#include "common/err.h"

typedef struct tm_shippers tm_shippers;

/* Starts a thread for every target of conf whose engine has ship. kick
 * (may be NULL) is called with a target's name when its shipper reported a
 * range: the log report of that target should run soon. *out is NULL-safe
 * to stop and free when no target ships. */
int tm_shippers_start(tm_shippers **out, const tm_agent_conf *conf,
                      void (*kick)(void *arg, const char *target), void *kick_arg, tm_err *err);
/* Tell every shipper to stop (tm_ship_stopping becomes 1); does not wait. */
void tm_shippers_stop(tm_shippers *s);
/* Stop, join and free. */
void tm_shippers_free(tm_shippers *s);
/* Number of shipper threads. */
size_t tm_shippers_count(const tm_shippers *s);

/* The status of target's running shipper into *st (what it reported, its
 * failures). 1 when target has a shipper in this process, else 0 (and *st
 * untouched). */
int tm_ship_status(const char *target, tm_log_status *st);

/* For tests: how many times target's shipper has been started (runs of
 * the engine's ship), 0 when none. */
unsigned tm_ship_runs(const char *target);

#endif
