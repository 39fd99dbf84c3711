/* GGUF reader. One pass checks and indexes the whole header (every length
 * against the bytes left, before anything is allocated from it); afterwards
 * every getter reads only what the parser has already bounded. */
#include "gguf.h"

#include <fcntl.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "half.h"

/* ---- type tables ---- */

static const char *const value_type_names[LM_GGUF_TYPE_COUNT] = {
    "u8",  "i8",  "u16",   "i16",   "u32", "i32", "f32",
    "bool", "string", "array", "u64", "i64", "f64"};

/* Bytes of one scalar value; 0 for string and array. */
static const uint8_t value_type_size[LM_GGUF_TYPE_COUNT] = {
    1, 1, 2, 2, 4, 4, 4, 1, 0, 0, 8, 8, 8};

const char *lm_gguf_type_name(uint32_t type) {
    return type < LM_GGUF_TYPE_COUNT ? value_type_names[type] : "unknown";
}

/* ggml's block layouts: values per block and bytes per block. A zero block
 * size marks a number ggml has retired or never used. */
typedef struct ggml_type_info {
    const char *name;
    uint32_t block;
    uint32_t bytes;
} ggml_type_info;

static const ggml_type_info ggml_types[] = {
    [0] = {"F32", 1, 4},        [1] = {"F16", 1, 2},
    [2] = {"Q4_0", 32, 18},     [3] = {"Q4_1", 32, 20},
    [6] = {"Q5_0", 32, 22},     [7] = {"Q5_1", 32, 24},
    [8] = {"Q8_0", 32, 34},     [9] = {"Q8_1", 32, 36},
    [10] = {"Q2_K", 256, 84},   [11] = {"Q3_K", 256, 110},
    [12] = {"Q4_K", 256, 144},  [13] = {"Q5_K", 256, 176},
    [14] = {"Q6_K", 256, 210},  [15] = {"Q8_K", 256, 292},
    [16] = {"IQ2_XXS", 256, 66}, [17] = {"IQ2_XS", 256, 74},
    [18] = {"IQ3_XXS", 256, 98}, [19] = {"IQ1_S", 256, 50},
    [20] = {"IQ4_NL", 32, 18},  [21] = {"IQ3_S", 256, 110},
    [22] = {"IQ2_S", 256, 82},  [23] = {"IQ4_XS", 256, 136},
    [24] = {"I8", 1, 1},        [25] = {"I16", 1, 2},
    [26] = {"I32", 1, 4},       [27] = {"I64", 1, 8},
    [28] = {"F64", 1, 8},       [29] = {"IQ1_M", 256, 56},
    [30] = {"BF16", 1, 2},
};
#define N_GGML_TYPES (sizeof ggml_types / sizeof ggml_types[0])

static const ggml_type_info *ggml_info(uint32_t type) {
    if (type >= N_GGML_TYPES || ggml_types[type].block == 0) return NULL;
    return &ggml_types[type];
}

const char *lm_ggml_type_name(uint32_t type) {
    const ggml_type_info *ti = ggml_info(type);
    return ti ? ti->name : "unknown";
}

/* ---- little-endian reads (the buffer may be unaligned) ---- */

static uint16_t le16(const uint8_t *p) {
    return (uint16_t)(p[0] | (uint16_t)p[1] << 8);
}
static uint32_t le32(const uint8_t *p) {
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 |
           (uint32_t)p[3] << 24;
}
static uint64_t le64(const uint8_t *p) {
    return (uint64_t)le32(p) | (uint64_t)le32(p + 4) << 32;
}
static float bits_f32(uint32_t u) {
    float f;
    memcpy(&f, &u, 4);
    return f;
}
static double bits_f64(uint64_t u) {
    double d;
    memcpy(&d, &u, 8);
    return d;
}

/* A cursor over the buffer; every read checks the bytes left first. */
typedef struct reader {
    const uint8_t *buf;
    size_t len, pos;
    lm_err *err;
} reader;

static size_t left(const reader *r) { return r->len - r->pos; }

static int rd_u32(reader *r, uint32_t *v, const char *what) {
    if (left(r) < 4)
        return lm_errf(r->err, "gguf: truncated reading %s at offset %zu",
                       what, r->pos);
    *v = le32(r->buf + r->pos);
    r->pos += 4;
    return 0;
}

static int rd_u64(reader *r, uint64_t *v, const char *what) {
    if (left(r) < 8)
        return lm_errf(r->err, "gguf: truncated reading %s at offset %zu",
                       what, r->pos);
    *v = le64(r->buf + r->pos);
    r->pos += 8;
    return 0;
}

/* A string: u64 length + bytes. Returns where its bytes start. */
static int rd_str(reader *r, size_t *at, uint64_t *n, const char *what) {
    size_t start = r->pos;
    if (rd_u64(r, n, what)) return -1;
    if (*n > left(r))
        return lm_errf(r->err,
                       "gguf: %s at offset %zu has length %llu but only %zu "
                       "bytes remain",
                       what, start, (unsigned long long)*n, left(r));
    *at = r->pos;
    r->pos += (size_t)*n;
    return 0;
}

/* Skips a value of the given type (not an array) after checking it fits;
 * counts strings so the caller can size indexes. */
static int skip_value(reader *r, uint32_t type, const char *key) {
    if (type == LM_GGUF_STRING) {
        size_t at;
        uint64_t n;
        return rd_str(r, &at, &n, key);
    }
    size_t sz = value_type_size[type];
    if (left(r) < sz)
        return lm_errf(r->err,
                       "gguf: truncated %s value of '%s' at offset %zu",
                       value_type_names[type], key, r->pos);
    r->pos += sz;
    return 0;
}

/* ---- parsing ---- */

static int cmp_names(const void *a, const void *b) {
    return strcmp(*(const char *const *)a, *(const char *const *)b);
}

/* Rejects a repeated key or tensor name: lookups would silently pick one. */
static int check_unique(const char **names, uint64_t n, const char *what,
                        lm_err *err) {
    if (n < 2) return 0;
    qsort(names, (size_t)n, sizeof *names, cmp_names);
    for (uint64_t i = 1; i < n; i++)
        if (strcmp(names[i - 1], names[i]) == 0)
            return lm_errf(err, "gguf: duplicate %s '%s'", what, names[i]);
    return 0;
}

/* Where each key/name sits in the buffer until the pool is built. */
typedef struct str_ref {
    size_t at;
    uint64_t len;
} str_ref;

static int parse_kvs(lm_gguf *g, reader *r, str_ref *keys,
                     uint64_t *n_strings, char *keybuf, size_t keybuf_len) {
    *n_strings = 0;
    for (uint64_t i = 0; i < g->n_kv; i++) {
        lm_gguf_kv *kv = &g->kv[i];
        size_t key_pos = r->pos;
        if (rd_str(r, &keys[i].at, &keys[i].len, "metadata key")) return -1;
        /* A printable copy of the key for messages about its value. */
        size_t kn = keys[i].len < keybuf_len - 1 ? (size_t)keys[i].len
                                                 : keybuf_len - 1;
        memcpy(keybuf, r->buf + keys[i].at, kn);
        keybuf[kn] = 0;
        if (keys[i].len == 0)
            return lm_errf(r->err, "gguf: empty metadata key at offset %zu",
                           key_pos);
        if (memchr(r->buf + keys[i].at, 0, (size_t)keys[i].len))
            return lm_errf(r->err, "gguf: metadata key at offset %zu contains "
                           "a NUL byte", key_pos);
        if (rd_u32(r, &kv->type, keybuf)) return -1;
        if (kv->type >= LM_GGUF_TYPE_COUNT)
            return lm_errf(r->err,
                           "gguf: metadata '%s' has unknown value type %u",
                           keybuf, kv->type);
        kv->val = r->buf + r->pos;
        if (kv->type != LM_GGUF_ARRAY) {
            if (skip_value(r, kv->type, keybuf)) return -1;
            continue;
        }
        lm_gguf_arr *a = &kv->arr;
        if (rd_u32(r, &a->type, keybuf) || rd_u64(r, &a->n, keybuf))
            return -1;
        if (a->type >= LM_GGUF_TYPE_COUNT || a->type == LM_GGUF_ARRAY)
            return lm_errf(r->err,
                           "gguf: array '%s' has unsupported element type %u",
                           keybuf, a->type);
        a->data = r->buf + r->pos;
        if (a->type == LM_GGUF_STRING) {
            /* Each string needs at least its 8-byte length. */
            if (a->n > left(r) / 8)
                return lm_errf(r->err,
                               "gguf: array '%s' claims %llu strings but only "
                               "%zu bytes remain",
                               keybuf, (unsigned long long)a->n, left(r));
            for (uint64_t j = 0; j < a->n; j++)
                if (skip_value(r, LM_GGUF_STRING, keybuf)) return -1;
            *n_strings += a->n;
        } else {
            size_t sz = value_type_size[a->type];
            if (a->n > left(r) / sz)
                return lm_errf(r->err,
                               "gguf: array '%s' claims %llu x %s but only %zu "
                               "bytes remain",
                               keybuf, (unsigned long long)a->n,
                               value_type_names[a->type], left(r));
            r->pos += (size_t)a->n * sz;
        }
    }
    return 0;
}

static int parse_tensor_infos(lm_gguf *g, reader *r, str_ref *names) {
    for (uint64_t i = 0; i < g->n_tensors; i++) {
        lm_gguf_tensor *t = &g->tensors[i];
        size_t info_pos = r->pos;
        if (rd_str(r, &names[i].at, &names[i].len, "tensor name")) return -1;
        if (names[i].len == 0 ||
            memchr(r->buf + names[i].at, 0, (size_t)names[i].len))
            return lm_errf(r->err,
                           "gguf: tensor %llu at offset %zu has an empty name "
                           "or one containing a NUL byte",
                           (unsigned long long)i, info_pos);
        if (rd_u32(r, &t->n_dims, "tensor n_dims")) return -1;
        if (t->n_dims < 1 || t->n_dims > 4)
            return lm_errf(r->err,
                           "gguf: tensor %llu at offset %zu has %u dims "
                           "(1..4 allowed)",
                           (unsigned long long)i, info_pos, t->n_dims);
        for (int d = 0; d < 4; d++) t->ne[d] = 1;
        for (uint32_t d = 0; d < t->n_dims; d++)
            if (rd_u64(r, &t->ne[d], "tensor dim")) return -1;
        if (rd_u32(r, &t->type, "tensor type") ||
            rd_u64(r, &t->offset, "tensor offset"))
            return -1;
    }
    return 0;
}

/* Sizes each tensor and places it in the data section. */
static int place_tensors(lm_gguf *g, lm_err *err) {
    for (uint64_t i = 0; i < g->n_tensors; i++) {
        lm_gguf_tensor *t = &g->tensors[i];
        const ggml_type_info *ti = ggml_info(t->type);
        if (!ti)
            return lm_errf(err, "gguf: tensor '%s' has unknown ggml type %u",
                           t->name, t->type);
        /* Keep every count below 2^62 so later products cannot wrap. */
        const uint64_t limit = (uint64_t)1 << 62;
        uint64_t n = 1;
        for (uint32_t d = 0; d < t->n_dims; d++) {
            if (t->ne[d] >= limit || (t->ne[d] && n > limit / t->ne[d]))
                return lm_errf(err, "gguf: tensor '%s' dims overflow",
                               t->name);
            n *= t->ne[d];
        }
        if (t->ne[0] % ti->block != 0)
            return lm_errf(err,
                           "gguf: tensor '%s' (%s) has a row of %llu values, "
                           "not a multiple of the block size %u",
                           t->name, ti->name, (unsigned long long)t->ne[0],
                           ti->block);
        if (n / ti->block > limit / ti->bytes)
            return lm_errf(err, "gguf: tensor '%s' byte size overflows",
                           t->name);
        t->n_elements = n;
        t->n_bytes = n / ti->block * ti->bytes;
        if (t->offset % g->alignment != 0)
            return lm_errf(err,
                           "gguf: tensor '%s' offset %llu is not a multiple of "
                           "the alignment %llu",
                           t->name, (unsigned long long)t->offset,
                           (unsigned long long)g->alignment);
        uint64_t avail = g->data_offset <= g->len ? g->len - g->data_offset : 0;
        if (t->offset > avail || t->n_bytes > avail - t->offset)
            return lm_errf(err,
                           "gguf: tensor '%s' (%llu bytes at data offset %llu) "
                           "runs past the end of the file (%llu data bytes)",
                           t->name, (unsigned long long)t->n_bytes,
                           (unsigned long long)t->offset,
                           (unsigned long long)avail);
        t->data = g->buf + g->data_offset + t->offset;
    }
    return 0;
}

/* Fills the O(1) index of every string array (strings already checked). */
static void index_strings(lm_gguf *g) {
    uint64_t *off = g->str_offs;
    for (uint64_t i = 0; i < g->n_kv; i++) {
        lm_gguf_arr *a = &g->kv[i].arr;
        if (g->kv[i].type != LM_GGUF_ARRAY || a->type != LM_GGUF_STRING)
            continue;
        a->str_off = off;
        uint64_t o = 0;
        for (uint64_t j = 0; j < a->n; j++) {
            off[j] = o;
            o += 8 + le64(a->data + o);
        }
        off += a->n;
    }
}

static int parse(lm_gguf *g, const uint8_t *buf, size_t len, lm_err *err) {
    reader r = {buf, len, 0, err};
    g->buf = buf;
    g->len = len;
    if (len < 4 || memcmp(buf, "GGUF", 4) != 0)
        return lm_errf(err, "gguf: bad magic (not a GGUF file)");
    r.pos = 4;
    if (rd_u32(&r, &g->version, "version")) return -1;
    if (g->version != 2 && g->version != 3)
        return lm_errf(err,
                       "gguf: unsupported version %u (2 and 3 are; a huge "
                       "number means a big-endian file)",
                       g->version);
    if (rd_u64(&r, &g->n_tensors, "tensor count") ||
        rd_u64(&r, &g->n_kv, "metadata count"))
        return -1;
    /* Bound the counts by the smallest encoding of each entry before
     * allocating: a KV is at least 8+1+4+1 bytes, a tensor info 8+1+4+8+4+8. */
    if (g->n_kv > left(&r) / 14)
        return lm_errf(err, "gguf: %llu metadata pairs cannot fit in %zu bytes",
                       (unsigned long long)g->n_kv, left(&r));
    if (g->n_tensors > left(&r) / 33)
        return lm_errf(err, "gguf: %llu tensors cannot fit in %zu bytes",
                       (unsigned long long)g->n_tensors, left(&r));

    int rc = -1;
    str_ref *refs = NULL;
    const char **sorted = NULL;
    uint64_t n_refs = g->n_kv + g->n_tensors;
    g->kv = calloc(g->n_kv ? (size_t)g->n_kv : 1, sizeof *g->kv);
    g->tensors =
        calloc(g->n_tensors ? (size_t)g->n_tensors : 1, sizeof *g->tensors);
    refs = calloc(n_refs ? (size_t)n_refs : 1, sizeof *refs);
    sorted = calloc(n_refs ? (size_t)n_refs : 1, sizeof *sorted);
    if (!g->kv || !g->tensors || !refs || !sorted) {
        lm_errf(err, "gguf: out of memory for %llu entries",
                (unsigned long long)n_refs);
        goto done;
    }

    char keybuf[256];
    uint64_t n_strings;
    if (parse_kvs(g, &r, refs, &n_strings, keybuf, sizeof keybuf) ||
        parse_tensor_infos(g, &r, refs + g->n_kv))
        goto done;

    /* Copy keys and names into one NUL-terminated pool: their total is
     * bounded by the bytes already read. */
    size_t pool = 0;
    for (uint64_t i = 0; i < n_refs; i++) pool += (size_t)refs[i].len + 1;
    g->names = malloc(pool);
    g->str_offs = malloc(n_strings ? (size_t)n_strings * sizeof(uint64_t) : 1);
    if (!g->names || !g->str_offs) {
        lm_errf(err, "gguf: out of memory for names");
        goto done;
    }
    char *p = g->names;
    for (uint64_t i = 0; i < n_refs; i++) {
        memcpy(p, buf + refs[i].at, (size_t)refs[i].len);
        p[refs[i].len] = 0;
        if (i < g->n_kv)
            g->kv[i].key = p;
        else
            g->tensors[i - g->n_kv].name = p;
        p += refs[i].len + 1;
    }
    index_strings(g);
    for (uint64_t i = 0; i < g->n_kv; i++) sorted[i] = g->kv[i].key;
    if (check_unique(sorted, g->n_kv, "metadata key", err)) goto done;
    for (uint64_t i = 0; i < g->n_tensors; i++) sorted[i] = g->tensors[i].name;
    if (check_unique(sorted, g->n_tensors, "tensor name", err)) goto done;

    g->alignment = 32;
    if (lm_gguf_find_kv(g, "general.alignment")) {
        if (lm_gguf_get_u64(g, "general.alignment", &g->alignment, err))
            goto done;
        if (g->alignment == 0 || (g->alignment & (g->alignment - 1)) ||
            g->alignment > ((uint64_t)1 << 30)) {
            lm_errf(err, "gguf: general.alignment %llu is not a power of two",
                    (unsigned long long)g->alignment);
            goto done;
        }
    }
    /* pos <= len < 2^63, alignment <= 2^30: no overflow. */
    g->data_offset =
        ((uint64_t)r.pos + g->alignment - 1) & ~(g->alignment - 1);
    if (place_tensors(g, err)) goto done;
    rc = 0;
done:
    free(refs);
    free(sorted);
    return rc;
}

int lm_gguf_parse(lm_gguf *g, const uint8_t *buf, size_t len, lm_err *err) {
    memset(g, 0, sizeof *g);
    if (!buf && len) return lm_errf(err, "gguf: NULL buffer");
    if (parse(g, buf ? buf : (const uint8_t *)"", len, err)) {
        lm_gguf_close(g);
        return -1;
    }
    return 0;
}

int lm_gguf_open(lm_gguf *g, const char *path, lm_err *err) {
    memset(g, 0, sizeof *g);
    int fd = open(path, O_RDONLY);
    if (fd < 0) return lm_errf(err, "%s: cannot open", path);
    struct stat st;
    if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
        close(fd);
        return lm_errf(err, "%s: not a regular file", path);
    }
    if (st.st_size < 4) {
        close(fd);
        return lm_errf(err, "%s: %lld bytes is too short for GGUF", path,
                       (long long)st.st_size);
    }
    size_t len = (size_t)st.st_size;
    void *map = mmap(NULL, len, PROT_READ, MAP_PRIVATE, fd, 0);
    close(fd);
    if (map == MAP_FAILED) return lm_errf(err, "%s: mmap failed", path);
    if (lm_gguf_parse(g, map, len, err)) {
        munmap(map, len);
        return lm_err_prefix(err, "%s: ", path);
    }
    g->map = map;
    g->map_len = len;
    return 0;
}

void lm_gguf_close(lm_gguf *g) {
    if (!g) return;
    free(g->kv);
    free(g->tensors);
    free(g->names);
    free(g->str_offs);
    if (g->map) munmap(g->map, g->map_len);
    memset(g, 0, sizeof *g);
}

const lm_gguf_kv *lm_gguf_find_kv(const lm_gguf *g, const char *key) {
    for (uint64_t i = 0; i < g->n_kv; i++)
        if (g->kv[i].key && strcmp(g->kv[i].key, key) == 0) return &g->kv[i];
    return NULL;
}

const lm_gguf_tensor *lm_gguf_find_tensor(const lm_gguf *g, const char *name) {
    for (uint64_t i = 0; i < g->n_tensors; i++)
        if (g->tensors[i].name && strcmp(g->tensors[i].name, name) == 0)
            return &g->tensors[i];
    return NULL;
}

/* ---- typed values ---- */

/* Reads an integer (or bool) scalar of any width as a signed 128-bit-safe
 * pair: *neg set for negative values. Returns -1 for non-integer types. */
static int read_int(uint32_t type, const uint8_t *p, uint64_t *mag, int *neg) {
    int64_t s;
    *neg = 0;
    switch (type) {
    case LM_GGUF_U8:
    case LM_GGUF_BOOL: *mag = p[0]; return 0;
    case LM_GGUF_U16: *mag = le16(p); return 0;
    case LM_GGUF_U32: *mag = le32(p); return 0;
    case LM_GGUF_U64: *mag = le64(p); return 0;
    case LM_GGUF_I8: s = (int8_t)p[0]; break;
    case LM_GGUF_I16: s = (int16_t)le16(p); break;
    case LM_GGUF_I32: s = (int32_t)le32(p); break;
    case LM_GGUF_I64: s = (int64_t)le64(p); break;
    default: return -1;
    }
    *neg = s < 0;
    *mag = s < 0 ? (uint64_t)0 - (uint64_t)s : (uint64_t)s;
    return 0;
}

static int read_f64(uint32_t type, const uint8_t *p, double *out) {
    uint64_t mag;
    int neg;
    if (type == LM_GGUF_F32) {
        *out = bits_f32(le32(p));
        return 0;
    }
    if (type == LM_GGUF_F64) {
        *out = bits_f64(le64(p));
        return 0;
    }
    if (type == LM_GGUF_BOOL || read_int(type, p, &mag, &neg)) return -1;
    *out = neg ? -(double)mag : (double)mag;
    return 0;
}

static const lm_gguf_kv *need_kv(const lm_gguf *g, const char *key,
                                 lm_err *err) {
    const lm_gguf_kv *kv = lm_gguf_find_kv(g, key);
    if (!kv) lm_errf(err, "gguf: metadata '%s' is missing", key);
    return kv;
}

/* Integer in [lo, hi] (hi as magnitude; lo is 0 or -2^31). */
static int get_int(const lm_gguf *g, const char *key, int allow_neg,
                   uint64_t hi, uint64_t *mag, int *neg, lm_err *err) {
    const lm_gguf_kv *kv = need_kv(g, key, err);
    if (!kv) return -1;
    if (kv->type == LM_GGUF_ARRAY || read_int(kv->type, kv->val, mag, neg))
        return lm_errf(err, "gguf: metadata '%s' is %s, not an integer", key,
                       lm_gguf_type_name(kv->type));
    if ((*neg && (!allow_neg || *mag > hi + 1)) || (!*neg && *mag > hi))
        return lm_errf(err, "gguf: metadata '%s' value %s%llu is out of range",
                       key, *neg ? "-" : "", (unsigned long long)*mag);
    return 0;
}

int lm_gguf_get_u32(const lm_gguf *g, const char *key, uint32_t *out,
                    lm_err *err) {
    uint64_t mag;
    int neg;
    if (get_int(g, key, 0, UINT32_MAX, &mag, &neg, err)) return -1;
    *out = (uint32_t)mag;
    return 0;
}

int lm_gguf_get_i32(const lm_gguf *g, const char *key, int32_t *out,
                    lm_err *err) {
    uint64_t mag;
    int neg;
    if (get_int(g, key, 1, INT32_MAX, &mag, &neg, err)) return -1;
    *out = neg ? (int32_t)(-(int64_t)mag) : (int32_t)mag;
    return 0;
}

int lm_gguf_get_u64(const lm_gguf *g, const char *key, uint64_t *out,
                    lm_err *err) {
    uint64_t mag;
    int neg;
    if (get_int(g, key, 0, UINT64_MAX, &mag, &neg, err)) return -1;
    *out = mag;
    return 0;
}

int lm_gguf_get_f32(const lm_gguf *g, const char *key, float *out,
                    lm_err *err) {
    const lm_gguf_kv *kv = need_kv(g, key, err);
    double d;
    if (!kv) return -1;
    if (kv->type == LM_GGUF_ARRAY || read_f64(kv->type, kv->val, &d))
        return lm_errf(err, "gguf: metadata '%s' is %s, not a number", key,
                       lm_gguf_type_name(kv->type));
    *out = (float)d;
    return 0;
}

int lm_gguf_get_bool(const lm_gguf *g, const char *key, int *out,
                     lm_err *err) {
    const lm_gguf_kv *kv = need_kv(g, key, err);
    if (!kv) return -1;
    if (kv->type != LM_GGUF_BOOL)
        return lm_errf(err, "gguf: metadata '%s' is %s, not bool", key,
                       lm_gguf_type_name(kv->type));
    *out = kv->val[0] != 0;
    return 0;
}

int lm_gguf_get_str(const lm_gguf *g, const char *key, const char **s,
                    size_t *len, lm_err *err) {
    const lm_gguf_kv *kv = need_kv(g, key, err);
    if (!kv) return -1;
    if (kv->type != LM_GGUF_STRING)
        return lm_errf(err, "gguf: metadata '%s' is %s, not a string", key,
                       lm_gguf_type_name(kv->type));
    *len = (size_t)le64(kv->val);
    *s = (const char *)kv->val + 8;
    return 0;
}

int lm_gguf_get_arr(const lm_gguf *g, const char *key, lm_gguf_arr *out,
                    lm_err *err) {
    const lm_gguf_kv *kv = need_kv(g, key, err);
    if (!kv) return -1;
    if (kv->type != LM_GGUF_ARRAY)
        return lm_errf(err, "gguf: metadata '%s' is %s, not an array", key,
                       lm_gguf_type_name(kv->type));
    *out = kv->arr;
    return 0;
}

static int arr_index(const lm_gguf_arr *a, uint64_t i, lm_err *err) {
    if (i >= a->n)
        return lm_errf(err, "gguf: array index %llu out of range (%llu)",
                       (unsigned long long)i, (unsigned long long)a->n);
    return 0;
}

int lm_gguf_arr_str(const lm_gguf_arr *a, uint64_t i, const char **s,
                    size_t *len, lm_err *err) {
    if (arr_index(a, i, err)) return -1;
    if (a->type != LM_GGUF_STRING || !a->str_off)
        return lm_errf(err, "gguf: array of %s, not strings",
                       lm_gguf_type_name(a->type));
    const uint8_t *p = a->data + a->str_off[i];
    *len = (size_t)le64(p);
    *s = (const char *)p + 8;
    return 0;
}

int lm_gguf_arr_f32(const lm_gguf_arr *a, uint64_t i, float *out,
                    lm_err *err) {
    double d;
    if (arr_index(a, i, err)) return -1;
    if (a->type == LM_GGUF_STRING ||
        read_f64(a->type, a->data + i * value_type_size[a->type], &d))
        return lm_errf(err, "gguf: array of %s, not numbers",
                       lm_gguf_type_name(a->type));
    *out = (float)d;
    return 0;
}

int lm_gguf_arr_i32(const lm_gguf_arr *a, uint64_t i, int32_t *out,
                    lm_err *err) {
    uint64_t mag;
    int neg;
    if (arr_index(a, i, err)) return -1;
    if (a->type == LM_GGUF_STRING ||
        read_int(a->type, a->data + i * value_type_size[a->type], &mag, &neg))
        return lm_errf(err, "gguf: array of %s, not integers",
                       lm_gguf_type_name(a->type));
    if ((neg && mag > (uint64_t)INT32_MAX + 1) || (!neg && mag > INT32_MAX))
        return lm_errf(err, "gguf: array element %llu out of int32 range",
                       (unsigned long long)i);
    *out = neg ? (int32_t)(-(int64_t)mag) : (int32_t)mag;
    return 0;
}

/* ---- dequantisation ---- */

int lm_gguf_dequantize(const lm_gguf_tensor *t, float *out, lm_err *err) {
    const uint8_t *p = t->data;
    uint64_t n = t->n_elements;
    switch (t->type) {
    case LM_GGML_F32:
        for (uint64_t i = 0; i < n; i++) out[i] = bits_f32(le32(p + 4 * i));
        return 0;
    case LM_GGML_F16:
        for (uint64_t i = 0; i < n; i++) out[i] = lm_f16_to_f32(le16(p + 2 * i));
        return 0;
    case LM_GGML_BF16:
        for (uint64_t i = 0; i < n; i++)
            out[i] = lm_bf16_to_f32(le16(p + 2 * i));
        return 0;
    case LM_GGML_Q8_0:
        /* Blocks of 32: an fp16 scale d, then 32 int8 q; value = d * q. */
        for (uint64_t b = 0; b < n / 32; b++) {
            const uint8_t *blk = p + 34 * b;
            float d = lm_f16_to_f32(le16(blk));
            for (int j = 0; j < 32; j++)
                out[32 * b + j] = d * (float)(int8_t)blk[2 + j];
        }
        return 0;
    default:
        return lm_errf(err,
                       "gguf: tensor '%s' has type %s, which smudge cannot "
                       "dequantise (F32, F16, BF16 and Q8_0 can)",
                       t->name, lm_ggml_type_name(t->type));
    }
}

void lm_rope_rows_to_hf(float *dst, const float *src, int n_heads,
                        int head_dim, int cols) {
    int half = head_dim / 2;
    for (int h = 0; h < n_heads; h++)
        for (int i = 0; i < half; i++)
            for (int j = 0; j < 2; j++)
                memcpy(dst + ((size_t)h * head_dim + (size_t)j * half + i) * cols,
                       src + ((size_t)h * head_dim + 2 * (size_t)i + j) * cols,
                       (size_t)cols * sizeof *dst);
}
