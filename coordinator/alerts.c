/*
 * alerts.c - the alert state machine (see alerts.h).
 *
 * A hash table keyed by "rule\0target" holds pending and firing alerts only;
 * an inactive condition costs one lookup. Decisions are made under the
 * mutex; the notifications they produce are deep-copied into a batch and
 * handed to the callbacks after the mutex is released, so a slow callback
 * never holds up other observers and may call tm_alerts_list().
 */
#include "coordinator/alerts.h"

#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "common/log.h"
#include "common/util.h"

#define N_BUCKETS 1024
#define DEFAULT_REPEAT_MS (4LL * 3600 * 1000)
#define DEFAULT_REFRESH_MS (60LL * 1000)
#define DEFAULT_STALE_MS (15LL * 60 * 1000)
#define DEFAULT_MAX_ACTIVE 10000

typedef struct rule_cfg {
    char *name;
    int64_t for_ms, repeat_ms, keep_firing_ms;
    char *runbook_url;
} rule_cfg;

typedef struct alert {
    struct alert *next;
    uint32_t hash;
    char *rule, *target, *summary;
    char fp[17];
    tm_alert_severity severity;
    tm_alert_state state;
    int clearing;
    int64_t clear_since, active_since, starts_at, last_notified, last_sent, last_observed;
    uint32_t seq, notifications;
    tm_alert_kv *details; /* owned */
    size_t n_details;
} alert;

/* One notification with its own copies of every string. */
typedef struct notif {
    tm_alert_notification n;
    tm_alert_kv *labels;
    tm_alert_kv *details;
    char *rule, *target, *summary, *runbook;
    char fp[17];
} notif;

typedef struct batch {
    notif *v;
    size_t n, cap;
} batch;

struct tm_alerts {
    pthread_mutex_t mu;
    int64_t def_for, def_repeat, def_keep, refresh, stale;
    size_t max_active, count;
    tm_alert_kv *static_labels;
    size_t n_static;
    rule_cfg *rules;
    size_t n_rules;
    char **seen_rules; /* configured + ever fired, for tidemark_alerts_firing */
    size_t n_seen, cap_seen;
    tm_alerts_notify_fn notify, record;
    void *notify_arg, *record_arg;
    tm_alerts_clock_fn clock;
    void *clock_arg;
    alert *buckets[N_BUCKETS];
};

const char *tm_alert_severity_name(tm_alert_severity s)
{
    switch (s) {
    case TM_ALERT_INFO:
        return "info";
    case TM_ALERT_WARNING:
        return "warning";
    case TM_ALERT_CRITICAL:
        return "critical";
    }
    return "unknown";
}

int tm_alert_severity_parse(const char *s, tm_alert_severity *out)
{
    if (s == NULL) {
        return TM_EINVAL;
    }
    if (strcmp(s, "info") == 0) {
        *out = TM_ALERT_INFO;
    } else if (strcmp(s, "warning") == 0) {
        *out = TM_ALERT_WARNING;
    } else if (strcmp(s, "critical") == 0) {
        *out = TM_ALERT_CRITICAL;
    } else {
        return TM_EINVAL;
    }
    return TM_OK;
}

const char *tm_alert_notify_kind_name(tm_alert_notify_kind k)
{
    switch (k) {
    case TM_ALERT_NOTIFY_FIRING:
        return "firing";
    case TM_ALERT_NOTIFY_REPEAT:
        return "repeat";
    case TM_ALERT_NOTIFY_RESOLVED:
        return "resolved";
    case TM_ALERT_NOTIFY_REFRESH:
        return "refresh";
    }
    return "unknown";
}

const char *tm_alert_action_name(tm_alert_action a)
{
    static const char *names[] = {"none",    "pending",  "firing",   "repeat",
                                  "refresh", "clearing", "resolved", "forgotten"};
    return (unsigned)a < sizeof names / sizeof names[0] ? names[a] : "unknown";
}

static char *xstrdup(const char *s)
{
    return strdup(s != NULL ? s : "");
}

static void kv_free(tm_alert_kv *v, size_t n)
{
    for (size_t i = 0; i < n && v != NULL; i++) {
        free((char *)v[i].key);
        free((char *)v[i].value);
    }
    free(v);
}

/* Deep copy; entries with a NULL or empty key are skipped. */
static int kv_copy(const tm_alert_kv *src, size_t n, tm_alert_kv **out, size_t *nout)
{
    *out = NULL;
    *nout = 0;
    if (n == 0) {
        return TM_OK;
    }
    tm_alert_kv *v = calloc(n, sizeof *v);
    if (v == NULL) {
        return TM_ENOMEM;
    }
    size_t k = 0;
    for (size_t i = 0; i < n; i++) {
        if (src[i].key == NULL || src[i].key[0] == '\0') {
            continue;
        }
        v[k].key = xstrdup(src[i].key);
        v[k].value = xstrdup(src[i].value);
        k++;
        if (v[k - 1].key == NULL || v[k - 1].value == NULL) {
            kv_free(v, k);
            return TM_ENOMEM;
        }
    }
    *out = v;
    *nout = k;
    return TM_OK;
}

static uint32_t key_hash(const char *rule, const char *target)
{
    uint32_t h = 2166136261u;
    for (const char *p = rule; *p; p++) {
        h = (h ^ (uint8_t)*p) * 16777619u;
    }
    h = (h ^ 0xffu) * 16777619u;
    for (const char *p = target; *p; p++) {
        h = (h ^ (uint8_t)*p) * 16777619u;
    }
    return h;
}

static void fingerprint(const char *rule, const char *target, char out[17])
{
    size_t lr = strlen(rule), lt = strlen(target);
    char *buf = malloc(lr + lt + 1);
    char hex[65];
    if (buf == NULL) {
        snprintf(out, 17, "%016x", key_hash(rule, target));
        return;
    }
    memcpy(buf, rule, lr);
    buf[lr] = '\0';
    memcpy(buf + lr + 1, target, lt);
    tm_sha256_hex(buf, lr + 1 + lt, hex);
    free(buf);
    memcpy(out, hex, 16);
    out[16] = '\0';
}

static const rule_cfg *find_rule(const tm_alerts *a, const char *name)
{
    for (size_t i = 0; i < a->n_rules; i++) {
        if (strcmp(a->rules[i].name, name) == 0) {
            return &a->rules[i];
        }
    }
    return NULL;
}

static int note_rule_seen(tm_alerts *a, const char *rule)
{
    for (size_t i = 0; i < a->n_seen; i++) {
        if (strcmp(a->seen_rules[i], rule) == 0) {
            return TM_OK;
        }
    }
    if (a->n_seen == a->cap_seen) {
        size_t cap = a->cap_seen ? a->cap_seen * 2 : 16;
        char **v = realloc(a->seen_rules, cap * sizeof *v);
        if (v == NULL) {
            return TM_ENOMEM;
        }
        a->seen_rules = v;
        a->cap_seen = cap;
    }
    if ((a->seen_rules[a->n_seen] = strdup(rule)) == NULL) {
        return TM_ENOMEM;
    }
    a->n_seen++;
    return TM_OK;
}

int tm_alerts_new(const tm_alerts_config *cfg, tm_alerts **out, tm_err *err)
{
    *out = NULL;
    if (cfg == NULL) {
        return tm_err_set(err, TM_EINVAL, "alerts: no configuration");
    }
    tm_alerts *a = calloc(1, sizeof *a);
    if (a == NULL) {
        return tm_err_set(err, TM_ENOMEM, "alerts: out of memory");
    }
    pthread_mutex_init(&a->mu, NULL);
    a->def_for = cfg->default_for_ms > 0 ? cfg->default_for_ms : 0;
    a->def_repeat = cfg->default_repeat_ms > 0 ? cfg->default_repeat_ms : DEFAULT_REPEAT_MS;
    a->def_keep = cfg->default_keep_firing_ms > 0 ? cfg->default_keep_firing_ms : 0;
    a->refresh = cfg->refresh_ms == 0 ? DEFAULT_REFRESH_MS : cfg->refresh_ms;
    a->stale = cfg->stale_after_ms == 0 ? DEFAULT_STALE_MS : cfg->stale_after_ms;
    a->max_active = cfg->max_active ? cfg->max_active : DEFAULT_MAX_ACTIVE;
    a->notify = cfg->notify;
    a->notify_arg = cfg->notify_arg;
    a->record = cfg->record;
    a->record_arg = cfg->record_arg;
    a->clock = cfg->clock;
    a->clock_arg = cfg->clock_arg;
    int rc = kv_copy(cfg->static_labels, cfg->n_static_labels, &a->static_labels, &a->n_static);
    if (rc != TM_OK) {
        tm_alerts_free(a);
        return tm_err_set(err, rc, "alerts: out of memory");
    }
    for (size_t i = 0; i < a->n_static; i++) {
        const char *k = a->static_labels[i].key;
        if (strcmp(k, "alertname") == 0 || strcmp(k, "target") == 0 || strcmp(k, "severity") == 0) {
            tm_err_set(err, TM_ECONFIG,
                       "alerts: static label \"%s\" is reserved (set by every alert)", k);
            tm_alerts_free(a);
            return TM_ECONFIG;
        }
    }
    if (cfg->n_rules > 0) {
        a->rules = calloc(cfg->n_rules, sizeof *a->rules);
        if (a->rules == NULL) {
            tm_alerts_free(a);
            return tm_err_set(err, TM_ENOMEM, "alerts: out of memory");
        }
    }
    for (size_t i = 0; i < cfg->n_rules; i++) {
        const tm_alerts_rule_config *r = &cfg->rules[i];
        if (r->name == NULL || r->name[0] == '\0') {
            tm_alerts_free(a);
            return tm_err_set(err, TM_ECONFIG, "alerts: rule %zu has no name", i + 1);
        }
        if (find_rule(a, r->name) != NULL) {
            tm_alerts_free(a);
            return tm_err_set(err, TM_ECONFIG, "alerts: rule \"%s\" configured twice", r->name);
        }
        rule_cfg *d = &a->rules[a->n_rules];
        d->name = strdup(r->name);
        d->runbook_url = r->runbook_url ? strdup(r->runbook_url) : NULL;
        d->for_ms = r->for_ms < 0 ? a->def_for : r->for_ms;
        d->repeat_ms = r->repeat_ms > 0 ? r->repeat_ms : a->def_repeat;
        d->keep_firing_ms = r->keep_firing_ms < 0 ? a->def_keep : r->keep_firing_ms;
        a->n_rules++;
        if (d->name == NULL || (r->runbook_url && d->runbook_url == NULL) ||
            note_rule_seen(a, r->name) != TM_OK) {
            tm_alerts_free(a);
            return tm_err_set(err, TM_ENOMEM, "alerts: out of memory");
        }
    }
    *out = a;
    return TM_OK;
}

static void alert_free(alert *al)
{
    if (al == NULL) {
        return;
    }
    free(al->rule);
    free(al->target);
    free(al->summary);
    kv_free(al->details, al->n_details);
    free(al);
}

void tm_alerts_free(tm_alerts *a)
{
    if (a == NULL) {
        return;
    }
    for (size_t b = 0; b < N_BUCKETS; b++) {
        for (alert *al = a->buckets[b], *nx; al != NULL; al = nx) {
            nx = al->next;
            alert_free(al);
        }
    }
    for (size_t i = 0; i < a->n_rules; i++) {
        free(a->rules[i].name);
        free(a->rules[i].runbook_url);
    }
    free(a->rules);
    for (size_t i = 0; i < a->n_seen; i++) {
        free(a->seen_rules[i]);
    }
    free(a->seen_rules);
    kv_free(a->static_labels, a->n_static);
    pthread_mutex_destroy(&a->mu);
    free(a);
}

static int64_t clock_now(tm_alerts *a, int64_t now)
{
    if (now != 0) {
        return now;
    }
    return a->clock ? a->clock(a->clock_arg) : tm_now_ms();
}

static alert **lookup(tm_alerts *a, const char *rule, const char *target, uint32_t h)
{
    alert **pp = &a->buckets[h % N_BUCKETS];
    for (; *pp != NULL; pp = &(*pp)->next) {
        if ((*pp)->hash == h && strcmp((*pp)->rule, rule) == 0 &&
            strcmp((*pp)->target, target) == 0) {
            return pp;
        }
    }
    return pp;
}

static void notif_clear(notif *x)
{
    free(x->labels);
    kv_free(x->details, x->n.n_details);
    free(x->rule);
    free(x->target);
    free(x->summary);
    free(x->runbook);
}

/* Deep-copy the alert into a notification at the end of the batch. Labels
 * point into the notif's own strings and the module's static labels (which
 * live as long as the module; callbacks run before tm_alerts_free). */
static int batch_add(tm_alerts *a, batch *b, const alert *al, tm_alert_notify_kind kind,
                     tm_alert_severity prev, int64_t now)
{
    if (b->n == b->cap) {
        size_t cap = b->cap ? b->cap * 2 : 4;
        notif *v = realloc(b->v, cap * sizeof *v);
        if (v == NULL) {
            return TM_ENOMEM;
        }
        b->v = v;
        b->cap = cap;
    }
    notif *x = &b->v[b->n];
    memset(x, 0, sizeof *x);
    const rule_cfg *rc = find_rule(a, al->rule);
    x->rule = xstrdup(al->rule);
    x->target = xstrdup(al->target);
    x->summary = xstrdup(al->summary);
    x->runbook = rc && rc->runbook_url ? xstrdup(rc->runbook_url) : NULL;
    x->labels = calloc(3 + a->n_static, sizeof *x->labels);
    size_t nd = 0;
    int rc2 = kv_copy(al->details, al->n_details, &x->details, &nd);
    if (x->rule == NULL || x->target == NULL || x->summary == NULL || x->labels == NULL ||
        (rc && rc->runbook_url && x->runbook == NULL) || rc2 != TM_OK) {
        notif_clear(x);
        return TM_ENOMEM;
    }
    memcpy(x->fp, al->fp, sizeof x->fp);
    size_t nl = 0;
    x->labels[nl++] = (tm_alert_kv){"alertname", x->rule};
    if (x->target[0] != '\0') {
        x->labels[nl++] = (tm_alert_kv){"target", x->target};
    }
    x->labels[nl++] = (tm_alert_kv){"severity", tm_alert_severity_name(al->severity)};
    for (size_t i = 0; i < a->n_static; i++) {
        x->labels[nl++] = a->static_labels[i];
    }
    x->n = (tm_alert_notification){
        .kind = kind,
        .rule = x->rule,
        .target = x->target,
        .summary = x->summary,
        .fingerprint = x->fp,
        .runbook_url = x->runbook,
        .severity = al->severity,
        .prev_severity = prev,
        .labels = x->labels,
        .n_labels = nl,
        .details = x->details,
        .n_details = nd,
        .starts_at_ms = al->starts_at,
        .ends_at_ms = kind == TM_ALERT_NOTIFY_RESOLVED ? now : 0,
        .sent_at_ms = now,
        .seq = al->seq,
    };
    b->n++;
    return TM_OK;
}

/* Outside the lock: deliver and free the batch. */
static void batch_deliver(tm_alerts *a, batch *b)
{
    for (size_t i = 0; i < b->n; i++) {
        notif *x = &b->v[i];
        if (a->notify) {
            a->notify(&x->n, a->notify_arg);
        }
        if (a->record && x->n.kind != TM_ALERT_NOTIFY_REFRESH) {
            a->record(&x->n, a->record_arg);
        }
        notif_clear(x);
    }
    free(b->v);
}

static void unlink_alert(tm_alerts *a, alert **pp)
{
    alert *al = *pp;
    *pp = al->next;
    a->count--;
    alert_free(al);
}

/* Resolve a firing alert: notify, log, remove. */
static void resolve(tm_alerts *a, batch *b, alert **pp, int64_t now, const char *why)
{
    alert *al = *pp;
    al->seq++;
    tm_info("alerts", "alert resolved rule=%s target=%s fingerprint=%s firing_for_s=%lld why=%s",
            al->rule, al->target, al->fp, (long long)((now - al->starts_at) / 1000), why);
    if (batch_add(a, b, al, TM_ALERT_NOTIFY_RESOLVED, al->severity, now) != TM_OK) {
        tm_error("alerts",
                 "alert resolved but the notification was lost: out of memory "
                 "rule=%s target=%s",
                 al->rule, al->target);
    }
    unlink_alert(a, pp);
}

static int observe_locked(tm_alerts *a, batch *b, const char *rule, const char *target,
                          tm_alert_severity sev, int firing, const char *summary,
                          const tm_alert_kv *details, size_t n_details, int64_t now,
                          tm_alert_action *act, tm_err *err)
{
    uint32_t h = key_hash(rule, target);
    alert **pp = lookup(a, rule, target, h);
    alert *al = *pp;
    const rule_cfg *rc = find_rule(a, rule);
    int64_t for_ms = rc ? rc->for_ms : a->def_for;
    int64_t repeat_ms = rc ? rc->repeat_ms : a->def_repeat;
    int64_t keep_ms = rc ? rc->keep_firing_ms : a->def_keep;

    if (!firing) {
        if (al == NULL) {
            *act = TM_ALERT_ACT_NONE;
            return TM_OK;
        }
        al->last_observed = now;
        if (al->state == TM_ALERT_STATE_PENDING) {
            unlink_alert(a, pp);
            *act = TM_ALERT_ACT_FORGOTTEN;
            return TM_OK;
        }
        if (!al->clearing) {
            al->clearing = 1;
            al->clear_since = now;
        }
        if (now - al->clear_since >= keep_ms) {
            resolve(a, b, pp, now, "condition_false");
            *act = TM_ALERT_ACT_RESOLVED;
            return TM_OK;
        }
        *act = TM_ALERT_ACT_CLEARING;
        if (a->refresh > 0 && now - al->last_sent >= a->refresh) {
            al->last_sent = now;
            batch_add(a, b, al, TM_ALERT_NOTIFY_REFRESH, al->severity, now);
        }
        return TM_OK;
    }

    if (al == NULL) {
        if (a->count >= a->max_active) {
            tm_warn("alerts", "too many active alerts, not tracking rule=%s target=%s max=%zu",
                    rule, target, a->max_active);
            return tm_err_set(err, TM_ENOSPC,
                              "alerts: %zu alerts active, the limit: alert %s/%s not tracked",
                              a->count, rule, target);
        }
        al = calloc(1, sizeof *al);
        if (al == NULL || (al->rule = strdup(rule)) == NULL ||
            (al->target = strdup(target)) == NULL || (al->summary = strdup("")) == NULL) {
            alert_free(al);
            return tm_err_set(err, TM_ENOMEM, "alerts: out of memory");
        }
        al->hash = h;
        al->state = TM_ALERT_STATE_PENDING;
        al->active_since = now;
        al->severity = sev;
        fingerprint(rule, target, al->fp);
        *pp = al;
        a->count++;
    }
    /* The newest observation's text and details describe the alert. */
    tm_alert_kv *nd = NULL;
    size_t nnd = 0;
    char *ns = xstrdup(summary);
    if (ns == NULL || kv_copy(details, n_details, &nd, &nnd) != TM_OK) {
        free(ns);
        return tm_err_set(err, TM_ENOMEM, "alerts: out of memory");
    }
    free(al->summary);
    al->summary = ns;
    kv_free(al->details, al->n_details);
    al->details = nd;
    al->n_details = nnd;
    al->last_observed = now;
    al->clearing = 0;
    tm_alert_severity prev = al->severity;
    al->severity = sev;

    if (al->state == TM_ALERT_STATE_PENDING) {
        if (now - al->active_since < for_ms) {
            *act = TM_ALERT_ACT_PENDING;
            return TM_OK;
        }
        if (note_rule_seen(a, rule) != TM_OK) {
            return tm_err_set(err, TM_ENOMEM, "alerts: out of memory");
        }
        al->state = TM_ALERT_STATE_FIRING;
        al->starts_at = now;
        al->seq = 1;
        al->notifications = 1;
        al->last_notified = al->last_sent = now;
        tm_warn("alerts", "alert firing rule=%s target=%s severity=%s fingerprint=%s", rule, target,
                tm_alert_severity_name(sev), al->fp);
        *act = TM_ALERT_ACT_FIRING;
        return batch_add(a, b, al, TM_ALERT_NOTIFY_FIRING, sev, now);
    }
    if (prev != sev || now - al->last_notified >= repeat_ms) {
        al->seq++;
        al->notifications++;
        al->last_notified = al->last_sent = now;
        if (prev != sev) {
            tm_warn("alerts", "alert severity changed rule=%s target=%s from=%s to=%s", rule,
                    target, tm_alert_severity_name(prev), tm_alert_severity_name(sev));
        }
        *act = TM_ALERT_ACT_REPEAT;
        return batch_add(a, b, al, TM_ALERT_NOTIFY_REPEAT, prev, now);
    }
    if (a->refresh > 0 && now - al->last_sent >= a->refresh) {
        al->last_sent = now;
        *act = TM_ALERT_ACT_REFRESH;
        return batch_add(a, b, al, TM_ALERT_NOTIFY_REFRESH, sev, now);
    }
    *act = TM_ALERT_ACT_NONE;
    return TM_OK;
}

int tm_alerts_observe(tm_alerts *a, const char *rule, const char *target,
                      tm_alert_severity severity, int firing, const char *summary,
                      const tm_alert_kv *details, size_t n_details, int64_t now,
                      tm_alert_action *action, tm_err *err)
{
    tm_alert_action dummy;
    if (action == NULL) {
        action = &dummy;
    }
    *action = TM_ALERT_ACT_NONE;
    if (a == NULL || rule == NULL || rule[0] == '\0' || target == NULL) {
        return tm_err_set(err, TM_EINVAL, "alerts: observe needs a rule name and a target");
    }
    if ((unsigned)severity > TM_ALERT_CRITICAL) {
        return tm_err_set(err, TM_EINVAL, "alerts: rule %s: severity %d out of range", rule,
                          (int)severity);
    }
    if (n_details > 0 && details == NULL) {
        return tm_err_set(err, TM_EINVAL, "alerts: rule %s: details missing", rule);
    }
    batch b = {0};
    pthread_mutex_lock(&a->mu);
    now = clock_now(a, now);
    int rc = observe_locked(a, &b, rule, target, severity, firing != 0, summary, details, n_details,
                            now, action, err);
    pthread_mutex_unlock(&a->mu);
    batch_deliver(a, &b);
    return rc;
}

static size_t resolve_where(tm_alerts *a, int64_t now, int all)
{
    batch b = {0};
    size_t n = 0;
    pthread_mutex_lock(&a->mu);
    now = clock_now(a, now);
    for (size_t i = 0; i < N_BUCKETS; i++) {
        alert **pp = &a->buckets[i];
        while (*pp != NULL) {
            alert *al = *pp;
            int stale = a->stale > 0 && now - al->last_observed >= a->stale;
            if (!all && !stale) {
                pp = &al->next;
                continue;
            }
            if (al->state == TM_ALERT_STATE_FIRING) {
                resolve(a, &b, pp, now, all ? "shutdown" : "not_observed");
                n++;
            } else {
                unlink_alert(a, pp);
            }
        }
    }
    pthread_mutex_unlock(&a->mu);
    batch_deliver(a, &b);
    return n;
}

size_t tm_alerts_sweep(tm_alerts *a, int64_t now)
{
    return a ? resolve_where(a, now, 0) : 0;
}

size_t tm_alerts_resolve_all(tm_alerts *a, int64_t now)
{
    return a ? resolve_where(a, now, 1) : 0;
}

void tm_alert_info_free(tm_alert_info *v, size_t n)
{
    if (v == NULL) {
        return;
    }
    for (size_t i = 0; i < n; i++) {
        free(v[i].rule);
        free(v[i].target);
        free(v[i].summary);
        kv_free(v[i].details, v[i].n_details);
    }
    free(v);
}

static int info_cmp(const void *pa, const void *pb)
{
    const tm_alert_info *x = pa, *y = pb;
    if (x->state != y->state) {
        return x->state == TM_ALERT_STATE_FIRING ? -1 : 1;
    }
    if (x->severity != y->severity) {
        return x->severity > y->severity ? -1 : 1;
    }
    int c = strcmp(x->rule, y->rule);
    return c != 0 ? c : strcmp(x->target, y->target);
}

int tm_alerts_list(tm_alerts *a, tm_alert_info **out, size_t *n, tm_err *err)
{
    *out = NULL;
    *n = 0;
    if (a == NULL) {
        return tm_err_set(err, TM_EINVAL, "alerts: not initialised");
    }
    pthread_mutex_lock(&a->mu);
    tm_alert_info *v = a->count ? calloc(a->count, sizeof *v) : NULL;
    if (a->count && v == NULL) {
        pthread_mutex_unlock(&a->mu);
        return tm_err_set(err, TM_ENOMEM, "alerts: out of memory");
    }
    size_t k = 0;
    int rc = TM_OK;
    for (size_t i = 0; i < N_BUCKETS && rc == TM_OK; i++) {
        for (alert *al = a->buckets[i]; al != NULL && rc == TM_OK; al = al->next) {
            tm_alert_info *x = &v[k++];
            x->rule = strdup(al->rule);
            x->target = strdup(al->target);
            x->summary = strdup(al->summary);
            memcpy(x->fingerprint, al->fp, sizeof x->fingerprint);
            x->severity = al->severity;
            x->state = al->state;
            x->clearing = al->clearing;
            x->active_since_ms = al->active_since;
            x->starts_at_ms = al->starts_at;
            x->last_notified_ms = al->last_notified;
            x->last_observed_ms = al->last_observed;
            x->notifications = al->notifications;
            if (x->rule == NULL || x->target == NULL || x->summary == NULL ||
                kv_copy(al->details, al->n_details, &x->details, &x->n_details) != TM_OK) {
                rc = TM_ENOMEM;
            }
        }
    }
    pthread_mutex_unlock(&a->mu);
    if (rc != TM_OK) {
        tm_alert_info_free(v, k);
        return tm_err_set(err, rc, "alerts: out of memory");
    }
    if (k > 1) {
        qsort(v, k, sizeof *v, info_cmp);
    }
    *out = v;
    *n = k;
    return TM_OK;
}

void tm_alerts_firing_by_rule(tm_alerts *a, void (*fn)(const char *rule, size_t n, void *arg),
                              void *arg)
{
    if (a == NULL || fn == NULL) {
        return;
    }
    pthread_mutex_lock(&a->mu);
    for (size_t r = 0; r < a->n_seen; r++) {
        size_t n = 0;
        for (size_t i = 0; i < N_BUCKETS; i++) {
            for (alert *al = a->buckets[i]; al != NULL; al = al->next) {
                if (al->state == TM_ALERT_STATE_FIRING && strcmp(al->rule, a->seen_rules[r]) == 0) {
                    n++;
                }
            }
        }
        fn(a->seen_rules[r], n, arg);
    }
    pthread_mutex_unlock(&a->mu);
}
