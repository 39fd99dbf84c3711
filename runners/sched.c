/* The coordinator's view of the DAG: which units wait on which, the queue
 * of ready ones, and what a unit's success or failure releases. Every
 * operation is O(1) or O(children): no scans over all units, so the
 * coordinator keeps up with thousands of units per second. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "internal.h"

int rn_sched_init(rn_sched *s, const rn_dag *dag, const unsigned char *done,
                  const rn_ops *ops, rn_stats *stats, int progress, lm_err *err) {
    memset(s, 0, sizeof *s);
    int n = dag->n;
    size_t cnt = n > 0 ? (size_t)n : 1;
    s->dag = dag;
    s->ops = ops;
    s->stats = stats;
    s->progress = progress;
    s->state = calloc(cnt, 1);
    s->waiting = calloc(cnt, sizeof *s->waiting);
    s->queue = malloc(cnt * sizeof *s->queue);
    s->stack = malloc(cnt * sizeof *s->stack);
    s->qcap = (int)cnt;
    if (!s->state || !s->waiting || !s->queue || !s->stack) {
        rn_sched_free(s);
        return lm_errf(err, "out of memory for %d units", n);
    }
    memset(stats, 0, sizeof *stats);
    stats->total = n;
    for (int u = 0; u < n; u++) {
        s->waiting[u] = dag->n_parents[u];
        if (done && done[u]) {
            s->state[u] = RN_DONE_BEFORE;
            stats->done_before++;
        }
    }
    /* A parent finished before counts as succeeded. */
    for (int u = 0; u < n; u++)
        if (s->state[u] == RN_DONE_BEFORE)
            for (int k = dag->child_start[u]; k < dag->child_start[u + 1]; k++)
                s->waiting[dag->children[k]]--;
    for (int u = 0; u < n; u++) {
        if (s->state[u] == RN_DONE_BEFORE) continue;
        s->unresolved++;
        if (s->waiting[u] == 0) {
            s->state[u] = RN_READY;
            s->queue[(s->qhead + s->qlen++) % s->qcap] = u;
        }
    }
    s->t0 = rn_now();
    return 0;
}

void rn_sched_free(rn_sched *s) {
    free(s->state);
    free(s->waiting);
    free(s->queue);
    free(s->stack);
    memset(s, 0, sizeof *s);
}

int rn_sched_ready(const rn_sched *s) { return s->qlen; }

int rn_sched_pop(rn_sched *s) {
    if (!s->qlen) return -1;
    int u = s->queue[s->qhead];
    s->qhead = (s->qhead + 1) % s->qcap;
    s->qlen--;
    s->state[u] = RN_RUNNING;
    s->running++;
    return u;
}

void rn_sched_requeue(rn_sched *s, int u) {
    if (s->state[u] != RN_RUNNING) return;
    s->state[u] = RN_READY;
    s->running--;
    /* Front of the queue: it was due first. A unit is in the queue at most
     * once, so the ring never overflows. */
    s->qhead = (s->qhead - 1 + s->qcap) % s->qcap;
    s->queue[s->qhead] = u;
    s->qlen++;
}

/* Every not-yet-resolved descendant of `failed` is skipped, with it as the
 * reason. */
static int skip_descendants(rn_sched *s, int failed, lm_err *err) {
    const rn_dag *d = s->dag;
    int top = 0;
    s->stack[top++] = failed;
    while (top) {
        int u = s->stack[--top];
        for (int k = d->child_start[u]; k < d->child_start[u + 1]; k++) {
            int c = d->children[k];
            if (s->state[c] != RN_WAITING) continue; /* resolved, or cannot be ready */
            s->state[c] = RN_SKIPPED;
            s->unresolved--;
            s->stats->skipped++;
            if (s->ops->record_skip(s->ops->ctx, c, failed, err)) return -1;
            s->stack[top++] = c;
        }
    }
    return 0;
}

int rn_sched_finish(rn_sched *s, const rn_report *r, lm_err *err) {
    int u = r->unit;
    if (u < 0 || u >= s->dag->n || s->state[u] != RN_RUNNING)
        return 0; /* a late report for a unit already given up on */
    s->running--;
    s->unresolved--;
    int ok = s->ops->record(s->ops->ctx, r, err);
    if (ok < 0) return -1;
    const rn_dag *d = s->dag;
    if (ok) {
        s->state[u] = RN_OK;
        s->stats->ok++;
        for (int k = d->child_start[u]; k < d->child_start[u + 1]; k++) {
            int c = d->children[k];
            if (s->state[c] == RN_WAITING && --s->waiting[c] == 0) {
                s->state[c] = RN_READY;
                s->queue[(s->qhead + s->qlen++) % s->qcap] = c;
            }
        }
        return 0;
    }
    s->state[u] = RN_FAILED;
    s->stats->failed++;
    return skip_descendants(s, u, err);
}

static void fmt_time(double s, char *out, size_t cap) {
    long t = (long)(s + 0.5);
    if (t >= 3600) snprintf(out, cap, "%ld:%02ld:%02ld", t / 3600, t / 60 % 60, t % 60);
    else snprintf(out, cap, "%02ld:%02ld", t / 60, t % 60);
}

void rn_sched_draw(rn_sched *s, int force) {
    if (!s->progress) return;
    double now = rn_now();
    if (!force && now - s->last_draw < 0.2) return;
    s->last_draw = now;
    const rn_stats *st = s->stats;
    int finished = st->ok + st->failed + st->skipped;
    int todo = st->total - st->done_before;
    double el = now - s->t0;
    char e[32], left[32] = "?";
    fmt_time(el, e, sizeof e);
    if (finished > 0 && s->unresolved > 0) fmt_time(el / finished * s->unresolved, left, sizeof left);
    else if (s->unresolved == 0) snprintf(left, sizeof left, "00:00");
    fprintf(stderr, "\r%d/%d done, %d running, %d failed, %d skipped; %s elapsed, ~%s left\033[K",
            finished, todo, s->running, st->failed, st->skipped, e, left);
    if (force) fputc('\n', stderr);
    fflush(stderr);
}
