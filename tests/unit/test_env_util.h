// Helpers for the environment tests: create a built-in environment, run the scripted policy
// through an episode, edit a proposed action's arguments, check messages.
#pragma once
#include <jansson.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "rollout/env.h"

#define TEST_MAX_TURNS 16 // env.max_turns' default: the expert must finish within it

static inline void assert_contains(const char* haystack, const char* needle) {
    if (!haystack || !strstr(haystack, needle))
        fail_msg("text\n  \"%s\"\ndoes not contain\n  \"%s\"", haystack ? haystack : "(null)", needle);
}

static inline Env* make_env(const char* name, uint64_t seed, int ntrain, int nheldout) {
    EnvOptions opt = {.name = name, .seed = seed, .train_tasks = ntrain, .heldout_tasks = nheldout};
    EnvError err;
    Env* env = env_create(&opt, &err);
    if (!env) fail_msg("env_create(%s): %s", name, err.msg);
    return env;
}

// reset, returning the first observation (malloc'd)
static inline char* reset_task(Env* env, EnvSplit split, int task) {
    EnvResult r;
    EnvError err;
    if (env_reset(env, split, task, 0, &r, &err) != 0) fail_msg("reset: %s", err.msg);
    char* obs = r.observation;
    r.observation = NULL;
    env_result_free(&r);
    return obs;
}

// one step; fails the test on an environment error
static inline EnvResult do_step(Env* env, const char* tool, const char* args) {
    EnvResult r;
    EnvError err;
    EnvAction a = {tool, args};
    if (env_step(env, &a, &r, &err) != 0) fail_msg("step %s %s: %s", tool, args ? args : "", err.msg);
    return r;
}

static inline EnvPolicyAction policy(Env* env, uint32_t known) {
    EnvPolicyAction a;
    EnvError err;
    if (env_policy(env, known, &a, &err) != 0) fail_msg("policy: %s", err.msg);
    return a;
}

// Runs the scripted policy from the current state until the episode ends or max_turns steps;
// returns the final reward (0 if cut off) and the steps taken. If transcript is non-NULL every
// observation is appended to it.
static inline double run_policy(Env* env, uint32_t known, int max_turns, int* steps, char* transcript, size_t n) {
    for (int t = 0; t < max_turns; t++) {
        EnvPolicyAction a = policy(env, known);
        EnvResult r = do_step(env, a.tool, a.args_json);
        if (transcript) {
            size_t len = strlen(transcript);
            snprintf(transcript + len, n - len, "> %s %s\n%s\n", a.tool, a.args_json, r.observation);
        }
        int done = r.done;
        double reward = r.reward;
        env_result_free(&r);
        if (done) {
            if (steps) *steps = t + 1;
            return reward;
        }
    }
    if (steps) *steps = max_turns;
    return 0.0;
}

static inline double run_task(Env* env, EnvSplit split, int task, uint32_t known, int max_turns, int* steps) {
    free(reset_task(env, split, task));
    return run_policy(env, known, max_turns, steps, NULL, 0);
}

// the policy's args with key set to a new JSON value (given as JSON text); malloc'd
static inline char* edit_args(const char* args_json, const char* key, const char* value_json) {
    json_t* a = json_loads(args_json, 0, NULL);
    json_t* v = value_json ? json_loads(value_json, JSON_DECODE_ANY, NULL) : NULL;
    assert_non_null(a);
    if (v) json_object_set_new(a, key, v);
    else json_object_del(a, key);
    char* s = json_dumps(a, JSON_COMPACT);
    json_decref(a);
    return s;
}

// the first task of the split whose biting rules are exactly `bites`, or -1
static inline int find_task(const Env* env, EnvSplit split, uint32_t bites) {
    for (int t = 0; t < env_num_tasks(env, split); t++)
        if (env_task_rules(env, split, t) == bites) return t;
    return -1;
}

// steps the policy (knowing `known`) until it proposes a `tool` action (not taken); 1 if found
static inline int advance_to(Env* env, uint32_t known, const char* tool, EnvPolicyAction* out) {
    for (int t = 0; t < 40; t++) {
        *out = policy(env, known);
        if (strcmp(out->tool, tool) == 0) return 1;
        EnvResult r = do_step(env, out->tool, out->args_json);
        int done = r.done;
        env_result_free(&r);
        if (done) return 0;
    }
    return 0;
}
