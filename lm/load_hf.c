/* Loading and saving Hugging Face model folders.
 *
 * A folder holds config.json and either model.safetensors or the shards
 * listed by model.safetensors.index.json. Every tensor of the model's table
 * is looked up by its HF name. F32 tensors that need no transposition point
 * straight into the private file map (no copy at all); the rest (F16, BF16,
 * GPT-2's Conv1D weights stored [in, out]) are converted once into the
 * model's single allocation. */
#include <cjson/cJSON.h>
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>

#include "half.h"
#include "hf_config.h"
#include "loaders.h"
#include "model.h"
#include "safetensors.h"

#define HF_PATH_MAX 4096

typedef struct hf_shards {
    lm_st_file *files;
    char **paths;
    int *used;       /* a tensor points into this file's map */
    int n;
} hf_shards;

static void free_shards(hf_shards *s) {
    for (int i = 0; i < s->n; i++) {
        lm_st_close(&s->files[i]);
        free(s->paths[i]);
    }
    free(s->files);
    free(s->paths);
    free(s->used);
    memset(s, 0, sizeof *s);
}

static int is_file(const char *path) {
    struct stat st;
    return stat(path, &st) == 0 && S_ISREG(st.st_mode);
}

/* Opens dir/name as the next shard. */
static int open_shard(hf_shards *s, const char *dir, const char *name,
                      lm_err *err) {
    char path[HF_PATH_MAX];
    if (snprintf(path, sizeof path, "%s/%s", dir, name) >= (int)sizeof path)
        return lm_errf(err, "%s/%s: path too long", dir, name);
    int i = s->n;
    s->paths[i] = strdup(path);
    if (!s->paths[i]) return lm_errf(err, "out of memory");
    if (lm_st_open(&s->files[i], path, err)) {
        free(s->paths[i]);
        return -1;
    }
    s->n++;
    return 0;
}

static int alloc_shards(hf_shards *s, int cap, lm_err *err) {
    s->files = calloc((size_t)cap, sizeof *s->files);
    s->paths = calloc((size_t)cap, sizeof *s->paths);
    s->used = calloc((size_t)cap, sizeof *s->used);
    if (!s->files || !s->paths || !s->used) return lm_errf(err, "out of memory");
    return 0;
}

/* A shard name from the index must stay inside the folder. */
static int bad_shard_name(const char *name) {
    return name[0] == '\0' || strchr(name, '/') || strchr(name, '\\') ||
           strstr(name, "..");
}

/* Opens each distinct shard of model.safetensors.index.json once. */
static int open_index(hf_shards *s, const char *dir, const char *index_path,
                      lm_err *err) {
    FILE *fp = fopen(index_path, "rb");
    if (!fp)
        return lm_errf(err, "%s: cannot open: %s", index_path, strerror(errno));
    /* the index of a 400-shard model is a few hundred KB */
    size_t cap = (size_t)64 << 20;
    char *text = malloc(cap + 1);
    size_t len = text ? fread(text, 1, cap, fp) : 0;
    int too_big = text && len == cap && fgetc(fp) != EOF;
    fclose(fp);
    if (!text) return lm_errf(err, "out of memory");
    if (too_big) {
        free(text);
        return lm_errf(err, "%s: larger than 64 MB", index_path);
    }
    text[len] = '\0';
    const char *end = NULL;
    cJSON *root = cJSON_ParseWithLengthOpts(text, len + 1, &end, 1);
    size_t at = end ? (size_t)(end - text) : 0;
    free(text);
    if (!root)
        return lm_errf(err, "%s: not valid JSON (near byte %zu)", index_path, at);

    int r = -1;
    const cJSON *wm = cJSON_GetObjectItemCaseSensitive(root, "weight_map");
    if (!cJSON_IsObject(wm)) {
        lm_errf(err, "%s: weight_map is missing or not an object", index_path);
        goto done;
    }
    if (alloc_shards(s, cJSON_GetArraySize(wm) + 1, err)) goto done;
    for (const cJSON *e = wm->child; e; e = e->next) {
        if (!cJSON_IsString(e)) {
            lm_errf(err, "%s: weight_map[\"%s\"] is not a file name", index_path,
                    e->string);
            goto done;
        }
        const char *name = e->valuestring;
        if (bad_shard_name(name)) {
            lm_errf(err,
                    "%s: shard name \"%.200s\" for \"%s\" is not a plain file "
                    "name in the folder",
                    index_path, name, e->string);
            goto done;
        }
        int seen = 0;
        for (int i = 0; i < s->n && !seen; i++) {
            const char *base = strrchr(s->paths[i], '/') + 1;
            seen = strcmp(base, name) == 0;
        }
        if (!seen && open_shard(s, dir, name, err)) goto done;
    }
    if (s->n == 0) {
        lm_errf(err, "%s: weight_map lists no shard", index_path);
        goto done;
    }
    r = 0;
done:
    cJSON_Delete(root);
    return r;
}

static int open_shards(hf_shards *s, const char *dir, lm_err *err) {
    char single[HF_PATH_MAX], index[HF_PATH_MAX];
    if (snprintf(single, sizeof single, "%s/model.safetensors", dir) >=
            (int)sizeof single ||
        snprintf(index, sizeof index, "%s/model.safetensors.index.json", dir) >=
            (int)sizeof index)
        return lm_errf(err, "%s: path too long", dir);
    if (is_file(single)) {
        if (alloc_shards(s, 1, err)) return -1;
        return open_shard(s, dir, "model.safetensors", err);
    }
    if (is_file(index)) return open_index(s, dir, index, err);
    return lm_errf(err,
                   "%s: neither model.safetensors nor "
                   "model.safetensors.index.json is there (only safetensors "
                   "weights are supported)",
                   dir);
}

/* Looks name up in every shard; *which receives the shard index. */
static const lm_st_tensor *find_in(const hf_shards *s, const char *name,
                                   int *which) {
    for (int i = 0; i < s->n; i++) {
        const lm_st_tensor *t = lm_st_find(&s->files[i], name);
        if (t) {
            *which = i;
            return t;
        }
    }
    return NULL;
}

/* The prefix of the base model inside the *ForCausalLM wrapper; checkpoints
 * saved from the bare model (the original gpt2, OPT's) lack it. */
static const char *base_prefix(lm_arch a) {
    return a == LM_ARCH_GPT2 ? "transformer." : "model.";
}

static const lm_st_tensor *find_param(const hf_shards *s, const lm_model *m,
                                      const char *name, int *which) {
    const lm_st_tensor *t = find_in(s, name, which);
    const char *pre = base_prefix(m->cfg.arch);
    if (!t && strncmp(name, pre, strlen(pre)) == 0)
        t = find_in(s, name + strlen(pre), which);
    return t;
}

static void shape_str(char *buf, size_t n, int ndim, const int64_t *shape) {
    int k = snprintf(buf, n, "[");
    for (int d = 0; d < ndim && k > 0 && (size_t)k < n; d++)
        k += snprintf(buf + k, n - (size_t)k, "%s%lld", d ? ", " : "",
                      (long long)shape[d]);
    if (k > 0 && (size_t)k < n) snprintf(buf + k, n - (size_t)k, "]");
}

/* Dtype and shape of the stored tensor against the table entry. */
static int check_stored(const lm_tensor *t, const lm_st_tensor *st,
                        const char *file, lm_err *err) {
    if (st->dtype != LM_ST_F32 && st->dtype != LM_ST_F16 &&
        st->dtype != LM_ST_BF16)
        return lm_errf(err,
                       "%s: tensor %s has dtype %s, which is unsupported (F32, "
                       "F16 and BF16 are)",
                       file, t->name, lm_st_dtype_name(st->dtype));
    int64_t want[2] = {t->shape[0], t->shape[1]};
    if (t->hf_transposed) want[0] = t->shape[1], want[1] = t->shape[0];
    int ok = st->ndim == t->ndim;
    for (int d = 0; ok && d < t->ndim; d++) ok = st->shape[d] == want[d];
    if (!ok) {
        char got_s[160], want_s[64];
        shape_str(got_s, sizeof got_s, st->ndim, st->shape);
        shape_str(want_s, sizeof want_s, t->ndim, want);
        return lm_errf(err, "%s: tensor %s has shape %s, expected %s", file,
                       t->name, got_s, want_s);
    }
    return 0;
}

static inline float st_elem(const lm_st_tensor *st, size_t k) {
    const uint8_t *p = st->data;
    switch (st->dtype) {
    case LM_ST_F16: return lm_f16_to_f32((uint16_t)(p[2 * k] | (p[2 * k + 1] << 8)));
    case LM_ST_BF16: return lm_bf16_to_f32((uint16_t)(p[2 * k] | (p[2 * k + 1] << 8)));
    default: {
        float v;
        memcpy(&v, p + 4 * k, sizeof v);
        return v;
    }
    }
}

/* Stored [cols, rows] (Conv1D [in, out]) into t->data [rows, cols]: read
 * the file sequentially, scatter by column. */
static void load_transposed(lm_tensor *t, const lm_st_tensor *st) {
    size_t rows = (size_t)t->shape[0], cols = (size_t)t->shape[1];
    for (size_t j = 0; j < cols; j++)
        for (size_t i = 0; i < rows; i++)
            t->data[i * cols + j] = st_elem(st, j * rows + i);
}

/* Gives the model the maps its tensors point into. */
static int hand_over_maps(lm_model *m, hf_shards *s, lm_err *err) {
    for (int i = 0; i < s->n; i++) {
        if (!s->used[i]) continue;
        void *addr;
        size_t len;
        lm_st_take_map(&s->files[i], &addr, &len);
        if (lm_model_add_mapping(m, addr, len, err)) {
            munmap(addr, len);
            return -1;
        }
    }
    return 0;
}

static int load_tensors(lm_model *m, hf_shards *s, lm_err *err) {
    int n = m->n_params, r = -1;
    const lm_st_tensor **src = calloc((size_t)(n ? n : 1), sizeof *src);
    if (!src) return lm_errf(err, "out of memory");
    for (int i = 0; i < n; i++) {
        lm_tensor *t = &m->params[i];
        int which = 0;
        const lm_st_tensor *st = find_param(s, m, t->name, &which);
        if (!st) {
            lm_errf(err, "tensor %s is missing from the safetensors file%s",
                    t->name, s->n > 1 ? "s" : "");
            goto done;
        }
        if (check_stored(t, st, s->paths[which], err)) goto done;
        snprintf(t->stored, sizeof t->stored, "%s", lm_st_dtype_name(st->dtype));
        src[i] = st;
        if (st->dtype == LM_ST_F32 && !t->hf_transposed &&
            (uintptr_t)st->data % sizeof(float) == 0) {
            t->data = (float *)(uintptr_t)st->data; /* the map is writable */
            s->used[which] = 1;
        }
    }
    if (hand_over_maps(m, s, err)) goto done;
    /* one allocation for whatever could not point into a map */
    if (lm_model_alloc(m, err)) goto done;
    for (int i = 0; i < n; i++) {
        lm_tensor *t = &m->params[i];
        const lm_st_tensor *st = src[i];
        if ((const void *)t->data == (const void *)st->data) continue;
        if (t->hf_transposed) load_transposed(t, st);
        else if (lm_st_to_f32(st, t->data, err)) goto done;
    }
    r = 0;
done:
    free(src);
    return r;
}

int lm_model_load_hf(lm_model *m, const char *dir, lm_err *err) {
    memset(m, 0, sizeof *m);
    char path[HF_PATH_MAX];
    if (snprintf(path, sizeof path, "%s/config.json", dir) >= (int)sizeof path)
        return lm_errf(err, "%s: path too long", dir);
    lm_config cfg;
    if (lm_hf_config_read(&cfg, path, err)) return -1;
    if (lm_model_init(m, &cfg, err)) return lm_err_prefix(err, "%s: ", path);
    hf_shards s = {0};
    int r = open_shards(&s, dir, err);
    if (r == 0) {
        r = load_tensors(m, &s, err);
        if (r) lm_err_prefix(err, "loading %s: ", dir);
    }
    free_shards(&s);
    if (r) lm_model_free(m);
    return r;
}

/* ---- saving ---- */

/* mkdir -p: every missing component, 0755. */
static int make_dirs(const char *dir, lm_err *err) {
    char p[HF_PATH_MAX];
    if (snprintf(p, sizeof p, "%s", dir) >= (int)sizeof p)
        return lm_errf(err, "%s: path too long", dir);
    for (char *c = p + 1; *c; c++) {
        if (*c != '/') continue;
        *c = '\0';
        if (mkdir(p, 0755) != 0 && errno != EEXIST)
            return lm_errf(err, "%s: cannot create: %s", p, strerror(errno));
        *c = '/';
    }
    if (mkdir(p, 0755) != 0 && errno != EEXIST)
        return lm_errf(err, "%s: cannot create: %s", p, strerror(errno));
    struct stat st;
    if (stat(p, &st) != 0 || !S_ISDIR(st.st_mode))
        return lm_errf(err, "%s: not a directory", p);
    return 0;
}

int lm_model_save_hf(const lm_model *m, const char *dir, lm_err *err) {
    if (make_dirs(dir, err)) return -1;
    int n = m->n_params;
    lm_st_out *outs = calloc((size_t)(n ? n : 1), sizeof *outs);
    if (!outs) return lm_errf(err, "out of memory");
    /* A tied head is not in the table (m->lm_head == m->wte), so it is
     * omitted as transformers expects. */
    for (int i = 0; i < n; i++) {
        const lm_tensor *t = &m->params[i];
        lm_st_out *o = &outs[i];
        o->name = t->name;
        o->dtype = LM_ST_F32;
        o->ndim = t->ndim;
        o->shape[0] = t->hf_transposed ? t->shape[1] : t->shape[0];
        o->shape[1] = t->hf_transposed ? t->shape[0] : t->shape[1];
        o->data = t->data;
        o->transpose = t->hf_transposed;
    }
    char path[HF_PATH_MAX];
    int r;
    if (snprintf(path, sizeof path, "%s/model.safetensors", dir) >=
        (int)sizeof path)
        r = lm_errf(err, "%s: path too long", dir);
    else {
        static const char *const meta[] = {"format", "pt", NULL};
        r = lm_st_write(path, outs, n, meta, err);
    }
    free(outs);
    if (r) return r;
    return lm_hf_config_write(&m->cfg, dir, err);
}
