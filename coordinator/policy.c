/*
 * policy.c - policy matching (see policy.h).
 */
#include "coordinator/policy.h"

#include <stdlib.h>
#include <string.h>

#include "common/names.h"

static int labels_match(const tm_policy_conf *p, const tm_label *labels, size_t n_labels)
{
    for (size_t i = 0; i < p->n_labels; i++) {
        int found = 0;
        for (size_t j = 0; j < n_labels && !found; j++) {
            found = strcmp(labels[j].key, p->labels[i].key) == 0 &&
                    strcmp(labels[j].value, p->labels[i].value) == 0;
        }
        if (!found) {
            return 0;
        }
    }
    return 1;
}

const tm_policy_conf *tm_policy_match(const tm_coordinator_conf *conf, int target_kind,
                                      const tm_label *labels, size_t n_labels)
{
    const char *kind = tm_target_kind_name(target_kind);
    for (size_t i = 0; i < conf->n_policies; i++) {
        const tm_policy_conf *p = &conf->policies[i];
        if (p->match_kind != NULL && (kind == NULL || strcmp(p->match_kind, kind) != 0)) {
            continue;
        }
        if (labels_match(p, labels, n_labels)) {
            return p;
        }
    }
    return NULL;
}

int tm_policy_for_target(const tm_coordinator_conf *conf, tm_catalog *cat, const char *target,
                         const tm_policy_conf **out, tm_err *err)
{
    *out = NULL;
    char *agent_id = NULL;
    int kind = 0;
    int rc = tm_catalog_target_owner(cat, target, &agent_id, &kind, err);
    if (rc != TM_OK) {
        return rc;
    }
    tm_agent_rec *a = NULL;
    rc = tm_catalog_agent_get(cat, agent_id, &a, err);
    free(agent_id);
    if (rc != TM_OK) {
        return rc;
    }
    *out = tm_policy_match(conf, kind, a->labels, a->n_labels);
    tm_agent_rec_free(a);
    return TM_OK;
}

void tm_policy_retention(const tm_policy_conf *p, tm_retention_policy *out)
{
    tm_retention_policy_default(out);
    if (p == NULL) {
        return;
    }
    out->keep_daily = p->retention.keep_daily;
    out->keep_weekly = p->retention.keep_weekly;
    out->keep_monthly = p->retention.keep_monthly;
    out->keep_yearly = p->retention.keep_yearly;
    out->min_count = p->retention.min_count;
    out->keep_failed = p->retention.keep_failed;
    out->pitr_window_s = p->retention.pitr_window_s;
}
