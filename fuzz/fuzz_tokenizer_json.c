/* Fuzz target: arbitrary bytes as a Hugging Face tokenizer.json. When they
 * load, the tokenizer encodes a few fixed texts and the input itself,
 * decodes what it produced, and writes itself back as JSON (which must load
 * again), so a bad id, merge or added token shows up under ASan/UBSan. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "tokenizer.h"

static void exercise(const lm_tokenizer *t, const char *text, size_t len) {
    lm_err err;
    int *ids, n;
    lm_tok_encode_opts o = {LM_TOK_DEFAULT, LM_TOK_DEFAULT, LM_TOK_DEFAULT};
    if (lm_tokenizer_encode_ex(t, text, len, &o, &ids, &n, &err) != 0) return;
    for (int i = 0; i < n; i++)
        if (ids[i] < 0 || ids[i] >= t->n_vocab) abort(); /* encode invented an id */
    char *s;
    size_t sl;
    if (lm_tokenizer_decode(t, ids, n, 0, &s, &sl, &err) == 0) free(s);
    if (lm_tokenizer_decode(t, ids, n, 1, &s, &sl, &err) == 0) free(s);
    for (int i = 0; i < n; i++) lm_tokenizer_token_text(t, i ? ids[i - 1] : -1, ids[i], &sl);
    free(ids);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    static const char *const texts[] = {
        "Hello world", " hi  t\xc3\xa9\n", "<s>a</s><|endoftext|> <mask>x",
        "\xff\xfe\xf0\x9f\xa6", "\xe2\x96\x81\xe2\x96\x81 12 345", "",
    };
    lm_tokenizer t;
    lm_err err;
    if (lm_tokenizer_load_hf_json(&t, (const char *)data, size, NULL, 0, NULL, 0,
                                  "fuzz", &err) != 0)
        return 0;
    for (size_t i = 0; i < sizeof texts / sizeof *texts; i++)
        exercise(&t, texts[i], strlen(texts[i]));
    exercise(&t, (const char *)data, size < 4096 ? size : 4096);
    char *json;
    if (lm_tokenizer_to_hf_json(&t, &json, &err) == 0) {
        lm_tokenizer u;
        if (lm_tokenizer_load_hf_json(&u, json, strlen(json), NULL, 0, NULL, 0,
                                      "fuzz-resaved", &err) != 0)
            abort(); /* we wrote a file we cannot read */
        if (u.n_vocab != t.n_vocab) abort();
        lm_tokenizer_free(&u);
        free(json);
    }
    lm_tokenizer_free(&t);
    return 0;
}
