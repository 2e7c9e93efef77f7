/*
 * fuzz_log_meta - libFuzzer target for the log sidecar (<rel>.meta beside
 * every archived WAL segment / AOF part, agent/repo/repo_log.c
 * tm_log_meta_parse), which every push and fetch reads from a repository
 * nobody vouches for. What parses must format back to the same fields.
 */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "agent/repo/repo_log.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    tm_log_meta m, again;
    tm_err err = {0};
    if (tm_log_meta_parse((const char *)data, size, &m, &err) != TM_OK) {
        return 0;
    }
    char line[TM_LOG_META_MAX];
    size_t n = tm_log_meta_format(&m, line, sizeof(line));
    if (n == 0 || tm_log_meta_parse(line, n, &again, &err) != TM_OK ||
        memcmp(&m, &again, sizeof(m)) != 0) {
        abort();
    }
    return 0;
}
