/*
 * s3_sigv4.c - AWS Signature Version 4 for S3, with OpenSSL.
 *
 * We sign ourselves rather than through CURLOPT_AWS_SIGV4: libcurl 7.88
 * sorts "name:value" lines instead of names (wrong when one header name is a
 * prefix of another, e.g. x-amz-server-side-encryption and
 * x-amz-server-side-encryption-aws-kms-key-id) and needs pre-canonical query
 * strings. Here the caller passes the canonical URI and query it will also
 * put on the wire, so what is signed is exactly what is sent.
 */
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/sha.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/storage/s3/s3.h"
#include "common/util.h"

static void hmac(const void *key, size_t klen, const char *msg, unsigned char out[32])
{
    unsigned int len = 32;
    HMAC(EVP_sha256(), key, (int)klen, (const unsigned char *)msg, strlen(msg), out, &len);
}

int s3_sigv4_authorization(const s3 *s, const char *method, const char *canonical_uri,
                           const char *canonical_query, const char *const *hname,
                           const char *const *hvalue, int nh, const char *payload_sha256,
                           const char *amz_date, char *out, size_t cap)
{
    /* Sort header indexes by name (few headers: insertion sort). */
    int idx[S3_MAX_HEADERS + 4];
    if (nh > (int)(sizeof(idx) / sizeof(idx[0]))) {
        return TM_EINVAL;
    }
    for (int i = 0; i < nh; i++) {
        int j = i;
        while (j > 0 && strcmp(hname[idx[j - 1]], hname[i]) > 0) {
            idx[j] = idx[j - 1];
            j--;
        }
        idx[j] = i;
    }
    s3_buf creq = {0}, signed_headers = {0};
    int rc = TM_OK;
    rc |= s3_buf_append(&creq, method, strlen(method));
    rc |= s3_buf_append(&creq, "\n", 1);
    rc |= s3_buf_append(&creq, canonical_uri, strlen(canonical_uri));
    rc |= s3_buf_append(&creq, "\n", 1);
    if (canonical_query != NULL) {
        rc |= s3_buf_append(&creq, canonical_query, strlen(canonical_query));
    }
    rc |= s3_buf_append(&creq, "\n", 1);
    for (int i = 0; i < nh; i++) {
        const char *n = hname[idx[i]], *v = hvalue[idx[i]];
        rc |= s3_buf_append(&creq, n, strlen(n));
        rc |= s3_buf_append(&creq, ":", 1);
        rc |= s3_buf_append(&creq, v, strlen(v));
        rc |= s3_buf_append(&creq, "\n", 1);
        if (i > 0) {
            rc |= s3_buf_append(&signed_headers, ";", 1);
        }
        rc |= s3_buf_append(&signed_headers, n, strlen(n));
    }
    rc |= s3_buf_append(&creq, "\n", 1);
    rc |= s3_buf_append(&creq, signed_headers.p, signed_headers.len);
    rc |= s3_buf_append(&creq, "\n", 1);
    rc |= s3_buf_append(&creq, payload_sha256, strlen(payload_sha256));
    rc |= s3_buf_append(&signed_headers, "", 1); /* NUL */
    if (rc != TM_OK) {
        s3_buf_free(&creq);
        s3_buf_free(&signed_headers);
        return TM_ENOMEM;
    }
    char creq_hash[65];
    tm_sha256_hex(creq.p, creq.len, creq_hash);
    s3_buf_free(&creq);

    char date[9];
    memcpy(date, amz_date, 8);
    date[8] = '\0';
    char scope[256];
    snprintf(scope, sizeof(scope), "%s/%s/s3/aws4_request", date, s->region);
    char sts[512];
    snprintf(sts, sizeof(sts), "AWS4-HMAC-SHA256\n%s\n%s\n%s", amz_date, scope, creq_hash);

    size_t sklen = strlen(s->secret_key) + 5;
    char *k0 = malloc(sklen);
    if (k0 == NULL) {
        s3_buf_free(&signed_headers);
        return TM_ENOMEM;
    }
    snprintf(k0, sklen, "AWS4%s", s->secret_key);
    unsigned char k1[32], k2[32], k3[32], k4[32], sig[32];
    hmac(k0, strlen(k0), date, k1);
    OPENSSL_cleanse(k0, sklen);
    free(k0);
    hmac(k1, 32, s->region, k2);
    hmac(k2, 32, "s3", k3);
    hmac(k3, 32, "aws4_request", k4);
    hmac(k4, 32, sts, sig);
    /* The derived keys sign any request of the day: wiped like the secret. */
    OPENSSL_cleanse(k1, sizeof(k1));
    OPENSSL_cleanse(k2, sizeof(k2));
    OPENSSL_cleanse(k3, sizeof(k3));
    OPENSSL_cleanse(k4, sizeof(k4));
    char sighex[65];
    tm_hex(sig, 32, sighex);
    int n = snprintf(out, cap, "AWS4-HMAC-SHA256 Credential=%s/%s, SignedHeaders=%s, Signature=%s",
                     s->access_key, scope, signed_headers.p, sighex);
    s3_buf_free(&signed_headers);
    return (n < 0 || (size_t)n >= cap) ? TM_EINVAL : TM_OK;
}
