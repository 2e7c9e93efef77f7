/*
 * log_report.c - archived-log runs per repository, reported to the
 * coordinator (see log_report.h).
 */
#include "agent/log_report.h"
#include "agent/engines/postgres/pg.h"
#include "agent/engines/postgres/wal_name.h"
#include "agent/repo_log.h"
#include "agent/repository.h"
#include "common/log.h"
#include "common/util.h"

#include "tidemark.pb-c.h"

#include <dirent.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

struct tm_log_reporter {
    const tm_agent_conf *conf;
    tm_rpc_client *rpc;
    uint32_t interval_ms;
    pthread_t thread;
    int started;
    atomic_int stopping;
    pthread_mutex_t mu;
    pthread_cond_t cv;
};

typedef struct seg {
    uint32_t tli;
    uint64_t segno;
    char name[TM_WAL_NAME_MAX];
    int64_t mtime;
    uint64_t bytes;
} seg;

static int seg_cmp(const void *a, const void *b)
{
    const seg *x = a, *y = b;
    if (x->tli != y->tli) {
        return x->tli < y->tli ? -1 : 1;
    }
    return x->segno < y->segno ? -1 : x->segno > y->segno ? 1 : 0;
}

/* Runs of consecutive segments of one repository, as LogRange messages
 * (strings point into segs; valid while segs lives). */
static size_t build_ranges(const char *target, const char *repo, seg *segs, size_t n,
                           Tidemark__LogRange *out, Tidemark__LogRange **ptrs)
{
    size_t nr = 0;
    qsort(segs, n, sizeof(*segs), seg_cmp);
    for (size_t i = 0; i < n; i++) {
        int extends = nr > 0 && out[nr - 1].timeline == segs[i].tli && i > 0 &&
                      segs[i - 1].segno + 1 == segs[i].segno;
        if (i > 0 && segs[i - 1].tli == segs[i].tli && segs[i - 1].segno == segs[i].segno) {
            continue; /* a .partial beside its segment */
        }
        if (!extends) {
            Tidemark__LogRange *r = &out[nr];
            tidemark__log_range__init(r);
            r->target = (char *)target;
            r->repository = (char *)repo;
            r->has_timeline = r->has_first_time = r->has_last_time = 1;
            r->has_bytes = r->has_files = 1;
            r->timeline = segs[i].tli;
            r->first = segs[i].name;
            r->first_time = segs[i].mtime;
            ptrs[nr] = r;
            nr++;
        }
        Tidemark__LogRange *r = &out[nr - 1];
        r->last = segs[i].name;
        if (segs[i].mtime > r->last_time) {
            r->last_time = segs[i].mtime;
        }
        r->files++;
        r->bytes += segs[i].bytes;
    }
    return nr;
}

/* WAL files PostgreSQL has finished and not yet had archived: the queue
 * that grows when archiving falls behind (what an RPO alert watches). */
static uint32_t archive_queue(const tm_agent_conf *conf, const char *target)
{
    for (size_t t = 0; t < conf->n_targets; t++) {
        const tm_target_conf *tc = &conf->targets[t];
        const tm_pg_target_conf *pg = tm_pg_target(tc);
        if (strcmp(tc->name, target) != 0 || pg == NULL || pg->pgdata == NULL) {
            continue;
        }
        char dir[4096];
        snprintf(dir, sizeof(dir), "%s/pg_wal/archive_status", pg->pgdata);
        DIR *d = opendir(dir);
        if (d == NULL) {
            return 0;
        }
        uint32_t n = 0;
        struct dirent *e;
        while ((e = readdir(d)) != NULL) {
            size_t l = strlen(e->d_name);
            if (l > 6 && strcmp(e->d_name + l - 6, ".ready") == 0) {
                n++;
            }
        }
        closedir(d);
        return n;
    }
    return 0;
}

/* pg_stat_archiver of the target's server, into st (strings malloc'd).
 * A server that cannot be asked is reported as such (st->error), so the
 * coordinator tells "archiving fails" from "cannot see". */
static void archiver_status(const tm_target_conf *tc, Tidemark__ArchiverStatus *st)
{
    tidemark__archiver_status__init(st);
    tm_pg_conn *c = NULL;
    tm_err err = {0};
    char *v = NULL;
    if (tm_pg_connect(tm_pg_target(tc), NULL, 0, NULL, &c, &err) != TM_OK ||
        tm_pg_query_value(
            c,
            "SELECT archived_count || '|' || coalesce(last_archived_wal, '') || '|' "
            "|| coalesce((extract(epoch FROM last_archived_time) * 1000)::bigint, 0) || '|' "
            "|| failed_count || '|' || coalesce(last_failed_wal, '') || '|' || "
            "coalesce((extract(epoch FROM last_failed_time) * 1000)::bigint, 0) "
            "FROM pg_stat_archiver",
            &v, &err) != TM_OK) {
        st->error = strdup(err.msg);
        tm_pg_close(c);
        return;
    }
    tm_pg_close(c);
    char aw[64] = "", fw[64] = "";
    unsigned long long ac = 0, fc = 0;
    long long at = 0, ft = 0;
    /* Fields may be empty (never archived / never failed): parse by hand. */
    char *f[6] = {0};
    char *p = v;
    for (int i = 0; i < 6; i++) {
        char *bar = strchr(p, '|');
        if (bar != NULL) {
            *bar = '\0';
        }
        f[i] = p;
        p = bar ? bar + 1 : p + strlen(p);
    }
    ac = strtoull(f[0], NULL, 10);
    snprintf(aw, sizeof(aw), "%s", f[1]);
    at = strtoll(f[2], NULL, 10);
    fc = strtoull(f[3], NULL, 10);
    snprintf(fw, sizeof(fw), "%s", f[4]);
    ft = strtoll(f[5], NULL, 10);
    free(v);
    st->has_archived_count = st->has_last_archived_ms = 1;
    st->has_failed_count = st->has_last_failed_ms = 1;
    st->archived_count = ac;
    st->last_archived_ms = at;
    st->failed_count = fc;
    st->last_failed_ms = ft;
    st->last_archived_wal = strdup(aw);
    st->last_failed_wal = strdup(fw);
}

static void archiver_status_clear(Tidemark__ArchiverStatus *st)
{
    free(st->error);
    free(st->last_archived_wal);
    free(st->last_failed_wal);
}

static int report_repo(const tm_agent_conf *conf, tm_rpc_client *rpc, tm_repo_set *rs, size_t i,
                       const char *target, Tidemark__ArchiverStatus *arch, tm_err *err)
{
    tm_log_item *items = NULL;
    size_t n = 0;
    int rc = tm_log_scan(rs, i, target, &items, &n, err);
    if (rc != TM_OK) {
        return rc;
    }
    seg *segs = calloc(n + 1, sizeof(*segs));
    Tidemark__LogRange *ranges = calloc(n + 1, sizeof(*ranges));
    Tidemark__LogRange **ptrs = calloc(n + 1, sizeof(*ptrs));
    size_t ns = 0;
    if (segs == NULL || ranges == NULL || ptrs == NULL) {
        rc = tm_err_set(err, TM_ENOMEM, "log report: out of memory");
        goto out;
    }
    for (size_t k = 0; k < n; k++) {
        const char *base = strrchr(items[k].rel, '/');
        base = base ? base + 1 : items[k].rel;
        tm_wal_name w;
        /* Only complete copies count: a sidecar is written last. */
        if (!items[k].has_meta || !items[k].has_object || tm_wal_name_parse(base, &w) != 0 ||
            (w.kind != TM_WAL_SEGMENT && w.kind != TM_WAL_PARTIAL)) {
            continue;
        }
        segs[ns].tli = w.tli;
        segs[ns].segno = tm_wal_segno(&w, TM_WAL_SEG_SIZE_DEFAULT);
        snprintf(segs[ns].name, sizeof(segs[ns].name), "%.24s", base);
        segs[ns].mtime = items[k].mtime;
        segs[ns].bytes = items[k].stored_size;
        ns++;
    }
    size_t nr = build_ranges(target, tm_repo_set_name(rs, i), segs, ns, ranges, ptrs);
    Tidemark__ReportLogRequest req = TIDEMARK__REPORT_LOG_REQUEST__INIT;
    req.target = (char *)target;
    req.repository = (char *)tm_repo_set_name(rs, i);
    req.n_ranges = nr;
    req.ranges = ptrs;
    req.has_queue_depth = 1;
    req.queue_depth = archive_queue(conf, target);
    req.archiver = arch;
    rc = tm_rpc_client_call(rpc, "Coordinator.ReportLog", &req.base,
                            &tidemark__report_log_response__descriptor, NULL, 10000, NULL, err);
out:
    free(ptrs);
    free(ranges);
    free(segs);
    tm_log_items_free(items, n);
    return rc;
}

int tm_log_report_once(const tm_agent_conf *conf, tm_rpc_client *rpc, tm_err *err)
{
    int reports = 0, any = 0;
    for (size_t t = 0; t < conf->n_targets; t++) {
        any |= strcmp(conf->targets[t].kind, "postgres") == 0;
    }
    if (!any || conf->n_repos == 0) {
        return 0;
    }
    tm_repo_set *rs = NULL;
    int rc = tm_repo_set_open(&rs, conf, 0, err);
    if (rc != TM_OK) {
        return rc;
    }
    for (size_t t = 0; t < conf->n_targets; t++) {
        if (strcmp(conf->targets[t].kind, "postgres") != 0) {
            continue;
        }
        Tidemark__ArchiverStatus arch;
        archiver_status(&conf->targets[t], &arch);
        for (size_t i = 0; i < tm_repo_set_count(rs); i++) {
            tm_err e = {0};
            if (report_repo(conf, rpc, rs, i, conf->targets[t].name, &arch, &e) == TM_OK) {
                reports++;
            } else {
                tm_debug("log_report", "target=%s repository=%s msg=\"%s\"", conf->targets[t].name,
                         tm_repo_set_name(rs, i), e.msg);
            }
        }
        archiver_status_clear(&arch);
    }
    tm_repo_set_free(rs);
    return reports;
}

static void *reporter_main(void *arg)
{
    tm_log_reporter *r = arg;
    while (!atomic_load(&r->stopping)) {
        tm_err err = {0};
        int n = tm_log_report_once(r->conf, r->rpc, &err);
        if (n < 0) {
            tm_debug("log_report", "msg=\"%s\"", err.msg);
        }
        struct timespec ts;
        tm_deadline_after_ms(&ts, r->interval_ms);
        pthread_mutex_lock(&r->mu);
        if (!atomic_load(&r->stopping)) {
            pthread_cond_timedwait(&r->cv, &r->mu, &ts);
        }
        pthread_mutex_unlock(&r->mu);
    }
    return NULL;
}

int tm_log_reporter_start(tm_log_reporter **out, const tm_agent_conf *conf, tm_rpc_client *rpc,
                          uint32_t interval_ms, tm_err *err)
{
    tm_log_reporter *r = calloc(1, sizeof(*r));
    if (r == NULL) {
        return tm_err_set(err, TM_ENOMEM, "log reporter: out of memory");
    }
    r->conf = conf;
    r->rpc = rpc;
    r->interval_ms = interval_ms < 200 ? 200 : interval_ms;
    pthread_mutex_init(&r->mu, NULL);
    pthread_cond_init(&r->cv, NULL);
    if (pthread_create(&r->thread, NULL, reporter_main, r) != 0) {
        tm_log_reporter_free(r);
        return tm_err_set(err, TM_EINTERNAL, "log reporter: cannot start thread");
    }
    r->started = 1;
    *out = r;
    return TM_OK;
}

void tm_log_reporter_stop(tm_log_reporter *r)
{
    if (r == NULL) {
        return;
    }
    atomic_store(&r->stopping, 1);
    pthread_mutex_lock(&r->mu);
    pthread_cond_broadcast(&r->cv);
    pthread_mutex_unlock(&r->mu);
}

void tm_log_reporter_free(tm_log_reporter *r)
{
    if (r == NULL) {
        return;
    }
    tm_log_reporter_stop(r);
    if (r->started) {
        pthread_join(r->thread, NULL);
    }
    pthread_cond_destroy(&r->cv);
    pthread_mutex_destroy(&r->mu);
    free(r);
}
