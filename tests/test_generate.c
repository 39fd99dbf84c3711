/* KV-cache generation against the plain forward pass: greedy decoding of a
 * batch of prompts of different lengths must pick, at every step, the argmax
 * of a full forward over the sequence so far; the cached logits must match
 * the full ones. Also sampling determinism and continuation scoring. */
#include <stdlib.h>
#include <string.h>

#include "check.h"
#include "generate.h"
#include "model.h"
#include "rng.h"

static void check_family(lm_backend *be, lm_arch arch, int window) {
    lm_config cfg;
    int kv = (arch == LM_ARCH_LLAMA || arch == LM_ARCH_MISTRAL) ? 2 : 4;
    lm_config_default(&cfg, arch, 50, 32, 2, 4, kv, 48, 40);
    cfg.sliding_window = window;
    lm_err err;
    lm_model m;
    CHECK(lm_model_init(&m, &cfg, &err) == 0, "%s", err.msg);
    CHECK(lm_model_alloc(&m, &err) == 0, "%s", err.msg);
    m.be = be;
    lm_model_init_random(&m, 11, 0.3f);

    int32_t p0[] = {1, 5, 9, 22, 7}, p1[] = {1, 30, 2};
    const int32_t *prompts[] = {p0, p1};
    int plen[] = {5, 3};
    lm_gen_opts o = {.max_new = 12, .eos_id = -1, .stop_at_eos = 0};
    lm_sampler_init(&o.sampler, 0.0f, 0, 1.0f, 0);
    int32_t *out[2];
    int nout[2];
    CHECK(lm_generate(&m, prompts, plen, 2, &o, out, nout, &err) == 0, "%s", err.msg);
    int V = cfg.vocab_size;
    for (int b = 0; b < 2; b++) {
        CHECK(nout[b] == 12, "%s: generated %d tokens", lm_arch_name(arch), nout[b]);
        int32_t seq[64];
        memcpy(seq, prompts[b], (size_t)plen[b] * sizeof *seq);
        int n = plen[b];
        for (int k = 0; k < nout[b]; k++) {
            lm_acts a;
            lm_acts_build(&a, &m, 1, n, 0, &err);
            lm_forward(&m, &a, seq, NULL, 1, n, &err);
            int32_t want = lm_argmax(a.logits + (size_t)(n - 1) * V, V);
            CHECK(out[b][k] == want, "%s seq %d step %d: cached %d vs full %d",
                  lm_arch_name(arch), b, k, out[b][k], want);
            lm_acts_free(&a);
            seq[n++] = out[b][k];
        }
        /* Cached logits equal the full forward's, step by step. */
        lm_kv_cache c;
        CHECK(lm_kv_build(&c, &m, 1, 40, &err) == 0, "%s", err.msg);
        float *lg = malloc((size_t)V * sizeof *lg);
        lm_kv_prefill(&m, &c, 0, seq, 3, lg, &err);
        double maxd = 0.0;
        for (int t = 3; t < n; t++) {
            lm_acts a;
            lm_acts_build(&a, &m, 1, t, 0, &err);
            lm_forward(&m, &a, seq, NULL, 1, t, &err);
            for (int v = 0; v < V; v++)
                maxd = fmax(maxd, fabs(lg[v] - a.logits[(size_t)(t - 1) * V + v]));
            lm_acts_free(&a);
            int s0 = 0;
            lm_kv_step(&m, &c, &s0, &seq[t], 1, lg, &err);
        }
        CHECK(maxd < 1e-4, "%s: cached logits differ by %g", lm_arch_name(arch), maxd);
        /* Truncation rolls back: re-feeding gives the same logits. */
        float *lg2 = malloc((size_t)V * sizeof *lg2);
        lm_kv_truncate(&c, 0, 4);
        lm_kv_prefill(&m, &c, 0, &seq[4], n - 4, lg2, &err);
        maxd = 0.0;
        for (int v = 0; v < V; v++) maxd = fmax(maxd, fabs(lg[v] - lg2[v]));
        CHECK(maxd < 1e-4, "%s: truncate+refeed differs by %g", lm_arch_name(arch), maxd);
        free(lg2);
        free(lg);
        lm_kv_free(&c);
        /* loglik of the generated continuation = sum of score logprobs. */
        float lp[64];
        lm_score_ids(&m, seq, n, lp, &err);
        double want = 0.0;
        for (int k = plen[b] - 1; k < n - 1; k++) want += lp[k];
        double got;
        int greedy;
        CHECK(lm_loglik(&m, seq, plen[b], seq + plen[b], n - plen[b], &got, &greedy, &err) == 0, "%s", err.msg);
        CHECK_NEAR(got, want, 1e-3, "loglik");
        CHECK(greedy == 1, "%s: greedy continuation not recognised", lm_arch_name(arch));
        free(out[b]);
    }
    /* Sampling: same seed, same tokens; different seed, (almost surely) not. */
    lm_sampler_init(&o.sampler, 1.0f, 0, 0.9f, 7);
    int32_t *s1[2], *s2[2];
    int n1[2], n2[2];
    lm_generate(&m, prompts, plen, 2, &o, s1, n1, &err);
    lm_generate(&m, prompts, plen, 2, &o, s2, n2, &err);
    CHECK(n1[0] == n2[0] && memcmp(s1[0], s2[0], (size_t)n1[0] * 4) == 0,
          "%s: sampling is not deterministic for a seed", lm_arch_name(arch));
    for (int b = 0; b < 2; b++) {
        free(s1[b]);
        free(s2[b]);
    }
    lm_model_free(&m);
}

static void check_sampler(void) {
    float logits[5] = {0.0f, 3.0f, 1.0f, 2.9f, -1.0f};
    lm_sampler s;
    lm_sampler_init(&s, 0.0f, 0, 1.0f, 1);
    CHECK(lm_sample(&s, logits, 5) == 1, "greedy picks the argmax");
    /* top_k = 1 is greedy whatever the temperature. */
    lm_sampler_init(&s, 5.0f, 1, 1.0f, 1);
    for (int i = 0; i < 50; i++) CHECK(lm_sample(&s, logits, 5) == 1, "top_k=1");
    /* top_k = 2 only ever yields the two best. */
    lm_sampler_init(&s, 1.0f, 2, 1.0f, 3);
    int seen[5] = {0};
    for (int i = 0; i < 2000; i++) seen[lm_sample(&s, logits, 5)]++;
    CHECK(seen[0] == 0 && seen[2] == 0 && seen[4] == 0, "top_k=2 leaked");
    /* p(1)/p(3) = e^0.1 = 1.105 */
    double ratio = (double)seen[1] / seen[3];
    CHECK(ratio > 0.95 && ratio < 1.27, "top_k=2 ratio %g", ratio);
    /* top_p small keeps only the best token. */
    lm_sampler_init(&s, 1.0f, 0, 0.3f, 3);
    for (int i = 0; i < 50; i++) CHECK(lm_sample(&s, logits, 5) == 1, "top_p");
}

int main(void) {
    lm_backend *be = lm_backend_cpu_new(0);
    check_sampler();
    check_family(be, LM_ARCH_LLAMA, 0);
    check_family(be, LM_ARCH_MISTRAL, 4);
    check_family(be, LM_ARCH_GPT2, 0);
    check_family(be, LM_ARCH_OPT, 0);
    lm_backend_cpu_free(be);
    return check_done();
}
