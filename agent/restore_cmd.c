/*
 * restore_cmd.c - `tidemark-agent restore`: a restore run by hand on the
 * database host, from the repositories alone (the coordinator may be down).
 * The work is the PostgreSQL engine's (agent/engines/postgres/restore.c);
 * this file is the command line and the report.
 */
#include "agent/restore_cmd.h"

#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "agent/engines/postgres/pg.h"
#include "agent/engines/redis/redis.h"
#include "common/config.h"
#include "common/log.h"

static void usage(FILE *f)
{
    fprintf(f,
            "Usage: tidemark-agent [--config FILE] restore --target NAME --pgdata DIR\n"
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
            "refused.\n"
            "\n"
            "       tidemark-agent [--config FILE] restore --target NAME --dir DIR\n"
            "           [--backup ID | --time 'YYYY-MM-DD HH:MM:SS+00'] [--start [--port N]]\n"
            "\n"
            "Restore a Redis snapshot of NAME (the newest, or ID) into DIR/dump.rdb; DIR\n"
            "must not hold a dump.rdb nor be used by a running server. --start starts\n"
            "redis-server on 127.0.0.1:N (default 6379) on it and waits until it has\n"
            "loaded the dataset. --time needs shipped AOF and is refused while the\n"
            "target's window is snapshot-only.\n"
            "\n"
            "Exit codes: 0 restored, 1 failed, 2 usage or configuration error.\n");
}

/* --dir: a Redis restore (the options it shares with PostgreSQL's are
 * read from o). */
static int redis_restore(const char *config, const tm_pg_restore_opts *po, const char *dir)
{
    if (po->lsn != NULL || po->immediate || po->delta || po->n_ts_map || po->ts_map_all ||
        po->waldir != NULL || po->owner != NULL) {
        fprintf(stderr, "tidemark-agent restore: --dir (Redis) takes only --backup, --time, "
                        "--start and --port\n");
        return 2;
    }
    tm_err err = {0};
    tm_agent_conf *conf = NULL;
    if (tm_agent_conf_load(config, &conf, &err) != TM_OK) {
        fprintf(stderr, "%s\n", err.msg);
        return 2;
    }
    tm_log_set_level(conf->log_level);
    const tm_redis_target_conf *rc = NULL;
    for (size_t i = 0; i < conf->n_targets; i++) {
        if (strcmp(conf->targets[i].name, po->target) == 0) {
            rc = tm_redis_target(&conf->targets[i]);
            if (rc == NULL) {
                fprintf(stderr,
                        "tidemark-agent restore: target %s is not a Redis target (use "
                        "--pgdata)\n",
                        po->target);
                tm_agent_conf_free(conf);
                return 2;
            }
        }
    }
    tm_redis_restore_opts o = {
        .target = po->target,
        .dir = dir,
        .backup_id = po->backup_id,
        .time = po->time,
        .start = po->start,
        .port = po->port,
        .server_bin = rc != NULL ? rc->server_bin : NULL,
    };
    tm_redis_restore_report rep;
    int r = tm_redis_restore(conf, &o, &rep, &err);
    if (r != TM_OK) {
        fprintf(stderr, "tidemark-agent restore: %s\n", err.msg);
        tm_agent_conf_free(conf);
        return r == TM_ECONFIG || r == TM_EINVAL ? 2 : 1;
    }
    char ks[TM_REDIS_MAX_DBS * 64];
    tm_redis_keyspace_fmt(&rep.checked, ks, sizeof(ks));
    printf("restored %s of %s into %s\n", rep.backup_id, o.target, dir);
    printf("  rdb:              %llu bytes, version %d, checked\n", (unsigned long long)rep.bytes,
           rep.rdb_version);
    printf("  keyspace:         %s\n", ks);
    printf("  restore files:    %.2f s\n", rep.files_s);
    if (o.start) {
        printf("  server:           127.0.0.1:%u pid %d, loaded in %.2f s\n",
               o.port ? o.port : 6379, (int)rep.pid, rep.start_s);
    }
    printf("  total:            %.2f s\n", rep.total_s);
    tm_agent_conf_free(conf);
    return 0;
}

int tm_restore_cmd(const char *config, int argc, char **argv)
{
    static const struct option opts[] = {
        {"target", required_argument, NULL, 't'},
        {"pgdata", required_argument, NULL, 'd'},
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
        {"dir", required_argument, NULL, 'R'},
        {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0},
    };
    enum { MAX_TS_MAP = 64 };
    const char *ts_map[MAX_TS_MAP];
    tm_pg_restore_opts o = {.ts_map = ts_map};
    const char *redis_dir = NULL;
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
        case 'p': {
            char *end = NULL;
            unsigned long p = strtoul(optarg, &end, 10);
            if (end == optarg || *end != '\0' || p < 1 || p > 65535) {
                fprintf(stderr, "tidemark-agent restore: --port %s is not a port (1 .. 65535)\n",
                        optarg);
                return 2;
            }
            o.port = (uint32_t)p;
            break;
        }
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
        case 'R':
            redis_dir = optarg;
            break;
        case 'h':
            usage(stdout);
            return 0;
        default:
            usage(stderr);
            return 2;
        }
    }
    if (redis_dir != NULL && optind == argc && o.target != NULL && o.pgdata == NULL) {
        return redis_restore(config, &o, redis_dir);
    }
    if (optind < argc || o.target == NULL || o.pgdata == NULL) {
        fprintf(stderr, "tidemark-agent restore: --target and --pgdata are required\n");
        usage(stderr);
        return 2;
    }
    tm_err err = {0};
    tm_agent_conf *conf = NULL;
    if (tm_agent_conf_load(config, &conf, &err) != TM_OK) {
        fprintf(stderr, "%s\n", err.msg);
        return 2;
    }
    tm_log_set_level(conf->log_level);
    tm_pg_restore_report rep;
    int rc = tm_pg_restore(conf, &o, &rep, &err);
    if (rc != TM_OK) {
        fprintf(stderr, "tidemark-agent restore: %s\n", err.msg);
        tm_agent_conf_free(conf);
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
    tm_agent_conf_free(conf);
    return 0;
}
