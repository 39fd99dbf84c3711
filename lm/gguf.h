/* GGUF (v2/v3), the llama.cpp model container, read from an untrusted
 * memory buffer or a read-only memory map.
 *
 * Layout: "GGUF" u32 version, u64 n_tensors, u64 n_kv; n_kv pairs of
 * (string key, u32 type, value); n_tensors infos of (string name, u32 n_dims,
 * u64 dims[n_dims] fastest-varying first, u32 ggml type, u64 offset); then the
 * data section at the next multiple of `general.alignment` (default 32).
 * Strings are u64 length + bytes (no NUL); arrays are u32 element type +
 * u64 count + elements. All little-endian.
 *
 * The parser validates everything up front (every length and count against
 * the bytes left, every tensor's byte size and place in the file), so the
 * getters below never read out of bounds. Values point into the buffer: it
 * must outlive the lm_gguf. Keys and tensor names are copied NUL-terminated;
 * string values are (pointer, length) and are NOT NUL-terminated. */
#ifndef LM_GGUF_H
#define LM_GGUF_H

#include <stddef.h>
#include <stdint.h>

#include "err.h"

/* Metadata value types. */
typedef enum lm_gguf_type {
    LM_GGUF_U8 = 0,
    LM_GGUF_I8 = 1,
    LM_GGUF_U16 = 2,
    LM_GGUF_I16 = 3,
    LM_GGUF_U32 = 4,
    LM_GGUF_I32 = 5,
    LM_GGUF_F32 = 6,
    LM_GGUF_BOOL = 7,
    LM_GGUF_STRING = 8,
    LM_GGUF_ARRAY = 9,
    LM_GGUF_U64 = 10,
    LM_GGUF_I64 = 11,
    LM_GGUF_F64 = 12,
    LM_GGUF_TYPE_COUNT
} lm_gguf_type;

/* The ggml tensor types we name (the numbering is ggml's). Every type with
 * a known block layout is recognised (so its size is checked); only F32,
 * F16, BF16 and Q8_0 can be dequantised. */
enum {
    LM_GGML_F32 = 0,
    LM_GGML_F16 = 1,
    LM_GGML_Q4_0 = 2,
    LM_GGML_Q4_1 = 3,
    LM_GGML_Q5_0 = 6,
    LM_GGML_Q5_1 = 7,
    LM_GGML_Q8_0 = 8,
    LM_GGML_Q8_1 = 9,
    LM_GGML_BF16 = 30,
};

const char *lm_gguf_type_name(uint32_t type);  /* "u32", "string", ... */
const char *lm_ggml_type_name(uint32_t type);  /* "F32", "Q8_0", ... */

/* An array value. Elements are read with the lm_gguf_arr_* accessors. */
typedef struct lm_gguf_arr {
    uint32_t type;          /* element type (never ARRAY: nesting rejected) */
    uint64_t n;             /* element count */
    const uint8_t *data;    /* first element in the buffer */
    const uint64_t *str_off;/* strings only: offset from data of element i's
                               u64 length prefix (built at parse time) */
} lm_gguf_arr;

typedef struct lm_gguf_kv {
    const char *key;        /* NUL-terminated copy */
    uint32_t type;
    const uint8_t *val;     /* the value's bytes in the buffer (for a
                               string: its u64 length prefix) */
    lm_gguf_arr arr;        /* filled when type == LM_GGUF_ARRAY */
} lm_gguf_kv;

typedef struct lm_gguf_tensor {
    const char *name;       /* NUL-terminated copy */
    uint32_t n_dims;        /* 1..4 */
    uint64_t ne[4];         /* dims, fastest-varying first; unused ones 1 */
    uint32_t type;          /* ggml type */
    uint64_t offset;        /* from the start of the data section */
    uint64_t n_elements;
    uint64_t n_bytes;
    const uint8_t *data;    /* in the buffer; n_bytes long */
} lm_gguf_tensor;

typedef struct lm_gguf {
    const uint8_t *buf;
    size_t len;
    uint32_t version;
    uint64_t n_kv;
    lm_gguf_kv *kv;
    uint64_t n_tensors;
    lm_gguf_tensor *tensors;
    uint64_t alignment;
    uint64_t data_offset;   /* where the data section starts in buf */
    char *names;            /* one allocation for every key and name */
    uint64_t *str_offs;     /* one allocation for every string-array index */
    void *map;              /* set by lm_gguf_open */
    size_t map_len;
} lm_gguf;

/* Parses buf[0..len). On failure g holds nothing to free (but calling
 * lm_gguf_close is harmless). The message names the field and offset. */
int lm_gguf_parse(lm_gguf *g, const uint8_t *buf, size_t len, lm_err *err);
/* Maps PATH read-only and parses it. */
int lm_gguf_open(lm_gguf *g, const char *path, lm_err *err);
void lm_gguf_close(lm_gguf *g);

/* NULL when absent. */
const lm_gguf_kv *lm_gguf_find_kv(const lm_gguf *g, const char *key);
const lm_gguf_tensor *lm_gguf_find_tensor(const lm_gguf *g, const char *name);

/* Typed getters: 0 on success; -1 if the key is absent or its value does
 * not convert (the message says which). Integer getters accept any integer
 * type (and bool) whose value fits; get_f32 accepts f32, f64 and integers. */
int lm_gguf_get_u32(const lm_gguf *g, const char *key, uint32_t *out,
                    lm_err *err);
int lm_gguf_get_i32(const lm_gguf *g, const char *key, int32_t *out,
                    lm_err *err);
int lm_gguf_get_u64(const lm_gguf *g, const char *key, uint64_t *out,
                    lm_err *err);
int lm_gguf_get_f32(const lm_gguf *g, const char *key, float *out,
                    lm_err *err);
int lm_gguf_get_bool(const lm_gguf *g, const char *key, int *out,
                     lm_err *err);
/* *s points into the buffer and is not NUL-terminated. */
int lm_gguf_get_str(const lm_gguf *g, const char *key, const char **s,
                    size_t *len, lm_err *err);
int lm_gguf_get_arr(const lm_gguf *g, const char *key, lm_gguf_arr *out,
                    lm_err *err);

/* Element i of an array, O(1): -1 if i >= n or the element type does not
 * convert. arr_i32 accepts any integer element type whose value fits;
 * arr_f32 accepts f32, f64 and integers. */
int lm_gguf_arr_str(const lm_gguf_arr *a, uint64_t i, const char **s,
                    size_t *len, lm_err *err);
int lm_gguf_arr_f32(const lm_gguf_arr *a, uint64_t i, float *out,
                    lm_err *err);
int lm_gguf_arr_i32(const lm_gguf_arr *a, uint64_t i, int32_t *out,
                    lm_err *err);

/* out[n_elements] = the tensor's values as fp32 (F32, F16, BF16, Q8_0). */
int lm_gguf_dequantize(const lm_gguf_tensor *t, float *out, lm_err *err);

/* Builds a fresh Llama/Mistral model from a parsed file (lm/load_gguf.c;
 * lm_model_load_gguf in loaders.h opens a path and calls this). Every shape
 * is checked before anything is allocated. */
struct lm_model;
int lm_model_from_gguf(struct lm_model *m, const lm_gguf *g, lm_err *err);

/* Meta's checkpoints, llama2.c and llama.cpp's converter order the rows of
 * each q/k head as interleaved RoPE pairs (x0,x1),(x2,x3),...; Hugging Face
 * (and our runtime) rotates halves (x_i, x_{i+D/2}). This maps a [n_heads *
 * head_dim, cols] matrix from the first row order to the second:
 * dst row h*D + j*D/2 + i = src row h*D + 2i + j. dst and src must not
 * overlap. */
void lm_rope_rows_to_hf(float *dst, const float *src, int n_heads,
                        int head_dim, int cols);

#endif
