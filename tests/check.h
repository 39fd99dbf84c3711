/* A tiny test harness: CHECK records a failure with its line and goes on,
 * so one run reports every broken assertion; check_done() prints the tally
 * and returns the exit code (0 pass, 1 fail). SKIP exits with ctest's skip
 * code after saying why. */
#ifndef SMUDGE_CHECK_H
#define SMUDGE_CHECK_H

#include <math.h>
#include <stdio.h>
#include <stdlib.h>

static int check_passed, check_failed;

#define CHECK(cond, ...)                                                    \
    do {                                                                    \
        if (cond) {                                                         \
            check_passed++;                                                 \
        } else {                                                            \
            check_failed++;                                                 \
            fprintf(stderr, "%s:%d: CHECK(%s) failed: ", __FILE__,          \
                    __LINE__, #cond);                                       \
            fprintf(stderr, __VA_ARGS__);                                   \
            fputc('\n', stderr);                                            \
        }                                                                   \
    } while (0)

#define CHECK_NEAR(a, b, tol, what)                                         \
    CHECK(fabs((double)(a) - (double)(b)) <= (tol), "%s: %.8g vs %.8g",     \
          (what), (double)(a), (double)(b))

#define SKIP(...)                                                           \
    do {                                                                    \
        fprintf(stderr, "SKIP: ");                                          \
        fprintf(stderr, __VA_ARGS__);                                       \
        fputc('\n', stderr);                                                \
        exit(77);                                                           \
    } while (0)

static inline int check_done(void) {
    printf("%d passed, %d failed\n", check_passed, check_failed);
    return check_failed ? 1 : 0;
}

/* The real external files, or NULL (then the caller SKIPs). */
static inline const char *check_assets(void) {
    const char *a = getenv("SMUDGE_ASSETS");
    return (a && *a) ? a : NULL;
}

#endif
