/*
 * tm_storage_tool - drive common/storage from tests and by hand.
 *
 *   tm_storage_tool --backend s3 --endpoint URL --bucket B
 *                   --access-key-env VAR --secret-key-env VAR [options] CMD ...
 *   tm_storage_tool --backend posix --path DIR CMD ...
 *
 *   put KEY FILE                      ("-" = stdin)
 *   get KEY FILE [--offset N --length N]  ("-" = stdout)
 *   ls [PREFIX] [--max N]             key<TAB>size<TAB>mtime per line
 *   stat KEY                          size<TAB>mtime
 *   rm KEY...
 *   cp SRC DST
 *
 * Options: --region R --prefix P --part-size BYTES --max-retries N
 * --timeout-ms N --virtual-host --ca-file F --insecure --sse S
 * --storage-class C --lock-mode M --lock-days N
 * On failure: the error message on stderr, exit 1 (2 for usage).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/storage.h"
#include "common/util.h"

static void usage(void)
{
    fprintf(stderr, "usage: tm_storage_tool --backend posix|s3 [options] "
                    "put KEY FILE | get KEY FILE [--offset N --length N] | ls [PREFIX] | "
                    "stat KEY | rm KEY... | cp SRC DST\n");
    exit(2);
}

static int cmd_put(tm_storage *s, const char *key, const char *file, tm_err *err)
{
    FILE *f = strcmp(file, "-") == 0 ? stdin : fopen(file, "rb");
    if (f == NULL) {
        return tm_err_set(err, TM_EIO, "open %s failed", file);
    }
    tm_storage_writer *w;
    int rc = tm_storage_put_open(s, key, &w, err);
    if (rc != TM_OK) {
        if (f != stdin) {
            fclose(f);
        }
        return rc;
    }
    size_t cap = 1 << 20;
    char *buf = malloc(cap);
    size_t n;
    while (rc == TM_OK && (n = fread(buf, 1, cap, f)) > 0) {
        rc = tm_storage_write(w, buf, n, err);
    }
    if (rc == TM_OK && ferror(f)) {
        rc = tm_err_set(err, TM_EIO, "read %s failed", file);
    }
    free(buf);
    if (f != stdin) {
        fclose(f);
    }
    if (rc != TM_OK) {
        tm_storage_put_abort(w);
        return rc;
    }
    return tm_storage_put_commit(w, err);
}

static int cmd_get(tm_storage *s, const char *key, const char *file, uint64_t off, uint64_t len,
                   tm_err *err)
{
    tm_storage_reader *r;
    int rc = tm_storage_get_open(s, key, off, len, &r, err);
    if (rc != TM_OK) {
        return rc;
    }
    FILE *f = strcmp(file, "-") == 0 ? stdout : fopen(file, "wb");
    if (f == NULL) {
        tm_storage_get_close(r);
        return tm_err_set(err, TM_EIO, "create %s failed", file);
    }
    size_t cap = 1 << 20;
    char *buf = malloc(cap);
    for (;;) {
        size_t got;
        rc = tm_storage_read(r, buf, cap, &got, err);
        if (rc != TM_OK || got == 0) {
            break;
        }
        if (fwrite(buf, 1, got, f) != got) {
            rc = tm_err_set(err, TM_EIO, "write %s failed", file);
            break;
        }
    }
    free(buf);
    tm_storage_get_close(r);
    if (f != stdout && fclose(f) != 0 && rc == TM_OK) {
        rc = tm_err_set(err, TM_EIO, "close %s failed", file);
    }
    return rc;
}

static int cmd_ls(tm_storage *s, const char *prefix, size_t max, tm_err *err)
{
    char *token = NULL;
    for (;;) {
        tm_storage_info *items;
        size_t n;
        char *next;
        int rc = tm_storage_list(s, prefix, token, max, &items, &n, &next, err);
        free(token);
        if (rc != TM_OK) {
            return rc;
        }
        for (size_t i = 0; i < n; i++) {
            printf("%s\t%llu\t%lld\n", items[i].key, (unsigned long long)items[i].size,
                   (long long)items[i].mtime);
        }
        tm_storage_infos_free(items, n);
        if (next == NULL) {
            return TM_OK;
        }
        token = next;
    }
}

static const char *env_or_die(const char *var)
{
    const char *v = getenv(var);
    if (v == NULL) {
        fprintf(stderr, "tm_storage_tool: environment variable %s is not set\n", var);
        exit(2);
    }
    return v;
}

int main(int argc, char **argv)
{
    tm_storage_opts o = {.verify_tls = 1, .path_style = 1};
    uint64_t off = 0, len = 0;
    size_t max = 1000;
    const char **pos = calloc((size_t)argc, sizeof(*pos));
    int npos = 0;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        const char *v = i + 1 < argc ? argv[i + 1] : NULL;
#define OPT(name) (strcmp(a, name) == 0 && v != NULL && (i++, 1))
        if (OPT("--backend")) {
            o.backend = v;
        } else if (OPT("--path")) {
            o.path = v;
        } else if (OPT("--endpoint")) {
            o.endpoint = v;
        } else if (OPT("--bucket")) {
            o.bucket = v;
        } else if (OPT("--region")) {
            o.region = v;
        } else if (OPT("--prefix")) {
            o.prefix = v;
        } else if (OPT("--access-key-env")) {
            o.access_key = env_or_die(v);
        } else if (OPT("--secret-key-env")) {
            o.secret_key = env_or_die(v);
        } else if (OPT("--ca-file")) {
            o.ca_file = v;
        } else if (OPT("--part-size")) {
            o.part_size = strtoull(v, NULL, 10);
        } else if (OPT("--max-retries")) {
            o.max_retries = atoi(v);
        } else if (OPT("--timeout-ms")) {
            o.timeout_ms = atoi(v);
        } else if (OPT("--sse")) {
            o.sse = v;
        } else if (OPT("--storage-class")) {
            o.storage_class = v;
        } else if (OPT("--lock-mode")) {
            o.object_lock_mode = v;
        } else if (OPT("--lock-days")) {
            o.object_lock_retain_days = atoll(v);
        } else if (OPT("--offset")) {
            off = strtoull(v, NULL, 10);
        } else if (OPT("--length")) {
            len = strtoull(v, NULL, 10);
        } else if (OPT("--max")) {
            max = strtoull(v, NULL, 10);
        } else if (strcmp(a, "--virtual-host") == 0) {
            o.path_style = 0;
        } else if (strcmp(a, "--insecure") == 0) {
            o.verify_tls = 0;
        } else if (a[0] == '-' && a[1] == '-') {
            usage();
        } else {
            pos[npos++] = a;
        }
#undef OPT
    }
    if (npos < 1 || o.backend == NULL) {
        usage();
    }
    tm_err err = {0};
    tm_storage *s;
    int rc = tm_storage_open(&s, &o, &err);
    if (rc != TM_OK) {
        fprintf(stderr, "tm_storage_tool: %s\n", err.msg);
        return 1;
    }
    const char *cmd = pos[0];
    if (strcmp(cmd, "put") == 0 && npos == 3) {
        rc = cmd_put(s, pos[1], pos[2], &err);
    } else if (strcmp(cmd, "get") == 0 && npos == 3) {
        rc = cmd_get(s, pos[1], pos[2], off, len, &err);
    } else if (strcmp(cmd, "ls") == 0 && npos <= 2) {
        rc = cmd_ls(s, npos == 2 ? pos[1] : "", max, &err);
    } else if (strcmp(cmd, "stat") == 0 && npos == 2) {
        tm_storage_info info;
        rc = tm_storage_stat(s, pos[1], &info, &err);
        if (rc == TM_OK) {
            printf("%llu\t%lld\n", (unsigned long long)info.size, (long long)info.mtime);
        }
    } else if (strcmp(cmd, "rm") == 0 && npos >= 2) {
        rc = tm_storage_delete(s, pos + 1, (size_t)(npos - 1), &err);
    } else if (strcmp(cmd, "cp") == 0 && npos == 3) {
        rc = tm_storage_copy(s, pos[1], pos[2], &err);
    } else {
        tm_storage_free(s);
        usage();
    }
    tm_storage_free(s);
    free(pos);
    if (rc != TM_OK) {
        fprintf(stderr, "tm_storage_tool: %s [%s]\n", err.msg, tm_strerror(rc));
        return 1;
    }
    return 0;
}
