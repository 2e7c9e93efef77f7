/*
 * crypto.h - the few primitives the pipeline and the key store need, as thin
 * wrappers over OpenSSL EVP: AES-256-GCM with a reusable context, AES key wrap
 * (RFC 3394), streaming SHA-256 and key ids.
 *
 * Why wrappers: EVP has many ways to be misused (forgetting the tag, accepting
 * a short tag, reusing a context with the wrong direction). Every caller goes
 * through these few functions, which check every return value.
 */
#ifndef TM_CRYPTO_H
#define TM_CRYPTO_H

#include <stddef.h>
#include <stdint.h>

#include "common/err.h"

#define TM_KEY_LEN 32   /* AES-256 */
#define TM_KEY_ID_LEN 8 /* raw bytes; shown as 16 hex chars */
#define TM_GCM_NONCE_LEN 12
#define TM_GCM_TAG_LEN 16
#define TM_WRAPPED_KEY_LEN (TM_KEY_LEN + 8) /* RFC 3394 adds one 64-bit block */

/* Key id: the first 8 bytes of SHA-256("tidemark-key-id\0" || key). It names a
 * key without revealing it, and lets a reader detect "wrong key" before it
 * tries to decrypt anything. */
void tm_key_id(const uint8_t key[TM_KEY_LEN], uint8_t id[TM_KEY_ID_LEN]);
/* Same, as 16 lowercase hex chars + NUL. */
void tm_key_id_hex(const uint8_t key[TM_KEY_LEN], char out[2 * TM_KEY_ID_LEN + 1]);

/* AES-256-GCM context bound to one key; reusable for many frames, not shareable
 * between threads. */
typedef struct tm_gcm tm_gcm;

int tm_gcm_new(tm_gcm **out, const uint8_t key[TM_KEY_LEN], tm_err *err);
void tm_gcm_free(tm_gcm *g);
/* Encrypt len bytes of buf in place and write the tag. */
int tm_gcm_seal(tm_gcm *g, const uint8_t nonce[TM_GCM_NONCE_LEN], const void *aad, size_t aad_len,
                uint8_t *buf, size_t len, uint8_t tag[TM_GCM_TAG_LEN], tm_err *err);
/* Decrypt len bytes of buf in place; TM_EAUTH if the tag does not match (buf
 * then holds garbage and must not be used). */
int tm_gcm_open(tm_gcm *g, const uint8_t nonce[TM_GCM_NONCE_LEN], const void *aad, size_t aad_len,
                uint8_t *buf, size_t len, const uint8_t tag[TM_GCM_TAG_LEN], tm_err *err);

/* AES key wrap (RFC 3394, EVP_aes_256_wrap) of a 32-byte key under a 32-byte
 * key-encryption key. unwrap returns TM_EAUTH when the integrity check fails
 * (wrong master key or tampered record). */
int tm_key_wrap(const uint8_t kek[TM_KEY_LEN], const uint8_t key[TM_KEY_LEN],
                uint8_t out[TM_WRAPPED_KEY_LEN], tm_err *err);
int tm_key_unwrap(const uint8_t kek[TM_KEY_LEN], const uint8_t in[TM_WRAPPED_KEY_LEN],
                  uint8_t key[TM_KEY_LEN], tm_err *err);

/* Streaming SHA-256. */
typedef struct tm_sha256 tm_sha256;

int tm_sha256_new(tm_sha256 **out, tm_err *err);
void tm_sha256_free(tm_sha256 *h);
void tm_sha256_update(tm_sha256 *h, const void *buf, size_t len);
/* Final digest as 64 hex chars + NUL; the context is reset for reuse. */
void tm_sha256_final_hex(tm_sha256 *h, char out[65]);

/* Wipe secrets in a way the compiler cannot drop. */
void tm_secure_zero(void *buf, size_t len);

#endif
