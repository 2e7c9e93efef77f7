/*
 * expire.h - EXPIRE tasks: apply the coordinator's retention plan to every
 * repository of the agent.
 *
 * For each backup the plan drops, in every repository: the manifest is
 * deleted FIRST (a backup without its manifest does not exist, so a
 * half-deleted backup never looks complete), then everything else under
 * <target>/backup/<id>/ (data objects, the digest list) and the data key
 * records under <target>/keys/<id>/. Then the log files the engine says are
 * older than the log cutoff backup's start (tm_engine.log_before): sidecar
 * first (a log file exists once its .meta is there), then the object.
 *
 * Refusal: before deleting anything, the manifest of every backup that
 * stays is read in every repository; if one names a dropped backup as its
 * parent (or cannot be read, so its parent is unknown), nothing is deleted
 * and the task fails (not retryable) listing the refusals.
 *
 * Idempotent: an object already gone is fine, so a re-run after a crash or
 * a failed repository finishes the job. A repository that cannot be listed
 * fails the task (retryable) before anything is deleted anywhere.
 */
#ifndef TM_AGENT_EXPIRE_H
#define TM_AGENT_EXPIRE_H

#include "agent/engine.h"
#include "agent/repo/repository.h"
#include "common/err.h"

#include "tidemark.pb-c.h"

/* Apply spec to target in every repository of rs (keys loaded). engine
 * NULL or without log_before: no log file is deleted. ctx (may be NULL)
 * gets progress. *res is filled (malloc'd, freed with the TaskResult) also
 * on failure, with what was done and what was refused. TM_EINVAL on a
 * refusal, TM_EIO when a repository failed. */
int tm_expire_run(tm_repo_set *rs, const char *target, const tm_engine *engine,
                  const Tidemark__ExpireSpec *spec, tm_task_ctx *ctx, Tidemark__ExpireResult *res,
                  tm_err *err);

/* Partial attempts of target: backups with objects but no manifest in ANY
 * repository of rs (an agent SIGKILLed or a host rebooted mid-backup; such
 * an attempt never finished, so nothing refers to it). Deleted from every
 * repository like a dropped backup. Call only while no backup of target
 * runs (the runner does, before a backup starts: one task at a time). A
 * backup whose manifest is in some repository is never touched (a copy may
 * be filling the others). *report (malloc'd, NULL when nothing was found)
 * says what was deleted: "<id> in <repo> (<n> objects); ...". A repository
 * that cannot be listed: nothing is deleted anywhere, TM_EIO.
 * It also removes the temporaries a writer killed mid-object left under
 * target (tm_storage_sweep_temps) once untouched for TM_EXPIRE_TEMP_AGE_S:
 * a live writer (the log shipper, a copy) writes all the time, so one that
 * old belongs to no one; "<n> abandoned temporary files in <repo>". */
#define TM_EXPIRE_TEMP_AGE_S (6 * 3600)
int tm_expire_sweep_partial(tm_repo_set *rs, const char *target, char **report, tm_err *err);

/* The task runner's entry for EXPIRE tasks (engine-independent). */
int tm_expire_task(tm_task_ctx *ctx, const Tidemark__Task *task, Tidemark__TaskResult *result,
                   tm_err *err);

#endif
