/*
 * aof_config.c - the server's AOF settings in one CONFIG GET (see
 * aof_config.h).
 */
#include "agent/engines/redis/aof_config.h"

#include <stdio.h>
#include <string.h>
#include <strings.h>

static int yes(const char *v)
{
    return strcasecmp(v, "yes") == 0;
}

int tm_aof_config_get(const tm_redis_conn_opts *o, tm_aof_config *out, tm_redis_verdict *verdict,
                      tm_err *err)
{
    memset(out, 0, sizeof(*out));
    redisContext *c = NULL;
    int rc = tm_redis_connect(o, &c, verdict, err);
    if (rc != 0) {
        return rc;
    }
    redisReply *r = NULL;
    /* Redis 7 takes several names in one CONFIG GET and answers name/value
     * pairs in any order. */
    rc = tm_redis_command(c, &r, verdict, err,
                          "CONFIG GET appendonly aof-timestamp-enabled aof-use-rdb-preamble dir "
                          "appenddirname appendfilename");
    if (rc != 0) {
        tm_err_prefix(err, "redis %s:%d", o->host, o->port);
        redisFree(c);
        return rc;
    }
    int seen = 0;
    if (r->type == REDIS_REPLY_ARRAY && r->elements % 2 == 0) {
        for (size_t i = 0; i + 1 < r->elements; i += 2) {
            const redisReply *k = r->element[i], *v = r->element[i + 1];
            if (k->type != REDIS_REPLY_STRING || v->type != REDIS_REPLY_STRING) {
                continue;
            }
            if (strcmp(k->str, "appendonly") == 0) {
                out->appendonly = yes(v->str);
            } else if (strcmp(k->str, "aof-timestamp-enabled") == 0) {
                out->timestamps = yes(v->str);
            } else if (strcmp(k->str, "aof-use-rdb-preamble") == 0) {
                out->rdb_preamble = yes(v->str);
            } else if (strcmp(k->str, "dir") == 0) {
                snprintf(out->dir, sizeof(out->dir), "%s", v->str);
            } else if (strcmp(k->str, "appenddirname") == 0) {
                snprintf(out->dirname, sizeof(out->dirname), "%s", v->str);
            } else if (strcmp(k->str, "appendfilename") == 0) {
                snprintf(out->filename, sizeof(out->filename), "%s", v->str);
            } else {
                continue;
            }
            seen++;
        }
    }
    freeReplyObject(r);
    redisFree(c);
    if (seen != 6 || out->dirname[0] == '\0' || out->filename[0] == '\0') {
        *verdict = TM_REDIS_FINAL;
        return tm_err_set(err, TM_EPROTO,
                          "redis %s:%d: CONFIG GET of the AOF settings answered %d of 6 "
                          "(not Redis 7 multi-part AOF?)",
                          o->host, o->port, seen);
    }
    snprintf(out->aof_dir, sizeof(out->aof_dir), "%s/%s", out->dir, out->dirname);
    snprintf(out->manifest, sizeof(out->manifest), "%.*s.manifest", TM_AOF_NAME_MAX - 9,
             out->filename);
    return 0;
}

const char *tm_aof_config_mode(const tm_aof_config *c)
{
    return c->appendonly && c->timestamps ? "pitr" : "snapshot-only";
}
