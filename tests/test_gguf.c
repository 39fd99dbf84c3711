/* The GGUF reader and loader: a real file (llama-2-tiny-random), hand-built
 * buffers with known F32/F16/Q8_0 values, the q/k RoPE row reorder, and
 * malformed buffers that must each fail cleanly. */
#include <stdint.h>
#include <string.h>

#include "check.h"
#include "gguf.h"
#include "half.h"
#include "loaders.h"

/* ---- a little GGUF writer ---- */

typedef struct buf {
    uint8_t *p;
    size_t len, cap;
} buf;

static void put(buf *b, const void *src, size_t n) {
    if (b->len + n > b->cap) {
        b->cap = (b->len + n) * 2 + 64;
        b->p = realloc(b->p, b->cap);
    }
    memcpy(b->p + b->len, src, n);
    b->len += n;
}
static void put_u32(buf *b, uint32_t v) { put(b, &v, 4); }
static void put_u64(buf *b, uint64_t v) { put(b, &v, 8); }
static void put_str(buf *b, const char *s) {
    put_u64(b, strlen(s));
    put(b, s, strlen(s));
}
static void kv_u32(buf *b, const char *k, uint32_t v) {
    put_str(b, k);
    put_u32(b, LM_GGUF_U32);
    put_u32(b, v);
}
static void kv_f32(buf *b, const char *k, float v) {
    put_str(b, k);
    put_u32(b, LM_GGUF_F32);
    put(b, &v, 4);
}
static void kv_str(buf *b, const char *k, const char *v) {
    put_str(b, k);
    put_u32(b, LM_GGUF_STRING);
    put_str(b, v);
}
static void header(buf *b, uint64_t n_tensors, uint64_t n_kv) {
    put(b, "GGUF", 4);
    put_u32(b, 3);
    put_u64(b, n_tensors);
    put_u64(b, n_kv);
}
static void tensor_info(buf *b, const char *name, uint32_t n_dims,
                        const uint64_t *ne, uint32_t type, uint64_t off) {
    put_str(b, name);
    put_u32(b, n_dims);
    for (uint32_t d = 0; d < n_dims; d++) put_u64(b, ne[d]);
    put_u32(b, type);
    put_u64(b, off);
}
static void pad_to(buf *b, size_t align) {
    uint8_t z = 0;
    while (b->len % align) put(b, &z, 1);
}

static int parses(const uint8_t *p, size_t n, lm_err *err) {
    lm_gguf g;
    int rc = lm_gguf_parse(&g, p, n, err);
    lm_gguf_close(&g);
    return rc == 0;
}

/* ---- a hand-built file with every value type and three tensor types ---- */

static const float f32_vals[6] = {1.5f, -2.0f, 0.0f, 3.25f, 1e-3f, -7.0f};
static const float f16_vals[4] = {1.0f, -2.0f, 0.5f, 65504.0f};

/* Q8_0 blocks: scale d then 32 int8. */
static void q8_block(buf *b, float d, int base) {
    uint16_t h = lm_f32_to_f16(d);
    put(b, &h, 2);
    for (int j = 0; j < 32; j++) {
        int8_t q = (int8_t)(base + j - 16);
        put(b, &q, 1);
    }
}

static size_t tensor_off_field; /* where tensor "c"'s offset is written */

static buf build_small(void) {
    buf b = {0};
    header(&b, 3, 7);
    kv_str(&b, "general.architecture", "test");
    kv_u32(&b, "some.u32", 4000000000u);
    kv_f32(&b, "some.f32", 0.25f);
    put_str(&b, "some.i8");
    put_u32(&b, LM_GGUF_I8);
    int8_t m5 = -5;
    put(&b, &m5, 1);
    put_str(&b, "some.strs"); /* array of 3 strings */
    put_u32(&b, LM_GGUF_ARRAY);
    put_u32(&b, LM_GGUF_STRING);
    put_u64(&b, 3);
    put_str(&b, "<s>");
    put_str(&b, "");
    put_str(&b, "hello");
    put_str(&b, "some.f32s");
    put_u32(&b, LM_GGUF_ARRAY);
    put_u32(&b, LM_GGUF_F32);
    put_u64(&b, 2);
    float fs[2] = {-1.0f, 2.5f};
    put(&b, fs, 8);
    put_str(&b, "some.i32s");
    put_u32(&b, LM_GGUF_ARRAY);
    put_u32(&b, LM_GGUF_I32);
    put_u64(&b, 2);
    int32_t is[2] = {-3, 7};
    put(&b, is, 8);

    uint64_t ne_a[2] = {3, 2}, ne_b[1] = {4}, ne_c[1] = {64};
    tensor_info(&b, "a", 2, ne_a, LM_GGML_F32, 0);
    tensor_info(&b, "b", 1, ne_b, LM_GGML_F16, 32);
    tensor_off_field = b.len + 8 + 1 + 4 + 8 + 4;
    tensor_info(&b, "c", 1, ne_c, LM_GGML_Q8_0, 64);
    pad_to(&b, 32);
    size_t data = b.len;
    put(&b, f32_vals, sizeof f32_vals);
    pad_to(&b, 32);
    for (int i = 0; i < 4; i++) {
        uint16_t h = lm_f32_to_f16(f16_vals[i]);
        put(&b, &h, 2);
    }
    pad_to(&b, 32);
    CHECK(b.len - data == 64, "data layout");
    q8_block(&b, 0.5f, 0);
    q8_block(&b, 2.0f, 10);
    return b;
}

static void test_small(void) {
    buf b = build_small();
    lm_gguf g;
    lm_err err = {{0}};
    int rc = lm_gguf_parse(&g, b.p, b.len, &err);
    CHECK(rc == 0, "parse: %s", err.msg);
    if (rc) return;
    CHECK(g.version == 3 && g.n_kv == 7 && g.n_tensors == 3, "counts");

    const char *s;
    size_t n;
    CHECK(lm_gguf_get_str(&g, "general.architecture", &s, &n, &err) == 0 &&
              n == 4 && memcmp(s, "test", 4) == 0,
          "architecture");
    uint32_t u;
    int32_t i32;
    float f;
    CHECK(lm_gguf_get_u32(&g, "some.u32", &u, &err) == 0 && u == 4000000000u,
          "u32");
    CHECK(lm_gguf_get_i32(&g, "some.u32", &i32, &err) != 0,
          "u32 4e9 does not fit i32");
    CHECK(lm_gguf_get_i32(&g, "some.i8", &i32, &err) == 0 && i32 == -5, "i8");
    CHECK(lm_gguf_get_u32(&g, "some.i8", &u, &err) != 0, "-5 is not a u32");
    CHECK(lm_gguf_get_f32(&g, "some.f32", &f, &err) == 0 && f == 0.25f, "f32");
    CHECK(lm_gguf_get_f32(&g, "some.i8", &f, &err) == 0 && f == -5.0f,
          "integer as f32");
    CHECK(lm_gguf_get_u32(&g, "general.architecture", &u, &err) != 0 &&
              strstr(err.msg, "general.architecture"),
          "string is not u32: %s", err.msg);
    CHECK(lm_gguf_get_u32(&g, "absent.key", &u, &err) != 0 &&
              strstr(err.msg, "absent.key"),
          "missing key named: %s", err.msg);

    lm_gguf_arr a;
    CHECK(lm_gguf_get_arr(&g, "some.strs", &a, &err) == 0 && a.n == 3 &&
              a.type == LM_GGUF_STRING,
          "string array");
    CHECK(lm_gguf_arr_str(&a, 2, &s, &n, &err) == 0 && n == 5 &&
              memcmp(s, "hello", 5) == 0,
          "strs[2]");
    CHECK(lm_gguf_arr_str(&a, 1, &s, &n, &err) == 0 && n == 0, "strs[1]");
    CHECK(lm_gguf_arr_str(&a, 0, &s, &n, &err) == 0 && n == 3 &&
              memcmp(s, "<s>", 3) == 0,
          "strs[0]");
    CHECK(lm_gguf_arr_str(&a, 3, &s, &n, &err) != 0, "strs[3] out of range");
    CHECK(lm_gguf_arr_f32(&a, 0, &f, &err) != 0, "strings are not floats");
    CHECK(lm_gguf_get_arr(&g, "some.f32s", &a, &err) == 0 &&
              lm_gguf_arr_f32(&a, 1, &f, &err) == 0 && f == 2.5f,
          "f32s[1]");
    CHECK(lm_gguf_get_arr(&g, "some.i32s", &a, &err) == 0 &&
              lm_gguf_arr_i32(&a, 0, &i32, &err) == 0 && i32 == -3,
          "i32s[0]");

    const lm_gguf_tensor *t = lm_gguf_find_tensor(&g, "a");
    float out[64];
    CHECK(t && t->n_dims == 2 && t->ne[0] == 3 && t->ne[1] == 2 &&
              t->n_elements == 6 && t->n_bytes == 24,
          "tensor a info");
    if (t && lm_gguf_dequantize(t, out, &err) == 0)
        for (int i = 0; i < 6; i++) CHECK_NEAR(out[i], f32_vals[i], 0, "a");
    t = lm_gguf_find_tensor(&g, "b");
    CHECK(t && t->type == LM_GGML_F16 && t->n_bytes == 8, "tensor b info");
    if (t && lm_gguf_dequantize(t, out, &err) == 0)
        for (int i = 0; i < 4; i++) CHECK_NEAR(out[i], f16_vals[i], 0, "b");
    t = lm_gguf_find_tensor(&g, "c");
    CHECK(t && t->type == LM_GGML_Q8_0 && t->n_bytes == 68, "tensor c info");
    if (t && lm_gguf_dequantize(t, out, &err) == 0)
        for (int i = 0; i < 64; i++) {
            float want = i < 32 ? 0.5f * (float)(i - 16)
                                : 2.0f * (float)(10 + (i - 32) - 16);
            CHECK_NEAR(out[i], want, 0, "q8_0");
        }
    CHECK(lm_gguf_find_tensor(&g, "d") == NULL, "no tensor d");
    lm_gguf_close(&g);

    /* Every proper prefix must fail (the last tensor ends the file), and
     * none may read past its end: copy each into an exact-size block. */
    int prefix_fail = 0;
    for (size_t len = 0; len < b.len; len++) {
        uint8_t *p = malloc(len ? len : 1);
        memcpy(p, b.p, len);
        prefix_fail += !parses(p, len, NULL);
        free(p);
    }
    CHECK(prefix_fail == (int)b.len, "all %zu prefixes rejected (%d were)",
          b.len, prefix_fail);
    free(b.p);
}

/* Each malformation, with the text the error must contain. */
static void expect_fail(buf *b, const char *what, const char *needle) {
    lm_err err = {{0}};
    int ok = parses(b->p, b->len, &err);
    CHECK(!ok && strstr(err.msg, needle), "%s: rc ok=%d, msg '%s'", what, ok,
          err.msg);
    free(b->p);
    b->p = NULL;
    b->len = b->cap = 0;
}

static void test_malformed(void) {
    buf b = {0};
    lm_err err;

    b = build_small();
    memcpy(b.p, "GGUG", 4);
    expect_fail(&b, "bad magic", "magic");

    b = build_small();
    b.p[4] = 1;
    expect_fail(&b, "version 1", "version");

    b = build_small();
    b.len = 170; /* inside the string array "some.strs" */
    expect_fail(&b, "truncated KV", "some.strs");

    b = build_small();
    uint64_t huge = (uint64_t)1 << 40;
    memcpy(b.p + 24, &huge, 8); /* first key's length */
    expect_fail(&b, "key length past end", "remain");

    b = build_small();
    memcpy(b.p + 24 + 8 + 20 + 4, &huge, 8); /* architecture value length */
    expect_fail(&b, "string value past end", "remain");

    b = build_small();
    memcpy(b.p + 16, &huge, 8); /* n_kv */
    expect_fail(&b, "absurd n_kv", "cannot fit");

    b = build_small();
    uint64_t all = UINT64_MAX;
    memcpy(b.p + 8, &all, 8); /* n_tensors */
    expect_fail(&b, "absurd n_tensors", "cannot fit");

    b = build_small();
    uint64_t past = 4096;
    memcpy(b.p + tensor_off_field, &past, 8);
    expect_fail(&b, "tensor offset past end", "past the end");

    b = build_small();
    uint64_t unaligned = 65;
    memcpy(b.p + tensor_off_field, &unaligned, 8);
    expect_fail(&b, "unaligned tensor offset", "alignment");

    /* Hand-made small headers for the rest. */
    header(&b, 0, 1);
    put_str(&b, "k");
    put_u32(&b, 13);
    put_u32(&b, 0);
    expect_fail(&b, "unknown value type", "unknown value type");

    header(&b, 0, 1);
    put_str(&b, "k");
    put_u32(&b, LM_GGUF_ARRAY);
    put_u32(&b, LM_GGUF_U64);
    put_u64(&b, (uint64_t)1 << 61);
    put_u64(&b, 0);
    expect_fail(&b, "array count past end", "remain");

    header(&b, 0, 1);
    put_str(&b, "k");
    put_u32(&b, LM_GGUF_ARRAY);
    put_u32(&b, LM_GGUF_STRING);
    put_u64(&b, 2);
    put_str(&b, "x");
    put_u64(&b, 100);
    put(&b, "abcdefgh", 8);
    expect_fail(&b, "string array element past end", "remain");

    header(&b, 0, 2);
    kv_u32(&b, "k", 1);
    kv_u32(&b, "k", 2);
    expect_fail(&b, "duplicate key", "duplicate");

    header(&b, 0, 1);
    kv_u32(&b, "general.alignment", 24);
    expect_fail(&b, "alignment not a power of two", "power of two");

    uint64_t ne5[5] = {1, 1, 1, 1, 1};
    header(&b, 1, 0);
    tensor_info(&b, "t", 5, ne5, LM_GGML_F32, 0);
    expect_fail(&b, "5 dims", "dims");

    uint64_t ne_big[2] = {(uint64_t)1 << 40, (uint64_t)1 << 40};
    header(&b, 1, 0);
    tensor_info(&b, "t", 2, ne_big, LM_GGML_F32, 0);
    expect_fail(&b, "dims overflow", "overflow");

    uint64_t ne_q[1] = {33};
    header(&b, 1, 0);
    tensor_info(&b, "t", 1, ne_q, LM_GGML_Q8_0, 0);
    pad_to(&b, 32);
    put(&b, f32_vals, sizeof f32_vals);
    put(&b, f32_vals, sizeof f32_vals);
    expect_fail(&b, "partial Q8_0 block", "block size");

    uint64_t ne1[1] = {1};
    header(&b, 1, 0);
    tensor_info(&b, "t", 1, ne1, 4, 0); /* a retired ggml type */
    expect_fail(&b, "unknown ggml type", "unknown ggml type");

    header(&b, 2, 0);
    tensor_info(&b, "t", 1, ne1, LM_GGML_F32, 0);
    tensor_info(&b, "t", 1, ne1, LM_GGML_F32, 0);
    pad_to(&b, 32);
    put(&b, f32_vals, 4);
    expect_fail(&b, "duplicate tensor", "duplicate");

    /* A recognised but unsupported type parses and refuses to dequantise. */
    uint64_t ne32[1] = {32};
    header(&b, 1, 0);
    tensor_info(&b, "t", 1, ne32, LM_GGML_Q4_0, 0);
    pad_to(&b, 32);
    put(&b, f32_vals, 18);
    lm_gguf g;
    CHECK(lm_gguf_parse(&g, b.p, b.len, &err) == 0, "Q4_0 parses: %s",
          err.msg);
    float out[32];
    CHECK(lm_gguf_dequantize(&g.tensors[0], out, &err) != 0 &&
              strstr(err.msg, "Q4_0"),
          "Q4_0 not dequantised: %s", err.msg);
    lm_gguf_close(&g);
    free(b.p);
    b.p = NULL;
    b.len = b.cap = 0;

    CHECK(!parses(NULL, 0, &err), "empty buffer");
}

/* ---- a whole tiny llama in GGUF, with known q/k rows ---- */

enum { C = 8, H = 2, KVH = 1, HD = 4, F = 16, V = 10 };

/* HF -> GGUF as llama.cpp's converter does it:
 * w.reshape(n_head, 2, hd/2, in).swapaxes(1, 2).reshape(out, in). */
static void hf_to_gguf(float *dst, const float *src, int n_head, int in) {
    for (int h = 0; h < n_head; h++)
        for (int i = 0; i < HD / 2; i++)
            for (int j = 0; j < 2; j++)
                memcpy(dst + (size_t)(h * HD + i * 2 + j) * in,
                       src + (size_t)(h * HD + j * (HD / 2) + i) * in,
                       (size_t)in * sizeof(float));
}

typedef struct tdesc {
    const char *name;
    int rows, cols; /* cols 0 for vectors */
    float *data;
} tdesc;

static float val(int t, int r, int c) {
    return (float)(t * 1000 + r * 10 + c);
}

static void write_file(const char *path, const buf *b) {
    FILE *f = fopen(path, "wb");
    fwrite(b->p, 1, b->len, f);
    fclose(f);
}

static buf build_llama(const char *arch, int tied, float *q_hf, float *k_hf) {
    static float q_g[H * HD * C], k_g[KVH * HD * C];
    static float other[12][V * C + F * C];
    tdesc ts[] = {
        {"token_embd.weight", V, C, other[0]},
        {"output_norm.weight", C, 0, other[1]},
        {"output.weight", V, C, other[2]},
        {"blk.0.attn_norm.weight", C, 0, other[3]},
        {"blk.0.attn_q.weight", H * HD, C, q_g},
        {"blk.0.attn_k.weight", KVH * HD, C, k_g},
        {"blk.0.attn_v.weight", KVH * HD, C, other[4]},
        {"blk.0.attn_output.weight", C, H * HD, other[5]},
        {"blk.0.ffn_norm.weight", C, 0, other[6]},
        {"blk.0.ffn_gate.weight", F, C, other[7]},
        {"blk.0.ffn_up.weight", F, C, other[8]},
        {"blk.0.ffn_down.weight", C, F, other[9]},
    };
    int nt = (int)(sizeof ts / sizeof ts[0]);
    for (int r = 0; r < H * HD; r++)
        for (int c = 0; c < C; c++) q_hf[r * C + c] = val(100, r, c);
    for (int r = 0; r < KVH * HD; r++)
        for (int c = 0; c < C; c++) k_hf[r * C + c] = val(200, r, c);
    hf_to_gguf(q_g, q_hf, H, C);
    hf_to_gguf(k_g, k_hf, KVH, C);
    for (int t = 0; t < nt; t++)
        if (ts[t].data != q_g && ts[t].data != k_g) {
            int cols = ts[t].cols ? ts[t].cols : 1;
            for (int r = 0; r < ts[t].rows; r++)
                for (int c = 0; c < cols; c++)
                    ts[t].data[r * cols + c] = val(t, r, c);
        }

    buf b = {0};
    header(&b, (uint64_t)(tied ? nt - 1 : nt), 9);
    kv_str(&b, "general.architecture", arch);
    char key[64];
#define KEY(s) (snprintf(key, sizeof key, "%s.%s", arch, s), key)
    kv_u32(&b, KEY("embedding_length"), C);
    kv_u32(&b, KEY("block_count"), 1);
    kv_u32(&b, KEY("feed_forward_length"), F);
    kv_u32(&b, KEY("attention.head_count"), H);
    kv_u32(&b, KEY("attention.head_count_kv"), KVH);
    kv_f32(&b, KEY("attention.layer_norm_rms_epsilon"), 1e-6f);
    kv_f32(&b, KEY("rope.freq_base"), 500000.0f);
    kv_u32(&b, "tokenizer.ggml.eos_token_id", 2);
    uint64_t off = 0;
    for (int t = 0; t < nt; t++) {
        if (tied && t == 2) continue;
        uint64_t ne[2] = {(uint64_t)(ts[t].cols ? ts[t].cols : ts[t].rows),
                          (uint64_t)ts[t].rows};
        tensor_info(&b, ts[t].name, ts[t].cols ? 2 : 1, ne, LM_GGML_F32, off);
        off += ((uint64_t)ts[t].rows * (ts[t].cols ? ts[t].cols : 1) * 4 + 31) /
               32 * 32;
    }
    pad_to(&b, 32);
    for (int t = 0; t < nt; t++) {
        if (tied && t == 2) continue;
        put(&b, ts[t].data,
            (size_t)ts[t].rows * (ts[t].cols ? ts[t].cols : 1) * 4);
        pad_to(&b, 32);
    }
    return b;
}

static void test_llama_roundtrip(void) {
    float q_hf[H * HD * C], k_hf[KVH * HD * C];
    const char *path = "/tmp/smudge_test_gguf_tiny.gguf";
    lm_err err = {{0}};
    for (int tied = 0; tied < 2; tied++) {
        buf b = build_llama("llama", tied, q_hf, k_hf);
        write_file(path, &b);
        free(b.p);
        lm_model m;
        int rc = lm_model_load_gguf(&m, path, &err);
        CHECK(rc == 0, "load tiny llama: %s", err.msg);
        if (rc) continue;
        const lm_config *c = &m.cfg;
        CHECK(c->vocab_size == V && c->d_model == C && c->n_layers == 1 &&
                  c->n_heads == H && c->n_kv_heads == KVH &&
                  c->head_dim == HD && c->ffn_dim == F,
              "config shapes");
        CHECK(c->tie_embeddings == tied, "tied %d", tied);
        CHECK_NEAR(c->norm_eps, 1e-6, 1e-12, "eps");
        CHECK_NEAR(c->rope_theta, 500000.0, 0, "theta");
        CHECK(c->eos_id == 2 && c->bos_id == -1, "token ids");
        lm_tensor *q = lm_model_find(&m, "model.layers.0.self_attn.q_proj.weight");
        lm_tensor *k = lm_model_find(&m, "model.layers.0.self_attn.k_proj.weight");
        int qbad = 0, kbad = 0;
        for (int i = 0; i < H * HD * C; i++) qbad += q->data[i] != q_hf[i];
        for (int i = 0; i < KVH * HD * C; i++) kbad += k->data[i] != k_hf[i];
        CHECK(qbad == 0, "q rows back in HF order (%d differ)", qbad);
        CHECK(kbad == 0, "k rows back in HF order (%d differ)", kbad);
        lm_tensor *down = lm_model_find(&m, "model.layers.0.mlp.down_proj.weight");
        CHECK(down->shape[0] == C && down->shape[1] == F &&
                  down->data[3 * F + 5] == val(11, 3, 5),
              "down_proj [out, in] = GGUF [in, out] dims");
        CHECK(m.lm_head->data[7 * C + 1] == val(tied ? 0 : 2, 7, 1),
              "lm_head");
        lm_model_free(&m);
    }

    buf b = build_llama("gpt2", 0, q_hf, k_hf);
    write_file(path, &b);
    free(b.p);
    lm_model m;
    CHECK(lm_model_load_gguf(&m, path, &err) != 0 && strstr(err.msg, "gpt2"),
          "unsupported architecture named: %s", err.msg);

    /* Drop a tensor by renaming it: the loader names the missing one and
     * the stray one would be refused too. */
    b = build_llama("llama", 0, q_hf, k_hf);
    uint8_t *at = memmem(b.p, b.len, "blk.0.ffn_up.weight", 19);
    if (at) memcpy(at, "blk.0.ffn_xx", 12);
    write_file(path, &b);
    free(b.p);
    CHECK(lm_model_load_gguf(&m, path, &err) != 0 &&
              strstr(err.msg, "blk.0.ffn_up.weight"),
          "missing tensor named: %s", err.msg);
    remove(path);
}

/* ---- the real file ---- */

static void test_real(const char *assets) {
    char path[4096];
    snprintf(path, sizeof path,
             "%s/models/llama-2-tiny-random-gguf/llama-2-tiny-random.gguf",
             assets);
    lm_gguf g;
    lm_err err = {{0}};
    if (lm_gguf_open(&g, path, &err) != 0) {
        CHECK(0, "open: %s", err.msg);
        return;
    }
    const char *s;
    size_t n;
    CHECK(lm_gguf_get_str(&g, "general.architecture", &s, &n, &err) == 0 &&
              n == 5 && memcmp(s, "llama", 5) == 0,
          "architecture llama");
    printf("real gguf: v%u, %llu tensors, %llu kv, data at %llu\n", g.version,
           (unsigned long long)g.n_tensors, (unsigned long long)g.n_kv,
           (unsigned long long)g.data_offset);
    CHECK(g.version == 3 && g.n_tensors == 12 && g.n_kv == 18, "counts");
    lm_gguf_arr a;
    CHECK(lm_gguf_get_arr(&g, "tokenizer.ggml.tokens", &a, &err) == 0 &&
              a.n == 32000,
          "32000 tokens");
    CHECK(lm_gguf_arr_str(&a, 1, &s, &n, &err) == 0 && n == 3 &&
              memcmp(s, "<s>", 3) == 0,
          "token 1 is <s>");
    CHECK(lm_gguf_arr_str(&a, 31999, &s, &n, &err) == 0 && n > 0,
          "last token readable");
    float sc;
    CHECK(lm_gguf_get_arr(&g, "tokenizer.ggml.scores", &a, &err) == 0 &&
              a.n == 32000 && lm_gguf_arr_f32(&a, 0, &sc, &err) == 0,
          "scores");
    int32_t tt = -1;
    CHECK(lm_gguf_get_arr(&g, "tokenizer.ggml.token_type", &a, &err) == 0 &&
              lm_gguf_arr_i32(&a, 1, &tt, &err) == 0 && tt == 3,
          "token 1 is a control token (type %d)", tt);
    const lm_gguf_tensor *emb = lm_gguf_find_tensor(&g, "token_embd.weight");
    CHECK(emb && emb->type == LM_GGML_F16 && emb->ne[0] == 8 &&
              emb->ne[1] == 32000,
          "token_embd F16 [8, 32000]");
    float *embf = emb ? malloc(emb->n_elements * sizeof(float)) : NULL;
    if (embf) CHECK(lm_gguf_dequantize(emb, embf, &err) == 0, "dequantise");

    lm_model m;
    int rc = lm_model_load_gguf(&m, path, &err);
    CHECK(rc == 0, "load model: %s", err.msg);
    if (rc == 0) {
        const lm_config *c = &m.cfg;
        CHECK(c->arch == LM_ARCH_LLAMA && c->vocab_size == 32000 &&
                  c->d_model == 8 && c->n_layers == 1 && c->n_heads == 2 &&
                  c->n_kv_heads == 2 && c->head_dim == 4 && c->ffn_dim == 32 &&
                  c->max_pos == 4096 && !c->tie_embeddings,
              "config");
        CHECK(c->bos_id == 1 && c->eos_id == 2, "bos/eos");
        CHECK(m.wte->shape[0] == 32000 && m.wte->shape[1] == 8, "wte shape");
        if (embf)
            CHECK(memcmp(m.wte->data, embf, 32000 * 8 * sizeof(float)) == 0,
                  "embedding values");
        lm_tensor *gate = lm_model_find(&m, "model.layers.0.mlp.gate_proj.weight");
        CHECK(gate && gate->shape[0] == 32 && gate->shape[1] == 8, "gate shape");
        lm_model_free(&m);
    }
    free(embf);
    lm_gguf_close(&g);
}

/* The fuzz seeds must be what their names say, or the fuzzer starts from
 * nothing but error paths. */
static void test_seeds(const char *corpus) {
    static const char *const good_models[] = {
        "llama_f32.gguf", "llama_f16_tied.gguf", "llama_bf16_gqa.gguf"};
    static const char *const bad[] = {"truncated.gguf", "bad_offset.gguf"};
    char path[4096];
    lm_err err = {{0}};
    lm_model m;
    lm_gguf g;
    for (int i = 0; i < 3; i++) {
        snprintf(path, sizeof path, "%s/gguf/%s", corpus, good_models[i]);
        int rc = lm_model_load_gguf(&m, path, &err);
        CHECK(rc == 0, "seed %s loads: %s", good_models[i], err.msg);
        if (rc == 0) lm_model_free(&m);
    }
    snprintf(path, sizeof path, "%s/gguf/all_types.gguf", corpus);
    CHECK(lm_gguf_open(&g, path, &err) == 0 && g.alignment == 64 &&
              g.n_tensors == 4,
          "seed all_types parses: %s", err.msg);
    lm_gguf_close(&g);
    for (int i = 0; i < 2; i++) {
        snprintf(path, sizeof path, "%s/gguf/%s", corpus, bad[i]);
        CHECK(lm_gguf_open(&g, path, &err) != 0, "seed %s is refused", bad[i]);
    }
}

int main(void) {
    test_small();
    test_malformed();
    test_llama_roundtrip();
    const char *corpus = getenv("SMUDGE_FUZZ_CORPUS");
    if (corpus && *corpus) test_seeds(corpus);
    const char *assets = check_assets();
    if (assets) test_real(assets);
    else printf("SMUDGE_ASSETS unset: real-file checks skipped\n");
    return check_done();
}
