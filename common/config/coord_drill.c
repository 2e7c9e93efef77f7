/*
 * coord_drill.c - coordinator.yaml policies[].drill: restore drills.
 */
#include "common/config/internal.h"

#include <inttypes.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

const cyaml_schema_field_t tm_cfg_policy_drill_fields[] = {
    STR("schedule", OPT, struct raw_policy_drill, schedule),
    STR("staging_agent", OPT, struct raw_policy_drill, staging_agent),
    STR("dir", OPT, struct raw_policy_drill, dir),
    CYAML_FIELD_SEQUENCE("checks", OPT | CYAML_FLAG_POINTER, struct raw_policy_drill, checks,
                         &tm_cfg_string_entry, 0, 64),
    STR("rto_goal", OPT, struct raw_policy_drill, rto_goal),
    STR("rpo_goal", OPT, struct raw_policy_drill, rpo_goal),
    CYAML_FIELD_END,
};

/* policies[i].drill: restore drills (schedule "" = no scheduled drills). */
int tm_cfg_coord_policy_drill(tm_cv *v, const char *b, const struct raw_policy_drill *rd,
                              tm_policy_conf *p)
{
    char k[160];
#define KP(sub) (snprintf(k, sizeof(k), "%s.drill.%s", b, sub), k)
    tm_policy_drill_conf *d = &p->drill;
    int rc = 0;
    const char *sched = tm_cv_has(v, KP("schedule")) ? rd->schedule : "0 5 1 * *";
    if (sched != NULL && sched[0] != '\0') {
        rc = tm_cv_cron(v, KP("schedule"), sched, &d->schedule, &d->schedule_where);
    }
    if (rc == 0 && rd->staging_agent != NULL) {
        if (rd->staging_agent[0] == '\0') {
            return tm_ydoc_err(v->doc, v->err, KP("staging_agent"),
                               "empty, expected an agent id or hostname (omit the key to drill "
                               "on the target's own agent)");
        }
        rc = tm_cv_dup(v, rd->staging_agent, &d->staging_agent);
    }
    if (rc == 0 && rd->dir != NULL) {
        if (rd->dir[0] != '/') {
            return tm_ydoc_err(v->doc, v->err, KP("dir"),
                               "'%.80s' is not an absolute path, expected a directory on the "
                               "staging agent (drills restore into fresh subdirectories of it)",
                               rd->dir);
        }
        rc = tm_cv_dup(v, rd->dir, &d->dir);
    }
    if (rc == 0 && rd->checks_count > 0) {
        d->checks = calloc(rd->checks_count, sizeof(*d->checks));
        if (d->checks == NULL) {
            return tm_cv_oom(v);
        }
        for (uint32_t j = 0; rc == 0 && j < rd->checks_count; j++) {
            snprintf(k, sizeof(k), "%s.drill.checks[%" PRIu32 "]", b, j);
            if (rd->checks[j] == NULL || rd->checks[j][0] == '\0') {
                return tm_ydoc_err(v->doc, v->err, k,
                                   "empty check, expected an SQL statement whose first column is "
                                   "true when the restored data is right");
            }
            rc = tm_cv_dup(v, rd->checks[j], &d->checks[j]);
            d->n_checks = j + 1;
        }
    }
    if (rc == 0) {
        rc = tm_cv_seconds(v, KP("rto_goal"), rd->rto_goal, "1h", 1, 7 * 86400, &d->rto_goal_s);
    }
    if (rc == 0) {
        if (tm_cv_has(v, KP("rpo_goal"))) {
            rc = tm_cv_seconds(v, KP("rpo_goal"), rd->rpo_goal, "15m", 1, 30 * 86400,
                               &d->rpo_goal_s);
        } else {
            d->rpo_goal_s = p->rpo_goal_s;
        }
    }
#undef KP
    return rc;
}
