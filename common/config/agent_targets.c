/*
 * agent_targets.c - agent.yaml targets: name, kind, engine_version, and the
 * engine's own block (the block's key is the kind's name).
 *
 * common/ knows no engine: the kinds come from the kind table
 * (engine_kinds.c) and each engine block from a tm_target_schema the agent
 * registers before loading (agent/engine.c). The target mapping's cyaml
 * fields are the three common keys plus one optional mapping per registered
 * schema, so the structural walk reports unknown keys inside a block with
 * their line like anywhere else; a block the agent has no schema for is an
 * unknown key.
 */
#include "common/config/internal.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/engine_kinds.h"

static const tm_target_schema *schemas[TM_TARGET_SCHEMAS_MAX];
static size_t n_schemas;

/* The common keys, then one slot per registered schema, then the end. */
static cyaml_schema_field_t target_fields[3 + TM_TARGET_SCHEMAS_MAX + 1] = {
    STR("name", REQ, struct raw_target, name),
    STR("kind", REQ, struct raw_target, kind),
    STR("engine_version", OPT, struct raw_target, engine_version),
    CYAML_FIELD_END,
};

const cyaml_schema_value_t tm_cfg_target_entry = {
    CYAML_VALUE_MAPPING(CYAML_FLAG_DEFAULT, struct raw_target, target_fields),
};

int tm_config_set_target_schemas(const tm_target_schema *const *list, size_t n)
{
    if (n > TM_TARGET_SCHEMAS_MAX) {
        return TM_EINVAL;
    }
    for (size_t i = 0; i < n; i++) {
        schemas[i] = list[i];
        target_fields[3 + i] = (cyaml_schema_field_t){
            .key = list[i]->kind,
            .data_offset = (uint32_t)(offsetof(struct raw_target, engine) + i * sizeof(void *)),
            .value =
                {
                    .type = CYAML_MAPPING,
                    .flags = CYAML_FLAG_OPTIONAL | CYAML_FLAG_POINTER,
                    .data_size = (uint32_t)list[i]->raw_size,
                    .mapping = {.fields = list[i]->fields},
                },
        };
    }
    n_schemas = n;
    target_fields[3 + n] = (cyaml_schema_field_t)CYAML_FIELD_END;
    return 0;
}

/* The engine blocks of target i: one for another kind is refused (a block
 * that would be silently ignored is a mistake worth naming); the kind's own
 * is handed to its schema, present or not. */
static int target_engine(tm_cv *v, uint32_t i, const struct raw_target *rt, tm_target_conf *t)
{
    for (size_t s = 0; s < n_schemas; s++) {
        char base[96];
        snprintf(base, sizeof(base), "targets[%" PRIu32 "].%s", i, schemas[s]->kind);
        bool present = tm_cv_has(v, base);
        if (strcmp(schemas[s]->kind, rt->kind) != 0) {
            if (present) {
                return tm_ydoc_err_key(v->doc, v->err, base,
                                       "a %s: block on a target of kind %s; remove it or set "
                                       "kind: %s",
                                       schemas[s]->kind, rt->kind, schemas[s]->kind);
            }
            continue;
        }
        t->schema = schemas[s];
        const void *raw = rt->engine[s];
        void *zero = NULL;
        if (present && raw == NULL) {
            /* "<kind>:" with nothing under it: a block with every default. */
            zero = calloc(1, schemas[s]->raw_size);
            if (zero == NULL) {
                return tm_cv_oom(v);
            }
            raw = zero;
        }
        int rc = schemas[s]->validate(v, base, present ? raw : NULL, &t->engine_conf);
        free(zero);
        if (rc != 0) {
            return rc;
        }
    }
    return 0;
}

int tm_cfg_agent_targets(tm_cv *v, const struct raw_agent *r, tm_agent_conf *c)
{
    if (r->targets_count == 0) {
        return 0;
    }
    c->targets = calloc(r->targets_count, sizeof(*c->targets));
    if (c->targets == NULL) {
        return tm_cv_oom(v);
    }
    for (uint32_t i = 0; i < r->targets_count; i++) {
        const struct raw_target *rt = &r->targets[i];
        tm_target_conf *t = &c->targets[i];
        c->n_targets = i + 1;
        char p[96];
        snprintf(p, sizeof(p), "targets[%" PRIu32 "].name", i);
        int rc = tm_cv_name(v, p, rt->name);
        for (uint32_t j = 0; rc == 0 && j < i; j++) {
            if (strcmp(r->targets[j].name, rt->name) == 0) {
                rc = tm_ydoc_err(v->doc, v->err, p,
                                 "duplicate target name '%s', also used by targets[%" PRIu32
                                 "], names must be unique",
                                 rt->name, j);
            }
        }
        if (rc != 0) {
            return rc;
        }
        snprintf(p, sizeof(p), "targets[%" PRIu32 "].kind", i);
        if (tm_engine_kind_by_name(rt->kind) == NULL) {
            return tm_ydoc_err(v->doc, v->err, p, "unknown kind '%.40s', expected %s", rt->kind,
                               tm_engine_kind_list(true));
        }
        rc = tm_cv_dup(v, rt->name, &t->name);
        if (rc == 0) {
            rc = tm_cv_dup(v, rt->kind, &t->kind);
        }
        if (rc == 0 && rt->engine_version != NULL) {
            rc = tm_cv_dup(v, rt->engine_version, &t->engine_version);
        }
        if (rc == 0) {
            rc = target_engine(v, i, rt, t);
        }
        if (rc != 0) {
            return rc;
        }
    }
    return 0;
}

void tm_cfg_targets_free(tm_target_conf *targets, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        free(targets[i].name);
        free(targets[i].kind);
        free(targets[i].engine_version);
        if (targets[i].schema != NULL && targets[i].engine_conf != NULL) {
            targets[i].schema->free_conf(targets[i].engine_conf);
        }
    }
    free(targets);
}

const void *tm_target_engine_conf(const tm_target_conf *t, const tm_target_schema *schema)
{
    return t != NULL && t->schema == schema ? t->engine_conf : NULL;
}
