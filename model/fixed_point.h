// The trainer's fixed-point gradient arithmetic on host arrays: the definitions behind the
// backends' fp_accumulate, fp_to_float and sum_squares_blocks (ops.h; the CUDA backend computes
// the same bits on the GPU), used by the CPU backend and by the trainer's host staging when
// several trainers reduce through MPI. threads <= 0: OpenMP's default team.
#pragma once
#include <stddef.h>
#include <stdint.h>

// acc[i] += llrint(g[i] * 2^k) (round half to even) for each g[i] with |g[i] 2^k| < limit; an
// element not finite or out of range is not added and makes the return 1 (else 0).
// *max_abs = max |g[i]| (NaN if an element is not finite).
int fixed_accumulate(int64_t* acc, const float* g, size_t n, int k, double limit, double* max_abs, int threads);
// g[i] = (float)((double)acc[i] * 2^-k)
void fixed_to_float(float* g, const int64_t* acc, size_t n, int k, int threads);
// sums[b] = sum of (double)x[i]^2 over block b (ceil(n / block) blocks), in increasing i
void fixed_block_sums(double* sums, const float* x, size_t n, size_t block, int threads);
