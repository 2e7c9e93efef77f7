/*
 * tm_retention_seed - seed years of backups and WAL into a real repository
 * set and a real catalog, for the retention tests (tests/integration/
 * test_retention.py). Links the agent's repository code and the
 * coordinator's catalog code, so what it writes is exactly what an agent and
 * a coordinator would: sealed manifests (written last), data objects, digest
 * lists, data key records in every repository of the agent config, and
 * BackupInfo records in the catalog.
 *
 *   tm_retention_seed AGENT_YAML CATALOG_DB < SCRIPT
 *
 * SCRIPT, one command per line (fields separated by blanks):
 *   backup TARGET ID full|incremental PARENT|- STARTED FINISHED START_WAL WHERE
 *       a backup with that id (manifest: kind, parent, engine "postgres",
 *       engine_info start_wal/start_lsn/timeline/wal_segment_size, one small
 *       data object); WHERE: both | repo (repositories only) | catalog
 *   backup TARGET ID snapshot - STARTED FINISHED AOF_POSITION|- WHERE
 *       the same for a snapshot of the second engine: engine "redis", one
 *       dump.rdb object, engine_info aof_position (the shipped AOF position
 *       the snapshot recorded; - = none)
 *   wal TARGET REL
 *       a small log file at <TARGET>/log/<REL> in every repository (repo_log)
 * Prints "seeded N backups, M log files"; exit 1 on any failure.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "agent/engine.h"
#include "agent/repo/repo_log.h"
#include "agent/repo/repository.h"
#include "common/config.h"
#include "coordinator/catalog.h"
#include "tidemark.pb-c.h"

static int fail(const char *what, const tm_err *err)
{
    fprintf(stderr, "tm_retention_seed: %s: %s\n", what, err->msg);
    return 1;
}

/* WAL name -> "TLI/LOG/SEG" LSN of its first byte (16 MiB segments). */
static void wal_lsn(const char *wal, char *lsn, size_t cap, unsigned *tli)
{
    unsigned t = 0, log = 0, seg = 0;
    sscanf(wal, "%8x%8x%8x", &t, &log, &seg);
    *tli = t;
    snprintf(lsn, cap, "%X/%X", log, seg << 24);
}

static int seed_backup(tm_repo_set *rs, tm_catalog *cat, char **f, tm_err *err)
{
    const char *target = f[1], *id = f[2], *kind = f[3];
    const char *parent = strcmp(f[4], "-") == 0 ? NULL : f[4];
    long long started = atoll(f[5]), finished = atoll(f[6]);
    const char *where = f[8];
    int snap = strcmp(kind, "snapshot") == 0;
    char lsn[32], tli_s[16];
    unsigned tli = 0;
    if (!snap) {
        wal_lsn(f[7], lsn, sizeof(lsn), &tli);
    }
    snprintf(tli_s, sizeof(tli_s), "%u", tli);
    int rc = TM_OK;
    if (strcmp(where, "catalog") != 0) {
        tm_backup_writer *w = NULL;
        tm_backup_object *o = NULL;
        tm_object_digest d;
        rc = tm_backup_begin(rs, target, id, kind, snap ? "redis" : "postgres", &w, err);
        if (rc == TM_OK &&
            (rc = tm_backup_object_open(w, snap ? "dump.rdb" : "base.tar", &o, err)) == TM_OK) {
            char data[128];
            int n = snprintf(data, sizeof(data), "backup %s of %s\n", id, target);
            rc = tm_backup_object_write(o, data, (size_t)n, err);
            if (rc == TM_OK) {
                rc = tm_backup_object_close(o, &d, err);
            } else {
                tm_backup_object_abort(o);
            }
        }
        Tidemark__Manifest__EngineInfoEntry e[4], *ep[4];
        const char *kv[4][2] = {{"start_wal", f[7]},
                                {"start_lsn", lsn},
                                {"timeline", tli_s},
                                {"wal_segment_size", "16777216"}};
        size_t nkv = 4;
        if (snap) {
            kv[0][0] = "aof_position";
            nkv = strcmp(f[7], "-") == 0 ? 0 : 1;
        }
        for (size_t i = 0; i < nkv; i++) {
            tidemark__manifest__engine_info_entry__init(&e[i]);
            e[i].key = (char *)kv[i][0];
            e[i].value = (char *)kv[i][1];
            ep[i] = &e[i];
        }
        Tidemark__Manifest *m = w != NULL ? tm_manifest_proto(tm_backup_writer_manifest(w)) : NULL;
        if (rc == TM_OK) {
            m->engine_info = ep;
            m->n_engine_info = nkv;
            m->parent_backup_id = (char *)parent;
            rc = tm_backup_finish(w, err);
        }
        if (m != NULL) {
            m->engine_info = NULL;
            m->n_engine_info = 0;
            m->parent_backup_id = NULL;
        }
        tm_backup_writer_free(w);
    }
    if (rc == TM_OK && strcmp(where, "repo") != 0) {
        Tidemark__BackupInfo b = TIDEMARK__BACKUP_INFO__INIT;
        char *repos[16];
        size_t nr = tm_repo_set_count(rs);
        for (size_t i = 0; i < nr && i < 16; i++) {
            repos[i] = (char *)tm_repo_set_name(rs, i);
        }
        b.id = (char *)id;
        b.target = (char *)target;
        b.has_type = b.has_started_at = b.has_finished_at = b.has_chain = 1;
        b.type = strcmp(kind, "incremental") == 0 ? TIDEMARK__BACKUP_TYPE__INCREMENTAL
                 : snap                           ? TIDEMARK__BACKUP_TYPE__SNAPSHOT
                                                  : TIDEMARK__BACKUP_TYPE__FULL;
        b.parent_id = (char *)parent;
        b.started_at = started;
        b.finished_at = finished;
        b.start_position = snap ? NULL : lsn;
        b.chain = tli;
        b.has_chain = !snap;
        b.repositories = repos;
        b.n_repositories = nr < 16 ? nr : 16;
        b.agent_id = "seed";
        rc = tm_catalog_backup_put(cat, &b, err);
    }
    return rc;
}

static int seed_wal(tm_repo_set *rs, char **f, tm_err *err)
{
    tm_log_store *ls = NULL;
    int rc = tm_log_store_open(&ls, rs, f[1], err);
    if (rc != TM_OK) {
        return rc;
    }
    char path[] = "/tmp/tm-seed-wal-XXXXXX";
    int fd = mkstemp(path);
    if (fd < 0) {
        tm_log_store_free(ls);
        return tm_err_set(err, TM_EIO, "mkstemp failed");
    }
    unlink(path);
    char data[512]; /* names up to the log store's limit fit */
    int n = snprintf(data, sizeof(data), "wal %s\n", f[2]);
    if (n < 0 || (size_t)n >= sizeof(data)) {
        close(fd);
        tm_log_store_free(ls);
        return tm_err_set(err, TM_EINVAL, "log name too long: %s", f[2]);
    }
    if (write(fd, data, (size_t)n) != n) {
        rc = tm_err_set(err, TM_EIO, "write failed");
    }
    if (rc == TM_OK) {
        rc = tm_log_push(ls, f[2], fd, 0, NULL, NULL, err);
    }
    close(fd);
    tm_log_store_free(ls);
    return rc;
}

int main(int argc, char **argv)
{
    if (argc != 3) {
        fprintf(stderr, "usage: tm_retention_seed AGENT_YAML CATALOG_DB < SCRIPT\n");
        return 2;
    }
    tm_err err = {0};
    tm_agent_conf *conf = NULL;
    tm_repo_set *rs = NULL;
    tm_catalog *cat = NULL;
    tm_engine_config_init();
    if (tm_agent_conf_load(argv[1], &conf, &err) != TM_OK) {
        return fail(argv[1], &err);
    }
    if (tm_repo_set_open(&rs, conf, TM_REPO_KEYS, &err) != TM_OK) {
        return fail("repositories", &err);
    }
    if (tm_catalog_open(&cat, argv[2], &err) != TM_OK) {
        return fail(argv[2], &err);
    }
    char line[1024];
    size_t backups = 0, wals = 0;
    int rc = TM_OK, lineno = 0;
    while (rc == TM_OK && fgets(line, sizeof(line), stdin) != NULL) {
        lineno++;
        char *f[10] = {0}, *save = NULL;
        int n = 0;
        for (char *t = strtok_r(line, " \t\n", &save); t != NULL && n < 10;
             t = strtok_r(NULL, " \t\n", &save)) {
            f[n++] = t;
        }
        if (n == 0) {
            continue;
        }
        if (strcmp(f[0], "backup") == 0 && n == 9) {
            rc = seed_backup(rs, cat, f, &err);
            backups++;
        } else if (strcmp(f[0], "wal") == 0 && n == 3) {
            rc = seed_wal(rs, f, &err);
            wals++;
        } else {
            rc = tm_err_set(&err, TM_EINVAL, "line %d: bad command", lineno);
        }
        if (rc != TM_OK) {
            char what[64];
            snprintf(what, sizeof(what), "line %d", lineno);
            fail(what, &err);
        }
    }
    tm_catalog_free(cat);
    tm_repo_set_free(rs);
    tm_agent_conf_free(conf);
    if (rc == TM_OK) {
        printf("seeded %zu backups, %zu log files\n", backups, wals);
    }
    return rc == TM_OK ? 0 : 1;
}
