/*
 * result_kv.h - the key/value figures an engine hands back: the task
 * result's `extra` list and a backup manifest's `engine_info` map. Every
 * engine fills both; here once, so a new engine does not write its own.
 */
#ifndef TM_AGENT_RESULT_KV_H
#define TM_AGENT_RESULT_KV_H

#include <stddef.h>

#include "repository.pb-c.h"
#include "tidemark.pb-c.h"

/* Append key = printf(fmt, ...) to r->extra (freed with the result).
 * TM_ENOMEM when it could not (nothing appended). */
int tm_result_extra(Tidemark__TaskResult *r, const char *key, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* A manifest's engine_info under construction: the entries own their
 * strings; tm_info_attach lends them to a manifest for as long as it is
 * sealed, tm_info_detach takes them back before tm_info_free. */
typedef struct tm_info {
    Tidemark__Manifest__EngineInfoEntry **p;
    size_t n, cap;
} tm_info;

int tm_info_add(tm_info *k, const char *key, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
/* The value of key in a manifest's engine_info, or NULL. */
const char *tm_info_get(const Tidemark__Manifest *m, const char *key);
void tm_info_attach(tm_info *k, Tidemark__Manifest *m);
void tm_info_detach(Tidemark__Manifest *m);
void tm_info_free(tm_info *k);

#endif
