/*
 * fuzz_sqlite_wal.c - arbitrary bytes into the SQLite WAL reader. It must
 * reject a bad header cleanly and never read past the input; what it
 * accepts must be self-consistent: the last commit is among the valid
 * frames, and a resume from any valid frame's stored checksum reaches the
 * same end with the same checksum as the whole scan.
 */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "agent/engines/sqlite/wal.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    tm_sqlite_wal w;
    tm_err err = {0};
    if (tm_sqlite_wal_scan(data, size, &w, &err) != 0) {
        return 0;
    }
    if (w.commit > w.frames || (w.frames > 0 && w.commit == 0 && w.db_size != 0)) {
        abort();
    }
    size_t fs = tm_sqlite_wal_frame_size(&w.h);
    if (tm_sqlite_wal_frame_offset(&w.h, w.frames + 1) > size) {
        abort();
    }
    /* Resume after the first valid frame: same end. */
    if (w.frames >= 1) {
        tm_sqlite_wal a;
        tm_sqlite_wal_begin(&a, &w.h);
        if (!tm_sqlite_wal_next(&a, data + TM_SQLITE_WAL_HDR, fs, NULL)) {
            abort();
        }
        tm_sqlite_wal r;
        tm_sqlite_wal_resume(&r, &w.h, a.frames, a.s1, a.s2, a.commit, a.db_size);
        for (uint64_t n = 2; n <= w.frames; n++) {
            if (!tm_sqlite_wal_next(&r, data + tm_sqlite_wal_frame_offset(&w.h, n), fs, NULL)) {
                abort();
            }
        }
        if (r.frames != w.frames || r.s1 != w.s1 || r.s2 != w.s2 || r.commit != w.commit) {
            abort();
        }
    }
    return 0;
}
