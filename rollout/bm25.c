// BM25 over short texts (see bm25.h): a term vocabulary in an open-addressing hash table, and per
// document a sorted list of (term id, term frequency).
#include "rollout/bm25.h"

#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "common/check.h"

typedef struct {
    int term; // vocabulary id
    int tf;
} Posting;

typedef struct {
    int n, len;     // distinct terms, total terms (|d|)
    Posting* post;  // (n) sorted by term id
} Doc;

struct Bm25 {
    double k1, b;
    // vocabulary: terms[i] is the i-th distinct term, df[i] its document frequency
    int n_terms, cap_terms;
    char** terms;
    int* df;
    int* slot;       // (cap_slot) hash slot -> term id, -1 empty
    int cap_slot;
    // documents
    int n_docs, cap_docs;
    Doc* docs;
    long long total_len;
};

// ----------------------------------------------------------------------------
// tokenisation

static int is_term_byte(unsigned char c) {
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c >= 0x80;
}

// writes the terms of text into out (strlen(text) + 1 bytes suffice) as NUL-separated strings
static int split_terms(const char* text, char* out) {
    int n = 0;
    const unsigned char* p = (const unsigned char*)text;
    while (*p) {
        if (!is_term_byte(*p)) {
            p++;
            continue;
        }
        int len = 0;
        for (; is_term_byte(*p); p++) {
            if (len < BM25_MAX_TERM) *out++ = (char)((*p >= 'A' && *p <= 'Z') ? *p + 32 : *p), len++;
        }
        *out++ = '\0';
        n++;
    }
    return n;
}

void bm25_tokenize(const char* text, char** terms, int* n) {
    *terms = mallocCheck(strlen(text) + 1);
    *n = split_terms(text, *terms);
}

int bm25_phrase_in(const char* text, const char* phrase, int max_terms) {
    char *tt, *pt;
    int nt, np;
    bm25_tokenize(text, &tt, &nt);
    bm25_tokenize(phrase, &pt, &np);
    if (max_terms > 0 && nt > max_terms) nt = max_terms;
    const char** tw = mallocCheck(sizeof(char*) * (size_t)(nt + 1));
    const char* w = tt;
    for (int i = 0; i < nt; i++, w += strlen(w) + 1) tw[i] = w;
    int found = 0;
    for (int i = 0; i + np <= nt && !found; i++) {
        const char* q = pt;
        int k = 0;
        for (; k < np && strcmp(tw[i + k], q) == 0; k++) q += strlen(q) + 1;
        found = k == np;
    }
    free(tw);
    free(tt);
    free(pt);
    return found && np > 0;
}

// ----------------------------------------------------------------------------
// vocabulary

static uint64_t hash_str(const char* s) {
    uint64_t h = 1469598103934665603ull; // FNV-1a
    for (; *s; s++) h = (h ^ (unsigned char)*s) * 1099511628211ull;
    return h;
}

static void rehash(Bm25* ix, int cap) {
    free(ix->slot);
    ix->slot = mallocCheck(sizeof(int) * (size_t)cap);
    for (int i = 0; i < cap; i++) ix->slot[i] = -1;
    ix->cap_slot = cap;
    for (int t = 0; t < ix->n_terms; t++) {
        size_t h = hash_str(ix->terms[t]) & (size_t)(cap - 1);
        while (ix->slot[h] >= 0) h = (h + 1) & (size_t)(cap - 1);
        ix->slot[h] = t;
    }
}

// the id of term s, -1 when absent (or a new id when add is set)
static int term_id(Bm25* ix, const char* s, int add) {
    size_t mask = (size_t)ix->cap_slot - 1;
    for (size_t h = hash_str(s) & mask;; h = (h + 1) & mask) {
        int t = ix->slot[h];
        if (t < 0) break;
        if (strcmp(ix->terms[t], s) == 0) return t;
    }
    if (!add) return -1;
    if (ix->n_terms == ix->cap_terms) {
        ix->cap_terms = ix->cap_terms ? 2 * ix->cap_terms : 64;
        ix->terms = reallocCheck(ix->terms, sizeof(char*) * (size_t)ix->cap_terms);
        ix->df = reallocCheck(ix->df, sizeof(int) * (size_t)ix->cap_terms);
    }
    int t = ix->n_terms++;
    ix->terms[t] = strdupCheck(s);
    ix->df[t] = 0;
    if (2 * ix->n_terms > ix->cap_slot) {
        rehash(ix, 2 * ix->cap_slot);
    } else {
        size_t h = hash_str(s) & mask;
        while (ix->slot[h] >= 0) h = (h + 1) & mask;
        ix->slot[h] = t;
    }
    return t;
}

static int lookup(const Bm25* ix, const char* s) { return term_id((Bm25*)ix, s, 0); }

// ----------------------------------------------------------------------------
// the index

Bm25* bm25_create(double k1, double b) {
    Bm25* ix = callocCheck(1, sizeof(Bm25));
    ix->k1 = k1;
    ix->b = b;
    rehash(ix, 128);
    return ix;
}

void bm25_free(Bm25* ix) {
    if (!ix) return;
    for (int t = 0; t < ix->n_terms; t++) free(ix->terms[t]);
    free(ix->terms);
    free(ix->df);
    free(ix->slot);
    for (int d = 0; d < ix->n_docs; d++) free(ix->docs[d].post);
    free(ix->docs);
    free(ix);
}

static int cmp_int(const void* a, const void* b) {
    int x = *(const int*)a, y = *(const int*)b;
    return (x > y) - (x < y);
}

int bm25_add(Bm25* ix, const char* text) {
    char* buf = mallocCheck(strlen(text) + 1);
    int n = split_terms(text, buf);
    int* ids = mallocCheck(sizeof(int) * (size_t)(n ? n : 1));
    const char* s = buf;
    for (int i = 0; i < n; i++, s += strlen(s) + 1) ids[i] = term_id(ix, s, 1);
    free(buf);
    qsort(ids, (size_t)n, sizeof(int), cmp_int);
    Doc d = {0, n, mallocCheck(sizeof(Posting) * (size_t)(n ? n : 1))};
    for (int i = 0; i < n; i++) {
        if (d.n > 0 && d.post[d.n - 1].term == ids[i]) {
            d.post[d.n - 1].tf++;
        } else {
            d.post[d.n++] = (Posting){ids[i], 1};
            ix->df[ids[i]]++;
        }
    }
    free(ids);
    if (ix->n_docs == ix->cap_docs) {
        ix->cap_docs = ix->cap_docs ? 2 * ix->cap_docs : 16;
        ix->docs = reallocCheck(ix->docs, sizeof(Doc) * (size_t)ix->cap_docs);
    }
    ix->docs[ix->n_docs] = d;
    ix->total_len += n;
    return ix->n_docs++;
}

int bm25_count(const Bm25* ix) { return ix->n_docs; }

// ----------------------------------------------------------------------------
// scoring

static int tf_of(const Doc* d, int term) {
    int lo = 0, hi = d->n - 1;
    while (lo <= hi) {
        int mid = (lo + hi) / 2;
        if (d->post[mid].term == term) return d->post[mid].tf;
        if (d->post[mid].term < term) lo = mid + 1;
        else hi = mid - 1;
    }
    return 0;
}

void bm25_score(const Bm25* ix, const char* query, double* scores) {
    for (int d = 0; d < ix->n_docs; d++) scores[d] = 0.0;
    if (ix->n_docs == 0) return;
    char* buf = mallocCheck(strlen(query) + 1);
    int n = split_terms(query, buf);
    // distinct known query terms
    int* ids = mallocCheck(sizeof(int) * (size_t)(n ? n : 1));
    int m = 0;
    const char* s = buf;
    for (int i = 0; i < n; i++, s += strlen(s) + 1) {
        int t = lookup(ix, s);
        if (t >= 0) ids[m++] = t;
    }
    free(buf);
    qsort(ids, (size_t)m, sizeof(int), cmp_int);
    double N = (double)ix->n_docs, avgdl = (double)ix->total_len / N;
    for (int i = 0; i < m; i++) {
        if (i > 0 && ids[i] == ids[i - 1]) continue;
        double df = (double)ix->df[ids[i]];
        double idf = log(1.0 + (N - df + 0.5) / (df + 0.5));
        for (int d = 0; d < ix->n_docs; d++) {
            int tf = tf_of(&ix->docs[d], ids[i]);
            if (!tf) continue;
            double norm = avgdl > 0 ? 1.0 - ix->b + ix->b * (double)ix->docs[d].len / avgdl : 1.0;
            scores[d] += idf * (double)tf * (ix->k1 + 1.0) / ((double)tf + ix->k1 * norm);
        }
    }
    free(ids);
}

int bm25_top(const Bm25* ix, const char* query, int k, int* ids, double* scores) {
    int n = ix->n_docs;
    double* all = mallocCheck(sizeof(double) * (size_t)(n ? n : 1));
    bm25_score(ix, query, all);
    // selection by repeated scans: k and n are small (a pool of at most a few hundred items)
    unsigned char* taken = callocCheck((size_t)(n ? n : 1), 1);
    int m = 0;
    for (; m < k; m++) {
        int best = -1;
        for (int d = 0; d < n; d++) {
            if (!taken[d] && all[d] > 0.0 && (best < 0 || all[d] > all[best])) best = d;
        }
        if (best < 0) break;
        taken[best] = 1;
        ids[m] = best;
        if (scores) scores[m] = all[best];
    }
    free(taken);
    free(all);
    return m;
}
