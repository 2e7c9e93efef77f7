/*
 * validate.c - the validators every section uses: presence, integers, units
 * (durations, sizes, seconds), URLs, names, tokens, enums, paths, secrets,
 * cron expressions, label maps. Each reports "file:line:col: key.path: ...".
 */
#include "common/config/internal.h"

#include <inttypes.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <limits.h>
#include <stdarg.h>
#include <time.h>
#include <unistd.h>

#include "common/log.h"

bool tm_cv_has(const tm_cv *v, const char *path)
{
    return tm_ydoc_find(v->doc, path) != NULL;
}

int tm_cv_oom(tm_cv *v)
{
    return tm_err_set(v->err, TM_ENOMEM, "%s: out of memory", v->doc->file);
}

static int cv_verr(tm_cv *v, bool at_key, const char *path, const char *fmt, va_list ap)
{
    char msg[TM_ERR_MSG_MAX];
    vsnprintf(msg, sizeof(msg), fmt, ap);
    return at_key ? tm_ydoc_err_key(v->doc, v->err, path, "%s", msg)
                  : tm_ydoc_err(v->doc, v->err, path, "%s", msg);
}

int tm_cv_err(tm_cv *v, const char *path, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    int rc = cv_verr(v, false, path, fmt, ap);
    va_end(ap);
    return rc;
}

int tm_cv_err_key(tm_cv *v, const char *path, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    int rc = cv_verr(v, true, path, fmt, ap);
    va_end(ap);
    return rc;
}

int tm_cv_dup(tm_cv *v, const char *s, char **out)
{
    *out = strdup(s);
    return *out == NULL ? tm_cv_oom(v) : 0;
}

/* Resolve p against the config's directory. */
int tm_cv_path(tm_cv *v, const char *path, const char *p, char **out)
{
    *out = NULL;
    if (p[0] == '\0') {
        return tm_ydoc_err(v->doc, v->err, path, "empty path, expected a file or directory path");
    }
    if (p[0] == '/') {
        return tm_cv_dup(v, p, out);
    }
    const char *sep = (v->dir[0] != '\0' && v->dir[strlen(v->dir) - 1] == '/') ? "" : "/";
    if (asprintf(out, "%s%s%s", v->dir, sep, p) < 0) {
        *out = NULL;
        return tm_cv_oom(v);
    }
    return 0;
}

/* Integer with default and inclusive range. */
int tm_cv_int(tm_cv *v, const char *path, int64_t val, int64_t def, int64_t min, int64_t max,
              uint32_t *out)
{
    if (!tm_cv_has(v, path)) {
        val = def;
    } else if (val < min || val > max) {
        return tm_ydoc_err(v->doc, v->err, path,
                           "%" PRId64 " is out of range, expected %" PRId64 " .. %" PRId64, val,
                           min, max);
    }
    *out = (uint32_t)val;
    return 0;
}

int tm_cv_port(tm_cv *v, const char *path, int64_t val, int64_t def, uint32_t *out)
{
    return tm_cv_int(v, path, val, def, 1, 65535, out);
}

/* "<digits><unit>" with units from the table; returns false if malformed. */
typedef struct unit {
    const char *name;
    uint64_t mult;
} unit;

static bool parse_units(const char *s, const unit *units, size_t nunits, uint64_t *out)
{
    uint64_t n = 0;
    size_t i = 0;
    for (; s[i] >= '0' && s[i] <= '9'; i++) {
        if (i >= 12) { /* no config value needs more; keeps the math in range */
            return false;
        }
        n = n * 10 + (uint64_t)(s[i] - '0');
    }
    if (i == 0) {
        return false;
    }
    for (size_t u = 0; u < nunits; u++) {
        if (strcmp(s + i, units[u].name) == 0) {
            *out = n * units[u].mult;
            return true;
        }
    }
    return false;
}

static const unit duration_units[] = {{"ms", 1}, {"s", 1000}, {"m", 60000}, {"h", 3600000}};
static const unit size_units[] = {
    {"", 1}, {"B", 1}, {"KiB", 1024}, {"MiB", 1024 * 1024}, {"GiB", 1024ull * 1024 * 1024}};

/* Human form of a bound, in the largest unit that divides it. */
static void fmt_units(uint64_t v, const unit *units, size_t nunits, char *out, size_t cap)
{
    size_t best = 0;
    for (size_t u = 0; u < nunits; u++) {
        if (units[u].mult <= v && v % units[u].mult == 0 && units[u].mult >= units[best].mult) {
            best = u;
        }
    }
    snprintf(out, cap, "%" PRIu64 "%s", v / units[best].mult, units[best].name);
}

static int v_units(tm_cv *v, const char *path, const char *s, const char *def, uint64_t min,
                   uint64_t max, const unit *units, size_t nunits, const char *examples,
                   uint32_t *out)
{
    if (s == NULL || !tm_cv_has(v, path)) {
        s = def;
    }
    uint64_t val;
    if (!parse_units(s, units, nunits, &val)) {
        return tm_ydoc_err(v->doc, v->err, path, "'%.40s' is not valid, expected %s", s, examples);
    }
    if (val < min || val > max) {
        char lo[32], hi[32];
        fmt_units(min, units, nunits, lo, sizeof(lo));
        fmt_units(max, units, nunits, hi, sizeof(hi));
        return tm_ydoc_err(v->doc, v->err, path, "%s is out of range, expected %s .. %s", s, lo,
                           hi);
    }
    *out = (uint32_t)val;
    return 0;
}

int tm_cv_duration(tm_cv *v, const char *path, const char *s, const char *def, uint64_t min_ms,
                   uint64_t max_ms, uint32_t *out)
{
    return v_units(v, path, s, def, min_ms, max_ms, duration_units, 4,
                   "a duration such as 500ms, 10s, 5m or 1h", out);
}

int tm_cv_size(tm_cv *v, const char *path, const char *s, const char *def, uint64_t min,
               uint64_t max, uint32_t *out)
{
    return v_units(v, path, s, def, min, max, size_units, 5, "a size such as 4096, 64KiB or 4MiB",
                   out);
}

/* nng URLs we accept. For host:port schemes the port must be numeric; a
 * listener may use port 0 (kernel picks, handy in tests) and an empty or
 * "*" host (all interfaces), a dialer may not. */
int tm_cv_url(tm_cv *v, const char *path, const char *url, unsigned allowed, bool listen)
{
    static const struct {
        const char *prefix;
        unsigned kind;
    } schemes[] = {{"tcp://", TM_CV_URL_TCP},
                   {"tls+tcp://", TM_CV_URL_TLS},
                   {"ipc://", TM_CV_URL_IPC},
                   {"http://", TM_CV_URL_HTTP}};
    char expected[96] = "";
    size_t off = 0;
    for (size_t i = 0; i < 4; i++) {
        if (allowed & schemes[i].kind) {
            off += (size_t)snprintf(expected + off, sizeof(expected) - off, "%s%s",
                                    off ? " or " : "", schemes[i].prefix);
        }
    }
    size_t i = 0;
    for (; i < 4; i++) {
        if ((allowed & schemes[i].kind) &&
            strncmp(url, schemes[i].prefix, strlen(schemes[i].prefix)) == 0) {
            break;
        }
    }
    if (i == 4) {
        return tm_ydoc_err(v->doc, v->err, path, "unsupported URL '%.80s', expected %s", url,
                           expected);
    }
    const char *rest = url + strlen(schemes[i].prefix);
    for (const char *p = rest; *p; p++) {
        if (*p <= ' ' || *p == 0x7f) {
            return tm_ydoc_err(v->doc, v->err, path,
                               "URL contains whitespace or control characters");
        }
    }
    if (schemes[i].kind == TM_CV_URL_IPC) {
        if (rest[0] == '\0') {
            return tm_ydoc_err(v->doc, v->err, path, "expected a socket path after ipc://");
        }
        return 0;
    }
    const char *colon = strrchr(rest, ':');
    const char *bracket = strrchr(rest, ']');
    if (colon == NULL || (bracket != NULL && colon < bracket)) {
        return tm_ydoc_err(v->doc, v->err, path, "'%.80s' has no port, expected %shost:port", url,
                           schemes[i].prefix);
    }
    size_t hostlen = (size_t)(colon - rest);
    const char *port = colon + 1;
    long pn = 0;
    size_t pl = strlen(port);
    bool ok = pl >= 1 && pl <= 5;
    for (size_t k = 0; ok && k < pl; k++) {
        ok = port[k] >= '0' && port[k] <= '9';
        pn = pn * 10 + (port[k] - '0');
    }
    if (!ok || pn > 65535 || (pn == 0 && !listen)) {
        return tm_ydoc_err(v->doc, v->err, path, "bad port in '%.80s', expected %s .. 65535", url,
                           listen ? "0" : "1");
    }
    if (!listen && (hostlen == 0 || (hostlen == 1 && rest[0] == '*'))) {
        return tm_ydoc_err(v->doc, v->err, path, "'%.80s' has no host, expected %shost:port", url,
                           schemes[i].prefix);
    }
    return 0;
}

int tm_cv_log_level(tm_cv *v, const char *path, const char *s, tm_log_level *out)
{
    *out = TM_LOG_INFO;
    if (s == NULL || !tm_cv_has(v, path)) {
        return 0;
    }
    if (tm_log_parse_level(s, out) != 0) {
        return tm_ydoc_err(v->doc, v->err, path,
                           "'%.40s' is not a level, expected debug, info, "
                           "warn or error",
                           s);
    }
    return 0;
}

/* [A-Za-z0-9._-]{1,64}: names end up in paths, metrics labels, catalogs. */
static bool valid_name(const char *s)
{
    size_t n = strlen(s);
    if (n < 1 || n > 64) {
        return false;
    }
    for (size_t i = 0; i < n; i++) {
        char c = s[i];
        if (!((c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') ||
              c == '.' || c == '_' || c == '-')) {
            return false;
        }
    }
    return true;
}

int tm_cv_name(tm_cv *v, const char *path, const char *s)
{
    if (!valid_name(s)) {
        return tm_ydoc_err(v->doc, v->err, path,
                           "'%.80s' is not a valid name, expected 1 to 64 of [A-Za-z0-9._-]", s);
    }
    return 0;
}

/* A secret key `key` under `base`: exactly one of `key: env:NAME` and
 * `key_file: path`. The value is never echoed: a user who typed the token
 * inline should not then find it in a log. */
int tm_cv_secret(tm_cv *v, const char *base, const char *key, const char *ref, const char *file,
                 char **out)
{
    char kp[160], fp[170];
    snprintf(kp, sizeof(kp), "%s%s%s", base, base[0] ? "." : "", key);
    snprintf(fp, sizeof(fp), "%s_file", kp);
    *out = NULL;
    if (ref != NULL && file != NULL) {
        return tm_ydoc_err_key(v->doc, v->err, fp,
                               "both %s and %s_file are set, expected exactly one", key, key);
    }
    if (ref == NULL && file == NULL) {
        return tm_ydoc_err(v->doc, v->err, kp,
                           "required secret is missing, expected %s: env:NAME or %s_file: /path",
                           key, key);
    }
    int rc;
    char msg[TM_ERR_MSG_MAX];
    if (ref != NULL) {
        if (strncmp(ref, "env:", 4) != 0) {
            return tm_ydoc_err(v->doc, v->err, kp,
                               "inline secrets are not allowed, expected %s: env:NAME or "
                               "%s_file: /path",
                               key, key);
        }
        rc = tm_secret_resolve(ref, NULL, out, v->err);
        if (rc != 0) {
            snprintf(msg, sizeof(msg), "%s", v->err->msg);
            return rc == TM_ENOMEM ? rc : tm_ydoc_err(v->doc, v->err, kp, "%s", msg);
        }
        return 0;
    }
    char *full = NULL;
    rc = tm_cv_path(v, fp, file, &full);
    if (rc != 0) {
        return rc;
    }
    rc = tm_secret_resolve(NULL, full, out, v->err);
    free(full);
    if (rc != 0) {
        snprintf(msg, sizeof(msg), "%s", v->err->msg);
        return rc == TM_ENOMEM ? rc : tm_ydoc_err(v->doc, v->err, fp, "%s", msg);
    }
    return 0;
}

/* A secret that authenticates (admin and enrollment tokens): tm_cv_secret plus a
 * minimum length, because a short token can be guessed over the network.
 * The error points at whichever of key / key_file was given. */
int tm_cv_auth_token(tm_cv *v, const char *base, const char *key, const char *ref, const char *file,
                     char **out)
{
    int rc = tm_cv_secret(v, base, key, ref, file, out);
    if (rc != 0 || strlen(*out) >= TM_TOKEN_MIN_LEN) {
        return rc;
    }
    char kp[170];
    snprintf(kp, sizeof(kp), "%s%s%s%s", base, base[0] ? "." : "", key, file ? "_file" : "");
    size_t len = strlen(*out);
    tm_cv_free_secret(*out);
    *out = NULL;
    return tm_ydoc_err(v->doc, v->err, kp,
                       "token is %zu characters, expected at least %d (generate one with: "
                       "openssl rand -hex 32)",
                       len, TM_TOKEN_MIN_LEN);
}

/* Strict RFC 3339 in UTC: "2027-01-01T00:00:00Z". */
bool tm_cv_rfc3339_utc(const char *s, int64_t *out)
{
    static const char shape[] = "dddd-dd-ddTdd:dd:ddZ";
    if (strlen(s) != sizeof(shape) - 1) {
        return false;
    }
    for (size_t i = 0; shape[i]; i++) {
        if (shape[i] == 'd' ? (s[i] < '0' || s[i] > '9') : s[i] != shape[i]) {
            return false;
        }
    }
    struct tm tm = {0};
    tm.tm_year = atoi(s) - 1900;
    tm.tm_mon = atoi(s + 5) - 1;
    tm.tm_mday = atoi(s + 8);
    tm.tm_hour = atoi(s + 11);
    tm.tm_min = atoi(s + 14);
    tm.tm_sec = atoi(s + 17);
    if (tm.tm_mon < 0 || tm.tm_mon > 11 || tm.tm_mday < 1 || tm.tm_hour > 23 || tm.tm_min > 59 ||
        tm.tm_sec > 59 || tm.tm_year < 70) {
        return false;
    }
    struct tm check = tm;
    time_t t = timegm(&check);
    /* timegm normalises Feb 30 to Mar 2: a changed day means it was invalid. */
    if (t == (time_t)-1 || check.tm_mday != tm.tm_mday || check.tm_mon != tm.tm_mon) {
        return false;
    }
    *out = (int64_t)t;
    return true;
}

/* Long durations in whole seconds, up to days (pitr_window: 7d). */
static const unit seconds_units[] = {{"s", 1}, {"m", 60}, {"h", 3600}, {"d", 86400}};

int tm_cv_seconds(tm_cv *v, const char *path, const char *s, const char *def, int64_t min_s,
                  int64_t max_s, int64_t *out)
{
    if (s == NULL || !tm_cv_has(v, path)) {
        s = def;
    }
    uint64_t val;
    if (!parse_units(s, seconds_units, 4, &val)) {
        return tm_ydoc_err(v->doc, v->err, path,
                           "'%.40s' is not valid, expected a duration such as 30s, 15m, 26h or 7d",
                           s);
    }
    if ((int64_t)val < min_s || (int64_t)val > max_s) {
        char lo[32], hi[32];
        fmt_units((uint64_t)min_s, seconds_units, 4, lo, sizeof(lo));
        fmt_units((uint64_t)max_s, seconds_units, 4, hi, sizeof(hi));
        return tm_ydoc_err(v->doc, v->err, path, "%s is out of range, expected %s .. %s", s, lo,
                           hi);
    }
    *out = (int64_t)val;
    return 0;
}

int tm_cv_int32(tm_cv *v, const char *path, int64_t val, int64_t def, int64_t min, int64_t max,
                int32_t *out)
{
    uint32_t u = 0;
    int rc = tm_cv_int(v, path, val, def, min, max, &u);
    *out = (int32_t)u;
    return rc;
}

static tm_cron_check_fn cron_check;

void tm_config_set_cron_check(tm_cron_check_fn fn)
{
    cron_check = fn;
}

/* "file:line:col: path" of a value, for errors the coordinator finds later. */
static int where_of(tm_cv *v, const char *path, char **out)
{
    const tm_yentry *e = tm_ydoc_find(v->doc, path);
    int line = e != NULL ? e->val.line : 1, col = e != NULL ? e->val.col : 1;
    if (asprintf(out, "%s:%d:%d: %s", v->doc->file, line, col, path) < 0) {
        *out = NULL;
        return tm_cv_oom(v);
    }
    return 0;
}

int tm_cv_cron(tm_cv *v, const char *path, const char *expr, char **out, char **where)
{
    if (cron_check != NULL) {
        tm_err cerr = {0};
        if (cron_check(expr, &cerr) != 0) {
            return tm_ydoc_err(v->doc, v->err, path, "%s", cerr.msg);
        }
    }
    int rc = tm_cv_dup(v, expr, out);
    return rc != 0 ? rc : where_of(v, path, where);
}

static bool valid_label_key(const char *s, size_t n)
{
    if (n < 1 || n > 63) {
        return false;
    }
    for (size_t i = 0; i < n; i++) {
        char ch = s[i];
        if (!((ch >= 'A' && ch <= 'Z') || (ch >= 'a' && ch <= 'z') || (ch >= '0' && ch <= '9') ||
              ch == '.' || ch == '_' || ch == '-' || ch == '/')) {
            return false;
        }
    }
    return true;
}

/* labels: a free-form mapping, read from the libyaml tree because libcyaml
 * only knows fixed keys. */
int tm_cv_label_map(tm_cv *v, const char *path, tm_label_conf **labels, size_t *n_labels)
{
    yaml_node_t *n = tm_ydoc_node(v->doc, path);
    if (n == NULL) {
        return 0;
    }
    if (n->type == YAML_SCALAR_NODE && n->data.scalar.length == 0) {
        return 0; /* "labels:" with nothing under it */
    }
    if (n->type != YAML_MAPPING_NODE) {
        return tm_ydoc_err(v->doc, v->err, path, "expected a mapping of name: value, got a %s",
                           n->type == YAML_SEQUENCE_NODE ? "list" : "single value");
    }
    size_t count = (size_t)(n->data.mapping.pairs.top - n->data.mapping.pairs.start);
    if (count > 256) {
        return tm_ydoc_err(v->doc, v->err, path, "%zu labels, expected at most 256", count);
    }
    if (count == 0) {
        return 0;
    }
    (*labels) = calloc(count, sizeof(*(*labels)));
    if ((*labels) == NULL) {
        return tm_cv_oom(v);
    }
    for (size_t i = 0; i < count; i++) {
        yaml_node_pair_t *pr = &n->data.mapping.pairs.start[i];
        yaml_node_t *k = yaml_document_get_node(&v->doc->doc, pr->key);
        yaml_node_t *val = yaml_document_get_node(&v->doc->doc, pr->value);
        if (k == NULL || val == NULL) {
            return tm_err_set(v->err, TM_EINTERNAL, "%s: broken YAML tree", v->doc->file);
        }
        if (k->type != YAML_SCALAR_NODE ||
            !valid_label_key((const char *)k->data.scalar.value, k->data.scalar.length)) {
            return tm_ydoc_err_at(v->doc, v->err, tm_ypos_of(k->start_mark), path,
                                  "bad label name, expected 1 to 63 of [A-Za-z0-9._/-]");
        }
        const char *key = (const char *)k->data.scalar.value;
        char p[192];
        snprintf(p, sizeof(p), "%s.%s", path, key);
        for (size_t j = 0; j < *n_labels; j++) {
            if (strcmp((*labels)[j].key, key) == 0) {
                return tm_ydoc_err_at(v->doc, v->err, tm_ypos_of(k->start_mark), p,
                                      "duplicate label, each label may appear once");
            }
        }
        if (val->type != YAML_SCALAR_NODE) {
            return tm_ydoc_err_at(v->doc, v->err, tm_ypos_of(val->start_mark), p,
                                  "expected a string value, got a %s",
                                  val->type == YAML_SEQUENCE_NODE ? "list" : "mapping");
        }
        const char *value = (const char *)val->data.scalar.value;
        size_t vlen = val->data.scalar.length;
        bool ok = vlen <= 256;
        for (size_t j = 0; ok && j < vlen; j++) {
            ok = (unsigned char)value[j] >= ' ' && value[j] != 0x7f;
        }
        if (!ok) {
            return tm_ydoc_err_at(v->doc, v->err, tm_ypos_of(val->start_mark), p,
                                  "bad label value, expected at most 256 printable characters");
        }
        (*labels)[i].key = strdup(key);
        (*labels)[i].value = strdup(value);
        *n_labels = i + 1;
        if ((*labels)[i].key == NULL || (*labels)[i].value == NULL) {
            return tm_cv_oom(v);
        }
    }
    return 0;
}

/* An optional string that must be one of `allowed`. */
int tm_cv_enum(tm_cv *v, const char *path, const char *s, const char *const *allowed, size_t n,
               const char *expected, char **out)
{
    if (s == NULL) {
        return 0;
    }
    for (size_t i = 0; i < n; i++) {
        if (strcmp(s, allowed[i]) == 0) {
            return tm_cv_dup(v, s, out);
        }
    }
    return tm_ydoc_err(v->doc, v->err, path, "unknown value '%.40s', expected %s", s, expected);
}

/* Printable, no spaces: bucket names, storage classes, key ids, prefixes. */
int tm_cv_token(tm_cv *v, const char *path, const char *s, size_t max, char **out)
{
    if (s == NULL) {
        return 0;
    }
    size_t n = strlen(s);
    bool ok = n >= 1 && n <= max;
    for (size_t i = 0; ok && i < n; i++) {
        ok = s[i] > ' ' && s[i] != 0x7f;
        /* Not echoed: a CR/LF in the message would split it, and in a
         * header value (storage class, SSE key id) it would split a request. */
        if ((unsigned char)s[i] < ' ' || s[i] == 0x7f) {
            return tm_ydoc_err(v->doc, v->err, path,
                               "contains a control character (CR, LF, tab...), expected 1 to %zu "
                               "characters without spaces",
                               max);
        }
    }
    if (!ok) {
        return tm_ydoc_err(v->doc, v->err, path,
                           "'%.60s' is not valid, expected 1 to %zu characters without spaces", s,
                           max);
    }
    return tm_cv_dup(v, s, out);
}

void tm_cv_free_secret(char *s)
{
    if (s != NULL) {
        explicit_bzero(s, strlen(s));
        free(s);
    }
}
