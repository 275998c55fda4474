// CUDA backend: the vocabulary-wide blocks (softmax, log-softmax, cross-entropy and the three
// distillation losses; the math is in loss.h, the reference row kernels in loss.c). One block
// per row. The row's max and sum of exponentials come from one read of the logits (each thread
// keeps a running max and a double sum rescaled when the max grows; the threads' pairs are
// combined in a fixed shuffle tree), the gradient from a second read. Each row's weighted loss
// goes to a scratch array and the total is summed in a fixed order (cuda_sum_doubles): results
// are bit-identical between runs. Expressions follow loss.c term by term, including where they
// round to float and where they stay in double.
#include "model/cuda/ops_cuda.cuh"

extern "C" {
#include "model/loss.h"
}

#define LOSS_THREADS 512

// ----------------------------------------------------------------------------
// row helpers

// x into the running (max m, sum s of exp(. - m)) of one thread
__device__ __forceinline__ void online_add(float& m, double& s, float x) {
    if (x > m) {
        s = (m == -INFINITY ? 0.0 : s * (double)expf(m - x)) + 1.0;
        m = x;
    } else if (m != -INFINITY) {
        s += (double)expf(x - m);
    }
}

// The row's max (float) and sum of exp(z - max) in double, as loss_row_logsumexp defines them;
// every thread gets both. shf: 32 floats, shd: 32 doubles of shared memory.
__device__ void row_max_sum(const float* z, int V, float* shf, double* shd, float* m_out, double* s_out) {
    float m = -INFINITY;
    double s = 0.0;
    for (int v = threadIdx.x; v < V; v += blockDim.x) online_add(m, s, z[v]);
    const float M = block_max(m, shf);
    const double part = m == -INFINITY ? 0.0 : s * exp((double)m - (double)M);
    *s_out = block_sum_d(part, shd);
    *m_out = M;
}

// the row's result: its loss (when asked) and its weighted loss for the total
__device__ __forceinline__ void row_result(int n, float w, float l, float* losses, double* rowval) {
    if (threadIdx.x == 0) {
        if (losses) losses[n] = l;
        rowval[n] = (double)w * l;
    }
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
    float m;
    double s;
    row_max_sum(zn, V, shf, shd, &m, &s);
    const double lse = (double)m + log(s);
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
// backend stops the job there) gives a NaN loss and leaves dz alone.

__global__ void __launch_bounds__(LOSS_THREADS) cross_entropy_kernel(const float* z, const int* targets,
                                                                     const float* w, int V, float* losses, float* dz,
                                                                     double* rowval) {
    __shared__ float shf[32];
    __shared__ double shd[32];
    const int n = blockIdx.x, y = targets[n];
    const float wn = w[n];
    if (wn == 0.0f || y < 0) {
        row_result(n, 0.0f, 0.0f, losses, rowval);
        return;
    }
    if (y >= V) {
        row_result(n, wn, NAN, losses, rowval);
        return;
    }
    const float* zn = z + (size_t)n * V;
    float m;
    double s;
    row_max_sum(zn, V, shf, shd, &m, &s);
    const double lse = (double)m + log(s);
    if (dz) {
        float* dzn = dz + (size_t)n * V;
        const float lsef = (float)lse;
        for (int v = threadIdx.x; v < V; v += blockDim.x) {
            float d = dzn[v] + wn * expf(zn[v] - lsef);
            if (v == y) d -= wn;
            dzn[v] = d;
        }
    }
    row_result(n, wn, (float)(lse - zn[y]), losses, rowval);
}

double cuda_cross_entropy(Backend* be, const float* z, const int* targets, const float* w, int N, int V,
                          float* losses, float* dz) {
    if (N <= 0) return 0.0;
    double* rowval = loss_scratch(be, N);
    cross_entropy_kernel<<<N, LOSS_THREADS, 0, cuda_stream(be)>>>(z, targets, w, V, losses, dz, rowval);
    cudaCheckLaunch();
    return loss_total(be, rowval, N);
}

// ----------------------------------------------------------------------------
// full-vocabulary KL, both directions

__global__ void __launch_bounds__(LOSS_THREADS) kl_full_kernel(const float* z, const float* lp, const float* w, int V,
                                                               int reverse, float* losses, float* dz,
                                                               double* rowval) {
    __shared__ float shf[32];
    __shared__ double shd[32];
    const int n = blockIdx.x;
    const float wn = w[n];
    if (wn == 0.0f) {
        row_result(n, 0.0f, 0.0f, losses, rowval);
        return;
    }
    const float* zn = z + (size_t)n * V;
    const float* lpn = lp + (size_t)n * V;
    float m;
    double s;
    row_max_sum(zn, V, shf, shd, &m, &s);
    const double lse = (double)m + log(s);
    double kl = 0.0;
    if (!reverse) {
        double klt = 0.0, psum = 0.0;
        for (int v = threadIdx.x; v < V; v += blockDim.x) {
            const double p = expf(lpn[v]);
            if (p > 0.0) klt += p * ((double)lpn[v] - (zn[v] - lse));
            psum += p;
        }
        kl = block_sum_d(klt, shd);
        psum = block_sum_d(psum, shd);
        if (dz) {
            float* dzn = dz + (size_t)n * V;
            const float lsef = (float)lse, psumf = (float)psum;
            for (int v = threadIdx.x; v < V; v += blockDim.x) {
                dzn[v] += wn * (expf(zn[v] - lsef) * psumf - expf(lpn[v]));
            }
        }
    } else {
        const double lp_floor = log(LOSS_PROB_FLOOR);
        double klt = 0.0;
        for (int v = threadIdx.x; v < V; v += blockDim.x) {
            const double lq = zn[v] - lse;
            klt += expf((float)lq) * (lq - fmax((double)lpn[v], lp_floor));
        }
        kl = block_sum_d(klt, shd);
        if (dz) {
            float* dzn = dz + (size_t)n * V;
            for (int v = threadIdx.x; v < V; v += blockDim.x) {
                const double lq = zn[v] - lse;
                dzn[v] += wn * expf((float)lq) * (float)(lq - fmax((double)lpn[v], lp_floor) - kl);
            }
        }
    }
    row_result(n, wn, (float)kl, losses, rowval);
}

double cuda_kl_full(Backend* be, const float* z, const float* teacher_lp, const float* w, int N, int V, int reverse,
                    float* losses, float* dz) {
    if (N <= 0) return 0.0;
    double* rowval = loss_scratch(be, N);
    kl_full_kernel<<<N, LOSS_THREADS, 0, cuda_stream(be)>>>(z, teacher_lp, w, V, reverse, losses, dz, rowval);
    cudaCheckLaunch();
    return loss_total(be, rowval, N);
}

// ----------------------------------------------------------------------------
// top-k KL with a tail bucket. An id outside [0, V) or a tail mass < 0 or NaN (the CPU backend
// stops the job there) gives a NaN loss and leaves dz alone; repeated ids are not detected.

__global__ void __launch_bounds__(LOSS_THREADS) kl_topk_kernel(const float* z, const int* ids, const float* lp,
                                                               const float* tail_mass, const float* w, int V, int K,
                                                               int reverse, float* losses, float* dz,
                                                               double* rowval) {
    __shared__ float shf[32];
    __shared__ double shd[32];
    __shared__ float saved[LOSS_TOPK_MAX]; // dz of the top-k ids before this row's update
    const int n = blockIdx.x;
    const float wn = w[n], tail = tail_mass[n];
    if (wn == 0.0f) {
        row_result(n, 0.0f, 0.0f, losses, rowval);
        return;
    }
    const int* idn = ids + (size_t)n * K;
    const float* lpn = lp + (size_t)n * K;
    const float* zn = z + (size_t)n * V;
    float bad = tail >= 0.0f ? 0.0f : 1.0f;
    for (int i = threadIdx.x; i < K; i += blockDim.x) bad = idn[i] >= 0 && idn[i] < V ? bad : 1.0f;
    if (block_max(bad, shf) != 0.0f) {
        row_result(n, wn, NAN, losses, rowval);
        return;
    }
    const double log_floor = log(LOSS_PROB_FLOOR);
    // student: Z over the vocabulary, Zt over the ids outside the top-k, both relative to max z
    float m;
    double Z;
    row_max_sum(zn, V, shf, shd, &m, &Z);
    double zs = 0.0, es = 0.0;
    for (int i = threadIdx.x; i < K; i += blockDim.x) {
        zs += (double)expf(zn[idn[i]] - m);
        es += exp((double)lpn[i]);
    }
    const double Zs = block_sum_d(zs, shd), Es = block_sum_d(es, shd);
    const double Zt = K < V && Z - Zs > 0.0 ? Z - Zs : 0.0; // K == V: no tail, exactly
    const double logZ = log(Z);
    const double Qt = Zt / Z, lQt = Zt > 0.0 ? fmax(log(Zt) - logZ, log_floor) : log_floor;
    // teacher: renormalised K + 1 buckets
    const double S = (double)tail + Es, logS = log(S);
    const double Pt = tail / S, lPt = tail > 0.0f ? fmax(log((double)tail) - logS, log_floor) : log_floor;

    double klt = 0.0;
    if (!reverse) {
        for (int i = threadIdx.x; i < K; i += blockDim.x) {
            const double P = exp((double)lpn[i] - logS);
            const double lQ = fmax((zn[idn[i]] - m) - logZ, log_floor);
            if (P > 0.0) klt += P * ((double)lpn[i] - logS - lQ);
        }
        double kl = block_sum_d(klt, shd);
        if (Pt > 0.0) kl += Pt * (lPt - lQt);
        if (dz) {
            // every id as if in the tail, then the top-k ids overwritten from their saved values
            float* dzn = dz + (size_t)n * V;
            for (int i = threadIdx.x; i < K; i += blockDim.x) saved[i] = dzn[idn[i]];
            __syncthreads();
            const float inv_Z = (float)(1.0 / Z), tail_scale = Zt > 0.0 ? (float)(Pt / Zt) : 0.0f;
            for (int v = threadIdx.x; v < V; v += blockDim.x) dzn[v] += wn * expf(zn[v] - m) * (inv_Z - tail_scale);
            __syncthreads();
            for (int i = threadIdx.x; i < K; i += blockDim.x) {
                const int id = idn[i];
                dzn[id] = saved[i] + wn * (float)(exp((double)(zn[id] - m)) / Z - exp((double)lpn[i] - logS));
            }
        }
        row_result(n, wn, (float)kl, losses, rowval);
    } else {
        const double gt = lQt - lPt;
        for (int i = threadIdx.x; i < K; i += blockDim.x) {
            const double lQ = (zn[idn[i]] - m) - logZ;
            klt += exp(lQ) * (fmax(lQ, log_floor) - fmax((double)lpn[i] - logS, log_floor));
        }
        const double kl = block_sum_d(klt, shd) + Qt * gt;
        if (dz) {
            float* dzn = dz + (size_t)n * V;
            for (int i = threadIdx.x; i < K; i += blockDim.x) saved[i] = dzn[idn[i]];
            __syncthreads();
            const float c = (float)(gt - kl), shift = (float)(m + logZ);
            for (int v = threadIdx.x; v < V; v += blockDim.x) dzn[v] += wn * expf(zn[v] - shift) * c;
            __syncthreads();
            for (int i = threadIdx.x; i < K; i += blockDim.x) {
                const int id = idn[i];
                const double lQ = (zn[id] - m) - logZ;
                const double gi = fmax(lQ, log_floor) - fmax((double)lpn[i] - logS, log_floor);
                dzn[id] = saved[i] + wn * (float)(exp(lQ) * (gi - kl));
            }
        }
        row_result(n, wn, (float)kl, losses, rowval);
    }
}

double cuda_kl_topk(Backend* be, const float* z, const int* ids, const float* teacher_lp, const float* teacher_tail,
                    const float* w, int N, int V, int K, int reverse, float* losses, float* dz) {
    if (K > LOSS_TOPK_MAX) fatal("kl_topk: K = %d exceeds LOSS_TOPK_MAX = %d", K, LOSS_TOPK_MAX);
    if (N <= 0) return 0.0;
    double* rowval = loss_scratch(be, N);
    kl_topk_kernel<<<N, LOSS_THREADS, 0, cuda_stream(be)>>>(z, ids, teacher_lp, teacher_tail, w, V, K, reverse,
                                                             losses, dz, rowval);
    cudaCheckLaunch();
    return loss_total(be, rowval, N);
}

// ----------------------------------------------------------------------------
// sampled-token estimator: c = rho (lq[y] - lp_t), dz += w c (onehot(y) - q). An id outside
// [0, V) gives a NaN loss and leaves dz alone.

__global__ void __launch_bounds__(LOSS_THREADS) kl_sampled_kernel(const float* z, const int* ids, const float* lp,
                                                                  const float* old_lp, const float* w, int V,
                                                                  float* losses, float* dz, double* rowval) {
    __shared__ float shf[32];
    __shared__ double shd[32];
    const int n = blockIdx.x, y = ids[n];
    const float wn = w[n];
    if (wn == 0.0f) {
        row_result(n, 0.0f, 0.0f, losses, rowval);
        return;
    }
    if (y < 0 || y >= V) {
        row_result(n, wn, NAN, losses, rowval);
        return;
    }
    const float* zn = z + (size_t)n * V;
    float m;
    double s;
    row_max_sum(zn, V, shf, shd, &m, &s);
    const double lse = (double)m + log(s);
    const double lq = zn[y] - lse;
    const double rho = old_lp ? exp(lq - (double)old_lp[n]) : 1.0;
    const double c = rho * (lq - (double)lp[n]);
    if (dz) {
        float* dzn = dz + (size_t)n * V;
        const float wc = wn * (float)c, lsef = (float)lse;
        for (int v = threadIdx.x; v < V; v += blockDim.x) {
            float d = dzn[v] - wc * expf(zn[v] - lsef);
            if (v == y) d += wc;
            dzn[v] = d;
        }
    }
    row_result(n, wn, (float)c, losses, rowval);
}

double cuda_kl_sampled(Backend* be, const float* z, const int* ids, const float* teacher_lp, const float* old_lp,
                       const float* w, int N, int V, float* losses, float* dz) {
    if (N <= 0) return 0.0;
    double* rowval = loss_scratch(be, N);
    kl_sampled_kernel<<<N, LOSS_THREADS, 0, cuda_stream(be)>>>(z, ids, teacher_lp, old_lp, w, V, losses, dz, rowval);
    cudaCheckLaunch();
    return loss_total(be, rowval, N);
}
