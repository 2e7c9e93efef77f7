/*
 * fuzz_sqlite_segment.c - arbitrary bytes into the SQLite log object
 * decoder and the object name parser (both read what a repository holds,
 * so anyone with its key could have written it). The decoder must refuse
 * garbage cleanly and never read past the input; what it accepts must
 * encode back to the same bytes. A name that parses formats back to itself.
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
    if (tm_sqlite_seg_decode(data, size, &s, &err) == 0) {
        uint8_t *b = NULL;
        size_t len = 0;
        if (tm_sqlite_seg_encode(&s, &b, &len, &err) != 0 || len != size ||
            memcmp(b, data, size) != 0) {
            abort();
        }
        free(b);
        tm_sqlite_seg_free(&s);
    }
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
    }
    return 0;
}
