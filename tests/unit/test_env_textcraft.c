// Tests of textcraft's rules: the hidden tool and fuel requirements (a missing saw splinters an
// oak item and the flaw passes to the target), tools kept and coal used up, the reward on the
// target, and the messages for bad gets and crafts.
#include "test_env_util.h"

enum { SAW = 1u << 0, HAMMER = 1u << 1, COAL = 1u << 2 };

static Env* env;

static int setup(void** state) {
    (void)state;
    env = make_env("textcraft", 21, 96, 8);
    return 0;
}

static int teardown(void** state) {
    (void)state;
    env_destroy(env);
    return 0;
}

static char* step_text(const char* tool, const char* args) {
    EnvResult r = do_step(env, tool, args);
    char* obs = r.observation;
    r.observation = NULL;
    env_result_free(&r);
    return obs;
}

// the args with one entry of "using" removed
static char* without(const char* args_json, const char* item) {
    json_t* a = json_loads(args_json, 0, NULL);
    json_t* using = json_object_get(a, "using");
    for (size_t i = 0; i < json_array_size(using); i++)
        if (strcmp(json_string_value(json_array_get(using, i)), item) == 0) {
            json_array_remove(using, i);
            break;
        }
    char* s = json_dumps(a, JSON_COMPACT);
    json_decref(a);
    return s;
}

static void test_missing_saw_flaws_the_target(void** state) {
    (void)state;
    int task = find_task(env, ENV_SPLIT_TRAIN, SAW);
    assert_true(task >= 0);
    char* statement = reset_task(env, ENV_SPLIT_TRAIN, task);
    assert_contains(statement, "Base items: ");
    assert_contains(statement, "saw, hammer, coal.");
    assert_null(strstr(strstr(statement, "Recipes: "), "saw +")); // the recipes never mention the saw
    free(statement);
    EnvPolicyAction a;
    assert_true(advance_to(env, ENV_RULES_ALL, "craft", &a));
    while (a.rule != 0) { // the first craft that needs the saw
        free(step_text(a.tool, a.args_json));
        assert_true(advance_to(env, ENV_RULES_ALL, "craft", &a));
    }
    char* args = without(a.args_json, "saw");
    char* obs = step_text("craft", args);
    assert_contains(obs, "but it is splintered.");
    free(obs);
    free(args);
    assert_true(run_policy(env, ENV_RULES_ALL, TEST_MAX_TURNS, NULL, NULL, 0) == 0.0);
    // the flaw passed on: the target is crafted but fails
    free(reset_task(env, ENV_SPLIT_TRAIN, task));
    char transcript[8192] = "";
    assert_true(run_policy(env, ENV_RULES_NONE, TEST_MAX_TURNS, NULL, transcript, sizeof(transcript)) == 0.0);
    assert_contains(transcript, "Task failed.");
}

static void test_saw_kept_coal_used_up(void** state) {
    (void)state;
    // a task with both hidden requirements, or the first with coal
    int task = find_task(env, ENV_SPLIT_TRAIN, SAW | COAL);
    if (task < 0) task = find_task(env, ENV_SPLIT_TRAIN, COAL);
    assert_true(task >= 0);
    free(reset_task(env, ENV_SPLIT_TRAIN, task));
    int coal_held = 0, crafts_with_coal = 0;
    for (int t = 0; t < TEST_MAX_TURNS; t++) {
        EnvPolicyAction a = policy(env, ENV_RULES_ALL);
        EnvResult r = do_step(env, a.tool, a.args_json);
        int done = r.done;
        if (done) {
            assert_contains(r.observation, ". Task complete.");
            assert_true(r.reward == 1.0);
        }
        env_result_free(&r);
        if (done) break;
        if (strcmp(a.tool, "get") == 0 && strstr(a.args_json, "\"coal\"")) {
            json_t* args = json_loads(a.args_json, 0, NULL);
            json_t* count = json_object_get(args, "count");
            coal_held += count ? (int)json_integer_value(count) : 1;
            json_decref(args);
        }
        if (strcmp(a.tool, "craft") == 0 && strstr(a.args_json, "\"coal\"")) {
            coal_held--;
            crafts_with_coal++;
        }
        char* inv = step_text("inventory", "{}");
        char want[32];
        snprintf(want, sizeof(want), " %d coal", coal_held);
        if (coal_held > 0) assert_contains(inv, want);
        else assert_null(strstr(inv, "coal"));
        if (strstr(a.args_json, "\"saw\"") && strcmp(a.tool, "craft") == 0) assert_contains(inv, " 1 saw");
        free(inv);
    }
    assert_true(crafts_with_coal >= 1);
    assert_int_equal(coal_held, 0); // the expert gets exactly what it uses
}

static void test_messages(void** state) {
    (void)state;
    free(reset_task(env, ENV_SPLIT_TRAIN, 0));
    struct {
        const char* tool;
        const char* args;
        const char* expected;
    } cases[] = {
        {"inventory", "{}", "Inventory: empty."},
        {"get", "{\"item\": \"oak plank\"}", "oak plank is not a base item; craft it."},
        {"get", "{\"item\": \"unobtainium\"}", "There is no item called 'unobtainium'."},
        {"get", "{\"item\": \"oak log\", \"count\": 11}", "count must be between 1 and 10."},
        {"get", "{\"item\": \"oak log\", \"count\": 0}", "count must be between 1 and 10."},
        {"craft", "{\"item\": \"saw\", \"using\": []}", "saw is a base item; use get."},
        {"craft", "{\"item\": \"gold crown\", \"using\": []}", "There is no recipe for 'gold crown'."},
        {"craft", "{\"item\": \"oak frame\", \"using\": [\"oak stick\"]}", "oak frame needs 2 oak stick; using lists 1."},
        {"craft", "{\"item\": \"oak frame\", \"using\": [\"oak stick\", \"oak stick\"]}", "You have 0 oak stick; need 2."},
        {"craft", "{\"item\": \"oak frame\", \"using\": [\"oak stick\", \"oak stick\", \"hide\"]}",
         "hide is not used to make oak frame."},
        {"craft", "{\"item\": \"oak frame\", \"using\": [\"oak stick\", \"oak stick\", \"hammer\"]}",
         "hammer is not used to make oak frame."},
        {"get", "{\"item\": \"Oak Log\", \"count\": 2}", "Got 2 oak log."},
        {"inventory", "{}", "Inventory: 2 oak log."},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        char* obs = step_text(cases[i].tool, cases[i].args);
        assert_string_equal(obs, cases[i].expected);
        free(obs);
    }
    EnvResult r = do_step(env, "get", "{\"item\": \"oak log\", \"count\": \"two\"}");
    assert_int_equal(r.invalid, 1);
    assert_contains(r.observation, "argument 'count' of get must be an integer");
    env_result_free(&r);
    r = do_step(env, "craft", "{\"item\": \"oak stick\", \"using\": [\"oak log\", 3]}");
    assert_int_equal(r.invalid, 1);
    assert_contains(r.observation, "argument 'using' of craft must be a list of strings");
    env_result_free(&r);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_missing_saw_flaws_the_target),
        cmocka_unit_test(test_saw_kept_coal_used_up),
        cmocka_unit_test(test_messages),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
