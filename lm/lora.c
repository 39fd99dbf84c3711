#include "lora.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include <cblas.h>

int lm_lora_build(lm_lora *l, int in, int out, int r, float alpha,
                  float dropout, uint64_t seed, lm_err *err) {
    memset(l, 0, sizeof *l);
    if (r <= 0 || in <= 0 || out <= 0)
        return lm_errf(err, "LoRA rank %d must be positive", r);
    if (!(dropout >= 0.0f && dropout < 1.0f))
        return lm_errf(err, "LoRA dropout %g must lie in [0, 1)",
                       (double)dropout);
    l->r = r;
    l->in = in;
    l->out = out;
    l->alpha = alpha;
    l->scale = alpha / (float)r;
    l->dropout = dropout;
    size_t na = (size_t)r * in, nb = (size_t)out * r;
    float *mem = calloc(2 * (na + nb), sizeof(float));
    if (!mem) return lm_errf(err, "out of memory for a LoRA adapter");
    l->A = (lm_tensor){.ndim = 2, .shape = {r, in}, .numel = na, .data = mem,
                       .grad = mem + na + nb};
    l->B = (lm_tensor){.ndim = 2, .shape = {out, r}, .numel = nb,
                       .data = mem + na, .grad = mem + 2 * na + nb};
    lm_rng_seed(&l->rng, seed);
    /* PEFT: kaiming_uniform_(a=sqrt(5)) gives bound 1/sqrt(in). */
    float bound = 1.0f / sqrtf((float)in);
    for (size_t i = 0; i < na; i++)
        l->A.data[i] = (2.0f * lm_rng_uniform(&l->rng) - 1.0f) * bound;
    return 0;
}

void lm_lora_free(lm_lora *l) {
    if (!l) return;
    free(l->A.data); /* one block holds A, B and both gradients */
    free(l->h);
    free(l->xd);
    free(l->keep);
    free(l->dh);
    free(l->dxd);
    memset(l, 0, sizeof *l);
}

/* realloc that leaves *p untouched on failure. */
static int grow(void **p, size_t bytes) {
    void *q = realloc(*p, bytes ? bytes : 1);
    if (!q) return -1;
    *p = q;
    return 0;
}

int lm_lora_reserve(lm_lora *l, int M, lm_err *err) {
    if (M <= l->cap) return 0;
    size_t mr = (size_t)M * l->r, mi = (size_t)M * l->in;
    if (grow((void **)&l->h, mr * sizeof(float)) ||
        grow((void **)&l->dh, mr * sizeof(float)))
        return lm_errf(err, "out of memory for LoRA activations");
    if (l->dropout > 0.0f &&
        (grow((void **)&l->xd, mi * sizeof(float)) ||
         grow((void **)&l->dxd, mi * sizeof(float)) ||
         grow((void **)&l->keep, mi)))
        return lm_errf(err, "out of memory for LoRA activations");
    l->cap = M;
    return 0;
}

void lm_lora_forward_parts(lm_backend *be, lm_lora *l, float *const *ys,
                           int nparts, const float *x, int M) {
    int r = l->r, in = l->in, po = l->out / nparts;
    int save = M <= l->cap;
    float *h = save ? l->h : malloc((size_t)M * r * sizeof(float));
    if (!h) return; /* inference-only path; out of memory leaves y unadapted */
    const float *xin = x;
    if (l->training && l->dropout > 0.0f && save) {
        float keep = 1.0f - l->dropout, inv = 1.0f / keep;
        for (size_t i = 0; i < (size_t)M * in; i++) {
            l->keep[i] = lm_rng_uniform(&l->rng) < keep;
            l->xd[i] = l->keep[i] ? x[i] * inv : 0.0f;
        }
        xin = l->xd;
    }
    be->matmul_forward(be->ctx, h, xin, l->A.data, NULL, M, in, r, 0);
    /* y_p += scale * h B_p^T, B_p the rows of B that feed part p */
    for (int p = 0; p < nparts; p++)
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, M, po, r,
                    l->scale, h, r, l->B.data + (size_t)p * po * r, r, 1.0f,
                    ys[p], po);
    if (!save) free(h);
}

void lm_lora_backward_parts(lm_backend *be, lm_lora *l, float *dx,
                            const float *const *dys, int nparts,
                            const float *x, int M) {
    int r = l->r, in = l->in, po = l->out / nparts;
    if (M > l->cap) return; /* the forward saved nothing to differentiate */
    int dropped = l->training && l->dropout > 0.0f;
    const float *xin = dropped ? l->xd : x;
    for (int p = 0; p < nparts; p++) {
        const float *Bp = l->B.data + (size_t)p * po * r;
        /* dB_p += scale * dy_p^T h */
        cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, po, r, M,
                    l->scale, dys[p], po, l->h, r, 1.0f,
                    l->B.grad + (size_t)p * po * r, r);
        /* dh (=|+=) scale * dy_p B_p   [M, r] */
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, M, r, po,
                    l->scale, dys[p], po, Bp, r, p ? 1.0f : 0.0f, l->dh, r);
    }
    if (dx && dropped) {
        /* Through the mask: gradient reaches only kept inputs, scaled. */
        memset(l->dxd, 0, (size_t)M * in * sizeof(float));
        be->matmul_backward(be->ctx, l->dxd, l->A.grad, NULL, l->dh, xin,
                            l->A.data, M, in, r);
        float inv = 1.0f / (1.0f - l->dropout);
        for (size_t i = 0; i < (size_t)M * in; i++)
            if (l->keep[i]) dx[i] += l->dxd[i] * inv;
    } else {
        be->matmul_backward(be->ctx, dx, l->A.grad, NULL, l->dh, xin,
                            l->A.data, M, in, r);
    }
}

void lm_lora_forward(lm_backend *be, lm_lora *l, float *y, const float *x,
                     int M) {
    lm_lora_forward_parts(be, l, &y, 1, x, M);
}

void lm_lora_backward(lm_backend *be, lm_lora *l, float *dx, const float *dy,
                      const float *x, int M) {
    lm_lora_backward_parts(be, l, dx, &dy, 1, x, M);
}

void lm_lora_merge(lm_lora *l, lm_tensor *w) {
    /* W[out,in] += scale * B[out,r] A[r,in] */
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, l->out, l->in, l->r,
                l->scale, l->B.data, l->r, l->A.data, l->in, 1.0f, w->data,
                l->in);
}
