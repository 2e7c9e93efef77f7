/*
 * tidemark-agent - runs on every database host; does the work the
 * coordinator hands out. Always dials out: the host needs no open port.
 *
 * Exit codes: 0 ok, 1 runtime failure, 2 usage or configuration error.
 */
#include "agent/daemon.h"
#include "agent/engine.h"
#include "agent/repo/repo_cmd.h"
#include "agent/restore_cmd.h"
#include "agent/targets.h"
#include "common/secrets.h"
#include "common/config.h"
#include "common/log.h"
#include "common/util.h"

#include <errno.h>
#include <getopt.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>

#define DEFAULT_CONFIG "/etc/tidemark/agent.yaml"

static void usage(FILE *f)
{
    fprintf(f, "Usage: tidemark-agent [--config FILE] [run | --check-config]\n"
               "\n"
               "Runs the Tidemark agent: registers with the coordinator named in the\n"
               "configuration, keeps its identity in state_dir, and heartbeats.\n"
               "\n"
               "Commands:\n"
               "  run                 run the agent daemon (default)\n"
               "  repo COMMAND        repository set: ls, put, get, verify, rotate-key, keygen\n"
               "  restore ...         restore a backup from the repositories (restore --help)\n");
    /* The engines' own commands. */
    const tm_engine *e;
    for (size_t i = 0; (e = tm_engine_at(i)) != NULL; i++) {
        for (const tm_engine_cmd *c = e->cmds; c != NULL && c->name != NULL; c++) {
            fprintf(f, "  %-19s %s\n", c->name, c->help);
        }
    }
    fprintf(f, "\n"
               "Options:\n"
               "  -c, --config FILE   configuration (default " DEFAULT_CONFIG ")\n"
               "      --check-config  validate the configuration and exit (0 ok, 2 invalid)\n"
               "  -V, --version       print the version and exit\n"
               "  -h, --help          this help\n"
               "\n"
               "Stops cleanly on SIGTERM or SIGINT.\n");
}

typedef struct signal_ctx {
    sigset_t set;
    tm_daemon *d;
} signal_ctx;

static void *signal_thread(void *arg)
{
    signal_ctx *s = arg;
    int sig = 0;
    sigwait(&s->set, &sig);
    tm_info("agent", "event=stopping signal=%s", sig == SIGTERM ? "SIGTERM" : "SIGINT");
    tm_daemon_stop(s->d);
    return NULL;
}

/* A target that is a pattern (agent/targets.h): its matches are looked at
 * every DISCOVER_MS; a new or vanished one stops the daemon, which is then
 * started again in place with the new set. */
#define DISCOVER_MS 3000

typedef struct watch_ctx {
    const char *config;
    const tm_agent_conf *conf;
    tm_daemon *d;
    pthread_mutex_t mu;
    pthread_cond_t cv;
    int stop;
    int restart;
} watch_ctx;

static void *watch_thread(void *arg)
{
    watch_ctx *w = arg;
    pthread_mutex_lock(&w->mu);
    while (!w->stop) {
        struct timespec ts;
        tm_deadline_after_ms(&ts, DISCOVER_MS);
        pthread_cond_timedwait(&w->cv, &w->mu, &ts);
        if (w->stop) {
            break;
        }
        pthread_mutex_unlock(&w->mu);
        char what[160];
        int changed = tm_targets_changed(w->config, w->conf, what, sizeof(what));
        pthread_mutex_lock(&w->mu);
        if (changed && !w->stop) {
            tm_info("agent", "event=targets_changed what=\"%s\" action=restart", what);
            w->restart = 1;
            tm_daemon_stop(w->d);
            break;
        }
    }
    pthread_mutex_unlock(&w->mu);
    return NULL;
}

int main(int argc, char **argv)
{
    static const struct option opts[] = {
        {"config", required_argument, NULL, 'c'},
        {"check-config", no_argument, NULL, 'k'},
        {"version", no_argument, NULL, 'V'},
        {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0},
    };
    /* Before any secret is read: no core dump may hold one. */
    tm_secrets_harden_process();
    /* Every engine's target block, before any agent.yaml is read. */
    tm_engine_config_init();
    const char *config = DEFAULT_CONFIG;
    int check = 0, ch;
    while ((ch = getopt_long(argc, argv, "+c:Vh", opts, NULL)) != -1) {
        switch (ch) {
        case 'c':
            config = optarg;
            break;
        case 'k':
            check = 1;
            break;
        case 'V':
            printf("tidemark-agent %s\n", TIDEMARK_VERSION);
            return 0;
        case 'h':
            usage(stdout);
            return 0;
        default:
            usage(stderr);
            return 2;
        }
    }
    if (optind < argc && strcmp(argv[optind], "repo") == 0) {
        return tm_repo_cmd(config, argc - optind, argv + optind);
    }
    if (optind < argc && strcmp(argv[optind], "restore") == 0) {
        return tm_restore_cmd(config, argc - optind, argv + optind);
    }
    /* A command of an engine (e.g. the one a database server calls to
     * archive its log). */
    const tm_engine *e;
    for (size_t i = 0; optind < argc && (e = tm_engine_at(i)) != NULL; i++) {
        for (const tm_engine_cmd *c = e->cmds; c != NULL && c->name != NULL; c++) {
            if (strcmp(argv[optind], c->name) == 0) {
                return c->fn(config, argc - optind, argv + optind);
            }
        }
    }
    if (optind < argc && strcmp(argv[optind], "run") != 0) {
        fprintf(stderr, "tidemark-agent: unknown command '%s'\n", argv[optind]);
        usage(stderr);
        return 2;
    }

    tm_err err = {0};
    tm_agent_conf *conf = NULL;
    if (tm_agent_conf_load(config, &conf, &err) != TM_OK) {
        fprintf(stderr, "%s\n", err.msg);
        return 2;
    }
    size_t patterns = 0;
    if (tm_targets_expand(conf, &patterns, &err) != TM_OK) {
        fprintf(stderr, "%s: %s\n", config, err.msg);
        tm_agent_conf_free(conf);
        return 2;
    }
    if (check) {
        printf("%s: ok\n", config);
        tm_agent_conf_free(conf);
        return 0;
    }
    tm_log_set_level(conf->log_level);

    signal_ctx sc;
    sigemptyset(&sc.set);
    sigaddset(&sc.set, SIGTERM);
    sigaddset(&sc.set, SIGINT);
    pthread_sigmask(SIG_BLOCK, &sc.set, NULL);
    signal(SIGPIPE, SIG_IGN);

    tm_daemon *d = NULL;
    if (tm_daemon_new(&d, conf, &err) != TM_OK) {
        tm_error("agent", "event=start_failed msg=\"%s\"", err.msg);
        tm_agent_conf_free(conf);
        return err.code == TM_ECONFIG ? 2 : 1;
    }
    sc.d = d;
    pthread_t st;
    pthread_create(&st, NULL, signal_thread, &sc);
    pthread_detach(st);
    watch_ctx w = {.config = config, .conf = conf, .d = d};
    pthread_mutex_init(&w.mu, NULL);
    pthread_cond_init(&w.cv, NULL);
    pthread_t wt;
    int watching = patterns > 0 && pthread_create(&wt, NULL, watch_thread, &w) == 0;
    int rc = tm_daemon_run(d);
    pthread_mutex_lock(&w.mu);
    w.stop = 1;
    pthread_cond_signal(&w.cv);
    pthread_mutex_unlock(&w.mu);
    if (watching) {
        pthread_join(wt, NULL);
    }
    tm_daemon_free(d);
    tm_agent_conf_free(conf);
    if (w.restart && rc == 0) {
        /* The same command line: the new set is read from the file again. */
        execv("/proc/self/exe", argv);
        tm_error("agent", "event=restart_failed msg=\"%s\"", strerror(errno));
        return 1;
    }
    return rc == 0 ? 0 : 1;
}
