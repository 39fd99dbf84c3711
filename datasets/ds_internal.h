/* Helpers shared inside datasets/: a string arena, a growable buffer, file
 * reading, UTF-8 checks, JSON string output and the record walker that
 * remembers on which line each JSON record starts. Not part of the API. */
#ifndef DS_INTERNAL_H
#define DS_INTERNAL_H

#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>

#include <cjson/cJSON.h>

#include "dataset.h"

/* ---- arena: every string of a dataset lives here, freed at once ------- */
typedef struct ds_arena_block {
    struct ds_arena_block *next;
    size_t used, cap;
    char data[];
} ds_arena_block;

void *ds_arena_alloc(ds_arena_block **arena, size_t n);
char *ds_arena_strndup(ds_arena_block **arena, const char *s, size_t n);
char *ds_arena_strdup(ds_arena_block **arena, const char *s);
void ds_arena_free(ds_arena_block **arena);

/* ---- growable byte buffer; `oom` sticks once an allocation failed ------ */
typedef struct ds_buf {
    char *p;
    size_t n, cap;
    int oom;
} ds_buf;

void ds_buf_put(ds_buf *b, const char *s, size_t n);
void ds_buf_puts(ds_buf *b, const char *s);
void ds_buf_putc(ds_buf *b, char c);
void ds_buf_printf(ds_buf *b, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
/* A JSON string literal with quotes; control characters, '"' and '\\'
 * escaped, everything else (UTF-8 included) copied as is. */
void ds_buf_json_str(ds_buf *b, const char *s);
/* NUL-terminates without counting the NUL; returns the text or NULL on OOM. */
const char *ds_buf_cstr(ds_buf *b);
void ds_buf_free(ds_buf *b);

/* Reads a whole file (NUL-terminated copy). */
int ds_read_file(const char *path, char **data, size_t *len, lm_err *err);
/* Writes len bytes to path through path.tmp + rename. */
int ds_write_file(const char *path, const char *data, size_t len, lm_err *err);

/* Offset of the first byte that breaks UTF-8 (overlongs, surrogates and
 * code points above U+10FFFF included), or n if all is well. */
size_t ds_utf8_check(const char *s, size_t n);

/* ---- walking JSON records ------------------------------------------------
 * A file is a JSON array of objects or one JSON value per line. The walker
 * hands each record to `fn` with the line where it starts; fn returns 0 or
 * -1 with err set (message already "name:line: ..."). In lenient mode a bad
 * record is counted and skipped (the first message kept); a structural
 * problem (an unclosed array) still ends the walk. */
typedef struct ds_ctx {
    const char *name;        /* file name for messages */
    int line;                /* line of the current record */
    lm_err *err;
    ds_dataset *ds;
    int lenient;
    const char *prefix;      /* prepended to field names ("target.") */
} ds_ctx;

typedef int (*ds_record_fn)(ds_ctx *c, const cJSON *obj, void *ud);

/* is_array: 1 = one JSON array, 0 = jsonl, -1 = decide from the first
 * non-blank byte ('[' means array). */
int ds_walk_json(ds_ctx *c, const char *data, size_t len, int is_array,
                 ds_record_fn fn, void *ud);

/* Record-level errors: "name:line: field 'f' ...". Always return -1. */
int ds_field_err(ds_ctx *c, const char *field, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
int ds_rec_err(ds_ctx *c, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

/* Field getters: check presence, type, UTF-8, copy into the arena.
 * required = 0 lets a missing field give *out = NULL (getters) or leaves
 * *out unchanged (numbers) and returns 1. */
int ds_get_str(ds_ctx *c, const cJSON *obj, const char *field, int required,
               int nonempty, const char **out);
int ds_get_long(ds_ctx *c, const cJSON *obj, const char *field, int required,
                long lo, long hi, long *out);
/* true/false, or 0/1 as the Hugging Face exports write it. */
int ds_get_bool(ds_ctx *c, const cJSON *obj, const char *field, int *out);

/* Appends one zeroed record slot of the dataset's kind; NULL on OOM. */
void *ds_push(ds_ctx *c);

/* Record parsers, one per format family (load_tasks.c, load_chat.c). */
int ds_parse_mc(ds_ctx *c, const cJSON *obj, void *fmt);
int ds_parse_qa(ds_ctx *c, const cJSON *obj, void *fmt);
/* Plain-text formats (load_text.c). */
int ds_parse_text(ds_ctx *c, const char *data, size_t len);
int ds_parse_guanaco_lines(ds_ctx *c, const char *data, size_t len);
/* Splits "### Human: ...### Assistant: ..." (or "[INST] q [/INST] a") into
 * turns of a fresh QA record; `field` names the source in messages. */
int ds_qa_from_guanaco(ds_ctx *c, ds_qa *q, const char *text, const char *field);
/* Sets question/answer/type from q->turns (first user, first assistant
 * after it). */
int ds_qa_finish(ds_ctx *c, ds_qa *q, const char *field);

#endif
