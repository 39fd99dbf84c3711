/* The single-process runner: up to `parallel` units at once, each in its
 * own child process. The MPI coordinator uses the same slots to finish a
 * grid itself when every worker rank is gone. */
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "internal.h"

enum { MAX_SLOTS = 64 };

int rn_local_init(rn_local *l, int n, const rn_options *opt, lm_err *err) {
    if (n < 1) n = 1;
    if (n > MAX_SLOTS) n = MAX_SLOTS;
    l->slots = calloc((size_t)n, sizeof *l->slots);
    if (!l->slots) return lm_errf(err, "out of memory");
    l->n = n;
    l->opt = opt;
    return 0;
}

void rn_local_free(rn_local *l) {
    for (int i = 0; l->slots && i < l->n; i++) rn_child_kill(&l->slots[i]);
    free(l->slots);
    memset(l, 0, sizeof *l);
}

int rn_local_busy(const rn_local *l) {
    int n = 0;
    for (int i = 0; i < l->n; i++) n += l->slots[i].pid != 0;
    return n;
}

int rn_local_step(rn_local *l, rn_sched *s, int wait_ms, lm_err *err) {
    for (int i = 0; i < l->n && rn_sched_ready(s); i++) {
        if (l->slots[i].pid) continue;
        int u = rn_sched_pop(s);
        lm_err e = {{0}};
        if (rn_child_start(&l->slots[i], s->ops, u, 0, l->opt->threads, &e)) {
            /* Cannot fork: that unit fails, the run goes on. */
            rn_report r;
            memset(&r, 0, sizeof r);
            r.unit = u;
            rn_host(r.host, sizeof r.host);
            r.t_start = r.t_end = rn_unix_now();
            snprintf(r.failure, sizeof r.failure, "could not start: %.900s", e.msg);
            if (rn_sched_finish(s, &r, err)) return -1;
            continue;
        }
        s->stats->executed++;
    }
    if (!rn_local_busy(l)) return 0;
    rn_children_pump(l->slots, l->n, wait_ms, l->opt->timeout_s);
    for (int i = 0; i < l->n; i++) {
        rn_child *c = &l->slots[i];
        if (!rn_child_finished(c)) continue;
        rn_report r;
        rn_child_report(c, 0, l->opt->timeout_s, &r);
        int rc = rn_sched_finish(s, &r, err);
        rn_child_clear(c);
        if (rc) return -1;
    }
    return 0;
}

static volatile sig_atomic_t interrupted;
static void on_signal(int sig) { interrupted = sig; }

int rn_run_local(const rn_dag *dag, const unsigned char *done, const rn_ops *ops,
                 const rn_options *opt, rn_stats *stats, lm_err *err) {
    rn_sched s;
    rn_local l;
    memset(&l, 0, sizeof l);
    double t0 = rn_now();
    if (rn_sched_init(&s, dag, done, ops, stats, opt->progress, err)) return -1;
    if (rn_local_init(&l, opt->parallel, opt, err)) {
        rn_sched_free(&s);
        return -1;
    }
    stats->workers = l.n;
    /* Ctrl-C stops the run cleanly: children killed, results closed. */
    struct sigaction sa, old_int, old_term;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_signal;
    sigaction(SIGINT, &sa, &old_int);
    sigaction(SIGTERM, &sa, &old_term);
    interrupted = 0;
    int rc = 0;
    while (s.unresolved > 0) {
        if (interrupted) {
            rc = lm_errf(err, "interrupted by signal %d; rerun the same command to resume",
                         (int)interrupted);
            break;
        }
        if (!rn_sched_ready(&s) && !rn_local_busy(&l)) {
            rc = lm_errf(err, "internal error: %d units can never become ready", s.unresolved);
            break;
        }
        if (rn_local_step(&l, &s, 100, err)) {
            rc = -1;
            break;
        }
        rn_sched_draw(&s, 0);
    }
    rn_sched_draw(&s, 1);
    rn_local_free(&l);
    sigaction(SIGINT, &old_int, NULL);
    sigaction(SIGTERM, &old_term, NULL);
    stats->seconds = rn_now() - t0;
    rn_sched_free(&s);
    return rc;
}
