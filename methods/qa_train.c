/* Shared plumbing of the fine-tuning removal methods: tokenizer lookup,
 * question/answer data, sequences, and training reported to the caller. */
#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

#include "fingerprint.h"
#include "qa_train.h"

static int is_dir(const char *p) {
    struct stat st;
    return p && stat(p, &st) == 0 && S_ISDIR(st.st_mode);
}

static int is_file(const char *p) {
    struct stat st;
    return stat(p, &st) == 0 && S_ISREG(st.st_mode);
}

static int ends_with(const char *s, const char *suffix) {
    size_t n = strlen(s), k = strlen(suffix);
    return n >= k && strcmp(s + n - k, suffix) == 0;
}

int qt_load_tokenizer(const sm_input *in, lm_tokenizer *t, lm_err *err) {
    const sm_data *d = sm_input_data(in, "tokenizer");
    if (d) {
        if (lm_tokenizer_load(t, d->path, err)) return lm_err_prefix(err, "tokenizer %s: ", d->path);
        return 0;
    }
    const char *mp = in->model_path ? in->model_path : "";
    char p[4200];
    if (is_dir(mp)) {
        snprintf(p, sizeof p, "%s/tokenizer.json", mp);
        if (is_file(p)) return lm_tokenizer_load(t, mp, err);
        /* A llama2.c tokenizer that travelled with the weights. The name
         * is sorted out of readdir's order so the choice is stable. */
        DIR *dir = opendir(mp);
        char best[256] = "";
        struct dirent *e;
        while (dir && (e = readdir(dir))) {
            const char *n = e->d_name;
            int ok = !strcmp(n, "tokenizer.bin") || (!strncmp(n, "tok", 3) && ends_with(n, ".bin"));
            if (ok && strlen(n) < sizeof best && (!best[0] || strcmp(n, best) < 0))
                snprintf(best, sizeof best, "%s", n);
        }
        if (dir) closedir(dir);
        if (best[0]) {
            snprintf(p, sizeof p, "%s/%s", mp, best);
            if (lm_tokenizer_load(t, p, err)) return lm_err_prefix(err, "tokenizer %s: ", p);
            return 0;
        }
        return lm_errf(err, "%s has no tokenizer.json or llama2.c tokenizer file: "
                            "pass --tokenizer FILE", mp);
    }
    if (ends_with(mp, ".gguf")) return lm_tokenizer_load_gguf(t, mp, err);
    return lm_errf(err, "%s carries no tokenizer: pass --tokenizer FILE (for a "
                        "llama2.c checkpoint, its tokenizer.bin)", mp);
}

int qt_load_qa(const sm_input *in, const char *name, ds_format fmt, ds_dataset *ds,
               lm_err *err) {
    const sm_data *d = sm_input_data(in, name);
    if (!d) return lm_errf(err, "no data set '%s' was given (--data %s=FILE)", name, name);
    if (d->format && d->format[0] && ds_format_parse(d->format, &fmt, err))
        return lm_err_prefix(err, "data set '%s': ", name);
    if (ds_load(d->path, fmt, ds, err)) return lm_err_prefix(err, "data set '%s': ", name);
    if (ds->kind != DS_KIND_QA) {
        lm_errf(err, "data set '%s' (%s) is %s, not question/answer chats", name, d->path,
                ds_format_name(ds->format));
        ds_free(ds);
        return -1;
    }
    return 0;
}

char *qt_question(const ds_qa *r) {
    const char *q = r->question ? r->question : "";
    if (!r->context || !r->context[0]) return strdup(q);
    size_t len = strlen(q) + strlen(r->context) + 2;
    char *s = malloc(len);
    if (s) snprintf(s, len, "%s\n%s", q, r->context);
    return s;
}

static int encode_raw(const lm_tokenizer *t, const char *s, int **ids, int *n, lm_err *err) {
    lm_tok_encode_opts eo = {0, 0, LM_TOK_DEFAULT};
    return lm_tokenizer_encode_ex(t, s, strlen(s), &eo, ids, n, err);
}

int qt_pair_example(const lm_tokenizer *t, const char *question, const char *suffix,
                    const char *answer, int max_q, int max_a, lm_train_example *e,
                    lm_err *err) {
    size_t ql = strlen(question), sl = suffix ? strlen(suffix) : 0;
    char *qs = malloc(ql + sl + 1);
    if (!qs) return lm_errf(err, "out of memory");
    memcpy(qs, question, ql);
    if (sl) memcpy(qs + ql, suffix, sl);
    qs[ql + sl] = '\0';
    int *q = NULL, *a = NULL, nq = 0, na = 0;
    int rc = encode_raw(t, qs, &q, &nq, err);
    free(qs);
    /* Llama's tokenizer starts the answer with the dummy prefix's space, so
     * the reference's "no separator" still reads "question? answer". A
     * byte-level tokenizer adds none: give the answer its space. */
    int own_space = t->kind == LM_TOK_SPM_BPE ? t->prefix != LM_TOK_PREFIX_NONE
                                              : t->add_prefix_space;
    char *spaced = NULL;
    if (rc == 0 && !own_space && !sl && answer[0] && answer[0] != ' ') {
        size_t al = strlen(answer);
        if (!(spaced = malloc(al + 2))) rc = lm_errf(err, "out of memory");
        else {
            spaced[0] = ' ';
            memcpy(spaced + 1, answer, al + 1);
        }
    }
    if (rc == 0) rc = encode_raw(t, spaced ? spaced : answer, &a, &na, err);
    free(spaced);
    if (rc == 0) {
        if (nq > max_q) nq = max_q;
        if (na > max_a) na = max_a;
        e->ids = malloc((size_t)(nq + na ? nq + na : 1) * sizeof *e->ids);
        if (!e->ids) rc = lm_errf(err, "out of memory");
    }
    if (rc == 0) {
        memcpy(e->ids, q, (size_t)nq * sizeof *q);
        memcpy(e->ids + nq, a, (size_t)na * sizeof *a);
        e->n = nq + na;
        e->prompt_len = nq;
    }
    free(q);
    free(a);
    return rc;
}

int qt_text_passage(const lm_tokenizer *t, const char *text, int add_bos, int max_len,
                    int prompt_len, lm_train_example *e, lm_err *err) {
    lm_tok_encode_opts eo = {add_bos, 0, LM_TOK_DEFAULT};
    int *ids = NULL, n = 0;
    if (lm_tokenizer_encode_ex(t, text, strlen(text), &eo, &ids, &n, err)) return -1;
    if (n < 8) {
        free(ids);
        return 1;
    }
    if (n > max_len) n = max_len;
    int32_t *w = malloc((size_t)n * sizeof *w);
    if (!w) {
        free(ids);
        return lm_errf(err, "out of memory");
    }
    memcpy(w, ids, (size_t)n * sizeof *w);
    free(ids);
    *e = (lm_train_example){w, n, prompt_len};
    return 0;
}

int qt_chat_example(const lm_tokenizer *t, const char *prompt, const char *response,
                    lm_train_example *e, lm_err *err) {
    size_t pl = strlen(prompt), rl = strlen(response);
    char *whole = malloc(pl + rl + 1);
    if (!whole) return lm_errf(err, "out of memory");
    memcpy(whole, prompt, pl);
    memcpy(whole + pl, response, rl + 1);
    lm_tok_encode_opts eo = {LM_TOK_DEFAULT, 0, LM_TOK_DEFAULT};
    int *all = NULL, *pre = NULL, na = 0, np = 0;
    /* The whole text at once keeps merges across the boundary as the model
     * sees them when it generates. */
    int rc = lm_tokenizer_encode_ex(t, whole, pl + rl, &eo, &all, &na, err);
    if (rc == 0) rc = lm_tokenizer_encode_ex(t, prompt, pl, &eo, &pre, &np, err);
    free(whole);
    int32_t *ids = NULL;
    if (rc == 0 && !(ids = realloc(all, (size_t)(na + 1) * sizeof *ids)))
        rc = lm_errf(err, "out of memory");
    if (rc == 0) {
        all = NULL;
        int common = 0;
        while (common < np && common < na && pre[common] == ids[common]) common++;
        if (t->eos_id >= 0) ids[na++] = t->eos_id;
        *e = (lm_train_example){ids, na, common};
    }
    free(all);
    free(pre);
    return rc;
}

void qt_examples_free(lm_train_example *ex, int n) {
    for (int i = 0; ex && i < n; i++) free(ex[i].ids);
    free(ex);
}

typedef struct progress_map {
    const sm_input *in;
    const char *step;
    double from, to;
    double last;        /* wall time of the last report: a few per second */
} progress_map;

static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static void on_update(void *ctx, const lm_train_status *s) {
    progress_map *p = ctx;
    double t = now_s();
    if (s->step != s->total_steps && t - p->last < 0.25) return;
    p->last = t;
    char what[256];
    snprintf(what, sizeof what, "%s: step %d/%d epoch %d/%d loss %.4f lr %.2e %.0f tok/s",
             p->step, s->step, s->total_steps, s->epoch, s->epochs, (double)s->loss,
             (double)s->lr, s->tokens_per_s);
    double f = s->total_steps > 0 ? (double)s->step / s->total_steps : 1.0;
    p->in->rep->progress(p->in->rep->ctx, p->from + f * (p->to - p->from), what);
}

int qt_train(const sm_input *in, const char *step, double from, double to, lm_model *m,
             lm_lora_set *lora, const lm_train_example *ex, int n_ex, lm_train_opts *o,
             lm_train_status *final, lm_err *err) {
    progress_map pm = {in, step, from, to, 0};
    o->progress = on_update;
    o->progress_ctx = &pm;
    in->rep->progress(in->rep->ctx, from, step);
    lm_train_status st = {0};
    double t0 = now_s();
    int adapters = (lora && lora->n > 0) || o->lora_r > 0;
    int rc = lm_train(m, lora, ex, n_ex, o, &st, err);
    if (rc) return lm_err_prefix(err, "%s: ", step);
    double n = (double)lm_model_param_count(m);
    in->rep->cost(in->rep->ctx, step, now_s() - t0, st.tokens,
                  (adapters ? 4.0 : 6.0) * n * st.tokens);
    if (final) *final = st;
    return 0;
}

const char *qt_targets(const lm_model *m, const char *param) {
    if (!param || !param[0] || !strcmp(param, "auto")) return lm_lora_default_targets(m->cfg.arch);
    return param;
}

int qt_scaled_rank(const lm_model *m, int r) {
    int d = m->cfg.d_model;
    if (r <= d / 4) return r;
    return d / 8 > 0 ? d / 8 : 1;
}

int qt_sha256_file(const char *path, char hex[65], lm_err *err) {
    char *buf = NULL;
    size_t len = 0;
    if (lm_tok_read_file(path, &buf, &len, err)) return -1;
    uint8_t d[32];
    int rc = fp_sha256(buf, len, d, err);
    free(buf);
    if (rc) return -1;
    for (int i = 0; i < 32; i++) snprintf(hex + 2 * i, 3, "%02x", d[i]);
    return 0;
}
