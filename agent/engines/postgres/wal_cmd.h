/*
 * wal_cmd.h - `tidemark-agent wal-push | wal-get | wal-show | wal-archiver`.
 */
#ifndef TM_PG_WAL_CMD_H
#define TM_PG_WAL_CMD_H

#include "agent/engine.h"

/* argv[0] is the command name ("wal-push", ...). Returns the exit code. */
int tm_wal_cmd(const char *config, int argc, char **argv);
/* tm_engine.cmds: the four commands above. */
extern const tm_engine_cmd tm_pg_cmds[];

#endif
