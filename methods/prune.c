/* Pruning as a removal method (removal-methods.md section 3).
 *
 * One method, `prune`, several kinds:
 *  - magnitude: unstructured; every linear weight matrix of the decoder
 *    blocks (q, k, v, o, gate, up, down; GPT-2's fused c_attn counts as one)
 *    loses the fraction `ratio` of its entries with the smallest |w|, ties
 *    to the lower flat index (3.2). scope=global ranks all matrices at once.
 *  - wanda: unstructured, score |w_ij| * ||x_j||_2 with the input's norms
 *    over the calibration batch, pruned per output row (3.2's option).
 *  - l1, l2, random, taylor: LLM-Pruner's block-wise structured pruning
 *    (3.1). Attention heads and MLP channels are ranked per layer by their
 *    group importance (removal.h) and the least important removed; a
 *    layer loses n = C - int(C (1 - ratio)) channels of each kind, for
 *    heads floor(n / head_dim) whole heads.
 * Structured pruning zeroes instead of cutting (the spec's [DESIGN]): a
 * pruned head's q/k/v rows (and biases) and o_proj columns, a pruned
 * channel's gate/up rows (and bias) and down_proj column. The outputs are
 * those of the smaller model, the shapes stay, and the result loads as the
 * same architecture. With grouped-query attention a k/v head is zeroed only
 * when every query head sharing it is.
 *
 * Taylor and wanda read calibration text: the data set "corpus" (the
 * benchmark's clean text; smudge remove supplies the world's corpus.txt by
 * default), or chats rendered as "Human: q\nAssistant: a", tokenised with
 * the model's tokenizer, cut into calib_n windows of calib_len tokens at
 * offsets drawn from the seed. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "dataset.h"
#include "method.h"
#include "qa_train.h"
#include "removal.h"
#include "rng.h"
#include "tokenizer.h"

static const sm_param_def prune_params[] = {
    {"kind", SM_PARAM_CHOICE, "magnitude", 0, 0, "magnitude|wanda|l1|l2|random|taylor",
     "magnitude/wanda: unstructured, per matrix (row for wanda); l1/l2/random/taylor: "
     "whole heads and MLP channels zeroed (shapes kept)"},
    {"ratio", SM_PARAM_FLOAT, "0.2", 0, 1, NULL,
     "unstructured: fraction of entries zeroed; structured: channel sparsity inside "
     "each pruned layer (LLM-Pruner's pruning_ratio)"},
    {"scope", SM_PARAM_CHOICE, "local", 0, 0, "local|global",
     "local: per matrix / per layer (the spec); global: one ranking over every pruned "
     "matrix / layer"},
    {"layer_start", SM_PARAM_INT, "-1", -1, 1 << 20, NULL,
     "first pruned layer; -1: 0 for unstructured, structured 3 when L >= 8 else 1"},
    {"layer_end", SM_PARAM_INT, "-1", -1, 1 << 20, NULL,
     "one past the last pruned layer; -1: L for unstructured, L - 1 for structured"},
    {"attention", SM_PARAM_BOOL, "true", 0, 0, NULL, "structured: prune attention heads"},
    {"mlp", SM_PARAM_BOOL, "true", 0, 0, NULL, "structured: prune MLP channels"},
    {"taylor", SM_PARAM_CHOICE, "param_mix", 0, 0,
     "param_mix|param_first|param_second|vectorize",
     "Taylor score: w g - w F w / 2, w g, w F w (sums of |s|), or |sum of w g|"},
    {"calib_n", SM_PARAM_INT, "10", 1, 4096, NULL, "calibration sequences (taylor, wanda)"},
    {"calib_len", SM_PARAM_INT, "64", 2, 1 << 20, NULL, "tokens per calibration sequence"},
    {"seed", SM_PARAM_INT, "-1", -1, 9007199254740991.0, NULL,
     "random scores and calibration windows; -1: the cell seed"},
};
static const char *const prune_data[] = {"corpus", NULL};

/* ---- choosing the smallest ---- */

/* A non-negative float orders as its bit pattern; NaN goes last. */
static uint32_t key_of(float x) {
    x = fabsf(x);
    if (isnan(x)) return 0x7f800000u;
    uint32_t u;
    memcpy(&u, &x, sizeof u);
    return u;
}

typedef struct prune_seg {
    float *w;
    const float *score; /* NULL: |w| */
    size_t n;
} prune_seg;

static size_t count_below(const prune_seg *s, int nseg, uint32_t t, int or_equal) {
    size_t c = 0;
    for (int i = 0; i < nseg; i++)
        for (size_t j = 0; j < s[i].n; j++) {
            uint32_t k = key_of(s[i].score ? s[i].score[j] : s[i].w[j]);
            c += or_equal ? k <= t : k < t;
        }
    return c;
}

/* Zeroes the k entries with the smallest keys over the segments taken in
 * order, ties to the earlier one. The threshold is found by bisection over
 * the keys' bit patterns (32 passes, no copy of the weights). */
static void zero_smallest(prune_seg *s, int nseg, size_t k) {
    size_t total = 0;
    for (int i = 0; i < nseg; i++) total += s[i].n;
    if (k == 0) return;
    if (k > total) k = total;
    uint32_t lo = 0, hi = 0x7f800000u; /* smallest t with count(<= t) >= k */
    while (lo < hi) {
        uint32_t mid = lo + (hi - lo) / 2;
        if (count_below(s, nseg, mid, 1) >= k) hi = mid;
        else lo = mid + 1;
    }
    size_t ties = k - count_below(s, nseg, lo, 0);
    for (int i = 0; i < nseg; i++)
        for (size_t j = 0; j < s[i].n; j++) {
            uint32_t key = key_of(s[i].score ? s[i].score[j] : s[i].w[j]);
            if (key < lo) s[i].w[j] = 0.0f;
            else if (key == lo && ties > 0) {
                s[i].w[j] = 0.0f;
                ties--;
            }
        }
}

static size_t round_count(double ratio, size_t n) {
    double k = floor(ratio * (double)n + 0.5);
    return k <= 0 ? 0 : k >= (double)n ? n : (size_t)k;
}

size_t sm_prune_smallest(float *w, const float *score, size_t n, double ratio) {
    prune_seg s = {w, score, n};
    size_t k = round_count(ratio, n);
    zero_smallest(&s, 1, k);
    return k;
}

/* ---- the linear layers of a block ---- */

/* Where the q, k or v rows of a layer live: their own matrix, or a slice
 * of GPT-2's fused c_attn. */
typedef struct qkv_part {
    lm_tensor *w, *b;
    int row0;
} qkv_part;

static qkv_part attn_part(const lm_model *m, const lm_layer *L, int which) {
    int HD = m->cfg.n_heads * m->cfg.head_dim, KD = m->cfg.n_kv_heads * m->cfg.head_dim;
    if (L->qkv.w) {
        int off[3] = {0, HD, HD + KD};
        return (qkv_part){L->qkv.w, L->qkv.b, off[which]};
    }
    const lm_linear *lin = which == 0 ? &L->q : which == 1 ? &L->k : &L->v;
    return (qkv_part){lin->w, lin->b, 0};
}

/* The block's weight matrices, in table order of the layer. */
static int block_linears(const lm_layer *L, lm_tensor **out) {
    const lm_linear *all[] = {&L->q, &L->k, &L->v, &L->qkv, &L->o, &L->gate, &L->up, &L->down};
    int n = 0;
    for (size_t i = 0; i < sizeof all / sizeof all[0]; i++)
        if (all[i]->w) out[n++] = all[i]->w;
    return n;
}

/* ---- structured importance ---- */

/* Adds each channel's score of rows [row0, row0 + nrows) of t (one channel
 * per row) or of its columns (one per column) into acc. g and f are the
 * gradient and Fisher arrays laid out as t (taylor only). */
static void channel_scores(sm_prune_kind kind, sm_taylor_mode mode, const lm_tensor *t,
                           const float *g, const float *f, int row0, int nrows, int by_col,
                           double *acc) {
    int cols = t->shape[1];
    for (int r = row0; r < row0 + nrows; r++) {
        const float *w = t->data + (size_t)r * cols;
        const float *gr = g ? g + (size_t)r * cols : NULL, *fr = f ? f + (size_t)r * cols : NULL;
        double row = 0.0;
        for (int c = 0; c < cols; c++) {
            double x = w[c], e;
            if (kind == SM_PRUNE_L1) e = fabs(x);
            else if (kind == SM_PRUNE_L2) e = x * x;
            else {
                double s = mode == SM_TAYLOR_SECOND ? x * fr[c] * x
                           : mode == SM_TAYLOR_MIX  ? x * gr[c] - 0.5 * x * fr[c] * x
                                                    : x * gr[c];
                e = mode == SM_TAYLOR_VECTORIZE ? s : fabs(s);
            }
            if (by_col) acc[c] += e;
            else row += e;
        }
        if (!by_col) acc[r - row0] += row;
    }
}

void sm_prune_scores_free(sm_prune_scores *s) {
    free(s->head);
    free(s->chan);
    memset(s, 0, sizeof *s);
}

/* g = mean of the per-sequence gradients, F = mean of their squares, for
 * every block matrix (gs/fs indexed by table position). */
static int taylor_gradients(lm_model *m, const int32_t *calib, int n, int T, int need_f,
                            float **gs, float **fs, lm_err *err) {
    if (!calib || n < 1 || T < 2)
        return lm_errf(err, "taylor needs calibration sequences of at least 2 tokens");
    if (!m->params[0].grad && lm_model_alloc_grads(m, err)) return -1;
    for (int l = 0; l < m->cfg.n_layers; l++) {
        lm_tensor *ts[8];
        int k = block_linears(&m->layers[l], ts);
        for (int i = 0; i < k; i++) {
            size_t idx = (size_t)(ts[i] - m->params);
            gs[idx] = calloc(ts[i]->numel, sizeof(float));
            if (need_f) fs[idx] = calloc(ts[i]->numel, sizeof(float));
            if (!gs[idx] || (need_f && !fs[idx])) return lm_errf(err, "out of memory for Taylor scores");
        }
    }
    lm_acts a;
    if (lm_acts_build(&a, m, 1, T, 1, err)) return -1;
    int32_t *targets = malloc((size_t)T * sizeof *targets);
    int rc = targets ? 0 : lm_errf(err, "out of memory");
    for (int j = 0; j < n && rc == 0; j++) {
        const int32_t *ids = calib + (size_t)j * T;
        for (int t = 0; t < T; t++) targets[t] = t + 1 < T ? ids[t + 1] : -1;
        lm_model_zero_grads(m);
        rc = lm_forward(m, &a, ids, NULL, 1, T, err);
        if (rc == 0) {
            lm_loss(m, &a, targets, NULL, NULL);
            rc = lm_backward(m, &a, ids, targets, NULL, err);
        }
        for (int i = 0; rc == 0 && i < m->n_params; i++) {
            if (!gs[i]) continue;
            const float *gr = m->params[i].grad;
            for (size_t e = 0; e < m->params[i].numel; e++) {
                gs[i][e] += gr[e] / (float)n;
                if (fs[i]) fs[i][e] += gr[e] * gr[e] / (float)n;
            }
        }
    }
    free(targets);
    lm_acts_free(&a);
    return rc;
}

int sm_prune_score(lm_model *m, sm_prune_kind kind, sm_taylor_mode mode, const int32_t *calib,
                   int n, int T, uint64_t seed, sm_prune_scores *s, lm_err *err) {
    const lm_config *c = &m->cfg;
    int L = c->n_layers, H = c->n_heads, D = c->head_dim, F = c->ffn_dim,
        G = c->n_heads / c->n_kv_heads, HD = H * D;
    memset(s, 0, sizeof *s);
    s->n_layers = L;
    s->n_heads = H;
    s->ffn = F;
    s->head = calloc((size_t)L * H, sizeof *s->head);
    s->chan = calloc((size_t)L * F, sizeof *s->chan);
    double *ach = malloc((size_t)HD * sizeof *ach), *tmp = malloc((size_t)(HD > F ? HD : F) * sizeof *tmp);
    double *mch = malloc((size_t)F * sizeof *mch);
    float **gs = calloc((size_t)m->n_params, sizeof *gs), **fs = calloc((size_t)m->n_params, sizeof *fs);
    int rc = 0;
    if (!s->head || !s->chan || !ach || !tmp || !mch || !gs || !fs) rc = lm_errf(err, "out of memory");
    int need_f = mode == SM_TAYLOR_MIX || mode == SM_TAYLOR_SECOND;
    if (rc == 0 && kind == SM_PRUNE_TAYLOR)
        rc = taylor_gradients(m, calib, n, T, need_f, gs, fs, err);
    lm_rng rng;
    lm_rng_seed(&rng, seed);
    /* Group reduction over the coupled tensors: mean for the norms, sum for Taylor. */
    int mean = kind == SM_PRUNE_L1 || kind == SM_PRUNE_L2;
    for (int l = 0; rc == 0 && l < L; l++) {
        const lm_layer *ly = &m->layers[l];
        double *head = s->head + (size_t)l * H, *chan = s->chan + (size_t)l * F;
        if (kind == SM_PRUNE_RANDOM) {
            for (int i = 0; i < HD; i++) head[i / D] += lm_rng_uniform(&rng);
            for (int i = 0; i < F; i++) chan[i] = lm_rng_uniform(&rng);
            continue;
        }
        /* attention: q rows, k and v rows of the shared head, o columns */
        memset(ach, 0, (size_t)HD * sizeof *ach);
        for (int which = 0; which < 3; which++) {
            qkv_part p = attn_part(m, ly, which);
            size_t ti = (size_t)(p.w - m->params);
            int rows = which == 0 ? HD : c->n_kv_heads * D;
            memset(tmp, 0, (size_t)rows * sizeof *tmp);
            channel_scores(kind, mode, p.w, gs[ti], fs[ti], p.row0, rows, 0, tmp);
            for (int i = 0; i < HD; i++) {
                int src = which == 0 ? i : (i / D / G) * D + i % D;
                ach[i] += mode == SM_TAYLOR_VECTORIZE && kind == SM_PRUNE_TAYLOR ? fabs(tmp[src]) : tmp[src];
            }
        }
        {
            size_t ti = (size_t)(ly->o.w - m->params);
            memset(tmp, 0, (size_t)HD * sizeof *tmp);
            channel_scores(kind, mode, ly->o.w, gs[ti], fs[ti], 0, ly->o.w->shape[0], 1, tmp);
            for (int i = 0; i < HD; i++)
                ach[i] += mode == SM_TAYLOR_VECTORIZE && kind == SM_PRUNE_TAYLOR ? fabs(tmp[i]) : tmp[i];
        }
        for (int i = 0; i < HD; i++) head[i / D] += mean ? ach[i] / 4.0 : ach[i];
        /* MLP: gate and up rows, down columns */
        memset(mch, 0, (size_t)F * sizeof *mch);
        const lm_linear *mats[3] = {&ly->gate, &ly->up, &ly->down};
        int nt = 0;
        for (int k = 0; k < 3; k++) {
            if (!mats[k]->w) continue;
            size_t ti = (size_t)(mats[k]->w - m->params);
            int by_col = k == 2;
            memset(tmp, 0, (size_t)F * sizeof *tmp);
            channel_scores(kind, mode, mats[k]->w, gs[ti], fs[ti], 0,
                           by_col ? mats[k]->w->shape[0] : F, by_col, tmp);
            for (int i = 0; i < F; i++)
                mch[i] += mode == SM_TAYLOR_VECTORIZE && kind == SM_PRUNE_TAYLOR ? fabs(tmp[i]) : tmp[i];
            nt++;
        }
        for (int i = 0; i < F; i++) chan[i] = mean ? mch[i] / nt : mch[i];
    }
    for (int i = 0; gs && i < m->n_params; i++) {
        free(gs[i]);
        free(fs[i]);
    }
    free(gs);
    free(fs);
    free(ach);
    free(tmp);
    free(mch);
    if (rc) sm_prune_scores_free(s);
    return rc;
}

/* ---- zeroing heads and channels ---- */

static void zero_rows(lm_tensor *t, lm_tensor *b, int row0, int n) {
    memset(t->data + (size_t)row0 * t->shape[1], 0, (size_t)n * t->shape[1] * sizeof(float));
    if (b) memset(b->data + row0, 0, (size_t)n * sizeof(float));
}

static void zero_cols(lm_tensor *t, int col0, int n) {
    for (int r = 0; r < t->shape[0]; r++)
        memset(t->data + (size_t)r * t->shape[1] + col0, 0, (size_t)n * sizeof(float));
}

static void zero_head(lm_model *m, int l, int h) {
    int D = m->cfg.head_dim;
    qkv_part q = attn_part(m, &m->layers[l], 0);
    zero_rows(q.w, q.b, q.row0 + h * D, D);
    zero_cols(m->layers[l].o.w, h * D, D);
}

static void zero_kv_head(lm_model *m, int l, int g) {
    int D = m->cfg.head_dim;
    for (int which = 1; which < 3; which++) {
        qkv_part p = attn_part(m, &m->layers[l], which);
        zero_rows(p.w, p.b, p.row0 + g * D, D);
    }
}

static void zero_channel(lm_model *m, int l, int c) {
    lm_layer *L = &m->layers[l];
    if (L->gate.w) zero_rows(L->gate.w, L->gate.b, c, 1);
    zero_rows(L->up.w, L->up.b, c, 1);
    zero_cols(L->down.w, c, 1);
}

typedef struct ranked {
    double s;
    int layer, index;
} ranked;

static int by_score(const void *a, const void *b) {
    const ranked *x = a, *y = b;
    if (x->s != y->s) return x->s < y->s ? -1 : 1;
    if (x->layer != y->layer) return x->layer - y->layer;
    return x->index - y->index;
}

/* Per layer, LLM-Pruner removes n = C - int(C (1 - ratio)) channels. */
static int pruned_count(int C, double ratio) { return C - (int)((double)C * (1.0 - ratio)); }

/* Marks the `per_layer` lowest of each layer's `width` scores (or, global,
 * per_layer * layers lowest over all of them) in mark[layer * width + i]. */
static int select_lowest(const double *scores, int width, int l0, int l1, int per_layer,
                         int global, uint8_t *mark, lm_err *err) {
    int nl = l1 - l0;
    ranked *r = malloc((size_t)nl * width * sizeof *r);
    if (!r) return lm_errf(err, "out of memory");
    if (global) {
        for (int l = l0, k = 0; l < l1; l++)
            for (int i = 0; i < width; i++, k++) r[k] = (ranked){scores[(size_t)l * width + i], l, i};
        qsort(r, (size_t)nl * width, sizeof *r, by_score);
        for (long k = 0; k < (long)per_layer * nl; k++) mark[(size_t)r[k].layer * width + r[k].index] = 1;
    } else {
        for (int l = l0; l < l1; l++) {
            for (int i = 0; i < width; i++) r[i] = (ranked){scores[(size_t)l * width + i], l, i};
            qsort(r, (size_t)width, sizeof *r, by_score);
            for (int k = 0; k < per_layer; k++) mark[(size_t)l * width + r[k].index] = 1;
        }
    }
    free(r);
    return 0;
}

/* ---- calibration ---- */

/* calib_n windows of calib_len tokens from the "corpus" data set. */
static int load_calibration(const sm_input *in, int n, int T, uint64_t seed, int32_t **out,
                            lm_err *err) {
    const sm_data *d = sm_input_data(in, "corpus");
    if (!d) return lm_errf(err, "this kind needs calibration text: --data corpus=FILE");
    ds_format fmt = DS_FMT_AUTO;
    if (d->format && ds_format_parse(d->format, &fmt, err)) return -1;
    ds_dataset ds;
    if (ds_load(d->path, fmt, &ds, err)) return -1;
    lm_tokenizer tok;
    if (qt_load_tokenizer(in, &tok, err)) {
        ds_free(&ds);
        return -1;
    }
    int rc = 0;
    if (ds.kind == DS_KIND_MC)
        rc = lm_errf(err, "%s: calibration needs text or chats, not %s", d->path,
                     ds_format_name(ds.format));
    int32_t *stream = NULL;
    size_t len = 0, cap = 0;
    for (int i = 0; rc == 0 && i < ds.n; i++) {
        char *doc = NULL;
        if (ds.kind == DS_KIND_TEXT) doc = strdup(ds.docs[i].text);
        else {
            size_t need = strlen(ds.qa[i].question) + strlen(ds.qa[i].answer) + 32;
            if ((doc = malloc(need)))
                snprintf(doc, need, "Human: %s\nAssistant: %s", ds.qa[i].question, ds.qa[i].answer);
        }
        int *ids = NULL, k = 0;
        if (!doc) rc = lm_errf(err, "out of memory");
        if (rc == 0) rc = lm_tokenizer_encode(&tok, doc, strlen(doc), LM_TOK_DEFAULT, &ids, &k, err);
        free(doc);
        if (rc == 0 && len + (size_t)k > cap) {
            size_t nc = (len + (size_t)k) * 2 + 64;
            int32_t *ns = realloc(stream, nc * sizeof *ns);
            if (!ns) rc = lm_errf(err, "out of memory");
            else {
                stream = ns;
                cap = nc;
            }
        }
        for (int j = 0; rc == 0 && j < k; j++) stream[len++] = ids[j];
        free(ids);
    }
    if (rc == 0 && len < (size_t)T)
        rc = lm_errf(err, "%s holds %zu tokens, fewer than calib_len %d", d->path, len, T);
    int32_t *calib = rc == 0 ? malloc((size_t)n * T * sizeof *calib) : NULL;
    if (rc == 0 && !calib) rc = lm_errf(err, "out of memory");
    lm_rng rng;
    lm_rng_seed(&rng, seed ^ 0xca11b7a7e5eedULL);
    for (int j = 0; rc == 0 && j < n; j++) {
        size_t start = (size_t)lm_rng_below(&rng, len - (size_t)T + 1);
        memcpy(calib + (size_t)j * T, stream + start, (size_t)T * sizeof *calib);
    }
    for (size_t i = 0; rc == 0 && i < (size_t)n * T; i++)
        if (calib[i] < 0 || calib[i] >= in->model->cfg.vocab_size)
            rc = lm_errf(err, "calibration token %d is outside the model's vocabulary of %d",
                         calib[i], in->model->cfg.vocab_size);
    free(stream);
    lm_tokenizer_free(&tok);
    ds_free(&ds);
    if (rc) free(calib);
    else *out = calib;
    return rc;
}

/* ---- the kinds ---- */

static int prune_magnitude(lm_model *m, int l0, int l1, double ratio, int global, size_t *zeroed,
                           lm_err *err) {
    prune_seg *segs = malloc((size_t)(l1 - l0) * 8 * sizeof *segs);
    if (!segs) return lm_errf(err, "out of memory");
    int n = 0;
    size_t total = 0;
    for (int l = l0; l < l1; l++) {
        lm_tensor *ts[8];
        int k = block_linears(&m->layers[l], ts);
        for (int i = 0; i < k; i++) {
            segs[n++] = (prune_seg){ts[i]->data, NULL, ts[i]->numel};
            total += ts[i]->numel;
        }
    }
    *zeroed = 0;
    if (global) {
        *zeroed = round_count(ratio, total);
        zero_smallest(segs, n, *zeroed);
    } else {
        for (int i = 0; i < n; i++) *zeroed += sm_prune_smallest(segs[i].w, NULL, segs[i].n, ratio);
    }
    free(segs);
    return 0;
}

/* Wanda: |w_ij| * ||x_j|| per output row, the norms of each matrix's input
 * over the calibration tokens. */
static int prune_wanda(lm_model *m, int l0, int l1, double ratio, const int32_t *calib, int n,
                       int T, size_t *zeroed, lm_err *err) {
    const lm_config *c = &m->cfg;
    int C = c->d_model, HD = c->n_heads * c->head_dim, F = c->ffn_dim, L = c->n_layers;
    /* per layer: ||ln1||^2 [C], ||atty||^2 [HD], ||ln2||^2 [C], ||act||^2 [F] */
    size_t per = (size_t)2 * C + HD + F;
    double *sq = calloc((size_t)L * per, sizeof *sq);
    float *score = malloc((size_t)(C > HD ? (C > F ? C : F) : (HD > F ? HD : F)) * sizeof *score);
    lm_acts a;
    int rc = (!sq || !score) ? lm_errf(err, "out of memory") : lm_acts_build(&a, m, 1, T, 1, err);
    if (rc) {
        free(sq);
        free(score);
        return -1;
    }
    size_t cN = (size_t)T;
    for (int j = 0; rc == 0 && j < n; j++) {
        rc = lm_forward(m, &a, calib + (size_t)j * T, NULL, 1, T, err);
        for (int l = 0; rc == 0 && l < L; l++) {
            double *s = sq + (size_t)l * per;
            struct { const float *x; int w; double *acc; } in[4] = {
                {a.ln1 + (size_t)l * cN * C, C, s},
                {a.atty + (size_t)l * cN * HD, HD, s + C},
                {a.ln2 + (size_t)l * cN * C, C, s + C + HD},
                {a.ffn_act + (size_t)l * cN * F, F, s + 2 * C + HD},
            };
            for (int k = 0; k < 4; k++)
                for (int t = 0; t < T; t++)
                    for (int i = 0; i < in[k].w; i++) {
                        double x = in[k].x[(size_t)t * in[k].w + i];
                        in[k].acc[i] += x * x;
                    }
        }
    }
    lm_acts_free(&a);
    *zeroed = 0;
    for (int l = l0; rc == 0 && l < l1; l++) {
        lm_layer *ly = &m->layers[l];
        const double *s = sq + (size_t)l * per;
        struct { lm_tensor *w; const double *norm2; } mats[] = {
            {ly->q.w, s}, {ly->k.w, s}, {ly->v.w, s}, {ly->qkv.w, s}, {ly->o.w, s + C},
            {ly->gate.w, s + C + HD}, {ly->up.w, s + C + HD}, {ly->down.w, s + 2 * C + HD},
        };
        for (size_t k = 0; k < sizeof mats / sizeof mats[0]; k++) {
            lm_tensor *t = mats[k].w;
            if (!t) continue;
            int rows = t->shape[0], cols = t->shape[1];
            for (int r = 0; r < rows; r++) {
                float *w = t->data + (size_t)r * cols;
                for (int i = 0; i < cols; i++) score[i] = fabsf(w[i]) * (float)sqrt(mats[k].norm2[i]);
                *zeroed += sm_prune_smallest(w, score, (size_t)cols, ratio);
            }
        }
    }
    free(sq);
    free(score);
    return rc;
}

static double seconds_now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec * 1e-9;
}

static int prune_run(const sm_input *in, lm_err *err) {
    const sm_params *p = in->params;
    lm_model *m = in->model;
    const lm_config *c = &m->cfg;
    const char *kind = sm_param_str(p, "kind");
    double ratio = sm_param_float(p, "ratio");
    int global = !strcmp(sm_param_str(p, "scope"), "global");
    int structured = strcmp(kind, "magnitude") && strcmp(kind, "wanda");
    int64_t ps = sm_param_int(p, "seed");
    uint64_t seed = ps < 0 ? in->seed : (uint64_t)ps;
    int L = c->n_layers;
    /* The layer range: LLM-Pruner skips the first 3 and the last layer. */
    int l0 = 0, l1 = L;
    if (structured) {
        l0 = L >= 8 ? 3 : 1;
        l1 = L - 1;
        if (l0 >= l1) { /* too few layers for the rule: every layer */
            l0 = 0;
            l1 = L;
        }
    }
    if (sm_param_int(p, "layer_start") >= 0) l0 = (int)sm_param_int(p, "layer_start");
    if (sm_param_int(p, "layer_end") >= 0) l1 = (int)sm_param_int(p, "layer_end");
    if (l0 < 0 || l1 > L || l0 >= l1)
        return lm_errf(err, "prune: layers [%d, %d) are not a range inside the model's %d", l0, l1, L);
    int n_calib = (int)sm_param_int(p, "calib_n"), T = (int)sm_param_int(p, "calib_len");
    int32_t *calib = NULL;
    if ((!strcmp(kind, "taylor") || !strcmp(kind, "wanda"))) {
        if (T > c->max_pos)
            return lm_errf(err, "prune: calib_len %d exceeds the model's context of %d", T, c->max_pos);
        in->rep->progress(in->rep->ctx, 0.0, "tokenising the calibration text");
        if (load_calibration(in, n_calib, T, seed, &calib, err))
            return lm_err_prefix(err, "prune: ");
    }
    double t0 = seconds_now();
    size_t zeroed = 0;
    int heads_pruned = 0, kv_pruned = 0, chans_pruned = 0, rc = 0;
    if (!strcmp(kind, "magnitude")) {
        in->rep->progress(in->rep->ctx, 0.1, "zeroing the smallest weights");
        rc = prune_magnitude(m, l0, l1, ratio, global, &zeroed, err);
    } else if (!strcmp(kind, "wanda")) {
        in->rep->progress(in->rep->ctx, 0.1, "activation norms and Wanda scores");
        rc = prune_wanda(m, l0, l1, ratio, calib, n_calib, T, &zeroed, err);
        in->rep->cost(in->rep->ctx, "wanda calibration", seconds_now() - t0, (double)n_calib * T,
                      2.0 * (double)lm_model_param_count(m) * n_calib * T);
    } else {
        sm_prune_kind k = !strcmp(kind, "l1") ? SM_PRUNE_L1 : !strcmp(kind, "l2") ? SM_PRUNE_L2
                          : !strcmp(kind, "random") ? SM_PRUNE_RANDOM : SM_PRUNE_TAYLOR;
        const char *tm = sm_param_str(p, "taylor");
        sm_taylor_mode mode = !strcmp(tm, "param_first") ? SM_TAYLOR_FIRST
                              : !strcmp(tm, "param_second") ? SM_TAYLOR_SECOND
                              : !strcmp(tm, "vectorize") ? SM_TAYLOR_VECTORIZE : SM_TAYLOR_MIX;
        in->rep->progress(in->rep->ctx, 0.1, "group importance");
        sm_prune_scores s = {0};
        rc = sm_prune_score(m, k, mode, calib, n_calib, T, seed, &s, err);
        if (k == SM_PRUNE_TAYLOR && rc == 0)
            in->rep->cost(in->rep->ctx, "taylor gradients", seconds_now() - t0, (double)n_calib * T,
                          6.0 * (double)lm_model_param_count(m) * n_calib * T);
        int H = c->n_heads, D = c->head_dim, F = c->ffn_dim, G = H / c->n_kv_heads;
        uint8_t *hm = calloc((size_t)L * H, 1), *cm = calloc((size_t)L * F, 1);
        if (rc == 0 && (!hm || !cm)) rc = lm_errf(err, "out of memory");
        if (rc == 0 && sm_param_bool(p, "attention"))
            rc = select_lowest(s.head, H, l0, l1, pruned_count(H * D, ratio) / D, global, hm, err);
        if (rc == 0 && sm_param_bool(p, "mlp"))
            rc = select_lowest(s.chan, F, l0, l1, pruned_count(F, ratio), global, cm, err);
        for (int l = 0; rc == 0 && l < L; l++) {
            for (int h = 0; h < H; h++)
                if (hm[(size_t)l * H + h]) {
                    zero_head(m, l, h);
                    heads_pruned++;
                }
            for (int g = 0; g < c->n_kv_heads; g++) {
                int all = 1;
                for (int h = g * G; h < (g + 1) * G; h++) all &= hm[(size_t)l * H + h];
                if (all) {
                    zero_kv_head(m, l, g);
                    kv_pruned++;
                }
            }
            for (int i = 0; i < F; i++)
                if (cm[(size_t)l * F + i]) {
                    zero_channel(m, l, i);
                    chans_pruned++;
                }
        }
        free(hm);
        free(cm);
        sm_prune_scores_free(&s);
    }
    free(calib);
    if (rc) return lm_err_prefix(err, "prune: ");
    in->rep->progress(in->rep->ctx, 0.9, "saving the pruned model");
    if (lm_model_save_hf(m, in->out_dir, err)) return -1;
    /* What was removed, beside the weights. */
    char path[4200];
    snprintf(path, sizeof path, "%s/prune.json", in->out_dir);
    FILE *f = fopen(path, "w");
    if (!f) return lm_errf(err, "cannot write %s", path);
    fprintf(f, "{\"kind\": \"%s\", \"ratio\": %.17g, \"scope\": \"%s\", \"layers\": [%d, %d], "
               "\"zeroed_weights\": %zu, \"heads\": %d, \"kv_heads\": %d, \"mlp_channels\": %d}\n",
            kind, ratio, global ? "global" : "local", l0, l1, zeroed, heads_pruned, kv_pruned,
            chans_pruned);
    if (fclose(f)) return lm_errf(err, "cannot write %s", path);
    in->rep->progress(in->rep->ctx, 1.0, "done");
    return 0;
}

const sm_method sm_method_prune = {
    .abi = SM_METHOD_ABI,
    .name = "prune",
    .description = "pruning: unstructured magnitude/Wanda, or LLM-Pruner structured l1/l2/"
                   "random/taylor that zeroes whole heads and MLP channels (shapes kept)",
    .params = prune_params,
    .n_params = sizeof prune_params / sizeof prune_params[0],
    .wants_data = prune_data,
    .output = SM_OUT_MODEL,
    .run = prune_run,
};
