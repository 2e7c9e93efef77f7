/*
 * config.c - the redis: block of an agent.yaml target (config.h).
 */
#include "agent/engines/redis/config.h"

#include <stdio.h>
#include <stdlib.h>

#include "common/config/validate.h"

/* The block as libcyaml loads it. */
struct raw_redis {
    char *host;
    int64_t port;
    char *socket;
    char *user;
    char *password;
    char *password_file;
    char *aof_dir;
    char *method;
    char *timeout;
    char *server_bin;
    char *ship_interval;
};

#define OPT CYAML_FLAG_OPTIONAL
#define STR(key, m) CYAML_FIELD_STRING_PTR(key, OPT, struct raw_redis, m, 0, CYAML_UNLIMITED)

static const cyaml_schema_field_t redis_fields[] = {
    STR("host", host),
    CYAML_FIELD_INT("port", OPT, struct raw_redis, port),
    STR("socket", socket),
    STR("user", user),
    STR("password", password),
    STR("password_file", password_file),
    STR("aof_dir", aof_dir),
    STR("method", method),
    STR("timeout", timeout),
    STR("server_bin", server_bin),
    STR("ship_interval", ship_interval),
    CYAML_FIELD_END,
};

static void redis_free(void *conf)
{
    tm_redis_target_conf *rd = conf;
    if (rd == NULL) {
        return;
    }
    free(rd->host);
    free(rd->socket);
    free(rd->user);
    tm_cv_free_secret(rd->password);
    free(rd->aof_dir);
    free(rd->method);
    free(rd->server_bin);
    free(rd);
}

/* Every key has a default: a redis target without a block is the local
 * server on 127.0.0.1:6379 with the default user. */
static int redis_validate(tm_cv *v, const char *base, const void *raw, void **out)
{
    static const struct raw_redis none;
    static const char *const methods[] = {"auto", "sync", "bgsave"};
    const struct raw_redis *r = raw != NULL ? raw : &none;
    tm_redis_target_conf *rd = calloc(1, sizeof(*rd));
    *out = rd;
    if (rd == NULL) {
        return tm_cv_oom(v);
    }
    char p[128];
    int rc = 0;
    if (r->socket != NULL) {
        snprintf(p, sizeof(p), "%s.socket", base);
        if (r->host != NULL) {
            return tm_cv_err_key(v, p,
                                 "both host and socket are set, expected one (socket: replaces "
                                 "host: and port:)");
        }
        rc = tm_cv_path(v, p, r->socket, &rd->socket);
    } else {
        snprintf(p, sizeof(p), "%s.host", base);
        rc = tm_cv_token(v, p, r->host != NULL ? r->host : "127.0.0.1", 255, &rd->host);
    }
    snprintf(p, sizeof(p), "%s.port", base);
    if (rc == 0) {
        rc = tm_cv_port(v, p, r->port, 6379, &rd->port);
    }
    snprintf(p, sizeof(p), "%s.user", base);
    if (rc == 0) {
        rc = tm_cv_token(v, p, r->user, 128, &rd->user);
    }
    if (rc == 0 && (r->password != NULL || r->password_file != NULL)) {
        rc = tm_cv_secret(v, base, "password", r->password, r->password_file, &rd->password);
    }
    snprintf(p, sizeof(p), "%s.aof_dir", base);
    if (rc == 0 && r->aof_dir != NULL) {
        rc = r->aof_dir[0] != '/'
                 ? tm_cv_err(v, p,
                             "'%.80s' is not an absolute path, expected the server's "
                             "appendonlydir (aof_dir: /var/lib/redis/appendonlydir)",
                             r->aof_dir)
                 : tm_cv_dup(v, r->aof_dir, &rd->aof_dir);
    }
    snprintf(p, sizeof(p), "%s.method", base);
    if (rc == 0) {
        rc = tm_cv_enum(v, p, r->method != NULL ? r->method : "auto", methods, 3,
                        "auto, sync or bgsave", &rd->method);
    }
    snprintf(p, sizeof(p), "%s.timeout", base);
    if (rc == 0) {
        rc = tm_cv_duration(v, p, r->timeout, "60s", 1000, 3600000, &rd->timeout_ms);
    }
    snprintf(p, sizeof(p), "%s.server_bin", base);
    if (rc == 0 && r->server_bin != NULL) {
        rc = tm_cv_path(v, p, r->server_bin, &rd->server_bin);
    }
    snprintf(p, sizeof(p), "%s.ship_interval", base);
    if (rc == 0) {
        rc = tm_cv_duration(v, p, r->ship_interval, "1s", 100, 3600000, &rd->ship_interval_ms);
    }
    return rc;
}

const tm_target_schema tm_redis_target_schema = {
    .kind = "redis",
    .fields = redis_fields,
    .raw_size = sizeof(struct raw_redis),
    .validate = redis_validate,
    .free_conf = redis_free,
};

const tm_redis_target_conf *tm_redis_target(const tm_target_conf *t)
{
    return tm_target_engine_conf(t, &tm_redis_target_schema);
}
