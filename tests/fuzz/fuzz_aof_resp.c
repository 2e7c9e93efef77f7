/*
 * fuzz_aof_resp.c - arbitrary bytes into the AOF RESP boundary scanner, fed
 * in pieces cut by the first byte. Whatever the split, the units must be the
 * same as in one piece, each unit must start where the previous one ended,
 * and the scanner's complete offset must never pass what was fed.
 */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>

#include "agent/engines/redis/aof_resp.h"

typedef struct seen {
    uint64_t last_end;
    uint64_t sum; /* of the ends, to compare two runs */
    size_t n;
} seen;

static int on_unit(void *arg, const tm_aof_unit *u, tm_err *err)
{
    (void)err;
    seen *s = arg;
    if (u->start != s->last_end || u->end <= u->start) {
        abort();
    }
    s->last_end = u->end;
    s->sum += u->end;
    s->n++;
    return 0;
}

static int scan(const uint8_t *data, size_t size, size_t step, seen *s, uint64_t *fail_at)
{
    tm_aof_scan *sc = NULL;
    tm_err err = {0};
    if (tm_aof_scan_new(&sc, 0, &err) != 0) {
        abort();
    }
    int rc = 0;
    for (size_t off = 0; off < size && rc == 0; off += step) {
        size_t n = size - off < step ? size - off : step;
        rc = tm_aof_scan_feed(sc, data + off, n, on_unit, s, &err);
        if (tm_aof_scan_complete(sc) > off + n || tm_aof_scan_offset(sc) > off + n) {
            abort();
        }
    }
    *fail_at = rc != 0 ? tm_aof_scan_offset(sc) : UINT64_MAX;
    tm_aof_scan_free(sc);
    return rc;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    size_t step = size > 0 ? (size_t)data[0] % 31 + 1 : 1;
    seen a = {0}, b = {0};
    uint64_t fa, fb;
    int ra = scan(data, size, size > 0 ? size : 1, &a, &fa);
    int rb = scan(data, size, step, &b, &fb);
    if (ra != rb || fa != fb || a.n != b.n || a.sum != b.sum) {
        abort();
    }
    return 0;
}
