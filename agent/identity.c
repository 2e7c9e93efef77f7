#include "agent/identity.h"
#include "common/crypto.h"
#include "common/secrets.h"
#include "common/util.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

static void identity_path(const char *state_dir, char *out, size_t cap)
{
    snprintf(out, cap, "%s/identity", state_dir);
}

int tm_identity_load(const char *state_dir, tm_identity *out, tm_err *err)
{
    char path[4096];
    char *buf = NULL;
    size_t len = 0;
    identity_path(state_dir, path, sizeof(path));
    /* Refused, not warned: whoever can read it can act as this agent. A
     * missing file stays TM_ENOENT (first start: register). */
    int rc = tm_secret_file_check(path, "agent identity", TM_SECRET_REFUSE, err);
    if (rc == TM_OK) {
        rc = tm_file_read(path, &buf, &len, err);
    }
    if (rc != TM_OK) {
        return rc;
    }
    memset(out, 0, sizeof(*out));
    char *save = NULL;
    for (char *line = strtok_r(buf, "\n", &save); line != NULL;
         line = strtok_r(NULL, "\n", &save)) {
        if (strncmp(line, "id=", 3) == 0) {
            snprintf(out->id, sizeof(out->id), "%s", line + 3);
        } else if (strncmp(line, "secret=", 7) == 0) {
            snprintf(out->secret, sizeof(out->secret), "%s", line + 7);
        }
    }
    tm_secure_zero(buf, len);
    free(buf);
    if (out->id[0] == '\0' || out->secret[0] == '\0') {
        return tm_err_set(err, TM_ECORRUPT,
                          "%s: missing id= or secret= line; remove the file to register anew",
                          path);
    }
    return TM_OK;
}

int tm_identity_save(const char *state_dir, const tm_identity *id, tm_err *err)
{
    char path[4096];
    char buf[256];
    int rc = tm_mkdir_p(state_dir, 0700, err);
    if (rc != TM_OK) {
        return rc;
    }
    identity_path(state_dir, path, sizeof(path));
    int n = snprintf(buf, sizeof(buf), "id=%s\nsecret=%s\n", id->id, id->secret);
    rc = tm_secret_file_write(path, buf, (size_t)n, 1, err);
    tm_secure_zero(buf, sizeof(buf));
    return rc;
}
