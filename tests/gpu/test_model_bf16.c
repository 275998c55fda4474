// The model on the CUDA backend's bf16 mode (label gpu; tests/emu runs it in emulation): bf16
// activation storage (ops.h, alloc_act), bf16 tensor-core matmuls and attention, against the
// same model on the CPU backend in fp32, from the same weights and batch.
// Tolerances (normalised error max |gpu - cpu| / max |cpu| per tensor): logits 1.5e-2; each
// parameter's gradient 4e-2; the cross-entropy and six AdamW steps' losses 5e-3 relative. bf16
// keeps 8 bits of mantissa (relative rounding 2^-9 = 2e-3); every layer rounds its activations
// and the matmuls' operands once more, and the gradients go through twice as many roundings as
// the logits. Measured in emulation: logits <= 5.9e-3, gradients <= 1.4e-2, losses <= 1.8e-3 (the
// logits are bf16 too, so the losses see them rounded; 6e-4 with fp32 logits).
// Shapes cover the tensor-core attention (head sizes 32 and 64, GQA, QK-norm, q/k/v
// biases, tied and untied heads, padded rows) and the fp32 attention kernels on fp32 copies of
// the activations (head size 16, which has no tensor-core kernel; 4 tokens, the decoding path).
// Then determinism: two bf16 runs give bit-identical gradients; the decoder (bf16 KV cache) against
// the CPU's, logits within the same tolerance; and ops that take no activation
// buffer (or not in that argument) stop with a clear message on one. Without a usable GPU it prints
// "no CUDA GPU: <reason>" and exits 77.
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cmocka.h>

#include "model/adamw.h"
#include "model/decode.h"
#include "model/model.h"
#include "model/ops.h"

#define TOL_LOGITS 1.5e-2
#define TOL_GRAD 4e-2
#define TOL_LOSS 5e-3

// ----------------------------------------------------------------------------
// helpers

static Backend* gpu_bf16(void) {
    char err[512];
    Backend* be = backend_cuda_create(0, 1, err, sizeof err);
    if (!be) fail_msg("backend_cuda_create: %s", err);
    return be;
}

static ModelConfig shape(int V, int D, int L, int H, int KV, int hd, int F, int tied, int qkv_bias, int qk_norm) {
    ModelConfig c;
    assert_int_equal(model_builtin_config("tiny", &c), 0);
    c.vocab_size = V, c.dim = D, c.n_layers = L, c.n_heads = H, c.n_kv_heads = KV, c.head_dim = hd;
    c.hidden_dim = F, c.tied_embeddings = tied, c.qkv_bias = qkv_bias, c.qk_norm = qk_norm;
    return c;
}

// max |a - b| / max |b|
static double norm_err(const float* a, const float* b, size_t n) {
    double num = 0.0, den = 0.0;
    for (size_t i = 0; i < n; i++) {
        const double d = fabs((double)a[i] - (double)b[i]);
        num = isnan(d) || d > num ? d : num;
        den = fabs((double)b[i]) > den ? fabs((double)b[i]) : den;
    }
    return den > 0.0 ? num / den : num;
}

static void batch(int* tokens, int* targets, float* weights, int* lengths, int B, int T, int V, uint32_t seed) {
    for (int b = 0; b < B; b++) lengths[b] = T - (b * 11) % (T / 2 + 1);
    for (int i = 0; i < B * T; i++) {
        seed = seed * 1664525u + 1013904223u;
        tokens[i] = (int)(seed >> 8) % V;
    }
    for (int i = 0; i < B * T; i++) {
        targets[i] = (i + 1) % T ? tokens[i + 1] : -1;
        weights[i] = 1.0f / (float)(B * T);
    }
}

// one forward (logits), cross-entropy and backward (gradients) of the model with weights `seed`
typedef struct {
    float* logits;
    float* grads;
    float loss;
} Pass;

static Pass run_pass(Backend* be, const ModelConfig* c, int B, int T, uint64_t seed) {
    const int N = B * T, V = c->vocab_size;
    Model* m = model_create(c, be, B, T);
    model_init_random(m, seed);
    int* tokens = malloc(sizeof(int) * N);
    int* targets = malloc(sizeof(int) * N);
    float* weights = malloc(sizeof(float) * N);
    int lengths[8];
    batch(tokens, targets, weights, lengths, B, T, V, (uint32_t)seed);
    Pass p = {malloc(sizeof(float) * N * V), malloc(sizeof(float) * model_num_params(m)), 0.0f};
    AdamWConfig oc = adamw_default_config();
    oc.lr = 0.0f; // the step's update changes nothing: the gradients are those of these weights
    AdamW* opt = adamw_create(be, &oc, model_param_info(m), model_num_params(m));
    p.loss = model_train_step_ce(m, opt, tokens, targets, weights, lengths, B, T, NULL);
    model_grads_download(m, p.grads);
    model_forward(m, tokens, lengths, B, T, p.logits);
    for (int b = 0; b < B; b++) { // padded rows are the backends' own business
        memset(p.logits + ((size_t)b * T + lengths[b]) * V, 0, sizeof(float) * (size_t)(T - lengths[b]) * V);
    }
    adamw_free(opt);
    model_free(m);
    free(tokens), free(targets), free(weights);
    return p;
}

static void pass_free(Pass* p) { free(p->logits), free(p->grads); }

static void compare_with_cpu(const char* name, const ModelConfig* c, int B, int T) {
    Backend* cpu = backend_cpu_create(2);
    Backend* gpu = gpu_bf16();
    Pass want = run_pass(cpu, c, B, T, 7), got = run_pass(gpu, c, B, T, 7);
    const double e_logits = norm_err(got.logits, want.logits, (size_t)B * T * c->vocab_size);
    const double e_loss = fabs((double)got.loss - want.loss) / fabs((double)want.loss);
    printf("%s: logits %.2e, loss %.6f (cpu %.6f, %.2e)\n", name, e_logits, got.loss, want.loss, e_loss);
    assert_true(e_logits <= TOL_LOGITS);
    assert_true(e_loss <= TOL_LOSS);
    ParamInfo table[PARAM_COUNT];
    model_param_table(c, table);
    double worst = 0.0;
    for (int i = 0; i < PARAM_COUNT; i++) {
        if (!table[i].numel) continue;
        const double e = norm_err(got.grads + table[i].offset, want.grads + table[i].offset, table[i].numel);
        if (e > TOL_GRAD) printf("%s: grad %-10s normalised error %.2e > %.0e\n", name, table[i].name, e, TOL_GRAD);
        worst = e > worst ? e : worst;
    }
    printf("%s: worst gradient %.2e\n", name, worst);
    assert_true(worst <= TOL_GRAD);
    pass_free(&want), pass_free(&got);
    backend_destroy(gpu);
    backend_destroy(cpu);
}

// ----------------------------------------------------------------------------
// tests

// tensor-core attention, head size 32, GQA, untied LM head
static void test_gqa(void** state) {
    (void)state;
    const ModelConfig c = shape(300, 128, 2, 4, 2, 32, 192, 0, 0, 0);
    compare_with_cpu("gqa", &c, 2, 48);
}

// Qwen-style: QK-norm and q/k/v biases, H hd != D, tied, head size 64
static void test_qwen(void** state) {
    (void)state;
    const ModelConfig c = shape(260, 96, 2, 4, 2, 64, 160, 1, 1, 1);
    compare_with_cpu("qwen", &c, 2, 40);
}

// head size 16 (no tensor-core kernel) and a 4-token batch (the decoding kernels): the fp32
// attention on fp32 copies of the activations
static void test_staged_attention(void** state) {
    (void)state;
    const ModelConfig c = shape(200, 64, 2, 4, 4, 16, 128, 1, 0, 0);
    compare_with_cpu("hd16", &c, 2, 24);
    const ModelConfig d = shape(200, 128, 1, 4, 4, 32, 128, 1, 0, 0);
    compare_with_cpu("decode-shaped", &d, 3, 4);
}

// AdamW steps from the same weights track the CPU's losses
static void train(Backend* be, const ModelConfig* c, int B, int T, float* losses, int steps) {
    const int N = B * T;
    Model* m = model_create(c, be, B, T);
    model_init_random(m, 3);
    int* tokens = malloc(sizeof(int) * N);
    int* targets = malloc(sizeof(int) * N);
    float* weights = malloc(sizeof(float) * N);
    int lengths[8];
    batch(tokens, targets, weights, lengths, B, T, c->vocab_size, 3);
    AdamWConfig oc = adamw_default_config();
    oc.lr = 3e-3f;
    oc.warmup_steps = 1;
    oc.total_steps = steps;
    AdamW* opt = adamw_create(be, &oc, model_param_info(m), model_num_params(m));
    for (int s = 0; s < steps; s++) {
        losses[s] = model_train_step_ce(m, opt, tokens, targets, weights, lengths, B, T, NULL);
    }
    adamw_free(opt);
    model_free(m);
    free(tokens), free(targets), free(weights);
}

static void test_training(void** state) {
    (void)state;
    enum { STEPS = 6 };
    const ModelConfig c = shape(300, 128, 2, 4, 2, 32, 192, 1, 0, 0);
    Backend* cpu = backend_cpu_create(2);
    Backend* gpu = gpu_bf16();
    float want[STEPS], got[STEPS];
    train(cpu, &c, 2, 48, want, STEPS);
    train(gpu, &c, 2, 48, got, STEPS);
    for (int s = 0; s < STEPS; s++) {
        const double e = fabs((double)got[s] - want[s]) / fabs((double)want[s]);
        printf("step %d loss %.6f (cpu %.6f, %.2e)\n", s, got[s], want[s], e);
        assert_true(e <= TOL_LOSS);
    }
    assert_true(got[STEPS - 1] < got[0]);
    backend_destroy(gpu);
    backend_destroy(cpu);
}

static void test_determinism(void** state) {
    (void)state;
    const ModelConfig c = shape(260, 96, 2, 4, 2, 64, 160, 1, 1, 1);
    Backend* gpu = gpu_bf16();
    Pass a = run_pass(gpu, &c, 2, 40, 11), b = run_pass(gpu, &c, 2, 40, 11);
    ParamInfo table[PARAM_COUNT];
    assert_memory_equal(a.grads, b.grads, sizeof(float) * model_param_table(&c, table));
    assert_memory_equal(a.logits, b.logits, sizeof(float) * 2 * 40 * c.vocab_size);
    pass_free(&a), pass_free(&b);
    backend_destroy(gpu);
}

// Decoding in the bf16 mode (a bf16 KV cache read by the decoding kernels, bf16 activations)
// against the CPU's decoder: three slots' prompts fed in one batch (the tensor-core attention),
// then single tokens (the decoding kernels); every fed position's logits within TOL_LOGITS.
static void decode_logits(Backend* be, const ModelConfig* c, float* out) {
    enum { S = 3, STEPS = 5 };
    static const int plen[S] = {33, 7, 20};
    Model* m = model_create(c, be, 1, 1);
    model_init_random(m, 9);
    Decoder* d = decoder_create(m, S, 64);
    int slots[S] = {0, 1, 2}, n[S], toks[S][40];
    const int* tp[S];
    uint32_t seed = 77;
    for (int i = 0; i < S; i++) {
        for (int t = 0; t < plen[i]; t++) {
            seed = seed * 1664525u + 1013904223u;
            toks[i][t] = (int)(seed >> 8) % c->vocab_size;
        }
        tp[i] = toks[i], n[i] = plen[i];
    }
    decoder_feed(d, S, slots, tp, n, out);
    out += (size_t)(33 + 7 + 20) * c->vocab_size;
    for (int s = 0; s < STEPS; s++) {
        for (int i = 0; i < S; i++) toks[i][0] = (7 * s + 13 * i) % c->vocab_size, tp[i] = toks[i], n[i] = 1;
        decoder_feed(d, S, slots, tp, n, out);
        out += (size_t)S * c->vocab_size;
    }
    decoder_free(d);
    model_free(m);
}

static void test_decoder(void** state) {
    (void)state;
    const ModelConfig configs[] = {shape(300, 128, 2, 4, 2, 32, 192, 1, 0, 0),
                                   shape(260, 96, 2, 4, 2, 64, 160, 1, 1, 1)};
    for (size_t k = 0; k < sizeof configs / sizeof configs[0]; k++) {
        const size_t n = (size_t)(33 + 7 + 20 + 5 * 3) * configs[k].vocab_size;
        float* want = malloc(sizeof(float) * n);
        float* got = malloc(sizeof(float) * n);
        Backend* cpu = backend_cpu_create(2);
        Backend* gpu = gpu_bf16();
        decode_logits(cpu, &configs[k], want);
        decode_logits(gpu, &configs[k], got);
        const double e = norm_err(got, want, n);
        printf("decoder config %zu: logits of every fed position %.2e\n", k, e);
        assert_true(e <= TOL_LOGITS);
        backend_destroy(gpu);
        backend_destroy(cpu);
        free(want), free(got);
    }
}

// An op that takes no activation buffer there stops the job with a message naming the op and
// argument (ops.h), instead of reading a handle as device memory. The misuse runs in a fresh
// process (this binary with --misuse WHAT): a forked child cannot use the parent's CUDA state.
static int misuse(const char* what) {
    Backend* be = gpu_bf16();
    float* z = be->alloc_act(be, 4 * 16);
    float* f = be->alloc(be, 4 * 16 * sizeof(float));
    int* t = be->alloc(be, 4 * sizeof(int));
    if (!strcmp(what, "softmax")) be->softmax(be, f, z, 4, 16);
    else be->cross_entropy(be, f, t, z, 4, 16, NULL, f, LOSS_DZ_SET); // the row weights as an activation
    return 0; // not stopped: the parent's check fails
}

static void expect_rejected(const char* what, const char* needle) {
    int fds[2];
    assert_int_equal(pipe(fds), 0);
    fflush(stdout);
    const pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        dup2(fds[1], STDERR_FILENO);
        execl("/proc/self/exe", "test_model_bf16", "--misuse", what, (char*)NULL);
        _exit(127);
    }
    close(fds[1]);
    char msg[4096] = {0};
    size_t got = 0;
    ssize_t r;
    while (got < sizeof msg - 1 && (r = read(fds[0], msg + got, sizeof msg - 1 - got)) > 0) got += (size_t)r;
    close(fds[0]);
    int status;
    assert_int_equal(waitpid(pid, &status, 0), pid);
    printf("%s rejected: %s", what, msg);
    assert_true(WIFEXITED(status) && WEXITSTATUS(status) != 0 && WEXITSTATUS(status) != 127);
    assert_non_null(strstr(msg, needle));
}

static void test_rejects_activation_args(void** state) {
    (void)state;
    expect_rejected("softmax", "argument 3 of softmax is an activation buffer");
    expect_rejected("cross_entropy", "argument 4 of cross_entropy is an activation buffer");
}

int main(int argc, char** argv) {
    if (argc == 3 && !strcmp(argv[1], "--misuse")) return misuse(argv[2]);
    char err[512];
    Backend* probe = backend_cuda_create(0, 1, err, sizeof err);
    if (!probe) {
        printf("no CUDA GPU: %s\n", err);
        return 77;
    }
    backend_destroy(probe);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_gqa),      cmocka_unit_test(test_qwen),        cmocka_unit_test(test_staged_attention),
        cmocka_unit_test(test_training), cmocka_unit_test(test_determinism),
        cmocka_unit_test(test_decoder),  cmocka_unit_test(test_rejects_activation_args),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
