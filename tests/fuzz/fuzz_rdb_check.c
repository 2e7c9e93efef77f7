/*
 * fuzz_rdb_check.c - arbitrary bytes into the streaming RDB validator. It must
 * reject garbage cleanly: no crash, no overread, no unbounded allocation, no
 * hang (a huge declared length ends at the input's end, reported as
 * truncated). The input is fed in pieces cut by its first byte, so the parser
 * thread sees every split point across the hand-over.
 */
#include <stddef.h>
#include <stdint.h>

#include "agent/engines/redis/rdb_check.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    tm_rdb_check *c = NULL;
    tm_err err = {0};
    if (tm_rdb_check_new(&c, &err) != 0) {
        return 0;
    }
    size_t step = size > 0 ? (size_t)data[0] % 97 + 1 : 1;
    int rc = 0;
    for (size_t off = 0; off < size && rc == 0; off += step) {
        size_t n = size - off < step ? size - off : step;
        rc = tm_rdb_check_feed(c, data + off, n, &err);
    }
    if (rc == 0) {
        rc = tm_rdb_check_finish(c, &err);
    }
    if (rc == 0) {
        /* A whole RDB: the counts must be readable. */
        for (size_t i = 0; i < tm_rdb_check_ndbs(c); i++) {
            volatile uint64_t k = tm_rdb_check_db(c, i)->keys;
            (void)k;
        }
    }
    tm_rdb_check_free(c);
    return 0;
}
