// The Llama-family decoder: parameters, activations, forward and backward (see model.h).
// Every computation goes through the Backend; this file only does bookkeeping and the order.
#include "model/model.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "common/check.h"
#include "common/log.h"
#include "model/loss.h"
#include "model/rng.h"

// ----------------------------------------------------------------------------
// state

// The matmuls' and attention's inputs and outputs are activation buffers (alloc_act: bf16 in the
// CUDA backend's bf16 mode), the logits and dlogits too (the LM head's product writes the logits
// and the loss blocks read them; the loss blocks write dlogits and the LM head's backward products
// read it); the residual stream, its gradient and the norm statistics stay fp32.
typedef struct {
    // per-layer tensors are stacked over L; N = B * T rows of the current batch
    float* resid;  // (L + 1, N, D) residual stream entering each layer (the last enters the final norm)
    float* resid2; // (L, N, D) residual stream after attention
    float* ln1;    // (L, N, D) attention norm output
    float* rstd1;  // (L, N)
    float* qraw;   // (L, N, H*hd) q before the QK norm (qk_norm only)
    float* kraw;   // (L, N, KV*hd)
    float* rstdq;  // (L, N*H) (qk_norm only)
    float* rstdk;  // (L, N*KV)
    float* q;      // (L, N, H*hd) attention input, after norm and RoPE
    float* k;      // (L, N, KV*hd)
    float* v;      // (L, N, KV*hd)
    float* att;    // (L, N, H*hd) attention output
    float* lse;    // (L, B, H, T) attention log-sum-exp
    float* ln2;    // (L, N, D) MLP norm output
    float* rstd2;  // (L, N)
    float* gate;   // (L, N, F)
    float* up;     // (L, N, F)
    float* h;      // (L, N, F) silu(gate) * up
    float* lnf;    // (N, D) final norm output
    float* rstdf;  // (N)
    float* logits; // (N, V) an activation buffer
} Activations;

typedef struct {
    float* dresid;  // (N, D) gradient of the residual stream
    float* dln;     // (N, D) gradient of a norm output
    float* datt;    // (N, H*hd)
    float* dq;      // (N, H*hd)
    float* dk;      // (N, KV*hd)
    float* dv;      // (N, KV*hd)
    float* dqraw;   // (N, H*hd) (qk_norm only)
    float* dkraw;   // (N, KV*hd) (qk_norm only)
    float* dh;      // (N, F)
    float* dgate;   // (N, F)
    float* dup;     // (N, F)
    float* dlogits; // (N, V) for the caller's loss blocks (an activation buffer)
} Scratch;

struct Model {
    ModelConfig cfg;
    Backend* be;
    ParamInfo table[PARAM_COUNT];
    size_t num_params;
    int max_batch, max_seq;
    float* params; // (num_params) backend
    float* grads;  // (num_params) backend
    Activations a;
    Scratch s;
    float* rope_cos; // (max_seq, hd/2)
    float* rope_sin; // (max_seq, hd/2)
    void* attn_work; // Backend.attention_work_bytes(max_seq)
    int* tokens;     // (N) backend, padded positions set to 0
    int* pos;        // (N) backend, position of each row
    int* lengths;    // (B) backend
    int* targets;    // (N) backend
    float* weights;  // (N) backend
    int* host_ints;  // (2 * N + B) staging for tokens, positions, lengths
    float* host_w;   // (N) staging for weights
    int B, T;        // shape of the last forward; 0 before the first
};

// ----------------------------------------------------------------------------
// RoPE tables (HF convention, with linear and llama3 frequency scaling)

static double rope_inv_freq(const ModelConfig* c, int i) {
    const double base = 1.0 / pow((double)c->rope_theta, (double)(2 * i) / (double)c->head_dim);
    if (c->rope_scaling == ROPE_SCALING_LINEAR) return base / c->rope_factor;
    if (c->rope_scaling != ROPE_SCALING_LLAMA3) return base;
    // transformers' _compute_llama3_parameters: long wavelengths are divided by the factor,
    // short ones kept, the band between interpolated smoothly
    const double pi = 3.14159265358979323846;
    const double old_len = c->rope_original_max_seq_len, lo = c->rope_low_freq_factor, hi = c->rope_high_freq_factor;
    const double wavelen = 2.0 * pi / base;
    if (wavelen < old_len / hi) return base;
    if (wavelen > old_len / lo) return base / c->rope_factor;
    const double smooth = (old_len / wavelen - lo) / (hi - lo);
    return (1.0 - smooth) * base / c->rope_factor + smooth * base;
}

double model_rope_inv_freq(const ModelConfig* c, int i) { return rope_inv_freq(c, i); }

static void rope_tables(Model* m) {
    const int half = m->cfg.head_dim / 2;
    const size_t n = (size_t)m->max_seq * half;
    float* cs = mallocCheck(2 * n * sizeof(float));
    for (int i = 0; i < half; i++) {
        const double f = rope_inv_freq(&m->cfg, i);
        for (int t = 0; t < m->max_seq; t++) {
            cs[(size_t)t * half + i] = (float)cos(t * f);
            cs[n + (size_t)t * half + i] = (float)sin(t * f);
        }
    }
    m->rope_cos = m->be->alloc(m->be, n * sizeof(float));
    m->rope_sin = m->be->alloc(m->be, n * sizeof(float));
    m->be->upload(m->be, m->rope_cos, cs, n * sizeof(float));
    m->be->upload(m->be, m->rope_sin, cs + n, n * sizeof(float));
    free(cs);
}

// ----------------------------------------------------------------------------
// lifetime

static float* falloc(Backend* be, size_t n) { return be->alloc(be, n * sizeof(float)); }
// activation storage (ops.h): bf16 on the CUDA backend's bf16 mode, fp32 elsewhere
static float* act(Backend* be, size_t n) { return be->alloc_act(be, n); }

Model* model_create(const ModelConfig* c, Backend* be, int max_batch, int max_seq) {
    char msg[256];
    if (model_config_check(c, msg, sizeof msg) != 0) fatal("model_create: invalid config: %s", msg);
    if (c->rope_scaling == ROPE_SCALING_LLAMA3 &&
        (c->rope_original_max_seq_len <= 0 || !(c->rope_high_freq_factor > c->rope_low_freq_factor) ||
         !(c->rope_low_freq_factor > 0.0f))) {
        fatal("model_create: llama3 rope scaling needs original_max_position_embeddings > 0 and "
              "high_freq_factor > low_freq_factor > 0 (got %d, %g, %g)",
              c->rope_original_max_seq_len, c->rope_high_freq_factor, c->rope_low_freq_factor);
    }
    if (max_batch <= 0 || max_seq <= 0) fatal("model_create: max_batch (%d) and max_seq (%d) must be positive",
                                              max_batch, max_seq);
    Model* m = callocCheck(1, sizeof(Model));
    m->cfg = *c;
    m->be = be;
    m->max_batch = max_batch;
    m->max_seq = max_seq;
    m->num_params = model_param_table(c, m->table);
    m->params = falloc(be, m->num_params);
    m->grads = falloc(be, m->num_params);

    const size_t L = c->n_layers, N = (size_t)max_batch * max_seq, D = c->dim, F = c->hidden_dim, V = c->vocab_size;
    const size_t H = c->n_heads, KV = c->n_kv_heads, Q = H * c->head_dim, K = KV * c->head_dim;
    Activations* a = &m->a;
    a->resid = falloc(be, (L + 1) * N * D);
    a->resid2 = falloc(be, L * N * D);
    a->ln1 = act(be, L * N * D);
    a->rstd1 = falloc(be, L * N);
    if (c->qk_norm) {
        a->qraw = act(be, L * N * Q);
        a->kraw = act(be, L * N * K);
        a->rstdq = falloc(be, L * N * H);
        a->rstdk = falloc(be, L * N * KV);
    }
    a->q = act(be, L * N * Q);
    a->k = act(be, L * N * K);
    a->v = act(be, L * N * K);
    a->att = act(be, L * N * Q);
    a->lse = falloc(be, L * N * H);
    a->ln2 = act(be, L * N * D);
    a->rstd2 = falloc(be, L * N);
    a->gate = act(be, L * N * F);
    a->up = act(be, L * N * F);
    a->h = act(be, L * N * F);
    a->lnf = act(be, N * D);
    a->rstdf = falloc(be, N);
    a->logits = act(be, N * V); // the loss blocks read them as they are (bf16 in the CUDA bf16 mode)

    Scratch* s = &m->s;
    s->dresid = falloc(be, N * D);
    s->dln = falloc(be, N * D);
    s->datt = act(be, N * Q);
    s->dq = act(be, N * Q);
    s->dk = act(be, N * K);
    s->dv = act(be, N * K);
    if (c->qk_norm) {
        s->dqraw = act(be, N * Q);
        s->dkraw = act(be, N * K);
    }
    s->dh = act(be, N * F);
    s->dgate = act(be, N * F);
    s->dup = act(be, N * F);
    s->dlogits = act(be, N * V);

    rope_tables(m);
    m->attn_work = be->alloc(be, be->attention_work_bytes(be, max_seq));
    m->tokens = be->alloc(be, N * sizeof(int));
    m->pos = be->alloc(be, N * sizeof(int));
    m->lengths = be->alloc(be, (size_t)max_batch * sizeof(int));
    m->targets = be->alloc(be, N * sizeof(int));
    m->weights = falloc(be, N);
    m->host_ints = mallocCheck((2 * N + (size_t)max_batch) * sizeof(int));
    m->host_w = mallocCheck(N * sizeof(float));
    return m;
}

void model_free(Model* m) {
    if (!m) return;
    Backend* be = m->be;
    float** bufs[] = {&m->params,   &m->grads,    &m->a.resid,  &m->a.resid2, &m->a.ln1,   &m->a.rstd1,
                      &m->a.qraw,   &m->a.kraw,   &m->a.rstdq,  &m->a.rstdk,  &m->a.q,     &m->a.k,
                      &m->a.v,      &m->a.att,    &m->a.lse,    &m->a.ln2,    &m->a.rstd2, &m->a.gate,
                      &m->a.up,     &m->a.h,      &m->a.lnf,    &m->a.rstdf,  &m->a.logits, &m->s.dresid,
                      &m->s.dln,    &m->s.datt,   &m->s.dq,     &m->s.dk,     &m->s.dv,    &m->s.dqraw,
                      &m->s.dkraw,  &m->s.dh,     &m->s.dgate,  &m->s.dup,    &m->s.dlogits, &m->rope_cos,
                      &m->rope_sin, &m->weights};
    for (size_t i = 0; i < sizeof bufs / sizeof bufs[0]; i++) {
        if (*bufs[i]) be->free(be, *bufs[i]);
    }
    be->free(be, m->attn_work);
    be->free(be, m->tokens);
    be->free(be, m->pos);
    be->free(be, m->lengths);
    be->free(be, m->targets);
    free(m->host_ints);
    free(m->host_w);
    free(m);
}

void model_init_random(Model* m, uint64_t seed) {
    float* host = mallocCheck(m->num_params * sizeof(float));
    for (int i = 0; i < PARAM_COUNT; i++) {
        const ParamInfo* p = &m->table[i];
        float* t = host + p->offset;
        if (p->is_norm) {
            // norm weights start at 1, biases at 0
            const int is_bias = i == PARAM_BQ || i == PARAM_BK || i == PARAM_BV;
            for (size_t j = 0; j < p->numel; j++) t[j] = is_bias ? 0.0f : 1.0f;
        } else {
            Rng r;
            rng_seed_stream(&r, seed, (uint64_t)i); // one stream per tensor: adding a tensor moves no other
            for (size_t j = 0; j < p->numel; j++) t[j] = (float)(0.02 * rng_normal(&r));
        }
    }
    model_params_upload(m, host);
    free(host);
}

// ----------------------------------------------------------------------------
// accessors

const ModelConfig* model_config(const Model* m) { return &m->cfg; }
Backend* model_backend(const Model* m) { return m->be; }
const ParamInfo* model_param_info(const Model* m) { return m->table; }
size_t model_num_params(const Model* m) { return m->num_params; }
float* model_params(Model* m) { return m->params; }
float* model_grads(Model* m) { return m->grads; }
float* model_logits(Model* m) { return m->a.logits; }
float* model_dlogits(Model* m) { return m->s.dlogits; }

static size_t tensor_offset(const Model* m, ParamId id, int layer) {
    const ParamInfo* p = &m->table[id];
    if (layer < 0 || layer >= (p->per_layer ? m->cfg.n_layers : 1)) {
        fatal("model: layer %d out of range for tensor %s", layer, p->name);
    }
    return p->offset + (size_t)layer * (size_t)p->rows * (size_t)(p->cols ? p->cols : 1);
}

static size_t tensor_numel(const Model* m, ParamId id) {
    const ParamInfo* p = &m->table[id];
    return (size_t)p->rows * (size_t)(p->cols ? p->cols : 1);
}

float* model_param(Model* m, ParamId id, int layer) {
    return m->table[id].numel ? m->params + tensor_offset(m, id, layer) : NULL;
}

float* model_grad(Model* m, ParamId id, int layer) {
    return m->table[id].numel ? m->grads + tensor_offset(m, id, layer) : NULL;
}

void model_params_download(Model* m, float* host) {
    m->be->download(m->be, host, m->params, m->num_params * sizeof(float));
}

void model_params_upload(Model* m, const float* host) {
    m->be->upload(m->be, m->params, host, m->num_params * sizeof(float));
}

void model_grads_download(Model* m, float* host) {
    m->be->download(m->be, host, m->grads, m->num_params * sizeof(float));
}

void model_tensor_upload(Model* m, ParamId id, int layer, const float* host) {
    if (!m->table[id].numel) fatal("model: tensor %s is absent in this config", m->table[id].name);
    m->be->upload(m->be, m->params + tensor_offset(m, id, layer), host, tensor_numel(m, id) * sizeof(float));
}

void model_tensor_download(Model* m, ParamId id, int layer, float* host) {
    if (!m->table[id].numel) fatal("model: tensor %s is absent in this config", m->table[id].name);
    m->be->download(m->be, host, m->params + tensor_offset(m, id, layer), tensor_numel(m, id) * sizeof(float));
}

void model_zero_grad(Model* m) { m->be->memset0(m->be, m->grads, m->num_params * sizeof(float)); }

// ----------------------------------------------------------------------------
// forward

// the weight of tensor id in layer l, or its gradient
#define W(id, l) model_param(m, id, l)
#define G(id, l) model_grad(m, id, l)

static void layer_forward(Model* m, int l, int B, int T) {
    Backend* be = m->be;
    const ModelConfig* c = &m->cfg;
    const int N = B * T, D = c->dim, F = c->hidden_dim, H = c->n_heads, KV = c->n_kv_heads, hd = c->head_dim;
    const int Q = H * hd, K = KV * hd;
    const size_t nd = (size_t)N * D, nq = (size_t)N * Q, nk = (size_t)N * K, nf = (size_t)N * F;
    Activations* a = &m->a;
    float* x = a->resid + l * nd;
    float* ln1 = a->ln1 + l * nd;
    float* q = a->q + l * nq;
    float* k = a->k + l * nk;
    float* v = a->v + l * nk;
    float* att = a->att + l * nq;
    float* resid2 = a->resid2 + l * nd;
    float* ln2 = a->ln2 + l * nd;
    float* gate = a->gate + l * nf;
    float* up = a->up + l * nf;
    float* h = a->h + l * nf;

    // attention: qkv projections (into the pre-norm buffers when QK-norm follows). The products
    // that end a sublayer write its output alone (beta 0), and the next norm adds the residual
    // (add_rmsnorm_fwd): no copy of the stream before each of them. Layer 0's input is the embedding.
    float* rstd1 = a->rstd1 + (size_t)l * N;
    if (l == 0) be->rmsnorm_fwd(be, ln1, rstd1, x, W(PARAM_ATTN_NORM, l), N, D, c->norm_eps);
    else be->add_rmsnorm_fwd(be, ln1, rstd1, x, a->resid2 + (l - 1) * nd, W(PARAM_ATTN_NORM, l), N, D, c->norm_eps);
    float* qp = c->qk_norm ? a->qraw + l * nq : q;
    float* kp = c->qk_norm ? a->kraw + l * nk : k;
    be->matmul(be, 0, 1, N, Q, D, 1.0f, ln1, D, W(PARAM_WQ, l), D, 0.0f, qp, Q);
    be->matmul(be, 0, 1, N, K, D, 1.0f, ln1, D, W(PARAM_WK, l), D, 0.0f, kp, K);
    be->matmul(be, 0, 1, N, K, D, 1.0f, ln1, D, W(PARAM_WV, l), D, 0.0f, v, K);
    if (c->qkv_bias) {
        be->add_bias(be, qp, W(PARAM_BQ, l), N, Q);
        be->add_bias(be, kp, W(PARAM_BK, l), N, K);
        be->add_bias(be, v, W(PARAM_BV, l), N, K);
    }
    if (c->qk_norm) {
        be->rmsnorm_fwd(be, q, a->rstdq + (size_t)l * N * H, qp, W(PARAM_Q_NORM, l), N * H, hd, c->norm_eps);
        be->rmsnorm_fwd(be, k, a->rstdk + (size_t)l * N * KV, kp, W(PARAM_K_NORM, l), N * KV, hd, c->norm_eps);
    }
    be->rope_fwd(be, q, m->pos, m->rope_cos, m->rope_sin, N, H, hd);
    be->rope_fwd(be, k, m->pos, m->rope_cos, m->rope_sin, N, KV, hd);
    be->attention_fwd(be, att, a->lse + (size_t)l * N * H, q, Q, k, v, K, m->lengths, m->lengths, B, T, T, H, KV, hd,
                      m->attn_work);
    be->matmul(be, 0, 1, N, D, Q, 1.0f, att, Q, W(PARAM_WO, l), Q, 0.0f, resid2, D);

    // SwiGLU MLP
    be->add_rmsnorm_fwd(be, ln2, a->rstd2 + (size_t)l * N, resid2, x, W(PARAM_MLP_NORM, l), N, D, c->norm_eps);
    be->matmul(be, 0, 1, N, F, D, 1.0f, ln2, D, W(PARAM_W_GATE, l), D, 0.0f, gate, F);
    be->matmul(be, 0, 1, N, F, D, 1.0f, ln2, D, W(PARAM_W_UP, l), D, 0.0f, up, F);
    be->swiglu_fwd(be, h, gate, up, nf);
    be->matmul(be, 0, 1, N, D, F, 1.0f, h, F, W(PARAM_W_DOWN, l), F, 0.0f, a->resid + (l + 1) * nd, D);
}

static const float* lm_head(Model* m) { return W(m->cfg.tied_embeddings ? PARAM_EMBED : PARAM_LM_HEAD, 0); }

void model_forward(Model* m, const int* tokens, const int* lengths, int B, int T, float* logits_out) {
    Backend* be = m->be;
    const ModelConfig* c = &m->cfg;
    if (B <= 0 || B > m->max_batch || T <= 0 || T > m->max_seq) {
        fatal("model_forward: batch %d x %d outside the model's 1..%d x 1..%d", B, T, m->max_batch, m->max_seq);
    }
    const int N = B * T, D = c->dim, V = c->vocab_size, L = c->n_layers;
    // host staging: padded positions get token 0 so the embedding never reads out of range
    int* tok = m->host_ints;
    int* pos = tok + N;
    int* len = pos + N;
    for (int b = 0; b < B; b++) {
        len[b] = lengths ? lengths[b] : T;
        if (len[b] < 0 || len[b] > T) fatal("model_forward: lengths[%d] = %d outside 0..%d", b, len[b], T);
        for (int t = 0; t < T; t++) {
            const int i = b * T + t, id = tokens[i];
            if (t < len[b] && (id < 0 || id >= V)) {
                fatal("model_forward: token id %d at (%d, %d) outside the vocabulary [0, %d)", id, b, t, V);
            }
            tok[i] = t < len[b] ? id : 0;
            pos[i] = t;
        }
    }
    be->upload(be, m->tokens, tok, (size_t)N * sizeof(int));
    be->upload(be, m->pos, pos, (size_t)N * sizeof(int));
    be->upload(be, m->lengths, len, (size_t)B * sizeof(int));
    m->B = B;
    m->T = T;

    be->embedding_fwd(be, m->a.resid, m->tokens, W(PARAM_EMBED, 0), N, D);
    for (int l = 0; l < L; l++) layer_forward(m, l, B, T);
    const size_t nd = (size_t)N * D;
    be->add_rmsnorm_fwd(be, m->a.lnf, m->a.rstdf, m->a.resid + L * nd, m->a.resid2 + (L - 1) * nd,
                        W(PARAM_FINAL_NORM, 0), N, D, c->norm_eps);
    be->matmul(be, 0, 1, N, V, D, 1.0f, m->a.lnf, D, lm_head(m), D, 0.0f, m->a.logits, V);
    if (logits_out) be->download(be, logits_out, m->a.logits, (size_t)N * V * sizeof(float));
}

// ----------------------------------------------------------------------------
// backward

static void layer_backward(Model* m, int l, int B, int T) {
    Backend* be = m->be;
    const ModelConfig* c = &m->cfg;
    const int N = B * T, D = c->dim, F = c->hidden_dim, H = c->n_heads, KV = c->n_kv_heads, hd = c->head_dim;
    const int Q = H * hd, K = KV * hd;
    const size_t nd = (size_t)N * D, nq = (size_t)N * Q, nk = (size_t)N * K, nf = (size_t)N * F;
    Activations* a = &m->a;
    Scratch* s = &m->s;
    const float* x = a->resid + l * nd;
    const float* ln1 = a->ln1 + l * nd;
    const float* resid2 = a->resid2 + l * nd;
    const float* ln2 = a->ln2 + l * nd;

    // MLP: out = resid2 + h W_down^T
    be->matmul(be, 0, 0, N, F, D, 1.0f, s->dresid, D, W(PARAM_W_DOWN, l), F, 0.0f, s->dh, F);
    be->matmul(be, 1, 0, D, F, N, 1.0f, s->dresid, D, a->h + l * nf, F, 1.0f, G(PARAM_W_DOWN, l), F);
    be->swiglu_bwd(be, s->dgate, s->dup, s->dh, a->gate + l * nf, a->up + l * nf, nf);
    be->matmul(be, 0, 0, N, D, F, 1.0f, s->dgate, F, W(PARAM_W_GATE, l), D, 0.0f, s->dln, D);
    be->matmul(be, 0, 0, N, D, F, 1.0f, s->dup, F, W(PARAM_W_UP, l), D, 1.0f, s->dln, D);
    be->matmul(be, 1, 0, F, D, N, 1.0f, s->dgate, F, ln2, D, 1.0f, G(PARAM_W_GATE, l), D);
    be->matmul(be, 1, 0, F, D, N, 1.0f, s->dup, F, ln2, D, 1.0f, G(PARAM_W_UP, l), D);
    be->rmsnorm_bwd(be, s->dresid, G(PARAM_MLP_NORM, l), s->dln, resid2, W(PARAM_MLP_NORM, l),
                    a->rstd2 + (size_t)l * N, N, D);

    // attention: resid2 = x + att Wo^T
    const float* q = a->q + l * nq;
    const float* att = a->att + l * nq;
    be->matmul(be, 0, 0, N, Q, D, 1.0f, s->dresid, D, W(PARAM_WO, l), Q, 0.0f, s->datt, Q);
    be->matmul(be, 1, 0, D, Q, N, 1.0f, s->dresid, D, att, Q, 1.0f, G(PARAM_WO, l), Q);
    be->attention_bwd(be, s->dq, s->dk, s->dv, s->datt, att, a->lse + (size_t)l * N * H, q, Q, a->k + l * nk,
                      a->v + l * nk, K, m->lengths, m->lengths, B, T, T, H, KV, hd, m->attn_work);
    be->rope_bwd(be, s->dq, m->pos, m->rope_cos, m->rope_sin, N, H, hd);
    be->rope_bwd(be, s->dk, m->pos, m->rope_cos, m->rope_sin, N, KV, hd);
    float* dqp = s->dq;
    float* dkp = s->dk;
    if (c->qk_norm) {
        be->memset0(be, s->dqraw, nq * sizeof(float));
        be->memset0(be, s->dkraw, nk * sizeof(float));
        be->rmsnorm_bwd(be, s->dqraw, G(PARAM_Q_NORM, l), s->dq, a->qraw + l * nq, W(PARAM_Q_NORM, l),
                        a->rstdq + (size_t)l * N * H, N * H, hd);
        be->rmsnorm_bwd(be, s->dkraw, G(PARAM_K_NORM, l), s->dk, a->kraw + l * nk, W(PARAM_K_NORM, l),
                        a->rstdk + (size_t)l * N * KV, N * KV, hd);
        dqp = s->dqraw;
        dkp = s->dkraw;
    }
    if (c->qkv_bias) {
        be->bias_bwd(be, G(PARAM_BQ, l), dqp, N, Q);
        be->bias_bwd(be, G(PARAM_BK, l), dkp, N, K);
        be->bias_bwd(be, G(PARAM_BV, l), s->dv, N, K);
    }
    // the q, k, v projections' backward as one stacked layer (ops.h, linear_bwd)
    const LinearBlocks qkv = {.n = 3,
                              .rows = {Q, K, K},
                              .w = {W(PARAM_WQ, l), W(PARAM_WK, l), W(PARAM_WV, l)},
                              .dw = {G(PARAM_WQ, l), G(PARAM_WK, l), G(PARAM_WV, l)},
                              .dy = {dqp, dkp, s->dv}};
    be->linear_bwd(be, &qkv, ln1, s->dln, 0.0f, N, D);
    be->rmsnorm_bwd(be, s->dresid, G(PARAM_ATTN_NORM, l), s->dln, x, W(PARAM_ATTN_NORM, l),
                    a->rstd1 + (size_t)l * N, N, D);
}

void model_backward(Model* m, float* dlogits) {
    if (m->B == 0) fatal("model_backward called before model_forward");
    Backend* be = m->be;
    const ModelConfig* c = &m->cfg;
    const int B = m->B, T = m->T, N = B * T, D = c->dim, V = c->vocab_size, L = c->n_layers;
    Scratch* s = &m->s;

    be->mask_rows(be, dlogits, m->lengths, B, T, V);
    float* dhead = G(c->tied_embeddings ? PARAM_EMBED : PARAM_LM_HEAD, 0);
    be->matmul(be, 1, 0, V, D, N, 1.0f, dlogits, V, m->a.lnf, D, 1.0f, dhead, D);
    be->matmul(be, 0, 0, N, D, V, 1.0f, dlogits, V, lm_head(m), D, 0.0f, s->dln, D);
    be->memset0(be, s->dresid, (size_t)N * D * sizeof(float));
    be->rmsnorm_bwd(be, s->dresid, G(PARAM_FINAL_NORM, 0), s->dln, m->a.resid + (size_t)L * N * D,
                    W(PARAM_FINAL_NORM, 0), m->a.rstdf, N, D);
    for (int l = L - 1; l >= 0; l--) layer_backward(m, l, B, T);
    be->embedding_bwd(be, G(PARAM_EMBED, 0), s->dresid, m->tokens, N, D, V);
}

// ----------------------------------------------------------------------------
// one training step with cross-entropy

float model_train_step_ce(Model* m, AdamW* opt, const int* tokens, const int* targets, const float* weights,
                          const int* lengths, int B, int T, float* grad_norm) {
    Backend* be = m->be;
    const int N = B * T, V = m->cfg.vocab_size;
    model_forward(m, tokens, lengths, B, T, NULL);
    // padded positions never count, whatever the caller's weights say
    int* tgt = m->host_ints; // the token staging is free again after the forward's upload
    for (int b = 0; b < B; b++) {
        const int len = lengths ? lengths[b] : T;
        for (int t = 0; t < T; t++) {
            const int i = b * T + t;
            tgt[i] = t < len ? targets[i] : -1;
            m->host_w[i] = t < len ? weights[i] : 0.0f;
        }
    }
    be->upload(be, m->targets, tgt, (size_t)N * sizeof(int));
    be->upload(be, m->weights, m->host_w, (size_t)N * sizeof(float));
    double loss = loss_cross_entropy(be, m->a.logits, m->targets, m->weights, N, V, NULL, m->s.dlogits, LOSS_DZ_SET);
    model_zero_grad(m);
    model_backward(m, m->s.dlogits);
    float norm = adamw_step(opt, m->params, m->grads);
    if (grad_norm) *grad_norm = norm;
    return (float)loss;
}
