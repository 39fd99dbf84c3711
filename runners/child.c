/* One unit in a forked child process. The child writes its outcome to one
 * pipe and its stdout/stderr to another; the parent reads both without
 * blocking, reaps the child, and turns a crash, a non-zero exit or a
 * timeout into a message that names the signal and the last line the
 * child printed.
 *
 * fork without exec is safe here because the parent never runs model code:
 * no OpenMP pool exists in it to be half-copied, and the child touches
 * neither MPI nor the results file (it leaves with _exit). */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "internal.h"

double rn_now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

double rn_unix_now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

void rn_host(char *out, size_t cap) {
    if (gethostname(out, cap) != 0) snprintf(out, cap, "unknown");
    out[cap - 1] = '\0';
}

void rn_backoff(int *level) {
    /* 0, 20 us, 40 us, ... up to 2 ms: quick when messages flow, and off
     * the CPU when idle (ranks share cores when oversubscribed). */
    if (*level == 0) {
        *level = 1;
        return;
    }
    long us = 20L << (*level - 1);
    if (us >= 2000) us = 2000;
    else (*level)++;
    struct timespec ts = {0, us * 1000L};
    nanosleep(&ts, NULL);
}

int rn_child_start(rn_child *c, const rn_ops *ops, int unit, int rank, int threads,
                   lm_err *err) {
    int outp[2], errp[2];
    if (pipe2(outp, O_CLOEXEC)) return lm_errf(err, "pipe: %s", strerror(errno));
    if (pipe2(errp, O_CLOEXEC)) {
        close(outp[0]);
        close(outp[1]);
        return lm_errf(err, "pipe: %s", strerror(errno));
    }
    fflush(NULL); /* the child must not inherit unwritten output */
    pid_t parent = getpid();
    pid_t pid = fork();
    if (pid < 0) {
        int e = errno;
        close(outp[0]);
        close(outp[1]);
        close(errp[0]);
        close(errp[1]);
        return lm_errf(err, "fork: %s", strerror(e));
    }
    if (pid == 0) {
        /* The child: never returns, never touches MPI or the results file. */
        prctl(PR_SET_PDEATHSIG, SIGKILL);
        if (getppid() != parent) _exit(125); /* the parent died already */
        /* Crash handlers installed by MPI would print their own reports;
         * a crash here should just be a crash. */
        static const int sigs[] = {SIGSEGV, SIGBUS, SIGFPE, SIGILL, SIGABRT,
                                   SIGINT, SIGTERM, SIGPIPE, SIGCHLD};
        for (size_t i = 0; i < sizeof sigs / sizeof sigs[0]; i++) signal(sigs[i], SIG_DFL);
        sigset_t none;
        sigemptyset(&none);
        sigprocmask(SIG_SETMASK, &none, NULL);
        dup2(errp[1], STDOUT_FILENO);
        dup2(errp[1], STDERR_FILENO);
        close(outp[0]);
        close(errp[0]);
        close(errp[1]);
        char t[16];
        snprintf(t, sizeof t, "%d", threads > 0 ? threads : 1);
        setenv("OMP_NUM_THREADS", t, 1);
        setenv("OPENBLAS_NUM_THREADS", "1", 1);
        struct rlimit no_core = {0, 0};
        setrlimit(RLIMIT_CORE, &no_core);
        int rc = ops->execute(ops->ctx, unit, rank, outp[1]);
        fflush(NULL);
        _exit(rc ? 1 : 0);
    }
    close(outp[1]);
    close(errp[1]);
    fcntl(outp[0], F_SETFL, O_NONBLOCK);
    fcntl(errp[0], F_SETFL, O_NONBLOCK);
    memset(c, 0, sizeof *c);
    c->pid = pid;
    c->unit = unit;
    c->out_fd = outp[0];
    c->err_fd = errp[0];
    c->t_start = rn_unix_now();
    c->mono_start = rn_now();
    return 0;
}

static void drain(rn_child *c, int which) {
    char tmp[65536];
    int fd = which ? c->err_fd : c->out_fd;
    for (;;) {
        ssize_t n = read(fd, tmp, sizeof tmp);
        if (n > 0) {
            if (!which) {
                if (c->len + (size_t)n + 1 > c->cap) {
                    size_t cap = c->cap ? c->cap : 4096;
                    while (c->len + (size_t)n + 1 > cap) cap *= 2;
                    char *b = realloc(c->buf, cap);
                    if (!b) continue; /* drop; the report will say no outcome */
                    c->buf = b;
                    c->cap = cap;
                }
                memcpy(c->buf + c->len, tmp, (size_t)n);
                c->len += (size_t)n;
                c->buf[c->len] = '\0';
            } else {
                /* Keep only the tail: the last lines say what went wrong. */
                size_t keep = sizeof c->tail - 1;
                if ((size_t)n >= keep) {
                    memcpy(c->tail, tmp + n - keep, keep);
                    c->tail_len = keep;
                } else {
                    if (c->tail_len + (size_t)n > keep) {
                        size_t drop = c->tail_len + (size_t)n - keep;
                        memmove(c->tail, c->tail + drop, c->tail_len - drop);
                        c->tail_len -= drop;
                    }
                    memcpy(c->tail + c->tail_len, tmp, (size_t)n);
                    c->tail_len += (size_t)n;
                }
                c->tail[c->tail_len] = '\0';
            }
            continue;
        }
        if (n == 0 || (errno != EAGAIN && errno != EINTR)) {
            close(fd);
            if (which) c->err_fd = -1;
            else c->out_fd = -1;
            if (c->out_fd < 0 && c->err_fd < 0) c->eof_at = rn_now();
        }
        return;
    }
}

void rn_children_pump(rn_child *cs, int n, int wait_ms, double timeout_s) {
    struct pollfd pf[2 * 64];
    int who[2 * 64], what[2 * 64];
    int k = 0, exiting = 0;
    for (int i = 0; i < n && k + 2 <= 2 * 64; i++) {
        rn_child *c = &cs[i];
        if (!c->pid) continue;
        if (c->out_fd >= 0) {
            pf[k] = (struct pollfd){c->out_fd, POLLIN, 0};
            who[k] = i;
            what[k++] = 0;
        }
        if (c->err_fd >= 0) {
            pf[k] = (struct pollfd){c->err_fd, POLLIN, 0};
            who[k] = i;
            what[k++] = 1;
        }
        /* Pipes closed a moment ago: the child is exiting. (One that
         * closed them and lives on is polled at the normal pace.) */
        if (c->out_fd < 0 && c->err_fd < 0 && !c->reaped && rn_now() - c->eof_at < 0.05)
            exiting = 1;
    }
    /* A child whose pipes closed is exiting: yield rather than sleep, so
     * its slot turns over in microseconds, not a scheduler tick. */
    int w = exiting ? 0 : wait_ms;
    if (k) poll(pf, (nfds_t)k, w);
    else if (exiting) sched_yield();
    else if (w > 0) {
        struct timespec ts = {w / 1000, (long)(w % 1000) * 1000000L};
        nanosleep(&ts, NULL);
    }
    for (int j = 0; j < k; j++)
        if (pf[j].revents) drain(&cs[who[j]], what[j]);
    double now = rn_now();
    for (int i = 0; i < n; i++) {
        rn_child *c = &cs[i];
        if (!c->pid || c->reaped) continue;
        int st;
        pid_t r = waitpid(c->pid, &st, WNOHANG);
        if (r == c->pid) {
            c->reaped = 1;
            c->status = st;
            c->reaped_at = now;
            /* Whatever is still in the pipes belongs to this outcome. */
            if (c->out_fd >= 0) drain(c, 0);
            if (c->err_fd >= 0) drain(c, 1);
        } else if (timeout_s > 0 && !c->timed_out && now - c->mono_start > timeout_s) {
            kill(c->pid, SIGKILL);
            c->timed_out = 1;
        }
    }
}

int rn_child_finished(const rn_child *c) {
    if (!c->pid || !c->reaped) return 0;
    /* A grandchild may hold the pipes open; do not wait for it forever. */
    return (c->out_fd < 0 && c->err_fd < 0) || rn_now() - c->reaped_at > 1.0;
}

static void last_line(const char *tail, char *out, size_t cap) {
    out[0] = '\0';
    const char *end = tail + strlen(tail);
    while (end > tail && (end[-1] == '\n' || end[-1] == '\r' || end[-1] == ' ')) end--;
    const char *start = end;
    while (start > tail && start[-1] != '\n' && start[-1] != '\r') start--;
    size_t n = (size_t)(end - start);
    if (n >= cap) {
        start = end - (cap - 1);
        n = cap - 1;
    }
    memcpy(out, start, n);
    out[n] = '\0';
}

void rn_child_report(const rn_child *c, int rank, double timeout_s, rn_report *r) {
    memset(r, 0, sizeof *r);
    r->unit = c->unit;
    r->rank = rank;
    rn_host(r->host, sizeof r->host);
    r->t_start = c->t_start;
    r->t_end = rn_unix_now();
    r->blob = c->buf;
    r->len = c->len;
    char last[512];
    last_line(c->tail, last, sizeof last);
    size_t o = 0;
    if (c->timed_out) {
        o = (size_t)snprintf(r->failure, sizeof r->failure,
                             "timed out after %g s (killed)", timeout_s);
    } else if (WIFSIGNALED(c->status)) {
        int sig = WTERMSIG(c->status);
        const char *abbrev = sigabbrev_np(sig);
        o = (size_t)snprintf(r->failure, sizeof r->failure, "crashed: signal SIG%s (%s)%s",
                             abbrev ? abbrev : "?", strsignal(sig),
                             sig == SIGKILL ? "; killed from outside, e.g. by the "
                                              "OOM killer" : "");
    } else if (WIFEXITED(c->status) && WEXITSTATUS(c->status) != 0) {
        o = (size_t)snprintf(r->failure, sizeof r->failure, "exited with code %d",
                             WEXITSTATUS(c->status));
    } else if (c->len == 0) {
        o = (size_t)snprintf(r->failure, sizeof r->failure,
                             "exited without reporting an outcome");
    }
    if (o && last[0] && o < sizeof r->failure)
        snprintf(r->failure + o, sizeof r->failure - o, "; last output: %s", last);
}

void rn_child_clear(rn_child *c) {
    if (c->out_fd >= 0) close(c->out_fd);
    if (c->err_fd >= 0) close(c->err_fd);
    free(c->buf);
    memset(c, 0, sizeof *c);
    c->out_fd = c->err_fd = -1;
}

void rn_child_kill(rn_child *c) {
    if (!c->pid) return;
    if (!c->reaped) {
        kill(c->pid, SIGKILL);
        int st;
        waitpid(c->pid, &st, 0);
    }
    rn_child_clear(c);
}
