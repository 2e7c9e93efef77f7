/*
 * repo_cmd.c - `tidemark-agent repo ...`: thin operator and test commands
 * over the repository set (repository.h): ls, put, get, verify, rotate-key,
 * keygen.
 *
 * Exit codes: 0 ok, 1 a problem was found or the work failed, 2 usage or
 * configuration error. Results go to stdout (text or --json), progress and
 * errors to stderr.
 */
#include "agent/repo/repo_cmd.h"
#include "common/json.h"

#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "agent/repo/repository.h"
#include "common/config.h"
#include "common/keys.h"
#include "common/util.h"

#define EXIT_OK 0
#define EXIT_FAIL 1
#define EXIT_USAGE 2

static const char *const top_usage =
    "Usage: tidemark-agent [--config FILE] repo COMMAND [options]\n"
    "\n"
    "Work on the repository set of the configuration (repositories:, encryption:).\n"
    "\n"
    "Commands:\n"
    "  ls          backups per target, with sizes and the repositories holding them\n"
    "  put         store one file as a one-object backup in every repository\n"
    "  get         read one object of a backup back (decrypted, every digest checked)\n"
    "  verify      re-read every object, compare repositories (with or without the key)\n"
    "  rotate-key  rewrap every data key under a new master key\n"
    "  keygen      create a new master key file (mode 0600)\n"
    "\n"
    "`tidemark-agent repo COMMAND --help` describes each. Exit codes: 0 ok, 1 problem\n"
    "found or failure, 2 usage or configuration error.\n";

/* ---- small output helpers --------------------------------------------- */

static void human(uint64_t n, char *out, size_t cap)
{
    static const char *const u[] = {"B", "KiB", "MiB", "GiB", "TiB"};
    double v = (double)n;
    size_t i = 0;
    while (v >= 1024 && i < 4) {
        v /= 1024;
        i++;
    }
    snprintf(out, cap, i == 0 ? "%.0f %s" : "%.1f %s", v, u[i]);
}

typedef struct progress {
    int on;
    uint64_t last_ns;
    const char *what;
} progress;

static void progress_show(void *arg, uint64_t bytes)
{
    progress *p = arg;
    if (!p->on) {
        return;
    }
    uint64_t now = tm_mono_ns();
    if (now - p->last_ns < 500000000ull && bytes != 0) {
        return; /* twice a second is enough */
    }
    p->last_ns = now;
    char h[32];
    human(bytes, h, sizeof(h));
    fprintf(stderr, "\r%s: %s ", p->what, h);
}

static void progress_end(progress *p)
{
    if (p->on) {
        fputc('\n', stderr);
    }
}

/* Options every subcommand shares. */
enum { OPT_JSON = 256, OPT_PROGRESS, OPT_NO_KEY, OPT_KEEP_OLD, OPT_NEW_KEY };

static int load_set(const char *config, unsigned flags, tm_agent_conf **conf, tm_repo_set **rs)
{
    tm_err err = {0};
    /* The repository set alone: no coordinator, so no enrollment token. */
    tm_config_agent_offline(true);
    if (tm_agent_conf_load(config, conf, &err) != TM_OK) {
        fprintf(stderr, "%s\n", err.msg);
        return EXIT_USAGE;
    }
    int rc = tm_repo_set_open(rs, *conf, flags, &err);
    if (rc != TM_OK) {
        fprintf(stderr, "tidemark-agent repo: %s\n", err.msg);
        tm_agent_conf_free(*conf);
        *conf = NULL;
        return rc == TM_ECONFIG ? EXIT_USAGE : EXIT_FAIL;
    }
    return EXIT_OK;
}

static int usage_err(const char *cmd, const char *msg)
{
    fprintf(stderr, "tidemark-agent repo %s: %s (see --help)\n", cmd, msg);
    return EXIT_USAGE;
}

/* ---- ls --------------------------------------------------------------- */

static const char *const ls_usage =
    "Usage: tidemark-agent repo ls [--repo NAME] [--target T] [--json]\n"
    "\n"
    "Backups (those with a manifest) per target, with object count, stored size\n"
    "and the repositories that hold them; copies without a manifest (interrupted\n"
    "or failed) are shown as incomplete. Needs no key.\n";

typedef struct ls_row {
    const char *target, *id;
    uint64_t objects, bytes;
    char repos[512];
    char incomplete[512];
} ls_row;

static void add_name(char *buf, size_t cap, const char *name)
{
    size_t l = strlen(buf);
    snprintf(buf + l, cap - l, "%s%s", l ? "," : "", name);
}

static int row_cmp(const void *a, const void *b)
{
    const ls_row *x = a, *y = b;
    int c = strcmp(x->target, y->target);
    return c != 0 ? c : strcmp(x->id, y->id);
}

/* These outputs have always written a missing string as "". */
static void json_str(FILE *f, const char *s)
{
    tm_json_str(f, s != NULL ? s : "");
}

static int cmd_ls(const char *config, int argc, char **argv)
{
    static const struct option lo[] = {{"repo", required_argument, NULL, 'r'},
                                       {"target", required_argument, NULL, 't'},
                                       {"json", no_argument, NULL, OPT_JSON},
                                       {"help", no_argument, NULL, 'h'},
                                       {NULL, 0, NULL, 0}};
    const char *repo = NULL, *target = NULL;
    int json = 0, ch;
    while ((ch = getopt_long(argc, argv, "+r:t:h", lo, NULL)) != -1) {
        switch (ch) {
        case 'r':
            repo = optarg;
            break;
        case 't':
            target = optarg;
            break;
        case OPT_JSON:
            json = 1;
            break;
        case 'h':
            fputs(ls_usage, stdout);
            return EXIT_OK;
        default:
            return usage_err("ls", "unknown option");
        }
    }
    if (optind != argc) {
        return usage_err("ls", "unexpected argument");
    }
    if (target != NULL && !tm_repo_valid_name(target)) {
        return usage_err("ls", "--target must be a name of [A-Za-z0-9._-]");
    }
    tm_agent_conf *conf = NULL;
    tm_repo_set *rs = NULL;
    int ex = load_set(config, 0, &conf, &rs);
    if (ex != EXIT_OK) {
        return ex;
    }
    int only = repo != NULL ? tm_repo_set_find(rs, repo) : -1;
    if (repo != NULL && only < 0) {
        fprintf(stderr, "tidemark-agent repo ls: no repository named '%s' in %s\n", repo,
                conf->path);
        tm_repo_set_free(rs);
        tm_agent_conf_free(conf);
        return EXIT_USAGE;
    }
    size_t n = tm_repo_set_count(rs);
    tm_backup_info **infos = calloc(n, sizeof(*infos));
    size_t *ns = calloc(n, sizeof(*ns));
    ls_row *rows = NULL;
    size_t nrows = 0;
    char errors[4096] = "";
    int failed = 0;
    for (size_t r = 0; r < n; r++) {
        if (only >= 0 && (size_t)only != r) {
            continue;
        }
        tm_err err = {0};
        if (tm_repo_scan(rs, r, target, &infos[r], &ns[r], &err) != TM_OK) {
            fprintf(stderr, "tidemark-agent repo ls: %s\n", err.msg);
            add_name(errors, sizeof(errors), tm_repo_set_name(rs, r));
            failed = 1;
            continue;
        }
        for (size_t i = 0; i < ns[r]; i++) {
            tm_backup_info *b = &infos[r][i];
            ls_row *row = NULL;
            for (size_t k = 0; k < nrows; k++) {
                if (strcmp(rows[k].target, b->target) == 0 &&
                    strcmp(rows[k].id, b->backup_id) == 0) {
                    row = &rows[k];
                }
            }
            if (row == NULL) {
                ls_row *nr = realloc(rows, (nrows + 1) * sizeof(*rows));
                if (nr == NULL) {
                    break;
                }
                rows = nr;
                row = &rows[nrows++];
                memset(row, 0, sizeof(*row));
                row->target = b->target;
                row->id = b->backup_id;
            }
            if (b->has_manifest) {
                add_name(row->repos, sizeof(row->repos), tm_repo_set_name(rs, r));
                row->objects = b->n_objects;
                row->bytes = b->stored_bytes + b->manifest_size;
            } else {
                add_name(row->incomplete, sizeof(row->incomplete), tm_repo_set_name(rs, r));
            }
        }
    }
    if (nrows > 0) {
        qsort(rows, nrows, sizeof(*rows), row_cmp);
    }
    if (json) {
        printf("{\"backups\":[");
        for (size_t k = 0; k < nrows; k++) {
            printf("%s{\"target\":", k ? "," : "");
            json_str(stdout, rows[k].target);
            printf(",\"backup_id\":");
            json_str(stdout, rows[k].id);
            printf(",\"complete\":%s,\"objects\":%" PRIu64 ",\"stored_bytes\":%" PRIu64
                   ",\"repos\":[",
                   rows[k].repos[0] ? "true" : "false", rows[k].objects, rows[k].bytes);
            char *save = NULL;
            int first = 1;
            for (char *t = strtok_r(rows[k].repos, ",", &save); t; t = strtok_r(NULL, ",", &save)) {
                printf("%s", first ? "" : ",");
                json_str(stdout, t);
                first = 0;
            }
            printf("],\"incomplete_in\":[");
            first = 1;
            for (char *t = strtok_r(rows[k].incomplete, ",", &save); t;
                 t = strtok_r(NULL, ",", &save)) {
                printf("%s", first ? "" : ",");
                json_str(stdout, t);
                first = 0;
            }
            printf("]}");
        }
        printf("],\"unlisted_repos\":[");
        char *save = NULL;
        int first = 1;
        for (char *t = strtok_r(errors, ",", &save); t; t = strtok_r(NULL, ",", &save)) {
            printf("%s", first ? "" : ",");
            json_str(stdout, t);
            first = 0;
        }
        printf("]}\n");
    } else {
        printf("%-20s %-28s %7s %10s  %s\n", "TARGET", "BACKUP", "OBJECTS", "STORED",
               "REPOSITORIES");
        for (size_t k = 0; k < nrows; k++) {
            char h[32];
            human(rows[k].bytes, h, sizeof(h));
            if (rows[k].repos[0]) {
                printf("%-20s %-28s %7" PRIu64 " %10s  %s%s%s", rows[k].target, rows[k].id,
                       rows[k].objects, h, rows[k].repos,
                       rows[k].incomplete[0] ? "  (incomplete in " : "",
                       rows[k].incomplete[0] ? rows[k].incomplete : "");
                fputs(rows[k].incomplete[0] ? ")\n" : "\n", stdout);
            } else {
                printf("%-20s %-28s %7s %10s  (incomplete in %s: no manifest)\n", rows[k].target,
                       rows[k].id, "-", "-", rows[k].incomplete);
            }
        }
    }
    free(rows);
    for (size_t r = 0; r < n; r++) {
        tm_backup_infos_free(infos[r], ns[r]);
    }
    free(infos);
    free(ns);
    tm_repo_set_free(rs);
    tm_agent_conf_free(conf);
    return failed ? EXIT_FAIL : EXIT_OK;
}

/* ---- put -------------------------------------------------------------- */

static const char *const put_usage =
    "Usage: tidemark-agent repo put --target T --name OBJ [--backup-id ID] [--json]\n"
    "                               [--progress] FILE|-\n"
    "\n"
    "Store FILE (or stdin) as a one-object backup, streamed once through\n"
    "compression and encryption to every repository in parallel. The backup\n"
    "exists only where everything, then the manifest, was written; a failed\n"
    "repository is reported and the command exits 1.\n";

static int cmd_put(const char *config, int argc, char **argv)
{
    static const struct option lo[] = {{"target", required_argument, NULL, 't'},
                                       {"name", required_argument, NULL, 'n'},
                                       {"backup-id", required_argument, NULL, 'b'},
                                       {"json", no_argument, NULL, OPT_JSON},
                                       {"progress", no_argument, NULL, OPT_PROGRESS},
                                       {"help", no_argument, NULL, 'h'},
                                       {NULL, 0, NULL, 0}};
    const char *target = NULL, *name = NULL, *id = NULL;
    int json = 0, ch;
    progress prog = {isatty(2), 0, "put"};
    while ((ch = getopt_long(argc, argv, "+t:n:b:h", lo, NULL)) != -1) {
        switch (ch) {
        case 't':
            target = optarg;
            break;
        case 'n':
            name = optarg;
            break;
        case 'b':
            id = optarg;
            break;
        case OPT_JSON:
            json = 1;
            break;
        case OPT_PROGRESS:
            prog.on = 1;
            break;
        case 'h':
            fputs(put_usage, stdout);
            return EXIT_OK;
        default:
            return usage_err("put", "unknown option");
        }
    }
    if (target == NULL || name == NULL || optind != argc - 1) {
        return usage_err("put", "needs --target, --name and one FILE (or -)");
    }
    const char *file = argv[optind];
    int fd = strcmp(file, "-") == 0 ? 0 : open(file, O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        fprintf(stderr, "tidemark-agent repo put: open %s: %s\n", file, strerror(errno));
        return EXIT_FAIL;
    }
    tm_agent_conf *conf = NULL;
    tm_repo_set *rs = NULL;
    int ex = load_set(config, TM_REPO_KEYS, &conf, &rs);
    if (ex != EXIT_OK) {
        if (fd > 0) {
            close(fd);
        }
        return ex;
    }
    tm_err err = {0};
    tm_backup_writer *w = NULL;
    tm_backup_object *o = NULL;
    tm_object_digest d;
    memset(&d, 0, sizeof(d));
    int rc = tm_backup_begin(rs, target, id, "full", "", &w, &err);
    if (rc == TM_OK) {
        rc = tm_backup_object_open(w, name, &o, &err);
    }
    uint8_t *buf = rc == TM_OK ? malloc(1 << 20) : NULL;
    uint64_t done = 0;
    if (rc == TM_OK && buf == NULL) {
        rc = tm_err_set(&err, TM_ENOMEM, "out of memory");
    }
    while (rc == TM_OK) {
        size_t got = 0;
        if ((rc = tm_source_fd(&fd, buf, 1 << 20, &got, &err)) != TM_OK || got == 0) {
            if (rc != TM_OK) {
                tm_err_prefix(&err, "reading %s", file);
            }
            break;
        }
        rc = tm_backup_object_write(o, buf, got, &err);
        done += got;
        progress_show(&prog, done);
    }
    free(buf);
    progress_end(&prog);
    if (o != NULL) {
        if (rc == TM_OK) {
            rc = tm_backup_object_close(o, &d, &err);
        } else {
            tm_backup_object_abort(o);
        }
    }
    int frc = rc;
    tm_err ferr = {0};
    if (rc == TM_OK) {
        frc = tm_backup_finish(w, &ferr);
    }
    if (w == NULL || (rc != TM_OK && frc == rc)) {
        /* Nothing to report per repository: the backup never got anywhere. */
        fprintf(stderr, "tidemark-agent repo put: %s\n", err.msg);
        if (json) {
            printf("{\"ok\":false,\"error\":");
            json_str(stdout, err.msg);
            printf("}\n");
        }
    } else {
        size_t nr = 0;
        const tm_repo_result *res = tm_backup_results(w, &nr);
        if (json) {
            printf("{\"ok\":%s,\"target\":", frc == TM_OK ? "true" : "false");
            json_str(stdout, target);
            printf(",\"backup_id\":");
            json_str(stdout, tm_backup_writer_id(w));
            printf(",\"object\":");
            json_str(stdout, name);
            printf(",\"plain_size\":%" PRIu64 ",\"stored_size\":%" PRIu64 ",\"sha256\":\"%s\","
                   "\"xxh3_128\":\"%s\",\"repos\":[",
                   d.plain_size, d.stored_size, d.sha256, d.xxh3_128);
            for (size_t i = 0; i < nr; i++) {
                printf("%s{\"name\":", i ? "," : "");
                json_str(stdout, res[i].repo);
                printf(",\"ok\":%s", res[i].code == TM_OK ? "true" : "false");
                if (res[i].code != TM_OK) {
                    printf(",\"error\":");
                    json_str(stdout, res[i].msg);
                }
                printf("}");
            }
            printf("]}\n");
        } else {
            char hp[32], hs[32];
            human(d.plain_size, hp, sizeof(hp));
            human(d.stored_size, hs, sizeof(hs));
            printf("backup %s/%s: %s: %s -> %s stored, sha256 %s\n", target, tm_backup_writer_id(w),
                   name, hp, hs, d.sha256);
            for (size_t i = 0; i < nr; i++) {
                printf("  %-16s %s%s\n", res[i].repo, res[i].code == TM_OK ? "ok" : "FAILED: ",
                       res[i].code == TM_OK ? "" : res[i].msg);
            }
        }
        if (frc != TM_OK) {
            fprintf(stderr, "tidemark-agent repo put: %s\n", ferr.msg);
        }
    }
    tm_backup_writer_free(w);
    if (fd > 0) {
        close(fd);
    }
    tm_repo_set_free(rs);
    tm_agent_conf_free(conf);
    return frc == TM_OK ? EXIT_OK : EXIT_FAIL;
}

/* ---- get -------------------------------------------------------------- */

static const char *const get_usage =
    "Usage: tidemark-agent repo get --target T --backup ID --name OBJ [--repo NAME]\n"
    "                               [--progress] OUT|-\n"
    "\n"
    "Read one object back from REPO (default: the first repository where the\n"
    "backup opens), checking every frame, the plaintext and the stored digest.\n"
    "OUT is written atomically and only when every check passed; with -, the\n"
    "plaintext streams to stdout and a failure is reported at the end (exit 1).\n";

typedef struct stdout_sink {
    progress *prog;
    uint64_t done;
} stdout_sink;

static int stdout_write(void *arg, const void *buf, size_t len, tm_err *err)
{
    stdout_sink *s = arg;
    if (fwrite(buf, 1, len, stdout) != len) {
        return tm_err_set(err, TM_EIO, "write to stdout: %s", strerror(errno));
    }
    s->done += len;
    progress_show(s->prog, s->done);
    return TM_OK;
}

static int stdout_commit(void *arg, tm_err *err)
{
    (void)arg;
    return fflush(stdout) == 0 ? TM_OK : tm_err_set(err, TM_EIO, "flush stdout failed");
}

static void stdout_abort(void *arg)
{
    (void)arg;
    fflush(stdout);
}

static int cmd_get(const char *config, int argc, char **argv)
{
    static const struct option lo[] = {{"target", required_argument, NULL, 't'},
                                       {"backup", required_argument, NULL, 'b'},
                                       {"name", required_argument, NULL, 'n'},
                                       {"repo", required_argument, NULL, 'r'},
                                       {"progress", no_argument, NULL, OPT_PROGRESS},
                                       {"help", no_argument, NULL, 'h'},
                                       {NULL, 0, NULL, 0}};
    const char *target = NULL, *id = NULL, *name = NULL, *repo = NULL;
    progress prog = {isatty(2), 0, "get"};
    int ch;
    while ((ch = getopt_long(argc, argv, "+t:b:n:r:h", lo, NULL)) != -1) {
        switch (ch) {
        case 't':
            target = optarg;
            break;
        case 'b':
            id = optarg;
            break;
        case 'n':
            name = optarg;
            break;
        case 'r':
            repo = optarg;
            break;
        case OPT_PROGRESS:
            prog.on = 1;
            break;
        case 'h':
            fputs(get_usage, stdout);
            return EXIT_OK;
        default:
            return usage_err("get", "unknown option");
        }
    }
    if (target == NULL || id == NULL || name == NULL || optind != argc - 1) {
        return usage_err("get", "needs --target, --backup, --name and one OUT (or -)");
    }
    const char *outp = argv[optind];
    tm_agent_conf *conf = NULL;
    tm_repo_set *rs = NULL;
    int ex = load_set(config, TM_REPO_KEYS, &conf, &rs);
    if (ex != EXIT_OK) {
        return ex;
    }
    tm_err err = {0};
    tm_backup_reader *r = NULL;
    int rc = tm_backup_open(rs, target, id, repo, &r, &err);
    if (rc == TM_OK) {
        tm_sink sink;
        stdout_sink ss = {&prog, 0};
        if (strcmp(outp, "-") == 0) {
            sink = (tm_sink){stdout_write, stdout_commit, stdout_abort, &ss, "stdout"};
        } else {
            rc = tm_sink_file_open(&sink, outp, &err);
        }
        if (rc == TM_OK) {
            rc = tm_backup_get(r, name, &sink, &err);
        }
        progress_end(&prog);
        if (rc == TM_OK) {
            fprintf(stderr, "%s/%s: %s read from repo %s, every digest matches\n", target, id, name,
                    tm_backup_reader_repo(r));
        }
    }
    if (rc != TM_OK) {
        fprintf(stderr, "tidemark-agent repo get: %s\n", err.msg);
    }
    tm_backup_reader_free(r);
    tm_repo_set_free(rs);
    tm_agent_conf_free(conf);
    return rc == TM_OK ? EXIT_OK : EXIT_FAIL;
}

/* ---- verify ----------------------------------------------------------- */

static const char *const verify_usage =
    "Usage: tidemark-agent repo verify [--target T] [--backup ID] [--repo NAME]\n"
    "                                  [--no-key] [--json] [--progress]\n"
    "\n"
    "Re-read every object of the selected backups in every selected repository.\n"
    "With the key (default): every frame is authenticated and decompressed, both\n"
    "digests and the manifest are checked. With --no-key: the stored SHA-256 and\n"
    "size of every object against the backup's digest list. Either way the same\n"
    "backup is compared across repositories (a missing copy is a gap). Exit 1 on\n"
    "any problem; each names the repository, object and, with the key, the frame.\n";

typedef struct verify_out {
    int json;
    int first;
} verify_out;

static void verify_print(void *arg, const tm_verify_item *it)
{
    verify_out *vo = arg;
    if (vo->json) {
        printf("%s{\"ok\":%s,\"repo\":", vo->first ? "" : ",", it->ok ? "true" : "false");
        vo->first = 0;
        json_str(stdout, it->repo);
        printf(",\"target\":");
        json_str(stdout, it->target);
        printf(",\"backup_id\":");
        json_str(stdout, it->backup_id);
        if (it->object != NULL) {
            printf(",\"object\":");
            json_str(stdout, it->object);
        }
        if (it->ok) {
            printf(",\"objects\":%" PRIu64 ",\"bytes\":%" PRIu64, it->objects, it->bytes);
        } else {
            printf(",\"problem\":");
            json_str(stdout, it->msg);
        }
        printf("}");
        return;
    }
    if (it->ok) {
        char h[32];
        human(it->bytes, h, sizeof(h));
        printf("ok    %-12s %s/%s (%" PRIu64 " objects, %s read)\n", it->repo, it->target,
               it->backup_id, it->objects, h);
    } else {
        printf("FAIL  %-12s %s/%s%s%s: %s\n", it->repo, it->target ? it->target : "*",
               it->backup_id ? it->backup_id : "*", it->object ? ": " : "",
               it->object ? it->object : "", it->msg);
    }
    fflush(stdout);
}

static int cmd_verify(const char *config, int argc, char **argv)
{
    static const struct option lo[] = {
        {"target", required_argument, NULL, 't'}, {"backup", required_argument, NULL, 'b'},
        {"repo", required_argument, NULL, 'r'},   {"no-key", no_argument, NULL, OPT_NO_KEY},
        {"json", no_argument, NULL, OPT_JSON},    {"progress", no_argument, NULL, OPT_PROGRESS},
        {"help", no_argument, NULL, 'h'},         {NULL, 0, NULL, 0}};
    tm_verify_opts o = {0};
    o.use_key = 1;
    progress prog = {isatty(2), 0, "verify"};
    verify_out vo = {0, 1};
    int ch;
    while ((ch = getopt_long(argc, argv, "+t:b:r:h", lo, NULL)) != -1) {
        switch (ch) {
        case 't':
            o.target = optarg;
            break;
        case 'b':
            o.backup_id = optarg;
            break;
        case 'r':
            o.repo = optarg;
            break;
        case OPT_NO_KEY:
            o.use_key = 0;
            break;
        case OPT_JSON:
            vo.json = 1;
            break;
        case OPT_PROGRESS:
            prog.on = 1;
            break;
        case 'h':
            fputs(verify_usage, stdout);
            return EXIT_OK;
        default:
            return usage_err("verify", "unknown option");
        }
    }
    if (optind != argc) {
        return usage_err("verify", "unexpected argument");
    }
    if (o.target != NULL && !tm_repo_valid_name(o.target)) {
        return usage_err("verify", "--target must be a name of [A-Za-z0-9._-]");
    }
    o.progress = progress_show;
    o.progress_arg = &prog;
    tm_agent_conf *conf = NULL;
    tm_repo_set *rs = NULL;
    int ex = load_set(config, o.use_key ? TM_REPO_KEYS : 0, &conf, &rs);
    if (ex != EXIT_OK) {
        return ex;
    }
    if (vo.json) {
        printf("{\"items\":[");
    }
    tm_verify_summary sum;
    tm_err err = {0};
    int rc = tm_repo_verify(rs, &o, verify_print, &vo, &sum, &err);
    progress_end(&prog);
    if (vo.json) {
        printf("],\"backups\":%" PRIu64 ",\"checked\":%" PRIu64 ",\"problems\":%" PRIu64
               ",\"bytes\":%" PRIu64 ",\"with_key\":%s",
               sum.backups, sum.checked, sum.problems, sum.bytes, o.use_key ? "true" : "false");
        if (rc != TM_OK && rc != TM_ECORRUPT) {
            printf(",\"error\":");
            json_str(stdout, err.msg);
        }
        printf("}\n");
    } else {
        printf("%" PRIu64 " backup(s), %" PRIu64 " cop%s checked %s the key, %" PRIu64
               " problem(s)\n",
               sum.backups, sum.checked, sum.checked == 1 ? "y" : "ies",
               o.use_key ? "with" : "without", sum.problems);
    }
    if (rc != TM_OK && rc != TM_ECORRUPT) {
        fprintf(stderr, "tidemark-agent repo verify: %s\n", err.msg);
    }
    tm_repo_set_free(rs);
    tm_agent_conf_free(conf);
    if (rc == TM_EINVAL) {
        return EXIT_USAGE;
    }
    return rc == TM_OK ? EXIT_OK : EXIT_FAIL;
}

/* ---- rotate-key and keygen ------------------------------------------- */

static const char *const rotate_usage =
    "Usage: tidemark-agent repo rotate-key --new-key-file F [--keep-old] [--json]\n"
    "\n"
    "Rewrap the data key of every backup in every repository under the master key\n"
    "in F (create it with `repo keygen`). Data is never re-encrypted. Runs again\n"
    "safely after an interruption. When every record is rewrapped, the records\n"
    "under the old keys are deleted (not with --keep-old); until then the old key\n"
    "still reads everything. Afterwards set encryption.master_key_file to F and\n"
    "remove the old key from the configuration.\n";

static void rotate_print(void *arg, const tm_verify_item *it)
{
    (void)arg;
    fprintf(stderr, "rotate-key: repo %s: %s/%s: %s\n", it->repo, it->target ? it->target : "*",
            it->backup_id ? it->backup_id : "*", it->msg);
}

static int cmd_rotate(const char *config, int argc, char **argv)
{
    static const struct option lo[] = {{"new-key-file", required_argument, NULL, OPT_NEW_KEY},
                                       {"keep-old", no_argument, NULL, OPT_KEEP_OLD},
                                       {"json", no_argument, NULL, OPT_JSON},
                                       {"help", no_argument, NULL, 'h'},
                                       {NULL, 0, NULL, 0}};
    const char *newf = NULL;
    int keep = 0, json = 0, ch;
    while ((ch = getopt_long(argc, argv, "+h", lo, NULL)) != -1) {
        switch (ch) {
        case OPT_NEW_KEY:
            newf = optarg;
            break;
        case OPT_KEEP_OLD:
            keep = 1;
            break;
        case OPT_JSON:
            json = 1;
            break;
        case 'h':
            fputs(rotate_usage, stdout);
            return EXIT_OK;
        default:
            return usage_err("rotate-key", "unknown option");
        }
    }
    if (newf == NULL || optind != argc) {
        return usage_err("rotate-key", "needs --new-key-file F");
    }
    tm_err err = {0};
    tm_master_key nk;
    if (tm_keys_load_master_file(newf, &nk, &err) != TM_OK) {
        fprintf(stderr, "tidemark-agent repo rotate-key: %s\n", err.msg);
        return EXIT_FAIL;
    }
    tm_agent_conf *conf = NULL;
    tm_repo_set *rs = NULL;
    int ex = load_set(config, TM_REPO_KEYS, &conf, &rs);
    if (ex != EXIT_OK) {
        tm_master_key_clear(&nk);
        return ex;
    }
    tm_rotate_stats st;
    int rc = tm_repo_rotate(rs, &nk, keep, rotate_print, NULL, &st, &err);
    if (json) {
        printf("{\"ok\":%s,\"new_key_id\":\"%s\",\"rewrapped\":%" PRIu64 ",\"already\":%" PRIu64
               ",\"deleted\":%" PRIu64 ",\"failed\":%" PRIu64 "}\n",
               rc == TM_OK ? "true" : "false", nk.id_hex, st.rewrapped, st.already, st.deleted,
               st.failed);
    } else {
        printf("new master key %s: %" PRIu64 " rewrapped, %" PRIu64 " already, %" PRIu64
               " old record(s) deleted, %" PRIu64 " failed\n",
               nk.id_hex, st.rewrapped, st.already, st.deleted, st.failed);
        if (rc == TM_OK) {
            printf("now set encryption.master_key_file: %s in %s and remove the old key\n", newf,
                   conf->path);
        }
    }
    if (rc != TM_OK) {
        fprintf(stderr, "tidemark-agent repo rotate-key: %s\n", err.msg);
    }
    tm_master_key_clear(&nk);
    tm_repo_set_free(rs);
    tm_agent_conf_free(conf);
    return rc == TM_OK ? EXIT_OK : EXIT_FAIL;
}

static const char *const keygen_usage =
    "Usage: tidemark-agent repo keygen FILE\n"
    "\n"
    "Create a new master key (32 random bytes, hex) in FILE, mode 0600. Refuses\n"
    "to replace an existing file. Keep a copy off the host: without the key no\n"
    "backup can be read. Prints the key id.\n";

static int cmd_keygen(int argc, char **argv)
{
    static const struct option lo[] = {{"help", no_argument, NULL, 'h'}, {NULL, 0, NULL, 0}};
    int ch;
    while ((ch = getopt_long(argc, argv, "+h", lo, NULL)) != -1) {
        if (ch == 'h') {
            fputs(keygen_usage, stdout);
            return EXIT_OK;
        }
        return usage_err("keygen", "unknown option");
    }
    if (optind != argc - 1) {
        return usage_err("keygen", "needs one FILE");
    }
    tm_master_key k;
    tm_err err = {0};
    if (tm_keys_generate_master(argv[optind], &k, &err) != TM_OK) {
        fprintf(stderr, "tidemark-agent repo keygen: %s\n", err.msg);
        return EXIT_FAIL;
    }
    printf("%s: new master key %s\n", argv[optind], k.id_hex);
    tm_master_key_clear(&k);
    return EXIT_OK;
}

int tm_repo_cmd(const char *config, int argc, char **argv)
{
    if (argc < 2 || strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0 ||
        strcmp(argv[1], "help") == 0) {
        fputs(top_usage, argc < 2 ? stderr : stdout);
        return argc < 2 ? EXIT_USAGE : EXIT_OK;
    }
    const char *cmd = argv[1];
    argc -= 1;
    argv += 1;
    optind = 0; /* glibc: re-initialise getopt for the subcommand */
    if (strcmp(cmd, "ls") == 0) {
        return cmd_ls(config, argc, argv);
    }
    if (strcmp(cmd, "put") == 0) {
        return cmd_put(config, argc, argv);
    }
    if (strcmp(cmd, "get") == 0) {
        return cmd_get(config, argc, argv);
    }
    if (strcmp(cmd, "verify") == 0) {
        return cmd_verify(config, argc, argv);
    }
    if (strcmp(cmd, "rotate-key") == 0) {
        return cmd_rotate(config, argc, argv);
    }
    if (strcmp(cmd, "keygen") == 0) {
        return cmd_keygen(argc, argv);
    }
    fprintf(stderr, "tidemark-agent repo: unknown command '%s'\n\n%s", cmd, top_usage);
    return EXIT_USAGE;
}
