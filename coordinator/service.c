/*
 * service.c - service Coordinator: the calls agents make.
 *
 * RegisterAgent is the only call without an agent credential: it carries an
 * enrollment token instead, and answers an agent id plus a fresh per-agent
 * secret of which only the SHA-256 is stored. Every later call is
 * authenticated by tm_coordinator_auth(), and handlers act on the
 * authenticated id only, so an agent can never speak for another.
 */
#include "coordinator/service_internal.h"
#include "common/crypto.h"
#include "common/log.h"
#include "common/engine_kinds.h"
#include "common/util.h"

#include <ctype.h>
#include <string.h>

#define MAX_TARGETS 256
#define MAX_LABELS 64

int tm_coordinator_auth(tm_rpc_call *call, const char *service, const Tidemark__Credential *cred,
                        void *arg)
{
    struct tm_coordinator *c = arg;
    if (strcmp(service, "Admin") == 0) {
        if (cred == NULL || cred->admin_token == NULL ||
            !tm_str_eq_ct(cred->admin_token, c->conf->admin_token)) {
            return tm_rpc_call_error(call, TM_RPC_UNAUTHENTICATED,
                                     "admin token missing or wrong (see --token, "
                                     "TIDEMARK_ADMIN_TOKEN or admin_token_file)");
        }
        tm_rpc_call_set_principal(call, "admin");
        return TM_RPC_OK;
    }
    if (cred == NULL || cred->agent_id == NULL || cred->agent_secret == NULL) {
        return tm_rpc_call_error(call, TM_RPC_UNAUTHENTICATED, "agent credential missing");
    }
    if (tm_registry_auth(c->registry, cred->agent_id, cred->agent_secret) != TM_OK) {
        return tm_rpc_call_error(call, TM_RPC_UNAUTHENTICATED,
                                 "unknown agent or wrong secret; the agent must register again");
    }
    /* A pending agent has only shown an enrollment token: it may heartbeat
     * (to learn it was approved) and nothing else. Checked here, once, so no
     * handler can forget it. */
    const char *method = tm_rpc_call_method(call);
    int state;
    int64_t seen;
    if (method != NULL && strcmp(method, "Coordinator.Heartbeat") != 0 &&
        tm_registry_get(c->registry, cred->agent_id, &state, &seen) == TM_OK &&
        state == TIDEMARK__AGENT_STATE__PENDING) {
        return tm_rpc_call_error(call, TM_RPC_PERMISSION_DENIED,
                                 "agent %s is pending approval and may not call %s until an "
                                 "operator runs tidemarkctl agents approve %s",
                                 cred->agent_id, method, cred->agent_id);
    }
    tm_rpc_call_set_principal(call, cred->agent_id);
    return TM_RPC_OK;
}

static int name_ok(const char *s, size_t max)
{
    if (s == NULL || *s == '\0' || strlen(s) > max) {
        return 0;
    }
    for (; *s; s++) {
        if (!isalnum((unsigned char)*s) && *s != '.' && *s != '_' && *s != '-') {
            return 0;
        }
    }
    return 1;
}

static int text_ok(const char *s, size_t max)
{
    if (s == NULL || strlen(s) > max) {
        return 0;
    }
    for (; *s; s++) {
        if ((unsigned char)*s < 0x20) {
            return 0;
        }
    }
    return 1;
}

static int validate_register(tm_rpc_call *call, const Tidemark__RegisterRequest *req)
{
    if (!text_ok(req->hostname, 255) || req->hostname[0] == '\0') {
        return tm_rpc_call_error(call, TM_RPC_INVALID_ARGUMENT,
                                 "hostname missing, too long, or has control characters");
    }
    if (req->version != NULL && !text_ok(req->version, 64)) {
        return tm_rpc_call_error(call, TM_RPC_INVALID_ARGUMENT, "version too long");
    }
    if (req->n_targets > MAX_TARGETS || req->n_labels > MAX_LABELS) {
        return tm_rpc_call_error(call, TM_RPC_INVALID_ARGUMENT, "at most %d targets and %d labels",
                                 MAX_TARGETS, MAX_LABELS);
    }
    for (size_t i = 0; i < req->n_labels; i++) {
        if (!name_ok(req->labels[i]->key, 63) || !text_ok(req->labels[i]->value, 255) ||
            req->labels[i]->value == NULL) {
            return tm_rpc_call_error(call, TM_RPC_INVALID_ARGUMENT, "label %zu is malformed", i);
        }
    }
    for (size_t i = 0; i < req->n_targets; i++) {
        const Tidemark__Target *t = req->targets[i];
        if (!name_ok(t->name, 64)) {
            return tm_rpc_call_error(call, TM_RPC_INVALID_ARGUMENT,
                                     "target %zu: name must match [A-Za-z0-9._-]{1,64}", i);
        }
        /* Enums are range-checked after unpack: protobuf-c keeps unknown values. */
        if (!t->has_kind || tm_engine_kind_by_kind(t->kind) == NULL) {
            return tm_rpc_call_error(call, TM_RPC_INVALID_ARGUMENT, "target %s: kind must be %s",
                                     t->name, tm_engine_kind_list(true));
        }
        if (t->engine_version != NULL && !text_ok(t->engine_version, 64)) {
            return tm_rpc_call_error(call, TM_RPC_INVALID_ARGUMENT,
                                     "target %s: engine_version too long", t->name);
        }
        for (size_t j = 0; j < i; j++) {
            if (strcmp(req->targets[j]->name, t->name) == 0) {
                return tm_rpc_call_error(call, TM_RPC_INVALID_ARGUMENT, "target %s listed twice",
                                         t->name);
            }
        }
    }
    return TM_RPC_OK;
}

static const tm_enrollment_conf *find_enrollment(struct tm_coordinator *c, const char *token)
{
    const tm_enrollment_conf *found = NULL;
    /* Compare against every token so timing does not tell which one matched. */
    for (size_t i = 0; i < c->conf->n_enrollments; i++) {
        if (tm_str_eq_ct(c->conf->enrollments[i].token, token)) {
            found = &c->conf->enrollments[i];
        }
    }
    return found;
}

/* The enrollment token of a new registration: known and not expired. */
static int check_enrollment(struct tm_coordinator *c, tm_rpc_call *call,
                            const Tidemark__RegisterRequest *req, int64_t now,
                            const tm_enrollment_conf **out)
{
    if (req->enrollment_token == NULL || req->enrollment_token[0] == '\0') {
        return tm_rpc_call_error(call, TM_RPC_UNAUTHENTICATED,
                                 "enrollment token missing (and no valid stored identity)");
    }
    const tm_enrollment_conf *en = find_enrollment(c, req->enrollment_token);
    if (en == NULL) {
        tm_warn("service", "event=register_refused host=%s peer=%s reason=bad_token", req->hostname,
                tm_rpc_call_peer(call));
        return tm_rpc_call_error(call, TM_RPC_UNAUTHENTICATED, "invalid enrollment token");
    }
    if (en->expires_at != 0 && now / 1000 >= en->expires_at) {
        char when[32];
        tm_fmt_time(en->expires_at, when, sizeof(when));
        tm_warn("service", "event=register_refused host=%s enrollment=%s reason=expired",
                req->hostname, en->name);
        return tm_rpc_call_error(call, TM_RPC_UNAUTHENTICATED,
                                 "enrollment token '%s' expired at %s", en->name, when);
    }
    *out = en;
    return TM_RPC_OK;
}

static int handle_register(tm_rpc_call *call, const ProtobufCMessage *in, ProtobufCMessage *out,
                           void *arg)
{
    struct tm_coordinator *c = arg;
    const Tidemark__RegisterRequest *req = (const Tidemark__RegisterRequest *)in;
    Tidemark__RegisterResponse *resp = (Tidemark__RegisterResponse *)out;
    tm_arena *a = tm_rpc_call_arena(call);
    int64_t now = tm_now_ms();

    int code = validate_register(call, req);
    if (code != TM_RPC_OK) {
        return code;
    }

    /* A stored identity that still checks out keeps its id, approval and
     * secret, and needs no enrollment token: the token admits new hosts, and
     * its expiry or rotation must not lock out a host that rebooted. Anything
     * else gets a new identity, for which the token is checked. */
    tm_agent_rec rec = {0};
    tm_agent_rec *old = NULL;
    char id[40], secret[65], hash[65];
    int reuse = 0;
    if (req->agent_id != NULL && req->agent_secret != NULL &&
        tm_registry_auth(c->registry, req->agent_id, req->agent_secret) == TM_OK) {
        tm_err err;
        if (tm_catalog_agent_get(c->catalog, req->agent_id, &old, &err) == TM_OK) {
            reuse = 1;
        }
    }
    const tm_enrollment_conf *en = NULL;
    if (!reuse) {
        code = check_enrollment(c, call, req, now, &en);
        if (code != TM_RPC_OK) {
            return code;
        }
    }
    if (reuse) {
        snprintf(id, sizeof(id), "%s", old->id);
        snprintf(hash, sizeof(hash), "%s", old->secret_hash);
        rec.approved = old->approved;
        rec.registered_at = old->registered_at;
        rec.enrollment = old->enrollment;
        secret[0] = '\0';
    } else {
        unsigned char rnd[32];
        char idhex[17];
        tm_random_bytes(rnd, 8);
        tm_hex(rnd, 8, idhex);
        snprintf(id, sizeof(id), "agt-%s", idhex);
        tm_random_bytes(rnd, sizeof(rnd));
        tm_hex(rnd, sizeof(rnd), secret);
        tm_secure_zero(rnd, sizeof(rnd));
        tm_sha256_hex(secret, strlen(secret), hash);
        rec.approved = en->auto_approve ? 1 : 0;
        rec.registered_at = now / 1000;
    }
    rec.id = id;
    rec.hostname = req->hostname;
    rec.version = req->version;
    rec.secret_hash = hash;
    if (en != NULL) {
        rec.enrollment = en->name;
    }
    rec.address = (char *)tm_rpc_call_peer(call);
    rec.state = TIDEMARK__AGENT_STATE__ONLINE;
    rec.last_seen_at = now / 1000;
    rec.n_labels = req->n_labels;
    rec.labels = tm_arena_alloc(a, sizeof(tm_label) * (req->n_labels + 1));
    rec.n_targets = req->n_targets;
    rec.targets = tm_arena_alloc(a, sizeof(tm_target_rec) * (req->n_targets + 1));
    if (rec.labels == NULL || rec.targets == NULL) {
        tm_agent_rec_free(old);
        return tm_rpc_call_error(call, TM_RPC_RESOURCE_EXHAUSTED, "out of memory");
    }
    for (size_t i = 0; i < req->n_labels; i++) {
        rec.labels[i].key = req->labels[i]->key;
        rec.labels[i].value = req->labels[i]->value;
    }
    for (size_t i = 0; i < req->n_targets; i++) {
        rec.targets[i].name = req->targets[i]->name;
        rec.targets[i].kind = req->targets[i]->kind;
        rec.targets[i].engine_version = req->targets[i]->engine_version;
    }

    tm_err err;
    int rc = tm_catalog_agent_put(c->catalog, &rec, &err);
    char enrollment[72];
    snprintf(enrollment, sizeof(enrollment), "%s", rec.enrollment ? rec.enrollment : "-");
    tm_agent_rec_free(old);
    if (rc == TM_EEXIST) {
        return tm_rpc_call_error(call, TM_RPC_ALREADY_EXISTS, "%s", err.msg);
    }
    if (rc != TM_OK) {
        tm_error("service", "event=register_failed host=\"%s\" msg=\"%s\"", req->hostname, err.msg);
        return tm_rpc_call_error(call, TM_RPC_UNAVAILABLE, "catalog write failed; retry later");
    }
    if (tm_registry_put(c->registry, id, hash, rec.approved, now) != TM_OK) {
        return tm_rpc_call_error(call, TM_RPC_RESOURCE_EXHAUSTED, "out of memory");
    }
    int state = tm_registry_reported_state(rec.approved, TIDEMARK__AGENT_STATE__ONLINE);
    tm_info("service", "event=%s agent=%s host=\"%s\" enrollment=%s state=%s targets=%zu peer=%s",
            reuse ? "reregistered" : "registered", id, req->hostname, enrollment,
            tm_agent_state_name(state), req->n_targets, tm_rpc_call_peer(call));

    resp->agent_id = tm_arena_strdup(a, id);
    if (!reuse) {
        resp->agent_secret = tm_arena_strdup(a, secret);
    }
    tm_secure_zero(secret, sizeof(secret));
    resp->has_state = 1;
    resp->state = (Tidemark__AgentState)state;
    resp->has_heartbeat_interval_ms = 1;
    resp->heartbeat_interval_ms = c->conf->heartbeat_interval_ms;
    return TM_RPC_OK;
}

static int handle_heartbeat(tm_rpc_call *call, const ProtobufCMessage *in, ProtobufCMessage *out,
                            void *arg)
{
    struct tm_coordinator *c = arg;
    Tidemark__HeartbeatResponse *resp = (Tidemark__HeartbeatResponse *)out;
    const Tidemark__HeartbeatRequest *req = (const Tidemark__HeartbeatRequest *)in;
    int state;
    if (tm_registry_heartbeat(c->registry, tm_rpc_call_principal(call), tm_now_ms(), &state) !=
        TM_OK) {
        return tm_rpc_call_error(call, TM_RPC_UNAUTHENTICATED, "agent was removed; register again");
    }
    /* A pending agent's repository reports are not taken: it has not been
     * trusted to speak for any repository yet. */
    if (req->n_repositories > 0 && state != TIDEMARK__AGENT_STATE__PENDING) {
        tm_replication_health(c->replication, tm_rpc_call_principal(call), req->repositories,
                              req->n_repositories);
    }
    resp->has_state = 1;
    resp->state = (Tidemark__AgentState)state;
    resp->has_heartbeat_interval_ms = 1;
    resp->heartbeat_interval_ms = c->conf->heartbeat_interval_ms;
    return TM_RPC_OK;
}

static int handle_next_task(tm_rpc_call *call, const ProtobufCMessage *in, ProtobufCMessage *out,
                            void *arg)
{
    struct tm_coordinator *c = arg;
    int state;
    int64_t seen;
    if (tm_registry_get(c->registry, tm_rpc_call_principal(call), &state, &seen) == TM_OK &&
        state == TIDEMARK__AGENT_STATE__PENDING) {
        return tm_rpc_call_error(call, TM_RPC_PERMISSION_DENIED,
                                 "agent is pending approval (tidemarkctl agents approve)");
    }
    return tm_dispatcher_next(c->dispatcher, call, (const Tidemark__NextTaskRequest *)in,
                              (Tidemark__NextTaskResponse *)out);
}

static int handle_progress(tm_rpc_call *call, const ProtobufCMessage *in, ProtobufCMessage *out,
                           void *arg)
{
    struct tm_coordinator *c = arg;
    return tm_dispatcher_progress(c->dispatcher, call, (const Tidemark__ProgressReport *)in,
                                  (Tidemark__ProgressAck *)out);
}

static int handle_complete(tm_rpc_call *call, const ProtobufCMessage *in, ProtobufCMessage *out,
                           void *arg)
{
    struct tm_coordinator *c = arg;
    return tm_dispatcher_complete(c->dispatcher, call, (const Tidemark__CompleteTaskRequest *)in,
                                  (Tidemark__CompleteTaskResponse *)out);
}

int tm_service_register(struct tm_coordinator *c)
{
    const ProtobufCServiceDescriptor *svc = &tidemark__coordinator__descriptor;
    int rc = tm_rpc_server_register(c->rpc, svc, "RegisterAgent", handle_register, c,
                                    TM_RPC_NOAUTH | TM_RPC_MUTATING);
    if (rc == TM_OK) {
        rc = tm_rpc_server_register(c->rpc, svc, "Heartbeat", handle_heartbeat, c, 0);
    }
    if (rc == TM_OK) {
        rc = tm_rpc_server_register(c->rpc, svc, "NextTask", handle_next_task, c, 0);
    }
    if (rc == TM_OK) {
        rc = tm_rpc_server_register(c->rpc, svc, "ReportProgress", handle_progress, c, 0);
    }
    if (rc == TM_OK) {
        rc = tm_rpc_server_register(c->rpc, svc, "CompleteTask", handle_complete, c,
                                    TM_RPC_MUTATING);
    }
    return rc;
}
