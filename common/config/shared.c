/*
 * shared.c - the tls: and log: blocks and plain string lists, which both
 * coordinator.yaml and agent.yaml have.
 */
#include "common/config/internal.h"

#include <inttypes.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/secrets.h"

const cyaml_schema_field_t tm_cfg_log_fields[] = {
    STR("level", OPT, struct raw_log, level),
    CYAML_FIELD_END,
};

/* Server side TLS (coordinator). */
const cyaml_schema_field_t tm_cfg_server_tls_fields[] = {
    STR("cert_file", OPT, struct raw_tls, cert_file),
    STR("key_file", OPT, struct raw_tls, key_file),
    STR("ca_file", OPT, struct raw_tls, ca_file),
    CYAML_FIELD_BOOL("require_client_cert", OPT, struct raw_tls, require_client_cert),
    CYAML_FIELD_END,
};

/* Client side TLS (agent). */
const cyaml_schema_field_t tm_cfg_client_tls_fields[] = {
    STR("ca_file", OPT, struct raw_tls, ca_file),
    STR("cert_file", OPT, struct raw_tls, cert_file),
    STR("key_file", OPT, struct raw_tls, key_file),
    STR("server_name", OPT, struct raw_tls, server_name),
    CYAML_FIELD_END,
};

const cyaml_schema_value_t tm_cfg_string_entry = {
    CYAML_VALUE_STRING(CYAML_FLAG_POINTER, char, 0, CYAML_UNLIMITED),
};

/* cert_file and key_file come as a pair; paths resolved. */
int tm_cv_tls_files(tm_cv *v, const char *base, const struct raw_tls *r, tm_tls_conf *t)
{
    char p[128];
    struct {
        const char *key;
        const char *val;
        char **out;
    } files[] = {
        {"cert_file", r->cert_file, &t->cert_file},
        {"key_file", r->key_file, &t->key_file},
        {"ca_file", r->ca_file, &t->ca_file},
    };
    for (size_t i = 0; i < 3; i++) {
        if (files[i].val != NULL) {
            snprintf(p, sizeof(p), "%s.%s", base, files[i].key);
            int rc = tm_cv_path(v, p, files[i].val, files[i].out);
            if (rc != 0) {
                return rc;
            }
        }
    }
    if (t->key_file != NULL) {
        /* Warned, not refused: Debian-style ssl-cert groups read keys on
         * purpose. A missing file is reported when TLS is set up. */
        tm_err ignored;
        tm_secret_file_check(t->key_file, "TLS private key", TM_SECRET_WARN, &ignored);
    }
    if ((r->cert_file != NULL) != (r->key_file != NULL)) {
        const char *set = r->cert_file ? "cert_file" : "key_file";
        const char *unset = r->cert_file ? "key_file" : "cert_file";
        snprintf(p, sizeof(p), "%s.%s", base, set);
        return tm_ydoc_err_key(v->doc, v->err, p, "%s is set without %s, expected both", set,
                               unset);
    }
    return 0;
}

void tm_cv_free_tls(tm_tls_conf *t)
{
    free(t->cert_file);
    free(t->key_file);
    free(t->ca_file);
    free(t->server_name);
}
