/*
 * alert_sinks.c - one sender thread and one bounded queue per sink (see
 * alert_sinks.h). The queue holds rendered bodies, so the sender needs
 * nothing from the alert engine and the engine nothing from the network.
 */
#include "coordinator/alert_sinks.h"

#include <curl/curl.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "common/log.h"
#include "common/util.h"
#include "coordinator/alert_payload.h"

typedef struct item {
    char *body;
    size_t len;
    tm_alert_notify_kind kind;
    char *rule, *target;
    char fp[17];
    uint32_t seq;
    int64_t enq_ms;
} item;

typedef struct sink {
    struct tm_alert_sinks *parent;
    char *name, *post_url, *safe_url, *auth_header, *ca_file, *generator_url;
    tm_alert_sink_kind kind;
    int send_resolved;
    tm_alert_severity min_sev;
    long connect_timeout_ms, timeout_ms, backoff_ms, backoff_max_ms;
    int max_retries;
    int64_t firing_ttl_ms;

    pthread_t th;
    int started;
    pthread_mutex_t mu;
    pthread_cond_t cv;      /* work arrived, or stop */
    pthread_cond_t idle_cv; /* queue drained */
    item *q;                /* ring */
    size_t head, n, cap;
    int busy;
    atomic_int stop;
    tm_alert_sink_stats st;
} sink;

struct tm_alert_sinks {
    sink *v;
    size_t n;
    tm_alert_delivery_fn on_delivery;
    void *arg;
};

static pthread_once_t curl_once = PTHREAD_ONCE_INIT;
static void curl_init_once(void)
{
    curl_global_init(CURL_GLOBAL_DEFAULT);
}

const char *tm_alert_sink_kind_name(tm_alert_sink_kind k)
{
    switch (k) {
    case TM_ALERT_SINK_WEBHOOK:
        return "webhook";
    case TM_ALERT_SINK_ALERTMANAGER:
        return "alertmanager";
    case TM_ALERT_SINK_SLACK:
        return "slack";
    }
    return "unknown";
}

int tm_alert_sink_kind_parse(const char *s, tm_alert_sink_kind *out)
{
    if (s == NULL) {
        return TM_EINVAL;
    }
    for (int k = TM_ALERT_SINK_WEBHOOK; k <= TM_ALERT_SINK_SLACK; k++) {
        if (strcmp(s, tm_alert_sink_kind_name((tm_alert_sink_kind)k)) == 0) {
            *out = (tm_alert_sink_kind)k;
            return TM_OK;
        }
    }
    return TM_EINVAL;
}

void tm_alert_sink_config_init(tm_alert_sink_config *c)
{
    memset(c, 0, sizeof *c);
    c->send_resolved = 1;
    c->min_severity = TM_ALERT_INFO;
    c->connect_timeout_ms = 3000;
    c->timeout_ms = 10000;
    c->max_retries = 3;
    c->backoff_ms = 500;
    c->backoff_max_ms = 8000;
    c->queue_cap = 256;
    c->firing_ttl_ms = 5 * 60 * 1000;
}

static void item_clear(item *it)
{
    free(it->body);
    free(it->rule);
    free(it->target);
    memset(it, 0, sizeof *it);
}

static void report(sink *k, const item *it, int ok, int dropped, int attempts, long status,
                   const char *error)
{
    tm_alert_sinks *s = k->parent;
    if (s->on_delivery == NULL) {
        return;
    }
    tm_alert_delivery d = {
        .sink = k->name,
        .sink_kind = k->kind,
        .kind = it->kind,
        .rule = it->rule,
        .target = it->target,
        .fingerprint = it->fp,
        .seq = it->seq,
        .ok = ok,
        .dropped = dropped,
        .attempts = attempts,
        .http_status = status,
        .latency_ms = tm_now_ms() - it->enq_ms,
        .error = error,
    };
    s->on_delivery(&d, s->arg);
}

/* ---- sender ---- */

typedef struct resp {
    char buf[256];
    size_t n;
} resp;

static size_t write_cb(char *p, size_t size, size_t nmemb, void *arg)
{
    resp *r = arg;
    size_t len = size * nmemb;
    size_t room = sizeof r->buf - 1 - r->n;
    size_t k = len < room ? len : room;
    memcpy(r->buf + r->n, p, k);
    r->n += k;
    r->buf[r->n] = '\0';
    return len;
}

static int xferinfo_cb(void *arg, curl_off_t dt, curl_off_t dn, curl_off_t ut, curl_off_t un)
{
    (void)dt;
    (void)dn;
    (void)ut;
    (void)un;
    sink *k = arg;
    return atomic_load(&k->stop) ? 1 : 0; /* non-zero aborts the transfer */
}

/* Printable, single line, bounded: for logs and error text. */
static void sanitize(const char *in, char *out, size_t cap)
{
    size_t j = 0;
    for (size_t i = 0; in[i] && j + 1 < cap; i++) {
        unsigned char c = (unsigned char)in[i];
        out[j++] = (c < 0x20 || c == 0x7f || c == '"') ? ' ' : (char)c;
    }
    out[j] = '\0';
}

enum { ATT_OK = 0, ATT_RETRY = 1, ATT_FAIL = 2 };

static int attempt(sink *k, CURL *h, const item *it, long *status, char *err, size_t errcap)
{
    char curlerr[CURL_ERROR_SIZE] = "";
    resp r = {.n = 0};
    r.buf[0] = '\0';
    struct curl_slist *hdrs = NULL;
    hdrs = curl_slist_append(hdrs, "Content-Type: application/json");
    hdrs = curl_slist_append(hdrs, "Expect:");
    if (k->auth_header != NULL) {
        hdrs = curl_slist_append(hdrs, k->auth_header);
    }
    curl_easy_reset(h);
    curl_easy_setopt(h, CURLOPT_URL, k->post_url);
#if LIBCURL_VERSION_NUM >= 0x075500
    curl_easy_setopt(h, CURLOPT_PROTOCOLS_STR, "http,https");
#endif
    curl_easy_setopt(h, CURLOPT_HTTPHEADER, hdrs);
    curl_easy_setopt(h, CURLOPT_USERAGENT, "tidemark/" TIDEMARK_VERSION);
    curl_easy_setopt(h, CURLOPT_POST, 1L);
    curl_easy_setopt(h, CURLOPT_POSTFIELDS, it->body);
    curl_easy_setopt(h, CURLOPT_POSTFIELDSIZE, (long)it->len);
    curl_easy_setopt(h, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(h, CURLOPT_ERRORBUFFER, curlerr);
    curl_easy_setopt(h, CURLOPT_CONNECTTIMEOUT_MS, k->connect_timeout_ms);
    curl_easy_setopt(h, CURLOPT_TIMEOUT_MS, k->timeout_ms);
    curl_easy_setopt(h, CURLOPT_NOPROGRESS, 0L);
    curl_easy_setopt(h, CURLOPT_XFERINFOFUNCTION, xferinfo_cb);
    curl_easy_setopt(h, CURLOPT_XFERINFODATA, k);
    curl_easy_setopt(h, CURLOPT_WRITEFUNCTION, write_cb);
    curl_easy_setopt(h, CURLOPT_WRITEDATA, &r);
    if (k->ca_file != NULL) {
        curl_easy_setopt(h, CURLOPT_CAINFO, k->ca_file);
    }
    CURLcode cc = curl_easy_perform(h);
    curl_slist_free_all(hdrs);
    *status = 0;
    if (cc != CURLE_OK) {
        char clean[CURL_ERROR_SIZE];
        sanitize(cc == CURLE_ABORTED_BY_CALLBACK ? "aborted: the sink is stopping"
                 : curlerr[0]                    ? curlerr
                                                 : curl_easy_strerror(cc),
                 clean, sizeof clean);
        snprintf(err, errcap, "POST %s: %s", k->safe_url, clean);
        return ATT_RETRY;
    }
    curl_easy_getinfo(h, CURLINFO_RESPONSE_CODE, status);
    if (*status >= 200 && *status < 300) {
        return ATT_OK;
    }
    char body[256];
    sanitize(r.buf, body, sizeof body);
    snprintf(err, errcap, "POST %s: HTTP %ld%s%s", k->safe_url, *status, body[0] ? ": " : "", body);
    if (*status == 408 || *status == 429 || *status >= 500) {
        return ATT_RETRY;
    }
    return ATT_FAIL; /* the receiver rejected the body: retrying changes nothing */
}

/* Sleep for ms unless stopping; returns 1 when stopping. k->mu is held. */
static int backoff_wait(sink *k, long ms)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    ts.tv_sec += ms / 1000;
    ts.tv_nsec += (ms % 1000) * 1000000L;
    if (ts.tv_nsec >= 1000000000L) {
        ts.tv_sec++;
        ts.tv_nsec -= 1000000000L;
    }
    while (!atomic_load(&k->stop)) {
        if (pthread_cond_timedwait(&k->cv, &k->mu, &ts) != 0) {
            break;
        }
    }
    return atomic_load(&k->stop);
}

static void deliver(sink *k, CURL *h, item *it)
{
    char err[512] = "";
    long status = 0;
    int attempts = 0, res = ATT_FAIL;
    long wait = k->backoff_ms;
    for (;;) {
        attempts++;
        res = attempt(k, h, it, &status, err, sizeof err);
        if (res != ATT_RETRY || attempts > k->max_retries || atomic_load(&k->stop)) {
            break;
        }
        tm_debug("alerts", "sink retry sink=%s attempt=%d backoff_ms=%ld error=\"%s\"", k->name,
                 attempts, wait, err);
        pthread_mutex_lock(&k->mu);
        k->st.retries++;
        int stopping = backoff_wait(k, wait);
        pthread_mutex_unlock(&k->mu);
        if (stopping) {
            break;
        }
        wait = wait * 2 > k->backoff_max_ms ? k->backoff_max_ms : wait * 2;
    }
    pthread_mutex_lock(&k->mu);
    if (res == ATT_OK) {
        k->st.sent++;
    } else {
        k->st.failed++;
    }
    pthread_mutex_unlock(&k->mu);
    if (res == ATT_OK) {
        tm_debug("alerts", "sink sent sink=%s kind=%s rule=%s target=%s event=%s attempts=%d",
                 k->name, tm_alert_sink_kind_name(k->kind), it->rule, it->target,
                 tm_alert_notify_kind_name(it->kind), attempts);
    } else {
        tm_warn("alerts",
                "sink delivery failed sink=%s kind=%s rule=%s target=%s event=%s attempts=%d "
                "error=\"%s\"",
                k->name, tm_alert_sink_kind_name(k->kind), it->rule, it->target,
                tm_alert_notify_kind_name(it->kind), attempts, err);
    }
    report(k, it, res == ATT_OK, 0, attempts, status, res == ATT_OK ? NULL : err);
}

static void *sender_main(void *arg)
{
    sink *k = arg;
    CURL *h = curl_easy_init();
    for (;;) {
        pthread_mutex_lock(&k->mu);
        while (k->n == 0 && !atomic_load(&k->stop)) {
            pthread_cond_wait(&k->cv, &k->mu);
        }
        if (atomic_load(&k->stop)) {
            pthread_mutex_unlock(&k->mu);
            break;
        }
        item it = k->q[k->head];
        memset(&k->q[k->head], 0, sizeof(item));
        k->head = (k->head + 1) % k->cap;
        k->n--;
        k->busy = 1;
        pthread_mutex_unlock(&k->mu);

        if (h == NULL) {
            pthread_mutex_lock(&k->mu);
            k->st.failed++;
            pthread_mutex_unlock(&k->mu);
            report(k, &it, 0, 0, 0, 0, "libcurl could not start (out of memory)");
        } else {
            deliver(k, h, &it);
        }
        item_clear(&it);

        pthread_mutex_lock(&k->mu);
        k->busy = 0;
        if (k->n == 0) {
            pthread_cond_broadcast(&k->idle_cv);
        }
        pthread_mutex_unlock(&k->mu);
    }
    if (h != NULL) {
        curl_easy_cleanup(h);
    }
    return NULL;
}

/* ---- set-up ---- */

static char *dup_or_null(const char *s)
{
    return s ? strdup(s) : NULL;
}

static void sink_destroy(sink *k)
{
    free(k->name);
    free(k->post_url);
    free(k->safe_url);
    free(k->auth_header);
    free(k->ca_file);
    free(k->generator_url);
    free(k->q);
    pthread_mutex_destroy(&k->mu);
    pthread_cond_destroy(&k->cv);
    pthread_cond_destroy(&k->idle_cv);
}

static int sink_init(tm_alert_sinks *s, sink *k, const tm_alert_sink_config *c, tm_err *err)
{
    k->parent = s;
    pthread_mutex_init(&k->mu, NULL);
    pthread_condattr_t ca;
    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    pthread_cond_init(&k->cv, &ca);
    pthread_cond_init(&k->idle_cv, &ca);
    pthread_condattr_destroy(&ca);
    atomic_init(&k->stop, 0);

    const char *url = c->url;
    if (url == NULL || (strncmp(url, "http://", 7) != 0 && strncmp(url, "https://", 8) != 0)) {
        return tm_err_set(err, TM_ECONFIG, "alert sink %s: url must start with http:// or https://",
                          c->name);
    }
    if ((unsigned)c->kind > TM_ALERT_SINK_SLACK) {
        return tm_err_set(err, TM_ECONFIG, "alert sink %s: unknown kind %d", c->name, (int)c->kind);
    }
    if (c->auth_header != NULL &&
        (strchr(c->auth_header, ':') == NULL || strpbrk(c->auth_header, "\r\n") != NULL)) {
        return tm_err_set(err, TM_ECONFIG,
                          "alert sink %s: auth_header must be one \"Name: value\" line", c->name);
    }
    char safe[256];
    tm_alert_redact_url(url, safe, sizeof safe);
    if (c->kind == TM_ALERT_SINK_ALERTMANAGER) {
        size_t l = strlen(url);
        while (l > 0 && url[l - 1] == '/') {
            l--;
        }
        k->post_url = malloc(l + sizeof "/api/v2/alerts");
        if (k->post_url != NULL) {
            memcpy(k->post_url, url, l);
            memcpy(k->post_url + l, "/api/v2/alerts", sizeof "/api/v2/alerts");
        }
    } else {
        k->post_url = strdup(url);
    }
    k->name = strdup(c->name);
    k->safe_url = strdup(safe);
    k->auth_header = dup_or_null(c->auth_header);
    k->ca_file = dup_or_null(c->ca_file);
    k->generator_url = dup_or_null(c->generator_url);
    k->kind = c->kind;
    k->send_resolved = c->send_resolved;
    k->min_sev = c->min_severity;
    k->connect_timeout_ms = c->connect_timeout_ms > 0 ? c->connect_timeout_ms : 3000;
    k->timeout_ms = c->timeout_ms > 0 ? c->timeout_ms : 10000;
    k->max_retries = c->max_retries >= 0 ? c->max_retries : 0;
    k->backoff_ms = c->backoff_ms > 0 ? c->backoff_ms : 500;
    k->backoff_max_ms = c->backoff_max_ms >= k->backoff_ms ? c->backoff_max_ms : k->backoff_ms;
    k->firing_ttl_ms = c->firing_ttl_ms > 0 ? c->firing_ttl_ms : 5 * 60 * 1000;
    k->cap = c->queue_cap > 0 ? c->queue_cap : 256;
    k->q = calloc(k->cap, sizeof *k->q);
    if (k->post_url == NULL || k->name == NULL || k->safe_url == NULL || k->q == NULL ||
        (c->auth_header && k->auth_header == NULL) || (c->ca_file && k->ca_file == NULL) ||
        (c->generator_url && k->generator_url == NULL)) {
        return tm_err_set(err, TM_ENOMEM, "alert sink %s: out of memory", c->name);
    }
    return TM_OK;
}

int tm_alert_sinks_new(const tm_alert_sink_config *cfgs, size_t n, tm_alert_delivery_fn on_delivery,
                       void *arg, tm_alert_sinks **out, tm_err *err)
{
    *out = NULL;
    pthread_once(&curl_once, curl_init_once);
    for (size_t i = 0; i < n; i++) {
        if (cfgs[i].name == NULL || cfgs[i].name[0] == '\0') {
            return tm_err_set(err, TM_ECONFIG, "alert sink %zu: no name", i + 1);
        }
        for (size_t j = 0; j < i; j++) {
            if (strcmp(cfgs[i].name, cfgs[j].name) == 0) {
                return tm_err_set(err, TM_ECONFIG, "alert sink \"%s\" defined twice", cfgs[i].name);
            }
        }
    }
    tm_alert_sinks *s = calloc(1, sizeof *s);
    if (s == NULL || (n > 0 && (s->v = calloc(n, sizeof *s->v)) == NULL)) {
        free(s);
        return tm_err_set(err, TM_ENOMEM, "alert sinks: out of memory");
    }
    s->on_delivery = on_delivery;
    s->arg = arg;
    for (size_t i = 0; i < n; i++) {
        s->n = i + 1; /* so free() destroys what was initialised */
        int rc = sink_init(s, &s->v[i], &cfgs[i], err);
        if (rc != TM_OK) {
            tm_alert_sinks_free(s);
            return rc;
        }
        if (pthread_create(&s->v[i].th, NULL, sender_main, &s->v[i]) != 0) {
            tm_alert_sinks_free(s);
            return tm_err_set(err, TM_EINTERNAL, "alert sink %s: cannot start its thread",
                              cfgs[i].name);
        }
        s->v[i].started = 1;
        tm_info("alerts", "sink ready sink=%s kind=%s url=%s min_severity=%s send_resolved=%d",
                s->v[i].name, tm_alert_sink_kind_name(s->v[i].kind), s->v[i].safe_url,
                tm_alert_severity_name(s->v[i].min_sev), s->v[i].send_resolved);
    }
    *out = s;
    return TM_OK;
}

void tm_alert_sinks_free(tm_alert_sinks *s)
{
    if (s == NULL) {
        return;
    }
    for (size_t i = 0; i < s->n; i++) {
        sink *k = &s->v[i];
        pthread_mutex_lock(&k->mu);
        atomic_store(&k->stop, 1);
        pthread_cond_broadcast(&k->cv);
        pthread_mutex_unlock(&k->mu);
    }
    for (size_t i = 0; i < s->n; i++) {
        sink *k = &s->v[i];
        if (k->started) {
            pthread_join(k->th, NULL);
        }
        if (k->n > 0) {
            tm_warn("alerts", "sink stopped with notifications unsent sink=%s dropped=%zu",
                    k->name ? k->name : "?", k->n);
        }
        for (size_t j = 0; j < k->n; j++) {
            item *it = &k->q[(k->head + j) % k->cap];
            report(k, it, 0, 1, 0, 0, "not sent: coordinator shutting down");
            item_clear(it);
        }
        sink_destroy(k);
    }
    free(s->v);
    free(s);
}

/* ---- enqueue ---- */

static int wants(const sink *k, const tm_alert_notification *n)
{
    if (n->kind == TM_ALERT_NOTIFY_REFRESH) {
        return k->kind == TM_ALERT_SINK_ALERTMANAGER;
    }
    if (n->kind == TM_ALERT_NOTIFY_RESOLVED && !k->send_resolved) {
        /* Alertmanager resolves by endsAt anyway; telling it early is right. */
        return k->kind == TM_ALERT_SINK_ALERTMANAGER;
    }
    tm_alert_severity sev = n->severity > n->prev_severity ? n->severity : n->prev_severity;
    return sev >= k->min_sev;
}

static int render(const sink *k, const tm_alert_notification *n, char **body, size_t *len)
{
    switch (k->kind) {
    case TM_ALERT_SINK_ALERTMANAGER:
        return tm_alert_payload_alertmanager(n, k->generator_url, k->firing_ttl_ms, body, len);
    case TM_ALERT_SINK_SLACK:
        return tm_alert_payload_slack(n, body, len);
    case TM_ALERT_SINK_WEBHOOK:
        break;
    }
    return tm_alert_payload_webhook(n, k->generator_url, body, len);
}

size_t tm_alert_sinks_send(tm_alert_sinks *s, const tm_alert_notification *n)
{
    size_t queued = 0;
    if (s == NULL || n == NULL) {
        return 0;
    }
    for (size_t i = 0; i < s->n; i++) {
        sink *k = &s->v[i];
        if (!wants(k, n)) {
            pthread_mutex_lock(&k->mu);
            k->st.filtered++;
            pthread_mutex_unlock(&k->mu);
            continue;
        }
        item it = {.kind = n->kind, .seq = n->seq, .enq_ms = tm_now_ms()};
        memcpy(it.fp, n->fingerprint, strnlen(n->fingerprint, 16));
        it.rule = strdup(n->rule);
        it.target = strdup(n->target ? n->target : "");
        if (it.rule == NULL || it.target == NULL || render(k, n, &it.body, &it.len) != TM_OK) {
            tm_error("alerts", "sink notification lost: out of memory sink=%s rule=%s", k->name,
                     n->rule);
            pthread_mutex_lock(&k->mu);
            k->st.dropped++;
            pthread_mutex_unlock(&k->mu);
            item_clear(&it);
            continue;
        }
        item old = {0};
        int overflow = 0;
        pthread_mutex_lock(&k->mu);
        if (k->n == k->cap) {
            old = k->q[k->head];
            k->head = (k->head + 1) % k->cap;
            k->n--;
            k->st.dropped++;
            overflow = 1;
        }
        k->q[(k->head + k->n) % k->cap] = it;
        k->n++;
        pthread_cond_signal(&k->cv);
        uint64_t dropped = k->st.dropped;
        pthread_mutex_unlock(&k->mu);
        if (overflow) {
            tm_warn("alerts",
                    "sink queue full, dropped the oldest notification sink=%s rule=%s target=%s "
                    "event=%s dropped_total=%llu",
                    k->name, old.rule, old.target, tm_alert_notify_kind_name(old.kind),
                    (unsigned long long)dropped);
            report(k, &old, 0, 1, 0, 0, "dropped: sink queue full");
            item_clear(&old);
        }
        queued++;
    }
    return queued;
}

void tm_alert_sinks_notify(const tm_alert_notification *n, void *arg)
{
    tm_alert_sinks_send(arg, n);
}

int tm_alert_sinks_flush(tm_alert_sinks *s, int64_t timeout_ms)
{
    if (s == NULL) {
        return TM_OK;
    }
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    ts.tv_sec += timeout_ms / 1000;
    ts.tv_nsec += (timeout_ms % 1000) * 1000000L;
    if (ts.tv_nsec >= 1000000000L) {
        ts.tv_sec++;
        ts.tv_nsec -= 1000000000L;
    }
    int rc = TM_OK;
    for (size_t i = 0; i < s->n; i++) {
        sink *k = &s->v[i];
        pthread_mutex_lock(&k->mu);
        while ((k->n > 0 || k->busy) && rc == TM_OK) {
            if (pthread_cond_timedwait(&k->idle_cv, &k->mu, &ts) != 0) {
                if (k->n > 0 || k->busy) {
                    rc = TM_ETIMEDOUT;
                }
            }
        }
        pthread_mutex_unlock(&k->mu);
    }
    return rc;
}

size_t tm_alert_sinks_count(const tm_alert_sinks *s)
{
    return s ? s->n : 0;
}

int tm_alert_sinks_stats(tm_alert_sinks *s, size_t i, const char **name, tm_alert_sink_stats *out)
{
    if (s == NULL || i >= s->n) {
        return TM_ENOENT;
    }
    sink *k = &s->v[i];
    pthread_mutex_lock(&k->mu);
    *out = k->st;
    out->queued = k->n;
    pthread_mutex_unlock(&k->mu);
    if (name) {
        *name = k->name;
    }
    return TM_OK;
}

void tm_alert_sinks_collect(tm_metrics_writer *w, void *arg)
{
    tm_alert_sinks *s = arg;
    if (s == NULL || s->n == 0) {
        return;
    }
    char labels[512], esc[256];
    static const char *results[] = {"sent", "failed", "dropped"};
    tm_metrics_write_family(w, "tidemark_alert_notifications_total", TM_METRIC_COUNTER,
                            "Alert notifications per sink by result (sent, failed after "
                            "retries, dropped on queue overflow).");
    for (size_t i = 0; i < s->n; i++) {
        tm_alert_sink_stats st;
        tm_alert_sinks_stats(s, i, NULL, &st);
        uint64_t v[] = {st.sent, st.failed, st.dropped};
        tm_metrics_escape(s->v[i].name, esc, sizeof esc);
        for (size_t r = 0; r < 3; r++) {
            snprintf(labels, sizeof labels, "sink=\"%s\",kind=\"%s\",result=\"%s\"", esc,
                     tm_alert_sink_kind_name(s->v[i].kind), results[r]);
            tm_metrics_write_sample(w, "tidemark_alert_notifications_total", labels, (double)v[r]);
        }
    }
    tm_metrics_write_family(w, "tidemark_alert_sink_queue_length", TM_METRIC_GAUGE,
                            "Notifications waiting in each sink's queue.");
    for (size_t i = 0; i < s->n; i++) {
        tm_alert_sink_stats st;
        tm_alert_sinks_stats(s, i, NULL, &st);
        tm_metrics_escape(s->v[i].name, esc, sizeof esc);
        snprintf(labels, sizeof labels, "sink=\"%s\",kind=\"%s\"", esc,
                 tm_alert_sink_kind_name(s->v[i].kind));
        tm_metrics_write_sample(w, "tidemark_alert_sink_queue_length", labels, (double)st.queued);
    }
}
