/*
 * engine.h - the interface every database engine implements.
 *
 * An engine lives in its own folder (agent/engines/<kind>/) and is listed
 * once in agent/engine.c. Everything outside agent/engines/ speaks in
 * engine-neutral terms (tests/check_vocabulary.py holds that line): a target
 * kind, backups, log ranges (a chain, engine-opaque start/end positions, a
 * time span, bytes and objects), a log shipping status, a restorable window.
 *
 * The task runner hands an engine a task and a context for progress and
 * cancellation; the engine fills a structured result (sizes, digests,
 * positions, times) that the coordinator records. The coordinator, not the
 * engine's log, decides whether the task succeeded.
 *
 * Every hook may be NULL: the engine does not do that (see each hook).
 */
#ifndef TM_ENGINE_H
#define TM_ENGINE_H

#include <stddef.h>
#include <stdint.h>

#include "common/config.h"
#include "common/err.h"

#include "repository.pb-c.h"
#include "tidemark.pb-c.h"

typedef struct tm_task_ctx tm_task_ctx;
typedef struct tm_ship_ctx tm_ship_ctx;
/* One object of a target's log archive as listed in a repository (the log
 * store, agent/repo/repo_log.h). */
typedef struct tm_log_item tm_log_item;

/* Bounds of the engine-neutral strings below (with the NUL). */
#define TM_LOG_POS_MAX 256 /* an engine-opaque log position */

/* One contiguous run of a target's log in one repository: restore can replay
 * from start to end without a hole. The chain is the engine's line of
 * history (a timeline, a base file's generation, ...: each engine's folder
 * says which); positions are engine-opaque strings the engine alone
 * compares. On the wire: tidemark.LogRange (chain = timeline, start = first,
 * end = last, objects = files). */
typedef struct tm_log_range {
    uint32_t chain;
    char start[TM_LOG_POS_MAX]; /* first position of the run */
    char end[TM_LOG_POS_MAX];   /* last position of the run */
    int64_t start_time;         /* unix seconds: when the first was shipped */
    int64_t end_time;           /* unix seconds: the newest recoverable point */
    uint64_t bytes;             /* stored bytes */
    uint32_t objects;           /* log objects in the run */
} tm_log_range;

/* The database's (or the shipper's) own view of a target's log shipping:
 * it sees failures the repository listing cannot (a server's archive
 * command that failed before the agent ran, a shipper that cannot reach a
 * repository). On the wire: tidemark.ArchiverStatus + the
 * ReportLogRequest's queue fields. */
typedef struct tm_log_status {
    int readable;                      /* 0: the status could not be read (error) */
    char error[TM_ERR_MSG_MAX];        /* why it could not be read */
    uint64_t shipped_count;            /* log objects shipped (since the server started) */
    char last_shipped[TM_LOG_POS_MAX]; /* position of the newest shipped; "" = never */
    int64_t last_shipped_ms;           /* unix milliseconds; 0 = never */
    uint64_t failed_count;             /* failed shipping attempts */
    char last_failed[TM_LOG_POS_MAX];  /* position of the last failure; "" = never */
    int64_t last_failed_ms;            /* unix milliseconds; 0 = never */
    char last_failure[TM_ERR_MSG_MAX]; /* what the last failure said; "" = unknown */
    uint32_t pending_count;            /* log files waiting locally to be shipped */
    uint64_t pending_bytes;            /* their bytes; 0 = unknown */
    /* Non-empty: the shipped log cannot take a restore to a time between
     * backups (the server does not record when each change happened), so
     * the restorable window is the backups alone; says why and what to
     * change. "" = a restore can go to any time the ranges cover. */
    char snapshot_only[TM_ERR_MSG_MAX];
    /* Chain resets: the shipper could not prove that the log goes on where
     * it stood and started a new chain from a fresh base (never a silent
     * gap; not a failure: shipping goes on). Restores cannot cross from the
     * replaced chain's end to the new chain's base. */
    uint64_t chain_resets;                 /* since the agent started */
    int64_t last_chain_reset_ms;           /* unix milliseconds; 0 = never */
    char chain_reset[TM_ERR_MSG_MAX];      /* why the newest one happened */
    char chain_reset_from[TM_LOG_POS_MAX]; /* where the replaced chain ended */
} tm_log_status;

/* The provider's own point-in-time window of a target whose database is a
 * managed service keeping its own history (reached over the network, no
 * file access): what the provider can restore, reported beside Tidemark's
 * own copies. On the wire: tidemark.ProviderWindowReport. */
typedef struct tm_provider_window {
    int64_t start;              /* unix seconds; 0 = unknown */
    int64_t end;                /* unix seconds; 0 = unknown */
    char source[256];           /* how it is known ("plan scaler: 30 days") */
    char error[TM_ERR_MSG_MAX]; /* the provider could not be asked (why); "" = asked */
} tm_provider_window;

/* An agent subcommand owned by an engine: `tidemark-agent [--config F] NAME
 * ...`. argv[0] is NAME; config is the --config path (the command loads the
 * configuration itself, e.g. offline). Returns the process exit code. */
typedef struct tm_engine_cmd {
    const char *name; /* e.g. the command a server's archive hook runs */
    int (*fn)(const char *config, int argc, char **argv);
    const char *help; /* one line for `tidemark-agent --help` */
} tm_engine_cmd;

typedef struct tm_engine {
    int kind;         /* tidemark.TargetKind */
    const char *name; /* the kind's name, as in targets[].kind */
    /* Each returns TM_OK with *result filled (strings malloc'd; freed by the
     * runner with tidemark__task_result__free_unpacked semantics), or an error
     * in err. NULL = the engine does not support that task kind. */
    int (*backup)(tm_task_ctx *ctx, const Tidemark__Task *task, Tidemark__TaskResult *result,
                  tm_err *err);
    int (*restore)(tm_task_ctx *ctx, const Tidemark__Task *task, Tidemark__TaskResult *result,
                   tm_err *err);
    /* Restore drill: result->drill filled even when the drill fails. */
    int (*drill)(tm_task_ctx *ctx, const Tidemark__Task *task, Tidemark__TaskResult *result,
                 tm_err *err);
    /* Retention (agent/expire.c): 1 when the archived log file rel (as the
     * log store names it, repo_log.h) is older than the start of the log
     * cutoff backup and no backup kept from the cutoff on needs it. cutoff:
     * that backup's manifest, or NULL when it could not be read (then the
     * spec's catalog values); when neither says where the backup started,
     * every file is kept (0). NULL = the engine keeps every log file. */
    int (*log_before)(const Tidemark__Manifest *cutoff, const Tidemark__ExpireSpec *spec,
                      const char *rel);
    /* Its `targets[].<name>:` block in agent.yaml (agent/engines/<name>/config.c);
     * NULL = the kind has no block. */
    const tm_target_schema *target_schema;

    /* A target that stands for many (a pattern, e.g. a glob of database
     * files): 1 with *out the concrete targets it names now (*n of them,
     * malloc'd array; each entry's name, kind and engine_version malloc'd
     * and its engine_conf freeable by t->schema->free_conf, as the config
     * loader makes them; agent/targets.c owns them after), 0 when t is
     * itself one target, < 0 on error. agent/targets.c calls it at start
     * and every few seconds; a changed set restarts the agent so every
     * part sees it. NULL = every target is itself. */
    int (*expand)(const tm_target_conf *t, tm_target_conf **out, size_t *n, tm_err *err);

    /* ---- restore safety (agent/restore_root.c) ---- */
    /* 1 when a running server of this engine uses directory dir (its data
     * directory, or a directory it writes outside it), or dir is inside
     * one or contains one; why gets a message naming the server and what
     * to do. 0 when not. dir is absolute and canonical (symbolic links of
     * its existing part resolved). Every registered engine is asked before
     * a restore writes into a directory, whatever the task's engine: a
     * restore of one kind must not land in a live server of another
     * either. NULL = the engine has no server to find. */
    int (*in_use)(const char *dir, char *why, size_t cap);

    /* ---- continuous log shipping, as the coordinator sees it ----
     * agent/log_report.c lists each repository's log archive of every target
     * whose engine has log_ranges, and sends the runs with the status to
     * the coordinator every few heartbeats (and soon after a shipper reports
     * a range, tm_ship_report). */
    /* The runs of one repository's listing of target t's log (items sorted
     * by rel; an object counts once its sidecar is there: has_meta &&
     * has_object). *out: malloc'd array of *n ranges, the caller frees it.
     * NULL = the engine ships no log. */
    int (*log_ranges)(const tm_target_conf *t, const tm_log_item *items, size_t n,
                      tm_log_range **out, size_t *nout, tm_err *err);
    /* The database's own view of t's log shipping into *st (zeroed by the
     * caller; for an engine with ship, already filled from its shipper's
     * reports, so the engine adds what only it knows, e.g. pending_count).
     * A status that cannot be read: st->readable = 0 and st->error says why
     * (the coordinator tells "shipping fails" from "cannot see"). NULL =
     * only the shipper's view (or none). */
    void (*log_status)(const tm_target_conf *t, tm_log_status *st);
    /* A continuous log shipper, for an engine whose server has no archive
     * command to call the agent (an append-only file, a write-ahead file of
     * an embedded database). The daemon runs it in one thread per target
     * of this engine, for as long as the agent runs: it returns TM_OK only
     * when tm_ship_stopping(ctx) became 1, and an error (in err) when it
     * cannot go on; then the daemon logs it, counts it as a failure in the
     * target's status and runs it again after a backoff (1 s doubling to
     * 60 s; reset once it has run for a minute). It stores log objects with
     * tm_ship_store and reports each shipped range with tm_ship_report.
     * NULL = the server pushes (its archive command runs one of the
     * engine's cmds). */
    int (*ship)(tm_ship_ctx *ctx, const tm_target_conf *t, tm_err *err);

    /* The provider's window of t into *w (zeroed by the caller); the
     * engine may answer from a cache it refreshes at its own pace. Called
     * by agent/log_report.c every few heartbeats. NULL = the database
     * keeps no history Tidemark can see. */
    void (*provider_window)(const tm_target_conf *t, tm_provider_window *w);

    /* ---- command line ---- */
    /* Agent subcommands owned by the engine, ended by {NULL}; listed by
     * `tidemark-agent --help`. NULL = none. Names are unique across engines
     * and never one of the agent's own (run, repo, restore). */
    const tm_engine_cmd *cmds;
    /* `tidemark-agent restore --target NAME ...` for a target of this engine
     * (agent/restore_cmd.c finds the engine from the target's kind; for a
     * target this agent does not serve, from --engine NAME, from
     * restore_dir_alias, or as the only engine that restores; --engine is
     * removed from argv). argv[0] is
     * "restore"; every option is the engine's to parse, and it accepts the
     * generic `--dir DIR` (the destination) besides its own aliases. conf is
     * loaded. Returns the exit code (0 restored, 1 failed, 2 usage). */
    int (*restore_cli)(const tm_agent_conf *conf, int argc, char **argv);
    const char *restore_usage; /* the engine's options, for restore --help */
    /* The engine's own older name for --dir, or NULL: given for a
     * target this agent does not serve, it also picks this engine. */
    const char *restore_dir_alias;
} tm_engine;

/* The engine for a target kind, or NULL. */
const tm_engine *tm_engine_find(int kind);
/* The engine named name (its targets[].kind), or NULL. */
const tm_engine *tm_engine_by_name(const char *name);
/* The engine of a configured target (its kind), or NULL. */
const tm_engine *tm_engine_of(const tm_target_conf *t);
/* The registered engines: i from 0 while it returns non-NULL. */
const tm_engine *tm_engine_at(size_t i);
/* Tests of the seam only: e is registered after the real engines, and
 * tm_engine_find(e->kind) answers e (the agent never calls this). NULL
 * removes it. */
void tm_engine_add_for_test(const tm_engine *e);
/* Every registered engine's target schema; *n gets the count. */
const tm_target_schema *const *tm_engine_target_schemas(size_t *n);
/* Hands those schemas to the config loader (tm_config_set_target_schemas):
 * call once at start, before an agent.yaml is loaded. */
void tm_engine_config_init(void);

/* ---- what an engine may use while a task runs ---- */
const tm_agent_conf *tm_task_conf(tm_task_ctx *ctx);
/* The configured target the task is about (NULL for a restore of a target
 * this agent does not serve, e.g. on a staging host). */
const tm_target_conf *tm_task_target(tm_task_ctx *ctx);
/* Record progress; the runner reports it to the coordinator (and keeps the
 * lease alive) on its own schedule. Cheap: call it as often as you like. */
void tm_task_progress(tm_task_ctx *ctx, const char *phase, uint64_t bytes_done,
                      uint64_t bytes_total, uint32_t files_done, uint32_t files_total);
/* 1 once the operator cancelled the task or the agent is stopping: stop
 * soon, leave nothing half-visible, return an error. */
int tm_task_cancelled(tm_task_ctx *ctx);

/* ---- what an engine may use while its shipper runs (agent/shipper.c) ---- */
const tm_agent_conf *tm_ship_conf(tm_ship_ctx *ctx);
/* 1 once the agent is stopping: return TM_OK soon (whatever is not yet
 * stored is shipped by the next run, from the engine's saved position). */
int tm_ship_stopping(tm_ship_ctx *ctx);
/* Wait up to ms, or less when the agent starts stopping; returns
 * tm_ship_stopping(ctx). The shipper's poll interval. */
int tm_ship_wait(tm_ship_ctx *ctx, uint32_t ms);
/* A directory private to this target's shipper, for its saved position and
 * pins: <state_dir>/ship/<target>, created 0700. */
int tm_ship_state_dir(tm_ship_ctx *ctx, char *out, size_t cap, tm_err *err);
/* Store the file open on fd (from offset 0 to EOF) as log object rel of the
 * target in every repository (the log store: encrypted, idempotent, the
 * sidecar last). rel is the engine's name for it, "<chain>/<name>" with
 * names that sort in shipping order; storing the same content again
 * succeeds, different content under a stored rel is refused (TM_EEXIST).
 * TM_OK only when every repository holds it durably. */
int tm_ship_store(tm_ship_ctx *ctx, const char *rel, int fd, tm_err *err);
/* The same for len bytes in memory. */
int tm_ship_store_buf(tm_ship_ctx *ctx, const char *rel, const void *buf, size_t len, tm_err *err);
/* A range is stored (every object of it through tm_ship_store): counts it
 * in the target's status (shipped count, last position = r->end and its
 * time) and has the coordinator told soon (the log report of this target
 * runs within a second, from the repositories' listing). */
void tm_ship_report(tm_ship_ctx *ctx, const tm_log_range *r);
/* The shipper could not prove that the log goes on where it stood and
 * starts a new chain from a fresh base (never a silent gap): a chain reset
 * in the target's status (tm_log_status.chain_resets and the rest), not a
 * failure, and the coordinator is told soon. why says why; from is where
 * the replaced chain ended (engine-opaque; NULL or "" = the last position
 * reported with tm_ship_report). */
void tm_ship_chain_reset(tm_ship_ctx *ctx, const char *why, const char *from);
/* Objects waiting to be shipped, for the status (0/0 when caught up). */
void tm_ship_pending(tm_ship_ctx *ctx, uint32_t count, uint64_t bytes);
/* The target's window is snapshot-only (tm_log_status.snapshot_only) for
 * the reason why; NULL or "" = restores to a time work again. Kept until
 * changed, also across runs of the engine's ship. */
void tm_ship_snapshot_only(tm_ship_ctx *ctx, const char *why);

#endif
