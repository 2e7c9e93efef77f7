/*
 * config.c - the sqlite: block of an agent.yaml target (config.h).
 */
#include "agent/engines/sqlite/config.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/config/validate.h"

/* The block as libcyaml loads it. */
struct raw_sqlite {
    char *path;
    bool set_wal;
    char *ship_interval;
    char *checkpoint_interval;
    char *wal_max_bytes;
    char *busy_timeout;
};

#define OPT CYAML_FLAG_OPTIONAL
#define STR(key, m) CYAML_FIELD_STRING_PTR(key, OPT, struct raw_sqlite, m, 0, CYAML_UNLIMITED)

static const cyaml_schema_field_t sqlite_fields[] = {
    STR("path", path),
    CYAML_FIELD_BOOL("set_wal", OPT, struct raw_sqlite, set_wal),
    STR("ship_interval", ship_interval),
    STR("checkpoint_interval", checkpoint_interval),
    STR("wal_max_bytes", wal_max_bytes),
    STR("busy_timeout", busy_timeout),
    CYAML_FIELD_END,
};

static void sqlite_free(void *conf)
{
    free(conf);
}

static int sqlite_validate(tm_cv *v, const char *base, const void *raw, void **out)
{
    static const struct raw_sqlite none;
    const struct raw_sqlite *r = raw != NULL ? raw : &none;
    tm_sqlite_target *c = calloc(1, sizeof(*c));
    *out = c;
    if (c == NULL) {
        return tm_cv_oom(v);
    }
    char p[128];
    int rc = 0;
    snprintf(p, sizeof(p), "%s.path", base);
    if (raw != NULL && r->path == NULL) {
        return tm_cv_err(v, p, "missing, expected the database file (path: /var/lib/app/app.db)");
    }
    if (r->path != NULL) {
        char *abs = NULL;
        rc = tm_cv_path(v, p, r->path, &abs);
        if (rc == 0 && strlen(abs) >= sizeof(c->path)) {
            rc = tm_cv_err(v, p, "longer than %zu bytes, expected a shorter path",
                           sizeof(c->path) - 1);
        }
        if (rc == 0) {
            memcpy(c->path, abs, strlen(abs) + 1);
            c->glob = strpbrk(c->path, "*?[") != NULL;
        }
        free(abs);
    }
    c->set_wal = r->set_wal ? 1 : 0;
    snprintf(p, sizeof(p), "%s.ship_interval", base);
    if (rc == 0) {
        rc = tm_cv_duration(v, p, r->ship_interval, "1s", 100, 3600000, &c->ship_interval_ms);
    }
    snprintf(p, sizeof(p), "%s.checkpoint_interval", base);
    if (rc == 0) {
        rc = tm_cv_duration(v, p, r->checkpoint_interval, "1m", 1000, 86400000,
                            &c->checkpoint_interval_ms);
    }
    snprintf(p, sizeof(p), "%s.wal_max_bytes", base);
    uint32_t wal_max = 0;
    if (rc == 0) {
        rc = tm_cv_size(v, p, r->wal_max_bytes, "64MiB", 1u << 20, UINT32_MAX, &wal_max);
        c->wal_max_bytes = wal_max;
    }
    snprintf(p, sizeof(p), "%s.busy_timeout", base);
    if (rc == 0) {
        rc = tm_cv_duration(v, p, r->busy_timeout, "5s", 10, 600000, &c->busy_timeout_ms);
    }
    return rc;
}

const tm_target_schema tm_sqlite_target_schema = {
    .kind = "sqlite",
    .fields = sqlite_fields,
    .raw_size = sizeof(struct raw_sqlite),
    .validate = sqlite_validate,
    .free_conf = sqlite_free,
};

const tm_sqlite_target *tm_sqlite_target_of(const tm_target_conf *t)
{
    return tm_target_engine_conf(t, &tm_sqlite_target_schema);
}
