/* Fuzz target: arbitrary bytes as a llama2.c tokenizer.bin (vocabulary size
 * read to the end of the input). When they load, a few texts and the input
 * itself are encoded and decoded; GPT-2's pre-tokenizer also runs over the
 * raw bytes, which must always make progress and stay in bounds. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "tokenizer.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    for (size_t i = 0; i < size;) {
        size_t l = lm_tokenizer_gpt2_split((const char *)data + i, size - i);
        if (l == 0 || l > size - i) abort();
        i += l;
    }
    static const char *const texts[] = {
        "Hello world", " hi  t\xc3\xa9\n", "<s>x</s>", "\xff\xfe", "",
    };
    lm_tokenizer t;
    lm_err err;
    if (lm_tokenizer_load_llama2c_mem(&t, data, size, 0, "fuzz", &err) != 0)
        return 0;
    for (size_t k = 0; k <= sizeof texts / sizeof *texts; k++) {
        const char *s = k < sizeof texts / sizeof *texts ? texts[k] : (const char *)data;
        size_t n = k < sizeof texts / sizeof *texts ? strlen(s) : (size < 2048 ? size : 2048);
        int *ids, nid;
        if (lm_tokenizer_encode(&t, s, n, LM_TOK_DEFAULT, &ids, &nid, &err) != 0) continue;
        for (int i = 0; i < nid; i++)
            if (ids[i] < 0 || ids[i] >= t.n_vocab) abort();
        char *out;
        size_t ol;
        if (lm_tokenizer_decode(&t, ids, nid, 1, &out, &ol, &err) == 0) free(out);
        free(ids);
    }
    lm_tokenizer_free(&t);
    return 0;
}
