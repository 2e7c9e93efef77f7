/*
 * rpc.h - request/reply RPC over nng, dispatched by protoc-c service descriptors.
 *
 * Wire: the client sends a tidemark.Envelope whose body is the packed input
 * message of `method` ("Service.Method"); the server answers a tidemark.Reply
 * with a gRPC-style status code, a message, and the packed output message.
 *
 * Server: one REP socket served by a pool of nng contexts, each with its own
 * aio, so a handler that parks a call (long-poll) never blocks other callers.
 * Adding an RPC is one line in proto/tidemark.proto and one
 * tm_rpc_server_register() with its handler; the method's input and output
 * types come from the generated service descriptor.
 *
 * Every byte from the network is hostile: the decoder checks size, version,
 * method, body and credential before any handler runs, and a bad request gets
 * an error reply while every other caller is served as usual.
 *
 * Client: REQ with a per-call deadline. nng resends a request that had no
 * reply (e.g. the coordinator restarted), so mutating calls carry a
 * request_id and the server answers a repeat from its reply cache.
 */
#ifndef TM_RPC_H
#define TM_RPC_H

#include <protobuf-c/protobuf-c.h>
#include <stddef.h>
#include <stdint.h>

#include "common/arena.h"
#include "common/config.h"
#include "common/err.h"

#define TM_RPC_VERSION 1

/* tidemark.StatusCode values, as plain ints so callers need not include the
 * generated header. */
enum {
    TM_RPC_OK = 0,
    TM_RPC_CANCELLED = 1,
    TM_RPC_UNKNOWN = 2,
    TM_RPC_INVALID_ARGUMENT = 3,
    TM_RPC_DEADLINE_EXCEEDED = 4,
    TM_RPC_NOT_FOUND = 5,
    TM_RPC_ALREADY_EXISTS = 6,
    TM_RPC_PERMISSION_DENIED = 7,
    TM_RPC_RESOURCE_EXHAUSTED = 8,
    TM_RPC_FAILED_PRECONDITION = 9,
    TM_RPC_ABORTED = 10,
    TM_RPC_OUT_OF_RANGE = 11,
    TM_RPC_UNIMPLEMENTED = 12,
    TM_RPC_INTERNAL = 13,
    TM_RPC_UNAVAILABLE = 14,
    TM_RPC_DATA_LOSS = 15,
    TM_RPC_UNAUTHENTICATED = 16,
    TM_RPC_STATUS_MAX = 16,
    /* Returned by a handler that will finish the call later with
     * tm_rpc_call_complete() (long-poll). Never sent on the wire. */
    TM_RPC_PENDING = 1000,
};

/* "UNAUTHENTICATED"; "UNKNOWN" for values out of range. */
const char *tm_rpc_status_name(int code);
/* Map a status to the TM_E* a caller would branch on. */
int tm_rpc_status_to_err(int code);

/* Upper bounds checked before any handler runs. */
#define TM_RPC_METHOD_MAX 128
#define TM_RPC_REQUEST_ID_MAX 64
#define TM_RPC_CREDENTIAL_MAX 256

typedef struct tm_rpc_server tm_rpc_server;
typedef struct tm_rpc_call tm_rpc_call;
typedef struct tm_rpc_client tm_rpc_client;

/* Handler: fill *resp (already initialised to the method's output type; its
 * fields may point into the call's arena) and return a status code, or
 * TM_RPC_PENDING to finish later. A non-OK code's message is set with
 * tm_rpc_call_error(). */
typedef int (*tm_rpc_handler)(tm_rpc_call *call, const ProtobufCMessage *req,
                              ProtobufCMessage *resp, void *arg);

/* Authenticator, run before every handler not registered TM_RPC_NOAUTH.
 * `service` is the service name ("Coordinator", "Admin"). cred may be NULL.
 * Returns TM_RPC_OK (optionally after tm_rpc_call_set_principal) or a status
 * such as TM_RPC_UNAUTHENTICATED with tm_rpc_call_error(). */
struct Tidemark__Credential;
typedef int (*tm_rpc_auth_fn)(tm_rpc_call *call, const char *service,
                              const struct Tidemark__Credential *cred, void *arg);
/* Observer for metrics: called once per answered call. method is NULL when
 * the request could not be decoded. */
typedef void (*tm_rpc_observe_fn)(const char *method, int code, uint64_t latency_ns, void *arg);
/* A client connection went away: parked calls that came over it will never
 * be read. Runs on an nng thread: must not block. */
typedef void (*tm_rpc_conn_closed_fn)(uint32_t conn_id, void *arg);

enum {
    TM_RPC_NOAUTH = 1u << 0, /* no credential required (e.g. RegisterAgent: token in body) */
    /* A repeated request_id from the same principal is answered from the
     * reply cache, which holds successful replies only (an error leaves
     * nothing done, so a retry runs again). Ignored with TM_RPC_NOAUTH: a
     * reply with no principal to bind it to is never cached. */
    TM_RPC_MUTATING = 1u << 1,
};

/* One client costs only itself. Every call's reply leaves through its own
 * reply slot (the nng context it came in on), so a reply the client does not
 * read, or a parked long-poll, never holds a receiving context; the bounds
 * below close the connection of a client that overdoes it. nng itself drops
 * a TCP connection that has not finished its SP handshake within 10 s and
 * one that announces a message over max_message_bytes; a TLS handshake that
 * never finishes nng keeps forever, so the server shuts those down after
 * first_request_timeout_ms (Linux: found through /proc). */
typedef struct tm_rpc_server_opts {
    const char *url;            /* tcp://, ipc://, tls+tcp:// */
    const tm_tls_conf *tls;     /* required for tls+tcp:// */
    size_t max_message_bytes;   /* NNG_OPT_RECVMAXSZ; default 4 MiB */
    int contexts;               /* calls decoded and handled at once; default 64 */
    size_t reply_cache_entries; /* idempotency cache; default 8192 */
    /* Requests for TM_RPC_NOAUTH methods larger than this are refused before
     * their body is decoded; default 64 KiB. */
    size_t max_unauth_message_bytes;
    /* A reply not taken by the client within this is abandoned and its
     * connection closed; default 10 s. */
    uint32_t send_timeout_ms;
    /* A connection with no call in progress is closed when it has sent no
     * complete request for first_request_timeout_ms since it opened or
     * started its TLS handshake (default 10 s), or idle_timeout_ms since its
     * last one (default 5 min). */
    uint32_t first_request_timeout_ms;
    uint32_t idle_timeout_ms;
    /* New connections from one address are refused while that address
     * already has this many "pending" ones: not yet carried an authenticated
     * call (or a successful TM_RPC_NOAUTH call). Authenticated connections
     * are not counted, so a fleet behind one address is not limited; ipc://
     * is exempt. Default 128. */
    uint32_t max_pending_per_addr;
    /* Calls in progress (being handled, parked or replying) on one
     * connection; one more closes it. Default 64. */
    uint32_t max_calls_per_conn;
    tm_rpc_auth_fn auth;
    void *auth_arg;
    tm_rpc_observe_fn observe;
    void *observe_arg;
    tm_rpc_conn_closed_fn conn_closed;
    void *conn_closed_arg;
} tm_rpc_server_opts;

int tm_rpc_server_new(tm_rpc_server **out, const tm_rpc_server_opts *opts, tm_err *err);
/* Register a handler for service.method; fails if the method is not in the
 * descriptor or already registered. Call before start. */
int tm_rpc_server_register(tm_rpc_server *s, const ProtobufCServiceDescriptor *svc,
                           const char *method, tm_rpc_handler fn, void *arg, unsigned flags);
/* Listen and start serving. Warns about declared methods without a handler
 * (they answer UNIMPLEMENTED). */
int tm_rpc_server_start(tm_rpc_server *s, tm_err *err);
/* The bound TCP port (for tcp://127.0.0.1:0), or 0. */
int tm_rpc_server_port(tm_rpc_server *s);
/* Stop serving and free. The owner must complete its parked calls first. */
void tm_rpc_server_free(tm_rpc_server *s);

/* The whole request path without a socket: decode, authenticate, dispatch,
 * encode. Used by the nng workers, by unit tests and by the fuzzer. The reply
 * is malloc'd into *out (caller frees). Returns TM_RPC_PENDING when a handler
 * parked the call (then *out is NULL and the reply goes to `done`). */
typedef void (*tm_rpc_done_fn)(void *done_arg, void *reply, size_t len);
int tm_rpc_server_handle(tm_rpc_server *s, const void *req, size_t len, const char *peer,
                         void **out, size_t *out_len, tm_rpc_done_fn done, void *done_arg);
/* The same, for a request that came over connection conn_id. */
int tm_rpc_server_handle_conn(tm_rpc_server *s, const void *req, size_t len, const char *peer,
                              uint32_t conn_id, void **out, size_t *out_len, tm_rpc_done_fn done,
                              void *done_arg);

/* ---- inside a handler ---- */
tm_arena *tm_rpc_call_arena(tm_rpc_call *c);
/* Set the error message for a non-OK return; returns code. */
int tm_rpc_call_error(tm_rpc_call *c, int code, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
void tm_rpc_call_set_principal(tm_rpc_call *c, const char *agent_id);
const char *tm_rpc_call_principal(const tm_rpc_call *c);
const char *tm_rpc_call_method(const tm_rpc_call *c);
const char *tm_rpc_call_peer(const tm_rpc_call *c);
uint32_t tm_rpc_call_deadline_ms(const tm_rpc_call *c);
/* The connection the call came over (0 when not from a socket). */
uint32_t tm_rpc_call_conn(const tm_rpc_call *c);
ProtobufCMessage *tm_rpc_call_response(tm_rpc_call *c);
/* Finish a parked call (any thread). The response message must be filled. */
void tm_rpc_call_complete(tm_rpc_call *c, int code);

/* ---- client ---- */
typedef struct tm_rpc_client_opts {
    const char *url;
    const tm_tls_conf *tls;   /* required for tls+tcp:// */
    size_t max_message_bytes; /* default 4 MiB */
    uint32_t resend_ms;       /* nng REQ resend; default 60000 (longer than any long-poll) */
} tm_rpc_client_opts;

int tm_rpc_client_new(tm_rpc_client **out, const tm_rpc_client_opts *opts, tm_err *err);
void tm_rpc_client_free(tm_rpc_client *c);
/* Close the connection: calls in progress (long-polls) in other threads
 * return at once with an error. The client can only be freed afterwards. */
void tm_rpc_client_shutdown(tm_rpc_client *c);
/* Credentials sent with every later call (copied). NULL clears. */
void tm_rpc_client_set_agent(tm_rpc_client *c, const char *agent_id, const char *secret);
void tm_rpc_client_set_admin(tm_rpc_client *c, const char *admin_token);

/* One call. On TM_OK *resp is a message of resp_desc (free with
 * protobuf_c_message_free_unpacked(resp, NULL)). A non-OK status returns
 * TM_ERPC with err->status set and err->msg "METHOD: STATUS: message";
 * no answer in time returns TM_ETIMEDOUT. request_id may be NULL (random). */
int tm_rpc_client_call(tm_rpc_client *c, const char *method, const ProtobufCMessage *req,
                       const ProtobufCMessageDescriptor *resp_desc, ProtobufCMessage **resp,
                       uint32_t timeout_ms, const char *request_id, tm_err *err);

#endif
