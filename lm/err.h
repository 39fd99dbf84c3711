/* Error reporting for the runtime.
 *
 * Every fallible function takes an `lm_err *` last and returns 0 on success or
 * a negative code; the message says what failed and where (file, field,
 * offset). Only main() prints and exits. A NULL `lm_err *` is allowed: the
 * message is then dropped. */
#ifndef LM_ERR_H
#define LM_ERR_H

#include <stddef.h>

#define LM_ERR_MSG 1024

typedef struct lm_err {
    char msg[LM_ERR_MSG];
} lm_err;

/* Sets the message (printf-style) and returns -1, so callers can write
 * `return lm_errf(err, "...")`. */
int lm_errf(lm_err *err, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

/* Prepends context ("loading foo: ") to a message already set; returns -1. */
int lm_err_prefix(lm_err *err, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

#endif
