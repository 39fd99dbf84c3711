#include "evaluate.h"

#include <cjson/cJSON.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "dataset.h"
#include "fingerprint_file.h"
#include "method.h"
#include "metrics.h"
#include "model_io.h"
#include "zoo.h"

static const char known[] = "fsr,ftr,ppl,sciq,copa,rte,boolq,wsc";

const char *su_eval_known_metrics(void) { return known; }

void su_eval_result_free(su_eval_result *r) {
    if (!r) return;
    free(r->trigger_hits);
    memset(r, 0, sizeof *r);
}

static int add_value(su_eval_result *r, const char *name, double v, long n,
                     const char *source, lm_err *err) {
    if (r->n == SU_EVAL_MAX) return lm_errf(err, "too many metric values");
    su_metric_value *m = &r->v[r->n];
    snprintf(m->name, sizeof m->name, "%s", name);
    m->value = v;
    m->n = n;
    snprintf(r->source[r->n], sizeof r->source[0], "%s", source ? source : "");
    r->n++;
    return 0;
}

/* Each task: its name, where it lives in the world, and its format. */
static const struct task {
    const char *name, *world_rel;
    ds_format fmt;
} tasks[] = {
    {"sciq", "sciq/test.json", DS_FMT_SCIQ},
    {"copa", "superglue/COPA/test.jsonl", DS_FMT_COPA},
    {"rte", "superglue/RTE/test.jsonl", DS_FMT_RTE},
    {"boolq", "superglue/BoolQ/test.jsonl", DS_FMT_BOOLQ},
    {"wsc", "superglue/WSC/test.jsonl", DS_FMT_WSC},
};

static const char *data_for(const su_eval_opts *o, const char *name) {
    for (int i = 0; i < o->n_data; i++)
        if (!strcmp(o->data_name[i], name)) return o->data_path[i];
    return NULL;
}

static int mc_task(const mt_subject *s, const struct task *t, const char *path,
                   ds_format fmt, int max_items, su_eval_result *r, lm_err *err) {
    ds_dataset ds;
    if (ds_load(path, fmt, &ds, err)) return -1;
    if (ds.kind != DS_KIND_MC) {
        ds_free(&ds);
        return lm_errf(err, "%s: %s is not a multiple-choice format", path, ds_format_name(ds.format));
    }
    int n = max_items > 0 && ds.n > max_items ? max_items : ds.n;
    mt_mc_item *items = calloc((size_t)(n ? n : 1), sizeof *items);
    int rc = items ? 0 : lm_errf(err, "out of memory");
    for (int i = 0; rc == 0 && i < n; i++) {
        items[i].context = (char *)ds.mc[i].context;
        for (int c = 0; c < ds.mc[i].n_choices; c++) items[i].choices[c] = (char *)ds.mc[i].choices[c];
        items[i].n_choices = ds.mc[i].n_choices;
        items[i].gold = ds.mc[i].label;
    }
    mt_mc_result mr;
    if (rc == 0) rc = mt_mc_eval(s, items, n, &mr, err);
    if (rc == 0) {
        char norm[40];
        snprintf(norm, sizeof norm, "%s_acc_norm", t->name);
        rc = add_value(r, t->name, mr.acc, mr.n, path, err);
        if (rc == 0) rc = add_value(r, norm, mr.acc_norm, mr.n, path, err);
        mt_mc_result_free(&mr);
    }
    if (rc) lm_err_prefix(err, "%s: ", t->name);
    free(items);
    ds_free(&ds);
    return rc;
}

/* Perplexity: documents of a text file, or "Human: q\nAssistant: a" rows
 * of a chat file (metrics.md 2.2). */
static int ppl_metric(const mt_subject *s, const char *path, int max_items,
                      su_eval_result *r, lm_err *err) {
    ds_dataset ds;
    if (ds_load(path, DS_FMT_AUTO, &ds, err)) return -1;
    int n = max_items > 0 && ds.n > max_items ? max_items : ds.n;
    char **docs = calloc((size_t)(n ? n : 1), sizeof *docs);
    int rc = docs ? 0 : lm_errf(err, "out of memory");
    for (int i = 0; rc == 0 && i < n; i++) {
        if (ds.kind == DS_KIND_TEXT) {
            docs[i] = strdup(ds.docs[i].text);
        } else if (ds.kind == DS_KIND_QA) {
            size_t need = strlen(ds.qa[i].question) + strlen(ds.qa[i].answer) + 32;
            docs[i] = malloc(need);
            if (docs[i]) snprintf(docs[i], need, "Human: %s\nAssistant: %s", ds.qa[i].question, ds.qa[i].answer);
        } else {
            rc = lm_errf(err, "%s: perplexity needs text or chats, not %s", path,
                         ds_format_name(ds.format));
            break;
        }
        if (!docs[i]) rc = lm_errf(err, "out of memory");
    }
    mt_ppl_opts po = {.context = 0, .add_bos = s->tok->bos_id >= 0};
    mt_ppl_result pr;
    if (rc == 0) rc = mt_ppl_eval(s, (const char *const *)docs, n, &po, &pr, err);
    if (rc == 0) {
        rc = add_value(r, "ppl", pr.ppl, pr.tokens, path, err);
        mt_ppl_result_free(&pr);
    }
    for (int i = 0; docs && i < n; i++) free(docs[i]);
    free(docs);
    ds_free(&ds);
    if (rc) lm_err_prefix(err, "ppl: ");
    return rc;
}

/* A decoding policy written by an inference-time method. */
static int load_policy(const char *dir, lm_model *m, const sm_method **method,
                       lm_decode_policy *pol, lm_err *err) {
    char p[4200], *text = NULL;
    size_t len;
    snprintf(p, sizeof p, "%s/policy.json", dir);
    if (lm_tok_read_file(p, &text, &len, err)) return -1;
    cJSON *o = cJSON_ParseWithLength(text, len);
    free(text);
    const cJSON *name = o ? cJSON_GetObjectItemCaseSensitive(o, "method") : NULL;
    int rc = 0;
    if (!cJSON_IsString(name)) rc = lm_errf(err, "%s: field 'method' missing", p);
    else if (!(*method = sm_method_find(name->valuestring)))
        rc = lm_errf(err, "%s: method '%s' is not registered (a plugin not loaded?)", p,
                     name->valuestring);
    else if ((*method)->output != SM_OUT_POLICY || !(*method)->build_policy)
        rc = lm_errf(err, "%s: method '%s' makes no decoding policy", p, name->valuestring);
    cJSON_Delete(o);
    if (rc == 0) rc = (*method)->build_policy(dir, m, pol, err);
    return rc;
}

static int wants(const char *list, const char *name) {
    size_t n = strlen(name);
    for (const char *p = list; *p;) {
        const char *c = strchr(p, ',');
        size_t len = c ? (size_t)(c - p) : strlen(p);
        if (len == n && !strncmp(p, name, n)) return 1;
        p = c ? c + 1 : p + len;
    }
    return 0;
}

static int check_metric_list(const char *list, lm_err *err) {
    for (const char *p = list; *p;) {
        const char *c = strchr(p, ',');
        size_t len = c ? (size_t)(c - p) : strlen(p);
        char name[64];
        if (len == 0 || len >= sizeof name)
            return lm_errf(err, "--metrics: empty or overlong name in '%s'", list);
        memcpy(name, p, len);
        name[len] = '\0';
        if (!wants(known, name))
            return lm_errf(err, "--metrics: unknown metric '%s' (known: %s)", name, known);
        p = c ? c + 1 : p + len;
    }
    return 0;
}

int su_evaluate(const char *model_arg, const su_eval_opts *o, su_eval_result *r,
                lm_err *err) {
    memset(r, 0, sizeof *r);
    if (check_metric_list(o->metrics, err)) return -1;
    for (int i = 0; i < o->n_data; i++) {
        int ok = !strcmp(o->data_name[i], "ppl");
        for (size_t k = 0; k < sizeof tasks / sizeof tasks[0]; k++)
            ok |= !strcmp(o->data_name[i], tasks[k].name);
        if (!ok) return lm_errf(err, "--data: unknown name '%s' (ppl, sciq, copa, rte, boolq, wsc)",
                                o->data_name[i]);
    }
    int need_fp = wants(o->metrics, "fsr") || wants(o->metrics, "ftr");
    if (need_fp && !o->fingerprint)
        return lm_errf(err, "fsr/ftr need --fingerprint FILE (the fingerprint.json the implanter wrote)");

    /* The embedded world: the one a zoo model was trained on, or seed 1's. */
    char model_path[4096], world[4096];
    if (su_zoo_resolve(model_arg, o->cache_dir, model_path, sizeof model_path, NULL, err)) return -1;
    const su_recipe *rec = su_zoo_find(model_arg);
    if (o->world_dir) snprintf(world, sizeof world, "%s", o->world_dir);
    else if (su_zoo_ensure_world(rec ? rec : su_zoo_at(0), o->cache_dir, world, sizeof world,
                                 NULL, err))
        return -1;

    lm_tokenizer tok;
    lm_model m;
    lm_backend *be = NULL;
    if (su_load_tokenizer(model_path, o->tokenizer, &tok, err)) return -1;
    if (su_load_model(model_path, o->threads, &m, &be, err)) {
        lm_tokenizer_free(&tok);
        return -1;
    }
    int rc = su_check_vocab(&m, &tok, err);
    lm_decode_policy pol = {0};
    const sm_method *pm = NULL;
    if (rc == 0 && o->policy_dir) rc = load_policy(o->policy_dir, &m, &pm, &pol, err);
    mt_subject s = {&m, &tok, pm ? &pol : NULL};

    if (rc == 0 && need_fp) {
        mt_fingerprint fp;
        rc = mt_fingerprint_read(&fp, o->fingerprint, err);
        mt_fsr_result fr;
        if (rc == 0) rc = mt_fsr_eval(&s, &fp, wants(o->metrics, "ftr"), &fr, err);
        if (rc == 0) {
            if (wants(o->metrics, "fsr")) rc = add_value(r, "fsr", fr.fsr, fr.n, o->fingerprint, err);
            if (rc == 0 && wants(o->metrics, "ftr") && fr.n_negatives > 0)
                rc = add_value(r, "ftr", fr.ftr, fr.n_negatives, o->fingerprint, err);
            r->trigger_hits = malloc((size_t)(fr.n ? fr.n : 1) * sizeof *r->trigger_hits);
            if (r->trigger_hits) {
                r->n_triggers = fr.n;
                for (int i = 0; i < fr.n; i++) r->trigger_hits[i] = fr.per_trigger[i].hit;
            }
            mt_fsr_result_free(&fr);
        }
        mt_fingerprint_free(&fp);
    }
    if (rc == 0 && wants(o->metrics, "ppl")) {
        char p[4200];
        const char *path = data_for(o, "ppl");
        if (!path) {
            snprintf(p, sizeof p, "%s/heldout.txt", world);
            path = p;
        }
        rc = ppl_metric(&s, path, o->max_items, r, err);
    }
    for (size_t k = 0; rc == 0 && k < sizeof tasks / sizeof tasks[0]; k++) {
        if (!wants(o->metrics, tasks[k].name)) continue;
        char p[4200];
        const char *path = data_for(o, tasks[k].name);
        if (!path) {
            snprintf(p, sizeof p, "%s/%s", world, tasks[k].world_rel);
            path = p;
        }
        rc = mc_task(&s, &tasks[k], path, path == p ? tasks[k].fmt : DS_FMT_AUTO, o->max_items, r, err);
    }
    if (pm) pm->free_policy(&pol);
    lm_model_free(&m);
    lm_backend_cpu_free(be);
    lm_tokenizer_free(&tok);
    if (rc) su_eval_result_free(r);
    return rc;
}
