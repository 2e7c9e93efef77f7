/*
 * aof_manifest.h - Redis 7's multi-part AOF manifest (appendonlydir/
 * <appendfilename>.manifest): one line per file,
 *
 *     file appendonly.aof.2.base.rdb seq 2 type b
 *     file appendonly.aof.2.incr.aof seq 2 type i
 *
 * type b = the base (at most one), h = history (superseded by a rewrite,
 * about to be deleted), i = incremental (appended to, in seq order; the last
 * one is the file Redis writes now). Parsed strictly: anything else is an
 * error naming the line. A file name is used as a path component in the AOF
 * directory, so it may not contain '/', be "." or "..", or need quoting.
 */
#ifndef TM_REDIS_AOF_MANIFEST_H
#define TM_REDIS_AOF_MANIFEST_H

#include <stddef.h>
#include <stdint.h>

#include "common/err.h"

#define TM_AOF_NAME_MAX 255

typedef enum {
    TM_AOF_BASE = 'b',
    TM_AOF_HISTORY = 'h',
    TM_AOF_INCR = 'i',
} tm_aof_file_type;

typedef struct tm_aof_file {
    char name[TM_AOF_NAME_MAX + 1];
    int64_t seq;
    tm_aof_file_type type;
} tm_aof_file;

typedef struct tm_aof_manifest tm_aof_manifest;

int tm_aof_manifest_new(tm_aof_manifest **out, tm_err *err);
void tm_aof_manifest_free(tm_aof_manifest *m);

/* Parse a manifest's bytes (as read from the file). */
int tm_aof_manifest_parse(const char *buf, size_t len, tm_aof_manifest **out, tm_err *err);
/* Read and parse a manifest file. */
int tm_aof_manifest_load(const char *path, tm_aof_manifest **out, tm_err *err);

/* Append a file (the same rules as parsing: valid name, one base, incr seqs
 * strictly increasing, no name twice). */
int tm_aof_manifest_add(tm_aof_manifest *m, const char *name, int64_t seq, tm_aof_file_type type,
                        tm_err *err);

size_t tm_aof_manifest_count(const tm_aof_manifest *m);
const tm_aof_file *tm_aof_manifest_file(const tm_aof_manifest *m, size_t i);
/* The base, or NULL. */
const tm_aof_file *tm_aof_manifest_base(const tm_aof_manifest *m);
/* The file of that name, or NULL. */
const tm_aof_file *tm_aof_manifest_find(const tm_aof_manifest *m, const char *name);
/* The incremental files in seq order: *n of them, pointers valid until the
 * manifest changes. Returns the count. */
size_t tm_aof_manifest_incrs(const tm_aof_manifest *m, const tm_aof_file **out, size_t cap);

/* Format as Redis writes it ("file X seq N type T\n" per file, in order);
 * *out is malloc'd and NUL-terminated. */
int tm_aof_manifest_format(const tm_aof_manifest *m, char **out, size_t *len, tm_err *err);

/* Whether a name is acceptable (see above). */
int tm_aof_name_ok(const char *name, size_t len);

#endif
