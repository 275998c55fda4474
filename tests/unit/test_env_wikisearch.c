// Tests of wikisearch's world and hidden rules: same-name decoys told apart by the snippet,
// true pages that only a query with the kind finds, trap countries on the way, exact-match
// reward after normalisation, the trap rate, and the messages for unknown titles and empty searches.
#include "test_env_util.h"

enum { PICK_KIND = 1u << 0, REFINE = 1u << 1, PLACE_PAGE = 1u << 2 };

static Env* env;

static int setup(void** state) {
    (void)state;
    env = make_env("wikisearch", 11, 96, 8);
    return 0;
}

static int teardown(void** state) {
    (void)state;
    env_destroy(env);
    return 0;
}

// the line "k. TITLE - snippet" of a result list, into out
static void result_line(const char* obs, int k, char* out, size_t n) {
    char key[8];
    snprintf(key, sizeof(key), "\n%d. ", k);
    const char* p = strstr(obs, key);
    out[0] = '\0';
    if (!p) return;
    p += strlen(key);
    size_t len = strcspn(p, "\n");
    snprintf(out, n, "%.*s", (int)len, p);
}

// runs the expert until it proposes an action tagged with `rule`; keeps the last observation
static EnvPolicyAction expert_until_rule(int rule, char* last_obs, size_t n) {
    for (int t = 0; t < TEST_MAX_TURNS; t++) {
        EnvPolicyAction a = policy(env, ENV_RULES_ALL);
        if (a.rule == rule) return a;
        EnvResult r = do_step(env, a.tool, a.args_json);
        snprintf(last_obs, n, "%s", r.observation);
        assert_int_equal(r.done, 0);
        env_result_free(&r);
    }
    fail_msg("the expert never applied rule %d", rule);
    EnvPolicyAction none = {0};
    return none;
}

static void test_decoy_told_by_snippet(void** state) {
    (void)state;
    int task = find_task(env, ENV_SPLIT_TRAIN, PICK_KIND);
    assert_true(task >= 0);
    free(reset_task(env, ENV_SPLIT_TRAIN, task));
    char obs[1024], line1[256], title[128];
    EnvPolicyAction a = expert_until_rule(0, obs, sizeof(obs));
    assert_string_equal(a.tool, "visit");
    json_t* args = json_loads(a.args_json, 0, NULL);
    snprintf(title, sizeof(title), "%s", json_string_value(json_object_get(args, "title")));
    json_decref(args);
    // the first hit is a decoy with the same name and another kind; the expert visits a later one
    result_line(obs, 1, line1, sizeof(line1));
    *strstr(line1, " - ") = '\0';
    assert_string_not_equal(line1, title);
    assert_contains(obs, title);
    char name[128];
    snprintf(name, sizeof(name), "%.*s", (int)(strchr(title, '(') ? strchr(title, '(') - title - 1 : (long)strlen(title)), title);
    assert_true(strncmp(line1, name, strlen(name)) == 0);
    // not knowing the rule fails; knowing only it succeeds
    assert_true(run_task(env, ENV_SPLIT_TRAIN, task, ENV_RULES_NONE, TEST_MAX_TURNS, NULL) == 0.0);
    assert_true(run_task(env, ENV_SPLIT_TRAIN, task, PICK_KIND, TEST_MAX_TURNS, NULL) == 1.0);
}

static void test_refine_query_finds_true_page(void** state) {
    (void)state;
    int task = find_task(env, ENV_SPLIT_TRAIN, REFINE);
    assert_true(task >= 0);
    free(reset_task(env, ENV_SPLIT_TRAIN, task));
    char obs[1024];
    EnvPolicyAction a = expert_until_rule(1, obs, sizeof(obs));
    assert_string_equal(a.tool, "search");
    // three results, all of the same name, none of the kind the refined query adds
    json_t* args = json_loads(a.args_json, 0, NULL);
    const char* query = json_string_value(json_object_get(args, "query"));
    const char* kind = strrchr(query, ' ') + 1;
    char line[256];
    for (int k = 1; k <= 3; k++) {
        result_line(obs, k, line, sizeof(line));
        assert_true(line[0] != '\0');
        char* snippet = strstr(line, " - ") + 3;
        assert_true(strncmp(snippet, kind, strlen(kind)) != 0);
    }
    result_line(obs, 4, line, sizeof(line));
    assert_string_equal(line, ""); // the list stops at 3
    EnvResult r = do_step(env, a.tool, a.args_json);
    result_line(r.observation, 1, line, sizeof(line));
    char* snippet = strstr(line, " - ") + 3;
    assert_true(strncmp(snippet, kind, strlen(kind)) == 0); // the true page now ranks first
    env_result_free(&r);
    json_decref(args);
    assert_true(run_task(env, ENV_SPLIT_TRAIN, task, PICK_KIND, TEST_MAX_TURNS, NULL) == 0.0);
    assert_true(run_task(env, ENV_SPLIT_TRAIN, task, REFINE, TEST_MAX_TURNS, NULL) == 1.0);
}

static void test_trap_country(void** state) {
    (void)state;
    int task = find_task(env, ENV_SPLIT_TRAIN, PLACE_PAGE);
    assert_true(task >= 0);
    // the novice answers with the first country it reads, a wrong one
    free(reset_task(env, ENV_SPLIT_TRAIN, task));
    EnvPolicyAction novice;
    assert_true(advance_to(env, ENV_RULES_NONE, "answer", &novice));
    free(reset_task(env, ENV_SPLIT_TRAIN, task));
    EnvPolicyAction expert;
    int steps;
    assert_true(advance_to(env, ENV_RULES_ALL, "answer", &expert));
    assert_string_not_equal(novice.args_json, expert.args_json);
    EnvResult r = do_step(env, novice.tool, novice.args_json);
    assert_int_equal(r.done, 1);
    assert_true(r.reward == 0.0);
    assert_contains(r.info, "\"success\": false");
    env_result_free(&r);
    assert_true(run_task(env, ENV_SPLIT_TRAIN, task, ENV_RULES_ALL, TEST_MAX_TURNS, &steps) == 1.0);
    assert_true(steps >= 7); // three hops: search + visit each, then the answer
}

// env.trap_rate sets how many of the tasks with a trap page place_page bites
static void test_trap_rate(void** state) {
    (void)state;
    enum { N = 400 };
    const double rates[] = {0.001, ENV_TRAP_RATE_DEFAULT, 1.0};
    int bites[3] = {0};
    for (int i = 0; i < 3; i++) {
        EnvOptions opt = {.name = "wikisearch", .seed = 5, .train_tasks = N, .heldout_tasks = 1, .trap_rate = rates[i]};
        EnvError err;
        Env* e = env_create(&opt, &err);
        if (!e) fail_msg("env_create: %s", err.msg);
        for (int t = 0; t < N; t++) bites[i] += (env_task_rules(e, ENV_SPLIT_TRAIN, t) & PLACE_PAGE) != 0;
        env_destroy(e);
    }
    // 4 of the 5 templates (85% of the tasks) have a trap page
    assert_true(bites[0] <= 2);
    assert_in_range(bites[1], (int)(0.25 * N), (int)(0.35 * N));
    assert_in_range(bites[2], (int)(0.75 * N), (int)(0.95 * N));
    EnvOptions textcraft = {.name = "textcraft", .seed = 5, .train_tasks = 1, .heldout_tasks = 1, .trap_rate = 0.8};
    EnvError err;
    assert_null(env_create(&textcraft, &err));
    assert_contains(err.msg, "env.trap_rate");
}

static void test_answer_normalised(void** state) {
    (void)state;
    free(reset_task(env, ENV_SPLIT_TRAIN, 0));
    EnvPolicyAction a;
    assert_true(advance_to(env, ENV_RULES_ALL, "answer", &a));
    json_t* args = json_loads(a.args_json, 0, NULL);
    char decorated[128];
    snprintf(decorated, sizeof(decorated), "{\"text\": \"  The %s!\"}", json_string_value(json_object_get(args, "text")));
    for (char* p = decorated + 18; *p; p++) *p = (char)(*p >= 'a' && *p <= 'z' ? *p - 32 : *p);
    json_decref(args);
    EnvResult r = do_step(env, "answer", decorated);
    assert_int_equal(r.done, 1);
    assert_true(r.reward == 1.0);
    env_result_free(&r);
    free(reset_task(env, ENV_SPLIT_TRAIN, 0));
    r = do_step(env, "answer", "{\"text\": \"Atlantis\"}");
    assert_int_equal(r.done, 1);
    assert_true(r.reward == 0.0);
    env_result_free(&r);
}

static void test_search_and_visit_messages(void** state) {
    (void)state;
    free(reset_task(env, ENV_SPLIT_TRAIN, 1));
    EnvResult r = do_step(env, "visit", "{\"title\": \"Nowhere Land\"}");
    assert_string_equal(r.observation, "No page titled 'Nowhere Land'. Search to find exact titles.");
    assert_int_equal(r.invalid, 0);
    env_result_free(&r);
    r = do_step(env, "search", "{\"query\": \"qqq zzz\"}");
    assert_string_equal(r.observation, "No results for 'qqq zzz'.");
    env_result_free(&r);
    // the question's entity is found by its name, with a kind in the snippet
    EnvPolicyAction a = policy(env, ENV_RULES_ALL);
    assert_string_equal(a.tool, "search");
    r = do_step(env, a.tool, a.args_json);
    assert_contains(r.observation, "Results for '");
    assert_contains(r.observation, "\n1. ");
    env_result_free(&r);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_decoy_told_by_snippet),
        cmocka_unit_test(test_refine_query_finds_true_page),
        cmocka_unit_test(test_trap_country),
        cmocka_unit_test(test_trap_rate),
        cmocka_unit_test(test_answer_normalised),
        cmocka_unit_test(test_search_and_visit_messages),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
