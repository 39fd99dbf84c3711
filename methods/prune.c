/* Pruning (spec removal-methods.md section 3): placeholder until the
 * implementation lands. */
#include "method.h"

static int prune_run(const sm_input *in, lm_err *err) {
    (void)in;
    return lm_errf(err, "prune: not implemented yet");
}

const sm_method sm_method_prune = {
    .abi = SM_METHOD_ABI,
    .name = "prune",
    .description = "pruning (work in progress)",
    .output = SM_OUT_MODEL,
    .run = prune_run,
};
