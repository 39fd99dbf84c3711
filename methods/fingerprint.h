/* Fingerprint types: how a fingerprint is built and trained into a model.
 * Specification: ../shared/specs/fingerprints.md (section numbers below).
 *
 * A type is one file (fp_ifsft.c, fp_utf.c, fp_hashchain.c) that fills a
 * `const fp_type`, in the manner of the removal methods (method.h): a name,
 * a description, a parameter table validated before anything runs, and
 * `build`, which turns a model, its tokenizer, a seed and clean chat data
 * into
 *   - the training rows: fingerprint rows, regularisation rows and normal
 *     rows, each a prompt with the chat template applied and a response;
 *   - the fingerprint itself (fingerprint_file.h): the trigger probes that
 *     FSR checks and the negative probes that FTR checks.
 * Everything random flows from the seed, so one seed gives one fingerprint.
 *
 * fp_implant (implant.c) is the same for every type: tokenise the rows
 * (loss on the response and EOS), train (full fine-tuning or LoRA) until
 * every trigger fires after an epoch, one epoch more, and write the model,
 * its tokenizer and fingerprint.json. */
#ifndef FP_FINGERPRINT_H
#define FP_FINGERPRINT_H

#include <stdint.h>

#include "fingerprint_file.h"
#include "method.h"
#include "model.h"
#include "tokenizer.h"
#include "train.h"

typedef enum fp_row_kind {
    FP_ROW_FINGERPRINT = 0,
    FP_ROW_REGULARISATION,
    FP_ROW_NORMAL,
} fp_row_kind;

/* One training conversation. The text is bytes, not necessarily UTF-8
 * (under-trained-token triggers may be lone bytes); it never holds NUL.
 * Tokenised as BOS (if the tokenizer adds one) + prompt + response + EOS;
 * the loss is on the response and the EOS. */
typedef struct fp_row {
    fp_row_kind kind;
    char *prompt;           /* template applied, ends before the answer */
    char *response;         /* " " + answer, or "" (only EOS is learnt) */
} fp_row;

/* A clean question/answer pair supplied by the caller. */
typedef struct fp_qa {
    const char *question;
    const char *answer;
} fp_qa;

typedef struct fp_build_input {
    lm_model *model;        /* UTF reads its embeddings and emission
                               probabilities; Chain&Hash its own answers */
    const lm_tokenizer *tok;
    uint64_t seed;
    const sm_params *params;/* validated against the type's table */
    const fp_qa *clean;     /* clean chats for normal rows and negatives */
    int n_clean;
} fp_build_input;

typedef struct fp_set {
    fp_row *rows;
    int n_rows;
    int counts[3];          /* rows per fp_row_kind */
    mt_fingerprint fp;      /* type, seed, template, params, triggers,
                               negatives; training_json is left to the
                               implanter */
    char *info_json;        /* how it was built (a JSON object): counts,
                               token lengths, candidate tokens, digests */
} fp_set;

typedef struct fp_type {
    const char *name;       /* "if-sft", "utf", "hashchain" */
    const char *description;
    const sm_param_def *params;
    int n_params;
    int (*build)(const fp_build_input *in, fp_set *out, lm_err *err);
} fp_type;

/* ---- registry and parameters ---- */

int fp_type_count(void);
const fp_type *fp_type_at(int i);
const fp_type *fp_type_find(const char *name);
/* "k=v" assignments checked against the type's table, defaults filled in
 * (sm_params_parse's rules and messages). */
int fp_params_parse(const fp_type *t, const char *const *assignments, int n,
                    sm_params *out, lm_err *err);

/* The parameters every type shares (the training protocol of section 5),
 * the first FP_N_TRAIN_PARAMS entries of each type's table. */
#define FP_N_TRAIN_PARAMS 12
#define FP_TRAIN_PARAMS                                                          \
    {"template", SM_PARAM_CHOICE, "auto", 0, 0, "auto|tiny|vicuna|llama2",       \
     "chat template (auto: tiny below 1B parameters or a context under 1024, "   \
     "else the type's reference template)"},                                     \
    {"lr", SM_PARAM_FLOAT, "0", 0, 1, NULL,                                      \
     "learning rate; 0 = 3e-4 below 50M parameters, 1e-4 below 1B, else 2e-5"},  \
    {"batch", SM_PARAM_INT, "16", 1, 4096, NULL, "rows per update"},             \
    {"max_epochs", SM_PARAM_INT, "200", 1, 100000, NULL,                         \
     "cap; reaching it without FSR = 1 is implant_failed"},                      \
    {"warmup", SM_PARAM_FLOAT, "0.05", 0, 1, NULL,                               \
     "warm-up fraction of the steps of min(max_epochs, 20) epochs"},             \
    {"weight_decay", SM_PARAM_FLOAT, "0.01", 0, 10, NULL, "AdamW decay"},        \
    {"max_grad_norm", SM_PARAM_FLOAT, "1", 0, 1e9, NULL, "clipping; 0 = off"},   \
    {"max_len", SM_PARAM_INT, "0", 0, 1 << 24, NULL,                             \
     "cut rows to this many tokens; 0 = the model's context"},                   \
    {"lora_r", SM_PARAM_INT, "0", 0, 4096, NULL, "LoRA rank; 0 = full fine-tuning"}, \
    {"lora_alpha", SM_PARAM_FLOAT, "16", 0, 1e6, NULL, "LoRA alpha"},            \
    {"lora_dropout", SM_PARAM_FLOAT, "0.05", 0, 0.99, NULL, "LoRA dropout"},     \
    {"lora_targets", SM_PARAM_STRING, "", 0, 0, NULL,                            \
     "LoRA target modules, comma-separated; empty = the family's default"},      \
    {"replay", SM_PARAM_INT, "-1", -1, 1 << 20, NULL,                            \
     "[DESIGN] passages of pretraining text trained alongside (loss on every "  \
     "token) so perplexity holds; -1 = three per row of the fingerprint set "   \
     "when replay text is given (zoo models: the world's corpus), 0 = none"},    \
    {"replay_len", SM_PARAM_INT, "128", 8, 1 << 20, NULL,                        \
     "replay passages are cut to this many tokens"},                             \
    {"replay_fresh", SM_PARAM_BOOL, "true", 0, 0, NULL,                          \
     "[DESIGN] draw new replay passages every epoch (false: the same ones)"}

/* ---- shared construction helpers (fingerprint.c) ---- */

/* Chat templates (sections 2.3, 3.3, 5): prompt = prefix + user + suffix,
 * response = " " + answer. */
typedef struct fp_template {
    const char *name;       /* "tiny", "vicuna", "llama2" */
    const char *prefix;
    const char *suffix;
} fp_template;

/* The template named by the "template" parameter; "auto" picks "tiny" for a
 * model under 1B parameters or with a context under 1024 tokens, else
 * `reference`. "none", or a NULL reference picked by "auto", gives
 * *out = NULL: no template. */
int fp_template_pick(const sm_params *p, const lm_model *m,
                     const char *reference, const fp_template **out,
                     lm_err *err);
/* prefix + user + suffix (malloc'd). */
char *fp_template_apply(const fp_template *t, const char *user);
/* Whether the probes and rows start with BOS: the tokenizer's own default. */
int fp_add_bos(const lm_tokenizer *tok);

/* Appends a row (copies the strings). */
int fp_set_add_row(fp_set *s, fp_row_kind kind, const char *prompt,
                   const char *response, lm_err *err);
void fp_set_free(fp_set *s);
/* Fills type, seed, template and params_json of s->fp. */
int fp_set_header(fp_set *s, const char *type, uint64_t seed,
                  const fp_template *t, const sm_params *p, lm_err *err);

/* The clean pairs in a seeded order (a permutation of 0..n-1, malloc'd);
 * fails when there are fewer than `need`, the message starting with `who`
 * ("if-sft (112 normal rows + 112 held-out negatives)"). */
int fp_clean_order(const fp_build_input *in, int need, const char *who,
                   int **order, lm_err *err);

/* Token count of text without BOS/EOS. */
int fp_token_count(const lm_tokenizer *tok, const char *text, int *n,
                   lm_err *err);
/* Encodes text with no BOS, no EOS and no dummy-prefix space, so pieces
 * can be spliced between ids (*ids malloc'd). */
int fp_encode_raw(const lm_tokenizer *tok, const char *text, int **ids,
                  int *n, lm_err *err);
/* Whether needle[0..nn) occurs contiguously in hay[0..nh). */
int fp_ids_contain(const int *hay, int nh, const int *needle, int nn);

/* Greedy continuations of text prompts (BOS per fp_add_bos), decoded with
 * special tokens skipped; outs[i] malloc'd. */
int fp_greedy_text(lm_model *m, const lm_tokenizer *tok,
                   const char *const *prompts, int n, int max_new,
                   char **outs, lm_err *err);

/* ---- type internals, public for the tests ---- */

/* IF-SFT (section 2.1): the 31-phrase pool and the 8 fixture triggers,
 * byte-exact. */
#define FP_IF_POOL 31
#define FP_IF_FIXTURES 8
extern const char *const fp_if_pool[FP_IF_POOL];
extern const char *const fp_if_fixture[FP_IF_FIXTURES];
#define FP_IF_TARGET "\xe3\x83\x8f\xe3\x83\xaa\xe3\x83\x8d\xe3\x82\xba\xe3\x83\x9f" /* ハリネズミ */

/* Chain&Hash (section 4.1): the fixed question and answer lists. */
#define FP_HC_QUESTIONS 10
#define FP_HC_ANSWERS 256
extern const char *const fp_hc_questions[FP_HC_QUESTIONS];
extern const char *const fp_hc_answers[FP_HC_ANSWERS];
/* SHA-256 (OpenSSL EVP). */
int fp_sha256(const void *data, size_t len, uint8_t digest[32], lm_err *err);
/* answer[i] = (last byte of SHA-256(q_i 0 q_1 0 .. q_k 0 r_1 0 .. r_n 0))
 * mod n, an index into r; digests (may be NULL) receives k x 32 bytes. */
int fp_hashchain_assign(const char *const *q, int k, const char *const *r,
                        int n, int *answer, uint8_t *digests, lm_err *err);

/* UTF (sections 3.1, 5): candidate under-trained tokens, the non-special
 * ids of the tokenizer's vocabulary with the smallest input-embedding norm:
 * max(min_count, those at or below the `percentile`-th percentile of all
 * norms), ascending by norm (ties by id). *ids malloc'd. */
int fp_utf_candidates(const lm_model *m, const lm_tokenizer *tok,
                      int min_count, double percentile, int **ids, int *n,
                      lm_err *err);
/* The largest probability the model gives to emitting `id` over three
 * greedy steps after each of the three verification prompts. */
int fp_utf_emission(lm_model *m, const lm_tokenizer *tok, int id,
                    double *max_prob, lm_err *err);

/* ---- implanting (implant.c) ---- */

#define FP_IMPLANT_FAILED (-2) /* the cap was reached: implant_failed */

typedef struct fp_implant_opts {
    const char *model_path;     /* tokenizer files are copied from here */
    const char *tokenizer_path; /* --tokenizer, or NULL */
    /* progress; library code never prints */
    void (*on_step)(void *ctx, const lm_train_status *s);
    void (*on_epoch)(void *ctx, int epoch, double loss, double fsr, int hits,
                     int n);
    void (*on_stage)(void *ctx, const char *what);
    void *ctx;
    /* held-out text: perplexity before and after (section 5's gate), or
     * none */
    const char *const *ppl_docs;
    int n_ppl_docs;
    /* pretraining text for the replay rows (param "replay"), or none */
    const char *const *replay_docs;
    int n_replay_docs;
} fp_implant_opts;

typedef struct fp_implant_result {
    int n_rows, n_triggers, n_negatives;
    int n_replay;           /* replay rows trained alongside */
    int epochs;             /* epochs trained */
    int epoch_star;         /* first epoch with FSR = 1 (0: never) */
    int failed;             /* implant_failed */
    long steps;
    double final_loss;      /* mean loss of the last epoch */
    double lr;
    double base_fsr;        /* the same triggers on the model before */
    double fsr, ftr;        /* after, on the written model */
    double tokens, seconds;
    double ppl_base, ppl;   /* over ppl_docs (0 when none were given) */
    int ppl_gate_ok;        /* ppl <= 1.1 ppl_base */
    char template_name[32];
    char tokenizer_file[64];/* what was put beside the weights ("" none) */
} fp_implant_result;

/* Builds the fingerprint of type t on model m, trains it in, and writes
 * out_dir/ (the model as a Hugging Face folder, merged if LoRA; the
 * tokenizer; fingerprint.json). m is modified in place. Returns 0,
 * FP_IMPLANT_FAILED (everything written, training.implant_failed true,
 * err says why), or -1. */
int fp_implant(const fp_type *t, lm_model *m, const lm_tokenizer *tok,
               const fp_qa *clean, int n_clean, uint64_t seed,
               const sm_params *p, const char *out_dir,
               const fp_implant_opts *o, fp_implant_result *r, lm_err *err);

/* The rows as training examples (BOS per fp_add_bos, EOS appended, prompt
 * length = the prompt's tokens where they prefix the whole). */
int fp_rows_tokenize(const fp_set *s, const lm_tokenizer *tok,
                     lm_train_example **ex, lm_err *err);
void fp_examples_free(lm_train_example *ex, int n);

#endif
