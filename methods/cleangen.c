/* cleangen (spec removal-methods.md): placeholder until the implementation lands. */
#include "method.h"

static int cleangen_run(const sm_input *in, lm_err *err) {
    (void)in;
    return lm_errf(err, "cleangen: not implemented yet");
}

static int cleangen_build(const char *dir, lm_model *m, lm_decode_policy *p, lm_err *err) {
    (void)dir; (void)m; (void)p;
    return lm_errf(err, "cleangen: not implemented yet");
}

static void cleangen_free(lm_decode_policy *p) { (void)p; }

const sm_method sm_method_cleangen = {
    .abi = SM_METHOD_ABI,
    .name = "cleangen",
    .description = "cleangen decoding policy (work in progress)",
    .output = SM_OUT_POLICY,
    .run = cleangen_run,
    .build_policy = cleangen_build,
    .free_policy = cleangen_free,
};
