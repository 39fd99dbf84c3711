/* Fuzz target: arbitrary bytes as a safetensors file. When they parse,
 * every tensor's bytes are touched (and widened to fp32 when the dtype
 * allows), so a header that lies about offsets shows up under ASan. */
#include <stdint.h>
#include <stdlib.h>

#include "safetensors.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    lm_st_file f;
    lm_err err;
    if (lm_st_parse(&f, data, size, "fuzz", &err) != 0) return 0;
    volatile uint8_t sink = 0;
    for (int i = 0; i < f.n_tensors; i++) {
        const lm_st_tensor *t = &f.tensors[i];
        for (size_t j = 0; j < t->nbytes; j++) sink ^= t->data[j];
        if (lm_st_find(&f, t->name) == NULL) abort(); /* the index lost it */
        if (t->numel <= (1u << 20)) {
            float *out = malloc(t->numel * sizeof(float) + 1);
            if (out) lm_st_to_f32(t, out, &err);
            free(out);
        }
    }
    (void)sink;
    for (int i = 0; i < f.n_meta; i++) lm_st_meta_get(&f, f.meta[2 * i]);
    lm_st_close(&f);
    return 0;
}
