// Experience list, rendering and the step-wise selectors (rollout/inject.h): the rendered text,
// BM25 selection bounds (min always, max never exceeded, the relative cut, ties by list order,
// zero-score fill), and the LLM selector's request and strict reply parser.
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
    SelectParams p = {1, 3, 0.5};
    ExpSelector* s = selector_create(&l, &p);
    int n = selector_bm25(s, "craft an oak frame with a saw", idx);
    assert_int_equal(n, 1);
    assert_int_equal(idx[0], 3);
    // "crafting" terms hit the two crafting items: both are close, both kept
    n = selector_bm25(s, "crafting glass with coal, crafting oak with saw", idx);
    assert_int_equal(n, 2);
    assert_true((idx[0] == 3 && idx[1] == 4) || (idx[0] == 4 && idx[1] == 3));
    selector_free(s);
    // min 3: filled with the next best even below the cut or at zero, ties by list order
    p = (SelectParams){3, 4, 0.5};
    s = selector_create(&l, &p);
    n = selector_bm25(s, "craft an oak frame with a saw", idx);
    assert_int_equal(n, 3);
    assert_int_equal(idx[0], 3);
    n = selector_bm25(s, "zzz unrelated words", idx);
    assert_int_equal(n, 3);
    assert_int_equal(idx[0], 0);
    assert_int_equal(idx[1], 1);
    assert_int_equal(idx[2], 2);
    selector_free(s);
    // cut 0: every item with a positive score, up to max
    p = (SelectParams){1, 2, 0.0};
    s = selector_create(&l, &p);
    n = selector_bm25(s, "when crafting a person page", idx);
    assert_int_equal(n, 2);
    selector_free(s);
    // bounds past the list size are capped by it
    p = (SelectParams){8, 8, 0.5};
    s = selector_create(&l, &p);
    assert_int_equal(selector_bm25(s, "anything", idx), 5);
    selector_free(s);
    exp_list_free(&l);
    // an empty list selects nothing
    exp_list_init(&l);
    p = (SelectParams){3, 8, 0.5};
    s = selector_create(&l, &p);
    assert_int_equal(selector_bm25(s, "anything", idx), 0);
    selector_free(s);
}

static void test_llm_request_and_parse(void** state) {
    (void)state;
    ExpList l;
    make_list(&l);
    SelectParams p = {2, 3, 0.5};
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
        cmocka_unit_test(test_llm_request_and_parse),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
