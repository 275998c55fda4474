// The environment interface: a C vtable behind which sit the built-in procedurally generated
// environments (wikisearch, textcraft, retail) and external environments (a subprocess speaking
// line-delimited JSON, env_external.c). An action is a parsed tool call: a tool name and its
// arguments as a JSON object string. Malformed actions give an error observation, never a crash.
// Built-in environments are deterministic: the same seed gives the same world, tasks and
// observations. docs/ENVIRONMENTS.md describes each world and the external protocol.
#pragma once
#include <stddef.h>
#include <stdint.h>

#include "io/config.h"

typedef struct Env Env;

// ----------------------------------------------------------------------------
// data the environment exposes

typedef enum { ENV_SPLIT_TRAIN = 0, ENV_SPLIT_HELDOUT = 1 } EnvSplit;

typedef struct {
    char msg[1024];
} EnvError;

// one argument of a tool; type is "string", "integer" or "string[]" (array of strings)
typedef struct {
    const char* name;
    const char* type;
    const char* description;
    int required;
} EnvToolArg;

#define ENV_TOOL_MAX_ARGS 8

// a tool as the agent prompt shows it
typedef struct {
    const char* name;
    const char* description; // one line
    int nargs;
    EnvToolArg args[ENV_TOOL_MAX_ARGS];
} EnvTool;

// a hidden regularity of a built-in environment, stated as the principle that captures it
typedef struct {
    const char* id;        // short identifier, e.g. "pick_kind"
    const char* principle; // "When [condition], [strategy]." (<= 32 words)
} EnvRule;

#define ENV_RULES_NONE 0u
#define ENV_RULES_ALL 0xffffffffu

// an action: a parsed tool call
typedef struct {
    const char* tool;      // tool name
    const char* args_json; // arguments, a JSON object as text; NULL or "" means {}
} EnvAction;

// what reset and step return; strings are malloc'd, owned by the result (env_result_free)
typedef struct {
    char* observation; // what the agent sees next
    double reward;     // built-ins: the final reward on the step that ends the episode, else 0
    int done;          // 1: the episode is over
    int invalid;       // 1: the action was rejected as malformed (unknown tool, bad arguments)
    char* info;        // a JSON object as text ("{}" when there is nothing to say)
} EnvResult;

// an action proposed by a scripted policy
typedef struct {
    char tool[32];
    char args_json[1024];
    int rule; // index of the rule whose knowledge decided this action, or -1
} EnvPolicyAction;

// ----------------------------------------------------------------------------
// the vtable (public so that tests and other modules can implement an environment)

typedef struct {
    // start task `task` (an index into the split); out->observation is the task statement
    int (*reset)(Env* env, EnvSplit split, int task, uint64_t seed, EnvResult* out, EnvError* err);
    // apply one action; -1 only for failures of the environment itself (a dead process, a
    // step outside an episode), never for a bad action
    int (*step)(Env* env, const EnvAction* action, EnvResult* out, EnvError* err);
    // the scripted policy's next action given the rules it knows (bit i = rules[i]); NULL if none
    int (*policy)(Env* env, uint32_t known, EnvPolicyAction* out, EnvError* err);
    // the rules a policy must know to solve this task (bit i = rules[i]); NULL if none
    uint32_t (*task_rules)(const Env* env, EnvSplit split, int task);
    void (*destroy)(Env* env);
} EnvVtbl;

struct Env {
    const EnvVtbl* vt;
    char name[64];       // "wikisearch", "textcraft", "retail", "external"
    const EnvTool* tools;
    int ntools;
    const EnvRule* rules; // none for external environments
    int nrules;
    int ntasks[2];        // per split
    char** task_ids[2];   // per split, malloc'd strings
};

// ----------------------------------------------------------------------------
// creation

typedef struct {
    const char* name;    // wikisearch, textcraft, retail, external
    uint64_t seed;       // world seed (built-ins); sent to external environments
    int train_tasks;
    int heldout_tasks;
    const char* command; // external: the command line, run with /bin/sh -c
    double timeout_s;    // external: seconds per message
    double trap_rate;    // wikisearch: share of the trap tasks where the trap misleads; 0: ENV_TRAP_RATE_DEFAULT
} EnvOptions;

// NULL on error, with err naming what is wrong
Env* env_create(const EnvOptions* opt, EnvError* err);
// the options of the config: env.name (NULL if unknown), env.command, env.timeout_s,
// env.train_tasks, env.heldout_tasks, env.trap_rate, run.seed
EnvOptions env_options_from_config(const Config* c);
// env_create of env_options_from_config(c)
Env* env_create_from_config(const Config* c, EnvError* err);
void env_destroy(Env* env);

// ----------------------------------------------------------------------------
// use

int env_num_tasks(const Env* env, EnvSplit split);
const char* env_task_id(const Env* env, EnvSplit split, int task);
int env_reset(Env* env, EnvSplit split, int task, uint64_t seed, EnvResult* out, EnvError* err);
int env_step(Env* env, const EnvAction* action, EnvResult* out, EnvError* err);
// -1 with err when the environment has no scripted policy or no episode is running
int env_policy(Env* env, uint32_t known, EnvPolicyAction* out, EnvError* err);
void env_result_free(EnvResult* r);
// the rules that bite on a task: a scripted policy solves it iff it knows all of them (0 when
// the environment has no rules)
uint32_t env_task_rules(const Env* env, EnvSplit split, int task);

// the tool list as the agent prompt shows it, one tool per line:
//   search(query: string) - Search pages by name; top 3 titles with a snippet.
// malloc'd
char* env_tools_text(const Env* env);
// index of rule `id`, or -1
int env_rule_index(const Env* env, const char* id);
