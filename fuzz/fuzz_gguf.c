/* Fuzzes the GGUF reader: parse, read every metadata value through the
 * typed getters, dequantise every supported tensor, then try to build a
 * model from it (every shape is checked before anything is allocated, so
 * memory stays a small multiple of the input). */
#include <stdint.h>
#include <stdlib.h>

#include "gguf.h"
#include "model.h"

static void touch_kv(const lm_gguf *g, const lm_gguf_kv *kv) {
    uint32_t u;
    int32_t i;
    uint64_t u64;
    float f;
    int b;
    const char *s;
    size_t n;
    lm_gguf_arr a;
    lm_gguf_get_u32(g, kv->key, &u, NULL);
    lm_gguf_get_i32(g, kv->key, &i, NULL);
    lm_gguf_get_u64(g, kv->key, &u64, NULL);
    lm_gguf_get_f32(g, kv->key, &f, NULL);
    lm_gguf_get_bool(g, kv->key, &b, NULL);
    lm_gguf_get_str(g, kv->key, &s, &n, NULL);
    if (lm_gguf_get_arr(g, kv->key, &a, NULL) == 0 && a.n > 0) {
        /* first, last and one past the end */
        uint64_t idx[3] = {0, a.n - 1, a.n};
        for (int k = 0; k < 3; k++) {
            lm_gguf_arr_str(&a, idx[k], &s, &n, NULL);
            lm_gguf_arr_f32(&a, idx[k], &f, NULL);
            lm_gguf_arr_i32(&a, idx[k], &i, NULL);
        }
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    lm_gguf g;
    if (lm_gguf_parse(&g, data, size, NULL) != 0) return 0;
    for (uint64_t k = 0; k < g.n_kv; k++) touch_kv(&g, &g.kv[k]);
    for (uint64_t k = 0; k < g.n_tensors; k++) {
        const lm_gguf_tensor *t = &g.tensors[k];
        if (t->type != LM_GGML_F32 && t->type != LM_GGML_F16 &&
            t->type != LM_GGML_BF16 && t->type != LM_GGML_Q8_0)
            continue; /* only these have at most 4x as many floats as bytes */
        float *out = malloc(t->n_elements ? t->n_elements * sizeof(float) : 1);
        if (out) lm_gguf_dequantize(t, out, NULL);
        free(out);
    }
    lm_model m;
    if (lm_model_from_gguf(&m, &g, NULL) == 0) lm_model_free(&m);
    lm_gguf_close(&g);
    return 0;
}
