/*
 * restore_cli.c - `tidemark-agent restore` for a pg_dump target (the
 * engine's restore_cli): the options and the report; the work is
 * restore.c's.
 */
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "agent/engines/pg_dump/dump.h"
#include "agent/restore_cmd.h"
#include "common/config.h"
#include "common/util.h"

const char tm_dump_restore_usage[] =
    "           --host H [--port N] [--user U] [--password-file F] [--sslmode M]\n"
    "           [--backup ID | --time 'YYYY-MM-DD HH:MM:SS+00']\n"
    "           [--dbname-suffix S | --into NAME] [--jobs N] [--no-globals]\n"
    "           [--dir SCRATCH] [--bindir DIR]\n"
    "\n"
    "Restore a pg_dump backup of NAME (the newest; the newest whose dumps ended at\n"
    "or before --time; or ID) into new databases on the server H:N (default port\n"
    "5432): roles and tablespaces first (psql; a role that exists is kept), then\n"
    "each database as <name>S (default suffix _restored), or as NAME with --into\n"
    "when the backup holds one database, by pg_restore -j N (default: the target's\n"
    "jobs, else 2) from a temporary file in a private directory under SCRATCH\n"
    "(default $TMPDIR). A database that exists is never overwritten: the restore\n"
    "refuses before writing. On failure the databases it created are dropped.\n"
    "User and password default to the target's own (when this agent serves it);\n"
    "--password-file reads the password from a file (never give it in argv).\n";

int tm_dump_restore_cli(const tm_agent_conf *conf, int argc, char **argv)
{
    static const struct option opts[] = {
        {"target", required_argument, NULL, 't'},
        {"dir", required_argument, NULL, 'd'},
        {"backup", required_argument, NULL, 'b'},
        {"time", required_argument, NULL, 'T'},
        {"host", required_argument, NULL, 'H'},
        {"port", required_argument, NULL, 'p'},
        {"user", required_argument, NULL, 'U'},
        {"password-file", required_argument, NULL, 'P'},
        {"sslmode", required_argument, NULL, 'S'},
        {"dbname-suffix", required_argument, NULL, 'x'},
        {"into", required_argument, NULL, 'i'},
        {"jobs", required_argument, NULL, 'j'},
        {"no-globals", no_argument, NULL, 'g'},
        {"bindir", required_argument, NULL, 'B'},
        {NULL, 0, NULL, 0},
    };
    tm_dump_restore_opts o = {0};
    tm_dump_server dest = {0};
    const char *pwfile = NULL;
    optind = 1;
    int ch;
    while ((ch = getopt_long(argc, argv, "", opts, NULL)) != -1) {
        switch (ch) {
        case 't':
            o.target = optarg;
            break;
        case 'd':
            o.scratch = optarg;
            break;
        case 'b':
            o.backup_id = optarg;
            break;
        case 'T':
            o.time = optarg;
            break;
        case 'H':
            dest.host = optarg;
            break;
        case 'p':
            if (tm_restore_cli_port(optarg, &dest.port) != 0) {
                return 2;
            }
            break;
        case 'U':
            dest.user = optarg;
            break;
        case 'P':
            pwfile = optarg;
            break;
        case 'S':
            dest.sslmode = optarg;
            break;
        case 'x':
            o.suffix = optarg;
            break;
        case 'i':
            o.into = optarg;
            break;
        case 'j': {
            char *end = NULL;
            long j = strtol(optarg, &end, 10);
            if (end == optarg || *end != '\0' || j < 1 || j > 64) {
                fprintf(stderr, "tidemark-agent restore: --jobs '%s' is not 1 .. 64\n", optarg);
                return 2;
            }
            o.jobs = (uint32_t)j;
            break;
        }
        case 'g':
            o.no_globals = 1;
            break;
        case 'B':
            o.bindir = optarg;
            break;
        default:
            fprintf(stderr, "Usage: tidemark-agent restore --target NAME\n%s",
                    tm_dump_restore_usage);
            return 2;
        }
    }
    if (optind < argc || o.target == NULL || dest.host == NULL) {
        fprintf(stderr, "tidemark-agent restore: --target and --host are required\n");
        return 2;
    }
    if (o.into != NULL && o.suffix != NULL) {
        fprintf(stderr, "tidemark-agent restore: --into and --dbname-suffix exclude each other\n");
        return 2;
    }
    if (o.backup_id != NULL && o.time != NULL) {
        fprintf(stderr, "tidemark-agent restore: --backup and --time exclude each other\n");
        return 2;
    }
    const tm_dump_target_conf *d = tm_dump_conf_of(conf, o.target);
    if (dest.user == NULL) {
        dest.user = d != NULL ? d->server.user : "postgres";
    }
    if (dest.sslmode == NULL) {
        dest.sslmode = d != NULL ? d->server.sslmode : "prefer";
    }
    if (dest.port == 0) {
        dest.port = 5432;
    }
    if (o.jobs == 0) {
        o.jobs = d != NULL ? d->jobs : 2;
    }
    if (o.bindir == NULL && d != NULL) {
        o.bindir = d->bindir;
    }
    char *pw = NULL;
    tm_err err = {0};
    if (pwfile != NULL) {
        size_t len = 0;
        if (tm_file_read(pwfile, &pw, &len, &err) != TM_OK) {
            fprintf(stderr, "tidemark-agent restore: --password-file: %s\n", err.msg);
            return 2;
        }
        pw[strcspn(pw, "\r\n")] = '\0';
        dest.password = pw;
    } else if (d != NULL) {
        dest.password = d->server.password;
    }
    o.dest = &dest;
    tm_dump_restore_report rep;
    int r = tm_dump_restore(conf, &o, &rep, &err);
    if (pw != NULL) {
        explicit_bzero(pw, strlen(pw));
        free(pw);
    }
    if (r != TM_OK) {
        fprintf(stderr, "tidemark-agent restore: %s\n", err.msg);
        return r == TM_ECONFIG || r == TM_EINVAL ? 2 : 1;
    }
    char t1[32], t2[32];
    tm_fmt_time(rep.dump_start, t1, sizeof(t1));
    tm_fmt_time(rep.dump_stop, t2, sizeof(t2));
    printf("restored %s of %s onto %s:%u\n", rep.backup_id, o.target, dest.host, dest.port);
    printf("  dumped:           %s .. %s\n", t1, t2);
    for (size_t i = 0; i < rep.n_dbs; i++) {
        printf("  database:         %s -> %s\n", rep.src[i], rep.created[i]);
    }
    if (!o.no_globals) {
        printf("  globals:          %u statements failed (%u: role already there)\n",
               rep.globals_failed, rep.globals_existed);
    }
    printf("  fetched:          %llu bytes in %.2f s\n", (unsigned long long)rep.bytes,
           rep.fetch_s);
    printf("  pg_restore -j %u:  %.2f s\n", o.jobs, rep.restore_s);
    printf("  total:            %.2f s\n", rep.total_s);
    return 0;
}
