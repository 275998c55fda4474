// The distillation objective of one micro-batch: the host batch built from student-view records,
// the loss composed from the model/loss.h blocks into dlogits, and the per-token metrics.
//
// Rows: in a sequence, the logits at position t predict token t + 1, so every agent token i >= 1
// makes one loss row at position i - 1 with target tokens[i] (the sampled id) and that token's
// teacher top-k row. An agent token at position 0 has no predicting position and no loss.
//
// Two variants need a pass over the student's row before the block runs (loss.h's JSD and
// sampled log-prob row ops, on the backend, like the metrics):
//   jsd (0 < beta < 1)  generalised JSD of GKD (TRL's convention) between the bucketed teacher P
//                       and student Q (top-k + tail, as in loss_kl_topk), M = beta P + (1-beta) Q:
//                         loss = beta KL(P || M) + (1 - beta) KL(Q || M)
//                       dloss/dQ_b = (1 - beta) log(Q_b / M_b), so dz_v = q_v (g_b(v) - sum_b Q_b g_b):
//                       exactly the gradient of loss_kl_topk reverse against a surrogate teacher
//                       P'_b ~ Q_b^beta M_b^(1-beta) (Q, M detached; the block renormalises P').
//                       beta = 0 is forward KL, beta = 1 reverse KL (the limits TRL special-cases).
//   reverse_kl_sampled  loss_kl_sampled needs the teacher's log-prob of the sampled id y: the
//                       record's exact one when it carries teacher_lp (on-policy scoring), else
//                       the renormalised top-k log-prob when y is in the top-k, else the tail
//                       bucket spread like the student's tail: log P_tail + log q_y - log Q_tail.
//                       The importance ratio uses the record's logprob (the sampler's, at
//                       temperature 1) as old_lp.
//
// With the teacher's full distribution (distill.teacher: recompute, teacher.h) the same losses
// run over the whole vocabulary: forward_kl and reverse_kl are loss_kl_full, jsd composes
// loss_kl_full reverse with the surrogate teacher lp'_v = beta lq_v + (1 - beta) log M_v (the
// reverse block's gradient needs no normalisation), reverse_kl_sampled takes log p(y) from the
// full row, and the metrics are full-vocabulary KLs and the teacher's argmax.
#pragma once
#include <stdint.h>

#include "distill/trainer.h"
#include "model/ops.h"
#include "rollout/trajectory.h"

// ----------------------------------------------------------------------------
// the metrics of one row: their host reference (the objective computes them with the backend's
// row ops, loss.h, and the tests check it against these)

typedef struct {
    double kl_forward, kl_reverse; // on the top-k + tail buckets (loss_row_kl_topk); NaN if K == 0
    double entropy;                // of the student over the vocabulary
    double agree;                  // 1 if argmax z (ties: lowest id) is the teacher's top-1; NaN if K == 0
} DistillRowStats;

void distill_row_stats(const float* z, int V, const int* ids, const float* lp, float tail, int K, DistillRowStats* out);
// the same statistics against the teacher's full log-probabilities lp (V): KLs over the
// vocabulary, agreement of the two argmaxes (ties: lowest id)
void distill_row_stats_full(const float* z, const float* lp, int V, DistillRowStats* out);

// ----------------------------------------------------------------------------
// the micro-batch on the host

typedef struct {
    int B, T, K;   // K = teacher top-k of the records (0: none recorded)
    int* tokens;   // (B, T) right-padded with 0
    int* lengths;  // (B)
    int n_rows;    // loss rows
    int* pos;      // (n_rows) flat position b * T + t of each row
    int* target;   // (n_rows) the token the row predicts
    int* ids;      // (n_rows, K) teacher top-k ids
    float* lp;     // (n_rows, K) teacher top-k log-probs
    float* tail;   // (n_rows) teacher tail mass
    float* old_lp; // (n_rows) the sampler's log-prob of target
    float* exact;  // (n_rows) the teacher's log-prob of target from the record (teacher_lp), NaN if none
    float weight;  // of every row: 1 / loss tokens of the optimizer step
    int cap_tokens, cap_B, cap_rows, cap_K;
} DistillBatch;

// the batch of seqs[0..B) padded to T (>= every length); the records share one topk
void distill_batch_fill(DistillBatch* b, Trajectory* const* seqs, int B, int T, float weight);
void distill_batch_free(DistillBatch* b);

// ----------------------------------------------------------------------------
// the objective

typedef struct {
    double loss;                   // sum over rows of weight * loss
    double kl_forward, kl_reverse; // sums over rows (unweighted)
    double agree, entropy;
} DistillStats;

typedef struct DistillObjective DistillObjective;

DistillObjective* distill_objective_create(Backend* be, DistillLoss loss, double jsd_beta, int V);
void distill_objective_free(DistillObjective* o);
// logits, dz: backend (B * T, V). Writes weight * dloss/dz over dz (every row: 0 where a token has
// no weight; LOSS_DZ_SET, so the caller zeroes nothing) and adds the batch's sums into st.
// teacher: NULL (the records' top-k rows), or the teacher's full log-probabilities, backend
// (B * T, V) at the rows' positions (distill_teacher_rows); jsd overwrites those rows with its
// surrogate teacher.
void distill_objective_run(DistillObjective* o, const float* logits, const DistillBatch* b, float* teacher, float* dz,
                           DistillStats* st);
