// The Llama-family decoder (Llama, Qwen2, Qwen3): forward and exact backward over a padded
// batch, on any Backend (ops.h). Parameters, gradients and activations live in backend buffers;
// the host sees them through the upload/download helpers below.
//
//   x = embed[tokens]
//   per layer: h = x + Wo attn(rope(qk_norm(Wq rms(x) + bq)), rope(qk_norm(Wk rms(x) + bk)), Wv rms(x) + bv)
//              x = h + W_down (silu(W_gate rms(h)) * W_up rms(h))
//   logits = lm_head rms(x)        (lm_head = embed when tied)
//
// Batches are right-padded: sequence b holds lengths[b] <= T tokens at positions 0..lengths[b]-1.
// Padded positions never influence real ones (attention is causal), their logits are
// unspecified, and model_backward zeroes their rows of dlogits, so they get zero gradient.
//
// Decoding (next module) reuses the pieces: Backend.rope_fwd takes a position per row and
// Backend.attention_fwd takes separate query and key lengths, so an incremental step runs the
// same layer with T = new tokens, positions = cache length + t and k, v = the per-layer cache.
#pragma once
#include <stddef.h>
#include <stdint.h>

#include "model/adamw.h"
#include "model/model_config.h"
#include "model/ops.h"

typedef struct Model Model;

// ----------------------------------------------------------------------------
// lifetime

// Allocates parameters, gradients and activations for batches up to max_batch x max_seq
// (max_seq also sizes the RoPE tables). Fatal on an inconsistent config (model_config_check).
Model* model_create(const ModelConfig* c, Backend* be, int max_batch, int max_seq);
void model_free(Model* m);
// deterministic init from seed: matrices ~ N(0, 0.02^2), norm weights 1, biases 0
void model_init_random(Model* m, uint64_t seed);

const ModelConfig* model_config(const Model* m);
Backend* model_backend(const Model* m);
const ParamInfo* model_param_info(const Model* m); // PARAM_COUNT entries
size_t model_num_params(const Model* m);
// RoPE inverse frequency of rotation pair i < head_dim/2 with the config's scaling (position t turns
// the pair by t * freq): the decoder builds its own cos/sin tables from it, sized to its max_len
double model_rope_inv_freq(const ModelConfig* c, int i);

// ----------------------------------------------------------------------------
// parameters and gradients (backend buffers of model_num_params floats, laid out by the table)

float* model_params(Model* m);
float* model_grads(Model* m);
// one tensor of one layer (layer 0 for tensors that are not per layer): backend pointer to its
// rows * max(cols, 1) floats, or NULL when the tensor is absent in this config
float* model_param(Model* m, ParamId id, int layer);
float* model_grad(Model* m, ParamId id, int layer);
// whole-allocation host copies (checkpoints) and per-tensor ones (HF loaders)
void model_params_download(Model* m, float* host);
void model_params_upload(Model* m, const float* host);
void model_grads_download(Model* m, float* host);
void model_tensor_upload(Model* m, ParamId id, int layer, const float* host);
void model_tensor_download(Model* m, ParamId id, int layer, float* host);

// ----------------------------------------------------------------------------
// training

// tokens (B, T) and lengths (B) are host arrays (lengths NULL: every sequence has T tokens);
// ids in real positions must be in [0, vocab_size). Logits (B, T, V) stay in a backend buffer
// (model_logits); logits_out, when not NULL, receives a host copy.
void model_forward(Model* m, const int* tokens, const int* lengths, int B, int T, float* logits_out);
float* model_logits(Model* m);  // backend (B, T, V) of the last forward, an activation buffer (ops.h)
float* model_dlogits(Model* m); // backend (B, T, V) scratch for the caller's loss blocks
// accumulate the gradient of every parameter from dlogits (backend, (B, T, V) of the last
// forward; rows past each sequence's length are zeroed in place)
void model_backward(Model* m, float* dlogits);
void model_zero_grad(Model* m);

// One full step of next-token training: forward, cross-entropy against targets (B, T) with
// per-token weights (B, T) (host arrays; target -1 or weight 0 skips a token), backward,
// gradient clipping and AdamW. Returns the weighted loss sum; *grad_norm gets the pre-clip norm.
float model_train_step_ce(Model* m, AdamW* opt, const int* tokens, const int* targets, const float* weights,
                          const int* lengths, int B, int T, float* grad_norm);
