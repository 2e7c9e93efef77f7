/*
 * coord_policies.c - coordinator.yaml policies: which targets a policy matches, its
 * schedule and goals (retention, drill and replication have their own files).
 */
#include "common/config/internal.h"

#include <inttypes.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/engine_kinds.h"
#include "tidemark.pb-c.h"

static const cyaml_schema_field_t policy_match_fields[] = {
    STR("kind", OPT, struct raw_policy_match, kind),
    /* Arbitrary keys: read from the tree (policy_labels), like agent labels. */
    CYAML_FIELD_IGNORE("labels", OPT),
    CYAML_FIELD_END,
};

static const cyaml_schema_field_t policy_schedule_fields[] = {
    STR("full", OPT, struct raw_policy_schedule, full),
    STR("incremental", OPT, struct raw_policy_schedule, incremental),
    STR("snapshot", OPT, struct raw_policy_schedule, snapshot),
    STR("jitter", OPT, struct raw_policy_schedule, jitter),
    STR("late_after", OPT, struct raw_policy_schedule, late_after),
    CYAML_FIELD_END,
};

static const cyaml_schema_field_t policy_fields[] = {
    STR("name", REQ, struct raw_policy, name),
    CYAML_FIELD_MAPPING("match", OPT, struct raw_policy, match, policy_match_fields),
    CYAML_FIELD_MAPPING("schedule", OPT, struct raw_policy, schedule, policy_schedule_fields),
    CYAML_FIELD_MAPPING("retention", OPT, struct raw_policy, retention,
                        tm_cfg_policy_retention_fields),
    STR("rpo_goal", OPT, struct raw_policy, rpo_goal),
    STR("backup_max_age", OPT, struct raw_policy, backup_max_age),
    CYAML_FIELD_BOOL("log_shipping", OPT, struct raw_policy, log_shipping),
    CYAML_FIELD_MAPPING("drill", OPT, struct raw_policy, drill, tm_cfg_policy_drill_fields),
    CYAML_FIELD_MAPPING("replication", OPT, struct raw_policy, replication,
                        tm_cfg_policy_replication_fields),
    CYAML_FIELD_END,
};

const cyaml_schema_value_t tm_cfg_policy_entry = {
    CYAML_VALUE_MAPPING(CYAML_FLAG_DEFAULT, struct raw_policy, policy_fields),
};

static int coord_policy(tm_cv *v, uint32_t i, const struct raw_policy *rp, tm_policy_conf *p)
{
    char b[48], k[128];
    snprintf(b, sizeof(b), "policies[%" PRIu32 "]", i);
#define KP(sub) (snprintf(k, sizeof(k), "%s.%s", b, sub), k)
    int rc = tm_cv_name(v, KP("name"), rp->name);
    if (rc == 0) {
        rc = tm_cv_dup(v, rp->name, &p->name);
    }
    if (rc == 0 && rp->match.kind != NULL) {
        if (tm_engine_kind_by_name(rp->match.kind) == NULL) {
            return tm_ydoc_err(v->doc, v->err, KP("match.kind"),
                               "'%.40s' is not a target kind, expected %s", rp->match.kind,
                               tm_engine_kind_list(true));
        }
        rc = tm_cv_dup(v, rp->match.kind, &p->match_kind);
    }
    if (rc == 0) {
        rc = tm_cv_label_map(v, KP("match.labels"), &p->labels, &p->n_labels);
    }
    if (rc == 0) {
        const char *full = tm_cv_has(v, KP("schedule.full")) && rp->schedule.full != NULL
                               ? rp->schedule.full
                               : "0 3 * * *";
        rc = tm_cv_cron(v, KP("schedule.full"), full, &p->full, &p->full_where);
    }
    if (rc == 0) {
        const char *inc =
            tm_cv_has(v, KP("schedule.incremental")) ? rp->schedule.incremental : "@hourly";
        if (inc != NULL && inc[0] != '\0') {
            rc = tm_cv_cron(v, KP("schedule.incremental"), inc, &p->incremental,
                            &p->incremental_where);
        }
    }
    if (rc == 0) {
        /* Snapshots only for kinds that take them (the kind table), with
         * the kind's default schedule; a policy for any kind that does not
         * say leaves it to the scheduler (each kind's default). A kind with
         * full backups and no snapshots has its full backup as its
         * snapshot. */
        const tm_engine_kind *kind = tm_engine_kind_by_name(rp->match.kind);
        p->snapshot_given = tm_cv_has(v, KP("schedule.snapshot"));
        const char *snap = tm_cv_has(v, KP("schedule.snapshot")) ? rp->schedule.snapshot
                           : kind != NULL                        ? kind->default_snapshot
                                                                 : NULL;
        if (kind != NULL && !tm_engine_kind_takes(kind, TIDEMARK__BACKUP_TYPE__SNAPSHOT) &&
            snap != NULL && snap[0] != '\0') {
            return tm_ydoc_err(v->doc, v->err, KP("schedule.snapshot"),
                               "%s targets have no snapshots%s; remove it or match another kind",
                               kind->name,
                               tm_engine_kind_takes(kind, TIDEMARK__BACKUP_TYPE__FULL)
                                   ? " (their full backup is one)"
                                   : "");
        }
        if (snap != NULL && snap[0] != '\0') {
            rc = tm_cv_cron(v, KP("schedule.snapshot"), snap, &p->snapshot, &p->snapshot_where);
        }
    }
    if (rc == 0) {
        rc = tm_cv_seconds(v, KP("schedule.jitter"), rp->schedule.jitter, "10m", 0, 86400,
                           &p->jitter_s);
    }
    if (rc == 0) {
        rc = tm_cv_seconds(v, KP("schedule.late_after"), rp->schedule.late_after, "1h", 1,
                           7 * 86400, &p->late_after_s);
    }
    p->log_shipping = tm_cv_has(v, KP("log_shipping")) ? rp->log_shipping : true;
    if (rc == 0) {
        rc = tm_cfg_coord_policy_retention(v, b, &rp->retention, &p->retention);
    }
    if (rc == 0) {
        rc = tm_cv_seconds(v, KP("rpo_goal"), rp->rpo_goal, "15m", 1, 30 * 86400, &p->rpo_goal_s);
    }
    if (rc == 0) {
        rc = tm_cv_seconds(v, KP("backup_max_age"), rp->backup_max_age, "26h", 60, 3660 * 86400,
                           &p->backup_max_age_s);
    }
    if (rc == 0) {
        rc = tm_cfg_coord_policy_drill(v, b, &rp->drill, p);
    }
    if (rc == 0 && tm_cv_has(v, KP("replication"))) {
        rc = tm_cfg_coord_policy_replication(v, b, &rp->replication, p);
    }
#undef KP
    return rc;
}

int tm_cfg_coord_policies(tm_cv *v, const struct raw_coordinator *r, tm_coordinator_conf *c)
{
    if (r->policies_count == 0) {
        return 0;
    }
    c->policies = calloc(r->policies_count, sizeof(*c->policies));
    if (c->policies == NULL) {
        return tm_cv_oom(v);
    }
    for (uint32_t i = 0; i < r->policies_count; i++) {
        c->n_policies = i + 1; /* so free() sees what was filled */
        int rc = coord_policy(v, i, &r->policies[i], &c->policies[i]);
        for (uint32_t j = 0; rc == 0 && j < i; j++) {
            if (strcmp(r->policies[j].name, r->policies[i].name) == 0) {
                char p[64];
                snprintf(p, sizeof(p), "policies[%" PRIu32 "].name", i);
                rc = tm_ydoc_err(v->doc, v->err, p,
                                 "duplicate policy name '%s', names must be unique",
                                 r->policies[i].name);
            }
        }
        if (rc != 0) {
            return rc;
        }
    }
    return 0;
}
