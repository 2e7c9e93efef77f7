/*
 * in_use.c - tm_engine.in_use for PostgreSQL: a directory a running server
 * uses is never restored into (agent/restore_root.c asks every engine).
 */
#include "agent/engines/postgres/pg.h"
#include "agent/restore_root.h"
#include "common/util.h"

#include <errno.h>
#include <limits.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>

int tm_pg_in_use(const char *dir, char *why, size_t cap)
{
    /* A postmaster.pid whose first line is a live process. */
    char pf[PATH_MAX + 32], *txt = NULL;
    size_t tl = 0;
    snprintf(pf, sizeof(pf), "%s/postmaster.pid", dir);
    if (tm_file_read(pf, &txt, &tl, NULL) == TM_OK) {
        long pid = strtol(txt, NULL, 10);
        free(txt);
        if (pid > 0 && (kill((pid_t)pid, 0) == 0 || errno == EPERM)) {
            snprintf(why, cap,
                     "%s/postmaster.pid names running process %ld: a PostgreSQL server "
                     "runs from this directory; stop it (pg_ctl -D %s stop) before "
                     "restoring into it",
                     dir, pid, dir);
            return 1;
        }
    }
    /* Running servers: the postmaster's working directory is its data
     * directory; pg_wal and the tablespaces may live elsewhere. */
    static const char *const comms[] = {"postgres", "postmaster", NULL};
    static const char *const subdirs[] = {"pg_wal", "pg_tblspc/", NULL};
    return tm_restore_cwd_busy(dir, comms, subdirs, why, cap);
}
