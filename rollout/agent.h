// The agent loop: a multi-turn, tool-using ReAct agent that turns a model, environments and an
// experience list into trajectory records, with the experience injected once in the system
// prompt (global), before every assistant turn (step-wise), or not at all (the student). Also the
// teacher scoring of student trajectories for on-policy distillation, and `ingrain bench rollout`.
// docs/AGENT.md describes the turn structure, the tool-call grammar, injection and the records.
//
// Token-in/token-out: the stored history is rendered by appending messages (model/chat.h) and the
// sampled ids are appended as they are; the decoder is fed exactly those ids (step-wise
// experience aside, which lives in the context of its own turn only), and the trajectory's tokens
// are the stored history's ids.
//
// Slots: episode i of a run decodes in decoder slot i; with the LLM selector, its selection
// prompt runs in slot max_episodes + i.
#pragma once
#include <stddef.h>
#include <stdint.h>

#include "io/config.h"
#include "model/chat.h"
#include "model/decode.h"
#include "model/model.h"
#include "model/tokenizer.h"
#include "rollout/env.h"
#include "rollout/inject.h"
#include "rollout/trajectory.h"

// ----------------------------------------------------------------------------
// options

typedef struct {
    ChatFormat format;
    int injection; // INJECTION_GLOBAL or INJECTION_STEPWISE (io/config.h); used when a run has experience
    int selector;  // SELECTOR_BM25 or SELECTOR_LLM (step-wise)
    SelectParams select;
    int max_turns;           // assistant turns per episode
    int max_context;         // tokens the model is run on per episode (stored history + this turn's experience + reply)
    int max_new_tokens;      // per assistant turn
    SamplingParams sampling; // record_topk = k of the teacher top-k recorded per agent token
    int group_size;          // G samples per task
    int max_episodes;        // episodes decoded at once (tasks per run x G at most)
    uint64_t seed;           // run seed
    const char* system_prompt; // template of the system message, "{tools}" replaced by the tool list; NULL: default
} AgentOptions;

// env.max_turns, rollout.*, experience.injection/selector/select_min/select_max, run.seed; ChatML;
// max_episodes = group_size
void agent_options_from_config(const Config* c, AgentOptions* o);

// ----------------------------------------------------------------------------
// the agent

typedef struct Agent Agent;

typedef struct {
    double t_prefill;  // seconds in the decoder feeding episodes' contexts (decoder_assign, prompt copies)
    double t_generate; // seconds in the decoder generating episodes' replies
    double t_env;      // seconds in env_reset and env_step
    double t_select;   // seconds choosing step-wise items (BM25, or the LLM selector's decoding)
    double t_total;    // seconds in agent_run
    double t_score;    // seconds in agent_score_teacher
    long episodes, turns, gen_tokens;
    long prefill_tokens, reused_tokens; // context tokens fed, and kept from the cache (or copied)
    long llm_selections;                // LLM-selector replies decoded
    long llm_fallbacks;                 // BM25 picks instead: replies that did not parse, prompts that did not fit
} AgentStats;

// NULL with err on invalid options (sampling parameters, sizes against the model, a chat format
// the tokenizer cannot render). The model and tokenizer must outlive the agent.
Agent* agent_create(Model* m, const Tokenizer* tok, const AgentOptions* o, char* err, size_t errlen);
void agent_free(Agent* a);
Decoder* agent_decoder(Agent* a);
const AgentStats* agent_stats(const Agent* a);
void agent_stats_reset(Agent* a);

// the system message text without experience, for env's tools (malloc'd)
char* agent_system_text(const Agent* a, const Env* env);

// the seed of one episode: its sampling Rng and the env_reset seed. It depends only on these
// values, so an episode samples the same tokens whatever rank, batch or slot runs it.
uint64_t agent_episode_seed(uint64_t run_seed, int iteration, EnvSplit split, int task, int sample, int teacher);

// For tests and tracing: called before each assistant turn is generated, with the ids the
// episode's decoder slot holds (the context the model samples from, step-wise experience included).
typedef void (*AgentContextFn)(void* ctx, int episode, int turn, const int* ids, int n);
void agent_set_context_tap(Agent* a, AgentContextFn fn, void* ctx);

// ----------------------------------------------------------------------------
// rollouts

typedef struct {
    EnvSplit split;
    int task;
} AgentTask;

// Runs group_size episodes of each of n_tasks tasks (n_tasks * group_size <= max_episodes), all
// decoded as one batch. envs holds one environment per episode (episode i = task i / G, sample
// i % G), each used by that episode only. exp NULL: the student (no experience); otherwise the
// teacher, with exp injected as AgentOptions.injection says (an empty list injects nothing but
// still marks the teacher). out[i] receives episode i's record (caller frees with traj_free).
// Returns 0, or -1 with err when an environment itself fails (nothing is left in out).
int agent_run(Agent* a, Env* const* envs, const AgentTask* tasks, int n_tasks, int iteration, const ExpList* exp,
              Trajectory** out, char* err, size_t errlen);

// ----------------------------------------------------------------------------
// teacher scoring (on-policy distillation)

// Recomputes, for every agent token of t, the teacher's top-k log-probs and tail mass with exp in
// context as the teacher would have seen it (global: in the system prompt; step-wise: per step,
// the selector's items at the start of a copy of the last user/tool message, selected from the stored
// history exactly as during a rollout), and writes them into t's top-k rows. teacher_lp (when not
// NULL, t->n_agent floats) receives the teacher's log-prob of each sampled token (row r = the
// r-th agent token, as the top-k rows), for the sampled-token estimator. Global experience already
// in t (a teacher record) is replaced, so a teacher record is rescored in its own context.
// Returns 0, or -1 with err (a record whose top-k width differs from the agent's, a message that
// does not render back to its ids, a context longer than the decoder holds).
int agent_score_teacher(Agent* a, Trajectory* t, const ExpList* exp, float* teacher_lp, char* err, size_t errlen);

// For distill.teacher: recompute (the trainers' frozen teacher recomputes the full distribution):
// records in t the context the teacher sees before each turn, as splices of the history (see
// Trajectory.n_tctx), and sets TRAJ_FLAG_TEACHER_VIEW. A teacher record (TRAJ_FLAG_TEACHER) gets
// what it was sampled with: its own global experience, or its recorded step-wise items (which
// must be in exp); a student record gets the contexts agent_score_teacher scores in. Consecutive
// turns with the same context share one entry; turns without experience get none. Returns 0, or
// -1 with err (as agent_score_teacher, or a recorded item missing from exp).
int agent_teacher_view(Agent* a, Trajectory* t, const ExpList* exp, char* err, size_t errlen);

// ----------------------------------------------------------------------------
// benchmark: `ingrain bench rollout` (options: --help)

int bench_rollout(int argc, char** argv);
