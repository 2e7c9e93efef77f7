/*
 * agent_encryption.c - agent.yaml encryption: the master key references and compression.
 */
#include "common/config/internal.h"

#include <inttypes.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

const cyaml_schema_field_t tm_cfg_encryption_fields[] = {
    STR("master_key", OPT, struct raw_encryption, master_key),
    STR("master_key_file", OPT, struct raw_encryption, master_key_file),
    CYAML_FIELD_SEQUENCE("old_master_key_files", OPT | CYAML_FLAG_POINTER, struct raw_encryption,
                         old_master_key_files, &tm_cfg_string_entry, 0, 64),
    CYAML_FIELD_INT("compress_level", OPT, struct raw_encryption, compress_level),
    CYAML_FIELD_END,
};

/* A master key reference: "env:NAME" kept as is, a path made absolute. */
static int v_key_ref(tm_cv *v, const char *path, const char *ref, bool env_ok, char **out)
{
    if (strncmp(ref, "env:", 4) == 0) {
        if (!env_ok) {
            return tm_ydoc_err(v->doc, v->err, path, "expected a file path, not env:");
        }
        return tm_cv_dup(v, ref, out);
    }
    return tm_cv_path(v, path, ref, out);
}

int tm_cfg_agent_encryption(tm_cv *v, const struct raw_agent *r, tm_agent_conf *c)
{
    const struct raw_encryption *re = &r->encryption;
    tm_encryption_conf *e = &c->encryption;
    int rc =
        tm_cv_int(v, "encryption.compress_level", re->compress_level, 3, 1, 19, &e->compress_level);
    if (rc != 0 || !tm_cv_has(v, "encryption")) {
        return rc;
    }
    if (re->master_key != NULL && re->master_key_file != NULL) {
        return tm_ydoc_err_key(v->doc, v->err, "encryption.master_key_file",
                               "both master_key and master_key_file are set, expected exactly "
                               "one");
    }
    if (re->master_key == NULL && re->master_key_file == NULL) {
        return tm_ydoc_err(v->doc, v->err, "encryption",
                           "no master key, expected master_key_file: /path (create one with "
                           "tidemark-agent repo keygen FILE) or master_key: env:NAME");
    }
    if (re->master_key != NULL) {
        if (strncmp(re->master_key, "env:", 4) != 0 || re->master_key[4] == '\0') {
            return tm_ydoc_err(v->doc, v->err, "encryption.master_key",
                               "inline keys are not allowed, expected master_key: env:NAME or "
                               "master_key_file: /path");
        }
        rc = tm_cv_dup(v, re->master_key, &e->master_key_ref);
    } else {
        rc = v_key_ref(v, "encryption.master_key_file", re->master_key_file, false,
                       &e->master_key_ref);
    }
    if (rc != 0 || re->old_master_key_files_count == 0) {
        return rc;
    }
    e->old_master_key_refs = calloc(re->old_master_key_files_count, sizeof(char *));
    if (e->old_master_key_refs == NULL) {
        return tm_cv_oom(v);
    }
    for (uint32_t i = 0; i < re->old_master_key_files_count; i++) {
        char p[64];
        snprintf(p, sizeof(p), "encryption.old_master_key_files[%" PRIu32 "]", i);
        rc = v_key_ref(v, p, re->old_master_key_files[i], true, &e->old_master_key_refs[i]);
        if (rc != 0) {
            return rc;
        }
        e->n_old_master_keys = i + 1;
    }
    return 0;
}
