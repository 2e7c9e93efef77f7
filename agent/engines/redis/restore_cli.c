/*
 * restore_cli.c - `tidemark-agent restore` for a Redis target (the engine's
 * restore_cli): the options and the report; the work is restore.c's.
 */
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "agent/engines/redis/redis.h"
#include "agent/restore_cmd.h"
#include "common/config.h"

const char tm_redis_restore_usage[] =
    "           [--backup ID | --time 'YYYY-MM-DD HH:MM:SS+00'] [--start [--port N]]\n"
    "\n"
    "Restore a Redis snapshot of NAME (the newest, or ID) into DIR/dump.rdb, checked\n"
    "(structure and CRC-64) as it is written. --time restores from the shipped AOF\n"
    "instead: the newest base not newer than the time and its incr data cut at it,\n"
    "into DIR/appendonlydir; refused loudly when no AOF with timestamps was shipped\n"
    "(the window is snapshot-only). DIR must not hold a dump.rdb or appendonlydir,\n"
    "nor be used by a running server. --start starts redis-server on 127.0.0.1:N\n"
    "(default 6379) on the restored files and waits until it has loaded them.\n";

int tm_redis_restore_cli(const tm_agent_conf *conf, int argc, char **argv)
{
    static const struct option opts[] = {
        {"target", required_argument, NULL, 't'},
        {"dir", required_argument, NULL, 'd'},
        {"backup", required_argument, NULL, 'b'},
        {"time", required_argument, NULL, 'T'},
        {"start", no_argument, NULL, 's'},
        {"port", required_argument, NULL, 'p'},
        {NULL, 0, NULL, 0},
    };
    tm_redis_restore_opts o = {0};
    optind = 1;
    int ch;
    while ((ch = getopt_long(argc, argv, "", opts, NULL)) != -1) {
        switch (ch) {
        case 't':
            o.target = optarg;
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
        case 's':
            o.start = 1;
            break;
        case 'p':
            if (tm_restore_cli_port(optarg, &o.port) != 0) {
                return 2;
            }
            break;
        default:
            fprintf(stderr, "Usage: tidemark-agent restore --target NAME --dir DIR\n%s",
                    tm_redis_restore_usage);
            return 2;
        }
    }
    if (optind < argc || o.target == NULL || o.dir == NULL) {
        fprintf(stderr, "tidemark-agent restore: --target and --dir are required\n");
        return 2;
    }
    if (o.backup_id != NULL && o.time != NULL) {
        fprintf(stderr, "tidemark-agent restore: --backup and --time exclude each other\n");
        return 2;
    }
    for (size_t i = 0; i < conf->n_targets; i++) {
        const tm_redis_target_conf *rc = tm_redis_target(&conf->targets[i]);
        if (rc != NULL && strcmp(conf->targets[i].name, o.target) == 0) {
            o.server_bin = rc->server_bin;
        }
    }
    tm_err err = {0};
    tm_redis_restore_report rep;
    int r = tm_redis_restore(conf, &o, &rep, &err);
    if (r != TM_OK) {
        fprintf(stderr, "tidemark-agent restore: %s\n", err.msg);
        return r == TM_ECONFIG || r == TM_EINVAL ? 2 : 1;
    }
    char ks[TM_REDIS_MAX_DBS * 64];
    tm_redis_keyspace_fmt(&rep.checked, ks, sizeof(ks));
    printf("restored %s of %s into %s\n", rep.backup_id, o.target, o.dir);
    if (o.time != NULL) {
        printf("  aof:              %llu bytes, cut at %s\n", (unsigned long long)rep.bytes,
               o.time);
    } else {
        printf("  rdb:              %llu bytes, version %d, checked\n",
               (unsigned long long)rep.bytes, rep.rdb_version);
        printf("  keyspace:         %s\n", ks);
    }
    printf("  restore files:    %.2f s\n", rep.files_s);
    if (o.start) {
        printf("  server:           127.0.0.1:%u pid %d, loaded in %.2f s\n",
               o.port ? o.port : 6379, (int)rep.pid, rep.start_s);
    }
    printf("  total:            %.2f s\n", rep.total_s);
    return 0;
}
