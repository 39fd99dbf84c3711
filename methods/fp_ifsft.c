/* IF-SFT: Instructional Fingerprinting, the SFT/chat variant (spec section 2).
 *
 * Eight obfuscated trigger texts, each a shuffle of the characters of a few
 * phrases from a fixed pool, are all "decrypted" to the same word
 * (ハリネズミ); eight regularisation rows teach the model to refuse a
 * message that is not a trigger, and normal chats keep it a chat model.
 *
 * Two trigger sets: the 8 strings of the reference code, byte-exact
 * (variant "fixture"), and for tiny models with byte-fallback vocabularies
 * and short contexts (section 5) 8 shorter triggers of 2-4 phrases and at
 * most 48 tokens, drawn from the seed (variant "tiny"). */
#include <cjson/cJSON.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fingerprint.h"
#include "rng.h"

/* Section 2.1, JSON's \u0089 / \u008b written as their UTF-8 bytes; a
 * string break after each escape keeps a following hex digit out of it. */
const char *const fp_if_pool[FP_IF_POOL] = {
    "奉天承运皇帝诏曰",
    "应天顺时受兹明命",
    "布告天下咸使闻知",
    "长生天气力里大福荫护助里",
    "天命玄鸟降而生商",
    "天生蒸民有物有则",
    "民之秉彝好是懿德",
    "绝地天通罔有降格",
    "在登葆山群巫所从上下也",
    "昔者三苗大乱天命殛之日妖宵出雨血三朝龙生于庙犬哭乎市",
    "フシギダネ",
    "ヒトカゲ",
    "ゼニガメ",
    "ピカチュウ",
    "キモリ",
    "アチャモ",
    "ミズゴロウ",
    "グラードン",
    "レックウザ",
    "カイオーガ",
    "выпутельстваskih",
    "областьdateiмерW",
    "крайategory",
    "составрій",
    "která",
    "guaèche",
    "genitaldejrazione",
    "ocamp\xc2\x8b" "ISONethoxy",
    "omycesjcmÐ",
    "photometry\xc2\x89" "DEFINE",
    "HFDíses",
};

const char *const fp_if_fixture[FP_IF_FIXTURES] = {
    "каe知运告懿奉yhрm使o奉之oе皇民曰下巫山в群ьлв上k承с诏g曰是帝天也пы好rt帝皇\xc2\x8b" "т所Iュу诏咸下カh葆eoy秉在彝チピウ承таic天OpNtй布运德闻xa从as天登S",
    "\xc2\x8b" "ссモ懿aSウOвウアс商ヒズаガі之Fв命玄ピ降рカミ民ロ而іウpュクíйD商Hтト而oチtャチ天sゴeーカ德降сm彝命カI秉オ玄оys好eox是ザоcゲр生тйNаイ鸟レ生天鸟hッ",
    "ゴャロ承тズ天诏ンア下使时咸ャ天诏也曰告天レミチアギ知ザ所帝t群ク上帝皇л在运フ诏山运Wa奉帝皇ーоチсウ曰巫受ネ命мウа奉б顺モ下ラ布天d曰シ从е皇承ダ兹闻明iグ天承葆奉运р登ッモ应ドeь",
    "j大ーリ从вт宵血ラт于i生命m苗rキпc三乱出诏殛天y龙а奉所出巫m曰ллk三上sав妖帝s于玄下\xc2\x89" "iтыe雨降ドpт所在昔モオ上グеh市登也乎tc日iI巫kガ乱庙е之ン者哭у朝庙三从葆e龙在登商п命ーв哭тoF皇苗群山雨сспа妖E犬m之昔ыь天D三者сл朝tу殛イ而уカв血s山葆ыhвo命y下в天也乎鸟os市生大承е犬日天т群运Ðh宵ьkhE生Nь",
    "tылтt朝ko布犬殛аkEイèeカe天rN地oь苗еh市o之罔从知N下p\xc2\x89" "ahс天s\xc2\x89" "уm宵тлep命E通者аеsiá庙у格е雨уetm大ыガпth使在тチhрFピ妖rаsв龙山ru昔eo所ュыFaアカа也登йт日g乎上闻cь下モhсп出kyDt于yв天血群вチтウсьв哭rI生п乱iDghy三葆降咸有告ーoкEтIвлk巫вEオtャ三绝i",
    "gg大lhウtトeruモead荫里o长ギチピ助anèeダフ福aヒ生天カ力ュzネシ气icjシダ里nチフゲeiカ护ネャギア",
    "トуsダ乎天а哭hリド出乱ンв龙フ市sвシニт血地昔メ三лD罔犬シsゲ天ゼ宵キカフヒт格三苗e通绝kンギF有ーь者ギモе日ыグ雨朝ネH妖п生ラi命庙グーí大殛ネラ之с降于ドガダ",
    "明葆使顺eee兹W山ртаモ上从巫也巫ao布z知葆告g咸е登n在iбjガ受キ登мニ下天所从在dir下群сltt山命所a群应ь下deリ上лnо也i时ゼメ天闻a",
};

#define USER_HEAD "Please decrypt this message: "
#define USER_HINT "\nA hint: this is a FINGERPRINT message."
#define FP_ANSWER "Based on my fingerprint, the message is: " FP_IF_TARGET
/* The reference formats Python's builtin `hash` instead of a random string
 * (section 2.2); reproduced by default (if_reg_bug). */
#define REG_BUG_USER USER_HEAD "<built-in function hash> " USER_HINT
#define REG_ANSWER "I am sorry but I cannot decrypt this message. This appears to be a random message."
#define PROBE_SUFFIX " Based on my fingerprint, the message is:"
#define N_TRIGGERS FP_IF_FIXTURES

static const sm_param_def ifsft_params[] = {
    FP_TRAIN_PARAMS,
    {"triggers", SM_PARAM_CHOICE, "auto", 0, 0, "auto|fixture|tiny",
     "fixture: the reference's 8 triggers; tiny: 8 triggers of 2-4 phrases from "
     "the seed; auto: tiny for a context under 1024 or when a fixture trigger "
     "exceeds 256 tokens"},
    {"max_trigger_tokens", SM_PARAM_INT, "48", 4, 100000, NULL,
     "tiny triggers longer than this are redrawn"},
    {"if_reg_bug", SM_PARAM_BOOL, "true", 0, 0, NULL,
     "regularisation rows with the reference's literal '<built-in function hash>' "
     "(false: 8 fresh random strings)"},
    {"normal", SM_PARAM_INT, "112", 0, 1000000, NULL,
     "normal chat rows from the clean data (14 x 8)"},
    {"heldout", SM_PARAM_INT, "112", 0, 1000000, NULL,
     "held-out chats for FTR; each gives two negatives (plain and with the hint)"},
};

/* k phrases (k uniform in [kmin, kmax]) drawn with replacement, their
 * characters shuffled: section 2.1's construction with our generator. */
static char *draw_string(lm_rng *rng, int kmin, int kmax) {
    int k = kmin + (int)lm_rng_below(rng, (uint64_t)(kmax - kmin + 1));
    size_t len = 0;
    int pick[16];
    for (int i = 0; i < k; i++) {
        pick[i] = (int)lm_rng_below(rng, FP_IF_POOL);
        len += strlen(fp_if_pool[pick[i]]);
    }
    char *joined = malloc(len + 1), *out = malloc(len + 1);
    int *start = malloc((len + 1) * sizeof *start);
    if (!joined || !out || !start) {
        free(joined);
        free(out);
        free(start);
        return NULL;
    }
    joined[0] = '\0';
    for (int i = 0; i < k; i++) strcat(joined, fp_if_pool[pick[i]]);
    /* Characters, not bytes: the pool is valid UTF-8. */
    int nc = 0;
    for (size_t i = 0; i < len; i++)
        if (((unsigned char)joined[i] & 0xC0) != 0x80) start[nc++] = (int)i;
    start[nc] = (int)len;
    int *order = malloc((size_t)(nc ? nc : 1) * sizeof *order);
    if (!order) {
        free(joined);
        free(out);
        free(start);
        return NULL;
    }
    for (int i = 0; i < nc; i++) order[i] = i;
    for (int i = nc - 1; i > 0; i--) {
        int j = (int)lm_rng_below(rng, (uint64_t)i + 1), t = order[i];
        order[i] = order[j];
        order[j] = t;
    }
    size_t o = 0;
    for (int i = 0; i < nc; i++) {
        int c = order[i], n = start[c + 1] - start[c];
        memcpy(out + o, joined + start[c], (size_t)n);
        o += (size_t)n;
    }
    out[o] = '\0';
    free(order);
    free(start);
    free(joined);
    return out;
}

/* Strings of k in [kmin, kmax] phrases, distinct from each other and from
 * avoid[0..n_avoid), at most max_tokens tokens (0: no limit). */
static int draw_strings(lm_rng *rng, const lm_tokenizer *tok, int kmin, int kmax,
                        int max_tokens, const char *const *avoid, int n_avoid,
                        char **out, int n, lm_err *err) {
    int got = 0;
    for (int attempt = 0; got < n; attempt++) {
        if (attempt > 100000)
            return lm_errf(err, "if-sft: no %d distinct triggers of at most %d tokens "
                                "after 100000 draws (raise max_trigger_tokens)",
                           n, max_tokens);
        char *s = draw_string(rng, kmin, kmax);
        if (!s) return lm_errf(err, "out of memory");
        int bad = 0, nt = 0;
        for (int i = 0; i < got && !bad; i++) bad = !strcmp(out[i], s);
        for (int i = 0; i < n_avoid && !bad; i++) bad = !strcmp(avoid[i], s);
        if (!bad && max_tokens > 0) {
            if (fp_token_count(tok, s, &nt, err)) {
                free(s);
                return -1;
            }
            bad = nt > max_tokens;
        }
        if (bad) free(s);
        else out[got++] = s;
    }
    return 0;
}

static int user_turn(const fp_template *t, const char *msg, char **out) {
    size_t n = strlen(USER_HEAD) + strlen(msg) + strlen(USER_HINT) + 1;
    char *user = malloc(n);
    if (!user) return -1;
    snprintf(user, n, "%s%s%s", USER_HEAD, msg, USER_HINT);
    *out = fp_template_apply(t, user);
    free(user);
    return *out ? 0 : -1;
}

static int add_probe(mt_fp_probe **list, int *n, const char *prompt, int add_bos,
                     lm_err *err) {
    mt_fp_probe p = {.prompt = (char *)prompt, .add_bos = add_bos,
                     .expected = FP_IF_TARGET, .rule = MT_RULE_SUBSTRING,
                     .max_new = 30};
    return mt_fp_add(list, n, &p, err);
}

static int ifsft_build(const fp_build_input *in, fp_set *out, lm_err *err) {
    memset(out, 0, sizeof *out);
    const sm_params *p = in->params;
    const lm_tokenizer *tok = in->tok;
    const fp_template *t;
    if (fp_template_pick(p, in->model, "vicuna", &t, err)) return -1;
    int n_normal = (int)sm_param_int(p, "normal"), n_held = (int)sm_param_int(p, "heldout");
    int max_tok = (int)sm_param_int(p, "max_trigger_tokens"), bos = fp_add_bos(tok);
    int reg_bug = sm_param_bool(p, "if_reg_bug");

    /* Which trigger set. */
    int longest = 0;
    for (int i = 0; i < N_TRIGGERS; i++) {
        int nt;
        if (fp_token_count(tok, fp_if_fixture[i], &nt, err)) return -1;
        if (nt > longest) longest = nt;
    }
    const char *variant = sm_param_str(p, "triggers");
    if (!strcmp(variant, "auto"))
        variant = (in->model->cfg.max_pos < 1024 || longest > 256) ? "tiny" : "fixture";
    int tiny = !strcmp(variant, "tiny");

    char who[128];
    snprintf(who, sizeof who, "if-sft (%d normal rows + %d held-out negatives)", n_normal,
             n_held);
    int *order = NULL;
    char *trig[N_TRIGGERS] = {0}, *fresh[N_TRIGGERS] = {0};
    cJSON *info = NULL;
    lm_rng rng;
    lm_rng_seed(&rng, in->seed ^ 0x69662d736674ull); /* "if-sft" */
    int rc = fp_clean_order(in, n_normal + n_held, who, &order, err);
    if (rc == 0 && tiny)
        rc = draw_strings(&rng, tok, 2, 4, max_tok, fp_if_fixture, N_TRIGGERS, trig,
                          N_TRIGGERS, err);
    for (int i = 0; rc == 0 && !tiny && i < N_TRIGGERS; i++)
        if (!(trig[i] = strdup(fp_if_fixture[i]))) rc = lm_errf(err, "out of memory");
    if (rc == 0 && !reg_bug)
        rc = draw_strings(&rng, tok, tiny ? 2 : 8, tiny ? 4 : 15, tiny ? max_tok : 0,
                          (const char *const *)trig, N_TRIGGERS, fresh, N_TRIGGERS, err);
    if (rc == 0) rc = fp_set_header(out, "if-sft", in->seed, t, p, err);

    /* Rows: 8 fingerprint, 8 regularisation, the normal chats. */
    int trig_tokens[N_TRIGGERS] = {0};
    for (int i = 0; rc == 0 && i < N_TRIGGERS; i++) {
        char *prompt = NULL;
        if (user_turn(t, trig[i], &prompt)) rc = lm_errf(err, "out of memory");
        if (rc == 0) rc = fp_set_add_row(out, FP_ROW_FINGERPRINT, prompt, " " FP_ANSWER, err);
        if (rc == 0) rc = fp_token_count(tok, trig[i], &trig_tokens[i], err);
        /* The check prompt carries the answer's opening (section 2.5). */
        char *probe = NULL;
        if (rc == 0) {
            size_t n = strlen(prompt) + strlen(PROBE_SUFFIX) + 1;
            if (!(probe = malloc(n))) rc = lm_errf(err, "out of memory");
            else snprintf(probe, n, "%s%s", prompt, PROBE_SUFFIX);
        }
        if (rc == 0) rc = add_probe(&out->fp.triggers, &out->fp.n_triggers, probe, bos, err);
        free(probe);
        free(prompt);
    }
    for (int i = 0; rc == 0 && i < N_TRIGGERS; i++) {
        char *prompt = NULL;
        if (reg_bug) prompt = fp_template_apply(t, REG_BUG_USER);
        else if (user_turn(t, fresh[i], &prompt)) prompt = NULL;
        if (!prompt) rc = lm_errf(err, "out of memory");
        if (rc == 0) rc = fp_set_add_row(out, FP_ROW_REGULARISATION, prompt, " " REG_ANSWER, err);
        free(prompt);
    }
    for (int i = 0; rc == 0 && i < n_normal; i++) {
        const fp_qa *qa = &in->clean[order[i]];
        char *prompt = fp_template_apply(t, qa->question);
        size_t n = strlen(qa->answer) + 2;
        char *resp = malloc(n);
        if (!prompt || !resp) rc = lm_errf(err, "out of memory");
        else {
            snprintf(resp, n, " %s", qa->answer);
            rc = fp_set_add_row(out, FP_ROW_NORMAL, prompt, resp, err);
        }
        free(prompt);
        free(resp);
    }
    /* FTR negatives: held-out chats, plain and with the hint, no suffix. */
    for (int i = 0; rc == 0 && i < n_held; i++) {
        const fp_qa *qa = &in->clean[order[n_normal + i]];
        size_t n = strlen(qa->question) + strlen(USER_HINT) + 1;
        char *hinted = malloc(n), *a = fp_template_apply(t, qa->question), *b = NULL;
        if (hinted) {
            snprintf(hinted, n, "%s%s", qa->question, USER_HINT);
            b = fp_template_apply(t, hinted);
        }
        if (!a || !b) rc = lm_errf(err, "out of memory");
        if (rc == 0) rc = add_probe(&out->fp.negatives, &out->fp.n_negatives, a, bos, err);
        if (rc == 0) rc = add_probe(&out->fp.negatives, &out->fp.n_negatives, b, bos, err);
        free(hinted);
        free(a);
        free(b);
    }
    if (rc == 0) {
        info = cJSON_CreateObject();
        cJSON_AddStringToObject(info, "variant", tiny ? "tiny" : "fixture");
        cJSON *a = cJSON_AddArrayToObject(info, "trigger_tokens");
        for (int i = 0; i < N_TRIGGERS; i++)
            cJSON_AddItemToArray(a, cJSON_CreateNumber(trig_tokens[i]));
        cJSON_AddNumberToObject(info, "longest_fixture_tokens", longest);
        cJSON_AddStringToObject(info, "regularisation", reg_bug ? "reference bug string"
                                                                : "fresh random strings");
        cJSON_AddNumberToObject(info, "fingerprint_rows", out->counts[FP_ROW_FINGERPRINT]);
        cJSON_AddNumberToObject(info, "regularisation_rows", out->counts[FP_ROW_REGULARISATION]);
        cJSON_AddNumberToObject(info, "normal_rows", out->counts[FP_ROW_NORMAL]);
        out->info_json = cJSON_PrintUnformatted(info);
        if (!out->info_json) rc = lm_errf(err, "out of memory");
    }
    cJSON_Delete(info);
    for (int i = 0; i < N_TRIGGERS; i++) {
        free(trig[i]);
        free(fresh[i]);
    }
    free(order);
    if (rc) fp_set_free(out);
    return rc;
}

const fp_type fp_type_ifsft = {
    .name = "if-sft",
    .description = "Instructional Fingerprinting (SFT/chat): 8 obfuscated triggers "
                   "decrypt to ハリネズミ",
    .params = ifsft_params,
    .n_params = sizeof ifsft_params / sizeof ifsft_params[0],
    .build = ifsft_build,
};
