/*
 * fuzz_sqlite_segment.c - arbitrary bytes into the SQLite log object
 * decoder, the object name parser and the position parser (all read what a
 * repository holds, and anyone with write access to it could have written
 * it). The decoder must refuse garbage cleanly and never read past the
 * input; what it accepts must encode back to the same bytes. A name or a
 * position that parses formats back to itself.
 */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "agent/engines/sqlite/segment.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    tm_err err = {0};
    tm_sqlite_seg s;
    /* A copy of exactly size bytes, so reading past the end is caught. */
    uint8_t *in = malloc(size > 0 ? size : 1);
    if (in == NULL) {
        return 0;
    }
    memcpy(in, data, size);
    if (tm_sqlite_seg_decode(in, size, &s, &err) == 0) {
        uint8_t *b = NULL;
        size_t len = 0;
        if (tm_sqlite_seg_encode(&s, &b, &len, &err) != 0 || len != size ||
            memcmp(b, data, size) != 0) {
            abort();
        }
        free(b);
        tm_sqlite_seg_free(&s);
    } else if (err.msg[0] == '\0') {
        abort(); /* every refusal says why */
    }
    free(in);
    char name[TM_SQLITE_NAME_MAX + 8];
    if (size < sizeof(name)) {
        memcpy(name, data, size);
        name[size] = '\0';
        tm_sqlite_name n;
        if (tm_sqlite_name_parse(name, &n) == 0) {
            char back[TM_SQLITE_NAME_MAX];
            tm_sqlite_name_fmt(back, sizeof(back), &n);
            if (strcmp(back, name) != 0) {
                abort();
            }
        }
        uint32_t w;
        uint64_t f;
        if (tm_sqlite_pos_parse(name, &w, &f) == 0 && name[0] != '\0') {
            char back[TM_SQLITE_POS_LEN + 1];
            tm_sqlite_pos_fmt(back, sizeof(back), w, f);
            if (strcmp(back, name) != 0) {
                abort();
            }
        }
    }
    return 0;
}
