/* smudge eval: one model, a list of metrics, one JSON object. */
#include <stdio.h>
#include <string.h>

#include "cli.h"
#include "commands.h"
#include "evaluate.h"
#include "model_io.h"

static const char eval_help[] =
    "usage: smudge eval --model PATH|ZOO-NAME --metrics fsr,ftr,ppl,sciq,copa,rte,boolq,wsc\n"
    "                   [--fingerprint FILE] [--data NAME=FILE ...] [--policy DIR]\n"
    "                   [--tokenizer FILE] [--max-items N] [--cache DIR] [--threads N]\n\n"
    "Prints one JSON object: for each metric its value and n, the number of\n"
    "items it is over. FSR, FTR and accuracies are fractions in [0, 1]; tasks\n"
    "also report acc_norm. Without --data the tasks come from the embedded\n"
    "world's test split (and perplexity from its held-out text); with\n"
    "--data NAME=FILE from real files, e.g.\n"
    "  --data copa=../shared/assets/data/superglue/COPA/val.jsonl\n"
    "NAME is ppl, sciq, copa, rte, boolq or wsc; the format is recognised\n"
    "from the file. fsr/ftr need --fingerprint (the implanter's\n"
    "fingerprint.json). --policy applies a decoding policy written by an\n"
    "inference-time removal method (CleanGen, token forcing).\n";

int cmd_eval(int argc, char **argv) {
    if (cli_wants_help(argc, argv, 2)) {
        fputs(eval_help, stdout);
        return CLI_OK;
    }
    su_eval_opts o = {0};
    lm_err err = {{0}};
    long threads = 0, max_items = 0;
    /* --data may repeat: collect it by hand before the generic parser. */
    char *rest[256];
    int nrest = 0;
    for (int i = 0; i < argc && nrest < 256; i++) {
        if (i >= 2 && !strcmp(argv[i], "--data") && i + 1 < argc) {
            char *eq = strchr(argv[i + 1], '=');
            if (!eq || eq == argv[i + 1] || o.n_data == SU_EVAL_MAX_DATA) {
                fprintf(stderr, "smudge eval: --data takes NAME=FILE\n");
                return CLI_USAGE;
            }
            *eq = '\0';
            o.data_name[o.n_data] = argv[i + 1];
            o.data_path[o.n_data++] = eq + 1;
            i++;
            continue;
        }
        rest[nrest++] = argv[i];
    }
    cli_opt opts[] = {{"--model", 1}, {"--metrics", 1}, {"--fingerprint", 1}, {"--policy", 1},
                      {"--tokenizer", 1}, {"--max-items", 1}, {"--cache", 1}, {"--threads", 1},
                      {"--world", 1}, {0}};
    if (cli_parse(nrest, rest, 2, opts, NULL, 0, NULL, &err) ||
        (cli_get(opts, "--threads") && cli_int("--threads", cli_get(opts, "--threads"), 1, 1024, &threads, &err)) ||
        (cli_get(opts, "--max-items") && cli_int("--max-items", cli_get(opts, "--max-items"), 1, 1 << 30, &max_items, &err))) {
        fprintf(stderr, "smudge eval: %s\n", err.msg);
        return CLI_USAGE;
    }
    const char *model = cli_get(opts, "--model");
    o.metrics = cli_get(opts, "--metrics");
    if (!model || !o.metrics) {
        fprintf(stderr, "smudge eval: --model and --metrics are required (see --help)\n");
        return CLI_USAGE;
    }
    o.fingerprint = cli_get(opts, "--fingerprint");
    o.policy_dir = cli_get(opts, "--policy");
    o.tokenizer = cli_get(opts, "--tokenizer");
    o.cache_dir = cli_get(opts, "--cache");
    o.world_dir = cli_get(opts, "--world");
    o.threads = (int)threads;
    o.max_items = (int)max_items;
    su_eval_result r;
    if (su_evaluate(model, &o, &r, &err)) {
        fprintf(stderr, "smudge eval: %s\n", err.msg);
        return CLI_FAIL;
    }
    printf("{\"model\":");
    su_json_string(stdout, model, strlen(model));
    for (int i = 0; i < r.n; i++) {
        printf(",\"%s\":{\"value\":%.6g,\"n\":%ld,\"data\":", r.v[i].name, r.v[i].value, r.v[i].n);
        su_json_string(stdout, r.source[i], strlen(r.source[i]));
        printf("}");
    }
    if (r.n_triggers) {
        printf(",\"fsr_per_trigger\":[");
        for (int i = 0; i < r.n_triggers; i++) printf("%s%d", i ? "," : "", (int)r.trigger_hits[i]);
        printf("]");
    }
    printf("}\n");
    su_eval_result_free(&r);
    return CLI_OK;
}
