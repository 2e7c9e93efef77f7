/*
 * wal_cmd.c - the WAL commands of tidemark-agent: argument parsing and
 * output only; the work is in wal_push.c, wal_get.c, wal_archiver.c and
 * wal_show.c.
 *
 *   wal-push --target T [--async] [--quorum N] %p       archive_command
 *   wal-get  --target T [--prefetch N] %f %p            restore_command
 *   wal-show --target T [--pgdata DIR] [--json]         ranges, gaps, queue, lag
 *   wal-archiver --target T --pgdata DIR [--workers N] [--once]
 *
 * Exit codes: wal-push 0 durable, 1 not durable (PostgreSQL keeps the file
 * and retries), 2 usage/configuration; wal-get: wal_get.h; wal-show 0 ok,
 * 1 a repository could not be listed or shows a gap, 2 usage.
 */
#include "agent/engines/postgres/wal_cmd.h"
#include "agent/engine.h"

#include <getopt.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "agent/engines/postgres/wal_archiver.h"
#include "agent/engines/postgres/wal_get.h"
#include "agent/engines/postgres/wal_push.h"
#include "agent/engines/postgres/wal_show.h"
#include "agent/engines/postgres/wal_spool.h"
#include "agent/repo/repository.h"
#include "common/config.h"
#include "common/log.h"

#define EXIT_OK 0
#define EXIT_FAIL 1
#define EXIT_USAGE 2

static const char *const usage_text =
    "Usage: tidemark-agent [--config FILE] COMMAND --target T [options] ARGS\n"
    "\n"
    "PostgreSQL WAL archiving to every repository of the configuration.\n"
    "\n"
    "  wal-push --target T [--async] [--quorum N] PATH\n"
    "      archive_command = 'tidemark-agent --config F wal-push --target T %p'\n"
    "      Exit 0 only when the file is durable in every repository (or N of them).\n"
    "      The same content pushed again succeeds; different content under an\n"
    "      archived name fails naming file and repository. --async: answer at once\n"
    "      for files the wal-archiver already pushed (never for local-only copies).\n"
    "  wal-get --target T [--prefetch N] [--verbose] FILE PATH\n"
    "      restore_command = 'tidemark-agent --config F wal-get --target T %f %p'\n"
    "      Exit 0 fetched and verified; 1 not archived (silent); 2 usage;\n"
    "      128 copies exist but failed their checks or no repository answered\n"
    "      (PostgreSQL then stops recovery rather than end it early).\n"
    "      Prefetches the next N segments (default 8, 0 = off) in the background.\n"
    "  wal-show --target T [--pgdata DIR] [--json]\n"
    "      Archived ranges per timeline and repository, gaps, newest file and its\n"
    "      time, archiver queue depth and archive lag.\n"
    "  wal-archiver --target T --pgdata DIR [--workers N] [--once] [--quorum N]\n"
    "      Async mode: push every pg_wal/archive_status/*.ready file with N\n"
    "      parallel workers (default 4) ahead of archive_command.\n";

enum {
    OPT_JSON = 256,
    OPT_ASYNC,
    OPT_QUORUM,
    OPT_PREFETCH,
    OPT_PGDATA,
    OPT_WORKERS,
    OPT_ONCE,
    OPT_VERBOSE,
    OPT_PREFETCH_ONLY,
    OPT_SEGSIZE,
    OPT_INTERVAL
};

static int load_conf(const char *config, tm_agent_conf **conf)
{
    tm_err err = {0};
    tm_config_agent_offline(true);
    if (tm_agent_conf_load(config, conf, &err) != TM_OK) {
        fprintf(stderr, "%s\n", err.msg);
        return EXIT_USAGE;
    }
    tm_log_set_level((*conf)->log_level);
    return EXIT_OK;
}

static volatile sig_atomic_t g_stop;

static void on_signal(int sig)
{
    (void)sig;
    g_stop = 1;
}

int tm_wal_cmd(const char *config, int argc, char **argv)
{
    static const struct option lo[] = {{"target", required_argument, NULL, 't'},
                                       {"async", no_argument, NULL, OPT_ASYNC},
                                       {"quorum", required_argument, NULL, OPT_QUORUM},
                                       {"prefetch", required_argument, NULL, OPT_PREFETCH},
                                       {"prefetch-only", no_argument, NULL, OPT_PREFETCH_ONLY},
                                       {"segment-size", required_argument, NULL, OPT_SEGSIZE},
                                       {"pgdata", required_argument, NULL, OPT_PGDATA},
                                       {"workers", required_argument, NULL, OPT_WORKERS},
                                       {"interval-ms", required_argument, NULL, OPT_INTERVAL},
                                       {"once", no_argument, NULL, OPT_ONCE},
                                       {"json", no_argument, NULL, OPT_JSON},
                                       {"verbose", no_argument, NULL, OPT_VERBOSE},
                                       {"help", no_argument, NULL, 'h'},
                                       {NULL, 0, NULL, 0}};
    const char *cmd = argv[0], *target = NULL, *pgdata = NULL;
    int async = 0, json = 0, once = 0, verbose = 0, prefetch = 8, workers = 4, pf_only = 0;
    int interval = 200;
    long quorum = 0;
    unsigned long long seg_size = 16ull << 20;
    int ch;
    optind = 1;
    while ((ch = getopt_long(argc, argv, "+t:h", lo, NULL)) != -1) {
        switch (ch) {
        case 't':
            target = optarg;
            break;
        case OPT_ASYNC:
            async = 1;
            break;
        case OPT_QUORUM:
            quorum = strtol(optarg, NULL, 10);
            break;
        case OPT_PREFETCH:
            prefetch = atoi(optarg);
            break;
        case OPT_PREFETCH_ONLY:
            pf_only = 1;
            break;
        case OPT_SEGSIZE:
            seg_size = strtoull(optarg, NULL, 10);
            break;
        case OPT_PGDATA:
            pgdata = optarg;
            break;
        case OPT_WORKERS:
            workers = atoi(optarg);
            break;
        case OPT_INTERVAL:
            interval = atoi(optarg);
            break;
        case OPT_ONCE:
            once = 1;
            break;
        case OPT_JSON:
            json = 1;
            break;
        case OPT_VERBOSE:
            verbose = 1;
            break;
        case 'h':
            fputs(usage_text, stdout);
            return EXIT_OK;
        default:
            fputs(usage_text, stderr);
            return EXIT_USAGE;
        }
    }
    if (target == NULL || !tm_repo_valid_name(target)) {
        fprintf(stderr,
                "tidemark-agent %s: --target NAME is required (1 to 64 of "
                "[A-Za-z0-9._-])\n",
                cmd);
        return EXIT_USAGE;
    }
    if (quorum < 0 || prefetch < 0 || prefetch > 256 || workers < 1 || workers > 64) {
        fprintf(stderr,
                "tidemark-agent %s: --quorum >= 0, --prefetch 0..256, --workers "
                "1..64\n",
                cmd);
        return EXIT_USAGE;
    }
    int nargs = argc - optind;
    char **args = argv + optind;
    tm_agent_conf *conf = NULL;
    int ex;

    if (strcmp(cmd, "wal-push") == 0) {
        if (nargs != 1) {
            fprintf(stderr, "tidemark-agent wal-push: expected one PATH (%%p)\n");
            return EXIT_USAGE;
        }
        if ((ex = load_conf(config, &conf)) != EXIT_OK) {
            return ex;
        }
        tm_err err = {0};
        tm_wal_spool *sp = NULL;
        tm_wal_pusher *p = NULL;
        int already = 0;
        int rc = tm_wal_spool_open(&sp, conf->state_dir, target, &err);
        if (rc == TM_OK) {
            rc = tm_wal_pusher_new(&p, conf, sp, target, (size_t)quorum, &err);
        }
        if (rc == TM_OK) {
            rc = tm_wal_pusher_push(p, args[0], async, &already, &err);
        }
        tm_wal_pusher_free(p);
        tm_wal_spool_free(sp);
        tm_agent_conf_free(conf);
        if (rc != TM_OK) {
            fprintf(stderr, "tidemark-agent wal-push %s: %s\n", args[0], err.msg);
            return rc == TM_ECONFIG || rc == TM_EINVAL ? EXIT_USAGE : EXIT_FAIL;
        }
        if (verbose) {
            fprintf(stderr, "wal-push %s: %s\n", args[0], already ? "already archived" : "stored");
        }
        return EXIT_OK;
    }
    if (strcmp(cmd, "wal-get") == 0) {
        if (nargs != (pf_only ? 1 : 2)) {
            fprintf(stderr, "tidemark-agent wal-get: expected FILE (%%f) and PATH (%%p)\n");
            return EXIT_USAGE;
        }
        if ((ex = load_conf(config, &conf)) != EXIT_OK) {
            return ex;
        }
        if (pf_only) {
            ex = tm_wal_prefetch(conf, target, args[0], seg_size, prefetch);
        } else {
            ex = tm_wal_get(conf, target, args[0], args[1], prefetch, verbose);
        }
        tm_agent_conf_free(conf);
        return ex;
    }
    if (strcmp(cmd, "wal-show") == 0) {
        if (nargs != 0) {
            fprintf(stderr, "tidemark-agent wal-show: unexpected argument\n");
            return EXIT_USAGE;
        }
        if ((ex = load_conf(config, &conf)) != EXIT_OK) {
            return ex;
        }
        ex = tm_wal_show(conf, target, pgdata, json, stdout);
        tm_agent_conf_free(conf);
        return ex;
    }
    if (strcmp(cmd, "wal-archiver") == 0) {
        if (nargs != 0 || pgdata == NULL) {
            fprintf(stderr, "tidemark-agent wal-archiver: --pgdata DIR is required\n");
            return EXIT_USAGE;
        }
        if ((ex = load_conf(config, &conf)) != EXIT_OK) {
            return ex;
        }
        struct sigaction sa;
        memset(&sa, 0, sizeof(sa));
        sa.sa_handler = on_signal;
        sigaction(SIGTERM, &sa, NULL);
        sigaction(SIGINT, &sa, NULL);
        signal(SIGPIPE, SIG_IGN);
        tm_wal_archiver_opts o = {target, pgdata, workers, interval, once, (size_t)quorum};
        tm_err err = {0};
        int rc = tm_wal_archiver_run(conf, &o, &g_stop, &err);
        tm_agent_conf_free(conf);
        if (rc != TM_OK) {
            fprintf(stderr, "tidemark-agent wal-archiver: %s\n", err.msg);
            return EXIT_FAIL;
        }
        return EXIT_OK;
    }
    fprintf(stderr, "tidemark-agent: unknown command '%s'\n", cmd);
    fputs(usage_text, stderr);
    return EXIT_USAGE;
}

const tm_engine_cmd tm_pg_cmds[] = {
    {"wal-push", tm_wal_cmd, "PostgreSQL archive_command: push a WAL file (wal-push --help)"},
    {"wal-get", tm_wal_cmd, "PostgreSQL restore_command: fetch a WAL file"},
    {"wal-show", tm_wal_cmd, "archived WAL ranges, gaps, queue and lag of a target"},
    {"wal-archiver", tm_wal_cmd, "push WAL ahead of archive_command (async archiving)"},
    {NULL, NULL, NULL},
};
