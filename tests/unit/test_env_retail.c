// Tests of retail's policy preconditions and hidden rules: identity first, cancel only pending
// orders, return and exchange only delivered ones and once per order, refunds to the order's
// own payment method, the most recent matching order, and the reward from the final database.
#include "test_env_util.h"

enum { LATEST = 1u << 0, ONE_REQUEST = 1u << 1, PAYMENT = 1u << 2, DELIVERED = 1u << 3 };

static Env* env;

static int setup(void** state) {
    (void)state;
    env = make_env("retail", 31, 96, 8);
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

static char* arg_string(const char* args_json, const char* key) {
    json_t* a = json_loads(args_json, 0, NULL);
    char* s = strdup(json_string_value(json_object_get(a, key)));
    json_decref(a);
    return s;
}

static void test_identity_first(void** state) {
    (void)state;
    free(reset_task(env, ENV_SPLIT_TRAIN, 0));
    EnvPolicyAction a;
    assert_true(advance_to(env, ENV_RULES_ALL, "get_order", &a));
    char* id = arg_string(a.args_json, "order_id");
    free(reset_task(env, ENV_SPLIT_TRAIN, 0)); // a new conversation: nobody confirmed
    char args[64];
    snprintf(args, sizeof(args), "{\"order_id\": \"%s\"}", id);
    char* obs = step_text("get_order", args);
    assert_string_equal(obs, "Identity not confirmed: find the customer with find_user(name, zip) first.");
    free(obs);
    snprintf(args, sizeof(args), "{\"order_id\": \"%s\", \"reason\": \"no longer needed\"}", id);
    obs = step_text("cancel_order", args);
    assert_contains(obs, "Identity not confirmed");
    free(obs);
    obs = step_text("find_user", "{\"name\": \"Nobody Here\", \"zip\": \"00000\"}");
    assert_string_equal(obs, "No customer named 'Nobody Here' with zip '00000'.");
    free(obs);
    obs = step_text("get_order", "{\"order_id\": \"#W1\"}");
    assert_string_equal(obs, "No order '#W1'.");
    free(obs);
    free(id);
    // ending without doing anything leaves the database off its goal
    EnvResult r = do_step(env, "done", "{}");
    assert_int_equal(r.done, 1);
    assert_true(r.reward == 0.0);
    assert_string_equal(r.observation, "Conversation ended.");
    env_result_free(&r);
}

static void test_delivered_cannot_be_cancelled(void** state) {
    (void)state;
    int task = find_task(env, ENV_SPLIT_TRAIN, DELIVERED);
    assert_true(task >= 0);
    char* statement = reset_task(env, ENV_SPLIT_TRAIN, task);
    assert_contains(statement, "Please cancel my ");
    free(statement);
    EnvPolicyAction a;
    assert_true(advance_to(env, ENV_RULES_NONE, "cancel_order", &a));
    char* obs = step_text(a.tool, a.args_json);
    assert_contains(obs, "is delivered; only pending orders can be cancelled.");
    free(obs);
    assert_true(run_policy(env, ENV_RULES_NONE, TEST_MAX_TURNS, NULL, NULL, 0) == 0.0);
    // knowing the rule, the expert returns every item instead
    free(reset_task(env, ENV_SPLIT_TRAIN, task));
    assert_true(advance_to(env, DELIVERED, "return_items", &a));
    assert_int_equal(a.rule, 3);
    assert_true(run_policy(env, DELIVERED, TEST_MAX_TURNS, NULL, NULL, 0) == 1.0);
}

static void test_one_request_per_order(void** state) {
    (void)state;
    int task = find_task(env, ENV_SPLIT_TRAIN, ONE_REQUEST);
    assert_true(task >= 0);
    free(reset_task(env, ENV_SPLIT_TRAIN, task));
    char transcript[8192] = "";
    assert_true(run_policy(env, ENV_RULES_NONE, TEST_MAX_TURNS, NULL, transcript, sizeof(transcript)) == 0.0);
    assert_contains(transcript, "already has a");
    assert_contains(transcript, "an order takes one request.");
    free(reset_task(env, ENV_SPLIT_TRAIN, task));
    EnvPolicyAction a = {0};
    int found = advance_to(env, ONE_REQUEST, "return_items", &a);
    if (!found) { // an exchange task
        free(reset_task(env, ENV_SPLIT_TRAIN, task));
        found = advance_to(env, ONE_REQUEST, "exchange_items", &a);
    }
    assert_true(found);
    json_t* args = json_loads(a.args_json, 0, NULL);
    assert_int_equal(json_array_size(json_object_get(args, "item_ids")), 2);
    json_decref(args);
    assert_true(run_policy(env, ONE_REQUEST, TEST_MAX_TURNS, NULL, NULL, 0) == 1.0);
}

static void test_original_payment(void** state) {
    (void)state;
    int task = find_task(env, ENV_SPLIT_TRAIN, PAYMENT);
    assert_true(task >= 0);
    free(reset_task(env, ENV_SPLIT_TRAIN, task));
    EnvPolicyAction a;
    const char* tool = advance_to(env, ENV_RULES_ALL, "return_items", &a) ? "return_items" : "exchange_items";
    if (strcmp(tool, "exchange_items") == 0) {
        free(reset_task(env, ENV_SPLIT_TRAIN, task));
        assert_true(advance_to(env, ENV_RULES_ALL, tool, &a));
    }
    char* own = arg_string(a.args_json, "payment");
    // a method the customer does not have is refused
    char* bad = edit_args(a.args_json, "payment", "\"bitcoin\"");
    char* obs = step_text(tool, bad);
    assert_contains(obs, "'bitcoin' is not a payment method of ");
    free(obs);
    free(bad);
    // the novice's refund goes through, silently to the wrong method: reward 0
    free(reset_task(env, ENV_SPLIT_TRAIN, task));
    assert_true(advance_to(env, ENV_RULES_NONE, tool, &a));
    char* first = arg_string(a.args_json, "payment");
    assert_string_not_equal(own, first);
    obs = step_text(a.tool, a.args_json);
    assert_contains(obs, first);
    free(obs);
    assert_true(run_policy(env, ENV_RULES_NONE, TEST_MAX_TURNS, NULL, NULL, 0) == 0.0);
    free(own);
    free(first);
}

static void test_latest_order(void** state) {
    (void)state;
    int task = find_task(env, ENV_SPLIT_TRAIN, LATEST);
    assert_true(task >= 0);
    char* acted[2];
    for (int k = 0; k < 2; k++) {
        free(reset_task(env, ENV_SPLIT_TRAIN, task));
        uint32_t known = k ? ENV_RULES_ALL : ENV_RULES_NONE;
        EnvPolicyAction a;
        for (;;) {
            a = policy(env, known);
            if (strcmp(a.tool, "cancel_order") == 0 || strcmp(a.tool, "return_items") == 0 ||
                strcmp(a.tool, "exchange_items") == 0)
                break;
            free(step_text(a.tool, a.args_json));
        }
        acted[k] = arg_string(a.args_json, "order_id");
    }
    // order numbers grow with time: the novice acted on an older order than the expert
    assert_true(atoi(acted[0] + 2) < atoi(acted[1] + 2));
    free(acted[0]);
    free(acted[1]);
}

static void test_status_and_item_checks(void** state) {
    (void)state;
    // a plain cancel task: its pending order cannot be returned, exchanged or cancelled twice
    int task = -1;
    for (int t = 0; t < env_num_tasks(env, ENV_SPLIT_TRAIN) && task < 0; t++) {
        if (env_task_rules(env, ENV_SPLIT_TRAIN, t) != 0) continue;
        char* s = reset_task(env, ENV_SPLIT_TRAIN, t);
        if (strstr(s, "Please cancel")) task = t;
        free(s);
    }
    assert_true(task >= 0);
    free(reset_task(env, ENV_SPLIT_TRAIN, task));
    EnvPolicyAction a;
    assert_true(advance_to(env, ENV_RULES_ALL, "cancel_order", &a));
    char* id = arg_string(a.args_json, "order_id");
    char args[160];
    snprintf(args, sizeof(args), "{\"order_id\": \"%s\", \"item_ids\": [\"v10\"], \"payment\": \"x\"}", id);
    char* obs = step_text("return_items", args);
    assert_contains(obs, "is pending; only delivered orders can be returned.");
    free(obs);
    snprintf(args, sizeof(args), "{\"order_id\": \"%s\", \"reason\": \"meh\"}", id);
    obs = step_text("cancel_order", args);
    assert_string_equal(obs, "reason must be 'no longer needed' or 'ordered by mistake'.");
    free(obs);
    obs = step_text(a.tool, a.args_json);
    assert_contains(obs, " cancelled; refund to ");
    free(obs);
    obs = step_text(a.tool, a.args_json);
    assert_contains(obs, "is cancelled; only pending orders can be cancelled.");
    free(obs);
    EnvResult r = do_step(env, "done", "{}");
    assert_true(r.reward == 1.0); // the failed calls changed nothing
    env_result_free(&r);
    free(id);
    // an exchange: items must be in the order, new ids another variant of the same product
    task = -1;
    for (int t = 0; t < env_num_tasks(env, ENV_SPLIT_TRAIN) && task < 0; t++) {
        char* s = reset_task(env, ENV_SPLIT_TRAIN, t);
        if (strstr(s, "exchange")) task = t;
        free(s);
    }
    assert_true(task >= 0);
    free(reset_task(env, ENV_SPLIT_TRAIN, task));
    assert_true(advance_to(env, ENV_RULES_ALL, "exchange_items", &a));
    char* edited = edit_args(a.args_json, "item_ids", "[\"v999\"]");
    obs = step_text(a.tool, edited);
    assert_contains(obs, "Item 'v999' is not in order #W");
    free(obs);
    free(edited);
    json_t* parsed = json_loads(a.args_json, 0, NULL);
    const char* old_id = json_string_value(json_array_get(json_object_get(parsed, "item_ids"), 0));
    char same[64];
    snprintf(same, sizeof(same), "[\"%s\"]", old_id);
    edited = edit_args(a.args_json, "new_item_ids", same);
    obs = step_text(a.tool, edited);
    assert_contains(obs, "is not another variant of the ");
    free(obs);
    free(edited);
    json_decref(parsed);
    obs = step_text(a.tool, a.args_json);
    assert_contains(obs, "Exchange requested for order #W");
    free(obs);
    r = do_step(env, "done", "{}");
    assert_true(r.reward == 1.0);
    env_result_free(&r);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_identity_first),
        cmocka_unit_test(test_delivered_cannot_be_cancelled),
        cmocka_unit_test(test_one_request_per_order),
        cmocka_unit_test(test_original_payment),
        cmocka_unit_test(test_latest_order),
        cmocka_unit_test(test_status_and_item_checks),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
