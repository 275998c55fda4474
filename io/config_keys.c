// The table of every configuration key: name, type, default, range and meaning.
// Adding a key = one line here + one field in Config (config.h); docs/CONFIG.md is
// regenerated with `build/ingrain config --doc > docs/CONFIG.md` (a test keeps it in sync).
#include <stddef.h>
#include <string.h>

#include "io/config.h"

// ----------------------------------------------------------------------------
// enum spellings, in the order of the C enums in config.h

static const char* const resume_modes[] = {"never", "auto", NULL};
static const char* const log_levels[] = {"debug", "info", "warn", "error", NULL};
static const char* const devices[] = {"cpu", "cuda", NULL};
static const char* const dtypes[] = {"f32", "bf16", NULL};
static const char* const envs[] = {"wikisearch", "textcraft", "retail", "external", NULL};
static const char* const granularities[] = {"principle", "instance", NULL};
static const char* const injections[] = {"stepwise", "global", NULL};
static const char* const extractors[] = {"contrastive", "llm", NULL};
static const char* const selectors[] = {"bm25", "llm", NULL};
static const char* const judges[] = {"env", "llm", NULL};
static const char* const regimes[] = {"off_policy", "on_policy", NULL};
static const char* const losses[] = {"forward_kl", "sft", "reverse_kl", "jsd", "reverse_kl_sampled", NULL};
static const char* const teachers[] = {"recorded", "recompute", NULL};

// ----------------------------------------------------------------------------
// the table

#define OFF(field) offsetof(Config, field)
#define SZ(field) sizeof(((Config*)0)->field)
#define BIG 1e18
#define TEXT_OF_(x) #x
#define TEXT_OF(x) TEXT_OF_(x)
#define INT_(k, f, d, lo, hi, doc) {k, CFG_INT, OFF(f), 0, d, lo, hi, NULL, doc}
#define I64_(k, f, d, lo, hi, doc) {k, CFG_INT64, OFF(f), 0, d, lo, hi, NULL, doc}
#define FLT_(k, f, d, lo, hi, doc) {k, CFG_FLOAT, OFF(f), 0, d, lo, hi, NULL, doc}
#define BOOL_(k, f, d, doc) {k, CFG_BOOL, OFF(f), 0, d, 0, 1, NULL, doc}
#define STR_(k, f, d, doc) {k, CFG_STRING, OFF(f), SZ(f), d, 0, 0, NULL, doc}
#define ENUM_(k, f, d, ch, doc) {k, CFG_ENUM, OFF(f), 0, d, 0, 0, ch, doc}

const ConfigKey config_keys[] = {
    // run
    STR_("run.name", run.name, "ingrain", "Name of the run, printed in logs and stored in checkpoints and metrics."),
    STR_("run.dir", run.dir, "runs/ingrain", "Run directory: effective config, metrics JSONL, checkpoints (created if missing)."),
    I64_("run.seed", run.seed, "1234", 0, 9007199254740991.0, "Seed of every random stream (sampling, tasks, data order); same config + seed = same numbers."),
    INT_("run.iterations", run.iterations, "3", 1, 100000, "Number of iterations K of rollout -> aggregate -> internalize -> sync -> evaluate."),
    ENUM_("run.resume", run.resume, "never", resume_modes, "'auto': continue from the newest complete checkpoint in run.dir if there is one (also `ingrain run --resume`)."),
    ENUM_("run.log_level", run.log_level, "info", log_levels, "Least severe log level printed."),
    // ranks
    BOOL_("ranks.colocate", ranks.colocate, "false", "Every rank plays every role (rollout, aggregator, trainer); the right choice on a small node."),
    INT_("ranks.trainer", ranks.trainer, "1", 1, 1e6, "Data-parallel trainer ranks (world ranks 0..trainer-1, packed per node). Ignored when colocated."),
    INT_("ranks.aggregator", ranks.aggregator, "1", 1, 1e6, "Experience aggregator ranks (after the trainers). Ignored when colocated."),
    INT_("ranks.rollout", ranks.rollout, "0", 0, 1e6, "Rollout worker ranks (the last ranks); 0 = every rank not in another group. Ignored when colocated."),
    // model
    STR_("model.name", model.name, "tiny", "Built-in model config (byte tokenizer) used when model.path is empty: tiny, small."),
    STR_("model.path", model.path, "", "Hugging Face model directory (config.json, *.safetensors, tokenizer.json); overrides model.name."),
    ENUM_("model.device", model.device, "cpu", devices, "Compute backend: cpu (OpenBLAS + OpenMP) or cuda (cuBLAS + own kernels; each rank takes GPU local_rank % GPUs on its node)."),
    ENUM_("model.dtype", model.dtype, "f32", dtypes, "Compute precision: f32, or bf16 (cuda only: bf16 tensor-core matmuls and attention with fp32 accumulation, activations and logits stored in bf16). Weights, gradients, optimizer state and the residual stream stay f32."),
    INT_("model.threads", model.threads, "0", 0, 4096, "OpenMP threads per rank; 0 = the cores of this node divided by the ranks on it."),
    INT_("model.max_seq_len", model.max_seq_len, "1024", 16, 1048576, "Longest sequence (prompt + generated) the model is run on."),
    // env
    ENUM_("env.name", env.name, "wikisearch", envs, "Environment: a built-in one, or 'external' (a subprocess speaking the JSON-lines protocol)."),
    STR_("env.command", env.command, "", "Command line of the external environment process (env.name: external)."),
    FLT_("env.timeout_s", env.timeout_s, "30", 0.001, 86400, "Seconds an external environment may take to answer one message before it is an error."),
    INT_("env.train_tasks", env.train_tasks, "64", 1, 1e7, "Tasks in the training split."),
    INT_("env.heldout_tasks", env.heldout_tasks, "32", 1, 1e7, "Tasks in the held-out split (evaluation)."),
    INT_("env.max_turns", env.max_turns, "16", 1, 1000, "Assistant turns per episode before it is cut off (counted as a failure)."),
    FLT_("env.trap_rate", env.trap_rate, TEXT_OF(ENV_TRAP_RATE_DEFAULT), 0.001, 1, "wikisearch only: share of the tasks with a trap page (a citizenship, a first city) where its country is not the answer, so that the place_page rule bites."),
    // rollout
    INT_("rollout.tasks_per_iter", rollout.tasks_per_iter, "16", 1, 1e7, "Training tasks sampled per iteration (the paper's batch)."),
    INT_("rollout.group_size", rollout.group_size, "5", 1, 1024, "Trajectories sampled per task, G (paper: 5)."),
    FLT_("rollout.temperature", rollout.temperature, "1.0", 0, 100, "Sampling temperature; 0 = greedy."),
    FLT_("rollout.top_p", rollout.top_p, "1.0", 1e-6, 1, "Nucleus sampling mass."),
    INT_("rollout.top_k", rollout.top_k, "0", 0, 1e7, "Sample among the k most likely tokens; 0 = no limit."),
    INT_("rollout.max_new_tokens", rollout.max_new_tokens, "96", 1, 1e6, "Tokens generated per assistant turn at most."),
    INT_("rollout.max_context", rollout.max_context, "1024", 16, 1048576, "Context tokens per episode at most; the episode ends (failed) past it."),
    INT_("rollout.teacher_topk", rollout.teacher_topk, "8", 1, 1024, "Teacher log-probs recorded per agent token (plus the tail mass) for off-policy distillation."),
    // experience
    ENUM_("experience.granularity", experience.granularity, "principle", granularities, "Pool items: abstract principles ('When [condition], [strategy]') or concrete instances of past trajectories."),
    ENUM_("experience.injection", experience.injection, "stepwise", injections, "'global': the whole pool once in the system prompt; 'stepwise': selected items before every assistant turn."),
    ENUM_("experience.extractor", experience.extractor, "contrastive", extractors, "Principle writer: 'contrastive' miner (any model) or 'llm' (Training-Free-GRPO pipeline with the loaded model)."),
    ENUM_("experience.selector", experience.selector, "bm25", selectors, "Step-wise selector: BM25 over the recent history, or the model choosing item ids."),
    ENUM_("experience.judge", experience.judge, "env", judges, "Trajectory judge: the environment's reward, or an LLM verdict (for environments without reward)."),
    INT_("experience.select_min", experience.select_min, "3", 1, 64, "Fewest items injected per step (step-wise)."),
    INT_("experience.select_max", experience.select_max, "8", 1, 64, "Most items injected per step (step-wise)."),
    BOOL_("experience.select_triggers", experience.select_triggers, "false", "Step-wise: an item that states its condition as the contrastive miner writes it ('When the last tool result mentions \"...\"') is shown exactly where that condition holds; the other items are picked by the selector."),
    INT_("experience.max_pool_size", experience.max_pool_size, "50", 1, 100000, "Pool capacity (paper: 50)."),
    INT_("experience.max_item_words", experience.max_item_words, "32", 4, 4096, "Longest principle, in words (paper: 32)."),
    FLT_("experience.prune_threshold", experience.prune_threshold, "-0.2", -1, 1, "Items whose utility (success lift when shown) falls below this are deleted."),
    INT_("experience.validate_tasks", experience.validate_tasks, "0", 0, 1e6, "Training tasks the iteration did not roll out, played as the evaluation plays (greedy at eval.temperature 0) with the pool without the items the iteration added and with each of them; an item that does not solve more of them is deleted (0: off; every item is kept)."),
    STR_("experience.seed_pool", experience.seed_pool, "", "Optional YAML file of items that form E_0; empty = start with an empty pool."),
    INT_("experience.mine_min_support", experience.mine_min_support, "3", 1, 1e6, "Contrastive miner: fewest steps with the condition and the action for a rule, and with the condition and another action."),
    INT_("experience.mine_min_tasks", experience.mine_min_tasks, "2", 1, 1e6, "Contrastive miner: fewest distinct tasks among a rule's successful steps (more keeps rules about one entity's name out)."),
    FLT_("experience.mine_min_lift", experience.mine_min_lift, "0.2", 0, 1, "Contrastive miner: smallest success lift of the action over the other actions under the condition."),
    FLT_("experience.mine_max_share", experience.mine_max_share, "1", 0, 1, "Contrastive miner: largest share of the steps with a rule's condition that may already take its action; 0.5 keeps only rules that tell the agent what it mostly does not do there (a rule restating its habit, such as visiting after search results, adds nothing and, shown to a tiny model, misleads it); 1: no limit."),
    FLT_("experience.mine_z", experience.mine_z, "1.64", 0, 10, "Contrastive miner: a rule's lift minus z standard errors must be > 0 (1.64: one-sided 95%)."),
    INT_("experience.mine_max_rules", experience.mine_max_rules, "5", 1, 1000, "Contrastive miner: rules added or updated per iteration at most."),
    INT_("experience.mine_max_ngram", experience.mine_max_ngram, "3", 1, 3, "Contrastive miner: longest condition phrase, in words."),
    BOOL_("experience.mine_choices", experience.mine_choices, "false", "Contrastive miner: a call whose argument heads a line of the last tool result is also the action 'tool on the result marked <first word after it>', so rules can say which result to take ('call visit on the result marked \"company\"'); the bootstrap's bank mines them too."),
    // distill
    ENUM_("distill.regime", distill.regime, "off_policy", regimes, "Internalization: off-policy (teacher trajectories) or on-policy (student trajectories scored by the teacher)."),
    ENUM_("distill.loss", distill.loss, "forward_kl", losses, "off_policy: forward_kl or sft; on_policy: reverse_kl (top-k buckets, or full with distill.teacher: recompute), reverse_kl_sampled (the sampled-token estimator) or jsd."),
    ENUM_("distill.teacher", distill.teacher, "recorded", teachers, "Teacher signal: the top-k (+ tail) recorded at rollout, or the full distribution recomputed on the trainers by a frozen copy of theta_k with the experience in context (docs/DISTILL.md)."),
    INT_("distill.epochs", distill.epochs, "5", 1, 10000, "Passes over each iteration's distillation data (paper: 5)."),
    FLT_("distill.lr", distill.lr, "1e-5", 0, 10, "Peak AdamW learning rate (paper: 1e-5 for a 4B model)."),
    FLT_("distill.min_lr_ratio", distill.min_lr_ratio, "0.1", 0, 1, "Cosine schedule floor, as a fraction of distill.lr."),
    INT_("distill.warmup_steps", distill.warmup_steps, "0", 0, 1e9, "Linear warmup steps of each iteration's schedule."),
    FLT_("distill.weight_decay", distill.weight_decay, "0.0", 0, 10, "AdamW decoupled weight decay (not applied to norms)."),
    FLT_("distill.beta1", distill.beta1, "0.9", 0, 0.999999, "AdamW beta1."),
    FLT_("distill.beta2", distill.beta2, "0.95", 0, 0.999999999, "AdamW beta2."),
    FLT_("distill.eps", distill.eps, "1e-8", 1e-30, 1, "AdamW epsilon."),
    FLT_("distill.grad_clip", distill.grad_clip, "1.0", 0, BIG, "Clip gradients to this global L2 norm; 0 = no clipping."),
    INT_("distill.micro_batch_tokens", distill.micro_batch_tokens, "4096", 16, 1e9, "Tokens per micro-batch on one trainer (memory bound)."),
    INT_("distill.batch_tokens", distill.batch_tokens, "16384", 16, 1e12, "Tokens per optimizer step over all trainers (gradient accumulation fills it)."),
    FLT_("distill.reward_threshold", distill.reward_threshold, "1.0", -BIG, BIG, "Off-policy rejection sampling: keep teacher trajectories with final reward >= this."),
    BOOL_("distill.nccl", distill.nccl, "true", "Trainers on GPUs, one per GPU: gradients and parameters move between GPUs by NCCL (exact int64 sums in fixed point), device to device; false, or a build without NCCL, stages them through host memory with MPI. In fixed point both give the same weights. The weight broadcast to every rank after each iteration follows the same rule."),
    FLT_("distill.jsd_beta", distill.jsd_beta, "0.5", 0, 1, "Generalised JSD mixing weight (distill.loss: jsd); 0 = forward KL, 1 = reverse KL."),
    // eval
    INT_("eval.tasks", eval.tasks, "32", 0, 1e7, "Held-out tasks evaluated per iteration (student and teacher); 0 = no evaluation."),
    INT_("eval.every", eval.every, "1", 1, 100000, "Evaluate every this many iterations (and always after the last)."),
    BOOL_("eval.base", eval.base, "true", "Evaluate the base model once before iteration 0 (student, and teacher with the seed pool if any): the 'base' row of the metrics, the reference for what the iterations do. Skipped where iteration 0 cannot change the model (no seed pool and a KL loss: nothing to distil), since its student is then the base model."),
    FLT_("eval.temperature", eval.temperature, "0", 0, 100, "Sampling temperature of the held-out evaluation; 0 = greedy (one deterministic answer per task, so success rates compare across iterations without sampling noise)."),
    // checkpoint
    INT_("checkpoint.every", checkpoint.every, "1", 1, 100000, "Write a checkpoint every this many iterations (and always after the last)."),
    INT_("checkpoint.keep_last", checkpoint.keep_last, "3", 1, 100000, "Complete checkpoints kept; older ones are deleted (never the newest)."),
    BOOL_("checkpoint.trajectories", checkpoint.trajectories, "false", "Store the iteration's trajectories in the checkpoint."),
    // bootstrap (docs/BOOTSTRAP.md)
    STR_("bootstrap.cache_dir", bootstrap.cache_dir, "runs/.bootstrap", "Where bootstrapped built-in models are cached, one HF directory per hash of the keys that determine them."),
    INT_("bootstrap.threads", bootstrap.threads, "0", 0, 4096, "OpenMP threads of the bootstrap, which runs while other ranks wait; 0 = every core of the node. Does not change the result's cache key."),
    INT_("bootstrap.episodes", bootstrap.episodes, "1000", 1, 1e7, "Scripted demonstration episodes a built-in model is bootstrapped on."),
    INT_("bootstrap.worlds", bootstrap.worlds, "1000", 1, 100000, "Environment worlds (seeds) the demonstrations are spread over (at most one per episode); the first is the run's own. Many worlds mean names the model cannot memorise, so it learns to copy them from its context."),
    INT_("bootstrap.copy_steps", bootstrap.copy_steps, "1500", 0, 1e7, "Steps of the copy warm-up on short synthetic text before the demonstrations, at most: it stops once copying is nearly exact (a mean loss under 0.08 per copied token over 25 steps); 0: none."),
    INT_("bootstrap.window_epochs", bootstrap.window_epochs, "2", 0, 10000, "Passes over short windows of the demonstrations (task, last call and result, one turn) before the whole episodes."),
    INT_("bootstrap.epochs", bootstrap.epochs, "2", 1, 10000, "Passes over the demonstrations."),
    FLT_("bootstrap.lr", bootstrap.lr, "2e-3", 0, 10, "Peak AdamW learning rate of the bootstrap (warmup, then cosine to a tenth; each phase warms up to it again). At 3e-3 the copying the warm-up forms did not survive the window passes with some seeds."),
    INT_("bootstrap.batch_tokens", bootstrap.batch_tokens, "2048", 64, 1e9, "Padded tokens per bootstrap optimizer step (small batches: more steps for the same tokens, which copying needs)."),
    FLT_("bootstrap.expert_rate", bootstrap.expert_rate, "0.35", 0, 1, "Chance that a demonstration's policy knows a hidden rule no item shows: below one half, the greedy student still errs where the rule bites, while the episodes that get past a trap teach the hops after it."),
    FLT_("bootstrap.share_global", bootstrap.share_global, "0.25", 0, 1, "Fraction of the demonstrations with a pool in the system prompt (global injection)."),
    FLT_("bootstrap.share_stepwise", bootstrap.share_stepwise, "0.35", 0, 1, "Fraction of the demonstrations with items before a turn (step-wise injection); the rest show no experience."),
    BOOL_("bootstrap.contrast", bootstrap.contrast, "false", "Demonstrations that contrast turns with and without experience: each window whose turn the shown items changed gets a copy without them and with the call the policy makes unshown, and the items drawn for a biting rule include one whose condition holds where it bites. Fits following far better teacher-forced, but did not raise agent-loop success in the runs measured (docs/BOOTSTRAP.md)."),
    INT_("bootstrap.max_pool", bootstrap.max_pool, "6", 1, 64, "Items in a demonstration's pool at most (relevant principles and distractors)."),
    INT_("bootstrap.mine_batches", bootstrap.mine_batches, "12", 0, 10000, "Batches of scripted episodes the contrastive miner runs on to find the principle texts to inject."),
    INT_("bootstrap.vocab_size", bootstrap.vocab_size, "0", 0, 4096, "0: the built-in model keeps the byte tokenizer; else a byte-level BPE of this many ids is trained on the demonstrations and saved with the weights (tokenizer.json), and the model's vocabulary is this size (at most 4096: the trainer counts pairs in a dense table of vocab_size^2)."),
};
const int config_nkeys = (int)(sizeof(config_keys) / sizeof(config_keys[0]));
_Static_assert(sizeof(config_keys) / sizeof(config_keys[0]) <= CONFIG_MAX_KEYS, "raise CONFIG_MAX_KEYS");

// ----------------------------------------------------------------------------
// lookups

int config_key_index(const char* key) {
    for (int i = 0; i < config_nkeys; i++) {
        if (strcmp(config_keys[i].key, key) == 0) return i;
    }
    return -1;
}

const ConfigKey* config_find_key(const char* key) {
    int i = config_key_index(key);
    return i < 0 ? NULL : &config_keys[i];
}

const char* config_enum_name(const char* key, int value) {
    const ConfigKey* k = config_find_key(key);
    if (!k || k->type != CFG_ENUM || value < 0) return "?";
    for (int i = 0; k->choices[i]; i++) {
        if (i == value) return k->choices[i];
    }
    return "?";
}
