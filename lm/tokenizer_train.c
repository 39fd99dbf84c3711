/* Training a byte-level BPE, the way Hugging Face's BpeTrainer does:
 *
 *  1. cut the special tokens out of the corpus, split the rest with GPT-2's
 *     pre-tokenizer and count each unique word;
 *  2. ids: the special tokens, then the 256 byte characters in code point
 *     order, then one id per merge;
 *  3. count every adjacent pair over the unique words (times their counts)
 *     and keep, per pair, the words it occurs in;
 *  4. repeatedly merge the most frequent pair (ties: the smaller pair of
 *     ids), updating only the words that contain it and the counts of the
 *     pairs around each occurrence.
 *
 * A max-heap holds (count, pair) entries that may be stale: a popped entry
 * whose count differs from the pair's current count is pushed back with
 * the current one. Counts only fall, except for pairs with the new token,
 * which are pushed fresh, so the top entry, once current, is the true
 * maximum. */
#include <stdlib.h>
#include <string.h>

#include "tokenizer.h"
#include "unicode.h"

/* ------------------------------------------------------------ word counts */

typedef struct word_map {
    char *bytes;            /* all unique words */
    size_t bytes_len, bytes_cap;
    size_t *off;
    int *len;
    int64_t *count;
    int n, cap;
    int32_t *table;         /* open addressing, -1 empty */
    size_t mask;
} word_map;

static uint64_t hash_str(const char *s, size_t n) {
    uint64_t h = 1469598103934665603ull;
    for (size_t i = 0; i < n; i++) {
        h ^= (unsigned char)s[i];
        h *= 1099511628211ull;
    }
    return h ^ (h >> 31);
}

static int word_map_rehash(word_map *m, size_t size) {
    int32_t *t = malloc(size * sizeof *t);
    if (!t) return -1;
    memset(t, 0xff, size * sizeof *t);
    for (int i = 0; i < m->n; i++) {
        size_t j = hash_str(m->bytes + m->off[i], (size_t)m->len[i]) & (size - 1);
        while (t[j] >= 0) j = (j + 1) & (size - 1);
        t[j] = i;
    }
    free(m->table);
    m->table = t;
    m->mask = size - 1;
    return 0;
}

static int word_map_add(word_map *m, const char *s, size_t n) {
    if (!m->table || (size_t)m->n * 2 >= m->mask + 1)
        if (word_map_rehash(m, m->table ? 2 * (m->mask + 1) : 1024) != 0)
            return -1;
    size_t j = hash_str(s, n) & m->mask;
    for (; m->table[j] >= 0; j = (j + 1) & m->mask) {
        int i = m->table[j];
        if ((size_t)m->len[i] == n && !memcmp(m->bytes + m->off[i], s, n)) {
            m->count[i]++;
            return 0;
        }
    }
    if (m->n == m->cap) {
        int cap = m->cap ? 2 * m->cap : 1024;
        size_t *o = realloc(m->off, (size_t)cap * sizeof *o);
        if (o) m->off = o;
        int *l = realloc(m->len, (size_t)cap * sizeof *l);
        if (l) m->len = l;
        int64_t *c = realloc(m->count, (size_t)cap * sizeof *c);
        if (c) m->count = c;
        if (!o || !l || !c) return -1;
        m->cap = cap;
    }
    if (m->bytes_len + n > m->bytes_cap) {
        size_t cap = m->bytes_cap ? m->bytes_cap : 65536;
        while (cap < m->bytes_len + n) cap *= 2;
        char *b = realloc(m->bytes, cap);
        if (!b) return -1;
        m->bytes = b;
        m->bytes_cap = cap;
    }
    memcpy(m->bytes + m->bytes_len, s, n);
    m->off[m->n] = m->bytes_len;
    m->len[m->n] = (int)n;
    m->count[m->n] = 1;
    m->bytes_len += n;
    m->table[j] = m->n++;
    return 0;
}

static void word_map_free(word_map *m) {
    free(m->bytes);
    free(m->off);
    free(m->len);
    free(m->count);
    free(m->table);
}

/* ------------------------------------------------------------------ pairs */

typedef struct pair {
    int32_t a, b;
    int64_t count;
    int32_t *where;         /* words that have (had) the pair */
    int n_where, cap_where;
    int stamp;              /* last merge step that raised the count */
} pair;

typedef struct heap_entry {
    int64_t count;
    int32_t a, b;
} heap_entry;

typedef struct trainer {
    /* tokens: byte-level strings */
    char *str;
    size_t str_len, str_cap;
    size_t *tok_off;
    int *tok_len;
    int n_tok, cap_tok;
    int32_t *tok_table;     /* string -> id */
    size_t tok_mask;

    pair *pairs;
    int n_pairs, cap_pairs;
    int32_t *pair_table;    /* (a, b) -> pair index */
    size_t pair_mask;

    heap_entry *heap;
    size_t n_heap, cap_heap;

    int32_t *touched;       /* pairs raised in this step */
    int n_touched, cap_touched;

    int32_t *merge_a, *merge_b;
    int n_merges, cap_merges;
} trainer;

static uint64_t hash_pair(int32_t a, int32_t b) {
    uint64_t h = ((uint64_t)(uint32_t)a << 32) | (uint32_t)b;
    h ^= h >> 33;
    h *= 0xff51afd7ed558ccdull;
    h ^= h >> 33;
    return h;
}

static int pair_rehash(trainer *tr, size_t size) {
    int32_t *t = malloc(size * sizeof *t);
    if (!t) return -1;
    memset(t, 0xff, size * sizeof *t);
    for (int i = 0; i < tr->n_pairs; i++) {
        size_t j = hash_pair(tr->pairs[i].a, tr->pairs[i].b) & (size - 1);
        while (t[j] >= 0) j = (j + 1) & (size - 1);
        t[j] = i;
    }
    free(tr->pair_table);
    tr->pair_table = t;
    tr->pair_mask = size - 1;
    return 0;
}

/* The index of pair (a, b), created with count 0 if new; -1 out of memory. */
static int pair_get(trainer *tr, int32_t a, int32_t b) {
    if (!tr->pair_table || (size_t)tr->n_pairs * 2 >= tr->pair_mask + 1)
        if (pair_rehash(tr, tr->pair_table ? 2 * (tr->pair_mask + 1) : 4096))
            return -1;
    size_t j = hash_pair(a, b) & tr->pair_mask;
    for (; tr->pair_table[j] >= 0; j = (j + 1) & tr->pair_mask) {
        pair *p = &tr->pairs[tr->pair_table[j]];
        if (p->a == a && p->b == b) return tr->pair_table[j];
    }
    if (tr->n_pairs == tr->cap_pairs) {
        int cap = tr->cap_pairs ? 2 * tr->cap_pairs : 4096;
        pair *np = realloc(tr->pairs, (size_t)cap * sizeof *np);
        if (!np) return -1;
        tr->pairs = np;
        tr->cap_pairs = cap;
    }
    pair *p = &tr->pairs[tr->n_pairs];
    memset(p, 0, sizeof *p);
    p->a = a;
    p->b = b;
    p->stamp = -1;
    tr->pair_table[j] = tr->n_pairs;
    return tr->n_pairs++;
}

/* count(a, b) += delta in word w. */
static int pair_add(trainer *tr, int32_t a, int32_t b, int64_t delta, int w,
                    int stamp) {
    int i = pair_get(tr, a, b);
    if (i < 0) return -1;
    pair *p = &tr->pairs[i];
    p->count += delta;
    if (delta <= 0) return 0;
    if (p->n_where == 0 || p->where[p->n_where - 1] != w) {
        if (p->n_where == p->cap_where) {
            int cap = p->cap_where ? 2 * p->cap_where : 4;
            int32_t *nw = realloc(p->where, (size_t)cap * sizeof *nw);
            if (!nw) return -1;
            p->where = nw;
            p->cap_where = cap;
        }
        p->where[p->n_where++] = w;
    }
    if (p->stamp != stamp) {
        p->stamp = stamp;
        if (tr->n_touched == tr->cap_touched) {
            int cap = tr->cap_touched ? 2 * tr->cap_touched : 1024;
            int32_t *nt = realloc(tr->touched, (size_t)cap * sizeof *nt);
            if (!nt) return -1;
            tr->touched = nt;
            tr->cap_touched = cap;
        }
        tr->touched[tr->n_touched++] = i;
    }
    return 0;
}

/* Higher count first; on a tie the smaller pair (HF's order). */
static int heap_above(const heap_entry *x, const heap_entry *y) {
    if (x->count != y->count) return x->count > y->count;
    if (x->a != y->a) return x->a < y->a;
    return x->b < y->b;
}

static int heap_push(trainer *tr, int64_t count, int32_t a, int32_t b) {
    if (tr->n_heap == tr->cap_heap) {
        size_t cap = tr->cap_heap ? 2 * tr->cap_heap : 4096;
        heap_entry *h = realloc(tr->heap, cap * sizeof *h);
        if (!h) return -1;
        tr->heap = h;
        tr->cap_heap = cap;
    }
    heap_entry e = {count, a, b};
    size_t i = tr->n_heap++;
    while (i > 0 && heap_above(&e, &tr->heap[(i - 1) / 2])) {
        tr->heap[i] = tr->heap[(i - 1) / 2];
        i = (i - 1) / 2;
    }
    tr->heap[i] = e;
    return 0;
}

static heap_entry heap_pop(trainer *tr) {
    heap_entry top = tr->heap[0], last = tr->heap[--tr->n_heap];
    size_t i = 0, n = tr->n_heap;
    for (;;) {
        size_t c = 2 * i + 1;
        if (c >= n) break;
        if (c + 1 < n && heap_above(&tr->heap[c + 1], &tr->heap[c])) c++;
        if (!heap_above(&tr->heap[c], &last)) break;
        tr->heap[i] = tr->heap[c];
        i = c;
    }
    if (n > 0) tr->heap[i] = last;
    return top;
}

/* --------------------------------------------------------------- tokens */

static int tok_rehash(trainer *tr, size_t size) {
    int32_t *t = malloc(size * sizeof *t);
    if (!t) return -1;
    memset(t, 0xff, size * sizeof *t);
    for (int i = 0; i < tr->n_tok; i++) {
        size_t j = hash_str(tr->str + tr->tok_off[i], (size_t)tr->tok_len[i]) &
                   (size - 1);
        while (t[j] >= 0) j = (j + 1) & (size - 1);
        t[j] = i;
    }
    free(tr->tok_table);
    tr->tok_table = t;
    tr->tok_mask = size - 1;
    return 0;
}

/* The id of string s, appended if new; -1 out of memory. */
static int tok_intern(trainer *tr, const char *s, size_t n) {
    if (!tr->tok_table || (size_t)tr->n_tok * 2 >= tr->tok_mask + 1)
        if (tok_rehash(tr, tr->tok_table ? 2 * (tr->tok_mask + 1) : 1024))
            return -1;
    size_t j = hash_str(s, n) & tr->tok_mask;
    for (; tr->tok_table[j] >= 0; j = (j + 1) & tr->tok_mask) {
        int i = tr->tok_table[j];
        if ((size_t)tr->tok_len[i] == n && !memcmp(tr->str + tr->tok_off[i], s, n))
            return i;
    }
    if (tr->n_tok == tr->cap_tok) {
        int cap = tr->cap_tok ? 2 * tr->cap_tok : 1024;
        size_t *o = realloc(tr->tok_off, (size_t)cap * sizeof *o);
        if (o) tr->tok_off = o;
        int *l = realloc(tr->tok_len, (size_t)cap * sizeof *l);
        if (l) tr->tok_len = l;
        if (!o || !l) return -1;
        tr->cap_tok = cap;
    }
    if (tr->str_len + n > tr->str_cap) {
        size_t cap = tr->str_cap ? tr->str_cap : 65536;
        while (cap < tr->str_len + n) cap *= 2;
        char *b = realloc(tr->str, cap);
        if (!b) return -1;
        tr->str = b;
        tr->str_cap = cap;
    }
    memcpy(tr->str + tr->str_len, s, n);
    tr->tok_off[tr->n_tok] = tr->str_len;
    tr->tok_len[tr->n_tok] = (int)n;
    tr->str_len += n;
    tr->tok_table[j] = tr->n_tok;
    return tr->n_tok++;
}

static void trainer_free(trainer *tr) {
    free(tr->str);
    free(tr->tok_off);
    free(tr->tok_len);
    free(tr->tok_table);
    for (int i = 0; i < tr->n_pairs; i++) free(tr->pairs[i].where);
    free(tr->pairs);
    free(tr->pair_table);
    free(tr->heap);
    free(tr->touched);
    free(tr->merge_a);
    free(tr->merge_b);
}

/* ------------------------------------------------------------- training */

/* Counts the pre-tokens of text, with the special tokens cut out. */
static int count_words(word_map *m, const char *text, size_t len,
                       const lm_bpe_train_opts *o) {
    size_t seg = 0, i = 0;
    while (i <= len) {
        size_t hit = 0;
        for (int k = 0; i < len && k < o->n_special; k++) {
            size_t n = strlen(o->special_tokens[k]);
            if (n > hit && n <= len - i && !memcmp(text + i, o->special_tokens[k], n))
                hit = n;
        }
        if (hit == 0 && i < len) {
            i++;
            continue;
        }
        for (size_t j = seg; j < i;) {
            size_t l = lm_tokenizer_gpt2_split(text + j, i - j);
            if (word_map_add(m, text + j, l) != 0) return -1;
            j += l;
        }
        if (i == len) break;
        i += hit;
        seg = i;
    }
    return 0;
}

static int find_special(const lm_bpe_train_opts *o, const char *name) {
    if (!name) return -1;
    for (int k = 0; k < o->n_special; k++)
        if (!strcmp(o->special_tokens[k], name)) return k;
    return -2;
}

int lm_tokenizer_train_bpe(lm_tokenizer *t, const char *text, size_t len,
                           const lm_bpe_train_opts *o, lm_err *err) {
    memset(t, 0, sizeof *t);
    if (!o) return lm_errf(err, "train: no options");
    int k = o->n_special;
    if (k < 0 || (k > 0 && !o->special_tokens))
        return lm_errf(err, "train: bad special token list");
    for (int i = 0; i < k; i++) {
        if (!o->special_tokens[i] || !o->special_tokens[i][0])
            return lm_errf(err, "train: special token %d is empty", i);
        for (int j = 0; j < i; j++)
            if (!strcmp(o->special_tokens[i], o->special_tokens[j]))
                return lm_errf(err, "train: special token \"%s\" given twice",
                               o->special_tokens[i]);
    }
    if (o->vocab_size < k + 256 || o->vocab_size > (1 << 24))
        return lm_errf(err, "train: vocab_size %d must be at least the %d "
                       "special tokens + 256 byte characters (and below 2^24)",
                       o->vocab_size, k);
    int bos = find_special(o, o->bos_token), eos = find_special(o, o->eos_token);
    int pad = find_special(o, o->pad_token);
    if (bos == -2 || eos == -2 || pad == -2)
        return lm_errf(err, "train: bos/eos/pad token is not one of the special "
                       "tokens");
    if ((o->add_bos && bos < 0) || (o->add_eos && eos < 0))
        return lm_errf(err, "train: add_bos/add_eos need bos_token/eos_token");
    int64_t min_freq = o->min_frequency > 0 ? o->min_frequency : 2;

    word_map wm = {0};
    trainer tr = {0};
    int32_t *syms = NULL, *wlen = NULL, *wstamp = NULL;
    size_t *wstart = NULL;
    char *cat = NULL;
    size_t cat_cap = 0;
    int rc = -1;
    if (count_words(&wm, text, len, o) != 0) {
        lm_errf(err, "train: out of memory counting words");
        goto done;
    }

    /* Ids: specials, then the byte characters by code point. The byte
     * characters are 0x21..0x7E, 0xA1..0xAC, 0xAE..0xFF as themselves and
     * the rest from 256 up, so code point order is: the printable ones,
     * then the others in byte order. */
    for (int i = 0; i < k; i++)
        if (tok_intern(&tr, o->special_tokens[i], strlen(o->special_tokens[i])) != i) {
            lm_errf(err, "train: out of memory");
            goto done;
        }
    int32_t byte_tok[256];
    uint32_t cps[256];
    int order[256];
    for (int b = 0; b < 256; b++) cps[b] = lm_tok_byte_char(b), order[b] = b;
    for (int i = 1; i < 256; i++) /* insertion sort by code point */
        for (int j = i; j > 0 && cps[order[j]] < cps[order[j - 1]]; j--) {
            int x = order[j];
            order[j] = order[j - 1];
            order[j - 1] = x;
        }
    for (int i = 0; i < 256; i++) {
        char u[4];
        int n = lm_utf8_encode(cps[order[i]], u);
        byte_tok[order[i]] = tok_intern(&tr, u, (size_t)n);
        if (byte_tok[order[i]] < 0) {
            lm_errf(err, "train: out of memory");
            goto done;
        }
    }
    if (tr.n_tok != k + 256) {
        lm_errf(err, "train: a special token is spelled like a byte character");
        goto done;
    }

    /* Words as symbol ids, and the initial pair counts. */
    syms = malloc((wm.bytes_len + 1) * sizeof *syms);
    wstart = malloc(((size_t)wm.n + 1) * sizeof *wstart);
    wlen = malloc(((size_t)wm.n + 1) * sizeof *wlen);
    wstamp = malloc(((size_t)wm.n + 1) * sizeof *wstamp);
    if (!syms || !wstart || !wlen || !wstamp) {
        lm_errf(err, "train: out of memory for %d words", wm.n);
        goto done;
    }
    for (int w = 0; w < wm.n; w++) {
        wstart[w] = wm.off[w];
        wlen[w] = wm.len[w];
        wstamp[w] = -1;
        const unsigned char *s = (const unsigned char *)wm.bytes + wm.off[w];
        for (int i = 0; i < wm.len[w]; i++) syms[wm.off[w] + (size_t)i] = byte_tok[s[i]];
        for (int i = 0; i + 1 < wm.len[w]; i++)
            if (pair_add(&tr, syms[wm.off[w] + (size_t)i],
                         syms[wm.off[w] + (size_t)i + 1], wm.count[w], w, -1))
                goto oom;
    }
    for (int i = 0; i < tr.n_pairs; i++)
        if (heap_push(&tr, tr.pairs[i].count, tr.pairs[i].a, tr.pairs[i].b))
            goto oom;
    tr.n_touched = 0;

    /* Merge. */
    while (tr.n_tok < o->vocab_size && tr.n_heap > 0) {
        heap_entry top = heap_pop(&tr);
        int pi = pair_get(&tr, top.a, top.b);
        if (pi < 0) goto oom;
        if (tr.pairs[pi].count != top.count) { /* stale: requeue */
            if (tr.pairs[pi].count > 0 &&
                heap_push(&tr, tr.pairs[pi].count, top.a, top.b) != 0)
                goto oom;
            continue;
        }
        if (top.count < min_freq) break;
        int32_t a = top.a, b = top.b;
        size_t la = (size_t)tr.tok_len[a], lb = (size_t)tr.tok_len[b];
        if (la + lb > cat_cap) {
            cat_cap = 2 * (la + lb);
            char *nc = realloc(cat, cat_cap);
            if (!nc) goto oom;
            cat = nc;
        }
        memcpy(cat, tr.str + tr.tok_off[a], la);
        memcpy(cat + la, tr.str + tr.tok_off[b], lb);
        /* A string made before by another pair keeps its id (as in HF). */
        int32_t x = tok_intern(&tr, cat, la + lb);
        if (x < 0) goto oom;
        if (tr.n_merges == tr.cap_merges) {
            int cap = tr.cap_merges ? 2 * tr.cap_merges : 1024;
            int32_t *ma = realloc(tr.merge_a, (size_t)cap * sizeof *ma);
            if (ma) tr.merge_a = ma;
            int32_t *mb = realloc(tr.merge_b, (size_t)cap * sizeof *mb);
            if (mb) tr.merge_b = mb;
            if (!ma || !mb) goto oom;
            tr.cap_merges = cap;
        }
        int step = tr.n_merges++;
        tr.merge_a[step] = a;
        tr.merge_b[step] = b;

        /* Rewrite every word that has the pair. The where list is taken
         * out of the pair first: pair_add may move the pair array. */
        int32_t *where = tr.pairs[pi].where;
        int n_where = tr.pairs[pi].n_where;
        tr.pairs[pi].where = NULL;
        tr.pairs[pi].n_where = tr.pairs[pi].cap_where = 0;
        int fail = 0;
        for (int wi = 0; wi < n_where && !fail; wi++) {
            int w = where[wi];
            if (wstamp[w] == step) continue;
            wstamp[w] = step;
            int32_t *sy = syms + wstart[w];
            int n = wlen[w], out = 0;
            int64_t c = wm.count[w];
            for (int r = 0; r < n;) {
                if (r + 1 < n && sy[r] == a && sy[r + 1] == b) {
                    if (out > 0)
                        fail |= pair_add(&tr, sy[out - 1], a, -c, w, step) |
                                pair_add(&tr, sy[out - 1], x, c, w, step);
                    fail |= pair_add(&tr, a, b, -c, w, step);
                    if (r + 2 < n)
                        fail |= pair_add(&tr, b, sy[r + 2], -c, w, step) |
                                pair_add(&tr, x, sy[r + 2], c, w, step);
                    sy[out++] = x;
                    r += 2;
                } else {
                    sy[out++] = sy[r++];
                }
            }
            wlen[w] = out;
        }
        free(where);
        for (int i = 0; i < tr.n_touched && !fail; i++) {
            pair *p = &tr.pairs[tr.touched[i]];
            if (p->count > 0) fail |= heap_push(&tr, p->count, p->a, p->b);
        }
        tr.n_touched = 0;
        if (fail) goto oom;
    }

    /* The tokenizer. */
    if (lm_tok_build_begin(t, LM_TOK_BYTE_BPE, tr.n_tok, err) != 0) goto done;
    for (int i = 0; i < tr.n_tok; i++)
        if (lm_tok_set_piece(t, i, tr.str + tr.tok_off[i], (size_t)tr.tok_len[i], 0,
                             i < k ? LM_TOKEN_CONTROL : LM_TOKEN_NORMAL, err) != 0)
            goto done;
    if (lm_tok_index(t, err) != 0) goto done;
    for (int r = 0; r < tr.n_merges; r++)
        if (lm_tok_add_merge(t, tr.merge_a[r], tr.merge_b[r], err) != 0) goto done;
    for (int i = 0; i < k; i++)
        if (lm_tok_add_added(t, i, 0, err) != 0) goto done;
    t->bos_id = bos;
    t->eos_id = eos;
    t->pad_id = pad;
    t->add_bos = o->add_bos;
    t->add_eos = o->add_eos;
    t->use_regex = 1;
    if (lm_tok_build_end(t, err) != 0) goto done;
    rc = 0;
    goto done;
oom:
    lm_errf(err, "train: out of memory after %d merges", tr.n_merges);
done:
    if (rc != 0) lm_tokenizer_free(t);
    free(cat);
    trainer_free(&tr);
    word_map_free(&wm);
    free(syms);
    free(wstart);
    free(wlen);
    free(wstamp);
    return rc;
}
