// Judging (see judge.h): environment reward, or an LLM verdict with a strict parser.
#include "distill/judge.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "distill/text.h"

int judge_env(const Trajectory* t, double threshold) { return (double)t->final_reward >= threshold; }

void judge_env_batch(Trajectory* const* trajs, int n, double threshold, uint8_t* success) {
    for (int i = 0; i < n; i++) success[i] = (uint8_t)judge_env(trajs[i], threshold);
}

// ----------------------------------------------------------------------------
// the verdict

// -1: not a verdict line; 0/1: incorrect/correct; -2: a malformed verdict line
static int verdict_of_line(const char* s, size_t n) {
    char* line = text_trim_dup(s, n);
    int v = -1;
    if (strncasecmp(line, "verdict", 7) == 0) {
        v = -2;
        const char* p = line + 7;
        if (*p == ':') {
            p++;
            while (*p == ' ' || *p == '\t') p++;
            size_t len = strlen(p);
            if (len > 0 && p[len - 1] == '.') len--;
            if (len == 7 && strncasecmp(p, "correct", 7) == 0) v = 1;
            if (len == 9 && strncasecmp(p, "incorrect", 9) == 0) v = 0;
        }
    }
    free(line);
    return v;
}

int judge_parse_verdict(const char* reply, int* correct, char* err, size_t errlen) {
    int found = -1, found_line = 0, line = 1;
    for (const char* p = reply;; line++) {
        const char* nl = strchr(p, '\n');
        size_t n = nl ? (size_t)(nl - p) : strlen(p);
        int v = verdict_of_line(p, n);
        if (v == -2) {
            char* shown = text_trim_dup(p, n < 80 ? n : 80);
            snprintf(err, errlen, "judge reply line %d: '%s' is not 'VERDICT: correct' or 'VERDICT: incorrect'", line,
                     shown);
            free(shown);
            return -1;
        }
        if (v >= 0) {
            if (found >= 0 && v != found) {
                snprintf(err, errlen, "judge reply: conflicting verdicts on lines %d and %d", found_line, line);
                return -1;
            }
            found = v;
            found_line = line;
        }
        if (!nl) break;
        p = nl + 1;
    }
    if (found < 0) {
        snprintf(err, errlen, "judge reply: no 'VERDICT: correct' or 'VERDICT: incorrect' line");
        return -1;
    }
    *correct = found;
    return 0;
}

int judge_llm(GenerateFn gen, void* ctx, const char* tmpl, const char* task, const char* answer, int* correct,
              char* err, size_t errlen) {
    PromptVar vars[] = {{"task", task}, {"answer", answer}};
    char* prompt = prompt_render(tmpl, JUDGE_TEMPLATE, vars, 2, err, errlen);
    if (!prompt) return -1;
    char* reply = NULL;
    int rc = prompt_generate(gen, ctx, prompt, JUDGE_REPLY_CAP, &reply, err, errlen);
    free(prompt);
    if (rc != 0) return -1;
    rc = judge_parse_verdict(reply, correct, err, errlen);
    free(reply);
    return rc;
}
