#include "cli.h"

#include <errno.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static cli_opt *find_opt(cli_opt *opts, const char *name, size_t len) {
    for (cli_opt *o = opts; o->name; o++)
        if (strlen(o->name) == len && strncmp(o->name, name, len) == 0)
            return o;
    return NULL;
}

int cli_parse(int argc, char **argv, int first, cli_opt *opts,
              const char **pos, int max_pos, int *n_pos, lm_err *err) {
    int np = 0;
    for (int i = first; i < argc; i++) {
        const char *a = argv[i];
        if (strncmp(a, "--", 2) != 0 || a[2] == '\0') {
            if (np >= max_pos)
                return lm_errf(err, "unexpected argument '%s'", a);
            pos[np++] = a;
            continue;
        }
        /* --name=value is accepted as well as --name value */
        const char *eq = strchr(a, '=');
        size_t len = eq ? (size_t)(eq - a) : strlen(a);
        cli_opt *o = find_opt(opts, a, len);
        if (!o) return lm_errf(err, "unknown option '%.*s' (see --help)",
                               (int)len, a);
        o->seen = 1;
        if (!o->takes_value) {
            if (eq) return lm_errf(err, "%s takes no value", o->name);
            o->value = "1";
        } else if (eq) {
            o->value = eq + 1;
        } else {
            if (i + 1 >= argc)
                return lm_errf(err, "%s needs a value", o->name);
            o->value = argv[++i];
        }
    }
    if (n_pos) *n_pos = np;
    return 0;
}

const char *cli_get(const cli_opt *opts, const char *name) {
    for (const cli_opt *o = opts; o->name; o++)
        if (strcmp(o->name, name) == 0) return o->value;
    return NULL;
}

bool cli_has(const cli_opt *opts, const char *name) {
    for (const cli_opt *o = opts; o->name; o++)
        if (strcmp(o->name, name) == 0) return o->seen;
    return false;
}

bool cli_wants_help(int argc, char **argv, int first) {
    for (int i = first; i < argc; i++)
        if (strcmp(argv[i], "-h") == 0 || strcmp(argv[i], "--help") == 0)
            return true;
    return false;
}

int cli_int(const char *opt, const char *s, long lo, long hi, long *out,
            lm_err *err) {
    char *end;
    errno = 0;
    long v = strtol(s, &end, 10);
    if (errno || end == s || *end != '\0')
        return lm_errf(err, "%s: '%s' is not an integer", opt, s);
    if (v < lo || v > hi)
        return lm_errf(err, "%s: %ld is outside [%ld, %ld]", opt, v, lo, hi);
    *out = v;
    return 0;
}

int cli_float(const char *opt, const char *s, double *out, lm_err *err) {
    char *end;
    errno = 0;
    double v = strtod(s, &end);
    if (errno || end == s || *end != '\0')
        return lm_errf(err, "%s: '%s' is not a number", opt, s);
    *out = v;
    return 0;
}

int cli_int_list(const char *opt, const char *s, int32_t **out, int *n,
                 lm_err *err) {
    int cap = 16, cnt = 0;
    int32_t *v = malloc((size_t)cap * sizeof *v);
    if (!v) return lm_errf(err, "out of memory");
    const char *p = s;
    while (*p) {
        char *end;
        errno = 0;
        long x = strtol(p, &end, 10);
        if (errno || end == p || x < INT32_MIN || x > INT32_MAX) {
            free(v);
            return lm_errf(err, "%s: item %d of '%s' is not an integer", opt,
                           cnt + 1, s);
        }
        if (cnt == cap) {
            int32_t *nv = realloc(v, (size_t)(cap *= 2) * sizeof *v);
            if (!nv) {
                free(v);
                return lm_errf(err, "out of memory");
            }
            v = nv;
        }
        v[cnt++] = (int32_t)x;
        p = end;
        while (*p == ' ') p++;
        if (*p == ',') p++;
        else if (*p) {
            free(v);
            return lm_errf(err, "%s: expected ',' after item %d of '%s'", opt,
                           cnt, s);
        }
    }
    *out = v;
    *n = cnt;
    return 0;
}

bool cli_progress_enabled(void) { return isatty(STDERR_FILENO); }
