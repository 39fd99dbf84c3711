/* Every CPU kernel against a naive double-precision reference written here.
 *
 * Forward outputs are compared with the reference directly. Gradients are
 * compared with central differences of the scalar loss L = sum(out * R), R a
 * fixed random tensor, evaluated with the double reference (so the
 * differences are accurate to ~1e-10 and the tolerance can be tight). Also
 * checked: backward kernels add into their gradients, NULL gradients are
 * skipped, the KV-cache form of attention, RoPE's inverse, and results that
 * must not depend on the thread count. */
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "backend.h"
#include "check.h"
#include "rng.h"

static lm_backend *be;
static lm_rng rng;

/* ------------------------------------------------------------- helpers */

static float *fvec(size_t n) { return calloc(n ? n : 1, sizeof(float)); }
static double *dvec(size_t n) { return calloc(n ? n : 1, sizeof(double)); }

static float *randn(size_t n, float scale) {
    float *x = fvec(n);
    for (size_t i = 0; i < n; i++) x[i] = scale * lm_rng_normal(&rng);
    return x;
}

static double *to_d(const float *x, size_t n) {
    double *d = dvec(n);
    for (size_t i = 0; i < n; i++) d[i] = x[i];
    return d;
}

static float *copyf(const float *x, size_t n) {
    float *y = fvec(n);
    memcpy(y, x, n * sizeof(float));
    return y;
}

static double dot_d(const double *a, const double *b, size_t n) {
    double s = 0.0;
    for (size_t i = 0; i < n; i++) s += a[i] * b[i];
    return s;
}

/* The largest |got - want| must be within tol of the largest |want|. */
static void check_close(const char *what, const float *got, const double *want,
                        size_t n, double tol) {
    double err = 0.0, ref = 0.0;
    for (size_t i = 0; i < n; i++) {
        double e = fabs(got[i] - want[i]);
        if (!(e <= err)) err = e; /* catches NaN */
        if (fabs(want[i]) > ref) ref = fabs(want[i]);
    }
    CHECK(err <= tol * (ref > 0 ? ref : 1.0), "%s: max error %.3g (scale %.3g)",
          what, err, ref);
}

/* got must equal k * want to float rounding (k = 2 checks "adds"). */
static void check_scaled(const char *what, const float *got, const float *want,
                         size_t n, double k) {
    double err = 0.0, ref = 0.0;
    for (size_t i = 0; i < n; i++) {
        double e = fabs(got[i] - k * want[i]);
        if (!(e <= err)) err = e;
        if (fabs(k * want[i]) > ref) ref = fabs(k * want[i]);
    }
    CHECK(ref > 0 && err <= 1e-6 * ref, "%s: max error %.3g (scale %.3g)", what,
          err, ref);
}

typedef double (*loss_fn)(void *ud);

/* Central differences of f with respect to x[i] for every step-th i,
 * against the kernel's gradient g. */
static void check_grad(const char *what, loss_fn f, void *ud, double *x,
                       const float *g, size_t n, size_t step, double tol) {
    double err = 0.0, ref = 0.0;
    for (size_t i = step / 2; i < n; i += step) {
        double old = x[i], h = 1e-5 * (fabs(old) > 1.0 ? fabs(old) : 1.0);
        x[i] = old + h;
        double lp = f(ud);
        x[i] = old - h;
        double lm = f(ud);
        x[i] = old;
        double fd = (lp - lm) / (2.0 * h), e = fabs(fd - g[i]);
        if (!(e <= err)) err = e;
        if (fabs(fd) > ref) ref = fabs(fd);
    }
    CHECK(ref > 0 && err <= tol * ref, "%s: max |grad - fd| %.3g (scale %.3g)",
          what, err, ref);
}

#define GTOL 1e-4 /* gradient tolerance, relative to the largest entry */
#define FTOL 1e-5 /* forward tolerance, relative to the largest entry */

/* -------------------------------------------------------------- matmul */

typedef struct {
    int M, K, N;
    double *x, *w, *b, *R, *y;
} mm_case;

static void matmul_ref(double *y, const double *x, const double *w,
                       const double *b, int M, int K, int N) {
    for (int i = 0; i < M; i++)
        for (int j = 0; j < N; j++) {
            double s = b ? b[j] : 0.0;
            for (int k = 0; k < K; k++) s += x[i * K + k] * w[j * K + k];
            y[i * N + j] = s;
        }
}

static double mm_loss(void *ud) {
    mm_case *c = ud;
    matmul_ref(c->y, c->x, c->w, c->b, c->M, c->K, c->N);
    return dot_d(c->y, c->R, (size_t)c->M * c->N);
}

static void test_matmul_shape(int M, int K, int N, size_t step) {
    float *x = randn((size_t)M * K, 1), *w = randn((size_t)N * K, 0.5f);
    float *b = randn(N, 1), *R = randn((size_t)M * N, 1);
    float *y = fvec((size_t)M * N), *y0 = randn((size_t)M * N, 1);
    mm_case c = {M, K, N, to_d(x, (size_t)M * K), to_d(w, (size_t)N * K),
                 to_d(b, N), to_d(R, (size_t)M * N), dvec((size_t)M * N)};
    size_t MN = (size_t)M * N;

    be->matmul_forward(be->ctx, y, x, w, b, M, K, N, 0);
    matmul_ref(c.y, c.x, c.w, c.b, M, K, N);
    check_close("matmul forward + bias", y, c.y, MN, FTOL);
    be->matmul_forward(be->ctx, y, x, w, NULL, M, K, N, 0);
    matmul_ref(c.y, c.x, c.w, NULL, M, K, N);
    check_close("matmul forward, no bias", y, c.y, MN, FTOL);
    /* accumulate: y = y0 + x w^T + b */
    memcpy(y, y0, MN * sizeof(float));
    be->matmul_forward(be->ctx, y, x, w, b, M, K, N, 1);
    matmul_ref(c.y, c.x, c.w, c.b, M, K, N);
    for (size_t i = 0; i < MN; i++) c.y[i] += y0[i];
    check_close("matmul forward accumulate", y, c.y, MN, FTOL);

    float *dx = fvec((size_t)M * K), *dw = fvec((size_t)N * K), *db = fvec(N);
    be->matmul_backward(be->ctx, dx, dw, db, R, x, w, M, K, N);
    check_grad("matmul dx", mm_loss, &c, c.x, dx, (size_t)M * K, step, GTOL);
    check_grad("matmul dw", mm_loss, &c, c.w, dw, (size_t)N * K, step, GTOL);
    check_grad("matmul db", mm_loss, &c, c.b, db, N, step > 1 ? 7 : 1, GTOL);

    float *dx2 = copyf(dx, (size_t)M * K), *dw2 = copyf(dw, (size_t)N * K);
    float *db2 = copyf(db, N);
    be->matmul_backward(be->ctx, dx2, dw2, db2, R, x, w, M, K, N);
    check_scaled("matmul dx adds", dx2, dx, (size_t)M * K, 2);
    check_scaled("matmul dw adds", dw2, dw, (size_t)N * K, 2);
    check_scaled("matmul db adds", db2, db, N, 2);

    /* Each gradient alone, the others NULL. */
    memset(dx2, 0, (size_t)M * K * sizeof(float));
    be->matmul_backward(be->ctx, dx2, NULL, NULL, R, x, w, M, K, N);
    check_scaled("matmul dx alone", dx2, dx, (size_t)M * K, 1);
    memset(dw2, 0, (size_t)N * K * sizeof(float));
    be->matmul_backward(be->ctx, NULL, dw2, NULL, R, x, w, M, K, N);
    check_scaled("matmul dw alone", dw2, dw, (size_t)N * K, 1);
    memset(db2, 0, N * sizeof(float));
    be->matmul_backward(be->ctx, NULL, NULL, db2, R, x, w, M, K, N);
    check_scaled("matmul db alone", db2, db, N, 1);
    be->matmul_backward(be->ctx, NULL, NULL, NULL, R, x, w, M, K, N);

    free(x), free(w), free(b), free(R), free(y), free(y0);
    free(dx), free(dw), free(db), free(dx2), free(dw2), free(db2);
    free(c.x), free(c.w), free(c.b), free(c.R), free(c.y);
}

static void test_matmul(void) {
    test_matmul_shape(5, 7, 6, 1);
    test_matmul_shape(1, 9, 11, 1);      /* the matrix-vector path */
    test_matmul_shape(200, 24, 180, 97); /* parallel bias and column sums */
}

/* ----------------------------------------------------------- embedding */

typedef struct {
    int N, C;
    const int32_t *ids, *pos;
    double *wte, *wpe, *R, *out;
} emb_case;

static double emb_loss(void *ud) {
    emb_case *c = ud;
    for (int n = 0; n < c->N; n++)
        for (int j = 0; j < c->C; j++)
            c->out[n * c->C + j] = c->wte[c->ids[n] * c->C + j] +
                                   (c->wpe ? c->wpe[c->pos[n] * c->C + j] : 0.0);
    return dot_d(c->out, c->R, (size_t)c->N * c->C);
}

static void test_embedding(void) {
    enum { V = 10, P = 8, C = 5, N = 12 };
    int32_t ids[N], pos[N];
    for (int n = 0; n < N; n++) {
        ids[n] = (int32_t)lm_rng_below(&rng, 4); /* repeats on purpose */
        pos[n] = n % P;
    }
    float *wte = randn(V * C, 1), *wpe = randn(P * C, 1), *R = randn(N * C, 1);
    float *out = fvec(N * C);
    emb_case c = {N, C, ids, pos, to_d(wte, V * C), to_d(wpe, P * C),
                  to_d(R, N * C), dvec(N * C)};

    be->embedding_forward(be->ctx, out, ids, pos, wte, wpe, N, C);
    emb_loss(&c);
    check_close("embedding forward", out, c.out, N * C, FTOL);
    float *out2 = fvec(N * C);
    be->embedding_forward(be->ctx, out2, ids, NULL, wte, NULL, N, C);
    double *wpe_d = c.wpe;
    c.wpe = NULL;
    emb_loss(&c);
    check_close("embedding forward, no positions", out2, c.out, N * C, FTOL);
    c.wpe = wpe_d;

    float *dwte = fvec(V * C), *dwpe = fvec(P * C);
    be->embedding_backward(be->ctx, dwte, dwpe, R, ids, pos, N, C);
    check_grad("embedding dwte", emb_loss, &c, c.wte, dwte, V * C, 1, GTOL);
    check_grad("embedding dwpe", emb_loss, &c, c.wpe, dwpe, P * C, 1, GTOL);
    float *dwte2 = copyf(dwte, V * C), *dwpe2 = fvec(P * C);
    be->embedding_backward(be->ctx, dwte2, NULL, R, ids, pos, N, C);
    check_scaled("embedding dwte adds", dwte2, dwte, V * C, 2);
    be->embedding_backward(be->ctx, NULL, dwpe2, R, ids, pos, N, C);
    check_scaled("embedding dwpe alone", dwpe2, dwpe, P * C, 1);

    free(wte), free(wpe), free(R), free(out), free(out2), free(dwte);
    free(dwpe), free(dwte2), free(dwpe2);
    free(c.wte), free(c.wpe), free(c.R), free(c.out);
}

/* --------------------------------------------------------------- norms */

typedef struct {
    int N, C, layer; /* layer: LayerNorm, else RMSNorm */
    double eps;
    double *x, *w, *b, *R, *out, *mean, *rstd;
} norm_case;

static double norm_loss(void *ud) {
    norm_case *c = ud;
    for (int n = 0; n < c->N; n++) {
        const double *x = c->x + (size_t)n * c->C;
        double m = 0.0, v = 0.0;
        if (c->layer) {
            for (int j = 0; j < c->C; j++) m += x[j];
            m /= c->C;
        }
        for (int j = 0; j < c->C; j++) v += (x[j] - m) * (x[j] - m);
        double r = 1.0 / sqrt(v / c->C + c->eps);
        c->mean[n] = m;
        c->rstd[n] = r;
        for (int j = 0; j < c->C; j++)
            c->out[(size_t)n * c->C + j] = (x[j] - m) * r * (c->w ? c->w[j] : 1.0) +
                                           (c->b ? c->b[j] : 0.0);
    }
    return dot_d(c->out, c->R, (size_t)c->N * c->C);
}

static void test_norm(int layer, int N, int C, int affine, size_t step) {
    size_t NC = (size_t)N * C;
    float *x = randn(NC, 2), *w = randn(C, 1), *b = randn(C, 1), *R = randn(NC, 1);
    for (size_t i = 0; i < NC; i++) x[i] += 0.5f; /* a nonzero mean */
    float *out = fvec(NC), *mean = fvec(N), *rstd = fvec(N);
    float eps = 1e-5f;
    norm_case c = {N, C, layer, eps, to_d(x, NC), affine ? to_d(w, C) : NULL,
                   layer && affine ? to_d(b, C) : NULL, to_d(R, NC),
                   dvec(NC), dvec(N), dvec(N)};
    const char *name = layer ? "layernorm" : "rmsnorm";
    char what[96];

    if (layer)
        be->layernorm_forward(be->ctx, out, mean, rstd, x, affine ? w : NULL,
                              affine ? b : NULL, N, C, eps);
    else
        be->rmsnorm_forward(be->ctx, out, rstd, x, w, N, C, eps);
    norm_loss(&c);
    snprintf(what, sizeof what, "%s forward (affine %d)", name, affine);
    check_close(what, out, c.out, NC, FTOL);
    check_close("norm rstd", rstd, c.rstd, N, FTOL);
    if (layer) check_close("norm mean", mean, c.mean, N, FTOL);

    float *dx = fvec(NC), *dw = fvec(C), *db = fvec(C);
    if (layer)
        be->layernorm_backward(be->ctx, dx, affine ? dw : NULL,
                               affine ? db : NULL, R, x, affine ? w : NULL,
                               mean, rstd, N, C);
    else
        be->rmsnorm_backward(be->ctx, dx, dw, R, x, w, rstd, N, C);
    snprintf(what, sizeof what, "%s dx (affine %d)", name, affine);
    check_grad(what, norm_loss, &c, c.x, dx, NC, step, GTOL);
    if (affine) {
        snprintf(what, sizeof what, "%s dw", name);
        check_grad(what, norm_loss, &c, c.w, dw, C, 1, GTOL);
        if (layer) check_grad("layernorm db", norm_loss, &c, c.b, db, C, 1, GTOL);

        /* Twice adds; dx alone and dw alone match. */
        float *dx2 = copyf(dx, NC), *dw2 = copyf(dw, C), *db2 = copyf(db, C);
        if (layer)
            be->layernorm_backward(be->ctx, dx2, dw2, db2, R, x, w, mean, rstd, N, C);
        else
            be->rmsnorm_backward(be->ctx, dx2, dw2, R, x, w, rstd, N, C);
        check_scaled("norm dx adds", dx2, dx, NC, 2);
        check_scaled("norm dw adds", dw2, dw, C, 2);
        if (layer) check_scaled("norm db adds", db2, db, C, 2);
        memset(dx2, 0, NC * sizeof(float));
        memset(dw2, 0, C * sizeof(float));
        memset(db2, 0, C * sizeof(float));
        if (layer) {
            be->layernorm_backward(be->ctx, dx2, NULL, NULL, R, x, w, mean, rstd, N, C);
            be->layernorm_backward(be->ctx, NULL, dw2, NULL, R, x, w, mean, rstd, N, C);
            be->layernorm_backward(be->ctx, NULL, NULL, db2, R, x, w, mean, rstd, N, C);
            check_scaled("layernorm db alone", db2, db, C, 1);
        } else {
            be->rmsnorm_backward(be->ctx, dx2, NULL, R, x, w, rstd, N, C);
            be->rmsnorm_backward(be->ctx, NULL, dw2, R, x, w, rstd, N, C);
        }
        check_scaled("norm dx alone", dx2, dx, NC, 1);
        check_scaled("norm dw alone", dw2, dw, C, 1);
        free(dx2), free(dw2), free(db2);
    }

    free(x), free(w), free(b), free(R), free(out), free(mean), free(rstd);
    free(dx), free(dw), free(db);
    free(c.x), free(c.w), free(c.b), free(c.R), free(c.out), free(c.mean);
    free(c.rstd);
}

static void test_norms(void) {
    test_norm(0, 4, 9, 1, 1);
    test_norm(1, 4, 9, 1, 1);
    test_norm(1, 3, 7, 0, 1);        /* elementwise_affine=False */
    test_norm(0, 300, 128, 1, 331);  /* the parallel paths */
    test_norm(1, 300, 128, 1, 331);
}

/* ---------------------------------------------------------------- RoPE */

typedef struct {
    int N, nh, D;
    double theta;
    const int32_t *pos;
    double *x, *R, *out;
} rope_case;

static double rope_loss(void *ud) {
    rope_case *c = ud;
    int half = c->D / 2;
    for (int n = 0; n < c->N; n++)
        for (int h = 0; h < c->nh; h++) {
            const double *x = c->x + ((size_t)n * c->nh + h) * c->D;
            double *o = c->out + ((size_t)n * c->nh + h) * c->D;
            for (int i = 0; i < half; i++) {
                double a = c->pos[n] * pow(c->theta, -2.0 * i / c->D);
                o[i] = x[i] * cos(a) - x[i + half] * sin(a);
                o[i + half] = x[i + half] * cos(a) + x[i] * sin(a);
            }
        }
    return dot_d(c->out, c->R, (size_t)c->N * c->nh * c->D);
}

static void test_rope(void) {
    enum { N = 5, NH = 3, D = 8 };
    const size_t n = N * NH * D;
    int32_t pos[N] = {0, 1, 2, 17, 300};
    float *x = randn(n, 1), *R = randn(n, 1), *y = copyf(x, n);
    rope_case c = {N, NH, D, 10000.0, pos, to_d(x, n), to_d(R, n), dvec(n)};

    be->rope_forward(be->ctx, y, pos, N, NH, D, 10000.0f);
    rope_loss(&c);
    check_close("rope forward", y, c.out, n, 1e-5);
    CHECK(memcmp(x, y, D * NH * sizeof(float)) == 0, "rope at position 0 is the identity");

    /* Backward is not additive: it rotates the gradient back in place. */
    float *g = copyf(R, n);
    be->rope_backward(be->ctx, g, pos, N, NH, D, 10000.0f);
    check_grad("rope backward", rope_loss, &c, c.x, g, n, 1, GTOL);

    be->rope_backward(be->ctx, y, pos, N, NH, D, 10000.0f);
    double *xd = to_d(x, n);
    check_close("rope backward inverts forward", y, xd, n, 1e-6);

    free(x), free(R), free(y), free(g), free(xd);
    free(c.x), free(c.R), free(c.out);
}

/* ----------------------------------------------------------- attention */

typedef struct {
    int B, T, H, KVH, D, window;
    double *q, *k, *v, *R, *out, *att;
} att_case;

/* The reference: q [B,Tq,H,D], k/v [B, kv_bstride] rows of KVH*D. */
static void attention_ref(double *out, double *att, const double *q,
                          const double *k, const double *v, int B, int Tq,
                          int Tk, int H, int KVH, int D, size_t kvb, int window) {
    double *s = dvec(Tk);
    for (int b = 0; b < B; b++)
        for (int h = 0; h < H; h++)
            for (int t = 0; t < Tq; t++) {
                int p = Tk - Tq + t, kh = h / (H / KVH);
                const double *qt = q + (((size_t)b * Tq + t) * H + h) * D;
                double mx = -INFINITY, sum = 0.0;
                for (int j = 0; j < Tk; j++) {
                    int ok = j <= p && (window == 0 || p - j < window);
                    const double *kj = k + b * kvb + ((size_t)j * KVH + kh) * D;
                    s[j] = ok ? dot_d(qt, kj, D) / sqrt((double)D) : -INFINITY;
                    if (s[j] > mx) mx = s[j];
                }
                for (int j = 0; j < Tk; j++) {
                    s[j] = s[j] == -INFINITY ? 0.0 : exp(s[j] - mx);
                    sum += s[j];
                }
                double *o = out + (((size_t)b * Tq + t) * H + h) * D;
                for (int d = 0; d < D; d++) o[d] = 0.0;
                for (int j = 0; j < Tk; j++) {
                    double a = s[j] / sum;
                    att[(((size_t)b * H + h) * Tq + t) * Tk + j] = a;
                    const double *vj = v + b * kvb + ((size_t)j * KVH + kh) * D;
                    for (int d = 0; d < D; d++) o[d] += a * vj[d];
                }
            }
    free(s);
}

static double att_loss(void *ud) {
    att_case *c = ud;
    attention_ref(c->out, c->att, c->q, c->k, c->v, c->B, c->T, c->T, c->H,
                  c->KVH, c->D, (size_t)c->T * c->KVH * c->D, c->window);
    return dot_d(c->out, c->R, (size_t)c->B * c->T * c->H * c->D);
}

/* The KV-cache form: the last Tq queries against a cache of capacity
 * T + 5 (batch stride (T+5)*KVH*D, unused rows poisoned) must reproduce the
 * last Tq rows of the full forward's out and att, with and without att. */
static void check_kv_cache(int B, int T, int H, int KVH, int D, int window,
                           int Tq, const float *q, const float *k,
                           const float *v, const float *out, const float *att) {
    size_t kvb = (size_t)T * KVH * D, cb = (size_t)(T + 5) * KVH * D;
    size_t row = (size_t)H * D, nq = (size_t)B * Tq * row;
    float *kc = fvec(B * cb), *vc = fvec(B * cb), *q2 = fvec(nq);
    float *o2 = fvec(nq), *o3 = fvec(nq), *a2 = fvec((size_t)B * H * Tq * T);
    for (size_t i = 0; i < B * cb; i++) kc[i] = vc[i] = 1e30f;
    for (int b = 0; b < B; b++) {
        memcpy(kc + b * cb, k + b * kvb, kvb * sizeof(float));
        memcpy(vc + b * cb, v + b * kvb, kvb * sizeof(float));
        memcpy(q2 + b * Tq * row, q + ((size_t)b * T + T - Tq) * row,
               Tq * row * sizeof(float));
    }
    be->attention_forward(be->ctx, o2, a2, q2, kc, vc, B, Tq, T, H, KVH, D, cb, window);
    be->attention_forward(be->ctx, o3, NULL, q2, kc, vc, B, Tq, T, H, KVH, D, cb, window);
    double err = 0.0, aerr = 0.0;
    for (int b = 0; b < B; b++)
        for (int t = 0; t < Tq; t++) {
            const float *full = out + ((size_t)b * T + T - Tq + t) * row;
            for (size_t j = 0; j < row; j++) {
                err = fmax(err, fabs(o2[(b * Tq + t) * row + j] - full[j]));
                err = fmax(err, fabs(o3[(b * Tq + t) * row + j] - full[j]));
            }
            for (int h = 0; h < H; h++) {
                const float *a = a2 + (((size_t)b * H + h) * Tq + t) * T;
                const float *af = att + (((size_t)b * H + h) * T + T - Tq + t) * T;
                for (int j = 0; j < T; j++) aerr = fmax(aerr, fabs(a[j] - af[j]));
            }
        }
    CHECK(err < 1e-5 && aerr < 1e-6, "KV-cache form Tq=%d: out %.3g, att %.3g", Tq,
          err, aerr);
    free(kc), free(vc), free(q2), free(o2), free(o3), free(a2);
}

static void test_attention_case(int B, int T, int H, int KVH, int D, int window,
                                size_t step) {
    size_t nq = (size_t)B * T * H * D, nkv = (size_t)B * T * KVH * D;
    size_t natt = (size_t)B * H * T * T, kvb = (size_t)T * KVH * D;
    float *q = randn(nq, 1), *k = randn(nkv, 1), *v = randn(nkv, 1);
    float *R = randn(nq, 1), *out = fvec(nq), *att = fvec(natt);
    att_case c = {B, T, H, KVH, D, window, to_d(q, nq), to_d(k, nkv),
                  to_d(v, nkv), to_d(R, nq), dvec(nq), dvec(natt)};
    char what[128];
    snprintf(what, sizeof what, "attention B=%d T=%d H=%d KVH=%d D=%d window=%d",
             B, T, H, KVH, D, window);
    fprintf(stderr, "%s\n", what);

    for (size_t i = 0; i < natt; i++) att[i] = NAN; /* every entry is written */
    be->attention_forward(be->ctx, out, att, q, k, v, B, T, T, H, KVH, D, kvb, window);
    att_loss(&c);
    check_close("attention out", out, c.out, nq, FTOL);
    check_close("attention probabilities", att, c.att, natt, FTOL);
    int zeros = 1;
    for (size_t i = 0; i < natt; i++)
        if (c.att[i] == 0.0 && att[i] != 0.0f) zeros = 0;
    CHECK(zeros, "masked attention probabilities are exactly zero");

    /* Without att (generation's form, scratch or streaming). */
    float *out2 = fvec(nq);
    be->attention_forward(be->ctx, out2, NULL, q, k, v, B, T, T, H, KVH, D, kvb, window);
    check_close("attention out without att", out2, c.out, nq, FTOL);

    float *dq = fvec(nq), *dk = fvec(nkv), *dv = fvec(nkv);
    be->attention_backward(be->ctx, dq, dk, dv, R, att, q, k, v, B, T, H, KVH, D);
    check_grad("attention dq", att_loss, &c, c.q, dq, nq, step, GTOL);
    check_grad("attention dk", att_loss, &c, c.k, dk, nkv, step, GTOL);
    check_grad("attention dv", att_loss, &c, c.v, dv, nkv, step, GTOL);

    float *g1 = copyf(dq, nq), *g2 = copyf(dk, nkv), *g3 = copyf(dv, nkv);
    be->attention_backward(be->ctx, g1, g2, g3, R, att, q, k, v, B, T, H, KVH, D);
    check_scaled("attention dq adds", g1, dq, nq, 2);
    check_scaled("attention dk adds", g2, dk, nkv, 2);
    check_scaled("attention dv adds", g3, dv, nkv, 2);
    memset(g1, 0, nq * sizeof(float));
    memset(g2, 0, nkv * sizeof(float));
    memset(g3, 0, nkv * sizeof(float));
    be->attention_backward(be->ctx, g1, NULL, NULL, R, att, q, k, v, B, T, H, KVH, D);
    be->attention_backward(be->ctx, NULL, g2, NULL, R, att, q, k, v, B, T, H, KVH, D);
    be->attention_backward(be->ctx, NULL, NULL, g3, R, att, q, k, v, B, T, H, KVH, D);
    be->attention_backward(be->ctx, NULL, NULL, NULL, R, att, q, k, v, B, T, H, KVH, D);
    check_scaled("attention dq alone", g1, dq, nq, 1);
    check_scaled("attention dk alone", g2, dk, nkv, 1);
    check_scaled("attention dv alone", g3, dv, nkv, 1);

    for (int Tq = 1; Tq <= T; Tq = Tq < 3 ? Tq + 2 : Tq + 9)
        check_kv_cache(B, T, H, KVH, D, window, Tq, q, k, v, out, att);

    free(q), free(k), free(v), free(R), free(out), free(att), free(out2);
    free(dq), free(dk), free(dv), free(g1), free(g2), free(g3);
    free(c.q), free(c.k), free(c.v), free(c.R), free(c.out), free(c.att);
}

static void test_attention(void) {
    test_attention_case(2, 7, 4, 2, 8, 0, 1);   /* GQA, streamed backward */
    test_attention_case(2, 12, 4, 2, 8, 0, 1);  /* GQA, sgemm backward */
    test_attention_case(2, 9, 4, 2, 8, 3, 1);   /* sliding window */
    test_attention_case(1, 10, 4, 1, 8, 0, 1);  /* MQA: private dk/dv per head */
    test_attention_case(1, 10, 6, 3, 4, 2, 1);  /* GQA with private dk/dv */
    test_attention_case(3, 11, 3, 3, 4, 4, 1);  /* plain multi-head, window */
    test_attention_case(1, 130, 4, 2, 8, 0, 97);  /* several 64-row blocks */
    test_attention_case(1, 130, 4, 2, 8, 40, 97); /* blocks and a window */
}

/* --------------------------------------------------------- activations */

typedef struct {
    int op; /* 0 swiglu, 1 gelu, 2 relu */
    size_t n;
    double *a, *b, *R;
} act_case;

static double act_loss(void *ud) {
    act_case *c = ud;
    double L = 0.0;
    for (size_t i = 0; i < c->n; i++) {
        double x = c->a[i], y;
        if (c->op == 0)
            y = x / (1.0 + exp(-x)) * c->b[i];
        else if (c->op == 1)
            y = 0.5 * x * (1.0 + tanh(sqrt(2.0 / M_PI) * (x + 0.044715 * x * x * x)));
        else
            y = x > 0 ? x : 0.0;
        L += y * c->R[i];
    }
    return L;
}

/* out[i]: the reference activation alone, as the loss of one element. */
static void act_ref(const act_case *c, double *out) {
    double one = 1.0;
    for (size_t i = 0; i < c->n; i++) {
        act_case e = {c->op, 1, c->a + i, c->b ? c->b + i : NULL, &one};
        out[i] = act_loss(&e);
    }
}

static void test_activation(int op, size_t n, size_t step) {
    static const char *names[] = {"swiglu", "gelu", "relu"};
    float *a = randn(n, 3), *b = randn(n, 1), *R = randn(n, 1), *out = fvec(n);
    act_case c = {op, n, to_d(a, n), op == 0 ? to_d(b, n) : NULL, to_d(R, n)};
    double *want = dvec(n);
    char what[96];
    act_ref(&c, want);
    if (op == 0) be->swiglu_forward(be->ctx, out, a, b, n);
    if (op == 1) be->gelu_forward(be->ctx, out, a, n);
    if (op == 2) be->relu_forward(be->ctx, out, a, n);
    snprintf(what, sizeof what, "%s forward n=%zu", names[op], n);
    check_close(what, out, want, n, FTOL);
    if (op > 0) { /* out may alias x */
        float *x = copyf(a, n);
        if (op == 1) be->gelu_forward(be->ctx, x, x, n);
        if (op == 2) be->relu_forward(be->ctx, x, x, n);
        check_close("activation in place", x, want, n, FTOL);
        free(x);
    }

    float *da = fvec(n), *db = fvec(n);
    if (op == 0) be->swiglu_backward(be->ctx, da, db, R, a, b, n);
    if (op == 1) be->gelu_backward(be->ctx, da, R, a, n);
    if (op == 2) be->relu_backward(be->ctx, da, R, a, n);
    snprintf(what, sizeof what, "%s dx n=%zu", names[op], n);
    check_grad(what, act_loss, &c, c.a, da, n, step, GTOL);
    if (op == 0) check_grad("swiglu dup", act_loss, &c, c.b, db, n, step, GTOL);

    float *da2 = copyf(da, n), *db2 = copyf(db, n);
    if (op == 0) be->swiglu_backward(be->ctx, da2, db2, R, a, b, n);
    if (op == 1) be->gelu_backward(be->ctx, da2, R, a, n);
    if (op == 2) be->relu_backward(be->ctx, da2, R, a, n);
    check_scaled("activation backward adds", da2, da, n, 2);
    if (op == 0) {
        check_scaled("swiglu dup adds", db2, db, n, 2);
        memset(da2, 0, n * sizeof(float));
        memset(db2, 0, n * sizeof(float));
        be->swiglu_backward(be->ctx, da2, NULL, R, a, b, n);
        be->swiglu_backward(be->ctx, NULL, db2, R, a, b, n);
        be->swiglu_backward(be->ctx, NULL, NULL, R, a, b, n);
        check_scaled("swiglu dgate alone", da2, da, n, 1);
        check_scaled("swiglu dup alone", db2, db, n, 1);
    }

    free(a), free(b), free(R), free(out), free(da), free(db), free(da2);
    free(db2), free(want), free(c.a), free(c.b), free(c.R);
}

static void test_activations(void) {
    for (int op = 0; op < 3; op++) {
        test_activation(op, 37, 1);
        test_activation(op, 40000, 997); /* the parallel path */
    }
    /* Extremes: no NaN or inf from the exp-based forms. */
    float x[6] = {-1000.0f, -90.0f, -20.0f, 20.0f, 90.0f, 1000.0f}, y[6], ones[6];
    for (int i = 0; i < 6; i++) ones[i] = 1.0f;
    be->gelu_forward(be->ctx, y, x, 6);
    CHECK(y[0] == 0.0f && y[5] == 1000.0f && fabsf(y[3] - 20.0f) < 1e-5f,
          "gelu extremes: %g %g %g", y[0], y[3], y[5]);
    be->swiglu_forward(be->ctx, y, x, ones, 6);
    CHECK(fabsf(y[0]) < 1e-30f && y[5] == 1000.0f && isfinite(y[1]),
          "silu extremes: %g %g", y[0], y[5]);

    /* The exp behind silu, gelu and every softmax, element by element over
     * its whole range: within a few ulp. */
    enum { G = 2001 };
    float g[G], s[G], u[G];
    double worst = 0.0;
    for (int i = 0; i < G; i++) g[i] = -80.0f + 0.05f * i, u[i] = 1.0f;
    be->swiglu_forward(be->ctx, s, g, u, G);
    for (int i = 0; i < G; i++) {
        double want = g[i] / (1.0 + exp(-(double)g[i]));
        if (want != 0.0) worst = fmax(worst, fabs(s[i] - want) / fabs(want));
    }
    CHECK(worst < 1e-6, "silu relative error %.3g", worst);

    enum { N = 40000 };
    float *a = randn(N, 1), *b = randn(N, 1), *o = fvec(N), *a2 = copyf(a, N);
    double *want = dvec(N);
    for (int i = 0; i < N; i++) want[i] = (double)a[i] + b[i];
    be->add(be->ctx, o, a, b, N);
    check_close("add", o, want, N, 1e-7);
    be->add(be->ctx, a2, a2, b, N);
    check_close("add in place", a2, want, N, 1e-7);
    be->add(be->ctx, b, a, b, 5);
    check_close("add into b", b, want, 5, 1e-7);
    free(a), free(b), free(o), free(a2), free(want);
}

/* ------------------------------------------------------- cross-entropy */

typedef struct {
    int N, V;
    const int32_t *t;
    const float *mask;
    double scale;
    double *logits, *losses;
} ce_case;

static void log_softmax_ref(double *out, const double *x, int V) {
    double mx = -INFINITY, s = 0.0;
    for (int j = 0; j < V; j++) mx = x[j] > mx ? x[j] : mx;
    for (int j = 0; j < V; j++) s += exp(x[j] - mx);
    for (int j = 0; j < V; j++) out[j] = x[j] - mx - log(s);
}

/* L = scale * sum(mask * losses), whose gradient crossentropy_backward gives. */
static double ce_loss(void *ud) {
    ce_case *c = ud;
    double L = 0.0, *ls = dvec(c->V);
    for (int n = 0; n < c->N; n++) {
        double m = c->mask ? c->mask[n] : 1.0;
        c->losses[n] = 0.0;
        if (c->t[n] < 0 || m == 0.0) continue;
        log_softmax_ref(ls, c->logits + (size_t)n * c->V, c->V);
        c->losses[n] = -ls[c->t[n]];
        L += c->scale * m * c->losses[n];
    }
    free(ls);
    return L;
}

static void test_crossentropy(void) {
    enum { N = 6, V = 11 };
    int32_t t[N] = {3, -1, 0, 10, 5, 7};
    float mask[N] = {1, 1, 0, 0.5f, 1, 2};
    float *logits = randn(N * V, 2), losses[N];
    ce_case c = {N, V, t, mask, 1.0 / 4.5, to_d(logits, N * V), dvec(N)};

    be->crossentropy_forward(be->ctx, losses, logits, t, mask, N, V);
    ce_loss(&c);
    check_close("crossentropy losses", losses, c.losses, N, FTOL);
    CHECK(losses[1] == 0.0f && losses[2] == 0.0f, "uncounted rows have loss 0");
    float *dl = fvec(N * V);
    be->crossentropy_backward(be->ctx, dl, logits, t, mask, N, V, (float)c.scale);
    check_grad("crossentropy dlogits", ce_loss, &c, c.logits, dl, N * V, 1, GTOL);
    float *dl2 = copyf(dl, N * V);
    be->crossentropy_backward(be->ctx, dl2, logits, t, mask, N, V, (float)c.scale);
    check_scaled("crossentropy backward adds", dl2, dl, N * V, 2);

    /* mask NULL counts every row with a target */
    c.mask = NULL;
    c.scale = 1.0;
    be->crossentropy_forward(be->ctx, losses, logits, t, NULL, N, V);
    ce_loss(&c);
    check_close("crossentropy without mask", losses, c.losses, N, FTOL);
    memset(dl, 0, N * V * sizeof(float));
    be->crossentropy_backward(be->ctx, dl, logits, t, NULL, N, V, 1.0f);
    check_grad("crossentropy dlogits, no mask", ce_loss, &c, c.logits, dl, N * V, 1, GTOL);

    /* GPT-2's vocabulary: the vectorised exp over a long row. */
    enum { N2 = 3, V2 = 50257 };
    int32_t t2[N2] = {0, 50256, 12345};
    float *big = randn((size_t)N2 * V2, 4), l2[N2];
    big[12345] = 1000.0f; /* an extreme logit must not overflow */
    ce_case c2 = {N2, V2, t2, NULL, 1.0, to_d(big, (size_t)N2 * V2), dvec(N2)};
    be->crossentropy_forward(be->ctx, l2, big, t2, NULL, N2, V2);
    ce_loss(&c2);
    check_close("crossentropy over 50257 logits", l2, c2.losses, N2, FTOL);
    float *lsm = fvec((size_t)N2 * V2);
    double *want = dvec((size_t)N2 * V2);
    for (int n = 0; n < N2; n++)
        log_softmax_ref(want + (size_t)n * V2, c2.logits + (size_t)n * V2, V2);
    be->log_softmax(be->ctx, lsm, big, N2, V2);
    check_close("log_softmax", lsm, want, (size_t)N2 * V2, 1e-6);
    be->log_softmax(be->ctx, big, big, N2, V2);
    check_close("log_softmax in place", big, want, (size_t)N2 * V2, 1e-6);
    double psum = 0.0;
    for (int j = 0; j < V2; j++) psum += exp(lsm[V2 + j]);
    CHECK_NEAR(psum, 1.0, 1e-5, "softmax sums to 1");

    free(logits), free(dl), free(dl2), free(big), free(lsm), free(want);
    free(c.logits), free(c.losses), free(c2.logits), free(c2.losses);
}

/* ------------------------------------------------ thread independence */

/* Reductions across rows must give the same bits with 1 or 2 threads. */
static void test_threads(void) {
    enum { N = 400, C = 256, V = 50 };
    float *x = randn(N * C, 1), *w = randn(C, 1), *d = randn(N * C, 1);
    float mean[N], rstd[N], *out = fvec(N * C);
    int32_t ids[N];
    for (int n = 0; n < N; n++) ids[n] = (int32_t)lm_rng_below(&rng, V);
    float *dw[2], *db[2], *de[2], *dq[2], *att[2], *ao[2];
    enum { B = 2, T = 70, H = 4, KVH = 2, D = 16 };
    float *q = randn(B * T * H * D, 1), *k = randn(B * T * KVH * D, 1);
    float *v = randn(B * T * KVH * D, 1), *R = randn(B * T * H * D, 1);
    for (int r = 0; r < 2; r++) {
        lm_backend *b = lm_backend_cpu_new(r == 0 ? 1 : 2);
        dw[r] = fvec(C), db[r] = fvec(C), de[r] = fvec(V * C);
        dq[r] = fvec(B * T * H * D), att[r] = fvec(B * H * T * T);
        ao[r] = fvec(B * T * H * D);
        b->layernorm_forward(b->ctx, out, mean, rstd, x, w, w, N, C, 1e-5f);
        b->layernorm_backward(b->ctx, NULL, dw[r], db[r], d, x, w, mean, rstd, N, C);
        b->embedding_backward(b->ctx, de[r], NULL, d, ids, NULL, N, C);
        b->attention_forward(b->ctx, ao[r], att[r], q, k, v, B, T, T, H, KVH, D,
                             (size_t)T * KVH * D, 0);
        b->attention_backward(b->ctx, dq[r], NULL, NULL, R, att[r], q, k, v, B, T, H, KVH, D);
        lm_backend_cpu_free(b);
    }
    CHECK(!memcmp(dw[0], dw[1], C * sizeof(float)), "layernorm dw, 1 vs 2 threads");
    CHECK(!memcmp(db[0], db[1], C * sizeof(float)), "layernorm db, 1 vs 2 threads");
    CHECK(!memcmp(de[0], de[1], V * C * sizeof(float)), "embedding grad, 1 vs 2 threads");
    CHECK(!memcmp(ao[0], ao[1], B * T * H * D * sizeof(float)), "attention, 1 vs 2 threads");
    CHECK(!memcmp(dq[0], dq[1], B * T * H * D * sizeof(float)), "attention dq, 1 vs 2 threads");
    for (int r = 0; r < 2; r++) {
        free(dw[r]), free(db[r]), free(de[r]);
        free(dq[r]), free(att[r]), free(ao[r]);
    }
    free(x), free(w), free(d), free(out), free(q), free(k), free(v), free(R);
}

int main(void) {
    lm_rng_seed(&rng, 1234);
    be = lm_backend_cpu_new(2);
    CHECK(be != NULL, "lm_backend_cpu_new");
    if (!be) return check_done();
    void *p = be->alloc(be->ctx, 1000);
    CHECK(p && ((uintptr_t)p % 64) == 0, "alloc is 64-byte aligned");
    be->free(be->ctx, p);

    test_matmul();
    test_embedding();
    test_norms();
    test_rope();
    test_attention();
    test_activations();
    test_crossentropy();
    lm_backend_cpu_free(be);
    test_threads();
    return check_done();
}
