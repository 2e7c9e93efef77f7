/*
 * conn.h - a connection to a Redis server for the backup blocks: connect
 * with a timeout, AUTH as an ACL user, run a command, and sort every failure
 * into what the caller should do about it (retry later, give up, or fall back
 * from the replication protocol to BGSAVE).
 */
#ifndef TM_REDIS_CONN_H
#define TM_REDIS_CONN_H

#include <stdarg.h>

#include <hiredis/hiredis.h>

#include "common/err.h"

typedef struct tm_redis_conn_opts {
    const char *host; /* an absolute path = a unix socket */
    int port;
    const char *user;       /* ACL user; NULL = the default user */
    const char *password;   /* NULL = no AUTH; never logged */
    int connect_timeout_ms; /* 0 = 10 s */
    /* A command reply, or any byte of a transfer (including the keepalive
     * newlines the server sends while it prepares an RDB), must arrive within
     * this; 0 = 60 s. */
    int idle_timeout_ms;
} tm_redis_conn_opts;

typedef enum {
    TM_REDIS_OK = 0,
    TM_REDIS_RETRY,    /* transient: loading, OOM, busy, link dropped, timeout */
    TM_REDIS_FINAL,    /* needs a person: wrong password, missing ACL rule, bad reply */
    TM_REDIS_FALLBACK, /* the server refuses the replication protocol: use BGSAVE */
} tm_redis_verdict;

const char *tm_redis_verdict_name(tm_redis_verdict v);

/* Sort a server error reply ("-LOADING ...", "-NOPERM ...") into a verdict and
 * a TM_E* code (TM_EUNAVAIL retry, TM_EAUTH / TM_EPERM final, ...). */
tm_redis_verdict tm_redis_classify_error(const char *reply, int *code);

/* Connect and (with a password) AUTH. *verdict says what a failure means. */
int tm_redis_connect(const tm_redis_conn_opts *o, redisContext **out, tm_redis_verdict *verdict,
                     tm_err *err);

/* Run a command (hiredis format). A server error reply is a failure, sorted
 * by tm_redis_classify_error, with the command's name in the message.
 * *reply is the reply on success (caller frees with freeReplyObject). */
int tm_redis_command(redisContext *c, redisReply **reply, tm_redis_verdict *verdict, tm_err *err,
                     const char *fmt, ...) __attribute__((format(printf, 5, 6)));

#endif
