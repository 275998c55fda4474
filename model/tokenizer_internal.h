// Internals shared by the tokenizer sources: tokenizer.c (common parts, byte tokenizer, added
// tokens, decoding), tokenizer_hf.c (tokenizer.json loading), tokenizer_bpe.c (pre-tokenizer and
// BPE merges), tokenizer_nfc.c (Unicode NFC). Not part of the public API.
#pragma once
#include <stddef.h>
#include <stdint.h>

#define PCRE2_CODE_UNIT_WIDTH 8
#include <pcre2.h>

#include "model/tokenizer.h"

// ----------------------------------------------------------------------------
// byte arena: strings live at offsets (stable across growth), each followed by a NUL

typedef struct {
    char* p;
    size_t n;
    size_t cap;
} Arena;

size_t arena_add(Arena* a, const char* s, size_t len);

// ----------------------------------------------------------------------------
// hash maps (open addressing, power-of-two capacity)

// string -> id; keys are arena offsets
typedef struct {
    int* slot;      // (cap) index into key/id arrays, -1 = empty
    size_t* key;    // (n) arena offsets
    uint32_t* klen; // (n)
    int* val;       // (n)
    int n, cap;
} StrMap;

void strmap_init(StrMap* m, int expected);
void strmap_free(StrMap* m);
// inserts (key at arena offset off) -> val; returns the existing value instead when present
int strmap_put(StrMap* m, const Arena* a, size_t off, uint32_t len, int val);
int strmap_get(const StrMap* m, const Arena* a, const char* s, size_t len); // -1 if absent

// (left id, right id) -> (rank, merged id)
typedef struct {
    uint64_t* key; // (cap) left << 32 | right, UINT64_MAX = empty
    int* rank;     // (cap)
    int* merged;   // (cap)
    int cap;
} MergeMap;

void mergemap_init(MergeMap* m, int expected);
void mergemap_free(MergeMap* m);
void mergemap_put(MergeMap* m, int left, int right, int rank, int merged);
int mergemap_get(const MergeMap* m, int left, int right, int* merged); // rank, or -1

// ----------------------------------------------------------------------------
// the tokenizer

enum { TOK_HAS = 1, TOK_ADDED = 2, TOK_SPECIAL = 4 }; // per-id flags

typedef struct {
    int id;
    int special;
    int lstrip, rstrip; // absorb whitespace on that side into the token
    size_t off;         // content in the arena
    size_t len;
    unsigned char first; // its first byte, the sort and lookup key
} AddedToken;

typedef enum { PRE_SPLIT, PRE_BYTELEVEL } PreKind;

typedef struct {
    PreKind kind;
    pcre2_code* re;       // SPLIT: its pattern; BYTELEVEL: the GPT-2 pattern when use_regex, else NULL
    int add_prefix_space; // BYTELEVEL
} PreStep;

struct Tokenizer {
    int is_bpe;
    int vocab_size;
    int bos_id, eos_id;
    Arena arena;
    uint8_t* flags;      // (V) TOK_* bits
    size_t* str_off;     // (V) spelling in the vocabulary
    size_t* bytes_off;   // (V) decoded bytes
    uint32_t* bytes_len; // (V)

    AddedToken* added; // sorted by (first byte, length descending) for longest-first matching
    int n_added;
    int added_first[257]; // added[added_first[b] .. added_first[b+1]) start with byte b

    // byte-level BPE only
    StrMap vocab;
    MergeMap merges;
    int byte_id[256]; // id of the one-byte token for each byte
    PreStep* pre;
    int n_pre;
    int nfc;           // NFC normalizer
    int ignore_merges; // a word that is a whole vocabulary token is emitted as is
};

// allocates the per-id arrays for V ids (all empty) and sets vocab_size
void tokenizer_alloc_ids(Tokenizer* t, int V);
// sorts the added tokens and builds added_first; call once all are in
void tokenizer_index_added(Tokenizer* t);

// ----------------------------------------------------------------------------
// byte-level BPE (tokenizer_bpe.c)

// GPT-2's bytes_to_unicode: the code point standing for each byte in vocabulary strings
int bytelevel_codepoint(int byte);
// inverse: the byte for a code point, -1 if it stands for none
int bytelevel_byte(uint32_t cp);
// the UTF-8 of a byte's stand-in (1 or 2 bytes, all below U+0800) into out; returns its length
size_t bytelevel_spell(int byte, char out[2]);
// decodes a vocabulary string to its bytes (out has room for len); -1 if a character stands for
// no byte
long bytelevel_decode(const char* s, size_t len, char* out);
// encodes text that contains no added token
void bpe_encode(const Tokenizer* t, const char* text, size_t len, TokenBuf* out);
// the GPT-2 pre-tokenizer pattern (ByteLevel with use_regex)
extern const char* const bytelevel_gpt2_pattern;

// ----------------------------------------------------------------------------
// UTF-8 and NFC (tokenizer_nfc.c)

// length of the longest valid UTF-8 prefix of s
size_t utf8_valid_prefix(const char* s, size_t len);
// NFC of valid UTF-8 s. Returns NULL when s is already NFC (the common case, checked quickly),
// else a malloc'ed string (free it) of length *out_len.
char* nfc_normalize(const char* s, size_t len, size_t* out_len);
