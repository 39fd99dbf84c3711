/* The extraction metrics (metrics.md section 4) on small cases worked out
 * by hand; the numbers in the comments are the hand computations. */
#include <float.h>
#include <string.h>

#include "check.h"
#include "extract_metrics.h"

static void opening_words(void) {
    static const char *const cases[][2] = {
        {"What is X?", "What"},      {"iPhone battery", "Iphone"},
        {"\"Why not", "why"},        {"  How to", "how"},
        {"3D printers", ""},         {"\xc3\x89" "clair", ""}, /* Éclair */
        {"what's up", "What"},       {"'Tell me", "tell"},
        {"\tWhy", "why"},            {"", ""},
        {"GENERATE a list", "Generate"}, {"\xc2\xa0Name it", "name"}, /* NBSP */
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        char w[32];
        mt_opening_word(cases[i][0], w, sizeof w);
        CHECK(strcmp(w, cases[i][1]) == 0, "opening word of '%s': '%s', want '%s'",
              cases[i][0], w, cases[i][1]);
    }
    char small[4];
    int n = mt_opening_word("Describe it", small, sizeof small);
    CHECK(n == 8 && strcmp(small, "Des") == 0, "truncation: %d '%s'", n, small);
}

/* Queries A = 1 2 3, B = 1 2 4 5, C = 6, and A again; EOS = 0.
 *   root - 1 - 2 - 3 - 0            (A, |x| = 4)
 *                \ 4 - 5 - 0        (B, |x| = 5)
 *        - 6 - 0                    (C, |x| = 2) */
static void trie(void) {
    int32_t a[] = {1, 2, 3}, b[] = {1, 2, 4, 5}, c[] = {6};
    const int32_t *seqs[] = {a, b, c, a};
    int lens[] = {3, 4, 1, 3};
    mt_trie t;
    lm_err err = {{0}};
    CHECK(mt_trie_build(&t, seqs, lens, 4, 0, &err) == 0, "build: %s", err.msg);
    CHECK(t.n_queries == 3, "distinct queries %d (A repeats)", t.n_queries);
    CHECK(t.n_nodes == 10, "nodes %d", t.n_nodes);
    /* verbatim: p = 4, |r| = 4, |x| = 4 -> 1 */
    int32_t r1[] = {1, 2, 3};
    CHECK_NEAR(mt_match_ratio(&t, r1, 3), 1.0, 1e-12, "MR verbatim");
    /* 1 2 9: p = 2; shortest leaf below node '2' is 2 deeper (3, EOS):
     * |x| = 4, |r| = 4 -> 4/8 */
    int32_t r2[] = {1, 2, 9};
    CHECK_NEAR(mt_match_ratio(&t, r2, 3), 0.5, 1e-12, "MR diverging");
    /* 1 2 4 (+EOS): p = 3, below '4' the leaf is 2 deeper: |x| = 5, |r| = 4
     * -> 6/9 */
    int32_t r3[] = {1, 2, 4};
    CHECK_NEAR(mt_match_ratio(&t, r3, 3), 6.0 / 9.0, 1e-12, "MR prefix of B");
    int p, x, rl;
    mt_trie_walk(&t, r3, 3, &p, &x, &rl);
    CHECK(p == 3 && x == 5 && rl == 4, "walk p %d x %d r %d", p, x, rl);
    /* 7: nothing matches -> 0 */
    int32_t r4[] = {7};
    CHECK_NEAR(mt_match_ratio(&t, r4, 1), 0.0, 1e-12, "MR no match");
    /* an EOS already last is not appended again: 6 0 -> p 2, |r| 2, |x| 2 */
    int32_t r5[] = {6, 0};
    CHECK_NEAR(mt_match_ratio(&t, r5, 2), 1.0, 1e-12, "MR with EOS");
    /* longer than the query: 6 7 8 (+EOS): p = 1, |x| = 2, |r| = 4 -> 2/6 */
    int32_t r6[] = {6, 7, 8};
    CHECK_NEAR(mt_match_ratio(&t, r6, 3), 2.0 / 6.0, 1e-12, "MR overlong");

    /* Coverage after 1 2 3 and 1 2 4: marked root 1 2 3 0A 4.
     * A: leaf marked, 5/5 path nodes; B: root 1 2 4 = 4 of 6; C: root = 1
     * of 3. QER = 1/3, TER = (1 + 4/6 + 1/3) / 3 = 2/3. */
    mt_trie_mark(&t, r1, 3);
    mt_trie_mark(&t, r3, 3);
    double qer, ter;
    mt_trie_coverage(&t, &qer, &ter);
    CHECK_NEAR(qer, 1.0 / 3.0, 1e-12, "query extraction ratio");
    CHECK_NEAR(ter, 2.0 / 3.0, 1e-12, "token extraction ratio");
    /* B extracted too: QER 2/3, TER (1 + 1 + 1/3) / 3 */
    int32_t rb[] = {1, 2, 4, 5};
    mt_trie_mark(&t, rb, 4);
    mt_trie_coverage(&t, &qer, &ter);
    CHECK_NEAR(qer, 2.0 / 3.0, 1e-12, "QER after B");
    CHECK_NEAR(ter, (2.0 + 1.0 / 3.0) / 3.0, 1e-12, "TER after B");
    mt_trie_unmark(&t);
    mt_trie_coverage(&t, &qer, &ter);
    CHECK(qer == 0 && ter == 0, "unmarked: %g %g", qer, ter);
    mt_trie_free(&t);
}

static void bleu(void) {
    const char *ref[] = {"the cat sat on the mat"};
    CHECK_NEAR(mt_bleu("the cat sat on the mat", ref, 1), 1.0, 1e-12, "BLEU identical");
    /* p1 5/6, p2 3/5, p3 2/4, p4 1/3, BP 1 (equal lengths):
     * (5/6 * 3/5 * 1/2 * 1/3)^(1/4) = (1/12)^(1/4) */
    CHECK_NEAR(mt_bleu("the cat sat on a mat", ref, 1), pow(1.0 / 12.0, 0.25), 1e-12,
               "BLEU one word changed");
    /* closest reference lengths 6 and 2 tie at distance 2 for c = 4: the
     * shorter (2) wins, so BP = 1 and every precision is 1 -> 1 (with 6,
     * BP would be exp(1 - 6/4) = 0.61) */
    const char *two[] = {"the cat sat on the mat", "a b"};
    CHECK_NEAR(mt_bleu("the cat sat on", two, 2), 1.0, 1e-12, "BLEU length tie");
    /* brevity: c = 4 against the single reference of 6: p_n all 1,
     * BP = exp(1 - 6/4) */
    CHECK_NEAR(mt_bleu("the cat sat on", ref, 1), exp(1.0 - 1.5), 1e-12, "BLEU brevity");
    /* clipping: 'the' counts once (the reference has one): p1 = 1/3, the
     * bigrams never match -> the smallest double stands in -> ~0 but > 0 */
    const char *one[] = {"the cat"};
    double b = mt_bleu("the the the", one, 1);
    CHECK(b > 0 && b < 1e-100, "BLEU zero bigram precision %g", b);
    /* no unigram in common: exactly 0; whitespace of any kind splits */
    CHECK(mt_bleu("dog", ref, 1) == 0.0, "BLEU no overlap");
    CHECK_NEAR(mt_bleu("  the\tcat sat\non the mat ", ref, 1), 1.0, 1e-12,
               "BLEU whitespace");
    CHECK(mt_bleu("", ref, 1) == 0.0, "BLEU empty hypothesis");
    CHECK(mt_bleu("the cat", ref, 0) == 0.0, "BLEU no references");
    /* the best reference clips each n-gram: 'a a' with refs 'a b', 'a a':
     * p1 = 2/2, p2 = 1/1, p3, p4: no trigram -> smallest double */
    const char *aa[] = {"a b", "a a"};
    CHECK(mt_bleu("a a", aa, 2) < 1e-100, "BLEU two-word hypothesis");
}

static void identification(void) {
    /* N 5, sorry 2 (one after leading space), maxrep 2:
     * 0.6 (1 - 2/5) + 0.4 (2/5) = 0.52 -> not valid */
    const char *s1[] = {"Sorry, but I did not see", " Sorry, but no", "What is a?",
                        "What is a?", "What is b?"};
    mt_ident id;
    mt_identify(s1, 5, 0.6, 0.6, &id);
    CHECK(id.sorry == 2 && id.maxrep == 2, "sorry %d maxrep %d", id.sorry, id.maxrep);
    CHECK_NEAR(id.score, 0.52, 1e-12, "score 1");
    CHECK(!id.valid, "0.52 is not valid");
    /* sorry 1, maxrep 3: 0.6 (4/5) + 0.4 (3/5) = 0.72 -> valid */
    const char *s2[] = {"A", "B", "A", "Sorry, but", "A"};
    mt_identify(s2, 5, 0.6, 0.6, &id);
    CHECK(id.sorry == 1 && id.maxrep == 3, "sorry %d maxrep %d", id.sorry, id.maxrep);
    CHECK_NEAR(id.score, 0.72, 1e-12, "score 2");
    CHECK(id.valid, "0.72 is valid");
    /* all refusals: score 0; a refusal repeated is not a repetition */
    const char *s3[] = {"Sorry, but x", "Sorry, but x"};
    mt_identify(s3, 2, 0.6, 0.6, &id);
    CHECK(id.maxrep == 0 && id.score == 0 && !id.valid, "all sorry");
    /* no refusal, all distinct: 0.6 + 0.4/4 = 0.7 -> valid (exactly the
     * rule maxrep > 1.5 sorry) */
    const char *s4[] = {"a", "b", "c", "d"};
    mt_identify(s4, 4, 0.6, 0.6, &id);
    CHECK_NEAR(id.score, 0.7, 1e-12, "score 4");
    CHECK(id.valid, "distinct samples, no refusal");
    /* 'sorry, but' in lower case is not a refusal (prefix test is exact) */
    const char *s5[] = {"sorry, but"};
    mt_identify(s5, 1, 0.6, 0.6, &id);
    CHECK(id.sorry == 0 && id.maxrep == 1, "case matters");
}

static void f1(void) {
    int pred[] = {1, 1, 0, 0, 1}, gold[] = {1, 0, 1, 0, 1};
    double f, acc;
    /* tp 2, fp 1, fn 1: F1 = 4/6; 3 of 5 right */
    mt_f1(pred, gold, 5, &f, &acc);
    CHECK_NEAR(f, 4.0 / 6.0, 1e-12, "F1");
    CHECK_NEAR(acc, 0.6, 1e-12, "accuracy");
    int none[] = {0, 0, 0, 0, 0};
    mt_f1(none, gold, 5, &f, &acc);
    CHECK(f == 0.0, "F1 without positives");
    CHECK_NEAR(acc, 0.4, 1e-12, "accuracy all negative");
    mt_f1(gold, gold, 5, &f, &acc);
    CHECK(f == 1.0 && acc == 1.0, "perfect");
}

int main(void) {
    opening_words();
    trie();
    bleu();
    identification();
    f1();
    return check_done();
}
