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
    memset(l, 0, sizeof *l);
}

int lm_lora_reserve(lm_lora *l, int M, lm_err *err) {
    if (M <= l->cap) return 0;
    float *h = realloc(l->h, (size_t)M * l->r * sizeof(float));
    if (!h) return lm_errf(err, "out of memory for LoRA activations");
    l->h = h;
    if (l->dropout > 0.0f) {
        float *xd = realloc(l->xd, (size_t)M * l->in * sizeof(float));
        if (!xd) return lm_errf(err, "out of memory for LoRA activations");
        l->xd = xd;
    }
    l->cap = M;
    return 0;
}

void lm_lora_forward(lm_backend *be, lm_lora *l, float *y, const float *x,
                     int M) {
    int r = l->r, in = l->in, out = l->out;
    int save = M <= l->cap;
    float *h = save ? l->h : malloc((size_t)M * r * sizeof(float));
    if (!h) return; /* inference-only path; out of memory leaves y unadapted */
    const float *xin = x;
    if (l->training && l->dropout > 0.0f && save) {
        float keep = 1.0f - l->dropout, inv = 1.0f / keep;
        for (size_t i = 0; i < (size_t)M * in; i++)
            l->xd[i] = lm_rng_uniform(&l->rng) < keep ? x[i] * inv : 0.0f;
        xin = l->xd;
    }
    be->matmul_forward(be->ctx, h, xin, l->A.data, NULL, M, in, r, 0);
    /* y += scale * h B^T */
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, M, out, r, l->scale,
                h, r, l->B.data, r, 1.0f, y, out);
    if (!save) free(h);
}

void lm_lora_backward(lm_backend *be, lm_lora *l, float *dx, const float *dy,
                      const float *x, int M) {
    int r = l->r, in = l->in, out = l->out;
    const float *xin = (l->training && l->dropout > 0.0f) ? l->xd : x;
    /* dB += scale * dy^T h */
    cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, out, r, M, l->scale,
                dy, out, l->h, r, 1.0f, l->B.grad, r);
    /* dh = scale * dy B   [M, r] */
    float *dh = malloc((size_t)M * r * sizeof(float));
    if (!dh) return;
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, M, r, out, l->scale,
                dy, out, l->B.data, r, 0.0f, dh, r);
    if (dx && l->training && l->dropout > 0.0f) {
        /* Through the mask: gradient reaches only kept inputs, scaled. */
        float *dxd = calloc((size_t)M * in, sizeof(float));
        if (dxd) {
            be->matmul_backward(be->ctx, dxd, l->A.grad, NULL, dh, xin,
                                l->A.data, M, in, r);
            float inv = 1.0f / (1.0f - l->dropout);
            for (size_t i = 0; i < (size_t)M * in; i++)
                if (l->xd[i] != 0.0f) dx[i] += dxd[i] * inv;
            free(dxd);
        }
    } else {
        be->matmul_backward(be->ctx, dx, l->A.grad, NULL, dh, xin, l->A.data,
                            M, in, r);
    }
    free(dh);
}

void lm_lora_merge(lm_lora *l, lm_tensor *w) {
    /* W[out,in] += scale * B[out,r] A[r,in] */
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, l->out, l->in, l->r,
                l->scale, l->B.data, l->r, l->A.data, l->in, 1.0f, w->data,
                l->in);
}
