/*
 * drills.h - restore drills, coordinator side.
 *
 * A drill is a DRILL task (DrillSpec: target time, checks, directory, the
 * RTO/RPO goals) queued to a staging agent - the policy's drill.staging_agent,
 * the one named on `tidemarkctl drill run --to`, or the target's own agent -
 * by the scheduler on the policy's drill.schedule or by the RunDrill admin
 * call; never while another drill of the target is queued or running. The
 * agent restores, starts, checks and measures (the target kind's engine,
 * agent/engines/<kind>/); when the task ends (succeeded or failed for good) its
 * DrillResult becomes a row of the catalog's drills table, which
 * `tidemarkctl drills list`, the metrics below and the alert rules
 * drill_failed / drill_rto_over_goal / drill_rpo_over_goal read.
 */
#ifndef TM_DRILLS_H
#define TM_DRILLS_H

#include "common/config.h"
#include "common/err.h"
#include "common/metrics.h"
#include "coordinator/catalog.h"
#include "coordinator/dispatcher.h"

#include "tidemark.pb-c.h"

/* Queue a drill of target. to_agent: agent id or hostname (NULL = the
 * policy's staging agent, else the target's own agent); target_time: NULL
 * or "" = the latest recoverable point. TM_EBUSY when a drill of the target
 * is already queued or running, TM_ENOENT for an unknown target or agent. */
int tm_drills_submit(const tm_coordinator_conf *conf, tm_catalog *cat, tm_dispatcher *d,
                     const char *target, const char *to_agent, const char *target_time,
                     const char *requested_by, Tidemark__Task **out, tm_err *err);

/* Record a DRILL task that reached SUCCEEDED or FAILED (the dispatcher
 * calls this); other tasks and states are ignored. */
int tm_drills_record(tm_catalog *cat, const Tidemark__Task *t, tm_err *err);

/* Metrics collector, arg = the tm_catalog: per target
 * tidemark_drill_last_{rto,rpo}_seconds, _last_result, _last_success_timestamp_seconds,
 * tidemark_drill_{rto,rpo}_goal_seconds; fleet tidemark_drills_total{result}. */
void tm_drills_collect(tm_metrics_writer *w, void *arg);

#endif
