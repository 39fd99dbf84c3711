/* smudge run and smudge plan: a grid's units, run alone, under mpirun or
 * as one Slurm array task, with results flushed unit by unit and resume.
 *
 * Resume: a unit counts as done when the results file has a status=ok row
 * with its hash and its artifact is in the work dir. A unit whose artifact
 * was committed but whose row never reached the results file (the
 * coordinator was killed in between) gets its row from the artifact's
 * result.json, without running again. Everything else runs. */
#include <errno.h>
#include <ftw.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "cli.h"
#include "commands.h"
#include "grid.h"
#include "results.h"
#include "run.h"
#include "runner.h"
#include "unit.h"

static const char run_help[] =
    "usage: smudge run [GRID] [--out FILE.h5] [--work-dir DIR] [--resume | --fresh]\n"
    "                  [--jobs N] [--progress | --no-progress]\n"
    "       mpirun --enable-recovery -np N smudge run [GRID] ...\n\n"
    "Runs every work unit of GRID (a JSON grid; see configs/; without GRID the\n"
    "built-in default grid) and writes one row per unit to the results file\n"
    "(default: the grid's \"output\", else results.h5), flushed unit by unit.\n"
    "Artifacts go to the work dir (default: the grid's \"work_dir\", else work/).\n\n"
    "  --resume     (default) skip units already done: a status=ok row with the\n"
    "               same hash in the results file and the artifact in the work\n"
    "               dir; units finished but never recorded are recovered from\n"
    "               their artifacts without running again\n"
    "  --fresh      start over: the old results file is moved to FILE.h5.bak and\n"
    "               every unit runs again\n"
    "  --jobs N     units at once in a single process (default: resources.parallel)\n\n"
    "Under mpirun rank 0 coordinates and the other ranks run units, each unit in\n"
    "a forked child process: a crash is that unit's failure, recorded with its\n"
    "signal and last output line; its dependents are skipped. Pass mpirun\n"
    "--enable-recovery so that a worker rank's death does not end the job (the\n"
    "coordinator then notices the silence after resources.heartbeat_s and goes\n"
    "on); without it Open MPI ends the whole job and rerunning the same command\n"
    "resumes. Exit status: 0 when every unit is ok, 1 otherwise (mpirun\n"
    "--enable-recovery itself always exits 0: read the summary line or the\n"
    "results). Debug grids append \"start\"/\"done\" lines to $SMUDGE_DEBUG_LOG.\n\n"
    "Slurm array tasks (written by smudge slurm) add --stage S --task T --tasks N:\n"
    "run task T's share of stage S into FILE.h5 (written as FILE.h5.tmp, renamed\n"
    "when complete).\n";

static const char plan_help[] =
    "usage: smudge plan [GRID] [--work-dir DIR] [--stage S]\n\n"
    "Validates GRID and lists its work units: index, kind, DAG stage, estimated\n"
    "cost, hash prefix, whether the artifact is already in the work dir, key and\n"
    "inputs; then the totals and the critical path.\n";

typedef struct run_ctx {
    su_grid grid;
    su_plan plan;
    char work_dir[SU_PATH_LEN];
    int threads;
    rs_store *store;            /* rank 0 only */
    int *n_parents, *child_start, *children;
    rn_dag dag;
    int n_recorded;
    double store_seconds;       /* spent in rs_store_append */
    int progress;
} run_ctx;

static double mono_now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static double unix_now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

/* ---- the runner's callbacks ---- */

static int run_execute(void *vctx, int u, int rank, int fd) {
    run_ctx *c = vctx;
    rs_row row;
    su_unit_execute(&c->plan, u, c->work_dir, c->threads, rank, &row);
    char *json = su_row_encode(&row);
    rs_row_free(&row);
    if (!json) return -1;
    size_t len = strlen(json), off = 0;
    while (off < len) {
        ssize_t w = write(fd, json + off, len - off);
        if (w < 0 && errno == EINTR) continue;
        if (w <= 0) break;
        off += (size_t)w;
    }
    free(json);
    return off == len ? 0 : -1;
}

static void print_failure(const run_ctx *c, const rs_row *row) {
    fprintf(stderr, "%s%s %s: %s\n", c->progress ? "\n" : "", row->status, row->unit_key,
            row->message);
}

static int append_row(run_ctx *c, const rs_row *row, lm_err *err) {
    double t0 = mono_now();
    int rc = rs_store_append(c->store, row, err);
    c->store_seconds += mono_now() - t0;
    if (rc) return lm_err_prefix(err, "results: ");
    c->n_recorded++;
    return 0;
}

static int run_record(void *vctx, const rn_report *r, lm_err *err) {
    run_ctx *c = vctx;
    rs_row row;
    rs_row_init(&row);
    lm_err e = {{0}};
    if (r->failure[0] || !r->len || su_row_decode(r->blob, r->len, &row, &e)) {
        rs_row_free(&row);
        rs_row_init(&row);
        rs_row_fill_provenance(&row, r->rank);
        RS_SET(&row, status, RS_FAILED);
        rs_row_set_message(&row, "%s", r->failure[0] ? r->failure : e.msg);
        row.time_start = r->t_start;
        row.time_end = r->t_end;
        row.wall_seconds = r->t_end - r->t_start;
        RS_SET(&row, host, r->host);
    }
    su_row_identity(&c->plan, r->unit, &row);
    row.rank = r->rank;
    if (strcmp(row.status, RS_OK)) print_failure(c, &row);
    int rc = append_row(c, &row, err);
    int ok = strcmp(row.status, RS_OK) == 0;
    rs_row_free(&row);
    return rc ? -1 : ok;
}

static int run_record_skip(void *vctx, int u, int because, lm_err *err) {
    run_ctx *c = vctx;
    rs_row row;
    rs_row_init(&row);
    rs_row_fill_provenance(&row, 0);
    su_row_identity(&c->plan, u, &row);
    RS_SET(&row, status, RS_SKIPPED);
    rs_row_set_message(&row, "skipped: input '%s' failed", c->plan.units[because].key);
    row.time_start = row.time_end = unix_now();
    int rc = append_row(c, &row, err);
    rs_row_free(&row);
    return rc;
}

/* ---- setup ---- */

static int load_grid(run_ctx *c, const char *path, lm_err *err) {
    if (path) return su_grid_load(&c->grid, path, err);
    char *text = su_default_grid_json();
    if (!text) return lm_errf(err, "out of memory");
    int rc = su_grid_parse(&c->grid, text, "built-in default grid", NULL, err);
    free(text);
    return rc;
}

static int build_dag(run_ctx *c, lm_err *err) {
    int n = c->plan.n;
    c->n_parents = malloc((size_t)(n + 1) * sizeof *c->n_parents);
    c->child_start = malloc((size_t)(n + 1) * sizeof *c->child_start);
    c->children = c->plan.children;
    if (!c->n_parents || !c->child_start) return lm_errf(err, "out of memory");
    for (int u = 0; u < n; u++) {
        c->n_parents[u] = c->plan.units[u].n_parents;
        c->child_start[u] = c->plan.units[u].child_off;
    }
    c->child_start[n] = n ? c->plan.units[n - 1].child_off + c->plan.units[n - 1].n_children : 0;
    c->dag = (rn_dag){n, c->n_parents, c->child_start, c->children};
    return 0;
}

static void free_ctx(run_ctx *c) {
    free(c->n_parents);
    free(c->child_start);
    su_plan_free(&c->plan);
    su_grid_free(&c->grid);
}

static int cmp_str(const void *a, const void *b) {
    return strcmp(*(const char *const *)a, *(const char *const *)b);
}

/* The provenance the results file starts with. */
static char *provenance(const run_ctx *c, int ranks, int argc, char **argv) {
    size_t cap = strlen(c->grid.canonical) + 8192;
    char *p = malloc(cap);
    if (!p) return NULL;
    char cmd[2048] = "";
    for (int i = 0; i < argc; i++) {
        strncat(cmd, i ? " " : "", sizeof cmd - strlen(cmd) - 1);
        strncat(cmd, argv[i], sizeof cmd - strlen(cmd) - 1);
    }
    for (char *q = cmd; *q; q++)
        if (*q == '"' || *q == '\\') *q = '\'';
    snprintf(p, cap,
             "{\"smudge_version\":\"%s\",\"grid\":%s,\"ranks\":%d,\"track\":\"%s\","
             "\"command\":\"%s\"}",
             SMUDGE_VERSION, c->grid.canonical, ranks, c->grid.debug ? "debug" : "real", cmd);
    return p;
}

/* Opens (or creates) the results file and marks what is done. Rank 0. */
static int prepare_results(run_ctx *c, const char *out, int fresh, int shard,
                           const unsigned char *active, unsigned char *done, int ranks,
                           int argc, char **argv, int *n_done, int *n_recovered,
                           int *n_skipped, lm_err *err) {
    struct stat st;
    int exists = stat(out, &st) == 0;
    if (exists && (fresh || shard)) {
        char bak[SU_PATH_LEN + 32];
        snprintf(bak, sizeof bak, "%s.bak", out);
        if (rename(out, bak)) return lm_errf(err, "%s: cannot move aside: %s", out, strerror(errno));
        if (!shard) fprintf(stderr, "smudge run: --fresh: moved %s to %s\n", out, bak);
        exists = 0;
    }
    char **ok_hashes = NULL;
    size_t n_ok = 0;
    rs_row *rows = NULL;
    size_t n_rows = 0;
    if (exists) {
        if (rs_store_read(out, &rows, &n_rows, err))
            return lm_err_prefix(err, "cannot resume (rerun with --fresh to start over, "
                                      "or --out another file): ");
        ok_hashes = malloc((n_rows ? n_rows : 1) * sizeof *ok_hashes);
        if (!ok_hashes) {
            rs_rows_free(rows, n_rows);
            return lm_errf(err, "out of memory");
        }
        for (size_t i = 0; i < n_rows; i++)
            if (!strcmp(rows[i].status, RS_OK)) ok_hashes[n_ok++] = rows[i].unit_hash;
        qsort(ok_hashes, n_ok, sizeof *ok_hashes, cmp_str);
        if (rs_store_open_append(out, &c->store, err)) {
            free(ok_hashes);
            rs_rows_free(rows, n_rows);
            return -1;
        }
        if (rs_store_warning(c->store))
            fprintf(stderr, "smudge run: %s: %s\n", out, rs_store_warning(c->store));
        rs_store_set_attr(c->store, "grid_json", c->grid.canonical, NULL);
        rs_store_set_attr(c->store, "grid_sha256", c->grid.sha256, NULL);
    } else {
        char *prov = provenance(c, ranks, argc, argv);
        int rc = prov ? rs_store_create(out, prov, &c->store, err) : lm_errf(err, "out of memory");
        free(prov);
        if (rc) return -1;
    }
    int rc = 0;
    for (int u = 0; u < c->plan.n && rc == 0; u++) {
        if (!active[u]) {
            done[u] = 1;
            continue;
        }
        if (fresh) continue;
        const char *h = c->plan.units[u].hash;
        int in_results = n_ok && bsearch(&h, ok_hashes, n_ok, sizeof *ok_hashes, cmp_str);
        if (!su_artifact_exists(&c->plan, u, c->work_dir)) continue;
        if (in_results) {
            done[u] = 1;
            (*n_done)++;
            continue;
        }
        /* Finished before, never recorded: take its row from the artifact. */
        rs_row row;
        lm_err e = {{0}};
        if (su_artifact_load(&c->plan, u, c->work_dir, &row, &e) == 0) {
            rc = append_row(c, &row, err);
            rs_row_free(&row);
            if (rc == 0) {
                done[u] = 1;
                (*n_done)++;
                (*n_recovered)++;
            }
        }
    }
    /* Slurm stage tasks: a unit whose input did not finish in an earlier
     * stage is recorded as skipped rather than run. */
    for (int u = 0; shard && rc == 0 && u < c->plan.n; u++) {
        if (done[u]) continue;
        const su_unit *un = &c->plan.units[u];
        for (int k = 0; k < un->n_parents; k++) {
            int par = c->plan.parents[un->parent_off + k];
            if (active[par] || su_artifact_exists(&c->plan, par, c->work_dir)) continue;
            rs_row row;
            rs_row_init(&row);
            rs_row_fill_provenance(&row, 0);
            su_row_identity(&c->plan, u, &row);
            RS_SET(&row, status, RS_SKIPPED);
            rs_row_set_message(&row, "skipped: input '%s' did not finish in an earlier stage",
                               c->plan.units[par].key);
            row.time_start = row.time_end = unix_now();
            rc = append_row(c, &row, err);
            rs_row_free(&row);
            done[u] = 1;
            (*n_skipped)++;
            break;
        }
    }
    free(ok_hashes);
    rs_rows_free(rows, n_rows);
    return rc;
}

/* One run, from a parsed command line (smudge run) or a generated grid
 * (smudge bench dispatch). */
typedef struct run_args {
    const char *grid_path;  /* NULL: grid_text, else the built-in default */
    const char *grid_text;
    const char *out, *work_dir; /* NULL: the grid's */
    int fresh, no_store;    /* no_store: rows are counted, not written */
    long jobs, stage, task, tasks;
    int progress;           /* -1 auto, 0 off, 1 on */
    int argc;
    char **argv;
} run_args;

typedef struct run_summary {
    int rank, size, n_active, n_done;
    rn_stats st;
    double store_seconds;
} run_summary;

static int record_count(void *vctx, const rn_report *r, lm_err *err) {
    run_ctx *c = vctx;
    rs_row row;
    rs_row_init(&row);
    int ok = !r->failure[0] && r->len && su_row_decode(r->blob, r->len, &row, err) == 0 &&
             !strcmp(row.status, RS_OK);
    rs_row_free(&row);
    c->n_recorded++;
    return ok;
}

static int record_skip_count(void *vctx, int u, int because, lm_err *err) {
    run_ctx *c = vctx;
    c->n_recorded++;
    return 0;
}

static int run_main(const run_args *a, run_summary *sum) {
    lm_err err = {{0}};
    int argc = a->argc;
    char **argv = a->argv;
    int shard = a->stage >= 0;
    int rank = 0, size = 1, mpi = rn_mpi_launched();
    memset(sum, 0, sizeof *sum);
    if (mpi && rn_mpi_init(&argc, &argv, &rank, &size, &err)) {
        fprintf(stderr, "smudge run: %s\n", err.msg);
        return CLI_FAIL;
    }
    sum->rank = rank;
    sum->size = size;
    run_ctx c;
    memset(&c, 0, sizeof c);
    int ok = (a->grid_text ? su_grid_parse(&c.grid, a->grid_text, "generated grid", NULL, &err)
                           : load_grid(&c, a->grid_path, &err)) == 0 &&
             su_plan_build(&c.plan, &c.grid, &err) == 0 &&
             su_plan_check_executors(&c.plan, &err) == 0 && build_dag(&c, &err) == 0;
    if (!ok) fprintf(stderr, "smudge run%s: %s\n", rank ? " (a worker rank)" : "", err.msg);
    if (mpi && size > 1 && !rn_mpi_all(ok)) ok = 0;
    if (!ok) {
        free_ctx(&c);
        if (mpi) rn_mpi_finalize(0, CLI_FAIL);
        return CLI_FAIL;
    }
    const char *out = a->out ? a->out : c.grid.output;
    snprintf(c.work_dir, sizeof c.work_dir, "%s", a->work_dir ? a->work_dir : c.grid.work_dir);
    c.threads = c.grid.res.threads;
    if (shard && a->stage >= c.plan.n_stages && rank == 0)
        fprintf(stderr, "smudge run: the plan has only %d stages; nothing to do\n", c.plan.n_stages);

    /* Which units this invocation covers: all, or one Slurm task's share. */
    unsigned char *active = calloc((size_t)c.plan.n + 1, 1);
    unsigned char *done = calloc((size_t)c.plan.n + 1, 1);
    int n_active = 0, n_in_stage = 0, lo = 0, hi = 0;
    if (!active || !done) ok = 0;
    for (int u = 0; u < c.plan.n; u++) n_in_stage += c.plan.units[u].stage == a->stage;
    if (shard) rn_slurm_share(n_in_stage, (int)a->tasks, (int)a->task, &lo, &hi);
    for (int u = 0, k = 0; ok && u < c.plan.n; u++) {
        if (!shard) {
            active[u] = 1;
        } else if (c.plan.units[u].stage == a->stage) {
            active[u] = k >= lo && k < hi;
            k++;
        }
        n_active += active[u];
    }
    sum->n_active = n_active;

    char shard_tmp[SU_PATH_LEN + 16];
    const char *store_path = out;
    if (shard) {
        snprintf(shard_tmp, sizeof shard_tmp, "%s.tmp", out);
        store_path = shard_tmp;
    }
    int n_done = 0, n_recovered = 0, n_preskipped = 0;
    if (rank == 0 && ok) {
        int swept = su_work_dir_sweep(c.work_dir);
        if (swept) fprintf(stderr, "smudge run: removed %d unfinished artifact%s of killed "
                                   "runs from %s\n", swept, swept > 1 ? "s" : "", c.work_dir);
    }
    if (rank == 0 && ok && !a->no_store) {
        if (prepare_results(&c, store_path, a->fresh, shard, active, done, size, argc, argv,
                            &n_done, &n_recovered, &n_preskipped, &err)) {
            fprintf(stderr, "smudge run: %s\n", err.msg);
            ok = 0;
        }
    }
    for (int u = 0; a->no_store && u < c.plan.n; u++) done[u] = !active[u];
    if (rank == 0 && ok && size > 1 && rn_mpi_by_mpirun() && !rn_mpi_recovery_enabled())
        fprintf(stderr, "smudge run: note: without mpirun --enable-recovery a worker "
                        "rank's death ends the whole job (rerun to resume)\n");
    if (mpi && size > 1) rn_mpi_bcast_int(&ok);
    if (!ok) {
        if (c.store) rs_store_close(c.store, NULL);
        free(active);
        free(done);
        free_ctx(&c);
        if (mpi) rn_mpi_finalize(0, CLI_FAIL);
        return CLI_FAIL;
    }

    rn_options o = {
        .parallel = a->jobs ? (int)a->jobs : c.grid.res.parallel,
        .threads = c.threads,
        .timeout_s = c.grid.res.timeout_s,
        .heartbeat_s = c.grid.res.heartbeat_s,
        .progress = rank == 0 && (a->progress > 0 || (a->progress < 0 && cli_progress_enabled())),
    };
    c.progress = o.progress;
    rn_ops ops = {&c, run_execute, run_record, run_record_skip};
    if (a->no_store) {
        ops.record = record_count;
        ops.record_skip = record_skip_count;
    }
    char identity[128];
    snprintf(identity, sizeof identity, "%.16s:%d:%ld:%ld", c.grid.sha256, c.plan.n, a->stage,
             a->task);
    rn_stats st;
    memset(&st, 0, sizeof st);
    int rc = mpi ? rn_run_mpi(&c.dag, rank == 0 ? done : NULL, &ops, &o, identity, &st, &err)
                 : rn_run_local(&c.dag, done, &ops, &o, &st, &err);
    int status = CLI_OK;
    if (rc) {
        fprintf(stderr, "smudge run%s: %s\n", rank ? " (a worker rank)" : "", err.msg);
        status = CLI_FAIL;
    }
    if (rank == 0) {
        lm_err cerr = {{0}};
        if (c.store && rs_store_close(c.store, &cerr)) {
            fprintf(stderr, "smudge run: closing %s: %s\n", store_path, cerr.msg);
            status = CLI_FAIL;
        } else if (c.store && shard && rename(store_path, out)) {
            fprintf(stderr, "smudge run: rename %s -> %s: %s\n", store_path, out, strerror(errno));
            status = CLI_FAIL;
        }
        fprintf(stderr,
                "smudge run: %d units: %d ok, %d failed, %d skipped, %d done before "
                "(%d recovered from artifacts); %d executed in %.2f s (%.1f units/s) on %d %s%s\n",
                n_active, st.ok + n_done, st.failed, st.skipped + n_preskipped, n_done, n_recovered,
                st.executed, st.seconds, st.seconds > 0 ? st.executed / st.seconds : 0.0,
                mpi && size > 1 ? size - 1 : o.parallel,
                mpi && size > 1 ? "worker ranks" : "local slots",
                st.workers_lost ? " (some worker ranks were lost)" : "");
        if (!a->no_store)
            fprintf(stderr, "smudge run: results: %d rows appended to %s in %.2f s (%.1f ms/row)\n",
                    c.n_recorded, store_path, c.store_seconds,
                    c.n_recorded ? 1e3 * c.store_seconds / c.n_recorded : 0.0);
        if (rc == 0 && (st.failed || st.skipped || n_preskipped || st.ok + n_done < n_active))
            status = CLI_FAIL;
    }
    sum->st = st;
    sum->n_done = n_done;
    sum->store_seconds = c.store_seconds;
    free(active);
    free(done);
    free_ctx(&c);
    if (mpi) rn_mpi_finalize(st.workers_lost, status);
    return status;
}

int cmd_run(int argc, char **argv) {
    if (cli_wants_help(argc, argv, 2)) {
        fputs(run_help, stdout);
        return CLI_OK;
    }
    cli_opt opts[] = {{"--out", 1},      {"--work-dir", 1}, {"--resume", 0},
                      {"--fresh", 0},    {"--jobs", 1},     {"--stage", 1},
                      {"--task", 1},     {"--tasks", 1},    {"--progress", 0},
                      {"--no-progress", 0}, {0}};
    const char *pos[1];
    int n_pos = 0;
    lm_err err = {{0}};
    if (cli_parse(argc, argv, 2, opts, pos, 1, &n_pos, &err)) {
        fprintf(stderr, "smudge run: %s\n", err.msg);
        return CLI_USAGE;
    }
    run_args a = {.grid_path = n_pos ? pos[0] : NULL,
                  .out = cli_get(opts, "--out"),
                  .work_dir = cli_get(opts, "--work-dir"),
                  .fresh = cli_has(opts, "--fresh"),
                  .stage = -1,
                  .task = -1,
                  .progress = cli_has(opts, "--progress") ? 1 : cli_has(opts, "--no-progress") ? 0 : -1,
                  .argc = argc,
                  .argv = argv};
    if (a.fresh && cli_has(opts, "--resume")) {
        fprintf(stderr, "smudge run: --resume and --fresh exclude each other\n");
        return CLI_USAGE;
    }
    if ((cli_get(opts, "--jobs") && cli_int("--jobs", cli_get(opts, "--jobs"), 1, 64, &a.jobs, &err)) ||
        (cli_get(opts, "--stage") && cli_int("--stage", cli_get(opts, "--stage"), 0, 1000, &a.stage, &err)) ||
        (cli_get(opts, "--task") && cli_int("--task", cli_get(opts, "--task"), 0, 100000000, &a.task, &err)) ||
        (cli_get(opts, "--tasks") && cli_int("--tasks", cli_get(opts, "--tasks"), 1, 100000000, &a.tasks, &err))) {
        fprintf(stderr, "smudge run: %s\n", err.msg);
        return CLI_USAGE;
    }
    int shard = a.stage >= 0 || a.task >= 0 || a.tasks > 0;
    if (shard && (a.stage < 0 || a.task < 0 || a.tasks < 1 || a.task >= a.tasks || !a.out)) {
        fprintf(stderr, "smudge run: --stage, --task, --tasks (task < tasks) and --out go together\n");
        return CLI_USAGE;
    }
    run_summary sum;
    return run_main(&a, &sum);
}

/* ---- smudge bench dispatch ---- */

static const char dispatch_help[] =
    "usage: [mpirun -np N] smudge bench dispatch [--units N] [--work-dir DIR]\n"
    "                                            [--store FILE.h5]\n\n"
    "Dispatch overhead: a generated debug grid of about N trivial units (default\n"
    "10000; 1001 per model) run through the same runner as smudge run, each unit in\n"
    "its own child process writing its artifact. Without --store the rows are\n"
    "counted, not written, which measures the coordinator and the workers alone;\n"
    "with --store they go to FILE.h5 through rs_store_append, as in smudge run.\n"
    "Prints one JSON object with units_per_s. The work dir (default\n"
    "bench-dispatch-work) is emptied first.\n";

static int rm_tree_entry(const char *path, const struct stat *st, int flag, struct FTW *ftw) {
    (void)st;
    (void)ftw;
    return flag == FTW_DP ? rmdir(path) : unlink(path);
}

int su_bench_dispatch(int argc, char **argv) {
    if (cli_wants_help(argc, argv, 3)) {
        fputs(dispatch_help, stdout);
        return CLI_OK;
    }
    cli_opt opts[] = {{"--units", 1}, {"--work-dir", 1}, {"--store", 1}, {0}};
    lm_err err = {{0}};
    long units = 10000;
    if (cli_parse(argc, argv, 3, opts, NULL, 0, NULL, &err) ||
        (cli_get(opts, "--units") && cli_int("--units", cli_get(opts, "--units"), 1, 10000000, &units, &err))) {
        fprintf(stderr, "smudge bench dispatch: %s\n", err.msg);
        return CLI_USAGE;
    }
    /* Per model: 1 base-eval + 10 seeds x 5 fingerprints x (implant, its
     * eval, 9 removals and their evals) = 1001 units. */
    long models = (units + 1000) / 1001;
    size_t cap = 512 + (size_t)models * 16;
    char *text = malloc(cap);
    if (!text) return CLI_FAIL;
    size_t o = (size_t)snprintf(text, cap, "{\"name\":\"dispatch\",\"track\":\"debug\",\"models\":[");
    for (long m = 0; m < models; m++) o += (size_t)snprintf(text + o, cap - o, "%s\"m%ld\"", m ? "," : "", m);
    snprintf(text + o, cap - o,
             "],\"fingerprints\":[{\"type\":\"debug\",\"params\":{\"variant\":[1,2,3,4,5]}}],"
             "\"methods\":[{\"name\":\"debug\",\"params\":{\"variant\":[1,2,3,4,5,6,7,8,9]}}],"
             "\"metrics\":[\"fsr\"],\"seeds\":[1,2,3,4,5,6,7,8,9,10]}");
    const char *wd = cli_get(opts, "--work-dir") ? cli_get(opts, "--work-dir") : "bench-dispatch-work";
    const char *store = cli_get(opts, "--store");
    int is_rank0 = !getenv("OMPI_COMM_WORLD_RANK") || !strcmp(getenv("OMPI_COMM_WORLD_RANK"), "0");
    if (is_rank0) {
        nftw(wd, rm_tree_entry, 16, FTW_DEPTH | FTW_PHYS);
        if (store) unlink(store);
    }
    run_args a = {.grid_text = text, .work_dir = wd, .out = store, .fresh = 1,
                  .no_store = store == NULL, .stage = -1, .task = -1, .progress = 0,
                  .argc = argc, .argv = argv};
    run_summary sum;
    int rc = run_main(&a, &sum);
    free(text);
    if (sum.rank == 0 && sum.n_active) {
        const rn_stats *st = &sum.st;
        /* The coordinator's own CPU time (its children not included):
         * how close it is to being the bottleneck. */
        struct rusage ru;
        getrusage(RUSAGE_SELF, &ru);
        double cpu = (double)ru.ru_utime.tv_sec + 1e-6 * (double)ru.ru_utime.tv_usec +
                     (double)ru.ru_stime.tv_sec + 1e-6 * (double)ru.ru_stime.tv_usec;
        printf("{\"bench\":\"dispatch\",\"units\":%d,\"ok\":%d,\"ranks\":%d,\"workers\":%d,"
               "\"store\":%s,\"seconds\":%.3f,\"units_per_s\":%.1f,\"store_seconds\":%.3f,"
               "\"rank0_cpu_seconds\":%.3f}\n",
               sum.n_active, st->ok, sum.size, st->workers, store ? "true" : "false",
               st->seconds, st->seconds > 0 ? st->executed / st->seconds : 0.0,
               sum.store_seconds, cpu);
    }
    return rc;
}

/* ---- smudge plan ---- */

int cmd_plan(int argc, char **argv) {
    if (cli_wants_help(argc, argv, 2)) {
        fputs(plan_help, stdout);
        return CLI_OK;
    }
    cli_opt opts[] = {{"--work-dir", 1}, {"--stage", 1}, {0}};
    const char *pos[1];
    int n_pos = 0;
    lm_err err = {{0}};
    long stage = -1;
    if (cli_parse(argc, argv, 2, opts, pos, 1, &n_pos, &err) ||
        (cli_get(opts, "--stage") && cli_int("--stage", cli_get(opts, "--stage"), 0, 1000, &stage, &err))) {
        fprintf(stderr, "smudge plan: %s\n", err.msg);
        return CLI_USAGE;
    }
    run_ctx c;
    memset(&c, 0, sizeof c);
    if (load_grid(&c, n_pos ? pos[0] : NULL, &err) || su_plan_build(&c.plan, &c.grid, &err) ||
        su_plan_check_executors(&c.plan, &err)) {
        fprintf(stderr, "smudge plan: %s\n", err.msg);
        free_ctx(&c);
        return CLI_FAIL;
    }
    const su_grid *g = &c.grid;
    const char *wd = cli_get(opts, "--work-dir") ? cli_get(opts, "--work-dir") : g->work_dir;
    printf("grid %s (%s track, sha256 %.16s): %d models, %d fingerprints, %d method "
           "sets, %d metrics, %d seeds\n",
           g->name, g->debug ? "debug" : "real", g->sha256, g->n_models, g->n_fps,
           g->n_methods, g->n_metrics, g->n_seeds);
    printf("%6s  %-9s %5s %8s  %-12s %-4s  %s\n", "#", "kind", "stage", "cost_s", "hash",
           "done", "key  <- inputs");
    int per_kind[SU_KIND_COUNT] = {0}, n_done = 0;
    double total = 0, *finish = calloc((size_t)c.plan.n + 1, sizeof *finish), critical = 0;
    for (int u = 0; u < c.plan.n; u++) {
        const su_unit *un = &c.plan.units[u];
        double start = 0;
        for (int k = 0; k < un->n_parents; k++) {
            int par = c.plan.parents[un->parent_off + k];
            if (finish && finish[par] > start) start = finish[par];
        }
        if (finish) finish[u] = start + un->cost;
        if (finish && finish[u] > critical) critical = finish[u];
        per_kind[un->kind]++;
        total += un->cost;
        int is_done = su_artifact_exists(&c.plan, u, wd);
        n_done += is_done;
        if (stage >= 0 && un->stage != stage) continue;
        printf("%6d  %-9s %5d %8.1f  %.12s %-4s  %s", u, su_kind_name(un->kind), un->stage,
               un->cost, un->hash, is_done ? "yes" : "-", un->key);
        for (int k = 0; k < un->n_parents; k++)
            printf("%s#%d", k ? ", " : "  <- ", c.plan.parents[un->parent_off + k]);
        printf("\n");
    }
    free(finish);
    printf("totals:");
    for (int k = 0; k < SU_KIND_COUNT; k++)
        if (per_kind[k]) printf(" %s %d,", su_kind_name((su_kind)k), per_kind[k]);
    printf(" %d units in %d stages, %d already in %s\n", c.plan.n, c.plan.n_stages, n_done, wd);
    printf("estimated cost: %.1f s of work, critical path %.1f s\n", total, critical);
    free_ctx(&c);
    return CLI_OK;
}
