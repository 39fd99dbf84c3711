/* Grid validation (every error names its field), sweeps, canonical JSON,
 * the unit DAG and its hashes (a change reaches only its subtree), the
 * outcome codec, running units into artifacts (debug track, and the real
 * `none` method on a tiny model), and the local runner's failure
 * isolation (crash, abort, NaN, timeout) without a results file. */
#include <ftw.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "check.h"
#include "grid.h"
#include "model.h"
#include "runner.h"
#include "unit.h"

static char tmp_root[256];

static int rm_entry(const char *p, const struct stat *st, int flag, struct FTW *f) {
    (void)st;
    (void)f;
    return flag == FTW_DP ? rmdir(p) : unlink(p);
}

/* Parses text expecting failure; checks the message holds `want`. */
static void expect_error(const char *text, const char *want) {
    su_grid g;
    lm_err err = {{0}};
    int rc = su_grid_parse(&g, text, "grid.json", NULL, &err);
    CHECK(rc != 0, "accepted a bad grid (wanted '%s')", want);
    CHECK(strstr(err.msg, want) != NULL, "error '%s' does not name '%s'", err.msg, want);
    if (rc == 0) su_grid_free(&g);
}

#define BASE_DEBUG \
    "\"track\":\"debug\",\"models\":[\"m\"],\"fingerprints\":[{\"type\":\"debug\"}],\"seeds\":[1]"

static void test_validation(void) {
    expect_error("{\"modles\":[]," BASE_DEBUG ",\"methods\":[\"debug\"]}",
                 "grid.json: (top level): unknown key 'modles'");
    expect_error("{" BASE_DEBUG ",\"methods\":[\"debug\",{\"name\":\"debug\",\"params\":{\"variant\":-1}}]}",
                 "grid.json: methods[1].params.variant: debug: parameter 'variant' = -1 is outside");
    expect_error("{" BASE_DEBUG ",\"methods\":[{\"name\":\"debug\",\"params\":{\"sleep_ms\":[1,\"x\"]}}]}",
                 "methods[0].params.sleep_ms[1]: debug: parameter 'sleep_ms' must be an integer");
    expect_error("{" BASE_DEBUG ",\"methods\":[{\"name\":\"debug\",\"params\":{\"rank\":8}}]}",
                 "methods[0].params.rank: debug has no parameter 'rank'");
    expect_error("{" BASE_DEBUG ",\"methods\":[{\"name\":\"debug\",\"param\":{}}]}",
                 "methods[0]: unknown key 'param'");
    expect_error("{" BASE_DEBUG ",\"methods\":[{\"name\":\"debug\",\"params\":{\"variant\":[]}}]}",
                 "methods[0].params.variant: an empty list sweeps over nothing");
    expect_error("{" BASE_DEBUG ",\"methods\":[{\"name\":\"debug\",\"params\":{\"variant\":[1,1]}}]}",
                 "methods[0].params.variant[1]: repeats the value at [0]");
    expect_error("{" BASE_DEBUG ",\"methods\":[\"debug\",\"debug\"]}",
                 "methods[1]: repeats methods[0]");
    expect_error("{" BASE_DEBUG ",\"methods\":[{\"name\":\"debug\",\"params\":{\"action\":\"explode\"}}]}",
                 "methods[0].params.action: debug: parameter 'action' must be one of");
    expect_error("{\"track\":\"debug\",\"models\":[\"m\"],\"fingerprints\":[\"debug\"],"
                 "\"methods\":[\"debug\"],\"seeds\":[1,2,1]}",
                 "seeds[2]: seed 1 repeats seeds[0]");
    expect_error("{" BASE_DEBUG ",\"methods\":[\"debug\"],\"resources\":{\"threads\":0}}",
                 "resources.threads: 0 is outside [1, 1024]");
    expect_error("{" BASE_DEBUG ",\"methods\":[\"debug\"],\"resources\":{\"thread\":2}}",
                 "resources: unknown key 'thread'");
    expect_error("{\"track\":\"debug\",\"fingerprints\":[\"debug\"],\"methods\":[\"debug\"],\"seeds\":[1]}",
                 "models: is required");
    expect_error("{\"track\":\"debug\",\"models\":[\"m\",\"m\"],\"fingerprints\":[\"debug\"],"
                 "\"methods\":[\"debug\"],\"seeds\":[1]}",
                 "models[1]: 'm' is already models[0]");
    expect_error("{\"track\":\"debug\",\"models\":[\"m\"],\"fingerprints\":[{\"type\":\"if-sft\"}],"
                 "\"methods\":[\"debug\"],\"seeds\":[1]}",
                 "fingerprints[0]: unknown fingerprint type 'if-sft' for the debug track");
    expect_error("{" BASE_DEBUG ",\"methods\":[\"debug\"],\"metrics\":[\"FSR\"]}",
                 "metrics[0]: metric name 'FSR' must be [a-z0-9_]+");
    expect_error("{" BASE_DEBUG ",\"methods\":[\"debug\"],\"track\":\"fast\"}", "key 'track' appears twice");
    expect_error("{" BASE_DEBUG ",\"methods\":[\"debug\"],\n\"seeds\": [1,\n}", "grid.json: line 3, column");
    expect_error("{\"track\":\"fast\",\"models\":[\"m\"]}", "track: 'fast' is not \"real\" or \"debug\"");
    /* The real track: methods come from the registry, models must exist. */
    expect_error("{\"models\":[\"./no/such/model\"],\"fingerprints\":[\"none\"],\"methods\":[\"none\"],"
                 "\"seeds\":[1]}",
                 "models[0]: ./no/such/model: No such file or directory");
    expect_error("{\"models\":[\"/\"],\"fingerprints\":[\"none\"],\"methods\":[\"lora-erase\"],\"seeds\":[1]}",
                 "methods[0]: unknown removal method 'lora-erase' for the real track");
    expect_error("{\"models\":[\"/\"],\"fingerprints\":[\"none\"],\"methods\":[\"debug\"],\"seeds\":[1]}",
                 "methods[0]: unknown removal method 'debug' for the real track");
    expect_error("{\"models\":[\"/\"],\"fingerprints\":[\"none\"],\"methods\":[\"none\"],\"seeds\":[1],"
                 "\"metrics\":[\"fsrr\"]}",
                 "metrics[0]: unknown metric 'fsrr'");
}

static int parse(su_grid *g, const char *text) {
    lm_err err = {{0}};
    int rc = su_grid_parse(g, text, "grid.json", NULL, &err);
    CHECK(rc == 0, "parse failed: %s", err.msg);
    return rc;
}

static void test_sweeps_and_canonical(void) {
    su_grid g, h;
    if (parse(&g, "{" BASE_DEBUG ",\"methods\":[{\"name\":\"debug\",\"params\":"
                  "{\"variant\":[1,2,3],\"sleep_ms\":[0,5]}},\"debug\"]}"))
        return;
    CHECK(g.n_methods == 7, "3 x 2 sweep + 1 = %d method sets", g.n_methods);
    CHECK(!strcmp(g.methods[1].set_label, "debug[variant=1,sleep_ms=5]"), "label %s",
          g.methods[1].set_label);
    CHECK(!strcmp(g.methods[6].set_label, "debug"), "label %s", g.methods[6].set_label);
    CHECK(sm_param_int(&g.methods[5].set.params, "variant") == 3 &&
              sm_param_int(&g.methods[5].set.params, "sleep_ms") == 5,
          "last combination");
    CHECK(strstr(g.methods[0].set.json, "\"variant\":1") != NULL, "params json %s", g.methods[0].set.json);
    /* Key order and whitespace do not change the canonical form. */
    char *a = su_canonical_json("{\"b\": [1, 2.5, true], \"a\": {\"y\": null, \"x\": \"s\"}}");
    char *b = su_canonical_json("{\"a\":{\"x\":\"s\",\"y\":null},\"b\":[1,2.5,true]}");
    CHECK(a && b && !strcmp(a, b), "canonical %s vs %s", a ? a : "-", b ? b : "-");
    CHECK(a && !strcmp(a, "{\"a\":{\"x\":\"s\",\"y\":null},\"b\":[1,2.5,true]}"), "canonical %s", a);
    free(a);
    free(b);
    if (parse(&h, "{\n  \"track\": \"debug\", \"models\": [\"m\"],\n \"fingerprints\":[{\"type\":\"debug\"}],"
                  "\"seeds\":[1],\"methods\":[{\"name\":\"debug\",\"params\":"
                  "{\"variant\":[1,2,3],\"sleep_ms\":[0,5]}},\"debug\"]}") == 0) {
        CHECK(!strcmp(g.sha256, h.sha256), "same grid, different layout: %s vs %s", g.sha256, h.sha256);
        su_grid_free(&h);
    }
    su_grid_free(&g);
}

/* Hashes of a plan, for comparing two plans unit by unit (same keys). */
static void compare_plans(const char *a_text, const char *b_text, const char *changed_key_part,
                          int expect_changed) {
    su_grid a, b;
    su_plan pa, pb;
    lm_err err = {{0}};
    if (parse(&a, a_text)) return;
    if (parse(&b, b_text)) {
        su_grid_free(&a);
        return;
    }
    CHECK(su_plan_build(&pa, &a, &err) == 0, "%s", err.msg);
    CHECK(su_plan_build(&pb, &b, &err) == 0, "%s", err.msg);
    int changed = 0;
    for (int i = 0; i < pa.n; i++) {
        int j = -1;
        /* Keys name the parameters that differ, so match by position. */
        if (i < pb.n && pa.units[i].kind == pb.units[i].kind) j = i;
        CHECK(j >= 0, "unit %d has no counterpart", i);
        if (j < 0) continue;
        int differs = strcmp(pa.units[i].hash, pb.units[j].hash) != 0;
        int should = strstr(pb.units[j].key, changed_key_part) != NULL;
        CHECK(differs == should, "%s: hash %s but should %s", pb.units[j].key,
              differs ? "changed" : "stayed", should ? "change" : "stay");
        changed += differs;
    }
    CHECK(changed == expect_changed, "%d hashes changed, expected %d", changed, expect_changed);
    su_plan_free(&pa);
    su_plan_free(&pb);
    su_grid_free(&a);
    su_grid_free(&b);
}

#define DAG_GRID(fp_variant, m2_params, extra)                                              \
    "{\"track\":\"debug\",\"models\":[\"m1\",\"m2\"],"                                     \
    "\"fingerprints\":[{\"type\":\"debug\",\"name\":\"fa\"},{\"type\":\"debug\",\"name\":\"fb\"," \
    "\"params\":{\"variant\":" fp_variant "}}],"                                              \
    "\"methods\":[{\"name\":\"debug\",\"params\":{\"variant\":1}},"                        \
    "{\"name\":\"debug\",\"params\":{\"variant\":2" m2_params "}},"                        \
    "{\"name\":\"debug\",\"params\":{\"variant\":3,\"shared\":true}}],"                    \
    "\"metrics\":[\"fsr\"],\"seeds\":[1,2]" extra "}"

static void test_dag(void) {
    su_grid g;
    su_plan p;
    lm_err err = {{0}};
    if (parse(&g, DAG_GRID("1", "", ""))) return;
    if (su_plan_build(&p, &g, &err)) {
        CHECK(0, "plan: %s", err.msg);
        su_grid_free(&g);
        return;
    }
    int per[SU_KIND_COUNT] = {0};
    for (int i = 0; i < p.n; i++) per[p.units[i].kind]++;
    /* 2 models, 2 fingerprints, 3 method sets (1 shared), 2 seeds. */
    CHECK(per[SU_BASE_EVAL] == 2, "base-eval %d", per[SU_BASE_EVAL]);
    CHECK(per[SU_IMPLANT] == 8, "implant %d", per[SU_IMPLANT]);
    CHECK(per[SU_PREPARE] == 4, "prepare %d", per[SU_PREPARE]);
    CHECK(per[SU_REMOVE] == 24, "remove %d", per[SU_REMOVE]);
    CHECK(per[SU_EVAL] == 32, "eval %d", per[SU_EVAL]);
    CHECK(p.n_stages == 3, "stages %d", p.n_stages);
    int hashes_unique = 1;
    for (int i = 0; i < p.n; i++) {
        const su_unit *u = &p.units[i];
        for (int k = 0; k < u->n_parents; k++)
            CHECK(p.parents[u->parent_off + k] < i, "%s: parent after child", u->key);
        for (int j = 0; j < i; j++) hashes_unique &= strcmp(p.units[j].hash, u->hash) != 0;
        if (u->kind == SU_PREPARE)
            CHECK(u->n_children == 2, "%s: shared by %d removals, want 2 (one per fingerprint)",
                  u->key, u->n_children);
        if (u->kind == SU_REMOVE)
            CHECK(u->n_parents == (sm_param_bool(&g.methods[u->method].set.params, "shared") ? 2 : 1),
                  "%s: %d inputs", u->key, u->n_parents);
        if (u->kind == SU_EVAL) CHECK(u->n_parents == 1 && u->target == p.parents[u->parent_off], "eval target");
    }
    CHECK(hashes_unique, "unit hashes are unique");
    CHECK(su_plan_check_executors(&p, &err) == 0, "debug executors: %s", err.msg);
    CHECK(su_plan_find_key(&p, "remove m2/fb/s2/debug[variant=3,shared=true]") >= 0, "key lookup");
    su_plan_free(&p);
    su_grid_free(&g);

    /* A changed method parameter: that method's removals and their evals
     * (2 models x 2 fingerprints x 2 seeds x 2 units), nothing else. */
    compare_plans(DAG_GRID("1", "", ""), DAG_GRID("1", ",\"sleep_ms\":7", ""), "variant=2", 16);
    /* A changed fingerprint parameter: its implants, their evals and every
     * removal on them and its eval: 2 x 2 x (2 + 3 x 2) = 32. */
    compare_plans(DAG_GRID("1", "", ""), DAG_GRID("9", "", ""), "/fb", 32);
    /* Resources, output and work dir change nothing. */
    compare_plans(DAG_GRID("1", "", ""),
                  DAG_GRID("1", "", ",\"resources\":{\"parallel\":2,\"threads\":3},\"work_dir\":\"x\""),
                  "\x01", 0);
}

static void test_codec(void) {
    rs_row r, back;
    lm_err err = {{0}};
    rs_row_init(&r);
    RS_SET(&r, status, RS_FAILED);
    rs_row_set_message(&r, "quote \" and newline\n");
    RS_SET(&r, unit_hash, "ab");
    r.time_start = 1795000000.125;
    r.tokens = 12345;
    r.rank = 3;
    rs_row_set_metric(&r, "fsr", 0.875, 8, &err);
    rs_row_set_metric(&r, "ppl", NAN, 0, &err);
    double items[3] = {1.5, NAN, -2};
    int64_t ids[2] = {7, -9};
    rs_row_add_detail(&r, "fsr.items", items, 3, &err);
    rs_row_add_detail_i64(&r, "ids", ids, 2, &err);
    char *json = su_row_encode(&r);
    rs_row_init(&back);
    CHECK(json && su_row_decode(json, strlen(json), &back, &err) == 0, "decode: %s", err.msg);
    CHECK(!strcmp(back.status, RS_FAILED) && !strcmp(back.message, r.message), "status/message");
    CHECK(back.time_start == r.time_start && back.tokens == 12345 && back.rank == 3, "numbers");
    CHECK(rs_row_metric(&back, "fsr", NULL) == 0.875 && isnan(rs_row_metric(&back, "ppl", NULL)),
          "metrics");
    const rs_detail *d = rs_row_detail(&back, "fsr.items");
    CHECK(d && d->count == 3 && d->f64[0] == 1.5 && isnan(d->f64[1]), "f64 detail");
    d = rs_row_detail(&back, "ids");
    CHECK(d && d->kind == RS_DETAIL_I64 && d->count == 2 && d->i64[1] == -9, "i64 detail");
    CHECK(su_row_decode("[1,2]", 5, &back, &err) != 0, "a non-object is refused");
    free(json);
    rs_row_free(&r);
    rs_row_free(&back);
}

static void test_execute_debug(void) {
    su_grid g;
    su_plan p;
    lm_err err = {{0}};
    if (parse(&g, "{\"track\":\"debug\",\"models\":[\"m\"],\"fingerprints\":[{\"type\":\"debug\"}],"
                  "\"methods\":[\"debug\",{\"name\":\"debug\",\"params\":{\"action\":\"fail\","
                  "\"message\":\"planned failure\"}}],\"metrics\":[\"fsr\"],\"seeds\":[4]}"))
        return;
    if (su_plan_build(&p, &g, &err)) {
        su_grid_free(&g);
        return;
    }
    char wd[300];
    snprintf(wd, sizeof wd, "%s/work-debug", tmp_root);
    int ok = 0, failed = 0;
    double fsr_first = NAN;
    for (int u = 0; u < p.n; u++) {
        rs_row row;
        int rc = su_unit_execute(&p, u, wd, 1, 0, &row);
        if (rc == 0) {
            ok++;
            CHECK(su_artifact_exists(&p, u, wd), "%s: no artifact", p.units[u].key);
            if (p.units[u].kind == SU_EVAL && isnan(fsr_first)) fsr_first = rs_row_metric(&row, "fsr", NULL);
        } else {
            failed++;
            CHECK(strstr(row.message, "planned failure") != NULL, "message '%s'", row.message);
            CHECK(!su_artifact_exists(&p, u, wd), "%s: a failed unit left an artifact", p.units[u].key);
        }
        rs_row_free(&row);
    }
    /* base-eval, implant, eval(implant), remove ok, its eval; the failing
     * remove, and its eval (input missing). */
    CHECK(ok == 5 && failed == 2, "ok %d failed %d", ok, failed);
    /* The artifact holds the outcome: resume reads it back. */
    int e = su_plan_find_key(&p, "eval m/debug/s4");
    rs_row back;
    CHECK(e >= 0 && su_artifact_load(&p, e, wd, &back, &err) == 0, "artifact load: %s", err.msg);
    if (e >= 0) {
        CHECK(rs_row_metric(&back, "fsr", NULL) == fsr_first && !strcmp(back.unit_key, p.units[e].key),
              "recovered row");
        rs_row_free(&back);
    }
    /* Deterministic: running it again gives the same numbers. */
    rs_row again;
    su_unit_execute(&p, e, wd, 1, 5, &again);
    CHECK(rs_row_metric(&again, "fsr", NULL) == fsr_first, "same value on another rank");
    rs_row_free(&again);
    /* No temporary directories left behind. */
    char cmd[512];
    snprintf(cmd, sizeof cmd, "find %s -name '*.tmp.*' | grep -q .", wd);
    CHECK(system(cmd) != 0, "temporary directories left in %s", wd);
    su_plan_free(&p);
    su_grid_free(&g);
}

/* The real track end to end: a tiny model on disk, fingerprint "none",
 * removal method "none" from the registry. */
static void test_execute_none(void) {
    char mdir[300], wd[300], text[1024];
    snprintf(mdir, sizeof mdir, "%s/tiny-model", tmp_root);
    snprintf(wd, sizeof wd, "%s/work-real", tmp_root);
    lm_err err = {{0}};
    lm_config cfg;
    lm_config_default(&cfg, LM_ARCH_LLAMA, 64, 16, 1, 2, 2, 32, 32);
    lm_model m;
    if (lm_model_init(&m, &cfg, &err) || lm_model_alloc(&m, &err)) {
        CHECK(0, "tiny model: %s", err.msg);
        return;
    }
    lm_model_init_random(&m, 42, 0.02f);
    CHECK(lm_model_save_hf(&m, mdir, &err) == 0, "save: %s", err.msg);
    snprintf(text, sizeof text,
             "{\"models\":[{\"name\":\"tiny\",\"path\":\"%s\"}],\"fingerprints\":[\"none\"],"
             "\"methods\":[\"none\"],\"seeds\":[1]}", mdir);
    su_grid g;
    su_plan p;
    if (parse(&g, text)) {
        lm_model_free(&m);
        return;
    }
    CHECK(su_plan_build(&p, &g, &err) == 0, "%s", err.msg);
    CHECK(p.n == 2 && p.units[0].kind == SU_IMPLANT && p.units[1].kind == SU_REMOVE, "implant -> remove");
    CHECK(su_plan_check_executors(&p, &err) == 0, "%s", err.msg);
    for (int u = 0; u < p.n; u++) {
        rs_row row;
        int rc = su_unit_execute(&p, u, wd, 1, 0, &row);
        CHECK(rc == 0, "%s: %s", p.units[u].key, row.message);
        CHECK(!strcmp(row.method, u == 1 ? "none" : "") && !strcmp(row.model, "tiny"), "row identity");
        rs_row_free(&row);
    }
    char adir[600], model_path[600];
    su_artifact_dir(&p, 1, wd, adir, sizeof adir);
    CHECK(su_artifact_model(adir, model_path, sizeof model_path, &err) == 0, "%s", err.msg);
    lm_model back;
    if (lm_model_load(&back, model_path, &err) == 0) {
        double diff = 0;
        for (int i = 0; i < m.n_params; i++)
            for (size_t k = 0; k < m.params[i].numel; k++)
                diff = fmax(diff, fabs(m.params[i].data[k] - back.params[i].data[k]));
        CHECK(diff == 0, "'none' changed the weights by %g", diff);
        lm_model_free(&back);
    } else {
        CHECK(0, "the removed model does not load: %s", err.msg);
    }
    su_plan_free(&p);
    su_grid_free(&g);
    /* Every real unit kind has an executor now; the fingerprint registry's
     * types are in grids, their parameters checked. */
    snprintf(text, sizeof text,
             "{\"models\":[\"%s\"],\"fingerprints\":[\"none\",\"if-sft\",\"utf\",\"hashchain\"],"
             "\"methods\":[\"none\",\"cleangen\"],\"seeds\":[1],\"metrics\":[\"ppl\",\"fsr\"]}", mdir);
    if (parse(&g, text) == 0) {
        CHECK(su_plan_build(&p, &g, &err) == 0, "%s", err.msg);
        CHECK(su_plan_check_executors(&p, &err) == 0, "executors missing: %s", err.msg);
        su_plan_free(&p);
        su_grid_free(&g);
    }
    snprintf(text, sizeof text,
             "{\"models\":[\"%s\"],\"fingerprints\":[{\"type\":\"if-sft\",\"params\":{\"normal\":-3}}],"
             "\"methods\":[\"none\"],\"seeds\":[1]}", mdir);
    CHECK(su_grid_parse(&g, text, "g.json", NULL, &err) != 0 &&
              strstr(err.msg, "fingerprints[0].params") && strstr(err.msg, "normal"),
          "bad if-sft parameter not reported: %s", err.msg);
    lm_model_free(&m);
}

/* ---- the local runner without a results file ---- */

typedef struct counts {
    su_plan *plan;
    const char *wd;
    int ok, failed, skipped;
    char msg[8][RN_MSG];
} counts;

static int t_execute(void *ctx, int u, int rank, int fd) {
    counts *c = ctx;
    rs_row row;
    su_unit_execute(c->plan, u, c->wd, 1, rank, &row);
    char *json = su_row_encode(&row);
    rs_row_free(&row);
    ssize_t w = json ? write(fd, json, strlen(json)) : -1;
    free(json);
    return w > 0 ? 0 : -1;
}

static int t_record(void *ctx, const rn_report *r, lm_err *err) {
    counts *c = ctx;
    rs_row row;
    rs_row_init(&row);
    int ok = !r->failure[0] && su_row_decode(r->blob, r->len, &row, err) == 0 &&
             !strcmp(row.status, RS_OK);
    if (ok) c->ok++;
    else {
        if (c->failed < 8)
            snprintf(c->msg[c->failed], RN_MSG, "%s", r->failure[0] ? r->failure : row.message);
        c->failed++;
    }
    rs_row_free(&row);
    return ok;
}

static int t_skip(void *ctx, int u, int because, lm_err *err) {
    ((counts *)ctx)->skipped++;
    return 0;
}

static int any_msg(const counts *c, const char *want) {
    for (int i = 0; i < c->failed && i < 8; i++)
        if (strstr(c->msg[i], want)) return 1;
    return 0;
}

static void test_local_runner(void) {
    su_grid g;
    su_plan p;
    lm_err err = {{0}};
    if (parse(&g, "{\"track\":\"debug\",\"models\":[\"m\"],\"fingerprints\":[{\"type\":\"debug\"}],"
                  "\"methods\":[{\"name\":\"debug\",\"params\":{\"action\":"
                  "[\"ok\",\"segv\",\"abort\",\"nan\",\"exit\",\"hang\"],\"message\":\"last words\"}}],"
                  "\"metrics\":[\"fsr\"],\"seeds\":[1],\"resources\":{\"timeout_s\":1}}"))
        return;
    if (su_plan_build(&p, &g, &err)) {
        su_grid_free(&g);
        return;
    }
    int n = p.n;
    int *np = malloc((size_t)n * sizeof *np), *cs = malloc((size_t)(n + 1) * sizeof *cs);
    for (int u = 0; u < n; u++) {
        np[u] = p.units[u].n_parents;
        cs[u] = p.units[u].child_off;
    }
    cs[n] = p.units[n - 1].child_off + p.units[n - 1].n_children;
    rn_dag dag = {n, np, cs, p.children};
    char wd[300];
    snprintf(wd, sizeof wd, "%s/work-runner", tmp_root);
    counts c = {.plan = &p, .wd = wd};
    rn_ops ops = {&c, t_execute, t_record, t_skip};
    rn_options o = {.parallel = 2, .threads = 1, .timeout_s = g.res.timeout_s};
    rn_stats st;
    CHECK(rn_run_local(&dag, NULL, &ops, &o, &st, &err) == 0, "run: %s", err.msg);
    /* ok: base-eval, implant, its eval, the ok removal and its eval. */
    CHECK(c.ok == 5 && c.failed == 5 && c.skipped == 5, "ok %d failed %d skipped %d", c.ok,
          c.failed, c.skipped);
    CHECK(st.ok == 5 && st.failed == 5 && st.skipped == 5 && st.executed == 10, "stats");
    CHECK(any_msg(&c, "crashed: signal SIGSEGV") && any_msg(&c, "last output: debug: last words (segv)"),
          "segfault message");
    CHECK(any_msg(&c, "crashed: signal SIGABRT"), "abort message");
    CHECK(any_msg(&c, "metric 'debug_value' is NaN"), "NaN message");
    CHECK(any_msg(&c, "exited with code 3"), "exit message");
    CHECK(any_msg(&c, "timed out after 1 s"), "timeout message");
    /* Resume: everything done is skipped, so only the failures run again. */
    unsigned char *done = calloc((size_t)n, 1);
    for (int u = 0; u < n; u++) done[u] = su_artifact_exists(&p, u, wd);
    counts c2 = {.plan = &p, .wd = wd};
    ops.ctx = &c2;
    CHECK(rn_run_local(&dag, done, &ops, &o, &st, &err) == 0, "rerun: %s", err.msg);
    CHECK(st.done_before == 5 && st.executed == 5 && c2.ok == 0, "rerun ran %d units", st.executed);
    free(done);
    free(np);
    free(cs);
    su_plan_free(&p);
    su_grid_free(&g);
}

static void test_templates(void) {
    char tpl[300], out[300];
    snprintf(tpl, sizeof tpl, "%s/t.sbatch", tmp_root);
    FILE *f = fopen(tpl, "w");
    fputs("#SBATCH --job-name=@NAME@\necho \"${a[@]}\" me@host @NAME@-@X_1@\n", f);
    fclose(f);
    rn_kv kv[] = {{"NAME", "grid"}, {"X_1", "v"}};
    lm_err err = {{0}};
    char *t = rn_template_fill(tpl, kv, 2, &err);
    CHECK(t && !strcmp(t, "#SBATCH --job-name=grid\necho \"${a[@]}\" me@host grid-v\n"), "filled: %s",
          t ? t : err.msg);
    free(t);
    t = rn_template_fill(tpl, kv, 1, &err);
    CHECK(!t && strstr(err.msg, "t.sbatch:2: unknown placeholder @X_1@"), "unknown placeholder: %s",
          err.msg);
    free(t);
    int lo, hi, total = 0, prev = 0;
    for (int k = 0; k < 7; k++) {
        rn_slurm_share(100, 7, k, &lo, &hi);
        CHECK(lo == prev && hi - lo >= 14 && hi - lo <= 15, "share %d: [%d, %d)", k, lo, hi);
        total += hi - lo;
        prev = hi;
    }
    CHECK(total == 100, "shares cover every unit once");
    snprintf(out, sizeof out, "%s/w.txt", tmp_root);
    CHECK(rn_write_file(out, "x", 1, &err) == 0 && access(out, X_OK) == 0, "write exec file");
}

/* Data sets for methods: top level, overridden per entry, checked, and
 * part of the removals' hashes. */
static void test_data(void) {
    char a[300], b[300], text[2048];
    snprintf(a, sizeof a, "%s/calib-a.txt", tmp_root);
    snprintf(b, sizeof b, "%s/calib-b.txt", tmp_root);
    FILE *f = fopen(a, "w");
    fputs("some text\n", f);
    fclose(f);
    f = fopen(b, "w");
    fputs("other text\n", f);
    fclose(f);
    snprintf(text, sizeof text,
             "{" BASE_DEBUG ",\"data\":{\"calibration\":\"%s\",\"instructions\":{\"path\":\"%s\","
             "\"format\":\"text\"}},\"methods\":[\"debug\",{\"name\":\"debug\",\"params\":{\"variant\":1},"
             "\"data\":{\"calibration\":\"%s\"}}]}", a, a, b);
    su_grid g;
    if (parse(&g, text) == 0) {
        const su_method *m0 = &g.methods[0], *m1 = &g.methods[1];
        CHECK(m0->n_data == 2 && m1->n_data == 2, "data sets per method: %d, %d", m0->n_data, m1->n_data);
        const char *c0 = "", *c1 = "";
        for (int d = 0; d < m0->n_data; d++)
            if (!strcmp(g.data[m0->data_off + d].name, "calibration")) c0 = g.data[m0->data_off + d].path;
        for (int d = 0; d < m1->n_data; d++)
            if (!strcmp(g.data[m1->data_off + d].name, "calibration")) c1 = g.data[m1->data_off + d].path;
        CHECK(!strcmp(c0, a) && !strcmp(c1, b), "the entry's data wins: %s, %s", c0, c1);
        su_grid_free(&g);
    }
    snprintf(text, sizeof text,
             "{" BASE_DEBUG ",\"methods\":[{\"name\":\"debug\",\"data\":{\"calibration\":\"%s/nope\"}}]}",
             tmp_root);
    expect_error(text, "methods[0].data.calibration: ");
    expect_error(text, "nope: No such file or directory");
    snprintf(text, sizeof text,
             "{" BASE_DEBUG ",\"data\":{\"calibration\":{\"path\":\"%s\",\"format\":\"poetry\"}},"
             "\"methods\":[\"debug\"]}", a);
    expect_error(text, "data.calibration.format: ");
    snprintf(text, sizeof text, "{" BASE_DEBUG ",\"data\":{\"Calib\":\"%s\"},\"methods\":[\"debug\"]}", a);
    expect_error(text, "data.Calib: data set names are [a-z0-9_-]+");
    /* Another calibration file: the removals (and their evals) change. */
    char ta[1024], tb[1024];
    snprintf(ta, sizeof ta, "{" BASE_DEBUG ",\"metrics\":[\"fsr\"],\"data\":{\"calibration\":\"%s\"},"
             "\"methods\":[\"debug\"]}", a);
    snprintf(tb, sizeof tb, "{" BASE_DEBUG ",\"metrics\":[\"fsr\"],\"data\":{\"calibration\":\"%s\"},"
             "\"methods\":[\"debug\"]}", b);
    compare_plans(ta, tb, "/debug/s1/debug", 2);
}

int main(void) {
    snprintf(tmp_root, sizeof tmp_root, "/tmp/smudge-test-grid.XXXXXX");
    if (!mkdtemp(tmp_root)) SKIP("cannot create a temporary directory");
    test_validation();
    test_sweeps_and_canonical();
    test_dag();
    test_data();
    test_codec();
    test_execute_debug();
    test_execute_none();
    test_local_runner();
    test_templates();
    nftw(tmp_root, rm_entry, 16, FTW_DEPTH | FTW_PHYS);
    return check_done();
}
