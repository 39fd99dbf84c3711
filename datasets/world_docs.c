/* The world as text: pretraining documents (profiles, stories, cause and
 * effect, pronoun sentences, reading exercises, task items in their harness
 * prompts) and the instruction chats. Only train entities appear here. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "world_gen.h"

/* ---- corpus documents ---- */

static void doc_profile(const ds_world *w, lm_rng *r, ds_buf *b) {
    int kind = w_random_kind(r);
    const w_ent *e = w_random_ent(w, r, DS_SPLIT_TRAIN, kind);
    int list[W_MAX_ATTRS], n = w->n_attrs_of[kind];
    memcpy(list, w->attrs_of[kind], (size_t)n * sizeof *list);
    w_shuffle(list, n, r);
    int k = 2 + w_rnd(r, n - 1);
    for (int i = 0; i < k; i++)
        w_fact(w, b, e, list[i], e->val[list[i]], i > 0 && w_chance(r, 2, 3),
             w_pick_ti(r, e, list[i], i == 0));
    if (w_chance(r, 1, 2)) { /* a property that follows from its facts */
        int p = w_rnd(r, w_n_props);
        if (w_props[p].kind == kind) w_prop_fact(w, r, b, e, p, 1);
    }
    if (kind == W_PERSON) {
        if (e->friend_ >= 0 && w_chance(r, 1, 2)) {
            w_sep(b);
            ds_buf_puts(b, w_chance(r, 1, 2) ? (e->female ? "She" : "He") : e->name);
            ds_buf_puts(b, w_chance(r, 1, 2) ? " is a good friend of " : " often visits ");
            ds_buf_puts(b, w->ents[e->friend_].name);
            ds_buf_putc(b, '.');
        }
        if (w_chance(r, 1, 3)) {
            w_sep(b);
            ds_buf_puts(b, w_job_lines[e->val[W_A_JOB]]);
        }
    } else if (kind == W_SPECIES && w_chance(r, 1, 2)) {
        w_slots s = {0};
        w_ent_slots(e, 0, &s);
        w_put(&s, "size", w_value_str(w, WC_SIZE, e->val[W_A_SP_SIZE]));
        w_put(&s, "habitat", w_value_str(w, WC_HABITAT, e->val[W_A_SP_HABITAT]));
        w_put(&s, "diet", w_value_str(w, WC_DIET, e->val[W_A_SP_DIET]));
        w_sep(b);
        w_sentence(b, w_pick_s(r, w_define_s), &s);
    }
}

static void doc_story(const ds_world *w, lm_rng *r, ds_buf *b) {
    const w_ent *e = w_random_ent(w, r, 0, W_PERSON);
    int first = w_rnd(r, w->n_attrs_of[W_PERSON]);
    int a1 = w->attrs_of[W_PERSON][first];
    int a2 = w->attrs_of[W_PERSON][(first + 1 + w_rnd(r, w->n_attrs_of[W_PERSON] - 1)) %
                                   w->n_attrs_of[W_PERSON]];
    w_fact(w, b, e, a1, e->val[a1], 0, w_rnd(r, w_n_strs(w_attrs[a1].facts)));
    w_fact(w, b, e, a2, e->val[a2], 1, w_rnd(r, w_n_strs(w_attrs[a2].facts)));
    int events = 1 + w_rnd(r, 2), last = -1;
    for (int k = 0; k < events; k++) {
        int ri = last < 0 ? w_rnd(r, w_n_rules) : w_other_rule(r, last);
        last = ri;
        char thing[16] = "";
        if (w_rules[ri].things) w_pick_bar(r, w_rules[ri].things, thing, sizeof thing);
        w_sep(b);
        ds_buf_puts(b, k == 0 ? w_pick_s(r, w_story_when) : "Later,");
        ds_buf_putc(b, ' ');
        w_event(b, &w_rules[ri], thing, e, 0, 1, 0, 1);
        w_sep(b);
        const char *so = w_pick_s(r, w_story_so);
        ds_buf_puts(b, so);
        ds_buf_putc(b, ' ');
        w_event(b, &w_rules[ri], thing, e, 1, 1, 0, 1);
        if (k == 0 && e->friend_ >= 0 && w_chance(r, 1, 2)) {
            const w_ent *f = &w->ents[e->friend_];
            w_sep(b);
            ds_buf_printf(b, "Then %s met %s.", e->female ? "she" : "he", f->name);
        }
    }
    w_slots s = {0};
    w_ent_slots(e, 1, &s);
    w_put(&s, "v", w->ents[e->val[W_A_TOWN]].name);
    w_sep(b);
    w_sentence(b, w_pick_s(r, w_story_end), &s);
}

static void doc_causal(const ds_world *w, lm_rng *r, ds_buf *b) {
    int k = 3 + w_rnd(r, 3);
    for (int i = 0; i < k; i++) {
        const w_ent *e = w_random_ent(w, r, 0, W_PERSON);
        int ri = w_rnd(r, w_n_rules);
        char thing[16] = "";
        if (w_rules[ri].things) w_pick_bar(r, w_rules[ri].things, thing, sizeof thing);
        ds_buf cn = {0}, cp = {0}, en = {0}, ep = {0};
        w_event(&cn, &w_rules[ri], thing, e, 0, 0, 1, 0);
        w_event(&cp, &w_rules[ri], thing, e, 0, 1, 0, 0);
        w_event(&en, &w_rules[ri], thing, e, 1, 0, 1, 0);
        w_event(&ep, &w_rules[ri], thing, e, 1, 1, 0, 0);
        w_slots s = {0};
        w_put(&s, "CN", ds_buf_cstr(&cn) ? cn.p : "");
        w_put(&s, "cp", ds_buf_cstr(&cp) ? cp.p : "");
        w_put(&s, "EN", ds_buf_cstr(&en) ? en.p : "");
        w_put(&s, "ep", ds_buf_cstr(&ep) ? ep.p : "");
        w_sep(b);
        w_sentence(b, w_pick_s(r, w_causal), &s);
        ds_buf_free(&cn);
        ds_buf_free(&cp);
        ds_buf_free(&en);
        ds_buf_free(&ep);
    }
}

static void doc_wsc_text(const ds_world *w, lm_rng *r, ds_buf *b) {
    int k = 2 + w_rnd(r, 3);
    for (int i = 0; i < k; i++) {
        w_wsc_out o = {0};
        if (w_wsc_render(w, r, 0, &w_wscs[w_rnd(r, w_n_wscs)], &o) == 0) {
            w_sep(b);
            ds_buf_puts(b, ds_buf_cstr(&o.text));
        }
        ds_buf_free(&o.text);
    }
}

static void doc_general(lm_rng *r, ds_buf *b) {
    int k = 2 + w_rnd(r, 3);
    for (int i = 0; i < k; i++) {
        w_sep(b);
        if (w_chance(r, 1, 2)) ds_buf_puts(b, w_job_lines[w_rnd(r, w_values[WC_JOB].n)]);
        else ds_buf_puts(b, w_pick_s(r, w_general));
    }
}

/* A task item of the train split shown as its harness prompt + answer. */
static int doc_task(const ds_world *w, lm_rng *r, int task, ds_buf *b) {
    int lines = task == W_T_COPA ? 3 : 1;
    for (int i = 0; i < lines; i++) {
        ds_buf j = {0};
        int label = task == W_T_SCIQ ? 3 : w_rnd(r, 2);
        int rc = w_one_item(w, r, task, 0, label, 0, NULL, &j);
        if (rc == 0 && i) ds_buf_putc(b, '\n');
        if (rc == 0) rc = w_harness_text(task, j.p, j.n, b);
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
    int kind = w_random_kind(r);
    w_ent te, tr;
    const w_ent *e = w_pick_ent(w, r, W_POOL, kind, &te);
    int list[W_MAX_ATTRS], n = w->n_attrs_of[kind];
    memcpy(list, w->attrs_of[kind], (size_t)n * sizeof *list);
    w_shuffle(list, n, r);
    int k = 1 + w_rnd(r, n < 4 ? n : 4);
    const w_ent *e2 = w_chance(r, 1, 4) ? w_rival(w, r, e, list[0], &tr) : NULL;
    int e2_first = e2 && w_chance(r, 1, 2);
    if (e2_first) w_fact(w, b, e2, list[0], e2->val[list[0]], 0, w_pick_ti(r, e2, list[0], 1));
    int tis[W_MAX_ATTRS];
    for (int i = 0; i < k; i++) {
        tis[i] = w_pick_ti(r, e, list[i], i == 0);
        w_fact(w, b, e, list[i], e->val[list[i]], i > 0 && w_chance(r, 1, 2), tis[i]);
    }
    if (e2 && !e2_first) w_fact(w, b, e2, list[0], e2->val[list[0]], 0, w_pick_ti(r, e2, list[0], 1));
    ds_buf passage = {0};
    ds_buf_puts(&passage, ds_buf_cstr(b) ? b->p : "");
    int nq = 2 + w_rnd(r, 3), asked[8][3], n_asked = 0;
    for (int q = 0; q < nq; q++) {
        int i = w_rnd(r, k), a = list[i], cls = w_attrs[a].cls, v = e->val[a];
        int style = w_rnd(r, 3), yes = w_chance(r, 1, 2);
        int qv = v;
        if (style && !yes) {
            qv = e2 && i == 0 && w_chance(r, 1, 2)
                     ? e2->val[a]
                     : w_other_value(w, r, cls, W_POOL, &v, 1, passage.p);
            if (qv < 0) continue;
        }
        int again = 0; /* never the same question twice */
        for (int j = 0; j < n_asked; j++)
            again |= asked[j][0] == a && asked[j][1] == style && asked[j][2] == qv;
        if (again) continue;
        asked[n_asked][0] = a;
        asked[n_asked][1] = style;
        asked[n_asked++][2] = qv;
        w_slots s = {0};
        w_vtxt t;
        w_ent_slots(e, 0, &s);
        w_val_slots(w, cls, qv, &t, &s);
        ds_buf_puts(b, "\nQuestion: ");
        if (style == 0) {
            w_sentence(b, w_pick_s(r, w_attrs[a].questions), &s);
            ds_buf_puts(b, "\nAnswer: ");
            ds_buf_puts(b, w_value_str(w, cls, v));
        } else if (style == 1) {
            w_render(b, w_pick_s(r, w_attrs[a].yesno), &s);
            ds_buf_puts(b, yes ? "?\nAnswer: yes" : "?\nAnswer: no");
        } else {
            int nt = w_n_strs(w_attrs[a].facts);
            size_t st = b->n;
            w_fact(w, b, e, a, qv, 0, nt > 1 ? (tis[i] + 1 + w_rnd(r, nt - 1)) % nt : 0);
            if (b->n > st && b->p[st] == ' ') { /* w_fact() may lead with a space */
                memmove(b->p + st, b->p + st + 1, b->n - st);
                b->n--;
            }
            ds_buf_puts(b, yes ? " True or False?\nAnswer: True" : " True or False?\nAnswer: False");
        }
    }
    ds_buf_free(&passage);
}

/* Rule drills about a pool entity: a rule told of it or in general, then
 * questions that name a cause just before the question mark ("What can
 * dravals do if they live in the lake?", "can dravals swim when they live
 * in the desert?"), the cause changing from question to question. The
 * answer hangs on that one nearby word, as in the rule items of SciQ and
 * BoolQ, so even a model that cannot yet read a passage learns the rules. */
static void doc_rules(const ds_world *w, lm_rng *r, ds_buf *b) {
    w_ent te, x;
    w_slots s = {0};
    w_vtxt tv, tc;
    int nq = 1 + w_rnd(r, 3);
    if (w_chance(r, 1, 2)) {
        int a = w_rule_attr(w_rnd(r, W_N_RULES)), cls = w_attrs[a].cls, f = w_attrs[a].from;
        const w_ent *e = w_pick_ent(w, r, W_POOL, w_attrs[a].kind, &te);
        w_ent_slots(e, 0, &s);
        w_val_slots(w, cls, e->val[a], &tv, &s);
        w_cause_slots(w, e, a, &tc, &s);
        w_sentence(b, w_pick_s(r, w_chance(r, 1, 3) ? w_attrs[a].rules : w_attrs[a].since), &s);
        for (int q = 0; q < nq; q++) {
            x = *e;
            if (q) x.val[f] = w_random_value(w, r, w_attrs[f].cls, W_POOL);
            w_derive(w, &x);
            w_cause_slots(w, &x, a, &tc, &s);
            ds_buf_puts(b, "\nQuestion: ");
            w_sentence(b, w_pick_s(r, w_attrs[a].rule_questions), &s);
            ds_buf_puts(b, "\nAnswer: ");
            ds_buf_puts(b, w_value_str(w, cls, x.val[a]));
        }
        return;
    }
    int p = w_rnd(r, w_n_props), f = w_props[p].from;
    const w_ent *e = w_pick_ent(w, r, W_POOL, w_props[p].kind, &te);
    w_ent_slots(e, 0, &s);
    w_from_slots(w, e, f, &tc, &s);
    if (w_chance(r, 1, 2)) {
        w_sentence(b, w_pick_s(r, w_prop_holds(w, p, e) ? w_props[p].yes_rules
                                                        : w_props[p].no_rules), &s);
    } else {
        w_fact(w, b, e, f, e->val[f], 0, w_pick_ti(r, e, f, 1));
        w_prop_fact(w, r, b, e, p, 1);
    }
    for (int q = 0; q < nq; q++) {
        const w_ent *y = w_pick_prop_ent(w, r, W_POOL, p, w_chance(r, 1, 2), &x);
        if (!y) continue;
        x.kind = e->kind; /* same animal, another cause: keep e's name */
        memcpy(x.name, e->name, sizeof x.name);
        memcpy(x.plural, e->plural, sizeof x.plural);
        memcpy(x.poss, e->poss, sizeof x.poss);
        w_ent_slots(&x, 0, &s);
        w_from_slots(w, &x, f, &tc, &s);
        ds_buf_puts(b, "\nQuestion: ");
        w_render(b, w_pick_s(r, w_props[p].yesno), &s);
        ds_buf_puts(b, w_prop_holds(w, p, &x) ? "?\nAnswer: yes" : "?\nAnswer: no");
    }
}

/* One document of the mixture; weights are per document. */
static int doc(const ds_world *w, lm_rng *r, ds_buf *b) {
    static const int weight[] = {14, 12, 10, 4, 2, 8, 8, 6, 8, 8, 14, 22};
    int total = 0;
    for (size_t i = 0; i < sizeof weight / sizeof *weight; i++) total += weight[i];
    int x = w_rnd(r, total), k = 0;
    while (x >= weight[k]) x -= weight[k++];
    switch (k) {
    case 0: doc_profile(w, r, b); return 0;
    case 1: doc_story(w, r, b); return 0;
    case 2: doc_causal(w, r, b); return 0;
    case 3: doc_wsc_text(w, r, b); return 0;
    case 4: doc_general(r, b); return 0;
    case 5: return doc_task(w, r, W_T_SCIQ, b);
    case 6: return doc_task(w, r, W_T_BOOLQ, b);
    case 7: return doc_task(w, r, W_T_RTE, b);
    case 8: return doc_task(w, r, W_T_COPA, b);
    case 9: return doc_task(w, r, W_T_WSC, b);
    case 10: doc_read(w, r, b); return 0;
    default: doc_rules(w, r, b); return 0;
    }
}

/* Documents until `bytes`, separated by blank lines. Documents in `skip`
 * are not written; written ones are added to `seen` when given. */
int w_write_text(const ds_world *w, uint64_t tag, size_t bytes, w_hset *seen,
                 const w_hset *skip, const char *path, const char *stage,
                 ds_world_progress cb, void *ud, lm_err *err) {
    lm_rng r;
    w_stream(&r, w->o.seed, tag);
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
        uint64_t h = w_fnv(d.p, d.n);
        if (skip && w_hset_has(skip, h)) {
            if (++misses > 100000) break;
            continue;
        }
        if (seen && w_hset_add(seen, h) < 0) out.oom = 1;
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

/* ---- instruction chats ---- */

static void chat_attr(const ds_world *w, lm_rng *r, int type, ds_buf *q, ds_buf *a) {
    for (;;) {
        int kind = w_random_kind(r);
        const w_ent *e = w_random_ent(w, r, 0, kind);
        int at = w_random_attr(w, r, kind), v = e->val[at], cls = w_attrs[at].cls;
        w_slots s = {0};
        w_vtxt t;
        w_ent_slots(e, 0, &s);
        int mode = type == DS_Q_OTHER ? w_rnd(r, 3) : 0;
        if (mode == 0) {
            if (w->n_qt[at][type] == 0) continue;
            int ti = w->qt[at][type][w_rnd(r, w->n_qt[at][type])];
            w_sentence(q, w_attrs[at].questions[ti], &s);
        } else if (mode == 1) {
            /* yes/no: "Is Anna Stone a baker?" */
            int yes = w_chance(r, 1, 2);
            int qv = yes ? v : w_other_value(w, r, cls, 0, &v, 1, NULL);
            if (qv < 0) continue;
            w_val_slots(w, cls, qv, &t, &s);
            w_sentence(q, w_pick_s(r, w_attrs[at].yesno), &s);
            ds_buf_putc(q, '?');
            ds_buf_puts(a, yes ? "Yes." : "No.");
        } else {
            w_sentence(q, w_pick_s(r, w_tell_q), &s);
            w_about(w, r, a, e, at, v, 2 + w_rnd(r, 2));
            return;
        }
        w_fact(w, a, e, at, v, 0, w_pick_ti(r, e, at, 1));
        if (w_chance(r, 1, 2)) {
            int other = w_random_attr(w, r, kind);
            if (other != at)
                w_fact(w, a, e, other, e->val[other], 1, w_rnd(r, w_n_strs(w_attrs[other].facts)));
        }
        return;
    }
}

static void chat_rule(const ds_world *w, lm_rng *r, int type, ds_buf *q, ds_buf *a) {
    const w_ent *e = w_random_ent(w, r, 0, W_PERSON);
    int ri = w_rnd(r, w_n_rules);
    const w_rule *ru = &w_rules[ri];
    char thing[16] = "";
    if (ru->things) w_pick_bar(r, ru->things, thing, sizeof thing);
    if (type == DS_Q_WHY) {
        w_slots s = {0};
        w_ent_slots(e, 1, &s);
        w_put(&s, "thing", thing);
        w_sentence(q, ru->why_q, &s);
        w_sentence(a, ru->why_a, &s);
        return;
    }
    ds_buf cn = {0};
    w_event(&cn, ru, thing, e, 0, 0, 1, 0);
    w_slots s = {0};
    w_put(&s, "CN", ds_buf_cstr(&cn) ? cn.p : "");
    w_sentence(q, w_pick_s(r, w_rule_what), &s);
    ds_buf_free(&cn);
    w_event(a, ru, thing, e, 1, 1, 1, 1);
}

int w_write_instructions(const ds_world *w, const char *path, ds_world_progress cb,
                         void *ud, lm_err *err) {
    lm_rng r;
    w_stream(&r, w->o.seed, 3);
    ds_buf out = {0}, q = {0}, a = {0}, t = {0};
    w_hset seen = {0};
    int n = w->o.n_instructions, misses = 0;
    for (int i = 0; i < n;) {
        q.n = a.n = t.n = 0;
        int type = w_rnd(&r, DS_Q_COUNT);
        if (type == DS_Q_WHY || (type == DS_Q_WHAT && w_chance(&r, 1, 5)))
            chat_rule(w, &r, type, &q, &a);
        else
            chat_attr(w, &r, type, &q, &a);
        ds_buf_puts(&t, "### Human: ");
        ds_buf_puts(&t, ds_buf_cstr(&q));
        ds_buf_puts(&t, " ### Assistant: ");
        ds_buf_puts(&t, ds_buf_cstr(&a));
        if (t.oom) break;
        int fresh = w_hset_add(&seen, w_fnv(t.p, t.n));
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
