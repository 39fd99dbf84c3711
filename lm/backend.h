/* The compute backend: every kernel the model families need, forward and
 * backward, behind a struct of function pointers with a context pointer (the
 * ggml pattern). The CPU backend (backend_cpu.c) is the reference; a CUDA
 * backend fills the same struct with device pointers.
 *
 * Conventions shared by every kernel:
 *  - all tensors are fp32, row-major, contiguous unless a stride is given;
 *  - shapes are in the comments as [rows, cols] with B batch, T time,
 *    C channels, H query heads, KVH key/value heads, D head size, V vocab;
 *  - backward kernels ADD into every gradient they are given (the caller
 *    zeroes gradients once per step); a NULL gradient pointer means "not
 *    wanted" and its work is skipped (frozen weights under LoRA cost nothing);
 *  - forward kernels overwrite their outputs. `out` may alias an input only
 *    where a comment says so. */
#ifndef LM_BACKEND_H
#define LM_BACKEND_H

#include <stddef.h>
#include <stdint.h>

typedef struct lm_backend {
    const char *name;
    void *ctx;

    /* Threads the kernels may use from now on; returns the previous count.
     * Tiny work (a decode step of a small model) runs faster on one. */
    int (*set_threads)(void *ctx, int n);

    /* Memory the kernels may touch. On the CPU these are malloc/free. */
    void *(*alloc)(void *ctx, size_t bytes);
    void (*free)(void *ctx, void *p);

    /* y[M,N] = x[M,K] @ w[N,K]^T + b[N]   (HF nn.Linear layout; b may be NULL).
     * If `accumulate` is nonzero, y += instead of y =. */
    void (*matmul_forward)(void *ctx, float *y, const float *x, const float *w,
                           const float *b, int M, int K, int N, int accumulate);
    /* dx[M,K] += dy @ w;  dw[N,K] += dy^T @ x;  db[N] += colsum(dy). */
    void (*matmul_backward)(void *ctx, float *dx, float *dw, float *db,
                            const float *dy, const float *x, const float *w,
                            int M, int K, int N);

    /* out[N,C] = wte[ids[n], :]  (+ wpe[pos[n], :] when wpe != NULL).
     * ids are validated by the caller to lie in [0, V). */
    void (*embedding_forward)(void *ctx, float *out, const int32_t *ids,
                              const int32_t *pos, const float *wte,
                              const float *wpe, int N, int C);
    /* dwte[ids[n]] += dout[n];  dwpe[pos[n]] += dout[n]. */
    void (*embedding_backward)(void *ctx, float *dwte, float *dwpe,
                               const float *dout, const int32_t *ids,
                               const int32_t *pos, int N, int C);

    /* RMSNorm (Llama): out = x / sqrt(mean(x^2) + eps) * w.  rstd[N] saved. */
    void (*rmsnorm_forward)(void *ctx, float *out, float *rstd, const float *x,
                            const float *w, int N, int C, float eps);
    void (*rmsnorm_backward)(void *ctx, float *dx, float *dw, const float *dout,
                             const float *x, const float *w, const float *rstd,
                             int N, int C);

    /* LayerNorm: out = (x - mean) * rstd * w + b.  mean[N], rstd[N] saved;
     * w, b may be NULL (elementwise_affine=False). */
    void (*layernorm_forward)(void *ctx, float *out, float *mean, float *rstd,
                              const float *x, const float *w, const float *b,
                              int N, int C, float eps);
    void (*layernorm_backward)(void *ctx, float *dx, float *dw, float *db,
                               const float *dout, const float *x,
                               const float *w, const float *mean,
                               const float *rstd, int N, int C);

    /* RoPE in Hugging Face's rotate-half layout, in place on x[N, nh, D]:
     * for i < D/2, angle = pos[n] * theta^(-2i/D),
     *   x'[i]       = x[i] cos - x[i+D/2] sin
     *   x'[i+D/2]   = x[i+D/2] cos + x[i] sin.
     * Backward is the inverse rotation applied in place to the gradient. */
    void (*rope_forward)(void *ctx, float *x, const int32_t *pos, int N,
                         int nh, int D, float theta);
    void (*rope_backward)(void *ctx, float *dx, const int32_t *pos, int N,
                          int nh, int D, float theta);

    /* Causal softmax attention with grouped-query heads.
     *   q   [B, Tq, H, D]          (row stride H*D)
     *   k,v [B, Tk, KVH, D]        batch stride kv_bstride floats (>= Tk*KVH*D,
     *                              so a KV cache of capacity Tmax can be read)
     *   out [B, Tq, H, D]
     *   att [B, H, Tq, Tk]         softmax probabilities, saved for backward
     *                              and readable by callers (attention maps)
     * Query t sits at absolute position Tk - Tq + t; it sees key j iff
     * j <= pos and (window == 0 || pos - j < window). Head h reads KV head
     * h / (H / KVH). Scores are scaled by 1/sqrt(D). */
    void (*attention_forward)(void *ctx, float *out, float *att,
                              const float *q, const float *k, const float *v,
                              int B, int Tq, int Tk, int H, int KVH, int D,
                              size_t kv_bstride, int window);
    /* Training form only (Tq == Tk, kv_bstride = T*KVH*D). */
    void (*attention_backward)(void *ctx, float *dq, float *dk, float *dv,
                               const float *dout, const float *att,
                               const float *q, const float *k, const float *v,
                               int B, int T, int H, int KVH, int D);

    /* SwiGLU: out[N,F] = silu(gate) * up. */
    void (*swiglu_forward)(void *ctx, float *out, const float *gate,
                           const float *up, size_t n);
    void (*swiglu_backward)(void *ctx, float *dgate, float *dup,
                            const float *dout, const float *gate,
                            const float *up, size_t n);

    /* GELU, tanh approximation (GPT-2's gelu_new). out may alias x. */
    void (*gelu_forward)(void *ctx, float *out, const float *x, size_t n);
    void (*gelu_backward)(void *ctx, float *dx, const float *dout,
                          const float *x, size_t n);

    /* ReLU (OPT). out may alias x. backward reads the forward input x. */
    void (*relu_forward)(void *ctx, float *out, const float *x, size_t n);
    void (*relu_backward)(void *ctx, float *dx, const float *dout,
                          const float *x, size_t n);

    /* out = a + b (residual). out may alias a or b. Backward is dout added
     * to both gradients; callers use `add` for it. */
    void (*add)(void *ctx, float *out, const float *a, const float *b,
                size_t n);

    /* Cross-entropy over logits[N,V] with targets[N] and mask[N] (weights,
     * 1 = counted; NULL = all counted; a target < 0 is never counted).
     * losses[N] = -log softmax(logits)[target] (0 where not counted).
     * Returns nothing; the caller sums losses and mask. */
    void (*crossentropy_forward)(void *ctx, float *losses,
                                 const float *logits, const int32_t *targets,
                                 const float *mask, int N, int V);
    /* dlogits[N,V] += scale * mask[n] * (softmax(logits[n]) - onehot(t)).
     * `scale` is usually 1 / sum(mask). */
    void (*crossentropy_backward)(void *ctx, float *dlogits,
                                  const float *logits, const int32_t *targets,
                                  const float *mask, int N, int V,
                                  float scale);

    /* log_softmax over each row of logits[N,V] into out (may alias). */
    void (*log_softmax)(void *ctx, float *out, const float *logits, int N,
                        int V);
} lm_backend;

/* The CPU backend: OpenBLAS sgemm for matmuls, OpenMP for the rest, one
 * thread pool (link the OpenMP build of OpenBLAS). `threads` <= 0 keeps the
 * OpenMP default. Returns NULL on allocation failure. */
lm_backend *lm_backend_cpu_new(int threads);
void lm_backend_cpu_free(lm_backend *be);

#endif
