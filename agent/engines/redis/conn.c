/*
 * conn.c - connect, AUTH, run a command, and sort the failures (see conn.h).
 */
#include "agent/engines/redis/conn.h"

#include <stdio.h>
#include <string.h>
#include <strings.h>
#include <sys/time.h>

const char *tm_redis_verdict_name(tm_redis_verdict v)
{
    switch (v) {
    case TM_REDIS_OK:
        return "ok";
    case TM_REDIS_RETRY:
        return "retry";
    case TM_REDIS_FINAL:
        return "final";
    case TM_REDIS_FALLBACK:
        return "fallback needed";
    }
    return "?";
}

static int starts(const char *s, const char *prefix)
{
    return strncmp(s, prefix, strlen(prefix)) == 0;
}

tm_redis_verdict tm_redis_classify_error(const char *reply, int *code)
{
    const char *r = reply != NULL ? reply : "";
    if (*r == '-') {
        r++;
    }
    /* Transient states of a healthy server: try again later. */
    if (starts(r, "LOADING") || starts(r, "BUSY") || starts(r, "MASTERDOWN") ||
        starts(r, "NOMASTERLINK") || starts(r, "TRYAGAIN") || starts(r, "OOM") ||
        starts(r, "MISCONF")) {
        *code = TM_EUNAVAIL;
        return TM_REDIS_RETRY;
    }
    /* The server could not fork for the snapshot (memory, process limits):
     * the replica link gets "BGSAVE failed, replication can't continue". */
    if (strstr(r, "BGSAVE failed") != NULL || strcasestr(r, "fork") != NULL) {
        *code = TM_EUNAVAIL;
        return TM_REDIS_RETRY;
    }
    if (starts(r, "WRONGPASS") || starts(r, "NOAUTH") || starts(r, "WRONGTYPE AUTH")) {
        *code = TM_EAUTH;
        return TM_REDIS_FINAL;
    }
    if (starts(r, "NOPERM")) {
        *code = TM_EPERM;
        return TM_REDIS_FINAL;
    }
    /* A server where SYNC is renamed away or not offered (managed services
     * answer "unknown command"; some say it is not allowed or disabled). */
    if (strcasestr(r, "unknown command") != NULL || strcasestr(r, "not allowed") != NULL ||
        strcasestr(r, "disabled") != NULL) {
        *code = TM_EPERM;
        return TM_REDIS_FALLBACK;
    }
    *code = TM_EPROTO;
    return TM_REDIS_FINAL;
}

static struct timeval tv_ms(int ms)
{
    struct timeval tv = {.tv_sec = ms / 1000, .tv_usec = (ms % 1000) * 1000};
    return tv;
}

int tm_redis_connect(const tm_redis_conn_opts *o, redisContext **out, tm_redis_verdict *verdict,
                     tm_err *err)
{
    *out = NULL;
    *verdict = TM_REDIS_FINAL;
    int cto = o->connect_timeout_ms > 0 ? o->connect_timeout_ms : 10000;
    int ito = o->idle_timeout_ms > 0 ? o->idle_timeout_ms : 60000;
    /* A host that is an absolute path is a unix socket (port unused). */
    redisContext *c = o->host != NULL && o->host[0] == '/'
                          ? redisConnectUnixWithTimeout(o->host, tv_ms(cto))
                          : redisConnectWithTimeout(o->host, o->port, tv_ms(cto));
    if (c == NULL) {
        return tm_err_set(err, TM_ENOMEM, "redis %s:%d: out of memory", o->host, o->port);
    }
    if (c->err) {
        /* Refused or unreachable: the server may be restarting. */
        *verdict = TM_REDIS_RETRY;
        int rc =
            tm_err_set(err, TM_EUNAVAIL, "redis %s:%d: connect: %s", o->host, o->port, c->errstr);
        redisFree(c);
        return rc;
    }
    redisSetTimeout(c, tv_ms(ito));
    if (o->password != NULL) {
        redisReply *r = NULL;
        int rc = o->user != NULL
                     ? tm_redis_command(c, &r, verdict, err, "AUTH %s %s", o->user, o->password)
                     : tm_redis_command(c, &r, verdict, err, "AUTH %s", o->password);
        if (rc != 0) {
            tm_err_prefix(err, "redis %s:%d as %s", o->host, o->port,
                          o->user != NULL ? o->user : "default");
            redisFree(c);
            return rc;
        }
        freeReplyObject(r);
    }
    *verdict = TM_REDIS_OK;
    *out = c;
    return 0;
}

int tm_redis_command(redisContext *c, redisReply **reply, tm_redis_verdict *verdict, tm_err *err,
                     const char *fmt, ...)
{
    *reply = NULL;
    /* The command's name for messages: never its arguments (AUTH). */
    char name[32];
    size_t n = strcspn(fmt, " ");
    snprintf(name, sizeof(name), "%.*s", (int)(n < sizeof(name) - 1 ? n : sizeof(name) - 1), fmt);
    va_list ap;
    va_start(ap, fmt);
    redisReply *r = redisvCommand(c, fmt, ap);
    va_end(ap);
    if (r == NULL) {
        *verdict = TM_REDIS_RETRY;
        /* hiredis 0.14 reports a receive timeout as an I/O error (EAGAIN). */
        int code =
            strstr(c->errstr, "temporarily unavailable") != NULL ? TM_ETIMEDOUT : TM_EUNAVAIL;
        return tm_err_set(err, code, "%s: %s", name, c->errstr[0] ? c->errstr : "connection lost");
    }
    if (r->type == REDIS_REPLY_ERROR) {
        int code;
        *verdict = tm_redis_classify_error(r->str, &code);
        tm_err_set(err, code, "%s: %s (%s)", name, r->str, tm_redis_verdict_name(*verdict));
        freeReplyObject(r);
        return code;
    }
    *verdict = TM_REDIS_OK;
    *reply = r;
    return 0;
}
