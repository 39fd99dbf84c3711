/* The tiny model zoo: recipes that build small models of each family from
 * the synthetic world, so the whole leaderboard runs with no network and no
 * downloaded checkpoints.
 *
 * A recipe fixes everything that determines a model: the world's seed, the
 * tokenizer's size, the shape, and the two training stages (pretraining on
 * the world corpus, then instruction tuning on its chats). Built models are
 * Hugging Face folders in a cache keyed by a hash of the recipe and of the
 * code versions that shape the result, so a second build is instant and a
 * changed recipe builds anew. */
#ifndef SMUDGE_ZOO_H
#define SMUDGE_ZOO_H

#include <stdint.h>

#include "err.h"
#include "model.h"

/* Bump when the zoo's training code changes what a recipe produces. */
#define SU_ZOO_VERSION 1

typedef struct su_recipe {
    const char *name;
    const char *description;
    lm_arch arch;
    int vocab;              /* tokenizer size, special tokens included */
    int d_model, layers, heads, kv_heads, ffn, context;
    uint64_t world_seed;
    uint64_t seed;          /* initialisation and data order */
    /* pretraining on corpus.txt */
    double pre_epochs;      /* passes over the corpus (fractions allowed) */
    int pre_seq, pre_batch, pre_warmup;
    double pre_lr;
    /* instruction tuning on instructions.jsonl, plus the train splits of the
     * world's tasks in their lm-eval prompt format, repeated task_repeats
     * times (facts never cross splits, so this teaches the format and the
     * reading, not the test answers) */
    int sft_epochs, sft_batch;
    double sft_lr;
    int task_repeats;
    double sft_loss_power;  /* lm_train's loss_length_power: 0 = token mean */
    /* windows of sft_replay_len corpus tokens mixed into instruction
     * tuning (loss on every token): chats alone pull a tiny model off
     * plain text, and held-out perplexity is measured on plain text */
    int sft_replay, sft_replay_len;
} su_recipe;

int su_zoo_count(void);
const su_recipe *su_zoo_at(int i);
const su_recipe *su_zoo_find(const char *name);

/* The quality measured when the model was built. */
typedef struct su_zoo_quality {
    double ppl;             /* held-out world perplexity */
    double sciq, copa, boolq; /* zero-shot accuracy on the world's test split */
    long params;
    double build_seconds;
} su_zoo_quality;

typedef struct su_zoo_progress {
    void (*report)(void *ctx, const char *stage, double fraction,
                   const char *detail);
    void *ctx;
} su_zoo_progress;

/* The cache folder: cache_dir if given, else $XDG_CACHE_HOME/smudge, else
 * $HOME/.cache/smudge. */
int su_zoo_cache_dir(const char *cache_dir, char *out, size_t cap, lm_err *err);
/* Where the recipe's model lives (built or not): CACHE/zoo/NAME-HASH. */
int su_zoo_model_dir(const su_recipe *r, const char *cache_dir, char *out,
                     size_t cap, lm_err *err);
/* The world the recipe trains on: CACHE/world/seed-S-vV (written if
 * missing). */
int su_zoo_world_dir(const su_recipe *r, const char *cache_dir, char *out,
                     size_t cap, lm_err *err);
/* The same, writing the world first if it is not there yet. */
/* The world's file for a data set a removal method may ask for by name
 * ("instructions", "corpus", "heldout"), with a description in *what;
 * NULL when smudge has no built-in default for that name. */
const char *su_world_data_file(const char *name, const char **what);

int su_zoo_ensure_world(const su_recipe *r, const char *cache_dir, char *out,
                        size_t cap, const su_zoo_progress *p, lm_err *err);
/* 1 if built, 0 if not. */
int su_zoo_is_built(const su_recipe *r, const char *cache_dir);
/* Builds the model unless it is there already (rebuild forces it), on one
 * thread so that the same recipe gives the same bits wherever it is built
 * from. Safe to call from several processes at once: one builds, the
 * others wait. */
int su_zoo_build(const su_recipe *r, const char *cache_dir, int rebuild,
                 const su_zoo_progress *p, lm_err *err);
int su_zoo_read_quality(const su_recipe *r, const char *cache_dir,
                        su_zoo_quality *q, lm_err *err);
/* A model argument may name a recipe: returns its folder (building it if
 * needed) in out, or copies the argument when it names no recipe. */
int su_zoo_resolve(const char *model, const char *cache_dir, char *out,
                   size_t cap, const su_zoo_progress *p, lm_err *err);

#endif
