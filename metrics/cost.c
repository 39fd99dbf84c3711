/* The cost of a step: wall time, tokens, FLOPs, peak memory. */
#include <sys/resource.h>
#include <time.h>

#include "metrics.h"

void mt_clock_start(mt_clock *c) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    c->start = (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

double mt_clock_seconds(const mt_clock *c) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec - c->start;
}

long mt_peak_rss_bytes(void) {
    struct rusage ru;
    if (getrusage(RUSAGE_SELF, &ru) != 0) return -1;
    return ru.ru_maxrss * 1024L; /* Linux reports KiB */
}

double mt_forward_flops_per_token(const lm_config *c, int t) {
    double C = c->d_model, HD = (double)c->n_heads * c->head_dim,
           KD = (double)c->n_kv_heads * c->head_dim, F = c->ffn_dim;
    int mlp = (c->arch == LM_ARCH_LLAMA || c->arch == LM_ARCH_MISTRAL) ? 3 : 2;
    double per_layer = 2 * C * (HD + 2 * KD) + 2 * HD * C + 2 * C * F * mlp +
                       4.0 * c->n_heads * c->head_dim * (double)t;
    return c->n_layers * per_layer + 2 * C * c->vocab_size;
}
