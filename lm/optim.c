/* AdamW, clipping and schedules over a flat list of parameter spans. */
#include "optim.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

/* ---- the parameter list ---- */

int lm_params_add(lm_param_list *pl, float *data, float *grad, size_t n,
                  int decay, lm_err *err) {
    if (!data || !grad)
        return lm_errf(err, "a trainable parameter has no %s",
                       data ? "gradient" : "data");
    if (pl->n == pl->cap) {
        int cap = pl->cap ? 2 * pl->cap : 32;
        lm_param_ref *r = realloc(pl->refs, (size_t)cap * sizeof *r);
        if (!r) return lm_errf(err, "out of memory for the parameter list");
        pl->refs = r;
        pl->cap = cap;
    }
    pl->refs[pl->n++] = (lm_param_ref){data, grad, n, decay};
    pl->total += n;
    return 0;
}

int lm_params_add_model(lm_param_list *pl, lm_model *m, int decay_1d,
                        lm_err *err) {
    for (int i = 0; i < m->n_params; i++) {
        lm_tensor *t = &m->params[i];
        if (!t->grad)
            return lm_errf(err, "tensor %s has no gradient (call "
                                "lm_model_alloc_grads first)", t->name);
        if (lm_params_add(pl, t->data, t->grad, t->numel,
                          t->ndim >= 2 || decay_1d, err))
            return -1;
    }
    return 0;
}

int lm_params_add_lora(lm_param_list *pl, lm_lora *l, lm_err *err) {
    if (lm_params_add(pl, l->A.data, l->A.grad, l->A.numel, 1, err)) return -1;
    return lm_params_add(pl, l->B.data, l->B.grad, l->B.numel, 1, err);
}

void lm_params_free(lm_param_list *pl) {
    if (!pl) return;
    free(pl->refs);
    memset(pl, 0, sizeof *pl);
}

void lm_params_zero_grad(const lm_param_list *pl) {
    for (int i = 0; i < pl->n; i++)
        memset(pl->refs[i].grad, 0, pl->refs[i].n * sizeof(float));
}

void lm_params_scale_grad(const lm_param_list *pl, float s) {
    for (int i = 0; i < pl->n; i++) {
        float *g = pl->refs[i].grad;
        for (size_t j = 0; j < pl->refs[i].n; j++) g[j] *= s;
    }
}

double lm_params_grad_norm(const lm_param_list *pl) {
    double ss = 0.0;
    for (int i = 0; i < pl->n; i++) {
        const float *g = pl->refs[i].grad;
        for (size_t j = 0; j < pl->refs[i].n; j++) ss += (double)g[j] * g[j];
    }
    return sqrt(ss);
}

double lm_clip_grad_norm(const lm_param_list *pl, double max_norm) {
    double norm = lm_params_grad_norm(pl);
    if (max_norm > 0.0) {
        /* torch computes the coefficient in fp32 with the same 1e-6. */
        float coef = (float)max_norm / ((float)norm + 1e-6f);
        if (coef < 1.0f) lm_params_scale_grad(pl, coef);
    }
    return norm;
}

/* ---- AdamW ---- */

int lm_adamw_init(lm_adamw *o, const lm_param_list *pl, double beta1,
                  double beta2, double eps, double weight_decay, lm_err *err) {
    memset(o, 0, sizeof *o);
    if (!(beta1 >= 0.0 && beta1 < 1.0) || !(beta2 >= 0.0 && beta2 < 1.0))
        return lm_errf(err, "AdamW betas (%g, %g) must lie in [0, 1)", beta1,
                       beta2);
    if (!(eps >= 0.0) || !(weight_decay >= 0.0) || !isfinite(eps) ||
        !isfinite(weight_decay))
        return lm_errf(err, "AdamW eps %g and weight decay %g must be finite "
                            "and not negative", eps, weight_decay);
    o->m = calloc(2 * pl->total + 1, sizeof(float));
    if (!o->m)
        return lm_errf(err, "out of memory: %zu MiB of AdamW state",
                       2 * pl->total * sizeof(float) >> 20);
    o->v = o->m + pl->total;
    o->total = pl->total;
    o->beta1 = beta1;
    o->beta2 = beta2;
    o->eps = eps;
    o->weight_decay = weight_decay;
    return 0;
}

void lm_adamw_step(lm_adamw *o, const lm_param_list *pl, double lr) {
    o->step++;
    /* torch forms every scalar in Python floats (double) and rounds it to
     * fp32 once, where it meets the tensor; so do we. */
    const float b1 = (float)o->beta1, b2 = (float)o->beta2,
                a1 = (float)(1.0 - o->beta1), a2 = (float)(1.0 - o->beta2),
                eps = (float)o->eps;
    double bc1 = 1.0 - pow(o->beta1, (double)o->step);
    double bc2 = 1.0 - pow(o->beta2, (double)o->step);
    float step_size = (float)(lr / bc1);
    float bc2_sqrt = (float)sqrt(bc2);
    float decay = (float)(1.0 - lr * o->weight_decay);
    size_t off = 0;
    for (int i = 0; i < pl->n; i++) {
        const lm_param_ref *r = &pl->refs[i];
        float *p = r->data, *m = o->m + off, *v = o->v + off;
        const float *g = r->grad;
        int wd = r->decay && o->weight_decay > 0.0;
        size_t n = r->n;
#pragma omp parallel for schedule(static) if (n > 65536)
        for (size_t j = 0; j < n; j++) {
            if (wd) p[j] *= decay;
            m[j] = m[j] * b1 + a1 * g[j];
            v[j] = v[j] * b2 + a2 * g[j] * g[j];
            float denom = sqrtf(v[j]) / bc2_sqrt + eps;
            p[j] -= step_size * (m[j] / denom);
        }
        off += n;
    }
}

void lm_adamw_free(lm_adamw *o) {
    if (!o) return;
    free(o->m);
    memset(o, 0, sizeof *o);
}

/* ---- schedules ---- */

static const char *const sched_names[LM_SCHED_COUNT] = {"constant", "linear",
                                                        "cosine"};

const char *lm_sched_name(lm_sched s) {
    return (s >= 0 && s < LM_SCHED_COUNT) ? sched_names[s] : "unknown";
}

int lm_sched_from_name(const char *s, lm_sched *out) {
    for (int i = 0; i < LM_SCHED_COUNT; i++)
        if (strcmp(s, sched_names[i]) == 0) {
            *out = (lm_sched)i;
            return 0;
        }
    return -1;
}

double lm_sched_factor(lm_sched s, long step, long warmup, long total) {
    if (step < warmup) return (double)step / (double)(warmup > 1 ? warmup : 1);
    long span = total - warmup > 1 ? total - warmup : 1;
    switch (s) {
    case LM_SCHED_LINEAR:
        return fmax(0.0, (double)(total - step) / (double)span);
    case LM_SCHED_COSINE: {
        /* Clamped: past total_steps HF's curve would climb back up. */
        double progress = fmin(1.0, (double)(step - warmup) / (double)span);
        return fmax(0.0, 0.5 * (1.0 + cos(M_PI * 0.5 * 2.0 * progress)));
    }
    default:
        return 1.0;
    }
}
