/*
 * target_metrics.h - per-target /metrics that need more than one catalog
 * row: failures by kind (tidemark_backup_failures_total) and the PITR
 * window (tidemark_pitr_window_{start,end}_timestamp_seconds). The window
 * costs a backup and log listing per target, so it is recomputed at most
 * every 30 s and served from a cache in between.
 */
#ifndef TM_TARGET_METRICS_H
#define TM_TARGET_METRICS_H

#include "common/err.h"
#include "common/metrics.h"

struct tm_coordinator;
typedef struct tm_target_metrics tm_target_metrics;

int tm_target_metrics_new(tm_target_metrics **out, struct tm_coordinator *c, tm_err *err);
void tm_target_metrics_free(tm_target_metrics *m);
/* A metrics collector; arg is the tm_target_metrics. */
void tm_target_metrics_collect(tm_metrics_writer *w, void *arg);

#endif
