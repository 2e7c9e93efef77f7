/*
 * frame.c - the "TMK1" encrypted frame format of repository objects.
 *
 * Layout of a stored object (all integers big endian):
 *
 *   header, 32 bytes
 *     0  magic        "TMK1"
 *     4  version      u8   = 1
 *     5  flags        u8   bit 0: payload is a zstd stream
 *     6  reserved     u16  = 0
 *     8  key id       8 bytes: tm_key_id() of the data key (wrong key is
 *                     reported before any decryption is attempted)
 *    16  nonce prefix 8 random bytes, fresh for every object
 *    24  frame size   u32  payload bytes of every frame but the last (1 MiB)
 *    28  reserved     u32  = 0
 *   frames, one or more
 *     u32 word        bit 31 = last frame, bits 0..30 = payload length n
 *     n bytes         AES-256-GCM ciphertext
 *     16 bytes        GCM tag
 *
 *   nonce(i) = nonce prefix || u32 i                  (12 bytes)
 *   AAD(i)   = header (32 bytes) || u64 i || u8 last || u32 len(object key) || object key
 *
 * Why this is enough:
 * - The AAD carries the frame index: a reordered frame fails its tag.
 * - The AAD carries the object key and the header (with its random nonce
 *   prefix): a frame moved from another object, or another copy of the same
 *   object, fails its tag; so does a flipped header bit that still parses.
 * - The AAD carries the last flag: dropping the last frame leaves a stream
 *   that ends without a frame flagged last (truncation); a frame whose flag
 *   is flipped fails its tag; bytes after the last frame are rejected
 *   (extension).
 * - Every object, even an empty one, has exactly one last frame, so "ends
 *   after a complete last frame" is the only accepted end.
 * - Nonces never repeat under one key: the counter is per object, and the
 *   64-bit prefix is random per object; data keys are per backup, so the
 *   birthday bound (~2^32 objects per key) is far away.
 * The length word is not secret; a forged length either exceeds the frame size
 * (rejected before any allocation) or shifts the tag (authentication fails).
 */
#include "common/frame.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/util.h"

struct tm_frame_sealer {
    tm_gcm *gcm;
    uint8_t header[TM_FRAME_HEADER_LEN];
    uint8_t nonce_prefix[8];
    uint32_t frame_size;
    uint64_t index;
    int done;
    uint8_t *aad;
    size_t aad_len;
};

enum rstate { R_HEADER, R_LEN, R_BODY, R_DONE, R_FAILED };

struct tm_frame_reader {
    tm_gcm *gcm;
    char *object_key;
    uint8_t key_id[TM_KEY_ID_LEN];
    tm_frame_payload_fn fn;
    void *arg;
    enum rstate state;
    tm_frame_header hdr;
    uint8_t hdr_raw[TM_FRAME_HEADER_LEN];
    uint8_t lenw[TM_FRAME_LEN_LEN];
    uint8_t *body; /* payload + tag of the current frame */
    size_t need;   /* bytes the current state still needs */
    size_t have;
    uint32_t body_len; /* payload length of the current frame */
    int last;
    uint64_t index;
    uint8_t *aad;
    size_t aad_len;
    int fail_code;
    char fail_msg[TM_ERR_MSG_MAX];
};

static void put_be32(uint8_t *p, uint32_t v)
{
    p[0] = (uint8_t)(v >> 24);
    p[1] = (uint8_t)(v >> 16);
    p[2] = (uint8_t)(v >> 8);
    p[3] = (uint8_t)v;
}

static uint32_t get_be32(const uint8_t *p)
{
    return ((uint32_t)p[0] << 24) | ((uint32_t)p[1] << 16) | ((uint32_t)p[2] << 8) | p[3];
}

static void put_be64(uint8_t *p, uint64_t v)
{
    put_be32(p, (uint32_t)(v >> 32));
    put_be32(p + 4, (uint32_t)v);
}

void tm_frame_header_encode(const tm_frame_header *h, uint8_t out[TM_FRAME_HEADER_LEN])
{
    memset(out, 0, TM_FRAME_HEADER_LEN);
    memcpy(out, TM_FRAME_MAGIC, 4);
    out[4] = h->version;
    out[5] = h->flags;
    memcpy(out + 8, h->key_id, TM_KEY_ID_LEN);
    memcpy(out + 16, h->nonce_prefix, 8);
    put_be32(out + 24, h->frame_size);
}

/* AAD = header || u64 index || u8 last || u32 keylen || key; index and last
 * are patched per frame. */
static int aad_build(const uint8_t header[TM_FRAME_HEADER_LEN], const char *object_key,
                     uint8_t **out, size_t *out_len)
{
    size_t klen = strlen(object_key);
    size_t n = TM_FRAME_HEADER_LEN + 8 + 1 + 4 + klen;
    uint8_t *a = malloc(n);
    if (a == NULL) {
        return TM_ENOMEM;
    }
    memcpy(a, header, TM_FRAME_HEADER_LEN);
    memset(a + TM_FRAME_HEADER_LEN, 0, 9);
    put_be32(a + TM_FRAME_HEADER_LEN + 9, (uint32_t)klen);
    memcpy(a + TM_FRAME_HEADER_LEN + 13, object_key, klen);
    *out = a;
    *out_len = n;
    return TM_OK;
}

static void aad_set(uint8_t *aad, uint64_t index, int last)
{
    put_be64(aad + TM_FRAME_HEADER_LEN, index);
    aad[TM_FRAME_HEADER_LEN + 8] = last ? 1 : 0;
}

static void nonce_make(uint8_t nonce[TM_GCM_NONCE_LEN], const uint8_t prefix[8], uint64_t index)
{
    memcpy(nonce, prefix, 8);
    put_be32(nonce + 8, (uint32_t)index);
}

/* ---- writing ---------------------------------------------------------- */

int tm_frame_sealer_new(tm_frame_sealer **out, const uint8_t key[TM_KEY_LEN],
                        const char *object_key, uint8_t flags, uint32_t frame_size, tm_err *err)
{
    if (frame_size == 0) {
        frame_size = TM_FRAME_SIZE_DEFAULT;
    }
    if (frame_size > TM_FRAME_SIZE_MAX || object_key == NULL) {
        return tm_err_set(err, TM_EINVAL, "frame sealer: bad frame size %u or no object key",
                          frame_size);
    }
    tm_frame_sealer *s = calloc(1, sizeof(*s));
    if (s == NULL) {
        return tm_err_set(err, TM_ENOMEM, "frame sealer: out of memory");
    }
    tm_frame_header h = {.version = TM_FRAME_VERSION, .flags = flags, .frame_size = frame_size};
    tm_key_id(key, h.key_id);
    if (tm_random_bytes(h.nonce_prefix, sizeof(h.nonce_prefix)) != TM_OK) {
        free(s);
        return tm_err_set(err, TM_EINTERNAL, "frame sealer: no randomness for the nonce prefix");
    }
    memcpy(s->nonce_prefix, h.nonce_prefix, 8);
    s->frame_size = frame_size;
    tm_frame_header_encode(&h, s->header);
    int rc = tm_gcm_new(&s->gcm, key, err);
    if (rc == TM_OK && aad_build(s->header, object_key, &s->aad, &s->aad_len) != TM_OK) {
        rc = tm_err_set(err, TM_ENOMEM, "frame sealer: out of memory");
    }
    if (rc != TM_OK) {
        tm_frame_sealer_free(s);
        return rc;
    }
    *out = s;
    return TM_OK;
}

void tm_frame_sealer_free(tm_frame_sealer *s)
{
    if (s == NULL) {
        return;
    }
    tm_gcm_free(s->gcm);
    free(s->aad);
    free(s);
}

const uint8_t *tm_frame_sealer_header(const tm_frame_sealer *s)
{
    return s->header;
}

uint32_t tm_frame_sealer_frame_size(const tm_frame_sealer *s)
{
    return s->frame_size;
}

uint64_t tm_frame_sealer_frames(const tm_frame_sealer *s)
{
    return s->index;
}

int tm_frame_seal(tm_frame_sealer *s, uint8_t *frame, size_t payload_len, int last, tm_err *err)
{
    if (s->done) {
        return tm_err_set(err, TM_EINVAL, "frame sealer: frame after the last frame");
    }
    if (payload_len > s->frame_size || (!last && payload_len != s->frame_size)) {
        return tm_err_set(err, TM_EINVAL, "frame sealer: bad frame length %zu", payload_len);
    }
    if (s->index > UINT32_MAX) {
        /* The nonce counter is 32 bits: 4 PiB per object at 1 MiB frames. */
        return tm_err_set(err, TM_EINVAL, "frame sealer: object too large (2^32 frames)");
    }
    uint8_t nonce[TM_GCM_NONCE_LEN];
    nonce_make(nonce, s->nonce_prefix, s->index);
    aad_set(s->aad, s->index, last);
    put_be32(frame, (uint32_t)payload_len | (last ? TM_FRAME_LAST_BIT : 0));
    int rc = tm_gcm_seal(s->gcm, nonce, s->aad, s->aad_len, frame + TM_FRAME_LEN_LEN, payload_len,
                         frame + TM_FRAME_LEN_LEN + payload_len, err);
    if (rc != TM_OK) {
        return rc;
    }
    s->index++;
    s->done = last;
    return TM_OK;
}

int tm_frame_encode(const uint8_t key[TM_KEY_LEN], const char *object_key, uint8_t flags,
                    uint32_t frame_size, const void *data, size_t len, uint8_t **out,
                    size_t *out_len, tm_err *err)
{
    tm_frame_sealer *s = NULL;
    int rc = tm_frame_sealer_new(&s, key, object_key, flags, frame_size, err);
    if (rc != TM_OK) {
        return rc;
    }
    frame_size = s->frame_size;
    size_t nframes = len == 0 ? 1 : (len + frame_size - 1) / frame_size;
    size_t total = TM_FRAME_HEADER_LEN + nframes * TM_FRAME_OVERHEAD + len;
    uint8_t *buf = malloc(total);
    if (buf == NULL) {
        tm_frame_sealer_free(s);
        return tm_err_set(err, TM_ENOMEM, "frame encode: out of memory (%zu bytes)", total);
    }
    memcpy(buf, s->header, TM_FRAME_HEADER_LEN);
    size_t off = TM_FRAME_HEADER_LEN, pos = 0;
    for (size_t i = 0; i < nframes && rc == TM_OK; i++) {
        size_t n = len - pos < frame_size ? len - pos : frame_size;
        if (n > 0) {
            memcpy(buf + off + TM_FRAME_LEN_LEN, (const uint8_t *)data + pos, n);
        }
        rc = tm_frame_seal(s, buf + off, n, i + 1 == nframes, err);
        off += n + TM_FRAME_OVERHEAD;
        pos += n;
    }
    tm_frame_sealer_free(s);
    if (rc != TM_OK) {
        free(buf);
        return rc;
    }
    *out = buf;
    *out_len = total;
    return TM_OK;
}

/* ---- reading ---------------------------------------------------------- */

int tm_frame_reader_new(tm_frame_reader **out, const uint8_t key[TM_KEY_LEN],
                        const char *object_key, tm_frame_payload_fn fn, void *arg, tm_err *err)
{
    tm_frame_reader *r = calloc(1, sizeof(*r));
    if (r == NULL || (r->object_key = strdup(object_key)) == NULL) {
        free(r);
        return tm_err_set(err, TM_ENOMEM, "frame reader: out of memory");
    }
    int rc = tm_gcm_new(&r->gcm, key, err);
    if (rc != TM_OK) {
        tm_frame_reader_free(r);
        return rc;
    }
    tm_key_id(key, r->key_id);
    r->fn = fn;
    r->arg = arg;
    r->state = R_HEADER;
    r->need = TM_FRAME_HEADER_LEN;
    *out = r;
    return TM_OK;
}

void tm_frame_reader_free(tm_frame_reader *r)
{
    if (r == NULL) {
        return;
    }
    tm_gcm_free(r->gcm);
    if (r->body != NULL) {
        tm_secure_zero(r->body, (size_t)r->hdr.frame_size + TM_GCM_TAG_LEN);
    }
    free(r->body);
    free(r->aad);
    free(r->object_key);
    free(r);
}

uint64_t tm_frame_reader_frames(const tm_frame_reader *r)
{
    return r->index;
}

const tm_frame_header *tm_frame_reader_header(const tm_frame_reader *r)
{
    return r->state == R_HEADER ? NULL : &r->hdr;
}

/* Record a failure; the reader stays failed and repeats it. */
static int rfail(tm_frame_reader *r, tm_err *err, int code, const char *what)
{
    if (r->state == R_HEADER) {
        snprintf(r->fail_msg, sizeof(r->fail_msg), "object %.300s: header: %.180s", r->object_key,
                 what);
    } else {
        snprintf(r->fail_msg, sizeof(r->fail_msg), "object %.300s: frame %llu: %.180s",
                 r->object_key, (unsigned long long)r->index, what);
    }
    r->fail_code = code;
    r->state = R_FAILED;
    return tm_err_set(err, code, "%s", r->fail_msg);
}

static int header_parse(tm_frame_reader *r, tm_err *err)
{
    const uint8_t *p = r->hdr_raw;
    if (memcmp(p, TM_FRAME_MAGIC, 4) != 0) {
        return rfail(r, err, TM_ECORRUPT, "bad magic (not a Tidemark encrypted object)");
    }
    if (p[4] != TM_FRAME_VERSION) {
        char what[96];
        snprintf(what, sizeof(what), "unsupported format version %u (this build reads %u)", p[4],
                 TM_FRAME_VERSION);
        return rfail(r, err, TM_ECORRUPT, what);
    }
    r->hdr.version = p[4];
    r->hdr.flags = p[5];
    memcpy(r->hdr.key_id, p + 8, TM_KEY_ID_LEN);
    memcpy(r->hdr.nonce_prefix, p + 16, 8);
    r->hdr.frame_size = get_be32(p + 24);
    if (r->hdr.frame_size == 0 || r->hdr.frame_size > TM_FRAME_SIZE_MAX) {
        return rfail(r, err, TM_ECORRUPT, "bad frame size");
    }
    if (memcmp(r->hdr.key_id, r->key_id, TM_KEY_ID_LEN) != 0) {
        char a[2 * TM_KEY_ID_LEN + 1], b[2 * TM_KEY_ID_LEN + 1], what[160];
        tm_hex(r->hdr.key_id, TM_KEY_ID_LEN, a);
        tm_hex(r->key_id, TM_KEY_ID_LEN, b);
        snprintf(what, sizeof(what),
                 "wrong key: object is encrypted with key id %s, the key given has id %s", a, b);
        return rfail(r, err, TM_EAUTH, what);
    }
    r->body = malloc((size_t)r->hdr.frame_size + TM_GCM_TAG_LEN);
    if (r->body == NULL || aad_build(r->hdr_raw, r->object_key, &r->aad, &r->aad_len) != TM_OK) {
        return rfail(r, err, TM_ENOMEM, "out of memory");
    }
    r->state = R_LEN;
    r->need = TM_FRAME_LEN_LEN;
    r->have = 0;
    return TM_OK;
}

static int len_parse(tm_frame_reader *r, tm_err *err)
{
    uint32_t w = get_be32(r->lenw);
    r->last = (w & TM_FRAME_LAST_BIT) != 0;
    r->body_len = w & ~TM_FRAME_LAST_BIT;
    if (r->index > UINT32_MAX) {
        return rfail(r, err, TM_ECORRUPT, "too many frames");
    }
    if (r->body_len > r->hdr.frame_size) {
        return rfail(r, err, TM_ECORRUPT, "bad frame length (larger than the frame size)");
    }
    if (!r->last && r->body_len != r->hdr.frame_size) {
        return rfail(r, err, TM_ECORRUPT, "bad frame length (short frame not flagged last)");
    }
    r->state = R_BODY;
    r->need = (size_t)r->body_len + TM_GCM_TAG_LEN;
    r->have = 0;
    return TM_OK;
}

static int body_open(tm_frame_reader *r, tm_err *err)
{
    uint8_t nonce[TM_GCM_NONCE_LEN];
    nonce_make(nonce, r->hdr.nonce_prefix, r->index);
    aad_set(r->aad, r->index, r->last);
    int rc = tm_gcm_open(r->gcm, nonce, r->aad, r->aad_len, r->body, r->body_len,
                         r->body + r->body_len, NULL);
    if (rc == TM_EAUTH) {
        /* The key id matched, so at frame 0 a wrong key is unlikely but a
         * colliding or forged key id is possible: say both. */
        return rfail(r, err, TM_ECORRUPT,
                     r->index == 0 ? "authentication failed (wrong key or corrupted)"
                                   : "authentication failed (frame modified, reordered, or "
                                     "swapped from another object)");
    }
    if (rc != TM_OK) {
        return rfail(r, err, rc, "decryption error");
    }
    if (r->fn != NULL) {
        tm_err cb_err = {0};
        rc = r->fn(r->arg, r->body, r->body_len, &cb_err);
        if (rc != TM_OK) {
            return rfail(r, err, rc, cb_err.msg);
        }
    }
    r->index++;
    if (r->last) {
        r->state = R_DONE;
    } else {
        r->state = R_LEN;
        r->need = TM_FRAME_LEN_LEN;
        r->have = 0;
    }
    return TM_OK;
}

int tm_frame_reader_feed(tm_frame_reader *r, const void *buf, size_t len, tm_err *err)
{
    const uint8_t *p = buf;
    while (len > 0) {
        if (r->state == R_FAILED) {
            return tm_err_set(err, r->fail_code, "%s", r->fail_msg);
        }
        if (r->state == R_DONE) {
            return rfail(r, err, TM_ECORRUPT, "unexpected data after the last frame");
        }
        uint8_t *dst = r->state == R_HEADER ? r->hdr_raw : r->state == R_LEN ? r->lenw : r->body;
        size_t n = r->need - r->have < len ? r->need - r->have : len;
        if (n > 0) {
            memcpy(dst + r->have, p, n);
            r->have += n;
            p += n;
            len -= n;
        }
        if (r->have < r->need) {
            break;
        }
        int rc = r->state == R_HEADER ? header_parse(r, err)
                 : r->state == R_LEN  ? len_parse(r, err)
                                      : body_open(r, err);
        if (rc != TM_OK) {
            return rc;
        }
    }
    if (r->state == R_FAILED) {
        return tm_err_set(err, r->fail_code, "%s", r->fail_msg);
    }
    return TM_OK;
}

int tm_frame_reader_finish(tm_frame_reader *r, tm_err *err)
{
    switch (r->state) {
    case R_DONE:
        return TM_OK;
    case R_FAILED:
        return tm_err_set(err, r->fail_code, "%s", r->fail_msg);
    case R_HEADER:
        return rfail(r, err, TM_ECORRUPT,
                     r->have == 0 ? "truncated: empty object, header missing"
                                  : "truncated: header incomplete");
    case R_LEN:
        return rfail(r, err, TM_ECORRUPT,
                     r->have == 0 ? "truncated: last frame missing"
                                  : "truncated: frame incomplete");
    case R_BODY:
    default:
        return rfail(r, err, TM_ECORRUPT, "truncated: frame incomplete");
    }
}

struct decode_buf {
    uint8_t *buf;
    size_t len, cap, max;
};

static int decode_append(void *arg, const uint8_t *p, size_t n, tm_err *err)
{
    struct decode_buf *d = arg;
    if (n == 0) {
        return TM_OK; /* the empty last frame of an empty object */
    }
    if (d->len + n > d->max) {
        return tm_err_set(err, TM_ECORRUPT, "plaintext larger than %zu bytes", d->max);
    }
    if (d->len + n > d->cap) {
        size_t cap = d->cap ? d->cap * 2 : 4096;
        while (cap < d->len + n) {
            cap *= 2;
        }
        uint8_t *nb = realloc(d->buf, cap);
        if (nb == NULL) {
            return tm_err_set(err, TM_ENOMEM, "out of memory");
        }
        d->buf = nb;
        d->cap = cap;
    }
    memcpy(d->buf + d->len, p, n);
    d->len += n;
    return TM_OK;
}

int tm_frame_decode(const uint8_t key[TM_KEY_LEN], const char *object_key, const void *data,
                    size_t len, size_t max_len, uint8_t **out, size_t *out_len, tm_err *err)
{
    struct decode_buf d = {.max = max_len};
    tm_frame_reader *r = NULL;
    int rc = tm_frame_reader_new(&r, key, object_key, decode_append, &d, err);
    if (rc == TM_OK) {
        rc = tm_frame_reader_feed(r, data, len, err);
    }
    if (rc == TM_OK) {
        rc = tm_frame_reader_finish(r, err);
    }
    tm_frame_reader_free(r);
    if (rc != TM_OK) {
        free(d.buf);
        return rc;
    }
    *out = d.buf != NULL ? d.buf : malloc(1);
    *out_len = d.len;
    return *out != NULL ? TM_OK : tm_err_set(err, TM_ENOMEM, "out of memory");
}
