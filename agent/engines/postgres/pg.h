/*
 * pg.h - the PostgreSQL engine's internal contract, shared by its rooms:
 *
 *   pgutil.c    LSNs, WAL segment names, backup_label, backup ids, times
 *   files.c     walking PGDATA + tablespaces, the exclusion rules, the
 *               incremental copy-or-reference decision
 *   checksum.c  PostgreSQL's page checksum (validation while reading)
 *   pgconn.c    libpq: connect, pg_backup_start/stop on one session
 *   catalog.c   the backups of a target as the repository records them
 *   backup.c    full and incremental backups
 *   restore.c   restore into a directory, recovery settings, --start
 *   drill.c     restore drills: restore + start + checks + RTO/RPO + teardown
 *   engine.c    the tm_engine glue (tasks in, TaskResult out)
 *
 * Nothing here is used outside agent/engines/postgres/ except through
 * tm_engine_postgres (agent/engine.c).
 */
#ifndef TM_ENGINES_POSTGRES_PG_H
#define TM_ENGINES_POSTGRES_PG_H

#include <stddef.h>
#include <stdint.h>

#include "agent/engine.h"
#include "agent/engines/postgres/config.h"
#include "agent/repo/repository.h"
#include "common/config.h"
#include "common/err.h"

#include "repository.pb-c.h"

#define TM_PG_BLCKSZ 8192
#define TM_PG_RELSEG_BLOCKS 131072u /* 1 GiB segments of 8 KiB blocks */
/* A file whose mtime is this close to (or after) the previous backup's start
 * is copied again even when size and mtime match: see tm_pg_incr_must_copy. */
#define TM_PG_MTIME_SLACK_S 2

/* FileEntry.type */
enum { TM_PG_FILE = 0, TM_PG_DIR = 1, TM_PG_LINK = 2 };

/* ---- pgutil.c --------------------------------------------------------- */

/* "16/B374D848" <-> 64-bit LSN. */
int tm_pg_lsn_parse(const char *s, uint64_t *out);
void tm_pg_lsn_fmt(uint64_t lsn, char *out, size_t cap);
/* WAL segment file name (24 hex chars) of segment number segno. */
void tm_pg_wal_name(uint32_t tli, uint64_t segno, uint32_t seg_size, char out[25]);
/* Parse a 24-char WAL segment name; 0 ok, TM_EINVAL if not one. */
int tm_pg_wal_parse(const char *name, uint32_t seg_size, uint32_t *tli, uint64_t *segno);

/* What a backup_label says (the parts a restore and the catalog need). */
typedef struct tm_pg_label {
    uint64_t start_lsn;      /* START WAL LOCATION */
    uint64_t checkpoint_lsn; /* CHECKPOINT LOCATION */
    uint32_t timeline;       /* START TIMELINE */
    char start_wal[25];      /* the segment named on the START WAL LOCATION line */
    char method[32];         /* BACKUP METHOD */
    char label[128];         /* LABEL */
} tm_pg_label;
int tm_pg_label_parse(const char *text, tm_pg_label *out, tm_err *err);

/* "YYYYMMDDTHHMMSSZ-full" / "-incr" for unix second t (UTC). */
void tm_pg_backup_id(int64_t t, int incremental, char *out, size_t cap);
/* "YYYY-MM-DD HH:MM:SS[.fff][+00|Z|+HH:MM]" -> unix seconds (fraction
 * rounded up: a target inside a second includes the whole second's start). */
int tm_pg_time_parse(const char *s, int64_t *out);
/* unix seconds -> "YYYY-MM-DD HH:MM:SS+00" */
void tm_pg_time_fmt(int64_t t, char *out, size_t cap);

/* ---- wal_expire.c ----------------------------------------------------- */

/* tm_engine.log_before: a WAL file of the cutoff backup's timeline (segment,
 * .partial or .backup file) whose segment lies before the backup's start
 * segment (manifest engine_info "start_wal", else "start_lsn" + "timeline" +
 * "wal_segment_size", else the spec's catalog LSN and timeline with 16 MiB
 * segments). History files and other timelines are always kept. */
int tm_pg_log_before(const Tidemark__Manifest *cutoff, const Tidemark__ExpireSpec *spec,
                     const char *rel);

/* ---- log_status.c ----------------------------------------------------- */

/* tm_engine.log_ranges: runs of consecutive WAL segments per timeline. */
int tm_pg_log_ranges(const tm_target_conf *t, const tm_log_item *items, size_t n,
                     tm_log_range **out, size_t *nout, tm_err *err);
/* tm_engine.log_status: pg_stat_archiver and the archive_status queue. */
void tm_pg_log_status(const tm_target_conf *t, tm_log_status *st);

/* ---- in_use.c --------------------------------------------------------- */

/* tm_engine.in_use: a postmaster.pid naming a live process, or the data
 * directory, pg_wal or a tablespace of a running postgres (from /proc). */
int tm_pg_in_use(const char *dir, char *why, size_t cap);

/* ---- restore_cli.c ---------------------------------------------------- */

/* tm_engine.restore_cli and .restore_usage: `tidemark-agent restore`. */
int tm_pg_restore_cli(const tm_agent_conf *conf, int argc, char **argv);
extern const char tm_pg_restore_usage[];

/* ---- files.c ---------------------------------------------------------- */

/* What the walk does with a path relative to PGDATA. */
enum { TM_PG_KEEP = 0, TM_PG_SKIP = 1, TM_PG_EMPTY_DIR = 2 /* record the dir, not its contents */ };
int tm_pg_exclude(const char *rel, int is_dir);
/* 1 if rel names a relation data file (checksummed pages); *segno = its
 * 1 GiB segment number. */
int tm_pg_is_relation_file(const char *rel, uint32_t *segno);

/* One entry found by the walk. */
typedef struct tm_pg_entry {
    char *rel;  /* relative to PGDATA (tablespace contents under pg_tblspc/<oid>/) */
    char *abs;  /* where to read it */
    char *link; /* symlink target */
    int type;   /* TM_PG_FILE | TM_PG_DIR | TM_PG_LINK */
    uint32_t mode;
    int64_t mtime;
    uint64_t size;
} tm_pg_entry;

/* Walk pgdata (following pg_tblspc/<oid> links into their targets). Sorted
 * by rel, directories before their contents. */
int tm_pg_walk(const char *pgdata, tm_pg_entry **out, size_t *n, tm_err *err);
void tm_pg_entries_free(tm_pg_entry *e, size_t n);

/* The incremental decision. prev: the file in the previous backup (NULL =
 * new file); prev_start: that backup's start time (unix s). 1 = copy. */
int tm_pg_incr_must_copy(const Tidemark__FileEntry *prev, uint64_t size, int64_t mtime,
                         int64_t prev_start);

/* ---- checksum.c ------------------------------------------------------- */

uint16_t tm_pg_checksum_page(const uint8_t *page, uint32_t blkno);
/* 1 if the page fails validation: not new (pd_upper != 0), not all zero,
 * not written after the backup started (pd_lsn < start_lsn: WAL replay
 * fixes those, they may be torn), and the stored checksum differs. */
int tm_pg_page_bad(const uint8_t *page, uint32_t blkno, uint64_t start_lsn, uint16_t *stored,
                   uint16_t *computed);

/* ---- pgconn.c --------------------------------------------------------- */

typedef struct tm_pg_conn tm_pg_conn;

/* Connect as the target's settings say; port 0 = the configured one. */
int tm_pg_connect(const tm_pg_target_conf *c, const char *host, uint32_t port, const char *user,
                  tm_pg_conn **out, tm_err *err);
/* Closing the session also aborts a backup still running on it. */
void tm_pg_close(tm_pg_conn *c);
/* First column of the first row (malloc'd), or TM_ENOENT for no row. */
int tm_pg_query_value(tm_pg_conn *c, const char *sql, char **out, tm_err *err);

typedef struct tm_pg_server {
    int version_num; /* 150004 */
    uint32_t wal_segment_size;
    char data_directory[4096];
    char system_identifier[32];
    int data_checksums; /* initdb --data-checksums: pages carry checksums */
} tm_pg_server;
int tm_pg_server_info(tm_pg_conn *c, tm_pg_server *out, tm_err *err);
/* A temporary physical slot that reserves WAL from now until the session
 * ends, so the segments between start and stop cannot be recycled before
 * the backup copies them. */
int tm_pg_reserve_wal(tm_pg_conn *c, tm_err *err);
/* Non-exclusive backup on this session. */
int tm_pg_backup_start(tm_pg_conn *c, int version_num, const char *label, uint64_t *start_lsn,
                       tm_err *err);
typedef struct tm_pg_stop {
    uint64_t stop_lsn;
    char *labelfile; /* backup_label contents */
    char *spcmap;    /* tablespace_map contents, may be empty */
} tm_pg_stop;
int tm_pg_backup_stop(tm_pg_conn *c, int version_num, tm_pg_stop *out, tm_err *err);
void tm_pg_stop_free(tm_pg_stop *s);

/* ---- catalog.c -------------------------------------------------------- */

typedef struct tm_pg_backup {
    char *id;
    char *kind;   /* "full" | "incremental" */
    char *parent; /* may be NULL */
    uint64_t start_lsn, stop_lsn;
    int64_t start_time, stop_time;
    uint32_t timeline;
    size_t repos;   /* repositories holding a manifest */
    int everywhere; /* in every repository of the set */
} tm_pg_backup;

/* PostgreSQL backups of target in the set, oldest first (by start time).
 * A repository that cannot be listed is skipped with a warning. */
int tm_pg_backups_list(tm_repo_set *rs, const char *target, tm_pg_backup **out, size_t *n,
                       tm_err *err);
void tm_pg_backups_free(tm_pg_backup *b, size_t n);
/* engine_info value of a manifest, or NULL. */
const char *tm_pg_info(const Tidemark__Manifest *m, const char *key);

/* ---- backup.c --------------------------------------------------------- */

int tm_pg_backup_run(tm_task_ctx *ctx, const tm_agent_conf *conf, const tm_target_conf *t,
                     int incremental, Tidemark__TaskResult *result, tm_err *err);

/* ---- restore.c -------------------------------------------------------- */

typedef struct tm_pg_restore_opts {
    const char *target;
    const char *pgdata;
    const char *time;      /* recovery_target_time, or NULL */
    const char *backup_id; /* restore this backup, or NULL = chosen by time/lsn/latest */
    const char *lsn;       /* recovery_target_lsn, or NULL */
    int immediate;         /* stop at the backup's consistent point */
    int delta;             /* reuse matching files in an existing pgdata */
    int start;             /* start PostgreSQL and wait for recovery */
    uint32_t port;         /* with start: port to listen on (0 = as restored) */
    const char *owner;     /* OS user to own the files (root only); NULL = "postgres" */
    const char *self_exe;  /* this binary, for restore_command; NULL = /proc/self/exe */
    /* Tablespace relocation (pgBackRest's --tablespace-map/-map-all): "OID=DIR"
     * entries, and a directory under which every other tablespace goes to
     * DIR/<oid>. NULL/0 = restore each tablespace to its recorded path. */
    const char *const *ts_map;
    size_t n_ts_map;
    const char *ts_map_all;
    /* pg_wal recorded as a link (initdb --waldir) becomes a link to this
     * (empty) directory; NULL = a plain pg_wal directory inside pgdata. */
    const char *waldir;
    /* progress + cancel when run as a task; may be NULL. Non-NULL also means
     * the coordinator asked: every directory must lie under restore_roots. */
    tm_task_ctx *ctx;
} tm_pg_restore_opts;

typedef struct tm_pg_restore_report {
    char backup_id[80];
    char chain[512]; /* backups read from */
    uint64_t files, bytes, reused_files, reused_bytes, removed;
    double files_s, recovery_s, total_s;
    char recovery_target[128];
    char verify[256]; /* result of the verification query (with start) */
    /* With start: where the server listens and as whom to connect. */
    char host[256];
    uint32_t port;
    char user[64];
} tm_pg_restore_report;

int tm_pg_restore(const tm_agent_conf *conf, const tm_pg_restore_opts *o, tm_pg_restore_report *rep,
                  tm_err *err);
/* A value quoted for postgresql.auto.conf (' and \\ doubled) into *out
 * (malloc'd); TM_EINVAL naming what for a newline or other control char. */
int tm_pg_conf_quote(const char *what, const char *s, char **out, tm_err *err);
/* Stop a server started by tm_pg_restore (start = 1) in pgdata, at once
 * (-m immediate: the copy is thrown away). TM_OK if it is not running. */
int tm_pg_restore_stop(const tm_agent_conf *conf, const char *target, const char *pgdata,
                       tm_err *err);

/* ---- drill.c ---------------------------------------------------------- */

/* The DRILL task: restore into a fresh directory on a free port, start,
 * integrity and user checks, RTO and achieved RPO, stop and remove. */
int tm_pg_drill(tm_task_ctx *ctx, const Tidemark__Task *task, Tidemark__TaskResult *result,
                tm_err *err);

#endif
