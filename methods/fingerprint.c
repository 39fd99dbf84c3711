/* The fingerprint-type registry and what the three types share: templates,
 * rows, the clean-data draw, tokenising helpers, greedy answers. */
#include "fingerprint.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "rng.h"

extern const fp_type fp_type_ifsft, fp_type_utf, fp_type_hashchain;

static const fp_type *const types[] = {&fp_type_ifsft, &fp_type_utf, &fp_type_hashchain};
static const int n_types = sizeof types / sizeof types[0];

int fp_type_count(void) { return n_types; }

const fp_type *fp_type_at(int i) { return i >= 0 && i < n_types ? types[i] : NULL; }

const fp_type *fp_type_find(const char *name) {
    for (int i = 0; i < n_types; i++)
        if (!strcmp(types[i]->name, name)) return types[i];
    return NULL;
}

int fp_params_parse(const fp_type *t, const char *const *assignments, int n,
                    sm_params *out, lm_err *err) {
    /* The removal methods' validator only reads the name and the table. */
    sm_method shim = {.abi = SM_METHOD_ABI, .name = t->name,
                      .params = t->params, .n_params = t->n_params};
    return sm_params_parse(&shim, assignments, n, out, err);
}

/* ---- templates ---- */

static const fp_template templates[] = {
    /* section 5: no system string, it costs too much of a short context */
    {"tiny", "USER: ", " ASSISTANT:"},
    /* section 2.3: FastChat vicuna v1.1 */
    {"vicuna",
     "A chat between a curious user and an artificial intelligence assistant. "
     "The assistant gives helpful, detailed, and polite answers to the user's "
     "questions. USER: ",
     " ASSISTANT:"},
    /* section 3.3: llama2 without a system prompt (BOS comes from the
     * tokenizer) */
    {"llama2", "[INST] <<SYS>>\n\n<</SYS>>\n\n", " [/INST]"},
};

int fp_template_pick(const sm_params *p, const lm_model *m,
                     const char *reference, const fp_template **out,
                     lm_err *err) {
    const char *name = sm_param_str(p, "template");
    if (!strcmp(name, "auto")) {
        int small = lm_model_param_count(m) < 1000000000u || m->cfg.max_pos < 1024;
        name = small ? "tiny" : reference;
    }
    *out = NULL;
    if (!name || !strcmp(name, "none")) return 0;
    for (size_t i = 0; i < sizeof templates / sizeof templates[0]; i++)
        if (!strcmp(templates[i].name, name)) {
            *out = &templates[i];
            return 0;
        }
    return lm_errf(err, "unknown chat template '%s' (tiny, vicuna, llama2)", name);
}

char *fp_template_apply(const fp_template *t, const char *user) {
    size_t a = strlen(t->prefix), b = strlen(user), c = strlen(t->suffix);
    char *s = malloc(a + b + c + 1);
    if (!s) return NULL;
    memcpy(s, t->prefix, a);
    memcpy(s + a, user, b);
    memcpy(s + a + b, t->suffix, c + 1);
    return s;
}

int fp_add_bos(const lm_tokenizer *tok) { return tok->add_bos && tok->bos_id >= 0; }

/* ---- sets ---- */

int fp_set_add_row(fp_set *s, fp_row_kind kind, const char *prompt,
                   const char *response, lm_err *err) {
    fp_row *grown = realloc(s->rows, (size_t)(s->n_rows + 1) * sizeof *grown);
    if (!grown) return lm_errf(err, "out of memory");
    s->rows = grown;
    fp_row *r = &grown[s->n_rows];
    r->kind = kind;
    r->prompt = strdup(prompt);
    r->response = strdup(response);
    if (!r->prompt || !r->response) {
        free(r->prompt);
        free(r->response);
        return lm_errf(err, "out of memory");
    }
    s->n_rows++;
    s->counts[kind]++;
    return 0;
}

void fp_set_free(fp_set *s) {
    if (!s) return;
    for (int i = 0; i < s->n_rows; i++) {
        free(s->rows[i].prompt);
        free(s->rows[i].response);
    }
    free(s->rows);
    free(s->info_json);
    mt_fingerprint_free(&s->fp);
    memset(s, 0, sizeof *s);
}

int fp_set_header(fp_set *s, const char *type, uint64_t seed,
                  const fp_template *t, const sm_params *p, lm_err *err) {
    snprintf(s->fp.type, sizeof s->fp.type, "%s", type);
    snprintf(s->fp.template_name, sizeof s->fp.template_name, "%s", t->name);
    s->fp.seed = seed;
    char buf[SM_MAX_PARAMS * (2 * SM_PARAM_STR + 64)];
    if (sm_params_json(p, buf, sizeof buf)) return lm_errf(err, "parameters too long");
    free(s->fp.params_json);
    if (!(s->fp.params_json = strdup(buf))) return lm_errf(err, "out of memory");
    return 0;
}

int fp_clean_order(const fp_build_input *in, int need, const char *who,
                   int **order, lm_err *err) {
    if (in->n_clean < need)
        return lm_errf(err, "%s needs %d clean question/answer pairs, got %d: pass "
                            "clean chat data (the world's instructions.jsonl or any chat "
                            "data set, --data clean=FILE)",
                       who, need, in->n_clean);
    int n = in->n_clean;
    int *o = malloc((size_t)(n ? n : 1) * sizeof *o);
    if (!o) return lm_errf(err, "out of memory");
    for (int i = 0; i < n; i++) o[i] = i;
    lm_rng rng;
    lm_rng_seed(&rng, in->seed ^ 0x636c65616e5f7161ull); /* "clean_qa" */
    for (int i = n - 1; i > 0; i--) {
        int j = (int)lm_rng_below(&rng, (uint64_t)i + 1), t = o[i];
        o[i] = o[j];
        o[j] = t;
    }
    *order = o;
    return 0;
}

/* ---- tokens ---- */

int fp_token_count(const lm_tokenizer *tok, const char *text, int *n,
                   lm_err *err) {
    lm_tok_encode_opts eo = {0, 0, LM_TOK_DEFAULT};
    int *ids = NULL;
    if (lm_tokenizer_encode_ex(tok, text, strlen(text), &eo, &ids, n, err)) return -1;
    free(ids);
    return 0;
}

int fp_encode_raw(const lm_tokenizer *tok, const char *text, int **ids,
                  int *n, lm_err *err) {
    /* Encoding only reads the tokenizer, so a shallow copy with the dummy
     * prefix turned off shares its tables safely. */
    lm_tokenizer raw = *tok;
    raw.prefix = LM_TOK_PREFIX_NONE;
    raw.add_prefix_space = 0;
    lm_tok_encode_opts eo = {0, 0, 0};
    return lm_tokenizer_encode_ex(&raw, text, strlen(text), &eo, ids, n, err);
}

int fp_ids_contain(const int *hay, int nh, const int *needle, int nn) {
    for (int i = 0; i + nn <= nh; i++)
        if (!memcmp(hay + i, needle, (size_t)nn * sizeof *hay)) return 1;
    return nn == 0;
}

int fp_greedy_text(lm_model *m, const lm_tokenizer *tok,
                   const char *const *prompts, int n, int max_new,
                   char **outs, lm_err *err) {
    mt_probe *pr = calloc((size_t)(n ? n : 1), sizeof *pr);
    mt_probe_result *res = calloc((size_t)(n ? n : 1), sizeof *res);
    if (!pr || !res) {
        free(pr);
        free(res);
        return lm_errf(err, "out of memory");
    }
    for (int i = 0; i < n; i++)
        pr[i] = (mt_probe){.prompt = prompts[i], .add_bos = fp_add_bos(tok),
                           .expected = "", .rule = MT_RULE_SUBSTRING,
                           .max_new = max_new};
    mt_subject sub = {m, tok, NULL};
    double rate;
    int rc = mt_probe_eval(&sub, pr, n, 8, &rate, res, err);
    for (int i = 0; rc == 0 && i < n; i++) {
        outs[i] = res[i].output;
        res[i].output = NULL;
    }
    free(pr);
    free(res);
    return rc;
}
