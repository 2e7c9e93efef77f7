/*
 * rpc_client.c - REQ side: one nng context per call, so a client can be
 * shared by threads (the agent's heartbeat loop and its task runner).
 *
 * The dialer is non-blocking and reconnects by itself, so a client can be
 * created while the coordinator is down; calls then fail with TM_ETIMEDOUT
 * until it is back. nng resends an unanswered request on a new connection,
 * which is why every call carries a request_id.
 */
#include "common/rpc.h"
#include "common/tls.h"
#include "common/util.h"

#include "tidemark.pb-c.h"

#include <nng/nng.h>
#include <nng/protocol/reqrep0/req.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

/* A call in progress, so shutdown can cancel it before closing the socket. */
typedef struct inflight {
    nng_aio *aio;
    struct inflight *next;
} inflight;

struct tm_rpc_client {
    nng_socket sock;
    nng_dialer dialer;
    int closed;
    inflight *calls; /* under mu */
    char *url;
    uint32_t resend_ms;
    pthread_mutex_t mu;
    char *agent_id;
    char *agent_secret;
    char *admin_token;
};

int tm_rpc_client_new(tm_rpc_client **out, const tm_rpc_client_opts *opts, tm_err *err)
{
    int rv;
    tm_rpc_client *c = calloc(1, sizeof(*c));
    if (c == NULL || (c->url = strdup(opts->url)) == NULL) {
        free(c);
        return tm_err_set(err, TM_ENOMEM, "rpc client: out of memory");
    }
    pthread_mutex_init(&c->mu, NULL);
    c->resend_ms = opts->resend_ms ? opts->resend_ms : 60000;
    if ((rv = nng_req0_open(&c->sock)) != 0) {
        free(c->url);
        free(c);
        return tm_err_set(err, TM_EINTERNAL, "rpc client: open REQ socket: %s", nng_strerror(rv));
    }
    nng_socket_set_size(c->sock, NNG_OPT_RECVMAXSZ,
                        opts->max_message_bytes ? opts->max_message_bytes : 4u << 20);
    nng_socket_set_ms(c->sock, NNG_OPT_RECONNMINT, 100);
    nng_socket_set_ms(c->sock, NNG_OPT_RECONNMAXT, 2000);
    if ((rv = nng_dialer_create(&c->dialer, c->sock, opts->url)) != 0) {
        tm_err_set(err, TM_ECONFIG, "coordinator URL %s: %s", opts->url, nng_strerror(rv));
        tm_rpc_client_free(c);
        return TM_ECONFIG;
    }
    if (strncmp(opts->url, "tls+", 4) == 0) {
        if (tm_tls_dialer_setup(c->dialer, opts->tls, opts->url, err) != TM_OK) {
            tm_err_prefix(err, "coordinator %s", opts->url);
            tm_rpc_client_free(c);
            return TM_ECONFIG;
        }
    }
    /* Non-blocking: keep retrying in the background if the server is down. */
    if ((rv = nng_dialer_start(c->dialer, NNG_FLAG_NONBLOCK)) != 0) {
        tm_err_set(err, TM_ECONFIG, "dial %s: %s", opts->url, nng_strerror(rv));
        tm_rpc_client_free(c);
        return TM_ECONFIG;
    }
    *out = c;
    return TM_OK;
}

static void wipe_free(char *s)
{
    if (s != NULL) {
        memset(s, 0, strlen(s));
        free(s);
    }
}

void tm_rpc_client_shutdown(tm_rpc_client *c)
{
    /* Cancel every call in progress first (they return at once with an
     * error), then stop dialing, then close: nng_close() then has no
     * operation of ours to wait for. No new call starts once closed. */
    pthread_mutex_lock(&c->mu);
    int was = c->closed;
    c->closed = 1;
    for (inflight *f = c->calls; f != NULL; f = f->next) {
        nng_aio_cancel(f->aio);
    }
    pthread_mutex_unlock(&c->mu);
    if (!was) {
        nng_dialer_close(c->dialer);
        nng_close(c->sock);
    }
}

/* Register a call's aio; fails once the client is shut down. */
static int inflight_add(tm_rpc_client *c, inflight *f)
{
    pthread_mutex_lock(&c->mu);
    int closed = c->closed;
    if (!closed) {
        f->next = c->calls;
        c->calls = f;
    }
    pthread_mutex_unlock(&c->mu);
    return closed ? TM_EUNAVAIL : TM_OK;
}

static void inflight_remove(tm_rpc_client *c, inflight *f)
{
    pthread_mutex_lock(&c->mu);
    for (inflight **pp = &c->calls; *pp != NULL; pp = &(*pp)->next) {
        if (*pp == f) {
            *pp = f->next;
            break;
        }
    }
    pthread_mutex_unlock(&c->mu);
}

void tm_rpc_client_free(tm_rpc_client *c)
{
    if (c == NULL) {
        return;
    }
    tm_rpc_client_shutdown(c);
    free(c->url);
    free(c->agent_id);
    wipe_free(c->agent_secret);
    wipe_free(c->admin_token);
    pthread_mutex_destroy(&c->mu);
    free(c);
}

static char *dup_or_null(const char *s)
{
    return s != NULL ? strdup(s) : NULL;
}

void tm_rpc_client_set_agent(tm_rpc_client *c, const char *agent_id, const char *secret)
{
    pthread_mutex_lock(&c->mu);
    free(c->agent_id);
    wipe_free(c->agent_secret);
    c->agent_id = dup_or_null(agent_id);
    c->agent_secret = dup_or_null(secret);
    pthread_mutex_unlock(&c->mu);
}

void tm_rpc_client_set_admin(tm_rpc_client *c, const char *admin_token)
{
    pthread_mutex_lock(&c->mu);
    wipe_free(c->admin_token);
    c->admin_token = dup_or_null(admin_token);
    pthread_mutex_unlock(&c->mu);
}

/* Build the request message (credential copied under the lock). */
static int build_request(tm_rpc_client *c, const char *method, const ProtobufCMessage *req,
                         uint32_t timeout_ms, const char *request_id, nng_msg **out, tm_err *err)
{
    Tidemark__Envelope env = TIDEMARK__ENVELOPE__INIT;
    Tidemark__Credential cred = TIDEMARK__CREDENTIAL__INIT;
    char rid[33];
    if (request_id == NULL) {
        unsigned char rnd[16];
        tm_random_bytes(rnd, sizeof(rnd));
        tm_hex(rnd, sizeof(rnd), rid);
        request_id = rid;
    }
    size_t body_len = req != NULL ? protobuf_c_message_get_packed_size(req) : 0;
    uint8_t *body = malloc(body_len ? body_len : 1);
    if (body == NULL) {
        return tm_err_set(err, TM_ENOMEM, "%s: out of memory", method);
    }
    if (req != NULL) {
        protobuf_c_message_pack(req, body);
    }
    env.has_version = 1;
    env.version = TM_RPC_VERSION;
    env.method = (char *)method;
    env.request_id = (char *)request_id;
    env.has_deadline_ms = 1;
    env.deadline_ms = timeout_ms;
    env.has_body = 1;
    env.body.data = body;
    env.body.len = body_len;

    pthread_mutex_lock(&c->mu);
    if (c->agent_id != NULL || c->admin_token != NULL) {
        cred.agent_id = c->agent_id;
        cred.agent_secret = c->agent_secret;
        cred.admin_token = c->admin_token;
        env.credential = &cred;
    }
    size_t n = tidemark__envelope__get_packed_size(&env);
    nng_msg *m = NULL;
    int rv = nng_msg_alloc(&m, n);
    if (rv == 0) {
        tidemark__envelope__pack(&env, nng_msg_body(m));
    }
    pthread_mutex_unlock(&c->mu);
    free(body);
    if (rv != 0) {
        return tm_err_set(err, TM_ENOMEM, "%s: %s", method, nng_strerror(rv));
    }
    *out = m;
    return TM_OK;
}

int tm_rpc_client_call(tm_rpc_client *c, const char *method, const ProtobufCMessage *req,
                       const ProtobufCMessageDescriptor *resp_desc, ProtobufCMessage **resp,
                       uint32_t timeout_ms, const char *request_id, tm_err *err)
{
    nng_ctx ctx;
    nng_aio *aio = NULL;
    nng_msg *m = NULL;
    int rv, rc;
    if (resp != NULL) {
        *resp = NULL;
    }
    if ((rc = build_request(c, method, req, timeout_ms, request_id, &m, err)) != TM_OK) {
        return rc;
    }
    if ((rv = nng_ctx_open(&ctx, c->sock)) != 0) {
        nng_msg_free(m);
        if (rv == NNG_ECLOSED) {
            return tm_err_set(err, TM_EUNAVAIL, "%s: client is shut down", method);
        }
        return tm_err_set(err, TM_EINTERNAL, "%s: open context: %s", method, nng_strerror(rv));
    }
    nng_ctx_set_ms(ctx, NNG_OPT_REQ_RESENDTIME, (nng_duration)c->resend_ms);
    if ((rv = nng_aio_alloc(&aio, NULL, NULL)) != 0) {
        nng_msg_free(m);
        nng_ctx_close(ctx);
        return tm_err_set(err, TM_ENOMEM, "%s: %s", method, nng_strerror(rv));
    }
    inflight self = {.aio = aio};
    if (inflight_add(c, &self) != TM_OK) {
        nng_msg_free(m);
        nng_aio_free(aio);
        nng_ctx_close(ctx);
        return tm_err_set(err, TM_EUNAVAIL, "%s: client is shut down", method);
    }
    /* One deadline for send + receive: REQ send completes at once (queued). */
    uint64_t start = tm_mono_ns();
    nng_aio_set_timeout(aio, (nng_duration)timeout_ms);
    nng_aio_set_msg(aio, m);
    nng_ctx_send(ctx, aio);
    nng_aio_wait(aio);
    if ((rv = nng_aio_result(aio)) != 0) {
        /* Not sent (timed out, cancelled by shutdown, socket closed): nng
         * hands the message back in the aio and it is ours to free. */
        nng_msg_free(nng_aio_get_msg(aio));
        nng_aio_set_msg(aio, NULL);
        goto fail;
    }
    uint64_t spent_ms = (tm_mono_ns() - start) / 1000000;
    nng_aio_set_timeout(aio, spent_ms >= timeout_ms ? 1 : (nng_duration)(timeout_ms - spent_ms));
    nng_ctx_recv(ctx, aio);
    nng_aio_wait(aio);
    if ((rv = nng_aio_result(aio)) != 0) {
        goto fail;
    }
    m = nng_aio_get_msg(aio);
    inflight_remove(c, &self);
    nng_aio_free(aio);
    nng_ctx_close(ctx);

    Tidemark__Reply *r = tidemark__reply__unpack(NULL, nng_msg_len(m), nng_msg_body(m));
    nng_msg_free(m);
    if (r == NULL) {
        return tm_err_set(err, TM_EPROTO, "%s: malformed reply from %s", method, c->url);
    }
    int code = r->has_code ? (int)r->code : TM_RPC_UNKNOWN;
    if (code > TM_RPC_STATUS_MAX) {
        code = TM_RPC_UNKNOWN;
    }
    if (code != TM_RPC_OK) {
        tm_err_set(err, TM_ERPC, "%s: %s: %s", method, tm_rpc_status_name(code),
                   r->message ? r->message : "");
        if (err != NULL) {
            err->status = code;
        }
        tidemark__reply__free_unpacked(r, NULL);
        return TM_ERPC;
    }
    if (resp_desc != NULL && resp != NULL) {
        *resp = protobuf_c_message_unpack(resp_desc, NULL, r->has_body ? r->body.len : 0,
                                          r->has_body ? r->body.data : NULL);
        if (*resp == NULL) {
            tidemark__reply__free_unpacked(r, NULL);
            return tm_err_set(err, TM_EPROTO, "%s: malformed %s in reply", method, resp_desc->name);
        }
    }
    tidemark__reply__free_unpacked(r, NULL);
    return TM_OK;

fail:
    inflight_remove(c, &self);
    nng_aio_free(aio);
    nng_ctx_close(ctx);
    if (rv == NNG_ETIMEDOUT) {
        return tm_err_set(err, TM_ETIMEDOUT, "%s: no answer from %s within %u ms", method, c->url,
                          timeout_ms);
    }
    return tm_err_set(err, TM_EUNAVAIL, "%s: %s: %s", method, c->url, nng_strerror(rv));
}
