// The CUDA attention kernels (model/cuda/attention_mma_kernels.cuh: bf16 tensor cores;
// attention_kernels.cuh: fp32 tiled and decoding; the same source the GPU runs) executed on the
// host by tests/emu/cuda_emu.h and compared with the CPU backend, which
// tests/unit/test_ops_attention.c checks against PyTorch. Label unit: it needs no GPU, so every
// CI run checks the kernels' tiling, masking, fragment layouts and shared-memory use; the GPU
// test (tests/gpu/test_ops_gpu.c) checks them on hardware, with timing and determinism.
// Tolerances are the GPU test's: normalised error max |x - cpu| / max |cpu| at most 1e-2 for the
// tensor cores' forward, 2e-2 for their backward (inputs rounded to bf16, fp32 sums), 1e-4 for
// the fp32 kernels (float sums in another order).
// Padded rows must be exactly 0, and every output element is written (outputs start as NaN).
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

#include <vector>

#include "tests/emu/cuda_emu.h"

#include "model/cuda/attention_kernels.cuh"
#include "model/cuda/attention_mma_kernels.cuh"

extern "C" {
#include "model/ops.h"
}

#define TOL_MMA_FWD 1e-2
#define TOL_MMA_BWD 2e-2
#define TOL_F32 1e-4

struct Shape {
    int B, Tq, Tk, H, KV, hd;
    int pad_q, pad_kv; // ldq = H hd + pad_q, ldkv = KV hd + pad_kv
    std::vector<int> q_lens, kv_lens;
};

static int failures = 0;

// ----------------------------------------------------------------------------
// data

static std::vector<float> randn(size_t n, uint64_t seed) {
    std::vector<float> x(n);
    uint64_t s = seed * 0x9E3779B97F4A7C15ull + 1;
    auto next = [&] {
        s ^= s << 13, s ^= s >> 7, s ^= s << 17;
        return ((s >> 11) + 0.5) * (1.0 / 9007199254740992.0);
    };
    for (size_t i = 0; i < n; i++) x[i] = (float)(sqrt(-2.0 * log(next())) * cos(6.283185307179586 * next()));
    return x;
}

// packed bf16 rows (rows, cols) of fp32 rows of stride ld, as cuda_to_bf16
static std::vector<bf16> packed_bf16(const std::vector<float>& x, int rows, int cols, int ld) {
    std::vector<bf16> p((size_t)rows * cols);
    for (int r = 0; r < rows; r++)
        for (int c = 0; c < cols; c++) p[(size_t)r * cols + c].bits = emu_bf16_bits(x[(size_t)r * ld + c]);
    return p;
}

// ----------------------------------------------------------------------------
// comparison

// max |x - ref| / max |ref| over rows (rows, width) of stride ld; rows where real(row) is false
// must be exactly 0 in x
template <class Real>
static void compare(const char* what, const char* name, const float* x, const float* ref, size_t rows, int width,
                    int ld, double tol, Real real) {
    double err = 0.0, scale = 1e-30;
    size_t bad_pad = 0;
    for (size_t r = 0; r < rows; r++) {
        for (int c = 0; c < width; c++) {
            const float xv = x[r * ld + c], rv = ref[r * ld + c];
            if (!real(r)) {
                bad_pad += !(xv == 0.0f && !signbit(xv));
                continue;
            }
            scale = fmax(scale, fabs(rv));
            err = isfinite(xv) ? fmax(err, fabs((double)xv - rv)) : INFINITY;
        }
    }
    err /= scale;
    const bool ok = err <= tol && bad_pad == 0;
    printf("%s %-4s %s: error %.2e (tolerance %.0e)%s\n", ok ? "ok  " : "FAIL", name, what, err, tol,
           bad_pad ? ", padded entries not +0" : "");
    failures += !ok;
}

// ----------------------------------------------------------------------------
// the kernels as attention.cu and attention_mma.cu launch them

static unsigned cdiv(int a, int b) { return (unsigned)((a + b - 1) / b); }

// Dv (B, H, Tq) = rowsum(dO * O), 0 on padded rows
static void emu_bwd_dot(float* Dv, const float* dout, const float* out, const int* q_lens, int B, int Tq, int H,
                        int hd) {
    const int rows = B * Tq * H;
    emu_launch({cdiv(rows, 8), 1, 1}, 256, 0, [&] { attn_bwd_dot_kernel(Dv, dout, out, q_lens, B, Tq, H, hd); });
}

// MT: the forward's row blocks per warp (MmaTiles<HD>::fwd_rows as launched; the other count too)
template <int HD, int MT>
static void emu_mma_fwd(float* out, float* lse, const AttnArgs& a, int B, const AttnBf16& p) {
    constexpr int BK = MmaTiles<HD>::fwd_keys;
    emu_launch({cdiv(a.Tq, MMA_ROWS * MT), (unsigned)a.H, (unsigned)B}, MMA_THREADS, MmaKvTiles<HD, BK>::bytes,
               [&] { attn_mma_fwd_kernel<HD, BK, MT, 0>(out, lse, a, p); });
}

// the backward; its dq accumulator starts as NaN (the first turn of each tile must store, not
// add) and its counters must be back at 0 after the launch
template <int HD>
static void emu_mma_bwd(float* dq, float* dk, float* dv, const float* lse, const float* Dv, const AttnArgs& a, int B,
                        const AttnBf16& p) {
    typedef MmaTiles<HD> T;
    constexpr int BQ = T::bwd_queries, MB = T::bwd_blocks;
    const int tiles = mma_dq_tiles(a, B, BQ);
    std::vector<float> acc((size_t)tiles * BQ * HD, NAN);
    std::vector<int> turn((size_t)tiles + 1, 0);
    const MmaDqSync sync = {acc.data(), turn.data(), turn.data() + tiles};
    emu_launch({cdiv(a.Tk, MMA_ROWS) * a.KV * B, 1, 1}, MMA_THREADS, MmaDkvLayout<HD, BQ>::bytes,
               [&] { attn_mma_bwd_kernel<HD, BQ, MB>(dq, dk, dv, lse, Dv, a, p, sync); });
    for (int i = 0; i <= tiles; i++) {
        if (turn[i] != 0) {
            printf("FAIL the backward left %s %d at %d, not 0\n", i < tiles ? "the turn of dq tile" : "the ticket",
                   i < tiles ? i : 0, turn[i]);
            failures++;
            return;
        }
    }
}

// the forward as launched and with the other row-block count (o2, l2), and the backward
template <int HD>
static void emu_mma_all(float* o, float* l, float* o2, float* l2, float* dq, float* dk, float* dv, const float* lse,
                        const float* Dv, const AttnArgs& a, int B, const AttnBf16& p) {
    constexpr int MT = MmaTiles<HD>::fwd_rows;
    emu_mma_fwd<HD, MT>(o, l, a, B, p);
    emu_mma_fwd<HD, 3 - MT>(o2, l2, a, B, p);
    emu_mma_bwd<HD>(dq, dk, dv, lse, Dv, a, B, p);
}

template <int HD> static void emu_tiled_fwd(float* out, float* lse, const AttnArgs& a, int B) {
    typedef AttnTiles<HD> T;
    emu_launch({cdiv(a.Tq, T::fwd_q), (unsigned)a.H, (unsigned)B}, ATTN_THREADS, T::fwd_smem,
               [&] { attn_fwd_kernel<HD, T::fwd_q, T::fwd_k>(out, lse, a); });
}

template <int HD>
static void emu_tiled_bwd(float* dq, float* dk, float* dv, const float* dout, const float* lse, const float* Dv,
                          const AttnArgs& a, int B) {
    typedef AttnTiles<HD> T;
    emu_launch({cdiv(a.Tq, T::dq_q), (unsigned)a.H, (unsigned)B}, ATTN_THREADS, T::dq_smem,
               [&] { attn_bwd_dq_kernel<HD, T::dq_q, T::dq_k>(dq, dout, lse, Dv, a); });
    emu_launch({cdiv(a.Tk, T::dkdv_k), (unsigned)a.KV, (unsigned)B}, ATTN_THREADS, T::dkdv_smem,
               [&] { attn_bwd_dkdv_kernel<HD, T::dkdv_k, T::dkdv_q>(dk, dv, dout, lse, Dv, a); });
}

template <int HD> static void emu_decode_fwd(float* out, float* lse, const AttnArgs& a, int B) {
    const unsigned nchunks = cdiv(a.Tk, DEC_KEYS), rows = (unsigned)(B * a.Tq);
    std::vector<float> part((size_t)rows * a.H * nchunks * (HD + 2), NAN);
    emu_launch({rows, (unsigned)a.H, nchunks}, DEC_WARPS * 32, sizeof(DecShared<HD>),
               [&] { attn_dec_kernel<HD>(part.data(), a, a.q, a.k, a.v); });
    emu_launch({rows, (unsigned)a.H, 1}, 128, 0,
               [&] { attn_dec_combine_kernel<HD>(out, lse, part.data(), (int)nchunks, a); });
}

// ----------------------------------------------------------------------------
// one shape against the CPU backend

enum Path { PATH_MMA, PATH_TILED, PATH_DECODE };
static const char* path_name[] = {"bf16 mma", "fp32 tiled", "fp32 decode"};

static float* dev_upload(Backend* be, const void* x, size_t bytes) {
    float* d = (float*)be->alloc(be, bytes);
    be->upload(be, d, x, bytes);
    return d;
}

// The forward (and, but for decoding, the backward from the CPU's out and lse) of one path.
static void check_shape(Backend* cpu, const Shape& s, Path path, uint64_t seed) {
    char what[160];
    snprintf(what, sizeof what, "%s B=%d Tq=%d Tk=%d H=%d KV=%d hd=%d%s", path_name[path], s.B, s.Tq, s.Tk, s.H, s.KV,
             s.hd, s.pad_q || s.pad_kv ? " strided" : "");
    const int ldq = s.H * s.hd + s.pad_q, ldkv = s.KV * s.hd + s.pad_kv, width = s.H * s.hd;
    const size_t nq = (size_t)s.B * s.Tq * ldq, nkv = (size_t)s.B * s.Tk * ldkv, nout = (size_t)s.B * s.Tq * width;
    const size_t nlse = (size_t)s.B * s.H * s.Tq;
    std::vector<float> q = randn(nq, seed), k = randn(nkv, seed + 1), v = randn(nkv, seed + 2);
    std::vector<float> dout = randn(nout, seed + 3);

    // the CPU backend: forward, then backward from its own out and lse
    std::vector<float> out(nout), lse(nlse), dq(nout), dk(nkv), dv(nkv);
    float *cq = dev_upload(cpu, q.data(), nq * 4), *ck = dev_upload(cpu, k.data(), nkv * 4);
    float *cv = dev_upload(cpu, v.data(), nkv * 4), *cd = dev_upload(cpu, dout.data(), nout * 4);
    int* cql = (int*)dev_upload(cpu, s.q_lens.data(), s.B * sizeof(int));
    int* ckl = (int*)dev_upload(cpu, s.kv_lens.data(), s.B * sizeof(int));
    float *co = (float*)cpu->alloc(cpu, nout * 4), *cl = (float*)cpu->alloc(cpu, nlse * 4);
    float *cdq = (float*)cpu->alloc(cpu, nout * 4), *cdk = (float*)cpu->alloc(cpu, nkv * 4);
    float* cdv = (float*)cpu->alloc(cpu, nkv * 4);
    void* work = cpu->alloc(cpu, cpu->attention_work_bytes(cpu, s.Tk));
    cpu->attention_fwd(cpu, co, cl, cq, ldq, ck, cv, ldkv, cql, ckl, s.B, s.Tq, s.Tk, s.H, s.KV, s.hd, work);
    cpu->attention_bwd(cpu, cdq, cdk, cdv, cd, co, cl, cq, ldq, ck, cv, ldkv, cql, ckl, s.B, s.Tq, s.Tk, s.H, s.KV,
                       s.hd, work);
    cpu->download(cpu, out.data(), co, nout * 4);
    cpu->download(cpu, lse.data(), cl, nlse * 4);
    cpu->download(cpu, dq.data(), cdq, nout * 4);
    cpu->download(cpu, dk.data(), cdk, nkv * 4);
    cpu->download(cpu, dv.data(), cdv, nkv * 4);
    void* bufs[] = {cq, ck, cv, cd, cql, ckl, co, cl, cdq, cdk, cdv, work};
    for (void* b : bufs) cpu->free(cpu, b);

    AttnArgs a;
    a.q = q.data(), a.k = k.data(), a.v = v.data(), a.q_lens = s.q_lens.data(), a.kv_lens = s.kv_lens.data();
    a.ldq = ldq, a.ldkv = ldkv, a.Tq = s.Tq, a.Tk = s.Tk, a.H = s.H, a.KV = s.KV, a.hd = s.hd;
    a.scale = 1.0f / sqrtf((float)s.hd);
    std::vector<float> e_out(nout, NAN), e_lse(nlse, NAN), e_dq(nout, NAN), e_dk(nkv, NAN), e_dv(nkv, NAN);
    std::vector<float> Dv(nlse, NAN), e_out2(nout, NAN), e_lse2(nlse, NAN);
    const bool bwd = path != PATH_DECODE;
    if (bwd) emu_bwd_dot(Dv.data(), dout.data(), out.data(), s.q_lens.data(), s.B, s.Tq, s.H, s.hd);
    const int bucket = s.hd <= 64 ? 64 : s.hd <= 128 ? 128 : 256;
    if (path == PATH_MMA) {
        // packed bf16 copies, as cuda_attention_mma_fwd/bwd give the kernels
        std::vector<bf16> q16 = packed_bf16(q, s.B * s.Tq, width, ldq);
        std::vector<bf16> k16 = packed_bf16(k, s.B * s.Tk, s.KV * s.hd, ldkv);
        std::vector<bf16> v16 = packed_bf16(v, s.B * s.Tk, s.KV * s.hd, ldkv);
        std::vector<bf16> d16 = packed_bf16(dout, s.B * s.Tq, width, width);
        const AttnBf16 p = {q16.data(), k16.data(), v16.data(), d16.data()};
        float *o = e_out.data(), *l = e_lse.data(), *gq = e_dq.data(), *gk = e_dk.data(), *gv = e_dv.data();
        float *o2 = e_out2.data(), *l2 = e_lse2.data();
        switch (s.hd) {
        case 32: emu_mma_all<32>(o, l, o2, l2, gq, gk, gv, lse.data(), Dv.data(), a, s.B, p); break;
        case 64: emu_mma_all<64>(o, l, o2, l2, gq, gk, gv, lse.data(), Dv.data(), a, s.B, p); break;
        case 128: emu_mma_all<128>(o, l, o2, l2, gq, gk, gv, lse.data(), Dv.data(), a, s.B, p); break;
        default: fprintf(stderr, "no tensor-core kernel for head size %d\n", s.hd), exit(1);
        }
    } else if (path == PATH_TILED) {
        float *o = e_out.data(), *l = e_lse.data(), *gq = e_dq.data(), *gk = e_dk.data(), *gv = e_dv.data();
        const float *d = dout.data(), *ls = lse.data(), *D = Dv.data();
        switch (bucket) {
        case 64: emu_tiled_fwd<64>(o, l, a, s.B), emu_tiled_bwd<64>(gq, gk, gv, d, ls, D, a, s.B); break;
        case 128: emu_tiled_fwd<128>(o, l, a, s.B), emu_tiled_bwd<128>(gq, gk, gv, d, ls, D, a, s.B); break;
        default: emu_tiled_fwd<256>(o, l, a, s.B), emu_tiled_bwd<256>(gq, gk, gv, d, ls, D, a, s.B); break;
        }
    } else {
        switch (bucket) {
        case 64: emu_decode_fwd<64>(e_out.data(), e_lse.data(), a, s.B); break;
        case 128: emu_decode_fwd<128>(e_out.data(), e_lse.data(), a, s.B); break;
        default: emu_decode_fwd<256>(e_out.data(), e_lse.data(), a, s.B); break;
        }
    }

    const double tol_fwd = path == PATH_MMA ? TOL_MMA_FWD : TOL_F32;
    const double tol_bwd = path == PATH_MMA ? TOL_MMA_BWD : TOL_F32;
    auto q_real = [&](size_t row) { return (int)(row % s.Tq) < s.q_lens[row / s.Tq]; };
    auto kv_real = [&](size_t row) { return (int)(row % s.Tk) < s.kv_lens[row / s.Tk]; };
    // lse of padded rows is unspecified: compare real rows only
    auto lse_real = [&](size_t i) { return q_real(i / ((size_t)s.H * s.Tq) * s.Tq + i % s.Tq); };
    for (size_t i = 0; i < nlse; i++)
        if (!lse_real(i)) e_lse[i] = lse[i] = 0.0f;
    compare(what, "out", e_out.data(), out.data(), (size_t)s.B * s.Tq, width, width, tol_fwd, q_real);
    compare(what, "lse", e_lse.data(), lse.data(), nlse, 1, 1, tol_fwd, [](size_t) { return true; });
    if (path == PATH_MMA) {
        for (size_t i = 0; i < nlse; i++)
            if (!lse_real(i)) e_lse2[i] = 0.0f;
        compare(what, "out, the other row blocks per warp", e_out2.data(), out.data(), (size_t)s.B * s.Tq, width,
                width, tol_fwd, q_real);
        compare(what, "lse, the other row blocks per warp", e_lse2.data(), lse.data(), nlse, 1, 1, tol_fwd,
                [](size_t) { return true; });
    }
    if (!bwd) return;
    compare(what, "dq", e_dq.data(), dq.data(), (size_t)s.B * s.Tq, width, width, tol_bwd, q_real);
    compare(what, "dk", e_dk.data(), dk.data(), (size_t)s.B * s.Tk, s.KV * s.hd, ldkv, tol_bwd, kv_real);
    compare(what, "dv", e_dv.data(), dv.data(), (size_t)s.B * s.Tk, s.KV * s.hd, ldkv, tol_bwd, kv_real);
}

// ----------------------------------------------------------------------------
// shapes: those of the GPU test, fewer heads where the emulation would be slow. The tensor-core
// tiles are 64 rows in warps of 16 by 32 or 64 columns, the fp32 tiles 32 or 64 rows, so T = 77,
// 130 and 150 skip tiles and warps above the diagonal; a prefix of 40 keys puts a warp's last key
// before the start of a key tile; a sequence of 1 token and one without queries are the edge
// cases of the masking; head size 96 runs the fp32 kernels built for 128 on part of their columns.

int main(void) {
    Backend* cpu = backend_cpu_create(1);
    const Shape train[] = {
        {3, 77, 77, 8, 2, 64, 0, 0, {77, 40, 1}, {77, 40, 1}},     // GQA, head size 64
        {2, 130, 130, 4, 2, 128, 0, 0, {130, 97}, {130, 97}},      // head size 128
        {3, 77, 77, 6, 2, 64, 256, 128, {77, 40, 1}, {77, 40, 1}}, // `small`, rows inside wider rows
        {2, 130, 130, 4, 4, 64, 0, 0, {130, 97}, {130, 97}},       // no GQA, as gpt2-124m
        {2, 150, 150, 6, 2, 32, 0, 0, {150, 71}, {150, 71}},       // head size 32, groups of 3
        {2, 100, 140, 8, 2, 64, 3, 5, {100, 37}, {140, 45}},       // queries after a prefix of keys
        {3, 5, 40, 8, 2, 64, 0, 0, {5, 2, 0}, {40, 9, 17}},        // few queries, one sequence without
    };
    const Shape train_f32[] = {
        {2, 90, 90, 4, 2, 96, 0, 0, {90, 33}, {90, 33}}, // head size 96 on the kernels for 128
    };
    const Shape decode[] = {
        {4, 1, 1500, 8, 2, 64, 0, 0, {1, 1, 1, 0}, {1500, 777, 1, 64}},     // one query, many key chunks
        {4, 3, 300, 8, 2, 128, 0, 0, {3, 2, 3, 1}, {300, 2, 3, 129}},       // a few queries per sequence
        {4, 1, 1500, 8, 2, 64, 128, 64, {1, 1, 1, 0}, {1500, 777, 1, 64}}, // cache rows inside wider rows
        {3, 2, 200, 4, 4, 96, 0, 0, {2, 1, 2}, {200, 129, 2}},              // head size 96
    };
    uint64_t seed = 1;
    for (const Shape& s : train) check_shape(cpu, s, PATH_MMA, seed += 10);
    for (const Shape& s : train) check_shape(cpu, s, PATH_TILED, seed += 10);
    for (const Shape& s : train_f32) check_shape(cpu, s, PATH_TILED, seed += 10);
    for (const Shape& s : decode) check_shape(cpu, s, PATH_DECODE, seed += 10);
    backend_destroy(cpu);
    if (failures) printf("%d check(s) failed\n", failures);
    return failures ? 1 : 0;
}
