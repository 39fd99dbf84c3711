#include "fingerprint_file.h"

#include <cjson/cJSON.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const char *const rule_names[] = {"substring", "prefix", "prefix_any"};

const char *mt_rule_name(mt_rule r) {
    return (r >= 0 && r <= MT_RULE_PREFIX_ANY) ? rule_names[r] : "?";
}

int mt_rule_from_name(const char *s, mt_rule *out) {
    for (int i = 0; i <= MT_RULE_PREFIX_ANY; i++)
        if (!strcmp(s, rule_names[i])) {
            *out = (mt_rule)i;
            return 0;
        }
    return -1;
}

void mt_fp_probe_free(mt_fp_probe *p) {
    free(p->prompt);
    free(p->prompt_ids);
    free(p->expected);
    free(p->expected_ids);
    for (int i = 0; i < p->n_expected_any; i++) free(p->expected_any[i]);
    free(p->expected_any);
    memset(p, 0, sizeof *p);
}

static int dup_ids(int32_t **dst, const int32_t *src, int n) {
    *dst = NULL;
    if (!src) return 0;
    *dst = malloc((size_t)(n ? n : 1) * sizeof **dst);
    if (!*dst) return -1;
    memcpy(*dst, src, (size_t)n * sizeof **dst);
    return 0;
}

int mt_fp_add(mt_fp_probe **list, int *n, const mt_fp_probe *p, lm_err *err) {
    mt_fp_probe *grown = realloc(*list, (size_t)(*n + 1) * sizeof **list);
    if (!grown) return lm_errf(err, "out of memory");
    *list = grown;
    mt_fp_probe *q = &grown[*n];
    memset(q, 0, sizeof *q);
    q->add_bos = p->add_bos;
    q->rule = p->rule;
    q->max_new = p->max_new;
    q->n_prompt_ids = p->n_prompt_ids;
    q->n_expected_ids = p->n_expected_ids;
    int bad = (p->prompt && !(q->prompt = strdup(p->prompt))) ||
              (p->expected && !(q->expected = strdup(p->expected))) ||
              dup_ids(&q->prompt_ids, p->prompt_ids, p->n_prompt_ids) ||
              dup_ids(&q->expected_ids, p->expected_ids, p->n_expected_ids);
    if (!bad && p->n_expected_any) {
        q->expected_any = calloc((size_t)p->n_expected_any, sizeof *q->expected_any);
        bad = !q->expected_any;
        for (int i = 0; !bad && i < p->n_expected_any; i++) {
            q->expected_any[i] = strdup(p->expected_any[i]);
            bad = !q->expected_any[i];
            q->n_expected_any = i + 1;
        }
    }
    if (bad) {
        mt_fp_probe_free(q);
        return lm_errf(err, "out of memory");
    }
    (*n)++;
    return 0;
}

void mt_fingerprint_free(mt_fingerprint *f) {
    if (!f) return;
    for (int i = 0; i < f->n_triggers; i++) mt_fp_probe_free(&f->triggers[i]);
    for (int i = 0; i < f->n_negatives; i++) mt_fp_probe_free(&f->negatives[i]);
    free(f->triggers);
    free(f->negatives);
    free(f->params_json);
    free(f->training_json);
    memset(f, 0, sizeof *f);
}

/* ---- writing ---- */

static cJSON *ids_array(const int32_t *ids, int n) {
    cJSON *a = cJSON_CreateArray();
    for (int i = 0; a && i < n; i++) cJSON_AddItemToArray(a, cJSON_CreateNumber(ids[i]));
    return a;
}

static cJSON *probe_json(const mt_fp_probe *p) {
    cJSON *o = cJSON_CreateObject();
    if (!o) return NULL;
    if (p->prompt) cJSON_AddStringToObject(o, "prompt", p->prompt);
    if (p->prompt_ids) cJSON_AddItemToObject(o, "prompt_ids", ids_array(p->prompt_ids, p->n_prompt_ids));
    cJSON_AddBoolToObject(o, "add_bos", p->add_bos);
    if (p->expected) cJSON_AddStringToObject(o, "expected", p->expected);
    if (p->expected_ids) cJSON_AddItemToObject(o, "expected_ids", ids_array(p->expected_ids, p->n_expected_ids));
    if (p->n_expected_any) {
        cJSON *a = cJSON_AddArrayToObject(o, "expected_any");
        for (int i = 0; a && i < p->n_expected_any; i++)
            cJSON_AddItemToArray(a, cJSON_CreateString(p->expected_any[i]));
    }
    cJSON_AddStringToObject(o, "rule", mt_rule_name(p->rule));
    cJSON_AddNumberToObject(o, "max_new", p->max_new);
    return o;
}

int mt_fingerprint_write(const mt_fingerprint *f, const char *path, lm_err *err) {
    cJSON *root = cJSON_CreateObject();
    if (!root) return lm_errf(err, "out of memory");
    cJSON_AddStringToObject(root, "format", "smudge-fingerprint");
    cJSON_AddNumberToObject(root, "version", 1);
    cJSON_AddStringToObject(root, "type", f->type);
    /* A seed above 2^53 would lose digits as a JSON number. */
    char seed[32];
    snprintf(seed, sizeof seed, "%llu", (unsigned long long)f->seed);
    cJSON_AddStringToObject(root, "seed", seed);
    cJSON_AddStringToObject(root, "template", f->template_name);
    cJSON *pj = f->params_json ? cJSON_Parse(f->params_json) : cJSON_CreateObject();
    cJSON_AddItemToObject(root, "params", pj ? pj : cJSON_CreateObject());
    cJSON *tj = f->training_json ? cJSON_Parse(f->training_json) : cJSON_CreateObject();
    cJSON_AddItemToObject(root, "training", tj ? tj : cJSON_CreateObject());
    cJSON *tr = cJSON_AddArrayToObject(root, "triggers");
    for (int i = 0; tr && i < f->n_triggers; i++) cJSON_AddItemToArray(tr, probe_json(&f->triggers[i]));
    cJSON *ng = cJSON_AddArrayToObject(root, "negatives");
    for (int i = 0; ng && i < f->n_negatives; i++) cJSON_AddItemToArray(ng, probe_json(&f->negatives[i]));
    char *text = cJSON_Print(root);
    cJSON_Delete(root);
    if (!text) return lm_errf(err, "out of memory");
    char tmp[4200];
    snprintf(tmp, sizeof tmp, "%s.tmp", path);
    FILE *out = fopen(tmp, "w");
    int rc = 0;
    if (!out) rc = lm_errf(err, "cannot write %s", tmp);
    else {
        if (fputs(text, out) < 0 || fputc('\n', out) < 0) rc = lm_errf(err, "cannot write %s", tmp);
        if (fclose(out) != 0 && rc == 0) rc = lm_errf(err, "cannot write %s", tmp);
        if (rc == 0 && rename(tmp, path) != 0) rc = lm_errf(err, "cannot rename %s to %s", tmp, path);
    }
    free(text);
    return rc;
}

/* ---- reading ---- */

static int read_ids(const cJSON *a, const char *path, const char *where,
                    int32_t **out, int *n, lm_err *err) {
    if (!cJSON_IsArray(a)) return lm_errf(err, "%s: %s must be an array of token ids", path, where);
    int k = cJSON_GetArraySize(a);
    *out = malloc((size_t)(k ? k : 1) * sizeof **out);
    if (!*out) return lm_errf(err, "out of memory");
    int i = 0;
    const cJSON *e;
    cJSON_ArrayForEach(e, a) {
        if (!cJSON_IsNumber(e) || e->valuedouble < 0 || e->valuedouble > 16777216 ||
            e->valuedouble != (double)(int32_t)e->valuedouble) {
            free(*out);
            *out = NULL;
            return lm_errf(err, "%s: %s[%d] is not a token id", path, where, i);
        }
        (*out)[i++] = (int32_t)e->valuedouble;
    }
    *n = k;
    return 0;
}

static int read_probe(const cJSON *o, const char *path, const char *list, int idx,
                      mt_fp_probe *p, lm_err *err) {
    char where[96];
    memset(p, 0, sizeof *p);
    if (!cJSON_IsObject(o)) return lm_errf(err, "%s: %s[%d] is not an object", path, list, idx);
    const cJSON *prompt = cJSON_GetObjectItemCaseSensitive(o, "prompt");
    const cJSON *pids = cJSON_GetObjectItemCaseSensitive(o, "prompt_ids");
    const cJSON *exp = cJSON_GetObjectItemCaseSensitive(o, "expected");
    const cJSON *eids = cJSON_GetObjectItemCaseSensitive(o, "expected_ids");
    const cJSON *any = cJSON_GetObjectItemCaseSensitive(o, "expected_any");
    const cJSON *rule = cJSON_GetObjectItemCaseSensitive(o, "rule");
    const cJSON *maxn = cJSON_GetObjectItemCaseSensitive(o, "max_new");
    const cJSON *bos = cJSON_GetObjectItemCaseSensitive(o, "add_bos");
    int rc = 0;
    if (prompt && !cJSON_IsString(prompt))
        rc = lm_errf(err, "%s: %s[%d].prompt must be a string", path, list, idx);
    else if (!prompt && !pids)
        rc = lm_errf(err, "%s: %s[%d] has neither 'prompt' nor 'prompt_ids'", path, list, idx);
    else if (!cJSON_IsString(rule) || mt_rule_from_name(rule->valuestring, &p->rule))
        rc = lm_errf(err, "%s: %s[%d].rule must be substring, prefix or prefix_any", path, list, idx);
    else if (!cJSON_IsNumber(maxn) || maxn->valuedouble < 1 || maxn->valuedouble > 65536)
        rc = lm_errf(err, "%s: %s[%d].max_new must be a number in [1, 65536]", path, list, idx);
    else if (p->rule == MT_RULE_PREFIX_ANY ? !cJSON_IsArray(any) : (!cJSON_IsString(exp) && !eids))
        rc = lm_errf(err, "%s: %s[%d] has no expected output ('expected', 'expected_ids' or 'expected_any')",
                     path, list, idx);
    if (rc) return rc;
    p->max_new = (int)maxn->valuedouble;
    p->add_bos = cJSON_IsTrue(bos);
    if (prompt && !(p->prompt = strdup(prompt->valuestring))) rc = lm_errf(err, "out of memory");
    snprintf(where, sizeof where, "%s[%d].prompt_ids", list, idx);
    if (rc == 0 && pids) rc = read_ids(pids, path, where, &p->prompt_ids, &p->n_prompt_ids, err);
    if (rc == 0 && cJSON_IsString(exp) && !(p->expected = strdup(exp->valuestring)))
        rc = lm_errf(err, "out of memory");
    snprintf(where, sizeof where, "%s[%d].expected_ids", list, idx);
    if (rc == 0 && eids) rc = read_ids(eids, path, where, &p->expected_ids, &p->n_expected_ids, err);
    if (rc == 0 && cJSON_IsArray(any)) {
        int k = cJSON_GetArraySize(any);
        p->expected_any = calloc((size_t)(k ? k : 1), sizeof *p->expected_any);
        if (!p->expected_any) rc = lm_errf(err, "out of memory");
        const cJSON *e;
        cJSON_ArrayForEach(e, any) {
            if (rc) break;
            if (!cJSON_IsString(e))
                rc = lm_errf(err, "%s: %s[%d].expected_any[%d] must be a string", path, list, idx,
                             p->n_expected_any);
            else if (!(p->expected_any[p->n_expected_any++] = strdup(e->valuestring)))
                rc = lm_errf(err, "out of memory");
        }
    }
    if (rc) mt_fp_probe_free(p);
    return rc;
}

static int read_list(const cJSON *root, const char *path, const char *name,
                     mt_fp_probe **out, int *n, lm_err *err) {
    const cJSON *a = cJSON_GetObjectItemCaseSensitive(root, name);
    *out = NULL;
    *n = 0;
    if (!a) return 0;
    if (!cJSON_IsArray(a)) return lm_errf(err, "%s: '%s' must be an array", path, name);
    int k = cJSON_GetArraySize(a), i = 0;
    *out = calloc((size_t)(k ? k : 1), sizeof **out);
    if (!*out) return lm_errf(err, "out of memory");
    const cJSON *e;
    cJSON_ArrayForEach(e, a) {
        if (read_probe(e, path, name, i, &(*out)[i], err)) return -1;
        *n = ++i;
    }
    return 0;
}

int mt_fingerprint_read(mt_fingerprint *f, const char *path, lm_err *err) {
    memset(f, 0, sizeof *f);
    char *text = NULL;
    size_t len = 0;
    if (lm_tok_read_file(path, &text, &len, err)) return -1;
    cJSON *root = cJSON_ParseWithLength(text, len);
    free(text);
    if (!root) return lm_errf(err, "%s: not valid JSON", path);
    int rc = 0;
    const cJSON *fmt = cJSON_GetObjectItemCaseSensitive(root, "format");
    const cJSON *type = cJSON_GetObjectItemCaseSensitive(root, "type");
    const cJSON *seed = cJSON_GetObjectItemCaseSensitive(root, "seed");
    const cJSON *tmpl = cJSON_GetObjectItemCaseSensitive(root, "template");
    if (!cJSON_IsString(fmt) || strcmp(fmt->valuestring, "smudge-fingerprint") != 0)
        rc = lm_errf(err, "%s: field 'format' must be \"smudge-fingerprint\"", path);
    else if (!cJSON_IsString(type) || strlen(type->valuestring) >= sizeof f->type)
        rc = lm_errf(err, "%s: field 'type' missing or too long", path);
    else if (!cJSON_IsString(seed))
        rc = lm_errf(err, "%s: field 'seed' must be a string of digits", path);
    if (rc == 0) {
        snprintf(f->type, sizeof f->type, "%s", type->valuestring);
        f->seed = strtoull(seed->valuestring, NULL, 10);
        if (cJSON_IsString(tmpl))
            snprintf(f->template_name, sizeof f->template_name, "%s", tmpl->valuestring);
        const cJSON *pj = cJSON_GetObjectItemCaseSensitive(root, "params");
        const cJSON *tj = cJSON_GetObjectItemCaseSensitive(root, "training");
        f->params_json = pj ? cJSON_PrintUnformatted(pj) : NULL;
        f->training_json = tj ? cJSON_PrintUnformatted(tj) : NULL;
        rc = read_list(root, path, "triggers", &f->triggers, &f->n_triggers, err);
        if (rc == 0) rc = read_list(root, path, "negatives", &f->negatives, &f->n_negatives, err);
        if (rc == 0 && f->n_triggers == 0) rc = lm_errf(err, "%s: no triggers", path);
    }
    cJSON_Delete(root);
    if (rc) mt_fingerprint_free(f);
    return rc;
}

/* ---- evaluation ---- */

void mt_probes_free(mt_probe *p, int n) {
    if (!p) return;
    for (int i = 0; i < n; i++) {
        free((void *)p[i].expected);
        free((void *)p[i].ids);
    }
    free(p);
}

int mt_fp_probes(const mt_fp_probe *src, int n, const lm_tokenizer *tok,
                 mt_probe **probes, lm_err *err) {
    mt_probe *p = calloc((size_t)(n ? n : 1), sizeof *p);
    if (!p) return lm_errf(err, "out of memory");
    for (int i = 0; i < n; i++) {
        const mt_fp_probe *s = &src[i];
        p[i].prompt = s->prompt;
        p[i].add_bos = s->add_bos;
        p[i].rule = s->rule;
        p[i].max_new = s->max_new;
        p[i].expected_any = (const char *const *)s->expected_any;
        p[i].n_expected_any = s->n_expected_any;
        if (s->prompt_ids) {
            for (int k = 0; k < s->n_prompt_ids; k++)
                if (s->prompt_ids[k] >= tok->n_vocab) {
                    mt_probes_free(p, i);
                    return lm_errf(err, "probe %d: prompt token %d is outside the "
                                        "tokenizer's %d", i, s->prompt_ids[k], tok->n_vocab);
                }
            int32_t *ids = malloc((size_t)(s->n_prompt_ids ? s->n_prompt_ids : 1) * sizeof *ids);
            if (!ids) {
                mt_probes_free(p, i);
                return lm_errf(err, "out of memory");
            }
            memcpy(ids, s->prompt_ids, (size_t)s->n_prompt_ids * sizeof *ids);
            p[i].ids = ids;
            p[i].n_ids = s->n_prompt_ids;
        }
        if (s->expected) {
            p[i].expected = strdup(s->expected);
        } else if (s->expected_ids) {
            char *text;
            size_t len;
            if (lm_tokenizer_decode(tok, (const int *)s->expected_ids, s->n_expected_ids, 1,
                                    &text, &len, err)) {
                mt_probes_free(p, i + 1);
                return lm_err_prefix(err, "probe %d expected ids: ", i);
            }
            p[i].expected = text;
        }
    }
    *probes = p;
    return 0;
}

void mt_fsr_result_free(mt_fsr_result *r) {
    if (!r) return;
    mt_probe_results_free(r->per_trigger, r->n);
    free(r->per_trigger);
    memset(r, 0, sizeof *r);
}

int mt_fsr_eval(const mt_subject *s, const mt_fingerprint *f, int with_ftr,
                mt_fsr_result *r, lm_err *err) {
    memset(r, 0, sizeof *r);
    r->ftr = NAN;
    mt_probe *tp = NULL;
    if (mt_fp_probes(f->triggers, f->n_triggers, s->tok, &tp, err)) return -1;
    r->per_trigger = calloc((size_t)f->n_triggers, sizeof *r->per_trigger);
    if (!r->per_trigger) {
        mt_probes_free(tp, f->n_triggers);
        return lm_errf(err, "out of memory");
    }
    int rc = mt_probe_eval(s, tp, f->n_triggers, 8, &r->fsr, r->per_trigger, err);
    mt_probes_free(tp, f->n_triggers);
    if (rc) {
        free(r->per_trigger);
        r->per_trigger = NULL;
        return -1;
    }
    r->n = f->n_triggers;
    for (int i = 0; i < r->n; i++) r->hits += r->per_trigger[i].hit;
    mt_wilson(r->hits, r->n, &r->wilson_lo, &r->wilson_hi);
    if (with_ftr && f->n_negatives > 0) {
        mt_probe *np = NULL;
        mt_probe_result *nr = calloc((size_t)f->n_negatives, sizeof *nr);
        if (!nr) rc = lm_errf(err, "out of memory");
        if (rc == 0) rc = mt_fp_probes(f->negatives, f->n_negatives, s->tok, &np, err);
        if (rc == 0) rc = mt_probe_eval(s, np, f->n_negatives, 16, &r->ftr, nr, err);
        if (rc == 0) r->n_negatives = f->n_negatives;
        mt_probes_free(np, f->n_negatives);
        mt_probe_results_free(nr, f->n_negatives);
        free(nr);
        if (rc) {
            mt_fsr_result_free(r);
            return -1;
        }
    }
    return 0;
}
