/* The work-unit DAG: building it from a grid, keys and hashes, artifacts,
 * and running one unit into its artifact directory. */
#include "unit.h"
#include "zoo.h"

#include <cjson/cJSON.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <signal.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

static void rm_rf(const char *path);

static const char *const kind_names[SU_KIND_COUNT] = {
    "base-eval", "implant", "prepare", "remove", "eval"};

const char *su_kind_name(su_kind k) {
    return k >= 0 && k < SU_KIND_COUNT ? kind_names[k] : "?";
}

/* ---- building the DAG ---- */

/* Work space while building: each unit has at most two parents. */
typedef struct proto {
    su_unit u;
    int par[2];
    int np;
} proto;

typedef struct builder {
    proto *v;
    int n, cap;
} builder;

static int add_unit(builder *b, su_kind kind, int model, int fp, int method,
                    int seed, int target, int p0, int p1) {
    if (b->n == b->cap) {
        int cap = b->cap ? 2 * b->cap : 256;
        proto *v = realloc(b->v, (size_t)cap * sizeof *v);
        if (!v) return -1;
        b->v = v;
        b->cap = cap;
    }
    proto *p = &b->v[b->n];
    memset(p, 0, sizeof *p);
    p->u.kind = kind;
    p->u.model = model;
    p->u.fp = fp;
    p->u.method = method;
    p->u.seed = seed;
    p->u.target = target;
    p->u.victim = -1;
    if (p0 >= 0) p->par[p->np++] = p0;
    if (p1 >= 0) p->par[p->np++] = p1;
    return b->n++;
}

/* What identifies a model's content without reading it: for a path, the
 * names, sizes and modification times of its files. A replaced checkpoint
 * changes the hash; a touched one reruns too (cheap and safe). */
static void model_identity(const su_grid *g, const su_model *mo, char *out, size_t cap) {
    size_t o = (size_t)snprintf(out, cap, "%s", mo->spec);
    if (!mo->is_path) {
        /* A zoo recipe: its cache folder's name carries the recipe hash. */
        const su_recipe *r = g->debug ? NULL : su_zoo_find(mo->spec);
        char dir[SU_PATH_LEN];
        if (r && su_zoo_model_dir(r, NULL, dir, sizeof dir, NULL) == 0)
            snprintf(out + o, o < cap ? cap - o : 0, "|zoo:%s",
                     strrchr(dir, '/') ? strrchr(dir, '/') + 1 : dir);
        return;
    }
    struct stat st;
    if (stat(mo->spec, &st) != 0) return;
    if (!S_ISDIR(st.st_mode)) {
        snprintf(out + o, o < cap ? cap - o : 0, "|%lld:%lld.%09ld",
                 (long long)st.st_size, (long long)st.st_mtim.tv_sec,
                 st.st_mtim.tv_nsec);
        return;
    }
    struct dirent **names;
    int n = scandir(mo->spec, &names, NULL, alphasort);
    for (int i = 0; i < n; i++) {
        char full[2 * SU_PATH_LEN];
        snprintf(full, sizeof full, "%s/%s", mo->spec, names[i]->d_name);
        if (names[i]->d_name[0] != '.' && stat(full, &st) == 0 && S_ISREG(st.st_mode) &&
            o < cap)
            o += (size_t)snprintf(out + o, cap - o, "|%s:%lld:%lld.%09ld",
                                  names[i]->d_name, (long long)st.st_size,
                                  (long long)st.st_mtim.tv_sec, st.st_mtim.tv_nsec);
        free(names[i]);
    }
    if (n >= 0) free(names);
}

static const char *exec_id(const su_grid *g, su_kind k, char *buf, size_t cap) {
    const su_executor *ex = su_executor_for(k, g->debug);
    snprintf(buf, cap, "%s@%d", ex ? ex->name : "none", ex ? ex->version : 0);
    return buf;
}

static void metrics_spec(const su_grid *g, char *out, size_t cap) {
    size_t o = 0;
    out[0] = '\0';
    for (int i = 0; i < g->n_metrics && o < cap; i++)
        o += (size_t)snprintf(out + o, cap - o, "%s%s:%s", i ? ";" : "",
                              g->metrics[i].name, g->metrics[i].dataset);
}

static void make_key(su_unit *u, const char *text) {
    if (strlen(text) < sizeof u->key) {
        snprintf(u->key, sizeof u->key, "%s", text);
    } else {
        /* Too long for the column: cut, and keep it unique with the hash. */
        snprintf(u->key, sizeof u->key, "%.*s~%.12s", (int)sizeof u->key - 14,
                 text, u->hash);
    }
}

static int compute_identity(su_plan *p, int i, lm_err *err) {
    const su_grid *g = p->grid;
    su_unit *u = &p->units[i];
    size_t cap = 3 * SU_PATH_LEN + 4 * RS_PARAMS_LEN;
    char *t = malloc(cap);
    char *mid = malloc(2 * SU_PATH_LEN);
    if (!t || !mid) {
        free(t);
        free(mid);
        return lm_errf(err, "out of memory");
    }
    char ex[128], ms[2048];
    size_t o = (size_t)snprintf(t, cap, "smudge-unit/1\nkind=%s\nexec=%s\n",
                                su_kind_name(u->kind), exec_id(g, u->kind, ex, sizeof ex));
    if (u->kind == SU_BASE_EVAL || u->kind == SU_IMPLANT || u->kind == SU_PREPARE) {
        model_identity(g, &g->models[u->model], mid, 2 * SU_PATH_LEN);
        o += (size_t)snprintf(t + o, o < cap ? cap - o : 0, "model=%s\n", mid);
    }
    if (u->kind == SU_IMPLANT) {
        const su_fingerprint *f = &g->fps[u->fp];
        o += (size_t)snprintf(t + o, o < cap ? cap - o : 0, "fingerprint=%s\nparams=%s\n",
                              f->type, f->set.json);
    }
    if (u->kind == SU_PREPARE || u->kind == SU_REMOVE) {
        const su_method *me = &g->methods[u->method];
        /* sm_method has no version of its own yet: smudge's stands in. */
        o += (size_t)snprintf(t + o, o < cap ? cap - o : 0,
                              "method=%s\ncode=smudge-%s\nparams=%s\n", me->m->name,
                              SMUDGE_VERSION, me->set.json);
        for (int d = 0; d < me->n_data; d++) {
            const su_data *x = &g->data[me->data_off + d];
            struct stat st;
            long long size = -1, mt = 0;
            if (stat(x->path, &st) == 0) {
                size = (long long)st.st_size;
                mt = (long long)st.st_mtim.tv_sec * 1000000000LL + st.st_mtim.tv_nsec;
            }
            o += (size_t)snprintf(t + o, o < cap ? cap - o : 0, "data=%s:%s:%s:%lld:%lld\n",
                                  x->name, x->format, x->path, size, mt);
        }
    }
    if (u->kind == SU_BASE_EVAL || u->kind == SU_EVAL) {
        metrics_spec(g, ms, sizeof ms);
        o += (size_t)snprintf(t + o, o < cap ? cap - o : 0, "metrics=%s\n", ms);
    }
    if (g->extraction) {
        /* extraction track: the backdoor and the victim's settings and data */
        o += (size_t)snprintf(t + o, o < cap ? cap - o : 0, "track=extraction\n");
        if (u->kind == SU_IMPLANT || u->kind == SU_EVAL)
            for (int d = 0; d < 2; d++) {
                const su_data *x = su_grid_data(g, u->method, d ? "private" : "public");
                struct stat st;
                if (x && stat(x->path, &st) == 0)
                    o += (size_t)snprintf(t + o, o < cap ? cap - o : 0,
                                          "data=%s:%s:%lld:%lld\n", x->name, x->path,
                                          (long long)st.st_size, (long long)st.st_mtim.tv_sec);
            }
        if (u->victim >= 0)
            o += (size_t)snprintf(t + o, o < cap ? cap - o : 0, "victim=%s\nvictim_params=%s\n",
                                  g->victims[u->victim].label, g->victims[u->victim].set.json);
    }
    if (u->seed >= 0)
        o += (size_t)snprintf(t + o, o < cap ? cap - o : 0, "seed=%lld\n",
                              (long long)g->seeds[u->seed]);
    for (int k = 0; k < u->n_parents; k++)
        o += (size_t)snprintf(t + o, o < cap ? cap - o : 0, "input=%s\n",
                              p->units[p->parents[u->parent_off + k]].hash);
    if (o >= cap) {
        free(t);
        free(mid);
        return lm_errf(err, "unit %d: identity text too long", i);
    }
    su_sha256_hex(t, o, u->hash);

    /* The key: kind, then the path through the grid. */
    const char *model = g->models[u->model].label;
    const char *fp = u->fp >= 0 ? g->fps[u->fp].label : "";
    const char *set = u->method >= 0 ? g->methods[u->method].set_label : "";
    long long seed = u->seed >= 0 ? (long long)g->seeds[u->seed] : 0;
    switch (u->kind) {
    case SU_BASE_EVAL: snprintf(t, cap, "base-eval %s", model); break;
    case SU_IMPLANT: snprintf(t, cap, "implant %s/%s/s%lld", model, fp, seed); break;
    case SU_PREPARE: snprintf(t, cap, "prepare %s/s%lld/%s", model, seed, set); break;
    case SU_REMOVE: snprintf(t, cap, "remove %s/%s/s%lld/%s", model, fp, seed, set); break;
    case SU_EVAL:
        if (u->victim >= 0)
            snprintf(t, cap, "eval %s/%s/s%lld/%s/%s", model, fp, seed, set,
                     g->victims[u->victim].label);
        else if (u->method >= 0) snprintf(t, cap, "eval %s/%s/s%lld/%s", model, fp, seed, set);
        else snprintf(t, cap, "eval %s/%s/s%lld", model, fp, seed);
        break;
    default: snprintf(t, cap, "?"); break;
    }
    make_key(u, t);
    free(t);
    free(mid);
    return 0;
}

/* A method whose removals share work done once on the clean base. Real
 * methods will say so in their table (needs an sm_method field); the debug
 * method says so with its "shared" parameter. */
static int method_shares(const su_grid *g, int k) {
    if (!g->debug) return !strcmp(g->methods[k].m->name, "meraser-erase-lora");
    return sm_param_bool(&g->methods[k].set.params, "shared");
}

static int cmp_key(const void *a, const void *b) {
    return strcmp(*(const char *const *)a, *(const char *const *)b);
}

int su_plan_build(su_plan *p, const su_grid *g, lm_err *err) {
    memset(p, 0, sizeof *p);
    p->grid = g;
    builder b = {0};
    int evals = g->n_metrics > 0;
    int *prep = malloc((size_t)(g->n_methods ? g->n_methods : 1) * sizeof *prep);
    if (!prep) return lm_errf(err, "out of memory");
#define ADD(...)                                   \
    do {                                           \
        if ((last = add_unit(&b, __VA_ARGS__)) < 0) \
            goto oom;                              \
    } while (0)
    int last;
    /* The extraction track: backdoor -> defence -> one victim + extraction
     * per victim setting; no base-eval (the attack "none" is the control). */
    for (int m = 0; g->extraction && m < g->n_models; m++)
        for (int s = 0; s < g->n_seeds; s++)
            for (int f = 0; f < g->n_fps; f++) {
                ADD(SU_IMPLANT, m, f, -1, s, -1, -1, -1);
                int imp = last;
                for (int k = 0; k < g->n_methods; k++) {
                    ADD(SU_REMOVE, m, f, k, s, -1, imp, -1);
                    int rem = last;
                    for (int v = 0; v < g->n_victims; v++) {
                        ADD(SU_EVAL, m, f, k, s, rem, rem, -1);
                        b.v[last].u.victim = v;
                    }
                }
            }
    if (g->extraction) evals = 0; /* the loops below add nothing more */
    for (int m = 0; m < g->n_models && evals; m++)
        ADD(SU_BASE_EVAL, m, -1, -1, -1, -1, -1, -1);
    for (int m = 0; m < g->n_models; m++)
        for (int s = 0; s < g->n_seeds && !g->extraction; s++) {
            for (int k = 0; k < g->n_methods; k++) {
                prep[k] = -1;
                if (method_shares(g, k)) {
                    ADD(SU_PREPARE, m, -1, k, s, -1, -1, -1);
                    prep[k] = last;
                }
            }
            for (int f = 0; f < g->n_fps; f++) {
                ADD(SU_IMPLANT, m, f, -1, s, -1, -1, -1);
                int imp = last;
                if (evals) ADD(SU_EVAL, m, f, -1, s, imp, imp, -1);
                for (int k = 0; k < g->n_methods; k++) {
                    ADD(SU_REMOVE, m, f, k, s, -1, imp, prep[k]);
                    int rem = last;
                    if (evals) ADD(SU_EVAL, m, f, k, s, rem, rem, -1);
                }
            }
        }
#undef ADD
    free(prep);
    prep = NULL;
    p->n = b.n;
    p->units = malloc((b.n > 0 ? (size_t)b.n : 1) * sizeof *p->units);
    size_t edges = 0;
    for (int i = 0; i < b.n; i++) edges += (size_t)b.v[i].np;
    p->parents = malloc((edges ? edges : 1) * sizeof *p->parents);
    p->children = malloc((edges ? edges : 1) * sizeof *p->children);
    int *fill = calloc(b.n > 0 ? (size_t)b.n : 1, sizeof *fill);
    if (!p->units || !p->parents || !p->children || !fill) {
        free(fill);
        goto oom;
    }
    int off = 0;
    for (int i = 0; i < b.n; i++) {
        p->units[i] = b.v[i].u;
        p->units[i].parent_off = off;
        p->units[i].n_parents = b.v[i].np;
        p->units[i].stage = 0;
        for (int k = 0; k < b.v[i].np; k++) {
            int par = b.v[i].par[k];
            p->parents[off++] = par;
            p->units[par].n_children++;
            if (p->units[par].stage + 1 > p->units[i].stage)
                p->units[i].stage = p->units[par].stage + 1;
        }
        if (p->units[i].stage + 1 > p->n_stages) p->n_stages = p->units[i].stage + 1;
    }
    off = 0;
    for (int i = 0; i < b.n; i++) {
        p->units[i].child_off = off;
        off += p->units[i].n_children;
    }
    for (int i = 0; i < b.n; i++)
        for (int k = 0; k < p->units[i].n_parents; k++) {
            int par = p->parents[p->units[i].parent_off + k];
            p->children[p->units[par].child_off + fill[par]++] = i;
        }
    free(fill);
    free(b.v);
    for (int i = 0; i < p->n; i++) {
        if (compute_identity(p, i, err)) {
            su_plan_free(p);
            return -1;
        }
        /* Rough costs for `smudge plan`: debug units cost their sleep. */
        su_unit *u = &p->units[i];
        const sm_params *dp = su_unit_debug_params(p, i);
        static const double real_cost[SU_KIND_COUNT] = {30, 120, 300, 300, 60};
        u->cost = g->debug ? (dp ? (double)sm_param_int(dp, "sleep_ms") / 1000.0 : 0.0)
                           : real_cost[u->kind];
    }
    /* Keys must be unique: they are how results are matched across runs. */
    const char **keys = malloc((size_t)(p->n > 0 ? p->n : 1) * sizeof *keys);
    if (!keys) {
        su_plan_free(p);
        return lm_errf(err, "out of memory");
    }
    for (int i = 0; i < p->n; i++) keys[i] = p->units[i].key;
    qsort(keys, (size_t)p->n, sizeof *keys, cmp_key);
    for (int i = 1; i < p->n; i++)
        if (!strcmp(keys[i], keys[i - 1])) {
            lm_errf(err, "%s: two units share the key '%s'; give the entries distinct names "
                         "or parameters", g->source, keys[i]);
            free(keys);
            su_plan_free(p);
            return -1;
        }
    free(keys);
    return 0;
oom:
    free(prep);
    free(b.v);
    su_plan_free(p);
    return lm_errf(err, "out of memory building the plan");
}

void su_plan_free(su_plan *p) {
    free(p->units);
    free(p->parents);
    free(p->children);
    memset(p, 0, sizeof *p);
}

int su_plan_find_key(const su_plan *p, const char *key) {
    for (int i = 0; i < p->n; i++)
        if (!strcmp(p->units[i].key, key)) return i;
    return -1;
}

int su_plan_check_executors(const su_plan *p, lm_err *err) {
    const su_grid *g = p->grid;
    int seen[SU_KIND_COUNT] = {0};
    for (int i = 0; i < p->n; i++) seen[p->units[i].kind] = 1;
    for (int k = 0; k < SU_KIND_COUNT; k++) {
        if (!seen[k]) continue;
        const su_executor *ex = su_executor_for((su_kind)k, g->debug);
        if (ex && ex->run) continue;
        const char *field = k == SU_BASE_EVAL || k == SU_EVAL ? "metrics"
                            : k == SU_IMPLANT                 ? "fingerprints"
                                                              : "methods";
        return lm_errf(err, "%s: %s: %s units have no executor in this build yet "
                            "(the %s track)", g->source, field, su_kind_name((su_kind)k),
                       g->debug ? "debug" : "real");
    }
    return 0;
}

const sm_params *su_unit_debug_params(const su_plan *p, int u) {
    const su_grid *g = p->grid;
    const su_unit *un = &p->units[u];
    if (!g->debug) return NULL;
    if (un->kind == SU_IMPLANT) return &g->fps[un->fp].set.params;
    if (un->kind == SU_PREPARE || un->kind == SU_REMOVE) return &g->methods[un->method].set.params;
    return NULL;
}

/* ---- artifacts ---- */

void su_artifact_dir(const su_plan *p, int u, const char *work_dir, char *out,
                     size_t cap) {
    snprintf(out, cap, "%s/%s/%s", work_dir, su_kind_name(p->units[u].kind),
             p->units[u].hash);
}

int su_artifact_exists(const su_plan *p, int u, const char *work_dir) {
    char dir[SU_PATH_LEN + 128], f[SU_PATH_LEN + 160];
    su_artifact_dir(p, u, work_dir, dir, sizeof dir);
    snprintf(f, sizeof f, "%s/result.json", dir);
    return access(f, R_OK) == 0;
}

static char *read_small_file(const char *path, size_t max, size_t *len) {
    FILE *f = fopen(path, "rb");
    if (!f) return NULL;
    char *buf = malloc(max + 1);
    size_t n = buf ? fread(buf, 1, max + 1, f) : 0;
    fclose(f);
    if (!buf || n > max) {
        free(buf);
        return NULL;
    }
    buf[n] = '\0';
    if (len) *len = n;
    return buf;
}

int su_artifact_load(const su_plan *p, int u, const char *work_dir, rs_row *row,
                     lm_err *err) {
    char dir[SU_PATH_LEN + 128], f[SU_PATH_LEN + 160];
    su_artifact_dir(p, u, work_dir, dir, sizeof dir);
    snprintf(f, sizeof f, "%s/result.json", dir);
    size_t len;
    char *text = read_small_file(f, 256u << 20, &len);
    if (!text) return lm_errf(err, "%s: cannot read", f);
    rs_row_init(row);
    int rc = su_row_decode(text, len, row, err);
    if (rc == 0) {
        cJSON *j = cJSON_ParseWithLength(text, len);
        const cJSON *h = cJSON_GetObjectItemCaseSensitive(j, "unit_hash");
        if (!cJSON_IsString(h) || strcmp(h->valuestring, p->units[u].hash))
            rc = lm_errf(err, "%s: written for another unit (hash mismatch)", f);
        cJSON_Delete(j);
    }
    free(text);
    if (rc) {
        rs_row_free(row);
        return -1;
    }
    su_row_identity(p, u, row);
    if (strcmp(row->status, RS_OK)) return lm_errf(err, "%s: status %s", f, row->status);
    return 0;
}

int su_artifact_ref_model(const char *dir, const char *model_path, lm_err *err) {
    char f[SU_PATH_LEN + 32];
    snprintf(f, sizeof f, "%s/model.ref", dir);
    FILE *fp = fopen(f, "w");
    if (!fp) return lm_errf(err, "%s: %s", f, strerror(errno));
    fprintf(fp, "%s\n", model_path);
    if (fclose(fp)) return lm_errf(err, "%s: write failed", f);
    return 0;
}

int su_artifact_model(const char *dir, char *out, size_t cap, lm_err *err) {
    char p[SU_PATH_LEN + 32];
    struct stat st;
    snprintf(p, sizeof p, "%s/model", dir);
    if (stat(p, &st) == 0 && S_ISDIR(st.st_mode)) {
        snprintf(out, cap, "%s", p);
        return 0;
    }
    snprintf(p, sizeof p, "%s/model.ref", dir);
    char *text = read_small_file(p, SU_PATH_LEN, NULL);
    if (!text) return lm_errf(err, "%s holds no model (no model/ and no model.ref)", dir);
    text[strcspn(text, "\n")] = '\0';
    if (!text[0] || strlen(text) >= cap) {
        free(text);
        return lm_errf(err, "%s: empty or too long", p);
    }
    snprintf(out, cap, "%s", text);
    free(text);
    return 0;
}

/* A zombie (exited, not yet reaped by init) counts as dead. */
static int process_alive(pid_t pid) {
    if (kill(pid, 0) != 0 && errno == ESRCH) return 0;
    char path[64], buf[256];
    snprintf(path, sizeof path, "/proc/%d/stat", (int)pid);
    FILE *f = fopen(path, "r");
    if (!f) return 1; /* cannot tell: keep it */
    size_t n = fread(buf, 1, sizeof buf - 1, f);
    fclose(f);
    buf[n] = '\0';
    const char *close = strrchr(buf, ')');
    return !(close && close[1] == ' ' && close[2] == 'Z');
}

int su_work_dir_sweep(const char *work_dir) {
    char host[RS_HOST_LEN];
    if (gethostname(host, sizeof host)) return 0;
    host[sizeof host - 1] = '\0';
    int removed = 0;
    for (int k = 0; k < SU_KIND_COUNT; k++) {
        char dir[SU_PATH_LEN + 64];
        snprintf(dir, sizeof dir, "%s/%s", work_dir, su_kind_name((su_kind)k));
        DIR *d = opendir(dir);
        if (!d) continue;
        struct dirent *e;
        while ((e = readdir(d))) {
            /* <hash>.tmp.<host>.<pid> or <hash>.old.<pid> */
            const char *t = strstr(e->d_name, ".tmp.");
            const char *o = strstr(e->d_name, ".old.");
            const char *dot = strrchr(e->d_name, '.');
            if ((!t && !o) || !dot) continue;
            if (t) {
                size_t hl = strlen(host);
                if (strncmp(t + 5, host, hl) != 0 || t + 5 + hl != dot) continue;
            }
            char *end;
            long pid = strtol(dot + 1, &end, 10);
            if (*end || pid <= 0 || process_alive((pid_t)pid)) continue;
            char full[2 * SU_PATH_LEN];
            snprintf(full, sizeof full, "%s/%s", dir, e->d_name);
            rm_rf(full);
            removed++;
        }
        closedir(d);
    }
    return removed;
}

/* ---- rows ---- */

void su_row_identity(const su_plan *p, int i, rs_row *row) {
    const su_grid *g = p->grid;
    const su_unit *u = &p->units[i];
    RS_SET(row, unit_key, u->key);
    RS_SET(row, unit_hash, u->hash);
    const char *stage = su_kind_name(u->kind);
    if (u->kind == SU_BASE_EVAL) stage = RS_STAGE_BASE;
    if (u->kind == SU_EVAL) stage = u->method >= 0 ? RS_STAGE_REMOVED : RS_STAGE_FINGERPRINTED;
    /* MEraser's output is the recovered model, or with recover=false the
     * erased one: the stages of the paper's table. */
    if (u->kind == SU_EVAL && u->method >= 0 && !g->debug &&
        !strcmp(g->methods[u->method].m->name, "meraser"))
        stage = sm_param_bool(&g->methods[u->method].set.params, "recover") ? RS_STAGE_RECOVERED
                                                                            : RS_STAGE_ERASED;
    /* extraction track: the victim setting is the stage of its rows */
    if (u->kind == SU_EVAL && u->victim >= 0) stage = g->victims[u->victim].label;
    RS_SET(row, stage, stage);
    RS_SET(row, model, g->models[u->model].label);
    RS_SET(row, fingerprint, u->fp >= 0 ? g->fps[u->fp].label : "");
    RS_SET(row, method, u->method >= 0 ? g->methods[u->method].m->name : "");
    RS_SET(row, params, u->method >= 0 ? g->methods[u->method].set.json : "");
    row->seed = u->seed >= 0 ? g->seeds[u->seed] : -1;
}

char *su_row_encode(const rs_row *row) {
    cJSON *j = cJSON_CreateObject();
    if (!j) return NULL;
    cJSON_AddStringToObject(j, "unit_key", row->unit_key);
    cJSON_AddStringToObject(j, "unit_hash", row->unit_hash);
    cJSON_AddStringToObject(j, "status", row->status);
    cJSON_AddStringToObject(j, "message", row->message);
    cJSON_AddNumberToObject(j, "time_start", row->time_start);
    cJSON_AddNumberToObject(j, "time_end", row->time_end);
    cJSON_AddNumberToObject(j, "wall_seconds", row->wall_seconds);
    cJSON_AddNumberToObject(j, "tokens", (double)row->tokens);
    cJSON_AddNumberToObject(j, "flops", row->flops);
    cJSON_AddNumberToObject(j, "peak_rss_bytes", (double)row->peak_rss_bytes);
    cJSON_AddStringToObject(j, "host", row->host);
    cJSON_AddNumberToObject(j, "rank", row->rank);
    cJSON_AddNumberToObject(j, "slurm_job_id", (double)row->slurm_job_id);
    cJSON_AddNumberToObject(j, "slurm_array_job_id", (double)row->slurm_array_job_id);
    cJSON_AddNumberToObject(j, "slurm_array_task_id", (double)row->slurm_array_task_id);
    cJSON *ms = cJSON_AddArrayToObject(j, "metrics");
    for (int i = 0; i < row->n_metrics; i++) {
        cJSON *m = cJSON_CreateArray();
        cJSON_AddItemToArray(m, cJSON_CreateString(row->metrics[i].name));
        /* JSON has no NaN: null stands for it. */
        cJSON_AddItemToArray(m, isfinite(row->metrics[i].value)
                                    ? cJSON_CreateNumber(row->metrics[i].value)
                                    : cJSON_CreateNull());
        cJSON_AddItemToArray(m, cJSON_CreateNumber((double)row->metrics[i].n));
        cJSON_AddItemToArray(ms, m);
    }
    cJSON *ds = cJSON_AddArrayToObject(j, "details");
    for (int i = 0; i < row->n_details; i++) {
        const rs_detail *d = &row->details[i];
        cJSON *o = cJSON_CreateObject();
        cJSON_AddStringToObject(o, "name", d->name);
        cJSON_AddStringToObject(o, "kind", d->kind == RS_DETAIL_I64 ? "i64" : "f64");
        cJSON *v = cJSON_AddArrayToObject(o, "values");
        for (size_t k = 0; k < d->count; k++) {
            double x = d->kind == RS_DETAIL_I64 ? (double)d->i64[k] : d->f64[k];
            cJSON_AddItemToArray(v, isfinite(x) ? cJSON_CreateNumber(x) : cJSON_CreateNull());
        }
        cJSON_AddItemToArray(ds, o);
    }
    char *text = cJSON_PrintUnformatted(j);
    cJSON_Delete(j);
    return text;
}

static double num_or(const cJSON *j, const char *k, double def) {
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(j, k);
    return cJSON_IsNumber(v) ? v->valuedouble : def;
}

int su_row_decode(const char *text, size_t len, rs_row *row, lm_err *err) {
    cJSON *j = cJSON_ParseWithLength(text, len);
    if (!j || !cJSON_IsObject(j)) {
        cJSON_Delete(j);
        return lm_errf(err, "unit outcome is not a JSON object");
    }
    int rc = -1;
    const cJSON *st = cJSON_GetObjectItemCaseSensitive(j, "status");
    const cJSON *msg = cJSON_GetObjectItemCaseSensitive(j, "message");
    const cJSON *host = cJSON_GetObjectItemCaseSensitive(j, "host");
    if (!cJSON_IsString(st) || !cJSON_IsString(msg)) {
        lm_errf(err, "unit outcome lacks status or message");
        goto done;
    }
    RS_SET(row, status, st->valuestring);
    rs_row_set_message(row, "%s", msg->valuestring);
    if (cJSON_IsString(host)) RS_SET(row, host, host->valuestring);
    row->time_start = num_or(j, "time_start", 0);
    row->time_end = num_or(j, "time_end", 0);
    row->wall_seconds = num_or(j, "wall_seconds", 0);
    row->tokens = (int64_t)num_or(j, "tokens", 0);
    row->flops = num_or(j, "flops", 0);
    row->peak_rss_bytes = (int64_t)num_or(j, "peak_rss_bytes", 0);
    row->rank = (int32_t)num_or(j, "rank", 0);
    row->slurm_job_id = (int64_t)num_or(j, "slurm_job_id", -1);
    row->slurm_array_job_id = (int64_t)num_or(j, "slurm_array_job_id", -1);
    row->slurm_array_task_id = (int64_t)num_or(j, "slurm_array_task_id", -1);
    const cJSON *ms = cJSON_GetObjectItemCaseSensitive(j, "metrics");
    for (const cJSON *m = cJSON_IsArray(ms) ? ms->child : NULL; m; m = m->next) {
        const cJSON *name = cJSON_GetArrayItem(m, 0), *v = cJSON_GetArrayItem(m, 1),
                    *n = cJSON_GetArrayItem(m, 2);
        if (!cJSON_IsString(name)) {
            lm_errf(err, "unit outcome: a metric has no name");
            goto done;
        }
        if (rs_row_set_metric(row, name->valuestring,
                              cJSON_IsNumber(v) ? v->valuedouble : NAN,
                              cJSON_IsNumber(n) ? (int64_t)n->valuedouble : 0, err))
            goto done;
    }
    const cJSON *ds = cJSON_GetObjectItemCaseSensitive(j, "details");
    for (const cJSON *d = cJSON_IsArray(ds) ? ds->child : NULL; d; d = d->next) {
        const cJSON *name = cJSON_GetObjectItemCaseSensitive(d, "name");
        const cJSON *kind = cJSON_GetObjectItemCaseSensitive(d, "kind");
        const cJSON *vals = cJSON_GetObjectItemCaseSensitive(d, "values");
        if (!cJSON_IsString(name) || !cJSON_IsArray(vals)) {
            lm_errf(err, "unit outcome: malformed detail");
            goto done;
        }
        size_t n = (size_t)cJSON_GetArraySize(vals);
        int i64 = cJSON_IsString(kind) && !strcmp(kind->valuestring, "i64");
        double *f = malloc((n ? n : 1) * sizeof *f);
        int64_t *q = malloc((n ? n : 1) * sizeof *q);
        if (!f || !q) {
            free(f);
            free(q);
            lm_errf(err, "out of memory");
            goto done;
        }
        size_t k = 0;
        for (const cJSON *v = vals->child; v; v = v->next, k++) {
            f[k] = cJSON_IsNumber(v) ? v->valuedouble : NAN;
            q[k] = cJSON_IsNumber(v) ? (int64_t)v->valuedouble : 0;
        }
        int r = i64 ? rs_row_add_detail_i64(row, name->valuestring, q, n, err)
                    : rs_row_add_detail(row, name->valuestring, f, n, err);
        free(f);
        free(q);
        if (r) goto done;
    }
    rc = 0;
done:
    cJSON_Delete(j);
    return rc;
}

/* ---- running one unit ---- */

static double wall_now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static double mono_now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static int rm_entry(const char *path, const struct stat *st, int flag, struct FTW *ftw) {
    (void)st;
    (void)ftw;
    return flag == FTW_DP ? rmdir(path) : unlink(path);
}

static void rm_rf(const char *path) {
    nftw(path, rm_entry, 16, FTW_DEPTH | FTW_PHYS);
}

static int mkdir_p(const char *dir, lm_err *err) {
    char p[SU_PATH_LEN + 128];
    snprintf(p, sizeof p, "%s", dir);
    for (char *c = p + 1; *c; c++)
        if (*c == '/') {
            *c = '\0';
            if (mkdir(p, 0755) && errno != EEXIST)
                return lm_errf(err, "%s: cannot create: %s", p, strerror(errno));
            *c = '/';
        }
    if (mkdir(p, 0755) && errno != EEXIST)
        return lm_errf(err, "%s: cannot create: %s", p, strerror(errno));
    return 0;
}

static int write_file(const char *path, const char *text, lm_err *err) {
    FILE *f = fopen(path, "w");
    if (!f) return lm_errf(err, "%s: %s", path, strerror(errno));
    size_t n = strlen(text);
    int bad = fwrite(text, 1, n, f) != n;
    bad |= fclose(f) != 0;
    return bad ? lm_errf(err, "%s: write failed", path) : 0;
}

/* Appends one line with a single write(2): O_APPEND keeps concurrent
 * writers' lines whole. */
static void append_line(const char *path, const char *line) {
    int fd = open(path, O_WRONLY | O_CREAT | O_APPEND, 0644);
    if (fd < 0) return;
    ssize_t w = write(fd, line, strlen(line));
    (void)w;
    close(fd);
}

/* Moves the finished temporary directory into place. A previous artifact
 * of the same hash (a --fresh rerun) is replaced. */
static int commit(const char *tmp, const char *final, lm_err *err) {
    if (rename(tmp, final) == 0) return 0;
    if (errno != ENOTEMPTY && errno != EEXIST)
        return lm_errf(err, "rename %s -> %s: %s", tmp, final, strerror(errno));
    char old[SU_PATH_LEN + 192];
    snprintf(old, sizeof old, "%s.old.%d", final, (int)getpid());
    if (rename(final, old) || rename(tmp, final))
        return lm_errf(err, "replacing %s: %s", final, strerror(errno));
    rm_rf(old);
    return 0;
}

int su_unit_execute(const su_plan *p, int u, const char *work_dir, int threads,
                    int rank, rs_row *row) {
    const su_unit *un = &p->units[u];
    lm_err err = {{0}};
    int rc = -1;
    char final[SU_PATH_LEN + 128], tmp[SU_PATH_LEN + 256];
    char in_dirs[2][SU_PATH_LEN + 128];
    const char *inputs[2] = {in_dirs[0], in_dirs[1]};
    tmp[0] = '\0';
    rs_row_init(row);
    su_row_identity(p, u, row);
    rs_row_fill_provenance(row, rank);
    row->time_start = wall_now();
    double t0 = mono_now();

    const su_executor *ex = su_executor_for(un->kind, p->grid->debug);
    if (!ex || !ex->run) {
        lm_errf(&err, "no %s executor for %s units in this build",
                p->grid->debug ? "debug" : "real", su_kind_name(un->kind));
        goto out;
    }
    if (un->n_parents > 2) {
        lm_errf(&err, "unit has %d inputs; at most 2 supported", un->n_parents);
        goto out;
    }
    for (int k = 0; k < un->n_parents; k++) {
        int par = p->parents[un->parent_off + k];
        su_artifact_dir(p, par, work_dir, in_dirs[k], sizeof in_dirs[k]);
        if (!su_artifact_exists(p, par, work_dir)) {
            lm_errf(&err, "input '%s' is not in the work dir (%s)", p->units[par].key,
                    in_dirs[k]);
            goto out;
        }
    }
    su_artifact_dir(p, u, work_dir, final, sizeof final);
    char kind_dir[SU_PATH_LEN + 64];
    snprintf(kind_dir, sizeof kind_dir, "%s/%s", work_dir, su_kind_name(un->kind));
    if (mkdir_p(kind_dir, &err)) goto out;
    snprintf(tmp, sizeof tmp, "%s.tmp.%s.%d", final, row->host, (int)getpid());
    rm_rf(tmp);
    if (mkdir(tmp, 0755)) {
        lm_errf(&err, "%s: cannot create: %s", tmp, strerror(errno));
        tmp[0] = '\0';
        goto out;
    }
    su_exec x = {.plan = p, .unit = un, .inputs = inputs, .n_inputs = un->n_parents,
                 .out_dir = tmp, .threads = threads};
    rc = ex->run(&x, row, &err);
    if (rc == 0)
        for (int i = 0; i < row->n_metrics; i++)
            if (isnan(row->metrics[i].value)) {
                rc = lm_errf(&err, "metric '%s' is NaN", row->metrics[i].name);
                break;
            }
out:
    row->time_end = wall_now();
    row->wall_seconds = mono_now() - t0;
    struct rusage ru;
    if (getrusage(RUSAGE_SELF, &ru) == 0) row->peak_rss_bytes = (int64_t)ru.ru_maxrss * 1024;
    if (rc == 0) {
        RS_SET(row, status, RS_OK);
        row->message[0] = '\0';
        char *json = su_row_encode(row);
        char rj[SU_PATH_LEN + 300];
        snprintf(rj, sizeof rj, "%s/result.json", tmp);
        if (!json) rc = lm_errf(&err, "out of memory");
        else rc = write_file(rj, json, &err);
        free(json);
        if (rc == 0) rc = commit(tmp, final, &err);
        if (rc == 0) tmp[0] = '\0';
    }
    if (rc) {
        RS_SET(row, status, RS_FAILED);
        rs_row_set_message(row, "%s", err.msg[0] ? err.msg : "failed (no message)");
    }
    if (tmp[0]) rm_rf(tmp);
    /* Debug track: record the commit in $SMUDGE_DEBUG_LOG, so tests can
     * tell finished units from started ones. */
    const char *log = p->grid->debug ? getenv("SMUDGE_DEBUG_LOG") : NULL;
    if (rc == 0 && log && log[0]) {
        char line[RS_KEY_LEN + 128];
        snprintf(line, sizeof line, "done %s %s\n", un->hash, un->key);
        append_line(log, line);
    }
    return rc;
}
