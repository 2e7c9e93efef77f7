/*
 * fuzz_frame.c - arbitrary bytes into the TMK1 frame reader with a fixed key.
 * The reader must reject garbage cleanly: no crash, no overread, no unbounded
 * allocation. The input is fed in pieces cut by its first byte, so the
 * streaming state machine sees every split point.
 */
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "common/frame.h"

static int sink(void *arg, const uint8_t *buf, size_t len, tm_err *err)
{
    (void)err;
    size_t *total = arg;
    *total += len;
    if (len > 0) {
        volatile uint8_t x = buf[0] ^ buf[len - 1]; /* touch the edges */
        (void)x;
    }
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    uint8_t key[TM_KEY_LEN];
    memset(key, 0x42, sizeof(key));
    tm_frame_reader *r = NULL;
    size_t total = 0;
    tm_err err = {0};
    if (tm_frame_reader_new(&r, key, "fuzz/object", sink, &total, &err) != 0) {
        return 0;
    }
    size_t step = size > 0 ? (size_t)data[0] % 64 + 1 : 1;
    for (size_t off = 0; off < size; off += step) {
        size_t n = size - off < step ? size - off : step;
        if (tm_frame_reader_feed(r, data + off, n, &err) != 0) {
            break;
        }
    }
    tm_frame_reader_finish(r, &err);
    tm_frame_reader_free(r);
    return 0;
}
