// Batched incremental decoding with a KV cache, and sampling. A Decoder holds up to max_batch
// sequences ("slots"), each with its own KV cache of up to max_len tokens. Callers feed tokens
// (prefill), sample from the last position's logits, roll a slot back to a prefix (to drop
// step-wise experience after a turn), or copy a slot's cache (to share a prompt across G samples).
// Token-in/token-out: the ids fed are exactly the ids stored in the trajectory.
//
// Every sampled token comes with its log-probability and the top-k log-probabilities of the
// same distribution with the tail mass outside them: the teacher signal of off-policy
// distillation. These are taken from the model's distribution at temperature 1 (log_softmax of
// the logits); temperature, top-p and top-k shape only the draw.
#pragma once
#include <stddef.h>
#include <stdint.h>

#include "model/model.h"
#include "model/rng.h"

typedef struct Decoder Decoder;

typedef struct {
    float temperature; // 0 = greedy (argmax; ties to the lowest id)
    float top_p;       // nucleus mass in (0, 1]
    int top_k;         // 0 = no limit
    int record_topk;   // k of the recorded top-k log-probs (0 = none), <= LOSS_TOPK_MAX
} SamplingParams;

typedef struct {
    int id;
    float logprob;    // log p(id) at temperature 1
    int* topk_ids;    // (record_topk) descending by probability, ties to the lowest id
    float* topk_lp;   // (record_topk)
    float tail_mass;  // 1 - sum of exp(topk_lp), computed in double, clamped to [0, 1]
} SampledToken;

// ----------------------------------------------------------------------------
// slots and their caches

Decoder* decoder_create(Model* m, int max_batch, int max_len);
void decoder_free(Decoder* d);
int decoder_max_batch(const Decoder* d);
int decoder_max_len(const Decoder* d);
int decoder_length(const Decoder* d, int slot);           // tokens in the slot's cache
void decoder_reset(Decoder* d, int slot);                   // empty the slot
void decoder_truncate(Decoder* d, int slot, int n);         // keep the first n tokens (n <= length)
void decoder_copy(Decoder* d, int dst_slot, int src_slot);  // dst's cache = src's cache

// ----------------------------------------------------------------------------
// feeding

// Append tokens[i][0..n[i]) to slot slots[i] for i < nb (one batched forward over the slots).
// Afterwards decoder_logits(slot) is the host logits (V) of each slot's last fed position. When
// all_logits is not NULL it receives the logits of every fed position, slot after slot in the
// order given: (sum n[i], V) floats (used to score a sequence under the teacher).
// Fatal if a slot would exceed max_len (callers check decoder_length first).
void decoder_feed(Decoder* d, int nb, const int* slots, const int* const* tokens, const int* n, float* all_logits);
const float* decoder_logits(const Decoder* d, int slot);

// ----------------------------------------------------------------------------
// sampling

// Draw one token from logits (V) with rng; fills out (its arrays must hold record_topk entries).
void sample_token(const float* logits, int V, const SamplingParams* p, Rng* rng, SampledToken* out);
// log-softmax statistics of a given token without drawing (scoring): its log-prob and the top-k
void score_token(const float* logits, int V, int id, int record_topk, SampledToken* out);

// Generate up to max_new tokens for each of the nb slots, one batched step at a time, each slot
// drawing from its own rng (rngs[i]). A slot stops after emitting any id in stop_ids (the stop id
// is kept as the last token) or when `stop` (optional) returns 1 for its tokens so far (stop
// strings). out[i] receives slot i's tokens: out[i].n tokens with their SampledToken records
// (arrays owned by out[i], freed by gen_result_free). The generated tokens are in the cache.
typedef struct {
    int n;
    SampledToken* tokens; // (n)
} GenResult;
typedef int (*StopFn)(void* ctx, int slot, const SampledToken* tokens, int n);

void decoder_generate(Decoder* d, int nb, const int* slots, const SamplingParams* p, Rng* const* rngs, int max_new,
                      const int* stop_ids, int n_stop, StopFn stop, void* stop_ctx, GenResult* out);
void gen_result_free(GenResult* r);
