// Tests of the external-environment client: the example Python environment
// (examples/envs/guess_number.py) through reset/step/close, determinism, a crash mid-episode
// survived by a restart and replay, and misbehaving processes (one that exits, one that hangs
// past a short timeout, one that prints garbage, replies without fields or with an error), each
// of which must give an error naming the command and what went wrong, never a hang.
#include <dirent.h>
#include <unistd.h>

#include "test_env_util.h"

#define EXAMPLE INGRAIN_TEST_DATA "/../examples/envs/guess_number.py"
#define TASKS_REPLY "{\"train\":[\"a\"],\"heldout\":[\"b\"],\"tools\":[{\"name\":\"t\"}]}"

static Env* external(const char* command, double timeout_s, uint64_t seed, int ntrain, int nheldout, EnvError* err) {
    EnvOptions opt = {.name = "external", .seed = seed, .train_tasks = ntrain, .heldout_tasks = nheldout,
                      .command = command, .timeout_s = timeout_s};
    return env_create(&opt, err);
}

// open file descriptors of this process (-1 without /proc): pipes must not leak
static int open_fds(void) {
    DIR* d = opendir("/proc/self/fd");
    if (!d) return -1;
    int n = 0;
    while (readdir(d)) n++;
    closedir(d);
    return n;
}

static int have_python(void) {
    return system("python3 -c pass >/dev/null 2>&1") == 0;
}

// plays every task of the example by bisection; the transcript of observations, malloc'd
static char* play_all(Env* env) {
    size_t n = 1 << 14;
    char* text = calloc(n, 1);
    for (int s = 0; s < 2; s++)
        for (int t = 0; t < env_num_tasks(env, (EnvSplit)s); t++) {
            char* obs = reset_task(env, (EnvSplit)s, t);
            size_t len = strlen(text);
            snprintf(text + len, n - len, "%s: %s\n", env_task_id(env, (EnvSplit)s, t), obs);
            free(obs);
            int lo = 1, hi = 100, done = 0;
            for (int k = 0; k < 8 && !done; k++) {
                char args[32];
                int guess = (lo + hi) / 2;
                snprintf(args, sizeof(args), "{\"number\": %d}", guess);
                EnvResult r = do_step(env, "guess", args);
                len = strlen(text);
                snprintf(text + len, n - len, "%d -> %s (%g)\n", guess, r.observation, r.reward);
                if (strstr(r.observation, "higher")) lo = guess + 1;
                else hi = guess - 1;
                done = r.done;
                if (done) assert_true(r.reward == 1.0);
                env_result_free(&r);
            }
            assert_true(done);
        }
    return text;
}

static void test_example_environment(void** state) {
    (void)state;
    if (!have_python()) skip();
    EnvError err;
    Env* env = external("python3 '" EXAMPLE "'", 10.0, 5, 3, 2, &err);
    if (!env) fail_msg("%s", err.msg);
    assert_string_equal(env->name, "external");
    assert_int_equal(env_num_tasks(env, ENV_SPLIT_TRAIN), 3);
    assert_string_equal(env_task_id(env, ENV_SPLIT_HELDOUT, 1), "heldout-1");
    char* tools = env_tools_text(env);
    assert_string_equal(tools, "guess(number: integer) - Guess the secret number; the reply says higher, lower or correct.\n");
    free(tools);
    assert_null(env->rules);
    EnvPolicyAction pa;
    assert_int_equal(env_policy(env, ENV_RULES_ALL, &pa, &err), -1);
    assert_contains(err.msg, "has no scripted policy");
    EnvResult r;
    EnvAction a = {"guess", "{\"number\": 1}"};
    assert_int_equal(env_step(env, &a, &r, &err), -1);
    assert_contains(err.msg, "step called before a successful reset");
    assert_int_equal(env_reset(env, ENV_SPLIT_TRAIN, 0, 0, &r, &err), 0);
    assert_string_equal(r.observation, "Guess my number between 1 and 100.");
    assert_string_equal(r.info, "{\"task\":\"train-0\"}");
    env_result_free(&r);
    // malformed arguments stay on this side; a wrong tool is the environment's to judge
    r = do_step(env, "guess", "[50]");
    assert_int_equal(r.invalid, 1);
    assert_contains(r.observation, "Error: the arguments of guess must be a JSON object");
    env_result_free(&r);
    r = do_step(env, "shout", "{}");
    assert_int_equal(r.invalid, 1);
    assert_int_equal(r.done, 0);
    assert_contains(r.observation, "unknown tool 'shout'");
    env_result_free(&r);
    char* first = play_all(env);
    env_destroy(env);
    // the same seed plays the same; another seed hides other numbers
    env = external("python3 '" EXAMPLE "'", 10.0, 5, 3, 2, &err);
    assert_non_null(env);
    char* again = play_all(env);
    env_destroy(env);
    assert_string_equal(first, again);
    env = external("python3 '" EXAMPLE "'", 10.0, 6, 3, 2, &err);
    assert_non_null(env);
    char* other = play_all(env);
    env_destroy(env);
    assert_string_not_equal(first, other);
    free(first);
    free(again);
    free(other);
}

// the process dies at its 3rd step; the client restarts it, replays the episode, and the game
// goes on as if nothing happened
static void test_crash_restart_replay(void** state) {
    (void)state;
    if (!have_python()) skip();
    char flag[] = "/tmp/ingrain_env_crashXXXXXX";
    int fd = mkstemp(flag);
    assert_true(fd >= 0);
    close(fd);
    unlink(flag);
    char command[512];
    snprintf(command, sizeof(command), "python3 '%s' --crash-at-step 3 --crash-flag %s", EXAMPLE, flag);
    EnvError err;
    Env* crashing = external(command, 10.0, 5, 3, 2, &err);
    if (!crashing) fail_msg("%s", err.msg);
    char* with_crash = play_all(crashing);
    env_destroy(crashing);
    assert_int_equal(access(flag, F_OK), 0); // it did crash once
    unlink(flag);
    Env* env = external("python3 '" EXAMPLE "'", 10.0, 5, 3, 2, &err);
    char* clean = play_all(env);
    env_destroy(env);
    assert_string_equal(with_crash, clean);
    free(with_crash);
    free(clean);
}

// each misbehaving command must fail with a message that names it and the problem
static void test_misbehaving_processes(void** state) {
    (void)state;
    struct {
        const char* command;
        const char* expected;
    } cases[] = {
        {"exit 3", "the process exited with status 3 while answering the 'tasks' message (it was restarted once"},
        {"read l; echo 'bad things' >&2; exit 3", "exited with status 3 while answering the 'tasks' message; its last stderr line: 'bad things'"},
        {"sleep 5", "no reply to the 'tasks' message within 0.3 s (env.timeout_s); the process was stopped"},
        {"exec 2>&-; sleep 5", "no reply to the 'tasks' message within 0.3 s"}, // stderr closed early
        {"read l; echo hello world; sleep 5", "the reply to 'tasks' is not valid JSON (column 5: '[' or '{' expected near 'hello'): 'hello world'"},
        {"echo banner; read l; sleep 5", "'banner'"}, // caught before the message, or read as its reply
        {"read l; echo '[1, 2]'", "the reply to 'tasks' is not a JSON object: '[1, 2]'"},
        {"read l; echo '{\"error\": \"benchmark not installed\"}'", "error in reply to 'tasks': benchmark not installed"},
        {"read l; echo '{\"train\": [\"a\"], \"heldout\": []}'", "the reply to 'tasks' lists 0 heldout tasks but env.heldout_tasks asks for 1"},
        {"read l; echo '{\"train\": [\"a\"], \"heldout\": [\"b\"]}'", "the reply to 'tasks' lacks 'tools'"},
        {"read l; echo '{\"train\": [1], \"heldout\": [\"b\"], \"tools\": []}'", "train[0] is not a string"},
        {"no-such-program-xyz", "exited with status 127 while answering the 'tasks' message; its last stderr line:"},
    };
    int fds = open_fds();
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        EnvError err;
        // a short timeout only where the process hangs: elsewhere a loaded machine must not matter
        double timeout = strstr(cases[i].expected, "within") ? 0.3 : 30.0;
        Env* env = external(cases[i].command, timeout, 1, 1, 1, &err);
        if (env) fail_msg("'%s' was accepted", cases[i].command);
        char head[256];
        snprintf(head, sizeof(head), "external environment '%s': ", cases[i].command);
        assert_true(strncmp(err.msg, head, strlen(head)) == 0);
        assert_contains(err.msg, cases[i].expected);
    }
    assert_int_equal(open_fds(), fds);
}

// failures after a good start: in reset, in step, and recovery by the next reset
static void test_misbehaving_episodes(void** state) {
    (void)state;
    struct {
        const char* script; // after the tasks reply
        int fails_in_step;
        const char* expected;
    } cases[] = {
        {"read l; echo '{\"error\": \"unknown task a\"}'", 0, "error in reply to 'reset': unknown task a"},
        {"read l; echo '{\"obs\": \"hi\"}'", 0, "the reply to 'reset' lacks 'observation' (a string)"},
        {"read l; echo '{\"observation\": \"hi\"}'; read l; echo '{\"observation\": \"x\", \"done\": false}'", 1,
         "the reply to 'step' lacks 'reward' (a number)"},
        {"read l; echo '{\"observation\": \"hi\"}'; read l; echo '{\"observation\": \"x\", \"reward\": 0, \"done\": 0}'",
         1, "the reply to 'step' lacks 'done' (true or false)"},
        {"read l; echo '{\"observation\": \"hi\"}'; read l; echo '{\"observation\": 5, \"reward\": 0, \"done\": false}'",
         1, "the reply to 'step' lacks 'observation' (a string)"},
        {"read l; echo '{\"observation\": \"hi\"}'; read l; exit 4", 1,
         "the process exited with status 4 while answering the 'step' message (it was restarted once and failed the same way)"},
        {"read l; echo '{\"observation\": \"hi\"}'; read l; sleep 5", 1, "no reply to the 'step' message within 0.3 s"},
        {"read l; echo '{\"observation\": \"hi\"}'; read l; echo '{\"observation\": \"x\", \"reward\": 0, \"done\": false}'; echo extra; sleep 5",
         1, NULL}, // the stray line shows up before the next message
    };
    int fds = open_fds();
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        char command[512];
        snprintf(command, sizeof(command), "read l; echo '%s'; %s", TASKS_REPLY, cases[i].script);
        EnvError err;
        double timeout = cases[i].expected && strstr(cases[i].expected, "within") ? 0.3 : 30.0;
        Env* env = external(command, timeout, 1, 1, 1, &err);
        if (!env) fail_msg("%s", err.msg);
        assert_string_equal(env_task_id(env, ENV_SPLIT_TRAIN, 0), "a");
        EnvResult r;
        int rc = env_reset(env, ENV_SPLIT_TRAIN, 0, 7, &r, &err);
        if (cases[i].fails_in_step) {
            assert_int_equal(rc, 0);
            env_result_free(&r);
            EnvAction a = {"t", "{}"};
            rc = env_step(env, &a, &r, &err);
            if (!cases[i].expected) { // the reply was fine; the stray line breaks the next call
                assert_int_equal(rc, 0);
                env_result_free(&r);
                rc = env_step(env, &a, &r, &err);
                // caught before the message is sent, or read as its reply: either way named
                cases[i].expected = strstr(err.msg, "answers no message")
                                        ? "wrote output that answers no message, before the 'step' message: 'extra"
                                        : "the reply to 'step' is not valid JSON (column 5: '[' or '{' expected near 'extra'): 'extra'";
            }
        }
        assert_int_equal(rc, -1);
        char head[600];
        snprintf(head, sizeof(head), "external environment '%.200s", command);
        assert_true(strncmp(err.msg, head, strlen(head)) == 0);
        assert_contains(err.msg, cases[i].expected);
        // the next reset starts a fresh process and works where the script allows it
        if (cases[i].fails_in_step) {
            assert_int_equal(env_reset(env, ENV_SPLIT_TRAIN, 0, 7, &r, &err), 0);
            assert_string_equal(r.observation, "hi");
            env_result_free(&r);
        }
        env_destroy(env);
    }
    assert_int_equal(open_fds(), fds);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_example_environment),
        cmocka_unit_test(test_crash_restart_replay),
        cmocka_unit_test(test_misbehaving_processes),
        cmocka_unit_test(test_misbehaving_episodes),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
