/* smudge slurm: a grid as Slurm job arrays, one per DAG stage, plus a merge
 * job (runners/slurm.c explains the layout and why). */
#include <cjson/cJSON.h>
#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "cli.h"
#include "commands.h"
#include "grid.h"
#include "runner.h"
#include "unit.h"

static const char slurm_help[] =
    "usage: smudge slurm GRID --tasks N [--ranks-per-task R] [--partition P]\n"
    "                    [--time T] [--max-array-size M] [--out-dir DIR]\n"
    "                    [--work-dir DIR] [--results FILE.h5] [--name NAME]\n"
    "                    [--templates DIR] [--submit]\n\n"
    "Writes Slurm batch scripts for GRID into DIR (default slurm-<grid name>):\n"
    "stage<k>.sbatch, one job array per stage of the unit DAG (a unit never\n"
    "shares an array with its inputs); merge.sbatch, which joins the shards with\n"
    "smudge merge into FILE.h5 (default DIR/results.h5); and submit.sh, which\n"
    "submits them in order with --dependency=afterany. --submit runs submit.sh.\n\n"
    "  --tasks N            array tasks per stage (fewer if a stage has fewer\n"
    "                       units); task t runs the t-th contiguous share of the\n"
    "                       stage's units, into its own shard file\n"
    "  --ranks-per-task R   MPI ranks per task (srun --mpi=pmix), default 1\n"
    "  --max-array-size M   the site's MaxArraySize (default 1001): longer\n"
    "                       arrays are split into chunks\n"
    "  --time T             time limit per task (sbatch --time), default 24:00:00\n"
    "  --templates DIR      the sbatch templates (default: slurm/ beside the\n"
    "                       smudge build, or $SMUDGE_TEMPLATES)\n\n"
    "The grid is copied into DIR (model paths made absolute); the work dir must\n"
    "be on a file system every node sees.\n";

static int file_exists(const char *p) { return access(p, R_OK) == 0; }

/* slurm/ beside the binary: build dirs sit in the source tree, installs
 * put it under share/smudge. */
static int find_templates(const char *given, char *out, size_t cap, lm_err *err) {
    char probe[PATH_MAX + 64];
    if (given) {
        snprintf(probe, sizeof probe, "%s/stage.sbatch", given);
        if (!file_exists(probe)) return lm_errf(err, "--templates %s: no stage.sbatch there", given);
        snprintf(out, cap, "%s", given);
        return 0;
    }
    const char *env = getenv("SMUDGE_TEMPLATES");
    if (env && *env) {
        snprintf(probe, sizeof probe, "%s/stage.sbatch", env);
        if (!file_exists(probe)) return lm_errf(err, "SMUDGE_TEMPLATES=%s: no stage.sbatch there", env);
        snprintf(out, cap, "%s", env);
        return 0;
    }
    char exe[PATH_MAX];
    ssize_t n = readlink("/proc/self/exe", exe, sizeof exe - 1);
    if (n <= 0) return lm_errf(err, "cannot locate the templates; pass --templates DIR");
    exe[n] = '\0';
    char *slash = strrchr(exe, '/');
    if (slash) *slash = '\0';
    static const char *const rel[] = {"slurm", "../slurm", "../../slurm", "../share/smudge/slurm"};
    for (size_t i = 0; i < sizeof rel / sizeof rel[0]; i++) {
        snprintf(probe, sizeof probe, "%s/%s/stage.sbatch", exe, rel[i]);
        if (file_exists(probe)) {
            char dir[PATH_MAX + 32];
            snprintf(dir, sizeof dir, "%s/%s", exe, rel[i]);
            char *abs = realpath(dir, NULL);
            if (!abs) continue;
            snprintf(out, cap, "%s", abs);
            free(abs);
            return 0;
        }
    }
    return lm_errf(err, "no slurm/stage.sbatch near %s; pass --templates DIR", exe);
}

static int mkdir_p(const char *dir, lm_err *err) {
    char p[PATH_MAX];
    snprintf(p, sizeof p, "%s", dir);
    for (char *c = p + 1; *c; c++)
        if (*c == '/') {
            *c = '\0';
            if (mkdir(p, 0755) && errno != EEXIST)
                return lm_errf(err, "%s: cannot create: %s", p, strerror(errno));
            *c = '/';
        }
    if (mkdir(p, 0755) && errno != EEXIST)
        return lm_errf(err, "%s: cannot create: %s", p, strerror(errno));
    return 0;
}

/* An absolute path for p, which may not exist yet (its parent must). */
static int absolute(const char *p, char *out, size_t cap, lm_err *err) {
    if (p[0] == '/') {
        snprintf(out, cap, "%s", p);
        return 0;
    }
    char cwd[PATH_MAX];
    if (!getcwd(cwd, sizeof cwd)) return lm_errf(err, "getcwd: %s", strerror(errno));
    if ((size_t)snprintf(out, cap, "%s/%s", cwd, p) >= cap) return lm_errf(err, "path too long: %s", p);
    return 0;
}

/* The grid as the array tasks will read it: model paths absolute (they
 * were relative to the original file), everything else as written. Unit
 * hashes do not change: they use the resolved paths either way. */
static char *grid_for_tasks(const char *path, const su_grid *g, lm_err *err) {
    FILE *f = fopen(path, "rb");
    if (!f) {
        lm_errf(err, "%s: %s", path, strerror(errno));
        return NULL;
    }
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    fseek(f, 0, SEEK_SET);
    char *text = n >= 0 ? malloc((size_t)n + 1) : NULL;
    if (!text || fread(text, 1, (size_t)n, f) != (size_t)n) {
        fclose(f);
        free(text);
        lm_errf(err, "%s: read error", path);
        return NULL;
    }
    fclose(f);
    text[n] = '\0';
    cJSON *root = cJSON_Parse(text);
    free(text);
    cJSON *models = cJSON_GetObjectItemCaseSensitive(root, "models");
    if (!root || !cJSON_IsArray(models) || cJSON_GetArraySize(models) != g->n_models) {
        cJSON_Delete(root);
        lm_errf(err, "%s: changed while being read", path);
        return NULL;
    }
    for (int i = 0; i < g->n_models; i++) {
        if (!g->models[i].is_path) continue;
        cJSON *m = cJSON_CreateObject();
        cJSON_AddStringToObject(m, "name", g->models[i].label);
        cJSON_AddStringToObject(m, "path", g->models[i].spec);
        cJSON_ReplaceItemInArray(models, i, m);
    }
    char *out = cJSON_Print(root);
    cJSON_Delete(root);
    if (!out) lm_errf(err, "out of memory");
    return out;
}

int cmd_slurm(int argc, char **argv) {
    if (argc < 3 || cli_wants_help(argc, argv, 2)) {
        fputs(slurm_help, argc < 3 ? stderr : stdout);
        return argc < 3 ? CLI_USAGE : CLI_OK;
    }
    cli_opt opts[] = {{"--tasks", 1},     {"--ranks-per-task", 1}, {"--partition", 1},
                      {"--time", 1},      {"--max-array-size", 1}, {"--out-dir", 1},
                      {"--work-dir", 1},  {"--results", 1},        {"--name", 1},
                      {"--templates", 1}, {"--submit", 0},         {0}};
    const char *pos[1];
    int n_pos = 0;
    lm_err err = {{0}};
    long tasks = 0, ranks = 1, max_array = 1001;
    if (cli_parse(argc, argv, 2, opts, pos, 1, &n_pos, &err) ||
        (cli_get(opts, "--tasks") && cli_int("--tasks", cli_get(opts, "--tasks"), 1, 10000000, &tasks, &err)) ||
        (cli_get(opts, "--ranks-per-task") &&
         cli_int("--ranks-per-task", cli_get(opts, "--ranks-per-task"), 1, 100000, &ranks, &err)) ||
        (cli_get(opts, "--max-array-size") &&
         cli_int("--max-array-size", cli_get(opts, "--max-array-size"), 1, 100000000, &max_array, &err))) {
        fprintf(stderr, "smudge slurm: %s\n", err.msg);
        return CLI_USAGE;
    }
    if (n_pos != 1 || !tasks) {
        fprintf(stderr, "smudge slurm: GRID and --tasks N are required (see --help)\n");
        return CLI_USAGE;
    }
    su_grid g;
    su_plan p;
    memset(&p, 0, sizeof p);
    if (su_grid_load(&g, pos[0], &err) || su_plan_build(&p, &g, &err) ||
        su_plan_check_executors(&p, &err)) {
        fprintf(stderr, "smudge slurm: %s\n", err.msg);
        su_plan_free(&p);
        su_grid_free(&g);
        return CLI_FAIL;
    }
    int rc = CLI_FAIL;
    char *grid_text = NULL;
    rn_slurm_stage *stages = calloc((size_t)p.n_stages + 1, sizeof *stages);
    char out_dir[PATH_MAX], work_dir[PATH_MAX], results[PATH_MAX], grid_path[PATH_MAX + 16];
    char templates[PATH_MAX], smudge[PATH_MAX], name[64], given[PATH_MAX];
    snprintf(name, sizeof name, "%s", cli_get(opts, "--name") ? cli_get(opts, "--name") : g.name);
    snprintf(given, sizeof given, "slurm-%s", name);
    if (!stages ||
        absolute(cli_get(opts, "--out-dir") ? cli_get(opts, "--out-dir") : given, out_dir,
                 sizeof out_dir, &err) ||
        mkdir_p(out_dir, &err) ||
        absolute(cli_get(opts, "--work-dir") ? cli_get(opts, "--work-dir") : g.work_dir,
                 work_dir, sizeof work_dir, &err) ||
        mkdir_p(work_dir, &err) ||
        find_templates(cli_get(opts, "--templates"), templates, sizeof templates, &err))
        goto done;
    if (cli_get(opts, "--results")) {
        if (absolute(cli_get(opts, "--results"), results, sizeof results, &err)) goto done;
    } else {
        snprintf(results, sizeof results, "%.*s/results.h5", PATH_MAX - 16, out_dir);
    }
    ssize_t n = readlink("/proc/self/exe", smudge, sizeof smudge - 1);
    if (n <= 0) {
        lm_errf(&err, "cannot find the smudge binary's path");
        goto done;
    }
    smudge[n] = '\0';
    snprintf(grid_path, sizeof grid_path, "%s/grid.json", out_dir);
    grid_text = grid_for_tasks(pos[0], &g, &err);
    if (!grid_text || rn_write_file(grid_path, grid_text, 0, &err)) goto done;

    int n_st = 0;
    for (int s = 0; s < p.n_stages; s++) {
        int count = 0;
        for (int u = 0; u < p.n; u++) count += p.units[u].stage == s;
        if (!count) continue;
        stages[n_st].stage = s;
        stages[n_st].tasks = count < tasks ? count : (int)tasks;
        n_st++;
    }
    rn_slurm_job job = {.name = name,
                        .template_dir = templates,
                        .out_dir = out_dir,
                        .smudge = smudge,
                        .grid = grid_path,
                        .work_dir = work_dir,
                        .results = results,
                        .partition = cli_get(opts, "--partition"),
                        .time = cli_get(opts, "--time") ? cli_get(opts, "--time") : "24:00:00",
                        .ranks_per_task = (int)ranks,
                        .threads = g.res.threads,
                        .max_array = (int)max_array,
                        .stages = stages,
                        .n_stages = n_st};
    if (rn_slurm_write(&job, &err)) goto done;
    printf("grid %s: %d units in %d stages\n", g.name, p.n, n_st);
    for (int i = 0; i < n_st; i++) {
        int count = 0;
        for (int u = 0; u < p.n; u++) count += p.units[u].stage == stages[i].stage;
        printf("  %s/stage%d.sbatch: %d units in %d array tasks (%d chunk%s)\n", out_dir,
               stages[i].stage, count, stages[i].tasks,
               (stages[i].tasks + (int)max_array - 1) / (int)max_array,
               stages[i].tasks > max_array ? "s" : "");
    }
    printf("  %s/merge.sbatch -> %s\n  submit with: bash %s/submit.sh\n", out_dir, results, out_dir);
    fflush(stdout);
    if (cli_has(opts, "--submit") && rn_slurm_submit(out_dir, &err)) goto done;
    rc = CLI_OK;
done:
    if (rc != CLI_OK) fprintf(stderr, "smudge slurm: %s\n", err.msg);
    free(grid_text);
    free(stages);
    su_plan_free(&p);
    su_grid_free(&g);
    return rc;
}
