/*
 * test_frame.c - the TMK1 frame codec: round trips and every tamper case,
 * each detected and named (which frame, what failed).
 */
#include "tests/unit/pipeline/helpers.h"

#include "common/frame.h"

#define FS 64 /* small frames so tamper cases are cheap to build */
#define FRAME_BYTES (TM_FRAME_OVERHEAD + FS)

static uint8_t key[TM_KEY_LEN];
static uint8_t key2[TM_KEY_LEN];

static int setup(void **state)
{
    (void)state;
    memset(key, 0x11, sizeof(key));
    memset(key2, 0x22, sizeof(key2));
    return 0;
}

static void encode(const char *obj, size_t n, uint8_t **out, size_t *out_len)
{
    uint8_t *data = malloc(n + 1);
    fill_data(data, n, 0, n);
    tm_err err = {0};
    assert_int_equal(tm_frame_encode(key, obj, 0, FS, data, n, out, out_len, &err), TM_OK);
    free(data);
}

/* Decode and expect failure with code and a message containing every needle. */
static void expect_fail(const uint8_t *k, const char *obj, const uint8_t *buf, size_t len, int code,
                        const char *n1, const char *n2)
{
    uint8_t *out = NULL;
    size_t out_len = 0;
    tm_err err = {0};
    int rc = tm_frame_decode(k, obj, buf, len, 1 << 20, &out, &out_len, &err);
    if (rc != code || strstr(err.msg, n1) == NULL || (n2 && strstr(err.msg, n2) == NULL)) {
        fail_msg("rc=%d want %d, msg=\"%s\", want \"%s\" \"%s\"", rc, code, err.msg, n1,
                 n2 ? n2 : "");
    }
    assert_null(out);
}

static void test_roundtrip_sizes(void **state)
{
    (void)state;
    size_t sizes[] = {0, 1, FS - 1, FS, FS + 1, 3 * FS, 10 * FS + 7};
    for (size_t i = 0; i < sizeof(sizes) / sizeof(sizes[0]); i++) {
        size_t n = sizes[i];
        uint8_t *enc = NULL, *dec = NULL;
        size_t enc_len = 0, dec_len = 0;
        encode("t/obj", n, &enc, &enc_len);
        size_t frames = n == 0 ? 1 : (n + FS - 1) / FS;
        assert_int_equal(enc_len, TM_FRAME_HEADER_LEN + frames * TM_FRAME_OVERHEAD + n);
        tm_err err = {0};
        assert_int_equal(tm_frame_decode(key, "t/obj", enc, enc_len, 1 << 20, &dec, &dec_len, &err),
                         TM_OK);
        uint8_t *want = malloc(n + 1);
        fill_data(want, n, 0, n);
        assert_int_equal(dec_len, n);
        assert_memory_equal(dec, want, n);
        /* Fed one byte at a time, the streaming reader gives the same answer. */
        tm_frame_reader *r = NULL;
        assert_int_equal(tm_frame_reader_new(&r, key, "t/obj", NULL, NULL, &err), TM_OK);
        for (size_t k = 0; k < enc_len; k++) {
            assert_int_equal(tm_frame_reader_feed(r, enc + k, 1, &err), TM_OK);
        }
        assert_int_equal(tm_frame_reader_finish(r, &err), TM_OK);
        assert_int_equal(tm_frame_reader_frames(r), frames);
        tm_frame_reader_free(r);
        free(want);
        free(enc);
        free(dec);
    }
}

/* A 3-frame object: frames 64, 64, 32 bytes. */
static void three_frames(const char *obj, uint8_t **enc, size_t *len)
{
    encode(obj, 2 * FS + 32, enc, len);
    assert_int_equal(*len, TM_FRAME_HEADER_LEN + 2 * FRAME_BYTES + TM_FRAME_OVERHEAD + 32);
}

#define FRAME_OFF(i) (TM_FRAME_HEADER_LEN + (size_t)(i)*FRAME_BYTES)

static void test_reorder(void **state)
{
    (void)state;
    uint8_t *a, tmp[FRAME_BYTES];
    size_t n;
    three_frames("t/a", &a, &n);
    memcpy(tmp, a + FRAME_OFF(0), FRAME_BYTES);
    memcpy(a + FRAME_OFF(0), a + FRAME_OFF(1), FRAME_BYTES);
    memcpy(a + FRAME_OFF(1), tmp, FRAME_BYTES);
    expect_fail(key, "t/a", a, n, TM_ECORRUPT, "object t/a: frame 0: authentication failed", NULL);
    free(a);
}

static void test_swap_from_other_object(void **state)
{
    (void)state;
    uint8_t *a, *b;
    size_t na, nb;
    three_frames("t/a", &a, &na);
    three_frames("t/b", &b, &nb);
    memcpy(a + FRAME_OFF(1), b + FRAME_OFF(1), FRAME_BYTES);
    expect_fail(key, "t/a", a, na, TM_ECORRUPT, "frame 1: authentication failed", "swapped");
    /* Same object key, another copy (another nonce prefix): still detected. */
    uint8_t *a2;
    free(b);
    three_frames("t/a", &a2, &na);
    three_frames("t/a", &b, &nb);
    memcpy(a2 + FRAME_OFF(2), b + FRAME_OFF(2), nb - FRAME_OFF(2));
    expect_fail(key, "t/a", a2, na, TM_ECORRUPT, "frame 2: authentication failed", NULL);
    free(a);
    free(a2);
    free(b);
}

static void test_drop_last(void **state)
{
    (void)state;
    uint8_t *a;
    size_t n;
    three_frames("t/a", &a, &n);
    expect_fail(key, "t/a", a, FRAME_OFF(2), TM_ECORRUPT, "frame 2: truncated: last frame missing",
                NULL);
    expect_fail(key, "t/a", a, n - 1, TM_ECORRUPT, "frame 2: truncated: frame incomplete", NULL);
    expect_fail(key, "t/a", a, 0, TM_ECORRUPT, "header: truncated", NULL);
    free(a);
}

static void test_append(void **state)
{
    (void)state;
    uint8_t *a, *b;
    size_t na, nb;
    three_frames("t/a", &a, &na);
    three_frames("t/a", &b, &nb);
    uint8_t *c = malloc(na + FRAME_BYTES);
    memcpy(c, a, na);
    memcpy(c + na, b + FRAME_OFF(0), FRAME_BYTES);
    expect_fail(key, "t/a", c, na + FRAME_BYTES, TM_ECORRUPT,
                "frame 3: unexpected data after the last frame", NULL);
    /* Clearing the last flag of frame 2 to extend the object: caught. */
    a[FRAME_OFF(2)] &= 0x7f;
    expect_fail(key, "t/a", a, na, TM_ECORRUPT, "frame 2: bad frame length", NULL);
    free(a);
    free(b);
    free(c);
}

static void test_bit_flips(void **state)
{
    (void)state;
    uint8_t *a;
    size_t n;
    three_frames("t/a", &a, &n);
    struct {
        size_t off;
        int code;
        const char *want;
    } cases[] = {
        {0, TM_ECORRUPT, "header: bad magic"},
        {4, TM_ECORRUPT, "header: unsupported format version"},
        {9, TM_EAUTH, "header: wrong key"},
        {17, TM_ECORRUPT, "frame 0: authentication failed (wrong key or corrupted)"},
        {29, TM_ECORRUPT, "frame 0: authentication failed"},
        {FRAME_OFF(1) + TM_FRAME_LEN_LEN + 5, TM_ECORRUPT, "frame 1: authentication failed"},
        {FRAME_OFF(2) - 1, TM_ECORRUPT, "frame 1: authentication failed"}, /* tag */
        {FRAME_OFF(2) + 3, TM_ECORRUPT, "frame 2: truncated"},  /* length word: 32 -> 33 */
        {n - 1, TM_ECORRUPT, "frame 2: authentication failed"}, /* last tag */
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        a[cases[i].off] ^= 0x01;
        expect_fail(key, "t/a", a, n, cases[i].code, cases[i].want, NULL);
        a[cases[i].off] ^= 0x01;
    }
    free(a);
}

static void test_wrong_key_and_object(void **state)
{
    (void)state;
    uint8_t *a;
    size_t n;
    three_frames("t/a", &a, &n);
    expect_fail(key2, "t/a", a, n, TM_EAUTH, "object t/a: header: wrong key", "key id");
    expect_fail(key, "t/other", a, n, TM_ECORRUPT, "object t/other: frame 0: authentication failed",
                NULL);
    free(a);
}

static void test_reader_stays_failed(void **state)
{
    (void)state;
    uint8_t *a;
    size_t n;
    three_frames("t/a", &a, &n);
    a[FRAME_OFF(1) + 10] ^= 0x80;
    tm_frame_reader *r = NULL;
    tm_err err = {0};
    assert_int_equal(tm_frame_reader_new(&r, key, "t/a", NULL, NULL, &err), TM_OK);
    assert_int_equal(tm_frame_reader_feed(r, a, n, &err), TM_ECORRUPT);
    assert_int_equal(tm_frame_reader_feed(r, a, 1, &err), TM_ECORRUPT);
    assert_int_equal(tm_frame_reader_finish(r, &err), TM_ECORRUPT);
    assert_non_null(strstr(err.msg, "frame 1"));
    tm_frame_reader_free(r);
    free(a);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_roundtrip_sizes),
        cmocka_unit_test(test_reorder),
        cmocka_unit_test(test_swap_from_other_object),
        cmocka_unit_test(test_drop_last),
        cmocka_unit_test(test_append),
        cmocka_unit_test(test_bit_flips),
        cmocka_unit_test(test_wrong_key_and_object),
        cmocka_unit_test(test_reader_stays_failed),
    };
    return cmocka_run_group_tests(tests, setup, NULL);
}
