/*
 * retention.c - tidemarkctl retention plan|apply|log and backup keep|unkeep.
 *
 * plan is the dry run (what GFS retention would keep and drop, and why);
 * apply queues the EXPIRE tasks that delete what the plan drops from every
 * repository (the coordinator also does this on each policy's
 * retention.apply schedule); log lists what retention deleted. keep/unkeep
 * set the permanent hold that retention never deletes.
 */
#include "coordinator/ctl/ctl.h"
#include "common/util.h"

#include <getopt.h>
#include <stdlib.h>
#include <string.h>

#include "tidemark.pb-c.h"

static void usage(FILE *f)
{
    fprintf(f,
            "Usage: tidemarkctl retention plan [--target T] [--json]\n"
            "       tidemarkctl retention apply [--target T] [--wait] [--wait-timeout S] [--json]\n"
            "       tidemarkctl retention log [--target T] [--limit N] [--json]\n"
            "\n"
            "plan   the retention plan (keep/drop and the rule behind each backup) over the\n"
            "       catalog's backups, per target under its policy. Dry run: deletes nothing.\n"
            "apply  apply that plan now: one EXPIRE task per target, run by the target's\n"
            "       agent, deletes the dropped backups (manifest first) and the logs older\n"
            "       than the PITR window's oldest needed backup from every repository, and\n"
            "       refuses if a backup that stays builds on a dropped one. The coordinator\n"
            "       also applies it on each policy's retention.apply schedule. --wait follows\n"
            "       the tasks to their end (exit 0 all succeeded, 1 otherwise).\n"
            "log    what retention deleted, newest first (default limit 100).\n"
            "\n"
            "Examples:\n"
            "  tidemarkctl retention plan --target orders-db\n"
            "  tidemarkctl retention apply --target orders-db --wait\n"
            "  tidemarkctl retention log --limit 20\n");
}

static void keep_usage(FILE *f)
{
    fprintf(f, "Usage: tidemarkctl backup keep ID [--target T] [--json]\n"
               "       tidemarkctl backup unkeep ID [--target T] [--json]\n"
               "\n"
               "keep puts a permanent hold on a backup: retention never deletes it (nor the\n"
               "backups it is built on). unkeep releases the hold; retention then treats it\n"
               "like any other backup.\n"
               "\n"
               "Example:\n"
               "  tidemarkctl backup keep 20261207T030000Z-full --target orders-db\n");
}

int ctl_backup_keep(ctl *c, int argc, char **argv)
{
    int keep = strcmp(argv[0], "keep") == 0;
    const char *id = NULL, *target = NULL;
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--json") == 0) {
            c->json = 1;
        } else if (strcmp(argv[i], "--target") == 0 && i + 1 < argc) {
            target = argv[++i];
        } else if (strcmp(argv[i], "--help") == 0 || strcmp(argv[i], "-h") == 0) {
            keep_usage(stdout);
            return CTL_OK;
        } else if (argv[i][0] != '-' && id == NULL) {
            id = argv[i];
        } else {
            fprintf(stderr, "tidemarkctl: backup %s: unknown argument '%s'\n", argv[0], argv[i]);
            keep_usage(stderr);
            return CTL_USAGE;
        }
    }
    if (id == NULL) {
        fprintf(stderr, "tidemarkctl: backup %s needs a backup ID\n", argv[0]);
        keep_usage(stderr);
        return CTL_USAGE;
    }
    Tidemark__KeepBackupRequest req = TIDEMARK__KEEP_BACKUP_REQUEST__INIT;
    req.id = (char *)id;
    req.target = (char *)target;
    req.has_keep = 1;
    req.keep = keep;
    Tidemark__BackupResponse *resp = NULL;
    int rc = ctl_call(c, "Admin.KeepBackup", &req.base, &tidemark__backup_response__descriptor,
                      (ProtobufCMessage **)&resp);
    if (rc != CTL_OK) {
        return rc;
    }
    const Tidemark__BackupInfo *b = resp->backup;
    if (c->json) {
        fputs("{\"id\":", stdout);
        tm_json_str(stdout, b ? b->id : id);
        fputs(",\"target\":", stdout);
        tm_json_str(stdout, b ? b->target : target);
        printf(",\"keep\":%s}\n", b && b->keep ? "true" : "false");
    } else {
        printf("%s %s of %s\n", keep ? "holding" : "released", b ? b->id : id,
               b && b->target ? b->target : "?");
    }
    tidemark__backup_response__free_unpacked(resp, NULL);
    return CTL_OK;
}

void ctl_json_expire(FILE *f, const Tidemark__Task *t)
{
    const Tidemark__ExpireSpec *s = t->expire;
    fprintf(f, ",\"expire\":{\"drop\":[");
    for (size_t i = 0; s != NULL && i < s->n_drop; i++) {
        fputs(i ? "," : "", f);
        tm_json_str(f, s->drop[i]->id);
    }
    fputs("],\"log_cutoff_id\":", f);
    tm_json_str(f, s != NULL ? s->log_cutoff_id : NULL);
    const Tidemark__ExpireResult *r = t->result != NULL ? t->result->expire : NULL;
    fputs(",\"repositories\":[", f);
    for (size_t i = 0; r != NULL && i < r->n_repositories; i++) {
        const Tidemark__ExpireRepoResult *rr = r->repositories[i];
        fputs(i ? ",{\"repository\":" : "{\"repository\":", f);
        tm_json_str(f, rr->repository);
        fprintf(f, ",\"backups\":%zu,\"objects\":%llu,\"log_files\":%u,\"log_first_kept\":",
                rr->n_backups, (unsigned long long)rr->objects, rr->log_files);
        tm_json_str(f, rr->log_first_kept);
        fputs("}", f);
    }
    fputs("],\"refused\":[", f);
    for (size_t i = 0; r != NULL && i < r->n_refused; i++) {
        fputs(i ? "," : "", f);
        tm_json_str(f, r->refused[i]);
    }
    fputs("]}", f);
}

static int parse_common(ctl *c, int argc, char **argv, const char **target, int *wait,
                        uint32_t *wait_s, uint32_t *limit)
{
    static const struct option lo[] = {{"target", required_argument, NULL, 't'},
                                       {"wait", no_argument, NULL, 'w'},
                                       {"wait-timeout", required_argument, NULL, 'W'},
                                       {"limit", required_argument, NULL, 'l'},
                                       {"json", no_argument, NULL, 'j'},
                                       {"help", no_argument, NULL, 'h'},
                                       {NULL, 0, NULL, 0}};
    optind = 1;
    int ch;
    while ((ch = getopt_long(argc, argv, "+h", lo, NULL)) != -1) {
        switch (ch) {
        case 't':
            *target = optarg;
            break;
        case 'w':
            if (wait == NULL) {
                goto bad;
            }
            *wait = 1;
            break;
        case 'W':
            if (wait_s == NULL) {
                goto bad;
            }
            *wait_s = (uint32_t)strtoul(optarg, NULL, 10);
            break;
        case 'l':
            if (limit == NULL) {
                goto bad;
            }
            *limit = (uint32_t)strtoul(optarg, NULL, 10);
            break;
        case 'j':
            c->json = 1;
            break;
        case 'h':
            usage(stdout);
            return -1;
        default:
            goto bad;
        }
    }
    if (optind == argc) {
        return CTL_OK;
    }
bad:
    fprintf(stderr, "tidemarkctl: retention %s: bad arguments\n", argv[0]);
    usage(stderr);
    return CTL_USAGE;
}

static int retention_plan(ctl *c, const char *target)
{
    Tidemark__RetentionPlanRequest req = TIDEMARK__RETENTION_PLAN_REQUEST__INIT;
    req.target = (char *)target;
    Tidemark__RetentionPlanResponse *resp = NULL;
    int rc = ctl_call(c, "Admin.RetentionPlan", &req.base,
                      &tidemark__retention_plan_response__descriptor, (ProtobufCMessage **)&resp);
    if (rc != CTL_OK) {
        return rc;
    }
    if (c->json) {
        printf("%s\n", resp->json != NULL ? resp->json : "{}");
    } else {
        printf("DRY RUN: nothing is deleted (`tidemarkctl retention apply` applies it)\n\n%s",
               resp->text != NULL ? resp->text : "");
    }
    tidemark__retention_plan_response__free_unpacked(resp, NULL);
    return CTL_OK;
}

static int retention_apply(ctl *c, const char *target, int wait, uint32_t wait_s)
{
    Tidemark__RetentionApplyRequest req = TIDEMARK__RETENTION_APPLY_REQUEST__INIT;
    req.target = (char *)target;
    Tidemark__RetentionApplyResponse *resp = NULL;
    int rc = ctl_call(c, "Admin.RetentionApply", &req.base,
                      &tidemark__retention_apply_response__descriptor, (ProtobufCMessage **)&resp);
    if (rc != CTL_OK) {
        return rc;
    }
    if (c->json && !wait) {
        fputs("{\"tasks\":[", stdout);
        for (size_t i = 0; i < resp->n_tasks; i++) {
            fputs(i ? "," : "", stdout);
            ctl_json_task(stdout, resp->tasks[i]);
        }
        fputs("],\"skipped\":[", stdout);
        for (size_t i = 0; i < resp->n_skipped; i++) {
            fputs(i ? "," : "", stdout);
            tm_json_str(stdout, resp->skipped[i]);
        }
        fputs("]}\n", stdout);
    } else if (!c->json) {
        for (size_t i = 0; i < resp->n_tasks; i++) {
            const Tidemark__Task *t = resp->tasks[i];
            printf("%s: EXPIRE task %s (%zu backups to drop) on agent %s\n", t->target, t->id,
                   t->expire ? t->expire->n_drop : 0, t->agent_id ? t->agent_id : "?");
        }
        for (size_t i = 0; i < resp->n_skipped; i++) {
            printf("%s\n", resp->skipped[i]);
        }
    }
    rc = CTL_OK;
    for (size_t i = 0; wait && i < resp->n_tasks; i++) {
        if (ctl_wait_task(c, resp->tasks[i]->id, wait_s) != CTL_OK) {
            rc = CTL_FAIL;
        }
    }
    tidemark__retention_apply_response__free_unpacked(resp, NULL);
    return rc;
}

static int retention_log(ctl *c, const char *target, uint32_t limit)
{
    Tidemark__RetentionLogRequest req = TIDEMARK__RETENTION_LOG_REQUEST__INIT;
    req.target = (char *)target;
    req.has_limit = limit > 0;
    req.limit = limit;
    Tidemark__RetentionLogResponse *resp = NULL;
    int rc = ctl_call(c, "Admin.RetentionLog", &req.base,
                      &tidemark__retention_log_response__descriptor, (ProtobufCMessage **)&resp);
    if (rc != CTL_OK) {
        return rc;
    }
    if (c->json) {
        fputs("[", stdout);
    } else {
        printf("%-20s  %-16s  %-28s  %-11s  %-20s  %s\n", "DELETED", "TARGET", "BACKUP", "TYPE",
               "REPOSITORIES", "REASON");
    }
    for (size_t i = 0; i < resp->n_deletions; i++) {
        const Tidemark__RetentionDeletion *d = resp->deletions[i];
        if (c->json) {
            fputs(i ? ",{\"at\":" : "{\"at\":", stdout);
            json_time(stdout, d->at);
            fputs(",\"target\":", stdout);
            tm_json_str(stdout, d->target);
            fputs(",\"backup_id\":", stdout);
            tm_json_str(stdout, d->backup_id);
            printf(",\"type\":\"%s\",\"finished_at\":", tm_backup_type_name(d->backup_type));
            json_time(stdout, d->finished_at);
            fputs(",\"repositories\":[", stdout);
            for (size_t r = 0; r < d->n_repositories; r++) {
                fputs(r ? "," : "", stdout);
                tm_json_str(stdout, d->repositories[r]);
            }
            fputs("],\"reason\":", stdout);
            tm_json_str(stdout, d->reason);
            fputs(",\"task_id\":", stdout);
            tm_json_str(stdout, d->task_id);
            fputs("}", stdout);
        } else {
            char when[32], repos[256] = "";
            tm_fmt_time(d->at, when, sizeof(when));
            for (size_t r = 0; r < d->n_repositories; r++) {
                size_t l = strlen(repos);
                snprintf(repos + l, sizeof(repos) - l, "%s%s", r ? "," : "", d->repositories[r]);
            }
            printf("%-20s  %-16s  %-28s  %-11s  %-20s  %s\n", when, d->target, d->backup_id,
                   tm_backup_type_name(d->backup_type), repos, d->reason ? d->reason : "");
        }
    }
    if (c->json) {
        fputs("]\n", stdout);
    } else if (resp->n_deletions == 0) {
        printf("(retention has deleted nothing%s%s)\n", target ? " of " : "", target ? target : "");
    }
    tidemark__retention_log_response__free_unpacked(resp, NULL);
    return CTL_OK;
}

int ctl_retention(ctl *c, int argc, char **argv)
{
    if (argc < 2) {
        usage(stderr);
        return CTL_USAGE;
    }
    if (strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0) {
        usage(stdout);
        return CTL_OK;
    }
    const char *target = NULL;
    int wait = 0;
    uint32_t wait_s = 3600, limit = 0;
    int is_plan = strcmp(argv[1], "plan") == 0, is_apply = strcmp(argv[1], "apply") == 0;
    int is_log = strcmp(argv[1], "log") == 0;
    if (!is_plan && !is_apply && !is_log) {
        fprintf(stderr, "tidemarkctl: unknown command 'retention %s'\n", argv[1]);
        usage(stderr);
        return CTL_USAGE;
    }
    int rc = parse_common(c, argc - 1, argv + 1, &target, is_apply ? &wait : NULL,
                          is_apply ? &wait_s : NULL, is_log ? &limit : NULL);
    if (rc != CTL_OK) {
        return rc < 0 ? CTL_OK : rc;
    }
    return is_plan    ? retention_plan(c, target)
           : is_apply ? retention_apply(c, target, wait, wait_s)
                      : retention_log(c, target, limit);
}
