/*
 * json.h - a small JSON reader for the Turso engine's HTTP answers (the
 * project has a JSON writer, common/json.h, but no reader, and the Platform
 * API and the libSQL remote protocol answer in JSON). Answers are parsed
 * whole into a tree; every byte is treated as hostile: depth and size are
 * bounded, strings are checked UTF-8 escapes, numbers keep their text.
 */
#ifndef TM_TURSO_JSON_H
#define TM_TURSO_JSON_H

#include <stddef.h>
#include <stdint.h>

#include "common/err.h"

typedef enum { TM_TJ_NULL, TM_TJ_BOOL, TM_TJ_NUM, TM_TJ_STR, TM_TJ_ARR, TM_TJ_OBJ } tm_tj_type;

typedef struct tm_tj tm_tj;
struct tm_tj {
    tm_tj_type type;
    char *key;    /* member name inside an object, else NULL */
    char *str;    /* TM_TJ_STR: the decoded string; TM_TJ_NUM: the number's text */
    size_t len;   /* bytes of str (a string may hold NUL) */
    int b;        /* TM_TJ_BOOL */
    tm_tj *child; /* first element or member */
    tm_tj *next;  /* next sibling */
    size_t n;     /* elements or members */
};

/* Parse len bytes; TM_EPROTO with the offset on malformed input. */
int tm_tj_parse(const char *buf, size_t len, tm_tj **out, tm_err *err);
void tm_tj_free(tm_tj *j);
/* Member key of an object, or NULL (also when o is NULL or not an object). */
const tm_tj *tm_tj_get(const tm_tj *o, const char *key);
/* Element i of an array, or NULL. */
const tm_tj *tm_tj_at(const tm_tj *a, size_t i);
/* The string of a TM_TJ_STR node, or NULL. */
const char *tm_tj_str(const tm_tj *j);
/* The value of a number, or of a string holding a decimal integer; def
 * otherwise. */
int64_t tm_tj_int(const tm_tj *j, int64_t def);

#endif
