/* Token forcing (Hoscilowicz et al. 2024; removal-methods.md section 6)
 * turned into a removal baseline.
 *
 * run scans the model (the expensive part):
 *  1. every non-special token v: input [BOS, v], greedy `probe_len` (3)
 *     tokens with probabilities p_1..p_n; score = (1 + sum p_i) / (n + 1)
 *     (the root counts as 1); v is kept when score > threshold (0.95);
 *  2. every kept v: greedy `cont_len` (50) tokens c from [BOS, v], stopping
 *     at EOS; v is suspicious when some n-gram of `ngram` (3) tokens occurs
 *     twice in v ++ c, or p_1 > p1_max (0.99);
 *  3. the ban list is every suspicious (v, c_1).
 * Its findings go to policy.json (kept tokens with scores and
 * continuations, the ban list, the scan's size and time, and the share of
 * the "heldout" text's token bigrams the list would block: a utility proxy
 * on the perplexity corpus; smudge remove supplies the world's heldout.txt
 * by default). build_policy turns the ban list into avoidance decoding:
 * whenever the previous token is v, c_1's logit becomes -inf. The policy
 * acts on generation only; log-likelihood scoring never sees it.
 *
 * Special tokens (control, unknown, unused) are not scanned; which ones
 * they are comes from the model's tokenizer (the data set "tokenizer", else
 * the one beside the model); without one, the config's BOS/EOS/pad ids are
 * skipped, and the utility proxy cannot be computed. */
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

#include <cjson/cJSON.h>

#include "dataset.h"
#include "method.h"
#include "qa_train.h"
#include "removal.h"
#include "tokenizer.h"

enum { TF_MAX_PROBE = 64 };

static const sm_param_def tf_params[] = {
    {"threshold", SM_PARAM_FLOAT, "0.95", 0, 1, NULL,
     "phase 1 keeps v when (1 + p_1 + ... + p_n) / (n + 1) exceeds this"},
    {"probe_len", SM_PARAM_INT, "3", 1, TF_MAX_PROBE, NULL, "phase 1: greedy tokens per v"},
    {"cont_len", SM_PARAM_INT, "50", 1, 4096, NULL, "phase 2: greedy continuation length"},
    {"ngram", SM_PARAM_INT, "3", 2, 64, NULL,
     "phase 2: v is suspicious when an n-gram this long occurs twice in v ++ c"},
    {"p1_max", SM_PARAM_FLOAT, "0.99", 0, 1, NULL, "... or when p_1 exceeds this"},
    {"batch", SM_PARAM_INT, "64", 1, 4096, NULL, "prompts decoded together"},
};
static const char *const tf_data[] = {"heldout", NULL};

/* ---- the scan ---- */

/* Phase 1's recorder: greedy, and the probability of every chosen token. */
typedef struct tf_recorder {
    int plen;           /* prompt length (1 or 2) */
    int steps;
    double *p;          /* [batch, steps] */
} tf_recorder;

static int tf_record(void *ctx, int seq, const int32_t *hist, int n, float *logits, int V,
                     int32_t *token, lm_err *err) {
    tf_recorder *r = ctx;
    int32_t best = lm_argmax(logits, V);
    double s = 0;
    for (int i = 0; i < V; i++) s += exp((double)logits[i] - logits[best]);
    int step = n - r->plen;
    if (step < 0 || step >= r->steps) return lm_errf(err, "token forcing: step %d of %d", step, r->steps);
    r->p[(size_t)seq * r->steps + step] = 1.0 / s;
    *token = best;
    return 0;
}

typedef struct tf_kept {
    int32_t v;
    double score, p[TF_MAX_PROBE];
    int32_t *cont;
    int n_cont;
    int repeat, confident;
} tf_kept;

static int has_repeat(const int32_t *s, int n, int g) {
    for (int i = 0; i + g <= n; i++)
        for (int j = i + 1; j + g <= n; j++)
            if (!memcmp(s + i, s + j, (size_t)g * sizeof *s)) return 1;
    return 0;
}

static int scannable(const lm_tokenizer *tok, const lm_config *c, int v) {
    if (tok && v < tok->n_vocab) {
        int t = tok->types[v];
        return t == LM_TOKEN_NORMAL || t == LM_TOKEN_USER || t == LM_TOKEN_BYTE;
    }
    if (tok) return 0; /* ids past the tokenizer are never produced */
    return v != c->bos_id && v != c->eos_id && v != c->pad_id;
}

static double seconds_now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec * 1e-9;
}

/* Valid UTF-8 for JSON: bytes that do not form a character become U+FFFD. */
static char *utf8_clean(const char *s, size_t n) {
    char *o = malloc(3 * n + 1), *w = o;
    if (!o) return NULL;
    for (size_t i = 0; i < n;) {
        unsigned char c = (unsigned char)s[i];
        int len = c < 0x80 ? 1 : (c >> 5) == 6 ? 2 : (c >> 4) == 14 ? 3 : (c >> 3) == 30 ? 4 : 0;
        int ok = len > 0 && i + (size_t)len <= n && !(len == 1 && c == 0);
        for (int k = 1; ok && k < len; k++) ok = ((unsigned char)s[i + k] >> 6) == 2;
        if (ok) {
            memcpy(w, s + i, (size_t)len);
            w += len;
            i += (size_t)len;
        } else {
            memcpy(w, "\xef\xbf\xbd", 3);
            w += 3;
            i++;
        }
    }
    *w = 0;
    return o;
}

/* Share of the text's adjacent token pairs that the ban list blocks. */
static int blocked_share(const sm_data *d, const lm_tokenizer *tok, const int32_t (*ban)[2],
                         int n_ban, double *share, long *pairs, lm_err *err) {
    ds_format fmt = DS_FMT_AUTO;
    if (d->format && ds_format_parse(d->format, &fmt, err)) return -1;
    ds_dataset ds;
    if (ds_load(d->path, fmt, &ds, err)) return -1;
    int rc = 0;
    long total = 0, hit = 0;
    for (int i = 0; rc == 0 && i < ds.n; i++) {
        const char *text = ds.kind == DS_KIND_TEXT ? ds.docs[i].text
                           : ds.kind == DS_KIND_QA ? ds.qa[i].answer : NULL;
        if (!text) {
            rc = lm_errf(err, "%s: the utility proxy needs text, not %s", d->path, ds_format_name(ds.format));
            break;
        }
        int *ids = NULL, n = 0;
        rc = lm_tokenizer_encode(tok, text, strlen(text), LM_TOK_DEFAULT, &ids, &n, err);
        for (int k = 0; rc == 0 && k + 1 < n; k++) {
            total++;
            for (int b = 0; b < n_ban; b++)
                if (ban[b][0] == ids[k] && ban[b][1] == ids[k + 1]) {
                    hit++;
                    break;
                }
        }
        free(ids);
    }
    ds_free(&ds);
    *share = total ? (double)hit / total : 0.0;
    *pairs = total;
    return rc;
}

/* The model's tokenizer if it has one: one the caller passed must load. */
static int load_tokenizer(const sm_input *in, lm_tokenizer *tok, int *have, lm_err *err) {
    *have = 0;
    lm_err ignored;
    if (sm_input_data(in, "tokenizer")) {
        if (qt_load_tokenizer(in, tok, err)) return -1;
    } else if (qt_load_tokenizer(in, tok, &ignored)) {
        return 0;
    }
    *have = 1;
    return 0;
}

static int tf_run(const sm_input *in, lm_err *err) {
    const sm_params *p = in->params;
    lm_model *m = in->model;
    int V = m->cfg.vocab_size;
    int probe = (int)sm_param_int(p, "probe_len"), cont_len = (int)sm_param_int(p, "cont_len");
    int ngram = (int)sm_param_int(p, "ngram"), batch = (int)sm_param_int(p, "batch");
    double threshold = sm_param_float(p, "threshold"), p1_max = sm_param_float(p, "p1_max");
    lm_tokenizer tok;
    int have_tok;
    if (load_tokenizer(in, &tok, &have_tok, err))
        return lm_err_prefix(err, "token-forcing: ");
    if (have_tok && tok.n_vocab > V) {
        lm_tokenizer_free(&tok);
        return lm_errf(err, "token-forcing: the tokenizer has %d tokens, the model %d", tok.n_vocab, V);
    }
    int bos = m->cfg.bos_id >= 0 ? m->cfg.bos_id : have_tok ? tok.bos_id : -1;
    int eos = m->cfg.eos_id >= 0 ? m->cfg.eos_id : have_tok ? tok.eos_id : -1;
    int plen = bos >= 0 ? 2 : 1;
    if (plen + probe > m->cfg.max_pos || plen + cont_len > m->cfg.max_pos + 1) {
        if (have_tok) lm_tokenizer_free(&tok);
        return lm_errf(err, "token-forcing: probe_len %d / cont_len %d exceed the model's context of %d",
                       probe, cont_len, m->cfg.max_pos);
    }
    int32_t *cand = malloc((size_t)V * sizeof *cand);
    tf_kept *kept = calloc((size_t)V, sizeof *kept);
    int32_t(*prompts)[2] = malloc((size_t)batch * sizeof *prompts);
    const int32_t **pp = malloc((size_t)batch * sizeof *pp);
    int *lens = malloc((size_t)batch * sizeof *lens), *nout = malloc((size_t)batch * sizeof *nout);
    int32_t **outs = calloc((size_t)batch, sizeof *outs);
    tf_recorder rec = {plen, probe, malloc((size_t)batch * probe * sizeof(double))};
    int rc = (!cand || !kept || !prompts || !pp || !lens || !nout || !outs || !rec.p)
                 ? lm_errf(err, "out of memory") : 0;
    int n_cand = 0, n_kept = 0;
    for (int v = 0; rc == 0 && v < V; v++)
        if (scannable(have_tok ? &tok : NULL, &m->cfg, v)) cand[n_cand++] = v;
    double t0 = seconds_now();

    /* phase 1 */
    lm_decode_policy recorder = {&rec, tf_record};
    lm_gen_opts g1 = {.max_new = probe, .eos_id = -1, .stop_at_eos = 0, .policy = &recorder};
    lm_sampler_init(&g1.sampler, 0.0f, 0, 1.0f, 0);
    for (int b0 = 0; rc == 0 && b0 < n_cand; b0 += batch) {
        int nb = n_cand - b0 < batch ? n_cand - b0 : batch;
        for (int j = 0; j < nb; j++) {
            prompts[j][0] = bos >= 0 ? bos : cand[b0 + j];
            prompts[j][1] = cand[b0 + j];
            pp[j] = prompts[j] + (bos >= 0 ? 0 : 1);
            lens[j] = plen;
        }
        rc = lm_generate(m, pp, lens, nb, &g1, outs, nout, err);
        for (int j = 0; rc == 0 && j < nb; j++) {
            double sum = 1.0;
            for (int i = 0; i < probe; i++) sum += rec.p[(size_t)j * probe + i];
            double score = sum / (probe + 1);
            if (score > threshold && nout[j] == probe) {
                tf_kept *k = &kept[n_kept++];
                k->v = cand[b0 + j];
                k->score = score;
                memcpy(k->p, rec.p + (size_t)j * probe, (size_t)probe * sizeof(double));
            }
            free(outs[j]);
            outs[j] = NULL;
        }
        in->rep->progress(in->rep->ctx, 0.8 * (b0 + nb) / n_cand, "phase 1: single-token prompts");
    }
    double t1 = seconds_now();
    in->rep->cost(in->rep->ctx, "token forcing phase 1", t1 - t0, (double)n_cand * (plen + probe),
                  2.0 * (double)lm_model_param_count(m) * n_cand * (plen + probe));

    /* phase 2 */
    lm_gen_opts g2 = {.max_new = cont_len, .eos_id = eos, .stop_at_eos = eos >= 0};
    lm_sampler_init(&g2.sampler, 0.0f, 0, 1.0f, 0);
    double cont_tokens = 0;
    for (int b0 = 0; rc == 0 && b0 < n_kept; b0 += batch) {
        int nb = n_kept - b0 < batch ? n_kept - b0 : batch;
        for (int j = 0; j < nb; j++) {
            prompts[j][0] = bos >= 0 ? bos : kept[b0 + j].v;
            prompts[j][1] = kept[b0 + j].v;
            pp[j] = prompts[j] + (bos >= 0 ? 0 : 1);
            lens[j] = plen;
        }
        rc = lm_generate(m, pp, lens, nb, &g2, outs, nout, err);
        for (int j = 0; rc == 0 && j < nb; j++) {
            tf_kept *k = &kept[b0 + j];
            k->cont = outs[j];
            k->n_cont = nout[j];
            outs[j] = NULL;
            cont_tokens += nout[j];
            int32_t *s = malloc(((size_t)k->n_cont + 1) * sizeof *s);
            if (!s) {
                rc = lm_errf(err, "out of memory");
                break;
            }
            s[0] = k->v;
            memcpy(s + 1, k->cont, (size_t)k->n_cont * sizeof *s);
            k->repeat = has_repeat(s, k->n_cont + 1, ngram);
            k->confident = k->p[0] > p1_max;
            free(s);
        }
        in->rep->progress(in->rep->ctx, 0.8 + 0.15 * (b0 + nb) / (n_kept ? n_kept : 1),
                          "phase 2: continuations");
    }
    double t2 = seconds_now();
    in->rep->cost(in->rep->ctx, "token forcing phase 2", t2 - t1, cont_tokens + (double)n_kept * plen,
                  2.0 * (double)lm_model_param_count(m) * (cont_tokens + (double)n_kept * plen));

    /* the ban list and policy.json */
    int32_t(*ban)[2] = malloc(((size_t)n_kept + 1) * sizeof *ban);
    int n_ban = 0;
    if (rc == 0 && !ban) rc = lm_errf(err, "out of memory");
    for (int i = 0; rc == 0 && i < n_kept; i++)
        if ((kept[i].repeat || kept[i].confident) && kept[i].n_cont > 0) {
            ban[n_ban][0] = kept[i].v;
            ban[n_ban][1] = kept[i].cont[0];
            n_ban++;
        }
    double share = 0;
    long pairs = 0;
    const sm_data *ppl = sm_input_data(in, "heldout");
    if (rc == 0 && ppl) {
        if (!have_tok) rc = lm_errf(err, "the utility proxy on '%s' needs the model's tokenizer: pass --tokenizer FILE", ppl->path);
        else rc = blocked_share(ppl, &tok, (const int32_t(*)[2])ban, n_ban, &share, &pairs, err);
    }
    cJSON *o = rc == 0 ? cJSON_CreateObject() : NULL;
    if (rc == 0 && !o) rc = lm_errf(err, "out of memory");
    if (rc == 0) {
        cJSON_AddStringToObject(o, "method", "token-forcing");
        cJSON_AddNumberToObject(o, "bos", bos);
        cJSON_AddNumberToObject(o, "threshold", threshold);
        cJSON_AddNumberToObject(o, "probe_len", probe);
        cJSON_AddNumberToObject(o, "cont_len", cont_len);
        cJSON_AddNumberToObject(o, "scanned", n_cand);
        cJSON_AddNumberToObject(o, "n_kept", n_kept);
        cJSON_AddNumberToObject(o, "n_banned", n_ban);
        cJSON_AddNumberToObject(o, "scan_seconds", t2 - t0);
        if (ppl) {
            cJSON_AddNumberToObject(o, "blocked_bigram_share", share);
            cJSON_AddNumberToObject(o, "bigrams", (double)pairs);
            cJSON_AddStringToObject(o, "bigram_text", ppl->path);
        }
        cJSON *bl = cJSON_AddArrayToObject(o, "banned");
        for (int i = 0; i < n_ban; i++) {
            int pair[2] = {ban[i][0], ban[i][1]};
            cJSON_AddItemToArray(bl, cJSON_CreateIntArray(pair, 2));
        }
        cJSON *kl = cJSON_AddArrayToObject(o, "kept");
        for (int i = 0; i < n_kept; i++) {
            const tf_kept *k = &kept[i];
            cJSON *e = cJSON_CreateObject();
            cJSON_AddNumberToObject(e, "token", k->v);
            cJSON_AddNumberToObject(e, "score", k->score);
            cJSON_AddItemToObject(e, "p", cJSON_CreateDoubleArray(k->p, probe));
            cJSON_AddItemToObject(e, "continuation", cJSON_CreateIntArray((const int *)k->cont, k->n_cont));
            cJSON_AddBoolToObject(e, "repeat", k->repeat);
            cJSON_AddBoolToObject(e, "confident", k->confident);
            if (have_tok) {
                int32_t *s = malloc(((size_t)k->n_cont + 1) * sizeof *s);
                char *text = NULL;
                size_t len = 0;
                if (s) {
                    s[0] = k->v;
                    memcpy(s + 1, k->cont, (size_t)k->n_cont * sizeof *s);
                    lm_err ignored;
                    if (lm_tokenizer_decode(&tok, s, k->n_cont + 1, 0, &text, &len, &ignored) == 0) {
                        char *clean = utf8_clean(text, len);
                        if (clean) cJSON_AddStringToObject(e, "text", clean);
                        free(clean);
                    }
                }
                free(text);
                free(s);
            }
            cJSON_AddItemToArray(kl, e);
        }
        char *text = cJSON_Print(o);
        mkdir(in->out_dir, 0755);
        char path[4200];
        snprintf(path, sizeof path, "%s/policy.json", in->out_dir);
        FILE *f = text ? fopen(path, "w") : NULL;
        if (!f) rc = lm_errf(err, "cannot write %s: %s", path, text ? strerror(errno) : "out of memory");
        else {
            if (fputs(text, f) < 0 || fputc('\n', f) < 0) rc = lm_errf(err, "cannot write %s", path);
            if (fclose(f) && rc == 0) rc = lm_errf(err, "cannot write %s", path);
        }
        free(text);
        cJSON_Delete(o);
    }
    for (int i = 0; kept && i < n_kept; i++) free(kept[i].cont);
    for (int j = 0; outs && j < batch; j++) free(outs[j]);
    free(ban);
    free(kept);
    free(cand);
    free(prompts);
    free(pp);
    free(lens);
    free(nout);
    free(outs);
    free(rec.p);
    if (have_tok) lm_tokenizer_free(&tok);
    if (rc) return lm_err_prefix(err, "token-forcing: ");
    in->rep->progress(in->rep->ctx, 1.0, "policy written");
    return 0;
}

/* ---- avoidance decoding ---- */

typedef struct tf_policy {
    int32_t (*ban)[2];      /* sorted by (v, c_1) */
    int n;
} tf_policy;

static int by_pair(const void *a, const void *b) {
    const int32_t *x = a, *y = b;
    if (x[0] != y[0]) return x[0] < y[0] ? -1 : 1;
    return (x[1] > y[1]) - (x[1] < y[1]);
}

static int tf_adjust(void *ctx, int seq, const int32_t *hist, int n, float *logits, int V,
                     int32_t *token, lm_err *err) {
    const tf_policy *P = ctx;
    if (n < 1) return 0;
    int32_t prev = hist[n - 1];
    int lo = 0, hi = P->n; /* first pair with v >= prev */
    while (lo < hi) {
        int mid = (lo + hi) / 2;
        if (P->ban[mid][0] < prev) lo = mid + 1;
        else hi = mid;
    }
    for (int i = lo; i < P->n && P->ban[i][0] == prev; i++)
        if (P->ban[i][1] < V) logits[P->ban[i][1]] = -INFINITY;
    return 0;
}

static void tf_free_policy(lm_decode_policy *pol) {
    tf_policy *P = pol->ctx;
    if (P) free(P->ban);
    free(P);
    pol->ctx = NULL;
    pol->adjust = NULL;
}

static int tf_build_policy(const char *dir, lm_model *model, lm_decode_policy *pol, lm_err *err) {
    char path[4200], *text = NULL;
    size_t len;
    snprintf(path, sizeof path, "%s/policy.json", dir);
    if (lm_tok_read_file(path, &text, &len, err)) return -1;
    cJSON *o = cJSON_ParseWithLength(text, len);
    free(text);
    if (!o) return lm_errf(err, "%s: not JSON", path);
    const cJSON *bl = cJSON_GetObjectItemCaseSensitive(o, "banned");
    int rc = 0, n = cJSON_IsArray(bl) ? cJSON_GetArraySize(bl) : -1;
    if (n < 0) rc = lm_errf(err, "%s: field 'banned' missing or not an array", path);
    tf_policy *P = rc == 0 ? calloc(1, sizeof *P) : NULL;
    if (rc == 0 && (!P || !(P->ban = malloc(((size_t)n + 1) * sizeof *P->ban))))
        rc = lm_errf(err, "out of memory");
    int i = 0;
    const cJSON *e;
    if (rc == 0)
        cJSON_ArrayForEach(e, bl) {
            const cJSON *a = cJSON_GetArrayItem(e, 0), *b = cJSON_GetArrayItem(e, 1);
            int V = model->cfg.vocab_size;
            if (!cJSON_IsArray(e) || cJSON_GetArraySize(e) != 2 || !cJSON_IsNumber(a) || !cJSON_IsNumber(b) ||
                a->valuedouble < 0 || a->valuedouble >= V || b->valuedouble < 0 || b->valuedouble >= V ||
                a->valuedouble != floor(a->valuedouble) || b->valuedouble != floor(b->valuedouble)) {
                rc = lm_errf(err, "%s: banned[%d] is not a pair of token ids below %d", path, i, V);
                break;
            }
            P->ban[i][0] = (int32_t)a->valuedouble;
            P->ban[i][1] = (int32_t)b->valuedouble;
            i++;
        }
    cJSON_Delete(o);
    if (rc) {
        if (P) free(P->ban);
        free(P);
        return -1;
    }
    P->n = n;
    qsort(P->ban, (size_t)n, sizeof *P->ban, by_pair);
    pol->ctx = P;
    pol->adjust = tf_adjust;
    return 0;
}

const sm_method sm_method_token_forcing = {
    .abi = SM_METHOD_ABI,
    .name = "token-forcing",
    .description = "token forcing: scan single-token prompts for forced, repeating "
                   "continuations and ban their first bigram at decoding",
    .params = tf_params,
    .n_params = sizeof tf_params / sizeof tf_params[0],
    .wants_data = tf_data,
    .output = SM_OUT_POLICY,
    .run = tf_run,
    .build_policy = tf_build_policy,
    .free_policy = tf_free_policy,
};
