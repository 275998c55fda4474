// The shape of a Llama-family decoder (Llama, Qwen2, Qwen3), the built-in tiny configs, and
// the table of parameter tensors: names, HF names, shapes and offsets into the one allocation
// that holds every parameter (gradients and AdamW moments use the same table).
#pragma once
#include <stddef.h>

// ----------------------------------------------------------------------------
// configuration

typedef enum { ROPE_SCALING_NONE = 0, ROPE_SCALING_LINEAR, ROPE_SCALING_LLAMA3 } RopeScalingType;

typedef struct {
    char arch[64];       // HF architectures[0]: LlamaForCausalLM, Qwen2ForCausalLM, Qwen3ForCausalLM, or "builtin"
    int vocab_size;      // V
    int dim;             // D, hidden_size
    int n_layers;        // L
    int n_heads;         // H
    int n_kv_heads;      // KV (grouped-query attention: H % KV == 0)
    int head_dim;        // hd (Qwen3 may have H*hd != D)
    int hidden_dim;      // F, MLP intermediate_size
    int max_seq_len;     // max_position_embeddings
    float rope_theta;
    float norm_eps;      // rms_norm_eps
    int tied_embeddings; // lm_head shares the embedding matrix
    int qkv_bias;        // Qwen2: biases on q, k, v projections
    int qk_norm;         // Qwen3: RMSNorm over head_dim on q and k before RoPE
    RopeScalingType rope_scaling;
    float rope_factor;             // linear and llama3
    float rope_low_freq_factor;    // llama3
    float rope_high_freq_factor;   // llama3
    int rope_original_max_seq_len; // llama3
} ModelConfig;

// the built-in configs (byte tokenizer, vocabulary BYTE_VOCAB_SIZE); NULL-terminated names
extern const char* const model_builtin_names[];
// 0 and *out filled if `name` is a built-in config, else -1
int model_builtin_config(const char* name, ModelConfig* out);
// 0 if the config is self-consistent, else -1 with msg naming the field
int model_config_check(const ModelConfig* c, char* msg, size_t n);

// ----------------------------------------------------------------------------
// parameter tensors: one contiguous allocation, laid out in this order.
// Per-layer tensors are stacked over L. Matrices are row-major (out, in), as in HF.

typedef enum {
    PARAM_EMBED,      // (V, D)
    PARAM_ATTN_NORM,  // (L, D)
    PARAM_WQ,         // (L, H*hd, D)
    PARAM_WK,         // (L, KV*hd, D)
    PARAM_WV,         // (L, KV*hd, D)
    PARAM_BQ,         // (L, H*hd)      qkv_bias only
    PARAM_BK,         // (L, KV*hd)     qkv_bias only
    PARAM_BV,         // (L, KV*hd)     qkv_bias only
    PARAM_Q_NORM,     // (L, hd)        qk_norm only
    PARAM_K_NORM,     // (L, hd)        qk_norm only
    PARAM_WO,         // (L, D, H*hd)
    PARAM_MLP_NORM,   // (L, D)
    PARAM_W_GATE,     // (L, F, D)
    PARAM_W_UP,       // (L, F, D)
    PARAM_W_DOWN,     // (L, D, F)
    PARAM_FINAL_NORM, // (D)
    PARAM_LM_HEAD,    // (V, D)         untied only
    PARAM_COUNT
} ParamId;

typedef struct {
    const char* name;    // our name, e.g. "wq"
    const char* hf_name; // HF name; per-layer ones have one %d for the layer
    int per_layer;       // stacked over L
    int rows, cols;      // per layer; cols = 0 for vectors
    size_t numel;        // total elements (all layers); 0 when absent in this config
    size_t offset;       // element offset into the parameter allocation
    int is_norm;         // norm weights: no weight decay
} ParamInfo;

// Fill the table for config c; returns the total number of parameter elements.
size_t model_param_table(const ModelConfig* c, ParamInfo table[PARAM_COUNT]);
