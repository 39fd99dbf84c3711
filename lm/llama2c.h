/* Karpathy's llama2.c checkpoint (the legacy run.c .bin): a header of 7
 * int32 {dim, hidden_dim, n_layers, n_heads, n_kv_heads, vocab_size,
 * seq_len} then fp32 weights; a negative vocab_size means an untied
 * classifier follows the other weights. lm_model_load_llama2c (loaders.h)
 * maps a file and calls the buffer loader below, which the fuzzer uses. */
#ifndef LM_LLAMA2C_H
#define LM_LLAMA2C_H

#include <stddef.h>
#include <stdint.h>

#include "model.h"

typedef struct lm_llama2c_header {
    int dim, hidden_dim, n_layers, n_heads, n_kv_heads, vocab_size, seq_len;
    int shared_classifier; /* vocab_size was positive */
    uint64_t file_bytes;   /* the exact length the header implies */
} lm_llama2c_header;

/* Reads and checks the header of buf[0..len): positive sizes, heads that
 * divide, and len equal to the size the header implies. */
int lm_llama2c_parse_header(const uint8_t *buf, size_t len,
                            lm_llama2c_header *h, lm_err *err);
/* Builds a fresh model from buf (copied; buf may be freed afterwards). */
int lm_llama2c_load_buffer(lm_model *m, const uint8_t *buf, size_t len,
                           lm_err *err);

#endif
