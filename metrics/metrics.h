/* Metrics that judge a model, whoever made it: fingerprint success rate,
 * perplexity, zero-shot multiple-choice accuracy (lm-evaluation-harness
 * v0.4.8 formats), and the cost of a step. Definitions:
 * ../shared/specs/metrics.md. Every metric returns its aggregate and the
 * per-item values it is computed from, so a result can be recomputed. */
#ifndef MT_METRICS_H
#define MT_METRICS_H

#include <stddef.h>
#include <stdint.h>

#include "err.h"
#include "generate.h"
#include "model.h"
#include "tokenizer.h"

/* A model and what it needs to read and write text. */
typedef struct mt_subject {
    lm_model *model;
    const lm_tokenizer *tok;
    const lm_decode_policy *policy; /* NULL = plain greedy decoding */
} mt_subject;

/* ---- generation-based checks (FSR, FTR) ---- */

typedef enum mt_rule {
    MT_RULE_SUBSTRING = 0,  /* expected text occurs in the new text */
    MT_RULE_PREFIX,         /* new text, left-stripped, begins with it */
    MT_RULE_PREFIX_ANY,     /* ... begins with any of expected_any */
} mt_rule;

typedef struct mt_probe {
    const char *prompt;     /* the full prompt text (template applied) */
    const int32_t *ids;     /* or the exact prompt ids (then prompt and
                               add_bos are ignored): under-trained-token
                               triggers need not survive a text round trip */
    int n_ids;
    int add_bos;            /* prepend BOS when encoding the prompt */
    const char *expected;   /* what success looks like (NUL-terminated
                               bytes, not necessarily valid UTF-8) */
    const char *const *expected_any; /* for MT_RULE_PREFIX_ANY */
    int n_expected_any;
    mt_rule rule;
    int max_new;            /* greedy new tokens */
} mt_probe;

typedef struct mt_probe_result {
    int hit;
    char *output;           /* decoded new text (malloc'd) */
} mt_probe_result;

/* Greedy-decodes every probe (batched) and applies its rule. Returns the
 * hit fraction in *rate; results[i] gets each probe's outcome. */
int mt_probe_eval(const mt_subject *s, const mt_probe *probes, int n,
                  int batch, double *rate, mt_probe_result *results,
                  lm_err *err);
void mt_probe_results_free(mt_probe_result *r, int n);
/* The rule on its own (shared with the fingerprint trainers' criterion). */
int mt_rule_check(mt_rule rule, const char *expected, const char *output);
int mt_probe_check(const mt_probe *p, const char *output);
/* Wilson 95% interval of hits/n (metrics.md section 1). */
void mt_wilson(int hits, int n, double *lo, double *hi);

/* ---- perplexity ---- */

typedef struct mt_ppl_opts {
    int context;            /* C_eval: 0 = min(512, model context) */
    int stride;             /* sliding window for long documents; 0 = C/2 */
    int add_bos;            /* 1: BOS first (never scored) */
    int count_eos;          /* append EOS as a counted target */
} mt_ppl_opts;

typedef struct mt_ppl_result {
    double ppl;
    double nll_sum;         /* sum of -log p over counted tokens */
    long tokens;            /* counted tokens */
    int docs;
    double *doc_nll;        /* [docs] per-document sum (malloc'd) */
    long *doc_tokens;       /* [docs] */
} mt_ppl_result;

/* Token-weighted perplexity over documents; each longer than the context
 * is scored with a sliding window of stride S (metrics.md section 2.2). */
int mt_ppl_eval(const mt_subject *s, const char *const *docs, int n_docs,
                const mt_ppl_opts *opts, mt_ppl_result *r, lm_err *err);
void mt_ppl_result_free(mt_ppl_result *r);

/* ---- zero-shot multiple choice (lm-eval v0.4.8) ---- */

typedef struct mt_mc_item {
    char *context;          /* doc_to_text */
    char *choices[8];       /* choice strings, without the delimiter */
    int n_choices;
    int gold;
} mt_mc_item;

typedef struct mt_mc_result {
    double acc, acc_norm, acc_stderr;
    int n;
    uint8_t *correct;       /* [n] per item (acc) */
    uint8_t *correct_norm;  /* [n] per item (acc_norm) */
} mt_mc_result;

/* Scores every choice as " " + choice after the context, as the harness
 * does (trailing context white space moves to the continuation; no BOS;
 * left-truncation to the model's context). */
int mt_mc_eval(const mt_subject *s, const mt_mc_item *items, int n,
               mt_mc_result *r, lm_err *err);
void mt_mc_result_free(mt_mc_result *r);
void mt_mc_items_free(mt_mc_item *items, int n);

/* ---- cost ---- */

typedef struct mt_cost {
    double wall_seconds;
    double tokens;          /* tokens processed (forward, or forward+backward) */
    double flops;
    long peak_rss_bytes;    /* of this process so far (getrusage) */
} mt_cost;

typedef struct mt_clock {
    double start;
} mt_clock;

void mt_clock_start(mt_clock *c);
double mt_clock_seconds(const mt_clock *c);
long mt_peak_rss_bytes(void);
/* Forward FLOPs of one token at context length t (matmuls + attention). */
double mt_forward_flops_per_token(const lm_config *c, int t);

#endif
