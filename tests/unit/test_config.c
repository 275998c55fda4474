// Unit tests of the YAML config loader: defaults, overrides, round trip through the effective
// YAML, and a battery of malformed configs, each with the message it must produce.
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "io/config.h"

// ----------------------------------------------------------------------------
// helpers

// load `yaml` over the defaults, then validate; returns the loader's or validator's rc
static int load(Config* c, const char* yaml, ConfigError* err) {
    config_defaults(c);
    if (config_load_string(c, yaml, "bad.yaml", err) != 0) return -1;
    return config_validate(c, err);
}

static void assert_contains(const char* haystack, const char* needle) {
    if (!strstr(haystack, needle)) fail_msg("message\n  \"%s\"\ndoes not contain\n  \"%s\"", haystack, needle);
}

// ----------------------------------------------------------------------------
// malformed configs: each must fail with a message naming file, line and key

typedef struct {
    const char* yaml;
    const char* expected;
} BadCase;

static const BadCase bad_cases[] = {
    {"foo: 1\n", "bad.yaml:1: unknown key 'foo'"},
    {"distill:\n  lrr: 1e-5\n", "bad.yaml:2: unknown key 'distill.lrr' (did you mean 'distill.lr'?)"},
    {"run:\n  iterations: three\n", "bad.yaml:2: run.iterations: expected an integer, got 'three'"},
    {"distill:\n  lr: fast\n", "bad.yaml:2: distill.lr: expected a finite number, got 'fast'"},
    {"distill:\n  lr: nan\n", "bad.yaml:2: distill.lr: expected a finite number, got 'nan'"},
    {"run:\n  iterations: 0\n", "bad.yaml:2: run.iterations: 0 is out of range [1, 100000]"},
    {"run:\n  iterations: 99999999999999999999\n", "bad.yaml:2: run.iterations: expected an integer"},
    {"rollout:\n  top_p: 1.5\n", "bad.yaml:2: rollout.top_p: 1.5 is out of range"},
    {"experience:\n  granularity: sentence\n",
     "bad.yaml:2: experience.granularity: expected one of: principle, instance; got 'sentence'"},
    {"ranks:\n  colocate: maybe\n", "bad.yaml:2: ranks.colocate: expected true or false, got 'maybe'"},
    {"run: 5\n", "bad.yaml:1: 'run' is a section and must be a mapping of keys, got a scalar"},
    {"run:\n  seed: [1, 2]\n", "bad.yaml:2: run.seed: expected an integer, got a list"},
    {"run:\n  seed: 1\n  seed: 2\n", "bad.yaml:3: key 'run.seed' is given twice (first at line 2)"},
    {"run:\n  seed: [1, 2\n", "bad.yaml:3: YAML syntax error"},
    {"run:\n\tseed: 1\n", "YAML syntax error"},
    {"- a\n- b\n", "bad.yaml:1: the config must be a mapping of sections"},
    {"distill:\n  lr:\n", "bad.yaml:2: distill.lr: missing value, expected a number"},
    {"{run: {seed: 1}, 7: x}\n", "bad.yaml:1: unknown key '7'"},
    {"distill:\n  regime: on_policy\n  loss: forward_kl\n",
     "bad.yaml:3: distill.loss 'forward_kl' does not fit distill.regime 'on_policy' (bad.yaml:2)"},
    {"experience:\n  select_min: 9\n  select_max: 4\n",
     "bad.yaml:2: experience.select_min (9) is larger than experience.select_max (4, bad.yaml:3)"},
    {"env:\n  name: external\n", "bad.yaml:2: env.name is 'external' but env.command is empty"},
    {"env:\n  command: python3 env.py\n", "bad.yaml:2: env.command is set but env.name is 'wikisearch'"},
    {"eval:\n  tasks: 40\n", "bad.yaml:2: eval.tasks (40) exceeds the held-out split, env.heldout_tasks (32, "},
    {"rollout:\n  group_size: 1\n", "bad.yaml:2: rollout.group_size is 1, but the contrastive principle extractor"},
    {"rollout:\n  max_context: 4096\n", "bad.yaml:2: rollout.max_context (4096) is longer than model.max_seq_len"},
    {"distill:\n  micro_batch_tokens: 8192\n  batch_tokens: 4096\n",
     "bad.yaml:2: distill.micro_batch_tokens (8192) is larger than distill.batch_tokens (4096, bad.yaml:3)"},
};

static void test_bad_configs(void** state) {
    (void)state;
    int n = (int)(sizeof(bad_cases) / sizeof(bad_cases[0]));
    for (int i = 0; i < n; i++) {
        Config c;
        ConfigError err = {{0}};
        int rc = load(&c, bad_cases[i].yaml, &err);
        if (rc == 0) fail_msg("case %d was accepted:\n%s", i, bad_cases[i].yaml);
        assert_contains(err.msg, bad_cases[i].expected);
    }
}

static void test_string_too_long(void** state) {
    (void)state;
    char yaml[600] = "run:\n  name: ";
    memset(yaml + strlen(yaml), 'x', 300);
    Config c;
    ConfigError err;
    assert_int_not_equal(load(&c, yaml, &err), 0);
    assert_contains(err.msg, "bad.yaml:2: run.name: value is 300 characters long, at most 255 allowed");
}

static void test_missing_file(void** state) {
    (void)state;
    Config c;
    ConfigError err;
    config_defaults(&c);
    assert_int_not_equal(config_load_file(&c, "/nonexistent/x.yaml", &err), 0);
    assert_contains(err.msg, "/nonexistent/x.yaml: cannot open config file: No such file or directory");
}

static void test_world_size(void** state) {
    (void)state;
    Config c;
    ConfigError err;
    assert_int_equal(load(&c, "ranks:\n  trainer: 2\n  aggregator: 1\n  rollout: 4\n", &err), 0);
    assert_int_not_equal(config_check_world(&c, 4, &err), 0);
    assert_contains(err.msg, "bad.yaml:4: ranks.trainer (2) + ranks.aggregator (1) + ranks.rollout (4) = 7, but the "
                             "job has 4 MPI ranks");
    assert_int_equal(config_check_world(&c, 7, &err), 0);
    assert_int_equal(config_check_world(&c, 1, &err), 0); // one rank plays every role

    assert_int_equal(load(&c, "ranks:\n  trainer: 3\n  aggregator: 1\n", &err), 0);
    assert_int_not_equal(config_check_world(&c, 4, &err), 0);
    assert_contains(err.msg, "bad.yaml:2: ranks.trainer (3) + ranks.aggregator (1) leave no rollout rank in a job of 4");
    assert_int_equal(config_check_world(&c, 5, &err), 0);

    assert_int_equal(load(&c, "ranks:\n  colocate: true\n  trainer: 9\n", &err), 0);
    assert_int_equal(config_check_world(&c, 4, &err), 0);
}

// ----------------------------------------------------------------------------
// --set overrides

static void test_set(void** state) {
    (void)state;
    Config c;
    ConfigError err;
    assert_int_equal(load(&c, "distill:\n  lr: 1e-5\n", &err), 0);
    assert_int_equal(config_set(&c, "distill.lr=2.5e-4", &err), 0);
    assert_true(c.distill.lr == 2.5e-4);
    assert_int_equal(config_set(&c, "experience.injection=global", &err), 0);
    assert_int_equal(c.experience.injection, INJECTION_GLOBAL);
    assert_int_equal(config_set(&c, "ranks.colocate=yes", &err), 0);
    assert_int_equal(c.ranks.colocate, 1);
    char origin[256];
    assert_string_equal(config_origin(&c, "distill.lr", origin, sizeof(origin)), "--set distill.lr");

    static const BadCase bad_sets[] = {
        {"distill.lrr=1", "--set distill.lrr=1: unknown key 'distill.lrr' (did you mean 'distill.lr'?)"},
        {"distill.lr=abc", "--set distill.lr=abc: distill.lr: expected a finite number, got 'abc'"},
        {"distill.lr", "--set distill.lr: expected KEY=VALUE"},
        {"=3", "--set =3: expected KEY=VALUE"},
        {"run.iterations=-1", "--set run.iterations=-1: run.iterations: -1 is out of range"},
        {"distill.regime=sideways", "expected one of: off_policy, on_policy; got 'sideways'"},
    };
    for (size_t i = 0; i < sizeof(bad_sets) / sizeof(bad_sets[0]); i++) {
        assert_int_not_equal(config_set(&c, bad_sets[i].yaml, &err), 0);
        assert_contains(err.msg, bad_sets[i].expected);
    }
    // a --set that breaks consistency is caught by validation, naming the override
    assert_int_equal(config_set(&c, "distill.regime=on_policy", &err), 0);
    assert_int_not_equal(config_validate(&c, &err), 0);
    assert_contains(err.msg, "distill.loss 'forward_kl' does not fit distill.regime 'on_policy' (--set distill.regime)");
}

// ----------------------------------------------------------------------------
// defaults, a real file, and the effective-YAML round trip

static void test_defaults_valid(void** state) {
    (void)state;
    Config c;
    ConfigError err;
    config_defaults(&c);
    assert_int_equal(config_validate(&c, &err), 0);
    assert_int_equal(c.rollout.group_size, 5);
    assert_int_equal(c.experience.max_pool_size, 50);
    assert_int_equal(c.experience.granularity, GRANULARITY_PRINCIPLE);
    assert_int_equal(c.experience.injection, INJECTION_STEPWISE);
    assert_int_equal(c.distill.regime, REGIME_OFF_POLICY);
    assert_true(c.distill.lr == 1e-5);
}

// the values of two configs, ignoring where they came from
static void assert_same_values(const Config* a, const Config* b) {
    for (int i = 0; i < config_nkeys; i++) {
        const ConfigKey* k = &config_keys[i];
        size_t size = k->type == CFG_STRING ? k->size : k->type == CFG_FLOAT ? sizeof(double)
                                                      : k->type == CFG_INT64 ? sizeof(long long)
                                                                             : sizeof(int);
        if (memcmp((const char*)a + k->offset, (const char*)b + k->offset, size) != 0) {
            fail_msg("key %s differs after the round trip", k->key);
        }
    }
}

static void test_round_trip(void** state) {
    (void)state;
    Config c, back;
    ConfigError err;
    const char* path = INGRAIN_TEST_DATA "/../configs/quickstart.yaml";
    config_defaults(&c);
    assert_int_equal(config_load_file(&c, path, &err), 0);
    assert_int_equal(config_validate(&c, &err), 0);
    assert_string_equal(c.run.name, "quickstart");
    // awkward values survive: strings that look like numbers or YAML syntax, odd floats
    assert_int_equal(config_set(&c, "run.name=123: #x", &err), 0);
    assert_int_equal(config_set(&c, "distill.lr=0.1", &err), 0);
    assert_int_equal(config_set(&c, "distill.reward_threshold=-1e-300", &err), 0);
    assert_int_equal(config_set(&c, "run.seed=9007199254740991", &err), 0);
    char* yaml = config_to_yaml(&c, &err);
    assert_non_null(yaml);
    config_defaults(&back);
    if (config_load_string(&back, yaml, "effective.yaml", &err) != 0) fail_msg("%s\n%s", err.msg, yaml);
    assert_same_values(&c, &back);
    free(yaml);
}

// every config shipped in configs/ loads and validates
static void test_shipped_configs(void** state) {
    (void)state;
    static const char* const shipped[] = {"quickstart.yaml"};
    for (size_t i = 0; i < sizeof(shipped) / sizeof(shipped[0]); i++) {
        char path[1024];
        snprintf(path, sizeof(path), "%s/../configs/%s", INGRAIN_TEST_DATA, shipped[i]);
        Config c;
        ConfigError err;
        config_defaults(&c);
        if (config_load_file(&c, path, &err) != 0 || config_validate(&c, &err) != 0) fail_msg("%s", err.msg);
    }
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_bad_configs),    cmocka_unit_test(test_string_too_long),
        cmocka_unit_test(test_missing_file),   cmocka_unit_test(test_world_size),
        cmocka_unit_test(test_set),            cmocka_unit_test(test_defaults_valid),
        cmocka_unit_test(test_round_trip),     cmocka_unit_test(test_shipped_configs),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
