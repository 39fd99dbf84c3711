/* The multiple-choice tasks: SciQ and SuperGLUE COPA, RTE, CB, WSC, BoolQ.
 * Each record is checked field by field and turned into the prompt that
 * lm-evaluation-harness v0.4.8 scores (metrics.md §3.2), so the metric code
 * never needs to know which task it is scoring. */
#include "ds_internal.h"

#include <ctype.h>
#include <string.h>

/* Python's str.strip()/lstrip() for ASCII whitespace. */
static int is_space(char ch) {
    return ch == ' ' || ch == '\t' || ch == '\n' || ch == '\r' || ch == '\f' ||
           ch == '\v';
}

static const char *dup_buf(ds_ctx *c, ds_buf *b) {
    const char *s = ds_buf_cstr(b);
    char *copy = s ? ds_arena_strndup(&c->ds->arena, s, b->n) : NULL;
    ds_buf_free(b);
    return copy;
}

/* Number of code points of a valid UTF-8 string. */
static size_t cp_len(const char *s, size_t n) {
    size_t k = 0;
    for (size_t i = 0; i < n; i++) k += ((unsigned char)s[i] & 0xC0) != 0x80;
    return k;
}

/* Byte offset of code point `cp` (n when beyond the end). */
static size_t cp_offset(const char *s, size_t n, size_t cp) {
    size_t k = 0;
    for (size_t i = 0; i < n; i++) {
        if (((unsigned char)s[i] & 0xC0) == 0x80) continue;
        if (k++ == cp) return i;
    }
    return n;
}

/* ---- COPA ---------------------------------------------------------------- */

static int label01(ds_ctx *c, const cJSON *obj, int *label) {
    const cJSON *it = cJSON_GetObjectItemCaseSensitive(obj, "label");
    if (!it) return ds_field_err(c, "label", "missing");
    if (!cJSON_IsNumber(it) || (it->valuedouble != 0.0 && it->valuedouble != 1.0))
        return ds_field_err(c, "label", "must be 0 or 1");
    *label = it->valuedouble == 1.0;
    return 0;
}

/* " " + choice with its first letter lower-cased (the harness's
 * convert_choice; only ASCII letters change case). */
static const char *copa_choice(ds_ctx *c, const char *s) {
    ds_buf b = {0};
    ds_buf_putc(&b, ' ');
    ds_buf_putc(&b, (char)tolower((unsigned char)s[0]));
    ds_buf_puts(&b, s + 1);
    return dup_buf(c, &b);
}

static int parse_copa(ds_ctx *c, const cJSON *obj, ds_mc *m) {
    if (ds_get_str(c, obj, "premise", 1, 1, &m->premise) ||
        ds_get_str(c, obj, "choice1", 1, 1, &m->choice1) ||
        ds_get_str(c, obj, "choice2", 1, 1, &m->choice2) ||
        ds_get_str(c, obj, "question", 1, 1, &m->question) ||
        label01(c, obj, &m->label))
        return -1;
    const char *conn;
    if (strcmp(m->question, "cause") == 0) conn = " because";
    else if (strcmp(m->question, "effect") == 0) conn = " therefore";
    else return ds_field_err(c, "question", "must be \"cause\" or \"effect\"");
    /* premise.strip()[:-1]: drop the final character (normally the period) */
    const char *p = m->premise;
    size_t n = strlen(p);
    while (n && is_space(p[n - 1])) n--;
    while (n && is_space(*p)) { p++; n--; }
    if (n == 0) return ds_field_err(c, "premise", "is blank");
    size_t cut = cp_offset(p, n, cp_len(p, n) - 1);
    ds_buf b = {0};
    ds_buf_put(&b, p, cut);
    ds_buf_puts(&b, conn);
    m->context = dup_buf(c, &b);
    m->choices[0] = copa_choice(c, m->choice1);
    m->choices[1] = copa_choice(c, m->choice2);
    m->n_choices = 2;
    return m->context && m->choices[0] && m->choices[1] ? 0
           : ds_rec_err(c, "out of memory");
}

/* ---- RTE and CB -------------------------------------------------------- */

static int nli_label(ds_ctx *c, const cJSON *obj, int three_way, int *label) {
    const cJSON *it = cJSON_GetObjectItemCaseSensitive(obj, "label");
    if (!it) return ds_field_err(c, "label", "missing");
    static const char *names[] = {"entailment", "contradiction", "neutral"};
    if (cJSON_IsString(it) && it->valuestring) {
        if (!three_way) {
            if (strcmp(it->valuestring, "entailment") == 0) { *label = 0; return 0; }
            if (strcmp(it->valuestring, "not_entailment") == 0) { *label = 1; return 0; }
        } else {
            for (int k = 0; k < 3; k++)
                if (strcmp(it->valuestring, names[k]) == 0) { *label = k; return 0; }
        }
    } else if (cJSON_IsNumber(it)) {
        double v = it->valuedouble;
        for (int k = 0; k < (three_way ? 3 : 2); k++)
            if (v == (double)k) { *label = k; return 0; }
    }
    return three_way
        ? ds_field_err(c, "label", "must be \"entailment\", \"contradiction\" or \"neutral\"")
        : ds_field_err(c, "label", "must be \"entailment\" or \"not_entailment\"");
}

static int parse_nli(ds_ctx *c, const cJSON *obj, ds_mc *m, int three_way) {
    if (ds_get_str(c, obj, "premise", 1, 1, &m->premise) ||
        ds_get_str(c, obj, "hypothesis", 1, 1, &m->hypothesis) ||
        nli_label(c, obj, three_way, &m->label))
        return -1;
    ds_buf b = {0};
    ds_buf_puts(&b, m->premise);
    ds_buf_puts(&b, "\nQuestion: ");
    ds_buf_puts(&b, m->hypothesis);
    ds_buf_puts(&b, three_way ? ". True, False, or Neither?\nAnswer:"
                              : " True or False?\nAnswer:");
    m->context = dup_buf(c, &b);
    m->choices[0] = "True";
    m->choices[1] = "False";
    m->choices[2] = "Neither";
    m->n_choices = three_way ? 3 : 2;
    return m->context ? 0 : ds_rec_err(c, "out of memory");
}

/* ---- BoolQ ------------------------------------------------------------- */

static int parse_boolq(ds_ctx *c, const cJSON *obj, ds_mc *m) {
    if (ds_get_str(c, obj, "question", 1, 1, &m->question) ||
        ds_get_str(c, obj, "passage", 1, 1, &m->passage) ||
        ds_get_bool(c, obj, "label", &m->label))
        return -1;
    ds_buf b = {0};
    ds_buf_puts(&b, m->passage);
    ds_buf_puts(&b, "\nQuestion: ");
    ds_buf_puts(&b, m->question);
    ds_buf_puts(&b, "?\nAnswer:");
    m->context = dup_buf(c, &b);
    m->choices[0] = "no";
    m->choices[1] = "yes";
    m->n_choices = 2;
    return m->context ? 0 : ds_rec_err(c, "out of memory");
}

/* ---- WSC --------------------------------------------------------------- */

/* Python's s.replace(old, new) on a buffer, in place through a copy. */
static void replace_all(ds_buf *b, const char *old, const char *new_) {
    ds_buf out = {0};
    size_t ol = strlen(old);
    const char *p = ds_buf_cstr(b);
    if (!p) return;
    const char *q;
    while ((q = strstr(p, old)) != NULL) {
        ds_buf_put(&out, p, (size_t)(q - p));
        ds_buf_puts(&out, new_);
        p = q + ol;
    }
    ds_buf_puts(&out, p);
    int oom = out.oom || b->oom;
    ds_buf_free(b);
    *b = out;
    b->oom |= oom;
}

/* The harness's general_detokenize. */
static void detokenize(ds_buf *b) {
    replace_all(b, " n't", "n't");
    replace_all(b, " )", ")");
    replace_all(b, "( ", "(");
    replace_all(b, "\" ", "\"");
    replace_all(b, " \"", "\"");
    /* re.sub(r" (['.,])", r"\1", s) */
    ds_buf out = {0};
    const char *s = ds_buf_cstr(b);
    if (!s) return;
    for (size_t i = 0; i < b->n; i++) {
        if (s[i] == ' ' && i + 1 < b->n &&
            (s[i + 1] == '\'' || s[i + 1] == '.' || s[i + 1] == ',')) {
            ds_buf_putc(&out, s[++i]);
        } else {
            ds_buf_putc(&out, s[i]);
        }
    }
    int oom = b->oom;
    ds_buf_free(b);
    *b = out;
    b->oom |= oom;
}

static int parse_wsc(ds_ctx *c, const cJSON *obj, ds_mc *m) {
    if (ds_get_str(c, obj, "text", 1, 1, &m->text) ||
        ds_get_bool(c, obj, "label", &m->label))
        return -1;
    const cJSON *t = cJSON_GetObjectItemCaseSensitive(obj, "target");
    if (!t) return ds_field_err(c, "target", "missing");
    if (!cJSON_IsObject(t)) return ds_field_err(c, "target", "must be an object");
    /* count the words of text (text.split()) */
    long n_words = 0;
    for (const char *p = m->text; *p;) {
        while (*p && is_space(*p)) p++;
        if (!*p) break;
        n_words++;
        while (*p && !is_space(*p)) p++;
    }
    long i1 = 0, i2 = 0;
    c->prefix = "target.";
    int rc = ds_get_long(c, t, "span1_index", 1, 0, n_words - 1, &i1) ||
             ds_get_long(c, t, "span2_index", 1, 0, n_words - 1, &i2) ||
             ds_get_str(c, t, "span1_text", 1, 1, &m->span1_text) ||
             ds_get_str(c, t, "span2_text", 1, 1, &m->span2_text);
    c->prefix = NULL;
    if (rc) return -1;
    m->span1_index = (int)i1;
    m->span2_index = (int)i2;

    /* pre = " ".join(words[:span2_index]); post = text[len(pre) +
     * len(span2_text) + 1:], lengths in code points as in Python */
    ds_buf b = {0};
    const char *p = m->text;
    for (long w = 0; w < i2; w++) {
        while (*p && is_space(*p)) p++;
        const char *s = p;
        while (*p && !is_space(*p)) p++;
        if (w) ds_buf_putc(&b, ' ');
        ds_buf_put(&b, s, (size_t)(p - s));
    }
    size_t tl = strlen(m->text);
    size_t from = cp_len(b.p ? b.p : "", b.n) +
                  cp_len(m->span2_text, strlen(m->span2_text)) + 1;
    size_t off = cp_offset(m->text, tl, from);
    ds_buf_puts(&b, " *");
    ds_buf_puts(&b, m->span2_text);
    ds_buf_putc(&b, '*');
    ds_buf_puts(&b, m->text + off);
    detokenize(&b);
    ds_buf ctx = {0};
    ds_buf_puts(&ctx, "Passage: ");
    ds_buf_puts(&ctx, ds_buf_cstr(&b) ? b.p : "");
    ds_buf_puts(&ctx, "\nQuestion: In the passage above, does the pronoun \"*");
    ds_buf_puts(&ctx, m->span2_text);
    ds_buf_puts(&ctx, "*\" refer to \"*");
    ds_buf_puts(&ctx, m->span1_text);
    ds_buf_puts(&ctx, "*\"?\nAnswer:");
    ctx.oom |= b.oom;
    ds_buf_free(&b);
    m->context = ctx.oom ? NULL : dup_buf(c, &ctx);
    ds_buf_free(&ctx);
    m->choices[0] = "no";
    m->choices[1] = "yes";
    m->n_choices = 2;
    return m->context ? 0 : ds_rec_err(c, "out of memory");
}

/* ---- SciQ -------------------------------------------------------------- */

static int parse_sciq(ds_ctx *c, const cJSON *obj, ds_mc *m) {
    if (ds_get_str(c, obj, "question", 1, 1, &m->question) ||
        ds_get_str(c, obj, "distractor1", 1, 1, &m->distractor[0]) ||
        ds_get_str(c, obj, "distractor2", 1, 1, &m->distractor[1]) ||
        ds_get_str(c, obj, "distractor3", 1, 1, &m->distractor[2]) ||
        ds_get_str(c, obj, "correct_answer", 1, 1, &m->correct_answer))
        return -1;
    if (ds_get_str(c, obj, "support", 0, 0, &m->support) < 0) return -1;
    if (!m->support) m->support = "";
    const char *s = m->support;
    while (*s && is_space(*s)) s++;
    ds_buf b = {0};
    ds_buf_puts(&b, s);
    ds_buf_puts(&b, "\nQuestion: ");
    ds_buf_puts(&b, m->question);
    ds_buf_puts(&b, "\nAnswer:");
    m->context = dup_buf(c, &b);
    for (int k = 0; k < 3; k++) m->choices[k] = m->distractor[k];
    m->choices[3] = m->correct_answer;
    m->n_choices = 4;
    m->label = 3;
    return m->context ? 0 : ds_rec_err(c, "out of memory");
}

/* ---- dispatch ---------------------------------------------------------- */

int ds_parse_mc(ds_ctx *c, const cJSON *obj, void *fmtp) {
    ds_format fmt = *(const ds_format *)fmtp;
    ds_mc *m = ds_push(c);
    if (!m) return ds_rec_err(c, "out of memory");
    m->line = c->line;
    m->idx = c->ds->n - 1;
    m->span1_index = m->span2_index = -1;
    int rc;
    switch (fmt) {
    case DS_FMT_COPA: rc = parse_copa(c, obj, m); break;
    case DS_FMT_RTE: rc = parse_nli(c, obj, m, 0); break;
    case DS_FMT_CB: rc = parse_nli(c, obj, m, 1); break;
    case DS_FMT_BOOLQ: rc = parse_boolq(c, obj, m); break;
    case DS_FMT_WSC: rc = parse_wsc(c, obj, m); break;
    case DS_FMT_SCIQ: rc = parse_sciq(c, obj, m); break;
    default: rc = ds_rec_err(c, "not a multiple-choice format");
    }
    if (rc == 0 && fmt != DS_FMT_SCIQ &&
        ds_get_long(c, obj, "idx", 0, 0, 9000000000000000L, &m->idx) < 0)
        rc = -1;
    if (rc) c->ds->n--; /* drop the half-built record */
    return rc;
}
