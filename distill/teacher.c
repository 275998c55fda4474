// The frozen teacher of distill.teacher: recompute (see teacher.h): turns of a record, their
// contexts, and the teacher's log-softmax rows through a one-slot decoder, written and
// normalised where the trainer's buffers are (the backend).
#include "distill/teacher.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "common/check.h"
#include "common/log.h"
#include "model/decode.h"
#include "model/loss.h"

#define TEACHER_FEED_ROWS 256 // agent tokens fed per decoder call

struct DistillTeacher {
    Model* model;
    Decoder* dec;
    Backend* be;
    int V, max_len;
};

DistillTeacher* distill_teacher_create(Model* student, int max_len) {
    DistillTeacher* t = callocCheck(1, sizeof(DistillTeacher));
    t->be = model_backend(student);
    t->model = model_create(model_config(student), t->be, 1, 1);
    t->dec = decoder_create(t->model, 1, max_len);
    t->V = model_config(student)->vocab_size;
    t->max_len = max_len;
    return t;
}

void distill_teacher_free(DistillTeacher* t) {
    if (!t) return;
    decoder_free(t->dec);
    model_free(t->model);
    free(t);
}

int distill_teacher_max_len(const DistillTeacher* t) { return t->max_len; }

void distill_teacher_refresh(DistillTeacher* t, Model* student, float* staging) {
    model_params_download(student, staging);
    model_params_upload(t->model, staging);
    decoder_reset(t->dec, 0); // cached keys and values belong to the old weights
}

// ----------------------------------------------------------------------------
// turns: maximal runs of agent tokens within one step

typedef struct {
    int first, last; // agent tokens [first, last)
    int step;        // -1 before the first step
} Turn;

// the turn starting at or after token i (returns 0 when there is none)
static int next_turn(const Trajectory* s, int i, Turn* out) {
    while (i < s->n_tokens && !s->agent_mask[i]) i++;
    if (i >= s->n_tokens) return 0;
    int step = -1;
    while (step + 1 < s->n_steps && s->step_start[step + 1] <= i) step++;
    int j = i + 1;
    while (j < s->n_tokens && s->agent_mask[j] && !(step + 1 < s->n_steps && s->step_start[step + 1] == j)) j++;
    *out = (Turn){i, j, step};
    return 1;
}

// a history index in the teacher's context of entry (end, shift)
static int mapped(int i, int end, int shift) { return i >= end ? i + shift : i; }

int distill_teacher_need(const Trajectory* s) {
    int need = 0;
    Turn tn = {0};
    for (int i = 0; next_turn(s, i, &tn); i = tn.last) {
        const int e = traj_teacher_entry(s, tn.step);
        const int end = e < 0 ? 0 : s->tctx_end[e];
        const int shift = e < 0 ? 0 : s->tctx_offset[e + 1] - s->tctx_offset[e] - (s->tctx_end[e] - s->tctx_at[e]);
        const int n = mapped(tn.last - 1, end, shift); // up to the token before the turn's last
        need = n > need ? n : need;
    }
    return need;
}

// ----------------------------------------------------------------------------
// the rows


void distill_teacher_rows(DistillTeacher* t, Trajectory* const* seqs, int B, int T, float* out) {
    const int slot = 0, V = t->V;
    decoder_reset(t->dec, slot);
    for (int b = 0; b < B; b++) {
        const Trajectory* s = seqs[b];
        int cur = -2, n = 0, end = 0, shift = 0; // the entry whose context ctx holds
        int32_t* ctx = NULL;
        Turn tn = {0};
        for (int i = 0; next_turn(s, i, &tn); i = tn.last) {
            const int e = traj_teacher_entry(s, tn.step);
            if (e != cur) {
                free(ctx);
                ctx = traj_teacher_context(s, tn.step, &n, &end, &shift);
                cur = e;
            }
            // the context up to the first token some position of it predicts
            const int f = mapped(tn.first, end, shift) > 0 ? tn.first : tn.first + 1;
            if (f >= tn.last) continue;
            const int nf = mapped(f, end, shift), need = mapped(tn.last - 1, end, shift);
            if (need > t->max_len)
                fatal("distill teacher: task %d sample %d needs a %d-token teacher context, the decoder holds %d",
                      s->task_id, s->sample, need, t->max_len);
            const int* p = ctx;
            decoder_assign(t->dec, 1, &slot, &p, &nf);
            if (f >= 1) {
                float* row = out + ((size_t)b * T + f - 1) * V;
                t->be->upload(t->be, row, decoder_logits(t->dec, slot), sizeof(float) * (size_t)V);
                loss_log_softmax(t->be, row, row, 1, V);
            }
            // the turn's agent tokens f .. last-2 predict f+1 .. last-1, fed in chunks whose logits
            // rows land at their places in out, normalised there
            for (int a = f; a < tn.last - 1; a += TEACHER_FEED_ROWS) {
                const int m = tn.last - 1 - a < TEACHER_FEED_ROWS ? tn.last - 1 - a : TEACHER_FEED_ROWS;
                const int* tok = ctx + mapped(a, end, shift);
                float* rows = out + ((size_t)b * T + a) * V;
                decoder_feed_device(t->dec, 1, &slot, &tok, &m, rows);
                loss_log_softmax(t->be, rows, rows, m, V);
            }
        }
        free(ctx);
    }
}
