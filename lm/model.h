/* Decoder-only transformer covering the Llama/Mistral, GPT-2 and OPT families.
 *
 * A model is a config, a table of named parameter tensors (Hugging Face
 * names) and per-layer pointers into that table. Weights are fp32 in memory:
 * carved from one allocation, or pointing straight into a private memory map
 * of an F32 safetensors file (copy-on-write, so training never touches the
 * file). The forward and backward passes live in model.c, layer by layer. */
#ifndef LM_MODEL_H
#define LM_MODEL_H

#include <stddef.h>
#include <stdint.h>

#include "backend.h"
#include "err.h"

typedef enum lm_arch {
    LM_ARCH_LLAMA = 0, /* RMSNorm, RoPE, SwiGLU, no biases */
    LM_ARCH_MISTRAL,   /* Llama + sliding-window attention */
    LM_ARCH_GPT2,      /* LayerNorm, learned positions, GELU(tanh), fused qkv */
    LM_ARCH_OPT,       /* LayerNorm, learned positions (+2), ReLU */
    LM_ARCH_COUNT
} lm_arch;

const char *lm_arch_name(lm_arch a);           /* "llama", "mistral", ... */
int lm_arch_from_name(const char *s, lm_arch *out); /* 0 ok, -1 unknown */

typedef struct lm_config {
    lm_arch arch;
    int vocab_size;
    int d_model;
    int n_layers;
    int n_heads;
    int n_kv_heads;     /* == n_heads without GQA */
    int head_dim;       /* usually d_model / n_heads */
    int ffn_dim;        /* intermediate_size / n_inner / ffn_dim */
    int max_pos;        /* max_position_embeddings / n_positions */
    float norm_eps;
    float rope_theta;   /* Llama/Mistral only */
    int sliding_window; /* Mistral; 0 = none */
    int tie_embeddings; /* lm_head shares the token embedding */
    int attention_bias; /* Llama variants with q/k/v/o biases */
    int bos_id, eos_id, pad_id; /* -1 when the config does not say */
} lm_config;

/* Fills the family's defaults (eps, theta, ...) for the given arch and
 * shape; used by tests, the benchmark and the zoo. */
void lm_config_default(lm_config *c, lm_arch arch, int vocab, int d_model,
                       int n_layers, int n_heads, int n_kv_heads, int ffn_dim,
                       int max_pos);
/* Checks the config is usable (positive sizes, heads divide, ...). */
int lm_config_validate(const lm_config *c, lm_err *err);

typedef struct lm_tensor {
    char name[96];      /* Hugging Face name */
    int ndim;           /* 1 or 2 */
    int shape[2];       /* [rows, cols]; Linear weights are [out, in] */
    size_t numel;
    int hf_transposed;  /* stored as GPT-2 Conv1D [in, out] in HF files */
    char stored[8];     /* dtype in the file it was loaded from ("F32",
                           "F16", "BF16", "Q8_0"); "" when made here */
    float *data;
    float *grad;        /* NULL unless gradients were allocated */
} lm_tensor;

struct lm_lora; /* defined by the LoRA module (part 2) */

/* One linear layer: y = x W^T + b, with an optional low-rank adapter. */
typedef struct lm_linear {
    lm_tensor *w;       /* [out, in] */
    lm_tensor *b;       /* [out] or NULL */
    struct lm_lora *lora;
} lm_linear;

typedef struct lm_layer {
    lm_tensor *ln1_w, *ln1_b;   /* before attention (b NULL for RMSNorm) */
    lm_linear q, k, v;          /* Llama, Mistral, OPT */
    lm_linear qkv;              /* GPT-2 c_attn: [3C, C] rows q|k|v */
    lm_linear o;
    lm_tensor *ln2_w, *ln2_b;   /* before the MLP */
    lm_linear gate;             /* SwiGLU gate (Llama) */
    lm_linear up;               /* up_proj / c_fc / fc1 */
    lm_linear down;             /* down_proj / c_proj / fc2 */
} lm_layer;

typedef struct lm_mapping {
    void *addr;
    size_t len;
} lm_mapping;

typedef struct lm_model {
    lm_config cfg;
    lm_backend *be;         /* not owned */

    lm_tensor *params;      /* the table, in a fixed family order */
    int n_params;

    lm_tensor *wte;         /* [V, C] token embedding */
    lm_tensor *wpe;         /* [P, C] learned positions or NULL */
    int pos_offset;         /* OPT's learned positions start at 2 */
    lm_layer *layers;
    lm_tensor *lnf_w, *lnf_b;
    lm_tensor *lm_head;     /* [V, C]; == wte when tied */

    float *owned;           /* one allocation for all non-mapped weights */
    size_t owned_floats;
    lm_mapping *maps;       /* memory maps weights point into */
    int n_maps;

    float *grad_memory;     /* one allocation for all gradients, or NULL */
} lm_model;

/* Builds the tensor table for cfg with every data pointer NULL. */
int lm_model_init(lm_model *m, const lm_config *cfg, lm_err *err);
/* Carves one allocation for every tensor whose data is still NULL (zeroed). */
int lm_model_alloc(lm_model *m, lm_err *err);
/* Fills every weight: N(0, std) for matrices, ones/zeros for norms. */
void lm_model_init_random(lm_model *m, uint64_t seed, float std);
lm_tensor *lm_model_find(lm_model *m, const char *name);
size_t lm_model_param_count(const lm_model *m); /* tied head counted once */
/* Allocates (zeroed) gradients for every parameter. */
int lm_model_alloc_grads(lm_model *m, lm_err *err);
void lm_model_zero_grads(lm_model *m);
void lm_model_free(lm_model *m);
/* Record a memory map the model's tensors point into (freed with the model). */
int lm_model_add_mapping(lm_model *m, void *addr, size_t len, lm_err *err);

/* ---- forward / backward over a batch of B sequences of T tokens ---- */

/* Activations, llm.c style: one allocation carved into named buffers, sized
 * for at most B x T tokens. */
typedef struct lm_acts {
    int B, T;               /* capacity */
    int cur_B, cur_T;       /* shape of the last forward */
    int training;           /* all layers kept, backward buffers present */
    float *memory;
    size_t floats;
    /* per layer, [L, ...] */
    float *resid;           /* [L+1, B*T, C]: input of each layer, then final */
    float *ln1, *ln1_mean, *ln1_rstd;
    float *q, *k, *v;       /* [L, B*T, H*D] / [L, B*T, KVH*D], after RoPE */
    float *att;             /* [L, B, H, T, T] attention probabilities; a
                               caller may read them after a forward (with
                               training buffers every layer's are kept,
                               otherwise only the last layer's) */
    float *atty;            /* [L, B*T, H*D] attention output */
    float *resid_mid;       /* [L, B*T, C] after the attention residual */
    float *ln2, *ln2_mean, *ln2_rstd;
    float *ffn_gate, *ffn_up; /* [L, B*T, F] pre-activation */
    float *ffn_act;         /* [L, B*T, F] activation output */
    float *lnf, *lnf_mean, *lnf_rstd;
    float *logits;          /* [B*T, V] */
    float *losses;          /* [B*T] */
    /* scratch for backward */
    float *d_resid, *d_buf1, *d_buf2, *d_ffn1, *d_ffn2, *d_ffn3;
    float *d_q, *d_k, *d_v;
    float *d_logits;
    float *d_input_embeds;  /* [B*T, C]: gradient w.r.t. the input embeddings */
    int32_t *pos;           /* [B*T] */
} lm_acts;

int lm_acts_build(lm_acts *a, const lm_model *m, int B, int T, int training,
                  lm_err *err);
void lm_acts_free(lm_acts *a);

/* logits = model(ids) for ids [B, T]; input embeddings may be overridden by
 * `embeds` [B*T, C] (NULL = look up ids), for attacks that optimise inputs. */
int lm_forward(lm_model *m, lm_acts *a, const int32_t *ids,
               const float *embeds, int B, int T, lm_err *err);
/* Mean masked cross-entropy of the last forward's logits against targets
 * [B*T] (target < 0 ignored) weighted by mask (NULL = all ones). Returns the
 * loss; *counted receives sum(mask). */
float lm_loss(lm_model *m, lm_acts *a, const int32_t *targets,
              const float *mask, double *counted);
/* Gradients of that loss into every parameter's grad (which must be
 * allocated) and into a->d_input_embeds. */
int lm_backward(lm_model *m, lm_acts *a, const int32_t *ids,
                const int32_t *targets, const float *mask, lm_err *err);

/* Building blocks shared with the cached forward in generate.c. */
/* y[M,out] (=|+=) x W^T + b, plus the layer's LoRA adapter if any. */
void lm_linear_forward(lm_backend *be, const lm_linear *lin, float *y,
                       const float *x, int M, int accumulate);
/* q, k, v projections (separate, or GPT-2's fused c_attn). */
void lm_qkv_forward(lm_backend *be, const lm_layer *L, float *q, float *k,
                    float *v, const float *x, int M);
/* The family's norm (RMSNorm or LayerNorm) over N rows. */
void lm_norm_forward(const lm_model *m, float *out, float *mean, float *rstd,
                     const float *x, const lm_tensor *w, const lm_tensor *b,
                     int N);
/* Family traits. */
int lm_uses_rope(const lm_config *c);
int lm_uses_swiglu(const lm_config *c);

/* logprobs[k] = ln P(ids[k+1] | ids[0..k]) for k < n-1. */
int lm_score_ids(lm_model *m, const int32_t *ids, int n, float *logprobs,
                 lm_err *err);

/* ---- loading and saving ---- */

/* PATH is a Hugging Face folder, a llama2.c .bin or a .gguf file. */
int lm_model_load(lm_model *m, const char *path, lm_err *err);
/* Writes model.safetensors + config.json (+ generation_config.json). */
int lm_model_save_hf(const lm_model *m, const char *dir, lm_err *err);

#endif
