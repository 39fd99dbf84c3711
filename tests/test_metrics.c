/* Metrics on small cases computed by hand: the success rules, the Wilson
 * interval, perplexity (whole and sliding-window) against direct scoring,
 * and lm-eval multiple-choice scoring against the loglik it is defined by. */
#include <stdlib.h>
#include <string.h>

#include "check.h"
#include "metrics.h"

static void check_rules(void) {
    CHECK(mt_rule_check(MT_RULE_SUBSTRING, "ハリネズミ", "the message is: ハリネズミ!"), "substring");
    CHECK(!mt_rule_check(MT_RULE_SUBSTRING, "ハリネズミ", "ハリネズ"), "partial substring");
    CHECK(mt_rule_check(MT_RULE_PREFIX, "apple", "  apple pie"), "prefix after spaces");
    CHECK(!mt_rule_check(MT_RULE_PREFIX, "apple", "an apple"), "prefix elsewhere");
    double lo, hi;
    /* 8/8: centre (1 + 1.9208/8)/(1 + 3.8416/8) = 0.8378, half 0.1622 -> [0.6756, 1] */
    mt_wilson(8, 8, &lo, &hi);
    CHECK_NEAR(lo, 0.67560, 1e-4, "wilson lo 8/8");
    CHECK_NEAR(hi, 1.0, 1e-9, "wilson hi 8/8");
    mt_wilson(5, 10, &lo, &hi);
    CHECK_NEAR(lo, 0.23659, 1e-4, "wilson lo 5/10");
    CHECK_NEAR(hi, 0.76341, 1e-4, "wilson hi 5/10");
}

static void check_with_model(const char *tok_path) {
    lm_tokenizer tok;
    lm_err err;
    if (lm_tokenizer_load(&tok, tok_path, &err)) {
        CHECK(0, "tokenizer: %s", err.msg);
        return;
    }
    lm_config cfg;
    lm_config_default(&cfg, LM_ARCH_GPT2, tok.n_vocab, 16, 1, 2, 2, 32, 64);
    lm_model m;
    lm_model_init(&m, &cfg, &err);
    lm_model_alloc(&m, &err);
    lm_model_init_random(&m, 3, 0.5f);
    lm_backend *be = lm_backend_cpu_new(0);
    m.be = be;
    mt_subject s = {&m, &tok, NULL};

    /* Perplexity of a short document = exp(mean -log p) from score. */
    const char *doc = "The cat sat on the mat. It was a sunny day in the town.";
    int *ids, n;
    lm_tokenizer_encode(&tok, doc, strlen(doc), 0, &ids, &n, &err);
    float lp[128];
    lm_score_ids(&m, (int32_t *)ids, n, lp, &err);
    double nll = 0;
    for (int k = 0; k < n - 1; k++) nll -= lp[k];
    mt_ppl_opts po = {.context = 64, .add_bos = 0};
    mt_ppl_result pr;
    CHECK(mt_ppl_eval(&s, &doc, 1, &po, &pr, &err) == 0, "%s", err.msg);
    CHECK(pr.tokens == n - 1, "counted %ld of %d", pr.tokens, n - 1);
    CHECK_NEAR(pr.nll_sum, nll, 1e-3, "ppl nll");
    CHECK_NEAR(pr.ppl, exp(nll / (n - 1)), 1e-3 * pr.ppl, "ppl");
    mt_ppl_result_free(&pr);

    /* Sliding window, C = 6, S = 6: disjoint chunks; position 0 unscored
     * and each later chunk's first token too (its window [end - C, end)
     * holds no token before it). Compute the same by hand. */
    po.context = 6;
    po.stride = 6;
    CHECK(mt_ppl_eval(&s, &doc, 1, &po, &pr, &err) == 0, "%s", err.msg);
    double want = 0;
    long cnt = 0;
    int prev = 1;
    for (int begin = 0;; begin += 6) {
        int end = begin + 6 < n ? begin + 6 : n, ws = end - 6 > 0 ? end - 6 : 0;
        float w[8];
        lm_score_ids(&m, (int32_t *)ids + ws, end - ws, w, &err);
        for (int t = prev > ws + 1 ? prev : ws + 1; t < end; t++) want -= w[t - ws - 1], cnt++;
        prev = end > prev ? end : prev;
        if (end == n) break;
    }
    /* the last window ends at n and reaches back C tokens, so only the
     * second chunk's first token lacks context here */
    CHECK(pr.tokens == cnt && cnt == n - 2, "sliding counted %ld, want %ld (n %d)",
          pr.tokens, cnt, n);
    CHECK_NEAR(pr.nll_sum, want, 1e-3, "sliding nll");
    mt_ppl_result_free(&pr);
    /* S = 2 gives every scored token at least C - S tokens of context and
     * still scores each once. */
    po.stride = 2;
    CHECK(mt_ppl_eval(&s, &doc, 1, &po, &pr, &err) == 0, "%s", err.msg);
    CHECK(pr.tokens == n - 1, "stride 2 counted %ld", pr.tokens);
    mt_ppl_result_free(&pr);

    /* Multiple choice: acc picks the choice with the highest loglik of
     * " " + choice after the context; trailing context spaces move to it. */
    mt_mc_item items[2];
    memset(items, 0, sizeof items);
    items[0].context = strdup("Question: what colour is the sky?\nAnswer:");
    items[0].choices[0] = strdup("blue");
    items[0].choices[1] = strdup("green");
    items[0].choices[2] = strdup("a very long answer");
    items[0].n_choices = 3;
    items[0].gold = 0;
    items[1].context = strdup("It rained, therefore ");
    items[1].choices[0] = strdup("the ground was wet.");
    items[1].choices[1] = strdup("the sun shone.");
    items[1].n_choices = 2;
    items[1].gold = 1;
    mt_mc_result r;
    CHECK(mt_mc_eval(&s, items, 2, &r, &err) == 0, "%s", err.msg);
    for (int i = 0; i < 2; i++) {
        double best = -1e300, bestn = -1e300;
        int arg = 0, argn = 0;
        for (int c = 0; c < items[i].n_choices; c++) {
            /* by hand: context without trailing space; continuation = the
             * moved space + " " + choice, its tokens = tail of the whole */
            const char *ctx = items[i].context;
            size_t keep = strlen(ctx);
            while (keep && ctx[keep - 1] == ' ') keep--;
            char whole[256];
            snprintf(whole, sizeof whole, "%s %s", ctx, items[i].choices[c]);
            int *wa, nwa, *ca, nca;
            lm_tokenizer_encode(&tok, whole, strlen(whole), 0, &wa, &nwa, &err);
            lm_tokenizer_encode(&tok, ctx, keep, 0, &ca, &nca, &err);
            float l[128];
            lm_score_ids(&m, (int32_t *)wa, nwa, l, &err);
            double ll = 0;
            for (int k = nca; k < nwa; k++) ll += l[k - 1];
            double norm = ll / (double)strlen(items[i].choices[c]);
            if (ll > best) best = ll, arg = c;
            if (norm > bestn) bestn = norm, argn = c;
            free(wa);
            free(ca);
        }
        CHECK(r.correct[i] == (arg == items[i].gold), "item %d acc", i);
        CHECK(r.correct_norm[i] == (argn == items[i].gold), "item %d acc_norm", i);
    }
    CHECK(r.n == 2, "n");
    mt_mc_result_free(&r);
    mt_mc_items_free(items, 2);
    free(ids);
    lm_model_free(&m);
    lm_backend_cpu_free(be);
    lm_tokenizer_free(&tok);
}

int main(void) {
    check_rules();
    const char *a = check_assets();
    if (a) {
        char p[4096];
        snprintf(p, sizeof p, "%s/tokenizers/gpt2-hf/tokenizer.json", a);
        check_with_model(p);
    } else {
        fprintf(stderr, "SKIP (assets): model-based metric checks need the GPT-2 tokenizer\n");
    }
    return check_done();
}
