/*
 * tidemarkctl - the operator's CLI. Talks to the coordinator's Admin service.
 *
 * The admin credential comes from --token-file, TIDEMARK_ADMIN_TOKEN, or the
 * admin token of the coordinator config given with --config (in that order);
 * the coordinator URL from --url, TIDEMARK_URL, the config's listen URL, or
 * tcp://127.0.0.1:7800.
 */
#include "coordinator/ctl/ctl.h"
#include "common/config.h"
#include "common/util.h"

#include <getopt.h>
#include <stdlib.h>
#include <string.h>

#include "tidemark.pb-c.h"

static void usage(FILE *f)
{
    fprintf(f, "Usage: tidemarkctl [global options] COMMAND [args]\n"
               "\n"
               "Commands:\n"
               "  agents list [--state S]      list agents (pending|online|stale|lost)\n"
               "  agents show AGENT            one agent in detail (id or hostname)\n"
               "  agents approve AGENT         approve a pending agent\n"
               "  agents remove AGENT          forget an agent (stop it first to retire a host)\n"
               "  status                       fleet summary; RPO and RTO per target\n"
               "  backup run --target T [--type full|incremental] [--wait]\n"
               "  backup show ID [--target T]  one backup in detail\n"
               "  backups list [--target T]    backups in the catalog\n"
               "  restore --target T --dir DIR [--time T|--backup ID] [--to AGENT] [--wait]\n"
               "  tasks list [--target T]      recent tasks\n"
               "  task show|cancel|wait ID     one task\n"
               "  pitr window --target T       recoverable window, gaps and RPO now\n"
               "  alerts list                  active alerts (pending and firing)\n"
               "  backup keep|unkeep ID        permanent hold: retention never deletes it\n"
               "  retention plan [--target T]  what retention would keep/drop and why (dry run)\n"
               "  retention apply [--target T] [--wait]  delete what the plan drops, now\n"
               "  retention log [--target T]   what retention deleted\n"
               "  drill run --target T [--to AGENT] [--time T] [--wait]  restore drill now\n"
               "  drills list [--target T]     restore drills with measured RTO/RPO\n"
               "  replication status [--target T]   every repository: ok/gap/mismatch, lag\n"
               "  replication check --target T [--wait]  check the copies now\n"
               "\n"
               "Global options:\n"
               "  -u, --url URL          coordinator (TIDEMARK_URL; default tcp://127.0.0.1:7800)\n"
               "  -t, --token-file FILE  admin token file (or TIDEMARK_ADMIN_TOKEN)\n"
               "  -c, --config FILE      read URL and admin token from a coordinator.yaml\n"
               "      --json             machine-readable output\n"
               "      --timeout MS       per-call timeout (default 10000)\n"
               "      --tls-ca FILE      CA to pin for a tls+tcp:// coordinator\n"
               "      --tls-cert FILE    client certificate (mutual TLS), with --tls-key FILE\n"
               "      --tls-server-name NAME  name to verify (default: host of the URL)\n"
               "  -V, --version          print the version\n"
               "  -h, --help             this help; COMMAND --help for a command\n"
               "\n"
               "\n"
               "Examples:\n"
               "  tidemarkctl --config /etc/tidemark/coordinator.yaml status\n"
               "  tidemarkctl backup run --target orders-db --wait\n"
               "\n"
               "Exit codes: 0 ok, 1 failure, 2 usage, 3 partial (a backup complete in some of\n"
               "its required repositories only), 130 interrupted (Ctrl-C on --wait: the task\n"
               "goes on). docs/CLI.md lists them for every program.\n");
}

/* A tcp://0.0.0.0:N listen URL is not dialable; talk to loopback instead. */
static char *dial_url(const char *listen)
{
    const char *any = "tcp://0.0.0.0:";
    if (strncmp(listen, any, strlen(any)) == 0) {
        size_t n = strlen(listen) + 16;
        char *u = malloc(n);
        if (u != NULL) {
            snprintf(u, n, "tcp://127.0.0.1:%s", listen + strlen(any));
        }
        return u;
    }
    return strdup(listen);
}

int main(int argc, char **argv)
{
    static const struct option opts[] = {
        {"url", required_argument, NULL, 'u'},
        {"token-file", required_argument, NULL, 't'},
        {"config", required_argument, NULL, 'c'},
        {"json", no_argument, NULL, 'j'},
        {"timeout", required_argument, NULL, 'T'},
        {"version", no_argument, NULL, 'V'},
        {"help", no_argument, NULL, 'h'},
        {"tls-ca", required_argument, NULL, 'A'},
        {"tls-cert", required_argument, NULL, 'C'},
        {"tls-key", required_argument, NULL, 'K'},
        {"tls-server-name", required_argument, NULL, 'N'},
        {NULL, 0, NULL, 0},
    };
    ctl c = {.timeout_ms = 10000};
    const char *token_file = NULL, *config = NULL;
    int ch;
    /* '+': stop at the command, so command options are parsed by the command. */
    while ((ch = getopt_long(argc, argv, "+u:t:c:Vh", opts, NULL)) != -1) {
        switch (ch) {
        case 'u':
            c.url = optarg;
            break;
        case 't':
            token_file = optarg;
            break;
        case 'c':
            config = optarg;
            break;
        case 'j':
            c.json = 1;
            break;
        case 'T':
            c.timeout_ms = (uint32_t)strtoul(optarg, NULL, 10);
            break;
        case 'A':
            c.tls.ca_file = optarg;
            break;
        case 'C':
            c.tls.cert_file = optarg;
            break;
        case 'K':
            c.tls.key_file = optarg;
            break;
        case 'N':
            c.tls.server_name = optarg;
            break;
        case 'V':
            printf("tidemarkctl %s\n", TIDEMARK_VERSION);
            return CTL_OK;
        case 'h':
            usage(stdout);
            return CTL_OK;
        default:
            usage(stderr);
            return CTL_USAGE;
        }
    }
    if (optind >= argc) {
        usage(stderr);
        return CTL_USAGE;
    }
    if (c.timeout_ms == 0) {
        fprintf(stderr, "tidemarkctl: --timeout must be a positive number of milliseconds\n");
        return CTL_USAGE;
    }
    const char *cmd = argv[optind];
    int cargc = argc - optind;
    char **cargv = argv + optind;
    int (*fn)(ctl *, int, char **) = NULL;
    if (strcmp(cmd, "agents") == 0) {
        fn = ctl_agents;
    } else if (strcmp(cmd, "status") == 0) {
        fn = ctl_status;
    } else if (strcmp(cmd, "backup") == 0 || strcmp(cmd, "backups") == 0) {
        fn = ctl_backup;
    } else if (strcmp(cmd, "restore") == 0) {
        fn = ctl_restore;
    } else if (strcmp(cmd, "tasks") == 0) {
        fn = ctl_tasks;
    } else if (strcmp(cmd, "task") == 0) {
        fn = ctl_task;
    } else if (strcmp(cmd, "pitr") == 0) {
        fn = ctl_pitr;
    } else if (strcmp(cmd, "alerts") == 0) {
        fn = ctl_alerts;
    } else if (strcmp(cmd, "retention") == 0) {
        fn = ctl_retention;
    } else if (strcmp(cmd, "drill") == 0 || strcmp(cmd, "drills") == 0) {
        fn = ctl_drills;
    } else if (strcmp(cmd, "replication") == 0) {
        fn = ctl_replication;
    } else if (strcmp(cmd, "help") == 0) {
        usage(stdout);
        return CTL_OK;
    } else {
        fprintf(stderr, "tidemarkctl: unknown command '%s' (see tidemarkctl --help)\n", cmd);
        return CTL_USAGE;
    }

    tm_err err = {0};
    tm_coordinator_conf *conf = NULL;
    char *token = NULL, *url = NULL;
    int help = 0;
    for (int i = 1; i < cargc; i++) {
        if (strcmp(cargv[i], "--help") == 0 || strcmp(cargv[i], "-h") == 0) {
            help = 1;
        }
    }
    if (!help) {
        if (config != NULL && tm_coordinator_conf_load(config, &conf, &err) != TM_OK) {
            fprintf(stderr, "tidemarkctl: %s\n", err.msg);
            return CTL_USAGE;
        }
        if (token_file != NULL) {
            if (tm_secret_resolve(NULL, token_file, &token, &err) != TM_OK) {
                fprintf(stderr, "tidemarkctl: %s\n", err.msg);
                tm_coordinator_conf_free(conf);
                return CTL_USAGE;
            }
        } else if (getenv("TIDEMARK_ADMIN_TOKEN") != NULL) {
            token = strdup(getenv("TIDEMARK_ADMIN_TOKEN"));
        } else if (conf != NULL) {
            token = strdup(conf->admin_token);
        }
        if (c.url == NULL) {
            c.url = getenv("TIDEMARK_URL");
        }
        if (c.url == NULL) {
            url = dial_url(conf != NULL ? conf->listen : "tcp://127.0.0.1:7800");
            c.url = url;
        }
        c.token = token;
    }
    int rc = fn(&c, cargc, cargv);
    tm_rpc_client_free(c.rpc);
    if (token != NULL) {
        memset(token, 0, strlen(token));
        free(token);
    }
    free(url);
    tm_coordinator_conf_free(conf);
    return rc;
}
