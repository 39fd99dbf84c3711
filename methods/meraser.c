/* MEraser (spec removal-methods.md section 1): placeholder until the
 * implementation lands. */
#include "method.h"

static int meraser_run(const sm_input *in, lm_err *err) {
    (void)in;
    return lm_errf(err, "meraser: not implemented yet");
}

const sm_method sm_method_meraser = {
    .abi = SM_METHOD_ABI,
    .name = "meraser",
    .description = "MEraser (work in progress)",
    .output = SM_OUT_MODEL,
    .run = meraser_run,
};

const sm_method sm_method_meraser_erase_lora = {
    .abi = SM_METHOD_ABI,
    .name = "meraser-erase-lora",
    .description = "MEraser erase adapter only (work in progress)",
    .output = SM_OUT_MODEL,
    .run = meraser_run,
};
