// Chat templates (ChatML, Llama-3) rendered to ids with segment tags and agent mask, and the
// tool-call parser. See chat.h for the rendered text and the tokenization rules.
#include "model/chat.h"

#include <jansson.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/check.h"

__attribute__((format(printf, 3, 4))) static int fail(char* err, size_t errlen, const char* fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(err, errlen, fmt, ap);
    va_end(ap);
    return -1;
}

// ----------------------------------------------------------------------------
// names

Segment chat_role_segment(ChatRole role) {
    switch (role) {
    case CHAT_SYSTEM: return SEG_SYSTEM;
    case CHAT_USER: return SEG_USER;
    case CHAT_TOOL: return SEG_TOOL;
    default: return SEG_ASSISTANT;
    }
}

const char* chat_segment_name(Segment seg) {
    static const char* const names[SEG_COUNT] = {"system", "experience", "user", "tool", "assistant"};
    return seg >= 0 && seg < SEG_COUNT ? names[seg] : "?";
}

int chat_format_parse(const char* name, ChatFormat* out) {
    if (strcmp(name, "chatml") == 0) *out = CHAT_CHATML;
    else if (strcmp(name, "llama3") == 0) *out = CHAT_LLAMA3;
    else return -1;
    return 0;
}

const char* chat_format_name(ChatFormat fmt) { return fmt == CHAT_LLAMA3 ? "llama3" : "chatml"; }

// ----------------------------------------------------------------------------
// init

static int need_id(const Tokenizer* tok, const char* content, ChatFormat fmt, int* id, char* err, size_t errlen) {
    *id = tokenizer_special_id(tok, content);
    if (*id < 0)
        return fail(err, errlen, "the tokenizer has no %s token, which the %s chat format needs", content,
                    chat_format_name(fmt));
    return 0;
}

int chat_init(ChatRender* r, const Tokenizer* tok, ChatFormat fmt, char* err, size_t errlen) {
    memset(r, 0, sizeof(*r));
    r->tok = tok;
    r->fmt = fmt;
    r->id_bos = r->id_header_end = -1;
    if (fmt == CHAT_CHATML) {
        if (need_id(tok, "<|im_start|>", fmt, &r->id_start, err, errlen) < 0 ||
            need_id(tok, "<|im_end|>", fmt, &r->id_end, err, errlen) < 0)
            return -1;
    } else {
        if (need_id(tok, "<|begin_of_text|>", fmt, &r->id_bos, err, errlen) < 0 ||
            need_id(tok, "<|start_header_id|>", fmt, &r->id_start, err, errlen) < 0 ||
            need_id(tok, "<|end_header_id|>", fmt, &r->id_header_end, err, errlen) < 0 ||
            need_id(tok, "<|eot_id|>", fmt, &r->id_end, err, errlen) < 0)
            return -1;
    }
    r->id_exp = tokenizer_special_id(tok, "<experience>");
    r->id_exp_end = tokenizer_special_id(tok, "</experience>");
    if (r->id_exp < 0 || r->id_exp_end < 0) r->id_exp = r->id_exp_end = -1;
    return 0;
}

void chat_free(ChatRender* r) {
    free(r->ids);
    free(r->seg);
    free(r->agent);
    free(r->pend);
    memset(r, 0, sizeof(*r));
}

void chat_reset(ChatRender* r) {
    r->n = r->n_messages = r->gen_open = 0;
    r->pend_n = 0;
}

int chat_end_id(const ChatRender* r) { return r->id_end; }

// ----------------------------------------------------------------------------
// emitting tokens and text

static void push_id(ChatRender* r, int id, int seg, int agent) {
    if (r->n == r->cap) {
        r->cap = r->cap ? 2 * r->cap : 256;
        r->ids = reallocCheck(r->ids, (size_t)r->cap * sizeof(int));
        r->seg = reallocCheck(r->seg, (size_t)r->cap);
        r->agent = reallocCheck(r->agent, (size_t)r->cap);
    }
    r->ids[r->n] = id;
    r->seg[r->n] = (uint8_t)seg;
    r->agent[r->n] = (uint8_t)agent;
    r->n++;
}

// tokenizes the pending text run
static void flush(ChatRender* r) {
    if (r->pend_n == 0) return;
    TokenBuf tb = {0};
    tokenizer_encode(r->tok, r->pend, r->pend_n, 0, &tb);
    for (int i = 0; i < tb.n; i++) push_id(r, tb.ids[i], r->pend_seg, r->pend_agent);
    tokenbuf_free(&tb);
    r->pend_n = 0;
}

// queues text; a change of (segment, agent) is a token boundary
static void text(ChatRender* r, const char* s, size_t len, int seg, int agent) {
    if (len == 0) return;
    if (r->pend_n > 0 && (seg != r->pend_seg || agent != r->pend_agent)) flush(r);
    if (r->pend_n + len > r->pend_cap) {
        r->pend_cap = 2 * (r->pend_n + len);
        r->pend = reallocCheck(r->pend, r->pend_cap);
    }
    memcpy(r->pend + r->pend_n, s, len);
    r->pend_n += len;
    r->pend_seg = seg;
    r->pend_agent = agent;
}

static void textz(ChatRender* r, const char* s, int seg, int agent) { text(r, s, strlen(s), seg, agent); }

static void special(ChatRender* r, int id, int seg, int agent) {
    flush(r);
    push_id(r, id, seg, agent);
}

// template markup: by id when the tokenizer has the token, else as text
static void markup(ChatRender* r, const char* s, int seg, int agent) {
    int id = tokenizer_special_id(r->tok, s);
    if (id >= 0) special(r, id, seg, agent);
    else textz(r, s, seg, agent);
}

// parts [from, to) of m
static void parts_range(ChatRender* r, const ChatMessage* m, int from, int to, int agent) {
    for (int i = from; i < to; i++) {
        const ChatPart* p = &m->parts[i];
        if (!p->text || !p->text[0]) continue;
        int wrap = p->seg == SEG_EXPERIENCE && r->id_exp >= 0;
        if (wrap) special(r, r->id_exp, SEG_EXPERIENCE, agent);
        textz(r, p->text, p->seg, agent);
        if (wrap) special(r, r->id_exp_end, SEG_EXPERIENCE, agent);
    }
}

static void parts(ChatRender* r, const ChatMessage* m, int agent) { parts_range(r, m, 0, m->n_parts, agent); }

static int has_text(const ChatMessage* m) {
    for (int i = 0; i < m->n_parts; i++)
        if (m->parts[i].text && m->parts[i].text[0]) return 1;
    return 0;
}

// the opening of a turn: ChatML "\n<|im_start|>role\n" ("\n" only between turns), Llama-3
// "[<|begin_of_text|>]<|start_header_id|>role<|end_header_id|>\n\n"
static void header(ChatRender* r, const char* role, int seg) {
    if (r->fmt == CHAT_CHATML) {
        if (r->n > 0) textz(r, "\n", seg, 0);
        special(r, r->id_start, seg, 0);
        textz(r, role, seg, 0);
        textz(r, "\n", seg, 0);
    } else {
        if (r->n == 0) special(r, r->id_bos, seg, 0);
        special(r, r->id_start, seg, 0);
        textz(r, role, seg, 0);
        special(r, r->id_header_end, seg, 0);
        textz(r, "\n\n", seg, 0);
    }
}

// ----------------------------------------------------------------------------
// messages

static int tool_calls(ChatRender* r, const ChatMessage* m, char* err, size_t errlen) {
    for (int i = 0; i < m->n_tool_calls; i++) {
        const ChatToolCall* c = &m->tool_calls[i];
        if (!c->name || !c->name[0]) return fail(err, errlen, "tool call %d has no name", i);
        json_t* js = json_string(c->name);
        if (!js) return fail(err, errlen, "tool call %d: name is not valid UTF-8", i);
        char* quoted = json_dumps(js, JSON_ENCODE_ANY);
        json_decref(js);
        if (!quoted) return fail(err, errlen, "tool call %d: json_dumps failed (out of memory)", i);
        if (i > 0 || has_text(m)) textz(r, "\n", SEG_ASSISTANT, 1);
        markup(r, "<tool_call>", SEG_ASSISTANT, 1);
        textz(r, "\n{\"name\": ", SEG_ASSISTANT, 1);
        textz(r, quoted, SEG_ASSISTANT, 1);
        textz(r, ", \"arguments\": ", SEG_ASSISTANT, 1);
        textz(r, c->arguments ? c->arguments : "{}", SEG_ASSISTANT, 1);
        textz(r, "}\n", SEG_ASSISTANT, 1);
        markup(r, "</tool_call>", SEG_ASSISTANT, 1);
        free(quoted);
    }
    return 0;
}

int chat_append(ChatRender* r, const ChatMessage* m, char* err, size_t errlen) {
    if (r->gen_open) return fail(err, errlen, "a generation prompt is open: append the generated ids first");
    if (m->n_tool_calls > 0 && m->role != CHAT_ASSISTANT)
        return fail(err, errlen, "only assistant messages carry tool calls (got %d on a %s message)", m->n_tool_calls,
                    chat_segment_name(chat_role_segment(m->role)));
    int n0 = r->n;
    switch (m->role) {
    case CHAT_SYSTEM:
    case CHAT_USER: {
        int seg = chat_role_segment(m->role);
        header(r, m->role == CHAT_SYSTEM ? "system" : "user", seg);
        parts(r, m, 0);
        special(r, r->id_end, seg, 0);
        break;
    }
    case CHAT_ASSISTANT:
        header(r, "assistant", SEG_ASSISTANT);
        parts(r, m, 1);
        if (tool_calls(r, m, err, errlen) < 0) {
            r->n = n0; // leave the render as it was
            r->pend_n = 0;
            return -1;
        }
        special(r, r->id_end, SEG_ASSISTANT, 1);
        break;
    case CHAT_TOOL:
        if (r->fmt == CHAT_CHATML) {
            // leading experience parts are a note beside the tool's output, not part of it
            int lead = 0;
            while (lead < m->n_parts && m->parts[lead].seg == SEG_EXPERIENCE) lead++;
            header(r, "user", SEG_TOOL);
            parts_range(r, m, 0, lead, 0);
            markup(r, "<tool_response>", SEG_TOOL, 0);
            textz(r, "\n", SEG_TOOL, 0);
            parts_range(r, m, lead, m->n_parts, 0);
            textz(r, "\n", SEG_TOOL, 0);
            markup(r, "</tool_response>", SEG_TOOL, 0);
        } else {
            header(r, "ipython", SEG_TOOL);
            parts(r, m, 0);
        }
        special(r, r->id_end, SEG_TOOL, 0);
        break;
    default: return fail(err, errlen, "unknown message role %d", (int)m->role);
    }
    r->n_messages++;
    return 0;
}

int chat_append_generation_prompt(ChatRender* r, char* err, size_t errlen) {
    if (r->gen_open) return fail(err, errlen, "a generation prompt is already open");
    header(r, "assistant", SEG_ASSISTANT);
    flush(r);
    r->gen_open = 1;
    return 0;
}

int chat_append_generated(ChatRender* r, const int* ids, int n, char* err, size_t errlen) {
    if (!r->gen_open) return fail(err, errlen, "no generation prompt is open");
    for (int i = 0; i < n; i++) push_id(r, ids[i], SEG_ASSISTANT, 1);
    if (n == 0 || ids[n - 1] != r->id_end) push_id(r, r->id_end, SEG_ASSISTANT, 0);
    r->gen_open = 0;
    r->n_messages++;
    return 0;
}

// ----------------------------------------------------------------------------
// message text

// s past prefix, or NULL
static char* skip(char* s, const char* prefix) {
    size_t n = strlen(prefix);
    return strncmp(s, prefix, n) == 0 ? s + n : NULL;
}

// 1 if s (of *len bytes) ends with suffix, which is then cut off
static int cut(char* s, size_t* len, const char* suffix) {
    size_t n = strlen(suffix);
    if (*len < n || strcmp(s + *len - n, suffix) != 0) return 0;
    *len -= n;
    s[*len] = '\0';
    return 1;
}

char* chat_message_content(char* text) {
    static const char* const openers[] = {"<|im_start|>", "<|begin_of_text|>", "<|start_header_id|>", NULL};
    static const char* const roles[] = {"system", "user", "assistant", "ipython", "tool", NULL};
    char* t = text;
    while (*t == '\n') t++;
    for (int i = 0; openers[i]; i++) {
        char* q = skip(t, openers[i]);
        if (q) t = q;
    }
    for (int r = 0; roles[r]; r++) {
        char* q = skip(t, roles[r]);
        if (!q) continue;
        char* h = skip(q, "<|end_header_id|>");
        if (h) q = h;
        if (*q != '\n') continue; // a word that begins the content, not a header
        for (t = q; *t == '\n';) t++;
        break;
    }
    char* w = skip(t, "<tool_response>");
    if (w) t = w + (*w == '\n');
    size_t len = strlen(t);
    while (cut(t, &len, "<|im_end|>") || cut(t, &len, "<|eot_id|>") || cut(t, &len, "\n")) {
    }
    if (w && cut(t, &len, "</tool_response>")) cut(t, &len, "\n");
    memmove(text, t, len + 1);
    return text;
}

// ----------------------------------------------------------------------------
// tool-call parser

static int is_ws(char c) { return c == ' ' || c == '\t' || c == '\r' || c == '\n'; }

int chat_parse_tool_call(const char* text, char** name, char** args_json, char* err, size_t errlen) {
    static const char open_tag[] = "<tool_call>", close_tag[] = "</tool_call>";
    *name = *args_json = NULL;
    const char* open = strstr(text, open_tag);
    if (!open) return 0;
    const char* body = open + strlen(open_tag);
    const char* close = strstr(body, close_tag);
    const char* next_open = strstr(body, open_tag);
    if (!close) return fail(err, errlen, "tool call: missing </tool_call> after <tool_call>");
    if (next_open && next_open < close)
        return fail(err, errlen, "tool call: missing </tool_call> before the next <tool_call>");
    while (body < close && is_ws(*body)) body++;
    const char* end = close;
    while (end > body && is_ws(end[-1])) end--;
    if (end == body)
        return fail(err, errlen,
                    "tool call: empty; expected {\"name\": ..., \"arguments\": {...}} between <tool_call> and "
                    "</tool_call>");
    json_error_t je;
    json_t* obj = json_loadb(body, (size_t)(end - body), 0, &je);
    if (!obj)
        return fail(err, errlen, "tool call: invalid JSON at line %d, column %d: %s", je.line, je.column, je.text);
    int rc = -1;
    json_t* args = NULL;
    const json_t* jname = json_object_get(obj, "name");
    const json_t* jargs = json_object_get(obj, "arguments");
    if (!json_is_object(obj)) {
        fail(err, errlen, "tool call: expected a JSON object {\"name\": ..., \"arguments\": {...}}");
    } else if (!json_is_string(jname) || json_string_length(jname) == 0) {
        fail(err, errlen, "tool call: missing \"name\" (a non-empty string naming the tool)");
    } else if (jargs && !json_is_null(jargs) && !json_is_object(jargs) && !json_is_string(jargs)) {
        fail(err, errlen, "tool call: \"arguments\" must be a JSON object");
    } else {
        if (json_is_string(jargs)) { // arguments as JSON text, as some models write them
            args = json_loads(json_string_value(jargs), 0, &je);
            if (!json_is_object(args)) {
                fail(err, errlen, "tool call: \"arguments\" is a string that does not hold a JSON object");
                json_decref(args);
                json_decref(obj);
                return -1;
            }
        } else {
            args = json_is_object(jargs) ? json_incref((json_t*)jargs) : json_object();
        }
        char* dumped = json_dumps(args, JSON_COMPACT | JSON_PRESERVE_ORDER);
        if (!dumped) {
            fail(err, errlen, "tool call: json_dumps failed (out of memory)");
        } else {
            *name = strdupCheck(json_string_value(jname));
            *args_json = strdupCheck(dumped);
            free(dumped);
            rc = 1;
        }
        json_decref(args);
    }
    json_decref(obj);
    return rc;
}
