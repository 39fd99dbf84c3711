/* smudge train: supervised fine-tuning on prompt/response pairs, with LoRA
 * or on every weight. */
#include <cjson/cJSON.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "cli.h"
#include "commands.h"
#include "model_io.h"
#include "train.h"

static const char train_help[] =
    "usage: smudge train --model PATH --data FILE.jsonl --out DIR\n"
    "                    [--tokenizer FILE] [--lora r=8,alpha=16,dropout=0.05,targets=q_proj,v_proj]\n"
    "                    [--merge] [--epochs N] [--lr X] [--batch N] [--grad-accum N]\n"
    "                    [--schedule constant|linear|cosine] [--warmup N]\n"
    "                    [--weight-decay X] [--max-grad-norm X] [--max-len N]\n"
    "                    [--train-on-prompt] [--seed N] [--threads N]\n\n"
    "Fine-tunes on prompt/response pairs: each line of FILE is a JSON object\n"
    "with string fields \"prompt\" and \"response\". The loss is on the response\n"
    "tokens and the EOS appended after them (--train-on-prompt: on every\n"
    "token). Without --lora every weight trains and DIR receives the model as\n"
    "a Hugging Face folder; with --lora DIR receives a PEFT adapter\n"
    "(adapter_model.safetensors + adapter_config.json), or the merged model\n"
    "with --merge. The tokenizer files are copied beside the weights.\n"
    "Defaults: 1 epoch, lr 2e-4, batch 8, linear schedule, no warmup, weight\n"
    "decay 0, max grad norm 1, seed 0. Progress on stderr when it is a terminal.\n";

/* Reads FILE: one {"prompt": ..., "response": ...} object per line. */
static int read_pairs(const char *path, char ***prompts, char ***responses,
                      int *n, lm_err *err) {
    FILE *f = fopen(path, "r");
    if (!f) return lm_errf(err, "cannot open %s", path);
    int cap = 64, cnt = 0, line_no = 0, rc = 0;
    char **p = malloc((size_t)cap * sizeof *p), **r = malloc((size_t)cap * sizeof *r);
    char *line = NULL;
    size_t lcap = 0;
    ssize_t len;
    while (rc == 0 && p && r && (len = getline(&line, &lcap, f)) >= 0) {
        line_no++;
        while (len > 0 && (line[len - 1] == '\n' || line[len - 1] == '\r')) line[--len] = '\0';
        if (len == 0) continue;
        cJSON *o = cJSON_ParseWithLength(line, (size_t)len);
        if (!o || !cJSON_IsObject(o)) {
            rc = lm_errf(err, "%s:%d: not a JSON object", path, line_no);
        } else {
            const cJSON *jp = cJSON_GetObjectItemCaseSensitive(o, "prompt");
            const cJSON *jr = cJSON_GetObjectItemCaseSensitive(o, "response");
            if (!cJSON_IsString(jp))
                rc = lm_errf(err, "%s:%d: field 'prompt' %s", path, line_no,
                             jp ? "must be a string" : "missing");
            else if (!cJSON_IsString(jr))
                rc = lm_errf(err, "%s:%d: field 'response' %s", path, line_no,
                             jr ? "must be a string" : "missing");
            else {
                if (cnt == cap) {
                    cap *= 2;
                    char **np = realloc(p, (size_t)cap * sizeof *p);
                    if (np) p = np;
                    char **nr = realloc(r, (size_t)cap * sizeof *r);
                    if (nr) r = nr;
                    if (!np || !nr) rc = lm_errf(err, "out of memory");
                }
                if (rc == 0) {
                    p[cnt] = strdup(jp->valuestring);
                    r[cnt] = strdup(jr->valuestring);
                    cnt++;
                }
            }
        }
        cJSON_Delete(o);
    }
    free(line);
    fclose(f);
    if (!p || !r) rc = lm_errf(err, "out of memory");
    if (rc == 0 && cnt == 0) rc = lm_errf(err, "%s holds no examples", path);
    if (rc) {
        for (int i = 0; i < cnt; i++) {
            free(p[i]);
            free(r[i]);
        }
        free(p);
        free(r);
        return -1;
    }
    *prompts = p;
    *responses = r;
    *n = cnt;
    return 0;
}

/* ids = tok(prompt + response) + EOS, prompt_len = the length of tok(prompt)
 * where it is a prefix (tokenising the whole text keeps merges across the
 * boundary as the model will see them at generation time). */
static int make_example(const lm_tokenizer *t, const char *prompt,
                        const char *response, lm_train_example *e, lm_err *err) {
    size_t pl = strlen(prompt), rl = strlen(response);
    char *whole = malloc(pl + rl + 1);
    if (!whole) return lm_errf(err, "out of memory");
    memcpy(whole, prompt, pl);
    memcpy(whole + pl, response, rl + 1);
    int *all = NULL, *pre = NULL, na = 0, np = 0;
    int rc = lm_tokenizer_encode(t, whole, pl + rl, LM_TOK_DEFAULT, &all, &na, err);
    if (rc == 0) rc = lm_tokenizer_encode(t, prompt, pl, LM_TOK_DEFAULT, &pre, &np, err);
    free(whole);
    if (rc) {
        free(all);
        free(pre);
        return -1;
    }
    int common = 0;
    while (common < np && common < na && pre[common] == all[common]) common++;
    free(pre);
    int32_t *ids = realloc(all, (size_t)(na + 1) * sizeof *ids);
    if (!ids) {
        free(all);
        return lm_errf(err, "out of memory");
    }
    if (t->eos_id >= 0) ids[na++] = t->eos_id;
    e->ids = ids;
    e->n = na;
    e->prompt_len = common;
    return 0;
}

/* "r=8,alpha=16,dropout=0.05,targets=q_proj,v_proj": targets takes the rest. */
static int parse_lora(const char *spec, lm_train_opts *o, char *targets,
                      size_t cap, lm_err *err) {
    o->lora_r = 8;
    o->lora_alpha = 16.0f;
    targets[0] = '\0';
    const char *p = spec;
    while (*p) {
        const char *eq = strchr(p, '=');
        if (!eq) return lm_errf(err, "--lora: '%s' is not key=value", p);
        size_t kl = (size_t)(eq - p);
        const char *v = eq + 1;
        if (kl == 7 && !strncmp(p, "targets", 7)) {
            snprintf(targets, cap, "%s", v);
            break;
        }
        const char *comma = strchr(v, ',');
        char val[64];
        size_t vl = comma ? (size_t)(comma - v) : strlen(v);
        if (vl >= sizeof val) return lm_errf(err, "--lora: value too long");
        memcpy(val, v, vl);
        val[vl] = '\0';
        long iv;
        double fv;
        if (kl == 1 && p[0] == 'r') {
            if (cli_int("--lora r", val, 1, 4096, &iv, err)) return -1;
            o->lora_r = (int)iv;
        } else if (kl == 5 && !strncmp(p, "alpha", 5)) {
            if (cli_float("--lora alpha", val, &fv, err)) return -1;
            o->lora_alpha = (float)fv;
        } else if (kl == 7 && !strncmp(p, "dropout", 7)) {
            if (cli_float("--lora dropout", val, &fv, err)) return -1;
            if (fv < 0 || fv >= 1) return lm_errf(err, "--lora dropout must lie in [0, 1)");
            o->lora_dropout = (float)fv;
        } else {
            return lm_errf(err, "--lora: unknown key '%.*s' (r, alpha, dropout, targets)",
                           (int)kl, p);
        }
        p = comma ? comma + 1 : v + vl;
    }
    return 0;
}

static void show_progress(void *ctx, const lm_train_status *s) {
    (void)ctx;
    fprintf(stderr, "\r\033[Kstep %d/%d  epoch %d/%d  loss %.4f  lr %.2e  %.0f tok/s  %.0fs left",
            s->step, s->total_steps, s->epoch, s->epochs, (double)s->loss, (double)s->lr,
            s->tokens_per_s, s->eta_s);
    if (s->step == s->total_steps) fputc('\n', stderr);
}

static void copy_file(const char *from_dir, const char *to_dir, const char *name) {
    char a[4096], b[4096];
    snprintf(a, sizeof a, "%s/%s", from_dir, name);
    snprintf(b, sizeof b, "%s/%s", to_dir, name);
    FILE *in = fopen(a, "rb");
    if (!in) return;
    FILE *out = fopen(b, "wb");
    char buf[65536];
    size_t k;
    while (out && (k = fread(buf, 1, sizeof buf, in)) > 0) fwrite(buf, 1, k, out);
    if (out) fclose(out);
    fclose(in);
}

int cmd_train(int argc, char **argv) {
    if (cli_wants_help(argc, argv, 2)) {
        fputs(train_help, stdout);
        return CLI_OK;
    }
    cli_opt opts[] = {{"--model", 1}, {"--data", 1}, {"--out", 1}, {"--tokenizer", 1},
                      {"--lora", 1}, {"--merge", 0}, {"--epochs", 1}, {"--lr", 1},
                      {"--batch", 1}, {"--grad-accum", 1}, {"--schedule", 1},
                      {"--warmup", 1}, {"--weight-decay", 1}, {"--max-grad-norm", 1},
                      {"--max-len", 1}, {"--train-on-prompt", 0}, {"--seed", 1},
                      {"--threads", 1}, {0}};
    lm_err err = {{0}};
    lm_train_opts o;
    lm_train_opts_default(&o);
    o.lora_r = 0;
    long iv, threads = 0;
    double fv;
    char targets[512] = "";
    int rc = cli_parse(argc, argv, 2, opts, NULL, 0, NULL, &err);
#define INT_OPT(name, lo, hi, field) \
    if (rc == 0 && cli_get(opts, name)) { rc = cli_int(name, cli_get(opts, name), lo, hi, &iv, &err); field = (int)iv; }
#define FLOAT_OPT(name, field) \
    if (rc == 0 && cli_get(opts, name)) { rc = cli_float(name, cli_get(opts, name), &fv, &err); field = fv; }
    INT_OPT("--epochs", 1, 100000, o.epochs);
    INT_OPT("--batch", 1, 65536, o.batch_size);
    INT_OPT("--grad-accum", 1, 65536, o.grad_accum);
    INT_OPT("--warmup", 0, 1 << 30, o.warmup_steps);
    INT_OPT("--max-len", 0, 1 << 24, o.max_len);
    INT_OPT("--threads", 1, 1024, threads);
    FLOAT_OPT("--lr", o.lr);
    FLOAT_OPT("--weight-decay", o.weight_decay);
    FLOAT_OPT("--max-grad-norm", o.max_grad_norm);
    if (rc == 0 && cli_get(opts, "--seed")) {
        rc = cli_int("--seed", cli_get(opts, "--seed"), 0, 0x7fffffffL, &iv, &err);
        o.seed = (uint64_t)iv;
    }
#undef INT_OPT
#undef FLOAT_OPT
    if (rc == 0 && cli_get(opts, "--schedule") &&
        lm_sched_from_name(cli_get(opts, "--schedule"), &o.schedule))
        rc = lm_errf(&err, "--schedule: '%s' is not constant, linear or cosine",
                     cli_get(opts, "--schedule"));
    if (rc == 0 && cli_get(opts, "--lora"))
        rc = parse_lora(cli_get(opts, "--lora"), &o, targets, sizeof targets, &err);
    if (rc == 0 && !(o.lr > 0)) rc = lm_errf(&err, "--lr must be positive");
    if (rc == 0 && (o.weight_decay < 0)) rc = lm_errf(&err, "--weight-decay must be >= 0");
    const char *path = cli_get(opts, "--model"), *data = cli_get(opts, "--data"),
               *out = cli_get(opts, "--out");
    if (rc == 0 && (!path || !data || !out))
        rc = lm_errf(&err, "--model, --data and --out are required (see --help)");
    if (rc == 0 && cli_has(opts, "--merge") && o.lora_r == 0)
        rc = lm_errf(&err, "--merge goes with --lora");
    if (rc) {
        fprintf(stderr, "smudge train: %s\n", err.msg);
        return CLI_USAGE;
    }
    o.lora_targets = targets[0] ? targets : NULL;
    o.train_on_prompt = cli_has(opts, "--train-on-prompt");
    if (cli_progress_enabled()) o.progress = show_progress;

    char **prompts = NULL, **responses = NULL;
    int n = 0;
    lm_tokenizer t;
    lm_model m;
    lm_backend *be = NULL;
    lm_train_example *ex = NULL;
    lm_lora_set lora = {0};
    int have_tok = 0, have_model = 0;
    rc = read_pairs(data, &prompts, &responses, &n, &err);
    if (rc == 0) rc = su_load_tokenizer(path, cli_get(opts, "--tokenizer"), &t, &err);
    if (rc == 0) have_tok = 1;
    if (rc == 0) rc = su_load_model(path, (int)threads, &m, &be, &err);
    if (rc == 0) have_model = 1;
    if (rc == 0) rc = su_check_vocab(&m, &t, &err);
    if (rc == 0 && !(ex = calloc((size_t)n, sizeof *ex))) rc = lm_errf(&err, "out of memory");
    for (int i = 0; rc == 0 && i < n; i++) {
        rc = make_example(&t, prompts[i], responses[i], &ex[i], &err);
        if (rc) lm_err_prefix(&err, "%s: example %d: ", data, i + 1);
    }
    lm_train_status st;
    if (rc == 0) rc = lm_train(&m, &lora, ex, n, &o, &st, &err);
    if (rc == 0) {
        if (o.lora_r > 0 && !cli_has(opts, "--merge")) {
            rc = lm_peft_save(&lora, out, path, &err);
        } else {
            if (o.lora_r > 0) lm_lora_set_merge(&lora);
            rc = lm_model_save_hf(&m, out, &err);
        }
    }
    if (rc == 0) {
        struct stat sb;
        if (stat(path, &sb) == 0 && S_ISDIR(sb.st_mode)) {
            copy_file(path, out, "tokenizer.json");
            copy_file(path, out, "tokenizer_config.json");
            copy_file(path, out, "special_tokens_map.json");
        }
        printf("{\"out\":\"%s\",\"examples\":%d,\"steps\":%d,\"final_loss\":%.6f,"
               "\"tokens\":%.0f,\"seconds\":%.3f,\"lora\":%s}\n",
               out, n, st.step, (double)st.epoch_loss, st.tokens, st.elapsed_s,
               o.lora_r > 0 ? (cli_has(opts, "--merge") ? "\"merged\"" : "true") : "false");
    } else {
        fprintf(stderr, "smudge train: %s\n", err.msg);
    }
    for (int i = 0; ex && i < n; i++) free(ex[i].ids);
    free(ex);
    for (int i = 0; i < n; i++) {
        free(prompts[i]);
        free(responses[i]);
    }
    free(prompts);
    free(responses);
    lm_lora_set_free(&lora);
    if (have_model) lm_model_free(&m);
    lm_backend_cpu_free(be);
    if (have_tok) lm_tokenizer_free(&t);
    return rc ? CLI_FAIL : CLI_OK;
}
