/*
 * tm_alert_tool - drive coordinator/alerts + alert_sinks from tests.
 *
 *   tm_alert_tool [engine options] [--webhook|--alertmanager|--slack NAME=URL
 *                 [sink options]]...
 *
 * Engine: --for-ms N --repeat-ms N --refresh-ms N --keep-firing-ms N
 *         --label K=V --generator-url U
 * Sink (applies to the sink named just before): --min-severity S
 *         --no-resolved --queue-cap N --retries N --backoff-ms N
 *         --connect-timeout-ms N --timeout-ms N --ttl-ms N
 *
 * Then reads commands from stdin, one per line, fields separated by TABs,
 * and answers each with one line on stdout:
 *   observe RULE TARGET SEVERITY 0|1 SUMMARY [K=V...]  -> ok action=A us=N
 *   sweep | resolve_all                                -> ok resolved=N
 *   flush MS                                           -> ok | timeout
 *   stats        -> {"sinks":[{"name","sent","failed","dropped","retries","filtered","queued"}]}
 *   list         -> [{"rule","target","state","severity","fingerprint","notifications"}]
 *   deliveries   -> [{"sink","event","ok","dropped","attempts","status","latency_ms","error"}]
 *   quit
 * Errors: "error MESSAGE". Exit 2 on bad usage.
 */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/log.h"
#include "common/util.h"
#include "coordinator/alert_sinks.h"
#include "coordinator/alerts.h"

#define MAX_SINKS 8
#define MAX_LABELS 8
#define MAX_DELIV 4096

typedef struct deliv {
    char sink[64], event[16], error[256];
    int ok, dropped, attempts;
    long status;
    int64_t latency_ms;
} deliv;

static pthread_mutex_t dmu = PTHREAD_MUTEX_INITIALIZER;
static deliv dv[MAX_DELIV];
static size_t ndv;

static void on_delivery(const tm_alert_delivery *d, void *arg)
{
    (void)arg;
    pthread_mutex_lock(&dmu);
    if (ndv < MAX_DELIV) {
        deliv *x = &dv[ndv++];
        snprintf(x->sink, sizeof x->sink, "%s", d->sink);
        snprintf(x->event, sizeof x->event, "%s", tm_alert_notify_kind_name(d->kind));
        snprintf(x->error, sizeof x->error, "%s", d->error ? d->error : "");
        x->ok = d->ok;
        x->dropped = d->dropped;
        x->attempts = d->attempts;
        x->status = d->http_status;
        x->latency_ms = d->latency_ms;
    }
    pthread_mutex_unlock(&dmu);
}

static void usage(void)
{
    fprintf(stderr, "usage: tm_alert_tool [--for-ms N ...] [--webhook|--alertmanager|--slack "
                    "NAME=URL [sink options]]... (commands on stdin)\n");
    exit(2);
}

/* JSON string with minimal escaping (the tool's own output). */
static void jstr(const char *s)
{
    putchar('"');
    for (; *s; s++) {
        if (*s == '"' || *s == '\\') {
            putchar('\\');
            putchar(*s);
        } else if ((unsigned char)*s < 0x20) {
            printf("\\u%04x", (unsigned char)*s);
        } else {
            putchar(*s);
        }
    }
    putchar('"');
}

static int split_tabs(char *line, char **f, int max)
{
    int n = 0;
    if (line[0] == '\0') {
        return 0;
    }
    for (char *t; n < max && (t = strsep(&line, "\t")) != NULL;) {
        f[n++] = t; /* empty fields kept: an empty summary is a summary */
    }
    return n;
}

int main(int argc, char **argv)
{
    tm_alerts_config ac = {.refresh_ms = -1};
    tm_alert_sink_config sc[MAX_SINKS];
    char *names[MAX_SINKS];
    size_t ns = 0;
    tm_alert_kv labels[MAX_LABELS];
    size_t nl = 0;
    const char *generator = NULL;
    tm_log_set_level(TM_LOG_WARN);

    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        const char *v = i + 1 < argc ? argv[i + 1] : NULL;
        tm_alert_sink_config *last = ns ? &sc[ns - 1] : NULL;
        if (strcmp(a, "--webhook") == 0 || strcmp(a, "--alertmanager") == 0 ||
            strcmp(a, "--slack") == 0) {
            if (v == NULL || ns == MAX_SINKS || strchr(v, '=') == NULL) {
                usage();
            }
            tm_alert_sink_config *c = &sc[ns];
            tm_alert_sink_config_init(c);
            tm_alert_sink_kind_parse(a + 2, &c->kind);
            names[ns] = strdup(v);
            char *eq = strchr(names[ns], '=');
            *eq = '\0';
            c->name = names[ns];
            c->url = eq + 1;
            c->generator_url = generator;
            ns++;
            i++;
        } else if (strcmp(a, "--no-resolved") == 0 && last) {
            last->send_resolved = 0;
        } else if (v == NULL) {
            usage();
        } else if (strcmp(a, "--for-ms") == 0) {
            ac.default_for_ms = atoll(v), i++;
        } else if (strcmp(a, "--repeat-ms") == 0) {
            ac.default_repeat_ms = atoll(v), i++;
        } else if (strcmp(a, "--refresh-ms") == 0) {
            ac.refresh_ms = atoll(v), i++;
        } else if (strcmp(a, "--keep-firing-ms") == 0) {
            ac.default_keep_firing_ms = atoll(v), i++;
        } else if (strcmp(a, "--generator-url") == 0) {
            generator = v, i++;
        } else if (strcmp(a, "--label") == 0 && nl < MAX_LABELS && strchr(v, '=')) {
            char *kv = strdup(v);
            char *eq = strchr(kv, '=');
            *eq = '\0';
            labels[nl++] = (tm_alert_kv){kv, eq + 1};
            i++;
        } else if (last == NULL) {
            usage();
        } else if (strcmp(a, "--min-severity") == 0) {
            if (tm_alert_severity_parse(v, &last->min_severity) != TM_OK) {
                usage();
            }
            i++;
        } else if (strcmp(a, "--queue-cap") == 0) {
            last->queue_cap = (size_t)atoll(v), i++;
        } else if (strcmp(a, "--retries") == 0) {
            last->max_retries = atoi(v), i++;
        } else if (strcmp(a, "--backoff-ms") == 0) {
            last->backoff_ms = atol(v), i++;
        } else if (strcmp(a, "--connect-timeout-ms") == 0) {
            last->connect_timeout_ms = atol(v), i++;
        } else if (strcmp(a, "--timeout-ms") == 0) {
            last->timeout_ms = atol(v), i++;
        } else if (strcmp(a, "--ttl-ms") == 0) {
            last->firing_ttl_ms = atoll(v), i++;
        } else {
            usage();
        }
    }

    tm_err err = {0};
    tm_alert_sinks *sinks = NULL;
    if (tm_alert_sinks_new(sc, ns, on_delivery, NULL, &sinks, &err) != TM_OK) {
        fprintf(stderr, "tm_alert_tool: %s\n", err.msg);
        return 1;
    }
    ac.static_labels = labels;
    ac.n_static_labels = nl;
    ac.notify = tm_alert_sinks_notify;
    ac.notify_arg = sinks;
    tm_alerts *alerts = NULL;
    if (tm_alerts_new(&ac, &alerts, &err) != TM_OK) {
        fprintf(stderr, "tm_alert_tool: %s\n", err.msg);
        return 1;
    }

    char line[4096];
    while (fgets(line, sizeof line, stdin) != NULL) {
        line[strcspn(line, "\r\n")] = '\0';
        char *f[40];
        int nf = split_tabs(line, f, 40);
        if (nf == 0) {
            continue;
        }
        if (strcmp(f[0], "observe") == 0 && nf >= 6) {
            tm_alert_severity sev;
            if (tm_alert_severity_parse(f[3], &sev) != TM_OK) {
                printf("error bad severity %s\n", f[3]);
                fflush(stdout);
                continue;
            }
            tm_alert_kv d[34];
            size_t nd = 0;
            for (int k = 6; k < nf && nd < 34; k++) {
                char *eq = strchr(f[k], '=');
                if (eq) {
                    *eq = '\0';
                    d[nd++] = (tm_alert_kv){f[k], eq + 1};
                }
            }
            tm_alert_action act;
            uint64_t t0 = tm_mono_ns();
            int rc =
                tm_alerts_observe(alerts, f[1], f[2], sev, atoi(f[4]), f[5], d, nd, 0, &act, &err);
            uint64_t us = (tm_mono_ns() - t0) / 1000;
            if (rc != TM_OK) {
                printf("error %s\n", err.msg);
            } else {
                printf("ok action=%s us=%llu\n", tm_alert_action_name(act), (unsigned long long)us);
            }
        } else if (strcmp(f[0], "sweep") == 0) {
            printf("ok resolved=%zu\n", tm_alerts_sweep(alerts, 0));
        } else if (strcmp(f[0], "resolve_all") == 0) {
            printf("ok resolved=%zu\n", tm_alerts_resolve_all(alerts, 0));
        } else if (strcmp(f[0], "flush") == 0 && nf >= 2) {
            int rc = tm_alert_sinks_flush(sinks, atoll(f[1]));
            printf("%s\n", rc == TM_OK ? "ok" : "timeout");
        } else if (strcmp(f[0], "stats") == 0) {
            printf("{\"sinks\":[");
            for (size_t i = 0; i < tm_alert_sinks_count(sinks); i++) {
                const char *name;
                tm_alert_sink_stats st;
                tm_alert_sinks_stats(sinks, i, &name, &st);
                printf("%s{\"name\":", i ? "," : "");
                jstr(name);
                printf(",\"sent\":%llu,\"failed\":%llu,\"dropped\":%llu,\"retries\":%llu,"
                       "\"filtered\":%llu,\"queued\":%zu}",
                       (unsigned long long)st.sent, (unsigned long long)st.failed,
                       (unsigned long long)st.dropped, (unsigned long long)st.retries,
                       (unsigned long long)st.filtered, st.queued);
            }
            printf("]}\n");
        } else if (strcmp(f[0], "list") == 0) {
            tm_alert_info *v;
            size_t n;
            tm_alerts_list(alerts, &v, &n, NULL);
            printf("[");
            for (size_t i = 0; i < n; i++) {
                printf("%s{\"rule\":", i ? "," : "");
                jstr(v[i].rule);
                printf(",\"target\":");
                jstr(v[i].target);
                printf(",\"state\":\"%s\",\"severity\":\"%s\",\"fingerprint\":\"%s\","
                       "\"notifications\":%u}",
                       v[i].state == TM_ALERT_STATE_FIRING ? "firing" : "pending",
                       tm_alert_severity_name(v[i].severity), v[i].fingerprint, v[i].notifications);
            }
            printf("]\n");
            tm_alert_info_free(v, n);
        } else if (strcmp(f[0], "deliveries") == 0) {
            pthread_mutex_lock(&dmu);
            printf("[");
            for (size_t i = 0; i < ndv; i++) {
                printf("%s{\"sink\":", i ? "," : "");
                jstr(dv[i].sink);
                printf(",\"event\":\"%s\",\"ok\":%d,\"dropped\":%d,\"attempts\":%d,"
                       "\"status\":%ld,\"latency_ms\":%lld,\"error\":",
                       dv[i].event, dv[i].ok, dv[i].dropped, dv[i].attempts, dv[i].status,
                       (long long)dv[i].latency_ms);
                jstr(dv[i].error);
                printf("}");
            }
            printf("]\n");
            pthread_mutex_unlock(&dmu);
        } else if (strcmp(f[0], "quit") == 0) {
            break;
        } else {
            printf("error unknown command %s\n", f[0]);
        }
        fflush(stdout);
    }
    tm_alerts_free(alerts);
    uint64_t t0 = tm_mono_ns();
    tm_alert_sinks_free(sinks);
    fprintf(stderr, "tm_alert_tool: sinks stopped in %llu ms\n",
            (unsigned long long)((tm_mono_ns() - t0) / 1000000));
    for (size_t i = 0; i < ns; i++) {
        free(names[i]);
    }
    for (size_t i = 0; i < nl; i++) {
        free((char *)labels[i].key);
    }
    return 0;
}
