/*
 * agent_repos.c - agent.yaml repositories: posix directories and S3 buckets.
 */
#include "common/config/internal.h"

#include <inttypes.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const cyaml_schema_field_t repo_fields[] = {
    STR("name", REQ, struct raw_repo, name),
    STR("region", OPT, struct raw_repo, region),
    STR("type", REQ, struct raw_repo, type),
    STR("path", OPT, struct raw_repo, path),
    STR("endpoint", OPT, struct raw_repo, endpoint),
    STR("bucket", OPT, struct raw_repo, bucket),
    STR("signing_region", OPT, struct raw_repo, signing_region),
    STR("prefix", OPT, struct raw_repo, prefix),
    STR("access_key", OPT, struct raw_repo, access_key),
    STR("access_key_file", OPT, struct raw_repo, access_key_file),
    STR("secret_key", OPT, struct raw_repo, secret_key),
    STR("secret_key_file", OPT, struct raw_repo, secret_key_file),
    STR("ca_file", OPT, struct raw_repo, ca_file),
    CYAML_FIELD_BOOL("verify_tls", OPT, struct raw_repo, verify_tls),
    CYAML_FIELD_BOOL("path_style", OPT, struct raw_repo, path_style),
    STR("sse", OPT, struct raw_repo, sse),
    STR("sse_kms_key_id", OPT, struct raw_repo, sse_kms_key_id),
    STR("storage_class", OPT, struct raw_repo, storage_class),
    STR("object_lock_mode", OPT, struct raw_repo, object_lock_mode),
    CYAML_FIELD_INT("object_lock_days", OPT, struct raw_repo, object_lock_days),
    STR("part_size", OPT, struct raw_repo, part_size),
    CYAML_FIELD_INT("max_retries", OPT, struct raw_repo, max_retries),
    STR("timeout", OPT, struct raw_repo, timeout),
    CYAML_FIELD_END,
};

const cyaml_schema_value_t tm_cfg_repo_entry = {
    CYAML_VALUE_MAPPING(CYAML_FLAG_DEFAULT, struct raw_repo, repo_fields),
};

/* A key that only the other repository type understands: refused, so a
 * posix repository with a bucket: line is not silently a local directory. */
static int v_foreign(tm_cv *v, const char *base, const char *key, const char *type,
                     const char *belongs)
{
    char p[128];
    snprintf(p, sizeof(p), "%s.%s", base, key);
    if (tm_cv_has(v, p)) {
        return tm_ydoc_err_key(v->doc, v->err, p,
                               "%s is a %s setting, but this repository is type: %s; remove it "
                               "or change type",
                               key, belongs, type);
    }
    return 0;
}

static int repo_s3(tm_cv *v, const char *base, const struct raw_repo *rr, tm_repo_conf *r)
{
    static const char *const sse[] = {"AES256", "aws:kms"};
    static const char *const lock[] = {"GOVERNANCE", "COMPLIANCE"};
    char p[128];
    int rc = v_foreign(v, base, "path", "s3", "posix");
    if (rc == 0 && rr->bucket == NULL) {
        snprintf(p, sizeof(p), "%s.bucket", base);
        rc = tm_ydoc_err(v->doc, v->err, p,
                         "required for type: s3, expected the bucket name (bucket: my-backups)");
    }
    snprintf(p, sizeof(p), "%s.bucket", base);
    if (rc == 0) {
        rc = tm_cv_token(v, p, rr->bucket, 255, &r->bucket);
    }
    if (rc == 0 && rr->endpoint != NULL) {
        snprintf(p, sizeof(p), "%s.endpoint", base);
        const char *e = rr->endpoint;
        if (strncmp(e, "http://", 7) != 0 && strncmp(e, "https://", 8) != 0) {
            rc = tm_ydoc_err(v->doc, v->err, p,
                             "'%.80s' is not an http:// or https:// URL, expected e.g. "
                             "https://s3.eu-west-1.amazonaws.com",
                             e);
        } else {
            rc = tm_cv_token(v, p, e, 1024, &r->endpoint);
        }
        /* Allowed (a bucket on the same host or a private network), but the
         * signature does not hide the data, only the secret key. */
        if (rc == 0 && strncmp(e, "http://", 7) == 0) {
            tm_warn("config",
                    "key=%s endpoint=%s msg=\"plain http: backup objects and request metadata "
                    "travel unencrypted; use https:// unless the endpoint is on this host\"",
                    p, e);
        }
    }
    snprintf(p, sizeof(p), "%s.signing_region", base);
    if (rc == 0) {
        const char *sr = rr->signing_region;
        rc = tm_cv_token(v, p, sr != NULL ? sr : (rr->region != NULL ? rr->region : "us-east-1"),
                         64, &r->signing_region);
    }
    snprintf(p, sizeof(p), "%s.prefix", base);
    if (rc == 0) {
        rc = tm_cv_token(v, p, rr->prefix, 512, &r->prefix);
    }
    if (rc == 0) {
        rc = tm_cv_secret(v, base, "access_key", rr->access_key, rr->access_key_file,
                          &r->access_key);
    }
    if (rc == 0) {
        rc = tm_cv_secret(v, base, "secret_key", rr->secret_key, rr->secret_key_file,
                          &r->secret_key);
    }
    snprintf(p, sizeof(p), "%s.ca_file", base);
    if (rc == 0 && rr->ca_file != NULL) {
        rc = tm_cv_path(v, p, rr->ca_file, &r->ca_file);
    }
    snprintf(p, sizeof(p), "%s.verify_tls", base);
    r->verify_tls = tm_cv_has(v, p) ? rr->verify_tls : true;
    snprintf(p, sizeof(p), "%s.path_style", base);
    r->path_style = tm_cv_has(v, p) ? rr->path_style : true;
    snprintf(p, sizeof(p), "%s.sse", base);
    if (rc == 0) {
        rc = tm_cv_enum(v, p, rr->sse, sse, 2, "AES256 or aws:kms", &r->sse);
    }
    snprintf(p, sizeof(p), "%s.sse_kms_key_id", base);
    if (rc == 0 && rr->sse_kms_key_id != NULL && (r->sse == NULL || strcmp(r->sse, "aws:kms"))) {
        rc = tm_ydoc_err(v->doc, v->err, p, "only meaningful with sse: aws:kms");
    }
    if (rc == 0) {
        rc = tm_cv_token(v, p, rr->sse_kms_key_id, 2048, &r->sse_kms_key_id);
    }
    snprintf(p, sizeof(p), "%s.storage_class", base);
    if (rc == 0) {
        rc = tm_cv_token(v, p, rr->storage_class, 64, &r->storage_class);
    }
    snprintf(p, sizeof(p), "%s.object_lock_mode", base);
    if (rc == 0) {
        rc = tm_cv_enum(v, p, rr->object_lock_mode, lock, 2, "GOVERNANCE or COMPLIANCE",
                        &r->object_lock_mode);
    }
    snprintf(p, sizeof(p), "%s.object_lock_days", base);
    if (rc == 0) {
        rc = tm_cv_int(v, p, rr->object_lock_days, 0, 1, 36500, &r->object_lock_days);
    }
    if (rc == 0 && (r->object_lock_mode != NULL) != (r->object_lock_days != 0)) {
        char mp[128];
        snprintf(mp, sizeof(mp), "%s.object_lock_mode", base);
        rc = r->object_lock_mode != NULL
                 ? tm_ydoc_err(v->doc, v->err, mp,
                               "object_lock_mode needs a retention, expected object_lock_days: "
                               "1 .. 36500")
                 : tm_ydoc_err(v->doc, v->err, p,
                               "object_lock_days needs object_lock_mode: GOVERNANCE or "
                               "COMPLIANCE");
    }
    snprintf(p, sizeof(p), "%s.part_size", base);
    if (rc == 0) {
        rc = tm_cv_size(v, p, rr->part_size, "16MiB", 5u * 1024 * 1024, 1024u * 1024 * 1024,
                        &r->part_size);
    }
    snprintf(p, sizeof(p), "%s.max_retries", base);
    if (rc == 0) {
        rc = tm_cv_int(v, p, rr->max_retries, 5, 0, 20, &r->max_retries);
    }
    snprintf(p, sizeof(p), "%s.timeout", base);
    if (rc == 0) {
        rc = tm_cv_duration(v, p, rr->timeout, "60s", 1000, 3600000, &r->timeout_ms);
    }
    return rc;
}

static int repo_posix(tm_cv *v, const char *base, const struct raw_repo *rr, tm_repo_conf *r)
{
    static const char *const s3_only[] = {
        "endpoint",         "bucket",     "signing_region",  "prefix",        "access_key",
        "access_key_file",  "secret_key", "secret_key_file", "ca_file",       "verify_tls",
        "path_style",       "sse",        "sse_kms_key_id",  "storage_class", "object_lock_mode",
        "object_lock_days", "part_size",  "max_retries",     "timeout",
    };
    for (size_t i = 0; i < sizeof(s3_only) / sizeof(s3_only[0]); i++) {
        int rc = v_foreign(v, base, s3_only[i], "posix", "s3");
        if (rc != 0) {
            return rc;
        }
    }
    char p[128];
    snprintf(p, sizeof(p), "%s.path", base);
    if (rr->path == NULL) {
        return tm_ydoc_err(v->doc, v->err, p,
                           "required for type: posix, expected the repository directory "
                           "(path: /var/backups/tidemark)");
    }
    r->verify_tls = true;
    r->path_style = true;
    return tm_cv_path(v, p, rr->path, &r->path);
}

int tm_cfg_agent_repositories(tm_cv *v, const struct raw_agent *r, tm_agent_conf *c)
{
    if (r->repositories_count == 0) {
        return 0;
    }
    c->repos = calloc(r->repositories_count, sizeof(*c->repos));
    if (c->repos == NULL) {
        return tm_cv_oom(v);
    }
    for (uint32_t i = 0; i < r->repositories_count; i++) {
        const struct raw_repo *rr = &r->repositories[i];
        tm_repo_conf *rp = &c->repos[i];
        c->n_repos = i + 1;
        char base[48], p[96];
        snprintf(base, sizeof(base), "repositories[%" PRIu32 "]", i);
        snprintf(p, sizeof(p), "%s.name", base);
        int rc = tm_cv_name(v, p, rr->name);
        for (uint32_t j = 0; rc == 0 && j < i; j++) {
            if (strcmp(r->repositories[j].name, rr->name) == 0) {
                rc = tm_ydoc_err(v->doc, v->err, p,
                                 "duplicate repository name '%s', also used by "
                                 "repositories[%" PRIu32 "], names must be unique",
                                 rr->name, j);
            }
        }
        if (rc == 0) {
            rc = tm_cv_dup(v, rr->name, &rp->name);
        }
        snprintf(p, sizeof(p), "%s.region", base);
        if (rc == 0 && rr->region != NULL) {
            rc = tm_cv_name(v, p, rr->region);
        }
        if (rc == 0) {
            rc = tm_cv_dup(v, rr->region != NULL ? rr->region : rr->name, &rp->region);
        }
        snprintf(p, sizeof(p), "%s.type", base);
        if (rc == 0) {
            static const char *const types[] = {"posix", "s3"};
            rc = tm_cv_enum(v, p, rr->type, types, 2, "posix or s3", &rp->type);
        }
        if (rc == 0) {
            rc = strcmp(rp->type, "s3") == 0 ? repo_s3(v, base, rr, rp)
                                             : repo_posix(v, base, rr, rp);
        }
        if (rc != 0) {
            return rc;
        }
    }
    return 0;
}
