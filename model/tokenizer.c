// Tokenizer common parts: string arena and hash maps, the per-id tables, the built-in byte
// tokenizer, added-token matching, encoding dispatch and decoding. tokenizer.json loading is in
// tokenizer_hf.c, the BPE pipeline in tokenizer_bpe.c.
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/check.h"
#include "model/tokenizer_byte_vocab.h"
#include "model/tokenizer_internal.h"

// ----------------------------------------------------------------------------
// id buffer

void tokenbuf_push(TokenBuf* b, int id) {
    if (b->n == b->cap) {
        b->cap = b->cap ? 2 * b->cap : 64;
        b->ids = reallocCheck(b->ids, (size_t)b->cap * sizeof(int));
    }
    b->ids[b->n++] = id;
}

void tokenbuf_free(TokenBuf* b) {
    free(b->ids);
    b->ids = NULL;
    b->n = b->cap = 0;
}

// ----------------------------------------------------------------------------
// arena and hash maps

size_t arena_add(Arena* a, const char* s, size_t len) {
    if (a->n + len + 1 > a->cap) {
        while (a->n + len + 1 > a->cap) a->cap = a->cap ? 2 * a->cap : 1 << 16;
        a->p = reallocCheck(a->p, a->cap);
    }
    size_t off = a->n;
    memcpy(a->p + off, s, len);
    a->p[off + len] = '\0';
    a->n += len + 1;
    return off;
}

static uint64_t hash_bytes(const char* s, size_t len) { // FNV-1a
    uint64_t h = 1469598103934665603ull;
    for (size_t i = 0; i < len; i++) h = (h ^ (unsigned char)s[i]) * 1099511628211ull;
    return h;
}

static int pow2_at_least(int n) {
    int c = 16;
    while (c < n) c *= 2;
    return c;
}

void strmap_init(StrMap* m, int expected) {
    m->cap = pow2_at_least(2 * expected + 1);
    m->slot = mallocCheck((size_t)m->cap * sizeof(int));
    memset(m->slot, 0xff, (size_t)m->cap * sizeof(int));
    // key arrays hold cap/2 + 1 entries: the load stays under 1/2
    m->key = mallocCheck((size_t)(m->cap / 2 + 1) * sizeof(size_t));
    m->klen = mallocCheck((size_t)(m->cap / 2 + 1) * sizeof(uint32_t));
    m->val = mallocCheck((size_t)(m->cap / 2 + 1) * sizeof(int));
    m->n = 0;
}

void strmap_free(StrMap* m) {
    free(m->slot);
    free(m->key);
    free(m->klen);
    free(m->val);
    memset(m, 0, sizeof(*m));
}

static int strmap_find(const StrMap* m, const Arena* a, const char* s, size_t len, size_t* pos) {
    size_t mask = (size_t)m->cap - 1, i = hash_bytes(s, len) & mask;
    while (m->slot[i] >= 0) {
        int k = m->slot[i];
        if (m->klen[k] == len && memcmp(a->p + m->key[k], s, len) == 0) break;
        i = (i + 1) & mask;
    }
    *pos = i;
    return m->slot[i];
}

int strmap_put(StrMap* m, const Arena* a, size_t off, uint32_t len, int val) {
    size_t pos;
    int k = strmap_find(m, a, a->p + off, len, &pos);
    if (k >= 0) return m->val[k];
    if (2 * (m->n + 1) > m->cap) { // keep the load under 1/2: grow and rehash
        int old_cap = m->cap;
        int* old = m->slot;
        m->cap *= 2;
        m->slot = mallocCheck((size_t)m->cap * sizeof(int));
        memset(m->slot, 0xff, (size_t)m->cap * sizeof(int));
        for (int i = 0; i < old_cap; i++) {
            if (old[i] < 0) continue;
            size_t p;
            strmap_find(m, a, a->p + m->key[old[i]], m->klen[old[i]], &p);
            m->slot[p] = old[i];
        }
        free(old);
        m->key = reallocCheck(m->key, (size_t)(m->cap / 2 + 1) * sizeof(size_t));
        m->klen = reallocCheck(m->klen, (size_t)(m->cap / 2 + 1) * sizeof(uint32_t));
        m->val = reallocCheck(m->val, (size_t)(m->cap / 2 + 1) * sizeof(int));
        strmap_find(m, a, a->p + off, len, &pos);
    }
    m->key[m->n] = off;
    m->klen[m->n] = len;
    m->val[m->n] = val;
    m->slot[pos] = m->n++;
    return val;
}

int strmap_get(const StrMap* m, const Arena* a, const char* s, size_t len) {
    if (m->cap == 0) return -1;
    size_t pos;
    int k = strmap_find(m, a, s, len, &pos);
    return k >= 0 ? m->val[k] : -1;
}

static uint64_t hash_u64(uint64_t x) { // splitmix64 finaliser
    x ^= x >> 30;
    x *= 0xbf58476d1ce4e5b9ull;
    x ^= x >> 27;
    x *= 0x94d049bb133111ebull;
    return x ^ (x >> 31);
}

void mergemap_init(MergeMap* m, int expected) {
    m->cap = pow2_at_least(2 * expected + 1);
    m->key = mallocCheck((size_t)m->cap * sizeof(uint64_t));
    memset(m->key, 0xff, (size_t)m->cap * sizeof(uint64_t));
    m->rank = mallocCheck((size_t)m->cap * sizeof(int));
    m->merged = mallocCheck((size_t)m->cap * sizeof(int));
}

void mergemap_free(MergeMap* m) {
    free(m->key);
    free(m->rank);
    free(m->merged);
    memset(m, 0, sizeof(*m));
}

// the first merge listed wins, as in HF tokenizers (a later duplicate of a pair is ignored)
void mergemap_put(MergeMap* m, int left, int right, int rank, int merged) {
    uint64_t k = (uint64_t)(uint32_t)left << 32 | (uint32_t)right;
    size_t mask = (size_t)m->cap - 1, i = hash_u64(k) & mask;
    while (m->key[i] != UINT64_MAX) {
        if (m->key[i] == k) return;
        i = (i + 1) & mask;
    }
    m->key[i] = k;
    m->rank[i] = rank;
    m->merged[i] = merged;
}

int mergemap_get(const MergeMap* m, int left, int right, int* merged) {
    uint64_t k = (uint64_t)(uint32_t)left << 32 | (uint32_t)right;
    size_t mask = (size_t)m->cap - 1, i = hash_u64(k) & mask;
    while (m->key[i] != UINT64_MAX) {
        if (m->key[i] == k) {
            *merged = m->merged[i];
            return m->rank[i];
        }
        i = (i + 1) & mask;
    }
    return -1;
}

// ----------------------------------------------------------------------------
// per-id tables and added tokens

void tokenizer_alloc_ids(Tokenizer* t, int V) {
    t->vocab_size = V;
    t->flags = callocCheck((size_t)V, sizeof(uint8_t));
    t->str_off = callocCheck((size_t)V, sizeof(size_t));
    t->bytes_off = callocCheck((size_t)V, sizeof(size_t));
    t->bytes_len = callocCheck((size_t)V, sizeof(uint32_t));
}

static int added_cmp(const void* pa, const void* pb) {
    const AddedToken *a = pa, *b = pb;
    if (a->first != b->first) return a->first < b->first ? -1 : 1;
    if (a->len != b->len) return a->len > b->len ? -1 : 1;
    return a->id - b->id;
}

void tokenizer_index_added(Tokenizer* t) {
    for (int k = 0; k < t->n_added; k++) t->added[k].first = (unsigned char)t->arena.p[t->added[k].off];
    qsort(t->added, (size_t)t->n_added, sizeof(AddedToken), added_cmp);
    int k = 0;
    for (int b = 0; b <= 256; b++) {
        while (k < t->n_added && t->added[k].first < b) k++;
        t->added_first[b] = k;
    }
}

// the longest added token starting at text[i] that may match, or NULL
static const AddedToken* added_at(const Tokenizer* t, const char* text, size_t len, size_t i, int allow_special) {
    unsigned char b = (unsigned char)text[i];
    for (int k = t->added_first[b]; k < t->added_first[b + 1]; k++) {
        const AddedToken* a = &t->added[k];
        if (a->special && !allow_special) continue;
        if (a->len <= len - i && memcmp(text + i, t->arena.p + a->off, a->len) == 0) return a;
    }
    return NULL;
}

static int is_space(char c) { return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\v' || c == '\f'; }

// ----------------------------------------------------------------------------
// the built-in byte tokenizer

static const char* const byte_special_names[] = {
    [BYTE_TOKEN_PAD - 256] = "<|pad|>",
    [BYTE_TOKEN_BOS - 256] = "<|begin_of_text|>",
    [BYTE_TOKEN_EOS - 256] = "<|end_of_text|>",
    [BYTE_TOKEN_IM_START - 256] = "<|im_start|>",
    [BYTE_TOKEN_IM_END - 256] = "<|im_end|>",
    [BYTE_TOKEN_TOOL_CALL - 256] = "<tool_call>",
    [BYTE_TOKEN_TOOL_CALL_END - 256] = "</tool_call>",
    [BYTE_TOKEN_TOOL_RESP - 256] = "<tool_response>",
    [BYTE_TOKEN_TOOL_RESP_END - 256] = "</tool_response>",
    [BYTE_TOKEN_EXP - 256] = "<experience>",
    [BYTE_TOKEN_EXP_END - 256] = "</experience>",
};

Tokenizer* tokenizer_byte(void) {
    Tokenizer* t = callocCheck(1, sizeof(Tokenizer));
    tokenizer_alloc_ids(t, BYTE_VOCAB_SIZE);
    t->bos_id = BYTE_TOKEN_BOS;
    t->eos_id = BYTE_TOKEN_EOS;
    for (int b = 0; b < 256; b++) {
        char c = (char)b, name[8];
        if (b >= 0x20 && b < 0x7f) snprintf(name, sizeof(name), "%c", b);
        else snprintf(name, sizeof(name), "<0x%02X>", b);
        t->str_off[b] = arena_add(&t->arena, name, strlen(name));
        t->bytes_off[b] = arena_add(&t->arena, &c, 1);
        t->bytes_len[b] = 1;
        t->flags[b] = TOK_HAS;
    }
    t->n_added = BYTE_VOCAB_SIZE - 256;
    t->added = callocCheck((size_t)t->n_added, sizeof(AddedToken));
    for (int id = 256; id < BYTE_VOCAB_SIZE; id++) {
        char name[32];
        if (id < BYTE_TOKEN_FIRST_RESERVED) snprintf(name, sizeof(name), "%s", byte_special_names[id - 256]);
        else snprintf(name, sizeof(name), "<|reserved_%d|>", id - BYTE_TOKEN_FIRST_RESERVED);
        size_t len = strlen(name), off = arena_add(&t->arena, name, len);
        t->str_off[id] = t->bytes_off[id] = off;
        t->bytes_len[id] = (uint32_t)len;
        t->flags[id] = TOK_HAS | TOK_ADDED | TOK_SPECIAL;
        t->added[id - 256] = (AddedToken){.id = id, .special = 1, .off = off, .len = len};
    }
    tokenizer_index_added(t);
    return t;
}

void tokenizer_free(Tokenizer* t) {
    if (!t) return;
    free(t->arena.p);
    free(t->flags);
    free(t->str_off);
    free(t->bytes_off);
    free(t->bytes_len);
    free(t->added);
    strmap_free(&t->vocab);
    if (t->merges.cap) mergemap_free(&t->merges);
    for (int i = 0; i < t->n_pre; i++) pcre2_code_free(t->pre[i].re);
    free(t->pre);
    free(t);
}

// ----------------------------------------------------------------------------
// vocabulary queries

int tokenizer_vocab_size(const Tokenizer* t) { return t->vocab_size; }
int tokenizer_bos_id(const Tokenizer* t) { return t->bos_id; }
int tokenizer_eos_id(const Tokenizer* t) { return t->eos_id; }

int tokenizer_special_id(const Tokenizer* t, const char* content) {
    size_t len = strlen(content);
    if (len == 0) return -1;
    const AddedToken* a = NULL;
    unsigned char b = (unsigned char)content[0];
    for (int k = t->added_first[b]; k < t->added_first[b + 1] && !a; k++)
        if (t->added[k].len == len && memcmp(t->arena.p + t->added[k].off, content, len) == 0) a = &t->added[k];
    return a ? a->id : -1;
}

int tokenizer_is_special(const Tokenizer* t, int id) {
    return id >= 0 && id < t->vocab_size && (t->flags[id] & TOK_SPECIAL);
}

const char* tokenizer_token_str(const Tokenizer* t, int id) {
    if (id < 0 || id >= t->vocab_size || !(t->flags[id] & TOK_HAS)) return NULL;
    return t->arena.p + t->str_off[id];
}

// ----------------------------------------------------------------------------
// encoding

static void encode_plain(const Tokenizer* t, const char* s, size_t len, TokenBuf* out) {
    if (len == 0) return;
    if (t->is_bpe) {
        bpe_encode(t, s, len, out);
        return;
    }
    for (size_t i = 0; i < len; i++) tokenbuf_push(out, (unsigned char)s[i]);
}

// splits the text at added tokens (leftmost, then longest), encoding the text between them
int tokenizer_encode(const Tokenizer* t, const char* text, size_t len, int allow_special, TokenBuf* out) {
    int n0 = out->n;
    size_t start = 0, i = 0;
    while (i < len) {
        const AddedToken* a = added_at(t, text, len, i, allow_special);
        if (!a) {
            i++;
            continue;
        }
        size_t end = i, next = i + a->len;
        if (a->lstrip)
            while (end > start && is_space(text[end - 1])) end--;
        if (a->rstrip)
            while (next < len && is_space(text[next])) next++;
        encode_plain(t, text + start, end - start, out);
        tokenbuf_push(out, a->id);
        start = i = next;
    }
    encode_plain(t, text + start, len - start, out);
    return out->n - n0;
}

// ----------------------------------------------------------------------------
// decoding

const char* tokenizer_token_bytes(const Tokenizer* t, int id, size_t* len) {
    if (id < 0 || id >= t->vocab_size || !(t->flags[id] & TOK_HAS)) {
        *len = 0;
        return NULL;
    }
    *len = t->bytes_len[id];
    return t->arena.p + t->bytes_off[id];
}

size_t tokenizer_decode(const Tokenizer* t, const int* ids, int n, char* out, size_t cap) {
    size_t total = 0;
    for (int i = 0; i < n; i++) {
        size_t len;
        const char* b = tokenizer_token_bytes(t, ids[i], &len);
        if (cap > 0 && total < cap - 1) {
            size_t room = cap - 1 - total;
            if (len) memcpy(out + total, b, len < room ? len : room);
        }
        total += len;
    }
    if (cap > 0) out[total < cap - 1 ? total : cap - 1] = '\0';
    return total;
}

char* tokenizer_decode_alloc(const Tokenizer* t, const int* ids, int n, size_t* len) {
    size_t total = tokenizer_decode(t, ids, n, NULL, 0);
    char* s = mallocCheck(total + 1);
    tokenizer_decode(t, ids, n, s, total + 1);
    if (len) *len = total;
    return s;
}
