/*
 * alerts.c - tidemarkctl alerts list: the coordinator's active alerts
 * (pending and firing), firing first.
 */
#include "coordinator/ctl/ctl.h"

#include <inttypes.h>
#include <string.h>

#include "tidemark.pb-c.h"

static void json_alert(const Tidemark__AlertInfo *a)
{
    printf("{\"rule\":");
    tm_json_str(stdout, a->rule);
    printf(",\"target\":");
    tm_json_str(stdout, a->target);
    printf(",\"state\":");
    tm_json_str(stdout, a->state);
    printf(",\"severity\":");
    tm_json_str(stdout, a->severity);
    printf(",\"summary\":");
    tm_json_str(stdout, a->summary);
    printf(",\"fingerprint\":");
    tm_json_str(stdout, a->fingerprint);
    printf(",\"clearing\":%s,\"active_since\":", a->clearing ? "true" : "false");
    json_time(stdout, a->active_since_ms / 1000);
    printf(",\"starts_at\":");
    json_time(stdout, a->starts_at_ms / 1000);
    printf(",\"last_notified\":");
    json_time(stdout, a->last_notified_ms / 1000);
    printf(",\"notifications\":%u,\"details\":{", a->notifications);
    for (size_t d = 0; d < a->n_details; d++) {
        printf("%s", d ? "," : "");
        tm_json_str(stdout, a->details[d]->key);
        printf(":");
        tm_json_str(stdout, a->details[d]->value);
    }
    printf("}}");
}

int ctl_alerts(ctl *c, int argc, char **argv)
{
    if (argc < 2 || strcmp(argv[1], "list") != 0) {
        if (argc >= 2 && (strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0)) {
            printf("Usage: tidemarkctl alerts list [--json]\n\n"
                   "Active alerts (pending and firing), firing first, then by severity.\n\n"
                   "Example:\n"
                   "  tidemarkctl alerts list --json\n");
            return CTL_OK;
        }
        fprintf(stderr, "tidemarkctl: usage: alerts list [--json]\n");
        return CTL_USAGE;
    }
    for (int i = 2; i < argc; i++) {
        if (strcmp(argv[i], "--json") == 0) {
            c->json = 1;
        } else if (strcmp(argv[i], "--help") == 0 || strcmp(argv[i], "-h") == 0) {
            printf("Usage: tidemarkctl alerts list [--json]\n\n"
                   "Active alerts (pending and firing), firing first, then by severity.\n\n"
                   "Example:\n"
                   "  tidemarkctl alerts list --json\n");
            return CTL_OK;
        } else {
            fprintf(stderr, "tidemarkctl: alerts list: unknown argument '%s'\n", argv[i]);
            return CTL_USAGE;
        }
    }
    Tidemark__ListAlertsRequest req = TIDEMARK__LIST_ALERTS_REQUEST__INIT;
    Tidemark__ListAlertsResponse *resp = NULL;
    int rc = ctl_call(c, "Admin.ListAlerts", &req.base, &tidemark__list_alerts_response__descriptor,
                      (ProtobufCMessage **)&resp);
    if (rc != CTL_OK) {
        return rc;
    }
    if (c->json) {
        printf("[");
        for (size_t i = 0; i < resp->n_alerts; i++) {
            printf("%s", i ? "," : "");
            json_alert(resp->alerts[i]);
        }
        printf("]\n");
    } else if (resp->n_alerts == 0) {
        printf("no active alerts\n");
    } else {
        printf("%-8s %-9s %-14s %-24s %-10s %s\n", "STATE", "SEVERITY", "RULE", "TARGET", "SINCE",
               "SUMMARY");
        for (size_t i = 0; i < resp->n_alerts; i++) {
            const Tidemark__AlertInfo *a = resp->alerts[i];
            char since[32];
            int64_t at = a->starts_at_ms > 0 ? a->starts_at_ms : a->active_since_ms;
            ctl_ago(at / 1000, since, sizeof(since));
            printf("%-8s %-9s %-14s %-24s %-10s %s\n", a->state ? a->state : "-",
                   a->severity ? a->severity : "-", a->rule ? a->rule : "-",
                   a->target ? a->target : "-", since, a->summary ? a->summary : "");
        }
    }
    tidemark__list_alerts_response__free_unpacked(resp, NULL);
    return CTL_OK;
}
