// linear_bwd_check and linear_bwd_by_matmuls (ops.h): the backward of a layer stacked from
// blocks, one block at a time, for backends without a fused path. The CPU backend's linear_bwd,
// and the CUDA backend's outside its bf16 mode.
#include "model/ops.h"

#include "common/log.h"

// ----------------------------------------------------------------------------
// checks

void linear_bwd_check(const LinearBlocks* b, int M, int K) {
    if (b->n < 1 || b->n > LINEAR_MAX_BLOCKS) {
        fatal("linear_bwd: %d blocks, outside 1..%d", b->n, LINEAR_MAX_BLOCKS);
    }
    for (int i = 0; i < b->n; i++) {
        if (b->rows[i] <= 0) fatal("linear_bwd: block %d has %d rows", i, b->rows[i]);
    }
    if (M < 0 || K <= 0) fatal("linear_bwd: input (%d, %d)", M, K);
}

// ----------------------------------------------------------------------------
// the 2n products

void linear_bwd_by_matmuls(Backend* be, MatmulFn matmul, const LinearBlocks* b, const float* x, float* dx,
                           float beta, int M, int K) {
    linear_bwd_check(b, M, K);
    for (int i = 0; i < b->n; i++) {
        matmul(be, 0, 0, M, K, b->rows[i], 1.0f, b->dy[i], b->rows[i], b->w[i], K, i ? 1.0f : beta, dx, K);
    }
    for (int i = 0; i < b->n; i++) {
        matmul(be, 1, 0, b->rows[i], K, M, 1.0f, b->dy[i], b->rows[i], x, K, 1.0f, b->dw[i], K);
    }
}
