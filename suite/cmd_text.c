/* Commands that read and write text: tokenize and generate. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "commands.h"
#include "generate.h"
#include "model_io.h"

static const char tokenize_help[] =
    "usage: smudge tokenize --tokenizer FILE --text STR [--no-bos]\n\n"
    "Prints {\"ids\":[...]}. FILE is a tokenizer.json (or its folder), a llama2.c\n"
    "tokenizer.bin or a .gguf file. BOS is added as the tokenizer's\n"
    "configuration says, unless --no-bos.\n";

int cmd_tokenize(int argc, char **argv) {
    if (cli_wants_help(argc, argv, 2)) {
        fputs(tokenize_help, stdout);
        return CLI_OK;
    }
    cli_opt opts[] = {{"--tokenizer", 1}, {"--text", 1}, {"--no-bos", 0}, {0}};
    lm_err err = {{0}};
    if (cli_parse(argc, argv, 2, opts, NULL, 0, NULL, &err)) {
        fprintf(stderr, "smudge tokenize: %s\n", err.msg);
        return CLI_USAGE;
    }
    const char *tp = cli_get(opts, "--tokenizer"), *text = cli_get(opts, "--text");
    if (!tp || !text) {
        fprintf(stderr, "smudge tokenize: --tokenizer and --text are required (see --help)\n");
        return CLI_USAGE;
    }
    lm_tokenizer t;
    if (lm_tokenizer_load(&t, tp, &err)) {
        fprintf(stderr, "smudge tokenize: %s\n", err.msg);
        return CLI_FAIL;
    }
    int *ids = NULL, n = 0;
    int rc = lm_tokenizer_encode(&t, text, strlen(text),
                                 cli_has(opts, "--no-bos") ? 0 : LM_TOK_DEFAULT, &ids, &n, &err);
    if (rc == 0) {
        printf("{\"ids\":[");
        for (int i = 0; i < n; i++) printf("%s%d", i ? "," : "", ids[i]);
        printf("]}\n");
    } else {
        fprintf(stderr, "smudge tokenize: %s\n", err.msg);
    }
    free(ids);
    lm_tokenizer_free(&t);
    return rc ? CLI_FAIL : CLI_OK;
}

static const char generate_help[] =
    "usage: smudge generate --model PATH [--tokenizer FILE] --prompt STR\n"
    "                       [--max-tokens N] [--temperature T] [--top-k K]\n"
    "                       [--top-p P] [--seed S] [--threads N]\n\n"
    "Prints the prompt's continuation. Temperature 0 (the default) is greedy.\n"
    "Generation stops at EOS (and, for llama2.c checkpoints, at BOS, which\n"
    "starts a new story there) or after N new tokens (default 128). The prompt\n"
    "is encoded with BOS as the tokenizer's configuration says; the empty\n"
    "prompt starts from BOS, as llama2.c does.\n\n"
    "  --model PATH      HF folder, llama2.c .bin or .gguf\n"
    "  --tokenizer FILE  needed for a llama2.c .bin (its tokenizer.bin)\n";

int cmd_generate(int argc, char **argv) {
    if (cli_wants_help(argc, argv, 2)) {
        fputs(generate_help, stdout);
        return CLI_OK;
    }
    cli_opt opts[] = {{"--model", 1}, {"--tokenizer", 1}, {"--prompt", 1},
                      {"--max-tokens", 1}, {"--temperature", 1}, {"--top-k", 1},
                      {"--top-p", 1}, {"--seed", 1}, {"--threads", 1}, {0}};
    lm_err err = {{0}};
    long max_new = 128, top_k = 0, seed = 0, threads = 0;
    double temp = 0.0, top_p = 1.0;
    if (cli_parse(argc, argv, 2, opts, NULL, 0, NULL, &err) ||
        (cli_get(opts, "--max-tokens") && cli_int("--max-tokens", cli_get(opts, "--max-tokens"), 1, 1 << 24, &max_new, &err)) ||
        (cli_get(opts, "--top-k") && cli_int("--top-k", cli_get(opts, "--top-k"), 0, 1 << 24, &top_k, &err)) ||
        (cli_get(opts, "--seed") && cli_int("--seed", cli_get(opts, "--seed"), 0, 0x7fffffffL, &seed, &err)) ||
        (cli_get(opts, "--threads") && cli_int("--threads", cli_get(opts, "--threads"), 1, 1024, &threads, &err)) ||
        (cli_get(opts, "--temperature") && cli_float("--temperature", cli_get(opts, "--temperature"), &temp, &err)) ||
        (cli_get(opts, "--top-p") && cli_float("--top-p", cli_get(opts, "--top-p"), &top_p, &err))) {
        fprintf(stderr, "smudge generate: %s\n", err.msg);
        return CLI_USAGE;
    }
    const char *path = cli_get(opts, "--model"), *prompt = cli_get(opts, "--prompt");
    if (!path || !prompt) {
        fprintf(stderr, "smudge generate: --model and --prompt are required (see --help)\n");
        return CLI_USAGE;
    }
    if (temp < 0.0 || !(top_p > 0.0 && top_p <= 1.0)) {
        fprintf(stderr, "smudge generate: --temperature must be >= 0 and --top-p in (0, 1]\n");
        return CLI_USAGE;
    }
    lm_model m;
    lm_backend *be = NULL;
    lm_tokenizer t;
    if (su_load_tokenizer(path, cli_get(opts, "--tokenizer"), &t, &err)) {
        fprintf(stderr, "smudge generate: %s\n", err.msg);
        return CLI_FAIL;
    }
    if (su_load_model(path, (int)threads, &m, &be, &err)) {
        fprintf(stderr, "smudge generate: %s\n", err.msg);
        lm_tokenizer_free(&t);
        return CLI_FAIL;
    }
    int rc = su_check_vocab(&m, &t, &err);
    int *ids = NULL, n = 0;
    if (rc == 0) rc = lm_tokenizer_encode(&t, prompt, strlen(prompt), LM_TOK_DEFAULT, &ids, &n, &err);
    if (rc == 0 && n == 0) {
        /* The empty prompt starts from BOS. */
        free(ids);
        ids = malloc(sizeof *ids);
        if (!ids || t.bos_id < 0)
            rc = lm_errf(&err, "the prompt is empty and the tokenizer has no BOS token");
        else
            ids[n++] = t.bos_id;
    }
    int32_t *out = NULL;
    int nout = 0;
    if (rc == 0) {
        lm_gen_opts go = {.max_new = (int)max_new, .eos_id = t.eos_id,
                          .stop_at_eos = 1};
        /* llama2.c's run.c ends a story at BOS: so do we, for any model
         * whose tokenizer has one, since BOS never occurs mid-text. */
        if (t.bos_id >= 0) go.extra_stop[go.n_extra_stop++] = t.bos_id;
        lm_sampler_init(&go.sampler, (float)temp, (int)top_k, (float)top_p, (uint64_t)seed);
        const int32_t *prompts[1] = {(const int32_t *)ids};
        rc = lm_generate(&m, prompts, &n, 1, &go, &out, &nout, &err);
    }
    if (rc == 0) {
        /* Stream-decode as llama2.c does: the prompt's text, then each new
         * token's, so the dummy space after BOS is dropped the same way. */
        int prev = -1;
        for (int i = 0; i < n; i++) {
            size_t len;
            const char *s = lm_tokenizer_token_text(&t, prev, ids[i], &len);
            if (s && !(i == 0 && ids[i] == t.bos_id)) fwrite(s, 1, len, stdout);
            prev = ids[i];
        }
        for (int i = 0; i < nout; i++) {
            size_t len;
            const char *s = lm_tokenizer_token_text(&t, prev, out[i], &len);
            if (s) fwrite(s, 1, len, stdout);
            prev = out[i];
        }
        fputc('\n', stdout);
    } else {
        fprintf(stderr, "smudge generate: %s\n", err.msg);
    }
    free(out);
    free(ids);
    lm_model_free(&m);
    lm_backend_cpu_free(be);
    lm_tokenizer_free(&t);
    return rc ? CLI_FAIL : CLI_OK;
}
