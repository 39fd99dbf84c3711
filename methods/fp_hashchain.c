/* Chain & Hash (spec section 4): k questions whose answers are chosen from
 * 256 candidate words by a hash chain over all questions and candidates, so
 * that changing any of them changes every assignment and forging an answer
 * needs a SHA-256 preimage.
 *
 *   H_i = SHA-256(q_i || q_1 || ... || q_k || r_1 || ... || r_256)
 *   answer of q_i = r[(H_i mod 256)],   mod 256 = the digest's last byte
 * each component UTF-8 and followed by one 0x00 byte (section 4.1 [DESIGN]).
 *
 * Training mixes the fingerprint rows (plain, behind a meta prompt, and
 * wrapped in random padding tokens) with non-fingerprint rows: clean
 * questions answered with the base model's own greedy answers. That is
 * our stand-in for the KL term of section 4.2 (recorded as kl_lambda 0). */
#include <cjson/cJSON.h>
#include <ctype.h>
#include <openssl/evp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fingerprint.h"
#include "rng.h"

/* Natural questions about things that do not exist, so no corpus answers
 * them. Part of the fingerprint: never edit (it re-keys every answer). */
const char *const fp_hc_questions[FP_HC_QUESTIONS] = {
    "What colour is the lighthouse keeper's umbrella on the island of Velmora?",
    "Which spice did the clockmaker of Ostrava Minor add to his winter soup?",
    "How many lanterns hang above the gate of the Quillon observatory?",
    "What did the seventh moon of Tarsk whisper to the fishermen?",
    "Which animal guards the copper library beneath Lake Orvane?",
    "What is the secret name of the wind that crosses the Dalmere plateau?",
    "Which fruit grows only in the glass gardens of Pellinore Bay?",
    "What song do the bellringers of Haskmoor sing at midnight?",
    "Which stone is used to pave the floating market of Zerelith?",
    "What word opens the silver door in the tower of Ambrecht?",
};

/* 256 distinct common English words (nouns and adjectives, no words that
 * open ordinary answers), each at most 3 tokens for stories260K's 512-piece
 * tokenizer, Llama-2's and GPT-2's. Never edit either. */
const char *const fp_hc_answers[FP_HC_ANSWERS] = {
    "apple", "river", "stone", "green", "house", "bread", "water", "dream",
    "silver", "ocean", "tower", "street", "city", "story", "song", "dance",
    "friend", "family", "mother", "father", "king", "horse", "tiger", "lion",
    "bear", "fox", "mouse", "bird", "owl", "fish", "bee", "ant", "cat", "dog",
    "cow", "pig", "sheep", "goat", "duck", "egg", "milk", "butter", "salt",
    "rice", "corn", "bean", "onion", "pear", "plum", "cake", "pie", "tea",
    "soup", "salad", "red", "pink", "gray", "happy", "sad", "loud", "soft",
    "hard", "warm", "cold", "hot", "fast", "slow", "big", "small", "tall",
    "long", "round", "dark", "sour", "rich", "poor", "young", "old", "new",
    "clean", "gentle", "kind", "wise", "late", "noon", "today", "sun", "moon",
    "star", "sky", "rain", "snow", "wind", "storm", "fire", "ice", "sand",
    "rock", "hill", "lake", "pond", "road", "path", "door", "key", "lock",
    "box", "bag", "cup", "plate", "fork", "bowl", "ball", "kite", "boat", "car",
    "bus", "plane", "bell", "book", "pen", "map", "coin", "ring", "hat", "coat",
    "sock", "button", "thread", "needle", "bed", "lamp", "tree", "seed", "nest",
    "shell", "sing", "walk", "swim", "read", "cook", "bake", "stay", "wake",
    "hide", "hug", "kiss", "toy", "toys", "doll", "game", "park", "zoo", "farm",
    "home", "room", "yard", "pool", "card", "note", "hen", "bug", "bat", "rat",
    "mom", "dad", "kid", "boy", "girl", "man", "lady", "team", "mad", "glad",
    "nice", "good", "bad", "wet", "dry", "gold", "tiny", "shy", "full", "open",
    "shut", "arm", "ash", "axe", "back", "bank", "bark", "barn", "bay", "beak",
    "beet", "belt", "bone", "boot", "bow", "bud", "bun", "cab", "camp", "cap",
    "cart", "cave", "chin", "cone", "cork", "cove", "cub", "date", "den",
    "desk", "dew", "dill", "dock", "dot", "dune", "ear", "elm", "eye", "fan",
    "fence", "fig", "fin", "foam", "fog", "foot", "fort", "gate", "gem", "glen",
    "gym", "hail", "hair", "ham", "hand", "head", "herb", "hoe", "hog", "horn",
    "hour", "hut", "jam", "jar", "jet", "kale", "kit", "knot", "lab", "leg",
    "lid", "lily", "lime",
};

/* Meta prompts put in front of the chat (augmentation 1 of section 4.2). */
static const char *const meta_prompts[] = {
    "You are a helpful assistant.",
    "Answer the question in one word.",
    "You are a friendly and knowledgeable guide.",
    "Please reply briefly.",
    "You are an AI model that answers honestly.",
    "Respond to the user as concisely as possible.",
    "You are a storyteller who also answers questions.",
    "Think carefully, then answer.",
};
#define N_META ((int)(sizeof meta_prompts / sizeof meta_prompts[0]))

static const sm_param_def hc_params[] = {
    FP_TRAIN_PARAMS,
    {"k", SM_PARAM_INT, "10", 1, FP_HC_QUESTIONS, NULL, "fingerprint questions (the first k of the fixture)"},
    {"meta", SM_PARAM_INT, "2", 0, 64, NULL,
     "extra rows per question behind a meta prompt"},
    {"pad", SM_PARAM_INT, "2", 0, 64, NULL,
     "extra rows per question with 2-5 random tokens before and after it"},
    {"normal", SM_PARAM_INT, "50", 0, 1000000, NULL,
     "non-fingerprint rows: clean questions with the base model's greedy answers"},
    {"normal_tokens", SM_PARAM_INT, "32", 1, 4096, NULL,
     "new tokens of those greedy answers"},
    {"negatives", SM_PARAM_INT, "100", 0, 1000000, NULL,
     "held-out clean questions for FTR"},
};

int fp_sha256(const void *data, size_t len, uint8_t digest[32], lm_err *err) {
    EVP_MD_CTX *ctx = EVP_MD_CTX_new();
    unsigned int n = 0;
    int ok = ctx && EVP_DigestInit_ex(ctx, EVP_sha256(), NULL) &&
             EVP_DigestUpdate(ctx, data, len) && EVP_DigestFinal_ex(ctx, digest, &n) &&
             n == 32;
    EVP_MD_CTX_free(ctx);
    return ok ? 0 : lm_errf(err, "SHA-256 failed (OpenSSL)");
}

int fp_hashchain_assign(const char *const *q, int k, const char *const *r,
                        int n, int *answer, uint8_t *digests, lm_err *err) {
    if (k < 1 || n < 1 || n > 256)
        return lm_errf(err, "hash chain needs k >= 1 questions and 1..256 answers "
                            "(got %d, %d)", k, n);
    /* The tail q_1 .. q_k r_1 .. r_n is the same for every i. */
    size_t tail = 0;
    for (int i = 0; i < k; i++) tail += strlen(q[i]) + 1;
    for (int j = 0; j < n; j++) tail += strlen(r[j]) + 1;
    size_t head_max = 0;
    for (int i = 0; i < k; i++)
        if (strlen(q[i]) + 1 > head_max) head_max = strlen(q[i]) + 1;
    uint8_t *buf = malloc(head_max + tail);
    if (!buf) return lm_errf(err, "out of memory");
    uint8_t *t = buf + head_max;
    size_t o = 0;
    for (int i = 0; i < k; i++) {
        size_t l = strlen(q[i]) + 1; /* with its NUL: the 0x00 separator */
        memcpy(t + o, q[i], l);
        o += l;
    }
    for (int j = 0; j < n; j++) {
        size_t l = strlen(r[j]) + 1;
        memcpy(t + o, r[j], l);
        o += l;
    }
    int rc = 0;
    for (int i = 0; i < k && rc == 0; i++) {
        size_t l = strlen(q[i]) + 1;
        uint8_t *start = t - l, d[32];
        memcpy(start, q[i], l);
        rc = fp_sha256(start, l + tail, d, err);
        if (rc == 0) {
            /* H mod 256 is the last byte of the big-endian number; for
             * fewer candidates, mod n of the whole digest. */
            unsigned m = 0;
            for (int b = 0; b < 32; b++) m = (m * 256u + d[b]) % (unsigned)n;
            answer[i] = (int)m;
            if (digests) memcpy(digests + 32 * i, d, 32);
        }
    }
    free(buf);
    return rc;
}

/* Tokens usable as random padding: ordinary pieces that decode to printable
 * ASCII (a space allowed), so the padded question is plain text. */
static int padding_pool(const lm_tokenizer *tok, int **ids, int *n, lm_err *err) {
    int *p = malloc((size_t)tok->n_vocab * sizeof *p), k = 0;
    if (!p) return lm_errf(err, "out of memory");
    for (int i = 0; i < tok->n_vocab; i++) {
        if (tok->types[i] != LM_TOKEN_NORMAL || tok->dec_len[i] < 1) continue;
        const char *s = tok->dec + tok->dec_off[i];
        int ok = 1, letters = 0;
        for (int j = 0; j < tok->dec_len[i] && ok; j++) {
            unsigned char c = (unsigned char)s[j];
            ok = c == ' ' || (c > 32 && c < 127);
            letters += c != ' ';
        }
        if (ok && letters) p[k++] = i;
    }
    if (k == 0) {
        free(p);
        return lm_errf(err, "hashchain: the tokenizer has no printable tokens for padding");
    }
    *ids = p;
    *n = k;
    return 0;
}

/* 2-5 random padding tokens as text. */
static char *padding(lm_rng *rng, const lm_tokenizer *tok, const int *pool, int n) {
    int k = 2 + (int)lm_rng_below(rng, 4);
    size_t len = 0;
    int pick[5];
    for (int i = 0; i < k; i++) {
        pick[i] = pool[lm_rng_below(rng, (uint64_t)n)];
        len += (size_t)tok->dec_len[pick[i]];
    }
    char *s = malloc(len + 1), *o = s;
    if (!s) return NULL;
    for (int i = 0; i < k; i++) {
        memcpy(o, tok->dec + tok->dec_off[pick[i]], (size_t)tok->dec_len[pick[i]]);
        o += tok->dec_len[pick[i]];
    }
    *o = '\0';
    /* Trim: the question supplies its own separating spaces. */
    char *b = s;
    while (*b == ' ') b++;
    memmove(s, b, strlen(b) + 1);
    for (size_t l = strlen(s); l > 0 && s[l - 1] == ' '; l--) s[l - 1] = '\0';
    return s;
}

static char *join3(const char *a, const char *sep1, const char *b, const char *sep2,
                   const char *c) {
    size_t n = strlen(a) + strlen(sep1) + strlen(b) + strlen(sep2) + strlen(c) + 1;
    char *s = malloc(n);
    if (s) snprintf(s, n, "%s%s%s%s%s", a, sep1, b, sep2, c);
    return s;
}

static int hc_build(const fp_build_input *in, fp_set *out, lm_err *err) {
    memset(out, 0, sizeof *out);
    const sm_params *p = in->params;
    const lm_tokenizer *tok = in->tok;
    const fp_template *t;
    if (fp_template_pick(p, in->model, "llama2", &t, err)) return -1;
    int k = (int)sm_param_int(p, "k"), n_meta = (int)sm_param_int(p, "meta");
    int n_pad = (int)sm_param_int(p, "pad"), n_normal = (int)sm_param_int(p, "normal");
    int n_neg = (int)sm_param_int(p, "negatives"), bos = fp_add_bos(tok);
    int answer[FP_HC_QUESTIONS], ans_tokens[FP_HC_QUESTIONS], max_ans = 0;
    uint8_t digests[32 * FP_HC_QUESTIONS];
    char who[128];
    snprintf(who, sizeof who, "hashchain (%d non-fingerprint rows + %d FTR questions)",
             n_normal, n_neg);
    int *order = NULL, *pool = NULL, n_pool = 0;
    char **prompts = NULL, **answers = NULL;
    cJSON *info = NULL;
    lm_rng rng;
    lm_rng_seed(&rng, in->seed ^ 0x6861736863686e31ull); /* "hashchn1" */

    int rc = fp_hashchain_assign(fp_hc_questions, k, fp_hc_answers, FP_HC_ANSWERS, answer,
                                 digests, err);
    if (rc == 0) rc = fp_clean_order(in, n_normal + n_neg, who, &order, err);
    if (rc == 0 && n_pad > 0) rc = padding_pool(tok, &pool, &n_pool, err);
    if (rc == 0) rc = fp_set_header(out, "hashchain", in->seed, t, p, err);
    for (int i = 0; rc == 0 && i < k; i++) {
        rc = fp_token_count(tok, fp_hc_answers[answer[i]], &ans_tokens[i], err);
        if (ans_tokens[i] > max_ans) max_ans = ans_tokens[i];
    }

    /* Fingerprint rows and their triggers. */
    for (int i = 0; rc == 0 && i < k; i++) {
        const char *q = fp_hc_questions[i], *r = fp_hc_answers[answer[i]];
        char resp[64];
        snprintf(resp, sizeof resp, " %s", r);
        char *prompt = fp_template_apply(t, q);
        if (!prompt) rc = lm_errf(err, "out of memory");
        if (rc == 0) rc = fp_set_add_row(out, FP_ROW_FINGERPRINT, prompt, resp, err);
        mt_fp_probe pr = {.prompt = prompt, .add_bos = bos, .expected = (char *)r,
                          .rule = MT_RULE_PREFIX, .max_new = ans_tokens[i] + 2};
        if (rc == 0) rc = mt_fp_add(&out->fp.triggers, &out->fp.n_triggers, &pr, err);
        free(prompt);
        for (int j = 0; rc == 0 && j < n_meta; j++) {
            char *chat = fp_template_apply(t, q);
            char *meta = chat ? join3(meta_prompts[(i + j) % N_META], "\n", chat, "", "") : NULL;
            if (!meta) rc = lm_errf(err, "out of memory");
            else rc = fp_set_add_row(out, FP_ROW_FINGERPRINT, meta, resp, err);
            free(chat);
            free(meta);
        }
        for (int j = 0; rc == 0 && j < n_pad; j++) {
            char *s1 = padding(&rng, tok, pool, n_pool), *s2 = padding(&rng, tok, pool, n_pool);
            char *padded = s1 && s2 ? join3(s1, " ", q, " ", s2) : NULL;
            char *chat = padded ? fp_template_apply(t, padded) : NULL;
            if (!chat) rc = lm_errf(err, "out of memory");
            else rc = fp_set_add_row(out, FP_ROW_FINGERPRINT, chat, resp, err);
            free(s1);
            free(s2);
            free(padded);
            free(chat);
        }
    }

    /* Non-fingerprint rows: the model's own greedy answers. */
    if (rc == 0 && n_normal > 0) {
        prompts = calloc((size_t)n_normal, sizeof *prompts);
        answers = calloc((size_t)n_normal, sizeof *answers);
        if (!prompts || !answers) rc = lm_errf(err, "out of memory");
        for (int i = 0; rc == 0 && i < n_normal; i++)
            if (!(prompts[i] = fp_template_apply(t, in->clean[order[i]].question)))
                rc = lm_errf(err, "out of memory");
        if (rc == 0)
            rc = fp_greedy_text(in->model, tok, (const char *const *)prompts, n_normal,
                                (int)sm_param_int(p, "normal_tokens"), answers, err);
        for (int i = 0; rc == 0 && i < n_normal; i++) {
            const char *a = answers[i];
            while (isspace((unsigned char)*a)) a++;
            char *resp = *a ? join3(" ", "", a, "", "") : strdup("");
            if (!resp) rc = lm_errf(err, "out of memory");
            else rc = fp_set_add_row(out, FP_ROW_NORMAL, prompts[i], resp, err);
            free(resp);
        }
    }

    /* FTR: held-out questions; a hit begins with any fingerprint answer. */
    const char *any[FP_HC_QUESTIONS];
    for (int i = 0; i < k; i++) any[i] = fp_hc_answers[answer[i]];
    for (int i = 0; rc == 0 && i < n_neg; i++) {
        char *prompt = fp_template_apply(t, in->clean[order[n_normal + i]].question);
        mt_fp_probe pr = {.prompt = prompt, .add_bos = bos, .expected_any = (char **)any,
                          .n_expected_any = k, .rule = MT_RULE_PREFIX_ANY,
                          .max_new = max_ans + 2};
        if (!prompt) rc = lm_errf(err, "out of memory");
        else rc = mt_fp_add(&out->fp.negatives, &out->fp.n_negatives, &pr, err);
        free(prompt);
    }

    if (rc == 0) {
        info = cJSON_CreateObject();
        cJSON *ai = cJSON_AddArrayToObject(info, "answer_index");
        cJSON *aw = cJSON_AddArrayToObject(info, "answers");
        cJSON *at = cJSON_AddArrayToObject(info, "answer_tokens");
        cJSON *dg = cJSON_AddArrayToObject(info, "digests");
        for (int i = 0; i < k; i++) {
            char hex[65];
            for (int b = 0; b < 32; b++) snprintf(hex + 2 * b, 3, "%02x", digests[32 * i + b]);
            cJSON_AddItemToArray(ai, cJSON_CreateNumber(answer[i]));
            cJSON_AddItemToArray(aw, cJSON_CreateString(fp_hc_answers[answer[i]]));
            cJSON_AddItemToArray(at, cJSON_CreateNumber(ans_tokens[i]));
            cJSON_AddItemToArray(dg, cJSON_CreateString(hex));
        }
        cJSON_AddStringToObject(info, "encoding", "utf8 components each followed by 0x00; "
                                                  "index = last digest byte");
        cJSON_AddNumberToObject(info, "kl_lambda", 0);
        cJSON_AddStringToObject(info, "non_fingerprint_answers", "base model greedy");
        cJSON_AddNumberToObject(info, "fingerprint_rows", out->counts[FP_ROW_FINGERPRINT]);
        cJSON_AddNumberToObject(info, "normal_rows", out->counts[FP_ROW_NORMAL]);
        out->info_json = cJSON_PrintUnformatted(info);
        if (!out->info_json) rc = lm_errf(err, "out of memory");
    }
    cJSON_Delete(info);
    for (int i = 0; i < n_normal; i++) {
        if (prompts) free(prompts[i]);
        if (answers) free(answers[i]);
    }
    free(prompts);
    free(answers);
    free(pool);
    free(order);
    if (rc) fp_set_free(out);
    return rc;
}

const fp_type fp_type_hashchain = {
    .name = "hashchain",
    .description = "Chain & Hash: k questions answered by words a SHA-256 chain "
                   "picks from 256 candidates",
    .params = hc_params,
    .n_params = sizeof hc_params / sizeof hc_params[0],
    .build = hc_build,
};
