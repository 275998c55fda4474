// The model as a writer for the LLM extractor and judge (see writer.h).
#include "mpi/writer.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/check.h"
#include "common/log.h"

// ----------------------------------------------------------------------------

int writer_init(Writer* w, Model* m, const Tokenizer* tok, ChatFormat fmt, int max_len, int max_new,
                float temperature, char* err, size_t errlen) {
    memset(w, 0, sizeof(*w));
    if (chat_init(&w->render, tok, fmt, err, errlen) != 0) return -1;
    w->dec = decoder_create(m, 1, max_len);
    w->max_new = max_new;
    w->sampling = (SamplingParams){.temperature = temperature, .top_p = 1.0f, .top_k = 0, .record_topk = 0};
    return 0;
}

void writer_free(Writer* w) {
    if (!w->dec) return;
    decoder_free(w->dec);
    chat_free(&w->render);
    memset(w, 0, sizeof(*w));
}

void writer_reseed(Writer* w, uint64_t seed, int iteration) { rng_seed_stream(&w->rng, seed, 0x77a17e00u + (uint64_t)iteration); }

int writer_generate(void* ctx, const char* prompt, char* out, size_t cap) {
    Writer* w = ctx;
    char err[256];
    ChatPart part = {.text = prompt, .seg = SEG_USER};
    ChatMessage msg = {.role = CHAT_USER, .parts = &part, .n_parts = 1};
    chat_reset(&w->render);
    if (chat_append(&w->render, &msg, err, sizeof(err)) != 0 ||
        chat_append_generation_prompt(&w->render, err, sizeof(err)) != 0) {
        log_warn("writer: %s", err);
        return -1;
    }
    int n = w->render.n, room = decoder_max_len(w->dec) - n;
    if (room < 1) {
        log_warn("writer: a prompt of %d tokens leaves no room in the %d-token context; skipped", n,
                 decoder_max_len(w->dec));
        return -1;
    }
    const int slot = 0, end = chat_end_id(&w->render);
    const int* ids = w->render.ids;
    decoder_reset(w->dec, slot);
    decoder_feed(w->dec, 1, &slot, &ids, &n, NULL);
    GenResult res = {0};
    Rng* rngs[1] = {&w->rng};
    decoder_generate(w->dec, 1, &slot, &w->sampling, rngs, w->max_new < room ? w->max_new : room, &end, 1, NULL, NULL,
                     &res);
    int* gen = mallocCheck(sizeof(int) * (size_t)(res.n + 1));
    int m = 0;
    for (int i = 0; i < res.n; i++) {
        if (res.tokens[i].id != end) gen[m++] = res.tokens[i].id;
    }
    tokenizer_decode(w->render.tok, gen, m, out, cap);
    free(gen);
    gen_result_free(&res);
    return 0;
}
