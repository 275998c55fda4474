// The bootstrap of a built-in tiny base model: the stand-in for an instruction-tuned LLM on
// laptops and CI. A randomly initialised byte-level model knows nothing, not even the chat format,
// so before the first iteration it is trained on demonstrations from the configured built-in
// environment's scripted policies (docs/BOOTSTRAP.md):
//
//   student   no experience in context; the policy knows each hidden rule only with probability
//             bootstrap.expert_rate, so the model errs where the rules bite (and sometimes does not,
//             which gives the contrastive miner something to contrast)
//   global    a small pool in the system prompt (as the agent renders it); the policy also knows
//             every rule that a shown item conveys
//   stepwise  items selected by BM25 before one assistant turn, put at the start of a copy of the last
//             message (as the agent does); the turn follows the rules the shown items convey
//
// The items shown are a mix: principles the contrastive miner (extract_contrastive.c) finds in
// scripted episodes, rendered exactly as it renders them; the environment's own rule texts; and
// distractors (other environments' rules, mined rules that convey none) that must not change the
// action. Training is next-token cross-entropy on the assistant tokens of supervised turns only.
// The result is cached as an HF directory under bootstrap.cache_dir/<hash of everything that
// determines it>, so the next run loads it in seconds.
#pragma once
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "io/config.h"
#include "model/model.h"
#include "model/tokenizer.h"
#include "rollout/agent.h"
#include "rollout/env.h"

// bump when the demonstrations or the training change, so older caches are not reused
#define BOOTSTRAP_FORMAT 5
#define BOOTSTRAP_HASH_HEX 16

// ----------------------------------------------------------------------------
// the principle bank: what the demonstrations may inject

typedef enum { BANK_RULE = 0, BANK_MINED, BANK_FOREIGN } BankSource;

typedef struct {
    char* text;     // "Name: sentence", as the pool lists an item
    uint32_t rules; // the environment's rules it conveys (bit i = env->rules[i]); 0: a distractor
    int source;     // BankSource
    char* phrase;   // mined items: the condition ("the last tool result mentions PHRASE"); NULL: always
    int from_task;  // mined items: the condition is on the task (else on the last tool result)
    char* tool;     // mined items that name a result: the tool and the word marking the result's
    char* choice;   // line (experience.mine_choices); NULL otherwise
} BankItem;

typedef struct {
    int n, cap;
    BankItem* items; // (n) in the order they were found; texts are distinct
} Bank;

// Builds the bank of a built-in environment: its rule texts, the rules the contrastive miner finds
// in `batches` batches of scripted episodes (16 tasks x 5 samples each, as an iteration's rollouts,
// the policy knowing each rule with a probability drawn per batch), each mapped to the environment
// rules whose knowledge makes the policy take the mined action where the mined condition holds,
// and the other built-in environments' rule texts as foreign distractors. Deterministic in seed;
// trap_rate is env.trap_rate (0: its default).
// -1 with err when the environment has no rules (external) or cannot be created. choices: the
// miner also tells which result a call took (experience.mine_choices).
int bank_build(Bank* b, const char* env_name, uint64_t seed, double trap_rate, int batches, int choices, char* err,
               size_t errlen);
// the bank of a config: env.name, run.seed, env.trap_rate, bootstrap.mine_batches, experience.mine_choices
int bank_build_config(Bank* b, const Config* c, char* err, size_t errlen);
void bank_free(Bank* b);
// 1 when the item's condition holds for an observation (obs_is_task: the observation is the task):
// a mined item's phrase occurs in it, as the miner reads observations; other items always hold
int bank_item_applies(const BankItem* it, const char* obs, int obs_is_task);
// whether action (tool, args_json) at observation obs is what an item that names a result says:
// its tool on the line it names; 1 for every other item
int bank_item_directs(const BankItem* it, const char* obs, const char* tool, const char* args_json);
// the item "Name: text" of a rule: the id with '_' as spaces, capitalised ("Pick kind: When ...")
char* bank_rule_item(const EnvRule* r);

// ----------------------------------------------------------------------------
// demonstrations

typedef enum { DEMO_STUDENT = 0, DEMO_GLOBAL, DEMO_STEPWISE, DEMO_MODES } DemoMode;

typedef struct {
    int mode;        // DemoMode
    int task;        // train-split task index of its world
    int world;       // which world (0 = the run's own seed)
    int n;           // tokens
    int* ids;        // (n) ChatML ids
    uint8_t* seg;    // (n) Segment (model/chat.h)
    uint8_t* target; // (n) 1: ids[t] is a supervised assistant token (predicted from position t-1)
    int n_turns;     // assistant turns in the sequence
    int n_followed;  // supervised turns whose action a shown item changed
    uint32_t shown;  // rules conveyed by the items shown in the sequence
    int window;      // a window: the task, the previous call and result and one turn, no system message
    int has_exp;     // experience is shown (tagged SEG_EXPERIENCE)
} Demo;

typedef struct {
    int n, cap;
    Demo* d; // (n)
} DemoSet;

typedef struct {
    int episodes;        // bootstrap.episodes
    int worlds;          // bootstrap.worlds: environment worlds the episodes are spread over
    double expert_rate;  // bootstrap.expert_rate: P(the policy knows an unshown rule), per episode and rule
    double share_global; // fractions of the episodes with global / step-wise experience; the rest are students
    double share_stepwise;
    int select_min, select_max; // experience.select_min/max
    int select_triggers;        // experience.select_triggers
    int contrast;        // bootstrap.contrast: counterfactual windows, items drawn where their rule bites
    int max_pool;        // items in a demonstration's pool at most
    int max_turns;       // env.max_turns
    int max_context;     // rollout.max_context: longer sequences are cut
    int train_tasks;     // env.train_tasks: tasks per world
    double trap_rate;    // env.trap_rate
    uint64_t seed;       // run.seed
} DemoParams;

DemoParams demo_params_from_config(const Config* c);

// The experience text of items idx[0..n) of texts (NULL idx: all n), as the agent renders it
// (rollout/inject.h): "\n\n" heading "\n- item" per item.
char* demo_render_experience(char* const* texts, const int* idx, int n, int global);

// Generates the demonstrations of the environment named `env_name` (worlds from p->seed). The
// agent gives the system text and the step-wise selection query, so the contexts are the ones it
// builds at run time. 0, or -1 with err (an environment that fails).
// windows (NULL: none) receives one short sequence per turn that needs no unseen experience: the
// task, the previous call and its result, the turn (with its step-wise items if they changed it),
// no system message; cheap to train on, they teach the copying and the decisions first.
int demos_build(DemoSet* set, DemoSet* windows, const char* env_name, const Bank* bank, Agent* agent,
                const DemoParams* p, char* err, size_t errlen);
void demos_free(DemoSet* set);

// ----------------------------------------------------------------------------
// training, the cache, evaluation

typedef struct {
    int epochs;          // bootstrap.epochs
    double lr;           // bootstrap.lr (peak)
    int batch_tokens;    // bootstrap.batch_tokens: padded tokens per optimizer step
    int warmup_steps;    // 0: 5% of the steps
    int max_batch, max_seq; // the model's limits (model_create)
    uint64_t seed;
    int log_every;       // steps between progress lines (0: none)
    const char* phase;   // named in the progress lines ("windows pass 1 of 2"); NULL: "episodes"
} TrainParams;

TrainParams bootstrap_train_params(const Config* c);

typedef struct {
    long steps, tokens, target_tokens;
    double seconds;
    double first_loss, last_loss; // mean CE per target token over the first and the last 10% of steps
} TrainReport;

// The copy warm-up: `steps` AdamW steps on batches of short synthetic sequences that are all
// copying ("filler <span> filler\nspan"), so the model's attention learns to copy from its
// context before it meets the demonstrations (see bootstrap_train.c).
void bootstrap_copy_warmup(Model* m, const Tokenizer* tok, int steps, double lr, uint64_t seed, TrainReport* r);
// Tokens per row of the warm-up: 128 with the byte tokenizer, fewer with a BPE's shorter examples.
int bootstrap_copy_rows(const Tokenizer* tok, uint64_t seed);
// Trains m on the demonstrations (cross-entropy on target tokens only), from its current weights.
void bootstrap_train(Model* m, const DemoSet* set, const TrainParams* p, TrainReport* r);

// Trains a byte-level BPE of vocab_size ids on the text of the sequences (their byte ids; the
// specials split it) and writes it to path as an HF tokenizer.json: ids 0..287 as the byte
// tokenizer's (model/tokenizer_byte_vocab.h), merges after them (see bootstrap_bpe.c). Fewer ids
// are used when the text has no more pairs that occur twice. 0, or -1 with err.
int bpe_train(const DemoSet* set, int vocab_size, const char* path, char* err, size_t errlen);

// The cache key: a hash of every config key and constant that determines the bootstrapped
// weights (model config, environment, seed, context, selector sizes, bootstrap.* but the cache
// directory, the agent's system text, the injection headings, BOOTSTRAP_FORMAT), as
// BOOTSTRAP_HASH_HEX hex digits. 0, or -1 with err (model.name is not built in, no environment).
int bootstrap_hash(const Config* c, char out[BOOTSTRAP_HASH_HEX + 1], char* err, size_t errlen);
// The cache directory of the config's bootstrapped model (bootstrap.cache_dir/<model>-<env>-<hash>),
// whether it exists or not. 0, or -1 with err (as bootstrap_hash).
int bootstrap_dir(const Config* c, char* dir, size_t dirlen, char* err, size_t errlen);

// The driver's entry: when model.path is empty, makes sure the bootstrapped weights of the
// built-in model.name exist (the cache, or built and saved now, which takes minutes) and writes
// their directory (bootstrap.cache_dir/<model>-<env>-<hash>) to dir; dir is left empty when
// model.path is set (a real model needs no bootstrap). Call it on one rank; concurrent callers
// are safe (each builds into a temporary directory, renamed when complete). 0, or -1 with err.
int bootstrap_ensure(const Config* c, char* dir, size_t dirlen, char* err, size_t errlen);
// The tokenizer of the bootstrapped model in dir: the byte tokenizer, or with bootstrap.vocab_size
// the one learned with it (dir/tokenizer.json), and then *vocab_size (the model config's) is set
// to bootstrap.vocab_size. NULL with err when the file cannot be loaded or does not fit.
Tokenizer* bootstrap_tokenizer(const Config* c, const char* dir, int* vocab_size, char* err, size_t errlen);
// Loads bootstrapped weights from dir into m (made from the same built-in config). 0, or -1 with
// err naming the file and what does not match.
int bootstrap_load(Model* m, const char* dir, char* err, size_t errlen);

#define BOOTSTRAP_EVAL_ITEMS 8
#define BOOTSTRAP_EVAL_RULES 8

typedef struct {
    int tasks;                 // held-out tasks evaluated
    double student;            // success without experience
    double teacher_rules;      // success with the environment's rule texts in context
    double teacher_mined;      // success with the pool mined from the model's own rollouts (iteration 0)
    double rollout_success;    // success of those rollouts (sampled, no experience)
    double parse_rate;         // assistant turns whose reply holds a well-formed tool call (greedy runs)
    double turns_student;      // mean assistant turns of the student
    double seconds;
    int n_mined;
    char mined[BOOTSTRAP_EVAL_ITEMS][256]; // the mined pool's items
    // teacher-forced windows (demos_build): [0] the bootstrap's own, [1] fresh ones from other
    // worlds; by kind: whose turn the shown items changed, with items that did not, without items
    int win_n[2][3], win_exact[2][3]; // windows, and those whose every supervised token is the argmax
    int win_tool[2][3];               // those whose tokens up to the end of the tool name are
    // the changed turns by the environment rule the shown items convey (a turn counts for each)
    int n_rules;
    char rule_ids[BOOTSTRAP_EVAL_RULES][32];
    int rule_n[2][BOOTSTRAP_EVAL_RULES], rule_tool[2][BOOTSTRAP_EVAL_RULES], rule_exact[2][BOOTSTRAP_EVAL_RULES];
    // held-out success by the rules a task bites ([r], a task counts for each; [BOOTSTRAP_EVAL_RULES]:
    // tasks no rule bites):
    // tasks, and successes of the student, the teacher with the rule texts, with the mined pool
    int bite_n[BOOTSTRAP_EVAL_RULES + 1], bite_ok[3][BOOTSTRAP_EVAL_RULES + 1];
} BootstrapEval;

// Greedy episodes of m through the agent loop on the first `tasks` held-out tasks of the run's
// world, without experience, with the rule texts, and with the pool iteration 0 would mine from
// the model's own student rollouts (experience.injection decides how it is injected); and the
// teacher-forced accuracy on demonstration windows (does the model fit the turns the items change,
// and does that carry to worlds it has not seen). 0 or -1.
int bootstrap_evaluate(Model* m, const Tokenizer* tok, const Config* c, int tasks, BootstrapEval* ev, char* err,
                       size_t errlen);
void bootstrap_eval_print(const BootstrapEval* ev, FILE* out);

// `ingrain bootstrap CONFIG [--set K=V]... [--force] [--eval N]`
int cli_bootstrap(int argc, char** argv);
