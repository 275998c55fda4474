// The row math of decoding's draws, shared by sample_token on the host (decode.h) and the
// backends' sample_rows op (ops.h): one draw from a row of logits at a given uniform, and the
// temperature-1 statistics recorded with it. Order of candidates: larger logit first, ties to the
// lower id.
#pragma once

// The id drawn from the logits z (V): temperature 0 takes the first index of the max; otherwise
// top_k (0 = no limit) keeps the k best, top_p (in (0, 1]) the shortest best-first prefix holding
// that much of their mass, and the draw, proportional to exp(z / temperature), walks the candidates
// (best first, or the whole vocabulary in id order when neither limits it) until the running sum
// passes u * total, u in [0, 1) (unused when greedy).
int sample_row_id(const float* z, int V, float temperature, float top_p, int top_k, double u);

// The temperature-1 statistics of token id (lse: the row's log-sum-exp, loss_row_logsumexp):
// *lp = its log-prob; with K > 0 (<= V) topk_ids, topk_lp (K) the K best, best first, and *tail
// = 1 - their probability mass (summed in double), clamped to [0, 1].
void sample_row_record(const float* z, int V, double lse, int id, int K, float* lp, int* topk_ids, float* topk_lp,
                       float* tail);
