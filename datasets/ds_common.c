/* The plumbing every loader shares: arena, buffer, file I/O, UTF-8, and the
 * JSON record walker that knows on which line each record starts (cJSON
 * does not track positions, so we find each record's extent ourselves and
 * hand only that slice to cJSON). */
#include "ds_internal.h"

#include <errno.h>
#include <limits.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ---- arena ------------------------------------------------------------ */

void *ds_arena_alloc(ds_arena_block **arena, size_t n) {
    n = (n + 15) & ~(size_t)15;
    ds_arena_block *b = *arena;
    if (!b || b->cap - b->used < n) {
        size_t cap = n > 65536 ? n : 65536;
        if (cap > SIZE_MAX - sizeof *b) return NULL;
        b = malloc(sizeof *b + cap);
        if (!b) return NULL;
        b->next = *arena;
        b->used = 0;
        b->cap = cap;
        *arena = b;
    }
    void *p = b->data + b->used;
    b->used += n;
    return p;
}

char *ds_arena_strndup(ds_arena_block **arena, const char *s, size_t n) {
    if (n == SIZE_MAX) return NULL;
    char *p = ds_arena_alloc(arena, n + 1);
    if (!p) return NULL;
    memcpy(p, s, n);
    p[n] = '\0';
    return p;
}

char *ds_arena_strdup(ds_arena_block **arena, const char *s) {
    return ds_arena_strndup(arena, s, strlen(s));
}

void ds_arena_free(ds_arena_block **arena) {
    ds_arena_block *b = *arena;
    while (b) {
        ds_arena_block *next = b->next;
        free(b);
        b = next;
    }
    *arena = NULL;
}

/* ---- buffer ------------------------------------------------------------ */

static int buf_reserve(ds_buf *b, size_t extra) {
    if (b->oom) return -1;
    if (extra > SIZE_MAX - b->n - 1) { b->oom = 1; return -1; }
    size_t need = b->n + extra + 1;
    if (need <= b->cap) return 0;
    size_t cap = b->cap ? b->cap : 256;
    while (cap < need) {
        if (cap > SIZE_MAX / 2) { cap = need; break; }
        cap *= 2;
    }
    char *p = realloc(b->p, cap);
    if (!p) { b->oom = 1; return -1; }
    b->p = p;
    b->cap = cap;
    return 0;
}

void ds_buf_put(ds_buf *b, const char *s, size_t n) {
    if (buf_reserve(b, n)) return;
    memcpy(b->p + b->n, s, n);
    b->n += n;
    b->p[b->n] = '\0';
}

void ds_buf_puts(ds_buf *b, const char *s) { ds_buf_put(b, s, strlen(s)); }
void ds_buf_putc(ds_buf *b, char c) { ds_buf_put(b, &c, 1); }

void ds_buf_printf(ds_buf *b, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    char tmp[512];
    int k = vsnprintf(tmp, sizeof tmp, fmt, ap);
    va_end(ap);
    if (k < 0) { b->oom = 1; return; }
    if ((size_t)k < sizeof tmp) { ds_buf_put(b, tmp, (size_t)k); return; }
    if (buf_reserve(b, (size_t)k)) return;
    va_start(ap, fmt);
    vsnprintf(b->p + b->n, (size_t)k + 1, fmt, ap);
    va_end(ap);
    b->n += (size_t)k;
}

void ds_buf_json_str(ds_buf *b, const char *s) {
    ds_buf_putc(b, '"');
    const char *run = s;
    for (const char *p = s; *p; p++) {
        unsigned char ch = (unsigned char)*p;
        const char *esc = NULL;
        char u[8];
        switch (ch) {
        case '"': esc = "\\\""; break;
        case '\\': esc = "\\\\"; break;
        case '\n': esc = "\\n"; break;
        case '\t': esc = "\\t"; break;
        case '\r': esc = "\\r"; break;
        default:
            if (ch < 0x20) {
                snprintf(u, sizeof u, "\\u%04x", ch);
                esc = u;
            }
        }
        if (esc) {
            ds_buf_put(b, run, (size_t)(p - run));
            ds_buf_puts(b, esc);
            run = p + 1;
        }
    }
    ds_buf_puts(b, run);
    ds_buf_putc(b, '"');
}

const char *ds_buf_cstr(ds_buf *b) {
    if (buf_reserve(b, 0)) return NULL;
    b->p[b->n] = '\0';
    return b->p;
}

void ds_buf_free(ds_buf *b) {
    free(b->p);
    memset(b, 0, sizeof *b);
}

/* ---- files ----------------------------------------------------------- */

int ds_read_file(const char *path, char **data, size_t *len, lm_err *err) {
    FILE *f = fopen(path, "rb");
    if (!f) return lm_errf(err, "%s: cannot open: %s", path, strerror(errno));
    ds_buf b = {0};
    char chunk[65536];
    size_t k;
    while ((k = fread(chunk, 1, sizeof chunk, f)) > 0) ds_buf_put(&b, chunk, k);
    int bad = ferror(f);
    fclose(f);
    if (bad) {
        ds_buf_free(&b);
        return lm_errf(err, "%s: read error", path);
    }
    if (!ds_buf_cstr(&b)) {
        ds_buf_free(&b);
        return lm_errf(err, "%s: out of memory reading the file", path);
    }
    *data = b.p;
    *len = b.n;
    return 0;
}

int ds_write_file(const char *path, const char *data, size_t len, lm_err *err) {
    size_t pl = strlen(path);
    char *tmp = malloc(pl + 5);
    if (!tmp) return lm_errf(err, "%s: out of memory", path);
    memcpy(tmp, path, pl);
    memcpy(tmp + pl, ".tmp", 5);
    FILE *f = fopen(tmp, "wb");
    if (!f) {
        lm_errf(err, "%s: cannot create: %s", tmp, strerror(errno));
        free(tmp);
        return -1;
    }
    size_t w = len ? fwrite(data, 1, len, f) : 0;
    int bad = (w != len) | (fclose(f) != 0);
    if (bad || rename(tmp, path) != 0) {
        lm_errf(err, "%s: write failed: %s", path, strerror(errno));
        remove(tmp);
        free(tmp);
        return -1;
    }
    free(tmp);
    return 0;
}

/* ---- UTF-8 ----------------------------------------------------------- */

size_t ds_utf8_check(const char *s, size_t n) {
    const unsigned char *u = (const unsigned char *)s;
    size_t i = 0;
    while (i < n) {
        unsigned c = u[i];
        if (c < 0x80) { i++; continue; }
        size_t k;
        uint32_t cp, min;
        if ((c & 0xE0) == 0xC0) { k = 1; cp = c & 0x1F; min = 0x80; }
        else if ((c & 0xF0) == 0xE0) { k = 2; cp = c & 0x0F; min = 0x800; }
        else if ((c & 0xF8) == 0xF0) { k = 3; cp = c & 0x07; min = 0x10000; }
        else return i;
        if (k > n - i - 1) return i;
        for (size_t j = 1; j <= k; j++) {
            if ((u[i + j] & 0xC0) != 0x80) return i;
            cp = (cp << 6) | (u[i + j] & 0x3F);
        }
        if (cp < min || cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF)) return i;
        i += k + 1;
    }
    return n;
}

/* ---- record errors ------------------------------------------------------ */

int ds_rec_err(ds_ctx *c, const char *fmt, ...) {
    char msg[LM_ERR_MSG];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    return lm_errf(c->err, "%.300s:%d: %.700s", c->name, c->line, msg);
}

int ds_field_err(ds_ctx *c, const char *field, const char *fmt, ...) {
    char msg[LM_ERR_MSG];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    return lm_errf(c->err, "%.300s:%d: field '%s%.100s' %.500s", c->name,
                   c->line, c->prefix ? c->prefix : "", field, msg);
}

/* ---- field getters ------------------------------------------------------ */

int ds_get_str(ds_ctx *c, const cJSON *obj, const char *field, int required,
               int nonempty, const char **out) {
    const cJSON *it = cJSON_GetObjectItemCaseSensitive(obj, field);
    if (!it || (!required && cJSON_IsNull(it))) {
        if (required) return ds_field_err(c, field, "missing");
        *out = NULL;
        return 1;
    }
    if (!cJSON_IsString(it) || !it->valuestring)
        return ds_field_err(c, field, "must be a string");
    const char *s = it->valuestring;
    size_t n = strlen(s);
    size_t bad = ds_utf8_check(s, n);
    if (bad != n)
        return ds_field_err(c, field, "is not valid UTF-8 (byte %zu)", bad);
    if (nonempty && n == 0) return ds_field_err(c, field, "is empty");
    char *copy = ds_arena_strndup(&c->ds->arena, s, n);
    if (!copy) return ds_rec_err(c, "out of memory");
    *out = copy;
    return 0;
}

int ds_get_long(ds_ctx *c, const cJSON *obj, const char *field, int required,
                long lo, long hi, long *out) {
    const cJSON *it = cJSON_GetObjectItemCaseSensitive(obj, field);
    if (!it) {
        if (required) return ds_field_err(c, field, "missing");
        return 1;
    }
    if (!cJSON_IsNumber(it)) return ds_field_err(c, field, "must be an integer");
    double v = it->valuedouble;
    if (!isfinite(v) || v != floor(v) || v < -9.0e15 || v > 9.0e15)
        return ds_field_err(c, field, "must be an integer");
    if (v < (double)lo || v > (double)hi)
        return ds_field_err(c, field, "is %.0f, outside [%ld, %ld]", v, lo, hi);
    *out = (long)v;
    return 0;
}

int ds_get_bool(ds_ctx *c, const cJSON *obj, const char *field, int *out) {
    const cJSON *it = cJSON_GetObjectItemCaseSensitive(obj, field);
    if (!it) return ds_field_err(c, field, "missing");
    if (cJSON_IsBool(it)) {
        *out = cJSON_IsTrue(it) ? 1 : 0;
        return 0;
    }
    if (cJSON_IsNumber(it) && (it->valuedouble == 0.0 || it->valuedouble == 1.0)) {
        *out = it->valuedouble == 1.0;
        return 0;
    }
    return ds_field_err(c, field, "must be true or false");
}

/* ---- records ------------------------------------------------------------ */

void *ds_push(ds_ctx *c) {
    ds_dataset *ds = c->ds;
    size_t size = ds->kind == DS_KIND_MC ? sizeof(ds_mc)
                : ds->kind == DS_KIND_QA ? sizeof(ds_qa) : sizeof(ds_doc);
    void **arr = ds->kind == DS_KIND_MC ? (void **)&ds->mc
               : ds->kind == DS_KIND_QA ? (void **)&ds->qa : (void **)&ds->docs;
    if (ds->n == ds->cap) {
        if (ds->cap > INT_MAX / 2) return NULL;
        int cap = ds->cap ? ds->cap * 2 : 64;
        void *p = realloc(*arr, (size_t)cap * size);
        if (!p) return NULL;
        *arr = p;
        ds->cap = cap;
    }
    char *slot = (char *)*arr + (size_t)ds->n * size;
    memset(slot, 0, size);
    ds->n++;
    return slot;
}

/* ---- the JSON walker ---------------------------------------------------- */

static void skip_ws(const char *d, size_t len, size_t *i, int *line) {
    while (*i < len) {
        char ch = d[*i];
        if (ch == '\n') (*line)++;
        else if (ch != ' ' && ch != '\t' && ch != '\r') break;
        (*i)++;
    }
}

/* Finds the end of the JSON value starting at d[*i] without parsing it:
 * strings (with escapes) and bracket depth. Returns -1 when the input ends
 * first. Brackets are not matched by kind; cJSON judges the slice later. */
static int skip_value(const char *d, size_t len, size_t *i, int *line) {
    size_t p = *i;
    long depth = 0;
    int in_str = 0;
    for (; p < len; p++) {
        char ch = d[p];
        if (ch == '\n') (*line)++;
        if (in_str) {
            if (ch == '\\') {
                if (p + 1 < len && d[p + 1] == '\n') (*line)++;
                p++;
            } else if (ch == '"') {
                in_str = 0;
                if (depth == 0) { p++; break; }
            }
            continue;
        }
        if (ch == '"') in_str = 1;
        else if (ch == '{' || ch == '[') depth++;
        else if (ch == '}' || ch == ']') {
            if (depth == 0) break; /* a scalar ended by the enclosing ']' */
            if (--depth == 0) { p++; break; }
        } else if (depth == 0 && (ch == ',' || ch == ' ' || ch == '\t' ||
                                  ch == '\r' || ch == '\n')) {
            if (ch == '\n') (*line)--; /* skip_ws counts it again */
            break;
        }
    }
    if (in_str || depth > 0 || p > len) return -1;
    *i = p;
    return 0;
}

static int count_lines(const char *s, const char *end) {
    int n = 0;
    for (; s < end; s++) n += *s == '\n';
    return n;
}

/* Parses d[start, end) as one record and hands it to fn. */
static int one_record(ds_ctx *c, const char *d, size_t start, size_t end,
                      int start_line, ds_record_fn fn, void *ud) {
    c->line = start_line;
    c->prefix = NULL;
    const char *ep = NULL;
    cJSON *obj = cJSON_ParseWithLengthOpts(d + start, end - start, &ep, 0);
    if (!obj) {
        const char *at = ep && ep >= d + start && ep <= d + end ? ep : d + start;
        int eline = start_line + count_lines(d + start, at);
        if (eline == start_line)
            return ds_rec_err(c, "malformed JSON (at byte %zu of the record)",
                              (size_t)(at - (d + start)));
        c->line = eline;
        return ds_rec_err(c, "malformed JSON in the record starting at line %d",
                          start_line);
    }
    /* cJSON may stop early (jsonl: "{} x"); the rest must be blank. */
    if (ep && ep < d + end) {
        for (const char *q = ep; q < d + end; q++)
            if (*q != ' ' && *q != '\t' && *q != '\r' && *q != '\n') {
                cJSON_Delete(obj);
                return ds_rec_err(c, "unexpected text after the JSON value");
            }
    }
    int rc;
    if (!cJSON_IsObject(obj)) rc = ds_rec_err(c, "record is not a JSON object");
    else rc = fn(c, obj, ud);
    cJSON_Delete(obj);
    return rc;
}

/* A bad record: stop (strict) or count it and go on (lenient). */
static int bad_record(ds_ctx *c) {
    if (!c->lenient) return -1;
    if (c->ds->n_bad++ == 0 && c->err)
        memcpy(c->ds->problem, c->err->msg, sizeof c->ds->problem);
    return 0;
}

/* A problem that ends the walk; lenient mode records it as a bad record. */
static int fatal(ds_ctx *c) {
    if (!c->lenient) return -1;
    bad_record(c);
    return 0;
}

int ds_walk_json(ds_ctx *c, const char *d, size_t len, int is_array,
                 ds_record_fn fn, void *ud) {
    size_t i = 0;
    int line = 1;
    if (is_array < 0) {
        skip_ws(d, len, &i, &line);
        is_array = i < len && d[i] == '[';
        i = 0;
        line = 1;
    }
    if (!is_array) {
        /* jsonl: one record per line, blank lines ignored */
        while (i < len) {
            size_t e = i;
            while (e < len && d[e] != '\n') e++;
            size_t k = i;
            while (k < e && (d[k] == ' ' || d[k] == '\t' || d[k] == '\r')) k++;
            if (k < e && one_record(c, d, i, e, line, fn, ud) && bad_record(c))
                return -1;
            i = e + 1;
            line++;
        }
        return 0;
    }
    skip_ws(d, len, &i, &line);
    c->line = line;
    if (i >= len || d[i] != '[') {
        ds_rec_err(c, "expected a JSON array ('[')");
        return fatal(c);
    }
    i++;
    for (int first = 1;; first = 0) {
        skip_ws(d, len, &i, &line);
        c->line = line;
        if (i >= len) {
            ds_rec_err(c, "truncated JSON: the array is not closed");
            return fatal(c);
        }
        if (d[i] == ']' && first) { i++; break; }
        if (d[i] == ']' || d[i] == ',') {
            ds_rec_err(c, "expected a record after '%s'", first ? "[" : ",");
            return fatal(c);
        }
        size_t start = i;
        int start_line = line;
        if (skip_value(d, len, &i, &line)) {
            c->line = start_line;
            ds_rec_err(c, "truncated JSON: the record starting here is not closed");
            return fatal(c);
        }
        if (one_record(c, d, start, i, start_line, fn, ud) && bad_record(c))
            return -1;
        skip_ws(d, len, &i, &line);
        c->line = line;
        if (i < len && d[i] == ',') { i++; continue; }
        if (i < len && d[i] == ']') { i++; break; }
        ds_rec_err(c, i < len ? "expected ',' or ']' after the record"
                              : "truncated JSON: the array is not closed");
        return fatal(c);
    }
    skip_ws(d, len, &i, &line);
    if (i < len) {
        c->line = line;
        ds_rec_err(c, "unexpected text after the JSON array");
        return fatal(c);
    }
    return 0;
}
