// `ingrain generate` and `ingrain score`: sample from and score with any loadable model (an HF
// directory or a built-in config), plus the loader and the scoring function behind them.
#pragma once
#include <stddef.h>
#include <stdint.h>

#include "model/model.h"
#include "model/tokenizer.h"

// ----------------------------------------------------------------------------
// loading

typedef struct {
    ModelConfig cfg;
    Backend* be;
    Model* model;   // made with max_batch = max_seq = 1: only its weights are used (by a Decoder)
    Tokenizer* tok; // the byte tokenizer, tokenizer.json, or NULL for a directory without one
    int builtin;    // a built-in config, with random weights
} CliModel;

// Loads `spec`: an HF model directory (config.json, *.safetensors, tokenizer.json when present)
// or a built-in config name ("tiny", "small", ...: random weights from `seed`, byte tokenizer).
// threads as backend_cpu_create. Returns 0, or -1 with err naming the file and what is wrong.
int cli_model_load(const char* spec, int threads, uint64_t seed, CliModel* out, char* err, size_t errlen);
// the same on the device of --device NAME [--bf16] ("cpu" with `threads`, or "cuda": GPU 0, bf16
// matmuls when bf16; backend_open_flags in model/backend_select.h); err also names a device
// that cannot be used
int cli_model_load_device(const char* spec, const char* device, int bf16, int threads, uint64_t seed, CliModel* out,
                          char* err, size_t errlen);
void cli_model_free(CliModel* cm);

// ----------------------------------------------------------------------------
// scoring

// Parses comma-separated token ids ("1, 2,3") into out. 0, or -1 with err naming the bad item.
int cli_parse_tokens(const char* s, TokenBuf* out, char* err, size_t errlen);

// The JSON printed by `ingrain score` for ids[0..n) (malloc'ed text, the caller frees):
//   {"model": spec, "n_tokens": n, "tokens": [ids], "token_strs": [...] (with a tokenizer),
//    "logprobs": [null, lp_1, ...], "sum_logprob": s,
//    "topk": [null, {"ids": [...], "logprobs": [...], "tail_mass": m}, ...] (topk > 0 only)}
// lp_t = log p(ids[t] | ids[0..t)) at temperature 1; topk[t] is the top-k of that distribution.
// NULL with err for an empty input, ids outside the model's vocabulary, more tokens than the
// model's context (max_position_embeddings) or topk outside 0..min(V, LOSS_TOPK_MAX).
char* cli_score_json(CliModel* cm, const char* spec, const int* ids, int n, int topk, char* err, size_t errlen);

// ----------------------------------------------------------------------------
// the commands (argv[0] is the first option); return an exit code

int cli_generate(int argc, char** argv);
int cli_score(int argc, char** argv);
