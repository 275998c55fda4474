// Incremental decoding against the full forward (model_forward, itself checked against PyTorch
// in test_model.c), cache operations (truncate, copy, prefix reuse), batch invariance of
// generation, and the score path of `ingrain score` on an HF directory written by hf_save.
//
// Tolerances: incremental logits vs model_forward, max |inc - full| <= 1e-4 * max |full| over
// every position of every slot (float32 on both sides; measured ~1e-6). Recomputing the same
// rows in the same layout is bit-identical (truncate and refeed alike, copies decoded in one
// batch). Across layouts it is not: OpenBLAS computes a row of a product with kernels chosen by
// the row count M and the row's place in the M-tiling (an edge tile uses narrower kernels that
// sum in another order), so the same row alone (M = 1) and in a batch differ in the last bits.
// Batch invariance therefore checks identical token ids and log-probs within 1e-5 (measured
// ~5e-7); a draw could flip only if its uniform fell within ~1e-7 of a cumulative boundary.
// Built a second time with TEST_DECODE_CUDA, the same checks run on the CUDA backend (f32 mode):
// test_decode_gpu on a GPU (tests/gpu), test_decode_emu on its host emulation (tests/emu). cuBLAS
// and the GPU's attention paths share the layout caveat, so the tolerances stay.
#include <jansson.h>
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <cmocka.h>

#include "model/cli_model.h"
#include "model/decode.h"
#include "model/hf.h"
#include "model/loss.h"
#include "model/model.h"
#include "model/ops.h"
#include "model/tokenizer.h"

#define REL_TOL 1e-4f

// the backend under test: the CPU's with `threads` threads, or GPU 0 in f32 mode
static Backend* test_backend(int threads) {
#ifdef TEST_DECODE_CUDA
    (void)threads;
    char err[256];
    Backend* be = backend_cuda_create(0, 0, err, sizeof err);
    if (!be) fail_msg("%s", err);
    return be;
#else
    return backend_cpu_create(threads);
#endif
}

// ----------------------------------------------------------------------------
// helpers

typedef enum { VAR_TINY, VAR_QWEN3, VAR_QWEN2, VAR_UNTIED_SCALED } Variant;

// the built-in tiny config, or variants with QK-norm (Qwen3), QKV bias (Qwen2), an untied head
// with llama3 RoPE scaling; all with GQA (tiny has 4 heads over 2 kv heads)
static ModelConfig variant_config(Variant v) {
    ModelConfig c;
    assert_int_equal(model_builtin_config("tiny", &c), 0);
    c.n_layers = 2;
    if (v == VAR_QWEN3) {
        c.qk_norm = 1;
        c.head_dim = 48; // H*hd != D, as Qwen3 allows
        c.n_kv_heads = 1;
    } else if (v == VAR_QWEN2) {
        c.qkv_bias = 1;
    } else if (v == VAR_UNTIED_SCALED) {
        c.tied_embeddings = 0;
        c.rope_scaling = ROPE_SCALING_LLAMA3;
        c.rope_factor = 8.0f;
        c.rope_low_freq_factor = 1.0f;
        c.rope_high_freq_factor = 4.0f;
        c.rope_original_max_seq_len = 64;
    }
    if (v == VAR_TINY) c.n_layers = 4;
    return c;
}

// random weights with non-trivial norms and biases (init sets them to 1 and 0)
static void perturb_params(Model* m, uint64_t seed) {
    model_init_random(m, seed);
    const size_t n = model_num_params(m);
    float* p = malloc(n * sizeof(float));
    model_params_download(m, p);
    Rng r;
    rng_seed(&r, seed + 1);
    const ParamInfo* t = model_param_info(m);
    for (int i = 0; i < PARAM_COUNT; i++) {
        if (!t[i].is_norm) continue;
        for (size_t j = 0; j < t[i].numel; j++) p[t[i].offset + j] += (float)(0.3 * rng_normal(&r));
    }
    model_params_upload(m, p);
    free(p);
}

static void random_tokens(int* t, int n, int V, uint64_t seed) {
    Rng r;
    rng_seed(&r, seed);
    for (int i = 0; i < n; i++) t[i] = (int)rng_below(&r, (uint64_t)V);
}

// logits (T, V) of the whole sequence by model_forward
static float* full_logits(Model* m, const int* tokens, int T) {
    const int V = model_config(m)->vocab_size;
    float* z = malloc((size_t)T * V * sizeof(float));
    model_forward(m, tokens, NULL, 1, T, z);
    return z;
}

static float max_abs(const float* x, size_t n) {
    float m = 0.0f;
    for (size_t i = 0; i < n; i++) m = fabsf(x[i]) > m ? fabsf(x[i]) : m;
    return m;
}

static float max_abs_diff(const float* a, const float* b, size_t n) {
    float m = 0.0f;
    for (size_t i = 0; i < n; i++) m = fabsf(a[i] - b[i]) > m ? fabsf(a[i] - b[i]) : m;
    return m;
}

// ----------------------------------------------------------------------------
// incremental feeding equals the full forward

#define NSEQ 4
#define MAXT 300

// Slots get their sequences in ragged pieces, several slots per feed, in scrambled and in
// consecutive order; one long feed crosses the decoder's chunk size. Every position's logits are
// collected (all_logits) and compared with model_forward over the whole sequence.
static void check_incremental(Variant var, int threads) {
    const ModelConfig c = variant_config(var);
    const int V = c.vocab_size;
    const int len[NSEQ] = {MAXT, 23, 9, 41};
    Backend* be = test_backend(threads);
    Model* m = model_create(&c, be, 1, MAXT);
    perturb_params(m, 7 + var);
    int* seq[NSEQ];
    float* ref[NSEQ];
    float* got[NSEQ];
    for (int s = 0; s < NSEQ; s++) {
        seq[s] = malloc(MAXT * sizeof(int));
        random_tokens(seq[s], len[s], V, 100 + s);
        ref[s] = full_logits(m, seq[s], len[s]);
        got[s] = calloc((size_t)len[s] * V, sizeof(float));
    }
    Decoder* d = decoder_create(m, NSEQ, MAXT + 4);

    // feed schedule: per round, how many tokens each slot takes (clipped to what is left)
    const int order[2][NSEQ] = {{2, 0, 3, 1}, {0, 1, 2, 3}};
    const int pieces[][NSEQ] = {{270, 5, 3, 1}, {1, 1, 1, 1}, {2, 7, 0, 3}, {1, 1, 1, 1}, {1, 1, 1, 1},
                                {4, 4, 4, 4}, {MAXT, MAXT, MAXT, MAXT}};
    int done[NSEQ] = {0};
    for (size_t round = 0; round < sizeof pieces / sizeof pieces[0]; round++) {
        const int* ord = order[round % 2];
        int slots[NSEQ], n[NSEQ], nb = 0, total = 0;
        const int* tok[NSEQ];
        for (int j = 0; j < NSEQ; j++) {
            const int s = ord[j];
            int k = pieces[round][s];
            if (k > len[s] - done[s]) k = len[s] - done[s];
            slots[nb] = s;
            tok[nb] = seq[s] + done[s];
            n[nb++] = k;
            total += k;
        }
        float* all = malloc(((size_t)total + 1) * V * sizeof(float));
        decoder_feed(d, nb, slots, tok, n, all);
        size_t row = 0;
        for (int j = 0; j < nb; j++) {
            const int s = slots[j];
            memcpy(got[s] + (size_t)done[s] * V, all + row * V, (size_t)n[j] * V * sizeof(float));
            row += (size_t)n[j];
            done[s] += n[j];
            assert_int_equal(decoder_length(d, s), done[s]);
            if (done[s] > 0) {
                // the last position's logits are also what decoder_logits holds
                assert_memory_equal(decoder_logits(d, s), got[s] + (size_t)(done[s] - 1) * V, (size_t)V * 4);
            }
        }
        free(all);
    }
    for (int s = 0; s < NSEQ; s++) {
        assert_int_equal(done[s], len[s]);
        assert_memory_equal(decoder_tokens(d, s), seq[s], (size_t)len[s] * sizeof(int));
        const size_t n = (size_t)len[s] * V;
        const float err = max_abs_diff(got[s], ref[s], n), scale = max_abs(ref[s], n);
        print_message("variant %d slot %d (%d tokens): max |inc - full| = %.3g (max |full| %.3g)\n", var, s, len[s],
                      err, scale);
        assert_true(err <= REL_TOL * scale);
    }
    for (int s = 0; s < NSEQ; s++) {
        free(seq[s]);
        free(ref[s]);
        free(got[s]);
    }
    decoder_free(d);
    model_free(m);
    backend_destroy(be);
}

static void test_incremental_tiny(void** state) {
    (void)state;
    check_incremental(VAR_TINY, 2);
}

static void test_incremental_qk_norm(void** state) {
    (void)state;
    check_incremental(VAR_QWEN3, 1);
}

static void test_incremental_qkv_bias(void** state) {
    (void)state;
    check_incremental(VAR_QWEN2, 1);
}

static void test_incremental_untied_rope_scaled(void** state) {
    (void)state;
    check_incremental(VAR_UNTIED_SCALED, 1);
}

// ----------------------------------------------------------------------------
// cache operations

typedef struct {
    Backend* be;
    Model* m;
    Decoder* d;
    int V;
} Fixture;

static Fixture fixture(Variant var, int max_batch, int max_len) {
    Fixture f;
    const ModelConfig c = variant_config(var);
    f.be = test_backend(1); // one thread: quick on a busy 2-core machine
    f.m = model_create(&c, f.be, 1, max_len);
    perturb_params(f.m, 3);
    f.d = decoder_create(f.m, max_batch, max_len);
    f.V = c.vocab_size;
    return f;
}

static void fixture_free(Fixture* f) {
    decoder_free(f->d);
    model_free(f->m);
    backend_destroy(f->be);
}

static void feed1(Decoder* d, int slot, const int* tokens, int n, float* all) {
    decoder_feed(d, 1, &slot, &tokens, &n, all);
}

// decoder_feed_device: the same rows, written into a backend buffer (in one feed of two slots,
// after a first feed), and the same decoder_logits, bit for bit
static void test_feed_device(void** state) {
    (void)state;
    Fixture h = fixture(VAR_QWEN3, 2, 64), g = fixture(VAR_QWEN3, 2, 64);
    const int V = h.V, slots[2] = {0, 1}, n[2] = {9, 5};
    int a[9], b[5];
    random_tokens(a, 9, V, 4);
    random_tokens(b, 5, V, 5);
    const int* tok[2] = {a, b};
    const size_t bytes = (size_t)(n[0] + n[1]) * V * sizeof(float);
    float* host = malloc(bytes);
    float* dev = g.be->alloc(g.be, bytes);
    float* got = malloc(bytes);
    for (int round = 0; round < 2; round++) { // the second feed appends to the cached first
        decoder_feed(h.d, 2, slots, tok, n, host);
        decoder_feed_device(g.d, 2, slots, tok, n, dev);
        g.be->download(g.be, got, dev, bytes);
        assert_memory_equal(got, host, bytes);
        for (int s = 0; s < 2; s++) assert_memory_equal(decoder_logits(g.d, s), decoder_logits(h.d, s), (size_t)V * 4);
    }
    g.be->free(g.be, dev);
    free(host), free(got);
    fixture_free(&h), fixture_free(&g);
}

// truncating and feeding the same tokens again gives the same logits: bit for bit in the same
// layout (here slot 0's rows 12..19 sit at rows 12..19 of a 20-row feed both times), within
// 1e-5 relative fed token by token
static void test_truncate_refeed(void** state) {
    (void)state;
    Fixture f = fixture(VAR_QWEN3, 2, 64);
    const int V = f.V, T = 30;
    int seq[30], other[12];
    random_tokens(seq, T, V, 1);
    random_tokens(other, 12, V, 2);
    float* first = malloc((size_t)T * V * sizeof(float));
    float* again = malloc((size_t)T * V * sizeof(float));
    feed1(f.d, 0, seq, 20, first);
    for (int t = 20; t < T; t++) feed1(f.d, 0, seq + t, 1, first + (size_t)t * V);

    decoder_truncate(f.d, 0, 12);
    assert_int_equal(decoder_length(f.d, 0), 12);
    assert_null(decoder_logits(f.d, 0));
    // refeed in other pieces, batched with another slot
    const int slots[2] = {1, 0}, n[2] = {12, 8};
    const int* tok[2] = {other, seq + 12};
    float* both = malloc(20 * (size_t)V * sizeof(float));
    decoder_feed(f.d, 2, slots, tok, n, both);
    memcpy(again + 12 * (size_t)V, both + 12 * (size_t)V, 8 * (size_t)V * sizeof(float));
    for (int t = 20; t < T; t++) feed1(f.d, 0, seq + t, 1, again + (size_t)t * V);
    assert_memory_equal(first + 12 * (size_t)V, again + 12 * (size_t)V, (size_t)(T - 12) * V * sizeof(float));
    assert_memory_equal(decoder_tokens(f.d, 0), seq, T * sizeof(int));
    decoder_truncate(f.d, 0, 5);
    for (int t = 5; t < T; t++) feed1(f.d, 0, seq + t, 1, again + (size_t)t * V);
    const size_t rest = (size_t)(T - 5) * V;
    assert_true(max_abs_diff(first + 5 * (size_t)V, again + 5 * (size_t)V, rest) <= 1e-5f * max_abs(first, rest));
    free(first);
    free(again);
    free(both);
    fixture_free(&f);
}

// a prompt copied to G slots continues identically in each, whatever else is in the batch
static void test_copy(void** state) {
    (void)state;
    Fixture f = fixture(VAR_TINY, 4, 80);
    int prompt[17];
    random_tokens(prompt, 17, f.V, 4);
    feed1(f.d, 0, prompt, 17, NULL);
    for (int s = 1; s < 4; s++) decoder_copy(f.d, s, 0);
    for (int s = 1; s < 4; s++) {
        assert_int_equal(decoder_length(f.d, s), 17);
        assert_memory_equal(decoder_logits(f.d, s), decoder_logits(f.d, 0), (size_t)f.V * 4);
        assert_memory_equal(decoder_tokens(f.d, s), prompt, sizeof prompt);
    }
    SamplingParams p = {.temperature = 1.0f, .top_p = 0.95f, .top_k = 0, .record_topk = 4};
    Rng r[4];
    Rng* rp[4];
    for (int s = 0; s < 4; s++) {
        rng_seed(&r[s], 42);
        rp[s] = &r[s];
    }
    const int slots[4] = {0, 1, 2, 3};
    GenResult out[4];
    decoder_generate(f.d, 4, slots, &p, rp, 30, NULL, 0, NULL, NULL, out);
    for (int s = 1; s < 4; s++) {
        assert_int_equal(out[s].n, out[0].n);
        for (int j = 0; j < out[0].n; j++) {
            assert_int_equal(out[s].tokens[j].id, out[0].tokens[j].id);
            assert_memory_equal(&out[s].tokens[j].logprob, &out[0].tokens[j].logprob, sizeof(float));
            assert_memory_equal(out[s].tokens[j].topk_lp, out[0].tokens[j].topk_lp, 4 * sizeof(float));
        }
        assert_memory_equal(decoder_tokens(f.d, s), decoder_tokens(f.d, 0), 47 * sizeof(int));
    }
    assert_int_equal(out[0].n, 30);
    assert_int_equal(decoder_length(f.d, 0), 47);
    for (int s = 0; s < 4; s++) gen_result_free(&out[s]);
    fixture_free(&f);
}

// decoder_assign keeps the shared prefix and feeds the rest; logits match the full forward
static void test_prefix_reuse(void** state) {
    (void)state;
    Fixture f = fixture(VAR_QWEN2, 2, 64);
    const int V = f.V;
    int a[30], b[25];
    random_tokens(a, 30, V, 5);
    memcpy(b, a, 17 * sizeof(int));
    random_tokens(b + 17, 8, V, 6);
    b[17] = (a[17] + 1) % V; // first difference at 17
    const int slot = 1;
    const int* pa = a;
    int na = 30;
    assert_int_equal(decoder_assign(f.d, 1, &slot, &pa, &na), 0);
    assert_int_equal(decoder_assign(f.d, 1, &slot, &pa, &na), 30); // same tokens: nothing fed
    const int* pb = b;
    int nb = 25;
    assert_int_equal(decoder_assign(f.d, 1, &slot, &pb, &nb), 17);
    assert_int_equal(decoder_length(f.d, slot), 25);
    float* ref = full_logits(f.m, b, 25);
    const float* last = decoder_logits(f.d, slot);
    assert_true(max_abs_diff(last, ref + 24 * (size_t)V, V) <= REL_TOL * max_abs(ref + 24 * (size_t)V, V));
    free(ref);
    // a strict prefix of what the slot holds: everything but its last token is reused
    nb = 10;
    assert_int_equal(decoder_assign(f.d, 1, &slot, &pb, &nb), 9);
    ref = full_logits(f.m, b, 10);
    last = decoder_logits(f.d, slot);
    assert_true(max_abs_diff(last, ref + 9 * (size_t)V, V) <= REL_TOL * max_abs(ref + 9 * (size_t)V, V));
    free(ref);
    fixture_free(&f);
}

// ----------------------------------------------------------------------------
// generation

typedef struct {
    int limit[4]; // stop slot s after limit[s] tokens (0 = never)
    int calls;
} StopCtx;

static int stop_after(void* ctx, int slot, const SampledToken* tokens, int n) {
    (void)tokens;
    StopCtx* c = ctx;
    c->calls++;
    return c->limit[slot] > 0 && n >= c->limit[slot];
}

#define BATCH_TOL 1e-5f

// same ids; log-probs bit-identical (exact = 1) or within BATCH_TOL
static void assert_same_tokens(const GenResult* a, const GenResult* b, int k, int exact) {
    assert_int_equal(a->n, b->n);
    float worst = 0.0f;
    for (int j = 0; j < a->n; j++) {
        const SampledToken *x = &a->tokens[j], *y = &b->tokens[j];
        assert_int_equal(x->id, y->id);
        assert_memory_equal(x->topk_ids, y->topk_ids, (size_t)k * sizeof(int));
        if (exact) {
            assert_memory_equal(&x->logprob, &y->logprob, sizeof(float));
            assert_memory_equal(&x->tail_mass, &y->tail_mass, sizeof(float));
            assert_memory_equal(x->topk_lp, y->topk_lp, (size_t)k * sizeof(float));
            continue;
        }
        float e = fabsf(x->logprob - y->logprob);
        e = fmaxf(e, fabsf(x->tail_mass - y->tail_mass));
        for (int i = 0; i < k; i++) e = fmaxf(e, fabsf(x->topk_lp[i] - y->topk_lp[i]));
        worst = fmaxf(worst, e);
    }
    if (!exact) print_message("alone vs batched: max log-prob difference %.3g\n", worst);
    assert_true(worst <= BATCH_TOL);
}

// A slot's tokens are the same decoded alone or in a batch whose other slots have other prompt
// lengths and stop at other times (ids equal, log-probs within BATCH_TOL, see the top); the same
// seed in the same layout gives bit-identical tokens.
static void test_batch_invariance(void** state) {
    (void)state;
    const int k = 5;
    SamplingParams p = {.temperature = 0.8f, .top_p = 0.9f, .top_k = 40, .record_topk = k};
    int prompt[4][31];
    const int plen[4] = {13, 21, 3, 31};
    for (int s = 0; s < 4; s++) random_tokens(prompt[s], plen[s], 288, 20 + s);

    // alone, in slot 0 of its own decoder
    Fixture f = fixture(VAR_QWEN3, 4, 96);
    feed1(f.d, 0, prompt[1], plen[1], NULL);
    Rng r1;
    rng_seed(&r1, 5);
    Rng* rp1 = &r1;
    const int slot0 = 0;
    GenResult alone, alone2;
    decoder_generate(f.d, 1, &slot0, &p, &rp1, 25, NULL, 0, NULL, NULL, &alone);
    assert_int_equal(alone.n, 25);
    // the same seed and layout again repeats the tokens bit for bit
    decoder_reset(f.d, 0);
    feed1(f.d, 0, prompt[1], plen[1], NULL);
    rng_seed(&r1, 5);
    decoder_generate(f.d, 1, &slot0, &p, &rp1, 25, NULL, 0, NULL, NULL, &alone2);
    assert_same_tokens(&alone, &alone2, k, 1);

    // in slot 1 of a batch of four, prompts prefilled together, the others stopping early
    for (int s = 0; s < 4; s++) decoder_reset(f.d, s);
    const int slots[4] = {0, 1, 2, 3};
    const int* tok[4] = {prompt[0], prompt[1], prompt[2], prompt[3]};
    decoder_feed(f.d, 4, slots, tok, plen, NULL);
    Rng r[4];
    Rng* rp[4];
    const uint64_t seeds[4] = {9, 5, 11, 13};
    for (int s = 0; s < 4; s++) {
        rng_seed(&r[s], seeds[s]);
        rp[s] = &r[s];
    }
    StopCtx sc = {.limit = {3, 0, 7, 12}};
    GenResult out[4];
    decoder_generate(f.d, 4, slots, &p, rp, 25, NULL, 0, stop_after, &sc, out);
    assert_int_equal(out[0].n, 3);
    assert_int_equal(out[2].n, 7);
    assert_int_equal(out[3].n, 12);
    assert_int_equal(sc.calls, 3 + 25 + 7 + 12);
    assert_same_tokens(&out[1], &alone, k, 0);
    for (int j = 0; j < 25; j++) assert_int_equal(decoder_tokens(f.d, 1)[plen[1] + j], alone.tokens[j].id);

    // stop ids: rerun slot 3 with its 6th token as a stop id: it ends at that token's first use
    const int stop_id = out[3].tokens[5].id;
    int first = 0;
    while (out[3].tokens[first].id != stop_id) first++;
    decoder_truncate(f.d, 3, plen[3]);
    rng_seed(&r[3], seeds[3]);
    GenResult again;
    const int slot3 = 3;
    Rng* rp3 = &r[3];
    decoder_generate(f.d, 1, &slot3, &p, &rp3, 25, &stop_id, 1, NULL, NULL, &again);
    assert_int_equal(again.n, first + 1);
    assert_int_equal(again.tokens[first].id, stop_id);
    assert_int_equal(decoder_length(f.d, 3), plen[3] + first + 1);

    gen_result_free(&alone);
    gen_result_free(&alone2);
    gen_result_free(&again);
    for (int s = 0; s < 4; s++) gen_result_free(&out[s]);
    fixture_free(&f);
}

// greedy generation = argmax of the full forward's logits at every step; a full cache stops it
static void test_greedy_matches_forward(void** state) {
    (void)state;
    Fixture f = fixture(VAR_TINY, 1, 24);
    int seq[24];
    random_tokens(seq, 8, f.V, 30);
    feed1(f.d, 0, seq, 8, NULL);
    SamplingParams p = {.temperature = 0.0f, .top_p = 1.0f};
    Rng r;
    rng_seed(&r, 1);
    Rng* rp = &r;
    const int slot = 0;
    GenResult g;
    decoder_generate(f.d, 1, &slot, &p, &rp, 100, NULL, 0, NULL, NULL, &g);
    assert_int_equal(g.n, 16); // max_len - prompt
    for (int j = 0; j < g.n; j++) seq[8 + j] = g.tokens[j].id;
    float* ref = full_logits(f.m, seq, 24);
    for (int j = 0; j < g.n; j++) {
        const float* z = ref + (size_t)(7 + j) * f.V;
        int best = 0;
        for (int v = 1; v < f.V; v++) best = z[v] > z[best] ? v : best;
        assert_int_equal(g.tokens[j].id, best);
        SampledToken st;
        score_token(z, f.V, best, 0, &st);
        assert_float_equal(g.tokens[j].logprob, st.logprob, 1e-4);
    }
    free(ref);
    gen_result_free(&g);
    fixture_free(&f);
}

// ----------------------------------------------------------------------------
// the score path of `ingrain score` on an HF directory written by hf_save

static void write_file(const char* path, const char* src) {
    FILE* in = fopen(src, "rb");
    FILE* out = fopen(path, "wb");
    assert_non_null(in);
    assert_non_null(out);
    char buf[4096];
    size_t n;
    while ((n = fread(buf, 1, sizeof buf, in)) > 0) assert_int_equal(fwrite(buf, 1, n, out), n);
    fclose(in);
    fclose(out);
}

// decoder_score (on a GPU: the device path, sample_rows without drawing) against score_token over
// model_forward's logits of the whole sequence: same top-k ids, log-probs and tails within 1e-4.
// 70 tokens after a 30-token context span three blocks of the one-slot decoder's 32 head rows.
static void test_score_tokens(void** state) {
    (void)state;
    Fixture f = fixture(VAR_QWEN3, 1, 128);
    const int n0 = 30, n = 70, K = 5, slot = 0;
    int seq[100];
    random_tokens(seq, n0 + n, f.V, 70);
    float* ref = full_logits(f.m, seq, n0 + n);
    const int* ctx = seq;
    int nc = n0;
    decoder_assign(f.d, 1, &slot, &ctx, &nc);
    SampledToken* st = calloc(n, sizeof(SampledToken));
    int* ids = malloc(sizeof(int) * n * K);
    float* lp = malloc(sizeof(float) * n * K);
    for (int j = 0; j < n; j++) st[j].topk_ids = ids + j * K, st[j].topk_lp = lp + j * K;
    decoder_score(f.d, slot, seq + n0, n, K, st);
    assert_int_equal(decoder_length(f.d, slot), n0 + n - 1);
    int rid[5];
    float rlp[5];
    for (int j = 0; j < n; j++) {
        SampledToken r = {.topk_ids = rid, .topk_lp = rlp};
        score_token(ref + (size_t)(n0 - 1 + j) * f.V, f.V, seq[n0 + j], K, &r);
        assert_int_equal(st[j].id, seq[n0 + j]);
        assert_true(fabsf(st[j].logprob - r.logprob) <= 1e-4f);
        assert_true(fabsf(st[j].tail_mass - r.tail_mass) <= 1e-4f);
        for (int k = 0; k < K; k++) {
            assert_int_equal(st[j].topk_ids[k], rid[k]);
            assert_true(fabsf(st[j].topk_lp[k] - rlp[k]) <= 1e-4f);
        }
    }
    free(st), free(ids), free(lp), free(ref);
    fixture_free(&f);
}

// Generation on the backend under test against the CPU backend's host draws, from the same
// weights, prompts and seeds: on a GPU the draws run on the device (decode.c's generate_device,
// the backend's sample_rows), on the CPU on the host. Same ids and top-k ids, log-probs and tails
// within 1e-4 (the two backends' logits differ in the last bits, and the device sums in another
// order, so a draw could flip only if its uniform fell that close to a cumulative boundary). The
// CPU build has nothing to compare (both sides would draw on the host): skipped there.
static void test_device_draws_match_host(void** state) {
    (void)state;
#ifndef TEST_DECODE_CUDA
    skip();
#else
    const ModelConfig c = variant_config(VAR_QWEN3);
    const int V = c.vocab_size, NB = 3, LEN = 64;
    Backend* be[2] = {test_backend(1), backend_cpu_create(1)};
    Model* m[2];
    Decoder* d[2];
    for (int b = 0; b < 2; b++) m[b] = model_create(&c, be[b], 1, LEN);
    perturb_params(m[0], 5);
    const size_t np = model_num_params(m[0]);
    float* params = malloc(np * sizeof(float));
    model_params_download(m[0], params);
    model_params_upload(m[1], params);
    free(params);
    const int slots[3] = {0, 1, 2}, n[3] = {5, 9, 2};
    int prompt[3][9];
    const int* pp[3] = {prompt[0], prompt[1], prompt[2]};
    for (int i = 0; i < NB; i++) random_tokens(prompt[i], n[i], V, 60 + i);
    for (int b = 0; b < 2; b++) {
        d[b] = decoder_create(m[b], NB, LEN);
        decoder_feed(d[b], NB, slots, pp, n, NULL);
    }
    const SamplingParams ps[] = {{.temperature = 1.0f, .top_p = 1.0f, .record_topk = 8},
                                 {.temperature = 0.0f, .top_p = 1.0f, .record_topk = 3},
                                 {.temperature = 0.8f, .top_p = 1.0f, .record_topk = 0}};
    for (size_t k = 0; k < sizeof ps / sizeof ps[0]; k++) {
        GenResult out[2][3];
        for (int b = 0; b < 2; b++) {
            Rng r[3];
            Rng* rp[3] = {&r[0], &r[1], &r[2]};
            for (int i = 0; i < NB; i++) rng_seed(&r[i], 40 + 10 * k + i);
            decoder_generate(d[b], NB, slots, &ps[k], rp, 12, NULL, 0, NULL, NULL, out[b]);
        }
        for (int i = 0; i < NB; i++) {
            assert_int_equal(out[0][i].n, out[1][i].n);
            for (int j = 0; j < out[0][i].n; j++) {
                const SampledToken *g = &out[0][i].tokens[j], *h = &out[1][i].tokens[j];
                assert_int_equal(g->id, h->id);
                assert_true(fabsf(g->logprob - h->logprob) <= 1e-4f);
                assert_true(fabsf(g->tail_mass - h->tail_mass) <= 1e-4f);
                for (int t = 0; t < ps[k].record_topk; t++) {
                    assert_int_equal(g->topk_ids[t], h->topk_ids[t]);
                    assert_true(fabsf(g->topk_lp[t] - h->topk_lp[t]) <= 1e-4f);
                }
            }
            gen_result_free(&out[0][i]);
            gen_result_free(&out[1][i]);
        }
    }
    for (int b = 0; b < 2; b++) {
        decoder_free(d[b]);
        model_free(m[b]);
        backend_destroy(be[b]);
    }
#endif
}

static void test_score_hf(void** state) {
    (void)state;
    char tmp[] = "/tmp/test_decode_XXXXXX";
    assert_non_null(mkdtemp(tmp));
    char src[600], dir[600], path[700], err[1024];
    snprintf(src, sizeof src, "%s/src", tmp);
    snprintf(dir, sizeof dir, "%s/model", tmp);
    assert_int_equal(mkdir(src, 0755), 0);
    snprintf(path, sizeof path, "%s/tokenizer.json", src);
    // INGRAIN_TEST_DATA in the environment overrides the compiled tests/ path (a GPU machine's copy)
    const char* data = getenv("INGRAIN_TEST_DATA") && *getenv("INGRAIN_TEST_DATA") ? getenv("INGRAIN_TEST_DATA")
                                                                                    : INGRAIN_TEST_DATA;
    char tok[700];
    snprintf(tok, sizeof tok, "%s/data/tokenizer/tiny.tokenizer.json", data);
    write_file(path, tok);

    // a Qwen3-shaped model (QK-norm, GQA) saved as HF, with the tiny BPE tokenizer
    const ModelConfig c = variant_config(VAR_QWEN3);
    Backend* be = test_backend(1);
    Model* m = model_create(&c, be, 1, 64);
    perturb_params(m, 11);
    const size_t np = model_num_params(m);
    float* params = malloc(np * sizeof(float));
    model_params_download(m, params);
    if (hf_save(dir, &c, params, np, ST_F32, src, err, sizeof err) != 0) fail_msg("%s", err);

    CliModel cm;
    if (cli_model_load(dir, 1, 0, &cm, err, sizeof err) != 0) fail_msg("%s", err);
    assert_non_null(cm.tok);
    assert_int_equal(cm.cfg.qk_norm, 1);
    TokenBuf ids = {0};
    const char* text = "hello world, hello <x> again";
    tokenizer_encode(cm.tok, text, strlen(text), 1, &ids);
    assert_true(ids.n > 5);
    const int K = 3;
    char* json = cli_score_json(&cm, dir, ids.ids, ids.n, K, err, sizeof err);
    if (!json) fail_msg("%s", err);

    // reference: log-softmax of the full forward of the original model
    const int V = c.vocab_size;
    float* z = full_logits(m, ids.ids, ids.n);
    json_error_t je;
    json_t* root = json_loads(json, 0, &je);
    assert_non_null(root);
    json_t* toks = json_object_get(root, "tokens");
    json_t* lps = json_object_get(root, "logprobs");
    json_t* topk = json_object_get(root, "topk");
    assert_int_equal(json_array_size(toks), ids.n);
    assert_int_equal(json_array_size(lps), ids.n);
    assert_int_equal(json_array_size(json_object_get(root, "token_strs")), ids.n);
    assert_true(json_is_null(json_array_get(lps, 0)));
    double sum = 0.0;
    for (int t = 1; t < ids.n; t++) {
        assert_int_equal(json_integer_value(json_array_get(toks, t)), ids.ids[t]);
        const float* row = z + (size_t)(t - 1) * V;
        const double lse = loss_row_logsumexp(row, V), want = row[ids.ids[t]] - lse;
        const double got = json_real_value(json_array_get(lps, t));
        assert_true(fabs(got - want) <= 1e-4);
        sum += got;
        json_t* e = json_array_get(topk, t);
        double mass = json_real_value(json_object_get(e, "tail_mass"));
        for (int j = 0; j < K; j++) mass += exp(json_real_value(json_array_get(json_object_get(e, "logprobs"), j)));
        assert_true(fabs(mass - 1.0) <= 1e-5);
        const int best = (int)json_integer_value(json_array_get(json_object_get(e, "ids"), 0));
        for (int v = 0; v < V; v++) assert_true(row[v] <= row[best] + 1e-5f);
    }
    assert_true(fabs(json_real_value(json_object_get(root, "sum_logprob")) - sum) <= 1e-4);
    json_decref(root);
    free(json);

    // errors a user can cause: ids outside the vocabulary, too long an input, a bad directory
    int bad[2] = {1, V};
    assert_null(cli_score_json(&cm, dir, bad, 2, 0, err, sizeof err));
    assert_non_null(strstr(err, "outside the model's vocabulary"));
    int* many = calloc((size_t)c.max_seq_len + 1, sizeof(int));
    assert_null(cli_score_json(&cm, dir, many, c.max_seq_len + 1, 0, err, sizeof err));
    assert_non_null(strstr(err, "context"));
    free(many);
    CliModel none;
    assert_int_equal(cli_model_load(src, 1, 0, &none, err, sizeof err), -1);
    assert_non_null(strstr(err, "config.json"));
    assert_int_equal(cli_model_load("/no/such/model", 1, 0, &none, err, sizeof err), -1);
    assert_non_null(strstr(err, "/no/such/model"));
    TokenBuf tb = {0};
    assert_int_equal(cli_parse_tokens("1, 2,3", &tb, err, sizeof err), 0);
    assert_int_equal(tb.n, 3);
    assert_int_equal(tb.ids[2], 3);
    assert_int_equal(cli_parse_tokens("4,x5", &tb, err, sizeof err), -1);
    assert_non_null(strstr(err, "item 2"));
    tokenbuf_free(&tb);

    tokenbuf_free(&ids);
    cli_model_free(&cm);
    free(z);
    free(params);
    model_free(m);
    backend_destroy(be);
    char cmd[700];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", tmp);
    assert_int_equal(system(cmd), 0);
}

int main(void) {
#ifdef TEST_DECODE_CUDA
    char err[256];
    Backend* probe = backend_cuda_create(0, 0, err, sizeof err);
    if (!probe) {
        printf("no CUDA GPU: %s\n", err);
        return 77;
    }
    backend_destroy(probe);
#endif
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_incremental_tiny),       cmocka_unit_test(test_incremental_qk_norm),
        cmocka_unit_test(test_incremental_qkv_bias),   cmocka_unit_test(test_incremental_untied_rope_scaled),
        cmocka_unit_test(test_truncate_refeed),        cmocka_unit_test(test_copy),
        cmocka_unit_test(test_feed_device),
        cmocka_unit_test(test_prefix_reuse),           cmocka_unit_test(test_batch_invariance),
        cmocka_unit_test(test_greedy_matches_forward), cmocka_unit_test(test_score_tokens),
        cmocka_unit_test(test_device_draws_match_host),
        cmocka_unit_test(test_score_hf),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
