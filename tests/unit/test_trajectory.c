// Unit tests of the trajectory record: building, wire round trips, bounds-checked decoding under
// truncation and random corruption (a deterministic fuzz), and the student view.
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
        {0, 2, "record 1 of 2: trajectory record at byte 816: field 'magic' needs 4 bytes, only 0 left"},
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
    b.len = buf.len - 3;
    expect_decode_error(&b, "record 0 of 1: trajectory record at byte 792: field 'items' needs 24 bytes, only 21 left");
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
        assert_int_equal(v.n_tokens, t->n_tokens - (global ? 4 : 0));
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
        if (!global) assert_memory_equal(v.tokens, t->tokens, 4 * (size_t)t->n_tokens);
        // global: the system prompt is followed directly by the user message
        if (global) assert_int_equal(v.tokens[3], 5);
        student_view_free(&v);
        traj_free(t);
    }
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_build),     cmocka_unit_test(test_round_trip),   cmocka_unit_test(test_malformed),
        cmocka_unit_test(test_fuzz),      cmocka_unit_test(test_student_view),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
