/*
 * test_rpc_error_retry.c - the reply cache must not keep error replies.
 *
 * Issue #11 section 3: a CompleteTask answered UNAVAILABLE once (the catalog
 * was busy) and retried with the same request id got the cached
 * UNAVAILABLE until the entry aged out, so a finished backup could not be
 * reported. A retry after an error must reach the handler again; a retry
 * after a success must still get the cached success (the handler must not
 * run twice). The fix is in common/rpc_server.c (engineer "rpc"); this test
 * fails until it is merged.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/rpc.h"
#include "tidemark.pb-c.h"

static int calls;
static int fail_first;

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

/* CompleteTask stand-in: UNAVAILABLE on the first call when fail_first. */
static int h_complete(tm_rpc_call *call, const ProtobufCMessage *in, ProtobufCMessage *out,
                      void *arg)
{
    (void)in;
    (void)arg;
    Tidemark__CompleteTaskResponse *resp = (Tidemark__CompleteTaskResponse *)out;
    if (++calls == 1 && fail_first) {
        return tm_rpc_call_error(call, TM_RPC_UNAVAILABLE, "catalog: database is locked");
    }
    resp->has_state = 1;
    resp->state = TIDEMARK__TASK_STATE__TASK_SUCCEEDED;
    return TM_RPC_OK;
}

static int send_complete(tm_rpc_server *s, const char *rid)
{
    Tidemark__CompleteTaskRequest req = TIDEMARK__COMPLETE_TASK_REQUEST__INIT;
    req.task_id = "task-1";
    req.has_ok = req.has_attempt = 1;
    req.ok = 1;
    req.attempt = 1;
    Tidemark__Envelope env = TIDEMARK__ENVELOPE__INIT;
    Tidemark__Credential cred = TIDEMARK__CREDENTIAL__INIT;
    uint8_t body[256];
    env.has_version = 1;
    env.version = TM_RPC_VERSION;
    env.method = "Coordinator.CompleteTask";
    env.request_id = (char *)rid;
    cred.agent_id = "ag-1";
    env.credential = &cred;
    env.has_body = 1;
    env.body.len = tidemark__complete_task_request__pack(&req, body);
    env.body.data = body;
    size_t len = tidemark__envelope__get_packed_size(&env);
    uint8_t *buf = malloc(len);
    tidemark__envelope__pack(&env, buf);
    void *out = NULL;
    size_t out_len = 0;
    assert_int_equal(tm_rpc_server_handle(s, buf, len, "test", &out, &out_len, NULL, NULL), TM_OK);
    free(buf);
    Tidemark__Reply *r = tidemark__reply__unpack(NULL, out_len, out);
    free(out);
    assert_non_null(r);
    int code = r->code;
    tidemark__reply__free_unpacked(r, NULL);
    return code;
}

static tm_rpc_server *server(void)
{
    tm_rpc_server *s = NULL;
    tm_err err;
    tm_rpc_server_opts o = {.auth = auth, .contexts = 2};
    assert_int_equal(tm_rpc_server_new(&s, &o, &err), TM_OK);
    assert_int_equal(tm_rpc_server_register(s, &tidemark__coordinator__descriptor, "CompleteTask",
                                            h_complete, NULL, TM_RPC_MUTATING),
                     TM_OK);
    return s;
}

static void test_error_reply_not_cached(void **state)
{
    (void)state;
    calls = 0;
    fail_first = 1;
    tm_rpc_server *s = server();
    assert_int_equal(send_complete(s, "complete-task-1-1"), TM_RPC_UNAVAILABLE);
    /* The same request id again: the handler runs and succeeds. */
    assert_int_equal(send_complete(s, "complete-task-1-1"), TM_RPC_OK);
    assert_int_equal(calls, 2);
    tm_rpc_server_free(s);
}

static void test_success_reply_cached(void **state)
{
    (void)state;
    calls = 0;
    fail_first = 0;
    tm_rpc_server *s = server();
    assert_int_equal(send_complete(s, "complete-task-1-1"), TM_RPC_OK);
    assert_int_equal(send_complete(s, "complete-task-1-1"), TM_RPC_OK);
    assert_int_equal(calls, 1); /* a resend is answered from the cache */
    tm_rpc_server_free(s);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_error_reply_not_cached),
        cmocka_unit_test(test_success_reply_cached),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
