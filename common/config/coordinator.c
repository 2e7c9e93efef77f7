/*
 * coordinator.c - coordinator.yaml: its top-level keys, the section table, free,
 * parse and load.
 */
#include "common/config/internal.h"

#include <inttypes.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const cyaml_schema_field_t coordinator_fields[] = {
    STR("listen", OPT, struct raw_coordinator, listen),
    CYAML_FIELD_MAPPING("http", OPT, struct raw_coordinator, http, tm_cfg_http_fields),
    CYAML_FIELD_MAPPING("catalog", OPT, struct raw_coordinator, catalog, tm_cfg_catalog_fields),
    STR("admin_token", OPT, struct raw_coordinator, admin_token),
    STR("admin_token_file", OPT, struct raw_coordinator, admin_token_file),
    CYAML_FIELD_SEQUENCE("enrollment", REQ | CYAML_FLAG_POINTER, struct raw_coordinator, enrollment,
                         &tm_cfg_enrollment_entry, 1, CYAML_UNLIMITED),
    CYAML_FIELD_MAPPING("heartbeat", OPT, struct raw_coordinator, heartbeat,
                        tm_cfg_heartbeat_fields),
    CYAML_FIELD_MAPPING("rpc", OPT, struct raw_coordinator, rpc, tm_cfg_rpc_fields),
    CYAML_FIELD_MAPPING("tasks", OPT, struct raw_coordinator, tasks, tm_cfg_tasks_fields),
    CYAML_FIELD_MAPPING("tls", OPT, struct raw_coordinator, tls, tm_cfg_server_tls_fields),
    CYAML_FIELD_MAPPING("log", OPT, struct raw_coordinator, log, tm_cfg_log_fields),
    CYAML_FIELD_SEQUENCE("policies", OPT | CYAML_FLAG_POINTER, struct raw_coordinator, policies,
                         &tm_cfg_policy_entry, 0, 1024),
    CYAML_FIELD_MAPPING("scheduler", OPT, struct raw_coordinator, scheduler,
                        tm_cfg_scheduler_fields),
    CYAML_FIELD_MAPPING("alerts", OPT, struct raw_coordinator, alerts, tm_cfg_alerts_fields),
    CYAML_FIELD_END,
};

static const cyaml_schema_value_t coordinator_schema = {
    CYAML_VALUE_MAPPING(CYAML_FLAG_POINTER, struct raw_coordinator, coordinator_fields),
};

typedef int (*coord_section)(tm_cv *v, const struct raw_coordinator *r, tm_coordinator_conf *c);

/* Order matters where a rule reads an earlier result (tls reads listen). */
static const coord_section coord_sections[] = {
    tm_cfg_coord_listen,      tm_cfg_coord_http,       tm_cfg_coord_catalog,
    tm_cfg_coord_admin_token, tm_cfg_coord_enrollment, tm_cfg_coord_heartbeat,
    tm_cfg_coord_rpc,         tm_cfg_coord_tasks,      tm_cfg_coord_tls,
    tm_cfg_coord_log,         tm_cfg_coord_policies,   tm_cfg_coord_scheduler,
    tm_cfg_coord_alerts,
};

void tm_coordinator_conf_free(tm_coordinator_conf *c)
{
    if (c == NULL) {
        return;
    }
    free(c->path);
    free(c->listen);
    free(c->http_listen);
    free(c->catalog_path);
    tm_cv_free_secret(c->admin_token);
    for (size_t i = 0; i < c->n_enrollments; i++) {
        free(c->enrollments[i].name);
        tm_cv_free_secret(c->enrollments[i].token);
    }
    free(c->enrollments);
    tm_cv_free_tls(&c->tls);
    for (size_t i = 0; i < c->n_policies; i++) {
        tm_policy_conf *p = &c->policies[i];
        free(p->name);
        free(p->match_kind);
        for (size_t j = 0; j < p->n_labels; j++) {
            free(p->labels[j].key);
            free(p->labels[j].value);
        }
        free(p->labels);
        free(p->full);
        free(p->incremental);
        free(p->snapshot);
        free(p->full_where);
        free(p->incremental_where);
        free(p->snapshot_where);
        free(p->drill.schedule);
        free(p->drill.schedule_where);
        free(p->drill.staging_agent);
        free(p->drill.dir);
        for (size_t j = 0; j < p->drill.n_checks; j++) {
            free(p->drill.checks[j]);
        }
        free(p->drill.checks);
        free(p->retention.apply);
        free(p->retention.apply_where);
        for (size_t j = 0; j < p->n_repl_repositories; j++) {
            free(p->repl_repositories[j]);
        }
        free(p->repl_repositories);
        free(p->repl_check);
        free(p->repl_check_where);
    }
    free(c->policies);
    for (size_t i = 0; i < c->n_sinks; i++) {
        free(c->sinks[i].name);
        free(c->sinks[i].kind);
        tm_cv_free_secret(c->sinks[i].url);
        free(c->sinks[i].min_severity);
    }
    free(c->sinks);
    free(c);
}

static int run_coordinator(tm_cv *v, const void *raw, void *conf)
{
    for (size_t i = 0; i < sizeof(coord_sections) / sizeof(coord_sections[0]); i++) {
        int rc = coord_sections[i](v, raw, conf);
        if (rc != 0) {
            return rc;
        }
    }
    return 0;
}

int tm_coordinator_conf_parse(const char *name, const char *buf, size_t len,
                              tm_coordinator_conf **out, tm_err *err)
{
    *out = NULL;
    if (name == NULL) {
        name = "coordinator.yaml";
    }
    tm_coordinator_conf *c = calloc(1, sizeof(*c));
    if (c == NULL) {
        return tm_err_set(err, TM_ENOMEM, "%s: out of memory", name);
    }
    int rc = tm_cfg_parse(name, buf, len, &coordinator_schema, run_coordinator, c, &c->path, err);
    if (rc != 0) {
        tm_coordinator_conf_free(c);
        return rc;
    }
    *out = c;
    return 0;
}

int tm_coordinator_conf_load(const char *path, tm_coordinator_conf **out, tm_err *err)
{
    char *buf = NULL;
    size_t len = 0;
    *out = NULL;
    int rc = tm_cfg_read(path, &buf, &len, err);
    if (rc == 0) {
        rc = tm_coordinator_conf_parse(path, buf, len, out, err);
    }
    free(buf);
    return rc;
}
