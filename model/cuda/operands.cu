// The bf16 mode's kept copies of fp32 matmul operands (CudaOperand, ops_cuda.cuh): lookup, slots
// under the byte limit, forgetting what an op may have written, and the copies an op writes
// itself beside their source (the residual gradient's norm, AdamW), which saves the copy pass a
// product would make. The emulated build checks every reuse of a copy against its source.
#include <stdlib.h>
#include <string.h>

#include "model/cuda/ops_cuda.cuh"

// ----------------------------------------------------------------------------
// lookup and forgetting

// the bytes a row-major fp32 block (rows, cols) with row stride ld spans
static size_t block_bytes(int rows, int cols, int ld) { return ((size_t)(rows - 1) * ld + cols) * sizeof(float); }

// forget the copies whose source overlaps the fp32 block p (rows, cols), row stride ld
void operands_forget_block(CudaImpl* c, const float* p, int rows, int cols, int ld) {
    const char *lo = (const char*)p, *hi = lo + block_bytes(rows, cols, ld);
    for (int i = 0; i < CUDA_OPERAND_SLOTS; i++) {
        CudaOperand* o = &c->operands[i];
        if (!o->src) continue;
        const char* src = (const char*)o->src;
        if (src < hi && lo < src + block_bytes(o->rows, o->cols, o->ld)) o->src = NULL;
    }
}

// forget the copies whose source lies in the allocation that holds p (nothing if p is in none)
void operands_forget_alloc(CudaImpl* c, const void* p) {
    const CudaRange* a = ranges_find(&c->allocs, p, 0);
    if (!a) return;
    for (int i = 0; i < CUDA_OPERAND_SLOTS; i++) {
        CudaOperand* o = &c->operands[i];
        if (o->src && (const char*)o->src >= a->p && (const char*)o->src < a->p + a->bytes) o->src = NULL;
    }
}

static void operand_drop(CudaImpl* c, CudaOperand* o) {
    if (o->buf) cudaCheck(cudaFree(o->buf)); // waits for the device: no product still reads it
    c->operand_bytes -= o->cap;
    o->buf = NULL;
    o->cap = 0;
    o->src = NULL;
}

// what to drop for room: a free slot's buffer (the largest), else the least recently used copy;
// never `keep` nor a copy the current matmul uses
static CudaOperand* operand_victim(CudaImpl* c, const CudaOperand* keep) {
    CudaOperand *empty = NULL, *lru = NULL;
    for (int i = 0; i < CUDA_OPERAND_SLOTS; i++) {
        CudaOperand* o = &c->operands[i];
        if (o == keep || !o->buf || o->used == c->operand_clock) continue;
        if (!o->src && (!empty || o->cap > empty->cap)) empty = o;
        if (o->src && (!lru || o->used < lru->used)) lru = o;
    }
    return empty ? empty : lru;
}

// A slot for a new copy of `bytes`: the free slot that fits it most tightly, else the largest free
// one (grown), else the least recently used; buffers of other slots are dropped while the copies
// would hold more than operand_limit.
static CudaOperand* operand_slot(CudaImpl* c, size_t bytes) {
    CudaOperand *fit = NULL, *largest = NULL, *lru = NULL;
    for (int i = 0; i < CUDA_OPERAND_SLOTS; i++) {
        CudaOperand* o = &c->operands[i];
        if (o->used != c->operand_clock && (!lru || o->used < lru->used)) lru = o;
        if (o->src) continue;
        if (o->cap >= bytes && (!fit || o->cap < fit->cap)) fit = o;
        if (!largest || o->cap > largest->cap) largest = o;
    }
    CudaOperand* o = fit ? fit : largest ? largest : lru;
    if (o->cap < bytes) {
        operand_drop(c, o);
        for (CudaOperand* v; c->operand_bytes + bytes > c->operand_limit && (v = operand_victim(c, o));) {
            operand_drop(c, v);
        }
        if (cudaMalloc(&o->buf, bytes) != cudaSuccess) {
            cudaGetLastError();
            fatal("cuda backend: the bf16 copy of a matmul operand (%zu bytes, %.1f MiB) does not fit on GPU %d\n"
                  "  hint: use a smaller batch, sequence length or vocabulary, or train without bf16",
                  bytes, (double)bytes / (1024.0 * 1024.0), c->device);
        }
        o->cap = bytes;
        c->operand_bytes += bytes;
    }
    o->src = NULL;
    return o;
}

// a slot registered as the copy of src (rows, cols), row stride ld, for the caller to fill
static CudaOperand* operand_take(CudaImpl* c, const float* src, int rows, int cols, int ld) {
    CudaOperand* o = operand_slot(c, ((size_t)rows * cols * sizeof(__nv_bfloat16) + 255) / 256 * 256);
    o->src = src;
    o->rows = rows;
    o->cols = cols;
    o->ld = ld;
    o->used = c->operand_clock;
    return o;
}

// A kept copy about to be reused must equal its source rounded: the emulated build
// (INGRAIN_CUDA_CHECK_OPERANDS, tests/emu) checks that every time, so every emulated test also
// tests that no op writes a source without forgetting its copy.
static void operand_check(Backend* be, const CudaOperand* o) {
#ifdef INGRAIN_CUDA_CHECK_OPERANDS
    const size_t n = (size_t)o->rows * o->cols;
    __nv_bfloat16* fresh = (__nv_bfloat16*)cuda_scratch(be, n * sizeof(__nv_bfloat16));
    cuda_to_bf16(be, fresh, o->src, o->rows, o->cols, o->ld);
    void* want = malloc(2 * n * sizeof(__nv_bfloat16));
    if (!want) fatal("cuda backend: out of host memory");
    char* got = (char*)want + n * sizeof(__nv_bfloat16);
    cudaCheck(cudaMemcpyAsync(want, fresh, n * sizeof(__nv_bfloat16), cudaMemcpyDeviceToHost, cuda_stream(be)));
    cudaCheck(cudaMemcpyAsync(got, o->buf, n * sizeof(__nv_bfloat16), cudaMemcpyDeviceToHost, cuda_stream(be)));
    cudaCheck(cudaStreamSynchronize(cuda_stream(be)));
    if (memcmp(want, got, n * sizeof(__nv_bfloat16)) != 0) {
        fatal("cuda backend: the kept bf16 copy of operand %p (%d x %d) is stale: an op wrote its source without "
              "forgetting it", (const void*)o->src, o->rows, o->cols);
    }
    free(want);
#else
    (void)be, (void)o;
#endif
}

// The packed bf16 copy of the fp32 block src (rows, cols), row stride ld: a kept copy, or a new one.
const __nv_bfloat16* operand_bf16(Backend* be, const float* src, int rows, int cols, int ld) {
    CudaImpl* c = cuda_impl(be);
    for (int i = 0; i < CUDA_OPERAND_SLOTS; i++) {
        CudaOperand* o = &c->operands[i];
        if (o->src == src && o->rows == rows && o->cols == cols && o->ld == ld) {
            o->used = c->operand_clock;
            operand_check(be, o);
            return o->buf;
        }
    }
    CudaOperand* o = operand_take(c, src, rows, cols, ld);
    cuda_to_bf16(be, o->buf, src, rows, cols, ld);
    return o->buf;
}

// ----------------------------------------------------------------------------
// copies written by the op that computes their source

__nv_bfloat16* operand_produce(Backend* be, const float* src, int rows, int cols) {
    CudaImpl* c = cuda_impl(be);
    operands_forget_block(c, src, rows, cols, cols);
    return operand_take(c, src, rows, cols, cols)->buf;
}

static int operand_by_src(const void* a, const void* b) {
    const CudaOperand *x = *(CudaOperand* const*)a, *y = *(CudaOperand* const*)b;
    return x->src < y->src ? -1 : x->src > y->src;
}

int operands_renew(CudaImpl* c, const float* p, size_t n, CudaOperand** out) {
    const float* end = p + n;
    int k = 0;
    for (int i = 0; i < CUDA_OPERAND_SLOTS; i++) {
        CudaOperand* o = &c->operands[i];
        if (!o->src || o->src >= end || o->src + ((size_t)(o->rows - 1) * o->ld + o->cols) <= p) continue;
        if (o->ld == o->cols && o->src >= p && o->src + (size_t)o->rows * o->cols <= end) out[k++] = o;
        else o->src = NULL; // strided or partly outside: the op cannot write it as it goes
    }
    qsort(out, k, sizeof(CudaOperand*), operand_by_src);
    int kept = 0;
    for (int i = 0; i < k; i++) { // overlapping sources: keep the first, forget the others
        if (kept && out[i]->src < out[kept - 1]->src + (size_t)out[kept - 1]->rows * out[kept - 1]->cols) {
            out[i]->src = NULL;
        } else {
            out[kept++] = out[i];
        }
    }
    return kept;
}
