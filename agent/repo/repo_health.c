/*
 * repo_health.c - periodic repository probes (see repo_health.h).
 */
#include "agent/repo/repo_health.h"
#include "agent/repo/repository.h"
#include "common/log.h"
#include "common/util.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct probe {
    char name[72];
    char region[72];
    int ok;
    int known;
    char error[256];
    int64_t last_ok_at, failing_since, checked_at;
} probe;

struct tm_repo_health {
    const tm_agent_conf *conf;
    uint32_t interval_ms;
    pthread_t thread;
    int started;
    atomic_int stopping;
    pthread_mutex_t mu; /* guards probes, n, changed; cv wakes the thread */
    pthread_cond_t cv;
    probe probes[TM_HEALTH_MAX_REPOS];
    size_t n;
    int changed;
};

/* A one-key listing, not a HEAD: S3 answers HEAD errors without a body, so
 * a 403 could not tell a wrong secret (SignatureDoesNotMatch) from a
 * missing permission (AccessDenied), and a missing bucket (NoSuchBucket)
 * would look like an absent probe key. The error keeps its class:
 * "auth: s3 GET ...: 403 SignatureDoesNotMatch ... (check ...)". */
int tm_repo_probe(tm_storage *st, tm_err *err)
{
    tm_storage_info *items = NULL;
    size_t n = 0;
    char *next = NULL;
    int rc = tm_storage_list(st, TM_HEALTH_PROBE_KEY, NULL, 1, &items, &n, &next, err);
    tm_storage_infos_free(items, n);
    free(next);
    if (rc != TM_OK && err != NULL) {
        tm_err_prefix(err, "%s: probe (list)", tm_storage_error_class(rc));
        if (strstr(err->msg, "(check") == NULL) {
            size_t l = strlen(err->msg);
            snprintf(err->msg + l, sizeof(err->msg) - l, " (%s)", tm_storage_error_hint(rc));
        }
    }
    return rc;
}

static void probe_all(tm_repo_health *h, tm_repo_set *rs)
{
    size_t n = tm_repo_set_count(rs);
    if (n > TM_HEALTH_MAX_REPOS) {
        n = TM_HEALTH_MAX_REPOS;
    }
    for (size_t i = 0; i < n && !atomic_load(&h->stopping); i++) {
        tm_err e = {0};
        int prc = tm_repo_probe(tm_repo_set_storage(rs, i), &e);
        int ok = prc == TM_OK;
        int64_t now = tm_now_s();
        pthread_mutex_lock(&h->mu);
        probe *p = &h->probes[i];
        snprintf(p->name, sizeof(p->name), "%s", tm_repo_set_name(rs, i));
        const char *reg = tm_repo_set_region(rs, i);
        snprintf(p->region, sizeof(p->region), "%s", reg != NULL ? reg : "");
        if (!p->known || p->ok != ok) {
            h->changed = 1;
            if (ok) {
                tm_info("agent", "event=repository_ok repository=%s", p->name);
            } else {
                /* Named by its class: a wrong key is not an outage. */
                tm_warn("agent", "event=repository_failed repository=%s class=%s msg=\"%s\"",
                        p->name, tm_storage_error_class(prc), e.msg);
            }
        }
        if (ok) {
            p->last_ok_at = now;
            p->failing_since = 0;
            p->error[0] = '\0';
        } else {
            if (p->ok || !p->known) {
                p->failing_since = now;
            }
            snprintf(p->error, sizeof(p->error), "%.255s", e.msg);
        }
        p->ok = ok;
        p->known = 1;
        p->checked_at = now;
        pthread_mutex_unlock(&h->mu);
    }
    pthread_mutex_lock(&h->mu);
    h->n = n;
    pthread_mutex_unlock(&h->mu);
}

static void *health_main(void *arg)
{
    tm_repo_health *h = arg;
    tm_repo_set *rs = NULL;
    while (!atomic_load(&h->stopping)) {
        tm_err err = {0};
        if (rs == NULL && tm_repo_set_open(&rs, h->conf, 0, &err) != TM_OK) {
            tm_debug("agent", "event=probe_open_failed msg=\"%s\"", err.msg);
            rs = NULL;
        }
        if (rs != NULL) {
            probe_all(h, rs);
        }
        struct timespec ts;
        tm_deadline_after_ms(&ts, h->interval_ms);
        pthread_mutex_lock(&h->mu);
        if (!atomic_load(&h->stopping)) {
            pthread_cond_timedwait(&h->cv, &h->mu, &ts);
        }
        pthread_mutex_unlock(&h->mu);
    }
    tm_repo_set_free(rs);
    return NULL;
}

int tm_repo_health_start(tm_repo_health **out, const tm_agent_conf *conf, uint32_t interval_ms,
                         tm_err *err)
{
    tm_repo_health *h = calloc(1, sizeof(*h));
    if (h == NULL) {
        return tm_err_set(err, TM_ENOMEM, "repository probe: out of memory");
    }
    h->conf = conf;
    h->interval_ms = interval_ms ? interval_ms : 10000;
    pthread_mutex_init(&h->mu, NULL);
    pthread_cond_init(&h->cv, NULL);
    if (pthread_create(&h->thread, NULL, health_main, h) != 0) {
        tm_repo_health_free(h);
        return tm_err_set(err, TM_EINTERNAL, "repository probe: cannot start thread");
    }
    h->started = 1;
    *out = h;
    return TM_OK;
}

void tm_repo_health_stop(tm_repo_health *h)
{
    if (h == NULL) {
        return;
    }
    atomic_store(&h->stopping, 1);
    pthread_mutex_lock(&h->mu);
    pthread_cond_broadcast(&h->cv);
    pthread_mutex_unlock(&h->mu);
}

void tm_repo_health_free(tm_repo_health *h)
{
    if (h == NULL) {
        return;
    }
    if (h->started) {
        tm_repo_health_stop(h);
        pthread_join(h->thread, NULL);
    }
    pthread_cond_destroy(&h->cv);
    pthread_mutex_destroy(&h->mu);
    free(h);
}

size_t tm_repo_health_take(tm_repo_health *h, int force, tm_health_snapshot *snap)
{
    snap->n = 0;
    if (h == NULL) {
        return 0;
    }
    pthread_mutex_lock(&h->mu);
    if (h->changed || force) {
        for (size_t i = 0; i < h->n; i++) {
            const probe *p = &h->probes[i];
            Tidemark__RepositoryStatus *m = &snap->msgs[i];
            tidemark__repository_status__init(m);
            memcpy(snap->names[i], p->name, sizeof(snap->names[i]));
            memcpy(snap->regions[i], p->region, sizeof(snap->regions[i]));
            memcpy(snap->errors[i], p->error, sizeof(snap->errors[i]));
            m->name = snap->names[i];
            m->region = snap->regions[i];
            m->error = p->ok ? NULL : snap->errors[i];
            m->has_ok = m->has_last_ok_at = m->has_failing_since = m->has_checked_at = 1;
            m->ok = p->ok;
            m->last_ok_at = p->last_ok_at;
            m->failing_since = p->failing_since;
            m->checked_at = p->checked_at;
            snap->ptrs[i] = m;
        }
        snap->n = h->n;
        h->changed = 0;
    }
    pthread_mutex_unlock(&h->mu);
    return snap->n;
}
