/*
 * aof_resp.h - the RESP boundary scanner for AOF streams: bytes in, in any
 * pieces, and a callback at the end of every complete unit. A unit is a
 * command ("*<argc>\r\n" then argc times "$<len>\r\n<len bytes>\r\n") or an
 * annotation line ("#...\r\n"; "#TS:<unix seconds>" carries a time). It
 * never allocates per unit and never buffers a value, so a 512 MB argument
 * costs nothing; anything that is not RESP as Redis writes it is an error
 * with its byte offset. Used by the tailer (ship only complete commands) and
 * the truncator (cut at a time, cut a torn tail).
 */
#ifndef TM_REDIS_AOF_RESP_H
#define TM_REDIS_AOF_RESP_H

#include <stddef.h>
#include <stdint.h>

#include "common/err.h"

typedef enum {
    TM_AOF_UNIT_COMMAND = 1,
    TM_AOF_UNIT_ANNOTATION = 2,
} tm_aof_unit_kind;

typedef struct tm_aof_unit {
    tm_aof_unit_kind kind;
    uint64_t start; /* offset of its first byte in the stream */
    uint64_t end;   /* offset just after it */
    int64_t ts;     /* annotation "#TS:<n>": n; otherwise -1 */
    int multi;      /* command MULTI (a transaction opens) */
    int exec;       /* command EXEC (it closes) */
} tm_aof_unit;

/* Called at the end of each complete unit: 0 goes on, a positive value stops
 * the feed (tm_aof_scan_feed returns it), a negative one is an error. */
typedef int (*tm_aof_unit_fn)(void *arg, const tm_aof_unit *u, tm_err *err);

typedef struct tm_aof_scan tm_aof_scan;

int tm_aof_scan_new(tm_aof_scan **out, uint64_t start_offset, tm_err *err);
void tm_aof_scan_free(tm_aof_scan *s);

/* Feed the next bytes. Returns 0 (all consumed), the callback's positive
 * value (stopped just after that unit: tm_aof_scan_offset says where), or
 * TM_EPROTO with the offset of the first bad byte. */
int tm_aof_scan_feed(tm_aof_scan *s, const void *buf, size_t len, tm_aof_unit_fn fn, void *arg,
                     tm_err *err);

/* Offset of the next byte the scanner expects. */
uint64_t tm_aof_scan_offset(const tm_aof_scan *s);
/* Offset just after the last complete unit (a safe cut point). */
uint64_t tm_aof_scan_complete(const tm_aof_scan *s);
/* 0 between units; TM_AOF_UNIT_* while inside one (a torn tail at EOF). */
int tm_aof_scan_partial(const tm_aof_scan *s);

#endif
