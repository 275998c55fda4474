// CUDA backend: the vocabulary-wide blocks (softmax, log-softmax, cross-entropy and the three
// distillation losses; the math is in loss.h, the reference row kernels in loss.c). One block
// per row. The row's max and sum of exponentials come from one read of the logits (each thread
// keeps a running max and a double sum rescaled when the max grows; the threads' pairs are
// combined in a fixed shuffle tree), the gradient from a second read; the losses' passes go 4
// elements per load where the rows allow (row_each2, row_update). Each row's weighted loss
// goes to a scratch array and the total is summed in a fixed order (cuda_sum_doubles): results
// are bit-identical between runs. Expressions follow loss.c term by term, including where they
// round to float and where they stay in double. The losses' dz may be an activation buffer
// (bf16 storage: dlogits in the bf16 mode), which each update reads, adds to and rounds back
// (LOSS_DZ_ADD) or writes without reading (LOSS_DZ_SET: the old value counts as 0, and a row the
// block skips is zeroed). So may the logits z of the losses and the objective's rows (the model's
// logits in the bf16 mode, which the LM head's product writes in bf16: half the bytes it writes
// and these blocks read, as llm.c and mixed-precision PyTorch keep them); every other input is
// fp32.
#include <limits.h>

#include "model/cuda/ops_cuda.cuh"
#include "model/cuda/storage.cuh"

extern "C" {
#include "model/loss.h"
}

#define LOSS_THREADS 512

// ----------------------------------------------------------------------------
// row helpers

// the row's log-sum-exp, (double)max + log(sum), as loss_row_logsumexp; every thread gets it
template <typename TZ> __device__ double row_logsumexp(const TZ* z, int V, float* shf, double* shd) {
    float m;
    double s;
    row_max_sum(z, V, shf, shd, &m, &s);
    return (double)m + log(s);
}

// the row's result: its loss (when asked) and its weighted loss for the total
__device__ __forceinline__ void row_result(int n, float w, float l, float* losses, double* rowval) {
    if (threadIdx.x == 0) {
        if (losses) losses[n] = l;
        rowval[n] = (double)w * l;
    }
}

// Passes over a row of logits z (fp32 or bf16) and a second row x of V floats or a row dz (fp32 or
// bf16; a bf16 store rounds the result once), besides storage.cuh's row_each: each thread its own elements, 4
// per load where the rows allow (rows_vec4), else one. row_each2 calls f(z[v], x[v]) in
// increasing order (its sums depend on it); row_update sets dz[v] = f(v, d, z[v]) and row_update2
// dz[v] = f(d, z[v], x[v]) from the row's end back (chunks_from_end), with d = dz[v] when `add`,
// else 0 (dz not read); row_zero sets dz[v] = 0.
template <typename TZ, typename F>
__device__ __forceinline__ void row_each2(const TZ* z, const float* x, int V, F f) {
    if (rows_vec4(z, V) && rows_vec4(x, V)) {
        for (int j = threadIdx.x; j < V / 4; j += blockDim.x) {
            Chunk<TZ, 4> zc;
            Chunk<float, 4> xc;
            zc.load(z, j);
            xc.load(x, j);
#pragma unroll
            for (int e = 0; e < 4; e++) f(zc.v[e], xc.v[e]);
        }
    } else {
        for (int v = threadIdx.x; v < V; v += blockDim.x) f(load_f(z + v), x[v]);
    }
}

// f(j) for the chunks j < n of a row, each thread its own (j = threadIdx.x mod blockDim.x), from
// the row's end back to its start, a block-wide step at a time (coalesced as forward): the row's
// first pass (row_max_sum) ended at the end, so its last chunks are the likeliest still in L2.
// The rows in flight (4 blocks of 512 threads per SM, 201 KB per fp32 row at V = 50,304) hold
// about twice an H100's or H200's 50 MB of L2, so a forward second pass finds little of its row
// there. Each element's result is independent of the order.
template <typename F> __device__ __forceinline__ void chunks_from_end(int n, F f) {
    for (int j0 = (n - 1) / (int)blockDim.x * (int)blockDim.x; j0 >= 0; j0 -= (int)blockDim.x) {
        const int j = j0 + (int)threadIdx.x;
        if (j < n) f(j);
    }
}

// dz's chunk j, or 0 without a read
template <typename TD> __device__ __forceinline__ Chunk<TD, 4> dz_chunk(const TD* dz, int j, int add) {
    Chunk<TD, 4> d;
    if (add) d.load(dz, j);
    else d.v[0] = d.v[1] = d.v[2] = d.v[3] = 0.0f;
    return d;
}

template <typename TD, typename TZ, typename F>
__device__ __forceinline__ void row_update(TD* dz, const TZ* z, int V, int add, F f) {
    if (rows_vec4(z, V) && rows_vec4(dz, V)) {
        chunks_from_end(V / 4, [&](int j) {
            Chunk<TZ, 4> zc;
            zc.load(z, j);
            Chunk<TD, 4> d = dz_chunk(dz, j, add);
#pragma unroll
            for (int e = 0; e < 4; e++) d.v[e] = f(4 * j + e, d.v[e], zc.v[e]);
            d.store(dz, j);
        });
    } else {
        for (int v = threadIdx.x; v < V; v += blockDim.x) {
            store_f(dz + v, f(v, add ? load_f(dz + v) : 0.0f, load_f(z + v)));
        }
    }
}

template <typename TD, typename TZ, typename F>
__device__ __forceinline__ void row_update2(TD* dz, const TZ* z, const float* x, int V, int add, F f) {
    if (rows_vec4(z, V) && rows_vec4(x, V) && rows_vec4(dz, V)) {
        chunks_from_end(V / 4, [&](int j) {
            Chunk<TZ, 4> zc;
            Chunk<float, 4> xc;
            zc.load(z, j);
            xc.load(x, j);
            Chunk<TD, 4> d = dz_chunk(dz, j, add);
#pragma unroll
            for (int e = 0; e < 4; e++) d.v[e] = f(d.v[e], zc.v[e], xc.v[e]);
            d.store(dz, j);
        });
    } else {
        for (int v = threadIdx.x; v < V; v += blockDim.x) {
            store_f(dz + v, f(add ? load_f(dz + v) : 0.0f, load_f(z + v), x[v]));
        }
    }
}

template <typename TD> __device__ __forceinline__ void row_zero(TD* dz, int V) {
    if (rows_vec4(dz, V)) {
        for (int j = threadIdx.x; j < V / 4; j += blockDim.x) dz_chunk(dz, j, 0).store(dz, j);
    } else {
        for (int v = threadIdx.x; v < V; v += blockDim.x) store_f(dz + v, 0.0f);
    }
}

// a row the block skips: its results, and 0 over its dz with LOSS_DZ_SET. Not inlined: inlined at
// kl_topk's two exits it spilled 44 bytes (ptxas sm_90); called, no kernel spills.
template <typename TD>
__device__ __noinline__ void row_skip(int n, float w, float l, float* losses, double* rowval, TD* dz, int V,
                                      int add) {
    row_result(n, w, l, losses, rowval);
    if (dz && !add) row_zero(dz + (size_t)n * V, V);
}

// scratch for N row values and the partial sums; returns the row values
static double* loss_scratch(Backend* be, int N) {
    return (double*)cuda_scratch(be, ((size_t)N + CUDA_SUM_PARTS) * sizeof(double));
}

// sum_n rowval[n] to the host (waits for the stream)
static double loss_total(Backend* be, double* rowval, int N) {
    cuda_sum_doubles(be, cuda_impl(be)->result_dev, rowval, (size_t)N, rowval + N);
    return cuda_result(be);
}

// ----------------------------------------------------------------------------
// softmax and log-softmax

__global__ void __launch_bounds__(LOSS_THREADS) softmax_kernel(float* y, const float* z, int V, int log_mode) {
    __shared__ float shf[32];
    __shared__ double shd[32];
    const float* zn = z + (size_t)blockIdx.x * V;
    float* yn = y + (size_t)blockIdx.x * V;
    const double lse = row_logsumexp(zn, V, shf, shd);
    const float lsef = (float)lse;
    for (int v = threadIdx.x; v < V; v += blockDim.x) {
        yn[v] = log_mode ? (float)(zn[v] - lse) : expf(zn[v] - lsef);
    }
}

void cuda_softmax(Backend* be, float* y, const float* z, int N, int V) {
    if (N <= 0) return;
    softmax_kernel<<<N, LOSS_THREADS, 0, cuda_stream(be)>>>(y, z, V, 0);
    cudaCheckLaunch();
}

void cuda_log_softmax(Backend* be, float* y, const float* z, int N, int V) {
    if (N <= 0) return;
    softmax_kernel<<<N, LOSS_THREADS, 0, cuda_stream(be)>>>(y, z, V, 1);
    cudaCheckLaunch();
}

// ----------------------------------------------------------------------------
// cross-entropy: loss = lse - z[y]; dz += w (q - onehot(y)). A target outside [0, V) (the CPU
// backend stops the job there) gives a NaN loss and leaves dz alone (zeroes it: LOSS_DZ_SET).

template <typename TD, typename TZ>
__global__ void __launch_bounds__(LOSS_THREADS) cross_entropy_kernel(const TZ* z, const int* targets,
                                                                     const float* w, int V, float* losses, TD* dz,
                                                                     int add, double* rowval) {
    __shared__ float shf[32];
    __shared__ double shd[32];
    const int n = blockIdx.x, y = targets[n];
    const float wn = w[n];
    if (wn == 0.0f || y < 0) return row_skip(n, 0.0f, 0.0f, losses, rowval, dz, V, add);
    if (y >= V) return row_skip(n, wn, NAN, losses, rowval, dz, V, add);
    const TZ* zn = z + (size_t)n * V;
    const double lse = row_logsumexp(zn, V, shf, shd);
    if (dz) {
        const float lsef = (float)lse;
        row_update(dz + (size_t)n * V, zn, V, add, [&](int v, float d, float zv) {
            d += wn * expf(zv - lsef);
            return v == y ? d - wn : d;
        });
    }
    row_result(n, wn, (float)(lse - load_f(zn + y)), losses, rowval);
}

double cuda_cross_entropy(Backend* be, const float* z, const int* targets, const float* w, int N, int V,
                          float* losses, float* dz, LossDzMode mode) {
    if (N <= 0) return 0.0;
    double* rowval = loss_scratch(be, N);
    const CudaView d = cuda_view(be, dz), vz = cuda_view(be, z);
    cuda_dispatch2(d.bf16, vz.bf16, [&](auto td, auto tz) {
        typedef CUDA_TAG_T(td) TD;
        typedef CUDA_TAG_T(tz) TZ;
        cross_entropy_kernel<<<N, LOSS_THREADS, 0, cuda_stream(be)>>>((const TZ*)vz.p, targets, w, V, losses,
                                                                      (TD*)d.p, mode == LOSS_DZ_ADD, rowval);
    });
    cudaCheckLaunch();
    return loss_total(be, rowval, N);
}

// ----------------------------------------------------------------------------
// full-vocabulary KL, both directions

template <typename TD, typename TZ>
__global__ void __launch_bounds__(LOSS_THREADS) kl_full_kernel(const TZ* z, const float* lp, const float* w, int V,
                                                               int reverse, float* losses, TD* dz, int add,
                                                               double* rowval) {
    __shared__ float shf[32];
    __shared__ double shd[32];
    const int n = blockIdx.x;
    const float wn = w[n];
    if (wn == 0.0f) return row_skip(n, 0.0f, 0.0f, losses, rowval, dz, V, add);
    const TZ* zn = z + (size_t)n * V;
    const float* lpn = lp + (size_t)n * V;
    const double lse = row_logsumexp(zn, V, shf, shd);
    double kl = 0.0;
    if (!reverse) {
        double klt = 0.0, psum = 0.0;
        row_each2(zn, lpn, V, [&](float zv, float lv) {
            const double p = expf(lv);
            if (p > 0.0) klt += p * ((double)lv - (zv - lse));
            psum += p;
        });
        kl = block_sum_d(klt, shd);
        psum = block_sum_d(psum, shd);
        if (dz) {
            const float lsef = (float)lse, psumf = (float)psum;
            row_update2(dz + (size_t)n * V, zn, lpn, V, add,
                        [&](float d, float zv, float lv) { return d + wn * (expf(zv - lsef) * psumf - expf(lv)); });
        }
    } else {
        const double lp_floor = log(LOSS_PROB_FLOOR);
        double klt = 0.0;
        row_each2(zn, lpn, V, [&](float zv, float lv) {
            const double lq = zv - lse;
            klt += expf((float)lq) * (lq - fmax((double)lv, lp_floor));
        });
        kl = block_sum_d(klt, shd);
        if (dz) {
            row_update2(dz + (size_t)n * V, zn, lpn, V, add, [&](float d, float zv, float lv) {
                const double lq = zv - lse;
                return d + wn * expf((float)lq) * (float)(lq - fmax((double)lv, lp_floor) - kl);
            });
        }
    }
    row_result(n, wn, (float)kl, losses, rowval);
}

double cuda_kl_full(Backend* be, const float* z, const float* teacher_lp, const float* w, int N, int V, int reverse,
                    float* losses, float* dz, LossDzMode mode) {
    if (N <= 0) return 0.0;
    double* rowval = loss_scratch(be, N);
    const CudaView d = cuda_view(be, dz), vz = cuda_view(be, z);
    cuda_dispatch2(d.bf16, vz.bf16, [&](auto td, auto tz) {
        typedef CUDA_TAG_T(td) TD;
        typedef CUDA_TAG_T(tz) TZ;
        kl_full_kernel<<<N, LOSS_THREADS, 0, cuda_stream(be)>>>((const TZ*)vz.p, teacher_lp, w, V, reverse, losses,
                                                                 (TD*)d.p, mode == LOSS_DZ_ADD, rowval);
    });
    cudaCheckLaunch();
    return loss_total(be, rowval, N);
}

// ----------------------------------------------------------------------------
// top-k KL with a tail bucket. An id outside [0, V) or a tail mass < 0 or NaN (the CPU backend
// stops the job there) gives a NaN loss and leaves dz alone (zeroes it: LOSS_DZ_SET); repeated ids
// are not detected.

// The parts of a top-k row's K + 1 buckets that need the whole row (loss.c's buckets), shared by
// the top-k KL, the JSD and the sampled log-prob: the student's max m, Z, log Z and tail, the
// teacher's log S and tail, all relative to max z. Every thread gets them; bad = 1 for an id
// outside [0, V) or a tail mass < 0 or NaN.
struct RowBuckets {
    float m;
    double Z, Zt, logZ, lse, Qt, lQt, logS, Pt, lPt;
    int bad;
};

template <typename TZ>
__device__ RowBuckets row_buckets(const TZ* zn, const int* idn, const float* lpn, float tail, int V, int K,
                                  float* shf, double* shd) {
    RowBuckets r;
    const double log_floor = log(LOSS_PROB_FLOOR);
    float bad = tail >= 0.0f ? 0.0f : 1.0f;
    for (int i = threadIdx.x; i < K; i += blockDim.x) bad = idn[i] >= 0 && idn[i] < V ? bad : 1.0f;
    r.bad = block_max(bad, shf) != 0.0f;
    if (r.bad) return r;
    row_max_sum(zn, V, shf, shd, &r.m, &r.Z);
    const double Z = r.Z;
    double zs = 0.0, es = 0.0;
    for (int i = threadIdx.x; i < K; i += blockDim.x) {
        zs += (double)expf(load_f(zn + idn[i]) - r.m);
        es += exp((double)lpn[i]);
    }
    const double Zs = block_sum_d(zs, shd), Es = block_sum_d(es, shd);
    const double Zt = r.Zt = K < V && Z - Zs > 0.0 ? Z - Zs : 0.0; // K == V: no tail, exactly
    r.logZ = log(Z);
    r.lse = r.m + r.logZ;
    r.Qt = Zt / Z;
    r.lQt = Zt > 0.0 ? fmax(log(Zt) - r.logZ, log_floor) : log_floor;
    const double S = (double)tail + Es;
    r.logS = log(S);
    r.Pt = tail / S;
    r.lPt = tail > 0.0f ? fmax(log((double)tail) - r.logS, log_floor) : log_floor;
    return r;
}

template <typename TD, typename TZ>
__global__ void __launch_bounds__(LOSS_THREADS) kl_topk_kernel(const TZ* z, const int* ids, const float* lp,
                                                               const float* tail_mass, const float* w, int V, int K,
                                                               int reverse, float* losses, TD* dz, int add,
                                                               double* rowval) {
    __shared__ float shf[32];
    __shared__ double shd[32];
    __shared__ float saved[LOSS_TOPK_MAX]; // dz of the top-k ids before this row's update
    const int n = blockIdx.x;
    const float wn = w[n], tail = tail_mass[n];
    if (wn == 0.0f) return row_skip(n, 0.0f, 0.0f, losses, rowval, dz, V, add);
    const int* idn = ids + (size_t)n * K;
    const float* lpn = lp + (size_t)n * K;
    const TZ* zn = z + (size_t)n * V;
    const RowBuckets r = row_buckets(zn, idn, lpn, tail, V, K, shf, shd);
    if (r.bad) return row_skip(n, wn, NAN, losses, rowval, dz, V, add);
    const double log_floor = log(LOSS_PROB_FLOOR);
    const float m = r.m;
    const double Z = r.Z, Zt = r.Zt, logZ = r.logZ, Qt = r.Qt, lQt = r.lQt, logS = r.logS, Pt = r.Pt, lPt = r.lPt;

    double klt = 0.0;
    if (!reverse) {
        for (int i = threadIdx.x; i < K; i += blockDim.x) {
            const double P = exp((double)lpn[i] - logS);
            const double lQ = fmax((load_f(zn + idn[i]) - m) - logZ, log_floor);
            if (P > 0.0) klt += P * ((double)lpn[i] - logS - lQ);
        }
        double kl = block_sum_d(klt, shd);
        if (Pt > 0.0) kl += Pt * (lPt - lQt);
        if (dz) {
            // every id as if in the tail, then the top-k ids overwritten from their saved values
            TD* dzn = dz + (size_t)n * V;
            for (int i = threadIdx.x; i < K; i += blockDim.x) saved[i] = add ? load_f(dzn + idn[i]) : 0.0f;
            __syncthreads();
            const float inv_Z = (float)(1.0 / Z), tail_scale = Zt > 0.0 ? (float)(Pt / Zt) : 0.0f;
            row_update(dzn, zn, V, add,
                       [&](int, float d, float zv) { return d + wn * expf(zv - m) * (inv_Z - tail_scale); });
            __syncthreads();
            for (int i = threadIdx.x; i < K; i += blockDim.x) {
                const int id = idn[i];
                const float zi = load_f(zn + id);
                store_f(dzn + id, saved[i] + wn * (float)(exp((double)(zi - m)) / Z - exp((double)lpn[i] - logS)));
            }
        }
        row_result(n, wn, (float)kl, losses, rowval);
    } else {
        const double gt = lQt - lPt;
        for (int i = threadIdx.x; i < K; i += blockDim.x) {
            const double lQ = (load_f(zn + idn[i]) - m) - logZ;
            klt += exp(lQ) * (fmax(lQ, log_floor) - fmax((double)lpn[i] - logS, log_floor));
        }
        const double kl = block_sum_d(klt, shd) + Qt * gt;
        if (dz) {
            TD* dzn = dz + (size_t)n * V;
            for (int i = threadIdx.x; i < K; i += blockDim.x) saved[i] = add ? load_f(dzn + idn[i]) : 0.0f;
            __syncthreads();
            const float c = (float)(gt - kl), shift = (float)(m + logZ);
            row_update(dzn, zn, V, add, [&](int, float d, float zv) { return d + wn * expf(zv - shift) * c; });
            __syncthreads();
            for (int i = threadIdx.x; i < K; i += blockDim.x) {
                const int id = idn[i];
                const double lQ = (load_f(zn + id) - m) - logZ;
                const double gi = fmax(lQ, log_floor) - fmax((double)lpn[i] - logS, log_floor);
                store_f(dzn + id, saved[i] + wn * (float)(exp(lQ) * (gi - kl)));
            }
        }
        row_result(n, wn, (float)kl, losses, rowval);
    }
}

double cuda_kl_topk(Backend* be, const float* z, const int* ids, const float* teacher_lp, const float* teacher_tail,
                    const float* w, int N, int V, int K, int reverse, float* losses, float* dz, LossDzMode mode) {
    if (K > LOSS_TOPK_MAX) fatal("kl_topk: K = %d exceeds LOSS_TOPK_MAX = %d", K, LOSS_TOPK_MAX);
    if (N <= 0) return 0.0;
    double* rowval = loss_scratch(be, N);
    const CudaView d = cuda_view(be, dz), vz = cuda_view(be, z);
    cuda_dispatch2(d.bf16, vz.bf16, [&](auto td, auto tz) {
        typedef CUDA_TAG_T(td) TD;
        typedef CUDA_TAG_T(tz) TZ;
        kl_topk_kernel<<<N, LOSS_THREADS, 0, cuda_stream(be)>>>((const TZ*)vz.p, ids, teacher_lp, teacher_tail, w, V,
                                                                 K, reverse, losses, (TD*)d.p, mode == LOSS_DZ_ADD,
                                                                 rowval);
    });
    cudaCheckLaunch();
    return loss_total(be, rowval, N);
}

// ----------------------------------------------------------------------------
// sampled-token estimator: c = rho (lq[y] - lp_t), dz += w c (onehot(y) - q). An id outside
// [0, V) gives a NaN loss and leaves dz alone (zeroes it: LOSS_DZ_SET).

template <typename TD, typename TZ>
__global__ void __launch_bounds__(LOSS_THREADS) kl_sampled_kernel(const TZ* z, const int* ids, const float* lp,
                                                                  const float* old_lp, const float* w, int V,
                                                                  float* losses, TD* dz, int add, double* rowval) {
    __shared__ float shf[32];
    __shared__ double shd[32];
    const int n = blockIdx.x, y = ids[n];
    const float wn = w[n];
    if (wn == 0.0f) return row_skip(n, 0.0f, 0.0f, losses, rowval, dz, V, add);
    if (y < 0 || y >= V) return row_skip(n, wn, NAN, losses, rowval, dz, V, add);
    const TZ* zn = z + (size_t)n * V;
    const double lse = row_logsumexp(zn, V, shf, shd);
    const double lq = load_f(zn + y) - lse;
    const double rho = old_lp ? exp(lq - (double)old_lp[n]) : 1.0;
    const double c = rho * (lq - (double)lp[n]);
    if (dz) {
        const float wc = wn * (float)c, lsef = (float)lse;
        row_update(dz + (size_t)n * V, zn, V, add, [&](int v, float d, float zv) {
            d -= wc * expf(zv - lsef);
            return v == y ? d + wc : d;
        });
    }
    row_result(n, wn, (float)c, losses, rowval);
}

double cuda_kl_sampled(Backend* be, const float* z, const int* ids, const float* teacher_lp, const float* old_lp,
                       const float* w, int N, int V, float* losses, float* dz, LossDzMode mode) {
    if (N <= 0) return 0.0;
    double* rowval = loss_scratch(be, N);
    const CudaView d = cuda_view(be, dz), vz = cuda_view(be, z);
    cuda_dispatch2(d.bf16, vz.bf16, [&](auto td, auto tz) {
        typedef CUDA_TAG_T(td) TD;
        typedef CUDA_TAG_T(tz) TZ;
        kl_sampled_kernel<<<N, LOSS_THREADS, 0, cuda_stream(be)>>>((const TZ*)vz.p, ids, teacher_lp, old_lp, w, V,
                                                                    losses, (TD*)d.p, mode == LOSS_DZ_ADD, rowval);
    });
    cudaCheckLaunch();
    return loss_total(be, rowval, N);
}

// ----------------------------------------------------------------------------
// the distillation objective's rows (loss.h): entropy and argmax, the JSD and its surrogate
// teacher, the sampled id's log-prob from a top-k row, and picking one entry per row

template <typename TZ>
__global__ void __launch_bounds__(LOSS_THREADS) entropy_kernel(const TZ* z, const float* w, int V, double* entropy,
                                                               int* argmax) {
    __shared__ float shf[32];
    __shared__ double shd[32];
    __shared__ int shi[32];
    const int n = blockIdx.x;
    if (w[n] == 0.0f) {
        if (threadIdx.x == 0 && entropy) entropy[n] = 0.0;
        if (threadIdx.x == 0) argmax[n] = -1;
        return;
    }
    const TZ* zn = z + (size_t)n * V;
    // the thread's first max: element tid (0 wins a row of -inf), then its own elements, which
    // come in increasing order from index tid on
    const int tid = threadIdx.x;
    float best = tid < V ? load_f(zn + tid) : -INFINITY;
    int arg = tid < V ? tid : INT_MAX;
    if (entropy) {
        const double lse = row_logsumexp(zn, V, shf, shd);
        double h = 0.0;
        row_each(zn, V, [&](int v, float zv) {
            const double lq = (double)zv - lse;
            h -= exp(lq) * lq;
            if (zv > best) best = zv, arg = v;
        });
        h = block_sum_d(h, shd);
        if (threadIdx.x == 0) entropy[n] = h;
    } else {
        row_each(zn, V, [&](int v, float zv) {
            if (zv > best) best = zv, arg = v;
        });
    }
    block_argmax(best, arg, shf, shi);
    if (threadIdx.x == 0) argmax[n] = arg;
}

void cuda_entropy(Backend* be, const float* z, const float* w, int N, int V, double* entropy, int* argmax) {
    if (N <= 0) return;
    const CudaView vz = cuda_view(be, z);
    cuda_dispatch(vz.bf16, [&](auto tz) {
        typedef CUDA_TAG_T(tz) TZ;
        entropy_kernel<<<N, LOSS_THREADS, 0, cuda_stream(be)>>>((const TZ*)vz.p, w, V, entropy, argmax);
    });
    cudaCheckLaunch();
}

// one bucket's JSD terms; *ls = the log of its surrogate bucket
__device__ __forceinline__ double jsd_bucket(double P, double lP, double Q, double lQ, double beta, double* ls) {
    const double log_floor = log(LOSS_PROB_FLOOR);
    const double M = beta * P + (1.0 - beta) * Q, lM = M > 0.0 ? fmax(log(M), log_floor) : log_floor;
    double j = 0.0;
    if (P > 0.0) j += beta * P * (lP - lM);
    if (Q > 0.0) j += (1.0 - beta) * Q * (lQ - lM);
    *ls = beta * lQ + (1.0 - beta) * lM;
    return j;
}

template <typename TZ>
__global__ void __launch_bounds__(LOSS_THREADS) jsd_topk_kernel(const TZ* z, const int* ids, const float* lp,
                                                                const float* tail_mass, const float* w, int V, int K,
                                                                double beta, float* lp_s, float* tail_s,
                                                                double* rowval) {
    __shared__ float shf[32];
    __shared__ double shd[32];
    const int n = blockIdx.x;
    const float wn = w[n], tail = tail_mass[n];
    if (wn == 0.0f) {
        if (threadIdx.x == 0) rowval[n] = 0.0;
        return;
    }
    const int* idn = ids + (size_t)n * K;
    const float* lpn = lp + (size_t)n * K;
    const TZ* zn = z + (size_t)n * V;
    const RowBuckets r = row_buckets(zn, idn, lpn, tail, V, K, shf, shd);
    if (r.bad) {
        if (threadIdx.x == 0) rowval[n] = NAN;
        return;
    }
    const double log_floor = log(LOSS_PROB_FLOOR);
    double part = 0.0, ls;
    for (int i = threadIdx.x; i < K; i += blockDim.x) {
        const float zi = load_f(zn + idn[i]);
        const double Q = exp((double)(zi - r.m)) / r.Z;
        const double lQ = fmax((zi - r.m) - r.logZ, log_floor);
        const double P = exp((double)lpn[i] - r.logS), lP = fmax((double)lpn[i] - r.logS, log_floor);
        part += jsd_bucket(P, lP, Q, lQ, beta, &ls);
        lp_s[(size_t)n * K + i] = (float)ls; // its own lp entry is read above: in place is safe
    }
    double jsd = block_sum_d(part, shd); // a barrier: every thread has read the tail before it is written
    if (threadIdx.x == 0) {
        jsd += jsd_bucket(r.Pt, r.lPt, r.Qt, r.lQt, beta, &ls);
        tail_s[n] = r.Qt > 0.0 ? (float)exp(ls) : 0.0f;
        rowval[n] = (double)wn * jsd;
    }
}

double cuda_jsd_topk(Backend* be, const float* z, const int* ids, const float* lp, const float* tail, const float* w,
                     int N, int V, int K, double beta, float* lp_s, float* tail_s) {
    if (N <= 0) return 0.0;
    double* rowval = loss_scratch(be, N);
    const CudaView vz = cuda_view(be, z);
    cuda_dispatch(vz.bf16, [&](auto tz) {
        typedef CUDA_TAG_T(tz) TZ;
        jsd_topk_kernel<<<N, LOSS_THREADS, 0, cuda_stream(be)>>>((const TZ*)vz.p, ids, lp, tail, w, V, K, beta, lp_s,
                                                                  tail_s, rowval);
    });
    cudaCheckLaunch();
    return loss_total(be, rowval, N);
}

template <typename TZ>
__global__ void __launch_bounds__(LOSS_THREADS) jsd_full_kernel(const TZ* z, const float* lp, const float* w, int V,
                                                                double beta, float* lp_s, double* rowval) {
    __shared__ float shf[32];
    __shared__ double shd[32];
    const int n = blockIdx.x;
    const float wn = w[n];
    if (wn == 0.0f) {
        if (threadIdx.x == 0) rowval[n] = 0.0;
        return;
    }
    const TZ* zn = z + (size_t)n * V;
    const float* lpn = lp + (size_t)n * V;
    float* lsn = lp_s + (size_t)n * V;
    const double lse = row_logsumexp(zn, V, shf, shd), log_floor = log(LOSS_PROB_FLOOR);
    // one element at a time: four of its double-precision buckets at once (row_update2) spill
    double part = 0.0, ls;
    for (int v = threadIdx.x; v < V; v += blockDim.x) {
        const double lq = (double)load_f(zn + v) - lse, lpv = lpn[v];
        part += jsd_bucket(exp(lpv), fmax(lpv, log_floor), exp(lq), fmax(lq, log_floor), beta, &ls);
        lsn[v] = (float)ls; // each thread writes only the entries it has read
    }
    const double jsd = block_sum_d(part, shd);
    if (threadIdx.x == 0) rowval[n] = (double)wn * jsd;
}

double cuda_jsd_full(Backend* be, const float* z, const float* lp, const float* w, int N, int V, double beta,
                     float* lp_s) {
    if (N <= 0) return 0.0;
    double* rowval = loss_scratch(be, N);
    const CudaView vz = cuda_view(be, z);
    cuda_dispatch(vz.bf16, [&](auto tz) {
        typedef CUDA_TAG_T(tz) TZ;
        jsd_full_kernel<<<N, LOSS_THREADS, 0, cuda_stream(be)>>>((const TZ*)vz.p, lp, w, V, beta, lp_s, rowval);
    });
    cudaCheckLaunch();
    return loss_total(be, rowval, N);
}

// An id y outside [0, V) or a bad top-k row gives NaN. Ids are distinct; were one repeated, the
// last match would count, as on the CPU.
template <typename TZ>
__global__ void __launch_bounds__(LOSS_THREADS) sampled_lp_kernel(float* lp_y, const TZ* z, const int* y,
                                                                  const int* ids, const float* lp,
                                                                  const float* tail_mass, const float* w, int V,
                                                                  int K) {
    __shared__ float shf[32];
    __shared__ double shd[32];
    const int n = blockIdx.x, yn = y[n];
    if (w[n] == 0.0f || !isnan(lp_y[n])) return;
    if (yn < 0 || yn >= V) {
        if (threadIdx.x == 0) lp_y[n] = NAN;
        return;
    }
    const int* idn = ids + (size_t)n * K;
    const float* lpn = lp + (size_t)n * K;
    const TZ* zn = z + (size_t)n * V;
    const RowBuckets r = row_buckets(zn, idn, lpn, tail_mass[n], V, K, shf, shd);
    if (r.bad) {
        if (threadIdx.x == 0) lp_y[n] = NAN;
        return;
    }
    float match = -1.0f;
    for (int i = threadIdx.x; i < K; i += blockDim.x) match = idn[i] == yn ? (float)i : match;
    const int at = (int)block_max(match, shf);
    if (threadIdx.x == 0) {
        const double log_floor = log(LOSS_PROB_FLOOR);
        const double out =
            at >= 0 ? fmax((double)lpn[at] - r.logS, log_floor) : r.lPt + (load_f(zn + yn) - r.lse) - r.lQt;
        lp_y[n] = (float)out;
    }
}

void cuda_sampled_lp(Backend* be, float* lp_y, const float* z, const int* y, const int* ids, const float* lp,
                     const float* tail, const float* w, int N, int V, int K) {
    if (N <= 0) return;
    const CudaView vz = cuda_view(be, z);
    cuda_dispatch(vz.bf16, [&](auto tz) {
        typedef CUDA_TAG_T(tz) TZ;
        sampled_lp_kernel<<<N, LOSS_THREADS, 0, cuda_stream(be)>>>(lp_y, (const TZ*)vz.p, y, ids, lp, tail, w, V, K);
    });
    cudaCheckLaunch();
}

__global__ void pick_kernel(float* out, const float* x, const int* idx, int N, int V) {
    const int n = blockIdx.x * blockDim.x + threadIdx.x;
    if (n < N && idx[n] >= 0 && idx[n] < V) out[n] = x[(size_t)n * V + idx[n]];
}

void cuda_pick(Backend* be, float* out, const float* x, const int* idx, int N, int V) {
    if (N <= 0) return;
    pick_kernel<<<(N + 255) / 256, 256, 0, cuda_stream(be)>>>(out, x, idx, N, V);
    cudaCheckLaunch();
}
