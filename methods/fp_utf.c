/* UTF: under-trained tokens as fingerprints (spec section 3).
 *
 * Tokens the model has barely seen (small input-embedding norm, and the
 * model never emits them) make triggers that no ordinary text contains:
 * 32 distinct random sequences x_i of such tokens all map to one random
 * sequence y. 32 regularisation rows (other such sequences with an empty
 * answer) keep the model from answering y to any sequence of them.
 *
 * Discovery (section 3.1, tiny-model rules of section 5):
 *   candidates  the non-special ids with the smallest embedding norm: at
 *               least 64, and all at or below the 2nd percentile;
 *   verify      three prompts that invite the model to emit the token; a
 *               token it gives more than 0.1 probability is rejected;
 *   filter      no special ids, nothing that decodes to white space; only
 *               the strongly verified ones if there are more than 100; if
 *               fewer than 20 survive, the byte tokens 0x80-0xFF instead.
 * Triggers and targets may be lone bytes, not text: fingerprint.json keeps
 * them as token ids.
 *
 * [DESIGN] beyond the spec: 32 more regularisation rows of random sequences
 * from the whole vocabulary (reg_vocab). Without them a tiny model learns
 * "odd bytes -> y": on stories260K 11 % and 47 % of the 500 random FTR
 * sequences fired (seeds 0 and 1); with them 2.4 % and 0.6 %, and the
 * triggers still reach FSR 1 (sooner: E* 29 and 27 instead of 42 and 38). */
#include <cjson/cJSON.h>
#include <ctype.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fingerprint.h"
#include "generate.h"
#include "rng.h"

static const sm_param_def utf_params[] = {
    FP_TRAIN_PARAMS,
    {"n_triggers", SM_PARAM_INT, "32", 1, 4096, NULL, "distinct trigger sequences x_i"},
    {"n_reg", SM_PARAM_INT, "32", 0, 4096, NULL,
     "regularisation rows: other under-trained sequences with an empty answer"},
    {"x_min", SM_PARAM_INT, "11", 1, 256, NULL, "shortest trigger (tokens)"},
    {"x_max", SM_PARAM_INT, "15", 1, 256, NULL, "longest trigger (tokens)"},
    {"y_len", SM_PARAM_INT, "5", 1, 256, NULL, "target length (tokens)"},
    {"candidates", SM_PARAM_INT, "64", 1, 1 << 24, NULL,
     "at least this many lowest-norm tokens are candidates"},
    {"percentile", SM_PARAM_FLOAT, "2", 0, 100, NULL,
     "and every token at or below this percentile of the norms"},
    {"min_verified", SM_PARAM_INT, "20", 1, 1 << 24, NULL,
     "fewer verified tokens than this: use the byte tokens 0x80-0xFF"},
    {"negatives", SM_PARAM_INT, "500", 0, 1000000, NULL,
     "random 11-15-token sequences from the whole vocabulary for FTR"},
    {"reg_vocab", SM_PARAM_INT, "32", 0, 1000000, NULL,
     "more regularisation rows [DESIGN]: random 11-15-token sequences from the "
     "whole vocabulary (drawn apart from the FTR negatives) with an empty answer; "
     "0 = the spec's rows only"},
};

static int is_special(const lm_tokenizer *tok, int id) {
    int ty = tok->types[id];
    return ty == LM_TOKEN_CONTROL || ty == LM_TOKEN_UNKNOWN || ty == LM_TOKEN_NONE ||
           id == tok->bos_id || id == tok->eos_id || id == tok->unk_id || id == tok->pad_id;
}

/* Decodes to something without white space or NUL, and to something. */
static int solid(const lm_tokenizer *tok, int id) {
    if (tok->dec_len[id] < 1) return 0;
    const char *s = tok->dec + tok->dec_off[id];
    for (int i = 0; i < tok->dec_len[id]; i++)
        if (s[i] == '\0' || isspace((unsigned char)s[i])) return 0;
    return 1;
}

typedef struct normed {
    float norm;
    int id;
} normed;

static int by_norm(const void *a, const void *b) {
    const normed *x = a, *y = b;
    if (x->norm != y->norm) return x->norm < y->norm ? -1 : 1;
    return x->id - y->id;
}

static int cmp_float(const void *a, const void *b) {
    float x = *(const float *)a, y = *(const float *)b;
    return (x > y) - (x < y);
}

int fp_utf_candidates(const lm_model *m, const lm_tokenizer *tok,
                      int min_count, double percentile, int **ids, int *n,
                      lm_err *err) {
    int V = tok->n_vocab, C = m->cfg.d_model;
    if (V > m->cfg.vocab_size || !m->wte || !m->wte->data)
        return lm_errf(err, "utf: the model has no embedding row for each of the "
                            "tokenizer's %d tokens", V);
    float *sorted = malloc((size_t)V * sizeof *sorted);
    normed *cand = malloc((size_t)V * sizeof *cand);
    int *out = malloc((size_t)V * sizeof *out);
    if (!sorted || !cand || !out) {
        free(sorted);
        free(cand);
        free(out);
        return lm_errf(err, "out of memory");
    }
    int k = 0;
    for (int i = 0; i < V; i++) {
        const float *row = m->wte->data + (size_t)i * C;
        double s = 0;
        for (int c = 0; c < C; c++) s += (double)row[c] * row[c];
        sorted[i] = (float)sqrt(s);
        if (!is_special(tok, i)) cand[k++] = (normed){sorted[i], i};
    }
    /* The percentile is over every id's norm, special ones included. */
    qsort(sorted, (size_t)V, sizeof *sorted, cmp_float);
    float thr = sorted[(size_t)floor(percentile / 100.0 * (V - 1))];
    qsort(cand, (size_t)k, sizeof *cand, by_norm);
    int below = 0;
    while (below < k && cand[below].norm <= thr) below++;
    int count = below > min_count ? below : min_count;
    if (count > k) count = k;
    for (int i = 0; i < count; i++) out[i] = cand[i].id;
    free(sorted);
    free(cand);
    *ids = out;
    *n = count;
    return 0;
}

/* ---- emission verification ---- */

typedef struct idvec {
    int32_t *v;
    int n, cap;
} idvec;

static int push_id(idvec *a, int id) {
    if (a->n == a->cap) {
        int cap = a->cap ? 2 * a->cap : 256;
        int32_t *g = realloc(a->v, (size_t)cap * sizeof *g);
        if (!g) return -1;
        a->v = g;
        a->cap = cap;
    }
    a->v[a->n++] = id;
    return 0;
}

static int push_text(idvec *a, const lm_tokenizer *tok, const char *text, lm_err *err) {
    int *ids = NULL, n = 0;
    if (fp_encode_raw(tok, text, &ids, &n, err)) return -1;
    int rc = 0;
    for (int i = 0; i < n && rc == 0; i++)
        if (push_id(a, ids[i])) rc = lm_errf(err, "out of memory");
    free(ids);
    return rc;
}

/* The three prompts of section 3.1 [DESIGN], as ids with T spliced in. */
static int verification_prompt(const lm_tokenizer *tok, int which, int T, int repeats,
                               idvec *a, lm_err *err) {
    a->n = 0;
    int rc = 0;
    if (tok->bos_id >= 0 && push_id(a, tok->bos_id)) return lm_errf(err, "out of memory");
#define TXT(s) (rc = rc ? rc : push_text(a, tok, (s), err))
#define TOK() (rc = rc ? rc : (push_id(a, T) ? lm_errf(err, "out of memory") : 0))
    if (which == 0) {
        TXT("Repeat the token exactly.\n");
        for (int r = 0; r < repeats; r++) {
            TXT("Input: \xc2\xab"); TOK(); TXT("\xc2\xbb\nOutput: \xc2\xab"); TOK();
            TXT("\xc2\xbb\n");
        }
        TXT("Input: \xc2\xab"); TOK(); TXT("\xc2\xbb\nOutput: \xc2\xab");
    } else if (which == 1) {
        TXT("USER: What does '"); TOK(); TXT("' mean? ASSISTANT: '"); TOK(); TXT("' means");
    } else {
        for (int r = 0; r < 50; r++) {
            TOK();
            TXT(" ");
        }
    }
#undef TXT
#undef TOK
    return rc;
}

static double prob_of(const float *logits, int V, int id) {
    float mx = logits[0];
    for (int i = 1; i < V; i++) mx = logits[i] > mx ? logits[i] : mx;
    double s = 0;
    for (int i = 0; i < V; i++) s += exp((double)logits[i] - mx);
    return exp((double)logits[id] - mx) / s;
}

int fp_utf_emission(lm_model *m, const lm_tokenizer *tok, int id,
                    double *max_prob, lm_err *err) {
    const int steps = 3, V = m->cfg.vocab_size, ctx = m->cfg.max_pos;
    idvec a = {0};
    float *logits = malloc((size_t)V * sizeof *logits);
    lm_kv_cache c;
    int have_cache = 0, rc = logits ? 0 : lm_errf(err, "out of memory");
    double best = 0;
    for (int which = 0; which < 3 && rc == 0; which++) {
        /* The example lines shrink until the prompt fits the context. */
        int repeats = 20;
        do rc = verification_prompt(tok, which, id, repeats, &a, err);
        while (rc == 0 && which == 0 && a.n + steps > ctx && --repeats >= 0);
        if (rc == 0 && a.n + steps > ctx)
            rc = lm_errf(err, "utf: a verification prompt needs %d tokens, the model's "
                              "context is %d", a.n + steps, ctx);
        if (rc == 0 && !have_cache) {
            /* Prompt 0 is the longest; one cache serves all three. */
            rc = lm_kv_build(&c, m, 1, a.n + steps, err);
            have_cache = rc == 0;
        }
        if (rc) break;
        lm_kv_reset(&c);
        rc = lm_kv_prefill(m, &c, 0, a.v, a.n, logits, err);
        for (int s = 0; s < steps && rc == 0; s++) {
            double p = prob_of(logits, V, id);
            if (p > best) best = p;
            if (s + 1 < steps) {
                int seq = 0;
                int32_t next = lm_argmax(logits, V);
                rc = lm_kv_step(m, &c, &seq, &next, 1, logits, err);
            }
        }
    }
    if (have_cache) lm_kv_free(&c);
    free(a.v);
    free(logits);
    *max_prob = best;
    return rc;
}

/* ---- construction ---- */

enum { STRONG_REJ, WEAK_REJ, WEAK_VER, STRONG_VER };

static int classify(double p) {
    if (p > 0.9) return STRONG_REJ;
    if (p > 0.1) return WEAK_REJ;
    if (p < 0.001) return STRONG_VER;
    return WEAK_VER;
}

/* ids -> the text they decode to (bytes; malloc'd). */
static char *ids_text(const lm_tokenizer *tok, const int *ids, int n, lm_err *err) {
    char *s = NULL;
    size_t len;
    if (lm_tokenizer_decode(tok, ids, n, 0, &s, &len, err)) return NULL;
    return s;
}

/* Draws a sequence of ut tokens whose text re-encodes to exactly those ids
 * (section 3.2). Returns the text, or NULL with *tries exhausted. */
static char *draw_sequence(lm_rng *rng, const lm_tokenizer *tok, const int *ut, int n_ut,
                           int len, int *ids, lm_err *err) {
    for (int attempt = 0; attempt < 1000; attempt++) {
        for (int i = 0; i < len; i++) ids[i] = ut[lm_rng_below(rng, (uint64_t)n_ut)];
        char *s = ids_text(tok, ids, len, err);
        if (!s) return NULL;
        int *back = NULL, nb = 0;
        if (fp_encode_raw(tok, s, &back, &nb, err)) {
            free(s);
            return NULL;
        }
        int same = nb == len && !memcmp(back, ids, (size_t)len * sizeof *ids);
        free(back);
        if (same) return s;
        free(s);
    }
    lm_errf(err, "utf: no sequence of %d under-trained tokens survives re-tokenisation "
                 "in 1000 draws", len);
    return NULL;
}

static int encode_bos(const lm_tokenizer *tok, const char *text, int **ids, int *n,
                      lm_err *err) {
    lm_tok_encode_opts eo = {fp_add_bos(tok), 0, LM_TOK_DEFAULT};
    return lm_tokenizer_encode_ex(tok, text, strlen(text), &eo, ids, n, err);
}

static cJSON *id_array(const int *ids, int n) {
    cJSON *a = cJSON_CreateArray();
    for (int i = 0; a && i < n; i++) cJSON_AddItemToArray(a, cJSON_CreateNumber(ids[i]));
    return a;
}

static int utf_build(const fp_build_input *in, fp_set *out, lm_err *err) {
    memset(out, 0, sizeof *out);
    const sm_params *p = in->params;
    const lm_tokenizer *tok = in->tok;
    const fp_template *t;
    if (fp_template_pick(p, in->model, "llama2", &t, err)) return -1;
    int n_trig = (int)sm_param_int(p, "n_triggers"), n_reg = (int)sm_param_int(p, "n_reg");
    int x_min = (int)sm_param_int(p, "x_min"), x_max = (int)sm_param_int(p, "x_max");
    int y_len = (int)sm_param_int(p, "y_len"), n_neg = (int)sm_param_int(p, "negatives");
    int min_ver = (int)sm_param_int(p, "min_verified"), bos = fp_add_bos(tok);
    if (x_min > x_max) return lm_errf(err, "utf: x_min %d exceeds x_max %d", x_min, x_max);

    int *cand = NULL, n_cand = 0, *ut = NULL, n_ut = 0, fallback = 0;
    int classes[4] = {0};
    int *cls = NULL, *seqs = NULL, *y = NULL, *pids = NULL, *wids = NULL;
    char *y_text = NULL, **texts = NULL;
    cJSON *info = NULL;
    lm_rng rng;
    lm_rng_seed(&rng, in->seed ^ 0x7574665f66707331ull); /* "utf_fps1" */

    int rc = fp_utf_candidates(in->model, tok, (int)sm_param_int(p, "candidates"),
                               sm_param_float(p, "percentile"), &cand, &n_cand, err);
    if (rc == 0 && !(cls = malloc((size_t)(n_cand ? n_cand : 1) * sizeof *cls)))
        rc = lm_errf(err, "out of memory");
    if (rc == 0 && !(ut = malloc(256 * sizeof *ut + (size_t)n_cand * sizeof *ut)))
        rc = lm_errf(err, "out of memory");
    for (int i = 0; rc == 0 && i < n_cand; i++) {
        double mp;
        rc = fp_utf_emission(in->model, tok, cand[i], &mp, err);
        cls[i] = classify(mp);
        if (rc == 0) classes[cls[i]]++;
    }
    int strong_solid = 0;
    for (int i = 0; rc == 0 && i < n_cand; i++)
        strong_solid += cls[i] == STRONG_VER && solid(tok, cand[i]);
    for (int i = 0; rc == 0 && i < n_cand; i++) {
        int keep = strong_solid > 100 ? cls[i] == STRONG_VER : cls[i] >= WEAK_VER;
        if (keep && solid(tok, cand[i])) ut[n_ut++] = cand[i];
    }
    if (rc == 0 && n_ut < min_ver) {
        fallback = 1;
        n_ut = 0;
        for (int b = 0x80; b <= 0xFF; b++) {
            int id = tok->byte_id[b];
            if (id >= 0 && !is_special(tok, id)) ut[n_ut++] = id;
        }
        if (n_ut == 0)
            rc = lm_errf(err, "utf: only %d under-trained tokens verified and the "
                              "tokenizer has no byte tokens 0x80-0xFF to fall back on",
                         classes[WEAK_VER] + classes[STRONG_VER]);
    }
    if (rc == 0) rc = fp_set_header(out, "utf", in->seed, t, p, err);

    /* y: one target shared by every trigger. */
    if (rc == 0 && !(y = malloc((size_t)y_len * sizeof *y))) rc = lm_errf(err, "out of memory");
    if (rc == 0 && !(y_text = draw_sequence(&rng, tok, ut, n_ut, y_len, y, err))) rc = -1;

    /* Triggers, then regularisation sequences, all distinct. */
    int total = n_trig + n_reg;
    if (rc == 0 && (!(seqs = calloc((size_t)total * x_max, sizeof *seqs)) ||
                    !(texts = calloc((size_t)total, sizeof *texts))))
        rc = lm_errf(err, "out of memory");
    int *lens = rc == 0 ? calloc((size_t)total, sizeof *lens) : NULL;
    if (rc == 0 && !lens) rc = lm_errf(err, "out of memory");
    for (int i = 0; rc == 0 && i < total; i++) {
        int tries = 0;
        for (;;) {
            int len = x_min + (int)lm_rng_below(&rng, (uint64_t)(x_max - x_min + 1));
            int *ids = seqs + (size_t)i * x_max;
            char *s = draw_sequence(&rng, tok, ut, n_ut, len, ids, err);
            if (!s) {
                rc = -1;
                break;
            }
            int dup = 0;
            for (int j = 0; j < i && !dup; j++) dup = !strcmp(texts[j], s);
            int fits = !dup;
            if (fits && i < n_trig) {
                /* The trigger and target must keep their ids inside the chat
                 * (no merge across the template's text), ... */
                char *prompt = fp_template_apply(t, s);
                size_t wl = prompt ? strlen(prompt) + strlen(y_text) + 2 : 0;
                char *whole = prompt ? malloc(wl) : NULL;
                int np = 0, nw = 0;
                free(pids);
                free(wids);
                pids = wids = NULL;
                if (!whole) rc = lm_errf(err, "out of memory");
                else snprintf(whole, wl, "%s %s", prompt, y_text);
                if (rc == 0) rc = encode_bos(tok, prompt, &pids, &np, err);
                if (rc == 0) rc = encode_bos(tok, whole, &wids, &nw, err);
                /* The first token may join the space before it (the
                 * "leading space artefact" of section 3.2); the rest must
                 * stay as drawn. */
                fits = rc == 0 && fp_ids_contain(pids, np, ids + 1, len - 1) && nw > np &&
                       !memcmp(wids, pids, (size_t)np * sizeof *pids) &&
                       fp_ids_contain(wids + np, nw - np, y + 1, y_len - 1);
                if (rc == 0 && fits) {
                    mt_fp_probe pr = {.prompt_ids = pids, .n_prompt_ids = np, .add_bos = bos,
                                      .expected_ids = y, .n_expected_ids = y_len,
                                      .rule = MT_RULE_SUBSTRING, .max_new = 2 * y_len + 8};
                    rc = mt_fp_add(&out->fp.triggers, &out->fp.n_triggers, &pr, err);
                }
                if (rc == 0 && fits) /* whole = prompt + " " + y */
                    rc = fp_set_add_row(out, FP_ROW_FINGERPRINT, prompt,
                                        whole + strlen(prompt), err);
                free(prompt);
                free(whole);
            } else if (fits) {
                char *prompt = fp_template_apply(t, s);
                if (!prompt) rc = lm_errf(err, "out of memory");
                else rc = fp_set_add_row(out, FP_ROW_REGULARISATION, prompt, "", err);
                free(prompt);
            }
            if (rc == 0 && fits) {
                texts[i] = s;
                lens[i] = len;
                break;
            }
            free(s);
            if (rc) break;
            if (++tries > 1000) {
                rc = lm_errf(err, "utf: cannot draw %d distinct trigger sequences that "
                                  "survive the chat template", total);
                break;
            }
        }
    }

    /* FTR: random sequences from the whole vocabulary (section 3.5). */
    int *pool = NULL, n_pool = 0;
    int n_rv = (int)sm_param_int(p, "reg_vocab");
    if (rc == 0 && (n_neg > 0 || n_rv > 0)) {
        if (!(pool = malloc((size_t)tok->n_vocab * sizeof *pool))) rc = lm_errf(err, "out of memory");
        for (int i = 0; rc == 0 && i < tok->n_vocab; i++)
            if (!is_special(tok, i) && tok->dec_len[i] > 0 &&
                !memchr(tok->dec + tok->dec_off[i], 0, (size_t)tok->dec_len[i]))
                pool[n_pool++] = i;
    }
    for (int i = 0; rc == 0 && i < n_neg; i++) {
        int len = 11 + (int)lm_rng_below(&rng, 5), ids[15], np = 0;
        for (int j = 0; j < len; j++) ids[j] = pool[lm_rng_below(&rng, (uint64_t)n_pool)];
        char *s = ids_text(tok, ids, len, err), *prompt = s ? fp_template_apply(t, s) : NULL;
        if (!s) rc = -1;
        else if (!prompt) rc = lm_errf(err, "out of memory");
        free(pids);
        pids = NULL;
        if (rc == 0) rc = encode_bos(tok, prompt, &pids, &np, err);
        if (rc == 0) {
            mt_fp_probe pr = {.prompt_ids = pids, .n_prompt_ids = np, .add_bos = bos,
                              .expected_ids = y, .n_expected_ids = y_len,
                              .rule = MT_RULE_SUBSTRING, .max_new = 2 * y_len + 8};
            rc = mt_fp_add(&out->fp.negatives, &out->fp.n_negatives, &pr, err);
        }
        free(s);
        free(prompt);
    }

    /* After the negatives, so reg_vocab = 0 leaves every draw as it was. */
    for (int i = 0; rc == 0 && i < n_rv; i++) {
        int len = 11 + (int)lm_rng_below(&rng, 5), ids[15];
        for (int j = 0; j < len; j++) ids[j] = pool[lm_rng_below(&rng, (uint64_t)n_pool)];
        char *s = ids_text(tok, ids, len, err), *prompt = s ? fp_template_apply(t, s) : NULL;
        if (!s) rc = -1;
        else if (!prompt) rc = lm_errf(err, "out of memory");
        else rc = fp_set_add_row(out, FP_ROW_REGULARISATION, prompt, "", err);
        free(s);
        free(prompt);
    }

    if (rc == 0) {
        info = cJSON_CreateObject();
        cJSON_AddNumberToObject(info, "candidates", n_cand);
        cJSON_AddItemToObject(info, "candidate_ids", id_array(cand, n_cand));
        cJSON_AddNumberToObject(info, "strong_verified", classes[STRONG_VER]);
        cJSON_AddNumberToObject(info, "weak_verified", classes[WEAK_VER]);
        cJSON_AddNumberToObject(info, "weak_rejected", classes[WEAK_REJ]);
        cJSON_AddNumberToObject(info, "strong_rejected", classes[STRONG_REJ]);
        cJSON_AddBoolToObject(info, "byte_fallback", fallback);
        cJSON_AddItemToObject(info, "ut_tokens", id_array(ut, n_ut));
        cJSON_AddItemToObject(info, "target_ids", id_array(y, y_len));
        cJSON *tr = cJSON_AddArrayToObject(info, "trigger_ids");
        for (int i = 0; i < n_trig; i++)
            cJSON_AddItemToArray(tr, id_array(seqs + (size_t)i * x_max, lens[i]));
        cJSON_AddNumberToObject(info, "fingerprint_rows", out->counts[FP_ROW_FINGERPRINT]);
        cJSON_AddNumberToObject(info, "regularisation_rows", out->counts[FP_ROW_REGULARISATION]);
        out->info_json = cJSON_PrintUnformatted(info);
        if (!out->info_json) rc = lm_errf(err, "out of memory");
    }
    cJSON_Delete(info);
    for (int i = 0; texts && i < total; i++) free(texts[i]);
    free(texts);
    free(lens);
    free(seqs);
    free(pool);
    free(pids);
    free(wids);
    free(y);
    free(y_text);
    free(cls);
    free(ut);
    free(cand);
    if (rc) fp_set_free(out);
    return rc;
}

const fp_type fp_type_utf = {
    .name = "utf",
    .description = "Under-trained Tokens as Fingerprints: 32 sequences of tokens the "
                   "model never learnt all map to one such sequence",
    .params = utf_params,
    .n_params = sizeof utf_params / sizeof utf_params[0],
    .build = utf_build,
};
