/* Token-weighted perplexity with a sliding window for long documents
 * (metrics.md section 2.2): every token after the first is scored once,
 * with at least C - S tokens of context once the window slides. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "metrics.h"

void mt_ppl_result_free(mt_ppl_result *r) {
    if (!r) return;
    free(r->doc_nll);
    free(r->doc_tokens);
    memset(r, 0, sizeof *r);
}

/* Sum of -log p over tokens [from, to) of ids, each conditioned on the
 * window [ws, t). */
static int score_window(lm_model *m, const int32_t *ids, int ws, int from,
                        int to, float *lp, double *nll, lm_err *err) {
    int len = to - ws;
    if (lm_score_ids(m, ids + ws, len, lp, err)) return -1;
    for (int t = from; t < to; t++) *nll -= lp[t - ws - 1];
    return 0;
}

int mt_ppl_eval(const mt_subject *s, const char *const *docs, int n_docs,
                const mt_ppl_opts *opts, mt_ppl_result *r, lm_err *err) {
    memset(r, 0, sizeof *r);
    int C = opts->context > 0 ? opts->context : 512;
    if (C > s->model->cfg.max_pos) C = s->model->cfg.max_pos;
    if (C < 2) return lm_errf(err, "perplexity context %d is too short", C);
    int S = opts->stride > 0 ? opts->stride : C / 2;
    if (S > C) S = C;
    if (S < 1) S = 1;
    r->doc_nll = calloc((size_t)n_docs, sizeof *r->doc_nll);
    r->doc_tokens = calloc((size_t)n_docs, sizeof *r->doc_tokens);
    float *lp = malloc((size_t)C * sizeof *lp);
    if (!r->doc_nll || !r->doc_tokens || !lp) {
        free(lp);
        mt_ppl_result_free(r);
        return lm_errf(err, "out of memory");
    }
    r->docs = n_docs;
    int rc = 0;
    for (int d = 0; d < n_docs && rc == 0; d++) {
        int *ids = NULL, n = 0;
        lm_tok_encode_opts eo = {opts->add_bos ? 1 : 0, 0, LM_TOK_DEFAULT};
        rc = lm_tokenizer_encode_ex(s->tok, docs[d], strlen(docs[d]), &eo, &ids, &n, err);
        if (rc) {
            lm_err_prefix(err, "perplexity document %d: ", d);
            break;
        }
        if (opts->count_eos && s->tok->eos_id >= 0) {
            int *grown = realloc(ids, (size_t)(n + 1) * sizeof *ids);
            if (!grown) {
                free(ids);
                rc = lm_errf(err, "out of memory");
                break;
            }
            ids = grown;
            ids[n++] = s->tok->eos_id;
        }
        double nll = 0.0;
        long counted = 0;
        if (n >= 2) {
            int prev_end = 1; /* position 0 is never scored */
            for (int begin = 0;; begin += S) {
                int end = begin + C < n ? begin + C : n;
                int ws = end - C > 0 ? end - C : 0;
                /* A token needs at least one token of context inside its
                 * window: with S = C the first token of each later chunk
                 * has none and is not scored (HF's stride = context). */
                int from = prev_end > ws + 1 ? prev_end : ws + 1;
                if (end > from) {
                    rc = score_window(s->model, (const int32_t *)ids, ws, from,
                                      end, lp, &nll, err);
                    if (rc) break;
                    counted += end - from;
                }
                if (end > prev_end) prev_end = end;
                if (end == n) break;
            }
        }
        free(ids);
        r->doc_nll[d] = nll;
        r->doc_tokens[d] = counted;
        r->nll_sum += nll;
        r->tokens += counted;
    }
    free(lp);
    if (rc) {
        mt_ppl_result_free(r);
        return -1;
    }
    r->ppl = r->tokens > 0 ? exp(r->nll_sum / (double)r->tokens) : NAN;
    return 0;
}
