/*
 * logs.c - continuous log shipping as the coordinator sees it: agents report
 * the archived runs of log files per repository (ReportLog); operators ask
 * what can be restored (PitrWindow): from the oldest backup's consistent
 * point to the newest archived point reachable without a gap, with the gaps
 * shown, not hidden, and the RPO a disaster right now would cost.
 */
#include "coordinator/service_internal.h"
#include "coordinator/archiver.h"
#include "coordinator/logs.h"
#include "common/log.h"
#include "common/util.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int name_ok(const char *s, size_t max)
{
    return s != NULL && s[0] != '\0' && strlen(s) <= max && strchr(s, '/') == NULL;
}

/* TM_RPC_OK when the calling agent serves target; else the error reply. */
static int own_target(struct tm_coordinator *c, tm_rpc_call *call, const char *target)
{
    char *owner = NULL;
    int kind = 0;
    tm_err err;
    if (tm_catalog_target_owner(c->catalog, target, &owner, &kind, &err) != TM_OK) {
        return tm_rpc_call_error(call, TM_RPC_NOT_FOUND, "%s", err.msg);
    }
    int mine = strcmp(owner, tm_rpc_call_principal(call)) == 0;
    free(owner);
    return mine ? TM_RPC_OK
                : tm_rpc_call_error(call, TM_RPC_PERMISSION_DENIED,
                                    "target %s is served by another agent", target);
}

static int handle_report_log(tm_rpc_call *call, const ProtobufCMessage *in, ProtobufCMessage *out,
                             void *arg)
{
    struct tm_coordinator *c = arg;
    const Tidemark__ReportLogRequest *req = (const Tidemark__ReportLogRequest *)in;
    (void)out;
    if (!name_ok(req->target, 64) || !name_ok(req->repository, 64) || req->n_ranges > 100000) {
        return tm_rpc_call_error(call, TM_RPC_INVALID_ARGUMENT,
                                 "target and repository names required; at most 100000 ranges");
    }
    int rc = own_target(c, call, req->target);
    if (rc != TM_RPC_OK) {
        return rc;
    }
    tm_err err;
    for (size_t i = 0; i < req->n_ranges; i++) {
        const Tidemark__LogRange *r = req->ranges[i];
        if (!name_ok(r->first, 128) || !name_ok(r->last, 128) || strcmp(r->first, r->last) > 0) {
            return tm_rpc_call_error(call, TM_RPC_INVALID_ARGUMENT, "range %zu is malformed", i);
        }
    }
    if (tm_catalog_log_replace(c->catalog, req->target, req->repository, req->ranges, req->n_ranges,
                               req->has_queue_depth ? req->queue_depth : 0, tm_now_s(),
                               &err) != TM_OK) {
        return tm_rpc_call_error(call, TM_RPC_UNAVAILABLE, "catalog: %s", err.msg);
    }
    const Tidemark__ArchiverStatus *a = req->archiver;
    if (a != NULL) {
        tm_archiver_status st = {
            .archived_count = a->archived_count,
            .failed_count = a->failed_count,
            .last_archived_ms = a->last_archived_ms,
            .last_failed_ms = a->last_failed_ms,
            .reported_at = tm_now_s(),
        };
        snprintf(st.last_archived_log, sizeof(st.last_archived_log), "%s",
                 a->last_archived_log ? a->last_archived_log : "");
        snprintf(st.last_failed_log, sizeof(st.last_failed_log), "%s",
                 a->last_failed_log ? a->last_failed_log : "");
        snprintf(st.error, sizeof(st.error), "%s", a->error ? a->error : "");
        snprintf(st.snapshot_only, sizeof(st.snapshot_only), "%s",
                 a->snapshot_only ? a->snapshot_only : "");
        snprintf(st.last_failure, sizeof(st.last_failure), "%s",
                 a->last_failure ? a->last_failure : "");
        st.chain_resets = a->chain_resets;
        st.last_chain_reset_ms = a->last_chain_reset_ms;
        snprintf(st.chain_reset, sizeof(st.chain_reset), "%s",
                 a->chain_reset ? a->chain_reset : "");
        snprintf(st.chain_reset_from, sizeof(st.chain_reset_from), "%s",
                 a->chain_reset_from ? a->chain_reset_from : "");
        tm_archiver_put(c->archiver, req->target, &st, 0);
    }
    return TM_RPC_OK;
}

/* ReportProviderWindow: the provider's own window of a target this agent
 * serves, kept in memory beside the log shipping status. */
static int handle_report_provider(tm_rpc_call *call, const ProtobufCMessage *in,
                                  ProtobufCMessage *out, void *arg)
{
    struct tm_coordinator *c = arg;
    const Tidemark__ProviderWindowReport *req = (const Tidemark__ProviderWindowReport *)in;
    (void)out;
    if (!name_ok(req->target, 64) || (req->source != NULL && strlen(req->source) > 4096) ||
        (req->error != NULL && strlen(req->error) > 4096)) {
        return tm_rpc_call_error(call, TM_RPC_INVALID_ARGUMENT,
                                 "target name required; source and error at most 4096 bytes");
    }
    int rc = own_target(c, call, req->target);
    if (rc != TM_RPC_OK) {
        return rc;
    }
    tm_provider_status pw = {
        .start = req->has_start ? req->start : 0,
        .end = req->has_end ? req->end : 0,
        .reported_at = tm_now_s(),
    };
    snprintf(pw.source, sizeof(pw.source), "%s", req->source ? req->source : "");
    snprintf(pw.error, sizeof(pw.error), "%s", req->error ? req->error : "");
    if (tm_archiver_put_window(c->archiver, req->target, &pw) != TM_OK) {
        return tm_rpc_call_error(call, TM_RPC_RESOURCE_EXHAUSTED, "out of memory");
    }
    return TM_RPC_OK;
}

/* The log object where backup b ends, named like LogRange.first/last: the
 * engine reports it (stop_log). Backups recorded before stop_log existed
 * came from the first engine only, whose positions read "HI/LO" and whose
 * log objects are 16 MiB files named chain, HI, LO >> 24 in hex: derived
 * here so those catalogs keep their window until retention drops them. */
static void stop_log_of(const Tidemark__BackupInfo *b, char *out, size_t cap)
{
    unsigned hi = 0, lo = 0;
    out[0] = '\0';
    if (b->stop_log != NULL && b->stop_log[0] != '\0') {
        snprintf(out, cap, "%s", b->stop_log);
    } else if (b->stop_position != NULL && sscanf(b->stop_position, "%X/%X", &hi, &lo) == 2) {
        snprintf(out, cap, "%08X%08X%08X", b->chain ? b->chain : 1, hi, lo >> 24);
    }
}

int tm_logs_span(Tidemark__BackupInfo *const *bs, size_t nb, Tidemark__LogRange *const *rs,
                 size_t nr, int64_t *start, int64_t *end, char *seg, size_t seg_cap)
{
    *start = *end = 0;
    seg[0] = '\0';
    if (nb == 0) {
        return 0;
    }
    const Tidemark__BackupInfo *newest = bs[nb - 1];
    *start = bs[0]->finished_at;
    *end = newest->finished_at;
    stop_log_of(newest, seg, seg_cap);
    int covered = 0;
    for (size_t i = 0; i < nr; i++) {
        if (seg[0] != '\0' && strcmp(rs[i]->first, seg) <= 0 && strcmp(seg, rs[i]->last) <= 0) {
            covered = 1;
            if (rs[i]->last_time > *end) {
                *end = rs[i]->last_time;
            }
        }
    }
    return covered;
}

int tm_logs_window(struct tm_coordinator *c, const char *target, int64_t *start, int64_t *end,
                   uint32_t *queue_depth, tm_err *err)
{
    Tidemark__BackupInfo **bs = NULL;
    Tidemark__LogRange **rs = NULL;
    size_t nb = 0, nr = 0;
    int rc = tm_catalog_backup_list(c->catalog, target, &bs, &nb, err);
    if (rc == TM_OK) {
        rc = tm_catalog_log_list(c->catalog, target, &rs, &nr, err);
    }
    if (rc == TM_OK) {
        char seg[160];
        tm_logs_span(bs, nb, rs, nr, start, end, seg, sizeof(seg));
        *queue_depth = 0;
        rc = tm_catalog_log_queue(c->catalog, target, queue_depth, err);
    }
    tm_catalog_backups_free(bs, nb);
    tm_catalog_log_free(rs, nr);
    return rc;
}

static int handle_pitr_window(tm_rpc_call *call, const ProtobufCMessage *in, ProtobufCMessage *out,
                              void *arg)
{
    struct tm_coordinator *c = arg;
    const Tidemark__PitrWindowRequest *req = (const Tidemark__PitrWindowRequest *)in;
    Tidemark__PitrWindowResponse *resp = (Tidemark__PitrWindowResponse *)out;
    tm_arena *a = tm_rpc_call_arena(call);
    if (req->target == NULL || req->target[0] == '\0') {
        return tm_rpc_call_error(call, TM_RPC_INVALID_ARGUMENT, "target required");
    }
    Tidemark__BackupInfo **bs = NULL;
    Tidemark__LogRange **rs = NULL;
    size_t nb = 0, nr = 0;
    tm_err err;
    if (tm_catalog_backup_list(c->catalog, req->target, &bs, &nb, &err) != TM_OK ||
        tm_catalog_log_list(c->catalog, req->target, &rs, &nr, &err) != TM_OK) {
        tm_catalog_backups_free(bs, nb);
        return tm_rpc_call_error(call, TM_RPC_UNAVAILABLE, "catalog: %s", err.msg);
    }
    resp->target = tm_arena_strdup(a, req->target);
    resp->has_start = resp->has_end = resp->has_rpo_seconds = resp->has_queue_depth = 1;
    uint32_t depth = 0;
    tm_catalog_log_queue(c->catalog, req->target, &depth, &err);
    resp->queue_depth = depth;
    resp->ranges = tm_arena_alloc(a, sizeof(*resp->ranges) * (nr + 1));
    resp->gaps = tm_arena_alloc(a, sizeof(char *) * (nr + 2));
    if (resp->ranges == NULL || resp->gaps == NULL) {
        tm_catalog_backups_free(bs, nb);
        tm_catalog_log_free(rs, nr);
        return tm_rpc_call_error(call, TM_RPC_RESOURCE_EXHAUSTED, "out of memory");
    }
    for (size_t i = 0; i < nr; i++) {
        Tidemark__LogRange *r = tm_arena_alloc(a, sizeof(*r));
        tidemark__log_range__init(r);
        *r = *rs[i];
        r->target = tm_arena_strdup(a, rs[i]->target);
        r->repository = tm_arena_strdup(a, rs[i]->repository);
        r->first = tm_arena_strdup(a, rs[i]->first);
        r->last = tm_arena_strdup(a, rs[i]->last);
        resp->ranges[resp->n_ranges++] = r;
        /* Two runs on one chain in one repository: a hole between them. */
        if (i > 0 && strcmp(rs[i - 1]->repository, rs[i]->repository) == 0 &&
            rs[i - 1]->timeline == rs[i]->timeline) {
            resp->gaps[resp->n_gaps++] =
                tm_arena_printf(a, "%s: chain %u: nothing between %s and %s", rs[i]->repository,
                                rs[i]->timeline, rs[i - 1]->last, rs[i]->first);
        }
    }
    if (nb > 0) {
        resp->oldest_backup = tm_arena_strdup(a, bs[0]->id);
        resp->newest_backup = tm_arena_strdup(a, bs[nb - 1]->id);
        char seg[160];
        int covered = tm_logs_span(bs, nb, rs, nr, &resp->start, &resp->end, seg, sizeof(seg));
        if (!covered && nr > 0 && seg[0] != '\0') {
            resp->gaps[resp->n_gaps++] = tm_arena_printf(
                a, "no archived log contains %s, where backup %s ends: the window stops there", seg,
                bs[nb - 1]->id);
        }
    } else if (nr > 0) {
        resp->gaps[resp->n_gaps++] =
            tm_arena_strdup(a, "log is archived but there is no backup to start from");
    }
    resp->rpo_seconds = resp->end > 0 ? tm_now_s() - resp->end : 0;
    tm_catalog_backups_free(bs, nb);
    tm_catalog_log_free(rs, nr);
    return TM_RPC_OK;
}

int tm_logs_register(struct tm_coordinator *c)
{
    int rc = tm_rpc_server_register(c->rpc, &tidemark__coordinator__descriptor, "ReportLog",
                                    handle_report_log, c, 0);
    if (rc == TM_OK) {
        rc = tm_rpc_server_register(c->rpc, &tidemark__coordinator__descriptor,
                                    "ReportProviderWindow", handle_report_provider, c, 0);
    }
    if (rc == TM_OK) {
        rc = tm_rpc_server_register(c->rpc, &tidemark__admin__descriptor, "PitrWindow",
                                    handle_pitr_window, c, 0);
    }
    return rc;
}
