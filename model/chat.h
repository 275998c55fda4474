// Chat templates in C (no Jinja): ChatML (Qwen2/Qwen3) and Llama-3, rendered straight to token
// ids with a segment tag and an agent mask per token, and the parser of Qwen-style tool calls.
//
// Rendering is incremental and append-only: a conversation is rendered by appending its messages
// one at a time, so appending one message to a rendered prefix gives exactly the tokens of
// rendering the whole conversation, and the agent loop (token-in/token-out) never re-tokenizes:
//
//   ChatRender r;  chat_init(&r, tok, CHAT_CHATML, err, sizeof(err));
//   chat_append(&r, &system_msg, ...);  chat_append(&r, &user_msg, ...);
//   chat_append_generation_prompt(&r, ...);          // "<|im_start|>assistant\n"
//   ... sample ids until chat_end_id(&r) ...
//   chat_append_generated(&r, ids, n, ...);          // the sampled ids, as they are
//   chat_append(&r, &tool_msg, ...);  ...
//
// ChatML renders (one line per message; "\n" separates messages, so a rendered conversation
// ends with the closing token of its last message, ready for the next one):
//   <|im_start|>system\n{text}<|im_end|>
//   <|im_start|>user\n{text}<|im_end|>
//   <|im_start|>assistant\n{text}[\n]<tool_call>\n{"name": "search", "arguments": {...}}\n</tool_call><|im_end|>
//   <|im_start|>user\n<tool_response>\n{text}\n</tool_response><|im_end|>           (role tool)
// Llama-3 renders <|begin_of_text|> once, then per message
//   <|start_header_id|>{system|user|assistant|ipython}<|end_header_id|>\n\n{text}<|eot_id|>
// with tool calls in the same Qwen text form and tool responses as the ipython role.
// Differences from the HF Jinja templates, all for append-only rendering: each tool response is
// its own turn (Qwen merges consecutive ones into one user turn), content is not trimmed, Qwen3's
// <think> history rewriting is not done (assistant text is kept as the model wrote it).
//
// Tokenization: special markup (<|im_start|>, <tool_call>, ...) is emitted by id when the
// tokenizer has the token, otherwise tokenized as text. Text is encoded without allow_special,
// so a user cannot inject <|im_end|>. Text runs between special tokens are tokenized as a whole,
// except that a change of segment tag or of agent mask is a token boundary (so the experience
// tokens can be cut out cleanly); for ordinary text the ids equal HF's encoding of the rendered
// string. With tokenizers that have <experience> and </experience> (the byte tokenizer), each
// SEG_EXPERIENCE part is wrapped in them, tagged SEG_EXPERIENCE too. A tool message's leading
// SEG_EXPERIENCE parts go before its <tool_response> block (ChatML), as a note beside the output.
#pragma once
#include <stddef.h>
#include <stdint.h>

#include "model/tokenizer.h"

// ----------------------------------------------------------------------------
// messages

// what a token belongs to (stored per token in trajectories)
typedef enum { SEG_SYSTEM = 0, SEG_EXPERIENCE, SEG_USER, SEG_TOOL, SEG_ASSISTANT, SEG_COUNT } Segment;

typedef enum { CHAT_SYSTEM = 0, CHAT_USER, CHAT_ASSISTANT, CHAT_TOOL } ChatRole;

// a piece of a message's content with its segment tag, so experience text can sit inside a
// system, user or tool message tagged SEG_EXPERIENCE
typedef struct {
    const char* text;
    Segment seg;
} ChatPart;

// a tool call of an assistant message; arguments is JSON text, inserted verbatim
typedef struct {
    const char* name;
    const char* arguments;
} ChatToolCall;

typedef struct {
    ChatRole role;
    const ChatPart* parts;
    int n_parts;
    const ChatToolCall* tool_calls; // assistant messages only
    int n_tool_calls;
} ChatMessage;

// the segment of a role's own text and markup (CHAT_TOOL -> SEG_TOOL, ...)
Segment chat_role_segment(ChatRole role);
const char* chat_segment_name(Segment seg); // "system", "experience", ...

// ----------------------------------------------------------------------------
// formats

typedef enum { CHAT_CHATML = 0, CHAT_LLAMA3 } ChatFormat;

// "chatml" or "llama3"; returns 0, or -1 for other names
int chat_format_parse(const char* name, ChatFormat* out);
const char* chat_format_name(ChatFormat fmt);

// ----------------------------------------------------------------------------
// rendering

typedef struct {
    const Tokenizer* tok; // not owned
    ChatFormat fmt;
    int* ids;         // (n) token ids
    uint8_t* seg;     // (n) Segment of each token
    uint8_t* agent;   // (n) 1 for tokens the assistant produced: its content and closing token
    int n, cap;
    int n_messages;   // messages appended, generated turns included
    int gen_open;     // a generation prompt waits for chat_append_generated
    int id_bos;       // format's special tokens (-1 where unused)
    int id_start, id_end, id_header_end;
    int id_exp, id_exp_end; // <experience> </experience>, -1 if the tokenizer has none
    char* pend;       // text waiting to be tokenized, all of one (seg, agent)
    size_t pend_n, pend_cap;
    int pend_seg, pend_agent;
} ChatRender;

// checks that the tokenizer has the format's special tokens (ChatML: <|im_start|> <|im_end|>;
// Llama-3: <|begin_of_text|> <|start_header_id|> <|end_header_id|> <|eot_id|>). 0 or -1 with err.
int chat_init(ChatRender* r, const Tokenizer* tok, ChatFormat fmt, char* err, size_t errlen);
void chat_free(ChatRender* r);
// empties the render, keeping its buffers
void chat_reset(ChatRender* r);

// appends one message. Errors (-1, err): tool calls on a non-assistant message, a tool call
// without a name, a generation prompt still open.
int chat_append(ChatRender* r, const ChatMessage* m, char* err, size_t errlen);
// appends the header of an assistant turn, tagged SEG_ASSISTANT with agent 0
int chat_append_generation_prompt(ChatRender* r, char* err, size_t errlen);
// appends sampled ids after a generation prompt (SEG_ASSISTANT, agent 1) and closes the turn;
// when the last id is not chat_end_id, the end token is added (agent 0: the model did not emit it)
int chat_append_generated(ChatRender* r, const int* ids, int n, char* err, size_t errlen);
// the token that ends an assistant turn (<|im_end|>, <|eot_id|>): the sampler's stop token
int chat_end_id(const ChatRender* r);

// ----------------------------------------------------------------------------
// message text

// The content of one rendered message's decoded text, in place: without the turn's header (ChatML
// "<|im_start|>role\n", Llama-3 "<|start_header_id|>role<|end_header_id|>\n\n", or the bare
// "role\n" left when the specials were skipped), the ChatML tool wrapper ("<tool_response>\n ...
// \n</tool_response>") and the end-of-turn special. What a tool returned or a user asked, as the
// environment wrote it; returns text.
char* chat_message_content(char* text);

// ----------------------------------------------------------------------------
// tool calls

// Finds the first tool call in assistant text. Grammar (whitespace = space, tab, CR, LF):
//   call := "<tool_call>" ws object ws "</tool_call>"
//   object: a JSON object with "name": a non-empty string, and optionally "arguments": a JSON
//           object (or a string holding one); other keys are ignored.
// Text before and after the call is ignored. Returns 1 with *name and *args_json (compact JSON,
// "{}" when arguments are absent; malloc'ed, the caller frees) set; 0 when the text has no
// "<tool_call>"; -1 for a malformed call, with err saying what is wrong in words meant to be fed
// back to the model (missing "</tool_call>", invalid JSON with its column, missing name, ...).
int chat_parse_tool_call(const char* text, char** name, char** args_json, char* err, size_t errlen);
