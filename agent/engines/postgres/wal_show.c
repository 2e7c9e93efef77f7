/*
 * wal_show.c - `wal-show` (wal_show.h). Needs no key: it reads listings
 * and the clear sidecars only.
 */
#include "agent/engines/postgres/wal_show.h"
#include "common/json.h"

#include <dirent.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "agent/engines/postgres/wal_name.h"
#include "agent/engines/postgres/wal_spool.h"
#include "agent/repo/repo_log.h"
#include "agent/repo/repository.h"
#include "common/util.h"

typedef struct tli_acc {
    uint32_t tli;
    uint64_t *segnos;
    size_t n, cap;
    char last[TM_WAL_NAME_MAX]; /* highest segment name, for the size lookup */
} tli_acc;

static tli_acc *tli_get(tli_acc **v, size_t *n, uint32_t tli)
{
    for (size_t i = 0; i < *n; i++) {
        if ((*v)[i].tli == tli) {
            return &(*v)[i];
        }
    }
    tli_acc *nv = realloc(*v, (*n + 1) * sizeof(*nv));
    if (nv == NULL) {
        return NULL;
    }
    *v = nv;
    memset(&nv[*n], 0, sizeof(nv[0]));
    nv[*n].tli = tli;
    return &nv[(*n)++];
}

static int tli_cmp(const void *a, const void *b)
{
    uint32_t x = ((const tli_acc *)a)->tli, y = ((const tli_acc *)b)->tli;
    return x < y ? -1 : x > y;
}

/* Local queue: .ready files in pg_wal/archive_status and the oldest's age. */
/* These outputs have always written a missing string as "". */
static void json_str(FILE *f, const char *s)
{
    tm_json_str(f, s != NULL ? s : "");
}

static void ready_count(const char *pgdata, size_t *n, double *oldest_s)
{
    *n = 0;
    *oldest_s = 0;
    char *dir = NULL;
    if (asprintf(&dir, "%s/pg_wal/archive_status", pgdata) < 0) {
        return;
    }
    DIR *d = opendir(dir);
    struct dirent *de;
    int64_t now = tm_now_ms();
    while (d != NULL && (de = readdir(d)) != NULL) {
        size_t l = strlen(de->d_name);
        if (l > 6 && strcmp(de->d_name + l - 6, ".ready") == 0) {
            (*n)++;
            char *p = NULL;
            struct stat st;
            if (asprintf(&p, "%s/%s", dir, de->d_name) >= 0 && stat(p, &st) == 0) {
                double age = (double)(now - ((int64_t)st.st_mtim.tv_sec * 1000 +
                                             st.st_mtim.tv_nsec / 1000000)) /
                             1000.0;
                *oldest_s = age > *oldest_s ? age : *oldest_s;
            }
            free(p);
        }
    }
    if (d != NULL) {
        closedir(d);
    }
    free(dir);
}

int tm_wal_show(const tm_agent_conf *conf, const char *target, const char *pgdata, int json,
                FILE *out)
{
    tm_err err = {0};
    tm_repo_set *rs = NULL;
    int rc = tm_repo_set_open(&rs, conf, 0, &err);
    if (rc != TM_OK) {
        fprintf(stderr, "tidemark-agent wal-show: %s\n", err.msg);
        return rc == TM_ECONFIG ? 2 : 1;
    }
    int problems = 0;
    if (json) {
        fprintf(out, "{\"target\": ");
        json_str(out, target);
        fprintf(out, ", \"repositories\": [");
    } else {
        fprintf(out, "target %s\n", target);
    }
    for (size_t r = 0; r < tm_repo_set_count(rs); r++) {
        const char *rname = tm_repo_set_name(rs, r);
        tm_log_item *items = NULL;
        size_t n = 0;
        tm_err e = {0};
        if (json) {
            fprintf(out, "%s{\"name\": ", r ? ", " : "");
            json_str(out, rname);
        }
        if (tm_log_scan(rs, r, target, &items, &n, &e) != TM_OK) {
            problems++;
            if (json) {
                fprintf(out, ", \"error\": ");
                json_str(out, e.msg);
                fprintf(out, "}");
            } else {
                fprintf(out, "repository %s: ERROR %s\n", rname, e.msg);
            }
            continue;
        }
        tli_acc *tl = NULL;
        size_t ntl = 0, nhist = 0, nbackup = 0, npartial = 0, nincomplete = 0;
        const tm_log_item *newest = NULL;
        tm_wal_name newest_n = {0};
        for (size_t i = 0; i < n; i++) {
            const char *base = strrchr(items[i].rel, '/');
            base = base != NULL ? base + 1 : items[i].rel;
            tm_wal_name wn;
            if (tm_wal_name_parse(base, &wn) != 0) {
                continue;
            }
            if (!items[i].has_meta) {
                nincomplete++; /* object without sidecar: an interrupted push */
                continue;
            }
            nhist += wn.kind == TM_WAL_HISTORY;
            nbackup += wn.kind == TM_WAL_BACKUP;
            npartial += wn.kind == TM_WAL_PARTIAL;
            if (wn.kind != TM_WAL_SEGMENT) {
                continue;
            }
            if (newest == NULL || tm_wal_cmp(&wn, &newest_n) > 0) {
                newest = &items[i];
                newest_n = wn;
            }
            tli_acc *t = tli_get(&tl, &ntl, wn.tli);
            if (t == NULL) {
                break;
            }
            if (t->n == t->cap) {
                t->cap = t->cap ? t->cap * 2 : 256;
                uint64_t *ns = realloc(t->segnos, t->cap * sizeof(*ns));
                if (ns == NULL) {
                    break;
                }
                t->segnos = ns;
            }
            /* Packed (log << 32 | seg) until the segment size is known. */
            t->segnos[t->n++] = (uint64_t)wn.log << 32 | wn.seg;
            if (strcmp(wn.name, t->last) > 0) {
                snprintf(t->last, sizeof(t->last), "%s", wn.name);
            }
        }
        if (ntl > 1) {
            qsort(tl, ntl, sizeof(*tl), tli_cmp);
        }
        if (json) {
            fprintf(out, ", \"timelines\": [");
        } else {
            fprintf(out, "repository %s (%s)\n", rname, tm_repo_set_region(rs, r));
        }
        for (size_t t = 0; t < ntl; t++) {
            char tli[9], rel[80];
            tm_wal_tli_hex(tl[t].tli, tli);
            snprintf(rel, sizeof(rel), "%s/%s", tli, tl[t].last);
            tm_log_meta m;
            uint64_t seg_size = TM_WAL_SEG_SIZE_DEFAULT;
            if (tm_log_meta_get(rs, r, target, rel, &m, &e) == TM_OK &&
                tm_wal_valid_seg_size(m.plain_size)) {
                seg_size = m.plain_size;
            }
            uint64_t per = ((uint64_t)1 << 32) / seg_size;
            for (size_t k = 0; k < tl[t].n; k++) {
                uint64_t v = tl[t].segnos[k];
                tl[t].segnos[k] = (v >> 32) * per + (v & 0xffffffffu);
            }
            tm_wal_range *rg = calloc(tl[t].n, sizeof(*rg));
            size_t nr = rg != NULL ? tm_wal_ranges(tl[t].segnos, tl[t].n, rg) : 0;
            problems += nr > 1;
            if (json) {
                fprintf(out,
                        "%s{\"timeline\": \"%s\", \"segment_size\": %" PRIu64 ", \"ranges\": [",
                        t ? ", " : "", tli, seg_size);
            } else {
                fprintf(out, "  timeline %s (segment size %" PRIu64 " MiB)\n", tli, seg_size >> 20);
            }
            for (size_t k = 0; k < nr; k++) {
                char a[25], b[25];
                tm_wal_seg_name(tl[t].tli, rg[k].first, seg_size, a);
                tm_wal_seg_name(tl[t].tli, rg[k].last, seg_size, b);
                uint64_t cnt = rg[k].last - rg[k].first + 1;
                if (json) {
                    fprintf(out,
                            "%s{\"first\": \"%s\", \"last\": \"%s\", \"segments\": %" PRIu64 "}",
                            k ? ", " : "", a, b, cnt);
                } else {
                    fprintf(out, "    %s .. %s  %" PRIu64 " segments\n", a, b, cnt);
                }
                if (k + 1 < nr && !json) {
                    tm_wal_seg_name(tl[t].tli, rg[k].last + 1, seg_size, a);
                    tm_wal_seg_name(tl[t].tli, rg[k + 1].first - 1, seg_size, b);
                    fprintf(out, "    GAP %s .. %s  %" PRIu64 " missing\n", a, b,
                            rg[k + 1].first - rg[k].last - 1);
                }
            }
            if (json) {
                fprintf(out, "], \"gaps\": [");
                for (size_t k = 0; k + 1 < nr; k++) {
                    char a[25], b[25];
                    tm_wal_seg_name(tl[t].tli, rg[k].last + 1, seg_size, a);
                    tm_wal_seg_name(tl[t].tli, rg[k + 1].first - 1, seg_size, b);
                    fprintf(out,
                            "%s{\"first\": \"%s\", \"last\": \"%s\", \"missing\": %" PRIu64 "}",
                            k ? ", " : "", a, b, rg[k + 1].first - rg[k].last - 1);
                }
                fprintf(out, "]}");
            }
            free(rg);
            free(tl[t].segnos);
        }
        free(tl);
        char when[32] = "";
        if (newest != NULL && newest->mtime > 0) {
            tm_fmt_time(newest->mtime, when, sizeof(when));
        }
        if (json) {
            fprintf(out, "], \"newest\": ");
            if (newest != NULL) {
                fprintf(out, "{\"name\": \"%s\", \"time\": \"%s\", \"mtime\": %" PRId64 "}",
                        newest_n.name, when, newest->mtime);
            } else {
                fprintf(out, "null");
            }
            fprintf(out,
                    ", \"history_files\": %zu, \"backup_files\": %zu, \"partial_files\": %zu, "
                    "\"incomplete\": %zu}",
                    nhist, nbackup, npartial, nincomplete);
        } else {
            if (newest != NULL) {
                fprintf(out, "  newest %s at %s\n", newest_n.name, when);
            } else {
                fprintf(out, "  no segments archived\n");
            }
            fprintf(out, "  history files %zu, backup labels %zu, partial %zu, incomplete %zu\n",
                    nhist, nbackup, npartial, nincomplete);
        }
        tm_log_items_free(items, n);
    }
    /* Local state: the archiver's status and, with --pgdata, the queue. */
    char *status = NULL;
    size_t slen = 0;
    tm_wal_spool *sp = NULL;
    if (tm_wal_spool_open(&sp, conf->state_dir, target, &err) == TM_OK) {
        char *p = tm_wal_spool_path(sp, "archiver.json", NULL);
        if (p != NULL && tm_file_read(p, &status, &slen, NULL) != TM_OK) {
            status = NULL;
        }
        free(p);
        tm_wal_spool_free(sp);
    }
    while (status != NULL && slen > 0 && (status[slen - 1] == '\n' || status[slen - 1] == ' ')) {
        status[--slen] = '\0';
    }
    size_t nready = 0;
    double oldest = 0;
    if (pgdata != NULL) {
        ready_count(pgdata, &nready, &oldest);
    }
    if (json) {
        fprintf(out, "], \"queue\": ");
        if (pgdata != NULL) {
            fprintf(out, "{\"ready\": %zu, \"archive_lag_s\": %.3f}", nready, oldest);
        } else {
            fprintf(out, "null");
        }
        fprintf(out, ", \"archiver\": %s}\n", status != NULL ? status : "null");
    } else {
        if (pgdata != NULL) {
            fprintf(out, "queue: %zu ready in %s/pg_wal/archive_status, archive lag %.1fs\n",
                    nready, pgdata, oldest);
        }
        if (status != NULL) {
            fprintf(out, "archiver: %s\n", status);
        }
    }
    free(status);
    tm_repo_set_free(rs);
    return problems ? 1 : 0;
}
