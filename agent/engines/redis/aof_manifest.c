/*
 * aof_manifest.c - parse and write the multi-part AOF manifest (see
 * aof_manifest.h). Redis itself (aof.c, aofLoadManifestFromFile) skips
 * "#" comment lines, takes key/value pairs in any order and needs file, seq
 * and type; we do the same, but also refuse what Redis would only trip over
 * later (a second base, incr seqs out of order, a name used twice, unknown
 * keys, a last line without its newline = a torn write).
 */
#include "agent/engines/redis/aof_manifest.h"

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/util.h"

/* Redis reads manifest lines into a buffer of this size. */
#define LINE_MAX_LEN 1024

struct tm_aof_manifest {
    tm_aof_file *files;
    size_t n, cap;
};

int tm_aof_manifest_new(tm_aof_manifest **out, tm_err *err)
{
    *out = calloc(1, sizeof(**out));
    if (*out == NULL) {
        return tm_err_set(err, TM_ENOMEM, "aof manifest: out of memory");
    }
    return 0;
}

void tm_aof_manifest_free(tm_aof_manifest *m)
{
    if (m != NULL) {
        free(m->files);
        free(m);
    }
}

int tm_aof_name_ok(const char *name, size_t len)
{
    if (len == 0 || len > TM_AOF_NAME_MAX) {
        return 0;
    }
    if ((len == 1 && name[0] == '.') || (len == 2 && name[0] == '.' && name[1] == '.')) {
        return 0;
    }
    for (size_t i = 0; i < len; i++) {
        unsigned char c = (unsigned char)name[i];
        /* Redis quotes names with these (sdscatrepr): refuse rather than guess. */
        if (c == '/' || c <= ' ' || c >= 0x7f || c == '"' || c == '\'' || c == '\\') {
            return 0;
        }
    }
    return 1;
}

int tm_aof_manifest_add(tm_aof_manifest *m, const char *name, int64_t seq, tm_aof_file_type type,
                        tm_err *err)
{
    if (!tm_aof_name_ok(name, strlen(name))) {
        return tm_err_set(err, TM_EPROTO,
                          "bad file name \"%.64s\" (empty, too long, '/', '.', '..', spaces, "
                          "quotes or control bytes)",
                          name);
    }
    if (seq <= 0) {
        return tm_err_set(err, TM_EPROTO, "file %s: seq %" PRId64 " is not positive", name, seq);
    }
    if (type != TM_AOF_BASE && type != TM_AOF_HISTORY && type != TM_AOF_INCR) {
        return tm_err_set(err, TM_EPROTO, "file %s: unknown type '%c'", name, (char)type);
    }
    for (size_t i = 0; i < m->n; i++) {
        if (strcmp(m->files[i].name, name) == 0) {
            return tm_err_set(err, TM_EPROTO, "file %s is listed twice", name);
        }
        if (type == TM_AOF_BASE && m->files[i].type == TM_AOF_BASE) {
            return tm_err_set(err, TM_EPROTO, "a second base file %s (the first is %s)", name,
                              m->files[i].name);
        }
        if (type == TM_AOF_INCR && m->files[i].type == TM_AOF_INCR && m->files[i].seq >= seq) {
            return tm_err_set(err, TM_EPROTO,
                              "incr file %s has seq %" PRId64 ", not above %s's %" PRId64, name,
                              seq, m->files[i].name, m->files[i].seq);
        }
    }
    if (m->n == m->cap) {
        size_t cap = m->cap ? m->cap * 2 : 8;
        tm_aof_file *f = realloc(m->files, cap * sizeof(*f));
        if (f == NULL) {
            return tm_err_set(err, TM_ENOMEM, "aof manifest: out of memory");
        }
        m->files = f;
        m->cap = cap;
    }
    tm_aof_file *f = &m->files[m->n++];
    snprintf(f->name, sizeof(f->name), "%s", name);
    f->seq = seq;
    f->type = type;
    return 0;
}

/* One "key value key value ..." line (no newline) into the manifest. */
static int parse_line(tm_aof_manifest *m, const char *p, size_t n, tm_err *err)
{
    const char *tok[8];
    size_t toklen[8];
    size_t nt = 0, i = 0;
    /* Fields separated by exactly one space, none leading or trailing. */
    while (i < n) {
        size_t j = i;
        while (j < n && p[j] != ' ') {
            j++;
        }
        if (j == i) {
            return tm_err_set(err, TM_EPROTO, "a leading or doubled space");
        }
        if (nt == 8) {
            return tm_err_set(err, TM_EPROTO, "too many fields");
        }
        tok[nt] = p + i;
        toklen[nt++] = j - i;
        if (j < n && ++j == n) {
            return tm_err_set(err, TM_EPROTO, "a trailing space");
        }
        i = j;
    }
    if (nt == 0) {
        return tm_err_set(err, TM_EPROTO, "empty line");
    }
    if (nt % 2 != 0) {
        return tm_err_set(err, TM_EPROTO, "%zu fields: expected key/value pairs", nt);
    }
    char name[TM_AOF_NAME_MAX + 1] = "";
    int64_t seq = 0;
    char type = 0;
    int have_file = 0, have_seq = 0, have_type = 0;
    for (size_t k = 0; k < nt; k += 2) {
        const char *key = tok[k], *v = tok[k + 1];
        size_t kl = toklen[k], vl = toklen[k + 1];
        if (kl == 4 && memcmp(key, "file", 4) == 0) {
            if (have_file++) {
                return tm_err_set(err, TM_EPROTO, "\"file\" twice");
            }
            if (!tm_aof_name_ok(v, vl)) {
                return tm_err_set(err, TM_EPROTO,
                                  "bad file name \"%.*s\" (empty, too long, '/', '.', '..', "
                                  "quotes or control bytes)",
                                  (int)(vl > 64 ? 64 : vl), v);
            }
            memcpy(name, v, vl);
            name[vl] = '\0';
        } else if (kl == 3 && memcmp(key, "seq", 3) == 0) {
            if (have_seq++) {
                return tm_err_set(err, TM_EPROTO, "\"seq\" twice");
            }
            if (vl == 0 || vl > 18 || v[0] == '0') {
                return tm_err_set(err, TM_EPROTO, "bad seq \"%.*s\"", (int)(vl > 32 ? 32 : vl), v);
            }
            for (size_t d = 0; d < vl; d++) {
                if (v[d] < '0' || v[d] > '9') {
                    return tm_err_set(err, TM_EPROTO, "bad seq \"%.*s\"", (int)(vl > 32 ? 32 : vl),
                                      v);
                }
                seq = seq * 10 + (v[d] - '0');
            }
        } else if (kl == 4 && memcmp(key, "type", 4) == 0) {
            if (have_type++) {
                return tm_err_set(err, TM_EPROTO, "\"type\" twice");
            }
            if (vl != 1 || (v[0] != 'b' && v[0] != 'h' && v[0] != 'i')) {
                return tm_err_set(err, TM_EPROTO, "bad type \"%.*s\" (b, h or i)",
                                  (int)(vl > 32 ? 32 : vl), v);
            }
            type = v[0];
        } else {
            return tm_err_set(err, TM_EPROTO, "unknown key \"%.*s\"", (int)(kl > 32 ? 32 : kl),
                              key);
        }
    }
    if (!have_file || !have_seq || !have_type) {
        return tm_err_set(err, TM_EPROTO, "missing %s",
                          !have_file  ? "\"file\""
                          : !have_seq ? "\"seq\""
                                      : "\"type\"");
    }
    return tm_aof_manifest_add(m, name, seq, (tm_aof_file_type)type, err);
}

int tm_aof_manifest_parse(const char *buf, size_t len, tm_aof_manifest **out, tm_err *err)
{
    *out = NULL;
    tm_aof_manifest *m = NULL;
    int rc = tm_aof_manifest_new(&m, err);
    if (rc != 0) {
        return rc;
    }
    size_t pos = 0;
    int lineno = 0;
    while (pos < len) {
        lineno++;
        const char *nl = memchr(buf + pos, '\n', len - pos);
        if (nl == NULL) {
            rc = tm_err_set(err, TM_EPROTO, "line %d: no newline at the end (a torn write?)",
                            lineno);
            goto fail;
        }
        size_t n = (size_t)(nl - (buf + pos));
        if (n > LINE_MAX_LEN) {
            rc = tm_err_set(err, TM_EPROTO, "line %d: longer than %d bytes", lineno, LINE_MAX_LEN);
            goto fail;
        }
        if (memchr(buf + pos, '\0', n) != NULL || memchr(buf + pos, '\r', n) != NULL) {
            rc = tm_err_set(err, TM_EPROTO, "line %d: a NUL or CR byte", lineno);
            goto fail;
        }
        if (n == 0 || buf[pos] != '#') {
            rc = parse_line(m, buf + pos, n, err);
            if (rc != 0) {
                tm_err_prefix(err, "line %d", lineno);
                goto fail;
            }
        }
        pos += n + 1;
    }
    if (m->n == 0) {
        rc = tm_err_set(err, TM_EPROTO, "no files listed");
        goto fail;
    }
    *out = m;
    return 0;
fail:
    tm_aof_manifest_free(m);
    return rc;
}

int tm_aof_manifest_load(const char *path, tm_aof_manifest **out, tm_err *err)
{
    char *buf = NULL;
    size_t len = 0;
    int rc = tm_file_read(path, &buf, &len, err);
    if (rc != 0) {
        return rc;
    }
    rc = tm_aof_manifest_parse(buf, len, out, err);
    free(buf);
    if (rc != 0) {
        tm_err_prefix(err, "AOF manifest %s", path);
    }
    return rc;
}

size_t tm_aof_manifest_count(const tm_aof_manifest *m)
{
    return m->n;
}

const tm_aof_file *tm_aof_manifest_file(const tm_aof_manifest *m, size_t i)
{
    return i < m->n ? &m->files[i] : NULL;
}

const tm_aof_file *tm_aof_manifest_base(const tm_aof_manifest *m)
{
    for (size_t i = 0; i < m->n; i++) {
        if (m->files[i].type == TM_AOF_BASE) {
            return &m->files[i];
        }
    }
    return NULL;
}

const tm_aof_file *tm_aof_manifest_find(const tm_aof_manifest *m, const char *name)
{
    for (size_t i = 0; i < m->n; i++) {
        if (strcmp(m->files[i].name, name) == 0) {
            return &m->files[i];
        }
    }
    return NULL;
}

size_t tm_aof_manifest_incrs(const tm_aof_manifest *m, const tm_aof_file **out, size_t cap)
{
    /* Added in strictly increasing seq order, so list order is seq order. */
    size_t k = 0;
    for (size_t i = 0; i < m->n; i++) {
        if (m->files[i].type == TM_AOF_INCR) {
            if (k < cap) {
                out[k] = &m->files[i];
            }
            k++;
        }
    }
    return k;
}

int tm_aof_manifest_format(const tm_aof_manifest *m, char **out, size_t *len, tm_err *err)
{
    size_t cap = m->n * (TM_AOF_NAME_MAX + 48) + 1;
    char *s = malloc(cap);
    if (s == NULL) {
        return tm_err_set(err, TM_ENOMEM, "aof manifest: out of memory");
    }
    size_t n = 0;
    s[0] = '\0';
    for (size_t i = 0; i < m->n; i++) {
        n += (size_t)snprintf(s + n, cap - n, "file %s seq %" PRId64 " type %c\n", m->files[i].name,
                              m->files[i].seq, (char)m->files[i].type);
    }
    *out = s;
    *len = n;
    return 0;
}
