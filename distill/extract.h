// The aggregator's experience update: judged episodes of one iteration -> pool operations.
// Three extractors write items (docs/EXPERIENCE.md describes each):
//   contrastive  principles mined from conditions that separate successful from failed steps
//   llm          principles written by the model (Training-Free-GRPO: summary, critique, consolidation)
//   instance     concrete excerpts of successful trajectories, one per task
// experience_update runs one iteration in the fixed order observe -> prune -> extract -> cap.
#pragma once
#include <stddef.h>
#include <stdint.h>

#include "distill/episode.h"
#include "distill/pool.h"
#include "distill/prompt.h"
#include "io/config.h"
#include "rollout/trajectory.h"

typedef struct {
    // contrastive miner
    int min_support;       // steps with the condition and the action (default 3)
    int min_tasks;         // distinct tasks among its successful steps (default 2)
    double min_lift;       // smoothed P(success | cond, action) - P(success | cond, other action) (0.2)
    double max_share;      // largest share of the condition's steps that take the action already (1: any)
    double z;              // score = lift - z * its standard error must be > 0 (1.64: one-sided 95%)
    int max_rules;         // rules added or updated per iteration (5)
    int max_ngram;         // longest condition phrase, in words (3, at most 3)
    int max_obs_terms;     // observation terms looked at per step (128)
    int choices;           // also mine which line of a tool result a call took (experience.mine_choices; 0)
    // instance extractor
    int max_task_words;    // words of the task kept in an excerpt (24)
    int max_calls;         // tool calls kept in an excerpt (8)
    // llm extractor
    GenerateFn gen;        // the model as writer (required for extractor llm)
    void* gen_ctx;
    const char* prompt_dir; // NULL: prompt_default_dir()
    size_t reply_cap;      // bytes per model reply (8192)
    int max_ops;           // operations accepted per reply (32)
    int max_obs_chars;     // observation characters shown per step in summaries (400)
} ExtractParams;

ExtractParams extract_default_params(void);
// the defaults with the miner's settings of experience.mine_* (io/config.h)
ExtractParams extract_params_from_config(const Config* c);

// counts of what one call did (from the audit entries it appended)
typedef struct {
    int added, updated, deleted, none;
    int pruned, capped;  // of the deleted: by pool_prune, by pool_enforce_cap
    int rejected;        // model operations that were skipped (llm)
} ExtractReport;

// ----------------------------------------------------------------------------
// one iteration

typedef struct {
    int granularity;  // Granularity (io/config.h)
    int extractor;    // Extractor (io/config.h), for principles
} ExperienceMode;

// statistics from the records (items shown; trajs may be NULL with n_trajs 0), prune, extract from
// the episode texts, cap. 0 on success; -1 with err only for a setup problem (a prompt template that
// does not load or render, a missing GenerateFn): bad model output is logged and skipped.
int experience_update(Pool* p, ExperienceMode mode, int32_t iteration, Trajectory* const* trajs,
                      const uint8_t* success, int n_trajs, const EpisodeText* eps, int n_eps,
                      const ExtractParams* prm, ExtractReport* report, char* err, size_t errlen);

// ----------------------------------------------------------------------------
// the extractors (each appends audited operations for `iteration`)

void extract_contrastive(Pool* p, const EpisodeText* eps, int n, int32_t iteration, const ExtractParams* prm);
void extract_instances(Pool* p, const EpisodeText* eps, int n, int32_t iteration, const ExtractParams* prm);
int extract_llm(Pool* p, const EpisodeText* eps, int n, int32_t iteration, const ExtractParams* prm, int* rejected,
                char* err, size_t errlen);

// ----------------------------------------------------------------------------
// the contrastive miner's ranked rules (what extract_contrastive turns into items)

typedef enum { RULE_FROM_TASK = 0, RULE_FROM_RESULT } RuleSource;

typedef struct {
    int source;          // RuleSource: the condition is in the task or in the last tool result
    char* phrase;        // the condition: 1..max_ngram lowercase words
    char* tool;          // the action taken next
    char* choice;        // with choices: the word marking the line of the last tool result it took, or NULL
    char* args;          // the argument every successful supporting step used, or NULL
    int args_from_obs;   // most successful supporting steps took their argument from the observation
    int n_with, s_with;  // steps with the condition and this action, and how many succeeded
    int n_other, s_other; // steps with the condition and another action, and how many succeeded
    int n_tasks;         // distinct tasks among the successful supporting steps
    double lift, score;  // smoothed lift, and lift minus z standard errors (the ranking key)
    int n_ev;
    TrajRef* ev;         // supporting episodes (both outcomes), in episode order
} Rule;

// every rule that passes the thresholds, best first, redundant ones removed; returns the count
int contrastive_mine(const EpisodeText* eps, int n, const ExtractParams* prm, Rule** rules);
void contrastive_rules_free(Rule* rules, int n);
// "Name" and "When ..., ..." text of a rule, and its merge key; malloc'd
void contrastive_render(const Rule* r, char** name, char** text, char** key);

#define CHOICE_MAX 32 // bytes of a choice word, with its NUL
// The line of a tool result a call took: where the call's argument (its one string value; args as
// compact JSON or as the bare value) is the head of a line of observation (after an optional list
// number, before a '-', ':', ',' or '|'), the first content word after it, lowercased; NULL when
// no line starts with it. malloc'd.
char* contrastive_choice(const char* observation, const char* args);

// ----------------------------------------------------------------------------
// the model's pool operations (llm extractor): the reply must hold a JSON array of
//   {"op": "ADD", "text": "Name: sentence"} | {"op": "UPDATE", "id": N, "text": "Name: sentence"}
//   {"op": "DELETE", "id": N} | {"op": "NONE"}   (each may carry "reason": "...")
// (a ```json fence or the outermost [...] of the reply). Whole-reply problems (no array, invalid
// JSON, an object instead of an array) reject everything; per-operation problems (unknown op or
// key, missing or mistyped field, unknown id, a text that breaks the item rules, a duplicate, an op
// on an item already deleted or updated in this reply, more than max_ops) skip that operation.

typedef struct {
    int op;        // PoolOpKind
    int32_t id;    // UPDATE, DELETE
    char* name;    // ADD, UPDATE
    char* text;
    char* reason;  // "" when not given
} LlmOp;

typedef struct {
    int n_ops;
    LlmOp* ops;    // (n_ops) the accepted operations, in reply order
    int n_msgs;
    char** msgs;   // (n_msgs) one line per rejected operation, or one for a rejected reply
} LlmOps;

// 0 when the reply held a usable array (some operations may still be rejected), -1 when it did not
int llm_parse_ops(const char* reply, const Pool* p, int max_ops, LlmOps* out);
void llm_ops_free(LlmOps* ops);
