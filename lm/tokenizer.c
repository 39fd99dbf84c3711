/* Tokenizers: the tables, the merge engine, encode/decode, and the llama2.c
 * tokenizer.bin loader. The Hugging Face loader and writer live in
 * tokenizer_json.c, GGUF in tokenizer_gguf.c, training in
 * tokenizer_train.c. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "tokenizer.h"
#include "unicode.h"

#define META "\xE2\x96\x81" /* "▁", U+2581, SentencePiece's space */
#define META_LEN 3

/* Ids and lengths are ints; keep the arenas and tables well inside that. */
#define MAX_VOCAB (1 << 24)
#define MAX_ARENA ((size_t)1 << 30)

/* ---------------------------------------------------------------- tables */

static uint64_t hash_bytes(const char *s, size_t n) {
    uint64_t h = 1469598103934665603ull; /* FNV-1a */
    for (size_t i = 0; i < n; i++) {
        h ^= (unsigned char)s[i];
        h *= 1099511628211ull;
    }
    return h ^ (h >> 29);
}

static uint64_t hash_pair(int32_t a, int32_t b) {
    uint64_t h = ((uint64_t)(uint32_t)a << 32) | (uint32_t)b;
    h ^= h >> 33;
    h *= 0xff51afd7ed558ccdull;
    h ^= h >> 33;
    h *= 0xc4ceb9fe1a85ec53ull;
    return h ^ (h >> 33);
}

/* The table size for n entries: a power of two at least 2n. */
static size_t table_size(size_t n) {
    size_t s = 16;
    while (s < 2 * n) s <<= 1;
    return s;
}

uint32_t lm_tok_byte_char(int b) {
    /* GPT-2's bytes_to_unicode: printable Latin-1 bytes stand for
     * themselves; the other 68 take 256, 257, ... in byte order. */
    if ((b >= '!' && b <= '~') || (b >= 0xA1 && b <= 0xAC) ||
        (b >= 0xAE && b <= 0xFF))
        return (uint32_t)b;
    int n = 0;
    for (int c = 0; c < b; c++)
        if (!((c >= '!' && c <= '~') || (c >= 0xA1 && c <= 0xAC) ||
              (c >= 0xAE && c <= 0xFF)))
            n++;
    return 256u + (uint32_t)n;
}

int lm_tokenizer_find(const lm_tokenizer *t, const char *s, size_t n) {
    if (!t->piece_table) return -1;
    size_t i = hash_bytes(s, n) & t->piece_mask;
    for (;; i = (i + 1) & t->piece_mask) {
        int32_t id = t->piece_table[i];
        if (id < 0) return -1;
        if ((size_t)t->piece_len[id] == n &&
            memcmp(t->text + t->piece_off[id], s, n) == 0)
            return id;
    }
}

/* The rank of merge (a, b), or -1. */
static int find_merge(const lm_tokenizer *t, int32_t a, int32_t b) {
    if (!t->merge_table) return -1;
    size_t i = hash_pair(a, b) & t->merge_mask;
    for (;; i = (i + 1) & t->merge_mask) {
        int32_t r = t->merge_table[i];
        if (r < 0) return -1;
        if (t->merge_a[r] == a && t->merge_b[r] == b) return r;
    }
}

/* Never 0 (the empty slot): code points are at most 0x10FFFF, and an
 * invalid byte (LM_UTF8_INVALID) counts as 0x110000. */
static uint64_t bigram_key(uint32_t a, uint32_t b) {
    if (a > 0x110000) a = 0x110000;
    if (b > 0x110000) b = 0x110000;
    return ((uint64_t)a << 32 | b) + 1;
}

static int has_bigram(const lm_tokenizer *t, uint64_t key) {
    size_t i = hash_pair((int32_t)(key >> 32), (int32_t)key) & t->bigram_mask;
    for (;; i = (i + 1) & t->bigram_mask) {
        if (t->bigrams[i] == key) return 1;
        if (t->bigrams[i] == 0) return 0;
    }
}

/* Collects the character bigrams of every piece (SentencePiece family). */
static int build_bigrams(lm_tokenizer *t, lm_err *err) {
    size_t n = 0;
    for (int id = 0; id < t->n_vocab; id++)
        n += (size_t)t->piece_len[id];
    size_t size = table_size(n + 1);
    t->bigrams = calloc(size, sizeof *t->bigrams);
    if (!t->bigrams) return lm_errf(err, "out of memory for the bigram table");
    t->bigram_mask = size - 1;
    for (int id = 0; id < t->n_vocab; id++) {
        const char *p = t->text + t->piece_off[id];
        size_t len = (size_t)t->piece_len[id], i = 0;
        uint32_t prev = 0, cp;
        for (int k = 0; i < len; k++, prev = cp) {
            i += (size_t)lm_utf8_decode(p + i, len - i, &cp);
            if (k == 0) continue;
            uint64_t key = bigram_key(prev, cp);
            size_t j = hash_pair((int32_t)(key >> 32), (int32_t)key) & t->bigram_mask;
            while (t->bigrams[j] != 0 && t->bigrams[j] != key)
                j = (j + 1) & t->bigram_mask;
            t->bigrams[j] = key;
        }
    }
    return 0;
}

/* --------------------------------------------------------------- building */

int lm_tok_read_file(const char *path, char **buf, size_t *len, lm_err *err) {
    *buf = NULL;
    *len = 0;
    FILE *f = fopen(path, "rb");
    if (!f) return lm_errf(err, "%s: cannot open: %s", path, strerror(errno));
    struct stat st;
    if (fstat(fileno(f), &st) != 0 || !S_ISREG(st.st_mode)) {
        fclose(f);
        return lm_errf(err, "%s: not a regular file", path);
    }
    if (st.st_size > (off_t)0x7fffffff) {
        fclose(f);
        return lm_errf(err, "%s: too large (%lld bytes)", path,
                       (long long)st.st_size);
    }
    size_t n = (size_t)st.st_size;
    char *b = malloc(n + 1);
    if (!b) {
        fclose(f);
        return lm_errf(err, "%s: out of memory for %zu bytes", path, n);
    }
    if (fread(b, 1, n, f) != n) {
        free(b);
        fclose(f);
        return lm_errf(err, "%s: read failed", path);
    }
    fclose(f);
    b[n] = 0;
    *buf = b;
    *len = n;
    return 0;
}

void lm_tokenizer_free(lm_tokenizer *t) {
    if (!t) return;
    free(t->text);
    free(t->piece_off);
    free(t->piece_len);
    free(t->scores);
    free(t->types);
    free(t->dec);
    free(t->dec_off);
    free(t->dec_len);
    free(t->piece_table);
    free(t->merge_a);
    free(t->merge_b);
    free(t->merge_out);
    free(t->merge_table);
    free(t->added);
    free(t->added_flags);
    free(t->bigrams);
    memset(t, 0, sizeof *t);
}

int lm_tok_build_begin(lm_tokenizer *t, lm_tok_kind kind, int n_vocab,
                       lm_err *err) {
    memset(t, 0, sizeof *t);
    if (n_vocab <= 0 || n_vocab > MAX_VOCAB)
        return lm_errf(err, "vocabulary size %d out of range (1..%d)",
                       n_vocab, MAX_VOCAB);
    t->kind = kind;
    t->n_vocab = n_vocab;
    t->bos_id = t->eos_id = t->unk_id = t->pad_id = -1;
    t->use_regex = 1;
    size_t n = (size_t)n_vocab;
    t->piece_off = calloc(n, sizeof *t->piece_off);
    t->piece_len = calloc(n, sizeof *t->piece_len);
    t->scores = calloc(n, sizeof *t->scores);
    t->types = calloc(n, sizeof *t->types);
    t->text_cap = 8 * n + 64;
    t->text = malloc(t->text_cap);
    if (!t->piece_off || !t->piece_len || !t->scores || !t->types ||
        !t->text) {
        lm_tokenizer_free(t);
        return lm_errf(err, "out of memory for a %d-token vocabulary",
                       n_vocab);
    }
    for (int i = 0; i < 256; i++) t->byte_id[i] = -1;
    return 0;
}

int lm_tok_set_piece(lm_tokenizer *t, int id, const char *s, size_t len,
                     float score, int type, lm_err *err) {
    if (id < 0 || id >= t->n_vocab)
        return lm_errf(err, "token id %d out of range (vocabulary %d)", id,
                       t->n_vocab);
    if (t->types[id] != LM_TOKEN_NONE)
        return lm_errf(err, "token id %d given twice", id);
    if (type <= LM_TOKEN_NONE || type > LM_TOKEN_BYTE)
        return lm_errf(err, "token %d: type %d unknown", id, type);
    if (len > 65536)
        return lm_errf(err, "token %d: piece of %zu bytes is too long", id,
                       len);
    if (t->text_len + len + 1 > t->text_cap) {
        size_t cap = t->text_cap;
        while (cap < t->text_len + len + 1) cap *= 2;
        if (cap > MAX_ARENA)
            return lm_errf(err, "token %d: pieces exceed %zu bytes", id,
                           MAX_ARENA);
        char *p = realloc(t->text, cap);
        if (!p) return lm_errf(err, "out of memory for token pieces");
        t->text = p;
        t->text_cap = cap;
    }
    memcpy(t->text + t->text_len, s, len);
    t->piece_off[id] = t->text_len;
    t->piece_len[id] = (int)len;
    t->text[t->text_len + len] = 0;
    t->text_len += len + 1;
    t->scores[id] = score;
    t->types[id] = (uint8_t)type;
    return 0;
}

int lm_tok_index(lm_tokenizer *t, lm_err *err) {
    size_t size = table_size((size_t)t->n_vocab);
    free(t->piece_table);
    t->piece_table = malloc(size * sizeof *t->piece_table);
    if (!t->piece_table) return lm_errf(err, "out of memory for the index");
    memset(t->piece_table, 0xff, size * sizeof *t->piece_table);
    t->piece_mask = size - 1;
    for (int id = 0; id < t->n_vocab; id++) {
        if (t->types[id] == LM_TOKEN_NONE) continue;
        const char *s = t->text + t->piece_off[id];
        size_t n = (size_t)t->piece_len[id];
        size_t i = hash_bytes(s, n) & t->piece_mask;
        int dup = 0;
        for (; t->piece_table[i] >= 0; i = (i + 1) & t->piece_mask) {
            int32_t o = t->piece_table[i];
            if ((size_t)t->piece_len[o] == n &&
                memcmp(t->text + t->piece_off[o], s, n) == 0) {
                dup = 1;
                break;
            }
        }
        if (!dup) t->piece_table[i] = id;
    }
    return 0;
}

static int merge_table_insert(lm_tokenizer *t, int rank) {
    size_t i = hash_pair(t->merge_a[rank], t->merge_b[rank]) & t->merge_mask;
    for (; t->merge_table[i] >= 0; i = (i + 1) & t->merge_mask) {
        int32_t r = t->merge_table[i];
        if (t->merge_a[r] == t->merge_a[rank] &&
            t->merge_b[r] == t->merge_b[rank]) {
            t->merge_table[i] = rank; /* the later rank wins, as in HF */
            return 0;
        }
    }
    t->merge_table[i] = rank;
    return 1;
}

static int grow_merge_table(lm_tokenizer *t, size_t want, lm_err *err) {
    size_t size = table_size(want);
    if (t->merge_table && size <= t->merge_mask + 1) return 0;
    int32_t *tab = malloc(size * sizeof *tab);
    if (!tab) return lm_errf(err, "out of memory for the merge table");
    memset(tab, 0xff, size * sizeof *tab);
    free(t->merge_table);
    t->merge_table = tab;
    t->merge_mask = size - 1;
    for (int r = 0; r < t->n_merges; r++) merge_table_insert(t, r);
    return 0;
}

int lm_tok_add_merge(lm_tokenizer *t, int a, int b, lm_err *err) {
    if (a < 0 || a >= t->n_vocab || b < 0 || b >= t->n_vocab ||
        t->types[a] == LM_TOKEN_NONE || t->types[b] == LM_TOKEN_NONE)
        return lm_errf(err, "merge %d: token ids %d %d not in the vocabulary",
                       t->n_merges, a, b);
    size_t la = (size_t)t->piece_len[a], lb = (size_t)t->piece_len[b];
    char stack[256], *cat = la + lb <= sizeof stack ? stack : malloc(la + lb);
    if (!cat) return lm_errf(err, "out of memory");
    memcpy(cat, t->text + t->piece_off[a], la);
    memcpy(cat + la, t->text + t->piece_off[b], lb);
    int out = lm_tokenizer_find(t, cat, la + lb);
    if (cat != stack) free(cat);
    if (out < 0)
        return lm_errf(err, "merge %d: \"%s\" + \"%s\" is not in the vocabulary",
                       t->n_merges, t->text + t->piece_off[a],
                       t->text + t->piece_off[b]);
    if (t->n_merges == t->merges_cap) {
        int cap = t->merges_cap ? 2 * t->merges_cap : 1024;
        if (cap > MAX_VOCAB * 4) return lm_errf(err, "too many merges");
        int32_t *na = realloc(t->merge_a, (size_t)cap * sizeof *na);
        if (na) t->merge_a = na;
        int32_t *nb = realloc(t->merge_b, (size_t)cap * sizeof *nb);
        if (nb) t->merge_b = nb;
        int32_t *no = realloc(t->merge_out, (size_t)cap * sizeof *no);
        if (no) t->merge_out = no;
        if (!na || !nb || !no) return lm_errf(err, "out of memory for merges");
        t->merges_cap = cap;
    }
    if (grow_merge_table(t, (size_t)t->n_merges + 1, err) != 0) return -1;
    int r = t->n_merges++;
    t->merge_a[r] = a;
    t->merge_b[r] = b;
    t->merge_out[r] = out;
    merge_table_insert(t, r);
    return 0;
}

int lm_tok_add_added(lm_tokenizer *t, int id, int flags, lm_err *err) {
    if (id < 0 || id >= t->n_vocab || t->types[id] == LM_TOKEN_NONE)
        return lm_errf(err, "added token id %d not in the vocabulary", id);
    for (int i = 0; i < t->n_added; i++)
        if (t->added[i] == id) {
            t->added_flags[i] = (uint8_t)flags;
            return 0;
        }
    int32_t *na = realloc(t->added, (size_t)(t->n_added + 1) * sizeof *na);
    if (na) t->added = na;
    uint8_t *nf = realloc(t->added_flags, (size_t)(t->n_added + 1));
    if (nf) t->added_flags = nf;
    if (!na || !nf) return lm_errf(err, "out of memory for added tokens");
    t->added[t->n_added] = id;
    t->added_flags[t->n_added] = (uint8_t)flags;
    t->n_added++;
    return 0;
}

/* "<0x41>" -> 0x41 for the six-byte byte-fallback spelling, else -1. */
static int byte_token_value(const char *p, int n) {
    static const char hex[] = "0123456789ABCDEF";
    if (n != 6 || memcmp(p, "<0x", 3) != 0 || p[5] != '>') return -1;
    const char *h = strchr(hex, p[3]), *l = strchr(hex, p[4]);
    if (!h || !l || !*h || !*l) return -1;
    return (int)((h - hex) * 16 + (l - hex));
}

/* What token id decodes to, appended to t->dec. */
static int build_dec(lm_tokenizer *t, int id, int32_t *rev) {
    const char *p = t->text + t->piece_off[id];
    int n = t->piece_len[id], k = 0;
    char *out = t->dec + t->dec_off[id];
    if (t->types[id] == LM_TOKEN_NONE) {
        t->dec_len[id] = 0;
        return 0;
    }
    if (t->kind == LM_TOK_BYTE_BPE) {
        /* Every character back to its byte; a piece with a character
         * outside the alphabet (an added token like "<s> x") is raw. */
        for (int i = 0; i < n;) {
            uint32_t cp;
            i += lm_utf8_decode(p + i, (size_t)(n - i), &cp);
            if (cp >= 512 || rev[cp] < 0) {
                memcpy(out, p, (size_t)n);
                t->dec_len[id] = n;
                return 0;
            }
            out[k++] = (char)rev[cp];
        }
        t->dec_len[id] = k;
        return 0;
    }
    int v = t->types[id] == LM_TOKEN_BYTE ? byte_token_value(p, n) : -1;
    if (v >= 0) {
        out[0] = (char)v;
        t->dec_len[id] = 1;
        return 0;
    }
    for (int i = 0; i < n;) {
        if (i + META_LEN <= n && memcmp(p + i, META, META_LEN) == 0) {
            out[k++] = ' ';
            i += META_LEN;
        } else {
            out[k++] = p[i++];
        }
    }
    t->dec_len[id] = k;
    return 0;
}

static int added_order(const lm_tokenizer *t, int32_t a, int32_t b) {
    unsigned char ca = t->piece_len[a] ? (unsigned char)t->text[t->piece_off[a]] : 0;
    unsigned char cb = t->piece_len[b] ? (unsigned char)t->text[t->piece_off[b]] : 0;
    if (ca != cb) return ca < cb ? -1 : 1;
    if (t->piece_len[a] != t->piece_len[b])
        return t->piece_len[a] > t->piece_len[b] ? -1 : 1;
    return a < b ? -1 : a > b;
}

int lm_tok_build_end(lm_tokenizer *t, lm_err *err) {
    if (!t->piece_table && lm_tok_index(t, err) != 0) return -1;

    /* Byte tables. */
    for (int b = 0; b < 256; b++) t->byte_id[b] = -1;
    if (t->kind == LM_TOK_BYTE_BPE) {
        for (int b = 0; b < 256; b++) {
            char u[4];
            int n = lm_utf8_encode(lm_tok_byte_char(b), u);
            t->byte_id[b] = lm_tokenizer_find(t, u, (size_t)n);
        }
    } else {
        for (int id = 0; id < t->n_vocab; id++) {
            int v = byte_token_value(t->text + t->piece_off[id],
                                     t->piece_len[id]);
            if (v >= 0 && t->types[id] != LM_TOKEN_NONE &&
                t->byte_id[v] < 0) {
                t->byte_id[v] = id;
                if (t->types[id] == LM_TOKEN_NORMAL)
                    t->types[id] = LM_TOKEN_BYTE;
            }
        }
    }

    if (t->kind == LM_TOK_SPM_BPE && build_bigrams(t, err) != 0) return -1;

    /* Decoded bytes of every token: never longer than the piece. */
    t->dec = malloc(t->text_len + 1);
    t->dec_off = malloc((size_t)t->n_vocab * sizeof *t->dec_off);
    t->dec_len = malloc((size_t)t->n_vocab * sizeof *t->dec_len);
    if (!t->dec || !t->dec_off || !t->dec_len)
        return lm_errf(err, "out of memory for the decode table");
    int32_t rev[512];
    for (int i = 0; i < 512; i++) rev[i] = -1;
    for (int b = 0; b < 256; b++) rev[lm_tok_byte_char(b)] = b;
    for (int id = 0; id < t->n_vocab; id++) {
        t->dec_off[id] = t->piece_off[id];
        build_dec(t, id, rev);
    }

    /* Added tokens by first byte, longest first, so matching at a position
     * tries only the tokens that can start there. Insertion sort: there
     * are few. */
    for (int i = 1; i < t->n_added; i++) {
        int32_t id = t->added[i];
        uint8_t f = t->added_flags[i];
        int j = i - 1;
        while (j >= 0 && added_order(t, t->added[j], id) > 0) {
            t->added[j + 1] = t->added[j];
            t->added_flags[j + 1] = t->added_flags[j];
            j--;
        }
        t->added[j + 1] = id;
        t->added_flags[j + 1] = f;
    }
    int k = 0;
    for (int c = 0; c < 256; c++) {
        t->added_start[c] = k;
        while (k < t->n_added) {
            int32_t id = t->added[k];
            unsigned char first =
                t->piece_len[id] ? (unsigned char)t->text[t->piece_off[id]] : 0;
            if (first != c) break;
            k++;
        }
    }
    t->added_start[256] = t->n_added;

    if (t->bos_id >= t->n_vocab || t->eos_id >= t->n_vocab ||
        t->unk_id >= t->n_vocab || t->pad_id >= t->n_vocab)
        return lm_errf(err, "special token id out of range (bos %d, eos %d, "
                       "unk %d, pad %d; vocabulary %d)", t->bos_id, t->eos_id,
                       t->unk_id, t->pad_id, t->n_vocab);
    if (t->add_bos && t->bos_id < 0) t->add_bos = 0;
    if (t->add_eos && t->eos_id < 0) t->add_eos = 0;
    return 0;
}

/* ------------------------------------------------------- the merge engine */

typedef struct sym {
    int32_t id;
    int start, len;     /* bytes of the word; len 0 once merged away */
    int prev, next;
    int fixed;          /* byte fallback / unknown: never merged */
} sym;

typedef struct cand {
    double key;         /* rank, or -score */
    int left, right;
    int32_t a, b, out;
} cand;

typedef struct ivec {
    int *v;
    size_t n, cap;
} ivec;

/* Per-call scratch: encode never writes to the tokenizer. */
typedef struct enc {
    const lm_tokenizer *t;
    ivec *out;
    sym *syms;
    size_t nsyms, syms_cap;
    cand *heap;
    size_t nheap, heap_cap;
    char *buf;          /* the normalized segment */
    size_t buf_cap;
    lm_err *err;
} enc;

static int push_id(enc *e, int id) {
    ivec *o = e->out;
    if (o->n == o->cap) {
        size_t cap = o->cap ? 2 * o->cap : 64;
        int *v = realloc(o->v, cap * sizeof *v);
        if (!v) return lm_errf(e->err, "out of memory for token ids");
        o->v = v;
        o->cap = cap;
    }
    o->v[o->n++] = id;
    return 0;
}

static int ensure_buf(enc *e, size_t n) {
    if (n <= e->buf_cap) return 0;
    size_t cap = e->buf_cap ? e->buf_cap : 256;
    while (cap < n) cap *= 2;
    char *b = realloc(e->buf, cap);
    if (!b) return lm_errf(e->err, "out of memory for %zu bytes", n);
    e->buf = b;
    e->buf_cap = cap;
    return 0;
}

static int add_sym(enc *e, int32_t id, int start, int len, int fixed) {
    if (e->nsyms == e->syms_cap) {
        size_t cap = e->syms_cap ? 2 * e->syms_cap : 64;
        sym *s = realloc(e->syms, cap * sizeof *s);
        if (!s) return lm_errf(e->err, "out of memory for symbols");
        e->syms = s;
        e->syms_cap = cap;
    }
    sym *s = &e->syms[e->nsyms];
    s->id = id;
    s->start = start;
    s->len = len;
    s->prev = (int)e->nsyms - 1;
    s->next = -1;
    s->fixed = fixed;
    if (e->nsyms > 0) e->syms[e->nsyms - 1].next = (int)e->nsyms;
    e->nsyms++;
    return 0;
}

static int cand_less(const cand *x, const cand *y) {
    if (x->key != y->key) return x->key < y->key;
    return x->left < y->left;
}

static int heap_push(enc *e, cand c) {
    if (e->nheap == e->heap_cap) {
        size_t cap = e->heap_cap ? 2 * e->heap_cap : 64;
        cand *h = realloc(e->heap, cap * sizeof *h);
        if (!h) return lm_errf(e->err, "out of memory for the merge heap");
        e->heap = h;
        e->heap_cap = cap;
    }
    size_t i = e->nheap++;
    while (i > 0) {
        size_t p = (i - 1) / 2;
        if (!cand_less(&c, &e->heap[p])) break;
        e->heap[i] = e->heap[p];
        i = p;
    }
    e->heap[i] = c;
    return 0;
}

static cand heap_pop(enc *e) {
    cand top = e->heap[0], last = e->heap[--e->nheap];
    size_t i = 0, n = e->nheap;
    for (;;) {
        size_t c = 2 * i + 1;
        if (c >= n) break;
        if (c + 1 < n && cand_less(&e->heap[c + 1], &e->heap[c])) c++;
        if (!cand_less(&e->heap[c], &last)) break;
        e->heap[i] = e->heap[c];
        i = c;
    }
    if (n > 0) e->heap[i] = last;
    return top;
}

/* Queues the merge of symbols l and r (neighbours) if there is one. */
static int try_pair(enc *e, const char *word, int l, int r) {
    if (l < 0 || r < 0) return 0;
    const lm_tokenizer *t = e->t;
    const sym *a = &e->syms[l], *b = &e->syms[r];
    if (a->fixed || b->fixed) return 0;
    cand c = {0, l, r, a->id, b->id, -1};
    if (t->merge_by_score) {
        int id = lm_tokenizer_find(t, word + a->start, (size_t)(a->len + b->len));
        if (id < 0 || (t->types[id] != LM_TOKEN_NORMAL &&
                       t->types[id] != LM_TOKEN_USER))
            return 0;
        c.key = -(double)t->scores[id];
        c.out = id;
    } else {
        int rank = find_merge(t, a->id, b->id);
        if (rank < 0) return 0;
        c.key = rank;
        c.out = t->merge_out[rank];
    }
    return heap_push(e, c);
}

/* Merges the symbols of `word` (already in e->syms) and emits their ids. */
static int merge_and_emit(enc *e, const char *word) {
    e->nheap = 0;
    for (size_t i = 0; i + 1 < e->nsyms; i++)
        if (try_pair(e, word, (int)i, (int)i + 1) != 0) return -1;
    while (e->nheap > 0) {
        cand c = heap_pop(e);
        sym *l = &e->syms[c.left], *r = &e->syms[c.right];
        /* Stale if either side has changed since it was queued: a symbol's
         * piece only grows, so an unchanged id means an unchanged symbol. */
        if (l->len == 0 || r->len == 0 || l->next != c.right ||
            l->id != c.a || r->id != c.b)
            continue;
        l->id = c.out;
        l->len += r->len;
        l->next = r->next;
        if (r->next >= 0) e->syms[r->next].prev = c.left;
        r->len = 0;
        if (try_pair(e, word, l->prev, c.left) != 0 ||
            try_pair(e, word, c.left, l->next) != 0)
            return -1;
    }
    for (int i = e->nsyms ? 0 : -1; i >= 0; i = e->syms[i].next)
        if (push_id(e, e->syms[i].id) != 0) return -1;
    return 0;
}

/* ------------------------------------------------------ byte-level family */

static int is_space_at(const char *s, size_t n, size_t *len) {
    uint32_t cp;
    *len = (size_t)lm_utf8_decode(s, n, &cp);
    return cp != LM_UTF8_INVALID && lm_unicode_is_space(cp);
}

enum { CLS_SPACE, CLS_LETTER, CLS_NUMBER, CLS_OTHER };

static int char_class(const char *s, size_t n, size_t *len) {
    uint32_t cp;
    *len = (size_t)lm_utf8_decode(s, n, &cp);
    if (cp == LM_UTF8_INVALID) return CLS_OTHER;
    if (lm_unicode_is_space(cp)) return CLS_SPACE;
    if (lm_unicode_is_letter(cp)) return CLS_LETTER;
    if (lm_unicode_is_number(cp)) return CLS_NUMBER;
    return CLS_OTHER;
}

/* The end of a run of characters of class cls starting at i. */
static size_t run_end(const char *s, size_t n, size_t i, int cls) {
    while (i < n) {
        size_t l;
        if (char_class(s + i, n - i, &l) != cls) break;
        i += l;
    }
    return i;
}

size_t lm_tokenizer_gpt2_split(const char *s, size_t n) {
    if (n == 0) return 0;
    size_t l;
    /* 's|'t|'re|'ve|'m|'ll|'d */
    if (s[0] == '\'' && n >= 2) {
        char c = s[1];
        if (c == 's' || c == 't' || c == 'm' || c == 'd') return 2;
        if (n >= 3 && ((c == 'r' && s[2] == 'e') || (c == 'v' && s[2] == 'e') ||
                       (c == 'l' && s[2] == 'l')))
            return 3;
    }
    /*  ?\p{L}+ |  ?\p{N}+ |  ?[^\s\p{L}\p{N}]+ */
    size_t i = (s[0] == ' ' && n > 1) ? 1 : 0;
    int cls = char_class(s + i, n - i, &l);
    if (cls != CLS_SPACE) return run_end(s, n, i + l, cls);
    /* \s+(?!\S) | \s+ : a run of white space, less its last character when
     * a non-space follows, so that character can lead the next word. */
    size_t end = 0, last = 0;
    while (end < n && is_space_at(s + end, n - end, &l)) {
        last = end;
        end += l;
    }
    if (end < n && last > 0) return last;
    return end;
}

/* One pre-token through byte-level BPE. */
static int bpe_bytes(enc *e, const char *w, size_t n) {
    const lm_tokenizer *t = e->t;
    if (t->ignore_merges) {
        /* Spell the word in the byte-level alphabet and look it up. */
        if (ensure_buf(e, 2 * n + 1) != 0) return -1;
        size_t k = 0;
        for (size_t i = 0; i < n; i++)
            k += (size_t)lm_utf8_encode(lm_tok_byte_char((unsigned char)w[i]),
                                        e->buf + k);
        int id = lm_tokenizer_find(t, e->buf, k);
        if (id >= 0) return push_id(e, id);
    }
    e->nsyms = 0;
    for (size_t i = 0; i < n; i++) {
        int32_t id = t->byte_id[(unsigned char)w[i]];
        if (id < 0) {
            if (t->unk_id < 0) continue; /* HF drops what it cannot spell */
            if (add_sym(e, t->unk_id, (int)i, 1, 1) != 0) return -1;
            continue;
        }
        if (add_sym(e, id, (int)i, 1, 0) != 0) return -1;
    }
    return merge_and_emit(e, w);
}

static int encode_byte_level(enc *e, const char *s, size_t n) {
    const lm_tokenizer *t = e->t;
    char *copy = NULL;
    if (t->add_prefix_space && s[0] != ' ') {
        /* HF ByteLevel(add_prefix_space): the pre-tokens must see " " + s. */
        if (!(copy = malloc(n + 1))) return lm_errf(e->err, "out of memory");
        copy[0] = ' ';
        memcpy(copy + 1, s, n);
        s = copy;
        n++;
    }
    int rc = 0;
    if (!t->use_regex) {
        rc = bpe_bytes(e, s, n);
    } else {
        for (size_t i = 0; i < n && rc == 0;) {
            size_t l = lm_tokenizer_gpt2_split(s + i, n - i);
            rc = bpe_bytes(e, s + i, l);
            i += l;
        }
    }
    free(copy);
    return rc;
}

/* ----------------------------------------------------- SentencePiece family */

/* One word (already normalized: spaces are "▁") through BPE on characters.
 * The word is cut into chunks wherever two neighbouring characters never
 * sit side by side in a piece, or a character could not be spelled: no
 * merge crosses such a place, so each chunk is merged on its own. */
static int bpe_chars(enc *e, const char *w, size_t n) {
    const lm_tokenizer *t = e->t;
    if (t->ignore_merges) {
        int id = lm_tokenizer_find(t, w, n);
        if (id >= 0) return push_id(e, id);
    }
    e->nsyms = 0;
    int pending_unk = 0; /* the last symbol is an unknown run to fuse into */
    int prev_fixed = 0;
    uint32_t prev_cp = 0;
    for (size_t i = 0, l; i < n; i += l) {
        uint32_t cp;
        l = (size_t)lm_utf8_decode(w + i, n - i, &cp);
        int id = lm_tokenizer_find(t, w + i, l);
        if (id >= 0 && t->merge_by_score && t->types[id] != LM_TOKEN_NORMAL &&
            t->types[id] != LM_TOKEN_USER)
            id = -1;
        int bytes = id < 0 && t->byte_fallback;
        for (size_t j = 0; bytes && j < l; j++)
            bytes = t->byte_id[(unsigned char)w[i + j]] >= 0;
        int unk = id < 0 && !bytes && t->unk_id >= 0;
        if (id < 0 && !bytes && !unk) {
            /* Dropped, as HF does without <unk>: its neighbours meet. A
             * merge by score looks pieces up in the text, where they do
             * not meet, so there the word is cut instead. */
            if (t->merge_by_score && e->nsyms > 0) {
                if (merge_and_emit(e, w) != 0) return -1;
                e->nsyms = 0;
            }
            pending_unk = 0;
            continue;
        }
        int fuse = unk && pending_unk && t->fuse_unk;
        if (e->nsyms > 0 && !fuse &&
            (id < 0 || prev_fixed || !has_bigram(t, bigram_key(prev_cp, cp)))) {
            if (merge_and_emit(e, w) != 0) return -1;
            e->nsyms = 0;
        }
        prev_cp = cp;
        prev_fixed = id < 0;
        pending_unk = unk;
        if (id >= 0) {
            if (add_sym(e, id, (int)i, (int)l, 0) != 0) return -1;
        } else if (bytes) {
            for (size_t j = 0; j < l; j++)
                if (add_sym(e, t->byte_id[(unsigned char)w[i + j]], (int)(i + j), 1,
                            1) != 0)
                    return -1;
        } else if (fuse) {
            e->syms[e->nsyms - 1].len += (int)l;
        } else if (add_sym(e, t->unk_id, (int)i, (int)l, 1) != 0) {
            return -1;
        }
    }
    return merge_and_emit(e, w);
}

static int encode_spm(enc *e, const char *s, size_t n, int at_start) {
    const lm_tokenizer *t = e->t;
    if (n == 0) return 0;
    int starts_meta = s[0] == ' ' || (n >= META_LEN && !memcmp(s, META, META_LEN));
    int prefix = 0;
    switch (t->prefix) {
    case LM_TOK_PREFIX_ALWAYS: prefix = 1; break;
    case LM_TOK_PREFIX_META_ALWAYS: prefix = !starts_meta; break;
    /* Hugging Face's Metaspace("first") skips the "▁" when the text
     * already starts with a space; SentencePiece, which these models were
     * trained with (and transformers' slow tokenizer), never does. We
     * follow SentencePiece: the ids are the ones the model saw. */
    case LM_TOK_PREFIX_META_FIRST: prefix = at_start; break;
    default: break;
    }
    size_t spaces = 0;
    for (size_t i = 0; i < n; i++) spaces += s[i] == ' ';
    size_t need = n + 2 * spaces + (prefix ? META_LEN : 0);
    if (need > (size_t)0x7fffffff)
        return lm_errf(e->err, "text segment of %zu bytes is too long", n);
    if (ensure_buf(e, need + 1) != 0) return -1;
    char *b = e->buf;
    size_t k = 0;
    if (prefix) {
        memcpy(b, META, META_LEN);
        k = META_LEN;
    }
    for (size_t i = 0; i < n; i++) {
        if (s[i] == ' ') {
            memcpy(b + k, META, META_LEN);
            k += META_LEN;
        } else {
            b[k++] = s[i];
        }
    }
    if (!t->split_on_space) return bpe_chars(e, b, k);
    /* Metaspace split: every "▁" opens a new word. */
    size_t start = 0;
    for (size_t i = META_LEN; i + META_LEN <= k; i++)
        if (!memcmp(b + i, META, META_LEN)) {
            if (bpe_chars(e, b + start, i - start) != 0) return -1;
            start = i;
            i += META_LEN - 1;
        }
    return bpe_chars(e, b + start, k - start);
}

/* ------------------------------------------------------------- encoding */

static int encode_segment(enc *e, const char *s, size_t n, int at_start) {
    if (n == 0) return 0;
    if (e->t->kind == LM_TOK_BYTE_BPE) return encode_byte_level(e, s, n);
    return encode_spm(e, s, n, at_start);
}

static int is_word_char(const char *s, size_t n) {
    size_t l;
    if (s[0] == '_') return 1;
    int c = char_class(s, n, &l);
    return c == CLS_LETTER || c == CLS_NUMBER;
}

/* The start of the character that ends at s[end], not before `floor`. */
static size_t prev_char(const char *s, size_t floor, size_t end) {
    size_t i = end - 1;
    while (i > floor && end - i < 4 && ((unsigned char)s[i] & 0xC0) == 0x80)
        i--;
    uint32_t cp;
    if ((size_t)lm_utf8_decode(s + i, end - i, &cp) != end - i) return end - 1;
    return i;
}

/* The longest added token at text[i] (the list is longest first per first
 * byte); its length, or 0. */
static size_t match_added(const lm_tokenizer *t, const char *text, size_t len,
                          size_t i, int parse_special, int *id, int *flags) {
    unsigned char c = (unsigned char)text[i];
    for (int k = t->added_start[c]; k < t->added_start[c + 1]; k++) {
        int32_t a = t->added[k];
        size_t n = (size_t)t->piece_len[a];
        if (n == 0 || n > len - i) continue;
        if (!parse_special && t->types[a] == LM_TOKEN_CONTROL) continue;
        if (memcmp(text + i, t->text + t->piece_off[a], n) != 0) continue;
        if (t->added_flags[k] & LM_ADDED_SINGLE_WORD) {
            if (i > 0) {
                size_t p = prev_char(text, 0, i);
                if (is_word_char(text + p, i - p)) continue;
            }
            if (i + n < len && is_word_char(text + i + n, len - i - n))
                continue;
        }
        *id = a;
        *flags = t->added_flags[k];
        return n;
    }
    return 0;
}

int lm_tokenizer_encode_ex(const lm_tokenizer *t, const char *text,
                           size_t len, const lm_tok_encode_opts *opts,
                           int **ids, int *n_ids, lm_err *err) {
    *ids = NULL;
    *n_ids = 0;
    if (!t->n_vocab || !t->dec) return lm_errf(err, "tokenizer not loaded");
    if (len > (size_t)0x3fffffff)
        return lm_errf(err, "text of %zu bytes is too long to encode", len);
    if (!text && len) return lm_errf(err, "text is NULL");
    int add_bos = opts && opts->add_bos != LM_TOK_DEFAULT ? opts->add_bos
                                                          : t->add_bos;
    int add_eos = opts && opts->add_eos != LM_TOK_DEFAULT ? opts->add_eos
                                                          : t->add_eos;
    int parse_special = !opts || opts->parse_special != 0;
    ivec out = {0};
    enc e = {.t = t, .out = &out, .err = err};
    int rc = 0;
    if (add_bos) {
        if (t->bos_id < 0) {
            rc = lm_errf(err, "add_bos asked but the tokenizer has no BOS");
            goto done;
        }
        if ((rc = push_id(&e, t->bos_id)) != 0) goto done;
    }
    size_t seg = 0, i = 0;
    while (i < len) {
        int id, flags;
        size_t n = t->n_added ? match_added(t, text, len, i, parse_special,
                                            &id, &flags)
                              : 0;
        if (n == 0) {
            i++;
            continue;
        }
        size_t s = i, end = i + n, l;
        if (flags & LM_ADDED_LSTRIP)
            while (s > seg) {
                size_t p = prev_char(text, seg, s);
                if (!is_space_at(text + p, s - p, &l)) break;
                s = p;
            }
        if (flags & LM_ADDED_RSTRIP)
            while (end < len && is_space_at(text + end, len - end, &l))
                end += l;
        if ((rc = encode_segment(&e, text + seg, s - seg, seg == 0)) != 0 ||
            (rc = push_id(&e, id)) != 0)
            goto done;
        seg = i = end;
    }
    if ((rc = encode_segment(&e, text + seg, len - seg, seg == 0)) != 0)
        goto done;
    if (add_eos) {
        if (t->eos_id < 0) {
            rc = lm_errf(err, "add_eos asked but the tokenizer has no EOS");
            goto done;
        }
        rc = push_id(&e, t->eos_id);
    }
done:
    free(e.syms);
    free(e.heap);
    free(e.buf);
    if (rc != 0) {
        free(out.v);
        return -1;
    }
    if (out.n > (size_t)0x7fffffff) {
        free(out.v);
        return lm_errf(err, "too many tokens");
    }
    if (!out.v) out.v = malloc(sizeof(int)); /* a valid pointer even for 0 */
    if (!out.v) return lm_errf(err, "out of memory");
    *ids = out.v;
    *n_ids = (int)out.n;
    return 0;
}

int lm_tokenizer_encode(const lm_tokenizer *t, const char *text, size_t len,
                        int add_bos, int **ids, int *n_ids, lm_err *err) {
    lm_tok_encode_opts o = {add_bos, LM_TOK_DEFAULT, LM_TOK_DEFAULT};
    return lm_tokenizer_encode_ex(t, text, len, &o, ids, n_ids, err);
}

/* ------------------------------------------------------------- decoding */

int lm_tokenizer_decode(const lm_tokenizer *t, const int *ids, int n_ids,
                        int skip_special, char **text, size_t *len,
                        lm_err *err) {
    *text = NULL;
    if (len) *len = 0;
    if (!t->dec) return lm_errf(err, "tokenizer not loaded");
    if (n_ids < 0) return lm_errf(err, "negative token count %d", n_ids);
    size_t total = 0;
    for (int i = 0; i < n_ids; i++) {
        if (ids[i] < 0 || ids[i] >= t->n_vocab)
            return lm_errf(err, "token %d at position %d out of range "
                           "(vocabulary %d)", ids[i], i, t->n_vocab);
        total += (size_t)t->dec_len[ids[i]];
    }
    char *out = malloc(total + 1);
    if (!out) return lm_errf(err, "out of memory for %zu bytes", total);
    size_t k = 0;
    int first = 1;
    for (int i = 0; i < n_ids; i++) {
        int id = ids[i];
        if (skip_special && t->types[id] == LM_TOKEN_CONTROL) continue;
        const char *p = t->dec + t->dec_off[id];
        size_t n = (size_t)t->dec_len[id];
        /* The dummy prefix's space, once, at the very start (HF's Strip
         * decoder after Fuse; SentencePiece's DecodeIds). */
        if (first && n > 0) {
            if (t->strip_leading_space && p[0] == ' ') {
                p++;
                n--;
            }
            first = 0;
        }
        memcpy(out + k, p, n);
        k += n;
    }
    out[k] = 0;
    *text = out;
    if (len) *len = k;
    return 0;
}

const char *lm_tokenizer_token_text(const lm_tokenizer *t, int prev, int id,
                                    size_t *len) {
    *len = 0;
    if (!t->dec || id < 0 || id >= t->n_vocab) return NULL;
    const char *p = t->dec + t->dec_off[id];
    size_t n = (size_t)t->dec_len[id];
    if ((prev < 0 || prev == t->bos_id) && t->strip_leading_space && n > 0 &&
        p[0] == ' ') {
        p++;
        n--;
    }
    *len = n;
    return p;
}

const char *lm_tokenizer_piece(const lm_tokenizer *t, int id, int *len) {
    if (!t->text || id < 0 || id >= t->n_vocab) {
        if (len) *len = 0;
        return NULL;
    }
    if (len) *len = t->piece_len[id];
    return t->text + t->piece_off[id];
}

/* --------------------------------------------------- llama2.c tokenizer.bin */

int lm_tokenizer_load_llama2c_mem(lm_tokenizer *t, const uint8_t *buf,
                                  size_t len, int vocab_size,
                                  const char *name, lm_err *err) {
    memset(t, 0, sizeof *t);
    if (!name) name = "tokenizer.bin";
    if (vocab_size < 0 || vocab_size > MAX_VOCAB)
        return lm_errf(err, "%s: vocab_size %d out of range", name, vocab_size);
    if (len < 4)
        return lm_errf(err, "%s: %zu bytes, too short for max_token_length",
                       name, len);
    int32_t max_len;
    memcpy(&max_len, buf, 4);
    if (max_len <= 0 || max_len > 65536)
        return lm_errf(err, "%s: max_token_length %d out of range (1..65536)",
                       name, max_len);
    /* First pass: count and check the entries. */
    size_t off = 4;
    int n = 0;
    while (off < len && (vocab_size == 0 || n < vocab_size)) {
        if (len - off < 8)
            return lm_errf(err, "%s: token %d truncated at offset %zu (header "
                           "needs 8 bytes, %zu left)", name, n, off, len - off);
        int32_t l;
        memcpy(&l, buf + off + 4, 4);
        if (l < 0 || l > 65536 || (size_t)l > len - off - 8)
            return lm_errf(err, "%s: token %d at offset %zu: length %d does "
                           "not fit the %zu bytes left", name, n, off, l,
                           len - off - 8);
        off += 8 + (size_t)l;
        if (++n > MAX_VOCAB)
            return lm_errf(err, "%s: more than %d tokens", name, MAX_VOCAB);
    }
    if (vocab_size && n < vocab_size)
        return lm_errf(err, "%s: %d tokens, expected vocab_size %d", name, n,
                       vocab_size);
    if (n == 0) return lm_errf(err, "%s: no tokens", name);
    if (lm_tok_build_begin(t, LM_TOK_SPM_BPE, n, err) != 0)
        return lm_err_prefix(err, "%s: ", name);
    /* llama2.c stores spaces as ' '; we keep SentencePiece's "▁" so the
     * vocabulary reads the same as tokenizer.model, tokenizer.json and
     * GGUF, and encode can treat all of them alike. */
    char *piece = malloc(3 * 65536 + 1);
    if (!piece) {
        lm_tokenizer_free(t);
        return lm_errf(err, "%s: out of memory", name);
    }
    off = 4;
    for (int id = 0; id < n; id++) {
        float score;
        int32_t l;
        memcpy(&score, buf + off, 4);
        memcpy(&l, buf + off + 4, 4);
        const char *p = (const char *)buf + off + 8;
        off += 8 + (size_t)l;
        size_t k = 0;
        for (int i = 0; i < l; i++) {
            if (p[i] == ' ') {
                memcpy(piece + k, META, META_LEN);
                k += META_LEN;
            } else {
                piece[k++] = p[i];
            }
        }
        int type = LM_TOKEN_NORMAL;
        /* llama2.c has no token types; Llama's vocabulary puts <unk>, <s>
         * and </s> at 0, 1, 2, and llama2.c's export spells the last two
         * "\n<s>\n" and "\n</s>\n" (for printing). We keep the
         * SentencePiece names. */
        const char *name = piece;
        if (id == 0 && k == 5 && !memcmp(piece, "<unk>", 5)) type = LM_TOKEN_UNKNOWN;
        if (id == 1 && ((k == 3 && !memcmp(piece, "<s>", 3)) ||
                        (k == 5 && !memcmp(piece, "\n<s>\n", 5))))
            type = LM_TOKEN_CONTROL, name = "<s>", k = 3;
        if (id == 2 && ((k == 4 && !memcmp(piece, "</s>", 4)) ||
                        (k == 6 && !memcmp(piece, "\n</s>\n", 6))))
            type = LM_TOKEN_CONTROL, name = "</s>", k = 4;
        if (lm_tok_set_piece(t, id, name, k, score, type, err) != 0) {
            free(piece);
            lm_tokenizer_free(t);
            return lm_err_prefix(err, "%s: ", name);
        }
    }
    free(piece);
    t->merge_by_score = 1;
    t->prefix = LM_TOK_PREFIX_ALWAYS;
    t->strip_leading_space = 1;
    t->byte_fallback = 1;
    if (t->types[0] == LM_TOKEN_UNKNOWN) t->unk_id = 0;
    if (n > 1 && t->types[1] == LM_TOKEN_CONTROL) t->bos_id = 1, t->add_bos = 1;
    if (n > 2 && t->types[2] == LM_TOKEN_CONTROL) t->eos_id = 2;
    if ((t->bos_id >= 0 && lm_tok_add_added(t, t->bos_id, 0, err) != 0) ||
        (t->eos_id >= 0 && lm_tok_add_added(t, t->eos_id, 0, err) != 0) ||
        lm_tok_index(t, err) != 0 || lm_tok_build_end(t, err) != 0) {
        lm_tokenizer_free(t);
        return lm_err_prefix(err, "%s: ", name);
    }
    return 0;
}

int lm_tokenizer_load_llama2c(lm_tokenizer *t, const char *path,
                              int vocab_size, lm_err *err) {
    char *buf;
    size_t len;
    memset(t, 0, sizeof *t);
    if (lm_tok_read_file(path, &buf, &len, err) != 0) return -1;
    int rc = lm_tokenizer_load_llama2c_mem(t, (const uint8_t *)buf, len,
                                           vocab_size, path, err);
    free(buf);
    return rc;
}

/* ------------------------------------------------------------ dispatching */

int lm_tokenizer_load(lm_tokenizer *t, const char *path, lm_err *err) {
    memset(t, 0, sizeof *t);
    struct stat st;
    if (stat(path, &st) != 0)
        return lm_errf(err, "%s: %s", path, strerror(errno));
    if (S_ISDIR(st.st_mode)) return lm_tokenizer_load_hf(t, path, err);
    FILE *f = fopen(path, "rb");
    if (!f) return lm_errf(err, "%s: cannot open: %s", path, strerror(errno));
    char head[64];
    size_t n = fread(head, 1, sizeof head, f);
    fclose(f);
    if (n >= 4 && !memcmp(head, "GGUF", 4))
        return lm_tokenizer_load_gguf(t, path, err);
    size_t i = 0;
    while (i < n && (head[i] == ' ' || head[i] == '\n' || head[i] == '\r' ||
                     head[i] == '\t'))
        i++;
    if (i < n && head[i] == '{') return lm_tokenizer_load_hf(t, path, err);
    return lm_tokenizer_load_llama2c(t, path, 0, err);
}
