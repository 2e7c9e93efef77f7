/*
 * status.c - tidemarkctl status: the coordinator and the fleet at a glance.
 */
#include "coordinator/ctl/ctl.h"

#include <string.h>

#include "tidemark.pb-c.h"

int ctl_status(ctl *c, int argc, char **argv)
{
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--json") == 0) {
            c->json = 1;
        } else if (strcmp(argv[i], "--help") == 0 || strcmp(argv[i], "-h") == 0) {
            printf("Usage: tidemarkctl status [--json]\n\n"
                   "Coordinator version and uptime, catalog, agents by state, targets.\n");
            return CTL_OK;
        } else {
            fprintf(stderr, "tidemarkctl: status: unknown argument '%s'\n", argv[i]);
            return CTL_USAGE;
        }
    }
    Tidemark__StatusRequest req = TIDEMARK__STATUS_REQUEST__INIT;
    Tidemark__StatusResponse *resp = NULL;
    int rc = ctl_call(c, "Admin.Status", &req.base, &tidemark__status_response__descriptor,
                      (ProtobufCMessage **)&resp);
    if (rc != CTL_OK) {
        return rc;
    }
    uint32_t counts[5] = {0};
    for (size_t i = 0; i < resp->n_agents; i++) {
        if (resp->agents[i]->state >= 0 && resp->agents[i]->state < 5) {
            counts[resp->agents[i]->state] = resp->agents[i]->count;
        }
    }
    if (c->json) {
        printf("{\"version\":");
        tm_json_str(stdout, resp->version);
        printf(",\"started_at\":");
        json_time(stdout, resp->started_at);
        printf(",\"catalog\":");
        tm_json_str(stdout, resp->catalog);
        printf(",\"schema_version\":%u,\"heartbeat_interval_ms\":%u,\"targets\":%u,"
               "\"agents\":{\"pending\":%u,\"online\":%u,\"stale\":%u,\"lost\":%u}",
               resp->schema_version, resp->heartbeat_interval_ms, resp->targets, counts[1],
               counts[2], counts[3], counts[4]);
        ctl_status_drills(c);
        printf("}\n");
    } else {
        char up[32];
        ctl_ago(resp->started_at, up, sizeof(up));
        printf("Coordinator\n");
        printf("  url:        %s\n", c->url);
        printf("  version:    %s\n", resp->version ? resp->version : "-");
        printf("  started:    %s\n", up);
        printf("  catalog:    %s (schema v%u)\n", resp->catalog ? resp->catalog : "-",
               resp->schema_version);
        printf("  heartbeat:  every %u ms\n", resp->heartbeat_interval_ms);
        printf("Agents\n");
        printf("  online %u, stale %u, lost %u, pending %u\n", counts[2], counts[3], counts[4],
               counts[1]);
        printf("Targets\n");
        printf("  %u registered\n", resp->targets);
        ctl_status_drills(c);
    }
    tidemark__status_response__free_unpacked(resp, NULL);
    return CTL_OK;
}
