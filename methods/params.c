/* Parameter validation: every assignment is checked against the method's
 * table before anything runs, so a typo fails in a second, not an hour in. */
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "method.h"

static const char *type_name(sm_param_type t) {
    switch (t) {
    case SM_PARAM_INT: return "an integer";
    case SM_PARAM_FLOAT: return "a number";
    case SM_PARAM_BOOL: return "true or false";
    case SM_PARAM_STRING: return "a string";
    case SM_PARAM_CHOICE: return "one of the choices";
    }
    return "?";
}

static int choice_ok(const char *choices, const char *v) {
    size_t n = strlen(v);
    for (const char *p = choices; p && *p;) {
        const char *bar = strchr(p, '|');
        size_t len = bar ? (size_t)(bar - p) : strlen(p);
        if (len == n && strncmp(p, v, n) == 0) return 1;
        p = bar ? bar + 1 : NULL;
    }
    return 0;
}

static int set_value(const sm_method *m, const sm_param_def *d, const char *text,
                     sm_param_value *v, lm_err *err) {
    v->name = d->name;
    v->type = d->type;
    char *end;
    errno = 0;
    switch (d->type) {
    case SM_PARAM_INT: {
        long long x = strtoll(text, &end, 10);
        if (errno || end == text || *end)
            return lm_errf(err, "%s: parameter '%s' must be %s, got '%s'", m->name,
                           d->name, type_name(d->type), text);
        if ((double)x < d->min || (double)x > d->max)
            return lm_errf(err, "%s: parameter '%s' = %lld is outside [%g, %g]",
                           m->name, d->name, x, d->min, d->max);
        v->i = x;
        v->f = (double)x;
        break;
    }
    case SM_PARAM_FLOAT: {
        double x = strtod(text, &end);
        if (errno || end == text || *end || !isfinite(x))
            return lm_errf(err, "%s: parameter '%s' must be %s, got '%s'", m->name,
                           d->name, type_name(d->type), text);
        if (x < d->min || x > d->max)
            return lm_errf(err, "%s: parameter '%s' = %g is outside [%g, %g]",
                           m->name, d->name, x, d->min, d->max);
        v->f = x;
        break;
    }
    case SM_PARAM_BOOL:
        if (!strcmp(text, "true") || !strcmp(text, "1")) v->b = 1;
        else if (!strcmp(text, "false") || !strcmp(text, "0")) v->b = 0;
        else
            return lm_errf(err, "%s: parameter '%s' must be true or false, got '%s'",
                           m->name, d->name, text);
        break;
    case SM_PARAM_CHOICE:
        if (!choice_ok(d->choices, text))
            return lm_errf(err, "%s: parameter '%s' must be one of %s, got '%s'",
                           m->name, d->name, d->choices ? d->choices : "(none)", text);
        /* a choice is stored as its text */
        __attribute__((fallthrough));
    case SM_PARAM_STRING:
        if (strlen(text) >= SM_PARAM_STR)
            return lm_errf(err, "%s: parameter '%s' is longer than %d bytes", m->name,
                           d->name, SM_PARAM_STR - 1);
        break;
    }
    snprintf(v->s, sizeof v->s, "%s", text);
    return 0;
}

int sm_params_parse(const sm_method *m, const char *const *assignments, int n,
                    sm_params *out, lm_err *err) {
    memset(out, 0, sizeof *out);
    if (m->n_params > SM_MAX_PARAMS)
        return lm_errf(err, "%s: too many parameters", m->name);
    out->n = m->n_params;
    for (int i = 0; i < m->n_params; i++)
        if (set_value(m, &m->params[i], m->params[i].def, &out->v[i], err)) return -1;
    int seen[SM_MAX_PARAMS] = {0};
    for (int k = 0; k < n; k++) {
        const char *a = assignments[k];
        const char *eq = strchr(a, '=');
        if (!eq || eq == a)
            return lm_errf(err, "%s: '%s' is not NAME=VALUE", m->name, a);
        size_t len = (size_t)(eq - a);
        int found = -1;
        for (int i = 0; i < m->n_params; i++)
            if (strlen(m->params[i].name) == len && !strncmp(m->params[i].name, a, len))
                found = i;
        if (found < 0) {
            char list[512] = "";
            for (int i = 0; i < m->n_params; i++) {
                strncat(list, i ? ", " : "", sizeof list - strlen(list) - 1);
                strncat(list, m->params[i].name, sizeof list - strlen(list) - 1);
            }
            return lm_errf(err, "%s has no parameter '%.*s' (it has: %s)", m->name,
                           (int)len, a, m->n_params ? list : "none");
        }
        if (seen[found]++)
            return lm_errf(err, "%s: parameter '%s' given twice", m->name,
                           m->params[found].name);
        if (set_value(m, &m->params[found], eq + 1, &out->v[found], err)) return -1;
    }
    return 0;
}

const sm_param_value *sm_param(const sm_params *p, const char *name) {
    for (int i = 0; i < p->n; i++)
        if (!strcmp(p->v[i].name, name)) return &p->v[i];
    return NULL;
}

/* The typed getters assume the name is in the method's own table: asking
 * for a parameter the method did not declare is a programming error, and
 * yields zero rather than a crash. */
int64_t sm_param_int(const sm_params *p, const char *name) {
    const sm_param_value *v = sm_param(p, name);
    return v ? v->i : 0;
}
double sm_param_float(const sm_params *p, const char *name) {
    const sm_param_value *v = sm_param(p, name);
    return v ? (v->type == SM_PARAM_INT ? (double)v->i : v->f) : 0.0;
}
int sm_param_bool(const sm_params *p, const char *name) {
    const sm_param_value *v = sm_param(p, name);
    return v ? v->b : 0;
}
const char *sm_param_str(const sm_params *p, const char *name) {
    const sm_param_value *v = sm_param(p, name);
    return v ? v->s : "";
}

static void json_escape(char *dst, size_t cap, const char *s) {
    size_t o = 0;
    for (; *s && o + 7 < cap; s++) {
        unsigned char c = (unsigned char)*s;
        if (c == '"' || c == '\\') { dst[o++] = '\\'; dst[o++] = (char)c; }
        else if (c < 0x20) o += (size_t)snprintf(dst + o, cap - o, "\\u%04x", c);
        else dst[o++] = (char)c;
    }
    dst[o] = '\0';
}

int sm_params_json(const sm_params *p, char *buf, size_t cap) {
    /* Sorted by name so equal assignments give equal text (and hashes). */
    int order[SM_MAX_PARAMS];
    for (int i = 0; i < p->n; i++) order[i] = i;
    for (int i = 1; i < p->n; i++)
        for (int j = i; j > 0 && strcmp(p->v[order[j - 1]].name, p->v[order[j]].name) > 0; j--) {
            int t = order[j]; order[j] = order[j - 1]; order[j - 1] = t;
        }
    size_t o = 0;
    o += (size_t)snprintf(buf + o, o < cap ? cap - o : 0, "{");
    for (int k = 0; k < p->n; k++) {
        const sm_param_value *v = &p->v[order[k]];
        char esc[2 * SM_PARAM_STR];
        o += (size_t)snprintf(buf + o, o < cap ? cap - o : 0, "%s\"%s\":", k ? "," : "", v->name);
        switch (v->type) {
        case SM_PARAM_INT: o += (size_t)snprintf(buf + o, o < cap ? cap - o : 0, "%lld", (long long)v->i); break;
        case SM_PARAM_FLOAT: o += (size_t)snprintf(buf + o, o < cap ? cap - o : 0, "%.17g", v->f); break;
        case SM_PARAM_BOOL: o += (size_t)snprintf(buf + o, o < cap ? cap - o : 0, "%s", v->b ? "true" : "false"); break;
        default:
            json_escape(esc, sizeof esc, v->s);
            o += (size_t)snprintf(buf + o, o < cap ? cap - o : 0, "\"%s\"", esc);
        }
    }
    o += (size_t)snprintf(buf + o, o < cap ? cap - o : 0, "}");
    return o < cap ? 0 : -1;
}
