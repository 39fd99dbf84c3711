/* Runners: execute a DAG of opaque units, each in a forked child process,
 * on one process (local.c), on MPI ranks (mpi.c), or as Slurm array jobs
 * (slurm.c writes the scripts). Runners know nothing of grids, models or
 * result rows: the caller supplies the DAG and three callbacks.
 *
 * Failure isolation: a unit runs in a child (fork, no exec) with its stdout
 * and stderr captured and its outcome written to a pipe. A crash, abort,
 * non-zero exit, timeout or OOM kill of the child becomes that unit's
 * failure message (signal name, exit code, the last line it printed); the
 * dependents of a failed unit are skipped with the reason; everything else
 * goes on. Children die with their parent (PR_SET_PDEATHSIG). */
#ifndef RN_RUNNER_H
#define RN_RUNNER_H

#include <stddef.h>

#include "../lm/err.h"

#define RN_MSG 1024
#define RN_HOST 64

/* The DAG: units 0..n-1; children of u are children[child_start[u] ..
 * child_start[u+1]); n_parents[u] counts u's parents. */
typedef struct rn_dag {
    int n;
    const int *n_parents;
    const int *child_start; /* n + 1 entries */
    const int *children;
} rn_dag;

/* What the coordinator learns about one execution. */
typedef struct rn_report {
    int unit;
    int rank;                /* where it ran (0 = this process) */
    char host[RN_HOST];
    double t_start, t_end;   /* unix seconds, measured by the parent */
    const char *blob;        /* what the child wrote to its outcome pipe */
    size_t len;
    char failure[RN_MSG];    /* the runner's diagnosis when the child did not
                                end cleanly ("" when blob is the outcome) */
} rn_report;

typedef struct rn_ops {
    void *ctx;
    /* In the child: run unit u, write its outcome to fd, return 0 when an
     * outcome was written (whatever it says). Never returns on a crash. */
    int (*execute)(void *ctx, int u, int rank, int fd);
    /* Coordinator: u's outcome. Returns 1 when u succeeded (its children may
     * run), 0 when it failed, -1 on an error that must stop the run (err
     * set, e.g. the results file cannot be written). */
    int (*record)(void *ctx, const rn_report *r, lm_err *err);
    /* Coordinator: u will not run because unit `because` failed. */
    int (*record_skip)(void *ctx, int u, int because, lm_err *err);
} rn_ops;

typedef struct rn_options {
    int parallel;        /* local: children at once (>= 1) */
    int threads;         /* passed to execute's environment (OMP_NUM_THREADS) */
    double timeout_s;    /* per unit; 0 = none */
    double heartbeat_s;  /* MPI: a busy worker silent this long is dead */
    int progress;        /* draw a progress line on stderr */
    int batch;           /* MPI: most units per work message (0 = 16) */
} rn_options;

typedef struct rn_stats {
    int total;           /* units in the DAG */
    int done_before;     /* already finished when the run started */
    int ok, failed, skipped;
    int executed;        /* children started */
    int workers, workers_lost;
    double seconds;
} rn_stats;

/* Runs every unit not marked in done (NULL = none) whose parents succeed.
 * Returns 0 when the DAG was worked through (units may have failed: see
 * stats), -1 when the run itself had to stop (err set). */
int rn_run_local(const rn_dag *dag, const unsigned char *done, const rn_ops *ops,
                 const rn_options *opt, rn_stats *stats, lm_err *err);

/* ---- MPI ---- */

/* 1 when this process was started by mpirun/mpiexec/srun with MPI. */
int rn_mpi_launched(void);
int rn_mpi_init(int *argc, char ***argv, int *rank, int *size, lm_err *err);
/* MPI_Finalize, unless a rank was lost (stats.workers_lost, known to every
 * survivor): Open MPI 4.1's finalize then waits forever for the dead rank,
 * so the survivors leave without it (mpirun --enable-recovery accepts
 * that). A finalize that hangs anyway (a rank died unnoticed while idle)
 * ends the process with `status` after 30 s. Call after everything is
 * written. */
void rn_mpi_finalize(int ranks_lost, int status);
/* Every rank's vote: 1 when all ranks passed ok != 0. */
int rn_mpi_all(int ok);
/* Rank 0's value of *flag to every rank. */
void rn_mpi_bcast_int(int *flag);
/* 1 when Open MPI was told to survive a rank's death
 * (mpirun --enable-recovery / OMPI_MCA_orte_enable_recovery=1). */
int rn_mpi_recovery_enabled(void);
/* 1 when started by Open MPI's mpirun (not srun's direct launch). */
int rn_mpi_by_mpirun(void);

/* Collective over MPI_COMM_WORLD: rank 0 coordinates (done and ops->record
 * are used there only), every other rank works. `identity` (e.g. the grid
 * hash) must be equal on every rank. With one rank this is rn_run_local. */
int rn_run_mpi(const rn_dag *dag, const unsigned char *done, const rn_ops *ops,
               const rn_options *opt, const char *identity, rn_stats *stats,
               lm_err *err);

/* ---- Slurm ---- */

/* A template with @NAME@ placeholders, filled from key/value pairs. An
 * unknown placeholder is an error (a typo would otherwise reach sbatch). */
typedef struct rn_kv {
    const char *key;
    const char *value;
} rn_kv;

/* Reads path, substitutes, returns malloc'd text. */
char *rn_template_fill(const char *path, const rn_kv *kv, int n_kv, lm_err *err);
/* Writes text to path (mode 0755 when exec), under a temp name + rename. */
int rn_write_file(const char *path, const char *text, int exec, lm_err *err);

typedef struct rn_slurm_stage {
    int stage;     /* DAG depth this array runs */
    int tasks;     /* array tasks in it (each takes a share of the units) */
} rn_slurm_stage;

typedef struct rn_slurm_job {
    const char *name;         /* job-name prefix */
    const char *template_dir; /* holds stage.sbatch, merge.sbatch, submit.sh */
    const char *out_dir;      /* where the scripts, logs and shards go */
    const char *smudge;       /* absolute path of the smudge binary */
    const char *grid;         /* absolute path of the (copied) grid */
    const char *work_dir;     /* absolute */
    const char *results;      /* merged results file, absolute */
    const char *partition;    /* NULL or "" = the cluster's default */
    const char *time;         /* "HH:MM:SS" */
    int ranks_per_task;
    int threads;              /* cpus per rank */
    int max_array;            /* MaxArraySize: arrays are split above it */
    const rn_slurm_stage *stages;
    int n_stages;
} rn_slurm_job;

/* Writes out_dir/stage<k>.sbatch, merge.sbatch and submit.sh. */
int rn_slurm_write(const rn_slurm_job *job, lm_err *err);
/* Runs out_dir/submit.sh; prints the job ids it submitted to stdout. */
int rn_slurm_submit(const char *out_dir, lm_err *err);
/* Which share of a stage's n units task t of `tasks` runs: [*lo, *hi). */
void rn_slurm_share(int n, int tasks, int t, int *lo, int *hi);

#endif
