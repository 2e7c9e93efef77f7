/*
 * repo_copy.h - repairing one repository from another: the stored bytes of
 * a backup or a log file are copied verbatim (so the stored SHA-256 in the
 * digest list or the log sidecar stays right without the key), each object
 * read back and checked after it is written, and the record that makes the
 * item exist (manifest, sidecar) written last: a copy interrupted half-way
 * leaves an item that does not exist yet, never a complete-looking wrong
 * one.
 */
#ifndef TM_AGENT_REPO_COPY_H
#define TM_AGENT_REPO_COPY_H

#include <stddef.h>
#include <stdint.h>

#include "agent/repo/repository.h"

typedef struct tm_copy_stats {
    uint64_t objects; /* objects written to the destination */
    uint64_t skipped; /* already there with the right digest */
    uint64_t bytes;   /* stored bytes written */
} tm_copy_stats;

/* Copy backup target/id from repository src to dst: key records the
 * destination lacks, every data object missing there or failing its stored
 * digest, the digest list, then the manifest. */
int tm_repo_copy_backup(tm_repo_set *rs, size_t src, size_t dst, const char *target,
                        const char *backup_id, tm_copy_stats *st, tm_err *err);

/* Copy log file <rel> of target (object, then its sidecar) from src to dst. */
int tm_repo_copy_log(tm_repo_set *rs, size_t src, size_t dst, const char *target, const char *rel,
                     tm_copy_stats *st, tm_err *err);

#endif
