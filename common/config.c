/*
 * config.c - coordinator.yaml and agent.yaml: schemas, validation, secrets.
 *
 * Loading a file is four steps:
 *   1. libyaml parses the bytes into a tree (config_yaml.c) and the tree is
 *      walked against the cyaml schema: structural errors (unknown key, wrong
 *      kind, missing key, bad number) are reported here with line:column.
 *   2. libcyaml loads the same bytes into a "raw" struct that mirrors the
 *      YAML one to one (strings stay strings: "10s", "4MiB").
 *   3. A validation pass, one function per top-level section, turns the raw
 *      struct into the public tm_*_conf: defaults, ranges, units, URLs,
 *      cross-field rules, paths made absolute, secrets resolved. Positions
 *      come from the key-path map built in step 1.
 *   4. The raw struct and the tree are freed.
 *
 * Adding a section (repositories:, policies:, ...) is: a raw struct and a
 * cyaml field table, one line in the top-level field table, one validator
 * function, one line in the *_sections[] table.
 */
#include "common/config.h"

#include <errno.h>
#include <inttypes.h>
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <cyaml/cyaml.h>

#include "common/config_yaml.h"
#include "common/names.h"
#include "common/secrets.h"
#include "common/util.h"

/* Secrets are tokens, not documents. */
#define SECRET_MAX_BYTES (64 * 1024)

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

/* targets[].postgres (kind: postgres only). */
struct raw_pg {
    char *pgdata;
    char *host;
    int64_t port;
    char *user;
    char *database;
    char *password;
    char *password_file;
    char *bindir;
    bool checksum_validation;
    int64_t parallel;
};

struct raw_target {
    char *name;
    char *kind;
    char *engine_version;
    struct raw_pg postgres;
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

static const cyaml_schema_field_t log_fields[] = {
    STR("level", OPT, struct raw_log, level),
    CYAML_FIELD_END,
};

/* Server side TLS (coordinator). */
static const cyaml_schema_field_t server_tls_fields[] = {
    STR("cert_file", OPT, struct raw_tls, cert_file),
    STR("key_file", OPT, struct raw_tls, key_file),
    STR("ca_file", OPT, struct raw_tls, ca_file),
    CYAML_FIELD_BOOL("require_client_cert", OPT, struct raw_tls, require_client_cert),
    CYAML_FIELD_END,
};

/* Client side TLS (agent). */
static const cyaml_schema_field_t client_tls_fields[] = {
    STR("ca_file", OPT, struct raw_tls, ca_file),
    STR("cert_file", OPT, struct raw_tls, cert_file),
    STR("key_file", OPT, struct raw_tls, key_file),
    STR("server_name", OPT, struct raw_tls, server_name),
    CYAML_FIELD_END,
};

static const cyaml_schema_field_t http_fields[] = {
    STR("listen", OPT, struct raw_http, listen),
    CYAML_FIELD_END,
};

static const cyaml_schema_field_t catalog_fields[] = {
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

static const cyaml_schema_value_t enrollment_entry = {
    CYAML_VALUE_MAPPING(CYAML_FLAG_DEFAULT, struct raw_enrollment, enrollment_fields),
};

static const cyaml_schema_field_t heartbeat_fields[] = {
    STR("interval", OPT, struct raw_heartbeat, interval),
    CYAML_FIELD_INT("stale_after_missed", OPT, struct raw_heartbeat, stale_after_missed),
    CYAML_FIELD_INT("lost_after_missed", OPT, struct raw_heartbeat, lost_after_missed),
    CYAML_FIELD_END,
};

static const cyaml_schema_field_t rpc_fields[] = {
    STR("max_message_size", OPT, struct raw_rpc, max_message_size),
    CYAML_FIELD_INT("contexts", OPT, struct raw_rpc, contexts),
    STR("max_unauthenticated_message_size", OPT, struct raw_rpc, max_unauthenticated_message_size),
    STR("send_timeout", OPT, struct raw_rpc, send_timeout),
    STR("first_request_timeout", OPT, struct raw_rpc, first_request_timeout),
    STR("idle_timeout", OPT, struct raw_rpc, idle_timeout),
    CYAML_FIELD_INT("max_pending_connections_per_address", OPT, struct raw_rpc,
                    max_pending_connections_per_address),
    CYAML_FIELD_INT("max_calls_per_connection", OPT, struct raw_rpc, max_calls_per_connection),
    CYAML_FIELD_END,
};

static const cyaml_schema_field_t tasks_fields[] = {
    STR("lease", OPT, struct raw_tasks, lease),
    CYAML_FIELD_INT("max_attempts", OPT, struct raw_tasks, max_attempts),
    STR("retry_backoff", OPT, struct raw_tasks, retry_backoff),
    STR("poll_max", OPT, struct raw_tasks, poll_max),
    CYAML_FIELD_END,
};

static const cyaml_schema_value_t string_entry = {
    CYAML_VALUE_STRING(CYAML_FLAG_POINTER, char, 0, CYAML_UNLIMITED),
};

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

static const cyaml_schema_field_t policy_retention_fields[] = {
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

static const cyaml_schema_field_t policy_drill_fields[] = {
    STR("schedule", OPT, struct raw_policy_drill, schedule),
    STR("staging_agent", OPT, struct raw_policy_drill, staging_agent),
    STR("dir", OPT, struct raw_policy_drill, dir),
    CYAML_FIELD_SEQUENCE("checks", OPT | CYAML_FLAG_POINTER, struct raw_policy_drill, checks,
                         &string_entry, 0, 64),
    STR("rto_goal", OPT, struct raw_policy_drill, rto_goal),
    STR("rpo_goal", OPT, struct raw_policy_drill, rpo_goal),
    CYAML_FIELD_END,
};

static const cyaml_schema_value_t repl_repo_entry = {
    CYAML_VALUE_STRING(CYAML_FLAG_POINTER, char, 0, CYAML_UNLIMITED),
};

static const cyaml_schema_field_t policy_replication_fields[] = {
    CYAML_FIELD_SEQUENCE("repositories", OPT | CYAML_FLAG_POINTER, struct raw_policy_replication,
                         repositories, &repl_repo_entry, 0, 64),
    CYAML_FIELD_INT("min_regions", OPT, struct raw_policy_replication, min_regions),
    STR("check", OPT, struct raw_policy_replication, check),
    STR("lag_threshold", OPT, struct raw_policy_replication, lag_threshold),
    CYAML_FIELD_END,
};

static const cyaml_schema_field_t policy_fields[] = {
    STR("name", REQ, struct raw_policy, name),
    CYAML_FIELD_MAPPING("match", OPT, struct raw_policy, match, policy_match_fields),
    CYAML_FIELD_MAPPING("schedule", OPT, struct raw_policy, schedule, policy_schedule_fields),
    CYAML_FIELD_MAPPING("retention", OPT, struct raw_policy, retention, policy_retention_fields),
    STR("rpo_goal", OPT, struct raw_policy, rpo_goal),
    STR("backup_max_age", OPT, struct raw_policy, backup_max_age),
    CYAML_FIELD_BOOL("log_shipping", OPT, struct raw_policy, log_shipping),
    CYAML_FIELD_MAPPING("drill", OPT, struct raw_policy, drill, policy_drill_fields),
    CYAML_FIELD_MAPPING("replication", OPT, struct raw_policy, replication,
                        policy_replication_fields),
    CYAML_FIELD_END,
};

static const cyaml_schema_value_t policy_entry = {
    CYAML_VALUE_MAPPING(CYAML_FLAG_DEFAULT, struct raw_policy, policy_fields),
};

static const cyaml_schema_field_t scheduler_fields[] = {
    CYAML_FIELD_INT("max_tasks_per_agent", OPT, struct raw_scheduler, max_tasks_per_agent),
    CYAML_FIELD_INT("max_tasks_per_repository", OPT, struct raw_scheduler,
                    max_tasks_per_repository),
    CYAML_FIELD_BOOL("paused", OPT, struct raw_scheduler, paused),
    CYAML_FIELD_END,
};

static const cyaml_schema_field_t sink_fields[] = {
    STR("name", REQ, struct raw_sink, name),
    STR("kind", REQ, struct raw_sink, kind),
    STR("url", OPT, struct raw_sink, url),
    STR("url_file", OPT, struct raw_sink, url_file),
    STR("min_severity", OPT, struct raw_sink, min_severity),
    CYAML_FIELD_BOOL("send_resolved", OPT, struct raw_sink, send_resolved),
    CYAML_FIELD_END,
};

static const cyaml_schema_value_t sink_entry = {
    CYAML_VALUE_MAPPING(CYAML_FLAG_DEFAULT, struct raw_sink, sink_fields),
};

static const cyaml_schema_field_t alerts_fields[] = {
    STR("evaluate_every", OPT, struct raw_alerts, evaluate_every),
    STR("repeat_interval", OPT, struct raw_alerts, repeat_interval),
    CYAML_FIELD_SEQUENCE("sinks", OPT | CYAML_FLAG_POINTER, struct raw_alerts, sinks, &sink_entry,
                         0, 64),
    CYAML_FIELD_END,
};

static const cyaml_schema_field_t coordinator_fields[] = {
    STR("listen", OPT, struct raw_coordinator, listen),
    CYAML_FIELD_MAPPING("http", OPT, struct raw_coordinator, http, http_fields),
    CYAML_FIELD_MAPPING("catalog", OPT, struct raw_coordinator, catalog, catalog_fields),
    STR("admin_token", OPT, struct raw_coordinator, admin_token),
    STR("admin_token_file", OPT, struct raw_coordinator, admin_token_file),
    CYAML_FIELD_SEQUENCE("enrollment", REQ | CYAML_FLAG_POINTER, struct raw_coordinator, enrollment,
                         &enrollment_entry, 1, CYAML_UNLIMITED),
    CYAML_FIELD_MAPPING("heartbeat", OPT, struct raw_coordinator, heartbeat, heartbeat_fields),
    CYAML_FIELD_MAPPING("rpc", OPT, struct raw_coordinator, rpc, rpc_fields),
    CYAML_FIELD_MAPPING("tasks", OPT, struct raw_coordinator, tasks, tasks_fields),
    CYAML_FIELD_MAPPING("tls", OPT, struct raw_coordinator, tls, server_tls_fields),
    CYAML_FIELD_MAPPING("log", OPT, struct raw_coordinator, log, log_fields),
    CYAML_FIELD_SEQUENCE("policies", OPT | CYAML_FLAG_POINTER, struct raw_coordinator, policies,
                         &policy_entry, 0, 1024),
    CYAML_FIELD_MAPPING("scheduler", OPT, struct raw_coordinator, scheduler, scheduler_fields),
    CYAML_FIELD_MAPPING("alerts", OPT, struct raw_coordinator, alerts, alerts_fields),
    CYAML_FIELD_END,
};

static const cyaml_schema_value_t coordinator_schema = {
    CYAML_VALUE_MAPPING(CYAML_FLAG_POINTER, struct raw_coordinator, coordinator_fields),
};

static const cyaml_schema_field_t agent_coordinator_fields[] = {
    STR("url", REQ, struct raw_agent_coordinator, url),
    STR("enrollment_token", OPT, struct raw_agent_coordinator, enrollment_token),
    STR("enrollment_token_file", OPT, struct raw_agent_coordinator, enrollment_token_file),
    STR("timeout", OPT, struct raw_agent_coordinator, timeout),
    STR("backoff_max", OPT, struct raw_agent_coordinator, backoff_max),
    CYAML_FIELD_MAPPING("tls", OPT, struct raw_agent_coordinator, tls, client_tls_fields),
    CYAML_FIELD_END,
};

static const cyaml_schema_field_t pg_fields[] = {
    STR("pgdata", OPT, struct raw_pg, pgdata),
    STR("host", OPT, struct raw_pg, host),
    CYAML_FIELD_INT("port", OPT, struct raw_pg, port),
    STR("user", OPT, struct raw_pg, user),
    STR("database", OPT, struct raw_pg, database),
    STR("password", OPT, struct raw_pg, password),
    STR("password_file", OPT, struct raw_pg, password_file),
    STR("bindir", OPT, struct raw_pg, bindir),
    CYAML_FIELD_BOOL("checksum_validation", OPT, struct raw_pg, checksum_validation),
    CYAML_FIELD_INT("parallel", OPT, struct raw_pg, parallel),
    CYAML_FIELD_END,
};

static const cyaml_schema_field_t target_fields[] = {
    STR("name", REQ, struct raw_target, name),
    STR("kind", REQ, struct raw_target, kind),
    STR("engine_version", OPT, struct raw_target, engine_version),
    CYAML_FIELD_MAPPING("postgres", OPT, struct raw_target, postgres, pg_fields),
    CYAML_FIELD_END,
};

static const cyaml_schema_value_t target_entry = {
    CYAML_VALUE_MAPPING(CYAML_FLAG_DEFAULT, struct raw_target, target_fields),
};

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

static const cyaml_schema_value_t repo_entry = {
    CYAML_VALUE_MAPPING(CYAML_FLAG_DEFAULT, struct raw_repo, repo_fields),
};

static const cyaml_schema_field_t encryption_fields[] = {
    STR("master_key", OPT, struct raw_encryption, master_key),
    STR("master_key_file", OPT, struct raw_encryption, master_key_file),
    CYAML_FIELD_SEQUENCE("old_master_key_files", OPT | CYAML_FLAG_POINTER, struct raw_encryption,
                         old_master_key_files, &string_entry, 0, 64),
    CYAML_FIELD_INT("compress_level", OPT, struct raw_encryption, compress_level),
    CYAML_FIELD_END,
};

static const cyaml_schema_field_t agent_fields[] = {
    CYAML_FIELD_MAPPING("coordinator", REQ, struct raw_agent, coordinator,
                        agent_coordinator_fields),
    STR("state_dir", OPT, struct raw_agent, state_dir),
    CYAML_FIELD_SEQUENCE("restore_roots", OPT | CYAML_FLAG_POINTER, struct raw_agent, restore_roots,
                         &string_entry, 0, 64),
    STR("hostname", OPT, struct raw_agent, hostname),
    /* Arbitrary keys: libcyaml cannot name them, so config_yaml's tree is
     * read directly (agent_labels). */
    CYAML_FIELD_IGNORE("labels", OPT),
    CYAML_FIELD_SEQUENCE("targets", OPT | CYAML_FLAG_POINTER, struct raw_agent, targets,
                         &target_entry, 0, CYAML_UNLIMITED),
    CYAML_FIELD_SEQUENCE("repositories", OPT | CYAML_FLAG_POINTER, struct raw_agent, repositories,
                         &repo_entry, 0, 64),
    CYAML_FIELD_MAPPING("encryption", OPT, struct raw_agent, encryption, encryption_fields),
    CYAML_FIELD_MAPPING("log", OPT, struct raw_agent, log, log_fields),
    CYAML_FIELD_END,
};

static const cyaml_schema_value_t agent_schema = {
    CYAML_VALUE_MAPPING(CYAML_FLAG_POINTER, struct raw_agent, agent_fields),
};

/* What a missing required key should hold, for the error message. */
static const char *missing_hint(const char *path)
{
    static const struct {
        const char *suffix;
        const char *hint;
    } hints[] = {
        {"coordinator", "a mapping with at least url: and enrollment_token:"},
        {"coordinator.url", "the coordinator's RPC URL, e.g. tcp://coordinator.example:7800"},
        {"enrollment", "a list of enrollment tokens (name:, token: env:NAME)"},
        {".name", "a name of [A-Za-z0-9._-], 1 to 64 characters"},
        {".kind", "one of postgres, redis, sqlite, turso"},
        {".type", "posix (a directory) or s3 (a bucket)"},
    };
    size_t pl = strlen(path);
    for (size_t i = 0; i < sizeof(hints) / sizeof(hints[0]); i++) {
        size_t sl = strlen(hints[i].suffix);
        if (hints[i].suffix[0] == '.' ? (pl >= sl && strcmp(path + pl - sl, hints[i].suffix) == 0)
                                      : strcmp(path, hints[i].suffix) == 0) {
            return hints[i].hint;
        }
    }
    return NULL;
}

/* ======================================================= libcyaml glue */

/* libcyaml's error log, kept instead of printed: it tells which key failed
 * in the rare case the schema walk let something through. */
typedef struct cy_log_buf {
    char text[2048];
    size_t len;
} cy_log_buf;

static void cy_log(cyaml_log_t level, void *ctx, const char *fmt, va_list args)
{
    cy_log_buf *b = ctx;
    if (b == NULL || level < CYAML_LOG_ERROR || b->len >= sizeof(b->text) - 1) {
        return;
    }
    int n = vsnprintf(b->text + b->len, sizeof(b->text) - b->len, fmt, args);
    if (n > 0) {
        b->len += (size_t)n;
        if (b->len >= sizeof(b->text)) {
            b->len = sizeof(b->text) - 1;
        }
    }
}

static cyaml_config_t cy_config(cy_log_buf *log)
{
    cyaml_config_t cfg = {
        .log_fn = cy_log,
        .log_ctx = log,
        .mem_fn = cyaml_mem,
        .log_level = CYAML_LOG_ERROR,
        /* Aliases are refused earlier too; this is the belt to those braces. */
        .flags = CYAML_CFG_NO_ALIAS,
    };
    return cfg;
}

/* Steps 1 and 2: tree + structural check, then libcyaml into *raw. */
static int load_raw(tm_ydoc *doc, const char *name, const char *buf, size_t len,
                    const cyaml_schema_value_t *schema, void **raw, tm_err *err)
{
    *raw = NULL;
    int rc = tm_ydoc_load(doc, name, buf, len, err);
    if (rc != 0) {
        return rc;
    }
    doc->hint = missing_hint;
    rc = tm_ydoc_check(doc, schema, err);
    if (rc != 0) {
        return rc;
    }
    cy_log_buf log = {.len = 0};
    log.text[0] = '\0';
    cyaml_config_t cfg = cy_config(&log);
    cyaml_err_t ce =
        cyaml_load_data((const uint8_t *)buf, len, &cfg, schema, (cyaml_data_t **)raw, NULL);
    if (ce == CYAML_ERR_OOM) {
        *raw = NULL;
        return tm_err_set(err, TM_ENOMEM, "%s: out of memory", name);
    }
    if (ce != CYAML_OK) {
        *raw = NULL;
        return tm_ydoc_cyaml_error(doc, log.text, err);
    }
    return 0;
}

static void free_raw(const cyaml_schema_value_t *schema, void *raw)
{
    if (raw != NULL) {
        cy_log_buf log = {.len = 0};
        cyaml_config_t cfg = cy_config(&log);
        cyaml_free(&cfg, schema, raw, 0);
    }
}

/* ===================================================== validation helpers */

typedef struct vctx {
    tm_ydoc *doc;
    char *dir; /* absolute (when possible) directory of the config file */
    tm_err *err;
} vctx;

static bool has(const vctx *v, const char *path)
{
    return tm_ydoc_find(v->doc, path) != NULL;
}

static int oom(vctx *v)
{
    return tm_err_set(v->err, TM_ENOMEM, "%s: out of memory", v->doc->file);
}

static int dup_str(vctx *v, const char *s, char **out)
{
    *out = strdup(s);
    return *out == NULL ? oom(v) : 0;
}

/* "a/b/c.yaml" -> "<cwd>/a/b"; "c.yaml" -> "<cwd>". Absolute so a daemon
 * that later changes directory still finds its files. */
static char *config_dir(const char *name)
{
    const char *slash = strrchr(name, '/');
    char rel[PATH_MAX];
    if (slash == NULL) {
        snprintf(rel, sizeof(rel), ".");
    } else if (slash == name) {
        snprintf(rel, sizeof(rel), "/");
    } else {
        snprintf(rel, sizeof(rel), "%.*s", (int)(slash - name), name);
    }
    if (rel[0] == '/') {
        return strdup(rel);
    }
    char cwd[PATH_MAX];
    if (getcwd(cwd, sizeof(cwd)) == NULL) {
        return strdup(rel);
    }
    char *out = NULL;
    if (strcmp(rel, ".") == 0) {
        return strdup(cwd);
    }
    if (asprintf(&out, "%s/%s", cwd, rel) < 0) {
        return NULL;
    }
    return out;
}

/* Resolve p against the config's directory. */
static int v_path(vctx *v, const char *path, const char *p, char **out)
{
    *out = NULL;
    if (p[0] == '\0') {
        return tm_ydoc_err(v->doc, v->err, path, "empty path, expected a file or directory path");
    }
    if (p[0] == '/') {
        return dup_str(v, p, out);
    }
    const char *sep = (v->dir[0] != '\0' && v->dir[strlen(v->dir) - 1] == '/') ? "" : "/";
    if (asprintf(out, "%s%s%s", v->dir, sep, p) < 0) {
        *out = NULL;
        return oom(v);
    }
    return 0;
}

/* Integer with default and inclusive range. */
static int v_int(vctx *v, const char *path, int64_t val, int64_t def, int64_t min, int64_t max,
                 uint32_t *out)
{
    if (!has(v, path)) {
        val = def;
    } else if (val < min || val > max) {
        return tm_ydoc_err(v->doc, v->err, path,
                           "%" PRId64 " is out of range, expected %" PRId64 " .. %" PRId64, val,
                           min, max);
    }
    *out = (uint32_t)val;
    return 0;
}

/* "<digits><unit>" with units from the table; returns false if malformed. */
typedef struct unit {
    const char *name;
    uint64_t mult;
} unit;

static bool parse_units(const char *s, const unit *units, size_t nunits, uint64_t *out)
{
    uint64_t n = 0;
    size_t i = 0;
    for (; s[i] >= '0' && s[i] <= '9'; i++) {
        if (i >= 12) { /* no config value needs more; keeps the math in range */
            return false;
        }
        n = n * 10 + (uint64_t)(s[i] - '0');
    }
    if (i == 0) {
        return false;
    }
    for (size_t u = 0; u < nunits; u++) {
        if (strcmp(s + i, units[u].name) == 0) {
            *out = n * units[u].mult;
            return true;
        }
    }
    return false;
}

static const unit duration_units[] = {{"ms", 1}, {"s", 1000}, {"m", 60000}, {"h", 3600000}};
static const unit size_units[] = {
    {"", 1}, {"B", 1}, {"KiB", 1024}, {"MiB", 1024 * 1024}, {"GiB", 1024ull * 1024 * 1024}};

/* Human form of a bound, in the largest unit that divides it. */
static void fmt_units(uint64_t v, const unit *units, size_t nunits, char *out, size_t cap)
{
    size_t best = 0;
    for (size_t u = 0; u < nunits; u++) {
        if (units[u].mult <= v && v % units[u].mult == 0 && units[u].mult >= units[best].mult) {
            best = u;
        }
    }
    snprintf(out, cap, "%" PRIu64 "%s", v / units[best].mult, units[best].name);
}

static int v_units(vctx *v, const char *path, const char *s, const char *def, uint64_t min,
                   uint64_t max, const unit *units, size_t nunits, const char *examples,
                   uint32_t *out)
{
    if (s == NULL || !has(v, path)) {
        s = def;
    }
    uint64_t val;
    if (!parse_units(s, units, nunits, &val)) {
        return tm_ydoc_err(v->doc, v->err, path, "'%.40s' is not valid, expected %s", s, examples);
    }
    if (val < min || val > max) {
        char lo[32], hi[32];
        fmt_units(min, units, nunits, lo, sizeof(lo));
        fmt_units(max, units, nunits, hi, sizeof(hi));
        return tm_ydoc_err(v->doc, v->err, path, "%s is out of range, expected %s .. %s", s, lo,
                           hi);
    }
    *out = (uint32_t)val;
    return 0;
}

static int v_duration(vctx *v, const char *path, const char *s, const char *def, uint64_t min_ms,
                      uint64_t max_ms, uint32_t *out)
{
    return v_units(v, path, s, def, min_ms, max_ms, duration_units, 4,
                   "a duration such as 500ms, 10s, 5m or 1h", out);
}

static int v_size(vctx *v, const char *path, const char *s, const char *def, uint64_t min,
                  uint64_t max, uint32_t *out)
{
    return v_units(v, path, s, def, min, max, size_units, 5, "a size such as 4096, 64KiB or 4MiB",
                   out);
}

enum { URL_TCP = 1, URL_IPC = 2, URL_TLS = 4, URL_HTTP = 8 };

/* nng URLs we accept. For host:port schemes the port must be numeric; a
 * listener may use port 0 (kernel picks, handy in tests) and an empty or
 * "*" host (all interfaces), a dialer may not. */
static int v_url(vctx *v, const char *path, const char *url, unsigned allowed, bool listen)
{
    static const struct {
        const char *prefix;
        unsigned kind;
    } schemes[] = {
        {"tcp://", URL_TCP}, {"tls+tcp://", URL_TLS}, {"ipc://", URL_IPC}, {"http://", URL_HTTP}};
    char expected[96] = "";
    size_t off = 0;
    for (size_t i = 0; i < 4; i++) {
        if (allowed & schemes[i].kind) {
            off += (size_t)snprintf(expected + off, sizeof(expected) - off, "%s%s",
                                    off ? " or " : "", schemes[i].prefix);
        }
    }
    size_t i = 0;
    for (; i < 4; i++) {
        if ((allowed & schemes[i].kind) &&
            strncmp(url, schemes[i].prefix, strlen(schemes[i].prefix)) == 0) {
            break;
        }
    }
    if (i == 4) {
        return tm_ydoc_err(v->doc, v->err, path, "unsupported URL '%.80s', expected %s", url,
                           expected);
    }
    const char *rest = url + strlen(schemes[i].prefix);
    for (const char *p = rest; *p; p++) {
        if (*p <= ' ' || *p == 0x7f) {
            return tm_ydoc_err(v->doc, v->err, path,
                               "URL contains whitespace or control characters");
        }
    }
    if (schemes[i].kind == URL_IPC) {
        if (rest[0] == '\0') {
            return tm_ydoc_err(v->doc, v->err, path, "expected a socket path after ipc://");
        }
        return 0;
    }
    const char *colon = strrchr(rest, ':');
    const char *bracket = strrchr(rest, ']');
    if (colon == NULL || (bracket != NULL && colon < bracket)) {
        return tm_ydoc_err(v->doc, v->err, path, "'%.80s' has no port, expected %shost:port", url,
                           schemes[i].prefix);
    }
    size_t hostlen = (size_t)(colon - rest);
    const char *port = colon + 1;
    long pn = 0;
    size_t pl = strlen(port);
    bool ok = pl >= 1 && pl <= 5;
    for (size_t k = 0; ok && k < pl; k++) {
        ok = port[k] >= '0' && port[k] <= '9';
        pn = pn * 10 + (port[k] - '0');
    }
    if (!ok || pn > 65535 || (pn == 0 && !listen)) {
        return tm_ydoc_err(v->doc, v->err, path, "bad port in '%.80s', expected %s .. 65535", url,
                           listen ? "0" : "1");
    }
    if (!listen && (hostlen == 0 || (hostlen == 1 && rest[0] == '*'))) {
        return tm_ydoc_err(v->doc, v->err, path, "'%.80s' has no host, expected %shost:port", url,
                           schemes[i].prefix);
    }
    return 0;
}

static int v_log_level(vctx *v, const char *path, const char *s, tm_log_level *out)
{
    *out = TM_LOG_INFO;
    if (s == NULL || !has(v, path)) {
        return 0;
    }
    if (tm_log_parse_level(s, out) != 0) {
        return tm_ydoc_err(v->doc, v->err, path,
                           "'%.40s' is not a level, expected debug, info, "
                           "warn or error",
                           s);
    }
    return 0;
}

/* [A-Za-z0-9._-]{1,64}: names end up in paths, metrics labels, catalogs. */
static bool valid_name(const char *s)
{
    size_t n = strlen(s);
    if (n < 1 || n > 64) {
        return false;
    }
    for (size_t i = 0; i < n; i++) {
        char c = s[i];
        if (!((c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') ||
              c == '.' || c == '_' || c == '-')) {
            return false;
        }
    }
    return true;
}

static int v_name(vctx *v, const char *path, const char *s)
{
    if (!valid_name(s)) {
        return tm_ydoc_err(v->doc, v->err, path,
                           "'%.80s' is not a valid name, expected 1 to 64 of [A-Za-z0-9._-]", s);
    }
    return 0;
}

/* A secret key `key` under `base`: exactly one of `key: env:NAME` and
 * `key_file: path`. The value is never echoed: a user who typed the token
 * inline should not then find it in a log. */
static int v_secret(vctx *v, const char *base, const char *key, const char *ref, const char *file,
                    char **out)
{
    char kp[160], fp[170];
    snprintf(kp, sizeof(kp), "%s%s%s", base, base[0] ? "." : "", key);
    snprintf(fp, sizeof(fp), "%s_file", kp);
    *out = NULL;
    if (ref != NULL && file != NULL) {
        return tm_ydoc_err_key(v->doc, v->err, fp,
                               "both %s and %s_file are set, expected exactly one", key, key);
    }
    if (ref == NULL && file == NULL) {
        return tm_ydoc_err(v->doc, v->err, kp,
                           "required secret is missing, expected %s: env:NAME or %s_file: /path",
                           key, key);
    }
    int rc;
    char msg[TM_ERR_MSG_MAX];
    if (ref != NULL) {
        if (strncmp(ref, "env:", 4) != 0) {
            return tm_ydoc_err(v->doc, v->err, kp,
                               "inline secrets are not allowed, expected %s: env:NAME or "
                               "%s_file: /path",
                               key, key);
        }
        rc = tm_secret_resolve(ref, NULL, out, v->err);
        if (rc != 0) {
            snprintf(msg, sizeof(msg), "%s", v->err->msg);
            return rc == TM_ENOMEM ? rc : tm_ydoc_err(v->doc, v->err, kp, "%s", msg);
        }
        return 0;
    }
    char *full = NULL;
    rc = v_path(v, fp, file, &full);
    if (rc != 0) {
        return rc;
    }
    rc = tm_secret_resolve(NULL, full, out, v->err);
    free(full);
    if (rc != 0) {
        snprintf(msg, sizeof(msg), "%s", v->err->msg);
        return rc == TM_ENOMEM ? rc : tm_ydoc_err(v->doc, v->err, fp, "%s", msg);
    }
    return 0;
}

static void free_secret(char *s);

/* A secret that authenticates (admin and enrollment tokens): v_secret plus a
 * minimum length, because a short token can be guessed over the network.
 * The error points at whichever of key / key_file was given. */
static int v_auth_token(vctx *v, const char *base, const char *key, const char *ref,
                        const char *file, char **out)
{
    int rc = v_secret(v, base, key, ref, file, out);
    if (rc != 0 || strlen(*out) >= TM_TOKEN_MIN_LEN) {
        return rc;
    }
    char kp[170];
    snprintf(kp, sizeof(kp), "%s%s%s%s", base, base[0] ? "." : "", key, file ? "_file" : "");
    size_t len = strlen(*out);
    free_secret(*out);
    *out = NULL;
    return tm_ydoc_err(v->doc, v->err, kp,
                       "token is %zu characters, expected at least %d (generate one with: "
                       "openssl rand -hex 32)",
                       len, TM_TOKEN_MIN_LEN);
}

/* Strict RFC 3339 in UTC: "2027-01-01T00:00:00Z". */
static bool parse_rfc3339_utc(const char *s, int64_t *out)
{
    static const char shape[] = "dddd-dd-ddTdd:dd:ddZ";
    if (strlen(s) != sizeof(shape) - 1) {
        return false;
    }
    for (size_t i = 0; shape[i]; i++) {
        if (shape[i] == 'd' ? (s[i] < '0' || s[i] > '9') : s[i] != shape[i]) {
            return false;
        }
    }
    struct tm tm = {0};
    tm.tm_year = atoi(s) - 1900;
    tm.tm_mon = atoi(s + 5) - 1;
    tm.tm_mday = atoi(s + 8);
    tm.tm_hour = atoi(s + 11);
    tm.tm_min = atoi(s + 14);
    tm.tm_sec = atoi(s + 17);
    if (tm.tm_mon < 0 || tm.tm_mon > 11 || tm.tm_mday < 1 || tm.tm_hour > 23 || tm.tm_min > 59 ||
        tm.tm_sec > 59 || tm.tm_year < 70) {
        return false;
    }
    struct tm check = tm;
    time_t t = timegm(&check);
    /* timegm normalises Feb 30 to Mar 2: a changed day means it was invalid. */
    if (t == (time_t)-1 || check.tm_mday != tm.tm_mday || check.tm_mon != tm.tm_mon) {
        return false;
    }
    *out = (int64_t)t;
    return true;
}

/* cert_file and key_file come as a pair; paths resolved. */
static int v_tls_files(vctx *v, const char *base, const struct raw_tls *r, tm_tls_conf *t)
{
    char p[128];
    struct {
        const char *key;
        const char *val;
        char **out;
    } files[] = {
        {"cert_file", r->cert_file, &t->cert_file},
        {"key_file", r->key_file, &t->key_file},
        {"ca_file", r->ca_file, &t->ca_file},
    };
    for (size_t i = 0; i < 3; i++) {
        if (files[i].val != NULL) {
            snprintf(p, sizeof(p), "%s.%s", base, files[i].key);
            int rc = v_path(v, p, files[i].val, files[i].out);
            if (rc != 0) {
                return rc;
            }
        }
    }
    if (t->key_file != NULL) {
        /* Warned, not refused: Debian-style ssl-cert groups read keys on
         * purpose. A missing file is reported when TLS is set up. */
        tm_err ignored;
        tm_secret_file_check(t->key_file, "TLS private key", TM_SECRET_WARN, &ignored);
    }
    if ((r->cert_file != NULL) != (r->key_file != NULL)) {
        const char *set = r->cert_file ? "cert_file" : "key_file";
        const char *unset = r->cert_file ? "key_file" : "cert_file";
        snprintf(p, sizeof(p), "%s.%s", base, set);
        return tm_ydoc_err_key(v->doc, v->err, p, "%s is set without %s, expected both", set,
                               unset);
    }
    return 0;
}

/* ===================================================== coordinator.yaml */

typedef int (*coord_section)(vctx *v, const struct raw_coordinator *r, tm_coordinator_conf *c);

static int coord_listen(vctx *v, const struct raw_coordinator *r, tm_coordinator_conf *c)
{
    const char *url = r->listen != NULL ? r->listen : "tcp://127.0.0.1:7800";
    int rc = v_url(v, "listen", url, URL_TCP | URL_TLS | URL_IPC, true);
    return rc != 0 ? rc : dup_str(v, url, &c->listen);
}

static int coord_http(vctx *v, const struct raw_coordinator *r, tm_coordinator_conf *c)
{
    const char *url = r->http.listen != NULL ? r->http.listen : "http://127.0.0.1:9187";
    if (url[0] != '\0') {
        int rc = v_url(v, "http.listen", url, URL_HTTP, true);
        if (rc != 0) {
            return rc;
        }
    }
    return dup_str(v, url, &c->http_listen);
}

static int coord_catalog(vctx *v, const struct raw_coordinator *r, tm_coordinator_conf *c)
{
    return v_path(v, "catalog.path", r->catalog.path ? r->catalog.path : "catalog.db",
                  &c->catalog_path);
}

static int coord_admin_token(vctx *v, const struct raw_coordinator *r, tm_coordinator_conf *c)
{
    return v_auth_token(v, "", "admin_token", r->admin_token, r->admin_token_file, &c->admin_token);
}

static int coord_enrollment(vctx *v, const struct raw_coordinator *r, tm_coordinator_conf *c)
{
    c->enrollments = calloc(r->enrollment_count, sizeof(*c->enrollments));
    if (c->enrollments == NULL) {
        return oom(v);
    }
    for (uint32_t i = 0; i < r->enrollment_count; i++) {
        const struct raw_enrollment *re = &r->enrollment[i];
        tm_enrollment_conf *e = &c->enrollments[i];
        c->n_enrollments = i + 1; /* so free() sees what was filled */
        char base[48], p[96];
        snprintf(base, sizeof(base), "enrollment[%" PRIu32 "]", i);
        snprintf(p, sizeof(p), "%s.name", base);
        int rc = v_name(v, p, re->name);
        for (uint32_t j = 0; rc == 0 && j < i; j++) {
            if (strcmp(r->enrollment[j].name, re->name) == 0) {
                rc = tm_ydoc_err(v->doc, v->err, p,
                                 "duplicate enrollment name '%s', names must be unique", re->name);
            }
        }
        if (rc == 0) {
            rc = dup_str(v, re->name, &e->name);
        }
        if (rc == 0) {
            rc = v_auth_token(v, base, "token", re->token, re->token_file, &e->token);
        }
        if (rc != 0) {
            return rc;
        }
        e->auto_approve = re->auto_approve;
        if (re->expires != NULL) {
            snprintf(p, sizeof(p), "%s.expires", base);
            if (!parse_rfc3339_utc(re->expires, &e->expires_at)) {
                return tm_ydoc_err(v->doc, v->err, p,
                                   "'%.40s' is not a UTC time, expected RFC 3339 like "
                                   "2027-01-01T00:00:00Z",
                                   re->expires);
            }
        }
    }
    return 0;
}

static int coord_heartbeat(vctx *v, const struct raw_coordinator *r, tm_coordinator_conf *c)
{
    const struct raw_heartbeat *h = &r->heartbeat;
    int rc = v_duration(v, "heartbeat.interval", h->interval, "10s", 100, 3600000,
                        &c->heartbeat_interval_ms);
    if (rc == 0) {
        rc = v_int(v, "heartbeat.stale_after_missed", h->stale_after_missed, 3, 1, 1000,
                   &c->stale_after_missed);
    }
    if (rc == 0) {
        rc = v_int(v, "heartbeat.lost_after_missed", h->lost_after_missed, 10, 2, 100000,
                   &c->lost_after_missed);
    }
    if (rc == 0 && c->lost_after_missed <= c->stale_after_missed) {
        /* Point at whichever of the two the user actually wrote. */
        const char *at = has(v, "heartbeat.lost_after_missed") ? "heartbeat.lost_after_missed"
                                                               : "heartbeat.stale_after_missed";
        rc = tm_ydoc_err(v->doc, v->err, at,
                         "lost_after_missed (%" PRIu32 ") must be greater than "
                         "stale_after_missed (%" PRIu32 ")",
                         c->lost_after_missed, c->stale_after_missed);
    }
    return rc;
}

static int coord_rpc(vctx *v, const struct raw_coordinator *r, tm_coordinator_conf *c)
{
    int rc = v_size(v, "rpc.max_message_size", r->rpc.max_message_size, "4MiB", 4096,
                    256u * 1024 * 1024, &c->rpc_max_message_bytes);
    if (rc == 0) {
        rc = v_int(v, "rpc.contexts", r->rpc.contexts, 64, 1, 4096, &c->rpc_contexts);
    }
    /* Bounds on what one client can hold (see rpc.h): defaults that no
     * well-behaved agent or tidemarkctl comes near. */
    if (rc == 0) {
        rc = v_size(v, "rpc.max_unauthenticated_message_size",
                    r->rpc.max_unauthenticated_message_size, "64KiB", 1024, 16u * 1024 * 1024,
                    &c->rpc_max_unauth_message_bytes);
    }
    if (rc == 0) {
        rc = v_duration(v, "rpc.send_timeout", r->rpc.send_timeout, "10s", 100, 3600000,
                        &c->rpc_send_timeout_ms);
    }
    if (rc == 0) {
        rc = v_duration(v, "rpc.first_request_timeout", r->rpc.first_request_timeout, "10s", 100,
                        3600000, &c->rpc_first_request_timeout_ms);
    }
    if (rc == 0) {
        rc = v_duration(v, "rpc.idle_timeout", r->rpc.idle_timeout, "5m", 1000, 86400000,
                        &c->rpc_idle_timeout_ms);
    }
    if (rc == 0) {
        rc = v_int(v, "rpc.max_pending_connections_per_address",
                   r->rpc.max_pending_connections_per_address, 128, 1, 1000000,
                   &c->rpc_max_pending_per_addr);
    }
    if (rc == 0) {
        rc = v_int(v, "rpc.max_calls_per_connection", r->rpc.max_calls_per_connection, 64, 1,
                   100000, &c->rpc_max_calls_per_conn);
    }
    return rc;
}

static int coord_tasks(vctx *v, const struct raw_coordinator *r, tm_coordinator_conf *c)
{
    const struct raw_tasks *t = &r->tasks;
    int rc = v_duration(v, "tasks.lease", t->lease, "60s", 1000, 86400000, &c->task_lease_ms);
    if (rc == 0) {
        rc = v_int(v, "tasks.max_attempts", t->max_attempts, 3, 1, 100, &c->task_max_attempts);
    }
    if (rc == 0) {
        rc = v_duration(v, "tasks.retry_backoff", t->retry_backoff, "5s", 100, 86400000,
                        &c->task_retry_backoff_ms);
    }
    if (rc == 0) {
        rc = v_duration(v, "tasks.poll_max", t->poll_max, "25s", 100, 600000, &c->task_poll_max_ms);
    }
    return rc;
}

static int coord_tls(vctx *v, const struct raw_coordinator *r, tm_coordinator_conf *c)
{
    int rc = v_tls_files(v, "tls", &r->tls, &c->tls);
    if (rc != 0) {
        return rc;
    }
    c->tls.require_client_cert = r->tls.require_client_cert;
    c->tls_enabled = c->tls.cert_file != NULL;
    bool tls_url = strncmp(c->listen, "tls+tcp://", 10) == 0;
    if (tls_url && !c->tls_enabled) {
        return tm_ydoc_err(v->doc, v->err, "listen",
                           "tls+tcp:// needs a certificate, expected tls.cert_file and "
                           "tls.key_file");
    }
    if (!tls_url && c->tls_enabled) {
        /* listen may be the default: then the line to fix is the cert. */
        return tm_ydoc_err(v->doc, v->err, has(v, "listen") ? "listen" : "tls.cert_file",
                           "tls.cert_file is set but listen is not tls+tcp://, expected a "
                           "tls+tcp:// URL");
    }
    if (c->tls.require_client_cert && c->tls.ca_file == NULL) {
        return tm_ydoc_err(v->doc, v->err, "tls.require_client_cert",
                           "client certificates need a CA to check them against, expected "
                           "tls.ca_file");
    }
    return 0;
}

static int coord_log(vctx *v, const struct raw_coordinator *r, tm_coordinator_conf *c)
{
    return v_log_level(v, "log.level", r->log.level, &c->log_level);
}

/* Long durations in whole seconds, up to days (pitr_window: 7d). */
static const unit seconds_units[] = {{"s", 1}, {"m", 60}, {"h", 3600}, {"d", 86400}};

static int v_seconds(vctx *v, const char *path, const char *s, const char *def, int64_t min_s,
                     int64_t max_s, int64_t *out)
{
    if (s == NULL || !has(v, path)) {
        s = def;
    }
    uint64_t val;
    if (!parse_units(s, seconds_units, 4, &val)) {
        return tm_ydoc_err(v->doc, v->err, path,
                           "'%.40s' is not valid, expected a duration such as 30s, 15m, 26h or 7d",
                           s);
    }
    if ((int64_t)val < min_s || (int64_t)val > max_s) {
        char lo[32], hi[32];
        fmt_units((uint64_t)min_s, seconds_units, 4, lo, sizeof(lo));
        fmt_units((uint64_t)max_s, seconds_units, 4, hi, sizeof(hi));
        return tm_ydoc_err(v->doc, v->err, path, "%s is out of range, expected %s .. %s", s, lo,
                           hi);
    }
    *out = (int64_t)val;
    return 0;
}

static int v_int32(vctx *v, const char *path, int64_t val, int64_t def, int64_t min, int64_t max,
                   int32_t *out)
{
    uint32_t u = 0;
    int rc = v_int(v, path, val, def, min, max, &u);
    *out = (int32_t)u;
    return rc;
}

static tm_cron_check_fn cron_check;

void tm_config_set_cron_check(tm_cron_check_fn fn)
{
    cron_check = fn;
}

/* "file:line:col: path" of a value, for errors the coordinator finds later. */
static int where_of(vctx *v, const char *path, char **out)
{
    const tm_yentry *e = tm_ydoc_find(v->doc, path);
    int line = e != NULL ? e->val.line : 1, col = e != NULL ? e->val.col : 1;
    if (asprintf(out, "%s:%d:%d: %s", v->doc->file, line, col, path) < 0) {
        *out = NULL;
        return oom(v);
    }
    return 0;
}

static int v_cron(vctx *v, const char *path, const char *expr, char **out, char **where)
{
    if (cron_check != NULL) {
        tm_err cerr = {0};
        if (cron_check(expr, &cerr) != 0) {
            return tm_ydoc_err(v->doc, v->err, path, "%s", cerr.msg);
        }
    }
    int rc = dup_str(v, expr, out);
    return rc != 0 ? rc : where_of(v, path, where);
}

static int v_label_map(vctx *v, const char *path, tm_label_conf **labels, size_t *n_labels);

/* policies[i].drill: restore drills (schedule "" = no scheduled drills). */
static int coord_policy_drill(vctx *v, const char *b, const struct raw_policy_drill *rd,
                              tm_policy_conf *p)
{
    char k[160];
#define KP(sub) (snprintf(k, sizeof(k), "%s.drill.%s", b, sub), k)
    tm_policy_drill_conf *d = &p->drill;
    int rc = 0;
    const char *sched = has(v, KP("schedule")) ? rd->schedule : "0 5 1 * *";
    if (sched != NULL && sched[0] != '\0') {
        rc = v_cron(v, KP("schedule"), sched, &d->schedule, &d->schedule_where);
    }
    if (rc == 0 && rd->staging_agent != NULL) {
        if (rd->staging_agent[0] == '\0') {
            return tm_ydoc_err(v->doc, v->err, KP("staging_agent"),
                               "empty, expected an agent id or hostname (omit the key to drill "
                               "on the target's own agent)");
        }
        rc = dup_str(v, rd->staging_agent, &d->staging_agent);
    }
    if (rc == 0 && rd->dir != NULL) {
        if (rd->dir[0] != '/') {
            return tm_ydoc_err(v->doc, v->err, KP("dir"),
                               "'%.80s' is not an absolute path, expected a directory on the "
                               "staging agent (drills restore into fresh subdirectories of it)",
                               rd->dir);
        }
        rc = dup_str(v, rd->dir, &d->dir);
    }
    if (rc == 0 && rd->checks_count > 0) {
        d->checks = calloc(rd->checks_count, sizeof(*d->checks));
        if (d->checks == NULL) {
            return oom(v);
        }
        for (uint32_t j = 0; rc == 0 && j < rd->checks_count; j++) {
            snprintf(k, sizeof(k), "%s.drill.checks[%" PRIu32 "]", b, j);
            if (rd->checks[j] == NULL || rd->checks[j][0] == '\0') {
                return tm_ydoc_err(v->doc, v->err, k,
                                   "empty check, expected an SQL statement whose first column is "
                                   "true when the restored data is right");
            }
            rc = dup_str(v, rd->checks[j], &d->checks[j]);
            d->n_checks = j + 1;
        }
    }
    if (rc == 0) {
        rc = v_seconds(v, KP("rto_goal"), rd->rto_goal, "1h", 1, 7 * 86400, &d->rto_goal_s);
    }
    if (rc == 0) {
        if (has(v, KP("rpo_goal"))) {
            rc = v_seconds(v, KP("rpo_goal"), rd->rpo_goal, "15m", 1, 30 * 86400, &d->rpo_goal_s);
        } else {
            d->rpo_goal_s = p->rpo_goal_s;
        }
    }
#undef KP
    return rc;
}

/* policies[i].replication: which repositories must hold everything, how
 * often that is checked, how much lag is tolerated. */
static int coord_policy_replication(vctx *v, const char *b, const struct raw_policy_replication *r,
                                    tm_policy_conf *p)
{
    char k[128];
#define KR(sub) (snprintf(k, sizeof(k), "%s.replication.%s", b, sub), k)
    p->has_replication = 1;
    int rc = 0;
    if (r->repositories_count > 0) {
        p->repl_repositories = calloc(r->repositories_count, sizeof(char *));
        if (p->repl_repositories == NULL) {
            return oom(v);
        }
    }
    for (uint32_t i = 0; rc == 0 && i < r->repositories_count; i++) {
        char e[64];
        snprintf(e, sizeof(e), "repositories[%" PRIu32 "]", i);
        rc = v_name(v, KR(e), r->repositories[i]);
        for (uint32_t j = 0; rc == 0 && j < i; j++) {
            if (strcmp(r->repositories[i], r->repositories[j]) == 0) {
                rc = tm_ydoc_err(v->doc, v->err, KR(e), "'%s' is listed twice", r->repositories[i]);
            }
        }
        if (rc == 0 && (rc = dup_str(v, r->repositories[i], &p->repl_repositories[i])) == 0) {
            p->n_repl_repositories = i + 1;
        }
    }
    if (rc == 0) {
        rc = v_int(v, KR("min_regions"), r->min_regions, 0, 0, 64, &p->repl_min_regions);
    }
    if (rc == 0) {
        const char *cron = has(v, KR("check")) && r->check != NULL ? r->check : "*/30 * * * *";
        rc = v_cron(v, KR("check"), cron, &p->repl_check, &p->repl_check_where);
    }
    if (rc == 0) {
        rc = v_seconds(v, KR("lag_threshold"), r->lag_threshold, "1h", 1, 30 * 86400,
                       &p->repl_lag_max_s);
    }
#undef KR
    return rc;
}

static int coord_policy(vctx *v, uint32_t i, const struct raw_policy *rp, tm_policy_conf *p)
{
    char b[48], k[128];
    snprintf(b, sizeof(b), "policies[%" PRIu32 "]", i);
#define KP(sub) (snprintf(k, sizeof(k), "%s.%s", b, sub), k)
    int rc = v_name(v, KP("name"), rp->name);
    if (rc == 0) {
        rc = dup_str(v, rp->name, &p->name);
    }
    if (rc == 0 && rp->match.kind != NULL) {
        if (tm_target_kind_parse(rp->match.kind) == 0) {
            return tm_ydoc_err(v->doc, v->err, KP("match.kind"),
                               "'%.40s' is not a target kind, expected postgres, redis, sqlite or "
                               "turso",
                               rp->match.kind);
        }
        rc = dup_str(v, rp->match.kind, &p->match_kind);
    }
    if (rc == 0) {
        rc = v_label_map(v, KP("match.labels"), &p->labels, &p->n_labels);
    }
    if (rc == 0) {
        const char *full = has(v, KP("schedule.full")) && rp->schedule.full != NULL
                               ? rp->schedule.full
                               : "0 3 * * *";
        rc = v_cron(v, KP("schedule.full"), full, &p->full, &p->full_where);
    }
    if (rc == 0) {
        const char *inc = has(v, KP("schedule.incremental")) ? rp->schedule.incremental : "@hourly";
        if (inc != NULL && inc[0] != '\0') {
            rc = v_cron(v, KP("schedule.incremental"), inc, &p->incremental, &p->incremental_where);
        }
    }
    if (rc == 0) {
        /* Snapshots are Redis's RDB (every 6 h unless said otherwise); a
         * PostgreSQL policy has none: its full backup is the snapshot. */
        int redis = rp->match.kind != NULL && strcmp(rp->match.kind, "redis") == 0;
        int pg = rp->match.kind != NULL && strcmp(rp->match.kind, "postgres") == 0;
        const char *snap = has(v, KP("schedule.snapshot")) ? rp->schedule.snapshot
                           : redis                         ? "0 */6 * * *"
                                                           : NULL;
        if (pg && snap != NULL && snap[0] != '\0') {
            return tm_ydoc_err(v->doc, v->err, KP("schedule.snapshot"),
                               "postgres targets have no snapshots (their full backup is one); "
                               "remove it or match another kind");
        }
        if (snap != NULL && snap[0] != '\0') {
            rc = v_cron(v, KP("schedule.snapshot"), snap, &p->snapshot, &p->snapshot_where);
        }
    }
    if (rc == 0) {
        rc =
            v_seconds(v, KP("schedule.jitter"), rp->schedule.jitter, "10m", 0, 86400, &p->jitter_s);
    }
    if (rc == 0) {
        rc = v_seconds(v, KP("schedule.late_after"), rp->schedule.late_after, "1h", 1, 7 * 86400,
                       &p->late_after_s);
    }
    p->log_shipping = has(v, KP("log_shipping")) ? rp->log_shipping : true;
    /* 0 turns a class off; -1 keeps every bucket (retention.h). */
    const struct raw_policy_retention *rr = &rp->retention;
    tm_policy_retention_conf *pr = &p->retention;
    if (rc == 0) {
        rc = v_int32(v, KP("retention.keep_daily"), rr->keep_daily, 7, -1, 100000, &pr->keep_daily);
    }
    if (rc == 0) {
        rc = v_int32(v, KP("retention.keep_weekly"), rr->keep_weekly, 4, -1, 100000,
                     &pr->keep_weekly);
    }
    if (rc == 0) {
        rc = v_int32(v, KP("retention.keep_monthly"), rr->keep_monthly, 12, -1, 100000,
                     &pr->keep_monthly);
    }
    if (rc == 0) {
        rc =
            v_int32(v, KP("retention.keep_yearly"), rr->keep_yearly, 7, -1, 1000, &pr->keep_yearly);
    }
    if (rc == 0) {
        rc = v_int32(v, KP("retention.min_count"), rr->min_count, 1, 1, 100000, &pr->min_count);
    }
    if (rc == 0) {
        rc = v_int32(v, KP("retention.keep_failed"), rr->keep_failed, 3, 0, 100000,
                     &pr->keep_failed);
    }
    if (rc == 0) {
        rc = v_seconds(v, KP("retention.pitr_window"), rr->pitr_window, "7d", 0, 3660 * 86400,
                       &pr->pitr_window_s);
    }
    if (rc == 0) {
        const char *ap = has(v, KP("retention.apply")) ? rr->apply : "@hourly";
        if (ap != NULL && ap[0] != '\0') {
            rc = v_cron(v, KP("retention.apply"), ap, &pr->apply, &pr->apply_where);
        }
    }
    if (rc == 0) {
        rc = v_seconds(v, KP("rpo_goal"), rp->rpo_goal, "15m", 1, 30 * 86400, &p->rpo_goal_s);
    }
    if (rc == 0) {
        rc = v_seconds(v, KP("backup_max_age"), rp->backup_max_age, "26h", 60, 3660 * 86400,
                       &p->backup_max_age_s);
    }
    if (rc == 0) {
        rc = coord_policy_drill(v, b, &rp->drill, p);
    }
    if (rc == 0 && has(v, KP("replication"))) {
        rc = coord_policy_replication(v, b, &rp->replication, p);
    }
#undef KP
    return rc;
}

static int coord_policies(vctx *v, const struct raw_coordinator *r, tm_coordinator_conf *c)
{
    if (r->policies_count == 0) {
        return 0;
    }
    c->policies = calloc(r->policies_count, sizeof(*c->policies));
    if (c->policies == NULL) {
        return oom(v);
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

static int coord_scheduler(vctx *v, const struct raw_coordinator *r, tm_coordinator_conf *c)
{
    const struct raw_scheduler *s = &r->scheduler;
    int rc = v_int(v, "scheduler.max_tasks_per_agent", s->max_tasks_per_agent, 2, 0, 10000,
                   &c->sched_max_per_agent);
    if (rc == 0) {
        rc = v_int(v, "scheduler.max_tasks_per_repository", s->max_tasks_per_repository, 4, 0,
                   10000, &c->sched_max_per_repo);
    }
    c->sched_paused = s->paused;
    return rc;
}

static int coord_alerts(vctx *v, const struct raw_coordinator *r, tm_coordinator_conf *c)
{
    const struct raw_alerts *a = &r->alerts;
    int rc = v_duration(v, "alerts.evaluate_every", a->evaluate_every, "30s", 1000, 300000,
                        &c->alerts_evaluate_ms);
    if (rc == 0) {
        rc = v_duration(v, "alerts.repeat_interval", a->repeat_interval, "4h", 60000, 7 * 86400000u,
                        &c->alerts_repeat_ms);
    }
    if (rc != 0 || a->sinks_count == 0) {
        return rc;
    }
    c->sinks = calloc(a->sinks_count, sizeof(*c->sinks));
    if (c->sinks == NULL) {
        return oom(v);
    }
    for (uint32_t i = 0; i < a->sinks_count; i++) {
        const struct raw_sink *rs = &a->sinks[i];
        tm_alert_sink_conf *s = &c->sinks[i];
        c->n_sinks = i + 1;
        char b[48], k[96];
        snprintf(b, sizeof(b), "alerts.sinks[%" PRIu32 "]", i);
        snprintf(k, sizeof(k), "%s.name", b);
        rc = v_name(v, k, rs->name);
        for (uint32_t j = 0; rc == 0 && j < i; j++) {
            if (strcmp(a->sinks[j].name, rs->name) == 0) {
                rc = tm_ydoc_err(v->doc, v->err, k,
                                 "duplicate sink name '%s', names must be unique", rs->name);
            }
        }
        if (rc == 0) {
            rc = dup_str(v, rs->name, &s->name);
        }
        if (rc != 0) {
            return rc;
        }
        snprintf(k, sizeof(k), "%s.kind", b);
        if (strcmp(rs->kind, "webhook") != 0 && strcmp(rs->kind, "alertmanager") != 0 &&
            strcmp(rs->kind, "slack") != 0) {
            return tm_ydoc_err(
                v->doc, v->err, k,
                "'%.40s' is not a sink kind, expected webhook, alertmanager or slack", rs->kind);
        }
        if ((rc = dup_str(v, rs->kind, &s->kind)) != 0) {
            return rc;
        }
        /* A plain URL may be inline (a local Alertmanager); one carrying a
         * token (Slack) belongs in url: env:NAME or url_file. */
        snprintf(k, sizeof(k), "%s.url", b);
        if (rs->url != NULL && strncmp(rs->url, "env:", 4) != 0) {
            if (rs->url_file != NULL) {
                return tm_ydoc_err_key(v->doc, v->err, k,
                                       "both url and url_file are set, expected exactly one");
            }
            rc = dup_str(v, rs->url, &s->url);
        } else {
            rc = v_secret(v, b, "url", rs->url, rs->url_file, &s->url);
        }
        if (rc != 0) {
            return rc;
        }
        if (strncmp(s->url, "http://", 7) != 0 && strncmp(s->url, "https://", 8) != 0) {
            /* Never echo the value: it may hold a token. */
            return tm_ydoc_err(v->doc, v->err, k, "not an http:// or https:// URL");
        }
        snprintf(k, sizeof(k), "%s.min_severity", b);
        const char *sev = rs->min_severity != NULL ? rs->min_severity : "info";
        if (strcmp(sev, "info") != 0 && strcmp(sev, "warning") != 0 &&
            strcmp(sev, "critical") != 0) {
            return tm_ydoc_err(v->doc, v->err, k,
                               "'%.40s' is not a severity, expected info, warning or critical",
                               sev);
        }
        if ((rc = dup_str(v, sev, &s->min_severity)) != 0) {
            return rc;
        }
        snprintf(k, sizeof(k), "%s.send_resolved", b);
        s->send_resolved = has(v, k) ? rs->send_resolved : true;
    }
    return 0;
}

/* Order matters where a rule reads an earlier result (tls reads listen). */
static const coord_section coord_sections[] = {
    coord_listen,    coord_http,      coord_catalog, coord_admin_token, coord_enrollment,
    coord_heartbeat, coord_rpc,       coord_tasks,   coord_tls,         coord_log,
    coord_policies,  coord_scheduler, coord_alerts,
};

/* =========================================================== agent.yaml */

typedef int (*agent_section)(vctx *v, const struct raw_agent *r, tm_agent_conf *c);

static bool g_agent_offline;

void tm_config_agent_offline(bool on)
{
    g_agent_offline = on;
}

static int agent_coordinator(vctx *v, const struct raw_agent *r, tm_agent_conf *c)
{
    const struct raw_agent_coordinator *rc_ = &r->coordinator;
    int rc = v_url(v, "coordinator.url", rc_->url, URL_TCP | URL_TLS | URL_IPC, false);
    if (rc == 0) {
        rc = dup_str(v, rc_->url, &c->coordinator_url);
    }
    /* The WAL commands run by PostgreSQL (restore_command) get a minimal
     * environment (agent/restore_root.c): the token they never use may be
     * an env: reference to a variable they do not have. */
    bool unused_env_token = g_agent_offline && rc_->enrollment_token != NULL &&
                            strncmp(rc_->enrollment_token, "env:", 4) == 0 &&
                            getenv(rc_->enrollment_token + 4) == NULL;
    if (rc == 0 && !unused_env_token) {
        rc = v_secret(v, "coordinator", "enrollment_token", rc_->enrollment_token,
                      rc_->enrollment_token_file, &c->enrollment_token);
    }
    if (rc == 0) {
        rc = v_duration(v, "coordinator.timeout", rc_->timeout, "10s", 100, 600000,
                        &c->rpc_timeout_ms);
    }
    if (rc == 0) {
        rc = v_duration(v, "coordinator.backoff_max", rc_->backoff_max, "30s", 100, 3600000,
                        &c->backoff_max_ms);
    }
    if (rc == 0) {
        rc = v_tls_files(v, "coordinator.tls", &rc_->tls, &c->tls);
    }
    if (rc == 0 && rc_->tls.server_name != NULL) {
        rc = dup_str(v, rc_->tls.server_name, &c->tls.server_name);
    }
    if (rc != 0) {
        return rc;
    }
    bool tls_url = strncmp(c->coordinator_url, "tls+tcp://", 10) == 0;
    c->tls_enabled = tls_url || c->tls.ca_file != NULL;
    if (!tls_url && (c->tls.ca_file != NULL || c->tls.cert_file != NULL)) {
        return tm_ydoc_err(v->doc, v->err, "coordinator.url",
                           "coordinator.tls is configured but the URL is not tls+tcp://, "
                           "expected a tls+tcp:// URL");
    }
    return 0;
}

static int agent_state_dir(vctx *v, const struct raw_agent *r, tm_agent_conf *c)
{
    return v_path(v, "state_dir", r->state_dir ? r->state_dir : "state", &c->state_dir);
}

/* Where restore and drill tasks may write (agent/restore_root.c): absolute
 * or relative to the config, no `.`/`..` component; default the drill dir. */
static int agent_restore_roots(vctx *v, const struct raw_agent *r, tm_agent_conf *c)
{
    size_t n = r->restore_roots_count ? r->restore_roots_count : 1;
    c->restore_roots = calloc(n, sizeof(*c->restore_roots));
    if (c->restore_roots == NULL) {
        return oom(v);
    }
    if (r->restore_roots_count == 0) {
        if (asprintf(&c->restore_roots[0], "%s/drills", c->state_dir) < 0) {
            c->restore_roots[0] = NULL;
            return oom(v);
        }
        c->n_restore_roots = 1;
        return 0;
    }
    for (uint32_t i = 0; i < r->restore_roots_count; i++) {
        char p[48];
        snprintf(p, sizeof(p), "restore_roots[%" PRIu32 "]", i);
        int rc = v_path(v, p, r->restore_roots[i], &c->restore_roots[i]);
        if (rc != 0) {
            return rc;
        }
        c->n_restore_roots = i + 1;
        const char *s = c->restore_roots[i];
        if (strcmp(s, "/") == 0 || strstr(s, "/../") || strstr(s, "/./") || strstr(s, "//") ||
            (strlen(s) >= 3 && strcmp(s + strlen(s) - 3, "/..") == 0) ||
            (strlen(s) >= 2 && strcmp(s + strlen(s) - 2, "/.") == 0)) {
            return tm_ydoc_err(v->doc, v->err, p,
                               "'%.200s' is not a directory a restore may write under, expected "
                               "a directory path without '.' or '..' components (not /)",
                               s);
        }
    }
    return 0;
}

static int agent_hostname(vctx *v, const struct raw_agent *r, tm_agent_conf *c)
{
    if (r->hostname == NULL) {
        char h[256];
        if (gethostname(h, sizeof(h)) != 0) {
            snprintf(h, sizeof(h), "localhost");
        }
        h[sizeof(h) - 1] = '\0';
        return dup_str(v, h, &c->hostname);
    }
    size_t n = strlen(r->hostname);
    bool ok = n >= 1 && n <= 253;
    for (size_t i = 0; ok && i < n; i++) {
        ok = r->hostname[i] > ' ' && r->hostname[i] != 0x7f;
    }
    if (!ok) {
        return tm_ydoc_err(v->doc, v->err, "hostname",
                           "not a host name, expected 1 to 253 characters without spaces");
    }
    return dup_str(v, r->hostname, &c->hostname);
}

static bool valid_label_key(const char *s, size_t n)
{
    if (n < 1 || n > 63) {
        return false;
    }
    for (size_t i = 0; i < n; i++) {
        char ch = s[i];
        if (!((ch >= 'A' && ch <= 'Z') || (ch >= 'a' && ch <= 'z') || (ch >= '0' && ch <= '9') ||
              ch == '.' || ch == '_' || ch == '-' || ch == '/')) {
            return false;
        }
    }
    return true;
}

/* labels: a free-form mapping, read from the libyaml tree because libcyaml
 * only knows fixed keys. */
static int v_label_map(vctx *v, const char *path, tm_label_conf **labels, size_t *n_labels)
{
    yaml_node_t *n = tm_ydoc_node(v->doc, path);
    if (n == NULL) {
        return 0;
    }
    if (n->type == YAML_SCALAR_NODE && n->data.scalar.length == 0) {
        return 0; /* "labels:" with nothing under it */
    }
    if (n->type != YAML_MAPPING_NODE) {
        return tm_ydoc_err(v->doc, v->err, path, "expected a mapping of name: value, got a %s",
                           n->type == YAML_SEQUENCE_NODE ? "list" : "single value");
    }
    size_t count = (size_t)(n->data.mapping.pairs.top - n->data.mapping.pairs.start);
    if (count > 256) {
        return tm_ydoc_err(v->doc, v->err, path, "%zu labels, expected at most 256", count);
    }
    if (count == 0) {
        return 0;
    }
    (*labels) = calloc(count, sizeof(*(*labels)));
    if ((*labels) == NULL) {
        return oom(v);
    }
    for (size_t i = 0; i < count; i++) {
        yaml_node_pair_t *pr = &n->data.mapping.pairs.start[i];
        yaml_node_t *k = yaml_document_get_node(&v->doc->doc, pr->key);
        yaml_node_t *val = yaml_document_get_node(&v->doc->doc, pr->value);
        if (k == NULL || val == NULL) {
            return tm_err_set(v->err, TM_EINTERNAL, "%s: broken YAML tree", v->doc->file);
        }
        if (k->type != YAML_SCALAR_NODE ||
            !valid_label_key((const char *)k->data.scalar.value, k->data.scalar.length)) {
            return tm_ydoc_err_at(v->doc, v->err, tm_ypos_of(k->start_mark), path,
                                  "bad label name, expected 1 to 63 of [A-Za-z0-9._/-]");
        }
        const char *key = (const char *)k->data.scalar.value;
        char p[192];
        snprintf(p, sizeof(p), "%s.%s", path, key);
        for (size_t j = 0; j < *n_labels; j++) {
            if (strcmp((*labels)[j].key, key) == 0) {
                return tm_ydoc_err_at(v->doc, v->err, tm_ypos_of(k->start_mark), p,
                                      "duplicate label, each label may appear once");
            }
        }
        if (val->type != YAML_SCALAR_NODE) {
            return tm_ydoc_err_at(v->doc, v->err, tm_ypos_of(val->start_mark), p,
                                  "expected a string value, got a %s",
                                  val->type == YAML_SEQUENCE_NODE ? "list" : "mapping");
        }
        const char *value = (const char *)val->data.scalar.value;
        size_t vlen = val->data.scalar.length;
        bool ok = vlen <= 256;
        for (size_t j = 0; ok && j < vlen; j++) {
            ok = (unsigned char)value[j] >= ' ' && value[j] != 0x7f;
        }
        if (!ok) {
            return tm_ydoc_err_at(v->doc, v->err, tm_ypos_of(val->start_mark), p,
                                  "bad label value, expected at most 256 printable characters");
        }
        (*labels)[i].key = strdup(key);
        (*labels)[i].value = strdup(value);
        *n_labels = i + 1;
        if ((*labels)[i].key == NULL || (*labels)[i].value == NULL) {
            return oom(v);
        }
    }
    return 0;
}

static int agent_labels(vctx *v, const struct raw_agent *r, tm_agent_conf *c)
{
    (void)r;
    return v_label_map(v, "labels", &c->labels, &c->n_labels);
}

static int v_token(vctx *v, const char *path, const char *s, size_t max, char **out);

/* targets[i].postgres: how the agent reaches the cluster. Only for kind:
 * postgres (a redis target with a postgres: block is a mistake worth
 * naming). Every key is optional here: a target listed only so the
 * coordinator knows it is served gets its errors when a backup runs. */
static int target_postgres(vctx *v, uint32_t i, const struct raw_target *rt, tm_target_conf *t)
{
    char base[64], p[96];
    snprintf(base, sizeof(base), "targets[%" PRIu32 "].postgres", i);
    tm_pg_target_conf *pg = &t->postgres;
    pg->checksum_validation = true;
    pg->parallel = 2;
    pg->port = 5432;
    if (!has(v, base)) {
        return 0;
    }
    if (strcmp(rt->kind, "postgres") != 0) {
        return tm_ydoc_err_key(v->doc, v->err, base,
                               "a postgres: block on a target of kind %s; remove it or set "
                               "kind: postgres",
                               rt->kind);
    }
    const struct raw_pg *r = &rt->postgres;
    t->has_postgres = true;
    int rc = 0;
    snprintf(p, sizeof(p), "%s.pgdata", base);
    if (r->pgdata != NULL) {
        rc = r->pgdata[0] != '/'
                 ? tm_ydoc_err(v->doc, v->err, p,
                               "'%.80s' is not an absolute path, expected the data directory "
                               "(pgdata: /var/lib/postgresql/15/main)",
                               r->pgdata)
                 : dup_str(v, r->pgdata, &pg->pgdata);
    }
    snprintf(p, sizeof(p), "%s.host", base);
    if (rc == 0) {
        rc = v_token(v, p, r->host, 255, &pg->host);
    }
    snprintf(p, sizeof(p), "%s.port", base);
    if (rc == 0) {
        rc = v_int(v, p, r->port, 5432, 1, 65535, &pg->port);
    }
    snprintf(p, sizeof(p), "%s.user", base);
    if (rc == 0) {
        rc = v_token(v, p, r->user != NULL ? r->user : "postgres", 63, &pg->user);
    }
    snprintf(p, sizeof(p), "%s.database", base);
    if (rc == 0) {
        rc = v_token(v, p, r->database != NULL ? r->database : "postgres", 63, &pg->database);
    }
    if (rc == 0 && (r->password != NULL || r->password_file != NULL)) {
        rc = v_secret(v, base, "password", r->password, r->password_file, &pg->password);
    }
    snprintf(p, sizeof(p), "%s.bindir", base);
    if (rc == 0 && r->bindir != NULL) {
        rc = v_path(v, p, r->bindir, &pg->bindir);
    }
    snprintf(p, sizeof(p), "%s.checksum_validation", base);
    if (has(v, p)) {
        pg->checksum_validation = r->checksum_validation;
    }
    snprintf(p, sizeof(p), "%s.parallel", base);
    if (rc == 0) {
        rc = v_int(v, p, r->parallel, 2, 1, 64, &pg->parallel);
    }
    return rc;
}

static int agent_targets(vctx *v, const struct raw_agent *r, tm_agent_conf *c)
{
    static const char *const kinds[] = {"postgres", "redis", "sqlite", "turso"};
    if (r->targets_count == 0) {
        return 0;
    }
    c->targets = calloc(r->targets_count, sizeof(*c->targets));
    if (c->targets == NULL) {
        return oom(v);
    }
    for (uint32_t i = 0; i < r->targets_count; i++) {
        const struct raw_target *rt = &r->targets[i];
        tm_target_conf *t = &c->targets[i];
        c->n_targets = i + 1;
        char p[96];
        snprintf(p, sizeof(p), "targets[%" PRIu32 "].name", i);
        int rc = v_name(v, p, rt->name);
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
        size_t k = 0;
        for (; k < sizeof(kinds) / sizeof(kinds[0]); k++) {
            if (strcmp(rt->kind, kinds[k]) == 0) {
                break;
            }
        }
        if (k == sizeof(kinds) / sizeof(kinds[0])) {
            return tm_ydoc_err(v->doc, v->err, p,
                               "unknown kind '%.40s', expected postgres, redis, sqlite or turso",
                               rt->kind);
        }
        rc = dup_str(v, rt->name, &t->name);
        if (rc == 0) {
            rc = dup_str(v, rt->kind, &t->kind);
        }
        if (rc == 0 && rt->engine_version != NULL) {
            rc = dup_str(v, rt->engine_version, &t->engine_version);
        }
        if (rc == 0) {
            rc = target_postgres(v, i, rt, t);
        }
        if (rc != 0) {
            return rc;
        }
    }
    return 0;
}

static int agent_log(vctx *v, const struct raw_agent *r, tm_agent_conf *c)
{
    return v_log_level(v, "log.level", r->log.level, &c->log_level);
}

/* An optional string that must be one of `allowed`. */
static int v_enum(vctx *v, const char *path, const char *s, const char *const *allowed, size_t n,
                  const char *expected, char **out)
{
    if (s == NULL) {
        return 0;
    }
    for (size_t i = 0; i < n; i++) {
        if (strcmp(s, allowed[i]) == 0) {
            return dup_str(v, s, out);
        }
    }
    return tm_ydoc_err(v->doc, v->err, path, "unknown value '%.40s', expected %s", s, expected);
}

/* Printable, no spaces: bucket names, storage classes, key ids, prefixes. */
static int v_token(vctx *v, const char *path, const char *s, size_t max, char **out)
{
    if (s == NULL) {
        return 0;
    }
    size_t n = strlen(s);
    bool ok = n >= 1 && n <= max;
    for (size_t i = 0; ok && i < n; i++) {
        ok = s[i] > ' ' && s[i] != 0x7f;
        /* Not echoed: a CR/LF in the message would split it, and in a
         * header value (storage class, SSE key id) it would split a request. */
        if ((unsigned char)s[i] < ' ' || s[i] == 0x7f) {
            return tm_ydoc_err(v->doc, v->err, path,
                               "contains a control character (CR, LF, tab...), expected 1 to %zu "
                               "characters without spaces",
                               max);
        }
    }
    if (!ok) {
        return tm_ydoc_err(v->doc, v->err, path,
                           "'%.60s' is not valid, expected 1 to %zu characters without spaces", s,
                           max);
    }
    return dup_str(v, s, out);
}

/* A key that only the other repository type understands: refused, so a
 * posix repository with a bucket: line is not silently a local directory. */
static int v_foreign(vctx *v, const char *base, const char *key, const char *type,
                     const char *belongs)
{
    char p[128];
    snprintf(p, sizeof(p), "%s.%s", base, key);
    if (has(v, p)) {
        return tm_ydoc_err_key(v->doc, v->err, p,
                               "%s is a %s setting, but this repository is type: %s; remove it "
                               "or change type",
                               key, belongs, type);
    }
    return 0;
}

static int repo_s3(vctx *v, const char *base, const struct raw_repo *rr, tm_repo_conf *r)
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
        rc = v_token(v, p, rr->bucket, 255, &r->bucket);
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
            rc = v_token(v, p, e, 1024, &r->endpoint);
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
        rc = v_token(v, p, sr != NULL ? sr : (rr->region != NULL ? rr->region : "us-east-1"), 64,
                     &r->signing_region);
    }
    snprintf(p, sizeof(p), "%s.prefix", base);
    if (rc == 0) {
        rc = v_token(v, p, rr->prefix, 512, &r->prefix);
    }
    if (rc == 0) {
        rc = v_secret(v, base, "access_key", rr->access_key, rr->access_key_file, &r->access_key);
    }
    if (rc == 0) {
        rc = v_secret(v, base, "secret_key", rr->secret_key, rr->secret_key_file, &r->secret_key);
    }
    snprintf(p, sizeof(p), "%s.ca_file", base);
    if (rc == 0 && rr->ca_file != NULL) {
        rc = v_path(v, p, rr->ca_file, &r->ca_file);
    }
    snprintf(p, sizeof(p), "%s.verify_tls", base);
    r->verify_tls = has(v, p) ? rr->verify_tls : true;
    snprintf(p, sizeof(p), "%s.path_style", base);
    r->path_style = has(v, p) ? rr->path_style : true;
    snprintf(p, sizeof(p), "%s.sse", base);
    if (rc == 0) {
        rc = v_enum(v, p, rr->sse, sse, 2, "AES256 or aws:kms", &r->sse);
    }
    snprintf(p, sizeof(p), "%s.sse_kms_key_id", base);
    if (rc == 0 && rr->sse_kms_key_id != NULL && (r->sse == NULL || strcmp(r->sse, "aws:kms"))) {
        rc = tm_ydoc_err(v->doc, v->err, p, "only meaningful with sse: aws:kms");
    }
    if (rc == 0) {
        rc = v_token(v, p, rr->sse_kms_key_id, 2048, &r->sse_kms_key_id);
    }
    snprintf(p, sizeof(p), "%s.storage_class", base);
    if (rc == 0) {
        rc = v_token(v, p, rr->storage_class, 64, &r->storage_class);
    }
    snprintf(p, sizeof(p), "%s.object_lock_mode", base);
    if (rc == 0) {
        rc = v_enum(v, p, rr->object_lock_mode, lock, 2, "GOVERNANCE or COMPLIANCE",
                    &r->object_lock_mode);
    }
    snprintf(p, sizeof(p), "%s.object_lock_days", base);
    if (rc == 0) {
        rc = v_int(v, p, rr->object_lock_days, 0, 1, 36500, &r->object_lock_days);
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
        rc = v_size(v, p, rr->part_size, "16MiB", 5u * 1024 * 1024, 1024u * 1024 * 1024,
                    &r->part_size);
    }
    snprintf(p, sizeof(p), "%s.max_retries", base);
    if (rc == 0) {
        rc = v_int(v, p, rr->max_retries, 5, 0, 20, &r->max_retries);
    }
    snprintf(p, sizeof(p), "%s.timeout", base);
    if (rc == 0) {
        rc = v_duration(v, p, rr->timeout, "60s", 1000, 3600000, &r->timeout_ms);
    }
    return rc;
}

static int repo_posix(vctx *v, const char *base, const struct raw_repo *rr, tm_repo_conf *r)
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
    return v_path(v, p, rr->path, &r->path);
}

static int agent_repositories(vctx *v, const struct raw_agent *r, tm_agent_conf *c)
{
    if (r->repositories_count == 0) {
        return 0;
    }
    c->repos = calloc(r->repositories_count, sizeof(*c->repos));
    if (c->repos == NULL) {
        return oom(v);
    }
    for (uint32_t i = 0; i < r->repositories_count; i++) {
        const struct raw_repo *rr = &r->repositories[i];
        tm_repo_conf *rp = &c->repos[i];
        c->n_repos = i + 1;
        char base[48], p[96];
        snprintf(base, sizeof(base), "repositories[%" PRIu32 "]", i);
        snprintf(p, sizeof(p), "%s.name", base);
        int rc = v_name(v, p, rr->name);
        for (uint32_t j = 0; rc == 0 && j < i; j++) {
            if (strcmp(r->repositories[j].name, rr->name) == 0) {
                rc = tm_ydoc_err(v->doc, v->err, p,
                                 "duplicate repository name '%s', also used by "
                                 "repositories[%" PRIu32 "], names must be unique",
                                 rr->name, j);
            }
        }
        if (rc == 0) {
            rc = dup_str(v, rr->name, &rp->name);
        }
        snprintf(p, sizeof(p), "%s.region", base);
        if (rc == 0 && rr->region != NULL) {
            rc = v_name(v, p, rr->region);
        }
        if (rc == 0) {
            rc = dup_str(v, rr->region != NULL ? rr->region : rr->name, &rp->region);
        }
        snprintf(p, sizeof(p), "%s.type", base);
        if (rc == 0) {
            static const char *const types[] = {"posix", "s3"};
            rc = v_enum(v, p, rr->type, types, 2, "posix or s3", &rp->type);
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

/* A master key reference: "env:NAME" kept as is, a path made absolute. */
static int v_key_ref(vctx *v, const char *path, const char *ref, bool env_ok, char **out)
{
    if (strncmp(ref, "env:", 4) == 0) {
        if (!env_ok) {
            return tm_ydoc_err(v->doc, v->err, path, "expected a file path, not env:");
        }
        return dup_str(v, ref, out);
    }
    return v_path(v, path, ref, out);
}

static int agent_encryption(vctx *v, const struct raw_agent *r, tm_agent_conf *c)
{
    const struct raw_encryption *re = &r->encryption;
    tm_encryption_conf *e = &c->encryption;
    int rc =
        v_int(v, "encryption.compress_level", re->compress_level, 3, 1, 19, &e->compress_level);
    if (rc != 0 || !has(v, "encryption")) {
        return rc;
    }
    if (re->master_key != NULL && re->master_key_file != NULL) {
        return tm_ydoc_err_key(v->doc, v->err, "encryption.master_key_file",
                               "both master_key and master_key_file are set, expected exactly "
                               "one");
    }
    if (re->master_key == NULL && re->master_key_file == NULL) {
        return tm_ydoc_err(v->doc, v->err, "encryption",
                           "no master key, expected master_key_file: /path (create one with "
                           "tidemark-agent repo keygen FILE) or master_key: env:NAME");
    }
    if (re->master_key != NULL) {
        if (strncmp(re->master_key, "env:", 4) != 0 || re->master_key[4] == '\0') {
            return tm_ydoc_err(v->doc, v->err, "encryption.master_key",
                               "inline keys are not allowed, expected master_key: env:NAME or "
                               "master_key_file: /path");
        }
        rc = dup_str(v, re->master_key, &e->master_key_ref);
    } else {
        rc = v_key_ref(v, "encryption.master_key_file", re->master_key_file, false,
                       &e->master_key_ref);
    }
    if (rc != 0 || re->old_master_key_files_count == 0) {
        return rc;
    }
    e->old_master_key_refs = calloc(re->old_master_key_files_count, sizeof(char *));
    if (e->old_master_key_refs == NULL) {
        return oom(v);
    }
    for (uint32_t i = 0; i < re->old_master_key_files_count; i++) {
        char p[64];
        snprintf(p, sizeof(p), "encryption.old_master_key_files[%" PRIu32 "]", i);
        rc = v_key_ref(v, p, re->old_master_key_files[i], true, &e->old_master_key_refs[i]);
        if (rc != 0) {
            return rc;
        }
        e->n_old_master_keys = i + 1;
    }
    return 0;
}

static const agent_section agent_sections[] = {
    agent_coordinator, agent_state_dir,    agent_restore_roots, agent_hostname, agent_labels,
    agent_targets,     agent_repositories, agent_encryption,    agent_log,
};

/* ============================================================ public API */

static void free_secret(char *s)
{
    if (s != NULL) {
        explicit_bzero(s, strlen(s));
        free(s);
    }
}

static void free_tls(tm_tls_conf *t)
{
    free(t->cert_file);
    free(t->key_file);
    free(t->ca_file);
    free(t->server_name);
}

void tm_coordinator_conf_free(tm_coordinator_conf *c)
{
    if (c == NULL) {
        return;
    }
    free(c->path);
    free(c->listen);
    free(c->http_listen);
    free(c->catalog_path);
    free_secret(c->admin_token);
    for (size_t i = 0; i < c->n_enrollments; i++) {
        free(c->enrollments[i].name);
        free_secret(c->enrollments[i].token);
    }
    free(c->enrollments);
    free_tls(&c->tls);
    for (size_t i = 0; i < c->n_policies; i++) {
        tm_policy_conf *p = &c->policies[i];
        free(p->name);
        free(p->match_kind);
        for (size_t j = 0; j < p->n_labels; j++) {
            free(p->labels[j].key);
            free(p->labels[j].value);
        }
        free(p->labels);
        free(p->full);
        free(p->incremental);
        free(p->snapshot);
        free(p->full_where);
        free(p->incremental_where);
        free(p->snapshot_where);
        free(p->drill.schedule);
        free(p->drill.schedule_where);
        free(p->drill.staging_agent);
        free(p->drill.dir);
        for (size_t j = 0; j < p->drill.n_checks; j++) {
            free(p->drill.checks[j]);
        }
        free(p->drill.checks);
        free(p->retention.apply);
        free(p->retention.apply_where);
        for (size_t j = 0; j < p->n_repl_repositories; j++) {
            free(p->repl_repositories[j]);
        }
        free(p->repl_repositories);
        free(p->repl_check);
        free(p->repl_check_where);
    }
    free(c->policies);
    for (size_t i = 0; i < c->n_sinks; i++) {
        free(c->sinks[i].name);
        free(c->sinks[i].kind);
        free_secret(c->sinks[i].url);
        free(c->sinks[i].min_severity);
    }
    free(c->sinks);
    free(c);
}

void tm_agent_conf_free(tm_agent_conf *c)
{
    if (c == NULL) {
        return;
    }
    free(c->path);
    free(c->coordinator_url);
    free_secret(c->enrollment_token);
    free_tls(&c->tls);
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
    for (size_t i = 0; i < c->n_targets; i++) {
        free(c->targets[i].name);
        free(c->targets[i].kind);
        free(c->targets[i].engine_version);
        tm_pg_target_conf *pg = &c->targets[i].postgres;
        free(pg->pgdata);
        free(pg->host);
        free(pg->user);
        free(pg->database);
        free_secret(pg->password);
        free(pg->bindir);
    }
    free(c->targets);
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
        free_secret(r->access_key);
        free_secret(r->secret_key);
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

/* Shared frame of both parse functions: set up, run the sections, clean up.
 * `run` applies the file-specific section table to raw -> conf. */
typedef int (*run_sections)(vctx *v, const void *raw, void *conf);

static int parse_common(const char *name, const char *buf, size_t len,
                        const cyaml_schema_value_t *schema, run_sections run, void *conf,
                        char **conf_path, tm_err *err)
{
    tm_ydoc doc;
    void *raw = NULL;
    tm_err scratch; /* validators read messages back: they need somewhere to write */
    if (err == NULL) {
        err = &scratch;
    }
    vctx v = {.doc = &doc, .dir = NULL, .err = err};
    int rc = load_raw(&doc, name, buf, len, schema, &raw, err);
    if (rc == 0) {
        *conf_path = strdup(name);
        v.dir = config_dir(name);
        rc = (*conf_path == NULL || v.dir == NULL) ? oom(&v) : 0;
    }
    if (rc == 0) {
        rc = run(&v, raw, conf);
    }
    free(v.dir);
    free_raw(schema, raw);
    tm_ydoc_free(&doc);
    if (rc != 0 && rc != TM_ENOMEM && rc != TM_EINTERNAL) {
        rc = TM_ECONFIG;
        if (err != NULL) {
            err->code = TM_ECONFIG;
        }
    }
    return rc;
}

static int run_coordinator(vctx *v, const void *raw, void *conf)
{
    for (size_t i = 0; i < sizeof(coord_sections) / sizeof(coord_sections[0]); i++) {
        int rc = coord_sections[i](v, raw, conf);
        if (rc != 0) {
            return rc;
        }
    }
    return 0;
}

static int run_agent(vctx *v, const void *raw, void *conf)
{
    for (size_t i = 0; i < sizeof(agent_sections) / sizeof(agent_sections[0]); i++) {
        int rc = agent_sections[i](v, raw, conf);
        if (rc != 0) {
            return rc;
        }
    }
    return 0;
}

int tm_coordinator_conf_parse(const char *name, const char *buf, size_t len,
                              tm_coordinator_conf **out, tm_err *err)
{
    *out = NULL;
    if (name == NULL) {
        name = "coordinator.yaml";
    }
    tm_coordinator_conf *c = calloc(1, sizeof(*c));
    if (c == NULL) {
        return tm_err_set(err, TM_ENOMEM, "%s: out of memory", name);
    }
    int rc = parse_common(name, buf, len, &coordinator_schema, run_coordinator, c, &c->path, err);
    if (rc != 0) {
        tm_coordinator_conf_free(c);
        return rc;
    }
    *out = c;
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
    int rc = parse_common(name, buf, len, &agent_schema, run_agent, c, &c->path, err);
    if (rc != 0) {
        tm_agent_conf_free(c);
        return rc;
    }
    *out = c;
    return 0;
}

static int read_config(const char *path, char **buf, size_t *len, tm_err *err)
{
    int rc = tm_file_read(path, buf, len, err);
    if (rc != 0 && rc != TM_ENOMEM) {
        /* A config that cannot be read is a config error: the mains exit 2. */
        if (err != NULL) {
            err->code = TM_ECONFIG;
        }
        return TM_ECONFIG;
    }
    return rc;
}

int tm_coordinator_conf_load(const char *path, tm_coordinator_conf **out, tm_err *err)
{
    char *buf = NULL;
    size_t len = 0;
    *out = NULL;
    int rc = read_config(path, &buf, &len, err);
    if (rc == 0) {
        rc = tm_coordinator_conf_parse(path, buf, len, out, err);
    }
    free(buf);
    return rc;
}

int tm_agent_conf_load(const char *path, tm_agent_conf **out, tm_err *err)
{
    char *buf = NULL;
    size_t len = 0;
    *out = NULL;
    int rc = read_config(path, &buf, &len, err);
    if (rc == 0) {
        rc = tm_agent_conf_parse(path, buf, len, out, err);
    }
    free(buf);
    return rc;
}

/* ================================================================ secrets */

static void strip_trailing_space(char *s, size_t *len)
{
    while (*len > 0 && (s[*len - 1] == ' ' || s[*len - 1] == '\t' || s[*len - 1] == '\r' ||
                        s[*len - 1] == '\n')) {
        s[--*len] = '\0';
    }
}

int tm_secret_resolve(const char *ref, const char *file, char **out, tm_err *err)
{
    *out = NULL;
    if ((ref == NULL) == (file == NULL)) {
        return tm_err_set(err, TM_EINVAL, "exactly one of a secret reference or file is needed");
    }
    if (ref != NULL) {
        if (strncmp(ref, "env:", 4) != 0) {
            return tm_err_set(err, TM_ECONFIG,
                              "inline secrets are not allowed, expected env:NAME or a _file path");
        }
        const char *name = ref + 4;
        bool ok = name[0] != '\0' && !(name[0] >= '0' && name[0] <= '9') && strlen(name) <= 128;
        for (const char *p = name; ok && *p; p++) {
            ok = (*p >= 'A' && *p <= 'Z') || (*p >= 'a' && *p <= 'z') || (*p >= '0' && *p <= '9') ||
                 *p == '_';
        }
        if (!ok) {
            return tm_err_set(err, TM_ECONFIG,
                              "'%.80s' is not a valid environment variable name, expected "
                              "env:[A-Za-z_][A-Za-z0-9_]*",
                              name);
        }
        const char *val = getenv(name);
        if (val == NULL) {
            return tm_err_set(err, TM_ECONFIG, "environment variable %s is not set", name);
        }
        char *s = strdup(val);
        if (s == NULL) {
            return tm_err_set(err, TM_ENOMEM, "out of memory");
        }
        size_t len = strlen(s);
        strip_trailing_space(s, &len);
        if (len == 0) {
            free(s);
            return tm_err_set(err, TM_ECONFIG, "environment variable %s is empty", name);
        }
        *out = s;
        return 0;
    }
    char *buf = NULL;
    size_t len = 0;
    /* Warned, not refused: a token file shared with a group on purpose
     * (e.g. a deploy tool's) is a choice; the warning makes it a visible one.
     * A missing file is reported by the read below. */
    tm_err ignored;
    tm_secret_file_check(file, "secret file", TM_SECRET_WARN, &ignored);
    int rc = tm_file_read(file, &buf, &len, err);
    if (rc != 0) {
        if (rc == TM_ENOMEM) {
            return rc;
        }
        if (err != NULL) {
            tm_err_prefix(err, "cannot read secret file");
            err->code = TM_ECONFIG;
        }
        return TM_ECONFIG;
    }
    rc = 0;
    if (len > SECRET_MAX_BYTES) {
        rc = tm_err_set(err, TM_ECONFIG, "secret file %s is larger than 64 KiB, expected a token",
                        file);
    } else if (memchr(buf, '\0', len) != NULL) {
        rc = tm_err_set(err, TM_ECONFIG, "secret file %s contains a NUL byte, expected text", file);
    } else {
        strip_trailing_space(buf, &len);
        if (len == 0) {
            rc = tm_err_set(err, TM_ECONFIG, "secret file %s is empty", file);
        }
    }
    if (rc != 0) {
        explicit_bzero(buf, len);
        free(buf);
        return rc;
    }
    *out = buf;
    return 0;
}
