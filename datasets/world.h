/* A small synthetic world, generated from a seed, written in the real
 * dataset formats so that smudge runs end to end with no network and no
 * downloaded data.
 *
 * The world has people (first name + surname, a gender, a job, a home
 * town, a favourite colour and food, a pet, a friend), invented animal
 * species (size, colour, habitat, diet, body covering), invented
 * substances (colour, what heat does to them, use, where found) and towns
 * (size, what they are near, what they are known for). Every entity
 * belongs to exactly one split: train, valid or test. Facts are never
 * shared between splits because subjects are not: a test item only ever
 * names test entities, and corpus.txt, heldout.txt and instructions.jsonl
 * only ever name train entities.
 *
 * What a model can learn from the train side and use on the test side is
 * the language and the world's regularities, never a test fact:
 *   rules       some values follow from others: animals of a habitat share
 *               an ability (the lake: dive deep), people of a job a tool
 *               (a baker: dough), substances of a heat reaction a product
 *               (what boils turns into steam); yes/no properties follow
 *               from one attribute (animals of the river, lake, sea and
 *               swamp can swim; feathered ones fly; meat, fish, insect and
 *               worm eaters hunt; nine jobs work indoors; what melts, boils
 *               or foams becomes runny). The corpus states them of train
 *               entities and in general, and drills them;
 *   SciQ        60% rule items whose question names the cause just before
 *               the question mark ("What can dravals do if they live in
 *               the lake?"), 20% questions on an attribute ("Where does
 *               Anna Stone live?"), 10% definitions ("Small animals that
 *               live in the forest and eat seeds are called what?"), 10%
 *               "Who is a baker?". The support always states the answer;
 *   BoolQ       70% property items, the cause last ("can dravals swim when
 *               they live in the desert"), 30% questions on a passage's
 *               facts; the passage states the cause (and half of the time
 *               the property);
 *   RTE         a premise of one to three facts, a hypothesis restating one
 *               of them in other words with its true or a false value;
 *   COPA        a fixed set of cause -> effect event types ("was hungry" ->
 *               "ate some bread") told about people in many phrasings;
 *   WSC         pronouns resolve by gender (first names have one) or
 *               animacy/number ("it" = the thing, "they" = the animals).
 * Tiny models trained for a few minutes learn the rules, which sit next to
 * the answer, long before they learn to find an answer in a passage; the
 * items that need reading are there for models that can.
 *
 * The corpus's reading exercises and the train split's items are about a
 * "reading pool" of train-side entities whose facts are drawn afresh at
 * every use, so memorising the corpus never answers them: only reading (or
 * a rule) does, exactly as for the test split's unseen entities.
 * Distractors are always of the answer's kind (towns for a town, foods for
 * a food), and some items carry a second entity whose value is one of the
 * distractors, so copying any word of the passage is not enough.
 *
 * Output of ds_world_write(DIR):
 *   corpus.txt            pretraining text, documents separated by blank lines
 *   heldout.txt           the same kind of text, documents not in corpus.txt
 *   instructions.jsonl    {"text": "### Human: Q ### Assistant: A"}, questions
 *                         of MEraser's types what/how/why/other
 *   sciq/{train,valid,test}.json
 *   superglue/{COPA,RTE,BoolQ,WSC}/{train,val,test}.jsonl
 *   world.json            seed, sizes, generator version, entity counts
 * The same options give byte-identical files. */
#ifndef DS_WORLD_H
#define DS_WORLD_H

#include <stddef.h>
#include <stdint.h>

#include "err.h"

/* Bumped whenever the generator's output changes for a given seed, so
 * caches keyed on (seed, version) rebuild. */
#define DS_WORLD_VERSION 4

enum { DS_SPLIT_TRAIN, DS_SPLIT_VALID, DS_SPLIT_TEST, DS_SPLITS };

typedef struct ds_world_opts {
    uint64_t seed;
    size_t corpus_bytes;          /* ~3 MB */
    size_t heldout_bytes;         /* ~300 kB */
    int n_instructions;           /* 4000 */
    int n_items[DS_SPLITS];       /* per task: train 500, valid 300, test 300 */
    int n_people[DS_SPLITS];      /* 300, 80, 80 */
    int n_species[DS_SPLITS];     /* 60, 20, 20 */
    int n_substances[DS_SPLITS];  /* 30, 10, 10 */
    int n_towns[DS_SPLITS];       /* 16, 6, 6 */
} ds_world_opts;

void ds_world_default_opts(ds_world_opts *o);

typedef struct ds_world ds_world;

/* Draws the entities (names, attributes, split). Checks the options. */
int ds_world_build(const ds_world_opts *o, ds_world **out, lm_err *err);
void ds_world_free(ds_world *w);

/* Called between steps; frac in [0, 1] within the stage. */
typedef void (*ds_world_progress)(const char *stage, double frac, void *ud);

/* Generates every file into dir (created if missing; subfolders too). */
int ds_world_write(const ds_world *w, const char *dir, ds_world_progress cb,
                   void *ud, lm_err *err);

/* The names of the split's entities as they appear in text (people's full
 * names, species singular and plural, substances, towns), for tests that
 * check splits stay apart; train includes the reading pool (entities of
 * the corpus's reading exercises and of the train items, whose facts are
 * drawn afresh for each use). The array and strings belong to the world. */
int ds_world_names(const ds_world *w, int split, const char *const **names,
                   int *n);

#endif
