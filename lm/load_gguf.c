/* A Llama-family model from a GGUF file (llama.cpp's container).
 *
 * GGUF lists dims fastest-varying first, so a weight with dims [in, out] is
 * row-major [out, in]: the same memory as Hugging Face's nn.Linear weight.
 * Two conversions remain: every tensor is dequantised to fp32, and the q/k
 * rows, which llama.cpp's converter permutes into interleaved RoPE pairs,
 * are put back in Hugging Face's rotate-half order that our RoPE expects. */
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "gguf.h"
#include "loaders.h"

/* An integer hyperparameter "<arch>.<name>"; `def` < 0 means required. */
static int get_hparam(const lm_gguf *g, const char *arch, const char *name,
                      int def, int *out, lm_err *err) {
    char key[128];
    uint32_t v;
    snprintf(key, sizeof key, "%s.%s", arch, name);
    if (!lm_gguf_find_kv(g, key)) {
        if (def < 0) return lm_errf(err, "gguf: metadata '%s' is missing", key);
        *out = def;
        return 0;
    }
    if (lm_gguf_get_u32(g, key, &v, err)) return -1;
    if (v > INT_MAX)
        return lm_errf(err, "gguf: metadata '%s' = %u is too large", key, v);
    *out = (int)v;
    return 0;
}

static int get_hparam_f32(const lm_gguf *g, const char *arch, const char *name,
                          float def, float *out, lm_err *err) {
    char key[128];
    snprintf(key, sizeof key, "%s.%s", arch, name);
    if (!lm_gguf_find_kv(g, key)) {
        *out = def;
        return 0;
    }
    return lm_gguf_get_f32(g, key, out, err);
}

static int get_token_id(const lm_gguf *g, const char *key, int vocab, int *out,
                        lm_err *err) {
    int32_t v;
    if (!lm_gguf_find_kv(g, key)) return 0; /* keeps -1 */
    if (lm_gguf_get_i32(g, key, &v, err)) return -1;
    *out = (v >= 0 && v < vocab) ? v : -1;
    return 0;
}

/* Everything in the file's metadata that shapes the model. */
static int read_config(const lm_gguf *g, lm_config *c, lm_err *err) {
    const char *s;
    size_t n;
    char arch[32];
    if (lm_gguf_get_str(g, "general.architecture", &s, &n, err)) return -1;
    int is_llama = n == 5 && memcmp(s, "llama", 5) == 0;
    int is_mistral = n == 7 && memcmp(s, "mistral", 7) == 0;
    if (!is_llama && !is_mistral)
        return lm_errf(err,
                       "gguf: architecture '%.*s' is not supported (llama and "
                       "mistral are)",
                       (int)(n < 64 ? n : 64), s);
    memcpy(arch, s, n);
    arch[n] = 0;

    const lm_gguf_tensor *emb = lm_gguf_find_tensor(g, "token_embd.weight");
    if (!emb) return lm_errf(err, "gguf: tensor 'token_embd.weight' is missing");
    if (emb->n_dims != 2 || emb->ne[1] > INT_MAX)
        return lm_errf(err, "gguf: token_embd.weight is not a [dim, vocab] "
                       "matrix");

    int dim, layers, ffn, heads, kv_heads, ctx, head_dim, rope_dims;
    if (get_hparam(g, arch, "embedding_length", -1, &dim, err) ||
        get_hparam(g, arch, "block_count", -1, &layers, err) ||
        get_hparam(g, arch, "feed_forward_length", -1, &ffn, err) ||
        get_hparam(g, arch, "attention.head_count", -1, &heads, err) ||
        get_hparam(g, arch, "attention.head_count_kv", heads, &kv_heads, err) ||
        get_hparam(g, arch, "context_length", 2048, &ctx, err))
        return -1;
    lm_config_default(c, LM_ARCH_LLAMA, (int)emb->ne[1], dim, layers, heads,
                      kv_heads, ffn, ctx);
    if (get_hparam(g, arch, "attention.key_length", c->head_dim, &head_dim,
                   err) ||
        get_hparam(g, arch, "rope.dimension_count", head_dim, &rope_dims,
                   err) ||
        get_hparam_f32(g, arch, "attention.layer_norm_rms_epsilon", 1e-5f,
                       &c->norm_eps, err) ||
        get_hparam_f32(g, arch, "rope.freq_base", 10000.0f, &c->rope_theta,
                       err))
        return -1;
    int value_dim;
    if (get_hparam(g, arch, "attention.value_length", head_dim, &value_dim,
                   err))
        return -1;
    if (value_dim != head_dim)
        return lm_errf(err, "gguf: attention.value_length %d != key_length %d "
                       "is not supported", value_dim, head_dim);
    if (rope_dims != head_dim)
        return lm_errf(err,
                       "gguf: rope.dimension_count %d != head size %d (partial "
                       "rotary embeddings are not supported)",
                       rope_dims, head_dim);
    c->head_dim = head_dim;
    char key[128];
    snprintf(key, sizeof key, "%s.rope.scaling.type", arch);
    if (lm_gguf_find_kv(g, key)) {
        if (lm_gguf_get_str(g, key, &s, &n, err)) return -1;
        if (!(n == 4 && memcmp(s, "none", 4) == 0))
            return lm_errf(err, "gguf: RoPE scaling '%.*s' is not supported",
                           (int)(n < 64 ? n : 64), s);
    }
    if (is_mistral) {
        c->arch = LM_ARCH_MISTRAL;
        if (get_hparam(g, arch, "attention.sliding_window", 0,
                       &c->sliding_window, err))
            return -1;
    }
    c->tie_embeddings = lm_gguf_find_tensor(g, "output.weight") == NULL;
    if (get_token_id(g, "tokenizer.ggml.bos_token_id", c->vocab_size,
                     &c->bos_id, err) ||
        get_token_id(g, "tokenizer.ggml.eos_token_id", c->vocab_size,
                     &c->eos_id, err) ||
        get_token_id(g, "tokenizer.ggml.padding_token_id", c->vocab_size,
                     &c->pad_id, err))
        return -1;
    return lm_config_validate(c, err);
}

/* One model tensor and where it comes from in the file. */
typedef struct weight_src {
    char name[64];              /* GGUF name */
    lm_tensor *t;
    int rope_heads;             /* > 0: q/k rows to reorder */
    const lm_gguf_tensor *gt;
} weight_src;

/* Lists every tensor the model needs with its GGUF name. */
static weight_src *list_weights(lm_model *m, int *n, lm_err *err) {
    const lm_config *c = &m->cfg;
    weight_src *w = calloc((size_t)c->n_layers * 9 + 3, sizeof *w);
    if (!w) {
        lm_errf(err, "out of memory");
        return NULL;
    }
    int k = 0;
#define ADD(tensor, rope, ...)                                               \
    do {                                                                     \
        snprintf(w[k].name, sizeof w[k].name, __VA_ARGS__);                 \
        w[k].t = (tensor);                                                   \
        w[k++].rope_heads = (rope);                                          \
    } while (0)
    ADD(m->wte, 0, "token_embd.weight");
    ADD(m->lnf_w, 0, "output_norm.weight");
    if (!c->tie_embeddings) ADD(m->lm_head, 0, "output.weight");
    for (int l = 0; l < c->n_layers; l++) {
        lm_layer *L = &m->layers[l];
        ADD(L->ln1_w, 0, "blk.%d.attn_norm.weight", l);
        ADD(L->q.w, c->n_heads, "blk.%d.attn_q.weight", l);
        ADD(L->k.w, c->n_kv_heads, "blk.%d.attn_k.weight", l);
        ADD(L->v.w, 0, "blk.%d.attn_v.weight", l);
        ADD(L->o.w, 0, "blk.%d.attn_output.weight", l);
        ADD(L->ln2_w, 0, "blk.%d.ffn_norm.weight", l);
        ADD(L->gate.w, 0, "blk.%d.ffn_gate.weight", l);
        ADD(L->up.w, 0, "blk.%d.ffn_up.weight", l);
        ADD(L->down.w, 0, "blk.%d.ffn_down.weight", l);
    }
#undef ADD
    *n = k;
    return w;
}

/* Finds each tensor and checks its dims ([cols, rows] in GGUF's order) and
 * type, so nothing is allocated for a file that cannot load. */
static int check_weight(const lm_gguf *g, weight_src *w, uint8_t *used,
                        lm_err *err) {
    const lm_tensor *t = w->t;
    w->gt = lm_gguf_find_tensor(g, w->name);
    if (!w->gt) return lm_errf(err, "gguf: tensor '%s' is missing", w->name);
    used[w->gt - g->tensors] = 1;
    uint64_t want[4] = {1, 1, 1, 1};
    if (t->ndim == 2) {
        want[0] = (uint64_t)t->shape[1];
        want[1] = (uint64_t)t->shape[0];
    } else {
        want[0] = (uint64_t)t->shape[0];
    }
    /* Trailing dims of 1 are allowed; a size mismatch is not. */
    const uint64_t *ne = w->gt->ne;
    for (int d = 0; d < 4; d++)
        if (ne[d] != want[d])
            return lm_errf(err,
                           "gguf: tensor '%s' has dims [%llu, %llu, %llu, "
                           "%llu], expected [%llu, %llu] for %s",
                           w->name, (unsigned long long)ne[0],
                           (unsigned long long)ne[1], (unsigned long long)ne[2],
                           (unsigned long long)ne[3],
                           (unsigned long long)want[0],
                           (unsigned long long)want[1], t->name);
    uint32_t ty = w->gt->type;
    if (ty != LM_GGML_F32 && ty != LM_GGML_F16 && ty != LM_GGML_BF16 &&
        ty != LM_GGML_Q8_0)
        return lm_errf(err,
                       "gguf: tensor '%s' is %s; only F32, F16, BF16 and Q8_0 "
                       "can be loaded",
                       w->name, lm_ggml_type_name(ty));
    return 0;
}

static int load_weights(const lm_gguf *g, lm_model *m, lm_err *err) {
    const lm_config *c = &m->cfg;
    int n = 0, rc = -1;
    weight_src *w = list_weights(m, &n, err);
    uint8_t *used = calloc(g->n_tensors ? (size_t)g->n_tensors : 1, 1);
    float *scratch = NULL;
    if (!w || !used) {
        lm_errf(err, "out of memory");
        goto done;
    }
    for (int i = 0; i < n; i++)
        if (check_weight(g, &w[i], used, err)) goto done;
    /* A tensor we did not ask for means a feature we would silently drop
     * (biases, RoPE frequency factors, ...): refuse rather than be wrong. */
    for (uint64_t i = 0; i < g->n_tensors; i++)
        if (!used[i]) {
            lm_errf(err, "gguf: unexpected tensor '%s' (unsupported feature)",
                    g->tensors[i].name);
            goto done;
        }
    /* Every shape matched a tensor in the file, so the fp32 copy is at most
     * ~4x the file: now allocating is safe. */
    scratch = malloc((size_t)c->n_heads * c->head_dim * c->d_model *
                     sizeof(float));
    if (!scratch) {
        lm_errf(err, "out of memory");
        goto done;
    }
    if (lm_model_alloc(m, err)) goto done;
    for (int i = 0; i < n; i++) {
        lm_tensor *t = w[i].t;
        snprintf(t->stored, sizeof t->stored, "%s", lm_ggml_type_name(w[i].gt->type));
        if (w[i].rope_heads == 0) {
            if (lm_gguf_dequantize(w[i].gt, t->data, err)) goto done;
            continue;
        }
        if (lm_gguf_dequantize(w[i].gt, scratch, err)) goto done;
        lm_rope_rows_to_hf(t->data, scratch, w[i].rope_heads, c->head_dim,
                           t->shape[1]);
    }
    rc = 0;
done:
    free(w);
    free(used);
    free(scratch);
    return rc;
}

int lm_model_from_gguf(lm_model *m, const lm_gguf *g, lm_err *err) {
    lm_config cfg;
    memset(m, 0, sizeof *m);
    if (read_config(g, &cfg, err) || lm_model_init(m, &cfg, err) ||
        load_weights(g, m, err)) {
        lm_model_free(m);
        return -1;
    }
    return 0;
}

int lm_model_load_gguf(lm_model *m, const char *path, lm_err *err) {
    lm_gguf g;
    memset(m, 0, sizeof *m);
    if (lm_gguf_open(&g, path, err)) return -1;
    int rc = lm_model_from_gguf(m, &g, err);
    lm_gguf_close(&g);
    return rc ? lm_err_prefix(err, "%s: ", path) : 0;
}
