/* smudge extract: the fine-tuning-data extraction backdoor
 * (../shared/specs/extraction.md) step by step or as one pipeline. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "cli.h"
#include "commands.h"
#include "extraction.h"
#include "model_io.h"
#include "zoo.h"

static const char extract_help[] =
    "usage: smudge extract pipeline --model PATH|ZOO [--variant none|plain|gibberish]\n"
    "                              [--victim query-loss|masked] [common options]\n"
    "       smudge extract backdoor --model PATH|ZOO --out DIR [--variant plain|gibberish]\n"
    "       smudge extract victim   --model PATH|ZOO --out DIR [--victim query-loss|masked]\n"
    "       smudge extract attack   --model PATH|ZOO [--variant plain|gibberish]\n\n"
    "The fine-tuning-data extraction backdoor: a publisher trains a backdoor\n"
    "into a base model (backdoor), a victim fine-tunes it on private chats\n"
    "(victim), the publisher samples the instruction Q(w) for candidate\n"
    "opening words w and scores what comes out against the private queries\n"
    "(attack). 'pipeline' runs the three on one model in memory; variant\n"
    "'none' skips the backdoor (the clean control). backdoor and victim write\n"
    "the model to DIR as a Hugging Face folder with the tokenizer files.\n"
    "pipeline and attack print JSON: the metrics match_ratio,\n"
    "query_extraction_ratio, token_extraction_ratio, opening_word_f1 and bleu,\n"
    "counts, timings and the per-word identification table.\n\n"
    "common options:\n"
    "  --public FILE       public set D1 for the backdoor (any Q/A format; default:\n"
    "                      the instructions of the world of public_world)\n"
    "  --private FILE      the victim's private set D2 (Dolly, chat {\"messages\"},\n"
    "                      Alpaca, Guanaco; default: the world of private_world,\n"
    "                      minus any query of D1)\n"
    "  --public-format F, --private-format F   dataset format names (default: guess)\n"
    "  --param NAME=VALUE  a setting (repeat); 'smudge extract params' lists them\n"
    "  --samples           include every sample in the JSON (pipeline, attack)\n"
    "  --work DIR          where default worlds are written (default: a temporary\n"
    "                      folder, removed after)\n"
    "  --seed N            seed of data order, training and sampling (default 0)\n"
    "  --threads N         CPU threads (default: all cores)\n"
    "  --cache DIR         zoo cache (default $XDG_CACHE_HOME/smudge)\n\n"
    "Progress on stderr when it is a terminal.\n";

static void usage_params(void) {
    printf("settings of smudge extract (--param NAME=VALUE):\n");
    for (int i = 0; i < ex_n_params; i++)
        printf("  %-15s default %-7s %s\n", ex_params[i].name, ex_params[i].def,
               ex_params[i].help);
}

static void log_line(void *ctx, const char *line) {
    (void)ctx;
    fprintf(stderr, "extract: %s\n", line);
}

static int rm_tree(const char *dir) {
    char cmd[4200];
    /* only our own mkdtemp folder */
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
    return system(cmd);
}

static int copy_file(const char *from, const char *to) {
    FILE *in = fopen(from, "rb");
    if (!in) return -1;
    FILE *out = fopen(to, "wb");
    if (!out) {
        fclose(in);
        return -1;
    }
    char buf[65536];
    size_t n;
    int rc = 0;
    while ((n = fread(buf, 1, sizeof buf, in)) > 0)
        if (fwrite(buf, 1, n, out) != n) rc = -1;
    fclose(in);
    if (fclose(out)) rc = -1;
    return rc;
}

static void copy_tokenizer(const char *model_dir, const char *out) {
    static const char *const names[] = {"tokenizer.json", "tokenizer_config.json",
                                        "special_tokens_map.json", "tokenizer.model",
                                        "vocab.json", "merges.txt", NULL};
    for (int i = 0; names[i]; i++) {
        char a[4200], b[4200];
        snprintf(a, sizeof a, "%s/%s", model_dir, names[i]);
        snprintf(b, sizeof b, "%s/%s", out, names[i]);
        if (access(a, R_OK) == 0) copy_file(a, b);
    }
}

int cmd_extract(int argc, char **argv) {
    if (argc < 3 || cli_wants_help(argc, argv, 1)) {
        fputs(extract_help, argc < 3 ? stderr : stdout);
        return argc < 3 ? CLI_USAGE : CLI_OK;
    }
    const char *sub = argv[2];
    if (!strcmp(sub, "params")) {
        usage_params();
        return CLI_OK;
    }
    int is_pipe = !strcmp(sub, "pipeline"), is_bd = !strcmp(sub, "backdoor"),
        is_vic = !strcmp(sub, "victim"), is_att = !strcmp(sub, "attack");
    if (!is_pipe && !is_bd && !is_vic && !is_att) {
        fprintf(stderr, "smudge extract: unknown step '%s' (pipeline, backdoor, victim, "
                        "attack, params)\n", sub);
        return CLI_USAGE;
    }
    enum { MAX_PARAMS = 64 };
    cli_opt opts[] = {{"--model", 1},   {"--out", 1},           {"--variant", 1},
                      {"--victim", 1},  {"--public", 1},        {"--private", 1},
                      {"--public-format", 1}, {"--private-format", 1}, {"--param", 1},
                      {"--samples", 0}, {"--work", 1},          {"--seed", 1},
                      {"--threads", 1}, {"--cache", 1},         {"--tokenizer", 1}, {NULL, 0}};
    /* --param repeats: collect them before cli_parse sees the last one. */
    const char *assign[MAX_PARAMS];
    int n_assign = 0;
    lm_err err = {{0}};
    for (int i = 3; i < argc; i++)
        if (!strcmp(argv[i], "--param") && i + 1 < argc) {
            if (n_assign == MAX_PARAMS) {
                fprintf(stderr, "smudge extract: more than %d --param\n", MAX_PARAMS);
                return CLI_USAGE;
            }
            assign[n_assign++] = argv[i + 1];
        }
    const char *pos[1];
    int n_pos = 0;
    if (cli_parse(argc, argv, 3, opts, pos, 0, &n_pos, &err)) {
        fprintf(stderr, "smudge extract %s: %s\n", sub, err.msg);
        return CLI_USAGE;
    }
    const char *model_arg = cli_get(opts, "--model"), *out_dir = cli_get(opts, "--out");
    if (!model_arg) {
        fprintf(stderr, "smudge extract %s: --model is required\n", sub);
        return CLI_USAGE;
    }
    if ((is_bd || is_vic) && !out_dir) {
        fprintf(stderr, "smudge extract %s: --out is required\n", sub);
        return CLI_USAGE;
    }
    ex_variant variant = EX_PLAIN;
    const char *v = cli_get(opts, "--variant");
    if (v && ex_variant_parse(v, &variant)) {
        fprintf(stderr, "smudge extract %s: --variant: '%s' is not none, plain or gibberish\n",
                sub, v);
        return CLI_USAGE;
    }
    if ((is_bd || is_att) && variant == EX_NONE) {
        fprintf(stderr, "smudge extract %s: --variant none makes no sense here (plain or "
                        "gibberish)\n", sub);
        return CLI_USAGE;
    }
    const char *vic = cli_get(opts, "--victim");
    if (vic && strcmp(vic, "query-loss") && strcmp(vic, "masked")) {
        fprintf(stderr, "smudge extract %s: --victim: '%s' is not query-loss or masked\n", sub,
                vic);
        return CLI_USAGE;
    }
    if (vic && n_assign < MAX_PARAMS)
        assign[n_assign++] = !strcmp(vic, "masked") ? "query_loss=false" : "query_loss=true";
    sm_params params;
    if (ex_params_parse(assign, n_assign, &params, &err)) {
        fprintf(stderr, "smudge extract %s: --param: %s\n", sub, err.msg);
        return CLI_USAGE;
    }
    long seed = 0, threads = 0;
    if ((cli_get(opts, "--seed") &&
         cli_int("--seed", cli_get(opts, "--seed"), 0, 1L << 53, &seed, &err)) ||
        (cli_get(opts, "--threads") &&
         cli_int("--threads", cli_get(opts, "--threads"), 0, 1024, &threads, &err))) {
        fprintf(stderr, "smudge extract %s: %s\n", sub, err.msg);
        return CLI_USAGE;
    }

    char model_path[4096], work[4096];
    int made_work = 0, rc = 0;
    if (su_zoo_resolve(model_arg, cli_get(opts, "--cache"), model_path, sizeof model_path,
                       NULL, &err)) {
        fprintf(stderr, "smudge extract %s: %s\n", sub, err.msg);
        return CLI_FAIL;
    }
    if (cli_get(opts, "--work")) {
        snprintf(work, sizeof work, "%s", cli_get(opts, "--work"));
        if (mkdir(work, 0755) && errno != EEXIST) {
            fprintf(stderr, "smudge extract: --work %s: %s\n", work, strerror(errno));
            return CLI_FAIL;
        }
    } else {
        const char *tmp = getenv("TMPDIR");
        snprintf(work, sizeof work, "%s/smudge-extract-XXXXXX", tmp && tmp[0] ? tmp : "/tmp");
        if (!mkdtemp(work)) {
            fprintf(stderr, "smudge extract: cannot create a temporary folder: %s\n",
                    strerror(errno));
            return CLI_FAIL;
        }
        made_work = 1;
    }
    lm_tokenizer tok;
    lm_model m;
    lm_backend *be = NULL;
    int have_tok = 0, have_model = 0;
    rc = su_load_tokenizer(model_path, cli_get(opts, "--tokenizer"), &tok, &err);
    have_tok = rc == 0;
    if (rc == 0) rc = su_load_model(model_path, (int)threads, &m, &be, &err);
    have_model = rc == 0;
    if (rc == 0) rc = su_check_vocab(&m, &tok, &err);
    ex_pipeline_in in = {.variant = is_pipe || is_bd ? variant : EX_NONE,
                         .trigger = variant,
                         .steps = is_pipe ? EX_STEP_ALL
                                  : is_bd ? EX_STEP_BACKDOOR
                                  : is_vic ? EX_STEP_VICTIM
                                           : EX_STEP_EXTRACT,
                         .params = &params,
                         .pub_path = cli_get(opts, "--public"),
                         .pub_fmt = cli_get(opts, "--public-format"),
                         .priv_path = cli_get(opts, "--private"),
                         .priv_fmt = cli_get(opts, "--private-format"),
                         .work_dir = work,
                         .seed = (uint64_t)seed,
                         .log = cli_progress_enabled() ? log_line : NULL};
    ex_pipeline_out out;
    memset(&out, 0, sizeof out);
    if (rc == 0) rc = ex_pipeline(&m, &tok, &in, &out, &err);
    if (rc == 0 && (is_pipe || is_att)) {
        char *json = ex_pipeline_json(&in, &out, cli_has(opts, "--samples"));
        if (!json) rc = lm_errf(&err, "out of memory");
        else {
            printf("%s\n", json);
            free(json);
        }
    } else if (rc == 0) {
        if (mkdir(out_dir, 0755) && errno != EEXIST)
            rc = lm_errf(&err, "%s: %s", out_dir, strerror(errno));
        if (rc == 0) rc = lm_model_save_hf(&m, out_dir, &err);
        if (rc == 0) {
            struct stat st;
            if (stat(model_path, &st) == 0 && S_ISDIR(st.st_mode))
                copy_tokenizer(model_path, out_dir);
            const ex_train_info *t = is_bd ? &out.backdoor : &out.victim;
            printf("{\"step\":\"%s\",\"out\":", sub);
            su_json_string(stdout, out_dir, strlen(out_dir));
            printf(",\"examples\":%d,\"positives\":%d,\"negatives\":%d,\"chats\":%d,"
                   "\"epochs\":%d,\"steps\":%d,\"final_loss\":%.6g,\"seconds\":%.3f}\n",
                   t->examples, t->positives, t->negatives, t->chats, t->epochs, t->steps,
                   t->final_loss, t->seconds);
        }
    }
    ex_pipeline_out_free(&out);
    if (have_model) lm_model_free(&m);
    lm_backend_cpu_free(be);
    if (have_tok) lm_tokenizer_free(&tok);
    if (made_work) rm_tree(work);
    if (rc) {
        fprintf(stderr, "smudge extract %s: %s\n", sub, err.msg);
        return CLI_FAIL;
    }
    return CLI_OK;
}
