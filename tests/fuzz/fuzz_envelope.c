/*
 * fuzz_envelope - libFuzzer target for everything the RPC server does with
 * bytes from the network: envelope decode, version/method/credential checks,
 * authentication, the reply cache and body decode of a real method.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "common/log.h"
#include "common/rpc.h"
#include "tidemark.pb-c.h"

static int auth(tm_rpc_call *call, const char *service, const Tidemark__Credential *cred, void *arg)
{
    (void)arg;
    (void)service;
    if (cred != NULL && cred->agent_id != NULL && cred->agent_secret != NULL &&
        strcmp(cred->agent_secret, "s") == 0) {
        tm_rpc_call_set_principal(call, cred->agent_id);
        return TM_RPC_OK;
    }
    return tm_rpc_call_error(call, TM_RPC_UNAUTHENTICATED, "no");
}

static int heartbeat(tm_rpc_call *call, const ProtobufCMessage *in, ProtobufCMessage *out,
                     void *arg)
{
    (void)arg;
    const Tidemark__HeartbeatRequest *r = (const Tidemark__HeartbeatRequest *)in;
    Tidemark__HeartbeatResponse *resp = (Tidemark__HeartbeatResponse *)out;
    resp->has_heartbeat_interval_ms = 1;
    resp->heartbeat_interval_ms = (uint32_t)r->seq;
    return r->seq % 2 ? TM_RPC_OK : tm_rpc_call_error(call, TM_RPC_ABORTED, "even");
}

static int handler(tm_rpc_call *call, const ProtobufCMessage *in, ProtobufCMessage *out, void *arg)
{
    (void)arg;
    (void)out;
    const Tidemark__RegisterRequest *r = (const Tidemark__RegisterRequest *)in;
    /* Touch every field the real handler reads. */
    size_t n = r->hostname ? strlen(r->hostname) : 0;
    for (size_t i = 0; i < r->n_targets; i++) {
        n += r->targets[i]->name ? strlen(r->targets[i]->name) : 0;
    }
    for (size_t i = 0; i < r->n_labels; i++) {
        n += r->labels[i]->key ? strlen(r->labels[i]->key) : 0;
    }
    return n % 2 ? TM_RPC_OK : tm_rpc_call_error(call, TM_RPC_INVALID_ARGUMENT, "even %zu", n);
}

static tm_rpc_server *server;

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (server == NULL) {
        tm_log_set_level(TM_LOG_ERROR);
        /* A small cap for unauthenticated calls, so inputs of fuzzing size
         * reach both sides of it (and the unpack memory budget behind it). */
        tm_rpc_server_opts o = {.auth = auth,
                                .max_message_bytes = 1 << 20,
                                .reply_cache_entries = 64,
                                .max_unauth_message_bytes = 2048};
        tm_err err;
        if (tm_rpc_server_new(&server, &o, &err) != TM_OK) {
            abort();
        }
        tm_rpc_server_register(server, &tidemark__coordinator__descriptor, "RegisterAgent", handler,
                               NULL, TM_RPC_NOAUTH | TM_RPC_MUTATING);
        tm_rpc_server_register(server, &tidemark__coordinator__descriptor, "Heartbeat", heartbeat,
                               NULL, TM_RPC_MUTATING);
    }
    void *out = NULL;
    size_t len = 0;
    if (tm_rpc_server_handle(server, data, size, "fuzz", &out, &len, NULL, NULL) == TM_OK) {
        Tidemark__Reply *r = tidemark__reply__unpack(NULL, len, out);
        if (r == NULL) {
            abort(); /* we must always produce a decodable reply */
        }
        tidemark__reply__free_unpacked(r, NULL);
    }
    free(out);
    return 0;
}
