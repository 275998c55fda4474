// Byte-level BPE encoding: NFC (when the file asks for it), the pre-tokenizer steps of
// tokenizer.json (Split with a PCRE2 regex, ByteLevel), then BPE merges by rank on each piece.
// The merge loop keeps the symbols of a piece in a linked list and the candidate pairs in a
// min-heap ordered by (rank, position), so a piece of n bytes costs O(n log n), not O(n^2).
#include <stdlib.h>
#include <string.h>

#include "common/check.h"
#include "common/log.h"
#include "model/tokenizer_internal.h"

const char* const bytelevel_gpt2_pattern =
    "'s|'t|'re|'ve|'m|'ll|'d| ?\\p{L}+| ?\\p{N}+| ?[^\\s\\p{L}\\p{N}]+|\\s+(?!\\S)|\\s+";

// ----------------------------------------------------------------------------
// GPT-2 bytes_to_unicode: printable bytes stand for themselves; the 68 others (0..32, 127..160,
// 173) map in byte order to code points 256..323

int bytelevel_codepoint(int b) {
    if (b <= 32) return 256 + b;
    if (b >= 127 && b <= 160) return 256 + 33 + (b - 127);
    if (b == 173) return 256 + 67;
    return b;
}

int bytelevel_byte(uint32_t cp) {
    if (cp < 256) return (cp <= 32 || (cp >= 127 && cp <= 160) || cp == 173) ? -1 : (int)cp;
    if (cp < 256 + 33) return (int)cp - 256;
    if (cp < 256 + 67) return 127 + ((int)cp - 256 - 33);
    if (cp == 256 + 67) return 173;
    return -1;
}

size_t bytelevel_spell(int byte, char out[2]) {
    int cp = bytelevel_codepoint(byte);
    if (cp < 0x80) {
        out[0] = (char)cp;
        return 1;
    }
    out[0] = (char)(0xc0 | cp >> 6);
    out[1] = (char)(0x80 | (cp & 0x3f));
    return 2;
}

long bytelevel_decode(const char* str, size_t len, char* out) {
    const unsigned char* s = (const unsigned char*)str;
    long n = 0;
    for (size_t i = 0; i < len;) {
        uint32_t cp = s[i]; // stand-ins are 1- or 2-byte UTF-8; longer sequences stand for nothing
        if (s[i] >= 0xc0 && s[i] < 0xe0 && i + 1 < len) cp = (uint32_t)(s[i] & 0x1f) << 6 | (s[i + 1] & 0x3f);
        else if (s[i] >= 0x80) return -1;
        i += cp < 0x80 ? 1 : 2;
        int b = bytelevel_byte(cp);
        if (b < 0) return -1;
        out[n++] = (char)b;
    }
    return n;
}

// ----------------------------------------------------------------------------
// per-call scratch space (a Tokenizer is read-only, so encoding may run on several threads)

typedef struct {
    size_t off, len;
} Piece;

typedef struct {
    int rank, pos;
} Cand;

typedef struct {
    Piece* pieces[2]; // current and next list of pieces
    int n_pieces[2], cap_pieces[2];
    int *id, *prev, *next; // (n) symbols of the piece being merged
    Cand* heap;            // (3n) candidate merges
    int cap_word;
    char* mapped; // byte-level spelling of a piece, for ignore_merges
    size_t cap_mapped;
    pcre2_match_data* md;
    pcre2_match_context* mctx;
    pcre2_jit_stack* jit_stack; // made on the first JIT stack overflow only
} Scratch;

static void scratch_free(Scratch* s) {
    for (int k = 0; k < 2; k++) free(s->pieces[k]);
    free(s->id);
    free(s->prev);
    free(s->next);
    free(s->heap);
    free(s->mapped);
    if (s->md) pcre2_match_data_free(s->md);
    if (s->mctx) pcre2_match_context_free(s->mctx);
    if (s->jit_stack) pcre2_jit_stack_free(s->jit_stack);
}

static void piece_push(Scratch* s, int list, size_t off, size_t len) {
    if (s->n_pieces[list] == s->cap_pieces[list]) {
        s->cap_pieces[list] = s->cap_pieces[list] ? 2 * s->cap_pieces[list] : 256;
        s->pieces[list] = reallocCheck(s->pieces[list], (size_t)s->cap_pieces[list] * sizeof(Piece));
    }
    s->pieces[list][s->n_pieces[list]++] = (Piece){off, len};
}

// ----------------------------------------------------------------------------
// regex split ("Isolated": each match is a piece, and so is each gap between matches)

static size_t utf8_char_len(unsigned char c) { return c < 0x80 ? 1 : c < 0xe0 ? 2 : c < 0xf0 ? 3 : 4; }

static int regex_match(const pcre2_code* re, const char* subject, size_t len, size_t pos, Scratch* s) {
    for (;;) {
        int rc = pcre2_match(re, (PCRE2_SPTR)subject, len, pos, PCRE2_NO_UTF_CHECK, s->md, s->mctx);
        if (rc != PCRE2_ERROR_JIT_STACKLIMIT || s->jit_stack) return rc;
        // long pieces can overflow the default 32 KiB JIT stack: retry once with a large one
        s->jit_stack = pcre2_jit_stack_create(64 * 1024, 64 * 1024 * 1024, NULL);
        if (!s->jit_stack) fatal("pcre2_jit_stack_create failed (out of memory)");
        s->mctx = pcre2_match_context_create(NULL);
        if (!s->mctx) fatal("pcre2_match_context_create failed (out of memory)");
        pcre2_jit_stack_assign(s->mctx, NULL, s->jit_stack);
    }
}

static void split_piece(const pcre2_code* re, const char* w, Piece in, Scratch* s, int list) {
    const char* subject = w + in.off;
    size_t start = 0, pos = 0;
    while (pos < in.len) {
        int rc = regex_match(re, subject, in.len, pos, s);
        if (rc == PCRE2_ERROR_NOMATCH) break;
        if (rc < 0) {
            PCRE2_UCHAR msg[256];
            pcre2_get_error_message(rc, msg, sizeof(msg));
            fatal("pre-tokenizer regex failed on a piece of %zu bytes: %s", in.len, (const char*)msg);
        }
        PCRE2_SIZE* ov = pcre2_get_ovector_pointer(s->md);
        if (ov[1] == ov[0]) { // empty match: step over one character
            if (ov[0] >= in.len) break;
            pos = ov[0] + utf8_char_len((unsigned char)subject[ov[0]]);
            continue;
        }
        if (ov[0] > start) piece_push(s, list, in.off + start, ov[0] - start);
        piece_push(s, list, in.off + ov[0], ov[1] - ov[0]);
        start = pos = ov[1];
    }
    if (start < in.len) piece_push(s, list, in.off + start, in.len - start);
}

// ----------------------------------------------------------------------------
// BPE on one piece

static int cand_less(Cand a, Cand b) { return a.rank < b.rank || (a.rank == b.rank && a.pos < b.pos); }

static void heap_push(Cand* h, int* n, Cand c) {
    int i = (*n)++;
    while (i > 0 && cand_less(c, h[(i - 1) / 2])) {
        h[i] = h[(i - 1) / 2];
        i = (i - 1) / 2;
    }
    h[i] = c;
}

static Cand heap_pop(Cand* h, int* n) {
    Cand top = h[0], last = h[--(*n)];
    int i = 0;
    for (;;) {
        int c = 2 * i + 1;
        if (c >= *n) break;
        if (c + 1 < *n && cand_less(h[c + 1], h[c])) c++;
        if (!cand_less(h[c], last)) break;
        h[i] = h[c];
        i = c;
    }
    if (*n > 0) h[i] = last;
    return top;
}

static void push_pair(const Tokenizer* t, Scratch* s, int* nh, int pos) {
    int merged, rank = mergemap_get(&t->merges, s->id[pos], s->id[s->next[pos]], &merged);
    if (rank >= 0) heap_push(s->heap, nh, (Cand){rank, pos});
}

static void bpe_piece(const Tokenizer* t, const unsigned char* p, size_t len, Scratch* s, TokenBuf* out) {
    if (len == 1) {
        tokenbuf_push(out, t->byte_id[p[0]]);
        return;
    }
    if (t->ignore_merges) {
        if (2 * len > s->cap_mapped) {
            s->cap_mapped = 2 * len;
            s->mapped = reallocCheck(s->mapped, s->cap_mapped);
        }
        size_t m = 0;
        for (size_t i = 0; i < len; i++) m += bytelevel_spell(p[i], s->mapped + m);
        int id = strmap_get(&t->vocab, &t->arena, s->mapped, m);
        if (id >= 0) {
            tokenbuf_push(out, id);
            return;
        }
    }
    int n = (int)len;
    if (n > s->cap_word) {
        s->cap_word = n;
        s->id = reallocCheck(s->id, (size_t)n * sizeof(int));
        s->prev = reallocCheck(s->prev, (size_t)n * sizeof(int));
        s->next = reallocCheck(s->next, (size_t)n * sizeof(int));
        s->heap = reallocCheck(s->heap, (size_t)3 * n * sizeof(Cand));
    }
    for (int i = 0; i < n; i++) {
        s->id[i] = t->byte_id[p[i]];
        s->prev[i] = i - 1;
        s->next[i] = i + 1 < n ? i + 1 : -1;
    }
    int nh = 0;
    for (int i = 0; i + 1 < n; i++) push_pair(t, s, &nh, i);
    while (nh > 0) {
        Cand c = heap_pop(s->heap, &nh);
        int i = c.pos, j = s->next[i];
        if (s->id[i] < 0 || j < 0) continue; // symbol merged away, or now last
        int merged, rank = mergemap_get(&t->merges, s->id[i], s->id[j], &merged);
        if (rank != c.rank) continue; // stale: the pair at i changed since it was queued
        s->id[i] = merged;
        s->id[j] = -1;
        s->next[i] = s->next[j];
        if (s->next[j] >= 0) s->prev[s->next[j]] = i;
        if (s->prev[i] >= 0) push_pair(t, s, &nh, s->prev[i]);
        if (s->next[i] >= 0) push_pair(t, s, &nh, i);
    }
    for (int i = 0; i >= 0; i = s->next[i]) tokenbuf_push(out, s->id[i]);
}

// ----------------------------------------------------------------------------
// the pipeline

// valid UTF-8 text without added tokens
static void encode_valid(const Tokenizer* t, const char* text, size_t len, Scratch* s, TokenBuf* out) {
    size_t n = len;
    char* norm = t->nfc ? nfc_normalize(text, len, &n) : NULL;
    char* spaced = NULL; // the text with prefix spaces added by ByteLevel(add_prefix_space)
    const char* w = norm ? norm : text;
    int cur = 0;
    s->n_pieces[0] = s->n_pieces[1] = 0;
    piece_push(s, cur, 0, n);
    for (int k = 0; k < t->n_pre; k++) {
        const PreStep* st = &t->pre[k];
        if (st->kind == PRE_BYTELEVEL && st->add_prefix_space) {
            size_t m = 0;
            char* buf = mallocCheck(n + (size_t)s->n_pieces[cur] + 1);
            s->n_pieces[!cur] = 0;
            for (int i = 0; i < s->n_pieces[cur]; i++) {
                Piece p = s->pieces[cur][i];
                size_t start = m;
                if (w[p.off] != ' ') buf[m++] = ' ';
                memcpy(buf + m, w + p.off, p.len);
                m += p.len;
                piece_push(s, !cur, start, m - start);
            }
            free(spaced);
            spaced = buf;
            w = buf;
            n = m;
            cur = !cur;
        }
        if (st->re) {
            s->n_pieces[!cur] = 0;
            for (int i = 0; i < s->n_pieces[cur]; i++) split_piece(st->re, w, s->pieces[cur][i], s, !cur);
            cur = !cur;
        }
    }
    for (int i = 0; i < s->n_pieces[cur]; i++) {
        Piece p = s->pieces[cur][i];
        bpe_piece(t, (const unsigned char*)w + p.off, p.len, s, out);
    }
    free(spaced);
    free(norm);
}

void bpe_encode(const Tokenizer* t, const char* text, size_t len, TokenBuf* out) {
    Scratch s = {0};
    s.md = pcre2_match_data_create(1, NULL);
    if (!s.md) fatal("pcre2_match_data_create failed (out of memory)");
    size_t i = 0;
    while (i < len) {
        size_t v = utf8_valid_prefix(text + i, len - i);
        if (v > 0) encode_valid(t, text + i, v, &s, out);
        i += v;
        if (i < len) tokenbuf_push(out, t->byte_id[(unsigned char)text[i++]]); // an invalid byte: alone
    }
    scratch_free(&s);
}
