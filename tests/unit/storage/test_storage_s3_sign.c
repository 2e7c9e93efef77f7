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

#include <arpa/inet.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

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

/* A one-request HTTP server on 127.0.0.1: keeps the request head, answers
 * 200. Enough to see what the S3 client really sends. */
typedef struct http_once {
    int fd;
    char head[8192];
} http_once;

static void *serve_once(void *arg)
{
    http_once *h = arg;
    int c = accept(h->fd, NULL, NULL);
    if (c < 0) {
        return NULL;
    }
    size_t n = 0;
    while (n + 1 < sizeof(h->head) && strstr(h->head, "\r\n\r\n") == NULL) {
        ssize_t r = read(c, h->head + n, sizeof(h->head) - 1 - n);
        if (r <= 0) {
            break;
        }
        n += (size_t)r;
        h->head[n] = '\0';
    }
    const char *ok = "HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok";
    ssize_t w = write(c, ok, strlen(ok));
    (void)w;
    close(c);
    return NULL;
}

/* The value of header `name` (lowercase) in a request head, into out. */
static int header(const char *head, const char *name, char *out, size_t cap)
{
    for (const char *l = strstr(head, "\r\n"); l != NULL; l = strstr(l + 2, "\r\n")) {
        const char *p = l + 2;
        size_t nl = strlen(name);
        if (strncasecmp(p, name, nl) == 0 && p[nl] == ':') {
            p += nl + 1;
            while (*p == ' ') {
                p++;
            }
            const char *e = strstr(p, "\r\n");
            snprintf(out, cap, "%.*s", (int)(e - p), p);
            return 1;
        }
    }
    return 0;
}

/* An endpoint with a base path (a gateway at http://host:port/s3): the path
 * on the wire includes it, and so does the canonical URI that was signed, so
 * a server recomputing the signature from what it received agrees. */
static void test_sigv4_base_path_on_the_wire(void **state)
{
    (void)state;
    http_once h = {0};
    h.fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t al = sizeof(a);
    assert_int_equal(bind(h.fd, (struct sockaddr *)&a, sizeof(a)), 0);
    assert_int_equal(listen(h.fd, 1), 0);
    assert_int_equal(getsockname(h.fd, (struct sockaddr *)&a, &al), 0);
    pthread_t t;
    assert_int_equal(pthread_create(&t, NULL, serve_once, &h), 0);

    char host[64];
    snprintf(host, sizeof(host), "127.0.0.1:%d", ntohs(a.sin_port));
    s3 s = {.scheme = "http",
            .host = host,
            .base_path = "/s3",
            .bucket = "bk",
            .region = "us-east-1",
            .prefix = "",
            .access_key = "AKIDEXAMPLE",
            .secret_key = "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY",
            .path_style = 1,
            .max_retries = 0,
            .timeout_ms = 10000};
    pthread_mutex_init(&s.lock, NULL);
    s3_req r = {.method = "GET", .key = "tm/a b.txt", .what = "bk/tm/a b.txt"};
    s3_req_header(&r, "x-amz-storage-class", "STANDARD");
    s3_resp resp = {0};
    tm_err err = {0};
    assert_int_equal(s3_request(&s, &r, &resp, &err), TM_OK);
    s3_resp_free(&resp);
    s3_http_cleanup(&s);
    pthread_join(t, NULL);
    close(h.fd);
    pthread_mutex_destroy(&s.lock);

    /* What arrived: GET /s3/bk/tm/a%20b.txt HTTP/1.1 */
    char method[8], path[512];
    assert_int_equal(sscanf(h.head, "%7s %511s", method, path), 2);
    assert_string_equal(path, "/s3/bk/tm/a%20b.txt");

    /* Recompute the signature from the received request, as a server does. */
    char auth[1024], date[32], sha[80], hosthdr[64], sc[32], signed_names[256];
    assert_true(header(h.head, "authorization", auth, sizeof(auth)));
    assert_true(header(h.head, "x-amz-date", date, sizeof(date)));
    assert_true(header(h.head, "x-amz-content-sha256", sha, sizeof(sha)));
    assert_true(header(h.head, "host", hosthdr, sizeof(hosthdr)));
    assert_true(header(h.head, "x-amz-storage-class", sc, sizeof(sc)));
    const char *sh = strstr(auth, "SignedHeaders=");
    assert_non_null(sh);
    snprintf(signed_names, sizeof(signed_names), "%.*s", (int)strcspn(sh + 14, ","), sh + 14);
    assert_string_equal(signed_names, "host;x-amz-content-sha256;x-amz-date;x-amz-storage-class");
    const char *hn[] = {"host", "x-amz-content-sha256", "x-amz-date", "x-amz-storage-class"};
    const char *hv[] = {hosthdr, sha, date, sc};
    char want[1024];
    assert_int_equal(
        s3_sigv4_authorization(&s, method, path, "", hn, hv, 4, sha, date, want, sizeof(want)),
        TM_OK);
    assert_string_equal(auth, want);
    /* And signing without the base path would not match: the test can fail. */
    assert_int_equal(s3_sigv4_authorization(&s, method, "/bk/tm/a%20b.txt", "", hn, hv, 4, sha,
                                            date, want, sizeof(want)),
                     TM_OK);
    assert_string_not_equal(auth, want);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_sigv4_aws_example),
        cmocka_unit_test(test_sigv4_query),
        cmocka_unit_test(test_uri_encode),
        cmocka_unit_test(test_xml),
        cmocka_unit_test(test_sigv4_base_path_on_the_wire),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
