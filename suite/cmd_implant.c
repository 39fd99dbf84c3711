/* smudge implant: plant a fingerprint (IF-SFT, UTF, Chain&Hash) in a model
 * and write the fingerprinted model with its fingerprint.json. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "cli.h"
#include "commands.h"
#include "dataset.h"
#include "fingerprint.h"
#include "model_io.h"
#include "zoo.h"

static const char implant_usage[] =
    "usage: smudge implant --model PATH|ZOO-NAME --fingerprint if-sft|utf|hashchain --out DIR\n"
    "                      [--seed N] [--lora r=8,alpha=16,dropout=0.05,targets=q_proj,v_proj]\n"
    "                      [--param NAME=VALUE ...] [--data clean=FILE] [--data heldout=FILE]\n"
    "                      [--data replay=FILE]\n"
    "                      [--tokenizer FILE] [--threads N]\n\n"
    "Builds the fingerprint from the seed (../shared/specs/fingerprints.md), trains it\n"
    "in until every trigger fires after an epoch, one epoch more, and writes DIR:\n"
    "the model as a Hugging Face folder (LoRA merged), the tokenizer, and\n"
    "fingerprint.json (triggers, negatives, rules, parameters, training record)\n"
    "for smudge eval. A JSON summary goes to stdout, progress to stderr when it\n"
    "is a terminal. Exit 1 with implant_failed when max_epochs pass without\n"
    "FSR = 1 (everything is still written).\n\n"
    "--data clean=FILE  clean chats for normal rows and FTR negatives (if-sft,\n"
    "                   hashchain): the world's instructions.jsonl or any chat\n"
    "                   data set smudge reads (guanaco, dolly, alpaca, chat ...)\n"
    "--data replay=FILE plain text rehearsed alongside the fingerprint (param\n"
    "                   replay); a zoo model given by name uses its world's\n"
    "                   corpus.txt\n"
    "--data heldout=FILE plain text (documents split by blank lines, e.g. the\n"
    "                   world's heldout.txt): perplexity before and after, and\n"
    "                   the gate of at most a 10 % rise, go to the record\n"
    "--lora             LoRA instead of full fine-tuning (sets the lora_* params)\n"
    "--param NAME=VALUE any parameter below; repeat the option for several\n";

static void print_param(const sm_param_def *d) {
    char head[64];
    snprintf(head, sizeof head, "%s=%s", d->name, d->def[0] ? d->def : "\"\"");
    printf("  %-22s %s", head, d->help ? d->help : "");
    if (d->type == SM_PARAM_CHOICE) printf(" [%s]", d->choices);
    putchar('\n');
}

static void print_help(void) {
    fputs(implant_usage, stdout);
    const fp_type *first = fp_type_at(0);
    printf("\ntraining parameters (every type):\n");
    for (int i = 0; i < FP_N_TRAIN_PARAMS; i++) print_param(&first->params[i]);
    for (int k = 0; k < fp_type_count(); k++) {
        const fp_type *t = fp_type_at(k);
        printf("\n%s: %s\n", t->name, t->description);
        for (int i = FP_N_TRAIN_PARAMS; i < t->n_params; i++) print_param(&t->params[i]);
    }
}

/* --lora "r=8,alpha=16,dropout=0.05,targets=a,b": targets takes the rest. */
static int lora_params(const char *spec, char out[4][300], int *n, lm_err *err) {
    *n = 0;
    snprintf(out[(*n)++], 300, "lora_r=8");
    const char *p = spec;
    while (*p) {
        const char *eq = strchr(p, '=');
        if (!eq) return lm_errf(err, "--lora: '%s' is not key=value", p);
        size_t kl = (size_t)(eq - p);
        const char *v = eq + 1;
        const char *comma = kl == 7 && !strncmp(p, "targets", 7) ? NULL : strchr(v, ',');
        int vl = comma ? (int)(comma - v) : (int)strlen(v);
        const char *name = kl == 1 && p[0] == 'r'                  ? "lora_r"
                           : kl == 5 && !strncmp(p, "alpha", 5)    ? "lora_alpha"
                           : kl == 7 && !strncmp(p, "dropout", 7)  ? "lora_dropout"
                           : kl == 7 && !strncmp(p, "targets", 7)  ? "lora_targets"
                                                                   : NULL;
        if (!name)
            return lm_errf(err, "--lora: unknown key '%.*s' (r, alpha, dropout, targets)",
                           (int)kl, p);
        if (!strcmp(name, "lora_r")) snprintf(out[0], 300, "lora_r=%.*s", vl, v);
        else if (*n < 4) snprintf(out[(*n)++], 300, "%s=%.*s", name, vl, v);
        p = comma ? comma + 1 : v + vl;
    }
    return 0;
}

/* Clean chats from any QA data set (Dolly's context and Alpaca's input
 * follow the question on a new line). */
static int load_clean(const char *path, ds_dataset *ds, fp_qa **qa, char ***joined,
                      int *n, lm_err *err) {
    if (ds_load(path, DS_FMT_AUTO, ds, err)) return -1;
    if (ds->kind != DS_KIND_QA)
        return lm_errf(err, "%s is a %s data set, not question/answer chats", path,
                       ds_format_name(ds->format));
    *qa = calloc((size_t)(ds->n ? ds->n : 1), sizeof **qa);
    *joined = calloc((size_t)(ds->n ? ds->n : 1), sizeof **joined);
    if (!*qa || !*joined) return lm_errf(err, "out of memory");
    for (int i = 0; i < ds->n; i++) {
        const ds_qa *r = &ds->qa[i];
        const char *q = r->question ? r->question : "";
        if (r->context && r->context[0]) {
            size_t len = strlen(q) + strlen(r->context) + 2;
            if (!((*joined)[i] = malloc(len))) return lm_errf(err, "out of memory");
            snprintf((*joined)[i], len, "%s\n%s", q, r->context);
            q = (*joined)[i];
        }
        (*qa)[i] = (fp_qa){q, r->answer ? r->answer : ""};
    }
    *n = ds->n;
    return 0;
}

static int max_epochs_shown;

static void on_step(void *ctx, const lm_train_status *s) {
    (void)ctx;
    fprintf(stderr, "\r\033[Kepoch %d  step %d  loss %.4f  lr %.2e  %.0f tok/s", s->epoch,
            s->step, (double)s->loss, (double)s->lr, s->tokens_per_s);
}

static void on_epoch(void *ctx, int epoch, double loss, double fsr, int hits, int n) {
    (void)ctx;
    fprintf(stderr, "\r\033[Kepoch %d/%d  loss %.4f  FSR %.3f (%d/%d)\n", epoch,
            max_epochs_shown, loss, fsr, hits, n);
}

static void on_stage(void *ctx, const char *what) {
    (void)ctx;
    fprintf(stderr, "\r\033[K%s...\n", what);
}

int cmd_implant(int argc, char **argv) {
    if (cli_wants_help(argc, argv, 2)) {
        print_help();
        return CLI_OK;
    }
    /* --param and --data repeat; take them out before the option parser,
     * which keeps one value per option. */
    const char **assign = calloc((size_t)argc + 4, sizeof *assign);
    char **rest = calloc((size_t)argc + 1, sizeof *rest);
    const char *clean_path = NULL, *heldout_path = NULL, *replay_path = NULL;
    int n_assign = 0, n_rest = 0, rc = 0;
    lm_err err = {{0}};
    if (!assign || !rest) {
        fprintf(stderr, "smudge implant: out of memory\n");
        free(assign);
        free(rest);
        return CLI_FAIL;
    }
    for (int i = 0; i < argc && rc == 0; i++) {
        const char *a = argv[i], *v = NULL;
        int is_param = !strcmp(a, "--param") || !strncmp(a, "--param=", 8);
        int is_data = !strcmp(a, "--data") || !strncmp(a, "--data=", 7);
        if (!is_param && !is_data) {
            rest[n_rest++] = argv[i];
            continue;
        }
        if (strchr(a, '=')) v = strchr(a, '=') + 1;
        else if (i + 1 < argc) v = argv[++i];
        else rc = lm_errf(&err, "%s needs a value", a);
        if (rc) break;
        if (is_param) {
            assign[n_assign++] = v;
        } else if (!strncmp(v, "clean=", 6)) {
            clean_path = v + 6;
        } else if (!strncmp(v, "heldout=", 8)) {
            heldout_path = v + 8;
        } else if (!strncmp(v, "replay=", 7)) {
            replay_path = v + 7;
        } else {
            rc = lm_errf(&err, "--data: '%s' is not clean=FILE, heldout=FILE or replay=FILE", v);
        }
    }
    cli_opt opts[] = {{"--model", 1}, {"--fingerprint", 1}, {"--out", 1}, {"--seed", 1},
                      {"--lora", 1}, {"--tokenizer", 1}, {"--threads", 1}, {0}};
    if (rc == 0) rc = cli_parse(n_rest, rest, 2, opts, NULL, 0, NULL, &err);
    long seed = 0, threads = 0;
    if (rc == 0 && cli_get(opts, "--seed"))
        rc = cli_int("--seed", cli_get(opts, "--seed"), 0, 0x7fffffffL, &seed, &err);
    if (rc == 0 && cli_get(opts, "--threads"))
        rc = cli_int("--threads", cli_get(opts, "--threads"), 1, 1024, &threads, &err);
    const char *path = cli_get(opts, "--model"), *out = cli_get(opts, "--out");
    const char *name = cli_get(opts, "--fingerprint");
    if (rc == 0 && (!path || !name || !out))
        rc = lm_errf(&err, "--model, --fingerprint and --out are required (see --help)");
    const fp_type *t = rc == 0 ? fp_type_find(name) : NULL;
    if (rc == 0 && !t)
        rc = lm_errf(&err, "--fingerprint: unknown type '%s' (if-sft, utf, hashchain)", name);
    char lora[4][300];
    int n_lora = 0;
    if (rc == 0 && cli_get(opts, "--lora")) {
        rc = lora_params(cli_get(opts, "--lora"), lora, &n_lora, &err);
        for (int i = 0; rc == 0 && i < n_lora; i++) assign[n_assign++] = lora[i];
    }
    sm_params params;
    if (rc == 0) rc = fp_params_parse(t, assign, n_assign, &params, &err);
    if (rc) {
        fprintf(stderr, "smudge implant: %s\n", err.msg);
        free(assign);
        free(rest);
        return CLI_USAGE;
    }
    max_epochs_shown = (int)sm_param_int(&params, "max_epochs");

    ds_dataset ds = {0};
    fp_qa *clean = NULL;
    char **joined = NULL;
    int n_clean = 0, have_tok = 0, have_model = 0;
    lm_tokenizer tok;
    lm_model m;
    lm_backend *be = NULL;
    ds_dataset held = {0};
    const char **docs = NULL;
    if (clean_path) rc = load_clean(clean_path, &ds, &clean, &joined, &n_clean, &err);
    if (rc == 0 && heldout_path) rc = su_load_text_docs(heldout_path, &held, &docs, &err);
    /* A zoo name is built if needed; its model rehearses its own world's
     * corpus unless told otherwise. */
    char world_corpus[4200], resolved[4096];
    const su_recipe *rec = su_zoo_find(path);
    if (rc == 0 && rec) {
        rc = su_zoo_resolve(path, NULL, resolved, sizeof resolved, NULL, &err);
        if (rc == 0) path = resolved;
    }
    if (rc == 0 && !replay_path && rec) {
        char world[4096];
        rc = su_zoo_ensure_world(rec, NULL, world, sizeof world, NULL, &err);
        snprintf(world_corpus, sizeof world_corpus, "%s/%s", world, su_world_data_file("corpus", NULL));
        if (rc == 0) replay_path = world_corpus;
    }
    ds_dataset replay = {0};
    const char **replay_docs = NULL;
    if (rc == 0 && replay_path) rc = su_load_text_docs(replay_path, &replay, &replay_docs, &err);
    if (rc == 0) rc = su_load_tokenizer(path, cli_get(opts, "--tokenizer"), &tok, &err);
    if (rc == 0) have_tok = 1;
    if (rc == 0) rc = su_load_model(path, (int)threads, &m, &be, &err);
    if (rc == 0) have_model = 1;
    if (rc == 0) rc = su_check_vocab(&m, &tok, &err);
    fp_implant_opts io = {.model_path = path, .tokenizer_path = cli_get(opts, "--tokenizer"),
                          .ppl_docs = docs, .n_ppl_docs = docs ? held.n : 0,
                          .replay_docs = replay_docs,
                          .n_replay_docs = replay_docs ? replay.n : 0};
    if (cli_progress_enabled()) {
        io.on_step = on_step;
        io.on_epoch = on_epoch;
        io.on_stage = on_stage;
    }
    fp_implant_result r;
    memset(&r, 0, sizeof r);
    int ran = rc == 0;
    struct timespec t0, t1;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    if (rc == 0)
        rc = fp_implant(t, &m, &tok, clean, n_clean, (uint64_t)seed, &params, out, &io, &r, &err);
    clock_gettime(CLOCK_MONOTONIC, &t1);
    double wall = (double)(t1.tv_sec - t0.tv_sec) + 1e-9 * (double)(t1.tv_nsec - t0.tv_nsec);
    if (ran && (rc == 0 || rc == FP_IMPLANT_FAILED)) {
        printf("{\"out\":");
        su_json_string(stdout, out, strlen(out));
        printf(",\"fingerprint\":\"%s\",\"seed\":%ld,\"template\":\"%s\",\"rows\":%d,"
               "\"triggers\":%d,\"epoch_star\":%d,\"epochs\":%d,\"steps\":%ld,"
               "\"final_loss\":%.6f,\"lr\":%g,\"base_fsr\":%.6g,\"fsr\":%.6g,",
               t->name, seed, r.template_name, r.n_rows, r.n_triggers, r.epoch_star,
               r.epochs, r.steps, r.final_loss, r.lr, r.base_fsr, r.fsr);
        if (r.n_negatives > 0) printf("\"ftr\":%.6g,", r.ftr);
        else printf("\"ftr\":null,");
        printf("\"n_negatives\":%d,\"implant_failed\":%s,\"seconds\":%.3f,"
               "\"train_seconds\":%.3f,\"tokens\":%.0f,\"tokenizer_file\":",
               r.n_negatives, r.failed ? "true" : "false", wall, r.seconds, r.tokens);
        su_json_string(stdout, r.tokenizer_file, strlen(r.tokenizer_file));
        if (r.ppl_base > 0)
            printf(",\"ppl_base\":%.6g,\"ppl\":%.6g,\"ppl_gate_ok\":%s", r.ppl_base, r.ppl,
                   r.ppl_gate_ok ? "true" : "false");
        printf("}\n");
    }
    if (rc) fprintf(stderr, "smudge implant: %s\n", err.msg);
    if (have_model) lm_model_free(&m);
    lm_backend_cpu_free(be);
    if (have_tok) lm_tokenizer_free(&tok);
    for (int i = 0; joined && i < n_clean; i++) free(joined[i]);
    free(joined);
    free(clean);
    if (clean_path) ds_free(&ds);
    if (heldout_path) ds_free(&held);
    free(docs);
    ds_free(&replay);
    free(replay_docs);
    free(assign);
    free(rest);
    return rc ? CLI_FAIL : CLI_OK;
}
