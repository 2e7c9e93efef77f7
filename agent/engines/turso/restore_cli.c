/*
 * restore_cli.c - `tidemark-agent restore` for a Turso target (the engine's
 * restore_cli): the options and the report; the work is restore.c's.
 */
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "agent/engines/turso/turso.h"
#include "common/config.h"
#include "common/json.h"

const char tm_turso_restore_usage[] =
    "           (--output FILE | --dir DIR | --to-turso NEW [--group G])\n"
    "           [--backup ID | --time 'YYYY-MM-DD HH:MM:SS+00'] [--database DB] [--json]\n"
    "\n"
    "Restore an off-provider copy of a Turso target (an SQL dump per database):\n"
    "--output FILE writes a local SQLite file (checked with integrity_check, made\n"
    "visible by an atomic rename, never over an existing file); --dir DIR writes\n"
    "DIR/<database>.db for each database of the backup; --to-turso NEW creates the\n"
    "Turso database NEW (in G, else the source's group) and loads the dump into it\n"
    "(deleted again if the load fails). --time picks the newest backup finished at\n"
    "or before the time. A group target's backup holds several databases: name one\n"
    "with --database.\n";

int tm_turso_restore_cli(const tm_agent_conf *conf, int argc, char **argv)
{
    static const struct option opts[] = {
        {"target", required_argument, NULL, 't'},
        {"output", required_argument, NULL, 'o'},
        {"dir", required_argument, NULL, 'd'},
        {"backup", required_argument, NULL, 'b'},
        {"time", required_argument, NULL, 'T'},
        {"database", required_argument, NULL, 'D'},
        {"to-turso", required_argument, NULL, 'n'},
        {"group", required_argument, NULL, 'g'},
        {"json", no_argument, NULL, 'j'},
        {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0},
    };
    tm_turso_restore_opts o = {0};
    int json = 0;
    optind = 1;
    int ch;
    while ((ch = getopt_long(argc, argv, "", opts, NULL)) != -1) {
        switch (ch) {
        case 't':
            o.target = optarg;
            break;
        case 'o':
            o.output = optarg;
            break;
        case 'd':
            o.dir = optarg;
            break;
        case 'b':
            o.backup_id = optarg;
            break;
        case 'T':
            o.time = optarg;
            break;
        case 'D':
            o.database = optarg;
            break;
        case 'n':
            o.to_turso = optarg;
            break;
        case 'g':
            o.group = optarg;
            break;
        case 'j':
            json = 1;
            break;
        case 'h':
            printf("Usage: tidemark-agent restore --target NAME\n%s", tm_turso_restore_usage);
            return 0;
        default:
            fprintf(stderr, "Usage: tidemark-agent restore --target NAME\n%s",
                    tm_turso_restore_usage);
            return 2;
        }
    }
    int dests = (o.output != NULL) + (o.dir != NULL) + (o.to_turso != NULL);
    if (optind < argc || o.target == NULL || dests != 1) {
        fprintf(stderr, "tidemark-agent restore: --target and exactly one of --output, --dir "
                        "and --to-turso are required\n");
        return 2;
    }
    if (o.backup_id != NULL && o.time != NULL) {
        fprintf(stderr, "tidemark-agent restore: --backup and --time exclude each other\n");
        return 2;
    }
    for (size_t i = 0; i < conf->n_targets; i++) {
        if (strcmp(conf->targets[i].name, o.target) == 0) {
            o.tc = tm_turso_target(&conf->targets[i]);
        }
    }
    tm_err err = {0};
    tm_turso_restore_report rep;
    int r = tm_turso_restore(conf, &o, &rep, &err);
    if (r != TM_OK) {
        fprintf(stderr, "tidemark-agent restore: %s\n", err.msg);
        return r == TM_ECONFIG || r == TM_EINVAL ? 2 : 1;
    }
    const char *to = o.to_turso != NULL ? o.to_turso : o.output != NULL ? o.output : o.dir;
    if (json) {
        printf("{\"backup_id\":");
        tm_json_str(stdout, rep.backup_id);
        printf(",\"database\":");
        tm_json_str(stdout, rep.database);
        printf(",\"to\":");
        tm_json_str(stdout, to);
        printf(",\"bytes\":%llu,\"statements\":%llu,\"tables\":%llu,\"rows\":%llu,"
               "\"total_s\":%.3f}\n",
               (unsigned long long)rep.bytes, (unsigned long long)rep.statements,
               (unsigned long long)rep.tables, (unsigned long long)rep.rows, rep.total_s);
        return 0;
    }
    printf("restored %s of %s into %s\n", rep.backup_id, o.target, to);
    printf("  sql:              %llu bytes, %llu statements\n", (unsigned long long)rep.bytes,
           (unsigned long long)rep.statements);
    if (o.to_turso == NULL) {
        printf("  checked:          integrity_check ok, %llu tables, %llu rows\n",
               (unsigned long long)rep.tables, (unsigned long long)rep.rows);
    }
    printf("  total:            %.2f s\n", rep.total_s);
    return 0;
}
