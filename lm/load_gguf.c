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

/* Dequantises GGUF tensor NAME into t after checking it has t's shape
 * ([cols, rows] in GGUF's order). With rope_heads > 0 the rows are put back
 * from interleaved to rotate-half order through `scratch`. */
static int load_tensor(const lm_gguf *g, const char *name, lm_tensor *t,
                       int rope_heads, int head_dim, float *scratch,
                       uint8_t *used, lm_err *err) {
    const lm_gguf_tensor *gt = lm_gguf_find_tensor(g, name);
    if (!gt) return lm_errf(err, "gguf: tensor '%s' is missing", name);
    used[gt - g->tensors] = 1;
    uint64_t want[4] = {1, 1, 1, 1};
    if (t->ndim == 2) {
        want[0] = (uint64_t)t->shape[1];
        want[1] = (uint64_t)t->shape[0];
    } else {
        want[0] = (uint64_t)t->shape[0];
    }
    /* Trailing dims of 1 are allowed; a size mismatch is not. */
    for (int d = 0; d < 4; d++)
        if (gt->ne[d] != want[d])
            return lm_errf(err,
                           "gguf: tensor '%s' has dims [%llu, %llu, %llu, "
                           "%llu], expected [%llu, %llu] for %s",
                           name, (unsigned long long)gt->ne[0],
                           (unsigned long long)gt->ne[1],
                           (unsigned long long)gt->ne[2],
                           (unsigned long long)gt->ne[3],
                           (unsigned long long)want[0],
                           (unsigned long long)want[1], t->name);
    if (rope_heads <= 0) return lm_gguf_dequantize(gt, t->data, err);
    if (lm_gguf_dequantize(gt, scratch, err)) return -1;
    lm_rope_rows_to_hf(t->data, scratch, rope_heads, head_dim, t->shape[1]);
    return 0;
}

static int load_weights(const lm_gguf *g, lm_model *m, lm_err *err) {
    const lm_config *c = &m->cfg;
    uint8_t *used = calloc(g->n_tensors ? (size_t)g->n_tensors : 1, 1);
    float *scratch = malloc((size_t)c->n_heads * c->head_dim * c->d_model *
                            sizeof(float));
    int rc = -1;
    if (!used || !scratch) {
        lm_errf(err, "out of memory");
        goto done;
    }
    if (load_tensor(g, "token_embd.weight", m->wte, 0, 0, NULL, used, err) ||
        load_tensor(g, "output_norm.weight", m->lnf_w, 0, 0, NULL, used,
                    err) ||
        (!c->tie_embeddings && load_tensor(g, "output.weight", m->lm_head, 0,
                                           0, NULL, used, err)))
        goto done;
    for (int l = 0; l < c->n_layers; l++) {
        lm_layer *L = &m->layers[l];
        struct {
            const char *name;
            lm_tensor *t;
            int rope_heads;
        } map[] = {
            {"attn_norm", L->ln1_w, 0},      {"attn_q", L->q.w, c->n_heads},
            {"attn_k", L->k.w, c->n_kv_heads}, {"attn_v", L->v.w, 0},
            {"attn_output", L->o.w, 0},      {"ffn_norm", L->ln2_w, 0},
            {"ffn_gate", L->gate.w, 0},      {"ffn_up", L->up.w, 0},
            {"ffn_down", L->down.w, 0},
        };
        for (size_t i = 0; i < sizeof map / sizeof map[0]; i++) {
            char name[96];
            snprintf(name, sizeof name, "blk.%d.%s.weight", l, map[i].name);
            if (load_tensor(g, name, map[i].t, map[i].rope_heads, c->head_dim,
                            scratch, used, err))
                goto done;
        }
    }
    /* A tensor we did not read means a feature we would silently drop
     * (biases, RoPE frequency factors, ...): refuse rather than be wrong. */
    for (uint64_t i = 0; i < g->n_tensors; i++)
        if (!used[i]) {
            lm_errf(err, "gguf: unexpected tensor '%s' (unsupported feature)",
                    g->tensors[i].name);
            goto done;
        }
    rc = 0;
done:
    free(used);
    free(scratch);
    return rc;
}

int lm_model_load_gguf(lm_model *m, const char *path, lm_err *err) {
    lm_gguf g;
    lm_config cfg;
    memset(m, 0, sizeof *m);
    if (lm_gguf_open(&g, path, err)) return -1;
    if (read_config(&g, &cfg, err) || lm_model_init(m, &cfg, err) ||
        lm_model_alloc(m, err) || load_weights(&g, m, err)) {
        lm_model_free(m);
        lm_gguf_close(&g);
        return lm_err_prefix(err, "%s: ", path);
    }
    lm_gguf_close(&g);
    return 0;
}
