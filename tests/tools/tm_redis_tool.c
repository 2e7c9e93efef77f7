/*
 * tm_redis_tool - drive the Redis engine's building blocks from tests, the
 * benchmark and by hand.
 *
 *   tm_redis_tool rdb-fetch HOST PORT [options] > out.rdb
 *       an RDB over SYNC; --fallback also tries BGSAVE when the server
 *       refuses SYNC, --bgsave goes straight to BGSAVE
 *   tm_redis_tool rdb-check FILE ("-" = stdin)
 *
 * Fetch options: --user U --pass-file F (the password, one line) --idle-ms N
 * --no-check (skip the validator). A fetch is checked as it streams: stdout
 * gets the bytes, and the result counts only when the RDB is whole.
 *
 * Results go to stderr (fetch) or stdout (check) as "key=value" lines:
 *   fetch: "fetch mode=sync|bgsave diskless=0|1 bytes=N wait_ms=N"
 *   both:  "db=N keys=N expires=N" per database, then "ok version=N bytes=N"
 * Exit: 0 ok, 1 error (the message on stderr, starting with
 * "verdict=retry|final|fallback"), 2 usage.
 */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "agent/engines/redis/bgsave.h"
#include "agent/engines/redis/rdb_check.h"
#include "agent/engines/redis/rdb_stream.h"

static void usage(void)
{
    fprintf(stderr, "usage: tm_redis_tool rdb-fetch HOST PORT [--user U] [--pass-file F] "
                    "[--idle-ms N] [--fallback|--bgsave] [--no-check] > out | rdb-check FILE\n");
    exit(2);
}

typedef struct fetch_tee {
    tm_rdb_check *check; /* may be NULL */
} fetch_tee;

/* The fetch callback: validator first (a corrupt stream stops early), then
 * stdout. A pipeline writer would take stdout's place. */
static int tee_write(void *arg, const void *buf, size_t len, tm_err *err)
{
    fetch_tee *t = arg;
    if (t->check != NULL) {
        int rc = tm_rdb_check_feed(t->check, buf, len, err);
        if (rc != 0) {
            return rc;
        }
    }
    const char *p = buf;
    while (len > 0) {
        ssize_t w = write(1, p, len);
        if (w < 0 && errno == EINTR) {
            continue;
        }
        if (w < 0) {
            return tm_err_set(err, TM_EIO, "write stdout: %s", strerror(errno));
        }
        p += w;
        len -= (size_t)w;
    }
    return 0;
}

static void print_counts(FILE *out, const tm_rdb_check *c)
{
    for (size_t i = 0; i < tm_rdb_check_ndbs(c); i++) {
        const tm_rdb_db_count *d = tm_rdb_check_db(c, i);
        fprintf(out, "db=%" PRIu64 " keys=%" PRIu64 " expires=%" PRIu64 "\n", d->db, d->keys,
                d->expires);
    }
    fprintf(out, "ok version=%d bytes=%" PRIu64 "\n", tm_rdb_check_version(c),
            tm_rdb_check_bytes(c));
}

static int read_pass(const char *path, char *out, size_t cap)
{
    FILE *f = fopen(path, "r");
    if (f == NULL || fgets(out, (int)cap, f) == NULL) {
        if (f != NULL) {
            fclose(f);
        }
        return -1;
    }
    fclose(f);
    out[strcspn(out, "\r\n")] = '\0';
    return 0;
}

static int cmd_fetch(int argc, char **argv)
{
    if (argc < 4) {
        usage();
    }
    tm_redis_conn_opts o = {.host = argv[2], .port = atoi(argv[3])};
    char pass[512];
    int fallback = 0, bgsave_only = 0, check = 1;
    for (int i = 4; i < argc; i++) {
        if (strcmp(argv[i], "--user") == 0 && i + 1 < argc) {
            o.user = argv[++i];
        } else if (strcmp(argv[i], "--pass-file") == 0 && i + 1 < argc) {
            if (read_pass(argv[++i], pass, sizeof(pass)) != 0) {
                fprintf(stderr, "cannot read the password file %s\n", argv[i]);
                return 1;
            }
            o.password = pass;
        } else if (strcmp(argv[i], "--idle-ms") == 0 && i + 1 < argc) {
            o.idle_timeout_ms = atoi(argv[++i]);
        } else if (strcmp(argv[i], "--fallback") == 0) {
            fallback = 1;
        } else if (strcmp(argv[i], "--bgsave") == 0) {
            bgsave_only = 1;
        } else if (strcmp(argv[i], "--no-check") == 0) {
            check = 0;
        } else {
            usage();
        }
    }
    fetch_tee t = {0};
    tm_err err = {0};
    if (check && tm_rdb_check_new(&t.check, &err) != 0) {
        fprintf(stderr, "%s\n", err.msg);
        return 1;
    }
    tm_redis_fetch_result res;
    const char *mode = "sync";
    int rc;
    if (bgsave_only) {
        mode = "bgsave";
        rc = tm_redis_bgsave_fetch(&o, NULL, tee_write, &t, &res, &err);
    } else {
        rc = tm_redis_rdb_fetch(&o, tee_write, &t, &res, &err);
        if (rc != 0 && fallback && res.verdict == TM_REDIS_FALLBACK && res.bytes == 0) {
            fprintf(stderr, "sync refused, falling back to BGSAVE: %s\n", err.msg);
            mode = "bgsave";
            tm_err_clear(&err);
            rc = tm_redis_bgsave_fetch(&o, NULL, tee_write, &t, &res, &err);
        }
    }
    if (rc == 0 && t.check != NULL) {
        rc = tm_rdb_check_finish(t.check, &err);
    }
    if (rc != 0) {
        fprintf(stderr, "verdict=%s code=%s: %s\n", tm_redis_verdict_name(res.verdict),
                tm_strerror(rc), err.msg);
        tm_rdb_check_free(t.check);
        return 1;
    }
    fprintf(stderr, "fetch mode=%s diskless=%d bytes=%" PRIu64 " wait_ms=%" PRIu64 "\n", mode,
            res.diskless, res.bytes, res.wait_ms);
    if (t.check != NULL) {
        print_counts(stderr, t.check);
    }
    tm_rdb_check_free(t.check);
    return 0;
}

static int cmd_check(const char *path)
{
    int fd = strcmp(path, "-") == 0 ? 0 : open(path, O_RDONLY);
    if (fd < 0) {
        fprintf(stderr, "open %s: %s\n", path, strerror(errno));
        return 1;
    }
    tm_rdb_check *c = NULL;
    tm_err err = {0};
    int rc = tm_rdb_check_new(&c, &err);
    static char buf[1 << 16];
    while (rc == 0) {
        ssize_t n = read(fd, buf, sizeof(buf));
        if (n < 0 && errno == EINTR) {
            continue;
        }
        if (n < 0) {
            rc = tm_err_set(&err, TM_EIO, "read %s: %s", path, strerror(errno));
            break;
        }
        if (n == 0) {
            rc = tm_rdb_check_finish(c, &err);
            break;
        }
        rc = tm_rdb_check_feed(c, buf, (size_t)n, &err);
    }
    if (fd != 0) {
        close(fd);
    }
    if (rc != 0) {
        fprintf(stderr, "%s: %s\n", path, err.msg);
        tm_rdb_check_free(c);
        return 1;
    }
    print_counts(stdout, c);
    tm_rdb_check_free(c);
    return 0;
}

int main(int argc, char **argv)
{
    if (argc < 2) {
        usage();
    }
    if (strcmp(argv[1], "rdb-fetch") == 0) {
        return cmd_fetch(argc, argv);
    }
    if (strcmp(argv[1], "rdb-check") == 0 && argc == 3) {
        return cmd_check(argv[2]);
    }
    usage();
    return 2;
}
