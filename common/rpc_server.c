/*
 * rpc_server.c - the RPC server: decode, authenticate, dispatch, encode,
 * over a pool of nng REP contexts.
 *
 * tm_rpc_server_handle() is the whole request path on bytes, so the fuzzer
 * and the unit tests exercise exactly what the network does. The nng part
 * below it only moves bytes: each worker owns a context and an aio and loops
 * RECV -> handle; the context that received a request is then swapped with
 * an idle one from a reply slot, which carries the reply (now, or when a
 * parked long-poll completes) while the worker receives again. So a client
 * that never reads its replies holds slots (bounded per connection, and by
 * the send timeout), never the workers every other client needs.
 *
 * A connection table, kept by nng's pipe events, enforces the per-address
 * cap on pending connections and lets a reaper thread close connections
 * that sent no complete request in time.
 */
#include "common/rpc.h"
#include "common/log.h"
#include "common/tls.h"
#include "common/util.h"

#include "tidemark.pb-c.h"

#include <nng/nng.h>
#include <nng/protocol/reqrep0/rep.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#ifdef __linux__
#include <dirent.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>
#endif

#define MAX_METHODS 128

typedef struct method_entry {
    char full[TM_RPC_METHOD_MAX]; /* "Coordinator.Heartbeat" */
    char service[64];             /* "Coordinator" */
    const ProtobufCMethodDescriptor *md;
    tm_rpc_handler fn;
    void *arg;
    unsigned flags;
} method_entry;

/* Reply cache for idempotent mutating calls: FIFO eviction, hash chains. */
typedef struct cache_entry {
    uint64_t hash;
    char *key;
    void *reply;
    size_t len;
    struct cache_entry *next;
} cache_entry;

typedef struct worker {
    tm_rpc_server *srv;
    nng_aio *aio;
    nng_ctx ctx;
} worker;

/* One reply on its way: the context its request came in on. */
typedef struct slot {
    tm_rpc_server *srv;
    nng_aio *aio;
    nng_ctx ctx;
    nng_pipe pipe;
    uint32_t conn;
    struct slot *next_free;
    struct slot *next_all;
} slot;

/* One client connection (nng pipe). */
typedef struct conn {
    uint32_t id;
    nng_pipe pipe;
    char addr[48];    /* peer address without port; "" (not capped) for ipc */
    uint16_t rport;   /* peer port (tcp) */
    uint64_t last_ns; /* opened, or last complete request or finished call */
    uint32_t calls;   /* in progress: handled, parked or replying */
    int requested;    /* sent at least one complete request */
    int trusted;      /* carried an authenticated call */
    struct conn *next;
} conn;

#define CONN_BUCKETS 1024
/* Reply slots in use at most, over all connections: beyond it, requests
 * are dropped (the client's resend retries) rather than memory spent. */
#define SLOTS_MAX 65536
/* Decoded protobuf-c structures may be this many times larger than their
 * wire bytes before a request is refused: empty submessages cost 2 bytes on
 * the wire and ~50 in memory, anything real far less. */
#define UNPACK_RATIO 32
#define NOAUTH_UNPACK_BUDGET (1u << 20)

struct tm_rpc_server {
    tm_rpc_server_opts opts;
    char *url;
    tm_tls_conf *tls;
    method_entry methods[MAX_METHODS];
    size_t n_methods;
    const ProtobufCServiceDescriptor *services[8];
    size_t n_services;

    pthread_mutex_t cache_mu;
    cache_entry **buckets;
    size_t n_buckets;
    cache_entry **fifo; /* ring of inserted entries */
    size_t fifo_cap, fifo_pos;

    nng_socket sock;
    int sock_open;
    atomic_int closing; /* workers stop re-arming */
    nng_listener listener;
    int started;
    worker *workers;
    int n_workers;

    pthread_mutex_t slot_mu;
    slot *free_slots;
    slot *all_slots;
    size_t n_slots;

    pthread_mutex_t conn_mu;
    conn *conns[CONN_BUCKETS];
    pthread_cond_t reaper_cv; /* with conn_mu */
    pthread_t reaper;
    int reaper_started;
    atomic_int_fast64_t last_warn_s; /* rate limit for connection warnings */
    atomic_int listen_port;          /* tls+tcp:// only: see reap_handshakes() */
    struct hs_entry *hs;             /* reaper thread only */
    size_t n_hs, cap_hs;
};

struct tm_rpc_call {
    tm_rpc_server *srv;
    tm_arena *arena;
    const method_entry *m;
    char principal[72];
    char peer[64];
    char request_id[TM_RPC_REQUEST_ID_MAX + 1];
    uint32_t deadline_ms;
    uint32_t conn;
    ProtobufCMessage *resp;
    char *message;
    uint64_t start_ns;
    tm_rpc_done_fn done;
    void *done_arg;
    /* protobuf-c allocator over the arena with a byte budget, so a small
     * hostile message cannot unpack into a huge tree. */
    ProtobufCAllocator budget_pb;
    size_t budget;
    int over_budget;
};

/* ---- reply cache ---- */

static uint64_t fnv1a(const char *s)
{
    uint64_t h = 1469598103934665603ULL;
    for (; *s; s++) {
        h ^= (unsigned char)*s;
        h *= 1099511628211ULL;
    }
    return h;
}

static void cache_unlink(tm_rpc_server *s, cache_entry *e)
{
    cache_entry **pp = &s->buckets[e->hash % s->n_buckets];
    while (*pp != NULL && *pp != e) {
        pp = &(*pp)->next;
    }
    if (*pp == e) {
        *pp = e->next;
    }
    free(e->key);
    free(e->reply);
    free(e);
}

/* Returns a malloc'd copy of the cached reply, or NULL. */
static void *cache_get(tm_rpc_server *s, const char *key, size_t *len)
{
    void *out = NULL;
    uint64_t h = fnv1a(key);
    pthread_mutex_lock(&s->cache_mu);
    for (cache_entry *e = s->buckets[h % s->n_buckets]; e != NULL; e = e->next) {
        if (e->hash == h && strcmp(e->key, key) == 0) {
            out = malloc(e->len ? e->len : 1);
            if (out != NULL) {
                memcpy(out, e->reply, e->len);
                *len = e->len;
            }
            break;
        }
    }
    pthread_mutex_unlock(&s->cache_mu);
    return out;
}

static void cache_put(tm_rpc_server *s, const char *key, const void *reply, size_t len)
{
    cache_entry *e = calloc(1, sizeof(*e));
    if (e == NULL || (e->key = strdup(key)) == NULL || (e->reply = malloc(len ? len : 1)) == NULL) {
        if (e != NULL) {
            free(e->key);
        }
        free(e);
        return; /* the cache is an optimisation of correctness under resends; best effort */
    }
    memcpy(e->reply, reply, len);
    e->len = len;
    e->hash = fnv1a(key);
    pthread_mutex_lock(&s->cache_mu);
    cache_entry *old = s->fifo[s->fifo_pos];
    if (old != NULL) {
        cache_unlink(s, old);
    }
    s->fifo[s->fifo_pos] = e;
    s->fifo_pos = (s->fifo_pos + 1) % s->fifo_cap;
    cache_entry **b = &s->buckets[e->hash % s->n_buckets];
    e->next = *b;
    *b = e;
    pthread_mutex_unlock(&s->cache_mu);
}

/* ---- calls ---- */

tm_arena *tm_rpc_call_arena(tm_rpc_call *c)
{
    return c->arena;
}

int tm_rpc_call_error(tm_rpc_call *c, int code, const char *fmt, ...)
{
    char buf[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(buf, sizeof(buf), fmt, ap);
    va_end(ap);
    c->message = tm_arena_strdup(c->arena, buf);
    return code;
}

void tm_rpc_call_set_principal(tm_rpc_call *c, const char *agent_id)
{
    snprintf(c->principal, sizeof(c->principal), "%s", agent_id ? agent_id : "");
}

const char *tm_rpc_call_principal(const tm_rpc_call *c)
{
    return c->principal;
}

const char *tm_rpc_call_method(const tm_rpc_call *c)
{
    return c->m != NULL ? c->m->full : "";
}

const char *tm_rpc_call_peer(const tm_rpc_call *c)
{
    return c->peer;
}

uint32_t tm_rpc_call_deadline_ms(const tm_rpc_call *c)
{
    return c->deadline_ms;
}

uint32_t tm_rpc_call_conn(const tm_rpc_call *c)
{
    return c->conn;
}

ProtobufCMessage *tm_rpc_call_response(tm_rpc_call *c)
{
    return c->resp;
}

static void *budget_alloc(void *data, size_t n)
{
    tm_rpc_call *c = data;
    if (n > c->budget) {
        c->over_budget = 1;
        return NULL; /* protobuf-c fails the unpack cleanly */
    }
    c->budget -= n;
    return tm_arena_alloc(c->arena, n);
}

static void budget_free(void *data, void *p)
{
    (void)data;
    (void)p; /* the arena frees everything with the call */
}

static void conn_trust(tm_rpc_server *s, uint32_t id);

static void call_free(tm_rpc_call *c)
{
    tm_arena_free(c->arena);
    free(c);
}

/* Encode the Reply for a finished call; malloc'd. */
static int encode_reply(tm_rpc_call *c, int code, void **out, size_t *out_len)
{
    Tidemark__Reply r = TIDEMARK__REPLY__INIT;
    uint8_t *body = NULL;
    r.has_code = 1;
    r.code = (uint32_t)code;
    if (code != TM_RPC_OK && c->message != NULL) {
        r.message = c->message;
    }
    if (c->request_id[0] != '\0') {
        r.request_id = c->request_id;
    }
    if (code == TM_RPC_OK && c->resp != NULL) {
        size_t n = protobuf_c_message_get_packed_size(c->resp);
        body = tm_arena_alloc(c->arena, n ? n : 1);
        if (body == NULL) {
            return TM_ENOMEM;
        }
        protobuf_c_message_pack(c->resp, body);
        r.has_body = 1;
        r.body.data = body;
        r.body.len = n;
    }
    size_t n = tidemark__reply__get_packed_size(&r);
    uint8_t *buf = malloc(n ? n : 1);
    if (buf == NULL) {
        return TM_ENOMEM;
    }
    tidemark__reply__pack(&r, buf);
    *out = buf;
    *out_len = n;
    return TM_OK;
}

static void cache_key(const tm_rpc_call *c, char *out, size_t cap)
{
    snprintf(out, cap, "%s|%s|%s", c->principal, c->m->full, c->request_id);
}

/* Finish: encode, cache, observe, free. */
static int call_finish(tm_rpc_call *c, int code, void **out, size_t *out_len)
{
    if (code < 0 || code > TM_RPC_STATUS_MAX) {
        code = TM_RPC_INTERNAL;
    }
    int rc = encode_reply(c, code, out, out_len);
    if (code == TM_RPC_OK && c->m != NULL && (c->m->flags & TM_RPC_NOAUTH) && c->conn != 0) {
        conn_trust(c->srv, c->conn); /* e.g. a registration with a valid token */
    }
    /* Only a success is final: an error reply (UNAVAILABLE, a refused
     * token) left nothing done, so a retry of the same request must run
     * again. A NOAUTH reply has no principal to bind it to and may carry a
     * secret (RegisterAgent): never cached. */
    if (rc == TM_OK && code == TM_RPC_OK && c->m != NULL && (c->m->flags & TM_RPC_MUTATING) &&
        !(c->m->flags & TM_RPC_NOAUTH) && c->request_id[0]) {
        char key[320];
        cache_key(c, key, sizeof(key));
        cache_put(c->srv, key, *out, *out_len);
    }
    if (c->srv->opts.observe != NULL) {
        c->srv->opts.observe(c->m ? c->m->full : NULL, code, tm_mono_ns() - c->start_ns,
                             c->srv->opts.observe_arg);
    }
    if (code != TM_RPC_OK && tm_log_enabled(TM_LOG_DEBUG)) {
        tm_debug("rpc", "method=%s code=%s peer=%s msg=\"%s\"", c->m ? c->m->full : "-",
                 tm_rpc_status_name(code), c->peer, c->message ? c->message : "");
    }
    call_free(c);
    return rc;
}

void tm_rpc_call_complete(tm_rpc_call *c, int code)
{
    tm_rpc_done_fn done = c->done;
    void *done_arg = c->done_arg;
    void *out = NULL;
    size_t len = 0;
    if (call_finish(c, code, &out, &len) != TM_OK) {
        out = NULL;
        len = 0;
    }
    done(done_arg, out, len);
}

static const method_entry *find_method(const tm_rpc_server *s, const char *name)
{
    for (size_t i = 0; i < s->n_methods; i++) {
        if (strcmp(s->methods[i].full, name) == 0) {
            return &s->methods[i];
        }
    }
    return NULL;
}

static int str_ok(const char *s, size_t max)
{
    return s == NULL || strnlen(s, max + 1) <= max;
}

int tm_rpc_server_handle(tm_rpc_server *s, const void *req, size_t len, const char *peer,
                         void **out, size_t *out_len, tm_rpc_done_fn done, void *done_arg)
{
    return tm_rpc_server_handle_conn(s, req, len, peer, 0, out, out_len, done, done_arg);
}

int tm_rpc_server_handle_conn(tm_rpc_server *s, const void *req, size_t len, const char *peer,
                              uint32_t conn_id, void **out, size_t *out_len, tm_rpc_done_fn done,
                              void *done_arg)
{
    *out = NULL;
    *out_len = 0;
    tm_rpc_call *c = calloc(1, sizeof(*c));
    if (c == NULL || tm_arena_new(&c->arena) != TM_OK) {
        free(c);
        return TM_ENOMEM;
    }
    c->srv = s;
    c->start_ns = tm_mono_ns();
    c->done = done;
    c->done_arg = done_arg;
    c->conn = conn_id;
    snprintf(c->peer, sizeof(c->peer), "%s", peer ? peer : "");
    c->budget_pb.alloc = budget_alloc;
    c->budget_pb.free = budget_free;
    c->budget_pb.allocator_data = c;
    ProtobufCAllocator *alloc = &c->budget_pb;
    int code;

    if (len > s->opts.max_message_bytes) {
        code = tm_rpc_call_error(c, TM_RPC_RESOURCE_EXHAUSTED, "request of %zu bytes exceeds %zu",
                                 len, s->opts.max_message_bytes);
        return call_finish(c, code, out, out_len);
    }
    /* The envelope holds its body as one copy plus a few short strings. */
    c->budget = 2 * len + 16384;
    Tidemark__Envelope *env = tidemark__envelope__unpack(alloc, len, req);
    if (env == NULL) {
        code = tm_rpc_call_error(c, TM_RPC_INVALID_ARGUMENT, "malformed envelope%s",
                                 c->over_budget ? " (decodes past its memory budget)" : "");
        return call_finish(c, code, out, out_len);
    }
    if (!env->has_version || env->version != TM_RPC_VERSION) {
        code = tm_rpc_call_error(c, TM_RPC_FAILED_PRECONDITION,
                                 "protocol version %u not supported (this server speaks %d)",
                                 env->has_version ? env->version : 0, TM_RPC_VERSION);
        return call_finish(c, code, out, out_len);
    }
    if (!str_ok(env->request_id, TM_RPC_REQUEST_ID_MAX) ||
        !str_ok(env->method, TM_RPC_METHOD_MAX - 1)) {
        code = tm_rpc_call_error(c, TM_RPC_INVALID_ARGUMENT, "method or request_id too long");
        return call_finish(c, code, out, out_len);
    }
    if (env->request_id != NULL) {
        snprintf(c->request_id, sizeof(c->request_id), "%s", env->request_id);
    }
    c->deadline_ms = env->has_deadline_ms ? env->deadline_ms : 0;
    if (env->method == NULL || (c->m = find_method(s, env->method)) == NULL) {
        code = tm_rpc_call_error(c, TM_RPC_UNIMPLEMENTED, "unknown method '%.64s'",
                                 env->method ? env->method : "");
        return call_finish(c, code, out, out_len);
    }
    if ((c->m->flags & TM_RPC_NOAUTH) && len > s->opts.max_unauth_message_bytes) {
        /* Anyone may call these: refuse big ones before decoding the body. */
        code = tm_rpc_call_error(c, TM_RPC_RESOURCE_EXHAUSTED,
                                 "%s request of %zu bytes exceeds %zu for unauthenticated calls",
                                 c->m->full, len, s->opts.max_unauth_message_bytes);
        return call_finish(c, code, out, out_len);
    }
    const Tidemark__Credential *cred = env->credential;
    if (cred != NULL && (!str_ok(cred->agent_id, TM_RPC_CREDENTIAL_MAX) ||
                         !str_ok(cred->agent_secret, TM_RPC_CREDENTIAL_MAX) ||
                         !str_ok(cred->admin_token, TM_RPC_CREDENTIAL_MAX))) {
        code = tm_rpc_call_error(c, TM_RPC_UNAUTHENTICATED, "credential too long");
        return call_finish(c, code, out, out_len);
    }
    if (!(c->m->flags & TM_RPC_NOAUTH)) {
        if (s->opts.auth == NULL) {
            code = tm_rpc_call_error(c, TM_RPC_UNAUTHENTICATED, "no authenticator configured");
            return call_finish(c, code, out, out_len);
        }
        code = s->opts.auth(c, c->m->service, cred, s->opts.auth_arg);
        if (code != TM_RPC_OK) {
            return call_finish(c, code, out, out_len);
        }
        if (c->conn != 0) {
            conn_trust(s, c->conn);
        }
    }
    if ((c->m->flags & TM_RPC_MUTATING) && !(c->m->flags & TM_RPC_NOAUTH) &&
        c->request_id[0] != '\0') {
        char key[320];
        cache_key(c, key, sizeof(key));
        void *cached = cache_get(s, key, out_len);
        if (cached != NULL) {
            *out = cached;
            if (s->opts.observe != NULL) {
                s->opts.observe(c->m->full, TM_RPC_OK, tm_mono_ns() - c->start_ns,
                                s->opts.observe_arg);
            }
            call_free(c);
            return TM_OK;
        }
    }
    const ProtobufCMessageDescriptor *in_desc = c->m->md->input;
    const ProtobufCMessageDescriptor *out_desc = c->m->md->output;
    size_t body_len = env->has_body ? env->body.len : 0;
    c->budget = (c->m->flags & TM_RPC_NOAUTH) ? NOAUTH_UNPACK_BUDGET
                                              : UNPACK_RATIO * body_len + NOAUTH_UNPACK_BUDGET;
    ProtobufCMessage *in = protobuf_c_message_unpack(
        in_desc, alloc, env->has_body ? env->body.len : 0, env->has_body ? env->body.data : NULL);
    if (in == NULL && c->over_budget) {
        code = tm_rpc_call_error(c, TM_RPC_RESOURCE_EXHAUSTED,
                                 "%s body of %zu bytes decodes past its memory budget", c->m->full,
                                 body_len);
        return call_finish(c, code, out, out_len);
    }
    if (in == NULL) {
        code = tm_rpc_call_error(c, TM_RPC_INVALID_ARGUMENT, "malformed %s body for %s",
                                 in_desc->name, c->m->full);
        return call_finish(c, code, out, out_len);
    }
    c->resp = tm_arena_alloc(c->arena, out_desc->sizeof_message);
    if (c->resp == NULL) {
        code = tm_rpc_call_error(c, TM_RPC_RESOURCE_EXHAUSTED, "out of memory");
        return call_finish(c, code, out, out_len);
    }
    protobuf_c_message_init(out_desc, c->resp);
    code = c->m->fn(c, in, c->resp, c->m->arg);
    if (code == TM_RPC_PENDING) {
        if (done == NULL) {
            /* A caller without a completion path cannot park calls. */
            code = tm_rpc_call_error(c, TM_RPC_INTERNAL,
                                     "handler parked a call without a "
                                     "completion path");
            return call_finish(c, code, out, out_len);
        }
        return TM_RPC_PENDING;
    }
    return call_finish(c, code, out, out_len);
}

/* ---- registration ---- */

int tm_rpc_server_new(tm_rpc_server **out, const tm_rpc_server_opts *opts, tm_err *err)
{
    tm_rpc_server *s = calloc(1, sizeof(*s));
    if (s == NULL) {
        return tm_err_set(err, TM_ENOMEM, "rpc server: out of memory");
    }
    pthread_mutex_init(&s->cache_mu, NULL);
    pthread_mutex_init(&s->slot_mu, NULL);
    pthread_mutex_init(&s->conn_mu, NULL);
    pthread_cond_init(&s->reaper_cv, NULL);
    s->opts = *opts;
    if (s->opts.max_unauth_message_bytes == 0) {
        s->opts.max_unauth_message_bytes = 64u << 10;
    }
    if (s->opts.send_timeout_ms == 0) {
        s->opts.send_timeout_ms = 10000;
    }
    if (s->opts.first_request_timeout_ms == 0) {
        s->opts.first_request_timeout_ms = 10000;
    }
    if (s->opts.idle_timeout_ms == 0) {
        s->opts.idle_timeout_ms = 300000;
    }
    if (s->opts.max_pending_per_addr == 0) {
        s->opts.max_pending_per_addr = 128;
    }
    if (s->opts.max_calls_per_conn == 0) {
        s->opts.max_calls_per_conn = 64;
    }
    if (s->opts.max_message_bytes == 0) {
        s->opts.max_message_bytes = 4u << 20;
    }
    if (s->opts.contexts <= 0) {
        s->opts.contexts = 64;
    }
    if (s->opts.reply_cache_entries == 0) {
        s->opts.reply_cache_entries = 8192;
    }
    s->url = opts->url ? strdup(opts->url) : NULL;
    s->fifo_cap = s->opts.reply_cache_entries;
    s->n_buckets = s->fifo_cap * 2 + 1;
    s->buckets = calloc(s->n_buckets, sizeof(*s->buckets));
    s->fifo = calloc(s->fifo_cap, sizeof(*s->fifo));
    if (s->buckets == NULL || s->fifo == NULL || (opts->url && s->url == NULL)) {
        tm_rpc_server_free(s);
        return tm_err_set(err, TM_ENOMEM, "rpc server: out of memory");
    }
    if (opts->tls != NULL) {
        s->tls = calloc(1, sizeof(*s->tls));
        if (s->tls == NULL) {
            tm_rpc_server_free(s);
            return tm_err_set(err, TM_ENOMEM, "rpc server: out of memory");
        }
        *s->tls = *opts->tls; /* the strings belong to the config, which outlives us */
    }
    *out = s;
    return TM_OK;
}

int tm_rpc_server_register(tm_rpc_server *s, const ProtobufCServiceDescriptor *svc,
                           const char *method, tm_rpc_handler fn, void *arg, unsigned flags)
{
    const ProtobufCMethodDescriptor *md =
        protobuf_c_service_descriptor_get_method_by_name(svc, method);
    if (md == NULL || fn == NULL || s->n_methods == MAX_METHODS) {
        return TM_EINVAL;
    }
    char full[TM_RPC_METHOD_MAX];
    snprintf(full, sizeof(full), "%s.%s", svc->short_name, method);
    if (find_method(s, full) != NULL) {
        return TM_EEXIST;
    }
    method_entry *m = &s->methods[s->n_methods++];
    snprintf(m->full, sizeof(m->full), "%s", full);
    snprintf(m->service, sizeof(m->service), "%s", svc->short_name);
    m->md = md;
    m->fn = fn;
    m->arg = arg;
    m->flags = flags;
    size_t i;
    for (i = 0; i < s->n_services && s->services[i] != svc; i++) {
    }
    if (i == s->n_services && s->n_services < 8) {
        s->services[s->n_services++] = svc;
    }
    return TM_OK;
}

/* ---- connections ---- */

/* "127.0.0.1" (with_port: "127.0.0.1:5123"); "ipc"/"" for ipc. */
static void pipe_addr(nng_pipe p, char *out, size_t cap, int with_port)
{
    nng_sockaddr sa;
    out[0] = '\0';
    if (nng_pipe_id(p) < 0 || nng_pipe_get_addr(p, NNG_OPT_REMADDR, &sa) != 0) {
        return;
    }
    if (sa.s_family == NNG_AF_INET) {
        const unsigned char *a = (const unsigned char *)&sa.s_in.sa_addr;
        unsigned port = (unsigned)((sa.s_in.sa_port & 0xff) << 8 | sa.s_in.sa_port >> 8);
        if (with_port) {
            snprintf(out, cap, "%u.%u.%u.%u:%u", a[0], a[1], a[2], a[3], port);
        } else {
            snprintf(out, cap, "%u.%u.%u.%u", a[0], a[1], a[2], a[3]);
        }
    } else if (sa.s_family == NNG_AF_INET6) {
        const unsigned char *a = sa.s_in6.sa_addr;
        size_t n = 0;
        for (int i = 0; i < 16 && n + 3 < cap; i += 2) {
            n += (size_t)snprintf(out + n, cap - n, "%s%02x%02x", i ? ":" : "", a[i], a[i + 1]);
        }
    } else if (sa.s_family == NNG_AF_IPC && with_port) {
        snprintf(out, cap, "ipc");
    }
}

static conn **conn_find(tm_rpc_server *s, uint32_t id)
{
    conn **pp = &s->conns[id % CONN_BUCKETS];
    while (*pp != NULL && (*pp)->id != id) {
        pp = &(*pp)->next;
    }
    return pp;
}

/* Rate-limited: an attack must not turn into a log flood. */
static int conn_warn_ok(tm_rpc_server *s)
{
    int64_t now = tm_now_ms() / 1000;
    int64_t last = atomic_load(&s->last_warn_s);
    return now != last && atomic_compare_exchange_strong(&s->last_warn_s, &last, now);
}

static void conn_close(tm_rpc_server *s, nng_pipe p, const char *peer, const char *why)
{
    if (conn_warn_ok(s)) {
        tm_warn("rpc", "event=connection_closed peer=%s reason=%s", peer, why);
    } else {
        tm_debug("rpc", "event=connection_closed peer=%s reason=%s", peer, why);
    }
    nng_pipe_close(p);
}

static void conn_trust(tm_rpc_server *s, uint32_t id)
{
    pthread_mutex_lock(&s->conn_mu);
    conn *k = *conn_find(s, id);
    if (k != NULL) {
        k->trusted = 1;
    }
    pthread_mutex_unlock(&s->conn_mu);
}

/* A complete request arrived: 0, or -1 if the connection has too many calls. */
static int conn_begin(tm_rpc_server *s, uint32_t id)
{
    int rc = 0;
    pthread_mutex_lock(&s->conn_mu);
    conn *k = *conn_find(s, id);
    if (k != NULL) {
        if (k->calls >= s->opts.max_calls_per_conn) {
            rc = -1;
        } else {
            k->calls++;
            k->requested = 1;
            k->last_ns = tm_mono_ns();
        }
    }
    pthread_mutex_unlock(&s->conn_mu);
    return rc;
}

static void conn_end(tm_rpc_server *s, uint32_t id)
{
    pthread_mutex_lock(&s->conn_mu);
    conn *k = *conn_find(s, id);
    if (k != NULL && k->calls > 0) {
        k->calls--;
        k->last_ns = tm_mono_ns();
    }
    pthread_mutex_unlock(&s->conn_mu);
}

static void pipe_event(nng_pipe p, nng_pipe_ev ev, void *arg)
{
    tm_rpc_server *s = arg;
    int id = nng_pipe_id(p);
    if (id <= 0) {
        return;
    }
    if (ev == NNG_PIPE_EV_ADD_PRE) {
        conn *k = calloc(1, sizeof(*k));
        if (k == NULL) {
            nng_pipe_close(p); /* closed in ADD_PRE: no REM_POST follows */
            return;
        }
        k->id = (uint32_t)id;
        k->pipe = p;
        k->last_ns = tm_mono_ns();
        pipe_addr(p, k->addr, sizeof(k->addr), 0);
        nng_sockaddr sa;
        if (nng_pipe_get_addr(p, NNG_OPT_REMADDR, &sa) == 0) {
            uint16_t port = sa.s_family == NNG_AF_INET    ? sa.s_in.sa_port
                            : sa.s_family == NNG_AF_INET6 ? sa.s_in6.sa_port
                                                          : 0;
            k->rport = (uint16_t)((port & 0xff) << 8 | port >> 8);
        }
        uint32_t pending = 0;
        pthread_mutex_lock(&s->conn_mu);
        if (k->addr[0] != '\0') {
            for (size_t b = 0; b < CONN_BUCKETS; b++) {
                for (conn *o = s->conns[b]; o != NULL; o = o->next) {
                    pending += !o->trusted && strcmp(o->addr, k->addr) == 0;
                }
            }
        }
        if (pending >= s->opts.max_pending_per_addr) {
            pthread_mutex_unlock(&s->conn_mu);
            char peer[64];
            pipe_addr(p, peer, sizeof(peer), 1);
            free(k);
            conn_close(s, p, peer, "too_many_pending_connections_from_address");
            return;
        }
        conn **b = &s->conns[k->id % CONN_BUCKETS];
        k->next = *b;
        *b = k;
        pthread_mutex_unlock(&s->conn_mu);
    } else if (ev == NNG_PIPE_EV_REM_POST) {
        pthread_mutex_lock(&s->conn_mu);
        conn **pp = conn_find(s, (uint32_t)id);
        conn *k = *pp;
        if (k != NULL) {
            *pp = k->next;
        }
        pthread_mutex_unlock(&s->conn_mu);
        free(k);
        if (s->opts.conn_closed != NULL) {
            s->opts.conn_closed((uint32_t)id, s->opts.conn_closed_arg);
        }
    }
}

#ifdef __linux__
/* A TCP connection on the TLS listener that is not a pipe yet. */
typedef struct hs_entry {
    unsigned long inode;
    uint64_t first_ns;
    int seen;
} hs_entry;

static int cmp_u16(const void *a, const void *b)
{
    return (int)*(const uint16_t *)a - (int)*(const uint16_t *)b;
}

/* Note this file's sockets on the listening port that are no pipe's (by peer
 * port, so a doubt leaves a socket alone); collect those older than the
 * first-request timeout. */
static void hs_scan(tm_rpc_server *s, const char *path, const uint16_t *ports, size_t n_ports,
                    uint64_t now, unsigned long *victims, size_t *n_victims, size_t cap)
{
    FILE *f = fopen(path, "r");
    char line[512];
    if (f == NULL) {
        return;
    }
    int listen_port = atomic_load(&s->listen_port);
    while (fgets(line, sizeof(line), f) != NULL) {
        char local[64], remote[64];
        unsigned st;
        unsigned long inode;
        if (sscanf(line, " %*d: %63s %63s %x %*s %*s %*s %*u %*u %lu", local, remote, &st,
                   &inode) != 4 ||
            inode == 0 || (st != 0x01 && st != 0x08)) { /* ESTABLISHED, CLOSE_WAIT */
            continue;
        }
        char *lp = strrchr(local, ':'), *rp = strrchr(remote, ':');
        if (lp == NULL || rp == NULL || strtol(lp + 1, NULL, 16) != listen_port) {
            continue;
        }
        uint16_t rport = (uint16_t)strtol(rp + 1, NULL, 16);
        if (n_ports > 0 && bsearch(&rport, ports, n_ports, sizeof(*ports), cmp_u16) != NULL) {
            continue;
        }
        hs_entry *e = NULL;
        for (size_t i = 0; i < s->n_hs && e == NULL; i++) {
            e = s->hs[i].inode == inode ? &s->hs[i] : NULL;
        }
        if (e == NULL) {
            if (s->n_hs == s->cap_hs) {
                size_t ncap = s->cap_hs ? s->cap_hs * 2 : 64;
                hs_entry *n = realloc(s->hs, ncap * sizeof(*n));
                if (n == NULL) {
                    continue;
                }
                s->hs = n;
                s->cap_hs = ncap;
            }
            e = &s->hs[s->n_hs++];
            e->inode = inode;
            e->first_ns = now;
        }
        e->seen = 1;
        if (now - e->first_ns > s->opts.first_request_timeout_ms * 1000000ULL && *n_victims < cap) {
            victims[(*n_victims)++] = inode;
        }
    }
    fclose(f);
}

/* nng 1.5 never closes a TLS connection whose handshake does not finish (its
 * 10 s negotiation timeout does not fire there; measured), and such a
 * connection is not a pipe, so the connection table cannot see it: find
 * them among this process's sockets on the listening port and shut them
 * down, which makes nng fail the negotiation and close them. */
static void reap_handshakes(tm_rpc_server *s, uint64_t now)
{
    size_t n_ports = 0, cap_ports = 0;
    uint16_t *ports = NULL;
    pthread_mutex_lock(&s->conn_mu);
    for (size_t b = 0; b < CONN_BUCKETS; b++) {
        for (conn *k = s->conns[b]; k != NULL; k = k->next) {
            if (n_ports == cap_ports) {
                cap_ports = cap_ports ? cap_ports * 2 : 256;
                uint16_t *n = realloc(ports, cap_ports * sizeof(*n));
                if (n == NULL) {
                    pthread_mutex_unlock(&s->conn_mu);
                    free(ports);
                    return; /* try again next time */
                }
                ports = n;
            }
            ports[n_ports++] = k->rport;
        }
    }
    pthread_mutex_unlock(&s->conn_mu);
    if (n_ports > 0) {
        qsort(ports, n_ports, sizeof(*ports), cmp_u16);
    }
    unsigned long victims[256];
    size_t n_victims = 0;
    for (size_t i = 0; i < s->n_hs; i++) {
        s->hs[i].seen = 0;
    }
    hs_scan(s, "/proc/net/tcp", ports, n_ports, now, victims, &n_victims, 256);
    hs_scan(s, "/proc/net/tcp6", ports, n_ports, now, victims, &n_victims, 256);
    free(ports);
    size_t j = 0;
    for (size_t i = 0; i < s->n_hs; i++) {
        if (s->hs[i].seen) {
            s->hs[j++] = s->hs[i];
        }
    }
    s->n_hs = j;
    if (n_victims == 0) {
        return;
    }
    DIR *d = opendir("/proc/self/fd");
    struct dirent *de;
    while (d != NULL && (de = readdir(d)) != NULL) {
        char path[300], link[64];
        snprintf(path, sizeof(path), "/proc/self/fd/%s", de->d_name);
        ssize_t n = readlink(path, link, sizeof(link) - 1);
        unsigned long inode;
        if (n <= 0) {
            continue;
        }
        link[n] = '\0';
        if (sscanf(link, "socket:[%lu]", &inode) != 1) {
            continue;
        }
        for (size_t i = 0; i < n_victims; i++) {
            struct stat st;
            int fd = atoi(de->d_name);
            /* Still the same socket (fd numbers are reused)? */
            if (victims[i] == inode && fstat(fd, &st) == 0 && S_ISSOCK(st.st_mode) &&
                st.st_ino == inode) {
                if (conn_warn_ok(s)) {
                    tm_warn("rpc", "event=connection_closed reason=tls_handshake_not_finished");
                }
                shutdown(fd, SHUT_RDWR);
            }
        }
    }
    if (d != NULL) {
        closedir(d);
    }
}
#endif

/* Closes connections that sent no complete request in time and have no call
 * in progress (half-open, slowloris, idle). */
static void *reaper_main(void *arg)
{
    tm_rpc_server *s = arg;
    uint32_t step = s->opts.first_request_timeout_ms < s->opts.idle_timeout_ms
                        ? s->opts.first_request_timeout_ms
                        : s->opts.idle_timeout_ms;
    step = step / 4 < 50 ? 50 : step / 4 > 1000 ? 1000 : step / 4;
    uint64_t hs_last_ns = 0;
    (void)hs_last_ns;
    pthread_mutex_lock(&s->conn_mu);
    while (!atomic_load(&s->closing)) {
        struct timespec ts;
        tm_deadline_after_ms(&ts, step);
        pthread_cond_timedwait(&s->reaper_cv, &s->conn_mu, &ts);
        uint64_t now = tm_mono_ns();
        nng_pipe victims[64];
        int n = 0;
        for (size_t b = 0; b < CONN_BUCKETS && n < 64; b++) {
            for (conn *k = s->conns[b]; k != NULL && n < 64; k = k->next) {
                uint64_t limit_ms =
                    k->requested ? s->opts.idle_timeout_ms : s->opts.first_request_timeout_ms;
                if (k->calls == 0 && now - k->last_ns > limit_ms * 1000000ULL) {
                    k->last_ns = now; /* not again before REM_POST removes it */
                    victims[n++] = k->pipe;
                }
            }
        }
        pthread_mutex_unlock(&s->conn_mu);
        for (int i = 0; i < n; i++) {
            char peer[64];
            pipe_addr(victims[i], peer, sizeof(peer), 1);
            conn_close(s, victims[i], peer, "no_request_in_time");
        }
#ifdef __linux__
        if (atomic_load(&s->listen_port) > 0 && now - hs_last_ns >= 1000000000ULL) {
            hs_last_ns = now;
            reap_handshakes(s, now);
        }
#endif
        pthread_mutex_lock(&s->conn_mu);
    }
    pthread_mutex_unlock(&s->conn_mu);
    return NULL;
}

/* ---- reply slots ---- */

static void slot_cb(void *arg);

static slot *slot_take(tm_rpc_server *s)
{
    pthread_mutex_lock(&s->slot_mu);
    slot *sl = s->free_slots;
    if (sl != NULL) {
        s->free_slots = sl->next_free;
        pthread_mutex_unlock(&s->slot_mu);
        return sl;
    }
    if (s->n_slots >= SLOTS_MAX || (sl = calloc(1, sizeof(*sl))) == NULL) {
        pthread_mutex_unlock(&s->slot_mu);
        return NULL;
    }
    sl->srv = s;
    if (nng_aio_alloc(&sl->aio, slot_cb, sl) != 0) {
        pthread_mutex_unlock(&s->slot_mu);
        free(sl);
        return NULL;
    }
    if (nng_ctx_open(&sl->ctx, s->sock) != 0) {
        pthread_mutex_unlock(&s->slot_mu);
        nng_aio_free(sl->aio);
        free(sl);
        return NULL;
    }
    sl->next_all = s->all_slots;
    s->all_slots = sl;
    s->n_slots++;
    pthread_mutex_unlock(&s->slot_mu);
    return sl;
}

static void slot_release(slot *sl)
{
    tm_rpc_server *s = sl->srv;
    if (sl->conn != 0) {
        conn_end(s, sl->conn);
    }
    sl->conn = 0;
    pthread_mutex_lock(&s->slot_mu);
    sl->next_free = s->free_slots;
    s->free_slots = sl;
    pthread_mutex_unlock(&s->slot_mu);
}

static void slot_send(slot *sl, void *buf, size_t len)
{
    nng_msg *m = NULL;
    if (atomic_load(&sl->srv->closing) || buf == NULL || nng_msg_alloc(&m, 0) != 0 ||
        nng_msg_append(m, buf, len) != 0) {
        /* Going away, or no reply could be built: drop it (the client's
         * resend retries); the context forgets the request on its next use. */
        if (m != NULL) {
            nng_msg_free(m);
        }
        free(buf);
        slot_release(sl);
        return;
    }
    free(buf);
    nng_aio_set_msg(sl->aio, m);
    nng_aio_set_timeout(sl->aio, (nng_duration)sl->srv->opts.send_timeout_ms);
    nng_ctx_send(sl->ctx, sl->aio);
}

static void slot_cb(void *arg)
{
    slot *sl = arg;
    int rv = nng_aio_result(sl->aio);
    if (rv != 0) {
        nng_msg_free(nng_aio_get_msg(sl->aio));
        nng_aio_set_msg(sl->aio, NULL);
    }
    if (rv == NNG_ETIMEDOUT) {
        /* The client does not read its replies: it loses its connection
         * (and every other reply queued on it), nobody else waits. */
        char peer[64];
        pipe_addr(sl->pipe, peer, sizeof(peer), 1);
        conn_close(sl->srv, sl->pipe, peer, "reply_not_read");
    }
    slot_release(sl);
}

static void slot_done(void *arg, void *reply, size_t len)
{
    slot_send(arg, reply, len);
}

/* ---- workers ---- */

static void worker_cb(void *arg)
{
    worker *w = arg;
    tm_rpc_server *s = w->srv;
    int rv = nng_aio_result(w->aio);
    if (rv != 0) {
        if (rv == NNG_ECLOSED || atomic_load(&s->closing)) {
            return;
        }
        nng_ctx_recv(w->ctx, w->aio);
        return;
    }
    nng_msg *msg = nng_aio_get_msg(w->aio);
    nng_pipe pipe = nng_msg_get_pipe(msg);
    int pid = nng_pipe_id(pipe);
    uint32_t conn_id = pid > 0 ? (uint32_t)pid : 0;
    char peer[64];
    pipe_addr(pipe, peer, sizeof(peer), 1);
    slot *sl = NULL;
    if (conn_id != 0 && conn_begin(s, conn_id) != 0) {
        conn_close(s, pipe, peer, "too_many_calls_on_connection");
    } else if ((sl = slot_take(s)) == NULL) {
        if (conn_id != 0) {
            conn_end(s, conn_id);
        }
        if (conn_warn_ok(s)) {
            tm_warn("rpc", "event=request_dropped peer=%s reason=reply_slots_exhausted", peer);
        }
    }
    if (sl == NULL) {
        nng_msg_free(msg);
        if (!atomic_load(&s->closing)) {
            nng_ctx_recv(w->ctx, w->aio); /* forgets the dropped request */
        }
        return;
    }
    /* The request's context goes with its reply; the worker takes the
     * slot's idle one and is free as soon as the handler returns. */
    nng_ctx mine = w->ctx;
    w->ctx = sl->ctx;
    sl->ctx = mine;
    sl->pipe = pipe;
    sl->conn = conn_id;
    void *out = NULL;
    size_t len = 0;
    int r = tm_rpc_server_handle_conn(s, nng_msg_body(msg), nng_msg_len(msg), peer, conn_id, &out,
                                      &len, slot_done, sl);
    nng_msg_free(msg);
    if (r != TM_RPC_PENDING) {
        slot_send(sl, r == TM_OK ? out : NULL, len);
    }
    if (!atomic_load(&s->closing)) {
        nng_ctx_recv(w->ctx, w->aio);
    }
}

int tm_rpc_server_start(tm_rpc_server *s, tm_err *err)
{
    int rv;
    if (s->url == NULL) {
        return tm_err_set(err, TM_ECONFIG, "rpc server: no listen URL");
    }
    for (size_t i = 0; i < s->n_services; i++) {
        const ProtobufCServiceDescriptor *svc = s->services[i];
        for (unsigned j = 0; j < svc->n_methods; j++) {
            char full[TM_RPC_METHOD_MAX];
            snprintf(full, sizeof(full), "%s.%s", svc->short_name, svc->methods[j].name);
            if (find_method(s, full) == NULL) {
                tm_warn("rpc",
                        "method=%s msg=\"declared without a handler; answers "
                        "UNIMPLEMENTED\"",
                        full);
            }
        }
    }
    if ((rv = nng_rep0_open(&s->sock)) != 0) {
        return tm_err_set(err, TM_EINTERNAL, "rpc: open REP socket: %s", nng_strerror(rv));
    }
    s->sock_open = 1;
    nng_pipe_notify(s->sock, NNG_PIPE_EV_ADD_PRE, pipe_event, s);
    nng_pipe_notify(s->sock, NNG_PIPE_EV_REM_POST, pipe_event, s);
    nng_socket_set_size(s->sock, NNG_OPT_RECVMAXSZ, s->opts.max_message_bytes);
    if (pthread_create(&s->reaper, NULL, reaper_main, s) != 0) {
        return tm_err_set(err, TM_EINTERNAL, "rpc: cannot start the connection reaper");
    }
    s->reaper_started = 1;
    if ((rv = nng_listener_create(&s->listener, s->sock, s->url)) != 0) {
        return tm_err_set(err, TM_ECONFIG, "rpc listen %s: %s", s->url, nng_strerror(rv));
    }
    if (strncmp(s->url, "tls+", 4) == 0) {
        int rc = tm_tls_listener_setup(s->listener, s->tls, err);
        if (rc != TM_OK) {
            return tm_err_prefix(err, "rpc listen %s", s->url);
        }
    }
    if ((rv = nng_listener_start(s->listener, 0)) != 0) {
        return tm_err_set(err, rv == NNG_EADDRINUSE ? TM_EBUSY : TM_EIO, "rpc listen %s: %s",
                          s->url, nng_strerror(rv));
    }
    if (strncmp(s->url, "tls+", 4) == 0) {
        int port = 0;
        const char *colon = strrchr(s->url, ':');
        if (nng_listener_get_int(s->listener, NNG_OPT_TCP_BOUND_PORT, &port) != 0 || port <= 0) {
            port = colon != NULL ? atoi(colon + 1) : 0;
        }
        atomic_store(&s->listen_port, port);
    }
    s->workers = calloc((size_t)s->opts.contexts, sizeof(*s->workers));
    if (s->workers == NULL) {
        return tm_err_set(err, TM_ENOMEM, "rpc: out of memory");
    }
    for (int i = 0; i < s->opts.contexts; i++) {
        worker *w = &s->workers[i];
        w->srv = s;
        if ((rv = nng_aio_alloc(&w->aio, worker_cb, w)) != 0) {
            return tm_err_set(err, TM_EINTERNAL, "rpc: context %d: %s", i, nng_strerror(rv));
        }
        if ((rv = nng_ctx_open(&w->ctx, s->sock)) != 0) {
            nng_aio_free(w->aio);
            return tm_err_set(err, TM_EINTERNAL, "rpc: context %d: %s", i, nng_strerror(rv));
        }
        s->n_workers++;
        nng_ctx_recv(w->ctx, w->aio);
    }
    s->started = 1;
    return TM_OK;
}

int tm_rpc_server_port(tm_rpc_server *s)
{
    int port = 0;
    if (!s->started || nng_listener_get_int(s->listener, NNG_OPT_TCP_BOUND_PORT, &port) != 0) {
        return 0;
    }
    return port;
}

void tm_rpc_server_free(tm_rpc_server *s)
{
    if (s == NULL) {
        return;
    }
    /* Stop every worker and reply slot first (cancel its operation, wait for
     * its callback, which no longer re-arms), close the contexts, then the
     * socket: closing the socket under live contexts could wait for them
     * forever. */
    atomic_store(&s->closing, 1);
    if (s->reaper_started) {
        pthread_mutex_lock(&s->conn_mu);
        pthread_cond_signal(&s->reaper_cv);
        pthread_mutex_unlock(&s->conn_mu);
        pthread_join(s->reaper, NULL);
    }
    for (int i = 0; i < s->n_workers; i++) {
        nng_aio_stop(s->workers[i].aio);
    }
    for (slot *sl = s->all_slots; sl != NULL; sl = sl->next_all) {
        nng_aio_stop(sl->aio);
    }
    for (int i = 0; i < s->n_workers; i++) {
        nng_ctx_close(s->workers[i].ctx);
    }
    for (slot *sl = s->all_slots; sl != NULL; sl = sl->next_all) {
        nng_ctx_close(sl->ctx);
    }
    if (s->sock_open) {
        nng_close(s->sock);
    }
    for (int i = 0; i < s->n_workers; i++) {
        nng_aio_free(s->workers[i].aio);
    }
    free(s->workers);
    while (s->all_slots != NULL) {
        slot *sl = s->all_slots;
        s->all_slots = sl->next_all;
        nng_aio_free(sl->aio);
        free(sl);
    }
    for (size_t b = 0; b < CONN_BUCKETS; b++) {
        while (s->conns[b] != NULL) {
            conn *k = s->conns[b];
            s->conns[b] = k->next;
            free(k);
        }
    }
    if (s->fifo != NULL) {
        for (size_t i = 0; i < s->fifo_cap; i++) {
            if (s->fifo[i] != NULL) {
                cache_unlink(s, s->fifo[i]);
            }
        }
    }
    free(s->fifo);
    free(s->buckets);
    free(s->hs);
    free(s->tls);
    free(s->url);
    pthread_mutex_destroy(&s->cache_mu);
    pthread_mutex_destroy(&s->slot_mu);
    pthread_mutex_destroy(&s->conn_mu);
    pthread_cond_destroy(&s->reaper_cv);
    free(s);
}
