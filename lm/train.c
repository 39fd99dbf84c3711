/* The fine-tuning loop: batches, masked loss, accumulation, clipping, AdamW
 * and the schedule, over LoRA adapters or the whole model. */
#include "train.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "rng.h"

void lm_train_opts_default(lm_train_opts *o) {
    memset(o, 0, sizeof *o);
    o->epochs = 1;
    o->batch_size = 8;
    o->grad_accum = 1;
    o->lr = 2e-4;
    o->beta1 = 0.9;
    o->beta2 = 0.999;
    o->eps = 1e-8;
    o->schedule = LM_SCHED_LINEAR;
    o->max_grad_norm = 1.0;
    o->shuffle = 1;
    o->lora_r = 8;
    o->lora_alpha = 16.0f;
    o->lora_dropout = 0.05f;
}

int lm_train_example_len(const lm_train_example *e, int max_len) {
    return (max_len > 0 && e->n > max_len) ? max_len : e->n;
}

int lm_train_make_batch(const lm_train_example *const *ex, int B, int T,
                        int max_len, int train_on_prompt, int32_t *ids,
                        int32_t *targets) {
    int counted = 0;
    for (int b = 0; b < B; b++) {
        const lm_train_example *e = ex[b];
        int n = lm_train_example_len(e, max_len);
        if (n > T) n = T;
        int32_t *row = ids + (size_t)b * T, *tg = targets + (size_t)b * T;
        for (int t = 0; t < T; t++) {
            /* Padding repeats token 0: any valid id will do, nothing real
             * attends to it and its targets are -1. */
            row[t] = t < n ? e->ids[t] : 0;
            int next = t + 1;
            int use = next < n && (train_on_prompt || next >= e->prompt_len);
            tg[t] = use ? e->ids[next] : -1;
            counted += use;
        }
    }
    return counted;
}

/* Per-token loss weights for loss_length_power p: c^-p on every target of
 * a row with c targets (p = 1: the mean over examples of each one's mean). */
static void example_weights(const int32_t *targets, int B, int T, double p, float *w) {
    for (int b = 0; b < B; b++) {
        const int32_t *tg = targets + (size_t)b * T;
        int c = 0;
        for (int t = 0; t < T; t++) c += tg[t] >= 0;
        float wc = c ? (float)pow((double)c, -p) : 0.0f;
        for (int t = 0; t < T; t++) w[(size_t)b * T + t] = wc;
    }
}

/* HF's LengthGroupedSampler, deterministic: within each run of `group`
 * micro-batches, examples are sorted by length (ties by position, so the
 * order is total) and the run's batches are then visited in shuffled order.
 * Padding drops to what neighbours in length cost, and every batch still
 * holds a random draw of similar-length examples. */
typedef struct len_key {
    int len, pos, idx;
} len_key;

static int len_key_cmp(const void *a, const void *b) {
    const len_key *x = a, *y = b;
    if (x->len != y->len) return x->len < y->len ? 1 : -1;
    return (x->pos > y->pos) - (x->pos < y->pos);
}

static int group_by_length(const lm_train_example *ex, int *order, int n_ex,
                           int B, int group, int max_len, lm_rng *rng,
                           lm_err *err) {
    int run = group * B;
    len_key *keys = malloc((size_t)run * sizeof *keys);
    int *tmp = malloc((size_t)run * sizeof *tmp);
    int *bat = malloc((size_t)group * sizeof *bat);
    if (!keys || !tmp || !bat) {
        free(keys);
        free(tmp);
        free(bat);
        return lm_errf(err, "out of memory");
    }
    for (int s = 0; s < n_ex; s += run) {
        int n = n_ex - s < run ? n_ex - s : run;
        for (int i = 0; i < n; i++) {
            keys[i].idx = order[s + i];
            keys[i].pos = i;
            keys[i].len = lm_train_example_len(&ex[order[s + i]], max_len);
        }
        qsort(keys, (size_t)n, sizeof *keys, len_key_cmp);
        /* the run's last batch may be short: keep it last so every other
         * batch stays full */
        int nb = (n + B - 1) / B, full = n / B;
        for (int i = 0; i < nb; i++) bat[i] = i;
        for (int i = full - 1; i > 0; i--) {
            int j = (int)lm_rng_below(rng, (uint64_t)i + 1), t = bat[i];
            bat[i] = bat[j];
            bat[j] = t;
        }
        int at = 0;
        for (int i = 0; i < nb; i++)
            for (int k = bat[i] * B; k < bat[i] * B + B && k < n; k++)
                tmp[at++] = keys[k].idx;
        memcpy(order + s, tmp, (size_t)n * sizeof *tmp);
    }
    free(keys);
    free(tmp);
    free(bat);
    return 0;
}

static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static int check_opts(const lm_train_opts *o, int n_ex, lm_err *err) {
    if (n_ex <= 0) return lm_errf(err, "no training examples");
    if (o->epochs <= 0 || o->batch_size <= 0 || o->grad_accum <= 0)
        return lm_errf(err, "epochs %d, batch size %d and gradient "
                            "accumulation %d must be positive",
                       o->epochs, o->batch_size, o->grad_accum);
    if (o->max_steps < 0 || o->warmup_steps < 0)
        return lm_errf(err, "max_steps %d and warmup_steps %d must not be "
                            "negative", o->max_steps, o->warmup_steps);
    if (!(o->lr >= 0.0) || !isfinite(o->lr))
        return lm_errf(err, "learning rate %g must be finite and not "
                            "negative", o->lr);
    if (o->schedule < 0 || o->schedule >= LM_SCHED_COUNT)
        return lm_errf(err, "unknown learning-rate schedule %d",
                       (int)o->schedule);
    if (!(o->loss_length_power >= 0.0 && o->loss_length_power <= 4.0))
        return lm_errf(err, "loss_length_power %g must be between 0 and 4",
                       o->loss_length_power);
    if (o->batch_size > (1 << 20))
        return lm_errf(err, "batch size %d is implausibly large",
                       o->batch_size);
    return 0;
}

/* Checks every example; *tmax receives the longest trained length. */
static int check_examples(const lm_model *m, const lm_train_example *ex,
                          int n_ex, int max_len, int train_on_prompt,
                          int *tmax, lm_err *err) {
    int V = m->cfg.vocab_size, longest = 0, any = 0;
    for (int i = 0; i < n_ex; i++) {
        const lm_train_example *e = &ex[i];
        if (!e->ids || e->n <= 0)
            return lm_errf(err, "example %d is empty", i);
        if (e->prompt_len < 0 || e->prompt_len > e->n)
            return lm_errf(err, "example %d: prompt length %d outside [0, %d]",
                           i, e->prompt_len, e->n);
        for (int t = 0; t < e->n; t++)
            if (e->ids[t] < 0 || e->ids[t] >= V)
                return lm_errf(err, "example %d: token %d at position %d is "
                                    "outside the vocabulary [0, %d)",
                               i, e->ids[t], t, V);
        int n = lm_train_example_len(e, max_len);
        if (n > longest) longest = n;
        /* something to learn: a counted next token within the cut */
        if (n >= 2 && (train_on_prompt || e->prompt_len < n)) any = 1;
    }
    if (!any)
        return lm_errf(err, "no example has a %s token to learn within %d "
                            "tokens", train_on_prompt ? "next" : "response",
                       max_len);
    *tmax = longest;
    return 0;
}

/* Drops gradients the model got only for this run. */
static void free_model_grads(lm_model *m) {
    free(m->grad_memory);
    m->grad_memory = NULL;
    for (int i = 0; i < m->n_params; i++) m->params[i].grad = NULL;
}

int lm_train(lm_model *m, lm_lora_set *lora, const lm_train_example *ex,
             int n_ex, const lm_train_opts *opts, lm_train_status *final,
             lm_err *err) {
    const lm_train_opts *o = opts;
    if (check_opts(o, n_ex, err)) return -1;
    if (!m->be) return lm_errf(err, "model has no backend");
    int max_len = m->cfg.max_pos;
    if (o->max_len > 0 && o->max_len < max_len) max_len = o->max_len;
    int tmax = 0;
    if (check_examples(m, ex, n_ex, max_len, o->train_on_prompt, &tmax, err))
        return -1;
    int B = o->batch_size < n_ex ? o->batch_size : n_ex;

    /* Decide what trains. */
    int use_lora = 0, attached_here = 0, grads_here = 0;
    if (lora && lora->n > 0) {
        use_lora = 1;
    } else if (o->lora_r > 0) {
        if (!lora)
            return lm_errf(err, "LoRA training (lora_r %d) needs a set to "
                                "put the adapters in", o->lora_r);
        if (lm_lora_attach(m, o->lora_targets, o->lora_r, o->lora_alpha,
                           o->lora_dropout, o->seed, lora, err))
            return -1;
        use_lora = attached_here = 1;
    }

    lm_param_list pl = {0};
    lm_adamw opt = {0};
    lm_acts acts = {0};
    float **hidden = NULL;  /* base gradients hidden during LoRA training */
    int32_t *ids = NULL, *targets = NULL;
    float *weights = NULL;  /* per-token loss weights (loss_length_power) */
    int *order = NULL;
    const lm_train_example **batch = NULL;
    int rc = 0;

    if (use_lora) {
        /* Frozen base: no gradient pointer, so the backward skips its
         * weight gradients entirely. */
        hidden = malloc(((size_t)m->n_params + 1) * sizeof *hidden);
        if (!hidden) {
            rc = lm_errf(err, "out of memory");
            goto done;
        }
        for (int i = 0; i < m->n_params; i++) {
            hidden[i] = m->params[i].grad;
            m->params[i].grad = NULL;
        }
        for (int i = 0; i < lora->n && rc == 0; i++)
            rc = lm_params_add_lora(&pl, &lora->sites[i].lora, err);
        if (rc == 0) rc = lm_lora_set_reserve(lora, B * tmax, err);
        if (rc) goto done;
        lm_lora_set_training(lora, 1);
    } else {
        if (!m->grad_memory) {
            if (lm_model_alloc_grads(m, err)) {
                rc = -1;
                goto done;
            }
            grads_here = 1;
        }
        if ((rc = lm_params_add_model(&pl, m, o->decay_1d, err))) goto done;
    }
    if ((rc = lm_adamw_init(&opt, &pl, o->beta1, o->beta2, o->eps,
                            o->weight_decay, err)))
        goto done;
    if ((rc = lm_acts_build(&acts, m, B, tmax, 1, err))) goto done;
    ids = malloc((size_t)B * tmax * sizeof *ids);
    targets = malloc((size_t)B * tmax * sizeof *targets);
    order = malloc((size_t)n_ex * sizeof *order);
    batch = malloc((size_t)B * sizeof *batch);
    if (o->loss_length_power > 0) weights = malloc((size_t)B * tmax * sizeof *weights);
    if (!ids || !targets || !order || !batch || (o->loss_length_power > 0 && !weights)) {
        rc = lm_errf(err, "out of memory");
        goto done;
    }

    int n_micro = (n_ex + B - 1) / B, accum = o->grad_accum;
    long per_epoch = (n_micro + accum - 1) / accum;
    long total = per_epoch * o->epochs;
    if (o->max_steps > 0 && o->max_steps < total) total = o->max_steps;
    lm_rng rng;
    lm_rng_seed(&rng, o->seed ^ 0x73687566666c65ull); /* not the adapters' */
    for (int i = 0; i < n_ex; i++) order[i] = i;

    lm_train_status st = {0};
    st.total_steps = (int)total;
    st.epochs = o->epochs;
    double t0 = now_s();
    long step = 0;
    for (int epoch = 0; epoch < o->epochs && step < total; epoch++) {
        if (o->shuffle)
            for (int i = n_ex - 1; i > 0; i--) {
                int j = (int)lm_rng_below(&rng, (uint64_t)i + 1);
                int t = order[i];
                order[i] = order[j];
                order[j] = t;
            }
        if (o->group_by_length > 0 &&
            (rc = group_by_length(ex, order, n_ex, B, o->group_by_length,
                                  max_len, &rng, err)))
            goto done;
        double epoch_sum = 0.0;
        int epoch_updates = 0;
        for (int g = 0; g < n_micro && step < total; g += accum) {
            lm_params_zero_grad(&pl);
            int k = 0;
            double loss_sum = 0.0;
            for (int j = g; j < g + accum && j < n_micro; j++) {
                int start = j * B, nb = n_ex - start < B ? n_ex - start : B;
                int T = 1;
                for (int b = 0; b < nb; b++) {
                    batch[b] = &ex[order[start + b]];
                    int n = lm_train_example_len(batch[b], max_len);
                    if (n > T) T = n;
                    st.tokens += n;
                }
                int counted = lm_train_make_batch(batch, nb, T, max_len,
                                                  o->train_on_prompt, ids,
                                                  targets);
                if (counted == 0) continue;
                if (weights) example_weights(targets, nb, T, o->loss_length_power, weights);
                if ((rc = lm_forward(m, &acts, ids, NULL, nb, T, err)))
                    goto done;
                float loss = lm_loss(m, &acts, targets, weights, NULL);
                if (!isfinite(loss)) {
                    rc = lm_errf(err, "the loss became %g at update %ld",
                                 (double)loss, step + 1);
                    goto done;
                }
                if ((rc = lm_backward(m, &acts, ids, targets, weights, err)))
                    goto done;
                loss_sum += loss;
                k++;
            }
            /* Each micro-batch's gradient is a mean over its tokens; the
             * update takes the mean over micro-batches. */
            if (k > 1) lm_params_scale_grad(&pl, (float)(1.0 / k));
            double norm = lm_clip_grad_norm(&pl, o->max_grad_norm);
            double lr = o->lr * lm_sched_factor(o->schedule, step,
                                                o->warmup_steps, total);
            if (k > 0) lm_adamw_step(&opt, &pl, lr);
            step++;

            double loss = k ? loss_sum / k : 0.0;
            epoch_sum += loss;
            epoch_updates++;
            double el = now_s() - t0;
            st.step = (int)step;
            st.epoch = epoch + 1;
            st.loss = (float)loss;
            st.epoch_loss = (float)(epoch_sum / epoch_updates);
            st.lr = (float)lr;
            st.grad_norm = (float)norm;
            st.elapsed_s = el;
            st.tokens_per_s = el > 0 ? st.tokens / el : 0.0;
            st.eta_s = el / (double)step * (double)(total - step);
            if (o->progress) o->progress(o->progress_ctx, &st);
        }
        if (o->epoch_end) {
            /* The callback may evaluate the model: no dropout while it does. */
            if (use_lora) lm_lora_set_training(lora, 0);
            int verdict = o->epoch_end(o->epoch_ctx, epoch + 1, &st, err);
            if (use_lora) lm_lora_set_training(lora, 1);
            if (verdict < 0) {
                rc = -1;
                goto done;
            }
            if (verdict > 0) break;
            int again = 0;
            if ((rc = check_examples(m, ex, n_ex, max_len, o->train_on_prompt,
                                     &again, err)))
                goto done;
            if (again > tmax) {
                rc = lm_errf(err, "epoch %d's examples reach %d tokens, "
                                  "longer than the first epoch's %d",
                             epoch + 2, again, tmax);
                goto done;
            }
        }
    }
    if (final) *final = st;

done:
    if (use_lora) {
        lm_lora_set_training(lora, 0);
        if (hidden)
            for (int i = 0; i < m->n_params; i++) m->params[i].grad = hidden[i];
        if (rc && attached_here) lm_lora_set_free(lora);
    }
    if (grads_here) free_model_grads(m);
    free(hidden);
    free(batch);
    free(order);
    free(targets);
    free(weights);
    free(ids);
    lm_acts_free(&acts);
    lm_adamw_free(&opt);
    lm_params_free(&pl);
    return rc;
}
