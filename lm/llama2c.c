/* A Llama model from a llama2.c checkpoint (run.c's legacy .bin).
 *
 * The weights follow the header as fp32 arrays, each stacked over layers:
 *   token_embedding [V, C], rms_att [L, C], wq [L, C, C], wk [L, KV, C],
 *   wv [L, KV, C], wo [L, C, C], rms_ffn [L, C], w1 [L, F, C],
 *   w2 [L, C, F], w3 [L, F, C], rms_final [C],
 *   freq_cis_real [T, D/2], freq_cis_imag [T, D/2], then wcls [V, C] if
 *   the classifier is untied.
 * Linear weights are already [out, in]. llama2.c rotates interleaved RoPE
 * pairs (Meta's layout), so wq/wk rows are reordered to Hugging Face's
 * rotate-half layout. The freq_cis tables are implied by theta 10000 and
 * are skipped. */
#include "llama2c.h"

#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "gguf.h" /* lm_rope_rows_to_hf */
#include "loaders.h"

#define HEADER_BYTES 28

static int32_t le_i32(const uint8_t *p) {
    return (int32_t)((uint32_t)p[0] | (uint32_t)p[1] << 8 |
                     (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24);
}

/* acc += a * b, false on overflow. */
static int mul_add(uint64_t *acc, uint64_t a, uint64_t b) {
    uint64_t p;
    return !__builtin_mul_overflow(a, b, &p) &&
           !__builtin_add_overflow(*acc, p, acc);
}

int lm_llama2c_parse_header(const uint8_t *buf, size_t len,
                            lm_llama2c_header *h, lm_err *err) {
    memset(h, 0, sizeof *h);
    if (len < HEADER_BYTES)
        return lm_errf(err, "llama2.c: %zu bytes is shorter than the 28-byte "
                       "header", len);
    /* llama2.c's newer export.py versions start with the magic "ak42". */
    if (memcmp(buf, "24ka", 4) == 0)
        return lm_errf(err, "llama2.c: a version %d export (magic ak42); only "
                       "the legacy run.c format is supported",
                       le_i32(buf + 4));
    int v[7];
    for (int i = 0; i < 7; i++) v[i] = le_i32(buf + 4 * i);
    h->dim = v[0];
    h->hidden_dim = v[1];
    h->n_layers = v[2];
    h->n_heads = v[3];
    h->n_kv_heads = v[4];
    h->shared_classifier = v[5] > 0;
    h->vocab_size = v[5] > 0 ? v[5] : (v[5] == INT32_MIN ? 0 : -v[5]);
    h->seq_len = v[6];
    if (h->dim <= 0 || h->hidden_dim <= 0 || h->n_layers <= 0 ||
        h->n_heads <= 0 || h->n_kv_heads <= 0 || h->vocab_size <= 0 ||
        h->seq_len <= 0)
        return lm_errf(err,
                       "llama2.c: header sizes must be positive (dim %d, "
                       "hidden_dim %d, n_layers %d, n_heads %d, n_kv_heads %d, "
                       "vocab_size %d, seq_len %d)",
                       v[0], v[1], v[2], v[3], v[4], v[5], v[6]);
    if (h->dim % h->n_heads != 0 || (h->dim / h->n_heads) % 2 != 0)
        return lm_errf(err,
                       "llama2.c: dim %d does not split into %d heads of an "
                       "even size",
                       h->dim, h->n_heads);
    if (h->n_heads % h->n_kv_heads != 0)
        return lm_errf(err, "llama2.c: n_heads %d is not a multiple of "
                       "n_kv_heads %d", h->n_heads, h->n_kv_heads);

    uint64_t C = (uint64_t)h->dim, F = (uint64_t)h->hidden_dim,
             L = (uint64_t)h->n_layers, V = (uint64_t)h->vocab_size,
             D = C / (uint64_t)h->n_heads, KV = D * (uint64_t)h->n_kv_heads;
    /* Every size is below 2^31, so L*C, L*KV and L*F stay below 2^62. */
    uint64_t floats = 0;
    int ok = mul_add(&floats, V, C) &&              /* token_embedding */
             mul_add(&floats, L, 2 * C) &&          /* rms_att, rms_ffn */
             mul_add(&floats, L * C, 2 * C) &&      /* wq, wo */
             mul_add(&floats, L * KV, 2 * C) &&     /* wk, wv */
             mul_add(&floats, L * F, 3 * C) &&      /* w1, w2, w3 */
             mul_add(&floats, C, 1) &&              /* rms_final */
             mul_add(&floats, (uint64_t)h->seq_len, D) && /* freq_cis x2 */
             (h->shared_classifier || mul_add(&floats, V, C)); /* wcls */
    if (!ok || floats > (UINT64_MAX - HEADER_BYTES) / 4)
        return lm_errf(err, "llama2.c: the header's sizes overflow");
    h->file_bytes = HEADER_BYTES + 4 * floats;
    if ((uint64_t)len != h->file_bytes)
        return lm_errf(err,
                       "llama2.c: the header (dim %d, hidden_dim %d, n_layers "
                       "%d, n_heads %d, n_kv_heads %d, vocab_size %d, seq_len "
                       "%d) implies %llu bytes but the file has %zu%s",
                       v[0], v[1], v[2], v[3], v[4], v[5], v[6],
                       (unsigned long long)h->file_bytes, len,
                       (uint64_t)len < h->file_bytes ? " (truncated)" : "");
    return 0;
}

/* Copies the next [n_layers x t->numel] stack of floats into each layer's
 * tensor; with rope_heads > 0 through the RoPE row reorder. */
typedef struct cursor {
    const uint8_t *p;
    float *scratch;
} cursor;

static void take(cursor *c, float *dst, size_t n) {
    memcpy(dst, c->p, n * sizeof(float)); /* little-endian host */
    c->p += n * sizeof(float);
}

static void take_rope(cursor *c, lm_tensor *t, int heads, int head_dim) {
    take(c, c->scratch, t->numel);
    lm_rope_rows_to_hf(t->data, c->scratch, heads, head_dim, t->shape[1]);
}

int lm_llama2c_load_buffer(lm_model *m, const uint8_t *buf, size_t len,
                           lm_err *err) {
    lm_llama2c_header h;
    lm_config cfg;
    memset(m, 0, sizeof *m);
    if (lm_llama2c_parse_header(buf, len, &h, err)) return -1;
    lm_config_default(&cfg, LM_ARCH_LLAMA, h.vocab_size, h.dim, h.n_layers,
                      h.n_heads, h.n_kv_heads, h.hidden_dim, h.seq_len);
    cfg.norm_eps = 1e-5f;
    cfg.rope_theta = 10000.0f;
    cfg.tie_embeddings = h.shared_classifier;
    cfg.bos_id = 1;
    cfg.eos_id = 2;
    if (lm_model_init(m, &cfg, err) || lm_model_alloc(m, err)) {
        lm_model_free(m);
        return lm_err_prefix(err, "llama2.c: ");
    }
    const int L = cfg.n_layers, D = cfg.head_dim;
    cursor c = {buf + HEADER_BYTES,
                malloc((size_t)cfg.n_heads * D * cfg.d_model * sizeof(float))};
    if (!c.scratch) {
        lm_model_free(m);
        return lm_errf(err, "llama2.c: out of memory");
    }
    take(&c, m->wte->data, m->wte->numel);
    for (int l = 0; l < L; l++) take(&c, m->layers[l].ln1_w->data, cfg.d_model);
    for (int l = 0; l < L; l++)
        take_rope(&c, m->layers[l].q.w, cfg.n_heads, D);
    for (int l = 0; l < L; l++)
        take_rope(&c, m->layers[l].k.w, cfg.n_kv_heads, D);
    for (int l = 0; l < L; l++)
        take(&c, m->layers[l].v.w->data, m->layers[l].v.w->numel);
    for (int l = 0; l < L; l++)
        take(&c, m->layers[l].o.w->data, m->layers[l].o.w->numel);
    for (int l = 0; l < L; l++) take(&c, m->layers[l].ln2_w->data, cfg.d_model);
    for (int l = 0; l < L; l++)
        take(&c, m->layers[l].gate.w->data, m->layers[l].gate.w->numel);
    for (int l = 0; l < L; l++)
        take(&c, m->layers[l].down.w->data, m->layers[l].down.w->numel);
    for (int l = 0; l < L; l++)
        take(&c, m->layers[l].up.w->data, m->layers[l].up.w->numel);
    take(&c, m->lnf_w->data, cfg.d_model);
    c.p += 2 * (size_t)cfg.max_pos * (size_t)(D / 2) * sizeof(float);
    if (!cfg.tie_embeddings) take(&c, m->lm_head->data, m->lm_head->numel);
    free(c.scratch);
    return 0;
}

int lm_model_load_llama2c(lm_model *m, const char *path, lm_err *err) {
    memset(m, 0, sizeof *m);
    int fd = open(path, O_RDONLY);
    if (fd < 0) return lm_errf(err, "%s: cannot open", path);
    struct stat st;
    if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
        close(fd);
        return lm_errf(err, "%s: not a regular file", path);
    }
    if (st.st_size < HEADER_BYTES) {
        close(fd);
        return lm_errf(err, "%s: llama2.c: %lld bytes is shorter than the "
                       "28-byte header", path, (long long)st.st_size);
    }
    size_t len = (size_t)st.st_size;
    void *map = mmap(NULL, len, PROT_READ, MAP_PRIVATE, fd, 0);
    close(fd);
    if (map == MAP_FAILED) return lm_errf(err, "%s: mmap failed", path);
    int rc = lm_llama2c_load_buffer(m, map, len, err);
    munmap(map, len);
    return rc ? lm_err_prefix(err, "%s: ", path) : 0;
}
