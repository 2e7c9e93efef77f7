/*
 * alert_payload.c - JSON bodies for the alert sinks (see alert_payload.h).
 */
#include "coordinator/alert_payload.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "common/err.h"

typedef struct jb {
    char *p;
    size_t n, cap;
    int oom;
} jb;

static void jb_raw(jb *b, const char *s, size_t len)
{
    if (b->oom) {
        return;
    }
    if (b->n + len + 1 > b->cap) {
        size_t cap = b->cap ? b->cap : 512;
        while (b->n + len + 1 > cap) {
            cap *= 2;
        }
        char *p = realloc(b->p, cap);
        if (p == NULL) {
            b->oom = 1;
            return;
        }
        b->p = p;
        b->cap = cap;
    }
    memcpy(b->p + b->n, s, len);
    b->n += len;
    b->p[b->n] = '\0';
}

static void jb_cat(jb *b, const char *s)
{
    jb_raw(b, s, strlen(s));
}

static void jb_printf(jb *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void jb_printf(jb *b, const char *fmt, ...)
{
    char tmp[128];
    va_list ap;
    va_start(ap, fmt);
    int k = vsnprintf(tmp, sizeof tmp, fmt, ap);
    va_end(ap);
    if (k > 0) {
        jb_raw(b, tmp, (size_t)k < sizeof tmp ? (size_t)k : sizeof tmp - 1);
    }
}

/* Length of the valid UTF-8 sequence at s, or 0. */
static size_t utf8_len(const unsigned char *s)
{
    unsigned c = s[0];
    size_t n;
    unsigned min;
    if (c < 0x80) {
        return 1;
    } else if ((c & 0xe0) == 0xc0) {
        n = 2;
        min = 0x80;
    } else if ((c & 0xf0) == 0xe0) {
        n = 3;
        min = 0x800;
    } else if ((c & 0xf8) == 0xf0) {
        n = 4;
        min = 0x10000;
    } else {
        return 0;
    }
    unsigned cp = c & (0x7fu >> n);
    for (size_t i = 1; i < n; i++) {
        if ((s[i] & 0xc0) != 0x80) {
            return 0;
        }
        cp = (cp << 6) | (s[i] & 0x3f);
    }
    if (cp < min || cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff)) {
        return 0;
    }
    return n;
}

/* Text escaped for a JSON string (without quotes); invalid UTF-8 -> U+FFFD.
 * slack: also &, <, > as Slack's mrkdwn requires. */
static void jb_esc(jb *b, const char *str, int slack)
{
    const unsigned char *s = (const unsigned char *)(str ? str : "");
    while (*s) {
        unsigned c = *s;
        if (c == '"' || c == '\\') {
            jb_raw(b, "\\", 1);
            jb_raw(b, (const char *)s, 1);
            s++;
        } else if (c < 0x20) {
            if (c == '\n') {
                jb_cat(b, "\\n");
            } else if (c == '\t') {
                jb_cat(b, "\\t");
            } else if (c == '\r') {
                jb_cat(b, "\\r");
            } else {
                jb_printf(b, "\\u%04x", c);
            }
            s++;
        } else if (slack && c == '&') {
            jb_cat(b, "&amp;");
            s++;
        } else if (slack && c == '<') {
            jb_cat(b, "&lt;");
            s++;
        } else if (slack && c == '>') {
            jb_cat(b, "&gt;");
            s++;
        } else {
            size_t k = utf8_len(s);
            if (k == 0) {
                jb_cat(b, "\xef\xbf\xbd");
                s++;
            } else {
                jb_raw(b, (const char *)s, k);
                s += k;
            }
        }
    }
}

static void jb_str(jb *b, const char *s)
{
    jb_raw(b, "\"", 1);
    jb_esc(b, s, 0);
    jb_raw(b, "\"", 1);
}

/* Label/annotation name for Alertmanager: [A-Za-z_][A-Za-z0-9_]*. */
static void jb_name(jb *b, const char *s)
{
    jb_raw(b, "\"", 1);
    if (*s >= '0' && *s <= '9') {
        jb_raw(b, "_", 1);
    }
    for (; *s; s++) {
        char c = *s;
        int ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9');
        jb_raw(b, ok ? &c : "_", 1);
    }
    jb_raw(b, "\"", 1);
}

void tm_alert_fmt_time_ms(int64_t unix_ms, char *out, size_t cap)
{
    int64_t s = unix_ms / 1000, ms = unix_ms % 1000;
    if (ms < 0) {
        ms += 1000;
        s--;
    }
    time_t t = (time_t)s;
    struct tm tm;
    gmtime_r(&t, &tm);
    char base[32];
    strftime(base, sizeof base, "%Y-%m-%dT%H:%M:%S", &tm);
    snprintf(out, cap, "%s.%03dZ", base, (int)ms);
}

static void jb_time(jb *b, int64_t ms)
{
    char t[40];
    tm_alert_fmt_time_ms(ms, t, sizeof t);
    jb_str(b, t);
}

static int jb_done(jb *b, char **out, size_t *len)
{
    if (b->oom || b->p == NULL) {
        free(b->p);
        *out = NULL;
        *len = 0;
        return TM_ENOMEM;
    }
    *out = b->p;
    *len = b->n;
    return TM_OK;
}

static void jb_kv_object(jb *b, const tm_alert_kv *kv, size_t n)
{
    jb_cat(b, "{");
    for (size_t i = 0; i < n; i++) {
        if (i) {
            jb_cat(b, ",");
        }
        jb_str(b, kv[i].key);
        jb_cat(b, ":");
        jb_str(b, kv[i].value);
    }
    jb_cat(b, "}");
}

int tm_alert_payload_webhook(const tm_alert_notification *n, const char *generator_url, char **out,
                             size_t *len)
{
    jb b = {0};
    int resolved = n->kind == TM_ALERT_NOTIFY_RESOLVED;
    jb_cat(&b, "{\"version\":\"1\",\"status\":");
    jb_str(&b, resolved ? "resolved" : "firing");
    jb_cat(&b, ",\"event\":");
    jb_str(&b, tm_alert_notify_kind_name(n->kind));
    jb_cat(&b, ",\"rule\":");
    jb_str(&b, n->rule);
    jb_cat(&b, ",\"target\":");
    jb_str(&b, n->target);
    jb_cat(&b, ",\"severity\":");
    jb_str(&b, tm_alert_severity_name(n->severity));
    if (n->prev_severity != n->severity) {
        jb_cat(&b, ",\"previous_severity\":");
        jb_str(&b, tm_alert_severity_name(n->prev_severity));
    }
    jb_cat(&b, ",\"summary\":");
    jb_str(&b, n->summary);
    jb_cat(&b, ",\"details\":");
    jb_kv_object(&b, n->details, n->n_details);
    jb_cat(&b, ",\"labels\":");
    jb_kv_object(&b, n->labels, n->n_labels);
    jb_cat(&b, ",\"starts_at\":");
    jb_time(&b, n->starts_at_ms);
    jb_cat(&b, ",\"ends_at\":");
    if (resolved) {
        jb_time(&b, n->ends_at_ms);
    } else {
        jb_cat(&b, "null");
    }
    jb_cat(&b, ",\"sent_at\":");
    jb_time(&b, n->sent_at_ms);
    jb_cat(&b, ",\"fingerprint\":");
    jb_str(&b, n->fingerprint);
    jb_printf(&b, ",\"seq\":%u", (unsigned)n->seq);
    if (n->runbook_url && n->runbook_url[0]) {
        jb_cat(&b, ",\"runbook_url\":");
        jb_str(&b, n->runbook_url);
    }
    if (generator_url && generator_url[0]) {
        jb_cat(&b, ",\"generator_url\":");
        jb_str(&b, generator_url);
    }
    jb_cat(&b, "}");
    return jb_done(&b, out, len);
}

static void am_alert(jb *b, const tm_alert_notification *n, tm_alert_severity sev,
                     const char *generator_url, int64_t ends_at)
{
    jb_cat(b, "{\"labels\":{");
    for (size_t i = 0; i < n->n_labels; i++) {
        const char *v = n->labels[i].value;
        if (strcmp(n->labels[i].key, "severity") == 0) {
            v = tm_alert_severity_name(sev);
        }
        if (v == NULL || v[0] == '\0') {
            continue; /* an empty label is no label to Alertmanager */
        }
        if (i) {
            jb_cat(b, ",");
        }
        jb_name(b, n->labels[i].key);
        jb_cat(b, ":");
        jb_str(b, v);
    }
    jb_cat(b, "},\"annotations\":{\"summary\":");
    jb_str(b, n->summary);
    jb_cat(b, ",\"fingerprint\":");
    jb_str(b, n->fingerprint);
    if (n->runbook_url && n->runbook_url[0]) {
        jb_cat(b, ",\"runbook_url\":");
        jb_str(b, n->runbook_url);
    }
    for (size_t i = 0; i < n->n_details; i++) {
        const char *k = n->details[i].key;
        if (strcmp(k, "summary") == 0 || strcmp(k, "fingerprint") == 0 ||
            strcmp(k, "runbook_url") == 0) {
            continue;
        }
        jb_cat(b, ",");
        jb_name(b, k);
        jb_cat(b, ":");
        jb_str(b, n->details[i].value);
    }
    jb_cat(b, "},\"startsAt\":");
    jb_time(b, n->starts_at_ms);
    jb_cat(b, ",\"endsAt\":");
    jb_time(b, ends_at);
    if (generator_url && generator_url[0]) {
        jb_cat(b, ",\"generatorURL\":");
        jb_str(b, generator_url);
    }
    jb_cat(b, "}");
}

int tm_alert_payload_alertmanager(const tm_alert_notification *n, const char *generator_url,
                                  int64_t firing_ttl_ms, char **out, size_t *len)
{
    jb b = {0};
    int resolved = n->kind == TM_ALERT_NOTIFY_RESOLVED;
    if (firing_ttl_ms <= 0) {
        firing_ttl_ms = 5 * 60 * 1000;
    }
    jb_cat(&b, "[");
    am_alert(&b, n, n->severity, generator_url,
             resolved ? n->ends_at_ms : n->sent_at_ms + firing_ttl_ms);
    if (n->prev_severity != n->severity) {
        jb_cat(&b, ",");
        am_alert(&b, n, n->prev_severity, generator_url, n->sent_at_ms);
    }
    jb_cat(&b, "]");
    return jb_done(&b, out, len);
}

static void fmt_duration(int64_t ms, char *out, size_t cap)
{
    int64_t s = ms / 1000;
    if (s < 60) {
        snprintf(out, cap, "%llds", (long long)s);
    } else if (s < 3600) {
        snprintf(out, cap, "%lldm", (long long)(s / 60));
    } else if (s < 86400) {
        snprintf(out, cap, "%lldh%02lldm", (long long)(s / 3600), (long long)(s % 3600 / 60));
    } else {
        snprintf(out, cap, "%lldd%02lldh", (long long)(s / 86400), (long long)(s % 86400 / 3600));
    }
}

int tm_alert_payload_slack(const tm_alert_notification *n, char **out, size_t *len)
{
    jb b = {0};
    char dur[32];
    const char *sev = tm_alert_severity_name(n->severity);
    char sevu[16];
    size_t i = 0;
    for (; sev[i] && i < sizeof sevu - 1; i++) {
        sevu[i] = (char)(sev[i] >= 'a' && sev[i] <= 'z' ? sev[i] - 32 : sev[i]);
    }
    sevu[i] = '\0';
    jb_cat(&b, "{\"text\":\"");
    switch (n->kind) {
    case TM_ALERT_NOTIFY_RESOLVED:
        jb_cat(&b, "[RESOLVED] ");
        break;
    case TM_ALERT_NOTIFY_REPEAT:
        jb_cat(&b, "[FIRING, reminder] ");
        jb_cat(&b, sevu);
        jb_cat(&b, " ");
        break;
    default:
        jb_cat(&b, "[FIRING] ");
        jb_cat(&b, sevu);
        jb_cat(&b, " ");
        break;
    }
    jb_esc(&b, n->rule, 1);
    if (n->target && n->target[0]) {
        jb_cat(&b, " on ");
        jb_esc(&b, n->target, 1);
    }
    if (n->summary && n->summary[0]) {
        jb_cat(&b, ": ");
        jb_esc(&b, n->summary, 1);
    }
    if (n->kind == TM_ALERT_NOTIFY_RESOLVED) {
        fmt_duration(n->ends_at_ms - n->starts_at_ms, dur, sizeof dur);
        jb_cat(&b, " (after ");
        jb_cat(&b, dur);
        jb_cat(&b, ")");
    } else {
        if (n->n_details > 0) {
            jb_cat(&b, " (");
            for (size_t k = 0; k < n->n_details; k++) {
                if (k) {
                    jb_cat(&b, ", ");
                }
                jb_esc(&b, n->details[k].key, 1);
                jb_cat(&b, "=");
                jb_esc(&b, n->details[k].value, 1);
            }
            jb_cat(&b, ")");
        }
        if (n->kind == TM_ALERT_NOTIFY_REPEAT) {
            fmt_duration(n->sent_at_ms - n->starts_at_ms, dur, sizeof dur);
            jb_cat(&b, " - firing for ");
            jb_cat(&b, dur);
        }
        if (n->prev_severity != n->severity) {
            jb_cat(&b, " - was ");
            jb_cat(&b, tm_alert_severity_name(n->prev_severity));
        }
    }
    if (n->runbook_url && n->runbook_url[0]) {
        jb_cat(&b, " runbook: ");
        jb_esc(&b, n->runbook_url, 1);
    }
    jb_cat(&b, "\"}");
    return jb_done(&b, out, len);
}

void tm_alert_redact_url(const char *url, char *out, size_t cap)
{
    if (cap == 0) {
        return;
    }
    if (url == NULL) {
        snprintf(out, cap, "(none)");
        return;
    }
    const char *p = strstr(url, "://");
    const char *host = p ? p + 3 : url;
    size_t scheme_len = p ? (size_t)(host - url) : 0;
    size_t hl = strcspn(host, "/?#");
    const char *at = memchr(host, '@', hl);
    if (at != NULL) {
        hl -= (size_t)(at + 1 - host);
        host = at + 1;
    }
    int more = host[hl] != '\0' && !(host[hl] == '/' && host[hl + 1] == '\0');
    snprintf(out, cap, "%.*s%.*s%s", (int)scheme_len, url, (int)hl, host, more ? "/..." : "");
}
