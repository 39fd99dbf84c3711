/* smudge zoo: build, locate and list the tiny models of the embedded
 * default. */
#include <stdio.h>
#include <string.h>

#include "cli.h"
#include "commands.h"
#include "zoo.h"

static const char zoo_help[] =
    "usage: smudge zoo list [--cache DIR]\n"
    "       smudge zoo build NAME|all [--cache DIR] [--rebuild] [--threads N]\n"
    "       smudge zoo path NAME [--cache DIR]\n\n"
    "The tiny model zoo: small Llama-, GPT-2- and OPT-style models pretrained\n"
    "on the synthetic world and instruction-tuned on its chats, each with its\n"
    "own byte-level BPE tokenizer. Models are Hugging Face folders cached in\n"
    "$XDG_CACHE_HOME/smudge (or ~/.cache/smudge, or --cache DIR), keyed by a\n"
    "hash of the recipe and the code that shapes it: a second build is\n"
    "instant, a changed recipe builds anew.\n\n"
    "  list    every recipe with its size, status and quality (held-out\n"
    "          perplexity, zero-shot SciQ/COPA/BoolQ accuracy on the world's\n"
    "          test split)\n"
    "  build   train NAME (or all), with progress on a terminal\n"
    "  path    print NAME's folder, building it first if needed\n";

static void show(void *ctx, const char *stage, double frac, const char *detail) {
    const char *name = ctx;
    fprintf(stderr, "\r\033[K%s: %-9s %3.0f%%  %s", name, stage, 100.0 * frac,
            detail ? detail : "");
    fflush(stderr);
}

static int build_one(const su_recipe *r, const char *cache, int rebuild, int threads) {
    lm_err err = {{0}};
    su_zoo_progress p = {cli_progress_enabled() ? show : NULL, (void *)r->name};
    int rc = su_zoo_build(r, cache, rebuild, threads, &p, &err);
    if (p.report) fputs("\r\033[K", stderr);
    if (rc) {
        fprintf(stderr, "smudge zoo: %s\n", err.msg);
        return CLI_FAIL;
    }
    su_zoo_quality q;
    char dir[4096];
    if (su_zoo_read_quality(r, cache, &q, &err) || su_zoo_model_dir(r, cache, dir, sizeof dir, &err)) {
        fprintf(stderr, "smudge zoo: %s\n", err.msg);
        return CLI_FAIL;
    }
    printf("{\"name\":\"%s\",\"path\":\"%s\",\"parameters\":%ld,\"heldout_ppl\":%.3f,"
           "\"sciq\":%.3f,\"copa\":%.3f,\"boolq\":%.3f,\"build_seconds\":%.1f}\n",
           r->name, dir, q.params, q.ppl, q.sciq, q.copa, q.boolq, q.build_seconds);
    return CLI_OK;
}

int cmd_zoo(int argc, char **argv) {
    if (argc < 3 || cli_wants_help(argc, argv, 2)) {
        fputs(zoo_help, argc < 3 ? stderr : stdout);
        return argc < 3 ? CLI_USAGE : CLI_OK;
    }
    cli_opt opts[] = {{"--cache", 1}, {"--rebuild", 0}, {"--threads", 1}, {0}};
    const char *pos[2];
    int npos = 0;
    lm_err err = {{0}};
    long threads = 0;
    if (cli_parse(argc, argv, 3, opts, pos, 2, &npos, &err) ||
        (cli_get(opts, "--threads") &&
         cli_int("--threads", cli_get(opts, "--threads"), 1, 1024, &threads, &err))) {
        fprintf(stderr, "smudge zoo: %s\n", err.msg);
        return CLI_USAGE;
    }
    const char *cache = cli_get(opts, "--cache"), *sub = argv[2];
    if (!strcmp(sub, "list")) {
        printf("%-11s %-6s %9s %-9s %9s %6s %6s %6s  %s\n", "name", "family", "params",
               "status", "ppl", "sciq", "copa", "boolq", "description");
        for (int i = 0; i < su_zoo_count(); i++) {
            const su_recipe *r = su_zoo_at(i);
            su_zoo_quality q;
            if (su_zoo_is_built(r, cache) && su_zoo_read_quality(r, cache, &q, &err) == 0)
                printf("%-11s %-6s %9ld %-9s %9.2f %6.3f %6.3f %6.3f  %s\n", r->name,
                       lm_arch_name(r->arch), q.params, "built", q.ppl, q.sciq, q.copa,
                       q.boolq, r->description);
            else
                printf("%-11s %-6s %9s %-9s %9s %6s %6s %6s  %s\n", r->name,
                       lm_arch_name(r->arch), "-", "not built", "-", "-", "-", "-",
                       r->description);
        }
        return CLI_OK;
    }
    if (npos != 1) {
        fprintf(stderr, "smudge zoo %s: name one recipe (see smudge zoo list)\n", sub);
        return CLI_USAGE;
    }
    if (!strcmp(sub, "build") && !strcmp(pos[0], "all")) {
        for (int i = 0; i < su_zoo_count(); i++)
            if (build_one(su_zoo_at(i), cache, cli_has(opts, "--rebuild"), (int)threads))
                return CLI_FAIL;
        return CLI_OK;
    }
    const su_recipe *r = su_zoo_find(pos[0]);
    if (!r) {
        fprintf(stderr, "smudge zoo: no recipe named '%s' (see smudge zoo list)\n", pos[0]);
        return CLI_USAGE;
    }
    if (!strcmp(sub, "build")) return build_one(r, cache, cli_has(opts, "--rebuild"), (int)threads);
    if (!strcmp(sub, "path")) {
        su_zoo_progress p = {cli_progress_enabled() ? show : NULL, (void *)r->name};
        if (su_zoo_build(r, cache, 0, (int)threads, &p, &err)) {
            if (p.report) fputs("\r\033[K", stderr);
            fprintf(stderr, "smudge zoo: %s\n", err.msg);
            return CLI_FAIL;
        }
        if (p.report) fputs("\r\033[K", stderr);
        char dir[4096];
        if (su_zoo_model_dir(r, cache, dir, sizeof dir, &err)) {
            fprintf(stderr, "smudge zoo: %s\n", err.msg);
            return CLI_FAIL;
        }
        printf("%s\n", dir);
        return CLI_OK;
    }
    fprintf(stderr, "smudge zoo: unknown subcommand '%s' (list, build, path)\n", sub);
    return CLI_USAGE;
}
