/*
 * json.c - the JSON reader (json.h): recursive descent with a depth bound.
 */
#include "agent/engines/turso/json.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#define MAX_DEPTH 64

typedef struct parser {
    const char *p, *end, *start;
    tm_err *err;
} parser;

static int fail(parser *ps, const char *what)
{
    return tm_err_set(ps->err, TM_EPROTO, "malformed JSON at byte %zu: %s",
                      (size_t)(ps->p - ps->start), what);
}

static void ws(parser *ps)
{
    while (ps->p < ps->end &&
           (*ps->p == ' ' || *ps->p == '\t' || *ps->p == '\n' || *ps->p == '\r')) {
        ps->p++;
    }
}

static int hex4(parser *ps, uint32_t *out)
{
    if (ps->end - ps->p < 4) {
        return fail(ps, "short \\u escape");
    }
    uint32_t v = 0;
    for (int i = 0; i < 4; i++) {
        char c = *ps->p++;
        v <<= 4;
        if (c >= '0' && c <= '9') {
            v |= (uint32_t)(c - '0');
        } else if (c >= 'a' && c <= 'f') {
            v |= (uint32_t)(c - 'a' + 10);
        } else if (c >= 'A' && c <= 'F') {
            v |= (uint32_t)(c - 'A' + 10);
        } else {
            return fail(ps, "bad \\u escape");
        }
    }
    *out = v;
    return TM_OK;
}

/* A string after its opening quote; decoded into a malloc'd buffer. */
static int string(parser *ps, char **out, size_t *outlen)
{
    /* Decoded is never longer than the encoded text. */
    const char *q = ps->p;
    while (q < ps->end && *q != '"') {
        q += *q == '\\' && q + 1 < ps->end ? 2 : 1;
    }
    if (q >= ps->end) {
        return fail(ps, "unterminated string");
    }
    char *buf = malloc((size_t)(q - ps->p) + 1);
    if (buf == NULL) {
        return tm_err_set(ps->err, TM_ENOMEM, "out of memory");
    }
    size_t n = 0;
    while (*ps->p != '"') {
        unsigned char c = (unsigned char)*ps->p++;
        if (c < 0x20) {
            free(buf);
            return fail(ps, "control character in string");
        }
        if (c != '\\') {
            buf[n++] = (char)c;
            continue;
        }
        char e = *ps->p++;
        static const char from[] = "\"\\/bfnrt", to[] = "\"\\/\b\f\n\r\t";
        const char *k = e != '\0' ? strchr(from, e) : NULL;
        if (k != NULL) {
            buf[n++] = to[k - from];
            continue;
        }
        uint32_t cp;
        if (e != 'u' || hex4(ps, &cp) != TM_OK) {
            free(buf);
            return e != 'u' ? fail(ps, "bad escape") : ps->err->code;
        }
        if (cp >= 0xD800 && cp <= 0xDBFF) {
            uint32_t lo;
            if (ps->end - ps->p < 6 || ps->p[0] != '\\' || ps->p[1] != 'u') {
                free(buf);
                return fail(ps, "lone surrogate");
            }
            ps->p += 2;
            if (hex4(ps, &lo) != TM_OK || lo < 0xDC00 || lo > 0xDFFF) {
                free(buf);
                return fail(ps, "bad surrogate pair");
            }
            cp = 0x10000 + ((cp - 0xD800) << 10) + (lo - 0xDC00);
        }
        /* A \u escape is 6 bytes of input, at most 4 of output (a pair: 12, 4). */
        if (cp < 0x80) {
            buf[n++] = (char)cp;
        } else if (cp < 0x800) {
            buf[n++] = (char)(0xC0 | (cp >> 6));
            buf[n++] = (char)(0x80 | (cp & 0x3F));
        } else if (cp < 0x10000) {
            buf[n++] = (char)(0xE0 | (cp >> 12));
            buf[n++] = (char)(0x80 | ((cp >> 6) & 0x3F));
            buf[n++] = (char)(0x80 | (cp & 0x3F));
        } else {
            buf[n++] = (char)(0xF0 | (cp >> 18));
            buf[n++] = (char)(0x80 | ((cp >> 12) & 0x3F));
            buf[n++] = (char)(0x80 | ((cp >> 6) & 0x3F));
            buf[n++] = (char)(0x80 | (cp & 0x3F));
        }
    }
    ps->p++;
    buf[n] = '\0';
    *out = buf;
    *outlen = n;
    return TM_OK;
}

static int value(parser *ps, tm_tj *j, int depth);

static int container(parser *ps, tm_tj *j, int depth, char close)
{
    ps->p++;
    ws(ps);
    tm_tj **tail = &j->child;
    if (ps->p < ps->end && *ps->p == close) {
        ps->p++;
        return TM_OK;
    }
    for (;;) {
        tm_tj *c = calloc(1, sizeof(*c));
        if (c == NULL) {
            return tm_err_set(ps->err, TM_ENOMEM, "out of memory");
        }
        *tail = c;
        tail = &c->next;
        j->n++;
        ws(ps);
        if (close == '}') {
            size_t kl;
            if (ps->p >= ps->end || *ps->p != '"') {
                return fail(ps, "expected a member name");
            }
            ps->p++;
            int rc = string(ps, &c->key, &kl);
            if (rc != TM_OK) {
                return rc;
            }
            ws(ps);
            if (ps->p >= ps->end || *ps->p != ':') {
                return fail(ps, "expected ':'");
            }
            ps->p++;
        }
        int rc = value(ps, c, depth + 1);
        if (rc != TM_OK) {
            return rc;
        }
        ws(ps);
        if (ps->p < ps->end && *ps->p == ',') {
            ps->p++;
            continue;
        }
        if (ps->p < ps->end && *ps->p == close) {
            ps->p++;
            return TM_OK;
        }
        return fail(ps, close == '}' ? "expected ',' or '}'" : "expected ',' or ']'");
    }
}

static int literal(parser *ps, const char *word)
{
    size_t n = strlen(word);
    if ((size_t)(ps->end - ps->p) < n || memcmp(ps->p, word, n) != 0) {
        return fail(ps, "unknown literal");
    }
    ps->p += n;
    return TM_OK;
}

static int value(parser *ps, tm_tj *j, int depth)
{
    if (depth > MAX_DEPTH) {
        return fail(ps, "nested too deep");
    }
    ws(ps);
    if (ps->p >= ps->end) {
        return fail(ps, "unexpected end");
    }
    char c = *ps->p;
    if (c == '{' || c == '[') {
        j->type = c == '{' ? TM_TJ_OBJ : TM_TJ_ARR;
        return container(ps, j, depth, c == '{' ? '}' : ']');
    }
    if (c == '"') {
        j->type = TM_TJ_STR;
        ps->p++;
        return string(ps, &j->str, &j->len);
    }
    if (c == 't' || c == 'f') {
        j->type = TM_TJ_BOOL;
        j->b = c == 't';
        return literal(ps, c == 't' ? "true" : "false");
    }
    if (c == 'n') {
        j->type = TM_TJ_NULL;
        return literal(ps, "null");
    }
    const char *s = ps->p;
    /* (strchr finds the terminator too: a NUL byte is not a digit.) */
    while (ps->p < ps->end && *ps->p != '\0' && strchr("+-0123456789.eE", *ps->p) != NULL) {
        ps->p++;
    }
    if (ps->p == s || ps->p - s > 64) {
        return fail(ps, "expected a value");
    }
    j->type = TM_TJ_NUM;
    j->len = (size_t)(ps->p - s);
    j->str = strndup(s, j->len);
    return j->str != NULL ? TM_OK : tm_err_set(ps->err, TM_ENOMEM, "out of memory");
}

int tm_tj_parse(const char *buf, size_t len, tm_tj **out, tm_err *err)
{
    *out = NULL;
    parser ps = {.p = buf, .end = buf + len, .start = buf, .err = err};
    tm_tj *j = calloc(1, sizeof(*j));
    if (j == NULL) {
        return tm_err_set(err, TM_ENOMEM, "out of memory");
    }
    int rc = value(&ps, j, 0);
    if (rc == TM_OK) {
        ws(&ps);
        if (ps.p != ps.end) {
            rc = fail(&ps, "trailing bytes");
        }
    }
    if (rc != TM_OK) {
        tm_tj_free(j);
        return rc;
    }
    *out = j;
    return TM_OK;
}

void tm_tj_free(tm_tj *j)
{
    while (j != NULL) {
        tm_tj *next = j->next;
        tm_tj_free(j->child);
        free(j->key);
        free(j->str);
        free(j);
        j = next;
    }
}

const tm_tj *tm_tj_get(const tm_tj *o, const char *key)
{
    if (o == NULL || o->type != TM_TJ_OBJ) {
        return NULL;
    }
    for (const tm_tj *c = o->child; c != NULL; c = c->next) {
        if (strcmp(c->key, key) == 0) {
            return c;
        }
    }
    return NULL;
}

const tm_tj *tm_tj_at(const tm_tj *a, size_t i)
{
    if (a == NULL || a->type != TM_TJ_ARR) {
        return NULL;
    }
    const tm_tj *c = a->child;
    while (c != NULL && i-- > 0) {
        c = c->next;
    }
    return c;
}

const char *tm_tj_str(const tm_tj *j)
{
    return j != NULL && j->type == TM_TJ_STR ? j->str : NULL;
}

int64_t tm_tj_int(const tm_tj *j, int64_t def)
{
    if (j == NULL || (j->type != TM_TJ_NUM && j->type != TM_TJ_STR) || j->str[0] == '\0') {
        return def;
    }
    char *end = NULL;
    errno = 0;
    long long v = strtoll(j->str, &end, 10);
    if (errno == 0 && end != NULL && (*end == '\0' || (j->type == TM_TJ_NUM && *end == '.'))) {
        return v;
    }
    return def;
}
