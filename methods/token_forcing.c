/* token-forcing (spec removal-methods.md): placeholder until the implementation lands. */
#include "method.h"

static int token_forcing_run(const sm_input *in, lm_err *err) {
    (void)in;
    return lm_errf(err, "token-forcing: not implemented yet");
}

static int token_forcing_build(const char *dir, lm_model *m, lm_decode_policy *p, lm_err *err) {
    (void)dir; (void)m; (void)p;
    return lm_errf(err, "token-forcing: not implemented yet");
}

static void token_forcing_free(lm_decode_policy *p) { (void)p; }

const sm_method sm_method_token_forcing = {
    .abi = SM_METHOD_ABI,
    .name = "token-forcing",
    .description = "token-forcing decoding policy (work in progress)",
    .output = SM_OUT_POLICY,
    .run = token_forcing_run,
    .build_policy = token_forcing_build,
    .free_policy = token_forcing_free,
};
