/*
 * tm_hostile_manifest - write a PostgreSQL "backup" whose manifest is
 * hostile but validly sealed with the repository's key, for
 * tests/integration/test_restore_confine.py. Links the agent's repository
 * code, so the manifest, data key record and objects are exactly what an
 * agent writes; only the file entries are crafted.
 *
 *   tm_hostile_manifest AGENT_YAML TARGET BACKUP_ID CASE OUTSIDE
 *
 * Every backup has a few ordinary entries (PG_VERSION, base/, global/) and
 * then the hostile one(s), each with content "pwned by CASE":
 *   dotdot    file  ../<basename OUTSIDE>/pwned
 *   absolute  file  OUTSIDE/pwned
 *   longname  file  base/<300 x 'n'>
 *   tslink    link  pg_tblspc/1 -> /etc, file pg_tblspc/1/pwned
 *   badlink   link  base/evil -> OUTSIDE, file base/evil/pwned
 *   dotlink   link  pg_tblspc/2 -> OUTSIDE/../x (a '..' in the target)
 * Exit 0 when written, 1 on failure.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "agent/engine.h"
#include "agent/repo/repository.h"
#include "common/config.h"
#include "common/manifest.h"

static int fail(const char *what, const tm_err *err)
{
    fprintf(stderr, "tm_hostile_manifest: %s: %s\n", what, err->msg);
    return 1;
}

typedef struct entry {
    const char *path;
    int type; /* 0 file, 1 dir, 2 link */
    const char *link;
} entry;

int main(int argc, char **argv)
{
    if (argc != 6) {
        fprintf(stderr, "usage: tm_hostile_manifest AGENT_YAML TARGET BACKUP_ID CASE OUTSIDE\n");
        return 2;
    }
    const char *target = argv[2], *id = argv[3], *kase = argv[4], *outside = argv[5];
    const char *obase = strrchr(outside, '/') ? strrchr(outside, '/') + 1 : outside;
    char p1[4200], p2[4200];
    entry ents[8];
    size_t n = 0;
    ents[n++] = (entry){"PG_VERSION", 0, NULL};
    ents[n++] = (entry){"base", 1, NULL};
    ents[n++] = (entry){"global", 1, NULL};
    if (strcmp(kase, "dotdot") == 0) {
        snprintf(p1, sizeof(p1), "../%s/pwned", obase);
        ents[n++] = (entry){p1, 0, NULL};
    } else if (strcmp(kase, "absolute") == 0) {
        snprintf(p1, sizeof(p1), "%s/pwned", outside);
        ents[n++] = (entry){p1, 0, NULL};
    } else if (strcmp(kase, "longname") == 0) {
        memcpy(p1, "base/", 5);
        memset(p1 + 5, 'n', 300);
        p1[305] = '\0';
        ents[n++] = (entry){p1, 0, NULL};
    } else if (strcmp(kase, "tslink") == 0) {
        ents[n++] = (entry){"pg_tblspc", 1, NULL};
        ents[n++] = (entry){"pg_tblspc/1", 2, "/etc"};
        ents[n++] = (entry){"pg_tblspc/1/pwned", 0, NULL};
    } else if (strcmp(kase, "badlink") == 0) {
        ents[n++] = (entry){"base/evil", 2, outside};
        ents[n++] = (entry){"base/evil/pwned", 0, NULL};
    } else if (strcmp(kase, "dotlink") == 0) {
        snprintf(p2, sizeof(p2), "%s/../x", outside);
        ents[n++] = (entry){"pg_tblspc", 1, NULL};
        ents[n++] = (entry){"pg_tblspc/2", 2, p2};
        ents[n++] = (entry){"pg_tblspc/2/pwned", 0, NULL};
    } else {
        fprintf(stderr, "tm_hostile_manifest: unknown case %s\n", kase);
        return 2;
    }

    tm_err err = {0};
    tm_agent_conf *conf = NULL;
    tm_repo_set *rs = NULL;
    tm_backup_writer *w = NULL;
    tm_engine_config_init();
    if (tm_agent_conf_load(argv[1], &conf, &err) != TM_OK) {
        return fail(argv[1], &err);
    }
    if (tm_repo_set_open(&rs, conf, TM_REPO_KEYS, &err) != TM_OK) {
        return fail("repositories", &err);
    }
    if (tm_backup_begin(rs, target, id, "full", "postgres", &w, &err) != TM_OK) {
        return fail("begin", &err);
    }
    /* One object, the content of every file entry. */
    tm_backup_object *o = NULL;
    tm_object_digest d;
    char data[64];
    int dl = snprintf(data, sizeof(data), "pwned by %s\n", kase);
    if (tm_backup_object_open(w, "pgdata/content", &o, &err) != TM_OK ||
        tm_backup_object_write(o, data, (size_t)dl, &err) != TM_OK ||
        tm_backup_object_close(o, &d, &err) != TM_OK) {
        return fail("object", &err);
    }
    Tidemark__FileEntry fe[8], *fp[8];
    for (size_t i = 0; i < n; i++) {
        tidemark__file_entry__init(&fe[i]);
        fe[i].path = (char *)ents[i].path;
        fe[i].has_type = fe[i].has_mode = fe[i].has_mtime = fe[i].has_size = 1;
        fe[i].type = (uint32_t)ents[i].type;
        fe[i].mode = ents[i].type == 0 ? 0600 : 0700;
        fe[i].mtime = 1700000000;
        if (ents[i].type == 0) {
            fe[i].object = "pgdata/content";
            fe[i].size = (uint64_t)dl;
            fe[i].xxh3_128 = d.xxh3_128;
            fe[i].sha256 = d.sha256;
        }
        fe[i].link = (char *)ents[i].link;
        fp[i] = &fe[i];
    }
    Tidemark__Manifest__EngineInfoEntry e[6], *ep[6];
    const char *kv[6][2] = {
        {"start_lsn", "0/2000028"},
        {"stop_lsn", "0/2000100"},
        {"start_time", "1700000000"},
        {"stop_time", "1700000001"},
        {"timeline", "1"},
        {"backup_label", "START WAL LOCATION: 0/2000028 (file 000000010000000000000002)\n"},
    };
    for (int i = 0; i < 6; i++) {
        tidemark__manifest__engine_info_entry__init(&e[i]);
        e[i].key = (char *)kv[i][0];
        e[i].value = (char *)kv[i][1];
        ep[i] = &e[i];
    }
    Tidemark__Manifest *m = tm_manifest_proto(tm_backup_writer_manifest(w));
    m->files = fp;
    m->n_files = n;
    m->engine_info = ep;
    m->n_engine_info = 6;
    int rc = tm_backup_finish(w, &err);
    m->files = NULL;
    m->n_files = 0;
    m->engine_info = NULL;
    m->n_engine_info = 0;
    tm_backup_writer_free(w);
    tm_repo_set_free(rs);
    tm_agent_conf_free(conf);
    if (rc != TM_OK) {
        return fail("finish", &err);
    }
    printf("wrote backup %s of %s (case %s, %zu entries)\n", id, target, kase, n);
    return 0;
}
