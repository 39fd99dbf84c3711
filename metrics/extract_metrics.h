/* Metrics of the fine-tuning-data extraction track (metrics.md section 4,
 * extraction.md sections 3, 5.3 and 6): the opening-word rule, the match
 * ratio against a token trie of the training queries, coverage (query and
 * token extraction ratios), BLEU as nltk's sentence_bleu computes it, the
 * identification score, and F1. Pure functions of token ids and strings:
 * no model is involved, so each can be checked by hand. */
#ifndef MT_EXTRACTION_H
#define MT_EXTRACTION_H

#include <stddef.h>
#include <stdint.h>

#include "err.h"

/* ---- opening word (extraction.md section 3) ---- */

/* The opening word of x: ASCII letters lower-cased, x[0] upper-cased when
 * it is an ASCII letter (Python's str.capitalize on ASCII), the first
 * whitespace-separated token of the stripped string, its leading quotes
 * ('"' and '\'') cut, then its leading run of [A-Za-z]. "" when none.
 * Writes at most cap - 1 bytes. Returns the word's length. */
int mt_opening_word(const char *x, char *out, size_t cap);

/* ---- the trie of training queries ---- */

typedef struct mt_trie_node {
    int32_t token;
    int parent;         /* -1 for the root */
    int first_child, next_sibling; /* -1 = none */
    int min_depth;      /* edges from here to the nearest leaf */
    int leaf_query;     /* a leaf (after EOS): its distinct-query index; else -1 */
    uint8_t marked;     /* coverage: visited by a scored completion */
} mt_trie_node;

typedef struct mt_trie {
    mt_trie_node *nodes; /* nodes[0] is the root */
    int n_nodes, cap;
    int n_queries;      /* distinct token sequences (leaves) */
    int *leaf;          /* [n_queries] node index of each leaf */
    int *len;           /* [n_queries] |x| = tokens + EOS */
    int32_t eos;
} mt_trie;

/* Builds the trie of the queries seqs[i][0..lens[i]) (tokens without BOS
 * or EOS); each contributes its tokens + eos. Identical sequences share one
 * leaf (one distinct query). */
int mt_trie_build(mt_trie *t, const int32_t *const *seqs, const int *lens, int n,
                  int32_t eos, lm_err *err);
void mt_trie_free(mt_trie *t);

/* Walks r[0..nr) (+ eos unless r already ends with it) from the root:
 * *p = matched tokens, *xlen = p + the smallest depth from the reached node
 * to a leaf, *rlen = |r| with the eos. */
void mt_trie_walk(const mt_trie *t, const int32_t *r, int nr, int *p, int *xlen,
                  int *rlen);
/* MR = 2p / (|r| + |x|) (1 for a verbatim query). */
double mt_match_ratio(const mt_trie *t, const int32_t *r, int nr);
/* Marks the root and every node the walk of r (+ eos) visits. */
void mt_trie_mark(mt_trie *t, const int32_t *r, int nr);
void mt_trie_unmark(mt_trie *t);
/* Query Extraction Ratio = distinct queries whose leaf is marked / distinct
 * queries; Token Extraction Ratio = mean over distinct queries of marked
 * nodes on the path (root included) / (|x| + 1). Either may be NULL. */
void mt_trie_coverage(const mt_trie *t, double *query_ratio, double *token_ratio);

/* ---- BLEU (nltk sentence_bleu defaults, no smoothing) ---- */

/* Hypothesis and references split on whitespace; 1..4-grams with weights
 * 1/4, clipped precision, brevity penalty against the closest reference
 * length (ties: the shorter). 0 when no unigram matches; a zero higher
 * precision counts as the smallest positive double (so BLEU ~ 0). 0 for an
 * empty hypothesis or no references. */
double mt_bleu(const char *hyp, const char *const *refs, int n_refs);

/* ---- identification (extraction.md section 5.3) ---- */

typedef struct mt_ident {
    int n, sorry, maxrep;
    double score;
    int valid;          /* score > eta */
} mt_ident;

/* sorry = samples whose left-stripped text starts with "Sorry, but";
 * maxrep = the largest count of one exact string among the others (0 if
 * none); score = alpha (1 - sorry/N) + (1 - alpha) maxrep/N. */
void mt_identify(const char *const *samples, int n, double alpha, double eta,
                 mt_ident *out);

/* F1 of the positive class and accuracy for predictions pred[i] against
 * labels gold[i] (0/1). F1 = 0 when there is no true positive. */
void mt_f1(const int *pred, const int *gold, int n, double *f1, double *accuracy);

#endif
