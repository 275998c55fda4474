// Internals of the CUDA backend (model/cuda/*.cu): the backend's private state, its scratch
// buffer, the block-reduction helpers shared by the kernels, and the ops each file provides to
// ops_cuda.cu, which fills the Backend's function pointers. Not part of the backend interface.
#pragma once
#include <cublas_v2.h>
#include <cuda_bf16.h>
#include <cuda_runtime.h>
#include <math.h>
#include <stddef.h>

#include <type_traits>

#include "model/cuda/attention_args.h"
#include "model/cuda/check.cuh"
#include "model/cuda/reduce.cuh"

extern "C" {
#include "model/ops.h"
}

// ----------------------------------------------------------------------------
// backend state

// The bf16 mode's copy of one fp32 matmul operand (see cuda_matmul): the block src (rows, cols),
// row stride ld, as packed bf16 in buf. Copies are kept while nothing can have written their
// sources: an op forgets the copies whose source lies in an allocation it writes (any argument it
// takes as a non-const pointer; the backend installs its ops behind wrappers that do so,
// model/ops_list.h), a matmul those its output overlaps, alloc, free and the NCCL collectives
// all of them; AdamW and the RMSNorm backward write the copies of what they compute themselves
// (operands.cu). So the weights' copies live from one optimizer step to the next, and the
// backward products find the forward's. Their bytes are held under operand_limit (least recently
// used evicted first).
#define CUDA_OPERAND_SLOTS 192 // the weights of a step (7 per layer, Qwen3-4B has 36) and a few more
typedef struct {
    const float* src; // NULL: the slot holds no copy
    int rows, cols, ld;
    __nv_bfloat16* buf;
    size_t cap;         // bytes of buf (kept when the slot is reused)
    unsigned long used; // the cache's clock at the last use, for eviction
} CudaOperand;

// Disjoint address ranges sorted by start, with a pointer each: cuda_alloc's allocations (for
// finding the one an op writes), and the bf16 mode's activation buffers (ops.h, alloc_act): for
// those p is the handle the caller addresses as bytes / 4 fp32 elements and data the bf16 values
// on the device. A handle range is host address space reserved without access (mmap PROT_NONE):
// no device allocation can overlap it under unified addressing, and a kernel or host access that
// skipped cuda_view faults instead of reading garbage.
typedef struct {
    const char* p;
    size_t bytes;
    void* data;
} CudaRange;
typedef struct {
    CudaRange* r;
    int n, cap;
} CudaRanges;
// the range holding p (with end_too, also p at its end: an empty block there), or NULL
CudaRange* ranges_find(const CudaRanges* s, const void* p, int end_too);
void ranges_add(CudaRanges* s, const void* p, size_t bytes, void* data);
void ranges_remove(CudaRanges* s, CudaRange* r);

typedef struct {
    int device;
    int bf16;              // matmuls on bf16 tensor cores (fp32 accumulation)
    int num_sms;           // streaming multiprocessors of the device
    cudaStream_t stream;   // every op of the backend runs on this stream, in issue order
    cublasHandle_t cublas; // bound to `stream`, with a fixed workspace
    void* cublas_ws;
    void* scratch; // grown on demand, never shrunk; one op's temporaries at a time
    size_t scratch_bytes;
    double* result_dev;  // a reduction's final values (CUDA_RESULTS), copied to result_host
    double* result_host; // pinned
    CudaOperand operands[CUDA_OPERAND_SLOTS];
    unsigned long operand_clock; // advanced once per matmul
    size_t operand_bytes, operand_limit;
    CudaRanges allocs; // cuda_alloc's
    CudaRanges acts;   // the activation buffers' handles
    void* stage; // fp32 copies of activations for ops without bf16 kernels (cuda_stage)
    size_t stage_bytes;
    void* zeroed; // counters at 0 between launches (cuda_zeroed)
    size_t zeroed_bytes;
} CudaImpl;

static inline CudaImpl* cuda_impl(Backend* be) { return (CudaImpl*)be->impl; }
static inline cudaStream_t cuda_stream(Backend* be) { return cuda_impl(be)->stream; }
// ----------------------------------------------------------------------------
// the kept bf16 operand copies (operands.cu)

#define CUDA_BF16_COPY_MIN 128 // rows and columns of a product's C from which fp32 operands are copied

// forget every kept operand copy (whatever may have written device memory)
static inline void operands_forget(CudaImpl* c) {
    for (int i = 0; i < CUDA_OPERAND_SLOTS; i++) c->operands[i].src = NULL;
}
// forget the copies whose source overlaps the fp32 block p (rows, cols), row stride ld
void operands_forget_block(CudaImpl* c, const float* p, int rows, int cols, int ld);
// forget the copies whose source lies in the allocation that holds p (nothing if p is in none)
void operands_forget_alloc(CudaImpl* c, const void* p);
// The packed bf16 copy of the fp32 block src (rows, cols), row stride ld: a kept copy, or a new one.
const __nv_bfloat16* operand_bf16(Backend* be, const float* src, int rows, int cols, int ld);
// A kept copy of the packed fp32 block src (rows, cols) that the caller's kernel writes, on the
// stream, as it writes src itself: the rounding of each value it stores (__float2bfloat16_rn, as
// a copy pass would).
__nv_bfloat16* operand_produce(Backend* be, const float* src, int rows, int cols);
// For an op about to rewrite the fp32 range [p, p + n) and to write the new values' bf16 rounding
// into the copies of packed blocks inside it (AdamW): those copies, sorted by source, into out
// (CUDA_OPERAND_SLOTS entries); every other copy overlapping the range is forgotten.
int operands_renew(CudaImpl* c, const float* p, size_t n, CudaOperand** out);

// A scratch region of at least `bytes` (256-byte aligned). Valid until the next call: ops take
// it once and carve their temporaries out of it. Growing waits for the stream first, since
// earlier ops may still read the old region.
void* cuda_scratch(Backend* be, size_t bytes);
// A second region like cuda_scratch's, for the fp32 copies of bf16 activations that an op
// without bf16 kernels works on (its kernels may use the scratch meanwhile).
void* cuda_stage(Backend* be, size_t bytes);
// A third region, zeroed whenever it grows, for counters that kernels return to 0 before they end
// (the attention backward's turns and ticket): the next launch finds zeros without a memset.
void* cuda_zeroed(Backend* be, size_t bytes);
// copy the device double at result_dev to the host, waiting for the stream
double cuda_result(Backend* be);
// copy the first n (<= CUDA_RESULTS) doubles at result_dev to out, waiting for the stream
#define CUDA_RESULTS 4
void cuda_results(Backend* be, double* out, int n);
// Sum of x[0..n) in double into *out (device), in a fixed order: the same bits on every run.
// part: scratch for CUDA_SUM_PARTS doubles.
#define CUDA_SUM_PARTS 1024
void cuda_sum_doubles(Backend* be, double* out, const double* x, size_t n, double* part);

// blocks for a grid-stride elementwise loop over n items
static inline unsigned cuda_grid(size_t n, int threads) {
    size_t g = cuda_cdiv(n, (size_t)threads);
    if (g > 65535u * 32u) g = 65535u * 32u;
    return g ? (unsigned)g : 1u;
}

// ----------------------------------------------------------------------------
// activation storage (act.cu)

// A buffer as an op sees it: its device address and whether it holds bf16 (an activation buffer
// of the bf16 mode) or fp32 (anything else; int buffers pass through unchanged).
typedef struct {
    void* p;
    int bf16;
} CudaView;
CudaView cuda_view(Backend* be, const void* p);
// the common storage type of an op's activation arguments (1: bf16), fatal when they mix
int cuda_views_bf16(const char* op, const CudaView* v, int n);

// Runs f((float*)0) or f((bf16*)0): a generic lambda picks the kernel instantiation for a
// buffer's storage type from the tag's pointee (see cuda_dispatch2 for two buffers).
template <typename F> static inline void cuda_dispatch(int bf16, F f) {
    if (bf16) f((__nv_bfloat16*)0);
    else f((float*)0);
}
template <typename F> static inline void cuda_dispatch2(int bf16_a, int bf16_b, F f) {
    cuda_dispatch(bf16_a, [&](auto ta) { cuda_dispatch(bf16_b, [&](auto tb) { f(ta, tb); }); });
}
#define CUDA_TAG_T(tag) typename std::remove_pointer<decltype(tag)>::type

float* cuda_alloc_act(Backend* be, size_t n);
int cuda_free_act(Backend* be, void* p); // 1 when p was an activation buffer (now freed)
// the elements of a memory op's byte count on an activation buffer (fatal unless whole fp32 ones)
size_t cuda_act_elems(const char* op, size_t bytes);
// n elements between the host's fp32 and the device's bf16 (data: a bf16 view's p)
void cuda_act_upload(Backend* be, void* data, const float* host_src, size_t n);
void cuda_act_download(Backend* be, float* host_dst, const void* data, size_t n);
// fp32 copies (packed, rows x cols) of what a view holds (row stride ld), and back: for ops with
// fp32 kernels only, and copies between the two types. widen: dst = src; narrow: dst = src rounded.
void cuda_widen(Backend* be, float* dst, CudaView src, size_t rows, size_t cols, size_t ld);
void cuda_narrow(Backend* be, CudaView dst, const float* src, size_t rows, size_t cols, size_t ld);
// the op scatter_rows, whose buffers may be of either storage
void cuda_scatter_rows(Backend* be, float* dst, const float* src, const int* rows, int N, int C);

// ----------------------------------------------------------------------------
// ops by file (signatures as in struct Backend)

// ops_cuda.cu: dst (rows, cols) packed bf16 = the block src (rows, cols), row stride ld, of fp32
// (rounded) or bf16 (copied)
void cuda_to_bf16(Backend* be, __nv_bfloat16* dst, const float* src, int rows, int cols, int ld);
void cuda_to_bf16(Backend* be, __nv_bfloat16* dst, const __nv_bfloat16* src, int rows, int cols, int ld);

// ops_cuda_kernels.cu
void cuda_add_bias(Backend* be, float* y, const float* b, int N, int C);
void cuda_bias_bwd(Backend* be, float* db, const float* dy, int N, int C);
double cuda_sum_squares(Backend* be, const float* x, size_t n);
void cuda_mask_rows(Backend* be, float* x, const int* lengths, int B, int T, int C);
void cuda_rmsnorm_fwd(Backend* be, float* y, float* rstd, const float* x, const float* w, int N, int C, float eps);
void cuda_add_rmsnorm_fwd(Backend* be, float* y, float* rstd, float* res, const float* x, const float* w, int N, int C,
                          float eps);
void cuda_rmsnorm_bwd(Backend* be, float* dx, float* dw, const float* dy, const float* x, const float* w,
                      const float* rstd, int N, int C);
void cuda_rope_fwd(Backend* be, float* x, const int* pos, const float* cos, const float* sin, int N, int nh, int hd);
void cuda_rope_bwd(Backend* be, float* dx, const int* pos, const float* cos, const float* sin, int N, int nh, int hd);
void cuda_swiglu_fwd(Backend* be, float* h, const float* gate, const float* up, size_t n);
void cuda_swiglu_bwd(Backend* be, float* dgate, float* dup, const float* dh, const float* gate, const float* up,
                     size_t n);
void cuda_embedding_fwd(Backend* be, float* y, const int* tokens, const float* table, int N, int D);
void cuda_embedding_bwd(Backend* be, float* dtable, const float* dy, const int* tokens, int N, int D, int V);

// ops_cuda_loss.cu
void cuda_softmax(Backend* be, float* y, const float* z, int N, int V);
void cuda_log_softmax(Backend* be, float* y, const float* z, int N, int V);
double cuda_cross_entropy(Backend* be, const float* z, const int* targets, const float* w, int N, int V,
                          float* losses, float* dz, LossDzMode mode);
double cuda_kl_full(Backend* be, const float* z, const float* teacher_lp, const float* w, int N, int V, int reverse,
                    float* losses, float* dz, LossDzMode mode);
double cuda_kl_topk(Backend* be, const float* z, const int* ids, const float* teacher_lp, const float* teacher_tail,
                    const float* w, int N, int V, int K, int reverse, float* losses, float* dz, LossDzMode mode);
double cuda_kl_sampled(Backend* be, const float* z, const int* ids, const float* teacher_lp, const float* old_lp,
                       const float* w, int N, int V, float* losses, float* dz, LossDzMode mode);
void cuda_entropy(Backend* be, const float* z, const float* w, int N, int V, double* entropy, int* argmax);
double cuda_jsd_topk(Backend* be, const float* z, const int* ids, const float* lp, const float* tail, const float* w,
                     int N, int V, int K, double beta, float* lp_s, float* tail_s);
double cuda_jsd_full(Backend* be, const float* z, const float* lp, const float* w, int N, int V, double beta,
                     float* lp_s);
void cuda_sampled_lp(Backend* be, float* lp_y, const float* z, const int* y, const int* ids, const float* lp,
                     const float* tail, const float* w, int N, int V, int K);
void cuda_pick(Backend* be, float* out, const float* x, const int* idx, int N, int V);

// sample.cu
void cuda_sample_rows(Backend* be, const float* z, int N, int V, float temperature, const double* u, int K, int* ids,
                      float* lp, int* topk_ids, float* topk_lp, float* tail);

// fixed_point.cu
int cuda_fp_accumulate(Backend* be, int64_t* acc, const float* g, size_t n, int k, double limit, double* max_abs);
void cuda_fp_to_float(Backend* be, float* g, const int64_t* acc, size_t n, int k);
void cuda_sum_squares_blocks(Backend* be, double* sums, const float* x, size_t n, size_t block);

// attention.cu
void cuda_attention_fwd(Backend* be, float* out, float* lse, const float* q, int ldq, const float* k, const float* v,
                        int ldkv, const int* q_lens, const int* kv_lens, int B, int Tq, int Tk, int H, int KV, int hd,
                        void* work);
void cuda_attention_bwd(Backend* be, float* dq, float* dk, float* dv, const float* dout, const float* out,
                        const float* lse, const float* q, int ldq, const float* k, const float* v, int ldkv,
                        const int* q_lens, const int* kv_lens, int B, int Tq, int Tk, int H, int KV, int hd,
                        void* work);
size_t cuda_attention_work_bytes(Backend* be, int Tk);

// attention_mma.cu: the bf16 mode's tensor-core kernels (mma.sync, flash-attention style) for
// attention.cu's tiled shapes. Dv (B, H, Tq): rowsum(dO * O), 0 on padded rows. Inputs and
// outputs as views (fp32, or bf16 activation buffers: the outputs share one type); `work`:
// cuda_attention_mma_work_bytes (bwd 0 or 1) for the packed bf16 copies of the inputs that need
// one and the backward's dq accumulator.
typedef struct {
    CudaView q, k, v, dout; // dout.p NULL in the forward
} AttnIn;
int cuda_attention_mma_supported(int hd);
size_t cuda_attention_mma_work_bytes(const AttnArgs& a, int B, int bwd);
void cuda_attention_mma_fwd(Backend* be, CudaView out, float* lse, const AttnArgs& a, int B, const AttnIn& in,
                            void* work);
void cuda_attention_mma_bwd(Backend* be, CudaView dq, CudaView dk, CudaView dv, const float* lse, const float* Dv,
                            const AttnArgs& a, int B, const AttnIn& in, void* work);
