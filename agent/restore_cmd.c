/*
 * restore_cmd.c - `tidemark-agent restore`: a restore run by hand on the
 * database host, from the repositories alone (the coordinator may be down).
 * This file only finds the engine: the target's kind when this agent serves
 * it, else --engine KIND, else the engine whose own name for --dir is used
 * (restore_dir_alias), else the only engine that restores; the options, the
 * work and the report are the engine's (tm_engine.restore_cli).
 */
#include "agent/restore_cmd.h"
#include "agent/engine.h"
#include "agent/targets.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/config.h"
#include "common/log.h"

static void usage(FILE *f)
{
    fprintf(f, "Usage: tidemark-agent [--config FILE] restore --target NAME --dir DIR\n"
               "           [--engine KIND] [the engine's options]\n"
               "\n"
               "Restores a backup of NAME from the configured repositories into DIR, with\n"
               "the engine of NAME's kind; for a target this agent does not serve, name it\n"
               "with --engine KIND (or use the engine's own name for --dir).\n"
               "\n");
    const tm_engine *e;
    for (size_t i = 0; (e = tm_engine_at(i)) != NULL; i++) {
        if (e->restore_cli != NULL) {
            fprintf(f, "%s targets:\n%s\n", e->name, e->restore_usage ? e->restore_usage : "");
        }
    }
    fprintf(f, "Exit codes: 0 restored, 1 failed, 2 usage or configuration error.\n");
}

/* The value of option name in argv ("--name V" or "--name=V"), or NULL. */
static const char *opt_value(int argc, char **argv, const char *name)
{
    size_t l = strlen(name);
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--") == 0) {
            break;
        }
        if (strncmp(argv[i], name, l) == 0 && argv[i][l] == '=') {
            return argv[i] + l + 1;
        }
        if (strcmp(argv[i], name) == 0 && i + 1 < argc) {
            return argv[i + 1];
        }
    }
    return NULL;
}

/* The engine for the command line, or NULL (a message printed). */
static const tm_engine *pick(const tm_agent_conf *conf, int argc, char **argv)
{
    const char *kind = opt_value(argc, argv, "--engine");
    if (kind != NULL) {
        const tm_engine *e = tm_engine_by_name(kind);
        if (e == NULL || e->restore_cli == NULL) {
            fprintf(stderr, "tidemark-agent restore: --engine %s: no such engine restores here\n",
                    kind);
            return NULL;
        }
        return e;
    }
    const char *target = opt_value(argc, argv, "--target");
    for (size_t i = 0; target != NULL && i < conf->n_targets; i++) {
        if (strcmp(conf->targets[i].name, target) == 0) {
            const tm_engine *e = tm_engine_of(&conf->targets[i]);
            if (e == NULL || e->restore_cli == NULL) {
                fprintf(stderr,
                        "tidemark-agent restore: target %s (kind %s): its engine "
                        "cannot restore from this command\n",
                        target, conf->targets[i].kind);
                return NULL;
            }
            return e;
        }
    }
    const tm_engine *e, *only = NULL;
    size_t n = 0;
    for (size_t i = 0; (e = tm_engine_at(i)) != NULL; i++) {
        if (e->restore_cli == NULL) {
            continue;
        }
        if (e->restore_dir_alias != NULL && opt_value(argc, argv, e->restore_dir_alias) != NULL) {
            return e;
        }
        only = e;
        n++;
    }
    if (n == 1) {
        return only;
    }
    fprintf(stderr,
            "tidemark-agent restore: target %s is not in this agent's targets: name its "
            "engine with --engine KIND\n",
            target ? target : "(none)");
    return NULL;
}

int tm_restore_cmd(const char *config, int argc, char **argv)
{
    for (int i = 1; i < argc && strcmp(argv[i], "--") != 0; i++) {
        if (strcmp(argv[i], "--help") == 0 || strcmp(argv[i], "-h") == 0) {
            usage(stdout);
            return 0;
        }
    }
    tm_err err = {0};
    tm_agent_conf *conf = NULL;
    if (tm_agent_conf_load(config, &conf, &err) != TM_OK) {
        fprintf(stderr, "%s\n", err.msg);
        return 2;
    }
    tm_log_set_level(conf->log_level);
    /* A target matched by a pattern is served by name like any other. */
    if (tm_targets_expand(conf, NULL, &err) != TM_OK) {
        fprintf(stderr, "%s: %s\n", config, err.msg);
        tm_agent_conf_free(conf);
        return 2;
    }
    const tm_engine *e = pick(conf, argc, argv);
    if (e == NULL) {
        tm_agent_conf_free(conf);
        usage(stderr);
        return 2;
    }
    /* The engine parses the rest: --engine is ours alone. */
    char **av = calloc((size_t)argc + 1, sizeof(*av));
    if (av == NULL) {
        tm_agent_conf_free(conf);
        fprintf(stderr, "tidemark-agent restore: out of memory\n");
        return 1;
    }
    int ac = 0;
    for (int i = 0; i < argc; i++) {
        if (i > 0 && strcmp(argv[i], "--engine") == 0 && i + 1 < argc) {
            i++;
            continue;
        }
        if (i > 0 && strncmp(argv[i], "--engine=", 9) == 0) {
            continue;
        }
        av[ac++] = argv[i];
    }
    int rc = e->restore_cli(conf, ac, av);
    free(av);
    tm_agent_conf_free(conf);
    return rc;
}

int tm_restore_cli_port(const char *arg, uint32_t *port)
{
    char *end = NULL;
    unsigned long p = strtoul(arg, &end, 10);
    if (end == arg || *end != '\0' || p < 1 || p > 65535) {
        fprintf(stderr, "tidemark-agent restore: --port %s is not a port (1 .. 65535)\n", arg);
        return -1;
    }
    *port = (uint32_t)p;
    return 0;
}
