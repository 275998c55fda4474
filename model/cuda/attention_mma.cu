// CUDA causal grouped-query attention on bf16 tensor cores: the launches of the kernels of
// attention_mma_kernels.cuh (see there for what they compute and how), by head size, and the
// packed bf16 copies of their inputs.
#include "model/cuda/ops_cuda.cuh"

#include "model/cuda/mma_ptx.cuh"

#include "model/cuda/attention_mma_kernels.cuh"

// ----------------------------------------------------------------------------
// launches, by head size

template <typename Kernel> static void mma_opt_in(Kernel kernel, size_t bytes) {
    cudaCheck(cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, (int)bytes));
}

// the packed bf16 copies of q, k, v (and dout when given) in `work`
static AttnBf16 mma_copies(Backend* be, const AttnArgs& a, int B, const float* dout, void* work) {
    const size_t nq = (size_t)B * a.Tq * a.H * a.hd, nkv = (size_t)B * a.Tk * a.KV * a.hd;
    bf16* q = (bf16*)work;
    bf16* k = q + nq;
    bf16* v = k + nkv;
    bf16* d = v + nkv;
    cuda_to_bf16(be, q, a.q, B * a.Tq, a.H * a.hd, a.ldq);
    cuda_to_bf16(be, k, a.k, B * a.Tk, a.KV * a.hd, a.ldkv);
    cuda_to_bf16(be, v, a.v, B * a.Tk, a.KV * a.hd, a.ldkv);
    if (dout) cuda_to_bf16(be, d, dout, B * a.Tq, a.H * a.hd, a.H * a.hd);
    AttnBf16 p = {q, k, v, dout ? d : nullptr};
    return p;
}

// the forward's kernel for head size HD
template <int HD>
static void mma_fwd(Backend* be, float* out, float* lse, const AttnArgs& a, int B, const AttnBf16& p) {
    constexpr int BK = MmaTiles<HD>::fwd_keys, MT = MmaTiles<HD>::fwd_rows;
    const size_t smem = MmaKvTiles<HD, BK>::bytes;
    mma_opt_in(attn_mma_fwd_kernel<HD, BK, MT, 0>, smem);
    const dim3 grid((unsigned)cuda_cdiv((size_t)a.Tq, MMA_ROWS * MT), (unsigned)a.H, (unsigned)B);
    attn_mma_fwd_kernel<HD, BK, MT, 0><<<grid, MMA_THREADS, smem, cuda_stream(be)>>>(out, lse, a, p);
    cudaCheckLaunch();
}

// the backward's two kernels for head size HD
template <int HD>
static void mma_bwd(Backend* be, float* dq, float* dk, float* dv, const float* lse, const float* Dv, const AttnArgs& a,
                    int B, const AttnBf16& p) {
    typedef MmaTiles<HD> T;
    constexpr int BK = T::dq_keys, BQ = T::dkdv_queries, MB = T::bwd_blocks;
    const size_t smem_q = MmaKvTiles<HD, BK>::bytes;
    mma_opt_in(attn_mma_dq_kernel<HD, BK, MB>, smem_q);
    const dim3 grid_q((unsigned)cuda_cdiv((size_t)a.Tq, MMA_ROWS), (unsigned)a.H, (unsigned)B);
    attn_mma_dq_kernel<HD, BK, MB><<<grid_q, MMA_THREADS, smem_q, cuda_stream(be)>>>(dq, lse, Dv, a, p);
    cudaCheckLaunch();
    const size_t smem_kv = MmaDkvLayout<HD, BQ>::bytes;
    mma_opt_in(attn_mma_dkdv_kernel<HD, BQ, MB>, smem_kv);
    const dim3 grid_k((unsigned)cuda_cdiv((size_t)a.Tk, MMA_ROWS), (unsigned)a.KV, (unsigned)B);
    attn_mma_dkdv_kernel<HD, BQ, MB><<<grid_k, MMA_THREADS, smem_kv, cuda_stream(be)>>>(dk, dv, lse, Dv, a, p);
    cudaCheckLaunch();
}

int cuda_attention_mma_supported(int hd) { return hd == 32 || hd == 64 || hd == 128; }

size_t cuda_attention_mma_work_bytes(const AttnArgs& a, int B) {
    return sizeof(bf16) * 2 * ((size_t)B * a.Tq * a.H * a.hd + (size_t)B * a.Tk * a.KV * a.hd);
}

void cuda_attention_mma_fwd(Backend* be, float* out, float* lse, const AttnArgs& a, int B, void* work) {
    const AttnBf16 p = mma_copies(be, a, B, nullptr, work);
    switch (a.hd) {
    case 32: mma_fwd<32>(be, out, lse, a, B, p); break;
    case 64: mma_fwd<64>(be, out, lse, a, B, p); break;
    case 128: mma_fwd<128>(be, out, lse, a, B, p); break;
    default: fatal("cuda attention: the tensor-core path has no kernel for head size %d", a.hd);
    }
}

void cuda_attention_mma_bwd(Backend* be, float* dq, float* dk, float* dv, const float* dout, const float* lse,
                            const float* Dv, const AttnArgs& a, int B, void* work) {
    const AttnBf16 p = mma_copies(be, a, B, dout, work);
    switch (a.hd) {
    case 32: mma_bwd<32>(be, dq, dk, dv, lse, Dv, a, B, p); break;
    case 64: mma_bwd<64>(be, dq, dk, dv, lse, Dv, a, B, p); break;
    case 128: mma_bwd<128>(be, dq, dk, dv, lse, Dv, a, B, p); break;
    default: fatal("cuda attention: the tensor-core path has no kernel for head size %d", a.hd);
    }
}
