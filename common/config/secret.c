/*
 * secret.c - secrets: `x: env:NAME` or `x_file: /path`, resolved in memory,
 * never logged.
 */
#include "common/config/internal.h"

#include <inttypes.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <errno.h>

#include "common/secrets.h"
#include "common/util.h"

/* Secrets are tokens, not documents. */
#define SECRET_MAX_BYTES (64 * 1024)

static void strip_trailing_space(char *s, size_t *len)
{
    while (*len > 0 && (s[*len - 1] == ' ' || s[*len - 1] == '\t' || s[*len - 1] == '\r' ||
                        s[*len - 1] == '\n')) {
        s[--*len] = '\0';
    }
}

int tm_secret_resolve(const char *ref, const char *file, char **out, tm_err *err)
{
    *out = NULL;
    if ((ref == NULL) == (file == NULL)) {
        return tm_err_set(err, TM_EINVAL, "exactly one of a secret reference or file is needed");
    }
    if (ref != NULL) {
        if (strncmp(ref, "env:", 4) != 0) {
            return tm_err_set(err, TM_ECONFIG,
                              "inline secrets are not allowed, expected env:NAME or a _file path");
        }
        const char *name = ref + 4;
        bool ok = name[0] != '\0' && !(name[0] >= '0' && name[0] <= '9') && strlen(name) <= 128;
        for (const char *p = name; ok && *p; p++) {
            ok = (*p >= 'A' && *p <= 'Z') || (*p >= 'a' && *p <= 'z') || (*p >= '0' && *p <= '9') ||
                 *p == '_';
        }
        if (!ok) {
            return tm_err_set(err, TM_ECONFIG,
                              "'%.80s' is not a valid environment variable name, expected "
                              "env:[A-Za-z_][A-Za-z0-9_]*",
                              name);
        }
        const char *val = getenv(name);
        if (val == NULL) {
            return tm_err_set(err, TM_ECONFIG, "environment variable %s is not set", name);
        }
        char *s = strdup(val);
        if (s == NULL) {
            return tm_err_set(err, TM_ENOMEM, "out of memory");
        }
        size_t len = strlen(s);
        strip_trailing_space(s, &len);
        if (len == 0) {
            free(s);
            return tm_err_set(err, TM_ECONFIG, "environment variable %s is empty", name);
        }
        *out = s;
        return 0;
    }
    char *buf = NULL;
    size_t len = 0;
    /* Warned, not refused: a token file shared with a group on purpose
     * (e.g. a deploy tool's) is a choice; the warning makes it a visible one.
     * A missing file is reported by the read below. */
    tm_err ignored;
    tm_secret_file_check(file, "secret file", TM_SECRET_WARN, &ignored);
    int rc = tm_file_read(file, &buf, &len, err);
    if (rc != 0) {
        if (rc == TM_ENOMEM) {
            return rc;
        }
        if (err != NULL) {
            tm_err_prefix(err, "cannot read secret file");
            err->code = TM_ECONFIG;
        }
        return TM_ECONFIG;
    }
    rc = 0;
    if (len > SECRET_MAX_BYTES) {
        rc = tm_err_set(err, TM_ECONFIG, "secret file %s is larger than 64 KiB, expected a token",
                        file);
    } else if (memchr(buf, '\0', len) != NULL) {
        rc = tm_err_set(err, TM_ECONFIG, "secret file %s contains a NUL byte, expected text", file);
    } else {
        strip_trailing_space(buf, &len);
        if (len == 0) {
            rc = tm_err_set(err, TM_ECONFIG, "secret file %s is empty", file);
        }
    }
    if (rc != 0) {
        explicit_bzero(buf, len);
        free(buf);
        return rc;
    }
    *out = buf;
    return 0;
}
