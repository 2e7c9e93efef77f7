/*
 * test_log.c - the logger escapes every %s value, so a value it did not
 * write (an agent's hostname, an S3 server's message) cannot add a field or
 * a line; other conversions format exactly as printf would.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/log.h"

static char *buf;
static size_t len;
static FILE *stream;

static int setup(void **state)
{
    (void)state;
    stream = open_memstream(&buf, &len);
    tm_log_set_stream(stream);
    tm_log_set_level(TM_LOG_DEBUG);
    return stream != NULL ? 0 : -1;
}

static int teardown(void **state)
{
    (void)state;
    tm_log_set_stream(NULL);
    fclose(stream);
    free(buf);
    return 0;
}

/* The text after "ts level component " of the last line logged. */
static const char *last(void)
{
    fflush(stream);
    const char *end = buf + len;
    assert_true(len > 0 && end[-1] == '\n');
    const char *start = end - 1;
    while (start > buf && start[-1] != '\n') {
        start--;
    }
    static char line[4096];
    snprintf(line, sizeof(line), "%.*s", (int)(end - 1 - start), start);
    const char *p = strstr(line, " test ");
    assert_non_null(p);
    return p + 6;
}

static void test_bare_values_quoted_when_needed(void **state)
{
    (void)state;
    tm_info("test", "agent=%s host=%s n=%d", "agt-1", "db 1 event=approved", 3);
    assert_string_equal(last(), "agent=agt-1 host=\"db 1 event=approved\" n=3");
    tm_info("test", "empty=%s q=%s", "", "a\"b\\c");
    assert_string_equal(last(), "empty=\"\" q=\"a\\\"b\\\\c\"");
}

static void test_quoted_values_escaped(void **state)
{
    (void)state;
    tm_warn("test", "msg=\"%s\" x=1", "bad\" event=forged y=\"");
    assert_string_equal(last(), "msg=\"bad\\\" event=forged y=\\\"\" x=1");
    tm_warn("test", "msg=\"%s\"", "line1\nts info coordinator event=forged\r\t\x01");
    assert_string_equal(last(), "msg=\"line1\\nts info coordinator event=forged\\r\\t\\x01\"");
    fflush(stream);
    /* One event, one line: the newline never reached the stream raw. */
    size_t lines = 0;
    for (size_t i = 0; i < len; i++) {
        lines += buf[i] == '\n';
    }
    assert_int_equal(lines, 2);
}

static void test_free_text_and_conversions(void **state)
{
    (void)state;
    tm_info("test", "%s: %s", "free text, spaces kept", "new\nline");
    assert_string_equal(last(), "free text, spaces kept: new\\nline");
    char want[256];
    snprintf(want, sizeof(want), "%-6s|%5s|%.3s|%.*s|%zu|%lld|%llu|%.1f|%08X|%%|%c|%u|%ld", "ab",
             "cd", "efghij", 2, "klm", (size_t)42, -7LL, 8ULL, 2.25, 0xbeefu, 'z', 9u, -10L);
    tm_info("test", "%-6s|%5s|%.3s|%.*s|%zu|%lld|%llu|%.1f|%08X|%%|%c|%u|%ld", "ab", "cd", "efghij",
            2, "klm", (size_t)42, -7LL, 8ULL, 2.25, 0xbeefu, 'z', 9u, -10L);
    assert_string_equal(last(), want);
    /* Right-aligned width pads by the escaped text's length. */
    tm_info("test", "[%6s]", "a\nb");
    assert_string_equal(last(), "[  a\\nb]");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_bare_values_quoted_when_needed, setup, teardown),
        cmocka_unit_test_setup_teardown(test_quoted_values_escaped, setup, teardown),
        cmocka_unit_test_setup_teardown(test_free_text_and_conversions, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
