/*
 * fuzz_s3_xml - libFuzzer target for the S3 XML extractor
 * (common/storage/s3/s3_xml.c) over any response body a server (or anything
 * between it and us) sends: the ListObjectsV2 walk s3.c does (IsTruncated,
 * NextContinuationToken, every Contents with Key, Size, LastModified), the
 * UploadId of a multipart start, and an Error's Code and Message; entity
 * decoding and the ISO 8601 parser included.
 */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "common/storage/s3/s3.h"

static void get_free(const char *p, const char *end, const char *tag)
{
    char *v = s3_xml_get(p, end, tag);
    if (v != NULL && strlen(v) > (size_t)(end - p)) {
        abort(); /* decoded text never grows beyond its span */
    }
    free(v);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    /* Response bodies are not NUL-terminated: give the parser exactly the
     * bytes (a copy, so ASan sees any read past the end). */
    char *buf = malloc(size ? size : 1);
    if (buf == NULL) {
        return 0;
    }
    memcpy(buf, data, size);
    const char *p = buf;
    const char *end = buf + size;
    get_free(p, end, "IsTruncated");
    get_free(p, end, "NextContinuationToken");
    get_free(p, end, "UploadId");
    get_free(p, end, "Code");
    get_free(p, end, "Message");
    const char *c, *nx;
    size_t cl;
    int guard = 0;
    while (s3_xml_find(p, end, "Contents", &c, &cl, &nx) && guard++ < 10000) {
        if (c < buf || c + cl > end || nx <= p || nx > end) {
            abort(); /* spans stay inside the body and the walk advances */
        }
        get_free(c, c + cl, "Key");
        get_free(c, c + cl, "Size");
        char *lm = s3_xml_get(c, c + cl, "LastModified");
        if (lm != NULL) {
            (void)s3_parse_iso8601(lm);
        }
        free(lm);
        p = nx;
    }
    char *t = s3_xml_text(buf, size);
    free(t);
    free(buf);
    return 0;
}
