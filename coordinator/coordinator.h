/*
 * coordinator.h - the coordinator process as an object: catalog, registry,
 * RPC server, metrics and HTTP endpoint, and the background loop (liveness
 * sweep, batched catalog flush). main.c only parses flags and waits for a
 * signal; tests and benchmarks can embed a coordinator the same way.
 */
#ifndef TM_COORDINATOR_H
#define TM_COORDINATOR_H

#include "common/config.h"
#include "common/err.h"

typedef struct tm_coordinator tm_coordinator;

/* Opens the catalog (migrating it), loads the registry, binds RPC and HTTP.
 * The config must outlive the coordinator. */
int tm_coordinator_new(tm_coordinator **out, const tm_coordinator_conf *conf, tm_err *err);
/* Stop serving, flush, close the catalog. */
void tm_coordinator_free(tm_coordinator *c);

#endif
