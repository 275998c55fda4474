// Loss building blocks over the vocabulary: log-softmax, cross-entropy, and the three
// distillation losses of the method (full-vocabulary KL in both directions, top-k KL with a
// tail bucket, the sampled-token estimator). The trainer composes them: each block takes
// per-token weights w (N), writes (LOSS_DZ_SET) or adds (LOSS_DZ_ADD) w * dloss/dz into dz (N, V)
// and returns sum_n w[n] * loss[n], so a mixed loss is a SET call and ADD calls on the same dz.
// Rows with w == 0 are skipped (loss 0; dz 0 with SET, untouched with ADD).
//
// Notation per token (row) n: z = student logits (V), q = softmax(z), lq = log q.
// Teacher inputs are log-probabilities lp (normalised by the caller).
//
//   cross entropy      loss = -lq[y]                           dz = w (q - onehot(y)); y < 0 skips the row
//   forward KL (full)  loss = sum_v p_v (lp_v - lq_v)          dz = w (q * sum_v p_v - p)
//   reverse KL (full)  loss = sum_v q_v (lq_v - lp_v)          dz = w q (lq - lp - loss)
//
// Top-k with a tail bucket (K distinct ids per row, the teacher's log-probs lp_1..lp_K of those
// ids and its remaining probability mass `tail`): both distributions are collapsed to K + 1
// buckets. Teacher: P_i = exp(lp_i) / S, P_tail = tail / S with S = sum_i exp(lp_i) + tail, i.e.
// the teacher's buckets are renormalised to sum to 1 (top-k log-probs after temperature or
// truncation need not add up exactly). Student: Q_i = q[id_i], Q_tail = sum of q over the other
// V - K ids (summed directly in double, not as 1 - sum Q_i, so a tiny tail keeps its precision).
//   forward   loss = sum_b P_b (log P_b - log Q_b)   dz_v = w (q_v - P_i) for v = id_i,
//                                                    dz_v = w (q_v - P_tail q_v / Q_tail) otherwise
//   reverse   loss = sum_b Q_b (log Q_b - log P_b)   dz_v = w q_v (log Q_b(v) - log P_b(v) - loss)
// A bucket with zero probability contributes 0 where it is the weight (0 log 0 = 0); where it sits
// under the log it is floored at LOSS_PROB_FLOOR, so the loss stays finite.
//
// Sampled-token estimator (on-policy reverse KL from the student's own samples): the student
// sampled id y; the teacher gives lp_t = its log-prob of y; optionally old_lp = the sampling
// policy's log-prob of y when the student has moved since sampling (importance ratio).
//   c    = rho (lq[y] - lp_t),  rho = exp(lq[y] - old_lp) or 1 without old_lp   (c is detached)
//   loss = c  (an unbiased per-sample estimate of KL(q || p))
//   dz   = w c (onehot(y) - q)  (the score-function gradient: E[c grad log q(y)] = grad KL)
//
// The distillation objective's per-row pieces (distill/objective.h has their derivation):
//   entropy            H = -sum_v q_v lq_v (double), argmax = first index of max z
//   JSD (beta)         beta KL(P || M) + (1 - beta) KL(Q || M), M = beta P + (1 - beta) Q, on the
//                      K + 1 buckets (top-k) or the vocabulary (full); it also writes the surrogate
//                      teacher (log s_b = beta log Q_b + (1 - beta) log M_b, floored) whose reverse
//                      KL block has the JSD's gradient
//   sampled log-prob   the teacher's log-prob of a sampled id y from its top-k row: its own bucket
//                      when y is an id, else the tail spread like the student's: lP_tail + lq_y - lQ_tail
//
// All pointers are backend buffers (see ops.h). The CPU backend runs the row kernels at the
// bottom of this header, which are also what a reader should check the math against.
#pragma once
#include "model/ops.h"

#define LOSS_PROB_FLOOR 1e-30
#define LOSS_TOPK_MAX 1024 // largest K of the top-k block

// ----------------------------------------------------------------------------
// blocks (dispatch through the backend; N rows of V logits)

void loss_softmax(Backend* be, float* y, const float* z, int N, int V);
void loss_log_softmax(Backend* be, float* y, const float* z, int N, int V);
double loss_cross_entropy(Backend* be, const float* z, const int* targets, const float* w, int N, int V,
                          float* losses, float* dz, LossDzMode mode);
// reverse = 0: KL(p_teacher || q_student) (off-policy); reverse = 1: KL(q_student || p_teacher)
double loss_kl_full(Backend* be, const float* z, const float* teacher_lp, const float* w, int N, int V, int reverse,
                    float* losses, float* dz, LossDzMode mode);
// ids, teacher_lp (N, K); teacher_tail (N) probability mass outside the ids
double loss_kl_topk(Backend* be, const float* z, const int* ids, const float* teacher_lp, const float* teacher_tail,
                    const float* w, int N, int V, int K, int reverse, float* losses, float* dz, LossDzMode mode);
// ids, teacher_lp (N); old_lp (N) or NULL
double loss_kl_sampled(Backend* be, const float* z, const int* ids, const float* teacher_lp, const float* old_lp,
                       const float* w, int N, int V, float* losses, float* dz, LossDzMode mode);

// entropy (N, double; or NULL: the argmax alone) and argmax (N) of each row of z with w != 0
// (skipped rows: 0 and -1)
void loss_entropy(Backend* be, const float* z, const float* w, int N, int V, double* entropy, int* argmax);
// JSD(beta), 0 < beta < 1; returns sum_n (double)w[n] * jsd[n] (summed in row order); the
// surrogate goes to lp_s (N, K) and tail_s (N) (full: lp_s (N, V)), which may alias lp and tail
double loss_jsd_topk(Backend* be, const float* z, const int* ids, const float* lp, const float* tail, const float* w,
                     int N, int V, int K, double beta, float* lp_s, float* tail_s);
double loss_jsd_full(Backend* be, const float* z, const float* lp, const float* w, int N, int V, double beta,
                     float* lp_s);
// lp_y (N): on each row with w != 0 whose entry is NaN, the teacher's log-prob of id y[n] from its
// top-k row (the sampled log-prob above); other entries are kept
void loss_sampled_lp(Backend* be, float* lp_y, const float* z, const int* y, const int* ids, const float* lp,
                     const float* tail, const float* w, int N, int V, int K);

// ----------------------------------------------------------------------------
// host row kernels (one token's V logits; dz may be NULL; return the unweighted loss)

// max of z and log-sum-exp of z, with the exponentials summed in double
double loss_row_logsumexp(const float* z, int V);
float loss_row_cross_entropy(const float* z, int V, int target, float w, float* dz);
float loss_row_kl_full(const float* z, const float* lp, int V, int reverse, float w, float* dz);
float loss_row_kl_topk(const float* z, int V, const int* ids, const float* lp, float tail, int K, int reverse, float w,
                       float* dz);
float loss_row_kl_sampled(const float* z, int V, int id, float lp_t, const float* old_lp, float w, float* dz);
double loss_row_entropy(const float* z, int V, int* argmax);
int loss_row_argmax(const float* z, int V); // the first index of the max
// the JSD rows return jsd in double and write the surrogate (lp_s may alias lp)
double loss_row_jsd_topk(const float* z, int V, const int* ids, const float* lp, float tail, int K, double beta,
                         float* lp_s, float* tail_s);
double loss_row_jsd_full(const float* z, const float* lp, int V, double beta, float* lp_s);
float loss_row_sampled_lp(const float* z, int V, int y, const int* ids, const float* lp, float tail, int K);
