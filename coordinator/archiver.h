/*
 * archiver.h - the database's own log-shipping status per target, as the
 * agents last reported it (the engine's own archiver statistics): live
 * state kept in memory, like heartbeats; re-reported every few seconds, so a restart
 * loses nothing that matters. Feeds the log_shipping_failed and
 * log_chain_reset rules and the tidemark_log_archive_* and
 * tidemark_log_chain_resets_total metrics. Beside it, for a target whose database is
 * a managed service keeping its own history, the provider's own
 * point-in-time window as the agent last reported it (ReportProviderWindow):
 * shown by status, alerted on by provider_check_failed.
 */
#ifndef TM_ARCHIVER_H
#define TM_ARCHIVER_H

#include <stdint.h>

#include "common/err.h"
#include "common/metrics.h"

typedef struct tm_archiver_table tm_archiver_table;

typedef struct tm_archiver_status {
    uint64_t archived_count, failed_count;
    int64_t last_archived_ms, last_failed_ms; /* unix milliseconds; 0 = never */
    char last_archived_log[64], last_failed_log[64];
    char error[256];     /* could not read the status (e.g. server down); "" = read */
    int64_t reported_at; /* unix seconds */
    /* Non-empty: the target's window is snapshot-only, and why (the agent's
     * engine says so: its log carries no times to restore to). */
    char snapshot_only[256];
    /* What the last failure said, when the agent knows (its own shipper's
     * error); "" = only the database's log says. */
    char last_failure[256];
    /* Log chain resets: the agent could not prove the log goes on and
     * started a new chain from a fresh base; the window has a hole from
     * chain_reset_from to the new chain's base. As the agent reports them
     * (its count since it started), except: a report that says less (the
     * agent restarted, or could not read its status) keeps the newest reset
     * known, so an alert is not lost with the agent's memory. */
    uint64_t chain_resets;
    int64_t last_chain_reset_ms; /* unix milliseconds, the agent's clock; 0 = none */
    char chain_reset[256];       /* why */
    char chain_reset_from[128];  /* where the replaced chain ended (engine-opaque) */
    /* Kept by tm_archiver_put: resets counted since the coordinator started
     * (tidemark_log_chain_resets_total), and when it first heard of the
     * newest one (its own clock: the log_chain_reset hold counts from
     * there; the agent's time for one already reported before it started). */
    uint64_t chain_resets_total;
    int64_t chain_reset_seen_ms;
} tm_archiver_status;

/* The provider's own window of a target (ProviderWindowReport). */
typedef struct tm_provider_status {
    int64_t start, end; /* unix seconds; 0 = unknown */
    char source[256];   /* how it is known */
    char error[512];    /* the provider could not be asked (why); "" = asked */
    int64_t reported_at;
} tm_provider_status;

int tm_archiver_table_new(tm_archiver_table **out, tm_err *err);
void tm_archiver_table_free(tm_archiver_table *t);
/* Replaces the target's status with st, keeping the chain reset fields as
 * above; now_ms is the coordinator's clock (0 = ask it). */
int tm_archiver_put(tm_archiver_table *t, const char *target, const tm_archiver_status *st,
                    int64_t now_ms);
/* TM_ENOENT when the target never reported. */
int tm_archiver_get(tm_archiver_table *t, const char *target, tm_archiver_status *out);
int tm_archiver_put_window(tm_archiver_table *t, const char *target, const tm_provider_status *pw);
/* TM_ENOENT when the target never reported a provider window. */
int tm_archiver_get_window(tm_archiver_table *t, const char *target, tm_provider_status *out);
/* Failing now: the newest archive attempt failed (a later success clears
 * it; milliseconds, since a failure and the retry's success often share a
 * second). */
int tm_archiver_failing(const tm_archiver_status *st);

/* tidemark_log_archive_failures_total{target}, tidemark_log_last_archived_timestamp_seconds,
 * tidemark_pitr_snapshot_only{target} (1: restores reach backups only),
 * tidemark_log_chain_resets_total{target} and
 * tidemark_log_last_chain_reset_timestamp_seconds{target}. */
void tm_archiver_collect(tm_metrics_writer *w, void *arg);

#endif
