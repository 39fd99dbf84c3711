/* Generation with a KV cache, sampling, and continuation scoring.
 *
 * The cache keeps every layer's keys and values for B sequences of up to
 * `cap` positions each; sequences advance independently (their lengths
 * differ), so prompts of different lengths batch without padding. A step
 * runs the matmuls for all rows at once and the attention per sequence.
 * Truncating a sequence (lm_kv_truncate) rolls it back, which is what
 * look-ahead decoding policies such as CleanGen need. */
#ifndef LM_GENERATE_H
#define LM_GENERATE_H

#include <stdint.h>

#include "model.h"
#include "rng.h"

typedef struct lm_kv_cache {
    int B, cap, rows;       /* sequences, positions each, scratch rows */
    int *len;               /* [B] positions filled per sequence */
    float *k, *v;           /* [L, B, cap, KVH*D] */
    /* scratch for up to `rows` rows */
    float *memory;
    float *x, *ln, *q, *kn, *vn, *atty, *gate, *up, *act, *last, *logits;
    int32_t *pos, *wpos;
} lm_kv_cache;

/* Room for B sequences of cap positions; prefill chunks of up to cap rows. */
int lm_kv_build(lm_kv_cache *c, const lm_model *m, int B, int cap,
                lm_err *err);
void lm_kv_free(lm_kv_cache *c);
void lm_kv_reset(lm_kv_cache *c);
/* Roll sequence b back to its first len positions. */
void lm_kv_truncate(lm_kv_cache *c, int b, int len);

/* Appends n tokens to sequence b and writes the logits after the last one
 * into logits[V]. */
int lm_kv_prefill(lm_model *m, lm_kv_cache *c, int b, const int32_t *ids,
                  int n, float *logits, lm_err *err);
/* Appends one token to each of the nb sequences listed in seqs (ids[i] to
 * sequence seqs[i]) and writes logits [nb, V]. */
int lm_kv_step(lm_model *m, lm_kv_cache *c, const int *seqs,
               const int32_t *ids, int nb, float *logits, lm_err *err);

/* ---- sampling ---- */

typedef struct lm_sampler {
    float temperature;  /* 0 = greedy */
    int top_k;          /* 0 = off */
    float top_p;        /* 1 = off */
    lm_rng rng;
} lm_sampler;

void lm_sampler_init(lm_sampler *s, float temperature, int top_k, float top_p,
                     uint64_t seed);
/* Picks a token from logits[V] (left intact). Greedy ties go to the lowest
 * id, as argmax does in PyTorch. */
int32_t lm_sample(lm_sampler *s, const float *logits, int V);
int32_t lm_argmax(const float *logits, int V);

/* A decoding policy sees each sequence's logits before the sampler and may
 * change them (mask tokens, mix in another model) or pick the token itself
 * by setting *token >= 0. Returns 0, or -1 with err set. */
typedef struct lm_decode_policy {
    void *ctx;
    int (*adjust)(void *ctx, int seq, const int32_t *history, int n_history,
                  float *logits, int V, int32_t *token, lm_err *err);
} lm_decode_policy;

typedef struct lm_gen_opts {
    int max_new;            /* tokens to generate at most */
    int eos_id;             /* stop at this token (-1 = never) */
    int stop_at_eos;
    int n_extra_stop;       /* more stop tokens (honoured with stop_at_eos), */
    int extra_stop[4];      /* e.g. BOS for llama2.c models, which start a
                               new story with it */
    lm_sampler sampler;
    const lm_decode_policy *policy; /* NULL = plain sampling */
} lm_gen_opts;

/* Generates for nb prompts at once. out[i] receives up to max_new new ids
 * (malloc'd, EOS not included), n_out[i] their count. */
int lm_generate(lm_model *m, const int32_t *const *prompts,
                const int *prompt_len, int nb, const lm_gen_opts *opts,
                int32_t **out, int *n_out, lm_err *err);

/* Sum of ln P(cont | ctx) over the continuation's tokens, and whether every
 * continuation token is the greedy choice (lm-eval's is_greedy). ctx must
 * hold at least one token. */
int lm_loglik(lm_model *m, const int32_t *ctx, int n_ctx, const int32_t *cont,
              int n_cont, double *logprob, int *is_greedy, lm_err *err);

#endif
