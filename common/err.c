#include "common/err.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

int tm_err_set(tm_err *err, int code, const char *fmt, ...)
{
    if (err != NULL) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(err->msg, sizeof(err->msg), fmt, ap);
        va_end(ap);
        err->code = code;
        err->status = 0;
    }
    return code;
}

int tm_err_prefix(tm_err *err, const char *fmt, ...)
{
    if (err == NULL) {
        return TM_EINVAL;
    }
    char prefix[TM_ERR_MSG_MAX];
    char old[TM_ERR_MSG_MAX];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(prefix, sizeof(prefix), fmt, ap);
    va_end(ap);
    memcpy(old, err->msg, sizeof(old));
    /* Truncation is fine: a message is for humans and capped by design. */
    size_t n = strnlen(prefix, sizeof(err->msg) - 3);
    memcpy(err->msg, prefix, n);
    err->msg[n++] = ':';
    err->msg[n++] = ' ';
    size_t room = sizeof(err->msg) - n - 1;
    size_t m = strnlen(old, room);
    memcpy(err->msg + n, old, m);
    err->msg[n + m] = '\0';
    return err->code;
}

void tm_err_clear(tm_err *err)
{
    if (err != NULL) {
        err->code = 0;
        err->status = 0;
        err->msg[0] = '\0';
    }
}

const char *tm_strerror(int code)
{
    switch (code) {
    case TM_OK:
        return "OK";
    case TM_EINVAL:
        return "EINVAL";
    case TM_ENOMEM:
        return "ENOMEM";
    case TM_EIO:
        return "EIO";
    case TM_ENOENT:
        return "ENOENT";
    case TM_EEXIST:
        return "EEXIST";
    case TM_EPERM:
        return "EPERM";
    case TM_EAUTH:
        return "EAUTH";
    case TM_ETIMEDOUT:
        return "ETIMEDOUT";
    case TM_EUNAVAIL:
        return "EUNAVAIL";
    case TM_ECORRUPT:
        return "ECORRUPT";
    case TM_EPROTO:
        return "EPROTO";
    case TM_ECONFIG:
        return "ECONFIG";
    case TM_EINTERNAL:
        return "EINTERNAL";
    case TM_ENOSPC:
        return "ENOSPC";
    case TM_EBUSY:
        return "EBUSY";
    case TM_ERPC:
        return "ERPC";
    default:
        return "EUNKNOWN";
    }
}

int tm_err_from_errno(int e)
{
    switch (e) {
    case 0:
        return TM_OK;
    case ENOENT:
        return TM_ENOENT;
    case EEXIST:
        return TM_EEXIST;
    case EACCES:
    case EPERM:
    case EROFS:
        return TM_EPERM;
    case ENOSPC:
    case EDQUOT:
        return TM_ENOSPC;
    case ENOMEM:
        return TM_ENOMEM;
    case EINVAL:
        return TM_EINVAL;
    case ETIMEDOUT:
        return TM_ETIMEDOUT;
    case EBUSY:
        return TM_EBUSY;
    default:
        return TM_EIO;
    }
}
