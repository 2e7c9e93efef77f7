/*
 * config.c - the postgres: block of an agent.yaml target (config.h).
 */
#include "agent/engines/postgres/config.h"

#include <stdio.h>
#include <stdlib.h>

#include "common/config/validate.h"

/* The block as libcyaml loads it. */
struct raw_pg {
    char *pgdata;
    char *host;
    int64_t port;
    char *user;
    char *database;
    char *password;
    char *password_file;
    char *bindir;
    bool checksum_validation;
    int64_t parallel;
};

#define OPT CYAML_FLAG_OPTIONAL
#define STR(key, m) CYAML_FIELD_STRING_PTR(key, OPT, struct raw_pg, m, 0, CYAML_UNLIMITED)

static const cyaml_schema_field_t pg_fields[] = {
    STR("pgdata", pgdata),
    STR("host", host),
    CYAML_FIELD_INT("port", OPT, struct raw_pg, port),
    STR("user", user),
    STR("database", database),
    STR("password", password),
    STR("password_file", password_file),
    STR("bindir", bindir),
    CYAML_FIELD_BOOL("checksum_validation", OPT, struct raw_pg, checksum_validation),
    CYAML_FIELD_INT("parallel", OPT, struct raw_pg, parallel),
    CYAML_FIELD_END,
};

static void pg_free(void *conf)
{
    tm_pg_target_conf *pg = conf;
    if (pg == NULL) {
        return;
    }
    free(pg->pgdata);
    free(pg->host);
    free(pg->user);
    free(pg->database);
    tm_cv_free_secret(pg->password);
    free(pg->bindir);
    free(pg);
}

/* No block: no conf (tm_pg_target() is NULL, libpq's defaults apply). */
static int pg_validate(tm_cv *v, const char *base, const void *raw, void **out)
{
    *out = NULL;
    if (raw == NULL) {
        return 0;
    }
    const struct raw_pg *r = raw;
    tm_pg_target_conf *pg = calloc(1, sizeof(*pg));
    if (pg == NULL) {
        return tm_cv_oom(v);
    }
    *out = pg;
    pg->checksum_validation = true;
    char p[128];
    int rc = 0;
    snprintf(p, sizeof(p), "%s.pgdata", base);
    if (r->pgdata != NULL) {
        rc = r->pgdata[0] != '/' ? tm_cv_err(v, p,
                                             "'%.80s' is not an absolute path, expected the data "
                                             "directory (pgdata: /var/lib/postgresql/15/main)",
                                             r->pgdata)
                                 : tm_cv_dup(v, r->pgdata, &pg->pgdata);
    }
    snprintf(p, sizeof(p), "%s.host", base);
    if (rc == 0) {
        rc = tm_cv_token(v, p, r->host, 255, &pg->host);
    }
    snprintf(p, sizeof(p), "%s.port", base);
    if (rc == 0) {
        rc = tm_cv_port(v, p, r->port, 5432, &pg->port);
    }
    snprintf(p, sizeof(p), "%s.user", base);
    if (rc == 0) {
        rc = tm_cv_token(v, p, r->user != NULL ? r->user : "postgres", 63, &pg->user);
    }
    snprintf(p, sizeof(p), "%s.database", base);
    if (rc == 0) {
        rc = tm_cv_token(v, p, r->database != NULL ? r->database : "postgres", 63, &pg->database);
    }
    if (rc == 0 && (r->password != NULL || r->password_file != NULL)) {
        rc = tm_cv_secret(v, base, "password", r->password, r->password_file, &pg->password);
    }
    snprintf(p, sizeof(p), "%s.bindir", base);
    if (rc == 0 && r->bindir != NULL) {
        rc = tm_cv_path(v, p, r->bindir, &pg->bindir);
    }
    snprintf(p, sizeof(p), "%s.checksum_validation", base);
    if (tm_cv_has(v, p)) {
        pg->checksum_validation = r->checksum_validation;
    }
    snprintf(p, sizeof(p), "%s.parallel", base);
    if (rc == 0) {
        rc = tm_cv_int(v, p, r->parallel, 2, 1, 64, &pg->parallel);
    }
    return rc;
}

const tm_target_schema tm_pg_target_schema = {
    .kind = "postgres",
    .fields = pg_fields,
    .raw_size = sizeof(struct raw_pg),
    .validate = pg_validate,
    .free_conf = pg_free,
};

const tm_pg_target_conf *tm_pg_target(const tm_target_conf *t)
{
    return tm_target_engine_conf(t, &tm_pg_target_schema);
}
