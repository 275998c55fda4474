// Training of the bootstrap (see bootstrap.h): a copy warm-up on synthetic text, then next-token
// cross-entropy on the demonstrations' supervised assistant tokens, in batches of sequences of
// similar length, with AdamW (warmup, cosine to a tenth of the peak).
//
// Why the warm-up: every demonstrated tool call copies a name from the context ("Founded by Tavi
// Rel." -> search "Tavi Rel"), and a randomly initialised model learns that only after its
// attention forms induction heads (attend to the token after the previous occurrence of the
// current one, copy it), a phase change that takes several hundred optimizer steps. Steps on
// short synthetic sequences that are all copying (filler words, a bracketed span, more filler,
// the span again) cost a fraction of steps on 1-2K-token episodes and form the heads first.
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/check.h"
#include "common/log.h"
#include "distill/bootstrap.h"
#include "model/model_config.h"
#include "model/rng.h"
#include "model/timer.h"
#include "model/tokenizer.h"

// ----------------------------------------------------------------------------
// training

TrainParams bootstrap_train_params(const Config* c) {
    TrainParams p = {0};
    p.epochs = c->bootstrap.epochs;
    p.lr = c->bootstrap.lr;
    p.batch_tokens = c->bootstrap.batch_tokens;
    p.seed = (uint64_t)c->run.seed;
    p.log_every = 20;
    return p;
}

typedef struct {
    int first, count; // a run of the length-sorted order
    int T;            // the longest sequence of the batch
} Batch;

static const DemoSet* sort_set; // qsort has no context argument

static int by_length(const void* a, const void* b) {
    int x = *(const int*)a, y = *(const int*)b;
    int lx = sort_set->d[x].n, ly = sort_set->d[y].n;
    return lx != ly ? (lx > ly) - (lx < ly) : (x > y) - (x < y);
}

// batches of sequences of similar length: at most max_batch sequences and batch_tokens padded tokens
static int make_batches(const DemoSet* set, int* order, int max_batch, int batch_tokens, Batch** out) {
    for (int i = 0; i < set->n; i++) order[i] = i;
    sort_set = set;
    qsort(order, (size_t)set->n, sizeof(int), by_length);
    Batch* b = mallocCheck(sizeof(Batch) * (size_t)(set->n + 1));
    int nb = 0;
    for (int i = 0; i < set->n;) {
        int k = 1;
        while (i + k < set->n && k < max_batch && (k + 1) * set->d[order[i + k]].n <= batch_tokens) k++;
        b[nb++] = (Batch){i, k, set->d[order[i + k - 1]].n};
        i += k;
    }
    *out = b;
    return nb;
}

void bootstrap_train(Model* m, const DemoSet* set, const TrainParams* p, TrainReport* r) {
    memset(r, 0, sizeof(*r));
    const ModelConfig* cfg = model_config(m);
    const int max_batch = p->max_batch, max_seq = p->max_seq;
    int* order = mallocCheck(sizeof(int) * (size_t)(set->n + 1));
    Batch* batches;
    const int nb = make_batches(set, order, max_batch, p->batch_tokens, &batches);
    for (int i = 0; i < set->n; i++)
        if (set->d[i].n > max_seq) fatal("bootstrap: a demonstration of %d tokens exceeds the model's %d", set->d[i].n, max_seq);

    AdamWConfig ac = adamw_default_config();
    ac.lr = (float)p->lr;
    ac.min_lr_ratio = 0.1f;
    ac.total_steps = (long)nb * p->epochs;
    ac.warmup_steps = p->warmup_steps > 0 ? p->warmup_steps : ac.total_steps / 20;
    ac.weight_decay = 0.0f;
    ParamInfo table[PARAM_COUNT];
    size_t n_params = model_param_table(cfg, table);
    AdamW* opt = adamw_create(model_backend(m), &ac, table, n_params);

    const size_t N = (size_t)max_batch * (size_t)max_seq;
    int* tokens = mallocCheck(sizeof(int) * N);
    int* targets = mallocCheck(sizeof(int) * N);
    float* weights = mallocCheck(sizeof(float) * N);
    int* lengths = mallocCheck(sizeof(int) * (size_t)max_batch);
    int* perm = mallocCheck(sizeof(int) * (size_t)(nb + 1));
    Rng rng;
    rng_seed_stream(&rng, p->seed, 0x7EA1);
    const long window = ac.total_steps / 10 > 0 ? ac.total_steps / 10 : 1;
    double first_sum = 0, last_sum = 0, log_sum = 0;
    long first_n = 0, last_n = 0, log_n = 0;
    const double t0 = timer_now();
    for (int ep = 0; ep < p->epochs; ep++) {
        for (int i = 0; i < nb; i++) perm[i] = i;
        for (int i = nb - 1; i > 0; i--) { // a new batch order every epoch
            int j = (int)rng_below(&rng, (uint64_t)(i + 1)), t = perm[i];
            perm[i] = perm[j];
            perm[j] = t;
        }
        for (int bi = 0; bi < nb; bi++) {
            const Batch* b = &batches[perm[bi]];
            const int B = b->count, T = b->T;
            long n_tgt = 0;
            for (int k = 0; k < B; k++) {
                const Demo* d = &set->d[order[b->first + k]];
                lengths[k] = d->n;
                for (int t = 0; t < T; t++) {
                    const size_t i = (size_t)k * T + t;
                    tokens[i] = t < d->n ? d->ids[t] : 0;
                    const int sup = t + 1 < d->n && d->target[t + 1];
                    targets[i] = sup ? d->ids[t + 1] : -1;
                    n_tgt += sup;
                }
            }
            for (int k = 0; k < B; k++)
                for (int t = 0; t < T; t++) weights[(size_t)k * T + t] = targets[(size_t)k * T + t] >= 0 ? 1.0f / (float)n_tgt : 0.0f;
            float gnorm;
            const float loss = model_train_step_ce(m, opt, tokens, targets, weights, lengths, B, T, &gnorm);
            const long step = (long)ep * nb + bi;
            r->steps++;
            r->tokens += (long)B * T;
            r->target_tokens += n_tgt;
            if (step < window) first_sum += loss, first_n++;
            if (step >= ac.total_steps - window) last_sum += loss, last_n++;
            log_sum += loss, log_n++;
            if (p->log_every > 0 && (step + 1) % p->log_every == 0) {
                const double dt = timer_now() - t0, eta = dt / (double)(step + 1) * (double)(ac.total_steps - step - 1);
                log_info("bootstrap: %s: step %ld/%ld  loss %.4f  lr %.2e  %.0f tokens/s  %.0f s  ETA %.0f s",
                         p->phase ? p->phase : "episodes", step + 1, ac.total_steps, log_sum / (double)log_n,
                         adamw_lr(&ac, step), (double)r->tokens / dt, dt, eta);
                log_sum = 0, log_n = 0;
            }
        }
    }
    r->seconds = timer_now() - t0;
    r->first_loss = first_n ? first_sum / (double)first_n : 0.0;
    r->last_loss = last_n ? last_sum / (double)last_n : 0.0;
    free(tokens);
    free(targets);
    free(weights);
    free(lengths);
    free(perm);
    free(order);
    free(batches);
    adamw_free(opt);
}


// ----------------------------------------------------------------------------
// the copy warm-up

#define COPY_BATCH 32
#define COPY_SEQ 128        // tokens per row at most (the byte tokenizer's rows; a BPE's are shorter)
#define COPY_SAMPLE 512     // examples drawn to size the rows
#define COPY_WINDOW 25      // steps the stopping rule averages the loss over
#define COPY_DONE_LOSS 0.08 // mean loss per copied token at which the warm-up stops

// a made-up word of 2-3 syllables in the style of the built-in worlds' names, capitalised half
// of the time
static void copy_word(Rng* r, char* out, size_t n) {
    static const char* const onsets[] = {"b", "d", "f", "g", "k", "l", "m", "n", "p", "r", "s", "t", "v", "z",
                                         "br", "dr", "kr", "st", "th", "sh"};
    static const char* const vowels[] = {"a", "e", "i", "o", "u", "ai", "ei", "ou"};
    static const char* const codas[] = {"", "", "", "n", "r", "l", "s", "k", "m"};
    size_t len = 0;
    out[0] = '\0';
    int k = 2 + (rng_below(r, 4) == 0);
    for (int i = 0; i < k && len + 8 < n; i++)
        len += (size_t)snprintf(out + len, n - len, "%s%s%s", onsets[rng_below(r, 20)], vowels[rng_below(r, 8)],
                                codas[rng_below(r, 9)]);
    if (rng_below(r, 2)) out[0] = (char)(out[0] - 32);
}

// "filler <span> filler\nspan": the tokens, with targets on the repeated span
static int copy_example(const Tokenizer* tok, Rng* r, int* ids, int* targets, int T) {
    char span[256] = "", pre[128] = "", post[128] = "", w[32], text[600];
    int nw = 1 + (int)rng_below(r, 5);
    for (int i = 0; i < nw; i++) {
        copy_word(r, w, sizeof(w));
        strcat(span, w);
        strcat(span, rng_below(r, 4) ? " " : ", ");
    }
    for (int i = (int)rng_below(r, 4); i > 0; i--) copy_word(r, w, sizeof(w)), strcat(pre, w), strcat(pre, " ");
    for (int i = (int)rng_below(r, 4); i > 0; i--) copy_word(r, w, sizeof(w)), strcat(post, w), strcat(post, " ");
    snprintf(text, sizeof(text), "%s<%s> %s\n", pre, span, post);
    TokenBuf tb = {0};
    tokenizer_encode(tok, text, strlen(text), 0, &tb);
    const int first = tb.n;
    tokenizer_encode(tok, span, strlen(span), 0, &tb);
    const int n = tb.n < T ? tb.n : T;
    for (int t = 0; t < T; t++) {
        ids[t] = t < n ? tb.ids[t] : 0;
        targets[t] = t + 1 < n && t + 1 >= first ? tb.ids[t + 1] : -1;
    }
    tokenbuf_free(&tb);
    return n;
}

// tokens per row: the longest of a sample of examples, rounded up to 16, at most COPY_SEQ. With the
// byte tokenizer some examples are longer, so the rows stay COPY_SEQ (and the warm-up's bits as
// they were); a BPE's examples are 3x shorter, and rows of padding would cost the same compute.
int bootstrap_copy_rows(const Tokenizer* tok, uint64_t seed) {
    Rng rng;
    rng_seed_stream(&rng, seed, 0xC0B2); // its own stream: the warm-up's examples do not change
    int ids[COPY_SEQ], targets[COPY_SEQ], longest = 1;
    for (int i = 0; i < COPY_SAMPLE; i++) {
        const int n = copy_example(tok, &rng, ids, targets, COPY_SEQ);
        if (n > longest) longest = n;
    }
    const int T = (longest + 15) / 16 * 16;
    return T < COPY_SEQ ? T : COPY_SEQ;
}

void bootstrap_copy_warmup(Model* m, const Tokenizer* tok, int steps, double lr, uint64_t seed, TrainReport* r) {
    memset(r, 0, sizeof(*r));
    if (steps <= 0) return;
    const ModelConfig* cfg = model_config(m);
    Backend* be = model_backend(m);
    const int T = bootstrap_copy_rows(tok, seed);
    log_info("bootstrap: copy warm-up on %d rows of %d tokens per step", COPY_BATCH, T);
    // a model sized for the short sequences, sharing nothing but the weights
    Model* w = model_create(cfg, be, COPY_BATCH, T);
    const size_t n_params = model_num_params(m);
    float* host = mallocCheck(sizeof(float) * n_params);
    model_params_download(m, host);
    model_params_upload(w, host);
    AdamWConfig ac = adamw_default_config();
    ac.lr = (float)lr;
    ac.min_lr_ratio = 0.1f;
    ac.total_steps = steps;
    ac.warmup_steps = steps / 20;
    ac.weight_decay = 0.0f;
    ParamInfo table[PARAM_COUNT];
    model_param_table(cfg, table);
    AdamW* opt = adamw_create(be, &ac, table, n_params);
    Rng rng;
    rng_seed_stream(&rng, seed, 0xC0B1);
    const int N = COPY_BATCH * T;
    int* ids = mallocCheck(sizeof(int) * (size_t)N);
    int* targets = mallocCheck(sizeof(int) * (size_t)N);
    float* weights = mallocCheck(sizeof(float) * (size_t)N);
    int lengths[COPY_BATCH];
    double first_sum = 0, last_sum = 0, recent[COPY_WINDOW] = {0};
    const double t0 = timer_now();
    for (int s = 0; s < steps; s++) {
        long n_tgt = 0;
        for (int b = 0; b < COPY_BATCH; b++) {
            lengths[b] = copy_example(tok, &rng, ids + b * T, targets + b * T, T);
            for (int t = 0; t < T; t++) n_tgt += targets[b * T + t] >= 0;
        }
        for (int i = 0; i < N; i++) weights[i] = targets[i] >= 0 ? 1.0f / (float)n_tgt : 0.0f;
        float gnorm;
        const float loss = model_train_step_ce(w, opt, ids, targets, weights, lengths, COPY_BATCH, T, &gnorm);
        r->steps++;
        r->tokens += N;
        r->target_tokens += n_tgt;
        if (s < COPY_WINDOW) first_sum += loss;
        recent[s % COPY_WINDOW] = loss;
        if ((s + 1) % 100 == 0) log_info("bootstrap: copy warm-up step %d/%d  loss %.4f  %.0f s", s + 1, steps, loss, timer_now() - t0);
        if (s + 1 < COPY_WINDOW) continue;
        last_sum = 0;
        for (int k = 0; k < COPY_WINDOW; k++) last_sum += recent[k];
        if (last_sum / COPY_WINDOW < COPY_DONE_LOSS) break; // the heads have formed: copying is nearly exact
    }
    r->seconds = timer_now() - t0;
    r->first_loss = first_sum / (double)(r->steps < COPY_WINDOW ? r->steps : COPY_WINDOW);
    r->last_loss = last_sum / (double)COPY_WINDOW;
    model_params_download(w, host);
    model_params_upload(m, host);
    free(host);
    free(ids);
    free(targets);
    free(weights);
    adamw_free(opt);
    model_free(w);
}
