/* Plain-text formats: documents for perplexity (separated by blank lines)
 * and Guanaco chats written as bare "### Human: ... ### Assistant: ..."
 * lines (a record may run over several lines until the next "### Human:"). */
#include "ds_internal.h"

#include <string.h>

static int blank(const char *s, const char *e) {
    for (; s < e; s++)
        if (*s != ' ' && *s != '\t' && *s != '\r') return 0;
    return 1;
}

/* Rejects NUL bytes and bad UTF-8, naming the line. */
static int check_bytes(ds_ctx *c, const char *data, size_t len) {
    size_t bad = ds_utf8_check(data, len);
    const char *nul = memchr(data, '\0', len);
    if (nul && (size_t)(nul - data) < bad) bad = (size_t)(nul - data);
    if (bad == len) return 0;
    int line = 1;
    size_t col = 0;
    for (size_t i = 0; i < bad; i++) {
        if (data[i] == '\n') { line++; col = 0; }
        else col++;
    }
    c->line = line;
    return ds_rec_err(c, data[bad] ? "invalid UTF-8 (column %zu)"
                                   : "NUL byte (column %zu)", col + 1);
}

int ds_parse_text(ds_ctx *c, const char *data, size_t len) {
    if (check_bytes(c, data, len)) return -1;
    const char *p = data, *end = data + len;
    int line = 1;
    while (p < end) {
        /* skip blank lines */
        const char *e = memchr(p, '\n', (size_t)(end - p));
        if (!e) e = end;
        if (blank(p, e)) {
            p = e + 1;
            line++;
            continue;
        }
        const char *start = p;
        int start_line = line;
        const char *stop = e;
        while (p < end) {
            e = memchr(p, '\n', (size_t)(end - p));
            if (!e) e = end;
            if (blank(p, e)) break;
            stop = e;
            p = e + 1;
            line++;
        }
        while (stop > start && stop[-1] == '\r') stop--;
        c->line = start_line;
        ds_doc *d = ds_push(c);
        if (!d) return ds_rec_err(c, "out of memory");
        d->line = start_line;
        d->text = ds_arena_strndup(&c->ds->arena, start, (size_t)(stop - start));
        if (!d->text) return ds_rec_err(c, "out of memory");
    }
    return 0;
}

static int at_human(const char *s, const char *e) {
    while (s < e && (*s == ' ' || *s == '\t')) s++;
    return (size_t)(e - s) >= 10 && strncmp(s, "### Human:", 10) == 0;
}

int ds_parse_guanaco_lines(ds_ctx *c, const char *data, size_t len) {
    if (check_bytes(c, data, len)) return -1;
    const char *p = data, *end = data + len;
    int line = 1;
    while (p < end) {
        const char *e = memchr(p, '\n', (size_t)(end - p));
        if (!e) e = end;
        if (blank(p, e)) { p = e + 1; line++; continue; }
        c->line = line;
        if (!at_human(p, e)) {
            if (c->lenient) {
                ds_rec_err(c, "expected a line starting with '### Human:'");
                if (c->ds->n_bad++ == 0) memcpy(c->ds->problem, c->err->msg, sizeof c->ds->problem);
                p = e + 1;
                line++;
                continue;
            }
            return ds_rec_err(c, "expected a line starting with '### Human:'");
        }
        const char *start = p;
        int start_line = line;
        p = e + 1;
        line++;
        while (p < end) {
            e = memchr(p, '\n', (size_t)(end - p));
            if (!e) e = end;
            if (at_human(p, e)) break;
            p = e + 1;
            line++;
        }
        const char *stop = p < end ? p : end;
        c->line = start_line;
        char *text = ds_arena_strndup(&c->ds->arena, start, (size_t)(stop - start));
        ds_qa *q = ds_push(c);
        if (!q || !text) return ds_rec_err(c, "out of memory");
        q->line = start_line;
        q->q_idx = q->a_idx = -1;
        q->original_q_type = q->answer_from_type = DS_Q_COUNT;
        if (ds_qa_from_guanaco(c, q, text, "text")) {
            c->ds->n--;
            if (!c->lenient) return -1;
            if (c->ds->n_bad++ == 0) memcpy(c->ds->problem, c->err->msg, sizeof c->ds->problem);
        }
    }
    return 0;
}
