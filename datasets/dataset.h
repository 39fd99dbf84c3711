/* One interface for every dataset smudge reads: the multiple-choice tasks
 * (SciQ, SuperGLUE COPA/RTE/WSC/BoolQ/CB), question/answer chats (Guanaco,
 * Dolly, Alpaca, MEraser's mismatched/recover files, {"messages": [...]})
 * and plain text for perplexity.
 *
 * A dataset holds records of one kind:
 *   DS_KIND_MC    ds_mc:   a multiple-choice item, with the lm-evaluation-
 *                          harness v0.4.8 prompt already built (context,
 *                          choices, gold label) next to the raw fields;
 *   DS_KIND_QA    ds_qa:   a chat, first user turn / first assistant turn
 *                          plus every turn, with MEraser's question type;
 *   DS_KIND_TEXT  ds_doc:  one document of plain text.
 * Every record remembers the line of the file where it starts, so a problem
 * found later can still be reported as "file:line".
 *
 * Files are untrusted. The loader stops at the first bad record and says
 * where and what: "data/x.jsonl:17: field 'label' missing". */
#ifndef DS_DATASET_H
#define DS_DATASET_H

#include <stddef.h>
#include <stdint.h>

#include "err.h"

typedef enum ds_format {
    DS_FMT_AUTO = 0, /* guess from the name and the first record */
    DS_FMT_SCIQ,     /* JSON array of {question, distractor1..3, correct_answer, support} */
    DS_FMT_COPA,     /* jsonl {premise, choice1, choice2, question, label, idx} */
    DS_FMT_RTE,      /* jsonl {premise, hypothesis, label: "entailment"|"not_entailment", idx} */
    DS_FMT_WSC,      /* jsonl {text, target{span1_index, span1_text, span2_index, span2_text}, label, idx} */
    DS_FMT_BOOLQ,    /* jsonl {question, passage, label: bool, idx} */
    DS_FMT_CB,       /* jsonl {premise, hypothesis, label: "entailment"|"contradiction"|"neutral", idx} */
    DS_FMT_GUANACO,  /* jsonl {"text": "### Human: ...### Assistant: ..."}, or such plain lines */
    DS_FMT_DOLLY,    /* jsonl {instruction, context, response, category} */
    DS_FMT_ALPACA,   /* JSON array or jsonl {instruction, input, output} */
    DS_FMT_MERASER_MISMATCHED, /* JSON array {id, question, mismatched_answer, original_q_type, answer_from_type, q_idx, a_idx} */
    DS_FMT_MERASER_RECOVER,    /* JSON array {question, answer, id} */
    DS_FMT_CHAT,     /* jsonl {"messages": [{"role", "content"}, ...]} */
    DS_FMT_TEXT,     /* plain text; documents are separated by blank lines */
    DS_FMT_COUNT
} ds_format;

typedef enum ds_kind { DS_KIND_MC, DS_KIND_QA, DS_KIND_TEXT } ds_kind;

/* MEraser's question types (removal-methods.md §1.1). */
typedef enum ds_qtype { DS_Q_WHAT, DS_Q_HOW, DS_Q_WHY, DS_Q_OTHER, DS_Q_COUNT } ds_qtype;

#define DS_MAX_CHOICES 4

/* A multiple-choice item. `context` and `choices` are what lm-evaluation-
 * harness v0.4.8 scores (metrics.md §3.2): the scorer appends one space
 * (the target delimiter) before each choice. For COPA the choices already
 * begin with a space, as in the harness. Raw fields the format lacks are
 * NULL; span indices are -1 outside WSC. */
typedef struct ds_mc {
    int line;                /* line of the file where the record starts */
    long idx;                /* the file's idx, or the record's position */
    const char *context;
    const char *choices[DS_MAX_CHOICES];
    int n_choices;
    int label;               /* index of the gold choice */
    /* raw fields */
    const char *premise, *hypothesis;                 /* COPA, RTE, CB */
    const char *choice1, *choice2;                    /* COPA */
    const char *question;    /* COPA "cause"/"effect"; BoolQ and SciQ question */
    const char *passage;                              /* BoolQ */
    const char *support, *correct_answer, *distractor[3]; /* SciQ */
    const char *text, *span1_text, *span2_text;       /* WSC */
    int span1_index, span2_index;                     /* WSC (words of text) */
} ds_mc;

typedef struct ds_turn {
    const char *role;        /* "system", "user" or "assistant" */
    const char *content;
} ds_turn;

/* A chat. `question` is the first user turn (Dolly/Alpaca: the
 * instruction), `answer` the first assistant turn after it (MEraser
 * mismatched: mismatched_answer). */
typedef struct ds_qa {
    int line;
    const char *question;
    const char *context;     /* Dolly context / Alpaca input; "" when none */
    const char *answer;
    const char *category;    /* Dolly category, else NULL */
    const char *id;          /* MEraser id as text, else NULL */
    ds_qtype type;           /* ds_classify_question(question) */
    /* MEraser mismatched only (else -1 / DS_Q_COUNT) */
    long q_idx, a_idx;
    ds_qtype original_q_type, answer_from_type;
    ds_turn *turns;          /* every turn, in order */
    int n_turns;
} ds_qa;

typedef struct ds_doc {
    int line;
    const char *text;
} ds_doc;

struct ds_arena_block;

typedef struct ds_dataset {
    ds_format format;
    ds_kind kind;
    int n;                   /* records loaded */
    ds_mc *mc;               /* kind MC: n items */
    ds_qa *qa;               /* kind QA */
    ds_doc *docs;            /* kind TEXT */
    int cap;
    /* ds_check only: bad records skipped, and the first problem */
    int n_bad;
    char problem[LM_ERR_MSG];
    struct ds_arena_block *arena; /* owns every string */
} ds_dataset;

/* Loads PATH in format FMT (DS_FMT_AUTO: ds_guess_format). Stops at the
 * first bad record with "path:line: field 'x' ..." in err. On failure the
 * dataset is left empty (nothing to free). */
int ds_load(const char *path, ds_format fmt, ds_dataset *ds, lm_err *err);

/* Like ds_load, but goes on past bad records: ds keeps the good ones,
 * ds->n_bad counts the rest and ds->problem holds the first message.
 * Returns -1 only when the file cannot be read at all or the format is
 * unknown; a structural problem (truncated array) counts as a bad record
 * and ends the scan. Free ds afterwards in either case. */
int ds_check(const char *path, ds_format fmt, ds_dataset *ds, lm_err *err);

/* Loads from memory; `name` stands in for the path in messages and in the
 * format guess. */
int ds_load_buffer(const char *name, const char *data, size_t len,
                   ds_format fmt, ds_dataset *ds, lm_err *err);

void ds_free(ds_dataset *ds);

/* The format from the file's first record (keys, label values), with the
 * path's name breaking ties (RTE vs CB; "COPA", "sciq", "dolly" ...). */
int ds_guess_format(const char *path, ds_format *fmt, lm_err *err);
int ds_guess_format_buffer(const char *name, const char *data, size_t len,
                           ds_format *fmt, lm_err *err);

/* "sciq", "copa", "rte", "wsc", "boolq", "cb", "guanaco", "dolly",
 * "alpaca", "meraser-mismatched", "meraser-recover", "chat", "text". */
const char *ds_format_name(ds_format f);
int ds_format_parse(const char *name, ds_format *f, lm_err *err);
ds_kind ds_format_kind(ds_format f);

/* MEraser's rule: lower-case the question; "what" if \bwhat\b matches,
 * else "how" for \bhow\b, else "why" for \bwhy\b, else "other". The
 * reference also maps 什么 to what and 如何/como to how; so does this. */
ds_qtype ds_classify_question(const char *question);
const char *ds_qtype_name(ds_qtype t);
int ds_qtype_parse(const char *name, ds_qtype *t);

/* ---- MEraser's erase/recover sets (removal-methods.md §1.1) ----------- */

typedef struct ds_meraser_opts {
    int n_mismatched;        /* 300 */
    int n_recover;           /* 600 */
    uint64_t seed;
} ds_meraser_opts;

void ds_meraser_default_opts(ds_meraser_opts *o);

/* From any QA dataset: classify every row; draw n_mismatched distinct
 * questions round-robin over what/how/why/other (types balanced to +-1
 * while each lasts); give each the answer of a uniformly drawn row of
 * another type; then draw n_recover matched rows whose questions are
 * disjoint from the mismatched ones. Outputs are QA datasets in the
 * meraser-mismatched / meraser-recover formats (own copies of the text). */
int ds_meraser_build(const ds_dataset *src, const ds_meraser_opts *o,
                     ds_dataset *mismatched, ds_dataset *recover, lm_err *err);

/* Writes a meraser-mismatched or meraser-recover dataset as the reference
 * JSON array (2-space indent, one field per line). */
int ds_meraser_write(const ds_dataset *d, const char *path, lm_err *err);

#endif
