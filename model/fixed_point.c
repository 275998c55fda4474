// The trainer's fixed-point gradient sums and the gradient norm's block sums on host arrays (see
// fixed_point.h): the CPU backend's fp_* ops, and the host staging of several trainers.
// Element-wise, so any thread split gives the same integers; max and | are order-free; each block
// sum runs in one thread in increasing order.
#include "model/fixed_point.h"

#include <math.h>
#include <omp.h>

// OpenMP's default team for threads <= 0
static int team(int threads) { return threads > 0 ? threads : omp_get_max_threads(); }

int fixed_accumulate(int64_t* acc, const float* g, size_t n, int k, double limit, double* max_abs, int threads) {
    const double scale = ldexp(1.0, k);
    double mx = 0.0;
    int bad = 0, nonfinite = 0;
#pragma omp parallel for num_threads(team(threads)) schedule(static) reduction(max : mx) reduction(| : bad, nonfinite)
    for (size_t i = 0; i < n; i++) {
        const double a = fabs((double)g[i]);
        if (!isfinite(a)) {
            nonfinite = bad = 1;
            continue;
        }
        mx = a > mx ? a : mx;
        const double x = (double)g[i] * scale; // exact: a power-of-two scaling of a float
        if (!(fabs(x) < limit)) {
            bad = 1;
            continue;
        }
        acc[i] += llrint(x);
    }
    *max_abs = nonfinite ? NAN : mx;
    return bad;
}

void fixed_to_float(float* g, const int64_t* acc, size_t n, int k, int threads) {
    const double inv = ldexp(1.0, -k);
#pragma omp parallel for num_threads(team(threads)) schedule(static)
    for (size_t i = 0; i < n; i++) g[i] = (float)((double)acc[i] * inv);
}

void fixed_block_sums(double* sums, const float* x, size_t n, size_t block, int threads) {
    const size_t nb = (n + block - 1) / block;
#pragma omp parallel for num_threads(team(threads)) schedule(static)
    for (size_t b = 0; b < nb; b++) {
        const size_t e = (b + 1) * block < n ? (b + 1) * block : n;
        double s = 0.0;
        for (size_t i = b * block; i < e; i++) s += (double)x[i] * (double)x[i];
        sums[b] = s;
    }
}
