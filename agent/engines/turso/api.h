/*
 * api.h - the Turso Platform API calls the engine makes (databases of an
 * organization or a group, one database, create from a point in time,
 * delete, short-lived database tokens, the organization's plan) and the
 * database's own endpoint (libSQL remote protocol: Hrana over HTTP,
 * POST /v2/pipeline; GET /dump for an SQL dump).
 *
 * Request and response shapes follow the published API as the official
 * client @tursodatabase/api sends and reads them (Name/Hostname/DbId of a
 * database, {"jwt"} of a token, {"error"} of a failure).
 */
#ifndef TM_TURSO_API_H
#define TM_TURSO_API_H

#include <stddef.h>
#include <stdint.h>

#include "agent/engines/turso/config.h"
#include "agent/engines/turso/http.h"
#include "common/err.h"

#define TM_TURSO_NAME_MAX 128

typedef struct tm_turso_db {
    char name[TM_TURSO_NAME_MAX];
    char hostname[256];
    char id[64];
    char group[TM_TURSO_NAME_MAX];
} tm_turso_db;

/* The databases a target covers now: its database, or every database of
 * its group (sorted by name). TM_ENOENT when the database or group is not
 * there. *out malloc'd. */
int tm_turso_api_targets(const tm_turso_target_conf *tc, tm_turso_http *h, tm_turso_db **out,
                         size_t *n, tm_err *err);
int tm_turso_api_get(const tm_turso_target_conf *tc, tm_turso_http *h, const char *name,
                     tm_turso_db *db, tm_err *err);
/* Create database name in group; seed_db/seed_ts (RFC 3339 UTC) given: a
 * copy of seed_db as it was at seed_ts (the provider's point-in-time
 * recovery). */
int tm_turso_api_create(const tm_turso_target_conf *tc, tm_turso_http *h, const char *name,
                        const char *group, const char *seed_db, const char *seed_ts,
                        tm_turso_db *db, tm_err *err);
int tm_turso_api_delete(const tm_turso_target_conf *tc, tm_turso_http *h, const char *name,
                        tm_err *err);
/* The organization's plan ("scaler"...) and the provider's point-in-time
 * window for it in seconds (0 = unknown plan). */
int tm_turso_api_plan(const tm_turso_target_conf *tc, tm_turso_http *h, char *plan, size_t cap,
                      int64_t *window_s, tm_err *err);

/* ---- one database's endpoint ---- */

typedef struct tm_turso_conn {
    char url[512]; /* base URL of the database */
    char *token;   /* malloc'd; freed by tm_turso_conn_close */
    char name[TM_TURSO_NAME_MAX];
} tm_turso_conn;

/* The endpoint of db and a token for it (the configured db_token, or one
 * minted for an hour: read-only unless write). */
int tm_turso_conn_open(const tm_turso_target_conf *tc, tm_turso_http *h, const tm_turso_db *db,
                       int write, tm_turso_conn *c, tm_err *err);
void tm_turso_conn_close(tm_turso_conn *c);

/* The answer of one statement of a pipeline. */
typedef struct tm_turso_stmt {
    int ok;
    char error[256];
    size_t rows;     /* rows returned */
    char first[256]; /* first column of the first row, as text ("" when none / NULL) */
} tm_turso_stmt;

/* Run n statements in one pipeline (then close the stream); out[i] for
 * each. TM_OK when the request went through (statements may still have
 * failed: see out[i].ok). */
int tm_turso_exec(tm_turso_http *h, const tm_turso_conn *c, const char *const *sql, size_t n,
                  tm_turso_stmt *out, tm_err *err);
/* Wait until a newly created database answers (SELECT 1), up to 5 min. */
int tm_turso_wait_ready(tm_turso_http *h, const tm_turso_conn *c, tm_task_ctx *ctx, tm_err *err);
/* GET /dump streamed to fn. */
int tm_turso_dump(tm_turso_http *h, const tm_turso_conn *c, tm_turso_sink_fn fn, void *arg,
                  uint64_t *bytes, tm_err *err);

#endif
