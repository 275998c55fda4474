// The compute backend interface: one struct of function pointers, in the spirit of ggml's
// backends. The transformer (model.c), the optimizer (adamw.c) and the loss blocks (loss.c) run
// every computation through a Backend and never call BLAS, OpenMP or CUDA themselves.
//
// Contract shared by all ops:
// - Every pointer handed to an op (float*, int*) is a backend-owned buffer from `alloc`. The
//   caller never dereferences it on the host; host data moves only through upload/download.
//   Element offsets into a buffer (p + i) are fine: buffers are arrays of fp32 (or int32, or the
//   int64 fixed-point sums of the fp_* ops).
// - Activation buffers (`alloc_act`) are addressed as fp32 arrays too, but a backend may store
//   them at lower precision: the CUDA backend's bf16 mode keeps them in bf16 (the pointer is then
//   a handle the backend resolves, and what an op writes there is rounded to bf16). The ops that
//   take them: matmul (any operand), linear_bwd (x, dx, dy), rmsnorm_fwd/bwd, rope, attention,
//   swiglu, add_bias, bias_bwd, mask_rows, the logits z and the dz of cross_entropy and the kl_*
//   losses, the logits z of entropy, jsd_topk, jsd_full and sampled_lp, upload, download, memset0,
//   copy and scatter_rows (which convert); the others fail on them.
// - Parameters, gradients and optimizer moments are fp32 in every backend (master weights). A
//   backend that computes in bf16 keeps its reduced-precision copies and casts internally.
// - Ops are issued in order and may run asynchronously; `download` and the ops that return a
//   host scalar synchronise. Row-major layouts everywhere; matrices are (rows, cols).
// - "+=" in a comment means the op accumulates into its output, "=" that it overwrites.
// - Results are deterministic: same inputs and thread count give bit-identical outputs.
#pragma once
#include <stddef.h>
#include <stdint.h>

typedef struct Backend Backend;

// A linear layer y = x W^T whose output features come in blocks held in separate buffers (the
// model's q, k and v projections): block i has rows[i] features, weight w[i] (rows[i], K), its
// gradient dw[i] and the output gradient dy[i] (M, rows[i]), each dense. Stacked, the blocks are
// one layer of sum(rows) features: W = [w[0]; w[1]; ...], dy = [dy[0] | dy[1] | ...].
#define LINEAR_MAX_BLOCKS 3
typedef struct {
    int n; // 1..LINEAR_MAX_BLOCKS
    int rows[LINEAR_MAX_BLOCKS];
    const float* w[LINEAR_MAX_BLOCKS];
    float* dw[LINEAR_MAX_BLOCKS];
    const float* dy[LINEAR_MAX_BLOCKS];
} LinearBlocks;

// How a loss block writes dz: LOSS_DZ_ADD adds w * dloss/dz to it (a mixed loss is two calls on
// the same dz); LOSS_DZ_SET writes w * dloss/dz over every row, 0 on the rows it skips, so the
// caller zeroes nothing first and the block reads no old values (the single loss of a training
// step: one pass less over an (N, V) buffer and half the traffic of the block's own).
typedef enum { LOSS_DZ_SET = 0, LOSS_DZ_ADD = 1 } LossDzMode;

typedef void (*MatmulFn)(Backend* be, int trans_a, int trans_b, int M, int N, int K, float alpha, const float* A,
                         int lda, const float* B, int ldb, float beta, float* C, int ldc);

struct Backend {
    const char* name; // "cpu", "cuda"
    void* impl;       // backend-private state
    int threads;      // worker threads in use (CPU), informational elsewhere

    // ------------------------------------------------------------------------
    // lifetime and memory
    void (*destroy)(Backend* be);
    void* (*alloc)(Backend* be, size_t bytes); // zero-filled; fatal when out of memory
    float* (*alloc_act)(Backend* be, size_t n); // n activation elements (see above), zero-filled
    void (*free)(Backend* be, void* p);
    void (*upload)(Backend* be, void* dst, const void* host_src, size_t bytes);
    void (*download)(Backend* be, void* host_dst, const void* src, size_t bytes);
    void (*memset0)(Backend* be, void* dst, size_t bytes);
    void (*copy)(Backend* be, void* dst, const void* src, size_t bytes);
    // dst row rows[i] = src row i for i < N, rows of C elements (a KV cache's appends: one call for
    // a decoding step's slots instead of a copy per slot); rows holds N distinct row indices.
    // dst and src may be activation buffers, of either storage (converted as copy does).
    void (*scatter_rows)(Backend* be, float* dst, const float* src, const int* rows, int N, int C);
    void (*synchronize)(Backend* be);

    // ------------------------------------------------------------------------
    // dense linear algebra
    // C (M, N) = alpha * op(A) @ op(B) + beta * C; op(A) is (M, K), op(B) is (K, N);
    // trans_a: A is stored (K, M); trans_b: B is stored (N, K). Leading dimensions in elements.
    void (*matmul)(Backend* be, int trans_a, int trans_b, int M, int N, int K, float alpha, const float* A, int lda,
                   const float* B, int ldb, float beta, float* C, int ldc);
    // The backward of a LinearBlocks layer at input x (M, K):
    //   dx (M, K) = dy W + beta dx = sum_i dy[i] w[i] + beta dx,   dw[i] += dy[i]^T x
    // as two products over the stacked blocks where the backend can (the CUDA backend's bf16 mode
    // when every dy[i] is an activation buffer: one product of depth sum(rows) for dx, one of
    // sum(rows) rows for the dw), else as the 2n matmuls of linear_bwd_by_matmuls (the CPU).
    // x, dx and the dy[i] may be activation buffers; dx must not overlap the other buffers.
    void (*linear_bwd)(Backend* be, const LinearBlocks* blocks, const float* x, float* dx, float beta, int M, int K);
    void (*add)(Backend* be, float* y, const float* x, size_t n);       // y += x
    void (*scale)(Backend* be, float* y, float a, size_t n);            // y *= a
    void (*add_bias)(Backend* be, float* y, const float* b, int N, int C); // y (N, C) += b (C) per row
    void (*bias_bwd)(Backend* be, float* db, const float* dy, int N, int C); // db (C) += sum over rows of dy
    double (*sum_squares)(Backend* be, const float* x, size_t n);        // sum x^2 (in double), synchronises
    // zero the rows t >= lengths[b] of x (B, T, C)
    void (*mask_rows)(Backend* be, float* x, const int* lengths, int B, int T, int C);

    // ------------------------------------------------------------------------
    // transformer blocks
    // RMSNorm over rows of C: y = x / sqrt(mean(x^2) + eps) * w; rstd (N) = saved 1/sqrt(...)
    void (*rmsnorm_fwd)(Backend* be, float* y, float* rstd, const float* x, const float* w, int N, int C, float eps);
    // res (N, C) += x, then rmsnorm_fwd of res: the residual stream's add fused into the next norm,
    // so the product before it writes its output without first copying the stream there (the
    // same results as add then rmsnorm_fwd); res and x fp32
    void (*add_rmsnorm_fwd)(Backend* be, float* y, float* rstd, float* res, const float* x, const float* w, int N,
                            int C, float eps);
    // dx (N, C) += d/dx, dw (C) += d/dw
    void (*rmsnorm_bwd)(Backend* be, float* dx, float* dw, const float* dy, const float* x, const float* w,
                        const float* rstd, int N, int C);
    // RoPE in place on x (N, nh, hd), HF rotate_half convention (pairs i and i + hd/2), row n at
    // position pos[n]; cos/sin tables are (max_pos, hd/2). rope_bwd applies the inverse rotation.
    void (*rope_fwd)(Backend* be, float* x, const int* pos, const float* cos, const float* sin, int N, int nh, int hd);
    void (*rope_bwd)(Backend* be, float* dx, const int* pos, const float* cos, const float* sin, int N, int nh,
                     int hd);
    // Causal grouped-query attention for B sequences, scale 1/sqrt(hd).
    //   q (B, Tq, H*hd) rows of stride ldq; k, v (B, Tk, KV*hd) rows of stride ldkv;
    //   out (B, Tq, H*hd) dense; lse (B, H, Tq) = log-sum-exp of each query's scaled scores.
    // Sequence b has q_lens[b] queries and kv_lens[b] keys; query t sits at position
    // kv_lens[b] - q_lens[b] + t and attends keys 0..that position. Training passes
    // q_lens = kv_lens = lengths, Tq = Tk = T; incremental decoding passes the KV cache as k, v.
    // Rows t >= q_lens[b] of out are zeroed. `work` is attention_work_bytes(be, Tk) bytes.
    void (*attention_fwd)(Backend* be, float* out, float* lse, const float* q, int ldq, const float* k,
                          const float* v, int ldkv, const int* q_lens, const int* kv_lens, int B, int Tq, int Tk,
                          int H, int KV, int hd, void* work);
    // dq (B, Tq, H*hd) =, dk and dv (B, Tk, KV*hd) = (rows of stride ldkv; padded rows zeroed)
    void (*attention_bwd)(Backend* be, float* dq, float* dk, float* dv, const float* dout, const float* out,
                          const float* lse, const float* q, int ldq, const float* k, const float* v, int ldkv,
                          const int* q_lens, const int* kv_lens, int B, int Tq, int Tk, int H, int KV, int hd,
                          void* work);
    size_t (*attention_work_bytes)(Backend* be, int Tk);
    // SwiGLU: h = silu(gate) * up over n elements; bwd: dgate =, dup =
    void (*swiglu_fwd)(Backend* be, float* h, const float* gate, const float* up, size_t n);
    void (*swiglu_bwd)(Backend* be, float* dgate, float* dup, const float* dh, const float* gate, const float* up,
                       size_t n);
    // y (N, D) = table[tokens[n]]; bwd: dtable[tokens[n]] += dy[n]. Tokens are in [0, V).
    void (*embedding_fwd)(Backend* be, float* y, const int* tokens, const float* table, int N, int D);
    void (*embedding_bwd)(Backend* be, float* dtable, const float* dy, const int* tokens, int N, int D, int V);

    // ------------------------------------------------------------------------
    // vocabulary-wide blocks (the math is documented in loss.h; rows with weight 0 are skipped,
    // their losses entry is 0, their dz untouched with LOSS_DZ_ADD and 0 with LOSS_DZ_SET).
    // losses (N) = per-token loss or NULL; dz (N, V) += (ADD) or = (SET) w * dloss/dz, or NULL.
    // Each returns sum_n w[n] * loss[n] and synchronises.
    // softmax, log-softmax: y (N, V) of the rows of z; y may be z (in place)
    void (*softmax)(Backend* be, float* y, const float* z, int N, int V);
    void (*log_softmax)(Backend* be, float* y, const float* z, int N, int V);
    double (*cross_entropy)(Backend* be, const float* z, const int* targets, const float* w, int N, int V,
                            float* losses, float* dz, LossDzMode mode);
    double (*kl_full)(Backend* be, const float* z, const float* teacher_lp, const float* w, int N, int V,
                      int reverse, float* losses, float* dz, LossDzMode mode);
    double (*kl_topk)(Backend* be, const float* z, const int* ids, const float* teacher_lp, const float* teacher_tail,
                      const float* w, int N, int V, int K, int reverse, float* losses, float* dz, LossDzMode mode);
    double (*kl_sampled)(Backend* be, const float* z, const int* ids, const float* teacher_lp, const float* old_lp,
                         const float* w, int N, int V, float* losses, float* dz, LossDzMode mode);
    // the distillation objective's per-row pieces (loss.h; rows with w == 0 skipped). entropy (N
    // doubles, or NULL for the argmax alone), argmax (N); jsd_* return sum_n w[n] jsd[n] summed in
    // row order and synchronise; their surrogate outputs may alias lp and tail.
    void (*entropy)(Backend* be, const float* z, const float* w, int N, int V, double* entropy, int* argmax);
    double (*jsd_topk)(Backend* be, const float* z, const int* ids, const float* lp, const float* tail, const float* w,
                       int N, int V, int K, double beta, float* lp_s, float* tail_s);
    double (*jsd_full)(Backend* be, const float* z, const float* lp, const float* w, int N, int V, double beta,
                       float* lp_s);
    void (*sampled_lp)(Backend* be, float* lp_y, const float* z, const int* y, const int* ids, const float* lp,
                       const float* tail, const float* w, int N, int V, int K);
    // out[n] = x[n * V + idx[n]] of the (N, V) x for each idx[n] in [0, V); other entries are kept
    void (*pick)(Backend* be, float* out, const float* x, const int* idx, int N, int V);
    // Decoding's draw on the device (model/sample.h has the math; sample_token is its host
    // equivalent): for each row of z (N, V) ids[n] = the first index of the max (temperature 0), else
    // a draw proportional to exp(z / temperature) over the vocabulary in id order, at u[n] in [0, 1)
    // (N doubles) of the running sum; lp[n] = its log-prob at temperature 1; with K > 0 (<=
    // LOSS_TOPK_MAX) topk_ids, topk_lp (N, K) the K best at temperature 1 (ties to the lower id),
    // best first, and tail (N) = 1 - their mass, clamped to [0, 1]. With u NULL nothing is drawn:
    // ids are given (scoring) and only lp and the top-k are written. Sums may round in another
    // order than the host's, so a draw within rounding of a boundary may differ from it.
    void (*sample_rows)(Backend* be, const float* z, int N, int V, float temperature, const double* u, int K,
                        int* ids, float* lp, int* topk_ids, float* topk_lp, float* tail);

    // ------------------------------------------------------------------------
    // optimizer: one AdamW step over n elements (see adamw.h); g is multiplied by grad_scale
    // first (clipping), bias corrections use step t >= 1, decay is decoupled (p *= 1 - lr*wd).
    void (*adamw)(Backend* be, float* p, const float* g, float* m, float* v, size_t n, float lr, float beta1,
                  float beta2, float eps, float weight_decay, float grad_scale, long t);

    // ------------------------------------------------------------------------
    // the trainer's gradient sums (distill/trainer.c, docs/DISTILL.md): fixed point, exact in any
    // order, so every trainer count gives the same bits; and the gradient norm's block sums. Every
    // backend computes the bits of model/fixed_point.c, their definition on host arrays.
    // acc (n int64) += llrint(g * 2^k) (round half to even) for each g with |g 2^k| < limit; an
    // element not finite or out of range is not added and makes the return 1 (else 0).
    // *max_abs = max |g| (NaN if an element is not finite). Synchronises.
    int (*fp_accumulate)(Backend* be, int64_t* acc, const float* g, size_t n, int k, double limit, double* max_abs);
    void (*fp_to_float)(Backend* be, float* g, const int64_t* acc, size_t n, int k); // g = (float)(acc 2^-k)
    // sums (host, ceil(n / block) doubles): sums[b] = sum of (double)x[i]^2 over block b of x, in
    // increasing i. Synchronises.
    void (*sum_squares_blocks)(Backend* be, double* sums, const float* x, size_t n, size_t block);
};

// Fatal on a block count outside 1..LINEAR_MAX_BLOCKS, a block without rows or a bad input shape
void linear_bwd_check(const LinearBlocks* blocks, int M, int K);
// linear_bwd as 2n products through `matmul` (a backend's own): dx = dy[0] w[0] + beta dx, then
// dx += dy[i] w[i] for i = 1..n-1, then dw[i] += dy[i]^T x in block order (linear_bwd_check first).
void linear_bwd_by_matmuls(Backend* be, MatmulFn matmul, const LinearBlocks* blocks, const float* x, float* dx,
                           float beta, int M, int K);

// ----------------------------------------------------------------------------
// the backends

// CPU backend: OpenBLAS sgemm for matmuls (small products: the backend's own AVX-512 kernel or
// sgemv, see cpu_matmul in ops_cpu.c), OpenMP for the rest. threads = 0 picks the number
// of cores (or OMP_NUM_THREADS). Sets the OpenMP thread count to `threads` and OpenBLAS's to 1:
// each OpenMP thread runs sgemm on its own slice of a product, so only one pool of threads
// exists (two pools spinning against each other halved sgemm throughput on 2 cores).
Backend* backend_cpu_create(int threads);
void backend_destroy(Backend* be);

// CUDA backend (model/cuda/, built whenever nvcc is present): cuBLAS for matmuls, own kernels for
// the rest, deterministic (no atomics in reductions), on GPU `device`. bf16 = 1 runs the matmuls
// on bf16 tensor cores with fp32 accumulation (buffers stay fp32 master copies, see the contract).
// Returns NULL with the reason in err (no GPU, bad ordinal, built without CUDA) so callers can
// print a clear error or skip.
Backend* backend_cuda_create(int device, int bf16, char* err, size_t errlen);

// The OpenBLAS kernel family in use ("Haswell", "SkylakeX", ...), and the OPENBLAS_CORETYPE that
// would serve this CPU better, or NULL. OpenBLAS picks its kernels when it loads, from
// OPENBLAS_CORETYPE or its CPU table; AVX2 kernels on AVX-512 hardware (a forced
// OPENBLAS_CORETYPE=Haswell, or a release older than the CPU) run matmuls at half speed, and
// backend_cpu_create warns once when that happens.
const char* backend_cpu_blas_core(void);
const char* backend_cpu_blas_better_core(void);
