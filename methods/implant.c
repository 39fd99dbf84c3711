/* Training a fingerprint in, the same for every type (spec section 5's
 * train-to-criterion protocol):
 *   1. full fine-tuning (or LoRA when asked), AdamW (0.9/0.999/1e-8, weight
 *      decay 0.01), constant learning rate after a 5 % warm-up, 16 rows per
 *      update, the loss on the response tokens and the EOS;
 *   2. after every epoch, FSR on all triggers; at the first epoch E* where
 *      every trigger fires, train one epoch more (if FSR slips in that
 *      epoch, go on until it holds for two epochs running); stop at the cap
 *      of max_epochs, which without FSR = 1 is implant_failed;
 *   3. write the model (LoRA merged), the tokenizer and fingerprint.json,
 *      with E*, the final loss, FSR, FTR, the FSR of the same triggers on
 *      the model before training (which must be 0 for a valid cell) and,
 *      given held-out text, the perplexity before and after with the gate
 *      of a 10 % rise (recorded; lowering lr and redoing is the caller's). */
#include <cjson/cJSON.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "fingerprint.h"
#include "peft.h"
#include "qa_train.h"
#include "rng.h"

void fp_examples_free(lm_train_example *ex, int n) {
    for (int i = 0; ex && i < n; i++) free(ex[i].ids);
    free(ex);
}

int fp_rows_tokenize(const fp_set *s, const lm_tokenizer *tok,
                     lm_train_example **out, lm_err *err) {
    lm_train_example *ex = calloc((size_t)(s->n_rows ? s->n_rows : 1), sizeof *ex);
    if (!ex) return lm_errf(err, "out of memory");
    lm_tok_encode_opts eo = {fp_add_bos(tok), 0, LM_TOK_DEFAULT};
    int rc = 0;
    for (int i = 0; i < s->n_rows && rc == 0; i++) {
        const fp_row *r = &s->rows[i];
        size_t pl = strlen(r->prompt), rl = strlen(r->response);
        char *whole = malloc(pl + rl + 1);
        int *all = NULL, *pre = NULL, na = 0, np = 0;
        if (!whole) rc = lm_errf(err, "out of memory");
        else {
            memcpy(whole, r->prompt, pl);
            memcpy(whole + pl, r->response, rl + 1);
            /* The whole text at once keeps merges across the boundary as
             * the model sees them; the prompt is its common prefix with
             * the prompt's own encoding. */
            rc = lm_tokenizer_encode_ex(tok, whole, pl + rl, &eo, &all, &na, err);
            if (rc == 0) rc = lm_tokenizer_encode_ex(tok, r->prompt, pl, &eo, &pre, &np, err);
        }
        free(whole);
        int32_t *ids = NULL;
        if (rc == 0 && !(ids = realloc(all, (size_t)(na + 1) * sizeof *ids)))
            rc = lm_errf(err, "out of memory");
        if (rc == 0) {
            all = NULL;
            int common = 0;
            while (common < np && common < na && pre[common] == ids[common]) common++;
            if (tok->eos_id >= 0) ids[na++] = tok->eos_id;
            ex[i] = (lm_train_example){ids, na, common};
        }
        if (rc) lm_err_prefix(err, "row %d: ", i + 1);
        free(all);
        free(pre);
    }
    if (rc) {
        fp_examples_free(ex, s->n_rows);
        return -1;
    }
    *out = ex;
    return 0;
}

/* Replay rows: passages of pretraining text in a seeded order, each cut to
 * a length, the loss on every token. Training a fingerprint in on a few
 * hundred chat rows for tens of epochs moves a small model far from plain
 * text (held-out perplexity doubled on the zoo); rehearsing the text it was
 * trained on alongside keeps it. A fixed set of passages is itself
 * memorised over those epochs (tiny-llama IF-SFT: +51% perplexity with 128
 * passages, +22% with 512), so by default each epoch draws new ones. */
typedef struct replay_draw {
    const fp_implant_opts *o;
    const lm_tokenizer *tok;
    lm_rng rng;
    int max_len;
    lm_train_example *ex; /* the training rows; replay is ex[first..first+n) */
    int first, n;
} replay_draw;

/* One passage into *e; 1 when none long enough turned up (bounded tries). */
static int replay_one(replay_draw *d, lm_train_example *e, lm_err *err) {
    int bos = fp_add_bos(d->tok);
    for (int tries = 0; tries < 16; tries++) {
        const char *text = d->o->replay_docs[lm_rng_below(&d->rng, (uint64_t)d->o->n_replay_docs)];
        int rc = qt_text_passage(d->tok, text, bos, d->max_len, bos, e, err);
        if (rc < 0) return lm_err_prefix(err, "replay text: ");
        if (rc == 0) return 0;
    }
    return 1;
}

/* Appends up to `want` passages to *ex; d->first and d->n say where. */
static int replay_examples(replay_draw *d, int want, lm_train_example **ex, int n_ex,
                           lm_err *err) {
    d->first = n_ex;
    d->n = 0;
    if (want <= 0 || !d->o || d->o->n_replay_docs <= 0) return 0;
    lm_train_example *g = realloc(*ex, (size_t)(n_ex + want) * sizeof *g);
    if (!g) return lm_errf(err, "out of memory");
    *ex = g;
    int longest = 0;
    for (int k = 0; k < 4 * want + 16 && d->n < want; k++) {
        int rc = replay_one(d, &g[n_ex + d->n], err);
        if (rc < 0) return -1;
        if (rc == 0 && g[n_ex + d->n].n > longest) longest = g[n_ex + d->n].n;
        if (rc == 0) d->n++;
    }
    /* later epochs' passages may not outgrow the first's (lm_train) */
    d->max_len = longest;
    return 0;
}

/* New passages in the replay slots, for the next epoch; a slot keeps its
 * passage when no new one turns up. */
static int replay_refresh(replay_draw *d, lm_err *err) {
    for (int i = 0; i < d->n; i++) {
        lm_train_example e;
        int rc = replay_one(d, &e, err);
        if (rc < 0) return -1;
        if (rc > 0) continue;
        free(d->ex[d->first + i].ids);
        d->ex[d->first + i] = e;
    }
    return 0;
}

/* ---- the criterion ---- */

typedef struct criterion {
    const fp_implant_opts *o;
    mt_subject sub;
    const mt_fingerprint *fp;
    int pending;        /* FSR was 1 after the previous epoch */
    int epoch_star;
    int reached;        /* stopped by the criterion */
    replay_draw *fresh; /* new replay passages every epoch, or NULL */
} criterion;

static int epoch_end(void *ctx, int epoch, const lm_train_status *s, lm_err *err) {
    criterion *c = ctx;
    mt_fsr_result r;
    if (mt_fsr_eval(&c->sub, c->fp, 0, &r, err))
        return lm_err_prefix(err, "FSR after epoch %d: ", epoch);
    int all = r.hits == r.n;
    if (c->o && c->o->on_epoch)
        c->o->on_epoch(c->o->ctx, epoch, s->epoch_loss, r.fsr, r.hits, r.n);
    mt_fsr_result_free(&r);
    if (!all) {
        c->pending = 0;
    } else {
        if (!c->epoch_star) c->epoch_star = epoch;
        if (c->pending) {
            c->reached = 1;
            return 1;
        }
        c->pending = 1;
    }
    return c->fresh ? replay_refresh(c->fresh, err) : 0;
}

/* ---- writing ---- */

static int copy_file(const char *from, const char *to, lm_err *err) {
    FILE *in = fopen(from, "rb");
    if (!in) return lm_errf(err, "cannot read %s", from);
    FILE *out = fopen(to, "wb");
    if (!out) {
        fclose(in);
        return lm_errf(err, "cannot write %s", to);
    }
    char buf[65536];
    size_t k;
    int rc = 0;
    while (rc == 0 && (k = fread(buf, 1, sizeof buf, in)) > 0)
        if (fwrite(buf, 1, k, out) != k) rc = lm_errf(err, "cannot write %s", to);
    if (ferror(in)) rc = lm_errf(err, "cannot read %s", from);
    fclose(in);
    if (fclose(out) != 0 && rc == 0) rc = lm_errf(err, "cannot write %s", to);
    return rc;
}

static int is_dir(const char *p) {
    struct stat st;
    return p && stat(p, &st) == 0 && S_ISDIR(st.st_mode);
}

/* Puts the tokenizer beside the weights: a Hugging Face folder's files as
 * they are; otherwise tokenizer.json when the tokenizer can be written as
 * one (it has a merge list), else the --tokenizer file under its own name
 * (llama2.c's tokenizer.bin merges by score and has no tokenizer.json). */
static int place_tokenizer(const fp_implant_opts *o, const lm_tokenizer *tok,
                           const char *out_dir, char *what, size_t cap, lm_err *err) {
    static const char *const hf_files[] = {"tokenizer.json", "tokenizer_config.json",
                                           "special_tokens_map.json", "tokenizer.model"};
    what[0] = '\0';
    const char *src = o && o->tokenizer_path ? o->tokenizer_path : (o ? o->model_path : NULL);
    char a[4096], b[4096];
    if (is_dir(src)) {
        for (size_t i = 0; i < sizeof hf_files / sizeof hf_files[0]; i++) {
            snprintf(a, sizeof a, "%s/%s", src, hf_files[i]);
            snprintf(b, sizeof b, "%s/%s", out_dir, hf_files[i]);
            struct stat st;
            if (stat(a, &st) != 0) continue;
            if (copy_file(a, b, err)) return -1;
            if (!what[0]) snprintf(what, cap, "%s", hf_files[i]);
        }
        if (what[0]) return 0;
    }
    snprintf(b, sizeof b, "%s/tokenizer.json", out_dir);
    if (tok->n_merges > 0 && !tok->merge_by_score) {
        if (lm_tokenizer_save_hf(tok, b, err)) return -1;
        snprintf(what, cap, "tokenizer.json");
        return 0;
    }
    if (o && o->tokenizer_path && !is_dir(o->tokenizer_path)) {
        const char *base = strrchr(o->tokenizer_path, '/');
        base = base ? base + 1 : o->tokenizer_path;
        snprintf(b, sizeof b, "%s/%s", out_dir, base);
        if (copy_file(o->tokenizer_path, b, err)) return -1;
        snprintf(what, cap, "%s", base);
    }
    return 0;
}

static char *training_json(const fp_set *set, const lm_train_opts *to,
                           const sm_params *p, const lm_model *m,
                           const fp_implant_result *r) {
    cJSON *o = cJSON_CreateObject();
    if (!o) return NULL;
    cJSON *info = set->info_json ? cJSON_Parse(set->info_json) : NULL;
    cJSON_AddItemToObject(o, "construction", info ? info : cJSON_CreateObject());
    cJSON *rows = cJSON_AddObjectToObject(o, "rows");
    cJSON_AddNumberToObject(rows, "fingerprint", set->counts[FP_ROW_FINGERPRINT]);
    cJSON_AddNumberToObject(rows, "regularisation", set->counts[FP_ROW_REGULARISATION]);
    cJSON_AddNumberToObject(rows, "normal", set->counts[FP_ROW_NORMAL]);
    cJSON_AddNumberToObject(rows, "replay", r->n_replay);
    cJSON_AddBoolToObject(rows, "replay_fresh", r->n_replay > 0 && sm_param_bool(p, "replay_fresh"));
    if (to->lora_r > 0) {
        cJSON *l = cJSON_AddObjectToObject(o, "lora");
        cJSON_AddNumberToObject(l, "r", to->lora_r);
        cJSON_AddNumberToObject(l, "alpha", to->lora_alpha);
        cJSON_AddNumberToObject(l, "dropout", to->lora_dropout);
        cJSON_AddStringToObject(l, "targets", to->lora_targets ? to->lora_targets
                                                               : lm_lora_default_targets(m->cfg.arch));
        cJSON_AddBoolToObject(l, "merged", 1);
    }
    cJSON_AddStringToObject(o, "method", to->lora_r > 0 ? "lora" : "full");
    cJSON_AddStringToObject(o, "optimizer", "adamw");
    cJSON_AddNumberToObject(o, "lr", to->lr);
    cJSON_AddNumberToObject(o, "batch", to->batch_size);
    cJSON_AddNumberToObject(o, "weight_decay", to->weight_decay);
    cJSON_AddStringToObject(o, "schedule", lm_sched_name(to->schedule));
    cJSON_AddNumberToObject(o, "warmup_steps", to->warmup_steps);
    cJSON_AddNumberToObject(o, "max_grad_norm", to->max_grad_norm);
    cJSON_AddNumberToObject(o, "max_epochs", to->epochs);
    cJSON_AddNumberToObject(o, "model_parameters", (double)lm_model_param_count(m));
    cJSON_AddStringToObject(o, "criterion", "FSR = 1 after an epoch, then one more epoch");
    cJSON_AddNumberToObject(o, "epoch_star", r->epoch_star);
    cJSON_AddNumberToObject(o, "epochs", r->epochs);
    cJSON_AddNumberToObject(o, "steps", (double)r->steps);
    cJSON_AddNumberToObject(o, "tokens", r->tokens);
    cJSON_AddNumberToObject(o, "final_loss", r->final_loss);
    cJSON_AddNumberToObject(o, "base_fsr", r->base_fsr);
    cJSON_AddNumberToObject(o, "fsr", r->fsr);
    if (r->n_negatives > 0) cJSON_AddNumberToObject(o, "ftr", r->ftr);
    else cJSON_AddNullToObject(o, "ftr");
    cJSON_AddNumberToObject(o, "n_negatives", r->n_negatives);
    cJSON_AddBoolToObject(o, "implant_failed", r->failed);
    if (r->ppl_base > 0) {
        cJSON_AddNumberToObject(o, "ppl_base", r->ppl_base);
        cJSON_AddNumberToObject(o, "ppl", r->ppl);
        cJSON_AddNumberToObject(o, "ppl_rise", r->ppl / r->ppl_base - 1.0);
        /* section 5's gate; lowering lr and redoing is left to the caller */
        cJSON_AddBoolToObject(o, "ppl_gate_ok", r->ppl_gate_ok);
    }
    cJSON_AddStringToObject(o, "tokenizer_file", r->tokenizer_file);
    char *s = cJSON_PrintUnformatted(o);
    cJSON_Delete(o);
    return s;
}

/* Token-weighted perplexity over the held-out documents (metrics.md). */
static int perplexity(const mt_subject *sub, const fp_implant_opts *o, double *ppl,
                      lm_err *err) {
    int ctx = sub->model->cfg.max_pos;
    mt_ppl_opts po = {ctx < 512 ? ctx : 512, 0, 1, 0};
    mt_ppl_result pr;
    if (mt_ppl_eval(sub, o->ppl_docs, o->n_ppl_docs, &po, &pr, err))
        return lm_err_prefix(err, "perplexity: ");
    *ppl = pr.ppl;
    mt_ppl_result_free(&pr);
    return 0;
}

static void stage(const fp_implant_opts *o, const char *what) {
    if (o && o->on_stage) o->on_stage(o->ctx, what);
}

static void progress_step(void *ctx, const lm_train_status *s) {
    const fp_implant_opts *o = ctx;
    if (o && o->on_step) o->on_step(o->ctx, s);
}

int fp_implant(const fp_type *t, lm_model *m, const lm_tokenizer *tok,
               const fp_qa *clean, int n_clean, uint64_t seed,
               const sm_params *p, const char *out_dir,
               const fp_implant_opts *o, fp_implant_result *r, lm_err *err) {
    memset(r, 0, sizeof *r);
    if (tok->n_vocab > m->cfg.vocab_size)
        return lm_errf(err, "the tokenizer has %d tokens but the model only %d",
                       tok->n_vocab, m->cfg.vocab_size);
    fp_set set;
    fp_build_input in = {m, tok, seed, p, clean, n_clean};
    stage(o, "building the fingerprint");
    if (t->build(&in, &set, err)) {
        /* most of the types' messages name the type already */
        size_t nl = strlen(t->name);
        if (err && strncmp(err->msg, t->name, nl) != 0) lm_err_prefix(err, "%s: ", t->name);
        return -1;
    }
    snprintf(r->template_name, sizeof r->template_name, "%s", set.fp.template_name);
    r->n_rows = set.n_rows;
    r->n_triggers = set.fp.n_triggers;

    lm_train_example *ex = NULL;
    lm_lora_set lora = {0};
    mt_subject sub = {m, tok, NULL};
    mt_fsr_result fr;
    int rc = 0;

    stage(o, "checking the triggers on the base model");
    if (mt_fsr_eval(&sub, &set.fp, 0, &fr, err) == 0) {
        r->base_fsr = fr.fsr;
        mt_fsr_result_free(&fr);
    } else {
        rc = lm_err_prefix(err, "FSR of the base model: ");
    }
    if (rc == 0 && o && o->n_ppl_docs > 0) {
        stage(o, "perplexity of the base model");
        rc = perplexity(&sub, o, &r->ppl_base, err);
    }
    if (rc == 0) rc = fp_rows_tokenize(&set, tok, &ex, err);
    int n_ex = set.n_rows;
    replay_draw rd = {.o = o, .tok = tok, .max_len = (int)sm_param_int(p, "replay_len")};
    lm_rng_seed(&rd.rng, seed ^ 0x7265706c6179ull);
    if (rc == 0) {
        long want = sm_param_int(p, "replay");
        /* three passages per row: with one, tiny-llama's BoolQ moved by
         * up to 10 points after UTF; with three, every zoo cell tried kept
         * SciQ within 2.5 points and BoolQ within 4 (or gained) */
        if (want < 0) want = o && o->n_replay_docs > 0 ? 3L * set.n_rows : 0;
        rc = replay_examples(&rd, (int)want, &ex, n_ex, err);
        n_ex += rd.n;
        r->n_replay = rd.n;
        rd.ex = ex;
    }

    lm_train_opts to;
    lm_train_opts_default(&to);
    if (rc == 0) {
        size_t np = lm_model_param_count(m);
        to.lr = sm_param_float(p, "lr");
        if (to.lr <= 0) to.lr = np < 50000000u ? 3e-4 : np < 1000000000u ? 1e-4 : 2e-5;
        to.batch_size = (int)sm_param_int(p, "batch");
        to.epochs = (int)sm_param_int(p, "max_epochs");
        to.weight_decay = sm_param_float(p, "weight_decay");
        to.max_grad_norm = sm_param_float(p, "max_grad_norm");
        to.max_len = (int)sm_param_int(p, "max_len");
        to.schedule = LM_SCHED_CONSTANT;
        to.seed = seed;
        long per_epoch = (n_ex + to.batch_size - 1) / to.batch_size;
        int ref = to.epochs < 20 ? to.epochs : 20;
        to.warmup_steps = (int)(sm_param_float(p, "warmup") * (double)(per_epoch * ref) + 0.5);
        to.lora_r = (int)sm_param_int(p, "lora_r");
        to.lora_alpha = (float)sm_param_float(p, "lora_alpha");
        to.lora_dropout = (float)sm_param_float(p, "lora_dropout");
        const char *tg = sm_param_str(p, "lora_targets");
        to.lora_targets = tg[0] ? tg : NULL;
        to.progress = progress_step;
        to.progress_ctx = (void *)o;
        r->lr = to.lr;
    }
    criterion crit = {o, sub, &set.fp, 0, 0, 0,
                      rd.n > 0 && sm_param_bool(p, "replay_fresh") ? &rd : NULL};
    to.epoch_end = epoch_end;
    to.epoch_ctx = &crit;
    lm_train_status st = {0};
    if (rc == 0) {
        stage(o, "training");
        rc = lm_train(m, &lora, ex, n_ex, &to, &st, err);
    }
    if (rc == 0 && to.lora_r > 0) lm_lora_set_merge(&lora);
    lm_lora_set_free(&lora);
    if (rc == 0) {
        r->epochs = st.epoch;
        r->steps = st.step;
        r->final_loss = st.epoch_loss;
        r->tokens = st.tokens;
        r->seconds = st.elapsed_s;
        r->epoch_star = crit.epoch_star;
        stage(o, "measuring FSR and FTR");
        if (mt_fsr_eval(&sub, &set.fp, 1, &fr, err) == 0) {
            r->fsr = fr.fsr;
            r->ftr = fr.ftr;
            r->n_negatives = fr.n_negatives;
            mt_fsr_result_free(&fr);
        } else {
            rc = lm_err_prefix(err, "final FSR: ");
        }
        r->failed = rc == 0 && r->fsr < 1.0;
    }
    if (rc == 0 && o && o->n_ppl_docs > 0) {
        stage(o, "perplexity of the fingerprinted model");
        rc = perplexity(&sub, o, &r->ppl, err);
        r->ppl_gate_ok = r->ppl <= 1.1 * r->ppl_base;
    }
    if (rc == 0) {
        stage(o, "writing the model");
        rc = lm_model_save_hf(m, out_dir, err);
    }
    if (rc == 0)
        rc = place_tokenizer(o, tok, out_dir, r->tokenizer_file, sizeof r->tokenizer_file, err);
    if (rc == 0) {
        set.fp.training_json = training_json(&set, &to, p, m, r);
        if (!set.fp.training_json) rc = lm_errf(err, "out of memory");
    }
    if (rc == 0) {
        char path[4096];
        snprintf(path, sizeof path, "%s/fingerprint.json", out_dir);
        rc = mt_fingerprint_write(&set.fp, path, err);
    }
    if (rc == 0 && r->failed) {
        rc = lm_errf(err, "implant_failed: FSR %.4g (%d triggers) after %d epochs (max_epochs); "
                          "the model and fingerprint.json are written with implant_failed true",
                     r->fsr, r->n_triggers, r->epochs);
        rc = FP_IMPLANT_FAILED;
    }
    fp_examples_free(ex, n_ex);
    fp_set_free(&set);
    return rc;
}
