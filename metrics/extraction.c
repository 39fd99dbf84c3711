/* Extraction-track metrics (metrics.md section 4). */
#include "extract_metrics.h"

#include <float.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

/* ---- opening word ---- */

/* Length of the whitespace character at s (as Python's str.isspace), or 0. */
static int space_len(const unsigned char *s) {
    if (*s == ' ' || (*s >= 0x09 && *s <= 0x0d) || (*s >= 0x1c && *s <= 0x1f)) return 1;
    if (s[0] == 0xc2 && (s[1] == 0x85 || s[1] == 0xa0)) return 2;
    if (s[0] == 0xe1 && s[1] == 0x9a && s[2] == 0x80) return 3;           /* U+1680 */
    if (s[0] == 0xe2 && s[1] == 0x80 &&
        ((s[2] >= 0x80 && s[2] <= 0x8a) || s[2] == 0xa8 || s[2] == 0xa9 || s[2] == 0xaf))
        return 3;                                                          /* U+2000.. */
    if (s[0] == 0xe2 && s[1] == 0x81 && s[2] == 0x9f) return 3;           /* U+205F */
    if (s[0] == 0xe3 && s[1] == 0x80 && s[2] == 0x80) return 3;           /* U+3000 */
    return 0;
}

static int ascii_alpha(int c) { return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z'); }

int mt_opening_word(const char *x, char *out, size_t cap) {
    const unsigned char *s = (const unsigned char *)x;
    int first = 1, n = 0, ls;
    /* strip, then the first token: skip leading whitespace */
    while (*s && (ls = space_len(s)) > 0) {
        s += ls;
        first = 0;
    }
    /* leading quotes and whitespace of the token (whitespace cannot occur
     * inside a token, so only quotes remain to cut) */
    while (*s == '"' || *s == '\'') {
        s++;
        first = 0;
    }
    while (ascii_alpha(*s)) {
        int c = *s;
        if (c >= 'A' && c <= 'Z') c += 'a' - 'A';
        if (first && c >= 'a' && c <= 'z') c -= 'a' - 'A';
        first = 0;
        if ((size_t)n + 1 < cap) out[n] = (char)c;
        n++;
        s++;
    }
    if (cap) out[(size_t)n < cap ? (size_t)n : cap - 1] = '\0';
    return n;
}

/* ---- trie ---- */

static int trie_new(mt_trie *t, int parent, int32_t token) {
    if (t->n_nodes == t->cap) {
        int cap = t->cap ? 2 * t->cap : 1024;
        mt_trie_node *v = realloc(t->nodes, (size_t)cap * sizeof *v);
        if (!v) return -1;
        t->nodes = v;
        t->cap = cap;
    }
    mt_trie_node *nd = &t->nodes[t->n_nodes];
    memset(nd, 0, sizeof *nd);
    nd->token = token;
    nd->parent = parent;
    nd->first_child = nd->next_sibling = -1;
    nd->leaf_query = -1;
    if (parent >= 0) {
        nd->next_sibling = t->nodes[parent].first_child;
        t->nodes[parent].first_child = t->n_nodes;
    }
    return t->n_nodes++;
}

static int child(const mt_trie *t, int node, int32_t token) {
    for (int c = t->nodes[node].first_child; c >= 0; c = t->nodes[c].next_sibling)
        if (t->nodes[c].token == token) return c;
    return -1;
}

int mt_trie_build(mt_trie *t, const int32_t *const *seqs, const int *lens, int n,
                  int32_t eos, lm_err *err) {
    memset(t, 0, sizeof *t);
    t->eos = eos;
    t->leaf = malloc((size_t)(n ? n : 1) * sizeof *t->leaf);
    t->len = malloc((size_t)(n ? n : 1) * sizeof *t->len);
    if (!t->leaf || !t->len || trie_new(t, -1, -1) < 0) goto oom;
    for (int i = 0; i < n; i++) {
        int node = 0;
        for (int k = 0; k <= lens[i]; k++) {
            int32_t tok = k < lens[i] ? seqs[i][k] : eos;
            int c = child(t, node, tok);
            if (c < 0 && (c = trie_new(t, node, tok)) < 0) goto oom;
            node = c;
        }
        if (t->nodes[node].leaf_query < 0) {
            t->nodes[node].leaf_query = t->n_queries;
            t->leaf[t->n_queries] = node;
            t->len[t->n_queries] = lens[i] + 1;
            t->n_queries++;
        }
    }
    /* Children come after their parents: one backward pass. */
    for (int i = t->n_nodes - 1; i >= 0; i--) {
        mt_trie_node *nd = &t->nodes[i];
        if (nd->first_child < 0) {
            nd->min_depth = 0;
            continue;
        }
        int best = INT32_MAX;
        for (int c = nd->first_child; c >= 0; c = t->nodes[c].next_sibling)
            if (t->nodes[c].min_depth + 1 < best) best = t->nodes[c].min_depth + 1;
        nd->min_depth = best;
    }
    return 0;
oom:
    mt_trie_free(t);
    return lm_errf(err, "out of memory building the query trie");
}

void mt_trie_free(mt_trie *t) {
    free(t->nodes);
    free(t->leaf);
    free(t->len);
    memset(t, 0, sizeof *t);
}

void mt_trie_walk(const mt_trie *t, const int32_t *r, int nr, int *p, int *xlen,
                  int *rlen) {
    int has_eos = nr > 0 && r[nr - 1] == t->eos;
    int total = nr + !has_eos, node = 0, k = 0;
    for (; k < total; k++) {
        int32_t tok = k < nr ? r[k] : t->eos;
        int c = child(t, node, tok);
        if (c < 0) break;
        node = c;
    }
    *p = k;
    *xlen = k + t->nodes[node].min_depth;
    *rlen = total;
}

double mt_match_ratio(const mt_trie *t, const int32_t *r, int nr) {
    int p, x, rl;
    mt_trie_walk(t, r, nr, &p, &x, &rl);
    return rl + x > 0 ? 2.0 * p / (double)(rl + x) : 0.0;
}

void mt_trie_mark(mt_trie *t, const int32_t *r, int nr) {
    int has_eos = nr > 0 && r[nr - 1] == t->eos;
    int total = nr + !has_eos, node = 0;
    t->nodes[0].marked = 1;
    for (int k = 0; k < total; k++) {
        int c = child(t, node, k < nr ? r[k] : t->eos);
        if (c < 0) break;
        node = c;
        t->nodes[node].marked = 1;
    }
}

void mt_trie_unmark(mt_trie *t) {
    for (int i = 0; i < t->n_nodes; i++) t->nodes[i].marked = 0;
}

void mt_trie_coverage(const mt_trie *t, double *query_ratio, double *token_ratio) {
    double full = 0, part = 0;
    for (int q = 0; q < t->n_queries; q++) {
        int node = t->leaf[q], marked = 0;
        full += t->nodes[node].marked;
        for (; node >= 0; node = t->nodes[node].parent) marked += t->nodes[node].marked;
        part += (double)marked / (double)(t->len[q] + 1);
    }
    if (query_ratio) *query_ratio = t->n_queries ? full / t->n_queries : 0.0;
    if (token_ratio) *token_ratio = t->n_queries ? part / t->n_queries : 0.0;
}

/* ---- BLEU ---- */

typedef struct words {
    const char **w;
    int *len;
    int n;
} words;

static int split_ws(const char *s, words *out) {
    int cap = 16;
    out->n = 0;
    out->w = malloc((size_t)cap * sizeof *out->w);
    out->len = malloc((size_t)cap * sizeof *out->len);
    if (!out->w || !out->len) return -1;
    const unsigned char *p = (const unsigned char *)s;
    while (*p) {
        int ls;
        while (*p && (ls = space_len(p)) > 0) p += ls;
        if (!*p) break;
        const unsigned char *b = p;
        while (*p && space_len(p) == 0) p++;
        if (out->n == cap) {
            cap *= 2;
            const char **w = realloc(out->w, (size_t)cap * sizeof *w);
            if (!w) return -1;
            out->w = w;
            int *l = realloc(out->len, (size_t)cap * sizeof *l);
            if (!l) return -1;
            out->len = l;
        }
        out->w[out->n] = (const char *)b;
        out->len[out->n++] = (int)(p - b);
    }
    return 0;
}

static void words_free(words *w) {
    free(w->w);
    free(w->len);
}

static int gram_eq(const words *a, int i, const words *b, int j, int n) {
    for (int k = 0; k < n; k++)
        if (a->len[i + k] != b->len[j + k] ||
            memcmp(a->w[i + k], b->w[j + k], (size_t)a->len[i + k]) != 0)
            return 0;
    return 1;
}

static int gram_count(const words *hay, const words *g, int at, int n) {
    int c = 0;
    for (int i = 0; i + n <= hay->n; i++) c += gram_eq(hay, i, g, at, n);
    return c;
}

double mt_bleu(const char *hyp, const char *const *refs, int n_refs) {
    if (n_refs <= 0) return 0.0;
    words h = {0};
    words *r = calloc((size_t)n_refs, sizeof *r);
    double bleu = 0.0;
    int ok = r && split_ws(hyp, &h) == 0;
    for (int i = 0; ok && i < n_refs; i++) ok = split_ws(refs[i], &r[i]) == 0;
    if (!ok || h.n == 0) goto done;
    double logsum = 0.0;
    for (int n = 1; n <= 4; n++) {
        int num = 0, den = h.n - n + 1 > 0 ? h.n - n + 1 : 0;
        for (int i = 0; i + n <= h.n; i++) {
            /* each distinct n-gram once, at its first occurrence */
            int seen = 0;
            for (int j = 0; j < i && !seen; j++) seen = gram_eq(&h, j, &h, i, n);
            if (seen) continue;
            int cnt = gram_count(&h, &h, i, n), best = 0;
            for (int k = 0; k < n_refs; k++) {
                int c = gram_count(&r[k], &h, i, n);
                if (c > best) best = c;
            }
            num += cnt < best ? cnt : best;
        }
        if (den < 1) den = 1;
        if (n == 1 && num == 0) goto done; /* BLEU = 0 */
        double pn = num > 0 ? (double)num / den : DBL_MIN;
        logsum += 0.25 * log(pn);
    }
    /* closest reference length, ties to the shorter */
    int c = h.n, best = -1;
    for (int k = 0; k < n_refs; k++) {
        int d = abs(r[k].n - c);
        if (best < 0 || d < abs(best - c) || (d == abs(best - c) && r[k].n < best))
            best = r[k].n;
    }
    double bp = c > best ? 1.0 : exp(1.0 - (double)best / c);
    bleu = bp * exp(logsum);
done:
    words_free(&h);
    for (int i = 0; r && i < n_refs; i++) words_free(&r[i]);
    free(r);
    return bleu;
}

/* ---- identification and F1 ---- */

void mt_identify(const char *const *samples, int n, double alpha, double eta,
                 mt_ident *out) {
    memset(out, 0, sizeof *out);
    out->n = n;
    char *sorry = calloc((size_t)(n ? n : 1), 1);
    for (int i = 0; i < n; i++) {
        const unsigned char *s = (const unsigned char *)samples[i];
        int ls;
        while (*s && (ls = space_len(s)) > 0) s += ls;
        int is = strncmp((const char *)s, "Sorry, but", 10) == 0;
        if (sorry) sorry[i] = (char)is;
        out->sorry += is;
    }
    for (int i = 0; sorry && i < n; i++) {
        if (sorry[i]) continue;
        int first = 1, c = 0;
        for (int j = 0; j < n && first; j++)
            if (!sorry[j] && strcmp(samples[j], samples[i]) == 0) {
                if (j < i) first = 0;
                else c++;
            }
        if (first && c > out->maxrep) out->maxrep = c;
    }
    free(sorry);
    out->score = n > 0 ? alpha * (1.0 - (double)out->sorry / n) +
                             (1.0 - alpha) * (double)out->maxrep / n
                       : 0.0;
    out->valid = n > 0 && out->score > eta;
}

void mt_f1(const int *pred, const int *gold, int n, double *f1, double *accuracy) {
    int tp = 0, fp = 0, fn = 0, right = 0;
    for (int i = 0; i < n; i++) {
        int p = !!pred[i], g = !!gold[i];
        tp += p && g;
        fp += p && !g;
        fn += !p && g;
        right += p == g;
    }
    if (f1) *f1 = tp ? 2.0 * tp / (2.0 * tp + fp + fn) : 0.0;
    if (accuracy) *accuracy = n ? (double)right / n : 0.0;
}
