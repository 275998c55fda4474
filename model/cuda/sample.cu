// CUDA backend: decoding's draws on the device, and the scoring of given ids (the sample_rows op of
// ops.h; model/sample.h has the math, sample.c its host definition). One block per row: the row's
// log-sum-exp at temperature 1 and its first maximum, then the draw in id order, then the recorded
// top-k one best candidate at a time. The draw's running sum is chunked: each thread sums a
// contiguous run of ids, one thread lays the runs' sums end to end in id order, and the thread whose
// run holds u * total walks it.
// Every sum has a fixed order, so results are bit-identical between runs; they round in another
// order than the host's, so a draw within rounding of a boundary may differ from sample_token's.
#include <limits.h>

#include "model/cuda/ops_cuda.cuh"
#include "model/cuda/storage.cuh"

#define SAMPLE_THREADS 512

__global__ void __launch_bounds__(SAMPLE_THREADS)
    sample_rows_kernel(const float* z, int V, float temperature, const double* u, int K, int* ids, float* lp,
                       int* topk_ids, float* topk_lp, float* tail) {
    __shared__ float shf[32];
    __shared__ int shi[32];
    __shared__ double shd[32];
    __shared__ double run_start[SAMPLE_THREADS + 1]; // where each thread's run of ids starts in the running sum
    __shared__ int drawn;
    const int n = blockIdx.x, tid = threadIdx.x, nt = blockDim.x;
    const float* zn = z + (size_t)n * V;
    float m;
    double s;
    row_max_sum(zn, V, shf, shd, &m, &s);
    const double lse = (double)m + log(s);
    // the first index of the max
    float bz = -INFINITY;
    int bi = INT_MAX;
    for (int v = tid; v < V; v += nt) {
        if (argmax_before(zn[v], v, bz, bi)) bz = zn[v], bi = v;
    }
    block_argmax(bz, bi, shf, shi);
    int id = u ? bi : ids[n]; // without uniforms the ids are given (scoring)
    if (u && temperature != 0.0f) {
        // weights exp((z - zmax) / temperature) in double, as sample_row_id; thread t sums ids [c0, c1)
        const double inv_t = 1.0 / temperature;
        const int per = (V + nt - 1) / nt, c0 = min(V, tid * per), c1 = min(V, c0 + per);
        double part = 0.0;
        for (int v = c0; v < c1; v++) part += exp((double)(zn[v] - bz) * inv_t);
        run_start[tid] = part;
        if (tid == 0) drawn = INT_MAX;
        __syncthreads();
        if (tid == 0) {
            double acc = 0.0;
            for (int t = 0; t < nt; t++) {
                const double p = run_start[t];
                run_start[t] = acc;
                acc += p;
            }
            run_start[nt] = acc;
        }
        __syncthreads();
        const double target = u[n] * run_start[nt];
        if (target >= run_start[tid] && target < run_start[tid + 1]) {
            // this run holds the target; at its end within rounding, its last id with weight
            double cum = run_start[tid];
            int pick = -1;
            for (int v = c0; v < c1; v++) {
                const double w = exp((double)(zn[v] - bz) * inv_t);
                if (w > 0.0) pick = v;
                cum += w;
                if (target < cum) break;
            }
            if (pick >= 0) drawn = pick;
        }
        __syncthreads();
        if (drawn == INT_MAX) {
            // u within rounding of the total: the last id with weight (else 0), as sample_row_id
            int last = 0;
            for (int v = tid; v < V; v += nt) {
                if (v > last && exp((double)(zn[v] - bz) * inv_t) > 0.0) last = v;
            }
            float lz = (float)last; // ids below 2^24 are exact floats; block_argmax keeps the largest
            int li = 0;
            block_argmax(lz, li, shf, shi);
            id = (int)lz;
        } else {
            id = drawn;
        }
    }
    if (tid == 0) {
        if (u) ids[n] = id;
        lp[n] = (float)(zn[id] - lse);
    }
    // the recorded top-k: K rounds, each the best candidate after the previous one in the order
    float pz = INFINITY;
    int pi = -1;
    double mass = 0.0;
    for (int k = 0; k < K; k++) {
        float cz = -INFINITY;
        int ci = INT_MAX;
        for (int v = tid; v < V; v += nt) {
            const float x = zn[v];
            if (argmax_before(pz, pi, x, v) && argmax_before(x, v, cz, ci)) cz = x, ci = v;
        }
        block_argmax(cz, ci, shf, shi);
        if (tid == 0) {
            topk_ids[(size_t)n * K + k] = ci;
            topk_lp[(size_t)n * K + k] = (float)(cz - lse);
            mass += exp(cz - lse);
        }
        pz = cz, pi = ci;
    }
    if (tid == 0 && K > 0) {
        const double rest = 1.0 - mass;
        tail[n] = (float)(rest < 0.0 ? 0.0 : rest > 1.0 ? 1.0 : rest);
    }
}

void cuda_sample_rows(Backend* be, const float* z, int N, int V, float temperature, const double* u, int K, int* ids,
                      float* lp, int* topk_ids, float* topk_lp, float* tail) {
    if (N <= 0) return;
    sample_rows_kernel<<<N, SAMPLE_THREADS, 0, cuda_stream(be)>>>(z, V, temperature, u, K, ids, lp, topk_ids, topk_lp,
                                                                   tail);
    cudaCheckLaunch();
}
