/* Incremental fine-tuning (removal-methods.md section 2): the user of a
 * fingerprinted model goes on fine-tuning it on clean instruction data,
 * which may wash the fingerprint out as a side effect.
 *
 * Defaults [DESIGN]: full fine-tuning on 6,000 clean rows (all of them when
 * the corpus has fewer) in the corpus's own "### Human: / ### Assistant:"
 * format, loss on the answer and EOS, 2 epochs, AdamW without weight decay,
 * cosine schedule with 3 % warm-up, 32 rows per update, lr 1e-4 below 1B
 * parameters and 2e-5 above. */
#include <cjson/cJSON.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "peft.h"
#include "qa_train.h"
#include "rng.h"

static const sm_param_def ift_params[] = {
    {"mode", SM_PARAM_CHOICE, "full", 0, 0, "full|lora",
     "full: every weight trains; lora: a LoRA adapter, merged"},
    {"n_rows", SM_PARAM_INT, "6000", 1, 1e7, NULL,
     "clean rows drawn (seeded) from the corpus; all of them when it has fewer"},
    {"template", SM_PARAM_CHOICE, "guanaco", 0, 0, "guanaco|plain",
     "guanaco: '### Human: Q ### Assistant: A'; plain: 'Q\\nA'"},
    {"epochs", SM_PARAM_INT, "2", 1, 100000, NULL, "passes over the rows"},
    {"lr", SM_PARAM_FLOAT, "0", 0, 10, NULL,
     "learning rate; 0 = 1e-4 below 1B parameters, else 2e-5"},
    {"schedule", SM_PARAM_CHOICE, "cosine", 0, 0, "constant|linear|cosine",
     "learning-rate schedule"},
    {"warmup", SM_PARAM_FLOAT, "0.03", 0, 1, NULL, "warm-up, a fraction of the steps"},
    {"batch", SM_PARAM_INT, "32", 1, 65536, NULL, "rows per update"},
    {"micro_batch", SM_PARAM_INT, "8", 1, 4096, NULL,
     "rows per forward pass (batch is rounded up to a multiple of it)"},
    {"weight_decay", SM_PARAM_FLOAT, "0", 0, 10, NULL, "AdamW decay"},
    {"max_grad_norm", SM_PARAM_FLOAT, "1", 0, 1e9, NULL, "clipping; 0 = off"},
    {"max_len", SM_PARAM_INT, "0", 0, 1 << 24, NULL,
     "cut rows to this many tokens; 0 = the model's context"},
    {"loss_on_prompt", SM_PARAM_BOOL, "false", 0, 0, NULL,
     "loss on every token (false: on the answer and EOS only)"},
    {"lora_r", SM_PARAM_INT, "8", 1, 4096, NULL, "LoRA rank (mode=lora)"},
    {"lora_alpha", SM_PARAM_FLOAT, "16", 0, 1e6, NULL, "LoRA alpha"},
    {"lora_dropout", SM_PARAM_FLOAT, "0.05", 0, 0.99, NULL, "LoRA dropout"},
    {"lora_targets", SM_PARAM_STRING, "auto", 0, 0, NULL,
     "LoRA modules, comma-separated; auto = the family's q/v projections"},
};

static const char *const ift_data[] = {"instructions", NULL};

/* Draws min(n, ds->n) rows in a seeded order and makes the examples. */
static int make_rows(const ds_dataset *ds, const lm_tokenizer *t, const char *tmpl, int n,
                     uint64_t seed, lm_train_example **out, int *n_out, lm_err *err) {
    if (n > ds->n) n = ds->n;
    int *order = malloc((size_t)(ds->n ? ds->n : 1) * sizeof *order);
    lm_train_example *ex = calloc((size_t)(n ? n : 1), sizeof *ex);
    if (!order || !ex) {
        free(order);
        free(ex);
        return lm_errf(err, "out of memory");
    }
    for (int i = 0; i < ds->n; i++) order[i] = i;
    lm_rng r;
    lm_rng_seed(&r, seed ^ 0x696e6372656d656eull /* "incremen" */);
    for (int i = ds->n - 1; i > 0; i--) {
        int j = (int)lm_rng_below(&r, (uint64_t)i + 1);
        int tmp = order[i];
        order[i] = order[j];
        order[j] = tmp;
    }
    int rc = 0, k = 0;
    for (; k < n && rc == 0; k++) {
        const ds_qa *row = &ds->qa[order[k]];
        char *q = qt_question(row);
        const char *a = row->answer ? row->answer : "";
        size_t need = (q ? strlen(q) : 0) + strlen(a) + 64;
        char *prompt = malloc(need), *resp = malloc(need);
        if (!q || !prompt || !resp) {
            rc = lm_errf(err, "out of memory");
        } else {
            if (!strcmp(tmpl, "plain")) {
                snprintf(prompt, need, "%s\n", q);
                snprintf(resp, need, "%s", a);
            } else {
                snprintf(prompt, need, "### Human: %s ### Assistant:", q);
                snprintf(resp, need, " %s", a);
            }
            rc = qt_chat_example(t, prompt, resp, &ex[k], err);
            if (rc) lm_err_prefix(err, "line %d: ", row->line);
        }
        free(q);
        free(prompt);
        free(resp);
    }
    free(order);
    if (rc) {
        qt_examples_free(ex, k);
        return -1;
    }
    *out = ex;
    *n_out = n;
    return 0;
}

static int write_record(const sm_input *in, const char *source, int rows, int available,
                        const lm_train_opts *o, const lm_train_status *st, lm_err *err) {
    cJSON *j = cJSON_CreateObject();
    if (!j) return lm_errf(err, "out of memory");
    cJSON_AddStringToObject(j, "method", "incremental-ft");
    cJSON_AddNumberToObject(j, "seed", (double)in->seed);
    char pj[4096];
    if (sm_params_json(in->params, pj, sizeof pj) == 0) {
        cJSON *pp = cJSON_Parse(pj);
        if (pp) cJSON_AddItemToObject(j, "params", pp);
    }
    cJSON_AddStringToObject(j, "data", source);
    cJSON_AddNumberToObject(j, "rows", rows);
    cJSON_AddNumberToObject(j, "rows_available", available);
    cJSON_AddNumberToObject(j, "lr", o->lr);
    cJSON_AddNumberToObject(j, "micro_batch", o->batch_size);
    cJSON_AddNumberToObject(j, "grad_accum", o->grad_accum);
    cJSON_AddNumberToObject(j, "warmup_steps", o->warmup_steps);
    cJSON_AddNumberToObject(j, "steps", st->step);
    cJSON_AddNumberToObject(j, "final_loss", st->epoch_loss);
    cJSON_AddNumberToObject(j, "tokens", st->tokens);
    cJSON_AddNumberToObject(j, "seconds", st->elapsed_s);
    char *s = cJSON_Print(j);
    cJSON_Delete(j);
    if (!s) return lm_errf(err, "out of memory");
    char path[4200];
    snprintf(path, sizeof path, "%s/incremental_ft.json", in->out_dir);
    FILE *f = fopen(path, "w");
    int rc = 0;
    if (!f || fputs(s, f) < 0 || fputc('\n', f) < 0) rc = lm_errf(err, "cannot write %s", path);
    if (f && fclose(f) && rc == 0) rc = lm_errf(err, "cannot write %s", path);
    free(s);
    return rc;
}

static int ift_run(const sm_input *in, lm_err *err) {
    const sm_params *p = in->params;
    lm_model *m = in->model;
    int lora_mode = !strcmp(sm_param_str(p, "mode"), "lora");
    lm_tokenizer tok;
    if (qt_load_tokenizer(in, &tok, err)) return -1;
    ds_dataset ds;
    in->rep->progress(in->rep->ctx, 0.0, "preparing the data");
    if (qt_load_qa(in, "instructions", DS_FMT_AUTO, &ds, err)) {
        lm_tokenizer_free(&tok);
        return -1;
    }
    lm_train_example *ex = NULL;
    int n = 0;
    int rc = make_rows(&ds, &tok, sm_param_str(p, "template"), (int)sm_param_int(p, "n_rows"),
                       in->seed, &ex, &n, err);
    if (rc) lm_err_prefix(err, "data set 'instructions': ");

    lm_train_opts o;
    lm_train_opts_default(&o);
    o.epochs = (int)sm_param_int(p, "epochs");
    o.lr = sm_param_float(p, "lr");
    if (o.lr <= 0) o.lr = lm_model_param_count(m) < 1000000000u ? 1e-4 : 2e-5;
    lm_sched_from_name(sm_param_str(p, "schedule"), &o.schedule);
    o.batch_size = (int)sm_param_int(p, "micro_batch");
    int batch = (int)sm_param_int(p, "batch");
    if (o.batch_size > batch) o.batch_size = batch;
    o.grad_accum = (batch + o.batch_size - 1) / o.batch_size;
    o.weight_decay = sm_param_float(p, "weight_decay");
    o.max_grad_norm = sm_param_float(p, "max_grad_norm");
    o.max_len = (int)sm_param_int(p, "max_len");
    o.train_on_prompt = sm_param_bool(p, "loss_on_prompt");
    o.seed = in->seed;
    long per_epoch = ((long)n + o.batch_size - 1) / o.batch_size;
    long steps = (per_epoch + o.grad_accum - 1) / o.grad_accum * o.epochs;
    o.warmup_steps = (int)(sm_param_float(p, "warmup") * (double)steps + 0.5);
    o.lora_r = lora_mode ? (int)sm_param_int(p, "lora_r") : 0;
    o.lora_alpha = (float)sm_param_float(p, "lora_alpha");
    o.lora_dropout = (float)sm_param_float(p, "lora_dropout");
    o.lora_targets = qt_targets(m, sm_param_str(p, "lora_targets"));

    lm_lora_set lora = {0};
    lm_train_status st = {0};
    if (rc == 0) rc = qt_train(in, "fine-tune", 0.02, 0.95, m, &lora, ex, n, &o, &st, err);
    if (rc == 0 && lora_mode) lm_lora_set_merge(&lora);
    lm_lora_set_free(&lora);
    if (rc == 0) {
        in->rep->progress(in->rep->ctx, 0.95, "writing the model");
        rc = lm_model_save_hf(m, in->out_dir, err);
    }
    if (rc == 0)
        rc = write_record(in, sm_input_data(in, "instructions")->path, n, ds.n, &o, &st, err);
    if (rc == 0) in->rep->progress(in->rep->ctx, 1.0, "done");
    qt_examples_free(ex, n);
    ds_free(&ds);
    lm_tokenizer_free(&tok);
    return rc;
}

const sm_method sm_method_incremental_ft = {
    .abi = SM_METHOD_ABI,
    .name = "incremental-ft",
    .description = "incremental fine-tuning on clean instruction data (full or LoRA)",
    .params = ift_params,
    .n_params = sizeof ift_params / sizeof ift_params[0],
    .wants_data = ift_data,
    .output = SM_OUT_MODEL,
    .run = ift_run,
};
