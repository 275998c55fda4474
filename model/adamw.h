// AdamW with decoupled weight decay (Loshchilov & Hutter), bias correction, clipping by global
// gradient norm, and a linear-warmup + cosine learning-rate schedule down to a floor. The
// moments m and v are backend buffers laid out like the parameters (one allocation each).
// Norm weights and biases (ParamInfo.is_norm) get no weight decay.
#pragma once
#include <stddef.h>

#include "model/model_config.h"
#include "model/ops.h"

typedef struct {
    float lr;           // peak learning rate
    float min_lr_ratio; // the cosine ends at lr * min_lr_ratio and stays there
    long warmup_steps;  // linear warmup: step s < warmup uses lr * (s + 1) / warmup
    long total_steps;   // the cosine runs from warmup_steps to total_steps
    float beta1, beta2, eps;
    float weight_decay; // decoupled: p *= 1 - lr * weight_decay, before the Adam update
    float grad_clip;    // max global L2 norm of the gradient; <= 0 disables clipping
} AdamWConfig;

typedef struct AdamW AdamW;

// lr 3e-4, floor 0.1, no warmup, 1000 steps, betas (0.9, 0.95), eps 1e-8, decay 0.1, clip 1
AdamWConfig adamw_default_config(void);
// learning rate of 0-based step `step`
float adamw_lr(const AdamWConfig* c, long step);
// gradient multiplier for a global norm: min(1, grad_clip / (norm + 1e-6)), as torch's clip_grad_norm_
float adamw_clip_scale(const AdamWConfig* c, double grad_norm);

// moments for the parameters of `table` (n elements in all), zero-initialised
AdamW* adamw_create(Backend* be, const AdamWConfig* c, const ParamInfo table[PARAM_COUNT], size_t n);
void adamw_free(AdamW* opt);
// One update of params from grads (backend buffers of n floats): global norm, clipping,
// scheduled lr, decay on matrices only. Returns the pre-clip gradient norm.
float adamw_step(AdamW* opt, float* params, const float* grads);

const AdamWConfig* adamw_config(const AdamW* opt);
long adamw_steps_done(const AdamW* opt); // updates applied so far (the next update's step is this + 1)
// optimizer state for checkpoints: host copies of m and v (n floats each) and the step count
void adamw_state_download(AdamW* opt, float* m, float* v, long* steps_done);
void adamw_state_upload(AdamW* opt, const float* m, const float* v, long steps_done);
