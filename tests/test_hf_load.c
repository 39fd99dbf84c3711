/* Hugging Face folders: save -> load of a small random model of every
 * family is bit exact (F32 weights mapped, Conv1D weights transposed back),
 * a sharded folder with an F16 shard loads, the original gpt2 naming without
 * `transformer.` loads, and broken folders and configs fail naming the
 * tensor or the field at fault. */
#define _XOPEN_SOURCE 700
#include <ftw.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "check.h"
#include "half.h"
#include "hf_config.h"
#include "loaders.h"
#include "model.h"
#include "rng.h"
#include "safetensors.h"

static char tmpdir[64];

static int rm_one(const char *p, const struct stat *sb, int flag,
                  struct FTW *ftw) {
    return remove(p);
}

static void rm_rf(const char *dir) {
    nftw(dir, rm_one, 16, FTW_DEPTH | FTW_PHYS);
}

static void write_file(const char *dir, const char *name, const char *text) {
    char path[256];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    FILE *fp = fopen(path, "w");
    if (!fp) {
        perror(path);
        exit(1);
    }
    fputs(text, fp);
    fclose(fp);
}

/* Every tensor random (biases and norms too), so a mix-up shows. */
static int build_random(lm_model *m, const lm_config *c, uint64_t seed) {
    lm_err err = {{0}};
    if (lm_model_init(m, c, &err) || lm_model_alloc(m, &err)) {
        fprintf(stderr, "build: %s\n", err.msg);
        return -1;
    }
    lm_model_init_random(m, seed, 0.02f);
    lm_rng rng;
    lm_rng_seed(&rng, seed + 1);
    for (int i = 0; i < m->n_params; i++)
        for (size_t j = 0; j < m->params[i].numel; j++)
            m->params[i].data[j] = lm_rng_normal(&rng);
    return 0;
}

static lm_config small_config(lm_arch arch) {
    lm_config c;
    int llama = arch == LM_ARCH_LLAMA || arch == LM_ARCH_MISTRAL;
    lm_config_default(&c, arch, 37, 16, 2, 4, llama ? 2 : 4, 24, 32);
    c.bos_id = 1, c.eos_id = 2;
    if (arch == LM_ARCH_MISTRAL) c.sliding_window = 8;
    if (arch == LM_ARCH_LLAMA) c.norm_eps = 1e-6f, c.rope_theta = 500000.0f;
    if (arch == LM_ARCH_GPT2) c.pad_id = 36;
    return c;
}

static void check_same_config(const lm_config *a, const lm_config *b,
                              const char *what) {
    CHECK(a->arch == b->arch && a->vocab_size == b->vocab_size &&
              a->d_model == b->d_model && a->n_layers == b->n_layers &&
              a->n_heads == b->n_heads && a->n_kv_heads == b->n_kv_heads &&
              a->head_dim == b->head_dim && a->ffn_dim == b->ffn_dim &&
              a->max_pos == b->max_pos,
          "%s: sizes differ after reload", what);
    CHECK(a->norm_eps == b->norm_eps, "%s: eps %g vs %g", what,
          (double)a->norm_eps, (double)b->norm_eps);
    if (a->arch == LM_ARCH_LLAMA || a->arch == LM_ARCH_MISTRAL)
        CHECK(a->rope_theta == b->rope_theta, "%s: rope_theta", what);
    CHECK(a->sliding_window == b->sliding_window &&
              a->tie_embeddings == b->tie_embeddings &&
              a->attention_bias == b->attention_bias,
          "%s: flags differ (sw %d/%d tie %d/%d bias %d/%d)", what,
          a->sliding_window, b->sliding_window, a->tie_embeddings,
          b->tie_embeddings, a->attention_bias, b->attention_bias);
    CHECK(a->bos_id == b->bos_id && a->eos_id == b->eos_id &&
              a->pad_id == b->pad_id,
          "%s: token ids", what);
}

static void check_same_weights(lm_model *a, lm_model *b, const char *what) {
    CHECK(a->n_params == b->n_params, "%s: %d vs %d tensors", what, a->n_params,
          b->n_params);
    for (int i = 0; i < a->n_params && i < b->n_params; i++) {
        lm_tensor *x = &a->params[i], *y = &b->params[i];
        CHECK(strcmp(x->name, y->name) == 0 && x->numel == y->numel,
              "%s: tensor %d", what, i);
        CHECK(memcmp(x->data, y->data, x->numel * sizeof(float)) == 0,
              "%s: %s differs", what, x->name);
    }
    CHECK((b->lm_head == b->wte) == (a->lm_head == a->wte), "%s: tying", what);
}

static void test_round_trip(lm_arch arch, int variant) {
    lm_config c = small_config(arch);
    if (variant == 1 && arch == LM_ARCH_LLAMA) c.attention_bias = 1;
    if (variant == 1) c.tie_embeddings = !c.tie_embeddings;
    char what[64], dir[160];
    snprintf(what, sizeof what, "%s/%d", lm_arch_name(arch), variant);
    /* a nested path: save creates the missing folders */
    snprintf(dir, sizeof dir, "%s/rt/%s_%d", tmpdir, lm_arch_name(arch), variant);

    lm_model m, l;
    if (build_random(&m, &c, 42 + (uint64_t)arch)) {
        CHECK(0, "%s: build", what);
        return;
    }
    lm_err err = {{0}};
    int r = lm_model_save_hf(&m, dir, &err);
    CHECK(r == 0, "%s: save: %s", what, err.msg);
    r = lm_model_load_hf(&l, dir, &err);
    CHECK(r == 0, "%s: load: %s", what, err.msg);
    if (r == 0) {
        check_same_config(&m.cfg, &l.cfg, what);
        check_same_weights(&m, &l, what);
        CHECK(l.be == NULL, "%s: backend left to the caller", what);
        /* zero copy: only Conv1D weights needed their own memory */
        size_t transposed = 0;
        for (int i = 0; i < l.n_params; i++)
            if (l.params[i].hf_transposed) transposed += l.params[i].numel;
        CHECK(l.n_maps == 1, "%s: %d maps", what, l.n_maps);
        CHECK(l.owned_floats == transposed, "%s: %zu floats copied, %zu needed",
              what, l.owned_floats, transposed);
        /* the map is private and writable: training writes stay in memory */
        l.params[0].data[0] += 1.0f;
        lm_model_free(&l);
        r = lm_model_load(&l, dir, &err);
        CHECK(r == 0, "%s: lm_model_load: %s", what, err.msg);
        if (r == 0) check_same_weights(&m, &l, "reloaded after a write");
        lm_model_free(&l);
    }
    /* a tied model's file has no lm_head; an untied one has it */
    char path[256];
    snprintf(path, sizeof path, "%s/model.safetensors", dir);
    lm_st_file f;
    if (lm_st_open(&f, path, &err) == 0) {
        CHECK((lm_st_find(&f, "lm_head.weight") != NULL) == !c.tie_embeddings,
              "%s: lm_head present iff untied", what);
        const char *fmt = lm_st_meta_get(&f, "format");
        CHECK(fmt && strcmp(fmt, "pt") == 0, "%s: format metadata", what);
        if (arch == LM_ARCH_GPT2) {
            const lm_st_tensor *t = lm_st_find(&f, "transformer.h.0.mlp.c_fc.weight");
            CHECK(t && t->shape[0] == c.d_model && t->shape[1] == c.ffn_dim,
                  "gpt2: c_fc stored as Conv1D [in, out]");
        }
        lm_st_close(&f);
    }
    snprintf(path, sizeof path, "%s/generation_config.json", dir);
    CHECK(access(path, F_OK) == 0, "%s: no generation_config.json", what);
    lm_model_free(&m);
}

/* Llama split over two shards, the second in F16, with an index. */
static void test_sharded(void) {
    lm_config c = small_config(LM_ARCH_LLAMA);
    lm_model m, l;
    if (build_random(&m, &c, 7)) return;
    char dir[160], path[256];
    snprintf(dir, sizeof dir, "%s/sharded", tmpdir);
    mkdir(dir, 0755);
    lm_err err = {{0}};
    CHECK(lm_hf_config_write(&c, dir, &err) == 0, "config: %s", err.msg);

    int n = m.n_params, half = n / 2;
    lm_st_out *outs = calloc((size_t)n, sizeof *outs);
    size_t idx_cap = 64 + (size_t)n * 160, k = 0;
    char *index = malloc(idx_cap);
    k += (size_t)snprintf(index + k, idx_cap - k,
                          "{\"metadata\": {\"total_size\": 0}, \"weight_map\": {");
    for (int i = 0; i < n; i++) {
        lm_tensor *t = &m.params[i];
        outs[i] = (lm_st_out){t->name, i < half ? LM_ST_F32 : LM_ST_F16, t->ndim,
                              {t->shape[0], t->shape[1]}, t->data, 0};
        k += (size_t)snprintf(index + k, idx_cap - k, "%s\"%s\": \"%s\"",
                              i ? ", " : "", t->name,
                              i < half ? "model-00001-of-00002.safetensors"
                                       : "model-00002-of-00002.safetensors");
    }
    snprintf(index + k, idx_cap - k, "}}\n");
    snprintf(path, sizeof path, "%s/model-00001-of-00002.safetensors", dir);
    CHECK(lm_st_write(path, outs, half, NULL, &err) == 0, "shard 1: %s", err.msg);
    snprintf(path, sizeof path, "%s/model-00002-of-00002.safetensors", dir);
    CHECK(lm_st_write(path, outs + half, n - half, NULL, &err) == 0,
          "shard 2: %s", err.msg);
    write_file(dir, "model.safetensors.index.json", index);

    int r = lm_model_load_hf(&l, dir, &err);
    CHECK(r == 0, "sharded load: %s", err.msg);
    if (r == 0) {
        for (int i = 0; i < n; i++) {
            lm_tensor *x = &m.params[i], *y = &l.params[i];
            int same = 1;
            for (size_t j = 0; j < x->numel && same; j++) {
                float want = i < half ? x->data[j]
                                      : lm_f16_to_f32(lm_f32_to_f16(x->data[j]));
                same = y->data[j] == want;
            }
            CHECK(same, "sharded: %s differs", x->name);
        }
        CHECK(l.n_maps == 1, "sharded: only the F32 shard stays mapped (%d)",
              l.n_maps);
        lm_model_free(&l);
    }

    /* a shard name that leaves the folder is refused */
    write_file(dir, "model.safetensors.index.json",
               "{\"weight_map\": {\"model.norm.weight\": \"../evil.safetensors\"}}");
    r = lm_model_load_hf(&l, dir, &err);
    CHECK(r < 0 && strstr(err.msg, "../evil.safetensors") &&
              strstr(err.msg, "shard"),
          "escaping shard: %s", err.msg);
    write_file(dir, "model.safetensors.index.json", "{\"weight_map\": [1]}");
    r = lm_model_load_hf(&l, dir, &err);
    CHECK(r < 0 && strstr(err.msg, "weight_map"), "bad index: %s", err.msg);

    free(index);
    free(outs);
    lm_model_free(&m);
}

/* The original gpt2 checkpoint: no `transformer.` prefix, extra attn.bias
 * buffers, lm_head absent (tied). */
static void test_gpt2_bare_names(void) {
    lm_config c = small_config(LM_ARCH_GPT2);
    lm_model m, l;
    if (build_random(&m, &c, 9)) return;
    char dir[160], path[256];
    snprintf(dir, sizeof dir, "%s/gpt2_bare", tmpdir);
    mkdir(dir, 0755);
    lm_err err = {{0}};
    CHECK(lm_hf_config_write(&c, dir, &err) == 0, "config: %s", err.msg);
    int n = m.n_params;
    lm_st_out *outs = calloc((size_t)n + 1, sizeof *outs);
    float mask[16] = {1};
    for (int i = 0; i < n; i++) {
        lm_tensor *t = &m.params[i];
        const char *name = t->name + strlen("transformer.");
        int tr = t->hf_transposed;
        outs[i] = (lm_st_out){name, LM_ST_F32, t->ndim,
                              {tr ? t->shape[1] : t->shape[0],
                               tr ? t->shape[0] : t->shape[1]},
                              t->data, tr};
    }
    outs[n] = (lm_st_out){"h.0.attn.bias", LM_ST_F32, 2, {4, 4}, mask, 0};
    snprintf(path, sizeof path, "%s/model.safetensors", dir);
    CHECK(lm_st_write(path, outs, n + 1, NULL, &err) == 0, "write: %s", err.msg);
    int r = lm_model_load_hf(&l, dir, &err);
    CHECK(r == 0, "bare gpt2 load: %s", err.msg);
    if (r == 0) {
        check_same_weights(&m, &l, "bare gpt2");
        lm_model_free(&l);
    }
    free(outs);
    lm_model_free(&m);
}

/* Saves a Llama, then rewrites its weights with one tensor dropped or
 * reshaped, and expects the loader to name it. */
static void test_broken_weights(void) {
    lm_config c = small_config(LM_ARCH_LLAMA);
    lm_model m, l;
    if (build_random(&m, &c, 11)) return;
    char dir[160], path[256];
    snprintf(dir, sizeof dir, "%s/broken", tmpdir);
    lm_err err = {{0}};
    CHECK(lm_model_save_hf(&m, dir, &err) == 0, "save: %s", err.msg);
    snprintf(path, sizeof path, "%s/model.safetensors", dir);
    int n = m.n_params;
    lm_st_out *outs = calloc((size_t)n, sizeof *outs);
    for (int i = 0; i < n; i++) {
        lm_tensor *t = &m.params[i];
        outs[i] = (lm_st_out){t->name, LM_ST_F32, t->ndim,
                              {t->shape[0], t->shape[1]}, t->data, 0};
    }
    const char *victim = "model.layers.1.mlp.down_proj.weight";
    int vi = -1;
    for (int i = 0; i < n; i++)
        if (strcmp(outs[i].name, victim) == 0) vi = i;
    CHECK(vi >= 0, "victim tensor exists");
    if (vi < 0) goto out;

    /* missing */
    lm_st_out keep = outs[vi];
    outs[vi] = outs[n - 1];
    CHECK(lm_st_write(path, outs, n - 1, NULL, &err) == 0, "write: %s", err.msg);
    int r = lm_model_load_hf(&l, dir, &err);
    CHECK(r < 0 && strstr(err.msg, victim) && strstr(err.msg, "missing"),
          "missing tensor: %s", err.msg);
    outs[vi] = keep;

    /* transposed shape */
    outs[vi].shape[0] = keep.shape[1];
    outs[vi].shape[1] = keep.shape[0];
    CHECK(lm_st_write(path, outs, n, NULL, &err) == 0, "write: %s", err.msg);
    r = lm_model_load_hf(&l, dir, &err);
    CHECK(r < 0 && strstr(err.msg, victim) && strstr(err.msg, "shape [24, 16]") &&
              strstr(err.msg, "expected [16, 24]"),
          "wrong shape: %s", err.msg);
    outs[vi] = keep;

    /* a dtype we cannot load */
    CHECK(lm_st_write(path, outs, n, NULL, &err) == 0, "write: %s", err.msg);
    {
        /* patch "F32" of the victim's entry into "I32" (same size) */
        FILE *fp = fopen(path, "r+b");
        uint8_t hdr[8];
        if (fp && fread(hdr, 1, 8, fp) == 8) {
            size_t hn = 0;
            for (int i = 7; i >= 0; i--) hn = (hn << 8) | hdr[i];
            char *h = malloc(hn + 1);
            if (fread(h, 1, hn, fp) == hn) {
                h[hn] = 0;
                char *at = strstr(h, victim);
                char *dt = at ? strstr(at, "\"F32\"") : NULL;
                if (dt) {
                    dt[1] = 'I';
                    fseek(fp, 8, SEEK_SET);
                    fwrite(h, 1, hn, fp);
                }
            }
            free(h);
        }
        if (fp) fclose(fp);
    }
    r = lm_model_load_hf(&l, dir, &err);
    CHECK(r < 0 && strstr(err.msg, victim) && strstr(err.msg, "I32"),
          "bad dtype: %s", err.msg);

    /* the small Llama is untied: its lm_head may not be left out */
    for (int i = 0; i < n; i++)
        if (strcmp(outs[i].name, "lm_head.weight") == 0) {
            lm_st_out tmp = outs[i];
            outs[i] = outs[n - 1];
            outs[n - 1] = tmp;
        }
    CHECK(lm_st_write(path, outs, n - 1, NULL, &err) == 0, "write: %s", err.msg);
    r = lm_model_load_hf(&l, dir, &err);
    CHECK(r < 0 && strstr(err.msg, "lm_head.weight") && strstr(err.msg, "missing"),
          "missing lm_head: %s", err.msg);

    /* no weights at all */
    unlink(path);
    r = lm_model_load_hf(&l, dir, &err);
    CHECK(r < 0 && strstr(err.msg, "model.safetensors"), "no weights: %s",
          err.msg);
out:
    free(outs);
    lm_model_free(&m);
}

/* config.json text -> parse; expect an error naming `field`. */
static void expect_config_error(const char *json, const char *field) {
    lm_config c;
    lm_err err = {{0}};
    int r = lm_hf_config_parse(&c, json, strlen(json), "x/config.json", &err);
    CHECK(r < 0, "config accepted, expected an error about %s", field);
    CHECK(strstr(err.msg, field) && strstr(err.msg, "x/config.json"),
          "message '%s' does not name %s and the file", err.msg, field);
}

#define LLAMA_SIZES                                                          \
    "\"vocab_size\": 100, \"hidden_size\": 64, \"intermediate_size\": 128, " \
    "\"num_hidden_layers\": 2, \"num_attention_heads\": 4, "                 \
    "\"max_position_embeddings\": 128"
#define GPT2_SIZES                                                       \
    "\"vocab_size\": 100, \"n_embd\": 64, \"n_layer\": 2, \"n_head\": 4, " \
    "\"n_positions\": 128"
#define OPT_SIZES                                                             \
    "\"vocab_size\": 100, \"hidden_size\": 64, \"num_hidden_layers\": 2, "    \
    "\"num_attention_heads\": 4, \"ffn_dim\": 256, "                          \
    "\"max_position_embeddings\": 128"

static void test_configs(void) {
    lm_config c;
    lm_err err = {{0}};
    /* defaults, eos as a list, architectures instead of model_type */
    const char *llama = "{\"architectures\": [\"LlamaForCausalLM\"], " LLAMA_SIZES
                        ", \"eos_token_id\": [128001, 128008], "
                        "\"rope_scaling\": null, \"num_key_value_heads\": null}";
    int r = lm_hf_config_parse(&c, llama, strlen(llama), "llama.json", &err);
    CHECK(r == 0, "llama: %s", err.msg);
    CHECK(c.arch == LM_ARCH_LLAMA && c.n_kv_heads == 4 && c.head_dim == 16 &&
              c.rope_theta == 10000.0f && c.norm_eps == 1e-6f &&
              !c.tie_embeddings && c.eos_id == 128001 && c.bos_id == -1 &&
              c.pad_id == -1,
          "llama defaults");

    const char *gpt2 = "{\"model_type\": \"gpt2\", " GPT2_SIZES
                       ", \"n_inner\": null, \"bos_token_id\": 50256}";
    r = lm_hf_config_parse(&c, gpt2, strlen(gpt2), "gpt2.json", &err);
    CHECK(r == 0, "gpt2: %s", err.msg);
    CHECK(c.arch == LM_ARCH_GPT2 && c.ffn_dim == 256 && c.tie_embeddings &&
              c.norm_eps == 1e-5f && c.bos_id == 50256,
          "gpt2 defaults");

    const char *opt = "{\"architectures\": [\"OPTForCausalLM\"], " OPT_SIZES
                      ", \"word_embed_proj_dim\": 64, \"pad_token_id\": 1}";
    r = lm_hf_config_parse(&c, opt, strlen(opt), "opt.json", &err);
    CHECK(r == 0, "opt: %s", err.msg);
    CHECK(c.arch == LM_ARCH_OPT && c.tie_embeddings && c.pad_id == 1 &&
              c.ffn_dim == 256,
          "opt defaults");

    const char *mistral = "{\"model_type\": \"mistral\", " LLAMA_SIZES
                          ", \"sliding_window\": null, \"head_dim\": 32, "
                          "\"num_key_value_heads\": 2}";
    r = lm_hf_config_parse(&c, mistral, strlen(mistral), "m.json", &err);
    CHECK(r == 0, "mistral: %s", err.msg);
    CHECK(c.arch == LM_ARCH_MISTRAL && c.sliding_window == 0 &&
              c.head_dim == 32 && c.n_kv_heads == 2,
          "mistral null window, explicit head_dim");

    expect_config_error("{\"model_type\": \"llama\", \"vocab_size\": 9, "
                        "\"hidden_size\": 64}",
                        "intermediate_size");
    expect_config_error("{\"model_type\": \"llama\", \"vocab_size\": 9, "
                        "\"hidden_size\": \"big\"}",
                        "hidden_size");
    expect_config_error("{\"model_type\": \"llama\", \"vocab_size\": 9, "
                        "\"hidden_size\": 0}",
                        "hidden_size");
    expect_config_error("{\"model_type\": \"llama\", " LLAMA_SIZES
                        ", \"rope_scaling\": {\"type\": \"linear\"}}",
                        "rope_scaling");
    expect_config_error("{\"model_type\": \"llama\", " LLAMA_SIZES
                        ", \"hidden_act\": \"gelu\"}",
                        "hidden_act");
    expect_config_error("{\"model_type\": \"llama\", " LLAMA_SIZES
                        ", \"num_key_value_heads\": 3}",
                        "num_key_value_heads");
    expect_config_error("{\"model_type\": \"llama\", " LLAMA_SIZES
                        ", \"eos_token_id\": \"x\"}",
                        "eos_token_id");
    expect_config_error("{\"model_type\": \"llama\", " LLAMA_SIZES
                        ", \"tie_word_embeddings\": 1}",
                        "tie_word_embeddings");
    expect_config_error("{\"model_type\": \"gpt2\", " GPT2_SIZES
                        ", \"activation_function\": \"relu\"}",
                        "activation_function");
    expect_config_error("{\"model_type\": \"gpt2\", \"n_embd\": 64}", "vocab_size");
    expect_config_error("{\"model_type\": \"opt\", " OPT_SIZES
                        ", \"do_layer_norm_before\": false}",
                        "do_layer_norm_before");
    expect_config_error("{\"model_type\": \"opt\", " OPT_SIZES
                        ", \"word_embed_proj_dim\": 32}",
                        "word_embed_proj_dim");
    expect_config_error("{\"model_type\": \"opt\", " OPT_SIZES
                        ", \"enable_bias\": false}",
                        "enable_bias");
    expect_config_error("{\"model_type\": \"qwen2\"}", "model_type");
    expect_config_error("{\"architectures\": [\"BertModel\"]}", "architectures");
    expect_config_error("{}", "model_type");
    expect_config_error("{\"model_type\": \"llama\", ", "JSON");
    expect_config_error("[1]", "object");

    /* a real config from the hub */
    const char *assets = check_assets();
    if (assets) {
        char path[512];
        snprintf(path, sizeof path,
                 "%s/tokenizers/mistral-7b-v0.1-hf/config.json", assets);
        if (access(path, R_OK) == 0) {
            r = lm_hf_config_read(&c, path, &err);
            CHECK(r == 0, "mistral-7b config: %s", err.msg);
            CHECK(c.arch == LM_ARCH_MISTRAL && c.d_model == 4096 &&
                      c.n_kv_heads == 8 && c.ffn_dim == 14336 &&
                      c.sliding_window == 4096 && c.head_dim == 128 &&
                      c.norm_eps == 1e-5f && !c.tie_embeddings &&
                      c.vocab_size == 32000 && c.bos_id == 1 && c.eos_id == 2,
                  "mistral-7b values");
        }
    }

    /* configs we cannot express are refused by the writer */
    lm_config w = small_config(LM_ARCH_GPT2);
    w.n_kv_heads = 2;
    char *s = lm_hf_config_to_json(&w, &err);
    CHECK(!s, "gpt2 with GQA written");
    free(s);
    w = small_config(LM_ARCH_LLAMA);
    w.sliding_window = 4;
    s = lm_hf_config_to_json(&w, &err);
    CHECK(!s && strstr(err.msg, "sliding_window"), "llama with window: %s",
          err.msg);
    free(s);
}

static void test_load_any(void) {
    lm_model m;
    lm_err err = {{0}};
    int r = lm_model_load(&m, "/nonexistent/model.txt", &err);
    CHECK(r < 0 && strstr(err.msg, "/nonexistent/model.txt") &&
              strstr(err.msg, ".gguf") && strstr(err.msg, ".bin"),
          "unknown path: %s", err.msg);
    char dir[160];
    snprintf(dir, sizeof dir, "%s/empty", tmpdir);
    mkdir(dir, 0755);
    r = lm_model_load(&m, dir, &err);
    CHECK(r < 0 && strstr(err.msg, "config.json"), "empty folder: %s", err.msg);
}

int main(void) {
    snprintf(tmpdir, sizeof tmpdir, "/tmp/smudge_hf_XXXXXX");
    if (!mkdtemp(tmpdir)) {
        perror("mkdtemp");
        return 1;
    }
    for (int a = 0; a < LM_ARCH_COUNT; a++)
        for (int v = 0; v < 2; v++) test_round_trip((lm_arch)a, v);
    test_sharded();
    test_gpt2_bare_names();
    test_broken_weights();
    test_configs();
    test_load_any();
    rm_rf(tmpdir);
    return check_done();
}
