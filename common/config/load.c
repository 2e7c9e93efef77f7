/*
 * load.c - the loader's frame (the four steps in internal.h): the libyaml
 * tree and structural check (yaml.c), the libcyaml load into the raw struct,
 * the section validators, and freeing what is not kept.
 */
#include "common/config/internal.h"

#include <inttypes.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <limits.h>
#include <stdarg.h>
#include <unistd.h>

#include "common/engine_kinds.h"
#include "common/util.h"

/* What a missing required key should hold, for the error message. */
static const char *missing_hint(const char *path)
{
    static const struct {
        const char *suffix;
        const char *hint;
    } hints[] = {
        {"coordinator", "a mapping with at least url: and enrollment_token:"},
        {"coordinator.url", "the coordinator's RPC URL, e.g. tcp://coordinator.example:7800"},
        {"enrollment", "a list of enrollment tokens (name:, token: env:NAME)"},
        {".name", "a name of [A-Za-z0-9._-], 1 to 64 characters"},
        {".kind", NULL}, /* tm_engine_kind_list(): the kinds the engine table knows */
        {".type", "posix (a directory) or s3 (a bucket)"},
    };
    size_t pl = strlen(path);
    for (size_t i = 0; i < sizeof(hints) / sizeof(hints[0]); i++) {
        size_t sl = strlen(hints[i].suffix);
        if (hints[i].suffix[0] == '.' ? (pl >= sl && strcmp(path + pl - sl, hints[i].suffix) == 0)
                                      : strcmp(path, hints[i].suffix) == 0) {
            if (hints[i].hint == NULL) {
                static _Thread_local char kinds[192];
                snprintf(kinds, sizeof(kinds), "one of %s", tm_engine_kind_list(false));
                return kinds;
            }
            return hints[i].hint;
        }
    }
    return NULL;
}

/* libcyaml's error log, kept instead of printed: it tells which key failed
 * in the rare case the schema walk let something through. */
typedef struct cy_log_buf {
    char text[2048];
    size_t len;
} cy_log_buf;

static void cy_log(cyaml_log_t level, void *ctx, const char *fmt, va_list args)
{
    cy_log_buf *b = ctx;
    if (b == NULL || level < CYAML_LOG_ERROR || b->len >= sizeof(b->text) - 1) {
        return;
    }
    int n = vsnprintf(b->text + b->len, sizeof(b->text) - b->len, fmt, args);
    if (n > 0) {
        b->len += (size_t)n;
        if (b->len >= sizeof(b->text)) {
            b->len = sizeof(b->text) - 1;
        }
    }
}

static cyaml_config_t cy_config(cy_log_buf *log)
{
    cyaml_config_t cfg = {
        .log_fn = cy_log,
        .log_ctx = log,
        .mem_fn = cyaml_mem,
        .log_level = CYAML_LOG_ERROR,
        /* Aliases are refused earlier too; this is the belt to those braces. */
        .flags = CYAML_CFG_NO_ALIAS,
    };
    return cfg;
}

/* Steps 1 and 2: tree + structural check, then libcyaml into *raw. */
static int load_raw(tm_ydoc *doc, const char *name, const char *buf, size_t len,
                    const cyaml_schema_value_t *schema, void **raw, tm_err *err)
{
    *raw = NULL;
    int rc = tm_ydoc_load(doc, name, buf, len, err);
    if (rc != 0) {
        return rc;
    }
    doc->hint = missing_hint;
    rc = tm_ydoc_check(doc, schema, err);
    if (rc != 0) {
        return rc;
    }
    cy_log_buf log = {.len = 0};
    log.text[0] = '\0';
    cyaml_config_t cfg = cy_config(&log);
    cyaml_err_t ce =
        cyaml_load_data((const uint8_t *)buf, len, &cfg, schema, (cyaml_data_t **)raw, NULL);
    if (ce == CYAML_ERR_OOM) {
        *raw = NULL;
        return tm_err_set(err, TM_ENOMEM, "%s: out of memory", name);
    }
    if (ce != CYAML_OK) {
        *raw = NULL;
        return tm_ydoc_cyaml_error(doc, log.text, err);
    }
    return 0;
}

static void free_raw(const cyaml_schema_value_t *schema, void *raw)
{
    if (raw != NULL) {
        cy_log_buf log = {.len = 0};
        cyaml_config_t cfg = cy_config(&log);
        cyaml_free(&cfg, schema, raw, 0);
    }
}

/* "a/b/c.yaml" -> "<cwd>/a/b"; "c.yaml" -> "<cwd>". Absolute so a daemon
 * that later changes directory still finds its files. */
static char *config_dir(const char *name)
{
    const char *slash = strrchr(name, '/');
    char rel[PATH_MAX];
    if (slash == NULL) {
        snprintf(rel, sizeof(rel), ".");
    } else if (slash == name) {
        snprintf(rel, sizeof(rel), "/");
    } else {
        snprintf(rel, sizeof(rel), "%.*s", (int)(slash - name), name);
    }
    if (rel[0] == '/') {
        return strdup(rel);
    }
    char cwd[PATH_MAX];
    if (getcwd(cwd, sizeof(cwd)) == NULL) {
        return strdup(rel);
    }
    char *out = NULL;
    if (strcmp(rel, ".") == 0) {
        return strdup(cwd);
    }
    if (asprintf(&out, "%s/%s", cwd, rel) < 0) {
        return NULL;
    }
    return out;
}

/* Shared frame of both parse functions: set up, run the sections, clean up.
 * `run` applies the file-specific section table to raw -> conf. */
int tm_cfg_parse(const char *name, const char *buf, size_t len, const cyaml_schema_value_t *schema,
                 tm_cfg_run run, void *conf, char **conf_path, tm_err *err)
{
    tm_ydoc doc;
    void *raw = NULL;
    tm_err scratch; /* validators read messages back: they need somewhere to write */
    if (err == NULL) {
        err = &scratch;
    }
    tm_cv v = {.doc = &doc, .dir = NULL, .err = err};
    int rc = load_raw(&doc, name, buf, len, schema, &raw, err);
    if (rc == 0) {
        *conf_path = strdup(name);
        v.dir = config_dir(name);
        rc = (*conf_path == NULL || v.dir == NULL) ? tm_cv_oom(&v) : 0;
    }
    if (rc == 0) {
        rc = run(&v, raw, conf);
    }
    free(v.dir);
    free_raw(schema, raw);
    tm_ydoc_free(&doc);
    if (rc != 0 && rc != TM_ENOMEM && rc != TM_EINTERNAL) {
        rc = TM_ECONFIG;
        if (err != NULL) {
            err->code = TM_ECONFIG;
        }
    }
    return rc;
}

int tm_cfg_read(const char *path, char **buf, size_t *len, tm_err *err)
{
    int rc = tm_file_read(path, buf, len, err);
    if (rc != 0 && rc != TM_ENOMEM) {
        /* A config that cannot be read is a config error: the mains exit 2. */
        if (err != NULL) {
            err->code = TM_ECONFIG;
        }
        return TM_ECONFIG;
    }
    return rc;
}
