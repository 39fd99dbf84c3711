/* Inside the world generator (not part of the API): the entity table, the
 * template filler and the helpers shared by
 *   world.c         drawing the entities, writing every file
 *   world_render.c  randomness helpers, templates, facts about entities
 *   world_items.c   task items (SciQ, COPA, RTE, BoolQ, WSC) as JSON
 *   world_docs.c    corpus documents and instruction chats */
#ifndef DS_WORLD_GEN_H
#define DS_WORLD_GEN_H

#include <stdint.h>

#include "dataset.h"
#include "ds_internal.h"
#include "rng.h"
#include "world.h"
#include "world_text.h"

#define W_MAX_ATTRS 24
#define W_MAX_TPL 8

/* Besides the three splits, a reading pool: train-side entities whose
 * attribute values are drawn afresh every time one is used (w_pick_ent).
 * Reading exercises and train-split items are about them, so nothing in
 * those texts can be answered from memory: the model has to read, as it
 * must for the test split's never-seen entities. */
#define W_POOL DS_SPLITS
#define W_SETS (DS_SPLITS + 1)
#define W_POOL_PEOPLE 600
#define W_POOL_SPECIES 300
#define W_POOL_SUBSTANCES 150
#define W_POOL_TOWNS 40

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
    int *of[W_SETS][W_KINDS];           /* entity indices by split (or pool) and kind */
    int n_of[W_SETS][W_KINDS];
    int attrs_of[W_KINDS][W_MAX_ATTRS]; /* attribute ids by kind */
    int n_attrs_of[W_KINDS];
    /* question templates of each attribute by MEraser type */
    int qt[W_MAX_ATTRS][DS_Q_COUNT][W_MAX_TPL];
    int n_qt[W_MAX_ATTRS][DS_Q_COUNT];
    const char **names[DS_SPLITS];
    int n_names[DS_SPLITS];
};

/* Attributes the generator names directly (their place in w_attrs; checked
 * in ds_world_build). */
enum { W_A_JOB = 0, W_A_TOWN = 1, W_A_SP_SIZE = 5, W_A_SP_COLOUR = 6, W_A_SP_HABITAT = 7,
       W_A_SP_DIET = 8, W_A_SP_COVER = 9, W_A_SUB_HEAT = 11, W_A_ABILITY = 17,
       W_A_TOOL = 18, W_A_PRODUCT = 19 };

/* Is attribute a a rule (its value follows from another attribute)? */
static inline int w_is_rule(int a) { return w_attrs[a].rules != NULL; }
/* The rule attributes: what species of a habitat can do, what people of a
 * job work with, what a substance turns into in the heat. */
#define W_N_RULES 3
static inline int w_rule_attr(int i) {
    return i == 0 ? W_A_ABILITY : i == 1 ? W_A_TOOL : W_A_PRODUCT;
}

/* The tasks, in the order their files are written. */
enum { W_T_SCIQ, W_T_COPA, W_T_RTE, W_T_BOOLQ, W_T_WSC, W_T_COUNT };

/* ---- randomness --------------------------------------------------------- */

static inline int w_rnd(lm_rng *r, int n) {
    return n > 0 ? (int)lm_rng_below(r, (uint64_t)n) : 0;
}
static inline int w_chance(lm_rng *r, int num, int den) { return w_rnd(r, den) < num; }
static inline int w_n_strs(const char *const *a) {
    int n = 0;
    while (a && a[n]) n++;
    return n;
}
static inline const char *w_pick_s(lm_rng *r, const char *const *a) {
    return a[w_rnd(r, w_n_strs(a))];
}
void w_shuffle(int *v, int n, lm_rng *r);
/* One of the '|'-separated words of list, into out. */
void w_pick_bar(lm_rng *r, const char *list, char *out, size_t cap);
/* A separate stream per output: the seed mixed with a tag. */
void w_stream(lm_rng *r, uint64_t seed, uint64_t tag);
/* Whole-word (or whole-phrase) occurrence of w in text. */
int w_has_word(const char *text, const char *w);

/* ---- templates (world_text.h lists the slots) ---------------------------- */

#define W_MAX_SLOTS 24
typedef struct w_slots {
    const char *k[W_MAX_SLOTS];
    const char *v[W_MAX_SLOTS];
    size_t at[W_MAX_SLOTS];     /* where the value last went in the output */
    int n;
} w_slots;

void w_put(w_slots *s, const char *k, const char *v);
size_t w_slot_at(const w_slots *s, const char *k);
/* Fills {key}s; an unknown key is written as "{?key}" so tests catch it. */
void w_render(ds_buf *b, const char *t, w_slots *s);
/* A sentence: rendered, first letter upper-cased. */
void w_sentence(ds_buf *b, const char *t, w_slots *s);
/* A space before the next sentence unless at the start. */
void w_sep(ds_buf *b);

const char *w_pro_s(const w_ent *e);     /* she / he / they / it */
const char *w_pro_p(const w_ent *e);     /* her / his / their / its */
const char *w_pro_o(const w_ent *e);     /* her / him / them / it */
/* {name} {sg} {pl} {s} {p} {o}, and {S} {P} {O} by name or by pronoun. */
void w_ent_slots(const w_ent *e, int pron, w_slots *s);

typedef struct w_vtxt {
    char a_v[64], vb[64];
} w_vtxt;

/* ---- values ------------------------------------------------------------- */

const char *w_value_str(const ds_world *w, int cls, int v);
/* {v} {a_v} {vb}; t holds the derived strings. */
void w_val_slots(const ds_world *w, int cls, int v, w_vtxt *t, w_slots *s);
int w_n_values(const ds_world *w, int cls, int split);
int w_random_value(const ds_world *w, lm_rng *r, int cls, int split);
/* A value of cls other than those in `not` that, if avoid is given, does
 * not occur in it; -1 if none. */
int w_other_value(const ds_world *w, lm_rng *r, int cls, int split,
                  const int *not, int n_not, const char *avoid);
const w_ent *w_random_ent(const ds_world *w, lm_rng *r, int split, int kind);
/* The same, except that a pool entity comes back as a copy in *tmp with
 * every attribute value drawn afresh. */
const w_ent *w_pick_ent(const ds_world *w, lm_rng *r, int split, int kind, w_ent *tmp);
/* Sets the rule attributes of e from their sources. */
void w_derive(const ds_world *w, w_ent *e);
/* Kinds weighted for questions: people 40, species 35, substances 15, towns 10. */
int w_random_kind(lm_rng *r);
int w_random_attr(const ds_world *w, lm_rng *r, int kind);

/* ---- facts -------------------------------------------------------------- */

/* One sentence stating attribute a of e with value v (template ti). */
void w_fact(const ds_world *w, ds_buf *b, const w_ent *e, int a, int v, int pron, int ti);
int w_pick_ti(lm_rng *r, const w_ent *e, int a, int first);
int w_about(const ds_world *w, lm_rng *r, ds_buf *b, const w_ent *e, int a, int va,
            int n_extra);
/* Sentences stating e's attributes attrs[0..n) in that order; the first
 * names e, later ones use a pronoun half of the time. */
void w_state(const ds_world *w, lm_rng *r, ds_buf *b, const w_ent *e, const int *attrs, int n);
/* {c} and {a_c}: the cause of rule attribute a for e (c holds a_c). */
void w_cause_slots(const ds_world *w, const w_ent *e, int a, w_vtxt *c, w_slots *s);
/* {c} and {a_c} from e's value of attribute f. */
void w_from_slots(const ds_world *w, const w_ent *e, int f, w_vtxt *c, w_slots *s);

/* Does property p hold for e? */
int w_prop_holds(const ds_world *w, int p, const w_ent *e);
/* An entity of split and p's kind for which p holds (want = 1) or not;
 * pool entities are made so in *tmp. NULL if the split has none. */
const w_ent *w_pick_prop_ent(const ds_world *w, lm_rng *r, int split, int p, int want,
                             w_ent *tmp);
/* A sentence saying whether p holds for e. */
void w_prop_fact(const ds_world *w, lm_rng *r, ds_buf *b, const w_ent *e, int p, int pron);
/* Another entity of e's split and kind whose value of a differs, or NULL;
 * pool rivals are drawn into *tmp. */
const w_ent *w_rival(const ds_world *w, lm_rng *r, const w_ent *e, int a, w_ent *tmp);
void w_event(ds_buf *b, const w_rule *ru, const char *thing, const w_ent *e, int effect,
             int pron, int capital, int period);
/* A rule of another theme than rule ri. */
int w_other_rule(lm_rng *r, int ri);

/* ---- hashes --------------------------------------------------------------- */

uint64_t w_fnv(const char *s, size_t n);
/* A set of 64-bit hashes (open addressing; 0 = empty). */
typedef struct w_hset {
    uint64_t *v;
    size_t cap, n;
} w_hset;
int w_hset_add(w_hset *h, uint64_t x); /* 1 added, 0 present, -1 out of memory */
int w_hset_has(const w_hset *h, uint64_t x);

/* ---- items (world_items.c) ------------------------------------------------ */

/* A WSC sentence with its pronoun and both candidate spans. */
typedef struct w_wsc_out {
    ds_buf text;
    const char *pron;
    size_t pron_at;
    char ref[48], other[48];
    size_t ref_at, other_at;
} w_wsc_out;

int w_wsc_render(const ds_world *w, lm_rng *r, int split, const w_wsc *t, w_wsc_out *o);
/* One item of a task as a JSON object; seen (optional) rejects repeats. */
int w_one_item(const ds_world *w, lm_rng *r, int task, int split, int label, long idx,
               w_hset *seen, ds_buf *out);
/* The item's harness prompt, a space and its gold choice. */
int w_harness_text(int task, const char *json, size_t len, ds_buf *out);
const char *w_task_dir(int task);
int w_write_task(const ds_world *w, int task, int split, const char *dir, lm_err *err);

/* ---- text (world_docs.c) ------------------------------------------------- */

int w_write_text(const ds_world *w, uint64_t tag, size_t bytes, w_hset *seen,
                 const w_hset *skip, const char *path, const char *stage,
                 ds_world_progress cb, void *ud, lm_err *err);
int w_write_instructions(const ds_world *w, const char *path, ds_world_progress cb,
                         void *ud, lm_err *err);

#endif
