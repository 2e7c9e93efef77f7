/*
 * yaml.c - libyaml pre-parse, key-path -> line:column map, and the
 * structural check of a YAML tree against a libcyaml schema.
 *
 * Everything here must be safe on arbitrary bytes (the config parser is
 * fuzzed): nesting depth is bounded by an event pre-scan before the tree is
 * built, aliases are refused (they could turn a small file into a huge walk),
 * and the schema walk recurses only as deep as the schema, never as deep as
 * the input.
 */
#include "common/config/yaml.h"

#include <errno.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Long enough for any path the schemas can produce; a longer one can only
 * come from a hostile file and is refused. */
#define PATH_MAX_LEN 256

/* ---------------------------------------------------------------- errors */

static int verr_at(const tm_ydoc *d, tm_err *err, tm_ypos pos, const char *path, const char *fmt,
                   va_list ap)
{
    char msg[TM_ERR_MSG_MAX];
    vsnprintf(msg, sizeof(msg), fmt, ap);
    /* A value echoed from the file may hold CR/LF or other control bytes:
     * the error stays one line that cannot pose as another. */
    for (char *p = msg; *p != '\0'; p++) {
        if ((unsigned char)*p < ' ' || *p == 0x7f) {
            *p = '?';
        }
    }
    return tm_err_set(err, TM_ECONFIG, "%s:%d:%d: %s: %s", d->file, pos.line, pos.col,
                      (path != NULL && path[0] != '\0') ? path : "(document)", msg);
}

/* Position of `path`, or of the nearest ancestor that is present. Cutting at
 * the last '.' or '[' walks "a[1].b" -> "a[1]" -> "a" -> "". */
static tm_ypos pos_of(const tm_ydoc *d, const char *path, bool want_key)
{
    char buf[PATH_MAX_LEN];
    snprintf(buf, sizeof(buf), "%s", path != NULL ? path : "");
    for (;;) {
        const tm_yentry *e = tm_ydoc_find(d, buf);
        if (e != NULL) {
            return want_key ? e->key : e->val;
        }
        char *dot = strrchr(buf, '.');
        char *brk = strrchr(buf, '[');
        char *cut = dot > brk ? dot : brk;
        if (cut == NULL) {
            if (buf[0] == '\0') {
                break;
            }
            buf[0] = '\0';
        } else {
            *cut = '\0';
        }
    }
    tm_ypos p = {1, 1};
    return p;
}

int tm_ydoc_err_at(const tm_ydoc *d, tm_err *err, tm_ypos pos, const char *path, const char *fmt,
                   ...)
{
    va_list ap;
    va_start(ap, fmt);
    int rc = verr_at(d, err, pos, path, fmt, ap);
    va_end(ap);
    return rc;
}

int tm_ydoc_err(const tm_ydoc *d, tm_err *err, const char *path, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    int rc = verr_at(d, err, pos_of(d, path, false), path, fmt, ap);
    va_end(ap);
    return rc;
}

int tm_ydoc_err_key(const tm_ydoc *d, tm_err *err, const char *path, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    int rc = verr_at(d, err, pos_of(d, path, true), path, fmt, ap);
    va_end(ap);
    return rc;
}

/* ------------------------------------------------------------- path map */

static int add_entry(tm_ydoc *d, const char *path, tm_ypos key, tm_ypos val, int node, tm_err *err)
{
    if (d->n_entries == d->cap_entries) {
        size_t cap = d->cap_entries ? d->cap_entries * 2 : 32;
        tm_yentry *ne = realloc(d->entries, cap * sizeof(*ne));
        if (ne == NULL) {
            return tm_err_set(err, TM_ENOMEM, "%s: out of memory", d->file);
        }
        d->entries = ne;
        d->cap_entries = cap;
    }
    char *p = strdup(path);
    if (p == NULL) {
        return tm_err_set(err, TM_ENOMEM, "%s: out of memory", d->file);
    }
    tm_yentry *e = &d->entries[d->n_entries++];
    e->path = p;
    e->key = key;
    e->val = val;
    e->node = node;
    return 0;
}

const tm_yentry *tm_ydoc_find(const tm_ydoc *d, const char *path)
{
    /* Linear: a config has tens of keys, and lookups happen once each. */
    for (size_t i = 0; i < d->n_entries; i++) {
        if (strcmp(d->entries[i].path, path) == 0) {
            return &d->entries[i];
        }
    }
    return NULL;
}

yaml_node_t *tm_ydoc_node(tm_ydoc *d, const char *path)
{
    const tm_yentry *e = tm_ydoc_find(d, path);
    if (e == NULL || !d->loaded) {
        return NULL;
    }
    return yaml_document_get_node(&d->doc, e->node);
}

/* ------------------------------------------------------------- loading */

/* libyaml reports reader errors (bad UTF-8, NUL bytes) by byte offset only. */
static tm_ypos pos_from_offset(const char *buf, size_t len, size_t off)
{
    tm_ypos p = {1, 1};
    for (size_t i = 0; i < off && i < len; i++) {
        if (buf[i] == '\n') {
            p.line++;
            p.col = 1;
        } else {
            p.col++;
        }
    }
    return p;
}

static int parser_err(const tm_ydoc *d, const yaml_parser_t *p, const char *buf, size_t len,
                      tm_err *err)
{
    if (p->error == YAML_MEMORY_ERROR) {
        return tm_err_set(err, TM_ENOMEM, "%s: out of memory parsing YAML", d->file);
    }
    tm_ypos pos = p->error == YAML_READER_ERROR ? pos_from_offset(buf, len, p->problem_offset)
                                                : tm_ypos_of(p->problem_mark);
    const char *problem = p->problem ? p->problem : "unknown error";
    if (p->context != NULL) {
        return tm_ydoc_err_at(d, err, pos, NULL, "invalid YAML: %s %s", problem, p->context);
    }
    return tm_ydoc_err_at(d, err, pos, NULL, "invalid YAML: %s", problem);
}

/* One pass over the event stream before building a tree: reject what the
 * tree builder would happily accept but we do not want (aliases, deep
 * nesting, several documents), with the exact position. */
static int prescan(const tm_ydoc *d, const char *buf, size_t len, tm_err *err)
{
    yaml_parser_t p;
    if (!yaml_parser_initialize(&p)) {
        return tm_err_set(err, TM_ENOMEM, "%s: out of memory", d->file);
    }
    yaml_parser_set_input_string(&p, (const unsigned char *)buf, len);
    int depth = 0, docs = 0, rc = 0;
    for (;;) {
        yaml_event_t ev;
        if (!yaml_parser_parse(&p, &ev)) {
            rc = parser_err(d, &p, buf, len, err);
            break;
        }
        yaml_event_type_t t = ev.type;
        tm_ypos pos = tm_ypos_of(ev.start_mark);
        yaml_event_delete(&ev);
        if (t == YAML_STREAM_END_EVENT) {
            break;
        }
        if (t == YAML_ALIAS_EVENT) {
            rc = tm_ydoc_err_at(d, err, pos, NULL,
                                "YAML aliases (*name) are not supported, write the value out");
            break;
        }
        if (t == YAML_DOCUMENT_START_EVENT && ++docs > 1) {
            rc = tm_ydoc_err_at(d, err, pos, NULL,
                                "more than one YAML document, expected a single document");
            break;
        }
        if (t == YAML_MAPPING_START_EVENT || t == YAML_SEQUENCE_START_EVENT) {
            if (++depth > TM_YDOC_MAX_DEPTH) {
                rc = tm_ydoc_err_at(d, err, pos, NULL,
                                    "nesting deeper than %d levels, expected a flat config",
                                    TM_YDOC_MAX_DEPTH);
                break;
            }
        } else if (t == YAML_MAPPING_END_EVENT || t == YAML_SEQUENCE_END_EVENT) {
            depth--;
        }
    }
    yaml_parser_delete(&p);
    return rc;
}

int tm_ydoc_load(tm_ydoc *d, const char *file, const char *buf, size_t len, tm_err *err)
{
    memset(d, 0, sizeof(*d));
    d->file = file;
    int rc = prescan(d, buf, len, err);
    if (rc != 0) {
        return rc;
    }
    yaml_parser_t p;
    if (!yaml_parser_initialize(&p)) {
        return tm_err_set(err, TM_ENOMEM, "%s: out of memory", d->file);
    }
    yaml_parser_set_input_string(&p, (const unsigned char *)buf, len);
    if (!yaml_parser_load(&p, &d->doc)) {
        rc = parser_err(d, &p, buf, len, err);
        yaml_parser_delete(&p);
        return rc;
    }
    yaml_parser_delete(&p);
    d->loaded = true;

    yaml_node_t *root = yaml_document_get_root_node(&d->doc);
    if (root == NULL || (root->type == YAML_SCALAR_NODE && root->data.scalar.length == 0)) {
        tm_ypos pos = {1, 1};
        return tm_ydoc_err_at(d, err, pos, NULL, "empty configuration, expected a mapping of keys");
    }
    if (root->type != YAML_MAPPING_NODE) {
        return tm_ydoc_err_at(d, err, tm_ypos_of(root->start_mark), NULL,
                              "expected a mapping of keys at the top level");
    }
    tm_ypos pos = tm_ypos_of(root->start_mark);
    return add_entry(d, "", pos, pos, 1, err);
}

void tm_ydoc_free(tm_ydoc *d)
{
    if (d->loaded) {
        yaml_document_delete(&d->doc);
        d->loaded = false;
    }
    for (size_t i = 0; i < d->n_entries; i++) {
        free(d->entries[i].path);
    }
    free(d->entries);
    d->entries = NULL;
    d->n_entries = d->cap_entries = 0;
}

/* ---------------------------------------------------------- schema walk */

static const char *kind_name(const yaml_node_t *n)
{
    switch (n->type) {
    case YAML_MAPPING_NODE:
        return "a mapping";
    case YAML_SEQUENCE_NODE:
        return "a list";
    case YAML_SCALAR_NODE:
        return n->data.scalar.length == 0 ? "an empty value" : "a single value";
    default:
        return "nothing";
    }
}

static const char *expected_name(const cyaml_schema_value_t *s)
{
    switch (s->type) {
    case CYAML_MAPPING:
        return "a mapping of keys";
    case CYAML_SEQUENCE:
        return "a list";
    case CYAML_INT:
    case CYAML_UINT:
        return "a whole number";
    case CYAML_BOOL:
        return "true or false";
    default:
        return "a string";
    }
}

/* Decimal only: libcyaml reads integers with strtoll(base 0), so "010"
 * would silently be octal 8 and "0x10" 16. Refusing them here keeps what
 * the user wrote and what gets loaded the same number. */
static bool is_decimal_int(const char *s, size_t len)
{
    size_t i = 0;
    if (len > 0 && s[0] == '-') {
        i = 1;
    }
    if (i == len || len - i > 18) { /* 18 digits always fit in int64 */
        return false;
    }
    if (s[i] == '0' && len - i > 1) {
        return false;
    }
    for (; i < len; i++) {
        if (s[i] < '0' || s[i] > '9') {
            return false;
        }
    }
    return true;
}

static int walk(tm_ydoc *d, const cyaml_schema_value_t *s, int idx, char *path, tm_err *err);

static int walk_mapping(tm_ydoc *d, const cyaml_schema_value_t *s, yaml_node_t *n, char *path,
                        tm_err *err)
{
    const cyaml_schema_field_t *fields = s->mapping.fields;
    size_t nfields = 0;
    while (fields[nfields].key != NULL) {
        nfields++;
    }
    if (nfields > 64) {
        return tm_err_set(err, TM_EINTERNAL, "config schema mapping has too many fields");
    }
    uint64_t seen = 0;
    size_t plen = strlen(path);
    for (yaml_node_pair_t *pr = n->data.mapping.pairs.start; pr < n->data.mapping.pairs.top; pr++) {
        yaml_node_t *k = yaml_document_get_node(&d->doc, pr->key);
        yaml_node_t *v = yaml_document_get_node(&d->doc, pr->value);
        if (k == NULL || v == NULL) {
            return tm_err_set(err, TM_EINTERNAL, "%s: broken YAML tree", d->file);
        }
        if (k->type != YAML_SCALAR_NODE) {
            return tm_ydoc_err_at(d, err, tm_ypos_of(k->start_mark), path,
                                  "a key must be a plain name, got %s", kind_name(k));
        }
        const char *key = (const char *)k->data.scalar.value;
        size_t klen = k->data.scalar.length;
        size_t fi = 0;
        for (; fi < nfields; fi++) {
            if (strlen(fields[fi].key) == klen && memcmp(fields[fi].key, key, klen) == 0) {
                break;
            }
        }
        if (fi == nfields) {
            /* List the keys that would be valid: the fix is usually a typo. */
            char valid[TM_ERR_MSG_MAX] = "";
            size_t off = 0;
            for (size_t j = 0; j < nfields && off < sizeof(valid); j++) {
                off += (size_t)snprintf(valid + off, sizeof(valid) - off, "%s%s", j ? ", " : "",
                                        fields[j].key);
            }
            char shown[PATH_MAX_LEN + 80];
            snprintf(shown, sizeof(shown), "%s%s%.64s", path, plen ? "." : "", key);
            return tm_ydoc_err_at(d, err, tm_ypos_of(k->start_mark), shown,
                                  "unknown key, expected one of: %s", valid);
        }
        if (plen + 1 + klen + 1 > PATH_MAX_LEN) {
            return tm_ydoc_err_at(d, err, tm_ypos_of(k->start_mark), path, "key path too long");
        }
        snprintf(path + plen, PATH_MAX_LEN - plen, "%s%s", plen ? "." : "", fields[fi].key);
        if (seen & ((uint64_t)1 << fi)) {
            int rc = tm_ydoc_err_at(d, err, tm_ypos_of(k->start_mark), path,
                                    "duplicate key, each key may appear once");
            path[plen] = '\0';
            return rc;
        }
        seen |= (uint64_t)1 << fi;
        int rc = add_entry(d, path, tm_ypos_of(k->start_mark), tm_ypos_of(v->start_mark), pr->value,
                           err);
        if (rc == 0) {
            rc = walk(d, &fields[fi].value, pr->value, path, err);
        }
        path[plen] = '\0';
        if (rc != 0) {
            return rc;
        }
    }
    for (size_t fi = 0; fi < nfields; fi++) {
        if (!(seen & ((uint64_t)1 << fi)) && !(fields[fi].value.flags & CYAML_FLAG_OPTIONAL)) {
            char missing[PATH_MAX_LEN + 80];
            snprintf(missing, sizeof(missing), "%s%s%s", path, plen ? "." : "", fields[fi].key);
            const char *hint = d->hint ? d->hint(missing) : NULL;
            return tm_ydoc_err_at(d, err, tm_ypos_of(n->start_mark), missing,
                                  "required key is missing, expected %s",
                                  hint ? hint : expected_name(&fields[fi].value));
        }
    }
    return 0;
}

static int walk_sequence(tm_ydoc *d, const cyaml_schema_value_t *s, yaml_node_t *n, char *path,
                         tm_err *err)
{
    size_t count = (size_t)(n->data.sequence.items.top - n->data.sequence.items.start);
    if (count < s->sequence.min) {
        return tm_ydoc_err(d, err, path, "expected at least %" PRIu32 " entr%s, got %zu",
                           s->sequence.min, s->sequence.min == 1 ? "y" : "ies", count);
    }
    if (s->sequence.max != CYAML_UNLIMITED && count > s->sequence.max) {
        return tm_ydoc_err(d, err, path, "expected at most %" PRIu32 " entries, got %zu",
                           s->sequence.max, count);
    }
    size_t plen = strlen(path);
    for (size_t i = 0; i < count; i++) {
        int item = n->data.sequence.items.start[i];
        yaml_node_t *v = yaml_document_get_node(&d->doc, item);
        if (v == NULL) {
            return tm_err_set(err, TM_EINTERNAL, "%s: broken YAML tree", d->file);
        }
        if (plen + 24 > PATH_MAX_LEN) {
            return tm_ydoc_err(d, err, path, "key path too long");
        }
        snprintf(path + plen, PATH_MAX_LEN - plen, "[%zu]", i);
        tm_ypos pos = tm_ypos_of(v->start_mark);
        int rc = add_entry(d, path, pos, pos, item, err);
        if (rc == 0) {
            rc = walk(d, s->sequence.entry, item, path, err);
        }
        path[plen] = '\0';
        if (rc != 0) {
            return rc;
        }
    }
    return 0;
}

static int walk(tm_ydoc *d, const cyaml_schema_value_t *s, int idx, char *path, tm_err *err)
{
    yaml_node_t *n = yaml_document_get_node(&d->doc, idx);
    if (n == NULL) {
        return tm_err_set(err, TM_EINTERNAL, "%s: broken YAML tree", d->file);
    }
    switch (s->type) {
    case CYAML_IGNORE:
        return 0; /* taken from the tree by the caller (e.g. labels) */
    case CYAML_MAPPING:
        if (n->type != YAML_MAPPING_NODE) {
            return tm_ydoc_err(d, err, path, "expected %s, got %s", expected_name(s), kind_name(n));
        }
        return walk_mapping(d, s, n, path, err);
    case CYAML_SEQUENCE:
        if (n->type != YAML_SEQUENCE_NODE) {
            return tm_ydoc_err(d, err, path, "expected %s, got %s", expected_name(s), kind_name(n));
        }
        return walk_sequence(d, s, n, path, err);
    default:
        break;
    }
    /* Scalars from here on. */
    if (n->type != YAML_SCALAR_NODE) {
        return tm_ydoc_err(d, err, path, "expected %s, got %s", expected_name(s), kind_name(n));
    }
    const char *v = (const char *)n->data.scalar.value;
    size_t len = n->data.scalar.length;
    switch (s->type) {
    case CYAML_STRING:
        if (memchr(v, '\0', len) != NULL) {
            return tm_ydoc_err(d, err, path, "NUL byte in value, expected text");
        }
        return 0;
    case CYAML_INT:
    case CYAML_UINT:
        if (!is_decimal_int(v, len) || (s->type == CYAML_UINT && v[0] == '-')) {
            return tm_ydoc_err(d, err, path, "expected a whole number, got '%.40s'", v);
        }
        return 0;
    case CYAML_BOOL:
        /* libcyaml 1.3 reads anything that is not a "false" word as true,
         * so `auto_approve: nope` would approve. Only the two words pass. */
        if (strcmp(v, "true") != 0 && strcmp(v, "false") != 0) {
            return tm_ydoc_err(d, err, path, "expected true or false, got '%.40s'", v);
        }
        return 0;
    default:
        return tm_err_set(err, TM_EINTERNAL, "config schema uses an unsupported type at %s", path);
    }
}

int tm_ydoc_check(tm_ydoc *d, const cyaml_schema_value_t *schema, tm_err *err)
{
    char path[PATH_MAX_LEN] = "";
    return walk(d, schema, 1, path, err);
}

/* ------------------------------------------------- libcyaml log mapping */

int tm_ydoc_cyaml_error(const tm_ydoc *d, const char *log, tm_err *err)
{
    /* Backtrace frames, innermost first. */
    char frames[16][80];
    int nframes = 0;
    char msg[200] = "";
    const char *line = log;
    while (line != NULL && *line != '\0') {
        const char *nl = strchr(line, '\n');
        size_t n = nl ? (size_t)(nl - line) : strlen(line);
        char one[200];
        snprintf(one, sizeof(one), "%.*s", (int)(n < sizeof(one) ? n : sizeof(one) - 1), line);
        unsigned idx;
        char key[64];
        /* Upstream 1.3 writes "in mapping field: n"; Debian's 1.3.1 writes
         * "in mapping field 'n' (line: 3, column: 6)". The sequence number
         * is the count of entries started, so the index is one less. */
        if (sscanf(one, "  in mapping field: %63s", key) == 1 ||
            sscanf(one, "  in mapping field '%63[^']'", key) == 1) {
            if (nframes < 16) {
                snprintf(frames[nframes++], sizeof(frames[0]), "%s", key);
            }
        } else if (sscanf(one, "  in sequence entry: %u", &idx) == 1 ||
                   sscanf(one, "  in sequence entry '%u'", &idx) == 1) {
            if (nframes < 16) {
                snprintf(frames[nframes++], sizeof(frames[0]), "[%u]", idx > 0 ? idx - 1 : 0);
            }
        } else if (msg[0] == '\0' && strncmp(one, "Load: ", 6) == 0 &&
                   strncmp(one, "Load: Backtrace", 15) != 0) {
            snprintf(msg, sizeof(msg), "%s", one + 6);
        }
        line = nl ? nl + 1 : NULL;
    }
    /* Frames come innermost first; the path reads outermost first. */
    char path[PATH_MAX_LEN] = "";
    for (int i = nframes - 1; i >= 0; i--) {
        const char *f = frames[i];
        size_t pl = strlen(path);
        snprintf(path + pl, sizeof(path) - pl, "%s%s", (pl && f[0] != '[') ? "." : "", f);
    }
    const char *uk = "Unexpected key: ";
    if (strncmp(msg, uk, strlen(uk)) == 0) {
        size_t pl = strlen(path);
        snprintf(path + pl, sizeof(path) - pl, "%s%.60s", pl ? "." : "", msg + strlen(uk));
        return tm_ydoc_err_key(d, err, path, "unknown key");
    }
    return tm_ydoc_err(d, err, path, "%s", msg[0] ? msg : "libcyaml could not load the file");
}
