#include "generate.h"

#include <float.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

/* ---- the cache ---- */

int lm_kv_build(lm_kv_cache *c, const lm_model *m, int B, int cap,
                lm_err *err) {
    memset(c, 0, sizeof *c);
    const lm_config *cf = &m->cfg;
    if (B <= 0 || cap <= 0)
        return lm_errf(err, "KV cache of %d x %d positions", B, cap);
    if (cap > cf->max_pos) cap = cf->max_pos;
    size_t L = cf->n_layers, C = cf->d_model, V = cf->vocab_size,
           F = cf->ffn_dim, HD = (size_t)cf->n_heads * cf->head_dim,
           KD = (size_t)cf->n_kv_heads * cf->head_dim;
    size_t R = (size_t)(cap > B ? cap : B);
    size_t cache = L * (size_t)B * cap * KD;
    struct { float **p; size_t n; } plan[] = {
        {&c->k, cache}, {&c->v, cache},
        {&c->x, R * C}, {&c->ln, R * C + 2 * R}, {&c->q, R * HD},
        {&c->kn, R * KD}, {&c->vn, R * KD}, {&c->atty, R * HD},
        {&c->gate, lm_uses_swiglu(cf) ? R * F : 0}, {&c->up, R * F},
        {&c->act, R * F}, {&c->last, (size_t)B * C + 2 * (size_t)B},
        {&c->logits, 0},
    };
    size_t total = 0;
    for (size_t i = 0; i < sizeof plan / sizeof plan[0]; i++) total += plan[i].n;
    (void)V;
    c->memory = malloc(total * sizeof(float) + 2 * R * sizeof(int32_t));
    c->len = calloc((size_t)B, sizeof *c->len);
    if (!c->memory || !c->len) {
        lm_kv_free(c);
        return lm_errf(err, "out of memory: KV cache of %zu MiB",
                       total * 4 >> 20);
    }
    float *p = c->memory;
    for (size_t i = 0; i < sizeof plan / sizeof plan[0]; i++) {
        *plan[i].p = plan[i].n ? p : NULL;
        p += plan[i].n;
    }
    c->pos = (int32_t *)p;
    c->wpos = c->pos + R;
    c->B = B;
    c->cap = cap;
    c->rows = (int)R;
    return 0;
}

void lm_kv_free(lm_kv_cache *c) {
    if (!c) return;
    free(c->memory);
    free(c->len);
    memset(c, 0, sizeof *c);
}

void lm_kv_reset(lm_kv_cache *c) { memset(c->len, 0, (size_t)c->B * sizeof *c->len); }

void lm_kv_truncate(lm_kv_cache *c, int b, int len) {
    if (b >= 0 && b < c->B && len >= 0 && len < c->len[b]) c->len[b] = len;
}

/* A run of consecutive new rows that belong to one sequence. */
typedef struct kv_segment {
    int seq, start, count;
} kv_segment;

/* Runs the new rows of every segment through the model, appending their
 * keys and values to the cache, and writes the logits after each segment's
 * last row into logits [nseg, V]. */
static int forward_segments(lm_model *m, lm_kv_cache *c, const kv_segment *segs,
                            int nseg, const int32_t *ids, float *logits,
                            lm_err *err) {
    lm_backend *be = m->be;
    const lm_config *cf = &m->cfg;
    int C = cf->d_model, H = cf->n_heads, KVH = cf->n_kv_heads,
        D = cf->head_dim, F = cf->ffn_dim, HD = H * D, KD = KVH * D;
    int N = 0;
    for (int s = 0; s < nseg; s++) {
        const kv_segment *g = &segs[s];
        if (g->seq < 0 || g->seq >= c->B)
            return lm_errf(err, "sequence %d outside the cache's %d", g->seq,
                           c->B);
        if (g->start + g->count > c->cap)
            return lm_errf(err, "sequence %d would reach %d tokens, past the "
                                "cache's %d (the model's context)",
                           g->seq, g->start + g->count, c->cap);
        for (int i = 0; i < g->count; i++) {
            c->pos[N] = g->start + i;
            c->wpos[N] = g->start + i + m->pos_offset;
            N++;
        }
    }
    if (N > c->rows)
        return lm_errf(err, "%d rows exceed the cache's scratch of %d", N,
                       c->rows);
    for (int i = 0; i < N; i++)
        if (ids[i] < 0 || ids[i] >= cf->vocab_size)
            return lm_errf(err, "token id %d is outside the vocabulary [0, %d)",
                           ids[i], cf->vocab_size);

    /* A decode step of a small model is a chain of tiny matrix-vector
     * products: forking a team per op costs more than it saves (and far
     * more when the cores are shared), so such steps run on one thread. */
    int saved_threads = -1;
    if (N <= 4 && be->set_threads && lm_model_param_count(m) < (size_t)64 << 20)
        saved_threads = be->set_threads(be->ctx, 1);
    float *mean = c->ln + (size_t)N * C, *rstd = mean + N;
    be->embedding_forward(be->ctx, c->x, ids, c->wpos, m->wte->data,
                          m->wpe ? m->wpe->data : NULL, N, C);
    for (int l = 0; l < cf->n_layers; l++) {
        const lm_layer *L = &m->layers[l];
        lm_norm_forward(m, c->ln, mean, rstd, c->x, L->ln1_w, L->ln1_b, N);
        lm_qkv_forward(be, L, c->q, c->kn, c->vn, c->ln, N);
        if (lm_uses_rope(cf)) {
            be->rope_forward(be->ctx, c->q, c->pos, N, H, D, cf->rope_theta);
            be->rope_forward(be->ctx, c->kn, c->pos, N, KVH, D, cf->rope_theta);
        }
        int row = 0;
        for (int s = 0; s < nseg; s++) {
            const kv_segment *g = &segs[s];
            size_t base = (((size_t)l * c->B + g->seq) * c->cap) * KD;
            float *kc = c->k + base, *vc = c->v + base;
            memcpy(kc + (size_t)g->start * KD, c->kn + (size_t)row * KD,
                   (size_t)g->count * KD * sizeof(float));
            memcpy(vc + (size_t)g->start * KD, c->vn + (size_t)row * KD,
                   (size_t)g->count * KD * sizeof(float));
            be->attention_forward(be->ctx, c->atty + (size_t)row * HD, NULL,
                                  c->q + (size_t)row * HD, kc, vc, 1, g->count,
                                  g->start + g->count, H, KVH, D,
                                  (size_t)c->cap * KD, cf->sliding_window);
            row += g->count;
        }
        lm_linear_forward(be, &L->o, c->x, c->atty, N, 1);
        lm_norm_forward(m, c->ln, mean, rstd, c->x, L->ln2_w, L->ln2_b, N);
        size_t NF = (size_t)N * F;
        if (lm_uses_swiglu(cf)) {
            lm_linear_forward(be, &L->gate, c->gate, c->ln, N, 0);
            lm_linear_forward(be, &L->up, c->up, c->ln, N, 0);
            be->swiglu_forward(be->ctx, c->act, c->gate, c->up, NF);
        } else {
            lm_linear_forward(be, &L->up, c->up, c->ln, N, 0);
            if (cf->arch == LM_ARCH_GPT2)
                be->gelu_forward(be->ctx, c->act, c->up, NF);
            else
                be->relu_forward(be->ctx, c->act, c->up, NF);
        }
        lm_linear_forward(be, &L->down, c->x, c->act, N, 1);
    }
    /* Only each segment's last row needs the (vocabulary-sized) head. */
    int row = 0;
    for (int s = 0; s < nseg; s++) {
        row += segs[s].count;
        memcpy(c->last + (size_t)s * C, c->x + (size_t)(row - 1) * C,
               (size_t)C * sizeof(float));
    }
    float *lmean = c->last + (size_t)c->B * C, *lrstd = lmean + c->B;
    lm_norm_forward(m, c->last, lmean, lrstd, c->last, m->lnf_w, m->lnf_b,
                    nseg);
    be->matmul_forward(be->ctx, logits, c->last, m->lm_head->data, NULL, nseg,
                       C, cf->vocab_size, 0);
    for (int s = 0; s < nseg; s++) c->len[segs[s].seq] = segs[s].start + segs[s].count;
    if (saved_threads > 0) be->set_threads(be->ctx, saved_threads);
    return 0;
}

int lm_kv_prefill(lm_model *m, lm_kv_cache *c, int b, const int32_t *ids,
                  int n, float *logits, lm_err *err) {
    if (b < 0 || b >= c->B) return lm_errf(err, "sequence %d outside the cache", b);
    if (n <= 0) return lm_errf(err, "prefill of %d tokens", n);
    kv_segment g = {b, c->len[b], n};
    return forward_segments(m, c, &g, 1, ids, logits, err);
}

int lm_kv_step(lm_model *m, lm_kv_cache *c, const int *seqs,
               const int32_t *ids, int nb, float *logits, lm_err *err) {
    if (nb <= 0 || nb > c->B) return lm_errf(err, "step over %d sequences", nb);
    kv_segment segs[nb];
    for (int i = 0; i < nb; i++) {
        if (seqs[i] < 0 || seqs[i] >= c->B)
            return lm_errf(err, "sequence %d outside the cache", seqs[i]);
        segs[i] = (kv_segment){seqs[i], c->len[seqs[i]], 1};
    }
    return forward_segments(m, c, segs, nb, ids, logits, err);
}

/* ---- sampling ---- */

void lm_sampler_init(lm_sampler *s, float temperature, int top_k, float top_p,
                     uint64_t seed) {
    s->temperature = temperature;
    s->top_k = top_k;
    s->top_p = top_p;
    lm_rng_seed(&s->rng, seed);
}

int32_t lm_argmax(const float *logits, int V) {
    int32_t best = 0;
    for (int i = 1; i < V; i++)
        if (logits[i] > logits[best]) best = i;
    return best;
}

typedef struct prob_index {
    float p;
    int32_t i;
} prob_index;

static int by_prob_desc(const void *a, const void *b) {
    const prob_index *x = a, *y = b;
    if (x->p != y->p) return x->p < y->p ? 1 : -1;
    return x->i - y->i;
}

int32_t lm_sample(lm_sampler *s, const float *logits, int V) {
    if (s->temperature <= 0.0f) return lm_argmax(logits, V);
    prob_index *pi = malloc((size_t)V * sizeof *pi);
    if (!pi) return lm_argmax(logits, V);
    float mx = -FLT_MAX;
    for (int i = 0; i < V; i++) mx = fmaxf(mx, logits[i]);
    double sum = 0.0;
    for (int i = 0; i < V; i++) {
        pi[i].p = expf((logits[i] - mx) / s->temperature);
        pi[i].i = i;
        sum += pi[i].p;
    }
    int n = V;
    int filtered = (s->top_k > 0 && s->top_k < V) || (s->top_p > 0.0f && s->top_p < 1.0f);
    if (filtered) {
        qsort(pi, (size_t)V, sizeof *pi, by_prob_desc);
        if (s->top_k > 0 && s->top_k < n) n = s->top_k;
        double kept = 0.0;
        for (int i = 0; i < n; i++) kept += pi[i].p;
        if (s->top_p > 0.0f && s->top_p < 1.0f) {
            /* The smallest prefix whose mass reaches top_p (at least one). */
            double acc = 0.0;
            int cut = n;
            for (int i = 0; i < n; i++) {
                acc += pi[i].p / kept;
                if (acc >= s->top_p) {
                    cut = i + 1;
                    break;
                }
            }
            n = cut;
        }
        sum = 0.0;
        for (int i = 0; i < n; i++) sum += pi[i].p;
    }
    double r = (double)lm_rng_uniform(&s->rng) * sum, acc = 0.0;
    int32_t pick = pi[n - 1].i;
    for (int i = 0; i < n; i++) {
        acc += pi[i].p;
        if (r < acc) {
            pick = pi[i].i;
            break;
        }
    }
    free(pi);
    return pick;
}

/* ---- generation ---- */

static int is_stop(const lm_gen_opts *o, int32_t tok) {
    if (tok == o->eos_id) return 1;
    for (int i = 0; i < o->n_extra_stop && i < 4; i++)
        if (tok == o->extra_stop[i]) return 1;
    return 0;
}

int lm_generate(lm_model *m, const int32_t *const *prompts,
                const int *prompt_len, int nb, const lm_gen_opts *opts,
                int32_t **out, int *n_out, lm_err *err) {
    int V = m->cfg.vocab_size, maxp = 0;
    for (int i = 0; i < nb; i++) {
        out[i] = NULL;
        n_out[i] = 0;
        if (prompt_len[i] <= 0)
            return lm_errf(err, "prompt %d is empty (start it with BOS)", i);
        if (prompt_len[i] > maxp) maxp = prompt_len[i];
    }
    int cap = maxp + opts->max_new;
    if (cap > m->cfg.max_pos) cap = m->cfg.max_pos;
    if (maxp > cap) return lm_errf(err, "a prompt of %d tokens exceeds the model's context of %d", maxp, m->cfg.max_pos);
    lm_kv_cache c;
    if (lm_kv_build(&c, m, nb, cap, err)) return -1;
    float *logits = malloc((size_t)nb * V * sizeof(float));
    int *active = malloc((size_t)nb * sizeof *active);
    int32_t *next = malloc((size_t)nb * sizeof *next);
    int32_t **hist = calloc((size_t)nb, sizeof *hist);
    int rc = 0;
    if (!logits || !active || !next || !hist) {
        rc = lm_errf(err, "out of memory");
        goto done;
    }
    lm_sampler sampler = opts->sampler;
    for (int i = 0; i < nb && rc == 0; i++) {
        out[i] = malloc(((size_t)opts->max_new + 1) * sizeof(int32_t));
        hist[i] = malloc((size_t)(prompt_len[i] + opts->max_new + 1) * sizeof(int32_t));
        if (!out[i] || !hist[i]) {
            rc = lm_errf(err, "out of memory");
            break;
        }
        memcpy(hist[i], prompts[i], (size_t)prompt_len[i] * sizeof(int32_t));
        rc = lm_kv_prefill(m, &c, i, prompts[i], prompt_len[i],
                           logits + (size_t)i * V, err);
    }
    int n_active = nb;
    for (int i = 0; i < nb; i++) active[i] = i;
    for (int step = 0; rc == 0 && step < opts->max_new && n_active > 0; step++) {
        int still = 0;
        for (int j = 0; j < n_active && rc == 0; j++) {
            int i = active[j];
            float *lg = logits + (size_t)j * V;
            int32_t tok = -1;
            int nh = prompt_len[i] + n_out[i];
            if (opts->policy)
                rc = opts->policy->adjust(opts->policy->ctx, i, hist[i], nh, lg,
                                          V, &tok, err);
            if (rc) break;
            if (tok < 0) tok = lm_sample(&sampler, lg, V);
            if (opts->stop_at_eos && is_stop(opts, tok)) continue;
            out[i][n_out[i]++] = tok;
            hist[i][nh] = tok;
            if (c.len[i] >= c.cap) continue; /* context full */
            active[still] = i;
            next[still++] = tok;
        }
        if (rc) break;
        n_active = still;
        if (n_active == 0 || step + 1 == opts->max_new) break;
        rc = lm_kv_step(m, &c, active, next, n_active, logits, err);
    }
done:
    if (hist)
        for (int i = 0; i < nb; i++) free(hist[i]);
    free(hist);
    free(next);
    free(active);
    free(logits);
    lm_kv_free(&c);
    if (rc)
        for (int i = 0; i < nb; i++) {
            free(out[i]);
            out[i] = NULL;
            n_out[i] = 0;
        }
    return rc;
}

/* ---- continuation scoring ---- */

int lm_loglik(lm_model *m, const int32_t *ctx, int n_ctx, const int32_t *cont,
              int n_cont, double *logprob, int *is_greedy, lm_err *err) {
    if (n_ctx < 1 || n_cont < 1)
        return lm_errf(err, "loglik needs a context and a continuation");
    int n = n_ctx + n_cont;
    /* lm-eval truncates from the left to the model's context. */
    int drop = n > m->cfg.max_pos ? n - m->cfg.max_pos : 0;
    if (drop >= n_ctx) return lm_errf(err, "continuation of %d tokens does not fit the context", n_cont);
    int32_t *ids = malloc((size_t)n * sizeof *ids);
    if (!ids) return lm_errf(err, "out of memory");
    memcpy(ids, ctx, (size_t)n_ctx * sizeof *ids);
    memcpy(ids + n_ctx, cont, (size_t)n_cont * sizeof *ids);
    lm_acts a;
    int rc = lm_acts_build(&a, m, 1, n - drop, 0, err);
    if (rc == 0) rc = lm_forward(m, &a, ids + drop, NULL, 1, n - drop, err);
    if (rc == 0) {
        int V = m->cfg.vocab_size;
        double sum = 0.0;
        int greedy = 1;
        for (int k = 0; k < n_cont; k++) {
            /* row predicting cont[k] is the one at absolute index n_ctx+k-1 */
            float *row = a.logits + (size_t)(n_ctx + k - 1 - drop) * V;
            if (lm_argmax(row, V) != cont[k]) greedy = 0;
            m->be->log_softmax(m->be->ctx, row, row, 1, V);
            sum += row[cont[k]];
        }
        *logprob = sum;
        if (is_greedy) *is_greedy = greedy;
    }
    lm_acts_free(&a);
    free(ids);
    return rc;
}
