/* Task Arithmetic and DARE merging (spec section 4): placeholder. */
#include "method.h"

static int merge_run(const sm_input *in, lm_err *err) {
    (void)in;
    return lm_errf(err, "merging: not implemented yet");
}

const sm_method sm_method_task_arithmetic = {
    .abi = SM_METHOD_ABI,
    .name = "task-arithmetic",
    .description = "Task Arithmetic merging (work in progress)",
    .output = SM_OUT_MODEL,
    .run = merge_run,
};

const sm_method sm_method_dare = {
    .abi = SM_METHOD_ABI,
    .name = "dare",
    .description = "DARE merging (work in progress)",
    .output = SM_OUT_MODEL,
    .run = merge_run,
};
