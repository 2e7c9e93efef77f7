/*
 * tasks.c - tidemarkctl tasks list, task show|cancel, and the --wait loop
 * that backup run / restore share.
 */
#include "coordinator/ctl/ctl.h"
#include "common/util.h"

#include <getopt.h>
#include <signal.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "tidemark.pb-c.h"

void ctl_json_task(FILE *f, const Tidemark__Task *t)
{
    fputs("{\"id\":", f);
    tm_json_str(f, t->id);
    fprintf(f, ",\"kind\":\"%s\",\"target\":", tm_task_kind_name(t->kind));
    tm_json_str(f, t->target);
    fprintf(f, ",\"state\":\"%s\",\"agent_id\":", tm_task_state_name(t->state));
    tm_json_str(f, t->agent_id);
    fprintf(f, ",\"attempt\":%u,\"max_attempts\":%u", t->attempt, t->max_attempts);
    if (t->kind == TIDEMARK__TASK_KIND__BACKUP) {
        fprintf(f, ",\"backup_type\":\"%s\"", tm_backup_type_name(t->backup_type));
    }
    fputs(",\"created_at\":", f);
    json_time(f, t->created_at);
    fputs(",\"started_at\":", f);
    json_time(f, t->started_at);
    fputs(",\"finished_at\":", f);
    json_time(f, t->finished_at);
    fputs(",\"error\":", f);
    tm_json_str(f, t->error);
    fputs(",\"requested_by\":", f);
    tm_json_str(f, t->requested_by);
    fputs(",\"notes\":[", f);
    for (size_t i = 0; i < t->n_notes; i++) {
        fputs(i ? "," : "", f);
        tm_json_str(f, t->notes[i]);
    }
    fputc(']', f);
    if (t->progress != NULL) {
        fputs(",\"progress\":{\"phase\":", f);
        tm_json_str(f, t->progress->phase);
        fprintf(f,
                ",\"bytes_done\":%" PRIu64 ",\"bytes_total\":%" PRIu64
                ",\"files_done\":%u,\"files_total\":%u}",
                t->progress->bytes_done, t->progress->bytes_total, t->progress->files_done,
                t->progress->files_total);
    }
    if (t->result != NULL) {
        const Tidemark__TaskResult *r = t->result;
        fputs(",\"result\":{\"backup_id\":", f);
        tm_json_str(f, r->backup_id);
        fprintf(f,
                ",\"bytes\":%" PRIu64 ",\"stored_bytes\":%" PRIu64 ",\"files\":%u"
                ",\"duration_ms\":%" PRIu64 ",\"start_position\":",
                r->bytes, r->stored_bytes, r->files, r->duration_ms);
        tm_json_str(f, r->start_position);
        fputs(",\"stop_position\":", f);
        tm_json_str(f, r->stop_position);
        fputs(",\"extra\":{", f);
        for (size_t i = 0; i < r->n_extra; i++) {
            fputs(i ? "," : "", f);
            tm_json_str(f, r->extra[i]->key);
            fputc(':', f);
            tm_json_str(f, r->extra[i]->value);
        }
        fputs("},\"repository_outcomes\":[", f);
        for (size_t i = 0; i < r->n_repository_outcomes; i++) {
            const Tidemark__RepositoryOutcome *o = r->repository_outcomes[i];
            fputs(i ? ",{\"repository\":" : "{\"repository\":", f);
            tm_json_str(f, o->repository);
            fputs(",\"region\":", f);
            tm_json_str(f, o->region);
            fprintf(f, ",\"ok\":%s,\"error_class\":", o->ok ? "true" : "false");
            tm_json_str(f, o->error_class);
            fputs(",\"operation\":", f);
            tm_json_str(f, o->operation);
            fputs(",\"message\":", f);
            tm_json_str(f, o->message);
            fputc('}', f);
        }
        fputs("]}", f);
    }
    if (t->kind == TIDEMARK__TASK_KIND__EXPIRE) {
        ctl_json_expire(f, t); /* retention.c */
    }
    fputs("}", f);
}

/* A result figure in seconds: the engines name them <phase>_s (restore_files_s,
 * recovery_s, total_s, ...) or <phase>_ms. */
static int timing_key(const char *k, char *phase, size_t cap, double *scale)
{
    size_t n = strlen(k);
    if (n > 3 && strcmp(k + n - 3, "_ms") == 0) {
        *scale = 0.001;
        n -= 3;
    } else if (n > 2 && strcmp(k + n - 2, "_s") == 0) {
        *scale = 1.0;
        n -= 2;
    } else {
        return 0;
    }
    snprintf(phase, cap, "%.*s", (int)n, k);
    return 1;
}

/* The engine's figures of a result: timings on one line (the same numbers
 * --json has under result.extra), the rest on another. */
static void text_extra(const Tidemark__TaskResult *r)
{
    if (r == NULL || r->n_extra == 0) {
        return;
    }
    int nt = 0, no = 0;
    for (size_t i = 0; i < r->n_extra; i++) {
        const Tidemark__KeyValue *kv = r->extra[i];
        char phase[64];
        double scale, v;
        char *end = NULL;
        if (kv->key == NULL || kv->value == NULL ||
            !timing_key(kv->key, phase, sizeof(phase), &scale)) {
            continue;
        }
        v = strtod(kv->value, &end);
        if (end == kv->value || v * scale > 1e8) {
            continue; /* not a duration: a point in time (unix seconds) */
        }
        printf("%s%s %.2f s", nt++ ? ", " : "timings:   ", phase, v * scale);
    }
    if (nt > 0) {
        fputc('\n', stdout);
    }
    for (size_t i = 0; i < r->n_extra; i++) {
        const Tidemark__KeyValue *kv = r->extra[i];
        char phase[64];
        double scale;
        if (kv->key == NULL || kv->value == NULL ||
            (timing_key(kv->key, phase, sizeof(phase), &scale) &&
             strtod(kv->value, NULL) * scale <= 1e8)) {
            continue;
        }
        printf("%s%s=%s", no++ ? " " : "details:   ", kv->key, kv->value);
    }
    if (no > 0) {
        fputc('\n', stdout);
    }
}

static void text_task(const Tidemark__Task *t)
{
    printf("task:      %s\n", t->id);
    printf("kind:      %s%s%s\n", tm_task_kind_name(t->kind),
           t->kind == TIDEMARK__TASK_KIND__BACKUP ? " " : "",
           t->kind == TIDEMARK__TASK_KIND__BACKUP ? tm_backup_type_name(t->backup_type) : "");
    printf("target:    %s\n", t->target ? t->target : "-");
    printf("agent:     %s\n", t->agent_id ? t->agent_id : "-");
    printf("state:     %s (attempt %u of %u)\n", tm_task_state_name(t->state), t->attempt,
           t->max_attempts);
    if (t->progress != NULL && t->progress->bytes_total > 0) {
        printf("progress:  %s %" PRIu64 "/%" PRIu64 " bytes (%.0f%%)\n",
               t->progress->phase ? t->progress->phase : "", t->progress->bytes_done,
               t->progress->bytes_total,
               100.0 * (double)t->progress->bytes_done / (double)t->progress->bytes_total);
    }
    if (t->error != NULL && t->error[0]) {
        printf("error:     %s\n", t->error);
    }
    for (size_t i = 0; i < t->n_notes; i++) {
        printf("note:      %s\n", t->notes[i]);
    }
    if (t->result != NULL && t->result->backup_id != NULL) {
        printf("backup:    %s (%" PRIu64 " bytes read, %" PRIu64 " stored, %" PRIu64 " ms)\n",
               t->result->backup_id, t->result->bytes, t->result->stored_bytes,
               t->result->duration_ms);
    }
    text_extra(t->result);
    /* Per repository: where the backup is complete, and why not elsewhere. */
    for (size_t i = 0; t->result != NULL && i < t->result->n_repository_outcomes; i++) {
        const Tidemark__RepositoryOutcome *o = t->result->repository_outcomes[i];
        int cls = o->error_class != NULL && o->error_class[0];
        int op = o->operation != NULL && o->operation[0];
        printf("%-10s %s%s%s: %s%s%s%s%s\n", i == 0 ? "repos:" : "",
               o->repository ? o->repository : "?", o->region && o->region[0] ? " " : "",
               o->region && o->region[0] ? o->region : "", o->ok ? "ok" : "FAILED",
               cls ? " class=" : "", cls ? o->error_class : "", op ? " operation=" : "",
               op ? o->operation : "");
        if (!o->ok && o->message != NULL && o->message[0]) {
            printf("%-10s   %s\n", "", o->message);
        }
    }
}

int ctl_get_task(ctl *c, const char *id, Tidemark__Task **out)
{
    Tidemark__TaskRef ref = TIDEMARK__TASK_REF__INIT;
    ref.id = (char *)id;
    Tidemark__TaskResponse *resp = NULL;
    int rc = ctl_call(c, "Admin.GetTask", &ref.base, &tidemark__task_response__descriptor,
                      (ProtobufCMessage **)&resp);
    if (rc != CTL_OK) {
        return rc;
    }
    *out = resp->task;
    resp->task = NULL;
    tidemark__task_response__free_unpacked(resp, NULL);
    return *out != NULL ? CTL_OK : CTL_FAIL;
}

int ctl_submit_task(ctl *c, const char *method, const ProtobufCMessage *req, const char *what,
                    int announce, char *id, size_t cap)
{
    Tidemark__TaskResponse *resp = NULL;
    int rc =
        ctl_call(c, method, req, &tidemark__task_response__descriptor, (ProtobufCMessage **)&resp);
    if (rc != CTL_OK) {
        return rc;
    }
    const Tidemark__Task *t = resp->task;
    snprintf(id, cap, "%s", t && t->id ? t->id : "");
    if (announce && c->json) {
        ctl_json_task(stdout, t);
        fputc('\n', stdout);
    } else if (announce) {
        printf("queued %s as task %s on agent %s\n", what, id,
               t && t->agent_id ? t->agent_id : "?");
    }
    tidemark__task_response__free_unpacked(resp, NULL);
    return CTL_OK;
}

/* Ctrl-C while following a task stops the following, not the task. */
static volatile sig_atomic_t g_interrupted;

static void on_interrupt(int sig)
{
    (void)sig;
    g_interrupted = 1;
}

/* "1:05" or "1:02:03" */
static void hms(double s, char *out, size_t cap)
{
    uint64_t t = s > 0 && s < 1e9 ? (uint64_t)(s + 0.5) : 0;
    if (t >= 3600) {
        snprintf(out, cap, "%" PRIu64 ":%02" PRIu64 ":%02" PRIu64, t / 3600, t / 60 % 60, t % 60);
    } else {
        snprintf(out, cap, "%" PRIu64 ":%02" PRIu64, t / 60, t % 60);
    }
}

/* The progress line on a terminal: phase, bytes, rate and ETA when the task
 * reports bytes, else its state and how long it has been waited on. The rate
 * is measured here, from the first report with bytes on. */
typedef struct progress_meter {
    uint64_t t0_ns, bytes0, start_ns;
    int have0;
} progress_meter;

static void show_progress(progress_meter *m, const char *id, const Tidemark__Task *t)
{
    uint64_t now = tm_mono_ns();
    char elapsed[32];
    hms((double)(now - m->start_ns) / 1e9, elapsed, sizeof(elapsed));
    const Tidemark__Progress *p = t->progress;
    if (p == NULL || p->bytes_total == 0) {
        fprintf(stderr, "\r\033[K%s %s%s%s (attempt %u) %s", id, tm_task_state_name(t->state),
                p != NULL && p->phase != NULL && p->phase[0] ? ": " : "",
                p != NULL && p->phase != NULL ? p->phase : "", t->attempt, elapsed);
        return;
    }
    if (!m->have0 && p->bytes_done > 0) {
        m->have0 = 1;
        m->t0_ns = now;
        m->bytes0 = p->bytes_done;
    }
    double secs = m->have0 ? (double)(now - m->t0_ns) / 1e9 : 0;
    double rate =
        secs > 0.5 && p->bytes_done > m->bytes0 ? (double)(p->bytes_done - m->bytes0) / secs : 0;
    char eta[32] = "?";
    if (rate > 0 && p->bytes_total > p->bytes_done) {
        hms((double)(p->bytes_total - p->bytes_done) / rate, eta, sizeof(eta));
    } else if (p->bytes_done >= p->bytes_total) {
        snprintf(eta, sizeof(eta), "0:00");
    }
    fprintf(stderr, "\r\033[K%s %s: %s %.1f%% %.1f/%.1f MiB, %.1f MiB/s, ETA %s, %s elapsed", id,
            tm_task_state_name(t->state), p->phase ? p->phase : "",
            100.0 * (double)p->bytes_done / (double)p->bytes_total,
            (double)p->bytes_done / 1048576.0, (double)p->bytes_total / 1048576.0, rate / 1048576.0,
            eta, elapsed);
}

int ctl_wait_task(ctl *c, const char *id, uint32_t timeout_s)
{
    uint64_t deadline = tm_mono_ns() + (uint64_t)timeout_s * 1000000000ULL;
    /* Progress goes to a terminal only: piped or redirected, stderr stays
     * quiet until the end. */
    int tty = isatty(2);
    int64_t stuck_since = 0;
    progress_meter meter = {.start_ns = tm_mono_ns()};
    struct sigaction sa = {.sa_handler = on_interrupt}, old_int, old_term;
    sigemptyset(&sa.sa_mask);
    g_interrupted = 0;
    sigaction(SIGINT, &sa, &old_int);
    sigaction(SIGTERM, &sa, &old_term);
    int ret;
    for (;;) {
        Tidemark__Task *t = NULL;
        int rc = ctl_get_task(c, id, &t);
        if (rc != CTL_OK) {
            ret = rc;
            break;
        }
        int st = t->state;
        if (st == TIDEMARK__TASK_STATE__TASK_SUCCEEDED || st == TIDEMARK__TASK_STATE__TASK_FAILED ||
            st == TIDEMARK__TASK_STATE__TASK_CANCELLED ||
            st == TIDEMARK__TASK_STATE__TASK_PARTIAL) {
            if (tty) {
                fputs("\r\033[K", stderr);
            }
            if (c->wait_quiet) {
                /* the caller prints the outcome */
            } else if (c->json) {
                ctl_json_task(stdout, t);
                fputc('\n', stdout);
            } else {
                text_task(t);
            }
            tidemark__task__free_unpacked(t, NULL);
            ret = st == TIDEMARK__TASK_STATE__TASK_SUCCEEDED ? CTL_OK
                  : st == TIDEMARK__TASK_STATE__TASK_PARTIAL ? CTL_PARTIAL
                                                             : CTL_FAIL;
            break;
        }
        /* Never hang on a dead agent: a running task whose lease is well
         * past due means nobody is working on it (the coordinator will
         * requeue it; the operator should know now). */
        int64_t now_ms = tm_now_ms();
        if (st == TIDEMARK__TASK_STATE__TASK_RUNNING && t->lease_expires_at > 0 &&
            now_ms > t->lease_expires_at + 5000) {
            if (stuck_since == 0) {
                stuck_since = now_ms;
            }
        } else {
            stuck_since = 0;
        }
        if (tty) {
            show_progress(&meter, id, t);
        }
        tidemark__task__free_unpacked(t, NULL);
        if (stuck_since != 0 && now_ms - stuck_since > 10000) {
            fprintf(stderr,
                    "\ntidemarkctl: task %s: the agent stopped reporting (lease expired); "
                    "the coordinator will retry it — see tidemarkctl task show %s\n",
                    id, id);
            ret = CTL_FAIL;
            break;
        }
        if (tm_mono_ns() > deadline) {
            fprintf(stderr, "\ntidemarkctl: task %s still %s after %u s (--wait-timeout)\n", id,
                    tm_task_state_name(st), timeout_s);
            ret = CTL_FAIL;
            break;
        }
        usleep(250000); /* a signal cuts it short */
        if (g_interrupted) {
            fprintf(stderr,
                    "%stidemarkctl: stopped waiting; task %s goes on.\n"
                    "  follow it: tidemarkctl task wait %s\n"
                    "  cancel it: tidemarkctl task cancel %s\n",
                    tty ? "\r\033[K" : "", id, id, id);
            ret = CTL_INTERRUPTED;
            break;
        }
    }
    sigaction(SIGINT, &old_int, NULL);
    sigaction(SIGTERM, &old_term, NULL);
    return ret;
}

static void tasks_usage(FILE *f)
{
    fprintf(f, "Usage: tidemarkctl tasks list [--target T] [--limit N] [--json]\n"
               "       tidemarkctl task show ID [--json]\n"
               "       tidemarkctl task cancel ID [--json]\n"
               "       tidemarkctl task wait ID [--wait-timeout S] [--json]\n"
               "\n"
               "wait follows a task to its end: on a terminal with a progress line (phase,\n"
               "bytes, rate, ETA), piped silently; Ctrl-C stops the waiting (exit 130), not\n"
               "the task.\n"
               "\n"
               "Examples:\n"
               "  tidemarkctl tasks list --target orders-db --limit 10\n"
               "  tidemarkctl task wait task-20261207T030000Z-675f97dbb6d0\n"
               "  tidemarkctl task cancel task-20261207T030000Z-675f97dbb6d0\n");
}

int ctl_tasks(ctl *c, int argc, char **argv)
{
    static const struct option opts[] = {
        {"target", required_argument, NULL, 't'},
        {"limit", required_argument, NULL, 'l'},
        {"json", no_argument, NULL, 'j'},
        {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0},
    };
    Tidemark__ListTasksRequest req = TIDEMARK__LIST_TASKS_REQUEST__INIT;
    if (argc < 2 || strcmp(argv[1], "list") != 0) {
        tasks_usage(argc >= 2 && strcmp(argv[1], "--help") == 0 ? stdout : stderr);
        return argc >= 2 && strcmp(argv[1], "--help") == 0 ? CTL_OK : CTL_USAGE;
    }
    optind = 0;
    int ch;
    while ((ch = getopt_long(argc - 1, argv + 1, "h", opts, NULL)) != -1) {
        switch (ch) {
        case 't':
            req.target = optarg;
            break;
        case 'l':
            req.has_limit = 1;
            req.limit = (uint32_t)strtoul(optarg, NULL, 10);
            break;
        case 'j':
            c->json = 1;
            break;
        case 'h':
            tasks_usage(stdout);
            return CTL_OK;
        default:
            tasks_usage(stderr);
            return CTL_USAGE;
        }
    }
    Tidemark__ListTasksResponse *resp = NULL;
    int rc = ctl_call(c, "Admin.ListTasks", &req.base, &tidemark__list_tasks_response__descriptor,
                      (ProtobufCMessage **)&resp);
    if (rc != CTL_OK) {
        return rc;
    }
    if (c->json) {
        fputc('[', stdout);
        for (size_t i = 0; i < resp->n_tasks; i++) {
            fputs(i ? "," : "", stdout);
            ctl_json_task(stdout, resp->tasks[i]);
        }
        fputs("]\n", stdout);
    } else {
        printf("%-34s %-8s %-12s %-20s %-10s %-8s %s\n", "TASK", "KIND", "TYPE", "TARGET", "STATE",
               "TRY", "ERROR");
        for (size_t i = 0; i < resp->n_tasks; i++) {
            const Tidemark__Task *t = resp->tasks[i];
            char tries[16];
            snprintf(tries, sizeof(tries), "%u/%u", t->attempt, t->max_attempts);
            printf("%-34s %-8s %-12s %-20s %-10s %-8s %s\n", t->id, tm_task_kind_name(t->kind),
                   t->kind == TIDEMARK__TASK_KIND__BACKUP ? tm_backup_type_name(t->backup_type)
                                                          : "-",
                   t->target, tm_task_state_name(t->state), tries,
                   /* no error: the newest note says what was decided */
                   t->error && t->error[0] ? t->error
                   : t->n_notes > 0        ? t->notes[t->n_notes - 1]
                                           : "");
        }
        if (resp->n_tasks == 0) {
            printf("(no tasks)\n");
        }
    }
    tidemark__list_tasks_response__free_unpacked(resp, NULL);
    return CTL_OK;
}

int ctl_task(ctl *c, int argc, char **argv)
{
    static const struct option opts[] = {
        {"json", no_argument, NULL, 'j'},
        {"wait-timeout", required_argument, NULL, 'w'},
        {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0},
    };
    if (argc < 2 || strcmp(argv[1], "--help") == 0) {
        tasks_usage(argc < 2 ? stderr : stdout);
        return argc < 2 ? CTL_USAGE : CTL_OK;
    }
    const char *verb = argv[1];
    uint32_t wait_s = 3600;
    optind = 0;
    int ch;
    while ((ch = getopt_long(argc - 1, argv + 1, "h", opts, NULL)) != -1) {
        switch (ch) {
        case 'j':
            c->json = 1;
            break;
        case 'w':
            wait_s = (uint32_t)strtoul(optarg, NULL, 10);
            break;
        case 'h':
            tasks_usage(stdout);
            return CTL_OK;
        default:
            tasks_usage(stderr);
            return CTL_USAGE;
        }
    }
    if (optind + 1 != argc - 1) {
        fprintf(stderr, "tidemarkctl: task %s takes one task id\n", verb);
        return CTL_USAGE;
    }
    const char *id = argv[1 + optind];
    if (strcmp(verb, "wait") == 0) {
        return ctl_wait_task(c, id, wait_s);
    }
    Tidemark__Task *t = NULL;
    int rc;
    if (strcmp(verb, "show") == 0) {
        rc = ctl_get_task(c, id, &t);
    } else if (strcmp(verb, "cancel") == 0) {
        Tidemark__TaskRef ref = TIDEMARK__TASK_REF__INIT;
        ref.id = (char *)id;
        Tidemark__TaskResponse *resp = NULL;
        rc = ctl_call(c, "Admin.CancelTask", &ref.base, &tidemark__task_response__descriptor,
                      (ProtobufCMessage **)&resp);
        if (rc == CTL_OK) {
            t = resp->task;
            resp->task = NULL;
            tidemark__task_response__free_unpacked(resp, NULL);
        }
    } else {
        tasks_usage(stderr);
        return CTL_USAGE;
    }
    if (rc != CTL_OK || t == NULL) {
        return rc != CTL_OK ? rc : CTL_FAIL;
    }
    if (c->json) {
        ctl_json_task(stdout, t);
        fputc('\n', stdout);
    } else {
        text_task(t);
    }
    tidemark__task__free_unpacked(t, NULL);
    return CTL_OK;
}
