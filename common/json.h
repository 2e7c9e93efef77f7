/*
 * json.h - the one JSON string writer the text outputs share (tidemarkctl,
 * tidemark-agent repo and log commands, the retention plan).
 */
#ifndef TM_JSON_H
#define TM_JSON_H

#include <stdio.h>

/* s as a JSON string ("..." with \", \\, \n, \r, \t and \u00XX escapes);
 * NULL as null. */
void tm_json_str(FILE *f, const char *s);

#endif
