/*
 * config.h - coordinator.yaml and agent.yaml.
 *
 * Loaded with libcyaml schemas, then a validation pass that libcyaml 1.3 does
 * not do (ranges, defaults, cross-field rules). Every error is one line:
 *     "<file>:<line>:<column>: <key.path>: <what is wrong and what is expected>"
 * and the mains exit 2 on it.
 *
 * Secrets (tokens, keys) are never accepted inline: a secret key `x` is given
 * as `x_file: /path` (file content, trailing newline stripped) or as
 * `x: env:NAME`. The resolved value is held in memory only and never logged.
 *
 * Relative paths in a config file are resolved against the file's directory,
 * so the examples in deploy/examples/ work from any working directory.
 */
#ifndef TM_CONFIG_H
#define TM_CONFIG_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "common/err.h"
#include "common/log.h"

/* Shortest admin or enrollment token accepted (32 hex chars = 128 bits). */
#define TM_TOKEN_MIN_LEN 32

typedef struct tm_tls_conf {
    char *cert_file;          /* PEM certificate (server: its own; client: for mutual TLS) */
    char *key_file;           /* PEM private key for cert_file */
    char *ca_file;            /* server: CA that signs client certs; client: CA to pin */
    char *server_name;        /* client only: name to verify (default: host of the URL) */
    bool require_client_cert; /* server only: mutual TLS */
} tm_tls_conf;

typedef struct tm_enrollment_conf {
    char *name;         /* shown in the catalog as the agent's enrollment */
    char *token;        /* resolved secret */
    bool auto_approve;  /* false: agent stays pending until approved */
    int64_t expires_at; /* unix seconds; 0 = never */
} tm_enrollment_conf;

/* policies[].retention: GFS counts (retention.h semantics). */
typedef struct tm_policy_retention_conf {
    int32_t keep_daily;    /* default 7 */
    int32_t keep_weekly;   /* default 4 */
    int32_t keep_monthly;  /* default 12 */
    int32_t keep_yearly;   /* default 7 */
    int32_t min_count;     /* default 1 */
    int32_t keep_failed;   /* default 3 */
    int64_t pitr_window_s; /* default 7d */
    /* When the coordinator applies the plan (cron, UTC); default "@hourly";
     * NULL = never automatically ("": `tidemarkctl retention apply` only). */
    char *apply;
    char *apply_where; /* "file:line:col: policies[i].retention.apply" */
} tm_policy_retention_conf;

/* policies[].drill: restore drills (coordinator/drills.h). */
typedef struct tm_policy_drill_conf {
    char *schedule;       /* cron; default "0 5 1 * *" (monthly); NULL = no scheduled drills ("") */
    char *schedule_where; /* "file:line:col: policies[i].drill.schedule" */
    char *staging_agent;  /* agent id or hostname; NULL = the target's own agent */
    char *dir;            /* base directory on the staging agent; NULL = <state_dir>/drills */
    char **checks;        /* SQL statements; a check fails on error or a first column false */
    size_t n_checks;
    int64_t rto_goal_s; /* default 1h */
    int64_t rpo_goal_s; /* default: the policy's rpo_goal */
} tm_policy_drill_conf;

/* One `policies:` entry. The first policy (file order) that matches a
 * target applies to it. */
typedef struct tm_policy_conf {
    char *name;                   /* unique; [A-Za-z0-9._-]{1,64} */
    char *match_kind;             /* a kind of the kind table; NULL = any kind */
    struct tm_label_conf *labels; /* match.labels: all must equal the agent's labels */
    size_t n_labels;
    char *full;        /* schedule.full cron; default "0 3 * * *" */
    char *incremental; /* schedule.incremental cron; default "@hourly"; NULL = none ("") */
    /* "file:line:col: policies[i].schedule.full" for errors found later (the
     * cron parser lives in the coordinator, see tm_config_set_cron_check). */
    char *full_where;
    char *incremental_where;
    char *snapshot; /* schedule.snapshot cron (kinds that take snapshots); default: the
                       kind's default_snapshot (engine_kinds.h); NULL = none */
    char *snapshot_where;
    bool snapshot_given;  /* schedule.snapshot is in the file (even ""): a policy for any
                             kind without it gives each kind its default_snapshot */
    int64_t jitter_s;     /* schedule.jitter; default 10m */
    int64_t late_after_s; /* schedule.late_after: backup_late fires when a scheduled run has
                             not finished this long after its time (+ jitter); default 1h */
    bool log_shipping;    /* default true; false: no RPO / log shipping alerts */
    tm_policy_retention_conf retention;
    int64_t rpo_goal_s;       /* default 15m */
    int64_t backup_max_age_s; /* default 26h */
    tm_policy_drill_conf drill;
    /* replication: (absent = no cross-repository checks for the policy) */
    int has_replication;
    char **repl_repositories; /* required by name; none = every repository of the agent */
    size_t n_repl_repositories;
    uint32_t repl_min_regions; /* replication.min_regions; default 0 = no rule */
    char *repl_check;          /* replication.check cron; default every 30 minutes */
    char *repl_check_where;
    int64_t repl_lag_max_s; /* replication.lag_threshold; default 1h */
} tm_policy_conf;

/* alerts.sinks[] */
typedef struct tm_alert_sink_conf {
    char *name;         /* unique */
    char *kind;         /* "webhook" | "alertmanager" | "slack" */
    char *url;          /* resolved (url: env:X / url_file): a secret, never logged */
    char *min_severity; /* "info" | "warning" | "critical"; default "info" */
    bool send_resolved; /* default true */
} tm_alert_sink_conf;

typedef struct tm_coordinator_conf {
    char *path;         /* the file this was loaded from */
    char *listen;       /* RPC URL; default "tcp://127.0.0.1:7800" */
    char *http_listen;  /* metrics/healthz URL; default "http://127.0.0.1:9187"; "" = off */
    char *catalog_path; /* SQLite file; default "catalog.db" beside the config */
    char *admin_token;  /* resolved secret; required */
    tm_enrollment_conf *enrollments;
    size_t n_enrollments;           /* >= 1 required */
    uint32_t heartbeat_interval_ms; /* default 10000; 100 .. 3600000 */
    uint32_t stale_after_missed;    /* default 3; 1 .. 1000 */
    uint32_t lost_after_missed;     /* default 10; > stale_after_missed */
    uint32_t rpc_max_message_bytes; /* default 4 MiB; 4 KiB .. 256 MiB */
    uint32_t rpc_contexts;          /* default 64; 1 .. 4096 */
    /* What one client can hold (rpc.*; see tm_rpc_server_opts). */
    uint32_t rpc_max_unauth_message_bytes; /* default 64 KiB */
    uint32_t rpc_send_timeout_ms;          /* default 10s */
    uint32_t rpc_first_request_timeout_ms; /* default 10s */
    uint32_t rpc_idle_timeout_ms;          /* default 5m */
    uint32_t rpc_max_pending_per_addr;     /* default 128 */
    uint32_t rpc_max_calls_per_conn;       /* default 64 */
    uint32_t task_lease_ms;                /* tasks.lease: default 60s; 1s .. 24h */
    uint32_t task_max_attempts;            /* tasks.max_attempts: default 3; 1 .. 100 */
    uint32_t
        task_retry_backoff_ms; /* tasks.retry_backoff: first retry delay, doubled; default 5s */
    uint32_t task_poll_max_ms; /* tasks.poll_max: longest NextTask long-poll; default 25s */
    bool tls_enabled;          /* true when tls.cert_file is set */
    tm_tls_conf tls;
    tm_log_level log_level;   /* default info */
    tm_policy_conf *policies; /* `policies:`, in file order (first match wins) */
    size_t n_policies;
    uint32_t sched_max_per_agent; /* scheduler.max_tasks_per_agent; default 2; 0 = unlimited */
    uint32_t sched_max_per_repo;  /* scheduler.max_tasks_per_repository; default 4; 0 = unlimited */
    bool sched_paused;            /* scheduler.paused: no scheduled task starts */
    uint32_t alerts_evaluate_ms;  /* alerts.evaluate_every: default 30s; 1s .. 5m */
    uint32_t alerts_repeat_ms;    /* alerts.repeat_interval: default 4h */
    tm_alert_sink_conf *sinks;    /* alerts.sinks */
    size_t n_sinks;
} tm_coordinator_conf;

typedef struct tm_label_conf tm_label_conf;
struct tm_label_conf {
    char *key;
    char *value;
};

/* An engine's description of its target block (common/config/validate.h);
 * engines register theirs before an agent.yaml is loaded. */
typedef struct tm_target_schema tm_target_schema;
/* Most engine blocks the loader can be given. */
#define TM_TARGET_SCHEMAS_MAX 8

typedef struct tm_target_conf {
    char *name;                     /* unique in the fleet; [A-Za-z0-9._-]{1,64} */
    char *kind;                     /* a kind of the kind table (common/engine_kinds.h) */
    char *engine_version;           /* optional */
    const tm_target_schema *schema; /* the kind's registered schema; NULL = none */
    /* The engine's parsed block (owned by schema; read it through the
     * engine's typed accessor); NULL = none. */
    void *engine_conf;
} tm_target_conf;

/* One repository of the set (`repositories:` in agent.yaml). Secrets are
 * resolved; paths are absolute. */
typedef struct tm_repo_conf {
    char *name;           /* unique; [A-Za-z0-9._-]{1,64} */
    char *region;         /* label ("eu-west"); default: the name */
    char *type;           /* "posix" | "s3" */
    char *path;           /* posix: root directory */
    char *endpoint;       /* s3: NULL = AWS for signing_region */
    char *bucket;         /* s3 */
    char *signing_region; /* s3: default region, then "us-east-1" */
    char *prefix;         /* s3: key prefix, may be NULL */
    char *access_key;     /* s3: resolved secret */
    char *secret_key;     /* s3: resolved secret */
    char *ca_file;
    bool verify_tls; /* default true */
    bool path_style; /* default true */
    char *sse;       /* "AES256" | "aws:kms" | NULL */
    char *sse_kms_key_id;
    char *storage_class;
    char *object_lock_mode;    /* "GOVERNANCE" | "COMPLIANCE" | NULL */
    uint32_t object_lock_days; /* with object_lock_mode; 1 .. 36500 */
    uint32_t part_size;        /* default 16 MiB; 5 MiB .. 1 GiB */
    uint32_t max_retries;      /* default 5; 0 .. 20 */
    uint32_t timeout_ms;       /* per request; default 60s; 1s .. 1h */
} tm_repo_conf;

/* `encryption:` - where the master key lives. Key material is not loaded
 * here (commands that do not need it, like `repo ls`, must work without):
 * references are "env:NAME" or an absolute file path, as
 * tm_keys_load_master_ref() takes them. */
typedef struct tm_encryption_conf {
    char *master_key_ref;       /* NULL when the section is absent */
    char **old_master_key_refs; /* still readable during a rotation */
    size_t n_old_master_keys;
    uint32_t compress_level; /* zstd 1 .. 19, default 3 */
} tm_encryption_conf;

typedef struct tm_agent_conf {
    char *path;
    char *coordinator_url;  /* required */
    char *enrollment_token; /* resolved secret; required */
    bool tls_enabled;       /* true when tls.ca_file is set or the URL is tls+tcp:// */
    tm_tls_conf tls;
    char *state_dir; /* default "state" beside the config; identity lives here (0600) */
    /* Directories restore and drill tasks may write under (restore_roots:);
     * default <state_dir>/drills. The local restore command is not bound. */
    char **restore_roots;
    size_t n_restore_roots;
    char *hostname;        /* default gethostname() */
    tm_label_conf *labels; /* `labels:` is a mapping of string to string */
    size_t n_labels;
    tm_target_conf *targets;
    size_t n_targets;
    uint32_t rpc_timeout_ms; /* default 10000; 100 .. 600000 */
    uint32_t backoff_max_ms; /* default 30000; 100 .. 3600000; reconnect backoff ceiling */
    tm_repo_conf *repos;     /* `repositories:`, in file order */
    size_t n_repos;
    tm_encryption_conf encryption;
    tm_log_level log_level;
} tm_agent_conf;

/* Cron expressions are parsed by coordinator/cron.c, which common cannot
 * link; the coordinator registers its parser here so that a bad schedule is
 * reported as a config error with its line. Without a checker, schedules
 * are accepted as text and checked when the scheduler starts. */
typedef int (*tm_cron_check_fn)(const char *expr, tm_err *err);
void tm_config_set_cron_check(tm_cron_check_fn fn);

int tm_coordinator_conf_load(const char *path, tm_coordinator_conf **out, tm_err *err);
/* Same from memory; `name` is used in messages and as the base for relative paths. */
int tm_coordinator_conf_parse(const char *name, const char *buf, size_t len,
                              tm_coordinator_conf **out, tm_err *err);
void tm_coordinator_conf_free(tm_coordinator_conf *c);

/* The engine target blocks agent.yaml may hold, one per kind (agent/engine.c
 * registers every engine's; call before loading, from one thread). Without
 * it a target can have no engine block. TM_EINVAL when there are more than
 * the loader has room for. */
int tm_config_set_target_schemas(const tm_target_schema *const *schemas, size_t n);
/* t's engine block when it was parsed by `schema`, else NULL (engines wrap
 * this in their typed accessor). */
const void *tm_target_engine_conf(const tm_target_conf *t, const tm_target_schema *schema);

int tm_agent_conf_load(const char *path, tm_agent_conf **out, tm_err *err);
/* For commands that never talk to the coordinator (the repository commands,
 * a local restore, an engine's log fetch run by a restored database server
 * with a minimal environment): the enrollment token is not resolved
 * (enrollment_token stays NULL), so neither its variable nor its file is
 * needed. */
void tm_config_agent_offline(bool on);
int tm_agent_conf_parse(const char *name, const char *buf, size_t len, tm_agent_conf **out,
                        tm_err *err);
void tm_agent_conf_free(tm_agent_conf *c);

/* Resolve a secret reference: "env:NAME" -> getenv, or read file `path`.
 * Exactly one of ref / file is non-NULL. Trailing whitespace is stripped. */
int tm_secret_resolve(const char *ref, const char *file, char **out, tm_err *err);

#endif
