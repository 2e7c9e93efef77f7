/*
 * agent_host.c - agent.yaml state_dir:, restore_roots:, hostname:, labels:, log:
 * (the host the agent runs on).
 */
#include "common/config/internal.h"

#include <inttypes.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

int tm_cfg_agent_state_dir(tm_cv *v, const struct raw_agent *r, tm_agent_conf *c)
{
    return tm_cv_path(v, "state_dir", r->state_dir ? r->state_dir : "state", &c->state_dir);
}

/* Where restore and drill tasks may write (agent/restore_root.c): absolute
 * or relative to the config, no `.`/`..` component; default the drill dir. */
int tm_cfg_agent_restore_roots(tm_cv *v, const struct raw_agent *r, tm_agent_conf *c)
{
    size_t n = r->restore_roots_count ? r->restore_roots_count : 1;
    c->restore_roots = calloc(n, sizeof(*c->restore_roots));
    if (c->restore_roots == NULL) {
        return tm_cv_oom(v);
    }
    if (r->restore_roots_count == 0) {
        if (asprintf(&c->restore_roots[0], "%s/drills", c->state_dir) < 0) {
            c->restore_roots[0] = NULL;
            return tm_cv_oom(v);
        }
        c->n_restore_roots = 1;
        return 0;
    }
    for (uint32_t i = 0; i < r->restore_roots_count; i++) {
        char p[48];
        snprintf(p, sizeof(p), "restore_roots[%" PRIu32 "]", i);
        int rc = tm_cv_path(v, p, r->restore_roots[i], &c->restore_roots[i]);
        if (rc != 0) {
            return rc;
        }
        c->n_restore_roots = i + 1;
        const char *s = c->restore_roots[i];
        if (strcmp(s, "/") == 0 || strstr(s, "/../") || strstr(s, "/./") || strstr(s, "//") ||
            (strlen(s) >= 3 && strcmp(s + strlen(s) - 3, "/..") == 0) ||
            (strlen(s) >= 2 && strcmp(s + strlen(s) - 2, "/.") == 0)) {
            return tm_ydoc_err(v->doc, v->err, p,
                               "'%.200s' is not a directory a restore may write under, expected "
                               "a directory path without '.' or '..' components (not /)",
                               s);
        }
    }
    return 0;
}

int tm_cfg_agent_hostname(tm_cv *v, const struct raw_agent *r, tm_agent_conf *c)
{
    if (r->hostname == NULL) {
        char h[256];
        if (gethostname(h, sizeof(h)) != 0) {
            snprintf(h, sizeof(h), "localhost");
        }
        h[sizeof(h) - 1] = '\0';
        return tm_cv_dup(v, h, &c->hostname);
    }
    size_t n = strlen(r->hostname);
    bool ok = n >= 1 && n <= 253;
    for (size_t i = 0; ok && i < n; i++) {
        ok = r->hostname[i] > ' ' && r->hostname[i] != 0x7f;
    }
    if (!ok) {
        return tm_ydoc_err(v->doc, v->err, "hostname",
                           "not a host name, expected 1 to 253 characters without spaces");
    }
    return tm_cv_dup(v, r->hostname, &c->hostname);
}

int tm_cfg_agent_labels(tm_cv *v, const struct raw_agent *r, tm_agent_conf *c)
{
    (void)r;
    return tm_cv_label_map(v, "labels", &c->labels, &c->n_labels);
}

int tm_cfg_agent_log(tm_cv *v, const struct raw_agent *r, tm_agent_conf *c)
{
    return tm_cv_log_level(v, "log.level", r->log.level, &c->log_level);
}
