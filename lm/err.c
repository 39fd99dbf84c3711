#include "err.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>

int lm_errf(lm_err *err, const char *fmt, ...) {
    if (err) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(err->msg, sizeof err->msg, fmt, ap);
        va_end(ap);
    }
    return -1;
}

int lm_err_prefix(lm_err *err, const char *fmt, ...) {
    if (err) {
        char prefix[LM_ERR_MSG], old[LM_ERR_MSG];
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(prefix, sizeof prefix, fmt, ap);
        va_end(ap);
        memcpy(old, err->msg, sizeof old);
        /* The prefix is short; the tail of a long message is what gets cut. */
        snprintf(err->msg, sizeof err->msg, "%.200s%.800s", prefix, old);
    }
    return -1;
}
