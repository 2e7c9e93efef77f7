/*
 * result_kv.c - task result figures and manifest engine facts (result_kv.h).
 */
#include "agent/result_kv.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/err.h"

/* key and printf(fmt, ap), both malloc'd; TM_ENOMEM with neither. */
static int kv_make(const char *key, const char *fmt, va_list ap, char **k, char **v)
{
    *k = strdup(key);
    if (*k == NULL || vasprintf(v, fmt, ap) < 0) {
        free(*k);
        *k = *v = NULL;
        return TM_ENOMEM;
    }
    return TM_OK;
}

int tm_result_extra(Tidemark__TaskResult *r, const char *key, const char *fmt, ...)
{
    Tidemark__KeyValue *e = malloc(sizeof(*e));
    Tidemark__KeyValue **nv = e != NULL ? realloc(r->extra, (r->n_extra + 1) * sizeof(*nv)) : NULL;
    if (nv == NULL) {
        free(e);
        return TM_ENOMEM;
    }
    r->extra = nv;
    tidemark__key_value__init(e);
    va_list ap;
    va_start(ap, fmt);
    int rc = kv_make(key, fmt, ap, &e->key, &e->value);
    va_end(ap);
    if (rc != TM_OK) {
        free(e);
        return rc;
    }
    r->extra[r->n_extra++] = e;
    return TM_OK;
}

int tm_info_add(tm_info *k, const char *key, const char *fmt, ...)
{
    if (k->n == k->cap) {
        size_t cap = k->cap ? k->cap * 2 : 16;
        Tidemark__Manifest__EngineInfoEntry **np = realloc(k->p, cap * sizeof(*np));
        if (np == NULL) {
            return TM_ENOMEM;
        }
        k->p = np;
        k->cap = cap;
    }
    Tidemark__Manifest__EngineInfoEntry *e = malloc(sizeof(*e));
    if (e == NULL) {
        return TM_ENOMEM;
    }
    tidemark__manifest__engine_info_entry__init(e);
    va_list ap;
    va_start(ap, fmt);
    int rc = kv_make(key, fmt, ap, &e->key, &e->value);
    va_end(ap);
    if (rc != TM_OK) {
        free(e);
        return rc;
    }
    k->p[k->n++] = e;
    return TM_OK;
}

const char *tm_info_get(const Tidemark__Manifest *m, const char *key)
{
    for (size_t i = 0; m != NULL && i < m->n_engine_info; i++) {
        if (m->engine_info[i]->key != NULL && strcmp(m->engine_info[i]->key, key) == 0) {
            return m->engine_info[i]->value;
        }
    }
    return NULL;
}

void tm_info_attach(tm_info *k, Tidemark__Manifest *m)
{
    m->engine_info = k->p;
    m->n_engine_info = k->n;
}

void tm_info_detach(Tidemark__Manifest *m)
{
    m->engine_info = NULL;
    m->n_engine_info = 0;
}

void tm_info_free(tm_info *k)
{
    for (size_t i = 0; i < k->n; i++) {
        free(k->p[i]->key);
        free(k->p[i]->value);
        free(k->p[i]);
    }
    free(k->p);
    k->p = NULL;
    k->n = k->cap = 0;
}
