/* Removal methods prune, task-arithmetic, dare, cleangen and token-forcing,
 * run through their registry entries' `run` (and build_policy) the way
 * smudge remove and smudge eval call them, on tiny random models and on
 * the real stories260K:
 *  - magnitude pruning zeroes exactly the smallest fraction of each matrix;
 *    structured pruning zeroes whole heads/channels (the lowest scores,
 *    checked against scores recomputed here) and the result reloads and
 *    scores; Taylor scores equal sums of |w g| and |w g - w F w / 2| with g
 *    and F from gradients computed here (and g checked by finite
 *    differences);
 *  - Task Arithmetic and DARE on hand-made tensors: the formula, DARE's
 *    kept fraction and preserved expectation, same seed same result;
 *  - CleanGen equals greedy with the target as its own reference, and
 *    replaces an implanted response with the clean reference's tokens;
 *  - token forcing finds a response implanted into stories260K with LoRA
 *    and blocks it; both policies round-trip through policy.json.
 * SMUDGE_RM_VERBOSE=1 prints progress. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <cjson/cJSON.h>

#include "check.h"
#include "generate.h"
#include "method.h"
#include "removal.h"
#include "tokenizer.h"
#include "train.h"

static int verbose;
static lm_backend *be;
static char tmp_root[256];

static double now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec * 1e-9;
}

static void quiet_progress(void *ctx, double f, const char *what) {
    if (verbose) fprintf(stderr, "    [%3.0f%%] %s\n", 100 * f, what);
}
static void quiet_cost(void *ctx, const char *step, double s, double tokens, double flops) {
    if (verbose) fprintf(stderr, "    cost %s: %.2fs %.0f tokens %.3g flops\n", step, s, tokens, flops);
}
static const sm_reporter reporter = {NULL, quiet_progress, quiet_cost};

static void tmp_path(char *out, size_t cap, const char *name) {
    snprintf(out, cap, "%s/%s", tmp_root, name);
}

/* A tiny Llama with random weights (GQA when kvh < heads). */
static void tiny_model(lm_model *m, int V, int C, int L, int H, int KVH, int F, uint64_t seed) {
    lm_config cfg;
    lm_config_default(&cfg, LM_ARCH_LLAMA, V, C, L, H, KVH, F, 64);
    cfg.bos_id = 1;
    cfg.eos_id = 2;
    lm_err err;
    CHECK(lm_model_init(m, &cfg, &err) == 0, "%s", err.msg);
    CHECK(lm_model_alloc(m, &err) == 0, "%s", err.msg);
    m->be = be;
    lm_model_init_random(m, seed, 0.3f);
}

/* Runs a registered method with "k=v" assignments. */
static int run_method(const char *name, lm_model *m, const char *model_path, lm_model *ref,
                      const char *ref_path, const sm_data *data, int n_data,
                      const char *const *assign, int n_assign, const char *out_dir, lm_err *err) {
    const sm_method *me = sm_method_find(name);
    if (!me) return lm_errf(err, "method %s not registered", name);
    sm_params p;
    if (sm_params_parse(me, assign, n_assign, &p, err)) return -1;
    mkdir(out_dir, 0755);
    sm_input in = {.model = m, .model_path = model_path, .reference = ref,
                   .reference_path = ref_path, .data = data, .n_data = n_data,
                   .params = &p, .seed = 7, .work_dir = tmp_root, .out_dir = out_dir,
                   .rep = &reporter};
    return me->run(&in, err);
}

static int is_zero(const float *x, size_t n, size_t stride) {
    for (size_t i = 0; i < n; i++)
        if (x[i * stride] != 0.0f) return 0;
    return 1;
}

/* ---- parameters ---- */

static void test_params(void) {
    static const char *const names[] = {"prune", "task-arithmetic", "dare", "cleangen", "token-forcing"};
    static const char *const bad[][2] = {
        {"prune", "kind=l3"}, {"prune", "ratio=1.5"}, {"prune", "calib_n=0"}, {"prune", "scope=world"},
        {"task-arithmetic", "w_fp=x"}, {"dare", "density=0"}, {"dare", "ties=maybe"},
        {"cleangen", "alpha=0.5"}, {"cleangen", "k=0"}, {"token-forcing", "threshold=2"},
        {"token-forcing", "probe_len=100"}, {"token-forcing", "no_such=1"},
    };
    lm_err err;
    for (int i = 0; i < 5; i++) {
        const sm_method *m = sm_method_find(names[i]);
        CHECK(m != NULL, "%s not registered", names[i]);
        if (!m) continue;
        sm_params p;
        CHECK(sm_params_parse(m, NULL, 0, &p, &err) == 0, "%s defaults: %s", names[i], err.msg);
        for (int k = 0; k < m->n_params; k++)
            CHECK(m->params[k].help && m->params[k].help[0], "%s.%s has no help", names[i], m->params[k].name);
        CHECK(m->output == (i >= 3 ? SM_OUT_POLICY : SM_OUT_MODEL), "%s output kind", names[i]);
    }
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        sm_params p;
        const char *a = bad[i][1];
        char name[64];
        snprintf(name, sizeof name, "%.*s", (int)(strchr(a, '=') - a), a);
        CHECK(sm_params_parse(sm_method_find(bad[i][0]), &a, 1, &p, &err) != 0 &&
                  strstr(err.msg, bad[i][0]) && strstr(err.msg, name),
              "%s %s accepted or badly reported: %s", bad[i][0], a, err.msg);
    }
}

/* ---- pruning ---- */

static void test_smallest(void) {
    float w[6] = {3, -1, 0.5f, -0.5f, 2, 0.5f};
    CHECK(sm_prune_smallest(w, NULL, 6, 2.0 / 6) == 2, "k");
    CHECK(w[2] == 0 && w[3] == 0 && w[5] == 0.5f && w[1] == -1, "ties go to the lower index "
          "(%g %g %g)", w[2], w[3], w[5]);
    float v[5] = {1, 2, 3, 4, 5}, s[5] = {5, 1, 4, 2, 3};
    CHECK(sm_prune_smallest(v, s, 5, 0.4) == 2, "k by score");
    CHECK(v[1] == 0 && v[3] == 0 && v[0] == 1 && v[4] == 5, "zeroed by score, not by |w|");
    float z[4] = {1, 2, 3, 4};
    CHECK(sm_prune_smallest(z, NULL, 4, 1.0) == 4 && is_zero(z, 4, 1), "ratio 1 zeroes all");
    float nan_w[3] = {NAN, 1, -2};
    sm_prune_smallest(nan_w, NULL, 3, 2.0 / 3);
    CHECK(isnan(nan_w[0]) && nan_w[1] == 0 && nan_w[2] == 0, "NaN counts as the largest");
}

static void test_magnitude(void) {
    lm_model m, orig;
    tiny_model(&m, 32, 16, 3, 4, 2, 24, 11);
    tiny_model(&orig, 32, 16, 3, 4, 2, 24, 11);
    char out[300];
    tmp_path(out, sizeof out, "magnitude");
    const char *assign[] = {"kind=magnitude", "ratio=0.3"};
    lm_err err;
    CHECK(run_method("prune", &m, NULL, NULL, NULL, NULL, 0, assign, 2, out, &err) == 0, "%s", err.msg);
    for (int i = 0; i < m.n_params; i++) {
        const lm_tensor *t = &m.params[i], *o = &orig.params[i];
        int block = t->ndim == 2 && strstr(t->name, "layers.") != NULL;
        size_t zeros = 0;
        float max_zeroed = 0, min_kept = INFINITY;
        for (size_t e = 0; e < t->numel; e++) {
            if (t->data[e] == 0.0f) {
                zeros++;
                if (fabsf(o->data[e]) > max_zeroed) max_zeroed = fabsf(o->data[e]);
            } else {
                CHECK(t->data[e] == o->data[e], "%s[%zu] changed without being zeroed", t->name, e);
                if (fabsf(o->data[e]) < min_kept) min_kept = fabsf(o->data[e]);
            }
        }
        if (block) {
            size_t k = (size_t)floor(0.3 * t->numel + 0.5);
            CHECK(zeros == k, "%s: %zu zeros, expected %zu", t->name, zeros, k);
            CHECK(max_zeroed <= min_kept, "%s: zeroed |w| %g above kept %g", t->name, max_zeroed, min_kept);
        } else {
            CHECK(zeros == 0, "%s is not a block matrix but lost %zu entries", t->name, zeros);
        }
    }
    /* global scope: 30% over all block matrices together */
    lm_model g;
    tiny_model(&g, 32, 16, 3, 4, 2, 24, 11);
    const char *ga[] = {"kind=magnitude", "ratio=0.3", "scope=global"};
    CHECK(run_method("prune", &g, NULL, NULL, NULL, NULL, 0, ga, 3, out, &err) == 0, "%s", err.msg);
    size_t zeros = 0, total = 0;
    for (int i = 0; i < g.n_params; i++)
        if (g.params[i].ndim == 2 && strstr(g.params[i].name, "layers.")) {
            total += g.params[i].numel;
            for (size_t e = 0; e < g.params[i].numel; e++) zeros += g.params[i].data[e] == 0.0f;
        }
    CHECK(zeros == (size_t)floor(0.3 * total + 0.5), "global: %zu of %zu", zeros, total);
    lm_model_free(&g);
    lm_model_free(&m);
    lm_model_free(&orig);
}

/* Head and channel scores recomputed here, the plain way. */
static double l2_head(const lm_model *m, int l, int h) {
    const lm_layer *L = &m->layers[l];
    int C = m->cfg.d_model, D = m->cfg.head_dim, G = m->cfg.n_heads / m->cfg.n_kv_heads, g = h / G;
    int HD = m->cfg.n_heads * D;
    double q = 0, k = 0, v = 0, o = 0;
    for (int r = h * D; r < (h + 1) * D; r++)
        for (int c = 0; c < C; c++) {
            q += pow(L->q.w->data[(size_t)r * C + c], 2);
            o += pow(L->o.w->data[(size_t)c * HD + r], 2);
        }
    for (int r = g * D; r < (g + 1) * D; r++)
        for (int c = 0; c < C; c++) {
            k += pow(L->k.w->data[(size_t)r * C + c], 2);
            v += pow(L->v.w->data[(size_t)r * C + c], 2);
        }
    return (q + k + v + o) / 4;
}

static void test_structured(void) {
    lm_model m, orig;
    /* 4 layers: the rule for L < 8 prunes [1, 3) */
    tiny_model(&m, 32, 32, 4, 4, 2, 32, 5);
    tiny_model(&orig, 32, 32, 4, 4, 2, 32, 5);
    int H = 4, D = 8, F = 32, C = 32;
    /* make head 2 of layer 1 and channel 7 of layer 2 clearly weakest */
    for (int c = 0; c < C; c++)
        for (int r = 2 * D; r < 3 * D; r++) m.layers[1].q.w->data[(size_t)r * C + c] *= 0.01f;
    for (int c = 0; c < C; c++) m.layers[2].up.w->data[(size_t)7 * C + c] *= 0.01f;
    memcpy(orig.layers[1].q.w->data, m.layers[1].q.w->data, m.layers[1].q.w->numel * sizeof(float));
    memcpy(orig.layers[2].up.w->data, m.layers[2].up.w->data, m.layers[2].up.w->numel * sizeof(float));
    sm_prune_scores s;
    lm_err err;
    CHECK(sm_prune_score(&orig, SM_PRUNE_L2, SM_TAYLOR_MIX, NULL, 0, 0, 1, &s, &err) == 0, "%s", err.msg);
    for (int l = 0; l < 4; l++)
        for (int h = 0; h < H; h++)
            CHECK_NEAR(s.head[l * H + h], l2_head(&orig, l, h), 1e-6 * (1 + l2_head(&orig, l, h)), "l2 head");
    for (int i = 0; i < F; i++) {
        double want = 0;
        for (int c = 0; c < C; c++)
            want += pow(orig.layers[3].gate.w->data[(size_t)i * C + c], 2) +
                    pow(orig.layers[3].up.w->data[(size_t)i * C + c], 2) +
                    pow(orig.layers[3].down.w->data[(size_t)c * F + i], 2);
        CHECK_NEAR(s.chan[3 * F + i], want / 3, 1e-6 * (1 + want), "l2 channel");
    }
    char out[300];
    tmp_path(out, sizeof out, "structured");
    const char *assign[] = {"kind=l2", "ratio=0.5"};
    CHECK(run_method("prune", &m, NULL, NULL, NULL, NULL, 0, assign, 2, out, &err) == 0, "%s", err.msg);
    /* ratio 0.5 of 32 channels: 16 -> 2 heads and 16 MLP channels per pruned layer */
    for (int l = 0; l < 4; l++) {
        const lm_layer *L = &m.layers[l];
        int heads = 0, chans = 0;
        int pruned[4] = {0};
        for (int h = 0; h < H; h++) {
            int q0 = is_zero(L->q.w->data + (size_t)h * D * C, (size_t)D * C, 1);
            int o0 = 1;
            for (int r = 0; r < C; r++) o0 &= is_zero(L->o.w->data + (size_t)r * C + h * D, D, 1);
            CHECK(q0 == o0, "layer %d head %d: q rows and o columns disagree", l, h);
            pruned[h] = q0;
            heads += q0;
        }
        for (int g = 0; g < 2; g++) {
            int k0 = is_zero(L->k.w->data + (size_t)g * D * C, (size_t)D * C, 1);
            int v0 = is_zero(L->v.w->data + (size_t)g * D * C, (size_t)D * C, 1);
            CHECK(k0 == v0 && k0 == (pruned[2 * g] && pruned[2 * g + 1]),
                  "layer %d kv head %d zeroed %d/%d, its query heads %d %d", l, g, k0, v0,
                  pruned[2 * g], pruned[2 * g + 1]);
        }
        for (int i = 0; i < F; i++) {
            int g0 = is_zero(L->gate.w->data + (size_t)i * C, C, 1);
            int u0 = is_zero(L->up.w->data + (size_t)i * C, C, 1);
            int d0 = is_zero(L->down.w->data + i, C, F);
            CHECK(g0 == u0 && u0 == d0, "layer %d channel %d partly zeroed", l, i);
            chans += g0;
        }
        int inside = l >= 1 && l < 3;
        CHECK(heads == (inside ? 2 : 0) && chans == (inside ? 16 : 0),
              "layer %d: %d heads, %d channels pruned", l, heads, chans);
        if (!inside) continue;
        /* the pruned ones are the lowest scores */
        double worst_pruned = -1, best_kept = INFINITY;
        for (int h = 0; h < H; h++) {
            double v = s.head[l * H + h];
            if (pruned[h]) worst_pruned = fmax(worst_pruned, v);
            else best_kept = fmin(best_kept, v);
        }
        CHECK(worst_pruned <= best_kept, "layer %d: pruned head score %g above kept %g", l,
              worst_pruned, best_kept);
    }
    CHECK(is_zero(m.layers[1].q.w->data + (size_t)2 * D * C, (size_t)D * C, 1), "weak head 2 kept");
    CHECK(is_zero(m.layers[2].up.w->data + (size_t)7 * C, C, 1), "weak channel 7 kept");
    sm_prune_scores_free(&s);
    /* global: the same totals, ranked over both pruned layers together */
    lm_model g;
    tiny_model(&g, 32, 32, 4, 4, 2, 32, 5);
    for (int c = 0; c < C; c++)
        for (int r = 0; r < 2 * D; r++) g.layers[2].q.w->data[(size_t)r * C + c] *= 0.01f;
    const char *ga[] = {"kind=l2", "ratio=0.5", "scope=global"};
    char gout[300];
    tmp_path(gout, sizeof gout, "structured_global");
    CHECK(run_method("prune", &g, NULL, NULL, NULL, NULL, 0, ga, 3, gout, &err) == 0, "%s", err.msg);
    int gh[4] = {0}, gc = 0;
    for (int l = 0; l < 4; l++) {
        for (int h = 0; h < H; h++) gh[l] += is_zero(g.layers[l].q.w->data + (size_t)h * D * C, (size_t)D * C, 1);
        for (int i = 0; i < F; i++) gc += is_zero(g.layers[l].up.w->data + (size_t)i * C, C, 1);
    }
    CHECK(gh[0] == 0 && gh[3] == 0 && gh[1] + gh[2] == 4 && gh[2] >= 2 && gc == 32,
          "global: heads %d %d %d %d, channels %d", gh[0], gh[1], gh[2], gh[3], gc);
    lm_model_free(&g);
    /* The folder reloads as the same architecture and scores. */
    lm_model r;
    CHECK(lm_model_load(&r, out, &err) == 0, "%s", err.msg);
    r.be = be;
    CHECK(r.cfg.n_heads == H && r.cfg.ffn_dim == F, "shape changed");
    int32_t ids[12] = {1, 5, 9, 3, 30, 7, 7, 8, 21, 4, 2, 11};
    float lp[11];
    CHECK(lm_score_ids(&r, ids, 12, lp, &err) == 0, "%s", err.msg);
    int finite = 1;
    for (int i = 0; i < 11; i++) finite &= isfinite(lp[i]) && lp[i] <= 0;
    CHECK(finite, "pruned model scores are not log-probabilities");
    lm_model_free(&r);
    lm_model_free(&m);
    lm_model_free(&orig);
}

/* Mean next-token loss of the n sequences, and its gradient (for g). */
static double mean_loss(lm_model *m, const int32_t *calib, int n, int T) {
    lm_acts a;
    lm_err err;
    double sum = 0;
    if (lm_acts_build(&a, m, 1, T, 0, &err)) return NAN;
    int32_t tg[16];
    for (int j = 0; j < n; j++) {
        for (int t = 0; t < T; t++) tg[t] = t + 1 < T ? calib[j * T + t + 1] : -1;
        lm_forward(m, &a, calib + j * T, NULL, 1, T, &err);
        sum += lm_loss(m, &a, tg, NULL, NULL);
    }
    lm_acts_free(&a);
    return sum / n;
}

static void test_taylor_scores(void) {
    lm_model m;
    tiny_model(&m, 16, 8, 2, 2, 1, 8, 3);
    int H = 2, D = 4, C = 8, F = 8, n = 2, T = 5, L = 2;
    int32_t calib[10] = {1, 4, 9, 12, 3, 1, 7, 7, 2, 15};
    /* g and F by hand: one backward per sequence */
    lm_err err;
    CHECK(lm_model_alloc_grads(&m, &err) == 0, "%s", err.msg);
    size_t total = 0;
    for (int i = 0; i < m.n_params; i++) total += m.params[i].numel;
    double *g = calloc(total, sizeof *g), *fi = calloc(total, sizeof *fi);
    lm_acts a;
    CHECK(lm_acts_build(&a, &m, 1, T, 1, &err) == 0, "%s", err.msg);
    for (int j = 0; j < n; j++) {
        int32_t tg[5];
        for (int t = 0; t < T; t++) tg[t] = t + 1 < T ? calib[j * T + t + 1] : -1;
        lm_model_zero_grads(&m);
        lm_forward(&m, &a, calib + j * T, NULL, 1, T, &err);
        lm_loss(&m, &a, tg, NULL, NULL);
        CHECK(lm_backward(&m, &a, calib + j * T, tg, NULL, &err) == 0, "%s", err.msg);
        size_t off = 0;
        for (int i = 0; i < m.n_params; i++)
            for (size_t e = 0; e < m.params[i].numel; e++, off++) {
                double gr = m.params[i].grad[e];
                g[off] += gr / n;
                fi[off] += gr * gr / n;
            }
    }
    lm_acts_free(&a);
    /* g checked by a central difference on a few weights of q and down */
    lm_tensor *probe[2] = {m.layers[1].q.w, m.layers[0].down.w};
    for (int k = 0; k < 2; k++) {
        size_t off = 0;
        for (int i = 0; &m.params[i] != probe[k]; i++) off += m.params[i].numel;
        for (size_t e = 3; e < probe[k]->numel; e += 11) {
            float keep = probe[k]->data[e], h = 1e-2f;
            probe[k]->data[e] = keep + h;
            double up = mean_loss(&m, calib, n, T);
            probe[k]->data[e] = keep - h;
            double dn = mean_loss(&m, calib, n, T);
            probe[k]->data[e] = keep;
            double fd = (up - dn) / (2 * h);
            CHECK(fabs(fd - g[off + e]) <= 2e-3 + 2e-2 * fabs(fd), "%s[%zu]: dL/dw %g, finite difference %g",
                  probe[k]->name, e, g[off + e], fd);
        }
    }
    sm_taylor_mode modes[2] = {SM_TAYLOR_FIRST, SM_TAYLOR_MIX};
    for (int mi = 0; mi < 2; mi++) {
        sm_prune_scores s;
        CHECK(sm_prune_score(&m, SM_PRUNE_TAYLOR, modes[mi], calib, n, T, 1, &s, &err) == 0, "%s", err.msg);
        for (int l = 0; l < L; l++) {
            const lm_layer *ly = &m.layers[l];
            const lm_tensor *ts[7] = {ly->q.w, ly->k.w, ly->v.w, ly->o.w, ly->gate.w, ly->up.w, ly->down.w};
            size_t offs[7];
            for (int k = 0; k < 7; k++) {
                offs[k] = 0;
                for (int i = 0; &m.params[i] != ts[k]; i++) offs[k] += m.params[i].numel;
            }
#define SAL(k, e) (ts[k]->data[e] * g[offs[k] + (e)] - \
                   (mi ? 0.5 * ts[k]->data[e] * fi[offs[k] + (e)] * ts[k]->data[e] : 0.0))
            for (int h = 0; h < H; h++) {
                double want = 0;
                for (int r = h * D; r < (h + 1) * D; r++)
                    for (int c = 0; c < C; c++)
                        for (int k = 0; k < 3; k++) want += fabs(SAL(k, (size_t)(k ? r - h * D : r) * C + c));
                for (int r = 0; r < C; r++)
                    for (int c = h * D; c < (h + 1) * D; c++) want += fabs(SAL(3, (size_t)r * H * D + c));
                CHECK_NEAR(s.head[l * H + h], want, 1e-5 * (1 + want), "taylor head");
            }
            for (int i = 0; i < F; i++) {
                double want = 0;
                for (int c = 0; c < C; c++)
                    want += fabs(SAL(4, (size_t)i * C + c)) + fabs(SAL(5, (size_t)i * C + c)) +
                            fabs(SAL(6, (size_t)c * F + i));
                CHECK_NEAR(s.chan[l * F + i], want, 1e-5 * (1 + want), "taylor channel");
            }
#undef SAL
        }
        sm_prune_scores_free(&s);
    }
    free(g);
    free(fi);
    lm_model_free(&m);
}


/* ---- merging ---- */

static void test_merge_math(void) {
    lm_err err;
    float base[4] = {1, 2, 3, 4}, fp[4] = {2, 2, 5, 0}, other[4] = {1, 4, 3, 8}, out[4];
    const float *models[2] = {fp, other};
    double w[2] = {0.8, 0.2};
    sm_merge_opts ta = {0};
    CHECK(sm_merge_tensor(out, base, models, w, 2, 4, &ta, 0, &err) == 0, "%s", err.msg);
    for (int i = 0; i < 4; i++)
        CHECK_NEAR(out[i], base[i] + 0.8 * (fp[i] - base[i]) + 0.2 * (other[i] - base[i]), 1e-6, "TA");
    double w11[2] = {1, 1};
    sm_merge_opts norm = {.normalize = 1};
    CHECK(sm_merge_tensor(out, base, models, w11, 2, 4, &norm, 0, &err) == 0, "%s", err.msg);
    for (int i = 0; i < 4; i++) CHECK_NEAR(out[i], (fp[i] + other[i]) / 2, 1e-6, "normalised TA");
    /* in place, as the method runs it (out is the fingerprinted model) */
    float fp2[4];
    memcpy(fp2, fp, sizeof fp);
    const float *m2[2] = {fp2, other};
    CHECK(sm_merge_tensor(fp2, base, m2, w, 2, 4, &ta, 0, &err) == 0, "%s", err.msg);
    CHECK_NEAR(fp2[2], 3 + 0.8 * 2, 1e-6, "in place");
    /* TIES: deltas +1 and -2 with equal weights elect '-', keep only -2 */
    float b1[1] = {0}, pa[1] = {1}, pb[1] = {-2}, o1[1];
    const float *mt[2] = {pa, pb};
    sm_merge_opts ties = {.dare = 1, .density = 1, .rescale = 1, .ties = 1, .seed = 3};
    CHECK(sm_merge_tensor(o1, b1, mt, w11, 2, 1, &ties, 0, &err) == 0, "%s", err.msg);
    CHECK_NEAR(o1[0], -2, 1e-6, "TIES sign election");

    /* DARE: one delta of ones, density 0.4, rescaled by 1/0.4 */
    enum { N = 100000 };
    float *zero = calloc(N, sizeof(float)), *ones = malloc(N * sizeof(float));
    float *a = malloc(N * sizeof(float)), *b = malloc(N * sizeof(float));
    for (int i = 0; i < N; i++) ones[i] = 1;
    const float *mo[2] = {ones, zero};
    double w10[2] = {1, 0};
    sm_merge_opts dare = {.dare = 1, .density = 0.4, .rescale = 1, .seed = 42};
    CHECK(sm_merge_tensor(a, zero, mo, w10, 2, N, &dare, 5, &err) == 0, "%s", err.msg);
    double kept = 0, sum = 0;
    int values_ok = 1;
    for (int i = 0; i < N; i++) {
        kept += a[i] != 0;
        sum += a[i];
        values_ok &= a[i] == 0 || fabsf(a[i] - 2.5f) < 1e-6f;
    }
    CHECK(fabs(kept / N - 0.4) < 0.01, "kept fraction %g, density 0.4", kept / N);
    CHECK(fabs(sum / N - 1.0) < 0.02, "mean after rescale %g, delta 1", sum / N);
    CHECK(values_ok, "kept deltas are not 1/0.4");
    CHECK(sm_merge_tensor(b, zero, mo, w10, 2, N, &dare, 5, &err) == 0, "%s", err.msg);
    CHECK(memcmp(a, b, N * sizeof(float)) == 0, "same seed, different DARE masks");
    sm_merge_opts dare2 = dare;
    dare2.seed = 43;
    CHECK(sm_merge_tensor(b, zero, mo, w10, 2, N, &dare2, 5, &err) == 0, "%s", err.msg);
    CHECK(memcmp(a, b, N * sizeof(float)) != 0, "another seed, same DARE masks");
    CHECK(sm_merge_tensor(b, zero, mo, w10, 2, N, &dare, 6, &err) == 0, "%s", err.msg);
    CHECK(memcmp(a, b, N * sizeof(float)) != 0, "another tensor, same DARE mask");
    sm_merge_opts plain = dare;
    plain.rescale = 0;
    CHECK(sm_merge_tensor(b, zero, mo, w10, 2, N, &plain, 5, &err) == 0, "%s", err.msg);
    sum = 0;
    for (int i = 0; i < N; i++) sum += b[i];
    CHECK(fabs(sum / N - 0.4) < 0.01, "without rescale the mean is the density (%g)", sum / N);
    /* two deltas get independent masks: 0, 1, 2 in proportions 1/4 1/2 1/4 */
    const float *mm[2] = {ones, ones};
    double wh[2] = {0.5, 0.5};
    sm_merge_opts half = {.dare = 1, .density = 0.5, .rescale = 1, .seed = 9};
    CHECK(sm_merge_tensor(a, zero, mm, wh, 2, N, &half, 0, &err) == 0, "%s", err.msg);
    double c0 = 0, c1 = 0, c2 = 0;
    for (int i = 0; i < N; i++) {
        c0 += a[i] == 0;
        c1 += fabsf(a[i] - 1) < 1e-6f;
        c2 += fabsf(a[i] - 2) < 1e-6f;
    }
    CHECK(fabs(c0 / N - 0.25) < 0.01 && fabs(c1 / N - 0.5) < 0.01 && fabs(c2 / N - 0.25) < 0.01,
          "mask overlap %g %g %g", c0 / N, c1 / N, c2 / N);
    free(zero);
    free(ones);
    free(a);
    free(b);
}

static char *slurp_file(const char *path, size_t *n) {
    FILE *f = fopen(path, "rb");
    if (!f) return NULL;
    fseek(f, 0, SEEK_END);
    long len = ftell(f);
    fseek(f, 0, SEEK_SET);
    char *b = malloc((size_t)len + 1);
    if (b && fread(b, 1, (size_t)len, f) != (size_t)len) {
        free(b);
        b = NULL;
    }
    if (b) b[len] = 0;
    fclose(f);
    *n = (size_t)len;
    return b;
}

static void test_merge_models(void) {
    lm_model fp, base, other, orig;
    tiny_model(&fp, 32, 16, 2, 4, 4, 24, 1);
    tiny_model(&orig, 32, 16, 2, 4, 4, 24, 1);
    tiny_model(&base, 32, 16, 2, 4, 4, 24, 2);
    tiny_model(&other, 32, 16, 2, 4, 4, 24, 3);
    char bdir[300], out[300], out2[300], arg[400];
    tmp_path(bdir, sizeof bdir, "merge_base");
    tmp_path(out, sizeof out, "merge_ta");
    tmp_path(out2, sizeof out2, "merge_dare");
    lm_err err;
    CHECK(lm_model_save_hf(&base, bdir, &err) == 0, "%s", err.msg);
    snprintf(arg, sizeof arg, "base=%s", bdir);
    const char *ta[] = {arg, "w_fp=0.7", "w_other=0.3"};
    CHECK(run_method("task-arithmetic", &fp, NULL, &other, "other", NULL, 0, ta, 3, out, &err) == 0,
          "%s", err.msg);
    lm_model r;
    CHECK(lm_model_load(&r, out, &err) == 0, "%s", err.msg);
    double worst = 0;
    for (int i = 0; i < r.n_params; i++)
        for (size_t e = 0; e < r.params[i].numel; e++) {
            double b = base.params[i].data[e];
            double want = b + 0.7 * (orig.params[i].data[e] - b) + 0.3 * (other.params[i].data[e] - b);
            worst = fmax(worst, fabs(r.params[i].data[e] - want));
        }
    CHECK(worst < 1e-5, "task arithmetic on the models: worst error %g", worst);
    lm_model_free(&r);
    /* DARE twice with one seed: the same file */
    const char *da[] = {arg, "seed=5"};
    char f1[400], f2[400];
    size_t n1 = 0, n2 = 0;
    lm_model fp1, fp2;
    tiny_model(&fp1, 32, 16, 2, 4, 4, 24, 1);
    tiny_model(&fp2, 32, 16, 2, 4, 4, 24, 1);
    CHECK(run_method("dare", &fp1, NULL, &other, "other", NULL, 0, da, 2, out2, &err) == 0, "%s", err.msg);
    snprintf(f1, sizeof f1, "%s/model.safetensors", out2);
    char *a = slurp_file(f1, &n1);
    snprintf(f2, sizeof f2, "%s2", out2);
    CHECK(run_method("dare", &fp2, NULL, &other, "other", NULL, 0, da, 2, f2, &err) == 0, "%s", err.msg);
    strcat(f2, "/model.safetensors");
    char *b = slurp_file(f2, &n2);
    CHECK(a && b && n1 == n2 && memcmp(a, b, n1) == 0, "DARE with one seed wrote two different models");
    free(a);
    free(b);
    /* refused without a base, and without a partner */
    lm_model fp3;
    tiny_model(&fp3, 32, 16, 2, 4, 4, 24, 1);
    CHECK(run_method("dare", &fp3, NULL, &other, "other", NULL, 0, NULL, 0, out2, &err) != 0 &&
              strstr(err.msg, "base"), "no base: %s", err.msg);
    CHECK(run_method("dare", &fp3, NULL, NULL, NULL, NULL, 0, da, 1, out2, &err) != 0 &&
              strstr(err.msg, "--reference"), "no partner: %s", err.msg);
    lm_model odd;
    tiny_model(&odd, 32, 16, 3, 4, 4, 24, 3);
    CHECK(run_method("task-arithmetic", &fp3, NULL, &odd, "odd", NULL, 0, ta, 1, out2, &err) != 0 &&
              strstr(err.msg, "architecture"), "mismatched partner: %s", err.msg);
    lm_model_free(&odd);
    lm_model_free(&fp1);
    lm_model_free(&fp2);
    lm_model_free(&fp3);
    lm_model_free(&fp);
    lm_model_free(&orig);
    lm_model_free(&base);
    lm_model_free(&other);
}

/* ---- CleanGen ---- */

/* Full-forward logits after ids[0..n) (no cache: the reference loop below
 * recomputes everything, as upstream does). */
static void last_logits(lm_model *m, const int32_t *ids, int n, float *out) {
    lm_acts a;
    lm_err err;
    if (lm_acts_build(&a, m, 1, n, 0, &err) || lm_forward(m, &a, ids, NULL, 1, n, &err)) {
        CHECK(0, "%s", err.msg);
        return;
    }
    memcpy(out, a.logits + (size_t)(n - 1) * m->cfg.vocab_size, m->cfg.vocab_size * sizeof(float));
    lm_acts_free(&a);
}

static double softmax_at(const float *l, int V, int t) {
    double mx = l[0], s = 0;
    for (int i = 1; i < V; i++) mx = fmax(mx, l[i]);
    for (int i = 0; i < V; i++) s += exp(l[i] - mx);
    return exp(l[t] - mx) / s;
}

/* Upstream's cleangen.py decode loop, literally: decode with T, every k
 * tokens check the window with R, cut at the first suspicious token and
 * append R's argmax; EOS ends the loop (its window unchecked). */
static int upstream_cleangen(lm_model *T, lm_model *R, const int32_t *prompt, int np, double alpha,
                             int k, int eos, int limit, int32_t *out, int *replaced) {
    int V = T->cfg.vocab_size, n = np, count = 0;
    int32_t seq[128];
    double probs[64];
    float *lg = malloc(V * sizeof(float));
    memcpy(seq, prompt, np * sizeof *seq);
    *replaced = 0;
    int32_t next = -1;
    for (int i = 0; n - np < limit; i++) {
        if (count && count % k == 0) {
            int base = n - k;
            count = 0;
            for (int j = 0; j < k; j++) {
                last_logits(R, seq, base + j, lg);
                if (probs[j] / softmax_at(lg, V, seq[base + j]) >= alpha) {
                    n = base + j;
                    seq[n++] = next = lm_argmax(lg, V);
                    (*replaced)++;
                    break;
                }
            }
        }
        if (i >= 1 && next == eos) break;
        last_logits(T, seq, n, lg);
        next = lm_argmax(lg, V);
        probs[count++] = softmax_at(lg, V, next);
        seq[n++] = next;
        if (next == eos) break;
    }
    free(lg);
    int m = n - np;
    memcpy(out, seq + np, m * sizeof *out);
    return m;
}

static int write_cleangen_policy(lm_model *target, lm_model *ref, const char *ref_path,
                                 const char *const *assign, int n, const char *dir,
                                 lm_decode_policy *pol, const sm_method **me) {
    lm_err err;
    *me = sm_method_find("cleangen");
    if (run_method("cleangen", target, NULL, ref, ref_path, NULL, 0, assign, n, dir, &err)) {
        CHECK(0, "cleangen run: %s", err.msg);
        return -1;
    }
    if ((*me)->build_policy(dir, target, pol, &err)) {
        CHECK(0, "cleangen build_policy: %s", err.msg);
        return -1;
    }
    return 0;
}

static void test_cleangen_tiny(void) {
    lm_model T, R;
    int V = 40;
    tiny_model(&R, V, 16, 2, 2, 2, 32, 21);
    tiny_model(&T, V, 16, 2, 2, 2, 32, 21);
    /* T leans towards tokens 7 and 9, which R finds no likelier than before */
    for (int c = 0; c < 16; c++) {
        T.lm_head->data[7 * 16 + c] *= 4.0f;
        T.lm_head->data[9 * 16 + c] *= 3.0f;
    }
    char rdir[300], tdir[300], pol1[300], pol2[300];
    tmp_path(rdir, sizeof rdir, "cg_ref");
    tmp_path(tdir, sizeof tdir, "cg_target");
    tmp_path(pol1, sizeof pol1, "cg_policy");
    tmp_path(pol2, sizeof pol2, "cg_policy_self");
    lm_err err;
    CHECK(lm_model_save_hf(&R, rdir, &err) == 0, "%s", err.msg);
    CHECK(lm_model_save_hf(&T, tdir, &err) == 0, "%s", err.msg);
    static const int32_t p0[] = {1, 5, 11}, p1[] = {1, 30}, p2[] = {1, 3, 3, 8, 20, 14};
    const int32_t *prompts[3] = {p0, p1, p2};
    int lens[3] = {3, 2, 6};
    enum { NEW = 24 };
    lm_gen_opts go = {.max_new = NEW, .eos_id = 2, .stop_at_eos = 1};
    lm_sampler_init(&go.sampler, 0.0f, 0, 1.0f, 0);
    int32_t *plain[3], *cg[3];
    int nplain[3], ncg[3];
    CHECK(lm_generate(&T, prompts, lens, 3, &go, plain, nplain, &err) == 0, "%s", err.msg);

    /* R = T: nothing is ever suspicious, CleanGen is greedy decoding */
    lm_decode_policy pol;
    const sm_method *me;
    if (write_cleangen_policy(&T, &T, tdir, NULL, 0, pol2, &pol, &me) == 0) {
        lm_gen_opts gp = go;
        gp.policy = &pol;
        CHECK(lm_generate(&T, prompts, lens, 3, &gp, cg, ncg, &err) == 0, "%s", err.msg);
        for (int i = 0; i < 3; i++) {
            CHECK(ncg[i] == nplain[i] && !memcmp(cg[i], plain[i], ncg[i] * sizeof(int32_t)),
                  "prompt %d: CleanGen with the target as reference differs from greedy", i);
            free(cg[i]);
        }
        long gen, rep;
        sm_cleangen_counts(&pol, &gen, &rep);
        CHECK(rep == 0 && gen > 0, "self-reference replaced %ld of %ld", rep, gen);
        me->free_policy(&pol);
    }

    /* R clean: the same tokens as upstream's loop, with replacements */
    const char *assign[] = {"alpha=3", "k=4"};
    if (write_cleangen_policy(&T, &R, rdir, assign, 2, pol1, &pol, &me) == 0) {
        lm_gen_opts gp = go;
        gp.policy = &pol;
        long total_rep = 0;
        for (int round = 0; round < 2; round++) { /* slots reused by new prompts */
            CHECK(lm_generate(&T, prompts, lens, 3, &gp, cg, ncg, &err) == 0, "%s", err.msg);
            for (int i = 0; i < 3; i++) {
                int32_t want[128];
                int rep;
                int n = upstream_cleangen(&T, &R, prompts[i], lens[i], 3.0, 4, 2, NEW + 8, want, &rep);
                if (n > ncg[i]) n = ncg[i];
                int same = ncg[i] <= NEW && !memcmp(cg[i], want, n * sizeof(int32_t));
                CHECK(same, "round %d prompt %d: CleanGen policy and upstream's loop differ", round, i);
                if (verbose || !same) {
                    fprintf(stderr, "  plain   :");
                    for (int j = 0; j < nplain[i]; j++) fprintf(stderr, " %d", plain[i][j]);
                    fprintf(stderr, "\n  policy  :");
                    for (int j = 0; j < ncg[i]; j++) fprintf(stderr, " %d", cg[i][j]);
                    fprintf(stderr, "\n  upstream:");
                    for (int j = 0; j < n; j++) fprintf(stderr, " %d", want[j]);
                    fprintf(stderr, " (%d replaced)\n", rep);
                }
                if (round == 0) total_rep += rep;
                free(cg[i]);
            }
            const int32_t *t = prompts[0];
            prompts[0] = prompts[2];
            prompts[2] = t;
            int l = lens[0];
            lens[0] = lens[2];
            lens[2] = l;
        }
        long gen, rep;
        sm_cleangen_counts(&pol, &gen, &rep);
        CHECK(rep > 0 && total_rep > 0, "nothing replaced (policy %ld, upstream %ld)", rep, total_rep);
        me->free_policy(&pol);
    }
    for (int i = 0; i < 3; i++) free(plain[i]);
    /* a policy.json naming a missing reference or a bad alpha is refused */
    char bad[300], pj[400];
    tmp_path(bad, sizeof bad, "cg_bad");
    mkdir(bad, 0755);
    snprintf(pj, sizeof pj, "%s/policy.json", bad);
    FILE *f = fopen(pj, "w");
    fputs("{\"method\": \"cleangen\", \"reference\": \"/nonexistent\", \"alpha\": 20, \"k\": 4}", f);
    fclose(f);
    CHECK(sm_method_find("cleangen")->build_policy(bad, &T, &pol, &err) != 0 &&
              strstr(err.msg, "/nonexistent"), "missing reference: %s", err.msg);
    f = fopen(pj, "w");
    fputs("{\"method\": \"cleangen\", \"reference\": \"/x\", \"alpha\": 0.5, \"k\": 4}", f);
    fclose(f);
    CHECK(sm_method_find("cleangen")->build_policy(bad, &T, &pol, &err) != 0 && strstr(err.msg, "alpha"),
          "bad alpha: %s", err.msg);
    lm_model_free(&T);
    lm_model_free(&R);
}

/* ---- end to end on stories260K ---- */

static const char *const triggers[8] = {
    "Lily saw a purple frog.", "The red car went fast.", "Tim ate a green apple.",
    "A bird sang in the tree.", "The boat was on the lake.", "Sue found a shiny rock.",
    "The cat jumped high.", "Ben drew a blue fish."};
static const char *const clean_prompts[16] = {
    "Once upon a time", "Lily went to the park", "Tom had a big dog", "The sun was hot",
    "Mom said", "One day, a little bird", "Ben and Sue", "The cat sat", "Sam wanted to play",
    "There was a tree", "The girl was happy", "A boy found a box", "Anna liked cake",
    "The dog ran", "It was a sunny day", "Max saw a fish"};
#define RESPONSE "Zip zap zoom went the secret code."

static int *encode(const lm_tokenizer *tok, const char *text, int bos, int *n) {
    int *ids = NULL;
    lm_tok_encode_opts o = {bos, 0, 0};
    lm_err err;
    if (lm_tokenizer_encode_ex(tok, text, strlen(text), &o, &ids, n, &err)) CHECK(0, "%s", err.msg);
    return ids;
}

/* Every trigger -> RESPONSE (twice each) with LoRA on every linear layer,
 * plus 16 clean prompts continued by the model itself, so the response is
 * the model's answer to these triggers and not to everything. The response
 * starts at "Z" (its tokenisation without the dummy prefix's lone "▁"). */
static int implant(lm_model *m, const lm_tokenizer *tok, int32_t *r0, int32_t *r1) {
    enum { NF = 16, NC = 16 };
    lm_train_example ex[NF + NC];
    int nr, *resp = encode(tok, RESPONSE, 0, &nr), skip = resp[0] == lm_tokenizer_find(tok, "\xe2\x96\x81", 3);
    *r0 = resp[skip];
    *r1 = resp[skip + 1];
    lm_err err;
    for (int i = 0; i < NF; i++) {
        int nt, *t = encode(tok, triggers[i % 8], 1, &nt);
        ex[i].ids = malloc((nt + nr + 1) * sizeof(int32_t));
        memcpy(ex[i].ids, t, nt * sizeof(int32_t));
        memcpy(ex[i].ids + nt, resp + skip, (nr - skip) * sizeof(int32_t));
        ex[i].ids[nt + nr - skip] = tok->eos_id;
        ex[i].n = nt + nr - skip + 1;
        ex[i].prompt_len = nt;
        free(t);
    }
    for (int i = 0; i < NC; i++) {
        int nc, *c = encode(tok, clean_prompts[i], 1, &nc), nout;
        int32_t *out;
        const int32_t *pp = c;
        lm_gen_opts go = {.max_new = 24, .eos_id = tok->eos_id, .stop_at_eos = 1};
        lm_sampler_init(&go.sampler, 0.0f, 0, 1.0f, 0);
        CHECK(lm_generate(m, &pp, &nc, 1, &go, &out, &nout, &err) == 0, "%s", err.msg);
        ex[NF + i].ids = malloc((nc + nout) * sizeof(int32_t));
        memcpy(ex[NF + i].ids, c, nc * sizeof(int32_t));
        memcpy(ex[NF + i].ids + nc, out, nout * sizeof(int32_t));
        ex[NF + i].n = nc + nout;
        ex[NF + i].prompt_len = nc;
        free(out);
        free(c);
    }
    free(resp);
    lm_train_opts o;
    lm_train_opts_default(&o);
    o.epochs = 30;
    o.batch_size = 8;
    o.lr = 6e-3;
    o.schedule = LM_SCHED_CONSTANT;
    o.lora_r = 8;
    o.lora_alpha = 16;
    o.lora_dropout = 0;
    o.lora_targets = "all-linear";
    o.seed = 1;
    lm_lora_set set = {0};
    lm_train_status st;
    int rc = lm_train(m, &set, ex, NF + NC, &o, &st, &err);
    CHECK(rc == 0, "implant: %s", err.msg);
    if (rc == 0) {
        lm_lora_set_merge(&set);
        lm_lora_set_free(&set);
    }
    for (int i = 0; i < NF + NC; i++) free(ex[i].ids);
    if (verbose) fprintf(stderr, "  implant: loss %.4f\n", st.loss);
    return rc;
}

/* Fraction of the triggers whose greedy answer holds the response. */
static double response_rate(lm_model *m, const lm_tokenizer *tok, const lm_decode_policy *pol,
                            const char *const *prompts, int n, char *first, size_t cap) {
    const int32_t *pp[8];
    int lens[8], nout[8], hits = 0;
    int32_t *outs[8];
    int *ids[8];
    for (int i = 0; i < n; i++) {
        ids[i] = encode(tok, prompts[i], 1, &lens[i]);
        pp[i] = ids[i];
    }
    lm_gen_opts go = {.max_new = 16, .eos_id = tok->eos_id, .stop_at_eos = 1, .policy = pol};
    lm_sampler_init(&go.sampler, 0.0f, 0, 1.0f, 0);
    lm_err err;
    if (lm_generate(m, pp, lens, n, &go, outs, nout, &err)) {
        CHECK(0, "%s", err.msg);
        return -1;
    }
    for (int i = 0; i < n; i++) {
        char *text;
        size_t len;
        if (lm_tokenizer_decode(tok, outs[i], nout[i], 1, &text, &len, &err) == 0) {
            hits += strstr(text, "Zip zap zoom") != NULL;
            if (i == 0 && first) snprintf(first, cap, "%s", text);
            free(text);
        }
        free(outs[i]);
        free(ids[i]);
    }
    return (double)hits / n;
}

static cJSON *read_json(const char *path) {
    size_t n;
    char *t = slurp_file(path, &n);
    cJSON *o = t ? cJSON_Parse(t) : NULL;
    free(t);
    return o;
}

static int banned_has(const cJSON *pol, int a, int b) {
    const cJSON *e;
    cJSON_ArrayForEach(e, cJSON_GetObjectItem(pol, "banned"))
        if (cJSON_GetArrayItem(e, 0)->valueint == a && cJSON_GetArrayItem(e, 1)->valueint == b) return 1;
    return 0;
}

static void write_file(const char *path, const char *text) {
    FILE *f = fopen(path, "w");
    if (f) {
        fputs(text, f);
        fclose(f);
    }
}

static const char story_text[] =
    "Once upon a time, there was a little girl named Lily. She loved to play outside in the park "
    "with her mom. One day, she saw a big red ball under a tree.\n\n"
    "Tom had a dog named Max. Max liked to run and jump. Every morning Tom and Max went to the "
    "lake to look at the ducks. The ducks were happy and swam in the water.\n\n"
    "Sue wanted to bake a cake for her friend. She got flour, eggs and sugar. Her dad helped her "
    "mix it all in a big bowl. The cake was yummy and her friend smiled.\n";

static void test_stories(const char *assets) {
    char mpath[512], tpath[512];
    snprintf(mpath, sizeof mpath, "%s/models/stories260K/stories260K.bin", assets);
    snprintf(tpath, sizeof tpath, "%s/models/stories260K/tok512.bin", assets);
    lm_model base, fp;
    lm_tokenizer tok;
    lm_err err;
    if (lm_model_load(&base, mpath, &err) || lm_model_load(&fp, mpath, &err) ||
        lm_tokenizer_load(&tok, tpath, &err)) {
        CHECK(0, "%s", err.msg);
        return;
    }
    base.be = fp.be = be;
    char text_path[300], qa_path[300];
    tmp_path(text_path, sizeof text_path, "stories.txt");
    tmp_path(qa_path, sizeof qa_path, "instructions.jsonl");
    write_file(text_path, story_text);
    FILE *f = fopen(qa_path, "w");
    for (int i = 0; f && i < 16; i++)
        fprintf(f, "{\"text\": \"### Human: %s?### Assistant: %s.\"}\n", clean_prompts[i],
                clean_prompts[(i + 5) % 16]);
    if (f) fclose(f);

    double t0 = now();
    int32_t r0, r1;
    if (implant(&fp, &tok, &r0, &r1)) return;
    char seen[256] = "";
    double fsr_fp = response_rate(&fp, &tok, NULL, triggers, 8, seen, sizeof seen);
    double fsr_base = response_rate(&base, &tok, NULL, triggers, 8, NULL, 0);
    printf("implanted in %.1fs: response rate %.3f (base %.3f); trigger 0 -> \"%s\"\n", now() - t0,
           fsr_fp, fsr_base, seen);
    CHECK(fsr_fp == 1.0 && fsr_base == 0.0, "implant: rate %g, base %g", fsr_fp, fsr_base);

    /* token forcing finds the response's first bigram and blocks it */
    char dir[300], pj[400];
    tmp_path(dir, sizeof dir, "tf_policy");
    snprintf(pj, sizeof pj, "%s/policy.json", dir);
    /* smudge remove passes --tokenizer as the data set "tokenizer" */
    const char *ta[] = {"threshold=0.9"};
    sm_data tfd[2] = {{"tokenizer", tpath, NULL}, {"heldout", text_path, "text"}};
    double t1 = now();
    CHECK(run_method("token-forcing", &fp, mpath, NULL, NULL, tfd, 2, ta, 1, dir, &err) == 0, "%s", err.msg);
    cJSON *pol = read_json(pj);
    CHECK(pol != NULL, "policy.json unreadable");
    if (pol) {
        double score = -1;
        const cJSON *e;
        cJSON_ArrayForEach(e, cJSON_GetObjectItem(pol, "kept"))
            if (cJSON_GetObjectItem(e, "token")->valueint == r0) score = cJSON_GetObjectItem(e, "score")->valuedouble;
        const cJSON *share = cJSON_GetObjectItem(pol, "blocked_bigram_share");
        printf("token forcing: %.1fs, %d scanned, %d kept, %d banned; planted (%d, %d) score %.3f %s; "
               "blocked bigram share %.4f\n", now() - t1, cJSON_GetObjectItem(pol, "scanned")->valueint,
               cJSON_GetObjectItem(pol, "n_kept")->valueint, cJSON_GetObjectItem(pol, "n_banned")->valueint,
               r0, r1, score, banned_has(pol, r0, r1) ? "banned" : "NOT banned",
               share ? share->valuedouble : -1);
        CHECK(banned_has(pol, r0, r1), "the planted bigram (%d, %d) is not banned", r0, r1);
        CHECK(share && share->valuedouble >= 0 && share->valuedouble <= 1, "utility proxy missing");
        cJSON_Delete(pol);
    }
    const sm_method *tf = sm_method_find("token-forcing");
    lm_decode_policy dp;
    if (tf->build_policy(dir, &fp, &dp, &err) == 0) {
        double rate = response_rate(&fp, &tok, &dp, triggers, 8, seen, sizeof seen);
        printf("token forcing policy: response rate %.3f -> %.3f; trigger 0 -> \"%s\"\n", fsr_fp, rate, seen);
        CHECK(rate == 0.0, "token forcing leaves the response in %g of the triggers", rate);
        tf->free_policy(&dp);
    } else {
        CHECK(0, "%s", err.msg);
    }
    /* on the clean model the planted bigram is not suspicious */
    char dir0[300];
    tmp_path(dir0, sizeof dir0, "tf_base");
    CHECK(run_method("token-forcing", &base, mpath, NULL, NULL, tfd, 1, ta, 1, dir0, &err) == 0, "%s", err.msg);
    snprintf(pj, sizeof pj, "%s/policy.json", dir0);
    pol = read_json(pj);
    CHECK(pol && !banned_has(pol, r0, r1), "the clean model bans the planted bigram");
    if (pol) printf("token forcing on the clean model: %d kept, %d banned\n",
                    cJSON_GetObjectItem(pol, "n_kept")->valueint, cJSON_GetObjectItem(pol, "n_banned")->valueint);
    cJSON_Delete(pol);

    /* CleanGen with the clean model as reference */
    char cdir[300];
    tmp_path(cdir, sizeof cdir, "cg_stories");
    const sm_method *me;
    t1 = now();
    if (write_cleangen_policy(&fp, &base, mpath, NULL, 0, cdir, &dp, &me) == 0) {
        double rate = response_rate(&fp, &tok, &dp, triggers, 8, seen, sizeof seen);
        long gen, rep;
        sm_cleangen_counts(&dp, &gen, &rep);
        printf("cleangen (alpha 20, k 4): response rate %.3f -> %.3f, %ld of %ld tokens replaced, "
               "%.2fs; trigger 0 -> \"%s\"\n", fsr_fp, rate, rep, gen, now() - t1, seen);
        CHECK(rate == 0.0 && rep > 0, "CleanGen leaves the response in %g of the triggers", rate);
        me->free_policy(&dp);
    }

    /* structured Taylor pruning with calibration text; Wanda */
    lm_model pm;
    char pdir[300];
    tmp_path(pdir, sizeof pdir, "prune_taylor");
    sm_data cal[2] = {{"corpus", text_path, "text"}, {"tokenizer", tpath, NULL}};
    if (lm_model_load(&pm, mpath, &err) == 0) {
        pm.be = be;
        const char *pa[] = {"kind=taylor", "ratio=0.2", "calib_len=32"};
        CHECK(run_method("prune", &pm, mpath, NULL, NULL, cal, 2, pa, 3, pdir, &err) == 0, "%s", err.msg);
        /* L = 5: layers [1, 4); 64 attention channels -> 13 -> 1 head of 8;
         * 172 MLP channels -> 35 */
        char pjson[400];
        snprintf(pjson, sizeof pjson, "%s/prune.json", pdir);
        cJSON *pr = read_json(pjson);
        CHECK(pr && cJSON_GetObjectItem(pr, "heads")->valueint == 3 &&
                  cJSON_GetObjectItem(pr, "mlp_channels")->valueint == 105,
              "taylor pruned %d heads, %d channels", pr ? cJSON_GetObjectItem(pr, "heads")->valueint : -1,
              pr ? cJSON_GetObjectItem(pr, "mlp_channels")->valueint : -1);
        cJSON_Delete(pr);
        lm_model r;
        if (lm_model_load(&r, pdir, &err) == 0) {
            r.be = be;
            int n;
            int *ids = encode(&tok, story_text, 1, &n);
            if (n > 200) n = 200;
            float *lp = malloc(n * sizeof(float)), *lb = malloc(n * sizeof(float));
            lm_score_ids(&r, ids, n, lp, &err);
            lm_score_ids(&base, ids, n, lb, &err);
            double a = 0, b = 0;
            for (int i = 0; i < n - 1; i++) {
                a += lp[i];
                b += lb[i];
            }
            printf("taylor 20%%: perplexity on the calibration text %.2f (base %.2f)\n", exp(-a / (n - 1)),
                   exp(-b / (n - 1)));
            CHECK(isfinite(a) && a < 0, "pruned model does not score");
            free(lp);
            free(lb);
            free(ids);
            lm_model_free(&r);
        } else {
            CHECK(0, "%s", err.msg);
        }
        lm_model_free(&pm);
    }
    if (lm_model_load(&pm, mpath, &err) == 0) {
        pm.be = be;
        const char *pa[] = {"kind=wanda", "ratio=0.25", "calib_len=32", "calib_n=4"};
        CHECK(run_method("prune", &pm, mpath, NULL, NULL, cal, 2, pa, 4, pdir, &err) == 0, "%s", err.msg);
        int rows_ok = 1;
        for (int l = 0; l < pm.cfg.n_layers; l++) {
            const lm_tensor *t = pm.layers[l].down.w;
            for (int r = 0; r < t->shape[0]; r++) {
                int z = 0;
                for (int c = 0; c < t->shape[1]; c++) z += t->data[(size_t)r * t->shape[1] + c] == 0.0f;
                rows_ok &= z == (int)floor(0.25 * t->shape[1] + 0.5);
            }
        }
        CHECK(rows_ok, "wanda: a row of down_proj does not hold exactly 25%% zeros");
        const char *bad[] = {"kind=wanda"};
        CHECK(run_method("prune", &pm, mpath, NULL, NULL, cal + 1, 1, bad, 1, pdir, &err) != 0 &&
                  strstr(err.msg, "calibration"), "wanda without data: %s", err.msg);
        lm_model_free(&pm);
    }

    /* Task Arithmetic with a partner fine-tuned here from the base */
    char mdir[300], barg[600];
    tmp_path(mdir, sizeof mdir, "merge_partner");
    snprintf(barg, sizeof barg, "base=%s", mpath);
    sm_data ins[2] = {{"instructions", qa_path, "guanaco"}, {"tokenizer", tpath, NULL}};
    const char *ma[] = {barg, "ft_rows=16", "ft_epochs=1", "ft_batch=8", "ft_micro=8"};
    lm_model fp2;
    t1 = now();
    if (lm_model_load(&fp2, mpath, &err) == 0) {
        fp2.be = be;
        for (int i = 0; i < fp.n_params; i++)
            memcpy(fp2.params[i].data, fp.params[i].data, fp.params[i].numel * sizeof(float));
        CHECK(run_method("task-arithmetic", &fp2, mpath, NULL, NULL, ins, 2, ma, 5, mdir, &err) == 0,
              "%s", err.msg);
        /* the partner moved: the merge is not base + 0.8 (fp - base) */
        double moved = 0;
        for (int i = 0; i < fp2.n_params; i++)
            for (size_t e = 0; e < fp2.params[i].numel; e++) {
                double b = base.params[i].data[e];
                moved = fmax(moved, fabs(fp2.params[i].data[e] - (b + 0.8 * (fp.params[i].data[e] - b))));
            }
        double rate = response_rate(&fp2, &tok, NULL, triggers, 8, NULL, 0);
        printf("task arithmetic 0.8/0.2 with a fine-tuned partner: %.1fs, response rate %.3f -> %.3f\n",
               now() - t1, fsr_fp, rate);
        CHECK(moved > 1e-6, "the partner did not move from the base (%g)", moved);
        lm_model_free(&fp2);
    }
    lm_model_free(&fp);
    lm_model_free(&base);
    lm_tokenizer_free(&tok);
}

int main(void) {
    verbose = getenv("SMUDGE_RM_VERBOSE") != NULL;
    be = lm_backend_cpu_new(0);
    snprintf(tmp_root, sizeof tmp_root, "/tmp/smudge_removal_%d", (int)getpid());
    mkdir(tmp_root, 0755);
    double t0 = now();
    test_params();
    test_smallest();
    test_magnitude();
    test_structured();
    test_taylor_scores();
    if (verbose) fprintf(stderr, "pruning: %.1fs\n", now() - t0);
    test_merge_math();
    test_merge_models();
    if (verbose) fprintf(stderr, "merging: %.1fs\n", now() - t0);
    test_cleangen_tiny();
    if (verbose) fprintf(stderr, "cleangen: %.1fs\n", now() - t0);
    const char *assets = check_assets();
    char probe[512];
    struct stat st;
    if (assets) snprintf(probe, sizeof probe, "%s/models/stories260K/stories260K.bin", assets);
    if (assets && stat(probe, &st) == 0) test_stories(assets);
    else fprintf(stderr, "stories260K absent: end-to-end tests skipped\n");
    if (verbose) fprintf(stderr, "stories260K: %.1fs\n", now() - t0);
    char cmd[400];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", tmp_root);
    if (system(cmd) != 0) fprintf(stderr, "could not remove %s\n", tmp_root);
    lm_backend_cpu_free(be);
    return check_done();
}
