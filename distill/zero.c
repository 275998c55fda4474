// ZeRO-1 AdamW for the distillation trainer: each trainer holds the moments of its ckpt_shard
// slice only and updates its slice of the parameters; the state moves to and from checkpoints
// as hyperslabs of the global moment vectors, so a resume may use another trainer count.
#include <stdio.h>
#include <stdlib.h>

#include "common/check.h"
#include "common/log.h"
#include "distill/trainer_impl.h"

// ----------------------------------------------------------------------------
// the update

void zero_step(DistillTrainer* t, float lr, float scale) {
    Backend* be = t->be;
    const AdamWConfig* c = &t->opt.adamw;
    const uint64_t off = t->part.off[t->rank], end = off + t->part.cnt[t->rank];
    float* params = model_params(t->model);
    float* grads = model_grads(t->model);
    const long step = ++t->steps_done;
    // the slice may cut through tensors: update each tensor's part with its own decay
    for (int i = 0; i < PARAM_COUNT; i++) {
        const ParamInfo* p = &t->table[i];
        if (p->numel == 0) continue;
        uint64_t lo = p->offset > off ? p->offset : off, hi = p->offset + p->numel < end ? p->offset + p->numel : end;
        if (hi <= lo) continue;
        const float wd = p->is_norm ? 0.0f : c->weight_decay;
        be->adamw(be, params + lo, grads + lo, t->m + (lo - off), t->v + (lo - off), (size_t)(hi - lo), lr, c->beta1,
                  c->beta2, c->eps, wd, scale, step);
    }
}

// ----------------------------------------------------------------------------
// state

void distill_trainer_slice(const DistillTrainer* t, uint64_t* offset, uint64_t* count, uint64_t* n_params) {
    *offset = t->part.off[t->rank];
    *count = t->part.cnt[t->rank];
    *n_params = t->n;
}

long distill_trainer_steps_done(const DistillTrainer* t) { return t->steps_done; }

void distill_trainer_state_get(DistillTrainer* t, float* m, float* v, long* steps_done) {
    const size_t bytes = sizeof(float) * (size_t)t->part.cnt[t->rank];
    t->be->download(t->be, m, t->m, bytes);
    t->be->download(t->be, v, t->v, bytes);
    *steps_done = t->steps_done;
}

void distill_trainer_state_set(DistillTrainer* t, const float* m, const float* v, long steps_done) {
    const size_t bytes = sizeof(float) * (size_t)t->part.cnt[t->rank];
    t->be->upload(t->be, t->m, m, bytes);
    t->be->upload(t->be, t->v, v, bytes);
    t->steps_done = steps_done;
}

void distill_state_write(DistillTrainer* t, CkptFile* f, const char* m_path, const char* v_path, uint64_t n_params) {
    uint64_t off = 0, cnt = 0, n = n_params;
    float* m = NULL;
    float* v = NULL;
    if (t) {
        distill_trainer_slice(t, &off, &cnt, &n);
        if (n != n_params) {
            fatal("distill_state_write: n_params %llu is not the trainer's %llu", (unsigned long long)n_params,
                  (unsigned long long)n);
        }
        m = mallocCheck(sizeof(float) * (size_t)(cnt ? cnt : 1));
        v = mallocCheck(sizeof(float) * (size_t)(cnt ? cnt : 1));
        long steps;
        distill_trainer_state_get(t, m, v, &steps);
    }
    ckpt_put_sharded(f, m_path, CKPT_F32, n_params, off, cnt, m);
    ckpt_put_sharded(f, v_path, CKPT_F32, n_params, off, cnt, v);
    free(m);
    free(v);
}

int distill_state_read(DistillTrainer* t, CkptFile* f, const char* m_path, const char* v_path, long steps_done,
                       char* err, size_t errlen) {
    uint64_t off, cnt, n;
    distill_trainer_slice(t, &off, &cnt, &n);
    const char* paths[2] = {m_path, v_path};
    float* host[2];
    int rc = 0;
    for (int i = 0; i < 2; i++) host[i] = mallocCheck(sizeof(float) * (size_t)(cnt ? cnt : 1));
    for (int i = 0; i < 2 && rc == 0; i++) {
        int ndims;
        uint64_t dims[CKPT_MAX_DIMS];
        rc = ckpt_get_shape(f, paths[i], &ndims, dims, err, errlen);
        if (rc == 0 && (ndims != 1 || dims[0] != n)) {
            snprintf(err, errlen,
                     "%s: dataset %s holds %llu elements in %d dimension(s), the model has %llu parameters",
                     ckpt_path(f), paths[i], (unsigned long long)dims[0], ndims, (unsigned long long)n);
            rc = -1;
        }
        if (rc == 0 && cnt) rc = ckpt_get_range(f, paths[i], CKPT_F32, off, cnt, host[i], err, errlen);
    }
    if (rc == 0) distill_trainer_state_set(t, host[0], host[1], steps_done);
    free(host[0]);
    free(host[1]);
    return rc;
}
