/* Optimisation: the list of trainable parameters, AdamW exactly as
 * torch.optim.AdamW computes it, global-norm gradient clipping, and the
 * learning-rate schedules of Hugging Face transformers.
 *
 * The optimizer never sees tensors or adapters, only (data, grad, n) spans,
 * so full fine-tuning and LoRA share every line of it. */
#ifndef LM_OPTIM_H
#define LM_OPTIM_H

#include <stddef.h>

#include "err.h"
#include "lora.h"
#include "model.h"

/* One trainable span: n floats of data with their gradient. */
typedef struct lm_param_ref {
    float *data, *grad;
    size_t n;
    int decay;          /* weight decay applies to this span */
} lm_param_ref;

typedef struct lm_param_list {
    lm_param_ref *refs;
    int n, cap;
    size_t total;       /* floats over all spans */
} lm_param_list;

int lm_params_add(lm_param_list *pl, float *data, float *grad, size_t n,
                  int decay, lm_err *err);
/* Every tensor of the model (gradients must be allocated). 2-D tensors
 * decay; 1-D ones (norm weights, biases) decay only if decay_1d. */
int lm_params_add_model(lm_param_list *pl, lm_model *m, int decay_1d,
                        lm_err *err);
/* An adapter's A and B (both decay, as the HF Trainer does for LoRA). */
int lm_params_add_lora(lm_param_list *pl, lm_lora *l, lm_err *err);
void lm_params_free(lm_param_list *pl);
void lm_params_zero_grad(const lm_param_list *pl);
/* Multiplies every gradient by s. */
void lm_params_scale_grad(const lm_param_list *pl, float s);
/* sqrt(sum of squared gradients), accumulated in double. */
double lm_params_grad_norm(const lm_param_list *pl);

/* torch.nn.utils.clip_grad_norm_: if the global norm exceeds max_norm,
 * scale every gradient by max_norm / (norm + 1e-6). max_norm <= 0 only
 * measures. Returns the norm before clipping. */
double lm_clip_grad_norm(const lm_param_list *pl, double max_norm);

/* ---- AdamW ---- */

typedef struct lm_adamw {
    /* doubles, as torch takes them from Python floats: 1 - beta1 is then
     * rounded from the double like torch's, not from a float 0.9 */
    double beta1, beta2, eps, weight_decay;
    long step;          /* updates done so far */
    float *m, *v;       /* first and second moments, one allocation */
    size_t total;
} lm_adamw;

/* State for the parameters of pl (which must not change afterwards). */
int lm_adamw_init(lm_adamw *o, const lm_param_list *pl, double beta1,
                  double beta2, double eps, double weight_decay, lm_err *err);
/* One update with learning rate lr, per torch.optim.AdamW:
 *   p -= lr * wd * p                        (decoupled decay, decay spans)
 *   m = b1 m + (1 - b1) g;  v = b2 v + (1 - b2) g^2
 *   p -= lr / (1 - b1^t) * m / (sqrt(v) / sqrt(1 - b2^t) + eps) */
void lm_adamw_step(lm_adamw *o, const lm_param_list *pl, double lr);
void lm_adamw_free(lm_adamw *o);

/* ---- learning-rate schedules ---- */

typedef enum lm_sched {
    LM_SCHED_CONSTANT = 0, /* get_constant_schedule_with_warmup */
    LM_SCHED_LINEAR,       /* get_linear_schedule_with_warmup */
    LM_SCHED_COSINE,       /* get_cosine_schedule_with_warmup, 0.5 cycles */
    LM_SCHED_COUNT
} lm_sched;

const char *lm_sched_name(lm_sched s);              /* "constant", ... */
int lm_sched_from_name(const char *s, lm_sched *out); /* 0 ok, -1 unknown */

/* The multiplier of the base learning rate for update number `step`
 * (0-based, as HF's LambdaLR sees it): step / warmup during the warmup,
 * then 1 (constant), (total - step) / (total - warmup) (linear), or
 * 0.5 (1 + cos(pi progress)) (cosine), never below 0; past `total` the
 * cosine stays at 0 (HF's would rise again; training never goes there). */
double lm_sched_factor(lm_sched s, long step, long warmup, long total);

#endif
