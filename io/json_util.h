// Small helpers over jansson shared by every JSON reader (config.json, tokenizer.json,
// safetensors headers, pool JSON, LLM outputs), so their error messages read alike.
#pragma once
#include <jansson.h>

// "an object", "a list", "a string", "an integer", "a real number", "a boolean", "null"; "nothing" for NULL
const char* json_kind(const json_t* v);
