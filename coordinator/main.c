/*
 * tidemark-coordinator - owns the schedule, the catalog and the fleet's state.
 *
 * Exit codes: 0 clean stop, 1 runtime failure, 2 usage or configuration error.
 */
#include "common/secrets.h"
#include "common/config.h"
#include "common/log.h"
#include "common/shutdown.h"
#include "coordinator/coordinator.h"
#include "coordinator/cron.h"

#include <getopt.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#define DEFAULT_CONFIG "/etc/tidemark/coordinator.yaml"

/* Within the 5 s a supervisor (and the e2e tests) give a stopping process. */
#define SHUTDOWN_GRACE_MS 4000

/* The config loader (common/) cannot link the cron parser; lend it ours so a
 * bad schedule is a config error with its line, caught by --check-config. */
static int check_cron(const char *expr, tm_err *err)
{
    tm_cron *c = NULL;
    int rc = tm_cron_parse(expr, &c, err);
    tm_cron_free(c);
    return rc;
}

static void usage(FILE *f)
{
    fprintf(f, "Usage: tidemark-coordinator [--config FILE] [--check-config]\n"
               "\n"
               "Runs the Tidemark coordinator: agent registry, catalog, RPC for agents and\n"
               "tidemarkctl, and /metrics + /healthz for Prometheus.\n"
               "\n"
               "Options:\n"
               "  -c, --config FILE   configuration (default " DEFAULT_CONFIG ")\n"
               "      --check-config  validate the configuration and exit (0 ok, 2 invalid)\n"
               "  -V, --version       print the version and exit\n"
               "  -h, --help          this help\n"
               "\n"
               "Stops cleanly on SIGTERM or SIGINT.\n");
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
    const char *config = DEFAULT_CONFIG;
    int check = 0, ch;
    while ((ch = getopt_long(argc, argv, "c:Vh", opts, NULL)) != -1) {
        switch (ch) {
        case 'c':
            config = optarg;
            break;
        case 'k':
            check = 1;
            break;
        case 'V':
            printf("tidemark-coordinator %s\n", TIDEMARK_VERSION);
            return 0;
        case 'h':
            usage(stdout);
            return 0;
        default:
            usage(stderr);
            return 2;
        }
    }
    if (optind != argc) {
        fprintf(stderr, "tidemark-coordinator: unexpected argument '%s'\n", argv[optind]);
        usage(stderr);
        return 2;
    }

    tm_err err = {0};
    tm_coordinator_conf *conf = NULL;
    tm_config_set_cron_check(check_cron);
    if (tm_coordinator_conf_load(config, &conf, &err) != TM_OK) {
        fprintf(stderr, "%s\n", err.msg);
        return 2;
    }
    if (check) {
        printf("%s: ok\n", config);
        tm_coordinator_conf_free(conf);
        return 0;
    }
    tm_log_set_level(conf->log_level);

    /* Block the stop signals in every thread; main waits for them. */
    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, SIGTERM);
    sigaddset(&set, SIGINT);
    pthread_sigmask(SIG_BLOCK, &set, NULL);
    signal(SIGPIPE, SIG_IGN);

    tm_coordinator *c = NULL;
    if (tm_coordinator_new(&c, conf, &err) != TM_OK) {
        tm_error("coordinator", "event=start_failed msg=\"%s\"", err.msg);
        tm_coordinator_conf_free(conf);
        return err.code == TM_ECONFIG ? 2 : 1;
    }
    int sig = 0;
    sigwait(&set, &sig);
    tm_info("coordinator", "event=stopping signal=%s", sig == SIGTERM ? "SIGTERM" : "SIGINT");
    /* Every state change is already committed to the catalog (WAL,
     * synchronous=FULL): a shutdown that gets stuck in a library call must
     * not keep the process, and with it a restart, waiting. */
    tm_shutdown_watchdog("coordinator", SHUTDOWN_GRACE_MS);
    tm_coordinator_free(c);
    tm_coordinator_conf_free(conf);
    tm_info("coordinator", "event=stopped");
    return 0;
}
