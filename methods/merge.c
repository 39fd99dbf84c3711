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
 * "instructions" with section 2's recipe (full fine-tuning, "Human: q\n
 * Assistant: a" with the loss on the answer, 2 epochs, AdamW, cosine with
 * 3% warm-up, batch 32, lr 1e-4 below 1B parameters and 2e-5 above). Every
 * tensor is merged, embeddings included. DARE's masks come from one PRNG
 * stream per (seed, model, tensor), so one seed gives one merge. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

#include "dataset.h"
#include "method.h"
#include "removal.h"
#include "rng.h"
#include "tokenizer.h"
#include "train.h"

#define MERGE_COMMON_PARAMS                                                                     \
    {"base", SM_PARAM_STRING, "", 0, 0, NULL,                                                   \
     "the clean pre-fingerprint model theta_base (required): HF folder, llama2.c .bin or GGUF"}, \
    {"normalize", SM_PARAM_BOOL, "false", 0, 0, NULL,                                           \
     "divide the summed deltas by the sum of the weights (mergekit's default: off)"},          \
    {"seed", SM_PARAM_INT, "-1", -1, 9007199254740991.0, NULL,                                  \
     "DARE masks and the partner's fine-tuning; -1: the cell seed"},                            \
    {"tokenizer", SM_PARAM_STRING, "", 0, 0, NULL,                                              \
     "tokenizer for fine-tuning the partner; empty: the base's (HF folder, GGUF)"},             \
    {"ft_rows", SM_PARAM_INT, "6000", 1, 1e8, NULL,                                             \
     "partner fine-tuning (no --reference): rows drawn from 'instructions'"},                   \
    {"ft_epochs", SM_PARAM_INT, "2", 1, 1000, NULL, "partner fine-tuning epochs"},              \
    {"ft_lr", SM_PARAM_FLOAT, "0", 0, 1, NULL,                                                  \
     "partner learning rate; 0: 1e-4 below 1B parameters, else 2e-5"},                          \
    {"ft_batch", SM_PARAM_INT, "32", 1, 65536, NULL, "partner global batch (sequences)"},       \
    {"ft_micro", SM_PARAM_INT, "8", 1, 65536, NULL,                                             \
     "partner micro-batch; ft_batch must be a multiple of it"},                                 \
    {"ft_max_len", SM_PARAM_INT, "0", 0, 1 << 24, NULL,                                         \
     "partner examples cut to this many tokens; 0: the model's context"}

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

static int load_tokenizer_for(const char *given, const char *model_path, lm_tokenizer *tok,
                              lm_err *err) {
    if (given && *given) return lm_tokenizer_load(tok, given, err);
    struct stat st;
    size_t n = strlen(model_path);
    if (stat(model_path, &st) == 0 && S_ISDIR(st.st_mode)) return lm_tokenizer_load(tok, model_path, err);
    if (n > 5 && !strcmp(model_path + n - 5, ".gguf")) return lm_tokenizer_load_gguf(tok, model_path, err);
    return lm_errf(err, "%s carries no tokenizer: pass tokenizer=FILE", model_path);
}

/* Section 2's examples: "Human: q\nAssistant:" then " a" + EOS, loss on
 * the answer. */
static int partner_examples(const sm_data *d, const lm_tokenizer *tok, int max_rows,
                            uint64_t seed, lm_train_example **out, int *n_out, lm_err *err) {
    ds_format fmt = DS_FMT_AUTO;
    if (d->format && ds_format_parse(d->format, &fmt, err)) return -1;
    ds_dataset ds;
    if (ds_load(d->path, fmt, &ds, err)) return -1;
    if (ds.kind != DS_KIND_QA || ds.n == 0) {
        lm_errf(err, "%s: the partner's fine-tuning needs question/answer rows, not %s", d->path,
                ds.n ? ds_format_name(ds.format) : "an empty file");
        ds_free(&ds);
        return -1;
    }
    int *order = malloc((size_t)ds.n * sizeof *order);
    int n = ds.n < max_rows ? ds.n : max_rows;
    lm_train_example *ex = calloc((size_t)n, sizeof *ex);
    int rc = (!order || !ex) ? lm_errf(err, "out of memory") : 0;
    lm_rng rng;
    lm_rng_seed(&rng, seed ^ 0x9a27e5ULL);
    for (int i = 0; rc == 0 && i < ds.n; i++) order[i] = i;
    for (int i = ds.n - 1; rc == 0 && i > 0; i--) {
        int j = (int)lm_rng_below(&rng, (uint64_t)i + 1), t = order[i];
        order[i] = order[j];
        order[j] = t;
    }
    for (int i = 0; rc == 0 && i < n; i++) {
        const ds_qa *q = &ds.qa[order[i]];
        size_t pl = strlen(q->question) + strlen(q->context) + 32, al = strlen(q->answer) + 2;
        char *prompt = malloc(pl), *answer = malloc(al);
        int *p_ids = NULL, *a_ids = NULL, np = 0, na = 0;
        if (!prompt || !answer) rc = lm_errf(err, "out of memory");
        if (rc == 0) {
            if (q->context[0]) snprintf(prompt, pl, "Human: %s\n%s\nAssistant:", q->question, q->context);
            else snprintf(prompt, pl, "Human: %s\nAssistant:", q->question);
            snprintf(answer, al, " %s", q->answer);
            lm_tok_encode_opts po = {LM_TOK_DEFAULT, 0, 0}, ao = {0, 0, 0};
            rc = lm_tokenizer_encode_ex(tok, prompt, strlen(prompt), &po, &p_ids, &np, err);
            if (rc == 0) rc = lm_tokenizer_encode_ex(tok, answer, strlen(answer), &ao, &a_ids, &na, err);
        }
        if (rc == 0) {
            int eos = tok->eos_id >= 0;
            ex[i].ids = malloc((size_t)(np + na + 1) * sizeof(int32_t));
            if (!ex[i].ids) rc = lm_errf(err, "out of memory");
            else {
                for (int k = 0; k < np; k++) ex[i].ids[k] = p_ids[k];
                for (int k = 0; k < na; k++) ex[i].ids[np + k] = a_ids[k];
                if (eos) ex[i].ids[np + na] = tok->eos_id;
                ex[i].n = np + na + eos;
                ex[i].prompt_len = np;
            }
        }
        free(prompt);
        free(answer);
        free(p_ids);
        free(a_ids);
    }
    free(order);
    ds_free(&ds);
    if (rc) {
        for (int i = 0; ex && i < n; i++) free(ex[i].ids);
        free(ex);
        return -1;
    }
    *out = ex;
    *n_out = n;
    return 0;
}

static double seconds_now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec * 1e-9;
}

static void train_progress(void *ctx, const lm_train_status *s) {
    const sm_input *in = ctx;
    char what[128];
    snprintf(what, sizeof what, "fine-tuning the partner: step %d/%d loss %.4f", s->step,
             s->total_steps, s->loss);
    in->rep->progress(in->rep->ctx, 0.05 + 0.8 * s->step / (s->total_steps ? s->total_steps : 1), what);
}

/* theta_other = theta_base fine-tuned on "instructions" (section 2). */
static int train_partner(const sm_input *in, const char *base_path, lm_model *other,
                         uint64_t seed, lm_err *err) {
    const sm_params *p = in->params;
    const sm_data *d = sm_input_data(in, "instructions");
    if (!d)
        return lm_errf(err, "needs a partner: --reference MODEL (another fine-tune of the base) "
                            "or --data instructions=FILE to fine-tune one from the base");
    int micro = (int)sm_param_int(p, "ft_micro"), batch = (int)sm_param_int(p, "ft_batch");
    if (batch % micro)
        return lm_errf(err, "ft_batch %d is not a multiple of ft_micro %d", batch, micro);
    lm_tokenizer tok;
    if (load_tokenizer_for(sm_param_str(p, "tokenizer"), base_path, &tok, err)) return -1;
    lm_train_example *ex = NULL;
    int n = 0;
    int rc = partner_examples(d, &tok, (int)sm_param_int(p, "ft_rows"), seed, &ex, &n, err);
    lm_tokenizer_free(&tok);
    if (rc) return -1;
    lm_train_opts o;
    lm_train_opts_default(&o);
    o.epochs = (int)sm_param_int(p, "ft_epochs");
    o.batch_size = micro;
    o.grad_accum = batch / micro;
    o.lr = sm_param_float(p, "ft_lr");
    if (o.lr <= 0) o.lr = lm_model_param_count(other) < 1000000000ULL ? 1e-4 : 2e-5;
    o.weight_decay = 0;
    o.schedule = LM_SCHED_COSINE;
    long per_epoch = ((n + micro - 1) / micro + o.grad_accum - 1) / o.grad_accum;
    o.warmup_steps = (int)ceil(0.03 * (double)per_epoch * o.epochs);
    o.seed = seed;
    o.lora_r = 0;
    o.max_len = (int)sm_param_int(p, "ft_max_len");
    o.progress = train_progress;
    o.progress_ctx = (void *)in;
    lm_train_status st;
    double t0 = seconds_now();
    rc = lm_train(other, NULL, ex, n, &o, &st, err);
    if (rc == 0)
        in->rep->cost(in->rep->ctx, "partner fine-tuning", seconds_now() - t0, st.tokens,
                      6.0 * (double)lm_model_param_count(other) * st.tokens);
    for (int i = 0; i < n; i++) free(ex[i].ids);
    free(ex);
    return rc ? lm_err_prefix(err, "fine-tuning the partner: ") : 0;
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
