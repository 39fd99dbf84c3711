/* ds_load and friends: format names, the format guess, the dispatch to the
 * record parsers, and MEraser's question-type rule. */
#include "ds_internal.h"

#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const struct {
    const char *name;
    ds_kind kind;
} formats[DS_FMT_COUNT] = {
    [DS_FMT_AUTO] = {"auto", DS_KIND_TEXT},
    [DS_FMT_SCIQ] = {"sciq", DS_KIND_MC},
    [DS_FMT_COPA] = {"copa", DS_KIND_MC},
    [DS_FMT_RTE] = {"rte", DS_KIND_MC},
    [DS_FMT_WSC] = {"wsc", DS_KIND_MC},
    [DS_FMT_BOOLQ] = {"boolq", DS_KIND_MC},
    [DS_FMT_CB] = {"cb", DS_KIND_MC},
    [DS_FMT_GUANACO] = {"guanaco", DS_KIND_QA},
    [DS_FMT_DOLLY] = {"dolly", DS_KIND_QA},
    [DS_FMT_ALPACA] = {"alpaca", DS_KIND_QA},
    [DS_FMT_MERASER_MISMATCHED] = {"meraser-mismatched", DS_KIND_QA},
    [DS_FMT_MERASER_RECOVER] = {"meraser-recover", DS_KIND_QA},
    [DS_FMT_CHAT] = {"chat", DS_KIND_QA},
    [DS_FMT_TEXT] = {"text", DS_KIND_TEXT},
};

const char *ds_format_name(ds_format f) {
    return f >= 0 && f < DS_FMT_COUNT ? formats[f].name : "?";
}

ds_kind ds_format_kind(ds_format f) {
    return f >= 0 && f < DS_FMT_COUNT ? formats[f].kind : DS_KIND_TEXT;
}

int ds_format_parse(const char *name, ds_format *f, lm_err *err) {
    for (int i = 0; i < DS_FMT_COUNT; i++)
        if (strcmp(name, formats[i].name) == 0) {
            *f = (ds_format)i;
            return 0;
        }
    char list[512] = "";
    for (int i = 1; i < DS_FMT_COUNT; i++) {
        strncat(list, formats[i].name, sizeof list - strlen(list) - 1);
        if (i + 1 < DS_FMT_COUNT) strncat(list, ", ", sizeof list - strlen(list) - 1);
    }
    return lm_errf(err, "unknown format '%s' (one of: %s)", name, list);
}

/* ---- question types ----------------------------------------------------- */

static const char *qtype_names[DS_Q_COUNT] = {"what", "how", "why", "other"};

const char *ds_qtype_name(ds_qtype t) {
    return t >= 0 && t < DS_Q_COUNT ? qtype_names[t] : "?";
}

int ds_qtype_parse(const char *name, ds_qtype *t) {
    for (int i = 0; i < DS_Q_COUNT; i++)
        if (strcmp(name, qtype_names[i]) == 0) {
            *t = (ds_qtype)i;
            return 0;
        }
    return -1;
}

/* Is the character ending at s[i-1] (or starting at s[i]) a regex \w?
 * ASCII follows the regex; other code points count as letters except
 * the usual punctuation blocks (so "¿como" still has a boundary). */
static int word_cp(uint32_t cp) {
    if (cp < 0x80) return isalnum((int)cp) || cp == '_';
    if (cp >= 0xA0 && cp <= 0xBF) return 0;            /* ¡ « » ¿ ... */
    if (cp >= 0x2000 && cp <= 0x206F) return 0;        /* general punctuation */
    if (cp >= 0x3000 && cp <= 0x303F) return 0;        /* CJK punctuation */
    if (cp >= 0xFF00 && cp <= 0xFF0F) return 0;        /* fullwidth punctuation */
    return 1;
}

static uint32_t decode_at(const unsigned char *s, size_t n, size_t i) {
    unsigned c = s[i];
    if (c < 0x80) return c;
    int k = (c & 0xE0) == 0xC0 ? 1 : (c & 0xF0) == 0xE0 ? 2 : (c & 0xF8) == 0xF0 ? 3 : 0;
    uint32_t cp = c & (0x3F >> k);
    for (int j = 1; j <= k && i + (size_t)j < n; j++) cp = (cp << 6) | (s[i + j] & 0x3F);
    return cp;
}

static uint32_t decode_before(const unsigned char *s, size_t n, size_t i) {
    size_t j = i - 1;
    while (j > 0 && (s[j] & 0xC0) == 0x80) j--;
    return decode_at(s, n, j);
}

static int has_word(const char *lower, size_t n, const char *w) {
    const unsigned char *s = (const unsigned char *)lower;
    size_t wl = strlen(w);
    for (const char *p = strstr(lower, w); p; p = strstr(p + 1, w)) {
        size_t i = (size_t)(p - lower);
        int left = i == 0 || !word_cp(decode_before(s, n, i));
        int right = i + wl >= n || !word_cp(decode_at(s, n, i + wl));
        if (left && right) return 1;
    }
    return 0;
}

ds_qtype ds_classify_question(const char *q) {
    if (!q) return DS_Q_OTHER;
    size_t n = strlen(q);
    char small[1024], *t = n < sizeof small ? small : malloc(n + 1);
    if (!t) return DS_Q_OTHER;
    for (size_t i = 0; i <= n; i++) t[i] = (char)tolower((unsigned char)q[i]);
    ds_qtype r = DS_Q_OTHER;
    if (has_word(t, n, "what") || strstr(t, "\xe4\xbb\x80\xe4\xb9\x88")) r = DS_Q_WHAT;
    else if (has_word(t, n, "how") || has_word(t, n, "como") ||
             strstr(t, "\xe5\xa6\x82\xe4\xbd\x95")) r = DS_Q_HOW;
    else if (has_word(t, n, "why")) r = DS_Q_WHY;
    if (t != small) free(t);
    return r;
}

/* ---- the format guess --------------------------------------------------- */

/* Case-insensitive substring of the path. */
static int name_has(const char *name, const char *w) {
    size_t n = strlen(name), k = strlen(w);
    for (size_t i = 0; i + k <= n; i++) {
        size_t j = 0;
        while (j < k && tolower((unsigned char)name[i + j]) == w[j]) j++;
        if (j == k) return 1;
    }
    return 0;
}

static ds_format guess_from_name(const char *name) {
    static const struct { const char *w; ds_format f; } hints[] = {
        {"mismatched", DS_FMT_MERASER_MISMATCHED}, {"recover", DS_FMT_MERASER_RECOVER},
        {"copa", DS_FMT_COPA}, {"rte", DS_FMT_RTE}, {"wsc", DS_FMT_WSC},
        {"boolq", DS_FMT_BOOLQ}, {"/cb/", DS_FMT_CB}, {"sciq", DS_FMT_SCIQ},
        {"dolly", DS_FMT_DOLLY}, {"alpaca", DS_FMT_ALPACA},
        {"guanaco", DS_FMT_GUANACO},
    };
    for (size_t i = 0; i < sizeof hints / sizeof hints[0]; i++)
        if (name_has(name, hints[i].w)) return hints[i].f;
    const char *base = strrchr(name, '/');
    base = base ? base + 1 : name;
    if (tolower((unsigned char)base[0]) == 'c' && tolower((unsigned char)base[1]) == 'b' &&
        (base[2] == '.' || base[2] == '_' || base[2] == '-'))
        return DS_FMT_CB;
    return DS_FMT_AUTO;
}

typedef struct guess_state {
    const char *name;
    ds_format fmt;
    int seen;
    char keys[200];
} guess_state;

static int has(const cJSON *o, const char *k) {
    return cJSON_GetObjectItemCaseSensitive(o, k) != NULL;
}

static int guess_record(ds_ctx *c, const cJSON *o, void *ud) {
    guess_state *g = ud;
    g->seen = 1;
    ds_format f = DS_FMT_AUTO;
    if (has(o, "messages")) f = DS_FMT_CHAT;
    else if (has(o, "mismatched_answer")) f = DS_FMT_MERASER_MISMATCHED;
    else if (has(o, "correct_answer") || has(o, "distractor1")) f = DS_FMT_SCIQ;
    else if (has(o, "choice1")) f = DS_FMT_COPA;
    else if (has(o, "target") && has(o, "text")) f = DS_FMT_WSC;
    else if (has(o, "passage")) f = DS_FMT_BOOLQ;
    else if (has(o, "hypothesis")) {
        const cJSON *l = cJSON_GetObjectItemCaseSensitive(o, "label");
        const char *s = cJSON_IsString(l) ? l->valuestring : "";
        if (strcmp(s, "not_entailment") == 0) f = DS_FMT_RTE;
        else if (strcmp(s, "contradiction") == 0 || strcmp(s, "neutral") == 0) f = DS_FMT_CB;
        else f = guess_from_name(g->name) == DS_FMT_CB ? DS_FMT_CB : DS_FMT_RTE;
    } else if (has(o, "instruction")) {
        f = has(o, "output") || has(o, "input") ? DS_FMT_ALPACA : DS_FMT_DOLLY;
    } else if (has(o, "question") && has(o, "answer")) f = DS_FMT_MERASER_RECOVER;
    else if (has(o, "text")) f = DS_FMT_GUANACO;
    g->fmt = f;
    if (f == DS_FMT_AUTO) {
        const cJSON *it;
        cJSON_ArrayForEach(it, o) {
            if (!it->string) continue;
            size_t used = strlen(g->keys);
            snprintf(g->keys + used, sizeof g->keys - used, "%s%s",
                     used ? ", " : "", it->string);
        }
    }
    (void)c;
    return -1; /* one record is enough: stop the walk */
}

int ds_guess_format_buffer(const char *name, const char *data, size_t len,
                           ds_format *fmt, lm_err *err) {
    size_t i = 0;
    while (i < len && (data[i] == ' ' || data[i] == '\t' || data[i] == '\n' || data[i] == '\r'))
        i++;
    if (i == len) return lm_errf(err, "%s: empty file, cannot guess its format", name);
    if (data[i] != '{' && data[i] != '[') {
        *fmt = strncmp(data + i, "### Human:", 10) == 0 ? DS_FMT_GUANACO : DS_FMT_TEXT;
        return 0;
    }
    guess_state g = {name, DS_FMT_AUTO, 0, ""};
    ds_dataset scratch = {0};
    lm_err e2 = {{0}};
    ds_ctx c = {name, 1, &e2, &scratch, 0, NULL};
    ds_walk_json(&c, data, len, -1, guess_record, &g);
    ds_free(&scratch);
    if (g.seen && g.fmt != DS_FMT_AUTO) {
        *fmt = g.fmt;
        return 0;
    }
    ds_format hint = guess_from_name(name);
    if (hint != DS_FMT_AUTO) {
        *fmt = hint;
        return 0;
    }
    if (g.seen)
        return lm_errf(err, "%s: cannot guess the format from the keys (%s); pass --format",
                       name, g.keys);
    return lm_errf(err, "cannot guess the format: %s", e2.msg);
}

int ds_guess_format(const char *path, ds_format *fmt, lm_err *err) {
    char *data;
    size_t len;
    if (ds_read_file(path, &data, &len, err)) return -1;
    int rc = ds_guess_format_buffer(path, data, len, fmt, err);
    free(data);
    return rc;
}

/* ---- loading ------------------------------------------------------------ */

static int load_core(const char *name, const char *data, size_t len,
                     ds_format fmt, ds_dataset *ds, int lenient, lm_err *err) {
    memset(ds, 0, sizeof *ds);
    if (fmt == DS_FMT_AUTO && ds_guess_format_buffer(name, data, len, &fmt, err))
        return -1;
    if (fmt <= DS_FMT_AUTO || fmt >= DS_FMT_COUNT)
        return lm_errf(err, "%s: unknown format %d", name, (int)fmt);
    ds->format = fmt;
    ds->kind = formats[fmt].kind;
    ds_ctx c = {name, 1, err, ds, lenient, NULL};
    int rc;
    if (fmt == DS_FMT_TEXT) {
        rc = ds_parse_text(&c, data, len);
    } else if (fmt == DS_FMT_GUANACO) {
        size_t i = 0;
        while (i < len && (data[i] == ' ' || data[i] == '\n' || data[i] == '\r' || data[i] == '\t'))
            i++;
        rc = i < len && (data[i] == '{' || data[i] == '[')
                 ? ds_walk_json(&c, data, len, -1, ds_parse_qa, &fmt)
                 : ds_parse_guanaco_lines(&c, data, len);
    } else {
        rc = ds_walk_json(&c, data, len, -1,
                          ds->kind == DS_KIND_MC ? ds_parse_mc : ds_parse_qa, &fmt);
    }
    if (rc == 0 && ds->n == 0 && ds->n_bad == 0)
        rc = lm_errf(err, "%s: no records", name);
    if (rc && lenient) {
        /* a problem that ended the scan: keep what was read */
        if (ds->n_bad++ == 0 && err) memcpy(ds->problem, err->msg, sizeof ds->problem);
        rc = 0;
    }
    if (rc) ds_free(ds);
    return rc;
}

int ds_load_buffer(const char *name, const char *data, size_t len,
                   ds_format fmt, ds_dataset *ds, lm_err *err) {
    return load_core(name, data, len, fmt, ds, 0, err);
}

int ds_load(const char *path, ds_format fmt, ds_dataset *ds, lm_err *err) {
    memset(ds, 0, sizeof *ds);
    char *data;
    size_t len;
    if (ds_read_file(path, &data, &len, err)) return -1;
    int rc = load_core(path, data, len, fmt, ds, 0, err);
    free(data);
    return rc;
}

int ds_check(const char *path, ds_format fmt, ds_dataset *ds, lm_err *err) {
    memset(ds, 0, sizeof *ds);
    lm_err local = {{0}};
    if (!err) err = &local;
    char *data;
    size_t len;
    if (ds_read_file(path, &data, &len, err)) return -1;
    if (fmt == DS_FMT_AUTO && ds_guess_format_buffer(path, data, len, &fmt, err)) {
        free(data);
        return -1;
    }
    int rc = load_core(path, data, len, fmt, ds, 1, err);
    free(data);
    return rc;
}

void ds_free(ds_dataset *ds) {
    if (!ds) return;
    free(ds->mc);
    free(ds->qa);
    free(ds->docs);
    ds_arena_free(&ds->arena);
    ds->mc = NULL;
    ds->qa = NULL;
    ds->docs = NULL;
    ds->n = ds->cap = 0;
}
