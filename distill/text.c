// Text helpers of the experience side (see text.h).
#include "distill/text.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/check.h"

char* text_printf(const char* fmt, ...) {
    StrBuf b = {0};
    va_list ap;
    va_start(ap, fmt);
    strbuf_vprintf(&b, fmt, ap);
    va_end(ap);
    return strbuf_take(&b);
}

// ----------------------------------------------------------------------------
// words

static int is_space(unsigned char c) {
    return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\f' || c == '\v';
}

int text_count_words(const char* s) {
    int n = 0, in = 0;
    for (const unsigned char* p = (const unsigned char*)s; *p; p++) {
        if (is_space(*p)) in = 0;
        else if (!in) in = 1, n++;
    }
    return n;
}

char* text_trim_dup(const char* s, size_t n) {
    while (n > 0 && is_space((unsigned char)*s)) s++, n--;
    while (n > 0 && is_space((unsigned char)s[n - 1])) n--;
    char* out = mallocCheck(n + 1);
    memcpy(out, s, n);
    out[n] = '\0';
    return out;
}

char* text_first_words(const char* s, int max_words) {
    StrBuf b = {0};
    const unsigned char* p = (const unsigned char*)s;
    for (int w = 0; w < max_words; w++) {
        while (*p && is_space(*p)) p++;
        if (!*p) break;
        const unsigned char* start = p;
        while (*p && !is_space(*p)) p++;
        if (w > 0) strbuf_append(&b, " ", 1);
        strbuf_append(&b, (const char*)start, (size_t)(p - start));
    }
    return strbuf_take(&b);
}

char* text_one_line(const char* s) { return text_first_words(s, 1 << 30); }

int text_has_control(const char* s) {
    for (const unsigned char* p = (const unsigned char*)s; *p; p++) {
        if (*p < 0x20 || *p == 0x7f) return 1;
    }
    return 0;
}

// ----------------------------------------------------------------------------
// UTF-8

// length of the valid UTF-8 sequence at p, 0 when invalid (overlong, surrogate, > U+10FFFF, cut)
static int utf8_len(const unsigned char* p) {
    if (p[0] < 0x80) return 1;
    int n;
    unsigned cp;
    if ((p[0] & 0xe0) == 0xc0) n = 2, cp = p[0] & 0x1f;
    else if ((p[0] & 0xf0) == 0xe0) n = 3, cp = p[0] & 0x0f;
    else if ((p[0] & 0xf8) == 0xf0) n = 4, cp = p[0] & 0x07;
    else return 0;
    for (int i = 1; i < n; i++) {
        if ((p[i] & 0xc0) != 0x80) return 0; // also stops at the NUL
        cp = (cp << 6) | (p[i] & 0x3f);
    }
    static const unsigned min_cp[5] = {0, 0, 0x80, 0x800, 0x10000};
    if (cp < min_cp[n] || cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff)) return 0;
    return n;
}

int text_utf8_valid(const char* s) {
    for (const unsigned char* p = (const unsigned char*)s; *p;) {
        int n = utf8_len(p);
        if (!n) return 0;
        p += n;
    }
    return 1;
}

char* text_utf8_sanitize(const char* s) {
    char* out = strdupCheck(s);
    for (unsigned char* p = (unsigned char*)out; *p;) {
        int n = utf8_len(p);
        if (n) p += n;
        else *p++ = '?';
    }
    return out;
}
