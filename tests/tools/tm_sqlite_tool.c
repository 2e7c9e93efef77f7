/*
 * tm_sqlite_tool.c - the SQLite engine's log restore pieces, driven by the
 * integration tests before (and beside) the engine's restore command:
 *
 *   tm_sqlite_tool CONFIG replay TARGET CHAIN_HEX UNTIL_MS OUT
 *       start OUT from the chain's base snapshot in the repositories of
 *       CONFIG (agent.yaml), then replay its shipped frames up to the last
 *       commit at or before UNTIL_MS (0 = all). Prints key=value lines
 *       (chain, pos, time_ms, frames, objects); exit 0 or 1 with the error.
 *   tm_sqlite_tool CONFIG position TARGET
 *       the shipper's saved position (chain=, pos=).
 *   tm_sqlite_tool - copy DB DST
 *       tm_sqlite_copy (bytes=, ms=), for measuring it.
 */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "agent/engine.h"
#include "agent/engines/sqlite/copy.h"
#include "agent/engines/sqlite/replay.h"
#include "agent/engines/sqlite/ship.h"
#include "common/config.h"
#include "common/util.h"

static int usage(void)
{
    fprintf(stderr, "usage: tm_sqlite_tool CONFIG replay TARGET CHAIN_HEX UNTIL_MS OUT\n"
                    "       tm_sqlite_tool CONFIG position TARGET\n"
                    "       tm_sqlite_tool - copy DB DST\n");
    return 2;
}

int main(int argc, char **argv)
{
    if (argc < 4) {
        return usage();
    }
    if (strcmp(argv[1], "-") == 0 && strcmp(argv[2], "copy") == 0 && argc == 5) {
        tm_err e = {0};
        uint64_t bytes = 0;
        int64_t t0 = tm_now_ms();
        if (tm_sqlite_copy(argv[3], argv[4], &bytes, &e) != TM_OK) {
            fprintf(stderr, "%s\n", e.msg);
            return 1;
        }
        printf("bytes=%" PRIu64 "\nms=%" PRId64 "\n", bytes, tm_now_ms() - t0);
        return 0;
    }
    tm_engine_config_init();
    tm_agent_conf *conf = NULL;
    tm_err err = {0};
    if (tm_agent_conf_load(argv[1], &conf, &err) != TM_OK) {
        fprintf(stderr, "%s\n", err.msg);
        return 1;
    }
    int rc = TM_OK;
    if (strcmp(argv[2], "replay") == 0 && argc == 7) {
        uint32_t chain = (uint32_t)strtoul(argv[4], NULL, 16);
        int64_t until = strtoll(argv[5], NULL, 10);
        tm_sqlite_replayed base, out;
        rc = tm_sqlite_restore_base(conf, argv[3], chain, argv[6], &base, &err);
        if (rc == TM_OK) {
            rc = tm_sqlite_replay(conf, argv[3], chain, base.pos, until, argv[6], &out, &err);
        }
        if (rc == TM_OK) {
            printf("chain=%08" PRIx32 "\npos=%s\ntime_ms=%" PRId64 "\nbase_ms=%" PRId64
                   "\nframes=%" PRIu64 "\nobjects=%" PRIu32 "\n",
                   out.chain, out.pos, out.time_ms, base.time_ms, out.frames,
                   out.objects + base.objects);
        }
    } else if (strcmp(argv[2], "position") == 0 && argc == 4) {
        uint32_t chain = 0;
        char pos[TM_LOG_POS_MAX];
        rc = tm_sqlite_ship_position(conf, argv[3], &chain, pos, sizeof(pos), &err);
        if (rc == TM_OK) {
            printf("chain=%08" PRIx32 "\npos=%s\n", chain, pos);
        }
    } else {
        tm_agent_conf_free(conf);
        return usage();
    }
    tm_agent_conf_free(conf);
    if (rc != TM_OK) {
        fprintf(stderr, "%s\n", err.msg);
        return 1;
    }
    return 0;
}
