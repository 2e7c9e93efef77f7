/*
 * rpc_codec.c - status code names and their mapping to TM_E* codes.
 */
#include "common/rpc.h"

const char *tm_rpc_status_name(int code)
{
    static const char *names[] = {
        "OK",
        "CANCELLED",
        "UNKNOWN",
        "INVALID_ARGUMENT",
        "DEADLINE_EXCEEDED",
        "NOT_FOUND",
        "ALREADY_EXISTS",
        "PERMISSION_DENIED",
        "RESOURCE_EXHAUSTED",
        "FAILED_PRECONDITION",
        "ABORTED",
        "OUT_OF_RANGE",
        "UNIMPLEMENTED",
        "INTERNAL",
        "UNAVAILABLE",
        "DATA_LOSS",
        "UNAUTHENTICATED",
    };
    if (code < 0 || code > TM_RPC_STATUS_MAX) {
        return "UNKNOWN";
    }
    return names[code];
}

int tm_rpc_status_to_err(int code)
{
    switch (code) {
    case TM_RPC_OK:
        return TM_OK;
    case TM_RPC_INVALID_ARGUMENT:
    case TM_RPC_OUT_OF_RANGE:
        return TM_EINVAL;
    case TM_RPC_DEADLINE_EXCEEDED:
        return TM_ETIMEDOUT;
    case TM_RPC_NOT_FOUND:
        return TM_ENOENT;
    case TM_RPC_ALREADY_EXISTS:
        return TM_EEXIST;
    case TM_RPC_PERMISSION_DENIED:
        return TM_EPERM;
    case TM_RPC_UNAUTHENTICATED:
        return TM_EAUTH;
    case TM_RPC_RESOURCE_EXHAUSTED:
        return TM_ENOSPC;
    case TM_RPC_UNAVAILABLE:
        return TM_EUNAVAIL;
    case TM_RPC_DATA_LOSS:
        return TM_ECORRUPT;
    case TM_RPC_FAILED_PRECONDITION:
    case TM_RPC_ABORTED:
        return TM_EBUSY;
    default:
        return TM_EINTERNAL;
    }
}
