/*
 * wal_name.h - PostgreSQL WAL file names: parsing, ordering, timeline and
 * segment-number math, contiguous ranges (gap detection). Pure functions, no
 * I/O, so they are unit tested on their own.
 *
 * Names PostgreSQL archives (and asks back for):
 *   000000010000000A000000FF            segment: timeline, log id, segment in log id
 *   000000010000000A000000FF.partial    last segment of a timeline, at promotion
 *   000000010000000A000000FF.00000028.backup   backup history file (offset)
 *   00000002.history                    timeline history file
 * All hex is upper case, as PostgreSQL writes it. Every name starts with the
 * timeline it belongs to (a .history file names the timeline it creates).
 *
 * Segment numbers: segno = log * (2^32 / segment size) + seg. With 16 MiB
 * segments a log id holds 256 segments (seg 00..FF); the successor of
 * 0000000100000000000000FF is 000000010000000100000000.
 */
#ifndef TM_PG_WAL_NAME_H
#define TM_PG_WAL_NAME_H

#include <stddef.h>
#include <stdint.h>

#define TM_WAL_SEG_SIZE_DEFAULT ((uint64_t)16 << 20)
#define TM_WAL_NAME_MAX 64

typedef enum {
    TM_WAL_HISTORY = 0, /* sorts first in its timeline: recovery needs it first */
    TM_WAL_SEGMENT,
    TM_WAL_BACKUP,
    TM_WAL_PARTIAL,
} tm_wal_kind;

typedef struct tm_wal_name {
    tm_wal_kind kind;
    uint32_t tli;
    uint32_t log;    /* 0 for history files */
    uint32_t seg;    /* 0 for history files */
    uint32_t offset; /* .backup files: start offset in the segment */
    char name[TM_WAL_NAME_MAX];
} tm_wal_name;

/* Parse a bare file name (no directory). 0, or -1 when it is not a WAL file
 * name PostgreSQL archives. Timeline 0 is refused (PostgreSQL starts at 1). */
int tm_wal_name_parse(const char *s, tm_wal_name *out);
/* "0000000A" for timeline 10 (the repository directory of a timeline). */
void tm_wal_tli_hex(uint32_t tli, char out[9]);

/* 1 when seg_size is a segment size PostgreSQL allows: a power of two from
 * 1 MiB to 1 GiB. */
int tm_wal_valid_seg_size(uint64_t seg_size);
/* Segment number of a segment-type name (segment, partial, backup). */
uint64_t tm_wal_segno(const tm_wal_name *n, uint64_t seg_size);
/* Segment file name of (tli, segno): 24 hex characters + NUL. */
void tm_wal_seg_name(uint32_t tli, uint64_t segno, uint64_t seg_size, char out[25]);
/* The name of the segment after n (same timeline); -1 if n is not a
 * segment. */
int tm_wal_next(const tm_wal_name *n, uint64_t seg_size, char out[25]);

/* Order: timeline, then history before everything else of the timeline,
 * then log id, segment, kind, offset. For qsort over tm_wal_name. */
int tm_wal_cmp(const void *a, const void *b);
/* PostgreSQL's archiving order: history files first (a new timeline must be
 * known before its segments), then by name. For qsort over tm_wal_name. */
int tm_wal_cmp_archive(const void *a, const void *b);

/* A run of consecutive segment numbers. */
typedef struct tm_wal_range {
    uint64_t first;
    uint64_t last;
} tm_wal_range;

/* Sort and de-duplicate segnos in place, then cut them into contiguous runs:
 * ranges[] (caller's array of at least n entries) gets the runs, returned
 * count; a gap is whatever lies between two runs. */
size_t tm_wal_ranges(uint64_t *segnos, size_t n, tm_wal_range *ranges);

#endif
