/*
 * retention.c - GFS retention plan (see retention.h for the rules).
 */
#include "coordinator/retention.h"
#include "common/json.h"

#include <stdarg.h>
#include <stdlib.h>
#include <string.h>

#include "common/util.h"
#include "coordinator/cron.h"

#define REASON_MAX 600

void tm_retention_policy_default(tm_retention_policy *p)
{
    *p = (tm_retention_policy){.keep_last = 0,
                               .keep_hourly = 0,
                               .keep_daily = 7,
                               .keep_weekly = 4,
                               .keep_monthly = 12,
                               .keep_yearly = 7,
                               .min_count = 1,
                               .keep_failed = 3,
                               .pitr_window_s = 7 * 86400};
}

static const char *type_name(tm_backup_type t)
{
    switch (t) {
    case TM_BACKUP_FULL:
        return "full";
    case TM_BACKUP_INCREMENTAL:
        return "incremental";
    case TM_BACKUP_SNAPSHOT:
        return "snapshot";
    }
    return "unknown";
}

/* ---- working state --------------------------------------------------------- */

typedef struct work {
    const tm_backup_rec *r;
    long parent;  /* index in the group, -1 none, -2 missing */
    int good;     /* ok and chain intact */
    int chain_st; /* 0 unknown, 1 visiting, 2 done */
    long root;    /* base of the chain, -1 broken */
    int keep;
    char reason[REASON_MAX];
} work;

static void add_reason(work *w, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

static void add_reason(work *w, const char *fmt, ...)
{
    size_t n = strlen(w->reason);
    if (n + 3 >= sizeof(w->reason)) {
        return;
    }
    if (n > 0) {
        w->reason[n++] = ',';
        w->reason[n++] = ' ';
        w->reason[n] = '\0';
    }
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(w->reason + n, sizeof(w->reason) - n, fmt, ap);
    va_end(ap);
}

static int is_base(const tm_backup_rec *r)
{
    return r->type != TM_BACKUP_INCREMENTAL;
}

/* Newest first: finished_at descending, then id descending. */
static int rec_cmp(const tm_backup_rec *a, const tm_backup_rec *b)
{
    int c = strcmp(a->target, b->target);
    if (c != 0) {
        return c;
    }
    if (a->finished_at != b->finished_at) {
        return a->finished_at > b->finished_at ? -1 : 1;
    }
    return -strcmp(a->id, b->id);
}

static int ptr_cmp(const void *a, const void *b)
{
    return rec_cmp(*(const tm_backup_rec *const *)a, *(const tm_backup_rec *const *)b);
}

typedef struct id_ix {
    const char *id;
    long ix;
} id_ix;

static int id_cmp(const void *a, const void *b)
{
    return strcmp(((const id_ix *)a)->id, ((const id_ix *)b)->id);
}

/* Resolve goodness and root of every record: walk up each chain onto a
 * stack until a base, a resolved record, a missing parent or a cycle, then
 * resolve back down. Iterative: a chain of any length costs no C stack. */
static void resolve_chains(work *w, long n, long *stack)
{
    for (long i = 0; i < n; i++) {
        long sp = 0;
        for (long cur = i; cur >= 0 && w[cur].chain_st == 0; cur = w[cur].parent) {
            w[cur].chain_st = 1;
            stack[sp++] = cur;
            if (is_base(w[cur].r)) {
                break;
            }
        }
        while (sp > 0) {
            long k = stack[--sp];
            if (is_base(w[k].r)) {
                w[k].good = w[k].r->ok;
                w[k].root = k;
            } else {
                long p = w[k].parent;
                if (p < 0 || w[p].chain_st != 2) { /* missing parent, or a cycle */
                    w[k].good = 0;
                    w[k].root = -1;
                } else {
                    w[k].good = w[k].r->ok && w[p].good;
                    w[k].root = w[p].root;
                }
            }
            w[k].chain_st = 2;
        }
    }
}

/* Keep i and every parent up to its base, naming why. */
static void force_chain(work *w, long i, const char *why)
{
    if (!w[i].keep || strstr(w[i].reason, why) == NULL) {
        add_reason(&w[i], "%s", why);
    }
    w[i].keep = 1;
    const char *child = w[i].r->id;
    long guard = 0;
    for (long p = w[i].parent; p >= 0 && guard < 100000; p = w[p].parent, guard++) {
        if (strstr(w[p].reason, "parent of kept incremental") == NULL) {
            add_reason(&w[p], "parent of kept incremental %s", child);
        }
        w[p].keep = 1;
        if (is_base(w[p].r)) {
            break;
        }
    }
}

typedef enum { B_HOUR, B_DAY, B_WEEK, B_MONTH, B_YEAR } bucket_kind;

static int64_t bucket_key(bucket_kind k, int64_t t, char *label, size_t cap)
{
    tm_utc u;
    tm_utc_from_unix(t, &u);
    switch (k) {
    case B_HOUR:
        snprintf(label, cap, "hourly %04d-%02d-%02dT%02d", u.year, u.month, u.day, u.hour);
        return (((int64_t)u.year * 100 + u.month) * 100 + u.day) * 100 + u.hour;
    case B_DAY:
        snprintf(label, cap, "daily %04d-%02d-%02d", u.year, u.month, u.day);
        return ((int64_t)u.year * 100 + u.month) * 100 + u.day;
    case B_WEEK: {
        int wy, ww;
        tm_utc_iso_week(t, &wy, &ww);
        snprintf(label, cap, "weekly %04d-W%02d", wy, ww);
        return (int64_t)wy * 100 + ww;
    }
    case B_MONTH:
        snprintf(label, cap, "monthly %04d-%02d", u.year, u.month);
        return (int64_t)u.year * 100 + u.month;
    case B_YEAR:
        snprintf(label, cap, "yearly %04d", u.year);
        return u.year;
    }
    return 0;
}

static int64_t start_of(const tm_backup_rec *r)
{
    return r->started_at != 0 ? r->started_at : r->finished_at;
}

/* Plan one target: w[0..n) sorted newest first. */
static void plan_target(work *w, long n, const tm_retention_policy *pol, int64_t now,
                        tm_retention_target *tt, long *stack)
{
    resolve_chains(w, n, stack);
    /* keep_last */
    long seen = 0;
    for (long i = 0; i < n && pol->keep_last != 0; i++) {
        if (is_base(w[i].r) && w[i].good && (pol->keep_last < 0 || seen < pol->keep_last)) {
            w[i].keep = 1;
            add_reason(&w[i], "last");
            seen++;
        }
    }
    /* GFS classes, restic semantics */
    const struct {
        bucket_kind k;
        int n;
    } classes[] = {{B_HOUR, pol->keep_hourly},
                   {B_DAY, pol->keep_daily},
                   {B_WEEK, pol->keep_weekly},
                   {B_MONTH, pol->keep_monthly},
                   {B_YEAR, pol->keep_yearly}};
    for (size_t c = 0; c < sizeof(classes) / sizeof(classes[0]); c++) {
        if (classes[c].n == 0) {
            continue;
        }
        int have_last = 0;
        int64_t last = 0;
        long count = 0;
        for (long i = 0; i < n; i++) {
            if (!is_base(w[i].r) || !w[i].good) {
                continue;
            }
            char label[64];
            int64_t key = bucket_key(classes[c].k, w[i].r->finished_at, label, sizeof(label));
            if (have_last && key == last) {
                continue;
            }
            if (classes[c].n > 0 && count >= classes[c].n) {
                break;
            }
            w[i].keep = 1;
            add_reason(&w[i], "%s", label);
            have_last = 1;
            last = key;
            count++;
        }
    }
    /* permanent holds */
    for (long i = 0; i < n; i++) {
        if (w[i].r->keep) {
            force_chain(w, i, "permanent hold");
        }
    }
    /* newest good backup */
    long newest = -1;
    for (long i = 0; i < n && newest < 0; i++) {
        if (w[i].good) {
            newest = i;
        }
    }
    if (newest >= 0) {
        force_chain(w, newest, "newest");
    }
    /* PITR anchor and log cutoff */
    long anchor = newest;
    if (pol->pitr_window_s > 0 && newest >= 0) {
        anchor = -1;
        long oldest = -1;
        for (long i = 0; i < n; i++) {
            if (!w[i].good) {
                continue;
            }
            oldest = i;
            if (anchor < 0 && w[i].r->finished_at <= now - pol->pitr_window_s) {
                anchor = i;
            }
        }
        if (anchor < 0) {
            anchor = oldest;
        }
        force_chain(w, anchor, "PITR window");
    }
    if (anchor >= 0) {
        tt->log_cutoff_id = strdup(w[anchor].r->id);
        tt->log_cutoff = start_of(w[anchor].r);
    }
    /* minimum count of good bases */
    long kept_bases = 0;
    for (long i = 0; i < n; i++) {
        kept_bases += w[i].keep && w[i].good && is_base(w[i].r);
    }
    for (long i = 0; i < n && kept_bases < pol->min_count; i++) {
        if (!w[i].keep && w[i].good && is_base(w[i].r)) {
            w[i].keep = 1;
            add_reason(&w[i], "minimum count");
            kept_bases++;
        }
    }
    /* incrementals live and die with their full: oldest first, so a parent
     * is decided before its children (parents finish first); a second pass
     * covers clock-skewed input. */
    for (int pass = 0; pass < 2; pass++) {
        for (long i = n - 1; i >= 0; i--) {
            const tm_backup_rec *r = w[i].r;
            if (is_base(r) || !w[i].good || w[i].parent < 0) {
                continue;
            }
            if (w[w[i].parent].keep && w[i].root >= 0 &&
                strstr(w[i].reason, "incremental of kept") == NULL) {
                w[i].keep = 1;
                add_reason(&w[i], "incremental of kept %s", w[w[i].root].r->id);
            }
        }
    }
    /* failed runs and the reasons for drops */
    long failed_kept = 0;
    for (long i = 0; i < n; i++) {
        const tm_backup_rec *r = w[i].r;
        if (!r->ok) {
            if (w[i].keep) {
                continue; /* held */
            }
            if (pol->keep_failed < 0 || failed_kept < pol->keep_failed) {
                w[i].keep = 1;
                add_reason(&w[i], "failed: keep-failed %d", pol->keep_failed);
                failed_kept++;
            } else {
                add_reason(&w[i], "failed");
            }
            continue;
        }
        if (w[i].keep) {
            continue;
        }
        if (is_base(r)) {
            add_reason(&w[i], "not kept by any rule");
        } else if (w[i].parent == -2) {
            add_reason(&w[i], "chain broken: parent %s not in catalog",
                       r->parent_id != NULL ? r->parent_id : "(none)");
        } else if (w[i].parent == -1) {
            add_reason(&w[i], "chain broken: incremental without a parent");
        } else if (!w[i].good) {
            add_reason(&w[i], "chain broken: parent %s failed or broken", r->parent_id);
        } else {
            add_reason(&w[i], "incremental of dropped %s", w[w[i].root].r->id);
        }
    }
    for (long i = 0; i < n; i++) {
        if (w[i].keep) {
            tt->kept++;
        } else {
            tt->dropped++;
        }
    }
}

void tm_retention_plan_free(tm_retention_plan *plan)
{
    if (plan == NULL) {
        return;
    }
    for (size_t i = 0; i < plan->n_items; i++) {
        free(plan->items[i].id);
        free(plan->items[i].target);
        free(plan->items[i].reason);
    }
    for (size_t i = 0; i < plan->n_targets; i++) {
        free(plan->targets[i].target);
        free(plan->targets[i].log_cutoff_id);
    }
    free(plan->items);
    free(plan->targets);
    free(plan);
}

int tm_retention_plan_new(const tm_backup_rec *recs, size_t n, const tm_retention_policy *policy,
                          int64_t now, tm_retention_plan **out, tm_err *err)
{
    *out = NULL;
    tm_retention_policy pol;
    if (policy != NULL) {
        pol = *policy;
    } else {
        tm_retention_policy_default(&pol);
    }
    if (pol.pitr_window_s < 0) {
        return tm_err_set(err, TM_EINVAL, "retention: pitr_window must not be negative");
    }
    for (size_t i = 0; i < n; i++) {
        if (recs[i].id == NULL || recs[i].target == NULL || recs[i].id[0] == '\0') {
            return tm_err_set(err, TM_EINVAL, "retention: backup record %zu has no id or target",
                              i);
        }
        if (recs[i].type < TM_BACKUP_FULL || recs[i].type > TM_BACKUP_SNAPSHOT) {
            return tm_err_set(err, TM_EINVAL, "retention: backup %s has an unknown type %d",
                              recs[i].id, (int)recs[i].type);
        }
    }
    int rc = TM_ENOMEM;
    tm_retention_plan *plan = calloc(1, sizeof(*plan));
    const tm_backup_rec **order = malloc((n ? n : 1) * sizeof(*order));
    work *w = calloc(n ? n : 1, sizeof(*w));
    id_ix *ids = malloc((n ? n : 1) * sizeof(*ids));
    long *stack = malloc((n ? n : 1) * sizeof(*stack));
    if (plan == NULL || order == NULL || w == NULL || ids == NULL || stack == NULL) {
        goto fail;
    }
    plan->now = now;
    plan->policy = pol;
    plan->items = calloc(n ? n : 1, sizeof(*plan->items));
    plan->targets = calloc(n ? n : 1, sizeof(*plan->targets));
    if (plan->items == NULL || plan->targets == NULL) {
        goto fail;
    }
    for (size_t i = 0; i < n; i++) {
        order[i] = &recs[i];
    }
    if (n > 1) {
        qsort(order, n, sizeof(*order), ptr_cmp); /* never qsort(NULL, 0): undefined */
    }
    size_t g0 = 0;
    while (g0 < n) {
        size_t g1 = g0;
        while (g1 < n && strcmp(order[g1]->target, order[g0]->target) == 0) {
            g1++;
        }
        long gn = (long)(g1 - g0);
        work *gw = w + g0;
        for (long i = 0; i < gn; i++) {
            gw[i].r = order[g0 + (size_t)i];
            ids[i] = (id_ix){gw[i].r->id, i};
        }
        qsort(ids, (size_t)gn, sizeof(*ids), id_cmp);
        for (long i = 1; i < gn; i++) {
            if (strcmp(ids[i].id, ids[i - 1].id) == 0) {
                rc = tm_err_set(err, TM_EINVAL, "retention: target %s lists backup %s twice",
                                order[g0]->target, ids[i].id);
                goto fail;
            }
        }
        for (long i = 0; i < gn; i++) {
            const char *pid = gw[i].r->parent_id;
            if (is_base(gw[i].r)) {
                gw[i].parent = -1;
            } else if (pid == NULL || pid[0] == '\0') {
                gw[i].parent = -1;
            } else {
                id_ix key = {pid, 0};
                id_ix *hit = bsearch(&key, ids, (size_t)gn, sizeof(*ids), id_cmp);
                gw[i].parent = hit != NULL ? hit->ix : -2;
            }
        }
        tm_retention_target *tt = &plan->targets[plan->n_targets++];
        tt->target = strdup(order[g0]->target);
        if (tt->target == NULL) {
            goto fail;
        }
        plan_target(gw, gn, &pol, now, tt, stack);
        g0 = g1;
    }
    for (size_t i = 0; i < n; i++) {
        tm_retention_item *it = &plan->items[i];
        it->id = strdup(w[i].r->id);
        it->target = strdup(w[i].r->target);
        it->reason = strdup(w[i].reason);
        it->type = w[i].r->type;
        it->finished_at = w[i].r->finished_at;
        it->ok = w[i].r->ok;
        it->keep = w[i].keep;
        plan->n_items++;
        if (it->id == NULL || it->target == NULL || it->reason == NULL) {
            goto fail;
        }
    }
    free(order);
    free(w);
    free(ids);
    free(stack);
    *out = plan;
    return 0;
fail:
    if (rc == TM_ENOMEM) {
        tm_err_set(err, TM_ENOMEM, "retention: out of memory");
    }
    free(order);
    free(w);
    free(ids);
    free(stack);
    tm_retention_plan_free(plan);
    return rc;
}

/* ---- formatting ------------------------------------------------------------ */

static void fmt_window(int64_t s, char *out, size_t cap)
{
    if (s % 86400 == 0) {
        snprintf(out, cap, "%lldd", (long long)(s / 86400));
    } else if (s % 3600 == 0) {
        snprintf(out, cap, "%lldh", (long long)(s / 3600));
    } else {
        snprintf(out, cap, "%llds", (long long)s);
    }
}

int tm_retention_plan_format(const tm_retention_plan *plan, int json, FILE *f)
{
    const tm_retention_policy *p = &plan->policy;
    char now[32], ts[32], win[32];
    tm_fmt_time(plan->now, now, sizeof(now));
    fmt_window(p->pitr_window_s, win, sizeof(win));
    size_t item = 0;
    if (json) {
        fprintf(f, "{\"now\":\"%s\",\"policy\":{\"keep_last\":%d,\"keep_hourly\":%d,", now,
                p->keep_last, p->keep_hourly);
        fprintf(f,
                "\"keep_daily\":%d,\"keep_weekly\":%d,\"keep_monthly\":%d,\"keep_yearly\":%d,"
                "\"min_count\":%d,\"keep_failed\":%d,\"pitr_window_s\":%lld},\"targets\":[",
                p->keep_daily, p->keep_weekly, p->keep_monthly, p->keep_yearly, p->min_count,
                p->keep_failed, (long long)p->pitr_window_s);
    } else {
        fprintf(f,
                "retention plan at %s: keep last %d, hourly %d, daily %d, weekly %d, monthly "
                "%d, yearly %d; minimum %d; failed %d; PITR window %s\n",
                now, p->keep_last, p->keep_hourly, p->keep_daily, p->keep_weekly, p->keep_monthly,
                p->keep_yearly, p->min_count, p->keep_failed, win);
    }
    for (size_t t = 0; t < plan->n_targets; t++) {
        const tm_retention_target *tt = &plan->targets[t];
        if (tt->log_cutoff_id != NULL) {
            tm_fmt_time(tt->log_cutoff, ts, sizeof(ts));
        }
        if (json) {
            fprintf(f, "%s{\"target\":", t ? "," : "");
            tm_json_str(f, tt->target);
            fprintf(f, ",\"kept\":%zu,\"dropped\":%zu,\"log_cutoff\":", tt->kept, tt->dropped);
            if (tt->log_cutoff_id != NULL) {
                fprintf(f, "\"%s\"", ts);
            } else {
                fputs("null", f);
            }
            fputs(",\"log_cutoff_id\":", f);
            tm_json_str(f, tt->log_cutoff_id);
            fputs(",\"backups\":[", f);
        } else {
            fprintf(f, "target %s: keep %zu, drop %zu; ", tt->target, tt->kept, tt->dropped);
            if (tt->log_cutoff_id != NULL) {
                fprintf(f, "logs before %s (start of %s) may go\n", ts, tt->log_cutoff_id);
            } else {
                fputs("no good backup: keep all logs\n", f);
            }
        }
        int first = 1;
        for (; item < plan->n_items && strcmp(plan->items[item].target, tt->target) == 0; item++) {
            const tm_retention_item *it = &plan->items[item];
            tm_fmt_time(it->finished_at, ts, sizeof(ts));
            if (json) {
                fprintf(f, "%s{\"id\":", first ? "" : ",");
                tm_json_str(f, it->id);
                fprintf(f,
                        ",\"type\":\"%s\",\"finished_at\":\"%s\",\"ok\":%s,\"action\":\"%s\","
                        "\"reason\":",
                        type_name(it->type), ts, it->ok ? "true" : "false",
                        it->keep ? "keep" : "drop");
                tm_json_str(f, it->reason);
                fputc('}', f);
            } else {
                fprintf(f, "  %-4s  %-28s %-11s %s %-6s %s\n", it->keep ? "keep" : "DROP", it->id,
                        type_name(it->type), ts, it->ok ? "ok" : "FAILED", it->reason);
            }
            first = 0;
        }
        if (json) {
            fputs("]}", f);
        }
    }
    if (json) {
        fputs("]}\n", f);
    }
    fflush(f);
    return ferror(f) ? TM_EIO : 0;
}
