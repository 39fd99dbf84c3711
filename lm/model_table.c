/* The parameter table of each family: Hugging Face names and shapes, the
 * per-layer pointers into it, and the one allocation that backs it. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

#include "model.h"
#include "rng.h"

static const char *const arch_names[LM_ARCH_COUNT] = {"llama", "mistral",
                                                      "gpt2", "opt"};

const char *lm_arch_name(lm_arch a) {
    return (a >= 0 && a < LM_ARCH_COUNT) ? arch_names[a] : "unknown";
}

int lm_arch_from_name(const char *s, lm_arch *out) {
    for (int i = 0; i < LM_ARCH_COUNT; i++)
        if (strcmp(s, arch_names[i]) == 0) {
            *out = (lm_arch)i;
            return 0;
        }
    return -1;
}

void lm_config_default(lm_config *c, lm_arch arch, int vocab, int d_model,
                       int n_layers, int n_heads, int n_kv_heads, int ffn_dim,
                       int max_pos) {
    memset(c, 0, sizeof *c);
    c->arch = arch;
    c->vocab_size = vocab;
    c->d_model = d_model;
    c->n_layers = n_layers;
    c->n_heads = n_heads;
    c->n_kv_heads = n_kv_heads > 0 ? n_kv_heads : n_heads;
    c->head_dim = n_heads > 0 ? d_model / n_heads : 0;
    c->ffn_dim = ffn_dim;
    c->max_pos = max_pos;
    c->norm_eps = (arch == LM_ARCH_LLAMA || arch == LM_ARCH_MISTRAL) ? 1e-5f
                                                                     : 1e-5f;
    c->rope_theta = 10000.0f;
    c->tie_embeddings = (arch == LM_ARCH_GPT2 || arch == LM_ARCH_OPT);
    c->bos_id = c->eos_id = c->pad_id = -1;
}

int lm_config_validate(const lm_config *c, lm_err *err) {
    if (c->arch < 0 || c->arch >= LM_ARCH_COUNT)
        return lm_errf(err, "unknown architecture %d", (int)c->arch);
    if (c->vocab_size <= 0 || c->d_model <= 0 || c->n_layers <= 0 ||
        c->n_heads <= 0 || c->n_kv_heads <= 0 || c->head_dim <= 0 ||
        c->ffn_dim <= 0 || c->max_pos <= 0)
        return lm_errf(err,
                       "config: sizes must be positive (vocab %d, d_model %d, "
                       "layers %d, heads %d, kv_heads %d, head_dim %d, ffn %d, "
                       "max_pos %d)",
                       c->vocab_size, c->d_model, c->n_layers, c->n_heads,
                       c->n_kv_heads, c->head_dim, c->ffn_dim, c->max_pos);
    /* Bounds that keep every size_t product below 2^62 and int indices sane. */
    if (c->vocab_size > (1 << 24) || c->d_model > (1 << 16) ||
        c->n_layers > 4096 || c->n_heads > 4096 || c->head_dim > 4096 ||
        c->ffn_dim > (1 << 18) || c->max_pos > (1 << 24))
        return lm_errf(err, "config: a size is implausibly large");
    if (c->n_heads % c->n_kv_heads != 0)
        return lm_errf(err,
                       "config: num_attention_heads %d is not a multiple of "
                       "num_key_value_heads %d",
                       c->n_heads, c->n_kv_heads);
    if (c->head_dim % 2 != 0 &&
        (c->arch == LM_ARCH_LLAMA || c->arch == LM_ARCH_MISTRAL))
        return lm_errf(err, "config: head_dim %d must be even for RoPE",
                       c->head_dim);
    if ((c->arch == LM_ARCH_GPT2 || c->arch == LM_ARCH_OPT) &&
        c->head_dim * c->n_heads != c->d_model)
        return lm_errf(err, "config: hidden size %d is not heads %d x %d",
                       c->d_model, c->n_heads, c->head_dim);
    if (c->arch == LM_ARCH_GPT2 && c->n_kv_heads != c->n_heads)
        return lm_errf(err, "config: GPT-2 has no grouped-query attention");
    if (!(c->norm_eps > 0.0f) || !isfinite(c->norm_eps))
        return lm_errf(err, "config: norm epsilon %g is not positive",
                       (double)c->norm_eps);
    if ((c->arch == LM_ARCH_LLAMA || c->arch == LM_ARCH_MISTRAL) &&
        (!(c->rope_theta > 0.0f) || !isfinite(c->rope_theta)))
        return lm_errf(err, "config: rope_theta %g is not positive",
                       (double)c->rope_theta);
    if (c->sliding_window < 0)
        return lm_errf(err, "config: sliding_window %d is negative",
                       c->sliding_window);
    return 0;
}

/* ---- building the table ---- */

typedef struct table_builder {
    lm_model *m;
    int cap;
} table_builder;

static lm_tensor *add_tensor(table_builder *tb, int rows, int cols,
                             int transposed, const char *fmt, int layer) {
    lm_model *m = tb->m;
    if (m->n_params == tb->cap) return NULL; /* cap is computed exactly */
    lm_tensor *t = &m->params[m->n_params++];
    memset(t, 0, sizeof *t);
    snprintf(t->name, sizeof t->name, fmt, layer);
    t->ndim = cols > 0 ? 2 : 1;
    t->shape[0] = rows;
    t->shape[1] = cols > 0 ? cols : 1;
    t->numel = (size_t)rows * (size_t)(cols > 0 ? cols : 1);
    t->hf_transposed = transposed;
    return t;
}

#define T2(rows, cols, fmt) add_tensor(&tb, rows, cols, 0, fmt, l)
#define T2T(rows, cols, fmt) add_tensor(&tb, rows, cols, 1, fmt, l)
#define T1(rows, fmt) add_tensor(&tb, rows, 0, 0, fmt, l)

static void build_llama(table_builder tb, lm_model *m) {
    const lm_config *c = &m->cfg;
    int C = c->d_model, HD = c->n_heads * c->head_dim,
        KD = c->n_kv_heads * c->head_dim, F = c->ffn_dim, l = 0;
    m->wte = T2(c->vocab_size, C, "model.embed_tokens.weight");
    for (l = 0; l < c->n_layers; l++) {
        lm_layer *L = &m->layers[l];
        L->ln1_w = T1(C, "model.layers.%d.input_layernorm.weight");
        L->q.w = T2(HD, C, "model.layers.%d.self_attn.q_proj.weight");
        L->k.w = T2(KD, C, "model.layers.%d.self_attn.k_proj.weight");
        L->v.w = T2(KD, C, "model.layers.%d.self_attn.v_proj.weight");
        L->o.w = T2(C, HD, "model.layers.%d.self_attn.o_proj.weight");
        if (c->attention_bias) {
            L->q.b = T1(HD, "model.layers.%d.self_attn.q_proj.bias");
            L->k.b = T1(KD, "model.layers.%d.self_attn.k_proj.bias");
            L->v.b = T1(KD, "model.layers.%d.self_attn.v_proj.bias");
            L->o.b = T1(C, "model.layers.%d.self_attn.o_proj.bias");
        }
        L->ln2_w = T1(C, "model.layers.%d.post_attention_layernorm.weight");
        L->gate.w = T2(F, C, "model.layers.%d.mlp.gate_proj.weight");
        L->up.w = T2(F, C, "model.layers.%d.mlp.up_proj.weight");
        L->down.w = T2(C, F, "model.layers.%d.mlp.down_proj.weight");
    }
    l = 0;
    m->lnf_w = T1(C, "model.norm.weight");
    m->lm_head = c->tie_embeddings ? m->wte
                                   : T2(c->vocab_size, C, "lm_head.weight");
}

static void build_gpt2(table_builder tb, lm_model *m) {
    const lm_config *c = &m->cfg;
    int C = c->d_model, F = c->ffn_dim, l = 0;
    m->wte = T2(c->vocab_size, C, "transformer.wte.weight");
    m->wpe = T2(c->max_pos, C, "transformer.wpe.weight");
    for (l = 0; l < c->n_layers; l++) {
        lm_layer *L = &m->layers[l];
        L->ln1_w = T1(C, "transformer.h.%d.ln_1.weight");
        L->ln1_b = T1(C, "transformer.h.%d.ln_1.bias");
        L->qkv.w = T2T(3 * C, C, "transformer.h.%d.attn.c_attn.weight");
        L->qkv.b = T1(3 * C, "transformer.h.%d.attn.c_attn.bias");
        L->o.w = T2T(C, C, "transformer.h.%d.attn.c_proj.weight");
        L->o.b = T1(C, "transformer.h.%d.attn.c_proj.bias");
        L->ln2_w = T1(C, "transformer.h.%d.ln_2.weight");
        L->ln2_b = T1(C, "transformer.h.%d.ln_2.bias");
        L->up.w = T2T(F, C, "transformer.h.%d.mlp.c_fc.weight");
        L->up.b = T1(F, "transformer.h.%d.mlp.c_fc.bias");
        L->down.w = T2T(C, F, "transformer.h.%d.mlp.c_proj.weight");
        L->down.b = T1(C, "transformer.h.%d.mlp.c_proj.bias");
    }
    l = 0;
    m->lnf_w = T1(C, "transformer.ln_f.weight");
    m->lnf_b = T1(C, "transformer.ln_f.bias");
    m->lm_head = c->tie_embeddings ? m->wte
                                   : T2(c->vocab_size, C, "lm_head.weight");
}

static void build_opt(table_builder tb, lm_model *m) {
    const lm_config *c = &m->cfg;
    int C = c->d_model, F = c->ffn_dim, l = 0;
    m->pos_offset = 2;
    m->wte = T2(c->vocab_size, C, "model.decoder.embed_tokens.weight");
    m->wpe = T2(c->max_pos + 2, C, "model.decoder.embed_positions.weight");
    for (l = 0; l < c->n_layers; l++) {
        lm_layer *L = &m->layers[l];
        L->ln1_w = T1(C, "model.decoder.layers.%d.self_attn_layer_norm.weight");
        L->ln1_b = T1(C, "model.decoder.layers.%d.self_attn_layer_norm.bias");
        L->q.w = T2(C, C, "model.decoder.layers.%d.self_attn.q_proj.weight");
        L->q.b = T1(C, "model.decoder.layers.%d.self_attn.q_proj.bias");
        L->k.w = T2(C, C, "model.decoder.layers.%d.self_attn.k_proj.weight");
        L->k.b = T1(C, "model.decoder.layers.%d.self_attn.k_proj.bias");
        L->v.w = T2(C, C, "model.decoder.layers.%d.self_attn.v_proj.weight");
        L->v.b = T1(C, "model.decoder.layers.%d.self_attn.v_proj.bias");
        L->o.w = T2(C, C, "model.decoder.layers.%d.self_attn.out_proj.weight");
        L->o.b = T1(C, "model.decoder.layers.%d.self_attn.out_proj.bias");
        L->ln2_w = T1(C, "model.decoder.layers.%d.final_layer_norm.weight");
        L->ln2_b = T1(C, "model.decoder.layers.%d.final_layer_norm.bias");
        L->up.w = T2(F, C, "model.decoder.layers.%d.fc1.weight");
        L->up.b = T1(F, "model.decoder.layers.%d.fc1.bias");
        L->down.w = T2(C, F, "model.decoder.layers.%d.fc2.weight");
        L->down.b = T1(C, "model.decoder.layers.%d.fc2.bias");
    }
    l = 0;
    m->lnf_w = T1(C, "model.decoder.final_layer_norm.weight");
    m->lnf_b = T1(C, "model.decoder.final_layer_norm.bias");
    m->lm_head = c->tie_embeddings ? m->wte
                                   : T2(c->vocab_size, C, "lm_head.weight");
}

int lm_model_init(lm_model *m, const lm_config *cfg, lm_err *err) {
    memset(m, 0, sizeof *m);
    if (lm_config_validate(cfg, err)) return -1;
    m->cfg = *cfg;
    /* Upper bound on tensors: 16 per layer plus 8 globals. */
    int cap = 16 * cfg->n_layers + 8;
    m->params = calloc((size_t)cap, sizeof *m->params);
    m->layers = calloc((size_t)cfg->n_layers, sizeof *m->layers);
    if (!m->params || !m->layers) {
        lm_model_free(m);
        return lm_errf(err, "out of memory building the parameter table");
    }
    table_builder tb = {m, cap};
    switch (cfg->arch) {
    case LM_ARCH_LLAMA:
    case LM_ARCH_MISTRAL: build_llama(tb, m); break;
    case LM_ARCH_GPT2: build_gpt2(tb, m); break;
    case LM_ARCH_OPT: build_opt(tb, m); break;
    default: break;
    }
    return 0;
}

int lm_model_alloc(lm_model *m, lm_err *err) {
    size_t total = 0;
    for (int i = 0; i < m->n_params; i++)
        if (!m->params[i].data) total += m->params[i].numel;
    if (total == 0) return 0;
    float *mem = calloc(total, sizeof(float));
    if (!mem)
        return lm_errf(err, "out of memory: %zu MiB of weights",
                       total * sizeof(float) >> 20);
    float *p = mem;
    for (int i = 0; i < m->n_params; i++)
        if (!m->params[i].data) {
            m->params[i].data = p;
            p += m->params[i].numel;
        }
    /* A second alloc (after a partial load) would orphan the first block. */
    if (m->owned) {
        free(mem);
        return lm_errf(err, "lm_model_alloc called twice");
    }
    m->owned = mem;
    m->owned_floats = total;
    return 0;
}

static int is_norm_weight(const lm_tensor *t) {
    return t->ndim == 1 && strstr(t->name, "norm") != NULL &&
           strstr(t->name, ".weight") != NULL;
}

static int is_ln_gpt2(const lm_tensor *t) {
    return t->ndim == 1 && (strstr(t->name, ".ln_") != NULL) &&
           strstr(t->name, ".weight") != NULL;
}

void lm_model_init_random(lm_model *m, uint64_t seed, float std) {
    lm_rng rng;
    lm_rng_seed(&rng, seed);
    for (int i = 0; i < m->n_params; i++) {
        lm_tensor *t = &m->params[i];
        if (is_norm_weight(t) || is_ln_gpt2(t)) {
            for (size_t j = 0; j < t->numel; j++) t->data[j] = 1.0f;
        } else if (t->ndim == 1) {
            for (size_t j = 0; j < t->numel; j++) t->data[j] = 0.0f;
        } else {
            for (size_t j = 0; j < t->numel; j++)
                t->data[j] = std * lm_rng_normal(&rng);
        }
    }
}

lm_tensor *lm_model_find(lm_model *m, const char *name) {
    for (int i = 0; i < m->n_params; i++)
        if (strcmp(m->params[i].name, name) == 0) return &m->params[i];
    return NULL;
}

size_t lm_model_param_count(const lm_model *m) {
    size_t n = 0;
    for (int i = 0; i < m->n_params; i++) n += m->params[i].numel;
    return n;
}

int lm_model_alloc_grads(lm_model *m, lm_err *err) {
    if (m->grad_memory) return 0;
    size_t total = lm_model_param_count(m);
    m->grad_memory = calloc(total, sizeof(float));
    if (!m->grad_memory)
        return lm_errf(err, "out of memory: %zu MiB of gradients",
                       total * sizeof(float) >> 20);
    float *p = m->grad_memory;
    for (int i = 0; i < m->n_params; i++) {
        m->params[i].grad = p;
        p += m->params[i].numel;
    }
    return 0;
}

void lm_model_zero_grads(lm_model *m) {
    if (m->grad_memory)
        memset(m->grad_memory, 0, lm_model_param_count(m) * sizeof(float));
}

int lm_model_add_mapping(lm_model *m, void *addr, size_t len, lm_err *err) {
    lm_mapping *maps = realloc(m->maps, (size_t)(m->n_maps + 1) * sizeof *maps);
    if (!maps) return lm_errf(err, "out of memory");
    m->maps = maps;
    m->maps[m->n_maps].addr = addr;
    m->maps[m->n_maps].len = len;
    m->n_maps++;
    return 0;
}

void lm_model_free(lm_model *m) {
    if (!m) return;
    free(m->owned);
    free(m->grad_memory);
    for (int i = 0; i < m->n_maps; i++) munmap(m->maps[i].addr, m->maps[i].len);
    free(m->maps);
    free(m->params);
    free(m->layers);
    memset(m, 0, sizeof *m);
}
