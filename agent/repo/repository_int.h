/*
 * repository_int.h - what repository.c and repo_verify.c share; not for
 * other callers.
 */
#ifndef TM_AGENT_REPOSITORY_INT_H
#define TM_AGENT_REPOSITORY_INT_H

#include "agent/repo/repository.h"

#define TM_DIGESTS_MAGIC "tidemark-digests 1"

typedef struct tm_repo {
    char *name;
    char *region;
    tm_storage *st;
} tm_repo;

struct tm_repo_set {
    tm_repo *repos;
    size_t n;
    int have_keys;
    tm_master_key mk;
    tm_keyring *kr;
    /* ids of every key in the keyring, for "wrapped by X, have Y" messages */
    char key_ids[256];
    int zstd_level;
};

/* Repository paths (malloc'd). */
char *tm_repo_path_backup(const char *target, const char *id, const char *leaf);
char *tm_repo_path_data(const char *target, const char *id, const char *name);
char *tm_repo_path_key(const char *target, const char *id, const char *master_id);

/* Unwrap the data key of backup target/id in repository r with the set's
 * keyring. */
int tm_repo_load_data_key(tm_repo_set *rs, size_t r, const char *target, const char *id,
                          uint8_t key[TM_KEY_LEN], tm_err *err);

/* A parsed digest list. */
typedef struct tm_digest_entry {
    char *key;
    uint64_t size;
    char sha256[65];
} tm_digest_entry;

int tm_digests_parse(const char *buf, size_t len, tm_digest_entry **out, size_t *n, tm_err *err);
void tm_digests_free(tm_digest_entry *e, size_t n);

#endif
