/*
 * manifest.c - build, seal, open and validate backup manifests.
 *
 * A built manifest owns its strings (strdup'd here); an opened one is a
 * protobuf-c unpacked message. The `unpacked` flag says which free applies.
 */
#include "common/manifest.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/frame.h"
#include "common/util.h"

struct tm_manifest {
    Tidemark__Manifest *pb;
    int unpacked;
    size_t cap;
};

static char *dup_or_empty(const char *s)
{
    return strdup(s != NULL ? s : "");
}

int tm_manifest_new(tm_manifest **out, const char *backup_id, const char *target, const char *kind,
                    const char *engine, tm_err *err)
{
    tm_manifest *m = calloc(1, sizeof(*m));
    Tidemark__Manifest *pb = calloc(1, sizeof(*pb));
    if (m == NULL || pb == NULL) {
        free(m);
        free(pb);
        return tm_err_set(err, TM_ENOMEM, "manifest: out of memory");
    }
    tidemark__manifest__init(pb);
    m->pb = pb;
    pb->has_format_version = 1;
    pb->format_version = TM_MANIFEST_FORMAT_VERSION;
    pb->backup_id = dup_or_empty(backup_id);
    pb->target = dup_or_empty(target);
    pb->kind = dup_or_empty(kind);
    pb->engine = dup_or_empty(engine);
    pb->agent_version = dup_or_empty(TIDEMARK_VERSION);
    pb->has_created_at = 1;
    pb->created_at = tm_now_s();
    if (pb->backup_id == NULL || pb->target == NULL || pb->kind == NULL || pb->engine == NULL ||
        pb->agent_version == NULL) {
        tm_manifest_free(m);
        return tm_err_set(err, TM_ENOMEM, "manifest: out of memory");
    }
    *out = m;
    return TM_OK;
}

void tm_manifest_free(tm_manifest *m)
{
    if (m == NULL) {
        return;
    }
    if (m->unpacked) {
        tidemark__manifest__free_unpacked(m->pb, NULL);
        free(m);
        return;
    }
    Tidemark__Manifest *pb = m->pb;
    for (size_t i = 0; i < pb->n_objects; i++) {
        free(pb->objects[i]->key);
        free(pb->objects[i]->xxh3_128);
        free(pb->objects[i]->sha256);
        free(pb->objects[i]);
    }
    free(pb->objects);
    free(pb->backup_id);
    free(pb->target);
    free(pb->kind);
    free(pb->engine);
    free(pb->agent_version);
    free(pb->data_key_id);
    free(pb->master_key_id);
    free(pb->key_record);
    free(pb);
    free(m);
}

int tm_manifest_set_key(tm_manifest *m, const uint8_t record[TM_DATA_KEY_RECORD_LEN],
                        const char *record_path, tm_err *err)
{
    uint8_t mid[TM_KEY_ID_LEN], did[TM_KEY_ID_LEN];
    char mhex[2 * TM_KEY_ID_LEN + 1], dhex[2 * TM_KEY_ID_LEN + 1];
    int rc = tm_data_key_record_ids(record, mid, did, err);
    if (rc != TM_OK) {
        return rc;
    }
    tm_hex(mid, TM_KEY_ID_LEN, mhex);
    tm_hex(did, TM_KEY_ID_LEN, dhex);
    free(m->pb->master_key_id);
    free(m->pb->data_key_id);
    free(m->pb->key_record);
    m->pb->master_key_id = strdup(mhex);
    m->pb->data_key_id = strdup(dhex);
    m->pb->key_record = dup_or_empty(record_path);
    if (m->pb->master_key_id == NULL || m->pb->data_key_id == NULL || m->pb->key_record == NULL) {
        return tm_err_set(err, TM_ENOMEM, "manifest: out of memory");
    }
    return TM_OK;
}

int tm_manifest_add_object(tm_manifest *m, const char *key, const tm_object_digest *d, tm_err *err)
{
    Tidemark__Manifest *pb = m->pb;
    if (m->unpacked) {
        return tm_err_set(err, TM_EINVAL, "manifest: cannot add objects to an opened manifest");
    }
    if (pb->n_objects == m->cap) {
        size_t cap = m->cap ? m->cap * 2 : 16;
        Tidemark__ObjectEntry **no = realloc(pb->objects, cap * sizeof(*no));
        if (no == NULL) {
            return tm_err_set(err, TM_ENOMEM, "manifest: out of memory");
        }
        pb->objects = no;
        m->cap = cap;
    }
    Tidemark__ObjectEntry *e = calloc(1, sizeof(*e));
    if (e == NULL) {
        return tm_err_set(err, TM_ENOMEM, "manifest: out of memory");
    }
    tidemark__object_entry__init(e);
    e->key = strdup(key);
    e->xxh3_128 = strdup(d->xxh3_128);
    e->sha256 = strdup(d->sha256);
    e->has_plain_size = e->has_stored_size = e->has_frames = 1;
    e->plain_size = d->plain_size;
    e->stored_size = d->stored_size;
    e->frames = d->frames;
    pb->objects[pb->n_objects++] = e;
    if (e->key == NULL || e->xxh3_128 == NULL || e->sha256 == NULL) {
        return tm_err_set(err, TM_ENOMEM, "manifest: out of memory");
    }
    return TM_OK;
}

size_t tm_manifest_nobjects(const tm_manifest *m)
{
    return m->pb->n_objects;
}

int tm_manifest_object(const tm_manifest *m, size_t i, const char **key, tm_object_digest *d)
{
    if (i >= m->pb->n_objects) {
        return TM_EINVAL;
    }
    const Tidemark__ObjectEntry *e = m->pb->objects[i];
    *key = e->key;
    memset(d, 0, sizeof(*d));
    d->plain_size = e->plain_size;
    d->stored_size = e->stored_size;
    d->frames = e->frames;
    snprintf(d->xxh3_128, sizeof(d->xxh3_128), "%s", e->xxh3_128);
    snprintf(d->sha256, sizeof(d->sha256), "%s", e->sha256);
    return TM_OK;
}

Tidemark__Manifest *tm_manifest_proto(tm_manifest *m)
{
    return m->pb;
}

int tm_manifest_seal(tm_manifest *m, const uint8_t data_key[TM_KEY_LEN], const char *path,
                     uint8_t **out, size_t *out_len, tm_err *err)
{
    char id[2 * TM_KEY_ID_LEN + 1];
    tm_key_id_hex(data_key, id);
    if (m->pb->data_key_id != NULL && strcmp(m->pb->data_key_id, id) != 0) {
        return tm_err_set(err, TM_EINVAL,
                          "manifest %s: sealing with data key %s, but it records data key %s", path,
                          id, m->pb->data_key_id);
    }
    m->pb->has_finished_at = 1;
    m->pb->finished_at = tm_now_s();
    size_t n = tidemark__manifest__get_packed_size(m->pb);
    uint8_t *buf = malloc(n ? n : 1);
    if (buf == NULL) {
        return tm_err_set(err, TM_ENOMEM, "manifest: out of memory");
    }
    tidemark__manifest__pack(m->pb, buf);
    int rc = tm_frame_encode(data_key, path, 0, 0, buf, n, out, out_len, err);
    tm_secure_zero(buf, n);
    free(buf);
    return rc;
}

static int hex_ok(const char *s, size_t len)
{
    if (s == NULL || strlen(s) != len) {
        return 0;
    }
    return strspn(s, "0123456789abcdef") == len;
}

static int validate(const char *path, const Tidemark__Manifest *pb, const char *key_id, tm_err *err)
{
    if (!pb->has_format_version || pb->format_version != TM_MANIFEST_FORMAT_VERSION) {
        return tm_err_set(err, TM_ECORRUPT,
                          "manifest %s: unsupported format version %u (this build reads %u)", path,
                          pb->format_version, TM_MANIFEST_FORMAT_VERSION);
    }
    if (pb->backup_id == NULL || pb->backup_id[0] == '\0' || pb->target == NULL) {
        return tm_err_set(err, TM_ECORRUPT, "manifest %s: backup id or target missing", path);
    }
    if (pb->data_key_id != NULL && strcmp(pb->data_key_id, key_id) != 0) {
        return tm_err_set(err, TM_ECORRUPT, "manifest %s: records data key %s, sealed with %s",
                          path, pb->data_key_id, key_id);
    }
    for (size_t i = 0; i < pb->n_objects; i++) {
        const Tidemark__ObjectEntry *e = pb->objects[i];
        if (e->key == NULL || e->key[0] == '\0' || !hex_ok(e->xxh3_128, 32) ||
            !hex_ok(e->sha256, 64) || !e->has_stored_size || !e->has_plain_size) {
            return tm_err_set(err, TM_ECORRUPT, "manifest %s: object %zu: incomplete entry", path,
                              i);
        }
    }
    return TM_OK;
}

int tm_manifest_open(const uint8_t data_key[TM_KEY_LEN], const char *path, const void *buf,
                     size_t len, tm_manifest **out, tm_err *err)
{
    uint8_t *plain = NULL;
    size_t plain_len = 0;
    if (len > TM_MANIFEST_MAX_STORED) {
        return tm_err_set(err, TM_ECORRUPT, "manifest %s: too large (%zu bytes)", path, len);
    }
    int rc =
        tm_frame_decode(data_key, path, buf, len, TM_MANIFEST_MAX_STORED, &plain, &plain_len, err);
    if (rc != TM_OK) {
        return tm_err_prefix(err, "manifest");
    }
    Tidemark__Manifest *pb = tidemark__manifest__unpack(NULL, plain_len, plain);
    tm_secure_zero(plain, plain_len);
    free(plain);
    if (pb == NULL) {
        return tm_err_set(err, TM_ECORRUPT, "manifest %s: authenticated but not a valid record",
                          path);
    }
    char id[2 * TM_KEY_ID_LEN + 1];
    tm_key_id_hex(data_key, id);
    if ((rc = validate(path, pb, id, err)) != TM_OK) {
        tidemark__manifest__free_unpacked(pb, NULL);
        return rc;
    }
    tm_manifest *m = calloc(1, sizeof(*m));
    if (m == NULL) {
        tidemark__manifest__free_unpacked(pb, NULL);
        return tm_err_set(err, TM_ENOMEM, "manifest: out of memory");
    }
    m->pb = pb;
    m->unpacked = 1;
    *out = m;
    return TM_OK;
}
