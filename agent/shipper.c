/*
 * shipper.c - one thread per shipping target (see shipper.h), and the
 * tm_ship_* helpers an engine's shipper uses (engine.h).
 */
#include "agent/shipper.h"
#include "agent/repo/repo_log.h"
#include "agent/repo/repository.h"
#include "common/log.h"
#include "common/util.h"

#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#define BACKOFF_MIN_MS 1000
#define BACKOFF_MAX_MS 60000
/* A run this long was healthy: the next failure starts the backoff again. */
#define HEALTHY_RUN_MS 60000

struct tm_ship_ctx {
    tm_shippers *s;
    const tm_target_conf *t;
    const tm_engine *e;
    tm_repo_set *rs; /* opened on the first store */
    tm_log_store *ls;
    pthread_t thread;
    int started;
    /* Guarded by status_mu (read by the log reporter's thread). */
    tm_log_status st;
    unsigned runs;
    tm_ship_ctx *next_status; /* the process's list of shipping targets */
};

struct tm_shippers {
    const tm_agent_conf *conf;
    void (*kick)(void *arg, const char *target);
    void *kick_arg;
    atomic_int stopping;
    pthread_mutex_t mu;
    pthread_cond_t cv;
    tm_ship_ctx *ctx;
    size_t n;
};

/* Every running shipper of the process, for tm_ship_status (the log
 * reporter does not know the daemon's shippers). */
static pthread_mutex_t status_mu = PTHREAD_MUTEX_INITIALIZER;
static tm_ship_ctx *status_list;

static int64_t now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

const tm_agent_conf *tm_ship_conf(tm_ship_ctx *ctx)
{
    return ctx->s->conf;
}

int tm_ship_stopping(tm_ship_ctx *ctx)
{
    return atomic_load(&ctx->s->stopping);
}

int tm_ship_wait(tm_ship_ctx *ctx, uint32_t ms)
{
    tm_shippers *s = ctx->s;
    struct timespec ts;
    tm_deadline_after_ms(&ts, ms);
    pthread_mutex_lock(&s->mu);
    while (!atomic_load(&s->stopping)) {
        if (pthread_cond_timedwait(&s->cv, &s->mu, &ts) != 0) {
            break;
        }
    }
    pthread_mutex_unlock(&s->mu);
    return tm_ship_stopping(ctx);
}

int tm_ship_state_dir(tm_ship_ctx *ctx, char *out, size_t cap, tm_err *err)
{
    if ((size_t)snprintf(out, cap, "%s/ship/%s", ctx->s->conf->state_dir, ctx->t->name) >= cap) {
        return tm_err_set(err, TM_EINVAL, "shipper state directory of %s: path too long",
                          ctx->t->name);
    }
    int rc = tm_mkdir_p(out, 0700, err);
    return rc == TM_OK ? TM_OK : tm_err_prefix(err, "shipper state directory");
}

int tm_ship_store(tm_ship_ctx *ctx, const char *rel, int fd, tm_err *err)
{
    int rc = TM_OK;
    if (ctx->ls == NULL) {
        rc = tm_repo_set_open(&ctx->rs, ctx->s->conf, TM_REPO_KEYS, err);
        if (rc == TM_OK) {
            rc = tm_log_store_open(&ctx->ls, ctx->rs, ctx->t->name, err);
        }
        if (rc != TM_OK) {
            tm_repo_set_free(ctx->rs);
            ctx->rs = NULL;
            return rc;
        }
    }
    return tm_log_push(ctx->ls, rel, fd, 0, NULL, NULL, err);
}

int tm_ship_store_buf(tm_ship_ctx *ctx, const char *rel, const void *buf, size_t len, tm_err *err)
{
    /* The log store reads a file: an anonymous one in memory. */
    int fd = memfd_create("tidemark-ship", MFD_CLOEXEC);
    if (fd < 0) {
        return tm_err_set(err, TM_EIO, "store %s: memfd_create: %s", rel, strerror(errno));
    }
    const char *p = buf;
    size_t off = 0;
    while (off < len) {
        ssize_t w = write(fd, p + off, len - off);
        if (w < 0 && errno == EINTR) {
            continue;
        }
        if (w <= 0) {
            int e = errno;
            close(fd);
            return tm_err_set(err, TM_EIO, "store %s: write: %s", rel, strerror(e));
        }
        off += (size_t)w;
    }
    int rc = tm_ship_store(ctx, rel, fd, err);
    close(fd);
    return rc;
}

void tm_ship_report(tm_ship_ctx *ctx, const tm_log_range *r)
{
    pthread_mutex_lock(&status_mu);
    ctx->st.shipped_count += r->objects;
    snprintf(ctx->st.last_shipped, sizeof(ctx->st.last_shipped), "%s", r->end);
    ctx->st.last_shipped_ms = now_ms();
    pthread_mutex_unlock(&status_mu);
    tm_debug("shipper", "event=shipped target=%s chain=%u start=%s end=%s objects=%u bytes=%llu",
             ctx->t->name, r->chain, r->start, r->end, r->objects, (unsigned long long)r->bytes);
    if (ctx->s->kick != NULL) {
        ctx->s->kick(ctx->s->kick_arg, ctx->t->name);
    }
}

void tm_ship_chain_reset(tm_ship_ctx *ctx, const char *why, const char *from)
{
    pthread_mutex_lock(&status_mu);
    ctx->st.chain_resets++;
    ctx->st.last_chain_reset_ms = now_ms();
    snprintf(ctx->st.chain_reset, sizeof(ctx->st.chain_reset), "%s", why ? why : "");
    snprintf(ctx->st.chain_reset_from, sizeof(ctx->st.chain_reset_from), "%s",
             from != NULL && from[0] ? from : ctx->st.last_shipped);
    pthread_mutex_unlock(&status_mu);
    if (ctx->s->kick != NULL) {
        ctx->s->kick(ctx->s->kick_arg, ctx->t->name);
    }
}

void tm_ship_pending(tm_ship_ctx *ctx, uint32_t count, uint64_t bytes)
{
    pthread_mutex_lock(&status_mu);
    ctx->st.pending_count = count;
    ctx->st.pending_bytes = bytes;
    pthread_mutex_unlock(&status_mu);
}

void tm_ship_snapshot_only(tm_ship_ctx *ctx, const char *why)
{
    pthread_mutex_lock(&status_mu);
    snprintf(ctx->st.snapshot_only, sizeof(ctx->st.snapshot_only), "%s", why ? why : "");
    pthread_mutex_unlock(&status_mu);
}

int tm_ship_status(const char *target, tm_log_status *st)
{
    int found = 0;
    pthread_mutex_lock(&status_mu);
    for (tm_ship_ctx *c = status_list; c != NULL && !found; c = c->next_status) {
        if (strcmp(c->t->name, target) == 0) {
            *st = c->st;
            found = 1;
        }
    }
    pthread_mutex_unlock(&status_mu);
    return found;
}

unsigned tm_ship_runs(const char *target)
{
    unsigned runs = 0;
    pthread_mutex_lock(&status_mu);
    for (tm_ship_ctx *c = status_list; c != NULL; c = c->next_status) {
        if (strcmp(c->t->name, target) == 0) {
            runs = c->runs;
        }
    }
    pthread_mutex_unlock(&status_mu);
    return runs;
}

static void note_failure(tm_ship_ctx *ctx, const char *msg)
{
    pthread_mutex_lock(&status_mu);
    ctx->st.failed_count++;
    ctx->st.last_failed_ms = now_ms();
    snprintf(ctx->st.last_failed, sizeof(ctx->st.last_failed), "%s", ctx->st.last_shipped);
    snprintf(ctx->st.last_failure, sizeof(ctx->st.last_failure), "%s", msg);
    pthread_mutex_unlock(&status_mu);
}

static void *ship_main(void *arg)
{
    tm_ship_ctx *ctx = arg;
    uint32_t backoff = BACKOFF_MIN_MS;
    while (!tm_ship_stopping(ctx)) {
        pthread_mutex_lock(&status_mu);
        ctx->runs++;
        pthread_mutex_unlock(&status_mu);
        int64_t started = now_ms();
        tm_err err = {0};
        int rc = ctx->e->ship(ctx, ctx->t, &err);
        if (tm_ship_stopping(ctx)) {
            break;
        }
        if (rc == TM_OK) {
            /* Only a stop may end a shipper: anything else is a fault. */
            tm_err_set(&err, TM_EINTERNAL, "the %s shipper returned without being stopped",
                       ctx->e->name);
        }
        if (now_ms() - started >= HEALTHY_RUN_MS) {
            backoff = BACKOFF_MIN_MS;
        }
        tm_warn("shipper", "event=ship_failed target=%s retry_ms=%u msg=\"%s\"", ctx->t->name,
                backoff, err.msg);
        note_failure(ctx, err.msg);
        /* Repositories may have been the problem: open them afresh. */
        tm_log_store_free(ctx->ls);
        ctx->ls = NULL;
        tm_repo_set_free(ctx->rs);
        ctx->rs = NULL;
        if (tm_ship_wait(ctx, backoff)) {
            break;
        }
        backoff = backoff * 2 > BACKOFF_MAX_MS ? BACKOFF_MAX_MS : backoff * 2;
    }
    return NULL;
}

size_t tm_shippers_count(const tm_shippers *s)
{
    size_t n = 0;
    for (size_t i = 0; s != NULL && i < s->n; i++) {
        n += s->ctx[i].started;
    }
    return n;
}

int tm_shippers_start(tm_shippers **out, const tm_agent_conf *conf,
                      void (*kick)(void *arg, const char *target), void *kick_arg, tm_err *err)
{
    *out = NULL;
    tm_shippers *s = calloc(1, sizeof(*s));
    if (s == NULL || (s->ctx = calloc(conf->n_targets + 1, sizeof(*s->ctx))) == NULL) {
        free(s);
        return tm_err_set(err, TM_ENOMEM, "shipper: out of memory");
    }
    s->conf = conf;
    s->kick = kick;
    s->kick_arg = kick_arg;
    pthread_mutex_init(&s->mu, NULL);
    pthread_cond_init(&s->cv, NULL);
    *out = s;
    for (size_t i = 0; i < conf->n_targets; i++) {
        const tm_engine *e = tm_engine_of(&conf->targets[i]);
        if (e == NULL || e->ship == NULL) {
            continue;
        }
        tm_ship_ctx *c = &s->ctx[s->n++];
        c->s = s;
        c->t = &conf->targets[i];
        c->e = e;
        c->st.readable = 1;
        pthread_mutex_lock(&status_mu);
        c->next_status = status_list;
        status_list = c;
        pthread_mutex_unlock(&status_mu);
        if (pthread_create(&c->thread, NULL, ship_main, c) != 0) {
            return tm_err_set(err, TM_EINTERNAL, "shipper of %s: cannot start thread", c->t->name);
        }
        c->started = 1;
        tm_info("shipper", "event=started target=%s engine=%s", c->t->name, e->name);
    }
    return TM_OK;
}

void tm_shippers_stop(tm_shippers *s)
{
    if (s == NULL) {
        return;
    }
    atomic_store(&s->stopping, 1);
    pthread_mutex_lock(&s->mu);
    pthread_cond_broadcast(&s->cv);
    pthread_mutex_unlock(&s->mu);
}

void tm_shippers_free(tm_shippers *s)
{
    if (s == NULL) {
        return;
    }
    tm_shippers_stop(s);
    for (size_t i = 0; i < s->n; i++) {
        tm_ship_ctx *c = &s->ctx[i];
        if (c->started) {
            pthread_join(c->thread, NULL);
        }
        pthread_mutex_lock(&status_mu);
        for (tm_ship_ctx **pp = &status_list; *pp != NULL; pp = &(*pp)->next_status) {
            if (*pp == c) {
                *pp = c->next_status;
                break;
            }
        }
        pthread_mutex_unlock(&status_mu);
        tm_log_store_free(c->ls);
        tm_repo_set_free(c->rs);
    }
    pthread_cond_destroy(&s->cv);
    pthread_mutex_destroy(&s->mu);
    free(s->ctx);
    free(s);
}
