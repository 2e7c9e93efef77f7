/*
 * coord_replication.c - coordinator.yaml policies[].replication: cross-repository checks.
 */
#include "common/config/internal.h"

#include <inttypes.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const cyaml_schema_value_t repl_repo_entry = {
    CYAML_VALUE_STRING(CYAML_FLAG_POINTER, char, 0, CYAML_UNLIMITED),
};

const cyaml_schema_field_t tm_cfg_policy_replication_fields[] = {
    CYAML_FIELD_SEQUENCE("repositories", OPT | CYAML_FLAG_POINTER, struct raw_policy_replication,
                         repositories, &repl_repo_entry, 0, 64),
    CYAML_FIELD_INT("min_regions", OPT, struct raw_policy_replication, min_regions),
    STR("check", OPT, struct raw_policy_replication, check),
    STR("lag_threshold", OPT, struct raw_policy_replication, lag_threshold),
    CYAML_FIELD_END,
};

/* policies[i].replication: which repositories must hold everything, how
 * often that is checked, how much lag is tolerated. */
int tm_cfg_coord_policy_replication(tm_cv *v, const char *b, const struct raw_policy_replication *r,
                                    tm_policy_conf *p)
{
    char k[128];
#define KR(sub) (snprintf(k, sizeof(k), "%s.replication.%s", b, sub), k)
    p->has_replication = 1;
    int rc = 0;
    if (r->repositories_count > 0) {
        p->repl_repositories = calloc(r->repositories_count, sizeof(char *));
        if (p->repl_repositories == NULL) {
            return tm_cv_oom(v);
        }
    }
    for (uint32_t i = 0; rc == 0 && i < r->repositories_count; i++) {
        char e[64];
        snprintf(e, sizeof(e), "repositories[%" PRIu32 "]", i);
        rc = tm_cv_name(v, KR(e), r->repositories[i]);
        for (uint32_t j = 0; rc == 0 && j < i; j++) {
            if (strcmp(r->repositories[i], r->repositories[j]) == 0) {
                rc = tm_ydoc_err(v->doc, v->err, KR(e), "'%s' is listed twice", r->repositories[i]);
            }
        }
        if (rc == 0 && (rc = tm_cv_dup(v, r->repositories[i], &p->repl_repositories[i])) == 0) {
            p->n_repl_repositories = i + 1;
        }
    }
    if (rc == 0) {
        rc = tm_cv_int(v, KR("min_regions"), r->min_regions, 0, 0, 64, &p->repl_min_regions);
    }
    if (rc == 0) {
        const char *cron =
            tm_cv_has(v, KR("check")) && r->check != NULL ? r->check : "*/30 * * * *";
        rc = tm_cv_cron(v, KR("check"), cron, &p->repl_check, &p->repl_check_where);
    }
    if (rc == 0) {
        rc = tm_cv_seconds(v, KR("lag_threshold"), r->lag_threshold, "1h", 1, 30 * 86400,
                           &p->repl_lag_max_s);
    }
#undef KR
    return rc;
}
