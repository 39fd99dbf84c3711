/* Slurm: sbatch scripts from the templates in slurm/, one job array per
 * DAG stage plus a merge job.
 *
 * Why stages: array tasks run concurrently and in any order, so a unit
 * cannot share an array with its ancestors. The DAG's depth is small
 * (implant -> remove -> eval: 3 stages), so each stage is its own array and
 * depends on the previous one with afterany: a failed task never blocks the
 * grid; units whose inputs are missing are recorded as skipped. Task t of a
 * stage runs the contiguous share [n*t/T, n*(t+1)/T) of that stage's units
 * in plan order (several short units per task), writes its own HDF5 shard
 * (under a temporary name, renamed when closed) and a merge job joins the
 * shards. Arrays longer than MaxArraySize are split into chunks; each
 * chunk passes its offset in SMUDGE_TASK_OFFSET. */
#include <errno.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "internal.h"

void rn_slurm_share(int n, int tasks, int t, int *lo, int *hi) {
    if (tasks < 1) tasks = 1;
    *lo = (int)((int64_t)n * t / tasks);
    *hi = (int)((int64_t)n * (t + 1) / tasks);
}

static char *read_text(const char *path, lm_err *err) {
    FILE *f = fopen(path, "rb");
    if (!f) {
        lm_errf(err, "%s: %s", path, strerror(errno));
        return NULL;
    }
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    fseek(f, 0, SEEK_SET);
    if (n < 0 || n > (1 << 20)) {
        fclose(f);
        lm_errf(err, "%s: not a template (size %ld)", path, n);
        return NULL;
    }
    char *t = malloc((size_t)n + 1);
    if (!t || fread(t, 1, (size_t)n, f) != (size_t)n) {
        free(t);
        fclose(f);
        lm_errf(err, "%s: read error", path);
        return NULL;
    }
    t[n] = '\0';
    fclose(f);
    return t;
}

static int is_name_char(char c, int first) {
    return (c >= 'A' && c <= 'Z') || c == '_' || (!first && c >= '0' && c <= '9');
}

char *rn_template_fill(const char *path, const rn_kv *kv, int n_kv, lm_err *err) {
    char *t = read_text(path, err);
    if (!t) return NULL;
    size_t cap = strlen(t) * 2 + 1024, o = 0;
    char *out = malloc(cap);
    if (!out) {
        free(t);
        lm_errf(err, "out of memory");
        return NULL;
    }
    int line = 1;
    for (const char *p = t; *p;) {
        const char *val = NULL;
        size_t skip = 1;
        if (*p == '\n') line++;
        if (*p == '@' && is_name_char(p[1], 1)) {
            const char *e = p + 1;
            while (is_name_char(*e, 0)) e++;
            if (*e == '@') {
                size_t len = (size_t)(e - p - 1);
                for (int i = 0; i < n_kv; i++)
                    if (strlen(kv[i].key) == len && !strncmp(kv[i].key, p + 1, len))
                        val = kv[i].value ? kv[i].value : "";
                if (!val) {
                    lm_errf(err, "%s:%d: unknown placeholder @%.*s@", path, line, (int)len, p + 1);
                    free(t);
                    free(out);
                    return NULL;
                }
                skip = len + 2;
            }
        }
        size_t need = val ? strlen(val) : 1;
        if (o + need + 1 > cap) {
            while (o + need + 1 > cap) cap *= 2;
            char *b = realloc(out, cap);
            if (!b) {
                free(t);
                free(out);
                lm_errf(err, "out of memory");
                return NULL;
            }
            out = b;
        }
        if (val) memcpy(out + o, val, need);
        else out[o] = *p;
        o += need;
        p += skip;
    }
    out[o] = '\0';
    free(t);
    return out;
}

int rn_write_file(const char *path, const char *text, int exec, lm_err *err) {
    char tmp[4200];
    snprintf(tmp, sizeof tmp, "%s.tmp.%d", path, (int)getpid());
    FILE *f = fopen(tmp, "w");
    if (!f) return lm_errf(err, "%s: %s", tmp, strerror(errno));
    size_t n = strlen(text);
    int bad = fwrite(text, 1, n, f) != n;
    bad |= fclose(f) != 0;
    if (bad) {
        unlink(tmp);
        return lm_errf(err, "%s: write failed", tmp);
    }
    if (exec) chmod(tmp, 0755);
    if (rename(tmp, path)) {
        unlink(tmp);
        return lm_errf(err, "rename %s: %s", path, strerror(errno));
    }
    return 0;
}

typedef struct strbuf {
    char *s;
    size_t len, cap;
} strbuf;

/* Appends printf output; -1 when out of memory. */
static int sb_printf(strbuf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static int sb_printf(strbuf *b, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(NULL, 0, fmt, ap);
    va_end(ap);
    if (n < 0) return -1;
    if (b->len + (size_t)n + 1 > b->cap) {
        size_t cap = b->cap ? b->cap : 1024;
        while (b->len + (size_t)n + 1 > cap) cap *= 2;
        char *s = realloc(b->s, cap);
        if (!s) return -1;
        b->s = s;
        b->cap = cap;
    }
    va_start(ap, fmt);
    vsnprintf(b->s + b->len, b->cap - b->len, fmt, ap);
    va_end(ap);
    b->len += (size_t)n;
    return 0;
}

/* Paths go into #SBATCH lines (not shell-parsed) and commands alike, so
 * they must need no quoting. */
static int plain_path(const char *what, const char *p, lm_err *err) {
    for (const char *c = p; *c; c++)
        if (*c == ' ' || *c == '\t' || *c == '\n' || *c == '\'' || *c == '"' || *c == '$' ||
            *c == '`' || *c == '\\' || *c == ';' || *c == '&' || *c == '|' || *c == '*' ||
            *c == '?' || *c == '%')
            return lm_errf(err, "%s '%s' contains '%c'; Slurm scripts need plain paths",
                           what, p, *c);
    return 0;
}

int rn_slurm_write(const rn_slurm_job *job, lm_err *err) {
    if (plain_path("out dir", job->out_dir, err) || plain_path("smudge", job->smudge, err) ||
        plain_path("grid", job->grid, err) || plain_path("work dir", job->work_dir, err) ||
        plain_path("results", job->results, err) || plain_path("name", job->name, err))
        return -1;
    char part[256] = "", time_line[128] = "", ranks[16], threads[16], n_stages[16];
    if (job->partition && job->partition[0])
        snprintf(part, sizeof part, "#SBATCH --partition=%s", job->partition);
    if (job->time && job->time[0])
        snprintf(time_line, sizeof time_line, "#SBATCH --time=%s", job->time);
    snprintf(ranks, sizeof ranks, "%d", job->ranks_per_task);
    snprintf(threads, sizeof threads, "%d", job->threads);
    snprintf(n_stages, sizeof n_stages, "%d", job->n_stages);
    /* R > 1: the task's units are spread over R MPI ranks by srun (PMIx:
     * Debian's Open MPI has no PMI2). A rank's death must not end the step. */
    char launch[128] = "";
    if (job->ranks_per_task > 1)
        snprintf(launch, sizeof launch, "srun --mpi=pmix --kill-on-bad-exit=0 -n %d",
                 job->ranks_per_task);
    char tpl[4200], path[4200];
    strbuf sub = {0};
    if (sb_printf(&sub, "%s", "")) return lm_errf(err, "out of memory");
    int max_array = job->max_array > 0 ? job->max_array : 1001;
    for (int i = 0; i < job->n_stages; i++) {
        const rn_slurm_stage *st = &job->stages[i];
        char stage[16], tasks[16], name[64];
        snprintf(stage, sizeof stage, "%d", st->stage);
        snprintf(tasks, sizeof tasks, "%d", st->tasks);
        snprintf(name, sizeof name, "stage%d.sbatch", st->stage);
        rn_kv kv[] = {{"NAME", job->name},          {"STAGE", stage},
                      {"N_STAGES", n_stages},       {"TASKS", tasks},
                      {"RANKS", ranks},             {"THREADS", threads},
                      {"PARTITION_LINE", part},     {"TIME_LINE", time_line},
                      {"OUT_DIR", job->out_dir},           {"SMUDGE", job->smudge},
                      {"GRID", job->grid},             {"WORK_DIR", job->work_dir},
                      {"LAUNCH", launch}};
        snprintf(tpl, sizeof tpl, "%s/stage.sbatch", job->template_dir);
        char *text = rn_template_fill(tpl, kv, (int)(sizeof kv / sizeof kv[0]), err);
        snprintf(path, sizeof path, "%s/%s", job->out_dir, name);
        if (!text || rn_write_file(path, text, 1, err)) {
            free(text);
            free(sub.s);
            return -1;
        }
        free(text);
        /* One sbatch per chunk of at most max_array tasks; the next stage
         * waits for all of them. */
        int bad = sb_printf(&sub, "ids=\"\"\n");
        for (int off = 0; off < st->tasks && !bad; off += max_array) {
            int cnt = st->tasks - off < max_array ? st->tasks - off : max_array;
            bad = sb_printf(&sub, "ids=\"$ids:$(submit --array=0-%d "
                                  "--export=ALL,SMUDGE_TASK_OFFSET=%d %s)\"\n",
                            cnt - 1, off, name);
        }
        if (bad || sb_printf(&sub, "dep=\"${ids#:}\"\necho \"stage %d: $dep\"\n", st->stage)) {
            free(sub.s);
            return lm_errf(err, "out of memory");
        }
    }
    rn_kv mkv[] = {{"NAME", job->name},      {"OUT_DIR", job->out_dir},
                   {"SMUDGE", job->smudge},     {"RESULTS", job->results},
                   {"PARTITION_LINE", part}, {"TIME_LINE", time_line},
                   {"SUBMIT_LINES", sub.s}};
    const char *files[] = {"merge.sbatch", "submit.sh"};
    int rc = 0;
    for (int i = 0; i < 2 && rc == 0; i++) {
        snprintf(tpl, sizeof tpl, "%s/%s", job->template_dir, files[i]);
        char *text = rn_template_fill(tpl, mkv, (int)(sizeof mkv / sizeof mkv[0]), err);
        snprintf(path, sizeof path, "%s/%s", job->out_dir, files[i]);
        if (!text || rn_write_file(path, text, 1, err)) rc = -1;
        free(text);
    }
    free(sub.s);
    return rc;
}

int rn_slurm_submit(const char *out_dir, lm_err *err) {
    char script[4200];
    snprintf(script, sizeof script, "%s/submit.sh", out_dir);
    fflush(NULL);
    pid_t pid = fork();
    if (pid < 0) return lm_errf(err, "fork: %s", strerror(errno));
    if (pid == 0) {
        execlp("bash", "bash", script, (char *)NULL);
        _exit(127);
    }
    int st;
    if (waitpid(pid, &st, 0) < 0) return lm_errf(err, "waitpid: %s", strerror(errno));
    if (!WIFEXITED(st) || WEXITSTATUS(st) != 0)
        return lm_errf(err, "%s failed (exit %d): is sbatch on PATH and the cluster up?",
                       script, WIFEXITED(st) ? WEXITSTATUS(st) : -1);
    return 0;
}
