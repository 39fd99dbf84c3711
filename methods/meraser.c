/* MEraser (Zhang et al., ACL 2025; removal-methods.md section 1).
 *
 *   1. erase: a LoRA trained on mismatched question/answer pairs (each
 *      question answered with the answer of a question of another type)
 *      teaches the model to answer beside the point, which overwrites the
 *      memorised trigger -> target mapping; merged into the weights;
 *   2. recover: a second LoRA on matched pairs brings the utility back,
 *      merged as well.
 * The erase set is built from any question/answer corpus by the type-
 * mismatch shuffle (ds_meraser_build, seeded), or read as-is from
 * MEraser's own files (--data mismatched=... recover=...).
 *
 * The transferable erase-LoRA (1.6): `meraser-erase-lora` trains only the
 * erase adapter, on the clean base model, and writes it as a PEFT folder;
 * `meraser erase_adapter=DIR` then merges that adapter into each
 * fingerprinted descendant instead of training one, before recovering.
 *
 * Rows are the reference's raw question + answer, except that a model
 * under 1B parameters gets them in the benchmark's chat template (param
 * "template", [DESIGN]): a tiny model does not carry an erase across
 * formats (tiny-llama Chain&Hash: FSR 0.7 after a raw-row MEraser, 0 with
 * the same rows in the template its fingerprint is queried in).
 *
 * Defaults are the reference code's (cf.py, recover.py) in their
 * single-process form: micro-batch 1 with gradient accumulation 8 (erase)
 * and 36 (recover) stand for 8 and 9x4 data-parallel ranks. */
#include <cjson/cJSON.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fingerprint.h"
#include "peft.h"
#include "qa_train.h"

/* Shared by meraser and meraser-erase-lora: the erase phase. */
#define ERASE_PARAMS                                                              \
    {"n_mismatched", SM_PARAM_INT, "300", 1, 1e7, NULL,                          \
     "erase rows built from the QA corpus (a --data mismatched file is used whole)"}, \
    {"mask_question", SM_PARAM_BOOL, "false", 0, 0, NULL,                        \
     "loss on the answer tokens only (false: on question and answer, as the "    \
     "reference actually trained)"},                                             \
    {"max_question_tokens", SM_PARAM_INT, "256", 1, 1 << 20, NULL,               \
     "question cut to this many tokens (and to half the model's context)"},      \
    {"max_answer_tokens", SM_PARAM_INT, "256", 1, 1 << 20, NULL,                 \
     "answer cut to this many tokens (and to half the model's context)"},        \
    {"template", SM_PARAM_CHOICE, "auto", 0, 0, "auto|none|tiny|vicuna|llama2",  \
     "[DESIGN] chat template around each question: none = the reference's raw "  \
     "rows; auto = none from 1B parameters, the tiny template below"},           \
    {"scale_rank", SM_PARAM_BOOL, "true", 0, 0, NULL,                            \
     "tiny-model rule: a rank above d_model/4 becomes d_model/8"},               \
    {"erase_r", SM_PARAM_INT, "8", 1, 4096, NULL, "erase LoRA rank"},            \
    {"erase_alpha", SM_PARAM_FLOAT, "16", 0, 1e6, NULL, "erase LoRA alpha"},     \
    {"erase_dropout", SM_PARAM_FLOAT, "0.05", 0, 0.99, NULL, "erase LoRA dropout"}, \
    {"erase_targets", SM_PARAM_STRING, "auto", 0, 0, NULL,                       \
     "erase LoRA modules, comma-separated; auto = the family's q/v projections"}, \
    {"erase_lr", SM_PARAM_FLOAT, "5e-4", 1e-12, 10, NULL, "erase learning rate"}, \
    {"erase_schedule", SM_PARAM_CHOICE, "constant", 0, 0, "constant|linear|cosine", \
     "erase learning-rate schedule"},                                            \
    {"erase_warmup", SM_PARAM_FLOAT, "0", 0, 1, NULL,                            \
     "erase warm-up, a fraction of the steps"},                                  \
    {"erase_epochs", SM_PARAM_INT, "0", 0, 100000, NULL,                         \
     "erase epochs; 0 = 5 (the reference) from 1B parameters, 8 below [DESIGN]"}, \
    {"erase_batch", SM_PARAM_INT, "1", 1, 4096, NULL, "erase micro-batch (sequences)"}, \
    {"erase_grad_accum", SM_PARAM_INT, "8", 1, 65536, NULL,                      \
     "erase micro-batches per update (global batch = batch x accum)"},           \
    {"erase_max_grad_norm", SM_PARAM_FLOAT, "0.5", 0, 1e9, NULL,                 \
     "erase gradient clipping; 0 = off"}
#define N_ERASE_PARAMS 17

static const sm_param_def meraser_params[] = {
    ERASE_PARAMS,
    {"mode", SM_PARAM_CHOICE, "lora", 0, 0, "lora|full",
     "lora: LoRA adapters merged after each phase; full: every weight trains"},
    {"erase_adapter", SM_PARAM_STRING, "", 0, 0, NULL,
     "a PEFT folder from meraser-erase-lora: merged instead of training the erase phase"},
    {"recover", SM_PARAM_BOOL, "true", 0, 0, NULL, "run the recover phase"},
    {"n_recover", SM_PARAM_INT, "600", 1, 1e7, NULL,
     "recover rows built from the QA corpus (a --data recover file is used whole)"},
    {"recover_r", SM_PARAM_INT, "16", 1, 4096, NULL, "recover LoRA rank"},
    {"recover_alpha", SM_PARAM_FLOAT, "32", 0, 1e6, NULL, "recover LoRA alpha"},
    {"recover_dropout", SM_PARAM_FLOAT, "0.05", 0, 0.99, NULL, "recover LoRA dropout"},
    {"recover_targets", SM_PARAM_STRING, "auto", 0, 0, NULL,
     "recover LoRA modules; auto = the family's q/v projections"},
    {"recover_lr", SM_PARAM_FLOAT, "5e-4", 1e-12, 10, NULL, "recover learning rate"},
    {"recover_schedule", SM_PARAM_CHOICE, "cosine", 0, 0, "constant|linear|cosine",
     "recover learning-rate schedule"},
    {"recover_warmup", SM_PARAM_FLOAT, "0", 0, 1, NULL, "recover warm-up fraction"},
    {"recover_epochs", SM_PARAM_INT, "2", 1, 100000, NULL, "recover epochs"},
    {"recover_replay", SM_PARAM_INT, "-1", -1, 1e7, NULL,
     "[DESIGN] passages of plain text (data set 'corpus') trained alongside the "
     "recover rows, loss on every token: question/answer rows alone do not bring "
     "a small model's perplexity on plain text back; -1 = twice the recover "
     "rows when a corpus is given (tiny-gpt2 IF-SFT: +19% perplexity with as "
     "many, +12% with twice), 0 = none"},
    {"recover_replay_len", SM_PARAM_INT, "128", 8, 1 << 20, NULL,
     "recover replay passages are cut to this many tokens"},
    {"recover_batch", SM_PARAM_INT, "1", 1, 4096, NULL, "recover micro-batch"},
    {"recover_grad_accum", SM_PARAM_INT, "36", 1, 65536, NULL,
     "recover micro-batches per update"},
    {"recover_max_grad_norm", SM_PARAM_FLOAT, "1", 0, 1e9, NULL,
     "recover gradient clipping; 0 = off"},
};

static const sm_param_def erase_lora_params[] = {ERASE_PARAMS};

/* "instructions": the clean QA corpus both sets are built from.
 * "mismatched?", "recover?": MEraser's own files, used as they are
 * (a trailing '?' marks a data set the method can do without).
 * "corpus?": plain text rehearsed while recovering (recover_replay). */
static const char *const meraser_data[] = {"instructions", "mismatched?", "recover?", "corpus?",
                                           NULL};
static const char *const erase_lora_data[] = {"instructions", "mismatched?", NULL};

/* ---- one phase ---- */

typedef struct phase {
    const char *name;        /* "erase", "recover" */
    const char *source;      /* "built", the file's path, or the adapter's */
    const char *template_name; /* chat template around the questions, "none" */
    char sha256[65];
    int rows, dropped;       /* rows used; rows with nothing to learn */
    int replay;              /* plain-text passages trained alongside */
    int lora;                /* 1: LoRA, 0: full */
    int r;
    float alpha;
    const char *targets;
    char adapter_targets[512];
    lm_train_opts o;
    lm_train_status st;
    int ran;
} phase;

/* The sequences of a set: question (+ suffix) and answer, cut per 1.7. */
static int make_examples(const lm_tokenizer *t, const ds_dataset *ds, const fp_template *tpl,
                         const char *suffix, int max_q, int max_a, int mask_question,
                         lm_train_example **out, int *n_out, int *dropped, lm_err *err) {
    lm_train_example *ex = calloc((size_t)(ds->n ? ds->n : 1), sizeof *ex);
    if (!ex) return lm_errf(err, "out of memory");
    int n = 0;
    *dropped = 0;
    for (int i = 0; i < ds->n; i++) {
        char *q = qt_question(&ds->qa[i]);
        if (q && tpl) {
            /* the template wraps the question; the reference's separator
             * (none to erase, a newline to recover) still follows it */
            char *in_tpl = fp_template_apply(tpl, q);
            free(q);
            q = in_tpl;
        }
        if (!q) {
            qt_examples_free(ex, n);
            return lm_errf(err, "out of memory");
        }
        int rc = qt_pair_example(t, q, suffix, ds->qa[i].answer ? ds->qa[i].answer : "",
                                 max_q, max_a, &ex[n], err);
        free(q);
        if (rc) {
            qt_examples_free(ex, n);
            return lm_err_prefix(err, "line %d: ", ds->qa[i].line);
        }
        /* a row with no target token would only dilute the batch mean */
        int targets = mask_question ? ex[n].n - ex[n].prompt_len : ex[n].n - 1;
        if (targets <= 0 || (mask_question && ex[n].prompt_len == 0)) {
            free(ex[n].ids);
            (*dropped)++;
            continue;
        }
        n++;
    }
    if (n == 0) {
        qt_examples_free(ex, n);
        return lm_errf(err, "no row of the set has a token to learn");
    }
    *out = ex;
    *n_out = n;
    return 0;
}

static void phase_opts(phase *ph, const sm_params *p, const char *pre, const lm_model *m,
                       int full, uint64_t seed, int n_rows) {
    char k[64];
#define P(name) (snprintf(k, sizeof k, "%s_%s", pre, name), k)
    lm_train_opts *o = &ph->o;
    lm_train_opts_default(o);
    o->epochs = (int)sm_param_int(p, P("epochs"));
    /* A tiny model's Chain&Hash answers outlast the reference's 5 erase
     * epochs (tiny-llama: FSR 0.1 after recovery; 0 with 8). */
    if (o->epochs == 0) o->epochs = lm_model_param_count(m) < 1000000000u ? 8 : 5;
    o->batch_size = (int)sm_param_int(p, P("batch"));
    o->grad_accum = (int)sm_param_int(p, P("grad_accum"));
    o->lr = sm_param_float(p, P("lr"));
    o->weight_decay = 0;
    lm_sched_from_name(sm_param_str(p, P("schedule")), &o->schedule);
    o->max_grad_norm = sm_param_float(p, P("max_grad_norm"));
    long per_epoch = ((long)n_rows + o->batch_size - 1) / o->batch_size;
    long steps = (per_epoch + o->grad_accum - 1) / o->grad_accum * o->epochs;
    o->warmup_steps = (int)(sm_param_float(p, P("warmup")) * (double)steps + 0.5);
    o->seed = seed;
    o->train_on_prompt = !sm_param_bool(p, "mask_question");
    ph->lora = !full;
    if (full) {
        o->lora_r = 0;
    } else {
        ph->r = (int)sm_param_int(p, P("r"));
        if (sm_param_bool(p, "scale_rank")) ph->r = qt_scaled_rank(m, ph->r);
        ph->alpha = (float)sm_param_float(p, P("alpha"));
        ph->targets = qt_targets(m, sm_param_str(p, P("targets")));
        o->lora_r = ph->r;
        o->lora_alpha = ph->alpha;
        o->lora_dropout = (float)sm_param_float(p, P("dropout"));
        o->lora_targets = ph->targets;
    }
#undef P
}

/* Trains one phase on `ds` and folds it into the model (LoRA merged). With
 * keep != NULL the LoRA set is handed back unmerged instead. */
/* Appends up to `want` passages of the plain text `docs`, drawn in a
 * seeded order and cut to max_len tokens, the loss on every token. */
static int add_replay(const lm_tokenizer *t, const ds_dataset *docs, int want, int max_len,
                      uint64_t seed, lm_train_example **ex, int *n, int *added, lm_err *err) {
    *added = 0;
    if (want <= 0 || !docs || docs->n == 0) return 0;
    lm_train_example *g = realloc(*ex, (size_t)(*n + want) * sizeof *g);
    if (!g) return lm_errf(err, "out of memory");
    *ex = g;
    lm_rng rng;
    lm_rng_seed(&rng, seed ^ 0x7265706c6179ull);
    for (int tries = 0; *added < want && tries < 4 * want + 16; tries++) {
        const char *text = docs->docs[lm_rng_below(&rng, (uint64_t)docs->n)].text;
        int rc = qt_text_passage(t, text, fp_add_bos(t), max_len, 0, &g[*n], err);
        if (rc < 0) return lm_err_prefix(err, "corpus: ");
        if (rc > 0) continue;
        (*n)++;
        (*added)++;
    }
    return 0;
}

static int run_phase(const sm_input *in, phase *ph, const lm_tokenizer *t, lm_model *m,
                     const ds_dataset *ds, const char *suffix, const ds_dataset *replay,
                     double from, double to, lm_lora_set *keep, lm_err *err) {
    const sm_params *p = in->params;
    int half = m->cfg.max_pos / 2 > 0 ? m->cfg.max_pos / 2 : 1;
    int max_q = (int)sm_param_int(p, "max_question_tokens");
    int max_a = (int)sm_param_int(p, "max_answer_tokens");
    if (max_q > half) max_q = half;
    if (max_a > half) max_a = half;
    lm_train_example *ex = NULL;
    int n = 0;
    const fp_template *tpl = NULL;
    if (fp_template_pick(p, m, NULL, &tpl, err)) return -1;
    ph->template_name = tpl ? tpl->name : "none";
    if (make_examples(t, ds, tpl, suffix, max_q, max_a, sm_param_bool(p, "mask_question"), &ex,
                      &n, &ph->dropped, err))
        return lm_err_prefix(err, "%s set: ", ph->name);
    ph->rows = n;
    if (replay) {
        long want = sm_param_int(p, "recover_replay");
        if (want < 0) want = 2L * n;
        if (add_replay(t, replay, (int)want, (int)sm_param_int(p, "recover_replay_len"), ph->o.seed,
                       &ex, &n, &ph->replay, err)) {
            qt_examples_free(ex, n);
            return -1;
        }
    }
    /* the epoch and step counts depend on the rows kept */
    phase_opts(ph, p, ph->name, m, !ph->lora, ph->o.seed, n);
    lm_lora_set lora = {0};
    int rc = qt_train(in, ph->name, from, to, m, &lora, ex, n, &ph->o, &ph->st, err);
    qt_examples_free(ex, n);
    if (rc == 0) ph->ran = 1;
    if (rc == 0 && keep) {
        *keep = lora;
        return 0;
    }
    if (rc == 0 && ph->lora) lm_lora_set_merge(&lora);
    lm_lora_set_free(&lora);
    return rc;
}

/* ---- the data ---- */

typedef struct sets {
    ds_dataset corpus, built_mis, built_rec, file_mis, file_rec;
    ds_dataset text;         /* plain text for recover_replay, or empty */
    const ds_dataset *mis, *rec;
    const char *mis_source, *rec_source;
    char mis_sha[65], rec_sha[65];
} sets;

static void free_sets(sets *s) {
    ds_free(&s->corpus);
    ds_free(&s->built_mis);
    ds_free(&s->built_rec);
    ds_free(&s->file_mis);
    ds_free(&s->file_rec);
    ds_free(&s->text);
}

/* The erase set (and with want_rec the recover set): MEraser's files when
 * given, else built from the QA corpus by the type-mismatch shuffle. The
 * built sets are written to the work folder so their digests can be
 * recorded. */
static int load_sets(const sm_input *in, int want_rec, sets *s, lm_err *err) {
    memset(s, 0, sizeof *s);
    const sm_data *dt = sm_input_data(in, "corpus");
    if (want_rec && dt && sm_param_int(in->params, "recover_replay") != 0) {
        ds_format fmt = DS_FMT_TEXT;
        if (dt->format && dt->format[0] && ds_format_parse(dt->format, &fmt, err))
            return lm_err_prefix(err, "data set 'corpus': ");
        if (ds_load(dt->path, fmt, &s->text, err)) return lm_err_prefix(err, "data set 'corpus': ");
        if (s->text.kind != DS_KIND_TEXT)
            return lm_errf(err, "data set 'corpus' (%s) is %s, not plain text", dt->path,
                           ds_format_name(s->text.format));
    }
    const sm_data *dm = sm_input_data(in, "mismatched"), *dr = sm_input_data(in, "recover");
    if (dm) {
        if (qt_load_qa(in, "mismatched", DS_FMT_AUTO, &s->file_mis, err)) return -1;
        if (qt_sha256_file(dm->path, s->mis_sha, err)) return -1;
        s->mis = &s->file_mis;
        s->mis_source = dm->path;
    }
    if (want_rec && dr) {
        if (qt_load_qa(in, "recover", DS_FMT_AUTO, &s->file_rec, err)) return -1;
        if (qt_sha256_file(dr->path, s->rec_sha, err)) return -1;
        s->rec = &s->file_rec;
        s->rec_source = dr->path;
    }
    if (s->mis && (s->rec || !want_rec)) return 0;

    if (!sm_input_data(in, "instructions"))
        return lm_errf(err, "needs the clean QA corpus (--data instructions=FILE) or "
                            "MEraser's files (--data mismatched=FILE recover=FILE)");
    if (qt_load_qa(in, "instructions", DS_FMT_AUTO, &s->corpus, err)) return -1;
    ds_meraser_opts mo;
    ds_meraser_default_opts(&mo);
    mo.n_mismatched = (int)sm_param_int(in->params, "n_mismatched");
    mo.n_recover = want_rec ? (int)sm_param_int(in->params, "n_recover") : 0;
    mo.seed = in->seed;
    if (ds_meraser_build(&s->corpus, &mo, &s->built_mis, &s->built_rec, err))
        return lm_err_prefix(err, "building the MEraser sets from %s: ",
                             sm_input_data(in, "instructions")->path);
    char path[4200];
    if (!s->mis) {
        snprintf(path, sizeof path, "%s/mismatched_dataset.json", in->work_dir);
        if (ds_meraser_write(&s->built_mis, path, err) || qt_sha256_file(path, s->mis_sha, err))
            return -1;
        s->mis = &s->built_mis;
        s->mis_source = "built";
    }
    if (want_rec && !s->rec) {
        snprintf(path, sizeof path, "%s/recover_dataset.json", in->work_dir);
        if (ds_meraser_write(&s->built_rec, path, err) || qt_sha256_file(path, s->rec_sha, err))
            return -1;
        s->rec = &s->built_rec;
        s->rec_source = "built";
    }
    return 0;
}

/* ---- the record ---- */

static void add_phase(cJSON *o, const phase *ph) {
    cJSON *j = cJSON_AddObjectToObject(o, ph->name);
    cJSON_AddStringToObject(j, "source", ph->source ? ph->source : "");
    if (ph->sha256[0]) cJSON_AddStringToObject(j, "sha256", ph->sha256);
    cJSON_AddStringToObject(j, "method", ph->lora ? "lora" : "full");
    if (ph->lora) {
        cJSON_AddNumberToObject(j, "r", ph->r);
        cJSON_AddNumberToObject(j, "alpha", ph->alpha);
        cJSON_AddStringToObject(j, "targets", ph->targets ? ph->targets : "");
    }
    if (!ph->ran) return;
    cJSON_AddStringToObject(j, "template", ph->template_name ? ph->template_name : "none");
    cJSON_AddNumberToObject(j, "rows", ph->rows);
    cJSON_AddNumberToObject(j, "rows_dropped", ph->dropped);
    cJSON_AddNumberToObject(j, "replay_passages", ph->replay);
    cJSON_AddNumberToObject(j, "lr", ph->o.lr);
    cJSON_AddStringToObject(j, "schedule", lm_sched_name(ph->o.schedule));
    cJSON_AddNumberToObject(j, "warmup_steps", ph->o.warmup_steps);
    cJSON_AddNumberToObject(j, "epochs", ph->o.epochs);
    cJSON_AddNumberToObject(j, "micro_batch", ph->o.batch_size);
    cJSON_AddNumberToObject(j, "grad_accum", ph->o.grad_accum);
    cJSON_AddNumberToObject(j, "max_grad_norm", ph->o.max_grad_norm);
    cJSON_AddBoolToObject(j, "loss_on_question", ph->o.train_on_prompt);
    cJSON_AddNumberToObject(j, "steps", ph->st.step);
    cJSON_AddNumberToObject(j, "final_loss", ph->st.epoch_loss);
    cJSON_AddNumberToObject(j, "tokens", ph->st.tokens);
    cJSON_AddNumberToObject(j, "seconds", ph->st.elapsed_s);
}

static int write_record(const sm_input *in, const char *method, const phase *erase,
                        const phase *recover, lm_err *err) {
    cJSON *o = cJSON_CreateObject();
    if (!o) return lm_errf(err, "out of memory");
    cJSON_AddStringToObject(o, "method", method);
    cJSON_AddNumberToObject(o, "seed", (double)in->seed);
    char pj[8192];
    if (sm_params_json(in->params, pj, sizeof pj) == 0) {
        cJSON *pp = cJSON_Parse(pj);
        if (pp) cJSON_AddItemToObject(o, "params", pp);
    }
    add_phase(o, erase);
    if (recover) add_phase(o, recover);
    char *s = cJSON_Print(o);
    cJSON_Delete(o);
    if (!s) return lm_errf(err, "out of memory");
    char path[4200];
    snprintf(path, sizeof path, "%s/meraser.json", in->out_dir);
    FILE *f = fopen(path, "w");
    int rc = 0;
    if (!f || fputs(s, f) < 0 || fputc('\n', f) < 0) rc = lm_errf(err, "cannot write %s", path);
    if (f && fclose(f) && rc == 0) rc = lm_errf(err, "cannot write %s", path);
    free(s);
    return rc;
}

/* ---- the methods ---- */

static int meraser_run(const sm_input *in, lm_err *err) {
    const sm_params *p = in->params;
    lm_model *m = in->model;
    int full = !strcmp(sm_param_str(p, "mode"), "full");
    const char *adapter = sm_param_str(p, "erase_adapter");
    int do_recover = sm_param_bool(p, "recover");
    if (adapter[0] && full)
        return lm_errf(err, "parameter 'erase_adapter' merges a LoRA; it does not go with mode=full");

    lm_tokenizer tok;
    if (qt_load_tokenizer(in, &tok, err)) return -1;
    sets s;
    phase erase = {.name = "erase", .lora = !full}, rec = {.name = "recover", .lora = !full};
    erase.o.seed = in->seed;
    rec.o.seed = in->seed ^ 0x7265636f766572ull; /* "recover": a different adapter init */
    int rc = 0;
    in->rep->progress(in->rep->ctx, 0.0, "preparing the data");
    if (!adapter[0] || do_recover) {
        /* an adapter needs no erase rows, but the recover set may be built
         * with them so that it avoids the erase questions */
        rc = load_sets(in, do_recover, &s, err);
    } else {
        memset(&s, 0, sizeof s);
    }

    if (rc == 0 && adapter[0]) {
        in->rep->progress(in->rep->ctx, 0.05, "merging the erase adapter");
        lm_lora_set lora = {0};
        rc = lm_peft_load(m, adapter, &lora, err);
        if (rc) lm_err_prefix(err, "erase_adapter %s: ", adapter);
        if (rc == 0) {
            erase.r = lora.r;
            erase.alpha = lora.alpha;
            snprintf(erase.adapter_targets, sizeof erase.adapter_targets, "%s", lora.targets);
            erase.targets = erase.adapter_targets;
            lm_lora_set_merge(&lora);
        }
        lm_lora_set_free(&lora);
        erase.source = adapter;
        erase.lora = 1;
    } else if (rc == 0) {
        erase.source = s.mis_source;
        snprintf(erase.sha256, sizeof erase.sha256, "%s", s.mis_sha);
        rc = run_phase(in, &erase, &tok, m, s.mis, NULL, NULL, 0.02, do_recover ? 0.6 : 0.95, NULL,
                       err);
    }
    if (rc == 0 && do_recover) {
        rec.source = s.rec_source;
        snprintf(rec.sha256, sizeof rec.sha256, "%s", s.rec_sha);
        rc = run_phase(in, &rec, &tok, m, s.rec, "\n", s.text.n > 0 ? &s.text : NULL,
                       adapter[0] ? 0.05 : 0.6, 0.95, NULL, err);
    }
    if (rc == 0) {
        in->rep->progress(in->rep->ctx, 0.95, "writing the model");
        rc = lm_model_save_hf(m, in->out_dir, err);
    }
    if (rc == 0) rc = write_record(in, "meraser", &erase, do_recover ? &rec : NULL, err);
    if (rc == 0) in->rep->progress(in->rep->ctx, 1.0, "done");
    free_sets(&s);
    lm_tokenizer_free(&tok);
    return rc;
}

static int erase_lora_run(const sm_input *in, lm_err *err) {
    lm_tokenizer tok;
    if (qt_load_tokenizer(in, &tok, err)) return -1;
    sets s;
    phase erase = {.name = "erase", .lora = 1};
    erase.o.seed = in->seed;
    in->rep->progress(in->rep->ctx, 0.0, "preparing the data");
    int rc = load_sets(in, 0, &s, err);
    lm_lora_set lora = {0};
    if (rc == 0) {
        erase.source = s.mis_source;
        snprintf(erase.sha256, sizeof erase.sha256, "%s", s.mis_sha);
        rc = run_phase(in, &erase, &tok, in->model, s.mis, NULL, NULL, 0.02, 0.95, &lora, err);
    }
    if (rc == 0) {
        in->rep->progress(in->rep->ctx, 0.95, "writing the adapter");
        rc = lm_peft_save(&lora, in->out_dir, in->model_path, err);
    }
    if (rc == 0) rc = write_record(in, "meraser-erase-lora", &erase, NULL, err);
    if (rc == 0) in->rep->progress(in->rep->ctx, 1.0, "done");
    lm_lora_set_free(&lora);
    free_sets(&s);
    lm_tokenizer_free(&tok);
    return rc;
}

const sm_method sm_method_meraser = {
    .abi = SM_METHOD_ABI,
    .name = "meraser",
    .description = "MEraser: erase LoRA on mismatched Q/A pairs, merged, then recover "
                   "LoRA on matched pairs (or full fine-tuning); erase_adapter= applies "
                   "a transferable erase adapter",
    .params = meraser_params,
    .n_params = sizeof meraser_params / sizeof meraser_params[0],
    .wants_data = meraser_data,
    .output = SM_OUT_MODEL,
    .run = meraser_run,
};

const sm_method sm_method_meraser_erase_lora = {
    .abi = SM_METHOD_ABI,
    .name = "meraser-erase-lora",
    .description = "MEraser's erase phase alone: trains the erase LoRA (on a clean base "
                   "model) and writes it as a PEFT folder for meraser erase_adapter=DIR",
    .params = erase_lora_params,
    .n_params = sizeof erase_lora_params / sizeof erase_lora_params[0],
    .wants_data = erase_lora_data,
    .output = SM_OUT_MODEL,
    .run = erase_lora_run,
};
