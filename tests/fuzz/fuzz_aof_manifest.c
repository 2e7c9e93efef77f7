/*
 * fuzz_aof_manifest.c - arbitrary bytes into the multi-part AOF manifest
 * parser. It must reject garbage cleanly (no crash, no overread), and what
 * it accepts must survive a round trip: formatted back and parsed again, the
 * same files, seqs and types, in the same order, and the same text.
 */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "agent/engines/redis/aof_manifest.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    tm_aof_manifest *m = NULL;
    tm_err err = {0};
    if (tm_aof_manifest_parse((const char *)data, size, &m, &err) != 0) {
        return 0;
    }
    char *text = NULL;
    size_t len = 0;
    if (tm_aof_manifest_format(m, &text, &len, &err) != 0) {
        abort();
    }
    tm_aof_manifest *m2 = NULL;
    if (tm_aof_manifest_parse(text, len, &m2, &err) != 0 ||
        tm_aof_manifest_count(m2) != tm_aof_manifest_count(m)) {
        abort();
    }
    for (size_t i = 0; i < tm_aof_manifest_count(m); i++) {
        const tm_aof_file *a = tm_aof_manifest_file(m, i), *b = tm_aof_manifest_file(m2, i);
        if (strcmp(a->name, b->name) != 0 || a->seq != b->seq || a->type != b->type ||
            !tm_aof_name_ok(a->name, strlen(a->name))) {
            abort();
        }
    }
    char *text2 = NULL;
    size_t len2 = 0;
    if (tm_aof_manifest_format(m2, &text2, &len2, &err) != 0 || len2 != len ||
        memcmp(text, text2, len) != 0) {
        abort();
    }
    free(text);
    free(text2);
    tm_aof_manifest_free(m);
    tm_aof_manifest_free(m2);
    return 0;
}
