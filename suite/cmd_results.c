/* smudge table / merge / plot / results: read result stores (results.h)
 * and turn them into leaderboards, merged files, charts or JSON lines. */
#include <cjson/cJSON.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "commands.h"
#include "results.h"

#define MAX_FILES 4096

/* Rows of several files, concatenated in the order given (so a later file
 * wins ties between equally new rows, as in merge). */
static int read_all(const char **paths, int n, rs_row **rows, size_t *n_rows, lm_err *err) {
    *rows = NULL;
    *n_rows = 0;
    for (int i = 0; i < n; i++) {
        rs_row *r;
        size_t k;
        if (rs_store_read(paths[i], &r, &k, err)) {
            rs_rows_free(*rows, *n_rows);
            *rows = NULL;
            *n_rows = 0;
            return -1;
        }
        rs_row *all = realloc(*rows, (*n_rows + k + 1) * sizeof *all);
        if (!all) {
            rs_rows_free(r, k);
            return lm_errf(err, "out of memory");
        }
        memcpy(all + *n_rows, r, k * sizeof *r); /* rows move, they own by pointer */
        free(r);
        *rows = all;
        *n_rows += k;
    }
    return 0;
}

static const char table_help[] =
    "usage: smudge table RESULTS.h5 [MORE.h5 ...] [--format md|csv|latex]\n"
    "                    [--metric NAME] [--layout stages|methods|extraction]\n\n"
    "Prints a leaderboard from one or more result files (several files are\n"
    "read as if merged: per unit, the newest ok row counts).\n\n"
    "  --format F   md (default), csv or latex\n"
    "  --metric M   fsr (default), ppl, ppl_ref, an accuracy, ... any metric\n"
    "               the rows carry. Rates (fsr, ftr, asr, acc...) are shown\n"
    "               in percent.\n"
    "  --layout L   stages (default): model x fingerprint rows, columns\n"
    "               base -> fingerprinted -> erased -> recovered (the\n"
    "               MEraser paper's main table);\n"
    "               methods: removal methods x fingerprints;\n"
    "               extraction: the extraction track's table, model x attack x\n"
    "               victim x defence rows, its five metrics as columns.\n\n"
    "Cells are mean ± 95% CI (t-distribution) across seeds; one seed shows\n"
    "the mean alone. \"failed\": every unit of the cell failed; a * marks\n"
    "cells with some failed seeds. CSV gives mean, ci95_lo, ci95_hi and n\n"
    "per column (rates clipped to [0,100]).\n";

int cmd_table(int argc, char **argv) {
    if (cli_wants_help(argc, argv, 2)) {
        fputs(table_help, stdout);
        return CLI_OK;
    }
    cli_opt opts[] = {{"--format", 1}, {"--metric", 1}, {"--layout", 1}, {0}};
    const char *files[MAX_FILES];
    int n_files = 0;
    lm_err err = {{0}};
    if (cli_parse(argc, argv, 2, opts, files, MAX_FILES, &n_files, &err)) {
        fprintf(stderr, "smudge table: %s\n", err.msg);
        return CLI_USAGE;
    }
    rs_format fmt = RS_FMT_MD;
    rs_layout layout = RS_LAYOUT_STAGES;
    const char *f = cli_get(opts, "--format"), *l = cli_get(opts, "--layout");
    const char *metric = cli_get(opts, "--metric") ? cli_get(opts, "--metric") : "fsr";
    if (n_files == 0) {
        fprintf(stderr, "smudge table: give a results file (see --help)\n");
        return CLI_USAGE;
    }
    if (f && rs_format_from_name(f, &fmt)) {
        fprintf(stderr, "smudge table: --format: '%s' is not md, csv or latex\n", f);
        return CLI_USAGE;
    }
    if (l && rs_layout_from_name(l, &layout)) {
        fprintf(stderr, "smudge table: --layout: '%s' is not stages, methods or extraction\n", l);
        return CLI_USAGE;
    }
    rs_row *rows;
    size_t n;
    if (read_all(files, n_files, &rows, &n, &err)) {
        fprintf(stderr, "smudge table: %s\n", err.msg);
        return CLI_FAIL;
    }
    int rc = rs_table(rows, n, fmt, metric, layout, stdout, &err);
    if (rc) fprintf(stderr, "smudge table: %s\n", err.msg);
    rs_rows_free(rows, n);
    return rc ? CLI_FAIL : CLI_OK;
}

static const char merge_help[] =
    "usage: smudge merge SHARD.h5 [SHARD.h5 ...] --out ALL.h5 [--skip-bad]\n\n"
    "Copies the rows of every shard into one new file (written as ALL.h5.tmp\n"
    "and renamed when complete): per unit key, the newest row with status ok,\n"
    "else the newest row; the union of all metric columns; per-item detail\n"
    "with its row. The merged file's root records its inputs (merged_from).\n\n"
    "  --out FILE   the merged file (must not exist)\n"
    "  --skip-bad   leave out damaged or unreadable shards, with a warning\n"
    "               naming each (default: fail, naming the file)\n";

int cmd_merge(int argc, char **argv) {
    if (cli_wants_help(argc, argv, 2)) {
        fputs(merge_help, stdout);
        return CLI_OK;
    }
    cli_opt opts[] = {{"--out", 1}, {"--skip-bad", 0}, {0}};
    const char *files[MAX_FILES];
    int n_files = 0;
    lm_err err = {{0}};
    if (cli_parse(argc, argv, 2, opts, files, MAX_FILES, &n_files, &err)) {
        fprintf(stderr, "smudge merge: %s\n", err.msg);
        return CLI_USAGE;
    }
    const char *out = cli_get(opts, "--out");
    if (!out || n_files == 0) {
        fprintf(stderr, "smudge merge: give shard files and --out FILE (see --help)\n");
        return CLI_USAGE;
    }
    FILE *exists = fopen(out, "rb");
    if (exists) {
        fclose(exists);
        fprintf(stderr, "smudge merge: %s already exists; remove it or choose another --out\n",
                out);
        return CLI_FAIL;
    }
    char *warnings = NULL;
    int rc = rs_merge(files, n_files, out, cli_has(opts, "--skip-bad"), &warnings, &err);
    if (warnings) {
        for (char *line = strtok(warnings, "\n"); line; line = strtok(NULL, "\n"))
            fprintf(stderr, "smudge merge: warning: %s\n", line);
        free(warnings);
    }
    if (rc) {
        fprintf(stderr, "smudge merge: %s\n", err.msg);
        return CLI_FAIL;
    }
    char *commit = rs_store_read_attr(out, "commit", NULL);
    cJSON *c = commit ? cJSON_Parse(commit) : NULL;
    cJSON *nr = cJSON_GetObjectItem(c, "n_rows");
    fprintf(stderr, "smudge merge: %.0f rows from %d file%s into %s\n",
            cJSON_IsNumber(nr) ? nr->valuedouble : -1.0, n_files, n_files == 1 ? "" : "s", out);
    cJSON_Delete(c);
    free(commit);
    return CLI_OK;
}

static const char plot_help[] =
    "usage: smudge plot RESULTS.h5 [MORE.h5 ...] --out FILE.svg\n\n"
    "Draws an SVG bar chart: FSR (%) and perplexity (ppl, else ppl_ref) per\n"
    "removal method, one bar per fingerprint, whiskers for the 95% CI across\n"
    "seeds; the fingerprinted model without removal comes first.\n";

int cmd_plot(int argc, char **argv) {
    if (cli_wants_help(argc, argv, 2)) {
        fputs(plot_help, stdout);
        return CLI_OK;
    }
    cli_opt opts[] = {{"--out", 1}, {0}};
    const char *files[MAX_FILES];
    int n_files = 0;
    lm_err err = {{0}};
    if (cli_parse(argc, argv, 2, opts, files, MAX_FILES, &n_files, &err)) {
        fprintf(stderr, "smudge plot: %s\n", err.msg);
        return CLI_USAGE;
    }
    const char *out = cli_get(opts, "--out");
    if (!out || n_files == 0) {
        fprintf(stderr, "smudge plot: give a results file and --out FILE.svg (see --help)\n");
        return CLI_USAGE;
    }
    rs_row *rows = NULL;
    size_t n = 0;
    int rc = read_all(files, n_files, &rows, &n, &err);
    if (rc == 0) rc = rs_plot_svg(rows, n, out, &err);
    if (rc) fprintf(stderr, "smudge plot: %s\n", err.msg);
    rs_rows_free(rows, n);
    return rc ? CLI_FAIL : CLI_OK;
}

static const char results_help[] =
    "usage: smudge results show RESULTS.h5 [--latest]\n"
    "       smudge results check RESULTS.h5 [MORE.h5 ...]\n"
    "       smudge results attr RESULTS.h5 NAME\n\n"
    "show:  every row as one JSON object per line (fields, metrics with\n"
    "       their item counts, per-item detail); --latest keeps only the row\n"
    "       that counts per unit (newest ok, else newest).\n"
    "check: verifies each file completely (datasets, row counts, the row\n"
    "       checksum chain, HDF5 data checksums); prints 'ok N rows' per file;\n"
    "       exit 1 if any file is damaged.\n"
    "attr:  prints a root attribute (provenance: git_commit, grid_json,\n"
    "       grid_sha256, hosts, slurm_job_ids, merged_from, ...).\n";

int cmd_results(int argc, char **argv) {
    if (argc < 3 || cli_wants_help(argc, argv, 2)) {
        fputs(results_help, argc < 3 ? stderr : stdout);
        return argc < 3 ? CLI_USAGE : CLI_OK;
    }
    const char *sub = argv[2];
    cli_opt opts[] = {{"--latest", 0}, {0}};
    const char *pos[MAX_FILES];
    int n_pos = 0;
    lm_err err = {{0}};
    if (cli_parse(argc, argv, 3, opts, pos, MAX_FILES, &n_pos, &err)) {
        fprintf(stderr, "smudge results: %s\n", err.msg);
        return CLI_USAGE;
    }
    if (strcmp(sub, "show") == 0 && n_pos == 1) {
        rs_row *rows;
        size_t n, *idx = NULL, m = 0;
        if (rs_store_read(pos[0], &rows, &n, &err)) {
            fprintf(stderr, "smudge results: %s\n", err.msg);
            return CLI_FAIL;
        }
        int latest = cli_has(opts, "--latest");
        if (latest && rs_rows_latest(rows, n, &idx, &m, &err)) {
            fprintf(stderr, "smudge results: %s\n", err.msg);
            rs_rows_free(rows, n);
            return CLI_FAIL;
        }
        for (size_t i = 0; i < (latest ? m : n); i++) {
            char *j = rs_row_to_json(&rows[latest ? idx[i] : i]);
            if (j) puts(j);
            free(j);
        }
        free(idx);
        rs_rows_free(rows, n);
        return CLI_OK;
    }
    if (strcmp(sub, "check") == 0 && n_pos >= 1) {
        int bad = 0;
        for (int i = 0; i < n_pos; i++) {
            rs_row *rows;
            size_t n;
            if (rs_store_read(pos[i], &rows, &n, &err)) {
                fprintf(stderr, "smudge results: DAMAGED %s\n", err.msg);
                bad = 1;
                continue;
            }
            printf("ok %zu rows %s\n", n, pos[i]);
            rs_rows_free(rows, n);
        }
        return bad ? CLI_FAIL : CLI_OK;
    }
    if (strcmp(sub, "attr") == 0 && n_pos == 2) {
        char *v = rs_store_read_attr(pos[0], pos[1], &err);
        if (!v) {
            fprintf(stderr, "smudge results: %s\n", err.msg);
            return CLI_FAIL;
        }
        puts(v);
        free(v);
        return CLI_OK;
    }
    fprintf(stderr, "smudge results: expected 'show FILE', 'check FILE...' or 'attr FILE NAME' "
            "(see --help)\n");
    return CLI_USAGE;
}
