/*
 * db.h - open a target's SQLite database for the agent: the busy timeout,
 * and the check that it is in WAL mode (switched only when the target
 * allows it: a journal mode is the application's choice).
 */
#ifndef TM_SQLITE_DB_H
#define TM_SQLITE_DB_H

#include <sqlite3.h>

#include "common/err.h"

/* Open path read-write (it must exist; never created), with busy_ms as the
 * lock wait and no checkpoint when the connection closes; the journal mode
 * is left alone. *out is closed with sqlite3_close. */
int tm_sqlite_db_connect(const char *path, int busy_ms, sqlite3 **out, tm_err *err);
/* Open path read-write (it must exist; never created). busy_ms: how long a
 * statement waits for a lock. set_wal: switch a database that is not in
 * WAL mode to it; without, such a database is refused with TM_ECONFIG
 * saying so. *out is closed with sqlite3_close. */
int tm_sqlite_db_open(const char *path, int busy_ms, int set_wal, sqlite3 **out, tm_err *err);
/* Run sql (no result rows wanted); TM_EBUSY when locked past the timeout. */
int tm_sqlite_db_exec(sqlite3 *c, const char *sql, tm_err *err);
/* Open a read transaction now (BEGIN + a read, which takes the snapshot). */
int tm_sqlite_db_begin_read(sqlite3 *c, tm_err *err);
/* Map a SQLite result code to TM_E*. */
int tm_sqlite_db_code(int rc);

#endif
