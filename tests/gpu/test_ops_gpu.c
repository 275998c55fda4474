// The CUDA backend against the CPU backend, op by op, for every op of model/ops.h (label gpu).
// Each case runs the same random inputs on the CPU backend (the reference) and on the CUDA
// backend in f32 and in bf16-matmul mode, twice each (harness: gpu_compare.h), and checks the
// normalised error max |gpu - cpu| / max(max |cpu|, 1e-30) of every output against
//   f32 mode   1e-5  memory ops, elementwise ops, reductions, norms, RoPE, embeddings, softmax,
//                    the losses (outputs and returned sums), the distillation objective's row
//                    ops and decoding's draws' log-probs (test_ops_gpu_vocab.c) and AdamW
//              0     decoding's drawn and top-k ids (sample_rows; a draw flips only if its
//                    uniform falls within rounding of a cumulative boundary)
//              0     the trainer's fixed-point sums and block norms (both modes: bit for bit)
//              1e-4  matmul and attention forward and backward (float sums in another order)
//   bf16 mode  1e-2  matmul and attention forward, 2e-2 attention backward; 1e-5 the rest
//                    (attention's tiled shapes run on bf16 tensor cores there for head_dim 32, 64
//                    and 128: inputs rounded to bf16, relative 2^-9, fp32 sums; a host simulation
//                    of the kernels on these shapes gave forward errors up to 5e-3 and backward
//                    up to 1e-2, most at rows with few keys, where one rounding is not averaged)
//   activation buffers (alloc_act; bf16 storage in bf16 mode, test_ops_gpu_act.c): 1.5e-2 in
//                    bf16 mode for the elementwise ops, the matmul's and attention's classes else
// that the two runs are bit-identical (ops.h: deterministic; the reductions of embedding_bwd,
// attention_bwd, rmsnorm_bwd, bias_bwd, sum_squares and the losses must not depend on timing),
// and that padded rows are exactly zero. Outputs that an op overwrites start as garbage, so every
// element must be written; outputs it accumulates into start random.
// Shapes: padded batches with ragged lengths, GQA (8 query heads on 2 kv heads, 6 on 2), head_dim
// 32, 64 and 128, queries after a prefix of keys (q_lens < kv_lens), sequences long enough for
// causal tile skipping at every tile size, decoding (one query against a 1500-key cache, batch
// 64), every trans_a/trans_b with leading dimensions past the width (and operands at an odd
// offset inside wider rows, NaN around them on the GPU), RMSNorm, RoPE, SwiGLU, AdamW, the
// losses, scatter_rows and the stacked linear_bwd on tensors one element into their buffers
// (misaligned: their 4-wide paths must not be taken, and the emulated build stops on a
// misaligned access), vocabularies of 50304 and
// 151936 with rows of weight 0, repeated tokens.
// Without a usable GPU (here, CI) it prints "no CUDA GPU: <reason>" and exits 77 (skipped).
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "gpu_compare.h"
#include "model/ops.h"

#define ARRAY_LEN(a) (sizeof(a) / sizeof((a)[0]))

// test_ops_gpu_matmul.c: products, and the bf16 mode's kept operand copies
void test_matmul(void** state);
// test_ops_gpu_vocab.c: the vocabulary-wide blocks
void test_softmax(void** state);
void test_losses(void** state);
void test_sample_rows(void** state);
void test_objective_rows(void** state);
// test_ops_gpu_act.c: activation buffers
void test_activation_memory(void** state);
void test_activation_handle_ends(void** state);
void test_activation_ops(void** state);
void test_activation_matmul(void** state);
void test_activation_linear_bwd(void** state);
void test_activation_attention(void** state);

// ----------------------------------------------------------------------------
// memory: zero-filled alloc, upload/download, copy and memset0 at element offsets

static void case_memory(GpuCtx* c, const void* arg) {
    (void)arg;
    Backend* be = c->be;
    enum { n = 100003 };
    gpu_out(c, "alloc", gpu_zeros(c, n), n, 1);
    float* x = gpu_randn(c, n, 1.0);
    float* y = gpu_junk(c, n);
    be->copy(be, y + 7, x + 3, (n - 10) * sizeof(float));
    be->memset0(be, x + 100, 5000 * sizeof(float));
    be->synchronize(be);
    gpu_out(c, "copy", y, n, 0);
    gpu_out(c, "memset0", x, n, 1);
}

static void test_memory(void** state) {
    (void)state;
    gpu_check("memory", case_memory, NULL, 1, TOL_ELEMENTWISE);
    gpu_done();
}

// ----------------------------------------------------------------------------
// elementwise ops and reductions

static void case_add_scale(GpuCtx* c, const void* arg) {
    (void)arg;
    enum { n = 1000003 };
    float* x = gpu_randn(c, n, 1.0);
    float* y = gpu_randn(c, n, 1.0);
    c->be->add(c->be, y, x, n);
    gpu_out(c, "add", y, n, 0);
    c->be->scale(c->be, x, -0.37f, n);
    gpu_out(c, "scale", x, n, 0);
}

typedef struct {
    int N, C;
    int off; // elements before every tensor (1: misaligned for 4-wide accesses, which must not be taken)
} RowsArgs;

static void case_bias(GpuCtx* c, const void* arg) {
    const RowsArgs* a = arg;
    const size_t nc = (size_t)a->N * a->C;
    float* y = gpu_randn(c, nc, 1.0);
    float* b = gpu_randn(c, (size_t)a->C, 1.0);
    c->be->add_bias(c->be, y, b, a->N, a->C);
    gpu_out(c, "add_bias", y, nc, 0);
    float* db = gpu_randn(c, (size_t)a->C, 1.0);
    float* dy = gpu_randn(c, nc, 1.0);
    c->be->bias_bwd(c->be, db, dy, a->N, a->C);
    gpu_out(c, "bias_bwd", db, (size_t)a->C, 0);
}

static void case_sum_squares(GpuCtx* c, const void* arg) {
    const size_t n = *(const size_t*)arg;
    float* x = gpu_randn(c, n, 1.0);
    gpu_out_scalar(c, "sum", c->be->sum_squares(c->be, x, n));
}

static void case_mask_rows(GpuCtx* c, const void* arg) {
    (void)arg;
    enum { B = 4, T = 50, C = 100 };
    const int lens[B] = {50, 20, 0, 49};
    float* x = gpu_randn(c, (size_t)B * T * C, 1.0);
    c->be->mask_rows(c->be, x, gpu_upload(c, lens, sizeof lens), B, T, C);
    gpu_out(c, "x", x, (size_t)B * T * C, 1);
}

// SwiGLU with a few saturated gates (silu of +-80: no overflow, no NaN), over n elements `off`
// into every buffer: one at a time (n odd, or off 1) or 4 at a time (n a multiple of 4, off 0)
static void case_swiglu(GpuCtx* c, const void* arg) {
    const RowsArgs* a = arg;
    const size_t n = (size_t)a->N * a->C, all = n + (size_t)a->off;
    float* hg = host_randn(c, all, 3.0);
    hg[a->off] = 80.0f, hg[a->off + 1] = -80.0f, hg[a->off + 2] = 0.0f;
    float* gate = gpu_upload(c, hg, all * sizeof(float));
    free(hg);
    float* up = gpu_randn(c, all, 1.0);
    float* h = gpu_junk(c, all);
    c->be->swiglu_fwd(c->be, h + a->off, gate + a->off, up + a->off, n);
    gpu_out(c, "h", h + a->off, n, 0);
    float* dh = gpu_randn(c, all, 1.0);
    float* dgate = gpu_junk(c, all);
    float* dup = gpu_junk(c, all);
    c->be->swiglu_bwd(c->be, dgate + a->off, dup + a->off, dh + a->off, gate + a->off, up + a->off, n);
    gpu_out(c, "dgate", dgate + a->off, n, 0);
    gpu_out(c, "dup", dup + a->off, n, 0);
}

static void test_elementwise(void** state) {
    (void)state;
    gpu_check("add, scale", case_add_scale, NULL, 2, TOL_ELEMENTWISE);
    const RowsArgs bias[] = {{77, 1000, 0}, {4099, 768, 0}, {1, 64, 0}};
    char label[96];
    for (size_t i = 0; i < ARRAY_LEN(bias); i++) {
        snprintf(label, sizeof label, "add_bias, bias_bwd N=%d C=%d", bias[i].N, bias[i].C);
        gpu_check(label, case_bias, &bias[i], 10 + i, TOL_ELEMENTWISE);
    }
    const size_t ns[] = {1000003, 7, 1 << 24};
    for (size_t i = 0; i < ARRAY_LEN(ns); i++) {
        snprintf(label, sizeof label, "sum_squares n=%zu", ns[i]);
        gpu_check(label, case_sum_squares, &ns[i], 20 + i, TOL_ELEMENTWISE);
    }
    gpu_check("mask_rows", case_mask_rows, NULL, 3, TOL_ELEMENTWISE);
    const RowsArgs swiglu[] = {{1000003, 1, 0}, {1000, 1000, 0}, {1000, 1000, 1}};
    for (size_t i = 0; i < ARRAY_LEN(swiglu); i++) {
        snprintf(label, sizeof label, "swiglu fwd, bwd n=%d off=%d", swiglu[i].N * swiglu[i].C, swiglu[i].off);
        gpu_check(label, case_swiglu, &swiglu[i], 4 + 1000 * (int)i, TOL_ELEMENTWISE);
    }
    gpu_done();
}

// ----------------------------------------------------------------------------
// RMSNorm (model rows and QK-norm rows of one head, with the residual's add) and RoPE

static void case_rmsnorm(GpuCtx* c, const void* arg) {
    const RowsArgs* a = arg;
    Backend* be = c->be;
    const size_t nc = (size_t)a->N * a->C;
    float* x = gpu_randn(c, nc + a->off, 2.0) + a->off;
    float* w = gpu_randn(c, (size_t)a->C + a->off, 1.0) + a->off;
    float* y = gpu_junk(c, nc + a->off) + a->off;
    float* rstd = gpu_junk(c, (size_t)a->N);
    be->rmsnorm_fwd(be, y, rstd, x, w, a->N, a->C, 1e-5f);
    gpu_out(c, "y", y, nc, 0);
    gpu_out(c, "rstd", rstd, (size_t)a->N, 0);
    float* dx = gpu_randn(c, nc + a->off, 1.0) + a->off;
    float* dw = gpu_randn(c, (size_t)a->C, 1.0);
    float* dy = gpu_randn(c, nc + a->off, 1.0) + a->off;
    be->rmsnorm_bwd(be, dx, dw, dy, x, w, rstd, a->N, a->C);
    gpu_out(c, "dx", dx, nc, 0);
    gpu_out(c, "dw", dw, (size_t)a->C, 0);
    // the residual's add fused into the norm: res += x, y = norm(res)
    float* res = gpu_randn(c, nc + a->off, 1.0) + a->off;
    be->add_rmsnorm_fwd(be, y, rstd, res, x, w, a->N, a->C, 1e-5f);
    gpu_out(c, "add_rmsnorm y", y, nc, 0);
    gpu_out(c, "add_rmsnorm res", res, nc, 0);
    gpu_out(c, "add_rmsnorm rstd", rstd, (size_t)a->N, 0);
}

static void test_rmsnorm(void** state) {
    (void)state;
    const RowsArgs shapes[] = {{77, 384, 0}, {2048, 768, 0}, {4096, 64, 0}, {1000, 128, 0},
                               {33, 4096, 0}, {5, 1000, 0},   {77, 384, 1},  {33, 2048, 1}};
    char label[96];
    for (size_t i = 0; i < ARRAY_LEN(shapes); i++) {
        snprintf(label, sizeof label, "rmsnorm fwd, bwd N=%d C=%d off=%d", shapes[i].N, shapes[i].C, shapes[i].off);
        gpu_check(label, case_rmsnorm, &shapes[i], 30 + i, TOL_ELEMENTWISE);
    }
    gpu_done();
}

typedef struct {
    int N, nh, hd;
    int off; // elements before x (1: misaligned for 4-wide accesses)
} RopeArgs;

static void case_rope(GpuCtx* c, const void* arg) {
    const RopeArgs* a = arg;
    float *dcs, *dsn;
    int* dpos;
    gpu_rope_inputs(c, a->N, 4096, a->hd, &dcs, &dsn, &dpos);
    const size_t nx = (size_t)a->N * a->nh * a->hd;
    float* x = gpu_randn(c, nx + a->off, 1.0) + a->off;
    c->be->rope_fwd(c->be, x, dpos, dcs, dsn, a->N, a->nh, a->hd);
    gpu_out(c, "fwd", x, nx, 0);
    c->be->rope_bwd(c->be, x, dpos, dcs, dsn, a->N, a->nh, a->hd);
    gpu_out(c, "bwd", x, nx, 0);
}

static void test_rope(void** state) {
    (void)state;
    const RopeArgs shapes[] = {{37, 8, 64, 0}, {37, 2, 64, 0}, {300, 8, 128, 0}, {5, 12, 128, 0}, {37, 8, 64, 1}};
    char label[96];
    for (size_t i = 0; i < ARRAY_LEN(shapes); i++) {
        snprintf(label, sizeof label, "rope fwd, bwd N=%d nh=%d hd=%d off=%d", shapes[i].N, shapes[i].nh, shapes[i].hd,
                 shapes[i].off);
        gpu_check(label, case_rope, &shapes[i], 40 + i, TOL_ELEMENTWISE);
    }
    gpu_done();
}

// ----------------------------------------------------------------------------
// attention

typedef struct {
    int B, Tq, Tk, H, KV, hd;
    int pad_q, pad_kv; // ldq = H hd + pad_q, ldkv = KV hd + pad_kv (rows inside wider buffers)
    const int* q_lens;
    const int* kv_lens;
} AttnArgs;

typedef struct {
    float *q, *k, *v; // host inputs
    int ldq, ldkv;
    size_t nq, nkv, nout, nlse;
} AttnInputs;

static AttnInputs attn_inputs(GpuCtx* c, const AttnArgs* a) {
    AttnInputs in = {.ldq = a->H * a->hd + a->pad_q, .ldkv = a->KV * a->hd + a->pad_kv};
    in.nq = (size_t)a->B * a->Tq * in.ldq;
    in.nkv = (size_t)a->B * a->Tk * in.ldkv;
    in.nout = (size_t)a->B * a->Tq * a->H * a->hd;
    in.nlse = (size_t)a->B * a->H * a->Tq;
    in.q = host_randn(c, in.nq, 1.0);
    in.k = host_randn(c, in.nkv, 1.0);
    in.v = host_randn(c, in.nkv, 1.0);
    return in;
}

static void attn_inputs_free(AttnInputs* in) { free(in->q), free(in->k), free(in->v); }

// attention_fwd of the inputs on backend be into host out, lse
static void attn_forward(Backend* be, const AttnArgs* a, const AttnInputs* in, float* out, float* lse) {
    float* q = be->alloc(be, in->nq * sizeof(float));
    float* k = be->alloc(be, in->nkv * sizeof(float));
    float* v = be->alloc(be, in->nkv * sizeof(float));
    float* o = be->alloc(be, in->nout * sizeof(float));
    float* l = be->alloc(be, in->nlse * sizeof(float));
    int* ql = be->alloc(be, sizeof(int) * a->B);
    int* kl = be->alloc(be, sizeof(int) * a->B);
    void* work = be->alloc(be, be->attention_work_bytes(be, a->Tk));
    be->upload(be, q, in->q, in->nq * sizeof(float));
    be->upload(be, k, in->k, in->nkv * sizeof(float));
    be->upload(be, v, in->v, in->nkv * sizeof(float));
    be->upload(be, ql, a->q_lens, sizeof(int) * a->B);
    be->upload(be, kl, a->kv_lens, sizeof(int) * a->B);
    be->upload(be, o, out, in->nout * sizeof(float)); // the caller's garbage: every element must be written
    be->attention_fwd(be, o, l, q, in->ldq, k, v, in->ldkv, ql, kl, a->B, a->Tq, a->Tk, a->H, a->KV, a->hd, work);
    be->download(be, out, o, in->nout * sizeof(float));
    be->download(be, lse, l, in->nlse * sizeof(float));
    void* bufs[] = {q, k, v, o, l, ql, kl, work};
    for (size_t i = 0; i < ARRAY_LEN(bufs); i++) be->free(be, bufs[i]);
}

// the log-sum-exp of padded query rows is unspecified: compare the real rows only
static void mask_lse(const AttnArgs* a, float* lse) {
    for (int b = 0; b < a->B; b++) {
        for (int h = 0; h < a->H; h++) {
            for (int t = a->q_lens[b]; t < a->Tq; t++) lse[((size_t)b * a->H + h) * a->Tq + t] = 0.0f;
        }
    }
}

static void case_attention_fwd(GpuCtx* c, const void* arg) {
    const AttnArgs* a = arg;
    AttnInputs in = attn_inputs(c, a);
    float* out = host_randn(c, in.nout, 1e3);
    float* lse = malloc(in.nlse * sizeof(float));
    attn_forward(c->be, a, &in, out, lse);
    mask_lse(a, lse);
    gpu_out_host(c, "out", out, in.nout, 1);
    gpu_out_host(c, "lse", lse, in.nlse, 0);
    free(out), free(lse);
    attn_inputs_free(&in);
}

// the backward from the CPU's forward (same out and lse on every backend)
static void case_attention_bwd(GpuCtx* c, const void* arg) {
    const AttnArgs* a = arg;
    Backend* be = c->be;
    AttnInputs in = attn_inputs(c, a);
    float* out = calloc(in.nout, sizeof(float));
    float* lse = calloc(in.nlse, sizeof(float));
    attn_forward(gpu_cpu_backend(), a, &in, out, lse);
    float* q = gpu_upload(c, in.q, in.nq * sizeof(float));
    float* k = gpu_upload(c, in.k, in.nkv * sizeof(float));
    float* v = gpu_upload(c, in.v, in.nkv * sizeof(float));
    float* o = gpu_upload(c, out, in.nout * sizeof(float));
    float* l = gpu_upload(c, lse, in.nlse * sizeof(float));
    int* ql = gpu_upload(c, a->q_lens, sizeof(int) * a->B);
    int* kl = gpu_upload(c, a->kv_lens, sizeof(int) * a->B);
    float* dout = gpu_randn(c, in.nout, 1.0);
    float* dq = gpu_junk(c, in.nout);
    float* dk = gpu_junk(c, in.nkv);
    float* dv = gpu_junk(c, in.nkv);
    void* work = gpu_zeros(c, (be->attention_work_bytes(be, a->Tk) + 3) / 4);
    be->attention_bwd(be, dq, dk, dv, dout, o, l, q, in.ldq, k, v, in.ldkv, ql, kl, a->B, a->Tq, a->Tk, a->H, a->KV,
                      a->hd, work);
    // a query row with one key has dq = 0 in exact arithmetic, and a key only such rows see has
    // dk = 0; the CPU gets exactly 0 there and a GPU a rounding residue, so exact zeros are
    // required of the padded rows only (the contract)
    gpu_out(c, "dq", dq, in.nout, 0);
    const size_t width = (size_t)a->H * a->hd;
    float* hq = malloc(in.nout * sizeof(float));
    float* padded = malloc(in.nout * sizeof(float));
    be->download(be, hq, dq, in.nout * sizeof(float));
    size_t np = 0;
    for (int b = 0; b < a->B; b++)
        for (int t = a->q_lens[b]; t < a->Tq; t++, np += width)
            memcpy(padded + np, hq + ((size_t)b * a->Tq + t) * width, width * sizeof(float));
    gpu_out_host(c, "dq padded rows", padded, np, 1);
    free(hq), free(padded);
    const size_t kv_rows = (size_t)a->B * a->Tk, kv_width = (size_t)a->KV * a->hd;
    float* pk = gpu_packed_rows(c, dk, kv_rows, in.ldkv, (int)kv_width);
    float* pv = gpu_packed_rows(c, dv, kv_rows, in.ldkv, (int)kv_width);
    gpu_out_host(c, "dk", pk, kv_rows * kv_width, 0);
    gpu_out_host(c, "dv", pv, kv_rows * kv_width, 0);
    float* kv_padded = malloc(2 * kv_rows * kv_width * sizeof(float));
    np = 0;
    for (int b = 0; b < a->B; b++) {
        for (int t = a->kv_lens[b]; t < a->Tk; t++, np += 2 * kv_width) {
            memcpy(kv_padded + np, pk + ((size_t)b * a->Tk + t) * kv_width, kv_width * sizeof(float));
            memcpy(kv_padded + np + kv_width, pv + ((size_t)b * a->Tk + t) * kv_width, kv_width * sizeof(float));
        }
    }
    gpu_out_host(c, "dk dv padded rows", kv_padded, np, 1);
    free(kv_padded), free(pk), free(pv), free(out), free(lse);
    attn_inputs_free(&in);
}

static void attn_label(char* buf, size_t n, const char* what, const AttnArgs* a) {
    snprintf(buf, n, "%s B=%d Tq=%d Tk=%d H=%d KV=%d hd=%d%s", what, a->B, a->Tq, a->Tk, a->H, a->KV, a->hd,
             a->pad_q || a->pad_kv ? " strided" : "");
}

// tiled shapes (the bf16 mode's tensor-core path): training shapes, q_lens = kv_lens = lengths,
// Tq = Tk = T, padded sequences (one of 1 token); and queries after a prefix of keys. The GPU's
// tiles are 64 queries by 32 or 64 keys (64 keys by 32 or 64 queries for dk, dv) in warps of 16
// rows, 128 queries in warps of 32 rows for the forward at head size 64, so T = 77, 130 and 300
// skip tiles and warps above the diagonal and leave warps without queries, and a prefix of 40
// keys puts a warp's last key before the start of a key tile.
static const int train_lens3[] = {77, 40, 1}, train_lens2[] = {130, 97}, train_lens4[] = {300, 171, 64, 1};
static const int prefix_q[] = {100, 37}, prefix_kv[] = {140, 45};

static const AttnArgs train_shapes[] = {
    {3, 77, 77, 8, 2, 64, 0, 0, train_lens3, train_lens3},      // GQA, head_dim 64
    {2, 130, 130, 8, 2, 128, 0, 0, train_lens2, train_lens2},   // head_dim 128, past one block of 64/128
    {3, 77, 77, 6, 2, 64, 256, 128, train_lens3, train_lens3},  // `small`, q/k/v rows inside wider rows
    {2, 130, 130, 12, 12, 64, 0, 0, train_lens2, train_lens2},  // gpt2-124m: no GQA
    {4, 300, 300, 6, 2, 32, 0, 0, train_lens4, train_lens4},    // head_dim 32, groups of 3, many tiles
    {2, 100, 140, 8, 2, 64, 3, 5, prefix_q, prefix_kv},         // 40 and 8 keys before the queries; odd
                                                                // strides (rows not 16-byte aligned)
};

static void test_attention_fwd(void** state) {
    (void)state;
    char label[128];
    for (size_t i = 0; i < ARRAY_LEN(train_shapes); i++) {
        attn_label(label, sizeof label, "attention_fwd", &train_shapes[i]);
        gpu_check(label, case_attention_fwd, &train_shapes[i], 50 + i, TOL_MATMUL);
    }
    gpu_done();
}

// decoding: queries at the end of each sequence's keys in the cache, one (or a few) per sequence,
// a sequence with no query, batch 64
static void test_attention_decode(void** state) {
    (void)state;
    static const int ql1[] = {1, 1, 1, 0}, kl1[] = {1500, 777, 1, 64};
    static const int ql3[] = {3, 2, 3, 1}, kl3[] = {300, 2, 3, 129};
    static int ql64[64], kl64[64];
    for (int b = 0; b < 64; b++) {
        ql64[b] = b % 17 == 5 ? 0 : 1;
        kl64[b] = 1 + (b * 37) % 300;
    }
    const AttnArgs shapes[] = {
        {4, 1, 1500, 8, 2, 64, 0, 0, ql1, kl1},    {4, 1, 1500, 8, 2, 128, 0, 0, ql1, kl1},
        {4, 3, 300, 8, 2, 128, 0, 0, ql3, kl3},    {64, 1, 300, 6, 2, 64, 0, 0, ql64, kl64},
        {64, 1, 300, 12, 12, 64, 0, 0, ql64, kl64}, {4, 1, 1500, 8, 2, 64, 128, 64, ql1, kl1},
    };
    char label[128];
    for (size_t i = 0; i < ARRAY_LEN(shapes); i++) {
        attn_label(label, sizeof label, "attention_fwd decode", &shapes[i]);
        gpu_check(label, case_attention_fwd, &shapes[i], 60 + i, TOL_MATMUL);
    }
    gpu_done();
}

static void test_attention_bwd(void** state) {
    (void)state;
    char label[128];
    for (size_t i = 0; i < ARRAY_LEN(train_shapes); i++) {
        attn_label(label, sizeof label, "attention_bwd", &train_shapes[i]);
        gpu_check(label, case_attention_bwd, &train_shapes[i], 70 + i, TOL_ATTN_BWD);
    }
    // the general case of the contract: fewer queries than keys, a sequence without queries
    static const int ql[] = {5, 2, 0}, kl[] = {40, 9, 17};
    const AttnArgs chunk = {3, 5, 40, 8, 2, 64, 0, 0, ql, kl};
    attn_label(label, sizeof label, "attention_bwd", &chunk);
    gpu_check(label, case_attention_bwd, &chunk, 79, TOL_ATTN_BWD);
#ifndef INGRAIN_GPU_EMU
    // Training shapes with more blocks than a GPU holds at once: the tensor-core backward's blocks
    // take turns at each query tile's dq (attention_mma_kernels.cuh), so these check the turns'
    // order under real concurrency, waves of blocks included, bit for bit between the two runs.
    // The emulator runs blocks one after another, where this proves nothing and takes minutes.
    static const int big_lens[] = {1024, 1000, 513, 1024}, gqa_lens[] = {2048, 1500};
    const AttnArgs big[] = {
        {4, 1024, 1024, 12, 12, 64, 0, 0, big_lens, big_lens}, // gpt2-124m at batch 4
        {2, 2048, 2048, 16, 4, 128, 0, 0, gqa_lens, gqa_lens}, // GQA groups of 4, head_dim 128
    };
    for (size_t i = 0; i < ARRAY_LEN(big); i++) {
        attn_label(label, sizeof label, "attention_bwd", &big[i]);
        gpu_check(label, case_attention_bwd, &big[i], 80 + i, TOL_ATTN_BWD);
    }
#endif
    gpu_done();
}

// ----------------------------------------------------------------------------
// embedding (forward, and backward with many repeats of a few tokens)

typedef struct {
    int N, D, V, distinct; // tokens drawn from `distinct` ids (0: from the whole vocabulary)
} EmbArgs;

static void case_embedding(GpuCtx* c, const void* arg) {
    const EmbArgs* a = arg;
    Backend* be = c->be;
    int* tok = malloc(sizeof(int) * a->N);
    int pool[16];
    for (int i = 0; i < 16; i++) pool[i] = (int)rng_below(&c->rng, (uint64_t)a->V);
    for (int n = 0; n < a->N; n++) {
        tok[n] = a->distinct ? pool[rng_below(&c->rng, (uint64_t)a->distinct)] : (int)rng_below(&c->rng, a->V);
    }
    tok[0] = 0, tok[a->N - 1] = a->V - 1; // both ends of the table
    const size_t nt = (size_t)a->V * a->D, ny = (size_t)a->N * a->D;
    int* dtok = gpu_upload(c, tok, sizeof(int) * a->N);
    float* table = gpu_randn(c, nt, 1.0);
    float* y = gpu_junk(c, ny);
    be->embedding_fwd(be, y, dtok, table, a->N, a->D);
    gpu_out(c, "y", y, ny, 0);
    float* dtable = gpu_randn(c, nt, 1.0);
    float* dy = gpu_randn(c, ny, 1.0);
    be->embedding_bwd(be, dtable, dy, dtok, a->N, a->D, a->V);
    gpu_out(c, "dtable", dtable, nt, 0);
    free(tok);
}

static void test_embedding(void** state) {
    (void)state;
    const EmbArgs shapes[] = {{513, 768, 50304, 0}, {4096, 384, 5000, 7}, {2048, 64, 151936, 3}, {1, 128, 300, 0}};
    char label[96];
    for (size_t i = 0; i < ARRAY_LEN(shapes); i++) {
        snprintf(label, sizeof label, "embedding fwd, bwd N=%d D=%d V=%d repeats of %d", shapes[i].N, shapes[i].D,
                 shapes[i].V, shapes[i].distinct);
        gpu_check(label, case_embedding, &shapes[i], 80 + i, TOL_ELEMENTWISE);
    }
    gpu_done();
}

// ----------------------------------------------------------------------------
// AdamW on a slice at an offset, clipped gradient, first and a later step; a slice of a multiple
// of 4 elements runs 4 per access where it is 16-byte aligned (off 0) and one where it is not
// (off 5: the emulated build stops on a misaligned 4-wide access)

typedef struct {
    long t;
    float grad_scale, weight_decay;
    int n, off;
} AdamArgs;

static void case_adamw(GpuCtx* c, const void* arg) {
    const AdamArgs* a = arg;
    const size_t all = (size_t)a->n + (size_t)a->off;
    float* p = gpu_randn(c, all, 1.0);
    float* g = gpu_randn(c, all, 1.0);
    float* m = gpu_randn(c, all, 0.1);
    float* hv = host_randn(c, all, 0.01);
    for (size_t i = 0; i < all; i++) hv[i] *= hv[i];
    float* v = gpu_upload(c, hv, sizeof(float) * all);
    free(hv);
    c->be->adamw(c->be, p + a->off, g + a->off, m + a->off, v + a->off, (size_t)a->n, 1e-3f, 0.9f, 0.95f, 1e-8f,
                 a->weight_decay, a->grad_scale, a->t);
    gpu_out(c, "p", p, all, 0);
    gpu_out(c, "m", m, all, 0);
    gpu_out(c, "v", v, all, 0);
}

static void test_adamw(void** state) {
    (void)state;
    const AdamArgs steps[] = {{1, 1.0f, 0.1f, 1000003, 5}, {7, 0.37f, 0.1f, 1000003, 5}, {1000, 1.0f, 0.0f, 1000003, 5},
                              {3, 0.5f, 0.1f, 1000000, 0}, {3, 0.5f, 0.1f, 1000000, 5}};
    char label[128];
    for (size_t i = 0; i < ARRAY_LEN(steps); i++) {
        snprintf(label, sizeof label, "adamw t=%ld grad_scale=%g decay=%g, %d at offset %d", steps[i].t,
                 steps[i].grad_scale, steps[i].weight_decay, steps[i].n, steps[i].off);
        gpu_check(label, case_adamw, &steps[i], 120 + i, TOL_ELEMENTWISE);
    }
    gpu_done();
}

// ----------------------------------------------------------------------------
// the trainer's fixed-point sums and block norms: the CPU's bits exactly (TOL_EXACT)

// gradients over 12 decades, two micro-batches summed, then one with an element out of range
// and one not finite (reported, not added)
static void case_fixed_point(GpuCtx* c, const void* arg) {
    (void)arg;
    Backend* be = c->be;
    enum { n = 300007 };
    float* h = host_randn(c, 2 * n, 1.0);
    for (int i = 0; i < 2 * n; i++) h[i] *= (float)pow(10.0, -(double)rng_below(&c->rng, 12));
    const float* g = gpu_upload(c, h, sizeof(float) * 2 * n);
    int64_t* acc = (int64_t*)gpu_zeros(c, 2 * n);
    const double limit = ldexp(1.0, 61);
    double mx0, mx1;
    const int bad0 = be->fp_accumulate(be, acc, g, n, 52, limit, &mx0);
    const int bad1 = be->fp_accumulate(be, acc, g + n, n, 52, limit, &mx1);
    gpu_out_i64(c, "acc", acc, n);
    float* out = gpu_junk(c, n);
    be->fp_to_float(be, out, acc, n, 52);
    gpu_out(c, "float", out, n, 0);
    h[7] = 1024.0f; // 2^62 at k = 52: out of range
    const float* g_big = gpu_upload(c, h, sizeof(float) * n);
    double mx2, mx3;
    const int bad2 = be->fp_accumulate(be, acc, g_big, n, 52, limit, &mx2);
    h[11] = NAN;
    const float* g_nan = gpu_upload(c, h, sizeof(float) * n);
    const int bad3 = be->fp_accumulate(be, acc, g_nan, n, 52, limit, &mx3);
    gpu_out_i64(c, "acc bad", acc, n);
    gpu_out_scalar(c, "flags", bad0 + 2 * bad1 + 4 * bad2 + 8 * bad3 + 16 * isnan(mx3));
    gpu_out_scalar(c, "max", mx0 + mx1 + mx2);
    free(h);
}

// the gradient norm's blocks (2^18, as the trainer's), the last one short; and blocks smaller than
// the CUDA kernel's staging chunk, the last one shorter still
static void case_block_norms(GpuCtx* c, const void* arg) {
    (void)arg;
    enum { n = 700001, block = 262144, n_small = 2500, block_small = 1000 };
    const float* x = gpu_randn(c, n, 3.0);
    double sums[3];
    const char* names[2][3] = {{"block 0", "block 1", "block 2"}, {"small 0", "small 1", "small 2"}};
    for (int shape = 0; shape < 2; shape++) {
        c->be->sum_squares_blocks(c->be, sums, x + shape, shape ? n_small : n, shape ? block_small : block);
        for (int b = 0; b < 3; b++) gpu_out_scalar(c, names[shape][b], sums[b]);
    }
}

static void test_fixed_point(void** state) {
    (void)state;
    gpu_check("fp_accumulate, fp_to_float", case_fixed_point, NULL, 500, TOL_EXACT);
    gpu_check("sum_squares_blocks", case_block_norms, NULL, 501, TOL_EXACT);
    gpu_done();
}

int main(void) {
    char err[1024];
    if (gpu_backends_open(err, sizeof err) != 0) {
        printf("no CUDA GPU: %s\n", err);
        return 77;
    }
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_memory),          cmocka_unit_test(test_matmul),
        cmocka_unit_test(test_elementwise),     cmocka_unit_test(test_rmsnorm),
        cmocka_unit_test(test_rope),            cmocka_unit_test(test_attention_fwd),
        cmocka_unit_test(test_attention_decode), cmocka_unit_test(test_attention_bwd),
        cmocka_unit_test(test_embedding),       cmocka_unit_test(test_softmax),
        cmocka_unit_test(test_losses),          cmocka_unit_test(test_objective_rows),
        cmocka_unit_test(test_sample_rows),     cmocka_unit_test(test_activation_memory),
        cmocka_unit_test(test_activation_handle_ends),
        cmocka_unit_test(test_activation_ops),  cmocka_unit_test(test_activation_matmul),
        cmocka_unit_test(test_activation_linear_bwd),
        cmocka_unit_test(test_activation_attention),
        cmocka_unit_test(test_adamw), cmocka_unit_test(test_fixed_point),
    };
    const int failed = cmocka_run_group_tests(tests, NULL, NULL);
    gpu_backends_close();
    return failed;
}
