/*
 * validate.h - the config validators, for the sections in common/config/
 * and for the engines' target blocks (agent/engines/<kind>/config.c).
 *
 * A validator turns one raw value (what libcyaml loaded: strings stay
 * strings, "10s", "4MiB") into its checked form and, when it is wrong,
 * reports one line "<file>:<line>:<col>: <key.path>: <what and what is
 * expected>" through the context. Paths are the dotted key paths of the YAML
 * ("repositories[0].timeout"); the position comes from the key map built
 * while loading, so a validator never needs to know lines itself.
 *
 * Every function returns 0 or a negative TM_E*; the first error stops the
 * load (the loader turns it into TM_ECONFIG).
 */
#ifndef TM_CONFIG_VALIDATE_H
#define TM_CONFIG_VALIDATE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <cyaml/cyaml.h>

#include "common/config.h"

/* The validation context: the file being loaded, its key map, its directory
 * (relative paths are resolved against it) and the error to fill. */
typedef struct tm_cv tm_cv;

/* True when the key at `path` was written in the file (a zero in the raw
 * struct does not tell "absent" from "0"). */
bool tm_cv_has(const tm_cv *v, const char *path);
/* Fail with "<file>:<line>:<col>: <path>: <message>", positioned at the
 * value of path (or its nearest present ancestor); _key at the key itself. */
int tm_cv_err(tm_cv *v, const char *path, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
int tm_cv_err_key(tm_cv *v, const char *path, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
int tm_cv_oom(tm_cv *v);
int tm_cv_dup(tm_cv *v, const char *s, char **out);

/* Integer with a default (when absent) and an inclusive range. */
int tm_cv_int(tm_cv *v, const char *path, int64_t val, int64_t def, int64_t min, int64_t max,
              uint32_t *out);
int tm_cv_int32(tm_cv *v, const char *path, int64_t val, int64_t def, int64_t min, int64_t max,
                int32_t *out);
/* A TCP port, 1 .. 65535, default def. */
int tm_cv_port(tm_cv *v, const char *path, int64_t val, int64_t def, uint32_t *out);
/* "500ms", "10s", "5m", "1h" -> milliseconds; s NULL or absent = def. */
int tm_cv_duration(tm_cv *v, const char *path, const char *s, const char *def, uint64_t min_ms,
                   uint64_t max_ms, uint32_t *out);
/* "30s", "15m", "26h", "7d" -> seconds. */
int tm_cv_seconds(tm_cv *v, const char *path, const char *s, const char *def, int64_t min_s,
                  int64_t max_s, int64_t *out);
/* "4096", "64KiB", "4MiB", "1GiB" -> bytes. */
int tm_cv_size(tm_cv *v, const char *path, const char *s, const char *def, uint64_t min,
               uint64_t max, uint32_t *out);

/* [A-Za-z0-9._-]{1,64}. */
int tm_cv_name(tm_cv *v, const char *path, const char *s);
/* Printable, no spaces, 1 .. max characters; s NULL = nothing (*out untouched). */
int tm_cv_token(tm_cv *v, const char *path, const char *s, size_t max, char **out);
/* One of `allowed` ("unknown value 'x', expected <expected>"); s NULL = nothing. */
int tm_cv_enum(tm_cv *v, const char *path, const char *s, const char *const *allowed, size_t n,
               const char *expected, char **out);
/* A file or directory path, made absolute against the config's directory. */
int tm_cv_path(tm_cv *v, const char *path, const char *p, char **out);
/* The secret `key` under `base`: exactly one of `key: env:NAME` and
 * `key_file: /path`, resolved; never echoed. Free with tm_cv_free_secret. */
int tm_cv_secret(tm_cv *v, const char *base, const char *key, const char *ref, const char *file,
                 char **out);
void tm_cv_free_secret(char *s);

/* An engine's target block: `targets[i].<kind>:`. The engine owns the keys,
 * their defaults and their checks; common/config finds the block, refuses it
 * on a target of another kind and reports unknown keys inside it. */
struct tm_target_schema {
    const char *kind;                   /* the targets[].kind value and the block key */
    const cyaml_schema_field_t *fields; /* the block's keys (libcyaml, CYAML_FIELD_END-ended) */
    size_t raw_size;                    /* size of the struct those fields fill */
    /* raw: the loaded block, or NULL when the target has none; base is
     * "targets[i].<kind>". Sets *out (the engine's parsed conf, possibly NULL)
     * as soon as it allocates it: on error too it is freed with free_conf. */
    int (*validate)(tm_cv *v, const char *base, const void *raw, void **out);
    void (*free_conf)(void *conf);
};

#endif
