/*
 * test_redis_rdb_encodings.c - the RDB validator on the encodings that
 * test_redis_rdb_check.c's file does not hold: ziplists (RDB 9 lists,
 * hashes, zsets and quicklist v1 nodes), intsets of every width, listpack
 * entry forms, quicklist v2 containers, old-style zset scores, module values
 * and aux fields, function and slot-info opcodes, length and string
 * encodings. Each damaged form must be refused with its own reason (what an
 * operator reads when a snapshot is rejected), and each valid form accepted
 * with its key counted. The checksum is recomputed after each change, so
 * the structure checks alone must catch the damage.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "agent/engines/redis/rdb_check.h"

typedef struct buf {
    uint8_t b[40000];
    size_t n;
} buf;

static void put(buf *r, const void *p, size_t n)
{
    assert_true(r->n + n <= sizeof(r->b));
    memcpy(r->b + r->n, p, n);
    r->n += n;
}

static void put1(buf *r, uint8_t v)
{
    put(r, &v, 1);
}

static void le(buf *r, uint64_t v, int bytes)
{
    for (int i = 0; i < bytes; i++) {
        put1(r, (uint8_t)(v >> (8 * i)));
    }
}

/* An RDB length: 6-bit, 14-bit, or 32-bit big-endian. */
static void len(buf *r, uint64_t n)
{
    if (n < 64) {
        put1(r, (uint8_t)n);
    } else if (n < 16384) {
        put1(r, (uint8_t)(0x40 | (n >> 8)));
        put1(r, (uint8_t)n);
    } else {
        put1(r, 0x80);
        for (int i = 3; i >= 0; i--) {
            put1(r, (uint8_t)(n >> (8 * i)));
        }
    }
}

static void str(buf *r, const void *s, size_t n)
{
    len(r, n);
    put(r, s, n);
}

static void cstr(buf *r, const char *s)
{
    str(r, s, strlen(s));
}

/* ---- ziplists ---- */

typedef struct zl {
    buf b;
    size_t prev, last;
    unsigned count;
} zl;

static void zl_begin(zl *z)
{
    memset(z, 0, sizeof(*z));
    z->b.n = 10; /* bytes, tail, count: filled by zl_end */
}

static void zl_prevlen(zl *z)
{
    if (z->prev < 254) {
        put1(&z->b, (uint8_t)z->prev);
    } else {
        put1(&z->b, 254);
        le(&z->b, z->prev, 4);
    }
}

static void zl_str(zl *z, size_t n)
{
    size_t start = z->b.n;
    zl_prevlen(z);
    if (n < 64) {
        put1(&z->b, (uint8_t)n);
    } else if (n < 16384) {
        put1(&z->b, (uint8_t)(0x40 | (n >> 8)));
        put1(&z->b, (uint8_t)n);
    } else {
        put1(&z->b, 0x80);
        for (int i = 3; i >= 0; i--) {
            put1(&z->b, (uint8_t)(n >> (8 * i)));
        }
    }
    for (size_t i = 0; i < n; i++) {
        put1(&z->b, (uint8_t)('a' + i % 26));
    }
    z->last = start;
    z->prev = z->b.n - start;
    z->count++;
}

/* An integer entry: enc is the encoding byte, data its payload size. */
static void zl_int(zl *z, uint8_t enc, size_t data)
{
    size_t start = z->b.n;
    zl_prevlen(z);
    put1(&z->b, enc);
    for (size_t i = 0; i < data; i++) {
        put1(&z->b, (uint8_t)(i + 1));
    }
    z->last = start;
    z->prev = z->b.n - start;
    z->count++;
}

static void zl_end(zl *z)
{
    put1(&z->b, 0xff);
    uint8_t *p = z->b.b;
    for (int i = 0; i < 4; i++) {
        p[i] = (uint8_t)(z->b.n >> (8 * i));
        p[4 + i] = (uint8_t)(z->last >> (8 * i));
    }
    p[8] = (uint8_t)z->count;
    p[9] = (uint8_t)(z->count >> 8);
}

/* ---- the file ---- */

/* "REDIS<version>", db 0, then body (key/value pairs or opcodes), EOF and a
 * fresh checksum (none before version 5). */
static void rdb_file(buf *out, int version, const buf *body)
{
    memset(out, 0, sizeof(*out));
    char hdr[16];
    snprintf(hdr, sizeof(hdr), "REDIS%04d", version);
    put(out, hdr, 9);
    put1(out, 0xfe);
    put1(out, 0);
    put(out, body->b, body->n);
    put1(out, 0xff);
    if (version >= 5) {
        le(out, tm_redis_crc64(0, out->b, out->n), 8);
    }
}

/* 0 or the checker's error code; msg gets its message. */
static int check_bytes(const buf *f, char *msg, size_t cap, uint64_t *keys)
{
    tm_rdb_check *c = NULL;
    tm_err err = {0};
    assert_int_equal(tm_rdb_check_new(&c, &err), 0);
    int rc = tm_rdb_check_feed(c, f->b, f->n, &err);
    if (rc == 0) {
        rc = tm_rdb_check_finish(c, &err);
    }
    snprintf(msg, cap, "%s", rc ? err.msg : "");
    if (keys != NULL) {
        const tm_rdb_db_count *d = tm_rdb_check_db(c, 0);
        *keys = d != NULL ? d->keys : 0;
    }
    tm_rdb_check_free(c);
    return rc;
}

/* One key of type `type` whose value is the string blob, in an RDB of
 * `version`; want NULL: accepted, else refused with want in the message. */
static void one_blob(int version, uint8_t type, const buf *blob, const char *want)
{
    buf body = {0}, f;
    put1(&body, type);
    cstr(&body, "k");
    str(&body, blob->b, blob->n);
    rdb_file(&f, version, &body);
    char msg[512];
    uint64_t keys = 0;
    int rc = check_bytes(&f, msg, sizeof(msg), &keys);
    if (want == NULL) {
        if (rc != 0) {
            fail_msg("type %d: valid value refused: %s", type, msg);
        }
        assert_int_equal(keys, 1);
    } else if (rc == 0 || strstr(msg, want) == NULL) {
        fail_msg("type %d: want \"%s\", got rc %d \"%s\"", type, want, rc, msg);
    }
}

static void one_body(int version, const buf *body, const char *want)
{
    buf f;
    rdb_file(&f, version, body);
    char msg[512];
    int rc = check_bytes(&f, msg, sizeof(msg), NULL);
    if (want == NULL && rc != 0) {
        fail_msg("valid body refused: %s", msg);
    }
    if (want != NULL && (rc == 0 || strstr(msg, want) == NULL)) {
        fail_msg("want \"%s\", got rc %d \"%s\"", want, rc, msg);
    }
}

/* A valid ziplist of every entry form: strings of 6, 14 and 32-bit
 * lengths (the 300-byte one makes the next previous-length take 5 bytes)
 * and every integer width. */
static void zl_every_form(zl *z)
{
    zl_begin(z);
    zl_str(z, 3);
    zl_str(z, 300);
    zl_str(z, 2);
    zl_int(z, 0xc0, 2); /* int16 */
    zl_int(z, 0xd0, 4); /* int32 */
    zl_int(z, 0xe0, 8); /* int64 */
    zl_int(z, 0xf0, 3); /* int24 */
    zl_int(z, 0xfe, 1); /* int8 */
    zl_int(z, 0xf5, 0); /* immediate 4 */
    zl_str(z, 1);
    zl_end(z);
}

static void test_ziplist_valid(void **state)
{
    (void)state;
    zl z;
    zl_every_form(&z);
    one_blob(9, 10, &z.b, NULL); /* list */
    one_blob(9, 12, &z.b, NULL); /* zset: 10 entries, pairs */
    one_blob(9, 13, &z.b, NULL); /* hash */
    /* A quicklist v1: two ziplist nodes. */
    buf body = {0};
    put1(&body, 14);
    cstr(&body, "q");
    len(&body, 2);
    str(&body, z.b.b, z.b.n);
    str(&body, z.b.b, z.b.n);
    one_body(9, &body, NULL);
    /* A 32-bit string length in a ziplist. */
    zl_begin(&z);
    zl_str(&z, 20000);
    zl_end(&z);
    one_blob(9, 10, &z.b, NULL);
}

static void test_ziplist_damage(void **state)
{
    (void)state;
    zl z;
    buf b;
    /* Header too short, total bytes wrong. */
    memset(&b, 0, sizeof(b));
    put(&b, "\x0a\x00\x00\x00\x0a\x00\x00\x00\x00\x00", 10);
    one_blob(9, 10, &b, "ziplist shorter than its header");
    zl_every_form(&z);
    z.b.b[0]++;
    one_blob(9, 10, &z.b, "total-bytes field differs");
    /* No end byte: the last byte replaced by an entry that runs on. */
    zl_begin(&z);
    zl_str(&z, 2);
    zl_end(&z);
    z.b.b[z.b.n - 1] = 0x04; /* a previous-length, then nothing */
    one_blob(9, 10, &z.b, "ziplist entry runs past the end");
    /* Previous-length 255, and one that differs from the entry before. */
    zl_begin(&z);
    zl_str(&z, 2);
    zl_str(&z, 2);
    zl_end(&z);
    /* (A previous-length byte 255 reads as the end byte: that branch of
     * zl_check cannot be reached.) */
    z.b.b[z.last] = 9;
    one_blob(9, 10, &z.b, "previous-length differs");
    /* A 5-byte previous-length cut short. */
    zl_begin(&z);
    zl_str(&z, 300);
    zl_end(&z);
    z.b.n--; /* drop the end byte */
    put(&z.b, "\xfe\x2e\x01", 3);
    zl_end(&z);
    one_blob(9, 10, &z.b, "runs past the end");
    /* A 14-bit string header with its second byte missing. */
    zl_begin(&z);
    zl_str(&z, 2);
    put1(&z.b, 4);
    put1(&z.b, 0x41);
    z.b.b[0] = (uint8_t)(z.b.n); /* bytes: header only, no end byte */
    z.b.b[1] = z.b.b[2] = z.b.b[3] = 0;
    one_blob(9, 10, &z.b, "runs past the end");
    /* A 32-bit string header of the wrong form (0x81). */
    zl_begin(&z);
    zl_int(&z, 0x81, 4);
    zl_end(&z);
    one_blob(9, 10, &z.b, "ziplist string header is malformed");
    /* An unknown integer encoding (0xc1). */
    zl_begin(&z);
    zl_int(&z, 0xc1, 0);
    zl_end(&z);
    one_blob(9, 10, &z.b, "unknown encoding byte");
    /* A string longer than the ziplist. */
    zl_begin(&z);
    zl_str(&z, 2);
    zl_end(&z);
    z.b.b[11] = 60;
    one_blob(9, 10, &z.b, "ziplist entry runs past the end");
    /* Bytes after the end byte. */
    zl_begin(&z);
    zl_str(&z, 2);
    zl_end(&z);
    put1(&z.b, 0);
    z.b.b[0]++;
    one_blob(9, 10, &z.b, "bytes after its end byte");
    /* A tail offset that does not point at the last entry. */
    zl_begin(&z);
    zl_str(&z, 2);
    zl_str(&z, 2);
    zl_end(&z);
    z.b.b[4] = 10;
    one_blob(9, 10, &z.b, "tail offset");
    /* A count that differs from the entries. */
    z.b.b[4] = (uint8_t)z.last;
    z.b.b[8] = 3;
    one_blob(9, 10, &z.b, "element count differs");
    /* Odd entries for a hash, and an empty list. */
    zl_begin(&z);
    zl_str(&z, 2);
    zl_end(&z);
    one_blob(9, 13, &z.b, "ziplist holds an odd number of entries for pairs");
    zl_begin(&z);
    zl_end(&z);
    z.b.b[4] = 10;
    one_blob(9, 10, &z.b, "empty ziplist");
}

static void test_intset(void **state)
{
    (void)state;
    buf b;
    static const struct {
        uint32_t enc;
        int n;
        int64_t v[3];
        const char *want;
    } cases[] = {
        {2, 3, {-5, 0, 7}, NULL},
        {4, 2, {-70000, 70000}, NULL},
        {8, 2, {-5000000000LL, 5000000000LL}, NULL},
        {4, 2, {7, 7}, "strictly ascending"},
        {3, 1, {1}, "unknown encoding"},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        memset(&b, 0, sizeof(b));
        le(&b, cases[i].enc, 4);
        le(&b, (uint64_t)cases[i].n, 4);
        for (int k = 0; k < cases[i].n; k++) {
            le(&b, (uint64_t)cases[i].v[k], (int)(cases[i].enc == 3 ? 4 : cases[i].enc));
        }
        one_blob(9, 11, &b, cases[i].want);
    }
    memset(&b, 0, sizeof(b));
    put(&b, "\x02\x00\x00", 3);
    one_blob(9, 11, &b, "intset shorter than its header");
    memset(&b, 0, sizeof(b));
    le(&b, 2, 4);
    le(&b, 3, 4);
    le(&b, 1, 2);
    one_blob(9, 11, &b, "intset size differs from its count");
}

/* A listpack around the given entry bytes (each with its back-length). */
static void lp(buf *b, const void *entries, size_t n, unsigned count)
{
    memset(b, 0, sizeof(*b));
    le(b, 6 + n + 1, 4);
    le(b, count, 2);
    put(b, entries, n);
    put1(b, 0xff);
}

static void test_listpack_forms(void **state)
{
    (void)state;
    buf b;
    /* Every entry form: 7-bit uint, 6-bit string, 13-bit int, 12-bit
     * string, 16/24/32/64-bit ints, and a 32-bit string length. */
    uint8_t e[64];
    size_t n = 0;
    e[n++] = 0x05;
    e[n++] = 1; /* 7-bit uint + back-length */
    e[n++] = 0x82;
    e[n++] = 'h';
    e[n++] = 'i';
    e[n++] = 3;
    e[n++] = 0xc1;
    e[n++] = 0x02;
    e[n++] = 2;
    e[n++] = 0xe0;
    e[n++] = 0x01;
    e[n++] = 'x';
    e[n++] = 3;
    e[n++] = 0xf1;
    e[n++] = 1;
    e[n++] = 2;
    e[n++] = 3;
    e[n++] = 0xf2;
    e[n++] = 1;
    e[n++] = 2;
    e[n++] = 3;
    e[n++] = 4;
    e[n++] = 0xf3;
    memset(e + n, 1, 4);
    n += 4;
    e[n++] = 5;
    e[n++] = 0xf4;
    memset(e + n, 1, 8);
    n += 8;
    e[n++] = 9;
    e[n++] = 0xf0;
    e[n++] = 1;
    e[n++] = 0;
    e[n++] = 0;
    e[n++] = 0;
    e[n++] = 'z';
    e[n++] = 6;
    e[n++] = 0x01;
    e[n++] = 1;
    lp(&b, e, n, 10);
    one_blob(11, 20, &b, NULL); /* set listpack */
    one_blob(11, 16, &b, NULL); /* hash listpack: 8 entries, pairs */

    static const struct {
        const char *bytes;
        size_t n;
        const char *want;
    } bad[] = {
        {"\xf5\x01", 2, "unknown encoding byte"},
        {"\xe0", 1, "runs past the end"},
        {"\xf0\x01\x00", 3, "header runs past the end"},
        {"\x85zz", 3, "entry runs past the end"},
        {"\x83zz", 3, "back-length runs past the end"},
        {"\x05\x81", 2, "back-length is malformed"},
        {"\x05\x02", 2, "back-length"},
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        lp(&b, bad[i].bytes, bad[i].n, 1);
        /* an entry that overruns eats the end byte too: drop it */
        one_blob(11, 20, &b, bad[i].want);
    }
    memset(&b, 0, sizeof(b));
    put(&b, "\x05\x00\x00\x00\xff", 5);
    one_blob(11, 20, &b, "listpack shorter than its header");
    lp(&b, "\x05\x01", 2, 1);
    b.b[0]++;
    one_blob(11, 20, &b, "total-bytes field differs");
    lp(&b, "\x05\x01", 2, 2);
    one_blob(11, 20, &b, "element count differs");
    lp(&b, "\x05\x01\xff", 3, 1);
    one_blob(11, 20, &b, "bytes after its end byte");
    lp(&b, "\x05\x01", 2, 1);
    one_blob(11, 16, &b, "odd number of entries");
    lp(&b, "", 0, 0);
    one_blob(11, 20, &b, "empty listpack");
}

static void test_quicklist2_and_old_types(void **state)
{
    (void)state;
    buf b, body;
    lp(&b, "\x05\x01", 2, 1);
    /* quicklist v2: a plain node and a packed node; then container 3. */
    memset(&body, 0, sizeof(body));
    put1(&body, 18);
    cstr(&body, "q");
    len(&body, 2);
    len(&body, 1);
    cstr(&body, "a large element");
    len(&body, 2);
    str(&body, b.b, b.n);
    one_body(11, &body, NULL);
    memset(&body, 0, sizeof(body));
    put1(&body, 18);
    cstr(&body, "q");
    len(&body, 1);
    len(&body, 3);
    one_body(11, &body, "quicklist node container 3");
    /* Plain list, set, hash; zset with old scores (NaN, +inf, "1.5") and
     * zset2 with binary ones; a zipmap (not inspected). */
    memset(&body, 0, sizeof(body));
    put1(&body, 1);
    cstr(&body, "l");
    len(&body, 2);
    cstr(&body, "a");
    cstr(&body, "b");
    put1(&body, 2);
    cstr(&body, "s");
    len(&body, 1);
    cstr(&body, "m");
    put1(&body, 4);
    cstr(&body, "h");
    len(&body, 1);
    cstr(&body, "f");
    cstr(&body, "v");
    put1(&body, 3);
    cstr(&body, "z");
    len(&body, 3);
    cstr(&body, "x");
    put1(&body, 253);
    cstr(&body, "y");
    put1(&body, 254);
    cstr(&body, "w");
    put1(&body, 3);
    put(&body, "1.5", 3);
    put1(&body, 5);
    cstr(&body, "z2");
    len(&body, 1);
    cstr(&body, "m");
    le(&body, 0x3ff0000000000000ULL, 8);
    put1(&body, 9);
    cstr(&body, "zm");
    cstr(&body, "zipmap bytes");
    one_body(9, &body, NULL);
    /* An unknown type byte. */
    memset(&body, 0, sizeof(body));
    put1(&body, 8);
    cstr(&body, "k");
    one_body(9, &body, "unknown type or opcode byte 8");
}

static void test_modules_functions_slots(void **state)
{
    (void)state;
    buf body;
    /* A module value with every annotated opcode, a module aux field, a
     * function, a pre-GA function, slot info, idle and freq. */
    memset(&body, 0, sizeof(body));
    put1(&body, 7);
    cstr(&body, "mk");
    len(&body, 1234); /* module id */
    len(&body, 1);
    len(&body, 5);
    len(&body, 2);
    len(&body, 6);
    len(&body, 3);
    put(&body, "\0\0\0\0", 4);
    len(&body, 4);
    put(&body, "\0\0\0\0\0\0\0\0", 8);
    len(&body, 5);
    cstr(&body, "module string");
    len(&body, 0);
    put1(&body, 247);
    len(&body, 99);
    len(&body, 2);
    len(&body, 0);
    len(&body, 0);
    put1(&body, 245);
    cstr(&body, "#!lua name=lib\n");
    put1(&body, 246);
    cstr(&body, "f");
    cstr(&body, "LUA");
    len(&body, 1);
    cstr(&body, "a description");
    cstr(&body, "return 1");
    put1(&body, 244);
    len(&body, 1);
    len(&body, 2);
    len(&body, 3);
    put1(&body, 248);
    len(&body, 10);
    put1(&body, 249);
    put1(&body, 3);
    put1(&body, 0);
    cstr(&body, "s");
    cstr(&body, "v");
    one_body(11, &body, NULL);

    memset(&body, 0, sizeof(body));
    put1(&body, 7);
    cstr(&body, "mk");
    len(&body, 1234);
    len(&body, 9);
    one_body(11, &body, "unknown module value opcode 9");
    memset(&body, 0, sizeof(body));
    put1(&body, 247);
    len(&body, 99);
    len(&body, 1);
    one_body(11, &body, "module aux 'when' is not an unsigned value");
    memset(&body, 0, sizeof(body));
    put1(&body, 6);
    cstr(&body, "mk");
    one_body(11, &body, "4.0 release candidates");
}

static void test_lengths_and_strings(void **state)
{
    (void)state;
    buf body;
    /* A 64-bit length (0x81) and a 32-bit one (0x80) for plain strings;
     * int-encoded strings of 8, 16 and 32 bits. */
    memset(&body, 0, sizeof(body));
    put1(&body, 0);
    cstr(&body, "a");
    put1(&body, 0x81);
    put(&body, "\0\0\0\0\0\0\0\x02", 8);
    put(&body, "ok", 2);
    put1(&body, 0);
    cstr(&body, "b");
    put1(&body, 0x80);
    put(&body, "\0\0\0\x02", 4);
    put(&body, "ok", 2);
    put1(&body, 0);
    cstr(&body, "c");
    put(&body, "\xc1\x01\x02", 3);
    put1(&body, 0);
    cstr(&body, "d");
    put(&body, "\xc2\x01\x02\x03\x04", 5);
    one_body(11, &body, NULL);
    /* An unknown length encoding, a string encoding where a length
     * belongs, an unknown string encoding, an LZF string of length 0. */
    memset(&body, 0, sizeof(body));
    put1(&body, 0);
    cstr(&body, "a");
    put1(&body, 0x82);
    one_body(11, &body, "unknown length encoding 0x82");
    memset(&body, 0, sizeof(body));
    put1(&body, 1);
    cstr(&body, "l");
    put1(&body, 0xc0);
    one_body(11, &body, "where a length belongs");
    memset(&body, 0, sizeof(body));
    put1(&body, 0);
    cstr(&body, "a");
    put1(&body, 0xc4);
    one_body(11, &body, "unknown string encoding 4");
    memset(&body, 0, sizeof(body));
    put1(&body, 0);
    cstr(&body, "a");
    put(&body, "\xc3\x00\x00", 3);
    one_body(11, &body, "LZF string with a zero length");
    /* An expire with no key after it, and a version this validator does
     * not know; a version-4 file carries no checksum. */
    memset(&body, 0, sizeof(body));
    put1(&body, 253);
    put(&body, "\0\0\0\0", 4);
    one_body(11, &body, "an expire time with no key after it");
    memset(&body, 0, sizeof(body));
    one_body(4, &body, NULL);
    buf f = {0};
    put(&f, "REDIS0099\xff", 10);
    char msg[256];
    assert_int_not_equal(check_bytes(&f, msg, sizeof(msg), NULL), 0);
    assert_non_null(strstr(msg, "RDB version 99"));
    memset(&f, 0, sizeof(f));
    put(&f, "REDIS00x9\xff", 10);
    assert_int_not_equal(check_bytes(&f, msg, sizeof(msg), NULL), 0);
    assert_non_null(strstr(msg, "four digits"));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_ziplist_valid),
        cmocka_unit_test(test_ziplist_damage),
        cmocka_unit_test(test_intset),
        cmocka_unit_test(test_listpack_forms),
        cmocka_unit_test(test_quicklist2_and_old_types),
        cmocka_unit_test(test_modules_functions_slots),
        cmocka_unit_test(test_lengths_and_strings),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
