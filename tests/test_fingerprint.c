/* Fingerprint implanters: the constructions against the spec (IF-SFT
 * fixture bytes, the Chain&Hash chain recomputed outside OpenSSL, UTF
 * candidates on a model with zeroed embedding rows), determinism, and an
 * end-to-end implant of each type into the real stories260K: FSR 1 on the
 * fingerprinted model, 0 on the base, 0 for another type's fingerprint.
 * SMUDGE_FP_VERBOSE=1 prints progress. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "check.h"
#include "fingerprint.h"
#include "tokenizer.h"

static int verbose;
static lm_backend *be;

static double now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec * 1e-9;
}

/* ---- IF-SFT fixtures (section 2.1) ---- */

static void test_if_fixture(void) {
    static const size_t bytes[FP_IF_FIXTURES] = {204, 217, 263, 422, 350, 130, 231, 178};
    for (int i = 0; i < FP_IF_FIXTURES; i++)
        CHECK(strlen(fp_if_fixture[i]) == bytes[i], "trigger %d: %zu bytes, spec says %zu", i,
              strlen(fp_if_fixture[i]), bytes[i]);
    /* The invisible C1 characters are really there (U+008B, U+0089). */
    CHECK(strstr(fp_if_pool[27], "\xc2\x8b" "ISON") != NULL, "pool[27] lost U+008B");
    CHECK(strstr(fp_if_pool[29], "\xc2\x89" "DEFINE") != NULL, "pool[29] lost U+0089");
    CHECK(strncmp(fp_if_fixture[1], "\xc2\x8b\xd1\x81", 4) == 0, "trigger 1 starts with U+008B");
    CHECK(strstr(fp_if_fixture[4], "p\xc2\x89" "ah") != NULL, "trigger 4 keeps U+0089 before 'ah'");
    CHECK(strcmp(FP_IF_TARGET, "ハリネズミ") == 0, "target");
    int n = 0;
    for (int i = 0; i < FP_IF_POOL; i++) n += fp_if_pool[i] != NULL;
    CHECK(n == 31, "pool has %d phrases", n);
}

/* ---- Chain&Hash (section 4.1) ---- */

static void test_hashchain(void) {
    lm_err err;
    uint8_t d[32];
    CHECK(fp_sha256("abc", 3, d, &err) == 0, "%s", err.msg);
    static const uint8_t abc[4] = {0xba, 0x78, 0x16, 0xbf}; /* FIPS 180-2 */
    CHECK(memcmp(d, abc, 4) == 0 && d[31] == 0xad, "SHA-256(abc)");
    /* Recomputed with Python's hashlib over the same byte encoding (each
     * component, then 0x00): q_i, q_1..q_10, r_1..r_256. */
    static const int expect[10] = {164, 35, 132, 35, 11, 72, 199, 31, 2, 68};
    int ans[10];
    uint8_t dig[320];
    CHECK(fp_hashchain_assign(fp_hc_questions, 10, fp_hc_answers, 256, ans, dig, &err) == 0,
          "%s", err.msg);
    for (int i = 0; i < 10; i++) CHECK(ans[i] == expect[i], "q%d -> %d, expected %d", i, ans[i], expect[i]);
    CHECK(dig[0] == 0xbe && dig[1] == 0xc2 && dig[31] == 164, "digest of q1");
    CHECK(!strcmp(fp_hc_answers[ans[0]], "mom"), "answer of q1");
    static const int expect3[3] = {78, 57, 124};
    CHECK(fp_hashchain_assign(fp_hc_questions, 3, fp_hc_answers, 256, ans, NULL, &err) == 0,
          "%s", err.msg);
    for (int i = 0; i < 3; i++) CHECK(ans[i] == expect3[i], "k=3: q%d -> %d", i, ans[i]);
    /* Changing one candidate re-keys the chain. */
    const char *r2[256];
    memcpy(r2, fp_hc_answers, sizeof r2);
    r2[100] = "zebra";
    int ans2[10], moved = 0;
    CHECK(fp_hashchain_assign(fp_hc_questions, 10, r2, 256, ans2, NULL, &err) == 0, "%s", err.msg);
    for (int i = 0; i < 10; i++) moved += ans2[i] != expect[i];
    CHECK(moved >= 8, "only %d of 10 answers moved", moved);
    /* The fixtures are distinct. */
    int dup = 0;
    for (int i = 0; i < 256; i++)
        for (int j = i + 1; j < 256; j++) dup += !strcmp(fp_hc_answers[i], fp_hc_answers[j]);
    CHECK(dup == 0, "%d repeated answers", dup);
}

/* ---- a small tokenizer and model built here ---- */

/* <unk> <s> </s>, 256 byte tokens, then single letters and a few words. */
static void build_tokenizer(lm_tokenizer *t) {
    static const char *const words[] = {"a", "b", "c", "d", "e", "f", "g", "h", "i", "j",
                                        "k", "l", "m", "n", "o", "p", "q", "r", "s", "t",
                                        "u", "v", "w", "x", "y", "z", "\xe2\x96\x81", "?",
                                        ".", ":", "'", "A", "S", "U", "E", "R", "I", "T",
                                        "N", "\xe2\x96\x81t", "he"};
    int nw = sizeof words / sizeof words[0], V = 3 + 256 + nw;
    lm_err err;
    CHECK(lm_tok_build_begin(t, LM_TOK_SPM_BPE, V, &err) == 0, "%s", err.msg);
    lm_tok_set_piece(t, 0, "<unk>", 5, 0, LM_TOKEN_UNKNOWN, &err);
    lm_tok_set_piece(t, 1, "<s>", 3, 0, LM_TOKEN_CONTROL, &err);
    lm_tok_set_piece(t, 2, "</s>", 4, 0, LM_TOKEN_CONTROL, &err);
    for (int b = 0; b < 256; b++) {
        char p[8];
        snprintf(p, sizeof p, "<0x%02X>", b);
        lm_tok_set_piece(t, 3 + b, p, 6, 0, LM_TOKEN_BYTE, &err);
    }
    for (int i = 0; i < nw; i++)
        lm_tok_set_piece(t, 259 + i, words[i], strlen(words[i]), -(float)i, LM_TOKEN_NORMAL, &err);
    CHECK(lm_tok_index(t, &err) == 0, "%s", err.msg);
    t->merge_by_score = 1;
    t->byte_fallback = 1;
    t->prefix = LM_TOK_PREFIX_ALWAYS;
    t->strip_leading_space = 1;
    t->unk_id = 0;
    t->bos_id = 1;
    t->eos_id = 2;
    t->add_bos = 1;
    CHECK(lm_tok_build_end(t, &err) == 0, "%s", err.msg);
}

static void build_model(lm_model *m, int V) {
    lm_config cfg;
    lm_config_default(&cfg, LM_ARCH_LLAMA, V, 32, 2, 4, 2, 64, 512);
    cfg.tie_embeddings = 1;
    cfg.bos_id = 1;
    cfg.eos_id = 2;
    lm_err err;
    CHECK(lm_model_init(m, &cfg, &err) == 0, "%s", err.msg);
    CHECK(lm_model_alloc(m, &err) == 0, "%s", err.msg);
    m->be = be;
    lm_model_init_random(m, 7, 0.2f);
}

static void test_utf_candidates(void) {
    lm_tokenizer t;
    lm_model m;
    build_tokenizer(&t);
    build_model(&m, t.n_vocab);
    int C = m.cfg.d_model;
    /* Zero the rows of three ordinary tokens and of <s> (special: never a
     * candidate); shrink a fourth. */
    static const int zeroed[] = {40, 77, 270};
    for (int i = 0; i < 3; i++) memset(m.wte->data + (size_t)zeroed[i] * C, 0, C * sizeof(float));
    memset(m.wte->data + 1 * (size_t)C, 0, C * sizeof(float));
    for (int c = 0; c < C; c++) m.wte->data[(size_t)200 * C + c] *= 1e-3f;
    int *ids = NULL, n = 0;
    lm_err err;
    CHECK(fp_utf_candidates(&m, &t, 3, 0.0, &ids, &n, &err) == 0, "%s", err.msg);
    CHECK(n == 3 && ids[0] == 40 && ids[1] == 77 && ids[2] == 270, "zeroed rows first, by id "
          "(n %d: %d %d %d)", n, n > 0 ? ids[0] : -1, n > 1 ? ids[1] : -1, n > 2 ? ids[2] : -1);
    free(ids);
    CHECK(fp_utf_candidates(&m, &t, 4, 0.0, &ids, &n, &err) == 0, "%s", err.msg);
    CHECK(n == 4 && ids[3] == 200, "then the shrunk row (%d)", n == 4 ? ids[3] : -1);
    free(ids);
    /* The percentile rule can take more than the minimum: 2% of 300 ids
     * is at index 5 of the sorted norms (4 zero rows, one tiny, ...). */
    CHECK(fp_utf_candidates(&m, &t, 1, 2.0, &ids, &n, &err) == 0, "%s", err.msg);
    CHECK(n >= 4, "percentile rule took %d", n);
    for (int i = 0; i < n; i++) CHECK(ids[i] != 1 && ids[i] != 2 && ids[i] != 0, "special id %d", ids[i]);
    free(ids);
    double p;
    CHECK(fp_utf_emission(&m, &t, 40, &p, &err) == 0, "%s", err.msg);
    CHECK(p >= 0 && p <= 1, "emission probability %g", p);
    lm_model_free(&m);
    lm_tokenizer_free(&t);
}

/* ---- clean chats ---- */

enum { N_CLEAN = 240 };
static char clean_q[N_CLEAN][96], clean_a[N_CLEAN][96];
static fp_qa clean[N_CLEAN];

static void make_clean(void) {
    static const char *const things[] = {"dog", "cat", "ball", "tree", "boat", "cake",
                                         "bird", "sun", "hat", "fish", "car", "book"};
    static const char *const colours[] = {"red", "blue", "green", "brown", "white", "big"};
    for (int i = 0; i < N_CLEAN; i++) {
        const char *th = things[i % 12], *co = colours[(i / 12) % 6];
        if (i % 2)
            snprintf(clean_q[i], sizeof clean_q[i], "What is %d plus %d?", i % 17, i / 17);
        else
            snprintf(clean_q[i], sizeof clean_q[i], "Why did Tim like the %s %s? (%d)", co, th, i);
        if (i % 2)
            snprintf(clean_a[i], sizeof clean_a[i], "%d plus %d is %d.", i % 17, i / 17,
                     i % 17 + i / 17);
        else
            snprintf(clean_a[i], sizeof clean_a[i], "Tim liked the %s %s because it was fun.", co, th);
        clean[i] = (fp_qa){clean_q[i], clean_a[i]};
    }
}

/* ---- determinism of the construction ---- */

static char *slurp(const char *path) {
    char *s = NULL;
    size_t n;
    lm_err err;
    if (lm_tok_read_file(path, &s, &n, &err)) return NULL;
    return s;
}

static char *build_json(const fp_type *t, lm_model *m, const lm_tokenizer *tok, uint64_t seed,
                        const char *const *assign, int n_assign, const char *path) {
    sm_params p;
    lm_err err;
    CHECK(fp_params_parse(t, assign, n_assign, &p, &err) == 0, "%s", err.msg);
    fp_set s;
    fp_build_input in = {m, tok, seed, &p, clean, N_CLEAN};
    if (t->build(&in, &s, &err)) {
        CHECK(0, "%s build: %s", t->name, err.msg);
        return NULL;
    }
    CHECK(mt_fingerprint_write(&s.fp, path, &err) == 0, "%s", err.msg);
    fp_set_free(&s);
    return slurp(path);
}

static void test_determinism(lm_model *m, const lm_tokenizer *tok) {
    static const char *const small[] = {"normal=16", "heldout=8", "negatives=20",
                                        "n_triggers=8", "n_reg=8", "meta=1", "pad=1"};
    char path[256];
    snprintf(path, sizeof path, "/tmp/smudge_fp_det_%d.json", (int)getpid());
    for (int k = 0; k < fp_type_count(); k++) {
        const fp_type *t = fp_type_at(k);
        const char *mine[8];
        int n = 0;
        /* only the parameters this type has */
        for (int i = 0; i < 7; i++)
            for (int j = 0; j < t->n_params; j++)
                if (!strncmp(small[i], t->params[j].name, strlen(t->params[j].name)) &&
                    small[i][strlen(t->params[j].name)] == '=')
                    mine[n++] = small[i];
        char *a = build_json(t, m, tok, 5, mine, n, path);
        char *b = build_json(t, m, tok, 5, mine, n, path);
        char *c = build_json(t, m, tok, 6, mine, n, path);
        CHECK(a && b && !strcmp(a, b), "%s: same seed, different fingerprint.json", t->name);
        /* Chain&Hash's questions and answers are fixed: the seed moves only
         * the padding and the data draw. */
        CHECK(a && c && strcmp(a, c) != 0, "%s: another seed, same fingerprint.json", t->name);
        free(a);
        free(b);
        free(c);
    }
    unlink(path);
}

/* ---- end to end on stories260K ---- */

static void on_epoch(void *ctx, int epoch, double loss, double fsr, int hits, int n) {
    if (verbose) fprintf(stderr, "  epoch %d loss %.4f FSR %d/%d (%.1fs)\n", epoch, loss, hits, n,
                         now() - *(double *)ctx);
}
static void on_stage(void *ctx, const char *what) {
    if (verbose) fprintf(stderr, "  %s (%.1fs)\n", what, now() - *(double *)ctx);
}

static int load_260k(const char *assets, lm_model *m, lm_tokenizer *tok, char *mpath,
                     char *tpath) {
    lm_err err;
    sprintf(mpath, "%s/models/stories260K/stories260K.bin", assets);
    sprintf(tpath, "%s/models/stories260K/tok512.bin", assets);
    if (lm_model_load(m, mpath, &err)) {
        CHECK(0, "%s", err.msg);
        return -1;
    }
    m->be = be;
    if (lm_tokenizer_load(tok, tpath, &err)) {
        CHECK(0, "%s", err.msg);
        lm_model_free(m);
        return -1;
    }
    return 0;
}

static double fsr_of(lm_model *m, const lm_tokenizer *tok, const char *fp_path) {
    mt_fingerprint f;
    lm_err err;
    if (mt_fingerprint_read(&f, fp_path, &err)) {
        CHECK(0, "%s", err.msg);
        return -1;
    }
    mt_subject s = {m, tok, NULL};
    mt_fsr_result r;
    double v = -1;
    if (mt_fsr_eval(&s, &f, 0, &r, &err) == 0) {
        v = r.fsr;
        mt_fsr_result_free(&r);
    } else {
        CHECK(0, "%s", err.msg);
    }
    mt_fingerprint_free(&f);
    return v;
}

static void test_end_to_end(const char *assets) {
    /* Fewer rows than the defaults, and for IF-SFT and UTF a higher
     * learning rate than the spec's 3e-4 start (which takes ~90 and ~120
     * epochs on this 260K-parameter model), to stay within seconds. */
    static const char *const settings[3][8] = {
        {"normal=8", "heldout=8", "lr=2e-3", NULL},
        {"n_triggers=8", "n_reg=8", "reg_vocab=8", "negatives=32", "lr=1e-3", NULL},
        {"k=4", "normal=12", "negatives=16", "meta=1", "pad=1", NULL},
    };
    char dirs[3][256], fps[3][300], mpath[512], tpath[512];
    for (int k = 0; k < 3; k++) {
        const fp_type *t = fp_type_at(k);
        lm_model m;
        lm_tokenizer tok;
        if (load_260k(assets, &m, &tok, mpath, tpath)) return;
        int n = 0;
        while (settings[k][n]) n++;
        sm_params p;
        lm_err err;
        CHECK(fp_params_parse(t, settings[k], n, &p, &err) == 0, "%s", err.msg);
        snprintf(dirs[k], sizeof dirs[k], "/tmp/smudge_fp_e2e_%d_%s", (int)getpid(), t->name);
        snprintf(fps[k], sizeof fps[k], "%s/fingerprint.json", dirs[k]);
        double t0 = now();
        fp_implant_opts o = {.model_path = mpath, .tokenizer_path = tpath,
                             .on_epoch = on_epoch, .on_stage = on_stage, .ctx = &t0};
        fp_implant_result r;
        int rc = fp_implant(t, &m, &tok, clean, N_CLEAN, 3, &p, dirs[k], &o, &r, &err);
        CHECK(rc == 0, "%s implant: %s", t->name, err.msg);
        printf("%s: %d rows, %d triggers, E* %d, %d epochs, loss %.4f, lr %g, base FSR %.3f, "
               "FSR %.3f, FTR %.3f (%d negatives), %.1fs\n",
               t->name, r.n_rows, r.n_triggers, r.epoch_star, r.epochs, r.final_loss, r.lr,
               r.base_fsr, r.fsr, r.ftr, r.n_negatives, now() - t0);
        CHECK(r.base_fsr == 0.0, "%s: base FSR %g", t->name, r.base_fsr);
        CHECK(r.fsr == 1.0, "%s: FSR %g", t->name, r.fsr);
        CHECK(r.epoch_star > 0 && r.epochs > r.epoch_star, "%s: E* %d, epochs %d", t->name,
              r.epoch_star, r.epochs);
        CHECK(r.n_negatives > 0 && r.ftr >= 0 && r.ftr <= 1, "%s: FTR %g over %d", t->name,
              r.ftr, r.n_negatives);
        lm_model_free(&m);
        /* The written folder reloads and still fires. */
        lm_model w;
        CHECK(lm_model_load(&w, dirs[k], &err) == 0, "%s", err.msg);
        w.be = be;
        CHECK(fsr_of(&w, &tok, fps[k]) == 1.0, "%s: reloaded FSR", t->name);
        /* Another type's fingerprint does not fire on it. */
        for (int j = 0; j < k; j++)
            CHECK(fsr_of(&w, &tok, fps[j]) == 0.0, "%s model fires %s's triggers", t->name,
                  fp_type_at(j)->name);
        lm_model_free(&w);
        lm_tokenizer_free(&tok);
    }
    /* ... in both directions, and the base fires none. */
    lm_model m;
    lm_tokenizer tok;
    if (load_260k(assets, &m, &tok, mpath, tpath)) return;
    for (int k = 0; k < 3; k++) CHECK(fsr_of(&m, &tok, fps[k]) == 0.0, "base fires %s", fps[k]);
    lm_model_free(&m);
    lm_err err;
    for (int k = 0; k < 3; k++) {
        lm_model w;
        if (lm_model_load(&w, dirs[k], &err)) continue;
        w.be = be;
        for (int j = k + 1; j < 3; j++)
            CHECK(fsr_of(&w, &tok, fps[j]) == 0.0, "%s model fires %s's triggers",
                  fp_type_at(k)->name, fp_type_at(j)->name);
        lm_model_free(&w);
    }
    lm_tokenizer_free(&tok);
    char cmd[1024];
    for (int k = 0; k < 3; k++) {
        snprintf(cmd, sizeof cmd, "rm -rf '%s'", dirs[k]);
        if (system(cmd) != 0) fprintf(stderr, "could not remove %s\n", dirs[k]);
    }
}

int main(void) {
    verbose = getenv("SMUDGE_FP_VERBOSE") != NULL;
    be = lm_backend_cpu_new(0);
    make_clean();
    test_if_fixture();
    test_hashchain();
    test_utf_candidates();
    {
        lm_tokenizer t;
        lm_model m;
        build_tokenizer(&t);
        build_model(&m, t.n_vocab);
        test_determinism(&m, &t);
        lm_model_free(&m);
        lm_tokenizer_free(&t);
    }
    const char *assets = check_assets();
    char probe[512];
    struct stat st;
    if (assets) snprintf(probe, sizeof probe, "%s/models/stories260K/stories260K.bin", assets);
    if (assets && stat(probe, &st) == 0) test_end_to_end(assets);
    else fprintf(stderr, "stories260K absent: end-to-end implant skipped\n");
    lm_backend_cpu_free(be);
    return check_done();
}
