/*
 * test_outcome.c - the verdict on a finished backup (coordinator/outcome.c):
 * succeeded only when every required repository holds it, partial when some
 * do, failed when none does; outcomes filled in for agents that send none.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdlib.h>
#include <string.h>

#include "coordinator/outcome.h"
#include "tidemark.pb-c.h"

#define SUCCEEDED TIDEMARK__TASK_STATE__TASK_SUCCEEDED
#define PARTIAL TIDEMARK__TASK_STATE__TASK_PARTIAL
#define FAILED TIDEMARK__TASK_STATE__TASK_FAILED

/* A heap result as the dispatcher holds it: "b-1", complete in `held`
 * (NULL-terminated), with outcomes "name:ok" / "name:class:op:message"
 * (NULL-terminated, may be empty). */
static Tidemark__TaskResult *result(const char *const *held, const char *const *outcomes)
{
    Tidemark__TaskResult *r = calloc(1, sizeof(*r));
    tidemark__task_result__init(r);
    r->backup_id = strdup("b-1");
    size_t nh = 0, no = 0;
    while (held[nh] != NULL) {
        nh++;
    }
    while (outcomes[no] != NULL) {
        no++;
    }
    /* Empty repeated fields are NULL, as protobuf-c unpacks them. */
    r->repositories = nh ? calloc(nh, sizeof(char *)) : NULL;
    for (size_t i = 0; i < nh; i++) {
        r->repositories[r->n_repositories++] = strdup(held[i]);
    }
    r->repository_outcomes = no ? calloc(no, sizeof(*r->repository_outcomes)) : NULL;
    for (size_t i = 0; i < no; i++) {
        Tidemark__RepositoryOutcome *o = calloc(1, sizeof(*o));
        tidemark__repository_outcome__init(o);
        char *spec = strdup(outcomes[i]);
        char *save = NULL;
        o->repository = strdup(strtok_r(spec, ":", &save));
        char *cls = strtok_r(NULL, ":", &save);
        o->has_ok = 1;
        o->ok = strcmp(cls, "ok") == 0;
        if (!o->ok) {
            o->error_class = strdup(cls);
            o->operation = strdup(strtok_r(NULL, ":", &save));
            o->message = strdup(strtok_r(NULL, "", &save));
        }
        free(spec);
        r->repository_outcomes[r->n_repository_outcomes++] = o;
    }
    return r;
}

static const char *const none[] = {NULL};

/* The verdict on result(held, outcomes); release both with done(). */
static Tidemark__TaskResult *decide(const char *const *held, const char *const *outcomes,
                                    char *const *required, size_t n_required,
                                    Tidemark__RepositoryStatus *const *known, size_t n_known,
                                    tm_backup_verdict *v)
{
    Tidemark__TaskResult *r = result(held, outcomes);
    tm_err err = {0};
    assert_int_equal(tm_outcome_decide(r, required, n_required, known, n_known, v, &err), TM_OK);
    return r;
}

static void done(Tidemark__TaskResult *r, tm_backup_verdict *v)
{
    tm_backup_verdict_clear(v);
    tidemark__task_result__free_unpacked(r, NULL);
}

static void test_every_required_repository_holds_it(void **state)
{
    (void)state;
    const char *held[] = {"local", "s3", NULL};
    const char *out[] = {"local:ok", "s3:ok", NULL};
    tm_backup_verdict v;
    Tidemark__TaskResult *r = decide(held, out, NULL, 0, NULL, 0, &v);
    assert_int_equal(v.state, SUCCEEDED);
    assert_int_equal(v.n_missing, 0);
    done(r, &v);
}

static void test_some_hold_it_is_partial_with_the_reason(void **state)
{
    (void)state;
    const char *held[] = {"local", NULL};
    const char *out[] = {"local:ok", "s3:auth:put:403 SignatureDoesNotMatch on b/k", NULL};
    tm_backup_verdict v;
    Tidemark__TaskResult *r = decide(held, out, NULL, 0, NULL, 0, &v);
    assert_int_equal(v.state, PARTIAL);
    assert_int_equal(v.n_missing, 1);
    assert_string_equal(v.missing[0], "s3");
    assert_non_null(strstr(v.reason, "complete in local"));
    assert_non_null(strstr(v.reason, "s3 (auth put: 403 SignatureDoesNotMatch"));
    done(r, &v);
}

static void test_none_holds_it_is_failed_and_auth_is_not_retried(void **state)
{
    (void)state;
    const char *out[] = {"local:permission:rename:EACCES", "s3:auth:put:403", NULL};
    tm_backup_verdict v;
    Tidemark__TaskResult *r = decide(none, out, NULL, 0, NULL, 0, &v);
    assert_int_equal(v.state, FAILED);
    assert_int_equal(v.n_missing, 2);
    assert_false(v.retryable);
    assert_non_null(strstr(v.reason, "complete in none"));
    done(r, &v);

    /* An outage may pass: worth another attempt. */
    const char *out2[] = {"local:unreachable:put:timeout", "s3:auth:put:403", NULL};
    r = decide(none, out2, NULL, 0, NULL, 0, &v);
    assert_int_equal(v.state, FAILED);
    assert_true(v.retryable);
    done(r, &v);
}

static void test_policy_names_the_required_repositories(void **state)
{
    (void)state;
    /* "scratch" failed but the policy does not require it: succeeded. */
    const char *held[] = {"eu", "us", NULL};
    const char *out[] = {"eu:ok", "us:ok", "scratch:no_space:put:ENOSPC", NULL};
    char *required[] = {"eu", "us"};
    tm_backup_verdict v;
    Tidemark__TaskResult *r = decide(held, out, required, 2, NULL, 0, &v);
    assert_int_equal(v.state, SUCCEEDED);
    done(r, &v);

    /* Only in the repository the policy does not require: failed. */
    const char *held2[] = {"scratch", NULL};
    const char *out2[] = {"scratch:ok", "eu:io:fsync:EIO", "us:io:put:reset", NULL};
    r = decide(held2, out2, required, 2, NULL, 0, &v);
    assert_int_equal(v.state, FAILED);
    assert_non_null(strstr(v.reason, "only in scratch, not required"));
    done(r, &v);

    /* A required name the agent does not have is the check's problem
     * ("unsatisfied"), not a flaw of every backup. */
    char *required3[] = {"eu", "mars"};
    const char *out3[] = {"eu:ok", NULL};
    const char *held3[] = {"eu", NULL};
    r = decide(held3, out3, required3, 2, NULL, 0, &v);
    assert_int_equal(v.state, SUCCEEDED);
    done(r, &v);
}

static void test_no_outcomes_uses_the_agents_repositories_and_fills_them_in(void **state)
{
    (void)state;
    /* An agent that sends no outcomes listed only "local"; its heartbeats
     * say it also has "s3", whose probe fails. */
    const char *held[] = {"local", NULL};
    Tidemark__RepositoryStatus local = TIDEMARK__REPOSITORY_STATUS__INIT;
    Tidemark__RepositoryStatus s3 = TIDEMARK__REPOSITORY_STATUS__INIT;
    local.name = "local";
    local.has_ok = 1;
    local.ok = 1;
    s3.name = "s3";
    s3.region = "us-east";
    s3.has_ok = 1;
    s3.error = "403 SignatureDoesNotMatch";
    Tidemark__RepositoryStatus *known[] = {&local, &s3};
    tm_backup_verdict v;
    Tidemark__TaskResult *r = decide(held, none, NULL, 0, known, 2, &v);
    assert_int_equal(v.state, PARTIAL);
    assert_int_equal(v.n_missing, 1);
    assert_string_equal(v.missing[0], "s3");
    assert_int_equal(r->n_repository_outcomes, 2);
    const Tidemark__RepositoryOutcome *o = r->repository_outcomes[1];
    assert_string_equal(o->repository, "s3");
    assert_string_equal(o->region, "us-east");
    assert_false(o->ok);
    assert_non_null(strstr(o->message, "only in local"));
    assert_non_null(strstr(o->message, "403 SignatureDoesNotMatch"));
    assert_true(r->repository_outcomes[0]->ok);
    done(r, &v);

    /* Nothing known beyond the listed repositories: succeeded, as before. */
    r = decide(held, none, NULL, 0, NULL, 0, &v);
    assert_int_equal(v.state, SUCCEEDED);
    done(r, &v);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_every_required_repository_holds_it),
        cmocka_unit_test(test_some_hold_it_is_partial_with_the_reason),
        cmocka_unit_test(test_none_holds_it_is_failed_and_auth_is_not_retried),
        cmocka_unit_test(test_policy_names_the_required_repositories),
        cmocka_unit_test(test_no_outcomes_uses_the_agents_repositories_and_fills_them_in),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
