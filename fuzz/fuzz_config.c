/* Fuzz target: arbitrary bytes as a config.json. A config that parses must
 * also go through the writer and parse back to the same lm_config. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "hf_config.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    lm_config c, back;
    lm_err err;
    if (lm_hf_config_parse(&c, (const char *)data, size, "fuzz", &err) != 0)
        return 0;
    char *json = lm_hf_config_to_json(&c, &err);
    if (!json) abort(); /* we read a config we cannot write */
    /* lm_config is all 4-byte fields, zeroed by the parser: memcmp is fair */
    if (lm_hf_config_parse(&back, json, strlen(json), "rewritten", &err) != 0 ||
        memcmp(&c, &back, sizeof c) != 0)
        abort();
    free(json);
    return 0;
}
