/*
 * repo_log.c - log archives in the repository set (layout, key and sidecar
 * rules: repo_log.h).
 */
#include "agent/repo/repo_log.h"

#include <errno.h>
#include <inttypes.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <xxhash.h>

#include "agent/repo/repository_int.h"
#include "common/util.h"

#define META_MAGIC "tidemark-log 1"
#define READ_CHUNK (1u << 20)

/* ---- sidecar ------------------------------------------------------------ */

size_t tm_log_meta_format(const tm_log_meta *m, char *out, size_t cap)
{
    int n = snprintf(out, cap, "%s %" PRIu64 " %s %s %" PRIu64 " %s\n", META_MAGIC, m->plain_size,
                     m->mac, m->key_id, m->stored_size, m->sha256);
    return n > 0 && (size_t)n < cap ? (size_t)n : 0;
}

static int all_hex(const char *s, size_t n)
{
    if (strlen(s) != n) {
        return 0;
    }
    for (size_t i = 0; i < n; i++) {
        if (!((s[i] >= '0' && s[i] <= '9') || (s[i] >= 'a' && s[i] <= 'f'))) {
            return 0;
        }
    }
    return 1;
}

int tm_log_meta_parse(const char *buf, size_t len, tm_log_meta *m, tm_err *err)
{
    memset(m, 0, sizeof(*m));
    char tmp[TM_LOG_META_MAX + 1];
    if (len == 0 || len > TM_LOG_META_MAX) {
        return tm_err_set(err, TM_ECORRUPT, "log sidecar of %zu bytes is not a tidemark sidecar",
                          len);
    }
    memcpy(tmp, buf, len);
    tmp[len] = '\0';
    unsigned long long ps = 0, ss = 0;
    int used = 0;
    if (strncmp(tmp, META_MAGIC " ", sizeof(META_MAGIC)) != 0 ||
        sscanf(tmp + sizeof(META_MAGIC), "%llu %64s %16s %llu %64s%n", &ps, m->mac, m->key_id, &ss,
               m->sha256, &used) != 5 ||
        !all_hex(m->mac, 64) || !all_hex(m->key_id, 16) || !all_hex(m->sha256, 64)) {
        return tm_err_set(err, TM_ECORRUPT,
                          "log sidecar is malformed (expected \"%s <size> <mac> <key-id> "
                          "<stored-size> <sha256>\")",
                          META_MAGIC);
    }
    const char *rest = tmp + sizeof(META_MAGIC) + used;
    if (strcmp(rest, "\n") != 0 && rest[0] != '\0') {
        return tm_err_set(err, TM_ECORRUPT, "log sidecar has trailing bytes");
    }
    m->plain_size = ps;
    m->stored_size = ss;
    return TM_OK;
}

int tm_log_mac(const uint8_t key[TM_KEY_LEN], const char *rel, const char *xxh3,
               uint64_t plain_size, char out[65], tm_err *err)
{
    char msg[1400];
    int n = snprintf(msg, sizeof(msg), "tidemark-log-mac 1%c%s%c%s%c%" PRIu64, 0, rel, 0, xxh3, 0,
                     plain_size);
    if (n < 0 || (size_t)n >= sizeof(msg)) {
        return tm_err_set(err, TM_EINVAL, "log name too long: %.80s", rel);
    }
    uint8_t mac[32];
    unsigned int mlen = 0;
    if (HMAC(EVP_sha256(), key, TM_KEY_LEN, (const unsigned char *)msg, (size_t)n, mac, &mlen) ==
            NULL ||
        mlen != sizeof(mac)) {
        return tm_err_set(err, TM_EINTERNAL, "HMAC-SHA256 failed");
    }
    tm_hex(mac, sizeof(mac), out);
    return TM_OK;
}

tm_log_decision tm_log_decide(int have_meta, const tm_log_meta *stored, int have_object,
                              uint64_t local_size, const char *local_mac)
{
    if (!have_meta) {
        return have_object ? TM_LOG_CHECK_OBJECT : TM_LOG_UPLOAD;
    }
    int same = stored->plain_size == local_size && local_mac != NULL &&
               tm_str_eq_ct(stored->mac, local_mac);
    if (!same) {
        return TM_LOG_CONFLICT;
    }
    return have_object ? TM_LOG_SAME : TM_LOG_REPAIR;
}

/* ---- paths -------------------------------------------------------------- */

static char *path_object(const char *target, const char *rel)
{
    char *p = NULL;
    return asprintf(&p, "%s/log/%s", target, rel) < 0 ? NULL : p;
}

static char *path_meta(const char *target, const char *rel)
{
    char *p = NULL;
    return asprintf(&p, "%s/log/%s%s", target, rel, TM_LOG_META_SUFFIX) < 0 ? NULL : p;
}

/* Log names become keys: [A-Za-z0-9._-] components joined by '/', so a name
 * can never climb out of <target>/log/. */
static int valid_rel(const char *rel)
{
    size_t n = strlen(rel);
    if (n == 0 || n > 512 || rel[0] == '/' || rel[n - 1] == '/') {
        return 0;
    }
    const char *p = rel;
    while (*p) {
        const char *e = strchr(p, '/');
        size_t len = e ? (size_t)(e - p) : strlen(p);
        char comp[520];
        if (len == 0 || len >= sizeof(comp)) {
            return 0;
        }
        memcpy(comp, p, len);
        comp[len] = '\0';
        if (!tm_repo_valid_name(comp)) {
            return 0;
        }
        p += len + (e ? 1 : 0);
    }
    return n < strlen(TM_LOG_META_SUFFIX) ||
           strcmp(rel + n - strlen(TM_LOG_META_SUFFIX), TM_LOG_META_SUFFIX) != 0;
}

/* ---- the store and its keys --------------------------------------------- */

typedef struct log_key {
    char id[17];
    uint8_t key[TM_KEY_LEN];
    uint8_t record[TM_DATA_KEY_RECORD_LEN]; /* as loaded or created; rewrapped for new repos */
    unsigned char *in_repo;                 /* per repository: has a record for this key */
} log_key;

struct tm_log_store {
    tm_repo_set *rs;
    char *target;
    log_key *keys;
    size_t nkeys;
    int loaded;
    int *list_failed; /* per repository: listing keys failed (unknown) */
};

int tm_log_store_open(tm_log_store **out, tm_repo_set *rs, const char *target, tm_err *err)
{
    *out = NULL;
    if (!rs->have_keys) {
        return tm_err_set(err, TM_EINVAL, "repository set opened without keys");
    }
    if (!tm_repo_valid_name(target)) {
        return tm_err_set(err, TM_EINVAL,
                          "target '%.80s' is not a valid name, expected 1 to 64 of [A-Za-z0-9._-]",
                          target);
    }
    tm_log_store *ls = calloc(1, sizeof(*ls));
    if (ls == NULL || (ls->target = strdup(target)) == NULL ||
        (ls->list_failed = calloc(rs->n, sizeof(int))) == NULL) {
        tm_log_store_free(ls);
        return tm_err_set(err, TM_ENOMEM, "out of memory");
    }
    ls->rs = rs;
    *out = ls;
    return TM_OK;
}

void tm_log_store_free(tm_log_store *ls)
{
    if (ls == NULL) {
        return;
    }
    for (size_t i = 0; i < ls->nkeys; i++) {
        tm_secure_zero(ls->keys[i].key, sizeof(ls->keys[i].key));
        free(ls->keys[i].in_repo);
    }
    free(ls->keys);
    free(ls->list_failed);
    free(ls->target);
    free(ls);
}

static log_key *key_find(tm_log_store *ls, const char *id)
{
    for (size_t i = 0; i < ls->nkeys; i++) {
        if (strcmp(ls->keys[i].id, id) == 0) {
            return &ls->keys[i];
        }
    }
    return NULL;
}

static log_key *key_add(tm_log_store *ls, const char *id)
{
    log_key *nk = realloc(ls->keys, (ls->nkeys + 1) * sizeof(*nk));
    if (nk == NULL) {
        return NULL;
    }
    ls->keys = nk;
    log_key *k = &ls->keys[ls->nkeys];
    memset(k, 0, sizeof(*k));
    if ((k->in_repo = calloc(ls->rs->n, 1)) == NULL) {
        return NULL;
    }
    snprintf(k->id, sizeof(k->id), "%s", id);
    ls->nkeys++;
    return k;
}

static int hex_to_id(const char *hex, uint8_t id[TM_KEY_ID_LEN])
{
    if (!all_hex(hex, 2 * TM_KEY_ID_LEN)) {
        return -1;
    }
    for (size_t i = 0; i < TM_KEY_ID_LEN; i++) {
        unsigned v = 0;
        sscanf(hex + 2 * i, "%2x", &v);
        id[i] = (uint8_t)v;
    }
    return 0;
}

/* One record "<target>/keys/log/<dkid>/<mkid>" found in repository r. */
static int key_record_seen(tm_log_store *ls, size_t r, const char *key, const char *dkid,
                           const char *mkid, tm_err *err)
{
    log_key *k = key_find(ls, dkid);
    if (k != NULL && k->record[0] != 0) {
        k->in_repo[r] = 1;
        return TM_OK;
    }
    uint8_t mid[TM_KEY_ID_LEN];
    if (hex_to_id(mkid, mid) != 0 || tm_keyring_find(ls->rs->kr, mid) == NULL) {
        return TM_OK; /* wrapped by a key we do not hold: another record may do */
    }
    void *buf = NULL;
    size_t len = 0;
    int rc = tm_storage_get(ls->rs->repos[r].st, key, &buf, &len, err);
    if (rc == TM_OK && len != TM_DATA_KEY_RECORD_LEN) {
        rc = tm_err_set(err, TM_ECORRUPT, "%zu bytes, expected %d", len, TM_DATA_KEY_RECORD_LEN);
    }
    uint8_t dk[TM_KEY_LEN];
    if (rc == TM_OK) {
        rc = tm_data_key_unwrap(ls->rs->kr, buf, dk, err);
    }
    char id[17];
    if (rc == TM_OK) {
        tm_key_id_hex(dk, id);
        if (strcmp(id, dkid) != 0) {
            rc = tm_err_set(err, TM_ECORRUPT, "record holds key %s, its name says %s", id, dkid);
        }
    }
    if (rc == TM_OK && k == NULL && (k = key_add(ls, dkid)) == NULL) {
        rc = tm_err_set(err, TM_ENOMEM, "out of memory");
    }
    if (rc == TM_OK) {
        memcpy(k->key, dk, sizeof(dk));
        memcpy(k->record, buf, TM_DATA_KEY_RECORD_LEN);
        k->in_repo[r] = 1;
    } else {
        tm_err_prefix(err, "repo %s: log data key record %s", ls->rs->repos[r].name, key);
    }
    tm_secure_zero(dk, sizeof(dk));
    free(buf);
    return rc;
}

/* Load every log data key record of the target from every repository. A
 * repository that cannot be listed is remembered, not fatal: the push will
 * fail there and say why. A record that fails to unwrap is fatal, because
 * objects under that key would be unreadable and we must not guess. */
static int keys_load(tm_log_store *ls, tm_err *err)
{
    if (ls->loaded) {
        return TM_OK;
    }
    char *prefix = NULL;
    if (asprintf(&prefix, "%s/keys/log/", ls->target) < 0) {
        return tm_err_set(err, TM_ENOMEM, "out of memory");
    }
    size_t plen = strlen(prefix);
    int rc = TM_OK;
    for (size_t r = 0; r < ls->rs->n && rc == TM_OK; r++) {
        char *token = NULL;
        do {
            tm_storage_info *items = NULL;
            size_t n = 0;
            char *next = NULL;
            tm_err e = {0};
            if (tm_storage_list(ls->rs->repos[r].st, prefix, token, 1000, &items, &n, &next, &e) !=
                TM_OK) {
                ls->list_failed[r] = 1;
                free(token);
                token = NULL;
                break;
            }
            for (size_t i = 0; i < n && rc == TM_OK; i++) {
                const char *rest = items[i].key + plen;
                char dkid[17], mkid[17];
                if (strlen(rest) == 33 && rest[16] == '/') {
                    memcpy(dkid, rest, 16);
                    dkid[16] = '\0';
                    memcpy(mkid, rest + 17, 16);
                    mkid[16] = '\0';
                    if (all_hex(dkid, 16) && all_hex(mkid, 16)) {
                        rc = key_record_seen(ls, r, items[i].key, dkid, mkid, err);
                    }
                }
            }
            tm_storage_infos_free(items, n);
            free(token);
            token = next;
        } while (token != NULL && rc == TM_OK);
        free(token);
    }
    free(prefix);
    if (rc == TM_OK) {
        ls->loaded = 1;
    }
    return rc;
}

/* The key new objects are written with: the smallest id among the loaded
 * ones (so concurrent creators converge), or a new one. */
static int key_current(tm_log_store *ls, log_key **out, tm_err *err)
{
    int rc = keys_load(ls, err);
    if (rc != TM_OK) {
        return rc;
    }
    log_key *best = NULL;
    for (size_t i = 0; i < ls->nkeys; i++) {
        if (ls->keys[i].record[0] != 0 && (best == NULL || strcmp(ls->keys[i].id, best->id) < 0)) {
            best = &ls->keys[i];
        }
    }
    if (best == NULL) {
        uint8_t dk[TM_KEY_LEN], rec[TM_DATA_KEY_RECORD_LEN];
        char id[17];
        if ((rc = tm_data_key_new(&ls->rs->mk, dk, rec, err)) != TM_OK) {
            return rc;
        }
        tm_key_id_hex(dk, id);
        if ((best = key_add(ls, id)) == NULL) {
            tm_secure_zero(dk, sizeof(dk));
            return tm_err_set(err, TM_ENOMEM, "out of memory");
        }
        memcpy(best->key, dk, sizeof(dk));
        memcpy(best->record, rec, sizeof(rec));
        tm_secure_zero(dk, sizeof(dk));
    }
    *out = best;
    return TM_OK;
}

/* Make sure repository r holds a record of k before any object under k goes
 * there: data nobody can decrypt is worse than no data. */
static int key_ensure_in(tm_log_store *ls, log_key *k, size_t r, tm_err *err)
{
    if (k->in_repo[r]) {
        return TM_OK;
    }
    uint8_t rec[TM_DATA_KEY_RECORD_LEN];
    int rc = tm_data_key_rewrap(ls->rs->kr, &ls->rs->mk, k->record, rec, err);
    char *path = NULL;
    if (rc == TM_OK &&
        asprintf(&path, "%s/keys/log/%s/%s", ls->target, k->id, ls->rs->mk.id_hex) < 0) {
        path = NULL;
        rc = tm_err_set(err, TM_ENOMEM, "out of memory");
    }
    if (rc == TM_OK &&
        (rc = tm_storage_put(ls->rs->repos[r].st, path, rec, sizeof(rec), err)) != TM_OK) {
        tm_err_prefix(err, "writing the log data key record");
    }
    if (rc == TM_OK) {
        k->in_repo[r] = 1;
    }
    free(path);
    return rc;
}

/* The key an existing object/sidecar names; loads records when needed. */
static log_key *key_for(tm_log_store *ls, const char *id)
{
    log_key *k = key_find(ls, id);
    if ((k == NULL || k->record[0] == 0) && !ls->loaded) {
        tm_err e = {0};
        keys_load(ls, &e);
        k = key_find(ls, id);
    }
    return k != NULL && k->record[0] != 0 ? k : NULL;
}

/* ---- push --------------------------------------------------------------- */

int tm_log_fd_xxh3(int fd, char out[33], uint64_t *size, tm_err *err)
{
    XXH3_state_t *st = XXH3_createState();
    uint8_t *buf = malloc(READ_CHUNK);
    if (st == NULL || buf == NULL) {
        XXH3_freeState(st);
        free(buf);
        return tm_err_set(err, TM_ENOMEM, "out of memory");
    }
    XXH3_128bits_reset(st);
    uint64_t off = 0;
    int rc = TM_OK;
    for (;;) {
        ssize_t n = pread(fd, buf, READ_CHUNK, (off_t)off);
        if (n < 0) {
            rc = tm_err_set(err, TM_EIO, "read: %s", strerror(errno));
            break;
        }
        if (n == 0) {
            break;
        }
        XXH3_128bits_update(st, buf, (size_t)n);
        off += (uint64_t)n;
    }
    if (rc == TM_OK) {
        XXH128_canonical_t c;
        XXH128_canonicalFromHash(&c, XXH3_128bits_digest(st));
        tm_hex(c.digest, sizeof(c.digest), out);
        *size = off;
    }
    XXH3_freeState(st);
    free(buf);
    return rc;
}

/* What repository r holds for rel. */
static int probe(tm_log_store *ls, size_t r, const char *obj, const char *meta, int *have_meta,
                 tm_log_meta *m, int *have_object, tm_err *err)
{
    tm_storage *st = ls->rs->repos[r].st;
    void *buf = NULL;
    size_t len = 0;
    *have_meta = *have_object = 0;
    int rc = tm_storage_get(st, meta, &buf, &len, err);
    if (rc == TM_OK) {
        *have_meta = 1;
        rc = tm_log_meta_parse(buf, len, m, err);
        if (rc != TM_OK) {
            tm_err_prefix(err, "%s", meta);
        }
    } else if (rc == TM_ENOENT) {
        rc = TM_OK;
    }
    free(buf);
    if (rc != TM_OK) {
        return rc;
    }
    tm_storage_info info;
    rc = tm_storage_stat(st, obj, &info, err);
    if (rc == TM_OK) {
        *have_object = 1;
    } else if (rc == TM_ENOENT) {
        rc = TM_OK;
    }
    return rc;
}

/* A sink that holds its commit until the caller has checked the mac: the
 * pipeline commits once tags and digests pass, but the mac is checked on
 * the plaintext digest the pipeline returns afterwards. */
typedef struct held_sink {
    const tm_sink *inner; /* NULL = discard */
    int committed;
    int aborted;
} held_sink;

static int held_write(void *arg, const void *buf, size_t len, tm_err *err)
{
    held_sink *h = arg;
    return h->inner != NULL ? h->inner->write(h->inner->arg, buf, len, err) : TM_OK;
}

static int held_commit(void *arg, tm_err *err)
{
    (void)err;
    ((held_sink *)arg)->committed = 1;
    return TM_OK;
}

static void held_abort(void *arg)
{
    held_sink *h = arg;
    h->aborted = 1;
    if (h->inner != NULL) {
        h->inner->abort(h->inner->arg);
    }
}

/* One attempt to read obj of repository r with key k into sink hs. */
static int read_with_key(tm_log_store *ls, size_t r, const char *rel, const char *obj,
                         const log_key *k, const tm_log_meta *m, const tm_sink *hs,
                         tm_log_meta *got_meta, tm_err *err)
{
    tm_storage_reader *sr = NULL;
    int rc = tm_storage_get_open(ls->rs->repos[r].st, obj, 0, 0, &sr, err);
    if (rc != TM_OK) {
        hs->abort(hs->arg);
        return rc;
    }
    tm_object_digest expect = {0}, got = {0};
    if (m != NULL) {
        expect.plain_size = m->plain_size;
        expect.stored_size = m->stored_size;
        memcpy(expect.sha256, m->sha256, sizeof(expect.sha256));
    }
    rc = tm_pipeline_read(k->key, obj, tm_source_storage_reader, sr, hs, m != NULL ? &expect : NULL,
                          &got, err);
    tm_storage_get_close(sr);
    char mac[65];
    if (rc == TM_OK) {
        rc = tm_log_mac(k->key, rel, got.xxh3_128, got.plain_size, mac, err);
    }
    if (rc == TM_OK && m != NULL && !tm_str_eq_ct(mac, m->mac)) {
        rc = tm_err_set(err, TM_ECORRUPT,
                        "%s: content does not match its sidecar's mac (object and sidecar of "
                        "different pushes?)",
                        obj);
    }
    if (rc == TM_OK && got_meta != NULL) {
        got_meta->plain_size = got.plain_size;
        got_meta->stored_size = got.stored_size;
        memcpy(got_meta->mac, mac, sizeof(mac));
        snprintf(got_meta->key_id, sizeof(got_meta->key_id), "%s", k->id);
        memcpy(got_meta->sha256, got.sha256, sizeof(got.sha256));
    }
    return rc;
}

/* Read the object of repository r fully into out (NULL = check only),
 * checked against its sidecar m; without a sidecar (m NULL) the key is
 * found by trying each loaded one and got_meta says what it holds. out gets
 * commit (only after the mac matched) or abort. */
static int read_object(tm_log_store *ls, size_t r, const char *rel, const char *obj,
                       const tm_log_meta *m, const tm_sink *out, tm_log_meta *got_meta, tm_err *err)
{
    held_sink h = {out, 0, 0};
    tm_sink hs = {held_write, held_commit, held_abort, &h, NULL};
    int rc;
    if (m != NULL) {
        log_key *k = key_for(ls, m->key_id);
        if (k == NULL) {
            rc = tm_err_set(err, TM_EAUTH,
                            "%s is encrypted with log data key %s, and no record of it opens "
                            "with the configured master keys (%s)",
                            obj, m->key_id, ls->rs->key_ids);
        } else {
            rc = read_with_key(ls, r, rel, obj, k, m, &hs, got_meta, err);
        }
    } else {
        rc = keys_load(ls, err);
        if (rc == TM_OK) {
            rc = tm_err_set(err, TM_EAUTH,
                            "%s: no log data key record opens with the configured "
                            "master keys",
                            obj);
        }
        /* A wrong key fails at the header (key id), before any plaintext
         * reaches the sink, so trying the next key is safe. */
        for (size_t i = 0; rc == TM_EAUTH && i < ls->nkeys; i++) {
            if (ls->keys[i].record[0] != 0) {
                h.committed = h.aborted = 0;
                rc = read_with_key(ls, r, rel, obj, &ls->keys[i], NULL, &hs, got_meta, err);
            }
        }
    }
    if (out != NULL) {
        if (rc == TM_OK && h.committed) {
            rc = out->commit(out->arg, err);
        } else if (!h.aborted) {
            out->abort(out->arg);
        }
    }
    return rc;
}

static void res_set(tm_log_push_result *res, size_t r, tm_log_state s, const char *msg)
{
    if (res != NULL) {
        res[r].state = s;
        snprintf(res[r].msg, sizeof(res[r].msg), "%s", msg ? msg : "");
    }
}

int tm_log_push(tm_log_store *ls, const char *rel, int fd, size_t quorum, tm_log_push_result *res,
                tm_log_meta *meta, tm_err *err)
{
    tm_repo_set *rs = ls->rs;
    if (!valid_rel(rel)) {
        return tm_err_set(err, TM_EINVAL, "log name '%.100s' is not valid", rel);
    }
    char xxh[33];
    uint64_t size = 0;
    int rc = tm_log_fd_xxh3(fd, xxh, &size, err);
    if (rc != TM_OK) {
        return rc;
    }
    log_key *cur = NULL;
    if ((rc = key_current(ls, &cur, err)) != TM_OK) {
        return rc;
    }
    char *obj = path_object(ls->target, rel), *mpath = path_meta(ls->target, rel);
    tm_storage_writer **writers = calloc(rs->n, sizeof(*writers));
    tm_sink *sinks = calloc(rs->n, sizeof(*sinks));
    size_t *map = calloc(rs->n, sizeof(*map));
    tm_log_state *state = calloc(rs->n, sizeof(*state));
    char(*why)[TM_ERR_MSG_MAX] = calloc(rs->n, sizeof(*why));
    if (obj == NULL || mpath == NULL || writers == NULL || sinks == NULL || map == NULL ||
        state == NULL || why == NULL) {
        rc = tm_err_set(err, TM_ENOMEM, "out of memory");
        goto out;
    }
    tm_log_meta local = {.plain_size = size};
    snprintf(local.key_id, sizeof(local.key_id), "%s", cur->id);
    if ((rc = tm_log_mac(cur->key, rel, xxh, size, local.mac, err)) != TM_OK) {
        goto out;
    }
    size_t nsinks = 0;
    for (size_t r = 0; r < rs->n; r++) {
        tm_err e = {0};
        int hm = 0, ho = 0;
        tm_log_meta stored;
        state[r] = TM_LOG_R_FAILED;
        if (probe(ls, r, obj, mpath, &hm, &stored, &ho, &e) != TM_OK) {
            snprintf(why[r], TM_ERR_MSG_MAX, "%s", e.msg);
            continue;
        }
        char smac[65] = "";
        if (hm) {
            log_key *k = key_for(ls, stored.key_id);
            if (k == NULL) {
                snprintf(why[r], TM_ERR_MSG_MAX,
                         "its sidecar names log data key %s, which no record opens with the "
                         "configured master keys",
                         stored.key_id);
                continue;
            }
            if (tm_log_mac(k->key, rel, xxh, size, smac, &e) != TM_OK) {
                snprintf(why[r], TM_ERR_MSG_MAX, "%s", e.msg);
                continue;
            }
        }
        tm_log_decision d = tm_log_decide(hm, &stored, ho, size, smac);
        if (d == TM_LOG_CHECK_OBJECT) {
            /* An earlier push stopped between object and sidecar: the
             * object is complete (atomic), so read it and decide. */
            tm_log_meta there;
            if (keys_load(ls, &e) != TM_OK ||
                read_object(ls, r, rel, obj, NULL, NULL, &there, &e) != TM_OK) {
                snprintf(why[r], TM_ERR_MSG_MAX,
                         "checking %.150s left by an interrupted push: %.250s", obj, e.msg);
                continue;
            }
            log_key *k = key_for(ls, there.key_id);
            char lmac[65];
            if (k == NULL || tm_log_mac(k->key, rel, xxh, size, lmac, &e) != TM_OK) {
                snprintf(why[r], TM_ERR_MSG_MAX, "checking %s: key %s unavailable", obj,
                         there.key_id);
                continue;
            }
            if (there.plain_size == size && tm_str_eq_ct(there.mac, lmac)) {
                char line[TM_LOG_META_MAX];
                size_t l = tm_log_meta_format(&there, line, sizeof(line));
                if (tm_storage_put(rs->repos[r].st, mpath, line, l, &e) != TM_OK) {
                    snprintf(why[r], TM_ERR_MSG_MAX, "writing %.150s: %.300s", mpath, e.msg);
                    continue;
                }
                d = TM_LOG_SAME;
            } else {
                d = TM_LOG_CONFLICT;
            }
        }
        if (d == TM_LOG_SAME) {
            state[r] = TM_LOG_R_ALREADY;
            continue;
        }
        if (d == TM_LOG_CONFLICT) {
            state[r] = TM_LOG_R_CONFLICT;
            snprintf(why[r], TM_ERR_MSG_MAX,
                     "%.200s already holds different content (%" PRIu64 " bytes archived, %" PRIu64
                     " bytes now, digests differ); archives are never overwritten: find out "
                     "which server wrote it (two primaries archiving to one target?)",
                     obj, hm ? stored.plain_size : 0, size);
            continue;
        }
        /* UPLOAD or REPAIR. */
        if (key_ensure_in(ls, cur, r, &e) != TM_OK) {
            snprintf(why[r], TM_ERR_MSG_MAX, "%s", e.msg);
            continue;
        }
        if (tm_storage_put_open(rs->repos[r].st, obj, &writers[r], &e) != TM_OK) {
            snprintf(why[r], TM_ERR_MSG_MAX, "%s", e.msg);
            continue;
        }
        tm_sink_from_storage_writer(&sinks[nsinks], writers[r], rs->repos[r].name);
        map[nsinks++] = r;
    }
    if (nsinks > 0) {
        tm_object_digest d = {0};
        tm_sink_result *sr = calloc(nsinks, sizeof(*sr));
        tm_pipeline_opts po = {.zstd_level = rs->zstd_level};
        tm_err e = {0};
        if (sr == NULL) {
            for (size_t k = 0; k < nsinks; k++) {
                sinks[k].abort(sinks[k].arg);
            }
            rc = tm_err_set(err, TM_ENOMEM, "out of memory");
            goto out;
        }
        /* 1 (no tm code is positive): the pipeline gave no verdict for
         * this sink (it stopped before its finish). */
        for (size_t k = 0; k < nsinks; k++) {
            sr[k].code = 1;
        }
        int prc = lseek(fd, 0, SEEK_SET) < 0 ? tm_err_set(&e, TM_EIO, "lseek: %s", strerror(errno))
                                             : TM_OK;
        if (prc == TM_OK) {
            prc = tm_pipeline_put_fd(cur->key, obj, fd, sinks, nsinks, &po, &d, sr, &e);
        } else {
            for (size_t k = 0; k < nsinks; k++) {
                sinks[k].abort(sinks[k].arg);
            }
        }
        /* Per-sink verdicts count even when the pipeline failed because of
         * another sink: a repository that committed the object holds it (it
         * used to be failed too, with the other repository's error, so a
         * push with a quorum below all failed though the quorum stored it). */
        int verdicts = sr[0].code != 1;
        /* The file changed between the two reads: refuse rather than
         * record a sidecar that does not describe what was stored. */
        int changed = verdicts && (strcmp(d.xxh3_128, xxh) != 0 || d.plain_size != size);
        for (size_t k = 0; k < nsinks; k++) {
            size_t r = map[k];
            if (changed) {
                snprintf(why[r], TM_ERR_MSG_MAX,
                         "the file changed while it was being read; stored copy left without "
                         "sidecar");
                continue;
            }
            if (!verdicts || sr[k].code != TM_OK) {
                snprintf(why[r], TM_ERR_MSG_MAX, "%s",
                         verdicts && sr[k].msg[0] ? sr[k].msg : e.msg);
                continue;
            }
            tm_log_meta m = local;
            m.stored_size = d.stored_size;
            memcpy(m.sha256, d.sha256, sizeof(m.sha256));
            char line[TM_LOG_META_MAX];
            size_t l = tm_log_meta_format(&m, line, sizeof(line));
            tm_err me = {0};
            if (tm_storage_put(rs->repos[r].st, mpath, line, l, &me) != TM_OK) {
                snprintf(why[r], TM_ERR_MSG_MAX, "writing %.150s: %.300s", mpath, me.msg);
                continue;
            }
            state[r] = TM_LOG_R_STORED;
            if (meta != NULL) {
                *meta = m;
            }
        }
        free(sr);
    }
    size_t durable = 0, conflicts = 0, failed = 0;
    char msg[TM_ERR_MSG_MAX] = "";
    size_t off = 0;
    for (size_t r = 0; r < rs->n; r++) {
        res_set(res, r, state[r], why[r]);
        durable += state[r] == TM_LOG_R_STORED || state[r] == TM_LOG_R_ALREADY;
        conflicts += state[r] == TM_LOG_R_CONFLICT;
        failed += state[r] == TM_LOG_R_FAILED;
        if ((state[r] == TM_LOG_R_CONFLICT || state[r] == TM_LOG_R_FAILED) && off < sizeof(msg)) {
            int n = snprintf(msg + off, sizeof(msg) - off, "%srepo %s: %s", off ? "; " : "",
                             rs->repos[r].name, why[r]);
            off += n > 0 ? (size_t)n : 0;
        }
    }
    if (meta != NULL && durable > 0) {
        meta->plain_size = size;
    }
    size_t need = quorum == 0 || quorum > rs->n ? rs->n : quorum;
    if (conflicts > 0) {
        rc = tm_err_set(err, TM_EEXIST, "%s: %s", rel, msg);
    } else if (durable < need) {
        rc = tm_err_set(err, TM_EIO,
                        "%s stored in %zu of %zu repositories (%zu needed); not durable: the "
                        "sender keeps the file and retries: %s",
                        rel, durable, rs->n, need, msg);
    } else {
        rc = TM_OK;
    }
    (void)failed;
out:
    free(obj);
    free(mpath);
    free(writers);
    free(sinks);
    free(map);
    free(state);
    free(why);
    return rc;
}

/* ---- get ---------------------------------------------------------------- */

static int file_sink_open(void *arg, tm_sink *out, tm_err *err)
{
    return tm_sink_file_open(out, arg, err);
}

int tm_log_get_file(tm_log_store *ls, const char *rel, const char *path, tm_log_meta *meta,
                    size_t *repo_used, tm_err *err)
{
    return tm_log_get_sink(ls, rel, file_sink_open, (void *)path, meta, repo_used, err);
}

int tm_log_get_sink(tm_log_store *ls, const char *rel, tm_log_sink_open open, void *open_arg,
                    tm_log_meta *meta, size_t *repo_used, tm_err *err)
{
    tm_repo_set *rs = ls->rs;
    if (!valid_rel(rel)) {
        return tm_err_set(err, TM_EINVAL, "log name '%.100s' is not valid", rel);
    }
    char *obj = path_object(ls->target, rel), *mpath = path_meta(ls->target, rel);
    if (obj == NULL || mpath == NULL) {
        free(obj);
        free(mpath);
        return tm_err_set(err, TM_ENOMEM, "out of memory");
    }
    int absent = 0, found = 0, rc = TM_EUNAVAIL;
    char msg[TM_ERR_MSG_MAX] = "";
    size_t off = 0;
    for (size_t r = 0; r < rs->n; r++) {
        tm_err e = {0};
        void *buf = NULL;
        size_t len = 0;
        int grc = tm_storage_get(rs->repos[r].st, mpath, &buf, &len, &e);
        if (grc == TM_ENOENT) {
            absent++;
            continue;
        }
        tm_log_meta m;
        if (grc == TM_OK) {
            found++;
            grc = tm_log_meta_parse(buf, len, &m, &e);
        }
        free(buf);
        tm_sink out;
        if (grc == TM_OK) {
            grc = open(open_arg, &out, &e);
        }
        if (grc == TM_OK) {
            grc = read_object(ls, r, rel, obj, &m, &out, meta, &e);
        }
        if (grc == TM_OK) {
            if (repo_used != NULL) {
                *repo_used = r;
            }
            free(obj);
            free(mpath);
            return TM_OK;
        }
        /* A failing copy is reported, then the next repository is tried. */
        if (rc == TM_EUNAVAIL || grc != TM_EUNAVAIL) {
            rc = grc;
        }
        if (off < sizeof(msg)) {
            int n = snprintf(msg + off, sizeof(msg) - off, "%srepo %s: %s", off ? "; " : "",
                             rs->repos[r].name, e.msg);
            off += n > 0 ? (size_t)n : 0;
        }
    }
    free(obj);
    free(mpath);
    /* Absent only when no repository holds it and at least one said so: a
     * copy that exists but fails its checks is an error, never "missing"
     * (a replay would end early at a point nobody asked for). */
    if (found == 0 && absent > 0) {
        return tm_err_set(err, TM_ENOENT, "%s is not in the archive of %s", rel, ls->target);
    }
    return tm_err_set(err, rc, "%s: %s", rel, msg);
}

/* ---- listing ------------------------------------------------------------ */

static int item_cmp(const void *a, const void *b)
{
    return strcmp(((const tm_log_item *)a)->rel, ((const tm_log_item *)b)->rel);
}

int tm_log_scan(tm_repo_set *rs, size_t i, const char *target, tm_log_item **out, size_t *n,
                tm_err *err)
{
    *out = NULL;
    *n = 0;
    char *prefix = NULL;
    if (asprintf(&prefix, "%s/log/", target) < 0) {
        return tm_err_set(err, TM_ENOMEM, "out of memory");
    }
    size_t plen = strlen(prefix), slen = strlen(TM_LOG_META_SUFFIX);
    tm_log_item *v = NULL;
    size_t nv = 0, cap = 0;
    char *token = NULL;
    int rc = TM_OK;
    do {
        tm_storage_info *items = NULL;
        size_t ni = 0;
        char *next = NULL;
        rc = tm_storage_list(rs->repos[i].st, prefix, token, 1000, &items, &ni, &next, err);
        free(token);
        token = NULL;
        if (rc != TM_OK) {
            tm_err_prefix(err, "repo %s: listing %s", rs->repos[i].name, prefix);
            break;
        }
        for (size_t k = 0; k < ni && rc == TM_OK; k++) {
            const char *rel = items[k].key + plen;
            size_t rl = strlen(rel);
            int is_meta = rl > slen && strcmp(rel + rl - slen, TM_LOG_META_SUFFIX) == 0;
            size_t base = is_meta ? rl - slen : rl;
            /* Listing is lexical: "x" comes right before "x.meta". */
            tm_log_item *it =
                nv > 0 && strlen(v[nv - 1].rel) == base && strncmp(v[nv - 1].rel, rel, base) == 0
                    ? &v[nv - 1]
                    : NULL;
            if (it == NULL) {
                if (nv == cap) {
                    cap = cap ? cap * 2 : 256;
                    tm_log_item *nvv = realloc(v, cap * sizeof(*nvv));
                    if (nvv == NULL) {
                        rc = tm_err_set(err, TM_ENOMEM, "out of memory");
                        break;
                    }
                    v = nvv;
                }
                it = &v[nv];
                memset(it, 0, sizeof(*it));
                if ((it->rel = strndup(rel, base)) == NULL) {
                    rc = tm_err_set(err, TM_ENOMEM, "out of memory");
                    break;
                }
                nv++;
            }
            if (is_meta) {
                it->has_meta = 1;
            } else {
                it->has_object = 1;
                it->stored_size = items[k].size;
                it->mtime = items[k].mtime;
            }
        }
        tm_storage_infos_free(items, ni);
        token = next;
    } while (token != NULL && rc == TM_OK);
    free(token);
    free(prefix);
    if (rc != TM_OK) {
        tm_log_items_free(v, nv);
        return rc;
    }
    /* "x.partial" sorts between "x" and "x.meta" on some stores: sort and
     * merge again so every name is one item. */
    if (nv > 1) {
        qsort(v, nv, sizeof(*v), item_cmp); /* qsort(NULL, 0) is undefined */
    }
    size_t w = 0;
    for (size_t k = 0; k < nv; k++) {
        if (w > 0 && strcmp(v[w - 1].rel, v[k].rel) == 0) {
            v[w - 1].has_meta |= v[k].has_meta;
            if (v[k].has_object) {
                v[w - 1].has_object = 1;
                v[w - 1].stored_size = v[k].stored_size;
                v[w - 1].mtime = v[k].mtime;
            }
            free(v[k].rel);
        } else {
            v[w++] = v[k];
        }
    }
    *out = v;
    *n = w;
    return TM_OK;
}

void tm_log_items_free(tm_log_item *items, size_t n)
{
    for (size_t i = 0; items != NULL && i < n; i++) {
        free(items[i].rel);
    }
    free(items);
}

int tm_log_meta_get(tm_repo_set *rs, size_t i, const char *target, const char *rel, tm_log_meta *m,
                    tm_err *err)
{
    char *p = path_meta(target, rel);
    if (p == NULL) {
        return tm_err_set(err, TM_ENOMEM, "out of memory");
    }
    void *buf = NULL;
    size_t len = 0;
    int rc = tm_storage_get(rs->repos[i].st, p, &buf, &len, err);
    if (rc == TM_OK) {
        rc = tm_log_meta_parse(buf, len, m, err);
    }
    free(buf);
    free(p);
    return rc;
}
