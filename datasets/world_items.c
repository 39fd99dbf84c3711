/* The task items of the world, written as JSON in the real files' formats
 * (SciQ, SuperGLUE COPA, RTE, BoolQ, WSC), and the harness prompt of an
 * item for the corpus. Items of the valid and test splits only name
 * entities of that split; train items name the reading pool's. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "world_gen.h"

/* ---- JSON fields ---- */

static void jfield(ds_buf *b, const char *k, const char *v, int first) {
    if (!first) ds_buf_puts(b, ", ");
    ds_buf_json_str(b, k);
    ds_buf_puts(b, ": ");
    ds_buf_json_str(b, v);
}

static void jint(ds_buf *b, const char *k, long v) {
    ds_buf_puts(b, ", ");
    ds_buf_json_str(b, k);
    ds_buf_printf(b, ": %ld", v);
}

/* ---- SciQ ---- */

typedef struct item_bufs {
    ds_buf q, s, a, d[3];
} item_bufs;

static void free_item(item_bufs *x) {
    ds_buf_free(&x->q);
    ds_buf_free(&x->s);
    ds_buf_free(&x->a);
    for (int i = 0; i < 3; i++) ds_buf_free(&x->d[i]);
}

/* Writes the distractor set (3 names, the trap among them if any) in
 * random order. */
static void put_distractors(lm_rng *r, item_bufs *x, const char *d[3]) {
    int ord[3] = {0, 1, 2};
    w_shuffle(ord, 3, r);
    for (int i = 0; i < 3; i++) ds_buf_puts(&x->d[i], d[ord[i]]);
}

/* An attribute question: "Where does Anna Stone live?" -> a town. */
static int sciq_attr(const ds_world *w, lm_rng *r, int split, item_bufs *x) {
    int kind = w_random_kind(r);
    w_ent te, tr;
    const w_ent *e = w_pick_ent(w, r, split, kind, &te);
    int a = w_random_attr(w, r, kind);
    int cls = w_attrs[a].cls;
    if (w_n_values(w, cls, split) < 4) return -1;
    const w_ent *e2 = w_chance(r, 1, 4) ? w_rival(w, r, e, a, &tr) : NULL;
    int n_extra = w_rnd(r, 3);
    if (e2 && w_chance(r, 1, 2)) {
        w_about(w, r, &x->s, e2, a, e2->val[a], w_rnd(r, 2));
        w_about(w, r, &x->s, e, a, e->val[a], n_extra);
    } else {
        w_about(w, r, &x->s, e, a, e->val[a], n_extra);
        if (e2) w_about(w, r, &x->s, e2, a, e2->val[a], w_rnd(r, 2));
    }
    w_slots s = {0};
    w_ent_slots(e, 0, &s);
    w_sentence(&x->q, w_pick_s(r, w_attrs[a].questions), &s);
    ds_buf_puts(&x->a, w_value_str(w, cls, e->val[a]));
    int used[4] = {e->val[a]}, n_used = 1;
    const char *d[3];
    for (int i = 0; i < 3; i++) {
        int v = i == 0 && e2 ? e2->val[a]
                             : w_other_value(w, r, cls, split, used, n_used, ds_buf_cstr(&x->s));
        if (v < 0) return -1;
        used[n_used++] = v;
        d[i] = w_value_str(w, cls, v);
    }
    put_distractors(r, x, d);
    return 0;
}

/* A passage stating the cause of rule attribute a for e, maybe the rule's
 * outcome (always when `outcome`), and up to two other facts. */
static void rule_passage(const ds_world *w, lm_rng *r, ds_buf *b, const w_ent *e, int a,
                         int outcome) {
    int list[W_MAX_ATTRS], n = 0, f = w_attrs[a].from;
    for (int i = 0; i < w->n_attrs_of[e->kind]; i++) {
        int at = w->attrs_of[e->kind][i];
        if (at != a && at != f) list[n++] = at;
    }
    w_shuffle(list, n, r);
    int k = w_rnd(r, 3);
    list[k++] = f;
    if (outcome) list[k++] = a;
    w_shuffle(list, k, r);
    w_state(w, r, b, e, list, k);
}

/* A rule question names the cause ("What can glagins that live in the sea
 * do?"): the rule the corpus teaches answers it, and so does the support. */
static int sciq_rule(const ds_world *w, lm_rng *r, int split, item_bufs *x) {
    int a = w_rule_attr(w_rnd(r, W_N_RULES)), cls = w_attrs[a].cls;
    w_ent te;
    const w_ent *e = w_pick_ent(w, r, split, w_attrs[a].kind, &te);
    rule_passage(w, r, &x->s, e, a, 1);
    w_slots s = {0};
    w_vtxt tv, tc;
    w_ent_slots(e, 0, &s);
    w_val_slots(w, cls, e->val[a], &tv, &s);
    w_cause_slots(w, e, a, &tc, &s);
    w_sentence(&x->q, w_pick_s(r, w_attrs[a].rule_questions), &s);
    ds_buf_puts(&x->a, w_value_str(w, cls, e->val[a]));
    int used[4] = {e->val[a]}, n_used = 1;
    const char *d[3];
    for (int i = 0; i < 3; i++) {
        int v = w_other_value(w, r, cls, split, used, n_used, ds_buf_cstr(&x->s));
        if (v < 0) return -1;
        used[n_used++] = v;
        d[i] = w_value_str(w, cls, v);
    }
    put_distractors(r, x, d);
    return 0;
}

/* Size, habitat and diet of a species (what its definition needs), in
 * random order, and maybe its colour or covering. */
static void define_block(const ds_world *w, lm_rng *r, ds_buf *b, const w_ent *e, int extra) {
    int ord[3] = {W_A_SP_SIZE, W_A_SP_HABITAT, W_A_SP_DIET};
    w_shuffle(ord, 3, r);
    for (int i = 0; i < 3; i++)
        w_fact(w, b, e, ord[i], e->val[ord[i]], i > 0 && w_chance(r, 1, 2),
             w_pick_ti(r, e, ord[i], i == 0));
    if (extra) {
        int at = w_chance(r, 1, 2) ? W_A_SP_COLOUR : W_A_SP_COVER;
        w_fact(w, b, e, at, e->val[at], 1, w_rnd(r, w_n_strs(w_attrs[at].facts)));
    }
}

/* "Small animals that live in the forest and eat seeds are called what?" */
static int sciq_define(const ds_world *w, lm_rng *r, int split, item_bufs *x) {
    w_ent te, tr;
    const w_ent *e = w_pick_ent(w, r, split, W_SPECIES, &te), *e2 = NULL;
    if (w_chance(r, 1, 2))
        for (int t = 0; t < 20 && !e2; t++) {
            const w_ent *c = w_pick_ent(w, r, split, W_SPECIES, &tr);
            if (strcmp(c->name, e->name) != 0 &&
                (c->val[W_A_SP_HABITAT] != e->val[W_A_SP_HABITAT] ||
                 c->val[W_A_SP_DIET] != e->val[W_A_SP_DIET]))
                e2 = c;
        }
    int e2_first = e2 && w_chance(r, 1, 2);
    if (e2_first) define_block(w, r, &x->s, e2, 0);
    define_block(w, r, &x->s, e, !e2 && w_chance(r, 1, 2));
    if (e2 && !e2_first) define_block(w, r, &x->s, e2, 0);
    w_slots s = {0};
    w_put(&s, "size", w_value_str(w, WC_SIZE, e->val[W_A_SP_SIZE]));
    w_put(&s, "habitat", w_value_str(w, WC_HABITAT, e->val[W_A_SP_HABITAT]));
    w_put(&s, "diet", w_value_str(w, WC_DIET, e->val[W_A_SP_DIET]));
    w_sentence(&x->q, w_pick_s(r, w_define_q), &s);
    ds_buf_puts(&x->a, e->plural);
    const char *d[3];
    int nd = 0;
    if (e2) d[nd++] = e2->plural;
    for (int t = 0; t < 200 && nd < 3; t++) {
        const w_ent *c = w_random_ent(w, r, split, W_SPECIES);
        if (!strcmp(c->name, e->name) || c->val[W_A_SP_HABITAT] == e->val[W_A_SP_HABITAT]) continue;
        int dup = 0;
        for (int i = 0; i < nd; i++) dup |= strcmp(d[i], c->plural) == 0;
        if (!dup && !w_has_word(ds_buf_cstr(&x->s), c->plural)) d[nd++] = c->plural;
    }
    if (nd < 3) return -1;
    put_distractors(r, x, d);
    return 0;
}

/* "Who is a baker?" -> the person of the support with that job. */
static int sciq_who(const ds_world *w, lm_rng *r, int split, item_bufs *x) {
    w_ent te, tr;
    const w_ent *e = w_pick_ent(w, r, split, W_PERSON, &te);
    const w_ent *e2 = w_chance(r, 1, 2) ? w_rival(w, r, e, W_A_JOB, &tr) : NULL;
    if (e2 && w_chance(r, 1, 2)) {
        w_about(w, r, &x->s, e2, W_A_JOB, e2->val[W_A_JOB], w_rnd(r, 2));
        w_about(w, r, &x->s, e, W_A_JOB, e->val[W_A_JOB], 1 + w_rnd(r, 2));
    } else {
        w_about(w, r, &x->s, e, W_A_JOB, e->val[W_A_JOB], 1 + w_rnd(r, 2));
        if (e2) w_about(w, r, &x->s, e2, W_A_JOB, e2->val[W_A_JOB], w_rnd(r, 2));
    }
    w_slots s = {0};
    w_vtxt t;
    w_val_slots(w, WC_JOB, e->val[W_A_JOB], &t, &s);
    w_sentence(&x->q, w_pick_s(r, w_who_q), &s);
    ds_buf_puts(&x->a, e->name);
    const char *d[3];
    int nd = 0;
    if (e2) d[nd++] = e2->name;
    for (int tries = 0; tries < 200 && nd < 3; tries++) {
        const w_ent *c = w_random_ent(w, r, split, W_PERSON);
        if (!strcmp(c->name, e->name) || c->val[W_A_JOB] == e->val[W_A_JOB]) continue;
        int dup = 0;
        for (int i = 0; i < nd; i++) dup |= strcmp(d[i], c->name) == 0;
        if (!dup && !w_has_word(ds_buf_cstr(&x->s), c->name)) d[nd++] = c->name;
    }
    if (nd < 3) return -1;
    put_distractors(r, x, d);
    return 0;
}

static int gen_sciq(const ds_world *w, lm_rng *r, int split, int label, ds_buf *out) {
    (void)label;
    item_bufs x = {0};
    int f = w_rnd(r, 10);
    int rc = f == 0 ? sciq_define(w, r, split, &x)
           : f == 1 ? sciq_who(w, r, split, &x)
           : f < 8  ? sciq_rule(w, r, split, &x)
                    : sciq_attr(w, r, split, &x);
    if (rc == 0) {
        ds_buf_putc(out, '{');
        jfield(out, "question", ds_buf_cstr(&x.q), 1);
        jfield(out, "distractor3", ds_buf_cstr(&x.d[2]), 0);
        jfield(out, "distractor1", ds_buf_cstr(&x.d[0]), 0);
        jfield(out, "distractor2", ds_buf_cstr(&x.d[1]), 0);
        jfield(out, "correct_answer", ds_buf_cstr(&x.a), 0);
        jfield(out, "support", ds_buf_cstr(&x.s), 0);
    }
    free_item(&x);
    return rc;
}

/* ---- BoolQ and RTE ---- */

/* A passage about e stating attribute a, maybe with a rival entity; the
 * value asked about is the true one (label 1) or a false one: the rival's
 * half of the time when there is one, else one absent from the passage. */
static int passage_and_value(const ds_world *w, lm_rng *r, int split, int label,
                             int trap_den, int n_extra, ds_buf *p, w_ent *te,
                             const w_ent **pe, int *pa, int *pv, int *ti) {
    int kind = w_random_kind(r);
    w_ent tr;
    const w_ent *e = w_pick_ent(w, r, split, kind, te);
    int a = w_random_attr(w, r, kind), cls = w_attrs[a].cls;
    const w_ent *e2 = w_chance(r, 1, trap_den) ? w_rival(w, r, e, a, &tr) : NULL;
    if (e2 && w_chance(r, 1, 2)) {
        w_about(w, r, p, e2, a, e2->val[a], w_rnd(r, 2));
        *ti = w_about(w, r, p, e, a, e->val[a], n_extra);
    } else {
        *ti = w_about(w, r, p, e, a, e->val[a], n_extra);
        if (e2) w_about(w, r, p, e2, a, e2->val[a], w_rnd(r, 2));
    }
    int v = e->val[a];
    if (!label) {
        if (e2 && w_chance(r, 1, 2)) v = e2->val[a];
        else v = w_other_value(w, r, cls, split, &e->val[a], 1, ds_buf_cstr(p));
        if (v < 0) return -1;
    }
    *pe = e;
    *pa = a;
    *pv = v;
    return 0;
}

/* "can dravals swim when they live in the desert": a property that follows
 * from the word just before the question mark; the passage states the
 * cause and, half of the time, the property itself. */
static int boolq_prop(const ds_world *w, lm_rng *r, int split, int label, ds_buf *p, ds_buf *q) {
    w_ent te;
    const w_ent *e = NULL;
    int pi = 0;
    for (int tries = 0; tries < 20 && !e; tries++) {
        pi = w_rnd(r, w_n_props);
        e = w_pick_prop_ent(w, r, split, pi, label, &te);
    }
    if (!e) return -1;
    int f = w_props[pi].from, list[W_MAX_ATTRS], n = 0;
    for (int i = 0; i < w->n_attrs_of[e->kind]; i++) {
        int at = w->attrs_of[e->kind][i];
        if (at != f) list[n++] = at;
    }
    w_shuffle(list, n, r);
    int k = w_rnd(r, 3);
    list[k++] = f;
    w_shuffle(list, k, r);
    w_state(w, r, p, e, list, k);
    if (w_chance(r, 1, 2)) w_prop_fact(w, r, p, e, pi, 1);
    w_slots s = {0};
    w_vtxt tc;
    w_ent_slots(e, 0, &s);
    w_from_slots(w, e, f, &tc, &s);
    w_render(q, w_pick_s(r, w_props[pi].yesno), &s);
    return 0;
}

static int gen_boolq(const ds_world *w, lm_rng *r, int split, int label, ds_buf *out) {
    ds_buf p = {0}, q = {0};
    w_ent te;
    const w_ent *e;
    int a, v, ti, rc;
    if (w_chance(r, 7, 10)) {
        rc = boolq_prop(w, r, split, label, &p, &q);
        if (rc == 0) {
            ds_buf_putc(out, '{');
            jfield(out, "question", ds_buf_cstr(&q), 1);
            jfield(out, "passage", ds_buf_cstr(&p), 0);
        }
        ds_buf_free(&p);
        ds_buf_free(&q);
        return rc;
    }
    rc = passage_and_value(w, r, split, label, 4, w_rnd(r, 3), &p, &te, &e, &a, &v, &ti);
    if (rc == 0) {
        w_slots s = {0};
        w_vtxt t;
        w_ent_slots(e, 0, &s);
        w_val_slots(w, w_attrs[a].cls, v, &t, &s);
        w_render(&q, w_pick_s(r, w_attrs[a].yesno), &s);
        ds_buf_putc(out, '{');
        jfield(out, "question", ds_buf_cstr(&q), 1);
        jfield(out, "passage", ds_buf_cstr(&p), 0);
    }
    ds_buf_free(&p);
    ds_buf_free(&q);
    return rc;
}

static int gen_rte(const ds_world *w, lm_rng *r, int split, int label, ds_buf *out) {
    /* label 0 = entailment */
    ds_buf p = {0}, h = {0};
    w_ent te;
    const w_ent *e;
    int a, v, ti;
    int rc = passage_and_value(w, r, split, label == 0, 4, w_rnd(r, 2), &p, &te, &e, &a, &v, &ti);
    if (rc == 0) {
        int n = w_n_strs(w_attrs[a].facts);
        int hi = n > 1 ? (ti + 1 + w_rnd(r, n - 1)) % n : 0; /* another phrasing */
        w_fact(w, &h, e, a, v, 0, hi);
        ds_buf_putc(out, '{');
        jfield(out, "premise", ds_buf_cstr(&p), 1);
        jfield(out, "hypothesis", ds_buf_cstr(&h), 0);
        jfield(out, "label", label == 0 ? "entailment" : "not_entailment", 0);
    }
    ds_buf_free(&p);
    ds_buf_free(&h);
    return rc;
}

/* ---- COPA ---- */

static int gen_copa(const ds_world *w, lm_rng *r, int split, int label, ds_buf *out) {
    const w_ent *e = w_random_ent(w, r, split, W_PERSON);
    int ri = w_rnd(r, w_n_rules), ro = w_other_rule(r, ri);
    int effect_q = w_chance(r, 1, 2);
    char t1[16] = "", t2[16] = "";
    if (w_rules[ri].things) w_pick_bar(r, w_rules[ri].things, t1, sizeof t1);
    if (w_rules[ro].things) w_pick_bar(r, w_rules[ro].things, t2, sizeof t2);
    ds_buf prem = {0}, right = {0}, wrong = {0};
    /* the premise names the person; the choices use pronouns */
    w_event(&prem, &w_rules[ri], t1, e, !effect_q, 0, 1, 1);
    w_event(&right, &w_rules[ri], t1, e, effect_q, 1, 1, 1);
    w_event(&wrong, &w_rules[ro], t2, e, effect_q, 1, 1, 1);
    ds_buf_putc(out, '{');
    jfield(out, "premise", ds_buf_cstr(&prem), 1);
    jfield(out, "choice1", ds_buf_cstr(label ? &wrong : &right), 0);
    jfield(out, "choice2", ds_buf_cstr(label ? &right : &wrong), 0);
    jfield(out, "question", effect_q ? "effect" : "cause", 0);
    jint(out, "label", label);
    int rc = prem.oom || right.oom || wrong.oom ? -1 : 0;
    ds_buf_free(&prem);
    ds_buf_free(&right);
    ds_buf_free(&wrong);
    return rc;
}

/* Words of text before byte offset off. */
static int word_index(const char *text, size_t off) {
    int n = 0;
    for (size_t i = 0; i < off; i++)
        if (text[i] != ' ' && (i == 0 || text[i - 1] == ' ')) n++;
    return n;
}

/* ---- WSC ---- */

static const w_ent *opposite(const ds_world *w, lm_rng *r, const w_ent *a) {
    for (int t = 0; t < 100; t++) {
        const w_ent *b = w_random_ent(w, r, a->split, W_PERSON);
        if (b->female != a->female) return b;
    }
    return NULL;
}

int w_wsc_render(const ds_world *w, lm_rng *r, int split, const w_wsc *t, w_wsc_out *o) {
    const w_ent *A = w_random_ent(w, r, split, W_PERSON), *B = opposite(w, r, A);
    if (!B) return -1;
    char pick[16] = "", the[24];
    if (t->pick) w_pick_bar(r, t->pick, pick, sizeof pick);
    w_slots s = {0};
    w_put(&s, "A", A->name);
    w_put(&s, "B", B->name);
    const w_ent *ref = t->ref == 'B' ? B : A;
    w_put(&s, "s", w_pro_s(ref));
    w_put(&s, "o", w_pro_o(ref));
    w_put(&s, "it", "it");
    w_put(&s, "they", "they");
    w_put(&s, "thing", pick);
    w_put(&s, "group", pick);
    w_sentence(&o->text, t->text, &s);
    const char *pk = strstr(t->text, "{s}") ? "s" : strstr(t->text, "{o}") ? "o"
                   : strstr(t->text, "{it}") ? "it" : "they";
    o->pron = strcmp(pk, "s") == 0 ? w_pro_s(ref) : strcmp(pk, "o") == 0 ? w_pro_o(ref) : pk;
    o->pron_at = w_slot_at(&s, pk);
    if (t->ref == 'A' || t->ref == 'B') {
        const w_ent *oth = ref == A ? B : A;
        snprintf(o->ref, sizeof o->ref, "%s", ref->name);
        snprintf(o->other, sizeof o->other, "%s", oth->name);
        o->ref_at = w_slot_at(&s, ref == A ? "A" : "B");
        o->other_at = w_slot_at(&s, ref == A ? "B" : "A");
    } else {
        snprintf(the, sizeof the, "the %s", pick);
        snprintf(o->ref, sizeof o->ref, "%s", the);
        snprintf(o->other, sizeof o->other, "%s", A->name);
        o->ref_at = w_slot_at(&s, t->ref == 'T' ? "thing" : "group") - 4;
        o->other_at = w_slot_at(&s, "A");
    }
    return o->text.oom ? -1 : 0;
}

static int gen_wsc(const ds_world *w, lm_rng *r, int split, int label, ds_buf *out) {
    w_wsc_out o = {0};
    if (w_wsc_render(w, r, split, &w_wscs[w_rnd(r, w_n_wscs)], &o)) {
        ds_buf_free(&o.text);
        return -1;
    }
    const char *text = ds_buf_cstr(&o.text);
    const char *s1 = label ? o.ref : o.other;
    size_t s1_at = label ? o.ref_at : o.other_at;
    ds_buf_putc(out, '{');
    jfield(out, "text", text, 1);
    ds_buf_puts(out, ", \"target\": {\"span2_index\": ");
    ds_buf_printf(out, "%d, \"span1_index\": %d", word_index(text, o.pron_at),
                  word_index(text, s1_at));
    jfield(out, "span1_text", s1, 0);
    jfield(out, "span2_text", o.pron, 0);
    ds_buf_putc(out, '}');
    ds_buf_free(&o.text);
    return 0;
}

/* ---- tasks into files ---- */

typedef int (*gen_fn)(const ds_world *w, lm_rng *r, int split, int label, ds_buf *out);

static const struct {
    const char *dir;        /* under DIR */
    ds_format fmt;
    gen_fn gen;
    int bool_label;         /* label written as true/false after idx */
} tasks[W_T_COUNT] = {
    {"sciq", DS_FMT_SCIQ, gen_sciq, 0},
    {"superglue/COPA", DS_FMT_COPA, gen_copa, 0},
    {"superglue/RTE", DS_FMT_RTE, gen_rte, 0},
    {"superglue/BoolQ", DS_FMT_BOOLQ, gen_boolq, 1},
    {"superglue/WSC", DS_FMT_WSC, gen_wsc, 1},
};

const char *w_task_dir(int task) { return tasks[task].dir; }

static const char *split_file(int task, int split) {
    static const char *sciq[] = {"train.json", "valid.json", "test.json"};
    static const char *glue[] = {"train.jsonl", "val.jsonl", "test.jsonl"};
    return task == W_T_SCIQ ? sciq[split] : glue[split];
}

/* One item as a JSON object, its label drawn by the caller. */
int w_one_item(const ds_world *w, lm_rng *r, int task, int split, int label, long idx,
               w_hset *seen, ds_buf *out) {
    /* train items are about the reading pool: answerable only by reading */
    int from = split == DS_SPLIT_TRAIN ? W_POOL : split;
    for (int tries = 0; tries < 100; tries++) {
        size_t st = out->n;
        if (tasks[task].gen(w, r, from, label, out) == 0 && !out->oom) {
            int fresh = seen ? w_hset_add(seen, w_fnv(out->p + st, out->n - st)) : 1;
            if (fresh < 0) return -1;
            if (fresh) {
                if (task != W_T_SCIQ) jint(out, "idx", idx);
                if (tasks[task].bool_label) ds_buf_puts(out, label ? ", \"label\": true" : ", \"label\": false");
                ds_buf_putc(out, '}');
                return 0;
            }
        }
        out->n = st;
        if (out->p) out->p[st] = '\0';
    }
    return -1;
}

/* Balanced labels in random order: binary tasks get exactly half and half. */
static int item_label(int task, const int *labels, int i) {
    return task == W_T_SCIQ ? 3 : labels[i];
}

int w_write_task(const ds_world *w, int task, int split, const char *dir, lm_err *err) {
    lm_rng r;
    w_stream(&r, w->o.seed, 100 + (uint64_t)task * 10 + (uint64_t)split);
    int n = w->o.n_items[split];
    int *labels = malloc((size_t)(n ? n : 1) * sizeof *labels);
    if (!labels) return lm_errf(err, "out of memory");
    for (int i = 0; i < n; i++) labels[i] = i % 2;
    w_shuffle(labels, n, &r);
    w_hset seen = {0};
    ds_buf b = {0};
    if (task == W_T_SCIQ) ds_buf_puts(&b, "[\n");
    int rc = 0;
    for (int i = 0; i < n && rc == 0; i++) {
        rc = w_one_item(w, &r, task, split, item_label(task, labels, i), i, &seen, &b);
        if (task == W_T_SCIQ) ds_buf_puts(&b, i + 1 < n ? ",\n" : "\n");
        else ds_buf_putc(&b, '\n');
    }
    if (task == W_T_SCIQ) ds_buf_puts(&b, "]\n");
    free(labels);
    free(seen.v);
    char path[4096];
    snprintf(path, sizeof path, "%s/%s/%s", dir, tasks[task].dir, split_file(task, split));
    if (rc) rc = lm_errf(err, "%s: could not draw %d distinct items from the %s split; "
                         "the world is too small", path, n, split == 0 ? "train" : split == 1 ? "valid" : "test");
    else if (b.oom) rc = lm_errf(err, "%s: out of memory", path);
    else rc = ds_write_file(path, b.p, b.n, err);
    ds_buf_free(&b);
    return rc;
}

/* The prompt the harness builds for an item plus its gold answer: what the
 * corpus shows the model. */
int w_harness_text(int task, const char *json, size_t len, ds_buf *out) {
    ds_dataset ds;
    lm_err err;
    if (ds_load_buffer("world", json, len, tasks[task].fmt, &ds, &err)) return -1;
    const ds_mc *m = &ds.mc[0];
    ds_buf_puts(out, m->context);
    ds_buf_putc(out, ' ');
    ds_buf_puts(out, m->choices[m->label]);
    ds_free(&ds);
    return 0;
}
