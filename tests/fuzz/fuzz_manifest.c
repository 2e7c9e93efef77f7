/*
 * fuzz_manifest - libFuzzer target for a stored manifest
 * (common/manifest.c tm_manifest_open). The first byte picks the layer:
 * even: the input is the stored object as read from a repository (TMK1
 * header, frames, GCM; almost everything is refused before decryption);
 * odd: the rest is the plaintext record, sealed here with the fuzzer's key
 * so that unpack and validation of whatever a key holder wrote are reached.
 */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "common/frame.h"
#include "common/manifest.h"

static const char PATH[] = "pg/backup/20260101T000000Z-full/manifest";

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size == 0) {
        return 0;
    }
    uint8_t key[TM_KEY_LEN];
    memset(key, 0x42, sizeof(key));
    tm_err err = {0};
    uint8_t *sealed = NULL;
    size_t sealed_len = 0;
    const uint8_t *in = data + 1;
    size_t in_len = size - 1;
    if (data[0] & 1) {
        if (tm_frame_encode(key, PATH, 0, 0, in, in_len, &sealed, &sealed_len, &err) != TM_OK) {
            return 0;
        }
        in = sealed;
        in_len = sealed_len;
    }
    tm_manifest *m = NULL;
    if (tm_manifest_open(key, PATH, in, in_len, &m, &err) == TM_OK) {
        size_t n = tm_manifest_nobjects(m);
        for (size_t i = 0; i < n; i++) {
            const char *k = NULL;
            tm_object_digest d;
            if (tm_manifest_object(m, i, &k, &d) != TM_OK || k == NULL) {
                abort(); /* an opened manifest lists only complete entries */
            }
        }
        tm_manifest_free(m);
    }
    free(sealed);
    return 0;
}
