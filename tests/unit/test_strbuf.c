// Unit tests of the growable string (common/strbuf.h): formatted and raw appends across many
// growths, embedded NUL bytes counted by len, clear keeping the memory, take and free resetting.
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/strbuf.h"

// ----------------------------------------------------------------------------

static void test_empty_take(void** state) {
    (void)state;
    StrBuf b = {0};
    char* s = strbuf_take(&b);
    assert_string_equal(s, "");
    free(s);
    strbuf_free(&b); // a never-used buffer frees cleanly
    assert_null(b.s);
}

static void test_printf_grows(void** state) {
    (void)state;
    StrBuf b = {0};
    char want[8192] = "";
    size_t n = 0;
    for (int i = 0; i < 1000; i++) {
        strbuf_printf(&b, "%d,", i);
        n += (size_t)snprintf(want + n, sizeof(want) - n, "%d,", i);
        assert_int_equal(b.len, n);
        assert_true(b.cap > b.len);
        assert_int_equal(b.s[b.len], '\0');
    }
    char* big = malloc(5000);
    memset(big, 'x', 4999);
    big[4999] = '\0';
    strbuf_printf(&b, "%s", big); // one append larger than the buffer so far
    assert_int_equal(b.len, n + 4999);
    assert_memory_equal(b.s, want, n);
    assert_memory_equal(b.s + n, big, 4999);
    free(big);
    char* s = strbuf_take(&b);
    assert_int_equal(strlen(s), n + 4999);
    assert_null(b.s);
    assert_int_equal(b.len, 0);
    assert_int_equal(b.cap, 0);
    free(s);
}

static void test_append_raw_and_clear(void** state) {
    (void)state;
    StrBuf b = {0};
    strbuf_append(&b, "ab\0cd", 5);
    assert_int_equal(b.len, 5);
    assert_memory_equal(b.s, "ab\0cd", 6);
    strbuf_append(&b, "", 0);
    assert_int_equal(b.len, 5);
    const char* mem = b.s;
    const size_t cap = b.cap;
    strbuf_clear(&b);
    assert_int_equal(b.len, 0);
    assert_string_equal(b.s, "");
    assert_ptr_equal(b.s, mem);
    assert_int_equal(b.cap, cap);
    strbuf_printf(&b, "%s=%.2f", "x", 0.5);
    assert_string_equal(b.s, "x=0.50");
    strbuf_free(&b);
    assert_null(b.s);
    assert_int_equal(b.len, 0);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_empty_take),
        cmocka_unit_test(test_printf_grows),
        cmocka_unit_test(test_append_raw_and_clear),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
