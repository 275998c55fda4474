// Vocabulary of the built-in byte tokenizer: ids 0..255 are bytes, then special tokens.
// Built-in models are sized from BYTE_VOCAB_SIZE, so the specials have fixed ids.
#pragma once

enum {
    BYTE_TOKEN_PAD = 256,
    BYTE_TOKEN_BOS,            // <|begin_of_text|>
    BYTE_TOKEN_EOS,            // <|end_of_text|>
    BYTE_TOKEN_IM_START,       // <|im_start|>
    BYTE_TOKEN_IM_END,         // <|im_end|>
    BYTE_TOKEN_TOOL_CALL,      // <tool_call>
    BYTE_TOKEN_TOOL_CALL_END,  // </tool_call>
    BYTE_TOKEN_TOOL_RESP,      // <tool_response>
    BYTE_TOKEN_TOOL_RESP_END,  // </tool_response>
    BYTE_TOKEN_EXP,            // <experience>: start of an injected experience segment
    BYTE_TOKEN_EXP_END,        // </experience>
    BYTE_TOKEN_FIRST_RESERVED, // ids up to BYTE_VOCAB_SIZE-1 are reserved
    BYTE_VOCAB_SIZE = 288,
};
