// Built-in model configs and the parameter size table (see model_config.h).
#include "model/model_config.h"

#include <stdio.h>
#include <string.h>

#include "model/tokenizer_byte_vocab.h"

// ----------------------------------------------------------------------------
// built-in configs: small enough for a laptop, shaped like the real family (GQA, SwiGLU, RoPE)

const char* const model_builtin_names[] = {"tiny", "small", "gpt2-124m", NULL};

static const ModelConfig builtin[] = {
    {.arch = "builtin", .vocab_size = BYTE_VOCAB_SIZE, .dim = 128, .n_layers = 4, .n_heads = 4, .n_kv_heads = 2,
     .head_dim = 32, .hidden_dim = 384, .max_seq_len = 2048, .rope_theta = 10000.0f, .norm_eps = 1e-5f,
     .tied_embeddings = 1},
    {.arch = "builtin", .vocab_size = BYTE_VOCAB_SIZE, .dim = 384, .n_layers = 8, .n_heads = 6, .n_kv_heads = 2,
     .head_dim = 64, .hidden_dim = 1024, .max_seq_len = 2048, .rope_theta = 10000.0f, .norm_eps = 1e-5f,
     .tied_embeddings = 1},
    // GPT-2-124M-sized (12 layers, 768 wide, 50304 vocab) for GPU throughput/MFU benchmarks
    {.arch = "builtin", .vocab_size = 50304, .dim = 768, .n_layers = 12, .n_heads = 12, .n_kv_heads = 12,
     .head_dim = 64, .hidden_dim = 2048, .max_seq_len = 1024, .rope_theta = 10000.0f, .norm_eps = 1e-5f,
     .tied_embeddings = 1},
};

int model_builtin_config(const char* name, ModelConfig* out) {
    for (int i = 0; model_builtin_names[i]; i++) {
        if (strcmp(name, model_builtin_names[i]) == 0) {
            *out = builtin[i];
            return 0;
        }
    }
    return -1;
}

int model_config_check(const ModelConfig* c, char* msg, size_t n) {
#define REQUIRE(cond, ...)                   \
    do {                                     \
        if (!(cond)) {                       \
            snprintf(msg, n, __VA_ARGS__);   \
            return -1;                       \
        }                                    \
    } while (0)
    REQUIRE(c->vocab_size > 0, "vocab_size must be positive, got %d", c->vocab_size);
    REQUIRE(c->dim > 0, "hidden_size must be positive, got %d", c->dim);
    REQUIRE(c->n_layers > 0, "num_hidden_layers must be positive, got %d", c->n_layers);
    REQUIRE(c->n_heads > 0, "num_attention_heads must be positive, got %d", c->n_heads);
    REQUIRE(c->n_kv_heads > 0 && c->n_heads % c->n_kv_heads == 0,
            "num_key_value_heads (%d) must divide num_attention_heads (%d)", c->n_kv_heads, c->n_heads);
    REQUIRE(c->head_dim > 0 && c->head_dim % 2 == 0, "head_dim must be positive and even, got %d", c->head_dim);
    REQUIRE(c->hidden_dim > 0, "intermediate_size must be positive, got %d", c->hidden_dim);
    REQUIRE(c->max_seq_len > 0, "max_position_embeddings must be positive, got %d", c->max_seq_len);
    REQUIRE(c->rope_theta > 0, "rope_theta must be positive, got %g", c->rope_theta);
    REQUIRE(c->norm_eps > 0, "rms_norm_eps must be positive, got %g", c->norm_eps);
    REQUIRE(c->rope_scaling == ROPE_SCALING_NONE || c->rope_factor > 0, "rope_scaling.factor must be positive");
#undef REQUIRE
    return 0;
}

// ----------------------------------------------------------------------------
// the parameter table

size_t model_param_table(const ModelConfig* c, ParamInfo t[PARAM_COUNT]) {
    const int V = c->vocab_size, D = c->dim, L = c->n_layers, F = c->hidden_dim;
    const int Q = c->n_heads * c->head_dim, K = c->n_kv_heads * c->head_dim, hd = c->head_dim;
    const struct {
        const char* name;
        const char* hf;
        int per_layer, rows, cols, present, is_norm;
    } spec[PARAM_COUNT] = {
        [PARAM_EMBED] = {"embed", "model.embed_tokens.weight", 0, V, D, 1, 0},
        [PARAM_ATTN_NORM] = {"attn_norm", "model.layers.%d.input_layernorm.weight", 1, D, 0, 1, 1},
        [PARAM_WQ] = {"wq", "model.layers.%d.self_attn.q_proj.weight", 1, Q, D, 1, 0},
        [PARAM_WK] = {"wk", "model.layers.%d.self_attn.k_proj.weight", 1, K, D, 1, 0},
        [PARAM_WV] = {"wv", "model.layers.%d.self_attn.v_proj.weight", 1, K, D, 1, 0},
        [PARAM_BQ] = {"bq", "model.layers.%d.self_attn.q_proj.bias", 1, Q, 0, c->qkv_bias, 1},
        [PARAM_BK] = {"bk", "model.layers.%d.self_attn.k_proj.bias", 1, K, 0, c->qkv_bias, 1},
        [PARAM_BV] = {"bv", "model.layers.%d.self_attn.v_proj.bias", 1, K, 0, c->qkv_bias, 1},
        [PARAM_Q_NORM] = {"q_norm", "model.layers.%d.self_attn.q_norm.weight", 1, hd, 0, c->qk_norm, 1},
        [PARAM_K_NORM] = {"k_norm", "model.layers.%d.self_attn.k_norm.weight", 1, hd, 0, c->qk_norm, 1},
        [PARAM_WO] = {"wo", "model.layers.%d.self_attn.o_proj.weight", 1, D, Q, 1, 0},
        [PARAM_MLP_NORM] = {"mlp_norm", "model.layers.%d.post_attention_layernorm.weight", 1, D, 0, 1, 1},
        [PARAM_W_GATE] = {"w_gate", "model.layers.%d.mlp.gate_proj.weight", 1, F, D, 1, 0},
        [PARAM_W_UP] = {"w_up", "model.layers.%d.mlp.up_proj.weight", 1, F, D, 1, 0},
        [PARAM_W_DOWN] = {"w_down", "model.layers.%d.mlp.down_proj.weight", 1, D, F, 1, 0},
        [PARAM_FINAL_NORM] = {"final_norm", "model.norm.weight", 0, D, 0, 1, 1},
        [PARAM_LM_HEAD] = {"lm_head", "lm_head.weight", 0, V, D, !c->tied_embeddings, 0},
    };
    size_t offset = 0;
    for (int i = 0; i < PARAM_COUNT; i++) {
        size_t per = (size_t)spec[i].rows * (size_t)(spec[i].cols ? spec[i].cols : 1);
        t[i] = (ParamInfo){.name = spec[i].name,
                           .hf_name = spec[i].hf,
                           .per_layer = spec[i].per_layer,
                           .rows = spec[i].rows,
                           .cols = spec[i].cols,
                           .numel = spec[i].present ? per * (size_t)(spec[i].per_layer ? L : 1) : 0,
                           .offset = offset,
                           .is_norm = spec[i].is_norm};
        offset += t[i].numel;
    }
    return offset;
}
