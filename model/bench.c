// `ingrain bench model` (see bench.h). Times full training steps of a built-in config and, as
// the named baseline, the backend's own matmul on exactly the matmul calls of one step: the
// bench interposes a recorder on Backend.matmul for one step, then replays the recorded calls
// alone. The ratio says how close the step runs to the sgemm (or cuBLAS) it is built on. On the
// CUDA backend it also reports model FLOPs utilisation against cuBLAS's bf16 GEMM peak measured
// in the same run and against the GPU's datasheet peak. The last line is machine-readable
// (key=value) for tools/bench_pytorch.py.
#include "model/bench.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/check.h"
#include "common/log.h"
#include "model/backend_select.h"
#include "model/bench_matmul.h"
#include "model/bench_profile.h"
#include "model/bench_util.h"
#include "model/cuda_peak.h"
#include "model/loss.h"
#include "model/model.h"
#include "model/ops_cpu_internal.h"
#include "model/rng.h"
#include "model/timer.h"

#define PEAK_GEMM_N 8192 // cuBLAS peak: an 8192^3 bf16 product

static const char* usage =
    "usage: ingrain bench model [--config NAME] [--batch B] [--seq T] [--threads N] [--steps S] [--warmup W]\n"
    "                           [--device cpu|cuda] [--bf16] [--profile]\n"
    "\n"
    "Training throughput (forward + cross-entropy + backward + AdamW) of a built-in config, beside\n"
    "the backend's matmul alone (OpenBLAS sgemm, cuBLAS) on the same matmul shapes in the same run.\n"
    "On cuda also the model FLOPs utilisation (MFU) against cuBLAS's bf16 GEMM peak measured in the\n"
    "same run and against the GPU's datasheet dense bf16 peak.\n"
    "  --config NAME  tiny, small (default) or gpt2-124m\n"
    "  --batch B      sequences per step (default 8; 16 on cuda)\n"
    "  --seq T        tokens per sequence (default 256; 1024 or the config's maximum on cuda)\n"
    "  --threads N    OpenMP threads, 0 = all cores (default 0; cpu only)\n"
    "  --steps S      timed steps (default 10)\n"
    "  --warmup W     untimed steps first (default 2)\n"
    "  --device D     cpu (default) or cuda (GPU 0; CUDA_VISIBLE_DEVICES picks another)\n"
    "  --bf16         cuda: bf16 tensor cores and activations (fp32 accumulation, fp32 master weights)\n"
    "  --profile      after the timed steps, one more step with every op synchronised and timed:\n"
    "                 time per op and per matmul shape (with its TFLOP/s), largest first\n";

// ----------------------------------------------------------------------------
// peaks and model FLOPs

// Dense (no sparsity) bf16 tensor-core peak of the vendor's datasheet, by device name; 0 when
// unknown. The SXM parts are the plain names; the PCIe and NVL variants run lower clocks.
static double datasheet_bf16_tflops(const char* name, const char** part) {
    static const struct {
        const char* key;
        const char* part;
        double tflops;
    } table[] = {
        {"H100 PCIe", "H100 PCIe", 756.0}, {"H100 NVL", "H100 NVL", 835.0}, {"H200 NVL", "H200 NVL", 835.0},
        {"H100", "H100 SXM", 989.0},       {"H200", "H200 SXM", 989.0},     {"A100", "A100", 312.0},
    };
    for (size_t i = 0; i < sizeof table / sizeof table[0]; i++) {
        if (strstr(name, table[i].key)) {
            *part = table[i].part;
            return table[i].tflops;
        }
    }
    *part = "unknown GPU";
    return 0.0;
}

// Model FLOPs per trained token, the PaLM / llm.c convention: 6 N for the forward and backward
// matmuls over the N parameters (the input embedding counted once, as the LM head it is or
// mirrors: a lookup costs no FLOPs; norm weights, a rounding error, included), plus 12 L (H hd) T
// for the attention scores and values over the whole T x T square (causal masking not discounted).
static double model_flops_per_token(const ModelConfig* c, size_t n_params, int T) {
    const double n_mm = (double)n_params - (c->tied_embeddings ? 0.0 : (double)c->vocab_size * c->dim);
    return 6.0 * n_mm + 12.0 * c->n_layers * (double)c->n_heads * c->head_dim * T;
}

// ----------------------------------------------------------------------------
// the benchmark

static int cmp_double(const void* a, const void* b) {
    double x = *(const double*)a, y = *(const double*)b;
    return (x > y) - (x < y);
}

static double median(double* x, int n) {
    qsort(x, (size_t)n, sizeof(double), cmp_double);
    return n % 2 ? x[n / 2] : 0.5 * (x[n / 2 - 1] + x[n / 2]);
}

typedef struct {
    double forward, backward, optimizer;
} StepTimes;

static void train_step(Model* m, AdamW* opt, const int* tokens, const int* targets, const float* w, int B, int T,
                       StepTimes* st) {
    Backend* be = model_backend(m);
    const int N = B * T, V = model_config(m)->vocab_size;
    double t0 = timer_now();
    model_forward(m, tokens, NULL, B, T, NULL);
    loss_cross_entropy(be, model_logits(m), targets, w, N, V, NULL, model_dlogits(m), LOSS_DZ_SET);
    double t1 = timer_now();
    model_zero_grad(m);
    model_backward(m, model_dlogits(m));
    be->synchronize(be);
    double t2 = timer_now();
    adamw_step(opt, model_params(m), model_grads(m));
    be->synchronize(be);
    double t3 = timer_now();
    st->forward += t1 - t0;
    st->backward += t2 - t1;
    st->optimizer += t3 - t2;
}

// cuda: model FLOPs utilisation against the measured cuBLAS peak and the datasheet
static void report_mfu(const ModelConfig* c, size_t n_params, int T, double tok_s, const char* config, int B,
                       int bf16, double step, double mm_fraction) {
    char name[256], err[512];
    if (cuda_device_name(0, name, sizeof name, err, sizeof err) != 0) snprintf(name, sizeof name, "?");
    const double peak = cuda_gemm_peak_tflops(0, PEAK_GEMM_N, err, sizeof err);
    const char* part;
    const double sheet = datasheet_bf16_tflops(name, &part);
    const double fpt = model_flops_per_token(c, n_params, T), tflops = fpt * tok_s / 1e12;
    printf("  model FLOPs           %8.3f GFLOP/token = 6 N + 12 L H hd T (N = %.2fM matmul parameters, T = %d)\n",
           fpt / 1e9, (fpt - 12.0 * c->n_layers * (double)c->n_heads * c->head_dim * T) / 6.0 / 1e6, T);
    printf("  model throughput      %8.1f TFLOP/s\n", tflops);
    if (peak > 0.0) {
        printf("  cuBLAS bf16 GEMM peak %8.1f TFLOP/s (%d^3, fp32 accumulation, measured now): MFU %.1f %%\n", peak,
               PEAK_GEMM_N, 100.0 * tflops / peak);
    } else {
        printf("  cuBLAS bf16 GEMM peak: not measured: %s\n", err);
    }
    if (sheet > 0.0) {
        printf("  datasheet dense bf16  %8.1f TFLOP/s (%s): MFU %.1f %%\n", sheet, part, 100.0 * tflops / sheet);
    } else {
        printf("  datasheet dense bf16: no figure for '%s'\n", name);
    }
    // the model's buffers (activations: bf16 in the bf16 mode), cuBLAS's and the backend's own
    size_t used = 0, total = 0;
    if (cuda_memory_in_use(0, &used, &total, err, sizeof err) == 0) {
        printf("  GPU memory in use     %8.2f GiB of %.1f (every process; the model, its activations, caches)\n",
               (double)used / (1 << 30), (double)total / (1 << 30));
    }
    for (char* p = name; *p; p++) *p = *p == ' ' ? '_' : *p;
    printf("RESULT device=cuda gpu=%s config=%s batch=%d seq=%d bf16=%d tokens_per_s=%.1f step_ms=%.2f "
           "model_tflops=%.2f cublas_peak_tflops=%.2f datasheet_tflops=%.1f mfu_measured=%.4f mfu_datasheet=%.4f "
           "matmul_fraction=%.4f gpu_mem_gib=%.2f\n",
           name, config, B, T, bf16, tok_s, 1e3 * step, tflops, peak, sheet, peak > 0.0 ? tflops / peak : 0.0,
           sheet > 0.0 ? tflops / sheet : 0.0, mm_fraction, (double)used / (1 << 30));
}

int model_bench(int argc, char** argv) {
    const char* config = "small";
    const char* device = "cpu";
    int B = 0, T = 0, threads = 0, steps = 10, warmup = 2, bf16 = 0, profile = 0;
    for (int i = 1; i < argc; i++) {
        const char* a = argv[i];
        if (strcmp(a, "-h") == 0 || strcmp(a, "--help") == 0) {
            fputs(usage, stdout);
            return INGRAIN_EXIT_OK;
        }
        if (strcmp(a, "--bf16") == 0) {
            bf16 = 1;
            continue;
        }
        if (strcmp(a, "--profile") == 0) {
            profile = 1;
            continue;
        }
        if (i + 1 >= argc) {
            fprintf(stderr, "ingrain bench model: unknown or incomplete option '%s'\n%s", a, usage);
            return INGRAIN_EXIT_USAGE;
        }
        const char* v = argv[++i];
        int bad = 0;
        if (strcmp(a, "--config") == 0) config = v;
        else if (strcmp(a, "--device") == 0) device = v;
        else if (strcmp(a, "--batch") == 0) bad = bench_parse_int("model", a, v, 1, &B);
        else if (strcmp(a, "--seq") == 0) bad = bench_parse_int("model", a, v, 2, &T);
        else if (strcmp(a, "--threads") == 0) bad = bench_parse_int("model", a, v, 0, &threads);
        else if (strcmp(a, "--steps") == 0) bad = bench_parse_int("model", a, v, 1, &steps);
        else if (strcmp(a, "--warmup") == 0) bad = bench_parse_int("model", a, v, 0, &warmup);
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
    const int gpu = strcmp(device, "cuda") == 0;
    if (!B) B = gpu ? 16 : 8;
    if (!T) T = gpu ? (c.max_seq_len < 1024 ? c.max_seq_len : 1024) : 256;
    if (T > c.max_seq_len) {
        fprintf(stderr, "ingrain bench model: --seq %d exceeds the config's max_position_embeddings %d\n", T,
                c.max_seq_len);
        return INGRAIN_EXIT_USAGE;
    }
    char err[2048];
    Backend* be = backend_open_flags(device, bf16, threads, err, sizeof err);
    if (!be) {
        fprintf(stderr, "ingrain bench model: %s\n", err);
        return INGRAIN_EXIT_USAGE;
    }

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

    char desc[512];
    backend_describe(be, bf16, 0, desc, sizeof desc);
    bench_print_model("model", config, m);
    printf("  batch %d x %d tokens, backend %s, %d timed steps after %d warmup\n", B, T, desc, steps, warmup);

    // one recorded step (also the first warmup step)
    StepTimes st = {0};
    bench_matmul_install(be);
    bench_matmul_record(1);
    train_step(m, opt, tokens, targets, w, B, T, &st);
    bench_matmul_uninstall(be);
    for (int s = 1; s < warmup; s++) train_step(m, opt, tokens, targets, w, B, T, &st);
    // The baseline, medians of one pass per step: on the CPU OpenBLAS's sgemm itself, whichever
    // path the backend's matmul takes (its AVX-512 tiles beside OpenBLAS's AVX2 kernels), timed
    // too, each alternating with the steps so that a busy machine slows both alike; on the GPU in
    // f32 mode the backend's matmul, which is cuBLAS's GEMM itself; in bf16 mode cuBLAS's GEMMs on
    // operands already in bf16 (cuda_gemm_replay; the backend's matmuls add their operand copies)
    const int gemm_replay = gpu && bf16; // else the replays alternate with the steps, on scratch operands
    MatmulFn base = gpu ? NULL : cpu_matmul_sgemm;
    MatmulScratch rb = {0};
    if (!gemm_replay) {
        rb = bench_matmul_scratch(be);
        bench_matmul_replay(be, &rb, base);
    }
    double* t_step = mallocCheck((size_t)steps * sizeof(double));
    double* t_mm = mallocCheck((size_t)steps * sizeof(double));
    double* t_own = callocCheck((size_t)steps, sizeof(double)); // the CPU backend's own matmul
    st = (StepTimes){0};
    for (int s = 0; s < steps; s++) {
        double t0 = timer_now();
        train_step(m, opt, tokens, targets, w, B, T, &st);
        t_step[s] = timer_now() - t0;
        if (!gemm_replay) t_mm[s] = bench_matmul_replay(be, &rb, base);
        if (!gpu) t_own[s] = bench_matmul_replay(be, &rb, NULL);
    }
    // after the steps, not between them: its own buffers and handle stay out of the steps' way
    if (gemm_replay && cuda_gemm_replay(0, bench_matmul_calls(), bench_matmul_count(), steps, t_mm, err, sizeof err)) {
        fatal("ingrain bench model: cuBLAS replay of the step's products failed: %s", err);
    }
    const double step = median(t_step, steps), sgemm = median(t_mm, steps), own = median(t_own, steps);
    const double mm_flops = bench_matmul_flops();
    const int mm_calls = bench_matmul_count();
    // attention products inside the attention op, causal half only and without the backward's
    // recomputation of QK^T: two forward (QK^T, PV), four backward (dP, dQ, dK, dV)
    const double attn_flops = 6.0 * 2.0 * B * c.n_heads * ((double)T * (T + 1) / 2.0) * c.head_dim * c.n_layers;
    be->free(be, rb.A);
    be->free(be, rb.B);
    be->free(be, rb.C);
    free(t_step);
    free(t_mm);
    free(t_own);

    const char* lib = gpu ? "cuBLAS" : "sgemm";
    if (gemm_replay) printf("  (cuBLAS alone: bf16 GEMMs on operands already in bf16, without the backend's copies)\n");
    const double tok_s = N / step, fraction = ((mm_flops + attn_flops) / step) / (mm_flops / sgemm);
    printf("  step (median)         %8.1f ms  (mean forward+loss %.1f, backward %.1f, adamw %.1f)\n", 1e3 * step,
           1e3 * st.forward / steps, 1e3 * st.backward / steps, 1e3 * st.optimizer / steps);
    printf("  training throughput   %8.0f tokens/s\n", tok_s);
    printf("  model matmuls         %8.1f GFLOP/step in %d calls (+ %.1f GFLOP of attention)\n", mm_flops / 1e9,
           mm_calls, attn_flops / 1e9);
    printf("  achieved              %8.1f GFLOP/s (matmul + attention FLOPs / step time)\n",
           (mm_flops + attn_flops) / step / 1e9);
    printf("  baseline: %s alone %8.1f GFLOP/s on the same %d matmul calls (%.1f ms/step)\n", lib,
           mm_flops / sgemm / 1e9, mm_calls, 1e3 * sgemm);
    printf("  fraction of %-6s    %8.1f %%  (achieved / %s-alone throughput)\n", lib, 100.0 * fraction, lib);
    if (gpu) {
        report_mfu(&c, model_num_params(m), T, tok_s, config, B, bf16, step, fraction);
    } else {
        printf("  backend's matmul alone %7.1f GFLOP/s on the same calls (%.2fx sgemm)\n", mm_flops / own / 1e9,
               sgemm / own);
        if (backend_cpu_blas_better_core()) {
            printf("  note: OPENBLAS_CORETYPE=%s would run AVX-512 matmul kernels on this CPU\n",
                   backend_cpu_blas_better_core());
        }
        printf("RESULT config=%s batch=%d seq=%d threads=%d blas_core=%s tokens_per_s=%.1f step_ms=%.2f "
               "gflops=%.2f sgemm_gflops=%.2f sgemm_fraction=%.4f matmul_gflops=%.2f\n",
               config, B, T, be->threads, backend_cpu_blas_core(), tok_s, 1e3 * step,
               (mm_flops + attn_flops) / step / 1e9, mm_flops / sgemm / 1e9, fraction, mm_flops / own / 1e9);
    }

    if (profile) {
        StepTimes pt = {0};
        bench_profile_install(be);
        train_step(m, opt, tokens, targets, w, B, T, &pt);
        bench_profile_uninstall(be);
        bench_profile_print(stdout, 1);
    }

    bench_matmul_clear();
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
