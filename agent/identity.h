/*
 * identity.h - the agent's persisted identity (agent id + per-agent secret).
 *
 * Stored in <state_dir>/identity as two lines "id=..." and "secret=...",
 * mode 0600, written atomically. Re-registering with it keeps the same id.
 */
#ifndef TM_AGENT_IDENTITY_H
#define TM_AGENT_IDENTITY_H

#include "common/err.h"

typedef struct tm_identity {
    char id[64];
    char secret[128];
} tm_identity;

/* TM_ENOENT when no identity has been stored yet. */
int tm_identity_load(const char *state_dir, tm_identity *out, tm_err *err);
int tm_identity_save(const char *state_dir, const tm_identity *id, tm_err *err);

#endif
