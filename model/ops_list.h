// The backend's ops as X-macro lists, for code that interposes on every op of a Backend (the
// benchmark's per-op profiler, the CUDA backend's operand-copy cache): X(name, parameter list,
// argument list) for every op but matmul that returns nothing, R(...) for those returning a
// double, I(...) for those returning an int. matmul and the lifetime entries (destroy, alloc, alloc_act, free,
// synchronize, attention_work_bytes) are not listed: their users treat them apart. The check at the end fails
// the build when an op is added to struct Backend but not here.
#pragma once
#include <stddef.h>

#include "model/ops.h"


#define BACKEND_VOID_OPS(X)                                                                                        \
    X(upload, (Backend * be, void* dst, const void* src, size_t bytes), (be, dst, src, bytes))                     \
    X(download, (Backend * be, void* dst, const void* src, size_t bytes), (be, dst, src, bytes))                   \
    X(memset0, (Backend * be, void* dst, size_t bytes), (be, dst, bytes))                                          \
    X(copy, (Backend * be, void* dst, const void* src, size_t bytes), (be, dst, src, bytes))                       \
    X(scatter_rows, (Backend * be, float* dst, const float* src, const int* rows, int N, int C),                   \
      (be, dst, src, rows, N, C))                                                                                  \
    X(linear_bwd, (Backend * be, const LinearBlocks* blk, const float* x, float* dx, float beta, int M, int K),     \
      (be, blk, x, dx, beta, M, K))                                                                                \
    X(add, (Backend * be, float* y, const float* x, size_t n), (be, y, x, n))                                      \
    X(scale, (Backend * be, float* y, float a, size_t n), (be, y, a, n))                                           \
    X(add_bias, (Backend * be, float* y, const float* b, int N, int C), (be, y, b, N, C))                          \
    X(bias_bwd, (Backend * be, float* db, const float* dy, int N, int C), (be, db, dy, N, C))                      \
    X(mask_rows, (Backend * be, float* x, const int* lengths, int B, int T, int C), (be, x, lengths, B, T, C))     \
    X(rmsnorm_fwd, (Backend * be, float* y, float* rstd, const float* x, const float* w, int N, int C, float eps),  \
      (be, y, rstd, x, w, N, C, eps))                                                                              \
    X(add_rmsnorm_fwd,                                                                                             \
      (Backend * be, float* y, float* rstd, float* res, const float* x, const float* w, int N, int C, float eps),   \
      (be, y, rstd, res, x, w, N, C, eps))                                                                         \
    X(rmsnorm_bwd,                                                                                                 \
      (Backend * be, float* dx, float* dw, const float* dy, const float* x, const float* w, const float* rstd,     \
       int N, int C),                                                                                              \
      (be, dx, dw, dy, x, w, rstd, N, C))                                                                          \
    X(rope_fwd, (Backend * be, float* x, const int* pos, const float* c, const float* s, int N, int nh, int hd),    \
      (be, x, pos, c, s, N, nh, hd))                                                                               \
    X(rope_bwd, (Backend * be, float* x, const int* pos, const float* c, const float* s, int N, int nh, int hd),    \
      (be, x, pos, c, s, N, nh, hd))                                                                               \
    X(attention_fwd,                                                                                               \
      (Backend * be, float* out, float* lse, const float* q, int ldq, const float* k, const float* v, int ldkv,    \
       const int* ql, const int* kl, int B, int Tq, int Tk, int H, int KV, int hd, void* work),                    \
      (be, out, lse, q, ldq, k, v, ldkv, ql, kl, B, Tq, Tk, H, KV, hd, work))                                      \
    X(attention_bwd,                                                                                               \
      (Backend * be, float* dq, float* dk, float* dv, const float* dout, const float* out, const float* lse,       \
       const float* q, int ldq, const float* k, const float* v, int ldkv, const int* ql, const int* kl, int B,      \
       int Tq, int Tk, int H, int KV, int hd, void* work),                                                         \
      (be, dq, dk, dv, dout, out, lse, q, ldq, k, v, ldkv, ql, kl, B, Tq, Tk, H, KV, hd, work))                    \
    X(swiglu_fwd, (Backend * be, float* h, const float* g, const float* u, size_t n), (be, h, g, u, n))            \
    X(swiglu_bwd, (Backend * be, float* dg, float* du, const float* dh, const float* g, const float* u, size_t n),  \
      (be, dg, du, dh, g, u, n))                                                                                   \
    X(embedding_fwd, (Backend * be, float* y, const int* t, const float* table, int N, int D),                     \
      (be, y, t, table, N, D))                                                                                     \
    X(embedding_bwd, (Backend * be, float* dtable, const float* dy, const int* t, int N, int D, int V),            \
      (be, dtable, dy, t, N, D, V))                                                                                \
    X(softmax, (Backend * be, float* y, const float* z, int N, int V), (be, y, z, N, V))                           \
    X(log_softmax, (Backend * be, float* y, const float* z, int N, int V), (be, y, z, N, V))                       \
    X(adamw,                                                                                                       \
      (Backend * be, float* p, const float* g, float* m, float* v, size_t n, float lr, float b1, float b2,         \
       float eps, float wd, float gs, long t),                                                                     \
      (be, p, g, m, v, n, lr, b1, b2, eps, wd, gs, t))                                                            \
    X(fp_to_float, (Backend * be, float* g, const int64_t* acc, size_t n, int k), (be, g, acc, n, k))              \
    X(sum_squares_blocks, (Backend * be, double* sums, const float* x, size_t n, size_t block),                    \
      (be, sums, x, n, block))                                                                                     \
    X(entropy, (Backend * be, const float* z, const float* w, int N, int V, double* h, int* arg),                  \
      (be, z, w, N, V, h, arg))                                                                                    \
    X(sampled_lp,                                                                                                  \
      (Backend * be, float* lp_y, const float* z, const int* y, const int* ids, const float* lp, const float* tail, \
       const float* w, int N, int V, int K),                                                                       \
      (be, lp_y, z, y, ids, lp, tail, w, N, V, K))                                                                 \
    X(pick, (Backend * be, float* out, const float* x, const int* idx, int N, int V), (be, out, x, idx, N, V))     \
    X(sample_rows,                                                                                                 \
      (Backend * be, const float* z, int N, int V, float temp, const double* u, int K, int* ids, float* lp,        \
       int* tk_ids, float* tk_lp, float* tail),                                                                    \
      (be, z, N, V, temp, u, K, ids, lp, tk_ids, tk_lp, tail))

#define BACKEND_DOUBLE_OPS(R)                                                                                      \
    R(sum_squares, (Backend * be, const float* x, size_t n), (be, x, n))                                           \
    R(cross_entropy,                                                                                               \
      (Backend * be, const float* z, const int* t, const float* w, int N, int V, float* losses, float* dz,         \
       LossDzMode mode),                                                                                           \
      (be, z, t, w, N, V, losses, dz, mode))                                                                       \
    R(kl_full,                                                                                                     \
      (Backend * be, const float* z, const float* tlp, const float* w, int N, int V, int rev, float* losses,       \
       float* dz, LossDzMode mode),                                                                                \
      (be, z, tlp, w, N, V, rev, losses, dz, mode))                                                                \
    R(kl_topk,                                                                                                     \
      (Backend * be, const float* z, const int* ids, const float* tlp, const float* tail, const float* w, int N,   \
       int V, int K, int rev, float* losses, float* dz, LossDzMode mode),                                          \
      (be, z, ids, tlp, tail, w, N, V, K, rev, losses, dz, mode))                                                  \
    R(kl_sampled,                                                                                                  \
      (Backend * be, const float* z, const int* ids, const float* tlp, const float* olp, const float* w, int N,    \
       int V, float* losses, float* dz, LossDzMode mode),                                                          \
      (be, z, ids, tlp, olp, w, N, V, losses, dz, mode))                                                           \
    R(jsd_topk,                                                                                                    \
      (Backend * be, const float* z, const int* ids, const float* lp, const float* tail, const float* w, int N,    \
       int V, int K, double beta, float* lp_s, float* tail_s),                                                     \
      (be, z, ids, lp, tail, w, N, V, K, beta, lp_s, tail_s))                                                      \
    R(jsd_full,                                                                                                    \
      (Backend * be, const float* z, const float* lp, const float* w, int N, int V, double beta, float* lp_s),     \
      (be, z, lp, w, N, V, beta, lp_s))

// the ops that return an int
#define BACKEND_INT_OPS(I)                                                                                         \
    I(fp_accumulate,                                                                                               \
      (Backend * be, int64_t* acc, const float* g, size_t n, int k, double limit, double* max_abs),                \
      (be, acc, g, n, k, limit, max_abs))

// ----------------------------------------------------------------------------
// completeness: Backend's function pointers are the listed ops, matmul and the six lifetime entries

#define BACKEND_OP_COUNT_ONE(name, params, args) +1
enum {
    BACKEND_LISTED_OPS = 0 BACKEND_VOID_OPS(BACKEND_OP_COUNT_ONE) BACKEND_DOUBLE_OPS(BACKEND_OP_COUNT_ONE)
        BACKEND_INT_OPS(BACKEND_OP_COUNT_ONE)
};
#ifdef __cplusplus
static_assert
#else
_Static_assert
#endif
    (sizeof(Backend) == offsetof(Backend, destroy) + (BACKEND_LISTED_OPS + 7) * sizeof(void (*)(void)),
     "an op of struct Backend is missing from model/ops_list.h");
