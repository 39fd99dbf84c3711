/* The llama2.c checkpoint loader: a synthetic file whose every float is
 * known (untied classifier, GQA, the q/k row reorder), malformed headers,
 * and the real stories260K.bin with a truncated copy. */
#include <stdint.h>
#include <string.h>

#include "backend.h"
#include "check.h"
#include "llama2c.h"
#include "loaders.h"
#include "model.h"

/* Meta -> HF row order of one q/k matrix, as HF's convert script does it:
 * w.view(n_heads, D/2, 2, cols).transpose(1, 2): hf[h][j][i] = meta[h][i][j]. */
static int meta_row(int hf_row, int head_dim) {
    int h = hf_row / head_dim, r = hf_row % head_dim, half = head_dim / 2;
    int j = r / half, i = r % half;
    return h * head_dim + 2 * i + j;
}

enum { C = 8, F = 12, L = 2, H = 2, KVH = 1, V = 5, T = 3, D = C / H };

/* Sizes of the arrays in file order (per layer where stacked). */
static const struct {
    const char *what;
    int stacked, rows, cols;
} layout[] = {
    {"token_embedding", 0, V, C}, {"rms_att", 1, C, 1},
    {"wq", 1, C, C},              {"wk", 1, KVH * D, C},
    {"wv", 1, KVH * D, C},        {"wo", 1, C, C},
    {"rms_ffn", 1, C, 1},         {"w1", 1, F, C},
    {"w2", 1, C, F},              {"w3", 1, F, C},
    {"rms_final", 0, C, 1},       {"freq_cis_real", 0, T, D / 2},
    {"freq_cis_imag", 0, T, D / 2}, {"wcls", 0, V, C},
};
#define N_ARRAYS (int)(sizeof layout / sizeof layout[0])

/* Start (in floats) of array a, layer l, within the weights. */
static size_t start_of(int a, int l) {
    size_t at = 0;
    for (int i = 0; i < a; i++)
        at += (size_t)(layout[i].stacked ? L : 1) * layout[i].rows *
              layout[i].cols;
    return at + (size_t)l * layout[a].rows * layout[a].cols;
}

static uint8_t *build(size_t *len, int untied) {
    size_t floats = start_of(N_ARRAYS - 1, 0) + (untied ? (size_t)V * C : 0);
    *len = 28 + 4 * floats;
    uint8_t *p = malloc(*len);
    int32_t hdr[7] = {C, F, L, H, KVH, untied ? -V : V, T};
    memcpy(p, hdr, 28);
    float *w = (float *)(p + 28);
    for (size_t i = 0; i < floats; i++) w[i] = (float)i;
    return p;
}

static void test_synthetic(void) {
    for (int untied = 0; untied < 2; untied++) {
        size_t len;
        uint8_t *p = build(&len, untied);
        const float *w = (const float *)(p + 28);
        lm_model m;
        lm_err err = {{0}};
        int rc = lm_llama2c_load_buffer(&m, p, len, &err);
        CHECK(rc == 0, "load synthetic (untied %d): %s", untied, err.msg);
        if (rc) {
            free(p);
            continue;
        }
        const lm_config *c = &m.cfg;
        CHECK(c->arch == LM_ARCH_LLAMA && c->vocab_size == V &&
                  c->d_model == C && c->ffn_dim == F && c->n_layers == L &&
                  c->n_heads == H && c->n_kv_heads == KVH && c->head_dim == D &&
                  c->max_pos == T && c->tie_embeddings == !untied &&
                  c->bos_id == 1 && c->eos_id == 2,
              "config");
        int bad = 0;
        for (int l = 0; l < L; l++) {
            const lm_layer *ly = &m.layers[l];
            struct {
                int a;
                const lm_tensor *t;
                int rope;
            } chk[] = {{1, ly->ln1_w, 0}, {2, ly->q.w, 1},   {3, ly->k.w, 1},
                       {4, ly->v.w, 0},   {5, ly->o.w, 0},   {6, ly->ln2_w, 0},
                       {7, ly->gate.w, 0}, {8, ly->down.w, 0}, {9, ly->up.w, 0}};
            for (size_t k = 0; k < sizeof chk / sizeof chk[0]; k++) {
                const float *src = w + start_of(chk[k].a, l);
                int rows = layout[chk[k].a].rows, cols = layout[chk[k].a].cols;
                for (int r = 0; r < rows; r++)
                    for (int cc = 0; cc < cols; cc++) {
                        int sr = chk[k].rope ? meta_row(r, D) : r;
                        bad += chk[k].t->data[r * cols + cc] !=
                               src[sr * cols + cc];
                    }
            }
        }
        CHECK(bad == 0, "layer weights in place (%d differ)", bad);
        CHECK(m.wte->data[7] == w[7], "embedding");
        CHECK(m.lnf_w->data[3] == w[start_of(10, 0) + 3], "final norm");
        if (untied)
            CHECK(m.lm_head != m.wte &&
                      m.lm_head->data[11] == w[start_of(13, 0) + 11],
                  "untied classifier read after the freq_cis tables");
        else
            CHECK(m.lm_head == m.wte, "tied classifier");
        /* One row pair spelled out: HF row 1 of head 0 is Meta row 2. */
        CHECK(m.layers[0].q.w->data[1 * C] == w[start_of(2, 0) + 2 * C],
              "q row 1 <- meta row 2");
        lm_model_free(&m);

        /* Cut by one byte, or one byte too many: both refused, saying so. */
        CHECK(lm_llama2c_load_buffer(&m, p, len - 1, &err) != 0 &&
                  strstr(err.msg, "truncated"),
              "short by a byte: %s", err.msg);
        uint8_t *q = malloc(len + 1);
        memcpy(q, p, len);
        q[len] = 0;
        CHECK(lm_llama2c_load_buffer(&m, q, len + 1, &err) != 0 &&
                  strstr(err.msg, "implies"),
              "a byte too long: %s", err.msg);
        free(q);
        free(p);
    }
}

static int header_fails(const int32_t hdr[7], const char *needle) {
    uint8_t buf[64] = {0};
    memcpy(buf, hdr, 28);
    lm_llama2c_header h;
    lm_err err = {{0}};
    int rc = lm_llama2c_parse_header(buf, sizeof buf, &h, &err);
    if (rc == 0 || !strstr(err.msg, needle)) {
        fprintf(stderr, "  header gave rc %d msg '%s'\n", rc, err.msg);
        return 0;
    }
    return 1;
}

static void test_bad_headers(void) {
    int32_t zero[7] = {64, 172, 0, 8, 4, 512, 512};
    CHECK(header_fails(zero, "positive"), "zero layers");
    int32_t minv[7] = {64, 172, 5, 8, 4, INT32_MIN, 512};
    CHECK(header_fails(minv, "positive"), "vocab INT32_MIN");
    int32_t split[7] = {64, 172, 5, 7, 7, 512, 512};
    CHECK(header_fails(split, "heads"), "dim not divisible by heads");
    int32_t gqa[7] = {64, 172, 5, 8, 3, 512, 512};
    CHECK(header_fails(gqa, "n_kv_heads"), "heads not a multiple of kv heads");
    int32_t huge[7] = {1 << 30, INT32_MAX, INT32_MAX, 2, 2, -INT32_MAX,
                       INT32_MAX};
    CHECK(header_fails(huge, "overflow"), "sizes overflowing 64 bits");
    int32_t big[7] = {1 << 20, 1 << 20, 1 << 10, 2, 2, 1 << 20, 1 << 20};
    CHECK(header_fails(big, "implies"), "a terabyte header on 64 bytes");
    int32_t v1[7] = {0x616b3432, 1, 64, 172, 5, 8, 4};
    CHECK(header_fails(v1, "version 1 export"), "newer export format named");
    lm_llama2c_header h;
    lm_err err = {{0}};
    CHECK(lm_llama2c_parse_header((const uint8_t *)"abc", 3, &h, &err) != 0 &&
              strstr(err.msg, "header"),
          "shorter than the header: %s", err.msg);
}

/* Greedy decoding from BOS must reproduce llama2.c's run.c (the first
 * N_GREEDY tokens of EXPECTED_greedy_n200.txt): this checks the loader end
 * to end, the q/k row reorder above all, since RoPE in the wrong layout
 * still runs but says something else. Pieces come from tok512.bin
 * (int32 max_len, then per token float score, int32 len, bytes). */
enum { N_GREEDY = 60 };

static void test_greedy(lm_model *m, const char *assets) {
    char path[4096], text[4096] = "", expected[4096] = "";
    static char pieces[512][64];
    snprintf(path, sizeof path, "%s/models/stories260K/tok512.bin", assets);
    FILE *f = fopen(path, "rb");
    int32_t maxlen, len;
    float score;
    int ok = f && fread(&maxlen, 4, 1, f) == 1;
    for (int i = 0; ok && i < 512; i++) {
        ok = fread(&score, 4, 1, f) == 1 && fread(&len, 4, 1, f) == 1 &&
             len >= 0 && len < 64 && fread(pieces[i], 1, (size_t)len, f) ==
                                         (size_t)len;
        if (ok) pieces[i][len] = 0;
    }
    if (f) fclose(f);
    snprintf(path, sizeof path,
             "%s/models/stories260K/EXPECTED_greedy_n200.txt", assets);
    f = fopen(path, "rb");
    ok = ok && f && fread(expected, 1, sizeof expected - 1, f) > 0;
    if (f) fclose(f);
    CHECK(ok, "read tok512.bin and EXPECTED_greedy_n200.txt");
    if (!ok) return;

    lm_err err = {{0}};
    lm_acts a;
    int32_t ids[N_GREEDY + 1] = {1};
    m->be = lm_backend_cpu_new(0);
    if (!m->be || lm_acts_build(&a, m, 1, N_GREEDY + 1, 0, &err)) {
        CHECK(0, "backend/activations: %s", err.msg);
        if (m->be) lm_backend_cpu_free(m->be);
        m->be = NULL;
        return;
    }
    size_t at = 0;
    for (int n = 1; n <= N_GREEDY; n++) {
        if (lm_forward(m, &a, ids, NULL, 1, n, &err)) {
            CHECK(0, "forward: %s", err.msg);
            break;
        }
        const float *lg = a.logits + (size_t)(n - 1) * 512;
        int best = 0;
        for (int v = 1; v < 512; v++)
            if (lg[v] > lg[best]) best = v;
        ids[n] = best;
        /* run.c drops the space after BOS and prints <0xHH> as a byte */
        const char *p = pieces[best];
        unsigned byte;
        if (ids[n - 1] == 1 && p[0] == ' ') p++;
        if (sscanf(p, "<0x%02X>", &byte) == 1)
            at += (size_t)snprintf(text + at, sizeof text - at, "%c", byte);
        else
            at += (size_t)snprintf(text + at, sizeof text - at, "%s", p);
    }
    CHECK(at > 100 && strncmp(text, expected, at) == 0,
          "greedy text differs from llama2.c's:\n ours: %s\n theirs: %.*s",
          text, (int)at, expected);
    lm_acts_free(&a);
    lm_backend_cpu_free(m->be);
    m->be = NULL;
}

static void test_real(const char *assets) {
    char path[4096];
    snprintf(path, sizeof path, "%s/models/stories260K/stories260K.bin",
             assets);
    lm_model m;
    lm_err err = {{0}};
    int rc = lm_model_load_llama2c(&m, path, &err);
    CHECK(rc == 0, "load stories260K: %s", err.msg);
    if (rc) return;
    const lm_config *c = &m.cfg;
    printf("stories260K: dim %d hidden %d layers %d heads %d kv %d vocab %d "
           "seq %d, %zu params\n",
           c->d_model, c->ffn_dim, c->n_layers, c->n_heads, c->n_kv_heads,
           c->vocab_size, c->max_pos, lm_model_param_count(&m));
    CHECK(c->d_model == 64 && c->ffn_dim == 172 && c->n_layers == 5 &&
              c->n_heads == 8 && c->n_kv_heads == 4 && c->head_dim == 8 &&
              c->vocab_size == 512 && c->max_pos == 512 && c->tie_embeddings,
          "config");
    lm_tensor *k = lm_model_find(&m, "model.layers.4.self_attn.k_proj.weight");
    lm_tensor *dn = lm_model_find(&m, "model.layers.0.mlp.down_proj.weight");
    CHECK(k && k->shape[0] == 32 && k->shape[1] == 64, "k_proj [32, 64]");
    CHECK(dn && dn->shape[0] == 64 && dn->shape[1] == 172,
          "down_proj [64, 172]");
    CHECK(m.lm_head == m.wte && m.wte->shape[0] == 512, "tied head");

    /* The file's first weight, and the q row reorder on real data. */
    FILE *f = fopen(path, "rb");
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    fseek(f, 0, SEEK_SET);
    uint8_t *p = malloc((size_t)n);
    CHECK(fread(p, 1, (size_t)n, f) == (size_t)n, "read");
    fclose(f);
    const float *w = (const float *)(p + 28);
    CHECK(m.wte->data[0] == w[0], "first embedding value");
    const float *wq0 = w + 512 * 64 + 5 * 64;
    int bad = 0;
    for (int r = 0; r < 64; r++)
        for (int cc = 0; cc < 64; cc++)
            bad += m.layers[0].q.w->data[r * 64 + cc] !=
                   wq0[meta_row(r, 8) * 64 + cc];
    CHECK(bad == 0, "layer 0 q rows in HF order (%d differ)", bad);
    test_greedy(&m, assets);
    lm_model_free(&m);

    /* A truncated copy fails with expected vs actual bytes. */
    const char *tmp = "/tmp/smudge_test_llama2c_truncated.bin";
    f = fopen(tmp, "wb");
    fwrite(p, 1, (size_t)n - 100, f);
    fclose(f);
    char want[64];
    snprintf(want, sizeof want, "implies %ld bytes but the file has %ld", n,
             n - 100);
    CHECK(lm_model_load_llama2c(&m, tmp, &err) != 0 && strstr(err.msg, want) &&
              strstr(err.msg, tmp),
          "truncated copy: %s", err.msg);
    remove(tmp);
    free(p);
}

/* The fuzz seeds must be what their names say. */
static void test_seeds(const char *corpus) {
    static const char *const names[] = {"tied.bin", "untied_2layers.bin",
                                        "truncated.bin", "header_only.bin"};
    char path[4096];
    lm_err err = {{0}};
    lm_model m;
    for (int i = 0; i < 4; i++) {
        snprintf(path, sizeof path, "%s/llama2c/%s", corpus, names[i]);
        int rc = lm_model_load_llama2c(&m, path, &err);
        CHECK((rc == 0) == (i < 2), "seed %s: rc %d %s", names[i], rc,
              rc ? err.msg : "");
        if (rc == 0) lm_model_free(&m);
    }
}

int main(void) {
    test_synthetic();
    const char *corpus = getenv("SMUDGE_FUZZ_CORPUS");
    if (corpus && *corpus) test_seeds(corpus);
    test_bad_headers();
    const char *assets = check_assets();
    if (assets) test_real(assets);
    else printf("SMUDGE_ASSETS unset: real-file checks skipped\n");
    return check_done();
}
