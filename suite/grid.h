/* A grid: the models, fingerprints, removal methods, metrics and seeds one
 * run covers, read from JSON and validated completely before anything runs.
 *
 *   {
 *     "name": "smoke",                  optional label
 *     "track": "real" | "debug",        default "real"; "debug" selects the
 *                                       debug executors (tests, benchmarks)
 *     "models": ["tiny-llama", "./m", {"name": "m2", "path": "/x/m2"}],
 *     "fingerprints": [{"type": "none", "name": "clean", "params": {...}}],
 *     "methods": [{"name": "lora", "params": {"rank": [8, 16], "lr": 1e-4},
 *                  "data": {"instructions": "chats.jsonl"}}],
 *     "data": {"calibration": {"path": "corpus.txt", "format": "text"}},
 *     "metrics": [{"name": "ppl", "dataset": "guanaco"}],
 *     "seeds": [1, 2, 3],
 *     "resources": {"threads": 1, "parallel": 1, "timeout_s": 0,
 *                   "heartbeat_s": 60},
 *     "output": "results.h5", "work_dir": "work"
 *   }
 *
 * A parameter given as a list is a sweep: a method (or fingerprint) entry
 * expands to the cartesian product of its lists, each assignment checked
 * against the parameter table with sm_params_parse. "data" (top level, and
 * per method entry, which wins) names the data sets methods ask for; a
 * method receives all of them (it takes what it wants). Unknown keys are
 * errors, and every error names the field path ("grid.json:
 * methods[2].params.rank: ..."). Relative model and data paths are relative to the
 * grid file's directory; output and work_dir to the current directory. */
#ifndef SU_GRID_H
#define SU_GRID_H

#include <stdint.h>

#include "err.h"
#include "method.h"
#include "results.h"

#define SU_PATH_LEN 4096
#define SU_TYPE_LEN 64

typedef struct su_model {
    char label[RS_MODEL_LEN]; /* as shown in results: the name given */
    char spec[SU_PATH_LEN];   /* zoo name, or the absolute path */
    int is_path;
} su_model;

/* One expanded parameter assignment of a fingerprint or method entry. */
typedef struct su_pset {
    sm_params params;          /* complete: defaults filled in */
    char json[RS_PARAMS_LEN];  /* canonical JSON of `params` (sorted keys) */
    char given[RS_KEY_LEN / 2];/* "rank=8,lr=0.0001": what the entry set */
} su_pset;

typedef struct su_fingerprint {
    char type[SU_TYPE_LEN];
    char label[RS_FP_LEN];     /* "name" if given, else type (+#k if repeated) */
    int entry;                 /* index in the JSON fingerprints[] */
    su_pset set;
} su_fingerprint;

/* A data set handed to a removal method by name (sm_data). */
typedef struct su_data {
    char name[SU_TYPE_LEN];    /* e.g. "calibration", "instructions" */
    char path[SU_PATH_LEN];    /* absolute */
    char format[SU_TYPE_LEN];  /* a datasets/ format name, "" = guess */
} su_data;

typedef struct su_method {
    const sm_method *m;        /* registry entry, or the debug method */
    int data_off, n_data;      /* its data sets: su_grid.data[data_off ...] */
    char label[RS_METHOD_LEN]; /* the method's name */
    char set_label[RS_KEY_LEN / 2]; /* "lora[rank=8]" when params were given */
    int entry;                 /* index in the JSON methods[] */
    su_pset set;
} su_method;

typedef struct su_metric {
    char name[RS_NAME_LEN];
    char dataset[SU_PATH_LEN]; /* "" = the metric's default */
} su_metric;

/* Extraction track (extraction.md): one victim setting of "victims". */
typedef struct su_victim {
    char label[RS_STAGE_LEN];  /* shown as the row's stage: "query-loss" */
    int entry;                 /* index in the JSON victims[] */
    su_pset set;               /* ex_params (methods/extraction.h) */
} su_victim;

typedef struct su_resources {
    int threads;        /* OpenMP threads inside one unit */
    int parallel;       /* units at once in a single-process run */
    double timeout_s;   /* per unit; 0 = none */
    double heartbeat_s; /* MPI: a busy worker silent this long is dead */
} su_resources;

typedef struct su_grid {
    char source[512];   /* file name used in messages */
    char name[64];
    int debug;          /* track "debug" */
    int extraction;     /* track "extraction": "attacks" (none, plain,
                           gibberish) fill fps, "victims" the victim
                           settings, "methods" are the victim's defences */
    su_victim *victims;
    int n_victims;
    su_model *models;
    int n_models;
    su_fingerprint *fps; /* expanded */
    int n_fps;
    su_method *methods;  /* expanded */
    int n_methods;
    su_metric *metrics;
    int n_metrics;
    su_data *data;       /* every method's data sets, one run per method entry */
    int n_data;
    int64_t *seeds;
    int n_seeds;
    su_resources res;
    char output[SU_PATH_LEN];
    char work_dir[SU_PATH_LEN];
    char *canonical;     /* the whole config as canonical JSON */
    char sha256[65];     /* of `canonical` */
} su_grid;

/* A data set of the grid by name: in method k's run (k >= 0), else the
 * first of that name in the pool (top-level data is in every run). NULL
 * when there is none. */
const su_data *su_grid_data(const su_grid *g, int method, const char *name);

/* Parses and validates text. source names the file in messages; base_dir
 * (or NULL = current directory) anchors relative model paths. */
int su_grid_parse(su_grid *g, const char *text, const char *source,
                  const char *base_dir, lm_err *err);
int su_grid_load(su_grid *g, const char *path, lm_err *err);
void su_grid_free(su_grid *g);

/* The built-in default grid (what `smudge run` runs without GRID): every
 * zoo model x the available fingerprints x every registered removal
 * method. The one place that defines it. Returns malloc'd JSON. */
char *su_default_grid_json(void);

/* Canonical JSON of any cJSON-parsable text: objects with sorted keys, no
 * whitespace, numbers as %.17g. Returns malloc'd text or NULL. */
char *su_canonical_json(const char *text);
/* Hex SHA-256 of len bytes. */
void su_sha256_hex(const void *data, size_t len, char out[65]);

#endif
