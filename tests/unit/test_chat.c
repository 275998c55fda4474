// Chat template tests: exact rendering of a short conversation (system with an experience part,
// user, assistant with a tool call, tool response, final answer) in ChatML with the byte and the
// Qwen3 tokenizers and in Llama-3 with the Llama-3 tokenizer, checked against the expected
// template text, per-token segment tags and agent mask; incremental rendering (generation prompt
// + sampled ids) against full rendering; and the tool-call parser on valid and malformed input.
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "model/chat.h"
#include "model/tokenizer.h"
#include "model/tokenizer_byte_vocab.h"

#define QWEN3 TOKENIZER_UNPACKED_DIR "/qwen3.tokenizer.json"
#define LLAMA3 TOKENIZER_UNPACKED_DIR "/llama3.tokenizer.json"

// ----------------------------------------------------------------------------
// the conversation

static const ChatPart sys_parts[] = {{"You are a helpful agent.\n\n", SEG_SYSTEM},
                                     {"When stuck, search.", SEG_EXPERIENCE}};
static const ChatPart user_parts[] = {{"What is the capital of France?", SEG_USER}};
static const ChatPart a1_parts[] = {{"Let me search.", SEG_ASSISTANT}};
static const ChatToolCall a1_calls[] = {{"search", "{\"query\": \"capital of France\"}"}};
static const ChatPart tool_parts[] = {{"Paris is the capital of France.", SEG_TOOL}};
static const ChatPart a2_parts[] = {{"Paris.", SEG_ASSISTANT}};

static const ChatMessage convo[] = {
    {CHAT_SYSTEM, sys_parts, 2, NULL, 0},  {CHAT_USER, user_parts, 1, NULL, 0},
    {CHAT_ASSISTANT, a1_parts, 1, a1_calls, 1}, {CHAT_TOOL, tool_parts, 1, NULL, 0},
    {CHAT_ASSISTANT, a2_parts, 1, NULL, 0},
};
enum { N_MSG = 5 };

static const char* const call_text =
    "<tool_call>\n{\"name\": \"search\", \"arguments\": {\"query\": \"capital of France\"}}\n</tool_call>";

// the expected rendering as pieces: text of one segment and agent flag each
typedef struct {
    const char* s;
    int seg, agent;
} Piece;

static const Piece chatml_pieces[] = {
    {"<|im_start|>system\n", SEG_SYSTEM, 0},
    {"You are a helpful agent.\n\n", SEG_SYSTEM, 0},
    {"<experience>When stuck, search.</experience>", SEG_EXPERIENCE, 0}, // wrapped with the byte tokenizer only
    {"<|im_end|>", SEG_SYSTEM, 0},
    {"\n<|im_start|>user\nWhat is the capital of France?<|im_end|>", SEG_USER, 0},
    {"\n<|im_start|>assistant\n", SEG_ASSISTANT, 0},
    {"Let me search.\n", SEG_ASSISTANT, 1},
    {NULL, SEG_ASSISTANT, 1}, // call_text
    {"<|im_end|>", SEG_ASSISTANT, 1},
    {"\n<|im_start|>user\n<tool_response>\nParis is the capital of France.\n</tool_response><|im_end|>", SEG_TOOL, 0},
    {"\n<|im_start|>assistant\n", SEG_ASSISTANT, 0},
    {"Paris.<|im_end|>", SEG_ASSISTANT, 1},
};

static const Piece llama3_pieces[] = {
    {"<|begin_of_text|><|start_header_id|>system<|end_header_id|>\n\nYou are a helpful agent.\n\n", SEG_SYSTEM, 0},
    {"When stuck, search.", SEG_EXPERIENCE, 0},
    {"<|eot_id|>", SEG_SYSTEM, 0},
    {"<|start_header_id|>user<|end_header_id|>\n\nWhat is the capital of France?<|eot_id|>", SEG_USER, 0},
    {"<|start_header_id|>assistant<|end_header_id|>\n\n", SEG_ASSISTANT, 0},
    {"Let me search.\n", SEG_ASSISTANT, 1},
    {NULL, SEG_ASSISTANT, 1},
    {"<|eot_id|>", SEG_ASSISTANT, 1},
    {"<|start_header_id|>ipython<|end_header_id|>\n\nParis is the capital of France.<|eot_id|>", SEG_TOOL, 0},
    {"<|start_header_id|>assistant<|end_header_id|>\n\n", SEG_ASSISTANT, 0},
    {"Paris.<|eot_id|>", SEG_ASSISTANT, 1},
};

static const char* piece_text(const Piece* p, int strip_exp_tags) {
    static char buf[256];
    if (!p->s) return call_text;
    if (strip_exp_tags && p->seg == SEG_EXPERIENCE && strncmp(p->s, "<experience>", 12) == 0) {
        size_t n = strlen(p->s) - strlen("<experience>") - strlen("</experience>");
        memcpy(buf, p->s + 12, n);
        buf[n] = '\0';
        return buf;
    }
    return p->s;
}

// concatenation of the pieces, or of those matching (seg, agent) where those are >= 0
static char* expected_text(const Piece* ps, int n, int strip_exp_tags, int seg, int agent) {
    char* out = calloc(4096, 1);
    for (int i = 0; i < n; i++)
        if ((seg < 0 || ps[i].seg == seg) && (agent < 0 || ps[i].agent == agent))
            strcat(out, piece_text(&ps[i], strip_exp_tags));
    return out;
}

static void render_all(ChatRender* r, const Tokenizer* tok, ChatFormat fmt) {
    char err[256];
    if (chat_init(r, tok, fmt, err, sizeof(err)) != 0) fail_msg("%s", err);
    for (int i = 0; i < N_MSG; i++)
        if (chat_append(r, &convo[i], err, sizeof(err)) != 0) fail_msg("%s", err);
}

// decodes the tokens whose (seg, agent) match (-1: any)
static char* decode_where(const ChatRender* r, int seg, int agent) {
    int* ids = malloc((size_t)r->n * sizeof(int) + 1);
    int n = 0;
    for (int i = 0; i < r->n; i++)
        if ((seg < 0 || r->seg[i] == seg) && (agent < 0 || r->agent[i] == agent)) ids[n++] = r->ids[i];
    char* s = tokenizer_decode_alloc(r->tok, ids, n, NULL);
    free(ids);
    return s;
}

// the rendering decodes to the template text, each segment/agent class decodes to its pieces,
// and (for HF tokenizers) the ids equal the encoding of the whole text with specials allowed
static void check_render(const ChatRender* r, const Piece* ps, int n, int strip_exp_tags, int same_as_full_encode) {
    char* want = expected_text(ps, n, strip_exp_tags, -1, -1);
    char* got = decode_where(r, -1, -1);
    assert_string_equal(got, want);
    free(got);
    for (int seg = 0; seg < SEG_COUNT; seg++) {
        for (int agent = 0; agent <= 1; agent++) {
            char* w = expected_text(ps, n, strip_exp_tags, seg, agent);
            char* g = decode_where(r, seg, agent);
            if (strcmp(w, g) != 0)
                fail_msg("segment %s agent %d: got \"%s\", want \"%s\"", chat_segment_name(seg), agent, g, w);
            free(w);
            free(g);
        }
    }
    if (same_as_full_encode) {
        TokenBuf b = {0};
        tokenizer_encode(r->tok, want, strlen(want), 1, &b);
        assert_int_equal(b.n, r->n);
        assert_memory_equal(b.ids, r->ids, (size_t)b.n * sizeof(int));
        tokenbuf_free(&b);
    }
    free(want);
}

// ----------------------------------------------------------------------------
// rendering

static void test_chatml_byte_tokenizer(void** state) {
    (void)state;
    Tokenizer* tok = tokenizer_byte();
    ChatRender r;
    render_all(&r, tok, CHAT_CHATML);
    check_render(&r, chatml_pieces, (int)(sizeof(chatml_pieces) / sizeof(Piece)), 0, 0);
    // byte tokenizer: every text byte is one token, so the tags can be checked token by token
    int k = 0;
    for (size_t i = 0; i < sizeof(chatml_pieces) / sizeof(Piece); i++) {
        const Piece* p = &chatml_pieces[i];
        TokenBuf b = {0};
        const char* s = piece_text(p, 0);
        tokenizer_encode(tok, s, strlen(s), 1, &b);
        for (int j = 0; j < b.n; j++, k++) {
            assert_true(k < r.n);
            assert_int_equal(r.ids[k], b.ids[j]);
            assert_int_equal(r.seg[k], p->seg);
            assert_int_equal(r.agent[k], p->agent);
        }
        tokenbuf_free(&b);
    }
    assert_int_equal(k, r.n);
    assert_int_equal(r.ids[0], BYTE_TOKEN_IM_START);
    assert_int_equal(chat_end_id(&r), BYTE_TOKEN_IM_END);
    assert_int_equal(r.n_messages, N_MSG);
    chat_free(&r);
    tokenizer_free(tok);
}

// a tool message's leading experience part goes before <tool_response>, a trailing one inside it
static void test_tool_message_experience(void** state) {
    (void)state;
    Tokenizer* tok = tokenizer_byte();
    char err[256];
    ChatRender r;
    if (chat_init(&r, tok, CHAT_CHATML, err, sizeof(err)) != 0) fail_msg("%s", err);
    const ChatPart lead[2] = {{"Note.\n\n", SEG_EXPERIENCE}, {"Out.", SEG_TOOL}};
    const ChatPart trail[2] = {{"Out.", SEG_TOOL}, {" Note.", SEG_EXPERIENCE}};
    const ChatMessage ms[2] = {{CHAT_TOOL, lead, 2, NULL, 0}, {CHAT_TOOL, trail, 2, NULL, 0}};
    for (int i = 0; i < 2; i++)
        if (chat_append(&r, &ms[i], err, sizeof(err)) != 0) fail_msg("%s", err);
    char* got = decode_where(&r, -1, -1);
    assert_string_equal(got, "<|im_start|>user\n<experience>Note.\n\n</experience><tool_response>\nOut.\n"
                             "</tool_response><|im_end|>\n<|im_start|>user\n<tool_response>\nOut.<experience> Note."
                             "</experience>\n</tool_response><|im_end|>");
    free(got);
    char* exp = decode_where(&r, SEG_EXPERIENCE, -1);
    assert_string_equal(exp, "<experience>Note.\n\n</experience><experience> Note.</experience>");
    free(exp);
    chat_free(&r);
    tokenizer_free(tok);
}

static void test_chatml_qwen3(void** state) {
    (void)state;
    char err[512];
    Tokenizer* tok = tokenizer_load_hf(QWEN3, err, sizeof(err));
    if (!tok) fail_msg("%s", err);
    ChatRender r;
    render_all(&r, tok, CHAT_CHATML);
    check_render(&r, chatml_pieces, (int)(sizeof(chatml_pieces) / sizeof(Piece)), 1, 1);
    assert_int_equal(chat_end_id(&r), tokenizer_special_id(tok, "<|im_end|>"));
    // <tool_call> and <tool_response> are single tokens of Qwen3, emitted by id
    int calls = 0, resps = 0;
    for (int i = 0; i < r.n; i++) {
        calls += r.ids[i] == tokenizer_special_id(tok, "<tool_call>");
        resps += r.ids[i] == tokenizer_special_id(tok, "<tool_response>");
    }
    assert_int_equal(calls, 1);
    assert_int_equal(resps, 1);
    chat_free(&r);
    tokenizer_free(tok);
}

static void test_llama3_format(void** state) {
    (void)state;
    char err[512];
    Tokenizer* tok = tokenizer_load_hf(LLAMA3, err, sizeof(err));
    if (!tok) fail_msg("%s", err);
    ChatRender r;
    render_all(&r, tok, CHAT_LLAMA3);
    check_render(&r, llama3_pieces, (int)(sizeof(llama3_pieces) / sizeof(Piece)), 1, 1);
    assert_int_equal(r.ids[0], 128000);
    assert_int_equal(chat_end_id(&r), 128009);
    chat_free(&r);
    tokenizer_free(tok);
}

// the agent loop: render the prompt, append a generation prompt, then the sampled ids; the result
// must equal rendering the whole conversation, and every prefix render must be a prefix of it
static void check_incremental(const Tokenizer* tok, ChatFormat fmt) {
    char err[256];
    ChatRender full, inc;
    render_all(&full, tok, fmt);
    assert_int_equal(chat_init(&inc, tok, fmt, err, sizeof(err)), 0);
    for (int i = 0; i < N_MSG; i++) {
        if (convo[i].role != CHAT_ASSISTANT) {
            assert_int_equal(chat_append(&inc, &convo[i], err, sizeof(err)), 0);
            continue;
        }
        assert_int_equal(chat_append_generation_prompt(&inc, err, sizeof(err)), 0);
        // "sample": the assistant's tokens as the model would emit them (text + end token; the
        // model emits <tool_call> as one token where the vocabulary has it)
        char text[512] = "";
        strcat(text, convo[i].parts[0].text);
        if (convo[i].n_tool_calls) strcat(strcat(text, "\n"), call_text);
        TokenBuf b = {0};
        tokenizer_encode(tok, text, strlen(text), 1, &b);
        tokenbuf_push(&b, chat_end_id(&inc));
        assert_int_equal(chat_append_generated(&inc, b.ids, b.n, err, sizeof(err)), 0);
        tokenbuf_free(&b);
    }
    assert_int_equal(inc.n, full.n);
    assert_memory_equal(inc.ids, full.ids, (size_t)full.n * sizeof(int));
    assert_memory_equal(inc.seg, full.seg, (size_t)full.n);
    assert_memory_equal(inc.agent, full.agent, (size_t)full.n);
    assert_int_equal(inc.n_messages, full.n_messages);
    for (int k = 0; k <= N_MSG; k++) { // a fresh render of the first k messages, then the rest
        ChatRender p;
        assert_int_equal(chat_init(&p, tok, fmt, err, sizeof(err)), 0);
        for (int i = 0; i < k; i++) assert_int_equal(chat_append(&p, &convo[i], err, sizeof(err)), 0);
        assert_true(p.n <= full.n);
        assert_memory_equal(p.ids, full.ids, (size_t)p.n * sizeof(int));
        for (int i = k; i < N_MSG; i++) assert_int_equal(chat_append(&p, &convo[i], err, sizeof(err)), 0);
        assert_int_equal(p.n, full.n);
        assert_memory_equal(p.ids, full.ids, (size_t)p.n * sizeof(int));
        chat_free(&p);
    }
    chat_free(&inc);
    chat_free(&full);
}

static void test_incremental_equals_full(void** state) {
    (void)state;
    char err[512];
    Tokenizer* byte = tokenizer_byte();
    check_incremental(byte, CHAT_CHATML);
    tokenizer_free(byte);
    Tokenizer* qwen = tokenizer_load_hf(QWEN3, err, sizeof(err));
    if (!qwen) fail_msg("%s", err);
    check_incremental(qwen, CHAT_CHATML);
    tokenizer_free(qwen);
    Tokenizer* llama = tokenizer_load_hf(LLAMA3, err, sizeof(err));
    if (!llama) fail_msg("%s", err);
    check_incremental(llama, CHAT_LLAMA3);
    tokenizer_free(llama);
}

static void test_generation_and_errors(void** state) {
    (void)state;
    char err[256];
    Tokenizer* tok = tokenizer_byte();
    ChatRender r;
    assert_int_equal(chat_init(&r, tok, CHAT_CHATML, err, sizeof(err)), 0);
    assert_int_equal(chat_append(&r, &convo[1], err, sizeof(err)), 0);
    assert_int_equal(chat_append_generation_prompt(&r, err, sizeof(err)), 0);
    char* s = tokenizer_decode_alloc(tok, r.ids, r.n, NULL);
    assert_string_equal(s, "<|im_start|>user\nWhat is the capital of France?<|im_end|>\n<|im_start|>assistant\n");
    free(s);
    assert_int_equal(chat_append(&r, &convo[1], err, sizeof(err)), -1); // the generated turn comes first
    assert_non_null(strstr(err, "generation prompt is open"));
    assert_int_equal(chat_append_generation_prompt(&r, err, sizeof(err)), -1);
    // a truncated generation (no end token) is closed with an end token the model did not emit
    int n0 = r.n, ids[] = {'o', 'k'};
    assert_int_equal(chat_append_generated(&r, ids, 2, err, sizeof(err)), 0);
    assert_int_equal(r.n, n0 + 3);
    assert_int_equal(r.ids[n0 + 2], BYTE_TOKEN_IM_END);
    assert_int_equal(r.agent[n0 + 1], 1);
    assert_int_equal(r.agent[n0 + 2], 0);
    assert_int_equal(chat_append_generated(&r, ids, 2, err, sizeof(err)), -1);
    assert_non_null(strstr(err, "no generation prompt"));
    // tool calls belong to assistant messages; a tool call needs a name
    ChatMessage bad = {CHAT_USER, user_parts, 1, a1_calls, 1};
    assert_int_equal(chat_append(&r, &bad, err, sizeof(err)), -1);
    assert_non_null(strstr(err, "only assistant messages carry tool calls"));
    ChatToolCall noname = {"", "{}"};
    ChatMessage bad2 = {CHAT_ASSISTANT, a1_parts, 1, &noname, 1};
    int before = r.n;
    assert_int_equal(chat_append(&r, &bad2, err, sizeof(err)), -1);
    assert_non_null(strstr(err, "has no name"));
    assert_int_equal(r.n, before);
    // user text cannot inject special tokens
    ChatPart inj = {"<|im_end|>", SEG_USER};
    ChatMessage m = {CHAT_USER, &inj, 1, NULL, 0};
    chat_reset(&r);
    assert_int_equal(chat_append(&r, &m, err, sizeof(err)), 0);
    int specials = 0;
    for (int i = 0; i < r.n; i++) specials += r.ids[i] >= 256;
    assert_int_equal(specials, 2); // <|im_start|> and the closing <|im_end|> only
    chat_free(&r);
    // Llama-3 needs header tokens the byte tokenizer does not have
    assert_int_equal(chat_init(&r, tok, CHAT_LLAMA3, err, sizeof(err)), -1);
    assert_non_null(strstr(err, "<|start_header_id|>"));
    ChatFormat f;
    assert_int_equal(chat_format_parse("llama3", &f), 0);
    assert_int_equal(f, CHAT_LLAMA3);
    assert_int_equal(chat_format_parse("chatml", &f), 0);
    assert_int_equal(f, CHAT_CHATML);
    assert_int_equal(chat_format_parse("jinja", &f), -1);
    tokenizer_free(tok);
}

// ----------------------------------------------------------------------------
// tool-call parser

static void expect_call(const char* text, const char* name, const char* args) {
    char *n, *a, err[256];
    int rc = chat_parse_tool_call(text, &n, &a, err, sizeof(err));
    if (rc != 1) fail_msg("parse \"%s\": rc %d: %s", text, rc, err);
    assert_string_equal(n, name);
    assert_string_equal(a, args);
    free(n);
    free(a);
}

static void expect_bad_call(const char* text, const char* want) {
    char *n, *a, err[256] = "";
    int rc = chat_parse_tool_call(text, &n, &a, err, sizeof(err));
    if (rc != -1 || !strstr(err, want)) fail_msg("parse \"%s\": rc %d, err '%s', want '%s'", text, rc, err, want);
    assert_null(n);
    assert_null(a);
}

static void test_parse_tool_call(void** state) {
    (void)state;
    expect_call("Let me search.\n<tool_call>\n{\"name\": \"search\", \"arguments\": {\"query\": \"capital\"}}\n"
                "</tool_call>",
                "search", "{\"query\":\"capital\"}");
    expect_call("<tool_call>{\"name\": \"finish\"}</tool_call>", "finish", "{}");
    expect_call("<tool_call> {\"arguments\": {\"b\": [1, 2], \"a\": null}, \"name\": \"f\"} </tool_call>", "f",
                "{\"b\":[1,2],\"a\":null}"); // key order kept
    expect_call("<tool_call>{\"name\": \"f\", \"arguments\": \"{\\\"q\\\": 1}\"}</tool_call>", "f", "{\"q\":1}");
    expect_call("<tool_call>{\"name\": \"first\"}</tool_call> then <tool_call>{\"name\": \"second\"}</tool_call>",
                "first", "{}");
    char *n, *a, err[64];
    assert_int_equal(chat_parse_tool_call("The answer is Paris.", &n, &a, err, sizeof(err)), 0);
    assert_null(n);

    expect_bad_call("<tool_call>\n{\"name\": \"search\"}\n", "missing </tool_call> after <tool_call>");
    expect_bad_call("<tool_call>{\"name\": \"a\"}<tool_call>{\"name\": \"b\"}</tool_call>",
                    "before the next <tool_call>");
    expect_bad_call("<tool_call>\n{\"name\": \"search\", \"arguments\": {\"query\": }}\n</tool_call>",
                    "invalid JSON at line 1, column");
    expect_bad_call("<tool_call>{\"name\": \"a\"} extra</tool_call>", "invalid JSON");
    expect_bad_call("<tool_call>{\"arguments\": {}}</tool_call>", "missing \"name\"");
    expect_bad_call("<tool_call>{\"name\": \"\"}</tool_call>", "missing \"name\"");
    expect_bad_call("<tool_call>{\"name\": 3}</tool_call>", "missing \"name\"");
    expect_bad_call("<tool_call>{\"name\": \"f\", \"arguments\": [1]}</tool_call>",
                    "\"arguments\" must be a JSON object");
    expect_bad_call("<tool_call>{\"name\": \"f\", \"arguments\": \"nope\"}</tool_call>", "does not hold a JSON object");
    expect_bad_call("<tool_call>[\"search\"]</tool_call>", "expected a JSON object");
    expect_bad_call("<tool_call>\n \n</tool_call>", "empty");
}

// what the renderer writes, the parser reads back
static void test_render_then_parse(void** state) {
    (void)state;
    char err[256];
    Tokenizer* tok = tokenizer_byte();
    ChatRender r;
    assert_int_equal(chat_init(&r, tok, CHAT_CHATML, err, sizeof(err)), 0);
    assert_int_equal(chat_append(&r, &convo[2], err, sizeof(err)), 0);
    char* text = decode_where(&r, SEG_ASSISTANT, 1);
    char *n, *a;
    assert_int_equal(chat_parse_tool_call(text, &n, &a, err, sizeof(err)), 1);
    assert_string_equal(n, "search");
    assert_string_equal(a, "{\"query\":\"capital of France\"}");
    free(n);
    free(a);
    free(text);
    chat_free(&r);
    tokenizer_free(tok);
}

// ----------------------------------------------------------------------------
// message content: what the environment wrote, without the format's markup

// a copy of s through chat_message_content
static void assert_content(const char* s, const char* want) {
    char* t = strdup(s);
    chat_message_content(t);
    if (strcmp(t, want) != 0) fail_msg("content of \"%s\": got \"%s\", want \"%s\"", s, t, want);
    free(t);
}

// the decoded segment of a rendered message, with its specials or without them
static char* decode_segment(const ChatRender* r, int seg, int with_specials) {
    int* ids = malloc((size_t)r->n * sizeof(int) + 1);
    int n = 0;
    for (int i = 0; i < r->n; i++)
        if (r->seg[i] == seg && (with_specials || !tokenizer_is_special(r->tok, r->ids[i]))) ids[n++] = r->ids[i];
    char* s = tokenizer_decode_alloc(r->tok, ids, n, NULL);
    free(ids);
    return s;
}

static void test_message_content(void** state) {
    (void)state;
    char err[512];
    Tokenizer* toks[3] = {tokenizer_byte(), tokenizer_load_hf(QWEN3, err, sizeof(err)),
                          tokenizer_load_hf(LLAMA3, err, sizeof(err))};
    const ChatFormat fmts[3] = {CHAT_CHATML, CHAT_CHATML, CHAT_LLAMA3};
    for (int k = 0; k < 3; k++) {
        if (!toks[k]) fail_msg("%s", err);
        ChatRender r;
        render_all(&r, toks[k], fmts[k]);
        for (int specials = 0; specials <= 1; specials++) {
            char* user = decode_segment(&r, SEG_USER, specials);
            char* tool = decode_segment(&r, SEG_TOOL, specials);
            if (strcmp(chat_message_content(user), "What is the capital of France?") != 0 ||
                strcmp(chat_message_content(tool), "Paris is the capital of France.") != 0)
                fail_msg("format %d specials %d: \"%s\", \"%s\"", k, specials, user, tool);
            free(user);
            free(tool);
        }
        chat_free(&r);
        tokenizer_free(toks[k]);
    }
    // the wrapper alone: where step-wise items sit between the header and it
    assert_content("<tool_response>\nResults: 1. Nile\n</tool_response><|im_end|>", "Results: 1. Nile");
    // a first word that is a role is content unless a newline ends the header
    assert_content("user name: x", "user name: x");
    assert_content("\n<|im_start|>user\nuser\nx<|im_end|>", "user\nx");
    assert_content("", "");
    assert_content("</tool_response>", "</tool_response>"); // no opening: not a wrapper
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_chatml_byte_tokenizer), cmocka_unit_test(test_chatml_qwen3),
        cmocka_unit_test(test_llama3_format),         cmocka_unit_test(test_incremental_equals_full),
        cmocka_unit_test(test_generation_and_errors), cmocka_unit_test(test_parse_tool_call),
        cmocka_unit_test(test_render_then_parse),
        cmocka_unit_test(test_tool_message_experience), cmocka_unit_test(test_message_content),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
