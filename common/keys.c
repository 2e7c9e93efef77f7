/*
 * keys.c - master key files, the keyring, data key records and rotation.
 * See keys.h for the formats.
 */
#include "common/keys.h"

#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "common/secrets.h"
#include "common/util.h"

#define RECORD_MAGIC "TMDK"
#define RECORD_VERSION 1

struct tm_keyring {
    tm_master_key *keys;
    size_t n, cap;
};

void tm_master_key_from_bytes(const uint8_t key[TM_KEY_LEN], tm_master_key *out)
{
    memcpy(out->key, key, TM_KEY_LEN);
    tm_key_id(out->key, out->id);
    tm_hex(out->id, TM_KEY_ID_LEN, out->id_hex);
}

void tm_master_key_clear(tm_master_key *k)
{
    tm_secure_zero(k, sizeof(*k));
}

static int hexval(int c)
{
    if (c >= '0' && c <= '9') {
        return c - '0';
    }
    c = tolower(c);
    return c >= 'a' && c <= 'f' ? c - 'a' + 10 : -1;
}

/* 64 hex chars, surrounding whitespace ignored. */
static int parse_hex_key(const char *s, size_t len, uint8_t key[TM_KEY_LEN])
{
    while (len > 0 && isspace((unsigned char)s[len - 1])) {
        len--;
    }
    while (len > 0 && isspace((unsigned char)*s)) {
        s++;
        len--;
    }
    if (len != 2 * TM_KEY_LEN) {
        return TM_EINVAL;
    }
    for (size_t i = 0; i < TM_KEY_LEN; i++) {
        int hi = hexval((unsigned char)s[2 * i]), lo = hexval((unsigned char)s[2 * i + 1]);
        if (hi < 0 || lo < 0) {
            return TM_EINVAL;
        }
        key[i] = (uint8_t)(hi << 4 | lo);
    }
    return TM_OK;
}

int tm_keys_generate_master(const char *path, tm_master_key *out, tm_err *err)
{
    uint8_t key[TM_KEY_LEN];
    char hex[2 * TM_KEY_LEN + 2];
    if (tm_random_bytes(key, sizeof(key)) != TM_OK) {
        return tm_err_set(err, TM_EINTERNAL, "master key: no randomness");
    }
    tm_hex(key, sizeof(key), hex);
    hex[2 * TM_KEY_LEN] = '\n';
    /* No check-then-write: the no-replace rename is the check, so two
     * generators racing cannot both think they own the key. */
    int rc = tm_secret_file_write(path, hex, 2 * TM_KEY_LEN + 1, 0, err);
    if (rc == TM_EEXIST) {
        tm_err_set(err, TM_EEXIST,
                   "master key %s already exists; refusing to replace it (every backup "
                   "wrapped with it would become unreadable)",
                   path);
    }
    if (rc == TM_OK && out != NULL) {
        tm_master_key_from_bytes(key, out);
    }
    tm_secure_zero(key, sizeof(key));
    tm_secure_zero(hex, sizeof(hex));
    return rc;
}

int tm_keys_load_master_file(const char *path, tm_master_key *out, tm_err *err)
{
    char *buf = NULL;
    size_t len = 0;
    int rc = tm_secret_file_check(path, "master key", TM_SECRET_REFUSE, err);
    if (rc == TM_OK) {
        rc = tm_file_read(path, &buf, &len, err);
    }
    if (rc != TM_OK) {
        return tm_err_prefix(err, "loading master key");
    }
    uint8_t key[TM_KEY_LEN];
    if (len == TM_KEY_LEN) {
        memcpy(key, buf, TM_KEY_LEN); /* raw form */
    } else if (parse_hex_key(buf, len, key) != TM_OK) {
        rc = tm_err_set(err, TM_ECONFIG,
                        "master key %s: expected 64 hex characters (or 32 raw bytes), found %zu "
                        "bytes; create one with tidemarkctl keys generate",
                        path, len);
    }
    if (rc == TM_OK) {
        tm_master_key_from_bytes(key, out);
    }
    tm_secure_zero(key, sizeof(key));
    tm_secure_zero(buf, len);
    free(buf);
    return rc;
}

int tm_keys_load_master_env(const char *name, tm_master_key *out, tm_err *err)
{
    const char *v = getenv(name);
    uint8_t key[TM_KEY_LEN];
    if (v == NULL) {
        return tm_err_set(err, TM_ECONFIG, "master key: environment variable %s is not set", name);
    }
    if (parse_hex_key(v, strlen(v), key) != TM_OK) {
        return tm_err_set(err, TM_ECONFIG,
                          "master key: environment variable %s must hold 64 hex characters", name);
    }
    tm_master_key_from_bytes(key, out);
    tm_secure_zero(key, sizeof(key));
    return TM_OK;
}

int tm_keys_load_master_ref(const char *ref, tm_master_key *out, tm_err *err)
{
    if (strncmp(ref, "env:", 4) == 0) {
        return tm_keys_load_master_env(ref + 4, out, err);
    }
    return tm_keys_load_master_file(ref, out, err);
}

int tm_keyring_new(tm_keyring **out, tm_err *err)
{
    *out = calloc(1, sizeof(**out));
    return *out != NULL ? TM_OK : tm_err_set(err, TM_ENOMEM, "keyring: out of memory");
}

void tm_keyring_free(tm_keyring *kr)
{
    if (kr == NULL) {
        return;
    }
    if (kr->keys != NULL) {
        tm_secure_zero(kr->keys, kr->cap * sizeof(*kr->keys));
    }
    free(kr->keys);
    free(kr);
}

int tm_keyring_add(tm_keyring *kr, const tm_master_key *k, tm_err *err)
{
    if (tm_keyring_find(kr, k->id) != NULL) {
        return TM_OK;
    }
    if (kr->n == kr->cap) {
        /* Grow by copying so old key material can be wiped, not left in a
         * freed realloc block. */
        size_t cap = kr->cap ? kr->cap * 2 : 4;
        tm_master_key *nk = calloc(cap, sizeof(*nk));
        if (nk == NULL) {
            return tm_err_set(err, TM_ENOMEM, "keyring: out of memory");
        }
        if (kr->keys != NULL) {
            memcpy(nk, kr->keys, kr->n * sizeof(*nk));
            tm_secure_zero(kr->keys, kr->cap * sizeof(*kr->keys));
            free(kr->keys);
        }
        kr->keys = nk;
        kr->cap = cap;
    }
    kr->keys[kr->n++] = *k;
    return TM_OK;
}

const tm_master_key *tm_keyring_find(const tm_keyring *kr, const uint8_t id[TM_KEY_ID_LEN])
{
    for (size_t i = 0; i < kr->n; i++) {
        if (memcmp(kr->keys[i].id, id, TM_KEY_ID_LEN) == 0) {
            return &kr->keys[i];
        }
    }
    return NULL;
}

static int record_build(const tm_master_key *mk, const uint8_t key[TM_KEY_LEN],
                        uint8_t record[TM_DATA_KEY_RECORD_LEN], tm_err *err)
{
    memset(record, 0, TM_DATA_KEY_RECORD_LEN);
    memcpy(record, RECORD_MAGIC, 4);
    record[4] = RECORD_VERSION;
    memcpy(record + 8, mk->id, TM_KEY_ID_LEN);
    tm_key_id(key, record + 16);
    return tm_key_wrap(mk->key, key, record + 24, err);
}

int tm_data_key_record_ids(const uint8_t record[TM_DATA_KEY_RECORD_LEN],
                           uint8_t master_id[TM_KEY_ID_LEN], uint8_t data_key_id[TM_KEY_ID_LEN],
                           tm_err *err)
{
    if (memcmp(record, RECORD_MAGIC, 4) != 0 || record[4] != RECORD_VERSION) {
        return tm_err_set(err, TM_ECORRUPT, "data key record: bad magic or version");
    }
    if (master_id != NULL) {
        memcpy(master_id, record + 8, TM_KEY_ID_LEN);
    }
    if (data_key_id != NULL) {
        memcpy(data_key_id, record + 16, TM_KEY_ID_LEN);
    }
    return TM_OK;
}

int tm_data_key_new(const tm_master_key *mk, uint8_t key[TM_KEY_LEN],
                    uint8_t record[TM_DATA_KEY_RECORD_LEN], tm_err *err)
{
    if (tm_random_bytes(key, TM_KEY_LEN) != TM_OK) {
        return tm_err_set(err, TM_EINTERNAL, "data key: no randomness");
    }
    return record_build(mk, key, record, err);
}

int tm_data_key_unwrap(const tm_keyring *kr, const uint8_t record[TM_DATA_KEY_RECORD_LEN],
                       uint8_t key[TM_KEY_LEN], tm_err *err)
{
    uint8_t mid[TM_KEY_ID_LEN], did[TM_KEY_ID_LEN], got[TM_KEY_ID_LEN];
    char hex[2 * TM_KEY_ID_LEN + 1];
    int rc = tm_data_key_record_ids(record, mid, did, err);
    if (rc != TM_OK) {
        return rc;
    }
    tm_hex(mid, TM_KEY_ID_LEN, hex);
    const tm_master_key *mk = tm_keyring_find(kr, mid);
    if (mk == NULL) {
        return tm_err_set(err, TM_ENOENT,
                          "data key record is wrapped with master key %s, which is not in the "
                          "keyring (load the old master key until rotation is done)",
                          hex);
    }
    if ((rc = tm_key_unwrap(mk->key, record + 24, key, err)) != TM_OK) {
        return tm_err_prefix(err, "data key record (master key %s)", hex);
    }
    tm_key_id(key, got);
    if (memcmp(got, did, TM_KEY_ID_LEN) != 0) {
        tm_secure_zero(key, TM_KEY_LEN);
        return tm_err_set(err, TM_ECORRUPT, "data key record: data key id does not match its key");
    }
    return TM_OK;
}

int tm_data_key_rewrap(const tm_keyring *kr, const tm_master_key *new_mk,
                       const uint8_t in[TM_DATA_KEY_RECORD_LEN],
                       uint8_t out[TM_DATA_KEY_RECORD_LEN], tm_err *err)
{
    uint8_t key[TM_KEY_LEN];
    int rc = tm_data_key_unwrap(kr, in, key, err);
    if (rc == TM_OK) {
        rc = record_build(new_mk, key, out, err);
    }
    tm_secure_zero(key, sizeof(key));
    return rc;
}
