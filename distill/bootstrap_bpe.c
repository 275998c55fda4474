// The bootstrap's learned tokenizer (see bootstrap.h): a byte-level BPE trained on the text of the
// demonstrations and written as an HF tokenizer.json, so that the bootstrapped directory loads like
// any HF model (model/tokenizer_hf.c reads it back).
//
// Why: with the byte tokenizer a made-up name is 10-20 tokens and an episode 1-2K, so a tiny model
// must learn to copy names byte by byte over long contexts. Merges learned on the demonstrations
// make the environment's recurring text (the system prompt, the JSON of a tool call, "a person,
// pilot") a few tokens and names 2-5, which shortens every sequence 2-3x and makes copying a name a
// matter of a few tokens.
//
// The vocabulary keeps the byte tokenizer's ids: 0..255 are the bytes, 256..287 its specials
// (model/tokenizer_byte_vocab.h, added tokens marked special), merges from 288 on. The
// pre-tokenizer splits letters, digits and other characters into runs, a single space joining
// the run it precedes (" Kelda", " Moor", "\":", " \""), as GPT-2's does.
//
// Merges come in three ranks. First those within runs, never with the space nor with a word's
// first letter; then, ranked after all of them, the space with the piece after it (" Z", " \"",
// " ("); last, frequent words that are then two tokens become one (" company", "query"). So a
// word segments the same whatever precedes it, and a name is the same tokens in a question, a page,
// a results line and a tool call's JSON, except its first letter, which carries the space where
// one precedes it (" Z" ul f ar in "Mayor: Zulfar.", Z ul f ar after the JSON's quote): a mapping
// over 52 letters, the same in every call.
//
// Tried first: merges learned in one pass, with the space after a run (the quickstart's BPE of
// 2026-11-27). The space fused into a name's last piece ("Zulfar " is Z ul f "ar ", "Zulfar" Z ul
// far), so copying a name into a call meant re-segmenting it, which the model mostly failed at
// ("Thulbrik" -> "Thulbrik Works"). The two ranks with whole first pieces (" Zul" far) left a
// space on its own before every first piece without a merge of its own, so copying keyed on a
// token that precedes most words; the copy warm-up did not converge (loss 1.7 after 1500 steps).
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/check.h"
#include "distill/bootstrap.h"
#include "model/tokenizer_byte_vocab.h"

// the pre-tokenizer's pattern; bpe_split below is the same split for the training corpus
#define BPE_PATTERN " ?\\p{L}+| ?\\p{N}+| ?[^\\s\\p{L}\\p{N}]+|\\s+"
#define BPE_MAX_TOKEN 64 // bytes in a merged token at most
#define BPE_MAX_MERGES(V) (2 * (V)) // merges that make no new token count too
#define BPE_SECOND_SLACK 16 // ids of the second rank beyond one per letter: a space before punctuation runs
#define BPE_WHOLE_WORDS(V) (((V) - BYTE_VOCAB_SIZE) / 4) // ids of the third rank: words made one token (" company")

static const char* const byte_specials[BYTE_TOKEN_FIRST_RESERVED - BYTE_TOKEN_PAD] = {
    "<|pad|>",     "<|begin_of_text|>", "<|end_of_text|>", "<|im_start|>",    "<|im_end|>",  "<tool_call>",
    "</tool_call>", "<tool_response>",  "</tool_response>", "<experience>", "</experience>"};

// ----------------------------------------------------------------------------
// the corpus: distinct pre-tokens with their counts

typedef struct {
    int n, cap;       // words
    int* start;       // (n) offsets into sym
    int* len;         // (n) symbols
    long* count;      // (n)
    int nsym, capsym;
    int* sym;         // symbols of all words
    int* slot;        // (hcap) open addressing over words, -1 empty
    int hcap;
    char* text;       // the words' bytes, for the hash lookups
    int* text_off;    // (n)
    long ntext, captext;
} Words;

static uint64_t fnv(const unsigned char* s, int n) {
    uint64_t h = 1469598103934665603ull;
    for (int i = 0; i < n; i++) h = (h ^ s[i]) * 1099511628211ull;
    return h;
}

static void words_rehash(Words* w) {
    free(w->slot);
    w->slot = mallocCheck(sizeof(int) * (size_t)w->hcap);
    for (int i = 0; i < w->hcap; i++) w->slot[i] = -1;
    for (int i = 0; i < w->n; i++) {
        uint64_t h = fnv((const unsigned char*)w->text + w->text_off[i], w->len[i]) & (uint64_t)(w->hcap - 1);
        while (w->slot[h] >= 0) h = (h + 1) & (uint64_t)(w->hcap - 1);
        w->slot[h] = i;
    }
}

static void words_add(Words* w, const unsigned char* s, int n) {
    if (2 * (w->n + 1) > w->hcap) {
        w->hcap = w->hcap ? 2 * w->hcap : 4096;
        words_rehash(w);
    }
    uint64_t h = fnv(s, n) & (uint64_t)(w->hcap - 1);
    for (; w->slot[h] >= 0; h = (h + 1) & (uint64_t)(w->hcap - 1)) {
        const int i = w->slot[h];
        if (w->len[i] == n && memcmp(w->text + w->text_off[i], s, (size_t)n) == 0) {
            w->count[i]++;
            return;
        }
    }
    if (w->n == w->cap) {
        w->cap = w->cap ? 2 * w->cap : 1024;
        w->start = reallocCheck(w->start, sizeof(int) * (size_t)w->cap);
        w->len = reallocCheck(w->len, sizeof(int) * (size_t)w->cap);
        w->count = reallocCheck(w->count, sizeof(long) * (size_t)w->cap);
        w->text_off = reallocCheck(w->text_off, sizeof(int) * (size_t)w->cap);
    }
    while (w->nsym + n > w->capsym) w->capsym = w->capsym ? 2 * w->capsym : 8192, w->sym = reallocCheck(w->sym, sizeof(int) * (size_t)w->capsym);
    while (w->ntext + n > w->captext) w->captext = w->captext ? 2 * w->captext : 8192, w->text = reallocCheck(w->text, (size_t)w->captext);
    const int i = w->n++;
    w->start[i] = w->nsym;
    w->len[i] = n;
    w->count[i] = 1;
    w->text_off[i] = (int)w->ntext;
    for (int k = 0; k < n; k++) w->sym[w->nsym++] = s[k];
    memcpy(w->text + w->ntext, s, (size_t)n);
    w->ntext += n;
    w->slot[h] = i;
}

static void words_free(Words* w) {
    free(w->start), free(w->len), free(w->count), free(w->sym), free(w->slot), free(w->text), free(w->text_off);
    memset(w, 0, sizeof(*w));
}

// the classes of BPE_PATTERN for bytes: letters (and every non-ASCII byte), digits, space, other
static int byte_class(unsigned char c) {
    if (c >= 0x80 || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z')) return 0;
    if (c >= '0' && c <= '9') return 1;
    if (c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\f' || c == '\v') return 3;
    return 2;
}

// splits a text run as BPE_PATTERN does and counts its pieces: a space right before a
// non-space joins that run; other whitespace forms runs of its own
static void bpe_split(Words* w, const unsigned char* s, int n) {
    for (int i = 0; i < n;) {
        int j = i;
        if (s[j] == ' ' && j + 1 < n && byte_class(s[j + 1]) != 3) j++;
        const int k = byte_class(s[j]);
        j++;
        while (j < n && byte_class(s[j]) == k) j++;
        for (int a = i; a < j; a += BPE_MAX_TOKEN) words_add(w, s + a, j - a < BPE_MAX_TOKEN ? j - a : BPE_MAX_TOKEN);
        i = j;
    }
}

// ----------------------------------------------------------------------------
// training

typedef struct {
    int len; // bytes
    unsigned char bytes[BPE_MAX_TOKEN];
} Token;

// GPT-2's bytes_to_unicode: printable bytes stand for themselves, the others for U+0100 on
static int byte_codepoint(int b) {
    if ((b >= 33 && b <= 126) || (b >= 161 && b <= 172) || b >= 174) return b;
    int n = 0;
    for (int x = 0; x < b; x++) n += !((x >= 33 && x <= 126) || (x >= 161 && x <= 172) || x >= 174);
    return 256 + n;
}

// a token's bytes in the vocabulary's spelling (UTF-8 of the stand-ins) into out (4 * len + 1)
static void spell(const unsigned char* bytes, int len, char* out) {
    char* p = out;
    for (int i = 0; i < len; i++) {
        int cp = byte_codepoint(bytes[i]);
        if (cp < 0x80) *p++ = (char)cp;
        else *p++ = (char)(0xC0 | (cp >> 6)), *p++ = (char)(0x80 | (cp & 0x3F));
    }
    *p = '\0';
}

static int write_json(const char* path, const Token* tok, int V, const int* merges_abr, int n_merges, char* err,
                      size_t errlen) {
    json_t* vocab = json_object();
    json_t* merges = json_array();
    char s[4 * BPE_MAX_TOKEN + 1], l[4 * BPE_MAX_TOKEN + 1], r[4 * BPE_MAX_TOKEN + 1], m[8 * BPE_MAX_TOKEN + 2];
    for (int id = 0; id < V; id++) {
        if (id >= BYTE_TOKEN_PAD && id < BYTE_VOCAB_SIZE) continue; // the specials are added tokens
        spell(tok[id].bytes, tok[id].len, s);
        json_object_set_new(vocab, s, json_integer(id));
    }
    for (int i = 0; i < n_merges; i++) {
        const Token* a = &tok[merges_abr[3 * i]];
        const Token* b = &tok[merges_abr[3 * i + 1]];
        spell(a->bytes, a->len, l);
        spell(b->bytes, b->len, r);
        snprintf(m, sizeof(m), "%s %s", l, r);
        json_array_append_new(merges, json_string(m));
    }
    json_t* added = json_array();
    for (int id = BYTE_TOKEN_PAD; id < BYTE_VOCAB_SIZE; id++) {
        char name[32];
        if (id < BYTE_TOKEN_FIRST_RESERVED) snprintf(name, sizeof(name), "%s", byte_specials[id - BYTE_TOKEN_PAD]);
        else snprintf(name, sizeof(name), "<|reserved_%d|>", id - BYTE_TOKEN_FIRST_RESERVED);
        json_array_append_new(added, json_pack("{s:i, s:s, s:b, s:b, s:b, s:b, s:b}", "id", id, "content", name,
                                               "single_word", 0, "lstrip", 0, "rstrip", 0, "normalized", 0, "special", 1));
    }
    json_t* pre = json_pack("{s:s, s:[{s:s, s:{s:s}, s:s, s:b}, {s:s, s:b, s:b, s:b}]}", "type", "Sequence",
                            "pretokenizers", "type", "Split", "pattern", "Regex", BPE_PATTERN, "behavior", "Isolated",
                            "invert", 0, "type", "ByteLevel", "add_prefix_space", 0, "trim_offsets", 1, "use_regex", 0);
    json_t* model = json_pack("{s:s, s:n, s:n, s:o, s:o}", "type", "BPE", "dropout", "unk_token", "vocab", vocab,
                              "merges", merges);
    json_t* root = json_pack("{s:s, s:o, s:n, s:o, s:n, s:{s:s, s:b, s:b, s:b}, s:o}", "version", "1.0",
                             "added_tokens", added, "normalizer", "pre_tokenizer", pre, "post_processor", "decoder",
                             "type", "ByteLevel", "add_prefix_space", 0, "trim_offsets", 1, "use_regex", 0, "model",
                             model);
    int rc = json_dump_file(root, path, JSON_INDENT(1) | JSON_PRESERVE_ORDER | JSON_ENSURE_ASCII);
    json_decref(root);
    if (rc != 0) return snprintf(err, errlen, "bootstrap: cannot write %s", path), -1;
    return 0;
}

int bpe_train(const DemoSet* set, int vocab_size, const char* path, char* err, size_t errlen) {
    if (vocab_size <= BYTE_VOCAB_SIZE)
        return snprintf(err, errlen, "bootstrap: bootstrap.vocab_size %d leaves no room for merges (the bytes and "
                        "specials take %d ids)", vocab_size, BYTE_VOCAB_SIZE), -1;
    Words w = {0};
    unsigned char* run = mallocCheck(1);
    for (int i = 0; i < set->n; i++) { // the byte runs between special tokens
        const Demo* d = &set->d[i];
        run = reallocCheck(run, (size_t)d->n + 1);
        int n = 0;
        for (int t = 0; t <= d->n; t++) {
            if (t < d->n && d->ids[t] < 256) {
                run[n++] = (unsigned char)d->ids[t];
                continue;
            }
            bpe_split(&w, run, n);
            n = 0;
        }
    }
    free(run);
    const int V = vocab_size;
    Token* tok = callocCheck((size_t)V, sizeof(Token));
    for (int b = 0; b < 256; b++) tok[b].len = 1, tok[b].bytes[0] = (unsigned char)b;
    // pair counts, dense over (left, right) (hence bootstrap.vocab_size's bound); a pair is
    // touched when its count leaves 0, and only the touched cells are cleared between merges
    long* cnt = callocCheck((size_t)V * (size_t)V, sizeof(long));
    int* touched = mallocCheck(sizeof(int) * (size_t)(w.nsym + 1));
    // merges as (left, right, result): a pair whose bytes some token has already spells that token
    int* mabr = mallocCheck(sizeof(int) * 3 * (size_t)BPE_MAX_MERGES(V));
    // the ranks' last ids: the words' pieces up to words_end; a space and the piece after it, one
    // for each first byte seen twice (and slack for runs of punctuation); whole words last
    long first_bytes[256] = {0};
    for (int i = 0; i < w.n; i++)
        if (w.len[i] >= 2 && w.sym[w.start[i]] == ' ') first_bytes[w.sym[w.start[i] + 1]] += w.count[i];
    int second = BPE_SECOND_SLACK;
    for (int b = 0; b < 256; b++) second += first_bytes[b] >= 2;
    const int spaces_end = V - BPE_WHOLE_WORDS(V);
    const int words_end = spaces_end - second > BYTE_VOCAB_SIZE ? spaces_end - second : BYTE_VOCAB_SIZE;
    int id = BYTE_VOCAB_SIZE, n_merges = 0, rank = 0;
    while (id < V && n_merges < BPE_MAX_MERGES(V)) {
        int nt = 0;
        for (int i = 0; i < w.n; i++) {
            const int* s = w.sym + w.start[i];
            if (rank == 1 && s[0] != ' ') continue; // the space and the piece after it
            if (rank == 2 && w.len[i] != 2) continue; // a word that is two tokens, its first letter and the rest
            for (int k = 0; k + 1 < w.len[i] && (rank == 0 || k == 0); k++) {
                const size_t c = (size_t)s[k] * (size_t)V + (size_t)s[k + 1];
                if (rank == 0 && (s[k] == ' ' || s[k + 1] == ' ')) continue;
                if (rank == 0 && k == (s[0] == ' ') && s[k] < 256 && byte_class((unsigned char)s[k]) == 0) continue;
                if (tok[s[k]].len + tok[s[k + 1]].len > BPE_MAX_TOKEN) continue;
                if (!cnt[c]) touched[nt++] = (int)c;
                cnt[c] += w.count[i];
            }
        }
        long best = 0;
        int bc = -1;
        for (int k = 0; k < nt; k++) { // the most frequent pair; ties to the lowest ids
            const int c = touched[k];
            if (cnt[c] > best || (cnt[c] == best && c < bc)) best = cnt[c], bc = c;
        }
        for (int k = 0; k < nt; k++) cnt[touched[k]] = 0;
        if (rank < 2 && (bc < 0 || best < 2 || id == (rank == 0 ? words_end : spaces_end))) {
            rank++; // on to the next rank
            continue;
        }
        if (bc < 0 || best < 2) break; // nothing left worth a token
        const int a = bc / V, b = bc % V, len = tok[a].len + tok[b].len;
        unsigned char bytes[BPE_MAX_TOKEN];
        memcpy(bytes, tok[a].bytes, (size_t)tok[a].len);
        memcpy(bytes + tok[a].len, tok[b].bytes, (size_t)tok[b].len);
        int r = -1;
        for (int k = BYTE_VOCAB_SIZE; k < id && r < 0; k++)
            if (tok[k].len == len && memcmp(tok[k].bytes, bytes, (size_t)len) == 0) r = k;
        if (r < 0) {
            r = id++;
            tok[r].len = len;
            memcpy(tok[r].bytes, bytes, (size_t)len);
        }
        mabr[3 * n_merges] = a, mabr[3 * n_merges + 1] = b, mabr[3 * n_merges + 2] = r;
        n_merges++;
        for (int i = 0; i < w.n; i++) { // merge in place, left to right
            int* s = w.sym + w.start[i];
            int n = 0;
            for (int k = 0; k < w.len[i]; k++) {
                if (k + 1 < w.len[i] && s[k] == a && s[k + 1] == b) s[n++] = r, k++;
                else s[n++] = s[k];
            }
            w.len[i] = n;
        }
    }
    free(cnt);
    free(touched);
    words_free(&w);
    // fewer merges than asked (a tiny corpus): the unused ids stay out of the vocabulary
    int rc = write_json(path, tok, id, mabr, n_merges, err, errlen);
    free(mabr);
    free(tok);
    return rc;
}
