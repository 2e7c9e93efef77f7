/*
 * repo_log.h - continuous log archives in the repository set: each
 * engine's log files (or pieces of them) stored one object each in every
 * repository, idempotently, read back with every check.
 *
 * Layout inside each repository (keys relative to its root):
 *
 *   <target>/keys/log/<data-key-id>/<master-key-id>   log data key record (keys.h)
 *   <target>/log/<rel>                                object, TMK1 framed (pipeline.h)
 *   <target>/log/<rel>.meta                           digest sidecar, clear text, written LAST
 *
 * <rel> is chosen by the engine: "<chain>/<name>", the engine's line of
 * history then a name that sorts in shipping order (each engine's folder
 * documents its own). A file exists in a repository once its
 * .meta is there (the object is written first, the sidecar after it, both
 * atomically), as a backup exists once its manifest is.
 *
 * Why a per-target log data key, not one per file: logs have no backup to
 * hang a key on, and unwrapping one key per stored file would double the
 * round trips. The key is created on the first push and reused; rotation
 * rewraps its record like a backup's. Two hosts (or processes) that push the
 * very first file at once may each create a key: both records are kept,
 * every sidecar names the key of its object, and later pushes all pick the
 * smallest key id, so they converge; nothing is ever overwritten.
 *
 * Sidecar (".meta"), one line:
 *   "tidemark-log 1 <plain-size> <mac> <data-key-id> <stored-size> <stored-sha256>"
 * mac = HMAC-SHA256(data key, "tidemark-log-mac 1" 0 rel 0 xxh3-128-hex 0 plain-size):
 * it identifies the plaintext (so a second push of the same file is
 * recognised without downloading it, and different content for the same
 * name is refused) without revealing a plaintext digest to whoever can list
 * the bucket; the stored SHA-256 lets anyone check the copy without the key.
 */
#ifndef TM_AGENT_REPO_LOG_H
#define TM_AGENT_REPO_LOG_H

#include <stddef.h>
#include <stdint.h>

#include "agent/repo/repository.h"

#define TM_LOG_META_SUFFIX ".meta"
#define TM_LOG_META_MAX 512

typedef struct tm_log_meta {
    uint64_t plain_size;
    char mac[65];    /* hex */
    char key_id[17]; /* log data key id, hex */
    uint64_t stored_size;
    char sha256[65]; /* stored bytes, hex */
} tm_log_meta;

/* Sidecar text (with trailing newline) into out; returns its length, or 0
 * when cap is too small. */
size_t tm_log_meta_format(const tm_log_meta *m, char *out, size_t cap);
int tm_log_meta_parse(const char *buf, size_t len, tm_log_meta *m, tm_err *err);
/* The mac of a plaintext (xxh3 = canonical 32-hex XXH3-128). */
int tm_log_mac(const uint8_t key[TM_KEY_LEN], const char *rel, const char *xxh3,
               uint64_t plain_size, char out[65], tm_err *err);

/* What a push does in one repository, from what is there. */
typedef enum {
    TM_LOG_UPLOAD,       /* nothing there: store it */
    TM_LOG_SAME,         /* same content already stored: done */
    TM_LOG_CONFLICT,     /* different content under that name: refuse */
    TM_LOG_CHECK_OBJECT, /* object without sidecar (interrupted push): read it to decide */
    TM_LOG_REPAIR,       /* sidecar says same content but the object is gone: store again */
} tm_log_decision;

/* local_mac: the local file's mac under stored->key_id's key (when
 * have_meta). Pure: unit tested. */
tm_log_decision tm_log_decide(int have_meta, const tm_log_meta *stored, int have_object,
                              uint64_t local_size, const char *local_mac);

/* XXH3-128 (canonical hex) and size of the file open on fd, read from
 * offset 0 with pread (the file offset is not moved). */
int tm_log_fd_xxh3(int fd, char out[33], uint64_t *size, tm_err *err);

typedef struct tm_log_store tm_log_store;

/* A target's log archive over rs (not owned; must have keys). */
int tm_log_store_open(tm_log_store **out, tm_repo_set *rs, const char *target, tm_err *err);
void tm_log_store_free(tm_log_store *ls);

/* Per repository outcome of a push. */
typedef enum {
    TM_LOG_R_STORED = 0,
    TM_LOG_R_ALREADY,
    TM_LOG_R_FAILED,
    TM_LOG_R_CONFLICT,
} tm_log_state;

typedef struct tm_log_push_result {
    tm_log_state state;
    char msg[TM_ERR_MSG_MAX];
} tm_log_push_result;

/* Store the file open on fd (read from offset 0 to EOF) as <rel> in every
 * repository. res: one entry per repository (may be NULL). Returns 0 when
 * at least `quorum` repositories (0 = all) hold it durably (stored now or
 * already there with the same content); TM_EEXIST when any repository holds
 * different content under that name (never overwritten; the message names
 * the file and the repository); TM_EIO (or the single failure's code)
 * otherwise, naming each failed repository. meta (may be NULL) gets the
 * sidecar of the local content. */
int tm_log_push(tm_log_store *ls, const char *rel, int fd, size_t quorum, tm_log_push_result *res,
                tm_log_meta *meta, tm_err *err);

/* Fetch <rel> into the file at path (temp + fsync + rename: it appears
 * complete or not at all) from the first repository, in config order, that
 * has a complete, authentic copy: frame tags, stored SHA-256 and sizes, and
 * the mac are checked before the file appears; a failing copy makes it try
 * the next repository. TM_ENOENT when no repository holds it and at least
 * one said so (message: where it was looked for); another code when copies
 * exist but all failed their checks, or no repository could answer.
 * repo_used (may be NULL) gets the repository index. */
int tm_log_get_file(tm_log_store *ls, const char *rel, const char *path, tm_log_meta *meta,
                    size_t *repo_used, tm_err *err);
/* The same checks and order into sinks of the caller's: open makes one
 * for each repository tried, committed only once every check passed,
 * aborted otherwise (what it was given is then to be dropped). For objects
 * read into memory or into a file the caller already holds. */
typedef int (*tm_log_sink_open)(void *arg, tm_sink *out, tm_err *err);
int tm_log_get_sink(tm_log_store *ls, const char *rel, tm_log_sink_open open, void *open_arg,
                    tm_log_meta *meta, size_t *repo_used, tm_err *err);

/* ---- listing ---------------------------------------------------------- */

typedef struct tm_log_item {
    char *rel; /* "<chain>/<name>", as the engine stored it */
    int has_meta;
    int has_object;
    uint64_t stored_size; /* object's */
    int64_t mtime;        /* object's, unix seconds, 0 if unknown */
} tm_log_item;

/* Every file under <target>/log/ of repository i, sorted by rel. */
int tm_log_scan(tm_repo_set *rs, size_t i, const char *target, tm_log_item **out, size_t *n,
                tm_err *err);
void tm_log_items_free(tm_log_item *items, size_t n);
/* Read and parse one sidecar. TM_ENOENT when absent. */
int tm_log_meta_get(tm_repo_set *rs, size_t i, const char *target, const char *rel, tm_log_meta *m,
                    tm_err *err);

#endif
