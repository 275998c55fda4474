// `ingrain generate` and `ingrain score` (see cli_model.h): the model loader, the scoring JSON,
// and generation that streams text as it is sampled.
#include "model/cli_model.h"

#include <errno.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "common/check.h"
#include "common/log.h"
#include "model/backend_select.h"
#include "model/chat.h"
#include "model/decode.h"
#include "model/hf.h"
#include "model/loss.h"
#include "model/timer.h"

#define SCORE_PIECE 64 // positions per feed when scoring (bounds the logits buffer to 64 x V)

// ----------------------------------------------------------------------------
// loading

static int is_dir(const char* path) {
    struct stat st;
    return stat(path, &st) == 0 && S_ISDIR(st.st_mode);
}

static int is_file(const char* path) {
    struct stat st;
    return stat(path, &st) == 0 && S_ISREG(st.st_mode);
}

int cli_model_load(const char* spec, int threads, uint64_t seed, CliModel* out, char* err, size_t errlen) {
    return cli_model_load_device(spec, "cpu", 0, threads, seed, out, err, errlen);
}

int cli_model_load_device(const char* spec, const char* device, int bf16, int threads, uint64_t seed, CliModel* out,
                          char* err, size_t errlen) {
    memset(out, 0, sizeof(*out));
    if (model_builtin_config(spec, &out->cfg) == 0 && !is_dir(spec)) {
        if (!(out->be = backend_open_flags(device, bf16, threads, err, errlen))) return -1;
        out->builtin = 1;
        out->tok = tokenizer_byte();
        out->model = model_create(&out->cfg, out->be, 1, 1);
        model_init_random(out->model, seed);
        return 0;
    }
    struct stat st;
    const int found = stat(spec, &st) == 0;
    if (!found || !S_ISDIR(st.st_mode)) {
        snprintf(err, errlen, "model '%s' is neither a directory (%s) nor a built-in config (tiny, small, gpt2-124m)",
                 spec, found ? "not a directory" : strerror(errno));
        return -1;
    }
    if (hf_load_config(spec, &out->cfg, err, errlen) != 0) return -1;
    char path[4096];
    snprintf(path, sizeof path, "%s/tokenizer.json", spec);
    if (is_file(path) && !(out->tok = tokenizer_load_hf(path, err, errlen))) return -1;

    ParamInfo table[PARAM_COUNT];
    const size_t n = model_param_table(&out->cfg, table);
    float* host = mallocCheck(n * sizeof(float));
    if (hf_load_weights(spec, &out->cfg, host, n, err, errlen) != 0) {
        free(host);
        tokenizer_free(out->tok);
        out->tok = NULL;
        return -1;
    }
    if (!(out->be = backend_open_flags(device, bf16, threads, err, errlen))) {
        free(host);
        tokenizer_free(out->tok);
        out->tok = NULL;
        return -1;
    }
    out->model = model_create(&out->cfg, out->be, 1, 1);
    model_params_upload(out->model, host);
    free(host);
    return 0;
}

void cli_model_free(CliModel* cm) {
    if (!cm) return;
    model_free(cm->model);
    if (cm->be) backend_destroy(cm->be);
    tokenizer_free(cm->tok);
    memset(cm, 0, sizeof(*cm));
}

// ----------------------------------------------------------------------------
// scoring

int cli_parse_tokens(const char* s, TokenBuf* out, char* err, size_t errlen) {
    int item = 0;
    const char* p = s;
    for (;;) {
        item++;
        while (*p == ' ' || *p == '\t') p++;
        char* end;
        errno = 0;
        const long v = strtol(p, &end, 10);
        const char* q = end;
        while (*q == ' ' || *q == '\t') q++;
        if (end == p || errno != 0 || v < 0 || v > 0x7fffffff || (*q != ',' && *q != '\0')) {
            const char* stop = strchr(p, ',');
            const int len = stop ? (int)(stop - p) : (int)strlen(p);
            snprintf(err, errlen, "--tokens: item %d ('%.*s') is not a token id (a non-negative integer)", item,
                     len > 40 ? 40 : len, p);
            return -1;
        }
        tokenbuf_push(out, (int)v);
        if (*q == '\0') return 0;
        p = q + 1;
    }
}

static int check_ids(const int* ids, int n, int V, int ctx, char* err, size_t errlen) {
    if (n <= 0) {
        snprintf(err, errlen, "nothing to score: the input has no tokens");
        return -1;
    }
    if (n > ctx) {
        snprintf(err, errlen, "the input is %d tokens, more than the model's context of %d (max_position_embeddings)",
                 n, ctx);
        return -1;
    }
    for (int t = 0; t < n; t++) {
        if (ids[t] < 0 || ids[t] >= V) {
            snprintf(err, errlen, "token %d (id %d) is outside the model's vocabulary of %d ids", t, ids[t], V);
            return -1;
        }
    }
    return 0;
}

char* cli_score_json(CliModel* cm, const char* spec, const int* ids, int n, int topk, char* err, size_t errlen) {
    const int V = cm->cfg.vocab_size;
    if (check_ids(ids, n, V, cm->cfg.max_seq_len, err, errlen) != 0) return NULL;
    const int kmax = V < LOSS_TOPK_MAX ? V : LOSS_TOPK_MAX;
    if (topk < 0 || topk > kmax) {
        snprintf(err, errlen, "--topk must be in 0..%d, got %d", kmax, topk);
        return NULL;
    }
    json_t* root = json_object();
    json_t* jt = json_array();
    json_t* jlp = json_array();
    json_t* jk = topk > 0 ? json_array() : NULL;
    json_object_set_new(root, "model", json_string(spec));
    json_object_set_new(root, "n_tokens", json_integer(n));
    for (int t = 0; t < n; t++) json_array_append_new(jt, json_integer(ids[t]));
    json_object_set_new(root, "tokens", jt);
    if (cm->tok) {
        json_t* js = json_array();
        for (int t = 0; t < n; t++) {
            const char* s = tokenizer_token_str(cm->tok, ids[t]);
            json_array_append_new(js, s ? json_stringn(s, strlen(s)) : json_null());
        }
        json_object_set_new(root, "token_strs", js);
    }

    // the logits of positions 0..n-2 predict tokens 1..n-1; fed SCORE_PIECE positions at a time
    Decoder* d = decoder_create(cm->model, 1, n);
    float* z = mallocCheck((size_t)SCORE_PIECE * V * sizeof(float));
    int* kid = mallocCheck(((size_t)topk + 1) * sizeof(int));
    float* klp = mallocCheck(((size_t)topk + 1) * sizeof(float));
    double sum = 0.0;
    json_array_append_new(jlp, json_null());
    if (jk) json_array_append_new(jk, json_null());
    const int slot = 0;
    for (int t0 = 0; t0 < n - 1; t0 += SCORE_PIECE) {
        const int np = n - 1 - t0 < SCORE_PIECE ? n - 1 - t0 : SCORE_PIECE;
        const int* piece = ids + t0;
        decoder_feed(d, 1, &slot, &piece, &np, z);
        for (int i = 0; i < np; i++) {
            SampledToken st = {.topk_ids = kid, .topk_lp = klp};
            score_token(z + (size_t)i * V, V, ids[t0 + i + 1], topk, &st);
            sum += st.logprob;
            json_array_append_new(jlp, json_real(st.logprob));
            if (!jk) continue;
            json_t* e = json_object();
            json_t* ei = json_array();
            json_t* el = json_array();
            for (int j = 0; j < topk; j++) {
                json_array_append_new(ei, json_integer(kid[j]));
                json_array_append_new(el, json_real(klp[j]));
            }
            json_object_set_new(e, "ids", ei);
            json_object_set_new(e, "logprobs", el);
            json_object_set_new(e, "tail_mass", json_real(st.tail_mass));
            json_array_append_new(jk, e);
        }
    }
    json_object_set_new(root, "logprobs", jlp);
    json_object_set_new(root, "sum_logprob", json_real(sum));
    if (jk) json_object_set_new(root, "topk", jk);
    char* text = json_dumps(root, JSON_COMPACT | JSON_REAL_PRECISION(9) | JSON_PRESERVE_ORDER);
    if (!text) fatal("score: out of memory while writing JSON");
    json_decref(root);
    decoder_free(d);
    free(z);
    free(kid);
    free(klp);
    return text;
}

// ----------------------------------------------------------------------------
// command-line parsing

static const char* usage_generate =
    "usage: ingrain generate --model DIR|NAME --prompt TEXT [options]\n"
    "\n"
    "Renders a chat (system and user message, then the assistant header) with the model's chat\n"
    "template, samples the assistant's reply and streams it to stdout as it is sampled.\n"
    "  --model DIR|NAME   HF model directory (config.json, *.safetensors, tokenizer.json) or a built-in\n"
    "                     config (tiny, small, gpt2-124m: random weights from --seed, byte tokenizer)\n"
    "  --prompt TEXT      the user message\n"
    "  --system TEXT      a system message first\n"
    "  --format F         chatml or llama3 (default: the one the tokenizer has the special tokens of)\n"
    "  --raw              feed the prompt text as it is (special tokens recognised), no template\n"
    "  --ids              print token ids instead of text: the prompt's, then the generated ones (the\n"
    "                     stop token included), comma-separated, as `ingrain score --tokens` reads them\n"
    "  --max-new N        tokens to generate at most (default 256)\n"
    "  --temperature T    0 = greedy (default 0.7)\n"
    "  --top-p P          nucleus mass in (0, 1] (default 0.9)\n"
    "  --top-k K          keep the K most likely tokens, 0 = all (default 0)\n"
    "  --seed S           sampling seed (default 0)\n"
    "  --threads N        CPU threads, 0 = all cores (default 0)\n"
    "  --device D         cpu (default) or cuda (GPU 0; CUDA_VISIBLE_DEVICES picks another)\n"
    "  --bf16             with --device cuda: bf16 tensor cores, activations and KV cache\n"
    "Generation stops at the template's end-of-turn token, the tokenizer's end-of-text token, after\n"
    "--max-new tokens or at the model's context length. Statistics go to stderr.\n";

static const char* usage_score =
    "usage: ingrain score --model DIR|NAME (--text TEXT | --tokens ID,ID,...) [--topk K] [--bos]\n"
    "\n"
    "Prints JSON with the token ids and, for every token after the first, its log-probability given\n"
    "the tokens before it (and the top-K of that distribution with the tail mass outside them), to\n"
    "check a converted model against another implementation.\n"
    "  --model DIR|NAME   HF model directory or built-in config, as for generate\n"
    "  --text TEXT        text to encode with the model's tokenizer (special tokens recognised)\n"
    "  --tokens IDS       comma-separated token ids instead of text\n"
    "  --topk K           also print the top-K log-probs per position (default 0)\n"
    "  --bos              put the tokenizer's begin-of-text token first (HF adds it for Llama models)\n"
    "  --seed S           seed of a built-in config's random weights (default 0)\n"
    "  --threads N        CPU threads, 0 = all cores (default 0)\n"
    "  --device D         cpu (default) or cuda (GPU 0; CUDA_VISIBLE_DEVICES picks another)\n"
    "  --bf16             with --device cuda: bf16 tensor cores, activations and KV cache\n";

static int parse_long(const char* cmd, const char* opt, const char* s, long lo, long hi, long* out) {
    char* end;
    errno = 0;
    const long v = strtol(s, &end, 10);
    if (*s == '\0' || *end != '\0' || errno != 0 || v < lo || v > hi) {
        fprintf(stderr, "ingrain %s: %s expects an integer in %ld..%ld, got '%s'\n", cmd, opt, lo, hi, s);
        return -1;
    }
    *out = v;
    return 0;
}

static int parse_float(const char* cmd, const char* opt, const char* s, float* out) {
    char* end;
    errno = 0;
    const float v = strtof(s, &end);
    if (*s == '\0' || *end != '\0' || errno != 0) {
        fprintf(stderr, "ingrain %s: %s expects a number, got '%s'\n", cmd, opt, s);
        return -1;
    }
    *out = v;
    return 0;
}

typedef struct {
    const char* model;
    const char* prompt;
    const char* system;
    const char* format;
    const char* text;
    const char* tokens;
    const char* device;
    int raw, ids, bos, bf16;
    long max_new, top_k, seed, threads, topk;
    float temperature, top_p;
} CliArgs;

// Parses the options of `cmd` (flags: --raw, --ids, --bos, --bf16; the rest take a value). Returns 0, 1 after
// printing the help, or an exit code.
static int parse_args(const char* cmd, const char* usage, int argc, char** argv, CliArgs* a) {
    for (int i = 0; i < argc; i++) {
        const char* o = argv[i];
        if (strcmp(o, "-h") == 0 || strcmp(o, "--help") == 0) {
            fputs(usage, stdout);
            return 1;
        }
        if (strcmp(o, "--raw") == 0 && strcmp(cmd, "generate") == 0) {
            a->raw = 1;
            continue;
        }
        if (strcmp(o, "--ids") == 0 && strcmp(cmd, "generate") == 0) {
            a->ids = 1;
            continue;
        }
        if (strcmp(o, "--bos") == 0 && strcmp(cmd, "score") == 0) {
            a->bos = 1;
            continue;
        }
        if (strcmp(o, "--bf16") == 0) {
            a->bf16 = 1;
            continue;
        }
        if (i + 1 >= argc) {
            fprintf(stderr, "ingrain %s: unknown option or missing value: '%s'\n\n%s", cmd, o, usage);
            return INGRAIN_EXIT_USAGE;
        }
        const char* v = argv[++i];
        int bad = 0;
        const int gen = strcmp(cmd, "generate") == 0;
        if (strcmp(o, "--model") == 0) a->model = v;
        else if (strcmp(o, "--seed") == 0) bad = parse_long(cmd, o, v, 0, 0x7fffffffffffffffL, &a->seed);
        else if (strcmp(o, "--threads") == 0) bad = parse_long(cmd, o, v, 0, 1024, &a->threads);
        else if (strcmp(o, "--device") == 0) a->device = v;
        else if (gen && strcmp(o, "--prompt") == 0) a->prompt = v;
        else if (gen && strcmp(o, "--system") == 0) a->system = v;
        else if (gen && strcmp(o, "--format") == 0) a->format = v;
        else if (gen && strcmp(o, "--max-new") == 0) bad = parse_long(cmd, o, v, 1, 1 << 24, &a->max_new);
        else if (gen && strcmp(o, "--temperature") == 0) bad = parse_float(cmd, o, v, &a->temperature);
        else if (gen && strcmp(o, "--top-p") == 0) bad = parse_float(cmd, o, v, &a->top_p);
        else if (gen && strcmp(o, "--top-k") == 0) bad = parse_long(cmd, o, v, 0, 1 << 30, &a->top_k);
        else if (!gen && strcmp(o, "--text") == 0) a->text = v;
        else if (!gen && strcmp(o, "--tokens") == 0) a->tokens = v;
        else if (!gen && strcmp(o, "--topk") == 0) bad = parse_long(cmd, o, v, 0, LOSS_TOPK_MAX, &a->topk);
        else {
            fprintf(stderr, "ingrain %s: unknown option '%s'\n\n%s", cmd, o, usage);
            return INGRAIN_EXIT_USAGE;
        }
        if (bad) return INGRAIN_EXIT_USAGE;
    }
    if (!a->model) {
        fprintf(stderr, "ingrain %s: --model is required\n\n%s", cmd, usage);
        return INGRAIN_EXIT_USAGE;
    }
    return 0;
}

// ----------------------------------------------------------------------------
// score

int cli_score(int argc, char** argv) {
    CliArgs a = {.device = "cpu"};
    int rc = parse_args("score", usage_score, argc, argv, &a);
    if (rc != 0) return rc == 1 ? INGRAIN_EXIT_OK : rc;
    if (!a.text == !a.tokens) {
        fprintf(stderr, "ingrain score: give exactly one of --text and --tokens\n\n%s", usage_score);
        return INGRAIN_EXIT_USAGE;
    }
    char err[1024];
    TokenBuf ids = {0};
    if (a.tokens && cli_parse_tokens(a.tokens, &ids, err, sizeof err) != 0) {
        fprintf(stderr, "ingrain score: %s\n", err);
        return INGRAIN_EXIT_USAGE;
    }
    CliModel cm;
    if (cli_model_load_device(a.model, a.device, a.bf16, (int)a.threads, (uint64_t)a.seed, &cm, err, sizeof err) != 0) {
        fprintf(stderr, "ingrain score: cannot load the model: %s\n", err);
        tokenbuf_free(&ids);
        return INGRAIN_EXIT_USAGE;
    }
    if (a.text && !cm.tok) {
        fprintf(stderr, "ingrain score: %s has no tokenizer.json: use --tokens\n", a.model);
        rc = INGRAIN_EXIT_USAGE;
    } else if (a.bos && (!cm.tok || tokenizer_bos_id(cm.tok) < 0)) {
        fprintf(stderr, "ingrain score: --bos: the tokenizer of %s defines no begin-of-text token\n", a.model);
        rc = INGRAIN_EXIT_USAGE;
    } else {
        if (a.text) {
            if (a.bos) tokenbuf_push(&ids, tokenizer_bos_id(cm.tok));
            tokenizer_encode(cm.tok, a.text, strlen(a.text), 1, &ids);
        } else if (a.bos) {
            // the begin-of-text token goes in front of the given ids
            tokenbuf_push(&ids, 0);
            memmove(ids.ids + 1, ids.ids, (size_t)(ids.n - 1) * sizeof(int));
            ids.ids[0] = tokenizer_bos_id(cm.tok);
        }
        char* json = cli_score_json(&cm, a.model, ids.ids, ids.n, (int)a.topk, err, sizeof err);
        if (json) {
            printf("%s\n", json);
            free(json);
        } else {
            fprintf(stderr, "ingrain score: %s\n", err);
            rc = INGRAIN_EXIT_USAGE;
        }
    }
    tokenbuf_free(&ids);
    cli_model_free(&cm);
    return rc;
}

// ----------------------------------------------------------------------------
// generate

// Streams sampled tokens as text. A token may end inside a UTF-8 character, so bytes are held
// back until the character they start is complete; special tokens are not printed.
typedef struct {
    const Tokenizer* tok;
    char* buf;
    size_t n, cap;
} Stream;

static size_t utf8_complete(const char* s, size_t n) {
    // the longest prefix that does not end inside a multi-byte character
    for (size_t back = 1; back <= 4 && back <= n; back++) {
        const unsigned char c = (unsigned char)s[n - back];
        if ((c & 0xC0) == 0x80) continue; // continuation byte: look further back
        const size_t need = c >= 0xF0 ? 4 : c >= 0xE0 ? 3 : c >= 0xC0 ? 2 : 1;
        return need > back ? n - back : n;
    }
    return n; // no lead byte within 4 bytes: invalid UTF-8, printed as it is
}

static void stream_flush(Stream* st, int all) {
    const size_t k = all ? st->n : utf8_complete(st->buf, st->n);
    fwrite(st->buf, 1, k, stdout);
    fflush(stdout);
    memmove(st->buf, st->buf + k, st->n - k);
    st->n -= k;
}

static int stream_token(void* ctx, int slot, const SampledToken* tokens, int n) {
    (void)slot;
    Stream* st = ctx;
    const int id = tokens[n - 1].id;
    if (tokenizer_is_special(st->tok, id)) return 0;
    size_t len;
    const char* b = tokenizer_token_bytes(st->tok, id, &len);
    if (st->n + len > st->cap) {
        st->cap = 2 * (st->n + len) + 16;
        st->buf = reallocCheck(st->buf, st->cap);
    }
    if (len) memcpy(st->buf + st->n, b, len);
    st->n += len;
    stream_flush(st, 0);
    return 0;
}

// the prompt's ids (chat template or raw) into ids, and the stop ids; 0 or -1 with err
static int render_prompt(const CliArgs* a, const Tokenizer* tok, TokenBuf* ids, int* stop, int* n_stop, char* err,
                         size_t errlen) {
    *n_stop = 0;
    const int eos = tokenizer_eos_id(tok);
    if (a->raw) {
        tokenizer_encode(tok, a->prompt, strlen(a->prompt), 1, ids);
        if (eos >= 0) stop[(*n_stop)++] = eos;
        return 0;
    }
    ChatFormat fmt;
    if (a->format) {
        if (chat_format_parse(a->format, &fmt) != 0) {
            snprintf(err, errlen, "--format: unknown chat format '%s' (chatml or llama3)", a->format);
            return -1;
        }
    } else if (tokenizer_special_id(tok, "<|im_start|>") >= 0) {
        fmt = CHAT_CHATML;
    } else if (tokenizer_special_id(tok, "<|start_header_id|>") >= 0) {
        fmt = CHAT_LLAMA3;
    } else {
        snprintf(err, errlen, "the tokenizer has neither ChatML nor Llama-3 special tokens: use --raw");
        return -1;
    }
    ChatRender r;
    if (chat_init(&r, tok, fmt, err, errlen) != 0) return -1;
    int rc = 0;
    if (a->system) {
        const ChatPart part = {a->system, SEG_SYSTEM};
        const ChatMessage m = {.role = CHAT_SYSTEM, .parts = &part, .n_parts = 1};
        rc = chat_append(&r, &m, err, errlen);
    }
    const ChatPart part = {a->prompt, SEG_USER};
    const ChatMessage m = {.role = CHAT_USER, .parts = &part, .n_parts = 1};
    if (rc == 0) rc = chat_append(&r, &m, err, errlen);
    if (rc == 0) rc = chat_append_generation_prompt(&r, err, errlen);
    for (int i = 0; rc == 0 && i < r.n; i++) tokenbuf_push(ids, r.ids[i]);
    if (rc == 0) {
        stop[(*n_stop)++] = chat_end_id(&r);
        if (eos >= 0 && eos != stop[0]) stop[(*n_stop)++] = eos;
    }
    chat_free(&r);
    return rc;
}

int cli_generate(int argc, char** argv) {
    CliArgs a = {.device = "cpu", .max_new = 256, .temperature = 0.7f, .top_p = 0.9f};
    int rc = parse_args("generate", usage_generate, argc, argv, &a);
    if (rc != 0) return rc == 1 ? INGRAIN_EXIT_OK : rc;
    if (!a.prompt) {
        fprintf(stderr, "ingrain generate: --prompt is required\n\n%s", usage_generate);
        return INGRAIN_EXIT_USAGE;
    }
    char err[1024];
    SamplingParams p = {.temperature = a.temperature, .top_p = a.top_p, .top_k = (int)a.top_k};
    if (sampling_params_check(&p, 1 << 30, err, sizeof err) != 0) {
        fprintf(stderr, "ingrain generate: %s\n", err);
        return INGRAIN_EXIT_USAGE;
    }
    CliModel cm;
    if (cli_model_load_device(a.model, a.device, a.bf16, (int)a.threads, (uint64_t)a.seed, &cm, err, sizeof err) != 0) {
        fprintf(stderr, "ingrain generate: cannot load the model: %s\n", err);
        return INGRAIN_EXIT_USAGE;
    }
    TokenBuf ids = {0};
    int stop[2], n_stop = 0;
    const int V = cm.cfg.vocab_size, ctx = cm.cfg.max_seq_len;
    if (!cm.tok) {
        snprintf(err, sizeof err, "%s has no tokenizer.json", a.model);
        rc = -1;
    } else {
        rc = render_prompt(&a, cm.tok, &ids, stop, &n_stop, err, sizeof err);
    }
    if (rc == 0 && ids.n == 0) {
        snprintf(err, sizeof err, "the prompt encodes to no tokens");
        rc = -1;
    }
    if (rc == 0 && ids.n >= ctx) {
        snprintf(err, sizeof err, "the prompt is %d tokens: no room left in the model's context of %d", ids.n, ctx);
        rc = -1;
    }
    for (int t = 0; rc == 0 && t < ids.n; t++) {
        if (ids.ids[t] >= V) {
            snprintf(err, sizeof err, "the tokenizer gave id %d, outside the model's vocabulary of %d", ids.ids[t], V);
            rc = -1;
        }
    }
    if (rc != 0) {
        fprintf(stderr, "ingrain generate: %s\n", err);
        tokenbuf_free(&ids);
        cli_model_free(&cm);
        return INGRAIN_EXIT_USAGE;
    }
    if (cm.builtin) fprintf(stderr, "ingrain generate: built-in config '%s' with random weights\n", a.model);

    const long room = ctx - ids.n;
    const int max_new = (int)(a.max_new < room ? a.max_new : room);
    Decoder* d = decoder_create(cm.model, 1, ids.n + max_new);
    const int slot = 0;
    const int* prompt = ids.ids;
    const double t0 = timer_now();
    decoder_feed(d, 1, &slot, &prompt, &ids.n, NULL);
    const double t1 = timer_now();
    Rng r;
    rng_seed(&r, (uint64_t)a.seed);
    Rng* rp = &r;
    Stream st = {.tok = cm.tok};
    GenResult g;
    decoder_generate(d, 1, &slot, &p, &rp, max_new, stop, n_stop, a.ids ? NULL : stream_token, &st, &g);
    const double t2 = timer_now();
    if (a.ids) {
        for (int t = 0; t < ids.n; t++) printf("%s%d", t ? "," : "", ids.ids[t]);
        for (int t = 0; t < g.n; t++) printf(",%d", g.tokens[t].id);
    } else {
        stream_flush(&st, 1);
    }
    printf("\n");
    const int last = g.n > 0 ? g.tokens[g.n - 1].id : -1;
    const int stopped = g.n > 0 && (last == stop[0] || (n_stop > 1 && last == stop[1]));
    const char* why = stopped ? tokenizer_token_str(cm.tok, last) : g.n == a.max_new ? "--max-new" : "context length";
    fprintf(stderr, "ingrain generate: prompt %d tokens (%.0f tokens/s), generated %d tokens (%.1f tokens/s), "
            "stopped by %s\n",
            ids.n, ids.n / (t1 - t0), g.n, g.n / (t2 - t1 > 0 ? t2 - t1 : 1e-9), why ? why : "a stop token");
    free(st.buf);
    gen_result_free(&g);
    decoder_free(d);
    tokenbuf_free(&ids);
    cli_model_free(&cm);
    return INGRAIN_EXIT_OK;
}
