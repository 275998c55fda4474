// Loading HF tokenizer.json (byte-level BPE: GPT-2, Llama-3, Qwen2/Qwen3) with jansson.
// Supported: model.type BPE with vocab and merges (the "a b" and the [a, b] form), added_tokens,
// normalizer null or NFC, pre_tokenizer Sequence / Split (Regex or String, Isolated) / ByteLevel.
// Anything else is an error naming the file and the JSON path, as is malformed JSON (with its
// line and column), so a user sees what in their file is not supported.
#include <jansson.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/check.h"
#include "model/tokenizer_internal.h"
#include "io/json_util.h"

// ----------------------------------------------------------------------------
// errors: "<file>: <json path>: <what>"

typedef struct {
    const char* file;
    char* err;
    size_t errlen;
} LoadCtx;

__attribute__((format(printf, 3, 4))) static int fail(LoadCtx* c, const char* jpath, const char* fmt, ...) {
    int n = snprintf(c->err, c->errlen, "%s: %s: ", c->file, jpath);
    if (n < 0 || (size_t)n >= c->errlen) return -1;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(c->err + n, c->errlen - (size_t)n, fmt, ap);
    va_end(ap);
    return -1;
}

// a JSON value's type in words, for messages
static int get_bool(const json_t* obj, const char* key, int dflt) {
    const json_t* v = json_object_get(obj, key);
    return json_is_boolean(v) ? json_is_true(v) : dflt;
}

// ----------------------------------------------------------------------------
// vocabulary and merges

static int load_vocab(LoadCtx* c, Tokenizer* t, const json_t* model) {
    const json_t* vocab = json_object_get(model, "vocab");
    const char* key;
    json_t* v;
    char* bytes = NULL; // decoded bytes of one token
    size_t bytes_cap = 0;
    strmap_init(&t->vocab, (int)json_object_size(vocab));
    json_object_foreach((json_t*)vocab, key, v) {
        int id = (int)json_integer_value(v);
        size_t len = strlen(key), off = arena_add(&t->arena, key, len);
        if (t->flags[id] & TOK_HAS) {
            char jp[64];
            snprintf(jp, sizeof(jp), "model.vocab[\"%.40s\"]", key);
            free(bytes);
            return fail(c, jp, "id %d is already taken by \"%s\"", id, t->arena.p + t->str_off[id]);
        }
        strmap_put(&t->vocab, &t->arena, off, (uint32_t)len, id);
        t->flags[id] = TOK_HAS;
        t->str_off[id] = off;
        if (len > bytes_cap) bytes_cap = 2 * len, bytes = reallocCheck(bytes, bytes_cap);
        // tokens outside the byte-level alphabet (rare in byte-level files) decode to their UTF-8
        long nb = bytelevel_decode(key, len, bytes);
        if (nb >= 0) t->bytes_off[id] = arena_add(&t->arena, bytes, (size_t)nb), t->bytes_len[id] = (uint32_t)nb;
        else t->bytes_off[id] = off, t->bytes_len[id] = (uint32_t)len;
    }
    free(bytes);
    for (int b = 0; b < 256; b++) {
        char s[2];
        size_t n = bytelevel_spell(b, s);
        t->byte_id[b] = strmap_get(&t->vocab, &t->arena, s, n);
        if (t->byte_id[b] < 0)
            return fail(c, "model.vocab",
                        "no token for byte 0x%02X (\"%.*s\"): not a byte-level BPE vocabulary, which needs all 256", b,
                        (int)n, s);
    }
    return 0;
}

static int load_merges(LoadCtx* c, Tokenizer* t, const json_t* merges) {
    size_t n = json_array_size(merges);
    mergemap_init(&t->merges, (int)n);
    char* joined = NULL;
    size_t joined_cap = 0;
    for (size_t i = 0; i < n; i++) {
        const json_t* m = json_array_get(merges, i);
        char jp[48];
        snprintf(jp, sizeof(jp), "model.merges[%zu]", i);
        const char *a, *b;
        size_t la, lb;
        if (json_is_string(m)) { // "left right"
            a = json_string_value(m);
            const char* sp = strchr(a, ' ');
            if (!sp || strchr(sp + 1, ' ') || sp == a || sp[1] == '\0') {
                free(joined);
                return fail(c, jp, "merge \"%s\" is not two tokens separated by one space", a);
            }
            la = (size_t)(sp - a), b = sp + 1, lb = strlen(b);
        } else if (json_is_array(m) && json_array_size(m) == 2 && json_is_string(json_array_get(m, 0)) &&
                   json_is_string(json_array_get(m, 1))) { // ["left", "right"]
            a = json_string_value(json_array_get(m, 0)), la = json_string_length(json_array_get(m, 0));
            b = json_string_value(json_array_get(m, 1)), lb = json_string_length(json_array_get(m, 1));
        } else {
            free(joined);
            return fail(c, jp, "expected a string \"a b\" or an array [\"a\", \"b\"], got %s", json_kind(m));
        }
        int ia = strmap_get(&t->vocab, &t->arena, a, la), ib = strmap_get(&t->vocab, &t->arena, b, lb);
        if (ia < 0 || ib < 0) {
            free(joined);
            return fail(c, jp, "merge names unknown token \"%.*s\" (not in model.vocab)", (int)(ia < 0 ? la : lb),
                        ia < 0 ? a : b);
        }
        if (la + lb > joined_cap) joined_cap = 2 * (la + lb), joined = reallocCheck(joined, joined_cap);
        memcpy(joined, a, la);
        memcpy(joined + la, b, lb);
        int merged = strmap_get(&t->vocab, &t->arena, joined, la + lb);
        if (merged < 0) {
            free(joined);
            return fail(c, jp, "merge result \"%.*s%.*s\" is not in model.vocab", (int)la, a, (int)lb, b);
        }
        mergemap_put(&t->merges, ia, ib, (int)i, merged);
    }
    free(joined);
    return 0;
}

// ----------------------------------------------------------------------------
// normalizer and pre-tokenizer

static int load_normalizer(LoadCtx* c, Tokenizer* t, const json_t* norm) {
    if (!norm || json_is_null(norm)) return 0;
    const char* type = json_string_value(json_object_get(norm, "type"));
    if (type && strcmp(type, "NFC") == 0) {
        t->nfc = 1;
        return 0;
    }
    if (type && strcmp(type, "Sequence") == 0 && json_array_size(json_object_get(norm, "normalizers")) == 0) return 0;
    return fail(c, "normalizer.type", "unsupported normalizer \"%s\" (supported: null, NFC)", type ? type : "?");
}

static int compile_regex(LoadCtx* c, const char* jpath, const char* pattern, size_t len, uint32_t extra,
                         pcre2_code** out) {
    int code;
    PCRE2_SIZE off;
    uint32_t opts = PCRE2_UTF | extra | (extra & PCRE2_LITERAL ? 0 : PCRE2_UCP); // UCP: \s, \w are Unicode-aware
    *out = pcre2_compile((PCRE2_SPTR)pattern, len, opts, &code, &off, NULL);
    if (!*out) {
        PCRE2_UCHAR msg[256];
        pcre2_get_error_message(code, msg, sizeof(msg));
        return fail(c, jpath, "PCRE2 rejects the pattern at offset %zu: %s", (size_t)off, (const char*)msg);
    }
    pcre2_jit_compile(*out, PCRE2_JIT_COMPLETE); // where JIT is unavailable the interpreter runs
    return 0;
}

static int add_pre_step(LoadCtx* c, Tokenizer* t, const json_t* p, const char* jpath) {
    char jp[160];
    const char* type = json_string_value(json_object_get(p, "type"));
    if (!type) {
        snprintf(jp, sizeof(jp), "%s.type", jpath);
        return fail(c, jp, "missing pre-tokenizer type");
    }
    if (strcmp(type, "Sequence") == 0) {
        const json_t* list = json_object_get(p, "pretokenizers");
        for (size_t i = 0; i < json_array_size(list); i++) {
            snprintf(jp, sizeof(jp), "%s.pretokenizers[%zu]", jpath, i);
            if (add_pre_step(c, t, json_array_get(list, i), jp) < 0) return -1;
        }
        return 0;
    }
    PreStep st = {0};
    if (strcmp(type, "Split") == 0) {
        const char* behavior = json_string_value(json_object_get(p, "behavior"));
        if (!behavior || strcmp(behavior, "Isolated") != 0 || get_bool(p, "invert", 0)) {
            snprintf(jp, sizeof(jp), "%s.behavior", jpath);
            return fail(c, jp, "unsupported Split behavior \"%s\"%s (supported: Isolated, not inverted)",
                        behavior ? behavior : "?", get_bool(p, "invert", 0) ? " with invert" : "");
        }
        const json_t* pat = json_object_get(p, "pattern");
        const json_t* re = json_object_get(pat, "Regex");
        const json_t* str = json_object_get(pat, "String");
        int rc;
        if (json_is_string(re)) {
            snprintf(jp, sizeof(jp), "%s.pattern.Regex", jpath);
            rc = compile_regex(c, jp, json_string_value(re), json_string_length(re), 0, &st.re);
        } else if (json_is_string(str)) {
            snprintf(jp, sizeof(jp), "%s.pattern.String", jpath);
            rc = compile_regex(c, jp, json_string_value(str), json_string_length(str), PCRE2_LITERAL, &st.re);
        } else {
            snprintf(jp, sizeof(jp), "%s.pattern", jpath);
            return fail(c, jp, "expected {\"Regex\": ...} or {\"String\": ...}");
        }
        if (rc < 0) return -1;
        st.kind = PRE_SPLIT;
    } else if (strcmp(type, "ByteLevel") == 0) { // HF defaults: add_prefix_space and use_regex on
        st.kind = PRE_BYTELEVEL;
        st.add_prefix_space = get_bool(p, "add_prefix_space", 1);
        if (get_bool(p, "use_regex", 1)) {
            snprintf(jp, sizeof(jp), "%s (GPT-2 pattern)", jpath);
            if (compile_regex(c, jp, bytelevel_gpt2_pattern, PCRE2_ZERO_TERMINATED, 0, &st.re) < 0) return -1;
        }
    } else {
        snprintf(jp, sizeof(jp), "%s.type", jpath);
        return fail(c, jp, "unsupported pre-tokenizer \"%s\" (supported: Sequence, Split, ByteLevel)", type);
    }
    t->pre = reallocCheck(t->pre, (size_t)(t->n_pre + 1) * sizeof(PreStep));
    t->pre[t->n_pre++] = st;
    return 0;
}

// ----------------------------------------------------------------------------
// added tokens, bos/eos

static int load_added(LoadCtx* c, Tokenizer* t, const json_t* added) {
    size_t n = json_array_size(added);
    t->added = callocCheck(n + 1, sizeof(AddedToken));
    for (size_t i = 0; i < n; i++) {
        const json_t* a = json_array_get(added, i);
        const json_t* content = json_object_get(a, "content");
        int id = (int)json_integer_value(json_object_get(a, "id"));
        if (!json_is_string(content) || json_string_length(content) == 0) {
            char jp[48];
            snprintf(jp, sizeof(jp), "added_tokens[%zu].content", i);
            return fail(c, jp, "expected a non-empty string");
        }
        size_t len = json_string_length(content), off = arena_add(&t->arena, json_string_value(content), len);
        AddedToken* at = &t->added[t->n_added++];
        *at = (AddedToken){.id = id, .special = get_bool(a, "special", 0), .lstrip = get_bool(a, "lstrip", 0),
                           .rstrip = get_bool(a, "rstrip", 0), .off = off, .len = len};
        t->flags[id] |= TOK_HAS | TOK_ADDED | (at->special ? TOK_SPECIAL : 0);
        t->str_off[id] = t->bytes_off[id] = off;
        t->bytes_len[id] = (uint32_t)len;
    }
    tokenizer_index_added(t);
    return 0;
}

// a tokenizer_config.json token entry: "<s>" or {"content": "<s>", ...}
static int config_token_id(const Tokenizer* t, const json_t* v) {
    if (json_is_object(v)) v = json_object_get(v, "content");
    return json_is_string(v) ? tokenizer_special_id(t, json_string_value(v)) : -1;
}

static int first_present(const Tokenizer* t, const char* const* names) {
    for (int i = 0; names[i]; i++)
        if (tokenizer_special_id(t, names[i]) >= 0) return tokenizer_special_id(t, names[i]);
    return -1;
}

// bos/eos from tokenizer_config.json beside the file, else from the usual spellings
static int load_bos_eos(LoadCtx* c, Tokenizer* t) {
    static const char* const bos_names[] = {"<|begin_of_text|>", "<s>", NULL};
    static const char* const eos_names[] = {"<|end_of_text|>", "<|endoftext|>", "</s>", NULL};
    t->bos_id = first_present(t, bos_names);
    t->eos_id = first_present(t, eos_names);
    const char* slash = strrchr(c->file, '/');
    size_t dir = slash ? (size_t)(slash - c->file) + 1 : 0;
    char* path = mallocCheck(dir + 32);
    memcpy(path, c->file, dir);
    strcpy(path + dir, "tokenizer_config.json");
    FILE* f = fopen(path, "rb");
    if (!f) {
        free(path);
        return 0;
    }
    fclose(f);
    json_error_t je;
    json_t* cfg = json_load_file(path, 0, &je);
    if (!cfg) {
        snprintf(c->err, c->errlen, "%s: line %d, column %d: invalid JSON: %s", path, je.line, je.column, je.text);
        free(path);
        return -1;
    }
    json_t* bos = json_object_get(cfg, "bos_token");
    json_t* eos = json_object_get(cfg, "eos_token");
    if (bos) t->bos_id = config_token_id(t, bos);
    if (eos && config_token_id(t, eos) >= 0) t->eos_id = config_token_id(t, eos);
    json_decref(cfg);
    free(path);
    return 0;
}

// ----------------------------------------------------------------------------
// the file

// checks the shape of what the loaders read and finds the vocabulary size
static int check_shape(LoadCtx* c, const json_t* root, int* V) {
    const json_t* model = json_object_get(root, "model");
    if (!json_is_object(root)) return fail(c, "(top level)", "expected an object, got %s", json_kind(root));
    if (!json_is_object(model)) return fail(c, "model", model ? "expected an object" : "missing");
    const json_t* type = json_object_get(model, "type");
    if (type && (!json_is_string(type) || strcmp(json_string_value(type), "BPE") != 0))
        return fail(c, "model.type", "unsupported model type \"%s\" (only byte-level BPE is supported)",
                    json_is_string(type) ? json_string_value(type) : json_kind(type));
    if (get_bool(model, "byte_fallback", 0))
        return fail(c, "model.byte_fallback", "byte_fallback BPE (SentencePiece style) is not supported");
    const char* affix[] = {"continuing_subword_prefix", "end_of_word_suffix"};
    for (int i = 0; i < 2; i++) {
        const char* s = json_string_value(json_object_get(model, affix[i]));
        if (s && s[0]) {
            char jp[48];
            snprintf(jp, sizeof(jp), "model.%s", affix[i]);
            return fail(c, jp, "\"%s\" is not supported (byte-level BPE has none)", s);
        }
    }
    const json_t* vocab = json_object_get(model, "vocab");
    if (!json_is_object(vocab)) return fail(c, "model.vocab", vocab ? "expected an object, got %s" : "missing%s",
                                            vocab ? json_kind(vocab) : "");
    if (!json_is_array(json_object_get(model, "merges"))) return fail(c, "model.merges", "missing or not an array");
    *V = 0;
    const char* key;
    json_t* v;
    json_object_foreach((json_t*)vocab, key, v) {
        if (!json_is_integer(v) || json_integer_value(v) < 0 || json_integer_value(v) >= (1 << 30)) {
            char jp[64];
            snprintf(jp, sizeof(jp), "model.vocab[\"%.40s\"]", key);
            return fail(c, jp, "expected a non-negative integer id, got %s", json_kind(v));
        }
        if (json_integer_value(v) >= *V) *V = (int)json_integer_value(v) + 1;
    }
    const json_t* added = json_object_get(root, "added_tokens");
    if (added && !json_is_array(added) && !json_is_null(added))
        return fail(c, "added_tokens", "expected an array, got %s", json_kind(added));
    for (size_t i = 0; i < json_array_size(added); i++) {
        const json_t* id = json_object_get(json_array_get(added, i), "id");
        if (!json_is_integer(id) || json_integer_value(id) < 0 || json_integer_value(id) >= (1 << 30)) {
            char jp[48];
            snprintf(jp, sizeof(jp), "added_tokens[%zu].id", i);
            return fail(c, jp, "expected a non-negative integer id");
        }
        if (json_integer_value(id) >= *V) *V = (int)json_integer_value(id) + 1;
    }
    return 0;
}

Tokenizer* tokenizer_load_hf(const char* path, char* err, size_t errlen) {
    LoadCtx c = {path, err, errlen};
    json_error_t je;
    json_t* root = json_load_file(path, 0, &je);
    if (!root) {
        if (je.line < 1) snprintf(err, errlen, "%s: %s", path, je.text); // could not be read at all
        else snprintf(err, errlen, "%s: line %d, column %d: invalid JSON: %s", path, je.line, je.column, je.text);
        return NULL;
    }
    Tokenizer* t = callocCheck(1, sizeof(Tokenizer));
    t->is_bpe = 1;
    int V = 0, ok = check_shape(&c, root, &V) == 0;
    if (ok) {
        const json_t* model = json_object_get(root, "model");
        tokenizer_alloc_ids(t, V);
        t->ignore_merges = get_bool(model, "ignore_merges", 0);
        ok = load_vocab(&c, t, model) == 0 && load_merges(&c, t, json_object_get(model, "merges")) == 0 &&
             load_added(&c, t, json_object_get(root, "added_tokens")) == 0 &&
             load_normalizer(&c, t, json_object_get(root, "normalizer")) == 0;
    }
    if (ok) {
        const json_t* pre = json_object_get(root, "pre_tokenizer");
        if (!pre || json_is_null(pre))
            ok = fail(&c, "pre_tokenizer", "missing: byte-level BPE needs a ByteLevel step") == 0;
        else ok = add_pre_step(&c, t, pre, "pre_tokenizer") == 0;
    }
    if (ok) {
        int has_bytelevel = 0;
        for (int i = 0; i < t->n_pre; i++) has_bytelevel |= t->pre[i].kind == PRE_BYTELEVEL;
        if (!has_bytelevel) ok = fail(&c, "pre_tokenizer", "no ByteLevel step: only byte-level BPE is supported") == 0;
    }
    if (ok) ok = load_bos_eos(&c, t) == 0;
    json_decref(root);
    if (!ok) {
        tokenizer_free(t);
        return NULL;
    }
    return t;
}
