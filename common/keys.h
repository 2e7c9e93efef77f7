/*
 * keys.h - envelope encryption: master keys, per-backup data keys, rotation.
 *
 * Master key file: 64 hex characters (32 bytes), optionally followed by a
 * newline; a file of exactly 32 raw bytes is accepted too. Hex is the
 * documented format because it survives copy-paste, YAML and secret stores.
 * Key id: tm_key_id() (8 bytes, 16 hex chars), derived from the key itself, so
 * it cannot drift from the key it names.
 *
 * A data key is 32 random bytes per backup. It never leaves the host in clear:
 * the repository stores a data key record (TM_DATA_KEY_RECORD_LEN bytes):
 *
 *   0  "TMDK"   4   version u8 = 1   5  reserved (3 bytes, 0)
 *   8  master key id (8)   16  data key id (8)   24  AES key wrap (RFC 3394) of the data key (40)
 *
 * Rotation rewraps the record under a new master key; data is never
 * re-encrypted. A keyring holds every master key still needed, so records not
 * yet rewrapped stay readable.
 */
#ifndef TM_KEYS_H
#define TM_KEYS_H

#include <stddef.h>
#include <stdint.h>

#include "common/crypto.h"
#include "common/err.h"

#define TM_DATA_KEY_RECORD_LEN 64

typedef struct tm_master_key {
    uint8_t key[TM_KEY_LEN];
    uint8_t id[TM_KEY_ID_LEN];
    char id_hex[2 * TM_KEY_ID_LEN + 1];
} tm_master_key;

/* Create a new master key file (hex, mode 0600, atomic). Refuses to replace
 * an existing file: losing a master key loses every backup under it. */
int tm_keys_generate_master(const char *path, tm_master_key *out, tm_err *err);
/* From a file (hex or raw). */
int tm_keys_load_master_file(const char *path, tm_master_key *out, tm_err *err);
/* From an environment variable holding hex. */
int tm_keys_load_master_env(const char *name, tm_master_key *out, tm_err *err);
/* A config reference: "env:NAME" or a file path. */
int tm_keys_load_master_ref(const char *ref, tm_master_key *out, tm_err *err);
/* From 32 raw bytes. */
void tm_master_key_from_bytes(const uint8_t key[TM_KEY_LEN], tm_master_key *out);
/* Wipe. */
void tm_master_key_clear(tm_master_key *k);

typedef struct tm_keyring tm_keyring;

int tm_keyring_new(tm_keyring **out, tm_err *err);
void tm_keyring_free(tm_keyring *kr); /* wipes the keys */
/* Adds a copy; adding the same id twice is a no-op. */
int tm_keyring_add(tm_keyring *kr, const tm_master_key *k, tm_err *err);
const tm_master_key *tm_keyring_find(const tm_keyring *kr, const uint8_t id[TM_KEY_ID_LEN]);

/* A fresh random data key, and its record wrapped under mk. */
int tm_data_key_new(const tm_master_key *mk, uint8_t key[TM_KEY_LEN],
                    uint8_t record[TM_DATA_KEY_RECORD_LEN], tm_err *err);
/* Unwrap a record with whichever master key of the keyring it names.
 * TM_ENOENT: that master key is not in the keyring; TM_EAUTH: wrong key or
 * tampered record; TM_ECORRUPT: not a data key record. */
int tm_data_key_unwrap(const tm_keyring *kr, const uint8_t record[TM_DATA_KEY_RECORD_LEN],
                       uint8_t key[TM_KEY_LEN], tm_err *err);
/* Rotation: the same data key, rewrapped under new_mk. */
int tm_data_key_rewrap(const tm_keyring *kr, const tm_master_key *new_mk,
                       const uint8_t in[TM_DATA_KEY_RECORD_LEN],
                       uint8_t out[TM_DATA_KEY_RECORD_LEN], tm_err *err);
/* Ids named by a record (without unwrapping). */
int tm_data_key_record_ids(const uint8_t record[TM_DATA_KEY_RECORD_LEN],
                           uint8_t master_id[TM_KEY_ID_LEN], uint8_t data_key_id[TM_KEY_ID_LEN],
                           tm_err *err);

#endif
