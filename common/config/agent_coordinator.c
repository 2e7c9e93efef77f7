/*
 * agent_coordinator.c - agent.yaml coordinator: how the agent reaches the coordinator.
 */
#include "common/config/internal.h"

#include <inttypes.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

const cyaml_schema_field_t tm_cfg_agent_coordinator_fields[] = {
    STR("url", REQ, struct raw_agent_coordinator, url),
    STR("enrollment_token", OPT, struct raw_agent_coordinator, enrollment_token),
    STR("enrollment_token_file", OPT, struct raw_agent_coordinator, enrollment_token_file),
    STR("timeout", OPT, struct raw_agent_coordinator, timeout),
    STR("backoff_max", OPT, struct raw_agent_coordinator, backoff_max),
    CYAML_FIELD_MAPPING("tls", OPT, struct raw_agent_coordinator, tls, tm_cfg_client_tls_fields),
    CYAML_FIELD_END,
};

static bool g_agent_offline;

void tm_config_agent_offline(bool on)
{
    g_agent_offline = on;
}

int tm_cfg_agent_coordinator(tm_cv *v, const struct raw_agent *r, tm_agent_conf *c)
{
    const struct raw_agent_coordinator *rc_ = &r->coordinator;
    int rc = tm_cv_url(v, "coordinator.url", rc_->url,
                       TM_CV_URL_TCP | TM_CV_URL_TLS | TM_CV_URL_IPC, false);
    if (rc == 0) {
        rc = tm_cv_dup(v, rc_->url, &c->coordinator_url);
    }
    /* Offline commands (the repository commands, a local restore, an
     * engine's log fetch for a restored server, which runs with a minimal
     * environment: agent/restore_root.c) never talk to the coordinator, so
     * they neither need nor resolve the enrollment token: an operator
     * listing a repository has no reason to hold it, and a server's
     * environment has no reason to carry it. */
    if (rc == 0 && !g_agent_offline) {
        rc = tm_cv_secret(v, "coordinator", "enrollment_token", rc_->enrollment_token,
                          rc_->enrollment_token_file, &c->enrollment_token);
    }
    if (rc == 0) {
        rc = tm_cv_duration(v, "coordinator.timeout", rc_->timeout, "10s", 100, 600000,
                            &c->rpc_timeout_ms);
    }
    if (rc == 0) {
        rc = tm_cv_duration(v, "coordinator.backoff_max", rc_->backoff_max, "30s", 100, 3600000,
                            &c->backoff_max_ms);
    }
    if (rc == 0) {
        rc = tm_cv_tls_files(v, "coordinator.tls", &rc_->tls, &c->tls);
    }
    if (rc == 0 && rc_->tls.server_name != NULL) {
        rc = tm_cv_dup(v, rc_->tls.server_name, &c->tls.server_name);
    }
    if (rc != 0) {
        return rc;
    }
    bool tls_url = strncmp(c->coordinator_url, "tls+tcp://", 10) == 0;
    c->tls_enabled = tls_url || c->tls.ca_file != NULL;
    if (!tls_url && (c->tls.ca_file != NULL || c->tls.cert_file != NULL)) {
        return tm_ydoc_err(v->doc, v->err, "coordinator.url",
                           "coordinator.tls is configured but the URL is not tls+tcp://, "
                           "expected a tls+tcp:// URL");
    }
    return 0;
}
