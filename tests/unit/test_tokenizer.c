// Tokenizer tests: the byte tokenizer (all bytes, specials with and without allow_special), BPE
// merges by rank on a hand-written tiny tokenizer.json, malformed tokenizer.json files (each with
// the expected error), and the real Qwen3 and Llama-3 tokenizers against reference encodings from
// transformers.js (tools/tokenizer_reference.mjs; the tokenizer.json files are unpacked into
// TOKENIZER_UNPACKED_DIR by the tokenizer_data ctest fixture).
#include <jansson.h>
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "model/tokenizer.h"
#include "model/tokenizer_byte_vocab.h"
#include "model/tokenizer_internal.h"

#define TINY INGRAIN_TEST_DATA "/data/tokenizer/tiny.tokenizer.json"
#define REFERENCE INGRAIN_TEST_DATA "/data/tokenizer/reference.json"
#define QWEN3 TOKENIZER_UNPACKED_DIR "/qwen3.tokenizer.json"
#define LLAMA3 TOKENIZER_UNPACKED_DIR "/llama3.tokenizer.json"

// encodes text, checks the ids against want (n ids)
static void check_encode(const Tokenizer* tok, const char* text, int allow_special, const int* want, int n) {
    TokenBuf b = {0};
    int got = tokenizer_encode(tok, text, strlen(text), allow_special, &b);
    assert_int_equal(got, b.n);
    if (b.n != n || memcmp(b.ids, want, (size_t)n * sizeof(int)) != 0) {
        print_error("encode \"%s\" (allow_special %d): got", text, allow_special);
        for (int i = 0; i < b.n; i++) print_error(" %d", b.ids[i]);
        print_error(", want");
        for (int i = 0; i < n; i++) print_error(" %d", want[i]);
        print_error("\n");
        fail();
    }
    tokenbuf_free(&b);
}
#define CHECK_ENCODE(tok, text, allow, ...)                                                                \
    do {                                                                                                   \
        const int want_[] = {__VA_ARGS__};                                                                 \
        check_encode(tok, text, allow, want_, (int)(sizeof(want_) / sizeof(int)));                         \
    } while (0)

// ----------------------------------------------------------------------------
// byte tokenizer

static void test_byte_all_bytes_round_trip(void** state) {
    (void)state;
    Tokenizer* tok = tokenizer_byte();
    assert_int_equal(tokenizer_vocab_size(tok), BYTE_VOCAB_SIZE);
    char text[256];
    for (int b = 0; b < 256; b++) text[b] = (char)b;
    for (int allow = 0; allow <= 1; allow++) {
        TokenBuf ids = {0};
        assert_int_equal(tokenizer_encode(tok, text, 256, allow, &ids), 256);
        for (int b = 0; b < 256; b++) assert_int_equal(ids.ids[b], b);
        char out[300];
        assert_int_equal(tokenizer_decode(tok, ids.ids, ids.n, out, sizeof(out)), 256);
        assert_memory_equal(out, text, 256);
        tokenbuf_free(&ids);
    }
    assert_string_equal(tokenizer_token_str(tok, 'A'), "A");
    assert_string_equal(tokenizer_token_str(tok, '\n'), "<0x0A>");
    assert_string_equal(tokenizer_token_str(tok, 0xff), "<0xFF>");
    assert_null(tokenizer_token_str(tok, BYTE_VOCAB_SIZE));
    assert_null(tokenizer_token_str(tok, -1));
    tokenizer_free(tok);
}

static void test_byte_specials(void** state) {
    (void)state;
    Tokenizer* tok = tokenizer_byte();
    // spelled as the comments of tokenizer_byte_vocab.h say
    const struct {
        int id;
        const char* s;
    } sp[] = {{BYTE_TOKEN_BOS, "<|begin_of_text|>"},  {BYTE_TOKEN_EOS, "<|end_of_text|>"},
              {BYTE_TOKEN_IM_START, "<|im_start|>"},  {BYTE_TOKEN_IM_END, "<|im_end|>"},
              {BYTE_TOKEN_TOOL_CALL, "<tool_call>"},  {BYTE_TOKEN_TOOL_CALL_END, "</tool_call>"},
              {BYTE_TOKEN_TOOL_RESP, "<tool_response>"}, {BYTE_TOKEN_TOOL_RESP_END, "</tool_response>"},
              {BYTE_TOKEN_EXP, "<experience>"},       {BYTE_TOKEN_EXP_END, "</experience>"}};
    for (size_t i = 0; i < sizeof(sp) / sizeof(sp[0]); i++) {
        assert_int_equal(tokenizer_special_id(tok, sp[i].s), sp[i].id);
        assert_string_equal(tokenizer_token_str(tok, sp[i].id), sp[i].s);
        assert_true(tokenizer_is_special(tok, sp[i].id));
        CHECK_ENCODE(tok, sp[i].s, 1, sp[i].id);
    }
    assert_int_equal(tokenizer_special_id(tok, "<|nope|>"), -1);
    assert_int_equal(tokenizer_special_id(tok, ""), -1);
    assert_false(tokenizer_is_special(tok, 'a'));
    assert_int_equal(tokenizer_bos_id(tok), BYTE_TOKEN_BOS);
    assert_int_equal(tokenizer_eos_id(tok), BYTE_TOKEN_EOS);

    const char* chat = "<|im_start|>user\nhi<|im_end|>";
    CHECK_ENCODE(tok, chat, 1, BYTE_TOKEN_IM_START, 'u', 's', 'e', 'r', '\n', 'h', 'i', BYTE_TOKEN_IM_END);
    TokenBuf plain = {0}; // without allow_special the same text is its bytes
    assert_int_equal(tokenizer_encode(tok, chat, strlen(chat), 0, &plain), (int)strlen(chat));
    for (size_t i = 0; i < strlen(chat); i++) assert_int_equal(plain.ids[i], (unsigned char)chat[i]);
    tokenbuf_free(&plain);
    // an unfinished special is bytes; a special right after another, and at the very end, match
    CHECK_ENCODE(tok, "<|im_end", 1, '<', '|', 'i', 'm', '_', 'e', 'n', 'd');
    CHECK_ENCODE(tok, "<<tool_call></tool_call>", 1, '<', BYTE_TOKEN_TOOL_CALL, BYTE_TOKEN_TOOL_CALL_END);

    // decoding a special gives its text
    int ids[] = {BYTE_TOKEN_IM_START, 'o', 'k', BYTE_TOKEN_IM_END};
    char* s = tokenizer_decode_alloc(tok, ids, 4, NULL);
    assert_string_equal(s, "<|im_start|>ok<|im_end|>");
    free(s);
    char small[6]; // snprintf-like truncation
    assert_int_equal(tokenizer_decode(tok, ids, 4, small, sizeof(small)), strlen("<|im_start|>ok<|im_end|>"));
    assert_string_equal(small, "<|im_");
    tokenizer_free(tok);
}

// ----------------------------------------------------------------------------
// tiny BPE: ids 0..255 are the bytes (in byte-level spelling), then
//   256 bc, 257 ab, 258 abc, 259 Ġa, 260 aa, 261 ĠĠ, 262 cd; added 263 <|end|> (special), 264 <x>
// merges by rank: b c, a b, a bc, Ġ a, a a, Ġ Ġ, c d (string and array forms mixed)

static void test_bpe_merges_by_rank(void** state) {
    (void)state;
    char err[512];
    Tokenizer* tok = tokenizer_load_hf(TINY, err, sizeof(err));
    if (!tok) fail_msg("%s", err);
    assert_int_equal(tokenizer_vocab_size(tok), 265);
    CHECK_ENCODE(tok, "abc", 0, 258);           // b c (rank 0) before a b (rank 1), then a bc
    CHECK_ENCODE(tok, "abcd", 0, 258, 'd');      // c d (rank 6) loses to b c
    CHECK_ENCODE(tok, "ab", 0, 257);
    CHECK_ENCODE(tok, "aaa", 0, 260, 'a');       // equal ranks: leftmost first
    CHECK_ENCODE(tok, "aaaa", 0, 260, 260);
    CHECK_ENCODE(tok, " abc", 0, ' ', 258);      // a bc (rank 2) before Ġ a (rank 3)
    CHECK_ENCODE(tok, " ab", 0, ' ', 257);       // a b (rank 1) before Ġ a (rank 3)
    tokenizer_free(tok);
}

static void test_bpe_pretokenizer_and_added(void** state) {
    (void)state;
    char err[512];
    Tokenizer* tok = tokenizer_load_hf(TINY, err, sizeof(err));
    if (!tok) fail_msg("%s", err);
    // GPT-2 pattern: "  " (\s+(?!\S)) then " x"
    CHECK_ENCODE(tok, "   x", 0, 261, ' ', 'x');
    CHECK_ENCODE(tok, " a", 0, 259);
    CHECK_ENCODE(tok, "x<|end|>y", 1, 'x', 263, 'y');
    CHECK_ENCODE(tok, "x<|end|>y", 0, 'x', '<', '|', 'e', 'n', 'd', '|', '>', 'y');
    CHECK_ENCODE(tok, "<x>", 0, 264); // not special: recognised either way
    CHECK_ENCODE(tok, "<x>", 1, 264);
    assert_int_equal(tokenizer_special_id(tok, "<x>"), 264);
    assert_false(tokenizer_is_special(tok, 264));
    assert_true(tokenizer_is_special(tok, 263));
    assert_string_equal(tokenizer_token_str(tok, 259), "Ġa");
    size_t len;
    const char* b = tokenizer_token_bytes(tok, 259, &len);
    assert_int_equal(len, 2);
    assert_memory_equal(b, " a", 2);
    assert_null(tokenizer_token_bytes(tok, 999, &len));
    assert_int_equal(len, 0);
    // invalid UTF-8 is encoded byte by byte and decodes back to the same bytes
    const char bad[] = "\xff\xfe" "abc \xc3";
    TokenBuf ids = {0};
    tokenizer_encode(tok, bad, sizeof(bad) - 1, 0, &ids);
    char* back = tokenizer_decode_alloc(tok, ids.ids, ids.n, &len);
    assert_int_equal(len, sizeof(bad) - 1);
    assert_memory_equal(back, bad, len);
    free(back);
    tokenbuf_free(&ids);
    tokenizer_free(tok);
}

// ----------------------------------------------------------------------------
// malformed files: each variant of the tiny file must fail with an error naming the file and
// the JSON path

static char tmpdir[] = "/tmp/ingrain_tok_XXXXXX";

static int make_tmpdir(void** state) {
    (void)state;
    strcpy(tmpdir, "/tmp/ingrain_tok_XXXXXX"); // mkdtemp filled in the last test's name
    return mkdtemp(tmpdir) ? 0 : -1;
}

static int remove_tmpdir(void** state) {
    (void)state;
    return rmdir(tmpdir);
}

// writes text to <tmpdir>/name, the path into path (PATH_BYTES)
enum { PATH_BYTES = 256 };
static void write_tmp(const char* name, const char* text, char* path) {
    snprintf(path, PATH_BYTES, "%s/%s", tmpdir, name);
    FILE* f = fopen(path, "wb");
    assert_non_null(f);
    fputs(text, f);
    fclose(f);
}

// writes text to <tmpdir>/name and loads it; returns the error (the load must fail)
static void expect_load_error(const char* name, const char* text, const char* want) {
    char path[PATH_BYTES], err[512] = "";
    write_tmp(name, text, path);
    Tokenizer* tok = tokenizer_load_hf(path, err, sizeof(err));
    unlink(path);
    if (tok) fail_msg("%s loaded, expected an error containing '%s'", name, want);
    if (!strstr(err, path) || !strstr(err, want)) fail_msg("%s: error '%s' lacks '%s' or the path", name, err, want);
}

// the tiny file changed by fn, as text
static char* tiny_with(void (*fn)(json_t* root)) {
    json_error_t je;
    json_t* root = json_load_file(TINY, 0, &je);
    assert_non_null(root);
    fn(root);
    char* s = json_dumps(root, 0);
    json_decref(root);
    return s;
}

static void unchanged(json_t* r) { (void)r; }
static json_t* model_of(json_t* root) { return json_object_get(root, "model"); }
static json_t* merges_of(json_t* root) { return json_object_get(model_of(root), "merges"); }
static void drop_vocab(json_t* r) { json_object_del(model_of(r), "vocab"); }
static void unknown_merge(json_t* r) { json_array_set_new(merges_of(r), 3, json_string("Ġ zz")); }
static void bad_merge_form(json_t* r) { json_array_set_new(merges_of(r), 2, json_integer(7)); }
static void merge_not_in_vocab(json_t* r) { json_array_append_new(merges_of(r), json_string("d d")); }
static void unigram(json_t* r) { json_object_set_new(model_of(r), "type", json_string("Unigram")); }
static void wordpiece(json_t* r) { json_object_set_new(model_of(r), "type", json_string("WordPiece")); }
static void missing_byte(json_t* r) { json_object_del(json_object_get(model_of(r), "vocab"), "Ā"); }
static void nfkc(json_t* r) { json_object_set_new(r, "normalizer", json_pack("{s:s}", "type", "NFKC")); }
static void bad_regex(json_t* r) {
    json_object_set_new(r, "pre_tokenizer",
                        json_pack("{s:s, s:[{s:s, s:{s:s}, s:s, s:b}, {s:s, s:b, s:b}]}", "type", "Sequence",
                                  "pretokenizers", "type", "Split", "pattern", "Regex", "([a-z]+", "behavior",
                                  "Isolated", "invert", 0, "type", "ByteLevel", "add_prefix_space", 0, "use_regex",
                                  0));
}
static void whitespace_pre(json_t* r) {
    json_object_set_new(r, "pre_tokenizer", json_pack("{s:s}", "type", "Whitespace"));
}
static void no_bytelevel(json_t* r) {
    json_object_set_new(r, "pre_tokenizer",
                        json_pack("{s:s, s:{s:s}, s:s, s:b}", "type", "Split", "pattern", "String", " ", "behavior",
                                  "Isolated", "invert", 0));
}
static void bad_id(json_t* r) { json_object_set_new(json_object_get(model_of(r), "vocab"), "zz", json_string("7")); }
static void added_no_content(json_t* r) {
    json_object_del(json_array_get(json_object_get(r, "added_tokens"), 1), "content");
}

static void test_malformed_files(void** state) {
    (void)state;
    expect_load_error("notjson.json", "{\"model\": {\"vocab\": {\n  \"a\": 0,,\n", "line 2, column");
    expect_load_error("array.json", "[1, 2]", "(top level): expected an object");
    const struct {
        void (*fn)(json_t*);
        const char* want;
    } cases[] = {
        {drop_vocab, "model.vocab: missing"},
        {unknown_merge, "model.merges[3]: merge names unknown token \"zz\""},
        {bad_merge_form, "model.merges[2]: expected a string \"a b\" or an array"},
        {merge_not_in_vocab, "model.merges[7]: merge result \"dd\" is not in model.vocab"},
        {unigram, "model.type: unsupported model type \"Unigram\""},
        {wordpiece, "model.type: unsupported model type \"WordPiece\""},
        {missing_byte, "model.vocab: no token for byte 0x00"},
        {nfkc, "normalizer.type: unsupported normalizer \"NFKC\""},
        {bad_regex, "pre_tokenizer.pretokenizers[0].pattern.Regex: PCRE2 rejects the pattern at offset 7"},
        {whitespace_pre, "pre_tokenizer.type: unsupported pre-tokenizer \"Whitespace\""},
        {no_bytelevel, "pre_tokenizer: no ByteLevel step"},
        {bad_id, "model.vocab[\"zz\"]: expected a non-negative integer id"},
        {added_no_content, "added_tokens[1].content: expected a non-empty string"},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        char* text = tiny_with(cases[i].fn);
        expect_load_error("bad.json", text, cases[i].want);
        free(text);
    }
    char err[512];
    assert_null(tokenizer_load_hf("/nonexistent/tokenizer.json", err, sizeof(err)));
    assert_non_null(strstr(err, "/nonexistent/tokenizer.json"));
}

// ----------------------------------------------------------------------------
// files beside tokenizer.json and options the shipped tokenizers do not use

static void prefix_space(json_t* r) {
    json_object_set_new(json_object_get(r, "pre_tokenizer"), "add_prefix_space", json_true());
}

// ByteLevel(add_prefix_space: true), as RoBERTa ships it: a space before a text that lacks one,
// then the usual split and merges
static void test_bpe_add_prefix_space(void** state) {
    (void)state;
    char* text = tiny_with(prefix_space);
    char path[PATH_BYTES], err[512];
    write_tmp("tokenizer.json", text, path);
    free(text);
    Tokenizer* tok = tokenizer_load_hf(path, err, sizeof(err));
    unlink(path);
    if (!tok) fail_msg("%s", err);
    CHECK_ENCODE(tok, "a", 0, 259);           // encoded as " a"
    CHECK_ENCODE(tok, " a", 0, 259);          // a space already: none added
    CHECK_ENCODE(tok, "a a", 0, 259, 259);    // " a a": both words start with a space
    CHECK_ENCODE(tok, "abc", 0, ' ', 258);    // " abc": a bc (rank 2) before Ġ a (rank 3)
    tokenizer_free(tok);
}

// bos and eos from tokenizer_config.json beside tokenizer.json (a string or {"content": ...}),
// over the usual spellings; a config token that is not a special of the file leaves eos as it was
static void test_tokenizer_config_json(void** state) {
    (void)state;
    char tok_path[PATH_BYTES], cfg_path[PATH_BYTES], err[512];
    char* tiny = tiny_with(unchanged);
    write_tmp("tokenizer.json", tiny, tok_path);
    free(tiny);
    Tokenizer* tok = tokenizer_load_hf(tok_path, err, sizeof(err));
    if (!tok) fail_msg("%s", err);
    assert_int_equal(tokenizer_bos_id(tok), -1); // none of the usual spellings in the tiny file
    assert_int_equal(tokenizer_eos_id(tok), -1);
    tokenizer_free(tok);

    write_tmp("tokenizer_config.json", "{\"bos_token\": \"<x>\", \"eos_token\": {\"content\": \"<|end|>\"}}",
              cfg_path);
    tok = tokenizer_load_hf(tok_path, err, sizeof(err));
    if (!tok) fail_msg("%s", err);
    assert_int_equal(tokenizer_bos_id(tok), 264);
    assert_int_equal(tokenizer_eos_id(tok), 263);
    tokenizer_free(tok);

    write_tmp("tokenizer_config.json", "{\"eos_token\": \"</s>\"}", cfg_path);
    tok = tokenizer_load_hf(tok_path, err, sizeof(err));
    if (!tok) fail_msg("%s", err);
    assert_int_equal(tokenizer_eos_id(tok), -1);
    tokenizer_free(tok);

    write_tmp("tokenizer_config.json", "{\"eos_token\": \n  \"<|end|>\",,}", cfg_path);
    assert_null(tokenizer_load_hf(tok_path, err, sizeof(err)));
    if (!strstr(err, cfg_path) || !strstr(err, "line 2, column")) fail_msg("error '%s' lacks the file or line", err);
    unlink(cfg_path);
    unlink(tok_path);
}

// ----------------------------------------------------------------------------
// real tokenizers against transformers.js

static Tokenizer* load_or_fail(const char* path) {
    char err[512];
    Tokenizer* tok = tokenizer_load_hf(path, err, sizeof(err));
    if (!tok) fail_msg("%s (is the tokenizer_data fixture run? ctest -R test_tokenizer runs it)", err);
    return tok;
}

static void check_reference(const char* name, const char* path) {
    Tokenizer* tok = load_or_fail(path);
    json_error_t je;
    json_t* ref = json_load_file(REFERENCE, 0, &je);
    if (!ref) fail_msg("%s: line %d: %s", REFERENCE, je.line, je.text);
    json_t* cases = json_object_get(ref, name);
    assert_true(json_array_size(cases) > 20);
    int failures = 0;
    for (size_t i = 0; i < json_array_size(cases); i++) {
        json_t* c = json_array_get(cases, i);
        const char* text = json_string_value(json_object_get(c, "text"));
        size_t tlen = json_string_length(json_object_get(c, "text"));
        int allow = json_is_true(json_object_get(c, "allow_special"));
        json_t* want = json_object_get(c, "ids");
        TokenBuf b = {0};
        tokenizer_encode(tok, text, tlen, allow, &b);
        int same = b.n == (int)json_array_size(want);
        for (int k = 0; same && k < b.n; k++) same = b.ids[k] == json_integer_value(json_array_get(want, k));
        if (!same) {
            failures++;
            print_error("%s case %zu (allow_special %d) \"%.60s\": got %d ids, want %zu\n", name, i, allow, text, b.n,
                        json_array_size(want));
            for (int k = 0; k < b.n && k < 40; k++) print_error(" %d", b.ids[k]);
            print_error("\n");
        }
        // decoding gives the text back, NFC-normalized where the tokenizer normalizes
        size_t dlen, nlen;
        char* back = tokenizer_decode_alloc(tok, b.ids, b.n, &dlen);
        char* nfc = strcmp(name, "qwen3") == 0 ? nfc_normalize(text, tlen, &nlen) : NULL;
        const char* expect = nfc ? nfc : text;
        size_t elen = nfc ? nlen : tlen;
        if (dlen != elen || memcmp(back, expect, elen) != 0) {
            failures++;
            print_error("%s case %zu: decode does not give the text back\n", name, i);
        }
        free(nfc);
        free(back);
        tokenbuf_free(&b);
    }
    json_decref(ref);
    tokenizer_free(tok);
    assert_int_equal(failures, 0);
}

static void test_qwen3_reference(void** state) {
    (void)state;
    check_reference("qwen3", QWEN3);
}

static void test_llama3_reference(void** state) {
    (void)state;
    check_reference("llama3", LLAMA3);
}

static void test_qwen3_vocabulary(void** state) {
    (void)state;
    Tokenizer* tok = load_or_fail(QWEN3);
    assert_int_equal(tokenizer_vocab_size(tok), 151669);
    assert_int_equal(tokenizer_special_id(tok, "<|im_start|>"), 151644);
    assert_int_equal(tokenizer_special_id(tok, "<|im_end|>"), 151645);
    assert_int_equal(tokenizer_special_id(tok, "<tool_call>"), 151657);
    assert_int_equal(tokenizer_special_id(tok, "<|eot_id|>"), -1);
    assert_true(tokenizer_is_special(tok, 151645));
    assert_false(tokenizer_is_special(tok, 151657)); // <tool_call> is added but not special
    assert_false(tokenizer_is_special(tok, 1879));
    assert_int_equal(tokenizer_bos_id(tok), -1);
    assert_int_equal(tokenizer_eos_id(tok), 151643); // <|endoftext|>: no tokenizer_config.json beside
    assert_string_equal(tokenizer_token_str(tok, 1879), "Ġworld");
    assert_string_equal(tokenizer_token_str(tok, 151645), "<|im_end|>");
    assert_null(tokenizer_token_str(tok, 151669));

    // streaming: the tokens' bytes, appended, give the text although single tokens end inside
    // UTF-8 characters
    const char* text = "I ❤️ 你好, naïve 🎉🚀 done";
    TokenBuf b = {0};
    tokenizer_encode(tok, text, strlen(text), 0, &b);
    char out[256];
    size_t n = 0;
    int partial = 0;
    for (int i = 0; i < b.n; i++) {
        size_t len;
        const char* s = tokenizer_token_bytes(tok, b.ids[i], &len);
        partial |= utf8_valid_prefix(s, len) < len;
        memcpy(out + n, s, len);
        n += len;
    }
    assert_int_equal(n, strlen(text));
    assert_memory_equal(out, text, n);
    assert_true(partial);
    tokenbuf_free(&b);
    tokenizer_free(tok);
}

static void test_llama3_vocabulary(void** state) {
    (void)state;
    Tokenizer* tok = load_or_fail(LLAMA3);
    assert_int_equal(tokenizer_vocab_size(tok), 128256);
    assert_int_equal(tokenizer_bos_id(tok), 128000);
    assert_int_equal(tokenizer_eos_id(tok), 128001);
    assert_int_equal(tokenizer_special_id(tok, "<|eot_id|>"), 128009);
    assert_int_equal(tokenizer_special_id(tok, "<|start_header_id|>"), 128006);
    // a long text (~9 KB): encode and decode round trip
    const char* para = "Experience becomes weights, iteration after iteration. 12345 don't\n\t  ";
    size_t plen = strlen(para), total = 128 * plen;
    char* big = malloc(total + 1);
    for (int i = 0; i < 128; i++) memcpy(big + i * plen, para, plen);
    big[total] = '\0';
    TokenBuf b = {0};
    tokenizer_encode(tok, big, total, 0, &b);
    assert_true(b.n > 1000 && b.n < (int)total / 2);
    size_t len;
    char* back = tokenizer_decode_alloc(tok, b.ids, b.n, &len);
    assert_int_equal(len, total);
    assert_memory_equal(back, big, total);
    free(back);
    free(big);
    tokenbuf_free(&b);
    tokenizer_free(tok);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_byte_all_bytes_round_trip),
        cmocka_unit_test(test_byte_specials),
        cmocka_unit_test(test_bpe_merges_by_rank),
        cmocka_unit_test(test_bpe_pretokenizer_and_added),
        cmocka_unit_test_setup_teardown(test_malformed_files, make_tmpdir, remove_tmpdir),
        cmocka_unit_test_setup_teardown(test_bpe_add_prefix_space, make_tmpdir, remove_tmpdir),
        cmocka_unit_test_setup_teardown(test_tokenizer_config_json, make_tmpdir, remove_tmpdir),
        cmocka_unit_test(test_qwen3_reference),
        cmocka_unit_test(test_qwen3_vocabulary),
        cmocka_unit_test(test_llama3_reference),
        cmocka_unit_test(test_llama3_vocabulary),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
