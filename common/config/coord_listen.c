/*
 * coord_listen.c - coordinator.yaml listen:, http:, heartbeat:, rpc:, tls:, log:
 * (how the coordinator is reached and how it treats its clients).
 */
#include "common/config/internal.h"

#include <inttypes.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

const cyaml_schema_field_t tm_cfg_http_fields[] = {
    STR("listen", OPT, struct raw_http, listen),
    CYAML_FIELD_END,
};

const cyaml_schema_field_t tm_cfg_heartbeat_fields[] = {
    STR("interval", OPT, struct raw_heartbeat, interval),
    CYAML_FIELD_INT("stale_after_missed", OPT, struct raw_heartbeat, stale_after_missed),
    CYAML_FIELD_INT("lost_after_missed", OPT, struct raw_heartbeat, lost_after_missed),
    CYAML_FIELD_END,
};

const cyaml_schema_field_t tm_cfg_rpc_fields[] = {
    STR("max_message_size", OPT, struct raw_rpc, max_message_size),
    CYAML_FIELD_INT("contexts", OPT, struct raw_rpc, contexts),
    STR("max_unauthenticated_message_size", OPT, struct raw_rpc, max_unauthenticated_message_size),
    STR("send_timeout", OPT, struct raw_rpc, send_timeout),
    STR("first_request_timeout", OPT, struct raw_rpc, first_request_timeout),
    STR("idle_timeout", OPT, struct raw_rpc, idle_timeout),
    CYAML_FIELD_INT("max_pending_connections_per_address", OPT, struct raw_rpc,
                    max_pending_connections_per_address),
    CYAML_FIELD_INT("max_calls_per_connection", OPT, struct raw_rpc, max_calls_per_connection),
    CYAML_FIELD_END,
};

int tm_cfg_coord_listen(tm_cv *v, const struct raw_coordinator *r, tm_coordinator_conf *c)
{
    const char *url = r->listen != NULL ? r->listen : "tcp://127.0.0.1:7800";
    int rc = tm_cv_url(v, "listen", url, TM_CV_URL_TCP | TM_CV_URL_TLS | TM_CV_URL_IPC, true);
    return rc != 0 ? rc : tm_cv_dup(v, url, &c->listen);
}

int tm_cfg_coord_http(tm_cv *v, const struct raw_coordinator *r, tm_coordinator_conf *c)
{
    const char *url = r->http.listen != NULL ? r->http.listen : "http://127.0.0.1:9187";
    if (url[0] != '\0') {
        int rc = tm_cv_url(v, "http.listen", url, TM_CV_URL_HTTP, true);
        if (rc != 0) {
            return rc;
        }
    }
    return tm_cv_dup(v, url, &c->http_listen);
}

int tm_cfg_coord_heartbeat(tm_cv *v, const struct raw_coordinator *r, tm_coordinator_conf *c)
{
    const struct raw_heartbeat *h = &r->heartbeat;
    int rc = tm_cv_duration(v, "heartbeat.interval", h->interval, "10s", 100, 3600000,
                            &c->heartbeat_interval_ms);
    if (rc == 0) {
        rc = tm_cv_int(v, "heartbeat.stale_after_missed", h->stale_after_missed, 3, 1, 1000,
                       &c->stale_after_missed);
    }
    if (rc == 0) {
        rc = tm_cv_int(v, "heartbeat.lost_after_missed", h->lost_after_missed, 10, 2, 100000,
                       &c->lost_after_missed);
    }
    if (rc == 0 && c->lost_after_missed <= c->stale_after_missed) {
        /* Point at whichever of the two the user actually wrote. */
        const char *at = tm_cv_has(v, "heartbeat.lost_after_missed")
                             ? "heartbeat.lost_after_missed"
                             : "heartbeat.stale_after_missed";
        rc = tm_ydoc_err(v->doc, v->err, at,
                         "lost_after_missed (%" PRIu32 ") must be greater than "
                         "stale_after_missed (%" PRIu32 ")",
                         c->lost_after_missed, c->stale_after_missed);
    }
    return rc;
}

int tm_cfg_coord_rpc(tm_cv *v, const struct raw_coordinator *r, tm_coordinator_conf *c)
{
    int rc = tm_cv_size(v, "rpc.max_message_size", r->rpc.max_message_size, "4MiB", 4096,
                        256u * 1024 * 1024, &c->rpc_max_message_bytes);
    if (rc == 0) {
        rc = tm_cv_int(v, "rpc.contexts", r->rpc.contexts, 64, 1, 4096, &c->rpc_contexts);
    }
    /* Bounds on what one client can hold (see rpc.h): defaults that no
     * well-behaved agent or tidemarkctl comes near. */
    if (rc == 0) {
        rc = tm_cv_size(v, "rpc.max_unauthenticated_message_size",
                        r->rpc.max_unauthenticated_message_size, "64KiB", 1024, 16u * 1024 * 1024,
                        &c->rpc_max_unauth_message_bytes);
    }
    if (rc == 0) {
        rc = tm_cv_duration(v, "rpc.send_timeout", r->rpc.send_timeout, "10s", 100, 3600000,
                            &c->rpc_send_timeout_ms);
    }
    if (rc == 0) {
        rc = tm_cv_duration(v, "rpc.first_request_timeout", r->rpc.first_request_timeout, "10s",
                            100, 3600000, &c->rpc_first_request_timeout_ms);
    }
    if (rc == 0) {
        rc = tm_cv_duration(v, "rpc.idle_timeout", r->rpc.idle_timeout, "5m", 1000, 86400000,
                            &c->rpc_idle_timeout_ms);
    }
    if (rc == 0) {
        rc = tm_cv_int(v, "rpc.max_pending_connections_per_address",
                       r->rpc.max_pending_connections_per_address, 128, 1, 1000000,
                       &c->rpc_max_pending_per_addr);
    }
    if (rc == 0) {
        rc = tm_cv_int(v, "rpc.max_calls_per_connection", r->rpc.max_calls_per_connection, 64, 1,
                       100000, &c->rpc_max_calls_per_conn);
    }
    return rc;
}

int tm_cfg_coord_tls(tm_cv *v, const struct raw_coordinator *r, tm_coordinator_conf *c)
{
    int rc = tm_cv_tls_files(v, "tls", &r->tls, &c->tls);
    if (rc != 0) {
        return rc;
    }
    c->tls.require_client_cert = r->tls.require_client_cert;
    c->tls_enabled = c->tls.cert_file != NULL;
    bool tls_url = strncmp(c->listen, "tls+tcp://", 10) == 0;
    if (tls_url && !c->tls_enabled) {
        return tm_ydoc_err(v->doc, v->err, "listen",
                           "tls+tcp:// needs a certificate, expected tls.cert_file and "
                           "tls.key_file");
    }
    if (!tls_url && c->tls_enabled) {
        /* listen may be the default: then the line to fix is the cert. */
        return tm_ydoc_err(v->doc, v->err, tm_cv_has(v, "listen") ? "listen" : "tls.cert_file",
                           "tls.cert_file is set but listen is not tls+tcp://, expected a "
                           "tls+tcp:// URL");
    }
    if (c->tls.require_client_cert && c->tls.ca_file == NULL) {
        return tm_ydoc_err(v->doc, v->err, "tls.require_client_cert",
                           "client certificates need a CA to check them against, expected "
                           "tls.ca_file");
    }
    return 0;
}

int tm_cfg_coord_log(tm_cv *v, const struct raw_coordinator *r, tm_coordinator_conf *c)
{
    return tm_cv_log_level(v, "log.level", r->log.level, &c->log_level);
}
