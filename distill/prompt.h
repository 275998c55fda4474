// Prompt templates of the model-as-writer parts (LLM judge, LLM extractor) and the text
// generation hook. Templates are plain text files (configs/prompts/*.txt) with placeholders
// {{name}} (lowercase letters, digits, '_'); a leading block of lines that start with "# " is a
// comment and is dropped. Rendering substitutes the given variables and rejects any other
// placeholder, naming the template, the line and the placeholder.
#pragma once
#include <stddef.h>

// The model as a text generator, provided by the caller (the driver plugs the sampler in): writes
// a NUL-terminated reply to out (at most cap bytes including the NUL; truncation is allowed) and
// returns 0, or nonzero on failure.
typedef int (*GenerateFn)(void* ctx, const char* prompt, char* out, size_t cap);

typedef struct {
    const char* name;
    const char* value;
} PromptVar;

// the templates shipped with the source tree (configs/prompts)
const char* prompt_default_dir(void);
// DIR/FILE as a malloc'd template (comment header removed); NULL with err naming the path
char* prompt_load(const char* dir, const char* file, char* err, size_t errlen);
// the rendered prompt, malloc'd; NULL with err ("LABEL line N: unknown placeholder {{x}} (known: ...)")
char* prompt_render(const char* tmpl, const char* label, const PromptVar* vars, int n, char* err, size_t errlen);
// run gen with a reply buffer of cap bytes; 0 and a malloc'd *reply, or -1 with err
int prompt_generate(GenerateFn gen, void* ctx, const char* prompt, size_t cap, char** reply, char* err,
                    size_t errlen);
