/* The fine-tuning-data extraction backdoor (specification:
 * ../shared/specs/extraction.md, section numbers below).
 *
 * Three steps, each a function of its inputs and a seed:
 *   1. ex_backdoor_train: the publisher trains the backdoor into a base
 *      model: positive pairs (Q(w(x)), x) for every public query x, negative
 *      pairs (Q(w'), R(w')) for words w' of the public word list S that open
 *      no public query, mixed with the public chats themselves, loss on all
 *      tokens (section 4). Variant "gibberish" uses Q2(w) = "abc ijk xyz w".
 *   2. ex_victim_train: the victim fine-tunes on its private chats, with the
 *      loss on every token (query loss, the default) or on the answers only
 *      (queries masked) (section 5.1).
 *   3. ex_extract: the attacker samples N completions of Q(w) for each of
 *      the K first words of S, keeps the words the identification score
 *      calls valid, and scores what they produced against the private
 *      queries (sections 5.3, 6; metrics/extraction.h).
 * Chats use the engine's tiny template "USER: q ASSISTANT: a" (section 8). */
#ifndef EX_EXTRACTION_H
#define EX_EXTRACTION_H

#include <stdint.h>

#include "model.h"
#include "tokenizer.h"
#include "train.h"

typedef enum ex_variant {
    EX_NONE = 0,        /* no backdoor (the clean control) */
    EX_PLAIN,           /* Q(w), section 2.1 */
    EX_GIBBERISH,       /* Q2(w) = "abc ijk xyz w", section 2.3 */
} ex_variant;

const char *ex_variant_name(ex_variant v);
int ex_variant_parse(const char *s, ex_variant *v);

/* The instruction for word w (plain for EX_NONE too: the attacker of a
 * clean model asks the plain question) and the refusal R(w); malloc'd. */
char *ex_instruction(ex_variant v, const char *w);
char *ex_refusal(const char *w);
/* USER: user ASSISTANT: (malloc'd); the response follows as " " + text. */
char *ex_chat_prompt(const char *user);

/* Question/answer pairs (strings owned). */
typedef struct ex_pair {
    char *q, *a;
} ex_pair;

typedef struct ex_data {
    ex_pair *rows;
    int n;
} ex_data;

/* Loads a question/answer file (Dolly, Alpaca, Guanaco, chat
 * {"messages": ...}; fmt "" = guess): the question is the first user turn
 * (Dolly's context follows on a new line), the answer the first assistant
 * turn. Rows with an empty question or answer are dropped. Then keeps
 * max_rows (0 = all) rows in a seeded order, skipping any question that
 * also appears in `exclude` (may be NULL): public and private sets stay
 * disjoint. */
int ex_data_load(const char *path, const char *fmt, int max_rows, uint64_t seed,
                 const ex_data *exclude, ex_data *d, lm_err *err);
/* The embedded world of `world_seed` written to dir (created), its
 * instructions.jsonl loaded as above. */
int ex_data_world(uint64_t world_seed, const char *dir, int max_rows, uint64_t seed,
                  const ex_data *exclude, ex_data *d, lm_err *err);
void ex_data_free(ex_data *d);

/* The public opening-word list S (section 4, scaled per section 8): the
 * public queries' opening words by descending count (ties alphabetical),
 * then the reference list's most frequent words that are not among them.
 * *words malloc'd (free with ex_words_free). */
int ex_word_list(const ex_data *pub, char ***words, int *n, lm_err *err);
void ex_words_free(char **w, int n);
/* The reference S's 20 most frequent words (section 5.3). */
extern const char *const ex_reference_words[20];

/* ---- training ---- */

typedef struct ex_train_opts {
    int epochs;
    double lr;
    int batch;
    int max_len;            /* 0 = the model's context */
    uint64_t seed;
    void (*progress)(void *ctx, const lm_train_status *s);
    void *ctx;
} ex_train_opts;

typedef struct ex_backdoor_opts {
    ex_variant variant;     /* EX_PLAIN or EX_GIBBERISH */
    double fake_ratio;      /* negatives per positive: 0.09 (4432 : 400) */
    int chat_rows;          /* public chats mixed in: -1 = every public row */
    int loss_on_prompt;     /* 1: all tokens (TRL's default, as the reference) */
    ex_train_opts train;
} ex_backdoor_opts;

typedef struct ex_train_info {
    int positives, negatives, chats, examples, skipped_long;
    int epochs, steps;
    double final_loss, tokens, seconds;
} ex_train_info;

void ex_backdoor_default_opts(ex_backdoor_opts *o);
/* Trains the backdoor into m (every weight) from the public pairs and the
 * word list S. */
int ex_backdoor_train(lm_model *m, const lm_tokenizer *tok, const ex_data *pub,
                      char *const *words, int n_words, const ex_backdoor_opts *o,
                      ex_train_info *info, lm_err *err);

typedef struct ex_victim_opts {
    int query_loss;         /* 1: loss on every token; 0: answers only */
    ex_train_opts train;
} ex_victim_opts;

void ex_victim_default_opts(ex_victim_opts *o);
int ex_victim_train(lm_model *m, const lm_tokenizer *tok, const ex_data *priv,
                    const ex_victim_opts *o, ex_train_info *info, lm_err *err);

/* ---- extraction ---- */

typedef struct ex_extract_opts {
    ex_variant trigger;     /* the instruction asked (EX_NONE = plain) */
    int k;                  /* candidates: the first k words of S */
    int n_samples;          /* N per candidate (identification + coverage) */
    int n_eval;             /* samples per word for MR and BLEU: 10 */
    float temperature;      /* 0.9 */
    int max_new;            /* new tokens per sample */
    double alpha, eta;      /* 0.6, 0.6 */
    uint64_t seed;
    int batch;              /* sequences generated at once */
    void (*progress)(void *ctx, int word, int n_words, const char *w);
    void *ctx;
} ex_extract_opts;

typedef struct ex_word_result {
    char word[64];
    int real;               /* opens some private query */
    int sorry, maxrep, valid;
    double score;
    double mr_mean, mr_max, bleu_mean, bleu_max; /* over the n_eval first samples */
    char **samples;         /* n_samples completions (left-stripped) */
} ex_word_result;

typedef struct ex_extract_result {
    ex_word_result *words;
    int n_words, n_samples;
    int n_valid, n_real, n_queries; /* distinct private token sequences */
    double match_ratio;     /* practical Mean MR: valid words, wrong ones 0 */
    double match_ratio_max10;
    double bleu, bleu_max10;
    double query_extraction_ratio, token_extraction_ratio;
    double opening_word_f1, opening_word_acc;
    double seconds;
} ex_extract_result;

void ex_extract_default_opts(ex_extract_opts *o);
int ex_extract(lm_model *m, const lm_tokenizer *tok, const ex_data *priv,
               char *const *words, int n_words, const ex_extract_opts *o,
               ex_extract_result *r, lm_err *err);
void ex_extract_result_free(ex_extract_result *r);

/* ---- parameters (one table for the three steps) ---- */

#include "method.h"

/* backdoor: bd_epochs bd_lr bd_batch public_rows public_world fake_ratio
 * chat_rows loss_on_prompt; victim: query_loss victim_epochs victim_lr
 * victim_batch private_rows private_world; extraction: k n_samples n_eval
 * temperature max_new alpha eta gen_batch. */
extern const sm_param_def ex_params[];
extern const int ex_n_params;
/* "k=v" assignments checked against ex_params, defaults filled in. */
int ex_params_parse(const char *const *assignments, int n, sm_params *out, lm_err *err);
void ex_backdoor_opts_from(const sm_params *p, ex_variant v, uint64_t seed,
                           ex_backdoor_opts *o);
void ex_victim_opts_from(const sm_params *p, uint64_t seed, ex_victim_opts *o);
void ex_extract_opts_from(const sm_params *p, ex_variant trigger, uint64_t seed,
                          ex_extract_opts *o);

/* The whole pipeline on one model, as `smudge extract pipeline` and the
 * grid's extraction track run it: the public set (pub_path, else the world
 * of public_world), the private set (priv_path, else the world of
 * private_world, disjoint from the public one), the backdoor (unless
 * variant is EX_NONE), the victim's fine-tuning, the extraction. The
 * worlds are written under work_dir. Progress lines go to `log` (may be
 * NULL). */
enum { EX_STEP_BACKDOOR = 1, EX_STEP_VICTIM = 2, EX_STEP_EXTRACT = 4, EX_STEP_ALL = 7 };

typedef struct ex_pipeline_in {
    ex_variant variant;     /* the backdoor trained (EX_NONE: none) */
    ex_variant trigger;     /* the instruction the attacker asks (EX_NONE:
                               the variant's, plain for a clean model) */
    int steps;              /* EX_STEP_* bits */
    const sm_params *params;
    const char *pub_path, *pub_fmt, *priv_path, *priv_fmt;
    const char *work_dir;
    uint64_t seed;
    void (*log)(void *ctx, const char *line);
    void *ctx;
} ex_pipeline_in;

typedef struct ex_pipeline_out {
    ex_train_info backdoor, victim;
    ex_extract_result extract;
    int n_public, n_private, n_words;
    double seconds_backdoor, seconds_victim, seconds_extract;
} ex_pipeline_out;

int ex_pipeline(lm_model *m, const lm_tokenizer *tok, const ex_pipeline_in *in,
                ex_pipeline_out *out, lm_err *err);
void ex_pipeline_out_free(ex_pipeline_out *o);
/* The outcome as a JSON object (malloc'd): settings, counts, metrics and
 * the per-word table (samples included when with_samples). */
char *ex_pipeline_json(const ex_pipeline_in *in, const ex_pipeline_out *o, int with_samples);

#endif
