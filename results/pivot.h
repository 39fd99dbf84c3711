/* Internal to results/: the grouping behind rs_table and rs_plot_svg.
 * A pivot turns deduplicated rows into labelled table rows x columns, each
 * cell holding the metric's values across seeds. */
#ifndef SMUDGE_RESULTS_PIVOT_H
#define SMUDGE_RESULTS_PIVOT_H

#include "results.h"

typedef struct rs_cell {
    double *v; /* metric values of ok units (one per seed) */
    int n, cap;
    int ok;     /* ok units that belong here, with or without the metric */
    int failed; /* failed units that belong here */
} rs_cell;

#define RS_PIVOT_MAX_KEYS 3

typedef struct rs_pivot {
    int n_keys;                               /* label columns */
    const char *key_names[RS_PIVOT_MAX_KEYS]; /* "model", "fingerprint", ... */
    int n_rows;
    char **labels;                            /* [n_rows * n_keys], malloc'd */
    int n_cols;
    char **col_names;                         /* [n_cols], malloc'd */
    rs_cell *cells;                           /* [n_rows * n_cols] */
    int failed_units, skipped_units;          /* among the units shown */
    int seeds_min, seeds_max;                 /* over cells with values */
} rs_pivot;

/* drop_empty: leave out columns with no value and no failure for this
 * metric (a table of fsr needs no base column); the plot keeps them so its
 * two panels line up. */
int rs_pivot_build(const rs_row *rows, size_t n, const char *metric, rs_layout layout,
                   int drop_empty, rs_pivot *p, lm_err *err);
void rs_pivot_free(rs_pivot *p);

#endif
