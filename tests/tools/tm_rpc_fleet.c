/*
 * tm_rpc_fleet - N simulated agents against a real coordinator (integration
 * tests): each agent is a thread with its own tm_rpc_client (its own
 * connection), registers with the enrollment token, then heartbeats every
 * interval like tidemark-agent does.
 *
 * Usage: tm_rpc_fleet URL AGENTS INTERVAL_MS SECONDS [TOKEN_ENV [CLEAN_SECONDS]]
 *
 * Prints "READY <registered>" once every agent has registered (or given up),
 * then heartbeats for CLEAN_SECONDS (default 0), prints "MARK", and
 * heartbeats for SECONDS more; then one JSON line of figures for the part
 * after MARK: beats, failures, latency p50/p99/max in ms, the longest gap
 * between two successful beats of one agent (what decides "stale"), and
 * clean_p50_ms/clean_p99_ms for the part before MARK (the same machine's
 * noise, for comparison). Exit 0 if it could run (what the figures mean is
 * for the test to judge).
 */
#include "common/rpc.h"
#include "common/util.h"

#include "tidemark.pb-c.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

typedef struct fleet_agent {
    int index;
    tm_rpc_client *rpc;
    int registered;
    uint64_t *lat_ns;
    size_t n_lat, cap_lat;
    uint64_t *clean_ns; /* before MARK */
    size_t n_clean, cap_clean;
    uint64_t failed;
    uint64_t max_gap_ns;
    char first_error[160];
} fleet_agent;

static const char *g_url;
static const char *g_token;
static uint32_t g_interval_ms;
static atomic_int g_registered_done;
static pthread_mutex_t g_mu = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t g_cv = PTHREAD_COND_INITIALIZER;
static int g_go; /* heartbeats may start */
static uint64_t g_end_ns;
static _Atomic uint64_t g_mark_ns;

/* Append v to a growing array; a lost sample beats a crash. */
static void push(uint64_t **a, size_t *n, size_t *cap, uint64_t v)
{
    if (*n == *cap) {
        size_t ncap = *cap ? *cap * 2 : 64;
        uint64_t *p = realloc(*a, ncap * sizeof(*p));
        if (p == NULL) {
            return;
        }
        *a = p;
        *cap = ncap;
    }
    (*a)[(*n)++] = v;
}

static void sleep_ns(uint64_t ns)
{
    struct timespec ts = {.tv_sec = (time_t)(ns / 1000000000ULL),
                          .tv_nsec = (long)(ns % 1000000000ULL)};
    while (nanosleep(&ts, &ts) != 0) {
    }
}

static int do_register(fleet_agent *a)
{
    char host[32], tname[40];
    Tidemark__RegisterRequest req = TIDEMARK__REGISTER_REQUEST__INIT;
    Tidemark__Target target = TIDEMARK__TARGET__INIT, *tp = &target;
    snprintf(host, sizeof(host), "fleet-%04d", a->index);
    snprintf(tname, sizeof(tname), "fleet-%04d-pg", a->index);
    target.name = tname;
    target.has_kind = 1;
    target.kind = TIDEMARK__TARGET_KIND__POSTGRES;
    req.enrollment_token = (char *)g_token;
    req.hostname = host;
    req.version = "fleet";
    req.n_targets = 1;
    req.targets = &tp;
    for (int attempt = 0; attempt < 10; attempt++) {
        Tidemark__RegisterResponse *resp = NULL;
        tm_err err = {0};
        int rc = tm_rpc_client_call(a->rpc, "Coordinator.RegisterAgent", &req.base,
                                    &tidemark__register_response__descriptor,
                                    (ProtobufCMessage **)&resp, 10000, NULL, &err);
        if (rc == TM_OK) {
            tm_rpc_client_set_agent(a->rpc, resp->agent_id, resp->agent_secret);
            tidemark__register_response__free_unpacked(resp, NULL);
            return TM_OK;
        }
        snprintf(a->first_error, sizeof(a->first_error), "%.150s", err.msg);
        sleep_ns(200000000ULL);
    }
    return TM_EUNAVAIL;
}

static void *agent_main(void *arg)
{
    fleet_agent *a = arg;
    a->registered = do_register(a) == TM_OK;
    atomic_fetch_add(&g_registered_done, 1);
    pthread_mutex_lock(&g_mu);
    pthread_cond_broadcast(&g_cv);
    while (!g_go) {
        pthread_cond_wait(&g_cv, &g_mu);
    }
    pthread_mutex_unlock(&g_mu);
    if (!a->registered) {
        return NULL;
    }
    /* Spread the fleet over the interval, as real agents are. */
    sleep_ns((uint64_t)(a->index % 97) * g_interval_ms * 1000000ULL / 97);
    uint64_t last_ok = tm_mono_ns(), seq = 0;
    while (tm_mono_ns() < g_end_ns) {
        uint64_t t0 = tm_mono_ns();
        Tidemark__HeartbeatRequest req = TIDEMARK__HEARTBEAT_REQUEST__INIT;
        Tidemark__HeartbeatResponse *resp = NULL;
        tm_err err = {0};
        req.has_seq = 1;
        req.seq = ++seq;
        int rc = tm_rpc_client_call(a->rpc, "Coordinator.Heartbeat", &req.base,
                                    &tidemark__heartbeat_response__descriptor,
                                    (ProtobufCMessage **)&resp, 5000, NULL, &err);
        uint64_t t1 = tm_mono_ns();
        int clean = t0 < atomic_load(&g_mark_ns);
        if (rc == TM_OK) {
            tidemark__heartbeat_response__free_unpacked(resp, NULL);
            if (clean) {
                push(&a->clean_ns, &a->n_clean, &a->cap_clean, t1 - t0);
            } else {
                push(&a->lat_ns, &a->n_lat, &a->cap_lat, t1 - t0);
            }
            if (t1 - last_ok > a->max_gap_ns) {
                a->max_gap_ns = t1 - last_ok;
            }
            last_ok = t1;
        } else {
            a->failed++;
            if (a->first_error[0] == '\0') {
                snprintf(a->first_error, sizeof(a->first_error), "%.150s", err.msg);
            }
        }
        uint64_t next = t0 + (uint64_t)g_interval_ms * 1000000ULL;
        uint64_t now = tm_mono_ns();
        if (next > now) {
            sleep_ns(next - now);
        }
    }
    return NULL;
}

static int cmp_u64(const void *x, const void *y)
{
    uint64_t a = *(const uint64_t *)x, b = *(const uint64_t *)y;
    return a < b ? -1 : a > b;
}

int main(int argc, char **argv)
{
    if (argc < 5) {
        fprintf(stderr, "usage: tm_rpc_fleet URL AGENTS INTERVAL_MS SECONDS [TOKEN_ENV]\n");
        return 2;
    }
    g_url = argv[1];
    int n = atoi(argv[2]);
    g_interval_ms = (uint32_t)atoi(argv[3]);
    int seconds = atoi(argv[4]);
    g_token = getenv(argc > 5 ? argv[5] : "TM_ENROLL");
    int clean_seconds = argc > 6 ? atoi(argv[6]) : 0;
    if (n <= 0 || n > 10000 || g_interval_ms < 10 || seconds <= 0 || g_token == NULL) {
        fprintf(stderr, "tm_rpc_fleet: bad arguments or no enrollment token\n");
        return 2;
    }
    setvbuf(stdout, NULL, _IOLBF, 0);
    fleet_agent *agents = calloc((size_t)n, sizeof(*agents));
    pthread_t *th = calloc((size_t)n, sizeof(*th));
    pthread_attr_t attr;
    pthread_attr_init(&attr);
    pthread_attr_setstacksize(&attr, 256 * 1024);
    if (agents == NULL || th == NULL) {
        return 1;
    }
    for (int i = 0; i < n; i++) {
        tm_err err = {0};
        tm_rpc_client_opts o = {.url = g_url};
        agents[i].index = i;
        if (tm_rpc_client_new(&agents[i].rpc, &o, &err) != TM_OK) {
            fprintf(stderr, "tm_rpc_fleet: %s\n", err.msg);
            return 1;
        }
        if (pthread_create(&th[i], &attr, agent_main, &agents[i]) != 0) {
            fprintf(stderr, "tm_rpc_fleet: cannot start agent %d\n", i);
            return 1;
        }
        sleep_ns(2000000ULL); /* a fleet does not connect in one instant */
    }
    pthread_mutex_lock(&g_mu);
    while (atomic_load(&g_registered_done) < n) {
        pthread_cond_wait(&g_cv, &g_mu);
    }
    int registered = 0;
    for (int i = 0; i < n; i++) {
        registered += agents[i].registered;
    }
    printf("READY %d\n", registered);
    uint64_t mark = tm_mono_ns() + (uint64_t)clean_seconds * 1000000000ULL;
    atomic_store(&g_mark_ns, mark);
    g_end_ns = mark + (uint64_t)seconds * 1000000000ULL;
    g_go = 1;
    pthread_cond_broadcast(&g_cv);
    pthread_mutex_unlock(&g_mu);
    if (clean_seconds > 0) {
        sleep_ns(mark - tm_mono_ns());
        printf("MARK\n");
    }

    size_t total = 0;
    uint64_t failed = 0, max_gap = 0;
    const char *err1 = "";
    for (int i = 0; i < n; i++) {
        pthread_join(th[i], NULL);
        total += agents[i].n_lat;
        failed += agents[i].failed;
        max_gap = agents[i].max_gap_ns > max_gap ? agents[i].max_gap_ns : max_gap;
        if (err1[0] == '\0' && agents[i].first_error[0] != '\0') {
            err1 = agents[i].first_error;
        }
    }
    uint64_t *all = malloc((total ? total : 1) * sizeof(*all));
    size_t k = 0;
    for (int i = 0; all != NULL && i < n; i++) {
        if (agents[i].n_lat > 0) { /* none: lat_ns may be NULL */
            memcpy(all + k, agents[i].lat_ns, agents[i].n_lat * sizeof(*all));
        }
        k += agents[i].n_lat;
    }
    qsort(all, k, sizeof(*all), cmp_u64);
    size_t kc = 0;
    for (int i = 0; i < n; i++) {
        kc += agents[i].n_clean;
    }
    uint64_t *cl = malloc((kc ? kc : 1) * sizeof(*cl));
    size_t m = 0;
    for (int i = 0; cl != NULL && i < n; i++) {
        if (agents[i].n_clean > 0) { /* none: clean_ns is NULL, UB for memcpy */
            memcpy(cl + m, agents[i].clean_ns, agents[i].n_clean * sizeof(*cl));
        }
        m += agents[i].n_clean;
    }
    qsort(cl, m, sizeof(*cl), cmp_u64);
    double c50 = m ? (double)cl[m / 2] / 1e6 : 0;
    double c99 = m ? (double)cl[(m * 99) / 100] / 1e6 : 0;
    double p50 = k ? (double)all[k / 2] / 1e6 : 0;
    double p99 = k ? (double)all[(k * 99) / 100] / 1e6 : 0;
    double mx = k ? (double)all[k - 1] / 1e6 : 0;
    char esc[200];
    size_t j = 0;
    for (const char *p = err1; *p && j + 2 < sizeof(esc); p++) {
        esc[j++] = (*p == '"' || *p == '\\') ? '\'' : *p;
    }
    esc[j] = '\0';
    printf("{\"agents\": %d, \"registered\": %d, \"beats\": %zu, \"failed\": %llu, "
           "\"p50_ms\": %.3f, \"p99_ms\": %.3f, \"max_ms\": %.3f, \"max_gap_ms\": %.1f, "
           "\"clean_p50_ms\": %.3f, \"clean_p99_ms\": %.3f, \"first_error\": \"%s\"}\n",
           n, registered, k, (unsigned long long)failed, p50, p99, mx, (double)max_gap / 1e6, c50,
           c99, esc);
    for (int i = 0; i < n; i++) {
        tm_rpc_client_free(agents[i].rpc);
        free(agents[i].lat_ns);
        free(agents[i].clean_ns);
    }
    free(all);
    free(cl);
    free(agents);
    free(th);
    return 0;
}
