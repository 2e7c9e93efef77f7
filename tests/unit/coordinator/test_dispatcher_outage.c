/*
 * test_dispatcher_outage.c - results that come late, twice, or from an
 * attempt that is no longer current, over a real catalog and the RPC
 * request path (tm_rpc_server_handle, reply cache included) with an
 * injected clock:
 *   - a result of an expired lease with no later attempt is recorded once,
 *     the task is not run again, and a note says how late it came;
 *   - progress of an expired lease takes the task back;
 *   - a stale attempt's result (a later attempt running on the same agent,
 *     or already finished) is refused with ABORTED and its backup is
 *     queued for deletion once, even when resent;
 *   - a resend of CompleteTask (same and new request id) decides nothing
 *     twice;
 *   - cancellation racing completion: a finished attempt wins over a
 *     cancel request; a task cancelled after its lease expired refuses the
 *     late result and deletes its backup.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "common/rpc.h"
#include "common/util.h"
#include "coordinator/catalog.h"
#include "coordinator/dispatcher.h"
#include "tidemark.pb-c.h"

#define LEASE 10000
#define BACKOFF 1000

typedef struct fixture {
    char dir[256];
    char path[300];
    tm_catalog *cat;
    tm_dispatcher *disp;
    tm_rpc_server *srv;
    int64_t now;
    int rid;
} fixture;

static int64_t fake_clock(void *arg)
{
    return ((fixture *)arg)->now;
}

static int auth(tm_rpc_call *call, const char *service, const Tidemark__Credential *cred, void *arg)
{
    (void)service;
    (void)arg;
    if (cred != NULL && cred->agent_id != NULL) {
        tm_rpc_call_set_principal(call, cred->agent_id);
        return TM_RPC_OK;
    }
    return tm_rpc_call_error(call, TM_RPC_UNAUTHENTICATED, "no credential");
}

static int h_next(tm_rpc_call *call, const ProtobufCMessage *in, ProtobufCMessage *out, void *arg)
{
    return tm_dispatcher_next(arg, call, (const Tidemark__NextTaskRequest *)in,
                              (Tidemark__NextTaskResponse *)out);
}

static int h_progress(tm_rpc_call *call, const ProtobufCMessage *in, ProtobufCMessage *out,
                      void *arg)
{
    return tm_dispatcher_progress(arg, call, (const Tidemark__ProgressReport *)in,
                                  (Tidemark__ProgressAck *)out);
}

static int h_complete(tm_rpc_call *call, const ProtobufCMessage *in, ProtobufCMessage *out,
                      void *arg)
{
    return tm_dispatcher_complete(arg, call, (const Tidemark__CompleteTaskRequest *)in,
                                  (Tidemark__CompleteTaskResponse *)out);
}

static void add_agent(fixture *f, const char *id, const char *target)
{
    tm_label labels[] = {{"env", "prod"}};
    tm_target_rec t = {.name = (char *)target, .kind = 1, .engine_version = ""};
    tm_agent_rec rec = {0};
    rec.id = (char *)id;
    rec.hostname = (char *)id;
    rec.version = "test";
    rec.secret_hash = "00";
    rec.enrollment = "t";
    rec.approved = 1;
    rec.state = TIDEMARK__AGENT_STATE__ONLINE;
    rec.registered_at = f->now / 1000;
    rec.last_seen_at = f->now / 1000;
    rec.labels = labels;
    rec.n_labels = 1;
    rec.targets = &t;
    rec.n_targets = 1;
    tm_err err;
    assert_int_equal(tm_catalog_agent_put(f->cat, &rec, &err), TM_OK);
}

static int setup(void **state)
{
    fixture *f = calloc(1, sizeof(*f));
    snprintf(f->dir, sizeof(f->dir), "/tmp/tm-test-outage-XXXXXX");
    assert_non_null(mkdtemp(f->dir));
    snprintf(f->path, sizeof(f->path), "%s/catalog.db", f->dir);
    /* The injected clock starts at the wall clock's now and then moves
     * only when a test moves it. */
    f->now = tm_now_ms();
    tm_err err;
    assert_int_equal(tm_catalog_open(&f->cat, f->path, &err), TM_OK);
    tm_dispatcher_opts o = {.lease_ms = LEASE,
                            .max_attempts = 3,
                            .retry_backoff_ms = BACKOFF,
                            .clock = fake_clock,
                            .clock_arg = f};
    assert_int_equal(tm_dispatcher_new(&f->disp, f->cat, &o, &err), TM_OK);
    tm_rpc_server_opts so = {.auth = auth, .contexts = 4};
    assert_int_equal(tm_rpc_server_new(&f->srv, &so, &err), TM_OK);
    const ProtobufCServiceDescriptor *svc = &tidemark__coordinator__descriptor;
    assert_int_equal(tm_rpc_server_register(f->srv, svc, "NextTask", h_next, f->disp, 0), TM_OK);
    assert_int_equal(tm_rpc_server_register(f->srv, svc, "ReportProgress", h_progress, f->disp, 0),
                     TM_OK);
    assert_int_equal(
        tm_rpc_server_register(f->srv, svc, "CompleteTask", h_complete, f->disp, TM_RPC_MUTATING),
        TM_OK);
    add_agent(f, "ag-1", "pg");
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    fixture *f = *state;
    tm_dispatcher_shutdown(f->disp);
    tm_rpc_server_free(f->srv);
    tm_dispatcher_free(f->disp);
    tm_catalog_free(f->cat);
    char cmd[400];
    snprintf(cmd, sizeof(cmd), "rm -rf '%s'", f->dir);
    assert_int_equal(system(cmd), 0);
    free(f);
    return 0;
}

/* One call through the server as agent ag-1; returns the reply. */
static Tidemark__Reply *rpc(fixture *f, const char *method, const char *rid,
                            const ProtobufCMessage *body)
{
    Tidemark__Envelope env = TIDEMARK__ENVELOPE__INIT;
    Tidemark__Credential cred = TIDEMARK__CREDENTIAL__INIT;
    uint8_t bodybuf[8192];
    char auto_rid[32];
    if (rid == NULL) {
        snprintf(auto_rid, sizeof(auto_rid), "auto-%d", ++f->rid);
        rid = auto_rid;
    }
    env.has_version = 1;
    env.version = TM_RPC_VERSION;
    env.method = (char *)method;
    env.request_id = (char *)rid;
    cred.agent_id = "ag-1";
    cred.agent_secret = "x";
    env.credential = &cred;
    env.has_body = 1;
    env.body.len = protobuf_c_message_pack(body, bodybuf);
    env.body.data = bodybuf;
    size_t len = tidemark__envelope__get_packed_size(&env);
    uint8_t *req = malloc(len);
    tidemark__envelope__pack(&env, req);
    void *out = NULL;
    size_t out_len = 0;
    assert_int_equal(tm_rpc_server_handle(f->srv, req, len, "test", &out, &out_len, NULL, NULL),
                     TM_OK);
    free(req);
    Tidemark__Reply *r = tidemark__reply__unpack(NULL, out_len, out);
    free(out);
    assert_non_null(r);
    return r;
}

static char *submit_backup(fixture *f)
{
    Tidemark__Task in = TIDEMARK__TASK__INIT;
    in.has_kind = in.has_backup_type = 1;
    in.kind = TIDEMARK__TASK_KIND__BACKUP;
    in.backup_type = TIDEMARK__BACKUP_TYPE__FULL;
    in.target = "pg";
    in.requested_by = "admin";
    Tidemark__Task *t = NULL;
    tm_err err;
    assert_int_equal(tm_dispatcher_submit(f->disp, &in, NULL, &t, &err), TM_OK);
    char *id = strdup(t->id);
    tidemark__task__free_unpacked(t, NULL);
    return id;
}

/* NextTask without waiting: the leased attempt, or 0 when nothing came. */
static uint32_t lease(fixture *f, const char *id)
{
    Tidemark__NextTaskRequest req = TIDEMARK__NEXT_TASK_REQUEST__INIT;
    Tidemark__Reply *r = rpc(f, "Coordinator.NextTask", NULL, &req.base);
    assert_int_equal(r->code, TM_RPC_OK);
    Tidemark__NextTaskResponse *resp =
        tidemark__next_task_response__unpack(NULL, r->body.len, r->body.data);
    assert_non_null(resp);
    uint32_t att = 0;
    if (resp->task != NULL) {
        assert_string_equal(resp->task->id, id);
        att = resp->task->attempt;
    }
    tidemark__next_task_response__free_unpacked(resp, NULL);
    tidemark__reply__free_unpacked(r, NULL);
    return att;
}

/* CompleteTask of attempt att naming backup bid; *state gets the answered
 * state on OK. Returns the reply (caller frees). */
static Tidemark__Reply *complete(fixture *f, const char *rid, const char *id, uint32_t att,
                                 const char *bid, int *state)
{
    Tidemark__CompleteTaskRequest req = TIDEMARK__COMPLETE_TASK_REQUEST__INIT;
    Tidemark__TaskResult res = TIDEMARK__TASK_RESULT__INIT;
    char *repos[] = {"local", "s3"};
    req.task_id = (char *)id;
    req.has_ok = req.has_attempt = 1;
    req.ok = 1;
    req.attempt = att;
    res.backup_id = (char *)bid;
    res.has_backup_type = 1;
    res.backup_type = TIDEMARK__BACKUP_TYPE__FULL;
    res.repositories = repos;
    res.n_repositories = 2;
    req.result = &res;
    Tidemark__Reply *r = rpc(f, "Coordinator.CompleteTask", rid, &req.base);
    if (r->code == TM_RPC_OK && state != NULL) {
        Tidemark__CompleteTaskResponse *resp =
            tidemark__complete_task_response__unpack(NULL, r->body.len, r->body.data);
        assert_non_null(resp);
        *state = resp->state;
        tidemark__complete_task_response__free_unpacked(resp, NULL);
    }
    return r;
}

/* CompleteTask that must be recorded: OK, SUCCEEDED. */
static void complete_ok(fixture *f, const char *rid, const char *id, uint32_t att, const char *bid)
{
    int st = -1;
    Tidemark__Reply *r = complete(f, rid, id, att, bid, &st);
    assert_int_equal(r->code, TM_RPC_OK);
    assert_int_equal(st, TIDEMARK__TASK_STATE__TASK_SUCCEEDED);
    tidemark__reply__free_unpacked(r, NULL);
}

/* CompleteTask that must be refused with code, the message naming why. */
static void complete_refused(fixture *f, const char *rid, const char *id, uint32_t att,
                             const char *bid, int code, const char *why)
{
    Tidemark__Reply *r = complete(f, rid, id, att, bid, NULL);
    assert_int_equal(r->code, code);
    if (why != NULL) {
        assert_non_null(strstr(r->message, why));
    }
    tidemark__reply__free_unpacked(r, NULL);
}

static int progress(fixture *f, const char *id, uint32_t att)
{
    Tidemark__ProgressReport req = TIDEMARK__PROGRESS_REPORT__INIT;
    req.task_id = (char *)id;
    req.has_attempt = 1;
    req.attempt = att;
    Tidemark__Reply *r = rpc(f, "Coordinator.ReportProgress", NULL, &req.base);
    int code = r->code;
    tidemark__reply__free_unpacked(r, NULL);
    return code;
}

static Tidemark__Task *get(fixture *f, const char *id)
{
    Tidemark__Task *t = NULL;
    tm_err err;
    assert_int_equal(tm_catalog_task_get(f->cat, id, &t, &err), TM_OK);
    return t;
}

/* Let the lease run out (the coordinator heard nothing) and tick. */
static void expire(fixture *f)
{
    f->now += LEASE + 5000;
    tm_dispatcher_tick(f->disp, f->now);
}

/* A backup task whose attempt 1 lease expired and attempt 2 is leased to
 * the same agent (a retry). Returns its id (free). */
static char *on_second_attempt(fixture *f)
{
    char *id = submit_backup(f);
    assert_int_equal(lease(f, id), 1);
    expire(f);
    f->now += 2 * BACKOFF;
    assert_int_equal(lease(f, id), 2);
    return id;
}

static size_t backups(fixture *f, const char *only_id)
{
    Tidemark__BackupInfo **b = NULL;
    size_t n = 0;
    tm_err err;
    assert_int_equal(tm_catalog_backup_list(f->cat, "pg", &b, &n, &err), TM_OK);
    if (only_id != NULL) {
        for (size_t i = 0; i < n; i++) {
            assert_string_equal(b[i]->id, only_id);
        }
    }
    tm_catalog_backups_free(b, n);
    return n;
}

/* EXPIRE tasks queued to delete backup bid (one drop each). */
static size_t cleanups(fixture *f, const char *bid)
{
    Tidemark__Task **t = NULL;
    size_t n = 0, hits = 0;
    tm_err err;
    assert_int_equal(tm_catalog_task_list(f->cat, "pg", 0, 0, &t, &n, &err), TM_OK);
    for (size_t i = 0; i < n; i++) {
        if (t[i]->kind == TIDEMARK__TASK_KIND__EXPIRE && t[i]->expire != NULL &&
            t[i]->expire->n_drop == 1 && strcmp(t[i]->expire->drop[0]->id, bid) == 0) {
            assert_string_equal(t[i]->requested_by, "attempt-cleanup");
            assert_string_equal(t[i]->agent_id, "ag-1");
            hits++;
        }
    }
    tm_catalog_tasks_free(t, n);
    return hits;
}

static int has_note(const Tidemark__Task *t, const char *needle)
{
    for (size_t i = 0; i < t->n_notes; i++) {
        if (strstr(t->notes[i], needle) != NULL) {
            return 1;
        }
    }
    return 0;
}

static void test_late_result_without_newer_attempt(void **state)
{
    fixture *f = *state;
    char *id = submit_backup(f);
    assert_int_equal(lease(f, id), 1);
    expire(f); /* the coordinator could not hear the agent for longer than the lease */
    Tidemark__Task *t = get(f, id);
    assert_int_equal(t->state, TIDEMARK__TASK_STATE__TASK_QUEUED);
    assert_int_equal(t->expired_attempt, 1);
    tidemark__task__free_unpacked(t, NULL);

    complete_ok(f, "c1", id, 1, "b-late");

    t = get(f, id);
    assert_int_equal(t->state, TIDEMARK__TASK_STATE__TASK_SUCCEEDED);
    assert_int_equal(t->attempt, 1);
    assert_true(has_note(t, "result of attempt 1 delivered 5 s late, recorded"));
    assert_null(t->error);
    tidemark__task__free_unpacked(t, NULL);
    assert_int_equal(backups(f, "b-late"), 1);

    /* Not run again: after the retry backoff nothing is leased. */
    f->now += 10 * BACKOFF;
    tm_dispatcher_tick(f->disp, f->now);
    assert_int_equal(lease(f, id), 0);
    assert_int_equal(cleanups(f, "b-late"), 0);
    free(id);
}

static void test_progress_takes_expired_lease_back(void **state)
{
    fixture *f = *state;
    char *id = submit_backup(f);
    assert_int_equal(lease(f, id), 1);
    expire(f);
    assert_int_equal(progress(f, id, 1), TM_RPC_OK);
    Tidemark__Task *t = get(f, id);
    assert_int_equal(t->state, TIDEMARK__TASK_STATE__TASK_RUNNING);
    assert_int_equal(t->attempt, 1);
    assert_true(t->lease_expires_at > f->now);
    assert_true(has_note(t, "taken back"));
    tidemark__task__free_unpacked(t, NULL);
    f->now += 10 * BACKOFF;
    tm_dispatcher_tick(f->disp, f->now);
    assert_int_equal(lease(f, id), 0); /* still attempt 1's: nothing to lease */
    complete_ok(f, NULL, id, 1, "b-1");
    assert_int_equal(backups(f, "b-1"), 1);
    free(id);
}

/* Attempt 2 runs on the same agent when attempt 1's result comes. */
static void test_stale_result_while_newer_attempt_runs(void **state)
{
    fixture *f = *state;
    char *id = on_second_attempt(f);
    /* Attempt 1's progress is no longer welcome. */
    assert_int_equal(progress(f, id, 1), TM_RPC_ABORTED);

    complete_refused(f, "c-old", id, 1, "b-old", TM_RPC_ABORTED,
                     "stale attempt 1, the task is on attempt 2");
    assert_int_equal(backups(f, NULL), 0);
    assert_int_equal(cleanups(f, "b-old"), 1);

    /* Resent with a new request id (an agent restart): refused, no
     * second cleanup. */
    complete_refused(f, "c-old-2", id, 1, "b-old", TM_RPC_ABORTED, NULL);
    assert_int_equal(cleanups(f, "b-old"), 1);

    complete_ok(f, "c-new", id, 2, "b-new");
    assert_int_equal(backups(f, "b-new"), 1);
    Tidemark__Task *t = get(f, id);
    assert_true(has_note(t, "result of attempt 1 (backup b-old) refused"));
    tidemark__task__free_unpacked(t, NULL);
    free(id);
}

/* Attempt 2 finished first; attempt 1's result comes after. */
static void test_stale_result_after_newer_attempt_finished(void **state)
{
    fixture *f = *state;
    char *id = on_second_attempt(f);
    complete_ok(f, NULL, id, 2, "b-2");
    complete_refused(f, NULL, id, 1, "b-1", TM_RPC_ABORTED,
                     "stale attempt 1, the task is on attempt 2");
    assert_int_equal(backups(f, "b-2"), 1);
    assert_int_equal(cleanups(f, "b-1"), 1);
    assert_int_equal(cleanups(f, "b-2"), 0);
    /* An attempt never leased is not a result at all. */
    complete_refused(f, NULL, id, 7, "b-7", TM_RPC_INVALID_ARGUMENT, NULL);
    free(id);
}

/* A result whose lease has run out before any sweep expired it (the
 * coordinator just came back): recorded, and said to be late, as when the
 * sweep came first. */
static void test_late_result_before_the_sweep(void **state)
{
    fixture *f = *state;
    char *id = submit_backup(f);
    assert_int_equal(lease(f, id), 1);
    f->now += LEASE + 5000; /* no tick: nothing swept */
    complete_ok(f, "c1", id, 1, "b-unswept");
    Tidemark__Task *t = get(f, id);
    assert_int_equal(t->state, TIDEMARK__TASK_STATE__TASK_SUCCEEDED);
    assert_int_equal(t->attempt, 1);
    assert_true(has_note(t, "result of attempt 1 delivered 5 s late, recorded"));
    tidemark__task__free_unpacked(t, NULL);
    free(id);
}

static void test_resend_of_complete(void **state)
{
    fixture *f = *state;
    char *id = submit_backup(f);
    assert_int_equal(lease(f, id), 1);
    complete_ok(f, "same", id, 1, "b-1");
    /* Same request id (nng's resend): the cached answer. */
    complete_ok(f, "same", id, 1, "b-1");
    /* New request id (the agent restarted and sent its kept result). */
    complete_ok(f, "other", id, 1, "b-1");
    assert_int_equal(backups(f, "b-1"), 1);
    assert_int_equal(cleanups(f, "b-1"), 0);
    /* And after the lease would have expired: nothing changes. */
    expire(f);
    Tidemark__Task *t = get(f, id);
    assert_int_equal(t->state, TIDEMARK__TASK_STATE__TASK_SUCCEEDED);
    assert_int_equal(t->n_notes, 0);
    tidemark__task__free_unpacked(t, NULL);
    free(id);
}

static void test_cancel_races_completion(void **state)
{
    fixture *f = *state;
    tm_err err;
    /* Cancel requested while the attempt runs, but it finished first: the
     * backup exists and is recorded (deleting it would lose a good one). */
    char *id = submit_backup(f);
    assert_int_equal(lease(f, id), 1);
    Tidemark__Task *t = NULL;
    assert_int_equal(tm_dispatcher_cancel(f->disp, id, &t, &err), TM_OK);
    tidemark__task__free_unpacked(t, NULL);
    complete_ok(f, NULL, id, 1, "b-done");
    t = get(f, id);
    assert_true(has_note(t, "cancel requested, but attempt 1 had already finished"));
    tidemark__task__free_unpacked(t, NULL);
    assert_int_equal(backups(f, "b-done"), 1);
    free(id);

    /* Lease expired, then the operator cancelled the requeued task: the
     * late result is refused and its backup deleted, not recorded. */
    id = submit_backup(f);
    assert_int_equal(lease(f, id), 1);
    expire(f);
    assert_int_equal(tm_dispatcher_cancel(f->disp, id, &t, &err), TM_OK);
    assert_int_equal(t->state, TIDEMARK__TASK_STATE__TASK_CANCELLED);
    tidemark__task__free_unpacked(t, NULL);
    complete_refused(f, NULL, id, 1, "b-cancelled", TM_RPC_ABORTED, "was cancelled");
    assert_int_equal(backups(f, "b-done"), 1);
    assert_int_equal(cleanups(f, "b-cancelled"), 1);
    t = get(f, id);
    assert_int_equal(t->state, TIDEMARK__TASK_STATE__TASK_CANCELLED);
    tidemark__task__free_unpacked(t, NULL);
    free(id);
}

/* The last attempt's lease expired (task FAILED), then its result came:
 * recorded, the task succeeds. */
static void test_late_result_after_last_attempt_failed(void **state)
{
    fixture *f = *state;
    char *id = submit_backup(f);
    for (uint32_t a = 1; a <= 3; a++) {
        f->now += 10 * BACKOFF;
        assert_int_equal(lease(f, id), a);
        expire(f);
    }
    Tidemark__Task *t = get(f, id);
    assert_int_equal(t->state, TIDEMARK__TASK_STATE__TASK_FAILED);
    tidemark__task__free_unpacked(t, NULL);
    complete_ok(f, NULL, id, 3, "b-3");
    assert_int_equal(backups(f, "b-3"), 1);
    free(id);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_late_result_without_newer_attempt, setup, teardown),
        cmocka_unit_test_setup_teardown(test_progress_takes_expired_lease_back, setup, teardown),
        cmocka_unit_test_setup_teardown(test_stale_result_while_newer_attempt_runs, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_stale_result_after_newer_attempt_finished, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_late_result_before_the_sweep, setup, teardown),
        cmocka_unit_test_setup_teardown(test_resend_of_complete, setup, teardown),
        cmocka_unit_test_setup_teardown(test_cancel_races_completion, setup, teardown),
        cmocka_unit_test_setup_teardown(test_late_result_after_last_attempt_failed, setup,
                                        teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
