/*
 * replication.c - tidemarkctl replication status|check: whether every
 * required repository holds every backup and log file of each target, and a
 * check on demand.
 */
#include "coordinator/ctl/ctl.h"
#include "common/util.h"

#include <inttypes.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "tidemark.pb-c.h"

static int usage(FILE *f, int code)
{
    fprintf(f, "Usage: tidemarkctl replication status [--target T] [--json]\n"
               "       tidemarkctl replication check --target T [--wait] [--wait-timeout S] "
               "[--json]\n\n"
               "status: per target and repository the last check's verdict (ok, gap,\n"
               "mismatch, unreachable, unknown; 'unsatisfied' when the agent's repositories\n"
               "cannot meet the policy), items missing or different, lag (seconds since the\n"
               "oldest missing item appeared elsewhere), copies tried, and each agent's\n"
               "repository probes. Exit 1 when a required repository is not ok.\n"
               "check: queue a check of the target now (one queued at most). --wait follows\n"
               "it to its end and reports what it found per repository, the copies it\n"
               "queued to repair gaps (followed to their end) and the verdict of the check\n"
               "that follows them. Exit 0 when the check and its copies ran (the last line\n"
               "says whether every required repository holds every item; `status` exits 1\n"
               "when one does not).\n"
               "\n"
               "Examples:\n"
               "  tidemarkctl replication status\n"
               "  tidemarkctl replication check --target orders-db --wait\n");
    return code;
}

static const char *s_or(const char *s, const char *def)
{
    return s != NULL && s[0] != '\0' ? s : def;
}

static int fetch_states(ctl *c, const char *target, Tidemark__ReplicationStatusResponse **out);

static int status(ctl *c, const char *target)
{
    Tidemark__ReplicationStatusResponse *r = NULL;
    int rc = fetch_states(c, target, &r);
    if (rc != CTL_OK) {
        return rc;
    }
    int bad = 0;
    for (size_t i = 0; i < r->n_states; i++) {
        const Tidemark__ReplicationState *s = r->states[i];
        bad |= s->required && strcmp(s_or(s->state, "unknown"), "ok") != 0;
    }
    if (c->json) {
        printf("{\"states\":[");
        for (size_t i = 0; i < r->n_states; i++) {
            const Tidemark__ReplicationState *s = r->states[i];
            printf("%s{\"target\":", i ? "," : "");
            tm_json_str(stdout, s->target);
            printf(",\"repository\":");
            tm_json_str(stdout, s_or(s->repository, ""));
            printf(",\"region\":");
            tm_json_str(stdout, s_or(s->region, ""));
            printf(",\"state\":");
            tm_json_str(stdout, s_or(s->state, "unknown"));
            printf(",\"required\":%s,\"last_check\":", s->required ? "true" : "false");
            json_time(stdout, s->checked_at);
            printf(",\"gaps\":%u,\"mismatches\":%u,\"lag_seconds\":%" PRId64
                   ",\"unresolved\":%s,\"copies\":%u,\"newest_backup\":",
                   s->gaps, s->mismatches, s->lag_seconds, s->unresolved ? "true" : "false",
                   s->copies);
            tm_json_str(stdout, s_or(s->newest_backup, ""));
            printf(",\"newest_log\":");
            tm_json_str(stdout, s_or(s->newest_log, ""));
            printf(",\"last_task\":");
            tm_json_str(stdout, s_or(s->last_task, ""));
            printf(",\"detail\":");
            tm_json_str(stdout, s_or(s->detail, ""));
            printf("}");
        }
        printf("],\"repositories\":[");
        for (size_t i = 0; i < r->n_repositories; i++) {
            const Tidemark__RepositoryStatus *h = r->repositories[i];
            printf("%s{\"agent\":", i ? "," : "");
            tm_json_str(stdout, s_or(h->agent_id, ""));
            printf(",\"repository\":");
            tm_json_str(stdout, s_or(h->name, ""));
            printf(",\"region\":");
            tm_json_str(stdout, s_or(h->region, ""));
            printf(",\"ok\":%s,\"last_ok\":", h->ok ? "true" : "false");
            json_time(stdout, h->last_ok_at);
            printf(",\"failing_since\":");
            json_time(stdout, h->failing_since);
            printf(",\"error\":");
            tm_json_str(stdout, s_or(h->error, ""));
            printf("}");
        }
        printf("]}\n");
    } else {
        if (r->n_states == 0) {
            printf("no replication check has run yet%s%s\n", target ? " for " : "",
                   target ? target : "");
        } else {
            printf("%-16s %-12s %-8s %-11s %-10s %6s %8s %6s  %s\n", "TARGET", "REPOSITORY",
                   "REGION", "STATE", "CHECKED", "GAPS", "LAG", "COPIES", "DETAIL");
        }
        for (size_t i = 0; i < r->n_states; i++) {
            const Tidemark__ReplicationState *s = r->states[i];
            char ago[32], lag[32];
            ctl_ago(s->checked_at, ago, sizeof(ago));
            snprintf(lag, sizeof(lag), "%" PRId64 "s", s->lag_seconds);
            printf("%-16s %-12s %-8s %-11s %-10s %6u %8s %6u  %s%s%s\n", s->target,
                   s_or(s->repository, "(policy)"), s_or(s->region, "-"), s_or(s->state, "unknown"),
                   ago, s->gaps + s->mismatches, lag, s->copies,
                   s->required ? "" : "(not required) ", s->unresolved ? "UNRESOLVED " : "",
                   s_or(s->detail, ""));
        }
        if (r->n_repositories > 0) {
            printf("\n%-24s %-12s %-8s %-6s %-10s  %s\n", "AGENT", "REPOSITORY", "REGION", "UP",
                   "LAST OK", "ERROR");
        }
        for (size_t i = 0; i < r->n_repositories; i++) {
            const Tidemark__RepositoryStatus *h = r->repositories[i];
            char ago[32];
            ctl_ago(h->last_ok_at, ago, sizeof(ago));
            printf("%-24s %-12s %-8s %-6s %-10s  %s\n", s_or(h->agent_id, "-"), s_or(h->name, "-"),
                   s_or(h->region, "-"), h->ok ? "yes" : "NO", ago, s_or(h->error, ""));
        }
    }
    tidemark__replication_status_response__free_unpacked(r, NULL);
    return bad ? CTL_FAIL : CTL_OK;
}

static int fetch_states(ctl *c, const char *target, Tidemark__ReplicationStatusResponse **out)
{
    Tidemark__ReplicationStatusRequest req = TIDEMARK__REPLICATION_STATUS_REQUEST__INIT;
    req.target = (char *)target;
    return ctl_call(c, "Admin.ReplicationStatus", &req.base,
                    &tidemark__replication_status_response__descriptor, (ProtobufCMessage **)out);
}

static const char *verdict(const Tidemark__RepositoryReplication *rr)
{
    return !rr->reachable   ? "unreachable"
           : rr->mismatched ? "mismatch"
           : rr->missing    ? "gap"
                            : "ok";
}

/* What one check found per repository (its own report, not the catalog's
 * latest state, which the check after a repair overwrites at once). */
static void print_found(ctl *c, const Tidemark__ReplicationReport *rep)
{
    if (c->json) {
        printf(",\"found\":[");
    } else {
        printf("found:\n");
    }
    for (size_t i = 0; rep != NULL && i < rep->n_repositories; i++) {
        const Tidemark__RepositoryReplication *rr = rep->repositories[i];
        const char *first = rr->n_gaps > 0 && rr->gaps[0]->item ? rr->gaps[0]->item : "";
        const char *kind = rr->n_gaps > 0 && rr->gaps[0]->kind ? rr->gaps[0]->kind : "";
        if (c->json) {
            printf("%s{\"repository\":", i ? "," : "");
            tm_json_str(stdout, s_or(rr->repository, ""));
            printf(",\"region\":");
            tm_json_str(stdout, s_or(rr->region, ""));
            printf(",\"state\":\"%s\",\"required\":%s,\"missing\":%u,\"mismatched\":%u,"
                   "\"error\":",
                   verdict(rr), rr->required ? "true" : "false", rr->missing, rr->mismatched);
            tm_json_str(stdout, s_or(rr->error, ""));
            printf("}");
        } else {
            printf("  %-12s %-8s %-11s %u missing, %u different%s%s%s%s%s%s\n",
                   s_or(rr->repository, "-"), s_or(rr->region, "-"), verdict(rr), rr->missing,
                   rr->mismatched, rr->required ? "" : " (not required)", first[0] ? " (" : "",
                   kind, first[0] ? " " : "", first,
                   first[0] ? (rr->missing + rr->mismatched > 1 ? ", ...)" : ")") : "");
            if (!rr->reachable && rr->error != NULL && rr->error[0]) {
                printf("  %-12s %s\n", "", rr->error);
            }
        }
    }
    if (c->json) {
        printf("]");
    }
}

/* The catalog's verdicts per repository now. */
static void print_now(ctl *c, const Tidemark__ReplicationStatusResponse *r)
{
    if (c->json) {
        printf(",\"now\":[");
    } else {
        printf("now:\n");
    }
    for (size_t i = 0, n = 0; i < r->n_states; i++) {
        const Tidemark__ReplicationState *s = r->states[i];
        if (s->repository == NULL || s->repository[0] == '\0') {
            continue; /* target-wide: shown only when it has a problem, below */
        }
        if (c->json) {
            printf("%s{\"repository\":", n++ ? "," : "");
            tm_json_str(stdout, s->repository);
            printf(",\"state\":");
            tm_json_str(stdout, s_or(s->state, "unknown"));
            printf(",\"required\":%s,\"unresolved\":%s,\"detail\":", s->required ? "true" : "false",
                   s->unresolved ? "true" : "false");
            tm_json_str(stdout, s_or(s->detail, ""));
            printf("}");
        } else {
            printf("  %-12s %-8s %-11s%s%s%s\n", s->repository, s_or(s->region, "-"),
                   s_or(s->state, "unknown"), s->unresolved ? " UNRESOLVED" : "",
                   s->detail && s->detail[0] ? ": " : "", s_or(s->detail, ""));
        }
    }
    if (c->json) {
        printf("]");
    }
}

static int all_required_ok(const Tidemark__ReplicationStatusResponse *r)
{
    for (size_t i = 0; i < r->n_states; i++) {
        const Tidemark__ReplicationState *s = r->states[i];
        if (s->required && strcmp(s_or(s->state, "unknown"), "ok") != 0) {
            return 0;
        }
    }
    return 1;
}

static int in_list(char **list, const char *id)
{
    for (size_t i = 0; list != NULL && list[i] != NULL; i++) {
        if (strcmp(list[i], id) == 0) {
            return 1;
        }
    }
    return 0;
}

static void free_list(char **list)
{
    for (size_t i = 0; list != NULL && list[i] != NULL; i++) {
        free(list[i]);
    }
    free(list);
}

/* The replication service's COPY tasks of the target (coordinator/
 * replication.c), except those in before (the ones that existed before the
 * check was asked for: timestamps have one-second steps, ids do not
 * repeat). Their ids into ids (malloc'd, NULL-terminated), count returned. */
static size_t copies_of(ctl *c, const char *target, char **before, char ***ids)
{
    Tidemark__ListTasksRequest req = TIDEMARK__LIST_TASKS_REQUEST__INIT;
    req.target = (char *)target;
    req.has_limit = 1;
    req.limit = 50;
    Tidemark__ListTasksResponse *resp = NULL;
    *ids = NULL;
    if (ctl_call(c, "Admin.ListTasks", &req.base, &tidemark__list_tasks_response__descriptor,
                 (ProtobufCMessage **)&resp) != CTL_OK) {
        return 0;
    }
    size_t n = 0;
    *ids = calloc(resp->n_tasks + 1, sizeof(char *));
    for (size_t i = 0; *ids != NULL && i < resp->n_tasks; i++) {
        const Tidemark__Task *t = resp->tasks[i];
        if (t->kind == TIDEMARK__TASK_KIND__COPY && !in_list(before, t->id) &&
            strcmp(s_or(t->requested_by, ""), "replication") == 0) {
            (*ids)[n++] = strdup(t->id);
        }
    }
    tidemark__list_tasks_response__free_unpacked(resp, NULL);
    return n;
}

/* replication check --wait: the check, what it found, the copies it queued
 * to repair what it found (followed to their end), and where things stand
 * after the check the coordinator runs once the copies are done. Exit 0
 * when the check and its copies ran. */
static int check_report(ctl *c, const char *target, const char *id, char **before, uint32_t wait_s)
{
    uint64_t deadline = tm_mono_ns() + (uint64_t)wait_s * 1000000000ULL;
    c->wait_quiet = 1;
    int rc = ctl_wait_task(c, id, wait_s);
    c->wait_quiet = 0;
    if (rc == CTL_INTERRUPTED) {
        return rc;
    }
    Tidemark__Task *chk = NULL;
    if (ctl_get_task(c, id, &chk) != CTL_OK) {
        return CTL_FAIL;
    }
    if (c->json) {
        printf("{\"check\":");
        ctl_json_task(stdout, chk);
    } else {
        printf("check %s of %s: %s%s%s\n", id, target, tm_task_state_name(chk->state),
               chk->error && chk->error[0] ? ": " : "", chk->error ? chk->error : "");
    }
    if (chk->state != TIDEMARK__TASK_STATE__TASK_SUCCEEDED) {
        printf(c->json ? ",\"ok\":false}\n" : "");
        tidemark__task__free_unpacked(chk, NULL);
        return CTL_FAIL;
    }
    const Tidemark__ReplicationReport *rep = chk->result ? chk->result->replication : NULL;
    print_found(c, rep);
    int dirty = 0;
    for (size_t i = 0; rep != NULL && i < rep->n_repositories; i++) {
        dirty |= rep->repositories[i]->required &&
                 (rep->repositories[i]->missing + rep->repositories[i]->mismatched > 0);
    }
    char **ids = NULL;
    size_t nids = dirty ? copies_of(c, target, before, &ids) : 0;
    tidemark__task__free_unpacked(chk, NULL);
    int copies_ok = 1;
    int64_t last_copy_end = 0;
    if (c->json) {
        printf(",\"copies\":[");
    }
    for (size_t i = 0; i < nids; i++) {
        uint64_t now = tm_mono_ns();
        uint32_t left = now < deadline ? (uint32_t)((deadline - now) / 1000000000ULL) : 1;
        c->wait_quiet = 1;
        int crc = ctl_wait_task(c, ids[i], left);
        c->wait_quiet = 0;
        Tidemark__Task *cp = NULL;
        if (crc == CTL_INTERRUPTED || ctl_get_task(c, ids[i], &cp) != CTL_OK) {
            copies_ok = 0;
            rc = crc == CTL_INTERRUPTED ? crc : CTL_FAIL;
            break;
        }
        copies_ok &= cp->state == TIDEMARK__TASK_STATE__TASK_SUCCEEDED;
        if (cp->finished_at > last_copy_end) {
            last_copy_end = cp->finished_at;
        }
        const Tidemark__CopySpec *sp = cp->copy;
        if (c->json) {
            printf("%s", i ? "," : "");
            ctl_json_task(stdout, cp);
        } else {
            printf("%s  copy %s %s -> %s: %zu backups, %zu log files: %s%s%s\n",
                   i ? "" : "repair:\n", ids[i], sp ? s_or(sp->source, "?") : "?",
                   sp ? s_or(sp->destination, "?") : "?", sp ? sp->n_backups : 0,
                   sp ? sp->n_logs : 0, tm_task_state_name(cp->state),
                   cp->error && cp->error[0] ? ": " : "", cp->error ? cp->error : "");
        }
        tidemark__task__free_unpacked(cp, NULL);
    }
    free_list(ids);
    if (c->json) {
        printf("]");
    } else if (nids == 0) {
        printf("repair: %s\n",
               dirty ? "no copy could be queued (why: below)" : "nothing to repair");
    }
    if (rc == CTL_INTERRUPTED) {
        printf(c->json ? "}\n" : "");
        return rc;
    }
    /* After each copy the coordinator checks again: wait for that verdict
     * (every state checked after the last copy ended). */
    Tidemark__ReplicationStatusResponse *now_st = NULL;
    for (;;) {
        if (fetch_states(c, target, &now_st) != CTL_OK) {
            now_st = NULL;
            break;
        }
        int fresh = 1;
        for (size_t i = 0; i < now_st->n_states; i++) {
            fresh &= now_st->states[i]->checked_at >= last_copy_end;
        }
        if (fresh || tm_mono_ns() > deadline) {
            break;
        }
        tidemark__replication_status_response__free_unpacked(now_st, NULL);
        now_st = NULL;
        usleep(250000);
    }
    int good = now_st != NULL && all_required_ok(now_st) && copies_ok;
    if (now_st != NULL) {
        print_now(c, now_st);
        tidemark__replication_status_response__free_unpacked(now_st, NULL);
    }
    if (c->json) {
        printf(",\"ok\":%s}\n", good ? "true" : "false");
    } else {
        printf("%s\n", good ? "every required repository holds every item"
                            : "NOT every required repository holds every item (see above)");
    }
    /* The exit code says whether the check and its copies ran, as for any
     * --wait; whether every repository holds everything is the verdict
     * line (and `replication status`'s exit code). */
    return copies_ok ? CTL_OK : CTL_FAIL;
}

static int check(ctl *c, const char *target, int wait, uint32_t wait_s)
{
    /* The copies already there: the report names only those that come
     * after this check. */
    char **before = NULL;
    if (wait) {
        copies_of(c, target, NULL, &before);
    }
    Tidemark__ReplicationCheckRequest req = TIDEMARK__REPLICATION_CHECK_REQUEST__INIT;
    req.target = (char *)target;
    Tidemark__TaskResponse *resp = NULL;
    int rc = ctl_call(c, "Admin.ReplicationCheck", &req.base, &tidemark__task_response__descriptor,
                      (ProtobufCMessage **)&resp);
    if (rc != CTL_OK) {
        free_list(before);
        return rc;
    }
    char id[128];
    snprintf(id, sizeof(id), "%s", resp->task && resp->task->id ? resp->task->id : "");
    if (!wait) {
        if (c->json) {
            ctl_json_task(stdout, resp->task);
            fputc('\n', stdout);
        } else {
            printf("queued replication check of %s as task %s\n", target, id);
        }
    }
    tidemark__task_response__free_unpacked(resp, NULL);
    rc = wait ? check_report(c, target, id, before, wait_s) : CTL_OK;
    free_list(before);
    return rc;
}

int ctl_replication(ctl *c, int argc, char **argv)
{
    if (argc < 2 || strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0) {
        return usage(argc < 2 ? stderr : stdout, argc < 2 ? CTL_USAGE : CTL_OK);
    }
    const char *sub = argv[1], *target = NULL;
    int wait = 0;
    uint32_t wait_s = 3600;
    for (int i = 2; i < argc; i++) {
        if (strcmp(argv[i], "--target") == 0 && i + 1 < argc) {
            target = argv[++i];
        } else if (strcmp(argv[i], "--json") == 0) {
            c->json = 1;
        } else if (strcmp(argv[i], "--wait") == 0) {
            wait = 1;
        } else if (strcmp(argv[i], "--wait-timeout") == 0 && i + 1 < argc) {
            wait_s = (uint32_t)strtoul(argv[++i], NULL, 10);
        } else if (strcmp(argv[i], "--help") == 0 || strcmp(argv[i], "-h") == 0) {
            return usage(stdout, CTL_OK);
        } else {
            fprintf(stderr, "tidemarkctl: replication %s: unknown argument '%s'\n", sub, argv[i]);
            return CTL_USAGE;
        }
    }
    if (strcmp(sub, "status") == 0) {
        return status(c, target);
    }
    if (strcmp(sub, "check") == 0) {
        if (target == NULL) {
            fprintf(stderr, "tidemarkctl: replication check needs --target\n");
            return CTL_USAGE;
        }
        return check(c, target, wait, wait_s);
    }
    fprintf(stderr, "tidemarkctl: replication: unknown command '%s' (status or check)\n", sub);
    return CTL_USAGE;
}
