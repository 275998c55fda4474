// `ingrain bench model` (see bench.h). Times full training steps of a built-in config and, as
// the named baseline, the backend's own matmul on exactly the matmul calls of one step: the
// bench interposes a recorder on Backend.matmul for one step, then replays the recorded calls
// alone. The ratio says how close the step runs to the sgemm it is built on. The last line is
// machine-readable (key=value) for tools/bench_pytorch.py.
#include "model/bench.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "common/check.h"
#include "common/log.h"
#include "model/loss.h"
#include "model/model.h"
#include "model/rng.h"

static const char* usage =
    "usage: ingrain bench model [--config NAME] [--batch B] [--seq T] [--threads N] [--steps S] [--warmup W]\n"
    "\n"
    "Training throughput (forward + cross-entropy + backward + AdamW) of a built-in config on the\n"
    "CPU backend, beside OpenBLAS sgemm on the same matmul shapes in the same run.\n"
    "  --config NAME  tiny, small (default) or gpt2-124m\n"
    "  --batch B      sequences per step (default 8)\n"
    "  --seq T        tokens per sequence (default 256)\n"
    "  --threads N    OpenMP threads, 0 = all cores (default 0)\n"
    "  --steps S      timed steps (default 10)\n"
    "  --warmup W     untimed steps first (default 2)\n";

static double now_s(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + 1e-9 * (double)t.tv_nsec;
}

// ----------------------------------------------------------------------------
// matmul recorder

typedef struct {
    int ta, tb, M, N, K, lda, ldb, ldc;
    float beta;
} MatmulCall;

static struct {
    MatmulCall* calls;
    int n, cap;
    void (*inner)(Backend*, int, int, int, int, int, float, const float*, int, const float*, int, float, float*, int);
} rec;

static void recording_matmul(Backend* be, int ta, int tb, int M, int N, int K, float alpha, const float* A, int lda,
                             const float* B, int ldb, float beta, float* C, int ldc) {
    if (rec.n == rec.cap) {
        rec.cap = rec.cap ? 2 * rec.cap : 64;
        rec.calls = reallocCheck(rec.calls, (size_t)rec.cap * sizeof(MatmulCall));
    }
    rec.calls[rec.n++] = (MatmulCall){ta, tb, M, N, K, lda, ldb, ldc, beta};
    rec.inner(be, ta, tb, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc);
}

static double matmul_flops(void) {
    double f = 0.0;
    for (int i = 0; i < rec.n; i++) f += 2.0 * rec.calls[i].M * rec.calls[i].N * rec.calls[i].K;
    return f;
}

// scratch operands big enough for every recorded call
typedef struct {
    float *A, *B, *C;
} ReplayBuffers;

static ReplayBuffers replay_buffers(Backend* be) {
    size_t na = 0, nb = 0, nc = 0;
    for (int i = 0; i < rec.n; i++) {
        const MatmulCall* c = &rec.calls[i];
        size_t a = (size_t)(c->ta ? c->K : c->M) * c->lda, b = (size_t)(c->tb ? c->N : c->K) * c->ldb;
        size_t cc = (size_t)c->M * c->ldc;
        na = a > na ? a : na;
        nb = b > nb ? b : nb;
        nc = cc > nc ? cc : nc;
    }
    return (ReplayBuffers){be->alloc(be, na * sizeof(float)), be->alloc(be, nb * sizeof(float)),
                           be->alloc(be, nc * sizeof(float))};
}

// the recorded calls once, back to back; returns seconds
static double replay_matmuls(Backend* be, const ReplayBuffers* rb) {
    be->synchronize(be);
    double t0 = now_s();
    for (int i = 0; i < rec.n; i++) {
        const MatmulCall* c = &rec.calls[i];
        rec.inner(be, c->ta, c->tb, c->M, c->N, c->K, 1.0f, rb->A, c->lda, rb->B, c->ldb, c->beta, rb->C, c->ldc);
    }
    be->synchronize(be);
    return now_s() - t0;
}

static int cmp_double(const void* a, const void* b) {
    double x = *(const double*)a, y = *(const double*)b;
    return (x > y) - (x < y);
}

static double median(double* x, int n) {
    qsort(x, (size_t)n, sizeof(double), cmp_double);
    return n % 2 ? x[n / 2] : 0.5 * (x[n / 2 - 1] + x[n / 2]);
}

// ----------------------------------------------------------------------------
// the benchmark

typedef struct {
    double forward, backward, optimizer;
} StepTimes;

static void train_step(Model* m, AdamW* opt, const int* tokens, const int* targets, const float* w, int B, int T,
                       StepTimes* st) {
    Backend* be = model_backend(m);
    const int N = B * T, V = model_config(m)->vocab_size;
    double t0 = now_s();
    model_forward(m, tokens, NULL, B, T, NULL);
    be->memset0(be, model_dlogits(m), (size_t)N * V * sizeof(float));
    loss_cross_entropy(be, model_logits(m), targets, w, N, V, NULL, model_dlogits(m));
    double t1 = now_s();
    model_zero_grad(m);
    model_backward(m, model_dlogits(m));
    be->synchronize(be);
    double t2 = now_s();
    adamw_step(opt, model_params(m), model_grads(m));
    be->synchronize(be);
    double t3 = now_s();
    st->forward += t1 - t0;
    st->backward += t2 - t1;
    st->optimizer += t3 - t2;
}

static int parse_int(const char* opt, const char* s, int lo, int* out) {
    char* end;
    long v = strtol(s, &end, 10);
    if (*s == '\0' || *end != '\0' || v < lo || v > 1000000) {
        fprintf(stderr, "ingrain bench model: %s expects an integer >= %d, got '%s'\n", opt, lo, s);
        return -1;
    }
    *out = (int)v;
    return 0;
}

int model_bench(int argc, char** argv) {
    const char* config = "small";
    int B = 8, T = 256, threads = 0, steps = 10, warmup = 2;
    for (int i = 1; i < argc; i++) {
        const char* a = argv[i];
        if (strcmp(a, "-h") == 0 || strcmp(a, "--help") == 0) {
            fputs(usage, stdout);
            return INGRAIN_EXIT_OK;
        }
        if (i + 1 >= argc) {
            fprintf(stderr, "ingrain bench model: unknown or incomplete option '%s'\n%s", a, usage);
            return INGRAIN_EXIT_USAGE;
        }
        const char* v = argv[++i];
        int bad = 0;
        if (strcmp(a, "--config") == 0) config = v;
        else if (strcmp(a, "--batch") == 0) bad = parse_int(a, v, 1, &B);
        else if (strcmp(a, "--seq") == 0) bad = parse_int(a, v, 2, &T);
        else if (strcmp(a, "--threads") == 0) bad = parse_int(a, v, 0, &threads);
        else if (strcmp(a, "--steps") == 0) bad = parse_int(a, v, 1, &steps);
        else if (strcmp(a, "--warmup") == 0) bad = parse_int(a, v, 0, &warmup);
        else {
            fprintf(stderr, "ingrain bench model: unknown option '%s'\n%s", a, usage);
            return INGRAIN_EXIT_USAGE;
        }
        if (bad) return INGRAIN_EXIT_USAGE;
    }
    ModelConfig c;
    if (model_builtin_config(config, &c) != 0) {
        fprintf(stderr, "ingrain bench model: unknown config '%s' (built-in: tiny, small, gpt2-124m)\n", config);
        return INGRAIN_EXIT_USAGE;
    }
    if (T > c.max_seq_len) {
        fprintf(stderr, "ingrain bench model: --seq %d exceeds the config's max_position_embeddings %d\n", T,
                c.max_seq_len);
        return INGRAIN_EXIT_USAGE;
    }

    Backend* be = backend_cpu_create(threads);
    Model* m = model_create(&c, be, B, T);
    model_init_random(m, 1);
    AdamWConfig oc = adamw_default_config();
    AdamW* opt = adamw_create(be, &oc, model_param_info(m), model_num_params(m));
    const int N = B * T;
    int* tokens = mallocCheck((size_t)N * sizeof(int));
    int* host_targets = mallocCheck((size_t)N * sizeof(int));
    float* host_w = mallocCheck((size_t)N * sizeof(float));
    Rng r;
    rng_seed(&r, 2);
    for (int i = 0; i < N; i++) tokens[i] = (int)rng_below(&r, (uint64_t)c.vocab_size);
    for (int i = 0; i < N; i++) {
        host_targets[i] = (i + 1) % T ? tokens[i + 1] : -1;
        host_w[i] = 1.0f / (float)N;
    }
    int* targets = be->alloc(be, (size_t)N * sizeof(int));
    float* w = be->alloc(be, (size_t)N * sizeof(float));
    be->upload(be, targets, host_targets, (size_t)N * sizeof(int));
    be->upload(be, w, host_w, (size_t)N * sizeof(float));

    printf("ingrain bench model: config %s (V=%d D=%d L=%d H=%d KV=%d hd=%d F=%d), %.2fM parameters\n", config,
           c.vocab_size, c.dim, c.n_layers, c.n_heads, c.n_kv_heads, c.head_dim, c.hidden_dim,
           (double)model_num_params(m) / 1e6);
    printf("  batch %d x %d tokens, backend %s with %d threads (OpenBLAS %s kernels), %d timed steps after %d warmup\n",
           B, T, be->name, be->threads, backend_cpu_blas_core(), steps, warmup);

    // one recorded step (also the first warmup step)
    StepTimes st = {0};
    rec.inner = be->matmul;
    be->matmul = recording_matmul;
    train_step(m, opt, tokens, targets, w, B, T, &st);
    be->matmul = rec.inner;
    for (int s = 1; s < warmup; s++) train_step(m, opt, tokens, targets, w, B, T, &st);
    // steps and matmul replays alternate, so that a busy machine slows both alike; medians
    ReplayBuffers rb = replay_buffers(be);
    replay_matmuls(be, &rb);
    double* t_step = mallocCheck((size_t)steps * sizeof(double));
    double* t_mm = mallocCheck((size_t)steps * sizeof(double));
    st = (StepTimes){0};
    for (int s = 0; s < steps; s++) {
        double t0 = now_s();
        train_step(m, opt, tokens, targets, w, B, T, &st);
        t_step[s] = now_s() - t0;
        t_mm[s] = replay_matmuls(be, &rb);
    }
    const double step = median(t_step, steps), sgemm = median(t_mm, steps);
    const double mm_flops = matmul_flops();
    // attention products inside the attention op, causal half only and without the backward's
    // recomputation of QK^T: two forward (QK^T, PV), four backward (dP, dQ, dK, dV)
    const double attn_flops = 6.0 * 2.0 * B * c.n_heads * ((double)T * (T + 1) / 2.0) * c.head_dim * c.n_layers;
    be->free(be, rb.A);
    be->free(be, rb.B);
    be->free(be, rb.C);
    free(t_step);
    free(t_mm);

    const double tok_s = N / step;
    printf("  step (median)         %8.1f ms  (mean forward+loss %.1f, backward %.1f, adamw %.1f)\n", 1e3 * step,
           1e3 * st.forward / steps, 1e3 * st.backward / steps, 1e3 * st.optimizer / steps);
    printf("  training throughput   %8.0f tokens/s\n", tok_s);
    printf("  model matmuls         %8.1f GFLOP/step in %d calls (+ %.1f GFLOP of attention)\n", mm_flops / 1e9, rec.n,
           attn_flops / 1e9);
    printf("  achieved              %8.1f GFLOP/s (matmul + attention FLOPs / step time)\n",
           (mm_flops + attn_flops) / step / 1e9);
    printf("  baseline: sgemm alone %8.1f GFLOP/s on the same %d matmul calls (%.1f ms/step)\n", mm_flops / sgemm / 1e9,
           rec.n, 1e3 * sgemm);
    printf("  fraction of sgemm     %8.1f %%  (achieved / sgemm-alone throughput)\n",
           100.0 * ((mm_flops + attn_flops) / step) / (mm_flops / sgemm));
    if (backend_cpu_blas_better_core()) {
        printf("  note: OPENBLAS_CORETYPE=%s would run AVX-512 matmul kernels on this CPU\n",
               backend_cpu_blas_better_core());
    }
    printf("RESULT config=%s batch=%d seq=%d threads=%d blas_core=%s tokens_per_s=%.1f step_ms=%.2f gflops=%.2f "
           "sgemm_gflops=%.2f sgemm_fraction=%.4f\n",
           config, B, T, be->threads, backend_cpu_blas_core(), tok_s, 1e3 * step, (mm_flops + attn_flops) / step / 1e9,
           mm_flops / sgemm / 1e9, ((mm_flops + attn_flops) / step) / (mm_flops / sgemm));

    free(rec.calls);
    rec.calls = NULL;
    rec.n = rec.cap = 0;
    be->free(be, targets);
    be->free(be, w);
    free(tokens);
    free(host_targets);
    free(host_w);
    adamw_free(opt);
    model_free(m);
    backend_destroy(be);
    return INGRAIN_EXIT_OK;
}
