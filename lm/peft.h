/* LoRA adapters by Hugging Face module name, and PEFT's file format.
 *
 * A set of adapters hangs on the model's linear layers, each known by its
 * HF module path ("model.layers.0.self_attn.q_proj", the weight's name
 * without ".weight"). Targets select modules as PEFT's target_modules list
 * does: a target matches a module whose path equals it or ends in
 * "." + target, so "c_proj" takes both GPT-2's attn.c_proj and mlp.c_proj
 * while "attn.c_proj" takes only the first; "all-linear" takes every
 * linear layer of the blocks (never the head).
 *
 * On disk (PEFT's save_pretrained layout), a folder holding
 *   adapter_model.safetensors  base_model.model.<module>.lora_A.weight [r, in]
 *                              base_model.model.<module>.lora_B.weight [out, r]
 *   adapter_config.json        peft_type LORA, r, lora_alpha, target_modules...
 * GPT-2's Conv1D layers store lora_A/lora_B in the same [r, in] / [out, r]
 * shapes; fan_in_fan_out only describes the base weight. */
#ifndef LM_PEFT_H
#define LM_PEFT_H

#include <stdint.h>

#include "err.h"
#include "lora.h"
#include "model.h"

typedef struct lm_lora_site {
    char module[112];       /* HF module path */
    lm_linear *lin;         /* the layer it adapts */
    lm_lora lora;
} lm_lora_site;

typedef struct lm_lora_set {
    lm_lora_site *sites;    /* never reallocated: lin->lora points in here */
    int n;
    int r;
    float alpha, dropout;
    int rslora;             /* scale alpha / sqrt(r) instead of alpha / r */
    int fan_in_fan_out;     /* the base is GPT-2 (Conv1D weights) */
    char targets[512];      /* target_modules, comma-separated */
    int attached;           /* the adapters are hooked into the linears */
} lm_lora_set;

/* The targets PEFT picks for a family when none are given (q_proj,v_proj;
 * for GPT-2 c_proj,c_fc, since its fused c_attn is not adaptable yet). */
const char *lm_lora_default_targets(lm_arch arch);

/* Creates an adapter (rank r, scale alpha / r, the given dropout) on every
 * linear layer matched by the comma-separated `targets`, A drawn from
 * `seed`, B = 0, and hooks them into the model. Every target must match
 * something; the error lists the module names the model has. */
int lm_lora_attach(lm_model *m, const char *targets, int r, float alpha,
                   float dropout, uint64_t seed, lm_lora_set *set,
                   lm_err *err);
/* Room for `rows` = B*T rows of saved activations in every adapter. */
int lm_lora_set_reserve(lm_lora_set *set, int rows, lm_err *err);
/* Dropout on (training) or off (inference, the state after attach/load). */
void lm_lora_set_training(lm_lora_set *set, int on);
/* Unhooks the adapters from the model (they stay in the set). */
void lm_lora_set_detach(lm_lora_set *set);
/* Hooks them back in. */
void lm_lora_set_reattach(lm_lora_set *set);
/* Folds every adapter into its base weight (W += scale B A) and unhooks it;
 * the model then computes what base + adapters computed. */
void lm_lora_set_merge(lm_lora_set *set);
/* Unhooks (if hooked) and frees the adapters. */
void lm_lora_set_free(lm_lora_set *set);

/* Writes dir/adapter_model.safetensors and dir/adapter_config.json
 * (creating dir if needed). base_model (NULL = unknown) goes to
 * base_model_name_or_path. */
int lm_peft_save(const lm_lora_set *set, const char *dir,
                 const char *base_model, lm_err *err);
/* Reads a PEFT LoRA folder and hooks its adapters into the model. Names
 * and shapes are checked against the model; any feature we would not
 * compute faithfully (DoRA, rank/alpha patterns, trained biases, extra
 * modules) is an error naming it. */
int lm_peft_load(lm_model *m, const char *dir, lm_lora_set *set, lm_err *err);

#endif
