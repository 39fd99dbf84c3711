/* safetensors: fp16/bf16 conversions on edge values, write -> read round
 * trips in F32/F16/BF16 (with a transposed tensor and metadata), and a table
 * of malformed files that must each fail with a message saying why. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "check.h"
#include "half.h"
#include "safetensors.h"

static uint32_t bits(float f) { return lm_f32_to_bits(f); }

static void test_half(void) {
    /* widening: exact values */
    CHECK(lm_f16_to_f32(0x3c00) == 1.0f, "f16 1.0");
    CHECK(lm_f16_to_f32(0xc000) == -2.0f, "f16 -2.0");
    CHECK(lm_f16_to_f32(0x7bff) == 65504.0f, "f16 max");
    CHECK(lm_f16_to_f32(0x0001) == 0x1p-24f, "f16 smallest subnormal");
    CHECK(lm_f16_to_f32(0x03ff) == 1023 * 0x1p-24f, "f16 largest subnormal");
    CHECK(lm_f16_to_f32(0x0400) == 0x1p-14f, "f16 smallest normal");
    CHECK(bits(lm_f16_to_f32(0x8000)) == 0x80000000u, "f16 -0");
    CHECK(bits(lm_f16_to_f32(0x7c00)) == 0x7f800000u, "f16 inf");
    CHECK(bits(lm_f16_to_f32(0xfc00)) == 0xff800000u, "f16 -inf");
    CHECK(isnan(lm_f16_to_f32(0x7e00)), "f16 nan");
    CHECK(lm_bf16_to_f32(0x3f80) == 1.0f, "bf16 1.0");
    CHECK(bits(lm_bf16_to_f32(0xff80)) == 0xff800000u, "bf16 -inf");

    /* narrowing to fp16: rounding, overflow, subnormals, specials */
    CHECK(lm_f32_to_f16(1.0f) == 0x3c00, "1.0");
    CHECK(lm_f32_to_f16(65504.0f) == 0x7bff, "max");
    CHECK(lm_f32_to_f16(65519.0f) == 0x7bff, "below the tie stays finite");
    CHECK(lm_f32_to_f16(65520.0f) == 0x7c00, "tie at 65520 rounds to inf");
    CHECK(lm_f32_to_f16(1e10f) == 0x7c00, "overflow to inf");
    CHECK(lm_f32_to_f16(-1e10f) == 0xfc00, "overflow to -inf");
    CHECK(lm_f32_to_f16(1.0f + 0x1p-11f) == 0x3c00, "tie to even (down)");
    CHECK(lm_f32_to_f16(1.0f + 3 * 0x1p-11f) == 0x3c02, "tie to even (up)");
    CHECK(lm_f32_to_f16(1.0f + 0x1p-11f + 0x1p-20f) == 0x3c01, "above tie");
    CHECK(lm_f32_to_f16(0x1p-24f) == 0x0001, "smallest subnormal");
    CHECK(lm_f32_to_f16(0x1p-25f) == 0x0000, "half of it ties to 0");
    CHECK(lm_f32_to_f16(0x1.000002p-25f) == 0x0001, "just above rounds up");
    CHECK(lm_f32_to_f16(3 * 0x1p-25f) == 0x0002, "1.5 ulp ties to 2");
    CHECK(lm_f32_to_f16(1023.5f * 0x1p-24f) == 0x0400,
          "largest subnormal rounds into the smallest normal");
    CHECK(lm_f32_to_f16(0x1p-14f) == 0x0400, "smallest normal");
    CHECK(lm_f32_to_f16(1e-30f) == 0x0000, "underflow to 0");
    CHECK(lm_f32_to_f16(-1e-30f) == 0x8000, "underflow to -0");
    CHECK(lm_f32_to_f16(-0.0f) == 0x8000, "-0");
    CHECK(lm_f32_to_f16(INFINITY) == 0x7c00, "inf");
    uint16_t hn = lm_f32_to_f16(NAN);
    CHECK((hn & 0x7c00) == 0x7c00 && (hn & 0x3ff), "nan stays nan: %04x", hn);
    /* a NaN whose payload lives only in the low bits must not become inf */
    hn = lm_f32_to_f16(lm_bits_to_f32(0x7f800001u));
    CHECK((hn & 0x7c00) == 0x7c00 && (hn & 0x3ff), "low-payload nan: %04x", hn);

    /* every fp16 survives the round trip */
    int bad = 0;
    for (uint32_t h = 0; h < 0x10000; h++) {
        float f = lm_f16_to_f32((uint16_t)h);
        if (!isnan(f) && lm_f32_to_f16(f) != h) bad++;
    }
    CHECK(bad == 0, "%d fp16 values do not round-trip", bad);

    /* narrowing to bf16 */
    CHECK(lm_f32_to_bf16(1.0f) == 0x3f80, "bf16 1.0");
    CHECK(lm_f32_to_bf16(lm_bits_to_f32(0x3f808000u)) == 0x3f80,
          "bf16 tie to even (down)");
    CHECK(lm_f32_to_bf16(lm_bits_to_f32(0x3f818000u)) == 0x3f82,
          "bf16 tie to even (up)");
    CHECK(lm_f32_to_bf16(lm_bits_to_f32(0x3f808001u)) == 0x3f81,
          "bf16 above tie");
    CHECK(lm_f32_to_bf16(lm_bits_to_f32(0x7f7fffffu)) == 0x7f80,
          "bf16 max float rounds to inf");
    CHECK(lm_f32_to_bf16(-INFINITY) == 0xff80, "bf16 -inf");
    uint16_t bn = lm_f32_to_bf16(lm_bits_to_f32(0x7f800001u));
    CHECK((bn & 0x7f80) == 0x7f80 && (bn & 0x7f), "bf16 nan stays nan: %04x",
          bn);
    CHECK(lm_f32_to_bf16(lm_bits_to_f32(0x00000001u)) == 0x0000,
          "bf16 tiny subnormal to 0");
    CHECK(lm_f32_to_bf16(lm_bits_to_f32(0x00018000u)) == 0x0002,
          "bf16 subnormal tie to even");
}

static char tmpdir[64];

static void test_round_trip(void) {
    enum { R = 3, C = 5 };
    float a[R * C], b[7], c[R * C], d[4];
    for (int i = 0; i < R * C; i++) a[i] = (float)i * 0.37f - 2.0f;
    for (int i = 0; i < 7; i++) b[i] = (i - 3) * 1.0e-3f + 0.1f;
    for (int i = 0; i < R * C; i++) c[i] = (float)(i * i) * 0.011f;
    d[0] = 0x1p-20f, d[1] = -65504.0f, d[2] = 1e-8f, d[3] = 3.3f;
    /* c is [R, C] in memory and stored transposed as [C, R] */
    lm_st_out out[] = {
        {"a.weight", LM_ST_F32, 2, {R, C}, a, 0},
        {"b.bias", LM_ST_F16, 1, {7, 0}, b, 0},
        {"c.weight", LM_ST_F32, 2, {C, R}, c, 1},
        {"d", LM_ST_BF16, 1, {4, 0}, d, 0},
        {"empty", LM_ST_F32, 2, {0, 4}, NULL, 0},
    };
    const char *meta[] = {"format", "pt", "note", "round \"trip\"", NULL};
    char path[128];
    snprintf(path, sizeof path, "%s/rt.safetensors", tmpdir);
    lm_err err = {{0}};
    int r = lm_st_write(path, out, 5, meta, &err);
    CHECK(r == 0, "write: %s", err.msg);

    lm_st_file f;
    r = lm_st_open(&f, path, &err);
    CHECK(r == 0, "open: %s", err.msg);
    if (r) return;
    /* the header is space-padded so the data starts 8-aligned */
    CHECK((f.tensors[0].offset % 8) == 0, "data start %zu not 8-aligned",
          f.tensors[0].offset);
    CHECK(f.n_tensors == 5, "%d tensors", f.n_tensors);
    CHECK(strcmp(f.tensors[0].name, "a.weight") == 0 &&
              strcmp(f.tensors[4].name, "empty") == 0,
          "insertion order kept");
    const char *fmt = lm_st_meta_get(&f, "format");
    const char *note = lm_st_meta_get(&f, "note");
    CHECK(fmt && strcmp(fmt, "pt") == 0, "metadata format");
    CHECK(note && strcmp(note, "round \"trip\"") == 0, "metadata note");
    CHECK(lm_st_meta_get(&f, "nope") == NULL, "absent metadata");
    CHECK(lm_st_find(&f, "nope") == NULL, "absent tensor");

    float got[R * C];
    const lm_st_tensor *t = lm_st_find(&f, "a.weight");
    CHECK(t && t->dtype == LM_ST_F32 && t->ndim == 2 && t->shape[0] == R &&
              t->shape[1] == C,
          "a.weight header");
    if (t && lm_st_to_f32(t, got, &err) == 0)
        CHECK(memcmp(got, a, sizeof a) == 0, "a.weight bits");

    t = lm_st_find(&f, "b.bias");
    CHECK(t && t->dtype == LM_ST_F16 && t->nbytes == 14, "b.bias header");
    if (t && lm_st_to_f32(t, got, &err) == 0)
        for (int i = 0; i < 7; i++)
            CHECK(got[i] == lm_f16_to_f32(lm_f32_to_f16(b[i])), "b[%d]", i);

    t = lm_st_find(&f, "c.weight");
    CHECK(t && t->shape[0] == C && t->shape[1] == R, "c.weight stored [C, R]");
    if (t && lm_st_to_f32(t, got, &err) == 0)
        for (int i = 0; i < R; i++)
            for (int j = 0; j < C; j++)
                CHECK(got[j * R + i] == c[i * C + j], "c[%d,%d] transposed", i,
                      j);

    t = lm_st_find(&f, "d");
    CHECK(t && t->dtype == LM_ST_BF16, "d header");
    if (t && lm_st_to_f32(t, got, &err) == 0)
        for (int i = 0; i < 4; i++)
            CHECK(got[i] == lm_bf16_to_f32(lm_f32_to_bf16(d[i])), "d[%d]", i);

    t = lm_st_find(&f, "empty");
    CHECK(t && t->numel == 0 && t->nbytes == 0, "empty tensor");
    lm_st_close(&f);

    /* no .tmp left behind */
    char tmp[160];
    snprintf(tmp, sizeof tmp, "%s.tmp", path);
    CHECK(access(tmp, F_OK) != 0, "%s left behind", tmp);
    unlink(path);

    /* the writer refuses what it cannot write */
    lm_st_out dup[] = {{"x", LM_ST_F32, 1, {1, 0}, a, 0},
                       {"x", LM_ST_F32, 1, {1, 0}, a, 0}};
    CHECK(lm_st_write(path, dup, 2, NULL, &err) < 0 &&
              strstr(err.msg, "twice"),
          "duplicate name: %s", err.msg);
    lm_st_out i8[] = {{"x", LM_ST_I8, 1, {1, 0}, a, 0}};
    CHECK(lm_st_write(path, i8, 1, NULL, &err) < 0 && strstr(err.msg, "I8"),
          "I8 write: %s", err.msg);
}

/* A file in memory: 8-byte length, header, data_len zero bytes. */
static uint8_t *make_file(const char *header, size_t data_len, size_t *len) {
    size_t n = strlen(header);
    *len = 8 + n + data_len;
    uint8_t *b = calloc(*len, 1);
    for (int i = 0; i < 8; i++) b[i] = (uint8_t)((uint64_t)n >> (8 * i));
    memcpy(b + 8, header, n);
    return b;
}

static void expect_parse_error(const char *what, const char *header,
                               size_t data_len, const char *w1,
                               const char *w2) {
    size_t len;
    uint8_t *b = make_file(header, data_len, &len);
    lm_st_file f;
    lm_err err = {{0}};
    int r = lm_st_parse(&f, b, len, "bad.safetensors", &err);
    CHECK(r < 0, "%s: parsed", what);
    if (r == 0) lm_st_close(&f);
    CHECK(strstr(err.msg, "bad.safetensors") != NULL, "%s: no file in '%s'",
          what, err.msg);
    CHECK(strstr(err.msg, w1) != NULL && (!w2 || strstr(err.msg, w2)),
          "%s: message '%s' lacks '%s'%s%s", what, err.msg, w1,
          w2 ? " / " : "", w2 ? w2 : "");
    free(b);
}

static void test_malformed(void) {
    lm_st_file f;
    lm_err err = {{0}};
    uint8_t five[5] = {1, 0, 0, 0, 0};
    CHECK(lm_st_parse(&f, five, 5, "bad.safetensors", &err) < 0 &&
              strstr(err.msg, "truncated"),
          "truncated length: %s", err.msg);

    uint8_t big[20] = {0xe8, 0x03}; /* header length 1000, 12 bytes follow */
    CHECK(lm_st_parse(&f, big, 20, "bad.safetensors", &err) < 0 &&
              strstr(err.msg, "header length 1000") &&
              strstr(err.msg, "past the end"),
          "header length > file: %s", err.msg);

    uint8_t huge[16] = {0, 0, 0, 0, 0, 0, 0, 0x80};
    CHECK(lm_st_parse(&f, huge, 16, "bad.safetensors", &err) < 0 &&
              strstr(err.msg, "header length"),
          "2^63 header length: %s", err.msg);

    expect_parse_error("bad JSON", "{\"a\": {\"dtype\": ", 0, "JSON", NULL);
    expect_parse_error("not an object", "[1, 2]", 0, "not an object", NULL);
    expect_parse_error("junk after JSON", "{}  x", 0, "junk", NULL);
    expect_parse_error(
        "offsets past the end",
        "{\"w\":{\"dtype\":\"F32\",\"shape\":[4],\"data_offsets\":[0,16]}}", 8,
        "\"w\"", "past the end");
    expect_parse_error(
        "end < begin",
        "{\"w\":{\"dtype\":\"F32\",\"shape\":[0],\"data_offsets\":[8,0]}}", 8,
        "\"w\"", "< begin");
    expect_parse_error(
        "size mismatch",
        "{\"w\":{\"dtype\":\"F32\",\"shape\":[3],\"data_offsets\":[0,8]}}", 16,
        "size mismatch", "\"w\"");
    expect_parse_error("shape overflow",
                       "{\"w\":{\"dtype\":\"F32\",\"shape\":[4294967296,"
                       "4294967296,4294967296],\"data_offsets\":[0,8]}}",
                       8, "overflow", "\"w\"");
    expect_parse_error("byte size overflow",
                       "{\"w\":{\"dtype\":\"F64\",\"shape\":[4294967296,"
                       "4294967296],\"data_offsets\":[0,8]}}",
                       8, "overflow", NULL);
    expect_parse_error(
        "unknown dtype",
        "{\"w\":{\"dtype\":\"Q4_K\",\"shape\":[1],\"data_offsets\":[0,1]}}", 8,
        "unknown dtype", "Q4_K");
    expect_parse_error(
        "negative dim",
        "{\"w\":{\"dtype\":\"F32\",\"shape\":[-1],\"data_offsets\":[0,0]}}", 8,
        "shape[0]", NULL);
    expect_parse_error(
        "fractional offset",
        "{\"w\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0.5,4]}}", 8,
        "data_offsets", NULL);
    expect_parse_error("three offsets",
                       "{\"w\":{\"dtype\":\"F32\",\"shape\":[1],"
                       "\"data_offsets\":[0,4,8]}}",
                       8, "data_offsets", NULL);
    expect_parse_error("missing dtype",
                       "{\"w\":{\"shape\":[1],\"data_offsets\":[0,4]}}", 8,
                       "dtype", NULL);
    expect_parse_error("missing shape",
                       "{\"w\":{\"dtype\":\"F32\",\"data_offsets\":[0,4]}}", 8,
                       "shape", NULL);
    expect_parse_error("too many dims",
                       "{\"w\":{\"dtype\":\"F32\",\"shape\":[1,1,1,1,1,1,1,1,1],"
                       "\"data_offsets\":[0,4]}}",
                       8, "dimensions", NULL);
    expect_parse_error("entry not an object", "{\"w\": 3}", 8, "\"w\"",
                       "not an object");
    expect_parse_error(
        "duplicate name",
        "{\"w\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]},"
        "\"w\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[4,8]}}",
        8, "twice", NULL);
    expect_parse_error("metadata value not a string",
                       "{\"__metadata__\":{\"a\":1}}", 0, "__metadata__", NULL);

    /* recognised dtypes parse, but cannot be widened to weights */
    size_t len;
    uint8_t *b = make_file(
        "{\"__metadata__\":{\"format\":\"pt\"},"
        "\"i\":{\"dtype\":\"I64\",\"shape\":[1],\"data_offsets\":[0,8]},"
        "\"z\":{\"dtype\":\"F8_E4M3\",\"shape\":[2],\"data_offsets\":[8,10]}}  ",
        10, &len);
    int r = lm_st_parse(&f, b, len, "ok.safetensors", &err);
    CHECK(r == 0, "I64/F8 file: %s", err.msg);
    if (r == 0) {
        float out[2];
        CHECK(f.n_tensors == 2 && f.n_meta == 1, "counts");
        const lm_st_tensor *t = lm_st_find(&f, "i");
        CHECK(t && lm_st_to_f32(t, out, &err) < 0 &&
                  strstr(err.msg, "I64") && strstr(err.msg, "unsupported"),
              "I64 to f32: %s", err.msg);
        t = lm_st_find(&f, "z");
        CHECK(t && t->nbytes == 2 && lm_st_to_f32(t, out, &err) < 0 &&
                  strstr(err.msg, "F8_E4M3"),
              "F8 to f32: %s", err.msg);
        lm_st_close(&f);
    }
    free(b);

    CHECK(lm_st_open(&f, "/nonexistent/x.safetensors", &err) < 0 &&
              strstr(err.msg, "/nonexistent/x.safetensors"),
          "open missing: %s", err.msg);
}

int main(void) {
    snprintf(tmpdir, sizeof tmpdir, "/tmp/smudge_st_XXXXXX");
    if (!mkdtemp(tmpdir)) {
        perror("mkdtemp");
        return 1;
    }
    test_half();
    test_round_trip();
    test_malformed();
    rmdir(tmpdir);
    return check_done();
}
