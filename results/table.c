/* Leaderboard tables: seed statistics, the two MEraser layouts, and their
 * Markdown / CSV / LaTeX rendering.
 *
 * The grouping (a "pivot") works on the rows rs_rows_latest keeps, so a
 * retried unit counts once. Each table row is a selector (model,
 * fingerprint, stage, method, params; NULL = any) and each column narrows
 * it further; a cell collects the metric of every ok unit that matches,
 * one value per seed. */
#include <cjson/cJSON.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "pivot.h"

/* ------------------------------------------------------------ statistics */

/* results/ calls nothing from libm: smudge_results comes after -lm on the
 * link line, and with --as-needed a program that needs libm only here would
 * fail to link. Newton's iteration from above is monotone, so it stops
 * exactly when it can no longer improve. */
static double sqrt_pos(double x) {
    if (!(x > 0)) return x == 0 ? 0 : NAN;
    double r = x > 1 ? x : 1;
    for (int i = 0; i < 4000; i++) {
        double next = 0.5 * (r + x / r);
        if (!(next < r)) break;
        r = next;
    }
    return r;
}

/* t_{0.975, df}: exact to 9 digits for df <= 30; beyond, the Cornish-Fisher
 * expansion around z = 1.959964 (error < 1e-6 there). */
double rs_t975(int df) {
    static const double t[31] = {
        NAN,         12.70620474, 4.30265273, 3.18244631, 2.77644511, 2.57058184,
        2.44691185,  2.36462425,  2.30600414, 2.26215716, 2.22813885, 2.20098516,
        2.17881283,  2.16036866,  2.14478669, 2.13144955, 2.11990530, 2.10981558,
        2.10092204,  2.09302405,  2.08596345, 2.07961384, 2.07387307, 2.06865761,
        2.06389856,  2.05953855,  2.05552944, 2.05183052, 2.04840714, 2.04522964,
        2.04227246};
    if (df < 1) return NAN;
    if (df <= 30) return t[df];
    double z = 1.959963985, z2 = z * z, z3 = z2 * z, z5 = z3 * z2, z7 = z5 * z2, z9 = z7 * z2;
    double d = df;
    double g1 = (z3 + z) / 4;
    double g2 = (5 * z5 + 16 * z3 + 3 * z) / 96;
    double g3 = (3 * z7 + 19 * z5 + 17 * z3 - 15 * z) / 384;
    double g4 = (79 * z9 + 776 * z7 + 1482 * z5 - 1920 * z3 - 945 * z) / 92160;
    return z + g1 / d + g2 / (d * d) + g3 / (d * d * d) + g4 / (d * d * d * d);
}

void rs_mean_ci95(const double *v, int n, double *mean, double *half) {
    *mean = NAN;
    *half = 0;
    if (n < 1) return;
    double s = 0;
    for (int i = 0; i < n; i++) s += v[i];
    double m = s / n, ss = 0;
    for (int i = 0; i < n; i++) ss += (v[i] - m) * (v[i] - m);
    *mean = m;
    if (n >= 2) *half = rs_t975(n - 1) * sqrt_pos(ss / (n - 1) / n);
}

int rs_metric_is_rate(const char *m) {
    static const char *exact[] = {"fsr", "ftr", "asr", "cp", "boolq", "copa", "rte", "wsc",
                                  "sciq", "superglue", "equal_ratio"};
    for (size_t i = 0; i < sizeof exact / sizeof exact[0]; i++) {
        size_t k = strlen(exact[i]);
        /* "fsr", "fsr_utf", "boolq_acc" ... */
        if (strncmp(m, exact[i], k) == 0 && (m[k] == '\0' || m[k] == '_')) return 1;
    }
    return strncmp(m, "acc", 3) == 0 || strstr(m, "_acc") != NULL;
}

int rs_format_from_name(const char *s, rs_format *out) {
    if (strcmp(s, "md") == 0 || strcmp(s, "markdown") == 0) *out = RS_FMT_MD;
    else if (strcmp(s, "csv") == 0) *out = RS_FMT_CSV;
    else if (strcmp(s, "latex") == 0 || strcmp(s, "tex") == 0) *out = RS_FMT_LATEX;
    else return -1;
    return 0;
}

int rs_layout_from_name(const char *s, rs_layout *out) {
    if (strcmp(s, "stages") == 0) *out = RS_LAYOUT_STAGES;
    else if (strcmp(s, "methods") == 0) *out = RS_LAYOUT_METHODS;
    else if (strcmp(s, "extraction") == 0) *out = RS_LAYOUT_EXTRACTION;
    else return -1;
    return 0;
}

/* ------------------------------------------------------------ grouping */

typedef struct sel {
    const char *model, *fp, *stage, *method, *params; /* NULL = any */
    int params_sans_recover; /* params is compared without the 'recover' key */
} sel;

/* The erase-only run of MEraser (recover=false) and the full run differ in
 * 'recover' alone; the stage layout shows them in one row, as the paper's
 * fingerprinted -> erased -> recovered columns. */
#define RS_STAGE_PARAM "recover"

/* params as compact JSON without `key` (malloc'd; a copy when not JSON). */
static char *params_without(const char *params, const char *key) {
    cJSON *o = cJSON_Parse(params);
    if (!o || !cJSON_IsObject(o)) {
        cJSON_Delete(o);
        return strdup(params);
    }
    cJSON_DeleteItemFromObjectCaseSensitive(o, key);
    char *t = cJSON_PrintUnformatted(o);
    cJSON_Delete(o);
    return t;
}

static int eq(const char *want, const char *have) { return !want || strcmp(want, have) == 0; }
static int matches(const sel *s, const rs_row *r) {
    if (!(eq(s->model, r->model) && eq(s->fp, r->fingerprint) && eq(s->stage, r->stage) &&
          eq(s->method, r->method)))
        return 0;
    if (!s->params || !s->params_sans_recover) return eq(s->params, r->params);
    char *p = params_without(r->params, RS_STAGE_PARAM);
    int same = p && strcmp(p, s->params) == 0;
    free(p);
    return same;
}

/* Small list of distinct strings (pointers into the rows). */
typedef struct strs {
    const char **v;
    int n, cap;
} strs;
static int strs_find(const strs *s, const char *x) {
    for (int i = 0; i < s->n; i++)
        if (strcmp(s->v[i], x) == 0) return i;
    return -1;
}
static int strs_add(strs *s, const char *x) {
    if (strs_find(s, x) >= 0) return 0;
    if (s->n == s->cap) {
        int cap = s->cap ? 2 * s->cap : 8;
        const char **p = realloc(s->v, (size_t)cap * sizeof *p);
        if (!p) return -1;
        s->v = p;
        s->cap = cap;
    }
    s->v[s->n++] = x;
    return 0;
}

static int is_removal_stage(const char *st) {
    return strcmp(st, RS_STAGE_REMOVED) == 0 || strcmp(st, RS_STAGE_ERASED) == 0 ||
           strcmp(st, RS_STAGE_RECOVERED) == 0;
}

/* What the label of a removal variant must show to tell rows apart. */
typedef struct method_info {
    strs names;
    int *n_stages, *n_params; /* distinct stages / params per method */
    strs *params;             /* the distinct params of each method */
} method_info;

/* The value of `key` in params as text, or NULL (malloc'd). */
static char *param_text(const char *params, const char *key) {
    cJSON *o = cJSON_Parse(params);
    const cJSON *it = o ? cJSON_GetObjectItemCaseSensitive(o, key) : NULL;
    char *v = !it ? NULL : cJSON_IsString(it) ? strdup(it->valuestring) : cJSON_PrintUnformatted(it);
    cJSON_Delete(o);
    return v;
}

/* {"ratio":0.05,"corpus":"guanaco"} -> "ratio=0.05, corpus=guanaco". With
 * `all`, only the keys whose value is not the same in every params of it
 * (skipping `drop`): the label says what tells a method's variants apart,
 * not all 30 settings of each. */
static char *params_label(const char *params, const strs *all, const char *drop) {
    cJSON *o = cJSON_Parse(params);
    if (!o || !cJSON_IsObject(o)) {
        cJSON_Delete(o);
        return strdup(params);
    }
    size_t cap = strlen(params) + 16, len = 0;
    char *out = malloc(cap);
    if (!out) {
        cJSON_Delete(o);
        return NULL;
    }
    out[0] = '\0';
    for (cJSON *it = o->child; it; it = it->next) {
        if (drop && strcmp(it->string, drop) == 0) continue;
        char *v = cJSON_IsString(it) ? strdup(it->valuestring) : cJSON_PrintUnformatted(it);
        if (!v) continue;
        int differs = !all;
        for (int i = 0; all && i < all->n && !differs; i++) {
            char *w = param_text(all->v[i], it->string);
            differs = !w || strcmp(v, w) != 0;
            free(w);
        }
        if (differs) {
            size_t need = len + strlen(it->string) + strlen(v) + 4;
            if (need > cap) {
                char *p = realloc(out, need * 2);
                if (!p) {
                    free(v);
                    break;
                }
                out = p;
                cap = need * 2;
            }
            len += (size_t)sprintf(out + len, "%s%s=%s", len ? ", " : "", it->string, v);
        }
        free(v);
    }
    cJSON_Delete(o);
    return out;
}

static int method_info_build(const rs_row *rows, const size_t *idx, size_t n, method_info *mi) {
    memset(mi, 0, sizeof *mi);
    for (size_t i = 0; i < n; i++) {
        const rs_row *r = &rows[idx[i]];
        if (is_removal_stage(r->stage) && strs_add(&mi->names, r->method)) return -1;
    }
    mi->n_stages = calloc((size_t)mi->names.n + 1, sizeof(int));
    mi->n_params = calloc((size_t)mi->names.n + 1, sizeof(int));
    mi->params = calloc((size_t)mi->names.n + 1, sizeof(strs));
    if (!mi->n_stages || !mi->n_params || !mi->params) return -1;
    for (int m = 0; m < mi->names.n; m++) {
        strs st = {0}, pa = {0};
        for (size_t i = 0; i < n; i++) {
            const rs_row *r = &rows[idx[i]];
            if (!is_removal_stage(r->stage) || strcmp(r->method, mi->names.v[m]) != 0) continue;
            if (strs_add(&st, r->stage) || strs_add(&pa, r->params)) {
                free(st.v);
                free(pa.v);
                return -1;
            }
        }
        mi->n_stages[m] = st.n;
        mi->n_params[m] = pa.n;
        mi->params[m] = pa;
        free(st.v);
    }
    return 0;
}
static void method_info_free(method_info *mi) {
    for (int m = 0; mi->params && m < mi->names.n; m++) free(mi->params[m].v);
    free(mi->params);
    free(mi->names.v);
    free(mi->n_stages);
    free(mi->n_params);
}

/* drop: a parameter the row stands for all values of (stage layout), or
 * NULL. */
static char *variant_label(const method_info *mi, const rs_row *r, int with_stage,
                           const char *drop) {
    int m = strs_find(&mi->names, r->method);
    int show_stage = with_stage && m >= 0 && mi->n_stages[m] > 1;
    int show_params = m >= 0 && mi->n_params[m] > 1 && r->params[0];
    char *pl = show_params ? params_label(r->params, &mi->params[m], drop) : NULL;
    if (pl && !pl[0]) {
        free(pl);
        pl = NULL;
    }
    size_t len = strlen(r->method) + strlen(r->stage) + (pl ? strlen(pl) : 0) + 16;
    char *s = malloc(len);
    if (s)
        snprintf(s, len, "%s%s%s%s%s%s", r->method[0] ? r->method : "(none)",
                 show_stage ? " (" : "", show_stage ? r->stage : "", show_stage ? ")" : "",
                 pl ? " " : "", pl ? pl : "");
    free(pl);
    return s;
}

/* One table row being built: its selector and its labels. */
typedef struct trow {
    sel s;
    char *labels[RS_PIVOT_MAX_KEYS];
    char *owned_params; /* s.params when the row made it (stage layout) */
} trow;
typedef struct trows {
    trow *v;
    int n, cap;
} trows;
static trow *trows_push(trows *t) {
    if (t->n == t->cap) {
        int cap = t->cap ? 2 * t->cap : 16;
        trow *p = realloc(t->v, (size_t)cap * sizeof *p);
        if (!p) return NULL;
        t->v = p;
        t->cap = cap;
    }
    trow *r = &t->v[t->n++];
    memset(r, 0, sizeof *r);
    return r;
}

void rs_pivot_free(rs_pivot *p) {
    if (p->labels)
        for (int i = 0; i < p->n_rows * p->n_keys; i++) free(p->labels[i]);
    if (p->cells)
        for (int i = 0; i < p->n_rows * p->n_cols; i++) free(p->cells[i].v);
    free(p->labels);
    free(p->col_names);
    free(p->cells);
    memset(p, 0, sizeof *p);
}

static int cell_add(rs_cell *c, double v) {
    if (c->n == c->cap) {
        int cap = c->cap ? 2 * c->cap : 4;
        double *p = realloc(c->v, (size_t)cap * sizeof *p);
        if (!p) return -1;
        c->v = p;
        c->cap = cap;
    }
    c->v[c->n++] = v;
    return 0;
}

/* Table rows of the STAGES layout: one per model x fingerprint, split by
 * erase/recover variant when a pair has several. */
static int stage_rows(const rs_row *rows, const size_t *idx, size_t n, const method_info *mi,
                      trows *out, int *show_variant) {
    strs variants = {0};
    for (size_t i = 0; i < n; i++) {
        const rs_row *a = &rows[idx[i]];
        if (!a->fingerprint[0] || strcmp(a->stage, RS_STAGE_BASE) == 0 ||
            strcmp(a->stage, RS_STAGE_REMOVED) == 0)
            continue;
        /* First appearance of (model, fingerprint)? */
        int seen = 0;
        for (size_t j = 0; j < i && !seen; j++) {
            const rs_row *b = &rows[idx[j]];
            seen = b->fingerprint[0] && strcmp(b->stage, RS_STAGE_BASE) != 0 &&
                   strcmp(b->stage, RS_STAGE_REMOVED) != 0 && strcmp(a->model, b->model) == 0 &&
                   strcmp(a->fingerprint, b->fingerprint) == 0;
        }
        if (seen) continue;
        int added = 0;
        for (size_t j = i; j < n; j++) {
            const rs_row *b = &rows[idx[j]];
            if (strcmp(b->stage, RS_STAGE_ERASED) != 0 && strcmp(b->stage, RS_STAGE_RECOVERED) != 0)
                continue;
            if (strcmp(a->model, b->model) != 0 || strcmp(a->fingerprint, b->fingerprint) != 0)
                continue;
            /* one row per distinct (method, params but 'recover') */
            char *key = params_without(b->params, RS_STAGE_PARAM);
            if (!key) goto oom;
            int dup = 0;
            for (int k = out->n - added; k < out->n && !dup; k++)
                dup = strcmp(out->v[k].s.method, b->method) == 0 &&
                      strcmp(out->v[k].s.params, key) == 0;
            if (dup) {
                free(key);
                continue;
            }
            trow *t = trows_push(out);
            if (!t) {
                free(key);
                goto oom;
            }
            t->owned_params = key;
            t->s = (sel){a->model, a->fingerprint, NULL, b->method, key, 1};
            t->labels[0] = strdup(a->model);
            t->labels[1] = strdup(a->fingerprint);
            t->labels[2] = variant_label(mi, b, 0, RS_STAGE_PARAM);
            if (!t->labels[0] || !t->labels[1] || !t->labels[2] || strs_add(&variants, t->labels[2]))
                goto oom;
            added++;
        }
        if (!added) {
            trow *t = trows_push(out);
            if (!t) goto oom;
            t->s = (sel){a->model, a->fingerprint, NULL, NULL, NULL};
            t->labels[0] = strdup(a->model);
            t->labels[1] = strdup(a->fingerprint);
            t->labels[2] = strdup("");
            if (!t->labels[0] || !t->labels[1] || !t->labels[2] || strs_add(&variants, ""))
                goto oom;
        }
    }
    *show_variant = variants.n > 1;
    free(variants.v);
    return 0;
oom:
    free(variants.v);
    return -1;
}

/* Table rows of the METHODS layout: per model, the fingerprinted model
 * (no removal) first, then every removal variant. */
static int method_rows(const rs_row *rows, const size_t *idx, size_t n, const method_info *mi,
                       trows *out, int *show_model) {
    strs models = {0};
    for (size_t i = 0; i < n; i++) {
        const rs_row *r = &rows[idx[i]];
        if (strcmp(r->stage, RS_STAGE_FINGERPRINTED) == 0 || is_removal_stage(r->stage))
            if (strs_add(&models, r->model)) goto oom;
    }
    for (int m = 0; m < models.n; m++) {
        int has_ref = 0;
        for (size_t i = 0; i < n && !has_ref; i++)
            has_ref = strcmp(rows[idx[i]].model, models.v[m]) == 0 &&
                      strcmp(rows[idx[i]].stage, RS_STAGE_FINGERPRINTED) == 0;
        if (has_ref) {
            trow *t = trows_push(out);
            if (!t) goto oom;
            t->s = (sel){models.v[m], NULL, RS_STAGE_FINGERPRINTED, NULL, NULL};
            t->labels[0] = strdup(models.v[m]);
            t->labels[1] = strdup("(no removal)");
            if (!t->labels[0] || !t->labels[1]) goto oom;
        }
        int first = out->n;
        for (size_t i = 0; i < n; i++) {
            const rs_row *r = &rows[idx[i]];
            if (strcmp(r->model, models.v[m]) != 0 || !is_removal_stage(r->stage)) continue;
            int dup = 0;
            for (int k = first; k < out->n && !dup; k++)
                dup = strcmp(out->v[k].s.stage, r->stage) == 0 &&
                      strcmp(out->v[k].s.method, r->method) == 0 &&
                      strcmp(out->v[k].s.params, r->params) == 0;
            if (dup) continue;
            trow *t = trows_push(out);
            if (!t) goto oom;
            t->s = (sel){r->model, NULL, r->stage, r->method, r->params};
            t->labels[0] = strdup(r->model);
            t->labels[1] = variant_label(mi, r, 1, NULL);
            if (!t->labels[0] || !t->labels[1]) goto oom;
        }
    }
    *show_model = models.n > 1;
    free(models.v);
    return 0;
oom:
    free(models.v);
    return -1;
}

/* Removes columns whose cells are all empty (no value, no failure). */
static int drop_empty_columns(rs_pivot *p) {
    int keep = 0;
    int *map = malloc(((size_t)p->n_cols + 1) * sizeof *map);
    if (!map) return -1;
    for (int c = 0; c < p->n_cols; c++) {
        int any = 0;
        for (int r = 0; r < p->n_rows && !any; r++) {
            const rs_cell *x = &p->cells[r * p->n_cols + c];
            any = x->n > 0 || x->failed > 0;
        }
        if (any) map[keep++] = c;
    }
    if (keep < p->n_cols) {
        rs_cell *cells = calloc((size_t)p->n_rows * (size_t)keep + 1, sizeof *cells);
        if (!cells) {
            free(map);
            return -1;
        }
        for (int r = 0; r < p->n_rows; r++)
            for (int c = 0; c < p->n_cols; c++) {
                rs_cell *x = &p->cells[r * p->n_cols + c];
                int k = -1;
                for (int j = 0; j < keep; j++)
                    if (map[j] == c) k = j;
                if (k >= 0) cells[r * keep + k] = *x;
                else free(x->v);
            }
        for (int j = 0; j < keep; j++) p->col_names[j] = p->col_names[map[j]];
        free(p->cells);
        p->cells = cells;
        p->n_cols = keep;
    }
    free(map);
    return 0;
}

int rs_pivot_build(const rs_row *rows, size_t n, const char *metric, rs_layout layout,
                   int drop_empty, rs_pivot *p, lm_err *err) {
    memset(p, 0, sizeof *p);
    size_t *all = NULL, *idx = NULL, n_all = 0, m = 0;
    trows tr = {0};
    method_info mi = {0};
    strs cols = {0};
    char *used = NULL;
    int rc = -1, show = 0;
    if (rs_rows_latest(rows, n, &all, &n_all, err)) return -1;
    /* Skipped units are neither results nor failures. */
    idx = malloc((n_all ? n_all : 1) * sizeof *idx);
    if (!idx) goto oom;
    for (size_t i = 0; i < n_all; i++) {
        if (strcmp(rows[all[i]].status, RS_SKIPPED) == 0) p->skipped_units++;
        else idx[m++] = all[i];
    }
    if (method_info_build(rows, idx, m, &mi)) goto oom;

    /* Columns: each a partial selector. */
    static const char *stages[] = {RS_STAGE_BASE, RS_STAGE_FINGERPRINTED, RS_STAGE_ERASED,
                                   RS_STAGE_RECOVERED};
    if (layout == RS_LAYOUT_STAGES) {
        for (int s = 0; s < 4; s++)
            for (size_t i = 0; i < m; i++)
                if (strcmp(rows[idx[i]].stage, stages[s]) == 0) {
                    if (strs_add(&cols, stages[s])) goto oom;
                    break;
                }
        if (stage_rows(rows, idx, m, &mi, &tr, &show)) goto oom;
        p->n_keys = show ? 3 : 2;
        p->key_names[0] = "model";
        p->key_names[1] = "fingerprint";
        p->key_names[2] = "method";
    } else {
        for (size_t i = 0; i < m; i++) {
            const rs_row *r = &rows[idx[i]];
            if (r->fingerprint[0] && (strcmp(r->stage, RS_STAGE_FINGERPRINTED) == 0 ||
                                      is_removal_stage(r->stage)))
                if (strs_add(&cols, r->fingerprint)) goto oom;
        }
        if (method_rows(rows, idx, m, &mi, &tr, &show)) goto oom;
        p->n_keys = show ? 2 : 1;
        p->key_names[0] = show ? "model" : "method";
        p->key_names[1] = "method";
    }

    p->n_rows = tr.n;
    p->n_cols = cols.n;
    p->labels = calloc((size_t)tr.n * (size_t)p->n_keys + 1, sizeof *p->labels);
    p->col_names = calloc((size_t)cols.n + 1, sizeof *p->col_names);
    p->cells = calloc((size_t)tr.n * (size_t)cols.n + 1, sizeof *p->cells);
    used = calloc(m + 1, 1);
    if (!p->labels || !p->col_names || !p->cells || !used) goto oom;
    for (int c = 0; c < cols.n; c++) p->col_names[c] = (char *)cols.v[c];
    for (int r = 0; r < tr.n; r++) {
        /* Which label columns are shown: stages drops the method column
         * when every row has the same; methods drops the model column
         * when there is one model. */
        int k = 0;
        for (int j = 0; j < RS_PIVOT_MAX_KEYS; j++) {
            char *l = tr.v[r].labels[j];
            int keep = layout == RS_LAYOUT_STAGES ? (j < 2 || (j == 2 && show))
                                                  : (j == 1 || (j == 0 && show));
            if (l && keep && k < p->n_keys) {
                p->labels[r * p->n_keys + k++] = l;
                tr.v[r].labels[j] = NULL;
            }
        }
    }
    p->seeds_min = 0;
    p->seeds_max = 0;
    for (int r = 0; r < tr.n; r++)
        for (int c = 0; c < cols.n; c++) {
            sel s = tr.v[r].s;
            if (layout == RS_LAYOUT_STAGES) {
                s.stage = cols.v[c];
                if (strcmp(s.stage, RS_STAGE_BASE) == 0) s.fp = NULL; /* the clean model */
                if (strcmp(s.stage, RS_STAGE_ERASED) != 0 && strcmp(s.stage, RS_STAGE_RECOVERED) != 0)
                    s.method = s.params = NULL;
            } else {
                s.fp = cols.v[c];
            }
            rs_cell *cell = &p->cells[r * cols.n + c];
            for (size_t i = 0; i < m; i++) {
                const rs_row *row = &rows[idx[i]];
                if (!matches(&s, row)) continue;
                if (strcmp(row->status, RS_OK) != 0) {
                    cell->failed++;
                    used[i] = 1;
                    continue;
                }
                cell->ok++;
                double v = rs_row_metric(row, metric, NULL);
                if (isnan(v)) continue;
                used[i] = 1;
                if (cell_add(cell, v)) goto oom;
            }
            if (cell->n > 0) {
                if (p->seeds_min == 0 || cell->n < p->seeds_min) p->seeds_min = cell->n;
                if (cell->n > p->seeds_max) p->seeds_max = cell->n;
            }
        }
    for (size_t i = 0; i < m; i++)
        if (used[i] && strcmp(rows[idx[i]].status, RS_OK) != 0) p->failed_units++;
    if (drop_empty && drop_empty_columns(p)) goto oom;
    rc = 0;
    goto done;
oom:
    lm_errf(err, "out of memory building the table");
done:
    for (int r = 0; r < tr.n; r++) {
        for (int j = 0; j < RS_PIVOT_MAX_KEYS; j++) free(tr.v[r].labels[j]);
        free(tr.v[r].owned_params);
    }
    free(tr.v);
    free(cols.v);
    method_info_free(&mi);
    free(used);
    free(idx);
    free(all);
    if (rc) rs_pivot_free(p);
    return rc;
}

/* ------------------------------------------------------------ rendering */

static void put_escaped(FILE *f, const char *s, rs_format fmt) {
    if (fmt == RS_FMT_CSV) {
        if (!strpbrk(s, ",\"\n\r")) {
            fputs(s, f);
            return;
        }
        fputc('"', f);
        for (; *s; s++) {
            if (*s == '"') fputc('"', f);
            fputc(*s == '\n' || *s == '\r' ? ' ' : *s, f);
        }
        fputc('"', f);
        return;
    }
    for (; *s; s++) {
        char c = *s;
        if (c == '\n' || c == '\r') {
            fputc(' ', f);
        } else if (fmt == RS_FMT_MD) {
            if (strchr("\\`*_[]<>|#", c)) fputc('\\', f);
            fputc(c, f);
        } else if (c == '\\') {
            fputs("\\textbackslash{}", f);
        } else if (c == '~') {
            fputs("\\textasciitilde{}", f);
        } else if (c == '^') {
            fputs("\\textasciicircum{}", f);
        } else {
            if (strchr("&%$#_{}", c)) fputc('\\', f);
            fputc(c, f);
        }
    }
}

typedef struct unit_fmt {
    double scale;
    int decimals;
    const char *unit; /* shown in the caption */
} unit_fmt;

static unit_fmt metric_fmt(const char *metric) {
    if (rs_metric_is_rate(metric)) return (unit_fmt){100, 1, " (%)"};
    if (strncmp(metric, "ppl", 3) == 0) return (unit_fmt){1, 2, ""};
    return (unit_fmt){1, 3, ""};
}

static void put_cell(FILE *f, const rs_cell *c, unit_fmt u, rs_format fmt) {
    /* Escaped in Markdown: two marks in one row would turn italic. */
    const char *mark = !c->failed ? "" : fmt == RS_FMT_MD ? "\\*" : "*";
    if (c->n == 0) {
        /* "failed" only when nothing succeeded; an ok unit that did not
         * measure this metric is not a failure. */
        if (c->failed && !c->ok) fputs("failed", f);
        else fprintf(f, "%s%s", fmt == RS_FMT_LATEX ? "--" : "-", mark);
        return;
    }
    double mean, half;
    rs_mean_ci95(c->v, c->n, &mean, &half);
    mean *= u.scale;
    half *= u.scale;
    if (c->n == 1)
        fprintf(f, "%.*f%s", u.decimals, mean, mark);
    else if (fmt == RS_FMT_LATEX)
        fprintf(f, "$%.*f \\pm %.*f$%s", u.decimals, mean, u.decimals, half, mark);
    else
        fprintf(f, "%.*f ± %.*f%s", u.decimals, mean, u.decimals, half, mark);
}

static void put_csv_cell(FILE *f, const rs_cell *c, unit_fmt u, int rate) {
    if (c->n == 0) {
        fprintf(f, ",%s,,,0", c->failed && !c->ok ? "failed" : "");
        return;
    }
    double mean, half;
    rs_mean_ci95(c->v, c->n, &mean, &half);
    double lo = (mean - half) * u.scale, hi = (mean + half) * u.scale;
    if (rate) {
        lo = lo < 0 ? 0 : lo;
        hi = hi > 100 ? 100 : hi;
    }
    /* Two more decimals than the display, so nothing is lost to rounding. */
    fprintf(f, ",%.*f,%.*f,%.*f,%d", u.decimals + 2, mean * u.scale, u.decimals + 2, lo,
            u.decimals + 2, hi, c->n);
}

static void footnotes(FILE *f, const rs_pivot *p, rs_format fmt) {
    int all_failed = 0, part = 0;
    for (int i = 0; i < p->n_rows * p->n_cols; i++) {
        const rs_cell *c = &p->cells[i];
        if (c->failed && !c->ok) all_failed++;
        else if (c->failed) part++;
    }
    const char *lead = fmt == RS_FMT_LATEX ? "% " : "";
    if (fmt == RS_FMT_MD) fputc('\n', f);
    if (p->seeds_max > 0) {
        if (p->seeds_min == p->seeds_max)
            fprintf(f, "%sCells: mean ± 95%% CI (t-distribution) over %d seed%s%s.\n", lead,
                    p->seeds_max, p->seeds_max == 1 ? "" : "s",
                    p->seeds_max == 1 ? " (n=1: no interval)" : "");
        else
            fprintf(f, "%sCells: mean ± 95%% CI (t-distribution) over %d-%d seeds per cell "
                    "(one seed: the mean alone).\n", lead, p->seeds_min, p->seeds_max);
    }
    if (p->failed_units)
        fprintf(f, "%s%d unit%s failed (cells showing \"failed\": %d, no seed succeeded; "
                "cells marked * with some seeds failed: %d).\n", lead, p->failed_units,
                p->failed_units == 1 ? "" : "s", all_failed, part);
    if (p->skipped_units)
        fprintf(f, "%s%d unit%s skipped (not shown).\n", lead, p->skipped_units,
                p->skipped_units == 1 ? "" : "s");
}

/* ------------------------------------------------------------ extraction */

static const char *const ex_metrics[] = {"match_ratio", "query_extraction_ratio",
                                         "token_extraction_ratio", "opening_word_f1", "bleu"};
enum { EX_NM = 5 };

typedef struct ex_trow {
    const rs_row *key;     /* the first row of the group */
    rs_cell cells[EX_NM];
} ex_trow;

static int ex_same_group(const rs_row *a, const rs_row *b) {
    return !strcmp(a->model, b->model) && !strcmp(a->fingerprint, b->fingerprint) &&
           !strcmp(a->stage, b->stage) && !strcmp(a->method, b->method) &&
           !strcmp(a->params, b->params);
}

static int ex_table(const rs_row *rows, size_t n, rs_format fmt, FILE *out, lm_err *err) {
    size_t *idx = NULL, m = 0;
    if (rs_rows_latest(rows, n, &idx, &m, err)) return -1;
    ex_trow *t = calloc(m + 1, sizeof *t);
    int nt = 0, rc = 0;
    if (!t) rc = lm_errf(err, "out of memory");
    for (size_t i = 0; rc == 0 && i < m; i++) {
        const rs_row *r = &rows[idx[i]];
        if (strcmp(r->status, RS_OK) != 0 || isnan(rs_row_metric(r, "query_extraction_ratio", NULL)))
            continue;
        int g = 0;
        while (g < nt && !ex_same_group(t[g].key, r)) g++;
        if (g == nt) t[nt++].key = r;
        for (int k = 0; rc == 0 && k < EX_NM; k++) {
            double v = rs_row_metric(r, ex_metrics[k], NULL);
            if (!isnan(v) && cell_add(&t[g].cells[k], v)) rc = lm_errf(err, "out of memory");
        }
    }
    if (rc == 0 && nt == 0)
        rc = lm_errf(err, "no extraction rows (ok units with query_extraction_ratio): run an "
                          "extraction-track grid");
    unit_fmt u = {1, 3, ""};
    for (int r = 0; rc == 0 && r < nt; r++) {
        const rs_row *k = t[r].key;
        char *pl = k->params[0] ? params_label(k->params, NULL, NULL) : NULL;
        char defence[RS_METHOD_LEN + RS_PARAMS_LEN + 4];
        if (pl && pl[0]) snprintf(defence, sizeof defence, "%s[%s]", k->method, pl);
        else snprintf(defence, sizeof defence, "%s", k->method);
        free(pl);
        const char *keys[4] = {k->model, k->fingerprint, k->stage, defence};
        if (r == 0) {
            static const char *const heads[4] = {"model", "attack", "victim", "defence"};
            if (fmt == RS_FMT_CSV) {
                fputs("model,attack,victim,defence", out);
                for (int c = 0; c < EX_NM; c++)
                    fprintf(out, ",%s mean,%s ci95_lo,%s ci95_hi,%s n", ex_metrics[c],
                            ex_metrics[c], ex_metrics[c], ex_metrics[c]);
                fputc('\n', out);
            } else if (fmt == RS_FMT_MD) {
                fputs("*extraction metrics by model, attack, victim setting and defence*\n\n|", out);
                for (int c = 0; c < 4; c++) fprintf(out, " %s |", heads[c]);
                for (int c = 0; c < EX_NM; c++) {
                    fputc(' ', out);
                    put_escaped(out, ex_metrics[c], fmt);
                    fputs(" |", out);
                }
                fputs("\n|---|---|---|---|", out);
                for (int c = 0; c < EX_NM; c++) fputs("---:|", out);
                fputc('\n', out);
            } else {
                fputs("\\begin{table}\n\\centering\n\\caption{extraction metrics: mean $\\pm$ "
                      "95\\% CI across seeds}\n\\begin{tabular}{llllrrrrr}\n\\hline\n"
                      "model & attack & victim & defence", out);
                for (int c = 0; c < EX_NM; c++) {
                    fputs(" & ", out);
                    put_escaped(out, ex_metrics[c], fmt);
                }
                fputs(" \\\\\n\\hline\n", out);
            }
        }
        for (int c = 0; c < 4; c++) {
            if (fmt == RS_FMT_MD) fputs(c ? " " : "| ", out);
            else if (c) fputs(fmt == RS_FMT_CSV ? "," : " & ", out);
            put_escaped(out, keys[c], fmt);
            if (fmt == RS_FMT_MD) fputs(" |", out);
        }
        for (int c = 0; c < EX_NM; c++) {
            if (fmt == RS_FMT_CSV) {
                put_csv_cell(out, &t[r].cells[c], u, 0);
                continue;
            }
            fputs(fmt == RS_FMT_MD ? " " : " & ", out);
            put_cell(out, &t[r].cells[c], u, fmt);
            if (fmt == RS_FMT_MD) fputs(" |", out);
        }
        fputs(fmt == RS_FMT_LATEX ? " \\\\\n" : "\n", out);
    }
    if (rc == 0 && fmt == RS_FMT_LATEX) fputs("\\hline\n\\end{tabular}\n\\end{table}\n", out);
    for (int r = 0; t && r < nt; r++)
        for (int c = 0; c < EX_NM; c++) free(t[r].cells[c].v);
    free(t);
    free(idx);
    if (rc == 0 && ferror(out)) rc = lm_errf(err, "write error on the table output");
    return rc;
}

int rs_table(const rs_row *rows, size_t n, rs_format fmt, const char *metric, rs_layout layout,
             FILE *out, lm_err *err) {
    if (layout == RS_LAYOUT_EXTRACTION) return ex_table(rows, n, fmt, out, err);
    if (!metric || !*metric) return lm_errf(err, "no metric given");
    int seen = 0;
    for (size_t i = 0; i < n && !seen; i++) seen = !isnan(rs_row_metric(&rows[i], metric, NULL));
    if (!seen && n > 0) {
        /* Say which metrics there are: the likely mistake is the name. */
        strs names = {0};
        for (size_t i = 0; i < n; i++)
            for (int k = 0; k < rows[i].n_metrics; k++)
                if (strs_add(&names, rows[i].metrics[k].name)) break;
        char list[512] = "";
        size_t len = 0;
        for (int k = 0; k < names.n && len + 80 < sizeof list; k++)
            len += (size_t)snprintf(list + len, sizeof list - len, "%s%s", k ? ", " : "",
                                    names.v[k]);
        free(names.v);
        return lm_errf(err, "no row has metric '%s' (the rows have: %s)", metric,
                       names.n ? list : "no metrics");
    }
    rs_pivot p;
    if (rs_pivot_build(rows, n, metric, layout, 1, &p, err)) return -1;
    if (p.n_rows == 0 || p.n_cols == 0) {
        rs_pivot_free(&p);
        return lm_errf(err, "no rows fit the %s layout (it needs %s rows)",
                       layout == RS_LAYOUT_STAGES ? "stages" : "methods",
                       layout == RS_LAYOUT_STAGES ? "fingerprinted/erased/recovered"
                                                  : "fingerprinted or removal");
    }
    unit_fmt u = metric_fmt(metric);
    int rate = rs_metric_is_rate(metric);
    const char *what = layout == RS_LAYOUT_STAGES ? "by stage" : "by removal method";
    int K = p.n_keys, C = p.n_cols;

    if (fmt == RS_FMT_CSV) {
        /* Machine-readable: four numbers per column, display units. */
        for (int k = 0; k < K; k++) fprintf(out, "%s%s", k ? "," : "", p.key_names[k]);
        for (int c = 0; c < C; c++)
            for (int j = 0; j < 4; j++) {
                static const char *part[] = {"mean", "ci95_lo", "ci95_hi", "n"};
                fputc(',', out);
                char h[160];
                snprintf(h, sizeof h, "%s %s", p.col_names[c], part[j]);
                put_escaped(out, h, fmt);
            }
        fputc('\n', out);
        for (int r = 0; r < p.n_rows; r++) {
            for (int k = 0; k < K; k++) {
                if (k) fputc(',', out);
                put_escaped(out, p.labels[r * K + k], fmt);
            }
            for (int c = 0; c < C; c++) put_csv_cell(out, &p.cells[r * C + c], u, rate);
            fputc('\n', out);
        }
    } else if (fmt == RS_FMT_MD) {
        fputc('*', out);
        put_escaped(out, metric, fmt);
        fprintf(out, "%s %s*\n\n|", u.unit, what);
        for (int k = 0; k < K; k++) fprintf(out, " %s |", p.key_names[k]);
        for (int c = 0; c < C; c++) {
            fputc(' ', out);
            put_escaped(out, p.col_names[c], fmt);
            fputs(" |", out);
        }
        fputs("\n|", out);
        for (int k = 0; k < K; k++) fputs("---|", out);
        for (int c = 0; c < C; c++) fputs("---:|", out);
        fputc('\n', out);
        for (int r = 0; r < p.n_rows; r++) {
            fputc('|', out);
            for (int k = 0; k < K; k++) {
                fputc(' ', out);
                put_escaped(out, p.labels[r * K + k], fmt);
                fputs(" |", out);
            }
            for (int c = 0; c < C; c++) {
                fputc(' ', out);
                put_cell(out, &p.cells[r * C + c], u, fmt);
                fputs(" |", out);
            }
            fputc('\n', out);
        }
        footnotes(out, &p, fmt);
    } else {
        fputs("\\begin{table}\n\\centering\n\\caption{", out);
        put_escaped(out, metric, fmt);
        fprintf(out, "%s %s: mean $\\pm$ 95\\%% CI across seeds}\n\\begin{tabular}{", rate ? " (\\%)" : "", what);
        for (int k = 0; k < K; k++) fputc('l', out);
        for (int c = 0; c < C; c++) fputc('r', out);
        fputs("}\n\\hline\n", out);
        for (int k = 0; k < K; k++) fprintf(out, "%s%s", k ? " & " : "", p.key_names[k]);
        for (int c = 0; c < C; c++) {
            fputs(" & ", out);
            put_escaped(out, p.col_names[c], fmt);
        }
        fputs(" \\\\\n\\hline\n", out);
        for (int r = 0; r < p.n_rows; r++) {
            for (int k = 0; k < K; k++) {
                if (k) fputs(" & ", out);
                put_escaped(out, p.labels[r * K + k], fmt);
            }
            for (int c = 0; c < C; c++) {
                fputs(" & ", out);
                put_cell(out, &p.cells[r * C + c], u, fmt);
            }
            fputs(" \\\\\n", out);
        }
        fputs("\\hline\n\\end{tabular}\n\\end{table}\n", out);
        footnotes(out, &p, fmt);
    }
    rs_pivot_free(&p);
    if (ferror(out)) return lm_errf(err, "write error on the table output");
    return 0;
}
