// Checkpoint layout of the driver (see state.h and docs/FORMATS.md).
#include "mpi/state.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/check.h"
#include "common/log.h"

// ----------------------------------------------------------------------------
// model config as attributes of /model: a checkpoint of another model is refused by name

typedef struct {
    const char* name;
    size_t offset; // into ModelConfig
    int is_float;
} ShapeAttr;

#define SHAPE_I(f) {#f, offsetof(ModelConfig, f), 0}
#define SHAPE_F(f) {#f, offsetof(ModelConfig, f), 1}
static const ShapeAttr shape_attrs[] = {
    SHAPE_I(vocab_size), SHAPE_I(dim),        SHAPE_I(n_layers),        SHAPE_I(n_heads),
    SHAPE_I(n_kv_heads), SHAPE_I(head_dim),   SHAPE_I(hidden_dim),      SHAPE_I(max_seq_len),
    SHAPE_F(rope_theta), SHAPE_F(norm_eps),   SHAPE_I(tied_embeddings), SHAPE_I(qkv_bias),
    SHAPE_I(qk_norm),    SHAPE_F(rope_factor),
};
#define N_SHAPE_ATTRS (int)(sizeof(shape_attrs) / sizeof(shape_attrs[0]))

static double shape_value(const ModelConfig* c, const ShapeAttr* a) {
    const char* p = (const char*)c + a->offset;
    return a->is_float ? (double)*(const float*)p : (double)*(const int*)p;
}

// ----------------------------------------------------------------------------
// trajectories as flat datasets with offsets (h5py: tokens[offsets[i]:offsets[i+1]])

static void put_i32s(CkptFile* f, const char* path, const int32_t* v, uint64_t n, int writer) {
    ckpt_put_array(f, path, CKPT_I32, 1, &n, v, writer);
}
static void put_f32s(CkptFile* f, const char* path, const float* v, uint64_t n, int writer) {
    ckpt_put_array(f, path, CKPT_F32, 1, &n, v, writer);
}

static void write_trajectories(CkptFile* f, Trajectory* const* t, int n, int rank, int writer) {
    // sizes are known on rank 0 only; the counts travel inside ckpt_put_array's broadcast
    int64_t tok = 0, agent = 0, steps = 0, items = 0;
    int k = 0;
    for (int i = 0; rank == writer && i < n; i++) {
        tok += t[i]->n_tokens, agent += t[i]->n_agent, steps += t[i]->n_steps;
        items += t[i]->item_offset[t[i]->n_steps];
        if (t[i]->topk > k) k = t[i]->topk;
    }
    int64_t nn = n;
    int32_t *meta = NULL, *tokens = NULL, *topk_ids = NULL, *step_start = NULL, *item_ids = NULL;
    int64_t *offsets = NULL;
    uint8_t *seg = NULL, *mask = NULL;
    float *lp = NULL, *topk_lp = NULL, *tail = NULL, *step_reward = NULL, *reward = NULL;
    uint64_t* seeds = NULL;
    if (rank == writer) {
        meta = mallocCheck(sizeof(int32_t) * 4 * (size_t)(nn ? nn : 1));
        offsets = mallocCheck(sizeof(int64_t) * 4 * (size_t)(nn + 1));
        reward = mallocCheck(sizeof(float) * (size_t)(nn ? nn : 1));
        seeds = mallocCheck(sizeof(uint64_t) * (size_t)(nn ? nn : 1));
        tokens = mallocCheck(sizeof(int32_t) * (size_t)(tok ? tok : 1));
        seg = mallocCheck((size_t)(tok ? tok : 1));
        mask = mallocCheck((size_t)(tok ? tok : 1));
        lp = mallocCheck(sizeof(float) * (size_t)(tok ? tok : 1));
        int64_t rows = agent * k > 0 ? agent * k : 1;
        topk_ids = callocCheck((size_t)rows, sizeof(int32_t));
        topk_lp = callocCheck((size_t)rows, sizeof(float));
        tail = mallocCheck(sizeof(float) * (size_t)(agent ? agent : 1));
        step_start = mallocCheck(sizeof(int32_t) * (size_t)(steps ? steps : 1));
        step_reward = mallocCheck(sizeof(float) * (size_t)(steps ? steps : 1));
        item_ids = mallocCheck(sizeof(int32_t) * (size_t)(items ? items : 1));
        int64_t o[4] = {0, 0, 0, 0}; // tokens, agent rows, steps, items
        for (int i = 0; i < n; i++) {
            const Trajectory* r = t[i];
            meta[4 * i] = r->task_id, meta[4 * i + 1] = r->sample, meta[4 * i + 2] = r->iteration;
            meta[4 * i + 3] = (int32_t)r->flags;
            reward[i] = r->final_reward;
            seeds[i] = r->seed;
            memcpy(offsets + 4 * i, o, sizeof(o));
            memcpy(tokens + o[0], r->tokens, sizeof(int32_t) * (size_t)r->n_tokens);
            memcpy(seg + o[0], r->segment, (size_t)r->n_tokens);
            memcpy(mask + o[0], r->agent_mask, (size_t)r->n_tokens);
            memcpy(lp + o[0], r->logprob, sizeof(float) * (size_t)r->n_tokens);
            for (int a = 0; a < r->n_agent; a++) {
                for (int j = 0; j < r->topk; j++) {
                    topk_ids[(o[1] + a) * k + j] = r->topk_ids[a * r->topk + j];
                    topk_lp[(o[1] + a) * k + j] = r->topk_lp[a * r->topk + j];
                }
                tail[o[1] + a] = r->tail_mass[a];
            }
            memcpy(step_start + o[2], r->step_start, sizeof(int32_t) * (size_t)r->n_steps);
            memcpy(step_reward + o[2], r->step_reward, sizeof(float) * (size_t)r->n_steps);
            memcpy(item_ids + o[3], r->items, sizeof(int32_t) * (size_t)r->item_offset[r->n_steps]);
            o[0] += r->n_tokens, o[1] += r->n_agent, o[2] += r->n_steps, o[3] += r->item_offset[r->n_steps];
        }
        memcpy(offsets + 4 * nn, o, sizeof(o));
    }
    uint64_t d2[2] = {(uint64_t)nn, 4}, d2o[2] = {(uint64_t)nn + 1, 4}, dk[2] = {(uint64_t)agent, (uint64_t)k};
    ckpt_put_array(f, "/trajectories/meta", CKPT_I32, 2, d2, meta, writer);
    ckpt_put_attr_str(f, "/trajectories/meta", "columns", "task_id, sample, iteration, flags");
    ckpt_put_array(f, "/trajectories/offsets", CKPT_I64, 2, d2o, offsets, writer);
    ckpt_put_attr_str(f, "/trajectories/offsets", "columns", "tokens, agent rows, steps, items (row i .. row i+1)");
    uint64_t un = (uint64_t)nn, ut = (uint64_t)tok;
    ckpt_put_array(f, "/trajectories/seed", CKPT_U64, 1, &un, seeds, writer);
    put_f32s(f, "/trajectories/final_reward", reward, (uint64_t)nn, writer);
    put_i32s(f, "/trajectories/tokens", tokens, (uint64_t)tok, writer);
    ckpt_put_array(f, "/trajectories/segment", CKPT_U8, 1, &ut, seg, writer);
    ckpt_put_array(f, "/trajectories/agent_mask", CKPT_U8, 1, &ut, mask, writer);
    put_f32s(f, "/trajectories/logprob", lp, (uint64_t)tok, writer);
    ckpt_put_array(f, "/trajectories/topk_ids", CKPT_I32, 2, dk, topk_ids, writer);
    ckpt_put_array(f, "/trajectories/topk_lp", CKPT_F32, 2, dk, topk_lp, writer);
    put_f32s(f, "/trajectories/tail_mass", tail, (uint64_t)agent, writer);
    put_i32s(f, "/trajectories/step_start", step_start, (uint64_t)steps, writer);
    put_f32s(f, "/trajectories/step_reward", step_reward, (uint64_t)steps, writer);
    put_i32s(f, "/trajectories/items", item_ids, (uint64_t)items, writer);
    free(meta), free(offsets), free(reward), free(seeds), free(tokens), free(seg), free(mask), free(lp);
    free(topk_ids), free(topk_lp), free(tail), free(step_start), free(step_reward), free(item_ids);
}

// ----------------------------------------------------------------------------
// writing

void state_put_weights(CkptFile* f, const ModelConfig* mc, const ParamInfo* table, const float* params) {
    for (int i = 0; i < PARAM_COUNT; i++) {
        if (!table[i].numel) continue;
        char path[96];
        snprintf(path, sizeof(path), "/model/%s", table[i].name);
        uint64_t dims[3];
        int nd = 0;
        if (table[i].per_layer) dims[nd++] = (uint64_t)mc->n_layers;
        dims[nd++] = (uint64_t)table[i].rows;
        if (table[i].cols) dims[nd++] = (uint64_t)table[i].cols;
        ckpt_put_array(f, path, CKPT_F32, nd, dims, params ? params + table[i].offset : NULL, 0);
        ckpt_put_attr_str(f, path, "hf_name", table[i].hf_name);
    }
}

void state_write(const CkptState* s) {
    const Config* c = s->cfg;
    const RankLayout* l = s->layout;
    int rank = l->world_rank;
    char dir[CONFIG_PATH + 16];
    snprintf(dir, sizeof(dir), "%s/ckpt", c->run.dir);
    CkptFile* f = ckpt_create(dir, s->iteration, l->world);
    ckpt_put_attr_str(f, "/", "run_name", c->run.name);
    ckpt_put_attr_i64(f, "/", "seed", c->run.seed);
    ConfigError err;
    char* yaml = rank == 0 ? config_to_yaml(c, &err) : NULL;
    if (rank == 0 && !yaml) fatal("checkpoint: %s", err.msg);
    ckpt_put_text(f, "/config", yaml, 0);
    free(yaml);

    ckpt_put_attr_i64(f, "/world", "world_size", l->world_size);
    ckpt_put_attr_i64(f, "/world", "colocated", l->colocated);
    ckpt_put_attr_i64(f, "/world", "n_trainer", l->n_trainer);
    ckpt_put_attr_i64(f, "/world", "n_aggregator", l->n_aggregator);
    ckpt_put_attr_i64(f, "/world", "n_rollout", l->n_rollout);

    // weights, written by rank 0
    const ModelConfig* mc = model_config(s->model);
    const ParamInfo* table = model_param_info(s->model);
    size_t n = model_num_params(s->model);
    float* host = rank == 0 ? mallocCheck(sizeof(float) * n) : NULL;
    if (rank == 0) model_params_download(s->model, host);
    ckpt_put_attr_str(f, "/model", "arch", mc->arch);
    ckpt_put_attr_i64(f, "/model", "n_params", (long long)n);
    for (int i = 0; i < N_SHAPE_ATTRS; i++) {
        const ShapeAttr* a = &shape_attrs[i];
        if (a->is_float) ckpt_put_attr_f64(f, "/model", a->name, shape_value(mc, a));
        else ckpt_put_attr_i64(f, "/model", a->name, (long long)shape_value(mc, a));
    }
    state_put_weights(f, mc, table, host);
    free(host);

    // AdamW: flat moments, each trainer writes its ZeRO-1 slice; the step count from trainer 0
    long steps = s->trainer ? distill_trainer_steps_done(s->trainer) : 0;
    mpiCheck(MPI_Bcast(&steps, 1, MPI_LONG, 0, l->world));
    ckpt_put_attr_i64(f, "/optim", "steps", steps);
    distill_state_write(s->trainer, f, "/optim/m", "/optim/v", n);

    ckpt_put_text(f, "/experience/pool", s->pool_json ? s->pool_json : "", s->data_writer);
    ckpt_put_text(f, "/metrics", s->metrics ? s->metrics : "", 0);
    if (c->checkpoint.trajectories) write_trajectories(f, s->trajectories, s->n_trajectories, rank, s->data_writer);

    char* path = ckpt_commit(f);
    if (rank == 0) {
        log_info("checkpoint %s written", path);
        ckpt_retain(dir, c->checkpoint.keep_last);
    }
    free(path);
}

// ----------------------------------------------------------------------------
// reading

int state_read(const char* path, Model* model, DistillTrainer* trainer, CkptLoaded* out, char* err, size_t errlen) {
    memset(out, 0, sizeof(*out));
    CkptFile* f = ckpt_open(path, err, errlen);
    if (!f) return -1;
    out->iteration = ckpt_iteration(f);
    const ModelConfig* mc = model_config(model);
    const ParamInfo* table = model_param_info(model);
    size_t n = model_num_params(model);
    int rc = 0;
    for (int i = 0; i < N_SHAPE_ATTRS && rc == 0; i++) {
        double v = 0;
        rc = ckpt_get_attr_f64(f, "/model", shape_attrs[i].name, &v, err, errlen);
        if (rc == 0 && (float)v != (float)shape_value(mc, &shape_attrs[i])) {
            snprintf(err, errlen, "%s: /model@%s is %g, the configured model has %g (a checkpoint of another model?)",
                     path, shape_attrs[i].name, v, shape_value(mc, &shape_attrs[i]));
            rc = -1;
        }
    }
    float* host = mallocCheck(sizeof(float) * n);
    for (int i = 0; i < PARAM_COUNT && rc == 0; i++) {
        if (!table[i].numel) continue;
        char name[96];
        snprintf(name, sizeof(name), "/model/%s", table[i].name);
        rc = ckpt_get_array(f, name, CKPT_F32, table[i].numel, host + table[i].offset, err, errlen);
    }
    if (rc == 0) model_params_upload(model, host);
    free(host);
    long long steps = 0;
    if (rc == 0) rc = ckpt_get_attr_i64(f, "/optim", "steps", &steps, err, errlen);
    if (rc == 0 && trainer) rc = distill_state_read(trainer, f, "/optim/m", "/optim/v", (long)steps, err, errlen);
    if (rc == 0) rc = ckpt_get_text(f, "/experience/pool", &out->pool_json, err, errlen);
    if (rc == 0) rc = ckpt_get_text(f, "/metrics", &out->metrics, err, errlen);
    if (rc == 0) rc = ckpt_get_text(f, "/config", &out->config_yaml, err, errlen);
    ckpt_close(f);
    if (rc != 0) state_loaded_free(out);
    return rc;
}

void state_loaded_free(CkptLoaded* l) {
    free(l->pool_json);
    free(l->metrics);
    free(l->config_yaml);
    memset(l, 0, sizeof(*l));
}
