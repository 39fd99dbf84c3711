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
/* dx += scale * (dy B) A (through the dropout mask); dA, dB accumulate. */
void lm_lora_backward(lm_backend *be, lm_lora *l, float *dx, const float *dy,
                      const float *x, int M);
/* W += scale * B A (the adapter folded into the base weight). */
void lm_lora_merge(lm_lora *l, lm_tensor *w);

#endif
