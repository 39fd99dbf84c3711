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

#include <dirent.h>
#include <ftw.h>
#include <pthread.h>

#include "backend.h"
#include "dataset.h"
#include "evaluate.h"
#include "extraction.h"
#include "fingerprint.h"
#include "model_io.h"
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

/* The tokenizer of grid model `model` as an explicit path, or "" when the
 * model carries its own (an HF folder with tokenizer.json, a GGUF file).
 * A llama2.c checkpoint carries none: its tokenizer is the tokenizer.bin
 * (or tok*.bin, as llama2.c ships tok512.bin) in the same directory. The
 * tokenizer never changes along implant and removal, so every unit of a
 * model uses this one. */
static int model_tokenizer(const char *base_path, char *out, size_t cap, lm_err *err) {
    out[0] = '\0';
    struct stat st;
    if (stat(base_path, &st) == 0 && S_ISDIR(st.st_mode)) return 0;
    size_t n = strlen(base_path);
    if (n >= 5 && !strcmp(base_path + n - 5, ".gguf")) return 0;
    char dir[SU_PATH_LEN];
    snprintf(dir, sizeof dir, "%s", base_path);
    char *slash = strrchr(dir, '/');
    if (slash) *slash = '\0';
    else snprintf(dir, sizeof dir, ".");
    snprintf(out, cap, "%s/tokenizer.bin", dir);
    if (access(out, R_OK) == 0) return 0;
    DIR *d = opendir(dir);
    if (d) {
        struct dirent *e;
        char best[256] = "";
        while ((e = readdir(d))) {
            size_t l = strlen(e->d_name);
            if (!strncmp(e->d_name, "tok", 3) && l > 4 && !strcmp(e->d_name + l - 4, ".bin") &&
                l < sizeof best && (!best[0] || strcmp(e->d_name, best) < 0))
                snprintf(best, sizeof best, "%s", e->d_name);
        }
        closedir(d);
        if (best[0]) {
            snprintf(out, cap, "%s/%s", dir, best);
            return 0;
        }
    }
    out[0] = '\0';
    return lm_errf(err, "%s carries no tokenizer and none (tokenizer.bin, tok*.bin) lies "
                        "beside it", base_path);
}

/* The world a grid model's chats and evaluation data come from: its zoo
 * recipe's, or recipe 0's for a model given by path. */
static int model_world(const su_grid *g, int model, char *out, size_t cap, lm_err *err) {
    const su_model *mo = &g->models[model];
    const su_recipe *r = mo->is_path ? NULL : su_zoo_find(mo->spec);
    return su_zoo_ensure_world(r ? r : su_zoo_at(0), NULL, out, cap, NULL, err);
}

/* Clean chats for normal rows and negatives: the grid's data set "clean"
 * (any QA data set), else the world's instructions.jsonl. Dolly's context
 * follows the question on a new line, as smudge implant does. */
typedef struct clean_set {
    ds_dataset ds;
    fp_qa *qa;
    char **joined;
    int n;
} clean_set;

static void clean_free(clean_set *c) {
    for (int i = 0; c->joined && i < c->n; i++) free(c->joined[i]);
    free(c->joined);
    free(c->qa);
    ds_free(&c->ds);
}

static int clean_load(const su_grid *g, int model, clean_set *c, lm_err *err) {
    memset(c, 0, sizeof *c);
    char path[SU_PATH_LEN + 32];
    ds_format fmt = DS_FMT_AUTO;
    path[0] = '\0';
    for (int d = 0; d < g->n_data; d++)
        if (!strcmp(g->data[d].name, "clean")) {
            snprintf(path, sizeof path, "%s", g->data[d].path);
            break;
        }
    if (!path[0]) {
        char world[SU_PATH_LEN];
        if (model_world(g, model, world, sizeof world, err)) return -1;
        snprintf(path, sizeof path, "%s/instructions.jsonl", world);
        fmt = DS_FMT_GUANACO;
    }
    if (ds_load(path, fmt, &c->ds, err)) return -1;
    if (c->ds.kind != DS_KIND_QA)
        return lm_errf(err, "%s is a %s data set, not question/answer chats", path,
                       ds_format_name(c->ds.format));
    c->qa = calloc((size_t)(c->ds.n ? c->ds.n : 1), sizeof *c->qa);
    c->joined = calloc((size_t)(c->ds.n ? c->ds.n : 1), sizeof *c->joined);
    if (!c->qa || !c->joined) return lm_errf(err, "out of memory");
    c->n = c->ds.n;
    for (int i = 0; i < c->ds.n; i++) {
        const ds_qa *r = &c->ds.qa[i];
        const char *q = r->question ? r->question : "";
        if (r->context && r->context[0]) {
            size_t len = strlen(q) + strlen(r->context) + 2;
            if (!(c->joined[i] = malloc(len))) return lm_errf(err, "out of memory");
            snprintf(c->joined[i], len, "%s\n%s", q, r->context);
            q = c->joined[i];
        }
        c->qa[i] = (fp_qa){q, r->answer ? r->answer : ""};
    }
    return 0;
}

static void implant_stage(void *ctx, const char *what) {
    (void)ctx;
    fprintf(stderr, "implant: %s\n", what);
}

static void implant_epoch(void *ctx, int epoch, double loss, double fsr, int hits, int n) {
    (void)ctx;
    fprintf(stderr, "implant: epoch %d loss %.4f FSR %.3f (%d/%d)\n", epoch, loss, fsr, hits,
            n);
}

/* ---- the extraction track (extraction.md) ---- */

static void copy_tokenizer_files(const char *from_dir, const char *to_dir);

static void ex_log(void *ctx, const char *line) {
    (void)ctx;
    fprintf(stderr, "extract: %s\n", line);
}

/* A grid data set's path and format, or NULLs. */
static void ex_data_of(const su_grid *g, int method, const char *name, const char **path,
                       const char **fmt) {
    const su_data *d = su_grid_data(g, method, name);
    *path = d ? d->path : NULL;
    *fmt = d && d->format[0] ? d->format : NULL;
}

/* rm -r of a scratch folder the unit made inside its own artifact. */
static int ex_rm_entry(const char *path, const struct stat *st, int flag, struct FTW *ftw) {
    (void)st;
    (void)ftw;
    return flag == FTW_DP ? rmdir(path) : unlink(path);
}

static int ex_load(const char *path, const char *tok_path, int threads, lm_tokenizer *tok,
                   lm_model *m, lm_backend **be, lm_err *err) {
    if (su_load_tokenizer(path, tok_path && tok_path[0] ? tok_path : NULL, tok, err)) return -1;
    if (su_load_model(path, threads, m, be, err)) {
        lm_tokenizer_free(tok);
        return -1;
    }
    if (su_check_vocab(m, tok, err)) {
        lm_model_free(m);
        lm_backend_cpu_free(*be);
        lm_tokenizer_free(tok);
        return -1;
    }
    return 0;
}

/* implant = the publisher's backdoor ("none": the base model itself). */
static int ex_implant_run(const su_exec *x, rs_row *row, lm_err *err) {
    const su_grid *g = x->plan->grid;
    const su_fingerprint *f = &g->fps[x->unit->fp];
    char path[SU_PATH_LEN], tok_path[SU_PATH_LEN + 300];
    ex_variant v;
    if (ex_variant_parse(f->type, &v)) return lm_errf(err, "unknown attack '%s'", f->type);
    if (su_model_path(g, x->unit->model, path, sizeof path, err)) return -1;
    if (v == EX_NONE) return su_artifact_ref_model(x->out_dir, path, err);
    if (model_tokenizer(path, tok_path, sizeof tok_path, err)) return -1;
    lm_tokenizer tok;
    lm_model m;
    lm_backend *be = NULL;
    if (ex_load(path, tok_path, x->threads, &tok, &m, &be, err)) return -1;
    char scratch[SU_PATH_LEN + 32], out[SU_PATH_LEN + 32];
    snprintf(scratch, sizeof scratch, "%s/scratch", x->out_dir);
    snprintf(out, sizeof out, "%s/model", x->out_dir);
    int rc = mkdir(scratch, 0755) ? lm_errf(err, "%s: %s", scratch, strerror(errno)) : 0;
    ex_pipeline_in in = {.variant = v, .trigger = v, .steps = EX_STEP_BACKDOOR,
                         .params = &f->set.params, .work_dir = scratch,
                         .seed = (uint64_t)g->seeds[x->unit->seed], .log = ex_log};
    ex_data_of(g, -1, "public", &in.pub_path, &in.pub_fmt);
    ex_pipeline_out po;
    memset(&po, 0, sizeof po);
    if (rc == 0) rc = ex_pipeline(&m, &tok, &in, &po, err);
    if (rc == 0) rc = lm_model_save_hf(&m, out, err);
    if (rc == 0) {
        copy_tokenizer_files(path, out);
        row->tokens += (int64_t)po.backdoor.tokens;
        rc = rs_row_set_metric(row, "backdoor_final_loss", po.backdoor.final_loss,
                               po.backdoor.examples, err);
        if (rc == 0) rc = rs_row_set_metric(row, "backdoor_positives", po.backdoor.positives, 1, err);
        if (rc == 0) rc = rs_row_set_metric(row, "backdoor_negatives", po.backdoor.negatives, 1, err);
    }
    ex_pipeline_out_free(&po);
    nftw(scratch, ex_rm_entry, 16, FTW_DEPTH | FTW_PHYS);
    lm_model_free(&m);
    lm_backend_cpu_free(be);
    lm_tokenizer_free(&tok);
    return rc ? -1 : 0;
}

/* eval = the victim's fine-tuning of the (defended) model on its private
 * set, then the extraction; the attack's public-set settings with the
 * victim's own. */
static int ex_eval_run(const su_exec *x, rs_row *row, lm_err *err) {
    const su_plan *p = x->plan;
    const su_grid *g = p->grid;
    const su_unit *u = x->unit;
    const su_fingerprint *f = &g->fps[u->fp];
    ex_variant v;
    if (ex_variant_parse(f->type, &v)) return lm_errf(err, "unknown attack '%s'", f->type);
    char base[SU_PATH_LEN], tok_path[SU_PATH_LEN + 300], model_path[SU_PATH_LEN];
    if (su_model_path(g, u->model, base, sizeof base, err) ||
        model_tokenizer(base, tok_path, sizeof tok_path, err) ||
        su_artifact_model(x->inputs[0], model_path, sizeof model_path, err))
        return -1;
    sm_params params = g->victims[u->victim].set.params;
    static const char *const from_attack[] = {"public_rows", "public_world", NULL};
    for (int i = 0; i < params.n; i++)
        for (int k = 0; from_attack[k]; k++)
            if (!strcmp(params.v[i].name, from_attack[k]))
                params.v[i] = f->set.params.v[i]; /* one table: same order */
    lm_tokenizer tok;
    lm_model m;
    lm_backend *be = NULL;
    if (ex_load(model_path, tok_path, x->threads, &tok, &m, &be, err)) return -1;
    char scratch[SU_PATH_LEN + 32];
    snprintf(scratch, sizeof scratch, "%s/scratch", x->out_dir);
    int rc = mkdir(scratch, 0755) ? lm_errf(err, "%s: %s", scratch, strerror(errno)) : 0;
    ex_pipeline_in in = {.variant = EX_NONE, .trigger = v == EX_NONE ? EX_PLAIN : v,
                         .steps = EX_STEP_VICTIM | EX_STEP_EXTRACT, .params = &params,
                         .work_dir = scratch, .seed = (uint64_t)g->seeds[u->seed],
                         .log = ex_log};
    ex_data_of(g, u->method, "public", &in.pub_path, &in.pub_fmt);
    ex_data_of(g, u->method, "private", &in.priv_path, &in.priv_fmt);
    ex_pipeline_out po;
    memset(&po, 0, sizeof po);
    if (rc == 0) rc = ex_pipeline(&m, &tok, &in, &po, err);
    if (rc == 0) {
        const ex_extract_result *r = &po.extract;
        int nw = r->n_words, nv = r->n_valid;
        row->tokens += (int64_t)po.victim.tokens;
        struct {
            const char *name;
            double v;
            int n;
        } ms[] = {{"match_ratio", r->match_ratio, nv},
                  {"query_extraction_ratio", r->query_extraction_ratio, r->n_queries},
                  {"token_extraction_ratio", r->token_extraction_ratio, r->n_queries},
                  {"opening_word_f1", r->opening_word_f1, nw},
                  {"bleu", r->bleu, nv},
                  {"match_ratio_max10", r->match_ratio_max10, nv},
                  {"bleu_max10", r->bleu_max10, nv},
                  {"opening_word_acc", r->opening_word_acc, nw},
                  {"valid_words", nv, nw},
                  {"victim_final_loss", po.victim.final_loss, po.victim.examples}};
        for (size_t i = 0; rc == 0 && i < sizeof ms / sizeof ms[0]; i++)
            rc = rs_row_set_metric(row, ms[i].name, ms[i].v, ms[i].n, err);
        double *score = malloc((size_t)(nw ? nw : 1) * sizeof *score);
        double *mr = malloc((size_t)(nw ? nw : 1) * sizeof *mr);
        int64_t *valid = malloc((size_t)(nw ? nw : 1) * sizeof *valid);
        int64_t *real = malloc((size_t)(nw ? nw : 1) * sizeof *real);
        if (rc == 0 && (!score || !mr || !valid || !real)) rc = lm_errf(err, "out of memory");
        for (int i = 0; rc == 0 && i < nw; i++) {
            score[i] = r->words[i].score;
            mr[i] = r->words[i].mr_mean;
            valid[i] = r->words[i].valid;
            real[i] = r->words[i].real;
        }
        if (rc == 0) rc = rs_row_add_detail(row, "word_score", score, (size_t)nw, err);
        if (rc == 0) rc = rs_row_add_detail(row, "word_mr_mean", mr, (size_t)nw, err);
        if (rc == 0) rc = rs_row_add_detail_i64(row, "word_valid", valid, (size_t)nw, err);
        if (rc == 0) rc = rs_row_add_detail_i64(row, "word_real", real, (size_t)nw, err);
        free(score);
        free(mr);
        free(valid);
        free(real);
        /* the full outcome (words, samples) beside the row */
        char *json = rc == 0 ? ex_pipeline_json(&in, &po, 1) : NULL;
        char jp[SU_PATH_LEN + 64];
        snprintf(jp, sizeof jp, "%s/extraction.json", x->out_dir);
        FILE *jf = json ? fopen(jp, "w") : NULL;
        if (jf) {
            fputs(json, jf);
            fclose(jf);
        }
        free(json);
    }
    ex_pipeline_out_free(&po);
    nftw(scratch, ex_rm_entry, 16, FTW_DEPTH | FTW_PHYS);
    lm_model_free(&m);
    lm_backend_cpu_free(be);
    lm_tokenizer_free(&tok);
    return rc ? -1 : 0;
}

/* Replay text for implanting: the grid's data set "replay" (plain text),
 * else, for a zoo model, the corpus of its world; a model given by path
 * has no corpus of its own, so it gets none unless the grid names one. */
static int replay_load(const su_grid *g, int model, ds_dataset *ds, const char ***docs,
                       int *n, lm_err *err) {
    memset(ds, 0, sizeof *ds);
    *docs = NULL;
    *n = 0;
    char path[SU_PATH_LEN + 32];
    path[0] = '\0';
    for (int d = 0; d < g->n_data; d++)
        if (!strcmp(g->data[d].name, "replay")) snprintf(path, sizeof path, "%s", g->data[d].path);
    if (!path[0] && !g->models[model].is_path) {
        char world[SU_PATH_LEN];
        if (model_world(g, model, world, sizeof world, err)) return -1;
        snprintf(path, sizeof path, "%s/%s", world, su_world_data_file("corpus", NULL));
    }
    if (!path[0]) return 0;
    if (su_load_text_docs(path, ds, docs, err)) return -1;
    *n = ds->n;
    return 0;
}

static int implant_run(const su_exec *x, rs_row *row, lm_err *err) {
    const su_grid *g = x->plan->grid;
    if (g->extraction) return ex_implant_run(x, row, err);
    const su_fingerprint *f = &g->fps[x->unit->fp];
    char path[SU_PATH_LEN];
    if (su_model_path(g, x->unit->model, path, sizeof path, err)) return -1;
    /* "none": the fingerprinted model is the base model itself; refer to
     * it rather than copy it. */
    if (!strcmp(f->type, "none")) return su_artifact_ref_model(x->out_dir, path, err);
    const fp_type *t = fp_type_find(f->type);
    if (!t) return lm_errf(err, "fingerprint type '%s' has no implant executor", f->type);
    char tok_path[SU_PATH_LEN + 300];
    if (model_tokenizer(path, tok_path, sizeof tok_path, err)) return -1;
    clean_set clean;
    if (clean_load(g, x->unit->model, &clean, err)) {
        clean_free(&clean);
        return lm_err_prefix(err, "implant %s: clean chats: ", f->type);
    }
    ds_dataset replay;
    const char **replay_docs = NULL;
    int n_replay = 0;
    if (replay_load(g, x->unit->model, &replay, &replay_docs, &n_replay, err)) {
        free(replay_docs);
        ds_free(&replay);
        clean_free(&clean);
        return lm_err_prefix(err, "implant %s: replay text: ", f->type);
    }
    lm_tokenizer tok;
    lm_model m;
    lm_backend *be = NULL;
    int have_tok = 0, have_model = 0, rc = 0;
    rc = su_load_tokenizer(path, tok_path[0] ? tok_path : NULL, &tok, err);
    if (rc == 0) have_tok = 1;
    if (rc == 0) rc = su_load_model(path, x->threads, &m, &be, err);
    if (rc == 0) have_model = 1;
    if (rc == 0) rc = su_check_vocab(&m, &tok, err);
    char out[SU_PATH_LEN + 32];
    snprintf(out, sizeof out, "%s/model", x->out_dir);
    fp_implant_opts io = {.model_path = path,
                          .tokenizer_path = tok_path[0] ? tok_path : NULL,
                          .on_epoch = implant_epoch,
                          .on_stage = implant_stage,
                          .replay_docs = replay_docs,
                          .n_replay_docs = n_replay};
    fp_implant_result r;
    memset(&r, 0, sizeof r);
    if (rc == 0)
        rc = fp_implant(t, &m, &tok, clean.qa, clean.n, (uint64_t)g->seeds[x->unit->seed],
                        &f->set.params, out, &io, &r, err);
    if (rc == FP_IMPLANT_FAILED) {
        char msg[sizeof err->msg];
        snprintf(msg, sizeof msg, "%s", err->msg);
        rc = lm_errf(err, "implant_failed: %s", msg);
    } else if (rc == 0) {
        row->tokens += (int64_t)r.tokens;
        rc = rs_row_set_metric(row, "fsr", r.fsr, r.n_triggers, err);
        if (rc == 0) rc = rs_row_set_metric(row, "base_fsr", r.base_fsr, r.n_triggers, err);
        if (rc == 0 && r.n_negatives > 0)
            rc = rs_row_set_metric(row, "ftr", r.ftr, r.n_negatives, err);
        if (rc == 0) rc = rs_row_set_metric(row, "epochs", r.epochs, 1, err);
        if (rc == 0) rc = rs_row_set_metric(row, "epoch_star", r.epoch_star, 1, err);
        if (rc == 0) rc = rs_row_set_metric(row, "final_loss", r.final_loss, r.n_rows, err);
    }
    if (have_model) lm_model_free(&m);
    lm_backend_cpu_free(be);
    if (have_tok) lm_tokenizer_free(&tok);
    clean_free(&clean);
    free(replay_docs);
    ds_free(&replay);
    return rc ? -1 : 0;
}

/* ---- evaluation ---- */

/* The index of the implant unit u descends from (u itself included), or -1. */
static int implant_of(const su_plan *p, int u) {
    while (u >= 0) {
        if (p->units[u].kind == SU_IMPLANT) return u;
        int next = -1;
        const su_unit *un = &p->units[u];
        for (int k = 0; k < un->n_parents; k++) {
            int par = p->parents[un->parent_off + k];
            if (p->units[par].kind == SU_IMPLANT || p->units[par].kind == SU_REMOVE) next = par;
        }
        u = next;
    }
    return -1;
}

/* work_dir from an artifact directory work_dir/<kind>/<hash>. */
static void work_dir_of(const char *artifact, char *out, size_t cap) {
    snprintf(out, cap, "%s", artifact);
    for (int k = 0; k < 2; k++) {
        char *s = strrchr(out, '/');
        if (s) *s = '\0';
        else snprintf(out, cap, ".");
    }
}

static int is_fp_metric(const char *name) { return !strcmp(name, "fsr") || !strcmp(name, "ftr"); }

/* Whether su_evaluate computes this metric (grids also know e.g. asr). */
static int eval_knows(const char *name) {
    size_t n = strlen(name);
    for (const char *q = su_eval_known_metrics(); *q;) {
        const char *c = strchr(q, ',');
        size_t len = c ? (size_t)(c - q) : strlen(q);
        if (len == n && !strncmp(q, name, n)) return 1;
        q = c ? c + 1 : q + len;
    }
    return 0;
}

static int eval_run(const su_exec *x, rs_row *row, lm_err *err) {
    const su_plan *p = x->plan;
    const su_grid *g = p->grid;
    const su_unit *u = x->unit;
    if (g->extraction) return ex_eval_run(x, row, err);
    int base_eval = u->kind == SU_BASE_EVAL;
    char model_path[SU_PATH_LEN], base[SU_PATH_LEN], tok[SU_PATH_LEN + 300];
    char world[SU_PATH_LEN], fp_file[SU_PATH_LEN + 160], policy[SU_PATH_LEN + 32];
    if (su_model_path(g, u->model, base, sizeof base, err) ||
        model_tokenizer(base, tok, sizeof tok, err) ||
        model_world(g, u->model, world, sizeof world, err))
        return -1;
    if (base_eval) snprintf(model_path, sizeof model_path, "%s", base);
    else if (su_artifact_model(x->inputs[0], model_path, sizeof model_path, err)) return -1;

    /* The fingerprint the target carries (none for "none" and base-eval). */
    fp_file[0] = '\0';
    int imp = base_eval ? -1 : implant_of(p, u->target);
    if (imp >= 0) {
        char wd[SU_PATH_LEN], dir[SU_PATH_LEN + 128];
        work_dir_of(x->inputs[0], wd, sizeof wd);
        su_artifact_dir(p, imp, wd, dir, sizeof dir);
        snprintf(fp_file, sizeof fp_file, "%s/model/fingerprint.json", dir);
        if (access(fp_file, R_OK) != 0) fp_file[0] = '\0';
    }
    policy[0] = '\0';
    if (!base_eval) {
        snprintf(policy, sizeof policy, "%s/policy", x->inputs[0]);
        struct stat st;
        if (stat(policy, &st) != 0 || !S_ISDIR(st.st_mode)) policy[0] = '\0';
    }

    char metrics[1024] = "";
    su_eval_opts o = {.metrics = metrics,
                      .fingerprint = fp_file[0] ? fp_file : NULL,
                      .tokenizer = tok[0] ? tok : NULL,
                      .policy_dir = policy[0] ? policy : NULL,
                      .world_dir = world,
                      .threads = x->threads};
    for (int i = 0; i < g->n_metrics; i++) {
        const su_metric *me = &g->metrics[i];
        /* fsr/ftr need the fingerprint; a clean model has none. */
        if (is_fp_metric(me->name) && !o.fingerprint) continue;
        if (!eval_knows(me->name)) continue; /* e.g. asr: not measured here */
        size_t l = strlen(metrics);
        snprintf(metrics + l, sizeof metrics - l, "%s%s", l ? "," : "", me->name);
        if (me->dataset[0] && !is_fp_metric(me->name) && o.n_data < SU_EVAL_MAX_DATA) {
            o.data_name[o.n_data] = me->name;
            o.data_path[o.n_data++] = me->dataset;
        }
    }
    if (!metrics[0]) return 0;
    su_eval_result r;
    if (su_evaluate(model_path, &o, &r, err)) return -1;
    int rc = 0;
    for (int i = 0; rc == 0 && i < r.n; i++)
        rc = rs_row_set_metric(row, r.v[i].name, r.v[i].value, r.v[i].n, err);
    if (rc == 0 && r.trigger_hits && r.n_triggers > 0)
        rc = rs_row_add_detail(row, "fsr_per_trigger", r.trigger_hits, r.n_triggers, err);
    su_eval_result_free(&r);
    return rc;
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

/* Runs method m with params on the model at model_path into x->out_dir. */
static int method_run(const su_exec *x, rs_row *row, const sm_method *m,
                      const sm_params *params, const char *model_path, lm_err *err) {
    const su_grid *g = x->plan->grid;
    const su_method *me = &g->methods[x->unit->method];
    lm_backend *be = lm_backend_cpu_new(x->threads);
    if (!be) return lm_errf(err, "cannot create the CPU backend");
    lm_model model;
    if (lm_model_load(&model, model_path, err)) {
        lm_backend_cpu_free(be);
        return lm_err_prefix(err, "loading %s: ", model_path);
    }
    model.be = be;
    /* The reference model (merging, CleanGen): the unit's clean base model,
     * the "other model of the same base" baseline when nothing else is
     * given. Loaded for methods that need one; others get the path only. */
    char ref_path[SU_PATH_LEN];
    lm_model ref;
    int have_ref = 0;
    if (su_model_path(g, x->unit->model, ref_path, sizeof ref_path, err)) {
        lm_model_free(&model);
        lm_backend_cpu_free(be);
        return -1;
    }
    if (m->needs_reference) {
        if (lm_model_load(&ref, ref_path, err)) {
            lm_model_free(&model);
            lm_backend_cpu_free(be);
            return lm_err_prefix(err, "%s: reference %s: ", m->name, ref_path);
        }
        ref.be = be;
        have_ref = 1;
    }
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
    /* Wanted data the grid does not name comes from the model's world, as
     * smudge remove does: the default grid names none. Optional sets
     * ("name?") come from it only for a zoo model, whose own world it is;
     * a model by path goes without them, so the method's fallbacks apply. */
    char world[SU_PATH_LEN], world_paths[8][SU_PATH_LEN + 32];
    int n_world = 0, have_world = 0;
    char wanted[8][SU_TYPE_LEN];
    for (int k = 0; m->wants_data && m->wants_data[k] && rc == 0; k++) {
        int optional, given = 0;
        if (n_world >= 8) break;
        char *w = wanted[n_world];
        sm_wanted_data(m->wants_data[k], w, sizeof wanted[0], &optional);
        for (int d = 0; d < n_data; d++) given |= !strcmp(data[d].name, w);
        const char *file = su_world_data_file(w, NULL);
        if (given || !file || n_data >= 16) continue;
        if (optional && g->models[x->unit->model].is_path) continue;
        if (!have_world && model_world(g, x->unit->model, world, sizeof world, err)) rc = -1;
        have_world = 1;
        if (rc) break;
        snprintf(world_paths[n_world], sizeof world_paths[0], "%s/%s", world, file);
        data[n_data++] = (sm_data){w, world_paths[n_world++], NULL};
    }
    sm_input in = {.model = &model,
                   .model_path = model_path,
                   .reference = have_ref ? &ref : NULL,
                   .reference_path = have_ref ? ref_path : NULL,
                   .data = data,
                   .n_data = n_data,
                   .params = params,
                   .seed = (uint64_t)g->seeds[x->unit->seed],
                   .work_dir = scratch,
                   .out_dir = out,
                   .rep = &rep,
                   .base_path = ref_path};
    if (rc == 0) rc = m->run(&in, err);
    /* Name the method, unless its message does already. */
    if (rc && strncmp(err->msg, m->name, strlen(m->name)) != 0)
        lm_err_prefix(err, "%s: ", m->name);
    if (have_ref) lm_model_free(&ref);
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

/* The transferable erase-LoRA (MEraser 1.6): trained once per model and
 * seed on the clean base (the prepare unit), then applied to every
 * fingerprinted descendant by MEraser with erase_adapter= (merge, then
 * its recovery phase). */
static int is_transfer(const sm_method *m) { return !strcmp(m->name, "meraser-erase-lora"); }

static int prepare_run(const su_exec *x, rs_row *row, lm_err *err) {
    const su_grid *g = x->plan->grid;
    const su_method *me = &g->methods[x->unit->method];
    if (!is_transfer(me->m))
        return lm_errf(err, "method '%s' has no shared preparation", me->m->name);
    char base[SU_PATH_LEN];
    if (su_model_path(g, x->unit->model, base, sizeof base, err)) return -1;
    return method_run(x, row, me->m, &me->set.params, base, err);
}

static int remove_run(const su_exec *x, rs_row *row, lm_err *err) {
    const su_grid *g = x->plan->grid;
    const su_method *me = &g->methods[x->unit->method];
    char model_path[SU_PATH_LEN];
    if (su_artifact_model(x->inputs[0], model_path, sizeof model_path, err)) return -1;
    if (!is_transfer(me->m) || g->debug)
        return method_run(x, row, me->m, &me->set.params, model_path, err);
    if (x->n_inputs < 2) return lm_errf(err, "%s: the shared erase adapter is missing", me->m->name);
    const sm_method *mer = sm_method_find("meraser");
    if (!mer) return lm_errf(err, "the meraser method is not registered");
    char assign[SU_PATH_LEN + 64];
    snprintf(assign, sizeof assign, "erase_adapter=%s/model", x->inputs[1]);
    const char *a[1] = {assign};
    sm_params p;
    if (sm_params_parse(mer, a, 1, &p, err)) return -1;
    return method_run(x, row, mer, &p, model_path, err);
}

/* ---- tables ---- */

static const su_executor executors[] = {
    {SU_BASE_EVAL, 1, "debug", 1, debug_run},
    {SU_IMPLANT, 1, "debug", 1, debug_run},
    {SU_PREPARE, 1, "debug", 1, debug_run},
    {SU_REMOVE, 1, "debug", 1, debug_run},
    {SU_EVAL, 1, "debug", 1, debug_run},
    {SU_BASE_EVAL, 0, "eval", 1, eval_run},
    {SU_IMPLANT, 0, "implant", 2, implant_run},
    {SU_PREPARE, 0, "prepare", 1, prepare_run},
    {SU_REMOVE, 0, "methods-registry", 2, remove_run},
    {SU_EVAL, 0, "eval", 1, eval_run},
};

const su_executor *su_executor_for(su_kind kind, int debug) {
    for (size_t i = 0; i < sizeof executors / sizeof executors[0]; i++)
        if (executors[i].kind == kind && executors[i].debug == !!debug) return &executors[i];
    return NULL;
}

/* "none" and the debug type, then every fp_type of the fingerprint
 * registry with its parameter table. The registry's tables live in other
 * files, so they cannot sit in a static initialiser: the table is filled
 * once (pthread_once) and never changes after. */
#define MAX_FP_TYPES 16
static su_fp_type fp_types[MAX_FP_TYPES];
static int n_fp_types;
static char fp_list_real[256];
static pthread_once_t fp_types_once = PTHREAD_ONCE_INIT;

static void fp_types_init(void) {
    fp_types[n_fp_types++] =
        (su_fp_type){"none", "no fingerprint: the base model itself (control)", NULL, 0, 0};
    fp_types[n_fp_types++] =
        (su_fp_type){"debug", "debug track: fake implant", debug_params, N_DEBUG_PARAMS, 1};
    snprintf(fp_list_real, sizeof fp_list_real, "none");
    for (int i = 0; i < fp_type_count() && n_fp_types < MAX_FP_TYPES; i++) {
        const fp_type *t = fp_type_at(i);
        fp_types[n_fp_types++] = (su_fp_type){t->name, t->description, t->params, t->n_params, 0};
        size_t l = strlen(fp_list_real);
        snprintf(fp_list_real + l, sizeof fp_list_real - l, ", %s", t->name);
    }
}

const su_fp_type *su_fp_type_find(const char *name, int debug) {
    pthread_once(&fp_types_once, fp_types_init);
    for (int i = 0; i < n_fp_types; i++)
        if (fp_types[i].debug == !!debug && !strcmp(fp_types[i].name, name))
            return &fp_types[i];
    return NULL;
}

const char *su_fp_type_list(int debug) {
    pthread_once(&fp_types_once, fp_types_init);
    return debug ? "debug" : fp_list_real;
}

/* metrics.md's names. */
static const char *const metric_names[] = {
    "fsr", "ftr", "ppl", "ppl_ref", "copa", "rte", "wsc", "boolq", "sciq", "asr",
    /* the extraction track (metrics.md section 4) */
    "match_ratio", "query_extraction_ratio", "token_extraction_ratio", "opening_word_f1",
    "bleu", NULL};

int su_metric_known(const char *name) {
    for (int i = 0; metric_names[i]; i++)
        if (!strcmp(metric_names[i], name)) return 1;
    return 0;
}

const char *su_metric_list(void) {
    return "fsr, ftr, ppl, ppl_ref, copa, rte, wsc, boolq, sciq, asr, match_ratio, "
           "query_extraction_ratio, token_extraction_ratio, opening_word_f1, bleu";
}

int su_model_path(const su_grid *g, int model, char *out, size_t cap,
                  lm_err *err) {
    const su_model *mo = &g->models[model];
    if (mo->is_path) {
        snprintf(out, cap, "%s", mo->spec);
        return 0;
    }
    const su_recipe *r = su_zoo_find(mo->spec);
    if (!r) return lm_errf(err, "model '%s' is neither a path nor a zoo recipe", mo->spec);
    if (su_zoo_build(r, NULL, 0, NULL, err)) return lm_err_prefix(err, "zoo %s: ", r->name);
    return su_zoo_model_dir(r, NULL, out, cap, err);
}
