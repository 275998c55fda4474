// Helpers shared by the environment implementations (env.c defines them): a seeded random
// generator, made-up names, answer normalisation, result builders, and the check of an action
// against the tool schema. Not part of the public interface (rollout/env.h).
#pragma once
#include <jansson.h>
#include <stddef.h>
#include <stdint.h>

#include "common/strbuf.h"
#include "rollout/env.h"

// ----------------------------------------------------------------------------
// deterministic random numbers (splitmix64): the same seed gives the same world everywhere

uint64_t env_mix(uint64_t a, uint64_t b); // hash of two words, for per-split and per-task streams
uint64_t env_rand(uint64_t* state);
int env_rand_below(uint64_t* state, int n); // uniform in [0, n)
double env_rand_unit(uint64_t* state);      // uniform in [0, 1)
void env_shuffle(uint64_t* state, int* a, int n);

// a made-up capitalised word of 2-3 syllables, e.g. "Tarvik"
void env_make_word(uint64_t* state, char* out, size_t n);

// ----------------------------------------------------------------------------
// text

// lower case, punctuation to spaces, articles (a, an, the) dropped, spaces collapsed
void env_normalize(const char* in, char* out, size_t n);
// case-insensitive equality after env_normalize
int env_same_text(const char* a, const char* b);

// ----------------------------------------------------------------------------
// the common part of every environment

void env_base_init(Env* env, const EnvVtbl* vt, const char* name, const EnvTool* tools, int ntools,
                   const EnvRule* rules, int nrules);
// built-in task ids: "train/0", ..., "heldout/0", ...
void env_base_builtin_tasks(Env* env, int ntrain, int nheldout);
void env_base_free(Env* env);
// checks split and task index; -1 with err naming the valid range
int env_check_task(const Env* env, EnvSplit split, int task, EnvError* err);

// ----------------------------------------------------------------------------
// results

// a normal observation (obs is copied); info is "{}"
void env_result_text(EnvResult* r, const char* obs);
// takes ownership of obs (a StrBuf's string)
void env_result_take(EnvResult* r, char* obs);
// the episode ends with this reward; info records success
void env_result_final(EnvResult* r, char* obs, double reward);
// a rejected malformed action: observation "Error: ...", invalid = 1, info {"error": ...}
void env_result_invalid(EnvResult* r, const char* fmt, ...) __attribute__((format(printf, 2, 3)));

// Checks `action` against env->tools: known tool, arguments a JSON object with every required
// argument, no unknown one, each of its declared type. Returns the tool index with *args set
// (caller json_decref's it), or -1 with `out` filled by env_result_invalid.
int env_parse_action(const Env* env, const EnvAction* action, json_t** args, EnvResult* out);

// policy output
void env_policy_set(EnvPolicyAction* out, const char* tool, int rule, const char* args_fmt, ...)
    __attribute__((format(printf, 4, 5)));
// a JSON string literal of s (quoted and escaped) into buf
const char* env_json_str(const char* s, char* buf, size_t n);

// ----------------------------------------------------------------------------
// constructors (env.c's registry calls them)

Env* env_wikisearch_create(uint64_t seed, int ntrain, int nheldout, double trap_rate, EnvError* err);
Env* env_textcraft_create(uint64_t seed, int ntrain, int nheldout, EnvError* err);
Env* env_retail_create(uint64_t seed, int ntrain, int nheldout, EnvError* err);
Env* env_external_create(const char* command, double timeout_s, uint64_t seed, int ntrain, int nheldout,
                         EnvError* err);
