// Batched incremental decoding with a KV cache, and sampling. A Decoder holds up to max_batch
// sequences ("slots"), each with its own KV cache of up to max_len tokens. Callers feed tokens
// (prefill), sample from the last position's logits, roll a slot back to a prefix (to drop
// step-wise experience after a turn), or copy a slot's cache (to share a prompt across G samples).
// Token-in/token-out: the ids fed are exactly the ids stored in the trajectory.
//
// The cache holds keys after QK-norm and RoPE, so a slot's rows never change once written;
// positions are the cache rows (a slot's first token sits at position 0). The logits of
// incremental feeding equal those of model_forward over the whole sequence to float rounding
// (tests/unit/test_decode.c checks 1e-4 relative, the measured error is ~1e-6).
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

// Caches for max_batch slots of max_len tokens each, in backend buffers next to the model's
// weights (read through model_param at every feed, so weight updates apply at once). The model's
// own activations are not used: a model made only to decode can be created with max_batch =
// max_seq = 1. max_len may exceed the config's max_seq_len (RoPE tables are the decoder's).
Decoder* decoder_create(Model* m, int max_batch, int max_len);
void decoder_free(Decoder* d);
Model* decoder_model(const Decoder* d);
int decoder_max_batch(const Decoder* d);
int decoder_max_len(const Decoder* d);
int decoder_length(const Decoder* d, int slot);           // tokens in the slot's cache
const int* decoder_tokens(const Decoder* d, int slot);    // (length) the ids in the slot's cache
void decoder_reset(Decoder* d, int slot);                   // empty the slot
void decoder_truncate(Decoder* d, int slot, int n);         // keep the first n tokens (n <= length)
void decoder_copy(Decoder* d, int dst_slot, int src_slot);  // dst's cache = src's cache (and its logits)

// ----------------------------------------------------------------------------
// feeding

// Append tokens[i][0..n[i]) to slot slots[i] for i < nb (one batched forward over the slots).
// Afterwards decoder_logits(slot) is the host logits (V) of each slot's last fed position. When
// all_logits is not NULL it receives the logits of every fed position, slot after slot in the
// order given: (sum n[i], V) floats (used to score a sequence under the teacher).
// Slots must be distinct within a feed; n[i] may be 0. Slots fed in increasing consecutive order
// (0, 1, 2, ...) with equal n share one attention call, the fastest layout.
// Fatal if a slot would exceed max_len (callers check decoder_length first) or an id is outside
// the vocabulary.
void decoder_feed(Decoder* d, int nb, const int* slots, const int* const* tokens, const int* n, float* all_logits);
// decoder_feed with all_logits a buffer of the model's backend: the rows stay on the device
// (the distillation teacher's log-softmax rows run there too)
void decoder_feed_device(Decoder* d, int nb, const int* slots, const int* const* tokens, const int* n,
                         float* all_logits);
// the slot's last-position logits, or NULL when there are none: the slot is empty, was truncated
// since its last feed, or decoder_generate drew its last tokens on the device (decoder_generate and
// decoder_assign then feed its last token again)
const float* decoder_logits(const Decoder* d, int slot);
// Prefix reuse: makes each slot hold exactly tokens[i][0..n[i]) (1 <= n[i] <= max_len) with the
// logits of its last position, keeping the longest prefix its cache already shares with them and
// feeding the rest in one batched feed (at least the last token, unless the slot already holds
// exactly these tokens with their logits). Returns the number of tokens reused over all slots.
int decoder_assign(Decoder* d, int nb, const int* slots, const int* const* tokens, const int* n);

// ----------------------------------------------------------------------------
// sampling

// 0 when p is valid for a vocabulary of V, else -1 with the reason in err: temperature >= 0 and
// finite, top_p in (0, 1], top_k >= 0, record_topk in 0..min(V, LOSS_TOPK_MAX)
int sampling_params_check(const SamplingParams* p, int V, char* err, size_t errlen);
// Draw one token from logits (V) with rng; fills out (its arrays must hold record_topk entries).
// Candidates are ordered by logit, ties to the lower id. top_k keeps the k best, then top_p keeps
// the shortest best-first prefix holding top_p of their (renormalised) mass, then the draw is
// proportional to exp(logit / temperature) with one rng_uniform (greedy draws none). Fatal on
// invalid p (sampling_params_check).
void sample_token(const float* logits, int V, const SamplingParams* p, Rng* rng, SampledToken* out);
// log-softmax statistics of a given token without drawing (scoring): its log-prob and the top-k
void score_token(const float* logits, int V, int id, int record_topk, SampledToken* out);
// Scores tokens[0..n) as the continuation of the slot, which must hold its last logits
// (decoder_assign): out[j] gets score_token's statistics of tokens[j] under the distribution after
// the slot and tokens[0..j) (out[j].topk_ids, topk_lp: the caller's arrays of K entries). Feeds
// tokens[0..n-1) into the slot. On a GPU backend with K <= 64 the rows are scored on the device
// (sample_rows without drawing) and only the statistics come back.
void decoder_score(Decoder* d, int slot, const int* tokens, int n, int K, SampledToken* out);

// Generate up to max_new tokens for each of the nb slots, one batched step at a time, each slot
// drawing from its own rng (rngs[i]). A slot stops after emitting any id in stop_ids (the stop id
// is kept as the last token) or when `stop` (optional) returns 1 for its tokens so far (stop
// strings). out[i] receives slot i's tokens: out[i].n tokens with their SampledToken records
// (arrays owned by out[i], freed by gen_result_free). The generated tokens are in the cache.
// Every slot must hold at least one token. Since every sampled token is fed, a slot generates at
// most max_len - length tokens. `stop` is called after every sampled token of every slot (stop
// ids and the last token included, so it can also stream them) with the decoder slot id (slots[i])
// and out[i]'s tokens so far. A slot's tokens depend only on its cache, p and its rng, not on
// the other slots of the batch, up to the last bits of the logits: OpenBLAS picks its kernels by
// the batch's row count (test_decode.c: same ids, log-probs within 1e-5, measured ~5e-7).
// On a GPU backend the draws without top_k and top_p, recording at most 64 top-k log-probs, run
// on the device (the backend's sample_rows): the same draws from the same uniforms, but only the
// ids and records leave the GPU; the host draws the rest, as on the CPU.
typedef struct {
    int n;
    SampledToken* tokens; // (n)
} GenResult;
typedef int (*StopFn)(void* ctx, int slot, const SampledToken* tokens, int n);

void decoder_generate(Decoder* d, int nb, const int* slots, const SamplingParams* p, Rng* const* rngs, int max_new,
                      const int* stop_ids, int n_stop, StopFn stop, void* stop_ctx, GenResult* out);
void gen_result_free(GenResult* r); // frees the arrays and zeroes r
