/*
 * alert_rules.h - the coordinator's alert rules, evaluated on a timer.
 *
 * Every alerts.evaluate_every (coordinator.yaml; default 30 s) the rules
 * below are evaluated over the catalog and the registry and each condition
 * is reported to the alert state machine (alerts.h), which dedupes, repeats
 * and resolves; the sinks (alert_sinks.h, one sender thread each) deliver,
 * and every delivery is recorded in the catalog (alert_notifications).
 *
 *   backup_failed  (critical) the newest finished backup task of a target
 *                  failed: no backup of it succeeded since.
 *   verify_failed  (critical) the same for replication checks (VERIFY).
 *   backup_stale   (critical) the newest successful backup of a target is
 *                  older than its policy's backup_max_age (a target that has
 *                  none counts from its agent's registration).
 *   rpo_breached   (critical) log archive lag (newest archived log point,
 *                  tm_catalog_freshness type -1) over the policy's rpo_goal;
 *                  only for targets that report logs.
 *   archive_queue_growing (warning) >= 4 log files wait to be archived.
 *   log_shipping_failed (critical) the database's newest archive attempt
 *                  failed (its last failure is newer than its last
 *                  success, as the agent reports them).
 *   log_chain_reset (warning) the agent could not prove a target's log goes
 *                  on and started a new chain from a fresh base: the
 *                  restorable window has a gap from the old chain's end to
 *                  that base. Fires for 1 h from when the coordinator heard
 *                  of the newest reset; another reset meanwhile resolves it
 *                  and fires it again (one notification per gap).
 *   backup_late    (warning)  a scheduled full/incremental/snapshot has not
 *                  started, or not finished, schedule.late_after (default
 *                  1h, plus the policy's jitter) after its fire time.
 *   agent_stale    (warning)  registry state STALE; target = agent id.
 *   agent_lost     (critical) registry state LOST; target = agent id.
 *   drill_failed   (critical) the newest restore drill of a target failed.
 *   drill_rto_over_goal (critical) the newest drill passed but its RTO
 *                  (restore start -> checks passed) is over the drill's goal.
 *   drill_rpo_over_goal (warning) the newest drill's achieved RPO is over
 *                  its goal. The drill rules resolve on the next good drill.
 *
 * Rules that need a policy (backup_stale, rpo_breached, ...) skip targets
 * no policy matches; the scheduler reports those. A policy with
 * log_shipping: false turns off rpo_breached, archive_queue_growing,
 * log_shipping_failed and log_chain_reset for its targets.
 */
#ifndef TM_ALERT_RULES_H
#define TM_ALERT_RULES_H

#include <stdint.h>

#include "common/config.h"
#include "common/err.h"
#include "common/metrics.h"
#include "coordinator/alerts.h"
#include "coordinator/catalog.h"
#include "coordinator/registry.h"

typedef struct tm_alert_rules tm_alert_rules;

/* Starts the sinks of conf->sinks. conf, cat and reg must outlive it. */
int tm_alert_rules_new(tm_alert_rules **out, const tm_coordinator_conf *conf, tm_catalog *cat,
                       tm_registry *reg, tm_err *err);
/* Where the backup_late and log_shipping_failed rules look (either may be
 * NULL: that rule is not evaluated). They must outlive r. */
struct tm_scheduler;
struct tm_archiver_table;
void tm_alert_rules_set_sources(tm_alert_rules *r, struct tm_scheduler *s,
                                struct tm_archiver_table *a);
/* Flushes the sinks for up to flush_ms, then stops them. */
void tm_alert_rules_free(tm_alert_rules *r, int64_t flush_ms);

/* Evaluate when evaluate_every has passed since the last evaluation (call
 * as often as you like). Returns 1 when it evaluated, 0 when not due, or a
 * negative TM_E* when the catalog could not be read (nothing is observed
 * then: a failed read must not resolve alerts). */
int tm_alert_rules_tick(tm_alert_rules *r, int64_t now_ms, tm_err *err);

/* The state machine, for ListAlerts. */
tm_alerts *tm_alert_rules_alerts(tm_alert_rules *r);

/* The log_chain_reset rule for one target, on its own for tests: fires
 * while st's newest reset was first heard of less than hold_ms ago
 * (st->chain_reset_seen_ms); *alerted is the reset time (agent's clock) it
 * last fired for (0 = none; updated), so a newer one while it fires
 * resolves it and fires it again. */
struct tm_archiver_status;
void tm_alert_rule_chain_reset(tm_alerts *a, const char *target,
                               const struct tm_archiver_status *st, int64_t hold_ms,
                               int64_t *alerted, int64_t now_ms);

/* tidemark_alerts_firing{rule} and the sinks' families. */
void tm_alert_rules_collect(tm_metrics_writer *w, void *arg);

#endif
