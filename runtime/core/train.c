/* Training in libpnetrt: runs the generated step functions (pnetrt_abi.h, pnetrt_train_desc) on
 * the model's threads and keeps the optimizer state; checkpoints are saved and loaded in ckpt.c.
 *
 * A step splits the batch into chunks of train->chunk samples. Replica groups of threads take
 * contiguous runs of chunks; within a group, each kernel is split over the group's threads.
 * Chunk k's parameter gradients land in slot k, and the update sums the slots by a fixed tree,
 * so the trained weights are bitwise identical for any number of threads and replicas. */
#include "comm.h"
#include "gradtree.h"
#include "io.h"
#include "model.h"
#include "train_impl.h"
#include "trace.h"

#include "transport.h"

#include <math.h>
#include <stdatomic.h>
#include <stdint.h>
#include <omp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static void *zalloc(size_t bytes) {
    void *p = NULL;
    if (posix_memalign(&p, 64, bytes ? bytes : 64) != 0) return NULL;
    memset(p, 0, bytes ? bytes : 64);
    return p;
}

static void trainer_free(pnetrt_trainer *t) {
    if (!t) return;
    free(t->slots);
    free(t->fold);
    free(t->recv);
    free(t->stage_ranges);
    free(t->stage_first);
    free(t->stats);
    free(t->global);
    free(t->opt);
    free(t->arena);
    free(t->scratch);
    free(t->tree);
    free(t->hand);
    free(t->stage_bars);
    pnetrt_comm_free(t->stage_comm);
    free(t->sendbuf);
    pnetrt_msgs_free(t->sends);
    pnetrt_msgs_free(t->recvq);
    free(t);
}

#include <stdarg.h>
int pnetrt_train_failf(pnetrt_model *m, const char *fmt, ...) {
    char buf[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(buf, sizeof buf, fmt, ap);
    va_end(ap);
    return pnetrt_fail(m, buf);
}

pnetrt_trainer *pnetrt_trainer_get(pnetrt_model *m) {
    if (!pnetrt_ready(m)) return NULL;
    const pnetrt_desc *d = pnetrt_model_desc(m);
    if (!d->train) {
        pnetrt_train_failf(m, "network '%s' has no train { } block", d->name);
        return NULL;
    }
    pnetrt_trainer **slot = pnetrt_trainer_slot(m);
    if (!*slot) {
        pnetrt_trainer *t = calloc(1, sizeof *t);
        if (!t) {
            pnetrt_train_failf(m, "out of memory for the trainer");
            return NULL;
        }
        t->opt = zalloc((size_t)d->train->opt_floats * sizeof(float));
        t->global = zalloc((size_t)d->train->global_floats * sizeof(float));
        if (!t->opt || !t->global) {
            trainer_free(t);
            pnetrt_train_failf(m, "out of memory for the optimizer state (%.0f bytes)",
                               4.0 * (double)(d->train->opt_floats + d->train->global_floats));
            return NULL;
        }
        t->lr = d->train->lr;
        t->seed = (uint64_t)d->train->seed;
        t->shuffle = -1;
        *slot = t;
        pnetrt_trainer_hook(m, trainer_free);
    }
    return *slot;
}

/* Grows the per-batch buffers to hold `batch` samples on `groups` replica groups. The first step at a batch plans
   them here (and the pipeline's hand-offs in run_step); a later step at that batch or a smaller one allocates
   nothing (tests/cli/train_alloc.c counts). */
static int reserve(pnetrt_model *m, pnetrt_trainer *t, int64_t batch, int groups, int threads, int64_t fold_bufs) {
    const pnetrt_desc *d = pnetrt_model_desc(m);
    const pnetrt_train_desc *td = d->train;
    int64_t C = td->chunk;
    int64_t nch = (batch + C - 1) / C;
    if (batch > t->cap_batch) {
        free(t->stats);
        t->stats = zalloc((size_t)nch * (size_t)td->stat_floats * sizeof(float));
        free(t->tree);
        t->tree = zalloc((size_t)(nch + 1) * sizeof(double));
        if (!t->stats || !t->tree) {
            t->cap_batch = 0;
            return pnetrt_train_failf(m, "out of memory for the statistics of a batch of %lld: %.0f bytes needed",
                                      (long long)batch,
                                      (double)nch * (double)td->stat_floats * 4.0 + 8.0 * (double)(nch + 1));
        }
        t->cap_batch = batch;
    }
    /* The gradients: a folded tree's buffers, or one slot per chunk (a step cut into segments
     * by batchnorm, which adds the chunks' gradients of a parameter in several segments). */
    if (fold_bufs > t->fold_cap) {
        free(t->fold);
        t->fold = zalloc((size_t)fold_bufs * (size_t)d->param_floats * sizeof(float));
        t->fold_cap = t->fold ? fold_bufs : 0;
        if (!t->fold)
            return pnetrt_train_failf(
                m, "out of memory for the gradients: %lld partial sums of %lld parameters, %.0f bytes needed",
                (long long)fold_bufs, (long long)d->param_floats, (double)fold_bufs * (double)d->param_floats * 4.0);
    }
    if (!fold_bufs && nch > t->slot_cap) {
        free(t->slots);
        t->slots = zalloc((size_t)nch * (size_t)d->param_floats * sizeof(float));
        t->slot_cap = t->slots ? nch : 0;
        if (!t->slots)
            return pnetrt_train_failf(m, "out of memory for the gradients of a batch of %lld: %.0f bytes needed",
                                      (long long)batch, (double)nch * (double)d->param_floats * 4.0);
    }
    /* Each group's chunk (one segment at a time, and evaluation), or the whole batch (several
     * segments: values live across the syncs). */
    size_t arena = (size_t)groups * (size_t)C * (size_t)td->sample_bytes;
    if (td->nsegments > 1 && (size_t)t->cap_batch * (size_t)td->sample_bytes > arena)
        arena = (size_t)t->cap_batch * (size_t)td->sample_bytes;
    if (arena > t->arena_bytes) {
        free(t->arena);
        t->arena = zalloc(arena);
        t->arena_bytes = t->arena ? arena : 0;
        if (!t->arena) return pnetrt_train_failf(m, "out of memory for the training arena (%zu bytes)", arena);
    }
    size_t scratch = (size_t)threads * (size_t)d->scratch_bytes;
    if (scratch > t->scratch_bytes || !t->scratch) {
        free(t->scratch);
        t->scratch = zalloc(scratch);
        t->scratch_bytes = t->scratch ? scratch : 0;
        if (!t->scratch) return pnetrt_train_failf(m, "out of memory for scratch (%zu bytes)", scratch);
    }
    return 0;
}

/* The bytes reserve allocates for a batch at most (the pipeline's arena aside): checked before any
 * input is read, so that a batch larger than memory fails with a message, not a crash or the
 * kernel's out-of-memory killer. */
static double step_bytes(const pnetrt_desc *d, int64_t batch) {
    const pnetrt_train_desc *td = d->train;
    double nch = (double)((batch + td->chunk - 1) / td->chunk);
    /* Gradients: one slot per chunk with batchnorm or pipeline stages, else the folded tree's
     * partial sums (gradtree.h; about two stacks' worth for the groups). */
    double grads = td->nsegments > 1 || td->nstages > 1 ? nch : fmin(nch, 2.0 * pnetrt_tree_depth((int64_t)nch));
    double per_chunk = 4.0 * (double)td->stat_floats + 8.0;
    int64_t held = td->nsegments > 1 || batch < 256 * td->chunk ? batch : 256 * td->chunk;
    return nch * per_chunk + grads * 4.0 * (double)d->param_floats + (double)held * (double)td->sample_bytes;
}

static int check_inputs(pnetrt_model *m, int64_t batch, const void *const *inputs) {
    const pnetrt_desc *d = pnetrt_model_desc(m);
    const pnetrt_train_desc *td = d->train;
    if (batch < 1) return pnetrt_train_failf(m, "batch size %lld must be at least 1", (long long)batch);
    if (pnetrt_check_batch(m, batch, d->inputs, d->ninputs) ||
        pnetrt_check_batch(m, batch, td->train_inputs, td->ntrain_inputs))
        return 1;
    if (step_bytes(d, batch) > pnetrt_memory_limit())
        return pnetrt_train_failf(
            m, "a training step on a batch of %lld needs %.3g GB, more than half of this machine's memory",
            (long long)batch, step_bytes(d, batch) / 1e9);
    if (!inputs) return pnetrt_train_failf(m, "no input buffers");
    for (int64_t i = 0; i < d->ninputs + td->ntrain_inputs; i++) {
        const pnetrt_tensor_desc *t = i < d->ninputs ? &d->inputs[i] : &td->train_inputs[i - d->ninputs];
        if (!inputs[i]) return pnetrt_train_failf(m, "input '%s' is NULL", t->name);
        int64_t n = pnetrt_sample_elems(t) * (t->shape[0] < 0 ? batch : 1);
        const int32_t *v = inputs[i];
        int64_t limit = i < d->ninputs ? t->limit : (td->loss == PNETRT_LOSS_CROSS_ENTROPY ? td->classes : 0);
        if (t->dtype != 1 || !limit) continue;
        for (int64_t k = 0; k < n; k++)
            if (v[k] < 0 || v[k] >= limit)
                return pnetrt_train_failf(m, "%s '%s' holds %d at sample %lld, outside [0, %lld)",
                                          i < d->ninputs ? "input" : "label", t->name, v[k],
                                          (long long)(k / pnetrt_sample_elems(t)), (long long)limit);
    }
    return 0;
}

/* The fixed tree over the chunks' values, as the generated update sums gradients. */
static double tree_sum(double *a, const float *v, int64_t stride, int64_t n) {
    if (n <= 0) return 0;
    for (int64_t i = 0; i < n; i++) a[i] = v[i * stride];
    for (int64_t s = 1; s < n; s *= 2)
        for (int64_t i = 0; i + s < n; i += 2 * s) a[i] += a[i + s];
    return a[0];
}

typedef struct run {
    pnetrt_model *m;
    pnetrt_trainer *t;
    const pnetrt_train_call *call;
    int64_t nch;
    int64_t lo, hi;        /* this rank's chunks: [lo, hi) of [0, nch) */
    pnetrt_comm *comm;     /* the ranks (NULL: this process alone) */
    const int64_t *first;  /* rank r's chunks start at first[r]; first[ranks] = nch */
    _Atomic int failed;    /* a reduction point failed: err says why */
    char err[256];
    bool eval;
    int fold_depth;        /* folding: buffers per group (0: one slot per chunk instead) */
    float *grad;           /* folding: where the whole gradient ends, for the update */
} run;

/* Chunk ch's call: its gradients go to buf. The generated code addresses chunk ch's slot as
 * call->slots + ch * param_floats, so the copy's slots points that far before buf (computed as an
 * integer: the generated code never reads below buf). */
static pnetrt_train_call chunk_call(const pnetrt_train_call *call, int64_t ch, float *buf, int64_t P) {
    pnetrt_train_call c = *call;
    c.slots = (float *)((uintptr_t)buf - (uintptr_t)ch * (uintptr_t)P * sizeof(float));
    return c;
}

/* A thread's view of its group's (or pipeline replica's) folded stack: the buffers from `base`,
 * and the gradient elements this thread's group adds (all, or its pipeline stage's). */
typedef struct fold_stack {
    pnetrt_blk blk[128];
    float *bufs[128];
    int top;
    float *base;
    const pnetrt_range *own;
    int nown;
} fold_stack;

/* Runs f on chunk ch with its gradients in the stack's next free buffer, then pushes the chunk,
 * adding siblings; the group's threads meet after each (the gradients whole, the arena and the
 * buffers added from free again). */
static void fold_chunk(const run *r, fold_stack *st, pnetrt_segment_fn f, int64_t ch, char *arena, int64_t cap,
                       int64_t base, char *scratch, int ith, int size) {
    int64_t P = pnetrt_model_desc(r->m)->param_floats;
    float *buf = st->base + (int64_t)st->top * P;
    pnetrt_train_call cc = chunk_call(r->call, ch, buf, P);
    f(&cc, ch, arena, cap, base, scratch, ith, size);
    pnetrt_barrier();
    if (pnetrt_tree_push(st->blk, st->bufs, &st->top, (pnetrt_blk){ch, 1}, buf, st->own, st->nown, ith, size))
        pnetrt_barrier();
}

/* Slice k of K of the gradient's (and the parameters') P elements, [e[k], e[k + 1]): whole
 * 16-float blocks, the last slice taking the rest. */
static void slices(int64_t P, int K, int64_t *e) {
    for (int k = 0; k <= K; k++) e[k] = k == K ? P : P / 16 * k / K * 16;
}

/* After every group has folded its chunks: adds the groups' stacks, in chunk order, into one sum
 * (each thread of the team its share of the elements), between barriers of the team. On ranks,
 * the rank's stack then goes to the owners of the gradient's slices (a reduce-scatter along the
 * tree), each owner adds every rank's partial sums of its slice, and the ranks all-gather the
 * slices. Returns the buffer that holds the whole gradient. */
static float *fold_finish(run *r, int groups, int t, int nth, pnetrt_spin_barrier *all, int *sense) {
    const pnetrt_desc *d = pnetrt_model_desc(r->m);
    int64_t P = d->param_floats;
    pnetrt_range every = {0, P};
    pnetrt_blk blk[128], mine[128];
    float *bufs[128];
    int top = 0;
    for (int g = 0; g < groups; g++) {
        int64_t c0 = r->lo + (r->hi - r->lo) * g / groups, c1 = r->lo + (r->hi - r->lo) * (g + 1) / groups;
        int n = pnetrt_tree_stack(c0, c1, mine, NULL);
        for (int j = 0; j < n; j++)
            pnetrt_tree_push(blk, bufs, &top, mine[j], r->t->fold + ((int64_t)g * r->fold_depth + j) * P, &every, 1, t, nth);
    }
    int K = pnetrt_comm_size(r->comm), me = pnetrt_comm_rank(r->comm);
    if (K < 2) {
        pnetrt_tree_finish(blk, bufs, &top, &every, 1, t, nth);
        return bufs[0];
    }
    int nb[K];
    int64_t e[K + 1], at[K];
    for (int k = 0; k < K; k++) nb[k] = pnetrt_tree_stack(r->first[k], r->first[k + 1], mine, NULL);
    slices(P, K, e);
    int64_t slice = e[me + 1] - e[me];
    for (int k = 0, sum = 0; k < K; sum += nb[k], k++) at[k] = (int64_t)sum * slice;
    pnetrt_barrier_wait(all, sense);
    if (t == 0 && pnetrt_comm_exchange_slices(r->comm, bufs, nb, e, r->t->recv, r->err, sizeof r->err))
        atomic_store(&r->failed, 1);
    pnetrt_barrier_wait(all, sense);
    /* Every rank's partial sums of this rank's slice, in chunk order. A slice is addressed by the
     * gradient's element index, so its pointer is offset back by e[me] (as an integer). */
    pnetrt_range own = {e[me], e[me + 1]};
    top = 0;
    for (int k = 0; k < K; k++) {
        int n = pnetrt_tree_stack(r->first[k], r->first[k + 1], mine, NULL);
        for (int j = 0; j < n; j++) {
            float *piece = r->t->recv + at[k] + (int64_t)j * slice;
            pnetrt_tree_push(blk, bufs, &top, mine[j], (float *)((uintptr_t)piece - (uintptr_t)e[me] * sizeof(float)), &own, 1,
                             t, nth);
        }
    }
    pnetrt_tree_finish(blk, bufs, &top, &own, 1, t, nth);
    pnetrt_barrier_wait(all, sense); /* the threads add and copy different shares */
    float *sum = r->t->fold;
    int64_t a = e[me] + slice * t / nth, b = e[me] + slice * (t + 1) / nth;
    if (top) memcpy(sum + a, bufs[0] + a, (size_t)(b - a) * sizeof(float));
    return sum; /* this rank's slice of the gradient: the update takes it from here */
}

/* The step's update on thread t of the team: with folding, over the sum of the groups' (runs')
 * stacks, which the update's tree over one slot takes as it is; else over the chunks' slots. */
static void update(run *r, int runs, int t, int nth, pnetrt_spin_barrier *all, int *sense) {
    const pnetrt_train_desc *td = pnetrt_model_desc(r->m)->train;
    if (!r->fold_depth) {
        td->update(r->call, t, nth);
        return;
    }
    float *sum = fold_finish(r, runs, t, nth, all, sense);
    if (t == 0) r->grad = sum;
    pnetrt_barrier_wait(all, sense);
    pnetrt_train_call cc = *r->call;
    cc.slots = sum;
    cc.nchunks = 1;
    int K = pnetrt_comm_size(r->comm);
    if (K < 2) {
        td->update(&cc, t, nth);
        return;
    }
    /* On ranks each updates its slice of the parameters (and of the optimizer state, which stays
     * sliced until a save gathers it), and the ranks all-gather the parameters. */
    int64_t e[K + 1];
    slices(pnetrt_model_desc(r->m)->param_floats, K, e);
    int me = pnetrt_comm_rank(r->comm);
    cc.elem_lo = e[me];
    cc.elem_hi = e[me + 1];
    td->update(&cc, t, nth);
    pnetrt_barrier_wait(all, sense);
    if (t == 0) {
        if (pnetrt_comm_allgather_bytes(r->comm, cc.params, 4, e, r->err, sizeof r->err)) atomic_store(&r->failed, 1);
        r->t->opt_comm = r->comm;
    }
    pnetrt_barrier_wait(all, sense);
}

int pnetrt_train_opt_whole(pnetrt_model *m) {
    pnetrt_trainer *t = *pnetrt_trainer_slot(m);
    if (!t || !t->opt_comm) return 0;
    const pnetrt_desc *d = pnetrt_model_desc(m);
    int K = pnetrt_comm_size(t->opt_comm);
    int64_t P = d->param_floats, e[K + 1];
    slices(P, K, e);
    char err[256];
    for (int64_t k = 0; k < d->train->opt_floats / (P > 0 ? P : 1); k++)
        if (pnetrt_comm_allgather_bytes(t->opt_comm, t->opt + k * P, 4, e, err, sizeof err))
            return pnetrt_train_failf(m, "gathering the optimizer state: %s", err);
    t->opt_comm = NULL;
    return 0;
}

/* The reduction point (transport.h) before the chunks' statistics, and with grads their parameter
 * gradients, are combined; the caller (thread t of the team) is in the group that wrote its chunks. */
static void reduce_point(run *r, pnetrt_spin_barrier *all, int *sense, bool grads, int t) {
    const pnetrt_desc *d = pnetrt_model_desc(r->m);
    pnetrt_chunk_slots sets[2] = {{r->t->stats, d->train->stat_floats}, {r->t->slots, d->param_floats}};
    pnetrt_ranks ranks = {r->comm, r->first, t == 0};
    int nsets = grads && !r->fold_depth ? 2 : 1;
    if (pnetrt_reduce_point(all, sense, sets, nsets, &ranks, r->err, sizeof r->err)) atomic_store(&r->failed, 1);
}

/* Samples of chunk ch of the step (the last may be short). */
static int64_t chunk_samples(const run *r, int64_t ch) {
    int64_t C = pnetrt_model_desc(r->m)->train->chunk, n = r->call->batch - ch * C;
    return n < C ? n : C;
}

/* Thread t's part of a step: groups of threads own contiguous chunk runs. */
static void run_thread(run *r, int t, int nth, int groups, pnetrt_spin_barrier *bars, pnetrt_spin_barrier *all) {
    const pnetrt_desc *d = pnetrt_model_desc(r->m);
    const pnetrt_train_desc *td = d->train;
    int64_t C = td->chunk;
    int base = nth / groups, extra = nth % groups;
    int g = t < extra * (base + 1) ? t / (base + 1) : extra + (t - extra * (base + 1)) / base;
    int first = g < extra ? g * (base + 1) : extra * (base + 1) + (g - extra) * base;
    int size = base + (g < extra);
    int ith = t - first;
    pnetrt_barrier_bind(&bars[g]);
    int sense = 0;
    char *scratch = r->t->scratch + (size_t)t * (size_t)d->scratch_bytes;
    int64_t c0 = r->lo + (r->hi - r->lo) * g / groups, c1 = r->lo + (r->hi - r->lo) * (g + 1) / groups;
    bool own = td->nsegments == 1 || r->eval;
    char *arena = own ? r->t->arena + (size_t)g * (size_t)C * (size_t)td->sample_bytes : r->t->arena;
    bool tr = pnetrt_tracing(r->m);
    double b = tr ? pnetrt_now_s() : 0;
    td->prep(r->call, t, nth);
    if (tr) pnetrt_trace_slice(r->m, PNETRT_TRACE_PREP, b, pnetrt_now_s(), -1, g, 0, 0);
    pnetrt_barrier_wait(all, &sense);
    int64_t nseg = r->eval ? 1 : td->nsegments;
    pnetrt_trace_kind kind = r->eval ? PNETRT_TRACE_EVAL : nseg > 1 ? PNETRT_TRACE_SEGMENT : PNETRT_TRACE_STEP_CHUNK;
    pnetrt_range every = {0, d->param_floats};
    fold_stack st = {.own = &every, .nown = 1};
    if (r->fold_depth) st.base = r->t->fold + (int64_t)g * r->fold_depth * d->param_floats;
    for (int64_t k = 0; k < nseg; k++) {
        pnetrt_segment_fn seg = r->eval ? td->eval : td->segments[k];
        for (int64_t ch = c0; ch < c1; ch++) {
            if (tr) b = pnetrt_now_s();
            if (r->fold_depth) { /* one segment (folding's condition): the chunk's gradients are whole after it */
                fold_chunk(r, &st, seg, ch, arena, C, ch * C, scratch, ith, size);
            } else {
                seg(r->call, ch, arena, own ? C : r->t->cap_batch, own ? ch * C : 0, scratch, ith, size);
                pnetrt_barrier(); /* the group's arena is reused by its next chunk */
            }
            if (tr) pnetrt_trace_slice(r->m, kind, b, pnetrt_now_s(), -1, g, ch, chunk_samples(r, ch));
        }
        /* The chunks' statistics (batchnorm partials, loss), and after the last segment their
         * gradients, are combined next: by the sync, or by the update and the loss tree. */
        bool grads = k + 1 == nseg && !r->eval;
        if (tr) b = pnetrt_now_s();
        reduce_point(r, all, &sense, grads, t);
        if (tr) pnetrt_trace_slice(r->m, PNETRT_TRACE_REDUCE, b, pnetrt_now_s(), -1, g, k, 0);
        if (k + 1 < nseg) {
            if (tr) b = pnetrt_now_s();
            td->syncs[k](r->call, t, nth);
            pnetrt_barrier_wait(all, &sense);
            if (tr) pnetrt_trace_slice(r->m, PNETRT_TRACE_SYNC, b, pnetrt_now_s(), -1, g, k, 0);
        }
    }
    if (tr) b = pnetrt_now_s();
    if (!r->eval) update(r, groups, t, nth, all, &sense);
    if (tr && !r->eval) pnetrt_trace_slice(r->m, PNETRT_TRACE_UPDATE, b, pnetrt_now_s(), -1, g, 0, 0);
    pnetrt_barrier_bind(NULL);
}

/* Each pipeline stage's parameter elements (train_impl.h), from the parameters' names: a parameter
 * is named after its layer (LAYER.weight, LAYER.bias), and the layer descriptors give each layer's
 * stage. Returns false, once and for good, when some parameter's layer is not found. */
static bool stage_map(pnetrt_model *m, pnetrt_trainer *t);
bool pnetrt_train_stage_map(pnetrt_model *m, pnetrt_trainer *t) { return stage_map(m, t); }

static bool stage_map(pnetrt_model *m, pnetrt_trainer *t) {
    if (t->stage_map) return t->stage_map > 0;
    const pnetrt_desc *d = pnetrt_model_desc(m);
    int S = (int)d->nstages;
    int64_t np = d->nparams;
    int *stage = calloc((size_t)(np > 0 ? np : 1), sizeof *stage);
    t->stage_ranges = calloc((size_t)(np > 0 ? np : 1), sizeof *t->stage_ranges);
    t->stage_first = calloc((size_t)S + 1, sizeof *t->stage_first);
    bool ok = stage && t->stage_ranges && t->stage_first;
    for (int64_t p = 0; ok && p < np; p++) {
        const char *name = d->params[p].name, *dot = strrchr(name, '.');
        size_t len = dot ? (size_t)(dot - name) : strlen(name);
        stage[p] = -1;
        for (int64_t l = 0; l < d->nlayers && stage[p] < 0; l++)
            if (strlen(d->layers[l].name) == len && !strncmp(d->layers[l].name, name, len)) stage[p] = (int)d->layers[l].stage;
        ok = stage[p] >= 0 && stage[p] < S;
    }
    int n = 0;
    for (int s = 0; ok && s < S; s++) {
        t->stage_first[s] = n;
        for (int64_t p = 0; p < np; p++)
            if (stage[p] == s) {
                int64_t lo = d->params[p].offset, hi = lo + (pnetrt_sample_elems(&d->params[p]) + 15) / 16 * 16;
                if (n > t->stage_first[s] && t->stage_ranges[n - 1].hi == lo) t->stage_ranges[n - 1].hi = hi;
                else t->stage_ranges[n++] = (pnetrt_range){lo, hi};
            }
    }
    if (ok) t->stage_first[S] = n;
    free(stage);
    t->stage_map = ok ? 1 : -1;
    return ok;
}

/* ---- pipeline training ------------------------------------------------------------------------
 * R replica pipelines, each a thread group per stage. A replica's chunks form M micro-batches;
 * stage s runs micro-batch q forward once stage s-1 has, and backward once stage s+1 has, in
 * GPipe order (every forward, then every backward) or 1F1B (S-s-1 forwards, then one forward and
 * one backward in turn, then the remaining backwards). Micro-batch q lives in arena slot q mod K:
 * K = M for GPipe, K = min(S, M) for 1F1B, so 1F1B holds at most S micro-batches' values. The
 * chunks and their gradient slots are those of the unpipelined step, so the weights are the same
 * bits for any schedule and micro-batch count. */
typedef struct pipe {
    int R, S, per, M;      /* replicas, stages, threads per replica, micro-batches asked for */
    int count[PNETRT_MAX_STAGES]; /* threads per stage */
    bool one_f_one_b;
    int64_t cap;           /* samples per arena slot */
    int slots;             /* arena slots per replica */
    pnetrt_handoff *hand;  /* [R]: one per replica pipeline */
} pipe;

static void pipe_thread(run *r, const pipe *p, int t, pnetrt_spin_barrier *bars, pnetrt_spin_barrier *all) {
    const pnetrt_desc *d = pnetrt_model_desc(r->m);
    const pnetrt_train_desc *td = d->train;
    int64_t C = td->chunk;
    int sense = 0;
    int nth = p->R * p->per;
    int rg = t / p->per, k = t % p->per, s = 0, first = 0;
    while (k >= first + p->count[s]) first += p->count[s++];
    int ith = k - first, size = p->count[s];
    pnetrt_barrier_bind(&bars[rg * p->S + s]);
    char *scratch = r->t->scratch + (size_t)t * (size_t)d->scratch_bytes;
    int64_t c0 = r->lo + (r->hi - r->lo) * rg / p->R, c1 = r->lo + (r->hi - r->lo) * (rg + 1) / p->R, nc = c1 - c0;
    int64_t M = p->M < nc ? p->M : nc;
    int K = p->one_f_one_b ? (int)(M < p->S ? M : p->S) : (int)M;
    pnetrt_handoff *h = &p->hand[rg];
    if (k == 0) pnetrt_handoff_init(h, p->S, K, true);
    bool tr = pnetrt_tracing(r->m);
    double b = tr ? pnetrt_now_s() : 0;
    td->prep(r->call, t, nth);
    if (tr) pnetrt_trace_slice(r->m, PNETRT_TRACE_PREP, b, pnetrt_now_s(), s, rg, 0, 0);
    pnetrt_barrier_wait(all, &sense);
    size_t slot_bytes = (size_t)p->cap * (size_t)td->sample_bytes;
    char *arena = r->t->arena + (size_t)rg * (size_t)p->slots * slot_bytes;
    int64_t warm = p->S - s - 1 < M ? p->S - s - 1 : M; /* 1F1B: forwards before the first backward */
    int64_t nf = 0, nb = 0;
    /* Folding (gradtree.h): the replica's chunks, in order, on one stack whose buffers every stage
     * shares, each stage adding only its own parameters' elements. */
    fold_stack st = {0};
    if (r->fold_depth) {
        st.base = r->t->fold + (int64_t)rg * r->fold_depth * d->param_floats;
        st.own = r->t->stage_ranges + r->t->stage_first[s];
        st.nown = r->t->stage_first[s + 1] - r->t->stage_first[s];
    }
    while (nb < M) {
        /* Next: a forward while warming up (or in GPipe, all of them), then 1F1B pairs. */
        bool fwd = p->one_f_one_b ? nf < M && (nf < warm || nf - nb == warm) : nf < M;
        int64_t q = fwd ? nf : nb;
        pnetrt_dir dir = fwd ? PNETRT_FORWARD : PNETRT_BACKWARD;
        pnetrt_handoff_wait(h, dir, s, q);
        int64_t q0 = c0 + nc * q / M, q1 = c0 + nc * (q + 1) / M;
        char *slot = arena + (size_t)(q % K) * slot_bytes;
        pnetrt_segment_fn f = fwd ? td->stage_forward[s] : td->stage_backward[s];
        b = pnetrt_now_s();
        for (int64_t ch = q0; ch < q1; ch++) {
            if (r->fold_depth && !fwd) {
                fold_chunk(r, &st, f, ch, slot, p->cap, q0 * C, scratch, ith, size);
                continue;
            }
            f(r->call, ch, slot, p->cap, q0 * C, scratch, ith, size);
            pnetrt_barrier();
        }
        double e = pnetrt_now_s();
        if (ith == 0 && rg == 0) r->t->busy[s] += e - b;
        if (tr) {
            int64_t n = q1 * C < r->call->batch ? q1 * C - q0 * C : r->call->batch - q0 * C;
            pnetrt_trace_slice(r->m, fwd ? PNETRT_TRACE_FORWARD : PNETRT_TRACE_BACKWARD, b, e, s, rg, q, n);
        }
        if (ith == 0) pnetrt_handoff_post(h, dir, s, q);
        if (fwd) nf++;
        else nb++;
    }
    if (tr) b = pnetrt_now_s();
    reduce_point(r, all, &sense, true, t);
    if (tr) pnetrt_trace_slice(r->m, PNETRT_TRACE_REDUCE, b, pnetrt_now_s(), s, rg, 0, 0);
    if (tr) b = pnetrt_now_s();
    update(r, p->R, t, nth, all, &sense);
    if (tr) pnetrt_trace_slice(r->m, PNETRT_TRACE_UPDATE, b, pnetrt_now_s(), s, rg, 0, 0);
    pnetrt_barrier_bind(NULL);
}

/* The pipeline for this step, or false when the network or the thread count does not allow one. */
static bool plan_pipe(pnetrt_model *m, int64_t nch, int threads, pipe *p) {
    const pnetrt_desc *d = pnetrt_model_desc(m);
    const pnetrt_train_desc *td = d->train;
    int S = (int)td->nstages;
    if (S < 2 || S > PNETRT_MAX_STAGES || !td->stage_forward || !pnetrt_pipelined(m) || threads < S) return false;
    memset(p, 0, sizeof *p);
    p->S = S;
    p->R = pnetrt_replicas_chosen(m) > 0 ? pnetrt_replicas_chosen(m) : (int)(d->replicas > 0 ? d->replicas : 1);
    if (p->R * S > threads) p->R = threads / S;
    if (p->R > nch) p->R = (int)nch;
    if (p->R < 1) p->R = 1;
    p->per = threads / p->R;
    p->M = pnetrt_microbatches(m);
    if (p->M < 1) p->M = 1;
    p->one_f_one_b = d->schedule == 1;
    pnetrt_share_threads(m, p->per, S, p->count);
    int64_t most = (nch + p->R - 1) / p->R; /* chunks of the largest replica */
    int64_t M = p->M < most ? p->M : most;
    p->cap = (most + M - 1) / M * td->chunk;
    p->slots = p->one_f_one_b ? (int)(M < S ? M : S) : (int)M;
    return true;
}

/* The pipeline's arena, hand-offs and stage barriers, kept from step to step. */
static int reserve_pipe(pnetrt_model *m, pnetrt_trainer *t, pipe *p) {
    const pnetrt_train_desc *td = pnetrt_model_desc(m)->train;
    size_t need = (size_t)p->R * (size_t)p->slots * (size_t)p->cap * (size_t)td->sample_bytes;
    if (need > t->arena_bytes) {
        free(t->arena);
        t->arena = zalloc(need);
        t->arena_bytes = t->arena ? need : 0;
        if (!t->arena) return pnetrt_train_failf(m, "out of memory for the pipeline's arena (%zu bytes)", need);
    }
    int nb = p->R * p->S;
    if (p->R > t->nhand) {
        free(t->hand);
        t->hand = calloc((size_t)p->R, sizeof *t->hand);
        t->nhand = t->hand ? p->R : 0;
    }
    if (nb > t->nbars) {
        free(t->stage_bars);
        t->stage_bars = calloc((size_t)nb, sizeof *t->stage_bars);
        t->nbars = t->stage_bars ? nb : 0;
    }
    if (!t->hand || !t->stage_bars) return pnetrt_train_failf(m, "out of memory");
    p->hand = t->hand;
    return 0;
}

/* ---- pipeline training with one stage per rank ------------------------------------------------
 * K = R x S ranks: rank k runs stage s = k mod S of pipeline r = k / S, which trains chunks
 * [nch*r/R, nch*(r+1)/R) of each step, in the micro-batches, order (GPipe or 1F1B) and arena
 * slots of the threads' pipeline (pipe_thread), on the rank's whole team. Before a forward, the
 * rank receives from the rank of stage s - 1 the values its stage reads (the descriptor's
 * stage_fwd), and after it sends stage s + 1 its share; before a backward it receives from stage
 * s + 1 the gradients of what it sent (stage_bwd), with the later stages' contributions added,
 * and after it sends stage s - 1 theirs. Thread 0 communicates; sends are non-blocking, from a
 * buffer of the step's messages, and complete by the step's end. The rank folds its chunks'
 * gradients of its stage's parameters; the ranks of one stage reduce them along the tree (the
 * data-parallel exchange, over the stage's ranks: fold_finish); each updates its stage's
 * parameters; and the last stage's ranks all-gather the chunks' statistics. The kernels, the
 * chunks and the tree are the threads-only run's, so the weights are the same bits. */
typedef struct rpipe {
    int S, s, R, r, one_f_one_b;
    int64_t M, K, cap;       /* micro-batches, arena slots, samples per slot */
    int64_t fwd_bytes, bwd_bytes; /* per sample: what this stage receives forward and backward */
    size_t send_at;          /* next free byte of the send buffer (thread 0) */
    _Atomic int failed;
} rpipe;

/* Posts the messages of micro-batch q (n samples in slot) of the (offset, bytes) pairs [j0, j1) of
 * `list`: received into the slot from rank `peer`, or copied from it into the send buffer and
 * sent. Thread 0 only. Returns 0, or 1 with r->err set. */
static int rank_msgs(run *r, rpipe *p, const int64_t *list, int64_t j0, int64_t j1, char *slot, int64_t n, int peer,
                     bool send, int tag0, pnetrt_msgs *recv) {
    pnetrt_comm *c = pnetrt_model_comm(r->m);
    for (int64_t j = j0; j < j1; j++) {
        char *at = slot + list[2 * j] * p->cap;
        int64_t bytes = list[2 * j + 1] * n;
        int tag = tag0 + (int)(j - j0);
        if (!send) {
            if (pnetrt_comm_irecv(c, at, bytes, peer, tag, recv, r->err, sizeof r->err)) return 1;
            continue;
        }
        char *buf = r->t->sendbuf + p->send_at;
        memcpy(buf, at, (size_t)bytes);
        p->send_at += ((size_t)bytes + 63) / 64 * 64;
        if (pnetrt_comm_isend(c, buf, bytes, peer, tag, r->t->sends, r->err, sizeof r->err)) return 1;
    }
    return 0;
}

/* Thread t of the rank's team: the generated code's barriers are grp's (bound), the schedule's own
 * waits team's, each with its own sense. */
static void rank_pipe_thread(run *r, rpipe *p, int t, int nth, pnetrt_spin_barrier *grp, pnetrt_spin_barrier *team) {
    const pnetrt_desc *d = pnetrt_model_desc(r->m);
    const pnetrt_train_desc *td = d->train;
    int64_t C = td->chunk;
    int sense = 0, s = p->s, S = p->S, me = pnetrt_comm_rank(pnetrt_model_comm(r->m));
    pnetrt_barrier_bind(grp);
    char *scratch = r->t->scratch + (size_t)t * (size_t)d->scratch_bytes;
    bool tr = pnetrt_tracing(r->m);
    double b = tr ? pnetrt_now_s() : 0;
    td->prep(r->call, t, nth);
    if (tr) pnetrt_trace_slice(r->m, PNETRT_TRACE_PREP, b, pnetrt_now_s(), s, p->r, 0, 0);
    pnetrt_barrier_wait(team, &sense);
    int64_t c0 = r->lo, nc = r->hi - r->lo, M = p->M;
    size_t slot_bytes = (size_t)p->cap * (size_t)td->sample_bytes;
    int64_t warm = S - s - 1 < M ? S - s - 1 : M;
    int64_t nf = 0, nb = 0;
    fold_stack st = {0};
    st.base = r->t->fold;
    st.own = r->t->stage_ranges + r->t->stage_first[s];
    st.nown = r->t->stage_first[s + 1] - r->t->stage_first[s];
    while (nb < M) {
        bool fwd = p->one_f_one_b ? nf < M && (nf < warm || nf - nb == warm) : nf < M;
        int64_t q = fwd ? nf : nb;
        int64_t q0 = c0 + nc * q / M, q1 = c0 + nc * (q + 1) / M;
        int64_t n = (q1 * C < r->call->batch ? q1 * C : r->call->batch) - q0 * C;
        char *slot = r->t->arena + (size_t)(q % p->K) * slot_bytes;
        /* Receive what this stage reads: values from s - 1, or gradients from s + 1. */
        bool in = fwd ? s > 0 : s < S - 1;
        if (in && t == 0 && !atomic_load(&p->failed)) {
            double w = pnetrt_now_s();
            int rc = fwd ? rank_msgs(r, p, td->stage_fwd, td->stage_fwd_first[s], td->stage_fwd_first[s + 1], slot, n, me - 1,
                                     false, 1000, r->t->recvq)
                         : rank_msgs(r, p, td->stage_bwd, td->stage_bwd_first[s], td->stage_bwd_first[s + 1], slot, n, me + 1,
                                     false, 2000, r->t->recvq);
            if (rc || pnetrt_msgs_wait(r->t->recvq, r->err, sizeof r->err)) atomic_store(&p->failed, 1);
            if (tr) pnetrt_trace_add(r->m, w, pnetrt_now_s(), PNETRT_TRACE_MESSAGES, p->r, q, n);
        }
        if (in) pnetrt_barrier_wait(team, &sense);
        if (atomic_load(&p->failed)) break;
        pnetrt_segment_fn f = fwd ? td->stage_forward[s] : td->stage_backward[s];
        b = pnetrt_now_s();
        for (int64_t ch = q0; ch < q1; ch++) {
            if (!fwd) {
                fold_chunk(r, &st, f, ch, slot, p->cap, q0 * C, scratch, t, nth);
                continue;
            }
            f(r->call, ch, slot, p->cap, q0 * C, scratch, t, nth);
            pnetrt_barrier();
        }
        double e = pnetrt_now_s();
        if (t == 0) r->t->busy[s] += e - b;
        if (tr) pnetrt_trace_slice(r->m, fwd ? PNETRT_TRACE_FORWARD : PNETRT_TRACE_BACKWARD, b, e, s, p->r, q, n);
        /* Send the next stage its values, or the stage before its gradients. */
        bool out = fwd ? s < S - 1 : s > 0;
        if (out && t == 0) {
            int rc = fwd ? rank_msgs(r, p, td->stage_fwd, td->stage_fwd_first[s + 1], td->stage_fwd_first[s + 2], slot, n,
                                     me + 1, true, 1000, NULL)
                         : rank_msgs(r, p, td->stage_bwd, td->stage_bwd_first[s - 1], td->stage_bwd_first[s], slot, n,
                                     me - 1, true, 2000, NULL);
            if (rc) atomic_store(&p->failed, 1);
        }
        if (fwd) nf++;
        else nb++;
    }
    if (t == 0) { /* every send of the step done; after a failure only to free the buffer */
        char ignored[64];
        bool f = atomic_load(&p->failed);
        if (pnetrt_msgs_wait(r->t->sends, f ? ignored : r->err, f ? sizeof ignored : sizeof r->err)) atomic_store(&p->failed, 1);
    }
    pnetrt_barrier_wait(team, &sense);
    if (atomic_load(&p->failed)) {
        atomic_store(&r->failed, 1);
        pnetrt_barrier_bind(NULL);
        return;
    }
    if (tr) b = pnetrt_now_s();
    update(r, 1, t, nth, team, &sense);
    if (tr) pnetrt_trace_slice(r->m, PNETRT_TRACE_UPDATE, b, pnetrt_now_s(), s, p->r, 0, 0);
    pnetrt_barrier_bind(NULL);
}

static int rank_pipe_step(pnetrt_model *m, pnetrt_trainer *t, int64_t batch, const void *const *inputs, double *loss_sum) {
    const pnetrt_desc *d = pnetrt_model_desc(m);
    const pnetrt_train_desc *td = d->train;
    pnetrt_comm *comm = pnetrt_model_comm(m);
    int K = pnetrt_comm_size(comm), me = pnetrt_comm_rank(comm), S = (int)td->nstages;
    rpipe p = {.S = S, .s = pnetrt_model_rank_stage(m), .R = K / S, .r = me / S, .one_f_one_b = d->schedule == 1};
    int64_t C = td->chunk, nch = (batch + C - 1) / C, P = d->param_floats;
    int64_t pfirst[p.R + 1];
    for (int k = 0; k <= p.R; k++) pfirst[k] = nch * k / p.R;
    int64_t lo = pfirst[p.r], nc = pfirst[p.r + 1] - lo, most = (nch + p.R - 1) / p.R;
    int64_t M = pnetrt_microbatches(m) > 0 ? pnetrt_microbatches(m) : 1;
    p.M = M < nc ? M : nc;
    int64_t Mmost = M < most ? M : most;
    p.cap = Mmost > 0 ? (most + Mmost - 1) / Mmost * C : C;
    p.K = p.one_f_one_b ? (Mmost < S ? Mmost : S) : Mmost;
    if (p.K < 1) p.K = 1;
    for (int64_t j = td->stage_fwd_first[p.s]; j < td->stage_fwd_first[p.s + 1]; j++) p.fwd_bytes += td->stage_fwd[2 * j + 1];
    for (int64_t j = td->stage_bwd_first[p.s]; j < td->stage_bwd_first[p.s + 1]; j++) p.bwd_bytes += td->stage_bwd[2 * j + 1];
    int threads = pnetrt_call_threads(m);
    if (threads < 1) threads = 1;
    if (threads > 256) threads = 256;
    int bad = !stage_map(m, t) ? pnetrt_train_failf(m, "a parameter's pipeline stage is unknown") : 0;
    /* The rank's stack of partial sums (gradtree.h), and the exchange of the stage's ranks. */
    pnetrt_blk stack[128];
    int depth = 1;
    if (!bad && pnetrt_tree_depth(nch) > 128) bad = pnetrt_train_failf(m, "too many chunks (%lld) in one step", (long long)nch);
    if (!bad) pnetrt_tree_stack(lo, lo + nc, stack, &depth);
    if (depth < 1) depth = 1;
    if (!bad) bad = reserve(m, t, batch, 1, threads, depth);
    size_t arena = (size_t)p.K * (size_t)p.cap * (size_t)td->sample_bytes;
    if (!bad && arena > t->arena_bytes) {
        free(t->arena);
        t->arena = zalloc(arena);
        t->arena_bytes = t->arena ? arena : 0;
        if (!t->arena) bad = pnetrt_train_failf(m, "out of memory for the pipeline's arena (%zu bytes)", arena);
    }
    /* Outgoing messages of a step: every micro-batch's values forward and gradients backward. */
    int64_t out_f = 0, out_b = 0, nmsg = 0;
    if (p.s + 1 < S)
        for (int64_t j = td->stage_fwd_first[p.s + 1]; j < td->stage_fwd_first[p.s + 2]; j++) out_f += td->stage_fwd[2 * j + 1], nmsg++;
    if (p.s > 0)
        for (int64_t j = td->stage_bwd_first[p.s - 1]; j < td->stage_bwd_first[p.s]; j++) out_b += td->stage_bwd[2 * j + 1], nmsg++;
    size_t sendb = (size_t)((out_f + out_b) * p.cap + 64 * nmsg) * (size_t)(p.M > 0 ? p.M : 1) + 64;
    if (!bad && sendb > t->sendbuf_bytes) {
        free(t->sendbuf);
        t->sendbuf = zalloc(sendb);
        t->sendbuf_bytes = t->sendbuf ? sendb : 0;
        if (!t->sendbuf) bad = pnetrt_train_failf(m, "out of memory for a step's messages (%zu bytes)", sendb);
    }
    int need_msgs = (int)(nmsg * (p.M > 0 ? p.M : 1)) + 1;
    if (!bad && need_msgs > t->sends_cap) {
        pnetrt_msgs_free(t->sends);
        t->sends = pnetrt_msgs_new(need_msgs);
        t->sends_cap = t->sends ? need_msgs : 0;
        if (!t->sends) bad = pnetrt_train_failf(m, "out of memory");
    }
    int64_t nin = td->stage_fwd_first[p.s + 1] - td->stage_fwd_first[p.s] + td->stage_bwd_first[p.s + 1] - td->stage_bwd_first[p.s];
    if (!bad && nin + 1 > t->recvq_cap) {
        pnetrt_msgs_free(t->recvq);
        t->recvq = pnetrt_msgs_new((int)nin + 1);
        t->recvq_cap = t->recvq ? (int)nin + 1 : 0;
        if (!t->recvq) bad = pnetrt_train_failf(m, "out of memory");
    }
    if (!bad && !t->stage_comm && p.R > 1 && !(t->stage_comm = pnetrt_comm_split(comm, p.s, p.r)))
        bad = pnetrt_train_failf(m, "cannot make the communicator of pipeline stage %d's ranks", p.s);
    /* The stage's ranks exchange partial sums of their slices of the gradient (fold_finish). */
    if (!bad && p.R > 1) {
        int64_t blocks = 0;
        for (int k = 0; k < p.R; k++) blocks += pnetrt_tree_stack(pfirst[k], pfirst[k + 1], stack, NULL);
        int64_t need = blocks * ((p.r + 1 == p.R ? P : P / 16 * (p.r + 1) / p.R * 16) - P / 16 * p.r / p.R * 16);
        if (need > t->recv_cap) {
            free(t->recv);
            t->recv = zalloc((size_t)need * sizeof(float));
            t->recv_cap = t->recv ? need : 0;
            if (!t->recv)
                bad = pnetrt_train_failf(m, "out of memory for the ranks' partial gradients: %.0f bytes needed", 4.0 * (double)need);
        }
    }
    float *params = bad ? NULL : pnetrt_params_mut(m);
    if (!bad && !params) bad = pnetrt_train_failf(m, "out of memory");
    if (!pnetrt_comm_all_ok(comm, !bad)) return bad ? 1 : pnetrt_train_failf(m, "another rank could not start the step");
    t->step++;
    double b1 = td->beta1, b2 = td->beta2, stp = (double)t->step;
    pnetrt_train_call call = {inputs, params, t->slots, t->stats, t->global, t->opt, batch, nch, t->step, (int64_t)t->seed,
                              t->lr, t->lr / (1 - pow(b1, stp)), sqrt(1 - pow(b2, stp)), 0, P};
    run r = {.m = m, .t = t, .call = &call, .nch = nch, .lo = lo, .hi = lo + nc, .comm = p.R > 1 ? t->stage_comm : NULL,
             .first = pfirst, .eval = false, .fold_depth = depth};
    snprintf(t->schedule, sizeof t->schedule, "rank %d of %d: stage %d of pipeline %d (%d pipeline%s x %d stages, %s, %lld micro-batch%s), %d thread%s",
             me, K, p.s, p.r, p.R, p.R == 1 ? "" : "s", S, p.one_f_one_b ? "1f1b" : "gpipe", (long long)M, M == 1 ? "" : "es",
             threads, threads == 1 ? "" : "s");
    for (int i = 0; i < PNETRT_MAX_STAGES; i++) t->busy[i] = 0;
    t->pipe_mb = p.M;
    pnetrt_spin_barrier grp = PNETRT_BARRIER(threads), team = PNETRT_BARRIER(threads);
    double w0 = pnetrt_now_s();
    if (threads == 1) {
        rank_pipe_thread(&r, &p, 0, 1, &grp, &team);
    } else {
        bool alone = false;
#pragma omp parallel num_threads(threads)
        {
            if (omp_get_num_threads() != threads) {
#pragma omp single
                alone = true;
            } else {
                rank_pipe_thread(&r, &p, omp_get_thread_num(), threads, &grp, &team);
            }
        }
        if (alone) {
            pnetrt_spin_barrier one = PNETRT_BARRIER(1), single = PNETRT_BARRIER(1);
            rank_pipe_thread(&r, &p, 0, 1, &one, &single);
        }
    }
    t->wall = pnetrt_now_s() - w0;
    bool ok = !atomic_load(&r.failed);
    /* The chunks' statistics come from the last stage's ranks: pipeline r's from rank r * S + S - 1. */
    int64_t fl[K + 1];
    for (int k = 0; k < K; k++) fl[k] = pfirst[k / S];
    fl[K] = nch;
    double b = pnetrt_now_s();
    if (ok && pnetrt_comm_allgather_chunks(comm, t->stats, td->stat_floats, fl, r.err, sizeof r.err)) ok = false;
    pnetrt_trace_slice(m, PNETRT_TRACE_REDUCE, b, pnetrt_now_s(), p.s, p.r, 1, 0);
    if (!pnetrt_comm_all_ok(comm, ok)) return pnetrt_train_failf(m, "%s", ok ? "another rank failed in this step" : r.err);
    t->grad = r.grad;
    if (loss_sum) *loss_sum = tree_sum(t->tree, t->stats, td->stat_floats, nch);
    t->last_correct = (int64_t)llround(tree_sum(t->tree, t->stats + 1, td->stat_floats, nch));
    return 0;
}

static int run_step(pnetrt_model *m, int64_t batch, const void *const *inputs, bool eval, double *loss_sum,
                    int64_t *correct) {
    pnetrt_trainer *t = pnetrt_trainer_get(m);
    if (!t) return 1;
    if (check_inputs(m, batch, inputs)) return 1;
    const pnetrt_desc *d = pnetrt_model_desc(m);
    const pnetrt_train_desc *td = d->train;
    if (pnetrt_model_rank_stage(m) >= 0) {
        /* One pipeline stage per rank: training runs the rank's stage; a rank that holds every
         * parameter (an embedding program's) evaluates, or trains a network whose stages cannot
         * pipeline, as a replica. */
        if (!eval && td->nstages > 1 && td->stage_fwd_first) {
            int rc = rank_pipe_step(m, t, batch, inputs, loss_sum);
            if (!rc && correct) *correct = t->last_correct;
            return rc;
        }
        if (pnetrt_model_partial(m))
            return eval ? pnetrt_train_failf(m, "evaluation with one pipeline stage per rank is not built yet; evaluate with "
                                                "--rank-layout replicas")
                        : pnetrt_train_failf(m, "network '%s' trains its stages in turn (batchnorm needs the whole batch), so "
                                                "one stage per rank cannot train it; use --rank-layout replicas", d->name);
    }
    int64_t nch = (batch + td->chunk - 1) / td->chunk;
    /* Ranks take contiguous runs of chunks, as thread groups do within a rank: rank k owns
     * [first[k], first[k + 1]). */
    pnetrt_comm *comm = pnetrt_model_comm(m);
    int K = pnetrt_comm_size(comm), me = pnetrt_comm_rank(comm);
    int64_t first[K + 1];
    for (int k = 0; k <= K; k++) first[k] = nch * k / K;
    int64_t mine = first[me + 1] - first[me];
    int threads = pnetrt_call_threads(m);
    if (threads < 1) threads = 1;
    /* A small step runs on fewer threads, as a small inference call does (a step is about three
     * forward passes). The weights do not depend on the count. */
    threads = pnetrt_work_threads(m, (eval ? 1.0 : 3.0) * pnetrt_flops_per_sample(m) * (double)(mine * td->chunk),
                                  threads);
    int groups = pnetrt_replicas_chosen(m);
    if (groups < 1) groups = threads;
    if (groups > threads) groups = threads;
    if (groups > mine) groups = mine > 0 ? (int)mine : 1;
    if (groups > 256) groups = 256;
    pipe p;
    bool piped = !eval && mine > 0 && plan_pipe(m, mine, threads, &p);
    /* Fold the gradient tree as chunks complete (gradtree.h) when a step is one segment and runs
     * unpipelined in this process: each group then holds its stack's deepest, not a slot per chunk. */
    int depth = 0, depth1 = 0; /* buffers per group; and for one group, should OpenMP give one thread */
    /* The same choice on every rank (they must meet at the same reduction points): not for a
     * network that may run pipelined, whose stages fill the slots at different times. */
    bool fold = !eval && td->nsegments == 1 && pnetrt_tree_depth(nch) <= 128 &&
                (!(td->nstages > 1 && pnetrt_pipelined(m)) || stage_map(m, t));
    if (fold) {
        pnetrt_blk stack[128];
        int runs = piped ? p.R : groups; /* a pipeline's stages share their replica's stack */
        for (int g = 0; g < runs; g++) {
            int most;
            pnetrt_tree_stack(first[me] + mine * g / runs, first[me] + mine * (g + 1) / runs, stack, &most);
            if (most > depth) depth = most;
        }
        pnetrt_tree_stack(first[me], first[me + 1], stack, &depth1);
        if (depth < 1) depth = 1; /* a rank without chunks still folds: it receives the gradient */
        if (depth1 < 1) depth1 = 1;
    }
    int64_t runs = piped ? p.R : groups;
    int64_t fold_bufs = runs * depth > depth1 ? runs * depth : depth1;
    int bad = reserve(m, t, batch, groups, threads, fold_bufs) || (piped && reserve_pipe(m, t, &p));
    if (!bad && K > 1 && fold) {
        /* Every rank's partial sums of this rank's slice of the gradient (fold_finish). */
        int64_t blocks = 0, P = d->param_floats;
        pnetrt_blk stack[128];
        for (int k = 0; k < K; k++) blocks += pnetrt_tree_stack(first[k], first[k + 1], stack, NULL);
        int64_t need = blocks * ((me + 1 == K ? P : P / 16 * (me + 1) / K * 16) - P / 16 * me / K * 16);
        if (need > t->recv_cap) {
            free(t->recv);
            t->recv = zalloc((size_t)need * sizeof(float));
            t->recv_cap = t->recv ? need : 0;
            if (!t->recv)
                bad = pnetrt_train_failf(m, "out of memory for the ranks' partial gradients: %.0f bytes needed",
                                         4.0 * (double)need);
        }
    }
    float *params = bad ? NULL : pnetrt_params_mut(m);
    if (!bad && !params) bad = pnetrt_model_partial(m) ? 1 : pnetrt_train_failf(m, "out of memory");
    /* Every rank goes on, or none does: a rank that failed here would leave the others waiting in
     * the step's first reduction point. */
    if (!pnetrt_comm_all_ok(comm, !bad))
        return bad ? 1 : pnetrt_train_failf(m, "another rank could not start the step");
    if (!eval) t->step++;
    double b1 = td->beta1, b2 = td->beta2, st = (double)t->step;
    pnetrt_train_call call = {inputs, params, t->slots, t->stats, t->global, t->opt, batch, nch, t->step, (int64_t)t->seed,
                              t->lr, t->lr / (1 - pow(b1, st)), sqrt(1 - pow(b2, st)), 0, d->param_floats};
    run r = {.m = m, .t = t, .call = &call, .nch = nch, .lo = first[me], .hi = first[me + 1], .comm = comm,
             .first = first, .eval = eval, .fold_depth = depth};
    pnetrt_spin_barrier bars[256], all = PNETRT_BARRIER(threads);
    for (int g = 0; g < groups; g++) {
        int base = threads / groups, extra = threads % groups;
        bars[g] = PNETRT_BARRIER(base + (g < extra));
    }
    int at = K > 1 ? snprintf(t->schedule, sizeof t->schedule, "rank %d of %d, ", me, K) : 0;
    if (piped)
        snprintf(t->schedule + at, sizeof t->schedule - (size_t)at, "%d thread%s: %d pipeline%s of %d stages (%s, %d micro-batch%s)", threads,
                 threads == 1 ? "" : "s", p.R, p.R == 1 ? "" : "s", p.S, p.one_f_one_b ? "1f1b" : "gpipe", p.M,
                 p.M == 1 ? "" : "es");
    else
        snprintf(t->schedule + at, sizeof t->schedule - (size_t)at, "%d thread%s: %d replica%s, %lld chunk%s of %lld",
                 threads, threads == 1 ? "" : "s", groups, groups == 1 ? "" : "s", (long long)mine, mine == 1 ? "" : "s",
                 (long long)td->chunk);
    if (piped) {
        for (int i = 0; i < PNETRT_MAX_STAGES; i++) t->busy[i] = 0;
        t->pipe_mb = p.M < (nch + p.R - 1) / p.R ? p.M : (nch + p.R - 1) / p.R;
        double w0 = pnetrt_now_s();
        pnetrt_spin_barrier *pb = t->stage_bars;
        for (int i = 0; i < p.R * p.S; i++) pb[i] = PNETRT_BARRIER(p.count[i % p.S]);
        all.n = p.R * p.per;
        int team = p.R * p.per;
        bool alone = false;
#pragma omp parallel num_threads(team)
        {
            if (omp_get_num_threads() != team) {
#pragma omp single
                alone = true;
            } else {
                pipe_thread(&r, &p, omp_get_thread_num(), pb, &all);
            }
        }
        t->wall = pnetrt_now_s() - w0;
        if (alone) {
            t->wall = 0;
            /* The OpenMP runtime gave fewer threads: run unpipelined on one. */
            pnetrt_spin_barrier one = PNETRT_BARRIER(1), single = PNETRT_BARRIER(1);
            r.fold_depth = depth1;
            run_thread(&r, 0, 1, 1, &one, &single);
        }
    } else if (threads == 1) {
        t->wall = 0;
        run_thread(&r, 0, 1, 1, bars, &all);
    } else {
        t->wall = 0;
#pragma omp parallel num_threads(threads)
        {
            if (omp_get_num_threads() != threads) {
                /* Fewer threads than asked: one thread does everything. */
#pragma omp single
                {
                    pnetrt_spin_barrier one = PNETRT_BARRIER(1), alone = PNETRT_BARRIER(1);
                    r.fold_depth = depth1;
                    run_thread(&r, 0, 1, 1, &one, &alone);
                }
            } else {
                run_thread(&r, omp_get_thread_num(), threads, groups, bars, &all);
            }
        }
    }
    if (atomic_load(&r.failed)) return pnetrt_train_failf(m, "%s", r.err);
    if (!eval) t->grad = depth ? r.grad : t->slots;
    if (loss_sum) *loss_sum = tree_sum(t->tree, t->stats, td->stat_floats, nch);
    t->last_correct = (int64_t)llround(tree_sum(t->tree, t->stats + 1, td->stat_floats, nch));
    if (correct) *correct = t->last_correct;
    return 0;
}

static int train_step(pnetrt_model *m, int64_t batch, const void *const *inputs, float *loss) {
    double sum;
    if (run_step(m, batch, inputs, false, &sum, NULL)) return 1;
    const pnetrt_desc *d = pnetrt_model_desc(m);
    double denom = (double)batch;
    if (d->train->loss == PNETRT_LOSS_MSE) denom *= (double)pnetrt_sample_elems(&d->train->train_inputs[0]);
    if (loss) *loss = (float)(sum / denom);
    return 0;
}

int pnetrt_train_step(pnetrt_model *m, int64_t batch, const void *const *inputs, float *loss) {
    if (!m) return 1;
    pnetrt_lock(m);
    return pnetrt_unlock(m, train_step(m, batch, inputs, loss));
}

int pnetrt_eval(pnetrt_model *m, int64_t batch, const void *const *inputs, double *loss_sum, int64_t *correct) {
    if (!m) return 1;
    pnetrt_lock(m);
    return pnetrt_unlock(m, run_step(m, batch, inputs, true, loss_sum, correct));
}

static int set_lr(pnetrt_model *m, double lr) {
    pnetrt_trainer *t = pnetrt_trainer_get(m);
    if (!t) return 1;
    if (!(lr > 0) || !isfinite(lr))
        return pnetrt_train_failf(m, "learning rate %g must be a finite positive number", lr);
    t->lr = lr;
    return 0;
}

int pnetrt_set_lr(pnetrt_model *m, double lr) {
    if (!m) return 1;
    pnetrt_lock(m);
    return pnetrt_unlock(m, set_lr(m, lr));
}

static int train_freeze(pnetrt_model *m) {
    pnetrt_trainer *t = pnetrt_trainer_get(m);
    if (!t) return 1;
    t->lr = 0;
    return 0;
}

int pnetrt_train_freeze(pnetrt_model *m) {
    if (!m) return 1;
    pnetrt_lock(m);
    return pnetrt_unlock(m, train_freeze(m));
}

double pnetrt_lr(const pnetrt_model *m) {
    pnetrt_trainer *const *slot = pnetrt_trainer_slot((pnetrt_model *)m);
    const pnetrt_desc *d = pnetrt_model_desc(m);
    return *slot ? (*slot)->lr : d && d->train ? d->train->lr : 0;
}

static int set_train_seed(pnetrt_model *m, uint64_t seed) {
    pnetrt_trainer *t = pnetrt_trainer_get(m);
    if (!t) return 1;
    t->seed = seed;
    return 0;
}

int pnetrt_set_train_seed(pnetrt_model *m, uint64_t seed) {
    if (!m) return 1;
    pnetrt_lock(m);
    return pnetrt_unlock(m, set_train_seed(m, seed));
}

int64_t pnetrt_train_last_correct(const pnetrt_model *m) {
    pnetrt_trainer *const *slot = pnetrt_trainer_slot((pnetrt_model *)m);
    return *slot ? (*slot)->last_correct : 0;
}

const float *pnetrt_train_grad(const pnetrt_model *m) {
    pnetrt_trainer *const *slot = pnetrt_trainer_slot((pnetrt_model *)m);
    return *slot && (*slot)->step > 0 ? (*slot)->grad : NULL;
}

static int set_train_steps(pnetrt_model *m, int64_t steps) {
    pnetrt_trainer *t = pnetrt_trainer_get(m);
    if (!t) return 1;
    if (steps < 0) return pnetrt_train_failf(m, "step count %lld is negative", (long long)steps);
    t->step = steps;
    return 0;
}

int pnetrt_set_train_steps(pnetrt_model *m, int64_t steps) {
    if (!m) return 1;
    pnetrt_lock(m);
    return pnetrt_unlock(m, set_train_steps(m, steps));
}

double pnetrt_train_bubble(const pnetrt_model *m, double *predicted) {
    pnetrt_trainer *const *slot = pnetrt_trainer_slot((pnetrt_model *)m);
    const pnetrt_trainer *t = *slot;
    const pnetrt_desc *d = pnetrt_model_desc(m);
    if (!t || t->wall <= 0 || !d || !d->train || d->train->nstages < 2) return -1;
    int S = (int)d->train->nstages;
    double idle = 0;
    for (int s = 0; s < S; s++) idle += 1.0 - t->busy[s] / t->wall;
    /* GPipe and 1F1B idle alike in this model: S - 1 micro-batch slots of every stage's S - 1 + M. */
    if (predicted) *predicted = (double)(S - 1) / (double)(t->pipe_mb + S - 1);
    return idle / S;
}

const char *pnetrt_train_schedule(const pnetrt_model *m) {
    pnetrt_trainer *const *slot = pnetrt_trainer_slot((pnetrt_model *)m);
    return *slot ? (*slot)->schedule : "";
}

uint64_t pnetrt_train_seed(const pnetrt_model *m) {
    pnetrt_trainer *const *slot = pnetrt_trainer_slot((pnetrt_model *)m);
    const pnetrt_desc *d = pnetrt_model_desc(m);
    return *slot ? (*slot)->seed : d && d->train ? (uint64_t)d->train->seed : 0;
}

static int set_train_order(pnetrt_model *m, int64_t batch_size, int shuffle) {
    pnetrt_trainer *t = pnetrt_trainer_get(m);
    if (!t) return 1;
    t->batch_size = batch_size;
    t->shuffle = shuffle;
    return 0;
}

int pnetrt_set_train_order(pnetrt_model *m, int64_t batch_size, int shuffle) {
    if (!m) return 1;
    pnetrt_lock(m);
    return pnetrt_unlock(m, set_train_order(m, batch_size, shuffle));
}

bool pnetrt_train_order(const pnetrt_model *m, int64_t *batch_size, int *shuffle) {
    pnetrt_trainer *const *slot = pnetrt_trainer_slot((pnetrt_model *)m);
    if (!*slot || !(*slot)->checkpoint) return false;
    *batch_size = (*slot)->batch_size;
    *shuffle = (*slot)->shuffle;
    return true;
}

int64_t pnetrt_train_steps(const pnetrt_model *m) {
    pnetrt_trainer *const *slot = pnetrt_trainer_slot((pnetrt_model *)m);
    return *slot ? (*slot)->step : 0;
}
