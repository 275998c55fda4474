// CUDA causal grouped-query attention (see ops.h for the layouts): the launches of the fp32
// kernels of attention_kernels.cuh (see there for how they work), and the dispatch to the bf16
// tensor-core kernels of attention_mma.cu: in the backend's bf16 mode the tiled (training) shapes
// of head size 32, 64 or 128 run there, forward and backward; f32 mode, other head sizes and the
// decoding shapes run the fp32 kernels.
#include "model/cuda/ops_cuda.cuh"

#include "model/cuda/attention_kernels.cuh"

#define ATTN_DIRECT_ROWS 16 // query rows per kv head up to which the decoding path runs (as the CPU)

// ----------------------------------------------------------------------------
// launches, by head size

size_t cuda_attention_work_bytes(Backend* be, int Tk) {
    (void)be;
    (void)Tk;
    return 256; // the kernels keep their temporaries in the backend's scratch
}

template <typename Kernel> static void smem_opt_in(Kernel kernel, size_t bytes) {
    cudaCheck(cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, (int)bytes));
}

template <int HD> static void fwd_tiled(Backend* be, float* out, float* lse, const AttnArgs& a, int B) {
    typedef AttnTiles<HD> T;
    smem_opt_in(attn_fwd_kernel<HD, T::fwd_q, T::fwd_k>, T::fwd_smem);
    const dim3 grid((unsigned)cuda_cdiv((size_t)a.Tq, T::fwd_q), (unsigned)a.H, (unsigned)B);
    attn_fwd_kernel<HD, T::fwd_q, T::fwd_k><<<grid, ATTN_THREADS, T::fwd_smem, cuda_stream(be)>>>(out, lse, a);
    cudaCheckLaunch();
}

// the decoding kernels on q, k, v of one storage type T (fp32, or bf16 activations: the decoder's
// KV cache), the output of type TO
template <int HD, typename T, typename TO>
static void fwd_decode(Backend* be, TO* out, float* lse, const AttnArgs& a, int B, const T* q, const T* k,
                       const T* v) {
    const int nchunks = (int)cuda_cdiv((size_t)a.Tk, DEC_KEYS);
    const size_t rows = (size_t)B * a.Tq;
    float* part = (float*)cuda_scratch(be, rows * a.H * nchunks * (HD + 2) * sizeof(float));
    attn_dec_kernel<HD><<<dim3((unsigned)rows, (unsigned)a.H, (unsigned)nchunks), DEC_WARPS * 32,
                          sizeof(DecShared<HD>), cuda_stream(be)>>>(part, a, q, k, v);
    cudaCheckLaunch();
    attn_dec_combine_kernel<HD><<<dim3((unsigned)rows, (unsigned)a.H), 128, 0, cuda_stream(be)>>>(out, lse, part,
                                                                                                 nchunks, a);
    cudaCheckLaunch();
}

template <int HD>
static void bwd_tiled(Backend* be, float* dq, float* dk, float* dv, const float* dout, const float* lse,
                      const float* Dv, const AttnArgs& a, int B) {
    typedef AttnTiles<HD> T;
    smem_opt_in(attn_bwd_dq_kernel<HD, T::dq_q, T::dq_k>, T::dq_smem);
    const dim3 grid_q((unsigned)cuda_cdiv((size_t)a.Tq, T::dq_q), (unsigned)a.H, (unsigned)B);
    attn_bwd_dq_kernel<HD, T::dq_q, T::dq_k><<<grid_q, ATTN_THREADS, T::dq_smem, cuda_stream(be)>>>(dq, dout, lse,
                                                                                                    Dv, a);
    cudaCheckLaunch();
    smem_opt_in(attn_bwd_dkdv_kernel<HD, T::dkdv_k, T::dkdv_q>, T::dkdv_smem);
    const dim3 grid_k((unsigned)cuda_cdiv((size_t)a.Tk, T::dkdv_k), (unsigned)a.KV, (unsigned)B);
    attn_bwd_dkdv_kernel<HD, T::dkdv_k, T::dkdv_q><<<grid_k, ATTN_THREADS, T::dkdv_smem, cuda_stream(be)>>>(
        dk, dv, dout, lse, Dv, a);
    cudaCheckLaunch();
}

// the bf16 tensor-core path: bf16 mode, a tiled shape (more query rows per kv head than the
// decoding path takes; the backward follows its forward) and a head size it is built for
static int attn_use_mma(Backend* be, const AttnArgs& a) {
    return cuda_impl(be)->bf16 && a.Tq * (a.H / a.KV) > ATTN_DIRECT_ROWS && cuda_attention_mma_supported(a.hd);
}

static AttnArgs attn_args(const float* q, int ldq, const float* k, const float* v, int ldkv, const int* q_lens,
                          const int* kv_lens, int Tq, int Tk, int H, int KV, int hd) {
    if (hd <= 0 || hd > 256 || H <= 0 || KV <= 0 || H % KV != 0) {
        fatal("cuda attention: unsupported shape: head size %d (must be 1..256), %d query heads on %d kv heads "
              "(must divide)", hd, H, KV);
    }
    AttnArgs a;
    a.q = q, a.k = k, a.v = v, a.q_lens = q_lens, a.kv_lens = kv_lens;
    a.ldq = ldq, a.ldkv = ldkv, a.Tq = Tq, a.Tk = Tk, a.H = H, a.KV = KV, a.hd = hd;
    a.scale = 1.0f / sqrtf((float)hd);
    return a;
}

// ----------------------------------------------------------------------------
// the ops. Activation buffers (bf16) go straight into the tensor-core kernels and the decoding
// kernels; the fp32 tiled kernels (other head sizes, unaligned outputs) run on fp32 copies of
// them in the backend's stage region.

// the tensor-core kernels store bf16 outputs two at a time: 4-byte aligned rows
static int pairs_aligned(const CudaView& v, int ld) { return !v.bf16 || ((uintptr_t)v.p % 4 == 0 && ld % 2 == 0); }

static int any_bf16(const CudaView* v, int n) {
    for (int i = 0; i < n; i++) {
        if (v[i].bf16) return 1;
    }
    return 0;
}

void cuda_attention_fwd(Backend* be, float* out, float* lse, const float* q, int ldq, const float* k, const float* v,
                        int ldkv, const int* q_lens, const int* kv_lens, int B, int Tq, int Tk, int H, int KV, int hd,
                        void* work) {
    if (B <= 0 || Tq <= 0) return;
    const AttnArgs a = attn_args(q, ldq, k, v, ldkv, q_lens, kv_lens, Tq, Tk, H, KV, hd);
    const CudaView vw[4] = {cuda_view(be, out), cuda_view(be, q), cuda_view(be, k), cuda_view(be, v)};
    if (attn_use_mma(be, a) && pairs_aligned(vw[0], H * hd)) {
        const AttnIn in = {vw[1], vw[2], vw[3], {NULL, 0}};
        cuda_attention_mma_fwd(be, vw[0], lse, a, B, in, cuda_scratch(be, cuda_attention_mma_work_bytes(a, B, 0)));
    } else if (Tq * (H / KV) <= ATTN_DIRECT_ROWS && vw[1].bf16 == vw[2].bf16 && vw[2].bf16 == vw[3].bf16) {
        cuda_dispatch2(vw[1].bf16, vw[0].bf16, [&](auto ti, auto to) {
            typedef CUDA_TAG_T(ti) T;
            typedef CUDA_TAG_T(to) TO;
            TO* o = (TO*)vw[0].p;
            const T *qp = (const T*)vw[1].p, *kp = (const T*)vw[2].p, *vp = (const T*)vw[3].p;
            if (hd <= 64) fwd_decode<64>(be, o, lse, a, B, qp, kp, vp);
            else if (hd <= 128) fwd_decode<128>(be, o, lse, a, B, qp, kp, vp);
            else fwd_decode<256>(be, o, lse, a, B, qp, kp, vp);
        });
    } else if (any_bf16(vw, 4)) {
        const int rq = B * Tq, rk = B * Tk, cq = H * hd, ck = KV * hd;
        float* sq = (float*)cuda_stage(be, sizeof(float) * (2 * (size_t)rq * cq + 2 * (size_t)rk * ck));
        float* sk = sq + (size_t)rq * cq;
        float* sv = sk + (size_t)rk * ck;
        float* so = sv + (size_t)rk * ck;
        cuda_widen(be, sq, vw[1], rq, cq, ldq);
        cuda_widen(be, sk, vw[2], rk, ck, ldkv);
        cuda_widen(be, sv, vw[3], rk, ck, ldkv);
        cuda_attention_fwd(be, so, lse, sq, cq, sk, sv, ck, q_lens, kv_lens, B, Tq, Tk, H, KV, hd, work);
        cuda_narrow(be, vw[0], so, rq, cq, cq);
    } else {
        if (hd <= 64) fwd_tiled<64>(be, out, lse, a, B);
        else if (hd <= 128) fwd_tiled<128>(be, out, lse, a, B);
        else fwd_tiled<256>(be, out, lse, a, B);
    }
}

// the fp32 kernels on fp32 copies of views some of which hold bf16: vw = dq, dk, dv, dout, out, q, k, v
static void bwd_staged(Backend* be, const CudaView* vw, const float* lse, int ldq, int ldkv, const int* q_lens,
                       const int* kv_lens, int B, int Tq, int Tk, int H, int KV, int hd, void* work) {
    const size_t rq = (size_t)B * Tq, rk = (size_t)B * Tk, cq = (size_t)H * hd, ck = (size_t)KV * hd;
    float* st = (float*)cuda_stage(be, sizeof(float) * (4 * rq * cq + 4 * rk * ck));
    float *dq = st, *dout = dq + rq * cq, *out = dout + rq * cq, *q = out + rq * cq;
    float *dk = q + rq * cq, *dv = dk + rk * ck, *k = dv + rk * ck, *v = k + rk * ck;
    cuda_widen(be, dout, vw[3], rq, cq, cq);
    cuda_widen(be, out, vw[4], rq, cq, cq);
    cuda_widen(be, q, vw[5], rq, cq, ldq);
    cuda_widen(be, k, vw[6], rk, ck, ldkv);
    cuda_widen(be, v, vw[7], rk, ck, ldkv);
    cuda_attention_bwd(be, dq, dk, dv, dout, out, lse, q, (int)cq, k, v, (int)ck, q_lens, kv_lens, B, Tq, Tk, H, KV,
                       hd, work);
    cuda_narrow(be, vw[0], dq, rq, cq, cq);
    cuda_narrow(be, vw[1], dk, rk, ck, ldkv);
    cuda_narrow(be, vw[2], dv, rk, ck, ldkv);
}

void cuda_attention_bwd(Backend* be, float* dq, float* dk, float* dv, const float* dout, const float* out,
                        const float* lse, const float* q, int ldq, const float* k, const float* v, int ldkv,
                        const int* q_lens, const int* kv_lens, int B, int Tq, int Tk, int H, int KV, int hd,
                        void* work) {
    if (B <= 0 || Tq <= 0) return;
    const AttnArgs a = attn_args(q, ldq, k, v, ldkv, q_lens, kv_lens, Tq, Tk, H, KV, hd);
    const CudaView vw[8] = {cuda_view(be, dq),  cuda_view(be, dk),   cuda_view(be, dv), cuda_view(be, dout),
                            cuda_view(be, out), cuda_view(be, q),    cuda_view(be, k),  cuda_view(be, v)};
    const int mma = attn_use_mma(be, a) && pairs_aligned(vw[0], H * hd) && pairs_aligned(vw[1], ldkv) &&
                    pairs_aligned(vw[2], ldkv);
    if (!mma && any_bf16(vw, 8)) {
        bwd_staged(be, vw, lse, ldq, ldkv, q_lens, kv_lens, B, Tq, Tk, H, KV, hd, work);
        return;
    }
    const size_t rows = (size_t)B * Tq * H, dv_bytes = cuda_cdiv(rows * sizeof(float), 256) * 256;
    // Dv, then the tensor-core kernel's bf16 copies of q, k, v, dout and its dq accumulator
    char* scratch = (char*)cuda_scratch(be, dv_bytes + (mma ? cuda_attention_mma_work_bytes(a, B, 1) : 0));
    float* Dv = (float*)scratch;
    cuda_dispatch2(vw[3].bf16, vw[4].bf16, [&](auto td, auto to) {
        attn_bwd_dot_kernel<<<(unsigned)cuda_cdiv(rows, 8), 256, 0, cuda_stream(be)>>>(
            Dv, (const CUDA_TAG_T(td)*)vw[3].p, (const CUDA_TAG_T(to)*)vw[4].p, q_lens, B, Tq, H, hd);
    });
    cudaCheckLaunch();
    if (mma) {
        const AttnIn in = {vw[5], vw[6], vw[7], vw[3]};
        cuda_attention_mma_bwd(be, vw[0], vw[1], vw[2], lse, Dv, a, B, in, scratch + dv_bytes);
    } else if (hd <= 64) bwd_tiled<64>(be, dq, dk, dv, dout, lse, Dv, a, B);
    else if (hd <= 128) bwd_tiled<128>(be, dq, dk, dv, dout, lse, Dv, a, B);
    else bwd_tiled<256>(be, dq, dk, dv, dout, lse, Dv, a, B);
}
