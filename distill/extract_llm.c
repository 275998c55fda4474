// The LLM extractor (see extract.h, docs/EXPERIENCE.md): the Training-Free-GRPO pipeline with the
// model as writer, through the caller's GenerateFn.
//   1. summary      per attempt in a group with mixed outcomes (summary.txt)
//   2. critique     per task: the attempts' summaries, correct vs incorrect, and the current pool
//                   -> proposed pool operations as JSON (critique.txt)
//   3. consolidate  all proposals of the batch and the pool -> the final operations (consolidate.txt)
// Every model reply that holds operations goes through llm_parse_ops; what it rejects is logged
// and recorded in the audit log as NONE entries ("rejected model op ..."), never applied.
#include <jansson.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "common/check.h"
#include "common/log.h"
#include "distill/extract.h"
#include "distill/text.h"
#include "io/json_util.h"

// ----------------------------------------------------------------------------
// the operations parser

static void msg(LlmOps* o, const char* fmt, ...) __attribute__((format(printf, 2, 3)));
static void msg(LlmOps* o, const char* fmt, ...) {
    char buf[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(buf, sizeof(buf), fmt, ap);
    va_end(ap);
    o->msgs = reallocCheck(o->msgs, sizeof(char*) * (size_t)(o->n_msgs + 1));
    o->msgs[o->n_msgs++] = text_utf8_sanitize(buf);
}

// the JSON part of a reply: a ```fenced``` block, else the outermost [...]; NULL when none
static const char* json_slice(const char* reply, size_t* len, int* is_object) {
    *is_object = 0;
    const char* fence = strstr(reply, "```");
    if (fence) {
        const char* start = strchr(fence, '\n');
        start = start ? start + 1 : fence + strlen(fence);
        const char* end = strstr(start, "```");
        *len = end ? (size_t)(end - start) : strlen(start);
        return start;
    }
    const char* open = strchr(reply, '[');
    const char* brace = strchr(reply, '{');
    const char* close = strrchr(reply, ']');
    if (brace && (!open || brace < open)) {
        // an object before any array: is the reply a JSON object rather than an array?
        const char* cb = strrchr(reply, '}');
        if (cb && cb > brace) {
            json_t* v = json_loadb(brace, (size_t)(cb - brace + 1), 0, NULL);
            *is_object = json_is_object(v);
            json_decref(v);
            if (*is_object) return NULL;
        }
    }
    if (!open || !close || close < open) return NULL;
    *len = (size_t)(close - open + 1);
    return open;
}

// "name: text" normalised for duplicate detection: lowercase, single spaces
static char* normalised(const char* name, const char* text) {
    char* s = text_printf("%s: %s", name, text);
    char* one = text_one_line(s);
    free(s);
    for (char* q = one; *q; q++) *q = (char)((*q >= 'A' && *q <= 'Z') ? *q + 32 : *q);
    return one;
}

typedef struct {
    int n;
    int32_t* ids;
    int* op_index; // 1-based op number that claimed the id
} IdSet;

static int idset_find(const IdSet* s, int32_t id) {
    for (int i = 0; i < s->n; i++) {
        if (s->ids[i] == id) return s->op_index[i];
    }
    return 0;
}

static void idset_add(IdSet* s, int32_t id, int op) {
    s->ids = reallocCheck(s->ids, sizeof(int32_t) * (size_t)(s->n + 1));
    s->op_index = reallocCheck(s->op_index, sizeof(int) * (size_t)(s->n + 1));
    s->ids[s->n] = id;
    s->op_index[s->n++] = op;
}

// one operation; 0 and *op filled when accepted, else -1 after a message
static int parse_one(const json_t* v, int k, const Pool* p, IdSet* claimed, char** added, int n_added, LlmOps* o,
                     LlmOp* op) {
    static const char* const names[] = {"ADD", "UPDATE", "DELETE", "NONE"};
    memset(op, 0, sizeof(*op));
    if (!json_is_object(v)) return msg(o, "op %d: expected an object, got %s", k, json_kind(v)), -1;
    const char* key;
    json_t* x;
    json_object_foreach((json_t*)v, key, x) {
        if (strcmp(key, "op") && strcmp(key, "id") && strcmp(key, "text") && strcmp(key, "reason")) {
            return msg(o, "op %d: unknown key '%.40s' (allowed: op, id, text, reason)", k, key), -1;
        }
    }
    const json_t* jop = json_object_get(v, "op");
    if (!jop) return msg(o, "op %d: missing key 'op'", k), -1;
    if (!json_is_string(jop)) return msg(o, "op %d: 'op' must be a string, got %s", k, json_kind(jop)), -1;
    op->op = -1;
    for (int i = 0; i < 4; i++) {
        if (strcasecmp(json_string_value(jop), names[i]) == 0) op->op = i;
    }
    if (op->op < 0) {
        return msg(o, "op %d: unknown op '%.40s' (ADD, UPDATE, DELETE, NONE)", k, json_string_value(jop)), -1;
    }
    const json_t* jr = json_object_get(v, "reason");
    if (jr && !json_is_string(jr)) return msg(o, "op %d: 'reason' must be a string, got %s", k, json_kind(jr)), -1;
    const json_t* jid = json_object_get(v, "id");
    const json_t* jt = json_object_get(v, "text");
    const char* what = names[op->op];
    if (op->op == POOL_ADD && jid) return msg(o, "op %d: ADD takes no 'id'", k), -1;
    if (op->op == POOL_UPDATE || op->op == POOL_DELETE) {
        if (!jid) return msg(o, "op %d: %s needs an 'id'", k, what), -1;
        if (!json_is_integer(jid)) return msg(o, "op %d: 'id' must be an integer, got %s", k, json_kind(jid)), -1;
        json_int_t id = json_integer_value(jid);
        if (id < 1 || id > INT32_MAX || !pool_find(p, (int32_t)id)) {
            return msg(o, "op %d: %s of unknown id %lld (not in the pool)", k, what, (long long)id), -1;
        }
        int prior = idset_find(claimed, (int32_t)id);
        if (prior) return msg(o, "op %d: %s of id %lld, already changed by op %d", k, what, (long long)id, prior), -1;
        op->id = (int32_t)id;
    }
    if (op->op == POOL_ADD || op->op == POOL_UPDATE) {
        if (!jt) return msg(o, "op %d: %s needs a 'text'", k, what), -1;
        if (!json_is_string(jt)) return msg(o, "op %d: 'text' must be a string, got %s", k, json_kind(jt)), -1;
        if (strlen(json_string_value(jt)) != json_string_length(jt)) {
            return msg(o, "op %d: 'text' contains a NUL character", k), -1;
        }
        char err[256];
        int kind = op->op == POOL_ADD ? ITEM_PRINCIPLE : pool_find(p, op->id)->kind;
        if (pool_split_text(json_string_value(jt), &op->name, &op->text, err, sizeof(err)) != 0 ||
            pool_check_text(p, kind, op->name, op->text, err, sizeof(err)) != 0) {
            free(op->name);
            free(op->text);
            return msg(o, "op %d: %s text rejected: %s", k, what, err), -1;
        }
        char* norm = normalised(op->name, op->text);
        int dup = 0;
        for (int i = 0; i < p->n_items && !dup; i++) {
            char* other = normalised(p->items[i].name, p->items[i].text);
            dup = strcmp(norm, other) == 0 ? p->items[i].id : 0;
            free(other);
        }
        if (dup && op->op == POOL_UPDATE && dup == op->id) {
            free(norm);
            free(op->name);
            free(op->text);
            return msg(o, "op %d: UPDATE leaves item %d unchanged", k, op->id), -1;
        }
        for (int i = 0; i < n_added && !dup; i++) dup = strcmp(norm, added[i]) == 0 ? -1 : 0;
        free(norm);
        if (dup) {
            free(op->name);
            free(op->text);
            if (dup > 0) return msg(o, "op %d: %s duplicates item %d", k, what, dup), -1;
            return msg(o, "op %d: %s duplicates an earlier ADD of this reply", k, what), -1;
        }
    }
    op->reason = strdupCheck(jr ? json_string_value(jr) : "");
    if (op->op == POOL_UPDATE || op->op == POOL_DELETE) idset_add(claimed, op->id, k);
    return 0;
}

int llm_parse_ops(const char* reply, const Pool* p, int max_ops, LlmOps* out) {
    memset(out, 0, sizeof(*out));
    size_t len = 0;
    int is_object = 0;
    const char* js = json_slice(reply, &len, &is_object);
    if (!js) {
        if (is_object) msg(out, "reply: expected a JSON array of operations, got an object");
        else msg(out, "reply: no JSON array of operations found");
        return -1;
    }
    json_error_t je;
    json_t* root = json_loadb(js, len, JSON_REJECT_DUPLICATES, &je);
    if (!root) {
        msg(out, "reply: invalid JSON at line %d, column %d: %s", je.line, je.column, je.text);
        return -1;
    }
    if (!json_is_array(root)) {
        msg(out, "reply: expected a JSON array of operations, got %s", json_kind(root));
        json_decref(root);
        return -1;
    }
    size_t n = json_array_size(root);
    out->ops = mallocCheck(sizeof(LlmOp) * (n ? n : 1));
    char** added = mallocCheck(sizeof(char*) * (n ? n : 1));
    int n_added = 0;
    IdSet claimed = {0};
    for (size_t i = 0; i < n; i++) {
        int k = (int)i + 1;
        if (out->n_ops >= max_ops) {
            msg(out, "op %d: over the limit of %d operations per reply", k, max_ops);
            continue;
        }
        LlmOp op;
        if (parse_one(json_array_get(root, i), k, p, &claimed, added, n_added, out, &op) != 0) continue;
        if (op.op == POOL_ADD) added[n_added++] = normalised(op.name, op.text);
        out->ops[out->n_ops++] = op;
    }
    for (int i = 0; i < n_added; i++) free(added[i]);
    free(added);
    free(claimed.ids);
    free(claimed.op_index);
    json_decref(root);
    return 0;
}

void llm_ops_free(LlmOps* o) {
    for (int i = 0; i < o->n_ops; i++) {
        free(o->ops[i].name);
        free(o->ops[i].text);
        free(o->ops[i].reason);
    }
    for (int i = 0; i < o->n_msgs; i++) free(o->msgs[i]);
    free(o->ops);
    free(o->msgs);
    memset(o, 0, sizeof(*o));
}

// ----------------------------------------------------------------------------
// prompt material

static char* pool_text(const Pool* p) {
    if (p->n_items == 0) return strdupCheck("(the pool is empty)");
    StrBuf b = {0};
    for (int i = 0; i < p->n_items; i++) {
        strbuf_printf(&b, "%s[%d] %s: %s", i ? "\n" : "", p->items[i].id, p->items[i].name, p->items[i].text);
    }
    return strbuf_take(&b);
}

// one line, at most max bytes (cut at a UTF-8 boundary, marked "...")
static char* clip(const char* s, int max) {
    char* one = text_one_line(s);
    if ((int)strlen(one) > max) {
        int cut = max;
        while (cut > 0 && (one[cut] & 0xc0) == 0x80) cut--;
        strcpy(one + cut, "...");
    }
    return one;
}

static char* trajectory_text(const EpisodeText* e, int max_obs) {
    StrBuf b = {0};
    for (int s = 0; s < e->n_steps; s++) {
        const StepText* st = &e->steps[s];
        char* obs = clip(st->observation, max_obs);
        strbuf_printf(&b, "Step %d. Saw: %s\n", s + 1, obs);
        free(obs);
        if (st->tool[0]) {
            char* args = clip(st->args, max_obs);
            strbuf_printf(&b, "  Did: %s(%s)\n", st->tool, args);
            free(args);
        } else {
            char* act = clip(st->action, max_obs);
            strbuf_printf(&b, "  Did: (no valid tool call) %s\n", act);
            free(act);
        }
    }
    char* ans = clip(e->answer[0] ? e->answer : "(none)", max_obs);
    strbuf_printf(&b, "Final answer: %s", ans);
    free(ans);
    return strbuf_take(&b);
}

// ----------------------------------------------------------------------------
// the pipeline

typedef struct {
    Pool* p;
    int32_t iteration;
    const ExtractParams* prm;
    char *t_summary, *t_critique, *t_consolidate;
    int* rejected;
} Run;

// render + generate; NULL with err set for a template problem, NULL with *gen_failed for a model one
static char* ask(Run* r, const char* tmpl, const char* label, const PromptVar* vars, int n, int* gen_failed, char* err,
                 size_t errlen) {
    *gen_failed = 0;
    char* prompt = prompt_render(tmpl, label, vars, n, err, errlen);
    if (!prompt) return NULL;
    char* reply = NULL;
    char gerr[256];
    if (prompt_generate(r->prm->gen, r->prm->gen_ctx, prompt, r->prm->reply_cap, &reply, gerr, sizeof(gerr)) != 0) {
        log_warn("llm extractor: %s: %s", label, gerr);
        *gen_failed = 1;
    }
    free(prompt);
    return reply;
}

static void record_rejects(Run* r, const LlmOps* ops, const char* where, const TrajRef* ev, int n_ev) {
    for (int i = 0; i < ops->n_msgs; i++) {
        log_warn("llm extractor: %s: %s", where, ops->msgs[i]);
        char* why = text_printf("rejected model op (%s): %s", where, ops->msgs[i]);
        pool_none(r->p, r->iteration, ev, n_ev, why);
        free(why);
    }
    *r->rejected += ops->n_msgs;
}

static json_t* op_json(const LlmOp* op) {
    static const char* const names[] = {"ADD", "UPDATE", "DELETE", "NONE"};
    json_t* o = json_object();
    json_object_set_new(o, "op", json_string(names[op->op]));
    if (op->op == POOL_UPDATE || op->op == POOL_DELETE) json_object_set_new(o, "id", json_integer(op->id));
    if (op->name) {
        char* full = text_printf("%s: %s", op->name, op->text);
        json_object_set_new(o, "text", json_string(full));
        free(full);
    }
    if (op->reason[0]) json_object_set_new(o, "reason", json_string(op->reason));
    return o;
}

// the critique of one task group; appends accepted proposals (as text lines) to props
static int critique_group(Run* r, const EpisodeText* eps, const int* idx, int n, StrBuf* props, int* n_props,
                          char* err, size_t errlen) {
    const EpisodeText* first = &eps[idx[0]];
    TrajRef* ev = mallocCheck(sizeof(TrajRef) * (size_t)n);
    StrBuf att = {0};
    char label[64];
    for (int k = 0; k < n; k++) {
        const EpisodeText* e = &eps[idx[k]];
        ev[k] = (TrajRef){e->task_id, e->sample};
        char* traj = trajectory_text(e, r->prm->max_obs_chars);
        PromptVar vars[] = {{"task", e->task}, {"trajectory", traj}, {"outcome", e->success ? "correct" : "incorrect"}};
        int gen_failed;
        snprintf(label, sizeof(label), "summary.txt (task %d, sample %d)", e->task_id, e->sample);
        char* reply = ask(r, r->t_summary, label, vars, 3, &gen_failed, err, errlen);
        free(traj);
        if (!reply && !gen_failed) {
            free(ev);
            strbuf_free(&att);
            return -1;
        }
        char* summary = reply ? clip(reply, 1500) : strdupCheck("(no summary: generation failed)");
        strbuf_printf(&att, "%sAttempt %d (%s): %s", k ? "\n" : "", k + 1, e->success ? "correct" : "incorrect",
                      summary);
        free(summary);
        free(reply);
    }
    char* attempts = strbuf_take(&att);
    char* pool = pool_text(r->p);
    char words[32];
    snprintf(words, sizeof(words), "%d", r->p->params.max_item_words);
    PromptVar vars[] = {{"task", first->task}, {"attempts", attempts}, {"experiences", pool}, {"max_words", words}};
    int gen_failed;
    snprintf(label, sizeof(label), "critique.txt (task %d)", first->task_id);
    char* reply = ask(r, r->t_critique, label, vars, 4, &gen_failed, err, errlen);
    free(attempts);
    free(pool);
    if (!reply) {
        free(ev);
        if (gen_failed) return 0;
        return -1;
    }
    LlmOps ops;
    llm_parse_ops(reply, r->p, r->prm->max_ops, &ops);
    free(reply);
    record_rejects(r, &ops, label, ev, n);
    for (int i = 0; i < ops.n_ops; i++) {
        if (ops.ops[i].op == POOL_NONE) continue;
        json_t* o = op_json(&ops.ops[i]);
        char* s = json_dumps(o, JSON_COMPACT);
        strbuf_printf(props, "task %d: %s\n", first->task_id, s);
        free(s);
        json_decref(o);
        (*n_props)++;
    }
    llm_ops_free(&ops);
    free(ev);
    return 0;
}

static void apply_ops(Run* r, const LlmOps* ops, const TrajRef* ev, int n_ev) {
    for (int i = 0; i < ops->n_ops; i++) {
        const LlmOp* op = &ops->ops[i];
        char err[256];
        char* why = text_printf("llm consolidation%s%s", op->reason[0] ? ": " : "", op->reason);
        int rc = 0;
        switch (op->op) {
        case POOL_ADD:
            rc = pool_add(r->p, r->iteration, ITEM_PRINCIPLE, op->name, op->text, "", ev, n_ev, why, err,
                          sizeof(err)) < 0;
            break;
        case POOL_UPDATE:
            rc = pool_update(r->p, r->iteration, op->id, op->name, op->text, NULL, ev, n_ev, why, err, sizeof(err));
            break;
        case POOL_DELETE: rc = pool_delete(r->p, r->iteration, op->id, ev, n_ev, why, err, sizeof(err)); break;
        default: pool_none(r->p, r->iteration, ev, n_ev, why); break;
        }
        if (rc != 0) {
            char* w = text_printf("rejected model op (consolidate.txt): %s", err);
            log_warn("llm extractor: %s", w);
            pool_none(r->p, r->iteration, ev, n_ev, w);
            free(w);
            (*r->rejected)++;
        }
        free(why);
    }
}

int extract_llm(Pool* p, const EpisodeText* eps, int n, int32_t iteration, const ExtractParams* prm, int* rejected,
                char* err, size_t errlen) {
    *rejected = 0;
    if (!prm->gen) {
        snprintf(err, errlen, "experience.extractor 'llm' needs the model as a text generator (no GenerateFn given)");
        return -1;
    }
    const char* dir = prm->prompt_dir ? prm->prompt_dir : prompt_default_dir();
    Run r = {p, iteration, prm, NULL, NULL, NULL, rejected};
    int rc = -1;
    int* order = mallocCheck(sizeof(int) * (size_t)(n ? n : 1));
    TrajRef* ev = mallocCheck(sizeof(TrajRef) * (size_t)(n ? n : 1));
    StrBuf props = {0};
    int n_props = 0, n_ev = 0, mixed = 0, uniform = 0;
    if (!(r.t_summary = prompt_load(dir, "summary.txt", err, errlen)) ||
        !(r.t_critique = prompt_load(dir, "critique.txt", err, errlen)) ||
        !(r.t_consolidate = prompt_load(dir, "consolidate.txt", err, errlen))) {
        goto done;
    }
    episode_order(eps, n, order);
    for (int g = 0; g < n;) {
        int end = g, wins = 0;
        while (end < n && eps[order[end]].task_id == eps[order[g]].task_id) wins += eps[order[end++]].success != 0;
        if (wins == 0 || wins == end - g) {
            uniform++; // every attempt alike: nothing to contrast (Training-Free GRPO skips these groups)
        } else {
            mixed++;
            int before = n_props;
            if (critique_group(&r, eps, order + g, end - g, &props, &n_props, err, errlen) != 0) goto done;
            if (n_props > before) {
                for (int k = g; k < end; k++) ev[n_ev++] = (TrajRef){eps[order[k]].task_id, eps[order[k]].sample};
            }
        }
        g = end;
    }
    if (n_props == 0) {
        char* why = text_printf("llm: no proposals (%d tasks with mixed outcomes, %d with uniform outcomes)", mixed,
                                uniform);
        pool_none(p, iteration, NULL, 0, why);
        free(why);
        rc = 0;
        goto done;
    }
    char* pool = pool_text(p);
    char* proposals = strbuf_take(&props);
    char words[32], items[32];
    snprintf(words, sizeof(words), "%d", p->params.max_item_words);
    snprintf(items, sizeof(items), "%d", p->params.max_size);
    PromptVar vars[] = {{"experiences", pool}, {"proposals", proposals}, {"max_items", items}, {"max_words", words}};
    int gen_failed;
    char* reply = ask(&r, r.t_consolidate, "consolidate.txt", vars, 4, &gen_failed, err, errlen);
    free(pool);
    free(proposals);
    if (!reply) {
        if (gen_failed) {
            pool_none(p, iteration, ev, n_ev, "llm: consolidation failed (generation error); no change");
            rc = 0;
        }
        goto done;
    }
    LlmOps ops;
    llm_parse_ops(reply, p, prm->max_ops, &ops);
    free(reply);
    record_rejects(&r, &ops, "consolidate.txt", ev, n_ev);
    apply_ops(&r, &ops, ev, n_ev);
    if (ops.n_ops == 0 && ops.n_msgs == 0) pool_none(p, iteration, ev, n_ev, "llm consolidation: no operations");
    llm_ops_free(&ops);
    rc = 0;
done:
    strbuf_free(&props);
    free(r.t_summary);
    free(r.t_critique);
    free(r.t_consolidate);
    free(order);
    free(ev);
    return rc;
}
