/*
 * registry.c - the in-memory agent table behind authentication and liveness.
 *
 * A chained hash table keyed by agent id, under one mutex: a heartbeat is a
 * lookup, a SHA-256 of the presented secret, and a timestamp store, which
 * keeps the critical section to a few hundred nanoseconds.
 */
#include "coordinator/registry.h"
#include "common/log.h"
#include "common/names.h"
#include "common/util.h"

#include "tidemark.pb-c.h"

#include <pthread.h>
#include <stdlib.h>
#include <stdio.h>
#include <string.h>

typedef struct entry {
    struct entry *next;
    uint64_t hash;
    char id[64];
    char secret_hash[65];
    int approved;
    int live;  /* ONLINE / STALE / LOST */
    int dirty; /* last_seen changed since the last flush */
    int64_t last_seen_ms;
} entry;

struct tm_registry {
    pthread_mutex_t mu;
    tm_catalog *cat;
    tm_registry_opts opts;
    entry **buckets;
    size_t n_buckets;
    size_t count;
};

static uint64_t hash_id(const char *s)
{
    uint64_t h = 1469598103934665603ULL;
    for (; *s; s++) {
        h ^= (unsigned char)*s;
        h *= 1099511628211ULL;
    }
    return h;
}

static entry *find(tm_registry *r, const char *id)
{
    uint64_t h = hash_id(id);
    for (entry *e = r->buckets[h % r->n_buckets]; e != NULL; e = e->next) {
        if (e->hash == h && strcmp(e->id, id) == 0) {
            return e;
        }
    }
    return NULL;
}

static int grow(tm_registry *r)
{
    size_t nb = r->n_buckets * 2;
    entry **b = calloc(nb, sizeof(*b));
    if (b == NULL) {
        return TM_ENOMEM;
    }
    for (size_t i = 0; i < r->n_buckets; i++) {
        entry *e = r->buckets[i];
        while (e != NULL) {
            entry *n = e->next;
            e->next = b[e->hash % nb];
            b[e->hash % nb] = e;
            e = n;
        }
    }
    free(r->buckets);
    r->buckets = b;
    r->n_buckets = nb;
    return TM_OK;
}

int tm_registry_reported_state(int approved, int live)
{
    return approved ? live : TIDEMARK__AGENT_STATE__PENDING;
}

static int put_locked(tm_registry *r, const char *id, const char *secret_hash, int approved,
                      int live, int64_t now_ms)
{
    entry *e = find(r, id);
    if (e != NULL && e->approved) {
        /* Approval is never withdrawn by a put: a re-registration that read
         * "pending" just before an approval must not undo it. */
        approved = 1;
    }
    if (e == NULL) {
        if (r->count + 1 > r->n_buckets && grow(r) != TM_OK) {
            return TM_ENOMEM;
        }
        e = calloc(1, sizeof(*e));
        if (e == NULL) {
            return TM_ENOMEM;
        }
        snprintf(e->id, sizeof(e->id), "%s", id);
        e->hash = hash_id(id);
        e->next = r->buckets[e->hash % r->n_buckets];
        r->buckets[e->hash % r->n_buckets] = e;
        r->count++;
    }
    snprintf(e->secret_hash, sizeof(e->secret_hash), "%s", secret_hash);
    e->approved = approved;
    e->live = live;
    e->last_seen_ms = now_ms;
    return TM_OK;
}

int tm_registry_new(tm_registry **out, tm_catalog *cat, const tm_registry_opts *opts,
                    int64_t now_ms, tm_err *err)
{
    tm_registry *r = calloc(1, sizeof(*r));
    if (r == NULL || (r->buckets = calloc(1024, sizeof(entry *))) == NULL) {
        free(r);
        return tm_err_set(err, TM_ENOMEM, "registry: out of memory");
    }
    r->n_buckets = 1024;
    r->cat = cat;
    r->opts = *opts;
    pthread_mutex_init(&r->mu, NULL);

    tm_agent_rec **recs = NULL;
    size_t n = 0;
    int rc = tm_catalog_agent_list(cat, &recs, &n, err);
    if (rc != TM_OK) {
        tm_registry_free(r);
        return rc;
    }
    for (size_t i = 0; i < n && rc == TM_OK; i++) {
        /* Whatever the stored liveness, an agent gets a fresh window after a
         * restart; the sweep demotes it again if it stays silent. */
        int live = recs[i]->state == TIDEMARK__AGENT_STATE__PENDING ? TIDEMARK__AGENT_STATE__ONLINE
                                                                    : recs[i]->state;
        rc = put_locked(r, recs[i]->id, recs[i]->secret_hash ? recs[i]->secret_hash : "",
                        recs[i]->approved, live, now_ms);
    }
    tm_agent_recs_free(recs, n);
    if (rc != TM_OK) {
        tm_registry_free(r);
        return tm_err_set(err, rc, "registry: out of memory");
    }
    *out = r;
    return TM_OK;
}

void tm_registry_free(tm_registry *r)
{
    if (r == NULL) {
        return;
    }
    for (size_t i = 0; i < r->n_buckets; i++) {
        entry *e = r->buckets[i];
        while (e != NULL) {
            entry *n = e->next;
            free(e);
            e = n;
        }
    }
    free(r->buckets);
    pthread_mutex_destroy(&r->mu);
    free(r);
}

int tm_registry_auth(tm_registry *r, const char *id, const char *secret)
{
    if (id == NULL || secret == NULL) {
        return TM_EAUTH;
    }
    char h[65];
    /* Hash outside the lock; the secret is 256 random bits, so a plain
     * SHA-256 is as strong as any KDF here. */
    tm_sha256_hex(secret, strlen(secret), h);
    pthread_mutex_lock(&r->mu);
    entry *e = find(r, id);
    int ok = e != NULL && tm_str_eq_ct(e->secret_hash, h);
    pthread_mutex_unlock(&r->mu);
    return ok ? TM_OK : TM_EAUTH;
}

int tm_registry_put(tm_registry *r, const char *id, const char *secret_hash, int approved,
                    int64_t now_ms)
{
    pthread_mutex_lock(&r->mu);
    int rc = put_locked(r, id, secret_hash, approved, TIDEMARK__AGENT_STATE__ONLINE, now_ms);
    pthread_mutex_unlock(&r->mu);
    return rc;
}

int tm_registry_remove(tm_registry *r, const char *id)
{
    pthread_mutex_lock(&r->mu);
    uint64_t h = hash_id(id);
    entry **pp = &r->buckets[h % r->n_buckets];
    while (*pp != NULL && !((*pp)->hash == h && strcmp((*pp)->id, id) == 0)) {
        pp = &(*pp)->next;
    }
    int rc = TM_ENOENT;
    if (*pp != NULL) {
        entry *e = *pp;
        *pp = e->next;
        free(e);
        r->count--;
        rc = TM_OK;
    }
    pthread_mutex_unlock(&r->mu);
    return rc;
}

int tm_registry_set_approved(tm_registry *r, const char *id, int approved)
{
    pthread_mutex_lock(&r->mu);
    entry *e = find(r, id);
    if (e != NULL) {
        e->approved = approved;
    }
    pthread_mutex_unlock(&r->mu);
    return e != NULL ? TM_OK : TM_ENOENT;
}

int tm_registry_heartbeat(tm_registry *r, const char *id, int64_t now_ms, int *state)
{
    int was = 0, approved = 0;
    pthread_mutex_lock(&r->mu);
    entry *e = find(r, id);
    if (e == NULL) {
        pthread_mutex_unlock(&r->mu);
        return TM_ENOENT;
    }
    was = e->live;
    approved = e->approved;
    e->last_seen_ms = now_ms;
    e->dirty = 1;
    e->live = TIDEMARK__AGENT_STATE__ONLINE;
    pthread_mutex_unlock(&r->mu);

    *state = tm_registry_reported_state(approved, TIDEMARK__AGENT_STATE__ONLINE);
    if (was != TIDEMARK__AGENT_STATE__ONLINE) {
        tm_err err;
        tm_info("registry", "agent=%s state=online from=%s", id, tm_agent_state_name(was));
        if (tm_catalog_agent_set_state(r->cat, id, approved, TIDEMARK__AGENT_STATE__ONLINE,
                                       now_ms / 1000, "heartbeat", &err) != TM_OK) {
            tm_error("registry", "agent=%s msg=\"%s\"", id, err.msg);
        }
    }
    return TM_OK;
}

int tm_registry_get(tm_registry *r, const char *id, int *state, int64_t *last_seen_ms)
{
    pthread_mutex_lock(&r->mu);
    entry *e = find(r, id);
    if (e != NULL) {
        *state = tm_registry_reported_state(e->approved, e->live);
        *last_seen_ms = e->last_seen_ms;
    }
    pthread_mutex_unlock(&r->mu);
    return e != NULL ? TM_OK : TM_ENOENT;
}

typedef struct change {
    char id[64];
    int approved;
    int from, to;
    int64_t silent_ms;
} change;

int tm_registry_sweep(tm_registry *r, int64_t now_ms)
{
    int64_t stale_ms = (int64_t)r->opts.heartbeat_interval_ms * r->opts.stale_after_missed;
    int64_t lost_ms = (int64_t)r->opts.heartbeat_interval_ms * r->opts.lost_after_missed;
    change *changes = NULL;
    size_t n = 0, cap = 0;

    pthread_mutex_lock(&r->mu);
    for (size_t i = 0; i < r->n_buckets; i++) {
        for (entry *e = r->buckets[i]; e != NULL; e = e->next) {
            int64_t silent = now_ms - e->last_seen_ms;
            int to = e->live;
            if (silent > lost_ms) {
                to = TIDEMARK__AGENT_STATE__LOST;
            } else if (silent > stale_ms && e->live == TIDEMARK__AGENT_STATE__ONLINE) {
                to = TIDEMARK__AGENT_STATE__STALE;
            }
            if (to == e->live) {
                continue;
            }
            if (n == cap) {
                cap = cap ? cap * 2 : 16;
                change *nc = realloc(changes, cap * sizeof(*nc));
                if (nc == NULL) {
                    break; /* try again on the next sweep */
                }
                changes = nc;
            }
            snprintf(changes[n].id, sizeof(changes[n].id), "%s", e->id);
            changes[n].approved = e->approved;
            changes[n].from = e->live;
            changes[n].to = to;
            changes[n].silent_ms = silent;
            n++;
            e->live = to;
        }
    }
    pthread_mutex_unlock(&r->mu);

    /* Catalog writes outside the lock: heartbeats keep flowing meanwhile. */
    for (size_t i = 0; i < n; i++) {
        tm_err err;
        tm_warn("registry", "agent=%s state=%s from=%s silent_ms=%lld", changes[i].id,
                tm_agent_state_name(changes[i].to), tm_agent_state_name(changes[i].from),
                (long long)changes[i].silent_ms);
        char reason[64];
        snprintf(reason, sizeof(reason), "no heartbeat for %lld ms",
                 (long long)changes[i].silent_ms);
        if (tm_catalog_agent_set_state(r->cat, changes[i].id, changes[i].approved, changes[i].to,
                                       now_ms / 1000, reason, &err) != TM_OK) {
            tm_error("registry", "agent=%s msg=\"%s\"", changes[i].id, err.msg);
        }
    }
    free(changes);
    return TM_OK;
}

int tm_registry_flush(tm_registry *r, tm_err *err)
{
    char **ids = NULL;
    int64_t *seen = NULL;
    size_t n = 0, cap = 0;
    int rc = TM_OK;

    pthread_mutex_lock(&r->mu);
    for (size_t i = 0; i < r->n_buckets && rc == TM_OK; i++) {
        for (entry *e = r->buckets[i]; e != NULL; e = e->next) {
            if (!e->dirty) {
                continue;
            }
            if (n == cap) {
                cap = cap ? cap * 2 : 256;
                char **ni = realloc(ids, cap * sizeof(*ni));
                if (ni != NULL) {
                    ids = ni;
                }
                int64_t *ns = realloc(seen, cap * sizeof(*ns));
                if (ns != NULL) {
                    seen = ns;
                }
                if (ni == NULL || ns == NULL) {
                    rc = TM_ENOMEM;
                    break;
                }
            }
            ids[n] = strdup(e->id);
            if (ids[n] == NULL) {
                rc = TM_ENOMEM;
                break;
            }
            seen[n] = e->last_seen_ms / 1000;
            e->dirty = 0;
            n++;
        }
    }
    pthread_mutex_unlock(&r->mu);

    if (rc == TM_OK && n > 0) {
        rc = tm_catalog_agent_touch(r->cat, (const char *const *)ids, seen, n, err);
    } else if (rc != TM_OK) {
        tm_err_set(err, rc, "registry flush: out of memory");
    }
    for (size_t i = 0; i < n; i++) {
        free(ids[i]);
    }
    free(ids);
    free(seen);
    return rc;
}

void tm_registry_counts(tm_registry *r, uint32_t counts[5])
{
    memset(counts, 0, 5 * sizeof(uint32_t));
    pthread_mutex_lock(&r->mu);
    for (size_t i = 0; i < r->n_buckets; i++) {
        for (entry *e = r->buckets[i]; e != NULL; e = e->next) {
            int s = tm_registry_reported_state(e->approved, e->live);
            if (s >= 0 && s < 5) {
                counts[s]++;
            }
        }
    }
    pthread_mutex_unlock(&r->mu);
}

size_t tm_registry_size(tm_registry *r)
{
    pthread_mutex_lock(&r->mu);
    size_t n = r->count;
    pthread_mutex_unlock(&r->mu);
    return n;
}
