/* The HDF5 result store (layout and integrity rules: results.h).
 *
 * Commit protocol of one append: add any new metric columns, extend /units
 * and the metric matrices by one row and write it, write its detail group,
 * H5Fflush; then rewrite the root attribute `commit` (n_rows, n_metrics,
 * rows_sha256 in one fixed-size record, so it changes in one write) and
 * H5Fflush again. A row counts only once `commit` covers it: a writer
 * killed during the first flush leaves uncommitted space past n_rows,
 * which readers ignore and open_append cuts away; one killed during the
 * second leaves the old or the new record, both consistent.
 *
 * Live files never reuse freed space (H5F_FSPACE_STRATEGY_NONE): a chunk
 * that holds committed rows is rewritten elsewhere, and its old copy stays
 * intact until the index pointing at the new one is on disk. It costs
 * ~40% in file size.
 *
 * The file uses the 1.8 object format at least (H5Pset_libver_bounds):
 * its superblock and object headers carry checksums, so flipped bytes in
 * metadata are reported by HDF5 instead of being parsed; data chunks carry
 * Fletcher-32. Everything else (counts, the chain) is checked here. */
#include <cjson/cJSON.h>
#include <errno.h>
#include <hdf5.h>
#include <math.h>
#include <openssl/evp.h>
#include <openssl/opensslv.h>
#include <openssl/crypto.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "results.h"

#define RS_FORMAT "smudge-results/1"
#define ROW_CHUNK 16     /* rows per /units chunk (~75 KB before deflate) */
#define COL_CHUNK 16     /* metric columns per chunk */
#define MAX_DETAIL ((hsize_t)1 << 32)

/* ------------------------------------------------------------ columns */

typedef enum { F_STR, F_I64, F_I32, F_F64 } field_kind;
typedef struct field {
    const char *name;
    size_t off, size;
    field_kind kind;
} field;

#define FLD(f, k) {#f, offsetof(rs_row, f), sizeof(((rs_row *)0)->f), k}
static const field fields[] = {
    FLD(unit_key, F_STR),     FLD(unit_hash, F_STR),
    FLD(stage, F_STR),        FLD(model, F_STR),
    FLD(fingerprint, F_STR),  FLD(method, F_STR),
    FLD(params, F_STR),       FLD(seed, F_I64),
    FLD(status, F_STR),       FLD(message, F_STR),
    FLD(time_start, F_F64),   FLD(time_end, F_F64),
    FLD(wall_seconds, F_F64), FLD(tokens, F_I64),
    FLD(flops, F_F64),        FLD(peak_rss_bytes, F_I64),
    FLD(host, F_STR),         FLD(rank, F_I32),
    FLD(slurm_job_id, F_I64), FLD(slurm_array_job_id, F_I64),
    FLD(slurm_array_task_id, F_I64),
};
#undef FLD
enum { N_FIELDS = sizeof fields / sizeof fields[0] };

static hid_t str_type(size_t size) {
    hid_t t = H5Tcopy(H5T_C_S1);
    H5Tset_size(t, size);
    H5Tset_strpad(t, H5T_STR_NULLTERM);
    H5Tset_cset(t, H5T_CSET_UTF8);
    return t;
}

/* The compound type of /units: in memory it overlays rs_row (the dynamic
 * parts are simply not members); in the file it is packed little-endian. */
static hid_t row_type(int in_file) {
    size_t total = 0;
    if (in_file)
        for (int i = 0; i < N_FIELDS; i++) total += fields[i].size;
    hid_t t = H5Tcreate(H5T_COMPOUND, in_file ? total : sizeof(rs_row));
    size_t off = 0;
    for (int i = 0; i < N_FIELDS; i++) {
        const field *f = &fields[i];
        hid_t m;
        switch (f->kind) {
        case F_STR: m = str_type(f->size); break;
        case F_I64: m = H5Tcopy(in_file ? H5T_STD_I64LE : H5T_NATIVE_INT64); break;
        case F_I32: m = H5Tcopy(in_file ? H5T_STD_I32LE : H5T_NATIVE_INT32); break;
        default: m = H5Tcopy(in_file ? H5T_IEEE_F64LE : H5T_NATIVE_DOUBLE); break;
        }
        H5Tinsert(t, f->name, in_file ? off : f->off, m);
        H5Tclose(m);
        off += f->size;
    }
    return t;
}

/* ------------------------------------------------------------ errors */

/* HDF5 prints its error stack by default; library code must not print.
 * Every public entry point installs its own handler instead: when an HDF5
 * call fails, the handler stashes the innermost reason ("truncated file:
 * eof = ...", "data error detected by Fletcher32 checksum") in err, marked
 * with a leading \x01, where h5errf picks it up however many cleanup calls
 * came in between. quiet_off restores the caller's handler and wipes an
 * unused stash. */
typedef struct quiet {
    H5E_auto2_t fn;
    void *data;
    lm_err *err;
} quiet;

static herr_t innermost(unsigned n, const H5E_error2_t *e, void *data) {
    if (n == 0 && e->desc) snprintf(data, 200, "%s", e->desc);
    return 0;
}
static herr_t stash_reason(hid_t stack, void *data) {
    lm_err *err = data;
    char why[200] = "";
    H5Ewalk2(stack, H5E_WALK_UPWARD, innermost, why);
    snprintf(err->msg, sizeof err->msg, "\x01%s", why);
    return 0;
}
static void quiet_on(quiet *q, lm_err *err) {
    q->err = err;
    H5Eget_auto2(H5E_DEFAULT, &q->fn, &q->data);
    H5Eset_auto2(H5E_DEFAULT, err ? stash_reason : NULL, err);
}
static void quiet_off(const quiet *q) {
    H5Eset_auto2(H5E_DEFAULT, q->fn, q->data);
    if (q->err && q->err->msg[0] == '\x01') q->err->msg[0] = '\0';
}

/* Sets the message, adding HDF5's reason when one was stashed. */
static int h5errf(lm_err *err, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
static int h5errf(lm_err *err, const char *fmt, ...) {
    char why[200] = "", msg[LM_ERR_MSG];
    if (err && err->msg[0] == '\x01') snprintf(why, sizeof why, "%s", err->msg + 1);
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    if (why[0]) return lm_errf(err, "%s (HDF5: %s)", msg, why);
    return lm_errf(err, "%s", msg);
}

/* ------------------------------------------------------------ the row chain */

static void put_u64(EVP_MD_CTX *c, uint64_t v) {
    unsigned char b[8];
    for (int i = 0; i < 8; i++) b[i] = (unsigned char)(v >> (8 * i));
    EVP_DigestUpdate(c, b, 8);
}
static void put_f64(EVP_MD_CTX *c, double v) {
    uint64_t u;
    memcpy(&u, &v, 8);
    put_u64(c, u);
}
static void put_str(EVP_MD_CTX *c, const char *s, size_t cap) {
    size_t len = strnlen(s, cap);
    put_u64(c, len);
    EVP_DigestUpdate(c, s, len);
}

/* A metric is stored iff it has a value or an item count; NaN with n = 0
 * is "absent" and reads back as no metric at all. */
static int metric_present(const rs_metric *m) { return !isnan(m->value) || m->n != 0; }

static int cmp_metric_ptr(const void *a, const void *b) {
    return strcmp((*(const rs_metric *const *)a)->name, (*(const rs_metric *const *)b)->name);
}
static int cmp_detail_ptr(const void *a, const void *b) {
    return strcmp((*(const rs_detail *const *)a)->name, (*(const rs_detail *const *)b)->name);
}

/* h_k = sha256(h_{k-1} || row), over a canonical encoding: fields in table
 * order, present metrics and details sorted by name, little-endian numbers.
 * Metric column order is not part of it, so adding a column later leaves
 * old rows' digests alone. */
static int chain_row(unsigned char h[32], const rs_row *r, lm_err *err) {
    const rs_metric **ms = malloc(((size_t)r->n_metrics + 1) * sizeof *ms);
    const rs_detail **ds = malloc(((size_t)r->n_details + 1) * sizeof *ds);
    EVP_MD_CTX *c = EVP_MD_CTX_new();
    if (!ms || !ds || !c) {
        free(ms);
        free(ds);
        EVP_MD_CTX_free(c);
        return lm_errf(err, "out of memory hashing a row");
    }
    int nm = 0;
    for (int i = 0; i < r->n_metrics; i++)
        if (metric_present(&r->metrics[i])) ms[nm++] = &r->metrics[i];
    for (int i = 0; i < r->n_details; i++) ds[i] = &r->details[i];
    qsort(ms, (size_t)nm, sizeof *ms, cmp_metric_ptr);
    qsort(ds, (size_t)r->n_details, sizeof *ds, cmp_detail_ptr);

    EVP_DigestInit_ex(c, EVP_sha256(), NULL);
    EVP_DigestUpdate(c, h, 32);
    const char *base = (const char *)r;
    for (int i = 0; i < N_FIELDS; i++) {
        const field *f = &fields[i];
        const char *p = base + f->off;
        if (f->kind == F_STR) {
            put_str(c, p, f->size);
        } else if (f->kind == F_I32) {
            int32_t v;
            memcpy(&v, p, 4);
            put_u64(c, (uint64_t)(int64_t)v);
        } else {
            uint64_t v;
            memcpy(&v, p, 8);
            put_u64(c, v);
        }
    }
    put_u64(c, (uint64_t)nm);
    for (int i = 0; i < nm; i++) {
        put_str(c, ms[i]->name, RS_NAME_LEN);
        put_f64(c, ms[i]->value);
        put_u64(c, (uint64_t)ms[i]->n);
    }
    put_u64(c, (uint64_t)r->n_details);
    for (int i = 0; i < r->n_details; i++) {
        const rs_detail *d = ds[i];
        put_str(c, d->name, RS_NAME_LEN);
        put_u64(c, (uint64_t)d->kind);
        put_u64(c, d->count);
        for (size_t k = 0; k < d->count; k++)
            if (d->kind == RS_DETAIL_I64) put_u64(c, (uint64_t)d->i64[k]);
            else put_f64(c, d->f64[k]);
    }
    unsigned int len = 32;
    EVP_DigestFinal_ex(c, h, &len);
    EVP_MD_CTX_free(c);
    free(ms);
    free(ds);
    return 0;
}

static void to_hex(const unsigned char h[32], char out[65]) {
    for (int i = 0; i < 32; i++) sprintf(out + 2 * i, "%02x", h[i]);
    out[64] = '\0';
}

/* ------------------------------------------------------------ attributes */

static int attr_write_str(hid_t obj, const char *name, const char *value) {
    hid_t t = H5Tcopy(H5T_C_S1);
    H5Tset_size(t, H5T_VARIABLE);
    H5Tset_cset(t, H5T_CSET_UTF8);
    hid_t sp = H5Screate(H5S_SCALAR);
    int rc = -1;
    hid_t a = H5Aexists(obj, name) > 0 ? H5Aopen(obj, name, H5P_DEFAULT)
                                       : H5Acreate2(obj, name, t, sp, H5P_DEFAULT, H5P_DEFAULT);
    if (a >= 0) {
        rc = H5Awrite(a, t, &value) < 0 ? -1 : 0;
        H5Aclose(a);
    }
    H5Sclose(sp);
    H5Tclose(t);
    return rc;
}

static int attr_write_num(hid_t obj, const char *name, hid_t mem, hid_t file_t,
                          const void *v) {
    hid_t sp = H5Screate(H5S_SCALAR);
    int rc = -1;
    hid_t a = H5Aexists(obj, name) > 0 ? H5Aopen(obj, name, H5P_DEFAULT)
                                       : H5Acreate2(obj, name, file_t, sp, H5P_DEFAULT, H5P_DEFAULT);
    if (a >= 0) {
        rc = H5Awrite(a, mem, v) < 0 ? -1 : 0;
        H5Aclose(a);
    }
    H5Sclose(sp);
    return rc;
}
static int attr_write_f64(hid_t obj, const char *name, double v) {
    return attr_write_num(obj, name, H5T_NATIVE_DOUBLE, H5T_IEEE_F64LE, &v);
}

/* A scalar compound attribute (the commit record) as a JSON object of its
 * integer, float and fixed-length string members. */
static char *compound_json(hid_t a, hid_t t) {
    size_t size = H5Tget_size(t);
    int nm = H5Tget_nmembers(t);
    if (size == 0 || size > 65536 || nm <= 0) return NULL;
    unsigned char *buf = calloc(1, size + 1);
    cJSON *o = cJSON_CreateObject();
    char *out = NULL;
    if (buf && o && H5Aread(a, t, buf) >= 0) {
        for (int i = 0; i < nm; i++) {
            char *name = H5Tget_member_name(t, (unsigned)i);
            hid_t mt = H5Tget_member_type(t, (unsigned)i);
            size_t off = H5Tget_member_offset(t, (unsigned)i), ms = H5Tget_size(mt);
            H5T_class_t cls = H5Tget_member_class(t, (unsigned)i);
            if (name && off + ms <= size) {
                /* Convert one member at a time from its stored type. */
                if (cls == H5T_INTEGER) {
                    long long v = 0;
                    if (H5Tconvert(mt, H5T_NATIVE_LLONG, 1, memcpy(&v, buf + off, ms < 8 ? ms : 8),
                                   NULL, H5P_DEFAULT) >= 0)
                        cJSON_AddNumberToObject(o, name, (double)v);
                } else if (cls == H5T_FLOAT && ms <= 8) {
                    double v = 0;
                    memcpy(&v, buf + off, ms);
                    if (H5Tconvert(mt, H5T_NATIVE_DOUBLE, 1, &v, NULL, H5P_DEFAULT) >= 0)
                        cJSON_AddNumberToObject(o, name, v);
                } else if (cls == H5T_STRING && H5Tis_variable_str(mt) <= 0) {
                    char *str = calloc(1, ms + 1);
                    if (str) {
                        memcpy(str, buf + off, ms);
                        cJSON_AddStringToObject(o, name, str);
                        free(str);
                    }
                }
            }
            if (name) H5free_memory(name);
            if (mt >= 0) H5Tclose(mt);
        }
        out = cJSON_PrintUnformatted(o);
    }
    cJSON_Delete(o);
    free(buf);
    return out;
}

/* A scalar attribute as a malloc'd string: strings as they are (fixed or
 * variable length), numbers printed, compounds as JSON objects. NULL when
 * absent or unreadable. */
static char *attr_read_text(hid_t obj, const char *name) {
    if (H5Aexists(obj, name) <= 0) return NULL;
    hid_t a = H5Aopen(obj, name, H5P_DEFAULT);
    if (a < 0) return NULL;
    char *out = NULL;
    hid_t t = H5Aget_type(a), sp = H5Aget_space(a);
    if (t >= 0 && sp >= 0 && H5Sget_simple_extent_npoints(sp) == 1) {
        H5T_class_t cls = H5Tget_class(t);
        /* Read strings with a copy of their own type: HDF5 will not
         * convert between ASCII and UTF-8. */
        if (cls == H5T_STRING && H5Tis_variable_str(t) > 0) {
            hid_t m = H5Tcopy(t);
            char *s = NULL;
            if (H5Aread(a, m, &s) >= 0 && s) {
                out = strdup(s);
                H5free_memory(s);
            }
            H5Tclose(m);
        } else if (cls == H5T_STRING) {
            size_t n = H5Tget_size(t);
            hid_t m = H5Tcopy(t);
            H5Tset_size(m, n + 1);
            H5Tset_strpad(m, H5T_STR_NULLTERM);
            out = n < ((size_t)1 << 30) ? calloc(n + 2, 1) : NULL;
            if (out && H5Aread(a, m, out) < 0) {
                free(out);
                out = NULL;
            }
            H5Tclose(m);
        } else if (cls == H5T_COMPOUND) {
            out = compound_json(a, t);
        } else if (cls == H5T_INTEGER) {
            long long v;
            if (H5Aread(a, H5T_NATIVE_LLONG, &v) >= 0 && (out = malloc(32)))
                snprintf(out, 32, "%lld", v);
        } else if (cls == H5T_FLOAT) {
            double v;
            if (H5Aread(a, H5T_NATIVE_DOUBLE, &v) >= 0 && (out = malloc(40)))
                snprintf(out, 40, "%.17g", v);
        }
    }
    if (t >= 0) H5Tclose(t);
    if (sp >= 0) H5Sclose(sp);
    H5Aclose(a);
    return out;
}

/* The commit record: one fixed-size compound attribute. */
typedef struct commit_rec {
    int64_t n_rows, n_metrics;
    char rows_sha256[65];
} commit_rec;

static hid_t commit_type(int in_file) {
    hid_t t = H5Tcreate(H5T_COMPOUND, in_file ? 8 + 8 + 65 : sizeof(commit_rec));
    hid_t st = str_type(65);
    H5Tinsert(t, "n_rows", in_file ? 0 : offsetof(commit_rec, n_rows),
              in_file ? H5T_STD_I64LE : H5T_NATIVE_INT64);
    H5Tinsert(t, "n_metrics", in_file ? 8 : offsetof(commit_rec, n_metrics),
              in_file ? H5T_STD_I64LE : H5T_NATIVE_INT64);
    H5Tinsert(t, "rows_sha256", in_file ? 16 : offsetof(commit_rec, rows_sha256), st);
    H5Tclose(st);
    return t;
}

static int write_commit(hid_t file, int64_t n_rows, int64_t n_metrics,
                        const unsigned char chain[32]) {
    commit_rec c = {n_rows, n_metrics, {0}};
    to_hex(chain, c.rows_sha256);
    hid_t mt = commit_type(0), ft = commit_type(1);
    int rc = attr_write_num(file, "commit", mt, ft, &c);
    H5Tclose(mt);
    H5Tclose(ft);
    return rc;
}

static int read_commit(hid_t file, commit_rec *c) {
    memset(c, 0, sizeof *c);
    if (H5Aexists(file, "commit") <= 0) return -1;
    hid_t a = H5Aopen(file, "commit", H5P_DEFAULT);
    if (a < 0) return -1;
    hid_t t = H5Aget_type(a), mt = commit_type(0);
    int rc = -1;
    if (t >= 0 && H5Tget_class(t) == H5T_COMPOUND && H5Tget_member_index(t, "n_rows") >= 0 &&
        H5Tget_member_index(t, "n_metrics") >= 0 && H5Tget_member_index(t, "rows_sha256") >= 0)
        rc = H5Aread(a, mt, c) < 0 ? -1 : 0;
    c->rows_sha256[64] = '\0';
    if (t >= 0) H5Tclose(t);
    H5Tclose(mt);
    H5Aclose(a);
    return rc;
}

/* ------------------------------------------------------------ the store */

/* Distinct values seen, for the hosts/ranks/Slurm summary attributes. */
typedef struct idset {
    int64_t *v;
    int n, cap;
} idset;
static int idset_add(idset *s, int64_t v) { /* 1 = added, 0 = known, -1 = OOM */
    for (int i = 0; i < s->n; i++)
        if (s->v[i] == v) return 0;
    if (s->n == s->cap) {
        int cap = s->cap ? 2 * s->cap : 8;
        int64_t *p = realloc(s->v, (size_t)cap * sizeof *p);
        if (!p) return -1;
        s->v = p;
        s->cap = cap;
    }
    s->v[s->n++] = v;
    return 1;
}

typedef struct nameset {
    char (*v)[RS_NAME_LEN];
    int n, cap;
} nameset;
static int nameset_find(const nameset *s, const char *name) {
    for (int i = 0; i < s->n; i++)
        if (strcmp(s->v[i], name) == 0) return i;
    return -1;
}
static int nameset_add(nameset *s, const char *name) { /* 1, 0, -1 as above */
    if (nameset_find(s, name) >= 0) return 0;
    if (s->n == s->cap) {
        int cap = s->cap ? 2 * s->cap : 16;
        char(*p)[RS_NAME_LEN] = realloc(s->v, (size_t)cap * sizeof *p);
        if (!p) return -1;
        s->v = p;
        s->cap = cap;
    }
    memset(s->v[s->n], 0, RS_NAME_LEN);
    snprintf(s->v[s->n], RS_NAME_LEN, "%s", name);
    s->n++;
    return 1;
}

struct rs_store {
    char *path;
    hid_t file, units, metrics, metric_n, metric_names;
    hid_t mem_type;
    int64_t n_rows;
    nameset cols;      /* metric column names, file order */
    unsigned char chain[32];
    double t_start, t_end;
    nameset hosts;     /* host names can exceed RS_NAME_LEN: cut, it's a summary */
    idset ranks, jobs, array_jobs;
    int flush_each;
    int broken;        /* a failed append left the file torn: refuse more */
    char warning[256];
};

static hid_t file_access(void) {
    hid_t fapl = H5Pcreate(H5P_FILE_ACCESS);
    /* 1.8 format or newer: checksummed superblock and object headers. */
    H5Pset_libver_bounds(fapl, H5F_LIBVER_V18, H5F_LIBVER_LATEST);
#if H5_VERSION_GE(1, 12, 1) || (H5_VERS_MAJOR == 1 && H5_VERS_MINOR == 10 && H5_VERS_RELEASE >= 7)
    /* Locks fail or hang on parallel file systems (hpc.md §5); one writer
     * per file is our own rule, so they buy nothing. */
    H5Pset_file_locking(fapl, 0, 1);
#endif
    return fapl;
}

static void store_free(rs_store *s) {
    if (!s) return;
    if (s->metric_names >= 0) H5Dclose(s->metric_names);
    if (s->metric_n >= 0) H5Dclose(s->metric_n);
    if (s->metrics >= 0) H5Dclose(s->metrics);
    if (s->units >= 0) H5Dclose(s->units);
    if (s->mem_type >= 0) H5Tclose(s->mem_type);
    if (s->file >= 0) H5Fclose(s->file);
    free(s->cols.v);
    free(s->hosts.v);
    free(s->ranks.v);
    free(s->jobs.v);
    free(s->array_jobs.v);
    free(s->path);
    free(s);
}

static rs_store *store_new(const char *path) {
    rs_store *s = calloc(1, sizeof *s);
    if (!s) return NULL;
    s->file = s->units = s->metrics = s->metric_n = s->metric_names = s->mem_type = -1;
    s->path = strdup(path);
    s->t_start = NAN;
    s->t_end = NAN;
    s->flush_each = 1;
    if (!s->path) {
        free(s);
        return NULL;
    }
    s->mem_type = row_type(0);
    return s;
}

/* A chunked, extendible dataset: Fletcher-32 so flipped data bytes are
 * caught on read, deflate because fixed-width strings are mostly zeros. */
static hid_t make_dataset(hid_t file, const char *name, hid_t type, int rank,
                          const hsize_t *chunk, const void *fill) {
    hsize_t dims[2] = {0, 0}, maxd[2] = {H5S_UNLIMITED, H5S_UNLIMITED};
    hid_t sp = H5Screate_simple(rank, dims, maxd);
    hid_t dcpl = H5Pcreate(H5P_DATASET_CREATE);
    H5Pset_chunk(dcpl, rank, chunk);
    H5Pset_shuffle(dcpl);
    H5Pset_deflate(dcpl, 4);
    H5Pset_fletcher32(dcpl); /* last: checked first on read, over the stored bytes */
    if (fill) H5Pset_fill_value(dcpl, type, fill);
    hid_t d = H5Dcreate2(file, name, type, sp, H5P_DEFAULT, dcpl, H5P_DEFAULT);
    H5Pclose(dcpl);
    H5Sclose(sp);
    return d;
}

static void now_iso(char out[32]) {
    time_t t = time(NULL);
    struct tm tm;
    gmtime_r(&t, &tm);
    strftime(out, 32, "%Y-%m-%dT%H:%M:%SZ", &tm);
}

static int write_provenance(rs_store *s, const char *prov, lm_err *err) {
    hid_t root = s->file;
    char when[32], ver[64];
    unsigned maj, min, rel;
    now_iso(when);
    H5get_libversion(&maj, &min, &rel);
    snprintf(ver, sizeof ver, "%u.%u.%u", maj, min, rel);
    if (attr_write_str(root, "format", RS_FORMAT) || attr_write_str(root, "created", when) ||
        attr_write_str(root, "hdf5_version", ver) ||
        attr_write_str(root, "cjson_version", cJSON_Version()) ||
        attr_write_str(root, "openssl_version", OpenSSL_version(OPENSSL_VERSION)))
        return h5errf(err, "%s: writing root attributes", s->path);
    if (!prov || !*prov) return 0;

    cJSON *o = cJSON_Parse(prov);
    if (!o || !cJSON_IsObject(o)) {
        cJSON_Delete(o);
        return lm_errf(err, "%s: provenance is not a JSON object", s->path);
    }
    int rc = 0;
    if (attr_write_str(root, "provenance_json", prov)) rc = -1;
    for (cJSON *it = o->child; it && rc == 0; it = it->next) {
        const char *key = it->string;
        if (!key || !*key || strlen(key) > 200 || strchr(key, '/')) {
            rc = lm_errf(err, "%s: provenance key '%s' is not a usable attribute name",
                         s->path, key ? key : "");
            break;
        }
        char *text = cJSON_IsString(it) ? strdup(it->valuestring) : cJSON_PrintUnformatted(it);
        if (!text) {
            rc = lm_errf(err, "out of memory writing provenance");
            break;
        }
        if (strcmp(key, "grid") == 0) {
            unsigned char h[32];
            char hex[65];
            unsigned int len = 32;
            EVP_Digest(text, strlen(text), h, &len, EVP_sha256(), NULL);
            to_hex(h, hex);
            if (attr_write_str(root, "grid_json", text) || attr_write_str(root, "grid_sha256", hex))
                rc = -1;
        } else if (attr_write_str(root, key, text)) {
            rc = -1;
        }
        free(text);
    }
    cJSON_Delete(o);
    if (rc && err && (!err->msg[0] || err->msg[0] == '\x01'))
        h5errf(err, "%s: writing provenance attributes", s->path);
    return rc ? -1 : 0;
}

static int write_summary(rs_store *s);

int rs_store_create(const char *path, const char *provenance_json, rs_store **out,
                    lm_err *err) {
    *out = NULL;
    struct stat st;
    if (stat(path, &st) == 0)
        return lm_errf(err, "%s: already exists (open it for append, or remove it)", path);
    quiet q;
    quiet_on(&q, err);
    rs_store *s = store_new(path);
    if (!s) {
        quiet_off(&q);
        return lm_errf(err, "out of memory");
    }
    /* The file is made under a temporary name and linked into place only
     * once its datasets, provenance and first commit are on disk: a writer
     * killed while creating it leaves no half-made store at `path` that a
     * rerun would have to refuse as damaged. */
    char tmp[4200];
    snprintf(tmp, sizeof tmp, "%s.creating.%ld", path, (long)getpid());
    remove(tmp); /* a leftover of this pid's earlier life */
    hid_t fapl = file_access(), fcpl = H5Pcreate(H5P_FILE_CREATE);
    H5Pset_file_space_strategy(fcpl, H5F_FSPACE_STRATEGY_NONE, 0, 1); /* see the top */
    s->file = H5Fcreate(tmp, H5F_ACC_EXCL, fcpl, fapl);
    H5Pclose(fcpl);
    H5Pclose(fapl);
    if (s->file < 0) {
        h5errf(err, "%s: cannot create the results file", path);
        goto fail;
    }
    hid_t ft = row_type(1), nt = str_type(RS_NAME_LEN);
    hsize_t c1[1] = {ROW_CHUNK}, c2[2] = {64, COL_CHUNK}, cn[1] = {COL_CHUNK};
    double nan = NAN;
    int64_t zero = 0;
    s->units = make_dataset(s->file, "units", ft, 1, c1, NULL);
    s->metrics = make_dataset(s->file, "metrics", H5T_IEEE_F64LE, 2, c2, &nan);
    s->metric_n = make_dataset(s->file, "metric_n", H5T_STD_I64LE, 2, c2, &zero);
    s->metric_names = make_dataset(s->file, "metric_names", nt, 1, cn, NULL);
    H5Tclose(ft);
    H5Tclose(nt);
    hid_t g = H5Gcreate2(s->file, "detail", H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT);
    if (s->units < 0 || s->metrics < 0 || s->metric_n < 0 || s->metric_names < 0 || g < 0) {
        h5errf(err, "%s: creating the datasets", path);
        if (g >= 0) H5Gclose(g);
        goto fail;
    }
    H5Gclose(g);
    if (write_provenance(s, provenance_json, err)) goto fail;
    /* Every root attribute an append or close updates exists from the
     * start: adding one later restructures the root object header, and a
     * writer killed during that flush could leave the header unreadable
     * (seen once under load: 'format' gone after a SIGKILL mid-grid).
     * Updating one in place is a single small write. */
    if (write_summary(s) || attr_write_f64(s->file, "time_start", NAN) ||
        attr_write_f64(s->file, "time_end", NAN) || attr_write_str(s->file, "closed", "")) {
        h5errf(err, "%s: writing the summary attributes", path);
        goto fail;
    }
    if (write_commit(s->file, 0, 0, s->chain) || H5Fflush(s->file, H5F_SCOPE_GLOBAL) < 0) {
        h5errf(err, "%s: writing the row counters", path);
        goto fail;
    }
    /* link() refuses an existing path, where rename() would replace it */
    if (link(tmp, path) != 0) {
        lm_errf(err, "%s: cannot put the new results file in place: %s", path, strerror(errno));
        goto fail;
    }
    remove(tmp);
    quiet_off(&q);
    *out = s;
    return 0;
fail:
    store_free(s);
    remove(tmp); /* a half-made file must not look like a store */
    quiet_off(&q);
    return -1;
}

/* ------------------------------------------------------------ checking */

/* What a scan of a file found: its datasets (kept open for append), the
 * committed rows, and how far the datasets reach past them. */
typedef struct scan {
    hid_t units, metrics, metric_n, metric_names;
    int64_t n_rows, n_metrics;               /* committed, from the root */
    hsize_t units_len, mrows, mcols, nrows_n, ncols_n, names_len;
    nameset cols;                            /* all names in /metric_names */
    rs_row *rows;                            /* n_rows of them when read */
    unsigned char chain[32];
} scan;

static void scan_free(scan *sc) {
    if (sc->units >= 0) H5Dclose(sc->units);
    if (sc->metrics >= 0) H5Dclose(sc->metrics);
    if (sc->metric_n >= 0) H5Dclose(sc->metric_n);
    if (sc->metric_names >= 0) H5Dclose(sc->metric_names);
    free(sc->cols.v);
    if (sc->rows) rs_rows_free(sc->rows, (size_t)sc->n_rows);
    memset(sc, 0, sizeof *sc);
    sc->units = sc->metrics = sc->metric_n = sc->metric_names = -1;
}

static hid_t open_dataset(hid_t file, const char *path, const char *name, int rank,
                          hsize_t *dims, lm_err *err) {
    if (H5Lexists(file, name, H5P_DEFAULT) <= 0) {
        h5errf(err, "%s: dataset /%s is missing (not a smudge results file, or damaged)",
               path, name);
        return -1;
    }
    hid_t d = H5Dopen2(file, name, H5P_DEFAULT);
    if (d < 0) {
        h5errf(err, "%s: cannot open dataset /%s", path, name);
        return -1;
    }
    hid_t sp = H5Dget_space(d);
    int r = sp >= 0 ? H5Sget_simple_extent_ndims(sp) : -1;
    if (r != rank) {
        if (sp >= 0) H5Sclose(sp);
        H5Dclose(d);
        lm_errf(err, "%s: /%s has rank %d, expected %d", path, name, r, rank);
        return -1;
    }
    H5Sget_simple_extent_dims(sp, dims, NULL);
    H5Sclose(sp);
    return d;
}

static int check_units_type(hid_t units, const char *path, lm_err *err) {
    hid_t t = H5Dget_type(units);
    if (t < 0 || H5Tget_class(t) != H5T_COMPOUND) {
        if (t >= 0) H5Tclose(t);
        return lm_errf(err, "%s: /units is not a compound table", path);
    }
    for (int i = 0; i < N_FIELDS; i++) {
        int idx = H5Tget_member_index(t, fields[i].name);
        H5T_class_t want = fields[i].kind == F_STR   ? H5T_STRING
                           : fields[i].kind == F_F64 ? H5T_FLOAT
                                                     : H5T_INTEGER;
        if (idx < 0 || H5Tget_member_class(t, (unsigned)idx) != want) {
            H5Tclose(t);
            return lm_errf(err, "%s: /units lacks field '%s' of the right class", path,
                           fields[i].name);
        }
    }
    H5Tclose(t);
    return 0;
}

static int read_names(scan *sc, hid_t file, const char *path, lm_err *err) {
    hsize_t n = sc->names_len;
    if (n == 0) return 0;
    if (n > 1000000) return lm_errf(err, "%s: /metric_names claims %llu names", path,
                                    (unsigned long long)n);
    char(*buf)[RS_NAME_LEN] = calloc((size_t)n, RS_NAME_LEN);
    if (!buf) return lm_errf(err, "out of memory");
    hid_t t = str_type(RS_NAME_LEN);
    herr_t rc = H5Dread(sc->metric_names, t, H5S_ALL, H5S_ALL, H5P_DEFAULT, buf);
    H5Tclose(t);
    if (rc < 0) {
        free(buf);
        return h5errf(err, "%s: reading /metric_names", path);
    }
    for (hsize_t i = 0; i < n; i++) {
        buf[i][RS_NAME_LEN - 1] = '\0';
        if (!buf[i][0] || nameset_add(&sc->cols, buf[i]) != 1) {
            free(buf);
            return lm_errf(err, "%s: /metric_names[%llu] '%s' is empty or repeated", path,
                           (unsigned long long)i, buf[i]);
        }
    }
    free(buf);
    (void)file;
    return 0;
}

/* The link names of a group, by name order. H5Gget_info and
 * H5Lget_name_by_idx read the same in the 1.10 and 1.12 APIs. */
typedef struct link_list {
    char **names;
    int n;
} link_list;
static int list_links(hid_t g, link_list *l) {
    H5G_info_t info;
    if (H5Gget_info(g, &info) < 0) return -1;
    if (info.nlinks > 100000) return -1;
    l->names = calloc(info.nlinks ? info.nlinks : 1, sizeof *l->names);
    if (!l->names) return -1;
    for (hsize_t i = 0; i < info.nlinks; i++) {
        char buf[RS_NAME_LEN + 1];
        ssize_t len = H5Lget_name_by_idx(g, ".", H5_INDEX_NAME, H5_ITER_INC, i, buf, sizeof buf,
                                         H5P_DEFAULT);
        if (len < 0) return -1;
        if (len >= (ssize_t)sizeof buf) len = sizeof buf - 1; /* rejected as too long later */
        buf[len] = '\0';
        if (!(l->names[l->n] = strdup(buf))) return -1;
        l->n++;
    }
    return 0;
}
static void link_list_free(link_list *l) {
    for (int i = 0; i < l->n; i++) free(l->names[i]);
    free(l->names);
}

static int read_details(hid_t file, const char *path, int64_t r, rs_row *row, lm_err *err) {
    char gname[48];
    snprintf(gname, sizeof gname, "detail/%lld", (long long)r);
    if (H5Lexists(file, gname, H5P_DEFAULT) <= 0) return 0;
    hid_t g = H5Gopen2(file, gname, H5P_DEFAULT);
    if (g < 0) return h5errf(err, "%s: cannot open /%s", path, gname);
    link_list l = {0};
    int rc = 0;
    if (list_links(g, &l) < 0)
        rc = h5errf(err, "%s: listing /%s", path, gname);
    for (int i = 0; i < l.n && rc == 0; i++) {
        hid_t d = H5Dopen2(g, l.names[i], H5P_DEFAULT);
        if (d < 0) {
            rc = h5errf(err, "%s: /%s/%s is not a dataset", path, gname, l.names[i]);
            break;
        }
        hid_t sp = H5Dget_space(d), t = H5Dget_type(d);
        hsize_t dims[1] = {0};
        H5T_class_t cls = t >= 0 ? H5Tget_class(t) : H5T_NO_CLASS;
        if (sp < 0 || H5Sget_simple_extent_ndims(sp) != 1 ||
            H5Sget_simple_extent_dims(sp, dims, NULL) < 0 || dims[0] > MAX_DETAIL ||
            (cls != H5T_FLOAT && cls != H5T_INTEGER)) {
            rc = lm_errf(err, "%s: /%s/%s must be a 1-D float or integer array of at most "
                         "2^32 values", path, gname, l.names[i]);
        } else {
            size_t count = (size_t)dims[0];
            void *buf = malloc(count ? count * 8 : 8);
            if (!buf) {
                rc = lm_errf(err, "out of memory reading /%s/%s", path, l.names[i]);
            } else if (count && H5Dread(d, cls == H5T_FLOAT ? H5T_NATIVE_DOUBLE : H5T_NATIVE_INT64,
                                        H5S_ALL, H5S_ALL, H5P_DEFAULT, buf) < 0) {
                rc = h5errf(err, "%s: reading /%s/%s", path, gname, l.names[i]);
            } else {
                rc = cls == H5T_FLOAT ? rs_row_add_detail(row, l.names[i], buf, count, err)
                                      : rs_row_add_detail_i64(row, l.names[i], buf, count, err);
                if (rc) lm_err_prefix(err, "%s: /%s: ", path, gname);
            }
            free(buf);
        }
        if (sp >= 0) H5Sclose(sp);
        if (t >= 0) H5Tclose(t);
        H5Dclose(d);
    }
    link_list_free(&l);
    H5Gclose(g);
    return rc;
}

/* Reads the committed rows and verifies the chain. */
static int read_rows(scan *sc, hid_t file, hid_t mem_type, const char *path, lm_err *err) {
    size_t n = (size_t)sc->n_rows;
    sc->rows = calloc(n ? n : 1, sizeof *sc->rows);
    if (!sc->rows) return lm_errf(err, "%s: out of memory for %zu rows", path, n);
    if (n == 0) return 0;
    hsize_t start[2] = {0, 0}, count[2] = {n, 0};
    hid_t fsp = H5Dget_space(sc->units);
    H5Sselect_hyperslab(fsp, H5S_SELECT_SET, start, NULL, count, NULL);
    hid_t msp = H5Screate_simple(1, count, NULL);
    herr_t hr = H5Dread(sc->units, mem_type, msp, fsp, H5P_DEFAULT, sc->rows);
    H5Sclose(msp);
    H5Sclose(fsp);
    if (hr < 0) return h5errf(err, "%s: reading /units", path);
    for (size_t i = 0; i < n; i++) {
        rs_row *r = &sc->rows[i];
        for (int f = 0; f < N_FIELDS; f++)
            if (fields[f].kind == F_STR) ((char *)r)[fields[f].off + fields[f].size - 1] = '\0';
    }

    size_t nc = (size_t)sc->n_metrics;
    if (nc) {
        if (n > SIZE_MAX / 8 / nc) return lm_errf(err, "%s: metric matrix too large", path);
        double *v = malloc(n * nc * sizeof *v);
        int64_t *cnt = malloc(n * nc * sizeof *cnt);
        if (!v || !cnt) {
            free(v);
            free(cnt);
            return lm_errf(err, "%s: out of memory for the metric matrix", path);
        }
        count[1] = nc;
        msp = H5Screate_simple(2, count, NULL);
        fsp = H5Dget_space(sc->metrics);
        H5Sselect_hyperslab(fsp, H5S_SELECT_SET, start, NULL, count, NULL);
        hr = H5Dread(sc->metrics, H5T_NATIVE_DOUBLE, msp, fsp, H5P_DEFAULT, v);
        H5Sclose(fsp);
        if (hr < 0) {
            h5errf(err, "%s: reading /metrics", path);
        } else {
            fsp = H5Dget_space(sc->metric_n);
            H5Sselect_hyperslab(fsp, H5S_SELECT_SET, start, NULL, count, NULL);
            hr = H5Dread(sc->metric_n, H5T_NATIVE_INT64, msp, fsp, H5P_DEFAULT, cnt);
            H5Sclose(fsp);
            if (hr < 0) h5errf(err, "%s: reading /metric_n", path);
        }
        H5Sclose(msp);
        int rc = hr < 0 ? -1 : 0;
        for (size_t i = 0; i < n && rc == 0; i++)
            for (size_t j = 0; j < nc && rc == 0; j++) {
                rs_metric m = {.value = v[i * nc + j], .n = cnt[i * nc + j]};
                if (metric_present(&m))
                    rc = rs_row_set_metric(&sc->rows[i], sc->cols.v[j], m.value, m.n, err);
            }
        free(v);
        free(cnt);
        if (rc) return -1;
    }
    for (size_t i = 0; i < n; i++)
        if (read_details(file, path, (int64_t)i, &sc->rows[i], err)) return -1;

    memset(sc->chain, 0, 32);
    for (size_t i = 0; i < n; i++)
        if (chain_row(sc->chain, &sc->rows[i], err)) return -1;
    return 0;
}

/* Opens and checks everything; on success sc holds the open datasets and
 * (when want_rows) the committed rows. */
static int scan_file(hid_t file, hid_t mem_type, const char *path, int want_rows, scan *sc,
                     lm_err *err) {
    memset(sc, 0, sizeof *sc);
    sc->units = sc->metrics = sc->metric_n = sc->metric_names = -1;
    char *fmt = attr_read_text(file, "format");
    if (!fmt || strcmp(fmt, RS_FORMAT) != 0) {
        lm_errf(err, "%s: root attribute format is '%s', not '%s' (not a smudge results "
                "file, or damaged)", path, fmt ? fmt : "(missing)", RS_FORMAT);
        free(fmt);
        return -1;
    }
    free(fmt);
    commit_rec cr;
    if (read_commit(file, &cr) || cr.n_rows < 0 || cr.n_metrics < 0 ||
        strspn(cr.rows_sha256, "0123456789abcdef") != 64)
        return lm_errf(err, "%s: root attribute commit (n_rows, n_metrics, rows_sha256) is "
                       "missing or malformed", path);
    sc->n_rows = cr.n_rows;
    sc->n_metrics = cr.n_metrics;
    hsize_t d[2];
    if ((sc->units = open_dataset(file, path, "units", 1, d, err)) < 0) return -1;
    sc->units_len = d[0];
    if ((sc->metrics = open_dataset(file, path, "metrics", 2, d, err)) < 0) return -1;
    sc->mrows = d[0];
    sc->mcols = d[1];
    if ((sc->metric_n = open_dataset(file, path, "metric_n", 2, d, err)) < 0) return -1;
    sc->nrows_n = d[0];
    sc->ncols_n = d[1];
    if ((sc->metric_names = open_dataset(file, path, "metric_names", 1, d, err)) < 0)
        return -1;
    sc->names_len = d[0];
    if (check_units_type(sc->units, path, err)) return -1;
    if (H5Lexists(file, "detail", H5P_DEFAULT) <= 0)
        return lm_errf(err, "%s: group /detail is missing", path);

    /* Committed counts must be covered; at most one uncommitted row past
     * them (one append in flight when a writer died). */
    uint64_t n = (uint64_t)sc->n_rows, c = (uint64_t)sc->n_metrics;
    hsize_t lens[3] = {sc->units_len, sc->mrows, sc->nrows_n};
    const char *what[3] = {"/units", "/metrics", "/metric_n"};
    for (int i = 0; i < 3; i++)
        if (lens[i] < n || lens[i] > n + 1)
            return lm_errf(err, "%s: inconsistent row count: %s has %llu rows, the root "
                           "says %llu committed", path, what[i], (unsigned long long)lens[i],
                           (unsigned long long)n);
    if (sc->mcols < c || sc->ncols_n < c || sc->names_len < c)
        return lm_errf(err, "%s: inconsistent metric columns: /metrics %llu, /metric_n %llu, "
                       "/metric_names %llu, the root says %llu", path,
                       (unsigned long long)sc->mcols, (unsigned long long)sc->ncols_n,
                       (unsigned long long)sc->names_len, (unsigned long long)c);
    if (read_names(sc, file, path, err)) return -1;

    const char *want = cr.rows_sha256;
    int rc = 0;
    if (want_rows && read_rows(sc, file, mem_type, path, err) == 0) {
        char got[65];
        to_hex(sc->chain, got);
        if (strcmp(got, want) != 0)
            rc = lm_errf(err, "%s: row checksum mismatch over %lld rows (stored %.16s..., "
                         "computed %.16s...): the file was altered or damaged", path,
                         (long long)sc->n_rows, want, got);
    } else if (want_rows) {
        rc = -1;
    }
    return rc;
}

static hid_t open_checked(const char *path, unsigned flags, lm_err *err) {
    struct stat st;
    if (stat(path, &st) != 0) {
        lm_errf(err, "%s: cannot open results file: no such file", path);
        return -1;
    }
    if (!S_ISREG(st.st_mode)) {
        lm_errf(err, "%s: not a regular file", path);
        return -1;
    }
    htri_t is = H5Fis_hdf5(path);
    if (is <= 0) {
        h5errf(err, "%s: not an HDF5 file, or its superblock is damaged (%lld bytes)", path,
               (long long)st.st_size);
        return -1;
    }
    hid_t fapl = file_access();
    hid_t f = H5Fopen(path, flags, fapl);
    H5Pclose(fapl);
    if (f < 0) h5errf(err, "%s: HDF5 cannot open the file (truncated or damaged?)", path);
    return f;
}

/* Cuts what a killed append left past the committed rows and columns. */
static int drop_torn_tail(rs_store *s, scan *sc, lm_err *err) {
    uint64_t n = (uint64_t)sc->n_rows, c = (uint64_t)sc->n_metrics;
    int torn = sc->units_len > n || sc->mrows > n || sc->nrows_n > n || sc->mcols > c ||
               sc->ncols_n > c || sc->names_len > c;
    char gname[48];
    snprintf(gname, sizeof gname, "detail/%llu", (unsigned long long)n);
    htri_t stray = H5Lexists(s->file, gname, H5P_DEFAULT);
    if (!torn && stray <= 0) return 0;
    hsize_t d1[1] = {n}, d2[2] = {n, c}, dc[1] = {c};
    if (H5Dset_extent(sc->units, d1) < 0 || H5Dset_extent(sc->metrics, d2) < 0 ||
        H5Dset_extent(sc->metric_n, d2) < 0 || H5Dset_extent(sc->metric_names, dc) < 0 ||
        (stray > 0 && H5Ldelete(s->file, gname, H5P_DEFAULT) < 0) ||
        H5Fflush(s->file, H5F_SCOPE_GLOBAL) < 0)
        return h5errf(err, "%s: cutting an unfinished append", s->path);
    sc->cols.n = (int)c;
    snprintf(s->warning, sizeof s->warning,
             "%s: dropped an unfinished append past row %llu (a writer was killed mid-append)",
             s->path, (unsigned long long)n);
    return 0;
}

static int note_row(rs_store *s, const rs_row *r, int *changed);

int rs_store_open_append(const char *path, rs_store **out, lm_err *err) {
    *out = NULL;
    quiet q;
    quiet_on(&q, err);
    rs_store *s = store_new(path);
    scan sc = {0};
    sc.units = sc.metrics = sc.metric_n = sc.metric_names = -1;
    if (!s) {
        quiet_off(&q);
        return lm_errf(err, "out of memory");
    }
    if ((s->file = open_checked(path, H5F_ACC_RDWR, err)) < 0) goto fail;
    if (scan_file(s->file, s->mem_type, path, 1, &sc, err)) goto fail;
    if (drop_torn_tail(s, &sc, err)) goto fail;
    s->units = sc.units;
    s->metrics = sc.metrics;
    s->metric_n = sc.metric_n;
    s->metric_names = sc.metric_names;
    sc.units = sc.metrics = sc.metric_n = sc.metric_names = -1;
    s->cols = sc.cols;
    sc.cols = (nameset){0};
    s->n_rows = sc.n_rows;
    memcpy(s->chain, sc.chain, 32);
    int changed;
    for (int64_t i = 0; i < sc.n_rows; i++)
        if (note_row(s, &sc.rows[i], &changed)) {
            lm_errf(err, "out of memory");
            goto fail;
        }
    scan_free(&sc);
    quiet_off(&q);
    *out = s;
    return 0;
fail:
    scan_free(&sc);
    store_free(s);
    quiet_off(&q);
    return -1;
}

int rs_store_read(const char *path, rs_row **rows, size_t *n, lm_err *err) {
    *rows = NULL;
    *n = 0;
    quiet q;
    quiet_on(&q, err);
    hid_t mem = row_type(0);
    scan sc = {0};
    sc.units = sc.metrics = sc.metric_n = sc.metric_names = -1;
    int rc = -1;
    hid_t f = open_checked(path, H5F_ACC_RDONLY, err);
    if (f >= 0 && scan_file(f, mem, path, 1, &sc, err) == 0) {
        *rows = sc.rows;
        *n = (size_t)sc.n_rows;
        sc.rows = NULL;
        rc = 0;
    }
    scan_free(&sc);
    if (f >= 0) H5Fclose(f);
    H5Tclose(mem);
    quiet_off(&q);
    return rc;
}

void rs_rows_free(rs_row *rows, size_t n) {
    if (!rows) return;
    for (size_t i = 0; i < n; i++) rs_row_free(&rows[i]);
    free(rows);
}

char *rs_store_read_attr(const char *path, const char *name, lm_err *err) {
    quiet q;
    quiet_on(&q, err);
    char *v = NULL;
    hid_t f = open_checked(path, H5F_ACC_RDONLY, err);
    if (f >= 0) {
        v = attr_read_text(f, name);
        if (!v) lm_errf(err, "%s: no root attribute '%s'", path, name);
        H5Fclose(f);
    }
    quiet_off(&q);
    return v;
}

/* ------------------------------------------------------------ appending */

/* Folds a row into the summary sets; *changed = 1 when a set grew. */
static int note_row(rs_store *s, const rs_row *r, int *changed) {
    *changed = 0;
    int a = 0;
    if (r->host[0] && (a = nameset_add(&s->hosts, r->host)) < 0) return -1;
    *changed |= a;
    if ((a = idset_add(&s->ranks, r->rank)) < 0) return -1;
    *changed |= a;
    if (r->slurm_job_id >= 0) {
        if ((a = idset_add(&s->jobs, r->slurm_job_id)) < 0) return -1;
        *changed |= a;
    }
    if (r->slurm_array_job_id >= 0) {
        if ((a = idset_add(&s->array_jobs, r->slurm_array_job_id)) < 0) return -1;
        *changed |= a;
    }
    if (r->time_start > 0 && !(s->t_start <= r->time_start)) s->t_start = r->time_start;
    if (r->time_end > 0 && !(s->t_end >= r->time_end)) s->t_end = r->time_end;
    return 0;
}

static char *ids_json(const idset *s) {
    cJSON *a = cJSON_CreateArray();
    for (int i = 0; a && i < s->n; i++) cJSON_AddItemToArray(a, cJSON_CreateNumber((double)s->v[i]));
    char *t = a ? cJSON_PrintUnformatted(a) : NULL;
    cJSON_Delete(a);
    return t;
}

static int write_summary(rs_store *s) {
    cJSON *h = cJSON_CreateArray();
    for (int i = 0; h && i < s->hosts.n; i++) cJSON_AddItemToArray(h, cJSON_CreateString(s->hosts.v[i]));
    char *hosts = h ? cJSON_PrintUnformatted(h) : NULL;
    cJSON_Delete(h);
    char *ranks = ids_json(&s->ranks), *jobs = ids_json(&s->jobs),
         *ajobs = ids_json(&s->array_jobs);
    int rc = (!hosts || !ranks || !jobs || !ajobs ||
              attr_write_str(s->file, "hosts", hosts) || attr_write_str(s->file, "ranks", ranks) ||
              attr_write_str(s->file, "slurm_job_ids", jobs) ||
              attr_write_str(s->file, "slurm_array_job_ids", ajobs))
                 ? -1
                 : 0;
    free(hosts);
    free(ranks);
    free(jobs);
    free(ajobs);
    return rc;
}

static int check_row(const rs_store *s, const rs_row *r, lm_err *err) {
    if (r->too_long) {
        for (int i = 0; i < N_FIELDS; i++)
            if (strcmp(fields[i].name, r->too_long) == 0)
                return lm_errf(err, "%s: row '%.80s': field %s is longer than its column "
                               "(%zu bytes)", s->path, r->unit_key, r->too_long,
                               fields[i].size - 1);
        return lm_errf(err, "%s: row '%.80s': field %s was cut", s->path, r->unit_key,
                       r->too_long);
    }
    for (int i = 0; i < N_FIELDS; i++)
        if (fields[i].kind == F_STR &&
            !memchr((const char *)r + fields[i].off, 0, fields[i].size))
            return lm_errf(err, "%s: row field %s is not NUL-terminated within %zu bytes",
                           s->path, fields[i].name, fields[i].size);
    if (!r->unit_key[0]) return lm_errf(err, "%s: a row needs a unit_key", s->path);
    if (!r->status[0]) return lm_errf(err, "%s: row '%s' has no status", s->path, r->unit_key);
    for (int i = 0; i < r->n_metrics; i++)
        for (int j = 0; j < i; j++)
            if (strcmp(r->metrics[i].name, r->metrics[j].name) == 0)
                return lm_errf(err, "%s: row '%s' has metric '%s' twice", s->path,
                               r->unit_key, r->metrics[i].name);
    return 0;
}

/* Writes a [rows x 1] block of one value into column col. */
static int fill_column(hid_t d, hid_t type, const void *value, size_t esize, hsize_t rows,
                       hsize_t col) {
    if (rows == 0) return 0;
    void *buf = malloc((size_t)rows * esize);
    if (!buf) return -1;
    for (hsize_t i = 0; i < rows; i++) memcpy((char *)buf + i * esize, value, esize);
    hsize_t start[2] = {0, col}, count[2] = {rows, 1};
    hid_t fsp = H5Dget_space(d), msp = H5Screate_simple(2, count, NULL);
    H5Sselect_hyperslab(fsp, H5S_SELECT_SET, start, NULL, count, NULL);
    herr_t rc = H5Dwrite(d, type, msp, fsp, H5P_DEFAULT, buf);
    H5Sclose(msp);
    H5Sclose(fsp);
    free(buf);
    return rc < 0 ? -1 : 0;
}

static int add_column(rs_store *s, const char *name, lm_err *err) {
    hsize_t c = (hsize_t)s->cols.n, n = (hsize_t)s->n_rows;
    hsize_t dc[1] = {c + 1}, d2[2] = {n, c + 1};
    char buf[RS_NAME_LEN] = {0};
    snprintf(buf, sizeof buf, "%s", name);
    hid_t t = str_type(RS_NAME_LEN);
    hsize_t start[1] = {c}, one[1] = {1};
    int rc = H5Dset_extent(s->metric_names, dc) < 0 ? -1 : 0;
    if (rc == 0) {
        hid_t fsp = H5Dget_space(s->metric_names), msp = H5Screate_simple(1, one, NULL);
        H5Sselect_hyperslab(fsp, H5S_SELECT_SET, start, NULL, one, NULL);
        rc = H5Dwrite(s->metric_names, t, msp, fsp, H5P_DEFAULT, buf) < 0 ? -1 : 0;
        H5Sclose(msp);
        H5Sclose(fsp);
    }
    H5Tclose(t);
    /* Earlier rows get NaN / 0 written out, not left to fill-value rules
     * for chunks that already exist. */
    double nan = NAN;
    int64_t zero = 0;
    if (rc == 0)
        rc = (H5Dset_extent(s->metrics, d2) < 0 || H5Dset_extent(s->metric_n, d2) < 0 ||
              fill_column(s->metrics, H5T_NATIVE_DOUBLE, &nan, sizeof nan, n, c) ||
              fill_column(s->metric_n, H5T_NATIVE_INT64, &zero, sizeof zero, n, c))
                 ? -1
                 : 0;
    if (rc) return h5errf(err, "%s: adding metric column '%s'", s->path, name);
    if (nameset_add(&s->cols, name) < 0) return lm_errf(err, "out of memory");
    return 0;
}

static int write_details(rs_store *s, const rs_row *r, int64_t idx, lm_err *err) {
    if (r->n_details == 0) return 0;
    char gname[48];
    snprintf(gname, sizeof gname, "detail/%lld", (long long)idx);
    if (H5Lexists(s->file, gname, H5P_DEFAULT) > 0) H5Ldelete(s->file, gname, H5P_DEFAULT);
    hid_t g = H5Gcreate2(s->file, gname, H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT);
    if (g < 0) return h5errf(err, "%s: creating /%s", s->path, gname);
    int rc = (attr_write_str(g, "unit_key", r->unit_key) ||
              attr_write_str(g, "unit_hash", r->unit_hash))
                 ? -1
                 : 0;
    for (int i = 0; i < r->n_details && rc == 0; i++) {
        const rs_detail *d = &r->details[i];
        int is_int = d->kind == RS_DETAIL_I64;
        hsize_t dims[1] = {d->count};
        hid_t sp = H5Screate_simple(1, dims, NULL);
        hid_t dcpl = H5Pcreate(H5P_DATASET_CREATE);
        /* Small arrays live inside the (checksummed) object header; larger
         * ones in checksummed chunks. The row chain covers them anyway. */
        if (d->count > 0 && d->count <= 2048) {
            H5Pset_layout(dcpl, H5D_COMPACT);
        } else if (d->count > 0) {
            hsize_t chunk[1] = {d->count < 65536 ? d->count : 65536};
            H5Pset_chunk(dcpl, 1, chunk);
            H5Pset_fletcher32(dcpl);
        }
        hid_t ds = H5Dcreate2(g, d->name, is_int ? H5T_STD_I64LE : H5T_IEEE_F64LE, sp,
                              H5P_DEFAULT, dcpl, H5P_DEFAULT);
        if (ds < 0 || (d->count && H5Dwrite(ds, is_int ? H5T_NATIVE_INT64 : H5T_NATIVE_DOUBLE,
                                            H5S_ALL, H5S_ALL, H5P_DEFAULT,
                                            is_int ? (const void *)d->i64
                                                   : (const void *)d->f64) < 0))
            rc = -1;
        if (ds >= 0) H5Dclose(ds);
        H5Pclose(dcpl);
        H5Sclose(sp);
    }
    H5Gclose(g);
    if (rc) return h5errf(err, "%s: writing /%s", s->path, gname);
    return 0;
}

int rs_store_append(rs_store *s, const rs_row *row, lm_err *err) {
    if (s->broken)
        return lm_errf(err, "%s: an earlier append failed; reopen the file to continue",
                       s->path);
    if (check_row(s, row, err)) return -1;
    quiet q;
    quiet_on(&q, err);
    int rc = -1;
    /* The chain is computed on the row as it will read back: metrics
     * without value or count are not stored. */
    unsigned char next[32];
    memcpy(next, s->chain, 32);
    if (chain_row(next, row, err)) goto out;
    s->broken = 1; /* until this append completes */

    for (int i = 0; i < row->n_metrics; i++)
        if (metric_present(&row->metrics[i]) && nameset_find(&s->cols, row->metrics[i].name) < 0 &&
            add_column(s, row->metrics[i].name, err))
            goto out;

    hsize_t n = (hsize_t)s->n_rows, c = (hsize_t)s->cols.n;
    hsize_t d1[1] = {n + 1}, d2[2] = {n + 1, c}, start[2] = {n, 0}, count[2] = {1, c};
    if (H5Dset_extent(s->units, d1) < 0) {
        h5errf(err, "%s: extending /units", s->path);
        goto out;
    }
    hid_t fsp = H5Dget_space(s->units), msp = H5Screate_simple(1, count, NULL);
    H5Sselect_hyperslab(fsp, H5S_SELECT_SET, start, NULL, count, NULL);
    herr_t hr = H5Dwrite(s->units, s->mem_type, msp, fsp, H5P_DEFAULT, row);
    H5Sclose(msp);
    H5Sclose(fsp);
    if (hr < 0) {
        h5errf(err, "%s: writing row %llu to /units", s->path, (unsigned long long)n);
        goto out;
    }

    if (H5Dset_extent(s->metrics, d2) < 0 || H5Dset_extent(s->metric_n, d2) < 0) {
        h5errf(err, "%s: extending the metric matrices", s->path);
        goto out;
    }
    if (c > 0) {
        double *v = malloc(c * sizeof *v);
        int64_t *cnt = calloc(c, sizeof *cnt);
        if (!v || !cnt) {
            free(v);
            free(cnt);
            lm_errf(err, "out of memory");
            goto out;
        }
        for (hsize_t j = 0; j < c; j++) v[j] = NAN;
        for (int i = 0; i < row->n_metrics; i++) {
            int j = nameset_find(&s->cols, row->metrics[i].name);
            if (j >= 0 && metric_present(&row->metrics[i])) {
                v[j] = row->metrics[i].value;
                cnt[j] = row->metrics[i].n;
            }
        }
        msp = H5Screate_simple(2, count, NULL);
        fsp = H5Dget_space(s->metrics);
        H5Sselect_hyperslab(fsp, H5S_SELECT_SET, start, NULL, count, NULL);
        hr = H5Dwrite(s->metrics, H5T_NATIVE_DOUBLE, msp, fsp, H5P_DEFAULT, v);
        H5Sclose(fsp);
        if (hr >= 0) {
            fsp = H5Dget_space(s->metric_n);
            H5Sselect_hyperslab(fsp, H5S_SELECT_SET, start, NULL, count, NULL);
            hr = H5Dwrite(s->metric_n, H5T_NATIVE_INT64, msp, fsp, H5P_DEFAULT, cnt);
            H5Sclose(fsp);
        }
        H5Sclose(msp);
        free(v);
        free(cnt);
        if (hr < 0) {
            h5errf(err, "%s: writing row %llu's metrics", s->path, (unsigned long long)n);
            goto out;
        }
    }
    if (write_details(s, row, (int64_t)n, err)) goto out;

    /* The row's data on disk first, then the record that commits it. */
    if (s->flush_each && H5Fflush(s->file, H5F_SCOPE_GLOBAL) < 0) {
        h5errf(err, "%s: flushing to disk", s->path);
        goto out;
    }
    int changed = 0;
    if (note_row(s, row, &changed)) {
        lm_errf(err, "out of memory");
        goto out;
    }
    if (write_commit(s->file, (int64_t)n + 1, (int64_t)c, next) ||
        (changed && write_summary(s)) ||
        (!isnan(s->t_start) && attr_write_f64(s->file, "time_start", s->t_start)) ||
        (!isnan(s->t_end) && attr_write_f64(s->file, "time_end", s->t_end))) {
        h5errf(err, "%s: updating the row counters", s->path);
        goto out;
    }
    if (s->flush_each && H5Fflush(s->file, H5F_SCOPE_GLOBAL) < 0) {
        h5errf(err, "%s: flushing to disk", s->path);
        goto out;
    }
    s->n_rows++;
    memcpy(s->chain, next, 32);
    s->broken = 0;
    rc = 0;
out:
    quiet_off(&q);
    return rc;
}

int64_t rs_store_rows(const rs_store *s) { return s->n_rows; }

const char *rs_store_warning(const rs_store *s) { return s->warning[0] ? s->warning : NULL; }

void rs_store_set_flush(rs_store *s, int each_row) { s->flush_each = each_row; }

int rs_store_set_attr(rs_store *s, const char *name, const char *value, lm_err *err) {
    static const char *reserved[] = {"format", "commit"};
    for (size_t i = 0; i < sizeof reserved / sizeof reserved[0]; i++)
        if (strcmp(name, reserved[i]) == 0)
            return lm_errf(err, "%s: attribute %s is the store's own", s->path, name);
    if (!*name || strchr(name, '/'))
        return lm_errf(err, "%s: '%s' is not a usable attribute name", s->path, name);
    quiet q;
    quiet_on(&q, err);
    int rc = 0;
    if (attr_write_str(s->file, name, value ? value : "") ||
        (s->flush_each && H5Fflush(s->file, H5F_SCOPE_GLOBAL) < 0))
        rc = h5errf(err, "%s: writing attribute %s", s->path, name);
    quiet_off(&q);
    return rc;
}

int rs_store_close(rs_store *s, lm_err *err) {
    if (!s) return 0;
    quiet q;
    quiet_on(&q, err);
    char when[32];
    now_iso(when);
    int rc = 0;
    if (!s->broken && (write_summary(s) || attr_write_str(s->file, "closed", when)))
        rc = h5errf(err, "%s: writing the summary attributes", s->path);
    hid_t f = s->file;
    s->file = -1;
    if (s->units >= 0) H5Dclose(s->units);
    if (s->metrics >= 0) H5Dclose(s->metrics);
    if (s->metric_n >= 0) H5Dclose(s->metric_n);
    if (s->metric_names >= 0) H5Dclose(s->metric_names);
    s->units = s->metrics = s->metric_n = s->metric_names = -1;
    if (f >= 0 && H5Fclose(f) < 0 && rc == 0)
        rc = h5errf(err, "%s: closing the file", s->path);
    store_free(s);
    quiet_off(&q);
    return rc;
}
