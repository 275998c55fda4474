// BM25 (Okapi) over a small collection of short texts: the step-wise selector scores pool items
// against the recent history with it, and instance retrieval scores past tasks against the current
// one. Texts are split into terms by bm25_tokenize (lowercased ASCII letters and digits; bytes
// >= 0x80 are kept inside terms so UTF-8 words stay whole). Scoring, for query q and document d:
//
//   score(q, d) = sum over DISTINCT terms t of q present in the collection:
//                 idf(t) * tf(t,d) * (k1 + 1) / (tf(t,d) + k1 * (1 - b + b * |d| / avgdl))
//   idf(t)      = ln(1 + (N - df(t) + 0.5) / (df(t) + 0.5))        (Lucene's form: always > 0)
//
// with N documents, df(t) of them containing t, |d| the number of terms of d and avgdl the mean
// |d|. Query terms are counted once however often they repeat: a long history query should not be
// dominated by the words it repeats. Everything is deterministic (ties break by document index).
#pragma once
#include <stddef.h>

#define BM25_K1 1.2
#define BM25_B 0.75
#define BM25_MAX_TERM 64 // longer terms are cut to this many bytes

typedef struct Bm25 Bm25;

// ----------------------------------------------------------------------------
// the index

Bm25* bm25_create(double k1, double b);
void bm25_free(Bm25* ix);
// add a document; returns its index (0, 1, ...)
int bm25_add(Bm25* ix, const char* text);
int bm25_count(const Bm25* ix);

// ----------------------------------------------------------------------------
// scoring

// scores[i] for every document i (scores holds bm25_count(ix) values)
void bm25_score(const Bm25* ix, const char* query, double* scores);
// the k best documents with a positive score, best first, ties by lower index; returns how many
// were written to ids (and scores, when not NULL)
int bm25_top(const Bm25* ix, const char* query, int k, int* ids, double* scores);

// ----------------------------------------------------------------------------
// terms

// the terms of text, in order, as NUL-separated copies in one malloc'd buffer (*terms) with *n of
// them; a helper for callers that build their own features from the same tokenisation
void bm25_tokenize(const char* text, char** terms, int* n);
// 1 when the terms of phrase (at least one) occur in a row among the first max_terms terms of
// text (max_terms <= 0: all of them)
int bm25_phrase_in(const char* text, const char* phrase, int max_terms);
