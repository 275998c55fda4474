// Batched incremental decoding with a KV cache (see decode.h): the slots' caches, the batched
// forward over ragged feeds, and the generation loop. Sampling itself is in sample.c.
//
// A feed packs the new tokens of all slots densely, slot after slot, as the rows of one
// forward: the projections and the MLP run as (rows, D) matmuls, the attention op runs once
// per run of consecutive slot ids fed the same number of tokens (a decode step over slots
// 0..B-1 is one call) with each slot's cache as its keys and values; each layer's new keys and
// values go into the caches by one scatter_rows call each, whatever the slots. Feeds longer than
// the row budget are split into chunks; a slot's tokens go in order, so a later chunk sees the
// cache rows an earlier one wrote. A chunk's ids, positions, cache rows and segment lengths go to
// the device in one upload.
#include "model/decode.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "common/check.h"
#include "common/log.h"
#include "model/loss.h"

#define DECODE_CHUNK_ROWS 256 // rows per batched forward (at least max_batch)
#define DECODE_HEAD_ROWS 32   // rows per LM-head block (at least max_batch)
// Draws run on the device (the backend's sample_rows) where they need no sorting (top_k and top_p
// off), the backend is not the CPU's and at most this many top-k log-probs are recorded: only ids
// and records come back, not V logits per slot and step. The CPU keeps the host path, whose
// results sample_rows reproduces but not necessarily bit for bit (sums in another order).
#define DECODE_DEVICE_TOPK_MAX 64

// ----------------------------------------------------------------------------
// state

// one slot's share of a chunk: c tokens at cache positions p.., rows r0..r0+c of the chunk
typedef struct {
    int slot, p, c, r0;
    int src;       // index into the feed's arrays
    int t0;        // offset of the first token in tokens[src]
    int last;      // the chunk holds the slot's last fed token
} Segment;

// a row whose logits are wanted and where they go (NULL for none)
typedef struct {
    int row;
    float* all;  // its row of all_logits (host; a backend buffer in decoder_feed_device)
    float* last; // the slot's decoder_logits (host)
} HeadRow;

struct Decoder {
    Model* m;
    Backend* be;
    ModelConfig c;
    int max_batch, max_len;
    int rows;          // row budget of one forward
    int head_rows;     // rows of one LM-head block
    int* len;          // (max_batch) tokens in each slot's cache
    int* ids;          // (max_batch, max_len) the ids in each slot's cache
    int* logits_ok;    // (max_batch) logits[slot] belongs to the slot's last position
    float* logits;     // (max_batch, V) host logits of each slot's last position
    // kc, vc and the per-row tensors but x, rstd, lse, sel and z are activation buffers (ops.h)
    float* kc;         // (L, max_batch, max_len, KV*hd) key cache, after QK-norm and RoPE
    float* vc;         // (L, max_batch, max_len, KV*hd)
    float* rope_cos;   // (max_len, hd/2)
    float* rope_sin;   // (max_len, hd/2)
    // one forward's rows
    float* x;          // (rows, D) residual stream
    float* ln;         // (rows, D) norm output
    float* rstd;       // (rows * H) norm statistics (unused afterwards)
    float* qraw;       // (rows, H*hd) before the QK-norm (qk_norm only)
    float* kraw;       // (rows, KV*hd)
    float* q;          // (rows, H*hd)
    float* k;          // (rows, KV*hd)
    float* v;          // (rows, KV*hd)
    float* att;        // (rows, H*hd)
    float* lse;        // (rows * H)
    float* gate;       // (rows, F)
    float* up;         // (rows, F)
    float* h;          // (rows, F)
    float* sel;        // (head_rows, D) rows whose logits are wanted
    float* seln;       // (head_rows, D) their final norm
    float* z;          // (head_rows, V) their logits
    // a chunk's integers, one device buffer (META_INTS(rows)) uploaded at once from host
    int* tok_dev;      // (rows) token ids
    int* pos_dev;      // (rows) positions
    int* row_dev;      // (rows) cache row of each row: slot * max_len + position
    int* qlen_dev;     // (rows) per segment
    int* kvlen_dev;    // (rows) per segment
    int* host;         // staging, laid out as tok_dev .. kvlen_dev
    HeadRow* want;     // (rows) rows of one chunk whose logits are wanted
    void* attn_work;
    // decoding's draws and scoring on the device (generate_device, score_device)
    int device;         // the backend is not the CPU's
    int last_on_device; // a feed leaves the slots' last logits in z (rows in feed order), none on the host
    double* u_dev;      // (head_rows) the draws' uniforms
    void* rows_dev;     // (head_rows rows) sample_rows' outputs, laid out as RowsOut
    void* rows_host;    // its host copy
    float* score_z;     // (head_rows, V) decoder_score's rows on the device (allocated at first use)
};

static float* falloc(Backend* be, size_t n) { return be->alloc(be, n * sizeof(float)); }
// activation storage (ops.h): bf16 on the CUDA backend's bf16 mode (the KV cache among them)
static float* act(Backend* be, size_t n) { return be->alloc_act(be, n); }

// sample_rows' outputs for up to head_rows rows in one buffer, so that a step brings them back in one
// download: ids, log-probs, tails, then the top-k ids and log-probs (rows of K, up to
// DECODE_DEVICE_TOPK_MAX each)
typedef struct {
    int* ids;
    float *lp, *tail;
    int* tk_ids;
    float* tk_lp;
} RowsOut;

#define META_INTS(R) (5 * (size_t)(R)) // tok, pos, row, qlen and kvlen of a chunk of R rows

#define ROWS_OUT_WORDS(R) ((size_t)(R) * (3 + 2 * DECODE_DEVICE_TOPK_MAX)) // 4-byte words

static RowsOut rows_out(void* base, int R) {
    int32_t* w = base;
    const size_t r = (size_t)R, tk = r * DECODE_DEVICE_TOPK_MAX;
    return (RowsOut){.ids = (int*)w, .lp = (float*)(w + r), .tail = (float*)(w + 2 * r), .tk_ids = (int*)(w + 3 * r),
                     .tk_lp = (float*)(w + 3 * r + tk)};
}

// ----------------------------------------------------------------------------
// lifetime

Decoder* decoder_create(Model* m, int max_batch, int max_len) {
    if (max_batch <= 0 || max_len <= 0) {
        fatal("decoder_create: max_batch (%d) and max_len (%d) must be positive", max_batch, max_len);
    }
    Decoder* d = callocCheck(1, sizeof(Decoder));
    Backend* be = model_backend(m);
    d->m = m;
    d->be = be;
    d->c = *model_config(m);
    d->max_batch = max_batch;
    d->max_len = max_len;
    d->rows = max_batch > DECODE_CHUNK_ROWS ? max_batch : DECODE_CHUNK_ROWS;
    d->head_rows = max_batch > DECODE_HEAD_ROWS ? max_batch : DECODE_HEAD_ROWS;
    const ModelConfig* c = &d->c;
    const size_t L = c->n_layers, D = c->dim, F = c->hidden_dim, V = c->vocab_size, H = c->n_heads;
    const size_t Q = H * c->head_dim, K = (size_t)c->n_kv_heads * c->head_dim, R = d->rows;

    d->len = callocCheck((size_t)max_batch, sizeof(int));
    d->ids = mallocCheck((size_t)max_batch * max_len * sizeof(int));
    d->logits_ok = callocCheck((size_t)max_batch, sizeof(int));
    d->logits = mallocCheck((size_t)max_batch * V * sizeof(float));
    d->kc = act(be, L * max_batch * max_len * K);
    d->vc = act(be, L * max_batch * max_len * K);

    // RoPE tables as model.c builds them, for this decoder's positions
    const int half = c->head_dim / 2;
    const size_t nt = (size_t)max_len * half;
    float* cs = mallocCheck(2 * nt * sizeof(float));
    for (int i = 0; i < half; i++) {
        const double f = model_rope_inv_freq(c, i);
        for (int t = 0; t < max_len; t++) {
            cs[(size_t)t * half + i] = (float)cos(t * f);
            cs[nt + (size_t)t * half + i] = (float)sin(t * f);
        }
    }
    d->rope_cos = falloc(be, nt);
    d->rope_sin = falloc(be, nt);
    be->upload(be, d->rope_cos, cs, nt * sizeof(float));
    be->upload(be, d->rope_sin, cs + nt, nt * sizeof(float));
    free(cs);

    d->x = falloc(be, R * D);
    d->ln = act(be, R * D);
    d->rstd = falloc(be, R * H);
    if (c->qk_norm) {
        d->qraw = act(be, R * Q);
        d->kraw = act(be, R * K);
    }
    d->q = act(be, R * Q);
    d->k = act(be, R * K);
    d->v = act(be, R * K);
    d->att = act(be, R * Q);
    d->lse = falloc(be, R * H);
    d->gate = act(be, R * F);
    d->up = act(be, R * F);
    d->h = act(be, R * F);
    d->sel = falloc(be, (size_t)d->head_rows * D);
    d->seln = act(be, (size_t)d->head_rows * D);
    d->z = falloc(be, (size_t)d->head_rows * V);
    d->tok_dev = be->alloc(be, META_INTS(R) * sizeof(int));
    d->pos_dev = d->tok_dev + R;
    d->row_dev = d->pos_dev + R;
    d->qlen_dev = d->row_dev + R;
    d->kvlen_dev = d->qlen_dev + R;
    d->host = mallocCheck(META_INTS(R) * sizeof(int));
    d->want = mallocCheck(R * sizeof(HeadRow));
    d->attn_work = be->alloc(be, be->attention_work_bytes(be, max_len));
    d->device = strcmp(be->name, "cpu") != 0;
    if (d->device) { // a step's slots, or a block of scored rows
        d->u_dev = be->alloc(be, (size_t)d->head_rows * sizeof(double));
        d->rows_dev = be->alloc(be, ROWS_OUT_WORDS(d->head_rows) * 4);
        d->rows_host = mallocCheck(ROWS_OUT_WORDS(d->head_rows) * 4);
    }
    return d;
}

void decoder_free(Decoder* d) {
    if (!d) return;
    Backend* be = d->be;
    void* bufs[] = {d->kc,   d->vc,   d->rope_cos, d->rope_sin, d->x,       d->ln,      d->rstd,
                    d->qraw, d->kraw, d->q,        d->k,        d->v,       d->att,     d->lse,
                    d->gate, d->up,   d->h,        d->sel,      d->seln,    d->z,       d->tok_dev,
                    d->attn_work, d->u_dev, d->rows_dev, d->score_z};
    for (size_t i = 0; i < sizeof bufs / sizeof bufs[0]; i++) {
        if (bufs[i]) be->free(be, bufs[i]);
    }
    free(d->len);
    free(d->ids);
    free(d->logits_ok);
    free(d->logits);
    free(d->host);
    free(d->want);
    free(d->rows_host);
    free(d);
}

// ----------------------------------------------------------------------------
// slots

static void check_slot(const Decoder* d, int slot, const char* fn) {
    if (slot < 0 || slot >= d->max_batch) fatal("%s: slot %d outside 0..%d", fn, slot, d->max_batch - 1);
}

Model* decoder_model(const Decoder* d) { return d->m; }
int decoder_max_batch(const Decoder* d) { return d->max_batch; }
int decoder_max_len(const Decoder* d) { return d->max_len; }

int decoder_length(const Decoder* d, int slot) {
    check_slot(d, slot, "decoder_length");
    return d->len[slot];
}

const int* decoder_tokens(const Decoder* d, int slot) {
    check_slot(d, slot, "decoder_tokens");
    return d->ids + (size_t)slot * d->max_len;
}

void decoder_reset(Decoder* d, int slot) {
    check_slot(d, slot, "decoder_reset");
    d->len[slot] = 0;
    d->logits_ok[slot] = 0;
}

void decoder_truncate(Decoder* d, int slot, int n) {
    check_slot(d, slot, "decoder_truncate");
    if (n < 0 || n > d->len[slot]) fatal("decoder_truncate: n = %d outside 0..%d (slot %d)", n, d->len[slot], slot);
    if (n == d->len[slot]) return;
    // the rows past n stay in the cache and are overwritten by the next feed
    d->len[slot] = n;
    d->logits_ok[slot] = 0;
}

void decoder_copy(Decoder* d, int dst_slot, int src_slot) {
    check_slot(d, dst_slot, "decoder_copy");
    check_slot(d, src_slot, "decoder_copy");
    if (dst_slot == src_slot) return;
    Backend* be = d->be;
    const size_t K = (size_t)d->c.n_kv_heads * d->c.head_dim, n = d->len[src_slot];
    for (int l = 0; l < d->c.n_layers; l++) {
        const size_t layer = (size_t)l * d->max_batch * d->max_len * K;
        const size_t dst = layer + (size_t)dst_slot * d->max_len * K, src = layer + (size_t)src_slot * d->max_len * K;
        be->copy(be, d->kc + dst, d->kc + src, n * K * sizeof(float));
        be->copy(be, d->vc + dst, d->vc + src, n * K * sizeof(float));
    }
    memcpy(d->ids + (size_t)dst_slot * d->max_len, d->ids + (size_t)src_slot * d->max_len, n * sizeof(int));
    const size_t V = d->c.vocab_size;
    memcpy(d->logits + (size_t)dst_slot * V, d->logits + (size_t)src_slot * V, V * sizeof(float));
    d->len[dst_slot] = (int)n;
    d->logits_ok[dst_slot] = d->logits_ok[src_slot];
}

const float* decoder_logits(const Decoder* d, int slot) {
    check_slot(d, slot, "decoder_logits");
    return d->logits_ok[slot] ? d->logits + (size_t)slot * d->c.vocab_size : NULL;
}

// ----------------------------------------------------------------------------
// one batched forward over a chunk's segments

#define W(id, l) model_param(d->m, id, l)

static void layer_step(Decoder* d, int l, const Segment* seg, int ns, int N) {
    Backend* be = d->be;
    const ModelConfig* c = &d->c;
    const int D = c->dim, F = c->hidden_dim, H = c->n_heads, KV = c->n_kv_heads, hd = c->head_dim;
    const int Q = H * hd, K = KV * hd;
    const size_t slot_stride = (size_t)d->max_len * K;
    float* kc = d->kc + (size_t)l * d->max_batch * slot_stride;
    float* vc = d->vc + (size_t)l * d->max_batch * slot_stride;

    // q, k, v of the new rows
    be->rmsnorm_fwd(be, d->ln, d->rstd, d->x, W(PARAM_ATTN_NORM, l), N, D, c->norm_eps);
    float* qp = c->qk_norm ? d->qraw : d->q;
    float* kp = c->qk_norm ? d->kraw : d->k;
    be->matmul(be, 0, 1, N, Q, D, 1.0f, d->ln, D, W(PARAM_WQ, l), D, 0.0f, qp, Q);
    be->matmul(be, 0, 1, N, K, D, 1.0f, d->ln, D, W(PARAM_WK, l), D, 0.0f, kp, K);
    be->matmul(be, 0, 1, N, K, D, 1.0f, d->ln, D, W(PARAM_WV, l), D, 0.0f, d->v, K);
    if (c->qkv_bias) {
        be->add_bias(be, qp, W(PARAM_BQ, l), N, Q);
        be->add_bias(be, kp, W(PARAM_BK, l), N, K);
        be->add_bias(be, d->v, W(PARAM_BV, l), N, K);
    }
    if (c->qk_norm) {
        be->rmsnorm_fwd(be, d->q, d->rstd, d->qraw, W(PARAM_Q_NORM, l), N * H, hd, c->norm_eps);
        be->rmsnorm_fwd(be, d->k, d->rstd, d->kraw, W(PARAM_K_NORM, l), N * KV, hd, c->norm_eps);
    }
    be->rope_fwd(be, d->q, d->pos_dev, d->rope_cos, d->rope_sin, N, H, hd);
    be->rope_fwd(be, d->k, d->pos_dev, d->rope_cos, d->rope_sin, N, KV, hd);

    // append k, v to the caches, then attend: one call per run of consecutive slots fed alike
    be->scatter_rows(be, kc, d->k, d->row_dev, N, K);
    be->scatter_rows(be, vc, d->v, d->row_dev, N, K);
    for (int s = 0; s < ns;) {
        int e = s + 1;
        while (e < ns && seg[e].slot == seg[e - 1].slot + 1 && seg[e].c == seg[s].c) e++;
        const size_t kv0 = (size_t)seg[s].slot * slot_stride, r0 = seg[s].r0;
        be->attention_fwd(be, d->att + r0 * Q, d->lse + r0 * H, d->q + r0 * Q, Q, kc + kv0, vc + kv0, K,
                          d->qlen_dev + s, d->kvlen_dev + s, e - s, seg[s].c, d->max_len, H, KV, hd, d->attn_work);
        s = e;
    }
    be->matmul(be, 0, 1, N, D, Q, 1.0f, d->att, Q, W(PARAM_WO, l), Q, 1.0f, d->x, D);

    // SwiGLU MLP
    be->rmsnorm_fwd(be, d->ln, d->rstd, d->x, W(PARAM_MLP_NORM, l), N, D, c->norm_eps);
    be->matmul(be, 0, 1, N, F, D, 1.0f, d->ln, D, W(PARAM_W_GATE, l), D, 0.0f, d->gate, F);
    be->matmul(be, 0, 1, N, F, D, 1.0f, d->ln, D, W(PARAM_W_UP, l), D, 0.0f, d->up, F);
    be->swiglu_fwd(be, d->h, d->gate, d->up, (size_t)N * F);
    be->matmul(be, 0, 1, N, D, F, 1.0f, d->h, F, W(PARAM_W_DOWN, l), F, 1.0f, d->x, D);
}

// decoder_feed_device's transfers of a head block's rows w (logits in d->z): one copy per run of
// consecutive destinations into the backend's all_logits, and each slot's last row down to d->logits
static void head_rows_device(Decoder* d, const HeadRow* w, int nr) {
    Backend* be = d->be;
    const size_t V = (size_t)d->c.vocab_size;
    for (int i = 0; i < nr;) {
        int e = i + 1;
        if (w[i].all) {
            while (e < nr && w[e].all == w[i].all + (size_t)(e - i) * V) e++;
            be->copy(be, w[i].all, d->z + (size_t)i * V, (size_t)(e - i) * V * sizeof(float));
        }
        i = e;
    }
    for (int j = 0; j < nr; j++) {
        if (w[j].last) be->download(be, w[j].last, d->z + (size_t)j * V, V * sizeof(float));
    }
}

// logits of the wanted rows, LM-head block by block: each slot's last row into d->logits,
// every row into all_logits (at the row's place in the feed's output) when asked; all_dev: that
// is a backend buffer
static void head_step(Decoder* d, const Segment* seg, int ns, float* all_logits, int all_dev,
                      const size_t* out_row) {
    Backend* be = d->be;
    const ModelConfig* c = &d->c;
    const int D = c->dim, V = c->vocab_size;
    const float* head = W(c->tied_embeddings ? PARAM_EMBED : PARAM_LM_HEAD, 0);
    HeadRow* w = d->want;
    int nw = 0;
    for (int s = 0; s < ns; s++) {
        for (int j = 0; j < seg[s].c; j++) {
            HeadRow r = {.row = seg[s].r0 + j};
            if (all_logits) r.all = all_logits + (out_row[seg[s].src] + seg[s].t0 + j) * (size_t)V;
            if (seg[s].last && j == seg[s].c - 1) r.last = d->logits + (size_t)seg[s].slot * V;
            if (r.all || r.last) w[nw++] = r;
        }
    }
    for (int b0 = 0; b0 < nw; b0 += d->head_rows) {
        const int nr = nw - b0 < d->head_rows ? nw - b0 : d->head_rows;
        // gather runs of consecutive rows, then the final norm and the head on the block; a block
        // that is one run (a decode step's rows) is normed where it is
        const float* rows = d->sel;
        for (int i = 0; i < nr;) {
            int e = i + 1;
            while (e < nr && w[b0 + e].row == w[b0 + e - 1].row + 1) e++;
            const float* run = d->x + (size_t)w[b0 + i].row * D;
            if (i == 0 && e == nr) rows = run;
            else be->copy(be, d->sel + (size_t)i * D, run, (size_t)(e - i) * D * sizeof(float));
            i = e;
        }
        be->rmsnorm_fwd(be, d->seln, d->rstd, rows, W(PARAM_FINAL_NORM, 0), nr, D, c->norm_eps);
        be->matmul(be, 0, 1, nr, V, D, 1.0f, d->seln, D, head, D, 0.0f, d->z, V);
        if (all_dev) {
            head_rows_device(d, w + b0, nr);
            continue;
        }
        if (d->last_on_device) continue; // generate_device draws from the rows in z
        // one download per run of rows whose destinations follow each other (a decode step's
        // slots 0..B-1): a GPU backend pays a synchronisation per download
        for (int i = 0; i < nr;) {
            float* dst = w[b0 + i].all ? w[b0 + i].all : w[b0 + i].last;
            int e = i + 1;
            while (e < nr && (w[b0 + e].all ? w[b0 + e].all : w[b0 + e].last) == dst + (size_t)(e - i) * V) e++;
            be->download(be, dst, d->z + (size_t)i * V, (size_t)(e - i) * V * sizeof(float));
            for (int j = i; j < e; j++) {
                const HeadRow* r = &w[b0 + j];
                if (r->all && r->last) memcpy(r->last, r->all, (size_t)V * sizeof(float));
            }
            i = e;
        }
    }
}

static void chunk_step(Decoder* d, const Segment* seg, int ns, int N, const int* const* tokens, float* all_logits,
                       int all_dev, const size_t* out_row) {
    Backend* be = d->be;
    const int R = d->rows;
    int* tok = d->host;
    int* pos = tok + R;
    int* row = pos + R;
    int* qlen = row + R;
    int* kvlen = qlen + R;
    for (int s = 0; s < ns; s++) {
        for (int j = 0; j < seg[s].c; j++) {
            tok[seg[s].r0 + j] = tokens[seg[s].src][seg[s].t0 + j];
            pos[seg[s].r0 + j] = seg[s].p + j;
            row[seg[s].r0 + j] = seg[s].slot * d->max_len + seg[s].p + j;
        }
        qlen[s] = seg[s].c;
        kvlen[s] = seg[s].p + seg[s].c;
    }
    be->upload(be, d->tok_dev, tok, ((size_t)4 * R + ns) * sizeof(int)); // up to the last kvlen

    be->embedding_fwd(be, d->x, d->tok_dev, W(PARAM_EMBED, 0), N, d->c.dim);
    for (int l = 0; l < d->c.n_layers; l++) layer_step(d, l, seg, ns, N);
    head_step(d, seg, ns, all_logits, all_dev, out_row);
    be->synchronize(be);

    // the chunk's tokens are now in the caches
    for (int s = 0; s < ns; s++) {
        memcpy(d->ids + (size_t)seg[s].slot * d->max_len + seg[s].p, tokens[seg[s].src] + seg[s].t0,
               (size_t)seg[s].c * sizeof(int));
        d->len[seg[s].slot] += seg[s].c;
        // mid-feed, the last position's logits are not computed yet; generate_device keeps them on the device
        d->logits_ok[seg[s].slot] = seg[s].last && !d->last_on_device;
    }
}

// ----------------------------------------------------------------------------
// feeding

static void feed(Decoder* d, int nb, const int* slots, const int* const* tokens, const int* n, float* all_logits,
                 int all_dev) {
    if (nb < 0 || nb > d->max_batch) fatal("decoder_feed: %d slots outside 0..%d", nb, d->max_batch);
    const int V = d->c.vocab_size;
    size_t* out_row = mallocCheck(((size_t)nb + 1) * sizeof(size_t));
    int* seen = callocCheck((size_t)d->max_batch, sizeof(int));
    out_row[0] = 0;
    for (int i = 0; i < nb; i++) {
        const int s = slots[i];
        check_slot(d, s, "decoder_feed");
        if (seen[s]++) fatal("decoder_feed: slot %d appears twice in one feed", s);
        if (n[i] < 0 || d->len[s] + n[i] > d->max_len) {
            fatal("decoder_feed: %d tokens for slot %d, which holds %d of max_len %d", n[i], s, d->len[s], d->max_len);
        }
        for (int t = 0; t < n[i]; t++) {
            if (tokens[i][t] < 0 || tokens[i][t] >= V) {
                fatal("decoder_feed: token id %d (slot %d, position %d) outside the vocabulary [0, %d)", tokens[i][t],
                      s, d->len[s] + t, V);
            }
        }
        out_row[i + 1] = out_row[i] + (size_t)n[i];
    }
    free(seen);

    // pack the slots' tokens into chunks of at most d->rows rows, each slot's tokens in order
    Segment* seg = mallocCheck((size_t)d->rows * sizeof(Segment));
    int i = 0, t = 0;
    while (i < nb) {
        int ns = 0, N = 0;
        while (i < nb && N < d->rows) {
            const int c = n[i] - t < d->rows - N ? n[i] - t : d->rows - N;
            if (c > 0) {
                // earlier chunks' tokens are in len already
                seg[ns++] = (Segment){.slot = slots[i], .p = d->len[slots[i]], .c = c, .r0 = N, .src = i, .t0 = t,
                                      .last = t + c == n[i]};
                N += c;
                t += c;
            }
            if (t == n[i]) {
                i++;
                t = 0;
            }
        }
        if (ns > 0) chunk_step(d, seg, ns, N, tokens, all_logits, all_dev, out_row);
    }
    free(seg);
    free(out_row);
}

void decoder_feed(Decoder* d, int nb, const int* slots, const int* const* tokens, const int* n, float* all_logits) {
    feed(d, nb, slots, tokens, n, all_logits, 0);
}

void decoder_feed_device(Decoder* d, int nb, const int* slots, const int* const* tokens, const int* n,
                         float* all_logits) {
    feed(d, nb, slots, tokens, n, all_logits, 1);
}

int decoder_assign(Decoder* d, int nb, const int* slots, const int* const* tokens, const int* n) {
    if (nb < 0 || nb > d->max_batch) fatal("decoder_assign: %d slots outside 0..%d", nb, d->max_batch);
    int* fs = mallocCheck(((size_t)nb + 1) * sizeof(int));
    int* fn = mallocCheck(((size_t)nb + 1) * sizeof(int));
    const int** ft = mallocCheck(((size_t)nb + 1) * sizeof(int*));
    int nf = 0, reused = 0;
    for (int i = 0; i < nb; i++) {
        const int s = slots[i];
        check_slot(d, s, "decoder_assign");
        if (n[i] < 1 || n[i] > d->max_len) {
            fatal("decoder_assign: %d tokens for slot %d outside 1..%d", n[i], s, d->max_len);
        }
        const int* have = d->ids + (size_t)s * d->max_len;
        int common = 0;
        while (common < d->len[s] && common < n[i] && have[common] == tokens[i][common]) common++;
        if (common == n[i] && d->len[s] == n[i] && d->logits_ok[s]) {
            reused += n[i];
            continue;
        }
        // at least the last token is fed again: its logits are what the caller samples from
        const int keep = common < n[i] ? common : n[i] - 1;
        decoder_truncate(d, s, keep);
        reused += keep;
        fs[nf] = s;
        ft[nf] = tokens[i] + keep;
        fn[nf++] = n[i] - keep;
    }
    decoder_feed(d, nf, fs, ft, fn, NULL);
    free(fs);
    free(fn);
    free(ft);
    return reused;
}

// ----------------------------------------------------------------------------
// generation

static int is_stop_id(int id, const int* stop_ids, int n_stop) {
    for (int i = 0; i < n_stop; i++) {
        if (stop_ids[i] == id) return 1;
    }
    return 0;
}

// The step's drawn tokens (out[i].tokens[out[i].n] of the active slots) are counted, the
// callbacks run in slot order, and the slots that go on stay in `active`; fs, ftok get every
// active slot and its token for the feed, kept[k] the old place of the k-th slot kept. Returns
// how many are kept.
static int step_done(const int* slots, int* active, int na, const int* cap, const int* stop_ids, int n_stop,
                     StopFn stop, void* stop_ctx, GenResult* out, int* fs, int* ftok, int* kept) {
    int keep = 0;
    for (int a = 0; a < na; a++) {
        const int i = active[a], s = slots[i];
        const SampledToken* st = &out[i].tokens[out[i].n];
        out[i].n++;
        fs[a] = s;
        ftok[a] = st->id;
        // the callback sees every token (it may stream them), stop ids and the last included
        const int stopped = stop ? stop(stop_ctx, s, out[i].tokens, out[i].n) : 0;
        const int done = stopped || is_stop_id(st->id, stop_ids, n_stop) || out[i].n == cap[i];
        if (!done) {
            kept[keep] = a;
            active[keep++] = i;
        }
    }
    return keep;
}

// a token's top-k arrays: one block, ids then log-probs (gen_result_free frees topk_ids)
static void token_topk_alloc(SampledToken* st, size_t k) {
    if (k == 0) return;
    st->topk_ids = mallocCheck(k * (sizeof(int) + sizeof(float)));
    st->topk_lp = (float*)(void*)(st->topk_ids + k);
}

// the device paths take rows recording at most DECODE_DEVICE_TOPK_MAX top-k log-probs
static int device_rows(const Decoder* d, int K) { return d->device && K <= DECODE_DEVICE_TOPK_MAX; }

// sample_rows on `rows` rows of z (u NULL: scoring the ids already in rows_dev), its outputs back
// in one download
static RowsOut rows_sample(Decoder* d, const float* z, int rows, float temperature, const double* u, int K) {
    Backend* be = d->be;
    const RowsOut dev = rows_out(d->rows_dev, d->head_rows);
    be->sample_rows(be, z, rows, d->c.vocab_size, temperature, u, K, dev.ids, dev.lp, K ? dev.tk_ids : NULL,
                    K ? dev.tk_lp : NULL, K ? dev.tail : NULL);
    const size_t words = K ? (size_t)(dev.tk_lp - (float*)d->rows_dev) + (size_t)rows * K
                           : (size_t)(dev.lp - (float*)d->rows_dev) + (size_t)rows;
    be->download(be, d->rows_host, d->rows_dev, words * 4);
    return rows_out(d->rows_host, d->head_rows);
}

// st gets row r of h (its top-k arrays hold K entries)
static void row_token(const RowsOut* h, int r, int K, SampledToken* st) {
    st->id = h->ids[r];
    st->logprob = h->lp[r];
    st->tail_mass = K ? h->tail[r] : 0.0f;
    if (K) memcpy(st->topk_ids, h->tk_ids + (size_t)r * K, (size_t)K * sizeof(int));
    if (K) memcpy(st->topk_lp, h->tk_lp + (size_t)r * K, (size_t)K * sizeof(float));
}

// Draws on the device, from the slots' last logits in z (active order): each step uploads the
// uniforms, runs sample_rows and downloads the ids and records; the feed of the drawn tokens
// leaves the next logits in z, and the kept slots' rows move to the front.
static void generate_device(Decoder* d, const int* slots, const SamplingParams* p, Rng* const* rngs, int* active,
                            int na, const int* cap, const int* stop_ids, int n_stop, StopFn stop, void* stop_ctx,
                            GenResult* out, int* fs, int* ftok, const int* const* fptr, const int* ones, int* kept) {
    Backend* be = d->be;
    const size_t V = (size_t)d->c.vocab_size;
    const int K = p->record_topk;
    double* u = mallocCheck((size_t)d->head_rows * sizeof(double));
    for (int a = 0; a < na; a++) {
        be->upload(be, d->z + a * V, d->logits + (size_t)slots[active[a]] * V, V * sizeof(float));
    }
    while (na > 0) {
        // exactly one uniform per draw, none when greedy, from each slot's own stream (as sample_token)
        for (int a = 0; a < na; a++) u[a] = p->temperature == 0.0f ? 0.0 : rng_uniform(rngs[active[a]]);
        be->upload(be, d->u_dev, u, (size_t)na * sizeof(double));
        const RowsOut h = rows_sample(d, d->z, na, p->temperature, d->u_dev, K);
        for (int a = 0; a < na; a++) {
            const int i = active[a];
            SampledToken* st = &out[i].tokens[out[i].n];
            token_topk_alloc(st, (size_t)K);
            row_token(&h, a, K, st);
        }
        const int keep = step_done(slots, active, na, cap, stop_ids, n_stop, stop, stop_ctx, out, fs, ftok, kept);
        d->last_on_device = 1;
        decoder_feed(d, na, fs, fptr, ones, NULL);
        d->last_on_device = 0;
        for (int k = 0; k < keep; k++) {
            if (kept[k] != k) be->copy(be, d->z + (size_t)k * V, d->z + (size_t)kept[k] * V, V * sizeof(float));
        }
        na = keep;
    }
    free(u);
}

// Draws on the host, from the slots' last logits downloaded by each feed.
static void generate_host(Decoder* d, const int* slots, const SamplingParams* p, Rng* const* rngs, int* active, int na,
                          const int* cap, const int* stop_ids, int n_stop, StopFn stop, void* stop_ctx, GenResult* out,
                          int* fs, int* ftok, const int* const* fptr, const int* ones, int* kept) {
    const int V = d->c.vocab_size;
    const size_t k = (size_t)p->record_topk;
    while (na > 0) {
        // the draws are independent (each slot has its own Rng and logits row), so they run in
        // parallel: over a 50k-152k vocabulary they cost more than a GPU's decoding step; the
        // callbacks, which may stream text, then run in slot order
#pragma omp parallel for schedule(static) if (na > 1)
        for (int a = 0; a < na; a++) {
            const int i = active[a];
            SampledToken* st = &out[i].tokens[out[i].n];
            token_topk_alloc(st, k);
            sample_token(d->logits + (size_t)slots[i] * V, V, p, rngs[i], st);
        }
        const int keep = step_done(slots, active, na, cap, stop_ids, n_stop, stop, stop_ctx, out, fs, ftok, kept);
        decoder_feed(d, na, fs, fptr, ones, NULL);
        na = keep;
    }
}

void decoder_generate(Decoder* d, int nb, const int* slots, const SamplingParams* p, Rng* const* rngs, int max_new,
                      const int* stop_ids, int n_stop, StopFn stop, void* stop_ctx, GenResult* out) {
    char msg[256];
    const int V = d->c.vocab_size;
    if (sampling_params_check(p, V, msg, sizeof msg) != 0) fatal("decoder_generate: %s", msg);
    if (nb < 0 || nb > d->max_batch) fatal("decoder_generate: %d slots outside 0..%d", nb, d->max_batch);
    int* fs = mallocCheck(((size_t)nb + 1) * sizeof(int));
    int* ftok = mallocCheck(((size_t)nb + 1) * sizeof(int));
    int* ones = mallocCheck(((size_t)nb + 1) * sizeof(int));
    const int** fptr = mallocCheck(((size_t)nb + 1) * sizeof(int*));
    int* active = mallocCheck(((size_t)nb + 1) * sizeof(int));
    int* cap = mallocCheck(((size_t)nb + 1) * sizeof(int));
    int* kept = mallocCheck(((size_t)nb + 1) * sizeof(int));
    for (int i = 0; i < nb; i++) {
        ones[i] = 1;
        fptr[i] = ftok + i;
    }

    // slots whose last logits are gone (truncated since their last feed) feed their last token again
    int nf = 0;
    for (int i = 0; i < nb; i++) {
        const int s = slots[i];
        check_slot(d, s, "decoder_generate");
        if (d->logits_ok[s]) continue;
        if (d->len[s] == 0) fatal("decoder_generate: slot %d is empty (feed a prompt first)", s);
        decoder_truncate(d, s, d->len[s] - 1);
        fs[nf] = s;
        ftok[nf++] = d->ids[(size_t)s * d->max_len + d->len[s]];
    }
    decoder_feed(d, nf, fs, fptr, ones, NULL);

    // every sampled token is fed, so a slot generates at most its free cache rows
    int na = 0;
    for (int i = 0; i < nb; i++) {
        const int room = d->max_len - d->len[slots[i]];
        cap[i] = max_new < room ? max_new : room;
        if (cap[i] < 0) cap[i] = 0;
        out[i].n = 0;
        out[i].tokens = callocCheck((size_t)cap[i] + 1, sizeof(SampledToken));
        if (cap[i] > 0) active[na++] = i;
    }
    // draws that need no sorting (top_k and top_p off) can run on the device
    if (device_rows(d, p->record_topk) && (p->top_k == 0 || p->top_k >= V) && p->top_p >= 1.0f) {
        generate_device(d, slots, p, rngs, active, na, cap, stop_ids, n_stop, stop, stop_ctx, out, fs, ftok, fptr,
                        ones, kept);
    } else {
        generate_host(d, slots, p, rngs, active, na, cap, stop_ids, n_stop, stop, stop_ctx, out, fs, ftok, fptr, ones,
                      kept);
    }
    free(fs);
    free(ftok);
    free(ones);
    free(fptr);
    free(active);
    free(cap);
    free(kept);
}

// ----------------------------------------------------------------------------
// scoring

// decoder_score on the device: rows in blocks of head_rows, each fed into score_z and scored there
static void score_device(Decoder* d, int slot, const int* tokens, int n, int K, SampledToken* out) {
    Backend* be = d->be;
    const int V = d->c.vocab_size, R = d->head_rows;
    if (!d->score_z) d->score_z = falloc(be, (size_t)R * V);
    for (int j0 = 0; j0 < n; j0 += R) {
        const int rows = n - j0 < R ? n - j0 : R;
        // row j predicts tokens[j]: row 0 holds the slot's logits, row j > 0 comes from feeding tokens[j - 1]
        int r0 = 0;
        if (j0 == 0) {
            be->upload(be, d->score_z, d->logits + (size_t)slot * V, (size_t)V * sizeof(float));
            r0 = 1;
        }
        const int m = rows - r0;
        const int* fed = tokens + j0 + r0 - 1;
        if (m > 0) decoder_feed_device(d, 1, &slot, &fed, &m, d->score_z + (size_t)r0 * V);
        be->upload(be, rows_out(d->rows_dev, R).ids, tokens + j0, (size_t)rows * sizeof(int));
        const RowsOut h = rows_sample(d, d->score_z, rows, 1.0f, NULL, K);
        for (int r = 0; r < rows; r++) row_token(&h, r, K, &out[j0 + r]);
    }
}

void decoder_score(Decoder* d, int slot, const int* tokens, int n, int K, SampledToken* out) {
    check_slot(d, slot, "decoder_score");
    const int V = d->c.vocab_size;
    if (!d->logits_ok[slot]) fatal("decoder_score: slot %d holds no last logits (decoder_assign it first)", slot);
    if (n <= 0) return;
    if (K < 0 || K > (V < LOSS_TOPK_MAX ? V : LOSS_TOPK_MAX)) fatal("decoder_score: top-%d outside 0..%d", K, V);
    if (device_rows(d, K)) {
        score_device(d, slot, tokens, n, K, out);
        return;
    }
    float* logits = mallocCheck(sizeof(float) * (size_t)V * (size_t)n); // (n, V): row j predicts tokens[j]
    memcpy(logits, d->logits + (size_t)slot * V, sizeof(float) * (size_t)V);
    if (n > 1) {
        const int m = n - 1;
        decoder_feed(d, 1, &slot, &tokens, &m, logits + V);
    }
    for (int j = 0; j < n; j++) score_token(logits + (size_t)j * V, V, tokens[j], K, &out[j]);
    free(logits);
}

void gen_result_free(GenResult* r) {
    if (!r || !r->tokens) return;
    for (int j = 0; j < r->n; j++) free(r->tokens[j].topk_ids);
    free(r->tokens);
    r->tokens = NULL;
    r->n = 0;
}
