/*
 * targets.c - configured targets -> concrete targets (targets.h).
 */
#include "agent/targets.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "agent/engine.h"
#include "common/config/validate.h"
#include "common/log.h"

static void target_free(tm_target_conf *t)
{
    free(t->name);
    free(t->kind);
    free(t->engine_version);
    if (t->schema != NULL && t->engine_conf != NULL) {
        t->schema->free_conf(t->engine_conf);
    }
    memset(t, 0, sizeof(*t));
}

static int has_name(const tm_target_conf *v, size_t n, const char *name)
{
    for (size_t i = 0; i < n; i++) {
        if (strcmp(v[i].name, name) == 0) {
            return 1;
        }
    }
    return 0;
}

/* Append t (taken: moved or freed) to *v unless its name is there. */
static int append(tm_target_conf **v, size_t *n, size_t *cap, tm_target_conf *t, const char *from,
                  int quiet)
{
    if (has_name(*v, *n, t->name)) {
        if (!quiet) {
            tm_warn("agent", "event=target_duplicate target=%s from=%s", t->name, from);
        }
        target_free(t);
        return TM_OK;
    }
    if (*n == *cap) {
        size_t nc = *cap ? *cap * 2 : 16;
        tm_target_conf *nv = realloc(*v, nc * sizeof(*nv));
        if (nv == NULL) {
            target_free(t);
            return TM_ENOMEM;
        }
        *v = nv;
        *cap = nc;
    }
    (*v)[(*n)++] = *t;
    memset(t, 0, sizeof(*t));
    return TM_OK;
}

/* quiet: the periodic rescan, which says nothing unless the set changed. */
static int expand(tm_agent_conf *conf, size_t *patterns, int quiet, tm_err *err)
{
    tm_target_conf *v = NULL;
    size_t n = 0, cap = 0, npat = 0;
    int rc = TM_OK;
    for (size_t i = 0; i < conf->n_targets && rc == TM_OK; i++) {
        tm_target_conf *t = &conf->targets[i];
        const tm_engine *e = tm_engine_of(t);
        tm_target_conf *m = NULL;
        size_t nm = 0;
        int r = e != NULL && e->expand != NULL ? e->expand(t, &m, &nm, err) : 0;
        if (r < 0) {
            rc = tm_err_prefix(err, "target %s", t->name);
            break;
        }
        if (r == 0) {
            rc = append(&v, &n, &cap, t, t->name, quiet);
            continue;
        }
        npat++;
        if (!quiet) {
            tm_info("agent", "event=targets_expanded pattern=%s matches=%zu", t->name, nm);
        }
        for (size_t k = 0; k < nm; k++) {
            if (rc == TM_OK) {
                rc = append(&v, &n, &cap, &m[k], t->name, quiet);
            } else {
                target_free(&m[k]);
            }
        }
        free(m);
    }
    if (rc != TM_OK) {
        for (size_t i = 0; i < n; i++) {
            target_free(&v[i]);
        }
        free(v);
        return rc == TM_ENOMEM ? tm_err_set(err, TM_ENOMEM, "out of memory") : rc;
    }
    /* What was moved is zeroed; the patterns themselves go. */
    for (size_t i = 0; i < conf->n_targets; i++) {
        if (conf->targets[i].name != NULL) {
            target_free(&conf->targets[i]);
        }
    }
    free(conf->targets);
    conf->targets = v;
    conf->n_targets = n;
    if (patterns != NULL) {
        *patterns = npat;
    }
    return TM_OK;
}

int tm_targets_expand(tm_agent_conf *conf, size_t *patterns, tm_err *err)
{
    return expand(conf, patterns, 0, err);
}

int tm_targets_changed(const char *config_path, const tm_agent_conf *conf, char *what, size_t cap)
{
    tm_agent_conf *now = NULL;
    tm_err err = {0};
    if (tm_agent_conf_load(config_path, &now, &err) != TM_OK ||
        expand(now, NULL, 1, &err) != TM_OK) {
        tm_agent_conf_free(now);
        return 0;
    }
    int changed = 0;
    what[0] = '\0';
    for (size_t i = 0; i < now->n_targets && !changed; i++) {
        if (!has_name(conf->targets, conf->n_targets, now->targets[i].name)) {
            changed = 1;
            snprintf(what, cap, "new target %s", now->targets[i].name);
        }
    }
    for (size_t i = 0; i < conf->n_targets && !changed; i++) {
        if (!has_name(now->targets, now->n_targets, conf->targets[i].name)) {
            changed = 1;
            snprintf(what, cap, "target %s is gone", conf->targets[i].name);
        }
    }
    tm_agent_conf_free(now);
    return changed;
}
