/*
 * alerts.h - the alert state machine: pending, firing, repeat, resolved.
 *
 * The coordinator evaluates its rules (backup failed, backup late, RPO
 * breached, agent lost, ...) every <= 30 s and reports each condition here,
 * once per evaluation, with tm_alerts_observe(). This module owns what
 * happens next:
 *
 *   - dedupe: one alert per (rule, target); its fingerprint is the first 16
 *     hex chars of SHA-256("rule\0target"), stable across restarts;
 *   - pending: a true condition fires only after it held for the rule's `for`
 *     duration (0 = at once); a false observation while pending forgets it;
 *   - firing: one FIRING notification, then REPEAT every repeat interval
 *     (default 4 h) while it still holds, and at once when the severity
 *     changes; REFRESH every refresh interval (default 60 s) for sinks that
 *     need a live signal (Alertmanager expires alerts nobody re-sends);
 *   - resolved: when the condition has been false for `keep_firing_for`
 *     (default 0: the first false observation), one RESOLVED notification and
 *     the alert leaves the active list. A condition that comes back while
 *     "clearing" stays the same firing alert: flapping makes no storm;
 *   - stale: tm_alerts_sweep() resolves alerts nobody observed for
 *     stale_after (a deleted target must not fire forever).
 *
 * Notifications go to two callbacks, both called without the module's lock
 * held and on the caller's thread: notify (to the sinks: tm_alert_sinks_notify
 * fits) and record (the catalog; REFRESH is not passed there). The
 * notification is valid only during the call.
 *
 * Time is unix milliseconds. Every verb takes `now`; 0 means "ask the
 * clock", which is tm_now_ms() unless the config injects another.
 *
 * Thread-safe: one mutex around the table.
 */
#ifndef TM_ALERTS_H
#define TM_ALERTS_H

#include <stddef.h>
#include <stdint.h>

#include "common/err.h"

typedef enum {
    TM_ALERT_INFO = 0,
    TM_ALERT_WARNING = 1,
    TM_ALERT_CRITICAL = 2,
} tm_alert_severity;

/* "info" | "warning" | "critical". */
const char *tm_alert_severity_name(tm_alert_severity s);
/* Accepts the names above; TM_EINVAL otherwise. */
int tm_alert_severity_parse(const char *s, tm_alert_severity *out);

typedef struct tm_alert_kv {
    const char *key;
    const char *value;
} tm_alert_kv;

typedef enum {
    TM_ALERT_NOTIFY_FIRING = 0,   /* first notification of a firing alert */
    TM_ALERT_NOTIFY_REPEAT = 1,   /* still firing: repeat interval or severity change */
    TM_ALERT_NOTIFY_RESOLVED = 2, /* condition gone (or not observed any more) */
    TM_ALERT_NOTIFY_REFRESH = 3,  /* still firing, keep-alive for Alertmanager only */
} tm_alert_notify_kind;

/* "firing" | "repeat" | "resolved" | "refresh". */
const char *tm_alert_notify_kind_name(tm_alert_notify_kind k);

typedef struct tm_alert_notification {
    tm_alert_notify_kind kind;
    const char *rule;
    const char *target;
    const char *summary;
    const char *fingerprint;         /* 16 lowercase hex chars */
    const char *runbook_url;         /* from the rule config, or NULL */
    tm_alert_severity severity;      /* current */
    tm_alert_severity prev_severity; /* != severity on a severity change (kind REPEAT) */
    const tm_alert_kv *labels;       /* alertname, target, severity, then static labels */
    size_t n_labels;
    const tm_alert_kv *details; /* from the last observation */
    size_t n_details;
    int64_t starts_at_ms; /* when it started firing */
    int64_t ends_at_ms;   /* RESOLVED: when it resolved; 0 otherwise */
    int64_t sent_at_ms;   /* now */
    uint32_t seq;         /* 1 for FIRING, +1 per FIRING/REPEAT/RESOLVED */
} tm_alert_notification;

typedef void (*tm_alerts_notify_fn)(const tm_alert_notification *n, void *arg);
typedef int64_t (*tm_alerts_clock_fn)(void *arg);

typedef struct tm_alerts_rule_config {
    const char *name;
    int64_t for_ms;          /* -1 = default_for_ms */
    int64_t repeat_ms;       /* 0 = default_repeat_ms */
    int64_t keep_firing_ms;  /* -1 = default_keep_firing_ms */
    const char *runbook_url; /* optional, copied into notifications */
} tm_alerts_rule_config;

typedef struct tm_alerts_config {
    int64_t default_for_ms;           /* 0 */
    int64_t default_repeat_ms;        /* 0 = 4 h */
    int64_t default_keep_firing_ms;   /* 0 */
    int64_t refresh_ms;               /* 0 = 60 s; < 0 = never */
    int64_t stale_after_ms;           /* 0 = 15 min; < 0 = never */
    size_t max_active;                /* 0 = 10000; beyond: TM_ENOSPC */
    const tm_alert_kv *static_labels; /* added to every alert (e.g. env=prod) */
    size_t n_static_labels;
    const tm_alerts_rule_config *rules; /* per-rule overrides, copied */
    size_t n_rules;
    tm_alerts_notify_fn notify; /* to the sinks; may be NULL */
    void *notify_arg;
    tm_alerts_notify_fn record; /* to the catalog; never gets REFRESH; may be NULL */
    void *record_arg;
    tm_alerts_clock_fn clock; /* NULL = tm_now_ms */
    void *clock_arg;
} tm_alerts_config;

typedef struct tm_alerts tm_alerts;

/* cfg is copied (strings included). Rule names must be unique and non-empty. */
int tm_alerts_new(const tm_alerts_config *cfg, tm_alerts **out, tm_err *err);
void tm_alerts_free(tm_alerts *a);

/* What one observation did. */
typedef enum {
    TM_ALERT_ACT_NONE = 0,  /* nothing new (inactive, or firing within the interval) */
    TM_ALERT_ACT_PENDING,   /* condition true, waiting for `for` */
    TM_ALERT_ACT_FIRING,    /* notified FIRING */
    TM_ALERT_ACT_REPEAT,    /* notified REPEAT */
    TM_ALERT_ACT_REFRESH,   /* notified REFRESH */
    TM_ALERT_ACT_CLEARING,  /* false, but kept firing for keep_firing_for */
    TM_ALERT_ACT_RESOLVED,  /* notified RESOLVED */
    TM_ALERT_ACT_FORGOTTEN, /* false while pending: dropped silently */
} tm_alert_action;

const char *tm_alert_action_name(tm_alert_action a);

/*
 * One evaluation of one rule for one target. rule and target are required
 * (target may be "" for fleet-wide rules); summary is a one-line human text
 * (NULL = ""); details are copied (when firing is true they replace the
 * previous ones; when false the last firing details are kept for RESOLVED).
 * action (may be NULL) tells what happened. Returns TM_OK, TM_EINVAL,
 * TM_ENOSPC (max_active reached: the new alert is not tracked, logged) or
 * TM_ENOMEM.
 */
int tm_alerts_observe(tm_alerts *a, const char *rule, const char *target,
                      tm_alert_severity severity, int firing, const char *summary,
                      const tm_alert_kv *details, size_t n_details, int64_t now,
                      tm_alert_action *action, tm_err *err);

/* Resolve alerts not observed for stale_after_ms. Returns how many resolved. */
size_t tm_alerts_sweep(tm_alerts *a, int64_t now);

/* Resolve every firing alert now (e.g. before a planned shutdown). Optional:
 * alerts are not persisted, so without this they expire in Alertmanager. */
size_t tm_alerts_resolve_all(tm_alerts *a, int64_t now);

typedef enum { TM_ALERT_STATE_PENDING = 0, TM_ALERT_STATE_FIRING = 1 } tm_alert_state;

/* A deep copy of one active alert, for `tidemarkctl alerts list`. */
typedef struct tm_alert_info {
    char *rule;
    char *target;
    char *summary;
    char fingerprint[17];
    tm_alert_severity severity;
    tm_alert_state state;
    int clearing;            /* firing, condition false, inside keep_firing_for */
    int64_t active_since_ms; /* condition first true (pending start) */
    int64_t starts_at_ms;    /* firing since (0 while pending) */
    int64_t last_notified_ms;
    int64_t last_observed_ms;
    uint32_t notifications; /* FIRING + REPEAT sent so far */
    tm_alert_kv *details;   /* keys/values owned by the array */
    size_t n_details;
} tm_alert_info;

/* Snapshot of active alerts (pending and firing), firing first, then by
 * severity (critical first), rule, target. Free with tm_alert_info_free. */
int tm_alerts_list(tm_alerts *a, tm_alert_info **out, size_t *n, tm_err *err);
void tm_alert_info_free(tm_alert_info *v, size_t n);

/* Firing alerts per rule, for tidemark_alerts_firing{rule}. fn is called
 * once per rule that is configured or has ever fired (0 when none fire now,
 * so the series does not vanish), under the lock: do not call back in. */
void tm_alerts_firing_by_rule(tm_alerts *a, void (*fn)(const char *rule, size_t n, void *arg),
                              void *arg);

#endif
