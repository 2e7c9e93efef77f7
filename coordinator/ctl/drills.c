/*
 * drills.c - tidemarkctl drill run, drills list, and the drills section of
 * tidemarkctl status: restore drills with their measured RTO and RPO.
 */
#include "coordinator/ctl/ctl.h"
#include "common/util.h"

#include <getopt.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "tidemark.pb-c.h"

static void drills_usage(FILE *f)
{
    fprintf(
        f,
        "Usage: tidemarkctl drill run --target T [--to AGENT] [--time 'YYYY-MM-DD HH:MM:SS+00']\n"
        "                             [--wait] [--wait-timeout S] [--json]\n"
        "       tidemarkctl drills list [--target T] [--limit N] [--json]\n\n"
        "A restore drill restores the newest backup chain of T on a staging agent (--to,\n"
        "else the policy's drill.staging_agent, else T's own agent) to --time or the\n"
        "latest recoverable point, starts the database, runs the integrity checks and the\n"
        "policy's drill.checks, then removes the copy. RTO = restore start -> checks\n"
        "passed (files + recovery + checks); RPO = target time (drill start for latest)\n"
        "- the newest transaction the copy recovered.\n"
        "--wait follows the drill to its end and prints its result (exit 0 passed,\n"
        "1 failed).\n"
        "\n"
        "Examples:\n"
        "  tidemarkctl drill run --target orders-db --to staging-1 --wait\n"
        "  tidemarkctl drills list --target orders-db\n");
}

static void json_ms(FILE *f, int64_t ms)
{
    json_time(f, ms > 0 ? ms / 1000 : 0);
}

static void json_drill(FILE *f, const Tidemark__DrillInfo *d)
{
    fprintf(f, "{\"id\":%" PRId64 ",\"target\":", d->id);
    tm_json_str(f, d->target);
    fputs(",\"task_id\":", f);
    tm_json_str(f, d->task_id);
    fputs(",\"agent_id\":", f);
    tm_json_str(f, d->agent_id);
    fputs(",\"backup_id\":", f);
    tm_json_str(f, d->backup_id);
    fprintf(f, ",\"result\":\"%s\",\"ok\":%s,\"error\":", d->ok ? "ok" : "failed",
            d->ok ? "true" : "false");
    tm_json_str(f, d->error);
    fputs(",\"requested_by\":", f);
    tm_json_str(f, d->requested_by);
    fputs(",\"started_at\":", f);
    json_ms(f, d->started_at_ms);
    fputs(",\"finished_at\":", f);
    json_ms(f, d->finished_at_ms);
    fputs(",\"target_time\":", f);
    tm_json_str(f, d->target_time && d->target_time[0] ? d->target_time : "latest");
    fputs(",\"recovered_to\":", f);
    json_ms(f, d->has_recovered_to_ms ? d->recovered_to_ms : 0);
    fputs(",\"rto_seconds\":", f);
    if (d->has_rto_ms) {
        fprintf(f, "%.3f", (double)d->rto_ms / 1000.0);
    } else {
        fputs("null", f);
    }
    fputs(",\"rpo_seconds\":", f);
    if (d->has_rpo_ms) {
        fprintf(f, "%.3f", (double)d->rpo_ms / 1000.0);
    } else {
        fputs("null", f);
    }
    fprintf(f,
            ",\"phases\":{\"restore_files_seconds\":%.3f,\"recovery_seconds\":%.3f,"
            "\"checks_seconds\":%.3f},\"rto_goal_seconds\":%u,\"rpo_goal_seconds\":%u,\"checks\":[",
            (double)d->restore_files_ms / 1000.0, (double)d->recovery_ms / 1000.0,
            (double)d->checks_ms / 1000.0, d->rto_goal_s, d->rpo_goal_s);
    for (size_t i = 0; i < d->n_checks; i++) {
        const Tidemark__DrillCheck *k = d->checks[i];
        fprintf(f, "%s{\"name\":", i ? "," : "");
        tm_json_str(f, k->name);
        fprintf(f, ",\"ok\":%s,\"detail\":", k->ok ? "true" : "false");
        tm_json_str(f, k->detail);
        fprintf(f, ",\"ms\":%" PRIu64 "}", k->duration_ms);
    }
    fputs("]}", f);
}

static void text_drill(const Tidemark__DrillInfo *d)
{
    char fin[32] = "-", rec[32] = "-";
    if (d->finished_at_ms > 0) {
        tm_fmt_time(d->finished_at_ms / 1000, fin, sizeof(fin));
    }
    if (d->has_recovered_to_ms) {
        tm_fmt_time(d->recovered_to_ms / 1000, rec, sizeof(rec));
    }
    printf("drill:       %s of %s on agent %s (%s)\n", d->task_id, d->target,
           d->agent_id ? d->agent_id : "-", d->requested_by ? d->requested_by : "-");
    printf("result:      %s%s%s\n", d->ok ? "PASSED" : "FAILED", d->ok ? "" : ": ",
           d->ok ? "" : (d->error ? d->error : "no error reported"));
    printf("backup:      %s\n", d->backup_id && d->backup_id[0] ? d->backup_id : "-");
    printf("target:      %s; recovered to %s\n",
           d->target_time && d->target_time[0] ? d->target_time : "latest", rec);
    if (d->has_rto_ms) {
        printf("RTO:         %.1f s (goal %u s): files %.1f s + recovery %.1f s + checks %.1f s\n",
               (double)d->rto_ms / 1000.0, d->rto_goal_s, (double)d->restore_files_ms / 1000.0,
               (double)d->recovery_ms / 1000.0, (double)d->checks_ms / 1000.0);
    }
    if (d->has_rpo_ms) {
        printf("RPO:         %.1f s (goal %u s)\n", (double)d->rpo_ms / 1000.0, d->rpo_goal_s);
    }
    for (size_t i = 0; i < d->n_checks; i++) {
        printf("check:       %-4s %s: %s\n", d->checks[i]->ok ? "ok" : "FAIL", d->checks[i]->name,
               d->checks[i]->detail ? d->checks[i]->detail : "");
    }
    printf("finished:    %s\n", fin);
}

static int list_call(ctl *c, const char *target, uint32_t limit, Tidemark__ListDrillsResponse **out)
{
    Tidemark__ListDrillsRequest req = TIDEMARK__LIST_DRILLS_REQUEST__INIT;
    req.target = (char *)target;
    req.has_limit = limit > 0;
    req.limit = limit;
    return ctl_call(c, "Admin.ListDrills", &req.base, &tidemark__list_drills_response__descriptor,
                    (ProtobufCMessage **)out);
}

static int drill_run(ctl *c, int argc, char **argv)
{
    static const struct option opts[] = {
        {"target", required_argument, NULL, 't'},
        {"to", required_argument, NULL, 'a'},
        {"time", required_argument, NULL, 'T'},
        {"wait", no_argument, NULL, 'w'},
        {"wait-timeout", required_argument, NULL, 'W'},
        {"json", no_argument, NULL, 'j'},
        {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0},
    };
    Tidemark__RunDrillRequest req = TIDEMARK__RUN_DRILL_REQUEST__INIT;
    int wait = 0;
    uint32_t wait_s = 6 * 3600;
    optind = 0;
    int ch;
    while ((ch = getopt_long(argc, argv, "h", opts, NULL)) != -1) {
        switch (ch) {
        case 't':
            req.target = optarg;
            break;
        case 'a':
            req.to_agent = optarg;
            break;
        case 'T':
            req.target_time = optarg;
            break;
        case 'w':
            wait = 1;
            break;
        case 'W':
            wait_s = (uint32_t)strtoul(optarg, NULL, 10);
            break;
        case 'j':
            c->json = 1;
            break;
        case 'h':
            drills_usage(stdout);
            return CTL_OK;
        default:
            drills_usage(stderr);
            return CTL_USAGE;
        }
    }
    if (req.target == NULL || optind < argc) {
        fprintf(stderr, "tidemarkctl: drill run needs --target (and no other arguments)\n");
        return CTL_USAGE;
    }
    char id[128], what[200];
    snprintf(what, sizeof(what), "drill of %s", req.target);
    int rc = ctl_submit_task(c, "Admin.RunDrill", &req.base, what, !wait, id, sizeof(id));
    if (rc != CTL_OK || !wait) {
        return rc;
    }
    c->wait_quiet = 1;
    rc = ctl_wait_task(c, id, wait_s);
    c->wait_quiet = 0;
    /* The drill row is written as the task ends: look for it briefly. */
    for (int attempt = 0; attempt < 20; attempt++) {
        Tidemark__ListDrillsResponse *l = NULL;
        if (list_call(c, req.target, 50, &l) != CTL_OK) {
            return CTL_FAIL;
        }
        for (size_t i = 0; i < l->n_drills; i++) {
            const Tidemark__DrillInfo *d = l->drills[i];
            if (d->task_id != NULL && strcmp(d->task_id, id) == 0) {
                if (c->json) {
                    json_drill(stdout, d);
                    fputc('\n', stdout);
                } else {
                    text_drill(d);
                }
                int ok = d->ok;
                tidemark__list_drills_response__free_unpacked(l, NULL);
                return ok && rc == CTL_OK ? CTL_OK : CTL_FAIL;
            }
        }
        tidemark__list_drills_response__free_unpacked(l, NULL);
        if (rc != CTL_OK && attempt >= 4) {
            break; /* cancelled or never ran: no drill row */
        }
        usleep(100000);
    }
    Tidemark__Task *t = NULL;
    if (ctl_get_task(c, id, &t) == CTL_OK) {
        fprintf(stderr, "tidemarkctl: drill task %s ended %s without a drill record: %s\n", id,
                tm_task_state_name(t->state), t->error ? t->error : "-");
        tidemark__task__free_unpacked(t, NULL);
    }
    return CTL_FAIL;
}

static int drills_list(ctl *c, int argc, char **argv)
{
    const char *target = NULL;
    uint32_t limit = 20;
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--target") == 0 && i + 1 < argc) {
            target = argv[++i];
        } else if (strcmp(argv[i], "--limit") == 0 && i + 1 < argc) {
            limit = (uint32_t)strtoul(argv[++i], NULL, 10);
        } else if (strcmp(argv[i], "--json") == 0) {
            c->json = 1;
        } else if (strcmp(argv[i], "--help") == 0 || strcmp(argv[i], "-h") == 0) {
            drills_usage(stdout);
            return CTL_OK;
        } else {
            fprintf(stderr, "tidemarkctl: drills list: unknown argument '%s'\n", argv[i]);
            return CTL_USAGE;
        }
    }
    Tidemark__ListDrillsResponse *l = NULL;
    int rc = list_call(c, target, limit, &l);
    if (rc != CTL_OK) {
        return rc;
    }
    if (c->json) {
        fputc('[', stdout);
        for (size_t i = 0; i < l->n_drills; i++) {
            fputs(i ? "," : "", stdout);
            json_drill(stdout, l->drills[i]);
        }
        fputs("]\n", stdout);
    } else if (l->n_drills == 0) {
        printf("no drills yet%s%s (tidemarkctl drill run --target T)\n", target ? " of " : "",
               target ? target : "");
    } else {
        printf("%-20s  %-16s  %-6s  %9s  %9s  %-24s  %s\n", "FINISHED", "TARGET", "RESULT", "RTO",
               "RPO", "BACKUP", "AGENT / ERROR");
        for (size_t i = 0; i < l->n_drills; i++) {
            const Tidemark__DrillInfo *d = l->drills[i];
            char fin[32] = "-", rto[24] = "-", rpo[24] = "-";
            if (d->finished_at_ms > 0) {
                tm_fmt_time(d->finished_at_ms / 1000, fin, sizeof(fin));
            }
            if (d->has_rto_ms) {
                snprintf(rto, sizeof(rto), "%.1fs", (double)d->rto_ms / 1000.0);
            }
            if (d->has_rpo_ms) {
                snprintf(rpo, sizeof(rpo), "%.1fs", (double)d->rpo_ms / 1000.0);
            }
            printf("%-20s  %-16s  %-6s  %9s  %9s  %-24s  %s\n", fin, d->target,
                   d->ok ? "ok" : "FAILED", rto, rpo,
                   d->backup_id && d->backup_id[0] ? d->backup_id : "-",
                   d->ok ? (d->agent_id ? d->agent_id : "-") : (d->error ? d->error : "-"));
        }
    }
    tidemark__list_drills_response__free_unpacked(l, NULL);
    return CTL_OK;
}

int ctl_drills(ctl *c, int argc, char **argv)
{
    if (argc < 2 || strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0) {
        drills_usage(argc < 2 ? stderr : stdout);
        return argc < 2 ? CTL_USAGE : CTL_OK;
    }
    if (strcmp(argv[0], "drill") == 0 && strcmp(argv[1], "run") == 0) {
        return drill_run(c, argc - 1, argv + 1);
    }
    if (strcmp(argv[1], "list") == 0) {
        return drills_list(c, argc - 1, argv + 1);
    }
    fprintf(stderr, "tidemarkctl: unknown command '%s %s'\n", argv[0], argv[1]);
    drills_usage(stderr);
    return CTL_USAGE;
}

void ctl_status_drills(ctl *c)
{
    Tidemark__ListDrillsResponse *l = NULL;
    Tidemark__ListDrillsRequest req = TIDEMARK__LIST_DRILLS_REQUEST__INIT;
    req.has_limit = 1;
    req.limit = 500;
    tm_err err = {0};
    if (tm_rpc_client_call(c->rpc, "Admin.ListDrills", &req.base,
                           &tidemark__list_drills_response__descriptor, (ProtobufCMessage **)&l,
                           c->timeout_ms, NULL, &err) != TM_OK) {
        if (c->json) {
            fputs(",\"drills\":null", stdout);
        }
        return; /* an older coordinator: no drills section */
    }
    /* Newest first: the first row of a target is its latest drill. */
    const Tidemark__DrillInfo **latest = calloc(l->n_drills + 1, sizeof(*latest));
    size_t n = 0;
    for (size_t i = 0; latest != NULL && i < l->n_drills; i++) {
        size_t j = 0;
        while (j < n && strcmp(latest[j]->target, l->drills[i]->target) != 0) {
            j++;
        }
        if (j == n) {
            latest[n++] = l->drills[i];
        }
    }
    if (c->json) {
        fputs(",\"drills\":[", stdout);
        for (size_t i = 0; i < n; i++) {
            fputs(i ? "," : "", stdout);
            json_drill(stdout, latest[i]);
        }
        fputc(']', stdout);
    } else {
        printf("Drills (newest per target)\n");
        if (n == 0) {
            printf("  none yet: tidemarkctl drill run --target T --wait\n");
        }
        for (size_t i = 0; i < n; i++) {
            const Tidemark__DrillInfo *d = latest[i];
            char ago[32];
            ctl_ago(d->finished_at_ms / 1000, ago, sizeof(ago));
            printf("  %-16s %-6s %s", d->target, d->ok ? "ok" : "FAILED", ago);
            if (d->has_rto_ms) {
                printf("  RTO %.1f s (goal %u s)", (double)d->rto_ms / 1000.0, d->rto_goal_s);
            }
            if (d->has_rpo_ms) {
                printf("  RPO %.1f s (goal %u s)", (double)d->rpo_ms / 1000.0, d->rpo_goal_s);
            }
            putchar('\n');
        }
    }
    free(latest);
    tidemark__list_drills_response__free_unpacked(l, NULL);
}
