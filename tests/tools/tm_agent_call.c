/*
 * tm_agent_call - make one agent-facing call with a given credential
 * (integration tests of what an agent may and may not do).
 *
 * Usage: tm_agent_call URL AGENT_ID SECRET ReportLog TARGET REPOSITORY FIRST LAST
 *        tm_agent_call URL AGENT_ID SECRET METHOD      (empty request body)
 *
 *        tm_agent_call URL - - RegisterAgent TOKEN HOSTNAME [TARGET]
 *
 * METHOD is a Coordinator method (NextTask, ReportProgress, CompleteTask...).
 * Prints "OK" (RegisterAgent: "OK <agent id> <secret>") or the error, and
 * exits 0 on OK, 1 otherwise. AGENT_ID "-" sends no credential.
 */
#include "common/rpc.h"
#include "common/util.h"

#include "tidemark.pb-c.h"

#include <stdio.h>
#include <string.h>

int main(int argc, char **argv)
{
    if (argc < 5) {
        fprintf(stderr, "usage: tm_agent_call URL AGENT_ID SECRET METHOD [ARGS]\n");
        return 2;
    }
    tm_rpc_client_opts opts = {.url = argv[1]};
    tm_rpc_client *cl = NULL;
    tm_err err;
    if (tm_rpc_client_new(&cl, &opts, &err) != TM_OK) {
        fprintf(stderr, "%s\n", err.msg);
        return 2;
    }
    if (strcmp(argv[2], "-") != 0) {
        tm_rpc_client_set_agent(cl, argv[2], argv[3]);
    }
    const char *m = argv[4];
    char method[128];
    snprintf(method, sizeof(method), "Coordinator.%s", m);
    const ProtobufCServiceDescriptor *svc = &tidemark__coordinator__descriptor;
    const ProtobufCMethodDescriptor *md = protobuf_c_service_descriptor_get_method_by_name(svc, m);
    if (md == NULL) {
        fprintf(stderr, "unknown method %s\n", m);
        tm_rpc_client_free(cl);
        return 2;
    }
    /* Room for any request message, initialised from its descriptor. */
    _Alignas(16) unsigned char storage[4096];
    ProtobufCMessage *req = (ProtobufCMessage *)storage;
    if (md->input->sizeof_message > sizeof(storage)) {
        tm_rpc_client_free(cl);
        return 2;
    }
    protobuf_c_message_init(md->input, req);
    Tidemark__LogRange range = TIDEMARK__LOG_RANGE__INIT;
    Tidemark__LogRange *ranges[1] = {&range};
    if (strcmp(m, "ReportLog") == 0) {
        if (argc != 9) {
            fprintf(stderr, "ReportLog TARGET REPOSITORY FIRST LAST\n");
            tm_rpc_client_free(cl);
            return 2;
        }
        Tidemark__ReportLogRequest *r = (Tidemark__ReportLogRequest *)req;
        r->target = argv[5];
        r->repository = argv[6];
        range.target = argv[5];
        range.repository = argv[6];
        range.has_timeline = 1;
        range.timeline = 1;
        range.first = argv[7];
        range.last = argv[8];
        range.has_last_time = 1;
        range.last_time = tm_now_s();
        r->n_ranges = 1;
        r->ranges = ranges;
    }
    Tidemark__Target target = TIDEMARK__TARGET__INIT;
    Tidemark__Target *targets[1] = {&target};
    if (strcmp(m, "RegisterAgent") == 0) {
        if (argc < 7) {
            fprintf(stderr, "RegisterAgent TOKEN HOSTNAME [TARGET]\n");
            tm_rpc_client_free(cl);
            return 2;
        }
        Tidemark__RegisterRequest *r = (Tidemark__RegisterRequest *)req;
        r->enrollment_token = argv[5];
        r->hostname = argv[6];
        r->version = "test";
        if (argc > 7) {
            target.name = argv[7];
            target.has_kind = 1;
            target.kind = TIDEMARK__TARGET_KIND__POSTGRES;
            r->n_targets = 1;
            r->targets = targets;
        }
    }
    ProtobufCMessage *resp = NULL;
    int rc = tm_rpc_client_call(cl, method, req, md->output, &resp, 10000, NULL, &err);
    tm_rpc_client_free(cl);
    if (rc != TM_OK) {
        printf("%s\n", err.msg);
        return 1;
    }
    if (strcmp(m, "RegisterAgent") == 0) {
        const Tidemark__RegisterResponse *r = (const Tidemark__RegisterResponse *)resp;
        printf("OK %s %s\n", r->agent_id ? r->agent_id : "-",
               r->agent_secret ? r->agent_secret : "-");
    } else {
        printf("OK\n");
    }
    protobuf_c_message_free_unpacked(resp, NULL);
    return 0;
}
