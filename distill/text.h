// Small text helpers of the experience side: a malloc'd printf, word counting, trimming, UTF-8
// checks (jansson accepts only valid UTF-8, and model output may not be).
#pragma once
#include <stddef.h>

#include "common/strbuf.h" // the buffer the experience side builds its texts in

// a malloc'd printf
char* text_printf(const char* fmt, ...) __attribute__((format(printf, 1, 2)));

// words separated by ASCII whitespace
int text_count_words(const char* s);
// a malloc'd copy of s[0..n) without leading and trailing whitespace
char* text_trim_dup(const char* s, size_t n);
// the first max_words words of s, separated by single spaces, malloc'd
char* text_first_words(const char* s, int max_words);
// any byte below 0x20 (newline, tab, ...) or 0x7f
int text_has_control(const char* s);
int text_utf8_valid(const char* s);
// a malloc'd copy with every byte of an invalid UTF-8 sequence replaced by '?'
char* text_utf8_sanitize(const char* s);
// a malloc'd copy where runs of whitespace (newlines included) become one space, trimmed
char* text_one_line(const char* s);
