/* fp16 and bf16 <-> fp32, bit exact.
 *
 * Checkpoints store weights in half precision; the model computes in fp32.
 * Widening is exact. Narrowing rounds to nearest, ties to even (what PyTorch
 * and numpy do), keeps infinities, turns NaN into a quiet NaN of the same
 * sign, and produces fp16 subnormals for values below 2^-14. */
#ifndef LM_HALF_H
#define LM_HALF_H

#include <stdint.h>
#include <string.h>

static inline float lm_bits_to_f32(uint32_t x) {
    float f;
    memcpy(&f, &x, sizeof f);
    return f;
}

static inline uint32_t lm_f32_to_bits(float f) {
    uint32_t x;
    memcpy(&x, &f, sizeof x);
    return x;
}

static inline float lm_f16_to_f32(uint16_t h) {
    uint32_t sign = (uint32_t)(h & 0x8000) << 16;
    uint32_t exp = (h >> 10) & 0x1f;
    uint32_t mant = h & 0x3ff;
    if (exp == 0) {
        /* zero or subnormal: mant * 2^-24, exact in fp32 */
        float f = (float)mant * 0x1p-24f;
        return lm_bits_to_f32(lm_f32_to_bits(f) | sign);
    }
    if (exp == 31) return lm_bits_to_f32(sign | 0x7f800000u | (mant << 13));
    /* rebias the exponent from 15 to 127 */
    return lm_bits_to_f32(sign | ((exp + 112) << 23) | (mant << 13));
}

static inline float lm_bf16_to_f32(uint16_t b) {
    return lm_bits_to_f32((uint32_t)b << 16);
}

static inline uint16_t lm_f32_to_f16(float f) {
    uint32_t x = lm_f32_to_bits(f);
    uint16_t sign = (uint16_t)((x >> 16) & 0x8000);
    uint32_t ax = x & 0x7fffffffu;
    if (ax > 0x7f800000u) /* NaN: keep the top payload bits, force quiet */
        return (uint16_t)(sign | 0x7e00 | ((ax >> 13) & 0x3ff));
    /* 65520 is halfway between 65504 (odd mantissa) and 65536: ties go up */
    if (ax >= 0x477ff000u) return (uint16_t)(sign | 0x7c00);
    if (ax >= 0x38800000u) { /* >= 2^-14: a normal fp16 */
        uint32_t h = (ax - 0x38000000u) >> 13; /* rebias 127 -> 15 */
        uint32_t rem = ax & 0x1fff;
        /* a carry out of the mantissa correctly bumps the exponent */
        if (rem > 0x1000 || (rem == 0x1000 && (h & 1))) h++;
        return (uint16_t)(sign | h);
    }
    /* 2^-25 is halfway between 0 and the smallest subnormal: ties to 0 */
    if (ax <= 0x33000000u) return sign;
    /* subnormal: m = value * 2^24 = mant * 2^(e - 126), shift in [14, 24] */
    uint32_t e = ax >> 23;
    uint32_t mant = (ax & 0x7fffff) | 0x800000;
    uint32_t shift = 126 - e;
    uint32_t m = mant >> shift;
    uint32_t rem = mant & ((1u << shift) - 1);
    uint32_t half = 1u << (shift - 1);
    if (rem > half || (rem == half && (m & 1))) m++; /* 1024 = smallest normal */
    return (uint16_t)(sign | m);
}

static inline uint16_t lm_f32_to_bf16(float f) {
    uint32_t x = lm_f32_to_bits(f);
    if ((x & 0x7fffffffu) > 0x7f800000u) /* NaN: truncation could give inf */
        return (uint16_t)((x >> 16) | 0x40);
    x += 0x7fffu + ((x >> 16) & 1);
    return (uint16_t)(x >> 16);
}

#endif
