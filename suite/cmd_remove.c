/* smudge remove: run one removal method on one model; smudge methods: what
 * methods there are (built in and plugins) and what they take.
 *
 * Everything that can be checked without loading a model is checked first:
 * the method's name, its parameters (sm_params_parse), the data sets it
 * wants, the reference model it needs. Then the model is loaded, the method
 * runs with a reporter that shows progress on a terminal and adds up the
 * cost, and DIR receives the result, the model's tokenizer files (when the
 * result is a model) and cost.json. */
#include <dirent.h>
#include <errno.h>
#include <ftw.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "cli.h"
#include "commands.h"
#include "method.h"
#include "model_io.h"
#include "zoo.h"

static const char remove_usage[] =
    "usage: smudge remove --method NAME --model PATH|ZOO --out DIR\n"
    "                     [--param NAME=VALUE ...] [--data NAME=FILE ...]\n"
    "                     [--reference PATH|ZOO] [--plugin FILE.so ...]\n"
    "                     [--tokenizer FILE] [--seed N] [--threads N] [--cache DIR]\n\n"
    "Runs a removal method on a (fingerprinted) model and writes its result to\n"
    "DIR: a model as a Hugging Face folder (with the model's tokenizer files),\n"
    "an adapter, or a decoding policy (policy.json, for smudge eval --policy).\n"
    "DIR also receives cost.json (wall seconds, tokens, FLOPs per step). A JSON\n"
    "summary goes to stdout, progress to stderr when it is a terminal.\n"
    "Parameters, data sets and the reference are checked before anything loads.\n\n"
    "  --method NAME        a method of 'smudge methods' (built in or plugin)\n"
    "  --model PATH|ZOO     the model to clean: a checkpoint, or a zoo recipe name\n"
    "  --param NAME=VALUE   a method parameter; repeat for several\n"
    "  --data NAME=FILE     a data set the method wants; repeat for several. Names\n"
    "                       marked optional in 'smudge methods' may be left out\n"
    "                       (a zoo model named by recipe gets its world's copy);\n"
    "                       'instructions' defaults to the world's instructions.jsonl,\n"
    "                       'corpus' to its corpus.txt, 'heldout' to heldout.txt\n"
    "                       (the zoo model's world, else the world of seed 1)\n"
    "  --reference PATH|ZOO a reference model, for methods that need one\n"
    "  --plugin FILE.so     load an out-of-tree method (also: every *.so in the\n"
    "                       colon-separated SMUDGE_PLUGIN_PATH)\n"
    "  --tokenizer FILE     the model's tokenizer when it carries none (llama2.c);\n"
    "                       methods receive it as data set 'tokenizer'\n"
    "  --seed N             seed of everything random in the method (default 0)\n"
    "  --threads N          CPU threads (default: all cores)\n"
    "  --cache DIR          zoo cache (default $XDG_CACHE_HOME/smudge)\n";

static const char methods_usage[] =
    "usage: smudge methods [NAME] [--plugin FILE.so ...]\n\n"
    "Lists every removal method, built in and from plugins (--plugin, and every\n"
    "*.so in SMUDGE_PLUGIN_PATH), with its description, the data sets it reads\n"
    "and its parameter table (name, type, default, range or choices, help).\n"
    "With NAME, only that method.\n";

/* ---- smudge methods ---- */

static const char *type_label(sm_param_type t) {
    switch (t) {
    case SM_PARAM_INT: return "int";
    case SM_PARAM_FLOAT: return "float";
    case SM_PARAM_BOOL: return "bool";
    case SM_PARAM_STRING: return "string";
    case SM_PARAM_CHOICE: return "choice";
    }
    return "?";
}

static void print_method(const sm_method *m, int plugin) {
    printf("%s%s\n  %s\n", m->name, plugin ? "  (plugin)" : "", m->description);
    printf("  output: %s\n", m->output == SM_OUT_POLICY ? "decoding policy" : "model");
    if (m->needs_reference) printf("  needs: --reference MODEL\n");
    if (m->wants_data && m->wants_data[0]) {
        printf("  data:\n");
        for (int i = 0; m->wants_data[i]; i++) {
            char name[128];
            int opt;
            const char *what = NULL;
            sm_wanted_data(m->wants_data[i], name, sizeof name, &opt);
            if (opt) printf("    %-14s optional\n", name);
            else if (su_world_data_file(name, &what)) printf("    %-14s default: %s\n", name, what);
            else printf("    %-14s required (--data %s=FILE)\n", name, name);
        }
    }
    if (m->n_params == 0) {
        printf("  parameters: none\n\n");
        return;
    }
    printf("  parameters:\n    %-22s %-7s %-10s %-22s %s\n", "name", "type", "default",
           "range/choices", "help");
    for (int i = 0; i < m->n_params; i++) {
        const sm_param_def *d = &m->params[i];
        char range[128] = "";
        if (d->type == SM_PARAM_INT || d->type == SM_PARAM_FLOAT)
            snprintf(range, sizeof range, "[%.10g, %.10g]", d->min, d->max);
        else if (d->type == SM_PARAM_CHOICE)
            snprintf(range, sizeof range, "%s", d->choices ? d->choices : "");
        printf("    %-22s %-7s %-10s %-22s %s\n", d->name, type_label(d->type),
               d->def[0] ? d->def : "\"\"", range, d->help ? d->help : "");
    }
    putchar('\n');
}

/* --plugin and --param/--data repeat: collect them before the option
 * parser, which keeps one value per option. `rest` gets the others. */
typedef struct repeated {
    const char **plugins, **params, **data;
    int n_plugins, n_params, n_data;
    char **rest;
    int n_rest;
} repeated;

static int split_repeated(int argc, char **argv, repeated *r, lm_err *err) {
    memset(r, 0, sizeof *r);
    r->plugins = calloc((size_t)argc + 1, sizeof *r->plugins);
    r->params = calloc((size_t)argc + 1, sizeof *r->params);
    r->data = calloc((size_t)argc + 1, sizeof *r->data);
    r->rest = calloc((size_t)argc + 1, sizeof *r->rest);
    if (!r->plugins || !r->params || !r->data || !r->rest) return lm_errf(err, "out of memory");
    static const char *const names[] = {"--plugin", "--param", "--data"};
    for (int i = 0; i < argc; i++) {
        int which = -1;
        const char *v = NULL;
        for (int k = 0; k < 3; k++) {
            size_t n = strlen(names[k]);
            if (!strncmp(argv[i], names[k], n) && (argv[i][n] == '\0' || argv[i][n] == '=')) {
                which = k;
                if (argv[i][n] == '=') v = argv[i] + n + 1;
            }
        }
        if (which < 0) {
            r->rest[r->n_rest++] = argv[i];
            continue;
        }
        if (!v) {
            if (i + 1 >= argc) return lm_errf(err, "%s needs a value", names[which]);
            v = argv[++i];
        }
        if (which == 0) r->plugins[r->n_plugins++] = v;
        else if (which == 1) r->params[r->n_params++] = v;
        else r->data[r->n_data++] = v;
    }
    return 0;
}

static void free_repeated(repeated *r) {
    free(r->plugins);
    free(r->params);
    free(r->data);
    free(r->rest);
}

static int load_plugins(const repeated *r, lm_err *err) {
    for (int i = 0; i < r->n_plugins; i++) {
        /* dlopen reads a bare name as a library to search for: a file
         * named on the command line is meant as a path */
        char path[4200];
        snprintf(path, sizeof path, "%s%s", strchr(r->plugins[i], '/') ? "" : "./", r->plugins[i]);
        if (sm_plugin_load(path, err)) return -1;
    }
    if (sm_plugin_load_env(err)) return lm_err_prefix(err, "SMUDGE_PLUGIN_PATH: ");
    return 0;
}

static void method_list(char *buf, size_t cap) {
    buf[0] = '\0';
    for (int i = 0; i < sm_method_count(); i++) {
        strncat(buf, i ? ", " : "", cap - strlen(buf) - 1);
        strncat(buf, sm_method_at(i)->name, cap - strlen(buf) - 1);
    }
}

int cmd_methods(int argc, char **argv) {
    if (cli_wants_help(argc, argv, 2)) {
        fputs(methods_usage, stdout);
        return CLI_OK;
    }
    lm_err err = {{0}};
    repeated r;
    int n_builtin = sm_method_count();
    const char *pos[1] = {NULL};
    int n_pos = 0;
    cli_opt opts[] = {{0}};
    int rc = split_repeated(argc, argv, &r, &err);
    if (rc == 0 && (r.n_params || r.n_data)) rc = lm_errf(&err, "methods takes only --plugin");
    if (rc == 0) rc = cli_parse(r.n_rest, r.rest, 2, opts, pos, 1, &n_pos, &err);
    if (rc) {
        fprintf(stderr, "smudge methods: %s\n", err.msg);
        free_repeated(&r);
        return CLI_USAGE;
    }
    if (load_plugins(&r, &err)) {
        fprintf(stderr, "smudge methods: %s\n", err.msg);
        free_repeated(&r);
        return CLI_FAIL;
    }
    free_repeated(&r);
    if (n_pos == 1) {
        const sm_method *m = sm_method_find(pos[0]);
        if (!m) {
            char list[2048];
            method_list(list, sizeof list);
            fprintf(stderr, "smudge methods: unknown method '%s' (methods: %s)\n", pos[0], list);
            return CLI_USAGE;
        }
        int idx = 0;
        while (sm_method_at(idx) != m) idx++;
        print_method(m, idx >= n_builtin);
        return CLI_OK;
    }
    for (int i = 0; i < sm_method_count(); i++) print_method(sm_method_at(i), i >= n_builtin);
    return CLI_OK;
}

/* ---- the reporter ---- */

enum { MAX_COST_STEPS = 64 };

typedef struct cost_step {
    char step[64];
    double seconds, tokens, flops;
} cost_step;

typedef struct reporter_state {
    int tty;
    int shown;              /* a progress line is on the terminal */
    cost_step steps[MAX_COST_STEPS];
    int n_steps;
    double tokens, flops;
} reporter_state;

static void rep_progress(void *ctx, double fraction, const char *what) {
    reporter_state *s = ctx;
    if (!s->tty) return;
    if (fraction < 0) fraction = 0;
    if (fraction > 1) fraction = 1;
    fprintf(stderr, "\r\033[K[%3.0f%%] %s", 100.0 * fraction, what ? what : "");
    s->shown = 1;
}

static void rep_cost(void *ctx, const char *step, double seconds, double tokens,
                     double flops) {
    reporter_state *s = ctx;
    s->tokens += tokens;
    s->flops += flops;
    /* the same step name twice adds up */
    int i = 0;
    while (i < s->n_steps && strcmp(s->steps[i].step, step ? step : "")) i++;
    if (i == s->n_steps) {
        if (s->n_steps == MAX_COST_STEPS) i = MAX_COST_STEPS - 1; /* the rest pile up here */
        else snprintf(s->steps[s->n_steps++].step, sizeof s->steps[0].step, "%s", step ? step : "");
    }
    s->steps[i].seconds += seconds;
    s->steps[i].tokens += tokens;
    s->steps[i].flops += flops;
}

static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static int write_cost(const char *out, const char *method, double seconds,
                      const reporter_state *s, lm_err *err) {
    char path[4200];
    snprintf(path, sizeof path, "%s/cost.json", out);
    FILE *f = fopen(path, "w");
    if (!f) return lm_errf(err, "cannot write %s: %s", path, strerror(errno));
    fprintf(f, "{\n  \"method\": ");
    su_json_string(f, method, strlen(method));
    fprintf(f, ",\n  \"seconds\": %.3f,\n  \"tokens\": %.0f,\n  \"flops\": %.6g,\n  \"steps\": [",
            seconds, s->tokens, s->flops);
    for (int i = 0; i < s->n_steps; i++) {
        fprintf(f, "%s\n    {\"step\": ", i ? "," : "");
        su_json_string(f, s->steps[i].step, strlen(s->steps[i].step));
        fprintf(f, ", \"seconds\": %.3f, \"tokens\": %.0f, \"flops\": %.6g}", s->steps[i].seconds,
                s->steps[i].tokens, s->steps[i].flops);
    }
    fprintf(f, "%s]\n}\n", s->n_steps ? "\n  " : "");
    if (fclose(f)) return lm_errf(err, "cannot write %s", path);
    return 0;
}

/* ---- files ---- */

static int is_dir(const char *p) {
    struct stat st;
    return p && stat(p, &st) == 0 && S_ISDIR(st.st_mode);
}

static int mkdirs(const char *path, lm_err *err) {
    char p[4096];
    if (strlen(path) >= sizeof p) return lm_errf(err, "%s: path too long", path);
    snprintf(p, sizeof p, "%s", path);
    for (char *s = p + 1; *s; s++) {
        if (*s != '/') continue;
        *s = '\0';
        if (mkdir(p, 0755) && errno != EEXIST) return lm_errf(err, "cannot create %s: %s", p, strerror(errno));
        *s = '/';
    }
    if (mkdir(p, 0755) && errno != EEXIST) return lm_errf(err, "cannot create %s: %s", p, strerror(errno));
    if (!is_dir(p)) return lm_errf(err, "%s exists and is not a folder", p);
    return 0;
}

static int copy_file(const char *from, const char *to) {
    FILE *in = fopen(from, "rb");
    if (!in) return -1;
    FILE *out = fopen(to, "wb");
    char buf[65536];
    size_t k;
    int rc = out ? 0 : -1;
    while (rc == 0 && (k = fread(buf, 1, sizeof buf, in)) > 0)
        if (fwrite(buf, 1, k, out) != k) rc = -1;
    if (out && fclose(out)) rc = -1;
    fclose(in);
    return rc;
}

/* Copies dir/name to out/name unless the method wrote one itself. */
static int copy_beside(const char *dir, const char *name, const char *out, lm_err *err) {
    char a[4200], b[4200];
    snprintf(a, sizeof a, "%s/%s", dir, name);
    snprintf(b, sizeof b, "%s/%s", out, name);
    if (access(a, R_OK) != 0 || access(b, F_OK) == 0) return 0;
    if (copy_file(a, b)) return lm_errf(err, "cannot copy %s to %s", a, out);
    return 0;
}

/* The tokenizer travels with a model result: a Hugging Face folder's files,
 * a llama2.c tokenizer beside the weights (tok*.bin, as smudge implant
 * leaves it), or the --tokenizer file. */
static int place_tokenizer(const char *model_dir, const char *tok, const char *out,
                           lm_err *err) {
    static const char *const hf[] = {"tokenizer.json", "tokenizer_config.json",
                                     "special_tokens_map.json", "tokenizer.model",
                                     "vocab.json", "merges.txt", "tokenizer.bin"};
    for (int k = 0; k < 2; k++) {
        const char *dir = k == 0 ? model_dir : tok;
        if (!is_dir(dir)) continue;
        for (size_t i = 0; i < sizeof hf / sizeof hf[0]; i++)
            if (copy_beside(dir, hf[i], out, err)) return -1;
    }
    DIR *d = is_dir(model_dir) ? opendir(model_dir) : NULL;
    struct dirent *e;
    int rc = 0;
    while (rc == 0 && d && (e = readdir(d))) {
        size_t n = strlen(e->d_name);
        if (n > 7 && !strncmp(e->d_name, "tok", 3) && !strcmp(e->d_name + n - 4, ".bin"))
            rc = copy_beside(model_dir, e->d_name, out, err);
    }
    if (d) closedir(d);
    if (rc == 0 && tok && !is_dir(tok)) {
        const char *base = strrchr(tok, '/');
        base = base ? base + 1 : tok;
        char b[4200];
        snprintf(b, sizeof b, "%s/%s", out, base);
        if (access(b, F_OK) != 0 && copy_file(tok, b))
            rc = lm_errf(err, "cannot copy %s to %s", tok, out);
    }
    return rc;
}

static int rm_entry(const char *path, const struct stat *sb, int flag, struct FTW *ftw) {
    (void)sb;
    (void)flag;
    (void)ftw;
    return remove(path);
}

/* ---- smudge remove ---- */

int cmd_remove(int argc, char **argv) {
    if (cli_wants_help(argc, argv, 2)) {
        fputs(remove_usage, stdout);
        return CLI_OK;
    }
    lm_err err = {{0}};
    repeated r;
    cli_opt opts[] = {{"--method", 1}, {"--model", 1},     {"--out", 1},   {"--reference", 1},
                      {"--tokenizer", 1}, {"--seed", 1},   {"--threads", 1}, {"--cache", 1},
                      {0}};
    long seed = 0, threads = 0;
    int rc = split_repeated(argc, argv, &r, &err);
    if (rc == 0) rc = cli_parse(r.n_rest, r.rest, 2, opts, NULL, 0, NULL, &err);
    if (rc == 0 && cli_get(opts, "--seed"))
        rc = cli_int("--seed", cli_get(opts, "--seed"), 0, 0x7fffffffffffffffL, &seed, &err);
    if (rc == 0 && cli_get(opts, "--threads"))
        rc = cli_int("--threads", cli_get(opts, "--threads"), 1, 1024, &threads, &err);
    const char *mname = cli_get(opts, "--method"), *model_arg = cli_get(opts, "--model"),
               *out = cli_get(opts, "--out"), *ref_arg = cli_get(opts, "--reference"),
               *tok_path = cli_get(opts, "--tokenizer"), *cache = cli_get(opts, "--cache");
    if (rc == 0 && (!mname || !model_arg || !out))
        rc = lm_errf(&err, "--method, --model and --out are required (see --help)");
    if (rc) {
        fprintf(stderr, "smudge remove: %s\n", err.msg);
        free_repeated(&r);
        return CLI_USAGE;
    }
    if (load_plugins(&r, &err)) {
        fprintf(stderr, "smudge remove: %s\n", err.msg);
        free_repeated(&r);
        return CLI_USAGE;
    }

    /* ---- everything that needs no model ---- */
    const sm_method *m = sm_method_find(mname);
    sm_params params;
    enum { MAX_DATA = 40 };
    sm_data data[MAX_DATA];
    char data_paths[MAX_DATA][4200];
    int n_data = 0;
    if (!m) {
        char list[2048];
        method_list(list, sizeof list);
        rc = lm_errf(&err, "unknown method '%s' (methods: %s)", mname, list);
    }
    if (rc == 0) rc = sm_params_parse(m, r.params, r.n_params, &params, &err);
    if (rc == 0 && m->needs_reference && !ref_arg)
        rc = lm_errf(&err, "method '%s' needs a reference model: pass --reference PATH|ZOO", m->name);
    /* --data NAME=FILE: a name the method wants, a file that is there */
    for (int i = 0; rc == 0 && i < r.n_data; i++) {
        const char *eq = strchr(r.data[i], '=');
        if (!eq || eq == r.data[i] || !eq[1]) {
            rc = lm_errf(&err, "--data '%s' is not NAME=FILE", r.data[i]);
            break;
        }
        char name[128];
        snprintf(name, sizeof name, "%.*s", (int)(eq - r.data[i]), r.data[i]);
        int known = 0;
        char wanted[1024] = "";
        for (int k = 0; m->wants_data && m->wants_data[k]; k++) {
            char w[128];
            int opt;
            sm_wanted_data(m->wants_data[k], w, sizeof w, &opt);
            known |= !strcmp(w, name);
            strncat(wanted, k ? ", " : "", sizeof wanted - strlen(wanted) - 1);
            strncat(wanted, w, sizeof wanted - strlen(wanted) - 1);
        }
        if (!known) {
            rc = lm_errf(&err, "--data %s: method '%s' reads no data set of that name (%s%s)", name,
                         m->name, wanted[0] ? "it reads: " : "it reads none", wanted);
            break;
        }
        for (int k = 0; k < n_data; k++)
            if (!strcmp(data[k].name, name)) rc = lm_errf(&err, "--data %s given twice", name);
        if (rc == 0 && access(eq + 1, R_OK) != 0)
            rc = lm_errf(&err, "--data %s: cannot read %s: %s", name, eq + 1, strerror(errno));
        if (rc == 0 && n_data >= MAX_DATA / 2) rc = lm_errf(&err, "--data: at most %d data sets", MAX_DATA / 2);
        if (rc == 0) {
            snprintf(data_paths[n_data], sizeof data_paths[0], "%s", eq + 1);
            data[n_data] = (sm_data){strdup(name), data_paths[n_data], NULL};
            n_data++;
        }
    }
    /* wanted data not given: the embedded default, else an error. An
     * optional set comes from the world only for a zoo model, whose own
     * world it is; a checkpoint by path goes without it. */
    int need_world = 0, zoo_model = su_zoo_find(model_arg) != NULL;
    for (int k = 0; rc == 0 && m->wants_data && m->wants_data[k]; k++) {
        char w[128];
        int opt, given = 0;
        sm_wanted_data(m->wants_data[k], w, sizeof w, &opt);
        for (int i = 0; i < n_data; i++) given |= !strcmp(data[i].name, w);
        if (given) continue;
        if (opt) {
            need_world |= zoo_model && su_world_data_file(w, NULL) != NULL;
            continue;
        }
        if (su_world_data_file(w, NULL)) {
            need_world = 1;
        } else {
            rc = lm_errf(&err, "method '%s' needs data set '%s', which has no built-in default: "
                               "pass --data %s=FILE", m->name, w, w);
        }
    }
    if (rc == 0 && tok_path && access(tok_path, R_OK) != 0)
        rc = lm_errf(&err, "--tokenizer: cannot read %s: %s", tok_path, strerror(errno));
    if (rc) {
        fprintf(stderr, "smudge remove: %s\n", err.msg);
        for (int i = 0; i < n_data; i++) free((char *)data[i].name);
        free_repeated(&r);
        return CLI_USAGE;
    }

    /* ---- the world, the models ---- */
    char model_path[4096], ref_path[4096], world[4096];
    if (su_zoo_resolve(model_arg, cache, model_path, sizeof model_path, NULL, &err))
        rc = -1;
    if (rc == 0 && ref_arg && su_zoo_resolve(ref_arg, cache, ref_path, sizeof ref_path, NULL, &err))
        rc = lm_err_prefix(&err, "--reference: ");
    if (rc == 0 && need_world) {
        const su_recipe *rec = su_zoo_find(model_arg);
        rc = su_zoo_ensure_world(rec ? rec : su_zoo_at(0), cache, world, sizeof world, NULL, &err);
    }
    for (int k = 0; rc == 0 && need_world && m->wants_data[k]; k++) {
        char w[128];
        int opt, given = 0;
        sm_wanted_data(m->wants_data[k], w, sizeof w, &opt);
        for (int i = 0; i < n_data; i++) given |= !strcmp(data[i].name, w);
        const char *file = su_world_data_file(w, NULL);
        if (given || !file || (opt && !zoo_model)) continue;
        if (n_data >= MAX_DATA - 1) {
            rc = lm_errf(&err, "method '%s' wants too many data sets", m->name);
            break;
        }
        snprintf(data_paths[n_data], sizeof data_paths[0], "%s/%s", world, file);
        data[n_data] = (sm_data){strdup(w), data_paths[n_data], NULL};
        n_data++;
    }
    if (rc == 0 && tok_path) {
        snprintf(data_paths[n_data], sizeof data_paths[0], "%s", tok_path);
        data[n_data] = (sm_data){strdup("tokenizer"), data_paths[n_data], NULL};
        n_data++;
    }
    for (int i = 0; i < n_data; i++)
        if (!data[i].name) rc = lm_errf(&err, "out of memory");

    lm_model model, ref;
    lm_backend *be = NULL, *ref_be = NULL;
    int have_model = 0, have_ref = 0;
    if (rc == 0 && su_load_model(model_path, (int)threads, &model, &be, &err) == 0) have_model = 1;
    else if (rc == 0) rc = lm_err_prefix(&err, "loading %s: ", model_path);
    if (rc == 0 && ref_arg) {
        if (su_load_model(ref_path, (int)threads, &ref, &ref_be, &err) == 0) have_ref = 1;
        else rc = lm_err_prefix(&err, "loading the reference %s: ", ref_path);
    }

    /* ---- the run ---- */
    char work[4200] = "";
    if (rc == 0) rc = mkdirs(out, &err);
    if (rc == 0) {
        snprintf(work, sizeof work, "%s/.smudge-work-XXXXXX", out);
        if (!mkdtemp(work)) {
            rc = lm_errf(&err, "cannot create a work folder in %s: %s", out, strerror(errno));
            work[0] = '\0';
        }
    }
    reporter_state rs = {.tty = cli_progress_enabled()};
    sm_reporter rep = {&rs, rep_progress, rep_cost};
    sm_input in = {.model = &model,
                   .model_path = model_path,
                   .reference = have_ref ? &ref : NULL,
                   .reference_path = have_ref ? ref_path : NULL,
                   .data = data,
                   .n_data = n_data,
                   .params = &params,
                   .seed = (uint64_t)seed,
                   .work_dir = work,
                   .out_dir = out,
                   .rep = &rep};
    double t0 = now_s();
    if (rc == 0) {
        rc = m->run(&in, &err);
        if (rc) lm_err_prefix(&err, "%s: ", m->name);
    }
    double seconds = now_s() - t0;
    if (rs.shown) fputc('\n', stderr);
    if (work[0]) nftw(work, rm_entry, 16, FTW_DEPTH | FTW_PHYS);
    if (rc == 0 && m->output == SM_OUT_MODEL) rc = place_tokenizer(model_path, tok_path, out, &err);
    if (rc == 0) rc = write_cost(out, m->name, seconds, &rs, &err);
    if (rc == 0) {
        char pj[16384];
        if (sm_params_json(&params, pj, sizeof pj)) snprintf(pj, sizeof pj, "null");
        printf("{\"method\":");
        su_json_string(stdout, m->name, strlen(m->name));
        printf(",\"model\":");
        su_json_string(stdout, model_path, strlen(model_path));
        printf(",\"out\":");
        su_json_string(stdout, out, strlen(out));
        printf(",\"output\":\"%s\",\"seed\":%ld,\"params\":%s,\"data\":{",
               m->output == SM_OUT_POLICY ? "policy" : "model", seed, pj);
        for (int i = 0; i < n_data; i++) {
            if (i) putchar(',');
            su_json_string(stdout, data[i].name, strlen(data[i].name));
            putchar(':');
            su_json_string(stdout, data[i].path, strlen(data[i].path));
        }
        printf("},\"seconds\":%.3f,\"tokens\":%.0f,\"flops\":%.6g}\n", seconds, rs.tokens, rs.flops);
    } else {
        fprintf(stderr, "smudge remove: %s\n", err.msg);
    }
    if (have_model) lm_model_free(&model);
    if (have_ref) lm_model_free(&ref);
    lm_backend_cpu_free(be);
    lm_backend_cpu_free(ref_be);
    for (int i = 0; i < n_data; i++) free((char *)data[i].name);
    free_repeated(&r);
    return rc ? CLI_FAIL : CLI_OK;
}
