/* A small deterministic random number generator (xoshiro256** seeded by
 * splitmix64). Every random choice in smudge flows from an explicit seed
 * through one of these, so a run is reproducible bit for bit. */
#ifndef LM_RNG_H
#define LM_RNG_H

#include <stdint.h>

typedef struct lm_rng {
    uint64_t s[4];
    int has_spare;
    float spare;
} lm_rng;

void lm_rng_seed(lm_rng *r, uint64_t seed);
uint64_t lm_rng_u64(lm_rng *r);
/* Uniform in [0, 1). */
float lm_rng_uniform(lm_rng *r);
/* Uniform integer in [0, n); n > 0. */
uint64_t lm_rng_below(lm_rng *r, uint64_t n);
/* Standard normal (Box-Muller). */
float lm_rng_normal(lm_rng *r);

#endif
