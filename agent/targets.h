/*
 * targets.h - the agent's concrete targets: a configured target that an
 * engine expands (tm_engine.expand: a glob of database files) becomes one
 * target per match, each its own name in the coordinator's catalog, with
 * its own shipper, backups and restores. Engine-neutral: the engines say
 * what a pattern matches.
 *
 * The set is fixed for the life of the daemon (its parts hold the target
 * list); a new match is seen by tm_targets_changed, and the agent restarts
 * itself in place so that the coordinator (registration), the shippers and
 * the task runner all get the new set. A running task is told it is
 * cancelled and the coordinator leases it again.
 */
#ifndef TM_AGENT_TARGETS_H
#define TM_AGENT_TARGETS_H

#include <stddef.h>

#include "common/config.h"
#include "common/err.h"

/* Replace conf->targets with the concrete targets (patterns expanded, in
 * config order; a name met twice is kept once, with a warning). *patterns
 * (may be NULL) gets how many targets were patterns. */
int tm_targets_expand(tm_agent_conf *conf, size_t *patterns, tm_err *err);
/* 1 when the concrete target names that config_path expands to now differ
 * from conf's (conf already expanded); 0 when the same, or when the file
 * cannot be read (the running set stays). */
int tm_targets_changed(const char *config_path, const tm_agent_conf *conf, char *what, size_t cap);

#endif
