/*
 * s3_xml.c - just enough XML for S3 responses (ListObjectsV2,
 * InitiateMultipartUpload, CompleteMultipartUpload, Error, DeleteResult).
 *
 * Not a parser: it finds <tag>...</tag> spans, tolerating attributes,
 * namespaces on the root element, the XML declaration and whitespace, and
 * decodes the five named entities and numeric character references. S3 never
 * nests an element inside one of the same name in these documents, so the
 * first closing tag ends the element.
 */
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "common/storage/s3/s3.h"

int s3_xml_find(const char *p, const char *end, const char *tag, const char **content, size_t *len,
                const char **next)
{
    size_t tl = strlen(tag);
    while (p < end) {
        const char *lt = memchr(p, '<', (size_t)(end - p));
        if (lt == NULL || (size_t)(end - lt) < tl + 2) {
            return 0;
        }
        const char *q = lt + 1;
        if (strncmp(q, tag, tl) == 0 && (q[tl] == '>' || q[tl] == ' ' || q[tl] == '/' ||
                                         q[tl] == '\t' || q[tl] == '\r' || q[tl] == '\n')) {
            const char *gt = memchr(q, '>', (size_t)(end - q));
            if (gt == NULL) {
                return 0;
            }
            if (gt[-1] == '/') { /* <Tag/>: empty element */
                *content = gt;
                *len = 0;
                *next = gt + 1;
                return 1;
            }
            const char *c = gt + 1;
            /* find "</tag>" */
            const char *s = c;
            while (s < end) {
                const char *cl = memchr(s, '<', (size_t)(end - s));
                if (cl == NULL || (size_t)(end - cl) < tl + 3) {
                    return 0;
                }
                if (cl[1] == '/' && strncmp(cl + 2, tag, tl) == 0 && cl[2 + tl] == '>') {
                    *content = c;
                    *len = (size_t)(cl - c);
                    *next = cl + tl + 3;
                    return 1;
                }
                s = cl + 1;
            }
            return 0;
        }
        p = lt + 1;
    }
    return 0;
}

static size_t put_utf8(char *o, unsigned long cp)
{
    if (cp < 0x80) {
        o[0] = (char)cp;
        return 1;
    }
    if (cp < 0x800) {
        o[0] = (char)(0xC0 | (cp >> 6));
        o[1] = (char)(0x80 | (cp & 0x3F));
        return 2;
    }
    if (cp < 0x10000) {
        o[0] = (char)(0xE0 | (cp >> 12));
        o[1] = (char)(0x80 | ((cp >> 6) & 0x3F));
        o[2] = (char)(0x80 | (cp & 0x3F));
        return 3;
    }
    o[0] = (char)(0xF0 | (cp >> 18));
    o[1] = (char)(0x80 | ((cp >> 12) & 0x3F));
    o[2] = (char)(0x80 | ((cp >> 6) & 0x3F));
    o[3] = (char)(0x80 | (cp & 0x3F));
    return 4;
}

char *s3_xml_text(const char *c, size_t len)
{
    char *out = malloc(len + 1);
    if (out == NULL) {
        return NULL;
    }
    size_t o = 0;
    for (size_t i = 0; i < len;) {
        if (c[i] != '&') {
            out[o++] = c[i++];
            continue;
        }
        const char *semi = memchr(c + i, ';', len - i);
        if (semi == NULL || semi - (c + i) > 12) {
            out[o++] = c[i++];
            continue;
        }
        size_t el = (size_t)(semi - (c + i)) + 1;
        const char *e = c + i;
        if (el == 5 && memcmp(e, "&amp;", 5) == 0) {
            out[o++] = '&';
        } else if (el == 4 && memcmp(e, "&lt;", 4) == 0) {
            out[o++] = '<';
        } else if (el == 4 && memcmp(e, "&gt;", 4) == 0) {
            out[o++] = '>';
        } else if (el == 6 && memcmp(e, "&quot;", 6) == 0) {
            out[o++] = '"';
        } else if (el == 6 && memcmp(e, "&apos;", 6) == 0) {
            out[o++] = '\'';
        } else if (el > 3 && e[1] == '#') {
            unsigned long cp =
                e[2] == 'x' || e[2] == 'X' ? strtoul(e + 3, NULL, 16) : strtoul(e + 2, NULL, 10);
            /* An entity is at least as long as its UTF-8 encoding (>= 4 bytes
             * for "&#N;" vs <= 4 bytes out), so the buffer cannot overflow. */
            if (cp == 0 || cp > 0x10FFFF || (el < 5 && cp >= 0x80)) {
                out[o++] = '?';
            } else {
                o += put_utf8(out + o, cp);
            }
        } else {
            memcpy(out + o, e, el);
            o += el;
        }
        i += el;
    }
    out[o] = '\0';
    return out;
}

char *s3_xml_get(const char *p, const char *end, const char *tag)
{
    const char *c, *next;
    size_t len;
    if (!s3_xml_find(p, end, tag, &c, &len, &next)) {
        return NULL;
    }
    return s3_xml_text(c, len);
}

int s3_xml_escape(s3_buf *out, const char *s)
{
    int rc = TM_OK;
    for (; *s && rc == TM_OK; s++) {
        switch (*s) {
        case '&':
            rc = s3_buf_append(out, "&amp;", 5);
            break;
        case '<':
            rc = s3_buf_append(out, "&lt;", 4);
            break;
        case '>':
            rc = s3_buf_append(out, "&gt;", 4);
            break;
        case '"':
            rc = s3_buf_append(out, "&quot;", 6);
            break;
        case '\'':
            rc = s3_buf_append(out, "&apos;", 6);
            break;
        default:
            rc = s3_buf_append(out, s, 1);
        }
    }
    return rc;
}

int64_t s3_parse_iso8601(const char *s)
{
    struct tm tm = {0};
    if (s == NULL || strlen(s) < 19) {
        return 0;
    }
    tm.tm_year = atoi(s) - 1900;
    tm.tm_mon = atoi(s + 5) - 1;
    tm.tm_mday = atoi(s + 8);
    tm.tm_hour = atoi(s + 11);
    tm.tm_min = atoi(s + 14);
    tm.tm_sec = atoi(s + 17);
    return (int64_t)timegm(&tm);
}
