// Experience list, rendering and the step-wise selectors (rollout/inject.h): the rendered text,
// BM25 selection bounds (min always, max never exceeded, the relative cut, ties by list order,
// zero-score fill), triggered items (the miner's condition parsed from an item's text and checked
// on the task or the last tool result; shown exactly where it holds, before the BM25 picks), and
// the LLM selector's request and strict reply parser.
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <stdlib.h>
#include <string.h>

#include "rollout/inject.h"

static void make_list(ExpList* l) {
    exp_list_init(l);
    exp_list_add(l, 7, "Refine query: When no result is a person, search again with person added.");
    exp_list_add(l, 9, "Pick kind: When results share a name, visit the one whose kind you need.");
    exp_list_add(l, 12, "Place page: When a question asks for a country, answer from the city page.");
    exp_list_add(l, 20, "Saw rule: When crafting oak items, list a saw in using.");
    exp_list_add(l, 21, "Coal rule: When crafting glass, list one coal per craft.");
}

static void test_list_and_render(void** state) {
    (void)state;
    ExpList l;
    make_list(&l);
    assert_int_equal(l.n, 5);
    assert_int_equal(l.ids[2], 12);
    char* all = inject_render_global(&l);
    const char* want_head = "\n\nExperience from earlier episodes:\n- Refine query: When no result";
    assert_memory_equal(all, want_head, strlen(want_head));
    assert_non_null(strstr(all, "\n- Coal rule: When crafting glass, list one coal per craft."));
    assert_null(strchr(all + strlen(all) - 1, '\n'));
    free(all);
    const int idx[2] = {3, 0};
    char* some = inject_render_step(&l, idx, 2);
    assert_string_equal(some,
                        "Experience that may help now:\n- Saw rule: When crafting oak items, list a saw in using."
                        "\n- Refine query: When no result is a person, search again with person added.\n\n");
    free(some);
    exp_list_free(&l);
    assert_int_equal(l.n, 0);
}

static void test_bm25_bounds(void** state) {
    (void)state;
    ExpList l;
    make_list(&l);
    int idx[8];
    // min 1, max 3, cut 0.5: the best match, then others above half its score
    SelectParams p = {1, 3, 0.5, 0};
    ExpSelector* s = selector_create(&l, &p);
    int n = selector_pick(s, "craft an oak frame with a saw", NULL, NULL, idx);
    assert_int_equal(n, 1);
    assert_int_equal(idx[0], 3);
    // "crafting" terms hit the two crafting items: both are close, both kept
    n = selector_pick(s, "crafting glass with coal, crafting oak with saw", NULL, NULL, idx);
    assert_int_equal(n, 2);
    assert_true((idx[0] == 3 && idx[1] == 4) || (idx[0] == 4 && idx[1] == 3));
    selector_free(s);
    // min 3: filled with the next best even below the cut or at zero, ties by list order
    p = (SelectParams){3, 4, 0.5, 0};
    s = selector_create(&l, &p);
    n = selector_pick(s, "craft an oak frame with a saw", NULL, NULL, idx);
    assert_int_equal(n, 3);
    assert_int_equal(idx[0], 3);
    n = selector_pick(s, "zzz unrelated words", NULL, NULL, idx);
    assert_int_equal(n, 3);
    assert_int_equal(idx[0], 0);
    assert_int_equal(idx[1], 1);
    assert_int_equal(idx[2], 2);
    selector_free(s);
    // cut 0: every item with a positive score, up to max
    p = (SelectParams){1, 2, 0.0, 0};
    s = selector_create(&l, &p);
    n = selector_pick(s, "when crafting a person page", NULL, NULL, idx);
    assert_int_equal(n, 2);
    selector_free(s);
    // bounds past the list size are capped by it
    p = (SelectParams){8, 8, 0.5, 0};
    s = selector_create(&l, &p);
    assert_int_equal(selector_pick(s, "anything", NULL, NULL, idx), 5);
    selector_free(s);
    exp_list_free(&l);
    // an empty list selects nothing
    exp_list_init(&l);
    p = (SelectParams){3, 8, 0.5, 0};
    s = selector_create(&l, &p);
    assert_int_equal(selector_pick(s, "anything", NULL, NULL, idx), 0);
    selector_free(s);
}

static void test_triggers(void** state) {
    (void)state;
    char* phrase;
    assert_int_equal(exp_item_trigger("Citizen of: When the last tool result mentions \"citizen of\", call search next.",
                                      &phrase),
                     TRIGGER_RESULT);
    assert_string_equal(phrase, "citizen of");
    assert_true(exp_trigger_holds(TRIGGER_RESULT, phrase, NULL, "Kelda Moor: a person. Citizen of Pilzestan."));
    assert_false(exp_trigger_holds(TRIGGER_RESULT, phrase, NULL, "Of citizen rank; citizenship of Pilzestan."));
    assert_false(exp_trigger_holds(TRIGGER_RESULT, phrase, "Citizen of where?", NULL)); // a task is no result
    free(phrase);
    assert_int_equal(exp_item_trigger("Oak: If the task mentions \"oak\", call get.", &phrase), TRIGGER_TASK);
    assert_string_equal(phrase, "oak");
    assert_true(exp_trigger_holds(TRIGGER_TASK, phrase, "Craft an oak frame.", NULL));
    assert_false(exp_trigger_holds(TRIGGER_TASK, phrase, NULL, "Got 1 oak log."));
    free(phrase);
    // no condition in the miner's words: none, and it always holds
    assert_int_equal(exp_item_trigger("Pick kind: When results share a name, visit the right kind.", &phrase),
                     TRIGGER_NONE);
    assert_null(phrase);
    assert_int_equal(exp_item_trigger("Empty: When the task mentions \"\", call get.", &phrase), TRIGGER_NONE);
    assert_int_equal(exp_item_trigger("When the task mentions \"oak\" (no name)", &phrase), TRIGGER_NONE);
    assert_true(exp_trigger_holds(TRIGGER_NONE, NULL, NULL, NULL));

    ExpList l;
    make_list(&l);
    exp_list_add(&l, 30, "Citizen: When the last tool result mentions \"citizen\", call search next.");
    exp_list_add(&l, 31, "River: When the last tool result mentions \"river\", call search next.");
    exp_list_add(&l, 32, "Oak: When the task mentions \"oak\", call get next.");
    int idx[8];
    SelectParams p = {2, 4, 0.5, 1};
    ExpSelector* s = selector_create(&l, &p);
    // the item whose condition holds comes first, though BM25 ranks it below the saw rule; the
    // other triggered items are never shown; then the plain items by BM25 (min counts them all)
    const char* query = "craft an oak frame with a saw, citizen";
    int n = selector_pick(s, query, NULL, "Kelda Moor: a person. Citizen of Pilzestan.", idx);
    assert_int_equal(n, 3);
    assert_int_equal(idx[0], 5);
    assert_int_equal(idx[1], 3);
    assert_int_equal(idx[2], 0); // "with": above half the saw rule's score
    // the first step: task conditions only
    n = selector_pick(s, query, "Craft an oak frame.", NULL, idx);
    assert_int_equal(n, 3);
    assert_int_equal(idx[0], 7);
    assert_int_equal(idx[1], 3);
    // nothing holds: BM25 over the plain items alone, never a triggered one
    n = selector_pick(s, "river citizen oak", NULL, "Got 1 oak log.", idx);
    for (int i = 0; i < n; i++) assert_true(idx[i] < 5);
    selector_free(s);
    // off: every item is ranked by BM25 alone
    p.triggers = 0;
    s = selector_create(&l, &p);
    n = selector_pick(s, "river", NULL, "Kelda Moor: a person. Citizen of Pilzestan.", idx);
    assert_true(n >= 1);
    assert_int_equal(idx[0], 6);
    selector_free(s);
    exp_list_free(&l);
}

static void test_llm_request_and_parse(void** state) {
    (void)state;
    ExpList l;
    make_list(&l);
    SelectParams p = {2, 3, 0.5, 0};
    ExpSelector* s = selector_create(&l, &p);
    char* req = selector_llm_request(s);
    assert_non_null(strstr(req, "\n1. Refine query: When no result is a person"));
    assert_non_null(strstr(req, "\n5. Coal rule: When crafting glass"));
    assert_non_null(
        strstr(req, "Reply with 2 to 3 item numbers separated by commas (for example: 1, 2), nothing else."));
    free(req);

    int idx[8];
    char err[128];
    assert_int_equal(selector_llm_parse(s, "2, 5", idx, err, sizeof(err)), 2);
    assert_int_equal(idx[0], 1);
    assert_int_equal(idx[1], 4);
    assert_int_equal(selector_llm_parse(s, " \n4,1 , 3\n", idx, err, sizeof(err)), 3);
    assert_int_equal(idx[0], 3);
    assert_int_equal(idx[2], 2);
    static const struct {
        const char* reply;
        const char* why;
    } bad[] = {
        {"", "expected an item number at offset 0"},
        {"2 5", "unexpected character '5' at offset 2"},
        {"2, 5.", "unexpected character '.' at offset 4"},
        {"2,", "expected an item number at offset 2"},
        {"Items: 2, 5", "expected an item number at offset 0"},
        {"0, 2", "item number 0 is outside 1..5"},
        {"2, 6", "item number 6 is outside 1..5"},
        {"3, 3", "item number 3 is repeated"},
        {"1", "1 item numbers, fewer than 2"},
        {"1, 2, 3, 4", "more than 3 item numbers"},
        {"-1, 2", "expected an item number at offset 0"},
        {"99999999999999999999, 1", "outside 1..5"},
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        err[0] = '\0';
        if (selector_llm_parse(s, bad[i].reply, idx, err, sizeof(err)) != -1)
            fail_msg("reply '%s' parsed", bad[i].reply);
        if (!strstr(err, bad[i].why)) fail_msg("reply '%s': error '%s' lacks '%s'", bad[i].reply, err, bad[i].why);
    }
    selector_free(s);
    exp_list_free(&l);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_list_and_render),
        cmocka_unit_test(test_bm25_bounds),
        cmocka_unit_test(test_triggers),
        cmocka_unit_test(test_llm_request_and_parse),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
