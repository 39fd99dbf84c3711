/* AdamW against torch.optim.AdamW, the HF learning-rate schedules, global
 * norm clipping and the parameter list of a model. */
#include <math.h>
#include <string.h>

#include "check.h"
#include "optim.h"

/* Three AdamW steps over two parameter groups, lr 0.01, betas (0.9, 0.999),
 * eps 1e-8; p decays with weight_decay 0.1, q does not. Expected values
 * made with torch 1.13 (/usr/bin/python3):
 *   p = torch.tensor([0.5, -1.0, 2.0, 0.0, 3.0], requires_grad=True)
 *   q = torch.tensor([1.5, -0.25], requires_grad=True)
 *   opt = torch.optim.AdamW([{"params": [p], "weight_decay": 0.1},
 *                            {"params": [q], "weight_decay": 0.0}],
 *                           lr=0.01, betas=(0.9, 0.999), eps=1e-8,
 *                           foreach=False)
 *   then for each step: p.grad, q.grad = the rows of gp, gq; opt.step()
 *   and print every value with "%.9g". The 1e-9 gradient makes eps matter
 * (it is added to sqrt(v_hat), not inside the root). */
static void test_adamw_torch(void) {
    float p[5] = {0.5f, -1.0f, 2.0f, 0.0f, 3.0f}, q[2] = {1.5f, -0.25f};
    float gp[5], gq[2];
    static const float gps[3][5] = {{0.1f, -0.2f, 0.3f, 0.0f, 1e-9f},
                                    {-0.3f, 0.1f, 0.2f, 0.05f, 2.0f},
                                    {0.2f, 0.2f, -0.4f, 0.0f, -1.0f}};
    static const float gqs[3][2] = {{0.5f, -0.5f}, {0.25f, 0.0f},
                                    {-1.0f, 3.0f}};
    static const double want_p[3][5] = {
        {0.489500016, -0.989000022, 1.98800004, 0, 2.99609089},
        {0.493952423, -0.985347688, 1.97630858, -0.00744136563, 2.98565364},
        {0.493270606, -0.987089336, 1.97405934, -0.0131861214, 2.98038149}};
    static const double want_q[3][2] = {{1.49000001, -0.239999995},
                                        {1.4806782, -0.233299404},
                                        {1.48274171, -0.2387501}};
    lm_err err;
    lm_param_list pl = {0};
    CHECK(lm_params_add(&pl, p, gp, 5, 1, &err) == 0, "%s", err.msg);
    CHECK(lm_params_add(&pl, q, gq, 2, 0, &err) == 0, "%s", err.msg);
    CHECK(pl.total == 7, "total %zu", pl.total);
    lm_adamw opt;
    CHECK(lm_adamw_init(&opt, &pl, 0.9, 0.999, 1e-8, 0.1, &err) == 0, "%s",
          err.msg);
    for (int s = 0; s < 3; s++) {
        memcpy(gp, gps[s], sizeof gp);
        memcpy(gq, gqs[s], sizeof gq);
        lm_adamw_step(&opt, &pl, 0.01);
        for (int i = 0; i < 5; i++)
            CHECK(fabs(p[i] - want_p[s][i]) <= 1e-7 + 2e-7 * fabs(want_p[s][i]),
                  "step %d p[%d] = %.9g, torch %.9g", s + 1, i, (double)p[i],
                  want_p[s][i]);
        for (int i = 0; i < 2; i++)
            CHECK(fabs(q[i] - want_q[s][i]) <= 1e-7 + 2e-7 * fabs(want_q[s][i]),
                  "step %d q[%d] = %.9g, torch %.9g", s + 1, i, (double)q[i],
                  want_q[s][i]);
    }
    CHECK(opt.step == 3, "step count %ld", opt.step);
    lm_adamw_free(&opt);
    lm_params_free(&pl);

    /* Bad hyperparameters are refused. */
    CHECK(lm_adamw_init(&opt, &pl, 1.0, 0.999, 1e-8, 0.0, &err) < 0, "beta1 1");
    CHECK(lm_adamw_init(&opt, &pl, 0.9, 0.999, 1e-8, -1.0, &err) < 0, "wd < 0");
    CHECK(lm_params_add(&pl, p, NULL, 5, 1, &err) < 0, "no grad accepted");
    lm_params_free(&pl);
}

/* A first step by hand: with m = (1-b1) g and v = (1-b2) g^2 the bias
 * corrections cancel and the update is lr * g / (|g| + eps). */
static void test_adamw_first_step(void) {
    float p[3] = {1.0f, 1.0f, 1.0f}, g[3] = {2.0f, -0.5f, 0.0f};
    lm_param_list pl = {0};
    lm_err err;
    lm_params_add(&pl, p, g, 3, 1, &err);
    lm_adamw opt;
    lm_adamw_init(&opt, &pl, 0.9, 0.95, 1e-6, 0.5, &err);
    lm_adamw_step(&opt, &pl, 0.1);
    double decayed = 1.0 * (1.0 - 0.1 * 0.5);
    CHECK_NEAR(p[0], decayed - 0.1 * 2.0 / (2.0 + 1e-6), 1e-6, "p0");
    CHECK_NEAR(p[1], decayed + 0.1 * 0.5 / (0.5 + 1e-6), 1e-6, "p1");
    CHECK_NEAR(p[2], decayed, 1e-7, "p2 (zero gradient: decay only)");
    lm_adamw_free(&opt);
    lm_params_free(&pl);
}

static void test_schedules(void) {
    /* constant: linear warmup over 10 updates, then 1 */
    CHECK_NEAR(lm_sched_factor(LM_SCHED_CONSTANT, 0, 10, 100), 0.0, 1e-12, "c0");
    CHECK_NEAR(lm_sched_factor(LM_SCHED_CONSTANT, 5, 10, 100), 0.5, 1e-12, "c5");
    CHECK_NEAR(lm_sched_factor(LM_SCHED_CONSTANT, 10, 10, 100), 1.0, 1e-12, "c10");
    CHECK_NEAR(lm_sched_factor(LM_SCHED_CONSTANT, 99, 10, 100), 1.0, 1e-12, "c99");
    CHECK_NEAR(lm_sched_factor(LM_SCHED_CONSTANT, 3, 0, 100), 1.0, 1e-12, "c nowarm");
    /* linear: up to 1 at step 10, down to 0 at step 100 */
    CHECK_NEAR(lm_sched_factor(LM_SCHED_LINEAR, 5, 10, 100), 0.5, 1e-12, "l5");
    CHECK_NEAR(lm_sched_factor(LM_SCHED_LINEAR, 10, 10, 100), 1.0, 1e-12, "l10");
    CHECK_NEAR(lm_sched_factor(LM_SCHED_LINEAR, 55, 10, 100), 0.5, 1e-12, "l55");
    CHECK_NEAR(lm_sched_factor(LM_SCHED_LINEAR, 91, 10, 100), 0.1, 1e-12, "l91");
    CHECK_NEAR(lm_sched_factor(LM_SCHED_LINEAR, 100, 10, 100), 0.0, 1e-12, "l100");
    CHECK_NEAR(lm_sched_factor(LM_SCHED_LINEAR, 130, 10, 100), 0.0, 1e-12, "l130");
    CHECK_NEAR(lm_sched_factor(LM_SCHED_LINEAR, 0, 0, 4), 1.0, 1e-12, "l0 nowarm");
    CHECK_NEAR(lm_sched_factor(LM_SCHED_LINEAR, 3, 0, 4), 0.25, 1e-12, "l3 nowarm");
    /* cosine (0.5 cycles): warmup 10 then half a cosine over 100 updates */
    CHECK_NEAR(lm_sched_factor(LM_SCHED_COSINE, 4, 10, 110), 0.4, 1e-12, "cos4");
    CHECK_NEAR(lm_sched_factor(LM_SCHED_COSINE, 10, 10, 110), 1.0, 1e-12, "cos10");
    CHECK_NEAR(lm_sched_factor(LM_SCHED_COSINE, 35, 10, 110),
               0.5 * (1.0 + cos(M_PI * 0.25)), 1e-12, "cos35");
    CHECK_NEAR(lm_sched_factor(LM_SCHED_COSINE, 60, 10, 110), 0.5, 1e-12, "cos60");
    CHECK_NEAR(lm_sched_factor(LM_SCHED_COSINE, 110, 10, 110), 0.0, 1e-12, "cos110");
    CHECK_NEAR(lm_sched_factor(LM_SCHED_COSINE, 150, 10, 110), 0.0, 1e-12,
               "cos past the end stays at 0");
    lm_sched s;
    CHECK(lm_sched_from_name("cosine", &s) == 0 && s == LM_SCHED_COSINE, "name");
    CHECK(strcmp(lm_sched_name(LM_SCHED_LINEAR), "linear") == 0, "linear");
    CHECK(lm_sched_from_name("exponential", &s) < 0, "unknown schedule");
}

/* torch.nn.utils.clip_grad_norm_ on grads [3, 4] and [12] with max 1
 * gives norm 13 and grads [0.230769217, 0.307692289], [0.923076868]. */
static void test_clip(void) {
    float d1[2] = {0}, d2[1] = {0}, g1[2] = {3.0f, 4.0f}, g2[1] = {12.0f};
    lm_param_list pl = {0};
    lm_err err;
    lm_params_add(&pl, d1, g1, 2, 1, &err);
    lm_params_add(&pl, d2, g2, 1, 0, &err);
    CHECK_NEAR(lm_clip_grad_norm(&pl, 0.0), 13.0, 1e-9, "measure only");
    CHECK(g1[0] == 3.0f && g2[0] == 12.0f, "max 0 must not clip");
    CHECK_NEAR(lm_clip_grad_norm(&pl, 20.0), 13.0, 1e-9, "under the limit");
    CHECK(g1[1] == 4.0f, "under the limit must not clip");
    CHECK_NEAR(lm_clip_grad_norm(&pl, 1.0), 13.0, 1e-9, "pre-clip norm");
    CHECK_NEAR(g1[0], 0.230769217, 1e-7, "g1[0]");
    CHECK_NEAR(g1[1], 0.307692289, 1e-7, "g1[1]");
    CHECK_NEAR(g2[0], 0.923076868, 1e-7, "g2[0]");
    CHECK_NEAR(lm_params_grad_norm(&pl), 1.0, 1e-6, "clipped norm");
    lm_params_zero_grad(&pl);
    CHECK(g1[0] == 0.0f && g2[0] == 0.0f, "zeroed");
    lm_params_free(&pl);
}

/* Full fine-tuning collects every tensor; 1-D ones decay only on request. */
static void test_model_params(void) {
    lm_config cfg;
    lm_config_default(&cfg, LM_ARCH_GPT2, 17, 8, 2, 2, 2, 16, 12);
    lm_model m;
    lm_err err;
    CHECK(lm_model_init(&m, &cfg, &err) == 0, "%s", err.msg);
    CHECK(lm_model_alloc(&m, &err) == 0, "%s", err.msg);
    lm_param_list pl = {0};
    CHECK(lm_params_add_model(&pl, &m, 0, &err) < 0, "no grads yet");
    CHECK(strstr(err.msg, "gradient") != NULL, "message: %s", err.msg);
    lm_params_free(&pl);
    CHECK(lm_model_alloc_grads(&m, &err) == 0, "%s", err.msg);
    CHECK(lm_params_add_model(&pl, &m, 0, &err) == 0, "%s", err.msg);
    CHECK(pl.n == m.n_params, "%d refs for %d tensors", pl.n, m.n_params);
    CHECK(pl.total == lm_model_param_count(&m), "total %zu", pl.total);
    int decays = 0, twod = 0;
    for (int i = 0; i < pl.n; i++) decays += pl.refs[i].decay;
    for (int i = 0; i < m.n_params; i++) twod += m.params[i].ndim == 2;
    CHECK(decays == twod, "%d decaying refs, %d matrices", decays, twod);
    lm_params_free(&pl);
    CHECK(lm_params_add_model(&pl, &m, 1, &err) == 0, "%s", err.msg);
    decays = 0;
    for (int i = 0; i < pl.n; i++) decays += pl.refs[i].decay;
    CHECK(decays == pl.n, "decay_1d: all %d decay (%d)", pl.n, decays);
    lm_params_free(&pl);
    lm_model_free(&m);
}

int main(void) {
    test_adamw_torch();
    test_adamw_first_step();
    test_schedules();
    test_clip();
    test_model_params();
    return check_done();
}
