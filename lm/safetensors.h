/* Hugging Face safetensors: read (from memory or a private file map) and write.
 *
 * Layout: 8 bytes little-endian header length N, N bytes of JSON
 *   {"__metadata__": {"k": "v"}, "name": {"dtype": "F32", "shape": [r, c],
 *                                         "data_offsets": [begin, end]}, ...}
 * then the data; offsets are relative to the first byte after the header.
 * The reader checks every entry against the data length before anything
 * touches the bytes, so a parsed file is safe to read tensor by tensor. */
#ifndef LM_SAFETENSORS_H
#define LM_SAFETENSORS_H

#include <stddef.h>
#include <stdint.h>

#include "err.h"

typedef enum lm_st_dtype {
    LM_ST_F32 = 0,
    LM_ST_F16,
    LM_ST_BF16,
    /* recognised but not loadable as weights */
    LM_ST_F64,
    LM_ST_I64,
    LM_ST_U64,
    LM_ST_I32,
    LM_ST_U32,
    LM_ST_I16,
    LM_ST_U16,
    LM_ST_I8,
    LM_ST_U8,
    LM_ST_BOOL,
    LM_ST_F8_E4M3,
    LM_ST_F8_E5M2,
    LM_ST_F8_E8M0,
    LM_ST_C64,
    LM_ST_DTYPE_COUNT
} lm_st_dtype;

const char *lm_st_dtype_name(lm_st_dtype d);
size_t lm_st_dtype_size(lm_st_dtype d);

#define LM_ST_MAX_DIMS 8

typedef struct lm_st_tensor {
    char *name;
    lm_st_dtype dtype;
    int ndim;
    int64_t shape[LM_ST_MAX_DIMS];
    size_t numel;
    size_t nbytes;
    size_t offset;        /* of the first byte, from the start of the file */
    const uint8_t *data;  /* into the buffer or map */
} lm_st_tensor;

typedef struct lm_st_file {
    const uint8_t *buf;   /* the whole file */
    size_t len;
    void *map;            /* our private map, or NULL (caller's buffer) */
    size_t map_len;
    lm_st_tensor *tensors;  /* in header order */
    int n_tensors;
    int *by_name;           /* indices sorted by name, for lookup */
    char **meta;            /* __metadata__ as key, value, key, value, ... */
    int n_meta;             /* pairs */
} lm_st_file;

/* Parses a file held in memory; the buffer must outlive f. `what` names it
 * in errors (a path, or NULL). */
int lm_st_parse(lm_st_file *f, const void *buf, size_t len, const char *what,
                lm_err *err);
/* Maps the file MAP_PRIVATE with PROT_READ|PROT_WRITE: weights that point
 * into it can be trained copy-on-write; the file is never written. */
int lm_st_open(lm_st_file *f, const char *path, lm_err *err);
/* Hands the map over (e.g. to lm_model_add_mapping): lm_st_close will then
 * leave it mapped. Pointers into it stay valid. */
void lm_st_take_map(lm_st_file *f, void **addr, size_t *len);
void lm_st_close(lm_st_file *f);

const lm_st_tensor *lm_st_find(const lm_st_file *f, const char *name);
const char *lm_st_meta_get(const lm_st_file *f, const char *key);

/* Widens a F32/F16/BF16 tensor into out[numel]; other dtypes are an error
 * naming the tensor and its dtype. */
int lm_st_to_f32(const lm_st_tensor *t, float *out, lm_err *err);

/* ---- writing ---- */

typedef struct lm_st_out {
    const char *name;
    lm_st_dtype dtype;    /* F32, F16 or BF16 */
    int ndim;             /* 1 or 2 */
    int64_t shape[2];     /* as stored in the file */
    const float *data;    /* numel floats */
    /* data is [shape[1], shape[0]] in memory and is written transposed
     * (GPT-2's Conv1D weights are stored [in, out]) */
    int transpose;
} lm_st_out;

/* Writes tensors in the given order, the header padded with spaces to a
 * multiple of 8 bytes like the HF library. `metadata` is NULL or a NULL-
 * terminated list of key, value strings. Written to PATH.tmp, then renamed. */
int lm_st_write(const char *path, const lm_st_out *tensors, int n,
                const char *const *metadata, lm_err *err);

#endif
