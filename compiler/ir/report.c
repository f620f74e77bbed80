/* The schedule report: per pipeline stage its layers, FLOPs, parameter and activation bytes and
 * modelled cost; the balance; the predicted pipeline bubble; the per-replica batch. The cost
 * model is shared with --auto-partition. */
#include "report.h"
#include "../support/util.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

const pn_cost_rate pn_cost_rates[PN_COST_NKINDS] = {
#define PN_COST_KIND(id, name, flops, bytes, call, param_bytes, cached, gather, gather_rows)                             \
    {name, flops, bytes, call, param_bytes, cached, gather, gather_rows},
#include "cost_table.def"
#undef PN_COST_KIND
};

int pn_node_cost_kind(const pn_node *n) {
    switch (n->op) {
    case PN_OP_INPUT:
    case PN_OP_CONST: return -1;
    case PN_OP_CONV2D: return PN_COST_CONV;
    case PN_OP_DENSE:
    case PN_OP_MATMUL:
    case PN_OP_EMBEDDING: return PN_COST_DENSE;
    case PN_OP_MAXPOOL2D:
    case PN_OP_AVGPOOL2D:
    case PN_OP_GLOBAL_AVGPOOL: return PN_COST_POOL;
    case PN_OP_BATCHNORM:
    case PN_OP_LAYERNORM:
    case PN_OP_SOFTMAX:
    case PN_OP_LOG_SOFTMAX:
    case PN_OP_CAUSAL_SOFTMAX: return PN_COST_NORM;
    default: return pn_ops[n->op].flags & PN_OPF_VIEW ? -1 : PN_COST_ELTWISE;
    }
}

/* Readers of node i's value at inference (training-only nodes aside). */
static int inference_uses(const pn_graph *g, int i) {
    int uses = 0;
    for (int j = 0; j < g->nnodes; j++)
        for (int k = 0; k < g->nodes[j].ninputs; k++) uses += g->nodes[j].in[k] == i && !(g->nodes[j].flags & PN_NODE_TRAIN);
    return uses;
}

/* The tensor that node e would apply to as an epilogue, as pass_fuse sees it: an elementwise op of
 * one tensor, or `+ - * /` with a scalar constant of a tensor of its rank; -1 otherwise. */
static int epilogue_source(const pn_graph *g, const pn_node *e) {
    if (!(pn_ops[e->op].flags & PN_OPF_ELTWISE)) return -1;
    if (e->ninputs == 1) return e->in[0];
    if (e->ninputs != 2) return -1;
    int k = g->nodes[e->in[0]].op == PN_OP_CONST && g->nodes[e->in[0]].shape.rank == 0   ? 0
            : g->nodes[e->in[1]].op == PN_OP_CONST && g->nodes[e->in[1]].shape.rank == 0 ? 1
                                                                                          : -1;
    if (k < 0 || g->nodes[e->in[1 - k]].shape.rank != e->shape.rank) return -1;
    return e->in[1 - k];
}

/* Whether pass_fuse will run node i in the epilogue of its input's kernel (an activation, or an
 * op with a scalar constant, after a dense, conv2d or batchnorm used nowhere else): then it costs
 * nothing of its own. The same test as the pass, on the graph before it runs. */
static bool fused_static(const pn_graph *g, int i) {
    int src = epilogue_source(g, &g->nodes[i]);
    if (src < 0) return false;
    const pn_node *e = &g->nodes[i], *s = &g->nodes[src];
    if (!(pn_ops[s->op].flags & (PN_OPF_EPILOGUE | PN_OPF_ELTWISE)) || (s->flags & PN_NODE_OUTPUT) || s->stage != e->stage ||
        s->shard > 1 || s->dtype != PN_F32)
        return false;
    return inference_uses(g, src) == 1;
}

/* Whether pass_fold_batchnorm will fold batchnorm i into the weights of the conv2d or dense before
 * it (used nowhere else, in its stage; dense of rank 2): then it costs nothing at inference. */
static bool folds_static(const pn_graph *g, int i) {
    const pn_node *bn = &g->nodes[i];
    if (bn->op != PN_OP_BATCHNORM || bn->ninputs < 1) return false;
    const pn_node *s = &g->nodes[bn->in[0]];
    if ((s->op != PN_OP_CONV2D && s->op != PN_OP_DENSE) || (s->flags & PN_NODE_OUTPUT) || s->stage != bn->stage ||
        s->shard > 1 || (s->op == PN_OP_DENSE && s->shape.rank != 2))
        return false;
    return inference_uses(g, bn->in[0]) == 1;
}

/* The node before i in a kernel's chain (a folded batchnorm or a fused epilogue's input), or -1. */
static int chain_prev(const pn_graph *g, int i) {
    if (folds_static(g, i)) return g->nodes[i].in[0];
    return fused_static(g, i) ? epilogue_source(g, &g->nodes[i]) : -1;
}

/* Whether pass_fuse_pool will compute maxpool2d i inside the kernel of the conv2d (*conv) whose
 * epilogue chain ends in the pool's input: then the pool costs nothing of its own, and the conv
 * stores the pooled map. The same test as the pass, on the graph before the passes run. */
static bool pool_fused_static(const pn_graph *g, int i, int *conv) {
    const pn_node *pl = &g->nodes[i];
    if (pl->op != PN_OP_MAXPOOL2D || pl->ninputs != 1 || pl->shard > 1 || pl->dtype != PN_F32) return false;
    int t = pl->in[0], h = t;
    for (int prev; (prev = chain_prev(g, h)) >= 0;) h = prev;
    const pn_node *tn = &g->nodes[t], *cv = &g->nodes[h];
    if (!pn_pool_tiles(g, h, i) || (tn->flags & PN_NODE_OUTPUT) || cv->stage != pl->stage || cv->shard > 1) return false;
    *conv = h;
    return inference_uses(g, t) == 1;
}

/* The maxpool2d that conv2d node c computes in its kernel (pool_fused_static), or -1: the reader
 * of its epilogue chain's end. */
static int pool_of_conv(const pn_graph *g, int c) {
    if (g->nodes[c].op != PN_OP_CONV2D) return -1;
    for (int t = c;;) {
        int next = -1;
        for (int j = t + 1; j < g->nnodes && next < 0; j++)
            for (int k = 0; k < g->nodes[j].ninputs; k++)
                if (g->nodes[j].in[k] == t && !(g->nodes[j].flags & PN_NODE_TRAIN)) next = j;
        if (next < 0) return -1;
        if (chain_prev(g, next) == t) {
            t = next;
            continue;
        }
        int head;
        return pool_fused_static(g, next, &head) && head == c ? next : -1;
    }
}

/* The profile's layer named like n, or -1. */
static int profile_layer(const pn_profile *p, const pn_node *n) {
    for (int k = 0; k < p->nlayers; k++)
        if (strcmp(p->names[k], n->name) == 0) return k;
    return -1;
}

/* Node n's seconds per sample (*var) and seconds per kernel call whatever its samples (*call). */
static void node_cost_parts(const pn_graph *g, const pn_node *n, double *var, double *call) {
    *var = *call = 0;
    if (g->profile) {
        int k = profile_layer(g->profile, n);
        if (k >= 0) { /* forward_s at the profile's samples per call, of which call_s per call */
            double c = g->profile->call_s[k], n = (double)g->profile->samples;
            *call = c < g->profile->forward_s[k] * n ? c : g->profile->forward_s[k] * n;
            *var = g->profile->forward_s[k] - *call / n;
            return;
        }
    }
    int kind = pn_node_cost_kind(n), i = (int)(n - g->nodes), head;
    if (kind < 0 || fused_static(g, i) || folds_static(g, i) || pool_fused_static(g, i, &head)) return;
    const pn_cost_rate *r = &pn_cost_rates[kind];
    double flops = (double)pn_node_flops(g, n);
    if (flops < 0) flops = 0;
    int pool = pool_of_conv(g, i); /* then the conv stores the pooled map */
    double bytes = 4.0 * (double)pn_shape_sample_elems(pool >= 0 ? &g->nodes[pool].shape : &n->shape);
    for (int k = 0; k < n->ninputs; k++)
        if (g->nodes[n->in[k]].op != PN_OP_CONST) bytes += 4.0 * (double)pn_shape_sample_elems(&g->nodes[n->in[k]].shape);
    *var = flops / r->flops_per_s + bytes / r->bytes_per_s;
    if (n->op == PN_OP_CONV2D && pool < 0 && pn_conv_gathers(n, PN_COST_MR)) {
        /* The panel: a row of output pixels for each input channel and tap, gathered (zero where
         * the window leaves the image) before the GEMM reads it. */
        const pn_shape *xs = &g->nodes[n->in[0]].shape;
        double rows = (double)xs->d[1] * (double)(n->ia[PN_CONV_KH] * n->ia[PN_CONV_KW]) * (double)n->shape.d[2];
        *var += rows * (double)n->shape.d[3] / r->gather_per_s + rows / r->gather_rows_per_s;
    }
    /* Every call reads the parameters again whatever its samples, from memory where they outgrow
     * the cache: a pipeline's micro-batch of m samples too, which is what makes many small
     * micro-batches of a wide layer slow. */
    double params = 4.0 * (double)pn_node_param_count(n);
    *call = r->call_s + (params > r->param_cached ? params - r->param_cached : 0) / r->param_bytes_per_s;
}

/* Whether node n runs a kernel of its own. */
static bool node_kernel(const pn_graph *g, const pn_node *n) {
    if (g->profile) {
        int k = profile_layer(g->profile, n);
        if (k >= 0) return g->profile->kernel[k];
    }
    int head;
    int i = (int)(n - g->nodes);
    return pn_node_cost_kind(n) >= 0 && !fused_static(g, i) && !folds_static(g, i) && !pool_fused_static(g, i, &head);
}

long long pn_report_batch(const pn_graph *g) {
    if (g->profile && g->profile->batch > 0) return g->profile->batch;
    if (g->train.present && g->train.batch > 0) return (long long)g->train.batch;
    return PN_COST_BATCH;
}

long long pn_report_chunk(const pn_graph *g) {
    if (g->profile && g->profile->samples > 0) return g->profile->samples;
    long long B = pn_report_batch(g);
    return g->plan.chunk > 0 && g->plan.chunk < B ? (long long)g->plan.chunk : B;
}

double pn_node_cost(const pn_graph *g, const pn_node *n) {
    double var, call;
    node_cost_parts(g, n, &var, &call);
    return var + call / (double)pn_report_chunk(g);
}

static int cmp_double(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

/* The next of PN_PROFILE_SPREAD equally likely factors (splitmix64). */
static int spread_draw(uint64_t *state) {
    uint64_t z = (*state += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    z ^= z >> 31;
    return (int)(z % PN_PROFILE_SPREAD);
}

/* Seconds stage s takes for micro-batch q: its samples as the runtime slices a call of B samples
 * (chunks of C, the last one what is left; chunk samples cn split into M slices of cn * (k + 1) / M
 * - cn * k / M), and a micro-batch's per-call cost, or where the profile timed the two sizes that a
 * pipeline slices into, on the lines through those and the chunk; an empty slice runs nothing, and
 * no slice less. */
static double mb_work(const pn_stage_stats *st, long long B, long long C, int M, long long q, uint64_t *rng) {
    long long c0 = q / M * C, cn = B - c0 < C ? B - c0 : C, k = q % M;
    long long n = cn * (k + 1) / M - cn * k / M;
    double w = st->cost * (double)n + st->call;
    /* A call part below zero is the line's between the profile's sizes; below the smaller, those
     * layers cost their samples' share of its time. */
    if (st->neg_call < 0 && n < st->neg_from) w -= st->neg_call * (1 - (double)n / (double)st->neg_from);
    const long long *a = st->micro_n;
    if (a[0] > 0 && (n <= a[1] || C <= a[1])) { /* on the line through the two measured sizes */
        w = st->micro_t[0] + (double)(n - a[0]) * (st->micro_t[1] - st->micro_t[0]) / (double)(a[1] - a[0]);
        double share = st->micro_t[0] * (double)n / (double)a[0]; /* below the smaller, not under its share */
        if (n < a[0] && w < share) w = share;
    } else if (a[0] > 0) /* between the larger and the chunk */
        w = st->micro_t[1] +
            (double)(n - a[1]) * (st->cost * (double)C + st->call - st->micro_t[1]) / (double)(C - a[1]);
    if (M > 1) w += st->slot * (double)n;
    if (rng && st->spread[0] > 0) w *= st->spread[spread_draw(rng)];
    return n > 0 && w > 0 ? w : 0;
}

/* Whether the profile was taken of g's stages: every node with a kernel in it, on the same stage. */
static bool profile_partition(const pn_graph *g) {
    const pn_profile *p = g->profile;
    if (!p || p->stage_spreads != g->nstages) return false;
    for (int i = 0; i < g->nnodes; i++) {
        const pn_node *n = &g->nodes[i];
        if (n->flags & PN_NODE_TRAIN) continue;
        int k = profile_layer(p, n);
        if (k < 0 ? pn_node_cost_kind(n) >= 0 : p->kernel[k] && p->stage[k] != n->stage) return false;
    }
    return true;
}

/* How stage s's micro-batch time spreads: the profile's own for the stage, when it was taken of
 * these stages (own: its passes while the neighbouring stage ran at once); else from its layers' spreads
 * (each layer's call drawn on its own, weighted by its time at the profile's second size; the rest
 * of the stage at its mean): 1024 draws, sorted and averaged in PN_PROFILE_SPREAD equal groups
 * into st->spread. Zeros when no layer of the stage has a spread. */
static void stage_spread(const pn_graph *g, int s, bool own, pn_stage_stats *st) {
    enum { DRAWS = 1024 };
    const pn_profile *p = g->profile;
    for (int i = 0; i < PN_PROFILE_SPREAD; i++) st->spread[i] = 0;
    if (!p) return;
    if (own) {
        for (int i = 0; i < PN_PROFILE_SPREAD; i++) st->spread[i] = p->stage_spread[(size_t)s * PN_PROFILE_SPREAD + i];
        return;
    }
    double n1 = (double)(p->small > 0 ? p->small : p->samples), spread_w = 0;
    int *layer = pn_xcalloc((size_t)g->nnodes + 1, sizeof *layer);
    double *w = pn_xcalloc((size_t)g->nnodes + 1, sizeof *w);
    int m = 0;
    for (int i = 0; i < g->nnodes; i++) {
        const pn_node *n = &g->nodes[i];
        int k = profile_layer(p, n);
        if ((n->flags & PN_NODE_TRAIN) || n->stage != s || k < 0 || p->spread[(size_t)k * PN_PROFILE_SPREAD] <= 0)
            continue;
        double var, call;
        node_cost_parts(g, n, &var, &call);
        double t = var * n1 + call;
        if (t <= 0) continue;
        layer[m] = k;
        w[m++] = t;
        spread_w += t;
    }
    double total = st->cost * n1 + st->call, rest = total > spread_w ? total - spread_w : 0;
    if (m > 0 && spread_w > 0) {
        double *x = pn_xcalloc(DRAWS, sizeof *x);
        uint64_t rng = 0x5eedull + (uint64_t)s;
        for (int d = 0; d < DRAWS; d++) {
            double t = rest;
            for (int j = 0; j < m; j++) t += w[j] * p->spread[(size_t)layer[j] * PN_PROFILE_SPREAD + spread_draw(&rng)];
            x[d] = t / (spread_w + rest);
        }
        qsort(x, DRAWS, sizeof *x, cmp_double);
        double mean = 0;
        for (int d = 0; d < DRAWS; d++) mean += x[d] / DRAWS;
        for (int i = 0; i < PN_PROFILE_SPREAD; i++) {
            double sum = 0;
            for (int d = i * DRAWS / PN_PROFILE_SPREAD; d < (i + 1) * DRAWS / PN_PROFILE_SPREAD; d++) sum += x[d];
            st->spread[i] = sum / (DRAWS / PN_PROFILE_SPREAD) / mean; /* so that they average 1 */
        }
        free(x);
    }
    free(layer);
    free(w);
}

/* One call of the pipeline, each micro-batch's time drawn from its stage's spread with rng (NULL:
 * the mean). Its wall seconds; its bubble into *bubble. */
static double one_call(const pn_stage_stats *st, int S, long long B, long long C, int M, uint64_t *rng,
                       double *bubble) {
    long long Q = (B + C - 1) / C * M; /* micro-batches streamed: M per chunk */
    double busy = 0;
    double *end = pn_xcalloc((size_t)(S > 0 ? S : 1), sizeof *end); /* each stage's last finish */
    for (long long q = 0; q < Q; q++)
        for (int s = 0; s < S; s++) {
            double start = end[s];
            /* Waiting for the stage before costs the hand-off's latency on top. */
            if (s > 0 && end[s - 1] > start) start = end[s - 1] + st[s].wait;
            double work = mb_work(&st[s], B, C, M, q, rng);
            end[s] = start + work;
            busy += work;
        }
    double wall = S > 0 ? end[S - 1] : 0;
    free(end);
    *bubble = S > 0 && wall > 0 ? 1.0 - busy / (S * wall) : 0;
    return wall;
}

/* one_call with fewer cores than stages. */
static double one_call_on(const pn_stage_stats *st, int S, long long B, long long C, int M, int cores, uint64_t *rng,
                          double *bubble) {
    long long Q = (B + C - 1) / C * M;
    double busy = 0, t = 0;
    /* Per stage: micro-batches done, the end of the last one, whether one runs and until when; and
     * the end of every micro-batch of the stage before (up[s * Q + q]: stage s - 1's q). */
    long long *done = pn_xcalloc((size_t)S, sizeof *done);
    double *last = pn_xcalloc((size_t)S, sizeof *last), *until = pn_xcalloc((size_t)S, sizeof *until);
    bool *running = pn_xcalloc((size_t)S, sizeof *running);
    double *up = pn_xcalloc((size_t)S * (size_t)Q, sizeof *up);
    int free_cores = cores;
    while (done[S - 1] < Q) {
        /* When each idle stage can start its next micro-batch (INFINITY: not yet known). */
        double next = INFINITY;
        for (;;) {
            int pick = -1;
            double best = INFINITY;
            for (int s = 0; s < S; s++) {
                if (running[s] || done[s] >= Q || (s > 0 && done[s - 1] <= done[s])) continue;
                double r = last[s];
                if (s > 0 && up[s * Q + done[s]] > r) r = up[s * Q + done[s]] + st[s].wait;
                if (r <= t && free_cores > 0 && r < best) best = r, pick = s;
                if (r > t && r < next) next = r;
            }
            if (pick < 0) break;
            double work = mb_work(&st[pick], B, C, M, done[pick], rng);
            running[pick] = true;
            until[pick] = t + work;
            busy += work;
            free_cores--;
        }
        for (int s = 0; s < S; s++)
            if (running[s] && until[s] < next) next = until[s];
        if (!isfinite(next)) break; /* cannot happen: something runs or becomes ready */
        t = next;
        for (int s = 0; s < S; s++)
            if (running[s] && until[s] <= t) {
                running[s] = false;
                free_cores++;
                last[s] = until[s];
                if (s + 1 < S) up[(s + 1) * Q + done[s]] = until[s];
                done[s]++;
            }
    }
    double wall = last[S - 1];
    free(done);
    free(last);
    free(until);
    free(running);
    free(up);
    *bubble = wall > 0 ? 1.0 - busy / (S * wall) : 0;
    return wall;
}

/* With a spread, PN_SPREAD_CALLS calls, each micro-batch's time drawn (the same seeds for every M,
 * so that counts compare on like luck): seconds per sample of the mean call, and the median
 * call's bubble, as bench measures it. Without, the one call at the mean times. */
double pn_pipeline_time_on(const pn_stage_stats *st, int S, long long B, long long C, int M, int cores,
                           double *bubble) {
    if (C < 1 || C > B) C = B;
    bool spread = false;
    for (int s = 0; s < S; s++) spread |= st[s].spread[0] > 0;
    int calls = spread ? PN_SPREAD_CALLS : 1;
    double wall = 0, bubbles[PN_SPREAD_CALLS];
    for (int r = 0; r < calls; r++) {
        uint64_t seed = 0x9e3779b97f4a7c15ull * (uint64_t)(r + 1), *rng = spread ? &seed : NULL;
        wall += cores >= 1 && cores < S ? one_call_on(st, S, B, C, M, cores, rng, &bubbles[r])
                                        : one_call(st, S, B, C, M, rng, &bubbles[r]);
    }
    if (bubble) {
        qsort(bubbles, (size_t)calls, sizeof bubbles[0], cmp_double);
        *bubble = calls % 2 ? bubbles[calls / 2] : (bubbles[calls / 2 - 1] + bubbles[calls / 2]) / 2;
    }
    return B > 0 ? wall / calls / (double)B : 0;
}

double pn_pipeline_time(const pn_stage_stats *st, int S, long long B, long long C, int M, double *bubble) {
    return pn_pipeline_time_on(st, S, B, C, M, 0, bubble);
}

int pn_best_microbatches_on(const pn_stage_stats *st, int S, long long B, long long C, int cores) {
    if (C < 1 || C > B) C = B;
    int top = C < PN_MAX_AUTO_MICROBATCHES ? (int)C : PN_MAX_AUTO_MICROBATCHES, best = 1;
    double least = pn_pipeline_time_on(st, S, B, C, 1, cores, NULL);
    for (int M = 2; M <= top; M++) {
        double t = pn_pipeline_time_on(st, S, B, C, M, cores, NULL);
        if (t < least) least = t;
    }
    for (int M = 1; M <= top; M++)
        if (pn_pipeline_time_on(st, S, B, C, M, cores, NULL) <= least * 1.01) return M;
    return best;
}

int pn_best_microbatches(const pn_stage_stats *st, int S, long long B, long long C) {
    return pn_best_microbatches_on(st, S, B, C, 0);
}

int pn_report_cores(const pn_graph *g, int S) {
    int cores = g->cores > 0 ? g->cores : g->profile ? g->profile->cpus : 0;
    return cores > 0 && cores < S ? cores : 0;
}

/* FLOPs in powers of 1000 (KFLOP, MFLOP); bytes in powers of 1024 (KiB, MiB), as `./net info`
 * prints them beside this report. */
static void human(double v, const char *unit, char *buf, size_t n) {
    bool bytes = strcmp(unit, "B") == 0;
    const char *pre[] = {"", "K", "M", "G", "T"}, *bin[] = {"", "Ki", "Mi", "Gi", "Ti"};
    double step = bytes ? 1024 : 1000;
    int k = 0;
    while (v >= step && k < 4) {
        v /= step;
        k++;
    }
    snprintf(buf, n, k ? "%.1f %s%s" : "%.0f %s%s", v, bytes ? bin[k] : pre[k], unit);
}

double pn_report_xfer(const pn_graph *g) {
    return g->profile && g->profile->xfer_byte_s >= 0 ? g->profile->xfer_byte_s : PN_COST_XFER;
}

double pn_report_stats(const pn_graph *g, pn_stage_stats *st, int max) {
    int S = g->nstages < max ? g->nstages : max;
    for (int s = 0; s < S; s++) st[s] = (pn_stage_stats){0};
    for (int i = 0; i < g->nnodes; i++) {
        const pn_node *n = &g->nodes[i];
        if ((n->flags & PN_NODE_TRAIN) || n->stage >= S) continue;
        pn_stage_stats *x = &st[n->stage];
        x->layers += n->op != PN_OP_INPUT;
        x->flops += (double)(pn_node_flops(g, n) > 0 ? pn_node_flops(g, n) : 0);
        x->param_bytes += 4.0 * (double)pn_node_param_count(n);
        x->act_bytes += 4.0 * (double)pn_shape_sample_elems(&n->shape);
        double var, call;
        node_cost_parts(g, n, &var, &call);
        x->cost += var;
        x->call += call;
        x->kernels += node_kernel(g, n);
        if (call < 0 && g->profile) {
            x->neg_call += call;
            x->neg_from = g->profile->small > 0 ? g->profile->small : g->profile->samples;
        }
        /* At the two sizes a pipeline slices into, what the profile measured there. */
        const pn_profile *p = g->profile;
        int k = p && p->micro_samples[0] > 0 ? profile_layer(p, n) : -1;
        for (int m = 0; p && p->micro_samples[0] > 0 && m < 2; m++) {
            x->micro_n[m] = p->micro_samples[m];
            bool measured = k >= 0 && (p->micro[2 * k] > 0 || p->micro[2 * k + 1] > 0);
            x->micro_t[m] += measured ? p->micro[2 * k + m] : var * (double)p->micro_samples[m] + call;
        }
    }
    /* A stage reads the values of earlier stages from the caches of the cores that wrote them: each
     * such value once per stage, at what a byte from another core costs (measured by a profile). */
    for (int s = 1; s < S; s++)
        for (int i = 0; i < g->nnodes; i++) {
            const pn_node *v = &g->nodes[i];
            if ((v->flags & PN_NODE_TRAIN) || v->stage >= s || v->op == PN_OP_INPUT || v->op == PN_OP_CONST) continue;
            bool read = false;
            for (int j = i + 1; j < g->nnodes && !read; j++)
                for (int k = 0; k < g->nodes[j].ninputs && !read; k++)
                    read = g->nodes[j].in[k] == i && g->nodes[j].stage == s && !(g->nodes[j].flags & PN_NODE_TRAIN);
            if (read) st[s].in_bytes += 4.0 * (double)pn_shape_sample_elems(&v->shape);
        }
    /* (Not to the micro-batches that a profile timed in the pipeline's slots: there a stage already
     * reads its inputs where its caches no longer hold them. resnet_small at 09:00: the profile's
     * stage 1 at 1.058 times stage 0 at 2 and 3 samples, 1.072 with the cross-core term, and the
     * pipeline's trace 1.059 and 1.067.) */
    for (int s = 1; s < S; s++) st[s].cost += st[s].in_bytes * pn_report_xfer(g);
    /* A micro-batch also pays a barrier after each kernel (on a team; measured by a profile), and a
     * stage that waits for the one before starts a hand-off's latency after it finishes. */
    double handoff = g->profile && g->profile->handoff_s > 0 ? g->profile->handoff_s : PN_COST_HANDOFF;
    bool own = profile_partition(g); /* the profile's stage spreads are of these stages */
    for (int s = 0; s < S; s++) {
        st[s].call += g->profile ? g->profile->barrier_s * st[s].kernels : 0;
        for (int m = 0; m < 2 && st[s].micro_n[0] > 0; m++) st[s].micro_t[m] += g->profile->barrier_s * st[s].kernels;
        /* A pipeline's micro-batches write their activations into slots the caches no longer hold,
         * which a profile's micro-batch times include. */
        st[s].slot = S > 1 && st[s].micro_n[0] == 0 ? st[s].act_bytes * PN_COST_SLOT_BYTE : 0;
        st[s].wait = s > 0 ? handoff : 0;
        stage_spread(g, s, own, &st[s]);
    }
    double mean = 0, worst = 0, C = (double)pn_report_chunk(g);
    for (int s = 0; s < S; s++) {
        double c = st[s].cost + st[s].call / C;
        mean += c / S;
        if (c > worst) worst = c;
    }
    return mean > 0 ? worst / mean : 1.0;
}

void pn_graph_report(const pn_graph *g, FILE *out) {
    int S = g->nstages, M = g->microbatches, R = g->replicas;
    pn_stage_stats *st = pn_xcalloc((size_t)S, sizeof *st);
    double balance = pn_report_stats(g, st, S);
    char a[32], b[32], c[32];
    fprintf(out, "schedule of %s: %d stage%s, %d replica%s, %d micro-batch%s (%s)\n", g->name, S, S == 1 ? "" : "s", R,
            R == 1 ? "" : "s", M, M == 1 ? "" : "es", g->schedule == PN_SCHED_1F1B ? "1f1b" : "gpipe");
    long long C = pn_report_chunk(g), B = pn_report_batch(g);
    const pn_profile *p = g->profile;
    if (p)
        fprintf(out, "  costs: measured by bench --profile (%s: %s, %d thread%s, %lld samples per call)\n", p->path, p->cpu,
                p->threads, p->threads == 1 ? "" : "s", p->samples);
    else
        fprintf(out, "  costs: modelled per op kind (compiler/ir/cost_table.def), at %lld samples per call\n", C);
    double total = 0;
    for (int s = 0; s < S; s++) total += st[s].cost + st[s].call / (double)C;
    for (int s = 0; s < S; s++) {
        human(st[s].flops, "FLOP", a, sizeof a);
        human(st[s].param_bytes, "B", b, sizeof b);
        human(st[s].act_bytes, "B", c, sizeof c);
        double cost = st[s].cost + st[s].call / (double)C;
        fprintf(out, "  stage %d: %d layer%s, %s per sample, parameters %s, activations %s per sample, %s %.3g us per sample (%.0f%%)\n",
                s, st[s].layers, st[s].layers == 1 ? "" : "s", a, b, c, p ? "measured" : "modelled", cost * 1e6,
                total > 0 ? 100 * cost / total : 0);
        fprintf(out, "    layers:");
        int shown = 0;
        for (int i = 0; i < g->nnodes; i++) {
            const pn_node *n = &g->nodes[i];
            if (n->stage != s || (n->flags & PN_NODE_TRAIN) || n->op == PN_OP_INPUT) continue;
            fprintf(out, "%s %s", shown ? "," : "", n->name);
            if (n->shard > 1) fprintf(out, " (features split %d ways)", n->shard);
            shown++;
        }
        fprintf(out, "%s\n", shown ? "" : " (none)");
    }
    fprintf(out, "  balance: %.2f (slowest stage over mean)\n", balance);
    if (balance > PN_BALANCE_WARN)
        fprintf(out, "  warning: stages are unbalanced: the slowest costs %.2fx the mean (more than %.1fx)\n", balance,
                PN_BALANCE_WARN);
    fprintf(out, "  predicted bubble: %.1f%% = (S-1)/(M+S-1) with S = %d, M = %d\n", 100.0 * (S - 1) / (M + S - 1), S, M);
    if (S > 1) {
        /* The stages as costed: a micro-batch of C/M samples takes each stage cost * C/M plus its
         * per-call share; the pipeline fills, streams at the slowest stage's pace, and drains. */
        double bubble, worst = 0, sum = 0, m = (double)C / M;
        /* On the profiled machine's CPUs when it has fewer than stages: the stages take turns. */
        int cores = pn_report_cores(g, S);
        double t = pn_pipeline_time_on(st, S, B, C, M, cores, &bubble);
        for (int s = 0; s < S; s++) {
            double ts = st[s].cost * m + st[s].call;
            sum += ts;
            if (ts > worst) worst = ts;
        }
        int best = pn_best_microbatches_on(st, S, B, C, cores);
        fprintf(out, "  predicted with these costs for a batch of %lld in chunks of %lld: slowest stage %.0f%% of the stages' "
                     "time, bubble %.1f%%, %.3g us per sample",
                B, C, sum > 0 ? 100 * worst / sum : 0, 100 * bubble, t * 1e6);
        if (best != M) fprintf(out, " (M = %d: %.3g us)", best, pn_pipeline_time_on(st, S, B, C, best, cores, NULL) * 1e6);
        fprintf(out, "\n");
        if (cores)
            fprintf(out, "  note: %s %d CPU%s for %d stages: stages will take turns on the cores, "
                         "as the prediction assumes (at most %d micro-batch%s at once, each at a core's speed)\n",
                    g->cores > 0 && g->cores_from ? g->cores_from : "the profiled machine has", cores, cores == 1 ? "" : "s", S,
                    cores, cores == 1 ? "" : "es");
    }
    if (p && p->has_training && p->train_nstages == S && S > 1) {
        /* Measured training: a step's forward and backward per stage, and its update. */
        double sum = 0, worst = 0;
        fprintf(out, "  training, measured (%d threads, batch %lld):", p->train_threads, p->train_batch);
        for (int s = 0; s < S; s++) {
            double t = p->train_forward_s[s] + p->train_backward_s[s];
            fprintf(out, "%s stage %d forward %.3g + backward %.3g us", s ? "," : "", s, p->train_forward_s[s] * 1e6,
                    p->train_backward_s[s] * 1e6);
            sum += t;
            worst = t > worst ? t : worst;
        }
        fprintf(out, " per sample; the slowest stage %.0f%% of the stages' time; update %.3g us per sample\n",
                sum > 0 ? 100 * worst / sum : 0, p->train_update_s * 1e6);
    } else if (p && p->has_training) {
        fprintf(out, "  training, measured (%d thread%s, batch %lld, not pipelined): forward and backward %.3g us, update %.3g us per sample\n",
                p->train_threads, p->train_threads == 1 ? "" : "s", p->train_batch, p->train_step_s * 1e6,
                p->train_update_s * 1e6);
    }
    if (p && p->train_layers && S > 1) {
        /* The steps' layers summed by this network's stages, however the profiled one ran. */
        double f[S], b[S], sum = 0, worst = 0;
        for (int s = 0; s < S; s++) f[s] = b[s] = 0;
        for (int i = 0; i < g->nnodes; i++) {
            int k = profile_layer(p, &g->nodes[i]), s = g->nodes[i].stage;
            if (k < 0 || s < 0 || s >= S) continue;
            f[s] += p->train_layer_fwd[k];
            b[s] += p->train_layer_bwd[k];
        }
        for (int s = 0; s < S; s++) {
            sum += f[s] + b[s];
            worst = f[s] + b[s] > worst ? f[s] + b[s] : worst;
        }
        if (sum > 0) { /* some layer of this network was timed */
            fprintf(out, "  training by layer, measured:");
            for (int s = 0; s < S; s++)
                fprintf(out, "%s stage %d forward %.3g + backward %.3g us", s ? "," : "", s, f[s] * 1e6, b[s] * 1e6);
            fprintf(out, " per sample; the slowest stage %.0f%% of the stages' time\n", 100 * worst / sum);
        }
    }
    if (g->train.present)
        fprintf(out, "  per-replica batch: %lld (training batch %lld over %d replica%s)\n",
                (long long)((g->train.batch + R - 1) / R), (long long)g->train.batch, R, R == 1 ? "" : "s");
    else if (R == 1)
        fprintf(out, "  per-replica batch: the whole run-time batch (one replica)\n");
    else
        fprintf(out, "  per-replica batch: B/%d of a run-time batch B (the first B mod %d replicas take one more)\n", R, R);
    free(st);
}

char *pn_graph_report_text(const pn_graph *g) {
    char *text = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&text, &len);
    if (!f) return pn_xstrdup("");
    pn_graph_report(g, f);
    if (fclose(f) != 0 || !text) {
        free(text);
        return pn_xstrdup("");
    }
    return text;
}
