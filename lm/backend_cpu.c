/* The CPU backend: the reference implementation of every kernel in
 * backend.h. Matmuls (and the two products inside attention) go to OpenBLAS
 * sgemm; everything else is plain loops written so GCC vectorises them
 * (`#pragma omp simd`) and spread over rows with OpenMP.
 *
 * Two rules keep results reproducible: reductions across rows (bias, norm
 * weight and embedding gradients) give each thread a fixed range of columns
 * and sum the rows in order, so the answer does not depend on the thread
 * count; and no kernel uses atomics. */
#include "backend.h"

#include <cblas.h>
#include <math.h>
#include <omp.h>
#include <stdlib.h>
#include <string.h>

/* Below this many elements an OpenMP fork costs more than it saves. */
#define PAR_MIN 32768
/* Query rows per attention block: big enough for sgemm to run near peak,
 * small enough that the causal triangle wastes little. */
#define ATT_BLOCK 64
/* Shorter than this, attention streams over the keys row by row instead of
 * calling sgemm: forward when the caller wants no `att` (generation),
 * backward always. */
#define ATT_STREAM_MAX 8
/* Lanes for loops that call vexpf (see there). */
#define EXP_LANES 16

typedef struct cpu_ctx {
    int threads;
} cpu_ctx;

typedef struct cpu_backend {
    lm_backend be;
    cpu_ctx ctx;
} cpu_backend;

static int nthreads(void *ctx) { return ((cpu_ctx *)ctx)->threads; }

static int cpu_set_threads(void *ctx, int n) {
    cpu_ctx *c = ctx;
    int old = c->threads;
    if (n > 0 && n != old) {
        c->threads = n;
        openblas_set_num_threads(n);
    }
    return old;
}

/* exp(x) for any float x, written so that loops calling it vectorise
 * (glibc's expf only does under -ffast-math): Cephes' range reduction and
 * polynomial, about 1 ulp. The polynomial is evaluated in Estrin's scheme
 * with explicit fmaf, because its latency, not its op count, bounds the
 * loops; for the same reason those loops ask for 16 lanes (EXP_LANES), which
 * keeps more independent chains in flight. Inputs are clamped to [-87, 88],
 * so exp(-1000) is 1.6e-38 rather than 0, which no softmax can tell apart. */
static inline float vexpf(float x) {
    x = x > -87.0f ? x : -87.0f;
    x = x < 88.0f ? x : 88.0f;
    /* n = round(x / ln 2) by adding 1.5 * 2^23 (floorf does not vectorise) */
    float n = fmaf(x, 1.44269504088896341f, 12582912.0f) - 12582912.0f;
    float r = fmaf(n, -0.693359375f, x);
    r = fmaf(n, 2.12194440e-4f, r);
    float r2 = r * r, r4 = r2 * r2;
    float a = fmaf(1.9875691500e-4f, r, 1.3981999507e-3f);
    float b = fmaf(8.3334519073e-3f, r, 4.1665795894e-2f);
    float c = fmaf(1.6666665459e-1f, r, 5.0000001201e-1f);
    float p = fmaf(a, r4, fmaf(b, r2, c));
    p = fmaf(p, r2, r + 1.0f);
    union {
        int32_t i;
        float f;
    } scale = {.i = ((int32_t)n + 127) << 23};
    return p * scale.f;
}

/* ---------------------------------------------------------------- memory */

static void *cpu_alloc(void *ctx, size_t bytes) {
    /* 64-byte alignment suits AVX-512 loads; aligned_alloc wants a size
     * that is a multiple of the alignment. */
    if (bytes > SIZE_MAX - 63) return NULL;
    size_t rounded = (bytes + 63) & ~(size_t)63;
    return aligned_alloc(64, rounded ? rounded : 64);
}

static void cpu_free(void *ctx, void *p) { free(p); }

/* ---------------------------------------------------------------- matmul */

/* db[N] += sum over the M rows of dy[M, N]; each thread owns a column range
 * and adds the rows in order, so the sum does not depend on the threads. */
static void colsum_add(void *ctx, float *db, const float *dy, int M, int N) {
#pragma omp parallel num_threads(nthreads(ctx)) if ((size_t)M * N >= PAR_MIN)
    {
        int tid = omp_get_thread_num(), nt = omp_get_num_threads();
        int c0 = (int)((long)N * tid / nt), c1 = (int)((long)N * (tid + 1) / nt);
        for (int i = 0; i < M; i++) {
            const float *row = dy + (size_t)i * N;
#pragma omp simd
            for (int c = c0; c < c1; c++) db[c] += row[c];
        }
    }
}

static void cpu_matmul_forward(void *ctx, float *y, const float *x,
                               const float *w, const float *b, int M, int K,
                               int N, int accumulate) {
    if (M <= 0 || N <= 0) return;
    float beta = accumulate ? 1.0f : 0.0f;
    if (b && !accumulate) {
        /* Broadcast the bias first so sgemm adds onto it (one pass over y). */
#pragma omp parallel for num_threads(nthreads(ctx)) if ((size_t)M * N >= PAR_MIN)
        for (int i = 0; i < M; i++) memcpy(y + (size_t)i * N, b, N * sizeof(float));
        beta = 1.0f;
    }
    if (K <= 0) {
        if (beta == 0.0f) memset(y, 0, (size_t)M * N * sizeof(float));
    } else if (M == 1) {
        /* Generation: a matrix-vector product, which sgemm handles poorly. */
        cblas_sgemv(CblasRowMajor, CblasNoTrans, N, K, 1.0f, w, K, x, 1, beta,
                    y, 1);
    } else {
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, M, N, K, 1.0f, x,
                    K, w, K, beta, y, N);
    }
    if (b && accumulate) {
#pragma omp parallel for num_threads(nthreads(ctx)) if ((size_t)M * N >= PAR_MIN)
        for (int i = 0; i < M; i++) {
            float *row = y + (size_t)i * N;
#pragma omp simd
            for (int j = 0; j < N; j++) row[j] += b[j];
        }
    }
}

static void cpu_matmul_backward(void *ctx, float *dx, float *dw, float *db,
                                const float *dy, const float *x,
                                const float *w, int M, int K, int N) {
    if (M <= 0 || N <= 0 || K < 0) return;
    if (dx && K > 0)
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, M, K, N, 1.0f,
                    dy, N, w, K, 1.0f, dx, K);
    if (dw && K > 0)
        cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, N, K, M, 1.0f, dy,
                    N, x, K, 1.0f, dw, K);
    if (db) colsum_add(ctx, db, dy, M, N);
}

/* ------------------------------------------------------------- embedding */

static void cpu_embedding_forward(void *ctx, float *out, const int32_t *ids,
                                  const int32_t *pos, const float *wte,
                                  const float *wpe, int N, int C) {
#pragma omp parallel for num_threads(nthreads(ctx)) if ((size_t)N * C >= PAR_MIN)
    for (int n = 0; n < N; n++) {
        float *o = out + (size_t)n * C;
        const float *t = wte + (size_t)ids[n] * C;
        if (wpe) {
            const float *p = wpe + (size_t)(pos ? pos[n] : n) * C;
#pragma omp simd
            for (int c = 0; c < C; c++) o[c] = t[c] + p[c];
        } else {
            memcpy(o, t, C * sizeof(float));
        }
    }
}

/* Rows repeat (the same token twice in a batch), so split by columns. */
static void cpu_embedding_backward(void *ctx, float *dwte, float *dwpe,
                                   const float *dout, const int32_t *ids,
                                   const int32_t *pos, int N, int C) {
    if (!dwte && !dwpe) return;
#pragma omp parallel num_threads(nthreads(ctx)) if ((size_t)N * C >= PAR_MIN)
    {
        int tid = omp_get_thread_num(), nt = omp_get_num_threads();
        int c0 = (int)((long)C * tid / nt), c1 = (int)((long)C * (tid + 1) / nt);
        for (int n = 0; n < N; n++) {
            const float *d = dout + (size_t)n * C;
            if (dwte) {
                float *g = dwte + (size_t)ids[n] * C;
#pragma omp simd
                for (int c = c0; c < c1; c++) g[c] += d[c];
            }
            if (dwpe) {
                float *g = dwpe + (size_t)(pos ? pos[n] : n) * C;
#pragma omp simd
                for (int c = c0; c < c1; c++) g[c] += d[c];
            }
        }
    }
}

/* ----------------------------------------------------------------- norms */

static void cpu_rmsnorm_forward(void *ctx, float *out, float *rstd,
                                const float *x, const float *w, int N, int C,
                                float eps) {
#pragma omp parallel for num_threads(nthreads(ctx)) if ((size_t)N * C >= PAR_MIN)
    for (int n = 0; n < N; n++) {
        const float *xr = x + (size_t)n * C;
        float *o = out + (size_t)n * C;
        float ss = 0.0f;
#pragma omp simd reduction(+ : ss)
        for (int c = 0; c < C; c++) ss += xr[c] * xr[c];
        float r = 1.0f / sqrtf(ss / C + eps);
        if (rstd) rstd[n] = r;
        /* Hugging Face's order: normalise, then scale by the weight. */
#pragma omp simd
        for (int c = 0; c < C; c++) o[c] = w[c] * (xr[c] * r);
    }
}

static void cpu_rmsnorm_backward(void *ctx, float *dx, float *dw,
                                 const float *dout, const float *x,
                                 const float *w, const float *rstd, int N,
                                 int C) {
    int par = (size_t)N * C >= PAR_MIN;
    if (dx) {
        /* dx = r * w*dout - r^3/C * x * sum(w*dout*x) */
#pragma omp parallel for num_threads(nthreads(ctx)) if (par)
        for (int n = 0; n < N; n++) {
            const float *xr = x + (size_t)n * C, *d = dout + (size_t)n * C;
            float *g = dx + (size_t)n * C;
            float r = rstd[n], dot = 0.0f;
#pragma omp simd reduction(+ : dot)
            for (int c = 0; c < C; c++) dot += w[c] * d[c] * xr[c];
            float k = dot * r * r * r / C;
#pragma omp simd
            for (int c = 0; c < C; c++) g[c] += r * w[c] * d[c] - k * xr[c];
        }
    }
    if (dw) {
#pragma omp parallel num_threads(nthreads(ctx)) if (par)
        {
            int tid = omp_get_thread_num(), nt = omp_get_num_threads();
            int c0 = (int)((long)C * tid / nt), c1 = (int)((long)C * (tid + 1) / nt);
            for (int n = 0; n < N; n++) {
                const float *xr = x + (size_t)n * C, *d = dout + (size_t)n * C;
                float r = rstd[n];
#pragma omp simd
                for (int c = c0; c < c1; c++) dw[c] += d[c] * xr[c] * r;
            }
        }
    }
}

static void cpu_layernorm_forward(void *ctx, float *out, float *mean,
                                  float *rstd, const float *x, const float *w,
                                  const float *b, int N, int C, float eps) {
#pragma omp parallel for num_threads(nthreads(ctx)) if ((size_t)N * C >= PAR_MIN)
    for (int n = 0; n < N; n++) {
        const float *xr = x + (size_t)n * C;
        float *o = out + (size_t)n * C;
        float s = 0.0f;
#pragma omp simd reduction(+ : s)
        for (int c = 0; c < C; c++) s += xr[c];
        float m = s / C, v = 0.0f;
        /* Two passes: var = mean((x-m)^2) does not cancel like E[x^2]-m^2. */
#pragma omp simd reduction(+ : v)
        for (int c = 0; c < C; c++) v += (xr[c] - m) * (xr[c] - m);
        float r = 1.0f / sqrtf(v / C + eps);
        if (mean) mean[n] = m;
        if (rstd) rstd[n] = r;
        if (w && b) {
#pragma omp simd
            for (int c = 0; c < C; c++) o[c] = (xr[c] - m) * r * w[c] + b[c];
        } else {
#pragma omp simd
            for (int c = 0; c < C; c++)
                o[c] = (xr[c] - m) * r * (w ? w[c] : 1.0f) + (b ? b[c] : 0.0f);
        }
    }
}

static void cpu_layernorm_backward(void *ctx, float *dx, float *dw, float *db,
                                   const float *dout, const float *x,
                                   const float *w, const float *mean,
                                   const float *rstd, int N, int C) {
    int par = (size_t)N * C >= PAR_MIN;
    if (dx) {
        /* With g = w*dout and xh the normalised x:
         * dx = r * (g - mean(g) - xh * mean(g*xh)). */
#pragma omp parallel for num_threads(nthreads(ctx)) if (par)
        for (int n = 0; n < N; n++) {
            const float *xr = x + (size_t)n * C, *d = dout + (size_t)n * C;
            float *gx = dx + (size_t)n * C;
            float m = mean[n], r = rstd[n], sg = 0.0f, sgx = 0.0f;
#pragma omp simd reduction(+ : sg, sgx)
            for (int c = 0; c < C; c++) {
                float g = (w ? w[c] : 1.0f) * d[c];
                sg += g;
                sgx += g * (xr[c] - m) * r;
            }
            sg /= C;
            sgx /= C;
#pragma omp simd
            for (int c = 0; c < C; c++) {
                float g = (w ? w[c] : 1.0f) * d[c];
                gx[c] += r * (g - sg - (xr[c] - m) * r * sgx);
            }
        }
    }
    if (dw || db) {
#pragma omp parallel num_threads(nthreads(ctx)) if (par)
        {
            int tid = omp_get_thread_num(), nt = omp_get_num_threads();
            int c0 = (int)((long)C * tid / nt), c1 = (int)((long)C * (tid + 1) / nt);
            for (int n = 0; n < N; n++) {
                const float *xr = x + (size_t)n * C, *d = dout + (size_t)n * C;
                float m = mean[n], r = rstd[n];
                if (dw) {
#pragma omp simd
                    for (int c = c0; c < c1; c++) dw[c] += d[c] * (xr[c] - m) * r;
                }
                if (db) {
#pragma omp simd
                    for (int c = c0; c < c1; c++) db[c] += d[c];
                }
            }
        }
    }
}

/* ------------------------------------------------------------------ RoPE */

/* 1 / theta^(2i/D) as Hugging Face computes it in float32: the exponent is
 * a float quotient and the power is rounded to float before the reciprocal,
 * so angles (and thus logits) match theirs bit for bit in most positions. */
static float rope_inv_freq(float theta, int i, int D) {
    float e = (float)(2 * i) / (float)D;
    return 1.0f / (float)pow((double)theta, (double)e);
}

/* Rotates every head of each row by its position; sign = +1 forward, -1 for
 * the inverse (the transpose, which is what backward needs). */
static void rope_apply(void *ctx, float *x, const int32_t *pos, int N, int nh,
                       int D, float theta, float sign) {
    enum { TABLE = 256 };
    int half = D / 2;
    float inv[TABLE]; /* larger heads compute the frequency inline */
    for (int i = 0; i < half && i < TABLE; i++) inv[i] = rope_inv_freq(theta, i, D);
#pragma omp parallel for num_threads(nthreads(ctx)) if ((size_t)N * nh * D >= PAR_MIN / 4)
    for (int n = 0; n < N; n++) {
        float *row = x + (size_t)n * nh * D;
        float p = (float)pos[n];
        for (int i = 0; i < half; i++) {
            float angle = p * (i < TABLE ? inv[i] : rope_inv_freq(theta, i, D));
            float c = cosf(angle), s = sign * sinf(angle);
            for (int h = 0; h < nh; h++) {
                float *a = row + (size_t)h * D + i, *b = a + half;
                float x0 = *a, x1 = *b;
                *a = x0 * c - x1 * s;
                *b = x1 * c + x0 * s;
            }
        }
    }
}

static void cpu_rope_forward(void *ctx, float *x, const int32_t *pos, int N,
                             int nh, int D, float theta) {
    rope_apply(ctx, x, pos, N, nh, D, theta, 1.0f);
}

static void cpu_rope_backward(void *ctx, float *dx, const int32_t *pos, int N,
                              int nh, int D, float theta) {
    rope_apply(ctx, dx, pos, N, nh, D, theta, -1.0f);
}

/* ------------------------------------------------------------- attention */

/* Softmax of row[lo..hi] (inclusive) in place, zeroing the rest of row[0, n). */
static void softmax_span(float *row, int n, int lo, int hi) {
    float mx = -INFINITY, sum = 0.0f;
#pragma omp simd reduction(max : mx)
    for (int j = lo; j <= hi; j++) mx = row[j] > mx ? row[j] : mx;
#pragma omp simd simdlen(EXP_LANES) reduction(+ : sum)
    for (int j = lo; j <= hi; j++) {
        row[j] = vexpf(row[j] - mx);
        sum += row[j];
    }
    float inv = 1.0f / sum;
#pragma omp simd
    for (int j = lo; j <= hi; j++) row[j] *= inv;
    if (lo > 0) memset(row, 0, lo * sizeof(float));
    if (hi + 1 < n) memset(row + hi + 1, 0, (n - hi - 1) * sizeof(float));
}

/* The first key query position p may see (keys run up to p itself). */
static int first_key(int p, int window) {
    return window > 0 && p - window + 1 > 0 ? p - window + 1 : 0;
}

/* The shapes of one attention_forward call, shared by its helpers. */
typedef struct att_shape {
    int Tq, Tk, H, group, D, window;
    size_t qs, kvs, kv_bstride; /* row strides of q/out and k/v; batch stride */
    float scale;
} att_shape;

/* Query row (b, t) of head h without storing probabilities: one pass over
 * the keys with a running max (online softmax), accumulating into `out`. */
static void attend_stream(const att_shape *s, float *out, const float *q,
                          const float *k, const float *v, int b, int t,
                          int h) {
    int p = s->Tk - s->Tq + t, D = s->D;
    size_t kv0 = b * s->kv_bstride + (size_t)(h / s->group) * D;
    const float *qt = q + ((size_t)b * s->Tq + t) * s->qs + (size_t)h * D;
    float *o = out + ((size_t)b * s->Tq + t) * s->qs + (size_t)h * D;
    float mx = -INFINITY, sum = 0.0f;
    memset(o, 0, D * sizeof(float));
    for (int j = first_key(p, s->window); j <= p; j++) {
        const float *kj = k + kv0 + j * s->kvs, *vj = v + kv0 + j * s->kvs;
        float sc = 0.0f;
#pragma omp simd reduction(+ : sc)
        for (int d = 0; d < D; d++) sc += qt[d] * kj[d];
        sc *= s->scale;
        if (sc > mx) {
            /* Rescale what was accumulated against the old max. */
            float corr = expf(mx - sc);
            sum *= corr;
#pragma omp simd
            for (int d = 0; d < D; d++) o[d] *= corr;
            mx = sc;
        }
        float e = expf(sc - mx);
        sum += e;
#pragma omp simd
        for (int d = 0; d < D; d++) o[d] += e * vj[d];
    }
    float inv = 1.0f / sum;
#pragma omp simd
    for (int d = 0; d < D; d++) o[d] *= inv;
}

/* Query rows [t0, t1) of head h with two sgemms: scores into S (row stride
 * lds, column 0 = key lo), softmax in place, then out = S @ v. */
static void attend_block(const att_shape *s, float *out, float *S, size_t lds,
                         const float *q, const float *k, const float *v,
                         int b, int h, int t0, int t1, int lo) {
    int m = t1 - t0, p0 = s->Tk - s->Tq + t0, n = p0 + m - lo, D = s->D;
    size_t kv0 = b * s->kv_bstride + lo * s->kvs + (size_t)(h / s->group) * D;
    size_t q0 = ((size_t)b * s->Tq + t0) * s->qs + (size_t)h * D;
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, m, n, D, s->scale,
                q + q0, s->qs, k + kv0, s->kvs, 0.0f, S, lds);
    for (int r = 0; r < m; r++)
        softmax_span(S + r * lds, n, first_key(p0 + r, s->window) - lo, p0 + r - lo);
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, m, D, n, 1.0f, S,
                lds, v + kv0, s->kvs, 0.0f, out + q0, s->qs);
}

static void cpu_attention_forward(void *ctx, float *out, float *att,
                                  const float *q, const float *k,
                                  const float *v, int B, int Tq, int Tk, int H,
                                  int KVH, int D, size_t kv_bstride,
                                  int window) {
    /* Tq > Tk would put queries before the first key. */
    if (B <= 0 || Tq <= 0 || H <= 0 || KVH <= 0 || D <= 0 || Tq > Tk) return;
    const att_shape s = {Tq, Tk, H, H / KVH, D, window, (size_t)H * D,
                         (size_t)KVH * D, kv_bstride, 1.0f / sqrtf((float)D)};

    if (!att && Tq < ATT_STREAM_MAX) {
        long rows = (long)B * Tq * H;
#pragma omp parallel for num_threads(nthreads(ctx)) if (rows * Tk * D >= PAR_MIN)
        for (long r = 0; r < rows; r++)
            attend_stream(&s, out, q, k, v, (int)(r / H / Tq), (int)(r / H % Tq),
                          (int)(r % H));
        return;
    }

    const int nblk = (Tq + ATT_BLOCK - 1) / ATT_BLOCK;
    const long tasks = (long)B * H * nblk;
#pragma omp parallel num_threads(nthreads(ctx))
    {
        /* Without a caller buffer, each thread keeps one block of scores. */
        int rows = Tq < ATT_BLOCK ? Tq : ATT_BLOCK;
        float *scratch = att ? NULL : malloc((size_t)rows * Tk * sizeof(float));
#pragma omp for schedule(dynamic)
        for (long task = 0; task < tasks; task++) {
            int blk = (int)(task % nblk), h = (int)(task / nblk % H);
            int b = (int)(task / nblk / H);
            int t0 = blk * ATT_BLOCK, t1 = t0 + ATT_BLOCK < Tq ? t0 + ATT_BLOCK : Tq;
            /* Keys [lo, hi) cover every query of the block. */
            int lo = first_key(Tk - Tq + t0, window), hi = Tk - Tq + t1;
            if (att) {
                float *A = att + (((size_t)b * H + h) * Tq + t0) * Tk;
                attend_block(&s, out, A + lo, Tk, q, k, v, b, h, t0, t1, lo);
                for (int r = 0; r < t1 - t0; r++) {
                    if (lo > 0) memset(A + (size_t)r * Tk, 0, lo * sizeof(float));
                    if (hi < Tk)
                        memset(A + (size_t)r * Tk + hi, 0, (Tk - hi) * sizeof(float));
                }
            } else if (scratch) {
                attend_block(&s, out, scratch, hi - lo, q, k, v, b, h, t0, t1, lo);
            } else {
                /* Out of memory for the scratch: stream row by row instead. */
                for (int t = t0; t < t1; t++) attend_stream(&s, out, q, k, v, b, t, h);
            }
        }
        free(scratch);
    }
}

/* The backward pass of one (b, h) head row by row, without scratch memory:
 * each dot product of dout with v is done twice (once for the row sum, once
 * for the gradient). Used for short sequences and when memory runs out. */
static void attend_backward_stream(float *dq, float *dk, float *dv,
                                   size_t ldkv, const float *dout,
                                   const float *att, const float *q,
                                   const float *k, const float *v, int T,
                                   size_t qs, size_t kvs, int D, float scale) {
    for (int t = 0; t < T; t++) {
        const float *a = att + (size_t)t * T, *dot_ = dout + (size_t)t * qs;
        const float *qt = q + (size_t)t * qs;
        float rowsum = 0.0f;
        if (dq || dk) {
            for (int j = 0; j <= t; j++) {
                if (a[j] == 0.0f) continue;
                const float *vj = v + (size_t)j * kvs;
                float datt = 0.0f;
#pragma omp simd reduction(+ : datt)
                for (int d = 0; d < D; d++) datt += dot_[d] * vj[d];
                rowsum += a[j] * datt;
            }
        }
        for (int j = 0; j <= t; j++) {
            if (a[j] == 0.0f) continue; /* masked: every gradient term is 0 */
            const float *vj = v + (size_t)j * kvs, *kj = k + (size_t)j * kvs;
            if (dq || dk) {
                float datt = 0.0f;
#pragma omp simd reduction(+ : datt)
                for (int d = 0; d < D; d++) datt += dot_[d] * vj[d];
                float ds = a[j] * (datt - rowsum) * scale;
                if (dq) {
                    float *g = dq + (size_t)t * qs;
#pragma omp simd
                    for (int d = 0; d < D; d++) g[d] += ds * kj[d];
                }
                if (dk) {
                    float *g = dk + (size_t)j * ldkv;
#pragma omp simd
                    for (int d = 0; d < D; d++) g[d] += ds * qt[d];
                }
            }
            if (dv) {
                float *g = dv + (size_t)j * ldkv;
#pragma omp simd
                for (int d = 0; d < D; d++) g[d] += a[j] * dot_[d];
            }
        }
    }
}

/* The backward pass of one (b, h) head, blocked over query rows like the
 * forward; dS holds one block of score gradients (NULL = stream instead).
 * dk/dv point at this head's KV rows with row stride ldkv. */
static void attend_backward_head(float *dq, float *dk, float *dv,
                                 size_t ldkv, const float *dout,
                                 const float *att, const float *q,
                                 const float *k, const float *v, int T,
                                 size_t qs, size_t kvs, int D, float scale,
                                 float *dS) {
    if (!dS && (dq || dk)) {
        attend_backward_stream(dq, dk, dv, ldkv, dout, att, q, k, v, T, qs,
                               kvs, D, scale);
        return;
    }
    for (int t0 = 0; t0 < T; t0 += ATT_BLOCK) {
        int t1 = t0 + ATT_BLOCK < T ? t0 + ATT_BLOCK : T, m = t1 - t0, n = t1;
        const float *A = att + (size_t)t0 * T;
        const float *dob = dout + (size_t)t0 * qs;
        if (dq || dk) {
            /* dS = att * (datt - rowsum(att * datt)) * scale, datt = dout v^T.
             * Masked entries have att = 0, so dS is 0 there too. */
            cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, m, n, D, 1.0f,
                        dob, qs, v, kvs, 0.0f, dS, n);
            for (int r = 0; r < m; r++) {
                const float *a = A + (size_t)r * T;
                float *s = dS + (size_t)r * n, dot = 0.0f;
#pragma omp simd reduction(+ : dot)
                for (int j = 0; j < n; j++) dot += a[j] * s[j];
#pragma omp simd
                for (int j = 0; j < n; j++) s[j] = a[j] * (s[j] - dot) * scale;
            }
            if (dq)
                cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, m, D, n,
                            1.0f, dS, n, k, kvs, 1.0f, dq + (size_t)t0 * qs, qs);
            if (dk)
                cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, n, D, m,
                            1.0f, dS, n, q + (size_t)t0 * qs, qs, 1.0f, dk, ldkv);
        }
        if (dv)
            cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, n, D, m, 1.0f,
                        A, T, dob, qs, 1.0f, dv, ldkv);
    }
}

static void cpu_attention_backward(void *ctx, float *dq, float *dk, float *dv,
                                   const float *dout, const float *att,
                                   const float *q, const float *k,
                                   const float *v, int B, int T, int H,
                                   int KVH, int D) {
    if (B <= 0 || T <= 0 || H <= 0 || KVH <= 0 || D <= 0) return;
    if (!dq && !dk && !dv) return;
    const int group = H / KVH, nt = nthreads(ctx);
    const size_t qs = (size_t)H * D, kvs = (size_t)KVH * D;
    const float scale = 1.0f / sqrtf((float)D);
    const int rows = T < ATT_BLOCK ? T : ATT_BLOCK;

    /* Query heads that share a KV head all add into its dk/dv. When there
     * are enough (b, kv head) pairs to keep every thread busy, one task owns
     * a KV head and walks its query heads; otherwise each query head writes
     * a private dk/dv that a second pass sums in head order. */
    int direct = group == 1 || (dk == NULL && dv == NULL) ||
                 ((long)B * KVH) % nt == 0 || (long)B * KVH >= 4L * nt;
    float *pk = NULL, *pv = NULL;
    size_t part = (size_t)B * H * T * D;
    if (!direct) {
        pk = dk ? calloc(part, sizeof(float)) : NULL;
        pv = dv ? calloc(part, sizeof(float)) : NULL;
        if ((dk && !pk) || (dv && !pv)) {
            free(pk);
            free(pv);
            pk = pv = NULL;
            direct = 1; /* out of memory: fall back to fewer tasks */
        }
    }

#pragma omp parallel num_threads(nt)
    {
        /* Short sequences stream; so does a thread whose malloc fails. */
        float *dS = (dq || dk) && T >= ATT_STREAM_MAX
                        ? malloc((size_t)rows * T * sizeof(float))
                        : NULL;
        if (direct) {
#pragma omp for schedule(dynamic)
            for (long task = 0; task < (long)B * KVH; task++) {
                int b = (int)(task / KVH), kh = (int)(task % KVH);
                size_t kv0 = (size_t)b * T * kvs + (size_t)kh * D;
                for (int h = kh * group; h < (kh + 1) * group; h++) {
                    size_t q0 = (size_t)b * T * qs + (size_t)h * D;
                    attend_backward_head(dq ? dq + q0 : NULL, dk ? dk + kv0 : NULL,
                                         dv ? dv + kv0 : NULL, kvs, dout + q0,
                                         att + ((size_t)b * H + h) * T * T,
                                         q + q0, k + kv0, v + kv0, T, qs, kvs,
                                         D, scale, dS);
                }
            }
        } else {
#pragma omp for schedule(dynamic)
            for (long task = 0; task < (long)B * H; task++) {
                int b = (int)(task / H), h = (int)(task % H);
                size_t q0 = (size_t)b * T * qs + (size_t)h * D;
                size_t kv0 = (size_t)b * T * kvs + (size_t)(h / group) * D;
                size_t p0 = (size_t)task * T * D;
                attend_backward_head(dq ? dq + q0 : NULL, pk ? pk + p0 : NULL,
                                     pv ? pv + p0 : NULL, D, dout + q0,
                                     att + (size_t)task * T * T, q + q0,
                                     k + kv0, v + kv0, T, qs, kvs, D, scale, dS);
            }
#pragma omp for
            for (long bt = 0; bt < (long)B * T; bt++) {
                int b = (int)(bt / T), t = (int)(bt % T);
                for (int h = 0; h < H; h++) {
                    size_t src = (((size_t)b * H + h) * T + t) * D;
                    size_t dst = (size_t)bt * kvs + (size_t)(h / group) * D;
#pragma omp simd
                    for (int d = 0; d < D; d++) {
                        if (pk) dk[dst + d] += pk[src + d];
                        if (pv) dv[dst + d] += pv[src + d];
                    }
                }
            }
        }
        free(dS);
    }
    free(pk);
    free(pv);
}

/* ----------------------------------------------------------- activations */

static void cpu_swiglu_forward(void *ctx, float *out, const float *gate,
                               const float *up, size_t n) {
#pragma omp parallel for simd simdlen(EXP_LANES) num_threads(nthreads(ctx)) if (n >= PAR_MIN)
    for (size_t i = 0; i < n; i++) {
        float g = gate[i];
        out[i] = g / (1.0f + vexpf(-g)) * up[i];
    }
}

static void cpu_swiglu_backward(void *ctx, float *dgate, float *dup,
                                const float *dout, const float *gate,
                                const float *up, size_t n) {
    if (dgate && dup) {
#pragma omp parallel for simd simdlen(EXP_LANES) num_threads(nthreads(ctx)) if (n >= PAR_MIN)
        for (size_t i = 0; i < n; i++) {
            float g = gate[i], sig = 1.0f / (1.0f + vexpf(-g));
            dgate[i] += dout[i] * up[i] * sig * (1.0f + g * (1.0f - sig));
            dup[i] += dout[i] * g * sig;
        }
    } else if (dgate) {
#pragma omp parallel for simd simdlen(EXP_LANES) num_threads(nthreads(ctx)) if (n >= PAR_MIN)
        for (size_t i = 0; i < n; i++) {
            float g = gate[i], sig = 1.0f / (1.0f + vexpf(-g));
            dgate[i] += dout[i] * up[i] * sig * (1.0f + g * (1.0f - sig));
        }
    } else if (dup) {
#pragma omp parallel for simd simdlen(EXP_LANES) num_threads(nthreads(ctx)) if (n >= PAR_MIN)
        for (size_t i = 0; i < n; i++) {
            float g = gate[i];
            dup[i] += dout[i] * g / (1.0f + vexpf(-g));
        }
    }
}

#define GELU_K 0.7978845608028654f /* sqrt(2/pi) */
#define GELU_C 0.044715f

/* tanh(u) = 1 - 2 / (exp(2u) + 1), through the vectorisable exp. */
static inline float vtanhf(float u) { return 1.0f - 2.0f / (vexpf(2.0f * u) + 1.0f); }

static void cpu_gelu_forward(void *ctx, float *out, const float *x, size_t n) {
#pragma omp parallel for simd simdlen(EXP_LANES) num_threads(nthreads(ctx)) if (n >= PAR_MIN)
    for (size_t i = 0; i < n; i++) {
        float xi = x[i];
        out[i] = 0.5f * xi * (1.0f + vtanhf(GELU_K * (xi + GELU_C * xi * xi * xi)));
    }
}

static void cpu_gelu_backward(void *ctx, float *dx, const float *dout,
                              const float *x, size_t n) {
#pragma omp parallel for simd simdlen(EXP_LANES) num_threads(nthreads(ctx)) if (n >= PAR_MIN)
    for (size_t i = 0; i < n; i++) {
        float xi = x[i];
        float t = vtanhf(GELU_K * (xi + GELU_C * xi * xi * xi));
        float du = GELU_K * (1.0f + 3.0f * GELU_C * xi * xi);
        dx[i] += dout[i] * (0.5f * (1.0f + t) + 0.5f * xi * (1.0f - t * t) * du);
    }
}

static void cpu_relu_forward(void *ctx, float *out, const float *x, size_t n) {
#pragma omp parallel for simd num_threads(nthreads(ctx)) if (n >= PAR_MIN)
    for (size_t i = 0; i < n; i++) out[i] = x[i] > 0.0f ? x[i] : 0.0f;
}

static void cpu_relu_backward(void *ctx, float *dx, const float *dout,
                              const float *x, size_t n) {
#pragma omp parallel for simd num_threads(nthreads(ctx)) if (n >= PAR_MIN)
    for (size_t i = 0; i < n; i++) dx[i] += x[i] > 0.0f ? dout[i] : 0.0f;
}

static void cpu_add(void *ctx, float *out, const float *a, const float *b,
                    size_t n) {
#pragma omp parallel for simd num_threads(nthreads(ctx)) if (n >= PAR_MIN)
    for (size_t i = 0; i < n; i++) out[i] = a[i] + b[i];
}

/* --------------------------------------------------------- cross-entropy */

/* log(sum(exp(row))) computed stably, in one pass over memory: each chunk
 * (small enough to stay in L1) gets its own max and float sum of exps, and
 * chunks combine in double. One float running sum over a 50k vocabulary
 * would drift by ~1e-4. */
static float logsumexp(const float *row, int V) {
    enum { CHUNK = 1024 };
    double mx = -INFINITY, sum = 0.0;
    for (int j0 = 0; j0 < V; j0 += CHUNK) {
        int j1 = j0 + CHUNK < V ? j0 + CHUNK : V;
        float cm = -INFINITY, part = 0.0f;
#pragma omp simd reduction(max : cm)
        for (int j = j0; j < j1; j++) cm = row[j] > cm ? row[j] : cm;
#pragma omp simd simdlen(EXP_LANES) reduction(+ : part)
        for (int j = j0; j < j1; j++) part += vexpf(row[j] - cm);
        if (cm > mx) {
            sum = sum * exp(mx - cm) + part;
            mx = cm;
        } else {
            sum += part * exp(cm - mx);
        }
    }
    return (float)(mx + log(sum));
}

/* Whether row n takes part in the loss: a valid target and nonzero weight. */
static int ce_counted(const int32_t *targets, const float *mask, int n, int V) {
    return targets[n] >= 0 && targets[n] < V && (!mask || mask[n] != 0.0f);
}

static void cpu_crossentropy_forward(void *ctx, float *losses,
                                     const float *logits,
                                     const int32_t *targets, const float *mask,
                                     int N, int V) {
#pragma omp parallel for num_threads(nthreads(ctx)) if ((size_t)N * V >= PAR_MIN)
    for (int n = 0; n < N; n++) {
        const float *row = logits + (size_t)n * V;
        losses[n] = ce_counted(targets, mask, n, V)
                        ? logsumexp(row, V) - row[targets[n]]
                        : 0.0f;
    }
}

static void cpu_crossentropy_backward(void *ctx, float *dlogits,
                                      const float *logits,
                                      const int32_t *targets,
                                      const float *mask, int N, int V,
                                      float scale) {
#pragma omp parallel for num_threads(nthreads(ctx)) if ((size_t)N * V >= PAR_MIN)
    for (int n = 0; n < N; n++) {
        if (!ce_counted(targets, mask, n, V)) continue;
        const float *row = logits + (size_t)n * V;
        float *d = dlogits + (size_t)n * V;
        float lse = logsumexp(row, V), s = scale * (mask ? mask[n] : 1.0f);
#pragma omp simd simdlen(EXP_LANES)
        for (int j = 0; j < V; j++) d[j] += s * vexpf(row[j] - lse);
        d[targets[n]] -= s;
    }
}

static void cpu_log_softmax(void *ctx, float *out, const float *logits, int N,
                            int V) {
#pragma omp parallel for num_threads(nthreads(ctx)) if ((size_t)N * V >= PAR_MIN)
    for (int n = 0; n < N; n++) {
        const float *row = logits + (size_t)n * V;
        float *o = out + (size_t)n * V;
        float lse = logsumexp(row, V);
#pragma omp simd
        for (int j = 0; j < V; j++) o[j] = row[j] - lse;
    }
}

/* ------------------------------------------------------------- lifecycle */

lm_backend *lm_backend_cpu_new(int threads) {
    cpu_backend *cb = calloc(1, sizeof *cb);
    if (!cb) return NULL;
    if (threads > 0) {
        /* One pool: the OpenMP build of OpenBLAS runs sgemm on libgomp's
         * workers, so both calls size the same team. */
        omp_set_num_threads(threads);
        openblas_set_num_threads(threads);
        cb->ctx.threads = threads;
    } else {
        cb->ctx.threads = omp_get_max_threads();
    }
    lm_backend *be = &cb->be;
    be->name = "cpu";
    be->ctx = &cb->ctx;
    be->set_threads = cpu_set_threads;
    be->alloc = cpu_alloc;
    be->free = cpu_free;
    be->matmul_forward = cpu_matmul_forward;
    be->matmul_backward = cpu_matmul_backward;
    be->embedding_forward = cpu_embedding_forward;
    be->embedding_backward = cpu_embedding_backward;
    be->rmsnorm_forward = cpu_rmsnorm_forward;
    be->rmsnorm_backward = cpu_rmsnorm_backward;
    be->layernorm_forward = cpu_layernorm_forward;
    be->layernorm_backward = cpu_layernorm_backward;
    be->rope_forward = cpu_rope_forward;
    be->rope_backward = cpu_rope_backward;
    be->attention_forward = cpu_attention_forward;
    be->attention_backward = cpu_attention_backward;
    be->swiglu_forward = cpu_swiglu_forward;
    be->swiglu_backward = cpu_swiglu_backward;
    be->gelu_forward = cpu_gelu_forward;
    be->gelu_backward = cpu_gelu_backward;
    be->relu_forward = cpu_relu_forward;
    be->relu_backward = cpu_relu_backward;
    be->add = cpu_add;
    be->crossentropy_forward = cpu_crossentropy_forward;
    be->crossentropy_backward = cpu_crossentropy_backward;
    be->log_softmax = cpu_log_softmax;
    return be;
}

void lm_backend_cpu_free(lm_backend *be) {
    /* The lm_backend is the first member of the allocation. */
    free((cpu_backend *)be);
}
