/* The generator's toolbox: seeded choices, the template filler, pronouns,
 * values of a class, and sentences stating facts about entities. */
#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "world_gen.h"

void w_shuffle(int *v, int n, lm_rng *r) {
    for (int i = n - 1; i > 0; i--) {
        int j = w_rnd(r, i + 1), t = v[i];
        v[i] = v[j];
        v[j] = t;
    }
}

/* One of the '|'-separated words of list, into out. */
void w_pick_bar(lm_rng *r, const char *list, char *out, size_t cap) {
    int n = 1;
    for (const char *p = list; *p; p++) n += *p == '|';
    int k = w_rnd(r, n);
    const char *p = list;
    while (k--) p = strchr(p, '|') + 1;
    size_t len = strcspn(p, "|");
    if (len >= cap) len = cap - 1;
    memcpy(out, p, len);
    out[len] = '\0';
}

/* A separate stream per output: the seed mixed with a tag. */
void w_stream(lm_rng *r, uint64_t seed, uint64_t tag) {
    lm_rng_seed(r, seed * 0x9E3779B97F4A7C15ull ^ (tag + 0x632BE59BD9B4E019ull));
}

/* Whole-word (or whole-phrase) occurrence of w in text. */
int w_has_word(const char *text, const char *w) {
    size_t n = strlen(w);
    for (const char *p = strstr(text, w); p; p = strstr(p + 1, w)) {
        int left = p == text || !isalnum((unsigned char)p[-1]);
        int right = !isalnum((unsigned char)p[n]);
        if (left && right) return 1;
    }
    return 0;
}

void w_put(w_slots *s, const char *k, const char *v) {
    for (int i = 0; i < s->n; i++)
        if (strcmp(s->k[i], k) == 0) {
            s->v[i] = v;
            return;
        }
    if (s->n < W_MAX_SLOTS) {
        s->k[s->n] = k;
        s->v[s->n] = v;
        s->at[s->n] = (size_t)-1;
        s->n++;
    }
}

size_t w_slot_at(const w_slots *s, const char *k) {
    for (int i = 0; i < s->n; i++)
        if (strcmp(s->k[i], k) == 0) return s->at[i];
    return (size_t)-1;
}

/* Fills {key}s; an unknown key is written as "{?key}" so tests catch it. */
void w_render(ds_buf *b, const char *t, w_slots *s) {
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
void w_sentence(ds_buf *b, const char *t, w_slots *s) {
    size_t st = b->n;
    w_render(b, t, s);
    if (!b->oom && b->n > st) b->p[st] = (char)toupper((unsigned char)b->p[st]);
}

/* A space before the next sentence unless at the start. */
void w_sep(ds_buf *b) {
    if (b->n && b->p[b->n - 1] != ' ' && b->p[b->n - 1] != '\n') ds_buf_putc(b, ' ');
}

const char *w_pro_s(const w_ent *e) {
    return e->kind == W_PERSON ? (e->female ? "she" : "he") : e->kind == W_SPECIES ? "they" : "it";
}

const char *w_pro_p(const w_ent *e) {
    return e->kind == W_PERSON ? (e->female ? "her" : "his") : e->kind == W_SPECIES ? "their" : "its";
}

const char *w_pro_o(const w_ent *e) {
    return e->kind == W_PERSON ? (e->female ? "her" : "him") : e->kind == W_SPECIES ? "them" : "it";
}

void w_ent_slots(const w_ent *e, int pron, w_slots *s) {
    const char *nm = e->kind == W_SPECIES ? e->plural : e->name;
    w_put(s, "name", e->name);
    w_put(s, "sg", e->name);
    w_put(s, "pl", e->plural);
    w_put(s, "s", w_pro_s(e));
    w_put(s, "p", w_pro_p(e));
    w_put(s, "o", w_pro_o(e));
    w_put(s, "S", pron ? w_pro_s(e) : nm);
    w_put(s, "P", pron ? w_pro_p(e) : e->poss);
    w_put(s, "O", pron ? w_pro_o(e) : nm);
}

const char *w_value_str(const ds_world *w, int cls, int v) {
    return cls == WC_TOWN ? w->ents[v].name : w_values[cls].v[v];
}

void w_val_slots(const ds_world *w, int cls, int v, w_vtxt *t, w_slots *s) {
    const char *x = w_value_str(w, cls, v);
    snprintf(t->a_v, sizeof t->a_v, "%s %s", strchr("aeiou", x[0]) ? "an" : "a", x);
    snprintf(t->vb, sizeof t->vb, "%s", x);
    size_t n = strlen(t->vb);
    if (n > 1 && t->vb[n - 1] == 's') t->vb[n - 1] = '\0';
    w_put(s, "v", x);
    w_put(s, "a_v", t->a_v);
    w_put(s, "vb", t->vb);
}

/* Pool people live in train towns. */
static int town_set(int split) { return split == W_POOL ? DS_SPLIT_TRAIN : split; }

int w_n_values(const ds_world *w, int cls, int split) {
    return cls == WC_TOWN ? w->n_of[town_set(split)][W_TOWN] : w_values[cls].n;
}

static int value_at(const ds_world *w, int cls, int split, int k) {
    return cls == WC_TOWN ? w->of[town_set(split)][W_TOWN][k] : k;
}

int w_random_value(const ds_world *w, lm_rng *r, int cls, int split) {
    return value_at(w, cls, split, w_rnd(r, w_n_values(w, cls, split)));
}

/* A value of cls other than those in `not` that, if avoid is given, does
 * not occur in it. Falls back to ignoring `avoid` when none is left. */
int w_other_value(const ds_world *w, lm_rng *r, int cls, int split,
                  const int *not, int n_not, const char *avoid) {
    int n = w_n_values(w, cls, split);
    int order[64];
    if (n > 64) n = 64;
    for (int i = 0; i < n; i++) order[i] = value_at(w, cls, split, i);
    w_shuffle(order, n, r);
    for (int pass = 0; pass < 2; pass++)
        for (int i = 0; i < n; i++) {
            int ok = 1;
            for (int j = 0; j < n_not; j++) ok &= order[i] != not[j];
            if (ok && pass == 0 && avoid && w_has_word(avoid, w_value_str(w, cls, order[i])))
                ok = 0;
            if (ok) return order[i];
        }
    return -1;
}

const w_ent *w_random_ent(const ds_world *w, lm_rng *r, int split, int kind) {
    return &w->ents[w->of[split][kind][w_rnd(r, w->n_of[split][kind])]];
}

const w_ent *w_pick_ent(const ds_world *w, lm_rng *r, int split, int kind, w_ent *tmp) {
    const w_ent *x = w_random_ent(w, r, split, kind);
    if (split != W_POOL) return x;
    *tmp = *x;
    for (int j = 0; j < w->n_attrs_of[kind]; j++) {
        int a = w->attrs_of[kind][j];
        tmp->val[a] = w_random_value(w, r, w_attrs[a].cls, W_POOL);
    }
    tmp->friend_ = -1;
    w_derive(w, tmp);
    return tmp;
}

void w_derive(const ds_world *w, w_ent *e) {
    for (int j = 0; j < w->n_attrs_of[e->kind]; j++) {
        int a = w->attrs_of[e->kind][j];
        if (w_is_rule(a)) e->val[a] = e->val[w_attrs[a].from];
    }
}

/* Kinds weighted for questions: people 40, species 35, substances 15, towns 10. */
int w_random_kind(lm_rng *r) {
    int x = w_rnd(r, 100);
    return x < 40 ? W_PERSON : x < 75 ? W_SPECIES : x < 90 ? W_SUBSTANCE : W_TOWN;
}

void w_fact(const ds_world *w, ds_buf *b, const w_ent *e, int a, int v, int pron, int ti) {
    w_slots s = {0};
    w_vtxt t;
    w_ent_slots(e, pron, &s);
    w_val_slots(w, w_attrs[a].cls, v, &t, &s);
    w_sep(b);
    w_sentence(b, w_attrs[a].facts[ti], &s);
}

/* The template of a fact. A species opens with its plural in the middle
 * of the sentence ("You can find glagins in the forest."), so the "they"
 * of the next sentence has an antecedent and the plural a question may ask
 * for is in the text exactly as an answer would write it. */
int w_pick_ti(lm_rng *r, const w_ent *e, int a, int first) {
    const char *const *f = w_attrs[a].facts;
    int n = w_n_strs(f);
    if (!first || e->kind != W_SPECIES) return w_rnd(r, n);
    int ok[W_MAX_TPL], k = 0;
    for (int i = 0; i < n && k < W_MAX_TPL; i++)
        if (strstr(f[i], "{pl}")) ok[k++] = i;
    return k ? ok[w_rnd(r, k)] : w_rnd(r, n);
}

void w_state(const ds_world *w, lm_rng *r, ds_buf *b, const w_ent *e, const int *attrs, int n) {
    for (int i = 0; i < n; i++)
        w_fact(w, b, e, attrs[i], e->val[attrs[i]], i > 0 && w_chance(r, 1, 2),
               w_pick_ti(r, e, attrs[i], i == 0));
}

void w_from_slots(const ds_world *w, const w_ent *e, int f, w_vtxt *c, w_slots *s) {
    const char *x = w_value_str(w, w_attrs[f].cls, e->val[f]);
    snprintf(c->a_v, sizeof c->a_v, "%s %s", strchr("aeiou", x[0]) ? "an" : "a", x);
    w_put(s, "c", x);
    w_put(s, "a_c", c->a_v);
}

void w_cause_slots(const ds_world *w, const w_ent *e, int a, w_vtxt *c, w_slots *s) {
    w_from_slots(w, e, w_attrs[a].from, c, s);
}

/* Is the value named s one of the '|'-separated words of list? */
static int in_bar_list(const char *list, const char *s) {
    size_t n = strlen(s);
    for (const char *p = list; p; p = strchr(p, '|')) {
        if (*p == '|') p++;
        if (strncmp(p, s, n) == 0 && (p[n] == '|' || p[n] == '\0')) return 1;
    }
    return 0;
}

int w_prop_holds(const ds_world *w, int p, const w_ent *e) {
    int f = w_props[p].from;
    return in_bar_list(w_props[p].holds, w_value_str(w, w_attrs[f].cls, e->val[f]));
}

const w_ent *w_pick_prop_ent(const ds_world *w, lm_rng *r, int split, int p, int want,
                             w_ent *tmp) {
    int kind = w_props[p].kind, f = w_props[p].from;
    for (int tries = 0; tries < 200; tries++) {
        const w_ent *e = w_pick_ent(w, r, split, kind, tmp);
        if (e == tmp) { /* a pool entity: give it a cause of the wanted side */
            while (w_prop_holds(w, p, tmp) != want)
                tmp->val[f] = w_random_value(w, r, w_attrs[f].cls, W_POOL);
            w_derive(w, tmp);
        }
        if (w_prop_holds(w, p, e) == want) return e;
    }
    return NULL;
}

void w_prop_fact(const ds_world *w, lm_rng *r, ds_buf *b, const w_ent *e, int p, int pron) {
    w_slots s = {0};
    w_ent_slots(e, pron, &s);
    w_sep(b);
    w_sentence(b, w_pick_s(r, w_prop_holds(w, p, e) ? w_props[p].yes_facts : w_props[p].no_facts),
               &s);
}

/* Sentences about e: attribute a (stated with value va) and n_extra other
 * attributes, in random order; the first names e, later ones use a pronoun
 * half of the time. Returns the template used for a. */
int w_about(const ds_world *w, lm_rng *r, ds_buf *b, const w_ent *e, int a, int va,
            int n_extra) {
    int list[W_MAX_ATTRS], n = 0, ti_a = 0;
    for (int i = 0; i < w->n_attrs_of[e->kind]; i++)
        if (w->attrs_of[e->kind][i] != a) list[n++] = w->attrs_of[e->kind][i];
    w_shuffle(list, n, r);
    if (n_extra > n) n_extra = n;
    list[n_extra++] = a;
    w_shuffle(list, n_extra, r);
    for (int i = 0; i < n_extra; i++) {
        int at = list[i];
        int ti = w_pick_ti(r, e, at, i == 0);
        if (at == a) ti_a = ti;
        w_fact(w, b, e, at, at == a ? va : e->val[at], i > 0 && w_chance(r, 1, 2), ti);
    }
    return ti_a;
}

/* Another entity of e's split and kind whose value of a differs, or NULL. */
const w_ent *w_rival(const ds_world *w, lm_rng *r, const w_ent *e, int a, w_ent *tmp) {
    for (int tries = 0; tries < 20; tries++) {
        const w_ent *x = w_pick_ent(w, r, e->split, e->kind, tmp);
        if (strcmp(x->name, e->name) == 0) continue;
        if (x == tmp) { /* a pool entity: its values are ours to choose */
            int src = w_is_rule(a) ? w_attrs[a].from : a; /* rules follow their source */
            while (tmp->val[src] == e->val[src])
                tmp->val[src] = w_random_value(w, r, w_attrs[src].cls, W_POOL);
            w_derive(w, tmp);
        }
        if (x->val[a] != e->val[a]) return x;
    }
    return NULL;
}

int w_random_attr(const ds_world *w, lm_rng *r, int kind) {
    return w->attrs_of[kind][w_rnd(r, w->n_attrs_of[kind])];
}

/* A rule's cause or effect about person e, by name or pronoun. With
 * capital = 0 and a trailing period dropped, it can sit inside a sentence. */
void w_event(ds_buf *b, const w_rule *ru, const char *thing, const w_ent *e, int effect,
             int pron, int capital, int period) {
    const char *t = effect ? ru->effect : ru->cause;
    w_slots s = {0};
    w_ent_slots(e, 1, &s);
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
        w_put(&s, keys[k0], k0 == 1 ? e->poss : nm);
    }
    w_put(&s, "thing", thing);
    size_t st = b->n;
    if (capital) {
        w_sentence(b, t, &s);
    } else {
        w_render(b, t, &s);
        /* "so flowers grew", but "so Anna Stone ..." */
        if (t[0] != '{' && !b->oom && b->n > st) b->p[st] = (char)tolower((unsigned char)b->p[st]);
    }
    if (!period && b->n > st && b->p[b->n - 1] == '.') b->p[--b->n] = '\0';
}

int w_other_rule(lm_rng *r, int ri) {
    for (;;) {
        int k = w_rnd(r, w_n_rules);
        if (w_rules[k].theme != w_rules[ri].theme) return k;
    }
}

uint64_t w_fnv(const char *s, size_t n) {
    uint64_t h = 1469598103934665603ull;
    for (size_t i = 0; i < n; i++) h = (h ^ (unsigned char)s[i]) * 1099511628211ull;
    return h ? h : 1;
}

int w_hset_add(w_hset *h, uint64_t x) { /* 1 added, 0 present, -1 OOM */
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

int w_hset_has(const w_hset *h, uint64_t x) {
    if (!h->cap) return 0;
    size_t j = x & (h->cap - 1);
    while (h->v[j]) {
        if (h->v[j] == x) return 1;
        j = (j + 1) & (h->cap - 1);
    }
    return 0;
}
