/*
 * agents.c - tidemarkctl agents list|show|approve|remove.
 */
#include "coordinator/ctl/ctl.h"

#include <getopt.h>
#include <inttypes.h>
#include <string.h>

#include "tidemark.pb-c.h"

static void agents_usage(FILE *f)
{
    fprintf(f, "Usage: tidemarkctl agents list [--state pending|online|stale|lost] [--json]\n"
               "       tidemarkctl agents show AGENT [--json]\n"
               "       tidemarkctl agents approve AGENT_ID [--json]\n"
               "       tidemarkctl agents remove AGENT [--json]\n"
               "\n"
               "AGENT is an agent id (agt-...) or a hostname that names exactly one agent.\n"
               "approve takes the id only: a hostname is whatever the agent said it was,\n"
               "so an impostor could have registered under it first. A pending agent's\n"
               "targets are claims; approving binds them, unless another agent serves\n"
               "one of the names already (then approval is refused).\n"
               "remove forgets the agent: a still-running agent registers again (pending\n"
               "unless its token auto-approves), so stop it first to retire a host.\n"
               "\n"
               "Examples:\n"
               "  tidemarkctl agents list --state pending\n"
               "  tidemarkctl agents approve agt-0dbf523db1ba4ea2\n"
               "  tidemarkctl agents show db-1 --json\n");
}

static void json_agent(FILE *f, const Tidemark__AgentInfo *a)
{
    fputs("{\"id\":", f);
    tm_json_str(f, a->id);
    fputs(",\"hostname\":", f);
    tm_json_str(f, a->hostname);
    fputs(",\"version\":", f);
    tm_json_str(f, a->version);
    fputs(",\"state\":", f);
    tm_json_str(f, tm_agent_state_name(a->state));
    fputs(",\"enrollment\":", f);
    tm_json_str(f, a->enrollment);
    fputs(",\"address\":", f);
    tm_json_str(f, a->address);
    fputs(",\"registered_at\":", f);
    json_time(f, a->registered_at);
    fputs(",\"last_seen_at\":", f);
    json_time(f, a->last_seen_at);
    fputs(",\"labels\":{", f);
    for (size_t i = 0; i < a->n_labels; i++) {
        fputs(i ? "," : "", f);
        tm_json_str(f, a->labels[i]->key);
        fputc(':', f);
        tm_json_str(f, a->labels[i]->value);
    }
    fputs("},\"targets\":[", f);
    for (size_t i = 0; i < a->n_targets; i++) {
        fputs(i ? "," : "", f);
        fputs("{\"name\":", f);
        tm_json_str(f, a->targets[i]->name);
        fputs(",\"kind\":", f);
        tm_json_str(f, tm_target_kind_name(a->targets[i]->kind));
        fputs(",\"engine_version\":", f);
        tm_json_str(f, a->targets[i]->engine_version);
        fputc('}', f);
    }
    fputs("]}", f);
}

static void targets_text(const Tidemark__AgentInfo *a, char *out, size_t cap)
{
    size_t n = 0;
    out[0] = '\0';
    for (size_t i = 0; i < a->n_targets && n + 1 < cap; i++) {
        int w = snprintf(out + n, cap - n, "%s%s(%s)", i ? "," : "", a->targets[i]->name,
                         tm_target_kind_name(a->targets[i]->kind));
        if (w < 0) {
            break;
        }
        n += (size_t)w;
    }
    if (a->n_targets == 0) {
        snprintf(out, cap, "-");
    }
}

static void show_text(const Tidemark__AgentInfo *a)
{
    char seen[32], reg[32];
    ctl_ago(a->last_seen_at, seen, sizeof(seen));
    ctl_ago(a->registered_at, reg, sizeof(reg));
    printf("id:           %s\n", a->id);
    printf("hostname:     %s\n", a->hostname ? a->hostname : "-");
    printf("state:        %s\n", tm_agent_state_name(a->state));
    printf("version:      %s\n", a->version ? a->version : "-");
    printf("enrollment:   %s\n", a->enrollment ? a->enrollment : "-");
    printf("address:      %s\n", a->address && a->address[0] ? a->address : "-");
    printf("registered:   %s\n", reg);
    printf("last seen:    %s\n", seen);
    printf("labels:      ");
    for (size_t i = 0; i < a->n_labels; i++) {
        printf(" %s=%s", a->labels[i]->key, a->labels[i]->value);
    }
    printf("%s\n", a->n_labels ? "" : " -");
    printf("%s\n", a->state == TIDEMARK__AGENT_STATE__PENDING
                       ? "targets (claimed; bound when approved):"
                       : "targets:");
    for (size_t i = 0; i < a->n_targets; i++) {
        printf("  %-24s %-9s %s\n", a->targets[i]->name, tm_target_kind_name(a->targets[i]->kind),
               a->targets[i]->engine_version ? a->targets[i]->engine_version : "");
    }
}

static int agents_list(ctl *c, int argc, char **argv)
{
    static const struct option opts[] = {
        {"state", required_argument, NULL, 's'},
        {"json", no_argument, NULL, 'j'},
        {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0},
    };
    Tidemark__ListAgentsRequest req = TIDEMARK__LIST_AGENTS_REQUEST__INIT;
    int ch;
    optind = 0; /* glibc: 0 re-initialises after the global parse */
    while ((ch = getopt_long(argc, argv, "h", opts, NULL)) != -1) {
        switch (ch) {
        case 's':
            req.has_state = 1;
            req.state = (Tidemark__AgentState)tm_agent_state_parse(optarg);
            if (req.state == 0) {
                fprintf(stderr, "tidemarkctl: --state must be pending, online, stale or lost\n");
                return CTL_USAGE;
            }
            break;
        case 'j':
            c->json = 1;
            break;
        case 'h':
            agents_usage(stdout);
            return CTL_OK;
        default:
            agents_usage(stderr);
            return CTL_USAGE;
        }
    }
    if (optind != argc) {
        agents_usage(stderr);
        return CTL_USAGE;
    }
    Tidemark__ListAgentsResponse *resp = NULL;
    int rc = ctl_call(c, "Admin.ListAgents", &req.base, &tidemark__list_agents_response__descriptor,
                      (ProtobufCMessage **)&resp);
    if (rc != CTL_OK) {
        return rc;
    }
    if (c->json) {
        fputc('[', stdout);
        for (size_t i = 0; i < resp->n_agents; i++) {
            fputs(i ? "," : "", stdout);
            json_agent(stdout, resp->agents[i]);
        }
        fputs("]\n", stdout);
    } else {
        printf("%-20s %-24s %-8s %-10s %-9s %s\n", "ID", "HOSTNAME", "STATE", "LAST SEEN",
               "VERSION", "TARGETS");
        for (size_t i = 0; i < resp->n_agents; i++) {
            const Tidemark__AgentInfo *a = resp->agents[i];
            char seen[32], targets[256];
            ctl_ago(a->last_seen_at, seen, sizeof(seen));
            targets_text(a, targets, sizeof(targets));
            printf("%-20s %-24s %-8s %-10s %-9s %s\n", a->id, a->hostname ? a->hostname : "-",
                   tm_agent_state_name(a->state), seen, a->version ? a->version : "-", targets);
        }
        if (resp->n_agents == 0) {
            printf("(no agents)\n");
        }
    }
    tidemark__list_agents_response__free_unpacked(resp, NULL);
    return CTL_OK;
}

/* show / approve / remove: one AGENT argument, an AgentResponse back. */
static int agents_one(ctl *c, const char *verb, const char *method, int argc, char **argv)
{
    static const struct option opts[] = {
        {"json", no_argument, NULL, 'j'}, {"help", no_argument, NULL, 'h'}, {NULL, 0, NULL, 0}};
    int ch;
    optind = 0; /* glibc: 0 re-initialises after the global parse */
    while ((ch = getopt_long(argc, argv, "h", opts, NULL)) != -1) {
        switch (ch) {
        case 'j':
            c->json = 1;
            break;
        case 'h':
            agents_usage(stdout);
            return CTL_OK;
        default:
            agents_usage(stderr);
            return CTL_USAGE;
        }
    }
    if (optind + 1 != argc) {
        fprintf(stderr, "tidemarkctl: agents %s takes one %s\n", verb,
                strcmp(verb, "approve") == 0 ? "AGENT_ID" : "AGENT (id or hostname)");
        return CTL_USAGE;
    }
    Tidemark__AgentRef req = TIDEMARK__AGENT_REF__INIT;
    req.id = argv[optind];
    Tidemark__AgentResponse *resp = NULL;
    int rc = ctl_call(c, method, &req.base, &tidemark__agent_response__descriptor,
                      (ProtobufCMessage **)&resp);
    if (rc != CTL_OK) {
        return rc;
    }
    if (resp->agent == NULL) {
        fprintf(stderr, "tidemarkctl: empty answer from the coordinator\n");
        tidemark__agent_response__free_unpacked(resp, NULL);
        return CTL_FAIL;
    }
    if (c->json) {
        json_agent(stdout, resp->agent);
        fputc('\n', stdout);
    } else if (strcmp(verb, "show") == 0) {
        show_text(resp->agent);
    } else if (strcmp(verb, "approve") == 0) {
        printf("approved %s (%s), state %s\n", resp->agent->id, resp->agent->hostname,
               tm_agent_state_name(resp->agent->state));
    } else {
        printf("removed %s (%s)\n", resp->agent->id, resp->agent->hostname);
    }
    tidemark__agent_response__free_unpacked(resp, NULL);
    return CTL_OK;
}

int ctl_agents(ctl *c, int argc, char **argv)
{
    if (argc < 2 || strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0) {
        agents_usage(argc < 2 ? stderr : stdout);
        return argc < 2 ? CTL_USAGE : CTL_OK;
    }
    const char *verb = argv[1];
    if (strcmp(verb, "list") == 0) {
        return agents_list(c, argc - 1, argv + 1);
    }
    if (strcmp(verb, "show") == 0) {
        return agents_one(c, verb, "Admin.ShowAgent", argc - 1, argv + 1);
    }
    if (strcmp(verb, "approve") == 0) {
        return agents_one(c, verb, "Admin.ApproveAgent", argc - 1, argv + 1);
    }
    if (strcmp(verb, "remove") == 0) {
        return agents_one(c, verb, "Admin.RemoveAgent", argc - 1, argv + 1);
    }
    fprintf(stderr, "tidemarkctl: unknown agents command '%s'\n", verb);
    agents_usage(stderr);
    return CTL_USAGE;
}
