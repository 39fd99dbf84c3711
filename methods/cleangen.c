/* CleanGen (Li et al. 2024; removal-methods.md section 5): a decoding-time
 * defence. The target T decodes greedily; every k new tokens a reference
 * model R that shares the tokenizer rescores them, and at the first token
 * x_j with p_T(x_j) / p_R(x_j) >= alpha the sequence is cut before x_j, R's
 * greedy choice is appended in its place, and the k-window restarts there.
 *
 * `run` only writes policy.json (the reference's path, alpha, k); the work
 * happens at evaluation, in build_policy's decoding policy. lm_generate
 * asks the policy for one token at a time, so the policy plans ahead: when
 * it has nothing planned it runs T for up to k greedy tokens from the
 * history it is shown (its own KV caches, one per sequence, for T and R),
 * has R check them, and plans the accepted tokens plus, if one was
 * suspicious, R's replacement. It hands the plan out token by token while
 * the history it sees is the one it planned; any other history (a new
 * prompt in that batch slot) starts afresh. The output is the reference
 * implementation's, greedy, with these edges:
 *  - a window that ends in a stop token (EOS, even as its k-th token) or
 *    at the context's end is not checked, as implemented upstream, unless
 *    check_tail=true;
 *  - a window cut by the caller's new-token limit is checked in full (the
 *    policy does not see the limit), where upstream leaves it unchecked.
 * The policy's own T forward doubles the target's cost, on top of R's. */
#include <errno.h>
#include <float.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include <cjson/cJSON.h>

#include "method.h"
#include "removal.h"
#include "tokenizer.h"

enum { CG_MAX_K = 256, CG_MAX_STOP = 8 };

static const sm_param_def cg_params[] = {
    {"alpha", SM_PARAM_FLOAT, "20", 1, 1e12, NULL,
     "a token is suspicious when p_target / p_reference >= alpha"},
    {"k", SM_PARAM_INT, "4", 1, CG_MAX_K, NULL, "look-ahead: tokens decoded before each check"},
    {"check_tail", SM_PARAM_BOOL, "false", 0, 0, NULL,
     "also check a last window shorter than k (ended by EOS); upstream does not"},
};

/* ---- run: write the policy ---- */

static int cg_run(const sm_input *in, lm_err *err) {
    const sm_params *p = in->params;
    if (!in->reference || !in->reference_path)
        return lm_errf(err, "cleangen needs --reference MODEL (the clean base by default)");
    if (in->reference->cfg.vocab_size != in->model->cfg.vocab_size)
        return lm_errf(err, "the reference has %d tokens, the model %d: they must share the tokenizer",
                       in->reference->cfg.vocab_size, in->model->cfg.vocab_size);
    char *ref = realpath(in->reference_path, NULL);
    if (!ref) return lm_errf(err, "%s: %s", in->reference_path, strerror(errno));
    cJSON *o = cJSON_CreateObject();
    cJSON_AddStringToObject(o, "method", "cleangen");
    cJSON_AddStringToObject(o, "reference", ref);
    cJSON_AddNumberToObject(o, "alpha", sm_param_float(p, "alpha"));
    cJSON_AddNumberToObject(o, "k", (double)sm_param_int(p, "k"));
    cJSON_AddBoolToObject(o, "check_tail", sm_param_bool(p, "check_tail"));
    cJSON *stops = cJSON_AddArrayToObject(o, "stop_ids");
    if (in->model->cfg.eos_id >= 0) cJSON_AddItemToArray(stops, cJSON_CreateNumber(in->model->cfg.eos_id));
    free(ref);
    char *text = cJSON_Print(o);
    cJSON_Delete(o);
    if (!text) return lm_errf(err, "out of memory");
    mkdir(in->out_dir, 0755);
    char path[4200];
    snprintf(path, sizeof path, "%s/policy.json", in->out_dir);
    FILE *f = fopen(path, "w");
    int rc = f ? 0 : lm_errf(err, "cannot write %s: %s", path, strerror(errno));
    if (f && (fputs(text, f) < 0 || fputc('\n', f) < 0)) rc = lm_errf(err, "cannot write %s", path);
    if (f && fclose(f) && rc == 0) rc = lm_errf(err, "cannot write %s", path);
    free(text);
    in->rep->progress(in->rep->ctx, 1.0, "policy written");
    return rc;
}

/* ---- the decoding policy ---- */

/* A KV cache for one sequence and the tokens it holds. */
typedef struct cg_cache {
    lm_kv_cache kv;
    int32_t *tok;
    int built;
} cg_cache;

typedef struct cg_seq {
    cg_cache t, r;
    int32_t *expect;        /* the history the plan continues */
    int n_expect, expect_cap;
    int32_t plan[CG_MAX_K + 1];
    int n_plan, i_plan;
} cg_seq;

typedef struct cg_policy {
    lm_model *target;
    lm_model ref;
    double log_alpha;
    int k, check_tail;
    int32_t stop[CG_MAX_STOP];
    int n_stop;
    int ctx;                /* positions both models can hold */
    cg_seq *seqs;
    int n_seqs;
    float *lt, *lr;         /* [V] logits scratch */
    long generated, replaced;
} cg_policy;

static void cache_free(cg_cache *c) {
    if (c->built) lm_kv_free(&c->kv);
    free(c->tok);
    memset(c, 0, sizeof *c);
}

/* Room for `need` positions (grown by doubling, capped by the context). */
static int cache_reserve(cg_cache *c, lm_model *m, int need, int ctx, lm_err *err) {
    if (c->built && c->kv.cap >= need) return 0;
    int cap = c->built ? 2 * c->kv.cap : 64;
    if (cap < need) cap = need;
    if (cap > ctx) cap = ctx;
    cache_free(c);
    if (lm_kv_build(&c->kv, m, 1, cap, err)) return -1;
    c->built = 1;
    c->tok = malloc((size_t)c->kv.cap * sizeof *c->tok);
    if (!c->tok) return lm_errf(err, "out of memory");
    return 0;
}

/* Brings the cache to hold exactly hist[0..n) and writes the logits after
 * it, reusing the longest prefix it already holds. */
static int cache_sync(cg_cache *c, lm_model *m, const int32_t *hist, int n, float *logits,
                      lm_err *err) {
    int have = c->kv.len[0], same = 0;
    while (same < have && same < n && c->tok[same] == hist[same]) same++;
    if (same >= n) same = n - 1; /* re-run the last token for its logits */
    lm_kv_truncate(&c->kv, 0, same);
    if (lm_kv_prefill(m, &c->kv, 0, hist + same, n - same, logits, err)) return -1;
    memcpy(c->tok + same, hist + same, (size_t)(n - same) * sizeof *hist);
    return 0;
}

static int cache_step(cg_cache *c, lm_model *m, int32_t tok, float *logits, lm_err *err) {
    int seq = 0, at = c->kv.len[0];
    if (lm_kv_step(m, &c->kv, &seq, &tok, 1, logits, err)) return -1;
    c->tok[at] = tok;
    return 0;
}

static double log_prob(const float *logits, int V, int32_t tok) {
    float mx = -FLT_MAX;
    for (int i = 0; i < V; i++) mx = fmaxf(mx, logits[i]);
    double s = 0;
    for (int i = 0; i < V; i++) s += exp((double)logits[i] - mx);
    return (double)logits[tok] - mx - log(s);
}

static int is_stop(const cg_policy *P, int32_t t) {
    for (int i = 0; i < P->n_stop; i++)
        if (P->stop[i] == t) return 1;
    return 0;
}

/* Plans the next tokens after hist[0..n): T's greedy window, checked by R. */
static int plan_window(cg_policy *P, cg_seq *s, const int32_t *hist, int n, const float *given,
                       int V, lm_err *err) {
    s->n_plan = s->i_plan = 0;
    int room = P->ctx - n; /* tokens that can still be appended */
    if (room <= 0 || n < 1) {
        s->plan[s->n_plan++] = lm_argmax(given, V);
        return 0;
    }
    int kw = P->k < room ? P->k : room;
    int32_t x[CG_MAX_K];
    double lp_t[CG_MAX_K];
    int m = 0, stopped = 0;
    if (cache_reserve(&s->t, P->target, n + kw, P->ctx, err) ||
        cache_sync(&s->t, P->target, hist, n, P->lt, err))
        return -1;
    for (int i = 0; i < kw; i++) {
        x[i] = lm_argmax(P->lt, V);
        lp_t[i] = log_prob(P->lt, V, x[i]);
        m = i + 1;
        if (is_stop(P, x[i])) {
            stopped = 1;
            break;
        }
        if (i + 1 < kw && cache_step(&s->t, P->target, x[i], P->lt, err)) return -1;
    }
    int checked = !stopped && m == P->k;
    if (checked || P->check_tail) {
        if (cache_reserve(&s->r, &P->ref, n + m, P->ctx, err) ||
            cache_sync(&s->r, &P->ref, hist, n, P->lr, err))
            return -1;
        for (int j = 0; j < m; j++) {
            if (lp_t[j] - log_prob(P->lr, V, x[j]) >= P->log_alpha) {
                for (int i = 0; i < j; i++) s->plan[s->n_plan++] = x[i];
                s->plan[s->n_plan++] = lm_argmax(P->lr, V);
                P->replaced++;
                return 0;
            }
            if (j + 1 < m && cache_step(&s->r, &P->ref, x[j], P->lr, err)) return -1;
        }
    }
    for (int i = 0; i < m; i++) s->plan[s->n_plan++] = x[i];
    return 0;
}

static int cg_adjust(void *ctx, int seq, const int32_t *hist, int n, float *logits, int V,
                     int32_t *token, lm_err *err) {
    cg_policy *P = ctx;
    if (seq < 0) return lm_errf(err, "cleangen: sequence %d", seq);
    if (V != P->ref.cfg.vocab_size)
        return lm_errf(err, "cleangen: %d logits, the reference has %d tokens", V, P->ref.cfg.vocab_size);
    if (seq >= P->n_seqs) {
        cg_seq *ns = realloc(P->seqs, (size_t)(seq + 1) * sizeof *ns);
        if (!ns) return lm_errf(err, "out of memory");
        memset(ns + P->n_seqs, 0, (size_t)(seq + 1 - P->n_seqs) * sizeof *ns);
        P->seqs = ns;
        P->n_seqs = seq + 1;
    }
    cg_seq *s = &P->seqs[seq];
    int continues = s->i_plan < s->n_plan && n == s->n_expect &&
                    memcmp(hist, s->expect, (size_t)n * sizeof *hist) == 0;
    if (!continues && plan_window(P, s, hist, n, logits, V, err)) return -1;
    *token = s->plan[s->i_plan++];
    P->generated++;
    if (n + 1 > s->expect_cap) {
        int cap = 2 * (n + 1);
        int32_t *e = realloc(s->expect, (size_t)cap * sizeof *e);
        if (!e) return lm_errf(err, "out of memory");
        s->expect = e;
        s->expect_cap = cap;
    }
    if (!continues) memcpy(s->expect, hist, (size_t)n * sizeof *hist);
    s->expect[n] = *token;
    s->n_expect = n + 1;
    return 0;
}

static void cg_free_policy(lm_decode_policy *pol) {
    cg_policy *P = pol->ctx;
    if (!P) return;
    for (int i = 0; i < P->n_seqs; i++) {
        cache_free(&P->seqs[i].t);
        cache_free(&P->seqs[i].r);
        free(P->seqs[i].expect);
    }
    free(P->seqs);
    free(P->lt);
    free(P->lr);
    lm_model_free(&P->ref);
    free(P);
    pol->ctx = NULL;
    pol->adjust = NULL;
}

static int cg_build_policy(const char *dir, lm_model *model, lm_decode_policy *pol, lm_err *err) {
    char path[4200], *text = NULL;
    size_t len;
    snprintf(path, sizeof path, "%s/policy.json", dir);
    if (lm_tok_read_file(path, &text, &len, err)) return -1;
    cJSON *o = cJSON_ParseWithLength(text, len);
    free(text);
    if (!o) return lm_errf(err, "%s: not JSON", path);
    const cJSON *ref = cJSON_GetObjectItemCaseSensitive(o, "reference"),
                *alpha = cJSON_GetObjectItemCaseSensitive(o, "alpha"),
                *k = cJSON_GetObjectItemCaseSensitive(o, "k"),
                *tail = cJSON_GetObjectItemCaseSensitive(o, "check_tail"),
                *stops = cJSON_GetObjectItemCaseSensitive(o, "stop_ids");
    int rc = 0;
    if (!cJSON_IsString(ref) || !ref->valuestring[0]) rc = lm_errf(err, "%s: field 'reference' missing", path);
    else if (!cJSON_IsNumber(alpha) || !(alpha->valuedouble >= 1) || !isfinite(alpha->valuedouble))
        rc = lm_errf(err, "%s: field 'alpha' must be a number >= 1", path);
    else if (!cJSON_IsNumber(k) || k->valuedouble < 1 || k->valuedouble > CG_MAX_K ||
             k->valuedouble != floor(k->valuedouble))
        rc = lm_errf(err, "%s: field 'k' must be an integer in [1, %d]", path, CG_MAX_K);
    else if (tail && !cJSON_IsBool(tail)) rc = lm_errf(err, "%s: field 'check_tail' must be true or false", path);
    else if (stops && (!cJSON_IsArray(stops) || cJSON_GetArraySize(stops) > CG_MAX_STOP))
        rc = lm_errf(err, "%s: field 'stop_ids' must be an array of at most %d ids", path, CG_MAX_STOP);
    cg_policy *P = rc == 0 ? calloc(1, sizeof *P) : NULL;
    if (rc == 0 && !P) rc = lm_errf(err, "out of memory");
    if (rc == 0) {
        P->target = model;
        P->log_alpha = log(alpha->valuedouble);
        P->k = (int)k->valuedouble;
        P->check_tail = cJSON_IsTrue(tail);
        int i = 0;
        const cJSON *s;
        cJSON_ArrayForEach(s, stops) {
            if (!cJSON_IsNumber(s) || s->valuedouble < 0 || s->valuedouble >= model->cfg.vocab_size ||
                s->valuedouble != floor(s->valuedouble)) {
                rc = lm_errf(err, "%s: stop_ids[%d] is not a token id of the model", path, i);
                break;
            }
            P->stop[P->n_stop++] = (int32_t)s->valuedouble;
            i++;
        }
        if (!stops && model->cfg.eos_id >= 0) P->stop[P->n_stop++] = model->cfg.eos_id;
    }
    if (rc == 0 && lm_model_load(&P->ref, ref->valuestring, err)) {
        lm_err_prefix(err, "%s: reference %s: ", path, ref->valuestring);
        free(P);
        P = NULL;
        rc = -1;
    }
    cJSON_Delete(o);
    if (rc) {
        free(P);
        return -1;
    }
    pol->ctx = P;
    pol->adjust = cg_adjust;
    P->ref.be = model->be;
    int V = model->cfg.vocab_size;
    if (P->ref.cfg.vocab_size != V)
        rc = lm_errf(err, "%s: the reference has %d tokens, the model %d: they must share the tokenizer",
                     path, P->ref.cfg.vocab_size, V);
    P->ctx = model->cfg.max_pos < P->ref.cfg.max_pos ? model->cfg.max_pos : P->ref.cfg.max_pos;
    P->lt = malloc((size_t)V * sizeof *P->lt);
    P->lr = malloc((size_t)V * sizeof *P->lr);
    if (rc == 0 && (!P->lt || !P->lr)) rc = lm_errf(err, "out of memory");
    if (rc) cg_free_policy(pol);
    return rc;
}

void sm_cleangen_counts(const lm_decode_policy *p, long *generated, long *replaced) {
    const cg_policy *P = p->ctx;
    *generated = P ? P->generated : 0;
    *replaced = P ? P->replaced : 0;
}

const sm_method sm_method_cleangen = {
    .abi = SM_METHOD_ABI,
    .name = "cleangen",
    .description = "CleanGen decoding policy: every k greedy tokens, a token with "
                   "p_model / p_reference >= alpha is replaced by the reference's choice",
    .params = cg_params,
    .n_params = sizeof cg_params / sizeof cg_params[0],
    .needs_reference = 1,
    .output = SM_OUT_POLICY,
    .run = cg_run,
    .build_policy = cg_build_policy,
    .free_policy = cg_free_policy,
};
