/*
 * frame.h - the encrypted frame codec of repository objects ("TMK1").
 *
 * An object is a 32-byte header followed by frames; each frame is sealed with
 * AES-256-GCM and authenticated together with the header, the object key
 * (repository path), its index and a last-frame flag. The format is documented
 * at the top of frame.c.
 *
 * Writing: a tm_frame_sealer seals frames in place (the pipeline compresses
 * straight into the frame buffer, so there is no copy). tm_frame_encode() is
 * the one-shot form for small records (manifests, tests).
 * Reading: a tm_frame_reader is push-based: feed it stored bytes in any
 * pieces; it calls back with each authenticated plaintext frame.
 */
#ifndef TM_FRAME_H
#define TM_FRAME_H

#include <stddef.h>
#include <stdint.h>

#include "common/crypto.h"
#include "common/err.h"

#define TM_FRAME_MAGIC "TMK1"
#define TM_FRAME_VERSION 1
#define TM_FRAME_HEADER_LEN 32
#define TM_FRAME_LEN_LEN 4 /* u32 big endian: bit 31 = last, bits 0..30 = payload length */
#define TM_FRAME_OVERHEAD (TM_FRAME_LEN_LEN + TM_GCM_TAG_LEN)
#define TM_FRAME_SIZE_DEFAULT ((uint32_t)1 << 20) /* 1 MiB of payload per frame */
#define TM_FRAME_SIZE_MAX ((uint32_t)16 << 20)    /* readers refuse more: bounded memory */
#define TM_FRAME_LAST_BIT 0x80000000u

/* Header flags. */
#define TM_FRAME_F_ZSTD 0x01 /* payload is a zstd stream */

typedef struct tm_frame_header {
    uint8_t version;
    uint8_t flags;
    uint8_t key_id[TM_KEY_ID_LEN];
    uint8_t nonce_prefix[8];
    uint32_t frame_size; /* payload bytes of every frame but the last */
} tm_frame_header;

void tm_frame_header_encode(const tm_frame_header *h, uint8_t out[TM_FRAME_HEADER_LEN]);

typedef struct tm_frame_sealer tm_frame_sealer;

/* A sealer for one object: draws the random nonce prefix and builds the header.
 * frame_size 0 = TM_FRAME_SIZE_DEFAULT. */
int tm_frame_sealer_new(tm_frame_sealer **out, const uint8_t key[TM_KEY_LEN],
                        const char *object_key, uint8_t flags, uint32_t frame_size, tm_err *err);
void tm_frame_sealer_free(tm_frame_sealer *s);
const uint8_t *tm_frame_sealer_header(const tm_frame_sealer *s); /* TM_FRAME_HEADER_LEN bytes */
uint32_t tm_frame_sealer_frame_size(const tm_frame_sealer *s);
uint64_t tm_frame_sealer_frames(const tm_frame_sealer *s); /* frames sealed so far */
/* Seal the next frame in place. frame points at TM_FRAME_LEN_LEN + payload_len
 * + TM_GCM_TAG_LEN bytes whose payload starts at frame + TM_FRAME_LEN_LEN; the
 * length word and the tag are filled in. A non-last frame must be exactly
 * frame_size bytes; the last frame may be 0..frame_size. Nothing may be sealed
 * after the last frame. */
int tm_frame_seal(tm_frame_sealer *s, uint8_t *frame, size_t payload_len, int last, tm_err *err);

/* One shot: header + frames of data into a malloc'd buffer. */
int tm_frame_encode(const uint8_t key[TM_KEY_LEN], const char *object_key, uint8_t flags,
                    uint32_t frame_size, const void *data, size_t len, uint8_t **out,
                    size_t *out_len, tm_err *err);

/* Called with each authenticated frame's plaintext, in order. Returning
 * non-zero stops the reader with that code. */
typedef int (*tm_frame_payload_fn)(void *arg, const uint8_t *buf, size_t len, tm_err *err);

typedef struct tm_frame_reader tm_frame_reader;

int tm_frame_reader_new(tm_frame_reader **out, const uint8_t key[TM_KEY_LEN],
                        const char *object_key, tm_frame_payload_fn fn, void *arg, tm_err *err);
void tm_frame_reader_free(tm_frame_reader *r);
/* Feed stored bytes. Errors: TM_ECORRUPT / TM_EAUTH "object <key>: frame <n>:
 * <what failed>"; once failed, the reader stays failed. */
int tm_frame_reader_feed(tm_frame_reader *r, const void *buf, size_t len, tm_err *err);
/* End of the stored bytes: fails unless the last frame was read completely. */
int tm_frame_reader_finish(tm_frame_reader *r, tm_err *err);
uint64_t tm_frame_reader_frames(const tm_frame_reader *r);
/* The header, once read (NULL before). */
const tm_frame_header *tm_frame_reader_header(const tm_frame_reader *r);

/* One shot: decode a whole buffer into a malloc'd plaintext (max_len caps it). */
int tm_frame_decode(const uint8_t key[TM_KEY_LEN], const char *object_key, const void *data,
                    size_t len, size_t max_len, uint8_t **out, size_t *out_len, tm_err *err);

#endif
