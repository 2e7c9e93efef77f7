/*
 * fuzz_turso_json.c - arbitrary bytes into the Turso engine's JSON reader
 * (every Platform API and database answer goes through it). A parse either
 * fails with TM_EPROTO and no tree, or gives a tree whose every string
 * length is right and whose counts match its children.
 */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "agent/engines/turso/json.h"

static void walk(const tm_tj *j, int depth)
{
    if (depth > 70) {
        abort();
    }
    size_t n = 0;
    for (const tm_tj *c = j->child; c != NULL; c = c->next) {
        if ((j->type == TM_TJ_OBJ) != (c->key != NULL)) {
            abort();
        }
        walk(c, depth + 1);
        n++;
    }
    if (n != j->n || ((j->type == TM_TJ_STR || j->type == TM_TJ_NUM) && j->str == NULL)) {
        abort();
    }
    if (j->type == TM_TJ_NUM && strlen(j->str) != j->len) {
        abort();
    }
    (void)tm_tj_int(j, 0);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    tm_tj *j = NULL;
    tm_err err = {0};
    int rc = tm_tj_parse((const char *)data, size, &j, &err);
    if (rc == TM_OK) {
        walk(j, 0);
        tm_tj_free(j);
    } else if (j != NULL || rc != TM_EPROTO) {
        abort();
    }
    return 0;
}
