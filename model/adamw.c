// AdamW, gradient clipping and the learning-rate schedule (see adamw.h).
#include "model/adamw.h"

#include <math.h>
#include <stdlib.h>

#include "common/check.h"
#include "common/log.h"

struct AdamW {
    AdamWConfig cfg;
    Backend* be;
    ParamInfo table[PARAM_COUNT];
    size_t n;
    float* m; // (n) first moment, backend
    float* v; // (n) second moment, backend
    long steps_done;
};

// ----------------------------------------------------------------------------
// schedule and clipping

AdamWConfig adamw_default_config(void) {
    return (AdamWConfig){.lr = 3e-4f,
                         .min_lr_ratio = 0.1f,
                         .warmup_steps = 0,
                         .total_steps = 1000,
                         .beta1 = 0.9f,
                         .beta2 = 0.95f,
                         .eps = 1e-8f,
                         .weight_decay = 0.1f,
                         .grad_clip = 1.0f};
}

float adamw_lr(const AdamWConfig* c, long step) {
    if (step < c->warmup_steps) return c->lr * (float)(step + 1) / (float)c->warmup_steps;
    const double min_lr = (double)c->lr * c->min_lr_ratio;
    if (step >= c->total_steps || c->total_steps <= c->warmup_steps) return (float)min_lr;
    double progress = (double)(step - c->warmup_steps) / (double)(c->total_steps - c->warmup_steps);
    double coeff = 0.5 * (1.0 + cos(3.14159265358979323846 * progress));
    return (float)(min_lr + coeff * ((double)c->lr - min_lr));
}

float adamw_clip_scale(const AdamWConfig* c, double grad_norm) {
    if (c->grad_clip <= 0.0f) return 1.0f;
    double coef = c->grad_clip / (grad_norm + 1e-6);
    return coef < 1.0 ? (float)coef : 1.0f;
}

// ----------------------------------------------------------------------------
// the optimizer

AdamW* adamw_create(Backend* be, const AdamWConfig* c, const ParamInfo table[PARAM_COUNT], size_t n) {
    AdamW* opt = callocCheck(1, sizeof(AdamW));
    opt->cfg = *c;
    opt->be = be;
    for (int i = 0; i < PARAM_COUNT; i++) opt->table[i] = table[i];
    opt->n = n;
    opt->m = be->alloc(be, n * sizeof(float));
    opt->v = be->alloc(be, n * sizeof(float));
    return opt;
}

void adamw_free(AdamW* opt) {
    if (!opt) return;
    opt->be->free(opt->be, opt->m);
    opt->be->free(opt->be, opt->v);
    free(opt);
}

float adamw_step(AdamW* opt, float* params, const float* grads) {
    Backend* be = opt->be;
    const AdamWConfig* c = &opt->cfg;
    double norm = sqrt(be->sum_squares(be, grads, opt->n));
    if (!isfinite(norm)) fatal("adamw: gradient norm is %g at step %ld (the loss diverged)", norm, opt->steps_done + 1);
    float scale = adamw_clip_scale(c, norm);
    float lr = adamw_lr(c, opt->steps_done);
    long t = ++opt->steps_done;
    for (int i = 0; i < PARAM_COUNT; i++) {
        const ParamInfo* p = &opt->table[i];
        if (p->numel == 0) continue;
        float wd = p->is_norm ? 0.0f : c->weight_decay;
        be->adamw(be, params + p->offset, grads + p->offset, opt->m + p->offset, opt->v + p->offset, p->numel, lr,
                  c->beta1, c->beta2, c->eps, wd, scale, t);
    }
    return (float)norm;
}

const AdamWConfig* adamw_config(const AdamW* opt) { return &opt->cfg; }

long adamw_steps_done(const AdamW* opt) { return opt->steps_done; }

void adamw_state_download(AdamW* opt, float* m, float* v, long* steps_done) {
    opt->be->download(opt->be, m, opt->m, opt->n * sizeof(float));
    opt->be->download(opt->be, v, opt->v, opt->n * sizeof(float));
    *steps_done = opt->steps_done;
}

void adamw_state_upload(AdamW* opt, const float* m, const float* v, long steps_done) {
    opt->be->upload(opt->be, opt->m, m, opt->n * sizeof(float));
    opt->be->upload(opt->be, opt->v, v, opt->n * sizeof(float));
    opt->steps_done = steps_done;
}
