/* The world's vocabulary and sentence templates (world_text.c), kept apart
 * from the generator (world.c) so the English can be read and extended in
 * one place.
 *
 * Template slots, filled by world.c:
 *   {S} {P} {O}   the entity as subject / possessive / object: its name
 *                 ("Anna Stone", "Anna Stone's") or a pronoun ("she",
 *                 "her", "her"; species "they"; substances, towns "it")
 *   {s} {p} {o}   always the pronoun (subject / possessive / object)
 *   {name}        the name (species: singular); {sg} {pl} species forms
 *   {v} {a_v}     the attribute's value, bare or with "a"/"an"
 *   {vb}          the value without its final "s" ("melts" -> "melt")
 *   {thing}       an object noun of a cause/effect rule or WSC template
 *   {c} {a_c}     the cause of a rule attribute (its source's value)
 *   {A} {B}       WSC: two people; {group} WSC: animals ("goats");
 *                 {it} {they} WSC pronouns whose position is needed
 * The first letter of a sentence is upper-cased after filling. */
#ifndef DS_WORLD_TEXT_H
#define DS_WORLD_TEXT_H

enum { W_PERSON, W_SPECIES, W_SUBSTANCE, W_TOWN, W_KINDS };

/* value classes; WC_TOWN values are the towns of the entity's split.
 * WC_ABILITY, WC_TOOL and WC_PRODUCT are aligned with WC_HABITAT, WC_JOB
 * and WC_HEAT: the world's regularities (sea animals hold their breath, a
 * baker works with dough, what melts turns into a liquid). */
enum {
    WC_COLOUR, WC_SIZE, WC_JOB, WC_DISH, WC_DIET, WC_HABITAT, WC_COVER,
    WC_PET, WC_HEAT, WC_USE, WC_GOOD, WC_ABILITY, WC_TOOL, WC_PRODUCT,
    WC_TOWN, WC_COUNT
};

typedef struct w_list {
    const char *const *v;
    int n;
} w_list;

extern const w_list w_values[WC_TOWN];

typedef struct w_attr {
    int kind;                     /* W_PERSON ... */
    int cls;                      /* WC_... */
    const char *const *facts;     /* sentences stating it (NULL-terminated) */
    const char *const *questions; /* questions whose answer is {v} */
    const char *const *yesno;     /* BoolQ questions: lower-case, no '?' */
    /* A rule attribute follows from another one (its value has the same
     * index in an aligned class). Its questions can name the cause ({c},
     * {a_c}) so the rule alone answers them; `rules` state the rule for
     * any entity, `since` tells it of one entity. */
    int from;                     /* attribute it follows from (when rules != NULL) */
    const char *const *rule_questions;
    const char *const *rule_yesno;
    const char *const *rules;
    const char *const *since;
} w_attr;

extern const w_attr w_attrs[];
extern const int w_n_attrs;

/* A yes/no property that follows from one attribute: animals of the river,
 * the lake, the sea and the swamp can swim; the others cannot. BoolQ's
 * rule questions ask it with the cause last ("can dravals swim when they
 * live in the desert"), so the answer hangs on one nearby word. */
typedef struct w_prop {
    int kind;
    int from;                     /* the attribute it follows from */
    const char *holds;            /* '|'-separated values of `from` where it holds */
    const char *const *yes_facts; /* "{S} can swim." */
    const char *const *no_facts;  /* "{S} cannot swim." */
    const char *const *yesno;     /* BoolQ questions with {c} */
    const char *const *yes_rules; /* "Animals that live in the {c} can swim." */
    const char *const *no_rules;
} w_prop;

extern const w_prop w_props[];
extern const int w_n_props;

/* A cause -> effect event type. cause/effect use {S} {P} {O} {thing};
 * why_q names the person ({name}, {p}); why_a answers it with pronouns.
 * Rules of one theme are too close to serve as each other's wrong COPA
 * alternative. */
typedef struct w_rule {
    const char *cause, *effect, *why_q, *why_a;
    const char *things;           /* "glass|cup|plate", or NULL */
    int theme;
} w_rule;

extern const w_rule w_rules[];
extern const int w_n_rules;

/* A WSC sentence: the pronoun ({s}, {o}, "it" or "they") refers to
 * ref = 'A' or 'B' (people of different genders), 'T' ("the {thing}") or
 * 'G' ("the {group}"). */
typedef struct w_wsc {
    const char *text;
    char ref;
    const char *pick;             /* things or groups, '|'-separated */
} w_wsc;

extern const w_wsc w_wscs[];
extern const int w_n_wscs;

/* names */
extern const w_list w_first_f, w_first_m, w_surnames, w_town_pre, w_town_suf;
extern const w_list w_onsets, w_vowels, w_codas, w_mids, w_sub_suffixes;

/* general knowledge lines (no entity of any split) */
extern const char *const w_job_lines[];   /* aligned with w_values[WC_JOB] */
extern const char *const w_general[];     /* NULL-terminated */

/* story and causal glue */
extern const char *const w_story_when[];  /* "One day," ... */
extern const char *const w_story_so[];    /* "So" ... */
extern const char *const w_story_end[];   /* closing sentences, {S} {name} {v}=town */
extern const char *const w_causal[];      /* {C}/{c} cause, {E}/{e} effect; see world.c */

/* questions and sentences with several values: {size} {habitat} {diet}
 * (species definitions), {a_v} (a job), {S} (any entity), {CN} (a cause) */
extern const char *const w_define_q[];    /* answer: the species plural */
extern const char *const w_define_s[];    /* the definition as a statement */
extern const char *const w_who_q[];       /* answer: the person with that job */
extern const char *const w_tell_q[];      /* "Tell me about {S}." */
extern const char *const w_rule_what[];   /* "What happened after {CN}?" */

/* Every string above, for the list of words invented names must avoid. */
void w_text_each(void (*fn)(const char *s, void *ud), void *ud);

#endif
