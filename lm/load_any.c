/* lm_model_load: picks the loader from the shape of PATH. Kept apart from
 * the loaders so a program links only what it calls. */
#include <string.h>
#include <sys/stat.h>

#include "loaders.h"
#include "model.h"

static int ends_with(const char *s, const char *suffix) {
    size_t n = strlen(s), k = strlen(suffix);
    return n >= k && strcmp(s + n - k, suffix) == 0;
}

int lm_model_load(lm_model *m, const char *path, lm_err *err) {
    struct stat st;
    if (stat(path, &st) == 0 && S_ISDIR(st.st_mode))
        return lm_model_load_hf(m, path, err);
    if (ends_with(path, ".gguf")) return lm_model_load_gguf(m, path, err);
    if (ends_with(path, ".bin")) return lm_model_load_llama2c(m, path, err);
    return lm_errf(err,
                   "%s: not a model: expected a Hugging Face folder (with "
                   "config.json and model.safetensors), a .gguf file or a "
                   "llama2.c .bin file",
                   path);
}
