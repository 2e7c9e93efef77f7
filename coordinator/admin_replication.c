/*
 * admin_replication.c - service Admin, the replication calls:
 * ReplicationStatus (per target and repository: the last check's verdict,
 * with the lag as of now, and every agent's repository probes) and
 * ReplicationCheck (queue a check now).
 */
#include "coordinator/service_internal.h"
#include "common/util.h"

#include <string.h>

static int handle_status(tm_rpc_call *call, const ProtobufCMessage *in, ProtobufCMessage *out,
                         void *arg)
{
    struct tm_coordinator *c = arg;
    const Tidemark__ReplicationStatusRequest *req = (const Tidemark__ReplicationStatusRequest *)in;
    Tidemark__ReplicationStatusResponse *resp = (Tidemark__ReplicationStatusResponse *)out;
    tm_arena *a = tm_rpc_call_arena(call);
    Tidemark__ReplicationState **st = NULL;
    Tidemark__RepositoryStatus **h = NULL;
    size_t n = 0, nh = 0;
    tm_err err;
    const char *target = req->target != NULL && req->target[0] ? req->target : NULL;
    if (tm_catalog_repl_list(c->catalog, target, &st, &n, &err) != TM_OK) {
        return tm_admin_catalog_error(call, &err);
    }
    if (tm_replication_health_list(c->replication, &h, &nh, &err) != TM_OK) {
        tm_catalog_repl_free(st, n);
        return tm_admin_catalog_error(call, &err);
    }
    int64_t now = tm_now_s();
    resp->states = tm_arena_alloc(a, sizeof(*resp->states) * (n ? n : 1));
    resp->repositories = tm_arena_alloc(a, sizeof(*resp->repositories) * (nh ? nh : 1));
    int oom = resp->states == NULL || resp->repositories == NULL;
    for (size_t i = 0; !oom && i < n; i++) {
        st[i]->has_lag_seconds = 1;
        st[i]->lag_seconds = st[i]->oldest_missing_time > 0 ? now - st[i]->oldest_missing_time : 0;
        if ((resp->states[resp->n_states] = tm_admin_to_arena(call, &st[i]->base)) == NULL) {
            oom = 1;
            break;
        }
        resp->n_states++;
    }
    for (size_t i = 0; !oom && i < nh; i++) {
        if ((resp->repositories[resp->n_repositories] = tm_admin_to_arena(call, &h[i]->base)) ==
            NULL) {
            oom = 1;
            break;
        }
        resp->n_repositories++;
    }
    tm_catalog_repl_free(st, n);
    tm_catalog_repo_health_free(h, nh);
    return oom ? tm_rpc_call_error(call, TM_RPC_RESOURCE_EXHAUSTED, "out of memory") : TM_RPC_OK;
}

static int handle_check(tm_rpc_call *call, const ProtobufCMessage *in, ProtobufCMessage *out,
                        void *arg)
{
    struct tm_coordinator *c = arg;
    const Tidemark__ReplicationCheckRequest *req = (const Tidemark__ReplicationCheckRequest *)in;
    if (req->target == NULL || req->target[0] == '\0') {
        return tm_rpc_call_error(call, TM_RPC_INVALID_ARGUMENT, "target required");
    }
    Tidemark__Task *t = NULL;
    tm_err err;
    if (tm_replication_queue_check(c->replication, req->target, "admin", &t, &err) != TM_OK) {
        return tm_admin_catalog_error(call, &err);
    }
    return tm_admin_reply_task(call, t, (Tidemark__TaskResponse *)out);
}

int tm_admin_replication_register(struct tm_coordinator *c)
{
    int rc = tm_rpc_server_register(c->rpc, &tidemark__admin__descriptor, "ReplicationStatus",
                                    handle_status, c, 0);
    if (rc == TM_OK) {
        rc = tm_rpc_server_register(c->rpc, &tidemark__admin__descriptor, "ReplicationCheck",
                                    handle_check, c, TM_RPC_MUTATING);
    }
    return rc;
}
