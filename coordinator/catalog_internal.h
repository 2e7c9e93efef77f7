/*
 * catalog_internal.h - what the catalog's own files share (not for the rest
 * of the coordinator, which only sees catalog.h).
 */
#ifndef TM_CATALOG_INTERNAL_H
#define TM_CATALOG_INTERNAL_H

#include <sqlite3.h>

#include "coordinator/catalog.h"

/* Take the catalog lock and get the connection; release with unlock. */
sqlite3 *tm_catalog_lock(tm_catalog *c);
void tm_catalog_unlock(tm_catalog *c);
/* "catalog <path>: <what>: <sqlite message>; <what to do>" with the TM_E* code. */
int tm_catalog_sql_fail(tm_catalog *c, tm_err *err, int rc, const char *what);

/* Run sql with ?1 = a, ?2 = b (text; NULL = ""), ?3 = i1, ?4 = i2, collecting
 * column 0 blobs unpacked with d (unreadable records are skipped). */
struct ProtobufCMessageDescriptor;
int tm_catalog_query_records(tm_catalog *c, const char *sql, const char *a, const char *b,
                             int64_t i1, int64_t i2, const struct ProtobufCMessageDescriptor *d,
                             void ***out, size_t *n, tm_err *err);

#endif
