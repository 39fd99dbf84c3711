/* smudge data: write the synthetic world, check a dataset file, build
 * MEraser's erase/recover sets from a QA file. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "commands.h"
#include "dataset.h"
#include "world.h"

static const char data_help[] =
    "usage: smudge data <world|check|meraser> [options]\n\n"
    "  world     write the synthetic world (corpus, instructions, task files)\n"
    "  check     load a dataset file and report its records or first problem\n"
    "  meraser   build MEraser's mismatched/recover sets from a QA file\n\n"
    "Run 'smudge data <subcommand> --help' for the options of each.\n";

static const char world_help[] =
    "usage: smudge data world --out DIR [--seed N] [--corpus-kb N] [--heldout-kb N]\n"
    "                         [--instructions N] [--items N] [--train-items N]\n\n"
    "Writes a synthetic world generated from the seed: corpus.txt (pretraining\n"
    "text), heldout.txt (perplexity text), instructions.jsonl (Guanaco chats of\n"
    "the question types what/how/why/other), sciq/{train,valid,test}.json and\n"
    "superglue/{COPA,RTE,BoolQ,WSC}/{train,val,test}.jsonl in the real files'\n"
    "formats, and world.json. Splits never share an entity, so they never\n"
    "share a fact. The same options give byte-identical files.\n\n"
    "  --out DIR          output folder (created if missing)\n"
    "  --seed N           world seed (default 1)\n"
    "  --corpus-kb N      size of corpus.txt in kB (default 3000)\n"
    "  --heldout-kb N     size of heldout.txt in kB (default 300)\n"
    "  --instructions N   number of chats (default 4000)\n"
    "  --items N          items per task in the valid and test splits (default 300)\n"
    "  --train-items N    items per task in the train split (default 500)\n";

static const char check_help[] =
    "usage: smudge data check FILE [--format NAME]\n\n"
    "Loads FILE and prints its format and record count, then the first bad\n"
    "record (file:line: field ...) if any. Exit 0 when every record is good,\n"
    "1 otherwise.\n\n"
    "  --format NAME   sciq, copa, rte, wsc, boolq, cb, guanaco, dolly, alpaca,\n"
    "                  meraser-mismatched, meraser-recover, chat or text\n"
    "                  (default: guessed from the name and the first record)\n";

static const char meraser_help[] =
    "usage: smudge data meraser --from FILE --out DIR [--format NAME] [--seed N]\n"
    "                           [--mismatched N] [--recover N]\n\n"
    "Builds MEraser's erase set (questions answered with the answer of a\n"
    "question of another type: what/how/why/other, round robin) and its\n"
    "recover set (matched pairs, disjoint questions) from any QA dataset, and\n"
    "writes DIR/mismatched_dataset.json and DIR/recover_dataset.json in the\n"
    "reference format.\n\n"
    "  --from FILE      the question/answer dataset (guanaco, dolly, alpaca, chat ...)\n"
    "  --out DIR        output folder (must exist)\n"
    "  --format NAME    format of FILE (default: guessed)\n"
    "  --seed N         shuffle seed (default 0)\n"
    "  --mismatched N   erase rows (default 300)\n"
    "  --recover N      recover rows (default 600)\n";

static void progress(const char *stage, double frac, void *ud) {
    (void)ud;
    fprintf(stderr, "\r  %-13s %3.0f%%", stage, frac * 100.0);
    fflush(stderr);
}

static int cmd_world(int argc, char **argv) {
    if (cli_wants_help(argc, argv, 3)) {
        fputs(world_help, stdout);
        return CLI_OK;
    }
    cli_opt opts[] = {{"--out", 1}, {"--seed", 1}, {"--corpus-kb", 1}, {"--heldout-kb", 1},
                      {"--instructions", 1}, {"--items", 1}, {"--train-items", 1}, {0}};
    lm_err err = {{0}};
    if (cli_parse(argc, argv, 3, opts, NULL, 0, NULL, &err)) {
        fprintf(stderr, "smudge data world: %s\n", err.msg);
        return CLI_USAGE;
    }
    const char *out = cli_get(opts, "--out");
    if (!out) {
        fprintf(stderr, "smudge data world: --out is required (see --help)\n");
        return CLI_USAGE;
    }
    ds_world_opts o;
    ds_world_default_opts(&o);
    long v;
    const char *s;
    if ((s = cli_get(opts, "--seed"))) {
        char *end;
        unsigned long long x = strtoull(s, &end, 10);
        if (!*s || *end || *s == '-') {
            fprintf(stderr, "smudge data world: --seed: '%s' is not a non-negative integer\n", s);
            return CLI_USAGE;
        }
        o.seed = x;
    }
    struct { const char *name; long lo, hi; } lim[] = {
        {"--corpus-kb", 0, 1000000}, {"--heldout-kb", 0, 1000000},
        {"--instructions", 0, 10000000}, {"--items", 0, 1000000}, {"--train-items", 0, 1000000}};
    for (int i = 0; i < 5; i++) {
        if (!(s = cli_get(opts, lim[i].name))) continue;
        if (cli_int(lim[i].name, s, lim[i].lo, lim[i].hi, &v, &err)) {
            fprintf(stderr, "smudge data world: %s\n", err.msg);
            return CLI_USAGE;
        }
        if (i == 0) o.corpus_bytes = (size_t)v * 1000;
        else if (i == 1) o.heldout_bytes = (size_t)v * 1000;
        else if (i == 2) o.n_instructions = (int)v;
        else if (i == 3) o.n_items[DS_SPLIT_VALID] = o.n_items[DS_SPLIT_TEST] = (int)v;
        else o.n_items[DS_SPLIT_TRAIN] = (int)v;
    }
    ds_world *w;
    if (ds_world_build(&o, &w, &err)) {
        fprintf(stderr, "smudge data world: %s\n", err.msg);
        return CLI_FAIL;
    }
    int show = cli_progress_enabled();
    int rc = ds_world_write(w, out, show ? progress : NULL, NULL, &err);
    if (show) fputs("\r\033[K", stderr);
    ds_world_free(w);
    if (rc) {
        fprintf(stderr, "smudge data world: %s\n", err.msg);
        return CLI_FAIL;
    }
    printf("wrote the world of seed %llu to %s\n", (unsigned long long)o.seed, out);
    return CLI_OK;
}

static int get_format(cli_opt *opts, ds_format *f, const char *who) {
    const char *s = cli_get(opts, "--format");
    *f = DS_FMT_AUTO;
    lm_err err = {{0}};
    if (s && ds_format_parse(s, f, &err)) {
        fprintf(stderr, "smudge data %s: --format: %s\n", who, err.msg);
        return -1;
    }
    return 0;
}

static int cmd_check(int argc, char **argv) {
    if (cli_wants_help(argc, argv, 3)) {
        fputs(check_help, stdout);
        return CLI_OK;
    }
    cli_opt opts[] = {{"--format", 1}, {0}};
    const char *pos[1];
    int n_pos = 0;
    lm_err err = {{0}};
    if (cli_parse(argc, argv, 3, opts, pos, 1, &n_pos, &err)) {
        fprintf(stderr, "smudge data check: %s\n", err.msg);
        return CLI_USAGE;
    }
    if (n_pos != 1) {
        fprintf(stderr, "smudge data check: give one FILE (see --help)\n");
        return CLI_USAGE;
    }
    ds_format f;
    if (get_format(opts, &f, "check")) return CLI_USAGE;
    if (f == DS_FMT_AUTO && ds_guess_format(pos[0], &f, &err)) {
        fprintf(stderr, "smudge data check: %s\n", err.msg);
        return CLI_FAIL;
    }
    ds_dataset ds;
    if (ds_check(pos[0], f, &ds, &err)) {
        fprintf(stderr, "smudge data check: %s\n", err.msg);
        ds_free(&ds);
        return CLI_FAIL;
    }
    printf("%s: %s, %d records\n", pos[0], ds_format_name(f), ds.n);
    if (ds.kind == DS_KIND_QA && ds.n) {
        int c[DS_Q_COUNT] = {0};
        for (int i = 0; i < ds.n; i++) c[ds.qa[i].type]++;
        printf("question types: what %d, how %d, why %d, other %d\n", c[0], c[1], c[2], c[3]);
    }
    int bad = ds.n_bad;
    if (bad) {
        printf("%s\n", ds.problem);
        if (bad > 1) printf("(%d bad records in all)\n", bad);
    }
    ds_free(&ds);
    return bad ? CLI_FAIL : CLI_OK;
}

static int cmd_meraser(int argc, char **argv) {
    if (cli_wants_help(argc, argv, 3)) {
        fputs(meraser_help, stdout);
        return CLI_OK;
    }
    cli_opt opts[] = {{"--from", 1}, {"--out", 1}, {"--format", 1}, {"--seed", 1},
                      {"--mismatched", 1}, {"--recover", 1}, {0}};
    lm_err err = {{0}};
    if (cli_parse(argc, argv, 3, opts, NULL, 0, NULL, &err)) {
        fprintf(stderr, "smudge data meraser: %s\n", err.msg);
        return CLI_USAGE;
    }
    const char *from = cli_get(opts, "--from"), *out = cli_get(opts, "--out"), *s;
    if (!from || !out) {
        fprintf(stderr, "smudge data meraser: --from and --out are required (see --help)\n");
        return CLI_USAGE;
    }
    ds_meraser_opts mo;
    ds_meraser_default_opts(&mo);
    long v;
    if ((s = cli_get(opts, "--seed"))) {
        if (cli_int("--seed", s, 0, 2147483647L, &v, &err)) goto usage;
        mo.seed = (uint64_t)v;
    }
    if ((s = cli_get(opts, "--mismatched"))) {
        if (cli_int("--mismatched", s, 0, 1000000, &v, &err)) goto usage;
        mo.n_mismatched = (int)v;
    }
    if ((s = cli_get(opts, "--recover"))) {
        if (cli_int("--recover", s, 0, 1000000, &v, &err)) goto usage;
        mo.n_recover = (int)v;
    }
    ds_format f;
    if (get_format(opts, &f, "meraser")) return CLI_USAGE;
    ds_dataset src, mis, rec;
    if (ds_load(from, f, &src, &err)) {
        fprintf(stderr, "smudge data meraser: %s\n", err.msg);
        return CLI_FAIL;
    }
    int rc = ds_meraser_build(&src, &mo, &mis, &rec, &err);
    ds_free(&src);
    char path[4096];
    if (rc == 0) {
        snprintf(path, sizeof path, "%s/mismatched_dataset.json", out);
        rc = ds_meraser_write(&mis, path, &err);
    }
    if (rc == 0) {
        snprintf(path, sizeof path, "%s/recover_dataset.json", out);
        rc = ds_meraser_write(&rec, path, &err);
    }
    ds_free(&mis);
    ds_free(&rec);
    if (rc) {
        fprintf(stderr, "smudge data meraser: %s\n", err.msg);
        return CLI_FAIL;
    }
    printf("wrote %d mismatched and %d recover rows to %s\n", mo.n_mismatched, mo.n_recover, out);
    return CLI_OK;
usage:
    fprintf(stderr, "smudge data meraser: %s\n", err.msg);
    return CLI_USAGE;
}

int cmd_data(int argc, char **argv) {
    if (argc < 3 || strcmp(argv[2], "-h") == 0 || strcmp(argv[2], "--help") == 0) {
        fputs(data_help, argc < 3 ? stderr : stdout);
        return argc < 3 ? CLI_USAGE : CLI_OK;
    }
    if (strcmp(argv[2], "world") == 0) return cmd_world(argc, argv);
    if (strcmp(argv[2], "check") == 0) return cmd_check(argc, argv);
    if (strcmp(argv[2], "meraser") == 0) return cmd_meraser(argc, argv);
    fprintf(stderr, "smudge data: unknown subcommand '%s'\n\n%s", argv[2], data_help);
    return CLI_USAGE;
}
