/*
 * fuzz_digests - libFuzzer target for the clear-text digest list of a
 * backup (<target>/backup/<id>/digests, agent/repo/repo_verify.c
 * tm_digests_parse), which `repo verify --no-key` and repository copies
 * read from a repository nobody vouches for.
 */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "agent/repo/repository_int.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char *buf = malloc(size ? size : 1);
    if (buf == NULL) {
        return 0;
    }
    memcpy(buf, data, size);
    tm_digest_entry *e = NULL;
    size_t n = 0;
    tm_err err = {0};
    if (tm_digests_parse(buf, size, &e, &n, &err) == TM_OK) {
        for (size_t i = 0; i < n; i++) {
            if (e[i].key == NULL || strlen(e[i].sha256) > 64) {
                abort();
            }
        }
        tm_digests_free(e, n);
    }
    free(buf);
    return 0;
}
