/*
 * aof_resp.c - the RESP boundary scanner (see aof_resp.h). A byte-at-a-time
 * state machine, except that argument bodies are skipped by length.
 */
#include "agent/engines/redis/aof_resp.h"

#include <inttypes.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

/* Redis reads annotation lines into a 1024-byte buffer; longer is garbage. */
#define ANNOT_MAX 1024
/* "*<argc>" and "$<len>" lines: a sign-free decimal of at most 18 digits. */
#define NUM_MAX_DIGITS 18

enum {
    ST_UNIT,     /* expecting '*' or '#' */
    ST_ANNOT,    /* inside "#...", until '\r' */
    ST_ANNOT_LF, /* after the annotation's '\r' */
    ST_ARGC,     /* digits of "*<argc>" */
    ST_ARGC_LF,  /* after its '\r' */
    ST_DOLLAR,   /* expecting '$' */
    ST_LEN,      /* digits of "$<len>" */
    ST_LEN_LF,   /* after its '\r' */
    ST_BODY,     /* skipping the argument's bytes */
    ST_BODY_CR,  /* its closing "\r" */
    ST_BODY_LF,  /* its closing "\n" */
};

struct tm_aof_scan {
    int st;
    uint64_t off;      /* absolute offset of the next byte */
    uint64_t complete; /* after the last complete unit */
    uint64_t unit_start;
    uint64_t num; /* the number being read */
    int ndigits;
    uint64_t argc;   /* arguments left to read, this one included */
    uint64_t argi;   /* index of the current argument */
    uint64_t remain; /* body bytes left */
    char annot[ANNOT_MAX + 1];
    size_t annot_len;
    char name[8]; /* the first argument's first bytes (MULTI / EXEC) */
    size_t name_len;
    uint64_t name_full; /* its full length */
};

int tm_aof_scan_new(tm_aof_scan **out, uint64_t start_offset, tm_err *err)
{
    tm_aof_scan *s = calloc(1, sizeof(*s));
    if (s == NULL) {
        return tm_err_set(err, TM_ENOMEM, "aof scanner: out of memory");
    }
    s->st = ST_UNIT;
    s->off = s->complete = s->unit_start = start_offset;
    *out = s;
    return 0;
}

void tm_aof_scan_free(tm_aof_scan *s)
{
    free(s);
}

uint64_t tm_aof_scan_offset(const tm_aof_scan *s)
{
    return s->off;
}

uint64_t tm_aof_scan_complete(const tm_aof_scan *s)
{
    return s->complete;
}

int tm_aof_scan_partial(const tm_aof_scan *s)
{
    if (s->st == ST_UNIT) {
        return 0;
    }
    return s->st == ST_ANNOT || s->st == ST_ANNOT_LF ? TM_AOF_UNIT_ANNOTATION : TM_AOF_UNIT_COMMAND;
}

static int bad(tm_aof_scan *s, tm_err *err, const char *what, unsigned char c)
{
    return tm_err_set(err, TM_EPROTO,
                      "AOF is not valid RESP at offset %" PRIu64 " (unit at %" PRIu64
                      "): %s, found byte 0x%02x",
                      s->off, s->unit_start, what, c);
}

/* "#TS:<digits>" -> the time; anything else -> -1. */
static int64_t annot_ts(const char *a, size_t n)
{
    if (n < 5 || memcmp(a, "#TS:", 4) != 0 || n - 4 > NUM_MAX_DIGITS) {
        return -1;
    }
    int64_t v = 0;
    for (size_t i = 4; i < n; i++) {
        if (a[i] < '0' || a[i] > '9') {
            return -1;
        }
        v = v * 10 + (a[i] - '0');
    }
    return v;
}

static int unit_done(tm_aof_scan *s, tm_aof_unit_kind kind, tm_aof_unit_fn fn, void *arg,
                     tm_err *err)
{
    tm_aof_unit u = {.kind = kind, .start = s->unit_start, .end = s->off, .ts = -1};
    if (kind == TM_AOF_UNIT_ANNOTATION) {
        u.ts = annot_ts(s->annot, s->annot_len);
    } else if (s->name_full == s->name_len) {
        u.multi = s->name_len == 5 && strncasecmp(s->name, "multi", 5) == 0;
        u.exec = s->name_len == 4 && strncasecmp(s->name, "exec", 4) == 0;
    }
    s->complete = s->off;
    s->unit_start = s->off;
    s->st = ST_UNIT;
    return fn != NULL ? fn(arg, &u, err) : 0;
}

int tm_aof_scan_feed(tm_aof_scan *s, const void *buf, size_t len, tm_aof_unit_fn fn, void *arg,
                     tm_err *err)
{
    const unsigned char *p = buf;
    size_t i = 0;
    while (i < len) {
        if (s->st == ST_BODY) {
            /* Skip the body by length: the only state that spans many bytes. */
            size_t take = len - i;
            if (take > s->remain) {
                take = (size_t)s->remain;
            }
            if (s->argi == 0 && s->name_len < sizeof(s->name)) {
                size_t c = sizeof(s->name) - s->name_len;
                c = c < take ? c : take;
                memcpy(s->name + s->name_len, p + i, c);
                s->name_len += c;
            }
            i += take;
            s->off += take;
            s->remain -= take;
            if (s->remain == 0) {
                s->st = ST_BODY_CR;
            }
            continue;
        }
        unsigned char c = p[i];
        int rc = 0;
        switch (s->st) {
        case ST_UNIT:
            s->unit_start = s->off;
            if (c == '#') {
                s->st = ST_ANNOT;
                s->annot[0] = '#';
                s->annot_len = 1;
            } else if (c == '*') {
                s->st = ST_ARGC;
                s->num = 0;
                s->ndigits = 0;
            } else {
                return bad(s, err, "expected '*' (a command) or '#' (an annotation)", c);
            }
            break;
        case ST_ANNOT:
            if (c == '\r') {
                s->st = ST_ANNOT_LF;
            } else if (c == '\n') {
                return bad(s, err, "annotation line ends without \\r", c);
            } else if (s->annot_len >= ANNOT_MAX) {
                return bad(s, err, "annotation line longer than 1024 bytes", c);
            } else {
                s->annot[s->annot_len++] = (char)c;
            }
            break;
        case ST_ANNOT_LF:
            if (c != '\n') {
                return bad(s, err, "expected \\n after \\r", c);
            }
            s->off++;
            i++;
            rc = unit_done(s, TM_AOF_UNIT_ANNOTATION, fn, arg, err);
            if (rc != 0) {
                return rc;
            }
            continue;
        case ST_ARGC:
        case ST_LEN:
            if (c >= '0' && c <= '9') {
                if (++s->ndigits > NUM_MAX_DIGITS) {
                    return bad(s, err, "number too long", c);
                }
                s->num = s->num * 10 + (uint64_t)(c - '0');
            } else if (c == '\r' && s->ndigits > 0) {
                s->st = s->st == ST_ARGC ? ST_ARGC_LF : ST_LEN_LF;
            } else {
                return bad(s, err, s->st == ST_ARGC ? "bad argument count" : "bad argument length",
                           c);
            }
            break;
        case ST_ARGC_LF:
            if (c != '\n') {
                return bad(s, err, "expected \\n after \\r", c);
            }
            if (s->num == 0) {
                return bad(s, err, "a command with no arguments", c);
            }
            s->argc = s->num;
            s->argi = 0;
            s->name_len = 0;
            s->name_full = 0;
            s->st = ST_DOLLAR;
            break;
        case ST_DOLLAR:
            if (c != '$') {
                return bad(s, err, "expected '$' (an argument)", c);
            }
            s->st = ST_LEN;
            s->num = 0;
            s->ndigits = 0;
            break;
        case ST_LEN_LF:
            if (c != '\n') {
                return bad(s, err, "expected \\n after \\r", c);
            }
            s->remain = s->num;
            if (s->argi == 0) {
                s->name_full = s->num;
            }
            s->st = s->remain > 0 ? ST_BODY : ST_BODY_CR;
            break;
        case ST_BODY_CR:
            if (c != '\r') {
                return bad(s, err, "argument longer than its declared length", c);
            }
            s->st = ST_BODY_LF;
            break;
        case ST_BODY_LF:
            if (c != '\n') {
                return bad(s, err, "expected \\n after an argument", c);
            }
            s->off++;
            i++;
            if (++s->argi == s->argc) {
                rc = unit_done(s, TM_AOF_UNIT_COMMAND, fn, arg, err);
                if (rc != 0) {
                    return rc;
                }
            } else {
                s->st = ST_DOLLAR;
            }
            continue;
        default:
            return tm_err_set(err, TM_EINTERNAL, "aof scanner: bad state %d", s->st);
        }
        s->off++;
        i++;
    }
    return 0;
}
