/*
 * api.c - Platform API calls and the database endpoint (api.h).
 */
#include "agent/engines/turso/api.h"

#include <stdio.h>
#include <unistd.h>
#include <stdlib.h>
#include <string.h>

#include "agent/engines/turso/json.h"
#include "common/json.h"
#include "common/util.h"

/* A name as Turso makes them (lowercase letters, digits, dashes) or as our
 * config allows; anything else from an answer is refused before it lands in
 * a URL or an object name. */
static int name_ok(const char *s)
{
    size_t n = strlen(s);
    if (n == 0 || n >= TM_TURSO_NAME_MAX) {
        return 0;
    }
    for (size_t i = 0; i < n; i++) {
        char c = s[i];
        if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
              c == '-' || c == '_' || c == '.') ||
            (c == '.' && (i == 0 || s[i - 1] == '.'))) {
            return 0;
        }
    }
    return 1;
}

static void copy(char *dst, size_t cap, const char *s)
{
    snprintf(dst, cap, "%s", s != NULL ? s : "");
}

static int db_from(const tm_tj *j, tm_turso_db *db, tm_err *err)
{
    memset(db, 0, sizeof(*db));
    const char *name = tm_tj_str(tm_tj_get(j, "Name"));
    if (name == NULL || !name_ok(name)) {
        return tm_err_set(err, TM_EPROTO, "Turso answered a database without a usable Name (%.60s)",
                          name != NULL ? name : "none");
    }
    copy(db->name, sizeof(db->name), name);
    copy(db->hostname, sizeof(db->hostname), tm_tj_str(tm_tj_get(j, "Hostname")));
    copy(db->id, sizeof(db->id), tm_tj_str(tm_tj_get(j, "DbId")));
    copy(db->group, sizeof(db->group), tm_tj_str(tm_tj_get(j, "group")));
    return TM_OK;
}

static int parse(const tm_turso_resp *r, const char *what, tm_tj **j, tm_err *err)
{
    int rc = tm_tj_parse(r->body, r->len, j, err);
    if (rc != TM_OK) {
        tm_err_prefix(err, "%s: the answer is not JSON", what);
    }
    return rc;
}

static int cmp_db(const void *a, const void *b)
{
    return strcmp(((const tm_turso_db *)a)->name, ((const tm_turso_db *)b)->name);
}

int tm_turso_api_get(const tm_turso_target_conf *tc, tm_turso_http *h, const char *name,
                     tm_turso_db *db, tm_err *err)
{
    char url[1024], what[300];
    snprintf(url, sizeof(url), "%s/v1/organizations/%s/databases/%s", tc->api_url, tc->organization,
             name);
    snprintf(what, sizeof(what), "database %s of organization %s", name, tc->organization);
    tm_turso_resp r = {0};
    tm_tj *j = NULL;
    int rc = tm_turso_http_call(h, "GET", url, tc->api_token, NULL, what, &r, err);
    if (rc == TM_OK) {
        rc = parse(&r, what, &j, err);
    }
    if (rc == TM_OK) {
        rc = db_from(tm_tj_get(j, "database"), db, err);
    }
    tm_tj_free(j);
    tm_turso_resp_free(&r);
    return rc;
}

int tm_turso_api_targets(const tm_turso_target_conf *tc, tm_turso_http *h, tm_turso_db **out,
                         size_t *n, tm_err *err)
{
    *out = NULL;
    *n = 0;
    if (tc->database != NULL) {
        tm_turso_db *db = calloc(1, sizeof(*db));
        if (db == NULL) {
            return tm_err_set(err, TM_ENOMEM, "out of memory");
        }
        int rc = tm_turso_api_get(tc, h, tc->database, db, err);
        if (rc != TM_OK) {
            free(db);
            return rc;
        }
        *out = db;
        *n = 1;
        return TM_OK;
    }
    char url[1024], what[300];
    /* The group itself first: an empty listing must not hide a typo. */
    snprintf(url, sizeof(url), "%s/v1/organizations/%s/groups/%s", tc->api_url, tc->organization,
             tc->group);
    snprintf(what, sizeof(what), "group %s of organization %s", tc->group, tc->organization);
    int rc = tm_turso_http_call(h, "GET", url, tc->api_token, NULL, what, NULL, err);
    if (rc != TM_OK) {
        return rc;
    }
    snprintf(url, sizeof(url), "%s/v1/organizations/%s/databases?group=%s", tc->api_url,
             tc->organization, tc->group);
    snprintf(what, sizeof(what), "databases of group %s of organization %s", tc->group,
             tc->organization);
    tm_turso_resp r = {0};
    tm_tj *j = NULL;
    rc = tm_turso_http_call(h, "GET", url, tc->api_token, NULL, what, &r, err);
    if (rc == TM_OK) {
        rc = parse(&r, what, &j, err);
    }
    const tm_tj *list = tm_tj_get(j, "databases");
    if (rc == TM_OK && (list == NULL || list->type != TM_TJ_ARR)) {
        rc = tm_err_set(err, TM_EPROTO, "%s: the answer has no databases list", what);
    }
    tm_turso_db *dbs = rc == TM_OK ? calloc(list->n ? list->n : 1, sizeof(*dbs)) : NULL;
    if (rc == TM_OK && dbs == NULL) {
        rc = tm_err_set(err, TM_ENOMEM, "out of memory");
    }
    size_t k = 0;
    for (const tm_tj *d = rc == TM_OK ? list->child : NULL; d != NULL && rc == TM_OK; d = d->next) {
        rc = db_from(d, &dbs[k], err);
        /* The listing is filtered by group; a server that ignores the
         * filter must not make us back up another group's databases. */
        if (rc == TM_OK && (dbs[k].group[0] == '\0' || strcmp(dbs[k].group, tc->group) == 0)) {
            k++;
        }
    }
    tm_tj_free(j);
    tm_turso_resp_free(&r);
    if (rc != TM_OK) {
        free(dbs);
        return rc;
    }
    qsort(dbs, k, sizeof(*dbs), cmp_db);
    *out = dbs;
    *n = k;
    return TM_OK;
}

int tm_turso_api_create(const tm_turso_target_conf *tc, tm_turso_http *h, const char *name,
                        const char *group, const char *seed_db, const char *seed_ts,
                        tm_turso_db *db, tm_err *err)
{
    char *body = NULL;
    size_t blen = 0;
    FILE *f = open_memstream(&body, &blen);
    if (f == NULL) {
        return tm_err_set(err, TM_ENOMEM, "out of memory");
    }
    fputs("{\"name\":", f);
    tm_json_str(f, name);
    if (group != NULL && group[0] != '\0') {
        fputs(",\"group\":", f);
        tm_json_str(f, group);
    }
    if (seed_db != NULL) {
        fputs(",\"seed\":{\"type\":\"database\",\"name\":", f);
        tm_json_str(f, seed_db);
        if (seed_ts != NULL) {
            fputs(",\"timestamp\":", f);
            tm_json_str(f, seed_ts);
        }
        fputs("}", f);
    }
    fputs("}", f);
    fclose(f);
    char url[1024], what[300];
    snprintf(url, sizeof(url), "%s/v1/organizations/%s/databases", tc->api_url, tc->organization);
    snprintf(what, sizeof(what), "create database %s in organization %s", name, tc->organization);
    tm_turso_resp r = {0};
    tm_tj *j = NULL;
    int rc = tm_turso_http_call(h, "POST", url, tc->api_token, body, what, &r, err);
    free(body);
    if (rc == TM_OK) {
        rc = parse(&r, what, &j, err);
    }
    if (rc == TM_OK) {
        rc = db_from(tm_tj_get(j, "database"), db, err);
        copy(db->group, sizeof(db->group), group);
    }
    tm_tj_free(j);
    tm_turso_resp_free(&r);
    return rc;
}

int tm_turso_api_delete(const tm_turso_target_conf *tc, tm_turso_http *h, const char *name,
                        tm_err *err)
{
    char url[1024], what[300];
    snprintf(url, sizeof(url), "%s/v1/organizations/%s/databases/%s", tc->api_url, tc->organization,
             name);
    snprintf(what, sizeof(what), "delete database %s of organization %s", name, tc->organization);
    return tm_turso_http_call(h, "DELETE", url, tc->api_token, NULL, what, NULL, err);
}

/* The provider's stated point-in-time windows (docs.turso.tech, Point-in-Time
 * Recovery): free 24 hours; developer, scaler and pro 10, 30 and 90 days. */
static int64_t plan_window(const char *plan)
{
    static const struct {
        const char *plan;
        int64_t s;
    } w[] = {
        {"free", 86400},
        {"starter", 86400},
        {"hobby", 86400},
        {"developer", 10 * 86400},
        {"scaler", 30 * 86400},
        {"pro", 90 * 86400},
        {"enterprise", 90 * 86400},
    };
    for (size_t i = 0; plan != NULL && i < sizeof(w) / sizeof(w[0]); i++) {
        if (strcmp(plan, w[i].plan) == 0) {
            return w[i].s;
        }
    }
    return 0;
}

int tm_turso_api_plan(const tm_turso_target_conf *tc, tm_turso_http *h, char *plan, size_t cap,
                      int64_t *window_s, tm_err *err)
{
    char url[1024], what[300];
    snprintf(url, sizeof(url), "%s/v1/organizations/%s", tc->api_url, tc->organization);
    snprintf(what, sizeof(what), "organization %s", tc->organization);
    tm_turso_resp r = {0};
    tm_tj *j = NULL;
    int rc = tm_turso_http_call(h, "GET", url, tc->api_token, NULL, what, &r, err);
    if (rc == TM_OK) {
        rc = parse(&r, what, &j, err);
    }
    const char *p =
        rc == TM_OK ? tm_tj_str(tm_tj_get(tm_tj_get(j, "organization"), "plan_id")) : NULL;
    copy(plan, cap, p != NULL ? p : "unknown");
    *window_s = plan_window(p);
    tm_tj_free(j);
    tm_turso_resp_free(&r);
    return rc;
}

/* ---- the database endpoint ---- */

static void subst(char *out, size_t cap, const char *tpl, const tm_turso_target_conf *tc,
                  const tm_turso_db *db)
{
    size_t o = 0;
    out[0] = '\0';
    for (const char *p = tpl; *p != '\0' && o + 1 < cap;) {
        const char *v = NULL;
        size_t skip = 0;
        if (strncmp(p, "{hostname}", 10) == 0) {
            v = db->hostname, skip = 10;
        } else if (strncmp(p, "{name}", 6) == 0) {
            v = db->name, skip = 6;
        } else if (strncmp(p, "{organization}", 14) == 0) {
            v = tc->organization, skip = 14;
        }
        if (v != NULL) {
            o += (size_t)snprintf(out + o, cap - o, "%s", v);
            p += skip;
        } else {
            out[o++] = *p++;
            out[o] = '\0';
        }
        if (o >= cap) {
            o = cap - 1;
        }
    }
}

int tm_turso_conn_open(const tm_turso_target_conf *tc, tm_turso_http *h, const tm_turso_db *db,
                       int write, tm_turso_conn *c, tm_err *err)
{
    memset(c, 0, sizeof(*c));
    copy(c->name, sizeof(c->name), db->name);
    if (strstr(tc->db_url, "{hostname}") != NULL && db->hostname[0] == '\0') {
        return tm_err_set(err, TM_EPROTO, "database %s: Turso gave no Hostname", db->name);
    }
    subst(c->url, sizeof(c->url), tc->db_url, tc, db);
    if (tc->db_token != NULL) {
        c->token = strdup(tc->db_token);
        return c->token != NULL ? TM_OK : tm_err_set(err, TM_ENOMEM, "out of memory");
    }
    char url[1024], what[300];
    snprintf(url, sizeof(url),
             "%s/v1/organizations/%s/databases/%s/auth/tokens?expiration=1h&authorization=%s",
             tc->api_url, tc->organization, db->name, write ? "full-access" : "read-only");
    snprintf(what, sizeof(what), "token for database %s", db->name);
    tm_turso_resp r = {0};
    tm_tj *j = NULL;
    int rc = tm_turso_http_call(h, "POST", url, tc->api_token, "{}", what, &r, err);
    if (rc == TM_OK) {
        rc = parse(&r, what, &j, err);
    }
    const char *jwt = tm_tj_str(tm_tj_get(j, "jwt"));
    if (rc == TM_OK && (jwt == NULL || jwt[0] == '\0')) {
        rc = tm_err_set(err, TM_EPROTO, "%s: the answer has no jwt", what);
    }
    if (rc == TM_OK && (c->token = strdup(jwt)) == NULL) {
        rc = tm_err_set(err, TM_ENOMEM, "out of memory");
    }
    tm_tj_free(j);
    tm_turso_resp_free(&r);
    return rc;
}

void tm_turso_conn_close(tm_turso_conn *c)
{
    if (c->token != NULL) {
        memset(c->token, 0, strlen(c->token));
        free(c->token);
    }
    c->token = NULL;
}

/* A Hrana value as text: integers and text as is, floats by their JSON
 * text, NULL as "", blobs as "<blob>". */
static void value_text(const tm_tj *v, char *out, size_t cap)
{
    const char *type = tm_tj_str(tm_tj_get(v, "type"));
    const tm_tj *val = tm_tj_get(v, "value");
    if (type != NULL && strcmp(type, "blob") == 0) {
        copy(out, cap, "<blob>");
    } else if (val != NULL && (val->type == TM_TJ_STR || val->type == TM_TJ_NUM)) {
        copy(out, cap, val->str);
    } else {
        out[0] = '\0';
    }
}

int tm_turso_exec(tm_turso_http *h, const tm_turso_conn *c, const char *const *sql, size_t n,
                  tm_turso_stmt *out, tm_err *err)
{
    char *body = NULL;
    size_t blen = 0;
    FILE *f = open_memstream(&body, &blen);
    if (f == NULL) {
        return tm_err_set(err, TM_ENOMEM, "out of memory");
    }
    fputs("{\"requests\":[", f);
    for (size_t i = 0; i < n; i++) {
        fputs("{\"type\":\"execute\",\"stmt\":{\"sql\":", f);
        tm_json_str(f, sql[i]);
        fputs("}},", f);
    }
    fputs("{\"type\":\"close\"}]}", f);
    fclose(f);
    char url[600], what[300];
    snprintf(url, sizeof(url), "%s/v2/pipeline", c->url);
    snprintf(what, sizeof(what), "query database %s", c->name);
    tm_turso_resp r = {0};
    tm_tj *j = NULL;
    int rc = tm_turso_http_call(h, "POST", url, c->token, body, what, &r, err);
    free(body);
    if (rc == TM_OK) {
        rc = parse(&r, what, &j, err);
    }
    const tm_tj *res = tm_tj_get(j, "results");
    if (rc == TM_OK && (res == NULL || res->type != TM_TJ_ARR || res->n < n)) {
        rc = tm_err_set(err, TM_EPROTO, "%s: %zu statements sent, answer has %zu results", what, n,
                        res != NULL ? res->n : 0);
    }
    for (size_t i = 0; rc == TM_OK && i < n; i++) {
        const tm_tj *e = tm_tj_at(res, i);
        tm_turso_stmt *s = &out[i];
        memset(s, 0, sizeof(*s));
        const char *type = tm_tj_str(tm_tj_get(e, "type"));
        if (type == NULL || strcmp(type, "ok") != 0) {
            const char *m = tm_tj_str(tm_tj_get(tm_tj_get(e, "error"), "message"));
            copy(s->error, sizeof(s->error), m != NULL ? m : "statement failed");
            continue;
        }
        const tm_tj *result = tm_tj_get(tm_tj_get(e, "response"), "result");
        const tm_tj *rows = tm_tj_get(result, "rows");
        s->ok = 1;
        s->rows = rows != NULL && rows->type == TM_TJ_ARR ? rows->n : 0;
        const tm_tj *first = tm_tj_at(tm_tj_at(rows, 0), 0);
        if (first != NULL) {
            value_text(first, s->first, sizeof(s->first));
        }
    }
    tm_tj_free(j);
    tm_turso_resp_free(&r);
    return rc;
}

int tm_turso_dump(tm_turso_http *h, const tm_turso_conn *c, tm_turso_sink_fn fn, void *arg,
                  uint64_t *bytes, tm_err *err)
{
    char url[600], what[300];
    snprintf(url, sizeof(url), "%s/dump", c->url);
    snprintf(what, sizeof(what), "dump of database %s", c->name);
    return tm_turso_http_stream(h, url, c->token, what, fn, arg, bytes, err);
}

/* A database the provider just created may take a while to come up from
 * its storage: SELECT 1 until it answers, the token is refused, or 5
 * minutes pass. */
#define READY_TIMEOUT_MS 300000

int tm_turso_wait_ready(tm_turso_http *h, const tm_turso_conn *c, tm_task_ctx *ctx, tm_err *err)
{
    uint64_t t0 = tm_mono_ns();
    const char *q = "SELECT 1";
    for (;;) {
        tm_turso_stmt s;
        int rc = tm_turso_exec(h, c, &q, 1, &s, err);
        if (rc == TM_OK && s.ok) {
            return TM_OK;
        }
        if (rc == TM_OK) {
            tm_err_set(err, TM_EUNAVAIL, "database %s: %s", c->name, s.error);
        }
        if (rc == TM_EAUTH || (ctx != NULL && tm_task_cancelled(ctx)) ||
            (tm_mono_ns() - t0) / 1000000 > READY_TIMEOUT_MS) {
            return tm_err_prefix(err, "the new database never answered");
        }
        usleep(200000);
    }
}
