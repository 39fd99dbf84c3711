/* The synthetic world: entities drawn from a seed, then rendered into the
 * corpus, the instruction chats and the task files (see world.h for the
 * design, world_text.c for the English).
 *
 * Every random choice flows from the seed through a separate lm_rng stream
 * per output (corpus, heldout, instructions, each task and split), so one
 * file's size does not shift the contents of another. Task items are first
 * written as JSON in the real file format; the corpus renders its
 * task-format documents by loading that JSON back through the loaders, so
 * the pretraining text shows exactly the prompt the evaluation will build.
 *
 * This file draws the entities and writes the files; world_gen.h lists
 * the other parts. */
#include <ctype.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "world_gen.h"

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
static int invent(lm_rng *r, const wordset *ws, w_hset *used, int substance, char *out, size_t cap) {
    for (int tries = 0; tries < 10000; tries++) {
        const char *o1 = w_onsets.v[w_rnd(r, w_onsets.n)], *v1 = w_vowels.v[w_rnd(r, w_vowels.n)];
        const char *m = w_mids.v[w_rnd(r, w_mids.n)];
        if (substance)
            snprintf(out, cap, "%s%s%s%s", o1, v1, m, w_sub_suffixes.v[w_rnd(r, w_sub_suffixes.n)]);
        else
            snprintf(out, cap, "%s%s%s%s%s", o1, v1, m, w_vowels.v[w_rnd(r, w_vowels.n)],
                     w_codas.v[w_rnd(r, w_codas.n)]);
        size_t n = strlen(out);
        if (n < 4) continue;
        char plural[40];
        snprintf(plural, sizeof plural, "%ss", out);
        if (in_words(ws, out) || in_words(ws, plural)) continue;
        if (!w_hset_has(used, w_fnv(out, n)) && !w_hset_has(used, w_fnv(plural, n + 1))) {
            if (w_hset_add(used, w_fnv(out, n)) < 0 || w_hset_add(used, w_fnv(plural, n + 1)) < 0)
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
    int used_f = 0, used_m = 0;
    for (int s = 0; s < DS_SPLITS; s++) {
        used_f += (o->n_people[s] + 1) / 2;
        used_m += o->n_people[s] / 2;
    }
    if (used_f > w_first_f.n * w_surnames.n || used_m > w_first_m.n * w_surnames.n)
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
    if (w_attrs[W_A_JOB].cls != WC_JOB || w_attrs[W_A_TOWN].cls != WC_TOWN ||
        w_attrs[W_A_SP_SIZE].cls != WC_SIZE || w_attrs[W_A_SP_COLOUR].cls != WC_COLOUR ||
        w_attrs[W_A_SP_HABITAT].cls != WC_HABITAT || w_attrs[W_A_SP_DIET].cls != WC_DIET ||
        w_attrs[W_A_SP_COVER].cls != WC_COVER || w_attrs[W_A_SUB_HEAT].cls != WC_HEAT ||
        w_attrs[W_A_ABILITY].from != W_A_SP_HABITAT || w_attrs[W_A_TOOL].from != W_A_JOB ||
        w_attrs[W_A_PRODUCT].from != W_A_SUB_HEAT ||
        w_values[WC_ABILITY].n != w_values[WC_HABITAT].n ||
        w_values[WC_TOOL].n != w_values[WC_JOB].n ||
        w_values[WC_PRODUCT].n != w_values[WC_HEAT].n || w_n_attrs > W_MAX_ATTRS) {
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
    /* the three splits, then the reading pool: the people whose names are
     * left (both genders alike), and as many species, substances and towns
     * as the names allow */
    int counts[W_KINDS][W_SETS];
    int total = 0, towns = 0, used_f = 0, used_m = 0;
    for (int s = 0; s < DS_SPLITS; s++) {
        counts[W_PERSON][s] = o->n_people[s];
        counts[W_SPECIES][s] = o->n_species[s];
        counts[W_SUBSTANCE][s] = o->n_substances[s];
        counts[W_TOWN][s] = o->n_towns[s];
        used_f += (o->n_people[s] + 1) / 2; /* genders alternate, women first */
        used_m += o->n_people[s] / 2;
        towns += o->n_towns[s];
    }
    int free_f = w_first_f.n * w_surnames.n - used_f;
    int free_m = w_first_m.n * w_surnames.n - used_m;
    int pool_people = 2 * (free_f < free_m ? free_f : free_m);
    int free_towns = w_town_pre.n * w_town_suf.n - towns;
    counts[W_PERSON][W_POOL] = pool_people < W_POOL_PEOPLE ? pool_people : W_POOL_PEOPLE;
    counts[W_SPECIES][W_POOL] = W_POOL_SPECIES;
    counts[W_SUBSTANCE][W_POOL] = W_POOL_SUBSTANCES;
    counts[W_TOWN][W_POOL] = free_towns < W_POOL_TOWNS ? free_towns : W_POOL_TOWNS;
    for (int s = 0; s < W_SETS; s++)
        for (int k = 0; k < W_KINDS; k++) total += counts[k][s];
    w->ents = calloc((size_t)total, sizeof *w->ents);
    wordset ws = {0};
    w_hset used = {0};
    lm_rng r;
    w_stream(&r, o->seed, 0);
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
    w_shuffle(pf, nf, &r);
    w_shuffle(pm, nm, &r);
    w_shuffle(pt, nt, &r);
    int ifem = 0, imal = 0, itown = 0;
    for (int s = 0; s < W_SETS && rc == 0; s++)
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

    for (int s = 0; s < W_SETS; s++)
        for (int k = 0; k < W_KINDS; k++) {
            w->of[s][k] = malloc((size_t)(counts[k][s] ? counts[k][s] : 1) * sizeof(int));
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
            e->val[a] = w_random_value(w, &r, w_attrs[a].cls, e->split);
        }
        w_derive(w, e);
        if (e->kind == W_PERSON && e->split != W_POOL) {
            int f;
            do f = w->of[e->split][W_PERSON][w_rnd(&r, w->n_of[e->split][W_PERSON])];
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
        int s = e->split == W_POOL ? DS_SPLIT_TRAIN : e->split; /* the pool is train-side */
        w->names[s][w->n_names[s]++] = e->name;
        if (e->kind == W_SPECIES) w->names[s][w->n_names[s]++] = e->plural;
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
    for (int s = 0; s < W_SETS; s++)
        for (int k = 0; k < W_KINDS; k++) free(w->of[s][k]);
    for (int s = 0; s < DS_SPLITS; s++) free(w->names[s]);
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
    ds_buf_printf(&b, "  },\n  \"reading_pool\": {\"people\": %d, \"species\": %d, "
                      "\"substances\": %d, \"towns\": %d}\n}\n",
                  w->n_of[W_POOL][W_PERSON], w->n_of[W_POOL][W_SPECIES],
                  w->n_of[W_POOL][W_SUBSTANCE], w->n_of[W_POOL][W_TOWN]);
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
    for (int t = 0; t < W_T_COUNT; t++) {
        snprintf(path, sizeof path, "%s/%s", dir, w_task_dir(t));
        if (make_dir(path, err)) return -1;
    }
    for (int t = 0; t < W_T_COUNT; t++)
        for (int s = 0; s < DS_SPLITS; s++) {
            if (w_write_task(w, t, s, dir, err)) return -1;
            if (cb) cb("tasks", (double)(t * DS_SPLITS + s + 1) / (W_T_COUNT * DS_SPLITS), ud);
        }
    w_hset seen = {0};
    snprintf(path, sizeof path, "%s/corpus.txt", dir);
    int rc = w_write_text(w, 1, w->o.corpus_bytes, &seen, NULL, path, "corpus", cb, ud, err);
    snprintf(path, sizeof path, "%s/heldout.txt", dir);
    if (rc == 0)
        rc = w_write_text(w, 2, w->o.heldout_bytes, NULL, &seen, path, "heldout", cb, ud, err);
    free(seen.v);
    snprintf(path, sizeof path, "%s/instructions.jsonl", dir);
    if (rc == 0) rc = w_write_instructions(w, path, cb, ud, err);
    if (rc == 0) rc = write_manifest(w, dir, err);
    return rc;
}
