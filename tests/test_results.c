/* The result store: round trip with a metric appearing mid-way, reopen
 * for append, a writer killed without closing, truncated and bit-flipped
 * files, merge of overlapping shards, tables checked against numbers
 * worked out by hand, and h5dump reading the file. */
#include <fcntl.h>
#include <hdf5.h>
#include <math.h>
#include <openssl/evp.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "check.h"
#include "results.h"

static char dir[64];

static const char *at(const char *name) {
    static char buf[8][256];
    static int k;
    k = (k + 1) % 8;
    snprintf(buf[k], sizeof buf[k], "%s/%s", dir, name);
    return buf[k];
}

static void make_row(rs_row *r, const char *key, const char *stage, const char *model,
                     const char *fp, const char *method, const char *params, int seed,
                     const char *status, double t_end) {
    rs_row_init(r);
    RS_SET(r, unit_key, key);
    char hash[65];
    snprintf(hash, sizeof hash, "%064x", (unsigned)(strlen(key) * 7919u + (unsigned)seed));
    RS_SET(r, unit_hash, hash);
    RS_SET(r, stage, stage);
    RS_SET(r, model, model);
    RS_SET(r, fingerprint, fp);
    RS_SET(r, method, method);
    RS_SET(r, params, params);
    RS_SET(r, status, status);
    r->seed = seed;
    r->time_start = t_end - 1.5;
    r->time_end = t_end;
    r->wall_seconds = 1.5;
    r->tokens = 1000 + seed;
    r->flops = 1e12;
    r->peak_rss_bytes = 123456789;
    rs_row_fill_provenance(r, 1);
}

/* Canonical JSON: metrics and details in name order. */
static int cmp_m(const void *a, const void *b) {
    return strcmp(((const rs_metric *)a)->name, ((const rs_metric *)b)->name);
}
static int cmp_d(const void *a, const void *b) {
    return strcmp(((const rs_detail *)a)->name, ((const rs_detail *)b)->name);
}
static char *canon(const rs_row *r) {
    rs_row c;
    if (rs_row_copy(&c, r, NULL)) return NULL;
    if (c.n_metrics) qsort(c.metrics, (size_t)c.n_metrics, sizeof *c.metrics, cmp_m);
    if (c.n_details) qsort(c.details, (size_t)c.n_details, sizeof *c.details, cmp_d);
    char *s = rs_row_to_json(&c);
    rs_row_free(&c);
    return s;
}
static int same_row(const rs_row *a, const rs_row *b) {
    char *x = canon(a), *y = canon(b);
    int same = x && y && strcmp(x, y) == 0;
    if (!same) fprintf(stderr, "  wrote %s\n  read  %s\n", x, y);
    free(x);
    free(y);
    return same;
}

static void copy_file(const char *from, const char *to) {
    FILE *a = fopen(from, "rb"), *b = fopen(to, "wb");
    char buf[65536];
    size_t k;
    while (a && b && (k = fread(buf, 1, sizeof buf, a)) > 0) fwrite(buf, 1, k, b);
    if (a) fclose(a);
    if (b) fclose(b);
}
static long file_size(const char *p) {
    struct stat st;
    return stat(p, &st) == 0 ? (long)st.st_size : -1;
}
static void flip_bytes(const char *p, long off, int n) {
    int fd = open(p, O_RDWR);
    for (int i = 0; i < n && fd >= 0; i++) {
        unsigned char c;
        if (pread(fd, &c, 1, off + i) != 1) break;
        c ^= 0x5a;
        if (pwrite(fd, &c, 1, off + i) != 1) break;
    }
    if (fd >= 0) close(fd);
}

static const char *prov =
    "{\"smudge_version\":\"0.1.0\",\"git_commit\":\"abc123\",\"grid\":{\"models\":[\"m\"]}}";

/* ---------------------------------------------------------------- store */

static void test_round_trip(void) {
    lm_err err = {{0}};
    rs_store *s;
    const char *path = at("a.h5");
    CHECK(rs_store_create(path, prov, &s, &err) == 0, "%s", err.msg);
    if (!s) return;
    rs_store *again;
    CHECK(rs_store_create(path, prov, &again, &err) < 0 && !again, "creating over an existing file");

    rs_row w[6];
    for (int i = 0; i < 6; i++) {
        char key[32];
        snprintf(key, sizeof key, "unit-%d", i);
        make_row(&w[i], key, "erased", "tiny-llama", "if_sft", "meraser", "{\"lr\":0.0001}", i,
                 i == 2 ? RS_FAILED : RS_OK, 1000 + i);
        if (i == 2) rs_row_set_message(&w[i], "NaN loss at step %d", 17);
        rs_row_set_metric(&w[i], "fsr", 0.125 * i, 8, NULL);
        if (i >= 2) rs_row_set_metric(&w[i], "ppl", 4.5 + i, 518, NULL); /* new mid-way */
        if (i == 4) rs_row_set_metric(&w[i], "acc_boolq", NAN, 7, NULL); /* NaN with a count */
    }
    double hits[8] = {1, 0, 1, 1, 0, 0, 1, 0};
    int64_t lens[3] = {12, 30, 7};
    rs_row_add_detail(&w[1], "trigger_hit", hits, 8, NULL);
    rs_row_add_detail_i64(&w[1], "new_tokens", lens, 3, NULL);
    rs_row_add_detail(&w[3], "doc_loss", hits, 0, NULL); /* empty array */

    for (int i = 0; i < 4; i++) CHECK(rs_store_append(s, &w[i], &err) == 0, "append %d: %s", i, err.msg);
    CHECK(rs_store_rows(s) == 4, "rows %lld", (long long)rs_store_rows(s));
    CHECK(rs_store_close(s, &err) == 0, "%s", err.msg);

    CHECK(rs_store_open_append(path, &s, &err) == 0, "reopen: %s", err.msg);
    if (s) {
        CHECK(rs_store_warning(s) == NULL, "unexpected warning");
        CHECK(rs_store_rows(s) == 4, "rows after reopen");
        for (int i = 4; i < 6; i++) CHECK(rs_store_append(s, &w[i], &err) == 0, "%s", err.msg);
        /* A field that had to be cut is refused, not stored wrong. */
        rs_row bad;
        make_row(&bad, "x", "erased", "m", "f", "", "", 0, RS_OK, 1);
        char longkey[400];
        memset(longkey, 'k', sizeof longkey - 1);
        longkey[sizeof longkey - 1] = '\0';
        CHECK(RS_SET(&bad, unit_key, longkey) < 0, "cut not reported");
        CHECK(rs_store_append(s, &bad, &err) < 0 && strstr(err.msg, "unit_key"), "%s", err.msg);
        rs_row_free(&bad);
        CHECK(rs_store_close(s, &err) == 0, "%s", err.msg);
    }

    rs_row *r;
    size_t n;
    CHECK(rs_store_read(path, &r, &n, &err) == 0, "%s", err.msg);
    CHECK(n == 6, "read %zu rows", n);
    for (size_t i = 0; i < n && i < 6; i++) CHECK(same_row(&w[i], &r[i]), "row %zu differs", i);
    if (n >= 2) {
        const rs_detail *d = rs_row_detail(&r[1], "new_tokens");
        CHECK(d && d->kind == RS_DETAIL_I64 && d->count == 3 && d->i64[1] == 30, "int detail");
        CHECK(isnan(rs_row_metric(&r[1], "ppl", NULL)), "ppl absent in an early row");
    }
    rs_rows_free(r, n);

    /* Provenance on the root. */
    char *v = rs_store_read_attr(path, "git_commit", &err);
    CHECK(v && strcmp(v, "abc123") == 0, "git_commit %s", v ? v : err.msg);
    free(v);
    v = rs_store_read_attr(path, "grid_sha256", &err);
    unsigned char h[32];
    unsigned int hl = 32;
    const char *grid = "{\"models\":[\"m\"]}";
    EVP_Digest(grid, strlen(grid), h, &hl, EVP_sha256(), NULL);
    char hex[65];
    for (int i = 0; i < 32; i++) sprintf(hex + 2 * i, "%02x", h[i]);
    CHECK(v && strcmp(v, hex) == 0, "grid_sha256 %s", v ? v : err.msg);
    free(v);
    v = rs_store_read_attr(path, "commit", &err);
    CHECK(v && strstr(v, "\"n_rows\":6,\"n_metrics\":3,\"rows_sha256\":\""), "commit %s",
          v ? v : err.msg);
    free(v);
    v = rs_store_read_attr(path, "hosts", &err);
    CHECK(v && v[0] == '[', "hosts %s", v ? v : err.msg);
    free(v);
    for (int i = 0; i < 6; i++) rs_row_free(&w[i]);

    /* h5dump reads it (the serial tools, as on any machine). */
    if (access("/usr/bin/h5dump", X_OK) == 0) {
        char cmd[600];
        snprintf(cmd, sizeof cmd, "/usr/bin/h5dump %s > %s 2>&1", path, at("dump.txt"));
        CHECK(system(cmd) == 0, "h5dump failed on %s", path);
        FILE *f = fopen(at("dump.txt"), "r");
        char buf[1 << 16];
        size_t k = f ? fread(buf, 1, sizeof buf - 1, f) : 0;
        buf[k] = '\0';
        if (f) fclose(f);
        CHECK(strstr(buf, "\"unit-5\"") && strstr(buf, "\"metric_names\""),
              "h5dump output lacks the rows");
    } else {
        fprintf(stderr, "note: /usr/bin/h5dump absent, not checked\n");
    }

    /* h5py reads it (Debian's python3-h5py, in bootstrap's test packages). */
    if (system("/usr/bin/python3 -c 'import h5py' 2>/dev/null") == 0) {
        static const char py[] =
            "import h5py, math, sys\n"
            "f = h5py.File(sys.argv[1], 'r')\n"
            "u = f['units'][:]\n"
            "names = [n.decode() for n in f['metric_names'][:]]\n"
            "m = f['metrics'][:]\n"
            "assert f.attrs['commit']['n_rows'] == 6 and f.attrs['git_commit'] == 'abc123'\n"
            "assert list(u['unit_key']) == [b'unit-%d' % i for i in range(6)]\n"
            "assert u['status'][2] == b'failed' and u['seed'][5] == 5\n"
            "assert names[:2] == ['fsr', 'ppl'], names\n"
            "assert m[5, 0] == 0.625 and math.isnan(m[1, 1]) and m[3, 1] == 7.5\n"
            "assert f['metric_n'][4, names.index('acc_boolq')] == 7\n"
            "assert list(f['detail/1/trigger_hit'][:]) == [1, 0, 1, 1, 0, 0, 1, 0]\n"
            "assert f['detail/1'].attrs['unit_key'] == 'unit-1'\n";
        FILE *f = fopen(at("check.py"), "w");
        if (f) {
            fputs(py, f);
            fclose(f);
        }
        char cmd[600];
        snprintf(cmd, sizeof cmd, "/usr/bin/python3 %s %s", at("check.py"), path);
        CHECK(system(cmd) == 0, "h5py could not read %s as expected", path);
    } else {
        fprintf(stderr, "note: h5py absent (apt-get install python3-h5py), not checked\n");
    }
}

/* A child appends and reports each row on a pipe; it dies without closing.
 * Every reported row must be in the file, and the file must take more. */
static void test_killed_writer(int hard) {
    const char *path = at(hard ? "killed.h5" : "exited.h5");
    int fds[2];
    if (pipe(fds) != 0) return;
    fflush(NULL);
    pid_t pid = fork();
    if (pid == 0) {
        close(fds[0]);
        rs_store *s;
        if (rs_store_create(path, NULL, &s, NULL)) _exit(2);
        for (int i = 0; i < (hard ? 100000 : 5); i++) {
            rs_row r;
            char key[32];
            snprintf(key, sizeof key, "k%d", i);
            make_row(&r, key, "removed", "m", "utf", "prune", "{}", i, RS_OK, i);
            rs_row_set_metric(&r, i < 3 ? "fsr" : "ppl", i, 1, NULL);
            if (i % 3 == 0) rs_row_add_detail(&r, "x", (double[]){1, 2, 3}, 3, NULL);
            if (rs_store_append(s, &r, NULL)) _exit(3);
            rs_row_free(&r);
            if (write(fds[1], &i, sizeof i) != sizeof i) _exit(4);
        }
        _exit(0); /* no close: only what append flushed is on disk */
    }
    close(fds[1]);
    int last = -1, got;
    while (read(fds[0], &got, sizeof got) == sizeof got) {
        last = got;
        if (hard && last >= 40) {
            kill(pid, SIGKILL);
            break;
        }
    }
    int status;
    waitpid(pid, &status, 0);
    while (read(fds[0], &got, sizeof got) == sizeof got) last = got; /* reported before death */
    close(fds[0]);
    CHECK(hard ? WIFSIGNALED(status) : (WIFEXITED(status) && WEXITSTATUS(status) == 0),
          "child status %d", status);

    lm_err err = {{0}};
    rs_store *s;
    CHECK(rs_store_open_append(path, &s, &err) == 0, "reopen after a killed writer: %s", err.msg);
    if (!s) return;
    if (rs_store_warning(s)) fprintf(stderr, "note: %s\n", rs_store_warning(s));
    int64_t n = rs_store_rows(s);
    CHECK(n >= last + 1, "file has %lld rows, child reported %d", (long long)n, last + 1);
    rs_row r;
    make_row(&r, "after", "removed", "m", "utf", "prune", "{}", 0, RS_OK, 1);
    CHECK(rs_store_append(s, &r, &err) == 0, "%s", err.msg);
    rs_row_free(&r);
    CHECK(rs_store_close(s, &err) == 0, "%s", err.msg);
    rs_row *rows;
    size_t k;
    CHECK(rs_store_read(path, &rows, &k, &err) == 0, "%s", err.msg);
    CHECK((int64_t)k == n + 1, "%zu rows after one more append", k);
    for (int i = 0; i <= last && i < (int)k; i++) {
        char key[32];
        snprintf(key, sizeof key, "k%d", i);
        CHECK(strcmp(rows[i].unit_key, key) == 0, "row %d is %s", i, rows[i].unit_key);
    }
    if (k > 0) CHECK(strcmp(rows[k - 1].unit_key, "after") == 0, "last row");
    rs_rows_free(rows, k);
}

/* Damaged files are reported with the file named, never opened for append. */
static int refused(const char *path, lm_err *err) {
    rs_store *s = NULL;
    rs_row *rows = NULL;
    size_t n = 0;
    int a = rs_store_open_append(path, &s, err);
    if (s) rs_store_close(s, NULL);
    lm_err e2 = {{0}};
    int b = rs_store_read(path, &rows, &n, &e2);
    rs_rows_free(rows, n);
    return a < 0 && b < 0 && strstr(err->msg, path) != NULL;
}

static void test_damage(void) {
    const char *good = at("a.h5");
    long size = file_size(good);
    CHECK(size > 4096, "good file size %ld", size);
    lm_err err = {{0}};

    long cuts[] = {size / 2, size - 100, 100, 0};
    for (int i = 0; i < 4; i++) {
        const char *p = at("trunc.h5");
        copy_file(good, p);
        CHECK(truncate(p, cuts[i]) == 0, "truncate");
        memset(&err, 0, sizeof err);
        CHECK(refused(p, &err), "truncated to %ld bytes not refused", cuts[i]);
        if (i == 0) fprintf(stderr, "note: truncated: %s\n", err.msg);
        remove(p);
    }

    /* Flip bytes inside the /units data chunk: Fletcher-32 must catch it. */
    hid_t f = H5Fopen(good, H5F_ACC_RDONLY, H5P_DEFAULT);
    hid_t d = H5Dopen2(f, "units", H5P_DEFAULT);
    hsize_t off[1], chunk_size = 0;
    haddr_t addr = 0;
    unsigned mask;
    hid_t sp = H5Dget_space(d);
    H5Dget_chunk_info(d, sp, 0, off, &mask, &addr, &chunk_size);
    H5Sclose(sp);
    H5Dclose(d);
    H5Fclose(f);
    CHECK(chunk_size > 0, "no chunk found");
    const char *p = at("flip.h5");
    copy_file(good, p);
    flip_bytes(p, (long)(addr + chunk_size / 2), 4);
    memset(&err, 0, sizeof err);
    CHECK(refused(p, &err), "flipped data bytes not refused");
    fprintf(stderr, "note: flipped chunk: %s\n", err.msg);

    /* Flip bytes in metadata (superblock and root object header). */
    copy_file(good, p);
    flip_bytes(p, 20, 8);
    memset(&err, 0, sizeof err);
    CHECK(refused(p, &err), "flipped superblock not refused");

    /* Flip bytes in the middle: either detected, or nothing that is read
     * changed (the spot may be dead space). Never different rows. */
    copy_file(good, p);
    flip_bytes(p, size / 2, 64);
    rs_row *a = NULL, *b = NULL;
    size_t na = 0, nb = 0;
    memset(&err, 0, sizeof err);
    rs_store_read(good, &a, &na, NULL);
    if (rs_store_read(p, &b, &nb, &err) == 0) {
        CHECK(na == nb, "row count changed silently");
        for (size_t i = 0; i < na && i < nb; i++) CHECK(same_row(&a[i], &b[i]), "row %zu changed silently", i);
    } else {
        CHECK(strstr(err.msg, p) != NULL, "message names the file: %s", err.msg);
    }
    rs_rows_free(a, na);
    rs_rows_free(b, nb);

    /* Tampered counters: the chain or the counts disagree. */
    for (int delta = -1; delta <= 1; delta += 2) {
        copy_file(good, p);
        f = H5Fopen(p, H5F_ACC_RDWR, H5P_DEFAULT);
        hid_t at_ = H5Aopen(f, "commit", H5P_DEFAULT), t = H5Aget_type(at_);
        unsigned char rec[256] = {0};
        size_t o = H5Tget_member_offset(t, (unsigned)H5Tget_member_index(t, "n_rows"));
        int64_t nr;
        H5Aread(at_, t, rec);
        memcpy(&nr, rec + o, 8); /* stored little-endian, as this host */
        nr += delta;
        memcpy(rec + o, &nr, 8);
        H5Awrite(at_, t, rec);
        H5Tclose(t);
        H5Aclose(at_);
        H5Fclose(f);
        memset(&err, 0, sizeof err);
        CHECK(refused(p, &err), "n_rows %+d not refused", delta);
        CHECK(strstr(err.msg, delta < 0 ? "checksum" : "row count"), "%s", err.msg);
    }

    /* An unfinished append (rows past n_rows) is cut when reopened. */
    copy_file(good, p);
    f = H5Fopen(p, H5F_ACC_RDWR, H5P_DEFAULT);
    d = H5Dopen2(f, "units", H5P_DEFAULT);
    hsize_t dims[1] = {7};
    H5Dset_extent(d, dims);
    H5Dclose(d);
    H5Fclose(f);
    rs_row *rows;
    size_t n;
    CHECK(rs_store_read(p, &rows, &n, &err) == 0 && n == 6, "torn tail read: %s", err.msg);
    rs_rows_free(rows, n);
    rs_store *s;
    CHECK(rs_store_open_append(p, &s, &err) == 0, "torn tail reopen: %s", err.msg);
    if (s) {
        CHECK(rs_store_warning(s) != NULL, "no warning about the dropped append");
        CHECK(rs_store_rows(s) == 6, "rows %lld", (long long)rs_store_rows(s));
        rs_store_close(s, NULL);
    }
    remove(p);

    /* Not a results file at all. */
    FILE *t = fopen(at("text.h5"), "w");
    fputs("hello\n", t);
    fclose(t);
    memset(&err, 0, sizeof err);
    CHECK(refused(at("text.h5"), &err), "text file not refused");
}

/* ---------------------------------------------------------------- merge */

static void write_shard(const char *path, rs_row *rows, int n) {
    rs_store *s;
    lm_err err = {{0}};
    CHECK(rs_store_create(path, prov, &s, &err) == 0, "%s", err.msg);
    for (int i = 0; i < n && s; i++) CHECK(rs_store_append(s, &rows[i], &err) == 0, "%s", err.msg);
    if (s) rs_store_close(s, &err);
    for (int i = 0; i < n; i++) rs_row_free(&rows[i]);
}

static void test_merge(void) {
    rs_row a[2], b[3], c[3];
    make_row(&a[0], "k1", "removed", "m", "utf", "prune", "{}", 0, RS_OK, 10);
    rs_row_set_metric(&a[0], "fsr", 0.5, 32, NULL);
    make_row(&a[1], "k2", "removed", "m", "utf", "prune", "{}", 1, RS_FAILED, 11);
    make_row(&b[0], "k1", "removed", "m", "utf", "prune", "{}", 0, RS_OK, 20);
    rs_row_set_metric(&b[0], "fsr", 0.75, 32, NULL);
    rs_row_add_detail(&b[0], "hit", (double[]){1, 0, 1, 1}, 4, NULL);
    make_row(&b[1], "k2", "removed", "m", "utf", "prune", "{}", 1, RS_OK, 5);
    rs_row_set_metric(&b[1], "fsr", 0.25, 32, NULL);
    make_row(&b[2], "k3", "removed", "m", "utf", "prune", "{}", 2, RS_FAILED, 30);
    make_row(&c[0], "k1", "removed", "m", "utf", "prune", "{}", 0, RS_FAILED, 40);
    make_row(&c[1], "k3", "removed", "m", "utf", "prune", "{}", 2, RS_FAILED, 50);
    rs_row_set_message(&c[1], "newest failure");
    make_row(&c[2], "k4", "removed", "m", "utf", "prune", "{}", 3, RS_OK, 60);
    rs_row_set_metric(&c[2], "ppl", 9.5, 518, NULL); /* a column only C has */
    write_shard(at("s1.h5"), a, 2);
    write_shard(at("s2.h5"), b, 3);
    write_shard(at("s3.h5"), c, 3);

    const char *in[] = {at("s1.h5"), at("s2.h5"), at("s3.h5")};
    lm_err err = {{0}};
    char *warn = NULL;
    CHECK(rs_merge(in, 3, at("all.h5"), 0, &warn, &err) == 0, "%s", err.msg);
    CHECK(warn == NULL, "warnings: %s", warn ? warn : "");
    free(warn);
    CHECK(access(at("all.h5.tmp"), F_OK) != 0, "tmp file left behind");
    rs_row *r;
    size_t n;
    CHECK(rs_store_read(at("all.h5"), &r, &n, &err) == 0, "%s", err.msg);
    CHECK(n == 4, "merged rows %zu", n);
    if (n == 4) {
        CHECK(strcmp(r[0].unit_key, "k1") == 0 && r[0].time_end == 20 &&
              rs_row_metric(&r[0], "fsr", NULL) == 0.75, "k1: newest ok wins over newer failure");
        CHECK(rs_row_detail(&r[0], "hit") && rs_row_detail(&r[0], "hit")->count == 4, "detail kept");
        CHECK(strcmp(r[1].status, RS_OK) == 0 && r[1].time_end == 5, "k2: an ok row beats a newer failure");
        CHECK(strcmp(r[2].status, RS_FAILED) == 0 && strcmp(r[2].message, "newest failure") == 0,
              "k3: none ok -> newest");
        CHECK(rs_row_metric(&r[3], "ppl", NULL) == 9.5, "k4 has the ppl column");
    }
    rs_rows_free(r, n);
    char *mf = rs_store_read_attr(at("all.h5"), "merged_from", &err);
    CHECK(mf && strstr(mf, "s1.h5") && strstr(mf, "s3.h5"), "merged_from %s", mf ? mf : err.msg);
    free(mf);
    char *g = rs_store_read_attr(at("all.h5"), "grid_json", &err);
    CHECK(g && strcmp(g, "{\"models\":[\"m\"]}") == 0, "grid carried over: %s", g ? g : err.msg);
    free(g);

    /* A damaged shard: fail naming it, or skip it with a warning. */
    copy_file(at("s2.h5"), at("bad.h5"));
    CHECK(truncate(at("bad.h5"), file_size(at("bad.h5")) / 2) == 0, "truncate");
    const char *in2[] = {at("s1.h5"), at("bad.h5"), at("s3.h5")};
    memset(&err, 0, sizeof err);
    CHECK(rs_merge(in2, 3, at("all2.h5"), 0, NULL, &err) < 0 && strstr(err.msg, "bad.h5"),
          "bad shard: %s", err.msg);
    CHECK(access(at("all2.h5"), F_OK) != 0 && access(at("all2.h5.tmp"), F_OK) != 0,
          "failed merge left a file");
    warn = NULL;
    CHECK(rs_merge(in2, 3, at("all2.h5"), 1, &warn, &err) == 0, "%s", err.msg);
    CHECK(warn && strstr(warn, "bad.h5"), "warning %s", warn ? warn : "(none)");
    free(warn);
    CHECK(rs_store_read(at("all2.h5"), &r, &n, &err) == 0 && n == 4, "skip-bad merge rows %zu", n);
    rs_rows_free(r, n);
}

/* ---------------------------------------------------------------- tables */

static char *table_text(const rs_row *rows, size_t n, rs_format fmt, const char *metric,
                        rs_layout layout) {
    char *buf = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&buf, &len);
    lm_err err = {{0}};
    int rc = rs_table(rows, n, fmt, metric, layout, f, &err);
    fclose(f);
    CHECK(rc == 0, "table: %s", err.msg);
    return buf;
}

static int has(const char *text, const char *needle) {
    if (text && strstr(text, needle)) return 1;
    fprintf(stderr, "  missing '%s' in:\n%s\n", needle, text ? text : "(null)");
    return 0;
}

static void test_tables(void) {
    rs_row r[40];
    int n = 0;
    char key[64];
    /* base model */
    make_row(&r[n], "base/m", "base", "m|1", "", "", "", 0, RS_OK, 1);
    rs_row_set_metric(&r[n++], "ppl", 4.0, 518, NULL);
    /* fingerprinted: if_sft 3 seeds at FSR 1; utf 2 seeds */
    for (int s = 0; s < 3; s++) {
        snprintf(key, sizeof key, "fp/if/%d", s);
        make_row(&r[n], key, "fingerprinted", "m|1", "if_sft", "", "", s, RS_OK, 2);
        rs_row_set_metric(&r[n], "fsr", 1.0, 8, NULL);
        rs_row_set_metric(&r[n++], "ppl", 4.0 + s, 518, NULL); /* 4,5,6 */
    }
    for (int s = 0; s < 2; s++) {
        snprintf(key, sizeof key, "fp/utf/%d", s);
        make_row(&r[n], key, "fingerprinted", "m|1", "utf", "", "", s, RS_OK, 2);
        rs_row_set_metric(&r[n], "fsr", 1.0, 32, NULL);
        rs_row_set_metric(&r[n++], "ppl", 4.0 + s, 518, NULL); /* 4,5 */
    }
    /* erased: if_sft 0, .125, .25 */
    for (int s = 0; s < 3; s++) {
        snprintf(key, sizeof key, "er/if/%d", s);
        make_row(&r[n], key, "erased", "m|1", "if_sft", "meraser", "{}", s, RS_OK, 3);
        rs_row_set_metric(&r[n++], "fsr", 0.125 * s, 8, NULL);
    }
    /* erased utf: one seed */
    make_row(&r[n], "er/utf/0", "erased", "m|1", "utf", "meraser", "{}", 0, RS_OK, 3);
    rs_row_set_metric(&r[n++], "fsr", 0.375, 32, NULL);
    /* recovered: if_sft all failed; utf one ok one failed */
    for (int s = 0; s < 2; s++) {
        snprintf(key, sizeof key, "re/if/%d", s);
        make_row(&r[n++], key, "recovered", "m|1", "if_sft", "meraser", "{}", s, RS_FAILED, 4);
    }
    make_row(&r[n], "re/utf/0", "recovered", "m|1", "utf", "meraser", "{}", 0, RS_OK, 4);
    rs_row_set_metric(&r[n++], "fsr", 0.0, 32, NULL);
    make_row(&r[n++], "re/utf/1", "recovered", "m|1", "utf", "meraser", "{}", 1, RS_FAILED, 4);
    /* a retried unit: the older failure must not count */
    make_row(&r[n++], "er/utf/0", "erased", "m|1", "utf", "meraser", "{}", 0, RS_FAILED, 2.5);
    /* removal methods: pruning at two ratios */
    for (int s = 0; s < 2; s++) {
        snprintf(key, sizeof key, "pr5/if/%d", s);
        make_row(&r[n], key, "removed", "m|1", "if_sft", "prune", "{\"ratio\":0.05}", s, RS_OK, 5);
        rs_row_set_metric(&r[n++], "fsr", 0.875 + 0.125 * s, 8, NULL); /* .875, 1 */
        snprintf(key, sizeof key, "pr20/if/%d", s);
        make_row(&r[n], key, "removed", "m|1", "if_sft", "prune", "{\"ratio\":0.2}", s, RS_OK, 5);
        rs_row_set_metric(&r[n++], "fsr", 0.5, 8, NULL);
    }
    make_row(&r[n++], "skip/0", "removed", "m|1", "utf", "cleangen", "{}", 0, RS_SKIPPED, 5);

    /* By hand: erased if_sft FSR {0, 12.5, 25}%: mean 12.5, s = 12.5,
     * h = 4.302653 * 12.5 / sqrt(3) = 31.0517. Fingerprinted utf PPL {4, 5}:
     * mean 4.5, s = 0.70711, h = 12.706205 * 0.70711 / sqrt(2) = 6.3531.
     * Pruning 5%: {87.5, 100}: mean 93.75, s = 8.8388, h = 79.4138. */
    char *md = table_text(r, (size_t)n, RS_FMT_MD, "fsr", RS_LAYOUT_STAGES);
    CHECK(has(md, "| model | fingerprint | fingerprinted | erased | recovered |"), "md header");
    CHECK(has(md, "| m\\|1 | if\\_sft | 100.0 ± 0.0 | 12.5 ± 31.1 | failed |"), "md if_sft row");
    CHECK(has(md, "| m\\|1 | utf | 100.0 ± 0.0 | 37.5 | 0.0\\* |"), "md utf row");
    CHECK(has(md, "3 units failed (cells showing \"failed\": 1,"), "md footnote");
    CHECK(has(md, "1 unit skipped"), "skipped footnote");
    free(md);

    md = table_text(r, (size_t)n, RS_FMT_MD, "ppl", RS_LAYOUT_STAGES);
    CHECK(has(md, "| base |"), "base column");
    CHECK(has(md, "| m\\|1 | utf | 4.00 | 4.50 ± 6.35 |"), "ppl utf row");
    CHECK(has(md, "| m\\|1 | if\\_sft | 4.00 | 5.00 ± 2.48 |"), "ppl if_sft row");
    free(md);

    char *csv = table_text(r, (size_t)n, RS_FMT_CSV, "fsr", RS_LAYOUT_STAGES);
    CHECK(has(csv, "model,fingerprint,fingerprinted mean,fingerprinted ci95_lo,"), "csv header");
    CHECK(has(csv, "m|1,if_sft,100.000,100.000,100.000,3,"), "csv labels");
    CHECK(has(csv, ",12.500,0.000,43.552,3,failed,,,0"), "csv clipped CI and failed cell");
    free(csv);

    char *tex = table_text(r, (size_t)n, RS_FMT_LATEX, "fsr", RS_LAYOUT_METHODS);
    CHECK(has(tex, "\\begin{tabular}{lrr}"), "latex columns");
    CHECK(has(tex, "method & if\\_sft & utf \\\\"), "latex header escaped");
    CHECK(has(tex, "prune ratio=0.05 & $93.8 \\pm 79.4$ & --"), "latex pruning row");
    CHECK(has(tex, "prune ratio=0.2 & $50.0 \\pm 0.0$"), "latex second ratio");
    CHECK(has(tex, "meraser (erased) & $12.5 \\pm 31.1$ & 37.5 \\\\"), "latex meraser erased");
    CHECK(has(tex, "(no removal) & $100.0 \\pm 0.0$ & $100.0 \\pm 0.0$"), "reference row");
    free(tex);

    md = table_text(r, (size_t)n, RS_FMT_MD, "fsr", RS_LAYOUT_METHODS);
    CHECK(has(md, "| method | if\\_sft | utf |"), "md methods header");
    CHECK(has(md, "| meraser (recovered) | failed | 0.0\\* |"), "md methods failed");
    free(md);
    csv = table_text(r, (size_t)n, RS_FMT_CSV, "fsr", RS_LAYOUT_METHODS);
    CHECK(has(csv, "prune ratio=0.05,93.750,14.336,100.000,2,,,,0"), "csv methods row");
    free(csv);

    /* A metric nobody has: the error lists the ones there are. */
    lm_err me = {{0}};
    FILE *null = fopen("/dev/null", "w");
    CHECK(rs_table(r, (size_t)n, RS_FMT_MD, "bleu", RS_LAYOUT_STAGES, null, &me) < 0 &&
          strstr(me.msg, "'bleu'") && strstr(me.msg, "ppl, fsr"), "%s", me.msg);
    fclose(null);

    /* The same table from the rows written to a file and read back. */
    rs_store *st;
    lm_err e = {{0}};
    CHECK(rs_store_create(at("tables.h5"), prov, &st, &e) == 0, "%s", e.msg);
    for (int i = 0; i < n && st; i++) CHECK(rs_store_append(st, &r[i], &e) == 0, "%s", e.msg);
    if (st) rs_store_close(st, &e);
    rs_row *back;
    size_t nb;
    CHECK(rs_store_read(at("tables.h5"), &back, &nb, &e) == 0 && nb == (size_t)n, "%s", e.msg);
    if (nb == (size_t)n) {
        char *x = table_text(r, (size_t)n, RS_FMT_MD, "fsr", RS_LAYOUT_STAGES);
        char *y = table_text(back, nb, RS_FMT_MD, "fsr", RS_LAYOUT_STAGES);
        CHECK(x && y && strcmp(x, y) == 0, "table from the file differs");
        free(x);
        free(y);
    }
    rs_rows_free(back, nb);

    /* The plot draws every method. */
    lm_err err = {{0}};
    CHECK(rs_plot_svg(r, (size_t)n, at("p.svg"), &err) == 0, "%s", err.msg);
    FILE *f = fopen(at("p.svg"), "r");
    char buf[1 << 16];
    size_t k = f ? fread(buf, 1, sizeof buf - 1, f) : 0;
    buf[k] = '\0';
    if (f) fclose(f);
    CHECK(strstr(buf, "<svg") && strstr(buf, "prune ratio=0.05") && strstr(buf, "</svg>"), "svg");
    for (int i = 0; i < n; i++) rs_row_free(&r[i]);
}

static void test_stats(void) {
    static const int ns[] = {2, 3, 4, 5, 6, 8, 10, 20, 30};
    static const double ts[] = {12.706, 4.303, 3.182, 2.776, 2.571, 2.365, 2.262, 2.093, 2.045};
    for (int i = 0; i < 9; i++) CHECK_NEAR(rs_t975(ns[i] - 1), ts[i], 6e-4, "t table (metrics.md)");
    CHECK_NEAR(rs_t975(40), 2.021075, 1e-5, "t 40");
    CHECK_NEAR(rs_t975(120), 1.979930, 1e-5, "t 120");
    CHECK_NEAR(rs_t975(100000), 1.959985, 1e-5, "t large");
    double m, h, v[3] = {0, 0.125, 0.25};
    rs_mean_ci95(v, 3, &m, &h);
    CHECK_NEAR(m, 0.125, 1e-12, "mean");
    CHECK_NEAR(h, 4.30265273 * 0.125 / sqrt(3), 1e-8, "half-width");
    rs_mean_ci95(v, 1, &m, &h);
    CHECK(m == 0 && h == 0, "one seed: no interval");
    CHECK(rs_metric_is_rate("fsr") && rs_metric_is_rate("acc_norm") && rs_metric_is_rate("sciq_acc") &&
          !rs_metric_is_rate("ppl") && !rs_metric_is_rate("ppl_ref"), "rates");
}

/* MEraser run twice, with and without its recover phase: one stage row
 * (erased and recovered side by side), and the methods layout labels each
 * run by the parameter that differs only. */
static void test_table_variants(void) {
    rs_row r[4];
    const char *full = "{\"erase_lr\":0.0005,\"recover\":true,\"n_recover\":600}";
    const char *erase = "{\"erase_lr\":0.0005,\"recover\":false,\"n_recover\":600}";
    make_row(&r[0], "fp", "fingerprinted", "m", "utf", "", "", 1, RS_OK, 1);
    rs_row_set_metric(&r[0], "fsr", 1.0, 32, NULL);
    make_row(&r[1], "er", "erased", "m", "utf", "meraser", erase, 1, RS_OK, 1);
    rs_row_set_metric(&r[1], "fsr", 0.25, 32, NULL);
    make_row(&r[2], "rc", "recovered", "m", "utf", "meraser", full, 1, RS_OK, 1);
    rs_row_set_metric(&r[2], "fsr", 0.5, 32, NULL);
    char *md = table_text(r, 3, RS_FMT_MD, "fsr", RS_LAYOUT_STAGES);
    CHECK(has(md, "| m | utf | 100.0 | 25.0 | 50.0 |"), "one stage row for both runs");
    CHECK(md && !strstr(md, "erase_lr") && !strstr(md, "n_recover"), "no settings both runs share");
    free(md);
    md = table_text(r, 3, RS_FMT_MD, "fsr", RS_LAYOUT_METHODS);
    CHECK(has(md, "| meraser (erased) recover=false | 25.0 |"), "erase-only run labelled");
    CHECK(has(md, "| meraser (recovered) recover=true | 50.0 |"), "full run labelled");
    CHECK(md && !strstr(md, "erase\\_lr"), "shared settings left out of the labels");
    free(md);
    for (int i = 0; i < 3; i++) rs_row_free(&r[i]);
}

int main(void) {
    /* libsmudge_results.a does not list smudge_lm (where lm_errf lives) and
     * comes after it on the link line; referencing lm_errf here pulls
     * lm/err.o in first. Remove once CMakeLists.txt links results to lm. */
    lm_err e0;
    CHECK(lm_errf(&e0, "%s", "x") == -1, "lm_errf convention");
    snprintf(dir, sizeof dir, "/tmp/smudge_results_XXXXXX");
    if (!mkdtemp(dir)) SKIP("cannot make a temporary directory");
    test_stats();
    test_round_trip();
    test_killed_writer(0);
    test_killed_writer(1);
    test_damage();
    test_merge();
    test_tables();
    test_table_variants();
    char cmd[128];
    snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
    if (getenv("SMUDGE_KEEP_TMP")) fprintf(stderr, "note: files kept in %s\n", dir);
    else if (check_failed == 0 && system(cmd) != 0) fprintf(stderr, "note: could not remove %s\n", dir);
    return check_done();
}
