/*
 * status.c - tidemarkctl status: the coordinator and the fleet at a glance.
 */
#include "coordinator/ctl/ctl.h"

#include <inttypes.h>
#include <string.h>

#include "common/names.h"
#include "common/util.h"
#include "tidemark.pb-c.h"

/* "14 s", "3 m 20 s", "2 h 5 m", "3 d 4 h" */
static void span(int64_t s, char *out, size_t cap)
{
    if (s < 120) {
        snprintf(out, cap, "%" PRId64 " s", s);
    } else if (s < 3600) {
        snprintf(out, cap, "%" PRId64 " m %" PRId64 " s", s / 60, s % 60);
    } else if (s < 2 * 86400) {
        snprintf(out, cap, "%" PRId64 " h %" PRId64 " m", s / 3600, s % 3600 / 60);
    } else {
        snprintf(out, cap, "%" PRId64 " d %" PRId64 " h", s / 86400, s % 86400 / 3600);
    }
}

static const char *agent_state(int s)
{
    static const char *const n[] = {"unknown", "pending", "online", "stale", "lost"};
    return s >= 0 && s < 5 ? n[s] : "unknown";
}

static void json_target(FILE *f, const Tidemark__TargetStatus *t)
{
    fputs("{\"name\":", f);
    tm_json_str(f, t->name);
    fputs(",\"kind\":", f);
    tm_json_str(f, tm_target_kind_name(t->kind) ? tm_target_kind_name(t->kind) : "");
    fputs(",\"agent\":", f);
    tm_json_str(f, t->agent);
    fprintf(f, ",\"agent_state\":\"%s\",\"policy\":", agent_state(t->agent_state));
    if (t->policy && t->policy[0]) {
        tm_json_str(f, t->policy);
    } else {
        fputs("null", f);
    }
    fputs(",\"last_full_at\":", f);
    json_time(f, t->last_full_at);
    fputs(",\"last_incremental_at\":", f);
    json_time(f, t->last_incremental_at);
    fputs(",\"pitr_start\":", f);
    json_time(f, t->pitr_start);
    fputs(",\"pitr_end\":", f);
    json_time(f, t->pitr_end);
    /* The window's kind: "snapshot-only" when the agent says its log cannot
     * take a restore to a time between backups (the reason beside it). */
    fprintf(f, ",\"window\":\"%s\",\"snapshot_only\":",
            t->snapshot_only && t->snapshot_only[0] ? "snapshot-only" : "point-in-time");
    if (t->snapshot_only && t->snapshot_only[0]) {
        tm_json_str(f, t->snapshot_only);
    } else {
        fputs("null", f);
    }
    fputs(",\"rpo_seconds\":", f);
    t->rpo_seconds >= 0 ? fprintf(f, "%" PRId64, t->rpo_seconds) : fputs("null", f);
    fputs(",\"rpo_bound_seconds\":", f);
    t->has_rpo_bound_seconds ? fprintf(f, "%" PRId64, t->rpo_bound_seconds) : fputs("null", f);
    fputs(",\"rpo_goal_seconds\":", f);
    t->has_rpo_goal_seconds ? fprintf(f, "%" PRId64, t->rpo_goal_seconds) : fputs("null", f);
    fputs(",\"rto_seconds\":", f);
    t->rto_seconds >= 0 ? fprintf(f, "%.3f", t->rto_seconds) : fputs("null", f);
    fputs(",\"rto_goal_seconds\":", f);
    t->has_rto_goal_seconds ? fprintf(f, "%" PRId64, t->rto_goal_seconds) : fputs("null", f);
    fputs(",\"last_drill_at\":", f);
    json_time(f, t->last_drill_at);
    fputs(",\"last_drill_ok\":", f);
    fputs(t->has_last_drill_ok ? (t->last_drill_ok ? "true" : "false") : "null", f);
    fputs(",\"log_shipping\":", f);
    tm_json_str(f, t->log_shipping ? t->log_shipping : "");
    fprintf(f, ",\"archive_queue\":%u,\"alerts_firing\":%u,\"running\":", t->archive_queue,
            t->alerts_firing);
    if (t->running && t->running[0]) {
        tm_json_str(f, t->running);
    } else {
        fputs("null", f);
    }
    fputs(",\"provider_pitr_start\":", f);
    json_time(f, t->provider_pitr_start);
    fputs(",\"provider_pitr_end\":", f);
    json_time(f, t->provider_pitr_end);
    fputs(",\"provider_pitr\":", f);
    if (t->provider_pitr && t->provider_pitr[0]) {
        tm_json_str(f, t->provider_pitr);
    } else {
        fputs("null", f);
    }
    /* The newest log chain reset (a gap in the window before the new
     * chain's base), null when none is known. */
    fputs(",\"last_chain_reset\":", f);
    if (t->last_chain_reset_ms > 0) {
        fputs("{\"at\":", f);
        json_time(f, t->last_chain_reset_ms / 1000);
        fputs(",\"why\":", f);
        tm_json_str(f, t->chain_reset ? t->chain_reset : "");
        fputs(",\"old_chain_end\":", f);
        tm_json_str(f, t->chain_reset_from ? t->chain_reset_from : "");
        fprintf(f, ",\"count\":%" PRIu64 "}", t->chain_resets);
    } else {
        fputs("null", f);
    }
    fputs(",\"partial_backups\":[", f);
    for (size_t i = 0; i < t->n_partial_backups; i++) {
        fputs(i ? "," : "", f);
        tm_json_str(f, t->partial_backups[i]);
    }
    fputs("]}", f);
}

static void text_target(const Tidemark__TargetStatus *t)
{
    char a[32], b[32], g[32];
    const char *kind = tm_target_kind_name(t->kind);
    printf("  %s (%s) on %s [%s], policy %s\n", t->name, kind ? kind : "?", t->agent,
           agent_state(t->agent_state), t->policy && t->policy[0] ? t->policy : "NONE");
    if (t->last_full_at > 0) {
        ctl_ago(t->last_full_at, a, sizeof(a));
    }
    if (t->last_incremental_at > 0) {
        ctl_ago(t->last_incremental_at, b, sizeof(b));
    }
    printf("    backups:      full %s, incremental %s\n", t->last_full_at > 0 ? a : "never",
           t->last_incremental_at > 0 ? b : "never");
    if (t->rpo_seconds >= 0) {
        char s1[32], s2[32];
        tm_fmt_time(t->pitr_start, s1, sizeof(s1));
        tm_fmt_time(t->pitr_end, s2, sizeof(s2));
        printf("    restorable:   %s .. %s%s\n", s1, s2,
               t->snapshot_only && t->snapshot_only[0] ? " (snapshot-only)" : "");
        span(t->rpo_seconds, a, sizeof(a));
        if (t->has_rpo_goal_seconds) {
            span(t->rpo_goal_seconds, g, sizeof(g));
        }
        if (t->has_rpo_bound_seconds) {
            /* No log between backups: what a restore loses now is the
             * newest backup's age, and the schedule's interval bounds it. */
            char bnd[32] = "no schedule";
            if (t->rpo_bound_seconds > 0) {
                span(t->rpo_bound_seconds, bnd, sizeof(bnd));
            }
            printf("    RPO now:      %s, the newest backup's age (no log shipping: up to the "
                   "backup interval, %s)\n",
                   a, bnd);
        }
        if (t->has_rpo_goal_seconds && t->has_rpo_bound_seconds &&
            (t->rpo_bound_seconds == 0 || t->rpo_bound_seconds > t->rpo_goal_seconds)) {
            printf("    RPO goal:     %s: %s\n", g,
                   t->rpo_seconds > t->rpo_goal_seconds
                       ? "BREACHED (backups alone cannot meet it; shorten the interval)"
                       : "ok now, but the backup interval is longer than the goal");
        } else if (t->has_rpo_bound_seconds) {
            printf("    RPO goal:     %s%s\n", t->has_rpo_goal_seconds ? g : "none",
                   !t->has_rpo_goal_seconds               ? ""
                   : t->rpo_seconds > t->rpo_goal_seconds ? " BREACHED"
                                                          : " ok");
        } else {
            printf("    RPO now:      %s%s%s%s\n", a, t->has_rpo_goal_seconds ? " (goal " : "",
                   t->has_rpo_goal_seconds ? g : "",
                   t->has_rpo_goal_seconds
                       ? (t->rpo_seconds > t->rpo_goal_seconds ? ") BREACHED" : ") ok")
                       : "");
        }
    } else {
        printf("    restorable:   nothing yet (no backup)\n");
    }
    if (t->rto_seconds >= 0) {
        if (t->rto_seconds < 120) {
            snprintf(a, sizeof(a), "%.1f s", t->rto_seconds);
        } else {
            span((int64_t)t->rto_seconds, a, sizeof(a));
        }
        ctl_ago(t->last_drill_at, b, sizeof(b));
        if (t->has_rto_goal_seconds) {
            span(t->rto_goal_seconds, g, sizeof(g));
        }
        printf("    RTO:          %s measured by the drill %s%s%s%s%s\n", a, b,
               t->has_rto_goal_seconds ? " (goal " : "", t->has_rto_goal_seconds ? g : "",
               t->has_rto_goal_seconds
                   ? (t->rto_seconds > t->rto_goal_seconds ? ") OVER GOAL" : ") ok")
                   : "",
               t->has_last_drill_ok && !t->last_drill_ok ? "; the last drill FAILED" : "");
    } else {
        printf("    RTO:          unknown: never drilled (tidemarkctl drill run --target %s)\n",
               t->name);
    }
    if (t->provider_pitr && t->provider_pitr[0]) {
        char s1[32], s2[32];
        if (t->provider_pitr_end > 0) {
            tm_fmt_time(t->provider_pitr_start, s1, sizeof(s1));
            tm_fmt_time(t->provider_pitr_end, s2, sizeof(s2));
            printf("    provider:     %s .. %s (%s)\n", s1, s2, t->provider_pitr);
        } else {
            printf("    provider:     %s\n", t->provider_pitr);
        }
    }
    if (t->has_rpo_bound_seconds) {
        printf("    log shipping: %s\n", t->log_shipping ? t->log_shipping : "-");
    } else {
        printf("    log shipping: %s (queue %u)\n", t->log_shipping ? t->log_shipping : "-",
               t->archive_queue);
    }
    if (t->snapshot_only && t->snapshot_only[0]) {
        printf("    window:       snapshot-only: %s\n", t->snapshot_only);
    }
    if (t->last_chain_reset_ms > 0) {
        ctl_ago(t->last_chain_reset_ms / 1000, a, sizeof(a));
        printf("    chain reset:  %s: %s; the old chain ended at %s, restores cannot reach the "
               "time from there to the new chain's base (%" PRIu64 " reset(s) seen)\n",
               a, t->chain_reset && t->chain_reset[0] ? t->chain_reset : "no reason reported",
               t->chain_reset_from && t->chain_reset_from[0] ? t->chain_reset_from : "unknown",
               t->chain_resets);
    }
    printf("    alerts:       %u firing\n", t->alerts_firing);
    if (t->running && t->running[0]) {
        printf("    running:      %s\n", t->running);
    }
    for (size_t i = 0; i < t->n_partial_backups; i++) {
        printf("    PARTIAL:      %s (restorable; a copy will fill the gap)\n",
               t->partial_backups[i]);
    }
}

int ctl_status(ctl *c, int argc, char **argv)
{
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--json") == 0) {
            c->json = 1;
        } else if (strcmp(argv[i], "--help") == 0 || strcmp(argv[i], "-h") == 0) {
            printf("Usage: tidemarkctl status [--json]\n\n"
                   "Coordinator version and uptime, catalog, agents by state, and per target:\n"
                   "newest backups, the restorable window, RPO now and RTO of the last\n"
                   "restore drill against the policy's goals, the provider's own\n"
                   "point-in-time window of a managed database, log shipping (and the\n"
                   "newest log chain reset: a gap in the window), alerts firing and the\n"
                   "task running.\n\n"
                   "Examples:\n"
                   "  tidemarkctl status\n"
                   "  tidemarkctl status --json | jq '.targets[] | {target, rpo_seconds}'\n");
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
               "\"agents\":{\"pending\":%u,\"online\":%u,\"stale\":%u,\"lost\":%u},"
               "\"target_status\":[",
               resp->schema_version, resp->heartbeat_interval_ms, resp->targets, counts[1],
               counts[2], counts[3], counts[4]);
        for (size_t i = 0; i < resp->n_target_status; i++) {
            if (i > 0) {
                putchar(',');
            }
            json_target(stdout, resp->target_status[i]);
        }
        printf("]");
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
        printf("Targets (%u)\n", resp->targets);
        for (size_t i = 0; i < resp->n_target_status; i++) {
            text_target(resp->target_status[i]);
        }
        ctl_status_drills(c);
    }
    tidemark__status_response__free_unpacked(resp, NULL);
    return CTL_OK;
}
