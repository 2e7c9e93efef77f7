/*
 * test_config_redis.c - agent.yaml `targets[].redis`: defaults (with and
 * without a block), every key, secrets, ranges, unknown keys, the block
 * refused on other kinds, and every error with its file:line:column. The
 * block is the engine's schema (agent/engines/redis/config.c).
 */
#include "config_test.h"

#include <unistd.h>

#include "agent/engines/postgres/config.h"
#include "agent/engines/redis/config.h"

#define F AGENT_NAME

static int setup(void **state)
{
    (void)state;
    test_env_setup();
    setenv("TM_TEST_REDISPASS", "redis-secret\n", 1);
    unsetenv("TM_TEST_UNSET");
    static const tm_target_schema *const schemas[] = {&tm_pg_target_schema,
                                                      &tm_redis_target_schema};
    return tm_config_set_target_schemas(schemas, 2);
}

/* MIN_AGENT is 3 lines: "targets:" is 4, "- name" 5, kind 6, redis 7. */
#define RD(extra)                                                                                  \
    MIN_AGENT "targets:\n"                                                                         \
              "  - name: cache\n"                                                                  \
              "    kind: redis\n"                                                                  \
              "    redis:\n" extra

static void check_defaults(const tm_redis_target_conf *rd)
{
    assert_non_null(rd);
    assert_string_equal(rd->host, "127.0.0.1");
    assert_int_equal(rd->port, 6379);
    assert_null(rd->socket);
    assert_null(rd->user);
    assert_null(rd->password);
    assert_null(rd->aof_dir);
    assert_string_equal(rd->method, "auto");
    assert_int_equal(rd->timeout_ms, 60000);
    assert_null(rd->server_bin);
    assert_int_equal(rd->ship_interval_ms, 1000);
}

static void test_defaults(void **state)
{
    (void)state;
    /* No redis: block: every default. */
    tm_agent_conf *c = agent_ok(MIN_AGENT "targets:\n  - name: cache\n    kind: redis\n");
    check_defaults(tm_redis_target(&c->targets[0]));
    assert_null(tm_pg_target(&c->targets[0]));
    tm_agent_conf_free(c);
    /* A block with one key: the others keep their defaults. */
    c = agent_ok(RD("      method: auto\n"));
    check_defaults(tm_redis_target(&c->targets[0]));
    tm_agent_conf_free(c);
    /* Not a redis target: no redis conf. */
    c = agent_ok(MIN_AGENT "targets:\n  - name: pg\n    kind: postgres\n"
                           "    postgres:\n      pgdata: /data\n");
    assert_null(tm_redis_target(&c->targets[0]));
    assert_non_null(tm_pg_target(&c->targets[0]));
    tm_agent_conf_free(c);
    assert_null(tm_redis_target(NULL));
}

static void test_all_keys(void **state)
{
    (void)state;
    tm_agent_conf *c = agent_ok(RD("      host: redis.internal\n"
                                   "      port: 6380\n"
                                   "      user: tidemark\n"
                                   "      password: env:TM_TEST_REDISPASS\n"
                                   "      aof_dir: /var/lib/redis/appendonlydir\n"
                                   "      method: bgsave\n"
                                   "      timeout: 2m\n"
                                   "      server_bin: bin/redis-server\n"
                                   "      ship_interval: 250ms\n"));
    const tm_redis_target_conf *rd = tm_redis_target(&c->targets[0]);
    assert_non_null(rd);
    assert_string_equal(rd->host, "redis.internal");
    assert_int_equal(rd->port, 6380);
    assert_null(rd->socket);
    assert_string_equal(rd->user, "tidemark");
    assert_string_equal(rd->password, "redis-secret");
    assert_string_equal(rd->aof_dir, "/var/lib/redis/appendonlydir");
    assert_string_equal(rd->method, "bgsave");
    assert_int_equal(rd->timeout_ms, 120000);
    assert_string_equal(rd->server_bin, TEST_DIR "/bin/redis-server");
    assert_int_equal(rd->ship_interval_ms, 250);
    tm_agent_conf_free(c);

    /* A unix socket instead of host/port, password from a file, sync. */
    char dir[] = "/tmp/tm_redis_conf_XXXXXX";
    assert_non_null(mkdtemp(dir));
    char pw[64];
    snprintf(pw, sizeof(pw), "%s/pass", dir);
    FILE *f = fopen(pw, "w");
    assert_non_null(f);
    fputs("from-file\n", f);
    fclose(f);
    char yaml[1024];
    snprintf(yaml, sizeof(yaml),
             RD("      socket: /run/redis/redis.sock\n"
                "      password_file: %s\n"
                "      method: sync\n"),
             pw);
    c = agent_ok(yaml);
    rd = tm_redis_target(&c->targets[0]);
    assert_non_null(rd);
    assert_null(rd->host);
    assert_string_equal(rd->socket, "/run/redis/redis.sock");
    assert_string_equal(rd->password, "from-file");
    assert_string_equal(rd->method, "sync");
    tm_agent_conf_free(c);
    unlink(pw);
    rmdir(dir);
}

static void test_errors(void **state)
{
    (void)state;
    agent_fails(RD("      port: 0\n"), F ":8:13: targets[0].redis.port: ", "expected 1 .. 65535");
    agent_fails(RD("      port: 65536\n"),
                F ":8:13: targets[0].redis.port: ", "expected 1 .. 65535");
    agent_fails(RD("      host: 127.0.0.1\n      socket: /run/redis.sock\n"),
                F ":9:7: targets[0].redis.socket: ", "both host and socket");
    agent_fails(RD("      aof_dir: appendonlydir\n"),
                F ":8:16: targets[0].redis.aof_dir: ", "not an absolute path");
    agent_fails(RD("      method: rdb\n"),
                F ":8:15: targets[0].redis.method: ", "expected auto, sync or bgsave");
    agent_fails(RD("      password: env:TM_TEST_REDISPASS\n      password_file: /p\n"),
                F ":9:7: targets[0].redis.password_file: ", "exactly one");
    agent_fails(RD("      password: hunter2\n"),
                F ":8:17: targets[0].redis.password: ", "inline secrets are not allowed");
    agent_fails(RD("      password: env:TM_TEST_UNSET\n"),
                F ":8:17: targets[0].redis.password: ", "is not set");
    agent_fails(RD("      colour: red\n"), F ":8:7: targets[0].redis.colour", "unknown");
    agent_fails(RD("      timeout: 500ms\n"),
                F ":8:16: targets[0].redis.timeout: ", "out of range");
    agent_fails(RD("      ship_interval: 10\n"),
                F ":8:22: targets[0].redis.ship_interval: ", "not valid");
    agent_fails(RD("      user: 'a b'\n"), F ":8:13: targets[0].redis.user: ", "without spaces");
    /* The block on another kind, another kind's block on redis. */
    agent_fails(MIN_AGENT "targets:\n  - name: pg\n    kind: postgres\n    redis:\n"
                          "      port: 6379\n",
                F ":7:5: targets[0].redis", "a redis: block on a target of kind postgres");
    agent_fails(RD("      port: 6379\n    postgres:\n      pgdata: /x\n"),
                F ":9:5: targets[0].postgres", "kind: postgres");
    /* A kind without a registered schema has no block. */
    agent_fails(MIN_AGENT "targets:\n  - name: s\n    kind: sqlite\n    sqlite:\n"
                          "      path: /x\n",
                F ":7:5: targets[0].sqlite", "unknown");
    agent_fails(MIN_AGENT "targets:\n  - name: m\n    kind: mysql\n",
                F ":6:11: targets[0].kind: ", "expected postgres, redis, sqlite, turso or pg_dump");
    /* The secret never appears in a message. */
    agent_fails_hiding(RD("      password: hunter2\n"), "hunter2");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_defaults),
        cmocka_unit_test(test_all_keys),
        cmocka_unit_test(test_errors),
    };
    return cmocka_run_group_tests(tests, setup, NULL);
}
