/*
 * repository.h - the agent's repository set: every configured repository
 * (agent.yaml `repositories:`) opened together, and backups written to all of
 * them at once, read back, listed, verified and rekeyed.
 *
 * Layout inside each repository (keys relative to its root; an S3 prefix is
 * added by the storage layer):
 *
 *   <target>/keys/<backup-id>/<master-key-id>   data key record (keys.h, 64 bytes)
 *   <target>/backup/<backup-id>/data/<name>     objects, TMK1 framed (pipeline.h)
 *   <target>/backup/<backup-id>/digests         stored digest list, clear text
 *   <target>/backup/<backup-id>/manifest        sealed manifest, written LAST
 *
 * Order of writes: key record, objects, digests, manifest. A backup exists in
 * a repository once its manifest is there; a repository that failed anywhere
 * earlier gets no manifest, so the backup simply does not exist there.
 *
 * Why a key record per master key id: rotation writes a new record beside the
 * old one (never overwriting an object, as the immutable layout asks), and
 * only once every record of every repository is rewrapped are the old ones
 * deleted. A crash half-way leaves both records, both valid.
 *
 * Why a clear digest list: the manifest is sealed with the data key, so
 * without the key nobody could tell which stored bytes are right. The list
 * ("tidemark-digests 1", then "<sha256> <stored-size> <key>" per object and
 * for the manifest itself) lets anyone check every copy byte for byte and
 * compare repositories; it reveals nothing a bucket listing does not (names
 * and sizes). It is not authenticated by itself: a keyed verify checks it
 * against the manifest, which is.
 *
 * The set does not hold the coordinator's state: everything needed to restore
 * is in each repository. One caller at a time per set, with two exceptions:
 * the objects of one backup writer may be written from several threads, and
 * tm_backup_get may run concurrently on one reader.
 */
#ifndef TM_AGENT_REPOSITORY_H
#define TM_AGENT_REPOSITORY_H

#include <stddef.h>
#include <stdint.h>

#include "common/config.h"
#include "common/err.h"
#include "common/keys.h"
#include "common/manifest.h"
#include "common/pipeline.h"
#include "common/storage.h"
#include "tidemark.pb-c.h"

typedef struct tm_repo_set tm_repo_set;

/* Open flags. */
#define TM_REPO_KEYS 0x1 /* load the master key (+ old keys) now */

/* Open every repository of conf. Without TM_REPO_KEYS only keyless work is
 * possible (ls, verify --no-key). */
int tm_repo_set_open(tm_repo_set **out, const tm_agent_conf *conf, unsigned flags, tm_err *err);
void tm_repo_set_free(tm_repo_set *rs);
size_t tm_repo_set_count(const tm_repo_set *rs);
const char *tm_repo_set_name(const tm_repo_set *rs, size_t i);
const char *tm_repo_set_region(const tm_repo_set *rs, size_t i);
tm_storage *tm_repo_set_storage(tm_repo_set *rs, size_t i);
/* Index of the repository called name, or -1. */
int tm_repo_set_find(const tm_repo_set *rs, const char *name);
/* The current master key's id (hex), or NULL when keys were not loaded. */
const char *tm_repo_set_master_id(const tm_repo_set *rs);

/* "YYYYMMDDTHHMMSSZ-<kind>" for the current UTC second. */
void tm_backup_id_now(const char *kind, char *out, size_t cap);
/* Names that become path components: [A-Za-z0-9._-]{1,64}, not "." or "..". */
int tm_repo_valid_name(const char *s);

/* ---- writing a backup ------------------------------------------------- */

typedef struct tm_backup_writer tm_backup_writer;
typedef struct tm_backup_object tm_backup_object;

/* Per repository outcome of a backup. */
typedef struct tm_repo_result {
    const char *repo;         /* owned by the set */
    int code;                 /* 0 = complete there (after finish) */
    char op[48];              /* what failed: "put data key record", "put object", ... */
    char msg[TM_ERR_MSG_MAX]; /* "repository NAME: OP: <storage error> (<what to check>)" */
} tm_repo_result;

/* Start a backup: a fresh data key, wrapped with the master key, written to
 * every repository. backup_id NULL = tm_backup_id_now(kind). An existing
 * backup id (in any repository) is TM_EEXIST. Fails only when no repository
 * took the key record; single failures are carried to finish. */
int tm_backup_begin(tm_repo_set *rs, const char *target, const char *backup_id, const char *kind,
                    const char *engine, tm_backup_writer **out, tm_err *err);
const char *tm_backup_writer_id(const tm_backup_writer *w);
/* The manifest being built, for engine fields and labels (manifest.h). */
tm_manifest *tm_backup_writer_manifest(tm_backup_writer *w);

/* One object, streamed through the pipeline to every repository still
 * healthy, one upload each in parallel. name: relative path of [ -~] without
 * empty, "." or ".." components. Several objects may be open at once, each
 * written by one thread (engines copy files in parallel); open, close and
 * abort are safe to call from different threads. */
int tm_backup_object_open(tm_backup_writer *w, const char *name, tm_backup_object **out,
                          tm_err *err);
/* Fails only when every repository has failed. */
int tm_backup_object_write(tm_backup_object *o, const void *buf, size_t len, tm_err *err);
/* Commit: the object is recorded in the manifest; repositories that failed
 * are dropped from the rest of the backup. Frees o. Returns 0 when at least
 * one repository committed (see tm_backup_results for the others). */
int tm_backup_object_close(tm_backup_object *o, tm_object_digest *digest, tm_err *err);
/* Abandon the object (nothing visible anywhere); frees o. */
void tm_backup_object_abort(tm_backup_object *o);

/* Seal the manifest, write the digest list and the manifest to every
 * repository that has everything. 0 = complete everywhere; TM_EIO = complete
 * in some (message names the others); another code = nowhere. */
int tm_backup_finish(tm_backup_writer *w, tm_err *err);
/* Per repository results (one per repository of the set, in order). */
const tm_repo_result *tm_backup_results(const tm_backup_writer *w, size_t *n);
/* Append one RepositoryOutcome per repository to r->repository_outcomes: ok
 * only where the manifest was written; otherwise the error's class
 * (tm_storage_error_class), the operation and the message. Call before
 * tm_backup_writer_free, on success and failure alike. */
int tm_backup_outcomes(const tm_backup_writer *w, Tidemark__TaskResult *r);
/* When tm_backup_begin failed (no writer): every repository not ok, with the
 * class of e's code and e's message (which names each repository). */
int tm_repo_outcomes_failed(const tm_repo_set *rs, const tm_err *e, Tidemark__TaskResult *r);
/* Frees. A repository where the backup is not complete (not finished, or
 * dropped on the way) gets no manifest, and what this writer stored there
 * (objects, digest list, data key record) is deleted, best effort and
 * logged: a failed attempt leaves no partial backup and frees its space. */
void tm_backup_writer_free(tm_backup_writer *w);

/* ---- reading ---------------------------------------------------------- */

typedef struct tm_backup_reader tm_backup_reader;

/* Open a backup from repo (NULL = the first repository, in config order,
 * where it opens: manifest there, data key unwrapped, manifest authentic). */
int tm_backup_open(tm_repo_set *rs, const char *target, const char *backup_id, const char *repo,
                   tm_backup_reader **out, tm_err *err);
const char *tm_backup_reader_repo(const tm_backup_reader *r);
tm_manifest *tm_backup_reader_manifest(tm_backup_reader *r);
/* Stream object `name` (as given to object_open) into out, checking every
 * frame and both digests. out gets commit or abort (pipeline.h rules). */
int tm_backup_get(tm_backup_reader *r, const char *name, const tm_sink *out, tm_err *err);
void tm_backup_reader_free(tm_backup_reader *r);

/* ---- listing ---------------------------------------------------------- */

typedef struct tm_stored_object {
    char *name; /* under data/ */
    uint64_t size;
} tm_stored_object;

/* What one repository holds for one backup id (complete or not). */
typedef struct tm_backup_info {
    char *target;
    char *backup_id;
    int has_manifest;
    int has_digests;
    uint64_t manifest_size;
    int64_t mtime; /* manifest's, unix seconds; 0 if unknown */
    tm_stored_object *objects;
    size_t n_objects;
    uint64_t stored_bytes;                  /* data objects */
    char (*key_ids)[2 * TM_KEY_ID_LEN + 1]; /* master key ids of its key records */
    size_t n_key_ids;
} tm_backup_info;

/* Every backup id in repository i, under target (NULL = all targets), sorted
 * by target then id. Lists the keys once (paginated). */
int tm_repo_scan(tm_repo_set *rs, size_t i, const char *target, tm_backup_info **out, size_t *n,
                 tm_err *err);
void tm_backup_infos_free(tm_backup_info *infos, size_t n);

/* ---- verify ----------------------------------------------------------- */

typedef struct tm_verify_opts {
    const char *target;    /* NULL = all */
    const char *backup_id; /* NULL = all */
    const char *repo;      /* NULL = every repository */
    int use_key;           /* 1: decrypt every frame, check the manifest; 0: stored bytes only */
    void (*progress)(void *arg, uint64_t bytes_done);
    void *progress_arg;
} tm_verify_opts;

/* One finding: a problem (ok = 0) or one backup checked in one repository
 * (ok = 1). Strings live for the duration of the callback. */
typedef struct tm_verify_item {
    int ok;
    const char *repo;
    const char *target;
    const char *backup_id;
    const char *object; /* repository key, or NULL for the whole backup */
    const char *msg;    /* problem, or NULL */
    uint64_t objects;   /* ok items: objects read */
    uint64_t bytes;     /* ok items: stored bytes read */
} tm_verify_item;

typedef void (*tm_verify_fn)(void *arg, const tm_verify_item *item);

typedef struct tm_verify_summary {
    uint64_t backups;  /* distinct backup ids checked */
    uint64_t checked;  /* (backup, repository) pairs read */
    uint64_t problems; /* problem items reported */
    uint64_t bytes;
} tm_verify_summary;

/* Re-read every object of the selected backups in every selected repository
 * and compare the repositories. 0 = no problem; TM_ECORRUPT = problems were
 * reported through fn; other codes = could not verify (listing failed). */
int tm_repo_verify(tm_repo_set *rs, const tm_verify_opts *opts, tm_verify_fn fn, void *arg,
                   tm_verify_summary *sum, tm_err *err);

/* ---- key rotation ----------------------------------------------------- */

typedef struct tm_rotate_stats {
    uint64_t rewrapped; /* new records written */
    uint64_t already;   /* backups that already had a record under the new key */
    uint64_t deleted;   /* old records removed */
    uint64_t failed;
} tm_rotate_stats;

/* Rewrap every data key record of every backup in every repository under
 * new_mk (the set's keyring must hold the keys that wrapped them). Idempotent.
 * Old records are deleted only after every repository succeeded, and only
 * unless keep_old; until then the old key still reads everything. Problems
 * go to fn (ok = 0 items) as well as into stats. */
int tm_repo_rotate(tm_repo_set *rs, const tm_master_key *new_mk, int keep_old, tm_verify_fn fn,
                   void *arg, tm_rotate_stats *st, tm_err *err);

#endif
