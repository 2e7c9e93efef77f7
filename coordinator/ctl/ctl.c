/*
 * ctl.c - shared plumbing of tidemarkctl: connection, calls, output helpers.
 */
#include "coordinator/ctl/ctl.h"
#include "common/util.h"

#include <inttypes.h>
#include <string.h>

#include "tidemark.pb-c.h"

int ctl_connect(ctl *c)
{
    if (c->rpc != NULL) {
        return CTL_OK;
    }
    tm_err err = {0};
    tm_rpc_client_opts o = {.url = c->url, .tls = &c->tls};
    if (tm_rpc_client_new(&c->rpc, &o, &err) != TM_OK) {
        fprintf(stderr, "tidemarkctl: %s\n", err.msg);
        return CTL_FAIL;
    }
    if (c->token == NULL) {
        fprintf(stderr, "tidemarkctl: no admin token: use --token-file FILE, set "
                        "TIDEMARK_ADMIN_TOKEN, or --config coordinator.yaml\n");
        return CTL_USAGE;
    }
    tm_rpc_client_set_admin(c->rpc, c->token);
    return CTL_OK;
}

int ctl_call(ctl *c, const char *method, const ProtobufCMessage *req,
             const ProtobufCMessageDescriptor *resp_desc, ProtobufCMessage **resp)
{
    int rc = ctl_connect(c);
    if (rc != CTL_OK) {
        return rc;
    }
    tm_err err = {0};
    if (tm_rpc_client_call(c->rpc, method, req, resp_desc, resp, c->timeout_ms, NULL, &err) !=
        TM_OK) {
        fprintf(stderr, "tidemarkctl: %s\n", err.msg);
        if (err.code == TM_ETIMEDOUT) {
            fprintf(stderr, "tidemarkctl: is the coordinator running at %s?\n", c->url);
        }
        return CTL_FAIL;
    }
    return CTL_OK;
}

void json_time(FILE *f, int64_t unix_s)
{
    if (unix_s <= 0) {
        fputs("null", f);
        return;
    }
    char buf[32];
    tm_fmt_time(unix_s, buf, sizeof(buf));
    tm_json_str(f, buf);
}

void ctl_ago(int64_t unix_s, char *out, size_t cap)
{
    if (unix_s <= 0) {
        snprintf(out, cap, "never");
        return;
    }
    int64_t d = tm_now_s() - unix_s;
    if (d < 0) {
        d = 0;
    }
    if (d < 120) {
        snprintf(out, cap, "%" PRId64 "s ago", d);
    } else if (d < 7200) {
        snprintf(out, cap, "%" PRId64 "m ago", d / 60);
    } else if (d < 172800) {
        snprintf(out, cap, "%" PRId64 "h ago", d / 3600);
    } else {
        snprintf(out, cap, "%" PRId64 "d ago", d / 86400);
    }
}
