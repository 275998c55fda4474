// The driver's state and the helpers its files share (mpi/driver.c: the job's loop; mpi/driver_eval.c:
// greedy episodes, the held-out evaluation and the validation of new pool items). Not a public
// interface: the rest of the code calls driver_run (mpi/driver.h).
#pragma once
#include <jansson.h>
#include <stdint.h>

#include "distill/judge.h"
#include "distill/pool.h"
#include "distill/trainer.h"
#include "io/metrics.h"
#include "model/backend_select.h"
#include "model/chat.h"
#include "model/tokenizer.h"
#include "mpi/ranks.h"
#include "mpi/writer.h"
#include "rollout/agent.h"
#include "rollout/env.h"

// an episode succeeded when the environment paid full reward (the built-ins pay 1 for a solved
// task, 0 otherwise); distill.reward_threshold only selects the teacher trajectories to train on
#define SUCCESS_REWARD 1.0

typedef struct {
    const Config* c;
    const RankLayout* l;
    int agg_root; // world rank of the aggregator that owns the pool

    Backend* be;
    Model* model;
    Tokenizer* tok;
    ChatFormat format;
    char boot_dir[CONFIG_PATH + 256]; // built-in models: the bootstrapped base model's directory

    Agent* agent;      // rollout ranks: a task's G samples per call
    Agent* eval_agent; // rollout ranks: one sample per held-out task
    Env** envs;        // rollout ranks: G environments (one per episode of a group)
    Pool* pool;        // aggregator root
    Writer writer;     // aggregator root, when the model writes principles or judges (experience.*: llm)
    char* judge_tmpl;  // the LLM judge's prompt template
    DistillTrainer* trainer;
    DevComm* nccl;       // the weight broadcast's NCCL over every rank, NULL: through host memory
    MetricsLog* metrics; // world rank 0
    ExpList exp;         // the pool as injected (every rank)
    char* pool_json;     // the pool as last broadcast, which a checkpoint stores (aggregator root)

    int start_iter;
    double t0;
    char err[2048];
} Driver;

// the outcome counts of a set of episodes (integers: their sums are exact in any order)
typedef struct {
    int64_t episodes, successes, turns, premature, tokens, truncated;
} Outcome;
static inline int driver_is_root(const Driver* d) { return d->l->world_rank == 0; }

// every rank learns whether any rank failed; the failing rank has already printed its reason
void driver_agree_or_abort(const Driver* d, int failed, const char* what);

// ----------------------------------------------------------------------------
// greedy episodes (mpi/driver_eval.c)

static inline double driver_ratio(int64_t a, int64_t b) { return b ? (double)a / (double)b : 0.0; }

// an evaluation: the student (no experience) and the teacher (the pool) on the same tasks
typedef struct {
    Outcome student, teacher;
    int64_t won_lost[2]; // tasks only the teacher solved, tasks only the student solved
} Eval;

// held-out tasks 0 .. eval.tasks-1, student and teacher
void driver_evaluate(Driver* d, int k, Eval* ev);
// the evaluation's fields of a metrics record
void driver_set_eval_fields(json_t* o, const Eval* ev);
// "student 0.391 | teacher 0.453 (won 7, lost 3, p 0.34)" for the log
void driver_eval_summary(const Eval* ev, char* out, size_t cap);
// the base model before any iteration: the reference row of the metrics ("type": "base")
void driver_evaluate_base(Driver* d);
// Tries the items iteration k added (ids >= first_new, in d->exp) on training tasks: order is the
// iteration's shuffle of the training split, whose first n_rolled tasks were rolled out. The
// aggregator root deletes from d->pool each item whose variant does not beat the pool without
// the new items; returns how many it deleted there (0 elsewhere). Collective over the world.
int driver_validate(Driver* d, int k, int32_t first_new, const int* order, int n_rolled);
