/*
 * archiver.c - per-target log-shipping status (see archiver.h).
 */
#include "coordinator/archiver.h"
#include "common/util.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct row {
    char target[72];
    int has_st, has_window; /* which of the two the agent reported */
    tm_archiver_status st;
    tm_provider_status pw;
} row;

struct tm_archiver_table {
    pthread_mutex_t mu; /* ReportLog handlers, the alert loop and scrapes */
    row *rows;
    size_t n, cap;
};

int tm_archiver_table_new(tm_archiver_table **out, tm_err *err)
{
    tm_archiver_table *t = calloc(1, sizeof(*t));
    if (t == NULL) {
        return tm_err_set(err, TM_ENOMEM, "archiver: out of memory");
    }
    pthread_mutex_init(&t->mu, NULL);
    *out = t;
    return TM_OK;
}

void tm_archiver_table_free(tm_archiver_table *t)
{
    if (t != NULL) {
        pthread_mutex_destroy(&t->mu);
        free(t->rows);
        free(t);
    }
}

static row *find(tm_archiver_table *t, const char *target)
{
    for (size_t i = 0; i < t->n; i++) {
        if (strcmp(t->rows[i].target, target) == 0) {
            return &t->rows[i];
        }
    }
    return NULL;
}

/* The row of target, added if missing; under t->mu. */
static row *find_or_add(tm_archiver_table *t, const char *target)
{
    row *r = find(t, target);
    if (r == NULL) {
        if (t->n == t->cap) {
            size_t cap = t->cap ? t->cap * 2 : 16;
            row *nr = realloc(t->rows, cap * sizeof(*nr));
            if (nr == NULL) {
                return NULL;
            }
            t->rows = nr;
            t->cap = cap;
        }
        r = &t->rows[t->n++];
        memset(r, 0, sizeof(*r));
        snprintf(r->target, sizeof(r->target), "%s", target);
    }
    return r;
}

/* The chain reset fields of st (about to replace old; had: old is a
 * report) as archiver.h says. */
static void merge_resets(const tm_archiver_status *old, int had, tm_archiver_status *st,
                         int64_t now_ms)
{
    if (!had) {
        /* Resets from before the coordinator heard of the target: the
         * agent's count and time are all there is. */
        st->chain_resets_total = st->chain_resets;
        st->chain_reset_seen_ms =
            st->last_chain_reset_ms < now_ms ? st->last_chain_reset_ms : now_ms;
        return;
    }
    if (st->error[0] != '\0') {
        /* Nothing known now: the last known stays. */
        st->chain_resets = old->chain_resets;
        st->last_chain_reset_ms = old->last_chain_reset_ms;
    }
    /* The agent's count went down: it restarted, and all it counts is new. */
    uint64_t delta = st->chain_resets >= old->chain_resets ? st->chain_resets - old->chain_resets
                                                           : st->chain_resets;
    int newer = st->last_chain_reset_ms > old->last_chain_reset_ms;
    if (newer && delta == 0) {
        delta = 1; /* a restarted agent's first reset, at the same count */
    }
    st->chain_resets_total = old->chain_resets_total + delta;
    if (newer) {
        st->chain_reset_seen_ms = now_ms;
        return;
    }
    st->last_chain_reset_ms = old->last_chain_reset_ms;
    st->chain_reset_seen_ms = old->chain_reset_seen_ms;
    memcpy(st->chain_reset, old->chain_reset, sizeof(st->chain_reset));
    memcpy(st->chain_reset_from, old->chain_reset_from, sizeof(st->chain_reset_from));
}

int tm_archiver_put(tm_archiver_table *t, const char *target, const tm_archiver_status *st,
                    int64_t now_ms)
{
    tm_archiver_status v = *st;
    if (now_ms == 0) {
        now_ms = tm_now_ms();
    }
    pthread_mutex_lock(&t->mu);
    row *r = find_or_add(t, target);
    if (r != NULL) {
        merge_resets(&r->st, r->has_st, &v, now_ms);
        r->st = v;
        r->has_st = 1;
    }
    pthread_mutex_unlock(&t->mu);
    return r != NULL ? TM_OK : TM_ENOMEM;
}

int tm_archiver_put_window(tm_archiver_table *t, const char *target, const tm_provider_status *pw)
{
    pthread_mutex_lock(&t->mu);
    row *r = find_or_add(t, target);
    if (r != NULL) {
        r->pw = *pw;
        r->has_window = 1;
    }
    pthread_mutex_unlock(&t->mu);
    return r != NULL ? TM_OK : TM_ENOMEM;
}

int tm_archiver_get_window(tm_archiver_table *t, const char *target, tm_provider_status *out)
{
    pthread_mutex_lock(&t->mu);
    row *r = find(t, target);
    int ok = r != NULL && r->has_window;
    if (ok) {
        *out = r->pw;
    }
    pthread_mutex_unlock(&t->mu);
    return ok ? TM_OK : TM_ENOENT;
}

int tm_archiver_get(tm_archiver_table *t, const char *target, tm_archiver_status *out)
{
    pthread_mutex_lock(&t->mu);
    row *r = find(t, target);
    int ok = r != NULL && r->has_st;
    if (ok) {
        *out = r->st;
    }
    pthread_mutex_unlock(&t->mu);
    return ok ? TM_OK : TM_ENOENT;
}

int tm_archiver_failing(const tm_archiver_status *st)
{
    return st->error[0] == '\0' && st->last_failed_ms > 0 &&
           st->last_failed_ms > st->last_archived_ms;
}

/* One sample of a row for a family, or 0 when the row has none. */
typedef int (*sample_fn)(const tm_archiver_status *st, double *v);

static int failures_of(const tm_archiver_status *st, double *v)
{
    *v = (double)st->failed_count;
    return st->error[0] == '\0';
}

static int archived_at(const tm_archiver_status *st, double *v)
{
    *v = (double)st->last_archived_ms / 1000.0;
    return st->error[0] == '\0' && st->last_archived_ms > 0;
}

static int snapshot_only(const tm_archiver_status *st, double *v)
{
    *v = st->snapshot_only[0] != '\0' ? 1.0 : 0.0;
    return 1;
}

static int resets_of(const tm_archiver_status *st, double *v)
{
    *v = (double)st->chain_resets_total;
    return 1;
}

static int reset_at(const tm_archiver_status *st, double *v)
{
    *v = (double)st->last_chain_reset_ms / 1000.0;
    return st->last_chain_reset_ms > 0;
}

static const struct {
    const char *name;
    tm_metric_type type;
    const char *help;
    sample_fn sample;
} families[] = {
    {"tidemark_log_archive_failures_total", TM_METRIC_COUNTER,
     "Failed log archive attempts the database counted (since its last stats reset).", failures_of},
    {"tidemark_log_last_archived_timestamp_seconds", TM_METRIC_GAUGE,
     "When the database last archived a log file successfully.", archived_at},
    {"tidemark_pitr_snapshot_only", TM_METRIC_GAUGE,
     "1 when the target's restorable window is snapshot-only (its shipped log has no times to "
     "restore to), 0 when it reaches any time the log covers.",
     snapshot_only},
    {"tidemark_log_chain_resets_total", TM_METRIC_COUNTER,
     "Log chain resets: the agent could not prove the shipped log goes on and started a new "
     "chain from a fresh base; restores cannot reach the time between the old chain's end and "
     "that base.",
     resets_of},
    {"tidemark_log_last_chain_reset_timestamp_seconds", TM_METRIC_GAUGE,
     "When the target's newest log chain reset happened (the agent's clock).", reset_at},
};

void tm_archiver_collect(tm_metrics_writer *w, void *arg)
{
    tm_archiver_table *t = arg;
    pthread_mutex_lock(&t->mu);
    for (size_t f = 0; f < sizeof(families) / sizeof(families[0]); f++) {
        tm_metrics_write_family(w, families[f].name, families[f].type, families[f].help);
        for (size_t i = 0; i < t->n; i++) {
            char labels[160], esc[144];
            double v = 0;
            /* A row with only a provider window has no status: its
             * snapshot_only reads 0, as it always did. */
            int has = t->rows[i].has_st ? families[f].sample(&t->rows[i].st, &v)
                                        : families[f].sample == snapshot_only;
            if (has) {
                snprintf(labels, sizeof(labels), "target=\"%s\"",
                         tm_metrics_escape(t->rows[i].target, esc, sizeof(esc)));
                tm_metrics_write_sample(w, families[f].name, labels, v);
            }
        }
    }
    pthread_mutex_unlock(&t->mu);
}
