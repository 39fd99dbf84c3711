/* The MPI runner: rank 0 coordinates, every other rank works.
 *
 * Protocol (all point-to-point on MPI_COMM_WORLD):
 *   worker -> 0  HELLO  identity and host; the worker is ready
 *   0 -> worker  WORK   [k, u1..uk] units to run in order; k = 0 means stop
 *   0 -> worker  PING   keep-alive for idle workers
 *   worker -> 0  BEAT   [u] "still running u", every heartbeat_s/4
 *   worker -> 0  DONE   report header + the child's outcome bytes
 * The coordinator hands out batches sized to the ready queue (large while
 * many units are ready, single units near the end), refills a worker when
 * it holds at most one unit, and polls with MPI_Iprobe plus a short sleep
 * so it leaves the cores to the workers.
 *
 * A worker rank that dies: Open MPI 4.1 aborts the whole job unless it was
 * started with `mpirun --enable-recovery` (or OMPI_MCA_orte_enable_recovery
 * =1); then the job goes on and the coordinator notices the silence: a
 * worker holding units that sends nothing for heartbeat_s is declared dead,
 * the unit it was running is recorded as failed with that reason, the rest
 * of its batch goes back to the queue, and the run finishes on the other
 * ranks (or on rank 0 itself when none is left). Without recovery the job
 * dies, and rerunning the same command resumes from the results file and
 * the committed artifacts. Workers give up when the coordinator has been
 * silent for 3 heartbeats. */
#include <mpi.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "internal.h"

enum { TAG_HELLO = 11, TAG_WORK, TAG_PING, TAG_BEAT, TAG_DONE };

typedef struct done_hdr {
    int32_t unit, rank;
    double t_start, t_end;
    char host[RN_HOST];
    char failure[RN_MSG];
    int64_t len;
} done_hdr;

typedef struct hello_msg {
    char identity[128];
    char host[RN_HOST];
} hello_msg;

int rn_mpi_launched(void) {
    return getenv("OMPI_COMM_WORLD_SIZE") != NULL || getenv("PMIX_RANK") != NULL ||
           getenv("PMI_RANK") != NULL;
}

int rn_mpi_init(int *argc, char ***argv, int *rank, int *size, lm_err *err) {
    if (MPI_Init(argc, argv) != MPI_SUCCESS) return lm_errf(err, "MPI_Init failed");
    /* Errors come back as codes: a dead peer must not abort rank 0. */
    MPI_Comm_set_errhandler(MPI_COMM_WORLD, MPI_ERRORS_RETURN);
    MPI_Comm_rank(MPI_COMM_WORLD, rank);
    MPI_Comm_size(MPI_COMM_WORLD, size);
    return 0;
}

/* The exit status a hung MPI_Finalize leaves with (set just before it). */
static volatile sig_atomic_t finalize_status;
static void finalize_timeout(int sig) {
    (void)sig;
    static const char msg[] = "smudge: MPI_Finalize did not return in 30 s (a rank died?); "
                              "leaving without it\n";
    ssize_t w = write(STDERR_FILENO, msg, sizeof msg - 1);
    (void)w;
    _exit(finalize_status);
}

void rn_mpi_finalize(int ranks_lost, int status) {
    int init = 0, fin = 0;
    MPI_Initialized(&init);
    MPI_Finalized(&fin);
    if (!init || fin) return;
    fflush(NULL);
    if (ranks_lost) return; /* finalize would wait for the dead */
    finalize_status = status;
    struct sigaction sa, old;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = finalize_timeout;
    sigaction(SIGALRM, &sa, &old);
    alarm(30);
    MPI_Finalize();
    alarm(0);
    sigaction(SIGALRM, &old, NULL);
}

int rn_mpi_all(int ok) {
    int in = ok ? 1 : 0, out = 0;
    MPI_Allreduce(&in, &out, 1, MPI_INT, MPI_MIN, MPI_COMM_WORLD);
    return out;
}

void rn_mpi_bcast_int(int *flag) { MPI_Bcast(flag, 1, MPI_INT, 0, MPI_COMM_WORLD); }

int rn_mpi_recovery_enabled(void) {
    const char *v = getenv("OMPI_MCA_orte_enable_recovery");
    return v && (!strcmp(v, "1") || !strcmp(v, "true"));
}

int rn_mpi_by_mpirun(void) { return getenv("OMPI_MCA_orte_hnp_uri") != NULL; }

/* Sends and waits, but not forever: a dead peer never completes a large
 * (rendezvous) send. Returns 0, or -1 after timeout_s. */
static int send_bounded(const void *buf, int len, int dest, int tag, double timeout_s) {
    MPI_Request req;
    if (MPI_Isend(buf, len, MPI_BYTE, dest, tag, MPI_COMM_WORLD, &req) != MPI_SUCCESS)
        return -1;
    double t0 = rn_now();
    int lvl = 0;
    for (;;) {
        int flag = 0;
        if (MPI_Test(&req, &flag, MPI_STATUS_IGNORE) != MPI_SUCCESS) return -1;
        if (flag) return 0;
        if (rn_now() - t0 > timeout_s) {
            MPI_Cancel(&req);
            MPI_Request_free(&req);
            return -1;
        }
        rn_backoff(&lvl);
    }
}

/* ---------------------------------------------------------------- worker */

static int worker(int rank, const rn_ops *ops, const rn_options *opt,
                  const char *identity, rn_stats *stats, lm_err *err) {
    double hb = opt->heartbeat_s > 0 ? opt->heartbeat_s : 60;
    hello_msg h;
    memset(&h, 0, sizeof h);
    snprintf(h.identity, sizeof h.identity, "%s", identity);
    rn_host(h.host, sizeof h.host);
    if (send_bounded(&h, sizeof h, 0, TAG_HELLO, 3 * hb))
        return lm_errf(err, "rank %d: cannot reach the coordinator", rank);
    int *queue = NULL, qhead = 0, qlen = 0, qcap = 0;
    int stop = 0, rc = 0, lvl = 0, lost = 0;
    double last_from_coord = rn_now(), last_beat = 0;
    rn_child c;
    memset(&c, 0, sizeof c);
    int *rbuf = NULL, rcap = 0;
    while (!stop || c.pid) {
        /* Everything the coordinator sent. */
        for (;;) {
            int flag = 0;
            MPI_Status st;
            MPI_Iprobe(0, MPI_ANY_TAG, MPI_COMM_WORLD, &flag, &st);
            if (!flag) break;
            int count = 0;
            MPI_Get_count(&st, MPI_INT, &count);
            if (count > rcap) {
                int *b = realloc(rbuf, (size_t)count * sizeof *b);
                if (!b) {
                    rc = lm_errf(err, "out of memory");
                    goto out;
                }
                rbuf = b;
                rcap = count;
            }
            MPI_Recv(rbuf, count, MPI_INT, 0, st.MPI_TAG, MPI_COMM_WORLD, MPI_STATUS_IGNORE);
            last_from_coord = rn_now();
            if (st.MPI_TAG != TAG_WORK) continue;
            int k = count > 0 ? rbuf[0] : 0;
            if (k <= 0 || k > count - 1) {
                stop = 1;
                if (k == 0 && count >= 2 && rbuf[1]) lost = 1;
                if (c.pid) rn_child_kill(&c); /* stop means now */
                continue;
            }
            if (qlen + k > qcap) {
                int ncap = qcap ? qcap : 64;
                while (qlen + k > ncap) ncap *= 2;
                int *q = malloc((size_t)ncap * sizeof *q);
                if (!q) {
                    rc = lm_errf(err, "out of memory");
                    goto out;
                }
                for (int i = 0; i < qlen; i++) q[i] = queue[(qhead + i) % qcap];
                free(queue);
                queue = q;
                qhead = 0;
                qcap = ncap;
            }
            for (int i = 0; i < k; i++) queue[(qhead + qlen++) % qcap] = rbuf[1 + i];
        }
        if (c.pid) {
            rn_children_pump(&c, 1, 20, opt->timeout_s);
            if (rn_child_finished(&c)) {
                rn_report r;
                rn_child_report(&c, rank, opt->timeout_s, &r);
                size_t total = sizeof(done_hdr) + r.len;
                char *msg = malloc(total);
                if (!msg) {
                    rc = lm_errf(err, "out of memory");
                    goto out;
                }
                done_hdr dh;
                memset(&dh, 0, sizeof dh);
                dh.unit = r.unit;
                dh.rank = rank;
                dh.t_start = r.t_start;
                dh.t_end = r.t_end;
                memcpy(dh.host, r.host, sizeof dh.host);
                memcpy(dh.failure, r.failure, sizeof dh.failure);
                dh.len = (int64_t)r.len;
                memcpy(msg, &dh, sizeof dh);
                if (r.len) memcpy(msg + sizeof dh, r.blob, r.len);
                rn_child_clear(&c);
                int bad = total > (size_t)INT32_MAX ||
                          send_bounded(msg, (int)total, 0, TAG_DONE, 3 * hb);
                free(msg);
                if (bad) {
                    rc = lm_errf(err, "rank %d: cannot report to the coordinator", rank);
                    goto out;
                }
                lvl = 0;
            } else if (rn_now() - last_beat > hb / 4) {
                int u = c.unit;
                send_bounded(&u, sizeof u, 0, TAG_BEAT, 3 * hb);
                last_beat = rn_now();
            }
            continue;
        }
        if (stop) break;
        if (qlen) {
            int u = queue[qhead];
            qhead = (qhead + 1) % qcap;
            qlen--;
            lm_err e = {{0}};
            if (rn_child_start(&c, ops, u, rank, opt->threads, &e)) {
                done_hdr dh;
                memset(&dh, 0, sizeof dh);
                dh.unit = u;
                dh.rank = rank;
                dh.t_start = dh.t_end = rn_unix_now();
                rn_host(dh.host, sizeof dh.host);
                snprintf(dh.failure, sizeof dh.failure, "could not start: %.900s", e.msg);
                send_bounded(&dh, sizeof dh, 0, TAG_DONE, 3 * hb);
                continue;
            }
            send_bounded(&u, sizeof u, 0, TAG_BEAT, 3 * hb);
            last_beat = rn_now();
            continue;
        }
        if (rn_now() - last_from_coord > 3 * hb + 5) {
            rc = lm_errf(err, "rank %d: the coordinator has been silent for %.0f s; "
                              "giving up", rank, rn_now() - last_from_coord);
            goto out;
        }
        rn_backoff(&lvl);
    }
out:
    if (c.pid) rn_child_kill(&c);
    free(queue);
    free(rbuf);
    /* Coordinator gone or ranks lost: finalize would hang. */
    if (lost || rc) stats->workers_lost = 1;
    return rc;
}

/* ----------------------------------------------------------- coordinator */

typedef struct worker_state {
    int alive, hello, stopped;
    int *units;          /* handed out, not yet reported, in order */
    int n, cap;
    double last_heard, last_sent;
    MPI_Request req;     /* the WORK/PING in flight */
    int sending;
    int *sendbuf;
    int sendcap;
    char host[RN_HOST];
} worker_state;

static int send_slot_free(worker_state *w) {
    if (!w->sending) return 1;
    int flag = 0;
    MPI_Test(&w->req, &flag, MPI_STATUS_IGNORE);
    if (flag) w->sending = 0;
    return !w->sending;
}

static int post_ints(worker_state *w, int rank, int tag, const int *v, int n) {
    if (n > w->sendcap) {
        int *b = realloc(w->sendbuf, (size_t)n * sizeof *b);
        if (!b) return -1;
        w->sendbuf = b;
        w->sendcap = n;
    }
    if (n) memcpy(w->sendbuf, v, (size_t)n * sizeof *v);
    if (MPI_Isend(w->sendbuf, n, MPI_INT, rank, tag, MPI_COMM_WORLD, &w->req) != MPI_SUCCESS)
        return -1;
    w->sending = 1;
    w->last_sent = rn_now();
    return 0;
}

/* Tells a worker to stop, once, and whether ranks were lost (then nobody
 * calls MPI_Finalize); never waits on a dead one. */
static void stop_worker(worker_state *w, int rank, int lost) {
    if (w->stopped) return;
    if (w->sending && w->alive) {
        double t0 = rn_now();
        while (!send_slot_free(w) && rn_now() - t0 < 5) {
        }
    }
    if (w->sending) {
        /* A send to a dead rank that never completed: leave it be. */
        w->sending = 0;
        w->sendbuf = NULL; /* leaked on purpose: MPI may still own it */
        w->sendcap = 0;
    }
    int stop[2] = {0, lost};
    post_ints(w, rank, TAG_WORK, stop, 2);
    w->stopped = 1;
}

static void worker_lost(rn_sched *s, worker_state *w, int rank, double silent,
                        rn_stats *stats, lm_err *err, int *rc) {
    w->alive = 0;
    stats->workers_lost++;
    fprintf(stderr, "\nsmudge run: worker rank %d (%s) stopped responding; %s\n", rank,
            w->host, w->n ? "its unit is recorded as failed, the others go on" : "");
    for (int i = 0; i < w->n; i++) {
        int u = w->units[i];
        if (i > 0) {
            rn_sched_requeue(s, u); /* never started there */
            continue;
        }
        rn_report r;
        memset(&r, 0, sizeof r);
        r.unit = u;
        r.rank = rank;
        snprintf(r.host, sizeof r.host, "%s", w->host);
        r.t_start = r.t_end = rn_unix_now();
        snprintf(r.failure, sizeof r.failure,
                 "worker rank %d on %s stopped responding (nothing for %.0f s) while "
                 "running this unit: the rank died (SIGKILL, OOM killer, node failure)",
                 rank, w->host, silent);
        if (!*rc && rn_sched_finish(s, &r, err)) *rc = -1;
    }
    w->n = 0;
}

static int coordinator(int size, const rn_dag *dag, const unsigned char *done,
                       const rn_ops *ops, const rn_options *opt, const char *identity,
                       rn_stats *stats, lm_err *err) {
    double t0 = rn_now();
    double hb = opt->heartbeat_s > 0 ? opt->heartbeat_s : 60;
    int batch_max = opt->batch > 0 ? opt->batch : 16;
    rn_sched s;
    if (rn_sched_init(&s, dag, done, ops, stats, opt->progress, err)) return -1;
    stats->workers = size - 1;
    worker_state *ws = calloc((size_t)size, sizeof *ws);
    if (!ws) {
        rn_sched_free(&s);
        return lm_errf(err, "out of memory");
    }
    for (int r = 1; r < size; r++) {
        ws[r].alive = 1;
        ws[r].last_heard = ws[r].last_sent = rn_now();
    }
    rn_local local;
    memset(&local, 0, sizeof local);
    char *rbuf = NULL;
    int rcap = 0, rc = 0, lvl = 0, n_ready_workers = 0;
    int *batch = malloc((size_t)(batch_max + 1) * sizeof *batch);
    if (!batch) rc = lm_errf(err, "out of memory");

    while (rc == 0 && s.unresolved > 0) {
        int activity = 0;
        double now = rn_now();
        /* 1. Everything that arrived. */
        for (;;) {
            int flag = 0;
            MPI_Status st;
            MPI_Iprobe(MPI_ANY_SOURCE, MPI_ANY_TAG, MPI_COMM_WORLD, &flag, &st);
            if (!flag) break;
            activity = 1;
            int count = 0;
            MPI_Get_count(&st, MPI_BYTE, &count);
            if (count + 1 > rcap) {
                char *b = realloc(rbuf, (size_t)count + 1);
                if (!b) {
                    rc = lm_errf(err, "out of memory receiving %d bytes", count);
                    break;
                }
                rbuf = b;
                rcap = count + 1;
            }
            int src = st.MPI_SOURCE;
            MPI_Recv(rbuf, count, MPI_BYTE, src, st.MPI_TAG, MPI_COMM_WORLD, MPI_STATUS_IGNORE);
            if (src <= 0 || src >= size) continue;
            worker_state *w = &ws[src];
            w->last_heard = rn_now();
            if (!w->alive) {
                stop_worker(w, src, 1); /* declared dead, came back: release it */
                continue;
            }
            if (st.MPI_TAG == TAG_HELLO && count == (int)sizeof(hello_msg)) {
                hello_msg h;
                memcpy(&h, rbuf, sizeof h);
                h.identity[sizeof h.identity - 1] = h.host[sizeof h.host - 1] = '\0';
                if (strcmp(h.identity, identity)) {
                    rc = lm_errf(err, "rank %d built a different plan (%s, here %s): "
                                      "every rank must read the same grid", src,
                                 h.identity, identity);
                    break;
                }
                snprintf(w->host, sizeof w->host, "%s", h.host);
                w->hello = 1;
                n_ready_workers++;
            } else if (st.MPI_TAG == TAG_DONE && count >= (int)sizeof(done_hdr)) {
                done_hdr dh;
                memcpy(&dh, rbuf, sizeof dh);
                if (dh.len < 0 || (int64_t)sizeof dh + dh.len != count) continue;
                /* Normally the head of its batch; search to be safe. */
                int at = -1;
                for (int i = 0; i < w->n; i++)
                    if (w->units[i] == dh.unit) {
                        at = i;
                        break;
                    }
                if (at < 0) continue;
                memmove(w->units + at, w->units + at + 1, (size_t)(w->n - at - 1) * sizeof *w->units);
                w->n--;
                rn_report r;
                memset(&r, 0, sizeof r);
                r.unit = dh.unit;
                r.rank = dh.rank;
                memcpy(r.host, dh.host, sizeof r.host);
                r.host[sizeof r.host - 1] = '\0';
                r.t_start = dh.t_start;
                r.t_end = dh.t_end;
                memcpy(r.failure, dh.failure, sizeof r.failure);
                r.failure[sizeof r.failure - 1] = '\0';
                r.blob = rbuf + sizeof dh;
                r.len = (size_t)dh.len;
                rbuf[count] = '\0';
                stats->executed++;
                if (rn_sched_finish(&s, &r, err)) {
                    rc = -1;
                    break;
                }
            }
        }
        if (rc) break;
        now = rn_now();
        /* 2. Hand out work: a batch to every ready worker holding <= 1 unit. */
        int alive = 0;
        for (int r = 1; r < size; r++) alive += ws[r].alive && ws[r].hello;
        for (int r = 1; r < size && rn_sched_ready(&s); r++) {
            worker_state *w = &ws[r];
            if (!w->alive || !w->hello || w->n > 1 || !send_slot_free(w)) continue;
            int k = rn_sched_ready(&s) / (2 * (alive ? alive : 1));
            if (k < 1) k = 1;
            if (k > batch_max) k = batch_max;
            if (w->n + k > w->cap) {
                int cap = w->cap ? 2 * w->cap : 64;
                while (w->n + k > cap) cap *= 2;
                int *v = realloc(w->units, (size_t)cap * sizeof *v);
                if (!v) {
                    rc = lm_errf(err, "out of memory");
                    break;
                }
                w->units = v;
                w->cap = cap;
            }
            batch[0] = 0;
            for (int i = 0; i < k; i++) {
                int u = rn_sched_pop(&s);
                if (u < 0) break;
                batch[1 + batch[0]++] = u;
                w->units[w->n++] = u;
            }
            /* Silence is measured from now on, not from when it went idle. */
            if (w->n == batch[0]) w->last_heard = now;
            if (post_ints(w, r, TAG_WORK, batch, batch[0] + 1)) {
                rc = lm_errf(err, "MPI_Isend to rank %d failed", r);
                break;
            }
            activity = 1;
        }
        if (rc) break;
        /* 3. Busy workers that went silent are dead; idle ones get a ping
         *    so they know rank 0 is alive. */
        for (int r = 1; r < size; r++) {
            worker_state *w = &ws[r];
            if (!w->alive) continue;
            if (w->n > 0 && now - w->last_heard > hb) {
                worker_lost(&s, w, r, now - w->last_heard, stats, err, &rc);
                activity = 1;
            } else if (w->hello && now - w->last_sent > hb / 3 && send_slot_free(w)) {
                post_ints(w, r, TAG_PING, batch, 0);
            }
        }
        if (rc) break;
        /* 4. No worker left: finish the grid here. */
        int any_alive = 0;
        for (int r = 1; r < size; r++) any_alive |= ws[r].alive;
        if (!any_alive && s.unresolved > 0) {
            if (!local.slots) {
                fprintf(stderr, "\nsmudge run: no worker rank is left; rank 0 runs the "
                                "remaining units itself\n");
                if (rn_local_init(&local, 1, opt, err)) {
                    rc = -1;
                    break;
                }
            }
            if (rn_local_step(&local, &s, 50, err)) {
                rc = -1;
                break;
            }
            activity = 1;
        }
        rn_sched_draw(&s, 0);
        if (activity) lvl = 0;
        else rn_backoff(&lvl);
    }
    rn_sched_draw(&s, 1);
    for (int r = 1; r < size; r++) stop_worker(&ws[r], r, stats->workers_lost > 0);
    /* Let the stop messages to live workers go out. */
    double tw = rn_now();
    for (int r = 1; r < size; r++)
        while (ws[r].alive && !send_slot_free(&ws[r]) && rn_now() - tw < 5) {
        }
    for (int r = 1; r < size; r++) {
        free(ws[r].units);
        if (!ws[r].sending) free(ws[r].sendbuf);
    }
    if (local.slots) rn_local_free(&local);
    free(ws);
    free(rbuf);
    free(batch);
    stats->seconds = rn_now() - t0;
    rn_sched_free(&s);
    return rc;
}

int rn_run_mpi(const rn_dag *dag, const unsigned char *done, const rn_ops *ops,
               const rn_options *opt, const char *identity, rn_stats *stats,
               lm_err *err) {
    int rank = 0, size = 1;
    MPI_Comm_rank(MPI_COMM_WORLD, &rank);
    MPI_Comm_size(MPI_COMM_WORLD, &size);
    if (size == 1) return rn_run_local(dag, done, ops, opt, stats, err);
    if (rank == 0) return coordinator(size, dag, done, ops, opt, identity, stats, err);
    memset(stats, 0, sizeof *stats);
    return worker(rank, ops, opt, identity, stats, err);
}
