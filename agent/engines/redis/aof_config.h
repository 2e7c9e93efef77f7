/*
 * aof_config.h - what a Redis server says about its AOF: whether it is on,
 * whether it writes "#TS:" annotations (aof-timestamp-enabled: without them
 * a restore can only go to a snapshot, not to a time), and where the AOF
 * directory and manifest are. One CONFIG GET; ACL: +config|get.
 */
#ifndef TM_REDIS_AOF_CONFIG_H
#define TM_REDIS_AOF_CONFIG_H

#include "agent/engines/redis/aof_manifest.h"
#include "agent/engines/redis/conn.h"

typedef struct tm_aof_config {
    int appendonly;                           /* appendonly yes */
    int timestamps;                           /* aof-timestamp-enabled yes */
    int rdb_preamble;                         /* aof-use-rdb-preamble yes: bases are .base.rdb */
    char dir[4096];                           /* CONFIG GET dir (the server's working directory) */
    char dirname[TM_AOF_NAME_MAX + 1];        /* appenddirname */
    char filename[TM_AOF_NAME_MAX + 1];       /* appendfilename */
    char aof_dir[4096 + TM_AOF_NAME_MAX + 2]; /* dir/dirname */
    char manifest[TM_AOF_NAME_MAX + 1];       /* filename.manifest */
} tm_aof_config;

/* Read it from a server; *verdict as for tm_redis_command. */
int tm_aof_config_get(const tm_redis_conn_opts *o, tm_aof_config *out, tm_redis_verdict *verdict,
                      tm_err *err);

/* What a status line says about the restorable window: "pitr" when the AOF
 * is on with timestamps, "snapshot-only" otherwise. */
const char *tm_aof_config_mode(const tm_aof_config *c);

#endif
