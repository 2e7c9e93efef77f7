/*
 * wal_show.h - `wal-show`: what the repositories hold of a target's WAL
 * (ranges per timeline and repository, gaps shown, newest file and time)
 * and the local archiving state (queue depth, archive lag).
 */
#ifndef TM_PG_WAL_SHOW_H
#define TM_PG_WAL_SHOW_H

#include <stdio.h>

#include "common/config.h"

/* Exit code: 0 ok, 1 a gap or a repository that could not be listed, 2
 * configuration. pgdata may be NULL (queue from the archiver's status). */
int tm_wal_show(const tm_agent_conf *conf, const char *target, const char *pgdata, int json,
                FILE *out);

#endif
