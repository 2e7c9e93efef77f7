/*
 * repository.c - the repository set: open, write a backup to every
 * repository at once, read one back. Layout and write order: repository.h.
 * Listing, verification and key rotation are in repo_verify.c.
 */
#include "agent/repo/repository.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "agent/repo/repository_int.h"
#include "common/log.h"
#include "common/util.h"

/* ---- paths and names -------------------------------------------------- */

char *tm_repo_path_backup(const char *target, const char *id, const char *leaf)
{
    char *p = NULL;
    return asprintf(&p, "%s/backup/%s/%s", target, id, leaf) < 0 ? NULL : p;
}

char *tm_repo_path_data(const char *target, const char *id, const char *name)
{
    char *p = NULL;
    return asprintf(&p, "%s/backup/%s/data/%s", target, id, name) < 0 ? NULL : p;
}

char *tm_repo_path_key(const char *target, const char *id, const char *master_id)
{
    char *p = NULL;
    return asprintf(&p, "%s/keys/%s/%s", target, id, master_id) < 0 ? NULL : p;
}

int tm_repo_valid_name(const char *s)
{
    size_t n = s != NULL ? strlen(s) : 0;
    if (n < 1 || n > 64 || strcmp(s, ".") == 0 || strcmp(s, "..") == 0) {
        return 0;
    }
    for (size_t i = 0; i < n; i++) {
        char c = s[i];
        if (!((c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') ||
              c == '.' || c == '_' || c == '-')) {
            return 0;
        }
    }
    return 1;
}

/* Object names become keys under data/: printable ASCII, no empty, "." or
 * ".." components, so a name can never climb out of its backup. */
static int valid_object_name(const char *s)
{
    size_t n = strlen(s);
    if (n < 1 || n > 1024 || s[0] == '/' || s[n - 1] == '/') {
        return 0;
    }
    for (size_t i = 0; i < n; i++) {
        if (s[i] < ' ' || s[i] > '~' || s[i] == '\\') {
            return 0;
        }
    }
    const char *p = s;
    while (*p) {
        const char *e = strchr(p, '/');
        size_t len = e ? (size_t)(e - p) : strlen(p);
        if (len == 0 || (len == 1 && p[0] == '.') || (len == 2 && p[0] == '.' && p[1] == '.')) {
            return 0;
        }
        p += len + (e ? 1 : 0);
    }
    return 1;
}

void tm_backup_id_now(const char *kind, char *out, size_t cap)
{
    time_t t = (time_t)tm_now_s();
    struct tm tm;
    gmtime_r(&t, &tm);
    char ts[32];
    strftime(ts, sizeof(ts), "%Y%m%dT%H%M%SZ", &tm);
    snprintf(out, cap, "%s-%s", ts, kind);
}

/* ---- the set ---------------------------------------------------------- */

static void opts_from_conf(const tm_repo_conf *c, tm_storage_opts *o)
{
    memset(o, 0, sizeof(*o));
    o->backend = c->type;
    o->path = c->path;
    o->endpoint = c->endpoint;
    o->bucket = c->bucket;
    o->region = c->signing_region;
    o->prefix = c->prefix;
    o->access_key = c->access_key;
    o->secret_key = c->secret_key;
    o->ca_file = c->ca_file;
    /* Zero means "off" in tm_storage_opts: copy the config's default-true. */
    o->verify_tls = c->verify_tls ? 1 : 0;
    o->path_style = c->path_style ? 1 : 0;
    o->sse = c->sse;
    o->sse_kms_key_id = c->sse_kms_key_id;
    o->storage_class = c->storage_class;
    o->object_lock_mode = c->object_lock_mode;
    o->object_lock_retain_days = c->object_lock_days;
    /* 0 retries in the config means none; storage reads 0 as "default". */
    o->max_retries = c->max_retries == 0 ? -1 : (int)c->max_retries;
    o->timeout_ms = (int)c->timeout_ms;
    o->part_size = c->part_size;
}

static int load_keys(tm_repo_set *rs, const tm_agent_conf *conf, tm_err *err)
{
    const tm_encryption_conf *e = &conf->encryption;
    if (e->master_key_ref == NULL) {
        return tm_err_set(err, TM_ECONFIG,
                          "%s: no encryption.master_key_file, so backups cannot be encrypted or "
                          "read; create a key with `tidemark-agent repo keygen FILE` and set "
                          "encryption.master_key_file",
                          conf->path);
    }
    int rc = tm_keys_load_master_ref(e->master_key_ref, &rs->mk, err);
    if (rc != TM_OK) {
        tm_err_prefix(err, "encryption.master_key%s",
                      strncmp(e->master_key_ref, "env:", 4) == 0 ? "" : "_file");
        return rc;
    }
    if ((rc = tm_keyring_new(&rs->kr, err)) != TM_OK ||
        (rc = tm_keyring_add(rs->kr, &rs->mk, err)) != TM_OK) {
        return rc;
    }
    snprintf(rs->key_ids, sizeof(rs->key_ids), "%s", rs->mk.id_hex);
    for (size_t i = 0; i < e->n_old_master_keys; i++) {
        tm_master_key old;
        rc = tm_keys_load_master_ref(e->old_master_key_refs[i], &old, err);
        if (rc == TM_OK) {
            rc = tm_keyring_add(rs->kr, &old, err);
            size_t l = strlen(rs->key_ids);
            snprintf(rs->key_ids + l, sizeof(rs->key_ids) - l, ", %s", old.id_hex);
        }
        tm_master_key_clear(&old);
        if (rc != TM_OK) {
            tm_err_prefix(err, "encryption.old_master_key_files[%zu]", i);
            return rc;
        }
    }
    rs->have_keys = 1;
    return TM_OK;
}

int tm_repo_set_open(tm_repo_set **out, const tm_agent_conf *conf, unsigned flags, tm_err *err)
{
    *out = NULL;
    if (conf->n_repos == 0) {
        return tm_err_set(err, TM_ECONFIG,
                          "%s: no repositories configured; add a repositories: list (see "
                          "deploy/examples/agent.yaml)",
                          conf->path);
    }
    tm_repo_set *rs = calloc(1, sizeof(*rs));
    if (rs == NULL || (rs->repos = calloc(conf->n_repos, sizeof(*rs->repos))) == NULL) {
        free(rs);
        return tm_err_set(err, TM_ENOMEM, "out of memory");
    }
    rs->zstd_level = (int)conf->encryption.compress_level;
    int rc = TM_OK;
    for (size_t i = 0; i < conf->n_repos && rc == TM_OK; i++) {
        const tm_repo_conf *c = &conf->repos[i];
        tm_storage_opts o;
        opts_from_conf(c, &o);
        rs->repos[i].name = strdup(c->name);
        rs->repos[i].region = strdup(c->region);
        rs->n = i + 1;
        if (rs->repos[i].name == NULL || rs->repos[i].region == NULL) {
            rc = tm_err_set(err, TM_ENOMEM, "out of memory");
        } else if ((rc = tm_storage_open(&rs->repos[i].st, &o, err)) != TM_OK) {
            tm_err_prefix(err, "repository %s", c->name);
        }
    }
    if (rc == TM_OK && (flags & TM_REPO_KEYS)) {
        rc = load_keys(rs, conf, err);
    }
    if (rc != TM_OK) {
        tm_repo_set_free(rs);
        return rc;
    }
    *out = rs;
    return TM_OK;
}

void tm_repo_set_free(tm_repo_set *rs)
{
    if (rs == NULL) {
        return;
    }
    for (size_t i = 0; i < rs->n; i++) {
        free(rs->repos[i].name);
        free(rs->repos[i].region);
        tm_storage_free(rs->repos[i].st);
    }
    free(rs->repos);
    tm_keyring_free(rs->kr);
    tm_master_key_clear(&rs->mk);
    free(rs);
}

size_t tm_repo_set_count(const tm_repo_set *rs)
{
    return rs->n;
}

const char *tm_repo_set_name(const tm_repo_set *rs, size_t i)
{
    return rs->repos[i].name;
}

const char *tm_repo_set_region(const tm_repo_set *rs, size_t i)
{
    return rs->repos[i].region;
}

tm_storage *tm_repo_set_storage(tm_repo_set *rs, size_t i)
{
    return rs->repos[i].st;
}

int tm_repo_set_find(const tm_repo_set *rs, const char *name)
{
    for (size_t i = 0; i < rs->n; i++) {
        if (strcmp(rs->repos[i].name, name) == 0) {
            return (int)i;
        }
    }
    return -1;
}

const char *tm_repo_set_master_id(const tm_repo_set *rs)
{
    return rs->have_keys ? rs->mk.id_hex : NULL;
}

static int need_keys(const tm_repo_set *rs, tm_err *err)
{
    if (!rs->have_keys) {
        return tm_err_set(err, TM_EINVAL, "repository set opened without keys");
    }
    return TM_OK;
}

/* ---- data key records ------------------------------------------------- */

int tm_repo_load_data_key(tm_repo_set *rs, size_t r, const char *target, const char *id,
                          uint8_t key[TM_KEY_LEN], tm_err *err)
{
    int rc = need_keys(rs, err);
    if (rc != TM_OK) {
        return rc;
    }
    tm_repo *rp = &rs->repos[r];
    char *prefix = NULL;
    if (asprintf(&prefix, "%s/keys/%s/", target, id) < 0) {
        return tm_err_set(err, TM_ENOMEM, "out of memory");
    }
    tm_storage_info *items = NULL;
    size_t n = 0;
    char *next = NULL;
    rc = tm_storage_list(rp->st, prefix, NULL, 100, &items, &n, &next, err);
    free(next);
    if (rc != TM_OK) {
        free(prefix);
        return tm_err_prefix(err, "repo %s: listing data key records", rp->name);
    }
    if (n == 0) {
        rc = tm_err_set(err, TM_ENOENT,
                        "repo %s: backup %s/%s has no data key record (%s*); it cannot be "
                        "decrypted from this repository",
                        rp->name, target, id, prefix);
    }
    char wrapped_by[160] = "";
    int best = TM_ENOENT;
    for (size_t i = 0; i < n; i++) {
        void *buf = NULL;
        size_t len = 0;
        tm_err e = {0};
        rc = tm_storage_get(rp->st, items[i].key, &buf, &len, &e);
        if (rc == TM_OK && len != TM_DATA_KEY_RECORD_LEN) {
            rc = tm_err_set(&e, TM_ECORRUPT, "%zu bytes, expected %d", len, TM_DATA_KEY_RECORD_LEN);
        }
        if (rc == TM_OK) {
            uint8_t mid[TM_KEY_ID_LEN], did[TM_KEY_ID_LEN];
            rc = tm_data_key_record_ids(buf, mid, did, &e);
            if (rc == TM_OK && tm_keyring_find(rs->kr, mid) == NULL) {
                char hex[2 * TM_KEY_ID_LEN + 1];
                tm_hex(mid, sizeof(mid), hex);
                size_t l = strlen(wrapped_by);
                snprintf(wrapped_by + l, sizeof(wrapped_by) - l, "%s%s", l ? ", " : "", hex);
                rc = TM_ENOENT;
                e.code = TM_ENOENT;
            } else if (rc == TM_OK) {
                rc = tm_data_key_unwrap(rs->kr, buf, key, &e);
            }
        }
        free(buf);
        if (rc == TM_OK) {
            tm_storage_infos_free(items, n);
            free(prefix);
            return TM_OK;
        }
        if (rc != TM_ENOENT || best == TM_ENOENT) {
            best = rc;
            if (rc != TM_ENOENT) {
                tm_err_set(err, rc, "repo %s: data key record %s: %s", rp->name, items[i].key,
                           e.msg);
            }
        }
    }
    if (n > 0 && best == TM_ENOENT) {
        /* Every record is wrapped by a key we do not have: the usual "wrong
         * master key" case, so say which key is needed. */
        rc = tm_err_set(err, TM_EAUTH,
                        "repo %s: backup %s/%s: its data key is wrapped by master key %s, but "
                        "the configured keys are %s; set encryption.master_key_file to the key "
                        "with that id (or list it in old_master_key_files)",
                        rp->name, target, id, wrapped_by, rs->key_ids);
    } else if (n > 0) {
        rc = best;
    }
    tm_storage_infos_free(items, n);
    free(prefix);
    return rc;
}

/* ---- writing ---------------------------------------------------------- */

struct tm_backup_writer {
    tm_repo_set *rs;
    char *target;
    char id[80];
    uint8_t dk[TM_KEY_LEN];
    tm_manifest *m;
    tm_repo_result *res; /* one per repository; code != 0 = dropped */
    size_t live;
    /* Per repository: this writer created the id's data key record there (so
     * everything under the id is its own to delete on failure), and the
     * manifest is there (the backup is complete: never delete). */
    unsigned char *owned, *complete;
    /* Objects may be written from several threads at once (an engine copies
     * files in parallel): mu guards res, live, objects_open and the manifest.
     * Each object's pipeline is its own, so only opening and committing
     * take the lock, never the data path. */
    pthread_mutex_t mu;
    size_t objects_open;
    int mu_init;
    int finished;
};

struct tm_backup_object {
    tm_backup_writer *w;
    tm_pipeline_writer *pw;
    char *key;
    size_t *map; /* sink index -> repository index */
    size_t nsinks;
};

/* Drop repository i from the rest of this backup. The message names the
 * repository, the operation, the storage's own words (path or bucket/key and
 * the system's reason) and what to check, so it can go to an operator as is. */
static void drop(tm_backup_writer *w, size_t i, int code, const char *op, const char *msg)
{
    if (w->res[i].code != TM_OK) {
        return;
    }
    w->res[i].code = code != TM_OK ? code : TM_EIO;
    snprintf(w->res[i].op, sizeof(w->res[i].op), "%s", op);
    snprintf(w->res[i].msg, sizeof(w->res[i].msg), "repository %.64s: %.40s: %.300s (%s)",
             w->res[i].repo, op, msg, tm_storage_error_hint(w->res[i].code));
    w->live--;
}

/* "backup T/ID: <what>: <every dropped repository's message>" into err; the
 * code is the repositories' common one (ENOSPC stays ENOSPC), else TM_EIO. */
static int failed_everywhere(tm_backup_writer *w, const char *what, tm_err *err)
{
    char msg[TM_ERR_MSG_MAX] = "";
    size_t off = 0;
    int code = TM_OK;
    for (size_t i = 0; i < w->rs->n; i++) {
        if (w->res[i].code == TM_OK) {
            continue;
        }
        code = code == TM_OK || code == w->res[i].code ? w->res[i].code : TM_EIO;
        if (off < sizeof(msg)) {
            int n = snprintf(msg + off, sizeof(msg) - off, "%s%s", off ? "; " : "", w->res[i].msg);
            off += n > 0 ? (size_t)n : 0;
        }
    }
    return tm_err_set(err, code != TM_OK ? code : TM_EIO, "backup %s/%s: %s: %s", w->target, w->id,
                      what, msg);
}

static int backup_exists(tm_repo_set *rs, const char *target, const char *id, int *exists,
                         tm_err *err)
{
    *exists = 0;
    char *prefix = NULL;
    if (asprintf(&prefix, "%s/keys/%s/", target, id) < 0) {
        return tm_err_set(err, TM_ENOMEM, "out of memory");
    }
    char *man = tm_repo_path_backup(target, id, "manifest");
    int rc = man == NULL ? tm_err_set(err, TM_ENOMEM, "out of memory") : TM_OK;
    for (size_t i = 0; rc == TM_OK && i < rs->n && !*exists; i++) {
        tm_storage_info *items = NULL;
        size_t n = 0;
        char *next = NULL;
        tm_err e = {0};
        /* A repository that cannot answer is not a reason to stop here: the
         * writes below will fail there and be reported per repository. */
        if (tm_storage_list(rs->repos[i].st, prefix, NULL, 1, &items, &n, &next, &e) == TM_OK) {
            *exists = n > 0;
            tm_storage_infos_free(items, n);
            free(next);
        }
        tm_storage_info info;
        if (!*exists && tm_storage_stat(rs->repos[i].st, man, &info, &e) == TM_OK) {
            *exists = 1;
        }
    }
    free(man);
    free(prefix);
    return rc;
}

/* Claim w->id: create its data key record in every repository, create-only.
 * The key record goes first: data nobody can decrypt is worse than no data,
 * so a repository that cannot take it takes nothing else. If the record
 * exists anywhere, another writer holds the id: take back the records made
 * here (they are ours, created exclusively) and report *taken. */
static int claim_id(tm_backup_writer *w, const char *rec_path, const uint8_t *record, int *taken)
{
    tm_repo_set *rs = w->rs;
    *taken = 0;
    for (size_t i = 0; i < rs->n; i++) {
        w->res[i].code = TM_OK;
        w->res[i].op[0] = w->res[i].msg[0] = '\0';
        w->owned[i] = 0;
    }
    w->live = rs->n;
    for (size_t i = 0; i < rs->n && !*taken; i++) {
        tm_err e = {0};
        int rc = tm_storage_put_new(rs->repos[i].st, rec_path, record, TM_DATA_KEY_RECORD_LEN, &e);
        if (rc == TM_OK) {
            w->owned[i] = 1;
        } else if (rc == TM_EEXIST) {
            *taken = 1;
        } else {
            drop(w, i, e.code, "put data key record", e.msg);
        }
    }
    if (*taken) {
        for (size_t i = 0; i < rs->n; i++) {
            tm_err e = {0};
            if (w->owned[i] && tm_storage_delete(rs->repos[i].st, &rec_path, 1, &e) != TM_OK) {
                tm_warn("repo", "event=claim_undo_failed repo=%s key=%s msg=\"%s\"",
                        rs->repos[i].name, rec_path, e.msg);
            }
            w->owned[i] = 0;
        }
    }
    return TM_OK;
}

int tm_backup_begin(tm_repo_set *rs, const char *target, const char *backup_id, const char *kind,
                    const char *engine, tm_backup_writer **out, tm_err *err)
{
    *out = NULL;
    int rc = need_keys(rs, err);
    if (rc != TM_OK) {
        return rc;
    }
    if (!tm_repo_valid_name(target)) {
        return tm_err_set(err, TM_EINVAL,
                          "target '%.80s' is not a valid name, expected 1 to 64 of "
                          "[A-Za-z0-9._-]",
                          target);
    }
    if (backup_id != NULL && !tm_repo_valid_name(backup_id)) {
        return tm_err_set(err, TM_EINVAL,
                          "backup id '%.80s' is not valid, expected 1 to 64 of [A-Za-z0-9._-] "
                          "(default: YYYYMMDDTHHMMSSZ-<kind>)",
                          backup_id);
    }
    if (kind == NULL || !tm_repo_valid_name(kind)) {
        return tm_err_set(err, TM_EINVAL, "backup kind must be a name (full, incremental, ...)");
    }
    tm_backup_writer *w = calloc(1, sizeof(*w));
    if (w == NULL || (w->res = calloc(rs->n, sizeof(*w->res))) == NULL ||
        (w->owned = calloc(rs->n, 1)) == NULL || (w->complete = calloc(rs->n, 1)) == NULL ||
        (w->target = strdup(target)) == NULL) {
        tm_backup_writer_free(w);
        return tm_err_set(err, TM_ENOMEM, "out of memory");
    }
    w->rs = rs;
    w->live = rs->n;
    pthread_mutex_init(&w->mu, NULL);
    w->mu_init = 1;
    for (size_t i = 0; i < rs->n; i++) {
        w->res[i].repo = rs->repos[i].name;
    }
    /* Ids are per second: an automatic id that is taken waits for the next
     * second rather than failing (two puts in one second are normal in tests
     * and scripts); an explicit one that is taken is an error. The listing
     * below is only the cheap first look: the id is claimed by creating its
     * data key record create-only (claim_id), which two writers racing in
     * one second cannot both win. */
    uint8_t record[TM_DATA_KEY_RECORD_LEN];
    char *rec_path = NULL;
    for (int attempt = 0;; attempt++) {
        if (backup_id != NULL) {
            snprintf(w->id, sizeof(w->id), "%s", backup_id);
        } else {
            tm_backup_id_now(kind, w->id, sizeof(w->id));
        }
        int exists = 0;
        if ((rc = backup_exists(rs, target, w->id, &exists, err)) != TM_OK) {
            tm_backup_writer_free(w);
            return rc;
        }
        if (!exists) {
            free(rec_path);
            rec_path = tm_repo_path_key(target, w->id, rs->mk.id_hex);
            if (rec_path == NULL) {
                tm_backup_writer_free(w);
                return tm_err_set(err, TM_ENOMEM, "out of memory");
            }
            tm_manifest_free(w->m);
            w->m = NULL;
            rc = tm_data_key_new(&rs->mk, w->dk, record, err);
            if (rc == TM_OK) {
                rc = tm_manifest_new(&w->m, w->id, target, kind, engine ? engine : "", err);
            }
            if (rc == TM_OK) {
                rc = tm_manifest_set_key(w->m, record, rec_path, err);
            }
            if (rc == TM_OK) {
                rc = claim_id(w, rec_path, record, &exists);
            }
            if (rc != TM_OK) {
                tm_secure_zero(record, sizeof(record));
                free(rec_path);
                tm_backup_writer_free(w);
                return rc;
            }
        }
        if (!exists) {
            break;
        }
        /* An automatic id gives up after 10 s of seconds taken: more than a
         * few writers of one target in a second is already odd, but under
         * heavy load (a test machine) a loser can be late for its next second. */
        if (backup_id != NULL || attempt >= 10) {
            tm_secure_zero(record, sizeof(record));
            free(rec_path);
            tm_err_set(err, TM_EEXIST,
                       "backup %s/%s already exists (repositories are never overwritten); "
                       "choose another backup id",
                       target, w->id);
            tm_backup_writer_free(w);
            return TM_EEXIST;
        }
        usleep(1000000 - (useconds_t)(tm_now_ms() % 1000) * 1000 + 1000);
    }
    tm_secure_zero(record, sizeof(record));
    free(rec_path);
    if (w->live == 0) {
        rc = failed_everywhere(w, "no repository took the data key record", err);
        tm_backup_writer_free(w);
        return rc;
    }
    *out = w;
    return TM_OK;
}

const char *tm_backup_writer_id(const tm_backup_writer *w)
{
    return w->id;
}

tm_manifest *tm_backup_writer_manifest(tm_backup_writer *w)
{
    return w->m;
}

int tm_backup_object_open(tm_backup_writer *w, const char *name, tm_backup_object **out,
                          tm_err *err)
{
    *out = NULL;
    if (!valid_object_name(name)) {
        return tm_err_set(err, TM_EINVAL,
                          "object name '%.80s' is not valid, expected a relative path of "
                          "printable characters without empty, '.' or '..' components",
                          name);
    }
    pthread_mutex_lock(&w->mu);
    if (w->finished) {
        pthread_mutex_unlock(&w->mu);
        return tm_err_set(err, TM_EINVAL, "backup %s: the backup is finished", w->id);
    }
    if (w->live == 0) {
        /* Another object's write failed the last repository: say why (its
         * name, path and errno), or this may be the error the task keeps. */
        int rc = failed_everywhere(w, "every repository has failed", err);
        pthread_mutex_unlock(&w->mu);
        return rc;
    }
    tm_backup_object *o = calloc(1, sizeof(*o));
    tm_sink *sinks = calloc(w->rs->n, sizeof(*sinks));
    if (o == NULL || sinks == NULL || (o->map = calloc(w->rs->n, sizeof(size_t))) == NULL ||
        (o->key = tm_repo_path_data(w->target, w->id, name)) == NULL) {
        if (o != NULL) {
            free(o->map);
        }
        free(o);
        free(sinks);
        pthread_mutex_unlock(&w->mu);
        return tm_err_set(err, TM_ENOMEM, "out of memory");
    }
    o->w = w;
    for (size_t i = 0; i < w->rs->n; i++) {
        if (w->res[i].code != TM_OK) {
            continue;
        }
        tm_storage_writer *sw = NULL;
        tm_err e = {0};
        if (tm_storage_put_open(w->rs->repos[i].st, o->key, &sw, &e) != TM_OK) {
            drop(w, i, e.code, "put object", e.msg);
            continue;
        }
        tm_sink_from_storage_writer(&sinks[o->nsinks], sw, w->rs->repos[i].name);
        o->map[o->nsinks++] = i;
    }
    int rc = TM_OK;
    if (o->nsinks > 0) {
        w->objects_open++;
    }
    pthread_mutex_unlock(&w->mu);
    if (o->nsinks == 0) {
        pthread_mutex_lock(&w->mu);
        rc = failed_everywhere(w, "no repository could start an object", err);
        pthread_mutex_unlock(&w->mu);
    } else {
        tm_pipeline_opts po = {.zstd_level = w->rs->zstd_level};
        rc = tm_pipeline_writer_new(&o->pw, w->dk, o->key, sinks, o->nsinks, &po, err);
    }
    free(sinks);
    if (rc != TM_OK) {
        if (o->nsinks > 0) {
            pthread_mutex_lock(&w->mu);
            w->objects_open--;
            pthread_mutex_unlock(&w->mu);
        }
        free(o->map);
        free(o->key);
        free(o);
        return rc;
    }
    *out = o;
    return TM_OK;
}

/* Record the repositories whose sink has failed so far (caller holds mu). */
static void drop_failed_sinks(tm_backup_object *o)
{
    for (size_t k = 0; k < o->nsinks; k++) {
        const tm_sink_result *r = tm_pipeline_writer_result(o->pw, k);
        if (r->code != TM_OK && r->code != TM_EINTERNAL) {
            drop(o->w, o->map[k], r->code, "put object", r->msg);
        }
    }
}

int tm_backup_object_write(tm_backup_object *o, const void *buf, size_t len, tm_err *err)
{
    int rc = tm_pipeline_writer_write(o->pw, buf, len, err);
    if (rc != TM_OK) {
        /* Every repository failed: say which and why, each in its words. */
        pthread_mutex_lock(&o->w->mu);
        drop_failed_sinks(o);
        if (o->w->live == 0) {
            rc = failed_everywhere(o->w, "every repository failed", err);
        }
        pthread_mutex_unlock(&o->w->mu);
    }
    return rc;
}

static void object_free(tm_backup_object *o)
{
    tm_pipeline_writer_free(o->pw);
    pthread_mutex_lock(&o->w->mu);
    o->w->objects_open--;
    pthread_mutex_unlock(&o->w->mu);
    free(o->map);
    free(o->key);
    free(o);
}

int tm_backup_object_close(tm_backup_object *o, tm_object_digest *digest, tm_err *err)
{
    tm_backup_writer *w = o->w;
    tm_object_digest d;
    tm_err e = {0};
    int rc = tm_pipeline_writer_finish(o->pw, &d, &e);
    size_t nfail = 0, ok = 0;
    for (size_t k = 0; k < o->nsinks; k++) {
        nfail += tm_pipeline_writer_result(o->pw, k)->code != TM_OK;
    }
    pthread_mutex_lock(&w->mu);
    for (size_t k = 0; k < o->nsinks; k++) {
        const tm_sink_result *r = tm_pipeline_writer_result(o->pw, k);
        if (r->code != TM_OK) {
            drop(w, o->map[k], r->code, "put object", r->msg);
        } else if (rc != TM_OK && nfail == 0) {
            /* The writer itself failed (not one sink): every sink aborted. */
            drop(w, o->map[k], rc, "put object", e.msg);
        } else {
            ok++;
        }
    }
    if (ok == 0) {
        rc = failed_everywhere(w, "every repository failed", err);
        pthread_mutex_unlock(&w->mu);
        object_free(o);
        return rc;
    }
    rc = tm_manifest_add_object(w->m, o->key, &d, err);
    pthread_mutex_unlock(&w->mu);
    if (rc == TM_OK && digest != NULL) {
        *digest = d;
    }
    object_free(o);
    return rc;
}

void tm_backup_object_abort(tm_backup_object *o)
{
    if (o != NULL) {
        /* A sink that failed before the abort keeps its reason. */
        pthread_mutex_lock(&o->w->mu);
        drop_failed_sinks(o);
        pthread_mutex_unlock(&o->w->mu);
        object_free(o);
    }
}

/* The clear digest list (format in repository.h). */
static int digests_build(tm_backup_writer *w, const char *man_key, const char *man_sha,
                         size_t man_len, char **out, size_t *out_len, tm_err *err)
{
    char *buf = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&buf, &len);
    if (f == NULL) {
        return tm_err_set(err, TM_ENOMEM, "out of memory");
    }
    fprintf(f, "%s\n", TM_DIGESTS_MAGIC);
    for (size_t i = 0; i < tm_manifest_nobjects(w->m); i++) {
        const char *key;
        tm_object_digest d;
        tm_manifest_object(w->m, i, &key, &d);
        fprintf(f, "%s %llu %s\n", d.sha256, (unsigned long long)d.stored_size, key);
    }
    fprintf(f, "%s %zu %s\n", man_sha, man_len, man_key);
    if (fclose(f) != 0) {
        free(buf);
        return tm_err_set(err, TM_ENOMEM, "out of memory");
    }
    *out = buf;
    *out_len = len;
    return TM_OK;
}

int tm_backup_finish(tm_backup_writer *w, tm_err *err)
{
    pthread_mutex_lock(&w->mu);
    int busy = w->finished || w->objects_open > 0;
    w->finished = 1;
    pthread_mutex_unlock(&w->mu);
    if (busy) {
        return tm_err_set(err, TM_EINVAL, "backup %s: finish twice or with an object open", w->id);
    }
    char *man_key = tm_repo_path_backup(w->target, w->id, "manifest");
    char *dig_key = tm_repo_path_backup(w->target, w->id, "digests");
    uint8_t *sealed = NULL;
    size_t sealed_len = 0;
    char *list = NULL;
    size_t list_len = 0;
    char sha[65];
    int rc =
        man_key == NULL || dig_key == NULL ? tm_err_set(err, TM_ENOMEM, "out of memory") : TM_OK;
    /* Sealed once, so every repository holds the same bytes and the copies
     * can be compared by digest without the key. */
    if (rc == TM_OK) {
        rc = tm_manifest_seal(w->m, w->dk, man_key, &sealed, &sealed_len, err);
    }
    if (rc == TM_OK) {
        tm_sha256_hex(sealed, sealed_len, sha);
        rc = digests_build(w, man_key, sha, sealed_len, &list, &list_len, err);
    }
    for (size_t i = 0; rc == TM_OK && i < w->rs->n; i++) {
        if (w->res[i].code != TM_OK) {
            continue;
        }
        tm_err e = {0};
        /* Create-only: a digest list or manifest already there belongs to
         * someone else's backup and is never replaced. */
        if (tm_storage_put_new(w->rs->repos[i].st, dig_key, list, list_len, &e) != TM_OK) {
            drop(w, i, e.code, "put digest list", e.msg);
        } else if (tm_storage_put_new(w->rs->repos[i].st, man_key, sealed, sealed_len, &e) !=
                   TM_OK) {
            drop(w, i, e.code, "put manifest", e.msg);
        } else {
            w->complete[i] = 1;
        }
    }
    free(man_key);
    free(dig_key);
    free(sealed);
    free(list);
    if (rc != TM_OK) {
        return rc;
    }
    size_t nfail = w->rs->n - w->live;
    if (nfail == 0) {
        return TM_OK;
    }
    char what[128];
    snprintf(what, sizeof(what),
             "complete in %zu of %zu repositories; it does not exist in the others", w->live,
             w->rs->n);
    rc = failed_everywhere(w, what, err);
    if (w->live > 0) {
        /* Complete somewhere: TM_EIO tells the caller it is a backup. */
        rc = TM_EIO;
        if (err != NULL) {
            err->code = TM_EIO;
        }
    }
    return rc;
}

const tm_repo_result *tm_backup_results(const tm_backup_writer *w, size_t *n)
{
    *n = w->rs->n;
    return w->res;
}

/* One RepositoryOutcome per repository of rs from res (complete may be NULL:
 * complete nowhere). */
static int outcomes_fill(const tm_repo_set *rs, const tm_repo_result *res,
                         const unsigned char *complete, Tidemark__TaskResult *r)
{
    size_t n = rs->n;
    Tidemark__RepositoryOutcome **v =
        realloc(r->repository_outcomes, (r->n_repository_outcomes + n) * sizeof(*v));
    if (v == NULL) {
        return TM_ENOMEM;
    }
    r->repository_outcomes = v;
    for (size_t i = 0; i < n; i++) {
        Tidemark__RepositoryOutcome *o = malloc(sizeof(*o));
        if (o == NULL) {
            return TM_ENOMEM;
        }
        tidemark__repository_outcome__init(o);
        v[r->n_repository_outcomes++] = o;
        o->repository = strdup(rs->repos[i].name);
        o->region = strdup(rs->repos[i].region);
        o->has_ok = 1;
        o->ok = complete != NULL && complete[i];
        if (o->ok) {
            continue;
        }
        if (res[i].code != TM_OK) {
            o->error_class = strdup(tm_storage_error_class(res[i].code));
            o->operation = strdup(res[i].op);
            o->message = strdup(res[i].msg);
        } else {
            /* Healthy here, but the backup failed before its manifest (the
             * source, or every other repository): nothing was kept. */
            o->error_class = strdup("aborted");
            o->operation = strdup("backup");
            if (asprintf(&o->message,
                         "repository %s: the backup was not finished, so it was not kept "
                         "(see the task's error)",
                         rs->repos[i].name) < 0) {
                o->message = NULL;
            }
        }
        if (o->error_class == NULL || o->operation == NULL || o->message == NULL) {
            return TM_ENOMEM;
        }
    }
    return TM_OK;
}

int tm_backup_outcomes(const tm_backup_writer *w, Tidemark__TaskResult *r)
{
    return outcomes_fill(w->rs, w->res, w->complete, r);
}

int tm_repo_outcomes_failed(const tm_repo_set *rs, const tm_err *e, Tidemark__TaskResult *r)
{
    tm_repo_result *res = calloc(rs->n ? rs->n : 1, sizeof(*res));
    if (res == NULL) {
        return TM_ENOMEM;
    }
    for (size_t i = 0; i < rs->n; i++) {
        res[i].code = e->code != TM_OK ? e->code : TM_EIO;
        snprintf(res[i].op, sizeof(res[i].op), "begin backup");
        snprintf(res[i].msg, sizeof(res[i].msg), "%s", e->msg);
    }
    int rc = outcomes_fill(rs, res, NULL, r);
    free(res);
    return rc;
}

/* Delete what this writer stored in repository i: every key under the
 * backup's directory and its data key record. Only called where the writer
 * created the id's key record (owned), so nothing of another backup goes. */
static void cleanup(tm_backup_writer *w, size_t i)
{
    tm_storage *st = w->rs->repos[i].st;
    const char *name = w->rs->repos[i].name;
    char *prefix = tm_repo_path_backup(w->target, w->id, "");
    char *rec = tm_repo_path_key(w->target, w->id, w->rs->mk.id_hex);
    tm_err e = {0};
    int rc = prefix == NULL || rec == NULL ? tm_err_set(&e, TM_ENOMEM, "out of memory") : TM_OK;
    size_t deleted = 0;
    /* Deleting while listing shifts nothing: pages continue after the last
     * key seen, and deleted keys sort before it. */
    char *token = NULL;
    while (rc == TM_OK) {
        tm_storage_info *items = NULL;
        size_t n = 0;
        char *next = NULL;
        rc = tm_storage_list(st, prefix, token, 1000, &items, &n, &next, &e);
        const char **keys = rc == TM_OK ? calloc(n ? n : 1, sizeof(*keys)) : NULL;
        if (rc == TM_OK && keys == NULL) {
            rc = tm_err_set(&e, TM_ENOMEM, "out of memory");
        }
        for (size_t k = 0; rc == TM_OK && k < n; k++) {
            keys[k] = items[k].key;
        }
        if (rc == TM_OK && n > 0 && (rc = tm_storage_delete(st, keys, n, &e)) == TM_OK) {
            deleted += n;
        }
        free(keys);
        tm_storage_infos_free(items, n);
        free(token);
        token = next;
        if (token == NULL) {
            break;
        }
    }
    free(token);
    if (rc == TM_OK && (rc = tm_storage_delete(st, (const char *const *)&rec, 1, &e)) == TM_OK) {
        deleted++;
    }
    if (rc == TM_OK) {
        tm_info("repo", "event=partial_backup_deleted repo=%s backup=%s/%s objects=%zu", name,
                w->target, w->id, deleted);
    } else {
        tm_warn("repo",
                "event=partial_backup_cleanup_failed repo=%s backup=%s/%s deleted=%zu "
                "msg=\"%s\" hint=\"it has no manifest, so it is not a backup; retention or "
                "`tidemark-agent repo ls` shows what is left\"",
                name, w->target, w->id, deleted, e.msg);
    }
    free(prefix);
    free(rec);
}

void tm_backup_writer_free(tm_backup_writer *w)
{
    if (w == NULL) {
        return;
    }
    for (size_t i = 0; w->owned != NULL && i < w->rs->n; i++) {
        if (w->owned[i] && !w->complete[i]) {
            cleanup(w, i);
        }
    }
    free(w->owned);
    free(w->complete);
    tm_secure_zero(w->dk, sizeof(w->dk));
    tm_manifest_free(w->m);
    if (w->mu_init) {
        pthread_mutex_destroy(&w->mu);
    }
    free(w->res);
    free(w->target);
    free(w);
}

/* ---- reading ---------------------------------------------------------- */

struct tm_backup_reader {
    tm_repo_set *rs;
    size_t repo;
    char *target;
    char *id;
    uint8_t dk[TM_KEY_LEN];
    tm_manifest *m;
};

static int open_in(tm_backup_reader *r, size_t i, tm_err *err)
{
    tm_repo *rp = &r->rs->repos[i];
    char *man_key = tm_repo_path_backup(r->target, r->id, "manifest");
    if (man_key == NULL) {
        return tm_err_set(err, TM_ENOMEM, "out of memory");
    }
    void *buf = NULL;
    size_t len = 0;
    tm_storage_info info;
    int rc = tm_storage_stat(rp->st, man_key, &info, err);
    if (rc == TM_ENOENT) {
        rc = tm_err_set(err, TM_ENOENT, "repo %s: backup %s/%s does not exist (no manifest)",
                        rp->name, r->target, r->id);
    } else if (rc == TM_OK && info.size > TM_MANIFEST_MAX_STORED) {
        rc = tm_err_set(err, TM_ECORRUPT, "repo %s: %s is %llu bytes, more than any manifest",
                        rp->name, man_key, (unsigned long long)info.size);
    }
    if (rc == TM_OK) {
        rc = tm_repo_load_data_key(r->rs, i, r->target, r->id, r->dk, err);
    }
    if (rc == TM_OK && (rc = tm_storage_get(rp->st, man_key, &buf, &len, err)) != TM_OK) {
        tm_err_prefix(err, "repo %s", rp->name);
    }
    if (rc == TM_OK && (rc = tm_manifest_open(r->dk, man_key, buf, len, &r->m, err)) != TM_OK) {
        tm_err_prefix(err, "repo %s: %s", rp->name, man_key);
    }
    free(buf);
    free(man_key);
    if (rc == TM_OK) {
        r->repo = i;
    }
    return rc;
}

int tm_backup_open(tm_repo_set *rs, const char *target, const char *backup_id, const char *repo,
                   tm_backup_reader **out, tm_err *err)
{
    *out = NULL;
    int rc = need_keys(rs, err);
    if (rc != TM_OK) {
        return rc;
    }
    if (!tm_repo_valid_name(target) || !tm_repo_valid_name(backup_id)) {
        return tm_err_set(err, TM_EINVAL, "target and backup id must be names of [A-Za-z0-9._-]");
    }
    int only = -1;
    if (repo != NULL && (only = tm_repo_set_find(rs, repo)) < 0) {
        return tm_err_set(err, TM_EINVAL, "no repository named '%.80s' in the configuration", repo);
    }
    tm_backup_reader *r = calloc(1, sizeof(*r));
    if (r == NULL || (r->target = strdup(target)) == NULL || (r->id = strdup(backup_id)) == NULL) {
        tm_backup_reader_free(r);
        return tm_err_set(err, TM_ENOMEM, "out of memory");
    }
    r->rs = rs;
    rc = TM_ENOENT;
    char tried[TM_ERR_MSG_MAX] = "";
    size_t off = 0;
    int worst = TM_ENOENT;
    tm_err keep = {0};
    for (size_t i = 0; i < rs->n; i++) {
        if (only >= 0 && (size_t)only != i) {
            continue;
        }
        tm_err e = {0};
        rc = open_in(r, i, &e);
        if (rc == TM_OK) {
            break;
        }
        /* Keep the most telling reason: a wrong key or damage beats "absent". */
        if (worst == TM_ENOENT && rc != TM_ENOENT) {
            worst = rc;
            keep = e;
        }
        if (off < sizeof(tried)) {
            int n = snprintf(tried + off, sizeof(tried) - off, "%s%s", off ? "; " : "", e.msg);
            off += n > 0 ? (size_t)n : 0;
        }
    }
    if (rc != TM_OK) {
        tm_backup_reader_free(r);
        if (worst != TM_ENOENT) {
            *err = keep;
            return worst;
        }
        return tm_err_set(err, TM_ENOENT, "backup %s/%s not found: %s", target, backup_id, tried);
    }
    *out = r;
    return TM_OK;
}

const char *tm_backup_reader_repo(const tm_backup_reader *r)
{
    return r->rs->repos[r->repo].name;
}

tm_manifest *tm_backup_reader_manifest(tm_backup_reader *r)
{
    return r->m;
}

int tm_backup_get(tm_backup_reader *r, const char *name, const tm_sink *out, tm_err *err)
{
    char *key = tm_repo_path_data(r->target, r->id, name);
    if (key == NULL) {
        return tm_err_set(err, TM_ENOMEM, "out of memory");
    }
    tm_object_digest d;
    const char *k = NULL;
    size_t i = 0, n = tm_manifest_nobjects(r->m);
    for (; i < n; i++) {
        tm_manifest_object(r->m, i, &k, &d);
        if (strcmp(k, key) == 0) {
            break;
        }
    }
    tm_repo *rp = &r->rs->repos[r->repo];
    int rc;
    if (i == n) {
        rc = tm_err_set(err, TM_ENOENT, "backup %s/%s has no object '%s'", r->target, r->id, name);
        if (out != NULL) {
            out->abort(out->arg);
        }
    } else {
        tm_storage_reader *sr = NULL;
        rc = tm_storage_get_open(rp->st, key, 0, 0, &sr, err);
        if (rc != TM_OK) {
            if (out != NULL) {
                out->abort(out->arg);
            }
        } else {
            rc = tm_pipeline_read(r->dk, key, tm_source_storage_reader, sr, out, &d, NULL, err);
            tm_storage_get_close(sr);
        }
        if (rc != TM_OK) {
            tm_err_prefix(err, "repo %s", rp->name);
        }
    }
    free(key);
    return rc;
}

void tm_backup_reader_free(tm_backup_reader *r)
{
    if (r == NULL) {
        return;
    }
    tm_secure_zero(r->dk, sizeof(r->dk));
    tm_manifest_free(r->m);
    free(r->target);
    free(r->id);
    free(r);
}
