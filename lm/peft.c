/* LoRA adapter sets: attach by HF module name, merge, and PEFT's on-disk
 * format (adapter_model.safetensors + adapter_config.json). */
#include "peft.h"

#include <cjson/cJSON.h>
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "safetensors.h"

#define PEFT_PREFIX "base_model.model."
#define PEFT_CONFIG "adapter_config.json"
#define PEFT_WEIGHTS "adapter_model.safetensors"
#define MAX_TARGETS 64
#define MAX_RANK 65536

/* ---- the model's linear layers, by module path ---- */

typedef struct module {
    lm_linear *lin;
    char path[112];         /* weight name without ".weight" */
    int fused_qkv;          /* GPT-2 c_attn */
} module;

/* Every linear layer of the blocks, in layer order; NULL on out of memory. */
static module *list_modules(lm_model *m, int *n) {
    module *mods = calloc((size_t)m->cfg.n_layers * 8 + 1, sizeof *mods);
    *n = 0;
    if (!mods) return NULL;
    for (int l = 0; l < m->cfg.n_layers; l++) {
        lm_layer *L = &m->layers[l];
        lm_linear *all[8] = {&L->q, &L->k, &L->v, &L->qkv,
                             &L->o, &L->gate, &L->up, &L->down};
        for (int i = 0; i < 8; i++) {
            if (!all[i]->w) continue;
            module *md = &mods[(*n)++];
            md->lin = all[i];
            md->fused_qkv = all[i] == &L->qkv;
            snprintf(md->path, sizeof md->path, "%s", all[i]->w->name);
            size_t len = strlen(md->path);
            if (len > 7 && strcmp(md->path + len - 7, ".weight") == 0)
                md->path[len - 7] = '\0';
        }
    }
    return mods;
}

static const char *last_component(const char *path) {
    const char *dot = strrchr(path, '.');
    return dot ? dot + 1 : path;
}

/* The distinct last components ("q_proj, k_proj, ...") for error messages. */
static void module_names(const module *mods, int n, char *buf, size_t cap) {
    size_t used = 0;
    buf[0] = '\0';
    for (int i = 0; i < n; i++) {
        const char *name = last_component(mods[i].path);
        int seen = 0;
        for (int j = 0; j < i && !seen; j++)
            seen = strcmp(last_component(mods[j].path), name) == 0;
        if (seen) continue;
        int w = snprintf(buf + used, cap - used, "%s%s", used ? ", " : "", name);
        if (w < 0 || (size_t)w >= cap - used) break;
        used += (size_t)w;
    }
}

/* PEFT's rule for a list of targets: the path equals the target or ends
 * in "." + target. */
static int target_matches(const char *path, const char *t, size_t tlen) {
    size_t pl = strlen(path);
    if (pl == tlen) return memcmp(path, t, tlen) == 0;
    return pl > tlen && path[pl - tlen - 1] == '.' &&
           memcmp(path + pl - tlen, t, tlen) == 0;
}

typedef struct target {
    const char *s;
    size_t len;
} target;

/* Splits "q_proj, v_proj" at commas, trimming spaces; returns the count. */
static int split_targets(const char *s, target *out, int cap) {
    int n = 0;
    while (*s) {
        while (*s == ' ' || *s == ',') s++;
        const char *start = s;
        while (*s && *s != ',') s++;
        const char *end = s;
        while (end > start && end[-1] == ' ') end--;
        if (end == start) continue;
        if (n == cap) return -1;
        out[n++] = (target){start, (size_t)(end - start)};
    }
    return n;
}

const char *lm_lora_default_targets(lm_arch arch) {
    /* PEFT's defaults: GPT-2's fused q|k|v, the others' q and v. */
    return arch == LM_ARCH_GPT2 ? "c_attn" : "q_proj,v_proj";
}

/* ---- the set ---- */

/* Allocates n sites and builds an adapter in each (B = 0). */
static int build_sites(lm_lora_set *set, const module *const *picked, int n,
                       int r, float alpha, float dropout, int rslora,
                       uint64_t seed, lm_err *err) {
    set->sites = calloc((size_t)n, sizeof *set->sites);
    if (!set->sites) return lm_errf(err, "out of memory for %d adapters", n);
    set->n = n;
    for (int i = 0; i < n; i++) {
        lm_lora_site *s = &set->sites[i];
        const lm_tensor *w = picked[i]->lin->w;
        snprintf(s->module, sizeof s->module, "%s", picked[i]->path);
        s->lin = picked[i]->lin;
        if (lm_lora_build(&s->lora, w->shape[1], w->shape[0], r, alpha,
                          dropout, seed + (uint64_t)i, err))
            return lm_err_prefix(err, "%s: ", s->module);
        if (rslora) s->lora.scale = alpha / sqrtf((float)r);
    }
    set->r = r;
    set->alpha = alpha;
    set->dropout = dropout;
    set->rslora = rslora;
    return 0;
}

int lm_lora_attach(lm_model *m, const char *targets, int r, float alpha,
                   float dropout, uint64_t seed, lm_lora_set *set,
                   lm_err *err) {
    memset(set, 0, sizeof *set);
    if (r <= 0 || r > MAX_RANK)
        return lm_errf(err, "LoRA rank %d must lie in [1, %d]", r, MAX_RANK);
    if (!isfinite(alpha))
        return lm_errf(err, "LoRA alpha %g is not finite", (double)alpha);
    if (!(dropout >= 0.0f && dropout < 1.0f))
        return lm_errf(err, "LoRA dropout %g must lie in [0, 1)",
                       (double)dropout);
    if (!targets) targets = lm_lora_default_targets(m->cfg.arch);
    if (strlen(targets) >= sizeof set->targets)
        return lm_errf(err, "LoRA target list of %zu characters is too long",
                       strlen(targets));
    target ts[MAX_TARGETS];
    int nt = split_targets(targets, ts, MAX_TARGETS);
    if (nt < 0)
        return lm_errf(err, "more than %d LoRA targets in \"%s\"",
                       MAX_TARGETS, targets);
    if (nt == 0) return lm_errf(err, "no LoRA target modules given");
    int all_linear = 0;
    for (int t = 0; t < nt; t++)
        if (ts[t].len == 10 && memcmp(ts[t].s, "all-linear", 10) == 0)
            all_linear = 1;

    int nm;
    module *mods = list_modules(m, &nm);
    const module **picked = calloc((size_t)nm + 1, sizeof *picked);
    int hit[MAX_TARGETS] = {0}, np = 0, rc = 0;
    char names[512];
    if (!mods || !picked) {
        rc = lm_errf(err, "out of memory");
        goto done;
    }
    for (int i = 0; i < nm; i++) {
        int match = all_linear;
        for (int t = 0; t < nt; t++)
            if (target_matches(mods[i].path, ts[t].s, ts[t].len))
                match = hit[t] = 1;
        if (!match) continue;
        if (mods[i].lin->lora) {
            rc = lm_errf(err, "%s already has a LoRA adapter", mods[i].path);
            goto done;
        }
        picked[np++] = &mods[i];
    }
    for (int t = 0; t < nt; t++)
        if (!hit[t] && !all_linear) {
            module_names(mods, nm, names, sizeof names);
            rc = lm_errf(err, "LoRA target \"%.*s\" matches no linear layer "
                              "of this %s model (its modules: %s)",
                         (int)ts[t].len, ts[t].s, lm_arch_name(m->cfg.arch),
                         names);
            goto done;
        }
    if (np == 0) {
        rc = lm_errf(err, "LoRA targets \"%s\" select no layer", targets);
        goto done;
    }
    rc = build_sites(set, picked, np, r, alpha, dropout, 0, seed, err);
    if (rc == 0) {
        snprintf(set->targets, sizeof set->targets, "%s", targets);
        set->fan_in_fan_out = m->cfg.arch == LM_ARCH_GPT2;
        lm_lora_set_reattach(set);
    }
done:
    if (rc) lm_lora_set_free(set);
    free(picked);
    free(mods);
    return rc;
}

int lm_lora_set_reserve(lm_lora_set *set, int rows, lm_err *err) {
    for (int i = 0; i < set->n; i++)
        if (lm_lora_reserve(&set->sites[i].lora, rows, err))
            return lm_err_prefix(err, "%s: ", set->sites[i].module);
    return 0;
}

void lm_lora_set_training(lm_lora_set *set, int on) {
    for (int i = 0; i < set->n; i++) set->sites[i].lora.training = on;
}

void lm_lora_set_detach(lm_lora_set *set) {
    for (int i = 0; i < set->n; i++)
        if (set->sites[i].lin->lora == &set->sites[i].lora)
            set->sites[i].lin->lora = NULL;
    set->attached = 0;
}

void lm_lora_set_reattach(lm_lora_set *set) {
    for (int i = 0; i < set->n; i++)
        set->sites[i].lin->lora = &set->sites[i].lora;
    set->attached = 1;
}

void lm_lora_set_merge(lm_lora_set *set) {
    for (int i = 0; i < set->n; i++)
        lm_lora_merge(&set->sites[i].lora, set->sites[i].lin->w);
    lm_lora_set_detach(set);
}

void lm_lora_set_free(lm_lora_set *set) {
    if (!set) return;
    if (set->sites) {
        if (set->attached) lm_lora_set_detach(set);
        for (int i = 0; i < set->n; i++) lm_lora_free(&set->sites[i].lora);
    }
    free(set->sites);
    memset(set, 0, sizeof *set);
}

/* ---- saving ---- */

/* The shortest decimal that reads back as v, so the config says 0.05
 * rather than 0.05000000074505806. */
static cJSON *float_number(float v) {
    char s[32];
    for (int p = 1; p <= 9; p++) {
        snprintf(s, sizeof s, "%.*g", p, (double)v);
        if (strtof(s, NULL) == v) break;
    }
    return cJSON_CreateNumber(strtod(s, NULL));
}

/* target_modules as PEFT would save it: the list given at attach time;
 * "all-linear" expanded to the names it took; failing both, the exact
 * module paths (which match exactly those modules). */
static cJSON *targets_json(const lm_lora_set *set) {
    cJSON *arr = cJSON_CreateArray();
    if (!arr) return NULL;
    target ts[MAX_TARGETS];
    int nt = set->targets[0]
                 ? split_targets(set->targets, ts, MAX_TARGETS) : 0;
    int all_linear = 0;
    for (int t = 0; t < nt; t++)
        if (ts[t].len == 10 && memcmp(ts[t].s, "all-linear", 10) == 0)
            all_linear = 1;
    if (nt > 0 && !all_linear) {
        for (int t = 0; t < nt; t++) {
            char buf[512];
            snprintf(buf, sizeof buf, "%.*s", (int)ts[t].len, ts[t].s);
            cJSON_AddItemToArray(arr, cJSON_CreateString(buf));
        }
        return arr;
    }
    for (int i = 0; i < set->n; i++) {
        const char *name = all_linear ? last_component(set->sites[i].module)
                                      : set->sites[i].module;
        int seen = 0;
        for (int j = 0; j < i && !seen; j++)
            seen = strcmp(all_linear ? last_component(set->sites[j].module)
                                     : set->sites[j].module, name) == 0;
        if (!seen) cJSON_AddItemToArray(arr, cJSON_CreateString(name));
    }
    return arr;
}

/* The keys PEFT has written since its early releases; newer ones (use_dora,
 * rank_pattern, ...) stay out while at their defaults, so older PEFT
 * versions, which refuse unknown keys, load the file too. */
static char *config_json(const lm_lora_set *set, const char *base_model) {
    cJSON *o = cJSON_CreateObject();
    if (!o) return NULL;
    if (base_model)
        cJSON_AddStringToObject(o, "base_model_name_or_path", base_model);
    else
        cJSON_AddNullToObject(o, "base_model_name_or_path");
    cJSON_AddStringToObject(o, "bias", "none");
    cJSON_AddBoolToObject(o, "fan_in_fan_out", set->fan_in_fan_out);
    cJSON_AddBoolToObject(o, "inference_mode", 1);
    cJSON_AddBoolToObject(o, "init_lora_weights", 1);
    cJSON_AddNullToObject(o, "layers_pattern");
    cJSON_AddNullToObject(o, "layers_to_transform");
    cJSON_AddItemToObject(o, "lora_alpha", float_number(set->alpha));
    cJSON_AddItemToObject(o, "lora_dropout", float_number(set->dropout));
    cJSON_AddNullToObject(o, "modules_to_save");
    cJSON_AddStringToObject(o, "peft_type", "LORA");
    cJSON_AddNumberToObject(o, "r", set->r);
    cJSON_AddNullToObject(o, "revision");
    cJSON_AddItemToObject(o, "target_modules", targets_json(set));
    cJSON_AddStringToObject(o, "task_type", "CAUSAL_LM");
    if (set->rslora) cJSON_AddBoolToObject(o, "use_rslora", 1);
    char *text = cJSON_Print(o);
    cJSON_Delete(o);
    return text;
}

/* Writes text to path through path.tmp and a rename. */
static int write_text(const char *path, const char *text, lm_err *err) {
    char tmp[4096];
    if (snprintf(tmp, sizeof tmp, "%s.tmp", path) >= (int)sizeof tmp)
        return lm_errf(err, "%s: path too long", path);
    FILE *fp = fopen(tmp, "wb");
    if (!fp) return lm_errf(err, "%s: cannot create: %s", tmp, strerror(errno));
    size_t len = strlen(text);
    int bad = fwrite(text, 1, len, fp) != len || fputc('\n', fp) == EOF;
    bad |= fclose(fp) != 0;
    if (bad) {
        unlink(tmp);
        return lm_errf(err, "%s: write failed", tmp);
    }
    if (rename(tmp, path) != 0) {
        int e = errno;
        unlink(tmp);
        return lm_errf(err, "%s: cannot rename from %s: %s", path, tmp,
                       strerror(e));
    }
    return 0;
}

int lm_peft_save(const lm_lora_set *set, const char *dir,
                 const char *base_model, lm_err *err) {
    if (set->n <= 0) return lm_errf(err, "no LoRA adapters to save");
    if (mkdir(dir, 0755) != 0 && errno != EEXIST)
        return lm_errf(err, "%s: cannot create the folder: %s", dir,
                       strerror(errno));
    char path[4096];
    lm_st_out *outs = calloc((size_t)set->n * 2, sizeof *outs);
    char (*names)[160] = calloc((size_t)set->n * 2, sizeof *names);
    int rc = 0;
    if (!outs || !names) {
        rc = lm_errf(err, "out of memory");
        goto done;
    }
    for (int i = 0; i < set->n; i++) {
        const lm_lora *l = &set->sites[i].lora;
        const lm_tensor *ab[2] = {&l->A, &l->B};
        for (int k = 0; k < 2; k++) {
            char *nm = names[2 * i + k];
            snprintf(nm, sizeof names[0], PEFT_PREFIX "%s.lora_%c.weight",
                     set->sites[i].module, k ? 'B' : 'A');
            outs[2 * i + k] = (lm_st_out){
                .name = nm, .dtype = LM_ST_F32, .ndim = 2,
                .shape = {ab[k]->shape[0], ab[k]->shape[1]},
                .data = ab[k]->data};
        }
    }
    static const char *const meta[] = {"format", "pt", NULL};
    snprintf(path, sizeof path, "%s/" PEFT_WEIGHTS, dir);
    rc = lm_st_write(path, outs, 2 * set->n, meta, err);
    if (rc) goto done;
    char *text = config_json(set, base_model);
    if (!text) {
        rc = lm_errf(err, "out of memory");
        goto done;
    }
    snprintf(path, sizeof path, "%s/" PEFT_CONFIG, dir);
    rc = write_text(path, text, err);
    free(text);
done:
    free(names);
    free(outs);
    return rc;
}

/* ---- loading ---- */

/* The whole of a small file, NUL-terminated; NULL with err set. */
static char *read_small(const char *path, size_t limit, size_t *len,
                        lm_err *err) {
    FILE *fp = fopen(path, "rb");
    if (!fp) return lm_errf(err, "%s: cannot open: %s", path, strerror(errno)), NULL;
    char *buf = malloc(limit + 1);
    size_t n = buf ? fread(buf, 1, limit + 1, fp) : 0;
    int bad = !buf || ferror(fp);
    fclose(fp);
    if (bad) {
        free(buf);
        return lm_errf(err, "%s: read failed", path), NULL;
    }
    if (n > limit) {
        free(buf);
        return lm_errf(err, "%s: larger than %zu bytes", path, limit), NULL;
    }
    buf[n] = '\0';
    *len = n;
    return buf;
}

/* A value that must be absent, null, false, "none", {} or [] (a feature
 * left off). */
static int is_off(const cJSON *v) {
    if (!v || cJSON_IsNull(v) || cJSON_IsFalse(v)) return 1;
    if (cJSON_IsString(v)) return strcmp(v->valuestring, "none") == 0;
    if (cJSON_IsObject(v) || cJSON_IsArray(v)) return v->child == NULL;
    return 0;
}

typedef struct peft_config {
    int r;
    float alpha, dropout;
    int rslora;
    char targets[512];
} peft_config;

static int parse_config(peft_config *pc, const char *text, size_t len,
                        const char *path, lm_err *err) {
    memset(pc, 0, sizeof *pc);
    cJSON *root = cJSON_ParseWithLength(text, len);
    if (!root || !cJSON_IsObject(root)) {
        cJSON_Delete(root);
        return lm_errf(err, "%s: not a JSON object", path);
    }
    int rc = 0;
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(root, "peft_type");
    if (v && (!cJSON_IsString(v) || strcmp(v->valuestring, "LORA") != 0)) {
        rc = lm_errf(err, "%s: peft_type is %s, not \"LORA\"", path,
                     cJSON_IsString(v) ? v->valuestring : "not a string");
        goto done;
    }
    v = cJSON_GetObjectItemCaseSensitive(root, "r");
    if (!cJSON_IsNumber(v) || v->valuedouble != floor(v->valuedouble) ||
        v->valuedouble < 1 || v->valuedouble > MAX_RANK) {
        rc = lm_errf(err, "%s: \"r\" must be an integer in [1, %d]", path,
                     MAX_RANK);
        goto done;
    }
    pc->r = (int)v->valuedouble;
    pc->alpha = 8.0f; /* PEFT's default */
    v = cJSON_GetObjectItemCaseSensitive(root, "lora_alpha");
    if (v) {
        if (!cJSON_IsNumber(v) || !isfinite(v->valuedouble) ||
            fabs(v->valuedouble) > 1e30) {
            rc = lm_errf(err, "%s: \"lora_alpha\" is not a finite number", path);
            goto done;
        }
        pc->alpha = (float)v->valuedouble;
    }
    v = cJSON_GetObjectItemCaseSensitive(root, "lora_dropout");
    if (v && !cJSON_IsNull(v)) {
        if (!cJSON_IsNumber(v) || !(v->valuedouble >= 0.0 && v->valuedouble < 1.0)) {
            rc = lm_errf(err, "%s: \"lora_dropout\" must lie in [0, 1)", path);
            goto done;
        }
        pc->dropout = (float)v->valuedouble;
    }
    v = cJSON_GetObjectItemCaseSensitive(root, "use_rslora");
    if (v && !cJSON_IsBool(v)) {
        rc = lm_errf(err, "%s: \"use_rslora\" is not a boolean", path);
        goto done;
    }
    pc->rslora = cJSON_IsTrue(v);
    /* Features that change the computation and that we do not implement. */
    static const char *const unsupported[] = {
        "use_dora", "bias", "rank_pattern", "alpha_pattern",
        "modules_to_save", "layer_replication", "megatron_config"};
    for (size_t i = 0; i < sizeof unsupported / sizeof *unsupported; i++)
        if (!is_off(cJSON_GetObjectItemCaseSensitive(root, unsupported[i]))) {
            rc = lm_errf(err, "%s: \"%s\" is set; only plain LoRA adapters "
                              "(no %s) are supported", path, unsupported[i],
                         unsupported[i]);
            goto done;
        }
    /* target_modules is informative (the tensors say which modules are
     * adapted); keep a list form to save it back, drop a regex. */
    v = cJSON_GetObjectItemCaseSensitive(root, "target_modules");
    if (cJSON_IsArray(v)) {
        size_t used = 0;
        const cJSON *e;
        cJSON_ArrayForEach(e, v) {
            if (!cJSON_IsString(e)) {
                rc = lm_errf(err, "%s: \"target_modules\" holds a non-string",
                             path);
                goto done;
            }
            size_t n = strlen(e->valuestring);
            if (strchr(e->valuestring, ',') ||
                used + n + 2 > sizeof pc->targets) {
                used = 0; /* not representable: save exact paths instead */
                break;
            }
            if (used) pc->targets[used++] = ',';
            memcpy(pc->targets + used, e->valuestring, n);
            used += n;
        }
        pc->targets[used] = '\0';
    } else if (cJSON_IsString(v) && strcmp(v->valuestring, "all-linear") == 0) {
        snprintf(pc->targets, sizeof pc->targets, "all-linear");
    } else if (v && !cJSON_IsString(v) && !cJSON_IsNull(v)) {
        rc = lm_errf(err, "%s: \"target_modules\" is neither a list nor a "
                          "string", path);
        goto done;
    }
done:
    cJSON_Delete(root);
    return rc;
}

/* Splits "base_model.model.<module>.lora_X.weight" into module and X;
 * 0 on success. */
static int parse_tensor_name(const char *name, char *module, size_t cap,
                             char *which) {
    size_t pl = strlen(PEFT_PREFIX), n = strlen(name);
    static const char suffix[] = ".lora_?.weight";
    size_t sl = sizeof suffix - 1;
    if (n <= pl + sl || strncmp(name, PEFT_PREFIX, pl) != 0) return -1;
    const char *s = name + n - sl;
    if (strncmp(s, ".lora_", 6) != 0 || strcmp(s + 7, ".weight") != 0 ||
        (s[6] != 'A' && s[6] != 'B'))
        return -1;
    size_t ml = n - pl - sl;
    if (ml + 1 > cap) return -1;
    memcpy(module, name + pl, ml);
    module[ml] = '\0';
    *which = s[6];
    return 0;
}

int lm_peft_load(lm_model *m, const char *dir, lm_lora_set *set,
                 lm_err *err) {
    memset(set, 0, sizeof *set);
    char path[4096];
    snprintf(path, sizeof path, "%s/" PEFT_CONFIG, dir);
    size_t len;
    char *text = read_small(path, (size_t)1 << 20, &len, err);
    if (!text) return -1;
    peft_config pc;
    int rc = parse_config(&pc, text, len, path, err);
    free(text);
    if (rc) return rc;

    snprintf(path, sizeof path, "%s/" PEFT_WEIGHTS, dir);
    lm_st_file f;
    if (lm_st_open(&f, path, err)) return -1;
    int nm = 0;
    module *mods = list_modules(m, &nm);
    /* per module: the index of its lora_A and lora_B tensors, or -1 */
    int *ia = malloc(((size_t)nm + 1) * sizeof *ia);
    int *ib = malloc(((size_t)nm + 1) * sizeof *ib);
    const module **picked = calloc((size_t)nm + 1, sizeof *picked);
    if (!mods || !ia || !ib || !picked) {
        rc = lm_errf(err, "out of memory");
        goto done;
    }
    for (int i = 0; i < nm; i++) ia[i] = ib[i] = -1;
    for (int t = 0; t < f.n_tensors; t++) {
        const lm_st_tensor *st = &f.tensors[t];
        char mod[112], which;
        if (parse_tensor_name(st->name, mod, sizeof mod, &which)) {
            rc = lm_errf(err, "%s: tensor \"%s\" is not a LoRA weight "
                              "(base_model.model.<module>.lora_A/B.weight)",
                         path, st->name);
            goto done;
        }
        int k = 0;
        while (k < nm && strcmp(mods[k].path, mod) != 0) k++;
        if (k == nm) {
            rc = lm_errf(err, "%s: tensor \"%s\" names module %s, which is "
                              "not a linear layer of this %s model", path,
                         st->name, mod, lm_arch_name(m->cfg.arch));
            goto done;
        }
        const lm_tensor *w = mods[k].lin->w;
        int64_t want0 = which == 'A' ? pc.r : w->shape[0];
        int64_t want1 = which == 'A' ? w->shape[1] : pc.r;
        if (st->ndim != 2 || st->shape[0] != want0 || st->shape[1] != want1) {
            rc = lm_errf(err, "%s: tensor \"%s\" should have shape [%lld, "
                              "%lld] (r = %d, layer [%d, %d])", path, st->name,
                         (long long)want0, (long long)want1, pc.r,
                         w->shape[0], w->shape[1]);
            goto done;
        }
        int *slot = which == 'A' ? &ia[k] : &ib[k];
        if (*slot >= 0) { /* cannot happen in a valid header; be safe */
            rc = lm_errf(err, "%s: tensor \"%s\" given twice", path, st->name);
            goto done;
        }
        *slot = t;
    }
    int np = 0;
    for (int k = 0; k < nm; k++) {
        if ((ia[k] < 0) != (ib[k] < 0)) {
            rc = lm_errf(err, "%s: module %s has lora_%c but no lora_%c", path,
                         mods[k].path, ia[k] >= 0 ? 'A' : 'B',
                         ia[k] >= 0 ? 'B' : 'A');
            goto done;
        }
        if (ia[k] < 0) continue;
        if (mods[k].lin->lora) {
            rc = lm_errf(err, "%s already has a LoRA adapter", mods[k].path);
            goto done;
        }
        picked[np] = &mods[k];
        ia[np] = ia[k]; /* compact in step with picked (np <= k) */
        ib[np] = ib[k];
        np++;
    }
    if (np == 0) {
        rc = lm_errf(err, "%s: holds no LoRA weights", path);
        goto done;
    }
    rc = build_sites(set, picked, np, pc.r, pc.alpha, pc.dropout, pc.rslora,
                     0, err);
    for (int i = 0; rc == 0 && i < np; i++) {
        lm_lora *l = &set->sites[i].lora;
        if (lm_st_to_f32(&f.tensors[ia[i]], l->A.data, err) ||
            lm_st_to_f32(&f.tensors[ib[i]], l->B.data, err))
            rc = lm_err_prefix(err, "%s: ", path);
    }
    if (rc == 0) {
        snprintf(set->targets, sizeof set->targets, "%s", pc.targets);
        set->fan_in_fan_out = m->cfg.arch == LM_ARCH_GPT2;
        lm_lora_set_reattach(set);
    }
done:
    if (rc) lm_lora_set_free(set);
    free(picked);
    free(ib);
    free(ia);
    free(mods);
    lm_st_close(&f);
    return rc;
}
