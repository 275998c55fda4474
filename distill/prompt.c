// Prompt templates and the generation hook (see prompt.h).
#include "distill/prompt.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/check.h"
#include "distill/text.h"

#ifndef INGRAIN_PROMPT_DIR
#define INGRAIN_PROMPT_DIR "configs/prompts"
#endif

const char* prompt_default_dir(void) { return INGRAIN_PROMPT_DIR; }

char* prompt_load(const char* dir, const char* file, char* err, size_t errlen) {
    char path[2048];
    snprintf(path, sizeof(path), "%s/%s", dir, file);
    FILE* f = fopen(path, "rb");
    if (!f) {
        snprintf(err, errlen, "prompt template %s: %s", path, strerror(errno));
        return NULL;
    }
    StrBuf b = {0};
    char chunk[4096];
    size_t n;
    while ((n = fread(chunk, 1, sizeof(chunk), f)) > 0) strbuf_append(&b, chunk, n);
    fclose(f);
    size_t len = b.len;
    char* all = strbuf_take(&b);
    if (strlen(all) != len || !text_utf8_valid(all)) {
        free(all);
        snprintf(err, errlen, "prompt template %s: not valid UTF-8 text", path);
        return NULL;
    }
    // drop the comment header
    const char* body = all;
    while (strncmp(body, "# ", 2) == 0 || strncmp(body, "#\n", 2) == 0) {
        const char* nl = strchr(body, '\n');
        body = nl ? nl + 1 : body + strlen(body);
    }
    char* out = strdupCheck(body);
    free(all);
    return out;
}

char* prompt_render(const char* tmpl, const char* label, const PromptVar* vars, int n, char* err, size_t errlen) {
    StrBuf b = {0};
    int line = 1;
    for (const char* p = tmpl; *p;) {
        if (p[0] != '{' || p[1] != '{') {
            if (*p == '\n') line++;
            strbuf_append(&b, p++, 1);
            continue;
        }
        const char* name = p + 2;
        size_t len = 0;
        while ((name[len] >= 'a' && name[len] <= 'z') || (name[len] >= '0' && name[len] <= '9') || name[len] == '_') {
            len++;
        }
        const PromptVar* v = NULL;
        for (int i = 0; i < n && len > 0; i++) {
            if (strlen(vars[i].name) == len && strncmp(vars[i].name, name, len) == 0) v = &vars[i];
        }
        if (!v || name[len] != '}' || name[len + 1] != '}') {
            StrBuf known = {0};
            for (int i = 0; i < n; i++) strbuf_printf(&known, "%s{{%s}}", i ? ", " : "", vars[i].name);
            char* k = strbuf_take(&known);
            int shown = (int)(len < 40 ? len : 40);
            if (name[len] != '}' || name[len + 1] != '}') {
                snprintf(err, errlen, "%s line %d: '{{' does not open a placeholder {{name}} (known: %s)", label,
                         line, k);
            } else {
                snprintf(err, errlen, "%s line %d: unknown placeholder {{%.*s}} (known: %s)", label, line, shown,
                         name, k);
            }
            free(k);
            strbuf_free(&b);
            return NULL;
        }
        strbuf_printf(&b, "%s", v->value);
        p = name + len + 2;
    }
    return strbuf_take(&b);
}

int prompt_generate(GenerateFn gen, void* ctx, const char* prompt, size_t cap, char** reply, char* err,
                    size_t errlen) {
    char* out = callocCheck(cap + 1, 1);
    int rc = gen(ctx, prompt, out, cap);
    if (rc != 0) {
        free(out);
        snprintf(err, errlen, "text generation failed (code %d)", rc);
        return -1;
    }
    out[cap] = '\0'; // a misbehaving generator must not leave the reply unterminated
    *reply = out;
    return 0;
}
