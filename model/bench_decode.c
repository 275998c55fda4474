// `ingrain bench decode` (see bench_decode.h). For each batch size: B prompts of P random tokens
// are prefilled in one feed, then decoder_generate samples N tokens per sequence (temperature 1,
// one batched step per token, every token fed back through the KV cache). The baseline is the
// backend's matmul alone on exactly the matmul calls of one decode step, with the same weights
// and buffers (so the same memory traffic): a recorder is interposed on Backend.matmul for one
// step, then the recorded calls are replayed back to back. Rounds alternate with the replays and
// the best round is reported, which keeps a busy machine's noise out. The RESULT lines are
// machine-readable (key=value) for tools/bench_pytorch_decode.py.
#include "model/bench_decode.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/check.h"
#include "common/log.h"
#include "model/backend_select.h"
#include "model/bench_matmul.h"
#include "model/bench_profile.h"
#include "model/bench_util.h"
#include "model/decode.h"
#include "model/model.h"
#include "model/rng.h"
#include "model/timer.h"

#define BENCH_MAX_BATCHES 16

static const char* usage =
    "usage: ingrain bench decode [--config NAME] [--batch B[,B...]] [--prompt P] [--new N] [--threads T]\n"
    "                            [--rounds R] [--record-topk K] [--device cpu|cuda] [--bf16] [--profile]\n"
    "\n"
    "Decoding throughput of a built-in config (random weights) on a backend: prefill of B\n"
    "prompts of P tokens, then N sampled tokens per sequence through the KV cache, beside the\n"
    "backend's matmuls of one decode step replayed alone.\n"
    "  --config NAME     tiny, small (default) or gpt2-124m\n"
    "  --batch LIST      batch sizes, comma-separated (default 1,32)\n"
    "  --prompt P        prompt tokens per sequence (default 64)\n"
    "  --new N           generated tokens per sequence (default 128)\n"
    "  --threads T       OpenMP threads, 0 = all cores (default 0)\n"
    "  --rounds R        timed rounds per batch size, the best is reported (default 3)\n"
    "  --record-topk K   also record the top-K log-probs of every token (default 0)\n"
    "  --device D        cpu (default) or cuda (GPU 0; CUDA_VISIBLE_DEVICES picks another)\n"
    "  --bf16            cuda: bf16 tensor cores (fp32 accumulation), bf16 activations and KV cache\n"
    "  --profile         per batch size, one more round's decode steps with every op synchronised and\n"
    "                    timed: backend calls and time per op and step (launches per step on a GPU)\n";

// ----------------------------------------------------------------------------
// the matmuls of one decode step

// the stop callback records the first decode step's matmuls: it runs after the first sampled
// token, just before decoder_generate feeds the batch's tokens back
static int record_next_step(void* ctx, int slot, const SampledToken* tokens, int n) {
    (void)tokens;
    const int* last_slot = ctx;
    if (n == 1 && slot == *last_slot) bench_matmul_record(1);
    else if (n == 2) bench_matmul_record(0);
    return 0;
}

// ----------------------------------------------------------------------------
// options

static int parse_batches(const char* s, int* b, int* nb) {
    *nb = 0;
    char buf[256];
    snprintf(buf, sizeof buf, "%s", s);
    for (char* tok = strtok(buf, ","); tok; tok = strtok(NULL, ",")) {
        if (*nb == BENCH_MAX_BATCHES || bench_parse_int("decode", "--batch", tok, 1, &b[*nb]) != 0) return -1;
        (*nb)++;
    }
    return *nb > 0 ? 0 : -1;
}

// ----------------------------------------------------------------------------
// one batch size

typedef struct {
    double prefill, decode; // seconds of the best round
    double matmul;          // seconds of one decode step's matmuls alone (best)
    double step_flops;      // matmul FLOPs of one decode step
    int step_calls;
    double ops_per_step;    // backend calls per decode step (--profile), else 0
} BatchTimes;

static BatchTimes run_batch(Model* m, int B, int P, int N, int rounds, int record_topk, int profile) {
    Backend* be = model_backend(m);
    const int V = model_config(m)->vocab_size;
    Decoder* d = decoder_create(m, B, P + N);
    int* prompts = mallocCheck((size_t)B * P * sizeof(int));
    int* slots = mallocCheck((size_t)B * sizeof(int));
    int* n = mallocCheck((size_t)B * sizeof(int));
    const int** tok = mallocCheck((size_t)B * sizeof(int*));
    Rng* rngs = mallocCheck((size_t)B * sizeof(Rng));
    Rng** rp = mallocCheck((size_t)B * sizeof(Rng*));
    GenResult* out = mallocCheck((size_t)B * sizeof(GenResult));
    Rng g;
    rng_seed(&g, 3);
    for (int i = 0; i < B * P; i++) prompts[i] = (int)rng_below(&g, (uint64_t)V);
    for (int b = 0; b < B; b++) {
        slots[b] = b;
        n[b] = P;
        tok[b] = prompts + (size_t)b * P;
        rp[b] = &rngs[b];
    }
    const SamplingParams sp = {.temperature = 1.0f, .top_p = 1.0f, .top_k = 0, .record_topk = record_topk};
    BatchTimes bt = {.prefill = 1e30, .decode = 1e30, .matmul = 1e30};
    // round 0 is the warmup, and records one decode step's matmuls; the profiled round comes last
    for (int r = 0; r <= rounds + profile; r++) {
        const int profiled = r > rounds;
        for (int b = 0; b < B; b++) {
            decoder_reset(d, b);
            rng_seed_stream(&rngs[b], 7, (uint64_t)b);
        }
        int last = B - 1;
        if (r == 0) bench_matmul_install(be);
        const double t0 = timer_now();
        decoder_feed(d, B, slots, tok, n, NULL);
        const double t1 = timer_now();
        if (profiled) bench_profile_install(be);
        decoder_generate(d, B, slots, &sp, rp, N, NULL, 0, r == 0 ? record_next_step : NULL, &last, out);
        const double t2 = timer_now();
        if (profiled) {
            bench_profile_uninstall(be);
            bt.ops_per_step = (double)bench_profile_calls() / N;
            bench_profile_print(stdout, N);
        } else if (r == 0) {
            bench_matmul_uninstall(be);
            bench_matmul_replay(be, NULL, NULL); // warm
        } else {
            bt.prefill = t1 - t0 < bt.prefill ? t1 - t0 : bt.prefill;
            bt.decode = t2 - t1 < bt.decode ? t2 - t1 : bt.decode;
            const double mm = bench_matmul_replay(be, NULL, NULL);
            bt.matmul = mm < bt.matmul ? mm : bt.matmul;
        }
        for (int b = 0; b < B; b++) {
            if (out[b].n != N) fatal("bench decode: slot %d generated %d of %d tokens", b, out[b].n, N);
            gen_result_free(&out[b]);
        }
    }
    bt.step_flops = bench_matmul_flops();
    bt.step_calls = bench_matmul_count();
    bench_matmul_clear();
    decoder_free(d);
    free(prompts);
    free(slots);
    free(n);
    free(tok);
    free(rngs);
    free(rp);
    free(out);
    return bt;
}

// ----------------------------------------------------------------------------
// the benchmark

int bench_decode(int argc, char** argv) {
    const char* config = "small";
    const char* device = "cpu";
    int batches[BENCH_MAX_BATCHES] = {1, 32}, nbatch = 2;
    int P = 64, N = 128, threads = 0, rounds = 3, record_topk = 0, bf16 = 0, profile = 0;
    for (int i = 0; i < argc; i++) {
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
            fprintf(stderr, "ingrain bench decode: unknown or incomplete option '%s'\n%s", a, usage);
            return INGRAIN_EXIT_USAGE;
        }
        const char* v = argv[++i];
        int bad = 0;
        if (strcmp(a, "--config") == 0) config = v;
        else if (strcmp(a, "--device") == 0) device = v;
        else if (strcmp(a, "--batch") == 0) {
            bad = parse_batches(v, batches, &nbatch);
            if (bad) fprintf(stderr, "ingrain bench decode: --batch expects up to %d positive integers, got '%s'\n",
                             BENCH_MAX_BATCHES, v);
        } else if (strcmp(a, "--prompt") == 0) bad = bench_parse_int("decode", a, v, 1, &P);
        else if (strcmp(a, "--new") == 0) bad = bench_parse_int("decode", a, v, 2, &N);
        else if (strcmp(a, "--threads") == 0) bad = bench_parse_int("decode", a, v, 0, &threads);
        else if (strcmp(a, "--rounds") == 0) bad = bench_parse_int("decode", a, v, 1, &rounds);
        else if (strcmp(a, "--record-topk") == 0) bad = bench_parse_int("decode", a, v, 0, &record_topk);
        else {
            fprintf(stderr, "ingrain bench decode: unknown option '%s'\n%s", a, usage);
            return INGRAIN_EXIT_USAGE;
        }
        if (bad) return INGRAIN_EXIT_USAGE;
    }
    ModelConfig c;
    if (model_builtin_config(config, &c) != 0) {
        fprintf(stderr, "ingrain bench decode: unknown config '%s' (built-in: tiny, small, gpt2-124m)\n", config);
        return INGRAIN_EXIT_USAGE;
    }
    if (P + N > c.max_seq_len) {
        fprintf(stderr, "ingrain bench decode: --prompt + --new = %d exceeds the config's max_position_embeddings %d\n",
                P + N, c.max_seq_len);
        return INGRAIN_EXIT_USAGE;
    }
    if (record_topk > c.vocab_size) {
        fprintf(stderr, "ingrain bench decode: --record-topk %d exceeds the vocabulary (%d)\n", record_topk,
                c.vocab_size);
        return INGRAIN_EXIT_USAGE;
    }

    char err[2048];
    Backend* be = backend_open_flags(device, bf16, threads, err, sizeof err);
    if (!be) {
        fprintf(stderr, "ingrain bench decode: %s\n", err);
        return INGRAIN_EXIT_USAGE;
    }
    const int gpu = strcmp(be->name, "cpu") != 0;
    Model* m = model_create(&c, be, 1, 1); // only its weights are used
    model_init_random(m, 1);
    bench_print_model("decode", config, m);
    char desc[512];
    backend_describe(be, bf16, 0, desc, sizeof desc);
    printf("  prompt %d + %d new tokens per sequence, temperature 1, record top-%d, backend %s, best of %d rounds\n", P,
           N, record_topk, desc, rounds);
    for (int i = 0; i < nbatch; i++) {
        const int B = batches[i];
        const BatchTimes bt = run_batch(m, B, P, N, rounds, record_topk, profile);
        // N steps, each sampling one token per sequence and feeding it back through the cache
        const double step = bt.decode / N;
        const double tok_s = (double)B * N / bt.decode, prefill_tok_s = (double)B * P / bt.prefill;
        printf("  batch %3d: decode %8.0f tokens/s (%.2f ms/step), prefill %8.0f tokens/s; one step's %d matmuls "
               "alone %.2f ms (%.1f GFLOP/s) = %.0f %% of the step\n",
               B, tok_s, 1e3 * step, prefill_tok_s, bt.step_calls, 1e3 * bt.matmul, bt.step_flops / bt.matmul / 1e9,
               100.0 * bt.matmul / step);
        if (profile) printf("  batch %3d: %.1f backend calls per decode step\n", B, bt.ops_per_step);
        if (gpu) {
            printf("RESULT device=cuda bf16=%d config=%s batch=%d prompt=%d new=%d decode_tokens_per_s=%.1f "
                   "step_ms=%.3f prefill_tokens_per_s=%.1f matmul_ms=%.3f matmul_fraction=%.4f\n",
                   bf16, config, B, P, N, tok_s, 1e3 * step, prefill_tok_s, 1e3 * bt.matmul, bt.matmul / step);
        } else {
            printf("RESULT config=%s batch=%d prompt=%d new=%d threads=%d blas_core=%s decode_tokens_per_s=%.1f "
                   "step_ms=%.3f prefill_tokens_per_s=%.1f matmul_ms=%.3f matmul_fraction=%.4f\n",
                   config, B, P, N, be->threads, backend_cpu_blas_core(), tok_s, 1e3 * step, prefill_tok_s,
                   1e3 * bt.matmul, bt.matmul / step);
        }
    }
    if (!gpu && backend_cpu_blas_better_core()) {
        printf("  note: OPENBLAS_CORETYPE=%s would run AVX-512 matmul kernels on this CPU\n",
               backend_cpu_blas_better_core());
    }
    model_free(m);
    backend_destroy(be);
    return INGRAIN_EXIT_OK;
}
