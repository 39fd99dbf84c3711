/* Fine-tuning end to end on a tiny random Llama: LoRA memorises 32 random
 * prompt -> response pairs, the adapter saves and reloads as PEFT files and
 * merges; full fine-tuning learns too; runs are deterministic; gradient
 * accumulation equals the large batch; the loss masks count the right
 * tokens; LoRA's dropout mask and fused-layer form are right; length
 * grouping still sees every example; examples rewritten
 * between epochs are checked again. */
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "check.h"
#include "generate.h"
#include "lora.h"
#include "peft.h"
#include "rng.h"
#include "safetensors.h"
#include "train.h"

enum { NEX = 32, PLEN = 6, RLEN = 4, LEN = PLEN + RLEN + 1, EOS = 1 };

static lm_backend *be;
static int verbose;

static int32_t data[NEX][LEN];
static lm_train_example examples[NEX];

static void make_data(void) {
    lm_rng rng;
    lm_rng_seed(&rng, 2024);
    for (int i = 0; i < NEX; i++) {
        for (int t = 0; t < PLEN + RLEN; t++)
            data[i][t] = 2 + (int32_t)lm_rng_below(&rng, 62);
        data[i][LEN - 1] = EOS;
        examples[i] = (lm_train_example){data[i], LEN, PLEN};
    }
}

static void build_model(lm_model *m, uint64_t seed) {
    lm_config cfg;
    lm_config_default(&cfg, LM_ARCH_LLAMA, 64, 64, 2, 4, 2, 128, 32);
    cfg.eos_id = EOS;
    lm_err err;
    CHECK(lm_model_init(m, &cfg, &err) == 0, "%s", err.msg);
    CHECK(lm_model_alloc(m, &err) == 0, "%s", err.msg);
    m->be = be;
    lm_model_init_random(m, seed, 0.1f);
}

static void print_progress(void *ctx, const lm_train_status *s) {
    (void)ctx;
    if (verbose && (s->step % 20 == 0 || s->step == s->total_steps))
        fprintf(stderr, "step %d/%d epoch %d loss %.4f lr %.2e norm %.3f "
                        "%.0f tok/s eta %.1fs\n", s->step, s->total_steps,
                s->epoch, s->loss, s->lr, s->grad_norm, s->tokens_per_s,
                s->eta_s);
}

/* Greedy responses for every prompt; returns how many match exactly
 * (response tokens, then EOS). */
static int count_memorised(lm_model *m, int32_t **out, int *n_out) {
    const int32_t *prompts[NEX];
    int plen[NEX];
    for (int i = 0; i < NEX; i++) {
        prompts[i] = data[i];
        plen[i] = PLEN;
    }
    lm_gen_opts go = {.max_new = RLEN + 2, .eos_id = EOS, .stop_at_eos = 1};
    lm_sampler_init(&go.sampler, 0.0f, 0, 1.0f, 0);
    lm_err err;
    CHECK(lm_generate(m, prompts, plen, NEX, &go, out, n_out, &err) == 0,
          "%s", err.msg);
    int good = 0;
    for (int i = 0; i < NEX; i++)
        good += n_out[i] == RLEN &&
                memcmp(out[i], data[i] + PLEN, RLEN * sizeof(int32_t)) == 0;
    return good;
}

static void free_outs(int32_t **out) {
    for (int i = 0; i < NEX; i++) free(out[i]);
}

/* Logits of the model over all 32 full sequences, [NEX*LEN, V]. */
static float *all_logits(lm_model *m) {
    lm_acts a;
    lm_err err;
    size_t nl = (size_t)NEX * LEN * m->cfg.vocab_size;
    float *l = malloc(nl * sizeof *l);
    CHECK(lm_acts_build(&a, m, NEX, LEN, 0, &err) == 0, "%s", err.msg);
    CHECK(lm_forward(m, &a, &data[0][0], NULL, NEX, LEN, &err) == 0, "%s",
          err.msg);
    memcpy(l, a.logits, nl * sizeof *l);
    lm_acts_free(&a);
    return l;
}

static double max_abs_diff(const float *a, const float *b, size_t n) {
    double d = 0.0;
    for (size_t i = 0; i < n; i++) d = fmax(d, fabs((double)a[i] - b[i]));
    return d;
}

static void opts_lora(lm_train_opts *o) {
    lm_train_opts_default(o);
    o->epochs = 60;
    o->batch_size = 8;
    o->lr = 1e-2;
    o->lora_r = 8;
    o->lora_alpha = 16.0f;
    o->lora_dropout = 0.0f;
    o->lora_targets = "q_proj,k_proj,v_proj,o_proj,gate_proj,up_proj,down_proj";
    o->schedule = LM_SCHED_COSINE;
    o->warmup_steps = 10;
    o->seed = 11;
    o->progress = print_progress;
}

/* (a) LoRA memorisation, PEFT save/load, merge. */
static void test_lora_memorise(void) {
    lm_model m;
    build_model(&m, 1);
    lm_train_opts o;
    opts_lora(&o);
    lm_lora_set set = {0};
    lm_train_status st;
    lm_err err;
    CHECK(lm_train(&m, &set, examples, NEX, &o, &st, &err) == 0, "%s", err.msg);
    CHECK(set.n == 14, "%d adapters for 7 targets x 2 layers", set.n);
    if (verbose) fprintf(stderr, "lora final loss %.4f in %.1fs\n", st.loss, st.elapsed_s);
    int32_t *out[NEX], *out2[NEX];
    int n_out[NEX], n_out2[NEX];
    int good = count_memorised(&m, out, n_out);
    CHECK(good == NEX, "LoRA memorised %d of %d responses (loss %.4f)", good,
          NEX, st.loss);

    /* PEFT round trip onto a fresh copy of the base: identical outputs. */
    char dir[] = "/tmp/smudge_peft_XXXXXX";
    CHECK(mkdtemp(dir) != NULL, "mkdtemp");
    CHECK(lm_peft_save(&set, dir, "tiny-llama", &err) == 0, "%s", err.msg);
    float *want = all_logits(&m);
    lm_model m2;
    build_model(&m2, 1);
    lm_lora_set set2;
    CHECK(lm_peft_load(&m2, dir, &set2, &err) == 0, "%s", err.msg);
    CHECK(set2.n == set.n && set2.r == 8 && set2.alpha == 16.0f,
          "reloaded %d adapters, r %d, alpha %g", set2.n, set2.r,
          (double)set2.alpha);
    float *got = all_logits(&m2);
    size_t nl = (size_t)NEX * LEN * m.cfg.vocab_size;
    CHECK(max_abs_diff(want, got, nl) == 0.0, "reloaded logits differ by %g",
          max_abs_diff(want, got, nl));
    int good2 = count_memorised(&m2, out2, n_out2);
    int same = good2 == good;
    for (int i = 0; i < NEX; i++)
        same &= n_out[i] == n_out2[i] &&
                memcmp(out[i], out2[i], (size_t)n_out[i] * sizeof(int32_t)) == 0;
    CHECK(same, "reloaded adapter generates differently");
    free_outs(out2);
    free(got);

    /* Merge: the merged model computes what base + adapter computed. */
    lm_lora_set_merge(&set2);
    CHECK(m2.layers[0].q.lora == NULL, "merge detaches");
    got = all_logits(&m2);
    CHECK(max_abs_diff(want, got, nl) < 1e-4, "merged logits differ by %g",
          max_abs_diff(want, got, nl));
    free(got);
    free(want);
    free_outs(out);

    /* A trained adapter cannot be attached twice. */
    lm_lora_set dup;
    CHECK(lm_peft_load(&m, dir, &dup, &err) < 0, "loaded onto adapted layers");
    CHECK(strstr(err.msg, "already has") != NULL, "message: %s", err.msg);

    char path[512];
    snprintf(path, sizeof path, "%s/adapter_model.safetensors", dir);
    unlink(path);
    snprintf(path, sizeof path, "%s/adapter_config.json", dir);
    unlink(path);
    rmdir(dir);
    lm_lora_set_free(&set2);
    lm_lora_set_free(&set);
    CHECK(m.layers[1].down.lora == NULL, "free detaches");
    lm_model_free(&m2);
    lm_model_free(&m);
}


/* Snapshot of every weight of the model. */
static float *weights_of(const lm_model *m) {
    size_t n = lm_model_param_count(m), off = 0;
    float *w = malloc(n * sizeof *w);
    for (int i = 0; i < m->n_params; i++) {
        memcpy(w + off, m->params[i].data, m->params[i].numel * sizeof *w);
        off += m->params[i].numel;
    }
    return w;
}

/* (b) Full fine-tuning drives the loss down. */
static void test_full_finetune(void) {
    lm_model m;
    build_model(&m, 1);
    lm_train_opts o;
    lm_train_opts_default(&o);
    o.lora_r = 0;
    o.epochs = 30;
    o.lr = 3e-3;
    o.weight_decay = 0.01;
    o.warmup_steps = 5;
    o.seed = 5;
    o.progress = print_progress;
    lm_train_status st;
    lm_err err;
    CHECK(lm_train(&m, NULL, examples, NEX, &o, &st, &err) == 0, "%s", err.msg);
    if (verbose) fprintf(stderr, "full final loss %.4f in %.1fs\n", st.loss, st.elapsed_s);
    CHECK(st.step == 120 && st.total_steps == 120, "%d of %d steps", st.step,
          st.total_steps);
    CHECK(st.epoch_loss < 0.5f, "full fine-tuning loss %.4f (from ~4.16)",
          (double)st.epoch_loss);
    CHECK(st.tokens == 30.0 * NEX * LEN, "%g tokens", st.tokens);
    CHECK(m.grad_memory == NULL && m.params[0].grad == NULL,
          "gradients allocated by the run are released");
    int32_t *out[NEX];
    int n_out[NEX];
    int good = count_memorised(&m, out, n_out);
    if (verbose) fprintf(stderr, "full fine-tuning memorised %d\n", good);
    free_outs(out);
    lm_model_free(&m);
}

/* (c) Same seed, same weights, bit for bit (LoRA with dropout and full). */
static void test_determinism(void) {
    float *w[2], *ab[2];
    size_t nab = 0;
    for (int run = 0; run < 2; run++) {
        lm_model m;
        build_model(&m, 3);
        lm_train_opts o;
        opts_lora(&o);
        o.epochs = 3;
        o.lora_dropout = 0.1f;
        o.lora_targets = "q_proj,v_proj,down_proj";
        o.grad_accum = 2;
        o.batch_size = 3;
        o.progress = NULL;
        lm_lora_set set = {0};
        lm_err err;
        CHECK(lm_train(&m, &set, examples, NEX, &o, NULL, &err) == 0, "%s",
              err.msg);
        nab = 0;
        for (int i = 0; i < set.n; i++)
            nab += set.sites[i].lora.A.numel + set.sites[i].lora.B.numel;
        ab[run] = malloc(nab * sizeof(float));
        size_t off = 0;
        for (int i = 0; i < set.n; i++) {
            lm_lora *l = &set.sites[i].lora;
            memcpy(ab[run] + off, l->A.data, l->A.numel * sizeof(float));
            off += l->A.numel;
            memcpy(ab[run] + off, l->B.data, l->B.numel * sizeof(float));
            off += l->B.numel;
        }
        lm_lora_set_free(&set);
        /* then a few full fine-tuning updates on top */
        lm_train_opts_default(&o);
        o.lora_r = 0;
        o.max_steps = 3;
        o.lr = 1e-3;
        o.seed = 9;
        CHECK(lm_train(&m, NULL, examples, NEX, &o, NULL, &err) == 0, "%s",
              err.msg);
        w[run] = weights_of(&m);
        lm_model_free(&m);
    }
    lm_model m;
    build_model(&m, 3);
    size_t n = lm_model_param_count(&m);
    lm_model_free(&m);
    CHECK(memcmp(ab[0], ab[1], nab * sizeof(float)) == 0,
          "LoRA weights differ between runs with the same seed");
    CHECK(memcmp(w[0], w[1], n * sizeof(float)) == 0,
          "fine-tuned weights differ between runs with the same seed");
    for (int r = 0; r < 2; r++) {
        free(w[r]);
        free(ab[r]);
    }
}

/* (d) Two accumulated micro-batches of 4 make the same first update as one
 * batch of 8 (every example counts the same number of tokens). */
static void test_accumulation(void) {
    float *w[2];
    for (int run = 0; run < 2; run++) {
        lm_model m;
        build_model(&m, 4);
        lm_train_opts o;
        lm_train_opts_default(&o);
        o.lora_r = 0;
        o.max_steps = 1;
        o.lr = 1e-3;
        o.weight_decay = 0.1;
        o.max_grad_norm = 0.5; /* clipping acts on the averaged gradient */
        o.batch_size = run ? 4 : 8;
        o.grad_accum = run ? 2 : 1;
        o.seed = 77;
        lm_train_status st;
        lm_err err;
        CHECK(lm_train(&m, NULL, examples, NEX, &o, &st, &err) == 0, "%s",
              err.msg);
        CHECK(st.step == 1 && st.total_steps == 1, "one update, got %d",
              st.step);
        w[run] = weights_of(&m);
        if (run) {
            float *w0 = w[0];
            lm_model base;
            build_model(&base, 4);
            float *wb = weights_of(&base);
            size_t n = lm_model_param_count(&m);
            CHECK(max_abs_diff(w0, wb, n) > 1e-4, "the update moved nothing");
            CHECK(max_abs_diff(w[0], w[1], n) <= 1e-5,
                  "accumulated update differs from the big batch by %g",
                  max_abs_diff(w[0], w[1], n));
            free(wb);
            lm_model_free(&base);
        }
        lm_model_free(&m);
    }
    free(w[0]);
    free(w[1]);
}

/* (e) The masks: response tokens only, or every next token; padding. */
static void test_masks(void) {
    int32_t a_ids[7] = {5, 6, 7, 8, 9, 10, 1}, b_ids[4] = {11, 12, 13, 1};
    lm_train_example a = {a_ids, 7, 3}, b = {b_ids, 4, 0};
    const lm_train_example *batch[2] = {&a, &b};
    int32_t ids[2 * 8], tg[2 * 8];
    /* a: predicts 8, 9, 10, EOS from positions 2..5 -> 4 response targets;
     * b: prompt_len 0 -> all 3 next tokens. */
    int n = lm_train_make_batch(batch, 2, 8, 0, 0, ids, tg);
    CHECK(n == 4 + 3, "responses only: %d counted", n);
    CHECK(tg[0] == -1 && tg[1] == -1 && tg[2] == 8 && tg[5] == 1 &&
              tg[6] == -1 && tg[7] == -1,
          "a's targets %d %d %d %d %d %d", tg[0], tg[1], tg[2], tg[5], tg[6],
          tg[7]);
    CHECK(ids[6] == 1 && ids[7] == 0, "a padded after its tokens");
    CHECK(tg[8] == 12 && tg[10] == 1 && tg[11] == -1 && ids[11] == 1 &&
              ids[12] == 0,
          "b's targets and padding");
    n = lm_train_make_batch(batch, 2, 8, 0, 1, ids, tg);
    CHECK(n == 6 + 3, "train_on_prompt: %d counted", n);
    CHECK(tg[0] == 6 && tg[1] == 7, "prompt targets %d %d", tg[0], tg[1]);
    /* cut to 4 tokens: a keeps targets 7->8 only (position 2 -> 3) */
    n = lm_train_make_batch(batch, 2, 4, 4, 0, ids, tg);
    CHECK(n == 1 + 3, "max_len 4: %d counted", n);
    CHECK(tg[2] == 8 && tg[3] == -1, "cut targets %d %d", tg[2], tg[3]);

    /* The trainer's token count over a whole run, both ways: responses
     * count 5 targets per example, train_on_prompt 10. */
    lm_model m;
    build_model(&m, 6);
    for (int top = 0; top < 2; top++) {
        lm_train_opts o;
        lm_train_opts_default(&o);
        o.lora_r = 2;
        o.lora_dropout = 0.0f;
        o.max_steps = 1;
        o.batch_size = NEX;
        o.train_on_prompt = top;
        const lm_train_example *all[NEX];
        for (int i = 0; i < NEX; i++) all[i] = &examples[i];
        int32_t *bi = malloc(NEX * LEN * sizeof *bi), *bt = malloc(NEX * LEN * sizeof *bt);
        int c = lm_train_make_batch(all, NEX, LEN, 0, top, bi, bt);
        CHECK(c == NEX * (top ? LEN - 1 : RLEN + 1), "counted %d", c);
        free(bi);
        free(bt);
        lm_lora_set set = {0};
        lm_err err;
        CHECK(lm_train(&m, &set, examples, NEX, &o, NULL, &err) == 0, "%s",
              err.msg);
        lm_lora_set_free(&set);
    }
    /* Errors name the example at fault. */
    int32_t bad_ids[3] = {3, 64, 1};
    lm_train_example bad = {bad_ids, 3, 1};
    lm_train_opts o;
    lm_train_opts_default(&o);
    lm_lora_set set = {0};
    lm_err err;
    CHECK(lm_train(&m, &set, &bad, 1, &o, NULL, &err) < 0, "bad token accepted");
    CHECK(strstr(err.msg, "example 0") && strstr(err.msg, "64"), "message: %s",
          err.msg);
    CHECK(set.n == 0 && m.layers[0].q.lora == NULL, "nothing left attached");
    lm_train_example none = {b_ids, 4, 4};
    CHECK(lm_train(&m, &set, &none, 1, &o, NULL, &err) < 0,
          "no response tokens accepted");
    lm_model_free(&m);
}

/* LoRA's dropout backward uses the real mask: an input that is exactly 0
 * but kept still passes gradient. The mask depends only on the RNG state,
 * so finite differences with a replayed state see the same mask. */
static void test_lora_dropout_grad(void) {
    enum { M = 3, IN = 5, OUT = 4, R = 2 };
    lm_lora l;
    lm_err err;
    CHECK(lm_lora_build(&l, IN, OUT, R, 4.0f, 0.5f, 3, &err) == 0, "%s", err.msg);
    lm_lora_reserve(&l, M, &err);
    l.training = 1;
    lm_rng rng;
    lm_rng_seed(&rng, 8);
    for (size_t i = 0; i < l.B.numel; i++) l.B.data[i] = lm_rng_normal(&rng);
    float x[M * IN], wy[M * OUT], y[M * OUT], dx[M * IN] = {0};
    for (int i = 0; i < M * IN; i++) x[i] = (i % 3 == 0) ? 0.0f : lm_rng_normal(&rng);
    for (int i = 0; i < M * OUT; i++) wy[i] = lm_rng_normal(&rng);
    lm_rng start = l.rng;
    memset(y, 0, sizeof y);
    lm_lora_forward(be, &l, y, x, M);
    lm_lora_backward(be, &l, dx, wy, x, M); /* dL/dy = wy for L = wy . y */
    int zero_kept = 0;
    for (int i = 0; i < M * IN; i += 3) zero_kept += l.keep[i];
    CHECK(zero_kept > 0, "no zero input was kept; pick another seed");
    double worst = 0.0;
    for (int i = 0; i < M * IN; i++) {
        double L[2];
        for (int s = 0; s < 2; s++) {
            float xp[M * IN];
            memcpy(xp, x, sizeof xp);
            xp[i] += s ? -1e-2f : 1e-2f;
            memset(y, 0, sizeof y);
            l.rng = start;
            lm_lora_forward(be, &l, y, xp, M);
            L[s] = 0.0;
            for (int j = 0; j < M * OUT; j++) L[s] += (double)wy[j] * y[j];
        }
        worst = fmax(worst, fabs((L[0] - L[1]) / 2e-2 - dx[i]));
    }
    CHECK(worst < 1e-3, "dropout dx off by %g", worst);
    lm_lora_free(&l);
}

/* The fused form (three output buffers) equals the plain one. */
static void test_lora_parts(void) {
    enum { M = 4, IN = 6, OUT = 9, R = 3 };
    lm_lora l;
    lm_err err;
    CHECK(lm_lora_build(&l, IN, OUT, R, 6.0f, 0.0f, 1, &err) == 0, "%s", err.msg);
    lm_lora_reserve(&l, M, &err);
    lm_rng rng;
    lm_rng_seed(&rng, 4);
    for (size_t i = 0; i < l.B.numel; i++) l.B.data[i] = lm_rng_normal(&rng);
    float x[M * IN], dy[M * OUT], y[M * OUT] = {0}, dx[M * IN] = {0};
    for (int i = 0; i < M * IN; i++) x[i] = lm_rng_normal(&rng);
    for (int i = 0; i < M * OUT; i++) dy[i] = lm_rng_normal(&rng);
    lm_lora_forward(be, &l, y, x, M);
    lm_lora_backward(be, &l, dx, dy, x, M);
    float gA[R * IN], gB[OUT * R];
    memcpy(gA, l.A.grad, sizeof gA);
    memcpy(gB, l.B.grad, sizeof gB);
    memset(l.A.grad, 0, sizeof gA);
    memset(l.B.grad, 0, sizeof gB);
    float yp[3][M * 3] = {{0}}, dyp[3][M * 3], dx2[M * IN] = {0};
    for (int m = 0; m < M; m++)
        for (int p = 0; p < 3; p++)
            for (int c = 0; c < 3; c++) dyp[p][m * 3 + c] = dy[m * OUT + p * 3 + c];
    float *ys[3] = {yp[0], yp[1], yp[2]};
    const float *dys[3] = {dyp[0], dyp[1], dyp[2]};
    lm_lora_forward_parts(be, &l, ys, 3, x, M);
    lm_lora_backward_parts(be, &l, dx2, dys, 3, x, M);
    double d = 0.0;
    for (int m = 0; m < M; m++)
        for (int p = 0; p < 3; p++)
            for (int c = 0; c < 3; c++)
                d = fmax(d, fabs(yp[p][m * 3 + c] - y[m * OUT + p * 3 + c]));
    d = fmax(d, max_abs_diff(dx, dx2, M * IN));
    d = fmax(d, max_abs_diff(gA, l.A.grad, R * IN));
    d = fmax(d, max_abs_diff(gB, l.B.grad, OUT * R));
    CHECK(d < 1e-5, "parts form differs by %g", d);
    lm_lora_free(&l);
}

static void write_file(const char *dir, const char *name, const char *text) {
    char path[512];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    FILE *fp = fopen(path, "w");
    fputs(text, fp);
    fclose(fp);
}

static void remove_dir(const char *dir) {
    char path[512];
    snprintf(path, sizeof path, "%s/adapter_model.safetensors", dir);
    unlink(path);
    snprintf(path, sizeof path, "%s/adapter_config.json", dir);
    unlink(path);
    rmdir(dir);
}

static char *slurp(const char *dir, const char *name) {
    char path[512];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    FILE *fp = fopen(path, "rb");
    if (!fp) return NULL;
    char *buf = calloc(1, 1 << 16);
    fread(buf, 1, (1 << 16) - 1, fp);
    fclose(fp);
    return buf;
}

/* Tries to load dir onto m and expects an error mentioning `needle`. */
static void expect_load_error(lm_model *m, const char *dir, const char *needle,
                              const char *what) {
    lm_lora_set set = {0};
    lm_err err = {{0}};
    int rc = lm_peft_load(m, dir, &set, &err);
    CHECK(rc < 0, "%s: loaded", what);
    CHECK(strstr(err.msg, needle) != NULL, "%s: message \"%s\" lacks \"%s\"",
          what, err.msg, needle);
    CHECK(set.n == 0 && m->layers[0].q.lora == NULL && m->layers[0].o.lora == NULL,
          "%s: adapters left behind", what);
}

/* Names, shapes and config of the PEFT files; every malformed input is an
 * error naming its fault. */
static void test_peft_files(void) {
    lm_err err;
    /* GPT-2: "c_proj" matches attn.c_proj and mlp.c_proj; c_attn is the
     * fused q|k|v, one adapter per layer. */
    lm_config cfg;
    lm_config_default(&cfg, LM_ARCH_GPT2, 20, 8, 2, 2, 2, 16, 12);
    lm_model g;
    CHECK(lm_model_init(&g, &cfg, &err) == 0, "%s", err.msg);
    CHECK(lm_model_alloc(&g, &err) == 0, "%s", err.msg);
    g.be = be;
    lm_model_init_random(&g, 1, 0.2f);
    lm_lora_set set = {0};
    CHECK(lm_lora_attach(&g, "c_attn", 4, 8.0f, 0.0f, 1, &set, &err) == 0,
          "c_attn refused: %s", err.msg);
    CHECK(set.n == 2 && g.layers[0].qkv.lora && g.layers[1].qkv.lora,
          "c_attn took %d modules, want 2", set.n);
    lm_lora_set_free(&set);
    CHECK(lm_lora_attach(&g, "q_proj", 4, 8.0f, 0.0f, 1, &set, &err) < 0,
          "q_proj on GPT-2 accepted");
    CHECK(strstr(err.msg, "c_fc") != NULL, "message lists modules: %s", err.msg);
    CHECK(lm_lora_attach(&g, "c_proj", 4, 8.0f, 0.0f, 1, &set, &err) == 0,
          "%s", err.msg);
    CHECK(set.n == 4, "c_proj took %d modules, want 4", set.n);
    CHECK(g.layers[1].o.lora && g.layers[1].down.lora && !g.layers[1].up.lora,
          "attn.c_proj and mlp.c_proj adapted");
    lm_lora_set_free(&set);
    CHECK(lm_lora_attach(&g, " attn.c_proj , c_fc", 2, 4.0f, 0.1f, 1, &set,
                         &err) == 0, "%s", err.msg);
    CHECK(set.n == 4 && g.layers[0].o.lora && !g.layers[0].down.lora &&
              g.layers[0].up.lora, "attn.c_proj,c_fc took %d", set.n);
    /* B nonzero so the adapter does something */
    for (int i = 0; i < set.n; i++)
        for (size_t j = 0; j < set.sites[i].lora.B.numel; j++)
            set.sites[i].lora.B.data[j] = 0.01f * (float)((j * 7 + i) % 11);
    char dir[] = "/tmp/smudge_peft_XXXXXX";
    CHECK(mkdtemp(dir) != NULL, "mkdtemp");
    CHECK(lm_peft_save(&set, dir, NULL, &err) == 0, "%s", err.msg);
    lm_st_file f;
    char path[512];
    snprintf(path, sizeof path, "%s/adapter_model.safetensors", dir);
    CHECK(lm_st_open(&f, path, &err) == 0, "%s", err.msg);
    const lm_st_tensor *ta =
        lm_st_find(&f, "base_model.model.transformer.h.1.mlp.c_fc.lora_A.weight");
    const lm_st_tensor *tb =
        lm_st_find(&f, "base_model.model.transformer.h.1.mlp.c_fc.lora_B.weight");
    CHECK(ta && ta->shape[0] == 2 && ta->shape[1] == 8, "c_fc lora_A [r, in]");
    CHECK(tb && tb->shape[0] == 16 && tb->shape[1] == 2, "c_fc lora_B [out, r]");
    CHECK(f.n_tensors == 8, "%d tensors", f.n_tensors);
    CHECK(lm_st_meta_get(&f, "format") && strcmp(lm_st_meta_get(&f, "format"), "pt") == 0,
          "format metadata");
    lm_st_close(&f);
    char *cfgtext = slurp(dir, "adapter_config.json");
    CHECK(cfgtext && strstr(cfgtext, "\"fan_in_fan_out\":\ttrue") &&
              strstr(cfgtext, "\"peft_type\":\t\"LORA\"") &&
              strstr(cfgtext, "\"task_type\":\t\"CAUSAL_LM\"") &&
              strstr(cfgtext, "\"lora_dropout\":\t0.1,") &&
              strstr(cfgtext, "\"attn.c_proj\", \"c_fc\"") &&
              strstr(cfgtext, "\"base_model_name_or_path\":\tnull"),
          "adapter_config.json:\n%s", cfgtext ? cfgtext : "(missing)");
    free(cfgtext);
    float *want = malloc(12 * 20 * sizeof *want);
    {
        lm_acts a;
        int32_t ids[12] = {1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12};
        lm_acts_build(&a, &g, 1, 12, 0, &err);
        lm_forward(&g, &a, ids, NULL, 1, 12, &err);
        memcpy(want, a.logits, 12 * 20 * sizeof *want);
        lm_lora_set_free(&set);
        lm_lora_set s2 = {0};
        CHECK(lm_peft_load(&g, dir, &s2, &err) == 0, "%s", err.msg);
        CHECK(s2.dropout == 0.1f && s2.alpha == 4.0f && s2.r == 2 &&
                  strcmp(s2.targets, "attn.c_proj,c_fc") == 0,
              "config read back: dropout %g alpha %g r %d targets %s",
              (double)s2.dropout, (double)s2.alpha, s2.r, s2.targets);
        lm_forward(&g, &a, ids, NULL, 1, 12, &err);
        CHECK(max_abs_diff(want, a.logits, 12 * 20) == 0.0,
              "GPT-2 adapter reloads differently");
        lm_lora_set_merge(&s2);
        lm_forward(&g, &a, ids, NULL, 1, 12, &err);
        CHECK(max_abs_diff(want, a.logits, 12 * 20) < 1e-4,
              "GPT-2 merge differs by %g", max_abs_diff(want, a.logits, 12 * 20));
        lm_lora_set_free(&s2);
        lm_acts_free(&a);
    }
    free(want);
    remove_dir(dir);
    lm_model_free(&g);

    /* OPT's names, then malformed folders against a fresh OPT model. */
    lm_config_default(&cfg, LM_ARCH_OPT, 20, 8, 1, 2, 2, 16, 12);
    lm_model o;
    CHECK(lm_model_init(&o, &cfg, &err) == 0, "%s", err.msg);
    CHECK(lm_model_alloc(&o, &err) == 0, "%s", err.msg);
    o.be = be;
    lm_model_init_random(&o, 2, 0.2f);
    CHECK(lm_lora_attach(&o, "q_proj,out_proj", 4, 8.0f, 0.0f, 1, &set, &err) == 0,
          "%s", err.msg);
    CHECK(set.n == 2 && strcmp(set.sites[1].module,
                               "model.decoder.layers.0.self_attn.out_proj") == 0,
          "OPT module %s", set.n == 2 ? set.sites[1].module : "?");
    CHECK(mkdtemp(strcpy(dir, "/tmp/smudge_peft_XXXXXX")) != NULL, "mkdtemp");
    CHECK(lm_peft_save(&set, dir, "facebook/opt-tiny", &err) == 0, "%s", err.msg);
    lm_lora_set_free(&set);
    char *good = slurp(dir, "adapter_config.json");
    CHECK(good && strstr(good, "\"facebook/opt-tiny\""), "base model name");
    lm_lora_set ok = {0};
    CHECK(lm_peft_load(&o, dir, &ok, &err) == 0, "%s", err.msg);
    lm_lora_set_free(&ok);

    write_file(dir, "adapter_config.json", "{\"peft_type\": \"LORA\", \"r\": 3}");
    expect_load_error(&o, dir, "should have shape [3, 8]", "rank mismatch");
    write_file(dir, "adapter_config.json", "{\"peft_type\": \"IA3\", \"r\": 4}");
    expect_load_error(&o, dir, "peft_type", "IA3");
    write_file(dir, "adapter_config.json", "{\"lora_alpha\": 8}");
    expect_load_error(&o, dir, "\"r\"", "no r");
    write_file(dir, "adapter_config.json", "{\"r\": 4, \"use_dora\": true}");
    expect_load_error(&o, dir, "use_dora", "DoRA");
    write_file(dir, "adapter_config.json", "{\"r\": 4, \"bias\": \"all\"}");
    expect_load_error(&o, dir, "bias", "bias");
    write_file(dir, "adapter_config.json", "{\"r\": 4, \"rank_pattern\": {\"q_proj\": 2}}");
    expect_load_error(&o, dir, "rank_pattern", "rank_pattern");
    write_file(dir, "adapter_config.json", "{\"r\": 4, \"lora_dropout\": 1.5}");
    expect_load_error(&o, dir, "lora_dropout", "dropout");
    write_file(dir, "adapter_config.json", "{\"r\": 4,");
    expect_load_error(&o, dir, "not a JSON object", "truncated JSON");
    write_file(dir, "adapter_config.json", good);

    /* weights files with the wrong names or shapes */
    float zeros[64] = {0};
    snprintf(path, sizeof path, "%s/adapter_model.safetensors", dir);
    lm_st_out t1[2] = {
        {.name = "base_model.model.model.decoder.layers.0.self_attn.q_proj.lora_A.weight",
         .dtype = LM_ST_F32, .ndim = 2, .shape = {4, 8}, .data = zeros},
        {.name = "base_model.model.model.decoder.layers.0.self_attn.q_proj.lora_B.weight",
         .dtype = LM_ST_F32, .ndim = 2, .shape = {8, 4}, .data = zeros}};
    CHECK(lm_st_write(path, t1, 1, NULL, &err) == 0, "%s", err.msg);
    expect_load_error(&o, dir, "has lora_A but no lora_B", "missing B");
    t1[1].shape[0] = 9;
    CHECK(lm_st_write(path, t1, 2, NULL, &err) == 0, "%s", err.msg);
    expect_load_error(&o, dir, "q_proj.lora_B.weight\" should have shape [8, 4]",
                      "B shape");
    t1[1].shape[0] = 8;
    t1[1].name = "base_model.model.model.decoder.layers.3.self_attn.q_proj.lora_B.weight";
    CHECK(lm_st_write(path, t1, 2, NULL, &err) == 0, "%s", err.msg);
    expect_load_error(&o, dir, "not a linear layer", "layer 3 of 1");
    t1[1].name = "base_model.model.model.decoder.layers.0.self_attn.q_proj.lora_embedding_B";
    CHECK(lm_st_write(path, t1, 2, NULL, &err) == 0, "%s", err.msg);
    expect_load_error(&o, dir, "lora_embedding_B\" is not a LoRA weight",
                      "unknown tensor");
    unlink(path);
    expect_load_error(&o, dir, "adapter_model.safetensors", "no weights file");
    free(good);
    remove_dir(dir);
    lm_model_free(&o);
}

/* Length grouping: every example is still seen once per epoch and a run
 * is deterministic. */
typedef struct seen_ctx {
    double tokens;
} seen_ctx;

static void count_tokens(void *ctx, const lm_train_status *s) {
    ((seen_ctx *)ctx)->tokens = s->tokens;
}

static void test_group_by_length(void) {
    /* lengths 3..LEN in a fixed scramble */
    lm_train_example ex[NEX];
    for (int i = 0; i < NEX; i++)
        ex[i] = (lm_train_example){data[i], 3 + (i * 7) % (LEN - 2), 2};
    float *w[2];
    double tokens[2];
    size_t n = 0;
    for (int run = 0; run < 2; run++) {
        lm_model m;
        build_model(&m, 4);
        lm_train_opts o;
        lm_train_opts_default(&o);
        o.lora_r = 0;
        o.epochs = 3;
        o.batch_size = 4;
        o.lr = 1e-3;
        o.seed = 9;
        o.group_by_length = 2;
        seen_ctx c = {0};
        o.progress = count_tokens;
        o.progress_ctx = &c;
        lm_train_status st;
        lm_err err;
        CHECK(lm_train(&m, NULL, ex, NEX, &o, &st, &err) == 0, "%s", err.msg);
        CHECK(st.step == 3 * NEX / 4, "%d steps", st.step);
        tokens[run] = c.tokens;
        w[run] = weights_of(&m);
        n = lm_model_param_count(&m);
        lm_model_free(&m);
    }
    double want = 0;
    for (int i = 0; i < NEX; i++) want += ex[i].n;
    CHECK(tokens[0] == 3 * want, "every example once per epoch: %g tokens, want %g",
          tokens[0], 3 * want);
    CHECK(memcmp(w[0], w[1], n * sizeof(float)) == 0, "grouped runs are deterministic");
    free(w[0]);
    free(w[1]);
}

/* The loss at lr 0 of one update over `ex`, with loss_length_power p. */
static double loss_of(const lm_train_example *ex, int n, double p) {
    lm_model m;
    build_model(&m, 11);
    lm_train_opts o;
    lm_train_opts_default(&o);
    o.lora_r = 0;
    o.lr = 0.0;
    o.max_steps = 1;
    o.batch_size = n;
    o.shuffle = 0;
    o.loss_length_power = p;
    lm_train_status st;
    lm_err err;
    CHECK(lm_train(&m, NULL, ex, n, &o, &st, &err) == 0, "%s", err.msg);
    lm_model_free(&m);
    return st.loss;
}

/* loss_length_power weighs an example with c targets c^-p per token: the
 * batch loss is the weighted mean of each example's own mean loss. */
static void test_loss_length_power(void) {
    /* a: one answer token; b: six targets */
    lm_train_example two[2] = {{data[0], 7, 6}, {data[1], 7, 0}};
    double ma = loss_of(&two[0], 1, 0.0), mb = loss_of(&two[1], 1, 0.0);
    CHECK(fabs(ma - mb) > 0.01, "the two examples' losses differ (%g, %g)", ma, mb);
    const double powers[] = {0.0, 0.5, 1.0};
    for (int k = 0; k < 3; k++) {
        double p = powers[k], wa = 1.0, wb = 6.0 * pow(6.0, -p);
        double want = (wa * ma + wb * mb) / (wa + wb), got = loss_of(two, 2, p);
        CHECK(fabs(got - want) < 1e-4 * (1 + fabs(want)),
              "power %g: batch loss %.6f, want %.6f", p, got, want);
    }
    lm_model m;
    build_model(&m, 11);
    lm_train_opts o;
    lm_train_opts_default(&o);
    o.lora_r = 0;
    o.loss_length_power = -1.0;
    lm_err err;
    CHECK(lm_train(&m, NULL, two, 2, &o, NULL, &err) < 0 &&
              strstr(err.msg, "loss_length_power"),
          "a negative power is refused: %s", err.msg);
    lm_model_free(&m);
}

/* An epoch_end that rewrites the examples: a longer one than the first
 * epoch's longest is refused, naming the epoch. */
typedef struct grow_ctx {
    lm_train_example *ex;
    int grow_to;
} grow_ctx;

static int grow_examples(void *ctx, int epoch, const lm_train_status *s, lm_err *err) {
    (void)epoch, (void)s, (void)err;
    grow_ctx *g = ctx;
    g->ex[0].n = g->grow_to;
    return 0;
}

static void test_epoch_rewrite(void) {
    lm_train_example ex[NEX];
    for (int i = 0; i < NEX; i++) ex[i] = (lm_train_example){data[i], LEN - 2, PLEN};
    for (int k = 0; k < 2; k++) {
        lm_model m;
        build_model(&m, 6);
        lm_train_opts o;
        lm_train_opts_default(&o);
        o.lora_r = 0;
        o.epochs = 2;
        o.lr = 1e-3;
        grow_ctx g = {ex, k == 0 ? LEN - 3 : LEN};
        o.epoch_end = grow_examples;
        o.epoch_ctx = &g;
        lm_err err = {0};
        int rc = lm_train(&m, NULL, ex, NEX, &o, NULL, &err);
        if (k == 0) CHECK(rc == 0, "a shorter rewrite trains on: %s", err.msg);
        else
            CHECK(rc != 0 && strstr(err.msg, "epoch 2") && strstr(err.msg, "longer"),
                  "a longer rewrite is refused: rc %d, '%s'", rc, err.msg);
        ex[0].n = LEN - 2;
        lm_model_free(&m);
    }
}

int main(void) {
    verbose = getenv("TRAIN_VERBOSE") != NULL;
    be = lm_backend_cpu_new(0);
    make_data();
    test_lora_memorise();
    test_full_finetune();
    test_determinism();
    test_accumulation();
    test_masks();
    test_lora_dropout_grad();
    test_lora_parts();
    test_peft_files();
    test_group_by_length();
    test_loss_length_power();
    test_epoch_rewrite();
    lm_backend_cpu_free(be);
    return check_done();
}
