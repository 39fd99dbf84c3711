/* Zero-shot multiple-choice scoring as lm-evaluation-harness v0.4.8 does it
 * (metrics.md section 3.1): each choice is the continuation " " + choice,
 * trailing context white space moves into the continuation, the context's
 * own tokenisation decides where the continuation starts, and no BOS. */
#include <float.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "metrics.h"

void mt_mc_result_free(mt_mc_result *r) {
    if (!r) return;
    free(r->correct);
    free(r->correct_norm);
    memset(r, 0, sizeof *r);
}

void mt_mc_items_free(mt_mc_item *items, int n) {
    if (!items) return;
    for (int i = 0; i < n; i++) {
        free(items[i].context);
        for (int c = 0; c < items[i].n_choices; c++) free(items[i].choices[c]);
    }
}

/* Characters (code points) of a UTF-8 string: Python's len(). */
static size_t utf8_chars(const char *s) {
    size_t n = 0;
    for (; *s; s++)
        if (((unsigned char)*s & 0xC0) != 0x80) n++;
    return n;
}

static int is_space(char c) {
    return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\f' || c == '\v';
}

/* Log-likelihood of one choice after the context. */
static int choice_loglik(const mt_subject *s, const char *context,
                         const char *choice, double *ll, lm_err *err) {
    size_t cl = strlen(context), keep = cl;
    while (keep > 0 && is_space(context[keep - 1])) keep--;
    size_t chl = strlen(choice);
    /* whole = context[:keep] + context[keep:] + " " + choice */
    char *whole = malloc(cl + chl + 2);
    if (!whole) return lm_errf(err, "out of memory");
    memcpy(whole, context, cl);
    whole[cl] = ' ';
    memcpy(whole + cl + 1, choice, chl + 1);
    lm_tok_encode_opts eo = {0, 0, LM_TOK_DEFAULT};
    int *all = NULL, *ctx = NULL, na = 0, nc = 0, rc;
    rc = lm_tokenizer_encode_ex(s->tok, whole, cl + chl + 1, &eo, &all, &na, err);
    if (rc == 0) rc = lm_tokenizer_encode_ex(s->tok, whole, keep, &eo, &ctx, &nc, err);
    free(whole);
    if (rc == 0 && nc > na) rc = lm_errf(err, "context tokenises longer than context+choice");
    if (rc == 0 && na == nc) rc = lm_errf(err, "choice '%s' adds no tokens", choice);
    if (rc == 0) {
        int32_t prefix;
        const int32_t *cids = (const int32_t *)all;
        int n_ctx = nc;
        if (nc == 0) {
            /* An empty context starts from one prefix token. */
            prefix = s->tok->bos_id >= 0 ? s->tok->bos_id : s->tok->eos_id;
            if (prefix < 0) rc = lm_errf(err, "empty context and no BOS/EOS token");
            cids = &prefix;
            n_ctx = 1;
        }
        if (rc == 0)
            rc = lm_loglik(s->model, cids, n_ctx, (const int32_t *)all + nc, na - nc,
                           ll, NULL, err);
    }
    free(all);
    free(ctx);
    return rc;
}

int mt_mc_eval(const mt_subject *s, const mt_mc_item *items, int n,
               mt_mc_result *r, lm_err *err) {
    memset(r, 0, sizeof *r);
    r->correct = calloc((size_t)(n ? n : 1), 1);
    r->correct_norm = calloc((size_t)(n ? n : 1), 1);
    if (!r->correct || !r->correct_norm) {
        mt_mc_result_free(r);
        return lm_errf(err, "out of memory");
    }
    int right = 0, right_norm = 0;
    for (int i = 0; i < n; i++) {
        const mt_mc_item *it = &items[i];
        if (it->n_choices < 2 || it->gold < 0 || it->gold >= it->n_choices) {
            mt_mc_result_free(r);
            return lm_errf(err, "item %d: %d choices, gold %d", i, it->n_choices, it->gold);
        }
        double best = -DBL_MAX, best_norm = -DBL_MAX;
        int arg = 0, arg_norm = 0;
        for (int c = 0; c < it->n_choices; c++) {
            double ll;
            if (choice_loglik(s, it->context, it->choices[c], &ll, err)) {
                lm_err_prefix(err, "item %d choice %d: ", i, c);
                mt_mc_result_free(r);
                return -1;
            }
            size_t len = utf8_chars(it->choices[c]);
            double norm = ll / (double)(len ? len : 1);
            /* strict '>' keeps the lowest index on ties, as argmax does */
            if (ll > best) { best = ll; arg = c; }
            if (norm > best_norm) { best_norm = norm; arg_norm = c; }
        }
        r->correct[i] = arg == it->gold;
        r->correct_norm[i] = arg_norm == it->gold;
        right += r->correct[i];
        right_norm += r->correct_norm[i];
    }
    r->n = n;
    r->acc = n ? (double)right / n : 0.0;
    r->acc_norm = n ? (double)right_norm / n : 0.0;
    if (n > 1) {
        double var = (double)right * (1.0 - r->acc) * (1.0 - r->acc) +
                     (double)(n - right) * r->acc * r->acc;
        r->acc_stderr = sqrt(var / (n - 1)) / sqrt((double)n);
    }
    return 0;
}
