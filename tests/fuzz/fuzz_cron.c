/*
 * fuzz_cron.c - libFuzzer target for tm_cron_parse.
 *
 * Every input is parsed as a cron expression; when it parses, next/prev are
 * evaluated around a few times and must agree (prev(next(t)) <= t, and the
 * fire after prev is next), then the expression is freed: no crash, no leak,
 * no endless search.
 */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "coordinator/cron.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char buf[TM_CRON_EXPR_MAX + 2];
    size_t n = size < sizeof(buf) - 1 ? size : sizeof(buf) - 1;
    memcpy(buf, data, n);
    buf[n] = '\0';
    tm_err err;
    tm_cron *c = NULL;
    if (tm_cron_parse(buf, &c, &err) != 0) {
        if (c != NULL || err.msg[0] == '\0') {
            abort();
        }
        return 0;
    }
    static const int64_t starts[] = {0, 951782400 /* 2000-02-29 */, 1795000000, 4102444800};
    for (size_t i = 0; i < sizeof(starts) / sizeof(starts[0]); i++) {
        int64_t t = starts[i];
        int64_t nx = tm_cron_next(c, t);
        if (nx == TM_CRON_NEVER || nx <= t) {
            abort(); /* a parsed expression always fires again */
        }
        int64_t pv = tm_cron_prev(c, nx);
        if (pv != TM_CRON_NONE && (pv > t || tm_cron_next(c, pv) != nx)) {
            abort();
        }
    }
    tm_cron_free(c);
    return 0;
}
