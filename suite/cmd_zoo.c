/* smudge zoo: build, locate and list the tiny models of the embedded
 * default. */
#include <errno.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "cli.h"
#include "commands.h"
#include "zoo.h"

static const char zoo_help[] =
    "usage: smudge zoo list [--cache DIR]\n"
    "       smudge zoo build NAME|all [--cache DIR] [--rebuild] [--jobs N]\n"
    "       smudge zoo path NAME [--cache DIR]\n\n"
    "The tiny model zoo: small Llama-, GPT-2- and OPT-style models pretrained\n"
    "on the synthetic world and instruction-tuned on its chats, each with its\n"
    "own byte-level BPE tokenizer. Models are Hugging Face folders cached in\n"
    "$XDG_CACHE_HOME/smudge (or ~/.cache/smudge, or --cache DIR), keyed by a\n"
    "hash of the recipe and the code that shapes it: a second build is\n"
    "instant, a changed recipe builds anew.\n\n"
    "  list    every recipe with its size, status and quality (held-out\n"
    "          perplexity, zero-shot SciQ/COPA/BoolQ accuracy on the world's\n"
    "          test split)\n"
    "  build   train NAME (or all), with progress on a terminal; each model\n"
    "          trains on one thread (the same bits on any machine setting),\n"
    "          and `all` builds --jobs models at once (default: the cores)\n"
    "  path    print NAME's folder, building it first if needed\n";

static void show(void *ctx, const char *stage, double frac, const char *detail) {
    const char *name = ctx;
    fprintf(stderr, "\r\033[K%s: %-9s %3.0f%%  %s", name, stage, 100.0 * frac,
            detail ? detail : "");
    fflush(stderr);
}

/* Prints the built model's line: name, folder, size and quality. */
static int print_built(const su_recipe *r, const char *cache) {
    lm_err err = {{0}};
    su_zoo_quality q;
    char dir[4096];
    if (su_zoo_read_quality(r, cache, &q, &err) || su_zoo_model_dir(r, cache, dir, sizeof dir, &err)) {
        fprintf(stderr, "smudge zoo: %s\n", err.msg);
        return CLI_FAIL;
    }
    printf("{\"name\":\"%s\",\"path\":\"%s\",\"parameters\":%ld,\"heldout_ppl\":%.3f,"
           "\"sciq\":%.3f,\"copa\":%.3f,\"boolq\":%.3f,\"build_seconds\":%.1f}\n",
           r->name, dir, q.params, q.ppl, q.sciq, q.copa, q.boolq, q.build_seconds);
    fflush(stdout);
    return CLI_OK;
}

static int build_one(const su_recipe *r, const char *cache, int rebuild) {
    lm_err err = {{0}};
    su_zoo_progress p = {cli_progress_enabled() ? show : NULL, (void *)r->name};
    int rc = su_zoo_build(r, cache, rebuild, &p, &err);
    if (p.report) fputs("\r\033[K", stderr);
    if (rc) {
        fprintf(stderr, "smudge zoo: %s\n", err.msg);
        return CLI_FAIL;
    }
    return print_built(r, cache);
}

/* ---- build all: one child process per model, --jobs at a time ---- */

/* A child's progress reaches the parent as lines "stage<TAB>percent". */
static void send_progress(void *ctx, const char *stage, double frac, const char *detail) {
    (void)detail;
    char line[96];
    int n = snprintf(line, sizeof line, "%s\t%.0f\n", stage, 100.0 * frac);
    if (n > 0 && write(*(int *)ctx, line, (size_t)n) < 0) { /* the parent is gone: build on */ }
}

typedef struct builder {
    pid_t pid;
    int fd;               /* read end of the child's progress pipe, -1 when done */
    char buf[256];
    size_t len;
    char state[64];       /* "pretrain 40%" */
} builder;

static void show_all(const builder *b, int n) {
    fputs("\r\033[K", stderr);
    for (int i = 0, first = 1; i < n; i++)
        if (b[i].pid > 0) {
            fprintf(stderr, "%s%s: %s", first ? "" : "  |  ", su_zoo_at(i)->name, b[i].state);
            first = 0;
        }
    fflush(stderr);
}

/* Reads what the child sent; keeps the last whole line as its state. */
static void drain(builder *b) {
    ssize_t got = read(b->fd, b->buf + b->len, sizeof b->buf - 1 - b->len);
    if (got <= 0) {
        if (got < 0 && errno == EINTR) return;
        close(b->fd);
        b->fd = -1;
        return;
    }
    b->len += (size_t)got;
    b->buf[b->len] = '\0';
    char *nl;
    while ((nl = strchr(b->buf, '\n'))) {
        *nl = '\0';
        char *tab = strchr(b->buf, '\t');
        if (tab) { /* formatted aside: buf and state share the struct */
            char state[sizeof b->state];
            *tab = '\0';
            snprintf(state, sizeof state, "%.40s %.5s%%", b->buf, tab + 1);
            memcpy(b->state, state, sizeof state);
        }
        size_t used = (size_t)(nl + 1 - b->buf);
        memmove(b->buf, nl + 1, b->len - used + 1);
        b->len -= used;
    }
    if (b->len == sizeof b->buf - 1) b->len = 0; /* an overlong line: drop it */
}

static int start_builder(builder *b, const su_recipe *r, const char *cache, int rebuild) {
    int fds[2];
    if (pipe(fds) != 0) {
        fprintf(stderr, "smudge zoo: cannot make a pipe: %s\n", strerror(errno));
        return -1;
    }
    fflush(NULL);
    pid_t pid = fork();
    if (pid < 0) {
        fprintf(stderr, "smudge zoo: cannot start a builder for %s: %s\n", r->name, strerror(errno));
        close(fds[0]);
        close(fds[1]);
        return -1;
    }
    if (pid == 0) { /* the child builds and says how it went by its exit status */
        close(fds[0]);
        signal(SIGPIPE, SIG_IGN);
        lm_err err = {{0}};
        su_zoo_progress p = {send_progress, &fds[1]};
        int rc = su_zoo_build(r, cache, rebuild, &p, &err);
        if (rc) fprintf(stderr, "\r\033[Ksmudge zoo: %s\n", err.msg);
        _exit(rc ? 1 : 0);
    }
    close(fds[1]);
    *b = (builder){.pid = pid, .fd = fds[0]};
    snprintf(b->state, sizeof b->state, "starting");
    return 0;
}

static int build_all(const char *cache, int rebuild, int jobs) {
    int n = su_zoo_count(), next = 0, running = 0, failed = 0;
    int show_progress = cli_progress_enabled();
    /* the world first, so the builders do not queue on its lock */
    char world[4096];
    lm_err err = {{0}};
    if (su_zoo_ensure_world(su_zoo_at(0), cache, world, sizeof world, NULL, &err)) {
        fprintf(stderr, "smudge zoo: %s\n", err.msg);
        return CLI_FAIL;
    }
    builder *b = calloc((size_t)n, sizeof *b);
    struct pollfd *pf = calloc((size_t)n, sizeof *pf);
    int *who = calloc((size_t)n, sizeof *who);
    if (!b || !pf || !who) {
        fprintf(stderr, "smudge zoo: out of memory\n");
        free(b);
        free(pf);
        free(who);
        return CLI_FAIL;
    }
    for (int i = 0; i < n; i++) b[i] = (builder){.pid = 0, .fd = -1};
    while (next < n || running > 0) {
        while (next < n && running < jobs) {
            if (start_builder(&b[next], su_zoo_at(next), cache, rebuild)) {
                failed++;
                next = n; /* start no more; let the running ones finish */
                break;
            }
            next++;
            running++;
        }
        int np = 0;
        for (int i = 0; i < n; i++)
            if (b[i].pid > 0 && b[i].fd >= 0) {
                pf[np] = (struct pollfd){.fd = b[i].fd, .events = POLLIN};
                who[np++] = i;
            }
        if (np > 0 && poll(pf, (nfds_t)np, 1000) > 0)
            for (int k = 0; k < np; k++)
                if (pf[k].revents) drain(&b[who[k]]);
        for (int i = 0; i < n; i++) {
            if (b[i].pid <= 0 || b[i].fd >= 0) continue;
            int status = 0;
            if (waitpid(b[i].pid, &status, 0) < 0) status = 1;
            b[i].pid = 0;
            running--;
            if (show_progress) fputs("\r\033[K", stderr);
            if (WIFEXITED(status) && WEXITSTATUS(status) == 0) {
                if (print_built(su_zoo_at(i), cache) != CLI_OK) failed++;
            } else {
                failed++;
                if (WIFSIGNALED(status))
                    fprintf(stderr, "smudge zoo: the builder of %s died of signal %d\n",
                            su_zoo_at(i)->name, WTERMSIG(status));
            }
        }
        if (show_progress && running > 0) show_all(b, n);
    }
    if (show_progress) fputs("\r\033[K", stderr);
    if (failed) fprintf(stderr, "smudge zoo: %d of %d models failed to build\n", failed, n);
    free(b);
    free(pf);
    free(who);
    return failed ? CLI_FAIL : CLI_OK;
}

int cmd_zoo(int argc, char **argv) {
    if (argc < 3 || cli_wants_help(argc, argv, 2)) {
        fputs(zoo_help, argc < 3 ? stderr : stdout);
        return argc < 3 ? CLI_USAGE : CLI_OK;
    }
    cli_opt opts[] = {{"--cache", 1}, {"--rebuild", 0}, {"--jobs", 1}, {0}};
    const char *pos[2];
    int npos = 0;
    lm_err err = {{0}};
    long jobs = sysconf(_SC_NPROCESSORS_ONLN);
    if (jobs < 1) jobs = 1;
    if (cli_parse(argc, argv, 3, opts, pos, 2, &npos, &err) ||
        (cli_get(opts, "--jobs") &&
         cli_int("--jobs", cli_get(opts, "--jobs"), 1, 1024, &jobs, &err))) {
        fprintf(stderr, "smudge zoo: %s\n", err.msg);
        return CLI_USAGE;
    }
    const char *cache = cli_get(opts, "--cache"), *sub = argv[2];
    if (!strcmp(sub, "list")) {
        printf("%-11s %-6s %9s %-9s %9s %6s %6s %6s  %s\n", "name", "family", "params",
               "status", "ppl", "sciq", "copa", "boolq", "description");
        for (int i = 0; i < su_zoo_count(); i++) {
            const su_recipe *r = su_zoo_at(i);
            su_zoo_quality q;
            if (su_zoo_is_built(r, cache) && su_zoo_read_quality(r, cache, &q, &err) == 0)
                printf("%-11s %-6s %9ld %-9s %9.2f %6.3f %6.3f %6.3f  %s\n", r->name,
                       lm_arch_name(r->arch), q.params, "built", q.ppl, q.sciq, q.copa,
                       q.boolq, r->description);
            else
                printf("%-11s %-6s %9s %-9s %9s %6s %6s %6s  %s\n", r->name,
                       lm_arch_name(r->arch), "-", "not built", "-", "-", "-", "-",
                       r->description);
        }
        return CLI_OK;
    }
    if (npos != 1) {
        fprintf(stderr, "smudge zoo %s: name one recipe (see smudge zoo list)\n", sub);
        return CLI_USAGE;
    }
    if (!strcmp(sub, "build") && !strcmp(pos[0], "all"))
        return build_all(cache, cli_has(opts, "--rebuild"), (int)jobs);
    const su_recipe *r = su_zoo_find(pos[0]);
    if (!r) {
        fprintf(stderr, "smudge zoo: no recipe named '%s' (see smudge zoo list)\n", pos[0]);
        return CLI_USAGE;
    }
    if (!strcmp(sub, "build")) return build_one(r, cache, cli_has(opts, "--rebuild"));
    if (!strcmp(sub, "path")) {
        su_zoo_progress p = {cli_progress_enabled() ? show : NULL, (void *)r->name};
        if (su_zoo_build(r, cache, 0, &p, &err)) {
            if (p.report) fputs("\r\033[K", stderr);
            fprintf(stderr, "smudge zoo: %s\n", err.msg);
            return CLI_FAIL;
        }
        if (p.report) fputs("\r\033[K", stderr);
        char dir[4096];
        if (su_zoo_model_dir(r, cache, dir, sizeof dir, &err)) {
            fprintf(stderr, "smudge zoo: %s\n", err.msg);
            return CLI_FAIL;
        }
        printf("%s\n", dir);
        return CLI_OK;
    }
    fprintf(stderr, "smudge zoo: unknown subcommand '%s' (list, build, path)\n", sub);
    return CLI_USAGE;
}
