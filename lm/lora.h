/* LoRA: a low-rank update on a frozen linear layer,
 *   y = x W^T + b + scale * dropout(x) A^T B^T,   scale = alpha / r,
 * with A [r, in] and B [out, r] as PEFT names them (lora_A, lora_B). B
 * starts at zero so a fresh adapter leaves the model unchanged. */
#ifndef LM_LORA_H
#define LM_LORA_H

#include <stdint.h>

#include "backend.h"
#include "model.h"
#include "rng.h"

typedef struct lm_lora {
    int r, in, out;
    float alpha, scale, dropout;
    lm_tensor A;        /* [r, in]  */
    lm_tensor B;        /* [out, r] */
    /* Saved by the forward for the backward, sized for `cap` rows. */
    float *h;           /* [M, r] = dropout(x) A^T */
    float *xd;          /* [M, in] dropped-out input (only with dropout) */
    uint8_t *keep;      /* [M, in] dropout mask (only with dropout): an input
                           that is exactly 0 is still "kept" */
    float *dh;          /* [M, r] backward scratch */
    float *dxd;         /* [M, in] backward scratch (only with dropout) */
    int cap;
    int training;       /* dropout active */
    lm_rng rng;
} lm_lora;

/* A new adapter for a layer of shape [out, in]: A ~ Kaiming-uniform as PEFT
 * does (bound 1/sqrt(in)), B = 0. Gradients are allocated. */
int lm_lora_build(lm_lora *l, int in, int out, int r, float alpha,
                  float dropout, uint64_t seed, lm_err *err);
void lm_lora_free(lm_lora *l);
/* Make room for M rows of saved activations. */
int lm_lora_reserve(lm_lora *l, int M, lm_err *err);

/* y[M,out] += scale * dropout(x) A^T B^T. Rows beyond the reserved
 * capacity are computed without saving (inference). */
void lm_lora_forward(lm_backend *be, lm_lora *l, float *y, const float *x,
                     int M);
/* dx += scale * (dy B) A (through the dropout mask); dA, dB accumulate.
 * Needs the forward of the same M rows to have been saved (M <= cap). */
void lm_lora_backward(lm_backend *be, lm_lora *l, float *dx, const float *dy,
                      const float *x, int M);

/* The same for a fused layer whose output lives in `nparts` separate
 * buffers of out / nparts columns each (GPT-2's c_attn computes q | k | v
 * into three arrays): part p gets rows [p*out/nparts, (p+1)*out/nparts)
 * of B, and h = dropout(x) A^T is computed once. */
void lm_lora_forward_parts(lm_backend *be, lm_lora *l, float *const *ys,
                           int nparts, const float *x, int M);
void lm_lora_backward_parts(lm_backend *be, lm_lora *l, float *dx,
                            const float *const *dys, int nparts,
                            const float *x, int M);

/* W += scale * B A (the adapter folded into the base weight). */
void lm_lora_merge(lm_lora *l, lm_tensor *w);

#endif
