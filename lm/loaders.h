/* The model loaders behind lm_model_load (lm/load_any.c): a Hugging Face
 * folder (lm/load_hf.c), a GGUF file (lm/load_gguf.c), a llama2.c .bin
 * (lm/llama2c.c). Each fills a fresh model (m->be left NULL for the caller)
 * or frees what it built and returns negative with the reason in err. */
#ifndef LM_LOADERS_H
#define LM_LOADERS_H

#include "model.h"

int lm_model_load_hf(lm_model *m, const char *dir, lm_err *err);
int lm_model_load_gguf(lm_model *m, const char *path, lm_err *err);
int lm_model_load_llama2c(lm_model *m, const char *path, lm_err *err);

#endif
