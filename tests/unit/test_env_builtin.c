// Tests every built-in environment (wikisearch, textcraft, retail) against the interface's
// promises: determinism for a seed, other worlds for other seeds, the expert solving every task
// within the turn limit over many seeds, the novice failing exactly where the rules it lacks
// bite (success between 30% and 70%), the rules as data, and malformed actions answered with an
// error observation.
#include "test_env_util.h"

#define NTRAIN 64
#define NHELDOUT 32
#define NSEEDS 5

static const char* const ENVS[] = {"wikisearch", "textcraft", "retail"};

// ----------------------------------------------------------------------------
// determinism

// the transcript of a fixed mixed run: the novice on even tasks, the expert on odd ones
static char* transcript(const char* name, uint64_t seed) {
    Env* env = make_env(name, seed, 12, 6);
    size_t n = 1 << 16;
    char* text = calloc(n, 1);
    for (int s = 0; s < 2; s++)
        for (int t = 0; t < env_num_tasks(env, (EnvSplit)s); t++) {
            char* obs = reset_task(env, (EnvSplit)s, t);
            size_t len = strlen(text);
            snprintf(text + len, n - len, "%s: %s\n", env_task_id(env, (EnvSplit)s, t), obs);
            free(obs);
            run_policy(env, t % 2 ? ENV_RULES_ALL : ENV_RULES_NONE, TEST_MAX_TURNS, NULL, text, n);
        }
    env_destroy(env);
    return text;
}

static void test_same_seed_same_world(void** state) {
    const char* name = *state;
    char* a = transcript(name, 42);
    char* b = transcript(name, 42);
    assert_true(strlen(a) > 500);
    assert_string_equal(a, b);
    free(a);
    free(b);
}

static void test_other_seed_other_world(void** state) {
    const char* name = *state;
    Env* a = make_env(name, 1, 20, 0);
    Env* b = make_env(name, 2, 20, 0);
    int differ = 0;
    for (int t = 0; t < 20; t++) {
        char* x = reset_task(a, ENV_SPLIT_TRAIN, t);
        char* y = reset_task(b, ENV_SPLIT_TRAIN, t);
        differ += strcmp(x, y) != 0;
        free(x);
        free(y);
    }
    assert_true(differ >= 18);
    env_destroy(a);
    env_destroy(b);
}

// the held-out tasks (statements, the rules they need, what each policy achieves) do not depend
// on how many training tasks there are; in wikisearch a larger corpus may list other pages
static void test_splits(void** state) {
    const char* name = *state;
    Env* a = make_env(name, 9, 10, 20);
    Env* b = make_env(name, 9, 300, 20);
    assert_int_equal(env_num_tasks(a, ENV_SPLIT_TRAIN), 10);
    assert_int_equal(env_num_tasks(a, ENV_SPLIT_HELDOUT), 20);
    assert_string_equal(env_task_id(a, ENV_SPLIT_HELDOUT, 4), "heldout/4");
    assert_null(env_task_id(a, ENV_SPLIT_HELDOUT, 20));
    int train_vs_heldout = 0;
    for (int t = 0; t < 20; t++) {
        char* x = reset_task(a, ENV_SPLIT_HELDOUT, t);
        char* y = reset_task(b, ENV_SPLIT_HELDOUT, t);
        assert_string_equal(x, y);
        if (t < 10) {
            char* z = reset_task(a, ENV_SPLIT_TRAIN, t);
            train_vs_heldout += strcmp(x, z) != 0;
            free(z);
        }
        free(x);
        free(y);
        assert_int_equal(env_task_rules(a, ENV_SPLIT_HELDOUT, t), env_task_rules(b, ENV_SPLIT_HELDOUT, t));
        for (uint32_t known = 0; known < (1u << a->nrules); known++)
            assert_true(run_task(a, ENV_SPLIT_HELDOUT, t, known, TEST_MAX_TURNS, NULL) ==
                        run_task(b, ENV_SPLIT_HELDOUT, t, known, TEST_MAX_TURNS, NULL));
    }
    assert_int_equal(train_vs_heldout, 10);
    EnvResult r;
    EnvError err;
    assert_int_equal(env_reset(a, ENV_SPLIT_TRAIN, 10, 0, &r, &err), -1);
    assert_contains(err.msg, "task 10 is out of range; the train split has 10 tasks");
    env_destroy(a);
    env_destroy(b);
}

// ----------------------------------------------------------------------------
// the scripted policy

static void test_expert_solves_everything(void** state) {
    const char* name = *state;
    int max_steps = 0, min_steps = 1000;
    for (int seed = 0; seed < NSEEDS; seed++) {
        Env* env = make_env(name, 1000 + (uint64_t)seed, NTRAIN, NHELDOUT);
        for (int s = 0; s < 2; s++)
            for (int t = 0; t < env_num_tasks(env, (EnvSplit)s); t++) {
                int steps;
                double reward = run_task(env, (EnvSplit)s, t, ENV_RULES_ALL, TEST_MAX_TURNS, &steps);
                if (reward != 1.0) fail_msg("%s seed %d: the expert fails task %s", name, 1000 + seed, env_task_id(env, (EnvSplit)s, t));
                if (steps > max_steps) max_steps = steps;
                if (steps < min_steps) min_steps = steps;
            }
        env_destroy(env);
    }
    // long-horizon: at least 5 tool calls, and within the turn limit
    assert_true(min_steps >= 5);
    assert_true(max_steps <= TEST_MAX_TURNS);
}

// For every subset of known rules, a task is solved exactly when no rule it needs is unknown;
// the novice solves 30-70%, and each rule alone helps.
static void test_rules_bite_exactly(void** state) {
    const char* name = *state;
    Env* env = make_env(name, 77, NTRAIN, NHELDOUT);
    int ntasks = NTRAIN + NHELDOUT;
    uint32_t nmasks = 1u << env->nrules;
    int novice = 0;
    for (uint32_t known = 0; known < nmasks; known++) {
        int solved = 0;
        for (int s = 0; s < 2; s++)
            for (int t = 0; t < env_num_tasks(env, (EnvSplit)s); t++) {
                uint32_t bites = env_task_rules(env, (EnvSplit)s, t);
                int ok = run_task(env, (EnvSplit)s, t, known, TEST_MAX_TURNS, NULL) == 1.0;
                int expected = (bites & ~known) == 0;
                if (ok != expected)
                    fail_msg("%s task %s: rules known %#x, task needs %#x, solved %d", name,
                             env_task_id(env, (EnvSplit)s, t), known, bites, ok);
                solved += ok;
            }
        if (known == 0) novice = solved;
        if (known != 0 && (known & (known - 1)) == 0) assert_true(solved > novice); // one rule known
    }
    double rate = (double)novice / ntasks;
    print_message("%s: novice solves %.0f%% of %d tasks\n", name, 100.0 * rate, ntasks);
    assert_true(rate >= 0.30 && rate <= 0.70);
    // every rule bites somewhere
    for (int r = 0; r < env->nrules; r++) {
        int bitten = 0;
        for (int t = 0; t < NTRAIN; t++) bitten += (env_task_rules(env, ENV_SPLIT_TRAIN, t) >> r) & 1;
        assert_true(bitten > 0);
    }
    env_destroy(env);
}

static void test_rules_as_data(void** state) {
    const char* name = *state;
    Env* env = make_env(name, 1, 2, 1);
    assert_true(env->nrules >= 2 && env->nrules <= 32);
    for (int r = 0; r < env->nrules; r++) {
        const EnvRule* rule = &env->rules[r];
        assert_int_equal(env_rule_index(env, rule->id), r);
        assert_true(strncmp(rule->principle, "When ", 5) == 0);
        assert_non_null(strchr(rule->principle, ','));
        assert_int_equal(rule->principle[strlen(rule->principle) - 1], '.');
        int words = 0;
        for (const char* p = rule->principle; *p; p++)
            if (*p != ' ' && (p == rule->principle || p[-1] == ' ')) words++;
        if (words > 32) fail_msg("%s rule %s has %d words", name, rule->id, words);
    }
    assert_int_equal(env_rule_index(env, "no such rule"), -1);
    env_destroy(env);
}

// observations stay short: the built-in models have a 1-2K token context
static void test_observations_short(void** state) {
    const char* name = *state;
    Env* env = make_env(name, 5, 40, 0);
    size_t longest = 0;
    for (int t = 0; t < 40; t++) {
        char* obs = reset_task(env, ENV_SPLIT_TRAIN, t);
        if (strlen(obs) > longest) longest = strlen(obs);
        free(obs);
        for (int k = 0; k < TEST_MAX_TURNS; k++) {
            EnvPolicyAction a = policy(env, ENV_RULES_ALL);
            EnvResult r = do_step(env, a.tool, a.args_json);
            if (strlen(r.observation) > longest) longest = strlen(r.observation);
            int done = r.done;
            env_result_free(&r);
            if (done) break;
        }
    }
    print_message("%s: longest observation %zu bytes\n", name, longest);
    assert_true(longest <= 300);
    env_destroy(env);
}

// ----------------------------------------------------------------------------
// malformed actions

static void test_malformed_actions(void** state) {
    const char* name = *state;
    Env* env = make_env(name, 3, 4, 2);
    free(reset_task(env, ENV_SPLIT_TRAIN, 0));
    const EnvTool* tool = &env->tools[0]; // every env's first tool takes a required string
    assert_true(tool->nargs >= 1 && strcmp(tool->args[0].type, "string") == 0);
    char bad_type[128], unknown_arg[128], missing[64];
    snprintf(bad_type, sizeof(bad_type), "{\"%s\": 7}", tool->args[0].name);
    snprintf(unknown_arg, sizeof(unknown_arg), "{\"%s\": \"x\", \"bogus\": 1}", tool->args[0].name);
    snprintf(missing, sizeof(missing), "{}");
    struct {
        const char* tool;
        const char* args;
        const char* expected;
    } cases[] = {
        {"fly", "{}", "unknown tool 'fly'; the tools are: "},
        {NULL, "{}", "unknown tool ''"},
        {tool->name, "{\"", "are not valid JSON"},
        {tool->name, "[1, 2]", "must be a JSON object"},
        {tool->name, "\"text\"", "must be a JSON object"},
        {tool->name, bad_type, "must be a string"},
        {tool->name, unknown_arg, "has no argument 'bogus'"},
        {tool->name, missing, "needs argument"},
        {tool->name, NULL, "needs argument"},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        EnvResult r = do_step(env, cases[i].tool, cases[i].args);
        assert_int_equal(r.invalid, 1);
        assert_int_equal(r.done, 0);
        assert_true(r.reward == 0.0);
        assert_true(strncmp(r.observation, "Error: ", 7) == 0);
        assert_contains(r.observation, cases[i].expected);
        assert_contains(r.info, "\"error\"");
        env_result_free(&r);
    }
    // the episode goes on: the expert still solves it
    assert_true(run_policy(env, ENV_RULES_ALL, TEST_MAX_TURNS, NULL, NULL, 0) == 1.0);
    // outside an episode, step and policy are errors, not crashes
    EnvResult r;
    EnvError err;
    EnvAction a = {tool->name, "{}"};
    assert_int_equal(env_step(env, &a, &r, &err), -1);
    assert_contains(err.msg, "after the episode ended");
    EnvPolicyAction pa;
    assert_int_equal(env_policy(env, ENV_RULES_ALL, &pa, &err), -1);
    env_destroy(env);
    env = make_env(name, 3, 1, 1);
    assert_int_equal(env_step(env, &a, &r, &err), -1);
    assert_contains(err.msg, "before reset");
    env_destroy(env);
}

static void test_tools_text(void** state) {
    const char* name = *state;
    Env* env = make_env(name, 1, 1, 1);
    char* text = env_tools_text(env);
    int lines = 0;
    for (const char* p = text; *p; p++) lines += *p == '\n';
    assert_int_equal(lines, env->ntools);
    for (int t = 0; t < env->ntools; t++) {
        char head[64];
        snprintf(head, sizeof(head), "%s(", env->tools[t].name);
        assert_contains(text, head);
        assert_contains(text, env->tools[t].description);
    }
    free(text);
    env_destroy(env);
}

static void test_registry_errors(void** state) {
    (void)state;
    EnvError err;
    EnvOptions opt = {.name = "webshop", .seed = 1, .train_tasks = 1, .heldout_tasks = 1};
    assert_null(env_create(&opt, &err));
    assert_contains(err.msg, "unknown environment 'webshop'; expected one of: wikisearch, textcraft, retail, external");
    opt.name = "external";
    assert_null(env_create(&opt, &err));
    assert_contains(err.msg, "needs a command line (env.command)");
    Config c;
    config_defaults(&c);
    c.env.name = ENV_TEXTCRAFT;
    c.env.train_tasks = 3;
    c.env.heldout_tasks = 2;
    Env* env = env_create_from_config(&c, &err);
    assert_non_null(env);
    assert_string_equal(env->name, "textcraft");
    assert_int_equal(env_num_tasks(env, ENV_SPLIT_TRAIN), 3);
    assert_int_equal(env_num_tasks(env, ENV_SPLIT_HELDOUT), 2);
    env_destroy(env);
}

int main(void) {
#define PER_ENV(fn)                                                                                                  \
    cmocka_unit_test_prestate(fn, (void*)ENVS[0]), cmocka_unit_test_prestate(fn, (void*)ENVS[1]),                    \
        cmocka_unit_test_prestate(fn, (void*)ENVS[2])
    const struct CMUnitTest tests[] = {
        PER_ENV(test_same_seed_same_world),
        PER_ENV(test_other_seed_other_world),
        PER_ENV(test_splits),
        PER_ENV(test_expert_solves_everything),
        PER_ENV(test_rules_bite_exactly),
        PER_ENV(test_rules_as_data),
        PER_ENV(test_observations_short),
        PER_ENV(test_malformed_actions),
        PER_ENV(test_tools_text),
        cmocka_unit_test(test_registry_errors),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
