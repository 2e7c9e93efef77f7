/*
 * retention.c - tidemarkctl retention plan: what GFS retention would keep
 * and drop, and why, per target under its policy. A dry run: applying the
 * plan (deleting from the repositories) needs an agent task and is not
 * implemented yet; nothing is deleted by this command.
 */
#include "coordinator/ctl/ctl.h"

#include <string.h>

#include "tidemark.pb-c.h"

static void usage(FILE *f)
{
    fprintf(f, "Usage: tidemarkctl retention plan [--target T] [--json]\n\n"
               "Print the retention plan (keep/drop and the rule behind each backup) over\n"
               "the catalog's backups, per target under its policy. Dry run only: applying\n"
               "the plan is not implemented yet, nothing is deleted.\n");
}

int ctl_retention(ctl *c, int argc, char **argv)
{
    if (argc < 2 || strcmp(argv[1], "plan") != 0) {
        int help = argc >= 2 && (strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0);
        usage(help ? stdout : stderr);
        return help ? CTL_OK : CTL_USAGE;
    }
    const char *target = NULL;
    for (int i = 2; i < argc; i++) {
        if (strcmp(argv[i], "--json") == 0) {
            c->json = 1;
        } else if (strcmp(argv[i], "--target") == 0 && i + 1 < argc) {
            target = argv[++i];
        } else if (strcmp(argv[i], "--help") == 0 || strcmp(argv[i], "-h") == 0) {
            usage(stdout);
            return CTL_OK;
        } else {
            fprintf(stderr, "tidemarkctl: retention plan: unknown argument '%s'\n", argv[i]);
            return CTL_USAGE;
        }
    }
    Tidemark__RetentionPlanRequest req = TIDEMARK__RETENTION_PLAN_REQUEST__INIT;
    req.target = (char *)target;
    Tidemark__RetentionPlanResponse *resp = NULL;
    int rc = ctl_call(c, "Admin.RetentionPlan", &req.base,
                      &tidemark__retention_plan_response__descriptor, (ProtobufCMessage **)&resp);
    if (rc != CTL_OK) {
        return rc;
    }
    if (c->json) {
        printf("%s\n", resp->json != NULL ? resp->json : "{}");
    } else {
        printf("DRY RUN: nothing is deleted (applying retention is not implemented yet)\n\n%s",
               resp->text != NULL ? resp->text : "");
    }
    tidemark__retention_plan_response__free_unpacked(resp, NULL);
    return CTL_OK;
}
