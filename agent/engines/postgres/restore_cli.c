/*
 * restore_cli.c - `tidemark-agent restore` for a PostgreSQL target
 * (tm_engine.restore_cli; agent/restore_cmd.c picks the engine): a restore
 * run by hand on the database host, from the repositories alone (the
 * coordinator may be down). The work is in restore.c; this file is the
 * command line and the report.
 */
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "agent/engines/postgres/pg.h"
#include "agent/restore_cmd.h"
#include "common/config.h"

const char tm_pg_restore_usage[] =
    "           [--time 'YYYY-MM-DD HH:MM:SS+00' | --backup ID | --lsn LSN | --immediate]\n"
    "           [--delta] [--start [--port N]] [--owner USER]\n"
    "           [--tablespace-map OID=DIR ...] [--tablespace-map-all DIR]\n"
    "           [--waldir DIR]\n"
    "\n"
    "Restore a PostgreSQL backup of NAME from the configured repositories into DIR.\n"
    "Without a target the newest backup is restored and recovery replays all the\n"
    "archived WAL. --time/--lsn pick the newest backup that ends before the target\n"
    "and stop recovery there; --backup restores that backup (with --immediate: to\n"
    "its consistent point). --delta reuses the files of an existing DIR that match\n"
    "the backup and removes the others. --start starts PostgreSQL, waits for the\n"
    "end of recovery and runs a verification query. As root, DIR is given to\n"
    "--owner (default postgres). Tablespaces go back where they were, unless\n"
    "relocated: --tablespace-map OID=DIR (repeatable) or --tablespace-map-all DIR\n"
    "(each to DIR/OID); their directories must be empty (or --delta).\n"
    "pg_wal is restored as a directory inside DIR, also when the source had it\n"
    "on another disk (initdb --waldir); --waldir DIR (empty) makes it a link there.\n"
    "Every file is written beneath DIR (and the mapped directories); a manifest\n"
    "path or link that would leave them, or a DIR a running server uses, is\n"
    "refused. --pgdata DIR is the older name of --dir DIR.\n";

static void usage(FILE *f)
{
    fprintf(f,
            "Usage: tidemark-agent [--config FILE] restore --target NAME --dir DIR\n%s\n"
            "Exit codes: 0 restored, 1 failed, 2 usage or configuration error.\n",
            tm_pg_restore_usage);
}

int tm_pg_restore_cli(const tm_agent_conf *conf, int argc, char **argv)
{
    static const struct option opts[] = {
        {"target", required_argument, NULL, 't'},
        {"dir", required_argument, NULL, 'd'},
        {"pgdata", required_argument, NULL, 'd'}, /* the older name of --dir */
        {"time", required_argument, NULL, 'T'},
        {"backup", required_argument, NULL, 'b'},
        {"lsn", required_argument, NULL, 'l'},
        {"immediate", no_argument, NULL, 'i'},
        {"delta", no_argument, NULL, 'D'},
        {"start", no_argument, NULL, 's'},
        {"port", required_argument, NULL, 'p'},
        {"owner", required_argument, NULL, 'o'},
        {"tablespace-map", required_argument, NULL, 'm'},
        {"tablespace-map-all", required_argument, NULL, 'M'},
        {"waldir", required_argument, NULL, 'W'},
        {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0},
    };
    enum { MAX_TS_MAP = 64 };
    const char *ts_map[MAX_TS_MAP];
    tm_pg_restore_opts o = {.ts_map = ts_map};
    optind = 1;
    int ch;
    while ((ch = getopt_long(argc, argv, "h", opts, NULL)) != -1) {
        switch (ch) {
        case 't':
            o.target = optarg;
            break;
        case 'd':
            o.pgdata = optarg;
            break;
        case 'T':
            o.time = optarg;
            break;
        case 'b':
            o.backup_id = optarg;
            break;
        case 'l':
            o.lsn = optarg;
            break;
        case 'i':
            o.immediate = 1;
            break;
        case 'D':
            o.delta = 1;
            break;
        case 's':
            o.start = 1;
            break;
        case 'p':
            if (tm_restore_cli_port(optarg, &o.port) != 0) {
                return 2;
            }
            break;
        case 'o':
            o.owner = optarg;
            break;
        case 'm':
            if (o.n_ts_map == MAX_TS_MAP) {
                fprintf(stderr, "tidemark-agent restore: more than %d --tablespace-map\n",
                        MAX_TS_MAP);
                return 2;
            }
            ts_map[o.n_ts_map++] = optarg;
            break;
        case 'M':
            o.ts_map_all = optarg;
            break;
        case 'W':
            o.waldir = optarg;
            break;
        case 'h':
            usage(stdout);
            return 0;
        default:
            usage(stderr);
            return 2;
        }
    }
    if (optind < argc || o.target == NULL || o.pgdata == NULL) {
        fprintf(stderr, "tidemark-agent restore: --target and --dir (--pgdata) are required\n");
        usage(stderr);
        return 2;
    }
    tm_err err = {0};
    tm_pg_restore_report rep;
    int rc = tm_pg_restore(conf, &o, &rep, &err);
    if (rc != TM_OK) {
        fprintf(stderr, "tidemark-agent restore: %s\n", err.msg);
        return rc == TM_ECONFIG || rc == TM_EINVAL ? 2 : 1;
    }
    printf("restored %s of %s into %s\n", rep.backup_id, o.target, o.pgdata);
    printf("  chain:            %s\n", rep.chain);
    printf("  files:            %llu written (%llu bytes), %llu reused, %llu removed\n",
           (unsigned long long)rep.files, (unsigned long long)rep.bytes,
           (unsigned long long)rep.reused_files, (unsigned long long)rep.removed);
    printf("  recovery target:  %s\n", rep.recovery_target);
    printf("  restore files:    %.2f s\n", rep.files_s);
    if (o.start) {
        printf("  recovery:         %.2f s\n", rep.recovery_s);
        printf("  verify:           %s\n", rep.verify);
    }
    printf("  total:            %.2f s\n", rep.total_s);
    return 0;
}
