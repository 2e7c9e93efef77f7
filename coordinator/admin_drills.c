/*
 * admin_drills.c - service Admin, restore drills: RunDrill (queue a drill
 * now, tidemarkctl drill run) and ListDrills (tidemarkctl drills list).
 */
#include "coordinator/service_internal.h"
#include "coordinator/drills.h"

#include <string.h>

static int handle_run_drill(tm_rpc_call *call, const ProtobufCMessage *in, ProtobufCMessage *out,
                            void *arg)
{
    struct tm_coordinator *c = arg;
    const Tidemark__RunDrillRequest *req = (const Tidemark__RunDrillRequest *)in;
    if (req->target == NULL || req->target[0] == '\0') {
        return tm_rpc_call_error(call, TM_RPC_INVALID_ARGUMENT, "target required");
    }
    char to[64] = "";
    if (req->to_agent != NULL && req->to_agent[0] != '\0') {
        tm_agent_rec *rec = NULL;
        int code = tm_admin_resolve_agent(c, call, req->to_agent, &rec);
        if (code != TM_RPC_OK) {
            return code;
        }
        snprintf(to, sizeof(to), "%s", rec->id);
        tm_agent_rec_free(rec);
    }
    Tidemark__Task *stored = NULL;
    tm_err err;
    if (tm_drills_submit(c->conf, c->catalog, c->dispatcher, req->target, to[0] ? to : NULL,
                         req->target_time, "admin", &stored, &err) != TM_OK) {
        if (err.code == TM_EBUSY) {
            return tm_rpc_call_error(call, TM_RPC_FAILED_PRECONDITION, "%s", err.msg);
        }
        return tm_admin_catalog_error(call, &err);
    }
    return tm_admin_reply_task(call, stored, (Tidemark__TaskResponse *)out);
}

static int handle_list_drills(tm_rpc_call *call, const ProtobufCMessage *in, ProtobufCMessage *out,
                              void *arg)
{
    struct tm_coordinator *c = arg;
    const Tidemark__ListDrillsRequest *req = (const Tidemark__ListDrillsRequest *)in;
    Tidemark__ListDrillsResponse *resp = (Tidemark__ListDrillsResponse *)out;
    Tidemark__DrillInfo **ds = NULL;
    size_t n = 0;
    tm_err err;
    if (tm_catalog_drill_list(c->catalog, req->target, req->has_limit ? req->limit : 100, &ds, &n,
                              &err) != TM_OK) {
        return tm_admin_catalog_error(call, &err);
    }
    resp->drills = tm_arena_alloc(tm_rpc_call_arena(call), sizeof(*resp->drills) * (n + 1));
    for (size_t i = 0; i < n && resp->drills != NULL; i++) {
        resp->drills[resp->n_drills] = tm_admin_to_arena(call, &ds[i]->base);
        if (resp->drills[resp->n_drills] != NULL) {
            resp->n_drills++;
        }
    }
    tm_catalog_drills_free(ds, n);
    return TM_RPC_OK;
}

int tm_admin_drills_register(struct tm_coordinator *c)
{
    int rc = tm_rpc_server_register(c->rpc, &tidemark__admin__descriptor, "RunDrill",
                                    handle_run_drill, c, TM_RPC_MUTATING);
    if (rc == TM_OK) {
        rc = tm_rpc_server_register(c->rpc, &tidemark__admin__descriptor, "ListDrills",
                                    handle_list_drills, c, 0);
    }
    return rc;
}
