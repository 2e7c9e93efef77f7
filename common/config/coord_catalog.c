/*
 * coord_catalog.c - coordinator.yaml catalog:, admin_token:, enrollment: (the catalog
 * and who may enter it).
 */
#include "common/config/internal.h"

#include <inttypes.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

const cyaml_schema_field_t tm_cfg_catalog_fields[] = {
    STR("path", OPT, struct raw_catalog, path),
    CYAML_FIELD_END,
};

static const cyaml_schema_field_t enrollment_fields[] = {
    STR("name", REQ, struct raw_enrollment, name),
    STR("token", OPT, struct raw_enrollment, token),
    STR("token_file", OPT, struct raw_enrollment, token_file),
    CYAML_FIELD_BOOL("auto_approve", OPT, struct raw_enrollment, auto_approve),
    STR("expires", OPT, struct raw_enrollment, expires),
    CYAML_FIELD_END,
};

const cyaml_schema_value_t tm_cfg_enrollment_entry = {
    CYAML_VALUE_MAPPING(CYAML_FLAG_DEFAULT, struct raw_enrollment, enrollment_fields),
};

int tm_cfg_coord_catalog(tm_cv *v, const struct raw_coordinator *r, tm_coordinator_conf *c)
{
    return tm_cv_path(v, "catalog.path", r->catalog.path ? r->catalog.path : "catalog.db",
                      &c->catalog_path);
}

int tm_cfg_coord_admin_token(tm_cv *v, const struct raw_coordinator *r, tm_coordinator_conf *c)
{
    return tm_cv_auth_token(v, "", "admin_token", r->admin_token, r->admin_token_file,
                            &c->admin_token);
}

int tm_cfg_coord_enrollment(tm_cv *v, const struct raw_coordinator *r, tm_coordinator_conf *c)
{
    c->enrollments = calloc(r->enrollment_count, sizeof(*c->enrollments));
    if (c->enrollments == NULL) {
        return tm_cv_oom(v);
    }
    for (uint32_t i = 0; i < r->enrollment_count; i++) {
        const struct raw_enrollment *re = &r->enrollment[i];
        tm_enrollment_conf *e = &c->enrollments[i];
        c->n_enrollments = i + 1; /* so free() sees what was filled */
        char base[48], p[96];
        snprintf(base, sizeof(base), "enrollment[%" PRIu32 "]", i);
        snprintf(p, sizeof(p), "%s.name", base);
        int rc = tm_cv_name(v, p, re->name);
        for (uint32_t j = 0; rc == 0 && j < i; j++) {
            if (strcmp(r->enrollment[j].name, re->name) == 0) {
                rc = tm_ydoc_err(v->doc, v->err, p,
                                 "duplicate enrollment name '%s', names must be unique", re->name);
            }
        }
        if (rc == 0) {
            rc = tm_cv_dup(v, re->name, &e->name);
        }
        if (rc == 0) {
            rc = tm_cv_auth_token(v, base, "token", re->token, re->token_file, &e->token);
        }
        if (rc != 0) {
            return rc;
        }
        e->auto_approve = re->auto_approve;
        if (re->expires != NULL) {
            snprintf(p, sizeof(p), "%s.expires", base);
            if (!tm_cv_rfc3339_utc(re->expires, &e->expires_at)) {
                return tm_ydoc_err(v->doc, v->err, p,
                                   "'%.40s' is not a UTC time, expected RFC 3339 like "
                                   "2027-01-01T00:00:00Z",
                                   re->expires);
            }
        }
    }
    return 0;
}
