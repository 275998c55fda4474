// test_ops_gpu's vocabulary-wide blocks (softmax, log-softmax, the losses, the distillation
// objective's row ops), CUDA against CPU through the gpu_compare.h harness; see test_ops_gpu.c
// for the tolerances and what every case checks.
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
#include "model/safetensors.h" // bf16 conversions

#define ARRAY_LEN(a) (sizeof(a) / sizeof((a)[0]))

void test_softmax(void** state);
void test_losses(void** state);
void test_objective_rows(void** state);
void test_sample_rows(void** state);

// ----------------------------------------------------------------------------
// vocabulary-wide blocks: softmax, log-softmax and the losses

typedef enum { LOSS_CE, LOSS_KL_FULL, LOSS_KL_TOPK, LOSS_KL_SAMPLED } LossKind;

typedef struct {
    LossKind kind;
    int N, V, K, reverse, with_old; // K: top-k ids per row; with_old: kl_sampled's old_lp
    int act_dz;                     // dz an activation buffer (bf16 storage in the bf16 mode)
    int act_z;                      // the logits too, as the model's (values rounded to bf16 first)
    int off; // z, dz and the teacher's full rows one element into their buffers (1: misaligned, so
             // the rows' 4-wide passes must be refused); fp32 buffers only
} VocabArgs;

// n host floats uploaded `off` elements into a buffer of n + off; returns where they start
static float* upload_at(GpuCtx* c, const float* h, size_t n, int off) {
    float* pad = calloc(n + (size_t)off, sizeof(float));
    memcpy(pad + off, h, n * sizeof(float));
    float* d = gpu_upload(c, pad, (n + (size_t)off) * sizeof(float));
    free(pad);
    return d + off;
}

// logits with a spread of 3 and one row shifted far up (softmax must subtract its max); as an
// activation buffer, values a bf16 holds exactly, so that every backend sees the same numbers
static float* vocab_logits(GpuCtx* c, const VocabArgs* a) {
    const size_t n = (size_t)a->N * a->V;
    float* z = host_randn(c, n, 3.0);
    for (int v = 0; v < a->V; v++) z[v] += 1e4f;
    float* d;
    if (a->act_z) {
        for (size_t i = 0; i < n; i++) z[i] = st_bf16_to_f32(st_f32_to_bf16(z[i]));
        d = gpu_act_zeros(c, n);
        c->be->upload(c->be, d, z, sizeof(float) * n);
    } else {
        d = upload_at(c, z, n, a->off);
    }
    free(z);
    return d;
}

static void case_softmax(GpuCtx* c, const void* arg) {
    const VocabArgs* a = arg;
    const size_t n = (size_t)a->N * a->V;
    float* z = vocab_logits(c, a);
    float* y = gpu_junk(c, n);
    c->be->softmax(c->be, y, z, a->N, a->V);
    gpu_out(c, "softmax", y, n, 0);
    c->be->log_softmax(c->be, y, z, a->N, a->V);
    gpu_out(c, "log_softmax", y, n, 0);
}

// the teacher's log-probabilities of a random distribution over V (normalised in double)
static float* teacher_logprobs(GpuCtx* c, int N, int V) {
    float* lp = host_randn(c, (size_t)N * V, 2.0);
    for (int n = 0; n < N; n++) {
        float* row = lp + (size_t)n * V;
        double m = row[0], s = 0.0;
        for (int v = 1; v < V; v++) m = row[v] > m ? row[v] : m;
        for (int v = 0; v < V; v++) s += exp(row[v] - m);
        for (int v = 0; v < V; v++) row[v] = (float)(row[v] - m - log(s));
    }
    return lp;
}

// K distinct random ids per row and the teacher's log-probs of them, holding 1 - tail of its
// mass; row 1 has tail 0 (an empty tail bucket)
static void teacher_topk(GpuCtx* c, const VocabArgs* a, int* ids, float* lp, float* tail) {
    for (int n = 0; n < a->N; n++) {
        int* row = ids + (size_t)n * a->K;
        for (int i = 0; i < a->K; i++) {
            int id, dup;
            do {
                id = (int)rng_below(&c->rng, (uint64_t)a->V);
                dup = 0;
                for (int j = 0; j < i; j++) dup |= row[j] == id;
            } while (dup);
            row[i] = id;
        }
        tail[n] = n == 1 ? 0.0f : 0.3f * rng_uniformf(&c->rng);
        double s = 0.0;
        float* l = lp + (size_t)n * a->K;
        for (int i = 0; i < a->K; i++) s += (l[i] = (float)(rng_uniform(&c->rng) + 0.05));
        for (int i = 0; i < a->K; i++) l[i] = (float)log(l[i] / s * (1.0 - tail[n]));
    }
}

static void case_loss(GpuCtx* c, const void* arg) {
    const VocabArgs* a = arg;
    Backend* be = c->be;
    const int N = a->N, V = a->V, K = a->K;
    float* z = vocab_logits(c, a);
    float* hw = malloc(sizeof(float) * N);
    int* hid = malloc(sizeof(int) * N * (K ? K : 1));
    for (int n = 0; n < N; n++) {
        hw[n] = n % 4 == 2 ? 0.0f : 0.05f * (float)(n + 1); // every fourth row has weight 0
        hid[n] = n % 5 == 3 && a->kind == LOSS_CE ? -1 : (int)rng_below(&c->rng, (uint64_t)V); // CE: target -1 skips
    }
    float* w = gpu_upload(c, hw, sizeof(float) * N);
    float* losses = gpu_junk(c, (size_t)N);
    const size_t nv = (size_t)N * V;
    float* dz = a->act_dz ? gpu_act_randn(c, nv, 1e-3) : gpu_randn(c, nv + a->off, 1e-3) + a->off;
    float* dzs = a->act_dz ? gpu_act_junk(c, nv) : gpu_junk(c, nv + a->off) + a->off; // LOSS_DZ_SET's
    double ret = 0.0, ret_bare = 0.0; // with losses and dz, and with both NULL
    switch (a->kind) {
    case LOSS_CE: {
        int* t = gpu_upload(c, hid, sizeof(int) * N);
        ret = be->cross_entropy(be, z, t, w, N, V, losses, dz, LOSS_DZ_ADD);
        ret_bare = be->cross_entropy(be, z, t, w, N, V, NULL, NULL, LOSS_DZ_ADD);
        be->cross_entropy(be, z, t, w, N, V, NULL, dzs, LOSS_DZ_SET);
        break;
    }
    case LOSS_KL_FULL: {
        float* hlp = teacher_logprobs(c, N, V);
        float* lp = upload_at(c, hlp, nv, a->off);
        free(hlp);
        ret = be->kl_full(be, z, lp, w, N, V, a->reverse, losses, dz, LOSS_DZ_ADD);
        ret_bare = be->kl_full(be, z, lp, w, N, V, a->reverse, NULL, NULL, LOSS_DZ_ADD);
        be->kl_full(be, z, lp, w, N, V, a->reverse, NULL, dzs, LOSS_DZ_SET);
        break;
    }
    case LOSS_KL_TOPK: {
        float* hlp = malloc(sizeof(float) * N * K);
        float* htail = malloc(sizeof(float) * N);
        teacher_topk(c, a, hid, hlp, htail);
        int* ids = gpu_upload(c, hid, sizeof(int) * N * K);
        float* lp = gpu_upload(c, hlp, sizeof(float) * N * K);
        float* tail = gpu_upload(c, htail, sizeof(float) * N);
        free(hlp), free(htail);
        ret = be->kl_topk(be, z, ids, lp, tail, w, N, V, K, a->reverse, losses, dz, LOSS_DZ_ADD);
        ret_bare = be->kl_topk(be, z, ids, lp, tail, w, N, V, K, a->reverse, NULL, NULL, LOSS_DZ_ADD);
        be->kl_topk(be, z, ids, lp, tail, w, N, V, K, a->reverse, NULL, dzs, LOSS_DZ_SET);
        break;
    }
    case LOSS_KL_SAMPLED: {
        float* hlp = malloc(sizeof(float) * N);
        float* hold = malloc(sizeof(float) * N);
        for (int n = 0; n < N; n++) {
            hlp[n] = -8.0f * rng_uniformf(&c->rng) - 0.1f;
            hold[n] = -8.0f * rng_uniformf(&c->rng) - 0.1f;
        }
        int* ids = gpu_upload(c, hid, sizeof(int) * N);
        float* lp = gpu_upload(c, hlp, sizeof(float) * N);
        float* old = a->with_old ? gpu_upload(c, hold, sizeof(float) * N) : NULL;
        free(hlp), free(hold);
        ret = be->kl_sampled(be, z, ids, lp, old, w, N, V, losses, dz, LOSS_DZ_ADD);
        ret_bare = be->kl_sampled(be, z, ids, lp, old, w, N, V, NULL, NULL, LOSS_DZ_ADD);
        be->kl_sampled(be, z, ids, lp, old, w, N, V, NULL, dzs, LOSS_DZ_SET);
        break;
    }
    }
    gpu_out(c, "losses", losses, (size_t)N, 1);
    gpu_out(c, "dz", dz, (size_t)N * V, 0);
    gpu_out(c, "dz (set)", dzs, (size_t)N * V, 1);
    gpu_out_scalar(c, "sum", ret);
    gpu_out_scalar(c, "sum_bare", ret_bare);
    free(hw), free(hid);
}

void test_softmax(void** state) {
    (void)state;
    const int vocab[] = {7, 300, 50304, 151936};
    char label[96];
    for (size_t i = 0; i < ARRAY_LEN(vocab); i++) {
        const VocabArgs a = {.N = 5, .V = vocab[i]};
        snprintf(label, sizeof label, "softmax, log_softmax N=%d V=%d", a.N, a.V);
        gpu_check(label, case_softmax, &a, 90 + i, TOL_ELEMENTWISE);
    }
    gpu_done();
}

void test_losses(void** state) {
    (void)state;
    static const char* const names[] = {"cross_entropy", "kl_full", "kl_topk", "kl_sampled"};
    const VocabArgs cases[] = {
        {LOSS_CE, 12, 300, 0, 0, 0, 0, 0, 0},           {LOSS_CE, 12, 50304, 0, 0, 0, 0, 0, 0},
        {LOSS_CE, 8, 151936, 0, 0, 0, 0, 0, 0},         {LOSS_KL_FULL, 8, 50304, 0, 0, 0, 0, 0, 0},
        {LOSS_KL_FULL, 8, 50304, 0, 1, 0, 0, 0, 0},     {LOSS_KL_FULL, 4, 151936, 0, 1, 0, 0, 0, 0},
        {LOSS_KL_TOPK, 8, 50304, 1, 0, 0, 0, 0, 0},     {LOSS_KL_TOPK, 8, 50304, 20, 0, 0, 0, 0, 0},
        {LOSS_KL_TOPK, 8, 50304, 20, 1, 0, 0, 0, 0},    {LOSS_KL_TOPK, 6, 151936, 64, 1, 0, 0, 0, 0},
        {LOSS_KL_TOPK, 6, 300, 300, 0, 0, 0, 0, 0},     {LOSS_KL_SAMPLED, 12, 50304, 0, 0, 0, 0, 0, 0},
        {LOSS_KL_SAMPLED, 12, 151936, 0, 0, 1, 0, 0, 0},
        // dz as dlogits in the model: an activation buffer
        {LOSS_CE, 12, 50304, 0, 0, 0, 1, 0, 0},        {LOSS_KL_FULL, 8, 50304, 0, 1, 0, 1, 0, 0},
        {LOSS_KL_TOPK, 8, 50304, 20, 0, 0, 1, 0, 0},   {LOSS_KL_TOPK, 6, 300, 300, 1, 0, 1, 0, 0},
        {LOSS_KL_SAMPLED, 12, 50304, 0, 0, 1, 1, 0, 0},
        // and the logits too, as the model's in the bf16 mode
        {LOSS_CE, 12, 50304, 0, 0, 0, 1, 1, 0},     {LOSS_CE, 7, 301, 0, 0, 0, 1, 1, 0},
        {LOSS_KL_FULL, 8, 50304, 0, 0, 0, 1, 1, 0}, {LOSS_KL_TOPK, 8, 50304, 20, 1, 0, 1, 1, 0},
        {LOSS_KL_TOPK, 8, 50304, 20, 0, 0, 0, 1, 0}, {LOSS_KL_SAMPLED, 12, 50304, 0, 0, 1, 1, 1, 0},
        // misaligned rows of a vocabulary that is a multiple of 4
        {LOSS_CE, 6, 50304, 0, 0, 0, 0, 0, 1},      {LOSS_KL_FULL, 4, 50304, 0, 1, 0, 0, 0, 1},
        {LOSS_KL_TOPK, 4, 50304, 20, 0, 0, 0, 0, 1}, {LOSS_KL_SAMPLED, 6, 50304, 0, 0, 1, 0, 0, 1},
    };
    char label[96];
    for (size_t i = 0; i < ARRAY_LEN(cases); i++) {
        const VocabArgs* a = &cases[i];
        snprintf(label, sizeof label, "%s%s N=%d V=%d%s%s", names[a->kind], a->reverse ? " reverse" : "", a->N, a->V,
                 a->K ? " K=" : "", a->with_old ? " old_lp" : "");
        if (a->K) snprintf(label + strlen(label), sizeof label - strlen(label), "%d", a->K);
        if (a->act_dz) snprintf(label + strlen(label), sizeof label - strlen(label), " dz act");
        if (a->act_z) snprintf(label + strlen(label), sizeof label - strlen(label), " z act");
        if (a->off) snprintf(label + strlen(label), sizeof label - strlen(label), " off=%d", a->off);
        gpu_check(label, case_loss, a, 100 + i, a->act_dz ? TOL_ACT : TOL_ELEMENTWISE);
    }
    gpu_done();
}

// ----------------------------------------------------------------------------
// the distillation objective's row ops: entropy and argmax, the JSD with its surrogate written
// in place (over the top-k buckets and over the vocabulary), the sampled id's log-prob, pick

typedef enum { ROWS_ENTROPY, ROWS_JSD_TOPK, ROWS_JSD_FULL, ROWS_SAMPLED_LP, ROWS_PICK } RowsKind;

typedef struct {
    RowsKind kind;
    int N, V, K;
    double beta;
    int act_z; // the logits an activation buffer (bf16 values)
} RowsArgs;

// every fourth row has weight 0 (skipped: its outputs keep their inputs)
static float* row_weights(GpuCtx* c, int N) {
    float* hw = malloc(sizeof(float) * N);
    for (int n = 0; n < N; n++) hw[n] = n % 4 == 2 ? 0.0f : 0.05f * (float)(n + 1);
    float* w = gpu_upload(c, hw, sizeof(float) * N);
    free(hw);
    return w;
}

static void case_objective_rows(GpuCtx* c, const void* arg) {
    const RowsArgs* a = arg;
    Backend* be = c->be;
    const int N = a->N, V = a->V, K = a->K;
    const VocabArgs va = {.N = N, .V = V, .K = K, .act_z = a->act_z};
    float* z = vocab_logits(c, &va);
    float* w = row_weights(c, N);
    int* hid = malloc(sizeof(int) * N * (K ? K : 1));
    float* hlp = malloc(sizeof(float) * N * (K ? K : 1));
    float* htail = malloc(sizeof(float) * N);
    if (K) teacher_topk(c, &va, hid, hlp, htail);
    switch (a->kind) {
    case ROWS_ENTROPY: {
        double* h = (double*)gpu_junk(c, (size_t)2 * N); // N doubles, every one written
        int* arg_max = (int*)gpu_junk(c, (size_t)N);
        be->entropy(be, z, w, N, V, h, arg_max);
        gpu_out_f64(c, "entropy", h, (size_t)N);
        gpu_out_int(c, "argmax", arg_max, (size_t)N);
        break;
    }
    case ROWS_JSD_TOPK: {
        int* ids = gpu_upload(c, hid, sizeof(int) * N * K);
        float* lp = gpu_upload(c, hlp, sizeof(float) * N * K);
        float* tail = gpu_upload(c, htail, sizeof(float) * N);
        gpu_out_scalar(c, "sum", be->jsd_topk(be, z, ids, lp, tail, w, N, V, K, a->beta, lp, tail));
        gpu_out(c, "lp_s (in place)", lp, (size_t)N * K, 0);
        gpu_out(c, "tail_s (in place)", tail, (size_t)N, 0);
        break;
    }
    case ROWS_JSD_FULL: {
        float* hfull = teacher_logprobs(c, N, V);
        float* lp = gpu_upload(c, hfull, sizeof(float) * N * V);
        free(hfull);
        gpu_out_scalar(c, "sum", be->jsd_full(be, z, lp, w, N, V, a->beta, lp));
        gpu_out(c, "lp_s (in place)", lp, (size_t)N * V, 0);
        break;
    }
    case ROWS_SAMPLED_LP: {
        // y: one of the row's ids (every third row), else any id; every fifth row keeps its value
        int* hy = malloc(sizeof(int) * N);
        float* hout = malloc(sizeof(float) * N);
        for (int n = 0; n < N; n++) {
            hy[n] = n % 3 == 0 ? hid[(size_t)n * K + K / 2] : (int)rng_below(&c->rng, (uint64_t)V);
            hout[n] = n % 5 == 4 ? -3.25f : NAN;
        }
        int* y = gpu_upload(c, hy, sizeof(int) * N);
        int* ids = gpu_upload(c, hid, sizeof(int) * N * K);
        float* lp = gpu_upload(c, hlp, sizeof(float) * N * K);
        float* tail = gpu_upload(c, htail, sizeof(float) * N);
        float* out = gpu_upload(c, hout, sizeof(float) * N);
        be->sampled_lp(be, out, z, y, ids, lp, tail, w, N, V, K);
        float* got = malloc(sizeof(float) * N);
        be->download(be, got, out, sizeof(float) * N);
        for (int n = 0; n < N; n++) got[n] = isnan(got[n]) ? 1e6f : got[n]; // the skipped rows stay NaN
        gpu_out_host(c, "lp_y", got, (size_t)N, 0);
        free(hy), free(hout), free(got);
        break;
    }
    case ROWS_PICK: {
        int* hidx = malloc(sizeof(int) * N);
        for (int n = 0; n < N; n++) hidx[n] = n % 3 == 1 ? -1 : (int)rng_below(&c->rng, (uint64_t)V);
        int* idx = gpu_upload(c, hidx, sizeof(int) * N);
        float* out = gpu_randn(c, (size_t)N, 1.0);
        be->pick(be, out, z, idx, N, V);
        gpu_out(c, "out", out, (size_t)N, 0);
        free(hidx);
        break;
    }
    }
    free(hid), free(hlp), free(htail);
}

void test_objective_rows(void** state) {
    (void)state;
    static const char* const names[] = {"entropy", "jsd_topk", "jsd_full", "sampled_lp", "pick"};
    const RowsArgs cases[] = {
        {ROWS_ENTROPY, 8, 7, 0, 0, 0}, {ROWS_ENTROPY, 8, 50304, 0, 0, 0}, {ROWS_ENTROPY, 5, 151936, 0, 0, 0},
        {ROWS_JSD_TOPK, 8, 50304, 20, 0.3, 0}, {ROWS_JSD_TOPK, 8, 300, 1, 0.5, 0}, {ROWS_JSD_TOPK, 6, 300, 300, 0.7, 0},
        {ROWS_JSD_FULL, 8, 50304, 0, 0.5, 0}, {ROWS_JSD_FULL, 4, 151936, 0, 0.1, 0},
        {ROWS_SAMPLED_LP, 12, 50304, 20, 0, 0}, {ROWS_SAMPLED_LP, 10, 300, 300, 0, 0}, {ROWS_PICK, 9, 300, 0, 0, 0},
        // the model's logits in the bf16 mode
        {ROWS_ENTROPY, 8, 50304, 0, 0, 1}, {ROWS_ENTROPY, 5, 7, 0, 0, 1}, {ROWS_JSD_TOPK, 8, 50304, 20, 0.3, 1},
        {ROWS_JSD_FULL, 8, 50304, 0, 0.5, 1}, {ROWS_SAMPLED_LP, 12, 50304, 20, 0, 1},
    };
    char label[96];
    for (size_t i = 0; i < ARRAY_LEN(cases); i++) {
        const RowsArgs* a = &cases[i];
        snprintf(label, sizeof label, "%s N=%d V=%d", names[a->kind], a->N, a->V);
        if (a->K) snprintf(label + strlen(label), sizeof label - strlen(label), " K=%d", a->K);
        if (a->beta > 0.0) snprintf(label + strlen(label), sizeof label - strlen(label), " beta=%g", a->beta);
        if (a->act_z) snprintf(label + strlen(label), sizeof label - strlen(label), " z act");
        gpu_check(label, case_objective_rows, a, 130 + i, TOL_ELEMENTWISE);
    }
    gpu_done();
}

// ----------------------------------------------------------------------------
// decoding's draws (sample_rows): ids exact, log-probs and tails as the other row ops

// K well below V: the tail is 1 - their mass, so near K = V it is rounding residue on either side
typedef struct {
    int N, V, K, ties; // ties: logits of few distinct values (ties broken to the lower id)
    float temperature;
    int values;        // 0: the ids (exact); 1: lp, topk_lp, tail
    int score;         // ids given, no draw (u NULL)
} SampleArgs;

static void case_sample_rows(GpuCtx* c, const void* arg) {
    const SampleArgs* a = arg;
    Backend* be = c->be;
    const int N = a->N, V = a->V, K = a->K;
    const VocabArgs va = {.N = N, .V = V};
    float* z = vocab_logits(c, &va);
    if (a->ties) {
        float* h = malloc(sizeof(float) * N * V);
        be->download(be, h, z, sizeof(float) * N * V);
        for (size_t i = 0; i < (size_t)N * V; i++) h[i] = floorf(h[i] / 2.0f);
        be->upload(be, z, h, sizeof(float) * N * V);
        free(h);
    }
    // uniforms: random, and 0 and just below 1 at the edges of the running sum
    double* hu = malloc(sizeof(double) * N);
    for (int n = 0; n < N; n++) hu[n] = n == 1 ? 0.0 : n == 2 ? 1.0 - 1e-12 : rng_uniform(&c->rng);
    double* u = a->score ? NULL : gpu_upload(c, hu, sizeof(double) * N);
    free(hu);
    int* ids = (int*)gpu_junk(c, (size_t)N);
    if (a->score) {
        int* hid = malloc(sizeof(int) * N);
        for (int n = 0; n < N; n++) hid[n] = (int)rng_below(&c->rng, (uint64_t)V);
        be->upload(be, ids, hid, sizeof(int) * N);
        free(hid);
    }
    float* lp = gpu_junk(c, (size_t)N);
    int* tk_ids = (int*)gpu_junk(c, (size_t)N * (K ? K : 1));
    float* tk_lp = gpu_junk(c, (size_t)N * (K ? K : 1));
    float* tail = gpu_junk(c, (size_t)N);
    be->sample_rows(be, z, N, V, a->temperature, u, K, ids, lp, K ? tk_ids : NULL, K ? tk_lp : NULL, K ? tail : NULL);
    if (!a->values) {
        gpu_out_int(c, "ids", ids, (size_t)N);
        if (K) gpu_out_int(c, "topk_ids", tk_ids, (size_t)N * K);
    } else {
        gpu_out(c, "lp", lp, (size_t)N, 0);
        if (K) gpu_out(c, "topk_lp", tk_lp, (size_t)N * K, 0);
        if (K) gpu_out(c, "tail", tail, (size_t)N, 0);
    }
}

void test_sample_rows(void** state) {
    (void)state;
    const SampleArgs cases[] = {
        {8, 50304, 8, 0, 1.0f, 0, 0}, {5, 151936, 20, 0, 0.7f, 0, 0}, {9, 300, 64, 1, 0.0f, 0, 0},
        {7, 7, 0, 0, 2.0f, 0, 0},     {6, 300, 16, 1, 1.0f, 0, 0},    {8, 50304, 8, 0, 1.0f, 0, 1},
    };
    char label[96];
    for (size_t i = 0; i < ARRAY_LEN(cases); i++) {
        for (int values = 0; values < 2; values++) {
            SampleArgs a = cases[i];
            a.values = values;
            snprintf(label, sizeof label, "sample_rows N=%d V=%d K=%d t=%g%s%s %s", a.N, a.V, a.K, a.temperature,
                     a.ties ? " ties" : "", a.score ? " scoring" : "", values ? "values" : "ids");
            // the same seed for both halves: the same logits and uniforms
            gpu_check(label, case_sample_rows, &a, 150 + i, values ? TOL_ELEMENTWISE : TOL_EXACT);
        }
    }
    gpu_done();
}

