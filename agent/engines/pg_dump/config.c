/*
 * config.c - the pg_dump: block of an agent.yaml target (config.h).
 */
#include "agent/engines/pg_dump/config.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/config/validate.h"

/* The block as libcyaml loads it. */
struct raw_dump {
    char *host;
    int64_t port;
    char *user;
    char *password;
    char *password_file;
    char *sslmode;
    char *database;
    char **databases;
    uint32_t databases_count;
    char *bindir;
    int64_t compress;
    int64_t jobs;
    char *staging_host;
    int64_t staging_port;
    char *staging_user;
    char *staging_password;
    char *staging_password_file;
};

#define OPT CYAML_FLAG_OPTIONAL
#define STR(key, m) CYAML_FIELD_STRING_PTR(key, OPT, struct raw_dump, m, 0, CYAML_UNLIMITED)

static const cyaml_schema_value_t db_entry = {
    CYAML_VALUE_STRING(CYAML_FLAG_POINTER, char, 0, CYAML_UNLIMITED),
};

static const cyaml_schema_field_t dump_fields[] = {
    STR("host", host),
    CYAML_FIELD_INT("port", OPT, struct raw_dump, port),
    STR("user", user),
    STR("password", password),
    STR("password_file", password_file),
    STR("sslmode", sslmode),
    STR("database", database),
    CYAML_FIELD_SEQUENCE("databases", OPT | CYAML_FLAG_POINTER, struct raw_dump, databases,
                         &db_entry, 0, 1024),
    STR("bindir", bindir),
    CYAML_FIELD_INT("compress", OPT, struct raw_dump, compress),
    CYAML_FIELD_INT("jobs", OPT, struct raw_dump, jobs),
    STR("staging_host", staging_host),
    CYAML_FIELD_INT("staging_port", OPT, struct raw_dump, staging_port),
    STR("staging_user", staging_user),
    STR("staging_password", staging_password),
    STR("staging_password_file", staging_password_file),
    CYAML_FIELD_END,
};

static void server_free(tm_dump_server *s)
{
    free(s->host);
    free(s->user);
    tm_cv_free_secret(s->password);
    free(s->sslmode);
}

static void dump_free(void *conf)
{
    tm_dump_target_conf *d = conf;
    if (d == NULL) {
        return;
    }
    server_free(&d->server);
    server_free(&d->staging);
    free(d->database);
    for (size_t i = 0; i < d->n_databases; i++) {
        free(d->databases[i]);
    }
    free(d->databases);
    free(d->bindir);
    free(d);
}

/* A database name as PostgreSQL takes it: 1 .. 63 bytes, no control
 * character (it travels in a connection string and an object name). */
static int check_dbname(tm_cv *v, const char *path, const char *s)
{
    size_t n = strlen(s);
    if (n == 0 || n > 63) {
        return tm_cv_err(v, path, "database name of %zu bytes, expected 1 to 63", n);
    }
    for (size_t i = 0; i < n; i++) {
        if ((unsigned char)s[i] < 0x20 || s[i] == 0x7f) {
            return tm_cv_err(v, path, "database name with a control character");
        }
    }
    return 0;
}

static int dump_validate(tm_cv *v, const char *base, const void *raw, void **out)
{
    static const struct raw_dump none;
    static const char *const sslmodes[] = {"disable", "allow",     "prefer",
                                           "require", "verify-ca", "verify-full"};
    const struct raw_dump *r = raw != NULL ? raw : &none;
    tm_dump_target_conf *d = calloc(1, sizeof(*d));
    *out = d;
    if (d == NULL) {
        return tm_cv_oom(v);
    }
    char p[160];
    int rc = 0;
    snprintf(p, sizeof(p), "%s.host", base);
    rc = tm_cv_token(v, p, r->host != NULL ? r->host : "127.0.0.1", 255, &d->server.host);
    snprintf(p, sizeof(p), "%s.port", base);
    if (rc == 0) {
        rc = tm_cv_port(v, p, r->port, 5432, &d->server.port);
    }
    snprintf(p, sizeof(p), "%s.user", base);
    if (rc == 0) {
        rc = tm_cv_token(v, p, r->user != NULL ? r->user : "postgres", 63, &d->server.user);
    }
    if (rc == 0 && (r->password != NULL || r->password_file != NULL)) {
        rc = tm_cv_secret(v, base, "password", r->password, r->password_file, &d->server.password);
    }
    snprintf(p, sizeof(p), "%s.sslmode", base);
    if (rc == 0) {
        rc = tm_cv_enum(v, p, r->sslmode != NULL ? r->sslmode : "prefer", sslmodes, 6,
                        "disable, allow, prefer, require, verify-ca or verify-full",
                        &d->server.sslmode);
    }
    snprintf(p, sizeof(p), "%s.database", base);
    if (rc == 0) {
        rc = check_dbname(v, p, r->database != NULL ? r->database : "postgres");
    }
    if (rc == 0) {
        rc = tm_cv_dup(v, r->database != NULL ? r->database : "postgres", &d->database);
    }
    snprintf(p, sizeof(p), "%s.databases", base);
    if (rc == 0 && tm_cv_has(v, p) && r->databases_count == 0) {
        rc = tm_cv_err(v, p, "an empty list; leave databases: out to dump every database");
    }
    if (rc == 0 && r->databases_count > 0) {
        d->databases = calloc(r->databases_count, sizeof(char *));
        if (d->databases == NULL) {
            return tm_cv_oom(v);
        }
    }
    for (uint32_t i = 0; rc == 0 && i < r->databases_count; i++) {
        snprintf(p, sizeof(p), "%s.databases[%u]", base, i);
        rc = check_dbname(v, p, r->databases[i]);
        for (uint32_t j = 0; rc == 0 && j < i; j++) {
            if (strcmp(r->databases[i], r->databases[j]) == 0) {
                rc = tm_cv_err(v, p, "'%.63s' is listed twice", r->databases[i]);
            }
        }
        if (rc == 0) {
            rc = tm_cv_dup(v, r->databases[i], &d->databases[d->n_databases]);
        }
        if (rc == 0) {
            d->n_databases++;
        }
    }
    snprintf(p, sizeof(p), "%s.bindir", base);
    if (rc == 0 && r->bindir != NULL) {
        rc = tm_cv_path(v, p, r->bindir, &d->bindir);
    }
    snprintf(p, sizeof(p), "%s.compress", base);
    if (rc == 0) {
        rc = tm_cv_int(v, p, r->compress, 1, 0, 9, &d->compress);
    }
    snprintf(p, sizeof(p), "%s.jobs", base);
    if (rc == 0) {
        rc = tm_cv_int(v, p, r->jobs, 2, 1, 64, &d->jobs);
    }
    /* The staging server: only with staging_host; it inherits user, password
     * and sslmode when it names none of its own. */
    snprintf(p, sizeof(p), "%s.staging_host", base);
    if (rc == 0 && r->staging_host == NULL &&
        (r->staging_port || r->staging_user != NULL || r->staging_password != NULL ||
         r->staging_password_file != NULL)) {
        rc = tm_cv_err_key(v, base,
                           "staging_port/staging_user/staging_password set without "
                           "staging_host (the server drills restore into)");
    }
    if (rc == 0 && r->staging_host != NULL) {
        rc = tm_cv_token(v, p, r->staging_host, 255, &d->staging.host);
        snprintf(p, sizeof(p), "%s.staging_port", base);
        if (rc == 0) {
            rc = tm_cv_port(v, p, r->staging_port, d->server.port, &d->staging.port);
        }
        snprintf(p, sizeof(p), "%s.staging_user", base);
        if (rc == 0) {
            rc = tm_cv_token(v, p, r->staging_user != NULL ? r->staging_user : d->server.user, 63,
                             &d->staging.user);
        }
        if (rc == 0 && (r->staging_password != NULL || r->staging_password_file != NULL)) {
            rc = tm_cv_secret(v, base, "staging_password", r->staging_password,
                              r->staging_password_file, &d->staging.password);
        } else if (rc == 0 && r->staging_user == NULL && d->server.password != NULL) {
            d->staging.password = strdup(d->server.password);
            if (d->staging.password == NULL) {
                return tm_cv_oom(v);
            }
        }
        if (rc == 0) {
            rc = tm_cv_dup(v, d->server.sslmode, &d->staging.sslmode);
        }
    }
    return rc;
}

const tm_target_schema tm_dump_target_schema = {
    .kind = "pg_dump",
    .fields = dump_fields,
    .raw_size = sizeof(struct raw_dump),
    .validate = dump_validate,
    .free_conf = dump_free,
};

const tm_dump_target_conf *tm_dump_target(const tm_target_conf *t)
{
    return tm_target_engine_conf(t, &tm_dump_target_schema);
}
