/* Fuzzes the llama2.c checkpoint loader from memory. A header must imply
 * exactly the input's length before anything is allocated, so memory stays
 * about the size of the input. */
#include <stdint.h>

#include "llama2c.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    lm_model m;
    if (lm_llama2c_load_buffer(&m, data, size, NULL) == 0) lm_model_free(&m);
    return 0;
}
