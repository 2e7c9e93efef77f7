/*
 * rdb_check.c - the streaming RDB validator (see rdb_check.h).
 *
 * The RDB grammar is nested (a stream holds consumer groups holding PELs), so
 * it reads best as a recursive-descent pull parser. Chunks arrive by push
 * (feed), though, and a value can be far larger than any buffer we want to
 * hold. The parser therefore runs on its own thread and pulls from the chunk
 * the feeder hands over; the feeder waits until that chunk is consumed. One
 * chunk is in flight and never copied, and the grammar stays readable.
 *
 * Format reference: the RDB file format as Redis writes it (rdb.h type and
 * opcode numbers, length encodings, listpack/ziplist/intset layouts).
 */
#include "agent/engines/redis/rdb_check.h"

#include <inttypes.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ---- CRC-64 (Jones), slicing by 8 ---- */

#define CRC64_POLY_REFLECTED 0x95ac9329ac4bc9b5ULL

static uint64_t crc_table[8][256];
static pthread_once_t crc_once = PTHREAD_ONCE_INIT;

static void crc_init(void)
{
    for (unsigned i = 0; i < 256; i++) {
        uint64_t c = i;
        for (int k = 0; k < 8; k++) {
            c = (c & 1) ? (c >> 1) ^ CRC64_POLY_REFLECTED : c >> 1;
        }
        crc_table[0][i] = c;
    }
    for (unsigned i = 0; i < 256; i++) {
        for (int k = 1; k < 8; k++) {
            uint64_t prev = crc_table[k - 1][i];
            crc_table[k][i] = (prev >> 8) ^ crc_table[0][prev & 0xff];
        }
    }
}

uint64_t tm_redis_crc64(uint64_t crc, const void *buf, size_t len)
{
    pthread_once(&crc_once, crc_init);
    const uint8_t *p = buf;
    while (len >= 8) {
        uint64_t v = (uint64_t)p[0] | (uint64_t)p[1] << 8 | (uint64_t)p[2] << 16 |
                     (uint64_t)p[3] << 24 | (uint64_t)p[4] << 32 | (uint64_t)p[5] << 40 |
                     (uint64_t)p[6] << 48 | (uint64_t)p[7] << 56;
        crc ^= v;
        crc = crc_table[7][crc & 0xff] ^ crc_table[6][(crc >> 8) & 0xff] ^
              crc_table[5][(crc >> 16) & 0xff] ^ crc_table[4][(crc >> 24) & 0xff] ^
              crc_table[3][(crc >> 32) & 0xff] ^ crc_table[2][(crc >> 40) & 0xff] ^
              crc_table[1][(crc >> 48) & 0xff] ^ crc_table[0][crc >> 56];
        p += 8;
        len -= 8;
    }
    while (len-- > 0) {
        crc = crc_table[0][(crc ^ *p++) & 0xff] ^ (crc >> 8);
    }
    return crc;
}

/* ---- RDB numbers (rdb.h) ---- */

enum {
    T_STRING = 0,
    T_LIST = 1,
    T_SET = 2,
    T_ZSET = 3,
    T_HASH = 4,
    T_ZSET_2 = 5,
    T_MODULE_PRE_GA = 6,
    T_MODULE_2 = 7,
    T_HASH_ZIPMAP = 9,
    T_LIST_ZIPLIST = 10,
    T_SET_INTSET = 11,
    T_ZSET_ZIPLIST = 12,
    T_HASH_ZIPLIST = 13,
    T_LIST_QUICKLIST = 14,
    T_STREAM_LISTPACKS = 15,
    T_HASH_LISTPACK = 16,
    T_ZSET_LISTPACK = 17,
    T_LIST_QUICKLIST_2 = 18,
    T_STREAM_LISTPACKS_2 = 19,
    T_SET_LISTPACK = 20,
    T_STREAM_LISTPACKS_3 = 21,
};

enum {
    OP_SLOT_INFO = 244,
    OP_FUNCTION2 = 245,
    OP_FUNCTION_PRE_GA = 246,
    OP_MODULE_AUX = 247,
    OP_IDLE = 248,
    OP_FREQ = 249,
    OP_AUX = 250,
    OP_RESIZEDB = 251,
    OP_EXPIRETIME_MS = 252,
    OP_EXPIRETIME = 253,
    OP_SELECTDB = 254,
    OP_EOF = 255,
};

/* Module value opcodes (the annotations that let a reader skip a value). */
enum { MOD_EOF = 0, MOD_SINT = 1, MOD_UINT = 2, MOD_FLOAT = 3, MOD_DOUBLE = 4, MOD_STRING = 5 };

/* ---- the checker ---- */

struct tm_rdb_check {
    pthread_t thread;
    int started;
    pthread_mutex_t mu;
    pthread_cond_t cv;
    /* Shared, under mu: the chunks handed over and not yet taken by the
     * parser (a ring, not copies), and the parser's state. */
    struct {
        const uint8_t *p;
        size_t len;
    } q[TM_RDB_CHECK_QUEUE_MAX + 1];
    size_t qhead, qcount;
    size_t depth; /* chunks feed() may leave unread (tm_rdb_check_set_queue) */
    int in_eof;
    int stop; /* free(): drop the queue, end the parse */
    int done;
    uint64_t left; /* bytes handed over but not parsed once done */
    int rc;
    tm_err perr;

    /* Parser-owned while it runs; read by others only after done. */
    const uint8_t *cur, *end;
    int holding;             /* the parser holds the offered chunk */
    uint64_t off;            /* bytes consumed */
    uint64_t elem_off;       /* where the element being read began */
    uint64_t crc;            /* over consumed bytes before crc_from */
    const uint8_t *crc_from; /* consumed bytes of the current chunk from here
                              * are not in crc yet (crc_flush) */
    int version;
    int allow_no_checksum;
    uint8_t *blob; /* captured string (compact encodings, LZF) */
    size_t blob_len, blob_cap;
    uint8_t *lzf_out;
    size_t lzf_cap;
    tm_rdb_db_count *dbs;
    size_t ndbs, dbs_cap;
    size_t curdb; /* index into dbs, or SIZE_MAX before SELECTDB */
};

static int fail(tm_rdb_check *c, int code, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static int fail(tm_rdb_check *c, int code, const char *fmt, ...)
{
    char what[TM_ERR_MSG_MAX];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(what, sizeof(what), fmt, ap);
    va_end(ap);
    return tm_err_set(&c->perr, code, "rdb offset %" PRIu64 ": %s", c->elem_off, what);
}

#define TRY(x)                                                                                     \
    do {                                                                                           \
        int rc_ = (x);                                                                             \
        if (rc_ != 0) {                                                                            \
            return rc_;                                                                            \
        }                                                                                          \
    } while (0)

/* Bring crc up to the bytes consumed so far: once per chunk (and at the
 * trailer) rather than per element, so the CRC runs over long spans. */
static void crc_flush(tm_rdb_check *c)
{
    if (c->cur != c->crc_from) {
        c->crc = tm_redis_crc64(c->crc, c->crc_from, (size_t)(c->cur - c->crc_from));
        c->crc_from = c->cur;
    }
}

/* Wait for the next chunk. Called with the current one fully consumed. */
static int next_chunk(tm_rdb_check *c)
{
    crc_flush(c);
    pthread_mutex_lock(&c->mu);
    if (c->holding) {
        /* Give the consumed chunk back: its feeder may return or reuse it. */
        c->holding = 0;
        pthread_cond_broadcast(&c->cv);
    }
    while (c->qcount == 0 && !c->in_eof && !c->stop) {
        pthread_cond_wait(&c->cv, &c->mu);
    }
    int eof = c->qcount == 0 || c->stop;
    if (!eof) {
        c->cur = c->q[c->qhead].p;
        c->end = c->cur + c->q[c->qhead].len;
        c->crc_from = c->cur;
        c->qhead = (c->qhead + 1) % (TM_RDB_CHECK_QUEUE_MAX + 1);
        c->qcount--;
        c->holding = 1;
    }
    pthread_mutex_unlock(&c->mu);
    if (eof) {
        return tm_err_set(&c->perr, TM_ECORRUPT,
                          "rdb offset %" PRIu64 ": truncated: the input ended inside an element "
                          "that began at offset %" PRIu64,
                          c->off, c->elem_off);
    }
    return 0;
}

/* Read n bytes into dst (NULL: skip them), updating the offset (the CRC
 * follows in crc_flush). */
static int rd(tm_rdb_check *c, void *dst, uint64_t n)
{
    uint8_t *d = dst;
    while (n > 0) {
        if (c->cur == c->end) {
            TRY(next_chunk(c));
        }
        size_t avail = (size_t)(c->end - c->cur);
        size_t take = n < avail ? (size_t)n : avail;
        if (d != NULL) {
            memcpy(d, c->cur, take);
            d += take;
        }
        c->cur += take;
        c->off += take;
        n -= take;
    }
    return 0;
}

static int rd_u8(tm_rdb_check *c, uint8_t *v)
{
    return rd(c, v, 1);
}

/* A length, or (encoded = 1) a special string encoding number. */
static int rd_len(tm_rdb_check *c, uint64_t *len, int *encoded)
{
    uint8_t b[8];
    TRY(rd_u8(c, &b[0]));
    if (encoded != NULL) {
        *encoded = 0;
    }
    switch (b[0] >> 6) {
    case 0:
        *len = b[0] & 0x3f;
        return 0;
    case 1: {
        uint8_t lo;
        TRY(rd_u8(c, &lo));
        *len = ((uint64_t)(b[0] & 0x3f) << 8) | lo;
        return 0;
    }
    case 2:
        if (b[0] == 0x80) {
            TRY(rd(c, b, 4));
            *len = (uint64_t)b[0] << 24 | (uint64_t)b[1] << 16 | (uint64_t)b[2] << 8 | b[3];
            return 0;
        }
        if (b[0] == 0x81) {
            TRY(rd(c, b, 8));
            uint64_t v = 0;
            for (int i = 0; i < 8; i++) {
                v = v << 8 | b[i];
            }
            *len = v;
            return 0;
        }
        return fail(c, TM_ECORRUPT, "unknown length encoding 0x%02x", b[0]);
    default:
        if (encoded == NULL) {
            return fail(c, TM_ECORRUPT, "a string encoding (0x%02x) where a length belongs", b[0]);
        }
        *encoded = 1;
        *len = b[0] & 0x3f;
        return 0;
    }
}

/* A plain length: never a string encoding. */
static int rd_plen(tm_rdb_check *c, uint64_t *len)
{
    c->elem_off = c->off;
    return rd_len(c, len, NULL);
}

static int blob_reserve(uint8_t **buf, size_t *cap, size_t need)
{
    if (need <= *cap) {
        return 0;
    }
    size_t ncap = *cap ? *cap : 4096;
    while (ncap < need) {
        ncap *= 2;
    }
    uint8_t *nb = realloc(*buf, ncap);
    if (nb == NULL) {
        return TM_ENOMEM;
    }
    *buf = nb;
    *cap = ncap;
    return 0;
}

/* LZF decompression into exactly out_len bytes; 0 when the payload is well
 * formed and produces exactly that many. */
static int lzf_check(const uint8_t *in, size_t in_len, uint8_t *out, size_t out_len)
{
    size_t ip = 0, op = 0;
    while (ip < in_len) {
        unsigned ctrl = in[ip++];
        if (ctrl < 32) {
            size_t run = (size_t)ctrl + 1;
            if (ip + run > in_len || op + run > out_len) {
                return -1;
            }
            memcpy(out + op, in + ip, run);
            ip += run;
            op += run;
            continue;
        }
        size_t len = ctrl >> 5;
        if (len == 7) {
            if (ip >= in_len) {
                return -1;
            }
            len += in[ip++];
        }
        if (ip >= in_len) {
            return -1;
        }
        size_t back = ((size_t)(ctrl & 0x1f) << 8) + in[ip++] + 1;
        len += 2;
        if (back > op || op + len > out_len) {
            return -1;
        }
        /* Byte by byte: the reference may overlap what it produces. */
        for (size_t i = 0; i < len; i++) {
            out[op + i] = out[op - back + i];
        }
        op += len;
    }
    return op == out_len ? 0 : -1;
}

/* A string. capture: keep its (decompressed) bytes in c->blob when they fit
 * TM_RDB_BLOB_MAX; *captured says whether they were kept. LZF payloads are
 * always decompressed when they fit, to check them. */
static int rd_string(tm_rdb_check *c, int capture, int *captured)
{
    uint64_t len = 0;
    int enc;
    c->elem_off = c->off;
    uint64_t start = c->off;
    if (captured != NULL) {
        *captured = 0;
    }
    TRY(rd_len(c, &len, &enc));
    if (enc) {
        uint8_t tmp[4];
        switch (len) {
        case 0:
            return rd(c, tmp, 1);
        case 1:
            return rd(c, tmp, 2);
        case 2:
            return rd(c, tmp, 4);
        case 3: {
            uint64_t clen, ulen;
            TRY(rd_len(c, &clen, NULL));
            TRY(rd_len(c, &ulen, NULL));
            c->elem_off = start;
            if (clen == 0 || ulen == 0) {
                return fail(c, TM_ECORRUPT, "LZF string with a zero length");
            }
            if (clen > TM_RDB_BLOB_MAX || ulen > TM_RDB_BLOB_MAX) {
                return rd(c, NULL, clen);
            }
            if (blob_reserve(&c->blob, &c->blob_cap, (size_t)clen) != 0 ||
                blob_reserve(&c->lzf_out, &c->lzf_cap, (size_t)ulen) != 0) {
                return fail(c, TM_ENOMEM, "out of memory for a %" PRIu64 "-byte string", ulen);
            }
            TRY(rd(c, c->blob, clen));
            if (lzf_check(c->blob, (size_t)clen, c->lzf_out, (size_t)ulen) != 0) {
                return fail(c, TM_ECORRUPT,
                            "LZF string does not decompress to its declared %" PRIu64 " bytes",
                            ulen);
            }
            if (capture) {
                /* Swap: the decompressed bytes become the blob. */
                uint8_t *t = c->blob;
                size_t tc = c->blob_cap;
                c->blob = c->lzf_out;
                c->blob_cap = c->lzf_cap;
                c->lzf_out = t;
                c->lzf_cap = tc;
                c->blob_len = (size_t)ulen;
                if (captured != NULL) {
                    *captured = 1;
                }
            }
            return 0;
        }
        default:
            return fail(c, TM_ECORRUPT, "unknown string encoding %" PRIu64, len);
        }
    }
    if (!capture || len > TM_RDB_BLOB_MAX) {
        return rd(c, NULL, len);
    }
    if (blob_reserve(&c->blob, &c->blob_cap, (size_t)len) != 0) {
        return fail(c, TM_ENOMEM, "out of memory for a %" PRIu64 "-byte string", len);
    }
    TRY(rd(c, c->blob, len));
    c->blob_len = (size_t)len;
    c->elem_off = start;
    if (captured != NULL) {
        *captured = 1;
    }
    return 0;
}

/* The pre-ZSET_2 score: a length byte, then that many ASCII characters;
 * 253/254/255 stand for NaN, +inf, -inf. */
static int rd_double_old(tm_rdb_check *c)
{
    uint8_t n;
    c->elem_off = c->off;
    TRY(rd_u8(c, &n));
    if (n >= 253) {
        return 0;
    }
    return rd(c, NULL, n);
}

/* ---- compact encodings ---- */

static uint32_t le32(const uint8_t *p)
{
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

static uint16_t le16(const uint8_t *p)
{
    return (uint16_t)(p[0] | p[1] << 8);
}

/* Listpack: total bytes (u32), element count (u16, 65535 = unknown), entries
 * each followed by their length written backwards, 0xFF. *count = entries. */
static int lp_check(const uint8_t *p, size_t len, uint64_t *count, const char **why)
{
    if (len < 7) {
        *why = "listpack shorter than its header";
        return -1;
    }
    if (le32(p) != len) {
        *why = "listpack total-bytes field differs from its string length";
        return -1;
    }
    unsigned declared = le16(p + 4);
    size_t i = 6;
    uint64_t n = 0;
    for (;;) {
        if (i >= len) {
            *why = "listpack has no end byte";
            return -1;
        }
        uint8_t b = p[i];
        if (b == 0xff) {
            break;
        }
        size_t hdr, data;
        if ((b & 0x80) == 0) {
            hdr = 1;
            data = 0;
        } else if ((b & 0xc0) == 0x80) {
            hdr = 1;
            data = b & 0x3f;
        } else if ((b & 0xe0) == 0xc0) {
            hdr = 2;
            data = 0;
        } else if ((b & 0xf0) == 0xe0) {
            hdr = 2;
            if (i + 1 >= len) {
                *why = "listpack entry header runs past the end";
                return -1;
            }
            data = ((size_t)(b & 0x0f) << 8) | p[i + 1];
        } else if (b == 0xf0) {
            hdr = 5;
            if (i + 5 > len) {
                *why = "listpack entry header runs past the end";
                return -1;
            }
            data = le32(p + i + 1);
        } else if (b == 0xf1) {
            hdr = 3;
            data = 0;
        } else if (b == 0xf2) {
            hdr = 4;
            data = 0;
        } else if (b == 0xf3) {
            hdr = 5;
            data = 0;
        } else if (b == 0xf4) {
            hdr = 9;
            data = 0;
        } else {
            *why = "listpack entry with an unknown encoding byte";
            return -1;
        }
        size_t elen = hdr + data;
        if (data > len || i + elen > len) {
            *why = "listpack entry runs past the end";
            return -1;
        }
        size_t blen = elen < 128         ? 1
                      : elen < 16384     ? 2
                      : elen < 2097152   ? 3
                      : elen < 268435456 ? 4
                                         : 5;
        if (i + elen + blen > len) {
            *why = "listpack entry's back-length runs past the end";
            return -1;
        }
        /* The back-length: 7 bits per byte, most significant byte first,
         * every byte but the last-read (first written) with the high bit. */
        size_t v = 0;
        const uint8_t *bl = p + i + elen;
        for (size_t k = 0; k < blen; k++) {
            uint8_t x = bl[blen - 1 - k];
            int more = (x & 0x80) != 0;
            if (more != (k + 1 < blen)) {
                *why = "listpack back-length is malformed";
                return -1;
            }
            v |= (size_t)(x & 0x7f) << (7 * k);
        }
        if (v != elen) {
            *why = "listpack back-length differs from the entry length";
            return -1;
        }
        i += elen + blen;
        n++;
    }
    if (i + 1 != len) {
        *why = "listpack has bytes after its end byte";
        return -1;
    }
    if (declared != 65535 && declared != n) {
        *why = "listpack element count differs from its entries";
        return -1;
    }
    *count = n;
    return 0;
}

/* Ziplist (RDB < 10 and quicklist v1 nodes): bytes (u32), tail offset (u32),
 * count (u16), entries with the previous entry's length, 0xFF. */
static int zl_check(const uint8_t *p, size_t len, uint64_t *count, const char **why)
{
    if (len < 11) {
        *why = "ziplist shorter than its header";
        return -1;
    }
    if (le32(p) != len) {
        *why = "ziplist total-bytes field differs from its string length";
        return -1;
    }
    uint32_t tail = le32(p + 4);
    unsigned declared = le16(p + 8);
    size_t i = 10, prev = 0, last = 10;
    uint64_t n = 0;
    for (;;) {
        if (i >= len) {
            *why = "ziplist has no end byte";
            return -1;
        }
        if (p[i] == 0xff) {
            break;
        }
        size_t start = i, pl;
        if (p[i] < 254) {
            pl = p[i];
            i += 1;
        } else if (p[i] == 254) {
            if (i + 5 > len) {
                *why = "ziplist entry runs past the end";
                return -1;
            }
            pl = le32(p + i + 1);
            i += 5;
        } else {
            *why = "ziplist previous-length byte 255";
            return -1;
        }
        if (pl != prev) {
            *why = "ziplist previous-length differs from the previous entry";
            return -1;
        }
        if (i >= len) {
            *why = "ziplist entry runs past the end";
            return -1;
        }
        uint8_t e = p[i];
        size_t hdr, data;
        switch (e >> 6) {
        case 0:
            hdr = 1;
            data = e & 0x3f;
            break;
        case 1:
            if (i + 2 > len) {
                *why = "ziplist entry runs past the end";
                return -1;
            }
            hdr = 2;
            data = ((size_t)(e & 0x3f) << 8) | p[i + 1];
            break;
        case 2:
            if (e != 0x80 || i + 5 > len) {
                *why = "ziplist string header is malformed";
                return -1;
            }
            hdr = 5;
            data =
                (size_t)p[i + 1] << 24 | (size_t)p[i + 2] << 16 | (size_t)p[i + 3] << 8 | p[i + 4];
            break;
        default:
            hdr = 1;
            if (e == 0xc0) {
                data = 2;
            } else if (e == 0xd0) {
                data = 4;
            } else if (e == 0xe0) {
                data = 8;
            } else if (e == 0xf0) {
                data = 3;
            } else if (e == 0xfe) {
                data = 1;
            } else if (e >= 0xf1 && e <= 0xfd) {
                data = 0;
            } else {
                *why = "ziplist entry with an unknown encoding byte";
                return -1;
            }
        }
        if (data > len || i + hdr + data > len) {
            *why = "ziplist entry runs past the end";
            return -1;
        }
        i += hdr + data;
        prev = i - start;
        last = start;
        n++;
    }
    if (i + 1 != len) {
        *why = "ziplist has bytes after its end byte";
        return -1;
    }
    if (tail != last) {
        *why = "ziplist tail offset does not point at the last entry";
        return -1;
    }
    if (declared != 65535 && declared != n) {
        *why = "ziplist element count differs from its entries";
        return -1;
    }
    *count = n;
    return 0;
}

/* Intset: encoding (2, 4 or 8 bytes per value), count, values strictly
 * ascending. */
static int intset_check(const uint8_t *p, size_t len, const char **why)
{
    if (len < 8) {
        *why = "intset shorter than its header";
        return -1;
    }
    uint32_t enc = le32(p), n = le32(p + 4);
    if (enc != 2 && enc != 4 && enc != 8) {
        *why = "intset with an unknown encoding";
        return -1;
    }
    if ((uint64_t)enc * n + 8 != len) {
        *why = "intset size differs from its count";
        return -1;
    }
    int64_t prev = 0;
    for (uint32_t i = 0; i < n; i++) {
        const uint8_t *q = p + 8 + (size_t)i * enc;
        int64_t v;
        if (enc == 2) {
            v = (int16_t)le16(q);
        } else if (enc == 4) {
            v = (int32_t)le32(q);
        } else {
            v = (int64_t)((uint64_t)le32(q) | (uint64_t)le32(q + 4) << 32);
        }
        if (i > 0 && v <= prev) {
            *why = "intset values are not strictly ascending";
            return -1;
        }
        prev = v;
    }
    return 0;
}

enum { BLOB_LISTPACK, BLOB_ZIPLIST, BLOB_INTSET, BLOB_ZIPMAP };

/* A string holding a compact encoding; pairs = 1 when the entries must come
 * in pairs (hash field/value, zset member/score). */
static int rd_blob(tm_rdb_check *c, int kind, int pairs, int nonempty)
{
    int captured;
    TRY(rd_string(c, 1, &captured));
    if (!captured || kind == BLOB_ZIPMAP) {
        return 0; /* too large to hold, or an ancient format: the CRC covers it */
    }
    const char *why = NULL;
    uint64_t n = 0;
    int r;
    const char *name;
    if (kind == BLOB_LISTPACK) {
        name = "listpack";
        r = lp_check(c->blob, c->blob_len, &n, &why);
    } else if (kind == BLOB_ZIPLIST) {
        name = "ziplist";
        r = zl_check(c->blob, c->blob_len, &n, &why);
    } else {
        name = "intset";
        n = 1;
        r = intset_check(c->blob, c->blob_len, &why);
    }
    if (r != 0) {
        return fail(c, TM_ECORRUPT, "%s", why);
    }
    if (pairs && n % 2 != 0) {
        return fail(c, TM_ECORRUPT, "%s holds an odd number of entries for pairs", name);
    }
    if (nonempty && n == 0) {
        return fail(c, TM_ECORRUPT, "empty %s", name);
    }
    return 0;
}

/* The opcode-annotated values of a module (MODULE_2 values, MODULE_AUX). */
static int rd_module_values(tm_rdb_check *c)
{
    for (;;) {
        uint64_t op = 0, v = 0;
        TRY(rd_plen(c, &op));
        switch (op) {
        case MOD_EOF:
            return 0;
        case MOD_SINT:
        case MOD_UINT:
            TRY(rd_plen(c, &v));
            break;
        case MOD_FLOAT:
            TRY(rd(c, NULL, 4));
            break;
        case MOD_DOUBLE:
            TRY(rd(c, NULL, 8));
            break;
        case MOD_STRING:
            TRY(rd_string(c, 0, NULL));
            break;
        default:
            return fail(c, TM_ECORRUPT, "unknown module value opcode %" PRIu64, op);
        }
    }
}

/* A stream PEL: count, then 16-byte IDs, with (nacks) delivery time and
 * count. */
static int rd_pel(tm_rdb_check *c, int nacks)
{
    uint64_t n, v;
    TRY(rd_plen(c, &n));
    for (uint64_t i = 0; i < n; i++) {
        TRY(rd(c, NULL, 16));
        if (nacks) {
            TRY(rd(c, NULL, 8));
            TRY(rd_plen(c, &v));
        }
    }
    return 0;
}

static int rd_stream(tm_rdb_check *c, int type)
{
    uint64_t nodes, v;
    TRY(rd_plen(c, &nodes));
    for (uint64_t i = 0; i < nodes; i++) {
        int captured;
        TRY(rd_string(c, 1, &captured));
        if (captured && c->blob_len != 16) {
            return fail(c, TM_ECORRUPT, "stream node key of %zu bytes (16 expected)", c->blob_len);
        }
        TRY(rd_blob(c, BLOB_LISTPACK, 0, 1));
    }
    /* length, last id (ms, seq) */
    for (int k = 0; k < 3; k++) {
        TRY(rd_plen(c, &v));
    }
    if (type >= T_STREAM_LISTPACKS_2) {
        /* first id, max deleted id, entries added */
        for (int k = 0; k < 5; k++) {
            TRY(rd_plen(c, &v));
        }
    }
    uint64_t groups;
    TRY(rd_plen(c, &groups));
    for (uint64_t g = 0; g < groups; g++) {
        TRY(rd_string(c, 0, NULL));
        TRY(rd_plen(c, &v));
        TRY(rd_plen(c, &v));
        if (type >= T_STREAM_LISTPACKS_2) {
            TRY(rd_plen(c, &v)); /* entries read */
        }
        TRY(rd_pel(c, 1));
        uint64_t consumers;
        TRY(rd_plen(c, &consumers));
        for (uint64_t k = 0; k < consumers; k++) {
            TRY(rd_string(c, 0, NULL));
            TRY(rd(c, NULL, 8)); /* seen time */
            if (type >= T_STREAM_LISTPACKS_3) {
                TRY(rd(c, NULL, 8)); /* active time */
            }
            TRY(rd_pel(c, 0));
        }
    }
    return 0;
}

static int rd_value(tm_rdb_check *c, int type)
{
    uint64_t n, v;
    switch (type) {
    case T_STRING:
        return rd_string(c, 0, NULL);
    case T_LIST:
    case T_SET:
        TRY(rd_plen(c, &n));
        for (uint64_t i = 0; i < n; i++) {
            TRY(rd_string(c, 0, NULL));
        }
        return 0;
    case T_ZSET:
    case T_ZSET_2:
        TRY(rd_plen(c, &n));
        for (uint64_t i = 0; i < n; i++) {
            TRY(rd_string(c, 0, NULL));
            if (type == T_ZSET) {
                TRY(rd_double_old(c));
            } else {
                TRY(rd(c, NULL, 8));
            }
        }
        return 0;
    case T_HASH:
        TRY(rd_plen(c, &n));
        for (uint64_t i = 0; i < n; i++) {
            TRY(rd_string(c, 0, NULL));
            TRY(rd_string(c, 0, NULL));
        }
        return 0;
    case T_MODULE_2:
        TRY(rd_plen(c, &v)); /* module id and version */
        return rd_module_values(c);
    case T_MODULE_PRE_GA:
        return fail(c, TM_EPROTO,
                    "a module value of the 4.0 release candidates: it carries no annotations "
                    "and cannot be checked without its module");
    case T_HASH_ZIPMAP:
        return rd_blob(c, BLOB_ZIPMAP, 0, 0);
    case T_LIST_ZIPLIST:
        return rd_blob(c, BLOB_ZIPLIST, 0, 1);
    case T_ZSET_ZIPLIST:
    case T_HASH_ZIPLIST:
        return rd_blob(c, BLOB_ZIPLIST, 1, 1);
    case T_SET_INTSET:
        return rd_blob(c, BLOB_INTSET, 0, 0);
    case T_LIST_QUICKLIST:
        TRY(rd_plen(c, &n));
        for (uint64_t i = 0; i < n; i++) {
            TRY(rd_blob(c, BLOB_ZIPLIST, 0, 1));
        }
        return 0;
    case T_LIST_QUICKLIST_2:
        TRY(rd_plen(c, &n));
        for (uint64_t i = 0; i < n; i++) {
            uint64_t container;
            TRY(rd_plen(c, &container));
            if (container == 1) { /* a plain node: one large element */
                TRY(rd_string(c, 0, NULL));
            } else if (container == 2) {
                TRY(rd_blob(c, BLOB_LISTPACK, 0, 1));
            } else {
                return fail(c, TM_ECORRUPT, "quicklist node container %" PRIu64, container);
            }
        }
        return 0;
    case T_HASH_LISTPACK:
    case T_ZSET_LISTPACK:
        return rd_blob(c, BLOB_LISTPACK, 1, 1);
    case T_SET_LISTPACK:
        return rd_blob(c, BLOB_LISTPACK, 0, 1);
    case T_STREAM_LISTPACKS:
    case T_STREAM_LISTPACKS_2:
    case T_STREAM_LISTPACKS_3:
        return rd_stream(c, type);
    default:
        /* The version is known, so an unknown type byte is damage. */
        return fail(c, TM_ECORRUPT, "unknown type or opcode byte %d for RDB version %d", type,
                    c->version);
    }
}

static int select_db(tm_rdb_check *c, uint64_t db)
{
    for (size_t i = 0; i < c->ndbs; i++) {
        if (c->dbs[i].db == db) {
            c->curdb = i;
            return 0;
        }
    }
    if (c->ndbs == c->dbs_cap) {
        size_t ncap = c->dbs_cap ? c->dbs_cap * 2 : 16;
        if (ncap > 65536) {
            return fail(c, TM_ECORRUPT, "more than 65536 databases");
        }
        tm_rdb_db_count *nd = realloc(c->dbs, ncap * sizeof(*nd));
        if (nd == NULL) {
            return fail(c, TM_ENOMEM, "out of memory");
        }
        c->dbs = nd;
        c->dbs_cap = ncap;
    }
    memset(&c->dbs[c->ndbs], 0, sizeof(c->dbs[0]));
    c->dbs[c->ndbs].db = db;
    c->curdb = c->ndbs++;
    return 0;
}

static int parse(tm_rdb_check *c)
{
    uint8_t hdr[9];
    c->elem_off = 0;
    TRY(rd(c, hdr, 9));
    if (memcmp(hdr, "REDIS", 5) != 0) {
        return fail(c, TM_ECORRUPT, "not an RDB file (no REDIS magic)");
    }
    int version = 0;
    for (int i = 5; i < 9; i++) {
        if (hdr[i] < '0' || hdr[i] > '9') {
            return fail(c, TM_ECORRUPT, "RDB version is not four digits");
        }
        version = version * 10 + (hdr[i] - '0');
    }
    if (version < 1 || version > TM_RDB_VERSION_MAX) {
        return fail(c, TM_EPROTO, "RDB version %d (this validator knows 1..%d)", version,
                    TM_RDB_VERSION_MAX);
    }
    c->version = version;
    int has_expire = 0;
    for (;;) {
        uint8_t op;
        uint64_t a, b;
        c->elem_off = c->off;
        TRY(rd_u8(c, &op));
        switch (op) {
        case OP_EOF: {
            if (has_expire) {
                return fail(c, TM_ECORRUPT, "an expire time with no key after it");
            }
            if (version < 5) {
                return 0; /* no checksum before version 5 */
            }
            crc_flush(c);
            uint64_t computed = c->crc;
            uint8_t t[8];
            c->elem_off = c->off;
            TRY(rd(c, t, 8));
            uint64_t stored = 0;
            for (int i = 7; i >= 0; i--) {
                stored = stored << 8 | t[i];
            }
            if (stored == 0 && !c->allow_no_checksum) {
                return fail(c, TM_ECORRUPT,
                            "the server wrote no checksum (rdbchecksum no): the snapshot cannot "
                            "be verified; set rdbchecksum yes");
            }
            if (stored != 0 && stored != computed) {
                return fail(c, TM_ECORRUPT,
                            "checksum mismatch: the trailer says %016" PRIx64
                            ", the bytes before it give %016" PRIx64,
                            stored, computed);
            }
            return 0;
        }
        case OP_SELECTDB:
            TRY(rd_plen(c, &a));
            TRY(select_db(c, a));
            continue;
        case OP_RESIZEDB:
            TRY(rd_plen(c, &a));
            TRY(rd_plen(c, &b));
            if (c->curdb != SIZE_MAX) {
                c->dbs[c->curdb].resize_keys = a;
                c->dbs[c->curdb].resize_expires = b;
            }
            continue;
        case OP_AUX:
            TRY(rd_string(c, 0, NULL));
            TRY(rd_string(c, 0, NULL));
            continue;
        case OP_EXPIRETIME_MS:
            TRY(rd(c, NULL, 8));
            has_expire = 1;
            continue;
        case OP_EXPIRETIME:
            TRY(rd(c, NULL, 4));
            has_expire = 1;
            continue;
        case OP_IDLE:
            TRY(rd_plen(c, &a));
            continue;
        case OP_FREQ:
            TRY(rd(c, NULL, 1));
            continue;
        case OP_MODULE_AUX: {
            uint64_t when_op;
            TRY(rd_plen(c, &a)); /* module id */
            TRY(rd_plen(c, &when_op));
            if (when_op != MOD_UINT) {
                return fail(c, TM_ECORRUPT, "module aux 'when' is not an unsigned value");
            }
            TRY(rd_plen(c, &b));
            TRY(rd_module_values(c));
            continue;
        }
        case OP_FUNCTION2:
            TRY(rd_string(c, 0, NULL));
            continue;
        case OP_FUNCTION_PRE_GA:
            TRY(rd_string(c, 0, NULL)); /* name */
            TRY(rd_string(c, 0, NULL)); /* engine */
            TRY(rd_plen(c, &a));
            if (a) {
                TRY(rd_string(c, 0, NULL)); /* description */
            }
            TRY(rd_string(c, 0, NULL)); /* code */
            continue;
        case OP_SLOT_INFO:
            for (int k = 0; k < 3; k++) {
                TRY(rd_plen(c, &a));
            }
            continue;
        default:
            break;
        }
        /* A key/value pair of type op. */
        if (c->curdb == SIZE_MAX) {
            /* Redis always selects a database first; older files may not. */
            TRY(select_db(c, 0));
        }
        TRY(rd_string(c, 0, NULL));
        TRY(rd_value(c, op));
        c->dbs[c->curdb].keys++;
        if (has_expire) {
            c->dbs[c->curdb].expires++;
            has_expire = 0;
        }
    }
}

static void *parser_main(void *arg)
{
    tm_rdb_check *c = arg;
    pthread_setname_np(pthread_self(), "tm-rdb-check");
    int rc = parse(c);
    pthread_mutex_lock(&c->mu);
    c->rc = rc;
    c->done = 1;
    /* Bytes the parser did not take are trailing data (or unread after an
     * error); it reads none of the chunks from here on. */
    c->left = c->holding ? (uint64_t)(c->end - c->cur) : 0;
    for (size_t i = 0; i < c->qcount; i++) {
        c->left += c->q[(c->qhead + i) % (TM_RDB_CHECK_QUEUE_MAX + 1)].len;
    }
    c->qcount = 0;
    c->holding = 0;
    pthread_cond_broadcast(&c->cv);
    pthread_mutex_unlock(&c->mu);
    return NULL;
}

int tm_rdb_check_new(tm_rdb_check **out, tm_err *err)
{
    *out = NULL;
    tm_rdb_check *c = calloc(1, sizeof(*c));
    if (c == NULL) {
        return tm_err_set(err, TM_ENOMEM, "rdb check: out of memory");
    }
    c->curdb = SIZE_MAX;
    pthread_mutex_init(&c->mu, NULL);
    pthread_cond_init(&c->cv, NULL);
    *out = c;
    return 0;
}

void tm_rdb_check_allow_no_checksum(tm_rdb_check *c)
{
    c->allow_no_checksum = 1;
}

void tm_rdb_check_set_queue(tm_rdb_check *c, size_t depth)
{
    c->depth = depth < TM_RDB_CHECK_QUEUE_MAX ? depth : TM_RDB_CHECK_QUEUE_MAX;
}

/* Called with mu held, once the parser is done: its verdict, with bytes it
 * never took (after a whole RDB) turned into the trailing-data error. */
static int done_rc_locked(tm_rdb_check *c, tm_err *err)
{
    if (c->rc == 0 && c->left > 0) {
        c->elem_off = c->off;
        c->rc = tm_err_set(&c->perr, TM_ECORRUPT,
                           "rdb offset %" PRIu64 ": %" PRIu64 " bytes after the end of the RDB",
                           c->off, c->left);
    }
    if (c->rc != 0 && err != NULL) {
        *err = c->perr;
    }
    return c->rc;
}

/* Hand a chunk (or the end of input, buf == NULL) to the parser and wait
 * until at most depth chunks are left unread (the end of input: until the
 * parser stopped). */
static int hand_over(tm_rdb_check *c, const void *buf, size_t len, tm_err *err)
{
    pthread_mutex_lock(&c->mu);
    if (!c->started) {
        if (pthread_create(&c->thread, NULL, parser_main, c) != 0) {
            pthread_mutex_unlock(&c->mu);
            return tm_err_set(err, TM_EINTERNAL, "rdb check: cannot start the parser thread");
        }
        c->started = 1;
    }
    if (c->done) {
        c->left += len;
    } else if (buf == NULL) {
        c->in_eof = 1;
    } else {
        size_t tail = (c->qhead + c->qcount) % (TM_RDB_CHECK_QUEUE_MAX + 1);
        c->q[tail].p = buf;
        c->q[tail].len = len;
        c->qcount++;
    }
    pthread_cond_broadcast(&c->cv);
    while (!c->done && (buf == NULL || c->qcount + (size_t)c->holding > c->depth)) {
        pthread_cond_wait(&c->cv, &c->mu);
    }
    int rc = c->done ? done_rc_locked(c, err) : 0;
    pthread_mutex_unlock(&c->mu);
    return rc;
}

void tm_rdb_check_drain(tm_rdb_check *c)
{
    if (!c->started) {
        return;
    }
    pthread_mutex_lock(&c->mu);
    while (!c->done && (c->qcount > 0 || c->holding)) {
        pthread_cond_wait(&c->cv, &c->mu);
    }
    pthread_mutex_unlock(&c->mu);
}

int tm_rdb_check_feed(void *checker, const void *buf, size_t len, tm_err *err)
{
    tm_rdb_check *c = checker;
    if (len == 0) {
        return 0;
    }
    return hand_over(c, buf, len, err);
}

int tm_rdb_check_finish(tm_rdb_check *c, tm_err *err)
{
    return hand_over(c, NULL, 0, err);
}

int tm_rdb_check_version(const tm_rdb_check *c)
{
    return c->version;
}

uint64_t tm_rdb_check_bytes(const tm_rdb_check *c)
{
    return c->off;
}

size_t tm_rdb_check_ndbs(const tm_rdb_check *c)
{
    return c->ndbs;
}

const tm_rdb_db_count *tm_rdb_check_db(const tm_rdb_check *c, size_t i)
{
    return i < c->ndbs ? &c->dbs[i] : NULL;
}

void tm_rdb_check_free(tm_rdb_check *c)
{
    if (c == NULL) {
        return;
    }
    if (c->started) {
        pthread_mutex_lock(&c->mu);
        int done = c->done;
        pthread_mutex_unlock(&c->mu);
        if (!done) {
            /* Unblock the parser: it drops what is queued and stops. */
            pthread_mutex_lock(&c->mu);
            c->stop = 1;
            pthread_cond_broadcast(&c->cv);
            pthread_mutex_unlock(&c->mu);
        }
        pthread_join(c->thread, NULL);
    }
    pthread_mutex_destroy(&c->mu);
    pthread_cond_destroy(&c->cv);
    free(c->blob);
    free(c->lzf_out);
    free(c->dbs);
    free(c);
}
