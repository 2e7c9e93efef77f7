/*
 * alert_payload.h - the bytes each alert sink kind receives.
 *
 * Pure functions (no I/O), so the formats are unit-tested byte for byte.
 * Times are RFC 3339 UTC with milliseconds ("2026-11-24T05:19:32.123Z").
 *
 * Generic webhook (Content-Type: application/json), schema "version 1":
 *   {
 *     "version": "1",
 *     "status": "firing" | "resolved",
 *     "event": "firing" | "repeat" | "resolved",   first, reminder, end
 *     "rule": "backup_failed",
 *     "target": "orders-db",                         "" for fleet-wide rules
 *     "severity": "info" | "warning" | "critical",
 *     "previous_severity": "warning",              only when it just changed
 *     "summary": "one line for a human",
 *     "details": {"key": "value", ...},            strings only
 *     "labels": {"alertname": ..., "target": ..., "severity": ..., static labels},
 *     "starts_at": "2026-...Z",                    firing since
 *     "ends_at": null | "2026-...Z",               set when resolved
 *     "sent_at": "2026-...Z",
 *     "fingerprint": "16 hex chars",               stable per rule+target
 *     "seq": 1,                                    1 = first, +1 per notification
 *     "runbook_url": "...",                        only when configured
 *     "generator_url": "..."                       only when configured
 *   }
 *
 * Alertmanager v2 (POST {url}/api/v2/alerts): an array of postable alerts
 *   [{"labels": {...}, "annotations": {"summary", "runbook_url", "fingerprint",
 *     details...}, "startsAt", "endsAt", "generatorURL"}]
 *   firing: endsAt = sent_at + ttl (Alertmanager resolves it by itself if the
 *   coordinator stops re-sending); resolved: endsAt = ends_at (the past).
 *   On a severity change the old label set is sent too, already ended.
 *   Annotation names are sanitised to [A-Za-z0-9_] (Alertmanager validates
 *   them as label names).
 *
 * Slack-compatible ({"text": "..."}), one readable line, e.g.
 *   [FIRING] CRITICAL backup_failed on orders-db: backup failed 3 times (kind=full, error=...)
 *   [RESOLVED] backup_failed on orders-db: backup failed 3 times (after 12m)
 */
#ifndef TM_ALERT_PAYLOAD_H
#define TM_ALERT_PAYLOAD_H

#include <stddef.h>
#include <stdint.h>

#include "coordinator/alerts.h"

/* Each returns TM_OK with *out malloc'd (NUL-terminated, *len without it). */
int tm_alert_payload_webhook(const tm_alert_notification *n, const char *generator_url, char **out,
                             size_t *len);
int tm_alert_payload_alertmanager(const tm_alert_notification *n, const char *generator_url,
                                  int64_t firing_ttl_ms, char **out, size_t *len);
int tm_alert_payload_slack(const tm_alert_notification *n, char **out, size_t *len);

/* RFC 3339 UTC with milliseconds into out (>= 25 bytes). */
void tm_alert_fmt_time_ms(int64_t unix_ms, char *out, size_t cap);

/* A URL safe to log: scheme://host[:port] and "/..." when it had a path or a
 * query (Slack and most webhooks carry their token there); userinfo dropped. */
void tm_alert_redact_url(const char *url, char *out, size_t cap);

#endif
