/*
 * admin_tasks.c - service Admin, the task and backup calls: RunBackup,
 * Restore, GetTask, ListTasks, CancelTask, ListBackups, ShowBackup.
 */
#include "coordinator/service_internal.h"
#include "common/log.h"

#include <string.h>

/* Messages from the catalog are malloc'd; replies must live in the call's
 * arena until they are packed after the handler returns. */
void *tm_admin_to_arena(tm_rpc_call *call, const ProtobufCMessage *m)
{
    tm_arena *a = tm_rpc_call_arena(call);
    size_t n = protobuf_c_message_get_packed_size(m);
    uint8_t *buf = tm_arena_alloc(a, n ? n : 1);
    if (buf == NULL) {
        return NULL;
    }
    protobuf_c_message_pack(m, buf);
    return protobuf_c_message_unpack(m->descriptor, tm_arena_allocator(a), n, buf);
}

int tm_admin_catalog_error(tm_rpc_call *call, const tm_err *err)
{
    if (err->code == TM_ENOENT) {
        return tm_rpc_call_error(call, TM_RPC_NOT_FOUND, "%s", err->msg);
    }
    if (err->code == TM_EINVAL) {
        return tm_rpc_call_error(call, TM_RPC_INVALID_ARGUMENT, "%s", err->msg);
    }
    tm_error("admin", "method=%s msg=\"%s\"", tm_rpc_call_method(call), err->msg);
    return tm_rpc_call_error(call, TM_RPC_UNAVAILABLE, "catalog: %s", err->msg);
}

int tm_admin_reply_task(tm_rpc_call *call, Tidemark__Task *t, Tidemark__TaskResponse *resp)
{
    resp->task = tm_admin_to_arena(call, &t->base);
    tidemark__task__free_unpacked(t, NULL);
    return resp->task != NULL ? TM_RPC_OK
                              : tm_rpc_call_error(call, TM_RPC_RESOURCE_EXHAUSTED, "out of memory");
}

static int handle_run_backup(tm_rpc_call *call, const ProtobufCMessage *in, ProtobufCMessage *out,
                             void *arg)
{
    struct tm_coordinator *c = arg;
    const Tidemark__RunBackupRequest *req = (const Tidemark__RunBackupRequest *)in;
    if (req->target == NULL || req->target[0] == '\0') {
        return tm_rpc_call_error(call, TM_RPC_INVALID_ARGUMENT, "target required");
    }
    int type = req->has_type ? (int)req->type : TIDEMARK__BACKUP_TYPE__FULL;
    if (type < TIDEMARK__BACKUP_TYPE__FULL || type > TIDEMARK__BACKUP_TYPE__SNAPSHOT) {
        return tm_rpc_call_error(call, TM_RPC_INVALID_ARGUMENT,
                                 "type must be full, incremental or snapshot");
    }
    Tidemark__Task t = TIDEMARK__TASK__INIT;
    t.has_kind = t.has_backup_type = 1;
    t.kind = TIDEMARK__TASK_KIND__BACKUP;
    t.backup_type = (Tidemark__BackupType)type;
    t.target = req->target;
    t.requested_by = "admin";
    Tidemark__Task *stored = NULL;
    tm_err err;
    if (tm_dispatcher_submit(c->dispatcher, &t, NULL, &stored, &err) != TM_OK) {
        return tm_admin_catalog_error(call, &err);
    }
    return tm_admin_reply_task(call, stored, (Tidemark__TaskResponse *)out);
}

static int handle_restore(tm_rpc_call *call, const ProtobufCMessage *in, ProtobufCMessage *out,
                          void *arg)
{
    struct tm_coordinator *c = arg;
    const Tidemark__RestoreRequest *req = (const Tidemark__RestoreRequest *)in;
    if (req->target == NULL || req->target[0] == '\0' || req->spec == NULL) {
        return tm_rpc_call_error(call, TM_RPC_INVALID_ARGUMENT, "target and spec required");
    }
    if (req->spec->dir == NULL || req->spec->dir[0] != '/') {
        return tm_rpc_call_error(call, TM_RPC_INVALID_ARGUMENT,
                                 "the destination directory must be an absolute path");
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
    Tidemark__Task t = TIDEMARK__TASK__INIT;
    t.has_kind = 1;
    t.kind = TIDEMARK__TASK_KIND__RESTORE;
    t.target = req->target;
    t.restore = req->spec;
    t.requested_by = "admin";
    Tidemark__Task *stored = NULL;
    tm_err err;
    if (tm_dispatcher_submit(c->dispatcher, &t, to[0] ? to : NULL, &stored, &err) != TM_OK) {
        return tm_admin_catalog_error(call, &err);
    }
    return tm_admin_reply_task(call, stored, (Tidemark__TaskResponse *)out);
}

static int handle_get_task(tm_rpc_call *call, const ProtobufCMessage *in, ProtobufCMessage *out,
                           void *arg)
{
    struct tm_coordinator *c = arg;
    const Tidemark__TaskRef *req = (const Tidemark__TaskRef *)in;
    Tidemark__Task *t = NULL;
    tm_err err;
    if (req->id == NULL) {
        return tm_rpc_call_error(call, TM_RPC_INVALID_ARGUMENT, "task id required");
    }
    if (tm_catalog_task_get(c->catalog, req->id, &t, &err) != TM_OK) {
        return tm_admin_catalog_error(call, &err);
    }
    return tm_admin_reply_task(call, t, (Tidemark__TaskResponse *)out);
}

static int handle_cancel_task(tm_rpc_call *call, const ProtobufCMessage *in, ProtobufCMessage *out,
                              void *arg)
{
    struct tm_coordinator *c = arg;
    const Tidemark__TaskRef *req = (const Tidemark__TaskRef *)in;
    Tidemark__Task *t = NULL;
    tm_err err;
    if (req->id == NULL) {
        return tm_rpc_call_error(call, TM_RPC_INVALID_ARGUMENT, "task id required");
    }
    if (tm_dispatcher_cancel(c->dispatcher, req->id, &t, &err) != TM_OK) {
        return tm_admin_catalog_error(call, &err);
    }
    return tm_admin_reply_task(call, t, (Tidemark__TaskResponse *)out);
}

static int handle_list_tasks(tm_rpc_call *call, const ProtobufCMessage *in, ProtobufCMessage *out,
                             void *arg)
{
    struct tm_coordinator *c = arg;
    const Tidemark__ListTasksRequest *req = (const Tidemark__ListTasksRequest *)in;
    Tidemark__ListTasksResponse *resp = (Tidemark__ListTasksResponse *)out;
    Tidemark__Task **ts = NULL;
    size_t n = 0;
    tm_err err;
    if (tm_catalog_task_list(c->catalog, req->target, 0, req->has_limit ? req->limit : 100, &ts, &n,
                             &err) != TM_OK) {
        return tm_admin_catalog_error(call, &err);
    }
    resp->tasks = tm_arena_alloc(tm_rpc_call_arena(call), sizeof(*resp->tasks) * (n + 1));
    for (size_t i = 0; i < n && resp->tasks != NULL; i++) {
        resp->tasks[resp->n_tasks] = tm_admin_to_arena(call, &ts[i]->base);
        if (resp->tasks[resp->n_tasks] != NULL) {
            resp->n_tasks++;
        }
    }
    tm_catalog_tasks_free(ts, n);
    return TM_RPC_OK;
}

static int handle_list_backups(tm_rpc_call *call, const ProtobufCMessage *in, ProtobufCMessage *out,
                               void *arg)
{
    struct tm_coordinator *c = arg;
    const Tidemark__ListBackupsRequest *req = (const Tidemark__ListBackupsRequest *)in;
    Tidemark__ListBackupsResponse *resp = (Tidemark__ListBackupsResponse *)out;
    Tidemark__BackupInfo **bs = NULL;
    size_t n = 0;
    tm_err err;
    if (tm_catalog_backup_list(c->catalog, req->target, &bs, &n, &err) != TM_OK) {
        return tm_admin_catalog_error(call, &err);
    }
    resp->backups = tm_arena_alloc(tm_rpc_call_arena(call), sizeof(*resp->backups) * (n + 1));
    for (size_t i = 0; i < n && resp->backups != NULL; i++) {
        resp->backups[resp->n_backups] = tm_admin_to_arena(call, &bs[i]->base);
        if (resp->backups[resp->n_backups] != NULL) {
            resp->n_backups++;
        }
    }
    tm_catalog_backups_free(bs, n);
    return TM_RPC_OK;
}

static int handle_show_backup(tm_rpc_call *call, const ProtobufCMessage *in, ProtobufCMessage *out,
                              void *arg)
{
    struct tm_coordinator *c = arg;
    const Tidemark__BackupRef *req = (const Tidemark__BackupRef *)in;
    Tidemark__BackupResponse *resp = (Tidemark__BackupResponse *)out;
    Tidemark__BackupInfo *b = NULL;
    tm_err err;
    if (req->id == NULL) {
        return tm_rpc_call_error(call, TM_RPC_INVALID_ARGUMENT, "backup id required");
    }
    if (tm_catalog_backup_get(c->catalog, req->target, req->id, &b, &err) != TM_OK) {
        return tm_admin_catalog_error(call, &err);
    }
    resp->backup = tm_admin_to_arena(call, &b->base);
    tidemark__backup_info__free_unpacked(b, NULL);
    return TM_RPC_OK;
}

int tm_admin_tasks_register(struct tm_coordinator *c)
{
    static const struct {
        const char *name;
        tm_rpc_handler fn;
        unsigned flags;
    } calls[] = {
        {"RunBackup", handle_run_backup, TM_RPC_MUTATING},
        {"Restore", handle_restore, TM_RPC_MUTATING},
        {"GetTask", handle_get_task, 0},
        {"ListTasks", handle_list_tasks, 0},
        {"CancelTask", handle_cancel_task, TM_RPC_MUTATING},
        {"ListBackups", handle_list_backups, 0},
        {"ShowBackup", handle_show_backup, 0},
    };
    for (size_t i = 0; i < sizeof(calls) / sizeof(calls[0]); i++) {
        int rc = tm_rpc_server_register(c->rpc, &tidemark__admin__descriptor, calls[i].name,
                                        calls[i].fn, c, calls[i].flags);
        if (rc != TM_OK) {
            return rc;
        }
    }
    return TM_OK;
}
