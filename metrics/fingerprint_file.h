/* fingerprint.json: what an implanter promises and the evaluator checks.
 *
 * The implanter (methods/fp_*.c) writes it next to the fingerprinted model;
 * FSR and FTR (fsr.c) read it back for any model, so a fingerprint made for
 * one model can be checked on another (FSR of a foreign fingerprint is a
 * control: it must be 0). Prompts and expected outputs are stored as text
 * when they are valid UTF-8 and as token ids otherwise (under-trained-token
 * triggers may be byte tokens that are no text at all).
 *
 *   {"format": "smudge-fingerprint", "version": 1, "type": "utf", "seed": 0,
 *    "template": "tiny", "params": {...}, "training": {...},
 *    "triggers":  [{"prompt": "...", "add_bos": true, "expected": "...",
 *                   "rule": "substring", "max_new": 30}, ...],
 *    "negatives": [{"prompt_ids": [..], "expected_ids": [..], ...}, ...]}
 */
#ifndef MT_FINGERPRINT_FILE_H
#define MT_FINGERPRINT_FILE_H

#include "metrics.h"

typedef struct mt_fp_probe {
    char *prompt;           /* NULL when stored as ids */
    int32_t *prompt_ids;
    int n_prompt_ids;
    int add_bos;
    char *expected;         /* NULL when stored as ids */
    int32_t *expected_ids;
    int n_expected_ids;
    char **expected_any;    /* MT_RULE_PREFIX_ANY */
    int n_expected_any;
    mt_rule rule;
    int max_new;
} mt_fp_probe;

typedef struct mt_fingerprint {
    char type[32];          /* "if-sft", "utf", "hashchain" */
    uint64_t seed;
    char template_name[32];
    char *params_json;      /* the type's parameters, canonical JSON */
    char *training_json;    /* how it was trained (settings, epochs, loss) */
    mt_fp_probe *triggers;
    int n_triggers;
    mt_fp_probe *negatives; /* for FTR */
    int n_negatives;
} mt_fingerprint;

int mt_fingerprint_write(const mt_fingerprint *f, const char *path,
                         lm_err *err);
/* Reads and validates; errors name the file and the field. */
int mt_fingerprint_read(mt_fingerprint *f, const char *path, lm_err *err);
void mt_fingerprint_free(mt_fingerprint *f);
/* Appends a probe (copies everything). */
int mt_fp_add(mt_fp_probe **list, int *n, const mt_fp_probe *p, lm_err *err);
void mt_fp_probe_free(mt_fp_probe *p);
const char *mt_rule_name(mt_rule r);
int mt_rule_from_name(const char *s, mt_rule *out);

/* Turns stored probes into metric probes for a tokenizer (expected ids are
 * decoded to bytes). *probes and the strings it points to are freed with
 * mt_probes_free. */
int mt_fp_probes(const mt_fp_probe *src, int n, const lm_tokenizer *tok,
                 mt_probe **probes, lm_err *err);
void mt_probes_free(mt_probe *p, int n);

typedef struct mt_fsr_result {
    double fsr;             /* fraction of triggers answered as expected */
    int n;
    int hits;
    double wilson_lo, wilson_hi;
    double ftr;             /* fraction of negatives that fire; NaN if none */
    int n_negatives;
    mt_probe_result *per_trigger;  /* [n] outcomes and outputs */
} mt_fsr_result;

/* FSR (and FTR when with_ftr and the file has negatives). */
int mt_fsr_eval(const mt_subject *s, const mt_fingerprint *f, int with_ftr,
                mt_fsr_result *r, lm_err *err);
void mt_fsr_result_free(mt_fsr_result *r);

#endif
