/* Rows: fixed-width text fields, a growable list of named metrics and of
 * per-item detail arrays, and a JSON view of the whole row. */
#include <cjson/cJSON.h>
#include <math.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "results.h"

void rs_row_init(rs_row *row) {
    memset(row, 0, sizeof *row);
    strcpy(row->status, RS_OK);
    row->slurm_job_id = row->slurm_array_job_id = row->slurm_array_task_id = -1;
}

void rs_row_free(rs_row *row) {
    for (int i = 0; i < row->n_details; i++) {
        free(row->details[i].f64);
        free(row->details[i].i64);
    }
    free(row->details);
    free(row->metrics);
    row->details = NULL;
    row->metrics = NULL;
    row->n_details = row->cap_details = row->n_metrics = row->cap_metrics = 0;
}

int rs_row_copy(rs_row *dst, const rs_row *src, lm_err *err) {
    *dst = *src;
    dst->metrics = NULL;
    dst->details = NULL;
    dst->n_metrics = dst->cap_metrics = dst->n_details = dst->cap_details = 0;
    for (int i = 0; i < src->n_metrics; i++)
        if (rs_row_set_metric(dst, src->metrics[i].name, src->metrics[i].value,
                              src->metrics[i].n, err))
            goto fail;
    for (int i = 0; i < src->n_details; i++) {
        const rs_detail *d = &src->details[i];
        int rc = d->kind == RS_DETAIL_I64
                     ? rs_row_add_detail_i64(dst, d->name, d->i64, d->count, err)
                     : rs_row_add_detail(dst, d->name, d->f64, d->count, err);
        if (rc) goto fail;
    }
    return 0;
fail:
    rs_row_free(dst);
    return -1;
}

int rs_row_set_text(rs_row *row, char *dst, size_t cap, const char *text,
                    const char *field) {
    if (!text) text = "";
    size_t len = strlen(text);
    if (len < cap) {
        /* Zero the tail too: the whole field goes to the file. */
        memcpy(dst, text, len + 1);
        memset(dst + len + 1, 0, cap - len - 1);
        return 0;
    }
    memcpy(dst, text, cap - 1);
    dst[cap - 1] = '\0';
    if (strcmp(field, "message") == 0) {
        if (cap > 4) memcpy(dst + cap - 4, "...", 4);
        return 0; /* a cut message still says what went wrong */
    }
    if (!row->too_long) row->too_long = field;
    return -1;
}

void rs_row_set_message(rs_row *row, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    int len = vsnprintf(row->message, sizeof row->message, fmt, ap);
    va_end(ap);
    if (len >= (int)sizeof row->message)
        memcpy(row->message + sizeof row->message - 4, "...", 4);
}

static int64_t env_id(const char *name) {
    const char *s = getenv(name);
    if (!s || !*s) return -1;
    char *end;
    long long v = strtoll(s, &end, 10);
    return (*end == '\0' && v >= 0) ? (int64_t)v : -1;
}

void rs_row_fill_provenance(rs_row *row, int rank) {
    char host[256] = "";
    if (gethostname(host, sizeof host) != 0) host[0] = '\0';
    host[sizeof host - 1] = '\0';
    /* A long FQDN is cut quietly: the host is provenance, not a key. */
    snprintf(row->host, sizeof row->host, "%s", host);
    row->rank = rank;
    row->slurm_job_id = env_id("SLURM_JOB_ID");
    row->slurm_array_job_id = env_id("SLURM_ARRAY_JOB_ID");
    row->slurm_array_task_id = env_id("SLURM_ARRAY_TASK_ID");
}

/* Names become HDF5 link names and table headers: keep them plain. */
static int check_name(const char *kind, const char *name, lm_err *err) {
    size_t len = name ? strlen(name) : 0;
    if (len == 0 || len >= RS_NAME_LEN)
        return lm_errf(err, "%s name '%s' must have 1..%d bytes", kind,
                       name ? name : "", RS_NAME_LEN - 1);
    for (size_t i = 0; i < len; i++) {
        char c = name[i];
        int ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
                 (c >= '0' && c <= '9') || c == '_' || c == '.' || c == '-';
        if (!ok)
            return lm_errf(err, "%s name '%s': character %zu is not one of "
                           "[A-Za-z0-9_.-]", kind, name, i);
    }
    if (strcmp(name, ".") == 0 || strcmp(name, "..") == 0)
        return lm_errf(err, "%s name '%s' is reserved", kind, name);
    return 0;
}

int rs_row_set_metric(rs_row *row, const char *name, double value, int64_t n,
                      lm_err *err) {
    if (check_name("metric", name, err)) return -1;
    for (int i = 0; i < row->n_metrics; i++)
        if (strcmp(row->metrics[i].name, name) == 0) {
            row->metrics[i].value = value;
            row->metrics[i].n = n;
            return 0;
        }
    if (row->n_metrics == row->cap_metrics) {
        int cap = row->cap_metrics ? 2 * row->cap_metrics : 8;
        rs_metric *m = realloc(row->metrics, (size_t)cap * sizeof *m);
        if (!m) return lm_errf(err, "out of memory adding metric '%s'", name);
        row->metrics = m;
        row->cap_metrics = cap;
    }
    rs_metric *m = &row->metrics[row->n_metrics++];
    memset(m, 0, sizeof *m);
    strcpy(m->name, name);
    m->value = value;
    m->n = n;
    return 0;
}

double rs_row_metric(const rs_row *row, const char *name, int64_t *n) {
    for (int i = 0; i < row->n_metrics; i++)
        if (strcmp(row->metrics[i].name, name) == 0) {
            if (n) *n = row->metrics[i].n;
            return row->metrics[i].value;
        }
    if (n) *n = 0;
    return NAN;
}

static int add_detail(rs_row *row, const char *name, rs_detail_kind kind,
                      const void *values, size_t count, lm_err *err) {
    if (check_name("detail", name, err)) return -1;
    size_t elem = kind == RS_DETAIL_I64 ? sizeof(int64_t) : sizeof(double);
    if (count > SIZE_MAX / elem)
        return lm_errf(err, "detail '%s': %zu values overflow", name, count);
    void *copy = malloc(count ? count * elem : 1);
    if (!copy) return lm_errf(err, "out of memory for detail '%s'", name);
    if (count) memcpy(copy, values, count * elem);

    rs_detail *d = NULL;
    for (int i = 0; i < row->n_details; i++)
        if (strcmp(row->details[i].name, name) == 0) {
            d = &row->details[i];
            free(d->f64);
            free(d->i64);
            break;
        }
    if (!d) {
        if (row->n_details == row->cap_details) {
            int cap = row->cap_details ? 2 * row->cap_details : 4;
            rs_detail *p = realloc(row->details, (size_t)cap * sizeof *p);
            if (!p) {
                free(copy);
                return lm_errf(err, "out of memory adding detail '%s'", name);
            }
            row->details = p;
            row->cap_details = cap;
        }
        d = &row->details[row->n_details++];
    }
    memset(d, 0, sizeof *d);
    strcpy(d->name, name);
    d->kind = kind;
    d->count = count;
    if (kind == RS_DETAIL_I64) d->i64 = copy;
    else d->f64 = copy;
    return 0;
}

int rs_row_add_detail(rs_row *row, const char *name, const double *values,
                      size_t count, lm_err *err) {
    return add_detail(row, name, RS_DETAIL_F64, values, count, err);
}

int rs_row_add_detail_i64(rs_row *row, const char *name,
                          const int64_t *values, size_t count, lm_err *err) {
    return add_detail(row, name, RS_DETAIL_I64, values, count, err);
}

const rs_detail *rs_row_detail(const rs_row *row, const char *name) {
    for (int i = 0; i < row->n_details; i++)
        if (strcmp(row->details[i].name, name) == 0) return &row->details[i];
    return NULL;
}

/* cJSON writes NaN and infinities as null, which is what we want. */
char *rs_row_to_json(const rs_row *row) {
    cJSON *o = cJSON_CreateObject();
    if (!o) return NULL;
    cJSON_AddStringToObject(o, "unit_key", row->unit_key);
    cJSON_AddStringToObject(o, "unit_hash", row->unit_hash);
    cJSON_AddStringToObject(o, "stage", row->stage);
    cJSON_AddStringToObject(o, "model", row->model);
    cJSON_AddStringToObject(o, "fingerprint", row->fingerprint);
    cJSON_AddStringToObject(o, "method", row->method);
    cJSON_AddStringToObject(o, "params", row->params);
    cJSON_AddNumberToObject(o, "seed", (double)row->seed);
    cJSON_AddStringToObject(o, "status", row->status);
    cJSON_AddStringToObject(o, "message", row->message);
    cJSON_AddNumberToObject(o, "time_start", row->time_start);
    cJSON_AddNumberToObject(o, "time_end", row->time_end);
    cJSON_AddNumberToObject(o, "wall_seconds", row->wall_seconds);
    cJSON_AddNumberToObject(o, "tokens", (double)row->tokens);
    cJSON_AddNumberToObject(o, "flops", row->flops);
    cJSON_AddNumberToObject(o, "peak_rss_bytes", (double)row->peak_rss_bytes);
    cJSON_AddStringToObject(o, "host", row->host);
    cJSON_AddNumberToObject(o, "rank", row->rank);
    cJSON_AddNumberToObject(o, "slurm_job_id", (double)row->slurm_job_id);
    cJSON_AddNumberToObject(o, "slurm_array_job_id",
                            (double)row->slurm_array_job_id);
    cJSON_AddNumberToObject(o, "slurm_array_task_id",
                            (double)row->slurm_array_task_id);
    cJSON *ms = cJSON_AddObjectToObject(o, "metrics");
    for (int i = 0; ms && i < row->n_metrics; i++) {
        cJSON *m = cJSON_AddObjectToObject(ms, row->metrics[i].name);
        if (!m) continue;
        cJSON_AddNumberToObject(m, "value", row->metrics[i].value);
        cJSON_AddNumberToObject(m, "n", (double)row->metrics[i].n);
    }
    cJSON *ds = cJSON_AddObjectToObject(o, "detail");
    for (int i = 0; ds && i < row->n_details; i++) {
        const rs_detail *d = &row->details[i];
        cJSON *a = cJSON_AddArrayToObject(ds, d->name);
        for (size_t k = 0; a && k < d->count; k++)
            cJSON_AddItemToArray(a, cJSON_CreateNumber(
                d->kind == RS_DETAIL_I64 ? (double)d->i64[k] : d->f64[k]));
    }
    char *s = cJSON_PrintUnformatted(o);
    cJSON_Delete(o);
    return s;
}
