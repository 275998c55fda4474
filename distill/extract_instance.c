// The instance extractor (see extract.h, docs/EXPERIENCE.md): per task, the best successful
// attempt (highest reward, then fewest steps, then lowest sample) becomes one concrete item:
//
//   name  "Task <first words of the task>"
//   text  "Task: <task>. Calls: tool(args); ...; answer(x). Found: <values>."
//
// Calls are the episode's distinct tool calls, minus those answered by an error; "Found" lists the
// arguments that came from an observation (entities and values the agent discovered rather than
// read in the task). Over the word limit, middle calls go first ("..."), then found values, then
// task words. An instance of the same task already in the pool is UPDATEd (key "task|<id>").
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "common/check.h"
#include "distill/extract.h"
#include "distill/text.h"
#include "rollout/bm25.h"

#define INSTANCE_ARG_WORDS 8
#define INSTANCE_MAX_FOUND 5

// every content-looking word (3+ bytes) of args appears among the observation's terms
static int discovered(const StepText* st) {
    char *ob, *ab;
    int no, na, content = 0, found = 0;
    bm25_tokenize(st->observation, &ob, &no);
    bm25_tokenize(st->args, &ab, &na);
    const char* a = ab;
    for (int i = 0; i < na; i++, a += strlen(a) + 1) {
        if (strlen(a) < 3) continue;
        content++;
        const char* o = ob;
        int hit = 0;
        for (int j = 0; j < no && !hit; j++, o += strlen(o) + 1) hit = strcmp(a, o) == 0;
        found += hit;
    }
    free(ob);
    free(ab);
    return content > 0 && found == content && !st->obs_is_task;
}

static int answered_by_error(const EpisodeText* e, int s) {
    if (s + 1 >= e->n_steps) return 0;
    const char* obs = e->steps[s + 1].observation;
    for (const char* p = obs; *p; p++) {
        if (strncasecmp(p, "error", 5) == 0) return 1;
    }
    return 0;
}

// ----------------------------------------------------------------------------
// the excerpt

typedef struct {
    int n_calls, n_found, task_words, elided;
    char** calls; // "tool(args)"
    char** found;
} Excerpt;

static char* compose(const EpisodeText* e, const Excerpt* x) {
    StrBuf b = {0};
    char* task = text_first_words(e->task, x->task_words);
    size_t len = strlen(task);
    int cut = text_count_words(e->task) > x->task_words;
    int stop = cut || (len > 0 && strchr(".?!", task[len - 1]));
    strbuf_printf(&b, "Task: %s%s%s Calls: ", task, cut ? " ..." : "", stop ? "" : ".");
    free(task);
    for (int i = 0; i < x->n_calls; i++) {
        strbuf_printf(&b, "%s%s", i ? "; " : "", x->calls[i]);
        if (i == 0 && x->elided) strbuf_printf(&b, "; ...");
    }
    if (x->n_calls == 0) strbuf_printf(&b, "none");
    strbuf_printf(&b, ".");
    for (int i = 0; i < x->n_found; i++) strbuf_printf(&b, "%s%s", i ? "; " : " Found: ", x->found[i]);
    if (x->n_found) strbuf_printf(&b, ".");
    return strbuf_take(&b);
}

static void excerpt_build(const EpisodeText* e, const ExtractParams* prm, Excerpt* x) {
    memset(x, 0, sizeof(*x));
    x->task_words = prm->max_task_words;
    x->calls = mallocCheck(sizeof(char*) * (size_t)(e->n_steps + 1));
    x->found = mallocCheck(sizeof(char*) * INSTANCE_MAX_FOUND);
    for (int s = 0; s < e->n_steps; s++) {
        const StepText* st = &e->steps[s];
        if (!st->tool[0] || answered_by_error(e, s)) continue;
        char* args = text_first_words(st->args, INSTANCE_ARG_WORDS);
        if (text_count_words(st->args) > INSTANCE_ARG_WORDS) {
            char* longer = text_printf("%s ...", args);
            free(args);
            args = longer;
        }
        char* call = text_printf("%s(%s)", st->tool, args);
        int dup = 0;
        for (int i = 0; i < x->n_calls && !dup; i++) dup = strcmp(x->calls[i], call) == 0;
        if (dup) {
            free(call);
        } else {
            x->calls[x->n_calls++] = call;
        }
        int known = 0;
        for (int i = 0; i < x->n_found && !known; i++) known = strcmp(x->found[i], args) == 0;
        if (!known && x->n_found < INSTANCE_MAX_FOUND && discovered(st)) x->found[x->n_found++] = strdupCheck(args);
        free(args);
    }
    // the call budget: keep the first calls and the last one (usually the answer)
    while (x->n_calls > prm->max_calls && x->n_calls > 2) {
        free(x->calls[1]);
        memmove(x->calls + 1, x->calls + 2, sizeof(char*) * (size_t)(x->n_calls - 2));
        x->n_calls--;
        x->elided = 1;
    }
}

static void excerpt_free(Excerpt* x) {
    for (int i = 0; i < x->n_calls; i++) free(x->calls[i]);
    for (int i = 0; i < x->n_found; i++) free(x->found[i]);
    free(x->calls);
    free(x->found);
}

// shrink x until "name: text" fits; the final text, or NULL when it cannot fit
static char* fit(const Pool* p, const EpisodeText* e, const char* name, Excerpt* x) {
    for (;;) {
        char* raw = compose(e, x);
        char* text = text_utf8_sanitize(raw); // decoded text may end inside a UTF-8 character
        free(raw);
        char err[256];
        if (pool_check_text(p, ITEM_INSTANCE, name, text, err, sizeof(err)) == 0) return text;
        free(text);
        if (x->n_calls > 2) {
            free(x->calls[1]);
            memmove(x->calls + 1, x->calls + 2, sizeof(char*) * (size_t)(x->n_calls - 2));
            x->n_calls--;
            x->elided = 1;
        } else if (x->n_found > 0) {
            free(x->found[--x->n_found]);
        } else if (x->task_words > 4) {
            x->task_words -= 4;
        } else {
            return NULL;
        }
    }
}

static char* instance_name(const EpisodeText* e) {
    char* words = text_first_words(e->task, 5);
    for (char* q = words; *q; q++) {
        if (*q == ':') *q = ' ';
    }
    char* name = text_count_words(words) > 0 ? text_printf("Task %s", words) : text_printf("Task %d", e->task_id);
    free(words);
    char* one = text_first_words(name, POOL_MAX_NAME_WORDS);
    char* clean = text_utf8_sanitize(one);
    free(name);
    free(one);
    return clean;
}

// ----------------------------------------------------------------------------

// better attempt: higher reward, then fewer steps (episodes arrive in sample order)
static int better(const EpisodeText* a, const EpisodeText* b) {
    if (a->reward != b->reward) return a->reward > b->reward;
    return a->n_steps < b->n_steps;
}

void extract_instances(Pool* p, const EpisodeText* eps, int n, int32_t iteration, const ExtractParams* prm) {
    int* order = mallocCheck(sizeof(int) * (size_t)(n ? n : 1));
    episode_order(eps, n, order);
    int applied = 0, unsolved = 0;
    for (int g = 0; g < n;) {
        int end = g;
        while (end < n && eps[order[end]].task_id == eps[order[g]].task_id) end++;
        const EpisodeText* best = NULL;
        for (int k = g; k < end; k++) {
            const EpisodeText* e = &eps[order[k]];
            if (e->success && (!best || better(e, best))) best = e;
        }
        int group = end - g;
        g = end;
        if (!best) {
            unsolved++;
            continue;
        }
        Excerpt x;
        excerpt_build(best, prm, &x);
        char* name = instance_name(best);
        char* text = fit(p, best, name, &x);
        char* key = text_printf("task|%d", best->task_id);
        TrajRef ev = {best->task_id, best->sample};
        char* why = text_printf("instance: best of %d attempts at task %d (reward %g, %d steps)", group, best->task_id,
                                (double)best->reward, best->n_steps);
        char err[256];
        const PoolItem* old = pool_find_key(p, key);
        if (!text) {
            char* w = text_printf("%s: the excerpt does not fit the word limit", why);
            pool_none(p, iteration, &ev, 1, w);
            free(w);
        } else if (!old) {
            applied += pool_add(p, iteration, ITEM_INSTANCE, name, text, key, &ev, 1, why, err, sizeof(err)) > 0;
        } else if (strcmp(old->text, text) == 0 && strcmp(old->name, name) == 0) {
            char* w = text_printf("%s: same excerpt as item %d", why, old->id);
            pool_none(p, iteration, &ev, 1, w);
            free(w);
            applied++;
        } else {
            applied += pool_update(p, iteration, old->id, name, text, NULL, &ev, 1, why, err, sizeof(err)) == 0;
        }
        free(why);
        free(key);
        free(text);
        free(name);
        excerpt_free(&x);
    }
    if (unsolved > 0 || applied == 0) {
        char* why = text_printf("instance: %d of the tasks had no successful attempt", unsolved);
        pool_none(p, iteration, NULL, 0, why);
        free(why);
    }
    free(order);
}
