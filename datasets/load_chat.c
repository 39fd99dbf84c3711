/* Question/answer chats: Guanaco ("### Human: ...### Assistant: ..." and
 * the Llama-2 "[INST] ... [/INST]" rewrite), Dolly, Alpaca, MEraser's
 * mismatched and recover files, and {"messages": [...]}. Every record
 * becomes a list of turns plus its first question/answer pair. */
#include "ds_internal.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const char HUMAN[] = "### Human:";
static const char ASSISTANT[] = "### Assistant:";

/* [s, e) without surrounding whitespace, copied into the arena. */
static const char *dup_trim(ds_ctx *c, const char *s, const char *e) {
    while (s < e && (*s == ' ' || *s == '\t' || *s == '\n' || *s == '\r')) s++;
    while (e > s && (e[-1] == ' ' || e[-1] == '\t' || e[-1] == '\n' || e[-1] == '\r')) e--;
    return ds_arena_strndup(&c->ds->arena, s, (size_t)(e - s));
}

static int set_turns(ds_ctx *c, ds_qa *q, const ds_turn *t, int n) {
    q->turns = ds_arena_alloc(&c->ds->arena, (size_t)(n ? n : 1) * sizeof *t);
    if (!q->turns) return ds_rec_err(c, "out of memory");
    memcpy(q->turns, t, (size_t)n * sizeof *t);
    q->n_turns = n;
    return 0;
}

static int push_turn(ds_ctx *c, ds_turn **t, int *n, int *cap,
                     const char *role, const char *content) {
    if (!content) return ds_rec_err(c, "out of memory");
    if (*n == *cap) {
        int nc = *cap ? *cap * 2 : 8;
        ds_turn *p = realloc(*t, (size_t)nc * sizeof *p);
        if (!p) return ds_rec_err(c, "out of memory");
        *t = p;
        *cap = nc;
    }
    (*t)[*n].role = role;
    (*t)[*n].content = content;
    (*n)++;
    return 0;
}

static const char *first_of(const char *p, const char *a, const char *b) {
    const char *x = strstr(p, a), *y = strstr(p, b);
    if (!x) return y;
    if (!y) return x;
    return x < y ? x : y;
}

int ds_qa_from_guanaco(ds_ctx *c, ds_qa *q, const char *text, const char *field) {
    ds_turn *t = NULL;
    int n = 0, cap = 0, rc = 0;
    const char *p = text;
    while (*p == ' ' || *p == '\t' || *p == '\n' || *p == '\r') p++;
    if (strncmp(p, HUMAN, sizeof HUMAN - 1) == 0) {
        while (p && rc == 0) {
            int human = strncmp(p, HUMAN, sizeof HUMAN - 1) == 0;
            const char *s = p + (human ? sizeof HUMAN - 1 : sizeof ASSISTANT - 1);
            const char *next = first_of(s, HUMAN, ASSISTANT);
            const char *e = next ? next : s + strlen(s);
            rc = push_turn(c, &t, &n, &cap, human ? "user" : "assistant",
                           dup_trim(c, s, e));
            p = next;
        }
    } else if (strstr(p, "[INST]")) {
        /* <s>[INST] q [/INST] a </s><s>[INST] ...: a runs to the next
         * [INST]; the sentence markers around it are dropped. */
        const char *s = strstr(p, "[INST]");
        while (s && rc == 0) {
            s += 6;
            const char *close = strstr(s, "[/INST]");
            if (!close) {
                rc = ds_field_err(c, field, "has '[INST]' without '[/INST]'");
                break;
            }
            const char *a = close + 7;
            const char *next = strstr(a, "[INST]");
            const char *e = next ? next : a + strlen(a);
            for (int again = 1; again;) {
                again = 0;
                const char *r = e;
                while (r > a && (r[-1] == ' ' || r[-1] == '\n' || r[-1] == '\r' || r[-1] == '\t')) r--;
                if (r - a >= 4 && strncmp(r - 4, "</s>", 4) == 0) { e = r - 4; again = 1; }
                else if (r - a >= 3 && strncmp(r - 3, "<s>", 3) == 0) { e = r - 3; again = 1; }
            }
            rc = push_turn(c, &t, &n, &cap, "user", dup_trim(c, s, close));
            if (rc == 0) rc = push_turn(c, &t, &n, &cap, "assistant", dup_trim(c, a, e));
            s = next;
        }
    } else {
        rc = ds_field_err(c, field, "must start with '%s'", HUMAN);
    }
    if (rc == 0) rc = set_turns(c, q, t, n);
    free(t);
    if (rc) return -1;
    return ds_qa_finish(c, q, field);
}

int ds_qa_finish(ds_ctx *c, ds_qa *q, const char *field) {
    int u = -1, a = -1;
    for (int i = 0; i < q->n_turns; i++) {
        if (u < 0 && strcmp(q->turns[i].role, "user") == 0) u = i;
        else if (u >= 0 && strcmp(q->turns[i].role, "assistant") == 0) { a = i; break; }
    }
    if (u < 0) return ds_field_err(c, field, "has no user turn");
    if (a < 0) return ds_field_err(c, field, "has no assistant answer after the first user turn");
    if (!q->question) q->question = q->turns[u].content;
    q->answer = q->turns[a].content;
    if (!q->context) q->context = "";
    q->type = ds_classify_question(q->question);
    return 0;
}

/* An id written as a number or a string, kept as text. */
static int get_id(ds_ctx *c, const cJSON *obj, const char **out) {
    const cJSON *it = cJSON_GetObjectItemCaseSensitive(obj, "id");
    *out = NULL;
    if (!it || cJSON_IsNull(it)) return 0;
    if (cJSON_IsString(it)) return ds_get_str(c, obj, "id", 1, 0, out);
    if (cJSON_IsNumber(it)) {
        long v;
        if (ds_get_long(c, obj, "id", 1, -9000000000000000L, 9000000000000000L, &v))
            return -1;
        char tmp[32];
        snprintf(tmp, sizeof tmp, "%ld", v);
        *out = ds_arena_strdup(&c->ds->arena, tmp);
        return *out ? 0 : ds_rec_err(c, "out of memory");
    }
    return ds_field_err(c, "id", "must be a string or an integer");
}

static int get_qtype(ds_ctx *c, const cJSON *obj, const char *field, ds_qtype *t) {
    const char *s;
    int rc = ds_get_str(c, obj, field, 0, 0, &s);
    if (rc < 0) return -1;
    if (rc > 0) { *t = DS_Q_COUNT; return 0; }
    if (ds_qtype_parse(s, t))
        return ds_field_err(c, field, "must be \"what\", \"how\", \"why\" or \"other\"");
    return 0;
}

/* user turn = instruction, plus the context/input after a blank line */
static int two_turns(ds_ctx *c, ds_qa *q, const char *instr, const char *ctx,
                     const char *answer) {
    ds_turn t[2] = {{"user", instr}, {"assistant", answer}};
    if (ctx && *ctx) {
        size_t a = strlen(instr), b = strlen(ctx);
        char *s = ds_arena_alloc(&c->ds->arena, a + b + 3);
        if (!s) return ds_rec_err(c, "out of memory");
        memcpy(s, instr, a);
        memcpy(s + a, "\n\n", 2);
        memcpy(s + a + 2, ctx, b + 1);
        t[0].content = s;
    }
    return set_turns(c, q, t, 2);
}

static int parse_messages(ds_ctx *c, const cJSON *obj, ds_qa *q) {
    const cJSON *m = cJSON_GetObjectItemCaseSensitive(obj, "messages");
    if (!m) return ds_field_err(c, "messages", "missing");
    if (!cJSON_IsArray(m)) return ds_field_err(c, "messages", "must be an array");
    int n = cJSON_GetArraySize(m);
    if (n < 2) return ds_field_err(c, "messages", "needs a user and an assistant turn");
    ds_turn *t = ds_arena_alloc(&c->ds->arena, (size_t)n * sizeof *t);
    if (!t) return ds_rec_err(c, "out of memory");
    char prefix[48];
    int i = 0, rc = 0;
    const cJSON *it;
    cJSON_ArrayForEach(it, m) {
        snprintf(prefix, sizeof prefix, "messages[%d].", i);
        c->prefix = prefix;
        const char *role = NULL;
        if (!cJSON_IsObject(it)) {
            c->prefix = NULL;
            prefix[strlen(prefix) - 1] = '\0';
            rc = ds_field_err(c, prefix, "must be an object");
            break;
        }
        if (ds_get_str(c, it, "role", 1, 1, &role) ||
            ds_get_str(c, it, "content", 1, 0, &t[i].content)) {
            rc = -1;
            break;
        }
        if (strcmp(role, "system") && strcmp(role, "user") && strcmp(role, "assistant")) {
            rc = ds_field_err(c, "role", "must be \"system\", \"user\" or \"assistant\"");
            break;
        }
        t[i].role = strcmp(role, "system") == 0 ? "system"
                  : strcmp(role, "user") == 0 ? "user" : "assistant";
        i++;
    }
    c->prefix = NULL;
    if (rc) return -1;
    q->turns = t;
    q->n_turns = n;
    return ds_qa_finish(c, q, "messages");
}

int ds_parse_qa(ds_ctx *c, const cJSON *obj, void *fmtp) {
    ds_format fmt = *(const ds_format *)fmtp;
    ds_qa *q = ds_push(c);
    if (!q) return ds_rec_err(c, "out of memory");
    q->line = c->line;
    q->q_idx = q->a_idx = -1;
    q->original_q_type = q->answer_from_type = DS_Q_COUNT;
    const char *a = NULL, *b = NULL, *d = NULL;
    int rc = 0;
    switch (fmt) {
    case DS_FMT_GUANACO:
        rc = ds_get_str(c, obj, "text", 1, 1, &a) ||
             ds_qa_from_guanaco(c, q, a, "text");
        break;
    case DS_FMT_DOLLY:
        rc = ds_get_str(c, obj, "instruction", 1, 1, &a) ||
             ds_get_str(c, obj, "context", 0, 0, &b) < 0 ||
             ds_get_str(c, obj, "response", 1, 0, &d) ||
             ds_get_str(c, obj, "category", 0, 0, &q->category) < 0;
        if (!rc) {
            q->question = a;
            q->context = b ? b : "";
            rc = two_turns(c, q, a, b, d) || ds_qa_finish(c, q, "instruction");
        }
        break;
    case DS_FMT_ALPACA:
        rc = ds_get_str(c, obj, "instruction", 1, 1, &a) ||
             ds_get_str(c, obj, "input", 0, 0, &b) < 0 ||
             ds_get_str(c, obj, "output", 1, 0, &d);
        if (!rc) {
            q->question = a;
            q->context = b ? b : "";
            rc = two_turns(c, q, a, b, d) || ds_qa_finish(c, q, "instruction");
        }
        break;
    case DS_FMT_MERASER_MISMATCHED:
        rc = get_id(c, obj, &q->id) ||
             ds_get_str(c, obj, "question", 1, 1, &a) ||
             ds_get_str(c, obj, "mismatched_answer", 1, 0, &d) ||
             get_qtype(c, obj, "original_q_type", &q->original_q_type) ||
             get_qtype(c, obj, "answer_from_type", &q->answer_from_type) ||
             ds_get_long(c, obj, "q_idx", 0, 0, 2000000000L, &q->q_idx) < 0 ||
             ds_get_long(c, obj, "a_idx", 0, 0, 2000000000L, &q->a_idx) < 0;
        if (!rc) rc = two_turns(c, q, a, NULL, d) || ds_qa_finish(c, q, "question");
        break;
    case DS_FMT_MERASER_RECOVER:
        rc = ds_get_str(c, obj, "question", 1, 1, &a) ||
             ds_get_str(c, obj, "answer", 1, 0, &d) ||
             get_id(c, obj, &q->id);
        if (!rc) rc = two_turns(c, q, a, NULL, d) || ds_qa_finish(c, q, "question");
        break;
    case DS_FMT_CHAT:
        rc = parse_messages(c, obj, q);
        break;
    default:
        rc = ds_rec_err(c, "not a question/answer format");
    }
    if (rc) {
        c->ds->n--;
        return -1;
    }
    return 0;
}
