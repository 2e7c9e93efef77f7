/*
 * replication.c - tidemarkctl replication status|check: whether every
 * required repository holds every backup and log file of each target, and a
 * check on demand.
 */
#include "coordinator/ctl/ctl.h"
#include "common/util.h"

#include <inttypes.h>
#include <stdlib.h>
#include <string.h>

#include "tidemark.pb-c.h"

static int usage(FILE *f, int code)
{
    fprintf(f, "Usage: tidemarkctl replication status [--target T] [--json]\n"
               "       tidemarkctl replication check --target T [--wait] [--wait-timeout S] "
               "[--json]\n\n"
               "status: per target and repository the last check's verdict (ok, gap,\n"
               "mismatch, unreachable, unknown; 'unsatisfied' when the agent's repositories\n"
               "cannot meet the policy), items missing or different, lag (seconds since the\n"
               "oldest missing item appeared elsewhere), copies tried, and each agent's\n"
               "repository probes. Exit 1 when a required repository is not ok.\n"
               "check: queue a check of the target now (one queued at most); --wait follows\n"
               "it to its end.\n");
    return code;
}

static const char *s_or(const char *s, const char *def)
{
    return s != NULL && s[0] != '\0' ? s : def;
}

static int status(ctl *c, const char *target)
{
    Tidemark__ReplicationStatusRequest req = TIDEMARK__REPLICATION_STATUS_REQUEST__INIT;
    req.target = (char *)target;
    Tidemark__ReplicationStatusResponse *r = NULL;
    int rc = ctl_call(c, "Admin.ReplicationStatus", &req.base,
                      &tidemark__replication_status_response__descriptor, (ProtobufCMessage **)&r);
    if (rc != CTL_OK) {
        return rc;
    }
    int bad = 0;
    for (size_t i = 0; i < r->n_states; i++) {
        const Tidemark__ReplicationState *s = r->states[i];
        bad |= s->required && strcmp(s_or(s->state, "unknown"), "ok") != 0;
    }
    if (c->json) {
        printf("{\"states\":[");
        for (size_t i = 0; i < r->n_states; i++) {
            const Tidemark__ReplicationState *s = r->states[i];
            printf("%s{\"target\":", i ? "," : "");
            tm_json_str(stdout, s->target);
            printf(",\"repository\":");
            tm_json_str(stdout, s_or(s->repository, ""));
            printf(",\"region\":");
            tm_json_str(stdout, s_or(s->region, ""));
            printf(",\"state\":");
            tm_json_str(stdout, s_or(s->state, "unknown"));
            printf(",\"required\":%s,\"last_check\":", s->required ? "true" : "false");
            json_time(stdout, s->checked_at);
            printf(",\"gaps\":%u,\"mismatches\":%u,\"lag_seconds\":%" PRId64
                   ",\"unresolved\":%s,\"copies\":%u,\"newest_backup\":",
                   s->gaps, s->mismatches, s->lag_seconds, s->unresolved ? "true" : "false",
                   s->copies);
            tm_json_str(stdout, s_or(s->newest_backup, ""));
            printf(",\"newest_log\":");
            tm_json_str(stdout, s_or(s->newest_log, ""));
            printf(",\"last_task\":");
            tm_json_str(stdout, s_or(s->last_task, ""));
            printf(",\"detail\":");
            tm_json_str(stdout, s_or(s->detail, ""));
            printf("}");
        }
        printf("],\"repositories\":[");
        for (size_t i = 0; i < r->n_repositories; i++) {
            const Tidemark__RepositoryStatus *h = r->repositories[i];
            printf("%s{\"agent\":", i ? "," : "");
            tm_json_str(stdout, s_or(h->agent_id, ""));
            printf(",\"repository\":");
            tm_json_str(stdout, s_or(h->name, ""));
            printf(",\"region\":");
            tm_json_str(stdout, s_or(h->region, ""));
            printf(",\"ok\":%s,\"last_ok\":", h->ok ? "true" : "false");
            json_time(stdout, h->last_ok_at);
            printf(",\"failing_since\":");
            json_time(stdout, h->failing_since);
            printf(",\"error\":");
            tm_json_str(stdout, s_or(h->error, ""));
            printf("}");
        }
        printf("]}\n");
    } else {
        if (r->n_states == 0) {
            printf("no replication check has run yet%s%s\n", target ? " for " : "",
                   target ? target : "");
        } else {
            printf("%-16s %-12s %-8s %-11s %-10s %6s %8s %6s  %s\n", "TARGET", "REPOSITORY",
                   "REGION", "STATE", "CHECKED", "GAPS", "LAG", "COPIES", "DETAIL");
        }
        for (size_t i = 0; i < r->n_states; i++) {
            const Tidemark__ReplicationState *s = r->states[i];
            char ago[32], lag[32];
            ctl_ago(s->checked_at, ago, sizeof(ago));
            snprintf(lag, sizeof(lag), "%" PRId64 "s", s->lag_seconds);
            printf("%-16s %-12s %-8s %-11s %-10s %6u %8s %6u  %s%s%s\n", s->target,
                   s_or(s->repository, "(policy)"), s_or(s->region, "-"), s_or(s->state, "unknown"),
                   ago, s->gaps + s->mismatches, lag, s->copies,
                   s->required ? "" : "(not required) ", s->unresolved ? "UNRESOLVED " : "",
                   s_or(s->detail, ""));
        }
        if (r->n_repositories > 0) {
            printf("\n%-24s %-12s %-8s %-6s %-10s  %s\n", "AGENT", "REPOSITORY", "REGION", "UP",
                   "LAST OK", "ERROR");
        }
        for (size_t i = 0; i < r->n_repositories; i++) {
            const Tidemark__RepositoryStatus *h = r->repositories[i];
            char ago[32];
            ctl_ago(h->last_ok_at, ago, sizeof(ago));
            printf("%-24s %-12s %-8s %-6s %-10s  %s\n", s_or(h->agent_id, "-"), s_or(h->name, "-"),
                   s_or(h->region, "-"), h->ok ? "yes" : "NO", ago, s_or(h->error, ""));
        }
    }
    tidemark__replication_status_response__free_unpacked(r, NULL);
    return bad ? CTL_FAIL : CTL_OK;
}

static int check(ctl *c, const char *target, int wait, uint32_t wait_s)
{
    Tidemark__ReplicationCheckRequest req = TIDEMARK__REPLICATION_CHECK_REQUEST__INIT;
    req.target = (char *)target;
    Tidemark__TaskResponse *resp = NULL;
    int rc = ctl_call(c, "Admin.ReplicationCheck", &req.base, &tidemark__task_response__descriptor,
                      (ProtobufCMessage **)&resp);
    if (rc != CTL_OK) {
        return rc;
    }
    char id[128];
    snprintf(id, sizeof(id), "%s", resp->task && resp->task->id ? resp->task->id : "");
    if (!wait) {
        if (c->json) {
            ctl_json_task(stdout, resp->task);
            fputc('\n', stdout);
        } else {
            printf("queued replication check of %s as task %s\n", target, id);
        }
    }
    tidemark__task_response__free_unpacked(resp, NULL);
    return wait ? ctl_wait_task(c, id, wait_s) : CTL_OK;
}

int ctl_replication(ctl *c, int argc, char **argv)
{
    if (argc < 2 || strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0) {
        return usage(argc < 2 ? stderr : stdout, argc < 2 ? CTL_USAGE : CTL_OK);
    }
    const char *sub = argv[1], *target = NULL;
    int wait = 0;
    uint32_t wait_s = 3600;
    for (int i = 2; i < argc; i++) {
        if (strcmp(argv[i], "--target") == 0 && i + 1 < argc) {
            target = argv[++i];
        } else if (strcmp(argv[i], "--json") == 0) {
            c->json = 1;
        } else if (strcmp(argv[i], "--wait") == 0) {
            wait = 1;
        } else if (strcmp(argv[i], "--wait-timeout") == 0 && i + 1 < argc) {
            wait_s = (uint32_t)strtoul(argv[++i], NULL, 10);
        } else if (strcmp(argv[i], "--help") == 0 || strcmp(argv[i], "-h") == 0) {
            return usage(stdout, CTL_OK);
        } else {
            fprintf(stderr, "tidemarkctl: replication %s: unknown argument '%s'\n", sub, argv[i]);
            return CTL_USAGE;
        }
    }
    if (strcmp(sub, "status") == 0) {
        return status(c, target);
    }
    if (strcmp(sub, "check") == 0) {
        if (target == NULL) {
            fprintf(stderr, "tidemarkctl: replication check needs --target\n");
            return CTL_USAGE;
        }
        return check(c, target, wait, wait_s);
    }
    fprintf(stderr, "tidemarkctl: replication: unknown command '%s' (status or check)\n", sub);
    return CTL_USAGE;
}
