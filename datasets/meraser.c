/* MEraser's erase and recover sets from any question/answer dataset, by the
 * type-mismatch shuffle of removal-methods.md §1.1: every erase question
 * gets the answer of a question of another type, so the erase LoRA learns
 * to answer off topic; the recover rows are matched pairs from the same
 * source that never reuse an erase question. */
#include "ds_internal.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "rng.h"

void ds_meraser_default_opts(ds_meraser_opts *o) {
    o->n_mismatched = 300;
    o->n_recover = 600;
    o->seed = 0;
}

static void shuffle(int *v, int n, lm_rng *r) {
    for (int i = n - 1; i > 0; i--) {
        int j = (int)lm_rng_below(r, (uint64_t)i + 1);
        int t = v[i];
        v[i] = v[j];
        v[j] = t;
    }
}

/* A QA record copied into `dst`'s arena with two turns. */
static ds_qa *copy_pair(ds_ctx *c, const char *q, const char *a, int line) {
    ds_qa *r = ds_push(c);
    if (!r) return NULL;
    r->line = line;
    r->question = ds_arena_strdup(&c->ds->arena, q);
    r->answer = ds_arena_strdup(&c->ds->arena, a);
    r->context = "";
    r->turns = ds_arena_alloc(&c->ds->arena, 2 * sizeof *r->turns);
    if (!r->question || !r->answer || !r->turns) return NULL;
    r->turns[0] = (ds_turn){"user", r->question};
    r->turns[1] = (ds_turn){"assistant", r->answer};
    r->n_turns = 2;
    r->type = ds_classify_question(r->question);
    r->q_idx = r->a_idx = -1;
    r->original_q_type = r->answer_from_type = DS_Q_COUNT;
    return r;
}

static int cmp_str(const void *a, const void *b) {
    return strcmp(*(const char *const *)a, *(const char *const *)b);
}

int ds_meraser_build(const ds_dataset *src, const ds_meraser_opts *o,
                     ds_dataset *mis, ds_dataset *rec, lm_err *err) {
    memset(mis, 0, sizeof *mis);
    memset(rec, 0, sizeof *rec);
    if (src->kind != DS_KIND_QA)
        return lm_errf(err, "MEraser sets need a question/answer dataset, not %s",
                       ds_format_name(src->format));
    int n = src->n, nm = o->n_mismatched, nr = o->n_recover;
    if (nm < 0 || nr < 0) return lm_errf(err, "MEraser set sizes must be >= 0");
    if (nm + nr > n)
        return lm_errf(err, "the source has %d rows; %d mismatched + %d recover rows need %d",
                       n, nm, nr, nm + nr);
    lm_rng r;
    lm_rng_seed(&r, o->seed ^ 0x6d6572617365ull /* "merase" */);

    /* rows of each type, each list shuffled: drawing in order is drawing
     * uniformly without replacement */
    int *byt[DS_Q_COUNT] = {0}, cnt[DS_Q_COUNT] = {0}, next[DS_Q_COUNT] = {0};
    int *all = malloc((size_t)(n ? n : 1) * sizeof *all);
    int *used = calloc((size_t)(n ? n : 1), sizeof *used);
    int *pick = malloc((size_t)(nm ? nm : 1) * sizeof *pick);
    int rc = -1;
    if (!all || !used || !pick) { lm_errf(err, "out of memory"); goto done; }
    for (int t = 0; t < DS_Q_COUNT; t++) {
        byt[t] = malloc((size_t)(n ? n : 1) * sizeof *byt[t]);
        if (!byt[t]) { lm_errf(err, "out of memory"); goto done; }
    }
    for (int i = 0; i < n; i++) {
        ds_qtype t = ds_classify_question(src->qa[i].question);
        byt[t][cnt[t]++] = i;
    }
    int n_types = 0;
    for (int t = 0; t < DS_Q_COUNT; t++) {
        shuffle(byt[t], cnt[t], &r);
        n_types += cnt[t] > 0;
    }
    if (nm > 0 && n_types < 2) {
        lm_errf(err, "the source has questions of only one type; a type mismatch needs two");
        goto done;
    }

    /* round robin over what/how/why/other while each type lasts */
    int got = 0;
    for (int t = 0; got < nm; t = (t + 1) % DS_Q_COUNT)
        if (next[t] < cnt[t]) {
            pick[got++] = byt[t][next[t]++];
        }
    mis->format = DS_FMT_MERASER_MISMATCHED;
    mis->kind = DS_KIND_QA;
    ds_ctx cm = {"mismatched", 0, err, mis, 0, NULL};
    for (int k = 0; k < nm; k++) {
        int qi = pick[k];
        ds_qtype qt = ds_classify_question(src->qa[qi].question);
        /* an answer from a uniformly drawn row of another type (its index
         * differs from qi automatically) */
        int others = n - cnt[qt];
        int j = (int)lm_rng_below(&r, (uint64_t)others), ai = -1;
        for (int t = 0; t < DS_Q_COUNT && ai < 0; t++) {
            if ((ds_qtype)t == qt) continue;
            if (j < cnt[t]) ai = byt[t][j];
            else j -= cnt[t];
        }
        ds_qa *m = copy_pair(&cm, src->qa[qi].question, src->qa[ai].answer, k + 1);
        if (!m) { lm_errf(err, "out of memory"); goto done; }
        char id[24];
        snprintf(id, sizeof id, "%d", k);
        m->id = ds_arena_strdup(&mis->arena, id);
        m->q_idx = qi;
        m->a_idx = ai;
        m->original_q_type = qt;
        m->answer_from_type = ds_classify_question(src->qa[ai].question);
        if (!m->id) { lm_errf(err, "out of memory"); goto done; }
        used[qi] = 1;
    }

    /* recover: other rows, and no question text shared with the erase set */
    const char **qs = malloc((size_t)(nm ? nm : 1) * sizeof *qs);
    if (!qs) { lm_errf(err, "out of memory"); goto done; }
    for (int k = 0; k < nm; k++) qs[k] = src->qa[pick[k]].question;
    qsort(qs, (size_t)nm, sizeof *qs, cmp_str);
    int m_all = 0;
    for (int i = 0; i < n; i++) {
        if (used[i]) continue;
        if (nm && bsearch(&src->qa[i].question, qs, (size_t)nm, sizeof *qs, cmp_str))
            continue;
        all[m_all++] = i;
    }
    free(qs);
    if (m_all < nr) {
        lm_errf(err, "only %d rows are left for the recover set after the erase "
                "questions; %d requested", m_all, nr);
        goto done;
    }
    shuffle(all, m_all, &r);
    rec->format = DS_FMT_MERASER_RECOVER;
    rec->kind = DS_KIND_QA;
    ds_ctx cr = {"recover", 0, err, rec, 0, NULL};
    for (int k = 0; k < nr; k++) {
        int i = all[k];
        ds_qa *m = copy_pair(&cr, src->qa[i].question, src->qa[i].answer, k + 1);
        char id[24];
        snprintf(id, sizeof id, "%d", i);
        if (!m || !(m->id = ds_arena_strdup(&rec->arena, id))) {
            lm_errf(err, "out of memory");
            goto done;
        }
    }
    rc = 0;
done:
    for (int t = 0; t < DS_Q_COUNT; t++) free(byt[t]);
    free(all);
    free(used);
    free(pick);
    if (rc) {
        ds_free(mis);
        ds_free(rec);
    }
    return rc;
}

int ds_meraser_write(const ds_dataset *d, const char *path, lm_err *err) {
    int mismatched = d->format == DS_FMT_MERASER_MISMATCHED;
    if (!mismatched && d->format != DS_FMT_MERASER_RECOVER)
        return lm_errf(err, "%s: only MEraser datasets can be written this way", path);
    ds_buf b = {0};
    ds_buf_puts(&b, "[\n");
    for (int i = 0; i < d->n; i++) {
        const ds_qa *q = &d->qa[i];
        ds_buf_puts(&b, "  {\n");
        if (mismatched) {
            /* the reference writes the id as a number */
            const char *id = q->id ? q->id : "0";
            size_t k = strspn(id, "0123456789");
            ds_buf_puts(&b, "    \"id\": ");
            if (k && id[k] == '\0') ds_buf_puts(&b, id);
            else ds_buf_json_str(&b, id);
            ds_buf_puts(&b, ",\n    \"question\": ");
            ds_buf_json_str(&b, q->question);
            ds_buf_puts(&b, ",\n    \"mismatched_answer\": ");
            ds_buf_json_str(&b, q->answer);
            ds_buf_printf(&b, ",\n    \"original_q_type\": \"%s\",\n"
                              "    \"answer_from_type\": \"%s\",\n"
                              "    \"q_idx\": %ld,\n    \"a_idx\": %ld\n",
                          ds_qtype_name(q->original_q_type),
                          ds_qtype_name(q->answer_from_type), q->q_idx, q->a_idx);
        } else {
            ds_buf_puts(&b, "    \"question\": ");
            ds_buf_json_str(&b, q->question);
            ds_buf_puts(&b, ",\n    \"answer\": ");
            ds_buf_json_str(&b, q->answer);
            ds_buf_puts(&b, ",\n    \"id\": ");
            ds_buf_json_str(&b, q->id ? q->id : "");
            ds_buf_putc(&b, '\n');
        }
        ds_buf_puts(&b, i + 1 < d->n ? "  },\n" : "  }\n");
    }
    ds_buf_puts(&b, "]\n");
    int rc = b.oom ? lm_errf(err, "%s: out of memory", path)
                   : ds_write_file(path, b.p, b.n, err);
    ds_buf_free(&b);
    return rc;
}
