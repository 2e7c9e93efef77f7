/*
 * repo_verify.c - what a repository holds (scan), whether it is intact
 * (verify, with or without the key) and master key rotation (rewrap).
 *
 * All three start from one listing of the repository (tm_repo_scan): a
 * backend has no "directories", and one paginated pass over the keys gives
 * manifests, digest lists, data objects and key records together.
 */
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "agent/repo/repository.h"
#include "agent/repo/repository_int.h"
#include "common/util.h"

/* ---- scan ------------------------------------------------------------- */

typedef struct scan_acc {
    tm_backup_info *v;
    size_t n, cap;
    size_t last; /* consecutive keys mostly belong to the same backup */
} scan_acc;

static tm_backup_info *scan_get(scan_acc *a, const char *target, size_t tlen, const char *id,
                                size_t idlen)
{
    if (a->n > 0) {
        tm_backup_info *b = &a->v[a->last];
        if (strlen(b->target) == tlen && strncmp(b->target, target, tlen) == 0 &&
            strlen(b->backup_id) == idlen && strncmp(b->backup_id, id, idlen) == 0) {
            return b;
        }
    }
    for (size_t i = a->n; i-- > 0;) {
        tm_backup_info *b = &a->v[i];
        if (strlen(b->target) == tlen && strncmp(b->target, target, tlen) == 0 &&
            strlen(b->backup_id) == idlen && strncmp(b->backup_id, id, idlen) == 0) {
            a->last = i;
            return b;
        }
    }
    if (a->n == a->cap) {
        size_t cap = a->cap ? a->cap * 2 : 16;
        tm_backup_info *nv = realloc(a->v, cap * sizeof(*nv));
        if (nv == NULL) {
            return NULL;
        }
        a->v = nv;
        a->cap = cap;
    }
    tm_backup_info *b = &a->v[a->n];
    memset(b, 0, sizeof(*b));
    b->target = strndup(target, tlen);
    b->backup_id = strndup(id, idlen);
    a->n++;
    a->last = a->n - 1;
    return b->target != NULL && b->backup_id != NULL ? b : NULL;
}

/* Sort a key into the scan. Keys outside the layout are ignored (they may
 * be logs, or another tool's). */
static int scan_key(scan_acc *a, const tm_storage_info *it)
{
    const char *k = it->key;
    const char *s1 = strchr(k, '/');
    if (s1 == NULL) {
        return TM_OK;
    }
    const char *kind = s1 + 1;
    const char *s2 = strchr(kind, '/');
    if (s2 == NULL) {
        return TM_OK;
    }
    const char *id = s2 + 1;
    const char *s3 = strchr(id, '/');
    if (s3 == NULL || s3 == id) {
        return TM_OK;
    }
    const char *rest = s3 + 1;
    size_t kl = (size_t)(s2 - kind);
    int is_backup = kl == 6 && strncmp(kind, "backup", 6) == 0;
    int is_keys = kl == 4 && strncmp(kind, "keys", 4) == 0;
    if (!is_backup && !is_keys) {
        return TM_OK;
    }
    if (is_keys && (strlen(rest) != 2 * TM_KEY_ID_LEN || strchr(rest, '/') != NULL)) {
        return TM_OK;
    }
    tm_backup_info *b = scan_get(a, k, (size_t)(s1 - k), id, (size_t)(s3 - id));
    if (b == NULL) {
        return TM_ENOMEM;
    }
    if (is_keys) {
        void *nk = realloc(b->key_ids, (b->n_key_ids + 1) * sizeof(*b->key_ids));
        if (nk == NULL) {
            return TM_ENOMEM;
        }
        b->key_ids = nk;
        snprintf(b->key_ids[b->n_key_ids++], sizeof(b->key_ids[0]), "%s", rest);
    } else if (strcmp(rest, "manifest") == 0) {
        b->has_manifest = 1;
        b->manifest_size = it->size;
        b->mtime = it->mtime;
    } else if (strcmp(rest, "digests") == 0) {
        b->has_digests = 1;
    } else if (strncmp(rest, "data/", 5) == 0) {
        void *no = realloc(b->objects, (b->n_objects + 1) * sizeof(*b->objects));
        if (no == NULL) {
            return TM_ENOMEM;
        }
        b->objects = no;
        b->objects[b->n_objects].name = strdup(rest + 5);
        b->objects[b->n_objects].size = it->size;
        if (b->objects[b->n_objects].name == NULL) {
            return TM_ENOMEM;
        }
        b->n_objects++;
        b->stored_bytes += it->size;
    }
    return TM_OK;
}

static int info_cmp(const void *a, const void *b)
{
    const tm_backup_info *x = a, *y = b;
    int c = strcmp(x->target, y->target);
    return c != 0 ? c : strcmp(x->backup_id, y->backup_id);
}

int tm_repo_scan(tm_repo_set *rs, size_t i, const char *target, tm_backup_info **out, size_t *n,
                 tm_err *err)
{
    *out = NULL;
    *n = 0;
    scan_acc a = {0};
    char prefix[80] = "";
    if (target != NULL) {
        snprintf(prefix, sizeof(prefix), "%s/", target);
    }
    char *token = NULL;
    int rc = TM_OK;
    do {
        tm_storage_info *items = NULL;
        size_t k = 0;
        char *next = NULL;
        rc = tm_storage_list(rs->repos[i].st, prefix, token, 1000, &items, &k, &next, err);
        free(token);
        token = next;
        for (size_t j = 0; rc == TM_OK && j < k; j++) {
            if ((rc = scan_key(&a, &items[j])) == TM_ENOMEM) {
                tm_err_set(err, rc, "out of memory");
            }
        }
        tm_storage_infos_free(items, k);
    } while (rc == TM_OK && token != NULL);
    free(token);
    if (rc != TM_OK) {
        tm_backup_infos_free(a.v, a.n);
        return tm_err_prefix(err, "repo %s: listing", rs->repos[i].name);
    }
    if (a.n > 1) {
        qsort(a.v, a.n, sizeof(*a.v), info_cmp);
    }
    *out = a.v;
    *n = a.n;
    return TM_OK;
}

void tm_backup_infos_free(tm_backup_info *infos, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        free(infos[i].target);
        free(infos[i].backup_id);
        for (size_t k = 0; k < infos[i].n_objects; k++) {
            free(infos[i].objects[k].name);
        }
        free(infos[i].objects);
        free(infos[i].key_ids);
    }
    free(infos);
}

static const tm_backup_info *find_info(const tm_backup_info *v, size_t n, const char *target,
                                       const char *id)
{
    tm_backup_info key = {.target = (char *)target, .backup_id = (char *)id};
    if (n == 0) {
        return NULL; /* bsearch(NULL, 0) is undefined */
    }
    return bsearch(&key, v, n, sizeof(*v), info_cmp);
}

/* ---- digest lists ----------------------------------------------------- */

void tm_digests_free(tm_digest_entry *e, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        free(e[i].key);
    }
    free(e);
}

int tm_digests_parse(const char *buf, size_t len, tm_digest_entry **out, size_t *n, tm_err *err)
{
    *out = NULL;
    *n = 0;
    size_t ml = strlen(TM_DIGESTS_MAGIC);
    if (len < ml + 1 || memcmp(buf, TM_DIGESTS_MAGIC "\n", ml + 1) != 0) {
        return tm_err_set(err, TM_ECORRUPT, "not a digest list (first line is not '%s')",
                          TM_DIGESTS_MAGIC);
    }
    tm_digest_entry *v = NULL;
    size_t cnt = 0;
    size_t pos = ml + 1, line = 2;
    while (pos < len) {
        const char *l = buf + pos;
        const char *nl = memchr(l, '\n', len - pos);
        if (nl == NULL) {
            tm_digests_free(v, cnt);
            return tm_err_set(err, TM_ECORRUPT, "digest list: line %zu is not terminated", line);
        }
        size_t ll = (size_t)(nl - l);
        char sha[65];
        unsigned long long size = 0;
        int used = 0;
        char *tmp = strndup(l, ll);
        int ok = tmp != NULL && sscanf(tmp, "%64[0-9a-f] %llu %n", sha, &size, &used) == 2 &&
                 strlen(sha) == 64 && used > 0 && (size_t)used < ll;
        tm_digest_entry *nv = ok ? realloc(v, (cnt + 1) * sizeof(*v)) : NULL;
        if (nv == NULL) {
            free(tmp);
            tm_digests_free(v, cnt);
            return tm_err_set(err, TM_ECORRUPT, "digest list: line %zu is malformed", line);
        }
        v = nv;
        v[cnt].key = strdup(tmp + used);
        v[cnt].size = size;
        memcpy(v[cnt].sha256, sha, sizeof(sha));
        free(tmp);
        cnt++;
        if (v[cnt - 1].key == NULL) {
            tm_digests_free(v, cnt);
            return tm_err_set(err, TM_ENOMEM, "out of memory");
        }
        pos += ll + 1;
        line++;
    }
    *out = v;
    *n = cnt;
    return TM_OK;
}

/* ---- verify ----------------------------------------------------------- */

typedef struct vstate {
    tm_repo_set *rs;
    const tm_verify_opts *o;
    tm_verify_fn fn;
    void *arg;
    tm_verify_summary *sum;
    uint64_t done; /* bytes, for progress */
} vstate;

static void problem(vstate *v, size_t r, const char *target, const char *id, const char *object,
                    const char *fmt, ...) __attribute__((format(printf, 6, 7)));

static void problem(vstate *v, size_t r, const char *target, const char *id, const char *object,
                    const char *fmt, ...)
{
    char msg[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    tm_verify_item it = {0, v->rs->repos[r].name, target, id, object, msg, 0, 0};
    v->sum->problems++;
    v->fn(v->arg, &it);
}

/* A source that counts bytes for progress. */
typedef struct counting_src {
    tm_storage_reader *r;
    vstate *v;
    uint64_t bytes;
} counting_src;

static int counting_read(void *arg, void *buf, size_t cap, size_t *got, tm_err *err)
{
    counting_src *c = arg;
    int rc = tm_storage_read(c->r, buf, cap, got, err);
    if (rc == TM_OK) {
        c->bytes += *got;
        c->v->done += *got;
        if (c->v->o->progress != NULL) {
            c->v->o->progress(c->v->o->progress_arg, c->v->done);
        }
    }
    return rc;
}

static const tm_stored_object *find_object(const tm_backup_info *b, const char *name)
{
    for (size_t i = 0; i < b->n_objects; i++) {
        if (strcmp(b->objects[i].name, name) == 0) {
            return &b->objects[i];
        }
    }
    return NULL;
}

/* Everything about one backup in one repository. Returns problems found. */
static uint64_t verify_one(vstate *v, size_t r, const tm_backup_info *b, const char *ref_sha,
                           const char *ref_repo, char list_sha[65])
{
    tm_repo *rp = &v->rs->repos[r];
    uint64_t before = v->sum->problems;
    uint64_t bytes = 0, objects = 0;
    const char *T = b->target, *I = b->backup_id;
    char *dig_key = tm_repo_path_backup(T, I, "digests");
    char *man_key = tm_repo_path_backup(T, I, "manifest");
    char *prefix = tm_repo_path_backup(T, I, "data/");
    void *lbuf = NULL;
    size_t llen = 0;
    tm_digest_entry *list = NULL;
    size_t nlist = 0;
    tm_manifest *m = NULL;
    uint8_t dk[TM_KEY_LEN];
    int have_dk = 0;
    tm_err e = {0};
    list_sha[0] = '\0';
    if (dig_key == NULL || man_key == NULL || prefix == NULL) {
        problem(v, r, T, I, NULL, "out of memory");
        goto done;
    }
    /* 1. The digest list: present, parseable, the same bytes everywhere. */
    if (tm_storage_get(rp->st, dig_key, &lbuf, &llen, &e) != TM_OK) {
        problem(v, r, T, I, dig_key, "digest list unreadable: %s", e.msg);
    } else {
        tm_sha256_hex(lbuf, llen, list_sha);
        if (ref_sha != NULL && strcmp(ref_sha, list_sha) != 0) {
            problem(v, r, T, I, dig_key,
                    "digest list differs from repo %s's copy (SHA-256 %.16s... vs %.16s...): the "
                    "copies of this backup are not the same bytes",
                    ref_repo, list_sha, ref_sha);
        }
        if (tm_digests_parse(lbuf, llen, &list, &nlist, &e) != TM_OK) {
            problem(v, r, T, I, dig_key, "%s", e.msg);
        }
    }
    /* 2. With the key: the manifest opens, and agrees with the list. */
    if (v->o->use_key) {
        tm_err ke = {0};
        void *mbuf = NULL;
        size_t mlen = 0;
        if (tm_repo_load_data_key(v->rs, r, T, I, dk, &ke) != TM_OK) {
            problem(v, r, T, I, NULL, "%s", ke.msg);
        } else if ((have_dk = 1, tm_storage_get(rp->st, man_key, &mbuf, &mlen, &ke)) != TM_OK ||
                   tm_manifest_open(dk, man_key, mbuf, mlen, &m, &ke) != TM_OK) {
            problem(v, r, T, I, man_key, "manifest: %s", ke.msg);
        }
        free(mbuf);
        for (size_t i = 0; m != NULL && i < tm_manifest_nobjects(m); i++) {
            const char *k;
            tm_object_digest d;
            tm_manifest_object(m, i, &k, &d);
            size_t j = 0;
            while (j < nlist && strcmp(list[j].key, k) != 0) {
                j++;
            }
            if (list != NULL && (j == nlist || strcmp(list[j].sha256, d.sha256) != 0 ||
                                 list[j].size != d.stored_size)) {
                problem(v, r, T, I, k,
                        "digest list disagrees with the (authenticated) manifest: the list was "
                        "altered");
            }
        }
    }
    /* 3. Every object: present with the right size, stored SHA-256 right;
     * with the key also every frame and the plaintext digest. */
    size_t nobj = m != NULL ? tm_manifest_nobjects(m) : nlist;
    for (size_t i = 0; i < nobj; i++) {
        const char *k;
        tm_object_digest d;
        memset(&d, 0, sizeof(d));
        if (m != NULL) {
            tm_manifest_object(m, i, &k, &d);
        } else {
            k = list[i].key;
            d.stored_size = list[i].size;
            snprintf(d.sha256, sizeof(d.sha256), "%s", list[i].sha256);
        }
        int is_manifest = strcmp(k, man_key) == 0;
        if (!is_manifest) {
            if (strncmp(k, prefix, strlen(prefix)) != 0) {
                problem(v, r, T, I, k, "listed object is outside this backup's data/");
                continue;
            }
            const tm_stored_object *so = find_object(b, k + strlen(prefix));
            if (so == NULL) {
                problem(v, r, T, I, k, "object missing (listed in the %s, not in the repository)",
                        m != NULL ? "manifest" : "digest list");
                continue;
            }
            if (so->size != d.stored_size) {
                problem(v, r, T, I, k, "stored size %" PRIu64 ", expected %" PRIu64, so->size,
                        d.stored_size);
                continue;
            }
        }
        tm_storage_reader *sr = NULL;
        tm_err oe = {0};
        if (tm_storage_get_open(rp->st, k, 0, 0, &sr, &oe) != TM_OK) {
            problem(v, r, T, I, k, "cannot read: %s", oe.msg);
            continue;
        }
        counting_src cs = {sr, v, 0};
        int rc;
        if (m != NULL && !is_manifest) {
            rc = tm_pipeline_read(dk, k, counting_read, &cs, NULL, &d, NULL, &oe);
        } else {
            rc = tm_pipeline_verify_stored(k, counting_read, &cs, d.sha256, d.stored_size, NULL,
                                           &oe);
        }
        tm_storage_get_close(sr);
        bytes += cs.bytes;
        objects++;
        if (rc != TM_OK) {
            problem(v, r, T, I, k, "%s", oe.msg);
        }
    }
    /* The manifest itself against the list (keyed mode read objects from
     * the manifest, which does not list itself). */
    if (m != NULL) {
        for (size_t j = 0; j < nlist; j++) {
            if (strcmp(list[j].key, man_key) != 0) {
                continue;
            }
            tm_storage_reader *sr = NULL;
            tm_err oe = {0};
            if (tm_storage_get_open(rp->st, man_key, 0, 0, &sr, &oe) == TM_OK) {
                counting_src cs = {sr, v, 0};
                if (tm_pipeline_verify_stored(man_key, counting_read, &cs, list[j].sha256,
                                              list[j].size, NULL, &oe) != TM_OK) {
                    problem(v, r, T, I, man_key, "%s", oe.msg);
                }
                tm_storage_get_close(sr);
                bytes += cs.bytes;
            } else {
                problem(v, r, T, I, man_key, "cannot read: %s", oe.msg);
            }
        }
    }
    /* 4. Objects nobody listed: not part of the backup, so not trusted. */
    if (m != NULL || list != NULL) {
        for (size_t i = 0; i < b->n_objects; i++) {
            char *k = tm_repo_path_data(T, I, b->objects[i].name);
            int found = 0;
            for (size_t j = 0; k != NULL && j < nobj && !found; j++) {
                const char *lk;
                tm_object_digest d;
                if (m != NULL) {
                    tm_manifest_object(m, j, &lk, &d);
                } else {
                    lk = list[j].key;
                }
                found = strcmp(lk, k) == 0;
            }
            if (k != NULL && !found) {
                problem(v, r, T, I, k, "unexpected object, not listed in the backup");
            }
            free(k);
        }
    }
done:
    if (have_dk) {
        tm_secure_zero(dk, sizeof(dk));
    }
    tm_manifest_free(m);
    tm_digests_free(list, nlist);
    free(lbuf);
    free(dig_key);
    free(man_key);
    free(prefix);
    v->sum->checked++;
    v->sum->bytes += bytes;
    if (v->sum->problems == before) {
        tm_verify_item it = {1, rp->name, T, I, NULL, NULL, objects, bytes};
        v->fn(v->arg, &it);
    }
    return v->sum->problems - before;
}

int tm_repo_verify(tm_repo_set *rs, const tm_verify_opts *o, tm_verify_fn fn, void *arg,
                   tm_verify_summary *sum, tm_err *err)
{
    memset(sum, 0, sizeof(*sum));
    if (o->use_key && !rs->have_keys) {
        return tm_err_set(err, TM_EINVAL, "verify with the key needs the master key loaded");
    }
    int only = -1;
    if (o->repo != NULL && (only = tm_repo_set_find(rs, o->repo)) < 0) {
        return tm_err_set(err, TM_EINVAL, "no repository named '%.80s' in the configuration",
                          o->repo);
    }
    vstate v = {rs, o, fn, arg, sum, 0};
    tm_backup_info **infos = calloc(rs->n, sizeof(*infos));
    size_t *ns = calloc(rs->n, sizeof(*ns));
    int *listed = calloc(rs->n, sizeof(*listed));
    int rc = infos == NULL || ns == NULL || listed == NULL
                 ? tm_err_set(err, TM_ENOMEM, "out of memory")
                 : TM_OK;
    size_t nlisted = 0;
    for (size_t r = 0; rc == TM_OK && r < rs->n; r++) {
        if (only >= 0 && (size_t)only != r) {
            continue;
        }
        tm_err e = {0};
        if (tm_repo_scan(rs, r, o->target, &infos[r], &ns[r], &e) != TM_OK) {
            /* A repository we cannot list is a finding, not the end. */
            problem(&v, r, o->target, o->backup_id, NULL, "%s", e.msg);
            continue;
        }
        listed[r] = 1;
        nlisted++;
    }
    /* Every (target, id) with a manifest somewhere, sorted, once. */
    size_t nall = 0, capall = 0;
    tm_backup_info *all = NULL; /* borrowed strings */
    for (size_t r = 0; rc == TM_OK && r < rs->n; r++) {
        for (size_t i = 0; listed[r] && i < ns[r]; i++) {
            const tm_backup_info *b = &infos[r][i];
            if (!b->has_manifest ||
                (o->backup_id != NULL && strcmp(b->backup_id, o->backup_id) != 0)) {
                continue;
            }
            if (nall == capall) {
                capall = capall ? capall * 2 : 16;
                tm_backup_info *na = realloc(all, capall * sizeof(*na));
                if (na == NULL) {
                    rc = tm_err_set(err, TM_ENOMEM, "out of memory");
                    break;
                }
                all = na;
            }
            all[nall++] = (tm_backup_info){.target = b->target, .backup_id = b->backup_id};
        }
    }
    if (nall > 0) {
        qsort(all, nall, sizeof(*all), info_cmp);
    }
    for (size_t x = 0; rc == TM_OK && x < nall; x++) {
        if (x > 0 && info_cmp(&all[x - 1], &all[x]) == 0) {
            continue;
        }
        const char *T = all[x].target, *I = all[x].backup_id;
        sum->backups++;
        char ref_sha[65] = "", sha[65];
        const char *ref_repo = NULL;
        for (size_t r = 0; r < rs->n; r++) {
            if (!listed[r]) {
                continue;
            }
            const tm_backup_info *b = find_info(infos[r], ns[r], T, I);
            if (b == NULL || !b->has_manifest) {
                problem(&v, r, T, I, NULL, "%s",
                        b != NULL && (b->n_objects > 0 || b->n_key_ids > 0)
                            ? "backup incomplete here (objects but no manifest): a gap, the copy "
                              "in this repository does not exist"
                            : "backup missing here (no manifest): a gap in replication");
                continue;
            }
            verify_one(&v, r, b, ref_sha[0] ? ref_sha : NULL, ref_repo, sha);
            if (ref_sha[0] == '\0' && sha[0] != '\0') {
                memcpy(ref_sha, sha, sizeof(sha));
                ref_repo = rs->repos[r].name;
            }
        }
    }
    free(all);
    if (rc == TM_OK && sum->backups == 0 && o->backup_id != NULL) {
        for (size_t r = 0; r < rs->n; r++) {
            if (listed[r]) {
                problem(&v, r, o->target, o->backup_id, NULL,
                        "backup not found (no manifest in any repository)");
                break;
            }
        }
    }
    for (size_t r = 0; infos != NULL && r < rs->n; r++) {
        tm_backup_infos_free(infos[r], ns[r]);
    }
    free(infos);
    free(ns);
    free(listed);
    if (rc != TM_OK) {
        return rc;
    }
    if (nlisted == 0 && sum->problems == 0) {
        return tm_err_set(err, TM_EIO, "no repository could be listed");
    }
    return sum->problems > 0 ? TM_ECORRUPT : TM_OK;
}

/* ---- rotation --------------------------------------------------------- */

/* Log data key records (repo_log.h): <target>/keys/log/<data-key-id>/<master-key-id>.
 * One group per "<target>/keys/log/<data-key-id>" directory. */
typedef struct log_key {
    char *dir;  /* "<target>/keys/log/<dk>" */
    char **mks; /* master key ids that wrap it */
    size_t n;
} log_key;

static void log_keys_free(log_key *k, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        for (size_t j = 0; j < k[i].n; j++) {
            free(k[i].mks[j]);
        }
        free(k[i].mks);
        free(k[i].dir);
    }
    free(k);
}

static int log_keys_scan(tm_storage *st, log_key **out, size_t *n, tm_err *err)
{
    log_key *keys = NULL;
    size_t nk = 0;
    char *token = NULL;
    int rc = TM_OK;
    do {
        tm_storage_info *items = NULL;
        size_t ni = 0;
        char *next = NULL;
        rc = tm_storage_list(st, "", token, 1000, &items, &ni, &next, err);
        free(token);
        token = next;
        for (size_t i = 0; rc == TM_OK && i < ni; i++) {
            const char *k = items[i].key;
            const char *p = strstr(k, "/keys/log/");
            const char *slash = p ? strrchr(k, '/') : NULL;
            if (p == NULL || slash <= p + 10 || strchr(p + 10, '/') != slash) {
                continue;
            }
            size_t dl = (size_t)(slash - k);
            if (nk == 0 || strlen(keys[nk - 1].dir) != dl ||
                strncmp(keys[nk - 1].dir, k, dl) != 0) {
                log_key *nkp = realloc(keys, (nk + 1) * sizeof(*nkp));
                if (nkp == NULL || (nkp[nk].dir = strndup(k, dl)) == NULL) {
                    keys = nkp ? nkp : keys;
                    rc = tm_err_set(err, TM_ENOMEM, "out of memory");
                    break;
                }
                keys = nkp;
                keys[nk].mks = NULL;
                keys[nk].n = 0;
                nk++;
            }
            log_key *g = &keys[nk - 1];
            char **m = realloc(g->mks, (g->n + 1) * sizeof(*m));
            if (m == NULL || (m[g->n] = strdup(slash + 1)) == NULL) {
                g->mks = m ? m : g->mks;
                rc = tm_err_set(err, TM_ENOMEM, "out of memory");
                break;
            }
            g->mks = m;
            g->n++;
        }
        tm_storage_infos_free(items, ni);
    } while (rc == TM_OK && token != NULL);
    free(token);
    if (rc != TM_OK) {
        log_keys_free(keys, nk);
        return rc;
    }
    *out = keys;
    *n = nk;
    return TM_OK;
}

/* Phase 1 for the log data keys of repository r: a record under new_mk in
 * every group. */
static void rotate_log_keys(tm_repo_set *rs, size_t r, const tm_master_key *new_mk, vstate *v,
                            tm_rotate_stats *st, log_key *keys, size_t nk)
{
    for (size_t i = 0; i < nk; i++) {
        int have_new = 0, done = 0;
        for (size_t j = 0; j < keys[i].n; j++) {
            have_new |= strcmp(keys[i].mks[j], new_mk->id_hex) == 0;
        }
        if (have_new) {
            st->already++;
            continue;
        }
        tm_err last = {0};
        for (size_t j = 0; j < keys[i].n && !done; j++) {
            char path[1024], npath[1024];
            snprintf(path, sizeof(path), "%s/%s", keys[i].dir, keys[i].mks[j]);
            snprintf(npath, sizeof(npath), "%s/%s", keys[i].dir, new_mk->id_hex);
            void *buf = NULL;
            size_t len = 0;
            uint8_t out[TM_DATA_KEY_RECORD_LEN];
            if (tm_storage_get(rs->repos[r].st, path, &buf, &len, &last) == TM_OK) {
                if (len != TM_DATA_KEY_RECORD_LEN) {
                    tm_err_set(&last, TM_ECORRUPT, "%s: %zu bytes, not a data key record", path,
                               len);
                } else if (tm_data_key_rewrap(rs->kr, new_mk, buf, out, &last) == TM_OK &&
                           tm_storage_put(rs->repos[r].st, npath, out, sizeof(out), &last) ==
                               TM_OK) {
                    done = 1;
                }
            }
            tm_secure_zero(out, sizeof(out));
            free(buf);
        }
        if (done) {
            st->rewrapped++;
        } else {
            st->failed++;
            problem(v, r, NULL, NULL, keys[i].dir, "cannot rewrap the log key: %s", last.msg);
        }
    }
}

/* Phase 2 for the log data keys: drop the records under other master keys. */
static void rotate_log_keys_delete(tm_repo_set *rs, size_t r, const tm_master_key *new_mk,
                                   vstate *v, tm_rotate_stats *st, log_key *keys, size_t nk)
{
    for (size_t i = 0; i < nk; i++) {
        for (size_t j = 0; j < keys[i].n; j++) {
            if (strcmp(keys[i].mks[j], new_mk->id_hex) == 0) {
                continue;
            }
            char path[1024];
            snprintf(path, sizeof(path), "%s/%s", keys[i].dir, keys[i].mks[j]);
            const char *ks[1] = {path};
            tm_err e = {0};
            if (tm_storage_delete(rs->repos[r].st, ks, 1, &e) == TM_OK) {
                st->deleted++;
            } else {
                st->failed++;
                problem(v, r, NULL, NULL, path, "cannot delete old record: %s", e.msg);
            }
        }
    }
}

int tm_repo_rotate(tm_repo_set *rs, const tm_master_key *new_mk, int keep_old, tm_verify_fn fn,
                   void *arg, tm_rotate_stats *st, tm_err *err)
{
    memset(st, 0, sizeof(*st));
    if (!rs->have_keys) {
        return tm_err_set(err, TM_EINVAL, "rotation needs the current master key loaded");
    }
    tm_verify_summary dummy = {0};
    tm_verify_opts vo = {0};
    vstate v = {rs, &vo, fn, arg, &dummy, 0};
    tm_backup_info **infos = calloc(rs->n, sizeof(*infos));
    size_t *ns = calloc(rs->n, sizeof(*ns));
    if (infos == NULL || ns == NULL) {
        free(infos);
        free(ns);
        return tm_err_set(err, TM_ENOMEM, "out of memory");
    }
    /* Phase 1: a record under the new key for every backup everywhere, and
     * for every target's log data key. */
    log_key **lkeys = calloc(rs->n, sizeof(*lkeys));
    size_t *nlk = calloc(rs->n, sizeof(*nlk));
    if (lkeys == NULL || nlk == NULL) {
        free(lkeys);
        free(nlk);
        free(infos);
        free(ns);
        return tm_err_set(err, TM_ENOMEM, "out of memory");
    }
    for (size_t r = 0; r < rs->n; r++) {
        tm_err le = {0};
        if (log_keys_scan(rs->repos[r].st, &lkeys[r], &nlk[r], &le) != TM_OK) {
            problem(&v, r, NULL, NULL, NULL, "%s", le.msg);
            st->failed++;
        } else {
            rotate_log_keys(rs, r, new_mk, &v, st, lkeys[r], nlk[r]);
        }
    }
    for (size_t r = 0; r < rs->n; r++) {
        tm_err e = {0};
        if (tm_repo_scan(rs, r, NULL, &infos[r], &ns[r], &e) != TM_OK) {
            problem(&v, r, NULL, NULL, NULL, "%s", e.msg);
            st->failed++;
            continue;
        }
        for (size_t i = 0; i < ns[r]; i++) {
            tm_backup_info *b = &infos[r][i];
            if (b->n_key_ids == 0) {
                continue;
            }
            int have_new = 0;
            for (size_t k = 0; k < b->n_key_ids; k++) {
                have_new |= strcmp(b->key_ids[k], new_mk->id_hex) == 0;
            }
            if (have_new) {
                st->already++;
                continue;
            }
            int done = 0;
            tm_err last = {0};
            for (size_t k = 0; k < b->n_key_ids && !done; k++) {
                char *path = tm_repo_path_key(b->target, b->backup_id, b->key_ids[k]);
                char *npath = tm_repo_path_key(b->target, b->backup_id, new_mk->id_hex);
                void *buf = NULL;
                size_t len = 0;
                uint8_t out[TM_DATA_KEY_RECORD_LEN];
                if (path == NULL || npath == NULL) {
                    tm_err_set(&last, TM_ENOMEM, "out of memory");
                } else if (tm_storage_get(rs->repos[r].st, path, &buf, &len, &last) == TM_OK) {
                    if (len != TM_DATA_KEY_RECORD_LEN) {
                        tm_err_set(&last, TM_ECORRUPT, "%s: %zu bytes, not a data key record", path,
                                   len);
                    } else if (tm_data_key_rewrap(rs->kr, new_mk, buf, out, &last) == TM_OK &&
                               tm_storage_put(rs->repos[r].st, npath, out, sizeof(out), &last) ==
                                   TM_OK) {
                        done = 1;
                    }
                }
                tm_secure_zero(out, sizeof(out));
                free(buf);
                free(path);
                free(npath);
            }
            if (done) {
                st->rewrapped++;
            } else {
                st->failed++;
                problem(&v, r, b->target, b->backup_id, NULL, "cannot rewrap: %s", last.msg);
            }
        }
    }
    /* Phase 2: only when every record everywhere is under the new key are
     * the old ones removed - until then the old key still reads all. */
    for (size_t r = 0; st->failed == 0 && !keep_old && r < rs->n; r++) {
        for (size_t i = 0; i < ns[r]; i++) {
            tm_backup_info *b = &infos[r][i];
            for (size_t k = 0; k < b->n_key_ids; k++) {
                if (strcmp(b->key_ids[k], new_mk->id_hex) == 0) {
                    continue;
                }
                char *path = tm_repo_path_key(b->target, b->backup_id, b->key_ids[k]);
                tm_err e = {0};
                const char *keys[1] = {path};
                if (path != NULL && tm_storage_delete(rs->repos[r].st, keys, 1, &e) == TM_OK) {
                    st->deleted++;
                } else {
                    st->failed++;
                    problem(&v, r, b->target, b->backup_id, path, "cannot delete old record: %s",
                            path ? e.msg : "out of memory");
                }
                free(path);
            }
        }
    }
    for (size_t r = 0; st->failed == 0 && !keep_old && r < rs->n; r++) {
        rotate_log_keys_delete(rs, r, new_mk, &v, st, lkeys[r], nlk[r]);
    }
    for (size_t r = 0; r < rs->n; r++) {
        tm_backup_infos_free(infos[r], ns[r]);
        log_keys_free(lkeys[r], nlk[r]);
    }
    free(lkeys);
    free(nlk);
    free(infos);
    free(ns);
    if (st->failed > 0) {
        return tm_err_set(err, TM_EIO,
                          "rotation incomplete: %" PRIu64 " problem(s); old records were kept, "
                          "so the old key still reads everything; fix and run it again",
                          st->failed);
    }
    return TM_OK;
}
