/* scale-noise: an out-of-tree removal method, as small as one can be.
 *
 * It adds seeded Gaussian noise to every weight matrix of the model, the
 * standard deviation a fraction `scale` of the matrix's own RMS, and
 * writes the result. Noise that large enough to move a memorised trigger
 * also moves everything else, which is the point of the baseline.
 *
 * A plugin fills one `const sm_method` named `smudge_method`; smudge checks
 * its ABI version, validates the parameters against the table before the
 * model is even loaded, and calls run(). Build and use (README.md):
 *
 *   cc -shared -fPIC -O2 -I$SMUDGE/methods -I$SMUDGE/lm -o noise.so noise.c -lm
 *   smudge remove --plugin ./noise.so --method scale-noise --param scale=0.05 \
 *                 --model MODEL --out DIR */
#include <math.h>
#include <stdint.h>
#include <time.h>

#include "method.h"

static const sm_param_def noise_params[] = {
    {"scale", SM_PARAM_FLOAT, "0.01", 0, 10, NULL,
     "noise std as a fraction of each tensor's RMS"},
    {"include_1d", SM_PARAM_BOOL, "false", 0, 0, NULL,
     "also perturb norms and biases (1-D tensors)"},
};

/* splitmix64 and Box-Muller: a plugin needs nothing of smudge's RNG. */
static uint64_t next_u64(uint64_t *s) {
    uint64_t z = (*s += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

static double gaussian(uint64_t *s) {
    double u1 = ((double)(next_u64(s) >> 11) + 0.5) / 9007199254740992.0;
    double u2 = (double)(next_u64(s) >> 11) / 9007199254740992.0;
    return sqrt(-2.0 * log(u1)) * cos(6.283185307179586 * u2);
}

static int noise_run(const sm_input *in, lm_err *err) {
    double scale = sm_param_float(in->params, "scale");
    int include_1d = sm_param_bool(in->params, "include_1d");
    lm_model *m = in->model;
    uint64_t state = in->seed;
    clock_t t0 = clock();
    for (int t = 0; t < m->n_params; t++) {
        lm_tensor *w = &m->params[t];
        if (w->ndim == 1 && !include_1d) continue;
        double ss = 0;
        for (size_t i = 0; i < w->numel; i++) ss += (double)w->data[i] * w->data[i];
        double sd = scale * sqrt(ss / (double)(w->numel ? w->numel : 1));
        for (size_t i = 0; i < w->numel; i++) w->data[i] += (float)(sd * gaussian(&state));
        in->rep->progress(in->rep->ctx, (t + 1.0) / m->n_params, w->name);
    }
    /* one pass over the weights: report it as cost like any method */
    in->rep->cost(in->rep->ctx, "noise", (double)(clock() - t0) / CLOCKS_PER_SEC, 0,
                  3.0 * (double)lm_model_param_count(m));
    return lm_model_save_hf(m, in->out_dir, err);
}

const sm_method smudge_method = {
    .abi = SM_METHOD_ABI,
    .name = "scale-noise",
    .description = "example plugin: seeded Gaussian noise on every weight matrix "
                   "(std = scale x the tensor's RMS)",
    .params = noise_params,
    .n_params = sizeof noise_params / sizeof noise_params[0],
    .output = SM_OUT_MODEL,
    .run = noise_run,
};
