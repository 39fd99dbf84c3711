/* Incremental fine-tuning (spec removal-methods.md section 2): placeholder
 * until the implementation lands. */
#include "method.h"

static int ift_run(const sm_input *in, lm_err *err) {
    (void)in;
    return lm_errf(err, "incremental-ft: not implemented yet");
}

const sm_method sm_method_incremental_ft = {
    .abi = SM_METHOD_ABI,
    .name = "incremental-ft",
    .description = "incremental fine-tuning (work in progress)",
    .output = SM_OUT_MODEL,
    .run = ift_run,
};
