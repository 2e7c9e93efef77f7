/*
 * fuzz_config.c - libFuzzer target for the config parsers.
 *
 * Every input is parsed as coordinator.yaml and then as agent.yaml and the
 * result freed: no crash, no leak, no unbounded recursion on any bytes.
 * The env vars the seeds reference are set once so that valid inputs reach
 * the end of validation, not just the secret check.
 */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>

#include "agent/engine.h"
#include "common/config.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static int once;
    if (!once) {
        setenv("TIDEMARK_ADMIN_TOKEN", "fuzz-admin", 1);
        setenv("TIDEMARK_ENROLL_TOKEN", "fuzz-enroll", 1);
        tm_engine_config_init(); /* the engines' target blocks */
        once = 1;
    }
    tm_err err;
    tm_coordinator_conf *c = NULL;
    if (tm_coordinator_conf_parse("/fuzz/coordinator.yaml", (const char *)data, size, &c, &err) ==
        0) {
        tm_coordinator_conf_free(c);
    }
    tm_agent_conf *a = NULL;
    if (tm_agent_conf_parse("/fuzz/agent.yaml", (const char *)data, size, &a, &err) == 0) {
        tm_agent_conf_free(a);
    }
    return 0;
}
