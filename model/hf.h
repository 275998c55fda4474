// Hugging Face model directories: config.json + model.safetensors (or shards listed in
// model.safetensors.index.json) + tokenizer files. Reads LlamaForCausalLM, Qwen2ForCausalLM and
// Qwen3ForCausalLM into a ModelConfig and the one parameter allocation laid out by
// model_param_table; writes a trained model back in the same form, so that it loads in ingrain
// and in HF transformers unchanged. See docs/FORMATS-HF.md.
//
// Every function returns 0, or -1 with a message in err naming the file and the key or tensor.
#pragma once
#include <stddef.h>

#include "model/model_config.h"
#include "model/safetensors.h"

// ----------------------------------------------------------------------------
// config.json

// parses <dir>/config.json into *c
int hf_load_config(const char* dir, ModelConfig* c, char* err, size_t errlen);
// parses config.json text (len bytes); `path` names the file in messages
int hf_parse_config(const char* text, size_t len, const char* path, ModelConfig* c, char* err, size_t errlen);

// ----------------------------------------------------------------------------
// weights

// Loads the weights of <dir> (model.safetensors, else the shards of model.safetensors.index.json)
// into params, n floats laid out by model_param_table(c). Each expected tensor must be present
// with exactly its shape (F32, BF16 or F16, converted to f32); unexpected tensors are errors,
// except rotary inv_freq buffers and, for tied models, an lm_head.weight of the embedding's shape.
// On error params may be partly written.
int hf_load_weights(const char* dir, const ModelConfig* c, float* params, size_t n, char* err, size_t errlen);

// ----------------------------------------------------------------------------
// writing

// Writes <dir>/model.safetensors (dtype ST_F32, or ST_BF16 rounded to nearest even) and
// <dir>/config.json from params (n floats laid out by model_param_table(c)); creates dir. The
// architecture is c->arch, or for built-in configs LlamaForCausalLM (Qwen3ForCausalLM with QK-norm,
// Qwen2ForCausalLM with QKV bias). When src_dir is not NULL its tokenizer.json (required) and
// tokenizer_config.json, special_tokens_map.json, generation_config.json, chat_template.jinja
// (when present) are copied, and the fields of its config.json that ingrain does not own
// (bos/eos ids, ...) are kept. config.json is written last: a directory with one is complete.
int hf_save(const char* dir, const ModelConfig* c, const float* params, size_t n, StDtype dtype, const char* src_dir,
            char* err, size_t errlen);
