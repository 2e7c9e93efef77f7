/*
 * ctl.h - what tidemarkctl's command files share: global options, the RPC
 * client, output helpers (tables for humans, --json for scripts).
 *
 * Exit codes (docs/CLI.md lists them for every program): 0 ok, 1 failure
 * (including an error answer from the coordinator), 2 usage, 3 partial,
 * 130 interrupted.
 */
#ifndef TM_CTL_H
#define TM_CTL_H

#include <protobuf-c/protobuf-c.h>
#include <stdio.h>

#include "common/json.h"
#include "common/names.h"
#include "common/rpc.h"

#define CTL_OK 0
#define CTL_FAIL 1
#define CTL_USAGE 2
/* --wait: the backup ended partial (complete in some, not all, of the
 * repositories its policy requires; restorable, a copy will fill the gap). */
#define CTL_PARTIAL 3
/* --wait: Ctrl-C (or SIGTERM) stopped the waiting; the task goes on. */
#define CTL_INTERRUPTED 130

typedef struct ctl {
    const char *url;
    const char *token;
    int json;
    uint32_t timeout_ms;
    tm_tls_conf tls; /* for tls+tcp:// coordinators */
    tm_rpc_client *rpc;
    int wait_quiet; /* ctl_wait_task prints nothing at the end (the caller does) */
} ctl;

/* Connect lazily; prints the error and returns CTL_FAIL on failure. */
int ctl_connect(ctl *c);
/* One admin call; prints "tidemarkctl: <error>" on failure. */
int ctl_call(ctl *c, const char *method, const ProtobufCMessage *req,
             const ProtobufCMessageDescriptor *resp_desc, ProtobufCMessage **resp);

/* JSON output: a tiny writer that escapes strings. */
void json_time(FILE *f, int64_t unix_s);

/* "5s ago", "3m ago", "2h ago", "never" */
void ctl_ago(int64_t unix_s, char *out, size_t cap);

int ctl_agents(ctl *c, int argc, char **argv);
int ctl_status(ctl *c, int argc, char **argv);
int ctl_backup(ctl *c, int argc, char **argv); /* backup run|show, backups list */
int ctl_restore(ctl *c, int argc, char **argv);
int ctl_tasks(ctl *c, int argc, char **argv);     /* tasks list */
int ctl_task(ctl *c, int argc, char **argv);      /* task show|cancel|wait */
int ctl_pitr(ctl *c, int argc, char **argv);      /* pitr window */
int ctl_alerts(ctl *c, int argc, char **argv);    /* alerts list */
int ctl_retention(ctl *c, int argc, char **argv); /* retention plan|apply|log */
/* backup keep|unkeep ID (retention.c); argv[0] is "keep" or "unkeep". */
int ctl_backup_keep(ctl *c, int argc, char **argv);
int ctl_drills(ctl *c, int argc, char **argv); /* drill run, drills list */
/* The drills section of tidemarkctl status (drills.c): newest drill per
 * target with RTO/RPO; in JSON a ,"drills":[...] member. */
void ctl_status_drills(ctl *c);
int ctl_replication(ctl *c, int argc, char **argv); /* replication status|check */

/* Tasks (tasks.c), shared by backup and restore. */
struct Tidemark__Task;
void ctl_json_task(FILE *f, const struct Tidemark__Task *t);
int ctl_get_task(ctl *c, const char *id, struct Tidemark__Task **out);
/* Follow a task to its end: CTL_OK if it succeeded, CTL_PARTIAL if it ended
 * partial, else CTL_FAIL. Fails, never hangs, when the agent stops reporting.
 * On a terminal it shows progress (phase, bytes, rate, ETA) on stderr;
 * piped, nothing until the end. Ctrl-C stops the waiting, says how to follow
 * or cancel the task, and returns CTL_INTERRUPTED. */
int ctl_wait_task(ctl *c, const char *id, uint32_t timeout_s);
/* Call an Admin method that answers a TaskResponse; copy the new task's id
 * into id. With announce, print the task (--json) or "queued WHAT as task
 * ID on agent AGENT". */
int ctl_submit_task(ctl *c, const char *method, const ProtobufCMessage *req, const char *what,
                    int announce, char *id, size_t cap);
/* ,"expire":{...} of an EXPIRE task: what it drops and what each repository
 * reported (retention.c). */
void ctl_json_expire(FILE *f, const struct Tidemark__Task *t);

#endif
