/*
 * manifest.h - the record that makes a backup exist.
 *
 * A manifest (proto/repository.proto, tidemark.Manifest) lists every object
 * of a backup with sizes and both digests. It is written last, to
 * <target>/backup/<backup-id>/manifest; a backup without one does not exist.
 *
 * Stored form: a TMK1 object (frame.c) sealed with the backup's data key, the
 * manifest path as object key. Why the data key and not the master key: the
 * master key then only ever wraps 32-byte data keys (rotation rewraps those
 * and nothing else, and the manifest never has to be rewritten, which the
 * immutable repository forbids); the data key record is stored beside it and
 * named in clear by the TMK1 header's key id. Why encrypted at all: object
 * names and sizes are metadata about the database. Authenticated by GCM with
 * the path bound in: a manifest cannot be edited or moved to another backup.
 * The stored SHA-256 of the sealed manifest (tm_sha256_hex) is what a catalog
 * keeps to verify copies without a key.
 */
#ifndef TM_MANIFEST_H
#define TM_MANIFEST_H

#include <stddef.h>
#include <stdint.h>

#include "common/crypto.h"
#include "common/err.h"
#include "common/keys.h"
#include "common/pipeline.h"
#include "repository.pb-c.h"

#define TM_MANIFEST_FORMAT_VERSION 1
#define TM_MANIFEST_MAX_STORED (256u << 20) /* refuse to decode more */

typedef struct tm_manifest tm_manifest;

int tm_manifest_new(tm_manifest **out, const char *backup_id, const char *target, const char *kind,
                    const char *engine, tm_err *err);
void tm_manifest_free(tm_manifest *m);
/* Record the data key record (ids) and its repository path. */
int tm_manifest_set_key(tm_manifest *m, const uint8_t record[TM_DATA_KEY_RECORD_LEN],
                        const char *record_path, tm_err *err);
int tm_manifest_add_object(tm_manifest *m, const char *key, const tm_object_digest *d, tm_err *err);
size_t tm_manifest_nobjects(const tm_manifest *m);
/* i-th object: its key (owned by m) and digest. */
int tm_manifest_object(const tm_manifest *m, size_t i, const char **key, tm_object_digest *d);
/* The protobuf record, for fields this module does not wrap (engine fields,
 * labels). Strings set through it on a built manifest must stay alive until
 * tm_manifest_free. */
Tidemark__Manifest *tm_manifest_proto(tm_manifest *m);

/* Pack + seal: malloc'd stored bytes for path (the manifest's repository
 * path). finished_at is stamped now. */
int tm_manifest_seal(tm_manifest *m, const uint8_t data_key[TM_KEY_LEN], const char *path,
                     uint8_t **out, size_t *out_len, tm_err *err);
/* Authenticate, unpack and validate a stored manifest. */
int tm_manifest_open(const uint8_t data_key[TM_KEY_LEN], const char *path, const void *buf,
                     size_t len, tm_manifest **out, tm_err *err);

#endif
