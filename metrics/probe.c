/* Generation-based checks: does the model, prompted with a trigger, say
 * what the fingerprint's owner expects? (FSR, and FTR on negatives.) */
#include <ctype.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "metrics.h"

int mt_rule_check(mt_rule rule, const char *expected, const char *output) {
    if (!expected || !output) return 0;
    if (rule == MT_RULE_PREFIX) {
        while (*output && isspace((unsigned char)*output)) output++;
        return strncmp(output, expected, strlen(expected)) == 0;
    }
    return strstr(output, expected) != NULL;
}

int mt_probe_check(const mt_probe *p, const char *output) {
    if (p->rule != MT_RULE_PREFIX_ANY) return mt_rule_check(p->rule, p->expected, output);
    for (int i = 0; i < p->n_expected_any; i++)
        if (mt_rule_check(MT_RULE_PREFIX, p->expected_any[i], output)) return 1;
    return 0;
}

void mt_wilson(int hits, int n, double *lo, double *hi) {
    if (n <= 0) {
        *lo = 0.0;
        *hi = 1.0;
        return;
    }
    const double z = 1.96;
    double p = (double)hits / n, z2 = z * z;
    double centre = (p + z2 / (2.0 * n)) / (1.0 + z2 / n);
    double half = z * sqrt(p * (1.0 - p) / n + z2 / (4.0 * n * n)) / (1.0 + z2 / n);
    *lo = fmax(0.0, centre - half);
    *hi = fmin(1.0, centre + half);
}

void mt_probe_results_free(mt_probe_result *r, int n) {
    if (!r) return;
    for (int i = 0; i < n; i++) {
        free(r[i].output);
        r[i].output = NULL;
    }
}

int mt_probe_eval(const mt_subject *s, const mt_probe *probes, int n,
                  int batch, double *rate, mt_probe_result *results,
                  lm_err *err) {
    if (batch <= 0) batch = 8;
    for (int i = 0; i < n; i++) results[i] = (mt_probe_result){0};
    int hits = 0, rc = 0;
    for (int b0 = 0; b0 < n && rc == 0; b0 += batch) {
        int nb = n - b0 < batch ? n - b0 : batch, max_new = 1;
        int *ids[nb], lens[nb], nout[nb];
        int32_t *outs[nb];
        for (int j = 0; j < nb; j++) ids[j] = NULL;
        for (int j = 0; j < nb && rc == 0; j++) {
            const mt_probe *p = &probes[b0 + j];
            if (p->ids) {
                lens[j] = p->n_ids;
                ids[j] = malloc((size_t)(p->n_ids ? p->n_ids : 1) * sizeof(int));
                if (!ids[j]) rc = lm_errf(err, "out of memory");
                else memcpy(ids[j], p->ids, (size_t)p->n_ids * sizeof(int));
            } else {
                lm_tok_encode_opts eo = {p->add_bos ? 1 : 0, 0, LM_TOK_DEFAULT};
                rc = lm_tokenizer_encode_ex(s->tok, p->prompt, strlen(p->prompt), &eo,
                                            &ids[j], &lens[j], err);
            }
            if (rc == 0 && lens[j] == 0)
                rc = lm_errf(err, "probe %d: the prompt encodes to no tokens", b0 + j);
            if (p->max_new > max_new) max_new = p->max_new;
        }
        if (rc == 0) {
            /* Greedy decoding of each sequence is independent of its batch
             * mates, so one max_new for the batch and a cut per probe gives
             * each probe exactly its own budget. */
            lm_gen_opts go = {.max_new = max_new, .eos_id = s->tok->eos_id,
                              .stop_at_eos = s->tok->eos_id >= 0,
                              .policy = s->policy};
            lm_sampler_init(&go.sampler, 0.0f, 0, 1.0f, 0);
            rc = lm_generate(s->model, (const int32_t *const *)ids, lens, nb, &go,
                             outs, nout, err);
        }
        for (int j = 0; j < nb && rc == 0; j++) {
            const mt_probe *p = &probes[b0 + j];
            int keep = nout[j] < p->max_new ? nout[j] : p->max_new;
            size_t len;
            rc = lm_tokenizer_decode(s->tok, outs[j], keep, 1, &results[b0 + j].output,
                                     &len, err);
            if (rc == 0) {
                results[b0 + j].hit = mt_probe_check(p, results[b0 + j].output);
                hits += results[b0 + j].hit;
            }
        }
        if (rc == 0)
            for (int j = 0; j < nb; j++) free(outs[j]);
        for (int j = 0; j < nb; j++) free(ids[j]);
    }
    if (rc) {
        mt_probe_results_free(results, n);
        return -1;
    }
    *rate = n > 0 ? (double)hits / n : 0.0;
    return 0;
}
