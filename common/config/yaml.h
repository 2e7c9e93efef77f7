/*
 * yaml.h - the libyaml side of config loading (internal to common/config/).
 *
 * libcyaml turns YAML into C structs but does not tell us *where* a value
 * came from, and libcyaml 1.3 has no range checks. So the same bytes are
 * first parsed with libyaml into a document tree, which is walked against
 * the very cyaml schema that will load them. The walk
 *   - reports unknown keys, duplicate keys, wrong node kinds, bad integers
 *     and booleans, missing required fields, with the line:column of the
 *     offending key or value;
 *   - records every key it visits as "key.path" -> marks, so the semantic
 *     validation in the section files can point at the exact line of a bad value.
 * When the walk passes, libcyaml cannot disagree on structure; if it still
 * fails, tm_ydoc_cyaml_error() maps its log backtrace onto the same paths.
 *
 * Paths look like "heartbeat.interval", "enrollment[0].token", "labels".
 * The document root is "". Positions are 1-based, like editors show them.
 */
#ifndef TM_CONFIG_YAML_H
#define TM_CONFIG_YAML_H

#include <stdbool.h>
#include <stddef.h>

#include <cyaml/cyaml.h>
#include <yaml.h>

#include "common/err.h"

/* Nesting deeper than this is refused before any tree walking: a config
 * needs 4 levels, and the limit keeps hostile input cheap. */
#define TM_YDOC_MAX_DEPTH 32

typedef struct tm_ypos {
    int line; /* 1-based */
    int col;  /* 1-based */
} tm_ypos;

typedef struct tm_yentry {
    char *path;
    tm_ypos key; /* where the key (or the sequence entry) starts */
    tm_ypos val; /* where its value starts */
    int node;    /* libyaml node index of the value */
} tm_yentry;

typedef struct tm_ydoc {
    const char *file; /* name used in messages; not owned */
    yaml_document_t doc;
    bool loaded;
    tm_yentry *entries;
    size_t n_entries;
    size_t cap_entries;
    /* Optional: what a missing required key should hold, for the message
     * ("the coordinator's URL, e.g. tcp://host:7800"). NULL = generic. */
    const char *(*hint)(const char *path);
} tm_ydoc;

/* Parse buf into d. Refuses malformed YAML, aliases, more than one document,
 * an empty document and a root that is not a mapping. */
int tm_ydoc_load(tm_ydoc *d, const char *file, const char *buf, size_t len, tm_err *err);
/* Walk the tree against a cyaml mapping schema (the top-level value schema)
 * and record key paths. */
int tm_ydoc_check(tm_ydoc *d, const cyaml_schema_value_t *schema, tm_err *err);
void tm_ydoc_free(tm_ydoc *d);

/* Entry for an exact path, or NULL when the key was absent. */
const tm_yentry *tm_ydoc_find(const tm_ydoc *d, const char *path);
/* libyaml node for a path, or NULL. */
yaml_node_t *tm_ydoc_node(tm_ydoc *d, const char *path);

/* Set err to "<file>:<line>:<col>: <path>: <message>" with TM_ECONFIG.
 * The position is the value of `path`; if absent, its nearest present
 * ancestor (so "missing field" points at the enclosing mapping). */
int tm_ydoc_err(const tm_ydoc *d, tm_err *err, const char *path, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
/* Same, pointing at the key rather than the value. */
int tm_ydoc_err_key(const tm_ydoc *d, tm_err *err, const char *path, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
/* Same at an explicit position. */
int tm_ydoc_err_at(const tm_ydoc *d, tm_err *err, tm_ypos pos, const char *path, const char *fmt,
                   ...) __attribute__((format(printf, 5, 6)));

/* Translate libcyaml's captured error log (its "Load: ..." line followed by
 * "  in mapping field ..." / "  in sequence entry ..." backtrace lines,
 * innermost first) into one positioned error. */
int tm_ydoc_cyaml_error(const tm_ydoc *d, const char *log, tm_err *err);

static inline tm_ypos tm_ypos_of(yaml_mark_t m)
{
    tm_ypos p = {(int)m.line + 1, (int)m.column + 1};
    return p;
}

#endif
