/* safetensors reader and writer. The file is untrusted: the header length,
 * every shape and every offset is checked against the bytes we really have
 * before a tensor is handed out, and every product is overflow-checked. */
#include "safetensors.h"

#include <cjson/cJSON.h>
#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "half.h"

#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ != __ORDER_LITTLE_ENDIAN__
#error "safetensors data is little-endian; this reader assumes a little-endian host"
#endif

/* The HF library refuses headers above 100 MB; so do we, before copying. */
#define ST_MAX_HEADER ((uint64_t)100 * 1000 * 1000)

static const struct {
    const char *name;
    size_t size;
} st_dtypes[LM_ST_DTYPE_COUNT] = {
    [LM_ST_F32] = {"F32", 4},         [LM_ST_F16] = {"F16", 2},
    [LM_ST_BF16] = {"BF16", 2},       [LM_ST_F64] = {"F64", 8},
    [LM_ST_I64] = {"I64", 8},         [LM_ST_U64] = {"U64", 8},
    [LM_ST_I32] = {"I32", 4},         [LM_ST_U32] = {"U32", 4},
    [LM_ST_I16] = {"I16", 2},         [LM_ST_U16] = {"U16", 2},
    [LM_ST_I8] = {"I8", 1},           [LM_ST_U8] = {"U8", 1},
    [LM_ST_BOOL] = {"BOOL", 1},       [LM_ST_F8_E4M3] = {"F8_E4M3", 1},
    [LM_ST_F8_E5M2] = {"F8_E5M2", 1}, [LM_ST_F8_E8M0] = {"F8_E8M0", 1},
    [LM_ST_C64] = {"C64", 8},
};

const char *lm_st_dtype_name(lm_st_dtype d) {
    return (d >= 0 && d < LM_ST_DTYPE_COUNT) ? st_dtypes[d].name : "?";
}

size_t lm_st_dtype_size(lm_st_dtype d) {
    return (d >= 0 && d < LM_ST_DTYPE_COUNT) ? st_dtypes[d].size : 0;
}

static int dtype_from_name(const char *s, lm_st_dtype *out) {
    for (int i = 0; i < LM_ST_DTYPE_COUNT; i++)
        if (strcmp(s, st_dtypes[i].name) == 0) {
            *out = (lm_st_dtype)i;
            return 0;
        }
    return -1;
}

/* A non-negative integer that a double holds exactly (JSON numbers reach us
 * as doubles; nothing real in a header is near 2^53). */
static int json_uint(const cJSON *v, uint64_t *out) {
    if (!cJSON_IsNumber(v)) return -1;
    double d = v->valuedouble;
    if (!(d >= 0.0) || d > 9007199254740992.0 || d != floor(d)) return -1;
    *out = (uint64_t)d;
    return 0;
}

static int mul_overflows(size_t a, size_t b, size_t *out) {
    if (a != 0 && b > SIZE_MAX / a) return 1;
    *out = a * b;
    return 0;
}

void lm_st_close(lm_st_file *f) {
    if (!f) return;
    for (int i = 0; i < f->n_tensors; i++) free(f->tensors[i].name);
    free(f->tensors);
    free(f->by_name);
    for (int i = 0; i < 2 * f->n_meta; i++) free(f->meta[i]);
    free(f->meta);
    if (f->map) munmap(f->map, f->map_len);
    memset(f, 0, sizeof *f);
}

void lm_st_take_map(lm_st_file *f, void **addr, size_t *len) {
    *addr = f->map;
    *len = f->map_len;
    f->map = NULL;
    f->map_len = 0;
}

static int parse_metadata(lm_st_file *f, const cJSON *obj, const char *w,
                          lm_err *err) {
    if (!cJSON_IsObject(obj))
        return lm_errf(err, "%s: __metadata__ is not an object", w);
    int n = cJSON_GetArraySize(obj);
    f->meta = calloc((size_t)n * 2 + 1, sizeof *f->meta);
    if (!f->meta) return lm_errf(err, "%s: out of memory", w);
    for (const cJSON *kv = obj->child; kv; kv = kv->next) {
        if (!cJSON_IsString(kv))
            return lm_errf(err, "%s: __metadata__ value of \"%s\" is not a string",
                           w, kv->string);
        char *k = strdup(kv->string), *v = strdup(kv->valuestring);
        f->meta[2 * f->n_meta] = k;
        f->meta[2 * f->n_meta + 1] = v;
        f->n_meta++;
        if (!k || !v) return lm_errf(err, "%s: out of memory", w);
    }
    return 0;
}

/* One header entry, checked against the data region [data, data + dlen). */
static int parse_entry(lm_st_tensor *t, const cJSON *e, const uint8_t *data,
                       size_t dlen, size_t data_start, const char *w,
                       lm_err *err) {
    const char *name = e->string;
    if (!cJSON_IsObject(e))
        return lm_errf(err, "%s: tensor \"%s\": entry is not an object", w, name);

    const cJSON *dt = cJSON_GetObjectItemCaseSensitive(e, "dtype");
    if (!cJSON_IsString(dt))
        return lm_errf(err, "%s: tensor \"%s\": missing dtype string", w, name);
    if (dtype_from_name(dt->valuestring, &t->dtype))
        return lm_errf(err, "%s: tensor \"%s\": unknown dtype \"%.32s\"", w,
                       name, dt->valuestring);

    const cJSON *sh = cJSON_GetObjectItemCaseSensitive(e, "shape");
    if (!cJSON_IsArray(sh))
        return lm_errf(err, "%s: tensor \"%s\": missing shape array", w, name);
    int nd = cJSON_GetArraySize(sh);
    if (nd > LM_ST_MAX_DIMS)
        return lm_errf(err, "%s: tensor \"%s\": %d dimensions (at most %d)", w,
                       name, nd, LM_ST_MAX_DIMS);
    t->ndim = nd;
    size_t numel = 1;
    int i = 0;
    for (const cJSON *d = sh->child; d; d = d->next, i++) {
        uint64_t v;
        if (json_uint(d, &v))
            return lm_errf(err,
                           "%s: tensor \"%s\": shape[%d] is not a non-negative "
                           "integer",
                           w, name, i);
        t->shape[i] = (int64_t)v;
        if (v > SIZE_MAX || mul_overflows(numel, (size_t)v, &numel))
            return lm_errf(err, "%s: tensor \"%s\": shape product overflows", w,
                           name);
    }
    t->numel = numel;
    if (mul_overflows(numel, lm_st_dtype_size(t->dtype), &t->nbytes))
        return lm_errf(err, "%s: tensor \"%s\": byte size overflows", w, name);

    const cJSON *off = cJSON_GetObjectItemCaseSensitive(e, "data_offsets");
    uint64_t begin, end;
    if (!cJSON_IsArray(off) || cJSON_GetArraySize(off) != 2 ||
        json_uint(off->child, &begin) || json_uint(off->child->next, &end))
        return lm_errf(err,
                       "%s: tensor \"%s\": data_offsets must be [begin, end] "
                       "non-negative integers",
                       w, name);
    if (end < begin)
        return lm_errf(err,
                       "%s: tensor \"%s\": data_offsets end %llu < begin %llu",
                       w, name, (unsigned long long)end,
                       (unsigned long long)begin);
    if (end > dlen)
        return lm_errf(err,
                       "%s: tensor \"%s\": data_offsets end %llu is past the "
                       "end of the data (%zu bytes)",
                       w, name, (unsigned long long)end, dlen);
    if (end - begin != t->nbytes)
        return lm_errf(err,
                       "%s: tensor \"%s\": size mismatch: data_offsets span "
                       "%llu bytes but %s shape needs %zu",
                       w, name, (unsigned long long)(end - begin),
                       lm_st_dtype_name(t->dtype), t->nbytes);
    t->data = data + begin;
    t->offset = data_start + (size_t)begin;
    t->name = strdup(name);
    if (!t->name) return lm_errf(err, "%s: out of memory", w);
    return 0;
}

/* qsort has no context argument: sort pointers to the tensors instead. */
static int cmp_tensor_ptr(const void *a, const void *b) {
    const lm_st_tensor *x = *(const lm_st_tensor *const *)a;
    const lm_st_tensor *y = *(const lm_st_tensor *const *)b;
    return strcmp(x->name, y->name);
}

static int build_index(lm_st_file *f, const char *w, lm_err *err) {
    int n = f->n_tensors;
    lm_st_tensor **ptrs = malloc((size_t)(n ? n : 1) * sizeof *ptrs);
    f->by_name = malloc((size_t)(n ? n : 1) * sizeof *f->by_name);
    if (!ptrs || !f->by_name) {
        free(ptrs);
        return lm_errf(err, "%s: out of memory", w);
    }
    for (int i = 0; i < n; i++) ptrs[i] = &f->tensors[i];
    qsort(ptrs, (size_t)n, sizeof *ptrs, cmp_tensor_ptr);
    for (int i = 0; i < n; i++) {
        f->by_name[i] = (int)(ptrs[i] - f->tensors);
        if (i > 0 && strcmp(ptrs[i]->name, ptrs[i - 1]->name) == 0) {
            int r = lm_errf(err, "%s: tensor \"%s\" appears twice", w,
                            ptrs[i]->name);
            free(ptrs);
            return r;
        }
    }
    free(ptrs);
    return 0;
}

static int parse_header(lm_st_file *f, const cJSON *root, const uint8_t *data,
                        size_t dlen, size_t data_start, const char *w,
                        lm_err *err) {
    if (!cJSON_IsObject(root))
        return lm_errf(err, "%s: header JSON is not an object", w);
    int n = cJSON_GetArraySize(root);
    f->tensors = calloc((size_t)(n ? n : 1), sizeof *f->tensors);
    if (!f->tensors) return lm_errf(err, "%s: out of memory", w);
    for (const cJSON *e = root->child; e; e = e->next) {
        if (strcmp(e->string, "__metadata__") == 0) {
            if (f->meta)
                return lm_errf(err, "%s: __metadata__ appears twice", w);
            if (parse_metadata(f, e, w, err)) return -1;
            continue;
        }
        lm_st_tensor *t = &f->tensors[f->n_tensors];
        if (parse_entry(t, e, data, dlen, data_start, w, err)) {
            free(t->name);
            t->name = NULL;
            return -1;
        }
        f->n_tensors++;
    }
    return build_index(f, w, err);
}

int lm_st_parse(lm_st_file *f, const void *buf, size_t len, const char *what,
                lm_err *err) {
    memset(f, 0, sizeof *f);
    const char *w = what ? what : "safetensors";
    const uint8_t *b = buf;
    if (len < 8)
        return lm_errf(err,
                       "%s: truncated: %zu bytes is too short for the 8-byte "
                       "header length",
                       w, len);
    uint64_t n = 0;
    for (int i = 7; i >= 0; i--) n = (n << 8) | b[i];
    if (n > len - 8)
        return lm_errf(err,
                       "%s: header length %llu is past the end of the file "
                       "(%zu bytes)",
                       w, (unsigned long long)n, len);
    if (n > ST_MAX_HEADER)
        return lm_errf(err, "%s: header length %llu is above the 100 MB limit",
                       w, (unsigned long long)n);
    f->buf = b;
    f->len = len;

    /* cJSON wants a terminated string; the header is small next to the data */
    char *text = malloc((size_t)n + 1);
    if (!text) return lm_errf(err, "%s: out of memory", w);
    memcpy(text, b + 8, (size_t)n);
    text[n] = '\0';
    const char *end = NULL;
    cJSON *root = cJSON_ParseWithLengthOpts(text, (size_t)n, &end, 0);
    if (!root) {
        size_t at = end ? (size_t)(end - text) : 0;
        free(text);
        return lm_errf(err, "%s: header is not valid JSON (near byte %zu)", w,
                       at + 8);
    }
    /* the HF writer pads with spaces; anything else after the JSON is junk */
    for (const char *p = end; p < text + n; p++)
        if (*p != ' ' && *p != '\t' && *p != '\n' && *p != '\r') {
            cJSON_Delete(root);
            int r = lm_errf(err,
                            "%s: header JSON is followed by junk at byte %zu", w,
                            (size_t)(p - text) + 8);
            free(text);
            return r;
        }
    free(text);

    size_t data_start = 8 + (size_t)n;
    int r = parse_header(f, root, b + data_start, len - data_start, data_start,
                         w, err);
    cJSON_Delete(root);
    if (r) {
        lm_st_close(f);
        return -1;
    }
    return 0;
}

int lm_st_open(lm_st_file *f, const char *path, lm_err *err) {
    memset(f, 0, sizeof *f);
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) return lm_errf(err, "%s: cannot open: %s", path, strerror(errno));
    struct stat st;
    if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
        close(fd);
        return lm_errf(err, "%s: not a regular file", path);
    }
    size_t len = (size_t)st.st_size;
    if (len < 8) {
        close(fd);
        return lm_errf(err,
                       "%s: truncated: %zu bytes is too short for the 8-byte "
                       "header length",
                       path, len);
    }
    /* Private + writable: training may write weights that live in the map;
     * the kernel copies those pages, the file never changes. */
    void *map = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_PRIVATE, fd, 0);
    close(fd);
    if (map == MAP_FAILED)
        return lm_errf(err, "%s: cannot map %zu bytes: %s", path, len,
                       strerror(errno));
    if (lm_st_parse(f, map, len, path, err)) {
        munmap(map, len);
        return -1;
    }
    f->map = map;
    f->map_len = len;
    return 0;
}

const lm_st_tensor *lm_st_find(const lm_st_file *f, const char *name) {
    int lo = 0, hi = f->n_tensors - 1;
    while (lo <= hi) {
        int mid = lo + (hi - lo) / 2;
        const lm_st_tensor *t = &f->tensors[f->by_name[mid]];
        int c = strcmp(name, t->name);
        if (c == 0) return t;
        if (c < 0) hi = mid - 1;
        else lo = mid + 1;
    }
    return NULL;
}

const char *lm_st_meta_get(const lm_st_file *f, const char *key) {
    for (int i = 0; i < f->n_meta; i++)
        if (strcmp(f->meta[2 * i], key) == 0) return f->meta[2 * i + 1];
    return NULL;
}

int lm_st_to_f32(const lm_st_tensor *t, float *out, lm_err *err) {
    const uint8_t *p = t->data;
    long n = (long)t->numel;
    switch (t->dtype) {
    case LM_ST_F32:
        if (n) memcpy(out, p, t->nbytes);
        return 0;
    case LM_ST_F16:
#pragma omp parallel for if (n > (1 << 16))
        for (long i = 0; i < n; i++)
            out[i] = lm_f16_to_f32((uint16_t)(p[2 * i] | (p[2 * i + 1] << 8)));
        return 0;
    case LM_ST_BF16:
#pragma omp parallel for if (n > (1 << 16))
        for (long i = 0; i < n; i++)
            out[i] = lm_bf16_to_f32((uint16_t)(p[2 * i] | (p[2 * i + 1] << 8)));
        return 0;
    default:
        return lm_errf(err,
                       "tensor \"%s\": dtype %s is unsupported (F32, F16 and "
                       "BF16 are)",
                       t->name, lm_st_dtype_name(t->dtype));
    }
}

/* ---- writing ---- */

/* Converts floats to the stored dtype through a fixed buffer. */
typedef struct st_writer {
    FILE *fp;
    lm_st_dtype dtype;
    uint8_t buf[1 << 16];
    size_t used;
    int failed;
} st_writer;

static void wr_flush(st_writer *w) {
    if (w->used && fwrite(w->buf, 1, w->used, w->fp) != w->used) w->failed = 1;
    w->used = 0;
}

static void wr_put(st_writer *w, float v) {
    if (w->used + 4 > sizeof w->buf) wr_flush(w);
    uint8_t *p = w->buf + w->used;
    if (w->dtype == LM_ST_F32) {
        uint32_t x = lm_f32_to_bits(v);
        p[0] = (uint8_t)x, p[1] = (uint8_t)(x >> 8), p[2] = (uint8_t)(x >> 16),
        p[3] = (uint8_t)(x >> 24);
        w->used += 4;
    } else {
        uint16_t h = w->dtype == LM_ST_F16 ? lm_f32_to_f16(v) : lm_f32_to_bf16(v);
        p[0] = (uint8_t)h, p[1] = (uint8_t)(h >> 8);
        w->used += 2;
    }
}

static void wr_tensor(st_writer *w, const lm_st_out *t) {
    w->dtype = t->dtype;
    size_t rows = (size_t)t->shape[0];
    size_t cols = t->ndim == 2 ? (size_t)t->shape[1] : 1;
    if (t->dtype == LM_ST_F32 && !t->transpose) {
        /* the host is little-endian: the floats are the file's bytes */
        wr_flush(w);
        size_t n = rows * cols;
        if (n && fwrite(t->data, sizeof(float), n, w->fp) != n) w->failed = 1;
    } else if (t->transpose) {
        /* stored (i, j) is memory (j, i) of the [cols, rows] array */
        for (size_t i = 0; i < rows; i++)
            for (size_t j = 0; j < cols; j++) wr_put(w, t->data[j * rows + i]);
    } else {
        for (size_t k = 0; k < rows * cols; k++) wr_put(w, t->data[k]);
    }
}

static size_t out_numel(const lm_st_out *t) {
    return (size_t)t->shape[0] * (t->ndim == 2 ? (size_t)t->shape[1] : 1);
}

/* The header JSON, or NULL with err set. */
static char *build_header(const lm_st_out *ts, int n,
                          const char *const *metadata, lm_err *err) {
    cJSON *root = cJSON_CreateObject();
    if (!root) return lm_errf(err, "out of memory"), NULL;
    if (metadata && metadata[0]) {
        cJSON *meta = cJSON_AddObjectToObject(root, "__metadata__");
        for (int i = 0; meta && metadata[i]; i += 2)
            if (!metadata[i + 1] ||
                !cJSON_AddStringToObject(meta, metadata[i], metadata[i + 1]))
                meta = NULL;
        if (!meta) {
            cJSON_Delete(root);
            return lm_errf(err, "metadata: odd key/value list or out of memory"),
                   NULL;
        }
    }
    size_t offset = 0;
    for (int i = 0; i < n; i++) {
        const lm_st_out *t = &ts[i];
        size_t bytes = out_numel(t) * lm_st_dtype_size(t->dtype);
        cJSON *e = cJSON_AddObjectToObject(root, t->name);
        cJSON *shape = e ? cJSON_AddArrayToObject(e, "shape") : NULL;
        cJSON *offs = NULL;
        int ok = e && shape && cJSON_AddStringToObject(e, "dtype",
                                                       lm_st_dtype_name(t->dtype));
        for (int d = 0; ok && d < t->ndim; d++)
            ok = cJSON_AddItemToArray(shape,
                                      cJSON_CreateNumber((double)t->shape[d]));
        if (ok) offs = cJSON_AddArrayToObject(e, "data_offsets");
        ok = ok && offs &&
             cJSON_AddItemToArray(offs, cJSON_CreateNumber((double)offset)) &&
             cJSON_AddItemToArray(offs,
                                  cJSON_CreateNumber((double)(offset + bytes)));
        if (!ok) {
            cJSON_Delete(root);
            return lm_errf(err, "out of memory building the header"), NULL;
        }
        offset += bytes;
    }
    char *json = cJSON_PrintUnformatted(root);
    cJSON_Delete(root);
    if (!json) lm_errf(err, "out of memory printing the header");
    return json;
}

static int check_out(const lm_st_out *ts, int n, const char *path, lm_err *err) {
    for (int i = 0; i < n; i++) {
        const lm_st_out *t = &ts[i];
        if (!t->name || strcmp(t->name, "__metadata__") == 0)
            return lm_errf(err, "%s: tensor %d has no usable name", path, i);
        if (t->dtype != LM_ST_F32 && t->dtype != LM_ST_F16 &&
            t->dtype != LM_ST_BF16)
            return lm_errf(err, "%s: tensor \"%s\": cannot write dtype %s", path,
                           t->name, lm_st_dtype_name(t->dtype));
        if (t->ndim < 1 || t->ndim > 2 || t->shape[0] < 0 ||
            (t->ndim == 2 && t->shape[1] < 0) || (t->transpose && t->ndim != 2))
            return lm_errf(err, "%s: tensor \"%s\": bad shape", path, t->name);
        if (!t->data && out_numel(t) > 0)
            return lm_errf(err, "%s: tensor \"%s\": no data", path, t->name);
        for (int j = 0; j < i; j++)
            if (strcmp(ts[j].name, t->name) == 0)
                return lm_errf(err, "%s: tensor \"%s\" given twice", path,
                               t->name);
    }
    return 0;
}

int lm_st_write(const char *path, const lm_st_out *tensors, int n,
                const char *const *metadata, lm_err *err) {
    if (check_out(tensors, n, path, err)) return -1;
    char *json = build_header(tensors, n, metadata, err);
    if (!json) return lm_err_prefix(err, "%s: ", path);
    size_t hlen = strlen(json), padded = (hlen + 7) & ~(size_t)7;

    char tmp[4096];
    if (snprintf(tmp, sizeof tmp, "%s.tmp", path) >= (int)sizeof tmp) {
        free(json);
        return lm_errf(err, "%s: path too long", path);
    }
    st_writer *w = calloc(1, sizeof *w);
    FILE *fp = w ? fopen(tmp, "wb") : NULL;
    if (!fp) {
        int r = lm_errf(err, "%s: cannot create: %s", tmp,
                        w ? strerror(errno) : "out of memory");
        free(w);
        free(json);
        return r;
    }
    w->fp = fp;
    uint8_t len8[8];
    for (int i = 0; i < 8; i++) len8[i] = (uint8_t)((uint64_t)padded >> (8 * i));
    if (fwrite(len8, 1, 8, fp) != 8 || fwrite(json, 1, hlen, fp) != hlen)
        w->failed = 1;
    for (size_t i = hlen; i < padded; i++)
        if (fputc(' ', fp) == EOF) w->failed = 1;
    free(json);
    for (int i = 0; i < n && !w->failed; i++) wr_tensor(w, &tensors[i]);
    wr_flush(w);
    int failed = w->failed || fflush(fp) != 0 || fsync(fileno(fp)) != 0;
    int saved = errno;
    failed |= fclose(fp) != 0;
    free(w);
    if (failed) {
        unlink(tmp);
        return lm_errf(err, "%s: write failed: %s", tmp, strerror(saved));
    }
    if (rename(tmp, path) != 0) {
        saved = errno;
        unlink(tmp);
        return lm_errf(err, "%s: cannot rename from %s: %s", path, tmp,
                       strerror(saved));
    }
    return 0;
}
