/*
 * alert_sinks.h - deliver alert notifications: generic webhook, Alertmanager
 * v2, Slack-compatible webhook (formats in alert_payload.h).
 *
 * Every sink has its own sender thread and bounded queue, so a sink that is
 * down or slow never blocks the coordinator nor the other sinks:
 * tm_alert_sinks_send() filters, renders the body and enqueues; it does no
 * network I/O. A full queue drops its oldest entry (counted, logged). The
 * sender POSTs with libcurl (connect timeout 3 s, total 10 s by default) and
 * retries connection errors, 408, 429 and 5xx with exponential backoff; other
 * 4xx are not retried. URLs are secrets (Slack and most webhooks carry a
 * token in them): logs show only scheme://host:port.
 *
 * Per sink: send_resolved, min_severity. REFRESH notifications go to
 * Alertmanager sinks only (they keep its alerts from expiring).
 */
#ifndef TM_ALERT_SINKS_H
#define TM_ALERT_SINKS_H

#include <stddef.h>
#include <stdint.h>

#include "common/err.h"
#include "common/metrics.h"
#include "coordinator/alerts.h"

typedef enum {
    TM_ALERT_SINK_WEBHOOK = 0,
    TM_ALERT_SINK_ALERTMANAGER = 1,
    TM_ALERT_SINK_SLACK = 2,
} tm_alert_sink_kind;

/* "webhook" | "alertmanager" | "slack". */
const char *tm_alert_sink_kind_name(tm_alert_sink_kind k);
int tm_alert_sink_kind_parse(const char *s, tm_alert_sink_kind *out);

typedef struct tm_alert_sink_config {
    const char *name; /* unique; in logs and metrics */
    tm_alert_sink_kind kind;
    const char *url;                /* webhook/slack: the URL POSTed to; alertmanager: base URL */
    int send_resolved;              /* 1 */
    tm_alert_severity min_severity; /* TM_ALERT_INFO: everything */
    long connect_timeout_ms;        /* 3000 */
    long timeout_ms;                /* 10000, whole request */
    int max_retries;                /* 3 (so up to 4 attempts) */
    long backoff_ms;                /* 500, doubled per retry */
    long backoff_max_ms;            /* 8000 */
    size_t queue_cap;               /* 256 */
    int64_t firing_ttl_ms;          /* alertmanager: endsAt = now + this; 300000 */
    const char *generator_url;      /* alertmanager generatorURL / webhook generator_url */
    const char *auth_header;        /* e.g. "Authorization: Bearer ..."; never logged */
    const char *ca_file;            /* extra CA bundle for https, or NULL */
} tm_alert_sink_config;

/* Fill the defaults above; set name, kind and url after. */
void tm_alert_sink_config_init(tm_alert_sink_config *c);

/* The outcome of one notification on one sink (after its retries). */
typedef struct tm_alert_delivery {
    const char *sink;
    tm_alert_sink_kind sink_kind;
    tm_alert_notify_kind kind;
    const char *rule;
    const char *target;
    const char *fingerprint;
    uint32_t seq;
    int ok;             /* 1 sent (2xx), 0 failed or dropped */
    int dropped;        /* 1: never attempted (queue overflow or shutdown) */
    int attempts;       /* 0 when dropped */
    long http_status;   /* last HTTP status, 0 when no response */
    int64_t latency_ms; /* enqueue -> final answer */
    const char *error;  /* human text when !ok, no URL in it */
} tm_alert_delivery;

/* Called on the sink's sender thread (or the caller's for drops); must not
 * block for long. The integrator records deliveries in the catalog here. */
typedef void (*tm_alert_delivery_fn)(const tm_alert_delivery *d, void *arg);

typedef struct tm_alert_sinks tm_alert_sinks;

/* Validates and copies the configs, starts one thread per sink. n may be 0
 * (every send is then a no-op). on_delivery may be NULL. */
int tm_alert_sinks_new(const tm_alert_sink_config *sinks, size_t n,
                       tm_alert_delivery_fn on_delivery, void *arg, tm_alert_sinks **out,
                       tm_err *err);
/* Stops at once: in-flight requests are aborted, queued notifications are
 * dropped (counted, logged). Call tm_alert_sinks_flush() first for a
 * graceful stop. */
void tm_alert_sinks_free(tm_alert_sinks *s);

/* Queue n for every sink that wants it. Never blocks on the network.
 * Returns how many sinks it was queued for. */
size_t tm_alert_sinks_send(tm_alert_sinks *s, const tm_alert_notification *n);
/* tm_alerts_notify_fn adapter: cfg.notify = tm_alert_sinks_notify, cfg.notify_arg = sinks. */
void tm_alert_sinks_notify(const tm_alert_notification *n, void *arg);

/* Wait until every queue is empty and no request is in flight, or timeout.
 * TM_OK or TM_ETIMEDOUT. */
int tm_alert_sinks_flush(tm_alert_sinks *s, int64_t timeout_ms);

typedef struct tm_alert_sink_stats {
    uint64_t sent;     /* delivered (2xx) */
    uint64_t failed;   /* given up after retries, or rejected */
    uint64_t dropped;  /* queue overflow or shutdown: never attempted */
    uint64_t retries;  /* attempts beyond the first */
    uint64_t filtered; /* not wanted by this sink (severity, resolved, refresh) */
    size_t queued;     /* now in the queue */
} tm_alert_sink_stats;

size_t tm_alert_sinks_count(const tm_alert_sinks *s);
/* Stats of sink i (0-based, config order); name (may be NULL) gets its name. */
int tm_alert_sinks_stats(tm_alert_sinks *s, size_t i, const char **name, tm_alert_sink_stats *out);

/* A metrics collector: tm_metrics_add_collector(m, tm_alert_sinks_collect, sinks).
 * Writes tidemark_alert_notifications_total{sink,kind,result="sent|failed|dropped"}
 * and tidemark_alert_sink_queue_length{sink,kind}. The sinks must outlive
 * every render (free the registry first, or stop serving /metrics). */
void tm_alert_sinks_collect(tm_metrics_writer *w, void *arg);

#endif
