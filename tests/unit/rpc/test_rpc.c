/*
 * test_rpc.c - envelope decode, dispatch, status mapping, authentication,
 * idempotency and hostile bytes, through tm_rpc_server_handle() (the same
 * path the sockets use), then a real round trip over ipc:// including a
 * parked call that must not block other callers.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <pthread.h>
#include <stdio.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "common/rpc.h"
#include "common/util.h"
#include "tidemark.pb-c.h"

static int hb_calls;
static int approve_calls;
static tm_rpc_call *parked;
static pthread_mutex_t parked_mu = PTHREAD_MUTEX_INITIALIZER;

static int auth(tm_rpc_call *call, const char *service, const Tidemark__Credential *cred, void *arg)
{
    (void)arg;
    if (strcmp(service, "Admin") == 0) {
        if (cred && cred->admin_token && strcmp(cred->admin_token, "admin-secret") == 0) {
            tm_rpc_call_set_principal(call, "admin");
            return TM_RPC_OK;
        }
        return tm_rpc_call_error(call, TM_RPC_UNAUTHENTICATED, "bad admin token");
    }
    if (cred && cred->agent_id && cred->agent_secret && strcmp(cred->agent_secret, "s3cret") == 0) {
        tm_rpc_call_set_principal(call, cred->agent_id);
        return TM_RPC_OK;
    }
    return tm_rpc_call_error(call, TM_RPC_UNAUTHENTICATED, "bad agent credential");
}

static int h_heartbeat(tm_rpc_call *call, const ProtobufCMessage *in, ProtobufCMessage *out,
                       void *arg)
{
    (void)arg;
    const Tidemark__HeartbeatRequest *req = (const Tidemark__HeartbeatRequest *)in;
    Tidemark__HeartbeatResponse *resp = (Tidemark__HeartbeatResponse *)out;
    hb_calls++;
    if (req->has_seq && req->seq == 999) {
        /* Long-poll stand-in: park until the test completes it. */
        pthread_mutex_lock(&parked_mu);
        parked = call;
        pthread_mutex_unlock(&parked_mu);
        return TM_RPC_PENDING;
    }
    if (req->has_seq && req->seq == 13) {
        return tm_rpc_call_error(call, TM_RPC_FAILED_PRECONDITION, "unlucky %s",
                                 tm_rpc_call_principal(call));
    }
    resp->has_heartbeat_interval_ms = 1;
    resp->heartbeat_interval_ms = (uint32_t)req->seq;
    return TM_RPC_OK;
}

static int h_approve(tm_rpc_call *call, const ProtobufCMessage *in, ProtobufCMessage *out,
                     void *arg)
{
    (void)arg;
    (void)in;
    Tidemark__AgentResponse *resp = (Tidemark__AgentResponse *)out;
    Tidemark__AgentInfo *info = tm_arena_alloc(tm_rpc_call_arena(call), sizeof(*info));
    tidemark__agent_info__init(info);
    info->id = tm_arena_printf(tm_rpc_call_arena(call), "approved-%d", ++approve_calls);
    resp->agent = info;
    return TM_RPC_OK;
}

static int complete_calls;
static int register_calls;

/* CompleteTask stand-in: the catalog is down on the first call only. */
static int h_complete(tm_rpc_call *call, const ProtobufCMessage *in, ProtobufCMessage *out,
                      void *arg)
{
    (void)arg;
    (void)in;
    (void)out;
    if (++complete_calls == 1) {
        return tm_rpc_call_error(call, TM_RPC_UNAVAILABLE, "catalog unavailable; retry");
    }
    return TM_RPC_OK;
}

/* RegisterAgent stand-in: a new identity for the right enrollment token. */
static int h_register(tm_rpc_call *call, const ProtobufCMessage *in, ProtobufCMessage *out,
                      void *arg)
{
    (void)arg;
    const Tidemark__RegisterRequest *req = (const Tidemark__RegisterRequest *)in;
    Tidemark__RegisterResponse *resp = (Tidemark__RegisterResponse *)out;
    register_calls++;
    if (req->enrollment_token == NULL || strcmp(req->enrollment_token, "good-token") != 0) {
        return tm_rpc_call_error(call, TM_RPC_UNAUTHENTICATED, "invalid enrollment token");
    }
    resp->agent_id = tm_arena_printf(tm_rpc_call_arena(call), "agt-%d", register_calls);
    resp->agent_secret = tm_arena_printf(tm_rpc_call_arena(call), "secret-%d", register_calls);
    return TM_RPC_OK;
}

static tm_rpc_server *new_server(const char *url)
{
    tm_rpc_server *s = NULL;
    tm_err err;
    tm_rpc_server_opts o = {
        .url = url, .auth = auth, .max_message_bytes = 64 * 1024, .contexts = 8};
    assert_int_equal(tm_rpc_server_new(&s, &o, &err), TM_OK);
    assert_int_equal(tm_rpc_server_register(s, &tidemark__coordinator__descriptor, "Heartbeat",
                                            h_heartbeat, NULL, 0),
                     TM_OK);
    assert_int_equal(tm_rpc_server_register(s, &tidemark__admin__descriptor, "ApproveAgent",
                                            h_approve, NULL, TM_RPC_MUTATING),
                     TM_OK);
    /* Flags as the coordinator registers them. */
    assert_int_equal(tm_rpc_server_register(s, &tidemark__coordinator__descriptor, "CompleteTask",
                                            h_complete, NULL, TM_RPC_MUTATING),
                     TM_OK);
    assert_int_equal(tm_rpc_server_register(s, &tidemark__coordinator__descriptor, "RegisterAgent",
                                            h_register, NULL, TM_RPC_NOAUTH | TM_RPC_MUTATING),
                     TM_OK);
    /* Unknown method names and duplicates are refused at registration. */
    assert_int_equal(
        tm_rpc_server_register(s, &tidemark__admin__descriptor, "NoSuch", h_approve, NULL, 0),
        TM_EINVAL);
    assert_int_equal(
        tm_rpc_server_register(s, &tidemark__admin__descriptor, "ApproveAgent", h_approve, NULL, 0),
        TM_EEXIST);
    return s;
}

/* Pack an envelope; returns malloc'd bytes. */
static uint8_t *envelope(uint32_t version, const char *method, const char *rid,
                         const char *agent_id, const char *secret, const char *admin,
                         const ProtobufCMessage *body, size_t *len)
{
    Tidemark__Envelope env = TIDEMARK__ENVELOPE__INIT;
    Tidemark__Credential cred = TIDEMARK__CREDENTIAL__INIT;
    uint8_t bodybuf[4096];
    env.has_version = 1;
    env.version = version;
    env.method = (char *)method;
    env.request_id = (char *)rid;
    if (agent_id || admin) {
        cred.agent_id = (char *)agent_id;
        cred.agent_secret = (char *)secret;
        cred.admin_token = (char *)admin;
        env.credential = &cred;
    }
    if (body) {
        env.has_body = 1;
        env.body.len = protobuf_c_message_pack(body, bodybuf);
        env.body.data = bodybuf;
    }
    *len = tidemark__envelope__get_packed_size(&env);
    uint8_t *out = malloc(*len + 1);
    tidemark__envelope__pack(&env, out);
    return out;
}

static Tidemark__Reply *call_bytes(tm_rpc_server *s, const uint8_t *req, size_t len)
{
    void *out = NULL;
    size_t out_len = 0;
    assert_int_equal(tm_rpc_server_handle(s, req, len, "test", &out, &out_len, NULL, NULL), TM_OK);
    Tidemark__Reply *r = tidemark__reply__unpack(NULL, out_len, out);
    free(out);
    assert_non_null(r);
    return r;
}

static Tidemark__Reply *call(tm_rpc_server *s, uint32_t version, const char *method,
                             const char *rid, const char *agent_id, const char *secret,
                             const char *admin, const ProtobufCMessage *body)
{
    size_t len;
    uint8_t *req = envelope(version, method, rid, agent_id, secret, admin, body, &len);
    Tidemark__Reply *r = call_bytes(s, req, len);
    free(req);
    return r;
}

static void test_status_names(void **state)
{
    (void)state;
    assert_string_equal(tm_rpc_status_name(TM_RPC_OK), "OK");
    assert_string_equal(tm_rpc_status_name(TM_RPC_UNAUTHENTICATED), "UNAUTHENTICATED");
    assert_string_equal(tm_rpc_status_name(99), "UNKNOWN");
    assert_string_equal(tm_rpc_status_name(-1), "UNKNOWN");
    /* Our names are the proto's names: check against the generated enum. */
    for (int i = 0; i <= TM_RPC_STATUS_MAX; i++) {
        const ProtobufCEnumValue *v =
            protobuf_c_enum_descriptor_get_value(&tidemark__status_code__descriptor, i);
        assert_non_null(v);
        assert_string_equal(tm_rpc_status_name(i), v->name);
    }
    assert_int_equal(tm_rpc_status_to_err(TM_RPC_NOT_FOUND), TM_ENOENT);
    assert_int_equal(tm_rpc_status_to_err(TM_RPC_UNAUTHENTICATED), TM_EAUTH);
    assert_int_equal(tm_rpc_status_to_err(TM_RPC_UNAVAILABLE), TM_EUNAVAIL);
    assert_int_equal(tm_rpc_status_to_err(TM_RPC_OK), TM_OK);
}

static void test_dispatch_ok_and_error(void **state)
{
    (void)state;
    tm_rpc_server *s = new_server(NULL);
    Tidemark__HeartbeatRequest hb = TIDEMARK__HEARTBEAT_REQUEST__INIT;
    hb.has_seq = 1;
    hb.seq = 4242;
    Tidemark__Reply *r =
        call(s, 1, "Coordinator.Heartbeat", "r1", "agt-1", "s3cret", NULL, &hb.base);
    assert_int_equal(r->code, TM_RPC_OK);
    assert_string_equal(r->request_id, "r1");
    Tidemark__HeartbeatResponse *resp =
        tidemark__heartbeat_response__unpack(NULL, r->body.len, r->body.data);
    assert_non_null(resp);
    assert_int_equal(resp->heartbeat_interval_ms, 4242);
    tidemark__heartbeat_response__free_unpacked(resp, NULL);
    tidemark__reply__free_unpacked(r, NULL);

    hb.seq = 13;
    r = call(s, 1, "Coordinator.Heartbeat", "r2", "agt-7", "s3cret", NULL, &hb.base);
    assert_int_equal(r->code, TM_RPC_FAILED_PRECONDITION);
    assert_string_equal(r->message, "unlucky agt-7"); /* handler sees the authenticated id */
    assert_false(r->has_body);
    tidemark__reply__free_unpacked(r, NULL);
    tm_rpc_server_free(s);
}

static void test_auth(void **state)
{
    (void)state;
    tm_rpc_server *s = new_server(NULL);
    Tidemark__HeartbeatRequest hb = TIDEMARK__HEARTBEAT_REQUEST__INIT;
    int before = hb_calls;
    Tidemark__Reply *r =
        call(s, 1, "Coordinator.Heartbeat", NULL, "agt-1", "wrong", NULL, &hb.base);
    assert_int_equal(r->code, TM_RPC_UNAUTHENTICATED);
    tidemark__reply__free_unpacked(r, NULL);
    r = call(s, 1, "Coordinator.Heartbeat", NULL, NULL, NULL, NULL, &hb.base);
    assert_int_equal(r->code, TM_RPC_UNAUTHENTICATED);
    tidemark__reply__free_unpacked(r, NULL);
    /* An agent credential is not an admin credential. */
    Tidemark__AgentRef ref = TIDEMARK__AGENT_REF__INIT;
    r = call(s, 1, "Admin.ApproveAgent", "x", "agt-1", "s3cret", NULL, &ref.base);
    assert_int_equal(r->code, TM_RPC_UNAUTHENTICATED);
    tidemark__reply__free_unpacked(r, NULL);
    assert_int_equal(hb_calls, before); /* no handler ran */
    tm_rpc_server_free(s);
}

static void test_idempotent_replay(void **state)
{
    (void)state;
    tm_rpc_server *s = new_server(NULL);
    Tidemark__AgentRef ref = TIDEMARK__AGENT_REF__INIT;
    approve_calls = 0;
    Tidemark__Reply *a =
        call(s, 1, "Admin.ApproveAgent", "same-id", NULL, NULL, "admin-secret", &ref.base);
    Tidemark__Reply *b =
        call(s, 1, "Admin.ApproveAgent", "same-id", NULL, NULL, "admin-secret", &ref.base);
    assert_int_equal(approve_calls, 1); /* the resend was answered from the cache */
    assert_int_equal(a->body.len, b->body.len);
    assert_memory_equal(a->body.data, b->body.data, a->body.len);
    Tidemark__Reply *c =
        call(s, 1, "Admin.ApproveAgent", "other-id", NULL, NULL, "admin-secret", &ref.base);
    assert_int_equal(approve_calls, 2);
    /* The cache is consulted only after authentication. */
    Tidemark__Reply *d = call(s, 1, "Admin.ApproveAgent", "same-id", NULL, NULL, "bad", &ref.base);
    assert_int_equal(d->code, TM_RPC_UNAUTHENTICATED);
    tidemark__reply__free_unpacked(a, NULL);
    tidemark__reply__free_unpacked(b, NULL);
    tidemark__reply__free_unpacked(c, NULL);
    tidemark__reply__free_unpacked(d, NULL);
    tm_rpc_server_free(s);
}

/* A transient error is not the answer to the request: the retry with the
 * same request id runs again (issue 11, section 3). */
static void test_cache_keeps_only_success(void **state)
{
    (void)state;
    tm_rpc_server *s = new_server(NULL);
    Tidemark__CompleteTaskRequest req = TIDEMARK__COMPLETE_TASK_REQUEST__INIT;
    req.task_id = "tsk-1";
    complete_calls = 0;
    Tidemark__Reply *r =
        call(s, 1, "Coordinator.CompleteTask", "done-1", "agt-1", "s3cret", NULL, &req.base);
    assert_int_equal(r->code, TM_RPC_UNAVAILABLE);
    tidemark__reply__free_unpacked(r, NULL);
    r = call(s, 1, "Coordinator.CompleteTask", "done-1", "agt-1", "s3cret", NULL, &req.base);
    assert_int_equal(r->code, TM_RPC_OK); /* ran again, not the cached UNAVAILABLE */
    assert_int_equal(complete_calls, 2);
    tidemark__reply__free_unpacked(r, NULL);
    /* The success is final: a third resend comes from the cache. */
    r = call(s, 1, "Coordinator.CompleteTask", "done-1", "agt-1", "s3cret", NULL, &req.base);
    assert_int_equal(r->code, TM_RPC_OK);
    assert_int_equal(complete_calls, 2);
    tidemark__reply__free_unpacked(r, NULL);
    tm_rpc_server_free(s);
}

/* A registration reply holds a new secret: repeating its request id with a
 * wrong token must not hand it out (issue 12, section 2). */
static void test_register_never_cached(void **state)
{
    (void)state;
    tm_rpc_server *s = new_server(NULL);
    Tidemark__RegisterRequest req = TIDEMARK__REGISTER_REQUEST__INIT;
    req.hostname = "db1";
    req.enrollment_token = "good-token";
    register_calls = 0;
    Tidemark__Reply *r =
        call(s, 1, "Coordinator.RegisterAgent", "reg-1", NULL, NULL, NULL, &req.base);
    assert_int_equal(r->code, TM_RPC_OK);
    Tidemark__RegisterResponse *rr =
        tidemark__register_response__unpack(NULL, r->body.len, r->body.data);
    assert_non_null(rr);
    assert_string_equal(rr->agent_secret, "secret-1");
    tidemark__register_response__free_unpacked(rr, NULL);
    tidemark__reply__free_unpacked(r, NULL);

    req.enrollment_token = "wrong-token";
    r = call(s, 1, "Coordinator.RegisterAgent", "reg-1", NULL, NULL, NULL, &req.base);
    assert_int_equal(r->code, TM_RPC_UNAUTHENTICATED);
    assert_false(r->has_body && r->body.len > 0);
    assert_null(strstr(r->message ? r->message : "", "secret"));
    assert_int_equal(register_calls, 2); /* the token was checked */
    tidemark__reply__free_unpacked(r, NULL);
    tm_rpc_server_free(s);
}

/* Peak RSS growth (KiB) of one call of `len` bytes: a RegisterAgent whose
 * body is nothing but empty labels (2 bytes each on the wire), run in a
 * child so the peak is this call's alone. Returns the reply code. */
static int hostile_register(size_t len, long *grew_kib, char *msg, size_t msg_cap)
{
    int pfd[2];
    assert_int_equal(pipe(pfd), 0);
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        struct {
            int code;
            long grew;
            char msg[200];
        } res = {0};
        tm_rpc_server *s = NULL;
        tm_err err;
        tm_rpc_server_opts o = {.auth = auth}; /* defaults: 4 MiB messages */
        size_t body_len = len - 64;
        uint8_t *body = malloc(body_len);
        if (body == NULL || tm_rpc_server_new(&s, &o, &err) != TM_OK ||
            tm_rpc_server_register(s, &tidemark__coordinator__descriptor, "RegisterAgent",
                                   h_register, NULL, TM_RPC_NOAUTH) != TM_OK) {
            _exit(3);
        }
        for (size_t i = 0; i + 1 < body_len; i += 2) {
            body[i] = 0x22; /* field 4 (labels), length-delimited */
            body[i + 1] = 0x00;
        }
        Tidemark__Envelope env = TIDEMARK__ENVELOPE__INIT;
        env.has_version = 1;
        env.version = 1;
        env.method = "Coordinator.RegisterAgent";
        env.has_body = 1;
        env.body.data = body;
        env.body.len = body_len & ~(size_t)1;
        size_t n = tidemark__envelope__get_packed_size(&env);
        uint8_t *buf = malloc(n);
        if (buf == NULL) {
            _exit(3);
        }
        tidemark__envelope__pack(&env, buf);
        struct rusage before, after;
        getrusage(RUSAGE_SELF, &before);
        void *out = NULL;
        size_t out_len = 0;
        tm_rpc_server_handle(s, buf, n, "hostile", &out, &out_len, NULL, NULL);
        getrusage(RUSAGE_SELF, &after);
        Tidemark__Reply *r = tidemark__reply__unpack(NULL, out_len, out);
        res.code = r != NULL ? (int)r->code : -1;
        snprintf(res.msg, sizeof(res.msg), "%s", r != NULL && r->message ? r->message : "");
        res.grew = after.ru_maxrss - before.ru_maxrss;
        if (write(pfd[1], &res, sizeof(res)) != (ssize_t)sizeof(res)) {
            _exit(4);
        }
        _exit(0);
    }
    close(pfd[1]);
    struct {
        int code;
        long grew;
        char msg[200];
    } res = {0};
    assert_int_equal(read(pfd[0], &res, sizeof(res)), (ssize_t)sizeof(res));
    close(pfd[0]);
    int st = 0;
    waitpid(pid, &st, 0);
    assert_true(WIFEXITED(st) && WEXITSTATUS(st) == 0);
    *grew_kib = res.grew;
    snprintf(msg, msg_cap, "%s", res.msg);
    return res.code;
}

/* Unauthenticated calls are cheap to refuse (issue 12, section 2): a 4 MiB
 * RegisterAgent of empty submessages once decoded into ~130 MiB. */
static void test_hostile_register_is_cheap(void **state)
{
    (void)state;
    long grew = 0;
    char msg[200];
    int code = hostile_register(4u << 20, &grew, msg, sizeof(msg));
    printf("4 MiB hostile RegisterAgent: %s \"%s\", peak RSS +%ld KiB\n", tm_rpc_status_name(code),
           msg, grew);
    assert_int_equal(code, TM_RPC_RESOURCE_EXHAUSTED);
    assert_true(grew < 16 * 1024);
    /* Under the size cap, the allocation budget stops it. */
    code = hostile_register(60u << 10, &grew, msg, sizeof(msg));
    printf("60 KiB hostile RegisterAgent: %s \"%s\", peak RSS +%ld KiB\n", tm_rpc_status_name(code),
           msg, grew);
    assert_int_equal(code, TM_RPC_RESOURCE_EXHAUSTED);
    assert_non_null(strstr(msg, "budget"));
    assert_true(grew < 4 * 1024);
}

static void test_hostile_bytes(void **state)
{
    (void)state;
    tm_rpc_server *s = new_server(NULL);
    Tidemark__HeartbeatRequest hb = TIDEMARK__HEARTBEAT_REQUEST__INIT;
    Tidemark__Reply *r;

    /* Garbage. */
    const uint8_t junk[] = {0xff, 0xff, 0xff, 0xff, 0x0f, 0x01, 0x02};
    r = call_bytes(s, junk, sizeof(junk));
    assert_int_equal(r->code, TM_RPC_INVALID_ARGUMENT);
    assert_string_equal(r->message, "malformed envelope");
    tidemark__reply__free_unpacked(r, NULL);

    /* Wrong version, missing version. */
    r = call(s, 2, "Coordinator.Heartbeat", NULL, "a", "s3cret", NULL, &hb.base);
    assert_int_equal(r->code, TM_RPC_FAILED_PRECONDITION);
    assert_non_null(strstr(r->message, "version 2"));
    tidemark__reply__free_unpacked(r, NULL);
    r = call_bytes(s, (const uint8_t *)"", 0);
    assert_int_equal(r->code, TM_RPC_FAILED_PRECONDITION);
    tidemark__reply__free_unpacked(r, NULL);

    /* Unknown method, declared-but-unregistered method. */
    r = call(s, 1, "Coordinator.Nope", NULL, "a", "s3cret", NULL, &hb.base);
    assert_int_equal(r->code, TM_RPC_UNIMPLEMENTED);
    tidemark__reply__free_unpacked(r, NULL);
    r = call(s, 1, "Admin.Status", NULL, NULL, NULL, "admin-secret", NULL);
    assert_int_equal(r->code, TM_RPC_UNIMPLEMENTED);
    tidemark__reply__free_unpacked(r, NULL);

    /* A body that is not the method's input type. */
    size_t len;
    uint8_t *env = envelope(1, "Coordinator.Heartbeat", NULL, "a", "s3cret", NULL, NULL, &len);
    free(env);
    Tidemark__Envelope e = TIDEMARK__ENVELOPE__INIT;
    Tidemark__Credential cred = TIDEMARK__CREDENTIAL__INIT;
    uint8_t bad_body[] = {0x08, 0xff}; /* field 1 varint, truncated */
    cred.agent_id = "a";
    cred.agent_secret = "s3cret";
    e.has_version = 1;
    e.version = 1;
    e.method = "Coordinator.Heartbeat";
    e.credential = &cred;
    e.has_body = 1;
    e.body.data = bad_body;
    e.body.len = sizeof(bad_body);
    uint8_t buf[256];
    len = tidemark__envelope__pack(&e, buf);
    r = call_bytes(s, buf, len);
    assert_int_equal(r->code, TM_RPC_INVALID_ARGUMENT);
    assert_non_null(strstr(r->message, "HeartbeatRequest"));
    tidemark__reply__free_unpacked(r, NULL);

    /* Oversized. */
    size_t big = 64 * 1024 + 1;
    uint8_t *huge = calloc(1, big);
    r = call_bytes(s, huge, big);
    assert_int_equal(r->code, TM_RPC_RESOURCE_EXHAUSTED);
    tidemark__reply__free_unpacked(r, NULL);
    free(huge);

    /* Overlong request id / credential. */
    char longid[200];
    memset(longid, 'x', sizeof(longid) - 1);
    longid[sizeof(longid) - 1] = '\0';
    r = call(s, 1, "Coordinator.Heartbeat", longid, "a", "s3cret", NULL, &hb.base);
    assert_int_equal(r->code, TM_RPC_INVALID_ARGUMENT);
    tidemark__reply__free_unpacked(r, NULL);
    char longcred[400];
    memset(longcred, 'y', sizeof(longcred) - 1);
    longcred[sizeof(longcred) - 1] = '\0';
    r = call(s, 1, "Coordinator.Heartbeat", NULL, longcred, "s3cret", NULL, &hb.base);
    assert_int_equal(r->code, TM_RPC_UNAUTHENTICATED);
    tidemark__reply__free_unpacked(r, NULL);

    /* 20,000 random buffers: every one answered, never OK. */
    uint64_t x = 88172645463325252ULL;
    for (int i = 0; i < 20000; i++) {
        uint8_t rnd[300];
        size_t n = (size_t)(i % 300);
        for (size_t j = 0; j < n; j++) {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            rnd[j] = (uint8_t)x;
        }
        void *out = NULL;
        size_t out_len = 0;
        assert_int_equal(tm_rpc_server_handle(s, rnd, n, "fuzz", &out, &out_len, NULL, NULL),
                         TM_OK);
        Tidemark__Reply *rr = tidemark__reply__unpack(NULL, out_len, out);
        assert_non_null(rr);
        assert_int_not_equal(rr->code, TM_RPC_OK);
        tidemark__reply__free_unpacked(rr, NULL);
        free(out);
    }
    tm_rpc_server_free(s);
}

typedef struct caller {
    tm_rpc_client *c;
    int rc;
    uint32_t got;
    uint64_t seq;
} caller;

static void *do_call(void *arg)
{
    caller *k = arg;
    Tidemark__HeartbeatRequest hb = TIDEMARK__HEARTBEAT_REQUEST__INIT;
    Tidemark__HeartbeatResponse *resp = NULL;
    tm_err err;
    hb.has_seq = 1;
    hb.seq = k->seq;
    k->rc = tm_rpc_client_call(k->c, "Coordinator.Heartbeat", &hb.base,
                               &tidemark__heartbeat_response__descriptor,
                               (ProtobufCMessage **)&resp, 5000, NULL, &err);
    if (k->rc == TM_OK) {
        k->got = resp->heartbeat_interval_ms;
        tidemark__heartbeat_response__free_unpacked(resp, NULL);
    }
    return NULL;
}

/* A client of url (as agt-9) whose call *slow, run by thread *t, is parked
 * at the server (the handler's long-poll stand-in). */
static tm_rpc_client *park_one(const char *url, caller *slow, pthread_t *t)
{
    tm_rpc_client *c = NULL;
    tm_rpc_client_opts co = {.url = url};
    tm_err err;
    pthread_mutex_lock(&parked_mu);
    parked = NULL;
    pthread_mutex_unlock(&parked_mu);
    assert_int_equal(tm_rpc_client_new(&c, &co, &err), TM_OK);
    tm_rpc_client_set_agent(c, "agt-9", "s3cret");
    *slow = (caller){.c = c, .seq = 999};
    pthread_create(t, NULL, do_call, slow);
    for (int i = 0; i < 500; i++) {
        pthread_mutex_lock(&parked_mu);
        int p = parked != NULL;
        pthread_mutex_unlock(&parked_mu);
        if (p) {
            return c;
        }
        usleep(10000);
    }
    fail_msg("no call parked within 5 s");
    return c;
}

static void test_ipc_roundtrip_and_parked_call(void **state)
{
    (void)state;
    char url[256];
    snprintf(url, sizeof(url), "ipc:///tmp/tm-test-rpc-%d.sock", (int)getpid());
    tm_rpc_server *s = new_server(url);
    tm_err err;
    assert_int_equal(tm_rpc_server_start(s, &err), TM_OK);

    /* Park one call (long-poll), then show others are still served. */
    caller slow;
    pthread_t t;
    tm_rpc_client *c = park_one(url, &slow, &t);
    tm_rpc_client_opts co = {.url = url};
    for (int i = 1; i <= 50; i++) {
        caller fast = {.c = c, .seq = (uint64_t)i + 100}; /* 13 means "fail" */
        do_call(&fast);
        assert_int_equal(fast.rc, TM_OK);
        assert_int_equal(fast.got, i + 100);
    }
    /* Complete the parked call from this thread. */
    Tidemark__HeartbeatResponse *resp = (Tidemark__HeartbeatResponse *)tm_rpc_call_response(parked);
    resp->has_heartbeat_interval_ms = 1;
    resp->heartbeat_interval_ms = 777;
    tm_rpc_call_complete(parked, TM_RPC_OK);
    pthread_join(t, NULL);
    assert_int_equal(slow.rc, TM_OK);
    assert_int_equal(slow.got, 777);

    /* Error statuses come back as TM_ERPC with the status and message. */
    Tidemark__HeartbeatRequest hb = TIDEMARK__HEARTBEAT_REQUEST__INIT;
    hb.has_seq = 1;
    hb.seq = 13;
    ProtobufCMessage *out = NULL;
    assert_int_equal(tm_rpc_client_call(c, "Coordinator.Heartbeat", &hb.base,
                                        &tidemark__heartbeat_response__descriptor, &out, 2000, NULL,
                                        &err),
                     TM_ERPC);
    assert_int_equal(err.status, TM_RPC_FAILED_PRECONDITION);
    assert_non_null(strstr(err.msg, "unlucky agt-9"));
    tm_rpc_client_free(c);
    tm_rpc_server_free(s);

    /* A server that is gone: the call times out with a clear message. */
    assert_int_equal(tm_rpc_client_new(&c, &co, &err), TM_OK);
    assert_int_equal(tm_rpc_client_call(c, "Coordinator.Heartbeat", &hb.base,
                                        &tidemark__heartbeat_response__descriptor, &out, 200, NULL,
                                        &err),
                     TM_ETIMEDOUT);
    assert_non_null(strstr(err.msg, "no answer"));
    tm_rpc_client_free(c);
}

/* tm_rpc_client_shutdown() ends calls in progress at once: one parked at
 * the server (waiting for its reply) and one still queued (no server to
 * send to). Under ASan/LSan this also proves that neither request message
 * leaks (tm_rpc_client_call frees what nng hands back). */
static void test_shutdown_cancels_calls(void **state)
{
    (void)state;
    char url[256];
    tm_err err;
    snprintf(url, sizeof(url), "ipc:///tmp/tm-test-rpc-sd-%d.sock", (int)getpid());
    tm_rpc_server *s = new_server(url);
    assert_int_equal(tm_rpc_server_start(s, &err), TM_OK);
    caller slow;
    pthread_t t;
    tm_rpc_client *c = park_one(url, &slow, &t);
    tm_rpc_client_opts co = {.url = url};
    uint64_t t0 = tm_mono_ns();
    tm_rpc_client_shutdown(c);
    pthread_join(t, NULL);
    assert_int_equal(slow.rc, TM_EUNAVAIL);
    assert_true(tm_mono_ns() - t0 < 2000000000ull); /* not the 5 s deadline */
    caller late = {.c = c, .seq = 1};
    do_call(&late);
    assert_int_equal(late.rc, TM_EUNAVAIL);
    tm_rpc_client_free(c);
    tm_rpc_call_complete(parked, TM_RPC_OK); /* its client is gone */
    tm_rpc_server_free(s);

    /* No server: the request waits in nng's send queue until cancelled. */
    assert_int_equal(tm_rpc_client_new(&c, &co, &err), TM_OK);
    caller queued = {.c = c, .seq = 1};
    pthread_create(&t, NULL, do_call, &queued);
    usleep(200000);
    t0 = tm_mono_ns();
    tm_rpc_client_shutdown(c);
    pthread_join(t, NULL);
    assert_int_not_equal(queued.rc, TM_OK);
    assert_true(tm_mono_ns() - t0 < 2000000000ull);
    tm_rpc_client_free(c);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_status_names),
        cmocka_unit_test(test_dispatch_ok_and_error),
        cmocka_unit_test(test_auth),
        cmocka_unit_test(test_idempotent_replay),
        cmocka_unit_test(test_hostile_bytes),
        cmocka_unit_test(test_ipc_roundtrip_and_parked_call),
        cmocka_unit_test(test_shutdown_cancels_calls),
        cmocka_unit_test(test_cache_keeps_only_success),
        cmocka_unit_test(test_register_never_cached),
        cmocka_unit_test(test_hostile_register_is_cheap),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
