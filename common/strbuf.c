// The growable string (strbuf.h).
#include "common/strbuf.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/check.h"

// room for `extra` more bytes and the NUL; doubling keeps appends amortised O(1)
static void reserve(StrBuf* b, size_t extra) {
    if (b->len + extra + 1 <= b->cap) return;
    size_t cap = b->cap ? b->cap : 128;
    while (b->len + extra + 1 > cap) cap *= 2;
    b->s = reallocCheck(b->s, cap);
    b->cap = cap;
}

void strbuf_vprintf(StrBuf* b, const char* fmt, va_list ap) {
    va_list ap2;
    va_copy(ap2, ap);
    const int n = vsnprintf(NULL, 0, fmt, ap2);
    va_end(ap2);
    if (n < 0) return;
    reserve(b, (size_t)n);
    vsnprintf(b->s + b->len, (size_t)n + 1, fmt, ap);
    b->len += (size_t)n;
}

void strbuf_printf(StrBuf* b, const char* fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    strbuf_vprintf(b, fmt, ap);
    va_end(ap);
}

void strbuf_append(StrBuf* b, const void* bytes, size_t n) {
    reserve(b, n);
    if (n) memcpy(b->s + b->len, bytes, n);
    b->len += n;
    b->s[b->len] = '\0';
}

void strbuf_clear(StrBuf* b) {
    b->len = 0;
    if (b->s) b->s[0] = '\0';
}

char* strbuf_take(StrBuf* b) {
    char* s = b->s ? b->s : strdupCheck("");
    memset(b, 0, sizeof(*b));
    return s;
}

void strbuf_free(StrBuf* b) {
    free(b->s);
    memset(b, 0, sizeof(*b));
}
