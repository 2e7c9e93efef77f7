/*
 * segment.c - the SQLite shipper's log object (see segment.h).
 */
#include "agent/engines/sqlite/segment.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static void put32(uint8_t *p, uint32_t v)
{
    p[0] = (uint8_t)(v >> 24);
    p[1] = (uint8_t)(v >> 16);
    p[2] = (uint8_t)(v >> 8);
    p[3] = (uint8_t)v;
}

static void put64(uint8_t *p, uint64_t v)
{
    put32(p, (uint32_t)(v >> 32));
    put32(p + 4, (uint32_t)v);
}

static uint32_t get32(const uint8_t *p)
{
    return ((uint32_t)p[0] << 24) | ((uint32_t)p[1] << 16) | ((uint32_t)p[2] << 8) | p[3];
}

static uint64_t get64(const uint8_t *p)
{
    return ((uint64_t)get32(p) << 32) | get32(p + 4);
}

int tm_sqlite_seg_encode(const tm_sqlite_seg *s, uint8_t **out, size_t *len, tm_err *err)
{
    size_t fs = tm_sqlite_wal_frame_size(&s->wal);
    size_t n = TM_SQLITE_SEG_HDR + (size_t)s->ncommits * 16 + (size_t)s->nframes * fs;
    uint8_t *b = malloc(n);
    if (b == NULL) {
        return tm_err_set(err, TM_ENOMEM, "segment of %u frames", s->nframes);
    }
    memcpy(b, TM_SQLITE_SEG_MAGIC, 8);
    put32(b + 8, s->wal.page_size);
    put32(b + 12, s->wal.salt1);
    put32(b + 16, s->wal.salt2);
    put32(b + 20, s->wal.ckpt_seq);
    put32(b + 24, s->s1);
    put32(b + 28, s->s2);
    put64(b + 32, s->first_frame);
    put32(b + 40, s->nframes);
    put32(b + 44, s->ncommits);
    put64(b + 48, s->prev_last);
    uint8_t *p = b + TM_SQLITE_SEG_HDR;
    for (uint32_t i = 0; i < s->ncommits; i++, p += 16) {
        put32(p, s->commits[i].frame);
        put32(p + 4, s->commits[i].db_size);
        put64(p + 8, (uint64_t)s->commits[i].time_ms);
    }
    memcpy(p, s->frames, (size_t)s->nframes * fs);
    *out = b;
    *len = n;
    return TM_OK;
}

int tm_sqlite_seg_decode(const uint8_t *buf, size_t len, tm_sqlite_seg *s, tm_err *err)
{
    memset(s, 0, sizeof(*s));
    if (len < TM_SQLITE_SEG_HDR || memcmp(buf, TM_SQLITE_SEG_MAGIC, 8) != 0) {
        return tm_err_set(err, TM_EPROTO, "not a SQLite WAL segment");
    }
    /* The header's magic only chooses the checksum's byte order: the
     * segment keeps it in the frames' checksum words it recorded (s1, s2),
     * so both orders are tried by the chain check below. */
    s->wal.version = TM_SQLITE_WAL_VERSION;
    s->wal.page_size = get32(buf + 8);
    s->wal.salt1 = get32(buf + 12);
    s->wal.salt2 = get32(buf + 16);
    s->wal.ckpt_seq = get32(buf + 20);
    s->s1 = get32(buf + 24);
    s->s2 = get32(buf + 28);
    s->first_frame = get64(buf + 32);
    s->nframes = get32(buf + 40);
    s->ncommits = get32(buf + 44);
    s->prev_last = get64(buf + 48);
    uint32_t ps = s->wal.page_size;
    if (ps < 512 || ps > 65536 || (ps & (ps - 1)) != 0) {
        return tm_err_set(err, TM_EPROTO, "segment: bad page size %u", ps);
    }
    size_t fs = TM_SQLITE_WAL_FRAME_HDR + (size_t)ps;
    if (s->first_frame == 0 || s->nframes == 0 || s->ncommits == 0 || s->ncommits > s->nframes ||
        (len - TM_SQLITE_SEG_HDR) / 16 < s->ncommits ||
        (len - TM_SQLITE_SEG_HDR - (size_t)s->ncommits * 16) / fs != s->nframes ||
        (len - TM_SQLITE_SEG_HDR - (size_t)s->ncommits * 16) % fs != 0) {
        return tm_err_set(err, TM_EPROTO, "segment: %zu bytes do not hold %u frames, %u commits",
                          len, s->nframes, s->ncommits);
    }
    s->commits = calloc(s->ncommits, sizeof(*s->commits));
    if (s->commits == NULL) {
        return tm_err_set(err, TM_ENOMEM, "segment commits");
    }
    const uint8_t *p = buf + TM_SQLITE_SEG_HDR;
    for (uint32_t i = 0; i < s->ncommits; i++, p += 16) {
        s->commits[i].frame = get32(p);
        s->commits[i].db_size = get32(p + 4);
        s->commits[i].time_ms = (int64_t)get64(p + 8);
        if (s->commits[i].frame == 0 || s->commits[i].frame > s->nframes ||
            (i > 0 && s->commits[i].frame <= s->commits[i - 1].frame)) {
            tm_sqlite_seg_free(s);
            return tm_err_set(err, TM_EPROTO, "segment: commit %u out of order", i);
        }
    }
    if (s->commits[s->ncommits - 1].frame != s->nframes) {
        tm_sqlite_seg_free(s);
        return tm_err_set(err, TM_EPROTO, "segment does not end at a commit");
    }
    s->frames = p;
    /* Recheck the chain with both byte orders: one must hold throughout. */
    for (int order = 0; order < 2; order++) {
        tm_sqlite_wal_hdr h = s->wal;
        h.magic = order ? TM_SQLITE_WAL_MAGIC_BE : TM_SQLITE_WAL_MAGIC_LE;
        tm_sqlite_wal w;
        tm_sqlite_wal_resume(&w, &h, s->first_frame - 1, s->s1, s->s2, 0, 0);
        if (s->first_frame == 1) {
            w.s1 = s->s1;
            w.s2 = s->s2;
        }
        uint32_t ci = 0, i = 0;
        tm_sqlite_wal_frame fr;
        for (; i < s->nframes; i++) {
            if (!tm_sqlite_wal_next(&w, s->frames + (size_t)i * fs, fs, &fr)) {
                break;
            }
            if (fr.db_size != 0) {
                if (ci >= s->ncommits || s->commits[ci].frame != i + 1 ||
                    s->commits[ci].db_size != fr.db_size) {
                    break;
                }
                ci++;
            }
        }
        if (i == s->nframes && ci == s->ncommits) {
            s->wal.magic = h.magic;
            return TM_OK;
        }
    }
    tm_sqlite_seg_free(s);
    return tm_err_set(err, TM_ECORRUPT, "segment: frames fail their checksum chain");
}

void tm_sqlite_seg_free(tm_sqlite_seg *s)
{
    free(s->commits);
    s->commits = NULL;
}

static const char *ext_of(char kind)
{
    return kind == 'w' ? "wal" : kind == 'd' ? "db" : "gen";
}

void tm_sqlite_name_fmt(char *out, size_t cap, const tm_sqlite_name *n)
{
    snprintf(out, cap,
             "%08" PRIx32 "/%08" PRIx32 ".%016" PRIx64 "-%016" PRIx64 ".%012" PRIx64 ".%s", n->gen,
             n->wal, n->first, n->last, (uint64_t)n->time_ms & (uint64_t)0xffffffffffff,
             ext_of(n->kind));
}

int tm_sqlite_name_parse(const char *rel, tm_sqlite_name *n)
{
    /* GGGGGGGG/WWWWWWWW.FFFFFFFFFFFFFFFF-LLLLLLLLLLLLLLLL.TTTTTTTTTTTT.ext */
    static const char shape[] = "hhhhhhhh/hhhhhhhh.hhhhhhhhhhhhhhhh-hhhhhhhhhhhhhhhh.hhhhhhhhhhhh.";
    size_t k = sizeof(shape) - 1, len = strlen(rel);
    if (len < k + 2 || len > k + 3) {
        return TM_EINVAL;
    }
    for (size_t i = 0; i < k; i++) {
        /* Fixed-width lower-case hex: one name per position. */
        if (shape[i] == 'h' ? strchr("0123456789abcdef", rel[i]) == NULL || rel[i] == '\0'
                            : rel[i] != shape[i]) {
            return TM_EINVAL;
        }
    }
    tm_sqlite_name x = {0};
    uint64_t t = 0;
    if (sscanf(rel, "%8" SCNx32 "/%8" SCNx32 ".%16" SCNx64 "-%16" SCNx64 ".%12" SCNx64, &x.gen,
               &x.wal, &x.first, &x.last, &t) != 5) {
        return TM_EINVAL;
    }
    x.time_ms = (int64_t)t;
    const char *ext = rel + k;
    if (strcmp(ext, "wal") == 0 && x.first > 0 && x.last >= x.first) {
        x.kind = 'w';
    } else if (strcmp(ext, "db") == 0 && x.wal == 0 && x.first == 0 && x.last == 0 && t == 0) {
        x.kind = 'd';
    } else if (strcmp(ext, "gen") == 0 && x.wal == 0 && x.first == 0) {
        x.kind = 'g';
    } else {
        return TM_EINVAL;
    }
    *n = x;
    return TM_OK;
}
