/* The whole model's backward pass against finite differences, per family.
 *
 * For every parameter tensor (and the input embeddings) we compare the
 * directional derivative g . d along a random direction d with the central
 * difference (L(w + eps d) - L(w - eps d)) / 2 eps. One direction per tensor
 * checks every element's gradient at once with a good signal-to-noise ratio
 * in fp32. */
#include <stdlib.h>
#include <string.h>

#include "check.h"
#include "lora.h"
#include "model.h"
#include "rng.h"

enum { B = 2, T = 6 };

static float loss_of(lm_model *m, lm_acts *a, const int32_t *ids,
                     const float *embeds, const int32_t *tg, const float *mask) {
    lm_err err;
    if (lm_forward(m, a, ids, embeds, B, T, &err)) {
        fprintf(stderr, "forward: %s\n", err.msg);
        exit(1);
    }
    return lm_loss(m, a, tg, mask, NULL);
}

static double directional_fd(lm_model *m, lm_acts *a, float *w, size_t n,
                             const float *dir, const int32_t *ids,
                             const float *embeds, const int32_t *tg,
                             const float *mask, float eps) {
    float *saved = malloc(n * sizeof *saved);
    memcpy(saved, w, n * sizeof *w);
    for (size_t i = 0; i < n; i++) w[i] = saved[i] + eps * dir[i];
    double lp = loss_of(m, a, ids, embeds, tg, mask);
    for (size_t i = 0; i < n; i++) w[i] = saved[i] - eps * dir[i];
    double lm = loss_of(m, a, ids, embeds, tg, mask);
    memcpy(w, saved, n * sizeof *w);
    free(saved);
    return (lp - lm) / (2.0 * eps);
}

static void check_family(lm_backend *be, lm_arch arch, int tied, int window) {
    lm_config cfg;
    int kv = (arch == LM_ARCH_LLAMA || arch == LM_ARCH_MISTRAL) ? 1 : 2;
    lm_config_default(&cfg, arch, 13, 8, 2, 2, kv, 12, 16);
    cfg.tie_embeddings = tied;
    cfg.sliding_window = window;
    lm_err err;
    lm_model m;
    CHECK(lm_model_init(&m, &cfg, &err) == 0, "%s", err.msg);
    CHECK(lm_model_alloc(&m, &err) == 0, "%s", err.msg);
    CHECK(lm_model_alloc_grads(&m, &err) == 0, "%s", err.msg);
    m.be = be;
    lm_model_init_random(&m, 42, 0.4f);
    /* Norm weights and biases away from 1/0 so their gradients matter. */
    lm_rng rng;
    lm_rng_seed(&rng, 99);
    for (int i = 0; i < m.n_params; i++)
        if (m.params[i].ndim == 1)
            for (size_t j = 0; j < m.params[i].numel; j++)
                m.params[i].data[j] += 0.2f * lm_rng_normal(&rng);

    int32_t ids[B * T], tg[B * T];
    float mask[B * T];
    for (int i = 0; i < B * T; i++) {
        ids[i] = (int32_t)lm_rng_below(&rng, 13);
        tg[i] = (i % 5 == 4) ? -1 : (int32_t)lm_rng_below(&rng, 13);
        mask[i] = (i % 3 == 0) ? 0.0f : 1.0f + 0.5f * (float)(i % 2);
    }
    lm_acts a;
    CHECK(lm_acts_build(&a, &m, B, T, 1, &err) == 0, "%s", err.msg);
    loss_of(&m, &a, ids, NULL, tg, mask);
    lm_model_zero_grads(&m);
    CHECK(lm_backward(&m, &a, ids, tg, mask, &err) == 0, "%s", err.msg);

    for (int i = 0; i < m.n_params; i++) {
        lm_tensor *t = &m.params[i];
        float *dir = malloc(t->numel * sizeof *dir);
        double an = 0.0;
        for (size_t j = 0; j < t->numel; j++) {
            dir[j] = lm_rng_normal(&rng);
            an += (double)t->grad[j] * dir[j];
        }
        double fd = directional_fd(&m, &a, t->data, t->numel, dir, ids, NULL,
                                   tg, mask, 1e-3f);
        double tol = 2e-3 + 2e-2 * fabs(fd);
        CHECK(fabs(an - fd) <= tol, "%s %s: analytic %.6g vs fd %.6g",
              lm_arch_name(arch), t->name, an, fd);
        free(dir);
    }

    /* Input-embedding gradient: run from explicit embeddings. */
    int C = cfg.d_model;
    float *emb = malloc((size_t)B * T * C * sizeof *emb);
    for (int n = 0; n < B * T; n++)
        memcpy(emb + (size_t)n * C, m.wte->data + (size_t)ids[n] * C,
               (size_t)C * sizeof *emb);
    loss_of(&m, &a, NULL, emb, tg, mask);
    lm_model_zero_grads(&m);
    CHECK(lm_backward(&m, &a, NULL, tg, mask, &err) == 0, "%s", err.msg);
    float *dir = malloc((size_t)B * T * C * sizeof *dir);
    double an = 0.0;
    for (int j = 0; j < B * T * C; j++) {
        dir[j] = lm_rng_normal(&rng);
        an += (double)a.d_input_embeds[j] * dir[j];
    }
    double fd = directional_fd(&m, &a, emb, (size_t)B * T * C, dir, NULL, emb,
                               tg, mask, 1e-3f);
    CHECK(fabs(an - fd) <= 2e-3 + 2e-2 * fabs(fd),
          "%s input embeddings: analytic %.6g vs fd %.6g", lm_arch_name(arch),
          an, fd);
    free(dir);
    free(emb);
    lm_acts_free(&a);
    lm_model_free(&m);
}

/* LoRA: gradients of A and B, with the base frozen (no base gradients). */
static void check_lora(lm_backend *be) {
    lm_config cfg;
    lm_config_default(&cfg, LM_ARCH_LLAMA, 13, 8, 2, 2, 1, 12, 16);
    lm_err err;
    lm_model m;
    CHECK(lm_model_init(&m, &cfg, &err) == 0, "%s", err.msg);
    CHECK(lm_model_alloc(&m, &err) == 0, "%s", err.msg);
    m.be = be;
    lm_model_init_random(&m, 5, 0.4f);
    lm_lora lq, lv;
    CHECK(lm_lora_build(&lq, 8, 8, 2, 4.0f, 0.0f, 1, &err) == 0, "%s", err.msg);
    CHECK(lm_lora_build(&lv, 8, 4, 2, 4.0f, 0.0f, 2, &err) == 0, "%s", err.msg);
    lm_rng rng;
    lm_rng_seed(&rng, 3);
    for (size_t j = 0; j < lq.B.numel; j++) lq.B.data[j] = 0.3f * lm_rng_normal(&rng);
    for (size_t j = 0; j < lv.B.numel; j++) lv.B.data[j] = 0.3f * lm_rng_normal(&rng);
    lm_lora_reserve(&lq, B * T, &err);
    lm_lora_reserve(&lv, B * T, &err);
    m.layers[1].q.lora = &lq;
    m.layers[0].v.lora = &lv;
    int32_t ids[B * T], tg[B * T];
    for (int i = 0; i < B * T; i++) {
        ids[i] = (int32_t)lm_rng_below(&rng, 13);
        tg[i] = (int32_t)lm_rng_below(&rng, 13);
    }
    lm_acts a;
    CHECK(lm_acts_build(&a, &m, B, T, 1, &err) == 0, "%s", err.msg);
    loss_of(&m, &a, ids, NULL, tg, NULL);
    CHECK(lm_backward(&m, &a, ids, tg, NULL, &err) == 0, "%s", err.msg);
    lm_tensor *ts[4] = {&lq.A, &lq.B, &lv.A, &lv.B};
    for (int i = 0; i < 4; i++) {
        float *dir = malloc(ts[i]->numel * sizeof *dir);
        double an = 0.0;
        for (size_t j = 0; j < ts[i]->numel; j++) {
            dir[j] = lm_rng_normal(&rng);
            an += (double)ts[i]->grad[j] * dir[j];
        }
        double fd = directional_fd(&m, &a, ts[i]->data, ts[i]->numel, dir,
                                   ids, NULL, tg, NULL, 1e-3f);
        CHECK(fabs(an - fd) <= 2e-3 + 2e-2 * fabs(fd),
              "lora tensor %d: analytic %.6g vs fd %.6g", i, an, fd);
        free(dir);
    }
    /* Merging folds the adapter in: the merged model's logits match. */
    lm_forward(&m, &a, ids, NULL, B, T, &err);
    size_t nl = (size_t)B * T * cfg.vocab_size;
    float *before = malloc(nl * sizeof *before);
    memcpy(before, a.logits, nl * sizeof *before);
    lm_lora_merge(&lq, m.layers[1].q.w);
    lm_lora_merge(&lv, m.layers[0].v.w);
    m.layers[1].q.lora = NULL;
    m.layers[0].v.lora = NULL;
    lm_forward(&m, &a, ids, NULL, B, T, &err);
    double maxd = 0.0;
    for (size_t j = 0; j < nl; j++)
        maxd = fmax(maxd, fabs((double)before[j] - a.logits[j]));
    CHECK(maxd < 1e-4, "merged LoRA logits differ by %g", maxd);
    free(before);
    lm_acts_free(&a);
    lm_lora_free(&lq);
    lm_lora_free(&lv);
    lm_model_free(&m);
}

/* LoRA on GPT-2's fused c_attn: one adapter whose output spans q, k, v. */
static void check_lora_fused(lm_backend *be) {
    lm_config cfg;
    lm_config_default(&cfg, LM_ARCH_GPT2, 13, 8, 2, 2, 2, 12, 16);
    lm_err err;
    lm_model m;
    CHECK(lm_model_init(&m, &cfg, &err) == 0, "%s", err.msg);
    CHECK(lm_model_alloc(&m, &err) == 0, "%s", err.msg);
    m.be = be;
    lm_model_init_random(&m, 6, 0.4f);
    lm_lora l;
    CHECK(lm_lora_build(&l, 8, 24, 2, 4.0f, 0.0f, 1, &err) == 0, "%s", err.msg);
    lm_rng rng;
    lm_rng_seed(&rng, 8);
    for (size_t j = 0; j < l.B.numel; j++) l.B.data[j] = 0.3f * lm_rng_normal(&rng);
    lm_lora_reserve(&l, B * T, &err);
    m.layers[0].qkv.lora = &l;
    int32_t ids[B * T], tg[B * T];
    for (int i = 0; i < B * T; i++) {
        ids[i] = (int32_t)lm_rng_below(&rng, 13);
        tg[i] = (int32_t)lm_rng_below(&rng, 13);
    }
    lm_acts a;
    CHECK(lm_acts_build(&a, &m, B, T, 1, &err) == 0, "%s", err.msg);
    loss_of(&m, &a, ids, NULL, tg, NULL);
    CHECK(lm_backward(&m, &a, ids, tg, NULL, &err) == 0, "%s", err.msg);
    lm_tensor *ts[2] = {&l.A, &l.B};
    for (int i = 0; i < 2; i++) {
        float *dir = malloc(ts[i]->numel * sizeof *dir);
        double an = 0.0;
        for (size_t j = 0; j < ts[i]->numel; j++) {
            dir[j] = lm_rng_normal(&rng);
            an += (double)ts[i]->grad[j] * dir[j];
        }
        double fd = directional_fd(&m, &a, ts[i]->data, ts[i]->numel, dir,
                                   ids, NULL, tg, NULL, 1e-3f);
        CHECK(fabs(an - fd) <= 2e-3 + 2e-2 * fabs(fd),
              "fused lora tensor %d: analytic %.6g vs fd %.6g", i, an, fd);
        free(dir);
    }
    lm_forward(&m, &a, ids, NULL, B, T, &err);
    size_t nl = (size_t)B * T * cfg.vocab_size;
    float *before = malloc(nl * sizeof *before);
    memcpy(before, a.logits, nl * sizeof *before);
    lm_lora_merge(&l, m.layers[0].qkv.w);
    m.layers[0].qkv.lora = NULL;
    lm_forward(&m, &a, ids, NULL, B, T, &err);
    double maxd = 0.0;
    for (size_t j = 0; j < nl; j++)
        maxd = fmax(maxd, fabs((double)before[j] - a.logits[j]));
    CHECK(maxd < 1e-4, "merged fused LoRA logits differ by %g", maxd);
    free(before);
    lm_acts_free(&a);
    lm_lora_free(&l);
    lm_model_free(&m);
}

int main(void) {
    lm_backend *be = lm_backend_cpu_new(0);
    check_family(be, LM_ARCH_LLAMA, 0, 0);
    check_family(be, LM_ARCH_LLAMA, 1, 0);
    check_family(be, LM_ARCH_MISTRAL, 0, 3);
    check_family(be, LM_ARCH_GPT2, 1, 0);
    check_family(be, LM_ARCH_OPT, 1, 0);
    check_lora(be);
    check_lora_fused(be);
    lm_backend_cpu_free(be);
    return check_done();
}
