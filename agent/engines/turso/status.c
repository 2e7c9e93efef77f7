/*
 * status.c - what status shows of a Turso target beside Tidemark's own
 * copies (the engine's provider_window hook): every database of the target
 * exists, and the provider's point-in-time window for the organization's
 * plan (docs.turso.tech: free 24 h; developer, scaler, pro 10, 30, 90 days;
 * `provider_pitr:` overrides it). A refused token or a missing database is
 * reported as the error, which the coordinator alerts on
 * (provider_check_failed).
 *
 * The log reporter asks every few heartbeats; the API is asked once per
 * check_interval per target (default 5 minutes) and the answer cached.
 */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "agent/engines/turso/turso.h"
#include "common/log.h"
#include "common/util.h"

#define CACHE_MAX 64

typedef struct cached {
    char target[TM_TURSO_NAME_MAX];
    int64_t asked_ms;
    int64_t window_s;
    tm_provider_window w;
} cached;

static cached cache[CACHE_MAX];
static pthread_mutex_t cache_mu = PTHREAD_MUTEX_INITIALIZER;

static void ask(const tm_turso_target_conf *tc, tm_provider_window *w, int64_t *window_s)
{
    tm_turso_http *h = NULL;
    tm_turso_db *dbs = NULL;
    size_t n = 0;
    char plan[64] = "unknown";
    tm_err err = {0};
    int rc = tm_turso_http_for(tc, NULL, &h, &err);
    if (rc == TM_OK) {
        rc = tm_turso_api_targets(tc, h, &dbs, &n, &err);
    }
    if (rc == TM_OK && n == 0) {
        rc = tm_err_set(&err, TM_ENOENT, "group %s holds no database", tc->group);
    }
    if (rc == TM_OK) {
        rc = tm_turso_api_plan(tc, h, plan, sizeof(plan), window_s, &err);
    }
    if (rc == TM_OK && tc->provider_pitr_s > 0) {
        *window_s = tc->provider_pitr_s;
    }
    if (rc != TM_OK) {
        snprintf(w->error, sizeof(w->error), "%s", err.msg);
    } else if (*window_s == 0) {
        snprintf(w->error, sizeof(w->error),
                 "plan %s of organization %s has no known point-in-time window (set "
                 "provider_pitr: in the target's turso: block)",
                 plan, tc->organization);
    } else {
        snprintf(w->source, sizeof(w->source), "turso plan %s: %lld days%s, %zu database%s", plan,
                 (long long)(*window_s / 86400), tc->provider_pitr_s > 0 ? " (configured)" : "", n,
                 n == 1 ? "" : "s");
    }
    if (rc != TM_OK) {
        tm_warn("turso", "event=provider_check_failed organization=%s msg=\"%s\"", tc->organization,
                err.msg);
    }
    free(dbs);
    tm_turso_http_free(h);
}

void tm_turso_provider_window(const tm_target_conf *t, tm_provider_window *w)
{
    const tm_turso_target_conf *tc = tm_turso_target(t);
    if (tc == NULL) {
        return;
    }
    int64_t now_ms = tm_now_ms();
    pthread_mutex_lock(&cache_mu);
    cached *c = NULL;
    for (size_t i = 0; i < CACHE_MAX && c == NULL; i++) {
        if (strcmp(cache[i].target, t->name) == 0) {
            c = &cache[i];
        }
    }
    for (size_t i = 0; i < CACHE_MAX && c == NULL; i++) {
        if (cache[i].target[0] == '\0') {
            c = &cache[i];
            snprintf(c->target, sizeof(c->target), "%s", t->name);
        }
    }
    int fresh = c != NULL && c->asked_ms > 0 && now_ms - c->asked_ms < tc->check_interval_ms;
    tm_provider_window got;
    int64_t window_s = 0;
    if (fresh) {
        got = c->w;
        window_s = c->window_s;
    }
    pthread_mutex_unlock(&cache_mu);
    if (!fresh) {
        /* Asked outside the lock: one slow API call must not hold others. */
        memset(&got, 0, sizeof(got));
        ask(tc, &got, &window_s);
        pthread_mutex_lock(&cache_mu);
        if (c != NULL) {
            c->w = got;
            c->window_s = window_s;
            c->asked_ms = now_ms;
        }
        pthread_mutex_unlock(&cache_mu);
    }
    *w = got;
    if (w->error[0] == '\0' && window_s > 0) {
        /* The window slides: it ends now, whenever the plan was asked. */
        w->end = now_ms / 1000;
        w->start = w->end - window_s;
    }
}
