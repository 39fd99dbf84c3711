/* Hugging Face config.json <-> lm_config, for the Llama, Mistral, GPT-2 and
 * OPT families, plus the Hugging Face folder loader.
 *
 * Only what the model computes is read; a key that would change the maths
 * in a way we do not implement (rope_scaling, OPT-350m's post-LayerNorm,
 * an activation other than the family's) is an error, never ignored. */
#ifndef LM_HF_CONFIG_H
#define LM_HF_CONFIG_H

#include <stddef.h>

#include "err.h"
#include "model.h"

/* Parses config.json text (len bytes, need not be terminated). `fname`
 * names the file in errors. The result has passed lm_config_validate. */
int lm_hf_config_parse(lm_config *c, const char *json, size_t len,
                       const char *fname, lm_err *err);
int lm_hf_config_read(lm_config *c, const char *path, lm_err *err);

/* config.json text that transformers loads back into the same model
 * (malloc'd), or NULL with err set. */
char *lm_hf_config_to_json(const lm_config *c, lm_err *err);
/* Writes dir/config.json and dir/generation_config.json. */
int lm_hf_config_write(const lm_config *c, const char *dir, lm_err *err);

/* Reads a HF folder: config.json, then model.safetensors or the shards of
 * model.safetensors.index.json (also declared in loaders.h). */
int lm_model_load_hf(lm_model *m, const char *dir, lm_err *err);

#endif
