/* Grid configuration: read with cJSON, validated field by field, sweeps
 * expanded, and the whole config recorded as canonical JSON + SHA-256. */
#include "grid.h"

#include <cjson/cJSON.h>
#include <errno.h>
#include <limits.h>
#include <math.h>
#include <openssl/evp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "dataset.h"
#include "extraction.h"
#include "unit.h"
#include "zoo.h"

/* ---- small growable string ---- */

typedef struct sbuf {
    char *s;
    size_t len, cap;
    int oom;
} sbuf;

static void sb_put(sbuf *b, const char *text, size_t n) {
    if (b->oom) return;
    if (b->len + n + 1 > b->cap) {
        size_t cap = b->cap ? b->cap : 256;
        while (b->len + n + 1 > cap) cap *= 2;
        char *s = realloc(b->s, cap);
        if (!s) {
            b->oom = 1;
            return;
        }
        b->s = s;
        b->cap = cap;
    }
    memcpy(b->s + b->len, text, n);
    b->len += n;
    b->s[b->len] = '\0';
}
static void sb_str(sbuf *b, const char *text) { sb_put(b, text, strlen(text)); }

/* ---- canonical JSON and hashing ---- */

static void put_json_string(sbuf *b, const char *s) {
    sb_put(b, "\"", 1);
    for (; *s; s++) {
        unsigned char c = (unsigned char)*s;
        char esc[8];
        if (c == '"' || c == '\\') {
            esc[0] = '\\';
            esc[1] = (char)c;
            sb_put(b, esc, 2);
        } else if (c < 0x20) {
            snprintf(esc, sizeof esc, "\\u%04x", c);
            sb_str(b, esc);
        } else {
            sb_put(b, (const char *)&c, 1);
        }
    }
    sb_put(b, "\"", 1);
}

static void put_number(sbuf *b, double x) {
    char t[40];
    if (x == floor(x) && fabs(x) < 9e15)
        snprintf(t, sizeof t, "%lld", (long long)x);
    else
        snprintf(t, sizeof t, "%.17g", x);
    sb_str(b, t);
}

static int key_cmp(const void *a, const void *b) {
    const cJSON *x = *(const cJSON *const *)a, *y = *(const cJSON *const *)b;
    return strcmp(x->string, y->string);
}

static void put_canonical(sbuf *b, const cJSON *j) {
    if (cJSON_IsObject(j)) {
        int n = cJSON_GetArraySize(j);
        const cJSON **kids = malloc((size_t)(n ? n : 1) * sizeof *kids);
        if (!kids) {
            b->oom = 1;
            return;
        }
        int k = 0;
        for (const cJSON *c = j->child; c; c = c->next) kids[k++] = c;
        qsort(kids, (size_t)k, sizeof *kids, key_cmp);
        sb_put(b, "{", 1);
        for (int i = 0; i < k; i++) {
            if (i) sb_put(b, ",", 1);
            put_json_string(b, kids[i]->string);
            sb_put(b, ":", 1);
            put_canonical(b, kids[i]);
        }
        sb_put(b, "}", 1);
        free(kids);
    } else if (cJSON_IsArray(j)) {
        sb_put(b, "[", 1);
        for (const cJSON *c = j->child; c; c = c->next) {
            if (c != j->child) sb_put(b, ",", 1);
            put_canonical(b, c);
        }
        sb_put(b, "]", 1);
    } else if (cJSON_IsString(j)) {
        put_json_string(b, j->valuestring);
    } else if (cJSON_IsNumber(j)) {
        put_number(b, j->valuedouble);
    } else if (cJSON_IsTrue(j)) {
        sb_str(b, "true");
    } else if (cJSON_IsFalse(j)) {
        sb_str(b, "false");
    } else {
        sb_str(b, "null");
    }
}

char *su_canonical_json(const char *text) {
    cJSON *j = cJSON_Parse(text);
    if (!j) return NULL;
    sbuf b = {0};
    put_canonical(&b, j);
    cJSON_Delete(j);
    if (b.oom) {
        free(b.s);
        return NULL;
    }
    return b.s;
}

void su_sha256_hex(const void *data, size_t len, char out[65]) {
    unsigned char md[EVP_MAX_MD_SIZE];
    unsigned int n = 0;
    EVP_Digest(data, len, md, &n, EVP_sha256(), NULL);
    for (unsigned i = 0; i < 32; i++) snprintf(out + 2 * i, 3, "%02x", md[i]);
    out[64] = '\0';
}

/* ---- validation helpers ---- */

/* Every error starts "<file>: <field path>: ". */
#define FAIL(path, ...) field_err(err, g->source, path, __VA_ARGS__)
static int field_err(lm_err *err, const char *src, const char *path,
                     const char *fmt, ...) __attribute__((format(printf, 4, 5)));
static int field_err(lm_err *err, const char *src, const char *path,
                     const char *fmt, ...) {
    char msg[LM_ERR_MSG];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    return lm_errf(err, "%s: %s: %s", src, path, msg);
}

/* Rejects keys the schema does not know (typo protection) and repeats. */
static int check_keys(const su_grid *g, const cJSON *obj, const char *path,
                      const char *const *known, lm_err *err) {
    for (const cJSON *c = obj->child; c; c = c->next) {
        int ok = 0;
        for (const char *const *k = known; *k; k++)
            if (!strcmp(c->string, *k)) ok = 1;
        if (!ok) {
            char list[512] = "";
            for (const char *const *k = known; *k; k++) {
                strncat(list, k == known ? "" : ", ", sizeof list - strlen(list) - 1);
                strncat(list, *k, sizeof list - strlen(list) - 1);
            }
            return FAIL(path, "unknown key '%s' (known: %s)", c->string, list);
        }
        for (const cJSON *d = c->next; d; d = d->next)
            if (!strcmp(c->string, d->string))
                return FAIL(path, "key '%s' appears twice", c->string);
    }
    return 0;
}

static int get_string(const su_grid *g, const cJSON *obj, const char *key,
                      const char *path, const char *def, char *out, size_t cap,
                      lm_err *err) {
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(obj, key);
    char p[256];
    snprintf(p, sizeof p, "%s%s%s", path, path[0] ? "." : "", key);
    if (!v) {
        if (!def) return FAIL(p, "is required");
        snprintf(out, cap, "%s", def);
        return 0;
    }
    if (!cJSON_IsString(v)) return FAIL(p, "must be a string");
    if (!v->valuestring[0]) return FAIL(p, "must not be empty");
    if (strlen(v->valuestring) >= cap)
        return FAIL(p, "is longer than %zu bytes", cap - 1);
    snprintf(out, cap, "%s", v->valuestring);
    return 0;
}

static int get_number(const su_grid *g, const cJSON *obj, const char *key,
                      const char *path, double def, double lo, double hi,
                      int integer, double *out, lm_err *err) {
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(obj, key);
    char p[256];
    snprintf(p, sizeof p, "%s.%s", path, key);
    if (!v) {
        *out = def;
        return 0;
    }
    if (!cJSON_IsNumber(v))
        return FAIL(p, "must be %s", integer ? "an integer" : "a number");
    double x = v->valuedouble;
    if (integer && x != floor(x)) return FAIL(p, "%g is not an integer", x);
    if (x < lo || x > hi) return FAIL(p, "%g is outside [%g, %g]", x, lo, hi);
    *out = x;
    return 0;
}

/* A parameter value as sm_params_parse reads it (exact), and as a label
 * shows it (short). */
static int value_text(const su_grid *g, const cJSON *v, const char *path,
                      char *exact, char *shown, size_t cap, lm_err *err) {
    if (cJSON_IsBool(v)) {
        snprintf(exact, cap, "%s", cJSON_IsTrue(v) ? "true" : "false");
        snprintf(shown, cap, "%s", exact);
    } else if (cJSON_IsNumber(v)) {
        double x = v->valuedouble;
        if (x == floor(x) && fabs(x) < 9e15)
            snprintf(exact, cap, "%lld", (long long)x);
        else
            snprintf(exact, cap, "%.17g", x);
        snprintf(shown, cap, "%.6g", x);
    } else if (cJSON_IsString(v)) {
        if (strlen(v->valuestring) >= cap)
            return FAIL(path, "is longer than %zu bytes", cap - 1);
        snprintf(exact, cap, "%s", v->valuestring);
        snprintf(shown, cap, "%s", v->valuestring);
    } else {
        return FAIL(path, "must be a number, string or boolean (a list "
                          "of them is a sweep)");
    }
    return 0;
}

/* One parameter of an entry: its name and the values it sweeps over. */
typedef struct sweep_axis {
    const char *name;
    int n;
    char (*exact)[SM_PARAM_STR];
    char (*shown)[SM_PARAM_STR];
} sweep_axis;

static void free_axes(sweep_axis *ax, int n) {
    for (int i = 0; i < n; i++) {
        free(ax[i].exact);
        free(ax[i].shown);
    }
    free(ax);
}

enum { MAX_SETS_PER_ENTRY = 100000 };

/* Expands entry `params` (may be NULL) against the table of `m` into
 * *sets. Each value is checked alone first so an error names its exact
 * position (params.rank[1]), then every combination as a whole. */
static int expand_params(const su_grid *g, const sm_method *m,
                         const cJSON *params, const char *path, su_pset **sets,
                         int *n_sets, lm_err *err) {
    *sets = NULL;
    *n_sets = 0;
    char ppath[256];
    snprintf(ppath, sizeof ppath, "%s.params", path);
    int n_ax = 0;
    if (params) {
        if (!cJSON_IsObject(params)) return FAIL(ppath, "must be an object");
        n_ax = cJSON_GetArraySize(params);
        if (n_ax > SM_MAX_PARAMS)
            return FAIL(ppath, "has %d entries; at most %d", n_ax, SM_MAX_PARAMS);
        for (const cJSON *c = params->child; c; c = c->next)
            for (const cJSON *d = c->next; d; d = d->next)
                if (!strcmp(c->string, d->string))
                    return FAIL(ppath, "key '%s' appears twice", c->string);
    }
    sweep_axis *ax = calloc((size_t)(n_ax ? n_ax : 1), sizeof *ax);
    if (!ax) return lm_errf(err, "out of memory");
    long total = 1;
    int a = 0;
    for (const cJSON *c = params ? params->child : NULL; c; c = c->next, a++) {
        char vpath[320];
        snprintf(vpath, sizeof vpath, "%s.%s", ppath, c->string);
        int is_list = cJSON_IsArray(c);
        int n = is_list ? cJSON_GetArraySize(c) : 1;
        if (n == 0) {
            free_axes(ax, n_ax);
            return FAIL(vpath, "an empty list sweeps over nothing");
        }
        ax[a].name = c->string;
        ax[a].n = n;
        ax[a].exact = calloc((size_t)n, sizeof *ax[a].exact);
        ax[a].shown = calloc((size_t)n, sizeof *ax[a].shown);
        if (!ax[a].exact || !ax[a].shown) {
            free_axes(ax, n_ax);
            return lm_errf(err, "out of memory");
        }
        int k = 0;
        for (const cJSON *v = is_list ? c->child : c; v && k < n; v = v->next, k++) {
            char ipath[340];
            if (is_list) snprintf(ipath, sizeof ipath, "%s[%d]", vpath, k);
            else snprintf(ipath, sizeof ipath, "%s", vpath);
            if (value_text(g, v, ipath, ax[a].exact[k], ax[a].shown[k], SM_PARAM_STR, err)) {
                free_axes(ax, n_ax);
                return -1;
            }
            for (int j = 0; j < k; j++)
                if (!strcmp(ax[a].exact[j], ax[a].exact[k])) {
                    free_axes(ax, n_ax);
                    return FAIL(ipath, "repeats the value at [%d]", j);
                }
            char assign[SM_PARAM_STR + 80];
            snprintf(assign, sizeof assign, "%s=%s", c->string, ax[a].exact[k]);
            const char *one[1] = {assign};
            sm_params tmp;
            lm_err e1 = {{0}};
            if (sm_params_parse(m, one, 1, &tmp, &e1)) {
                free_axes(ax, n_ax);
                return FAIL(ipath, "%s", e1.msg);
            }
        }
        total *= n;
        if (total > MAX_SETS_PER_ENTRY) {
            free_axes(ax, n_ax);
            return FAIL(ppath, "the sweep expands to more than %d parameter sets",
                        MAX_SETS_PER_ENTRY);
        }
    }
    su_pset *out = calloc((size_t)total, sizeof *out);
    if (!out) {
        free_axes(ax, n_ax);
        return lm_errf(err, "out of memory");
    }
    /* Odometer over the axes, last axis fastest. */
    int idx[SM_MAX_PARAMS] = {0};
    for (long s = 0; s < total; s++) {
        char assigns[SM_MAX_PARAMS][SM_PARAM_STR + 80];
        const char *ptrs[SM_MAX_PARAMS];
        size_t gl = 0;
        out[s].given[0] = '\0';
        for (int i = 0; i < n_ax; i++) {
            snprintf(assigns[i], sizeof assigns[i], "%s=%s", ax[i].name,
                     ax[i].exact[idx[i]]);
            ptrs[i] = assigns[i];
            gl += (size_t)snprintf(out[s].given + gl,
                                   gl < sizeof out[s].given ? sizeof out[s].given - gl : 0,
                                   "%s%s=%s", i ? "," : "", ax[i].name,
                                   ax[i].shown[idx[i]]);
        }
        if (gl >= sizeof out[s].given) out[s].given[0] = '\0'; /* too long to show */
        lm_err e1 = {{0}};
        if (sm_params_parse(m, ptrs, n_ax, &out[s].params, &e1) ||
            sm_params_json(&out[s].params, out[s].json, sizeof out[s].json)) {
            free(out);
            free_axes(ax, n_ax);
            return FAIL(ppath, "%s", e1.msg[0] ? e1.msg : "parameters too long for a result row");
        }
        for (int i = n_ax - 1; i >= 0; i--) {
            if (++idx[i] < ax[i].n) break;
            idx[i] = 0;
        }
    }
    free_axes(ax, n_ax);
    *sets = out;
    *n_sets = (int)total;
    return 0;
}

/* ---- sections ---- */

/* "data": {"name": "path" | {"path": P, "format": F}, ...} appended to the
 * grid's pool. */
static int parse_data(su_grid *g, const cJSON *obj, const char *path, const char *base_dir,
                      lm_err *err) {
    if (!obj) return 0;
    if (!cJSON_IsObject(obj)) return FAIL(path, "must be an object: {\"name\": \"path\", ...}");
    int n = cJSON_GetArraySize(obj);
    su_data *d = realloc(g->data, (size_t)(g->n_data + n + 1) * sizeof *d);
    if (!d) return lm_errf(err, "out of memory");
    g->data = d;
    for (const cJSON *c = obj->child; c; c = c->next) {
        char p[160], given[SU_PATH_LEN] = "";
        snprintf(p, sizeof p, "%s.%s", path, c->string);
        su_data *x = &g->data[g->n_data];
        memset(x, 0, sizeof *x);
        if (!c->string[0] || strlen(c->string) >= sizeof x->name) return FAIL(p, "bad data set name");
        for (const char *q = c->string; *q; q++)
            if (!((*q >= 'a' && *q <= 'z') || (*q >= '0' && *q <= '9') || *q == '_' || *q == '-'))
                return FAIL(p, "data set names are [a-z0-9_-]+");
        for (const cJSON *e = c->next; e; e = e->next)
            if (!strcmp(c->string, e->string)) return FAIL(path, "key '%s' appears twice", c->string);
        snprintf(x->name, sizeof x->name, "%s", c->string);
        if (cJSON_IsString(c)) {
            if (!c->valuestring[0] || strlen(c->valuestring) >= sizeof given)
                return FAIL(p, "must be a path");
            snprintf(given, sizeof given, "%s", c->valuestring);
        } else if (cJSON_IsObject(c)) {
            static const char *const keys[] = {"path", "format", NULL};
            if (check_keys(g, c, p, keys, err) ||
                get_string(g, c, "path", p, NULL, given, sizeof given, err) ||
                get_string(g, c, "format", p, "", x->format, sizeof x->format, err))
                return -1;
            ds_format f;
            lm_err e1 = {{0}};
            if (x->format[0] && ds_format_parse(x->format, &f, &e1)) {
                char fp[200];
                snprintf(fp, sizeof fp, "%s.format", p);
                return FAIL(fp, "%s", e1.msg);
            }
        } else {
            return FAIL(p, "must be a path or {\"path\", \"format\"}");
        }
        char joined[2 * SU_PATH_LEN];
        if (given[0] == '/' || !base_dir) snprintf(joined, sizeof joined, "%s", given);
        else snprintf(joined, sizeof joined, "%s/%s", base_dir, given);
        char *abs = realpath(joined, NULL);
        if (!abs) return FAIL(p, "%s: %s", joined, strerror(errno));
        if (strlen(abs) >= sizeof x->path) {
            free(abs);
            return FAIL(p, "path too long");
        }
        snprintf(x->path, sizeof x->path, "%s", abs);
        free(abs);
        g->n_data++;
    }
    return 0;
}


static int looks_like_path(const char *s) {
    return strchr(s, '/') || s[0] == '.' || s[0] == '~';
}

static int parse_models(su_grid *g, const cJSON *arr, const char *base_dir,
                        lm_err *err) {
    if (!arr) return FAIL("models", "is required (a list of zoo names or paths)");
    if (!cJSON_IsArray(arr) || cJSON_GetArraySize(arr) == 0)
        return FAIL("models", "must be a non-empty list");
    int n = cJSON_GetArraySize(arr);
    g->models = calloc((size_t)n, sizeof *g->models);
    if (!g->models) return lm_errf(err, "out of memory");
    int i = 0;
    for (const cJSON *c = arr->child; c; c = c->next, i++) {
        char path[64];
        snprintf(path, sizeof path, "models[%d]", i);
        su_model *mo = &g->models[i];
        char given[SU_PATH_LEN] = "", name[RS_MODEL_LEN] = "";
        if (cJSON_IsString(c)) {
            if (!c->valuestring[0]) return FAIL(path, "must not be empty");
            if (strlen(c->valuestring) >= sizeof given)
                return FAIL(path, "is longer than %zu bytes", sizeof given - 1);
            snprintf(given, sizeof given, "%s", c->valuestring);
        } else if (cJSON_IsObject(c)) {
            static const char *const keys[] = {"name", "path", NULL};
            if (check_keys(g, c, path, keys, err)) return -1;
            if (get_string(g, c, "path", path, NULL, given, sizeof given, err) ||
                get_string(g, c, "name", path, "", name, sizeof name, err))
                return -1;
        } else {
            return FAIL(path, "must be a zoo name, a path, or {\"name\", \"path\"}");
        }
        const char *label = name[0] ? name : given;
        if (strlen(label) >= sizeof mo->label)
            return FAIL(path, "'%.40s...' is too long for a result row; give the "
                              "model a short \"name\"", label);
        snprintf(mo->label, sizeof mo->label, "%s", label);
        if (g->debug) {
            /* Debug models are names only: nothing is loaded. */
            snprintf(mo->spec, sizeof mo->spec, "%s", given);
        } else if (looks_like_path(given) || !su_zoo_find(given)) {
            char joined[2 * SU_PATH_LEN];
            if (given[0] == '/' || !base_dir)
                snprintf(joined, sizeof joined, "%s", given);
            else
                snprintf(joined, sizeof joined, "%s/%s", base_dir, given);
            char *abs = realpath(joined, NULL);
            if (!abs) {
                if (looks_like_path(given))
                    return FAIL(path, "%s: %s", joined, strerror(errno));
            {
                char zoo[512] = "";
                for (int z = 0; z < su_zoo_count(); z++) {
                    strncat(zoo, z ? ", " : "", sizeof zoo - strlen(zoo) - 1);
                    strncat(zoo, su_zoo_at(z)->name, sizeof zoo - strlen(zoo) - 1);
                }
                return FAIL(path, "'%s' is neither a zoo model nor an existing "
                                  "path (zoo: %s)", given, zoo[0] ? zoo : "empty");
            }
            }
            if (strlen(abs) >= sizeof mo->spec) {
                free(abs);
                return FAIL(path, "path too long");
            }
            snprintf(mo->spec, sizeof mo->spec, "%s", abs);
            free(abs);
            mo->is_path = 1;
        } else {
            snprintf(mo->spec, sizeof mo->spec, "%s", given);
        }
        for (int j = 0; j < i; j++)
            if (!strcmp(g->models[j].label, mo->label))
                return FAIL(path, "'%s' is already models[%d]; give one a "
                                  "different \"name\"", mo->label, j);
    }
    g->n_models = n;
    return 0;
}

static int parse_fingerprints(su_grid *g, const cJSON *arr, lm_err *err) {
    if (!arr) return FAIL("fingerprints", "is required (e.g. [{\"type\": \"none\"}])");
    if (!cJSON_IsArray(arr) || cJSON_GetArraySize(arr) == 0)
        return FAIL("fingerprints", "must be a non-empty list");
    int i = 0;
    for (const cJSON *c = arr->child; c; c = c->next, i++) {
        char path[64];
        snprintf(path, sizeof path, "fingerprints[%d]", i);
        char type[SU_TYPE_LEN], name[RS_FP_LEN];
        const cJSON *params = NULL;
        if (cJSON_IsString(c)) {
            if (strlen(c->valuestring) >= sizeof type)
                return FAIL(path, "type name too long");
            snprintf(type, sizeof type, "%s", c->valuestring);
            name[0] = '\0';
        } else if (cJSON_IsObject(c)) {
            static const char *const keys[] = {"type", "name", "params", NULL};
            if (check_keys(g, c, path, keys, err) ||
                get_string(g, c, "type", path, NULL, type, sizeof type, err) ||
                get_string(g, c, "name", path, "", name, sizeof name, err))
                return -1;
            params = cJSON_GetObjectItemCaseSensitive(c, "params");
        } else {
            return FAIL(path, "must be a type name or {\"type\", \"name\", \"params\"}");
        }
        const su_fp_type *ft = su_fp_type_find(type, g->debug);
        if (!ft)
            return FAIL(path, "unknown fingerprint type '%s' for the %s track "
                              "(known: %s)", type, g->debug ? "debug" : "real",
                        su_fp_type_list(g->debug));
        sm_method table = {.abi = SM_METHOD_ABI, .name = ft->name,
                           .params = ft->params, .n_params = ft->n_params};
        su_pset *sets;
        int n_sets;
        if (expand_params(g, &table, params, path, &sets, &n_sets, err)) return -1;
        su_fingerprint *fps = realloc(g->fps, (size_t)(g->n_fps + n_sets) * sizeof *fps);
        if (!fps) {
            free(sets);
            return lm_errf(err, "out of memory");
        }
        g->fps = fps;
        for (int s = 0; s < n_sets; s++) {
            su_fingerprint *f = &g->fps[g->n_fps + s];
            memset(f, 0, sizeof *f);
            snprintf(f->type, sizeof f->type, "%s", type);
            f->entry = i;
            f->set = sets[s];
            const char *base = name[0] ? name : type;
            if (n_sets > 1 && sets[s].given[0] &&
                strlen(base) + strlen(sets[s].given) + 3 <= sizeof f->label)
                snprintf(f->label, sizeof f->label, "%.*s[%.*s]", (int)strlen(base), base,
                         (int)(sizeof f->label - strlen(base) - 3), sets[s].given);
            else if (n_sets > 1)
                snprintf(f->label, sizeof f->label, "%.50s#%d", base, s + 1);
            else
                snprintf(f->label, sizeof f->label, "%s", base);
        }
        free(sets);
        for (int s = g->n_fps; s < g->n_fps + n_sets; s++)
            for (int j = 0; j < s; j++) {
                if (!strcmp(g->fps[j].type, g->fps[s].type) &&
                    !strcmp(g->fps[j].set.json, g->fps[s].set.json))
                    return FAIL(path, "repeats fingerprints[%d] (same type and "
                                      "parameters)", g->fps[j].entry);
                if (!strcmp(g->fps[j].label, g->fps[s].label))
                    return FAIL(path, "label '%s' is already used by fingerprints[%d]; "
                                      "give it a distinct \"name\"",
                                g->fps[s].label, g->fps[j].entry);
            }
        g->n_fps += n_sets;
    }
    return 0;
}

static int parse_methods(su_grid *g, const cJSON *arr, const cJSON *top_data,
                         const char *base_dir, lm_err *err) {
    if (!arr) return FAIL("methods", "is required (e.g. [{\"name\": \"none\"}])");
    if (!cJSON_IsArray(arr) || cJSON_GetArraySize(arr) == 0)
        return FAIL("methods", "must be a non-empty list");
    int i = 0;
    for (const cJSON *c = arr->child; c; c = c->next, i++) {
        char path[64];
        snprintf(path, sizeof path, "methods[%d]", i);
        char name[RS_METHOD_LEN];
        const cJSON *params = NULL, *entry_data = NULL;
        if (cJSON_IsString(c)) {
            if (strlen(c->valuestring) >= sizeof name) return FAIL(path, "name too long");
            snprintf(name, sizeof name, "%s", c->valuestring);
        } else if (cJSON_IsObject(c)) {
            static const char *const keys[] = {"name", "params", "data", NULL};
            if (check_keys(g, c, path, keys, err) ||
                get_string(g, c, "name", path, NULL, name, sizeof name, err))
                return -1;
            params = cJSON_GetObjectItemCaseSensitive(c, "params");
            entry_data = cJSON_GetObjectItemCaseSensitive(c, "data");
        } else {
            return FAIL(path, "must be a method name or {\"name\", \"params\"}");
        }
        const sm_method *m = g->debug ? su_debug_method(name) : sm_method_find(name);
        if (!m) {
            char list[512] = "";
            if (g->debug) {
                snprintf(list, sizeof list, "debug");
            } else {
                for (int k = 0; k < sm_method_count(); k++) {
                    strncat(list, k ? ", " : "", sizeof list - strlen(list) - 1);
                    strncat(list, sm_method_at(k)->name, sizeof list - strlen(list) - 1);
                }
            }
            return FAIL(path, "unknown removal method '%s' for the %s track (known: %s)",
                        name, g->debug ? "debug" : "real", list);
        }
        /* Its data sets: the entry's, then the top level's it does not
         * override, as one run in the pool. */
        int data_off = g->n_data;
        char dpath[96];
        snprintf(dpath, sizeof dpath, "%s.data", path);
        if (parse_data(g, entry_data, dpath, base_dir, err) ||
            parse_data(g, top_data, "data", base_dir, err))
            return -1;
        int n_data = data_off;
        for (int d = data_off; d < g->n_data; d++) {
            int dup = 0;
            for (int e = data_off; e < n_data; e++) dup |= !strcmp(g->data[e].name, g->data[d].name);
            if (!dup) g->data[n_data++] = g->data[d];
        }
        g->n_data = n_data;
        su_pset *sets;
        int n_sets;
        if (expand_params(g, m, params, path, &sets, &n_sets, err)) return -1;
        su_method *ms = realloc(g->methods, (size_t)(g->n_methods + n_sets) * sizeof *ms);
        if (!ms) {
            free(sets);
            return lm_errf(err, "out of memory");
        }
        g->methods = ms;
        for (int s = 0; s < n_sets; s++) {
            su_method *me = &g->methods[g->n_methods + s];
            memset(me, 0, sizeof *me);
            me->m = m;
            me->entry = i;
            me->set = sets[s];
            me->data_off = data_off;
            me->n_data = g->n_data - data_off;
            snprintf(me->label, sizeof me->label, "%s", m->name);
            if (!sets[s].given[0] && params && cJSON_GetArraySize(params))
                /* Too long to show: numbered, unique across the grid. */
                snprintf(me->set_label, sizeof me->set_label, "%s#%d", m->name,
                         g->n_methods + s + 1);
            else if (sets[s].given[0])
                snprintf(me->set_label, sizeof me->set_label, "%s[%s]", m->name,
                         sets[s].given);
            else
                snprintf(me->set_label, sizeof me->set_label, "%s", m->name);
        }
        free(sets);
        for (int s = g->n_methods; s < g->n_methods + n_sets; s++)
            for (int j = 0; j < s; j++)
                if (g->methods[j].m == g->methods[s].m &&
                    !strcmp(g->methods[j].set.json, g->methods[s].set.json))
                    return FAIL(path, "repeats methods[%d] (same name and parameters)",
                                g->methods[j].entry);
        g->n_methods += n_sets;
    }
    return 0;
}

/* ---- the extraction track (extraction.md) ---- */

/* "attacks": ["none", "plain", {"variant": "gibberish", "name": N,
 * "params": {...}}], each into g->fps with type = the variant and params
 * checked against ex_params (sweeps allowed). */
static int parse_attacks(su_grid *g, const cJSON *arr, lm_err *err) {
    if (!arr) return FAIL("attacks", "is required (e.g. [\"none\", \"plain\", \"gibberish\"])");
    if (!cJSON_IsArray(arr) || cJSON_GetArraySize(arr) == 0)
        return FAIL("attacks", "must be a non-empty list");
    sm_method table = {.abi = SM_METHOD_ABI, .name = "extraction", .params = ex_params,
                       .n_params = ex_n_params};
    int i = 0;
    for (const cJSON *c = arr->child; c; c = c->next, i++) {
        char path[64], variant[SU_TYPE_LEN], name[RS_FP_LEN] = "";
        snprintf(path, sizeof path, "attacks[%d]", i);
        const cJSON *params = NULL;
        if (cJSON_IsString(c)) {
            if (strlen(c->valuestring) >= sizeof variant) return FAIL(path, "name too long");
            snprintf(variant, sizeof variant, "%s", c->valuestring);
        } else if (cJSON_IsObject(c)) {
            static const char *const keys[] = {"variant", "name", "params", NULL};
            if (check_keys(g, c, path, keys, err) ||
                get_string(g, c, "variant", path, NULL, variant, sizeof variant, err) ||
                get_string(g, c, "name", path, "", name, sizeof name, err))
                return -1;
            params = cJSON_GetObjectItemCaseSensitive(c, "params");
        } else {
            return FAIL(path, "must be a variant or {\"variant\", \"name\", \"params\"}");
        }
        ex_variant v;
        if (ex_variant_parse(variant, &v))
            return FAIL(path, "unknown attack variant '%s' (none, plain, gibberish)", variant);
        su_pset *sets;
        int n_sets;
        if (expand_params(g, &table, params, path, &sets, &n_sets, err)) return -1;
        su_fingerprint *fps = realloc(g->fps, (size_t)(g->n_fps + n_sets) * sizeof *fps);
        if (!fps) {
            free(sets);
            return lm_errf(err, "out of memory");
        }
        g->fps = fps;
        for (int s = 0; s < n_sets; s++) {
            su_fingerprint *f = &g->fps[g->n_fps + s];
            memset(f, 0, sizeof *f);
            snprintf(f->type, sizeof f->type, "%s", variant);
            f->entry = i;
            f->set = sets[s];
            const char *base = name[0] ? name : variant;
            if (n_sets > 1) snprintf(f->label, sizeof f->label, "%.50s#%d", base, s + 1);
            else snprintf(f->label, sizeof f->label, "%s", base);
        }
        free(sets);
        for (int s = g->n_fps; s < g->n_fps + n_sets; s++)
            for (int j = 0; j < s; j++)
                if (!strcmp(g->fps[j].label, g->fps[s].label))
                    return FAIL(path, "label '%s' is already used by attacks[%d]; give it "
                                      "a distinct \"name\"", g->fps[s].label, g->fps[j].entry);
        g->n_fps += n_sets;
    }
    return 0;
}

/* "victims": ["query-loss", "masked", {"name": N, "params": {...}}];
 * default ["query-loss", "masked"]. */
static int parse_victims(su_grid *g, const cJSON *arr, lm_err *err) {
    sm_method table = {.abi = SM_METHOD_ABI, .name = "extraction", .params = ex_params,
                       .n_params = ex_n_params};
    static const char *const dflt[] = {"query-loss", "masked"};
    int n_in = arr ? cJSON_GetArraySize(arr) : 2;
    if (arr && (!cJSON_IsArray(arr) || n_in == 0))
        return FAIL("victims", "must be a non-empty list");
    const cJSON *c = arr ? arr->child : NULL;
    for (int i = 0; i < n_in; i++, c = c ? c->next : NULL) {
        char path[64], name[RS_STAGE_LEN] = "";
        snprintf(path, sizeof path, "victims[%d]", i);
        const cJSON *params = NULL;
        cJSON *made = NULL;
        const char *word = !arr ? dflt[i] : cJSON_IsString(c) ? c->valuestring : NULL;
        if (word) {
            if (strcmp(word, "query-loss") && strcmp(word, "masked"))
                return FAIL(path, "'%s' is not query-loss or masked (or give "
                                  "{\"name\", \"params\"})", word);
            snprintf(name, sizeof name, "%s", word);
            made = cJSON_CreateObject();
            cJSON_AddBoolToObject(made, "query_loss", !strcmp(word, "query-loss"));
            params = made;
        } else if (cJSON_IsObject(c)) {
            static const char *const keys[] = {"name", "params", NULL};
            if (check_keys(g, c, path, keys, err) ||
                get_string(g, c, "name", path, NULL, name, sizeof name, err))
                return -1;
            params = cJSON_GetObjectItemCaseSensitive(c, "params");
        } else {
            return FAIL(path, "must be query-loss, masked or {\"name\", \"params\"}");
        }
        su_pset *sets;
        int n_sets;
        int r = expand_params(g, &table, params, path, &sets, &n_sets, err);
        cJSON_Delete(made);
        if (r) return -1;
        su_victim *vs = realloc(g->victims, (size_t)(g->n_victims + n_sets) * sizeof *vs);
        if (!vs) {
            free(sets);
            return lm_errf(err, "out of memory");
        }
        g->victims = vs;
        for (int s = 0; s < n_sets; s++) {
            su_victim *v = &g->victims[g->n_victims + s];
            memset(v, 0, sizeof *v);
            v->entry = i;
            v->set = sets[s];
            if (n_sets > 1) snprintf(v->label, sizeof v->label, "%.20s#%d", name, s % 100000 + 1);
            else snprintf(v->label, sizeof v->label, "%s", name);
        }
        free(sets);
        for (int s = g->n_victims; s < g->n_victims + n_sets; s++)
            for (int j = 0; j < s; j++)
                if (!strcmp(g->victims[j].label, g->victims[s].label))
                    return FAIL(path, "name '%s' is already victims[%d]", g->victims[s].label,
                                g->victims[j].entry);
        g->n_victims += n_sets;
    }
    return 0;
}

const su_data *su_grid_data(const su_grid *g, int method, const char *name) {
    int lo = 0, hi = g->n_data;
    if (method >= 0 && method < g->n_methods) {
        lo = g->methods[method].data_off;
        hi = lo + g->methods[method].n_data;
    }
    for (int d = lo; d < hi; d++)
        if (!strcmp(g->data[d].name, name)) return &g->data[d];
    return NULL;
}

static int valid_metric_name(const char *s) {
    if (!*s) return 0;
    for (; *s; s++)
        if (!((*s >= 'a' && *s <= 'z') || (*s >= '0' && *s <= '9') || *s == '_'))
            return 0;
    return 1;
}

static int parse_metrics(su_grid *g, const cJSON *arr, lm_err *err) {
    if (!arr) return 0;
    if (!cJSON_IsArray(arr)) return FAIL("metrics", "must be a list");
    int n = cJSON_GetArraySize(arr);
    g->metrics = calloc((size_t)(n ? n : 1), sizeof *g->metrics);
    if (!g->metrics) return lm_errf(err, "out of memory");
    int i = 0;
    for (const cJSON *c = arr->child; c; c = c->next, i++) {
        char path[64];
        snprintf(path, sizeof path, "metrics[%d]", i);
        su_metric *mt = &g->metrics[i];
        if (cJSON_IsString(c)) {
            if (strlen(c->valuestring) >= sizeof mt->name) return FAIL(path, "name too long");
            snprintf(mt->name, sizeof mt->name, "%s", c->valuestring);
        } else if (cJSON_IsObject(c)) {
            static const char *const keys[] = {"name", "dataset", NULL};
            if (check_keys(g, c, path, keys, err) ||
                get_string(g, c, "name", path, NULL, mt->name, sizeof mt->name, err) ||
                get_string(g, c, "dataset", path, "", mt->dataset, sizeof mt->dataset, err))
                return -1;
        } else {
            return FAIL(path, "must be a metric name or {\"name\", \"dataset\"}");
        }
        if (!valid_metric_name(mt->name))
            return FAIL(path, "metric name '%s' must be [a-z0-9_]+", mt->name);
        if (!g->debug && !su_metric_known(mt->name))
            return FAIL(path, "unknown metric '%s' (known: %s)", mt->name,
                        su_metric_list());
        for (int j = 0; j < i; j++)
            if (!strcmp(g->metrics[j].name, mt->name) &&
                !strcmp(g->metrics[j].dataset, mt->dataset))
                return FAIL(path, "repeats metrics[%d]", j);
    }
    g->n_metrics = n;
    return 0;
}

static int parse_seeds(su_grid *g, const cJSON *arr, lm_err *err) {
    if (!arr) return FAIL("seeds", "is required (e.g. [1, 2, 3])");
    if (!cJSON_IsArray(arr) || cJSON_GetArraySize(arr) == 0)
        return FAIL("seeds", "must be a non-empty list of integers");
    int n = cJSON_GetArraySize(arr);
    g->seeds = calloc((size_t)n, sizeof *g->seeds);
    if (!g->seeds) return lm_errf(err, "out of memory");
    int i = 0;
    for (const cJSON *c = arr->child; c; c = c->next, i++) {
        char path[64];
        snprintf(path, sizeof path, "seeds[%d]", i);
        if (!cJSON_IsNumber(c) || c->valuedouble != floor(c->valuedouble))
            return FAIL(path, "must be an integer");
        if (c->valuedouble < 0 || c->valuedouble > 9007199254740992.0)
            return FAIL(path, "%g is outside [0, 2^53]", c->valuedouble);
        g->seeds[i] = (int64_t)c->valuedouble;
        for (int j = 0; j < i; j++)
            if (g->seeds[j] == g->seeds[i])
                return FAIL(path, "seed %lld repeats seeds[%d]", (long long)g->seeds[i], j);
    }
    g->n_seeds = n;
    return 0;
}

static int parse_resources(su_grid *g, const cJSON *obj, lm_err *err) {
    g->res.threads = 1;
    g->res.parallel = 1;
    g->res.timeout_s = 0;
    g->res.heartbeat_s = 60;
    if (!obj) return 0;
    if (!cJSON_IsObject(obj)) return FAIL("resources", "must be an object");
    static const char *const keys[] = {"threads", "parallel", "timeout_s",
                                       "heartbeat_s", NULL};
    if (check_keys(g, obj, "resources", keys, err)) return -1;
    double t, p;
    if (get_number(g, obj, "threads", "resources", 1, 1, 1024, 1, &t, err) ||
        get_number(g, obj, "parallel", "resources", 1, 1, 1024, 1, &p, err) ||
        get_number(g, obj, "timeout_s", "resources", 0, 0, 1e9, 0, &g->res.timeout_s, err) ||
        get_number(g, obj, "heartbeat_s", "resources", 60, 0.5, 1e6, 0,
                   &g->res.heartbeat_s, err))
        return -1;
    g->res.threads = (int)t;
    g->res.parallel = (int)p;
    return 0;
}

/* ---- the whole grid ---- */

int su_grid_parse(su_grid *g, const char *text, const char *source,
                  const char *base_dir, lm_err *err) {
    memset(g, 0, sizeof *g);
    snprintf(g->source, sizeof g->source, "%s", source ? source : "grid");
    cJSON *root = cJSON_ParseWithOpts(text, NULL, 1);
    if (!root) {
        const char *at = cJSON_GetErrorPtr();
        int line = 1, col = 1;
        for (const char *p = text; at && p < at && *p; p++) {
            if (*p == '\n') {
                line++;
                col = 1;
            } else {
                col++;
            }
        }
        return lm_errf(err, "%s: line %d, column %d: not valid JSON", g->source,
                       line, col);
    }
    int rc = -1;
    if (!cJSON_IsObject(root)) {
        lm_errf(err, "%s: the grid must be a JSON object", g->source);
        goto done;
    }
    static const char *const keys[] = {"name", "track", "models", "fingerprints",
                                       "methods", "data", "metrics", "seeds", "resources",
                                       "output", "work_dir", "attacks", "victims", NULL};
    if (check_keys(g, root, "(top level)", keys, err)) goto done;
    char track[16];
    if (get_string(g, root, "name", "", "grid", g->name, sizeof g->name, err) ||
        get_string(g, root, "track", "", "real", track, sizeof track, err))
        goto done;
    if (strcmp(track, "real") && strcmp(track, "debug") && strcmp(track, "extraction")) {
        FAIL("track", "'%s' is not \"real\" or \"debug\" (or \"extraction\")", track);
        goto done;
    }
    g->debug = !strcmp(track, "debug");
    /* The extraction track: attacks and victims instead of fingerprints;
     * the methods (the victim's defences) default to "none". */
    g->extraction = !strcmp(track, "extraction");
    cJSON *ex_methods = NULL;
    if (g->extraction) {
        const char *wrong = cJSON_GetObjectItemCaseSensitive(root, "fingerprints") ? "fingerprints"
                                                                                   : NULL;
        if (wrong) {
            FAIL(wrong, "the extraction track takes \"attacks\" and \"victims\" instead");
            goto done;
        }
        if (!cJSON_GetObjectItemCaseSensitive(root, "methods")) {
            ex_methods = cJSON_CreateArray();
            cJSON_AddItemToArray(ex_methods, cJSON_CreateString("none"));
        }
    } else {
        const char *wrong = cJSON_GetObjectItemCaseSensitive(root, "attacks")   ? "attacks"
                            : cJSON_GetObjectItemCaseSensitive(root, "victims") ? "victims"
                                                                                : NULL;
        if (wrong) {
            FAIL(wrong, "belongs to the extraction track (\"track\": \"extraction\")");
            goto done;
        }
    }
    int ex_bad = g->extraction &&
                 (parse_attacks(g, cJSON_GetObjectItemCaseSensitive(root, "attacks"), err) ||
                  parse_victims(g, cJSON_GetObjectItemCaseSensitive(root, "victims"), err));
    if (ex_bad) {
        cJSON_Delete(ex_methods);
        goto done;
    }
    int bad_methods = parse_models(g, cJSON_GetObjectItemCaseSensitive(root, "models"), base_dir, err) ||
        (!g->extraction &&
         parse_fingerprints(g, cJSON_GetObjectItemCaseSensitive(root, "fingerprints"), err)) ||
        parse_methods(g, ex_methods ? ex_methods : cJSON_GetObjectItemCaseSensitive(root, "methods"),
                      cJSON_GetObjectItemCaseSensitive(root, "data"), base_dir, err);
    cJSON_Delete(ex_methods);
    if (bad_methods) goto done;
    if (parse_metrics(g, cJSON_GetObjectItemCaseSensitive(root, "metrics"), err) ||
        parse_seeds(g, cJSON_GetObjectItemCaseSensitive(root, "seeds"), err) ||
        parse_resources(g, cJSON_GetObjectItemCaseSensitive(root, "resources"), err) ||
        get_string(g, root, "output", "", "results.h5", g->output, sizeof g->output, err) ||
        get_string(g, root, "work_dir", "", "work", g->work_dir, sizeof g->work_dir, err))
        goto done;
    sbuf b = {0};
    put_canonical(&b, root);
    if (b.oom) {
        free(b.s);
        lm_errf(err, "out of memory");
        goto done;
    }
    g->canonical = b.s;
    su_sha256_hex(b.s, b.len, g->sha256);
    rc = 0;
done:
    cJSON_Delete(root);
    if (rc) su_grid_free(g);
    return rc;
}

int su_grid_load(su_grid *g, const char *path, lm_err *err) {
    memset(g, 0, sizeof *g);
    FILE *f = fopen(path, "rb");
    if (!f) return lm_errf(err, "%s: %s", path, strerror(errno));
    char *text = NULL;
    size_t len = 0, cap = 0;
    for (;;) {
        if (len + 4096 + 1 > cap) {
            cap = cap ? 2 * cap : 8192;
            if (cap > (64u << 20)) {
                free(text);
                fclose(f);
                return lm_errf(err, "%s: larger than 64 MiB; not a grid", path);
            }
            char *t = realloc(text, cap);
            if (!t) {
                free(text);
                fclose(f);
                return lm_errf(err, "out of memory");
            }
            text = t;
        }
        size_t n = fread(text + len, 1, 4096, f);
        len += n;
        if (n < 4096) break;
    }
    int bad = ferror(f);
    fclose(f);
    if (bad) {
        free(text);
        return lm_errf(err, "%s: read error", path);
    }
    text[len] = '\0';
    if (strlen(text) != len) {
        free(text);
        return lm_errf(err, "%s: contains a NUL byte; not a JSON grid", path);
    }
    /* Relative model paths are relative to the grid file. */
    char dir[SU_PATH_LEN];
    snprintf(dir, sizeof dir, "%s", path);
    char *slash = strrchr(dir, '/');
    if (slash) *slash = '\0';
    else snprintf(dir, sizeof dir, ".");
    const char *name = strrchr(path, '/') ? strrchr(path, '/') + 1 : path;
    int rc = su_grid_parse(g, text, name, dir, err);
    free(text);
    return rc;
}

void su_grid_free(su_grid *g) {
    free(g->models);
    free(g->fps);
    free(g->victims);
    free(g->methods);
    free(g->metrics);
    free(g->data);
    free(g->seeds);
    free(g->canonical);
    memset(g, 0, sizeof *g);
}

char *su_default_grid_json(void) {
    /* Every zoo model x the three fingerprint types (IF-SFT, UTF,
     * Chain&Hash) x every registered removal method, each with its
     * defaults (MEraser also without its recover phase) (the types and methods size themselves to a tiny model:
     * template, learning rate, LoRA rank), x seed 1, measured on the
     * metrics the embedded world provides. Methods that need a reference
     * model get the unit's clean base model. */
    cJSON *root = cJSON_CreateObject();
    cJSON_AddStringToObject(root, "name", "default");
    cJSON *models = cJSON_AddArrayToObject(root, "models");
    for (int i = 0; i < su_zoo_count(); i++)
        cJSON_AddItemToArray(models, cJSON_CreateString(su_zoo_at(i)->name));
    cJSON *fps = cJSON_AddArrayToObject(root, "fingerprints");
    static const char *const types[] = {"if-sft", "utf", "hashchain"};
    for (int i = 0; i < 3; i++) cJSON_AddItemToArray(fps, cJSON_CreateString(types[i]));
    cJSON *methods = cJSON_AddArrayToObject(root, "methods");
    for (int i = 0; i < sm_method_count(); i++) {
        const char *name = sm_method_at(i)->name;
        cJSON_AddItemToArray(methods, cJSON_CreateString(name));
        if (strcmp(name, "meraser")) continue;
        /* MEraser's erase phase alone as well: the erased column of the
         * paper's stage table */
        cJSON *erase_only = cJSON_CreateObject();
        cJSON_AddStringToObject(erase_only, "name", name);
        cJSON_AddBoolToObject(cJSON_AddObjectToObject(erase_only, "params"), "recover", 0);
        cJSON_AddItemToArray(methods, erase_only);
    }
    cJSON *metrics = cJSON_AddArrayToObject(root, "metrics");
    static const char *const names[] = {"fsr", "ftr", "ppl", "sciq", "copa", "boolq"};
    for (int i = 0; i < 6; i++) cJSON_AddItemToArray(metrics, cJSON_CreateString(names[i]));
    cJSON *seeds = cJSON_AddArrayToObject(root, "seeds");
    cJSON_AddItemToArray(seeds, cJSON_CreateNumber(1));
    char *text = cJSON_PrintUnformatted(root);
    cJSON_Delete(root);
    return text;
}
