/* Building blocks of the removal methods prune (prune.c), task-arithmetic
 * and dare (merge.c), cleangen (cleangen.c) and token-forcing
 * (token_forcing.c) that are worth checking on their own: the methods
 * themselves are reached through the registry (method.h). */
#ifndef SM_REMOVAL_H
#define SM_REMOVAL_H

#include <stddef.h>
#include <stdint.h>

#include "method.h"

/* ---- pruning ---- */

/* Zeroes the k = round(ratio * n) entries of w[n] with the smallest score
 * (|w| when score is NULL; NaN counts as the largest), ties to the lower
 * index. Returns k. */
size_t sm_prune_smallest(float *w, const float *score, size_t n, double ratio);

typedef enum sm_prune_kind {
    SM_PRUNE_L1,
    SM_PRUNE_L2,
    SM_PRUNE_RANDOM,
    SM_PRUNE_TAYLOR,
} sm_prune_kind;

typedef enum sm_taylor_mode {
    SM_TAYLOR_MIX,       /* s = w g - w F w / 2, channel sum of |s| */
    SM_TAYLOR_FIRST,     /* s = w g, sum of |s| */
    SM_TAYLOR_SECOND,    /* s = w F w, sum of |s| */
    SM_TAYLOR_VECTORIZE, /* s = w g, |sum of s| */
} sm_taylor_mode;

/* Importance of every query head and every MLP channel of every layer
 * (LLM-Pruner's, removal-methods.md section 3.1): per channel, the
 * per-weight score summed over the channel's row (q, k, v, gate, up) or
 * column (o, down); reduced over the coupled tensors by the mean (l1, l2)
 * or the sum (taylor); a head is the sum of its head_dim channels. With
 * grouped-query attention a query head's group holds its q rows and
 * o columns and the rows of the k/v head it shares. */
typedef struct sm_prune_scores {
    int n_layers, n_heads, ffn;
    double *head;   /* [n_layers * n_heads] */
    double *chan;   /* [n_layers * ffn] */
} sm_prune_scores;

/* Taylor needs calibration: n sequences of T tokens (calib[n * T]); g is
 * the gradient of the mean next-token loss over them and F the mean of the
 * per-sequence squared gradients. random draws from `seed`. */
int sm_prune_score(lm_model *m, sm_prune_kind kind, sm_taylor_mode mode,
                   const int32_t *calib, int n, int T, uint64_t seed,
                   sm_prune_scores *s, lm_err *err);
void sm_prune_scores_free(sm_prune_scores *s);

/* ---- merging ---- */

typedef struct sm_merge_opts {
    int dare;           /* drop-and-rescale each delta first */
    double density;     /* DARE: kept fraction d = 1 - p */
    int rescale;        /* DARE: kept deltas divided by d */
    int ties;           /* DARE-TIES sign election */
    int normalize;      /* divide by the sum of the weights */
    uint64_t seed;      /* DARE masks: one stream per (seed, model, tensor) */
} sm_merge_opts;

/* out[i] = base[i] + the merged deltas models[t][i] - base[i] with weights
 * w[t], for n elements of the tensor numbered `tensor` (which seeds its DARE
 * masks). out may be models[t]'s own storage. At most 16 models. */
int sm_merge_tensor(float *out, const float *base, const float *const *models,
                    const double *w, int n_models, size_t n,
                    const sm_merge_opts *o, int tensor, lm_err *err);

/* ---- CleanGen ---- */

/* Tokens the policy emitted and how many of them were the reference
 * model's replacements, since it was built. */
void sm_cleangen_counts(const lm_decode_policy *p, long *generated,
                        long *replaced);

#endif
