// Unit tests of the trajectory record: building, wire round trips (version 2 with the teacher's
// log-probs and contexts, version 1 still read), bounds-checked decoding under truncation and
// random corruption (a deterministic fuzz), the student view and the teacher's contexts.
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <stdlib.h>
#include <string.h>

#include "model/rng.h"
#include "rollout/trajectory.h"

// ----------------------------------------------------------------------------
// a trajectory like the agent loop builds: system (+ global experience), user, then turns of
// assistant tokens and tool observations

static Trajectory* sample_trajectory(int global_experience, int topk) {
    Trajectory* t = traj_create(topk);
    t->task_id = 17;
    t->sample = 3;
    t->iteration = 2;
    t->flags = TRAJ_FLAG_TEACHER;
    t->seed = 0x123456789abcdefull;
    int32_t sys[] = {1, 2, 3}, exp[] = {40, 41, 42, 43}, user[] = {5, 6};
    traj_push_context(t, sys, 3, TRAJ_SEG_SYSTEM);
    if (global_experience) traj_push_context(t, exp, 4, TRAJ_SEG_EXPERIENCE);
    traj_push_context(t, user, 2, TRAJ_SEG_USER);
    for (int step = 0; step < 3; step++) {
        int32_t items[] = {step, step + 10};
        traj_begin_step(t, items, global_experience ? 0 : 2);
        for (int i = 0; i < 4; i++) {
            int32_t ids[8];
            float lp[8];
            for (int j = 0; j < topk; j++) ids[j] = 100 + 10 * step + i + j, lp[j] = -0.1f * (float)(j + 1);
            traj_push_agent(t, 100 + 10 * step + i, -0.05f * (float)(i + 1), ids, lp, 0.01f * (float)i);
        }
        int32_t obs[] = {7, 8, 9};
        traj_push_context(t, obs, 3, TRAJ_SEG_TOOL);
        traj_set_step_reward(t, step == 2 ? 1.0f : 0.0f);
    }
    t->final_reward = 1.0f;
    return t;
}

static void assert_same(const Trajectory* a, const Trajectory* b) {
    assert_int_equal(a->task_id, b->task_id);
    assert_int_equal(a->sample, b->sample);
    assert_int_equal(a->iteration, b->iteration);
    assert_int_equal(a->flags, b->flags);
    assert_true(a->seed == b->seed);
    assert_true(a->final_reward == b->final_reward);
    assert_int_equal(a->n_tokens, b->n_tokens);
    assert_int_equal(a->n_agent, b->n_agent);
    assert_int_equal(a->topk, b->topk);
    assert_int_equal(a->n_steps, b->n_steps);
    assert_memory_equal(a->tokens, b->tokens, 4 * (size_t)a->n_tokens);
    assert_memory_equal(a->segment, b->segment, (size_t)a->n_tokens);
    assert_memory_equal(a->agent_mask, b->agent_mask, (size_t)a->n_tokens);
    assert_memory_equal(a->logprob, b->logprob, 4 * (size_t)a->n_tokens);
    if (a->topk) {
        assert_memory_equal(a->topk_ids, b->topk_ids, 4 * (size_t)a->n_agent * (size_t)a->topk);
        assert_memory_equal(a->topk_lp, b->topk_lp, 4 * (size_t)a->n_agent * (size_t)a->topk);
    }
    assert_memory_equal(a->tail_mass, b->tail_mass, 4 * (size_t)a->n_agent);
    assert_memory_equal(a->step_start, b->step_start, 4 * (size_t)a->n_steps);
    assert_memory_equal(a->step_reward, b->step_reward, 4 * (size_t)a->n_steps);
    assert_memory_equal(a->item_offset, b->item_offset, 4 * (size_t)(a->n_steps + 1));
    assert_memory_equal(a->items, b->items, 4 * (size_t)a->item_offset[a->n_steps]);
}

// ----------------------------------------------------------------------------

static void test_build(void** state) {
    (void)state;
    Trajectory* t = sample_trajectory(0, 4);
    assert_int_equal(t->n_tokens, 3 + 2 + 3 * (4 + 3));
    assert_int_equal(t->n_agent, 12);
    assert_int_equal(t->n_steps, 3);
    assert_int_equal(t->step_start[1], 5 + 7);
    assert_int_equal(t->item_offset[3], 6);
    assert_int_equal(t->items[2], 1);
    assert_int_equal(t->topk_ids[4 * 5 + 1], 100 + 10 * 1 + 1 + 1);
    traj_free(t);
}

static void test_round_trip(void** state) {
    (void)state;
    Trajectory* list[3] = {sample_trajectory(0, 4), sample_trajectory(1, 8), sample_trajectory(0, 0)};
    TrajBuf buf = {0};
    traj_encode_batch(list, 3, &buf);
    Trajectory** back;
    int n;
    char err[512];
    assert_int_equal(traj_decode_batch(buf.data, buf.len, &back, &n, err, sizeof(err)), 0);
    assert_int_equal(n, 3);
    for (int i = 0; i < 3; i++) assert_same(list[i], back[i]);
    // a decoded record keeps growing like a built one
    traj_begin_step(back[0], NULL, 0);
    traj_push_agent(back[0], 5, -1.0f, (int32_t[]){1, 2, 3, 4}, (float[]){-1, -2, -3, -4}, 0.5f);
    assert_int_equal(back[0]->n_agent, 13);
    for (int i = 0; i < 3; i++) traj_free(list[i]), traj_free(back[i]);
    free(back);
    traj_buf_free(&buf);
}

static void expect_decode_error(TrajBuf* buf, const char* needle) {
    Trajectory** back;
    int n;
    char err[512] = "";
    assert_int_not_equal(traj_decode_batch(buf->data, buf->len, &back, &n, err, sizeof(err)), 0);
    if (!strstr(err, needle)) fail_msg("error '%s' lacks '%s'", err, needle);
}

static void test_malformed(void** state) {
    (void)state;
    Trajectory* t = sample_trajectory(0, 4);
    Trajectory* list[1] = {t};
    TrajBuf buf = {0};
    traj_encode_batch(list, 1, &buf);
    // field offsets: count(4) magic(4) version(4) task(4) sample(4) iter(4) flags(4) seed(8) reward(4)
    // n_tokens @40 n_agent @44 topk @48 n_steps @52 n_items @56, tokens @60
    TrajBuf b = {malloc(buf.len), buf.len, buf.len};
    struct {
        size_t offset;
        uint32_t value;
        const char* needle;
    } cases[] = {
        {4, 0x58585858u, "bad magic"},
        {8, 9, "wire version 9"},
        {40, 0xffffffffu, "'n_tokens' is -1"},
        {44, 1000, "'n_agent' is 1000, must be in [0, 26]"},
        {48, 5000, "'topk' is 5000"},
        {60, 0xfffffff0u, "tokens[0] = -16 is negative"},
        {0, 1000, "batch count 1000 does not fit"},
        {0, 2, "record 1 of 2: trajectory record at byte 832: field 'magic' needs 4 bytes, only 0 left"},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        memcpy(b.data, buf.data, buf.len);
        memcpy(b.data + cases[i].offset, &cases[i].value, 4);
        expect_decode_error(&b, cases[i].needle);
    }
    memcpy(b.data, buf.data, buf.len);
    b.data[60 + 4 * 26] = 9; // first segment tag
    expect_decode_error(&b, "segment[0] = 9 is not a segment tag");
    memcpy(b.data, buf.data, buf.len);
    b.len = 792 + 21;
    expect_decode_error(&b, "record 0 of 1: trajectory record at byte 792: field 'items' needs 24 bytes, only 21 left");
    b.len = buf.len - 3; // version 2's fields follow the items: 816 has_teacher_lp, 820 n_tctx, 824 n_tctx_ids
    expect_decode_error(&b, "record 0 of 1: trajectory record at byte 828: field 'tctx_offset' needs 4 bytes, only 1 left");
    free(b.data);
    traj_buf_free(&buf);
    traj_free(t);
}

// every truncation and thousands of random corruptions: an error or a valid record, never a crash
// or an out-of-bounds read (run under -DINGRAIN_SANITIZE=address to prove the latter)
static void test_fuzz(void** state) {
    (void)state;
    Trajectory* list[2] = {sample_trajectory(1, 4), sample_trajectory(0, 2)};
    TrajBuf buf = {0};
    traj_encode_batch(list, 2, &buf);
    char err[512];
    Trajectory** back;
    int n;
    for (size_t len = 0; len < buf.len; len++) {
        uint8_t* copy = malloc(len ? len : 1); // exact size so ASan sees any overread
        memcpy(copy, buf.data, len);
        assert_int_not_equal(traj_decode_batch(copy, len, &back, &n, err, sizeof(err)), 0);
        free(copy);
    }
    Rng rng;
    rng_seed(&rng, 42);
    int accepted = 0;
    for (int iter = 0; iter < 20000; iter++) {
        uint8_t* copy = malloc(buf.len);
        memcpy(copy, buf.data, buf.len);
        int flips = 1 + (int)rng_below(&rng, 4);
        for (int f = 0; f < flips; f++) {
            size_t at = (size_t)rng_below(&rng, buf.len);
            copy[at] = rng_below(&rng, 2) ? (uint8_t)rng_next(&rng) : (uint8_t)(copy[at] ^ (1u << rng_below(&rng, 8)));
        }
        if (traj_decode_batch(copy, buf.len, &back, &n, err, sizeof(err)) == 0) {
            accepted++;
            for (int i = 0; i < n; i++) {
                // whatever was accepted is internally consistent
                int ones = 0;
                for (int j = 0; j < back[i]->n_tokens; j++) ones += back[i]->agent_mask[j];
                assert_int_equal(ones, back[i]->n_agent);
                traj_free(back[i]);
            }
            free(back);
        }
        free(copy);
    }
    assert_true(accepted < 20000); // most corruptions are caught
    traj_free(list[0]);
    traj_free(list[1]);
    traj_buf_free(&buf);
}

// ----------------------------------------------------------------------------
// the student view drops experience segments and keeps the teacher rows aligned

static void test_student_view(void** state) {
    (void)state;
    for (int global = 0; global <= 1; global++) {
        Trajectory* t = sample_trajectory(global, 4);
        StudentView v;
        traj_student_view(t, &v);
        // up to the last agent token: the observation after the last turn carries no loss
        assert_true(traj_student_end(t) < t->n_tokens);
        assert_int_equal(v.n_tokens, traj_student_end(t) - (global ? 4 : 0));
        assert_true(v.agent_mask[v.n_tokens - 1]);
        int row = 0;
        for (int i = 0; i < v.n_tokens; i++) {
            int src = v.src_index[i];
            assert_int_equal(v.tokens[i], t->tokens[src]);
            assert_int_not_equal(t->segment[src], TRAJ_SEG_EXPERIENCE);
            assert_int_equal(v.agent_mask[i], t->agent_mask[src]);
            if (v.agent_mask[i]) {
                assert_int_equal(v.topk_row[i], row);
                assert_int_equal(t->topk_ids[row * 4], t->tokens[src]); // row r belongs to this token
                row++;
            } else {
                assert_int_equal(v.topk_row[i], -1);
            }
        }
        assert_int_equal(row, t->n_agent);
        // the view of a step-wise trajectory is the stored history itself
        if (!global) assert_memory_equal(v.tokens, t->tokens, 4 * (size_t)v.n_tokens);
        // global: the system prompt is followed directly by the user message
        if (global) assert_int_equal(v.tokens[3], 5);
        student_view_free(&v);
        traj_free(t);
    }
    // a record without a turn keeps all of its context
    Trajectory* t = traj_create(4);
    int32_t sys[] = {1, 2, 3};
    traj_push_context(t, sys, 3, TRAJ_SEG_SYSTEM);
    assert_int_equal(traj_student_end(t), 3);
    traj_free(t);
}

// ----------------------------------------------------------------------------
// version 2: the teacher's log-probs and contexts

// a step-wise record (no experience tokens) whose steps 1 and 2 saw items spliced into the tool
// message before them, and the same for a global record (the experience put back, one entry)
static void add_teacher(Trajectory* t) {
    float lp[12];
    for (int i = 0; i < 12; i++) lp[i] = -0.25f * (float)i;
    traj_set_teacher_lp(t, lp);
    int32_t a[] = {60, 61}, b[] = {70, 71, 72};
    traj_add_teacher_context(t, 1, 10, 11, a, 2); // replaces the tool token 8 of step 0's observation
    traj_add_teacher_context(t, 2, 18, 18, b, 3); // inserts before step 1's observation's last token
}

static void test_teacher_extras(void** state) {
    (void)state;
    Trajectory* t = sample_trajectory(0, 4);
    add_teacher(t);
    t->flags |= TRAJ_FLAG_TEACHER_VIEW;
    TrajBuf buf = {0};
    traj_encode(t, &buf);
    size_t pos = 0;
    char err[512];
    Trajectory* back = traj_decode(buf.data, buf.len, &pos, err, sizeof(err));
    if (!back) fail_msg("decode: %s", err);
    assert_same(t, back);
    assert_int_equal(back->n_tctx, 2);
    assert_memory_equal(back->teacher_lp, t->teacher_lp, sizeof(float) * 12);
    const int32_t offsets[3] = {0, 2, 5}, inserted[3] = {70, 71, 72};
    assert_memory_equal(back->tctx_offset, offsets, sizeof(offsets));
    assert_memory_equal(back->tctx_ids, t->tctx_ids, sizeof(int32_t) * 5);
    assert_int_equal(back->tctx_end[1], 18);
    // contexts: step 0 sees the history, step 1 entry 0's splice, step 2 entry 1's
    int n, end, shift;
    int32_t* c = traj_teacher_context(back, 0, &n, &end, &shift);
    assert_int_equal(n, t->n_tokens);
    assert_memory_equal(c, t->tokens, sizeof(int32_t) * (size_t)n);
    assert_int_equal(end, 0), assert_int_equal(shift, 0);
    free(c);
    c = traj_teacher_context(back, 1, &n, &end, &shift);
    assert_int_equal(n, t->n_tokens + 1);
    assert_int_equal(end, 11), assert_int_equal(shift, 1);
    assert_memory_equal(c, t->tokens, sizeof(int32_t) * 10);
    assert_int_equal(c[10], 60), assert_int_equal(c[11], 61);
    assert_memory_equal(c + 12, t->tokens + 11, sizeof(int32_t) * (size_t)(t->n_tokens - 11));
    assert_int_equal(c[t->step_start[1] + shift], t->tokens[t->step_start[1]]); // agent tokens keep their ids
    free(c);
    c = traj_teacher_context(back, 2, &n, &end, &shift);
    assert_int_equal(n, t->n_tokens + 3);
    assert_int_equal(shift, 3);
    assert_memory_equal(c + 18, inserted, sizeof(inserted));
    assert_int_equal(c[21], t->tokens[18]);
    free(c);
    assert_int_equal(traj_teacher_entry(back, 0), -1);
    assert_int_equal(traj_teacher_entry(back, 2), 1);
    // copied onto a record of the same history
    Trajectory* s = sample_trajectory(0, 4);
    traj_copy_teacher(s, back);
    TrajBuf again = {0};
    s->flags |= TRAJ_FLAG_TEACHER_VIEW;
    traj_encode(s, &again);
    assert_int_equal(again.len, buf.len);
    assert_memory_equal(again.data, buf.data, buf.len);
    traj_buf_free(&again);
    traj_free(s);
    traj_free(back);

    // version 1: the same bytes without version 2's 4 + 8 + 4 bytes (no extras: teacher_lp flag,
    // counts, one offset) still decode
    Trajectory* plain = sample_trajectory(1, 4);
    TrajBuf v1 = {0};
    traj_encode(plain, &v1);
    v1.len -= 16;
    const uint32_t one = 1;
    memcpy(v1.data + 4, &one, 4);
    pos = 0;
    back = traj_decode(v1.data, v1.len, &pos, err, sizeof(err));
    if (!back) fail_msg("version 1: %s", err);
    assert_same(plain, back);
    assert_true(pos == v1.len && back->teacher_lp == NULL && back->n_tctx == 0);
    traj_free(back);
    traj_free(plain);
    traj_buf_free(&v1);

    // malformed extras, named
    const size_t ex = buf.len - (4 + 4 * 12 + 8 + 4 * (3 * 2 + 3) + 4 * 5); // has_teacher_lp
    const size_t tl = ex + 4, steps = tl + 4 * 12 + 8, at = steps + 8, to = at + 8;
    struct {
        size_t offset;
        uint32_t value;
        const char* needle;
    } cases[] = {
        {ex, 2, "has_teacher_lp is 2, must be 0 or 1"},
        {tl + 4, 0x3f800000u, "teacher_lp[1] = 1 is not a log-probability"},
        {steps + 4, 1, "tctx_step[1] = 1 is out of order"},
        {steps, 7, "tctx_step[0] = 7 is out of order or not a step (n_steps 3)"},
        {at, 16, "teacher context 0 replaces [16, 11), not a range before step 1's first token (12)"},
        {to + 4, 40, "teacher context 1 replaces [18, 40)"},
        {buf.len - 4, 0xffffffffu, "tctx_ids[4] = -1 is negative"},
        {0, 9, "wire version 9, this ingrain reads versions 1 to 2 (written by a newer ingrain?)"},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        TrajBuf b = {malloc(buf.len), buf.len, buf.len};
        memcpy(b.data, buf.data, buf.len);
        memcpy(b.data + (cases[i].offset ? cases[i].offset : 4), &cases[i].value, 4);
        pos = 0;
        err[0] = '\0';
        assert_null(traj_decode(b.data, b.len, &pos, err, sizeof(err)));
        if (!strstr(err, cases[i].needle)) fail_msg("case %zu: error '%s' lacks '%s'", i, err, cases[i].needle);
        free(b.data);
    }
    traj_buf_free(&buf);
    traj_free(t);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_build),     cmocka_unit_test(test_round_trip),   cmocka_unit_test(test_malformed),
        cmocka_unit_test(test_fuzz),      cmocka_unit_test(test_student_view), cmocka_unit_test(test_teacher_extras),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
