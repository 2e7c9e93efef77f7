/*
 * discover.c - a sqlite target whose path is a glob (/srv/tenants/ *.db, no space):
 * one target per matching database file (the engine's expand hook,
 * agent/targets.c). Each is named "<target>-<what the pattern matched,
 * without the file's extension>" ('/' becomes '.', other characters a
 * target name cannot hold '_'), with
 * the pattern target's settings and the file as its path.
 *
 * A match counts once it is a database: a regular file (links are
 * followed: glob resolves them) that begins with SQLite's 16-byte header.
 * The companions (-wal, -shm, -journal) never count, and a file still
 * empty (being created) is picked up by a later scan.
 */
#include "agent/engines/sqlite/sqlite.h"

#include <fcntl.h>
#include <glob.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "common/config/validate.h"
#include "common/log.h"

#define NAME_MAX_LEN 64

static int is_database(const char *path)
{
    size_t l = strlen(path);
    static const char *const sfx[] = {"-wal", "-shm", "-journal"};
    for (size_t i = 0; i < 3; i++) {
        size_t s = strlen(sfx[i]);
        if (l >= s && strcmp(path + l - s, sfx[i]) == 0) {
            return 0;
        }
    }
    struct stat st;
    if (stat(path, &st) != 0 || !S_ISREG(st.st_mode)) {
        return 0;
    }
    char hdr[16];
    int fd = open(path, O_RDONLY | O_CLOEXEC | O_NONBLOCK);
    if (fd < 0) {
        return 0;
    }
    ssize_t n = pread(fd, hdr, sizeof(hdr), 0);
    close(fd);
    return n == (ssize_t)sizeof(hdr) && memcmp(hdr, "SQLite format 3", 16) == 0;
}

void tm_sqlite_discovered_name(const char *target, const char *pattern, const char *path, char *out,
                               size_t cap)
{
    /* The part of the path the pattern matched: after the last '/' before
     * its first wildcard, without the file's extension; '/' becomes '.'
     * (/srv/t/ *.db: acme.db -> acme; /sqld/dbs/ * /data: acme/data ->
     * acme.data). */
    size_t fixed = strcspn(pattern, "*?[");
    while (fixed > 0 && pattern[fixed - 1] != '/') {
        fixed--;
    }
    char rel[PATH_MAX];
    snprintf(rel, sizeof(rel), "%s", strlen(path) >= fixed ? path + fixed : path);
    char *slash = strrchr(rel, '/');
    char *dot = strrchr(slash != NULL ? slash + 1 : rel, '.');
    if (dot != NULL && dot != (slash != NULL ? slash + 1 : rel)) {
        *dot = '\0';
    }
    int n = snprintf(out, cap, "%s-%s", target, rel);
    if (n < 0 || (size_t)n >= cap || n > NAME_MAX_LEN) {
        out[cap - 1 < NAME_MAX_LEN ? cap - 1 : NAME_MAX_LEN] = '\0';
    }
    for (char *p = out; *p != '\0'; p++) {
        int ok = (*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') || (*p >= '0' && *p <= '9') ||
                 *p == '.' || *p == '_' || *p == '-';
        if (!ok) {
            *p = *p == '/' ? '.' : '_';
        }
    }
}

int tm_sqlite_expand(const tm_target_conf *t, tm_target_conf **out, size_t *n, tm_err *err)
{
    *out = NULL;
    *n = 0;
    const tm_sqlite_target *c = tm_sqlite_target_of(t);
    if (c == NULL || !c->glob) {
        return 0;
    }
    glob_t g;
    memset(&g, 0, sizeof(g));
    int gr = glob(c->path, GLOB_NOSORT | GLOB_ERR, NULL, &g);
    if (gr != 0 && gr != GLOB_NOMATCH) {
        globfree(&g);
        return tm_err_set(err, TM_EIO, "glob %s: %s", c->path,
                          gr == GLOB_NOSPACE ? "out of memory" : "a directory could not be read");
    }
    tm_target_conf *v = calloc(g.gl_pathc + 1, sizeof(*v));
    if (v == NULL) {
        globfree(&g);
        return tm_err_set(err, TM_ENOMEM, "out of memory");
    }
    int rc = TM_OK;
    size_t k = 0;
    for (size_t i = 0; i < g.gl_pathc && rc == TM_OK; i++) {
        const char *p = g.gl_pathv[i];
        if (!is_database(p) || strlen(p) >= sizeof(c->path)) {
            continue;
        }
        char name[NAME_MAX_LEN + 1];
        tm_sqlite_discovered_name(t->name, c->path, p, name, sizeof(name));
        tm_sqlite_target *ec = malloc(sizeof(*ec));
        tm_target_conf *d = &v[k];
        d->name = strdup(name);
        d->kind = strdup(t->kind);
        d->engine_version = t->engine_version != NULL ? strdup(t->engine_version) : NULL;
        d->schema = t->schema;
        d->engine_conf = ec;
        k++;
        if (ec == NULL || d->name == NULL || d->kind == NULL ||
            (t->engine_version != NULL && d->engine_version == NULL)) {
            rc = tm_err_set(err, TM_ENOMEM, "out of memory");
            break;
        }
        *ec = *c;
        snprintf(ec->path, sizeof(ec->path), "%s", p);
        ec->glob = 0;
    }
    globfree(&g);
    if (rc != TM_OK) {
        for (size_t i = 0; i < k; i++) {
            free(v[i].name);
            free(v[i].kind);
            free(v[i].engine_version);
            if (v[i].engine_conf != NULL) {
                t->schema->free_conf(v[i].engine_conf);
            }
        }
        free(v);
        return rc;
    }
    *out = v;
    *n = k;
    return 1;
}
