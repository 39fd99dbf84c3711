/* Which row counts for a unit, and merging shard files into one.
 *
 * A unit can appear several times: a resumed run retries failed units, and
 * shards from a re-submitted array overlap. The rule everywhere (merge,
 * tables, resume) is the same: the newest row with status ok, else the
 * newest row. */
#include <cjson/cJSON.h>
#include <stdlib.h>
#include <string.h>

#include "results.h"

static uint64_t fnv1a(const char *s) {
    uint64_t h = 1469598103934665603ull;
    for (; *s; s++) h = (h ^ (unsigned char)*s) * 1099511628211ull;
    return h;
}

/* Is row b a better pick than row a (b comes later in the input)? */
static int better(const rs_row *a, const rs_row *b) {
    int ok_a = strcmp(a->status, RS_OK) == 0, ok_b = strcmp(b->status, RS_OK) == 0;
    if (ok_a != ok_b) return ok_b;
    return b->time_end >= a->time_end; /* later input wins ties */
}

int rs_rows_latest(const rs_row *rows, size_t n, size_t **idx, size_t *n_idx, lm_err *err) {
    *idx = NULL;
    *n_idx = 0;
    /* Open addressing over unit keys; slots hold 1 + position in out. */
    size_t cap = 16;
    while (cap < 2 * n) cap *= 2;
    size_t *slot = calloc(cap, sizeof *slot);
    size_t *out = malloc((n ? n : 1) * sizeof *out);
    if (!slot || !out) {
        free(slot);
        free(out);
        return lm_errf(err, "out of memory grouping %zu rows", n);
    }
    size_t m = 0;
    for (size_t i = 0; i < n; i++) {
        size_t h = (size_t)fnv1a(rows[i].unit_key) & (cap - 1);
        while (slot[h] && strcmp(rows[out[slot[h] - 1]].unit_key, rows[i].unit_key) != 0)
            h = (h + 1) & (cap - 1);
        if (!slot[h]) {
            out[m] = i;
            slot[h] = ++m;
        } else if (better(&rows[out[slot[h] - 1]], &rows[i])) {
            out[slot[h] - 1] = i;
        }
    }
    free(slot);
    *idx = out;
    *n_idx = m;
    return 0;
}

static int add_warning(char **warnings, const char *line) {
    if (!warnings) return 0;
    size_t old = *warnings ? strlen(*warnings) : 0, add = strlen(line);
    char *p = realloc(*warnings, old + add + 2);
    if (!p) return -1;
    memcpy(p + old, line, add);
    p[old + add] = '\n';
    p[old + add + 1] = '\0';
    *warnings = p;
    return 0;
}

/* Root attributes of one input, for the merged file's merged_from. */
static cJSON *input_record(const char *path, size_t n_rows) {
    cJSON *o = cJSON_CreateObject();
    if (!o) return NULL;
    cJSON_AddStringToObject(o, "path", path);
    cJSON_AddNumberToObject(o, "n_rows", (double)n_rows);
    static const char *keys[] = {"commit", "created", "smudge_version", "git_commit",
                                 "grid_sha256", "hosts", "slurm_job_ids", "slurm_array_job_ids"};
    for (size_t k = 0; k < sizeof keys / sizeof keys[0]; k++) {
        char *v = rs_store_read_attr(path, keys[k], NULL);
        if (!v) continue;
        /* JSON-valued attributes nest as JSON, the rest as strings. */
        cJSON *j = cJSON_Parse(v);
        if (j && (cJSON_IsObject(j) || cJSON_IsArray(j)))
            cJSON_AddItemToObject(o, keys[k], j);
        else {
            cJSON_Delete(j);
            cJSON_AddStringToObject(o, keys[k], v);
        }
        free(v);
    }
    return o;
}

int rs_merge(const char *const *inputs, int n, const char *out_path, int skip_bad,
             char **warnings, lm_err *err) {
    if (n <= 0) return lm_errf(err, "no input files to merge");
    rs_row *all = NULL;
    size_t n_all = 0, *pick = NULL, n_pick = 0;
    int used = 0, rc = -1;
    char *tmp = NULL;
    rs_store *out = NULL;
    char *grid = NULL, *grid_sha = NULL, *version = NULL, *commit = NULL;
    cJSON *prov = cJSON_CreateObject();
    cJSON *from = prov ? cJSON_AddArrayToObject(prov, "merged_from") : NULL;
    if (!from) {
        lm_errf(err, "out of memory");
        goto done;
    }

    for (int i = 0; i < n; i++) {
        rs_row *rows;
        size_t k;
        lm_err e = {{0}};
        if (rs_store_read(inputs[i], &rows, &k, &e)) {
            if (!skip_bad) {
                lm_errf(err, "input %d of %d is not usable: %s (skip_bad / --skip-bad "
                        "leaves such files out)", i + 1, n, e.msg);
                goto done;
            }
            char line[LM_ERR_MSG + 32];
            snprintf(line, sizeof line, "skipped %s", e.msg);
            if (add_warning(warnings, line)) {
                lm_errf(err, "out of memory");
                goto done;
            }
            continue;
        }
        rs_row *grown = realloc(all, (n_all + k + 1) * sizeof *grown);
        if (!grown) {
            rs_rows_free(rows, k);
            lm_errf(err, "out of memory merging %s", inputs[i]);
            goto done;
        }
        all = grown;
        /* rs_row holds its dynamic parts by pointer: moving is a copy. */
        memcpy(all + n_all, rows, k * sizeof *rows);
        n_all += k;
        free(rows);
        used++;

        cJSON *rec = input_record(inputs[i], k);
        if (rec) cJSON_AddItemToArray(from, rec);
        /* Keep the first input's grid and version; say so when they differ. */
        char *g = rs_store_read_attr(inputs[i], "grid_sha256", NULL);
        if (!grid_sha && g) {
            grid_sha = g;
            grid = rs_store_read_attr(inputs[i], "grid_json", NULL);
            g = NULL;
        } else if (g && grid_sha && strcmp(g, grid_sha) != 0) {
            char line[512];
            snprintf(line, sizeof line, "%s: grid_sha256 %.16s... differs from the first "
                     "input's %.16s...", inputs[i], g, grid_sha);
            add_warning(warnings, line);
        }
        free(g);
        if (!version) version = rs_store_read_attr(inputs[i], "smudge_version", NULL);
        if (!commit) commit = rs_store_read_attr(inputs[i], "git_commit", NULL);
    }
    if (used == 0) {
        lm_errf(err, "none of the %d inputs is usable", n);
        goto done;
    }
    if (rs_rows_latest(all, n_all, &pick, &n_pick, err)) goto done;

    if (version) cJSON_AddStringToObject(prov, "smudge_version", version);
    if (commit) cJSON_AddStringToObject(prov, "git_commit", commit);
    if (grid) cJSON_AddStringToObject(prov, "grid", grid);
    char *prov_text = cJSON_PrintUnformatted(prov);
    size_t len = strlen(out_path);
    tmp = malloc(len + 5);
    if (!prov_text || !tmp) {
        free(prov_text);
        lm_errf(err, "out of memory");
        goto done;
    }
    memcpy(tmp, out_path, len);
    memcpy(tmp + len, ".tmp", 5);
    remove(tmp); /* left by an earlier merge that died */
    int cr = rs_store_create(tmp, prov_text, &out, err);
    free(prov_text);
    if (cr) goto done;
    rs_store_set_flush(out, 0); /* the rename below is the commit */
    for (size_t i = 0; i < n_pick; i++)
        if (rs_store_append(out, &all[pick[i]], err)) goto done;
    rs_store *o = out;
    out = NULL;
    if (rs_store_close(o, err)) goto done;
    if (rename(tmp, out_path) != 0) {
        lm_errf(err, "cannot rename %s to %s", tmp, out_path);
        goto done;
    }
    rc = 0;
done:
    if (out) rs_store_close(out, NULL);
    if (rc && tmp) remove(tmp);
    free(tmp);
    free(pick);
    rs_rows_free(all, n_all);
    free(grid);
    free(grid_sha);
    free(version);
    free(commit);
    cJSON_Delete(prov);
    return rc;
}
