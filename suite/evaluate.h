/* Evaluating one model on a list of metrics: what `smudge eval` prints and
 * what an evaluation unit of the grid records. */
#ifndef SMUDGE_EVALUATE_H
#define SMUDGE_EVALUATE_H

#include "err.h"

#define SU_EVAL_MAX 32
#define SU_EVAL_MAX_DATA 16

typedef struct su_eval_opts {
    const char *metrics;      /* "fsr,ftr,ppl,sciq,copa,rte,boolq,wsc" */
    const char *fingerprint;  /* fingerprint.json, for fsr/ftr */
    const char *tokenizer;    /* override (llama2.c checkpoints) */
    const char *policy_dir;   /* decoding policy written by a method, or NULL */
    const char *world_dir;    /* the embedded world (default: the zoo's) */
    const char *cache_dir;    /* zoo cache (NULL = default) */
    /* NAME=FILE overrides: ppl, sciq, copa, rte, boolq, wsc */
    const char *data_name[SU_EVAL_MAX_DATA];
    const char *data_path[SU_EVAL_MAX_DATA];
    int n_data;
    int max_items;            /* cap per task (0 = all) */
    int threads;
} su_eval_opts;

typedef struct su_metric_value {
    char name[32];            /* "fsr", "ppl", "sciq", "sciq_acc_norm", ... */
    double value;             /* fractions in [0, 1] for rates */
    long n;                   /* items it is over */
} su_metric_value;

typedef struct su_eval_result {
    su_metric_value v[SU_EVAL_MAX];
    int n;
    /* per-trigger outcomes of fsr (malloc'd, n_triggers long) */
    double *trigger_hits;
    int n_triggers;
    char source[SU_EVAL_MAX][512]; /* the data each metric read */
} su_eval_result;

/* The metrics smudge eval knows, comma-separated (for help and checks). */
const char *su_eval_known_metrics(void);
int su_evaluate(const char *model_path, const su_eval_opts *o, su_eval_result *r,
                lm_err *err);
void su_eval_result_free(su_eval_result *r);

#endif
