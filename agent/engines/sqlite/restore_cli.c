/*
 * restore_cli.c - `tidemark-agent restore` for a SQLite target (the
 * engine's restore_cli): the options and the report; the work is
 * restore.c's.
 */
#include <getopt.h>
#include <inttypes.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "agent/engines/sqlite/sqlite.h"
#include "common/config.h"
#include "common/json.h"

const char tm_sqlite_restore_usage[] =
    "           (--output FILE | --dir DIR) [--backup ID | --time 'YYYY-MM-DD HH:MM:SS[.mmm]+00']\n"
    "           [--force] [--json]\n"
    "\n"
    "Restore NAME into the database file FILE (--dir DIR: DIR/NAME.db) from the\n"
    "repositories alone: the newest snapshot taken at or before the time (or ID, or\n"
    "the newest), then the shipped WAL replayed up to the last commit at or before\n"
    "the time (the latest without --time); PRAGMA integrity_check must say ok, then\n"
    "the file is synced and renamed into place. An existing FILE, or one a process\n"
    "has open (a live database, its -wal or -shm), is refused unless --force.\n";

static void usage(FILE *f)
{
    fprintf(f, "Usage: tidemark-agent restore --target NAME\n%s", tm_sqlite_restore_usage);
}

static void print_json(const tm_sqlite_restore_report *rep, const char *target)
{
    char t[40] = "";
    if (rep->recovered_ms > 0) {
        tm_sqlite_time_fmt(rep->recovered_ms, t, sizeof(t));
    }
    printf("{\"target\":");
    tm_json_str(stdout, target);
    printf(",\"output\":");
    tm_json_str(stdout, rep->output);
    printf(",\"backup_id\":");
    tm_json_str(stdout, rep->backup_id);
    printf(",\"source\":");
    tm_json_str(stdout, rep->source);
    printf(",\"chain\":%" PRIu32 ",\"snapshot_ms\":%" PRId64 ",\"recovered_to_ms\":%" PRId64
           ",\"recovered_to\":",
           rep->chain, rep->snapshot_ms, rep->recovered_ms);
    tm_json_str(stdout, t);
    printf(",\"bytes\":%" PRIu64 ",\"frames\":%" PRIu64 ",\"objects\":%" PRIu32 ",\"integrity\":",
           rep->bytes, rep->frames, rep->objects);
    tm_json_str(stdout, rep->integrity);
    printf(",\"files_s\":%.3f,\"replay_s\":%.3f,\"check_s\":%.3f,\"total_s\":%.3f}\n", rep->files_s,
           rep->replay_s, rep->check_s, rep->total_s);
}

static void print_text(const tm_sqlite_restore_report *rep, const char *target)
{
    char t[40] = "unknown";
    if (rep->recovered_ms > 0) {
        tm_sqlite_time_fmt(rep->recovered_ms, t, sizeof(t));
    }
    printf("restored %s of %s into %s\n", rep->backup_id, target, rep->output);
    printf("  from:             %s\n", rep->source);
    printf("  database:         %" PRIu64 " bytes\n", rep->bytes);
    if (rep->chain != 0 || rep->frames != 0) {
        printf("  log:              chain %" PRIu32 ", %" PRIu64 " frames from %" PRIu32
               " objects\n",
               rep->chain, rep->frames, rep->objects);
    }
    printf("  recovered to:     %s\n", t);
    printf("  integrity_check:  %s\n", rep->integrity);
    printf("  restore files:    %.2f s\n", rep->files_s);
    printf("  replay:           %.2f s\n", rep->replay_s);
    printf("  check:            %.2f s\n", rep->check_s);
    printf("  total:            %.2f s\n", rep->total_s);
}

int tm_sqlite_restore_cli(const tm_agent_conf *conf, int argc, char **argv)
{
    static const struct option opts[] = {
        {"target", required_argument, NULL, 't'},
        {"output", required_argument, NULL, 'o'},
        {"dir", required_argument, NULL, 'd'},
        {"backup", required_argument, NULL, 'b'},
        {"time", required_argument, NULL, 'T'},
        {"force", no_argument, NULL, 'f'},
        {"json", no_argument, NULL, 'j'},
        {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0},
    };
    tm_sqlite_restore_opts o = {0};
    const char *output = NULL, *dir = NULL, *time = NULL;
    int json = 0;
    optind = 1;
    int ch;
    while ((ch = getopt_long(argc, argv, "h", opts, NULL)) != -1) {
        switch (ch) {
        case 't':
            o.target = optarg;
            break;
        case 'o':
            output = optarg;
            break;
        case 'd':
            dir = optarg;
            break;
        case 'b':
            o.backup_id = optarg;
            break;
        case 'T':
            time = optarg;
            break;
        case 'f':
            o.force = 1;
            break;
        case 'j':
            json = 1;
            break;
        case 'h':
            usage(stdout);
            return 0;
        default:
            usage(stderr);
            return 2;
        }
    }
    if (optind < argc || o.target == NULL || (output == NULL) == (dir == NULL)) {
        fprintf(stderr, "tidemark-agent restore: --target and one of --output or --dir are "
                        "required\n");
        return 2;
    }
    if (o.backup_id != NULL && time != NULL) {
        fprintf(stderr, "tidemark-agent restore: --backup and --time exclude each other\n");
        return 2;
    }
    if (time != NULL && tm_sqlite_time_parse(time, &o.until_ms) != TM_OK) {
        fprintf(stderr,
                "tidemark-agent restore: --time '%s' is not 'YYYY-MM-DD HH:MM:SS[.mmm]+00'\n",
                time);
        return 2;
    }
    char path[PATH_MAX], cwd[PATH_MAX];
    const char *given = output != NULL ? output : dir;
    const char *base = "";
    if (given[0] != '/') {
        if (getcwd(cwd, sizeof(cwd)) == NULL) {
            fprintf(stderr, "tidemark-agent restore: the current directory is unknown\n");
            return 2;
        }
        base = cwd;
    }
    int n = output != NULL ? snprintf(path, sizeof(path), "%s%s%s", base, base[0] ? "/" : "", given)
                           : snprintf(path, sizeof(path), "%s%s%s/%s.db", base, base[0] ? "/" : "",
                                      given, o.target);
    if (n < 0 || (size_t)n >= sizeof(path)) {
        fprintf(stderr, "tidemark-agent restore: output path too long\n");
        return 2;
    }
    o.output = path;
    tm_err err = {0};
    tm_sqlite_restore_report rep;
    int r = tm_sqlite_restore(conf, &o, &rep, &err);
    if (r != TM_OK) {
        fprintf(stderr, "tidemark-agent restore: %s\n", err.msg);
        return r == TM_ECONFIG || r == TM_EINVAL ? 2 : 1;
    }
    if (json) {
        print_json(&rep, o.target);
    } else {
        print_text(&rep, o.target);
    }
    return 0;
}
