// Unit tests of the BM25 scorer: tokenisation, scores against values computed by hand from the
// formula in rollout/bm25.h, ranking and tie-breaking.
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "rollout/bm25.h"

// ----------------------------------------------------------------------------

static void test_tokenize(void** state) {
    (void)state;
    char* terms;
    int n;
    bm25_tokenize("Out-of-STOCK: item #42 (caf\xc3\xa9)!", &terms, &n);
    const char* want[] = {"out", "of", "stock", "item", "42", "caf\xc3\xa9"};
    assert_int_equal(n, 6);
    const char* s = terms;
    for (int i = 0; i < n; i++, s += strlen(s) + 1) assert_string_equal(s, want[i]);
    free(terms);
    bm25_tokenize("  ,;  ", &terms, &n);
    assert_int_equal(n, 0);
    free(terms);
}

// Collection: d0 "the cat sat" (3 terms), d1 "the dog sat on the mat" (6), d2 "cat cat dog" (3);
// N = 3, avgdl = 4, k1 = 1.2, b = 0.75.
//   idf(cat) = idf(dog) = idf(the) = ln(1 + 1.5/2.5) = ln 1.6 = 0.4700036292457356
//   idf(mat) = ln(1 + 2.5/1.5) = 0.9808292530117262
//   length norm: |d| = 3 -> 0.25 + 0.75 * 3/4 = 0.8125;  |d| = 6 -> 1.375
//   "cat":  d0 = ln1.6 * 2.2 / (1 + 1.2*0.8125)  = 0.523548346501579
//           d2 = ln1.6 * 2 * 2.2 / (2 + 0.975)   = 0.6951314180441133
//   "dog mat mat" (mat counted once):
//           d1 = (ln1.6 + 0.98083) * 2.2 / (1 + 1.65) = 1.2044650343269496
//           d2 = ln1.6 * 2.2 / 1.975                 = 0.523548346501579
//   "The CAT, the dog!": d0 = 2 * 0.523548346501579, d1 = ln1.6 * 2 * 2.2/(2 + 1.65) + ln1.6 * 2.2/2.65
//           = 0.9567714096509212, d2 = 0.6951314180441133 + 0.523548346501579
static Bm25* collection(void) {
    Bm25* ix = bm25_create(BM25_K1, BM25_B);
    assert_int_equal(bm25_add(ix, "the cat sat"), 0);
    assert_int_equal(bm25_add(ix, "the dog sat on the mat"), 1);
    assert_int_equal(bm25_add(ix, "cat cat dog"), 2);
    assert_int_equal(bm25_count(ix), 3);
    return ix;
}

static void check(Bm25* ix, const char* q, double a, double b, double c) {
    double s[3];
    bm25_score(ix, q, s);
    assert_true(fabs(s[0] - a) < 1e-12);
    assert_true(fabs(s[1] - b) < 1e-12);
    assert_true(fabs(s[2] - c) < 1e-12);
}

static void test_scores(void** state) {
    (void)state;
    Bm25* ix = collection();
    check(ix, "cat", 0.523548346501579, 0.0, 0.6951314180441133);
    check(ix, "dog mat mat", 0.0, 1.2044650343269496, 0.523548346501579);
    check(ix, "The CAT, the dog!", 1.047096693003158, 0.9567714096509212, 1.2186797645456924);
    check(ix, "zebra", 0.0, 0.0, 0.0);
    check(ix, "", 0.0, 0.0, 0.0);
    bm25_free(ix);
}

static void test_top(void** state) {
    (void)state;
    Bm25* ix = collection();
    int ids[3];
    double sc[3];
    assert_int_equal(bm25_top(ix, "cat", 3, ids, sc), 2); // d1 scores 0: left out
    assert_int_equal(ids[0], 2);
    assert_int_equal(ids[1], 0);
    assert_true(sc[0] > sc[1]);
    assert_int_equal(bm25_top(ix, "dog mat", 1, ids, NULL), 1);
    assert_int_equal(ids[0], 1);
    bm25_free(ix);
    // identical documents tie: the lower index first
    ix = bm25_create(BM25_K1, BM25_B);
    bm25_add(ix, "red apple");
    bm25_add(ix, "green pear");
    bm25_add(ix, "red apple");
    assert_int_equal(bm25_top(ix, "apple", 3, ids, sc), 2);
    assert_int_equal(ids[0], 0);
    assert_int_equal(ids[1], 2);
    assert_true(sc[0] == sc[1]);
    bm25_free(ix);
}

static void test_many_terms(void** state) {
    (void)state;
    // grows the vocabulary hash past its first size; every document stays findable by its own word
    Bm25* ix = bm25_create(BM25_K1, BM25_B);
    char text[64];
    for (int i = 0; i < 500; i++) {
        snprintf(text, sizeof(text), "word%d common", i);
        bm25_add(ix, text);
    }
    int id;
    for (int i = 0; i < 500; i += 37) {
        snprintf(text, sizeof(text), "word%d", i);
        assert_int_equal(bm25_top(ix, text, 1, &id, NULL), 1);
        assert_int_equal(id, i);
    }
    bm25_free(ix);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_tokenize),
        cmocka_unit_test(test_scores),
        cmocka_unit_test(test_top),
        cmocka_unit_test(test_many_terms),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
