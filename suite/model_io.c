#include "model_io.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

int su_load_model(const char *path, int threads, lm_model *m, lm_backend **be,
                  lm_err *err) {
    if (lm_model_load(m, path, err)) return -1;
    *be = lm_backend_cpu_new(threads);
    if (!*be) {
        lm_model_free(m);
        return lm_errf(err, "out of memory creating the CPU backend");
    }
    m->be = *be;
    return 0;
}

static int ends_with(const char *s, const char *suffix) {
    size_t n = strlen(s), k = strlen(suffix);
    return n >= k && strcmp(s + n - k, suffix) == 0;
}

int su_load_tokenizer(const char *model_path, const char *tok_path,
                      lm_tokenizer *t, lm_err *err) {
    if (tok_path) return lm_tokenizer_load(t, tok_path, err);
    struct stat st;
    if (stat(model_path, &st) == 0 && S_ISDIR(st.st_mode)) {
        char p[4096];
        snprintf(p, sizeof p, "%s/tokenizer.json", model_path);
        if (stat(p, &st) != 0)
            return lm_errf(err, "%s has no tokenizer.json: pass --tokenizer FILE",
                           model_path);
        return lm_tokenizer_load(t, model_path, err);
    }
    if (ends_with(model_path, ".gguf")) return lm_tokenizer_load_gguf(t, model_path, err);
    return lm_errf(err, "%s carries no tokenizer: pass --tokenizer FILE (for a "
                        "llama2.c checkpoint, its tokenizer.bin)", model_path);
}

int su_check_vocab(const lm_model *m, const lm_tokenizer *t, lm_err *err) {
    if (t->n_vocab > m->cfg.vocab_size)
        return lm_errf(err, "the tokenizer has %d tokens but the model only %d",
                       t->n_vocab, m->cfg.vocab_size);
    return 0;
}

void su_json_string(FILE *f, const char *s, size_t len) {
    fputc('"', f);
    for (size_t i = 0; i < len; i++) {
        unsigned char c = (unsigned char)s[i];
        switch (c) {
        case '"': fputs("\\\"", f); break;
        case '\\': fputs("\\\\", f); break;
        case '\n': fputs("\\n", f); break;
        case '\r': fputs("\\r", f); break;
        case '\t': fputs("\\t", f); break;
        default:
            if (c < 0x20) fprintf(f, "\\u%04x", c);
            else fputc(c, f);
        }
    }
    fputc('"', f);
}

int su_load_text_docs(const char *path, ds_dataset *ds, const char ***docs, lm_err *err) {
    *docs = NULL;
    if (ds_load(path, DS_FMT_TEXT, ds, err)) return -1;
    if (!(*docs = calloc((size_t)(ds->n ? ds->n : 1), sizeof **docs)))
        return lm_errf(err, "out of memory");
    for (int i = 0; i < ds->n; i++) (*docs)[i] = ds->docs[i].text;
    return 0;
}
