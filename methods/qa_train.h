/* What the fine-tuning removal methods (MEraser, incremental fine-tuning)
 * share: finding the model's tokenizer, loading a question/answer data set,
 * turning pairs into training sequences, and training with progress and
 * cost sent to the method's reporter. */
#ifndef SM_QA_TRAIN_H
#define SM_QA_TRAIN_H

#include "dataset.h"
#include "method.h"
#include "tokenizer.h"
#include "train.h"

/* The tokenizer of the model being cleaned: the data set "tokenizer" when
 * the caller passed one (smudge remove --tokenizer), else tokenizer.json in
 * the model's folder, else a llama2.c tokenizer file beside the weights
 * (tokenizer.bin, tok*.bin: what smudge implant puts there), else the one
 * inside a GGUF file. */
int qt_load_tokenizer(const sm_input *in, lm_tokenizer *t, lm_err *err);

/* Loads the data set NAME the method was given (any question/answer
 * format); `fmt` overrides the format when the caller named none. */
int qt_load_qa(const sm_input *in, const char *name, ds_format fmt,
               ds_dataset *ds, lm_err *err);

/* The question of a record as a model should read it: Dolly's context or
 * Alpaca's input follows the instruction on a new line (malloc'd). */
char *qt_question(const ds_qa *r);

/* MEraser's sequence (removal-methods.md 1.2 / 1.5): tok(question +
 * suffix)[:max_q] ++ tok(answer)[:max_a], each encoded on its own with no
 * BOS and no EOS. prompt_len = the question's length, so that training with
 * train_on_prompt = 0 puts the loss on the answer only. [DESIGN] With no
 * suffix and a tokenizer that adds no leading space of its own (byte-level
 * BPE), the answer is encoded as " " + answer, as Llama's dummy prefix
 * does for the reference. */
int qt_pair_example(const lm_tokenizer *t, const char *question,
                    const char *suffix, const char *answer, int max_q,
                    int max_a, lm_train_example *e, lm_err *err);

/* A chat turn: BOS (the tokenizer's default) + prompt + response + EOS,
 * encoded as one text; prompt_len = where tok(prompt) prefixes it. */
int qt_chat_example(const lm_tokenizer *t, const char *prompt,
                    const char *response, lm_train_example *e, lm_err *err);

/* A passage of plain text as an example that learns every token: encoded
 * (BOS when add_bos), cut to max_len tokens, prompt_len as given. Returns 1
 * for a passage under 8 tokens, too short to teach anything. */
int qt_text_passage(const lm_tokenizer *t, const char *text, int add_bos, int max_len,
                    int prompt_len, lm_train_example *e, lm_err *err);

void qt_examples_free(lm_train_example *ex, int n);

/* lm_train with progress mapped onto [from, to] of the reporter's scale,
 * labelled `step`, and the phase's cost (wall seconds, tokens, FLOPs
 * estimated as 6 N per token for full fine-tuning and 4 N for LoRA, where
 * the weights take no gradient) reported when it ends. */
int qt_train(const sm_input *in, const char *step, double from, double to,
             lm_model *m, lm_lora_set *lora, const lm_train_example *ex,
             int n_ex, lm_train_opts *o, lm_train_status *final, lm_err *err);

/* "auto" or "" -> the family's query and value projections (PEFT's
 * default targets); anything else as given. */
const char *qt_targets(const lm_model *m, const char *param);

/* The spec's tiny-model rank rule (1.7): r is kept while r <= d_model / 4,
 * else d_model / 8 (at least 1). */
int qt_scaled_rank(const lm_model *m, int r);

/* SHA-256 of a file as 64 hex digits. */
int qt_sha256_file(const char *path, char hex[65], lm_err *err);

#endif
