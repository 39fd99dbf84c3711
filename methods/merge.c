/* Model merging as removal (removal-methods.md section 4): the
 * fingerprinted model is merged with another fine-tune of the same base,
 * diluting whatever the fingerprint wrote into the weights.
 *
 *   task-arithmetic:  tau_t = theta_t - theta_base,
 *                     theta = theta_base + sum_t w_t tau_t  (/ sum_t w_t
 *                     with normalize)
 *   dare:             each delta first loses every entry with probability
 *                     p = 1 - density and the rest are divided by density
 *                     (rescale), then the same sum; ties=true adds TIES'
 *                     per-entry sign election (DARE-TIES).
 *
 * The models: theta_fp (the model given), theta_base (parameter `base`,
 * the clean pre-fingerprint model) and the partner theta_other: the
 * --reference model, or else theta_base fine-tuned here on the data set
 * "instructions" by the incremental-ft method, i.e. section 2's recipe
 * (ft_* parameters pass through to it). Every tensor is merged,
 * embeddings included. DARE's masks come from one PRNG stream per (seed,
 * model, tensor), so one seed gives one merge. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

#include "method.h"
#include "removal.h"
#include "rng.h"

#define MERGE_COMMON_PARAMS                                                                     \
    {"base", SM_PARAM_STRING, "", 0, 0, NULL,                                                   \
     "the clean pre-fingerprint model theta_base: HF folder, llama2.c .bin or GGUF (required; in a grid, the unit's base model by default)"}, \
    {"normalize", SM_PARAM_BOOL, "false", 0, 0, NULL,                                           \
     "divide the summed deltas by the sum of the weights (mergekit's default: off)"},          \
    {"seed", SM_PARAM_INT, "-1", -1, 9007199254740991.0, NULL,                                  \
     "DARE masks and the partner's fine-tuning; -1: the cell seed"},                            \
    {"ft_rows", SM_PARAM_INT, "6000", 1, 1e7, NULL,                                             \
     "partner (no --reference): incremental-ft of the base on 'instructions', n_rows"},        \
    {"ft_epochs", SM_PARAM_INT, "2", 1, 100000, NULL, "partner fine-tuning epochs"},            \
    {"ft_lr", SM_PARAM_FLOAT, "0", 0, 10, NULL,                                                 \
     "partner learning rate; 0: 1e-4 below 1B parameters, else 2e-5"},                          \
    {"ft_batch", SM_PARAM_INT, "32", 1, 65536, NULL, "partner rows per update"},                \
    {"ft_micro", SM_PARAM_INT, "8", 1, 4096, NULL, "partner rows per forward pass"},            \
    {"ft_max_len", SM_PARAM_INT, "0", 0, 1 << 24, NULL,                                         \
     "partner rows cut to this many tokens; 0: the model's context"}

static const sm_param_def ta_params[] = {
    {"w_fp", SM_PARAM_FLOAT, "0.8", -16, 16, NULL, "weight of the fingerprinted model's delta"},
    {"w_other", SM_PARAM_FLOAT, "0.2", -16, 16, NULL, "weight of the partner's delta"},
    MERGE_COMMON_PARAMS,
};

static const sm_param_def dare_params[] = {
    {"w_fp", SM_PARAM_FLOAT, "0.6", -16, 16, NULL, "weight of the fingerprinted model's delta"},
    {"w_other", SM_PARAM_FLOAT, "0.4", -16, 16, NULL, "weight of the partner's delta"},
    {"density", SM_PARAM_FLOAT, "0.4", 1e-6, 1, NULL, "kept fraction d = 1 - p of every delta"},
    {"rescale", SM_PARAM_BOOL, "true", 0, 0, NULL, "divide the kept deltas by the density"},
    {"ties", SM_PARAM_BOOL, "false", 0, 0, NULL,
     "DARE-TIES: keep per entry only deltas of the weighted sum's sign, normalised by "
     "their weights"},
    MERGE_COMMON_PARAMS,
};

static const char *const merge_data[] = {"instructions", NULL};

/* ---- the arithmetic ---- */

static uint64_t mix64(uint64_t x) {
    x += 0x9e3779b97f4a7c15ULL;
    x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ULL;
    x = (x ^ (x >> 27)) * 0x94d049bb133111ebULL;
    return x ^ (x >> 31);
}

int sm_merge_tensor(float *out, const float *base, const float *const *models, const double *w,
                    int n_models, size_t n, const sm_merge_opts *o, int tensor, lm_err *err) {
    enum { MAXM = 16 };
    if (n_models < 1 || n_models > MAXM)
        return lm_errf(err, "merging %d models (1 to %d)", n_models, MAXM);
    if (o->dare && !(o->density > 0 && o->density <= 1))
        return lm_errf(err, "DARE density %g is outside (0, 1]", o->density);
    double wsum = 0;
    for (int t = 0; t < n_models; t++) wsum += w[t];
    if (o->normalize && !o->ties && fabs(wsum) < 1e-12)
        return lm_errf(err, "normalize: the weights sum to zero");
    lm_rng rng[MAXM];
    for (int t = 0; t < n_models; t++)
        lm_rng_seed(&rng[t], mix64(mix64(o->seed ^ mix64((uint64_t)t + 1)) ^ (uint64_t)tensor));
    for (size_t i = 0; i < n; i++) {
        double b = base[i], d[MAXM];
        for (int t = 0; t < n_models; t++) {
            d[t] = (double)models[t][i] - b;
            if (o->dare) {
                /* one draw per entry and model, kept or not, so the
                 * streams stay aligned whatever the values */
                int keep = lm_rng_uniform(&rng[t]) < o->density;
                d[t] = keep ? (o->rescale ? d[t] / o->density : d[t]) : 0.0;
            }
        }
        double delta = 0;
        if (o->ties) {
            double s = 0, num = 0, den = 0;
            for (int t = 0; t < n_models; t++) s += w[t] * d[t];
            int sign = (s > 0) - (s < 0);
            for (int t = 0; t < n_models; t++)
                if (sign != 0 && ((d[t] > 0) - (d[t] < 0)) == sign) {
                    num += w[t] * d[t];
                    den += w[t];
                }
            delta = den != 0 ? num / den : 0.0;
        } else {
            for (int t = 0; t < n_models; t++) delta += w[t] * d[t];
            if (o->normalize) delta /= wsum;
        }
        out[i] = (float)(b + delta);
    }
    return 0;
}

/* ---- the partner ---- */

static double seconds_now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec * 1e-9;
}

/* The partner's progress lands in [0.05, 0.8] of this method's. */
typedef struct scaled_reporter {
    const sm_reporter *outer;
} scaled_reporter;

static void scaled_progress(void *ctx, double f, const char *what) {
    const sm_reporter *o = ((scaled_reporter *)ctx)->outer;
    char w[256];
    snprintf(w, sizeof w, "partner: %s", what);
    o->progress(o->ctx, 0.05 + 0.75 * f, w);
}

static void scaled_cost(void *ctx, const char *step, double s, double tokens, double flops) {
    const sm_reporter *o = ((scaled_reporter *)ctx)->outer;
    char w[256];
    snprintf(w, sizeof w, "partner %s", step);
    o->cost(o->ctx, w, s, tokens, flops);
}

/* theta_other = incremental-ft(theta_base) on "instructions" (section 2),
 * in place; its folder goes to the scratch space. */
static int train_partner(const sm_input *in, const char *base_path, lm_model *other,
                         uint64_t seed, lm_err *err) {
    const sm_params *p = in->params;
    if (!sm_input_data(in, "instructions"))
        return lm_errf(err, "needs a partner: --reference MODEL (another fine-tune of the base) "
                            "or --data instructions=FILE to fine-tune one from the base");
    const sm_method *ift = sm_method_find("incremental-ft");
    if (!ift) return lm_errf(err, "the incremental-ft method is not registered");
    char a[6][64];
    snprintf(a[0], sizeof a[0], "n_rows=%lld", (long long)sm_param_int(p, "ft_rows"));
    snprintf(a[1], sizeof a[1], "epochs=%lld", (long long)sm_param_int(p, "ft_epochs"));
    snprintf(a[2], sizeof a[2], "lr=%.17g", sm_param_float(p, "ft_lr"));
    snprintf(a[3], sizeof a[3], "batch=%lld", (long long)sm_param_int(p, "ft_batch"));
    snprintf(a[4], sizeof a[4], "micro_batch=%lld", (long long)sm_param_int(p, "ft_micro"));
    snprintf(a[5], sizeof a[5], "max_len=%lld", (long long)sm_param_int(p, "ft_max_len"));
    const char *assign[6] = {a[0], a[1], a[2], a[3], a[4], a[5]};
    sm_params ip;
    if (sm_params_parse(ift, assign, 6, &ip, err)) return -1;
    char dir[4200];
    snprintf(dir, sizeof dir, "%s/partner", in->work_dir ? in->work_dir : in->out_dir);
    mkdir(dir, 0755);
    scaled_reporter sr = {in->rep};
    sm_reporter rep = {&sr, scaled_progress, scaled_cost};
    sm_input sub = *in;
    sub.model = other;
    sub.model_path = base_path;
    sub.reference = NULL;
    sub.reference_path = NULL;
    sub.params = &ip;
    sub.seed = seed;
    sub.out_dir = dir;
    sub.rep = &rep;
    if (ift->run(&sub, err)) return lm_err_prefix(err, "fine-tuning the partner: ");
    return 0;
}

/* ---- the method ---- */

static int same_shape(const lm_model *a, const lm_model *b, const char *what, lm_err *err) {
    const lm_config *x = &a->cfg, *y = &b->cfg;
    if (x->arch != y->arch || x->vocab_size != y->vocab_size || x->d_model != y->d_model ||
        x->n_layers != y->n_layers || x->n_heads != y->n_heads || x->n_kv_heads != y->n_kv_heads ||
        x->ffn_dim != y->ffn_dim || a->n_params != b->n_params)
        return lm_errf(err, "%s is not the same architecture as the fingerprinted model "
                            "(%s %d layers d %d vocab %d vs %s %d layers d %d vocab %d)",
                       what, lm_arch_name(y->arch), y->n_layers, y->d_model, y->vocab_size,
                       lm_arch_name(x->arch), x->n_layers, x->d_model, x->vocab_size);
    for (int i = 0; i < a->n_params; i++)
        if (strcmp(a->params[i].name, b->params[i].name) || a->params[i].numel != b->params[i].numel)
            return lm_errf(err, "%s: tensor %s does not match the fingerprinted model's %s", what,
                           b->params[i].name, a->params[i].name);
    return 0;
}

static int merge_run_common(const sm_input *in, int dare, lm_err *err) {
    const sm_params *p = in->params;
    const char *base_path = sm_param_str(p, "base");
    if (!base_path[0] && in->base_path) base_path = in->base_path;
    if (!base_path[0])
        return lm_errf(err, "parameter 'base' (the clean pre-fingerprint model) is required");
    int64_t ps = sm_param_int(p, "seed");
    uint64_t seed = ps < 0 ? in->seed : (uint64_t)ps;
    lm_model base, trained;
    int have_trained = 0;
    in->rep->progress(in->rep->ctx, 0.0, "loading the base model");
    if (lm_model_load(&base, base_path, err)) return lm_err_prefix(err, "base %s: ", base_path);
    base.be = in->model->be;
    int rc = same_shape(in->model, &base, "the base", err);
    lm_model *other = in->reference;
    if (rc == 0 && other) rc = same_shape(in->model, other, "the --reference model", err);
    if (rc == 0 && !other) {
        rc = lm_model_load(&trained, base_path, err);
        if (rc == 0) {
            have_trained = 1;
            trained.be = in->model->be;
            other = &trained;
            rc = train_partner(in, base_path, other, seed, err);
        }
    }
    sm_merge_opts o = {.dare = dare,
                       .density = dare ? sm_param_float(p, "density") : 1.0,
                       .rescale = dare ? sm_param_bool(p, "rescale") : 0,
                       .ties = dare ? sm_param_bool(p, "ties") : 0,
                       .normalize = sm_param_bool(p, "normalize"),
                       .seed = seed};
    double w[2] = {sm_param_float(p, "w_fp"), sm_param_float(p, "w_other")};
    in->rep->progress(in->rep->ctx, 0.85, "merging");
    double t0 = seconds_now();
    for (int i = 0; rc == 0 && i < in->model->n_params; i++) {
        lm_tensor *t = &in->model->params[i];
        const float *models[2] = {t->data, other->params[i].data};
        rc = sm_merge_tensor(t->data, base.params[i].data, models, w, 2, t->numel, &o, i, err);
    }
    if (rc == 0)
        in->rep->cost(in->rep->ctx, "merge", seconds_now() - t0, 0,
                      6.0 * (double)lm_model_param_count(in->model));
    lm_model_free(&base);
    if (have_trained) lm_model_free(&trained);
    if (rc) return -1;
    in->rep->progress(in->rep->ctx, 0.95, "saving the merged model");
    if (lm_model_save_hf(in->model, in->out_dir, err)) return -1;
    char path[4200];
    snprintf(path, sizeof path, "%s/merge.json", in->out_dir);
    FILE *f = fopen(path, "w");
    if (!f) return lm_errf(err, "cannot write %s", path);
    fprintf(f, "{\"method\": \"%s\", \"w_fp\": %.17g, \"w_other\": %.17g, \"normalize\": %s, "
               "\"density\": %.17g, \"rescale\": %s, \"ties\": %s, \"seed\": %llu, "
               "\"partner\": \"%s\"}\n",
            dare ? "dare" : "task-arithmetic", w[0], w[1], o.normalize ? "true" : "false",
            o.density, o.rescale ? "true" : "false", o.ties ? "true" : "false",
            (unsigned long long)seed, have_trained ? "fine-tuned base" : "reference");
    if (fclose(f)) return lm_errf(err, "cannot write %s", path);
    in->rep->progress(in->rep->ctx, 1.0, "done");
    return 0;
}

static int ta_run(const sm_input *in, lm_err *err) { return merge_run_common(in, 0, err); }
static int dare_run(const sm_input *in, lm_err *err) { return merge_run_common(in, 1, err); }

const sm_method sm_method_task_arithmetic = {
    .abi = SM_METHOD_ABI,
    .name = "task-arithmetic",
    .description = "Task Arithmetic: base + w_fp (fp - base) + w_other (other - base), the "
                   "partner from --reference or fine-tuned from base on 'instructions'",
    .params = ta_params,
    .n_params = sizeof ta_params / sizeof ta_params[0],
    .wants_data = merge_data,
    .output = SM_OUT_MODEL,
    .run = ta_run,
};

const sm_method sm_method_dare = {
    .abi = SM_METHOD_ABI,
    .name = "dare",
    .description = "DARE: Task Arithmetic on deltas randomly dropped to a density and "
                   "rescaled (optionally with TIES sign election)",
    .params = dare_params,
    .n_params = sizeof dare_params / sizeof dare_params[0],
    .wants_data = merge_data,
    .output = SM_OUT_MODEL,
    .run = dare_run,
};
