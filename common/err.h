/*
 * err.h - error codes and the human message that travels with them.
 *
 * Every function that can fail returns int: 0 (TM_OK) or a negative TM_E*
 * code. When the caller passes a tm_err, the callee fills in a message that
 * says what failed, why, and (where it can) what to do: "open /x: Permission
 * denied". The message never contains secrets.
 */
#ifndef TM_ERR_H
#define TM_ERR_H

#include <stddef.h>

enum {
    TM_OK = 0,
    TM_EINVAL = -1,    /* bad argument or input */
    TM_ENOMEM = -2,    /* out of memory */
    TM_EIO = -3,       /* I/O error (disk, network) */
    TM_ENOENT = -4,    /* no such object / agent / file */
    TM_EEXIST = -5,    /* already exists (and differs) */
    TM_EPERM = -6,     /* not allowed */
    TM_EAUTH = -7,     /* authentication failed */
    TM_ETIMEDOUT = -8, /* deadline passed */
    TM_EUNAVAIL = -9,  /* peer or service unavailable; retry later */
    TM_ECORRUPT = -10, /* data failed an integrity check */
    TM_EPROTO = -11,   /* protocol violation, malformed bytes */
    TM_ECONFIG = -12,  /* bad configuration */
    TM_EINTERNAL = -13,
    TM_ENOSPC = -14, /* disk or quota full */
    TM_EBUSY = -15,  /* locked / in use */
    TM_ERPC = -16,   /* remote returned a non-OK status: see tm_err.status */
};

#define TM_ERR_MSG_MAX 512

typedef struct tm_err {
    int code;                 /* TM_E* */
    int status;               /* RPC status code (tidemark.StatusCode) when code == TM_ERPC */
    char msg[TM_ERR_MSG_MAX]; /* human message, never secrets */
} tm_err;

/* Record code + formatted message into err (if non-NULL). Returns code. */
int tm_err_set(tm_err *err, int code, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
/* Prefix the existing message with context: "loading x: <old message>". Returns err->code. */
int tm_err_prefix(tm_err *err, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
void tm_err_clear(tm_err *err);
/* Static name of a TM_E* code ("EIO"). */
const char *tm_strerror(int code);
/* Map errno to a TM_E* code. */
int tm_err_from_errno(int e);

#endif
