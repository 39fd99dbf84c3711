/* The synthetic world: entities drawn from a seed, then rendered into the
 * corpus, the instruction chats and the task files (see world.h for the
 * design, world_text.c for the English).
 *
 * Every random choice flows from the seed through a separate lm_rng stream
 * per output (corpus, heldout, instructions, each task and split), so one
 * file's size does not shift the contents of another. Task items are first
 * written as JSON in the real file format; the corpus renders its
 * task-format documents by loading that JSON back through the loaders, so
 * the pretraining text shows exactly the prompt the evaluation will build. */
#include "world.h"

#include <ctype.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "dataset.h"
#include "ds_internal.h"
#include "rng.h"
#include "world_text.h"

#define W_MAX_ATTRS 24
#define W_MAX_TPL 8

typedef struct w_ent {
    int kind, split;
    int female;                 /* people */
    int friend_;                /* people: another person of the split */
    char name[32];              /* full name / species singular / substance / town */
    char plural[36];            /* species plural (others: the name) */
    char poss[40];              /* "Anna Stone's" */
    int val[W_MAX_ATTRS];       /* value of each attribute of its kind */
} w_ent;

struct ds_world {
    ds_world_opts o;
    w_ent *ents;
    int n_ents;
    int *of[DS_SPLITS][W_KINDS];        /* entity indices by split and kind */
    int n_of[DS_SPLITS][W_KINDS];
    int attrs_of[W_KINDS][W_MAX_ATTRS]; /* attribute ids by kind */
    int n_attrs_of[W_KINDS];
    /* question templates of each attribute by MEraser type */
    int qt[W_MAX_ATTRS][DS_Q_COUNT][W_MAX_TPL];
    int n_qt[W_MAX_ATTRS][DS_Q_COUNT];
    const char **names[DS_SPLITS];
    int n_names[DS_SPLITS];
};

/* ---- small helpers ------------------------------------------------------- */

static int rnd(lm_rng *r, int n) { return n > 0 ? (int)lm_rng_below(r, (uint64_t)n) : 0; }
static int chance(lm_rng *r, int num, int den) { return rnd(r, den) < num; }

static int n_strs(const char *const *a) {
    int n = 0;
    while (a && a[n]) n++;
    return n;
}

static const char *pick_s(lm_rng *r, const char *const *a) { return a[rnd(r, n_strs(a))]; }

static void shuffle(int *v, int n, lm_rng *r) {
    for (int i = n - 1; i > 0; i--) {
        int j = rnd(r, i + 1), t = v[i];
        v[i] = v[j];
        v[j] = t;
    }
}

/* One of the '|'-separated words of list, into out. */
static void pick_bar(lm_rng *r, const char *list, char *out, size_t cap) {
    int n = 1;
    for (const char *p = list; *p; p++) n += *p == '|';
    int k = rnd(r, n);
    const char *p = list;
    while (k--) p = strchr(p, '|') + 1;
    size_t len = strcspn(p, "|");
    if (len >= cap) len = cap - 1;
    memcpy(out, p, len);
    out[len] = '\0';
}

/* A separate stream per output: the seed mixed with a tag. */
static void stream(lm_rng *r, uint64_t seed, uint64_t tag) {
    lm_rng_seed(r, seed * 0x9E3779B97F4A7C15ull ^ (tag + 0x632BE59BD9B4E019ull));
}

/* Whole-word (or whole-phrase) occurrence of w in text. */
static int has_word(const char *text, const char *w) {
    size_t n = strlen(w);
    for (const char *p = strstr(text, w); p; p = strstr(p + 1, w)) {
        int left = p == text || !isalnum((unsigned char)p[-1]);
        int right = !isalnum((unsigned char)p[n]);
        if (left && right) return 1;
    }
    return 0;
}

/* ---- templates --------------------------------------------------------- */

#define MAX_SLOTS 24
typedef struct slots {
    const char *k[MAX_SLOTS];
    const char *v[MAX_SLOTS];
    size_t at[MAX_SLOTS];       /* where the value last went in the output */
    int n;
} slots;

static void put(slots *s, const char *k, const char *v) {
    for (int i = 0; i < s->n; i++)
        if (strcmp(s->k[i], k) == 0) {
            s->v[i] = v;
            return;
        }
    if (s->n < MAX_SLOTS) {
        s->k[s->n] = k;
        s->v[s->n] = v;
        s->at[s->n] = (size_t)-1;
        s->n++;
    }
}

static size_t slot_at(const slots *s, const char *k) {
    for (int i = 0; i < s->n; i++)
        if (strcmp(s->k[i], k) == 0) return s->at[i];
    return (size_t)-1;
}

/* Fills {key}s; an unknown key is written as "{?key}" so tests catch it. */
static void render(ds_buf *b, const char *t, slots *s) {
    while (*t) {
        const char *e = *t == '{' ? strchr(t, '}') : NULL;
        if (!e) {
            size_t run = strcspn(t + 1, "{") + 1;
            ds_buf_put(b, t, run);
            t += run;
            continue;
        }
        size_t kl = (size_t)(e - t - 1);
        int i = 0;
        while (i < s->n && !(strlen(s->k[i]) == kl && strncmp(s->k[i], t + 1, kl) == 0)) i++;
        if (i < s->n) {
            s->at[i] = b->n;
            ds_buf_puts(b, s->v[i]);
        } else {
            ds_buf_puts(b, "{?");
            ds_buf_put(b, t + 1, kl);
            ds_buf_putc(b, '}');
        }
        t = e + 1;
    }
}

/* A sentence: rendered, first letter upper-cased. */
static void sentence(ds_buf *b, const char *t, slots *s) {
    size_t st = b->n;
    render(b, t, s);
    if (!b->oom && b->n > st) b->p[st] = (char)toupper((unsigned char)b->p[st]);
}

/* A space before the next sentence unless at the start. */
static void sep(ds_buf *b) {
    if (b->n && b->p[b->n - 1] != ' ' && b->p[b->n - 1] != '\n') ds_buf_putc(b, ' ');
}

static const char *pro_s(const w_ent *e) {
    return e->kind == W_PERSON ? (e->female ? "she" : "he") : e->kind == W_SPECIES ? "they" : "it";
}
static const char *pro_p(const w_ent *e) {
    return e->kind == W_PERSON ? (e->female ? "her" : "his") : e->kind == W_SPECIES ? "their" : "its";
}
static const char *pro_o(const w_ent *e) {
    return e->kind == W_PERSON ? (e->female ? "her" : "him") : e->kind == W_SPECIES ? "them" : "it";
}

static void ent_slots(const w_ent *e, int pron, slots *s) {
    const char *nm = e->kind == W_SPECIES ? e->plural : e->name;
    put(s, "name", e->name);
    put(s, "sg", e->name);
    put(s, "pl", e->plural);
    put(s, "s", pro_s(e));
    put(s, "p", pro_p(e));
    put(s, "o", pro_o(e));
    put(s, "S", pron ? pro_s(e) : nm);
    put(s, "P", pron ? pro_p(e) : e->poss);
    put(s, "O", pron ? pro_o(e) : nm);
}

typedef struct vtxt {
    char a_v[64], vb[64];
} vtxt;

static const char *value_str(const ds_world *w, int cls, int v) {
    return cls == WC_TOWN ? w->ents[v].name : w_values[cls].v[v];
}

static void val_slots(const ds_world *w, int cls, int v, vtxt *t, slots *s) {
    const char *x = value_str(w, cls, v);
    snprintf(t->a_v, sizeof t->a_v, "%s %s", strchr("aeiou", x[0]) ? "an" : "a", x);
    snprintf(t->vb, sizeof t->vb, "%s", x);
    size_t n = strlen(t->vb);
    if (n > 1 && t->vb[n - 1] == 's') t->vb[n - 1] = '\0';
    put(s, "v", x);
    put(s, "a_v", t->a_v);
    put(s, "vb", t->vb);
}

/* ---- values of a class within a split ------------------------------------ */

static int n_values(const ds_world *w, int cls, int split) {
    return cls == WC_TOWN ? w->n_of[split][W_TOWN] : w_values[cls].n;
}

static int value_at(const ds_world *w, int cls, int split, int k) {
    return cls == WC_TOWN ? w->of[split][W_TOWN][k] : k;
}

static int random_value(const ds_world *w, lm_rng *r, int cls, int split) {
    return value_at(w, cls, split, rnd(r, n_values(w, cls, split)));
}

/* A value of cls other than those in `not` that, if avoid is given, does
 * not occur in it. Falls back to ignoring `avoid` when none is left. */
static int other_value(const ds_world *w, lm_rng *r, int cls, int split,
                       const int *not, int n_not, const char *avoid) {
    int n = n_values(w, cls, split);
    int order[64];
    if (n > 64) n = 64;
    for (int i = 0; i < n; i++) order[i] = value_at(w, cls, split, i);
    shuffle(order, n, r);
    for (int pass = 0; pass < 2; pass++)
        for (int i = 0; i < n; i++) {
            int ok = 1;
            for (int j = 0; j < n_not; j++) ok &= order[i] != not[j];
            if (ok && pass == 0 && avoid && has_word(avoid, value_str(w, cls, order[i])))
                ok = 0;
            if (ok) return order[i];
        }
    return -1;
}

static const w_ent *random_ent(const ds_world *w, lm_rng *r, int split, int kind) {
    return &w->ents[w->of[split][kind][rnd(r, w->n_of[split][kind])]];
}

/* Kinds weighted for questions: people 40, species 35, substances 15, towns 10. */
static int random_kind(lm_rng *r) {
    int x = rnd(r, 100);
    return x < 40 ? W_PERSON : x < 75 ? W_SPECIES : x < 90 ? W_SUBSTANCE : W_TOWN;
}

/* ---- facts and passages -------------------------------------------------- */

static void fact(const ds_world *w, ds_buf *b, const w_ent *e, int a, int v, int pron, int ti) {
    slots s = {0};
    vtxt t;
    ent_slots(e, pron, &s);
    val_slots(w, w_attrs[a].cls, v, &t, &s);
    sep(b);
    sentence(b, w_attrs[a].facts[ti], &s);
}

/* The template of a fact. A species opens with its plural in the middle
 * of the sentence ("You can find glagins in the forest."), so the "they"
 * of the next sentence has an antecedent and the plural a question may ask
 * for is in the text exactly as an answer would write it. */
static int pick_ti(lm_rng *r, const w_ent *e, int a, int first) {
    const char *const *f = w_attrs[a].facts;
    int n = n_strs(f);
    if (!first || e->kind != W_SPECIES) return rnd(r, n);
    int ok[W_MAX_TPL], k = 0;
    for (int i = 0; i < n && k < W_MAX_TPL; i++)
        if (strstr(f[i], "{pl}")) ok[k++] = i;
    return k ? ok[rnd(r, k)] : rnd(r, n);
}

/* Sentences about e: attribute a (stated with value va) and n_extra other
 * attributes, in random order; the first names e, later ones use a pronoun
 * half of the time. Returns the template used for a. */
static int about(const ds_world *w, lm_rng *r, ds_buf *b, const w_ent *e, int a, int va,
                 int n_extra) {
    int list[W_MAX_ATTRS], n = 0, ti_a = 0;
    for (int i = 0; i < w->n_attrs_of[e->kind]; i++)
        if (w->attrs_of[e->kind][i] != a) list[n++] = w->attrs_of[e->kind][i];
    shuffle(list, n, r);
    if (n_extra > n) n_extra = n;
    list[n_extra++] = a;
    shuffle(list, n_extra, r);
    for (int i = 0; i < n_extra; i++) {
        int at = list[i];
        int ti = pick_ti(r, e, at, i == 0);
        if (at == a) ti_a = ti;
        fact(w, b, e, at, at == a ? va : e->val[at], i > 0 && chance(r, 1, 2), ti);
    }
    return ti_a;
}

/* Another entity of e's split and kind whose value of a differs, or NULL. */
static const w_ent *rival(const ds_world *w, lm_rng *r, const w_ent *e, int a) {
    for (int tries = 0; tries < 20; tries++) {
        const w_ent *x = random_ent(w, r, e->split, e->kind);
        if (x != e && x->val[a] != e->val[a]) return x;
    }
    return NULL;
}

static int random_attr(const ds_world *w, lm_rng *r, int kind) {
    return w->attrs_of[kind][rnd(r, w->n_attrs_of[kind])];
}

/* ---- JSON fields --------------------------------------------------------- */

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

/* ---- SciQ ---------------------------------------------------------------- */

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
    shuffle(ord, 3, r);
    for (int i = 0; i < 3; i++) ds_buf_puts(&x->d[i], d[ord[i]]);
}

/* An attribute question: "Where does Anna Stone live?" -> a town. */
static int sciq_attr(const ds_world *w, lm_rng *r, int split, item_bufs *x) {
    int kind = random_kind(r);
    const w_ent *e = random_ent(w, r, split, kind);
    int a = random_attr(w, r, kind);
    int cls = w_attrs[a].cls;
    if (n_values(w, cls, split) < 4) return -1;
    const w_ent *e2 = chance(r, 1, 4) ? rival(w, r, e, a) : NULL;
    int n_extra = rnd(r, 3);
    if (e2 && chance(r, 1, 2)) {
        about(w, r, &x->s, e2, a, e2->val[a], rnd(r, 2));
        about(w, r, &x->s, e, a, e->val[a], n_extra);
    } else {
        about(w, r, &x->s, e, a, e->val[a], n_extra);
        if (e2) about(w, r, &x->s, e2, a, e2->val[a], rnd(r, 2));
    }
    slots s = {0};
    ent_slots(e, 0, &s);
    sentence(&x->q, pick_s(r, w_attrs[a].questions), &s);
    ds_buf_puts(&x->a, value_str(w, cls, e->val[a]));
    int used[4] = {e->val[a]}, n_used = 1;
    const char *d[3];
    for (int i = 0; i < 3; i++) {
        int v = i == 0 && e2 ? e2->val[a]
                             : other_value(w, r, cls, split, used, n_used, ds_buf_cstr(&x->s));
        if (v < 0) return -1;
        used[n_used++] = v;
        d[i] = value_str(w, cls, v);
    }
    put_distractors(r, x, d);
    return 0;
}

/* Attributes the generator names directly (their place in w_attrs; checked
 * in ds_world_build). */
enum { A_JOB = 0, A_TOWN = 1, A_SP_SIZE = 5, A_SP_COLOUR = 6, A_SP_HABITAT = 7,
       A_SP_DIET = 8, A_SP_COVER = 9 };

/* Size, habitat and diet of a species (what its definition needs), in
 * random order, and maybe its colour or covering. */
static void define_block(const ds_world *w, lm_rng *r, ds_buf *b, const w_ent *e, int extra) {
    int ord[3] = {A_SP_SIZE, A_SP_HABITAT, A_SP_DIET};
    shuffle(ord, 3, r);
    for (int i = 0; i < 3; i++)
        fact(w, b, e, ord[i], e->val[ord[i]], i > 0 && chance(r, 1, 2),
             pick_ti(r, e, ord[i], i == 0));
    if (extra) {
        int at = chance(r, 1, 2) ? A_SP_COLOUR : A_SP_COVER;
        fact(w, b, e, at, e->val[at], 1, rnd(r, n_strs(w_attrs[at].facts)));
    }
}

/* "Small animals that live in the forest and eat seeds are called what?" */
static int sciq_define(const ds_world *w, lm_rng *r, int split, item_bufs *x) {
    const w_ent *e = random_ent(w, r, split, W_SPECIES), *e2 = NULL;
    if (chance(r, 1, 2))
        for (int t = 0; t < 20 && !e2; t++) {
            const w_ent *c = random_ent(w, r, split, W_SPECIES);
            if (c != e && (c->val[A_SP_HABITAT] != e->val[A_SP_HABITAT] ||
                           c->val[A_SP_DIET] != e->val[A_SP_DIET]))
                e2 = c;
        }
    int e2_first = e2 && chance(r, 1, 2);
    if (e2_first) define_block(w, r, &x->s, e2, 0);
    define_block(w, r, &x->s, e, !e2 && chance(r, 1, 2));
    if (e2 && !e2_first) define_block(w, r, &x->s, e2, 0);
    slots s = {0};
    put(&s, "size", value_str(w, WC_SIZE, e->val[A_SP_SIZE]));
    put(&s, "habitat", value_str(w, WC_HABITAT, e->val[A_SP_HABITAT]));
    put(&s, "diet", value_str(w, WC_DIET, e->val[A_SP_DIET]));
    sentence(&x->q, pick_s(r, w_define_q), &s);
    ds_buf_puts(&x->a, e->plural);
    const char *d[3];
    int nd = 0;
    if (e2) d[nd++] = e2->plural;
    for (int t = 0; t < 200 && nd < 3; t++) {
        const w_ent *c = random_ent(w, r, split, W_SPECIES);
        if (c == e || c->val[A_SP_HABITAT] == e->val[A_SP_HABITAT]) continue;
        int dup = 0;
        for (int i = 0; i < nd; i++) dup |= strcmp(d[i], c->plural) == 0;
        if (!dup && !has_word(ds_buf_cstr(&x->s), c->plural)) d[nd++] = c->plural;
    }
    if (nd < 3) return -1;
    put_distractors(r, x, d);
    return 0;
}

/* "Who is a baker?" -> the person of the support with that job. */
static int sciq_who(const ds_world *w, lm_rng *r, int split, item_bufs *x) {
    const w_ent *e = random_ent(w, r, split, W_PERSON);
    const w_ent *e2 = chance(r, 1, 2) ? rival(w, r, e, A_JOB) : NULL;
    if (e2 && chance(r, 1, 2)) {
        about(w, r, &x->s, e2, A_JOB, e2->val[A_JOB], rnd(r, 2));
        about(w, r, &x->s, e, A_JOB, e->val[A_JOB], 1 + rnd(r, 2));
    } else {
        about(w, r, &x->s, e, A_JOB, e->val[A_JOB], 1 + rnd(r, 2));
        if (e2) about(w, r, &x->s, e2, A_JOB, e2->val[A_JOB], rnd(r, 2));
    }
    slots s = {0};
    vtxt t;
    val_slots(w, WC_JOB, e->val[A_JOB], &t, &s);
    sentence(&x->q, pick_s(r, w_who_q), &s);
    ds_buf_puts(&x->a, e->name);
    const char *d[3];
    int nd = 0;
    if (e2) d[nd++] = e2->name;
    for (int tries = 0; tries < 200 && nd < 3; tries++) {
        const w_ent *c = random_ent(w, r, split, W_PERSON);
        if (c == e || c->val[A_JOB] == e->val[A_JOB]) continue;
        int dup = 0;
        for (int i = 0; i < nd; i++) dup |= strcmp(d[i], c->name) == 0;
        if (!dup && !has_word(ds_buf_cstr(&x->s), c->name)) d[nd++] = c->name;
    }
    if (nd < 3) return -1;
    put_distractors(r, x, d);
    return 0;
}

static int gen_sciq(const ds_world *w, lm_rng *r, int split, int label, ds_buf *out) {
    (void)label;
    item_bufs x = {0};
    int f = rnd(r, 10);
    int rc = f == 0 ? sciq_define(w, r, split, &x)
           : f == 1 ? sciq_who(w, r, split, &x)
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

/* ---- BoolQ and RTE ------------------------------------------------------- */

/* A passage about e stating attribute a, maybe with a rival entity; the
 * value asked about is the true one (label 1) or a false one: the rival's
 * half of the time when there is one, else one absent from the passage. */
static int passage_and_value(const ds_world *w, lm_rng *r, int split, int label,
                             int trap_den, int n_extra, ds_buf *p, const w_ent **pe,
                             int *pa, int *pv, int *ti) {
    int kind = random_kind(r);
    const w_ent *e = random_ent(w, r, split, kind);
    int a = random_attr(w, r, kind), cls = w_attrs[a].cls;
    const w_ent *e2 = chance(r, 1, trap_den) ? rival(w, r, e, a) : NULL;
    if (e2 && chance(r, 1, 2)) {
        about(w, r, p, e2, a, e2->val[a], rnd(r, 2));
        *ti = about(w, r, p, e, a, e->val[a], n_extra);
    } else {
        *ti = about(w, r, p, e, a, e->val[a], n_extra);
        if (e2) about(w, r, p, e2, a, e2->val[a], rnd(r, 2));
    }
    int v = e->val[a];
    if (!label) {
        if (e2 && chance(r, 1, 2)) v = e2->val[a];
        else v = other_value(w, r, cls, split, &e->val[a], 1, ds_buf_cstr(p));
        if (v < 0) return -1;
    }
    *pe = e;
    *pa = a;
    *pv = v;
    return 0;
}

static int gen_boolq(const ds_world *w, lm_rng *r, int split, int label, ds_buf *out) {
    ds_buf p = {0}, q = {0};
    const w_ent *e;
    int a, v, ti;
    int rc = passage_and_value(w, r, split, label, 4, rnd(r, 3), &p, &e, &a, &v, &ti);
    if (rc == 0) {
        slots s = {0};
        vtxt t;
        ent_slots(e, 0, &s);
        val_slots(w, w_attrs[a].cls, v, &t, &s);
        render(&q, pick_s(r, w_attrs[a].yesno), &s);
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
    const w_ent *e;
    int a, v, ti;
    int rc = passage_and_value(w, r, split, label == 0, 4, rnd(r, 2), &p, &e, &a, &v, &ti);
    if (rc == 0) {
        int n = n_strs(w_attrs[a].facts);
        int hi = n > 1 ? (ti + 1 + rnd(r, n - 1)) % n : 0; /* another phrasing */
        fact(w, &h, e, a, v, 0, hi);
        ds_buf_putc(out, '{');
        jfield(out, "premise", ds_buf_cstr(&p), 1);
        jfield(out, "hypothesis", ds_buf_cstr(&h), 0);
        jfield(out, "label", label == 0 ? "entailment" : "not_entailment", 0);
    }
    ds_buf_free(&p);
    ds_buf_free(&h);
    return rc;
}

/* ---- COPA and causal text ----------------------------------------------- */

/* A rule's cause or effect about person e, by name or pronoun. With
 * capital = 0 and a trailing period dropped, it can sit inside a sentence. */
static void event(ds_buf *b, const w_rule *ru, const char *thing, const w_ent *e, int effect,
                  int pron, int capital, int period) {
    const char *t = effect ? ru->effect : ru->cause;
    slots s = {0};
    ent_slots(e, 1, &s);
    if (!pron) {
        /* the first mention names the person, later ones are pronouns:
         * "Anna Stone dropped her glass." */
        static const char *keys[3] = {"S", "P", "O"};
        const char *first = NULL;
        int k0 = 0;
        for (int k = 0; k < 3; k++) {
            char tag[4] = {'{', keys[k][0], '}', 0};
            const char *at = strstr(t, tag);
            if (at && (!first || at < first)) { first = at; k0 = k; }
        }
        const char *nm = e->name;
        put(&s, keys[k0], k0 == 1 ? e->poss : nm);
    }
    put(&s, "thing", thing);
    size_t st = b->n;
    if (capital) sentence(b, t, &s);
    else render(b, t, &s);
    if (!period && b->n > st && b->p[b->n - 1] == '.') b->p[--b->n] = '\0';
}

static int other_rule(lm_rng *r, int ri) {
    for (;;) {
        int k = rnd(r, w_n_rules);
        if (w_rules[k].theme != w_rules[ri].theme) return k;
    }
}

static int gen_copa(const ds_world *w, lm_rng *r, int split, int label, ds_buf *out) {
    const w_ent *e = random_ent(w, r, split, W_PERSON);
    int ri = rnd(r, w_n_rules), ro = other_rule(r, ri);
    int effect_q = chance(r, 1, 2);
    char t1[16] = "", t2[16] = "";
    if (w_rules[ri].things) pick_bar(r, w_rules[ri].things, t1, sizeof t1);
    if (w_rules[ro].things) pick_bar(r, w_rules[ro].things, t2, sizeof t2);
    ds_buf prem = {0}, right = {0}, wrong = {0};
    /* the premise names the person; the choices use pronouns */
    event(&prem, &w_rules[ri], t1, e, !effect_q, 0, 1, 1);
    event(&right, &w_rules[ri], t1, e, effect_q, 1, 1, 1);
    event(&wrong, &w_rules[ro], t2, e, effect_q, 1, 1, 1);
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

/* ---- WSC ---------------------------------------------------------------- */

static const w_ent *opposite(const ds_world *w, lm_rng *r, const w_ent *a) {
    for (int t = 0; t < 100; t++) {
        const w_ent *b = random_ent(w, r, a->split, W_PERSON);
        if (b->female != a->female) return b;
    }
    return NULL;
}

/* Renders a WSC sentence; fills the pronoun and both candidate spans. */
typedef struct wsc_out {
    ds_buf text;
    const char *pron;
    size_t pron_at;
    char ref[48], other[48];
    size_t ref_at, other_at;
} wsc_out;

static int wsc_render(const ds_world *w, lm_rng *r, int split, const w_wsc *t, wsc_out *o) {
    const w_ent *A = random_ent(w, r, split, W_PERSON), *B = opposite(w, r, A);
    if (!B) return -1;
    char pick[16] = "", the[24];
    if (t->pick) pick_bar(r, t->pick, pick, sizeof pick);
    slots s = {0};
    put(&s, "A", A->name);
    put(&s, "B", B->name);
    const w_ent *ref = t->ref == 'B' ? B : A;
    put(&s, "s", pro_s(ref));
    put(&s, "o", pro_o(ref));
    put(&s, "it", "it");
    put(&s, "they", "they");
    put(&s, "thing", pick);
    put(&s, "group", pick);
    sentence(&o->text, t->text, &s);
    const char *pk = strstr(t->text, "{s}") ? "s" : strstr(t->text, "{o}") ? "o"
                   : strstr(t->text, "{it}") ? "it" : "they";
    o->pron = strcmp(pk, "s") == 0 ? pro_s(ref) : strcmp(pk, "o") == 0 ? pro_o(ref) : pk;
    o->pron_at = slot_at(&s, pk);
    if (t->ref == 'A' || t->ref == 'B') {
        const w_ent *oth = ref == A ? B : A;
        snprintf(o->ref, sizeof o->ref, "%s", ref->name);
        snprintf(o->other, sizeof o->other, "%s", oth->name);
        o->ref_at = slot_at(&s, ref == A ? "A" : "B");
        o->other_at = slot_at(&s, ref == A ? "B" : "A");
    } else {
        snprintf(the, sizeof the, "the %s", pick);
        snprintf(o->ref, sizeof o->ref, "%s", the);
        snprintf(o->other, sizeof o->other, "%s", A->name);
        o->ref_at = slot_at(&s, t->ref == 'T' ? "thing" : "group") - 4;
        o->other_at = slot_at(&s, "A");
    }
    return o->text.oom ? -1 : 0;
}

static int gen_wsc(const ds_world *w, lm_rng *r, int split, int label, ds_buf *out) {
    wsc_out o = {0};
    if (wsc_render(w, r, split, &w_wscs[rnd(r, w_n_wscs)], &o)) {
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

/* ---- tasks: items into files ------------------------------------------- */

typedef int (*gen_fn)(const ds_world *w, lm_rng *r, int split, int label, ds_buf *out);

enum { T_SCIQ, T_COPA, T_RTE, T_BOOLQ, T_WSC, T_COUNT };

static const struct {
    const char *dir;        /* under DIR */
    ds_format fmt;
    gen_fn gen;
    int bool_label;         /* label written as true/false after idx */
} tasks[T_COUNT] = {
    {"sciq", DS_FMT_SCIQ, gen_sciq, 0},
    {"superglue/COPA", DS_FMT_COPA, gen_copa, 0},
    {"superglue/RTE", DS_FMT_RTE, gen_rte, 0},
    {"superglue/BoolQ", DS_FMT_BOOLQ, gen_boolq, 1},
    {"superglue/WSC", DS_FMT_WSC, gen_wsc, 1},
};

static const char *split_file(int task, int split) {
    static const char *sciq[] = {"train.json", "valid.json", "test.json"};
    static const char *glue[] = {"train.jsonl", "val.jsonl", "test.jsonl"};
    return task == T_SCIQ ? sciq[split] : glue[split];
}

static uint64_t fnv(const char *s, size_t n) {
    uint64_t h = 1469598103934665603ull;
    for (size_t i = 0; i < n; i++) h = (h ^ (unsigned char)s[i]) * 1099511628211ull;
    return h ? h : 1;
}

/* A set of 64-bit hashes (open addressing; 0 = empty). */
typedef struct hset {
    uint64_t *v;
    size_t cap, n;
} hset;

static int hset_add(hset *h, uint64_t x) { /* 1 added, 0 present, -1 OOM */
    if (h->n * 2 >= h->cap) {
        size_t cap = h->cap ? h->cap * 2 : 1024;
        uint64_t *v = calloc(cap, sizeof *v);
        if (!v) return -1;
        for (size_t i = 0; i < h->cap; i++)
            if (h->v[i]) {
                size_t j = h->v[i] & (cap - 1);
                while (v[j]) j = (j + 1) & (cap - 1);
                v[j] = h->v[i];
            }
        free(h->v);
        h->v = v;
        h->cap = cap;
    }
    size_t j = x & (h->cap - 1);
    while (h->v[j]) {
        if (h->v[j] == x) return 0;
        j = (j + 1) & (h->cap - 1);
    }
    h->v[j] = x;
    h->n++;
    return 1;
}

static int hset_has(const hset *h, uint64_t x) {
    if (!h->cap) return 0;
    size_t j = x & (h->cap - 1);
    while (h->v[j]) {
        if (h->v[j] == x) return 1;
        j = (j + 1) & (h->cap - 1);
    }
    return 0;
}

/* One item as a JSON object, its label drawn by the caller. */
static int one_item(const ds_world *w, lm_rng *r, int task, int split, int label, long idx,
                    hset *seen, ds_buf *out) {
    for (int tries = 0; tries < 100; tries++) {
        size_t st = out->n;
        if (tasks[task].gen(w, r, split, label, out) == 0 && !out->oom) {
            int fresh = seen ? hset_add(seen, fnv(out->p + st, out->n - st)) : 1;
            if (fresh < 0) return -1;
            if (fresh) {
                if (task != T_SCIQ) jint(out, "idx", idx);
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
    return task == T_SCIQ ? 3 : labels[i];
}

static int write_task(const ds_world *w, int task, int split, const char *dir, lm_err *err) {
    lm_rng r;
    stream(&r, w->o.seed, 100 + (uint64_t)task * 10 + (uint64_t)split);
    int n = w->o.n_items[split];
    int *labels = malloc((size_t)(n ? n : 1) * sizeof *labels);
    if (!labels) return lm_errf(err, "out of memory");
    for (int i = 0; i < n; i++) labels[i] = i % 2;
    shuffle(labels, n, &r);
    hset seen = {0};
    ds_buf b = {0};
    if (task == T_SCIQ) ds_buf_puts(&b, "[\n");
    int rc = 0;
    for (int i = 0; i < n && rc == 0; i++) {
        rc = one_item(w, &r, task, split, item_label(task, labels, i), i, &seen, &b);
        if (task == T_SCIQ) ds_buf_puts(&b, i + 1 < n ? ",\n" : "\n");
        else ds_buf_putc(&b, '\n');
    }
    if (task == T_SCIQ) ds_buf_puts(&b, "]\n");
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
static int harness_text(int task, const char *json, size_t len, ds_buf *out) {
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

/* ---- corpus documents --------------------------------------------------- */

static void doc_profile(const ds_world *w, lm_rng *r, ds_buf *b) {
    int kind = random_kind(r);
    const w_ent *e = random_ent(w, r, DS_SPLIT_TRAIN, kind);
    int list[W_MAX_ATTRS], n = w->n_attrs_of[kind];
    memcpy(list, w->attrs_of[kind], (size_t)n * sizeof *list);
    shuffle(list, n, r);
    int k = 2 + rnd(r, n - 1);
    for (int i = 0; i < k; i++)
        fact(w, b, e, list[i], e->val[list[i]], i > 0 && chance(r, 2, 3),
             pick_ti(r, e, list[i], i == 0));
    if (kind == W_PERSON) {
        if (e->friend_ >= 0 && chance(r, 1, 2)) {
            sep(b);
            ds_buf_puts(b, chance(r, 1, 2) ? (e->female ? "She" : "He") : e->name);
            ds_buf_puts(b, chance(r, 1, 2) ? " is a good friend of " : " often visits ");
            ds_buf_puts(b, w->ents[e->friend_].name);
            ds_buf_putc(b, '.');
        }
        if (chance(r, 1, 3)) {
            sep(b);
            ds_buf_puts(b, w_job_lines[e->val[A_JOB]]);
        }
    } else if (kind == W_SPECIES && chance(r, 1, 2)) {
        slots s = {0};
        ent_slots(e, 0, &s);
        put(&s, "size", value_str(w, WC_SIZE, e->val[A_SP_SIZE]));
        put(&s, "habitat", value_str(w, WC_HABITAT, e->val[A_SP_HABITAT]));
        put(&s, "diet", value_str(w, WC_DIET, e->val[A_SP_DIET]));
        sep(b);
        sentence(b, pick_s(r, w_define_s), &s);
    }
}

static void doc_story(const ds_world *w, lm_rng *r, ds_buf *b) {
    const w_ent *e = random_ent(w, r, 0, W_PERSON);
    int first = rnd(r, w->n_attrs_of[W_PERSON]);
    int a1 = w->attrs_of[W_PERSON][first];
    int a2 = w->attrs_of[W_PERSON][(first + 1 + rnd(r, w->n_attrs_of[W_PERSON] - 1)) %
                                   w->n_attrs_of[W_PERSON]];
    fact(w, b, e, a1, e->val[a1], 0, rnd(r, n_strs(w_attrs[a1].facts)));
    fact(w, b, e, a2, e->val[a2], 1, rnd(r, n_strs(w_attrs[a2].facts)));
    int events = 1 + rnd(r, 2), last = -1;
    for (int k = 0; k < events; k++) {
        int ri = last < 0 ? rnd(r, w_n_rules) : other_rule(r, last);
        last = ri;
        char thing[16] = "";
        if (w_rules[ri].things) pick_bar(r, w_rules[ri].things, thing, sizeof thing);
        sep(b);
        ds_buf_puts(b, k == 0 ? pick_s(r, w_story_when) : "Later,");
        ds_buf_putc(b, ' ');
        event(b, &w_rules[ri], thing, e, 0, 1, 0, 1);
        sep(b);
        const char *so = pick_s(r, w_story_so);
        ds_buf_puts(b, so);
        ds_buf_putc(b, ' ');
        event(b, &w_rules[ri], thing, e, 1, 1, 0, 1);
        if (k == 0 && e->friend_ >= 0 && chance(r, 1, 2)) {
            const w_ent *f = &w->ents[e->friend_];
            sep(b);
            ds_buf_printf(b, "Then %s met %s.", e->female ? "she" : "he", f->name);
        }
    }
    slots s = {0};
    ent_slots(e, 1, &s);
    put(&s, "v", w->ents[e->val[A_TOWN]].name);
    sep(b);
    sentence(b, pick_s(r, w_story_end), &s);
}

static void doc_causal(const ds_world *w, lm_rng *r, ds_buf *b) {
    int k = 3 + rnd(r, 3);
    for (int i = 0; i < k; i++) {
        const w_ent *e = random_ent(w, r, 0, W_PERSON);
        int ri = rnd(r, w_n_rules);
        char thing[16] = "";
        if (w_rules[ri].things) pick_bar(r, w_rules[ri].things, thing, sizeof thing);
        ds_buf cn = {0}, cp = {0}, en = {0}, ep = {0};
        event(&cn, &w_rules[ri], thing, e, 0, 0, 1, 0);
        event(&cp, &w_rules[ri], thing, e, 0, 1, 0, 0);
        event(&en, &w_rules[ri], thing, e, 1, 0, 1, 0);
        event(&ep, &w_rules[ri], thing, e, 1, 1, 0, 0);
        slots s = {0};
        put(&s, "CN", ds_buf_cstr(&cn) ? cn.p : "");
        put(&s, "cp", ds_buf_cstr(&cp) ? cp.p : "");
        put(&s, "EN", ds_buf_cstr(&en) ? en.p : "");
        put(&s, "ep", ds_buf_cstr(&ep) ? ep.p : "");
        sep(b);
        sentence(b, pick_s(r, w_causal), &s);
        ds_buf_free(&cn);
        ds_buf_free(&cp);
        ds_buf_free(&en);
        ds_buf_free(&ep);
    }
}

static void doc_wsc_text(const ds_world *w, lm_rng *r, ds_buf *b) {
    int k = 2 + rnd(r, 3);
    for (int i = 0; i < k; i++) {
        wsc_out o = {0};
        if (wsc_render(w, r, 0, &w_wscs[rnd(r, w_n_wscs)], &o) == 0) {
            sep(b);
            ds_buf_puts(b, ds_buf_cstr(&o.text));
        }
        ds_buf_free(&o.text);
    }
}

static void doc_general(lm_rng *r, ds_buf *b) {
    int k = 2 + rnd(r, 3);
    for (int i = 0; i < k; i++) {
        sep(b);
        if (chance(r, 1, 2)) ds_buf_puts(b, w_job_lines[rnd(r, w_values[WC_JOB].n)]);
        else ds_buf_puts(b, pick_s(r, w_general));
    }
}

/* A task item of the train split shown as its harness prompt + answer. */
static int doc_task(const ds_world *w, lm_rng *r, int task, ds_buf *b) {
    int lines = task == T_COPA ? 3 : 1;
    for (int i = 0; i < lines; i++) {
        ds_buf j = {0};
        int label = task == T_SCIQ ? 3 : rnd(r, 2);
        int rc = one_item(w, r, task, 0, label, 0, NULL, &j);
        if (rc == 0 && i) ds_buf_putc(b, '\n');
        if (rc == 0) rc = harness_text(task, j.p, j.n, b);
        ds_buf_free(&j);
        if (rc) return -1;
    }
    return 0;
}

/* A reading exercise: a short passage about a train entity, then two to
 * four questions on it in the harness styles of SciQ ("Question: q\nAnswer:
 * v"), BoolQ ("Question: q?\nAnswer: yes") and RTE ("Question: s True or
 * False?\nAnswer: True"). The same fact is often asked with its true and a
 * false value, so what decides the answer is the passage. */
static void doc_read(const ds_world *w, lm_rng *r, ds_buf *b) {
    int kind = random_kind(r);
    const w_ent *e = random_ent(w, r, DS_SPLIT_TRAIN, kind);
    int list[W_MAX_ATTRS], n = w->n_attrs_of[kind];
    memcpy(list, w->attrs_of[kind], (size_t)n * sizeof *list);
    shuffle(list, n, r);
    int k = 1 + rnd(r, n < 4 ? n : 4);
    const w_ent *e2 = chance(r, 1, 4) ? rival(w, r, e, list[0]) : NULL;
    int e2_first = e2 && chance(r, 1, 2);
    if (e2_first) fact(w, b, e2, list[0], e2->val[list[0]], 0, pick_ti(r, e2, list[0], 1));
    int tis[W_MAX_ATTRS];
    for (int i = 0; i < k; i++) {
        tis[i] = pick_ti(r, e, list[i], i == 0);
        fact(w, b, e, list[i], e->val[list[i]], i > 0 && chance(r, 1, 2), tis[i]);
    }
    if (e2 && !e2_first) fact(w, b, e2, list[0], e2->val[list[0]], 0, pick_ti(r, e2, list[0], 1));
    ds_buf passage = {0};
    ds_buf_puts(&passage, ds_buf_cstr(b) ? b->p : "");
    int nq = 2 + rnd(r, 3), asked[8][3], n_asked = 0;
    for (int q = 0; q < nq; q++) {
        int i = rnd(r, k), a = list[i], cls = w_attrs[a].cls, v = e->val[a];
        int style = rnd(r, 3), yes = chance(r, 1, 2);
        int qv = v;
        if (style && !yes) {
            qv = e2 && i == 0 && chance(r, 1, 2)
                     ? e2->val[a]
                     : other_value(w, r, cls, DS_SPLIT_TRAIN, &v, 1, passage.p);
            if (qv < 0) continue;
        }
        int again = 0; /* never the same question twice */
        for (int j = 0; j < n_asked; j++)
            again |= asked[j][0] == a && asked[j][1] == style && asked[j][2] == qv;
        if (again) continue;
        asked[n_asked][0] = a;
        asked[n_asked][1] = style;
        asked[n_asked++][2] = qv;
        slots s = {0};
        vtxt t;
        ent_slots(e, 0, &s);
        val_slots(w, cls, qv, &t, &s);
        ds_buf_puts(b, "\nQuestion: ");
        if (style == 0) {
            sentence(b, pick_s(r, w_attrs[a].questions), &s);
            ds_buf_puts(b, "\nAnswer: ");
            ds_buf_puts(b, value_str(w, cls, v));
        } else if (style == 1) {
            render(b, pick_s(r, w_attrs[a].yesno), &s);
            ds_buf_puts(b, yes ? "?\nAnswer: yes" : "?\nAnswer: no");
        } else {
            int nt = n_strs(w_attrs[a].facts);
            size_t st = b->n;
            fact(w, b, e, a, qv, 0, nt > 1 ? (tis[i] + 1 + rnd(r, nt - 1)) % nt : 0);
            if (b->n > st && b->p[st] == ' ') { /* fact() may lead with a space */
                memmove(b->p + st, b->p + st + 1, b->n - st);
                b->n--;
            }
            ds_buf_puts(b, yes ? " True or False?\nAnswer: True" : " True or False?\nAnswer: False");
        }
    }
    ds_buf_free(&passage);
}

/* One document of the mixture; weights are per document. */
static int doc(const ds_world *w, lm_rng *r, ds_buf *b) {
    static const int weight[] = {14, 12, 10, 4, 2, 8, 8, 6, 8, 8, 24};
    int total = 0;
    for (size_t i = 0; i < sizeof weight / sizeof *weight; i++) total += weight[i];
    int x = rnd(r, total), k = 0;
    while (x >= weight[k]) x -= weight[k++];
    switch (k) {
    case 0: doc_profile(w, r, b); return 0;
    case 1: doc_story(w, r, b); return 0;
    case 2: doc_causal(w, r, b); return 0;
    case 3: doc_wsc_text(w, r, b); return 0;
    case 4: doc_general(r, b); return 0;
    case 5: return doc_task(w, r, T_SCIQ, b);
    case 6: return doc_task(w, r, T_BOOLQ, b);
    case 7: return doc_task(w, r, T_RTE, b);
    case 8: return doc_task(w, r, T_COPA, b);
    case 9: return doc_task(w, r, T_WSC, b);
    default: doc_read(w, r, b); return 0;
    }
}

/* Documents until `bytes`, separated by blank lines. Documents in `skip`
 * are not written; written ones are added to `seen` when given. */
static int write_text(const ds_world *w, uint64_t tag, size_t bytes, hset *seen,
                      const hset *skip, const char *path, const char *stage,
                      ds_world_progress cb, void *ud, lm_err *err) {
    lm_rng r;
    stream(&r, w->o.seed, tag);
    ds_buf out = {0}, d = {0};
    size_t next_report = 0;
    int misses = 0;
    while (out.n < bytes) {
        d.n = 0;
        if (doc(w, &r, &d) || d.oom) {
            ds_buf_free(&out);
            ds_buf_free(&d);
            return lm_errf(err, "%s: failed to render a document", path);
        }
        uint64_t h = fnv(d.p, d.n);
        if (skip && hset_has(skip, h)) {
            if (++misses > 100000) break;
            continue;
        }
        if (seen && hset_add(seen, h) < 0) out.oom = 1;
        ds_buf_put(&out, d.p, d.n);
        ds_buf_puts(&out, "\n\n");
        if (cb && out.n >= next_report) {
            cb(stage, bytes ? (double)out.n / (double)bytes : 1.0, ud);
            next_report = out.n + 65536;
        }
    }
    ds_buf_free(&d);
    int rc = out.oom ? lm_errf(err, "%s: out of memory", path)
                     : ds_write_file(path, out.p ? out.p : "", out.n, err);
    ds_buf_free(&out);
    return rc;
}

/* ---- instruction chats --------------------------------------------------- */

static void chat_attr(const ds_world *w, lm_rng *r, int type, ds_buf *q, ds_buf *a) {
    for (;;) {
        int kind = random_kind(r);
        const w_ent *e = random_ent(w, r, 0, kind);
        int at = random_attr(w, r, kind), v = e->val[at], cls = w_attrs[at].cls;
        slots s = {0};
        vtxt t;
        ent_slots(e, 0, &s);
        int mode = type == DS_Q_OTHER ? rnd(r, 3) : 0;
        if (mode == 0) {
            if (w->n_qt[at][type] == 0) continue;
            int ti = w->qt[at][type][rnd(r, w->n_qt[at][type])];
            sentence(q, w_attrs[at].questions[ti], &s);
        } else if (mode == 1) {
            /* yes/no: "Is Anna Stone a baker?" */
            int yes = chance(r, 1, 2);
            int qv = yes ? v : other_value(w, r, cls, 0, &v, 1, NULL);
            if (qv < 0) continue;
            val_slots(w, cls, qv, &t, &s);
            sentence(q, pick_s(r, w_attrs[at].yesno), &s);
            ds_buf_putc(q, '?');
            ds_buf_puts(a, yes ? "Yes." : "No.");
        } else {
            sentence(q, pick_s(r, w_tell_q), &s);
            about(w, r, a, e, at, v, 2 + rnd(r, 2));
            return;
        }
        fact(w, a, e, at, v, 0, pick_ti(r, e, at, 1));
        if (chance(r, 1, 2)) {
            int other = random_attr(w, r, kind);
            if (other != at)
                fact(w, a, e, other, e->val[other], 1, rnd(r, n_strs(w_attrs[other].facts)));
        }
        return;
    }
}

static void chat_rule(const ds_world *w, lm_rng *r, int type, ds_buf *q, ds_buf *a) {
    const w_ent *e = random_ent(w, r, 0, W_PERSON);
    int ri = rnd(r, w_n_rules);
    const w_rule *ru = &w_rules[ri];
    char thing[16] = "";
    if (ru->things) pick_bar(r, ru->things, thing, sizeof thing);
    if (type == DS_Q_WHY) {
        slots s = {0};
        ent_slots(e, 1, &s);
        put(&s, "thing", thing);
        sentence(q, ru->why_q, &s);
        sentence(a, ru->why_a, &s);
        return;
    }
    ds_buf cn = {0};
    event(&cn, ru, thing, e, 0, 0, 1, 0);
    slots s = {0};
    put(&s, "CN", ds_buf_cstr(&cn) ? cn.p : "");
    sentence(q, pick_s(r, w_rule_what), &s);
    ds_buf_free(&cn);
    event(a, ru, thing, e, 1, 1, 1, 1);
}

static int write_instructions(const ds_world *w, const char *path, ds_world_progress cb,
                              void *ud, lm_err *err) {
    lm_rng r;
    stream(&r, w->o.seed, 3);
    ds_buf out = {0}, q = {0}, a = {0}, t = {0};
    hset seen = {0};
    int n = w->o.n_instructions, misses = 0;
    for (int i = 0; i < n;) {
        q.n = a.n = t.n = 0;
        int type = rnd(&r, DS_Q_COUNT);
        if (type == DS_Q_WHY || (type == DS_Q_WHAT && chance(&r, 1, 5)))
            chat_rule(w, &r, type, &q, &a);
        else
            chat_attr(w, &r, type, &q, &a);
        ds_buf_puts(&t, "### Human: ");
        ds_buf_puts(&t, ds_buf_cstr(&q));
        ds_buf_puts(&t, " ### Assistant: ");
        ds_buf_puts(&t, ds_buf_cstr(&a));
        if (t.oom) break;
        int fresh = hset_add(&seen, fnv(t.p, t.n));
        if (fresh < 0) { out.oom = 1; break; }
        if (!fresh && ++misses < 100 * (n + 1)) continue;
        ds_buf_puts(&out, "{\"text\": ");
        ds_buf_json_str(&out, t.p);
        ds_buf_puts(&out, "}\n");
        i++;
        if (cb && i % 256 == 0) cb("instructions", (double)i / n, ud);
    }
    int rc = out.oom || q.oom || a.oom || t.oom ? lm_errf(err, "%s: out of memory", path)
           : ds_write_file(path, out.p ? out.p : "", out.n, err);
    ds_buf_free(&out);
    ds_buf_free(&q);
    ds_buf_free(&a);
    ds_buf_free(&t);
    free(seen.v);
    return rc;
}

/* ---- building the world ------------------------------------------------- */

void ds_world_default_opts(ds_world_opts *o) {
    memset(o, 0, sizeof *o);
    o->seed = 1;
    o->corpus_bytes = 3000000;
    o->heldout_bytes = 300000;
    o->n_instructions = 4000;
    int items[] = {500, 300, 300}, people[] = {300, 80, 80}, species[] = {60, 20, 20},
        subs[] = {30, 10, 10}, towns[] = {16, 6, 6};
    for (int s = 0; s < DS_SPLITS; s++) {
        o->n_items[s] = items[s];
        o->n_people[s] = people[s];
        o->n_species[s] = species[s];
        o->n_substances[s] = subs[s];
        o->n_towns[s] = towns[s];
    }
}

/* Lower-case words of every template and list: invented names avoid them. */
typedef struct wordset {
    char **w;
    int n, cap, oom;
} wordset;

static void add_words(const char *s, void *ud) {
    wordset *ws = ud;
    while (*s) {
        while (*s && !isalpha((unsigned char)*s)) s++;
        const char *b = s;
        while (isalpha((unsigned char)*s)) s++;
        if (s == b) continue;
        if (ws->n == ws->cap) {
            int cap = ws->cap ? ws->cap * 2 : 512;
            char **p = realloc(ws->w, (size_t)cap * sizeof *p);
            if (!p) { ws->oom = 1; return; }
            ws->w = p;
            ws->cap = cap;
        }
        char *x = malloc((size_t)(s - b) + 1);
        if (!x) { ws->oom = 1; return; }
        for (size_t i = 0; i < (size_t)(s - b); i++) x[i] = (char)tolower((unsigned char)b[i]);
        x[s - b] = '\0';
        ws->w[ws->n++] = x;
    }
}

static int cmp_pstr(const void *a, const void *b) {
    return strcmp(*(char *const *)a, *(char *const *)b);
}

static int in_words(const wordset *ws, const char *x) {
    return bsearch(&x, ws->w, (size_t)ws->n, sizeof *ws->w, cmp_pstr) != NULL;
}

static void free_words(wordset *ws) {
    for (int i = 0; i < ws->n; i++) free(ws->w[i]);
    free(ws->w);
}

/* An invented word not in the vocabulary and not yet used. */
static int invent(lm_rng *r, const wordset *ws, hset *used, int substance, char *out, size_t cap) {
    for (int tries = 0; tries < 10000; tries++) {
        const char *o1 = w_onsets.v[rnd(r, w_onsets.n)], *v1 = w_vowels.v[rnd(r, w_vowels.n)];
        const char *m = w_mids.v[rnd(r, w_mids.n)];
        if (substance)
            snprintf(out, cap, "%s%s%s%s", o1, v1, m, w_sub_suffixes.v[rnd(r, w_sub_suffixes.n)]);
        else
            snprintf(out, cap, "%s%s%s%s%s", o1, v1, m, w_vowels.v[rnd(r, w_vowels.n)],
                     w_codas.v[rnd(r, w_codas.n)]);
        size_t n = strlen(out);
        if (n < 4) continue;
        char plural[40];
        snprintf(plural, sizeof plural, "%ss", out);
        if (in_words(ws, out) || in_words(ws, plural)) continue;
        if (!hset_has(used, fnv(out, n)) && !hset_has(used, fnv(plural, n + 1))) {
            if (hset_add(used, fnv(out, n)) < 0 || hset_add(used, fnv(plural, n + 1)) < 0)
                return -1;
            return 0;
        }
    }
    return -1;
}

static int check_opts(const ds_world_opts *o, lm_err *err) {
    static const char *sn[] = {"train", "valid", "test"};
    for (int s = 0; s < DS_SPLITS; s++) {
        if (o->n_people[s] < 8 || o->n_people[s] > 400)
            return lm_errf(err, "world: %s people must be in [8, 400], not %d", sn[s], o->n_people[s]);
        if (o->n_species[s] < 6 || o->n_species[s] > 1000)
            return lm_errf(err, "world: %s species must be in [6, 1000], not %d", sn[s], o->n_species[s]);
        if (o->n_substances[s] < 2 || o->n_substances[s] > 500)
            return lm_errf(err, "world: %s substances must be in [2, 500], not %d", sn[s], o->n_substances[s]);
        if (o->n_towns[s] < 4 || o->n_towns[s] > 50)
            return lm_errf(err, "world: %s towns must be in [4, 50], not %d", sn[s], o->n_towns[s]);
        if (o->n_items[s] < 0 || o->n_items[s] > 1000000)
            return lm_errf(err, "world: %s items must be in [0, 1000000], not %d", sn[s], o->n_items[s]);
    }
    int people = o->n_people[0] + o->n_people[1] + o->n_people[2];
    int towns = o->n_towns[0] + o->n_towns[1] + o->n_towns[2];
    int fem = w_first_f.n * w_surnames.n, mal = w_first_m.n * w_surnames.n;
    if ((people + 1) / 2 > (fem < mal ? fem : mal))
        return lm_errf(err, "world: %d people need more names than the lists hold", people);
    if (towns > w_town_pre.n * w_town_suf.n)
        return lm_errf(err, "world: %d towns need more names than the lists hold", towns);
    if (o->n_instructions < 0 || o->n_instructions > 10000000)
        return lm_errf(err, "world: instructions must be in [0, 10000000], not %d", o->n_instructions);
    return 0;
}

int ds_world_build(const ds_world_opts *o, ds_world **out, lm_err *err) {
    *out = NULL;
    if (check_opts(o, err)) return -1;
    ds_world *w = calloc(1, sizeof *w);
    if (!w) return lm_errf(err, "out of memory");
    w->o = *o;
    if (w_attrs[A_JOB].cls != WC_JOB || w_attrs[A_TOWN].cls != WC_TOWN ||
        w_attrs[A_SP_SIZE].cls != WC_SIZE || w_attrs[A_SP_COLOUR].cls != WC_COLOUR ||
        w_attrs[A_SP_HABITAT].cls != WC_HABITAT || w_attrs[A_SP_DIET].cls != WC_DIET ||
        w_attrs[A_SP_COVER].cls != WC_COVER || w_n_attrs > W_MAX_ATTRS) {
        free(w);
        return lm_errf(err, "world: the attribute table and world.c disagree");
    }
    for (int a = 0; a < w_n_attrs && a < W_MAX_ATTRS; a++) {
        int k = w_attrs[a].kind;
        w->attrs_of[k][w->n_attrs_of[k]++] = a;
        for (int i = 0; w_attrs[a].questions[i] && i < W_MAX_TPL; i++) {
            ds_qtype t = ds_classify_question(w_attrs[a].questions[i]);
            w->qt[a][t][w->n_qt[a][t]++] = i;
        }
    }
    int counts[W_KINDS][DS_SPLITS];
    int total = 0;
    for (int s = 0; s < DS_SPLITS; s++) {
        counts[W_PERSON][s] = o->n_people[s];
        counts[W_SPECIES][s] = o->n_species[s];
        counts[W_SUBSTANCE][s] = o->n_substances[s];
        counts[W_TOWN][s] = o->n_towns[s];
        for (int k = 0; k < W_KINDS; k++) total += counts[k][s];
    }
    w->ents = calloc((size_t)total, sizeof *w->ents);
    wordset ws = {0};
    hset used = {0};
    lm_rng r;
    stream(&r, o->seed, 0);
    int rc = 0;
    if (!w->ents) { rc = lm_errf(err, "out of memory"); goto done; }
    w_text_each(add_words, &ws);
    if (ws.oom) { rc = lm_errf(err, "out of memory"); goto done; }
    qsort(ws.w, (size_t)ws.n, sizeof *ws.w, cmp_pstr);

    /* name pools: people (alternating genders so every split has both),
     * towns; shuffled, then dealt out split by split */
    int nf = w_first_f.n * w_surnames.n, nm = w_first_m.n * w_surnames.n;
    int *pf = malloc((size_t)nf * sizeof *pf), *pm = malloc((size_t)nm * sizeof *pm);
    int nt = w_town_pre.n * w_town_suf.n;
    int *pt = malloc((size_t)nt * sizeof *pt);
    if (!pf || !pm || !pt) {
        free(pf); free(pm); free(pt);
        rc = lm_errf(err, "out of memory");
        goto done;
    }
    for (int i = 0; i < nf; i++) pf[i] = i;
    for (int i = 0; i < nm; i++) pm[i] = i;
    for (int i = 0; i < nt; i++) pt[i] = i;
    shuffle(pf, nf, &r);
    shuffle(pm, nm, &r);
    shuffle(pt, nt, &r);
    int ifem = 0, imal = 0, itown = 0;
    for (int s = 0; s < DS_SPLITS && rc == 0; s++)
        for (int k = 0; k < W_KINDS && rc == 0; k++)
            for (int i = 0; i < counts[k][s]; i++) {
                w_ent *e = &w->ents[w->n_ents++];
                e->kind = k;
                e->split = s;
                e->friend_ = -1;
                if (k == W_PERSON) {
                    e->female = i % 2 == 0;
                    int c = e->female ? pf[ifem++] : pm[imal++];
                    const w_list *first = e->female ? &w_first_f : &w_first_m;
                    snprintf(e->name, sizeof e->name, "%s %s", first->v[c % first->n],
                             w_surnames.v[c / first->n]);
                } else if (k == W_TOWN) {
                    int c = pt[itown++];
                    snprintf(e->name, sizeof e->name, "%s%s", w_town_pre.v[c % w_town_pre.n],
                             w_town_suf.v[c / w_town_pre.n]);
                } else if (invent(&r, &ws, &used, k == W_SUBSTANCE, e->name, sizeof e->name)) {
                    rc = lm_errf(err, "world: ran out of invented names");
                    break;
                }
                snprintf(e->plural, sizeof e->plural, k == W_SPECIES ? "%ss" : "%s", e->name);
                snprintf(e->poss, sizeof e->poss, "%s's", e->name);
            }
    free(pf);
    free(pm);
    free(pt);
    if (rc) goto done;

    for (int s = 0; s < DS_SPLITS; s++)
        for (int k = 0; k < W_KINDS; k++) {
            w->of[s][k] = malloc((size_t)counts[k][s] * sizeof(int));
            if (!w->of[s][k]) { rc = lm_errf(err, "out of memory"); goto done; }
        }
    for (int i = 0; i < w->n_ents; i++) {
        w_ent *e = &w->ents[i];
        w->of[e->split][e->kind][w->n_of[e->split][e->kind]++] = i;
    }
    /* attributes: uniform values; towns and friends from the same split */
    for (int i = 0; i < w->n_ents; i++) {
        w_ent *e = &w->ents[i];
        for (int j = 0; j < w->n_attrs_of[e->kind]; j++) {
            int a = w->attrs_of[e->kind][j];
            e->val[a] = random_value(w, &r, w_attrs[a].cls, e->split);
        }
        if (e->kind == W_PERSON) {
            int f;
            do f = w->of[e->split][W_PERSON][rnd(&r, w->n_of[e->split][W_PERSON])];
            while (f == i);
            e->friend_ = f;
        }
    }
    for (int s = 0; s < DS_SPLITS; s++) {
        w->names[s] = malloc((size_t)(total * 2) * sizeof(char *));
        if (!w->names[s]) { rc = lm_errf(err, "out of memory"); goto done; }
    }
    for (int i = 0; i < w->n_ents; i++) {
        w_ent *e = &w->ents[i];
        w->names[e->split][w->n_names[e->split]++] = e->name;
        if (e->kind == W_SPECIES) w->names[e->split][w->n_names[e->split]++] = e->plural;
    }
done:
    free_words(&ws);
    free(used.v);
    if (rc) {
        ds_world_free(w);
        return -1;
    }
    *out = w;
    return 0;
}

void ds_world_free(ds_world *w) {
    if (!w) return;
    for (int s = 0; s < DS_SPLITS; s++) {
        for (int k = 0; k < W_KINDS; k++) free(w->of[s][k]);
        free(w->names[s]);
    }
    free(w->ents);
    free(w);
}

int ds_world_names(const ds_world *w, int split, const char *const **names, int *n) {
    if (split < 0 || split >= DS_SPLITS) return -1;
    *names = w->names[split];
    *n = w->n_names[split];
    return 0;
}

/* ---- writing ------------------------------------------------------------ */

static int make_dir(const char *path, lm_err *err) {
    char tmp[4096];
    size_t n = strlen(path);
    if (n >= sizeof tmp) return lm_errf(err, "%s: path too long", path);
    memcpy(tmp, path, n + 1);
    for (size_t i = 1; i <= n; i++) {
        if (tmp[i] != '/' && tmp[i] != '\0') continue;
        char c = tmp[i];
        tmp[i] = '\0';
        if (mkdir(tmp, 0777) != 0 && errno != EEXIST)
            return lm_errf(err, "%s: cannot create directory: %s", tmp, strerror(errno));
        tmp[i] = c;
    }
    return 0;
}

static int write_manifest(const ds_world *w, const char *dir, lm_err *err) {
    static const char *sn[] = {"train", "valid", "test"};
    ds_buf b = {0};
    ds_buf_printf(&b, "{\n  \"generator\": \"smudge data world\",\n  \"version\": %d,\n"
                      "  \"seed\": %llu,\n  \"corpus_bytes\": %zu,\n  \"heldout_bytes\": %zu,\n"
                      "  \"instructions\": %d,\n  \"splits\": {\n",
                  DS_WORLD_VERSION, (unsigned long long)w->o.seed, w->o.corpus_bytes,
                  w->o.heldout_bytes, w->o.n_instructions);
    for (int s = 0; s < DS_SPLITS; s++)
        ds_buf_printf(&b, "    \"%s\": {\"items_per_task\": %d, \"people\": %d, \"species\": %d, "
                          "\"substances\": %d, \"towns\": %d}%s\n",
                      sn[s], w->o.n_items[s], w->o.n_people[s], w->o.n_species[s],
                      w->o.n_substances[s], w->o.n_towns[s], s + 1 < DS_SPLITS ? "," : "");
    ds_buf_puts(&b, "  }\n}\n");
    char path[4096];
    snprintf(path, sizeof path, "%s/world.json", dir);
    int rc = b.oom ? lm_errf(err, "out of memory") : ds_write_file(path, b.p, b.n, err);
    ds_buf_free(&b);
    return rc;
}

int ds_world_write(const ds_world *w, const char *dir, ds_world_progress cb, void *ud,
                   lm_err *err) {
    char path[4096];
    if (strlen(dir) > 3000) return lm_errf(err, "%s: path too long", dir);
    if (make_dir(dir, err)) return -1;
    for (int t = 0; t < T_COUNT; t++) {
        snprintf(path, sizeof path, "%s/%s", dir, tasks[t].dir);
        if (make_dir(path, err)) return -1;
    }
    for (int t = 0; t < T_COUNT; t++)
        for (int s = 0; s < DS_SPLITS; s++) {
            if (write_task(w, t, s, dir, err)) return -1;
            if (cb) cb("tasks", (double)(t * DS_SPLITS + s + 1) / (T_COUNT * DS_SPLITS), ud);
        }
    hset seen = {0};
    snprintf(path, sizeof path, "%s/corpus.txt", dir);
    int rc = write_text(w, 1, w->o.corpus_bytes, &seen, NULL, path, "corpus", cb, ud, err);
    snprintf(path, sizeof path, "%s/heldout.txt", dir);
    if (rc == 0)
        rc = write_text(w, 2, w->o.heldout_bytes, NULL, &seen, path, "heldout", cb, ud, err);
    free(seen.v);
    snprintf(path, sizeof path, "%s/instructions.jsonl", dir);
    if (rc == 0) rc = write_instructions(w, path, cb, ud, err);
    if (rc == 0) rc = write_manifest(w, dir, err);
    return rc;
}
