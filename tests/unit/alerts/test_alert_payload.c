/*
 * test_alert_payload.c - the bytes each sink kind receives, and URL redaction.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "common/err.h"
#include "coordinator/alert_payload.h"
#include "coordinator/alert_sinks.h"

/* 2023-11-14T22:13:20.000Z */
#define T0 1700000000000LL

static const tm_alert_kv labels[] = {{"alertname", "backup_failed"},
                                     {"target", "pg-main"},
                                     {"severity", "critical"},
                                     {"env", "prod"}};
static const tm_alert_kv details[] = {
    {"kind", "full"}, {"error", "say \"no\"\n<&>"}, {"last-ok", "2h"}};

static tm_alert_notification mk(tm_alert_notify_kind kind)
{
    tm_alert_notification n = {
        .kind = kind,
        .rule = "backup_failed",
        .target = "pg-main",
        .summary = "backup failed 3 times",
        .fingerprint = "0123456789abcdef",
        .severity = TM_ALERT_CRITICAL,
        .prev_severity = TM_ALERT_CRITICAL,
        .labels = labels,
        .n_labels = 4,
        .details = details,
        .n_details = 3,
        .starts_at_ms = T0,
        .ends_at_ms = kind == TM_ALERT_NOTIFY_RESOLVED ? T0 + 725123 : 0,
        .sent_at_ms = kind == TM_ALERT_NOTIFY_RESOLVED ? T0 + 725123 : T0,
        .seq = kind == TM_ALERT_NOTIFY_RESOLVED ? 2 : 1,
    };
    return n;
}

static void test_webhook(void **state)
{
    (void)state;
    tm_alert_notification n = mk(TM_ALERT_NOTIFY_FIRING);
    char *out;
    size_t len;
    assert_int_equal(tm_alert_payload_webhook(&n, NULL, &out, &len), TM_OK);
    assert_string_equal(
        out, "{\"version\":\"1\",\"status\":\"firing\",\"event\":\"firing\",\"rule\":\"backup_"
             "failed\",\"target\":\"pg-main\",\"severity\":\"critical\",\"summary\":\"backup "
             "failed 3 times\",\"details\":{\"kind\":\"full\",\"error\":\"say "
             "\\\"no\\\"\\n<&>\",\"last-ok\":\"2h\"},\"labels\":{\"alertname\":\"backup_"
             "failed\",\"target\":\"pg-main\",\"severity\":\"critical\",\"env\":\"prod\"},"
             "\"starts_at\":\"2023-11-14T22:13:20.000Z\",\"ends_at\":null,\"sent_at\":\"2023-"
             "11-14T22:13:20.000Z\",\"fingerprint\":\"0123456789abcdef\",\"seq\":1}");
    assert_int_equal(strlen(out), len);
    free(out);

    n = mk(TM_ALERT_NOTIFY_RESOLVED);
    n.runbook_url = "https://runbooks/backup_failed";
    assert_int_equal(tm_alert_payload_webhook(&n, "http://coord:9100/", &out, &len), TM_OK);
    assert_non_null(strstr(out, "\"status\":\"resolved\",\"event\":\"resolved\""));
    assert_non_null(strstr(out, "\"ends_at\":\"2023-11-14T22:25:25.123Z\""));
    assert_non_null(strstr(out, "\"seq\":2,\"runbook_url\":\"https://runbooks/backup_failed\","
                                "\"generator_url\":\"http://coord:9100/\"}"));
    free(out);

    n = mk(TM_ALERT_NOTIFY_REPEAT);
    n.prev_severity = TM_ALERT_WARNING;
    n.summary = "bad \xff byte \x01";
    assert_int_equal(tm_alert_payload_webhook(&n, NULL, &out, &len), TM_OK);
    assert_non_null(strstr(out, "\"status\":\"firing\",\"event\":\"repeat\""));
    assert_non_null(strstr(out, "\"previous_severity\":\"warning\""));
    assert_non_null(strstr(out, "\"summary\":\"bad \xef\xbf\xbd byte \\u0001\""));
    free(out);
}

static void test_alertmanager(void **state)
{
    (void)state;
    tm_alert_notification n = mk(TM_ALERT_NOTIFY_FIRING);
    char *out;
    size_t len;
    assert_int_equal(tm_alert_payload_alertmanager(&n, "http://coord/", 300000, &out, &len), TM_OK);
    assert_string_equal(
        out, "[{\"labels\":{\"alertname\":\"backup_failed\",\"target\":\"pg-main\",\"severity\":"
             "\"critical\",\"env\":\"prod\"},\"annotations\":{\"summary\":\"backup failed 3 "
             "times\",\"fingerprint\":\"0123456789abcdef\",\"kind\":\"full\",\"error\":\"say "
             "\\\"no\\\"\\n<&>\",\"last_ok\":\"2h\"},\"startsAt\":\"2023-11-14T22:13:20.000Z\","
             "\"endsAt\":\"2023-11-14T22:18:20.000Z\",\"generatorURL\":\"http://coord/\"}]");
    free(out);

    n = mk(TM_ALERT_NOTIFY_RESOLVED);
    assert_int_equal(tm_alert_payload_alertmanager(&n, NULL, 0, &out, &len), TM_OK);
    assert_non_null(strstr(out, "\"endsAt\":\"2023-11-14T22:25:25.123Z\"}]"));
    assert_null(strstr(out, "generatorURL"));
    free(out);

    /* Severity change: the old label set is ended in the same request. */
    n = mk(TM_ALERT_NOTIFY_REPEAT);
    n.prev_severity = TM_ALERT_WARNING;
    assert_int_equal(tm_alert_payload_alertmanager(&n, NULL, 60000, &out, &len), TM_OK);
    const char *second = strstr(out, "},{\"labels\"");
    assert_non_null(second);
    assert_non_null(strstr(second, "\"severity\":\"warning\""));
    assert_non_null(strstr(second, "\"endsAt\":\"2023-11-14T22:13:20.000Z\""));
    assert_non_null(strstr(out, "\"endsAt\":\"2023-11-14T22:14:20.000Z\""));
    free(out);
}

static void test_slack(void **state)
{
    (void)state;
    tm_alert_notification n = mk(TM_ALERT_NOTIFY_FIRING);
    char *out;
    size_t len;
    assert_int_equal(tm_alert_payload_slack(&n, &out, &len), TM_OK);
    assert_string_equal(out, "{\"text\":\"[FIRING] CRITICAL backup_failed on pg-main: backup "
                             "failed 3 times (kind=full, error=say \\\"no\\\"\\n&lt;&amp;&gt;, "
                             "last-ok=2h)\"}");
    free(out);
    n = mk(TM_ALERT_NOTIFY_RESOLVED);
    assert_int_equal(tm_alert_payload_slack(&n, &out, &len), TM_OK);
    assert_string_equal(out, "{\"text\":\"[RESOLVED] backup_failed on pg-main: backup failed 3 "
                             "times (after 12m)\"}");
    free(out);
    n = mk(TM_ALERT_NOTIFY_REPEAT);
    n.sent_at_ms = T0 + 4 * 3600 * 1000 + 5 * 60 * 1000;
    n.n_details = 0;
    n.target = "";
    assert_int_equal(tm_alert_payload_slack(&n, &out, &len), TM_OK);
    assert_string_equal(out, "{\"text\":\"[FIRING, reminder] CRITICAL backup_failed: backup "
                             "failed 3 times - firing for 4h05m\"}");
    free(out);
}

static void test_redact(void **state)
{
    (void)state;
    char out[128];
    tm_alert_redact_url("https://hooks.slack.com/services/T000/B000/XXXXSECRET", out, sizeof out);
    assert_string_equal(out, "https://hooks.slack.com/...");
    tm_alert_redact_url("http://user:pw@127.0.0.1:9093", out, sizeof out);
    assert_string_equal(out, "http://127.0.0.1:9093");
    tm_alert_redact_url("http://127.0.0.1:9093/", out, sizeof out);
    assert_string_equal(out, "http://127.0.0.1:9093");
    tm_alert_redact_url("https://h.example?token=abc", out, sizeof out);
    assert_string_equal(out, "https://h.example/...");
    tm_alert_redact_url(NULL, out, sizeof out);
    assert_string_equal(out, "(none)");
}

static void test_sink_config(void **state)
{
    (void)state;
    tm_alert_sink_config c[2];
    tm_alert_sink_config_init(&c[0]);
    assert_int_equal(c[0].connect_timeout_ms, 3000);
    assert_int_equal(c[0].timeout_ms, 10000);
    assert_int_equal(c[0].send_resolved, 1);
    c[0].name = "hook";
    c[0].url = "ftp://x";
    tm_alert_sinks *s = NULL;
    tm_err err = {0};
    assert_int_equal(tm_alert_sinks_new(c, 1, NULL, NULL, &s, &err), TM_ECONFIG);
    assert_non_null(strstr(err.msg, "http:// or https://"));
    c[0].url = "http://127.0.0.1:1/hook?token=secret";
    c[1] = c[0];
    assert_int_equal(tm_alert_sinks_new(c, 2, NULL, NULL, &s, &err), TM_ECONFIG);
    assert_non_null(strstr(err.msg, "defined twice"));
    c[0].auth_header = "no colon";
    assert_int_equal(tm_alert_sinks_new(c, 1, NULL, NULL, &s, &err), TM_ECONFIG);
    c[0].auth_header = NULL;
    assert_int_equal(tm_alert_sinks_new(c, 1, NULL, NULL, &s, &err), TM_OK);
    assert_int_equal(tm_alert_sinks_count(s), 1);
    tm_alert_sinks_free(s);
    assert_int_equal(tm_alert_sinks_new(NULL, 0, NULL, NULL, &s, &err), TM_OK);
    tm_alert_notification n = mk(TM_ALERT_NOTIFY_FIRING);
    assert_int_equal(tm_alert_sinks_send(s, &n), 0);
    assert_int_equal(tm_alert_sinks_flush(s, 10), TM_OK);
    tm_alert_sinks_free(s);
    tm_alert_sink_kind k;
    assert_int_equal(tm_alert_sink_kind_parse("alertmanager", &k), TM_OK);
    assert_int_equal(k, TM_ALERT_SINK_ALERTMANAGER);
    assert_int_equal(tm_alert_sink_kind_parse("email", &k), TM_EINVAL);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_webhook),     cmocka_unit_test(test_alertmanager),
        cmocka_unit_test(test_slack),       cmocka_unit_test(test_redact),
        cmocka_unit_test(test_sink_config),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
