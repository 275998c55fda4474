// Tokenizers behind one opaque type: the built-in byte tokenizer (ids 0..255 are bytes, then the
// specials of model/tokenizer_byte_vocab.h) and HF tokenizer.json byte-level BPE (GPT-2, Llama-3,
// Qwen2/Qwen3). See docs/TOKENIZERS.md for the supported tokenizer.json subset.
//
// A Tokenizer is read-only once made: encode/decode may run concurrently from several threads.
//
// Special tokens. Every tokenizer has "added tokens", strings that map to one id (the byte
// tokenizer's <|im_start|> etc.; tokenizer.json's added_tokens). Those marked special (all of the
// byte tokenizer's; "special": true in tokenizer.json) are recognised in text only when encoding
// with allow_special; without it their text is encoded like any other text. Added tokens NOT
// marked special (Qwen's <tool_call>, <think>) are always recognised, as HF tokenizers does.
#pragma once
#include <stddef.h>

typedef struct Tokenizer Tokenizer;

// ----------------------------------------------------------------------------
// growable id buffer: zero-initialise, encode appends, free with tokenbuf_free
typedef struct {
    int* ids;
    int n;
    int cap;
} TokenBuf;

void tokenbuf_push(TokenBuf* b, int id);
void tokenbuf_free(TokenBuf* b);

// ----------------------------------------------------------------------------
// making and freeing

// the built-in byte tokenizer (vocabulary BYTE_VOCAB_SIZE)
Tokenizer* tokenizer_byte(void);
// loads an HF tokenizer.json (byte-level BPE). bos/eos come from a tokenizer_config.json next to
// it when there is one. Returns NULL on error with a message naming the file and the JSON path
// (or line/column for malformed JSON) in err.
Tokenizer* tokenizer_load_hf(const char* path, char* err, size_t errlen);
void tokenizer_free(Tokenizer* tok);

// ----------------------------------------------------------------------------
// vocabulary

// 1 + the largest id (ids below it without a token decode to nothing)
int tokenizer_vocab_size(const Tokenizer* tok);
// begin/end-of-text ids, -1 where the tokenizer defines none
int tokenizer_bos_id(const Tokenizer* tok);
int tokenizer_eos_id(const Tokenizer* tok);
// id of the added token spelled exactly `content` ("<|im_end|>", "<tool_call>"), or -1
int tokenizer_special_id(const Tokenizer* tok, const char* content);
// 1 when id is an added token marked special (skipped by callers that print text)
int tokenizer_is_special(const Tokenizer* tok, int id);
// the token as spelled in the vocabulary: "Ġworld" for BPE tokens, the text of added tokens,
// the byte tokenizer's bytes as the character when printable ASCII, else "<0x0A>"; NULL for ids
// without a token
const char* tokenizer_token_str(const Tokenizer* tok, int id);

// ----------------------------------------------------------------------------
// encoding and decoding

// encodes len bytes of text (any bytes; invalid UTF-8 is encoded byte by byte) and appends the ids
// to out. Returns the number of ids appended.
int tokenizer_encode(const Tokenizer* tok, const char* text, size_t len, int allow_special, TokenBuf* out);
// the bytes one token decodes to, for streaming: a token may end inside a UTF-8 character, so
// callers append bytes and assemble characters themselves. Added tokens give their text.
// Returns NULL (and *len = 0) for ids without a token.
const char* tokenizer_token_bytes(const Tokenizer* tok, int id, size_t* len);
// decodes ids into out like snprintf: writes at most cap-1 bytes plus a NUL (cap > 0) and returns
// the full decoded length. Added tokens, special ones included, decode to their text.
size_t tokenizer_decode(const Tokenizer* tok, const int* ids, int n, char* out, size_t cap);
// the same into a malloc'ed NUL-terminated string (free it); *len (if non-NULL) gets its length
char* tokenizer_decode_alloc(const Tokenizer* tok, const int* ids, int n, size_t* len);
