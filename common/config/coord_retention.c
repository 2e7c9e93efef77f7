/*
 * coord_retention.c - coordinator.yaml policies[].retention: GFS counts,
 * the PITR window, and when the plan is applied.
 */
#include "common/config/internal.h"

#include <stdio.h>

const cyaml_schema_field_t tm_cfg_policy_retention_fields[] = {
    CYAML_FIELD_INT("keep_daily", OPT, struct raw_policy_retention, keep_daily),
    CYAML_FIELD_INT("keep_weekly", OPT, struct raw_policy_retention, keep_weekly),
    CYAML_FIELD_INT("keep_monthly", OPT, struct raw_policy_retention, keep_monthly),
    CYAML_FIELD_INT("keep_yearly", OPT, struct raw_policy_retention, keep_yearly),
    CYAML_FIELD_INT("min_count", OPT, struct raw_policy_retention, min_count),
    CYAML_FIELD_INT("keep_failed", OPT, struct raw_policy_retention, keep_failed),
    STR("pitr_window", OPT, struct raw_policy_retention, pitr_window),
    STR("apply", OPT, struct raw_policy_retention, apply),
    CYAML_FIELD_END,
};

int tm_cfg_coord_policy_retention(tm_cv *v, const char *b, const struct raw_policy_retention *rr,
                                  tm_policy_retention_conf *pr)
{
    char k[128];
#define KR(sub) (snprintf(k, sizeof(k), "%s.retention.%s", b, sub), k)
    /* 0 turns a class off; -1 keeps every bucket (retention.h). */
    int rc = tm_cv_int32(v, KR("keep_daily"), rr->keep_daily, 7, -1, 100000, &pr->keep_daily);
    if (rc == 0) {
        rc = tm_cv_int32(v, KR("keep_weekly"), rr->keep_weekly, 4, -1, 100000, &pr->keep_weekly);
    }
    if (rc == 0) {
        rc =
            tm_cv_int32(v, KR("keep_monthly"), rr->keep_monthly, 12, -1, 100000, &pr->keep_monthly);
    }
    if (rc == 0) {
        rc = tm_cv_int32(v, KR("keep_yearly"), rr->keep_yearly, 7, -1, 1000, &pr->keep_yearly);
    }
    if (rc == 0) {
        rc = tm_cv_int32(v, KR("min_count"), rr->min_count, 1, 1, 100000, &pr->min_count);
    }
    if (rc == 0) {
        rc = tm_cv_int32(v, KR("keep_failed"), rr->keep_failed, 3, 0, 100000, &pr->keep_failed);
    }
    if (rc == 0) {
        rc = tm_cv_seconds(v, KR("pitr_window"), rr->pitr_window, "7d", 0, 3660 * 86400,
                           &pr->pitr_window_s);
    }
    if (rc == 0) {
        const char *ap = tm_cv_has(v, KR("apply")) ? rr->apply : "@hourly";
        if (ap != NULL && ap[0] != '\0') {
            rc = tm_cv_cron(v, KR("apply"), ap, &pr->apply, &pr->apply_where);
        }
    }
#undef KR
    return rc;
}
