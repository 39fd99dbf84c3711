/* Small helpers shared by the subcommands: option parsing, number parsing
 * with the option named in the error, and terminal detection for progress. */
#ifndef SMUDGE_CLI_H
#define SMUDGE_CLI_H

#include <stdbool.h>
#include <stdint.h>

#include "err.h"

/* Exit codes scripts can rely on. */
enum { CLI_OK = 0, CLI_FAIL = 1, CLI_USAGE = 2 };

typedef struct cli_opt {
    const char *name;   /* "--model" */
    int takes_value;    /* 1: "--model PATH"; 0: a switch */
    const char *value;  /* set when seen; switches get "1" */
    int seen;
} cli_opt;

/* Parses argv[first..] against opts (NULL-name terminated). Positional
 * arguments are collected into pos (at most max_pos). Returns 0, or -1 with
 * the message set ("unknown option --x", "--model needs a value"). */
int cli_parse(int argc, char **argv, int first, cli_opt *opts,
              const char **pos, int max_pos, int *n_pos, lm_err *err);
const char *cli_get(const cli_opt *opts, const char *name);
bool cli_has(const cli_opt *opts, const char *name);
/* True when argv holds -h or --help. */
bool cli_wants_help(int argc, char **argv, int first);

int cli_int(const char *opt, const char *s, long lo, long hi, long *out,
            lm_err *err);
int cli_float(const char *opt, const char *s, double *out, lm_err *err);
/* "1,2,3" -> ids (malloc'd). */
int cli_int_list(const char *opt, const char *s, int32_t **out, int *n,
                 lm_err *err);

/* Progress goes to stderr only when stderr is a terminal. */
bool cli_progress_enabled(void);

#endif
