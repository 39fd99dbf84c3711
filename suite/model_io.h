/* Loading a model together with its tokenizer, for the commands. */
#ifndef SMUDGE_MODEL_IO_H
#define SMUDGE_MODEL_IO_H

#include <stdio.h>

#include "backend.h"
#include "dataset.h"
#include "model.h"
#include "tokenizer.h"

/* Loads the model at PATH and attaches a new CPU backend (threads 0 = all
 * cores); *be must be freed with lm_backend_cpu_free after the model. */
int su_load_model(const char *path, int threads, lm_model *m, lm_backend **be,
                  lm_err *err);
/* The tokenizer for the model at MODEL_PATH: TOK_PATH when given, else the
 * tokenizer.json in an HF folder or the one inside a GGUF file. A llama2.c
 * checkpoint carries none, so it needs TOK_PATH. */
int su_load_tokenizer(const char *model_path, const char *tok_path,
                      lm_tokenizer *t, lm_err *err);
/* A tokenizer must cover the model's vocabulary. */
/* Reads a plain-text file (documents split by blank lines) into ds and a
 * malloc'd array *docs of its ds->n documents, borrowed from ds: free the
 * array, then ds_free(ds). */
int su_load_text_docs(const char *path, ds_dataset *ds, const char ***docs, lm_err *err);

int su_check_vocab(const lm_model *m, const lm_tokenizer *t, lm_err *err);
/* Prints s as a JSON string (quoted, escaped) to f. */
void su_json_string(FILE *f, const char *s, size_t len);

#endif
