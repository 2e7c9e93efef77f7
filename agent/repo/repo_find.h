/*
 * repo_find.h - which backups of a target exist, and the newest one an
 * engine wants: what every engine's restore and drill begins with. A backup
 * exists where its manifest is; ids begin with their UTC second, so they
 * sort by time.
 */
#ifndef TM_AGENT_REPO_FIND_H
#define TM_AGENT_REPO_FIND_H

#include <stddef.h>

#include "agent/repo/repository.h"

/* The ids of target's backups that have a manifest in at least one
 * repository that could be listed, newest first, each once. A repository
 * that cannot be listed is logged and passed over; TM_EUNAVAIL when none
 * could be. *ids is freed with tm_repo_ids_free. */
int tm_repo_backup_ids(tm_repo_set *rs, const char *target, char ***ids, size_t *n, tm_err *err);
void tm_repo_ids_free(char **ids, size_t n);

/* Open the newest backup of target written by engine for which want(arg,
 * manifest) is 1 (want NULL: any), from the first repository where it
 * opens. A backup that cannot be read is logged and passed over; a wrong
 * master key stops the search (TM_EAUTH, the key named): it reads none.
 * TM_ENOENT when none is wanted. */
int tm_repo_find_backup(tm_repo_set *rs, const char *target, const char *engine,
                        int (*want)(void *arg, const Tidemark__Manifest *m), void *arg,
                        tm_backup_reader **out, tm_err *err);

#endif
