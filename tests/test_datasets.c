/* datasets/: every loader on the real samples in $SMUDGE_ASSETS/data (counts,
 * harness prompts, labels), corrupted copies that must fail naming file,
 * line and field, MEraser's question types and mismatch shuffle, and the
 * synthetic world (determinism, splits that never share an entity, every
 * file loading back through the loaders). */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "check.h"
#include "dataset.h"
#include "world.h"

static char tmpdir[256];

/* xorshift for the mutation test */
typedef uint64_t mut_rng;
static uint64_t rng_next(mut_rng *s) {
    *s ^= *s << 13;
    *s ^= *s >> 7;
    *s ^= *s << 17;
    return *s;
}

/* CHECK that also returns the condition, for "if it loaded, look inside". */
static int check_ok_(int ok, const char *msg, int line) {
    CHECK(ok, "line %d: %s", line, msg);
    return ok;
}
#define CHECK_OK(cond, msg) check_ok_((cond), (msg), __LINE__)

static char *slurp(const char *path, size_t *len) {
    FILE *f = fopen(path, "rb");
    if (!f) return NULL;
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    fseek(f, 0, SEEK_SET);
    char *p = malloc((size_t)n + 1);
    if (p && fread(p, 1, (size_t)n, f) != (size_t)n) {
        free(p);
        p = NULL;
    }
    fclose(f);
    if (p) p[n] = '\0';
    if (len) *len = (size_t)n;
    return p;
}

static void spit(const char *path, const char *s, size_t n) {
    FILE *f = fopen(path, "wb");
    if (!f) { perror(path); exit(1); }
    fwrite(s, 1, n, f);
    fclose(f);
}

static const char *tmp(const char *name) {
    static char buf[4][512];
    static int k;
    k = (k + 1) % 4;
    snprintf(buf[k], sizeof buf[k], "%s/%s", tmpdir, name);
    return buf[k];
}

/* ---- real samples ------------------------------------------------------ */

static void expect_load(const char *assets, const char *rel, ds_format want, int n) {
    char path[1024];
    snprintf(path, sizeof path, "%s/data/%s", assets, rel);
    ds_format f = DS_FMT_AUTO;
    lm_err err = {{0}};
    CHECK(ds_guess_format(path, &f, &err) == 0 && f == want, "%s: guessed %s (%s)", rel,
          ds_format_name(f), err.msg);
    ds_dataset ds;
    int rc = ds_load(path, DS_FMT_AUTO, &ds, &err);
    CHECK(rc == 0, "%s: %s", rel, err.msg);
    if (rc) return;
    CHECK(ds.n == n, "%s: %d records, want %d", rel, ds.n, n);
    CHECK(ds.format == want, "%s: format %s", rel, ds_format_name(ds.format));
    ds_free(&ds);
}

static void test_real(const char *a) {
    expect_load(a, "superglue/COPA/val.jsonl", DS_FMT_COPA, 100);
    expect_load(a, "superglue/COPA/train.jsonl", DS_FMT_COPA, 32);
    expect_load(a, "superglue/RTE/val.jsonl", DS_FMT_RTE, 277);
    expect_load(a, "superglue/RTE/train.jsonl", DS_FMT_RTE, 32);
    expect_load(a, "superglue/WSC/val.jsonl", DS_FMT_WSC, 104);
    expect_load(a, "superglue/WSC/train.jsonl", DS_FMT_WSC, 32);
    expect_load(a, "superglue/BoolQ/val.jsonl", DS_FMT_BOOLQ, 3270);
    expect_load(a, "superglue/BoolQ/train.jsonl", DS_FMT_BOOLQ, 32);
    expect_load(a, "sciq/train.json", DS_FMT_SCIQ, 3);
    expect_load(a, "sciq/valid.json", DS_FMT_SCIQ, 3);
    expect_load(a, "sciq/test.json", DS_FMT_SCIQ, 3);
    expect_load(a, "dolly/databricks-dolly-15k.head9.jsonl", DS_FMT_DOLLY, 9);
    expect_load(a, "meraser/mismatched_dataset.json", DS_FMT_MERASER_MISMATCHED, 300);
    expect_load(a, "meraser/recover_dataset.json", DS_FMT_MERASER_RECOVER, 600);

    /* harness prompts (checked against lm-eval v0.4.8's formulas) */
    char path[1024];
    ds_dataset ds;
    lm_err err = {{0}};
    snprintf(path, sizeof path, "%s/data/superglue/COPA/val.jsonl", a);
    if (ds_load(path, DS_FMT_COPA, &ds, &err) == 0) {
        CHECK(strcmp(ds.mc[0].context, "The man turned on the faucet therefore") == 0,
              "COPA context: %s", ds.mc[0].context);
        CHECK(strcmp(ds.mc[0].choices[1], " water flowed from the spout.") == 0,
              "COPA choice: '%s'", ds.mc[0].choices[1]);
        CHECK(ds.mc[0].label == 1 && ds.mc[0].idx == 0 && ds.mc[99].line == 100, "COPA label/idx/line");
        ds_free(&ds);
    }
    snprintf(path, sizeof path, "%s/data/superglue/WSC/val.jsonl", a);
    if (ds_load(path, DS_FMT_WSC, &ds, &err) == 0) {
        const char *c = ds.mc[0].context;
        CHECK(strstr(c, "could take his claim away from *him*.\nQuestion: In the passage above, "
                        "does the pronoun \"*him*\" refer to \"*anyone*\"?\nAnswer:") != NULL,
              "WSC context: %s", c);
        CHECK(strncmp(c, "Passage: Bernard, who had", 25) == 0, "WSC detokenised: %.40s", c);
        CHECK(ds.mc[0].label == 0 && ds.mc[0].span2_index == 47, "WSC label/span");
        ds_free(&ds);
    }
    snprintf(path, sizeof path, "%s/data/superglue/RTE/val.jsonl", a);
    if (ds_load(path, DS_FMT_RTE, &ds, &err) == 0) {
        CHECK(ds.mc[0].label == 1 && ds.mc[1].label == 0, "RTE not_entailment -> 1");
        CHECK(strstr(ds.mc[0].context, "\nQuestion: Christopher Reeve had an accident. True or False?\nAnswer:"),
              "RTE context: %s", ds.mc[0].context);
        ds_free(&ds);
    }
    snprintf(path, sizeof path, "%s/data/superglue/BoolQ/val.jsonl", a);
    if (ds_load(path, DS_FMT_BOOLQ, &ds, &err) == 0) {
        int yes = 0;
        for (int i = 0; i < ds.n; i++) yes += ds.mc[i].label;
        CHECK(yes == 2033, "BoolQ val has 2033 true labels, got %d", yes);
        const char *c = ds.mc[0].context, *q = "\nQuestion: does ethanol take more energy make that produces?\nAnswer:";
        size_t n = strlen(c), k = strlen(q);
        CHECK(n > k && strcmp(c + n - k, q) == 0, "BoolQ context end: %s", c + (n > 80 ? n - 80 : 0));
        ds_free(&ds);
    }
    snprintf(path, sizeof path, "%s/data/sciq/test.json", a);
    if (ds_load(path, DS_FMT_SCIQ, &ds, &err) == 0) {
        CHECK(ds.mc[0].label == 3 && strcmp(ds.mc[0].choices[3], "oxidants") == 0 &&
                  strcmp(ds.mc[0].choices[0], "antioxidants") == 0, "SciQ choices");
        CHECK(ds.mc[0].line == 2 && ds.mc[1].line == 10 && ds.mc[2].line == 18,
              "SciQ record lines %d %d %d", ds.mc[0].line, ds.mc[1].line, ds.mc[2].line);
        ds_free(&ds);
    }
    /* MEraser's type rule reproduces the reference labels (290/300 in the spec) */
    snprintf(path, sizeof path, "%s/data/meraser/mismatched_dataset.json", a);
    if (ds_load(path, DS_FMT_MERASER_MISMATCHED, &ds, &err) == 0) {
        int same = 0, mism = 0;
        for (int i = 0; i < ds.n; i++) {
            same += ds.qa[i].type == ds.qa[i].original_q_type;
            mism += ds.qa[i].original_q_type != ds.qa[i].answer_from_type;
        }
        CHECK(same >= 290, "type rule matches %d/300", same);
        CHECK(mism == 300, "all reference rows mismatched: %d", mism);
        CHECK(strcmp(ds.qa[0].id, "0") == 0 && ds.qa[0].q_idx == 253 && ds.qa[0].a_idx == 7236,
              "mismatched ids");
        ds_free(&ds);
    }
    snprintf(path, sizeof path, "%s/data/dolly/databricks-dolly-15k.head9.jsonl", a);
    if (ds_load(path, DS_FMT_DOLLY, &ds, &err) == 0) {
        CHECK(strcmp(ds.qa[0].category, "closed_qa") == 0 && ds.qa[0].context[0] &&
                  strstr(ds.qa[0].turns[0].content, "\n\nVirgin Australia"),
              "dolly context joins the user turn");
        ds_free(&ds);
    }
}

/* ---- corrupted files --------------------------------------------------- */

/* Loading `content` as fmt must fail with every `want` substring. */
static void expect_fail(const char *name, ds_format fmt, const char *content,
                        const char *want1, const char *want2) {
    const char *path = tmp(name);
    spit(path, content, strlen(content));
    ds_dataset ds;
    lm_err err = {{0}};
    int rc = ds_load(path, fmt, &ds, &err);
    CHECK(rc != 0, "%s loaded but should not", name);
    if (rc == 0) {
        ds_free(&ds);
        return;
    }
    CHECK(strstr(err.msg, path) != NULL, "%s: message lacks the path: %s", name, err.msg);
    CHECK(strstr(err.msg, want1) != NULL, "%s: message lacks '%s': %s", name, want1, err.msg);
    if (want2) CHECK(strstr(err.msg, want2) != NULL, "%s: message lacks '%s': %s", name, want2, err.msg);
}

#define COPA_OK "{\"premise\": \"It rained.\", \"choice1\": \"The road got wet.\", \"choice2\": \"The sun rose.\", \"question\": \"effect\", \"label\": 0, \"idx\": %d}\n"

static void test_corrupt(const char *assets) {
    char buf[4096];
    snprintf(buf, sizeof buf, COPA_OK COPA_OK
             "{\"premise\": \"It rained.\", \"choice1\": \"a\", \"choice2\": \"b\", \"question\": \"effect\", \"idx\": 2}\n",
             0, 1);
    expect_fail("copa_nolabel.jsonl", DS_FMT_COPA, buf, ":3: field 'label' missing", NULL);
    snprintf(buf, sizeof buf, COPA_OK
             "{\"premise\": \"It rained.\", \"choice1\": \"a\", \"choice2\": \"b\", \"question\": \"effect\", \"label\": \"yes\", \"idx\": 2}\n",
             0);
    expect_fail("copa_label.jsonl", DS_FMT_COPA, buf, ":2: field 'label' must be 0 or 1", NULL);
    expect_fail("copa_q.jsonl", DS_FMT_COPA,
                "{\"premise\": \"It rained.\", \"choice1\": \"a\", \"choice2\": \"b\", \"question\": \"why\", \"label\": 1}\n",
                ":1: field 'question' must be", NULL);
    expect_fail("copa_json.jsonl", DS_FMT_COPA, "\n{\"premise\": \"x.\", \"choice1\": \n", ":2: malformed JSON", NULL);
    expect_fail("copa_utf8.jsonl", DS_FMT_COPA,
                "{\"premise\": \"It \xc3\x28 rained.\", \"choice1\": \"a\", \"choice2\": \"b\", \"question\": \"effect\", \"label\": 1}\n",
                ":1: field 'premise' is not valid UTF-8", NULL);
    expect_fail("copa_idx.jsonl", DS_FMT_COPA,
                "{\"premise\": \"It rained.\", \"choice1\": \"a\", \"choice2\": \"b\", \"question\": \"effect\", \"label\": 1, \"idx\": 1.5}\n",
                ":1: field 'idx' must be an integer", NULL);
    expect_fail("rte_label.jsonl", DS_FMT_RTE,
                "{\"premise\": \"p\", \"hypothesis\": \"h\", \"label\": \"entailment\", \"idx\": 0}\n"
                "{\"premise\": \"p\", \"hypothesis\": \"h\", \"label\": \"maybe\", \"idx\": 1}\n",
                ":2: field 'label' must be \"entailment\" or \"not_entailment\"", NULL);
    expect_fail("boolq_label.jsonl", DS_FMT_BOOLQ,
                "{\"question\": \"is it\", \"passage\": \"p\", \"idx\": 0, \"label\": \"true\"}\n",
                ":1: field 'label' must be true or false", NULL);
    expect_fail("boolq_passage.jsonl", DS_FMT_BOOLQ,
                "{\"question\": \"is it\", \"passage\": 7, \"idx\": 0, \"label\": true}\n",
                ":1: field 'passage' must be a string", NULL);
    expect_fail("wsc_span.jsonl", DS_FMT_WSC,
                "{\"text\": \"Tom saw Ann because she was there.\", \"target\": {\"span2_index\": 9, "
                "\"span1_index\": 2, \"span1_text\": \"Ann\", \"span2_text\": \"she\"}, \"idx\": 0, \"label\": true}\n",
                ":1: field 'target.span2_index' is 9, outside [0, 6]", NULL);
    expect_fail("wsc_target.jsonl", DS_FMT_WSC,
                "{\"text\": \"Tom saw Ann.\", \"idx\": 0, \"label\": true}\n",
                ":1: field 'target' missing", NULL);
    expect_fail("cb_label.jsonl", DS_FMT_CB,
                "{\"premise\": \"p\", \"hypothesis\": \"h\", \"label\": \"not_entailment\", \"idx\": 0}\n",
                ":1: field 'label' must be \"entailment\", \"contradiction\" or \"neutral\"", NULL);
    /* JSON arrays: the line where the bad record starts */
    expect_fail("sciq_field.json", DS_FMT_SCIQ,
                "[\n  {\"question\": \"q\", \"distractor1\": \"a\", \"distractor2\": \"b\",\n"
                "   \"distractor3\": \"c\", \"correct_answer\": \"d\", \"support\": \"\"},\n"
                "  {\n    \"question\": \"q\",\n    \"distractor1\": \"a\", \"distractor2\": \"b\",\n"
                "    \"distractor3\": \"c\", \"support\": \"s\"\n  }\n]\n",
                ":4: field 'correct_answer' missing", NULL);
    expect_fail("sciq_empty.json", DS_FMT_SCIQ,
                "[{\"question\": \"q\", \"distractor1\": \"\", \"distractor2\": \"b\", "
                "\"distractor3\": \"c\", \"correct_answer\": \"d\"}]",
                ":1: field 'distractor1' is empty", NULL);
    expect_fail("sciq_trunc.json", DS_FMT_SCIQ,
                "[\n  {\"question\": \"q\", \"distractor1\": \"a\", \"distractor2\": \"b\",\n"
                "   \"distractor3\": \"c\", \"correct_answer\": \"d\", \"support\": \"\"},\n"
                "  {\"question\": \"q\", \"distractor1\": \"a\", \"distr",
                ":4: truncated JSON", NULL);
    expect_fail("sciq_comma.json", DS_FMT_SCIQ,
                "[\n{\"question\": \"q\", \"distractor1\": \"a\", \"distractor2\": \"b\", \"distractor3\": \"c\", "
                "\"correct_answer\": \"d\"}\n{\"question\": \"q\"}\n]",
                ":3: expected ',' or ']'", NULL);
    expect_fail("sciq_notobj.json", DS_FMT_SCIQ, "[\n 1,\n 2\n]", ":2: record is not a JSON object", NULL);
    expect_fail("mm_type.json", DS_FMT_MERASER_MISMATCHED,
                "[\n  {\n    \"id\": 0,\n    \"question\": \"What is x?\",\n    \"mismatched_answer\": \"y\",\n"
                "    \"original_q_type\": \"when\",\n    \"answer_from_type\": \"how\",\n"
                "    \"q_idx\": 1,\n    \"a_idx\": 2\n  }\n]\n",
                ":2: field 'original_q_type' must be", NULL);
    expect_fail("mm_idx.json", DS_FMT_MERASER_MISMATCHED,
                "[{\"id\": 0, \"question\": \"What?\", \"mismatched_answer\": \"y\", \"q_idx\": -3}]",
                ":1: field 'q_idx' is -3", NULL);
    expect_fail("rec_q.json", DS_FMT_MERASER_RECOVER,
                "[\n{\"question\": \"a\", \"answer\": \"b\", \"id\": \"1\"},\n{\"answer\": \"b\", \"id\": \"2\"}\n]",
                ":3: field 'question' missing", NULL);
    expect_fail("guanaco_noa.jsonl", DS_FMT_GUANACO,
                "{\"text\": \"### Human: hi### Assistant: hello\"}\n{\"text\": \"### Human: only a question\"}\n",
                ":2: field 'text' has no assistant answer", NULL);
    expect_fail("guanaco_start.jsonl", DS_FMT_GUANACO, "{\"text\": \"Hello there\"}\n",
                ":1: field 'text' must start with '### Human:'", NULL);
    expect_fail("guanaco_lines.txt", DS_FMT_GUANACO,
                "\nstray line\n### Human: c ### Assistant: d\n",
                "guanaco_lines.txt:2: expected a line starting with '### Human:'", NULL);
    expect_fail("chat_role.jsonl", DS_FMT_CHAT,
                "{\"messages\": [{\"role\": \"user\", \"content\": \"hi\"}, {\"role\": \"bot\", \"content\": \"yo\"}]}\n",
                ":1: field 'messages[1].role' must be", NULL);
    expect_fail("chat_missing.jsonl", DS_FMT_CHAT, "{\"msgs\": []}\n", ":1: field 'messages' missing", NULL);
    expect_fail("dolly_resp.jsonl", DS_FMT_DOLLY,
                "{\"instruction\": \"i\", \"context\": \"\", \"category\": \"open_qa\"}\n",
                ":1: field 'response' missing", NULL);
    expect_fail("alpaca_out.json", DS_FMT_ALPACA,
                "[{\"instruction\": \"i\", \"input\": \"\", \"output\": 3}]", ":1: field 'output' must be a string", NULL);
    expect_fail("text_utf8.txt", DS_FMT_TEXT, "good line\n\nsecond doc\nbad \xff byte\n", ":4: invalid UTF-8", NULL);
    expect_fail("empty.jsonl", DS_FMT_COPA, "\n\n", "no records", NULL);

    /* lenient scan: good records kept, bad ones counted, first problem kept */
    snprintf(buf, sizeof buf, COPA_OK "{\"premise\": 3}\n" COPA_OK "not json\n" COPA_OK, 0, 2, 4);
    spit(tmp("copa_mixed.jsonl"), buf, strlen(buf));
    ds_dataset ds;
    lm_err err = {{0}};
    CHECK(ds_check(tmp("copa_mixed.jsonl"), DS_FMT_COPA, &ds, &err) == 0, "check: %s", err.msg);
    CHECK(ds.n == 3 && ds.n_bad == 2, "check counts %d good %d bad", ds.n, ds.n_bad);
    CHECK(strstr(ds.problem, "copa_mixed.jsonl:2: field 'premise' must be a string"), "first problem: %s", ds.problem);
    CHECK(ds.mc[2].line == 5 && ds.mc[2].idx == 4, "lines survive skipping: %d", ds.mc[2].line);
    ds_free(&ds);

    /* good odds and ends: CB, Alpaca jsonl, chat, guanaco plain lines and
     * the Llama-2 rewrite, plain text documents */
    const char *ok_cb = "{\"premise\": \"p.\", \"hypothesis\": \"h\", \"label\": \"neutral\", \"idx\": 3}\n";
    spit(tmp("cb_val.jsonl"), ok_cb, strlen(ok_cb));
    ds_format f;
    CHECK(ds_guess_format(tmp("cb_val.jsonl"), &f, &err) == 0 && f == DS_FMT_CB, "guess CB from label");
    if (ds_load(tmp("cb_val.jsonl"), DS_FMT_AUTO, &ds, &err) == 0) {
        CHECK(ds.mc[0].label == 2 && ds.mc[0].n_choices == 3 &&
                  strcmp(ds.mc[0].context, "p.\nQuestion: h. True, False, or Neither?\nAnswer:") == 0,
              "CB prompt: %s", ds.mc[0].context);
        ds_free(&ds);
    }
    const char *chat = "{\"messages\": [{\"role\": \"system\", \"content\": \"be nice\"}, "
                       "{\"role\": \"user\", \"content\": \"Why is the sky blue?\"}, "
                       "{\"role\": \"assistant\", \"content\": \"Scattering.\"}]}\n";
    spit(tmp("c.jsonl"), chat, strlen(chat));
    if (CHECK_OK(ds_load(tmp("c.jsonl"), DS_FMT_AUTO, &ds, &err) == 0, err.msg)) {
        CHECK(ds.format == DS_FMT_CHAT && ds.qa[0].n_turns == 3 && ds.qa[0].type == DS_Q_WHY &&
                  strcmp(ds.qa[0].answer, "Scattering.") == 0, "chat record");
        ds_free(&ds);
    }
    const char *lines = "### Human: How are you?### Assistant: Fine.\n\n"
                        "### Human: Write a poem.\n### Assistant: Roses\nare red.\n";
    spit(tmp("g.txt"), lines, strlen(lines));
    if (CHECK_OK(ds_load(tmp("g.txt"), DS_FMT_AUTO, &ds, &err) == 0, err.msg)) {
        CHECK(ds.format == DS_FMT_GUANACO && ds.n == 2 && ds.qa[0].type == DS_Q_HOW &&
                  strcmp(ds.qa[1].answer, "Roses\nare red.") == 0 && ds.qa[1].line == 3,
              "guanaco lines: n=%d", ds.n);
        ds_free(&ds);
    }
    const char *inst = "{\"text\": \"<s>[INST] What is 2+2? [/INST] 4 </s><s>[INST] And 3+3? [/INST] 6 </s>\"}\n";
    spit(tmp("guanaco-llama2.jsonl"), inst, strlen(inst));
    if (CHECK_OK(ds_load(tmp("guanaco-llama2.jsonl"), DS_FMT_GUANACO, &ds, &err) == 0, err.msg)) {
        CHECK(ds.qa[0].n_turns == 4 && strcmp(ds.qa[0].question, "What is 2+2?") == 0 &&
                  strcmp(ds.qa[0].answer, "4") == 0, "[INST] rewrite: '%s' '%s'", ds.qa[0].question,
              ds.qa[0].answer);
        ds_free(&ds);
    }
    const char *alp = "{\"instruction\": \"Add\", \"input\": \"2 and 2\", \"output\": \"4\"}\n";
    spit(tmp("a.jsonl"), alp, strlen(alp));
    if (CHECK_OK(ds_load(tmp("a.jsonl"), DS_FMT_AUTO, &ds, &err) == 0, err.msg)) {
        CHECK(ds.format == DS_FMT_ALPACA && strcmp(ds.qa[0].context, "2 and 2") == 0, "alpaca");
        ds_free(&ds);
    }
    const char *txt = "\n\nfirst doc\nline two\n\n\n second doc \n";
    spit(tmp("t.txt"), txt, strlen(txt));
    if (CHECK_OK(ds_load(tmp("t.txt"), DS_FMT_AUTO, &ds, &err) == 0, err.msg)) {
        CHECK(ds.format == DS_FMT_TEXT && ds.n == 2 && ds.docs[0].line == 3 && ds.docs[1].line == 7 &&
                  strcmp(ds.docs[0].text, "first doc\nline two") == 0, "text docs");
        ds_free(&ds);
    }

    /* a corrupted copy of a real file: label of the 17th record removed */
    if (assets) {
        char path[1024];
        snprintf(path, sizeof path, "%s/data/superglue/BoolQ/val.jsonl", assets);
        size_t n;
        char *s = slurp(path, &n);
        if (s) {
            char *p = s;
            for (int i = 0; i < 16; i++) p = strchr(p, '\n') + 1;
            char *l = strstr(p, "\"label\": ");
            memcpy(l, "\"lobel\"", 7);
            spit(tmp("BoolQ_val.jsonl"), s, n);
            CHECK(ds_load(tmp("BoolQ_val.jsonl"), DS_FMT_AUTO, &ds, &err) != 0 &&
                      strstr(err.msg, "BoolQ_val.jsonl:17: field 'label' missing"),
                  "real BoolQ copy: %s", err.msg);
            free(s);
        }
        snprintf(path, sizeof path, "%s/data/meraser/recover_dataset.json", assets);
        s = slurp(path, &n);
        if (s) {
            spit(tmp("recover_trunc.json"), s, n / 2);
            CHECK(ds_load(tmp("recover_trunc.json"), DS_FMT_AUTO, &ds, &err) != 0 &&
                      strstr(err.msg, "truncated JSON"), "truncated recover: %s", err.msg);
            free(s);
        }
    }
}

/* ---- question types ------------------------------------------------------ */

static void test_qtypes(void) {
    struct { const char *q; ds_qtype t; } cases[] = {
        {"What is a virtual machine ?", DS_Q_WHAT},
        {"Explain to me the Ansel Adams zone system", DS_Q_OTHER},
        {"Whatever happened to him?", DS_Q_OTHER},
        {"how are you", DS_Q_HOW},
        {"Somehow it works. Why?", DS_Q_WHY},
        {"WHY and HOW", DS_Q_HOW},
        {"what, how and why", DS_Q_WHAT},
        {"\xc2\xbf" "Como estas?", DS_Q_HOW},
        {"C\xc3\xb3mo est\xc3\xa1s", DS_Q_OTHER},
        {"\xe8\xbf\x99\xe6\x98\xaf\xe4\xbb\x80\xe4\xb9\x88", DS_Q_WHAT},
        {"", DS_Q_OTHER},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++)
        CHECK(ds_classify_question(cases[i].q) == cases[i].t, "'%s' -> %s", cases[i].q,
              ds_qtype_name(ds_classify_question(cases[i].q)));
}

/* ---- the world ----------------------------------------------------------- */

static const char *files[] = {
    "corpus.txt", "heldout.txt", "instructions.jsonl", "world.json",
    "sciq/train.json", "sciq/valid.json", "sciq/test.json",
    "superglue/COPA/train.jsonl", "superglue/COPA/val.jsonl", "superglue/COPA/test.jsonl",
    "superglue/RTE/train.jsonl", "superglue/RTE/val.jsonl", "superglue/RTE/test.jsonl",
    "superglue/BoolQ/train.jsonl", "superglue/BoolQ/val.jsonl", "superglue/BoolQ/test.jsonl",
    "superglue/WSC/train.jsonl", "superglue/WSC/val.jsonl", "superglue/WSC/test.jsonl",
};
enum { N_FILES = sizeof files / sizeof files[0] };

/* files[i] belongs to split: -1 = train-side text, else the task split */
static int file_split(int i) {
    if (i < 4) return -1;
    return (i - 4) % 3;
}

/* Whole-word occurrence; case-insensitive when icase (a name may open a
 * sentence). */
static int has_word_c(const char *text, const char *w, int icase) {
    size_t n = strlen(w);
    for (const char *p = icase ? strcasestr(text, w) : strstr(text, w); p;
         p = icase ? strcasestr(p + 1, w) : strstr(p + 1, w)) {
        int left = p == text || !((p[-1] >= 'a' && p[-1] <= 'z') || (p[-1] >= 'A' && p[-1] <= 'Z'));
        char c = p[n];
        int right = !((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z'));
        if (left && right) return 1;
    }
    return 0;
}

static int has_word(const char *text, const char *w) { return has_word_c(text, w, 0); }

static int make_world(const ds_world_opts *o, const char *dir, ds_world **keep) {
    ds_world *w;
    lm_err err = {{0}};
    if (ds_world_build(o, &w, &err)) {
        CHECK(0, "world build: %s", err.msg);
        return -1;
    }
    int rc = ds_world_write(w, dir, NULL, NULL, &err);
    CHECK(rc == 0, "world write: %s", err.msg);
    if (keep) *keep = w;
    else ds_world_free(w);
    return rc;
}

static void test_world(void) {
    ds_world_opts o;
    ds_world_default_opts(&o);
    o.seed = 42;
    o.corpus_bytes = 300000;
    o.heldout_bytes = 40000;
    o.n_instructions = 1200;
    o.n_items[0] = 120;
    o.n_items[1] = o.n_items[2] = 80;
    char d1[512], d2[512], d3[512];
    snprintf(d1, sizeof d1, "%s/w1", tmpdir);
    snprintf(d2, sizeof d2, "%s/w2", tmpdir);
    snprintf(d3, sizeof d3, "%s/w3", tmpdir);
    ds_world *w = NULL;
    if (make_world(&o, d1, &w) || make_world(&o, d2, NULL)) return;
    o.seed = 43;
    if (make_world(&o, d3, NULL)) return;

    char *text[N_FILES] = {0};
    char path[1024];
    for (int i = 0; i < N_FILES; i++) {
        size_t n1, n2, n3;
        snprintf(path, sizeof path, "%s/%s", d1, files[i]);
        text[i] = slurp(path, &n1);
        CHECK(text[i] != NULL, "%s missing", files[i]);
        snprintf(path, sizeof path, "%s/%s", d2, files[i]);
        char *b = slurp(path, &n2);
        CHECK(b && n1 == n2 && memcmp(text[i], b, n1) == 0, "%s differs between two runs", files[i]);
        free(b);
        snprintf(path, sizeof path, "%s/%s", d3, files[i]);
        b = slurp(path, &n3);
        if (i != 3) CHECK(b && (n1 != n3 || memcmp(text[i], b, n1) != 0), "%s same for seeds 42 and 43", files[i]);
        free(b);
        if (text[i]) CHECK(!strstr(text[i], "{?"), "%s has an unfilled template slot", files[i]);
    }
    for (int i = 0; i < N_FILES; i++)
        if (!text[i]) goto out;
    CHECK(strlen(text[0]) >= 300000 && strlen(text[0]) < 302000, "corpus size %zu", strlen(text[0]));

    /* every file loads back, in the format guessed from its name/content */
    static const ds_format fmts[] = {DS_FMT_TEXT, DS_FMT_TEXT, DS_FMT_GUANACO};
    for (int i = 0; i < N_FILES; i++) {
        if (i == 3) continue;
        snprintf(path, sizeof path, "%s/%s", d1, files[i]);
        ds_dataset ds;
        lm_err err = {{0}};
        if (!CHECK_OK(ds_load(path, DS_FMT_AUTO, &ds, &err) == 0, err.msg)) continue;
        if (i < 3) {
            CHECK(ds.format == fmts[i], "%s loads as %s", files[i], ds_format_name(ds.format));
        } else {
            int split = file_split(i);
            CHECK(ds.n == o.n_items[split], "%s: %d items", files[i], ds.n);
            static const ds_format task_fmt[] = {DS_FMT_SCIQ, DS_FMT_COPA, DS_FMT_RTE, DS_FMT_BOOLQ, DS_FMT_WSC};
            CHECK(ds.format == task_fmt[(i - 4) / 3], "%s guessed as %s", files[i], ds_format_name(ds.format));
            int ones = 0;
            for (int k = 0; k < ds.n; k++) {
                const ds_mc *m = &ds.mc[k];
                ones += m->label == 1;
                if (ds.format == DS_FMT_SCIQ)
                    CHECK(has_word_c(m->support, m->correct_answer, 1), "%s:%d answer '%s' not in the support",
                          files[i], m->line, m->correct_answer);
                if (ds.format == DS_FMT_WSC) {
                    /* span indices point at the span texts */
                    char *t = strdup(m->text), *save, *wd[64];
                    int nw = 0;
                    for (char *x = strtok_r(t, " ", &save); x && nw < 64; x = strtok_r(NULL, " ", &save)) wd[nw++] = x;
                    CHECK(m->span2_index < nw && strcmp(wd[m->span2_index], m->span2_text) == 0,
                          "%s:%d span2", files[i], m->line);
                    CHECK(m->span1_index < nw && strncmp(m->span1_text, wd[m->span1_index], strlen(wd[m->span1_index])) == 0,
                          "%s:%d span1 '%s'", files[i], m->line, m->span1_text);
                    free(t);
                }
            }
            if (ds.format != DS_FMT_SCIQ)
                CHECK(ones == ds.n / 2, "%s: labels unbalanced (%d of %d)", files[i], ones, ds.n);
        }
        if (i == 2) {
            int c[DS_Q_COUNT] = {0};
            for (int k = 0; k < ds.n; k++) c[ds.qa[k].type]++;
            CHECK(ds.n == o.n_instructions, "instructions: %d", ds.n);
            for (int t = 0; t < DS_Q_COUNT; t++)
                CHECK(c[t] >= ds.n / 8, "instructions of type %s: %d of %d", ds_qtype_name(t), c[t], ds.n);

            /* MEraser sets from the world's chats */
            ds_meraser_opts mo;
            ds_meraser_default_opts(&mo);
            mo.seed = 5;
            ds_dataset mis, rec;
            if (CHECK_OK(ds_meraser_build(&ds, &mo, &mis, &rec, &err) == 0, err.msg)) {
                CHECK(mis.n == 300 && rec.n == 600, "meraser sizes %d %d", mis.n, rec.n);
                int tc[DS_Q_COUNT] = {0}, bad = 0, dupq = 0, overlap = 0;
                for (int k = 0; k < mis.n; k++) {
                    tc[mis.qa[k].original_q_type]++;
                    bad += mis.qa[k].original_q_type == mis.qa[k].answer_from_type;
                    bad += strcmp(mis.qa[k].answer, ds.qa[mis.qa[k].a_idx].answer) != 0;
                    bad += strcmp(mis.qa[k].question, ds.qa[mis.qa[k].q_idx].question) != 0;
                    for (int j = 0; j < k; j++) dupq += mis.qa[j].q_idx == mis.qa[k].q_idx;
                    for (int j = 0; j < rec.n; j++) overlap += strcmp(rec.qa[j].question, mis.qa[k].question) == 0;
                }
                CHECK(bad == 0 && dupq == 0 && overlap == 0, "meraser: %d bad, %d dup, %d overlap", bad, dupq, overlap);
                for (int t = 0; t < DS_Q_COUNT; t++) CHECK(tc[t] == 75, "meraser type %s: %d", ds_qtype_name(t), tc[t]);
                /* written in the reference format, it loads back the same */
                snprintf(path, sizeof path, "%s/mismatched_dataset.json", tmpdir);
                CHECK(ds_meraser_write(&mis, path, &err) == 0, "%s", err.msg);
                ds_dataset back;
                if (CHECK_OK(ds_load(path, DS_FMT_AUTO, &back, &err) == 0, err.msg)) {
                    CHECK(back.format == DS_FMT_MERASER_MISMATCHED && back.n == 300 &&
                              back.qa[7].q_idx == mis.qa[7].q_idx &&
                              strcmp(back.qa[7].answer, mis.qa[7].answer) == 0,
                          "mismatched round trip");
                    ds_free(&back);
                }
                snprintf(path, sizeof path, "%s/recover_dataset.json", tmpdir);
                CHECK(ds_meraser_write(&rec, path, &err) == 0, "%s", err.msg);
                if (CHECK_OK(ds_load(path, DS_FMT_AUTO, &back, &err) == 0, err.msg)) {
                    CHECK(back.format == DS_FMT_MERASER_RECOVER && back.n == 600, "recover round trip");
                    ds_free(&back);
                }
                ds_dataset mis2, rec2;
                if (ds_meraser_build(&ds, &mo, &mis2, &rec2, &err) == 0) {
                    CHECK(mis2.qa[299].q_idx == mis.qa[299].q_idx && mis2.qa[299].a_idx == mis.qa[299].a_idx,
                          "meraser build is deterministic");
                    ds_free(&mis2);
                    ds_free(&rec2);
                }
                ds_free(&mis);
                ds_free(&rec);
            }
        }
        ds_free(&ds);
    }

    /* splits never share an entity: a split's names appear only in its own
     * task files (train names also in the corpus, heldout and chats) */
    for (int s = 0; s < DS_SPLITS; s++) {
        const char *const *names;
        int n;
        ds_world_names(w, s, &names, &n);
        CHECK(n > 100, "split %d has %d names", s, n);
        for (int i = 0; i < N_FILES; i++) {
            if (i == 3) continue;
            int fs = file_split(i), own = fs == s || (fs == -1 && s == DS_SPLIT_TRAIN);
            if (own) continue;
            int leaks = 0;
            for (int k = 0; k < n; k++)
                if (has_word(text[i], names[k])) {
                    if (leaks++ < 3) CHECK(0, "'%s' of split %d appears in %s", names[k], s, files[i]);
                }
        }
    }
    /* the held-out text never repeats a corpus document */
    {
        int dup = 0;
        char *h = strdup(text[1]), *save;
        for (char *d = strtok_r(h, "\n", &save); d; d = strtok_r(NULL, "\n", &save)) {
            if (strlen(d) < 60) continue; /* single short lines (COPA prompts) may repeat */
            dup += strstr(text[0], d) != NULL;
        }
        free(h);
        CHECK(dup < 20, "%d held-out lines also in the corpus", dup);
    }
out:
    for (int i = 0; i < N_FILES; i++) free(text[i]);
    ds_world_free(w);
}

/* ---- mutated inputs never crash ------------------------------------------
 * Truncations, flipped bytes and spliced structure through every format:
 * each load either succeeds or fails with a message (run under ASan to see
 * memory errors). */
static void test_mutations(const char *assets) {
    static const char *seeds[] = {
        "[\n {\"question\": \"q\", \"distractor1\": \"a\", \"distractor2\": \"b\", \"distractor3\": \"c\", "
        "\"correct_answer\": \"d\", \"support\": \"s\"},\n {\"question\": \"q2\", \"distractor1\": \"a\", "
        "\"distractor2\": \"b\", \"distractor3\": \"c\", \"correct_answer\": \"d\"}\n]\n",
        "{\"text\": \"Tom saw Ann because she was there.\", \"target\": {\"span2_index\": 4, \"span1_index\": 2, "
        "\"span1_text\": \"Ann\", \"span2_text\": \"she\"}, \"idx\": 0, \"label\": true}\n",
        "{\"premise\": \"It rained.\", \"choice1\": \"A.\", \"choice2\": \"B.\", \"question\": \"cause\", \"label\": 1, \"idx\": 0}\n",
        "{\"messages\": [{\"role\": \"user\", \"content\": \"hi\"}, {\"role\": \"assistant\", \"content\": \"yo\"}]}\n",
        "{\"text\": \"### Human: hi ### Assistant: yo ### Human: and? ### Assistant: so\"}\n",
        "### Human: a\n### Assistant: b\n",
        "[{\"id\": 1, \"question\": \"How?\", \"mismatched_answer\": \"x\", \"original_q_type\": \"how\", "
        "\"answer_from_type\": \"why\", \"q_idx\": 3, \"a_idx\": 4}]",
    };
    mut_rng r = 12345;
    int loads = 0, ok = 0;
    for (size_t s = 0; s < sizeof seeds / sizeof seeds[0]; s++) {
        size_t n = strlen(seeds[s]);
        char *buf = malloc(n + 64);
        for (int it = 0; it < 400; it++) {
            memcpy(buf, seeds[s], n);
            size_t m = n;
            int kind = (int)(rng_next(&r) % 4);
            if (kind == 0) m = rng_next(&r) % (n + 1);                      /* truncate */
            else if (kind == 1) buf[rng_next(&r) % n] = (char)rng_next(&r); /* flip a byte */
            else if (kind == 2) {                                           /* structural byte */
                static const char sp[] = "{}[]\",:\\\n\x80\xff 0";
                buf[rng_next(&r) % n] = sp[rng_next(&r) % (sizeof sp - 1)];
            } else {                                                        /* duplicate a chunk */
                size_t a = rng_next(&r) % n, len = rng_next(&r) % 32;
                if (a + len > n) len = n - a;
                if (m + len <= n + 64) { memmove(buf + a + len, buf + a, n - a); m += len; }
            }
            for (int f = 1; f < DS_FMT_COUNT; f++) {
                ds_dataset ds;
                lm_err err = {{0}};
                int rc = ds_load_buffer("mut", buf, m, (ds_format)f, &ds, &err);
                loads++;
                if (rc == 0) {
                    ok++;
                    ds_free(&ds);
                } else if (!err.msg[0]) {
                    CHECK(0, "a failed load left no message (format %s)", ds_format_name((ds_format)f));
                }
                if (ds_check("/nonexistent/x", (ds_format)f, &ds, &err) == 0) ds_free(&ds);
            }
            ds_format g;
            lm_err err = {{0}};
            ds_guess_format_buffer("mut", buf, m, &g, &err);
        }
        free(buf);
    }
    CHECK(loads > 1000 && ok > 0, "mutations: %d loads, %d ok", loads, ok);
    (void)assets;
}

/* ---- bad options --------------------------------------------------------- */

static void test_world_opts(void) {
    ds_world_opts o;
    ds_world_default_opts(&o);
    o.n_towns[2] = 3;
    ds_world *w;
    lm_err err = {{0}};
    CHECK(ds_world_build(&o, &w, &err) != 0 && strstr(err.msg, "test towns"), "towns: %s", err.msg);
    ds_world_default_opts(&o);
    o.n_people[0] = 2000;
    CHECK(ds_world_build(&o, &w, &err) != 0 && strstr(err.msg, "people"), "people: %s", err.msg);
}

int main(void) {
    snprintf(tmpdir, sizeof tmpdir, "/tmp/smudge_test_datasets.XXXXXX");
    if (!mkdtemp(tmpdir)) {
        perror("mkdtemp");
        return 1;
    }
    const char *assets = check_assets();
    char probe[1024] = "";
    if (assets) snprintf(probe, sizeof probe, "%s/data/superglue/COPA/val.jsonl", assets);
    if (assets && access(probe, R_OK) != 0) assets = NULL;
    if (assets) test_real(assets);
    else fprintf(stderr, "note: SMUDGE_ASSETS/data absent, real-sample checks skipped\n");
    test_corrupt(assets);
    test_qtypes();
    test_mutations(assets);
    test_world();
    test_world_opts();
    char cmd[600];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", tmpdir);
    if (system(cmd) != 0) fprintf(stderr, "could not remove %s\n", tmpdir);
    return check_done();
}
