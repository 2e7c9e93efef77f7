/*
 * registry.h - live agents in memory: identity check and liveness.
 *
 * Heartbeats are the coordinator's hot path, so they never touch the catalog:
 * the registry keeps each agent's secret hash, approval, liveness and
 * last-seen time in a hash table. The catalog is written only on state
 * changes, and last-seen times are flushed in one batched transaction by
 * tm_registry_flush().
 */
#ifndef TM_REGISTRY_H
#define TM_REGISTRY_H

#include <stddef.h>
#include <stdint.h>

#include "common/err.h"
#include "common/names.h"
#include "coordinator/catalog.h"

typedef struct tm_registry tm_registry;

typedef struct tm_registry_opts {
    uint32_t heartbeat_interval_ms;
    uint32_t stale_after_missed; /* ONLINE -> STALE after this many missed beats */
    uint32_t lost_after_missed;  /* -> LOST after this many */
} tm_registry_opts;

/* Loads every agent from the catalog. Agents start with last_seen = now, so a
 * coordinator restart gives every agent a full window to check in. */
int tm_registry_new(tm_registry **out, tm_catalog *cat, const tm_registry_opts *opts,
                    int64_t now_ms, tm_err *err);
void tm_registry_free(tm_registry *r);

/* TM_OK if id exists and SHA-256(secret) matches, else TM_EAUTH. */
int tm_registry_auth(tm_registry *r, const char *id, const char *secret);
/* Add or replace an agent (after it is in the catalog). */
int tm_registry_put(tm_registry *r, const char *id, const char *secret_hash, int approved,
                    int64_t now_ms);
int tm_registry_remove(tm_registry *r, const char *id);
int tm_registry_set_approved(tm_registry *r, const char *id, int approved);
/* Record a heartbeat. Returns the agent's reported state (tidemark.AgentState)
 * in *state; an agent that was STALE or LOST comes back ONLINE (catalog
 * written, event logged). TM_ENOENT if unknown. */
int tm_registry_heartbeat(tm_registry *r, const char *id, int64_t now_ms, int *state);
/* Reported state and last-seen of one agent. */
int tm_registry_get(tm_registry *r, const char *id, int *state, int64_t *last_seen_ms);
/* Apply liveness rules at now_ms; state changes go to the catalog and the log. */
int tm_registry_sweep(tm_registry *r, int64_t now_ms);
/* Persist last-seen times changed since the last flush, in one transaction. */
int tm_registry_flush(tm_registry *r, tm_err *err);
/* counts[state] for state 0..4 (tidemark.AgentState). */
void tm_registry_counts(tm_registry *r, uint32_t counts[5]);
size_t tm_registry_size(tm_registry *r);
/* Reported state: PENDING if not approved, else the liveness state. */
int tm_registry_reported_state(int approved, int live);

#endif
