/*
 * wal_name.c - WAL file name parsing, ordering and segment math (wal_name.h).
 */
#include "agent/engines/postgres/wal_name.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* n upper-case hex digits (PostgreSQL writes %08X); lower case is refused so
 * one file never has two repository names. */
static int hex_field(const char *s, size_t n, uint32_t *out)
{
    uint32_t v = 0;
    for (size_t i = 0; i < n; i++) {
        char c = s[i];
        uint32_t d;
        if (c >= '0' && c <= '9') {
            d = (uint32_t)(c - '0');
        } else if (c >= 'A' && c <= 'F') {
            d = (uint32_t)(c - 'A' + 10);
        } else {
            return -1;
        }
        v = v << 4 | d;
    }
    *out = v;
    return 0;
}

int tm_wal_name_parse(const char *s, tm_wal_name *out)
{
    memset(out, 0, sizeof(*out));
    size_t len = s != NULL ? strlen(s) : 0;
    if (len == 0 || len >= TM_WAL_NAME_MAX || hex_field(s, 8, &out->tli) != 0 || out->tli == 0) {
        return -1;
    }
    if (len == 16 && strcmp(s + 8, ".history") == 0) {
        out->kind = TM_WAL_HISTORY;
    } else if (len < 24 || hex_field(s + 8, 8, &out->log) != 0 ||
               hex_field(s + 16, 8, &out->seg) != 0) {
        return -1;
    } else if (len == 24) {
        out->kind = TM_WAL_SEGMENT;
    } else if (len == 32 && strcmp(s + 24, ".partial") == 0) {
        out->kind = TM_WAL_PARTIAL;
    } else if (len == 40 && s[24] == '.' && strcmp(s + 33, ".backup") == 0 &&
               hex_field(s + 25, 8, &out->offset) == 0) {
        out->kind = TM_WAL_BACKUP;
    } else {
        return -1;
    }
    memcpy(out->name, s, len + 1);
    return 0;
}

void tm_wal_tli_hex(uint32_t tli, char out[9])
{
    snprintf(out, 9, "%08X", tli);
}

int tm_wal_valid_seg_size(uint64_t seg_size)
{
    return seg_size >= ((uint64_t)1 << 20) && seg_size <= ((uint64_t)1 << 30) &&
           (seg_size & (seg_size - 1)) == 0;
}

static uint64_t segs_per_log(uint64_t seg_size)
{
    return ((uint64_t)1 << 32) / seg_size;
}

uint64_t tm_wal_segno(const tm_wal_name *n, uint64_t seg_size)
{
    return (uint64_t)n->log * segs_per_log(seg_size) + n->seg;
}

void tm_wal_seg_name(uint32_t tli, uint64_t segno, uint64_t seg_size, char out[25])
{
    uint64_t per = segs_per_log(seg_size);
    snprintf(out, 25, "%08X%08X%08X", tli, (uint32_t)(segno / per), (uint32_t)(segno % per));
}

int tm_wal_next(const tm_wal_name *n, uint64_t seg_size, char out[25])
{
    if (n->kind == TM_WAL_HISTORY) {
        return -1;
    }
    tm_wal_seg_name(n->tli, tm_wal_segno(n, seg_size) + 1, seg_size, out);
    return 0;
}

static int cmp_u32(uint32_t a, uint32_t b)
{
    return a < b ? -1 : a > b;
}

int tm_wal_cmp(const void *a, const void *b)
{
    const tm_wal_name *x = a, *y = b;
    int c = cmp_u32(x->tli, y->tli);
    if (c == 0 && (x->kind == TM_WAL_HISTORY) != (y->kind == TM_WAL_HISTORY)) {
        return x->kind == TM_WAL_HISTORY ? -1 : 1;
    }
    if (c == 0) {
        c = cmp_u32(x->log, y->log);
    }
    if (c == 0) {
        c = cmp_u32(x->seg, y->seg);
    }
    if (c == 0) {
        c = cmp_u32((uint32_t)x->kind, (uint32_t)y->kind);
    }
    if (c == 0) {
        c = cmp_u32(x->offset, y->offset);
    }
    return c;
}

int tm_wal_cmp_archive(const void *a, const void *b)
{
    const tm_wal_name *x = a, *y = b;
    if ((x->kind == TM_WAL_HISTORY) != (y->kind == TM_WAL_HISTORY)) {
        return x->kind == TM_WAL_HISTORY ? -1 : 1;
    }
    return strcmp(x->name, y->name);
}

static int cmp_u64(const void *a, const void *b)
{
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return x < y ? -1 : x > y;
}

size_t tm_wal_ranges(uint64_t *segnos, size_t n, tm_wal_range *ranges)
{
    if (n == 0) {
        return 0;
    }
    qsort(segnos, n, sizeof(*segnos), cmp_u64);
    size_t nr = 0;
    ranges[0].first = ranges[0].last = segnos[0];
    for (size_t i = 1; i < n; i++) {
        if (segnos[i] == ranges[nr].last) {
            continue; /* duplicate */
        }
        if (segnos[i] == ranges[nr].last + 1) {
            ranges[nr].last = segnos[i];
        } else {
            nr++;
            ranges[nr].first = ranges[nr].last = segnos[i];
        }
    }
    return nr + 1;
}
