/*
 * metrics.c - the Prometheus registry behind metrics.h.
 *
 * Layout: the registry holds families in declaration order; a family holds
 * its children in creation order (a vector, for rendering) plus a small
 * chained hash table (for lookup by label values). A child never moves or
 * dies before the registry, so callers may keep the pointer.
 *
 * Concurrency: the only thing hot paths touch is a child's value, and that is
 * a C11 atomic. Doubles have no atomic add, so a value is stored as the bit
 * pattern of a double in an atomic uint64 and updated with a CAS loop; under
 * contention a loser simply retries with the fresh value, so no update is
 * lost and no lock is taken. Histogram bucket counts are plain atomic
 * integers. Lookup and creation of children take the family mutex; render
 * takes the registry mutex, then each family mutex in turn.
 */
#include "common/metrics.h"

#include <math.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/err.h"
#include "common/log.h"

/* First render buffer; it doubles as needed. */
#define TM_METRICS_INITIAL_CAP 4096

struct tm_metric_child {
    tm_metric *family;
    char *labels;             /* preformatted `a="x",b="y"`, "" when unlabelled */
    char **values;            /* raw label values, for lookup */
    uint64_t hash;            /* of the values, for lookup */
    tm_metric_child *next;    /* hash chain */
    _Atomic uint64_t value;   /* counter/gauge: bits of a double */
    _Atomic uint64_t sum;     /* histogram: bits of a double */
    _Atomic uint64_t *counts; /* histogram: per bucket (not cumulative), +Inf last */
};

struct tm_metric {
    tm_metric_type type;
    char *name;
    char *help;
    char **labelnames;
    size_t n_labels;
    double *buckets;
    size_t n_buckets; /* finite bounds; +Inf is implicit */

    pthread_mutex_t mu; /* guards the vector and the hash table */
    tm_metric_child **children;
    size_t n_children, cap_children;
    tm_metric_child **table; /* n_table is a power of two */
    size_t n_table;
};

typedef struct {
    tm_metrics_collect_fn fn;
    void *arg;
} tm_collector;

struct tm_metrics {
    pthread_mutex_t mu;
    tm_metric **families;
    size_t n_families, cap_families;
    tm_collector *collectors;
    size_t n_collectors, cap_collectors;
};

struct tm_metrics_writer {
    char *buf;
    size_t len, cap;
    int oom; /* sticky: once an append fails, render reports TM_ENOMEM */
};

/* ---- names -------------------------------------------------------------- */

/* Metric names may contain colons (recording rules use them); label names
 * may not, per the Prometheus data model. */
static int valid_name(const char *s, int allow_colon)
{
    if (s == NULL || *s == '\0') {
        return 0;
    }
    for (const char *p = s; *p != '\0'; p++) {
        char c = *p;
        int ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_' ||
                 (allow_colon && c == ':') || (p != s && c >= '0' && c <= '9');
        if (!ok) {
            return 0;
        }
    }
    return 1;
}

/* ---- number formatting -------------------------------------------------- */

/* Prometheus parses with Go's strconv.ParseFloat, which takes any C float
 * syntax, but humans and golden tests want "42" not "4.2e+01". Integral
 * values below 2^53 are exact, so print them as integers; everything else
 * gets the shortest %g that round-trips. */
static void fmt_double(double v, char *out, size_t cap)
{
    if (isnan(v)) {
        snprintf(out, cap, "NaN");
    } else if (isinf(v)) {
        snprintf(out, cap, v > 0 ? "+Inf" : "-Inf");
    } else if (v == 0) {
        snprintf(out, cap, "0"); /* also folds -0 */
    } else if (fabs(v) < 9007199254740992.0 && v == floor(v)) {
        snprintf(out, cap, "%.0f", v);
    } else {
        for (int prec = 15; prec <= 17; prec++) {
            snprintf(out, cap, "%.*g", prec, v);
            if (strtod(out, NULL) == v) {
                break;
            }
        }
    }
}

/* ---- writer --------------------------------------------------------------- */

static void w_append(tm_metrics_writer *w, const char *s, size_t n)
{
    if (w->oom) {
        return;
    }
    if (w->len + n + 1 > w->cap) {
        size_t cap = w->cap ? w->cap : TM_METRICS_INITIAL_CAP;
        while (w->len + n + 1 > cap) {
            cap *= 2;
        }
        char *nb = realloc(w->buf, cap);
        if (nb == NULL) {
            w->oom = 1;
            return;
        }
        w->buf = nb;
        w->cap = cap;
    }
    memcpy(w->buf + w->len, s, n);
    w->len += n;
    w->buf[w->len] = '\0';
}

static void w_puts(tm_metrics_writer *w, const char *s)
{
    w_append(w, s, strlen(s));
}

/* HELP text escapes only backslash and newline (format 0.0.4). */
static void w_help(tm_metrics_writer *w, const char *help)
{
    for (const char *p = help; *p != '\0'; p++) {
        if (*p == '\\') {
            w_puts(w, "\\\\");
        } else if (*p == '\n') {
            w_puts(w, "\\n");
        } else {
            w_append(w, p, 1);
        }
    }
}

static const char *type_name(tm_metric_type t)
{
    switch (t) {
    case TM_METRIC_COUNTER:
        return "counter";
    case TM_METRIC_GAUGE:
        return "gauge";
    case TM_METRIC_HISTOGRAM:
        return "histogram";
    }
    return "untyped";
}

void tm_metrics_write_family(tm_metrics_writer *w, const char *name, tm_metric_type type,
                             const char *help)
{
    if (!valid_name(name, 1)) {
        tm_warn("metrics", "event=bad_family name=\"%s\"", name ? name : "(null)");
        return;
    }
    w_puts(w, "# HELP ");
    w_puts(w, name);
    w_puts(w, " ");
    w_help(w, help ? help : "");
    w_puts(w, "\n# TYPE ");
    w_puts(w, name);
    w_puts(w, " ");
    w_puts(w, type_name(type));
    w_puts(w, "\n");
}

/* name{labels[,extra]} value\n; extra is e.g. le="0.5" for buckets. */
static void w_sample(tm_metrics_writer *w, const char *name, const char *suffix, const char *labels,
                     const char *extra, double value)
{
    char num[64];
    int has_labels = labels != NULL && labels[0] != '\0';
    int has_extra = extra != NULL && extra[0] != '\0';

    w_puts(w, name);
    if (suffix != NULL) {
        w_puts(w, suffix);
    }
    if (has_labels || has_extra) {
        w_puts(w, "{");
        if (has_labels) {
            w_puts(w, labels);
        }
        if (has_labels && has_extra) {
            w_puts(w, ",");
        }
        if (has_extra) {
            w_puts(w, extra);
        }
        w_puts(w, "}");
    }
    fmt_double(value, num, sizeof(num));
    w_puts(w, " ");
    w_puts(w, num);
    w_puts(w, "\n");
}

void tm_metrics_write_sample(tm_metrics_writer *w, const char *name, const char *labels,
                             double value)
{
    if (!valid_name(name, 1)) {
        tm_warn("metrics", "event=bad_sample name=\"%s\"", name ? name : "(null)");
        return;
    }
    w_sample(w, name, NULL, labels, NULL, value);
}

/* Returns the escaped length of in (without NUL). */
static size_t escaped_len(const char *in)
{
    size_t n = 0;
    for (const char *p = in; *p != '\0'; p++) {
        n += (*p == '\\' || *p == '"' || *p == '\n') ? 2 : 1;
    }
    return n;
}

char *tm_metrics_escape(const char *in, char *out, size_t cap)
{
    size_t o = 0;
    if (cap == 0) {
        return out;
    }
    for (const char *p = in; *p != '\0'; p++) {
        const char *rep = NULL;
        char one[2] = {*p, '\0'};
        if (*p == '\\') {
            rep = "\\\\";
        } else if (*p == '"') {
            rep = "\\\"";
        } else if (*p == '\n') {
            rep = "\\n";
        } else {
            rep = one;
        }
        size_t n = strlen(rep);
        /* Truncate whole escapes only: a dangling backslash would swallow
         * the closing quote and corrupt the whole exposition. */
        if (o + n + 1 > cap) {
            break;
        }
        memcpy(out + o, rep, n);
        o += n;
    }
    out[o] = '\0';
    return out;
}

/* ---- atomics on doubles ------------------------------------------------- */

static uint64_t d2u(double d)
{
    uint64_t u;
    memcpy(&u, &d, sizeof(u));
    return u;
}

static double u2d(uint64_t u)
{
    double d;
    memcpy(&d, &u, sizeof(d));
    return d;
}

static void atomic_add_double(_Atomic uint64_t *p, double v)
{
    uint64_t old = atomic_load_explicit(p, memory_order_relaxed);
    uint64_t new;
    do {
        new = d2u(u2d(old) + v);
    } while (!atomic_compare_exchange_weak_explicit(p, &old, new, memory_order_relaxed,
                                                    memory_order_relaxed));
}

/* ---- registry ----------------------------------------------------------- */

int tm_metrics_new(tm_metrics **out)
{
    tm_metrics *m = calloc(1, sizeof(*m));
    if (m == NULL) {
        return TM_ENOMEM;
    }
    pthread_mutex_init(&m->mu, NULL);
    *out = m;
    return TM_OK;
}

static void child_free(tm_metric_child *c, size_t n_values)
{
    if (c == NULL) {
        return;
    }
    if (c->values != NULL) {
        for (size_t i = 0; i < n_values; i++) {
            free(c->values[i]);
        }
    }
    free(c->values);
    free(c->labels);
    free((void *)c->counts);
    free(c);
}

static void family_free(tm_metric *f)
{
    if (f == NULL) {
        return;
    }
    for (size_t i = 0; i < f->n_children; i++) {
        child_free(f->children[i], f->n_labels);
    }
    free(f->children);
    free(f->table);
    if (f->labelnames != NULL) {
        for (size_t i = 0; i < f->n_labels; i++) {
            free(f->labelnames[i]);
        }
    }
    free(f->labelnames);
    free(f->buckets);
    free(f->name);
    free(f->help);
    pthread_mutex_destroy(&f->mu);
    free(f);
}

void tm_metrics_free(tm_metrics *m)
{
    if (m == NULL) {
        return;
    }
    for (size_t i = 0; i < m->n_families; i++) {
        family_free(m->families[i]);
    }
    free(m->families);
    free(m->collectors);
    pthread_mutex_destroy(&m->mu);
    free(m);
}

/* Split "a,b,c" into validated, unique label names. Spaces around commas are
 * tolerated ("method, code") because that is how people type lists. */
static int parse_labelnames(tm_metric *f, const char *spec)
{
    if (spec == NULL || *spec == '\0') {
        return TM_OK;
    }
    size_t n = 1;
    for (const char *p = spec; *p != '\0'; p++) {
        n += *p == ',';
    }
    f->labelnames = calloc(n, sizeof(char *));
    if (f->labelnames == NULL) {
        return TM_ENOMEM;
    }
    const char *p = spec;
    for (size_t i = 0; i < n; i++) {
        const char *end = strchr(p, ',');
        if (end == NULL) {
            end = p + strlen(p);
        }
        while (p < end && *p == ' ') {
            p++;
        }
        const char *e = end;
        while (e > p && e[-1] == ' ') {
            e--;
        }
        char *name = strndup(p, (size_t)(e - p));
        if (name == NULL) {
            return TM_ENOMEM;
        }
        f->labelnames[f->n_labels++] = name;
        /* "__" is reserved for Prometheus internals; "le" is the bucket
         * label a histogram adds itself. */
        if (!valid_name(name, 0) || strncmp(name, "__", 2) == 0 ||
            (f->type == TM_METRIC_HISTOGRAM && strcmp(name, "le") == 0)) {
            return TM_EINVAL;
        }
        for (size_t j = 0; j < i; j++) {
            if (strcmp(f->labelnames[j], name) == 0) {
                return TM_EINVAL;
            }
        }
        p = *end ? end + 1 : end;
    }
    return TM_OK;
}

static int set_buckets(tm_metric *f, const double *buckets, size_t n)
{
    if (f->type != TM_METRIC_HISTOGRAM) {
        return (buckets == NULL && n == 0) ? TM_OK : TM_EINVAL;
    }
    if (n > 0 && buckets == NULL) {
        return TM_EINVAL;
    }
    /* A trailing +Inf is accepted and dropped: it is always rendered. */
    if (n > 0 && isinf(buckets[n - 1]) && buckets[n - 1] > 0) {
        n--;
    }
    for (size_t i = 0; i < n; i++) {
        if (!isfinite(buckets[i]) || (i > 0 && buckets[i] <= buckets[i - 1])) {
            return TM_EINVAL;
        }
    }
    if (n > 0) {
        f->buckets = malloc(n * sizeof(double));
        if (f->buckets == NULL) {
            return TM_ENOMEM;
        }
        memcpy(f->buckets, buckets, n * sizeof(double));
    }
    f->n_buckets = n;
    return TM_OK;
}

static int find_family(tm_metrics *m, const char *name)
{
    for (size_t i = 0; i < m->n_families; i++) {
        if (strcmp(m->families[i]->name, name) == 0) {
            return 1;
        }
    }
    return 0;
}

int tm_metrics_add(tm_metrics *m, tm_metric **out, tm_metric_type type, const char *name,
                   const char *help, const char *labelnames, const double *buckets,
                   size_t n_buckets)
{
    if (m == NULL || out == NULL || !valid_name(name, 1) ||
        (type != TM_METRIC_COUNTER && type != TM_METRIC_GAUGE && type != TM_METRIC_HISTOGRAM)) {
        return TM_EINVAL;
    }
    tm_metric *f = calloc(1, sizeof(*f));
    if (f == NULL) {
        return TM_ENOMEM;
    }
    pthread_mutex_init(&f->mu, NULL);
    f->type = type;
    f->name = strdup(name);
    f->help = strdup(help ? help : "");
    int rc = (f->name == NULL || f->help == NULL) ? TM_ENOMEM : TM_OK;
    if (rc == TM_OK) {
        rc = parse_labelnames(f, labelnames);
    }
    if (rc == TM_OK) {
        rc = set_buckets(f, buckets, n_buckets);
    }
    if (rc != TM_OK) {
        family_free(f);
        return rc;
    }

    pthread_mutex_lock(&m->mu);
    if (find_family(m, name)) {
        rc = TM_EEXIST;
    } else if (m->n_families == m->cap_families) {
        size_t cap = m->cap_families ? m->cap_families * 2 : 16;
        tm_metric **nf = realloc(m->families, cap * sizeof(*nf));
        if (nf == NULL) {
            rc = TM_ENOMEM;
        } else {
            m->families = nf;
            m->cap_families = cap;
        }
    }
    if (rc == TM_OK) {
        m->families[m->n_families++] = f;
    }
    pthread_mutex_unlock(&m->mu);
    if (rc != TM_OK) {
        family_free(f);
        return rc;
    }

    /* An unlabelled family has exactly one child; create it now so the
     * series is exported as 0 from the first scrape (absent() then means
     * "process not scraped", never "nothing happened yet"). */
    *out = f;
    if (f->n_labels == 0 && tm_metric_child_get(f, NULL, 0) == NULL) {
        /* The family stays registered; a later child_get may still succeed. */
        return TM_ENOMEM;
    }
    return TM_OK;
}

/* ---- children ----------------------------------------------------------- */

/* FNV-1a over the values, with a separator byte so ("ab","c") != ("a","bc"). */
static uint64_t hash_values(const char *const *values, size_t n)
{
    uint64_t h = 1469598103934665603ULL;
    for (size_t i = 0; i < n; i++) {
        for (const unsigned char *p = (const unsigned char *)values[i]; *p != '\0'; p++) {
            h = (h ^ *p) * 1099511628211ULL;
        }
        h = (h ^ 0xff) * 1099511628211ULL;
    }
    return h;
}

static int values_equal(tm_metric_child *c, const char *const *values, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        if (strcmp(c->values[i], values[i]) != 0) {
            return 0;
        }
    }
    return 1;
}

static tm_metric_child *child_new(tm_metric *f, const char *const *values, size_t n, uint64_t hash)
{
    tm_metric_child *c = calloc(1, sizeof(*c));
    if (c == NULL) {
        return NULL;
    }
    c->family = f;
    c->hash = hash;
    c->values = calloc(n ? n : 1, sizeof(char *));
    size_t len = 1;
    for (size_t i = 0; i < n; i++) {
        len += strlen(f->labelnames[i]) + escaped_len(values[i]) + 4; /* ="", */
    }
    c->labels = malloc(len);
    if (f->type == TM_METRIC_HISTOGRAM) {
        c->counts = calloc(f->n_buckets + 1, sizeof(*c->counts));
    }
    if (c->values == NULL || c->labels == NULL ||
        (f->type == TM_METRIC_HISTOGRAM && c->counts == NULL)) {
        child_free(c, 0);
        return NULL;
    }
    size_t o = 0;
    c->labels[0] = '\0';
    for (size_t i = 0; i < n; i++) {
        if ((c->values[i] = strdup(values[i])) == NULL) {
            child_free(c, n);
            return NULL;
        }
        o += (size_t)snprintf(c->labels + o, len - o, "%s%s=\"", i ? "," : "", f->labelnames[i]);
        tm_metrics_escape(values[i], c->labels + o, len - o);
        o += strlen(c->labels + o);
        o += (size_t)snprintf(c->labels + o, len - o, "\"");
    }
    return c;
}

/* Called with f->mu held. Doubles the table when it is as full as it is wide. */
static int table_grow(tm_metric *f)
{
    size_t n = f->n_table ? f->n_table * 2 : 8;
    tm_metric_child **t = calloc(n, sizeof(*t));
    if (t == NULL) {
        return TM_ENOMEM;
    }
    for (size_t i = 0; i < f->n_children; i++) {
        tm_metric_child *c = f->children[i];
        c->next = t[c->hash & (n - 1)];
        t[c->hash & (n - 1)] = c;
    }
    free(f->table);
    f->table = t;
    f->n_table = n;
    return TM_OK;
}

tm_metric_child *tm_metric_child_get(tm_metric *f, const char *const *values, size_t n)
{
    if (f == NULL || n != f->n_labels || (n > 0 && values == NULL)) {
        return NULL;
    }
    for (size_t i = 0; i < n; i++) {
        if (values[i] == NULL) {
            return NULL;
        }
    }
    uint64_t h = hash_values(values, n);
    tm_metric_child *c = NULL;

    pthread_mutex_lock(&f->mu);
    if (f->n_table > 0) {
        for (c = f->table[h & (f->n_table - 1)]; c != NULL; c = c->next) {
            if (c->hash == h && values_equal(c, values, n)) {
                break;
            }
        }
    }
    if (c == NULL) {
        if (f->n_children == f->cap_children) {
            size_t cap = f->cap_children ? f->cap_children * 2 : 8;
            tm_metric_child **nc = realloc(f->children, cap * sizeof(*nc));
            if (nc == NULL) {
                goto out;
            }
            f->children = nc;
            f->cap_children = cap;
        }
        if (f->n_children >= f->n_table && table_grow(f) != TM_OK) {
            goto out;
        }
        if ((c = child_new(f, values, n, h)) == NULL) {
            goto out;
        }
        f->children[f->n_children++] = c;
        c->next = f->table[h & (f->n_table - 1)];
        f->table[h & (f->n_table - 1)] = c;
    }
out:
    pthread_mutex_unlock(&f->mu);
    return c;
}

/* ---- hot path ----------------------------------------------------------- */

/* A NULL child (lookup failed for lack of memory or a label-count bug) is a
 * no-op rather than a crash: losing a sample beats losing the coordinator. */
void tm_metric_inc(tm_metric_child *c, double v)
{
    if (c == NULL || c->family->type == TM_METRIC_HISTOGRAM) {
        return;
    }
    /* Counters only go up; a negative or NaN add would break rate(). */
    if (c->family->type == TM_METRIC_COUNTER && !(v >= 0)) {
        return;
    }
    atomic_add_double(&c->value, v);
}

void tm_metric_set(tm_metric_child *c, double v)
{
    if (c == NULL || c->family->type != TM_METRIC_GAUGE) {
        return;
    }
    atomic_store_explicit(&c->value, d2u(v), memory_order_relaxed);
}

void tm_metric_observe(tm_metric_child *c, double v)
{
    if (c == NULL || c->family->type != TM_METRIC_HISTOGRAM || isnan(v)) {
        return;
    }
    tm_metric *f = c->family;
    /* Buckets are few (~10-20): a linear scan beats a branchy bsearch. */
    size_t i = 0;
    while (i < f->n_buckets && v > f->buckets[i]) {
        i++;
    }
    atomic_fetch_add_explicit(&c->counts[i], 1, memory_order_relaxed);
    atomic_add_double(&c->sum, v);
}

/* ---- rendering ---------------------------------------------------------- */

static void render_histogram(tm_metrics_writer *w, tm_metric *f, tm_metric_child *c)
{
    char le[80], num[64];
    uint64_t cum = 0;
    for (size_t i = 0; i <= f->n_buckets; i++) {
        cum += atomic_load_explicit(&c->counts[i], memory_order_relaxed);
        fmt_double(i < f->n_buckets ? f->buckets[i] : INFINITY, num, sizeof(num));
        snprintf(le, sizeof(le), "le=\"%s\"", num);
        w_sample(w, f->name, "_bucket", c->labels, le, (double)cum);
    }
    /* _count is the +Inf bucket by construction, so the two always agree
     * even when observations race with the scrape. */
    w_sample(w, f->name, "_sum", c->labels, NULL,
             u2d(atomic_load_explicit(&c->sum, memory_order_relaxed)));
    w_sample(w, f->name, "_count", c->labels, NULL, (double)cum);
}

static void render_family(tm_metrics_writer *w, tm_metric *f)
{
    pthread_mutex_lock(&f->mu);
    /* A labelled family with no children yet has no series; like the Go
     * client, leave it out rather than print a bare HELP/TYPE. */
    if (f->n_children > 0) {
        tm_metrics_write_family(w, f->name, f->type, f->help);
        for (size_t i = 0; i < f->n_children; i++) {
            tm_metric_child *c = f->children[i];
            if (f->type == TM_METRIC_HISTOGRAM) {
                render_histogram(w, f, c);
            } else {
                w_sample(w, f->name, NULL, c->labels, NULL,
                         u2d(atomic_load_explicit(&c->value, memory_order_relaxed)));
            }
        }
    }
    pthread_mutex_unlock(&f->mu);
}

int tm_metrics_add_collector(tm_metrics *m, tm_metrics_collect_fn fn, void *arg)
{
    if (m == NULL || fn == NULL) {
        return TM_EINVAL;
    }
    int rc = TM_OK;
    pthread_mutex_lock(&m->mu);
    if (m->n_collectors == m->cap_collectors) {
        size_t cap = m->cap_collectors ? m->cap_collectors * 2 : 4;
        tm_collector *nc = realloc(m->collectors, cap * sizeof(*nc));
        if (nc == NULL) {
            rc = TM_ENOMEM;
        } else {
            m->collectors = nc;
            m->cap_collectors = cap;
        }
    }
    if (rc == TM_OK) {
        m->collectors[m->n_collectors].fn = fn;
        m->collectors[m->n_collectors].arg = arg;
        m->n_collectors++;
    }
    pthread_mutex_unlock(&m->mu);
    return rc;
}

int tm_metrics_render(tm_metrics *m, char **out, size_t *len)
{
    if (m == NULL || out == NULL) {
        return TM_EINVAL;
    }
    tm_metrics_writer w = {0};
    w_append(&w, "", 0); /* an empty registry still renders "" */

    pthread_mutex_lock(&m->mu);
    for (size_t i = 0; i < m->n_families; i++) {
        render_family(&w, m->families[i]);
    }
    /* Collectors run outside the registry lock on a snapshot of the list:
     * they read other subsystems (catalog, agent table) and may be slow, and
     * must not block tm_metrics_add or deadlock if they declare something. */
    size_t n = m->n_collectors;
    tm_collector *cs = n ? malloc(n * sizeof(*cs)) : NULL;
    if (cs != NULL) {
        memcpy(cs, m->collectors, n * sizeof(*cs));
    } else if (n > 0) {
        w.oom = 1;
    }
    pthread_mutex_unlock(&m->mu);

    for (size_t i = 0; cs != NULL && i < n; i++) {
        cs[i].fn(&w, cs[i].arg);
    }
    free(cs);

    if (w.oom) {
        free(w.buf);
        return TM_ENOMEM;
    }
    *out = w.buf;
    if (len != NULL) {
        *len = w.len;
    }
    return TM_OK;
}
