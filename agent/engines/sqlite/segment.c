/*
 * segment.c - the SQLite shipper's log object and object names (see
 * segment.h).
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
    size_t n =
        TM_SQLITE_SEG_HDR + (size_t)s->ncommits * TM_SQLITE_SEG_COMMIT + (size_t)s->nframes * fs;
    uint8_t *b = malloc(n);
    if (b == NULL) {
        return tm_err_set(err, TM_ENOMEM, "segment of %" PRIu32 " frames", s->nframes);
    }
    memcpy(b, TM_SQLITE_SEG_MAGIC, 8);
    put32(b + 8, s->chain);
    put32(b + 12, s->wal.magic);
    put32(b + 16, s->wal.page_size);
    put32(b + 20, s->wal.salt1);
    put32(b + 24, s->wal.salt2);
    put32(b + 28, s->wal.ckpt_seq);
    put32(b + 32, s->s1);
    put32(b + 36, s->s2);
    put64(b + 40, s->first_frame);
    put32(b + 48, s->nframes);
    put32(b + 52, s->ncommits);
    put64(b + 56, s->prev_last);
    uint8_t *p = b + TM_SQLITE_SEG_HDR;
    for (uint32_t i = 0; i < s->ncommits; i++, p += TM_SQLITE_SEG_COMMIT) {
        put32(p, s->commits[i].frame);
        put32(p + 4, s->commits[i].db_size);
        put64(p + 8, (uint64_t)s->commits[i].time_ms);
    }
    if (s->nframes > 0) {
        memcpy(p, s->frames, (size_t)s->nframes * fs);
    }
    *out = b;
    *len = n;
    return TM_OK;
}

static int header(const uint8_t *buf, size_t len, tm_sqlite_seg *s, tm_err *err)
{
    if (len < TM_SQLITE_SEG_HDR || memcmp(buf, TM_SQLITE_SEG_MAGIC, 8) != 0) {
        return tm_err_set(err, TM_EPROTO, "not a SQLite WAL segment (%zu bytes, no %s header)", len,
                          TM_SQLITE_SEG_MAGIC);
    }
    s->chain = get32(buf + 8);
    s->wal.magic = get32(buf + 12);
    s->wal.version = TM_SQLITE_WAL_VERSION;
    s->wal.page_size = get32(buf + 16);
    s->wal.salt1 = get32(buf + 20);
    s->wal.salt2 = get32(buf + 24);
    s->wal.ckpt_seq = get32(buf + 28);
    s->s1 = get32(buf + 32);
    s->s2 = get32(buf + 36);
    s->first_frame = get64(buf + 40);
    s->nframes = get32(buf + 48);
    s->ncommits = get32(buf + 52);
    s->prev_last = get64(buf + 56);
    uint32_t ps = s->wal.page_size;
    if (s->wal.magic != TM_SQLITE_WAL_MAGIC_LE && s->wal.magic != TM_SQLITE_WAL_MAGIC_BE) {
        return tm_err_set(err, TM_EPROTO, "segment: bad WAL magic 0x%08" PRIx32, s->wal.magic);
    }
    if (ps < 512 || ps > 65536 || (ps & (ps - 1)) != 0) {
        return tm_err_set(err, TM_EPROTO, "segment: bad page size %" PRIu32, ps);
    }
    if (s->first_frame == 0 || s->first_frame > UINT32_MAX || s->nframes == 0 || s->ncommits == 0 ||
        s->ncommits > s->nframes) {
        return tm_err_set(err, TM_EPROTO,
                          "segment: bad header (first frame %" PRIu64 ", %" PRIu32
                          " frames, %" PRIu32 " commits)",
                          s->first_frame, s->nframes, s->ncommits);
    }
    uint64_t rest = len - TM_SQLITE_SEG_HDR, ctab = (uint64_t)s->ncommits * TM_SQLITE_SEG_COMMIT;
    uint64_t fs = TM_SQLITE_WAL_FRAME_HDR + (uint64_t)ps;
    if (rest < ctab) {
        return tm_err_set(err, TM_EPROTO,
                          "segment truncated in its commit table (%zu bytes, %" PRIu32 " commits)",
                          len, s->ncommits);
    }
    uint64_t have = (rest - ctab) / fs;
    if (have < s->nframes || (rest - ctab) % fs != 0) {
        return tm_err_set(err, TM_EPROTO,
                          "segment truncated at frame %" PRIu64 " of %" PRIu32
                          " (WAL frame %" PRIu64 "): %zu bytes",
                          have + 1 > s->nframes ? (uint64_t)s->nframes : have + 1, s->nframes,
                          s->first_frame + (have + 1 > s->nframes ? s->nframes : have + 1) - 1,
                          len);
    }
    if (have > s->nframes) {
        return tm_err_set(err, TM_EPROTO, "segment: %zu bytes hold more than %" PRIu32 " frames",
                          len, s->nframes);
    }
    return TM_OK;
}

static int commit_table(const uint8_t *p, tm_sqlite_seg *s, tm_err *err)
{
    s->commits = calloc(s->ncommits, sizeof(*s->commits));
    if (s->commits == NULL) {
        return tm_err_set(err, TM_ENOMEM, "segment commits");
    }
    for (uint32_t i = 0; i < s->ncommits; i++, p += TM_SQLITE_SEG_COMMIT) {
        tm_sqlite_commit *c = &s->commits[i];
        c->frame = get32(p);
        c->db_size = get32(p + 4);
        c->time_ms = (int64_t)get64(p + 8);
        if (c->frame == 0 || c->frame > s->nframes || c->db_size == 0 ||
            (i > 0 && (c->frame <= c[-1].frame || c->time_ms < c[-1].time_ms))) {
            return tm_err_set(err, TM_EPROTO,
                              "segment: commit %" PRIu32 " (frame %" PRIu32
                              ") out of order or out of range",
                              i + 1, c->frame);
        }
    }
    if (s->commits[s->ncommits - 1].frame != s->nframes) {
        return tm_err_set(err, TM_EPROTO,
                          "segment: frames %" PRIu32 "..%" PRIu32
                          " follow the last commit (whole transactions only)",
                          s->commits[s->ncommits - 1].frame + 1, s->nframes);
    }
    return TM_OK;
}

/* Walk the frames: salts, checksum chain, and the commit table against the
 * frames' own database size fields. */
static int frames(tm_sqlite_seg *s, tm_err *err)
{
    size_t fs = tm_sqlite_wal_frame_size(&s->wal);
    tm_sqlite_wal w;
    tm_sqlite_wal_resume(&w, &s->wal, s->first_frame - 1, s->s1, s->s2, 0, 0);
    w.s1 = s->s1; /* also at frame 1: the header's checksum, as recorded */
    w.s2 = s->s2;
    uint32_t ci = 0;
    for (uint32_t i = 0; i < s->nframes; i++) {
        const uint8_t *f = s->frames + (size_t)i * fs;
        tm_sqlite_wal_frame fr;
        uint64_t wf = s->first_frame + i;
        if (!tm_sqlite_wal_next(&w, f, fs, &fr)) {
            const char *why = get32(f) == 0 ? "page number 0"
                              : get32(f + 8) != s->wal.salt1 || get32(f + 12) != s->wal.salt2
                                  ? "salts differ from the WAL's"
                                  : "checksum mismatch";
            return tm_err_set(err, TM_ECORRUPT,
                              "segment frame %" PRIu32 " of %" PRIu32 " (WAL frame %" PRIu64
                              "): %s",
                              i + 1, s->nframes, wf, why);
        }
        int listed = ci < s->ncommits && s->commits[ci].frame == i + 1;
        if ((fr.db_size != 0) != listed || (listed && s->commits[ci].db_size != fr.db_size)) {
            return tm_err_set(err, TM_ECORRUPT,
                              "segment frame %" PRIu32 " (WAL frame %" PRIu64
                              "): commit table disagrees with the frame (database size %" PRIu32
                              ")",
                              i + 1, wf, fr.db_size);
        }
        ci += listed;
    }
    return TM_OK;
}

int tm_sqlite_seg_decode(const uint8_t *buf, size_t len, tm_sqlite_seg *s, tm_err *err)
{
    memset(s, 0, sizeof(*s));
    int rc = header(buf, len, s, err);
    if (rc == TM_OK) {
        rc = commit_table(buf + TM_SQLITE_SEG_HDR, s, err);
    }
    if (rc == TM_OK) {
        s->frames = buf + TM_SQLITE_SEG_HDR + (size_t)s->ncommits * TM_SQLITE_SEG_COMMIT;
        rc = frames(s, err);
    }
    if (rc != TM_OK) {
        tm_sqlite_seg_free(s);
    }
    return rc;
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
             "%08" PRIx32 "/%08" PRIx32 ".%016" PRIx64 "-%016" PRIx64 ".%012" PRIx64 ".%s",
             n->chain, n->wal, n->first, n->last, (uint64_t)n->time_ms & (uint64_t)0xffffffffffff,
             ext_of(n->kind));
}

/* Fixed-width lower-case hex digits at s[0..n): one name per position. */
static int hex_run(const char *s, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        if (!((s[i] >= '0' && s[i] <= '9') || (s[i] >= 'a' && s[i] <= 'f'))) {
            return 0;
        }
    }
    return 1;
}

static uint64_t hex_val(const char *s, size_t n)
{
    uint64_t v = 0;
    for (size_t i = 0; i < n; i++) {
        v = (v << 4) | (uint64_t)(s[i] <= '9' ? s[i] - '0' : s[i] - 'a' + 10);
    }
    return v;
}

int tm_sqlite_name_parse(const char *rel, tm_sqlite_name *n)
{
    /* CCCCCCCC/WWWWWWWW.FFFFFFFFFFFFFFFF-LLLLLLLLLLLLLLLL.TTTTTTTTTTTT.ext */
    static const size_t k = 8 + 1 + 8 + 1 + 16 + 1 + 16 + 1 + 12 + 1;
    size_t len = strlen(rel);
    if (len < k + 2 || len > k + 3 || !hex_run(rel, 8) || rel[8] != '/' || !hex_run(rel + 9, 8) ||
        rel[17] != '.' || !hex_run(rel + 18, 16) || rel[34] != '-' || !hex_run(rel + 35, 16) ||
        rel[51] != '.' || !hex_run(rel + 52, 12) || rel[64] != '.') {
        return TM_EINVAL;
    }
    tm_sqlite_name x = {
        .chain = (uint32_t)hex_val(rel, 8),
        .wal = (uint32_t)hex_val(rel + 9, 8),
        .first = hex_val(rel + 18, 16),
        .last = hex_val(rel + 35, 16),
        .time_ms = (int64_t)hex_val(rel + 52, 12),
    };
    const char *ext = rel + k;
    if (strcmp(ext, "wal") == 0 && x.first > 0 && x.last >= x.first) {
        x.kind = 'w';
    } else if (strcmp(ext, "db") == 0 && x.wal == 0 && x.first == 0 && x.last == 0 &&
               x.time_ms == 0) {
        x.kind = 'd';
    } else if (strcmp(ext, "gen") == 0 && x.wal == 0 && x.first == 0) {
        x.kind = 'g';
    } else {
        return TM_EINVAL;
    }
    *n = x;
    return TM_OK;
}

void tm_sqlite_pos_fmt(char *out, size_t cap, uint32_t wal, uint64_t frame)
{
    snprintf(out, cap, "%08" PRIx32 ".%016" PRIx64, wal, frame);
}

int tm_sqlite_pos_parse(const char *pos, uint32_t *wal, uint64_t *frame)
{
    if (pos == NULL || pos[0] == '\0') {
        *wal = 0;
        *frame = 0;
        return TM_OK;
    }
    if (strlen(pos) != TM_SQLITE_POS_LEN || !hex_run(pos, 8) || pos[8] != '.' ||
        !hex_run(pos + 9, 16)) {
        return TM_EINVAL;
    }
    *wal = (uint32_t)hex_val(pos, 8);
    *frame = hex_val(pos + 9, 16);
    return TM_OK;
}
