/* The result store: one row per evaluated work unit, kept in an HDF5 file
 * that survives a killed writer and refuses to extend a damaged file.
 *
 * results/ knows rows, not models: a row is a unit key, a few descriptive
 * strings, timings, cost, provenance and a dynamic set of named metrics
 * (name -> value, plus the number of items the value is over). Per-item
 * detail (each trigger's outcome, each document's loss) hangs off a row as
 * named float64/int64 arrays.
 *
 * File layout (readable with h5dump and h5py):
 *   /units          compound [rows], chunked, extendible; fixed-length
 *                   strings, one member per rs_row field below
 *   /metrics        float64 [rows, n_metrics], NaN = absent
 *   /metric_n       int64   [rows, n_metrics], items each value is over
 *   /metric_names   fixed-length strings [n_metrics], column order
 *                   (a dataset, not an attribute: no 64 KiB limit, and a
 *                   new metric name appends a column without rewriting)
 *   /detail/<row>/<name>  float64 or int64 [count]; the group <row> (the
 *                   row index in /units) carries unit_key and unit_hash
 *                   attributes
 *   root attributes: format, smudge_version, git_commit, grid_json,
 *                   grid_sha256, provenance_json, hdf5_version,
 *                   cjson_version, openssl_version, created, closed, and
 *                   (updated after each append) commit = {n_rows,
 *                   n_metrics, rows_sha256}, hosts, ranks, slurm_job_ids,
 *                   slurm_array_job_ids (JSON arrays), time_start, time_end
 *                   (unix seconds over the rows).
 *
 * Integrity: commit.rows_sha256 chains a SHA-256 over every committed row
 * (h_k = sha256(h_{k-1} || row k)), commit.n_rows counts them, and data
 * chunks and metadata carry HDF5 checksums. Opening checks all of it; a
 * file that fails is reported, never extended. A writer killed in the
 * middle of an append leaves at most that one uncommitted row past n_rows:
 * opening for append drops it and says so in rs_store_warning().
 *
 * HDF5 file locking is turned off for every file this module opens
 * (H5Pset_file_locking, HDF5 >= 1.10.7): locks fail or hang on Lustre/GPFS/
 * NFS. With an older HDF5 set HDF5_USE_FILE_LOCKING=FALSE in the job's
 * environment instead. One writer per file: Slurm array tasks each write
 * their own file (under a temporary name, renamed when closed) and
 * rs_merge joins them. */
#ifndef SMUDGE_RESULTS_H
#define SMUDGE_RESULTS_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

/* lm_err only. By relative path: smudge_results does not get lm/ on its
 * include path, and a bare "err.h" would then find glibc's <err.h>. */
#include "err.h"

/* Column widths, bytes including the terminating NUL. They are the
 * fixed-length string sizes in the file. */
#define RS_KEY_LEN 256
#define RS_HASH_LEN 65 /* 64 hex digits */
#define RS_STAGE_LEN 32
#define RS_MODEL_LEN 256
#define RS_FP_LEN 64
#define RS_METHOD_LEN 64
#define RS_PARAMS_LEN 2048
#define RS_STATUS_LEN 16
#define RS_MSG_LEN 1024
#define RS_HOST_LEN 64
#define RS_NAME_LEN 64 /* metric and detail names */

/* Well-known values (free text is allowed; tables know these). */
#define RS_STAGE_BASE "base"
#define RS_STAGE_FINGERPRINTED "fingerprinted"
#define RS_STAGE_ERASED "erased"
#define RS_STAGE_RECOVERED "recovered"
#define RS_STAGE_REMOVED "removed"
#define RS_OK "ok"
#define RS_FAILED "failed"
#define RS_SKIPPED "skipped"

typedef struct rs_metric {
    char name[RS_NAME_LEN];
    double value; /* NaN = not measured */
    int64_t n;    /* number of items the value is over (triggers, docs) */
} rs_metric;

typedef enum { RS_DETAIL_F64 = 0, RS_DETAIL_I64 = 1 } rs_detail_kind;

typedef struct rs_detail {
    char name[RS_NAME_LEN];
    rs_detail_kind kind;
    size_t count;
    double *f64;  /* kind F64: count values, owned */
    int64_t *i64; /* kind I64: count values, owned */
} rs_detail;

typedef struct rs_row {
    /* identity */
    char unit_key[RS_KEY_LEN];   /* human-readable, unique per unit */
    char unit_hash[RS_HASH_LEN]; /* hex sha256 of what determines it */
    char stage[RS_STAGE_LEN];    /* RS_STAGE_* */
    char model[RS_MODEL_LEN];
    char fingerprint[RS_FP_LEN]; /* "" for a base model */
    char method[RS_METHOD_LEN];  /* "" when no removal method applies */
    char params[RS_PARAMS_LEN];  /* canonical JSON of the method params */
    int64_t seed;
    /* outcome */
    char status[RS_STATUS_LEN]; /* RS_OK | RS_FAILED | RS_SKIPPED */
    char message[RS_MSG_LEN];   /* why it failed; cut to fit, never refused */
    /* timing and cost */
    double time_start;   /* unix seconds */
    double time_end;     /* unix seconds; "newest" means largest time_end */
    double wall_seconds;
    int64_t tokens;
    double flops;
    int64_t peak_rss_bytes;
    /* provenance */
    char host[RS_HOST_LEN];
    int32_t rank;
    int64_t slurm_job_id; /* -1 when not under Slurm */
    int64_t slurm_array_job_id;
    int64_t slurm_array_task_id;

    /* Dynamic parts, owned by the row (rs_row_free releases them). */
    rs_metric *metrics;
    int n_metrics, cap_metrics;
    rs_detail *details;
    int n_details, cap_details;
    /* First field a setter had to cut (other than message), or NULL;
     * rs_store_append refuses such a row rather than store a wrong key. */
    const char *too_long;
} rs_row;

/* Zeroes the row; rank 0, Slurm ids -1, status "ok". */
void rs_row_init(rs_row *row);
void rs_row_free(rs_row *row);
/* Deep copy; dst must not hold anything (it is overwritten). */
int rs_row_copy(rs_row *dst, const rs_row *src, lm_err *err);

/* Copies text into a fixed-size field. Returns 0, or -1 when it had to cut
 * (then row->too_long names the field, unless the field is message, which
 * is cut quietly with a "..." tail). Use through RS_SET. */
int rs_row_set_text(rs_row *row, char *dst, size_t cap, const char *text,
                    const char *field);
#define RS_SET(row, field, text)                                          \
    rs_row_set_text((row), (row)->field, sizeof((row)->field), (text), #field)
/* printf into message (cut to fit). */
void rs_row_set_message(rs_row *row, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

/* Host name, rank and the SLURM_JOB_ID / SLURM_ARRAY_JOB_ID /
 * SLURM_ARRAY_TASK_ID environment variables. */
void rs_row_fill_provenance(rs_row *row, int rank);

/* Sets (or replaces) a metric. n = number of items it is over. */
int rs_row_set_metric(rs_row *row, const char *name, double value, int64_t n,
                      lm_err *err);
/* The value, or NaN when absent; *n (optional) gets its item count or 0. */
double rs_row_metric(const rs_row *row, const char *name, int64_t *n);

/* Attaches a copy of values as detail array `name` (replacing one of the
 * same name). Names: [A-Za-z0-9_.-], at most RS_NAME_LEN-1 bytes. */
int rs_row_add_detail(rs_row *row, const char *name, const double *values,
                      size_t count, lm_err *err);
int rs_row_add_detail_i64(rs_row *row, const char *name,
                          const int64_t *values, size_t count, lm_err *err);
const rs_detail *rs_row_detail(const rs_row *row, const char *name);

/* One JSON object per row (fields, metrics as {"name": {"value", "n"}},
 * detail arrays), for `smudge results show` and tests. Returns a malloc'd
 * string or NULL. */
char *rs_row_to_json(const rs_row *row);

/* ---------------------------------------------------------------- store */

typedef struct rs_store rs_store;

/* Creates a new file (fails if path exists). provenance_json: a JSON object
 * or NULL. Known keys become root attributes: "smudge_version",
 * "git_commit" (strings), "grid" (an object or a JSON string; stored as
 * grid_json with its grid_sha256); the whole object is stored as
 * provenance_json. The HDF5 version and creation time are added. */
int rs_store_create(const char *path, const char *provenance_json,
                    rs_store **out, lm_err *err);
/* Opens an existing file for appending after checking it completely
 * (required datasets and compound members, consistent row counts, the row
 * checksum chain). Any damage is an error naming the file and the check. */
int rs_store_open_append(const char *path, rs_store **out, lm_err *err);
/* Appends one row and flushes the file to disk before returning, so a
 * process killed afterwards loses nothing already appended. A metric name
 * the file has not seen adds a column (NaN for earlier rows). */
int rs_store_append(rs_store *s, const rs_row *row, lm_err *err);
/* Flush after every append (the default, 1) or only at close (0: for
 * bulk copies such as rs_merge, whose output is renamed into place only
 * once complete). */
void rs_store_set_flush(rs_store *s, int each_row);
/* Rows committed so far. */
int64_t rs_store_rows(const rs_store *s);
/* Sets a root string attribute (e.g. "git_commit" after the fact). */
int rs_store_set_attr(rs_store *s, const char *name, const char *value,
                      lm_err *err);
/* A note about what open_append repaired (a dropped unfinished row), or
 * NULL. Valid until close. */
const char *rs_store_warning(const rs_store *s);
/* Writes the summary attributes and closes; s is freed even on error. */
int rs_store_close(rs_store *s, lm_err *err);

/* Reads every committed row (with metrics and details) after the same
 * checks as open_append (a trailing uncommitted row is ignored). *rows is
 * a malloc'd array; release with rs_rows_free. */
int rs_store_read(const char *path, rs_row **rows, size_t *n, lm_err *err);
void rs_rows_free(rs_row *rows, size_t n);
/* The root attribute `name` as a malloc'd string: strings as stored,
 * numbers printed, the compound `commit` as a JSON object. NULL + error
 * when absent. */
char *rs_store_read_attr(const char *path, const char *name, lm_err *err);

/* ---------------------------------------------------------------- merge */

/* Indices of the rows that count, one per unit key: the newest (largest
 * time_end, later index on ties) status=ok row, or the newest row when none
 * is ok. Output in order of first appearance. *idx is malloc'd. */
int rs_rows_latest(const rs_row *rows, size_t n, size_t **idx, size_t *n_idx,
                   lm_err *err);

/* Merges shard files into out_path (written as out_path.tmp and renamed
 * over out_path): the rows rs_rows_latest picks across all inputs (an input
 * listed later wins ties), with the union of metric columns and their
 * details. The merged root records its inputs (merged_from: JSON array of
 * {path, n_rows, commit, created, smudge_version, git_commit, grid_sha256,
 * hosts, slurm ids}) and keeps the first input's grid, version and commit
 * (a differing grid_sha256 is reported in *warnings).
 * A damaged or unreadable input fails the merge, naming the file, unless
 * skip_bad is set: then it is left out and its path and reason are added to
 * *warnings (malloc'd, one line each; may be NULL when not wanted). Fails
 * when no input is usable. */
int rs_merge(const char *const *inputs, int n, const char *out_path,
             int skip_bad, char **warnings, lm_err *err);

/* ---------------------------------------------------------------- tables */

typedef enum { RS_FMT_MD = 0, RS_FMT_CSV, RS_FMT_LATEX } rs_format;
typedef enum { RS_LAYOUT_STAGES = 0, RS_LAYOUT_METHODS, RS_LAYOUT_EXTRACTION } rs_layout;

int rs_format_from_name(const char *s, rs_format *out);
int rs_layout_from_name(const char *s, rs_layout *out);

/* Leaderboard for one metric over deduplicated rows (rs_rows_latest).
 * STAGES: rows model x fingerprint (x erase/recover method when several),
 *   columns base → fingerprinted → erased → recovered (the stages present);
 *   the MEraser paper's main table.
 * METHODS: rows = removal methods (stage removed/erased/recovered; a method
 *   with several parameter sets gets one row per set), plus the
 *   fingerprinted model as the reference row; columns = fingerprints.
 * Cells: mean ± t-based 95% half-width across seeds (one seed: the mean);
 * rates (rs_metric_is_rate) are shown in percent with 1 decimal, ppl with
 * 2, others 3. A cell whose units all failed shows "failed"; partly failed
 * cells get a "*"; a footnote counts them. CSV gives mean, ci95_lo,
 * ci95_hi (rates clipped to [0,100]) and n per cell.
 * EXTRACTION (the extraction track; `metric` is ignored): rows model x
 *   attack (fingerprint column) x victim setting (stage) x defence (method,
 *   params), columns the extraction metrics match_ratio,
 *   query_extraction_ratio, token_extraction_ratio, opening_word_f1, bleu;
 *   rows are the ok units that carry query_extraction_ratio. */
int rs_table(const rs_row *rows, size_t n, rs_format fmt, const char *metric,
             rs_layout layout, FILE *out, lm_err *err);

/* True for metrics stored as fractions in [0,1] and shown in percent:
 * fsr, ftr, asr, acc*, *_acc*, and the zero-shot task names. */
int rs_metric_is_rate(const char *metric);

/* Seed statistics (metrics.md §7): mean, and the half-width
 * t_{0.975,n-1}·s/√n (0 when n < 2). */
void rs_mean_ci95(const double *v, int n, double *mean, double *half);
double rs_t975(int df);

/* An SVG bar chart of FSR and perplexity per removal method (one bar per
 * fingerprint, with 95% CI whiskers), written to out_path. */
int rs_plot_svg(const rs_row *rows, size_t n, const char *out_path,
                lm_err *err);

#endif
