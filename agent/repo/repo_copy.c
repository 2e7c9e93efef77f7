/*
 * repo_copy.c - verbatim copies between repositories (see repo_copy.h).
 */
#include "agent/repo/repo_copy.h"
#include "agent/repo/repo_log.h"
#include "agent/repo/repository_int.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int storage_src(void *arg, void *buf, size_t cap, size_t *got, tm_err *err)
{
    return tm_storage_read(arg, buf, cap, got, err);
}

/* Stored bytes of key in st against sha / size. */
static int check_stored(tm_storage *st, const char *key, const char *sha, uint64_t size,
                        tm_err *err)
{
    tm_storage_reader *r = NULL;
    int rc = tm_storage_get_open(st, key, 0, 0, &r, err);
    if (rc != TM_OK) {
        return rc;
    }
    rc = tm_pipeline_verify_stored(key, storage_src, r, sha, size, NULL, err);
    tm_storage_get_close(r);
    return rc;
}

/* Stream key from one repository to the other, then read the copy back. */
static int copy_object(tm_repo_set *rs, size_t src, size_t dst, const char *key, const char *sha,
                       uint64_t size, tm_copy_stats *st, tm_err *err)
{
    if (sha != NULL && check_stored(rs->repos[dst].st, key, sha, size, err) == TM_OK) {
        st->skipped++;
        return TM_OK;
    }
    tm_storage_reader *r = NULL;
    tm_storage_writer *w = NULL;
    int rc = tm_storage_get_open(rs->repos[src].st, key, 0, 0, &r, err);
    if (rc != TM_OK) {
        return tm_err_prefix(err, "copy %s: read from %s", key, rs->repos[src].name);
    }
    if ((rc = tm_storage_put_open(rs->repos[dst].st, key, &w, err)) != TM_OK) {
        tm_storage_get_close(r);
        return tm_err_prefix(err, "copy %s: write to %s", key, rs->repos[dst].name);
    }
    static __thread char buf[1 << 16];
    uint64_t total = 0;
    for (;;) {
        size_t got = 0;
        if ((rc = tm_storage_read(r, buf, sizeof(buf), &got, err)) != TM_OK || got == 0) {
            break;
        }
        if ((rc = tm_storage_write(w, buf, got, err)) != TM_OK) {
            break;
        }
        total += got;
    }
    tm_storage_get_close(r);
    if (rc != TM_OK) {
        tm_storage_put_abort(w);
        return tm_err_prefix(err, "copy %s from %s to %s", key, rs->repos[src].name,
                             rs->repos[dst].name);
    }
    if ((rc = tm_storage_put_commit(w, err)) != TM_OK) {
        return tm_err_prefix(err, "copy %s to %s", key, rs->repos[dst].name);
    }
    st->objects++;
    st->bytes += total;
    if (sha != NULL && (rc = check_stored(rs->repos[dst].st, key, sha, size, err)) != TM_OK) {
        return tm_err_prefix(err, "copy %s to %s: the copy does not match its stored digest", key,
                             rs->repos[dst].name);
    }
    return TM_OK;
}

/* Every object under prefix in src that dst lacks, copied (key records:
 * small, wrapped, no digest to check against). */
static int copy_missing_under(tm_repo_set *rs, size_t src, size_t dst, const char *prefix,
                              tm_copy_stats *st, tm_err *err)
{
    tm_storage_info *items = NULL;
    size_t n = 0;
    char *next = NULL;
    int rc = tm_storage_list(rs->repos[src].st, prefix, NULL, 1000, &items, &n, &next, err);
    free(next);
    for (size_t i = 0; rc == TM_OK && i < n; i++) {
        tm_storage_info info;
        tm_err e = {0};
        if (tm_storage_stat(rs->repos[dst].st, items[i].key, &info, &e) == TM_OK) {
            st->skipped++;
            continue;
        }
        rc = copy_object(rs, src, dst, items[i].key, NULL, 0, st, err);
    }
    tm_storage_infos_free(items, n);
    return rc;
}

int tm_repo_copy_backup(tm_repo_set *rs, size_t src, size_t dst, const char *target,
                        const char *backup_id, tm_copy_stats *st, tm_err *err)
{
    char *dig_key = tm_repo_path_backup(target, backup_id, "digests");
    char *man_key = tm_repo_path_backup(target, backup_id, "manifest");
    char *keys_prefix = NULL;
    void *lbuf = NULL, *dbuf = NULL;
    size_t llen = 0, dlen = 0;
    tm_digest_entry *list = NULL;
    size_t nlist = 0;
    int rc = TM_OK;
    if (dig_key == NULL || man_key == NULL ||
        asprintf(&keys_prefix, "%s/keys/%s/", target, backup_id) < 0) {
        keys_prefix = NULL;
        rc = tm_err_set(err, TM_ENOMEM, "out of memory");
        goto out;
    }
    if ((rc = tm_storage_get(rs->repos[src].st, dig_key, &lbuf, &llen, err)) != TM_OK ||
        (rc = tm_digests_parse(lbuf, llen, &list, &nlist, err)) != TM_OK) {
        tm_err_prefix(err, "backup %s: digest list in %s", backup_id, rs->repos[src].name);
        goto out;
    }
    /* 1. Data key records, so the copy can be restored from. */
    if ((rc = copy_missing_under(rs, src, dst, keys_prefix, st, err)) != TM_OK) {
        goto out;
    }
    /* 2. Every object but the manifest. */
    const tm_digest_entry *man = NULL;
    for (size_t i = 0; rc == TM_OK && i < nlist; i++) {
        if (strcmp(list[i].key, man_key) == 0) {
            man = &list[i];
            continue;
        }
        rc = copy_object(rs, src, dst, list[i].key, list[i].sha256, list[i].size, st, err);
    }
    if (rc != TM_OK) {
        goto out;
    }
    if (man == NULL) {
        rc = tm_err_set(err, TM_ECORRUPT, "backup %s: the digest list in %s lists no manifest",
                        backup_id, rs->repos[src].name);
        goto out;
    }
    /* 3. The digest list, when the destination's is not the same bytes. */
    tm_err e = {0};
    if (tm_storage_get(rs->repos[dst].st, dig_key, &dbuf, &dlen, &e) != TM_OK || dlen != llen ||
        memcmp(dbuf, lbuf, llen) != 0) {
        if ((rc = tm_storage_put(rs->repos[dst].st, dig_key, lbuf, llen, err)) != TM_OK) {
            tm_err_prefix(err, "copy %s to %s", dig_key, rs->repos[dst].name);
            goto out;
        }
        st->objects++;
        st->bytes += llen;
    }
    /* 4. The manifest last: from here on the backup exists there. */
    rc = copy_object(rs, src, dst, man_key, man->sha256, man->size, st, err);
out:
    tm_digests_free(list, nlist);
    free(lbuf);
    free(dbuf);
    free(dig_key);
    free(man_key);
    free(keys_prefix);
    return rc;
}

int tm_repo_copy_log(tm_repo_set *rs, size_t src, size_t dst, const char *target, const char *rel,
                     tm_copy_stats *st, tm_err *err)
{
    char *obj = NULL, *meta = NULL, *keys = NULL;
    void *mbuf = NULL;
    size_t mlen = 0;
    tm_log_meta m;
    int rc = TM_OK;
    if (asprintf(&obj, "%s/log/%s", target, rel) < 0) {
        obj = NULL;
    }
    if (asprintf(&meta, "%s/log/%s%s", target, rel, TM_LOG_META_SUFFIX) < 0) {
        meta = NULL;
    }
    if (obj == NULL || meta == NULL) {
        rc = tm_err_set(err, TM_ENOMEM, "out of memory");
        goto out;
    }
    if ((rc = tm_storage_get(rs->repos[src].st, meta, &mbuf, &mlen, err)) != TM_OK ||
        (rc = tm_log_meta_parse(mbuf, mlen, &m, err)) != TM_OK) {
        tm_err_prefix(err, "log %s: sidecar in %s", rel, rs->repos[src].name);
        goto out;
    }
    if (asprintf(&keys, "%s/keys/log/%s/", target, m.key_id) < 0) {
        keys = NULL;
        rc = tm_err_set(err, TM_ENOMEM, "out of memory");
        goto out;
    }
    if ((rc = copy_missing_under(rs, src, dst, keys, st, err)) != TM_OK ||
        (rc = copy_object(rs, src, dst, obj, m.sha256, m.stored_size, st, err)) != TM_OK) {
        goto out;
    }
    /* The sidecar last: the file exists there from now on. */
    if ((rc = tm_storage_put(rs->repos[dst].st, meta, mbuf, mlen, err)) != TM_OK) {
        tm_err_prefix(err, "copy %s to %s", meta, rs->repos[dst].name);
        goto out;
    }
    st->objects++;
    st->bytes += mlen;
out:
    free(mbuf);
    free(obj);
    free(meta);
    free(keys);
    return rc;
}
