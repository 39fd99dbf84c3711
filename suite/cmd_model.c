/* Commands that load one model: score, inspect, convert. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "backend.h"
#include "cli.h"
#include "commands.h"
#include "model.h"
#include "model_io.h"

/* Loads PATH and attaches a CPU backend with the requested threads. */
static int load_model(lm_model *m, lm_backend **be, const char *path,
                      const char *threads, lm_err *err) {
    long nt = 0;
    if (threads && cli_int("--threads", threads, 1, 1024, &nt, err)) return -1;
    if (lm_model_load(m, path, err)) return -1;
    *be = lm_backend_cpu_new((int)nt);
    if (!*be) {
        lm_model_free(m);
        return lm_errf(err, "out of memory creating the CPU backend");
    }
    m->be = *be;
    return 0;
}

static const char score_help[] =
    "usage: smudge score --model PATH (--ids 1,2,3 | --text STR) [--tokenizer FILE]\n"
    "                    [--threads N]\n\n"
    "Prints {\"ids\":[...],\"logprobs\":[...]} where logprobs[k] = ln P(ids[k+1] |\n"
    "ids[0..k]). --ids are scored as given (nothing is added, no BOS); --text is\n"
    "encoded by the model's tokenizer, with BOS as its configuration says.\n\n"
    "  --model PATH   a Hugging Face folder (config.json + safetensors), a\n"
    "                 llama2.c .bin checkpoint or a .gguf file\n"
    "  --ids LIST     comma-separated token ids (at least 1)\n"
    "  --text STR     text to encode with the model's tokenizer\n"
    "  --tokenizer F  the tokenizer, for a llama2.c .bin (its tokenizer.bin)\n"
    "  --threads N    worker threads (default: all cores)\n";

int cmd_score(int argc, char **argv) {
    if (cli_wants_help(argc, argv, 2)) {
        fputs(score_help, stdout);
        return CLI_OK;
    }
    cli_opt opts[] = {{"--model", 1}, {"--ids", 1}, {"--text", 1}, {"--tokenizer", 1},
                      {"--threads", 1}, {0}};
    lm_err err = {{0}};
    if (cli_parse(argc, argv, 2, opts, NULL, 0, NULL, &err)) {
        fprintf(stderr, "smudge score: %s\n", err.msg);
        return CLI_USAGE;
    }
    const char *path = cli_get(opts, "--model"), *ids_s = cli_get(opts, "--ids"),
               *text = cli_get(opts, "--text");
    if (!path || (!ids_s == !text)) {
        fprintf(stderr, "smudge score: --model and one of --ids or --text are required (see --help)\n");
        return CLI_USAGE;
    }
    int32_t *ids = NULL;
    int n = 0;
    if (ids_s && (cli_int_list("--ids", ids_s, &ids, &n, &err) || n < 1)) {
        fprintf(stderr, "smudge score: %s\n", n < 1 && !err.msg[0] ? "--ids is empty" : err.msg);
        free(ids);
        return CLI_USAGE;
    }
    if (text) {
        lm_tokenizer t;
        int *tids = NULL;
        if (su_load_tokenizer(path, cli_get(opts, "--tokenizer"), &t, &err) ||
            (lm_tokenizer_encode(&t, text, strlen(text), LM_TOK_DEFAULT, &tids, &n, &err) &&
             (lm_tokenizer_free(&t), 1))) {
            fprintf(stderr, "smudge score: %s\n", err.msg);
            return CLI_FAIL;
        }
        lm_tokenizer_free(&t);
        ids = (int32_t *)tids;
        if (n < 1) {
            fprintf(stderr, "smudge score: the text encodes to no tokens\n");
            free(ids);
            return CLI_USAGE;
        }
    }
    lm_model m;
    lm_backend *be = NULL;
    if (load_model(&m, &be, path, cli_get(opts, "--threads"), &err)) {
        fprintf(stderr, "smudge score: %s\n", err.msg);
        free(ids);
        return CLI_FAIL;
    }
    float *lp = calloc((size_t)n, sizeof *lp);
    int rc = lp ? lm_score_ids(&m, ids, n, lp, &err) : lm_errf(&err, "out of memory");
    if (rc == 0) {
        printf("{\"ids\":[");
        for (int i = 0; i < n; i++) printf("%s%d", i ? "," : "", ids[i]);
        printf("],\"logprobs\":[");
        for (int i = 0; i + 1 < n; i++) printf("%s%.9g", i ? "," : "", (double)lp[i]);
        printf("]}\n");
    } else {
        fprintf(stderr, "smudge score: %s\n", err.msg);
    }
    free(lp);
    free(ids);
    lm_model_free(&m);
    lm_backend_cpu_free(be);
    return rc == 0 ? CLI_OK : CLI_FAIL;
}

static const char inspect_help[] =
    "usage: smudge inspect --model PATH [--tensors]\n\n"
    "Prints the architecture, hyperparameters, parameter count and the dtypes\n"
    "the weights were stored in, as one JSON object.\n\n"
    "  --model PATH   a Hugging Face folder, a llama2.c .bin or a .gguf file\n"
    "  --tensors      also list every tensor with its shape and stored dtype\n";

int cmd_inspect(int argc, char **argv) {
    if (cli_wants_help(argc, argv, 2)) {
        fputs(inspect_help, stdout);
        return CLI_OK;
    }
    cli_opt opts[] = {{"--model", 1}, {"--tensors", 0}, {0}};
    lm_err err = {{0}};
    if (cli_parse(argc, argv, 2, opts, NULL, 0, NULL, &err)) {
        fprintf(stderr, "smudge inspect: %s\n", err.msg);
        return CLI_USAGE;
    }
    const char *path = cli_get(opts, "--model");
    if (!path) {
        fprintf(stderr, "smudge inspect: --model is required (see --help)\n");
        return CLI_USAGE;
    }
    lm_model m;
    if (lm_model_load(&m, path, &err)) {
        fprintf(stderr, "smudge inspect: %s\n", err.msg);
        return CLI_FAIL;
    }
    const lm_config *c = &m.cfg;
    /* Distinct stored dtypes with the parameter count in each. */
    const char *names[8];
    size_t counts[8];
    int nd = 0;
    for (int i = 0; i < m.n_params; i++) {
        const char *d = m.params[i].stored[0] ? m.params[i].stored : "F32";
        int j = 0;
        while (j < nd && strcmp(names[j], d) != 0) j++;
        if (j == nd && nd < 8) { names[nd] = d; counts[nd++] = 0; }
        if (j < 8) counts[j] += m.params[i].numel;
    }
    printf("{\"architecture\":\"%s\",\"vocab_size\":%d,\"d_model\":%d,"
           "\"n_layers\":%d,\"n_heads\":%d,\"n_kv_heads\":%d,\"head_dim\":%d,"
           "\"ffn_dim\":%d,\"max_position_embeddings\":%d,\"norm_eps\":%g,"
           "\"rope_theta\":%g,\"sliding_window\":%d,\"tie_word_embeddings\":%s,"
           "\"bos_token_id\":%d,\"eos_token_id\":%d,\"parameters\":%zu,"
           "\"stored_dtypes\":{",
           lm_arch_name(c->arch), c->vocab_size, c->d_model, c->n_layers,
           c->n_heads, c->n_kv_heads, c->head_dim, c->ffn_dim, c->max_pos,
           (double)c->norm_eps, (double)c->rope_theta, c->sliding_window,
           c->tie_embeddings ? "true" : "false", c->bos_id, c->eos_id,
           lm_model_param_count(&m));
    for (int j = 0; j < nd; j++)
        printf("%s\"%s\":%zu", j ? "," : "", names[j], counts[j]);
    printf("}");
    if (cli_has(opts, "--tensors")) {
        printf(",\"tensors\":[");
        for (int i = 0; i < m.n_params; i++) {
            const lm_tensor *t = &m.params[i];
            printf("%s{\"name\":\"%s\",\"shape\":[%d", i ? "," : "", t->name, t->shape[0]);
            if (t->ndim == 2) printf(",%d", t->shape[1]);
            printf("],\"stored\":\"%s\"}", t->stored[0] ? t->stored : "F32");
        }
        printf("]");
    }
    printf("}\n");
    lm_model_free(&m);
    return CLI_OK;
}

static const char convert_help[] =
    "usage: smudge convert --model PATH --out DIR\n\n"
    "Loads any supported checkpoint (HF folder, llama2.c .bin, .gguf) and\n"
    "saves it as a Hugging Face folder: model.safetensors (F32) + config.json\n"
    "+ generation_config.json, loadable by the transformers library.\n";

int cmd_convert(int argc, char **argv) {
    if (cli_wants_help(argc, argv, 2)) {
        fputs(convert_help, stdout);
        return CLI_OK;
    }
    cli_opt opts[] = {{"--model", 1}, {"--out", 1}, {0}};
    lm_err err = {{0}};
    if (cli_parse(argc, argv, 2, opts, NULL, 0, NULL, &err)) {
        fprintf(stderr, "smudge convert: %s\n", err.msg);
        return CLI_USAGE;
    }
    const char *path = cli_get(opts, "--model"), *out = cli_get(opts, "--out");
    if (!path || !out) {
        fprintf(stderr, "smudge convert: --model and --out are required (see --help)\n");
        return CLI_USAGE;
    }
    lm_model m;
    if (lm_model_load(&m, path, &err)) {
        fprintf(stderr, "smudge convert: %s\n", err.msg);
        return CLI_FAIL;
    }
    int rc = lm_model_save_hf(&m, out, &err);
    if (rc) fprintf(stderr, "smudge convert: %s\n", err.msg);
    lm_model_free(&m);
    return rc ? CLI_FAIL : CLI_OK;
}
