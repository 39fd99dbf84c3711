/* "none": no removal at all. The grid's control row: what every metric
 * reads on the fingerprinted model itself, measured through the same path
 * as any other method. */
#include "method.h"

static int none_run(const sm_input *in, lm_err *err) {
    in->rep->progress(in->rep->ctx, 0.0, "saving the model unchanged");
    if (lm_model_save_hf(in->model, in->out_dir, err)) return -1;
    in->rep->progress(in->rep->ctx, 1.0, "done");
    return 0;
}

const sm_method sm_method_none = {
    .abi = SM_METHOD_ABI,
    .name = "none",
    .description = "no removal: the fingerprinted model as it is (control)",
    .output = SM_OUT_MODEL,
    .run = none_run,
};
