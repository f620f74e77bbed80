/* How K ranks of a distributed run share a network (docs/distributed.md), for `pnetc --report
 * --ranks K` and `./net info --ranks K`: both print it from the same facts with this code, so the
 * two agree. Also the chunk indices of the fixed gradient tree (gradtree.h folds it): which aligned
 * blocks of chunks a run of chunks leaves. Header-only and private: the contract between pnetc and
 * libpnetrt, like pnetrt_abi.h. */
#ifndef PNETRT_RANKS_H
#define PNETRT_RANKS_H

#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>

typedef struct pnetrt_blk {
    int64_t lo, n; /* chunks [lo, lo + n) */
} pnetrt_blk;

/* The most partial sums a run of n chunks holds at once (wherever it starts). */
static inline int pnetrt_tree_depth(int64_t n) {
    int d = 1;
    while (n > 1) {
        n = (n + 1) / 2;
        d++;
    }
    return 2 * d + 1;
}

static inline bool pnetrt_tree_siblings(pnetrt_blk a, pnetrt_blk b) {
    return a.n == b.n && a.lo % (2 * a.n) == 0 && b.lo == a.lo + a.n;
}

/* The stack that chunks [c0, c1), pushed in order, leave (sibling blocks added as soon as both are
 * complete); returns its size. out has room for pnetrt_tree_depth(c1 - c0) blocks; *most (may be
 * NULL) gets the deepest the stack was. */
static inline int pnetrt_tree_stack(int64_t c0, int64_t c1, pnetrt_blk *out, int *most) {
    int top = 0, deepest = 0;
    for (int64_t c = c0; c < c1; c++) {
        out[top++] = (pnetrt_blk){c, 1};
        if (top > deepest) deepest = top;
        while (top >= 2 && pnetrt_tree_siblings(out[top - 2], out[top - 1])) {
            out[top - 2].n *= 2;
            top--;
        }
    }
    if (most) *most = deepest;
    return top;
}

/* What the rank report needs to know of a network. */
typedef struct pnetrt_rank_facts {
    int64_t param_floats;       /* parameters (padded as laid out) */
    int64_t opt_floats;         /* optimizer state; 0 without training */
    int64_t infer_sample_bytes; /* inference activations per sample */
    int64_t train_sample_bytes; /* training arena per sample (values kept for backward, gradients) */
    int64_t chunk;              /* samples per gradient chunk */
    bool train;                 /* the network has a train block */
    bool fold;                  /* one segment (no batchnorm): the folded tree (gradtree.h) */
    bool stages;                /* the network has pipeline stages */
    /* Pipeline stages on ranks (inference): stage count, micro-batches per chunk, and per stage
     * the parameters its kernels read and the bytes it receives from the stage before it, per
     * sample and per micro-batch (values without a batch axis). NULL arrays: no stages. */
    int nstages, microbatches;
    const int64_t *stage_param_floats, *stage_recv_sample, *stage_recv_fixed;
    int64_t infer_fixed_bytes;  /* inference activations independent of the batch */
    /* Training one stage per rank (the network's stages train as a pipeline): per stage, the
     * training arena's bytes per sample it receives before a forward and before a backward; NULL:
     * its stages cannot (batchnorm), and training runs the ranks as replicas. */
    const int64_t *train_fwd_sample, *train_bwd_sample;
    bool one_f_one_b;
    bool replicas_only;         /* --rank-layout replicas: every rank runs every stage */
} pnetrt_rank_facts;

static inline void pnetrt_rank_bytes(double v, char *buf, size_t n) {
    const char *u[] = {"B", "KiB", "MiB", "GiB", "TiB"};
    int k = 0;
    while (v >= 1024 && k < 4) v /= 1024, k++;
    snprintf(buf, n, k ? "%.1f %s" : "%.0f %s", v, u[k]);
}

/* Inference with one pipeline stage per rank: K = R x S ranks, rank k runs stage k mod S of
 * replica pipeline k / S, on samples [B*r/R, B*(r+1)/R), and holds that stage's parameters and a
 * ring of 3 micro-batch slots (stages.c). */
static inline void pnetrt_rank_stage_report(FILE *f, const pnetrt_rank_facts *x, int K, int64_t B) {
    int S = x->nstages, R = K / S;
    char a[32], b[32], c[32];
    int64_t C = x->chunk > 0 ? x->chunk : 32, M = x->microbatches > 0 ? x->microbatches : 1, cap = (C + M - 1) / M;
    fprintf(f, "ranks: %d for inference, one pipeline stage per rank: %d replica pipeline%s x %d stages; rank k runs stage k "
               "mod %d of pipeline k / %d, in micro-batches of at most %lld samples (%lld per chunk of %lld)\n",
            K, R, R == 1 ? "" : "s", S, S, S, (long long)cap, (long long)M, (long long)C);
    for (int k = 0; k < K; k++) {
        int r = k / S, s = k % S;
        pnetrt_rank_bytes((double)x->stage_param_floats[s] * 4, a, sizeof a);
        pnetrt_rank_bytes(3.0 * (double)(x->infer_sample_bytes * cap + x->infer_fixed_bytes), b, sizeof b);
        fprintf(f, "  rank %d: stage %d of pipeline %d, samples [%lld, %lld) of a batch of %lld: parameters %s, activations %s (3 "
                   "micro-batch slots)", k, s, r, (long long)(B * r / R), (long long)(B * (r + 1) / R), (long long)B, a, b);
        if (s + 1 < S) {
            pnetrt_rank_bytes((double)(x->stage_recv_sample[s + 1] * cap + x->stage_recv_fixed[s + 1]), c, sizeof c);
            fprintf(f, "; sends rank %d %s per micro-batch", k + 1, c);
        }
        if (s > 0) {
            pnetrt_rank_bytes((double)(x->stage_recv_sample[s] * cap + x->stage_recv_fixed[s]), c, sizeof c);
            fprintf(f, "; receives %s per micro-batch from rank %d", c, k - 1);
        }
        fprintf(f, "\n");
    }
}

/* K ranks at a batch of B: the mapping, each rank's samples and memory, and the bytes of each
 * step's gradient reduction (a reduce-scatter of the folded tree's partial sums and an all-gather
 * of the sum; or an all-gather of one slot per chunk). With pipeline stages, inference runs a
 * stage per rank (above) unless replicas_only, and so do training and evaluation where the stages
 * train as a pipeline; else they run the ranks as replicas. */
static inline void pnetrt_rank_report(FILE *f, const pnetrt_rank_facts *x, int K, int64_t B) {
    char a[32], b[32], c[32];
    bool staged = x->stages && x->nstages > 1 && x->stage_param_floats && !x->replicas_only && K > 1;
    if (staged && K % x->nstages == 0) {
        pnetrt_rank_stage_report(f, x, K, B);
        if (!x->train) return;
        if (x->train_fwd_sample) {
            /* Training: the same ranks and stages, micro-batches of whole chunks. */
            int S = x->nstages, R = K / S;
            int64_t C = x->chunk > 0 ? x->chunk : 32, nch = (B + C - 1) / C;
            int64_t most = (nch + R - 1) / R, M = x->microbatches > 0 ? x->microbatches : 1;
            if (M > most) M = most;
            int64_t cap = M > 0 ? (most + M - 1) / M * C : C;
            fprintf(f, "training: the same ranks and stages (%s), %lld micro-batch%s of at most %lld samples per pipeline and step\n",
                    x->one_f_one_b ? "1f1b" : "gpipe", (long long)M, M == 1 ? "" : "es", (long long)cap);
            pnetrt_blk stack[128];
            for (int k = 0; k < K; k++) {
                int s = k % S, r = k / S;
                /* The rank holds its stage's elements alone: parameters, optimizer state, and
                 * partial sums of the gradient, which its stage's ranks reduce. */
                int64_t P = x->stage_param_floats[s];
                pnetrt_rank_bytes((double)P * 4 * (double)x->opt_floats / (double)(x->param_floats > 0 ? x->param_floats : 1), a,
                                  sizeof a);
                fprintf(f, "  rank %d: stage %d, optimizer state %s", k, s, a);
                if (s + 1 < S) {
                    pnetrt_rank_bytes((double)(x->train_fwd_sample[s + 1] * cap), a, sizeof a);
                    pnetrt_rank_bytes((double)(x->train_bwd_sample[s] * cap), b, sizeof b);
                    fprintf(f, "; per micro-batch sends rank %d %s of values and receives %s of their gradients", k + 1, a, b);
                }
                if (R > 1 && pnetrt_tree_depth(nch) <= 128) {
                    /* The stage's R ranks reduce its gradient along the tree, as R data-parallel ranks. */
                    int64_t total = 0, nb = 0;
                    for (int q = 0; q < R; q++) {
                        int64_t n = pnetrt_tree_stack(nch * q / R, nch * (q + 1) / R, stack, NULL);
                        total += n;
                        if (q == r) nb = n;
                    }
                    double sent = (double)nb * (double)P * (R - 1) / R + (double)P / R * (R - 1);
                    double got = (double)(total - nb) * (double)P / R + (double)P * (R - 1) / R;
                    pnetrt_rank_bytes(sent * 4, a, sizeof a);
                    pnetrt_rank_bytes(got * 4, b, sizeof b);
                    fprintf(f, "; a step's gradient reduction among stage %d's %d ranks sends %s and receives %s", s, R, a, b);
                }
                fprintf(f, "\n");
            }
        }
        if (x->train_fwd_sample) {
            /* Evaluation: the same ranks and stages, the forward alone. */
            fprintf(f, "evaluation: the same ranks and stages, their forward alone, in micro-batches of whole chunks\n");
            fprintf(f, "with --rank-layout replicas: ");
        } else {
            fprintf(f, "training: ");
        }
    } else if (staged) {
        fprintf(f, "ranks: %d do not fit %d pipeline stages for inference: run a multiple of %d ranks, or --rank-layout "
                   "replicas\n", K, x->nstages, x->nstages);
        if (!x->train) return;
        fprintf(f, "training: ");
    }
    fprintf(f, "ranks: %d, data parallel: every rank holds the whole network%s and computes its run of each batch's chunks\n",
            K, x->stages ? " and runs all its pipeline stages itself" : "");
    int64_t C = x->chunk > 0 ? x->chunk : 32, nch = (B + C - 1) / C, P = x->param_floats;
    pnetrt_rank_bytes((double)P * 4, a, sizeof a);
    pnetrt_rank_bytes((double)x->opt_floats * 4, b, sizeof b);
    fprintf(f, "  every rank: parameters %s%s%s\n", a, x->train ? ", optimizer state " : "", x->train ? b : "");
    fprintf(f, "  hand-offs between ranks: none (stages do not span ranks)\n");
    bool fold = x->fold && pnetrt_tree_depth(nch) <= 128;
    int64_t total = 0;
    pnetrt_blk stack[128];
    for (int r = 0; r < K; r++)
        total += fold ? pnetrt_tree_stack(nch * r / K, nch * (r + 1) / K, stack, NULL) : nch * (r + 1) / K - nch * r / K;
    for (int r = 0; r < K; r++) {
        int64_t c0 = nch * r / K, c1 = nch * (r + 1) / K;
        int64_t s0 = c0 * C, s1 = c1 * C < B ? c1 * C : B;
        pnetrt_rank_bytes((double)(s1 - s0) * (double)x->infer_sample_bytes, a, sizeof a);
        fprintf(f, "  rank %d: samples [%lld, %lld) of a batch of %lld: inference activations %s", r, (long long)s0,
                (long long)s1, (long long)B, a);
        if (x->train) {
            int64_t nb = fold ? pnetrt_tree_stack(c0, c1, stack, NULL) : c1 - c0;
            double sent = fold ? (double)nb * (double)P * (K - 1) / K + (double)P / K * (K - 1) : (double)nb * (double)P * (K - 1);
            double got = fold ? (double)(total - nb) * (double)P / K + (double)P * (K - 1) / K : (double)(total - nb) * (double)P;
            pnetrt_rank_bytes((double)(s1 - s0 < C ? s1 - s0 : C) * (double)x->train_sample_bytes, a, sizeof a);
            pnetrt_rank_bytes(sent * 4, b, sizeof b);
            pnetrt_rank_bytes(got * 4, c, sizeof c);
            fprintf(f, ", training arena %s per chunk in flight; a step's gradient reduction sends %s and receives %s (%s)", a, b,
                    c, fold ? "the folded tree's partial sums" : "one slot per chunk");
        }
        fprintf(f, "\n");
    }
    if (x->train && !x->stages && nch >= K && K <= 256)
        fprintf(f, "  training: these runs for ranks of one speed; each step cuts them by the ranks' measured speed, the same "
                   "bits, at most twice as long (docs/distributed.md)\n");
}

#endif
