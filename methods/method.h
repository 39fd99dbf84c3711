/* The removal-method module interface (in the manner of IOR's backends).
 *
 * A method is one file that fills a `const sm_method`: its name, a one-line
 * description, the ABI version it was built against, a parameter table that
 * smudge validates before anything runs, the data sets it wants, and `run`.
 * Built-in methods sit in the registry array (registry.c); out-of-tree
 * methods are shared objects exporting the symbol `smudge_method` (an
 * `sm_method`), loaded with --plugin FILE.so or from SMUDGE_PLUGIN_PATH.
 *
 * A method knows no scheduler and no result store: it receives a model, its
 * data and parameters, and writes a model, an adapter or a decoding policy
 * into `out_dir`. */
#ifndef SM_METHOD_H
#define SM_METHOD_H

#include <stddef.h>
#include <stdint.h>

#include "err.h"
#include "generate.h"
#include "model.h"

/* Bump when sm_method, sm_input or sm_params change layout. */
#define SM_METHOD_ABI 2
#define SM_MAX_PARAMS 64
#define SM_PARAM_STR 256

typedef enum sm_param_type {
    SM_PARAM_INT,
    SM_PARAM_FLOAT,
    SM_PARAM_BOOL,
    SM_PARAM_STRING,
    SM_PARAM_CHOICE /* one of `choices`, "a|b|c" */
} sm_param_type;

typedef struct sm_param_def {
    const char *name;
    sm_param_type type;
    const char *def;     /* default, as it would be written on the command line */
    double min, max;     /* inclusive bounds for INT and FLOAT */
    const char *choices; /* for CHOICE */
    const char *help;
} sm_param_def;

typedef struct sm_param_value {
    const char *name;    /* points into the method's table */
    sm_param_type type;
    int64_t i;
    double f;
    int b;
    char s[SM_PARAM_STR];
} sm_param_value;

/* A complete, validated assignment: every parameter of the table, in table
 * order, defaults filled in. */
typedef struct sm_params {
    int n;
    sm_param_value v[SM_MAX_PARAMS];
} sm_params;

typedef enum sm_output_kind {
    SM_OUT_MODEL,   /* out_dir holds a Hugging Face folder */
    SM_OUT_POLICY   /* out_dir holds policy.json for build_policy */
} sm_output_kind;

/* Progress and cost, reported by the method, recorded by whoever runs it. */
typedef struct sm_reporter {
    void *ctx;
    /* fraction in [0, 1] of this method's work, and what it is doing */
    void (*progress)(void *ctx, double fraction, const char *what);
    /* one step's cost: wall seconds, tokens processed, FLOPs */
    void (*cost)(void *ctx, const char *step, double seconds, double tokens,
                 double flops);
} sm_reporter;

/* A data set the method asked for by name, resolved by the caller. */
typedef struct sm_data {
    const char *name;    /* e.g. "instructions", "mismatched", "recover" */
    const char *path;
    const char *format;  /* a datasets/ format name, or NULL to guess */
} sm_data;

typedef struct sm_input {
    lm_model *model;            /* the model to clean (the method may modify
                                   it in place; the caller reloads if needed) */
    const char *model_path;     /* where it was loaded from (tokenizer too) */
    lm_model *reference;        /* --reference model or NULL */
    const char *reference_path;
    const sm_data *data;
    int n_data;
    const sm_params *params;
    uint64_t seed;
    const char *work_dir;       /* scratch space, removed by the caller */
    const char *out_dir;        /* where the result goes */
    const sm_reporter *rep;     /* never NULL */
    /* The clean model the input was fingerprinted from, when the caller
     * knows it (the grid: the unit's base model), else NULL. Merging uses
     * it when its 'base' parameter is empty. Last, so modules built
     * before it existed still read the fields above unchanged. */
    const char *base_path;
} sm_input;

typedef struct sm_method {
    int abi;                    /* SM_METHOD_ABI at build time */
    const char *name;
    const char *description;
    const sm_param_def *params;
    int n_params;
    const char *const *wants_data; /* NULL-terminated data set names;
                                      "name?" marks an optional one */
    int needs_reference;        /* 1: refuses to run without --reference */
    sm_output_kind output;
    int (*run)(const sm_input *in, lm_err *err);
    /* For SM_OUT_POLICY: turn out_dir/policy.json back into a decoding
     * policy over `model` (state freed by free_policy). */
    int (*build_policy)(const char *policy_dir, lm_model *model,
                        lm_decode_policy *policy, lm_err *err);
    void (*free_policy)(lm_decode_policy *policy);
} sm_method;

/* ---- registry ---- */

/* Built-in methods, then loaded plugins. */
int sm_method_count(void);
const sm_method *sm_method_at(int i);
const sm_method *sm_method_find(const char *name);
/* Loads a plugin; refuses a wrong ABI or a name already taken. */
int sm_plugin_load(const char *path, lm_err *err);
/* Loads every *.so in the colon-separated SMUDGE_PLUGIN_PATH. */
int sm_plugin_load_env(lm_err *err);

/* ---- parameters ---- */

/* Validates "k=v" assignments against the method's table and fills every
 * other parameter with its default. Errors name the parameter and why. */
int sm_params_parse(const sm_method *m, const char *const *assignments,
                    int n, sm_params *out, lm_err *err);
const sm_param_value *sm_param(const sm_params *p, const char *name);
int64_t sm_param_int(const sm_params *p, const char *name);
double sm_param_float(const sm_params *p, const char *name);
int sm_param_bool(const sm_params *p, const char *name);
const char *sm_param_str(const sm_params *p, const char *name);
/* Canonical JSON of the assignment (sorted keys), for keys and results. */
int sm_params_json(const sm_params *p, char *buf, size_t cap);

/* The path of a data set the method asked for, or NULL. */
const sm_data *sm_input_data(const sm_input *in, const char *name);

/* A wants_data entry, "name" or "name?": copies the name into name (cut to
 * cap) and sets *optional. */
void sm_wanted_data(const char *entry, char *name, size_t cap, int *optional);

#endif
