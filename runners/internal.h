/* Pieces the runners share: child processes (child.c) and the DAG
 * bookkeeping of a coordinator (sched.c). Not part of the public API. */
#ifndef RN_INTERNAL_H
#define RN_INTERNAL_H

#include <sys/types.h>

#include "runner.h"

double rn_now(void);      /* monotonic seconds */
double rn_unix_now(void); /* wall-clock unix seconds */
void rn_host(char *out, size_t cap);
/* Sleeps for a growing pause while idle: 0 resets it. */
void rn_backoff(int *level);

/* ---- one unit in a child process ---- */

typedef struct rn_child {
    pid_t pid;           /* 0 = slot free */
    int unit;
    int out_fd, err_fd;  /* read ends; -1 once at EOF */
    char *buf;           /* the outcome the child wrote */
    size_t len, cap;
    char tail[2048];     /* the last bytes it printed */
    size_t tail_len;
    double t_start, mono_start, reaped_at, eof_at;
    int reaped, status, timed_out;
} rn_child;

/* Forks a child that runs ops->execute(ops->ctx, unit, rank, fd). */
int rn_child_start(rn_child *c, const rn_ops *ops, int unit, int rank,
                   int threads, lm_err *err);
/* Reads what the running children wrote, reaps the ones that exited and
 * kills the ones past timeout_s; waits up to wait_ms for something to
 * happen. */
void rn_children_pump(rn_child *cs, int n, int wait_ms, double timeout_s);
/* 1 when the child has exited and its pipes are drained. */
int rn_child_finished(const rn_child *c);
/* The report for a finished child (blob points into c->buf). */
void rn_child_report(const rn_child *c, int rank, double timeout_s, rn_report *r);
/* Frees the slot (after the report has been used). */
void rn_child_clear(rn_child *c);
/* SIGKILL and reap. */
void rn_child_kill(rn_child *c);

/* ---- coordinator bookkeeping ---- */

enum { RN_WAITING = 0, RN_READY, RN_RUNNING, RN_OK, RN_FAILED, RN_SKIPPED, RN_DONE_BEFORE };

typedef struct rn_sched {
    const rn_dag *dag;
    const rn_ops *ops;
    unsigned char *state;
    int *waiting;        /* parents not yet succeeded */
    int *queue;          /* ready FIFO (ring) */
    int qhead, qlen, qcap;
    int *stack;          /* for skipping descendants */
    int unresolved;      /* units neither succeeded, failed nor skipped */
    int running;
    rn_stats *stats;
    int progress;
    double t0, last_draw;
} rn_sched;

int rn_sched_init(rn_sched *s, const rn_dag *dag, const unsigned char *done,
                  const rn_ops *ops, rn_stats *stats, int progress, lm_err *err);
void rn_sched_free(rn_sched *s);
int rn_sched_ready(const rn_sched *s); /* units in the ready queue */
/* Next ready unit (now RUNNING), or -1. */
int rn_sched_pop(rn_sched *s);
/* Back to the ready queue: it was handed out but never started. */
void rn_sched_requeue(rn_sched *s, int u);
/* The unit's outcome: records it, then releases or skips its children.
 * -1 when recording failed (err set). */
int rn_sched_finish(rn_sched *s, const rn_report *r, lm_err *err);
/* Redraws the progress line (at most 5 times a second unless force). */
void rn_sched_draw(rn_sched *s, int force);

/* Local child slots driven by a coordinator (local.c): runs ready units
 * in up to n slots until nothing is ready or running. step() starts what
 * it can, pumps for up to wait_ms, finishes what ended. */
typedef struct rn_local {
    rn_child *slots;
    int n;
    const rn_options *opt;
} rn_local;

int rn_local_init(rn_local *l, int n, const rn_options *opt, lm_err *err);
int rn_local_step(rn_local *l, rn_sched *s, int wait_ms, lm_err *err);
int rn_local_busy(const rn_local *l);
void rn_local_free(rn_local *l);

#endif
