/*
 * agent.c - agent.yaml: its top-level keys, the section table, free, parse
 * and load.
 */
#include "common/config/internal.h"

#include <inttypes.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const cyaml_schema_field_t agent_fields[] = {
    CYAML_FIELD_MAPPING("coordinator", REQ, struct raw_agent, coordinator,
                        tm_cfg_agent_coordinator_fields),
    STR("state_dir", OPT, struct raw_agent, state_dir),
    CYAML_FIELD_SEQUENCE("restore_roots", OPT | CYAML_FLAG_POINTER, struct raw_agent, restore_roots,
                         &tm_cfg_string_entry, 0, 64),
    STR("hostname", OPT, struct raw_agent, hostname),
    /* Arbitrary keys: libcyaml cannot name them, so yaml.c's tree is
     * read directly (tm_cfg_agent_labels). */
    CYAML_FIELD_IGNORE("labels", OPT),
    CYAML_FIELD_SEQUENCE("targets", OPT | CYAML_FLAG_POINTER, struct raw_agent, targets,
                         &tm_cfg_target_entry, 0, CYAML_UNLIMITED),
    CYAML_FIELD_SEQUENCE("repositories", OPT | CYAML_FLAG_POINTER, struct raw_agent, repositories,
                         &tm_cfg_repo_entry, 0, 64),
    CYAML_FIELD_MAPPING("encryption", OPT, struct raw_agent, encryption, tm_cfg_encryption_fields),
    CYAML_FIELD_MAPPING("log", OPT, struct raw_agent, log, tm_cfg_log_fields),
    CYAML_FIELD_END,
};

static const cyaml_schema_value_t agent_schema = {
    CYAML_VALUE_MAPPING(CYAML_FLAG_POINTER, struct raw_agent, agent_fields),
};

typedef int (*agent_section)(tm_cv *v, const struct raw_agent *r, tm_agent_conf *c);

static const agent_section agent_sections[] = {
    tm_cfg_agent_coordinator,  tm_cfg_agent_state_dir,  tm_cfg_agent_restore_roots,
    tm_cfg_agent_hostname,     tm_cfg_agent_labels,     tm_cfg_agent_targets,
    tm_cfg_agent_repositories, tm_cfg_agent_encryption, tm_cfg_agent_log,
};

void tm_agent_conf_free(tm_agent_conf *c)
{
    if (c == NULL) {
        return;
    }
    free(c->path);
    free(c->coordinator_url);
    tm_cv_free_secret(c->enrollment_token);
    tm_cv_free_tls(&c->tls);
    free(c->state_dir);
    for (size_t i = 0; i < c->n_restore_roots; i++) {
        free(c->restore_roots[i]);
    }
    free(c->restore_roots);
    free(c->hostname);
    for (size_t i = 0; i < c->n_labels; i++) {
        free(c->labels[i].key);
        free(c->labels[i].value);
    }
    free(c->labels);
    tm_cfg_targets_free(c->targets, c->n_targets);
    for (size_t i = 0; i < c->n_repos; i++) {
        tm_repo_conf *r = &c->repos[i];
        free(r->name);
        free(r->region);
        free(r->type);
        free(r->path);
        free(r->endpoint);
        free(r->bucket);
        free(r->signing_region);
        free(r->prefix);
        tm_cv_free_secret(r->access_key);
        tm_cv_free_secret(r->secret_key);
        free(r->ca_file);
        free(r->sse);
        free(r->sse_kms_key_id);
        free(r->storage_class);
        free(r->object_lock_mode);
    }
    free(c->repos);
    free(c->encryption.master_key_ref);
    for (size_t i = 0; i < c->encryption.n_old_master_keys; i++) {
        free(c->encryption.old_master_key_refs[i]);
    }
    free(c->encryption.old_master_key_refs);
    free(c);
}

static int run_agent(tm_cv *v, const void *raw, void *conf)
{
    for (size_t i = 0; i < sizeof(agent_sections) / sizeof(agent_sections[0]); i++) {
        int rc = agent_sections[i](v, raw, conf);
        if (rc != 0) {
            return rc;
        }
    }
    return 0;
}

int tm_agent_conf_parse(const char *name, const char *buf, size_t len, tm_agent_conf **out,
                        tm_err *err)
{
    *out = NULL;
    if (name == NULL) {
        name = "agent.yaml";
    }
    tm_agent_conf *c = calloc(1, sizeof(*c));
    if (c == NULL) {
        return tm_err_set(err, TM_ENOMEM, "%s: out of memory", name);
    }
    int rc = tm_cfg_parse(name, buf, len, &agent_schema, run_agent, c, &c->path, err);
    if (rc != 0) {
        tm_agent_conf_free(c);
        return rc;
    }
    *out = c;
    return 0;
}

int tm_agent_conf_load(const char *path, tm_agent_conf **out, tm_err *err)
{
    char *buf = NULL;
    size_t len = 0;
    *out = NULL;
    int rc = tm_cfg_read(path, &buf, &len, err);
    if (rc == 0) {
        rc = tm_agent_conf_parse(path, buf, len, out, err);
    }
    free(buf);
    return rc;
}
