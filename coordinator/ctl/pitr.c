/*
 * pitr.c - tidemarkctl pitr window: what a restore of a target can reach.
 */
#include "coordinator/ctl/ctl.h"
#include "common/util.h"

#include <inttypes.h>
#include <string.h>

#include "tidemark.pb-c.h"

int ctl_pitr(ctl *c, int argc, char **argv)
{
    const char *target = NULL;
    int help = argc >= 2 && (strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0);
    for (int i = 2; i < argc; i++) {
        help |= strcmp(argv[i], "--help") == 0 || strcmp(argv[i], "-h") == 0;
    }
    if (argc < 2 || strcmp(argv[1], "window") != 0 || help) {
        fprintf(help ? stdout : stderr,
                "Usage: tidemarkctl pitr window --target T [--json]\n\n"
                "The recoverable window of a target: from the oldest backup's consistent\n"
                "point to the newest archived log point reachable without a gap; gaps are\n"
                "listed; RPO now is what a disaster right now would lose.\n\n"
                "Example:\n"
                "  tidemarkctl pitr window --target orders-db\n");
        return help ? CTL_OK : CTL_USAGE;
    }
    for (int i = 2; i < argc; i++) {
        if (strcmp(argv[i], "--target") == 0 && i + 1 < argc) {
            target = argv[++i];
        } else if (strcmp(argv[i], "--json") == 0) {
            c->json = 1;
        } else {
            fprintf(stderr, "tidemarkctl: pitr window: unknown argument '%s'\n", argv[i]);
            return CTL_USAGE;
        }
    }
    if (target == NULL) {
        fprintf(stderr, "tidemarkctl: pitr window needs --target\n");
        return CTL_USAGE;
    }
    Tidemark__PitrWindowRequest req = TIDEMARK__PITR_WINDOW_REQUEST__INIT;
    req.target = (char *)target;
    Tidemark__PitrWindowResponse *r = NULL;
    int rc = ctl_call(c, "Admin.PitrWindow", &req.base, &tidemark__pitr_window_response__descriptor,
                      (ProtobufCMessage **)&r);
    if (rc != CTL_OK) {
        return rc;
    }
    if (c->json) {
        printf("{\"target\":");
        tm_json_str(stdout, r->target);
        printf(",\"start\":");
        json_time(stdout, r->start);
        printf(",\"end\":");
        json_time(stdout, r->end);
        printf(",\"rpo_seconds\":%" PRId64 ",\"queue_depth\":%u,\"oldest_backup\":", r->rpo_seconds,
               r->queue_depth);
        tm_json_str(stdout, r->oldest_backup);
        printf(",\"newest_backup\":");
        tm_json_str(stdout, r->newest_backup);
        printf(",\"ranges\":[");
        for (size_t i = 0; i < r->n_ranges; i++) {
            const Tidemark__LogRange *g = r->ranges[i];
            printf("%s{\"repository\":", i ? "," : "");
            tm_json_str(stdout, g->repository);
            printf(",\"chain\":%u,\"first\":", g->timeline);
            tm_json_str(stdout, g->first);
            printf(",\"last\":");
            tm_json_str(stdout, g->last);
            printf(",\"last_time\":");
            json_time(stdout, g->last_time);
            printf(",\"files\":%u,\"bytes\":%" PRIu64 "}", g->files, g->bytes);
        }
        printf("],\"gaps\":[");
        for (size_t i = 0; i < r->n_gaps; i++) {
            printf("%s", i ? "," : "");
            tm_json_str(stdout, r->gaps[i]);
        }
        printf("]}\n");
    } else {
        char s[32] = "-", e[32] = "-";
        if (r->start > 0) {
            tm_fmt_time(r->start, s, sizeof(s));
        }
        if (r->end > 0) {
            tm_fmt_time(r->end, e, sizeof(e));
        }
        printf("target:   %s\n", r->target);
        printf("window:   %s .. %s\n", s, e);
        printf("RPO now:  %" PRId64 " s%s\n", r->rpo_seconds,
               r->end == 0 ? " (nothing recoverable yet)" : "");
        printf("backups:  %s .. %s\n", r->oldest_backup ? r->oldest_backup : "-",
               r->newest_backup ? r->newest_backup : "-");
        printf("queue:    %u file(s) waiting to be archived\n", r->queue_depth);
        for (size_t i = 0; i < r->n_ranges; i++) {
            const Tidemark__LogRange *g = r->ranges[i];
            char t[32];
            tm_fmt_time(g->last_time, t, sizeof(t));
            printf("log:      %-10s chain %u  %s .. %s  (%u files, to %s)\n", g->repository,
                   g->timeline, g->first, g->last, g->files, t);
        }
        for (size_t i = 0; i < r->n_gaps; i++) {
            printf("GAP:      %s\n", r->gaps[i]);
        }
    }
    tidemark__pitr_window_response__free_unpacked(r, NULL);
    return CTL_OK;
}
