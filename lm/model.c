/* Forward and backward passes of the decoder families, layer by layer.
 *
 * One residual stream of N = B*T rows of C channels runs through L blocks:
 *
 *   x -> norm1 -> q,k,v -> (RoPE) -> causal attention -> o -> + x = mid
 *   mid -> norm2 -> MLP (SwiGLU | GELU | ReLU) -> down -> + mid = next x
 *
 * then a final norm and the head. The family decides the norm (RMSNorm for
 * Llama/Mistral, LayerNorm for GPT-2/OPT), the positions (RoPE or learned)
 * and the MLP; everything else is shared. Every kernel runs through the
 * model's backend. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "lora.h"
#include "model.h"

int lm_uses_rope(const lm_config *c) {
    return c->arch == LM_ARCH_LLAMA || c->arch == LM_ARCH_MISTRAL;
}
static int uses_rmsnorm(const lm_config *c) { return lm_uses_rope(c); }
int lm_uses_swiglu(const lm_config *c) { return lm_uses_rope(c); }

/* ---- activations ---- */

int lm_acts_build(lm_acts *a, const lm_model *m, int B, int T, int training,
                  lm_err *err) {
    memset(a, 0, sizeof *a);
    const lm_config *c = &m->cfg;
    if (B <= 0 || T <= 0)
        return lm_errf(err, "batch %d x time %d must be positive", B, T);
    if (T > c->max_pos)
        return lm_errf(err, "sequence of %d tokens is longer than the "
                            "model's context of %d", T, c->max_pos);
    size_t N = (size_t)B * T, C = c->d_model, V = c->vocab_size,
           F = c->ffn_dim, HD = (size_t)c->n_heads * c->head_dim,
           KD = (size_t)c->n_kv_heads * c->head_dim,
           ATT = (size_t)B * c->n_heads * T * T;
    /* Inference keeps one layer's buffers and reuses them for every layer;
     * training keeps all L for the backward pass. */
    size_t L = training ? (size_t)c->n_layers : 1;
    size_t Lr = (size_t)c->n_layers + 1;
    size_t FF = lm_uses_swiglu(c) ? F : 0;
    size_t MAXW = HD > C ? HD : C;
    struct { float **p; size_t n; } plan[] = {
        {&a->resid, Lr * N * C},
        {&a->ln1, L * N * C}, {&a->ln1_mean, L * N}, {&a->ln1_rstd, L * N},
        {&a->q, L * N * HD}, {&a->k, L * N * KD}, {&a->v, L * N * KD},
        {&a->att, L * ATT}, {&a->atty, L * N * HD}, {&a->resid_mid, L * N * C},
        {&a->ln2, L * N * C}, {&a->ln2_mean, L * N}, {&a->ln2_rstd, L * N},
        {&a->ffn_gate, L * N * FF}, {&a->ffn_up, L * N * F},
        {&a->ffn_act, L * N * F},
        {&a->lnf, N * C}, {&a->lnf_mean, N}, {&a->lnf_rstd, N},
        {&a->logits, N * V}, {&a->losses, N},
        {&a->d_resid, training ? N * C : 0}, {&a->d_buf1, training ? N * C : 0},
        {&a->d_buf2, training ? N * MAXW : 0},
        {&a->d_ffn1, training ? N * F : 0}, {&a->d_ffn2, training ? N * F : 0},
        {&a->d_ffn3, training ? N * FF : 0},
        {&a->d_q, training ? N * HD : 0}, {&a->d_k, training ? N * KD : 0},
        {&a->d_v, training ? N * KD : 0}, {&a->d_logits, training ? N * V : 0},
        {&a->d_input_embeds, training ? N * C : 0},
    };
    size_t total = 0;
    for (size_t i = 0; i < sizeof plan / sizeof plan[0]; i++) total += plan[i].n;
    a->memory = malloc(total * sizeof(float) + N * sizeof(int32_t));
    if (!a->memory)
        return lm_errf(err, "out of memory: %zu MiB of activations for "
                            "batch %d x %d tokens", total * 4 >> 20, B, T);
    float *p = a->memory;
    for (size_t i = 0; i < sizeof plan / sizeof plan[0]; i++) {
        *plan[i].p = plan[i].n ? p : NULL;
        p += plan[i].n;
    }
    a->pos = (int32_t *)p;
    a->floats = total;
    a->B = B;
    a->T = T;
    a->training = training;
    return 0;
}

void lm_acts_free(lm_acts *a) {
    if (!a) return;
    free(a->memory);
    memset(a, 0, sizeof *a);
}

/* Per-layer slices: inference reuses slot 0 for every layer. */
typedef struct layer_acts {
    float *x, *ln1, *ln1_mean, *ln1_rstd, *q, *k, *v, *att, *atty, *mid, *ln2,
        *ln2_mean, *ln2_rstd, *gate, *up, *act, *out;
} layer_acts;

static layer_acts layer_slice(const lm_model *m, const lm_acts *a, int l) {
    const lm_config *c = &m->cfg;
    size_t N = (size_t)a->cur_B * a->cur_T, NC = N * c->d_model,
           F = c->ffn_dim, HD = (size_t)c->n_heads * c->head_dim,
           KD = (size_t)c->n_kv_heads * c->head_dim;
    /* Slices use the capacity strides so a smaller batch fits any buffer. */
    size_t cN = (size_t)a->B * a->T, cNC = cN * c->d_model;
    size_t cATT = (size_t)a->B * c->n_heads * a->T * a->T;
    size_t s = a->training ? (size_t)l : 0;
    (void)NC; (void)F; (void)HD; (void)KD;
    layer_acts la = {
        .x = a->resid + (size_t)l * cNC,
        .out = a->resid + (size_t)(l + 1) * cNC,
        .ln1 = a->ln1 + s * cNC,
        .ln1_mean = a->ln1_mean + s * cN,
        .ln1_rstd = a->ln1_rstd + s * cN,
        .q = a->q + s * cN * ((size_t)c->n_heads * c->head_dim),
        .k = a->k + s * cN * ((size_t)c->n_kv_heads * c->head_dim),
        .v = a->v + s * cN * ((size_t)c->n_kv_heads * c->head_dim),
        .att = a->att + s * cATT,
        .atty = a->atty + s * cN * ((size_t)c->n_heads * c->head_dim),
        .mid = a->resid_mid + s * cNC,
        .ln2 = a->ln2 + s * cNC,
        .ln2_mean = a->ln2_mean + s * cN,
        .ln2_rstd = a->ln2_rstd + s * cN,
        .gate = a->ffn_gate ? a->ffn_gate + s * cN * c->ffn_dim : NULL,
        .up = a->ffn_up + s * cN * c->ffn_dim,
        .act = a->ffn_act + s * cN * c->ffn_dim,
    };
    return la;
}

/* ---- linear layers (with an optional LoRA adapter) ---- */

/* y[M,out] (=|+=) x[M,in] @ W^T + b (+ LoRA). */
void lm_linear_forward(lm_backend *be, const lm_linear *lin, float *y,
                       const float *x, int M, int accumulate) {
    const lm_tensor *w = lin->w;
    be->matmul_forward(be->ctx, y, x, w->data, lin->b ? lin->b->data : NULL,
                       M, w->shape[1], w->shape[0], accumulate);
    if (lin->lora) lm_lora_forward(be, lin->lora, y, x, M);
}

/* dx += dy @ W; dW += dy^T x; db += sum dy (each only when wanted). */
static void linear_backward(lm_backend *be, const lm_linear *lin, float *dx,
                            const float *dy, const float *x, int M) {
    const lm_tensor *w = lin->w;
    be->matmul_backward(be->ctx, dx, w->grad, lin->b ? lin->b->grad : NULL,
                        dy, x, w->data, M, w->shape[1], w->shape[0]);
    if (lin->lora) lm_lora_backward(be, lin->lora, dx, dy, x, M);
}

/* GPT-2 keeps q|k|v in one [3C, C] matrix; a row slice of it is itself a
 * linear layer, so the three projections run as three matmuls on views. */
static lm_linear qkv_slice(const lm_layer *L, int part, lm_tensor *wv,
                           lm_tensor *bv) {
    const lm_tensor *w = L->qkv.w, *b = L->qkv.b;
    int C = w->shape[1];
    *wv = *w;
    wv->shape[0] = C;
    wv->numel = (size_t)C * C;
    wv->data = w->data + (size_t)part * C * C;
    wv->grad = w->grad ? w->grad + (size_t)part * C * C : NULL;
    lm_linear lin = {wv, NULL, NULL};
    if (b) {
        *bv = *b;
        bv->shape[0] = C;
        bv->numel = C;
        bv->data = b->data + (size_t)part * C;
        bv->grad = b->grad ? b->grad + (size_t)part * C : NULL;
        lin.b = bv;
    }
    return lin;
}

void lm_qkv_forward(lm_backend *be, const lm_layer *L, float *q, float *k,
                    float *v, const float *x, int M) {
    if (L->qkv.w) {
        lm_tensor wv, bv;
        lm_linear s;
        s = qkv_slice(L, 0, &wv, &bv); lm_linear_forward(be, &s, q, x, M, 0);
        s = qkv_slice(L, 1, &wv, &bv); lm_linear_forward(be, &s, k, x, M, 0);
        s = qkv_slice(L, 2, &wv, &bv); lm_linear_forward(be, &s, v, x, M, 0);
        /* One adapter on the fused layer writes its output in three parts. */
        if (L->qkv.lora) {
            float *ys[3] = {q, k, v};
            lm_lora_forward_parts(be, L->qkv.lora, ys, 3, x, M);
        }
        return;
    }
    lm_linear_forward(be, &L->q, q, x, M, 0);
    lm_linear_forward(be, &L->k, k, x, M, 0);
    lm_linear_forward(be, &L->v, v, x, M, 0);
}

static void project_qkv_backward(lm_backend *be, const lm_layer *L, float *dx,
                                 const float *dq, const float *dk,
                                 const float *dv, const float *x, int M) {
    if (L->qkv.w) {
        lm_tensor wv, bv;
        lm_linear s;
        s = qkv_slice(L, 0, &wv, &bv); linear_backward(be, &s, dx, dq, x, M);
        s = qkv_slice(L, 1, &wv, &bv); linear_backward(be, &s, dx, dk, x, M);
        s = qkv_slice(L, 2, &wv, &bv); linear_backward(be, &s, dx, dv, x, M);
        if (L->qkv.lora) {
            const float *dys[3] = {dq, dk, dv};
            lm_lora_backward_parts(be, L->qkv.lora, dx, dys, 3, x, M);
        }
        return;
    }
    linear_backward(be, &L->q, dx, dq, x, M);
    linear_backward(be, &L->k, dx, dk, x, M);
    linear_backward(be, &L->v, dx, dv, x, M);
}

/* ---- norms ---- */

void lm_norm_forward(const lm_model *m, float *out, float *mean, float *rstd,
                     const float *x, const lm_tensor *w, const lm_tensor *b,
                     int N) {
    lm_backend *be = m->be;
    const lm_config *c = &m->cfg;
    if (uses_rmsnorm(c))
        be->rmsnorm_forward(be->ctx, out, rstd, x, w->data, N, c->d_model,
                            c->norm_eps);
    else
        be->layernorm_forward(be->ctx, out, mean, rstd, x,
                              w ? w->data : NULL, b ? b->data : NULL, N,
                              c->d_model, c->norm_eps);
}

static void norm_backward(const lm_model *m, float *dx, const float *dout,
                          const float *x, const lm_tensor *w,
                          const lm_tensor *b, const float *mean,
                          const float *rstd, int N) {
    lm_backend *be = m->be;
    const lm_config *c = &m->cfg;
    if (uses_rmsnorm(c))
        be->rmsnorm_backward(be->ctx, dx, w->grad, dout, x, w->data, rstd, N,
                             c->d_model);
    else
        be->layernorm_backward(be->ctx, dx, w ? w->grad : NULL,
                               b ? b->grad : NULL, dout, x,
                               w ? w->data : NULL, mean, rstd, N, c->d_model);
}

/* ---- forward ---- */

static int check_ids(const lm_model *m, const int32_t *ids, size_t n,
                     lm_err *err) {
    for (size_t i = 0; i < n; i++)
        if (ids[i] < 0 || ids[i] >= m->cfg.vocab_size)
            return lm_errf(err, "token id %d at position %zu is outside the "
                                "vocabulary [0, %d)", ids[i], i,
                           m->cfg.vocab_size);
    return 0;
}

/* The window the attention kernel enforces (0 = full causal). */
static int attention_window(const lm_config *c) { return c->sliding_window; }

int lm_forward(lm_model *m, lm_acts *a, const int32_t *ids,
               const float *embeds, int B, int T, lm_err *err) {
    lm_backend *be = m->be;
    const lm_config *c = &m->cfg;
    if (!be) return lm_errf(err, "model has no backend");
    if (B > a->B || T > a->T || (size_t)B * T > (size_t)a->B * a->T)
        return lm_errf(err, "batch %d x %d exceeds the activations' %d x %d",
                       B, T, a->B, a->T);
    if (T > c->max_pos)
        return lm_errf(err, "sequence of %d tokens is longer than the "
                            "model's context of %d", T, c->max_pos);
    int N = B * T, C = c->d_model, H = c->n_heads, KVH = c->n_kv_heads,
        D = c->head_dim;
    if (!embeds && check_ids(m, ids, (size_t)N, err)) return -1;
    a->cur_B = B;
    a->cur_T = T;
    for (int b = 0; b < B; b++)
        for (int t = 0; t < T; t++) a->pos[b * T + t] = t;

    /* Positions index the learned table with OPT's offset of 2. */
    int32_t *wpos = a->pos;
    int32_t *shifted = NULL;
    if (m->wpe && m->pos_offset) {
        shifted = malloc((size_t)N * sizeof *shifted);
        if (!shifted) return lm_errf(err, "out of memory");
        for (int i = 0; i < N; i++) shifted[i] = a->pos[i] + m->pos_offset;
        wpos = shifted;
    }
    if (embeds) {
        memcpy(a->resid, embeds, (size_t)N * C * sizeof(float));
        if (m->wpe)
            for (int i = 0; i < N; i++)
                be->add(be->ctx, a->resid + (size_t)i * C,
                        a->resid + (size_t)i * C,
                        m->wpe->data + (size_t)wpos[i] * C, C);
    } else {
        be->embedding_forward(be->ctx, a->resid, ids, wpos, m->wte->data,
                              m->wpe ? m->wpe->data : NULL, N, C);
    }
    free(shifted);

    for (int l = 0; l < c->n_layers; l++) {
        const lm_layer *L = &m->layers[l];
        layer_acts s = layer_slice(m, a, l);
        /* attention block */
        lm_norm_forward(m, s.ln1, s.ln1_mean, s.ln1_rstd, s.x, L->ln1_w,
                     L->ln1_b, N);
        lm_qkv_forward(be, L, s.q, s.k, s.v, s.ln1, N);
        if (lm_uses_rope(c)) {
            be->rope_forward(be->ctx, s.q, a->pos, N, H, D, c->rope_theta);
            be->rope_forward(be->ctx, s.k, a->pos, N, KVH, D, c->rope_theta);
        }
        be->attention_forward(be->ctx, s.atty, s.att, s.q, s.k, s.v, B, T, T,
                              H, KVH, D, (size_t)T * KVH * D,
                              attention_window(c));
        memcpy(s.mid, s.x, (size_t)N * C * sizeof(float));
        lm_linear_forward(be, &L->o, s.mid, s.atty, N, 1);
        /* MLP block */
        lm_norm_forward(m, s.ln2, s.ln2_mean, s.ln2_rstd, s.mid, L->ln2_w,
                     L->ln2_b, N);
        size_t NF = (size_t)N * c->ffn_dim;
        if (lm_uses_swiglu(c)) {
            lm_linear_forward(be, &L->gate, s.gate, s.ln2, N, 0);
            lm_linear_forward(be, &L->up, s.up, s.ln2, N, 0);
            be->swiglu_forward(be->ctx, s.act, s.gate, s.up, NF);
        } else {
            lm_linear_forward(be, &L->up, s.up, s.ln2, N, 0);
            if (c->arch == LM_ARCH_GPT2)
                be->gelu_forward(be->ctx, s.act, s.up, NF);
            else
                be->relu_forward(be->ctx, s.act, s.up, NF);
        }
        memcpy(s.out, s.mid, (size_t)N * C * sizeof(float));
        lm_linear_forward(be, &L->down, s.out, s.act, N, 1);
    }
    float *xf = a->resid + (size_t)c->n_layers * a->B * a->T * C;
    lm_norm_forward(m, a->lnf, a->lnf_mean, a->lnf_rstd, xf, m->lnf_w, m->lnf_b,
                 N);
    be->matmul_forward(be->ctx, a->logits, a->lnf, m->lm_head->data, NULL, N,
                       C, c->vocab_size, 0);
    return 0;
}

float lm_loss(lm_model *m, lm_acts *a, const int32_t *targets,
              const float *mask, double *counted) {
    lm_backend *be = m->be;
    int N = a->cur_B * a->cur_T, V = m->cfg.vocab_size;
    be->crossentropy_forward(be->ctx, a->losses, a->logits, targets, mask, N,
                             V);
    double sum = 0.0, cnt = 0.0;
    for (int i = 0; i < N; i++) {
        if (targets[i] < 0) continue;
        double w = mask ? mask[i] : 1.0;
        sum += a->losses[i] * w;
        cnt += w;
    }
    if (counted) *counted = cnt;
    return cnt > 0 ? (float)(sum / cnt) : 0.0f;
}

/* ---- backward ---- */

int lm_backward(lm_model *m, lm_acts *a, const int32_t *ids,
                const int32_t *targets, const float *mask, lm_err *err) {
    lm_backend *be = m->be;
    const lm_config *c = &m->cfg;
    if (!a->training)
        return lm_errf(err, "activations were built without training buffers");
    int B = a->cur_B, T = a->cur_T, N = B * T, C = c->d_model,
        H = c->n_heads, KVH = c->n_kv_heads, D = c->head_dim,
        V = c->vocab_size, F = c->ffn_dim;
    size_t NC = (size_t)N * C, NF = (size_t)N * F,
           HD = (size_t)H * D, KD = (size_t)KVH * D;

    double cnt = 0.0;
    for (int i = 0; i < N; i++)
        if (targets[i] >= 0) cnt += mask ? mask[i] : 1.0;
    float scale = cnt > 0 ? (float)(1.0 / cnt) : 0.0f;

    memset(a->d_logits, 0, (size_t)N * V * sizeof(float));
    be->crossentropy_backward(be->ctx, a->d_logits, a->logits, targets, mask,
                              N, V, scale);
    /* head and final norm */
    memset(a->d_buf1, 0, NC * sizeof(float));
    be->matmul_backward(be->ctx, a->d_buf1, m->lm_head->grad, NULL,
                        a->d_logits, a->lnf, m->lm_head->data, N, C, V);
    memset(a->d_resid, 0, NC * sizeof(float));
    float *xf = a->resid + (size_t)c->n_layers * a->B * a->T * C;
    norm_backward(m, a->d_resid, a->d_buf1, xf, m->lnf_w, m->lnf_b,
                  a->lnf_mean, a->lnf_rstd, N);

    for (int l = c->n_layers - 1; l >= 0; l--) {
        const lm_layer *L = &m->layers[l];
        layer_acts s = layer_slice(m, a, l);
        /* out = mid + down(act): d_resid flows on to mid unchanged. */
        memset(a->d_ffn1, 0, NF * sizeof(float));
        linear_backward(be, &L->down, a->d_ffn1, a->d_resid, s.act, N);
        memset(a->d_buf1, 0, NC * sizeof(float));
        if (lm_uses_swiglu(c)) {
            memset(a->d_ffn2, 0, NF * sizeof(float));
            memset(a->d_ffn3, 0, NF * sizeof(float));
            be->swiglu_backward(be->ctx, a->d_ffn2, a->d_ffn3, a->d_ffn1,
                                s.gate, s.up, NF);
            linear_backward(be, &L->gate, a->d_buf1, a->d_ffn2, s.ln2, N);
            linear_backward(be, &L->up, a->d_buf1, a->d_ffn3, s.ln2, N);
        } else {
            memset(a->d_ffn2, 0, NF * sizeof(float));
            if (c->arch == LM_ARCH_GPT2)
                be->gelu_backward(be->ctx, a->d_ffn2, a->d_ffn1, s.up, NF);
            else
                be->relu_backward(be->ctx, a->d_ffn2, a->d_ffn1, s.up, NF);
            linear_backward(be, &L->up, a->d_buf1, a->d_ffn2, s.ln2, N);
        }
        norm_backward(m, a->d_resid, a->d_buf1, s.mid, L->ln2_w, L->ln2_b,
                      s.ln2_mean, s.ln2_rstd, N);
        /* mid = x + o(atty) */
        memset(a->d_buf2, 0, (size_t)N * HD * sizeof(float));
        linear_backward(be, &L->o, a->d_buf2, a->d_resid, s.atty, N);
        memset(a->d_q, 0, (size_t)N * HD * sizeof(float));
        memset(a->d_k, 0, (size_t)N * KD * sizeof(float));
        memset(a->d_v, 0, (size_t)N * KD * sizeof(float));
        be->attention_backward(be->ctx, a->d_q, a->d_k, a->d_v, a->d_buf2,
                               s.att, s.q, s.k, s.v, B, T, H, KVH, D);
        if (lm_uses_rope(c)) {
            be->rope_backward(be->ctx, a->d_q, a->pos, N, H, D, c->rope_theta);
            be->rope_backward(be->ctx, a->d_k, a->pos, N, KVH, D,
                              c->rope_theta);
        }
        memset(a->d_buf1, 0, NC * sizeof(float));
        project_qkv_backward(be, L, a->d_buf1, a->d_q, a->d_k, a->d_v, s.ln1,
                             N);
        norm_backward(m, a->d_resid, a->d_buf1, s.x, L->ln1_w, L->ln1_b,
                      s.ln1_mean, s.ln1_rstd, N);
    }
    memcpy(a->d_input_embeds, a->d_resid, NC * sizeof(float));
    if (ids && (m->wte->grad || (m->wpe && m->wpe->grad))) {
        int32_t *wpos = malloc((size_t)N * sizeof *wpos);
        if (!wpos) return lm_errf(err, "out of memory");
        for (int i = 0; i < N; i++) wpos[i] = a->pos[i] + m->pos_offset;
        be->embedding_backward(be->ctx, m->wte->grad,
                               m->wpe ? m->wpe->grad : NULL, a->d_resid, ids,
                               wpos, N, C);
        free(wpos);
    }
    return 0;
}

/* ---- scoring ---- */

int lm_score_ids(lm_model *m, const int32_t *ids, int n, float *logprobs,
                 lm_err *err) {
    if (n < 2) return 0;
    lm_acts a;
    if (lm_acts_build(&a, m, 1, n, 0, err)) return -1;
    if (lm_forward(m, &a, ids, NULL, 1, n, err)) {
        lm_acts_free(&a);
        return -1;
    }
    int V = m->cfg.vocab_size;
    m->be->log_softmax(m->be->ctx, a.logits, a.logits, n, V);
    for (int k = 0; k + 1 < n; k++)
        logprobs[k] = a.logits[(size_t)k * V + ids[k + 1]];
    lm_acts_free(&a);
    return 0;
}
