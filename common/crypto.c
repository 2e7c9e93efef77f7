/*
 * crypto.c - AES-256-GCM, AES key wrap, SHA-256 and key ids over OpenSSL EVP.
 *
 * GCM contexts are created once per object and re-keyed only with a new nonce
 * per frame: EVP_CIPHER_CTX_new + key schedule per 1 MiB frame would be cheap
 * too, but reuse keeps the hot loop free of allocations.
 */
#include "common/crypto.h"

#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/sha.h>
#include <stdlib.h>
#include <string.h>

#include "common/util.h"

struct tm_gcm {
    EVP_CIPHER_CTX *enc;
    EVP_CIPHER_CTX *dec;
};

struct tm_sha256 {
    EVP_MD_CTX *ctx;
};

void tm_secure_zero(void *buf, size_t len)
{
    OPENSSL_cleanse(buf, len);
}

void tm_key_id(const uint8_t key[TM_KEY_LEN], uint8_t id[TM_KEY_ID_LEN])
{
    /* Domain-separated so the id is never equal to some other hash of the key. */
    static const char label[] = "tidemark-key-id"; /* hashed with its NUL */
    uint8_t buf[sizeof(label) + TM_KEY_LEN];
    uint8_t md[SHA256_DIGEST_LENGTH];
    memcpy(buf, label, sizeof(label));
    memcpy(buf + sizeof(label), key, TM_KEY_LEN);
    SHA256(buf, sizeof(buf), md);
    memcpy(id, md, TM_KEY_ID_LEN);
    tm_secure_zero(buf, sizeof(buf));
}

void tm_key_id_hex(const uint8_t key[TM_KEY_LEN], char out[2 * TM_KEY_ID_LEN + 1])
{
    uint8_t id[TM_KEY_ID_LEN];
    tm_key_id(key, id);
    tm_hex(id, sizeof(id), out);
}

int tm_gcm_new(tm_gcm **out, const uint8_t key[TM_KEY_LEN], tm_err *err)
{
    tm_gcm *g = calloc(1, sizeof(*g));
    if (g == NULL) {
        return tm_err_set(err, TM_ENOMEM, "gcm: out of memory");
    }
    g->enc = EVP_CIPHER_CTX_new();
    g->dec = EVP_CIPHER_CTX_new();
    if (g->enc == NULL || g->dec == NULL ||
        EVP_EncryptInit_ex(g->enc, EVP_aes_256_gcm(), NULL, NULL, NULL) != 1 ||
        EVP_CIPHER_CTX_ctrl(g->enc, EVP_CTRL_GCM_SET_IVLEN, TM_GCM_NONCE_LEN, NULL) != 1 ||
        EVP_EncryptInit_ex(g->enc, NULL, NULL, key, NULL) != 1 ||
        EVP_DecryptInit_ex(g->dec, EVP_aes_256_gcm(), NULL, NULL, NULL) != 1 ||
        EVP_CIPHER_CTX_ctrl(g->dec, EVP_CTRL_GCM_SET_IVLEN, TM_GCM_NONCE_LEN, NULL) != 1 ||
        EVP_DecryptInit_ex(g->dec, NULL, NULL, key, NULL) != 1) {
        tm_gcm_free(g);
        return tm_err_set(err, TM_EINTERNAL, "gcm: cannot initialise AES-256-GCM (OpenSSL)");
    }
    *out = g;
    return TM_OK;
}

void tm_gcm_free(tm_gcm *g)
{
    if (g == NULL) {
        return;
    }
    EVP_CIPHER_CTX_free(g->enc); /* also wipes the key schedule */
    EVP_CIPHER_CTX_free(g->dec);
    free(g);
}

/* EVP takes int lengths; frames are at most a few MiB, but check anyway. */
static int gcm_len_ok(size_t aad_len, size_t len)
{
    return aad_len <= (size_t)INT32_MAX && len <= (size_t)INT32_MAX;
}

int tm_gcm_seal(tm_gcm *g, const uint8_t nonce[TM_GCM_NONCE_LEN], const void *aad, size_t aad_len,
                uint8_t *buf, size_t len, uint8_t tag[TM_GCM_TAG_LEN], tm_err *err)
{
    int n = 0;
    if (!gcm_len_ok(aad_len, len)) {
        return tm_err_set(err, TM_EINVAL, "gcm: frame too large");
    }
    if (EVP_EncryptInit_ex(g->enc, NULL, NULL, NULL, nonce) != 1 ||
        (aad_len > 0 && EVP_EncryptUpdate(g->enc, NULL, &n, aad, (int)aad_len) != 1) ||
        (len > 0 && EVP_EncryptUpdate(g->enc, buf, &n, buf, (int)len) != 1) ||
        EVP_EncryptFinal_ex(g->enc, buf + len, &n) != 1 ||
        EVP_CIPHER_CTX_ctrl(g->enc, EVP_CTRL_GCM_GET_TAG, TM_GCM_TAG_LEN, tag) != 1) {
        return tm_err_set(err, TM_EINTERNAL, "gcm: encryption failed (OpenSSL)");
    }
    return TM_OK;
}

int tm_gcm_open(tm_gcm *g, const uint8_t nonce[TM_GCM_NONCE_LEN], const void *aad, size_t aad_len,
                uint8_t *buf, size_t len, const uint8_t tag[TM_GCM_TAG_LEN], tm_err *err)
{
    int n = 0;
    if (!gcm_len_ok(aad_len, len)) {
        return tm_err_set(err, TM_EINVAL, "gcm: frame too large");
    }
    if (EVP_DecryptInit_ex(g->dec, NULL, NULL, NULL, nonce) != 1 ||
        (aad_len > 0 && EVP_DecryptUpdate(g->dec, NULL, &n, aad, (int)aad_len) != 1) ||
        (len > 0 && EVP_DecryptUpdate(g->dec, buf, &n, buf, (int)len) != 1) ||
        EVP_CIPHER_CTX_ctrl(g->dec, EVP_CTRL_GCM_SET_TAG, TM_GCM_TAG_LEN, (void *)tag) != 1) {
        return tm_err_set(err, TM_EINTERNAL, "gcm: decryption failed (OpenSSL)");
    }
    /* The tag is checked here and only here: a failure means the frame, its
     * position, its object or the key is not what the writer used. */
    if (EVP_DecryptFinal_ex(g->dec, buf + len, &n) != 1) {
        return tm_err_set(err, TM_EAUTH, "authentication failed");
    }
    return TM_OK;
}

static int key_wrap_op(int enc, const uint8_t kek[TM_KEY_LEN], const uint8_t *in, size_t in_len,
                       uint8_t *out, size_t out_len, tm_err *err)
{
    EVP_CIPHER_CTX *c = EVP_CIPHER_CTX_new();
    int n = 0, m = 0;
    int rc = TM_OK;
    if (c == NULL) {
        return tm_err_set(err, TM_ENOMEM, "key wrap: out of memory");
    }
    /* OpenSSL refuses wrap modes through EVP unless the caller opts in. */
    EVP_CIPHER_CTX_set_flags(c, EVP_CIPHER_CTX_FLAG_WRAP_ALLOW);
    if (EVP_CipherInit_ex(c, EVP_aes_256_wrap(), NULL, kek, NULL, enc) != 1) {
        rc = tm_err_set(err, TM_EINTERNAL, "key wrap: cannot initialise AES key wrap (OpenSSL)");
    } else if (EVP_CipherUpdate(c, out, &n, in, (int)in_len) != 1 ||
               EVP_CipherFinal_ex(c, out + n, &m) != 1 || (size_t)(n + m) != out_len) {
        rc = enc ? tm_err_set(err, TM_EINTERNAL, "key wrap failed (OpenSSL)")
                 : tm_err_set(err, TM_EAUTH,
                              "key unwrap failed: integrity check failed "
                              "(wrong master key or tampered key record)");
    }
    EVP_CIPHER_CTX_free(c);
    return rc;
}

int tm_key_wrap(const uint8_t kek[TM_KEY_LEN], const uint8_t key[TM_KEY_LEN],
                uint8_t out[TM_WRAPPED_KEY_LEN], tm_err *err)
{
    return key_wrap_op(1, kek, key, TM_KEY_LEN, out, TM_WRAPPED_KEY_LEN, err);
}

int tm_key_unwrap(const uint8_t kek[TM_KEY_LEN], const uint8_t in[TM_WRAPPED_KEY_LEN],
                  uint8_t key[TM_KEY_LEN], tm_err *err)
{
    uint8_t tmp[TM_WRAPPED_KEY_LEN + 16];
    int rc = key_wrap_op(0, kek, in, TM_WRAPPED_KEY_LEN, tmp, TM_KEY_LEN, err);
    if (rc == TM_OK) {
        memcpy(key, tmp, TM_KEY_LEN);
    }
    tm_secure_zero(tmp, sizeof(tmp));
    return rc;
}

int tm_sha256_new(tm_sha256 **out, tm_err *err)
{
    tm_sha256 *h = calloc(1, sizeof(*h));
    if (h == NULL || (h->ctx = EVP_MD_CTX_new()) == NULL ||
        EVP_DigestInit_ex(h->ctx, EVP_sha256(), NULL) != 1) {
        tm_sha256_free(h);
        return tm_err_set(err, TM_ENOMEM, "sha256: cannot create context");
    }
    *out = h;
    return TM_OK;
}

void tm_sha256_free(tm_sha256 *h)
{
    if (h == NULL) {
        return;
    }
    EVP_MD_CTX_free(h->ctx);
    free(h);
}

void tm_sha256_update(tm_sha256 *h, const void *buf, size_t len)
{
    if (len > 0) {
        EVP_DigestUpdate(h->ctx, buf, len);
    }
}

void tm_sha256_final_hex(tm_sha256 *h, char out[65])
{
    uint8_t md[SHA256_DIGEST_LENGTH];
    unsigned int n = 0;
    EVP_DigestFinal_ex(h->ctx, md, &n);
    tm_hex(md, sizeof(md), out);
    EVP_DigestInit_ex(h->ctx, EVP_sha256(), NULL);
}
