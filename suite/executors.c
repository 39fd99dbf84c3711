/* The executor table (one entry per unit kind and track) and the lists
 * the grid validates against: fingerprint types, metric names, the zoo.
 *
 * Real track: implant dispatches on the fingerprint type ("none" so far),
 * remove runs a method from the methods registry, prepare and the
 * evaluations have no executor yet (they come with the fingerprint,
 * metric and zoo modules; a grid that needs them is refused up front).
 *
 * Debug track: executors that sleep, fail, return NaN, crash or compute a
 * deterministic fake metric from the unit hash. They exist for the tests
 * and the dispatch benchmark, are reachable only from grids that say
 * "track": "debug", and their numbers mean nothing. */
#include <errno.h>
#include <math.h>
#include <openssl/evp.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <fcntl.h>
#include <time.h>
#include <unistd.h>

#include "backend.h"
#include "unit.h"
#include "zoo.h"

/* ---- the debug track ---- */

static const sm_param_def debug_params[] = {
    {"action", SM_PARAM_CHOICE, "ok", 0, 0, "ok|fail|nan|segv|abort|exit|kill-worker|hang",
     "what the unit does: succeed, fail with `message`, report NaN, crash "
     "(SIGSEGV, abort, exit code 3), SIGKILL its worker process, or hang"},
    {"only_seed", SM_PARAM_INT, "-1", -1, 9007199254740992.0, NULL,
     "apply `action` only to units of this seed (-1: all)"},
    {"sleep_ms", SM_PARAM_INT, "0", 0, 86400000, NULL, "sleep before acting"},
    {"message", SM_PARAM_STRING, "debug failure", 0, 0, NULL,
     "the error text of action fail (and the last line before a crash)"},
    {"variant", SM_PARAM_INT, "0", 0, 1e9, NULL,
     "a free sweep axis: changes the hash and nothing else"},
    {"shared", SM_PARAM_BOOL, "false", 0, 0, NULL,
     "(methods) removals share one prepare unit per model x seed"},
};
enum { N_DEBUG_PARAMS = sizeof debug_params / sizeof debug_params[0] };

static const sm_method debug_method = {
    .abi = SM_METHOD_ABI,
    .name = "debug",
    .description = "debug track: fake removal (tests and benchmarks only)",
    .params = debug_params,
    .n_params = N_DEBUG_PARAMS,
    .output = SM_OUT_MODEL,
};

const sm_method *su_debug_method(const char *name) {
    return strcmp(name, debug_method.name) == 0 ? &debug_method : NULL;
}

/* A number in [0, 1) that depends only on the unit hash and a name: the
 * same on every rank, in every order. */
static double fake_value(const char *hash, const char *name) {
    char text[RS_HASH_LEN + RS_NAME_LEN + 2];
    int n = snprintf(text, sizeof text, "%s:%s", hash, name);
    unsigned char md[EVP_MAX_MD_SIZE];
    unsigned int len = 0;
    EVP_Digest(text, (size_t)n, md, &len, EVP_sha256(), NULL);
    uint64_t x = 0;
    for (int i = 0; i < 8; i++) x = (x << 8) | md[i];
    return (double)(x >> 11) / 9007199254740992.0;
}

static void append_line(const char *path, const char *line) {
    int fd = open(path, O_WRONLY | O_CREAT | O_APPEND, 0644);
    if (fd < 0) return;
    ssize_t w = write(fd, line, strlen(line));
    (void)w;
    close(fd);
}

static void sleep_ms(int64_t ms) {
    struct timespec ts = {(time_t)(ms / 1000), (long)(ms % 1000) * 1000000L};
    while (nanosleep(&ts, &ts) && errno == EINTR) {
    }
}

static int debug_run(const su_exec *x, rs_row *row, lm_err *err) {
    const su_plan *p = x->plan;
    const su_unit *u = x->unit;
    int idx = (int)(u - p->units);
    const char *log = getenv("SMUDGE_DEBUG_LOG");
    if (log && log[0]) {
        char line[RS_KEY_LEN + 128];
        snprintf(line, sizeof line, "start %s %s\n", u->hash, u->key);
        append_line(log, line);
    }
    const sm_params *dp = su_unit_debug_params(p, idx);
    const char *action = "ok";
    if (dp) {
        sleep_ms(sm_param_int(dp, "sleep_ms"));
        int64_t only = sm_param_int(dp, "only_seed");
        if (only < 0 || (u->seed >= 0 && p->grid->seeds[u->seed] == only))
            action = sm_param_str(dp, "action");
    }
    const char *message = dp ? sm_param_str(dp, "message") : "";
    if (!strcmp(action, "fail")) return lm_errf(err, "%s", message);
    if (!strcmp(action, "segv") || !strcmp(action, "abort") || !strcmp(action, "exit") ||
        !strcmp(action, "kill-worker") || !strcmp(action, "hang")) {
        /* The line a crash leaves behind: the runner keeps the last one. */
        fprintf(stderr, "debug: %s (%s)\n", message, action);
        fflush(stderr);
        struct rlimit no_core = {0, 0};
        setrlimit(RLIMIT_CORE, &no_core);
        if (!strcmp(action, "segv")) raise(SIGSEGV);
        if (!strcmp(action, "abort")) abort();
        if (!strcmp(action, "exit")) _exit(3);
        if (!strcmp(action, "kill-worker")) kill(getppid(), SIGKILL);
        for (;;) pause(); /* hang; or wait for the parent-death signal */
    }
    double nan_or = !strcmp(action, "nan") ? NAN : 0.0;
    if (u->kind == SU_BASE_EVAL || u->kind == SU_EVAL) {
        for (int i = 0; i < p->grid->n_metrics; i++) {
            const char *name = p->grid->metrics[i].name;
            double items[4];
            char dname[RS_NAME_LEN + 8];
            for (int k = 0; k < 4; k++) {
                char sub[RS_NAME_LEN + 8];
                snprintf(sub, sizeof sub, "%s.%d", name, k);
                items[k] = fake_value(u->hash, sub);
            }
            snprintf(dname, sizeof dname, "%s.items", name);
            if (rs_row_set_metric(row, name, fake_value(u->hash, name) + nan_or, 4, err) ||
                rs_row_add_detail(row, dname, items, 4, err))
                return -1;
        }
    } else if (rs_row_set_metric(row, "debug_value", fake_value(u->hash, "value") + nan_or,
                                 1, err)) {
        return -1;
    }
    row->tokens = 1000;
    row->flops = 1e9 * fake_value(u->hash, "flops");
    /* Stand-in outputs, so descendants find an artifact shaped like the
     * real one. */
    if (u->kind == SU_IMPLANT || u->kind == SU_REMOVE || u->kind == SU_PREPARE) {
        char ref[RS_KEY_LEN + 16];
        snprintf(ref, sizeof ref, "debug:%s", u->key);
        if (su_artifact_ref_model(x->out_dir, ref, err)) return -1;
    }
    return 0;
}

/* ---- the real track ---- */

static int implant_run(const su_exec *x, rs_row *row, lm_err *err) {
    const su_grid *g = x->plan->grid;
    const su_fingerprint *f = &g->fps[x->unit->fp];
    if (strcmp(f->type, "none") != 0)
        return lm_errf(err, "fingerprint type '%s' has no implant executor yet", f->type);
    char path[SU_PATH_LEN];
    if (su_model_path(g, x->unit->model, x->threads, path, sizeof path, err)) return -1;
    /* "none": the fingerprinted model is the base model itself; refer to
     * it rather than copy it. */
    return su_artifact_ref_model(x->out_dir, path, err);
}

typedef struct remove_report {
    rs_row *row;
} remove_report;

static void rep_progress(void *ctx, double fraction, const char *what) {
    (void)ctx;
    /* stderr goes to the runner, which keeps the last line for messages. */
    fprintf(stderr, "progress %.0f%%: %s\n", 100.0 * fraction, what ? what : "");
}

static void rep_cost(void *ctx, const char *step, double seconds, double tokens,
                     double flops) {
    (void)step;
    (void)seconds;
    remove_report *r = ctx;
    r->row->tokens += (int64_t)tokens;
    r->row->flops += flops;
}

/* Files that travel with a model but are not weights. */
static void copy_tokenizer_files(const char *from_dir, const char *to_dir) {
    static const char *const names[] = {"tokenizer.json", "tokenizer_config.json",
                                        "tokenizer.model", "special_tokens_map.json",
                                        "vocab.json", "merges.txt", NULL};
    struct stat st;
    if (stat(from_dir, &st) || !S_ISDIR(st.st_mode)) return;
    for (int i = 0; names[i]; i++) {
        char src[SU_PATH_LEN + 64], dst[SU_PATH_LEN + 64];
        snprintf(src, sizeof src, "%s/%s", from_dir, names[i]);
        snprintf(dst, sizeof dst, "%s/%s", to_dir, names[i]);
        if (access(dst, F_OK) == 0) continue;
        FILE *in = fopen(src, "rb");
        if (!in) continue;
        FILE *out = fopen(dst, "wb");
        char buf[65536];
        size_t n;
        while (out && (n = fread(buf, 1, sizeof buf, in)) > 0) fwrite(buf, 1, n, out);
        if (out) fclose(out);
        fclose(in);
    }
}

static int remove_run(const su_exec *x, rs_row *row, lm_err *err) {
    const su_grid *g = x->plan->grid;
    const su_method *me = &g->methods[x->unit->method];
    const sm_method *m = me->m;
    if (m->needs_reference)
        return lm_errf(err, "method '%s' needs a reference model; not wired into "
                            "grids yet", m->name);
    char model_path[SU_PATH_LEN];
    if (su_artifact_model(x->inputs[0], model_path, sizeof model_path, err)) return -1;
    lm_backend *be = lm_backend_cpu_new(x->threads);
    if (!be) return lm_errf(err, "cannot create the CPU backend");
    lm_model model;
    if (lm_model_load(&model, model_path, err)) {
        lm_backend_cpu_free(be);
        return lm_err_prefix(err, "loading %s: ", model_path);
    }
    model.be = be;
    char out[SU_PATH_LEN + 32], scratch[SU_PATH_LEN + 32];
    snprintf(out, sizeof out, "%s/%s", x->out_dir,
             m->output == SM_OUT_MODEL ? "model" : "policy");
    snprintf(scratch, sizeof scratch, "%s/scratch", x->out_dir);
    int rc = 0;
    if (mkdir(out, 0755) || mkdir(scratch, 0755))
        rc = lm_errf(err, "%s: cannot create: %s", x->out_dir, strerror(errno));
    remove_report rr = {row};
    sm_reporter rep = {&rr, rep_progress, rep_cost};
    sm_data data[16];
    int n_data = me->n_data < 16 ? me->n_data : 16;
    for (int d = 0; d < n_data; d++) {
        const su_data *x = &g->data[me->data_off + d];
        data[d] = (sm_data){x->name, x->path, x->format[0] ? x->format : NULL};
    }
    sm_input in = {.model = &model,
                   .model_path = model_path,
                   .data = data,
                   .n_data = n_data,
                   .params = &me->set.params,
                   .seed = (uint64_t)g->seeds[x->unit->seed],
                   .work_dir = scratch,
                   .out_dir = out,
                   .rep = &rep};
    if (rc == 0) rc = m->run(&in, err);
    /* Name the method, unless its message does already. */
    if (rc && strncmp(err->msg, m->name, strlen(m->name)) != 0)
        lm_err_prefix(err, "%s: ", m->name);
    lm_model_free(&model);
    lm_backend_cpu_free(be);
    if (rc) return -1;
    /* Scratch space is not part of the artifact; a method that left files
     * there keeps them for inspection. */
    rmdir(scratch);
    if (m->output == SM_OUT_MODEL) {
        char src_dir[SU_PATH_LEN];
        snprintf(src_dir, sizeof src_dir, "%s", model_path);
        copy_tokenizer_files(src_dir, out);
        return 0;
    }
    /* A policy applies to the model it was built for: refer to it. */
    return su_artifact_ref_model(x->out_dir, model_path, err);
}

/* ---- tables ---- */

static const su_executor executors[] = {
    {SU_BASE_EVAL, 1, "debug", 1, debug_run},
    {SU_IMPLANT, 1, "debug", 1, debug_run},
    {SU_PREPARE, 1, "debug", 1, debug_run},
    {SU_REMOVE, 1, "debug", 1, debug_run},
    {SU_EVAL, 1, "debug", 1, debug_run},
    {SU_BASE_EVAL, 0, "eval", 1, NULL},
    {SU_IMPLANT, 0, "implant", 1, implant_run},
    {SU_PREPARE, 0, "prepare", 1, NULL},
    {SU_REMOVE, 0, "methods-registry", 1, remove_run},
    {SU_EVAL, 0, "eval", 1, NULL},
};

const su_executor *su_executor_for(su_kind kind, int debug) {
    for (size_t i = 0; i < sizeof executors / sizeof executors[0]; i++)
        if (executors[i].kind == kind && executors[i].debug == !!debug) return &executors[i];
    return NULL;
}

static const su_fp_type fp_types[] = {
    {"none", "no fingerprint: the base model itself (control)", NULL, 0, 0},
    {"debug", "debug track: fake implant", debug_params, N_DEBUG_PARAMS, 1},
};

const su_fp_type *su_fp_type_find(const char *name, int debug) {
    for (size_t i = 0; i < sizeof fp_types / sizeof fp_types[0]; i++)
        if (fp_types[i].debug == !!debug && !strcmp(fp_types[i].name, name))
            return &fp_types[i];
    return NULL;
}

const char *su_fp_type_list(int debug) { return debug ? "debug" : "none"; }

/* metrics.md's names. */
static const char *const metric_names[] = {
    "fsr", "ftr", "ppl", "ppl_ref", "copa", "rte", "wsc", "boolq", "sciq", "asr", NULL};

int su_metric_known(const char *name) {
    for (int i = 0; metric_names[i]; i++)
        if (!strcmp(metric_names[i], name)) return 1;
    return 0;
}

const char *su_metric_list(void) {
    return "fsr, ftr, ppl, ppl_ref, copa, rte, wsc, boolq, sciq, asr";
}

int su_model_path(const su_grid *g, int model, int threads, char *out, size_t cap,
                  lm_err *err) {
    const su_model *mo = &g->models[model];
    if (mo->is_path) {
        snprintf(out, cap, "%s", mo->spec);
        return 0;
    }
    const su_recipe *r = su_zoo_find(mo->spec);
    if (!r) return lm_errf(err, "model '%s' is neither a path nor a zoo recipe", mo->spec);
    if (su_zoo_build(r, NULL, 0, threads, NULL, err)) return lm_err_prefix(err, "zoo %s: ", r->name);
    return su_zoo_model_dir(r, NULL, out, cap, err);
}
