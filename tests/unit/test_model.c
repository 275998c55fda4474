// Transformer forward, backward and AdamW against an independent PyTorch implementation
// (tools/model_reference.py, float64), plus initialisation, padding and determinism checks.
//
// Tolerances (C runs float32, the reference float64; measured errors are below 1e-6 relative
// for logits and gradients, 1e-5 relative over the 10 steps):
//   logits     max |c - ref| <= 1e-5 * max |ref| over the real (unpadded) positions
//   loss       |c - ref| <= 1e-5 * |ref|
//   gradients  per tensor, max |c - ref| <= 1e-4 * max |ref of that tensor|
//   training   10 AdamW steps: each step's loss and pre-clip grad norm within 1e-4 relative
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "model/adamw.h"
#include "model/loss.h"
#include "model/model.h"
#include "model/ops.h"
#include "model/tokenizer_byte_vocab.h"

// ----------------------------------------------------------------------------
// reference files (format in tools/model_reference.py)

typedef struct {
    char name[64];
    int dtype; // 0 f32, 1 i32
    int ndim;
    int dims[4];
    size_t n;
    void* data;
} RefArray;

typedef struct {
    RefArray* a;
    int count;
} RefFile;

static uint32_t read_u32(FILE* f) {
    uint32_t x;
    assert_int_equal(fread(&x, 4, 1, f), 1);
    return x;
}

static RefFile ref_load(const char* name) {
    char path[512];
    snprintf(path, sizeof path, "%s/data/model/%s.bin", INGRAIN_TEST_DATA, name);
    FILE* f = fopen(path, "rb");
    if (!f) fail_msg("cannot open %s", path);
    char magic[4];
    assert_int_equal(fread(magic, 1, 4, f), 4);
    assert_memory_equal(magic, "IGRF", 4);
    assert_int_equal(read_u32(f), 1);
    RefFile r = {.count = (int)read_u32(f)};
    r.a = calloc((size_t)r.count, sizeof(RefArray));
    for (int i = 0; i < r.count; i++) {
        RefArray* a = &r.a[i];
        uint32_t len = read_u32(f);
        assert_true(len < sizeof a->name);
        assert_int_equal(fread(a->name, 1, len, f), len);
        a->dtype = (int)read_u32(f);
        a->ndim = (int)read_u32(f);
        assert_true(a->ndim <= 4);
        a->n = 1;
        for (int d = 0; d < a->ndim; d++) a->n *= (a->dims[d] = (int)read_u32(f));
        a->data = malloc(a->n * 4);
        assert_int_equal(fread(a->data, 4, a->n, f), a->n);
    }
    fclose(f);
    return r;
}

static void ref_free(RefFile* r) {
    for (int i = 0; i < r->count; i++) free(r->a[i].data);
    free(r->a);
}

static const RefArray* ref_find(const RefFile* r, const char* name) {
    for (int i = 0; i < r->count; i++) {
        if (strcmp(r->a[i].name, name) == 0) return &r->a[i];
    }
    return NULL;
}

static const RefArray* ref_get(const RefFile* r, const char* name) {
    const RefArray* a = ref_find(r, name);
    if (!a) fail_msg("reference array '%s' missing", name);
    return a;
}

static int ref_int(const RefFile* r, const char* name) { return ((const int*)ref_get(r, name)->data)[0]; }
static float ref_float(const RefFile* r, const char* name) { return ((const float*)ref_get(r, name)->data)[0]; }

static ModelConfig ref_config(const RefFile* r) {
    ModelConfig c = {.arch = "reference", .max_seq_len = 64};
    c.vocab_size = ref_int(r, "config.vocab_size");
    c.dim = ref_int(r, "config.dim");
    c.n_layers = ref_int(r, "config.n_layers");
    c.n_heads = ref_int(r, "config.n_heads");
    c.n_kv_heads = ref_int(r, "config.n_kv_heads");
    c.head_dim = ref_int(r, "config.head_dim");
    c.hidden_dim = ref_int(r, "config.hidden_dim");
    c.tied_embeddings = ref_int(r, "config.tied");
    c.qkv_bias = ref_int(r, "config.qkv_bias");
    c.qk_norm = ref_int(r, "config.qk_norm");
    c.rope_scaling = (RopeScalingType)ref_int(r, "config.rope_scaling");
    c.rope_original_max_seq_len = ref_int(r, "config.rope_original_max_seq_len");
    c.rope_theta = ref_float(r, "config.rope_theta");
    c.norm_eps = ref_float(r, "config.norm_eps");
    c.rope_factor = ref_float(r, "config.rope_factor");
    c.rope_low_freq_factor = ref_float(r, "config.rope_low_freq_factor");
    c.rope_high_freq_factor = ref_float(r, "config.rope_high_freq_factor");
    return c;
}

// upload every "param.<name>" into the model, checking that the file covers exactly the table
static void ref_upload_params(const RefFile* r, Model* m) {
    const ParamInfo* t = model_param_info(m);
    float* host = calloc(model_num_params(m), sizeof(float));
    for (int i = 0; i < PARAM_COUNT; i++) {
        char key[96];
        snprintf(key, sizeof key, "param.%s", t[i].name);
        const RefArray* a = ref_find(r, key);
        if (t[i].numel == 0) {
            assert_null(a);
            continue;
        }
        if (!a) fail_msg("reference lacks %s", key);
        assert_int_equal(a->n, t[i].numel);
        memcpy(host + t[i].offset, a->data, a->n * sizeof(float));
    }
    model_params_upload(m, host);
    free(host);
}

// ----------------------------------------------------------------------------
// comparisons

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
// forward, loss and gradients against PyTorch

static void check_reference(const char* name) {
    RefFile r = ref_load(name);
    ModelConfig c = ref_config(&r);
    const RefArray* tok = ref_get(&r, "tokens");
    const int B = tok->dims[0], T = tok->dims[1], V = c.vocab_size, N = B * T;
    const int* lengths = ref_get(&r, "lengths")->data;
    Backend* be = backend_cpu_create(2);
    Model* m = model_create(&c, be, B, T);
    ref_upload_params(&r, m);

    // logits on the real positions
    float* logits = malloc((size_t)N * V * sizeof(float));
    model_forward(m, tok->data, lengths, B, T, logits);
    const float* ref_logits = ref_get(&r, "logits")->data;
    float err = 0.0f, scale = 0.0f;
    for (int b = 0; b < B; b++) {
        for (int t = 0; t < lengths[b]; t++) {
            const size_t o = ((size_t)b * T + t) * V;
            err = fmaxf(err, max_abs_diff(logits + o, ref_logits + o, (size_t)V));
            scale = fmaxf(scale, max_abs(ref_logits + o, (size_t)V));
        }
    }
    print_message("%s: logits max abs err %.3g (scale %.3g)\n", name, err, scale);
    assert_true(err <= 1e-5f * scale);

    // weighted cross-entropy and its gradient
    int* targets = be->alloc(be, (size_t)N * sizeof(int));
    float* weights = be->alloc(be, (size_t)N * sizeof(float));
    be->upload(be, targets, ref_get(&r, "targets")->data, (size_t)N * sizeof(int));
    be->upload(be, weights, ref_get(&r, "weights")->data, (size_t)N * sizeof(float));
    float* dlogits = model_dlogits(m);
    double loss = loss_cross_entropy(be, model_logits(m), targets, weights, N, V, NULL, dlogits, LOSS_DZ_SET);
    const float ref_loss = ref_float(&r, "loss");
    print_message("%s: loss %.7f, reference %.7f\n", name, loss, ref_loss);
    assert_true(fabs(loss - ref_loss) <= 1e-5 * fabs(ref_loss));
    model_zero_grad(m);
    model_backward(m, dlogits);
    float* grads = malloc(model_num_params(m) * sizeof(float));
    model_grads_download(m, grads);
    const ParamInfo* info = model_param_info(m);
    for (int i = 0; i < PARAM_COUNT; i++) {
        if (info[i].numel == 0) continue;
        char key[96];
        snprintf(key, sizeof key, "grad.%s", info[i].name);
        const RefArray* g = ref_get(&r, key);
        float gerr = max_abs_diff(grads + info[i].offset, g->data, g->n), gscale = max_abs(g->data, g->n);
        print_message("%s: grad %-10s max abs err %.3g (scale %.3g)\n", name, info[i].name, gerr, gscale);
        assert_true(gscale > 0.0f);
        assert_true(gerr <= 1e-4f * gscale);
    }

    // 10 AdamW steps from the same weights
    AdamWConfig oc = {.lr = ref_float(&r, "adamw.lr"),
                      .min_lr_ratio = ref_float(&r, "adamw.min_lr_ratio"),
                      .warmup_steps = ref_int(&r, "adamw.warmup_steps"),
                      .total_steps = ref_int(&r, "adamw.total_steps"),
                      .beta1 = ref_float(&r, "adamw.beta1"),
                      .beta2 = ref_float(&r, "adamw.beta2"),
                      .eps = ref_float(&r, "adamw.eps"),
                      .weight_decay = ref_float(&r, "adamw.weight_decay"),
                      .grad_clip = ref_float(&r, "adamw.grad_clip")};
    AdamW* opt = adamw_create(be, &oc, info, model_num_params(m));
    const float* ref_losses = ref_get(&r, "train.losses")->data;
    const float* ref_norms = ref_get(&r, "train.grad_norms")->data;
    for (int s = 0; s < ref_int(&r, "adamw.steps"); s++) {
        float norm;
        float l = model_train_step_ce(m, opt, tok->data, ref_get(&r, "targets")->data, ref_get(&r, "weights")->data,
                                      lengths, B, T, &norm);
        print_message("%s: step %d loss %.6f (ref %.6f) norm %.5f (ref %.5f)\n", name, s, l, ref_losses[s], norm,
                      ref_norms[s]);
        assert_true(fabsf(l - ref_losses[s]) <= 1e-4f * fabsf(ref_losses[s]));
        assert_true(fabsf(norm - ref_norms[s]) <= 1e-4f * fabsf(ref_norms[s]));
    }

    adamw_free(opt);
    free(grads);
    free(logits);
    be->free(be, targets);
    be->free(be, weights);
    model_free(m);
    backend_destroy(be);
    ref_free(&r);
}

static void test_reference_llama(void** state) {
    (void)state;
    check_reference("llama");
}

static void test_reference_qwen3(void** state) {
    (void)state;
    check_reference("qwen3");
}

static void test_reference_qwen2(void** state) {
    (void)state;
    check_reference("qwen2");
}

// ----------------------------------------------------------------------------
// initialisation, padding, determinism (built-in tiny config)

static Model* tiny_model(Backend* be, int B, int T) {
    ModelConfig c;
    assert_int_equal(model_builtin_config("tiny", &c), 0);
    return model_create(&c, be, B, T);
}

static void test_init(void** state) {
    (void)state;
    Backend* be = backend_cpu_create(2);
    Model* m = tiny_model(be, 1, 8);
    model_init_random(m, 42);
    const size_t n = model_num_params(m);
    float* p = malloc(n * sizeof(float));
    float* p2 = malloc(n * sizeof(float));
    model_params_download(m, p);
    const ParamInfo* info = model_param_info(m);
    for (int i = 0; i < PARAM_COUNT; i++) {
        if (info[i].numel == 0) continue;
        const float* t = p + info[i].offset;
        double s = 0.0, ss = 0.0;
        for (size_t j = 0; j < info[i].numel; j++) s += t[j], ss += (double)t[j] * t[j];
        double mean = s / info[i].numel, std = sqrt(ss / info[i].numel - mean * mean);
        if (info[i].is_norm) {
            assert_true(mean == 1.0 && std == 0.0); // tiny has no biases: every is_norm tensor is a norm
        } else {
            assert_true(fabs(mean) < 0.002 && fabs(std - 0.02) < 0.001);
        }
    }
    model_init_random(m, 42);
    model_params_download(m, p2);
    assert_memory_equal(p, p2, n * sizeof(float));
    model_init_random(m, 43);
    model_params_download(m, p2);
    assert_true(memcmp(p, p2, n * sizeof(float)) != 0);
    free(p);
    free(p2);
    model_free(m);
    backend_destroy(be);
}

static void random_batch(int* tokens, int* lengths, int B, int T, uint32_t seed) {
    for (int i = 0; i < B * T; i++) {
        seed = seed * 1664525u + 1013904223u;
        tokens[i] = (int)(seed >> 8) % BYTE_VOCAB_SIZE;
    }
    for (int b = 0; b < B; b++) lengths[b] = T - (b * 7) % T;
}

// what sits in padded positions changes nothing in real positions, nor in any gradient
static void test_padding_ignored(void** state) {
    (void)state;
    enum { B = 3, T = 24 };
    Backend* be = backend_cpu_create(2);
    Model* m = tiny_model(be, B, T);
    model_init_random(m, 1);
    const int V = model_config(m)->vocab_size;
    int tokens[B * T], lengths[B];
    random_batch(tokens, lengths, B, T, 5);
    const size_t n = model_num_params(m);
    float* logits[2];
    float* grads[2];
    for (int pass = 0; pass < 2; pass++) {
        for (int b = 0; b < B; b++) {
            for (int t = lengths[b]; t < T; t++) tokens[b * T + t] = pass == 0 ? 0 : 100 + t;
        }
        logits[pass] = malloc((size_t)B * T * V * sizeof(float));
        grads[pass] = malloc(n * sizeof(float));
        model_forward(m, tokens, lengths, B, T, logits[pass]);
        // a gradient that is nonzero everywhere, padded rows included (model_backward masks them)
        float* dl = malloc((size_t)B * T * V * sizeof(float));
        for (int i = 0; i < B * T * V; i++) dl[i] = 1e-3f * (float)((i * 37) % 11 - 5);
        be->upload(be, model_dlogits(m), dl, (size_t)B * T * V * sizeof(float));
        free(dl);
        model_zero_grad(m);
        model_backward(m, model_dlogits(m));
        model_grads_download(m, grads[pass]);
    }
    for (int b = 0; b < B; b++) {
        const size_t o = (size_t)b * T * V;
        assert_memory_equal(logits[0] + o, logits[1] + o, (size_t)lengths[b] * V * sizeof(float));
    }
    assert_memory_equal(grads[0], grads[1], n * sizeof(float));
    for (int pass = 0; pass < 2; pass++) free(logits[pass]), free(grads[pass]);
    model_free(m);
    backend_destroy(be);
}

// same seed => bit-identical weights after a few steps (test_init shows another seed differs)
static void train_tiny(uint64_t seed, float* params_out) {
    enum { B = 2, T = 32 };
    Backend* be = backend_cpu_create(2);
    Model* m = tiny_model(be, B, T);
    model_init_random(m, seed);
    AdamWConfig oc = adamw_default_config();
    oc.lr = 1e-3f;
    oc.warmup_steps = 2;
    oc.total_steps = 4;
    AdamW* opt = adamw_create(be, &oc, model_param_info(m), model_num_params(m));
    int tokens[B * T], lengths[B], targets[B * T];
    float weights[B * T];
    random_batch(tokens, lengths, B, T, (uint32_t)seed);
    for (int i = 0; i < B * T; i++) {
        targets[i] = (i + 1) % T ? tokens[i + 1] : -1;
        weights[i] = 1.0f / (B * T);
    }
    for (int s = 0; s < 4; s++) {
        float norm;
        float loss = model_train_step_ce(m, opt, tokens, targets, weights, lengths, B, T, &norm);
        assert_true(isfinite(loss) && norm > 0.0f);
    }
    model_params_download(m, params_out);
    adamw_free(opt);
    model_free(m);
    backend_destroy(be);
}

static void test_determinism(void** state) {
    (void)state;
    ModelConfig c;
    ParamInfo t[PARAM_COUNT];
    assert_int_equal(model_builtin_config("tiny", &c), 0);
    const size_t n = model_param_table(&c, t);
    float* a = malloc(n * sizeof(float));
    float* b = malloc(n * sizeof(float));
    train_tiny(7, a);
    train_tiny(7, b);
    assert_memory_equal(a, b, n * sizeof(float));
    free(a);
    free(b);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_reference_llama), cmocka_unit_test(test_reference_qwen3),
        cmocka_unit_test(test_reference_qwen2), cmocka_unit_test(test_init),
        cmocka_unit_test(test_padding_ignored),  cmocka_unit_test(test_determinism),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
