/* Work units: a grid expanded into a DAG, each unit keyed and hashed, and
 * the seam through which a unit is executed.
 *
 *   base-eval (model) ............................ metrics of the clean model
 *   implant (model x fingerprint x seed) ......... a fingerprinted model
 *     eval (implant) ............................. stage "fingerprinted"
 *   prepare (model x method set x seed) .......... work a method does once on
 *                                                  the clean base and shares
 *                                                  with every removal of that
 *                                                  model (e.g. a transferable
 *                                                  erase-LoRA)
 *   remove (implant [+ prepare] x method set) .... a cleaned model or policy
 *     eval (remove) .............................. stage "removed"
 *
 * The extraction track (grid.h) reads the same DAG with other meanings:
 * implant = the publisher's backdoor (model x attack x seed), remove = the
 * victim's defence applied to the downloaded model, eval = the victim's
 * fine-tuning on private data (one per victim setting) and the extraction,
 * with the victim setting as the row's stage. No base-eval.
 *
 * Units are numbered so every parent comes before its children. A unit's
 * hash covers everything that determines its output: its kind, the
 * executor's name and version, its parameters and seed, and its inputs'
 * hashes; so a changed method parameter changes the hashes of that
 * method's units and their evaluations, nothing else. Its artifact lives
 * in work_dir/<kind>/<hash>/, written under a temporary name and renamed
 * when complete, with the unit's outcome in result.json. */
#ifndef SU_UNIT_H
#define SU_UNIT_H

#include "grid.h"
#include "results.h"

typedef enum su_kind {
    SU_BASE_EVAL = 0,
    SU_IMPLANT,
    SU_PREPARE,
    SU_REMOVE,
    SU_EVAL,
    SU_KIND_COUNT
} su_kind;

const char *su_kind_name(su_kind k); /* "base-eval", "implant", ... */

typedef struct su_unit {
    su_kind kind;
    int model, fp, method, seed; /* grid indices; -1 when not part of it */
    int target;                  /* eval: the unit it evaluates; else -1 */
    int victim;                  /* extraction track eval: grid victim index; else -1 */
    int stage;                   /* depth in the DAG: 0 for roots */
    char key[RS_KEY_LEN];        /* "remove tiny/none/s1/lora[rank=8]" */
    char hash[RS_HASH_LEN];
    int parent_off, n_parents;   /* into su_plan.parents */
    int child_off, n_children;   /* into su_plan.children */
    double cost;                 /* rough estimate, seconds */
} su_unit;

typedef struct su_plan {
    const su_grid *grid;
    su_unit *units;
    int n;
    int *parents;   /* CSR: parents of u are parents[u.parent_off ...] */
    int *children;
    int n_stages;
} su_plan;

int su_plan_build(su_plan *p, const su_grid *g, lm_err *err);
void su_plan_free(su_plan *p);
/* Index of the unit with this key, or -1. */
int su_plan_find_key(const su_plan *p, const char *key);

/* ---- execution seam ---- */

/* What an executor is given. inputs[i] is the committed artifact
 * directory of parent i (in parent order); out_dir is the empty temporary
 * directory to fill (renamed into place when run returns 0). */
typedef struct su_exec {
    const su_plan *plan;
    const su_unit *unit;
    const char *const *inputs;
    int n_inputs;
    const char *out_dir;
    int threads;
} su_exec;

/* One table entry per (kind, track). run fills the row's outcome: metrics,
 * details, tokens, flops (identity, timings and provenance are filled by
 * the caller). A NULL run means "no executor in this build yet": a grid
 * needing it is refused before anything runs. */
typedef struct su_executor {
    su_kind kind;
    int debug;          /* 1: the debug track */
    const char *name;   /* part of the unit hash */
    int version;        /* bump when the output changes: part of the hash */
    int (*run)(const su_exec *x, rs_row *row, lm_err *err);
} su_executor;

const su_executor *su_executor_for(su_kind kind, int debug);
/* Refuses a plan that needs an executor this build lacks, naming the grid
 * field that asked for it. */
int su_plan_check_executors(const su_plan *p, lm_err *err);

/* Fingerprint types (the real ones register here as they land). */
typedef struct su_fp_type {
    const char *name;
    const char *description;
    const sm_param_def *params;
    int n_params;
    int debug;          /* only in the debug track */
} su_fp_type;
const su_fp_type *su_fp_type_find(const char *name, int debug);
const char *su_fp_type_list(int debug); /* "none, ..." for messages */

/* The debug track's removal "method" (never in the methods registry). */
const sm_method *su_debug_method(const char *name);

/* Known metric names (real track): the single place that lists them. */
int su_metric_known(const char *name);
const char *su_metric_list(void);

/* The directory of a real-track model: its path, or for a zoo recipe its
 * cache folder (built first if it is not there; several processes may ask
 * at once: one builds, the others wait). */
int su_model_path(const su_grid *g, int model, char *out, size_t cap, lm_err *err);

/* ---- artifacts and rows ---- */

void su_artifact_dir(const su_plan *p, int u, const char *work_dir,
                     char *out, size_t cap);
/* 1 when work_dir holds u's committed artifact. */
int su_artifact_exists(const su_plan *p, int u, const char *work_dir);
/* Reads a committed artifact's result.json into row (outcome fields) and
 * fills the identity. 0 when present with status ok. */
int su_artifact_load(const su_plan *p, int u, const char *work_dir,
                     rs_row *row, lm_err *err);
/* model.ref: an artifact that stands for a model stored elsewhere. */
int su_artifact_ref_model(const char *dir, const char *model_path, lm_err *err);
/* The model an artifact holds: dir/model (a Hugging Face folder) or the
 * path written in dir/model.ref. */
int su_artifact_model(const char *dir, char *out, size_t cap, lm_err *err);

/* Removes temporary directories this host's dead processes left in
 * work_dir (a killed unit's <hash>.tmp.<host>.<pid>); returns how many. */
int su_work_dir_sweep(const char *work_dir);

/* key, hash, stage, model, fingerprint, method, params and seed of u. */
void su_row_identity(const su_plan *p, int u, rs_row *row);
/* The outcome part of a row as JSON and back (the child-to-coordinator
 * message and result.json): status, message, timings, cost, provenance,
 * metrics, details. */
char *su_row_encode(const rs_row *row);
int su_row_decode(const char *text, size_t len, rs_row *row, lm_err *err);

/* Runs unit u in this process (the runner calls it in a forked child):
 * checks the inputs are committed, runs the executor into a temporary
 * directory, writes result.json and renames it into place. Fills row with
 * identity, outcome, timings and provenance; returns 0 when the unit is ok
 * (a NaN metric is a failure). */
int su_unit_execute(const su_plan *p, int u, const char *work_dir,
                    int threads, int rank, rs_row *row);

/* Debug track: parameters of unit u (fingerprint or method set), or NULL. */
const sm_params *su_unit_debug_params(const su_plan *p, int u);

#endif
