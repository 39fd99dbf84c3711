/* Supervised fine-tuning on prompt -> response examples, with LoRA adapters
 * or on every weight.
 *
 * Each epoch the examples are shuffled (deterministically from the seed) and
 * cut into micro-batches of `batch_size` sequences; a micro-batch is padded
 * to its longest sequence, the padding after the real tokens (so causal
 * attention never lets a real token see it) with target -1 (never counted).
 * The loss of a micro-batch is the mean over its counted targets: response
 * tokens (and EOS if the caller appended it), or every next token with
 * train_on_prompt. `grad_accum` micro-batches make one update, whose
 * gradient is the average of theirs. Then: global-norm clipping, AdamW, and
 * the learning-rate schedule. A run is a pure function of its inputs and
 * seed: the same seed gives bit-identical weights.
 *
 * Activations are built once for batch_size x the longest example. */
#ifndef LM_TRAIN_H
#define LM_TRAIN_H

#include <stdint.h>

#include "err.h"
#include "model.h"
#include "optim.h"
#include "peft.h"

typedef struct lm_train_example {
    int32_t *ids;       /* prompt tokens, then response tokens (+ EOS) */
    int n;
    int prompt_len;     /* 0 <= prompt_len <= n */
} lm_train_example;

/* Reported after every update. */
typedef struct lm_train_status {
    int step, total_steps;  /* updates done (1-based after the first) */
    int epoch, epochs;      /* the current epoch, 1-based */
    float loss;             /* this update's loss (mean over its batches) */
    float epoch_loss;       /* mean of this epoch's update losses so far */
    float lr;               /* learning rate this update used */
    float grad_norm;        /* global gradient norm before clipping */
    double tokens;          /* real (unpadded) tokens processed so far */
    double tokens_per_s;
    double elapsed_s, eta_s;
} lm_train_status;

typedef struct lm_train_opts {
    int epochs;             /* 1 */
    int max_steps;          /* stop after this many updates; 0 = no limit */
    int batch_size;         /* 8 sequences per micro-batch */
    int grad_accum;         /* 1 micro-batch per update */
    double lr;              /* 2e-4 */
    double weight_decay;    /* 0 */
    double beta1, beta2, eps; /* 0.9, 0.999, 1e-8 */
    int decay_1d;           /* full fine-tuning: decay norms and biases too
                               (0: as the HF Trainer, they do not decay) */
    lm_sched schedule;      /* LM_SCHED_LINEAR (the HF Trainer's default) */
    int warmup_steps;       /* 0 */
    double max_grad_norm;   /* 1.0; <= 0 turns clipping off */
    uint64_t seed;          /* shuffling, adapter init, dropout */
    int shuffle;            /* 1 */
    int group_by_length;    /* 0; > 0: after each shuffle, sort runs of this
                               many micro-batches by length and visit their
                               batches in random order (HF's
                               group_by_length), so short examples are not
                               padded to a long one's length */
    int train_on_prompt;    /* 0: loss on the response tokens only */
    double loss_length_power; /* 0: a micro-batch's loss is the mean over
                               its target tokens (the HF Trainer's); p > 0:
                               an example with c targets weighs each c^-p,
                               so at 1 the loss is the mean over examples of
                               each one's mean and a one-token answer weighs
                               as much as a long passage */
    int max_len;            /* 0 = the model's context; longer examples are
                               cut to their first max_len tokens */
    /* LoRA (used when lora_r > 0 and the set passed in is empty) */
    int lora_r;             /* 8; 0 = full fine-tuning */
    float lora_alpha;       /* 16 */
    float lora_dropout;     /* 0.05 */
    const char *lora_targets; /* NULL = lm_lora_default_targets(arch) */
    /* progress, called after every update; library code never prints */
    void (*progress)(void *ctx, const lm_train_status *s);
    void *progress_ctx;
    /* called after every epoch (adapters in inference mode): returns 0 to
     * go on, 1 to stop here (train to a criterion), -1 with err set to fail.
     * It may rewrite the caller's examples in place for the next epoch
     * (fresh replay text, say): same count, none longer than the longest
     * of the first epoch; they are checked again before training goes on. */
    int (*epoch_end)(void *ctx, int epoch, const lm_train_status *s,
                     lm_err *err);
    void *epoch_ctx;
} lm_train_opts;

void lm_train_opts_default(lm_train_opts *o);

/* Trains the model in place. *lora is NULL, a zeroed set ({0}) or a set
 * holding adapters. What is trained:
 *  - lora holding adapters (from lm_lora_attach or lm_peft_load): those;
 *  - otherwise, opts->lora_r > 0: new adapters attached into *lora (which
 *    must be non-NULL; the caller saves, merges and frees them);
 *  - otherwise every weight of the model (gradients are allocated for the
 *    run and released after, unless the model already had them).
 * Adapters come out with dropout off, ready for generation. `final`
 * (may be NULL) receives the last status. */
int lm_train(lm_model *m, lm_lora_set *lora, const lm_train_example *ex,
             int n_ex, const lm_train_opts *opts, lm_train_status *final,
             lm_err *err);

/* ---- building blocks (used by lm_train, public for tests and tools) ---- */

/* The length an example trains on: min(n, max_len) (max_len <= 0: n). */
int lm_train_example_len(const lm_train_example *e, int max_len);

/* Fills ids[B*T] and targets[B*T] for the B examples ex[0..B) padded to T
 * (each cut to min(T, max_len) tokens): targets[b*T + t] = ids[t+1] where
 * that token is counted, else -1. Returns the number of counted targets. */
int lm_train_make_batch(const lm_train_example *const *ex, int B, int T,
                        int max_len, int train_on_prompt, int32_t *ids,
                        int32_t *targets);

#endif
