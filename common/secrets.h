/*
 * secrets.h - secret files at rest and key material in memory.
 *
 * A secret file (master key, agent identity, token files, TLS keys) is
 * created 0600 under a random temporary name with O_EXCL|O_NOFOLLOW, synced,
 * and then moved into place; a file that must never be replaced (a master
 * key) is moved with an atomic no-replace rename, so two generators racing
 * cannot both believe they wrote it. Loading checks the mode: a secret that
 * group or others can read has already leaked to them.
 */
#ifndef TM_SECRETS_H
#define TM_SECRETS_H

#include <stddef.h>

#include "common/err.h"

/* Write buf to path as a 0600 file. replace = 0: TM_EEXIST if path exists
 * (checked atomically by the rename, not before it). */
int tm_secret_file_write(const char *path, const void *buf, size_t len, int replace, tm_err *err);

/* How a secret file that group or others may access is treated. */
typedef enum { TM_SECRET_WARN, TM_SECRET_REFUSE } tm_secret_policy;

/* Check path's permission bits: not a regular file is refused; any group or
 * other bit is refused (TM_ECONFIG, with the chmod that fixes it) or warned
 * about once per call, by policy. what names the file in messages. */
int tm_secret_file_check(const char *path, const char *what, tm_secret_policy policy, tm_err *err);

/* No core dumps and no ptrace by other processes of the same user: a dump
 * of an agent or the coordinator would hold secrets and data keys. Call at
 * the start of main(). Failures are logged, not fatal. */
void tm_secrets_harden_process(void);

#endif
