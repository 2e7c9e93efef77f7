/*
 * test_storage_s3_sign.c - S3 backend pieces that need no server: SigV4
 * against AWS's published example, URI encoding, the XML extractor.
 * (Everything else of the S3 backend is tested against a real server in
 * tests/integration/test_storage_s3.py.)
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <stdlib.h>
#include <string.h>

#include "common/storage/s3/s3.h"

/* AWS S3 docs, "Example: GET Object" (sig-v4-header-based-auth). */
static void test_sigv4_aws_example(void **state)
{
    (void)state;
    s3 s = {.region = "us-east-1",
            .access_key = "AKIAIOSFODNN7EXAMPLE",
            .secret_key = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY"};
    const char *empty = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";
    /* deliberately unsorted: the signer sorts by name */
    const char *hn[] = {"x-amz-date", "range", "x-amz-content-sha256", "host"};
    const char *hv[] = {"20130524T000000Z", "bytes=0-9", empty, "examplebucket.s3.amazonaws.com"};
    char auth[1024];
    assert_int_equal(s3_sigv4_authorization(&s, "GET", "/test.txt", "", hn, hv, 4, empty,
                                            "20130524T000000Z", auth, sizeof(auth)),
                     TM_OK);
    assert_string_equal(
        auth, "AWS4-HMAC-SHA256 Credential=AKIAIOSFODNN7EXAMPLE/20130524/us-east-1/s3/"
              "aws4_request, SignedHeaders=host;range;x-amz-content-sha256;x-amz-date, "
              "Signature=f0e8bdb87c964420e857bd35b5d6ed310bd44f0170aba48dd91039c6036bdb41");
}

/* Same docs, "Example: GET Bucket Lifecycle" (query "lifecycle="). */
static void test_sigv4_query(void **state)
{
    (void)state;
    s3 s = {.region = "us-east-1",
            .access_key = "AKIAIOSFODNN7EXAMPLE",
            .secret_key = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY"};
    const char *empty = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";
    const char *hn[] = {"host", "x-amz-content-sha256", "x-amz-date"};
    const char *hv[] = {"examplebucket.s3.amazonaws.com", empty, "20130524T000000Z"};
    char auth[1024];
    assert_int_equal(s3_sigv4_authorization(&s, "GET", "/", "lifecycle=", hn, hv, 3, empty,
                                            "20130524T000000Z", auth, sizeof(auth)),
                     TM_OK);
    assert_non_null(
        strstr(auth, "Signature=fea454ca298b7da1c68078a5d1bdbfbbe0d65c699e0f91ac7a200a0136783543"));
}

static void test_uri_encode(void **state)
{
    (void)state;
    s3_buf b = {0};
    assert_int_equal(s3_uri_encode(&b, "a b/c~d+e=f&\xc3\xa9", 1), TM_OK);
    assert_string_equal(b.p, "a%20b/c~d%2Be%3Df%26%C3%A9");
    s3_buf_free(&b);
    assert_int_equal(s3_uri_encode(&b, "x/y", 0), TM_OK);
    assert_string_equal(b.p, "x%2Fy");
    s3_buf_free(&b);
}

static void test_xml(void **state)
{
    (void)state;
    const char *doc =
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n"
        "<ListBucketResult xmlns=\"http://s3.amazonaws.com/doc/2006-03-01/\">"
        "<IsTruncated>true</IsTruncated><Contents><Key>a&amp;b&lt;&#233;&#x41;</Key>"
        "<Size>12</Size><LastModified>2009-10-12T17:50:30.000Z</LastModified></Contents>"
        "<Contents ><Key>k2</Key><Size>0</Size></Contents><Empty/>"
        "<NextContinuationToken>1ueGcxLPRx1Tr/XYExHnhbYLgveDs2J/wm36Hy4vbOwM=</"
        "NextContinuationToken></ListBucketResult>";
    const char *end = doc + strlen(doc);
    char *t = s3_xml_get(doc, end, "IsTruncated");
    assert_string_equal(t, "true");
    free(t);
    const char *c, *next, *p = doc;
    size_t len;
    assert_true(s3_xml_find(p, end, "Contents", &c, &len, &next));
    char *k = s3_xml_get(c, c + len, "Key");
    assert_string_equal(k, "a&b<\xc3\xa9"
                           "A");
    free(k);
    assert_int_equal(s3_parse_iso8601("2009-10-12T17:50:30.000Z"), 1255369830);
    assert_true(s3_xml_find(next, end, "Contents", &c, &len, &next));
    k = s3_xml_get(c, c + len, "Key");
    assert_string_equal(k, "k2");
    free(k);
    assert_false(s3_xml_find(next, end, "Contents", &c, &len, &next));
    assert_true(s3_xml_find(doc, end, "Empty", &c, &len, &next));
    assert_int_equal(len, 0);
    t = s3_xml_get(doc, end, "NextContinuationToken");
    assert_string_equal(t, "1ueGcxLPRx1Tr/XYExHnhbYLgveDs2J/wm36Hy4vbOwM=");
    free(t);
    assert_null(s3_xml_get(doc, end, "Missing"));
    /* truncated documents never read past the end */
    for (size_t cut = 0; cut < strlen(doc); cut++) {
        free(s3_xml_get(doc, doc + cut, "Key"));
        free(s3_xml_get(doc, doc + cut, "NextContinuationToken"));
    }
    s3_buf b = {0};
    assert_int_equal(s3_xml_escape(&b, "<a&'\">"), TM_OK);
    assert_string_equal(b.p, "&lt;a&amp;&apos;&quot;&gt;");
    s3_buf_free(&b);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_sigv4_aws_example),
        cmocka_unit_test(test_sigv4_query),
        cmocka_unit_test(test_uri_encode),
        cmocka_unit_test(test_xml),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
