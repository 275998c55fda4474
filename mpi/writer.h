// The loaded model as a text writer for the aggregator: the GenerateFn (distill/prompt.h) behind
// the LLM principle extractor and the LLM judge. One prompt = one user turn in the model's chat
// format; the reply is sampled from the model's current weights.
#pragma once
#include <stdint.h>

#include "distill/prompt.h"
#include "model/chat.h"
#include "model/decode.h"
#include "model/tokenizer.h"

typedef struct {
    Decoder* dec;        // one slot of max_len tokens
    ChatRender render;
    SamplingParams sampling;
    int max_new;
    Rng rng;             // reseeded per iteration, so replies are reproducible
} Writer;

// 0, or -1 with err (a tokenizer without the format's special tokens)
int writer_init(Writer* w, Model* m, const Tokenizer* tok, ChatFormat fmt, int max_len, int max_new,
                float temperature, char* err, size_t errlen);
void writer_free(Writer* w);
void writer_reseed(Writer* w, uint64_t seed, int iteration);
// GenerateFn: ctx is a Writer*. 0 with the reply in out, or -1 (a prompt longer than the context)
int writer_generate(void* ctx, const char* prompt, char* out, size_t cap);
