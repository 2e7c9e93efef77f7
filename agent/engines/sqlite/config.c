/*
 * config.c - the sqlite: block of an agent.yaml target (config.h).
 */
#include "agent/engines/sqlite/config.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/config/validate.h"

struct raw_sqlite {
    char *path;
    bool set_wal;
    char *ship_interval;
    int64_t checkpoint_frames;
    char *truncate_size;
    char *busy_timeout;
};

#define OPT CYAML_FLAG_OPTIONAL
#define STR(key, m) CYAML_FIELD_STRING_PTR(key, OPT, struct raw_sqlite, m, 0, CYAML_UNLIMITED)

static const cyaml_schema_field_t sqlite_fields[] = {
    STR("path", path),
    CYAML_FIELD_BOOL("set_wal", OPT, struct raw_sqlite, set_wal),
    STR("ship_interval", ship_interval),
    CYAML_FIELD_INT("checkpoint_frames", OPT, struct raw_sqlite, checkpoint_frames),
    STR("truncate_size", truncate_size),
    STR("busy_timeout", busy_timeout),
    CYAML_FIELD_END,
};

static void sqlite_free(void *conf)
{
    tm_sqlite_target_conf *c = conf;
    if (c == NULL) {
        return;
    }
    free(c->path);
    free(c);
}

static int sqlite_validate(tm_cv *v, const char *base, const void *raw, void **out)
{
    static const struct raw_sqlite none;
    const struct raw_sqlite *r = raw != NULL ? raw : &none;
    tm_sqlite_target_conf *c = calloc(1, sizeof(*c));
    *out = c;
    if (c == NULL) {
        return tm_cv_oom(v);
    }
    char p[128];
    snprintf(p, sizeof(p), "%s.path", base);
    if (raw == NULL) {
        /* No block: the target is listed (catalog, restores on this host)
         * but nothing is shipped until it names its file. */
        c->ship_interval_ms = 1000;
        c->checkpoint_frames = 1000;
        c->truncate_bytes = 64u << 20;
        c->busy_timeout_ms = 5000;
        return 0;
    }
    if (r->path == NULL) {
        return tm_cv_err(v, p, "missing, expected the database file (path: /var/lib/app/app.db)");
    }
    if (strpbrk(r->path, "*?[") != NULL) {
        return tm_cv_err(v, p, "'%.80s' is a glob: not supported yet, name one database file",
                         r->path);
    }
    int rc = tm_cv_path(v, p, r->path, &c->path);
    c->set_wal = r->set_wal;
    snprintf(p, sizeof(p), "%s.ship_interval", base);
    if (rc == 0) {
        rc = tm_cv_duration(v, p, r->ship_interval, "1s", 100, 3600000, &c->ship_interval_ms);
    }
    snprintf(p, sizeof(p), "%s.checkpoint_frames", base);
    if (rc == 0) {
        rc = tm_cv_int(v, p, r->checkpoint_frames, 1000, 10, 10000000, &c->checkpoint_frames);
    }
    snprintf(p, sizeof(p), "%s.truncate_size", base);
    if (rc == 0) {
        rc = tm_cv_size(v, p, r->truncate_size, "64MiB", 1u << 20, UINT32_MAX, &c->truncate_bytes);
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

const tm_sqlite_target_conf *tm_sqlite_target(const tm_target_conf *t)
{
    return tm_target_engine_conf(t, &tm_sqlite_target_schema);
}
