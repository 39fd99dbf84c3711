/* config.json of the Llama, Mistral, GPT-2 and OPT families <-> lm_config.
 *
 * Each family names the same sizes differently (hidden_size / n_embd, ...).
 * The sizes are required; the rest take transformers' class defaults when
 * absent or null. Keys whose non-default value would change the maths in a
 * way the model does not implement are refused with the key's name. */
#include "hf_config.h"

#include <cjson/cJSON.h>
#include <errno.h>
#include <limits.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

/* Written into config.json: a version whose loaders know every key we use
 * (head_dim for Llama arrived in 4.44). */
#define HF_TRANSFORMERS_VERSION "4.44.0"

/* ---- reading ---- */

typedef struct cfg_in {
    const cJSON *root;
    const char *file;
    lm_err *err;
} cfg_in;

/* The value of key, or NULL when it is absent or JSON null. */
static const cJSON *get(const cfg_in *in, const char *key) {
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(in->root, key);
    return (v && !cJSON_IsNull(v)) ? v : NULL;
}

static int is_int(const cJSON *v) {
    return cJSON_IsNumber(v) && v->valuedouble == floor(v->valuedouble) &&
           v->valuedouble >= INT_MIN && v->valuedouble <= INT_MAX;
}

/* A size the model needs: present, integer, >= 1. */
static int get_size(const cfg_in *in, const char *key, int *out) {
    const cJSON *v = get(in, key);
    if (!v) return lm_errf(in->err, "%s: %s is missing", in->file, key);
    if (!is_int(v) || v->valuedouble < 1)
        return lm_errf(in->err, "%s: %s must be a positive integer", in->file,
                       key);
    *out = (int)v->valuedouble;
    return 0;
}

/* An optional size: dflt when absent or null. */
static int get_size_or(const cfg_in *in, const char *key, int dflt, int *out) {
    if (!get(in, key)) {
        *out = dflt;
        return 0;
    }
    return get_size(in, key, out);
}

static int get_float_or(const cfg_in *in, const char *key, float dflt,
                        float *out) {
    const cJSON *v = get(in, key);
    if (!v) {
        *out = dflt;
        return 0;
    }
    if (!cJSON_IsNumber(v) || !isfinite(v->valuedouble))
        return lm_errf(in->err, "%s: %s must be a number", in->file, key);
    *out = (float)v->valuedouble;
    return 0;
}

static int get_bool_or(const cfg_in *in, const char *key, int dflt, int *out) {
    const cJSON *v = get(in, key);
    if (!v) {
        *out = dflt;
        return 0;
    }
    if (!cJSON_IsBool(v))
        return lm_errf(in->err, "%s: %s must be true or false", in->file, key);
    *out = cJSON_IsTrue(v);
    return 0;
}

static int get_string_or(const cfg_in *in, const char *key, const char *dflt,
                         const char **out) {
    const cJSON *v = get(in, key);
    if (!v) {
        *out = dflt;
        return 0;
    }
    if (!cJSON_IsString(v))
        return lm_errf(in->err, "%s: %s must be a string", in->file, key);
    *out = v->valuestring;
    return 0;
}

/* bos/eos/pad: an int, a list of ints (the first is the one we use), or
 * absent/null/empty (-1). */
static int get_token_id(const cfg_in *in, const char *key, int *out) {
    const cJSON *v = get(in, key);
    *out = -1;
    if (!v) return 0;
    if (cJSON_IsArray(v)) v = v->child;
    if (!v) return 0;
    if (!is_int(v) || v->valuedouble < -1)
        return lm_errf(in->err, "%s: %s must be a token id", in->file, key);
    *out = (int)v->valuedouble;
    return 0;
}

/* A key that must keep a given boolean value because the other one is a
 * model we do not implement. */
static int require_bool(const cfg_in *in, const char *key, int dflt, int want,
                        const char *why) {
    int v;
    if (get_bool_or(in, key, dflt, &v)) return -1;
    if (v != want)
        return lm_errf(in->err, "%s: %s = %s is unsupported (%s)", in->file, key,
                       v ? "true" : "false", why);
    return 0;
}

static int require_string(const cfg_in *in, const char *key, const char *dflt,
                          const char *a, const char *b) {
    const char *s = dflt;
    if (get_string_or(in, key, dflt, &s)) return -1;
    if (strcmp(s, a) != 0 && !(b && strcmp(s, b) == 0))
        return lm_errf(in->err, "%s: %s \"%.64s\" is unsupported (expected %s%s%s)",
                       in->file, key, s, a, b ? " or " : "", b ? b : "");
    return 0;
}

static int read_ids(const cfg_in *in, lm_config *c) {
    if (get_token_id(in, "bos_token_id", &c->bos_id) ||
        get_token_id(in, "eos_token_id", &c->eos_id) ||
        get_token_id(in, "pad_token_id", &c->pad_id))
        return -1;
    return 0;
}

static int read_llama(const cfg_in *in, lm_config *c) {
    int mistral = c->arch == LM_ARCH_MISTRAL;
    if (get_size(in, "vocab_size", &c->vocab_size) ||
        get_size(in, "hidden_size", &c->d_model) ||
        get_size(in, "intermediate_size", &c->ffn_dim) ||
        get_size(in, "num_hidden_layers", &c->n_layers) ||
        get_size(in, "num_attention_heads", &c->n_heads) ||
        get_size_or(in, "num_key_value_heads", c->n_heads, &c->n_kv_heads) ||
        get_size(in, "max_position_embeddings", &c->max_pos) ||
        get_float_or(in, "rms_norm_eps", 1e-6f, &c->norm_eps) ||
        get_float_or(in, "rope_theta", 10000.0f, &c->rope_theta) ||
        get_bool_or(in, "tie_word_embeddings", 0, &c->tie_embeddings) ||
        require_string(in, "hidden_act", "silu", "silu", NULL) ||
        require_bool(in, "mlp_bias", 0, 0, "MLP biases are not implemented"))
        return -1;
    if (!get(in, "head_dim") && c->d_model % c->n_heads != 0)
        return lm_errf(in->err,
                       "%s: hidden_size %d is not a multiple of "
                       "num_attention_heads %d and head_dim is not given",
                       in->file, c->d_model, c->n_heads);
    if (get_size_or(in, "head_dim", c->d_model / c->n_heads, &c->head_dim))
        return -1;
    if (get(in, "rope_scaling"))
        return lm_errf(in->err,
                       "%s: rope_scaling is unsupported (only plain RoPE is "
                       "implemented; it must be null or absent)",
                       in->file);
    /* HF's Mistral has no attention biases, whatever the file says */
    if (!mistral && get_bool_or(in, "attention_bias", 0, &c->attention_bias))
        return -1;
    if (mistral) {
        const cJSON *sw = get(in, "sliding_window");
        c->sliding_window = 0;
        if (sw && get_size(in, "sliding_window", &c->sliding_window)) return -1;
    }
    return read_ids(in, c);
}

static int read_gpt2(const cfg_in *in, lm_config *c) {
    if (get_size(in, "vocab_size", &c->vocab_size) ||
        get_size(in, "n_embd", &c->d_model) ||
        get_size(in, "n_layer", &c->n_layers) ||
        get_size(in, "n_head", &c->n_heads) ||
        get_size(in, "n_positions", &c->max_pos))
        return -1;
    if (get_size_or(in, "n_inner", 4 * c->d_model, &c->ffn_dim) ||
        get_float_or(in, "layer_norm_epsilon", 1e-5f, &c->norm_eps) ||
        get_bool_or(in, "tie_word_embeddings", 1, &c->tie_embeddings) ||
        require_string(in, "activation_function", "gelu_new", "gelu_new",
                       "gelu_pytorch_tanh") ||
        require_bool(in, "scale_attn_weights", 1, 1,
                     "attention is always scaled by 1/sqrt(head_dim)") ||
        require_bool(in, "scale_attn_by_inverse_layer_idx", 0, 0,
                     "per-layer attention scaling is not implemented"))
        return -1;
    if (c->d_model % c->n_heads != 0)
        return lm_errf(in->err, "%s: n_embd %d is not a multiple of n_head %d",
                       in->file, c->d_model, c->n_heads);
    c->n_kv_heads = c->n_heads;
    c->head_dim = c->d_model / c->n_heads;
    return read_ids(in, c);
}

static int read_opt(const cfg_in *in, lm_config *c) {
    int proj;
    if (get_size(in, "vocab_size", &c->vocab_size) ||
        get_size(in, "hidden_size", &c->d_model) ||
        get_size(in, "num_hidden_layers", &c->n_layers) ||
        get_size(in, "num_attention_heads", &c->n_heads) ||
        get_size(in, "ffn_dim", &c->ffn_dim) ||
        get_size(in, "max_position_embeddings", &c->max_pos) ||
        get_bool_or(in, "tie_word_embeddings", 1, &c->tie_embeddings) ||
        require_string(in, "activation_function", "relu", "relu", NULL) ||
        require_bool(in, "do_layer_norm_before", 1, 1,
                     "post-LayerNorm OPT such as OPT-350m is not implemented") ||
        require_bool(in, "enable_bias", 1, 1,
                     "OPT without biases is not implemented") ||
        require_bool(in, "layer_norm_elementwise_affine", 1, 1,
                     "LayerNorm without weights is not implemented") ||
        require_bool(in, "_remove_final_layer_norm", 0, 0,
                     "the final LayerNorm is always applied") ||
        get_size_or(in, "word_embed_proj_dim", c->d_model, &proj))
        return -1;
    if (proj != c->d_model)
        return lm_errf(in->err,
                       "%s: word_embed_proj_dim %d differs from hidden_size %d "
                       "(projected embeddings are unsupported)",
                       in->file, proj, c->d_model);
    if (c->d_model % c->n_heads != 0)
        return lm_errf(in->err,
                       "%s: hidden_size %d is not a multiple of "
                       "num_attention_heads %d",
                       in->file, c->d_model, c->n_heads);
    c->n_kv_heads = c->n_heads;
    c->head_dim = c->d_model / c->n_heads;
    c->norm_eps = 1e-5f; /* OPT's LayerNorms use PyTorch's default */
    return read_ids(in, c);
}

static const struct {
    const char *architecture;
    lm_arch arch;
} hf_architectures[] = {
    {"LlamaForCausalLM", LM_ARCH_LLAMA},
    {"MistralForCausalLM", LM_ARCH_MISTRAL},
    {"GPT2LMHeadModel", LM_ARCH_GPT2},
    {"OPTForCausalLM", LM_ARCH_OPT},
};

static int read_arch(const cfg_in *in, lm_arch *arch) {
    const cJSON *mt = get(in, "model_type");
    if (mt) {
        if (!cJSON_IsString(mt))
            return lm_errf(in->err, "%s: model_type must be a string", in->file);
        if (lm_arch_from_name(mt->valuestring, arch) == 0) return 0;
        return lm_errf(in->err,
                       "%s: model_type \"%.64s\" is unsupported (llama, "
                       "mistral, gpt2 and opt are)",
                       in->file, mt->valuestring);
    }
    const cJSON *archs = get(in, "architectures");
    const cJSON *a0 = cJSON_IsArray(archs) ? archs->child : NULL;
    if (!cJSON_IsString(a0))
        return lm_errf(in->err,
                       "%s: neither model_type nor architectures[0] says which "
                       "model this is",
                       in->file);
    for (size_t i = 0; i < sizeof hf_architectures / sizeof *hf_architectures;
         i++)
        if (strcmp(a0->valuestring, hf_architectures[i].architecture) == 0) {
            *arch = hf_architectures[i].arch;
            return 0;
        }
    return lm_errf(in->err,
                   "%s: architectures[0] \"%.64s\" is unsupported "
                   "(LlamaForCausalLM, MistralForCausalLM, GPT2LMHeadModel, "
                   "OPTForCausalLM are)",
                   in->file, a0->valuestring);
}

int lm_hf_config_parse(lm_config *c, const char *json, size_t len,
                       const char *fname, lm_err *err) {
    const char *file = fname ? fname : "config.json";
    memset(c, 0, sizeof *c);
    c->bos_id = c->eos_id = c->pad_id = -1;
    /* a terminated copy: the caller's bytes may come straight from a file */
    char *text = malloc(len + 1);
    if (!text) return lm_errf(err, "%s: out of memory", file);
    memcpy(text, json, len);
    text[len] = '\0';
    const char *end = NULL;
    cJSON *root = cJSON_ParseWithLengthOpts(text, len + 1, &end, 1);
    size_t at = end ? (size_t)(end - text) : 0;
    free(text);
    if (!root) return lm_errf(err, "%s: not valid JSON (near byte %zu)", file, at);
    cfg_in in = {root, file, err};
    int r = -1;
    if (!cJSON_IsObject(root)) {
        lm_errf(err, "%s: not a JSON object", file);
        goto done;
    }
    if (read_arch(&in, &c->arch)) goto done;
    switch (c->arch) {
    case LM_ARCH_LLAMA:
    case LM_ARCH_MISTRAL: r = read_llama(&in, c); break;
    case LM_ARCH_GPT2: r = read_gpt2(&in, c); break;
    case LM_ARCH_OPT: r = read_opt(&in, c); break;
    default: break;
    }
    if (r == 0 && lm_config_validate(c, err)) r = lm_err_prefix(err, "%s: ", file);
done:
    cJSON_Delete(root);
    return r;
}

/* The whole of a small text file, terminated, or NULL with err set. */
static char *read_small_file(const char *path, size_t limit, size_t *len,
                             lm_err *err) {
    FILE *fp = fopen(path, "rb");
    if (!fp) return lm_errf(err, "%s: cannot open: %s", path, strerror(errno)), NULL;
    size_t cap = 4096, n = 0;
    char *buf = malloc(cap);
    while (buf) {
        if (n + 1 >= cap) {
            if (cap > limit) {
                free(buf);
                fclose(fp);
                return lm_errf(err, "%s: larger than %zu bytes", path, limit),
                       NULL;
            }
            char *nb = realloc(buf, cap * 2);
            if (!nb) {
                free(buf);
                buf = NULL;
                break;
            }
            buf = nb;
            cap *= 2;
        }
        size_t got = fread(buf + n, 1, cap - 1 - n, fp);
        n += got;
        if (got == 0) break;
    }
    int bad = !buf || ferror(fp);
    fclose(fp);
    if (bad) {
        free(buf);
        return lm_errf(err, "%s: read failed", path), NULL;
    }
    buf[n] = '\0';
    *len = n;
    return buf;
}

int lm_hf_config_read(lm_config *c, const char *path, lm_err *err) {
    size_t len;
    char *text = read_small_file(path, (size_t)16 << 20, &len, err);
    if (!text) return -1;
    int r = lm_hf_config_parse(c, text, len, path, err);
    free(text);
    return r;
}

/* ---- writing ---- */

/* The shortest decimal that reads back as the same float, so config.json
 * says 1e-05 rather than 9.99999974737875e-06. */
static cJSON *float_item(float v) {
    char s[48];
    if (v == floorf(v) && fabsf(v) < 1e15f) { /* 10000.0, not 1e+04 */
        snprintf(s, sizeof s, "%.1f", (double)v);
        return cJSON_CreateRaw(s);
    }
    for (int p = 1; p <= 9; p++) {
        snprintf(s, sizeof s, "%.*g", p, (double)v);
        if (strtof(s, NULL) == v) break;
    }
    return cJSON_CreateRaw(s);
}

static cJSON *id_item(int id) {
    return id >= 0 ? cJSON_CreateNumber(id) : cJSON_CreateNull();
}

typedef struct cfg_out {
    cJSON *o;
    int ok;
} cfg_out;

static void put(cfg_out *w, const char *key, cJSON *item) {
    if (!item || !cJSON_AddItemToObject(w->o, key, item)) {
        cJSON_Delete(item);
        w->ok = 0;
    }
}

static void put_int(cfg_out *w, const char *key, int v) {
    put(w, key, cJSON_CreateNumber(v));
}

static void put_bool(cfg_out *w, const char *key, int v) {
    put(w, key, cJSON_CreateBool(v));
}

static void put_str(cfg_out *w, const char *key, const char *v) {
    put(w, key, cJSON_CreateString(v));
}

static const char *architecture_of(lm_arch a) {
    for (size_t i = 0; i < sizeof hf_architectures / sizeof *hf_architectures;
         i++)
        if (hf_architectures[i].arch == a) return hf_architectures[i].architecture;
    return "?";
}

/* What transformers cannot express for each family. */
static int check_writable(const lm_config *c, lm_err *err) {
    if (lm_config_validate(c, err)) return -1;
    int llama = c->arch == LM_ARCH_LLAMA, mistral = c->arch == LM_ARCH_MISTRAL;
    if (llama && c->sliding_window)
        return lm_errf(err, "config: sliding_window needs model_type mistral");
    if (mistral && c->attention_bias)
        return lm_errf(err, "config: HF Mistral has no attention_bias");
    if (!llama && !mistral) {
        if (c->n_kv_heads != c->n_heads || c->attention_bias ||
            c->sliding_window)
            return lm_errf(err,
                           "config: %s cannot express grouped-query attention, "
                           "attention_bias or sliding_window",
                           lm_arch_name(c->arch));
        if (c->arch == LM_ARCH_OPT && c->norm_eps != 1e-5f)
            return lm_errf(err,
                           "config: OPT's LayerNorm epsilon is fixed at 1e-5, "
                           "not %g",
                           (double)c->norm_eps);
    }
    return 0;
}

char *lm_hf_config_to_json(const lm_config *c, lm_err *err) {
    if (check_writable(c, err)) return NULL;
    cfg_out w = {cJSON_CreateObject(), 1};
    if (!w.o) return lm_errf(err, "out of memory"), NULL;
    cJSON *archs = cJSON_CreateArray();
    if (archs)
        cJSON_AddItemToArray(archs, cJSON_CreateString(architecture_of(c->arch)));
    put(&w, "architectures", archs);
    put_str(&w, "model_type", lm_arch_name(c->arch));
    put_int(&w, "vocab_size", c->vocab_size);
    switch (c->arch) {
    case LM_ARCH_LLAMA:
    case LM_ARCH_MISTRAL:
        put_int(&w, "hidden_size", c->d_model);
        put_int(&w, "intermediate_size", c->ffn_dim);
        put_int(&w, "num_hidden_layers", c->n_layers);
        put_int(&w, "num_attention_heads", c->n_heads);
        put_int(&w, "num_key_value_heads", c->n_kv_heads);
        put_int(&w, "head_dim", c->head_dim);
        put_int(&w, "max_position_embeddings", c->max_pos);
        put(&w, "rms_norm_eps", float_item(c->norm_eps));
        put(&w, "rope_theta", float_item(c->rope_theta));
        put(&w, "rope_scaling", cJSON_CreateNull());
        put_str(&w, "hidden_act", "silu");
        if (c->arch == LM_ARCH_LLAMA) {
            put_bool(&w, "attention_bias", c->attention_bias);
            put_bool(&w, "mlp_bias", 0);
        } else {
            put(&w, "sliding_window", c->sliding_window > 0
                                          ? cJSON_CreateNumber(c->sliding_window)
                                          : cJSON_CreateNull());
        }
        break;
    case LM_ARCH_GPT2:
        put_int(&w, "n_embd", c->d_model);
        put_int(&w, "n_layer", c->n_layers);
        put_int(&w, "n_head", c->n_heads);
        put_int(&w, "n_positions", c->max_pos);
        put_int(&w, "n_ctx", c->max_pos); /* read by old transformers */
        put_int(&w, "n_inner", c->ffn_dim);
        put_str(&w, "activation_function", "gelu_new");
        put(&w, "layer_norm_epsilon", float_item(c->norm_eps));
        put_bool(&w, "scale_attn_weights", 1);
        put_bool(&w, "scale_attn_by_inverse_layer_idx", 0);
        break;
    case LM_ARCH_OPT:
        put_int(&w, "hidden_size", c->d_model);
        put_int(&w, "num_hidden_layers", c->n_layers);
        put_int(&w, "num_attention_heads", c->n_heads);
        put_int(&w, "ffn_dim", c->ffn_dim);
        put_int(&w, "max_position_embeddings", c->max_pos);
        put_int(&w, "word_embed_proj_dim", c->d_model);
        put_bool(&w, "do_layer_norm_before", 1);
        put_str(&w, "activation_function", "relu");
        put_bool(&w, "enable_bias", 1);
        put_bool(&w, "layer_norm_elementwise_affine", 1);
        break;
    default: break;
    }
    put_bool(&w, "tie_word_embeddings", c->tie_embeddings);
    put(&w, "bos_token_id", id_item(c->bos_id));
    put(&w, "eos_token_id", id_item(c->eos_id));
    put(&w, "pad_token_id", id_item(c->pad_id));
    put_str(&w, "torch_dtype", "float32");
    put_str(&w, "transformers_version", HF_TRANSFORMERS_VERSION);
    char *s = w.ok ? cJSON_Print(w.o) : NULL;
    cJSON_Delete(w.o);
    if (!s) lm_errf(err, "out of memory writing config.json");
    return s;
}

static char *generation_config_json(const lm_config *c) {
    cfg_out w = {cJSON_CreateObject(), 1};
    if (!w.o) return NULL;
    put_bool(&w, "_from_model_config", 1);
    if (c->bos_id >= 0) put_int(&w, "bos_token_id", c->bos_id);
    if (c->eos_id >= 0) put_int(&w, "eos_token_id", c->eos_id);
    if (c->pad_id >= 0) put_int(&w, "pad_token_id", c->pad_id);
    put_str(&w, "transformers_version", HF_TRANSFORMERS_VERSION);
    char *s = w.ok ? cJSON_Print(w.o) : NULL;
    cJSON_Delete(w.o);
    return s;
}

/* Writes text + newline to dir/name through name.tmp, so a crash never
 * leaves half a file under the real name. */
static int write_text(const char *dir, const char *name, const char *text,
                      lm_err *err) {
    char path[4096], tmp[4200];
    if (snprintf(path, sizeof path, "%s/%s", dir, name) >= (int)sizeof path)
        return lm_errf(err, "%s/%s: path too long", dir, name);
    snprintf(tmp, sizeof tmp, "%s.tmp", path);
    FILE *fp = fopen(tmp, "w");
    if (!fp) return lm_errf(err, "%s: cannot create: %s", tmp, strerror(errno));
    int bad = fputs(text, fp) == EOF || fputc('\n', fp) == EOF;
    bad |= fclose(fp) != 0;
    if (bad) {
        unlink(tmp);
        return lm_errf(err, "%s: write failed", tmp);
    }
    if (rename(tmp, path) != 0) {
        int e = errno;
        unlink(tmp);
        return lm_errf(err, "%s: cannot rename into place: %s", path, strerror(e));
    }
    return 0;
}

int lm_hf_config_write(const lm_config *c, const char *dir, lm_err *err) {
    char *cfg = lm_hf_config_to_json(c, err);
    if (!cfg) return lm_err_prefix(err, "%s/config.json: ", dir);
    int r = write_text(dir, "config.json", cfg, err);
    free(cfg);
    if (r) return r;
    char *gen = generation_config_json(c);
    if (!gen) return lm_errf(err, "out of memory writing generation_config.json");
    r = write_text(dir, "generation_config.json", gen, err);
    free(gen);
    return r;
}
