/* smudge bench: throughput of the runtime on a given model shape, printed
 * as one JSON object so bench/ scripts can set it beside the PyTorch peer.
 * A benchmark prints figures; it never fails on a timing. */
#include <cblas.h>
#include <omp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "backend.h"
#include "cli.h"
#include "generate.h"
#include "optim.h"
#include "commands.h"
#include "model.h"
#include "rng.h"
#include "run.h"

static double now_seconds(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static const char bench_help[] =
    "usage: smudge bench forward --arch llama|mistral|gpt2|opt --vocab V\n"
    "                    --d-model D --layers L --heads H [--kv-heads K]\n"
    "                    --ffn F --seq T --batch B [--steps S] [--threads N]\n"
    "       smudge bench train <same shape flags>\n"
    "       smudge bench generate <same shape flags> [--new-tokens N]\n"
    "       smudge bench sgemm --m M --n N --k K [--steps S] [--threads N]\n"
    "       [mpirun -np N] smudge bench dispatch [--units N] [--store F.h5]\n\n"
    "forward: times S forward passes (after one warm-up) of a randomly\n"
    "initialised model of that shape on B x T tokens and prints\n"
    "{\"tokens_per_s\":..,\"gflops\":..,...}. FLOPs count every matmul (2 per\n"
    "multiply-add, head included) plus causal attention's QK^T and AV\n"
    "(2*B*H*T*T*D per layer): the same count bench/peer_torch.py uses.\n"
    "train: S full training steps (forward, cross-entropy, backward, AdamW)\n"
    "on random tokens; gflops counts 3x the forward.\n"
    "generate: greedy KV-cache decoding at batch 1 of N new tokens (default\n"
    "128) after an 8-token prompt; prints tokens_per_s.\n"
    "sgemm: the cblas_sgemm ceiling for an M x K times K x N product.\n"
    "dispatch: units/s of the grid runner on trivial debug units (see\n"
    "smudge bench dispatch --help).\n";

typedef struct shape_opts {
    lm_config cfg;
    int B, T, steps, threads, new_tokens;
} shape_opts;

static int parse_shape(int argc, char **argv, shape_opts *s, lm_err *err) {
    cli_opt opts[] = {{"--arch", 1},  {"--vocab", 1},   {"--d-model", 1},
                      {"--layers", 1}, {"--heads", 1},  {"--kv-heads", 1},
                      {"--ffn", 1},   {"--seq", 1},     {"--batch", 1},
                      {"--steps", 1}, {"--threads", 1}, {"--new-tokens", 1},
                      {0}};
    if (cli_parse(argc, argv, 3, opts, NULL, 0, NULL, err)) return -1;
    const char *req[] = {"--arch", "--vocab", "--d-model", "--layers",
                         "--heads", "--ffn", "--seq", "--batch"};
    for (size_t i = 0; i < sizeof req / sizeof req[0]; i++)
        if (!cli_get(opts, req[i]))
            return lm_errf(err, "%s is required (see --help)", req[i]);
    lm_arch arch;
    if (lm_arch_from_name(cli_get(opts, "--arch"), &arch))
        return lm_errf(err, "--arch: '%s' is not llama, mistral, gpt2 or opt",
                       cli_get(opts, "--arch"));
    long v, d, l, h, kv = 0, f, t, b, st = 10, th = 0;
    if (cli_int("--vocab", cli_get(opts, "--vocab"), 1, 1 << 24, &v, err) ||
        cli_int("--d-model", cli_get(opts, "--d-model"), 1, 65536, &d, err) ||
        cli_int("--layers", cli_get(opts, "--layers"), 1, 4096, &l, err) ||
        cli_int("--heads", cli_get(opts, "--heads"), 1, 4096, &h, err) ||
        cli_int("--ffn", cli_get(opts, "--ffn"), 1, 1 << 20, &f, err) ||
        cli_int("--seq", cli_get(opts, "--seq"), 1, 1 << 20, &t, err) ||
        cli_int("--batch", cli_get(opts, "--batch"), 1, 1 << 20, &b, err))
        return -1;
    if (cli_get(opts, "--kv-heads") &&
        cli_int("--kv-heads", cli_get(opts, "--kv-heads"), 1, 4096, &kv, err))
        return -1;
    if (cli_get(opts, "--steps") &&
        cli_int("--steps", cli_get(opts, "--steps"), 1, 1000000, &st, err))
        return -1;
    if (cli_get(opts, "--threads") &&
        cli_int("--threads", cli_get(opts, "--threads"), 1, 1024, &th, err))
        return -1;
    long nt = 128;
    if (cli_get(opts, "--new-tokens") &&
        cli_int("--new-tokens", cli_get(opts, "--new-tokens"), 1, 1 << 20, &nt,
                err))
        return -1;
    s->new_tokens = (int)nt;
    /* The context must hold the prompt and everything generated. */
    long ctx = t > 8 + nt ? t : 8 + nt;
    lm_config_default(&s->cfg, arch, (int)v, (int)d, (int)l, (int)h, (int)kv,
                      (int)f, (int)ctx);
    s->B = (int)b;
    s->T = (int)t;
    s->steps = (int)st;
    s->threads = (int)th;
    return lm_config_validate(&s->cfg, err);
}

/* Forward FLOPs for B x T tokens, the count shared with the PyTorch peer. */
static double forward_flops(const lm_config *c, int B, int T) {
    double N = (double)B * T, C = c->d_model, HD = (double)c->n_heads * c->head_dim,
           KD = (double)c->n_kv_heads * c->head_dim, F = c->ffn_dim;
    double per_layer = 2 * N * C * (HD + 2 * KD) + 2 * N * HD * C +
                       2 * N * C * F * (c->arch == LM_ARCH_LLAMA ||
                                                c->arch == LM_ARCH_MISTRAL
                                            ? 3
                                            : 2) +
                       2.0 * 2.0 * B * c->n_heads * (double)T * T * c->head_dim / 2.0;
    return c->n_layers * per_layer + 2 * N * C * c->vocab_size;
}

static int bench_forward(int argc, char **argv) {
    lm_err err = {{0}};
    shape_opts s;
    if (parse_shape(argc, argv, &s, &err)) {
        fprintf(stderr, "smudge bench forward: %s\n", err.msg);
        return CLI_USAGE;
    }
    lm_backend *be = lm_backend_cpu_new(s.threads);
    lm_model m;
    lm_acts a;
    int32_t *ids = malloc((size_t)s.B * s.T * sizeof *ids);
    if (!be || !ids || lm_model_init(&m, &s.cfg, &err) || lm_model_alloc(&m, &err)) {
        fprintf(stderr, "smudge bench forward: %s\n", err.msg[0] ? err.msg : "out of memory");
        free(ids);
        return CLI_FAIL;
    }
    m.be = be;
    lm_model_init_random(&m, 1234, 0.02f);
    if (lm_acts_build(&a, &m, s.B, s.T, 0, &err)) {
        fprintf(stderr, "smudge bench forward: %s\n", err.msg);
        return CLI_FAIL;
    }
    lm_rng rng;
    lm_rng_seed(&rng, 7);
    for (int i = 0; i < s.B * s.T; i++)
        ids[i] = (int32_t)lm_rng_below(&rng, (uint64_t)s.cfg.vocab_size);
    int rc = lm_forward(&m, &a, ids, NULL, s.B, s.T, &err); /* warm-up */
    double t0 = now_seconds();
    for (int i = 0; i < s.steps && rc == 0; i++)
        rc = lm_forward(&m, &a, ids, NULL, s.B, s.T, &err);
    double dt = now_seconds() - t0;
    if (rc) {
        fprintf(stderr, "smudge bench forward: %s\n", err.msg);
    } else {
        double tokens = (double)s.B * s.T * s.steps;
        printf("{\"bench\":\"forward\",\"impl\":\"smudge\",\"arch\":\"%s\","
               "\"params\":%zu,\"batch\":%d,\"seq\":%d,\"steps\":%d,"
               "\"threads\":%d,\"seconds\":%.6f,\"tokens_per_s\":%.1f,"
               "\"gflops\":%.2f}\n",
               lm_arch_name(s.cfg.arch), lm_model_param_count(&m), s.B, s.T,
               s.steps, omp_get_max_threads(), dt, tokens / dt,
               forward_flops(&s.cfg, s.B, s.T) * s.steps / dt * 1e-9);
    }
    lm_acts_free(&a);
    lm_model_free(&m);
    lm_backend_cpu_free(be);
    free(ids);
    return rc ? CLI_FAIL : CLI_OK;
}

static int bench_train(int argc, char **argv) {
    lm_err err = {{0}};
    shape_opts s;
    if (parse_shape(argc, argv, &s, &err)) {
        fprintf(stderr, "smudge bench train: %s\n", err.msg);
        return CLI_USAGE;
    }
    lm_backend *be = lm_backend_cpu_new(s.threads);
    lm_model m;
    lm_acts a;
    lm_param_list pl = {0};
    lm_adamw opt = {0};
    size_t N = (size_t)s.B * s.T;
    int32_t *ids = malloc(N * sizeof *ids), *tg = malloc(N * sizeof *tg);
    if (!be || !ids || !tg || lm_model_init(&m, &s.cfg, &err) || lm_model_alloc(&m, &err) ||
        lm_model_alloc_grads(&m, &err) || lm_acts_build(&a, &m, s.B, s.T, 1, &err) ||
        lm_params_add_model(&pl, &m, 0, &err) ||
        lm_adamw_init(&opt, &pl, 0.9, 0.999, 1e-8, 0.0, &err)) {
        fprintf(stderr, "smudge bench train: %s\n", err.msg[0] ? err.msg : "out of memory");
        return CLI_FAIL;
    }
    m.be = be;
    lm_model_init_random(&m, 1234, 0.02f);
    lm_rng rng;
    lm_rng_seed(&rng, 7);
    for (size_t i = 0; i < N; i++) {
        ids[i] = (int32_t)lm_rng_below(&rng, (uint64_t)s.cfg.vocab_size);
        tg[i] = (int32_t)lm_rng_below(&rng, (uint64_t)s.cfg.vocab_size);
    }
    int rc = 0;
    double t0 = 0.0;
    for (int i = 0; i <= s.steps && rc == 0; i++) {
        if (i == 1) t0 = now_seconds(); /* step 0 warms up */
        lm_params_zero_grad(&pl);
        rc = lm_forward(&m, &a, ids, NULL, s.B, s.T, &err);
        if (rc == 0) lm_loss(&m, &a, tg, NULL, NULL);
        if (rc == 0) rc = lm_backward(&m, &a, ids, tg, NULL, &err);
        if (rc == 0) lm_adamw_step(&opt, &pl, 1e-4);
    }
    double dt = now_seconds() - t0;
    if (rc) {
        fprintf(stderr, "smudge bench train: %s\n", err.msg);
    } else {
        double tokens = (double)N * s.steps;
        printf("{\"bench\":\"train\",\"impl\":\"smudge\",\"arch\":\"%s\","
               "\"params\":%zu,\"batch\":%d,\"seq\":%d,\"steps\":%d,"
               "\"threads\":%d,\"seconds\":%.6f,\"tokens_per_s\":%.1f,"
               "\"gflops\":%.2f}\n",
               lm_arch_name(s.cfg.arch), lm_model_param_count(&m), s.B, s.T,
               s.steps, omp_get_max_threads(), dt, tokens / dt,
               3.0 * forward_flops(&s.cfg, s.B, s.T) * s.steps / dt * 1e-9);
    }
    lm_adamw_free(&opt);
    lm_params_free(&pl);
    lm_acts_free(&a);
    lm_model_free(&m);
    lm_backend_cpu_free(be);
    free(ids);
    free(tg);
    return rc ? CLI_FAIL : CLI_OK;
}

static int bench_generate(int argc, char **argv) {
    lm_err err = {{0}};
    shape_opts s;
    if (parse_shape(argc, argv, &s, &err)) {
        fprintf(stderr, "smudge bench generate: %s\n", err.msg);
        return CLI_USAGE;
    }
    lm_backend *be = lm_backend_cpu_new(s.threads);
    lm_model m;
    if (!be || lm_model_init(&m, &s.cfg, &err) || lm_model_alloc(&m, &err)) {
        fprintf(stderr, "smudge bench generate: %s\n", err.msg[0] ? err.msg : "out of memory");
        return CLI_FAIL;
    }
    m.be = be;
    lm_model_init_random(&m, 1234, 0.02f);
    int32_t prompt[8];
    lm_rng rng;
    lm_rng_seed(&rng, 7);
    for (int i = 0; i < 8; i++)
        prompt[i] = (int32_t)lm_rng_below(&rng, (uint64_t)s.cfg.vocab_size);
    const int32_t *prompts[1] = {prompt};
    int plen[1] = {8}, nout[1];
    int32_t *out[1];
    lm_gen_opts o = {.max_new = 4, .eos_id = -1, .stop_at_eos = 0};
    lm_sampler_init(&o.sampler, 0.0f, 0, 1.0f, 0);
    int rc = lm_generate(&m, prompts, plen, 1, &o, out, nout, &err); /* warm-up */
    if (rc == 0) free(out[0]);
    o.max_new = s.new_tokens;
    double t0 = now_seconds();
    if (rc == 0) rc = lm_generate(&m, prompts, plen, 1, &o, out, nout, &err);
    double dt = now_seconds() - t0;
    if (rc) {
        fprintf(stderr, "smudge bench generate: %s\n", err.msg);
    } else {
        printf("{\"bench\":\"generate\",\"impl\":\"smudge\",\"arch\":\"%s\","
               "\"params\":%zu,\"batch\":1,\"new_tokens\":%d,\"threads\":%d,"
               "\"seconds\":%.6f,\"tokens_per_s\":%.1f}\n",
               lm_arch_name(s.cfg.arch), lm_model_param_count(&m), nout[0],
               omp_get_max_threads(), dt, nout[0] / dt);
        free(out[0]);
    }
    lm_model_free(&m);
    lm_backend_cpu_free(be);
    return rc ? CLI_FAIL : CLI_OK;
}

static int bench_sgemm(int argc, char **argv) {
    cli_opt opts[] = {{"--m", 1}, {"--n", 1}, {"--k", 1}, {"--steps", 1},
                      {"--threads", 1}, {0}};
    lm_err err = {{0}};
    long M = 512, N = 768, K = 768, st = 20, th = 0;
    if (cli_parse(argc, argv, 3, opts, NULL, 0, NULL, &err) ||
        (cli_get(opts, "--m") && cli_int("--m", cli_get(opts, "--m"), 1, 1 << 16, &M, &err)) ||
        (cli_get(opts, "--n") && cli_int("--n", cli_get(opts, "--n"), 1, 1 << 16, &N, &err)) ||
        (cli_get(opts, "--k") && cli_int("--k", cli_get(opts, "--k"), 1, 1 << 16, &K, &err)) ||
        (cli_get(opts, "--steps") && cli_int("--steps", cli_get(opts, "--steps"), 1, 100000, &st, &err)) ||
        (cli_get(opts, "--threads") && cli_int("--threads", cli_get(opts, "--threads"), 1, 1024, &th, &err))) {
        fprintf(stderr, "smudge bench sgemm: %s\n", err.msg);
        return CLI_USAGE;
    }
    lm_backend *be = lm_backend_cpu_new((int)th); /* sets the thread count */
    float *a = calloc((size_t)M * K, 4), *b = calloc((size_t)N * K, 4),
          *c = calloc((size_t)M * N, 4);
    if (!be || !a || !b || !c) {
        fprintf(stderr, "smudge bench sgemm: out of memory\n");
        return CLI_FAIL;
    }
    for (size_t i = 0; i < (size_t)M * K; i++) a[i] = (float)(i % 7) * 0.1f;
    for (size_t i = 0; i < (size_t)N * K; i++) b[i] = (float)(i % 5) * 0.1f;
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, (int)M, (int)N, (int)K,
                1.0f, a, (int)K, b, (int)K, 0.0f, c, (int)N);
    double t0 = now_seconds();
    for (long i = 0; i < st; i++)
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, (int)M, (int)N,
                    (int)K, 1.0f, a, (int)K, b, (int)K, 0.0f, c, (int)N);
    double dt = now_seconds() - t0;
    printf("{\"bench\":\"sgemm\",\"m\":%ld,\"n\":%ld,\"k\":%ld,\"threads\":%d,"
           "\"seconds\":%.6f,\"gflops\":%.2f}\n",
           M, N, K, omp_get_max_threads(), dt, 2.0 * M * N * K * st / dt * 1e-9);
    free(a);
    free(b);
    free(c);
    lm_backend_cpu_free(be);
    return CLI_OK;
}

int cmd_bench(int argc, char **argv) {
    if (argc < 3 || cli_wants_help(argc, argv, 2)) {
        fputs(bench_help, argc < 3 ? stderr : stdout);
        return argc < 3 ? CLI_USAGE : CLI_OK;
    }
    if (strcmp(argv[2], "forward") == 0) return bench_forward(argc, argv);
    if (strcmp(argv[2], "train") == 0) return bench_train(argc, argv);
    if (strcmp(argv[2], "generate") == 0) return bench_generate(argc, argv);
    if (strcmp(argv[2], "sgemm") == 0) return bench_sgemm(argc, argv);
    if (strcmp(argv[2], "dispatch") == 0) return su_bench_dispatch(argc, argv);
    fprintf(stderr, "smudge bench: unknown benchmark '%s' (forward, sgemm)\n", argv[2]);
    return CLI_USAGE;
}
