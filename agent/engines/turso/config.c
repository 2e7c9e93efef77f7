/*
 * config.c - the turso: block of an agent.yaml target (config.h).
 */
#include "agent/engines/turso/config.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/config/validate.h"

/* The block as libcyaml loads it. */
struct raw_turso {
    char *organization;
    char *database;
    char *group;
    char *api_token;
    char *api_token_file;
    char *api_url;
    char *db_url;
    char *db_token;
    char *db_token_file;
    char *timeout;
    int64_t retries;
    char *provider_pitr;
    char *check_interval;
};

#define OPT CYAML_FLAG_OPTIONAL
#define STR(key, m) CYAML_FIELD_STRING_PTR(key, OPT, struct raw_turso, m, 0, CYAML_UNLIMITED)

static const cyaml_schema_field_t turso_fields[] = {
    STR("organization", organization),
    STR("database", database),
    STR("group", group),
    STR("api_token", api_token),
    STR("api_token_file", api_token_file),
    STR("api_url", api_url),
    STR("db_url", db_url),
    STR("db_token", db_token),
    STR("db_token_file", db_token_file),
    STR("timeout", timeout),
    CYAML_FIELD_INT("retries", OPT, struct raw_turso, retries),
    STR("provider_pitr", provider_pitr),
    STR("check_interval", check_interval),
    CYAML_FIELD_END,
};

static void turso_free(void *conf)
{
    tm_turso_target_conf *tc = conf;
    if (tc == NULL) {
        return;
    }
    free(tc->organization);
    free(tc->database);
    free(tc->group);
    tm_cv_free_secret(tc->api_token);
    free(tc->api_url);
    free(tc->db_url);
    tm_cv_free_secret(tc->db_token);
    free(tc);
}

/* An http(s) URL without a trailing slash. */
static int url(tm_cv *v, const char *path, const char *s, const char *def, char **out)
{
    const char *u = s != NULL ? s : def;
    if (strncmp(u, "https://", 8) != 0 && strncmp(u, "http://", 7) != 0) {
        return tm_cv_err(v, path, "'%.80s' is not an http:// or https:// URL", u);
    }
    int rc = tm_cv_dup(v, u, out);
    size_t n = rc == 0 ? strlen(*out) : 0;
    while (n > 0 && (*out)[n - 1] == '/') {
        (*out)[--n] = '\0';
    }
    return rc;
}

static int turso_validate(tm_cv *v, const char *base, const void *raw, void **out)
{
    static const struct raw_turso none;
    const struct raw_turso *r = raw != NULL ? raw : &none;
    tm_turso_target_conf *tc = calloc(1, sizeof(*tc));
    *out = tc;
    if (tc == NULL) {
        return tm_cv_oom(v);
    }
    char p[160];
    snprintf(p, sizeof(p), "%s.organization", base);
    if (r->organization == NULL) {
        return tm_cv_err_key(v, base,
                             "organization is missing, expected the organization slug "
                             "(organization: acme)");
    }
    int rc = tm_cv_token(v, p, r->organization, 128, &tc->organization);
    if (rc == 0 && (r->database != NULL) == (r->group != NULL)) {
        snprintf(p, sizeof(p), "%s.%s", base, r->database != NULL ? "group" : "database");
        return tm_cv_err_key(v, r->database != NULL ? p : base,
                             "expected exactly one of database: (one database) and group: "
                             "(every database of the group, new ones included)");
    }
    snprintf(p, sizeof(p), "%s.%s", base, r->database != NULL ? "database" : "group");
    if (rc == 0) {
        rc = tm_cv_name(v, p, r->database != NULL ? r->database : r->group);
    }
    if (rc == 0) {
        rc = tm_cv_dup(v, r->database != NULL ? r->database : r->group,
                       r->database != NULL ? &tc->database : &tc->group);
    }
    if (rc == 0) {
        rc = tm_cv_secret(v, base, "api_token", r->api_token, r->api_token_file, &tc->api_token);
    }
    if (rc == 0 && (r->db_token != NULL || r->db_token_file != NULL)) {
        rc = tm_cv_secret(v, base, "db_token", r->db_token, r->db_token_file, &tc->db_token);
    }
    snprintf(p, sizeof(p), "%s.api_url", base);
    if (rc == 0) {
        rc = url(v, p, r->api_url, "https://api.turso.tech", &tc->api_url);
    }
    snprintf(p, sizeof(p), "%s.db_url", base);
    if (rc == 0) {
        rc = url(v, p, r->db_url, "https://{hostname}", &tc->db_url);
    }
    if (rc == 0 && strstr(tc->db_url, "{hostname}") == NULL &&
        strstr(tc->db_url, "{name}") == NULL) {
        rc = tm_cv_err(v, p,
                       "'%.80s' names no database, expected {hostname} or {name} in it "
                       "(db_url: https://{hostname})",
                       tc->db_url);
    }
    snprintf(p, sizeof(p), "%s.timeout", base);
    if (rc == 0) {
        rc = tm_cv_duration(v, p, r->timeout, "60s", 1000, 3600000, &tc->timeout_ms);
    }
    snprintf(p, sizeof(p), "%s.retries", base);
    if (rc == 0) {
        rc = tm_cv_int(v, p, r->retries, 5, 0, 20, &tc->retries);
    }
    snprintf(p, sizeof(p), "%s.check_interval", base);
    if (rc == 0) {
        rc = tm_cv_duration(v, p, r->check_interval, "5m", 1000, 86400000, &tc->check_interval_ms);
    }
    snprintf(p, sizeof(p), "%s.provider_pitr", base);
    if (rc == 0 && r->provider_pitr != NULL) {
        rc =
            tm_cv_seconds(v, p, r->provider_pitr, NULL, 3600, 3650LL * 86400, &tc->provider_pitr_s);
    }
    return rc;
}

const tm_target_schema tm_turso_target_schema = {
    .kind = "turso",
    .fields = turso_fields,
    .raw_size = sizeof(struct raw_turso),
    .validate = turso_validate,
    .free_conf = turso_free,
};

const tm_turso_target_conf *tm_turso_target(const tm_target_conf *t)
{
    return tm_target_engine_conf(t, &tm_turso_target_schema);
}
