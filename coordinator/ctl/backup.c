/*
 * backup.c - tidemarkctl backup run|show, backups list, restore.
 */
#include "coordinator/ctl/ctl.h"
#include "common/util.h"

#include <getopt.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>

#include "tidemark.pb-c.h"

static void backup_usage(FILE *f)
{
    fprintf(f,
            "Usage: tidemarkctl backup run --target T [--type full|incremental|snapshot] [--wait]\n"
            "                              [--wait-timeout S] [--json]\n"
            "       tidemarkctl backup show ID [--target T] [--json]\n"
            "       tidemarkctl backup keep|unkeep ID [--target T] [--json]\n"
            "       tidemarkctl backups list [--target T] [--json]\n"
            "       tidemarkctl restore --target T --dir DIR [--time 'YYYY-MM-DD HH:MM:SS+00'\n"
            "                           | --backup ID | --position POS | --immediate]\n"
            "                           [--to AGENT] [--delta] [--start] [--port N]\n"
            "                           [--wait] [--json]\n"
            "                           [--tablespace-map OID=DIR ...] [--tablespace-map-all DIR]\n"
            "                           [--host H [--port N] [--into NAME | --dbname-suffix S]\n"
            "                            [--jobs N]]\n"
            "\n"
            "--wait follows the task to its end and fails early if the agent stops\n"
            "reporting. Exit codes of backup run --wait:\n"
            "  0  succeeded: every repository the policy requires holds the backup\n"
            "  1  failed (no required repository holds it), cancelled, the agent stopped\n"
            "     reporting, --wait-timeout passed, or the coordinator could not be asked\n"
            "  2  usage error (bad arguments, no admin token)\n"
            "  3  partial: complete in some required repositories, missing from others;\n"
            "     restorable from those that hold it, replication_gap fires and a copy\n"
            "     fills the gap when the repository is back (backups list: PARTIAL)\n"
            "--position takes a log position as the target's engine writes it (see\n"
            "`backup show`); --pgdata is an older name of --dir. --tablespace-map and\n"
            "--tablespace-map-all apply to engines with tablespaces. --host restores into\n"
            "a server over the network (engines that restore by dumps): new\n"
            "databases <name>S (--dbname-suffix, default _restored) or NAME (--into, a\n"
            "backup of one database), restored with --jobs N parallel jobs; DIR is then\n"
            "the scratch directory for the temporary archive (under restore_roots).\n"
            "\n"
            "Examples:\n"
            "  tidemarkctl backup run --target orders-db --type full --wait\n"
            "  tidemarkctl backups list --target orders-db\n"
            "  tidemarkctl restore --target orders-db --dir /srv/restore/orders --time "
            "'2026-12-07 09:30:00+00' --to staging-1 --wait\n");
}

static void json_backup(FILE *f, const Tidemark__BackupInfo *b)
{
    fputs("{\"id\":", f);
    tm_json_str(f, b->id);
    fputs(",\"target\":", f);
    tm_json_str(f, b->target);
    fprintf(f, ",\"type\":\"%s\",\"parent_id\":", tm_backup_type_name(b->type));
    tm_json_str(f, b->parent_id);
    fputs(",\"agent_id\":", f);
    tm_json_str(f, b->agent_id);
    fputs(",\"task_id\":", f);
    tm_json_str(f, b->task_id);
    fputs(",\"started_at\":", f);
    json_time(f, b->started_at);
    fputs(",\"finished_at\":", f);
    json_time(f, b->finished_at);
    fprintf(f, ",\"bytes\":%" PRIu64 ",\"stored_bytes\":%" PRIu64 ",\"files\":%u", b->bytes,
            b->stored_bytes, b->files);
    fputs(",\"start_position\":", f);
    tm_json_str(f, b->start_position);
    fputs(",\"stop_position\":", f);
    tm_json_str(f, b->stop_position);
    fputs(",\"stop_log\":", f);
    tm_json_str(f, b->stop_log);
    fprintf(f, ",\"chain\":%u,\"keep\":%s,\"partial\":%s,\"repositories\":[", b->chain,
            b->keep ? "true" : "false", b->partial ? "true" : "false");
    for (size_t i = 0; i < b->n_repositories; i++) {
        fputs(i ? "," : "", f);
        tm_json_str(f, b->repositories[i]);
    }
    fputs("],\"missing_repositories\":[", f);
    for (size_t i = 0; i < b->n_missing_repositories; i++) {
        fputs(i ? "," : "", f);
        tm_json_str(f, b->missing_repositories[i]);
    }
    fputs("],\"extra\":{", f);
    for (size_t i = 0; i < b->n_extra; i++) {
        fputs(i ? "," : "", f);
        tm_json_str(f, b->extra[i]->key);
        fputc(':', f);
        tm_json_str(f, b->extra[i]->value);
    }
    fputs("}}", f);
}

static void human_bytes(uint64_t n, char *out, size_t cap)
{
    const char *u[] = {"B", "KiB", "MiB", "GiB", "TiB"};
    double v = (double)n;
    int i = 0;
    while (v >= 1024 && i < 4) {
        v /= 1024;
        i++;
    }
    snprintf(out, cap, i ? "%.1f %s" : "%.0f %s", v, u[i]);
}

static int backups_list(ctl *c, int argc, char **argv)
{
    static const struct option opts[] = {
        {"target", required_argument, NULL, 't'},
        {"json", no_argument, NULL, 'j'},
        {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0},
    };
    Tidemark__ListBackupsRequest req = TIDEMARK__LIST_BACKUPS_REQUEST__INIT;
    optind = 0;
    int ch;
    while ((ch = getopt_long(argc, argv, "h", opts, NULL)) != -1) {
        switch (ch) {
        case 't':
            req.target = optarg;
            break;
        case 'j':
            c->json = 1;
            break;
        case 'h':
            backup_usage(stdout);
            return CTL_OK;
        default:
            backup_usage(stderr);
            return CTL_USAGE;
        }
    }
    Tidemark__ListBackupsResponse *resp = NULL;
    int rc = ctl_call(c, "Admin.ListBackups", &req.base,
                      &tidemark__list_backups_response__descriptor, (ProtobufCMessage **)&resp);
    if (rc != CTL_OK) {
        return rc;
    }
    if (c->json) {
        fputc('[', stdout);
        for (size_t i = 0; i < resp->n_backups; i++) {
            fputs(i ? "," : "", stdout);
            json_backup(stdout, resp->backups[i]);
        }
        fputs("]\n", stdout);
    } else {
        printf("%-20s %-28s %-12s %-21s %10s %10s %s\n", "TARGET", "BACKUP", "TYPE", "FINISHED",
               "SIZE", "STORED", "REPOSITORIES");
        for (size_t i = 0; i < resp->n_backups; i++) {
            const Tidemark__BackupInfo *b = resp->backups[i];
            char when[32], size[32], stored[32], repos[256] = "";
            tm_fmt_time(b->finished_at, when, sizeof(when));
            human_bytes(b->bytes, size, sizeof(size));
            human_bytes(b->stored_bytes, stored, sizeof(stored));
            for (size_t j = 0; j < b->n_repositories; j++) {
                size_t l = strlen(repos);
                snprintf(repos + l, sizeof(repos) - l, "%s%s", j ? "," : "", b->repositories[j]);
            }
            for (size_t j = 0; j < b->n_missing_repositories; j++) {
                size_t l = strlen(repos);
                snprintf(repos + l, sizeof(repos) - l, "%s%s",
                         j ? "," : " PARTIAL, missing: ", b->missing_repositories[j]);
            }
            printf("%-20s %-28s %-12s %-21s %10s %10s %s%s\n", b->target, b->id,
                   tm_backup_type_name(b->type), when, size, stored, repos,
                   b->keep ? " (kept)" : "");
        }
        if (resp->n_backups == 0) {
            printf("(no backups)\n");
        }
    }
    tidemark__list_backups_response__free_unpacked(resp, NULL);
    return CTL_OK;
}

static int backup_run(ctl *c, int argc, char **argv)
{
    static const struct option opts[] = {
        {"target", required_argument, NULL, 't'},
        {"type", required_argument, NULL, 'y'},
        {"wait", no_argument, NULL, 'w'},
        {"wait-timeout", required_argument, NULL, 'W'},
        {"json", no_argument, NULL, 'j'},
        {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0},
    };
    Tidemark__RunBackupRequest req = TIDEMARK__RUN_BACKUP_REQUEST__INIT;
    int wait = 0;
    uint32_t wait_s = 6 * 3600;
    req.has_type = 1;
    req.type = TIDEMARK__BACKUP_TYPE__FULL;
    optind = 0;
    int ch;
    while ((ch = getopt_long(argc, argv, "h", opts, NULL)) != -1) {
        switch (ch) {
        case 't':
            req.target = optarg;
            break;
        case 'y':
            if (strcmp(optarg, "full") == 0) {
                req.type = TIDEMARK__BACKUP_TYPE__FULL;
            } else if (strcmp(optarg, "incremental") == 0 || strcmp(optarg, "incr") == 0) {
                req.type = TIDEMARK__BACKUP_TYPE__INCREMENTAL;
            } else if (strcmp(optarg, "snapshot") == 0) {
                req.type = TIDEMARK__BACKUP_TYPE__SNAPSHOT;
            } else {
                fprintf(stderr, "tidemarkctl: --type must be full, incremental or snapshot\n");
                return CTL_USAGE;
            }
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
            backup_usage(stdout);
            return CTL_OK;
        default:
            backup_usage(stderr);
            return CTL_USAGE;
        }
    }
    if (req.target == NULL) {
        fprintf(stderr, "tidemarkctl: backup run needs --target\n");
        return CTL_USAGE;
    }
    char id[128], what[200];
    snprintf(what, sizeof(what), "%s backup of %s", tm_backup_type_name(req.type), req.target);
    int rc = ctl_submit_task(c, "Admin.RunBackup", &req.base, what, !wait, id, sizeof(id));
    if (rc != CTL_OK) {
        return rc;
    }
    return wait ? ctl_wait_task(c, id, wait_s) : CTL_OK;
}

static int backup_show(ctl *c, int argc, char **argv)
{
    static const struct option opts[] = {
        {"target", required_argument, NULL, 't'},
        {"json", no_argument, NULL, 'j'},
        {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0},
    };
    Tidemark__BackupRef ref = TIDEMARK__BACKUP_REF__INIT;
    optind = 0;
    int ch;
    while ((ch = getopt_long(argc, argv, "h", opts, NULL)) != -1) {
        switch (ch) {
        case 't':
            ref.target = optarg;
            break;
        case 'j':
            c->json = 1;
            break;
        case 'h':
            backup_usage(stdout);
            return CTL_OK;
        default:
            backup_usage(stderr);
            return CTL_USAGE;
        }
    }
    if (optind + 1 != argc) {
        fprintf(stderr, "tidemarkctl: backup show takes one backup id\n");
        return CTL_USAGE;
    }
    ref.id = argv[optind];
    Tidemark__BackupResponse *resp = NULL;
    int rc = ctl_call(c, "Admin.ShowBackup", &ref.base, &tidemark__backup_response__descriptor,
                      (ProtobufCMessage **)&resp);
    if (rc != CTL_OK) {
        return rc;
    }
    const Tidemark__BackupInfo *b = resp->backup;
    if (b == NULL) {
        tidemark__backup_response__free_unpacked(resp, NULL);
        return CTL_FAIL;
    }
    if (c->json) {
        json_backup(stdout, b);
        fputc('\n', stdout);
    } else {
        char s[32], e[32], size[32], stored[32];
        tm_fmt_time(b->started_at, s, sizeof(s));
        tm_fmt_time(b->finished_at, e, sizeof(e));
        human_bytes(b->bytes, size, sizeof(size));
        human_bytes(b->stored_bytes, stored, sizeof(stored));
        printf("backup:       %s\ntarget:       %s\ntype:         %s\n", b->id, b->target,
               tm_backup_type_name(b->type));
        printf("parent:       %s\n", b->parent_id && b->parent_id[0] ? b->parent_id : "-");
        printf("started:      %s\nfinished:     %s\n", s, e);
        printf("size:         %s read, %s stored, %u files\n", size, stored, b->files);
        if (b->start_position != NULL && b->start_position[0]) {
            printf("position:     %s .. %s (chain %u)\n", b->start_position,
                   b->stop_position ? b->stop_position : "?", b->chain);
        }
        printf("repositories:");
        for (size_t i = 0; i < b->n_repositories; i++) {
            printf(" %s", b->repositories[i]);
        }
        if (b->partial) {
            printf("\nstate:        PARTIAL (restorable from the above; missing from");
            for (size_t i = 0; i < b->n_missing_repositories; i++) {
                printf(" %s", b->missing_repositories[i]);
            }
            printf(" until a copy fills the gap)");
        }
        printf("\nagent:        %s\ntask:         %s\n", b->agent_id ? b->agent_id : "-",
               b->task_id ? b->task_id : "-");
        for (size_t i = 0; i < b->n_extra; i++) {
            printf("%-13s %s\n", b->extra[i]->key, b->extra[i]->value);
        }
    }
    tidemark__backup_response__free_unpacked(resp, NULL);
    return CTL_OK;
}

int ctl_restore(ctl *c, int argc, char **argv)
{
    static const struct option opts[] = {
        {"target", required_argument, NULL, 't'},
        {"to", required_argument, NULL, 'a'},
        {"dir", required_argument, NULL, 'd'},
        {"pgdata", required_argument, NULL, 'd'},
        {"time", required_argument, NULL, 'T'},
        {"backup", required_argument, NULL, 'b'},
        {"position", required_argument, NULL, 'l'},
        {"lsn", required_argument, NULL, 'l'}, /* older name of --position */
        {"immediate", no_argument, NULL, 'i'},
        {"delta", no_argument, NULL, 'D'},
        {"start", no_argument, NULL, 's'},
        {"port", required_argument, NULL, 'p'},
        {"tablespace-map", required_argument, NULL, 'm'},
        {"tablespace-map-all", required_argument, NULL, 'M'},
        {"host", required_argument, NULL, 'H'},
        {"into", required_argument, NULL, 'I'},
        {"dbname-suffix", required_argument, NULL, 'S'},
        {"jobs", required_argument, NULL, 'J'},
        {"wait", no_argument, NULL, 'w'},
        {"wait-timeout", required_argument, NULL, 'W'},
        {"json", no_argument, NULL, 'j'},
        {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0},
    };
    Tidemark__RestoreRequest req = TIDEMARK__RESTORE_REQUEST__INIT;
    Tidemark__RestoreSpec spec = TIDEMARK__RESTORE_SPEC__INIT;
    req.spec = &spec;
    char *ts_map[64];
    spec.tablespace_map = ts_map;
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
        case 'd':
            spec.dir = optarg;
            break;
        case 'T':
            spec.target_time = optarg;
            break;
        case 'b':
            spec.backup_id = optarg;
            break;
        case 'l':
            spec.position = optarg;
            break;
        case 'i':
            spec.has_immediate = spec.immediate = 1;
            break;
        case 'D':
            spec.has_delta = spec.delta = 1;
            break;
        case 's':
            spec.has_start = spec.start = 1;
            break;
        case 'p':
            spec.has_port = 1;
            spec.port = (uint32_t)strtoul(optarg, NULL, 10);
            break;
        case 'm':
            if (spec.n_tablespace_map == sizeof(ts_map) / sizeof(ts_map[0])) {
                fprintf(stderr, "tidemarkctl: too many --tablespace-map\n");
                return CTL_USAGE;
            }
            ts_map[spec.n_tablespace_map++] = optarg;
            break;
        case 'M':
            spec.tablespace_map_all = optarg;
            break;
        case 'H':
            spec.host = optarg;
            break;
        case 'I':
            spec.into = optarg;
            break;
        case 'S':
            spec.name_suffix = optarg;
            break;
        case 'J':
            spec.has_jobs = 1;
            spec.jobs = (uint32_t)strtoul(optarg, NULL, 10);
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
            backup_usage(stdout);
            return CTL_OK;
        default:
            backup_usage(stderr);
            return CTL_USAGE;
        }
    }
    if (req.target == NULL || spec.dir == NULL) {
        fprintf(stderr, "tidemarkctl: restore needs --target and --dir\n");
        return CTL_USAGE;
    }
    char id[128], what[200];
    snprintf(what, sizeof(what), "restore of %s", req.target);
    int rc = ctl_submit_task(c, "Admin.Restore", &req.base, what, !wait, id, sizeof(id));
    if (rc != CTL_OK) {
        return rc;
    }
    return wait ? ctl_wait_task(c, id, wait_s) : CTL_OK;
}

int ctl_backup(ctl *c, int argc, char **argv)
{
    if (argc < 2 || strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0) {
        backup_usage(argc < 2 ? stderr : stdout);
        return argc < 2 ? CTL_USAGE : CTL_OK;
    }
    if (strcmp(argv[0], "backups") == 0) {
        if (strcmp(argv[1], "list") == 0) {
            return backups_list(c, argc - 1, argv + 1);
        }
    } else if (strcmp(argv[1], "run") == 0) {
        return backup_run(c, argc - 1, argv + 1);
    } else if (strcmp(argv[1], "show") == 0) {
        return backup_show(c, argc - 1, argv + 1);
    } else if (strcmp(argv[1], "keep") == 0 || strcmp(argv[1], "unkeep") == 0) {
        return ctl_backup_keep(c, argc - 1, argv + 1); /* permanent hold (retention.c) */
    } else if (strcmp(argv[1], "list") == 0) {
        return backups_list(c, argc - 1, argv + 1);
    }
    fprintf(stderr, "tidemarkctl: unknown command '%s %s'\n", argv[0], argv[1]);
    backup_usage(stderr);
    return CTL_USAGE;
}
