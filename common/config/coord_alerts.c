/*
 * coord_alerts.c - coordinator.yaml alerts: evaluation, repeat and sinks.
 */
#include "common/config/internal.h"

#include <inttypes.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const cyaml_schema_field_t sink_fields[] = {
    STR("name", REQ, struct raw_sink, name),
    STR("kind", REQ, struct raw_sink, kind),
    STR("url", OPT, struct raw_sink, url),
    STR("url_file", OPT, struct raw_sink, url_file),
    STR("min_severity", OPT, struct raw_sink, min_severity),
    CYAML_FIELD_BOOL("send_resolved", OPT, struct raw_sink, send_resolved),
    CYAML_FIELD_END,
};

static const cyaml_schema_value_t sink_entry = {
    CYAML_VALUE_MAPPING(CYAML_FLAG_DEFAULT, struct raw_sink, sink_fields),
};

const cyaml_schema_field_t tm_cfg_alerts_fields[] = {
    STR("evaluate_every", OPT, struct raw_alerts, evaluate_every),
    STR("repeat_interval", OPT, struct raw_alerts, repeat_interval),
    CYAML_FIELD_SEQUENCE("sinks", OPT | CYAML_FLAG_POINTER, struct raw_alerts, sinks, &sink_entry,
                         0, 64),
    CYAML_FIELD_END,
};

int tm_cfg_coord_alerts(tm_cv *v, const struct raw_coordinator *r, tm_coordinator_conf *c)
{
    const struct raw_alerts *a = &r->alerts;
    int rc = tm_cv_duration(v, "alerts.evaluate_every", a->evaluate_every, "30s", 1000, 300000,
                            &c->alerts_evaluate_ms);
    if (rc == 0) {
        rc = tm_cv_duration(v, "alerts.repeat_interval", a->repeat_interval, "4h", 60000,
                            7 * 86400000u, &c->alerts_repeat_ms);
    }
    if (rc != 0 || a->sinks_count == 0) {
        return rc;
    }
    c->sinks = calloc(a->sinks_count, sizeof(*c->sinks));
    if (c->sinks == NULL) {
        return tm_cv_oom(v);
    }
    for (uint32_t i = 0; i < a->sinks_count; i++) {
        const struct raw_sink *rs = &a->sinks[i];
        tm_alert_sink_conf *s = &c->sinks[i];
        c->n_sinks = i + 1;
        char b[48], k[96];
        snprintf(b, sizeof(b), "alerts.sinks[%" PRIu32 "]", i);
        snprintf(k, sizeof(k), "%s.name", b);
        rc = tm_cv_name(v, k, rs->name);
        for (uint32_t j = 0; rc == 0 && j < i; j++) {
            if (strcmp(a->sinks[j].name, rs->name) == 0) {
                rc = tm_ydoc_err(v->doc, v->err, k,
                                 "duplicate sink name '%s', names must be unique", rs->name);
            }
        }
        if (rc == 0) {
            rc = tm_cv_dup(v, rs->name, &s->name);
        }
        if (rc != 0) {
            return rc;
        }
        snprintf(k, sizeof(k), "%s.kind", b);
        if (strcmp(rs->kind, "webhook") != 0 && strcmp(rs->kind, "alertmanager") != 0 &&
            strcmp(rs->kind, "slack") != 0) {
            return tm_ydoc_err(
                v->doc, v->err, k,
                "'%.40s' is not a sink kind, expected webhook, alertmanager or slack", rs->kind);
        }
        if ((rc = tm_cv_dup(v, rs->kind, &s->kind)) != 0) {
            return rc;
        }
        /* A plain URL may be inline (a local Alertmanager); one carrying a
         * token (Slack) belongs in url: env:NAME or url_file. */
        snprintf(k, sizeof(k), "%s.url", b);
        if (rs->url != NULL && strncmp(rs->url, "env:", 4) != 0) {
            if (rs->url_file != NULL) {
                return tm_ydoc_err_key(v->doc, v->err, k,
                                       "both url and url_file are set, expected exactly one");
            }
            rc = tm_cv_dup(v, rs->url, &s->url);
        } else {
            rc = tm_cv_secret(v, b, "url", rs->url, rs->url_file, &s->url);
        }
        if (rc != 0) {
            return rc;
        }
        if (strncmp(s->url, "http://", 7) != 0 && strncmp(s->url, "https://", 8) != 0) {
            /* Never echo the value: it may hold a token. */
            return tm_ydoc_err(v->doc, v->err, k, "not an http:// or https:// URL");
        }
        snprintf(k, sizeof(k), "%s.min_severity", b);
        const char *sev = rs->min_severity != NULL ? rs->min_severity : "info";
        if (strcmp(sev, "info") != 0 && strcmp(sev, "warning") != 0 &&
            strcmp(sev, "critical") != 0) {
            return tm_ydoc_err(v->doc, v->err, k,
                               "'%.40s' is not a severity, expected info, warning or critical",
                               sev);
        }
        if ((rc = tm_cv_dup(v, sev, &s->min_severity)) != 0) {
            return rc;
        }
        snprintf(k, sizeof(k), "%s.send_resolved", b);
        s->send_resolved = tm_cv_has(v, k) ? rs->send_resolved : true;
    }
    return 0;
}
