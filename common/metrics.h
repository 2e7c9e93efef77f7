/*
 * metrics.h - a small Prometheus registry and the text exposition format 0.0.4.
 *
 * Families are declared once at start-up; a labelled child is looked up (or
 * created) by its label values and the returned pointer stays valid for the
 * registry's life, so hot paths resolve a child once and then only do atomic
 * adds. Collectors fill values that live elsewhere (agents by state, catalog
 * size) at scrape time.
 */
#ifndef TM_METRICS_H
#define TM_METRICS_H

#include <stddef.h>
#include <stdint.h>

typedef struct tm_metrics tm_metrics;
typedef struct tm_metric tm_metric;             /* a family */
typedef struct tm_metric_child tm_metric_child; /* one label set of a family */
typedef struct tm_metrics_writer tm_metrics_writer;

typedef enum { TM_METRIC_COUNTER, TM_METRIC_GAUGE, TM_METRIC_HISTOGRAM } tm_metric_type;

int tm_metrics_new(tm_metrics **out);
void tm_metrics_free(tm_metrics *m);

/* Declare a family. labelnames: comma-separated ("method,code") or NULL.
 * buckets: histogram upper bounds, ascending (NULL for other types). */
int tm_metrics_add(tm_metrics *m, tm_metric **out, tm_metric_type type, const char *name,
                   const char *help, const char *labelnames, const double *buckets,
                   size_t n_buckets);

/* Child for the given label values (count must match the family's labels). */
tm_metric_child *tm_metric_child_get(tm_metric *f, const char *const *values, size_t n);
void tm_metric_inc(tm_metric_child *c, double v);     /* counter / gauge */
void tm_metric_set(tm_metric_child *c, double v);     /* gauge */
void tm_metric_observe(tm_metric_child *c, double v); /* histogram */

/* Collectors run at render time and write whole families themselves. */
typedef void (*tm_metrics_collect_fn)(tm_metrics_writer *w, void *arg);
int tm_metrics_add_collector(tm_metrics *m, tm_metrics_collect_fn fn, void *arg);
void tm_metrics_write_family(tm_metrics_writer *w, const char *name, tm_metric_type type,
                             const char *help);
/* labels: already formatted `a="x",b="y"` (values escaped by the caller with
 * tm_metrics_escape) or NULL. */
void tm_metrics_write_sample(tm_metrics_writer *w, const char *name, const char *labels,
                             double value);
/* Escape a label value (\\, \", \n) into out; returns out. */
char *tm_metrics_escape(const char *in, char *out, size_t cap);

/* Render all families and collectors; *out is malloc'd text. */
int tm_metrics_render(tm_metrics *m, char **out, size_t *len);

#endif
