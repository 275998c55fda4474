// The distillation trainer: one iteration of context distillation (off-policy or on-policy) on
// the data-parallel trainer ranks of a communicator, with a ZeRO-1 sharded AdamW, and the weight
// broadcast that hands theta_{k+1} to the rollout ranks. docs/DISTILL.md has the full story.
//
// Losses, per agent token of the student view (the shards hold it: every experience segment
// removed), position t predicting token t + 1 (model/loss.h has the math of every block):
//   forward_kl  KL(p_teacher || q_student) on the recorded top-k + tail bucket  (loss_kl_topk)
//   sft         cross-entropy on the teacher's sampled tokens                   (loss_cross_entropy)
//   reverse_kl  KL(q_student || p_teacher) on the top-k + tail buckets          (loss_kl_topk reverse)
//   reverse_kl_sampled  the sampled-token estimator of the same                 (loss_kl_sampled)
//   jsd         generalised JSD(beta) of GKD between the bucketed distributions, composed from
//               loss_kl_topk reverse with a surrogate teacher (objective.h)
// With teacher_recompute (distill.teacher: recompute) the teacher is a frozen copy of the weights
// at the start of each iteration, run on every micro-batch with the experience in context as the
// records' teacher contexts say (teacher.h), and the losses use its full distribution:
// forward_kl and reverse_kl become loss_kl_full, jsd the full-vocabulary JSD, and the sampled
// estimator takes the exact log p(y).
//
// Determinism: the same data, config and seed give bit-identical weights and metrics on any
// number of trainers (with the same backend and threads per trainer). The micro-batches are a
// function of the global data only (canonical order, seeded shuffle per epoch, packing by token
// budget), each micro-batch's gradient is added to an int64 fixed-point accumulator (integer sums
// are exact, so the grouping of micro-batches over trainers does not matter), and every other
// reduction (loss metrics, gradient norm) is summed in a fixed order. DISTILL_REDUCE_FLOAT sums
// float gradients instead (the plain baseline; not reproducible across trainer counts).
#pragma once
#include <mpi.h>
#include <stddef.h>
#include <stdint.h>

#include "distill/shards.h"
#include "io/ckpt.h"
#include "io/config.h"
#include "model/devcomm.h"
#include "model/model.h"

// ----------------------------------------------------------------------------
// options

typedef enum {
    DISTILL_LOSS_FORWARD_KL = 0,
    DISTILL_LOSS_SFT,
    DISTILL_LOSS_REVERSE_KL,
    DISTILL_LOSS_REVERSE_KL_SAMPLED,
    DISTILL_LOSS_JSD,
} DistillLoss;

typedef enum { DISTILL_REDUCE_FIXED = 0, DISTILL_REDUCE_FLOAT } DistillReduce;

// fixed-point gradients: the first attempt of a step assumes |g| < 2^DISTILL_FP_ASSUMED_EXP in
// every element of every micro-batch gradient; a step that exceeds it is recomputed once with the
// exponent of the measured maximum (see distill_fp_exponent)
#define DISTILL_FP_ASSUMED_EXP 8

typedef struct DistillStepMetrics DistillStepMetrics;
typedef void (*DistillStepFn)(void* ctx, const DistillStepMetrics* m);

typedef struct {
    DistillLoss loss;
    double jsd_beta;        // DISTILL_LOSS_JSD: 0 = forward KL, 1 = reverse KL (TRL's convention)
    int epochs;             // passes over the iteration's data
    int micro_batch_tokens; // padded tokens (B x T) per forward/backward
    long batch_tokens;      // real tokens per optimizer step over all trainers
    int max_batch, max_seq; // the Model was created with at least these (model_create)
    AdamWConfig adamw;      // lr, floor, warmup, betas, eps, decay, clip (total_steps is set per iteration)
    uint64_t seed;          // data order
    DistillReduce reduce;   // fixed point (reproducible on any trainer count) or float
    int fp_max_exp;         // fixed point: first assume |g| < 2^fp_max_exp (0: DISTILL_FP_ASSUMED_EXP)
    size_t bucket_bytes;    // collectives move at most this many bytes per call
    int nccl;               // GPU trainers, one per GPU: gradients and parameters move by NCCL (distill.nccl)
    int check_sync;         // hash the weights of every trainer after every step (debug)
    DistillStepFn on_step;  // optional, called on every trainer after every optimizer step
    void* on_step_ctx;
    int teacher_recompute;  // the full teacher distribution from a frozen copy (distill.teacher: recompute)
    int teacher_max_len;    // recompute: the longest teacher context (0: max_seq); rollout.max_context
} DistillOptions;

// 0 if the config's distill.* keys can be trained here, else -1 with err naming the key and its
// origin (reverse_kl_sampled off-policy; sft with distill.teacher: recompute)
int distill_check_config(const Config* c, char* err, size_t errlen);
// options from the config: loss, beta, epochs, budgets, AdamW, seed = run.seed, max_seq =
// model.max_seq_len, max_batch = max(1, micro_batch_tokens / max_seq); fixed-point reduction,
// 16 MiB buckets, nccl = distill.nccl, check_sync when run.log_level is debug; teacher_recompute, teacher_max_len =
// max(rollout.max_context, max_seq)
void distill_options_from_config(DistillOptions* o, const Config* c);

// ----------------------------------------------------------------------------
// the trainer

typedef struct DistillTrainer DistillTrainer;

// Collective over comm (the trainer group). The model's weights must be identical on every
// trainer (checked at the start of every distill_train). The trainer keeps AdamW moments only for
// its ZeRO-1 slice, ckpt_shard(n_params, CKPT_F32, rank, size): the checkpoint writes whole blocks.
// With teacher_recompute it also holds the frozen teacher: a second Model of the same config
// (parameters, a KV cache of teacher_max_len tokens) and a (max_batch, max_seq, V) buffer of its
// rows; distill_train refreshes it from the model's weights when it starts (theta_k).
DistillTrainer* distill_trainer_create(Model* m, const DistillOptions* o, MPI_Comm comm);
void distill_trainer_free(DistillTrainer* t);
const DistillOptions* distill_trainer_options(const DistillTrainer* t);

struct DistillStepMetrics {
    int iteration, epoch;
    long step;         // optimizer step within the iteration (0-based)
    long global_step;  // AdamW updates applied so far over all iterations (this one included)
    double loss;       // the optimised loss, mean per loss token
    double kl_forward; // KL(p_teacher || q_student) on the top-k + tail buckets (recompute: full), mean per token
    double kl_reverse; // KL(q_student || p_teacher) on the same buckets (recompute: full)
    double top1_agree; // fraction of tokens where the student's argmax is the teacher's top-1 (argmax)
    double entropy;    // student entropy over the full vocabulary (nats), mean per token
    double grad_norm;  // global L2 norm before clipping
    double lr;
    long tokens, loss_tokens; // real tokens of the step over all trainers, tokens with a loss
    int micro_batches;
    int fp_exponent;     // fixed-point scale 2^fp_exponent used (0 in float mode)
    int recomputed;      // 1 if the step overflowed the assumed range and was recomputed
    double seconds;      // wall time of the step on this trainer
    double comm_seconds; // of which in gradient reduce-scatter + parameter all-gather
    double wait_seconds; // of which waiting for the slowest trainer's micro-batches
    double tokens_per_s; // tokens / seconds
};

typedef struct {
    int n_steps;
    DistillStepMetrics* steps; // (n_steps)
    int sequences;             // sequences trained on (each epoch sees all of them)
    long tokens;               // real tokens over all epochs and trainers
    double seconds, comm_seconds, wait_seconds;
} DistillReport;

// Train on one iteration's data: `local` is this trainer's shard (the shards of all trainers
// together are the iteration's data; their split does not change the result). Collective over
// the trainer communicator. Returns 0, or -1 with err (the same on every trainer) when the data
// cannot be trained on: a sequence longer than max_seq, a token id outside the vocabulary,
// missing or inconsistent teacher top-k; with teacher_recompute, missing teacher contexts
// (TRAJ_FLAG_TEACHER_VIEW) or one longer than teacher_max_len. `report` (may be NULL) receives
// the step metrics.
int distill_train(DistillTrainer* t, const Shard* local, int iteration, DistillReport* report, char* err,
                  size_t errlen);
void distill_report_free(DistillReport* r);

// 1 if this trainer's gradients and parameters move by NCCL (distill.nccl and every trainer on a
// GPU of its own), 0 if they stage through host memory
int distill_trainer_uses_nccl(const DistillTrainer* t);

// 0 if every trainer holds bit-identical weights, else -1 with err naming the differing ranks
// (collective; XXH3 of the whole parameter vector)
int distill_trainer_check_sync(DistillTrainer* t, char* err, size_t errlen);

// ----------------------------------------------------------------------------
// ZeRO-1 optimizer state (for checkpoints)

// this trainer's slice [offset, offset + count) of the n_params-element moment vectors
void distill_trainer_slice(const DistillTrainer* t, uint64_t* offset, uint64_t* count, uint64_t* n_params);
long distill_trainer_steps_done(const DistillTrainer* t);
// host copies of this slice's moments (count floats each) and the AdamW step count
void distill_trainer_state_get(DistillTrainer* t, float* m, float* v, long* steps_done);
void distill_trainer_state_set(DistillTrainer* t, const float* m, const float* v, long steps_done);
// Collective over f's communicator: writes m and v as 1-D sharded datasets of n_params floats.
// Ranks that are not trainers pass t = NULL (they write nothing); n_params is the same everywhere.
void distill_state_write(DistillTrainer* t, CkptFile* f, const char* m_path, const char* v_path, uint64_t n_params);
// Reads this trainer's slice from datasets written with any number of trainers (independent
// reads). 0, or -1 with err naming the file and dataset.
int distill_state_read(DistillTrainer* t, CkptFile* f, const char* m_path, const char* v_path, long steps_done,
                       char* err, size_t errlen);

// ----------------------------------------------------------------------------
// weight sync

// NCCL over comm (collective) when every rank of it runs on a GPU of its own, decided alike on
// every rank before any NCCL call (an initialisation that one rank skipped would hang the
// others); else NULL, the reason logged (a warning when two ranks share a GPU). `what` names
// the traffic for the messages.
DevComm* distill_nccl_open(Backend* be, MPI_Comm comm, const char* what);
// Broadcast the weights of `root` (a rank of comm) to every rank of comm. With nccl (over the
// same ranks) GPU to GPU in place; else bucket by bucket into a host staging copy, uploaded into
// each model only once complete, so no rank's model is ever half-updated. Collective. Every
// rank's model must have the same parameter count (checked).
void distill_broadcast_weights(Model* m, int root, MPI_Comm comm, size_t bucket_bytes, DevComm* nccl);
// XXH3 of the whole parameter vector (identical weights <=> identical hashes, up to collisions)
uint64_t distill_weights_hash(Model* m);

// ----------------------------------------------------------------------------
// fixed-point gradient arithmetic (reduce.c; exposed for tests and the benchmark)

// Exponent k of the scale 2^k for n_micro micro-batches whose gradient elements are < 2^max_exp
// in magnitude: k = 61 - ceil(log2(n_micro)) - max_exp, so each quantized element is
// < 2^(62 - ceil(log2 n_micro)) and the sum of all n_micro of them is < 2^62 (no int64 overflow
// anywhere, in any order). Resolution 2^-k; e.g. 16 micro-batches, max_exp 8: k = 49, 1.8e-15.
int distill_fp_exponent(int n_micro, int max_exp);
// The bound on |g * 2^k| for one of n_micro micro-batches: 2^(62 - ceil(log2 n_micro)), so that
// n_micro such terms cannot overflow int64. Each micro-batch gradient is added to the int64 sums
// as round(g * 2^k) (Backend.fp_accumulate, or fixed_accumulate of model/fixed_point.h on the
// host); an element not finite or at or past the bound is not added and makes the caller
// recompute with a smaller k.
double distill_fp_limit(int n_micro);
