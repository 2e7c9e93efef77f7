/*
 * internal.h - what the files of common/config/ share: the raw structs
 * libcyaml fills, the cyaml field tables one section lends another, the
 * section validators and the loader's frame. Not for use outside
 * common/config/ (engines use validate.h).
 *
 * Loading a file is four steps (load.c):
 *   1. libyaml parses the bytes into a tree (yaml.c) and the tree is walked
 *      against the cyaml schema: structural errors (unknown key, wrong kind,
 *      missing key, bad number) are reported with line:column.
 *   2. libcyaml loads the same bytes into a "raw" struct that mirrors the
 *      YAML one to one (strings stay strings: "10s", "4MiB").
 *   3. A validation pass, one function per top-level section (one file per
 *      section: coord_*.c, agent_*.c), turns the raw struct into the public
 *      tm_*_conf: defaults, ranges, units, URLs, cross-field rules, paths made
 *      absolute, secrets resolved. Positions come from the key-path map built
 *      in step 1. Engine target blocks are validated by their engines
 *      (tm_target_schema, agent_targets.c).
 *   4. The raw struct and the tree are freed.
 *
 * Adding a section (repositories:, policies:, ...) is: a raw struct here, a
 * cyaml field table and a validator function in the section's file, one line
 * in the top-level field table and one in the *_sections[] table
 * (coordinator.c / agent.c).
 */
#ifndef TM_CONFIG_INTERNAL_H
#define TM_CONFIG_INTERNAL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <cyaml/cyaml.h>

#include "common/config.h"
#include "common/config/validate.h"
#include "common/config/yaml.h"

struct tm_cv {
    tm_ydoc *doc;
    char *dir; /* absolute (when possible) directory of the config file */
    tm_err *err;
};

/* ============================================================ raw structs */

/* These mirror the YAML exactly; libcyaml fills them. Optional mappings are
 * embedded (zeroed when absent); presence of a scalar is asked of the key
 * map (tm_ydoc_find), not inferred from a zero. */

struct raw_tls {
    char *cert_file;
    char *key_file;
    char *ca_file;
    char *server_name;
    bool require_client_cert;
};

struct raw_log {
    char *level;
};

struct raw_http {
    char *listen;
};

struct raw_catalog {
    char *path;
};

struct raw_enrollment {
    char *name;
    char *token;
    char *token_file;
    bool auto_approve;
    char *expires;
};

struct raw_heartbeat {
    char *interval;
    int64_t stale_after_missed;
    int64_t lost_after_missed;
};

struct raw_rpc {
    char *max_message_size;
    int64_t contexts;
    char *max_unauthenticated_message_size;
    char *send_timeout;
    char *first_request_timeout;
    char *idle_timeout;
    int64_t max_pending_connections_per_address;
    int64_t max_calls_per_connection;
};

struct raw_tasks {
    char *lease;
    int64_t max_attempts;
    char *retry_backoff;
    char *poll_max;
};

struct raw_policy_match {
    char *kind;
};

struct raw_policy_schedule {
    char *full;
    char *incremental;
    char *snapshot;
    char *jitter;
    char *late_after;
};

struct raw_policy_retention {
    int64_t keep_daily;
    int64_t keep_weekly;
    int64_t keep_monthly;
    int64_t keep_yearly;
    int64_t min_count;
    int64_t keep_failed;
    char *pitr_window;
    char *apply;
};

struct raw_policy_drill {
    char *schedule;
    char *staging_agent;
    char *dir;
    char **checks;
    uint32_t checks_count;
    char *rto_goal;
    char *rpo_goal;
};

struct raw_policy_replication {
    char **repositories;
    uint32_t repositories_count;
    int64_t min_regions;
    char *check;
    char *lag_threshold;
};

struct raw_policy {
    char *name;
    struct raw_policy_match match;
    struct raw_policy_schedule schedule;
    struct raw_policy_retention retention;
    char *rpo_goal;
    char *backup_max_age;
    bool log_shipping;
    struct raw_policy_drill drill;
    struct raw_policy_replication replication;
};

struct raw_scheduler {
    int64_t max_tasks_per_agent;
    int64_t max_tasks_per_repository;
    bool paused;
};

struct raw_sink {
    char *name;
    char *kind;
    char *url;
    char *url_file;
    char *min_severity;
    bool send_resolved;
};

struct raw_alerts {
    char *evaluate_every;
    char *repeat_interval;
    struct raw_sink *sinks;
    uint32_t sinks_count;
};

struct raw_coordinator {
    char *listen;
    struct raw_http http;
    struct raw_catalog catalog;
    char *admin_token;
    char *admin_token_file;
    struct raw_enrollment *enrollment;
    uint32_t enrollment_count;
    struct raw_heartbeat heartbeat;
    struct raw_rpc rpc;
    struct raw_tasks tasks;
    struct raw_tls tls;
    struct raw_log log;
    struct raw_policy *policies;
    uint32_t policies_count;
    struct raw_scheduler scheduler;
    struct raw_alerts alerts;
};

struct raw_agent_coordinator {
    char *url;
    char *enrollment_token;
    char *enrollment_token_file;
    char *timeout;
    char *backoff_max;
    struct raw_tls tls;
};

/* targets[]: the engine blocks are loaded as pointers, one slot per
 * registered schema (in registration order); NULL = no block. */
struct raw_target {
    char *name;
    char *kind;
    char *engine_version;
    void *engine[TM_TARGET_SCHEMAS_MAX];
};

struct raw_repo {
    char *name;
    char *region;
    char *type;
    char *path;
    char *endpoint;
    char *bucket;
    char *signing_region;
    char *prefix;
    char *access_key;
    char *access_key_file;
    char *secret_key;
    char *secret_key_file;
    char *ca_file;
    bool verify_tls;
    bool path_style;
    char *sse;
    char *sse_kms_key_id;
    char *storage_class;
    char *object_lock_mode;
    int64_t object_lock_days;
    char *part_size;
    int64_t max_retries;
    char *timeout;
};

struct raw_encryption {
    char *master_key;
    char *master_key_file;
    char **old_master_key_files;
    uint32_t old_master_key_files_count;
    int64_t compress_level;
};

struct raw_agent {
    struct raw_agent_coordinator coordinator;
    char *state_dir;
    char **restore_roots;
    uint32_t restore_roots_count;
    char *hostname;
    struct raw_target *targets;
    uint32_t targets_count;
    struct raw_repo *repositories;
    uint32_t repositories_count;
    struct raw_encryption encryption;
    struct raw_log log;
};

/* ================================================================ schemas */

#define OPT CYAML_FLAG_OPTIONAL
#define REQ CYAML_FLAG_DEFAULT
#define STR(key, flags, st, m) CYAML_FIELD_STRING_PTR(key, flags, st, m, 0, CYAML_UNLIMITED)

/* Field tables a parent table includes (each defined beside its section). */
extern const cyaml_schema_field_t tm_cfg_log_fields[];
extern const cyaml_schema_field_t tm_cfg_server_tls_fields[];
extern const cyaml_schema_field_t tm_cfg_client_tls_fields[];
extern const cyaml_schema_value_t tm_cfg_string_entry;
extern const cyaml_schema_field_t tm_cfg_http_fields[];
extern const cyaml_schema_field_t tm_cfg_catalog_fields[];
extern const cyaml_schema_value_t tm_cfg_enrollment_entry;
extern const cyaml_schema_field_t tm_cfg_heartbeat_fields[];
extern const cyaml_schema_field_t tm_cfg_rpc_fields[];
extern const cyaml_schema_field_t tm_cfg_tasks_fields[];
extern const cyaml_schema_value_t tm_cfg_policy_entry;
extern const cyaml_schema_field_t tm_cfg_policy_retention_fields[];
extern const cyaml_schema_field_t tm_cfg_policy_drill_fields[];
extern const cyaml_schema_field_t tm_cfg_policy_replication_fields[];
extern const cyaml_schema_field_t tm_cfg_scheduler_fields[];
extern const cyaml_schema_field_t tm_cfg_alerts_fields[];
extern const cyaml_schema_field_t tm_cfg_agent_coordinator_fields[];
extern const cyaml_schema_value_t tm_cfg_target_entry;
extern const cyaml_schema_value_t tm_cfg_repo_entry;
extern const cyaml_schema_field_t tm_cfg_encryption_fields[];

/* ======================================================= section validators */

/* coordinator.yaml, in the order coordinator.c runs them. */
int tm_cfg_coord_listen(tm_cv *v, const struct raw_coordinator *r, tm_coordinator_conf *c);
int tm_cfg_coord_http(tm_cv *v, const struct raw_coordinator *r, tm_coordinator_conf *c);
int tm_cfg_coord_catalog(tm_cv *v, const struct raw_coordinator *r, tm_coordinator_conf *c);
int tm_cfg_coord_admin_token(tm_cv *v, const struct raw_coordinator *r, tm_coordinator_conf *c);
int tm_cfg_coord_enrollment(tm_cv *v, const struct raw_coordinator *r, tm_coordinator_conf *c);
int tm_cfg_coord_heartbeat(tm_cv *v, const struct raw_coordinator *r, tm_coordinator_conf *c);
int tm_cfg_coord_rpc(tm_cv *v, const struct raw_coordinator *r, tm_coordinator_conf *c);
int tm_cfg_coord_tasks(tm_cv *v, const struct raw_coordinator *r, tm_coordinator_conf *c);
int tm_cfg_coord_tls(tm_cv *v, const struct raw_coordinator *r, tm_coordinator_conf *c);
int tm_cfg_coord_log(tm_cv *v, const struct raw_coordinator *r, tm_coordinator_conf *c);
int tm_cfg_coord_policies(tm_cv *v, const struct raw_coordinator *r, tm_coordinator_conf *c);
int tm_cfg_coord_scheduler(tm_cv *v, const struct raw_coordinator *r, tm_coordinator_conf *c);
int tm_cfg_coord_alerts(tm_cv *v, const struct raw_coordinator *r, tm_coordinator_conf *c);
/* Parts of one policy; b is "policies[i]". */
int tm_cfg_coord_policy_retention(tm_cv *v, const char *b, const struct raw_policy_retention *rr,
                                  tm_policy_retention_conf *pr);
int tm_cfg_coord_policy_drill(tm_cv *v, const char *b, const struct raw_policy_drill *rd,
                              tm_policy_conf *p);
int tm_cfg_coord_policy_replication(tm_cv *v, const char *b, const struct raw_policy_replication *r,
                                    tm_policy_conf *p);

/* agent.yaml, in the order agent.c runs them. */
int tm_cfg_agent_coordinator(tm_cv *v, const struct raw_agent *r, tm_agent_conf *c);
int tm_cfg_agent_state_dir(tm_cv *v, const struct raw_agent *r, tm_agent_conf *c);
int tm_cfg_agent_restore_roots(tm_cv *v, const struct raw_agent *r, tm_agent_conf *c);
int tm_cfg_agent_hostname(tm_cv *v, const struct raw_agent *r, tm_agent_conf *c);
int tm_cfg_agent_labels(tm_cv *v, const struct raw_agent *r, tm_agent_conf *c);
int tm_cfg_agent_targets(tm_cv *v, const struct raw_agent *r, tm_agent_conf *c);
int tm_cfg_agent_repositories(tm_cv *v, const struct raw_agent *r, tm_agent_conf *c);
int tm_cfg_agent_encryption(tm_cv *v, const struct raw_agent *r, tm_agent_conf *c);
int tm_cfg_agent_log(tm_cv *v, const struct raw_agent *r, tm_agent_conf *c);
/* Frees the targets' strings and their engine confs. */
void tm_cfg_targets_free(tm_target_conf *targets, size_t n);

/* ====================================================== internal validators */

enum { TM_CV_URL_TCP = 1, TM_CV_URL_IPC = 2, TM_CV_URL_TLS = 4, TM_CV_URL_HTTP = 8 };
int tm_cv_url(tm_cv *v, const char *path, const char *url, unsigned allowed, bool listen);
int tm_cv_log_level(tm_cv *v, const char *path, const char *s, tm_log_level *out);
int tm_cv_auth_token(tm_cv *v, const char *base, const char *key, const char *ref, const char *file,
                     char **out);
bool tm_cv_rfc3339_utc(const char *s, int64_t *out);
int tm_cv_tls_files(tm_cv *v, const char *base, const struct raw_tls *r, tm_tls_conf *t);
void tm_cv_free_tls(tm_tls_conf *t);
int tm_cv_cron(tm_cv *v, const char *path, const char *expr, char **out, char **where);
int tm_cv_label_map(tm_cv *v, const char *path, tm_label_conf **labels, size_t *n_labels);

/* ================================================================ loader */

/* Applies a file's section table to raw -> conf. */
typedef int (*tm_cfg_run)(tm_cv *v, const void *raw, void *conf);
/* Steps 1-4 on buf; conf_path gets a copy of name. */
int tm_cfg_parse(const char *name, const char *buf, size_t len, const cyaml_schema_value_t *schema,
                 tm_cfg_run run, void *conf, char **conf_path, tm_err *err);
/* The file's bytes; an unreadable config is TM_ECONFIG (the mains exit 2). */
int tm_cfg_read(const char *path, char **buf, size_t *len, tm_err *err);

#endif
