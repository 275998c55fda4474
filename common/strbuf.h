// A growable string: the one buffer every module builds text in (prompts, observations, JSON
// messages, YAML, sbatch scripts).
#pragma once
#include <stdarg.h>
#include <stddef.h>

typedef struct {
    char* s; // NUL-terminated once anything was appended; NULL before
    size_t len, cap;
} StrBuf;

void strbuf_printf(StrBuf* b, const char* fmt, ...) __attribute__((format(printf, 2, 3)));
void strbuf_vprintf(StrBuf* b, const char* fmt, va_list ap);
void strbuf_append(StrBuf* b, const void* bytes, size_t n); // n raw bytes
void strbuf_clear(StrBuf* b);                               // empty, keeping the memory
char* strbuf_take(StrBuf* b); // the string (malloc'd, "" if empty); b is reset
void strbuf_free(StrBuf* b);
