/*
 * config.h - agent.yaml `targets[].turso:` (kind: turso): how the agent
 * reaches one Turso Cloud database, or every database of a group, over the
 * network. The host that runs the agent needs no access to the database's
 * host: everything goes through the Platform API and the database's own
 * HTTP endpoint.
 *
 *   targets:
 *     - name: app
 *       kind: turso
 *       turso:
 *         organization: acme
 *         database: app-db          # or group: tenants (every database in it)
 *         api_token_file: /etc/tidemark/turso.token   # or api_token: env:NAME
 *         api_url: https://api.turso.tech
 *         db_url: "https://{hostname}"   # {hostname} {name} {organization}
 *         db_token_file: ...        # optional: a group/database token; else minted
 *         timeout: 60s
 *         retries: 5
 *         provider_pitr: 30d        # optional: overrides the plan's window
 *         check_interval: 5m        # how often the databases and the window are checked
 *
 * Secrets are read once at load and never logged.
 */
#ifndef TM_TURSO_CONFIG_H
#define TM_TURSO_CONFIG_H

#include <stdint.h>

#include "common/config.h"

typedef struct tm_turso_target_conf {
    char *organization;         /* the organization slug (required) */
    char *database;             /* one database; exclusive with group */
    char *group;                /* every database of this group, new ones included */
    char *api_token;            /* resolved secret (api_token: env:X | api_token_file) */
    char *api_url;              /* default https://api.turso.tech (no trailing /) */
    char *db_url;               /* template of a database's endpoint; default https://{hostname} */
    char *db_token;             /* resolved secret; NULL = mint a short-lived token per database */
    uint32_t timeout_ms;        /* one HTTP request; default 60s */
    uint32_t retries;           /* attempts after the first on 429/5xx/connect errors; default 5 */
    int64_t provider_pitr_s;    /* 0 = from the organization's plan */
    uint32_t check_interval_ms; /* how often status asks the API; default 5m */
} tm_turso_target_conf;

/* The turso: block of a kind: turso target; NULL when t is not one. */
const tm_turso_target_conf *tm_turso_target(const tm_target_conf *t);

extern const tm_target_schema tm_turso_target_schema;

#endif
