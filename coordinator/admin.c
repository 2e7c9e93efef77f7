/*
 * admin.c - service Admin: the calls tidemarkctl makes.
 *
 * The catalog is the source for who the agents are (hostname, labels,
 * targets); the registry for how they are right now (state, last seen).
 */
#include "coordinator/service_internal.h"
#include "common/log.h"
#include "common/util.h"

#include <string.h>

int tm_agent_info_fill(struct tm_coordinator *c, tm_rpc_call *call, const tm_agent_rec *rec,
                       Tidemark__AgentInfo *out)
{
    tm_arena *a = tm_rpc_call_arena(call);
    tidemark__agent_info__init(out);
    out->id = tm_arena_strdup(a, rec->id);
    out->hostname = tm_arena_strdup(a, rec->hostname);
    out->version = tm_arena_strdup(a, rec->version);
    out->enrollment = tm_arena_strdup(a, rec->enrollment);
    out->address = tm_arena_strdup(a, rec->address);
    int state = tm_registry_reported_state(rec->approved, rec->state);
    int64_t seen_ms = rec->last_seen_at * 1000;
    tm_registry_get(c->registry, rec->id, &state, &seen_ms);
    out->has_state = 1;
    out->state = (Tidemark__AgentState)state;
    out->has_registered_at = 1;
    out->registered_at = rec->registered_at;
    out->has_last_seen_at = 1;
    out->last_seen_at = seen_ms / 1000;
    out->n_labels = rec->n_labels;
    out->labels = tm_arena_alloc(a, sizeof(*out->labels) * (rec->n_labels + 1));
    /* A pending agent serves nothing yet: show what it claims, which is what
     * the operator approves. */
    const tm_target_rec *targets = rec->n_targets > 0 ? rec->targets : rec->claims;
    size_t n_targets = rec->n_targets > 0 ? rec->n_targets : rec->n_claims;
    out->n_targets = n_targets;
    out->targets = tm_arena_alloc(a, sizeof(*out->targets) * (n_targets + 1));
    if (out->labels == NULL || out->targets == NULL) {
        return TM_ENOMEM;
    }
    for (size_t i = 0; i < rec->n_labels; i++) {
        Tidemark__Label *l = tm_arena_alloc(a, sizeof(*l));
        if (l == NULL) {
            return TM_ENOMEM;
        }
        tidemark__label__init(l);
        l->key = tm_arena_strdup(a, rec->labels[i].key);
        l->value = tm_arena_strdup(a, rec->labels[i].value);
        out->labels[i] = l;
    }
    for (size_t i = 0; i < n_targets; i++) {
        Tidemark__Target *t = tm_arena_alloc(a, sizeof(*t));
        if (t == NULL) {
            return TM_ENOMEM;
        }
        tidemark__target__init(t);
        t->name = tm_arena_strdup(a, targets[i].name);
        t->has_kind = 1;
        t->kind = (Tidemark__TargetKind)targets[i].kind;
        t->engine_version = tm_arena_strdup(a, targets[i].engine_version);
        out->targets[i] = t;
    }
    return TM_OK;
}

static int catalog_failed(tm_rpc_call *call, const tm_err *err)
{
    tm_error("admin", "method=%s msg=\"%s\"", tm_rpc_call_method(call), err->msg);
    return tm_rpc_call_error(call, TM_RPC_UNAVAILABLE, "catalog read failed: %s", err->msg);
}

static int handle_list(tm_rpc_call *call, const ProtobufCMessage *in, ProtobufCMessage *out,
                       void *arg)
{
    struct tm_coordinator *c = arg;
    const Tidemark__ListAgentsRequest *req = (const Tidemark__ListAgentsRequest *)in;
    Tidemark__ListAgentsResponse *resp = (Tidemark__ListAgentsResponse *)out;
    tm_arena *a = tm_rpc_call_arena(call);
    tm_agent_rec **recs = NULL;
    size_t n = 0;
    tm_err err;
    if (tm_catalog_agent_list(c->catalog, &recs, &n, &err) != TM_OK) {
        return catalog_failed(call, &err);
    }
    resp->agents = tm_arena_alloc(a, sizeof(*resp->agents) * (n + 1));
    int code = resp->agents != NULL ? TM_RPC_OK : TM_RPC_RESOURCE_EXHAUSTED;
    for (size_t i = 0; i < n && code == TM_RPC_OK; i++) {
        Tidemark__AgentInfo *info = tm_arena_alloc(a, sizeof(*info));
        if (info == NULL || tm_agent_info_fill(c, call, recs[i], info) != TM_OK) {
            code = TM_RPC_RESOURCE_EXHAUSTED;
            break;
        }
        if (req->has_state && req->state != TIDEMARK__AGENT_STATE__AGENT_STATE_UNSPECIFIED &&
            info->state != req->state) {
            continue;
        }
        resp->agents[resp->n_agents++] = info;
    }
    tm_agent_recs_free(recs, n);
    if (code != TM_RPC_OK) {
        return tm_rpc_call_error(call, code, "out of memory");
    }
    return TM_RPC_OK;
}

/* Resolve an AgentRef (id, or a hostname that names exactly one agent). */
static int resolve(struct tm_coordinator *c, tm_rpc_call *call, const Tidemark__AgentRef *ref,
                   tm_agent_rec **out);

int tm_admin_resolve_agent(struct tm_coordinator *c, tm_rpc_call *call, const char *ref,
                           tm_agent_rec **out)
{
    Tidemark__AgentRef r = TIDEMARK__AGENT_REF__INIT;
    r.id = (char *)ref;
    return resolve(c, call, &r, out);
}

static int resolve(struct tm_coordinator *c, tm_rpc_call *call, const Tidemark__AgentRef *ref,
                   tm_agent_rec **out)
{
    tm_err err;
    if (ref->id == NULL || ref->id[0] == '\0') {
        return tm_rpc_call_error(call, TM_RPC_INVALID_ARGUMENT, "agent id or hostname required");
    }
    int rc = tm_catalog_agent_get(c->catalog, ref->id, out, &err);
    if (rc == TM_OK) {
        return TM_RPC_OK;
    }
    if (rc != TM_ENOENT) {
        return catalog_failed(call, &err);
    }
    tm_agent_rec **recs = NULL;
    size_t n = 0, hits = 0, hit = 0;
    if (tm_catalog_agent_list(c->catalog, &recs, &n, &err) != TM_OK) {
        return catalog_failed(call, &err);
    }
    for (size_t i = 0; i < n; i++) {
        if (recs[i]->hostname != NULL && strcmp(recs[i]->hostname, ref->id) == 0) {
            hits++;
            hit = i;
        }
    }
    int code = TM_RPC_OK;
    if (hits == 1) {
        *out = recs[hit];
        recs[hit] = NULL;
    } else if (hits == 0) {
        code =
            tm_rpc_call_error(call, TM_RPC_NOT_FOUND, "no agent with id or hostname '%s'", ref->id);
    } else {
        code = tm_rpc_call_error(call, TM_RPC_FAILED_PRECONDITION,
                                 "%zu agents have hostname '%s'; use the agent id", hits, ref->id);
    }
    tm_agent_recs_free(recs, n);
    return code;
}

static int reply_agent(struct tm_coordinator *c, tm_rpc_call *call, tm_agent_rec *rec,
                       Tidemark__AgentResponse *resp)
{
    Tidemark__AgentInfo *info = tm_arena_alloc(tm_rpc_call_arena(call), sizeof(*info));
    int rc = info != NULL ? tm_agent_info_fill(c, call, rec, info) : TM_ENOMEM;
    tm_agent_rec_free(rec);
    if (rc != TM_OK) {
        return tm_rpc_call_error(call, TM_RPC_RESOURCE_EXHAUSTED, "out of memory");
    }
    resp->agent = info;
    return TM_RPC_OK;
}

static int handle_show(tm_rpc_call *call, const ProtobufCMessage *in, ProtobufCMessage *out,
                       void *arg)
{
    tm_agent_rec *rec = NULL;
    int code = resolve(arg, call, (const Tidemark__AgentRef *)in, &rec);
    if (code != TM_RPC_OK) {
        return code;
    }
    return reply_agent(arg, call, rec, (Tidemark__AgentResponse *)out);
}

static int handle_approve(tm_rpc_call *call, const ProtobufCMessage *in, ProtobufCMessage *out,
                          void *arg)
{
    struct tm_coordinator *c = arg;
    const Tidemark__AgentRef *ref = (const Tidemark__AgentRef *)in;
    tm_agent_rec *rec = NULL;
    tm_err err;
    /* By id only: a hostname is whatever the agent said it was, so a pending
     * impostor could register under the name the operator expects first. */
    int rc = ref->id != NULL && ref->id[0] != '\0'
                 ? tm_catalog_agent_get(c->catalog, ref->id, &rec, &err)
                 : TM_ENOENT;
    if (rc == TM_ENOENT) {
        return tm_rpc_call_error(call, TM_RPC_NOT_FOUND,
                                 "no agent with id '%s'; approve takes the agent id, not a "
                                 "hostname (hostnames are self-reported): see tidemarkctl agents "
                                 "list --state pending",
                                 ref->id != NULL ? ref->id : "");
    }
    if (rc != TM_OK) {
        return catalog_failed(call, &err);
    }
    if (!rec->approved) {
        rc = tm_catalog_agent_approve(c->catalog, rec->id, tm_now_s(), "approved", &err);
        if (rc == TM_EEXIST) {
            tm_warn("admin", "event=approve_refused agent=%s host=\"%s\" msg=\"%s\"", rec->id,
                    rec->hostname, err.msg);
            tm_agent_rec_free(rec);
            return tm_rpc_call_error(call, TM_RPC_ALREADY_EXISTS, "%s", err.msg);
        }
        if (rc != TM_OK) {
            tm_agent_rec_free(rec);
            return catalog_failed(call, &err);
        }
        tm_registry_set_approved(c->registry, rec->id, 1);
        rec->approved = 1;
        tm_info("admin", "event=approved agent=%s host=\"%s\"", rec->id, rec->hostname);
    }
    return reply_agent(c, call, rec, (Tidemark__AgentResponse *)out);
}

static int handle_remove(tm_rpc_call *call, const ProtobufCMessage *in, ProtobufCMessage *out,
                         void *arg)
{
    struct tm_coordinator *c = arg;
    tm_agent_rec *rec = NULL;
    tm_err err;
    int code = resolve(c, call, (const Tidemark__AgentRef *)in, &rec);
    if (code != TM_RPC_OK) {
        return code;
    }
    Tidemark__AgentResponse *resp = (Tidemark__AgentResponse *)out;
    Tidemark__AgentInfo *info = tm_arena_alloc(tm_rpc_call_arena(call), sizeof(*info));
    if (info == NULL || tm_agent_info_fill(c, call, rec, info) != TM_OK) {
        tm_agent_rec_free(rec);
        return tm_rpc_call_error(call, TM_RPC_RESOURCE_EXHAUSTED, "out of memory");
    }
    if (tm_catalog_agent_delete(c->catalog, rec->id, &err) != TM_OK) {
        tm_agent_rec_free(rec);
        return catalog_failed(call, &err);
    }
    tm_registry_remove(c->registry, rec->id);
    tm_info("admin", "event=removed agent=%s host=\"%s\"", rec->id, rec->hostname);
    tm_agent_rec_free(rec);
    resp->agent = info;
    return TM_RPC_OK;
}

static int handle_status(tm_rpc_call *call, const ProtobufCMessage *in, ProtobufCMessage *out,
                         void *arg)
{
    struct tm_coordinator *c = arg;
    Tidemark__StatusResponse *resp = (Tidemark__StatusResponse *)out;
    tm_arena *a = tm_rpc_call_arena(call);
    tm_catalog_stats st;
    tm_err err;
    (void)in;
    if (tm_catalog_stats_get(c->catalog, &st, &err) != TM_OK) {
        return catalog_failed(call, &err);
    }
    uint32_t counts[5];
    tm_registry_counts(c->registry, counts);
    resp->version = tm_arena_strdup(a, TIDEMARK_VERSION);
    resp->has_started_at = 1;
    resp->started_at = c->started_at;
    resp->agents = tm_arena_alloc(a, sizeof(*resp->agents) * 4);
    if (resp->agents == NULL) {
        return tm_rpc_call_error(call, TM_RPC_RESOURCE_EXHAUSTED, "out of memory");
    }
    for (int s = TIDEMARK__AGENT_STATE__PENDING; s <= TIDEMARK__AGENT_STATE__LOST; s++) {
        Tidemark__StateCount *sc = tm_arena_alloc(a, sizeof(*sc));
        if (sc == NULL) {
            return tm_rpc_call_error(call, TM_RPC_RESOURCE_EXHAUSTED, "out of memory");
        }
        tidemark__state_count__init(sc);
        sc->has_state = sc->has_count = 1;
        sc->state = (Tidemark__AgentState)s;
        sc->count = counts[s];
        resp->agents[resp->n_agents++] = sc;
    }
    resp->has_targets = 1;
    resp->targets = (uint32_t)st.targets;
    resp->catalog = tm_arena_printf(a, "sqlite:%s", c->conf->catalog_path);
    resp->has_schema_version = 1;
    resp->schema_version = (uint32_t)st.schema_version;
    resp->has_heartbeat_interval_ms = 1;
    resp->heartbeat_interval_ms = c->conf->heartbeat_interval_ms;
    return tm_status_targets(c, call, resp);
}

int tm_admin_register(struct tm_coordinator *c)
{
    const ProtobufCServiceDescriptor *svc = &tidemark__admin__descriptor;
    int rc = TM_OK;
    rc = rc ? rc : tm_rpc_server_register(c->rpc, svc, "ListAgents", handle_list, c, 0);
    rc = rc ? rc : tm_rpc_server_register(c->rpc, svc, "ShowAgent", handle_show, c, 0);
    rc = rc ? rc
            : tm_rpc_server_register(c->rpc, svc, "ApproveAgent", handle_approve, c,
                                     TM_RPC_MUTATING);
    rc = rc ? rc
            : tm_rpc_server_register(c->rpc, svc, "RemoveAgent", handle_remove, c, TM_RPC_MUTATING);
    rc = rc ? rc : tm_rpc_server_register(c->rpc, svc, "Status", handle_status, c, 0);
    return rc;
}
