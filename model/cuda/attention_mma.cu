// CUDA causal grouped-query attention on bf16 tensor cores: the launches of the kernels of
// attention_mma_kernels.cuh (see there for what they compute and how), by head size, and the
// packed bf16 inputs (activation buffers as they are, other inputs copied).
#include "model/cuda/ops_cuda.cuh"

#include "model/cuda/mma_ptx.cuh"

#include "model/cuda/attention_mma_kernels.cuh"

// ----------------------------------------------------------------------------
// launches, by head size

template <typename Kernel> static void mma_opt_in(Kernel kernel, size_t bytes) {
    cudaCheck(cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, (int)bytes));
}

// A packed bf16 input (rows, cols): a bf16 activation buffer that is packed already (row stride
// cols) and 16-byte aligned (the kernels' cp.async reads) as it is, anything else copied (and
// rounded) to `work`.
static const bf16* mma_input(Backend* be, CudaView v, int rows, int cols, int ld, bf16* work) {
    if (v.bf16 && ld == cols && (uintptr_t)v.p % 16 == 0) return (const bf16*)v.p;
    if (v.bf16) cuda_to_bf16(be, work, (const bf16*)v.p, rows, cols, ld);
    else cuda_to_bf16(be, work, (const float*)v.p, rows, cols, ld);
    return work;
}

// the packed bf16 q, k, v (and dout when given), copied to `work` where needed
static AttnBf16 mma_inputs(Backend* be, const AttnArgs& a, int B, const AttnIn& in, void* work) {
    const size_t nq = (size_t)B * a.Tq * a.H * a.hd, nkv = (size_t)B * a.Tk * a.KV * a.hd;
    bf16* q = (bf16*)work;
    bf16* k = q + nq;
    bf16* v = k + nkv;
    bf16* d = v + nkv;
    const int qc = a.H * a.hd, kc = a.KV * a.hd;
    AttnBf16 p = {mma_input(be, in.q, B * a.Tq, qc, a.ldq, q), mma_input(be, in.k, B * a.Tk, kc, a.ldkv, k),
                  mma_input(be, in.v, B * a.Tk, kc, a.ldkv, v),
                  in.dout.p ? mma_input(be, in.dout, B * a.Tq, qc, qc, d) : nullptr};
    return p;
}

// the forward's kernel for head size HD, output of storage type TO
template <int HD, typename TO>
static void mma_fwd(Backend* be, TO* out, float* lse, const AttnArgs& a, int B, const AttnBf16& p) {
    constexpr int BK = MmaTiles<HD>::fwd_keys, MT = MmaTiles<HD>::fwd_rows;
    const size_t smem = MmaKvTiles<HD, BK>::bytes;
    mma_opt_in(attn_mma_fwd_kernel<HD, BK, MT, 0, TO>, smem);
    const dim3 grid((unsigned)cuda_cdiv((size_t)a.Tq, MMA_ROWS * MT), (unsigned)a.H, (unsigned)B);
    attn_mma_fwd_kernel<HD, BK, MT, 0, TO><<<grid, MMA_THREADS, smem, cuda_stream(be)>>>(out, lse, a, p);
    cudaCheckLaunch();
}

// the backward's kernel for head size HD, outputs of storage type TO; dq's accumulator at `acc`
template <int HD, typename TO>
static void mma_bwd(Backend* be, TO* dq, TO* dk, TO* dv, const float* lse, const float* Dv, const AttnArgs& a, int B,
                    const AttnBf16& p, float* acc) {
    typedef MmaTiles<HD> T;
    constexpr int BQ = T::bwd_queries, MB = T::bwd_blocks;
    const int tiles = mma_dq_tiles(a, B, BQ);
    int* turn = (int*)cuda_zeroed(be, sizeof(int) * ((size_t)tiles + 1));
    const MmaDqSync sync = {acc, turn, turn + tiles};
    const size_t smem = MmaDkvLayout<HD, BQ>::bytes;
    mma_opt_in(attn_mma_bwd_kernel<HD, BQ, MB, TO>, smem);
    const unsigned blocks = (unsigned)(cuda_cdiv((size_t)a.Tk, MMA_ROWS) * a.KV * B);
    attn_mma_bwd_kernel<HD, BQ, MB, TO><<<blocks, MMA_THREADS, smem, cuda_stream(be)>>>(dq, dk, dv, lse, Dv, a, p,
                                                                                        sync);
    cudaCheckLaunch();
}

int cuda_attention_mma_supported(int hd) { return hd == 32 || hd == 64 || hd == 128; }

// the packed bf16 copies, then (backward) dq's fp32 accumulator
static size_t mma_copies_bytes(const AttnArgs& a, int B) {
    const size_t n = sizeof(bf16) * 2 * ((size_t)B * a.Tq * a.H * a.hd + (size_t)B * a.Tk * a.KV * a.hd);
    return cuda_cdiv(n, 256) * 256;
}

// the backward's query tile for head size hd
static int mma_bwd_queries(int hd) {
    return hd == 32 ? MmaTiles<32>::bwd_queries : hd == 64 ? MmaTiles<64>::bwd_queries : MmaTiles<128>::bwd_queries;
}

size_t cuda_attention_mma_work_bytes(const AttnArgs& a, int B, int bwd) {
    const int BQ = mma_bwd_queries(a.hd);
    return mma_copies_bytes(a, B) + (bwd ? sizeof(float) * mma_dq_tiles(a, B, BQ) * BQ * a.hd : 0);
}

[[noreturn]] static void mma_no_kernel(int hd) {
    fatal("cuda attention: the tensor-core path has no kernel for head size %d", hd);
}

void cuda_attention_mma_fwd(Backend* be, CudaView out, float* lse, const AttnArgs& a, int B, const AttnIn& in,
                            void* work) {
    const AttnBf16 p = mma_inputs(be, a, B, in, work);
    cuda_dispatch(out.bf16, [&](auto tag) {
        typedef CUDA_TAG_T(tag) TO;
        TO* o = (TO*)out.p;
        switch (a.hd) {
        case 32: mma_fwd<32>(be, o, lse, a, B, p); break;
        case 64: mma_fwd<64>(be, o, lse, a, B, p); break;
        case 128: mma_fwd<128>(be, o, lse, a, B, p); break;
        default: mma_no_kernel(a.hd);
        }
    });
}

void cuda_attention_mma_bwd(Backend* be, CudaView dq, CudaView dk, CudaView dv, const float* lse, const float* Dv,
                            const AttnArgs& a, int B, const AttnIn& in, void* work) {
    const AttnBf16 p = mma_inputs(be, a, B, in, work);
    float* acc = (float*)((char*)work + mma_copies_bytes(a, B));
    const CudaView outs[3] = {dq, dk, dv};
    cuda_dispatch(cuda_views_bf16("attention_bwd (dq, dk, dv)", outs, 3), [&](auto tag) {
        typedef CUDA_TAG_T(tag) TO;
        TO *q = (TO*)dq.p, *k = (TO*)dk.p, *v = (TO*)dv.p;
        switch (a.hd) {
        case 32: mma_bwd<32>(be, q, k, v, lse, Dv, a, B, p, acc); break;
        case 64: mma_bwd<64>(be, q, k, v, lse, Dv, a, B, p, acc); break;
        case 128: mma_bwd<128>(be, q, k, v, lse, Dv, a, B, p, acc); break;
        default: mma_no_kernel(a.hd);
        }
    });
}
