/* The gradient of a training step (train_impl.h): each group's chunks folded into the fixed tree
 * as they complete (gradtree.h), the groups' and ranks' partial sums combined by the same tree (a
 * reduce-scatter along it across ranks), the update of the parameters (on ranks, each its slice,
 * then an all-gather), and the reduction points of the chunks' statistics. */
#include "comm.h"
#include "gradtree.h"
#include "model.h"
#include "trace.h"
#include "train_impl.h"

#include <math.h>
#include <omp.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Chunk ch's call: its gradients go to buf. The generated code addresses chunk ch's slot as
 * call->slots + ch * param_floats, so the copy's slots points that far before buf (computed as an
 * integer: the generated code never reads below buf). */
static pnetrt_train_call chunk_call(const pnetrt_train_call *call, int64_t ch, float *buf, int64_t P) {
    pnetrt_train_call c = *call;
    c.slots = (float *)((uintptr_t)buf - (uintptr_t)ch * (uintptr_t)P * sizeof(float));
    return c;
}

/* Whether the update adds the tree's last partial sums as it reads them (fold_finish): in this
 * process alone; on ranks the tree is finished slice by slice on the owners first. */
static bool fused(const run *r) { return pnetrt_comm_size(r->comm) < 2; }

bool pnetrt_train_grad_add(const pnetrt_model *m) {
    const char *e = getenv("PNET_GRAD_ADD");
    return pnetrt_model_desc(m)->train->grad_add && !(e && strcmp(e, "0") == 0);
}

/* Runs f on chunk ch with its gradients in the stack's next free buffer, then pushes the chunk,
 * adding siblings; the group's threads meet after each (the gradients whole, the arena and the
 * buffers added from free again). Where the stack's top is chunk ch - 1 alone, ch's left sibling,
 * and r->grad_add, f adds ch's gradients into that buffer as its kernels store them (the tree's
 * addition of the two, the same operands), and the pair is pushed as one block. The step's last
 * chunk (or pair), when the update finishes the tree, is pushed without adding: the update adds it
 * as it reads the stack (gradtree.h). */
void pnetrt_train_fold_chunk(const run *r, fold_stack *st, pnetrt_segment_fn f, int64_t ch, char *arena, int64_t cap,
                       int64_t base, char *scratch, int ith, int size) {
    int64_t P = pnetrt_model_desc(r->m)->param_floats;
    pnetrt_blk b = {ch, 1};
    bool into = r->grad_add && st->top >= 1 && pnetrt_tree_siblings(st->blk[st->top - 1], b);
    float *buf = into ? st->bufs[st->top - 1] : pnetrt_train_fold_buf(r->call, st->base, st->top);
    pnetrt_train_call cc = chunk_call(r->call, ch, buf, P);
    cc.grad_add = into;
    f(&cc, ch, arena, cap, base, scratch, ith, size);
    pnetrt_barrier();
    if (into) b = (pnetrt_blk){ch - 1, 2}, st->top--;
    if (ch == r->hi - 1 && fused(r)) {
        st->blk[st->top] = b;
        st->bufs[st->top++] = buf;
        return;
    }
    if (pnetrt_tree_push(st->blk, st->bufs, &st->top, b, buf, st->own, st->nown, ith, size)) pnetrt_barrier();
}

float *pnetrt_train_fold_buf(const pnetrt_train_call *call, float *base, int64_t j) {
    int64_t W = call->elem_hi - call->elem_lo;
    return (float *)((uintptr_t)(base + j * W) - (uintptr_t)call->elem_lo * sizeof(float));
}

/* Slice k of K of the gradient's (and the parameters') elements [lo, hi), [e[k], e[k + 1]): whole
 * 16-float blocks (lo is a parameter's offset, a multiple of 16), the last slice taking the rest. */
static void slices(int64_t lo, int64_t hi, int K, int64_t *e) {
    for (int k = 0; k <= K; k++) e[k] = k == K ? hi : lo + (hi - lo) / 16 * k / K * 16;
}

/* After every group has folded its chunks: pushes the groups' stacks, in chunk order, onto one
 * (each thread of the team adding its share of the elements). In this process alone the blocks
 * left, at most PNETRT_MAX_SUMS of them (the rightmost added first where there are more), go to
 * the update, which adds them as it reads them; the last group's last chunk was pushed without
 * adding (pnetrt_train_fold_chunk), and is pushed so here. On ranks, the tree is finished: the
 * rank's stack goes to the owners of the gradient's slices (a reduce-scatter along the tree),
 * each owner adds every rank's partial sums of its slice (its own where they are) until at most
 * PNETRT_MAX_SUMS are left for its update of the slice, and the ranks all-gather the parameters
 * after the update. Fills sums and returns how many it holds. */
static int fold_finish(run *r, int groups, int t, int nth, pnetrt_spin_barrier *all, int *sense, float **sums) {
    pnetrt_range every = {r->call->elem_lo, r->call->elem_hi}; /* this rank's elements: all, or its stage's */
    pnetrt_blk blk[128], mine[128];
    float *bufs[128];
    int top = 0;
    for (int g = 0; g < groups; g++) {
        int64_t c0 = r->split[g], c1 = r->split[g + 1];
        bool raw = fused(r) && c1 == r->hi && c1 > c0; /* holds the step's last chunk, pushed unadded */
        int n = pnetrt_tree_stack(c0, raw ? c1 - 1 : c1, mine, NULL);
        /* The last chunk, or with grad_add the pair it made with its left sibling, whose buffer it
         * added into (a block lives in the buffer of its place in the stack). */
        pnetrt_blk last = {c1 - 1, 1};
        if (raw && r->grad_add && n >= 1 && pnetrt_tree_siblings(mine[n - 1], last)) last = (pnetrt_blk){mine[--n].lo, 2};
        for (int j = 0; j < n; j++)
            pnetrt_tree_push(blk, bufs, &top, mine[j], pnetrt_train_fold_buf(r->call, r->t->fold, (int64_t)g * r->fold_depth + j),
                             &every, 1, t, nth);
        if (raw) {
            blk[top] = last;
            bufs[top++] = pnetrt_train_fold_buf(r->call, r->t->fold, (int64_t)g * r->fold_depth + n);
        }
    }
    int K = pnetrt_comm_size(r->comm), me = pnetrt_comm_rank(r->comm);
    if (K < 2) {
        pnetrt_tree_finish(blk, bufs, &top, PNETRT_MAX_SUMS, &every, 1, t, nth);
        memcpy(sums, bufs, (size_t)top * sizeof *sums);
        return top;
    }
    int nb[K];
    int64_t e[K + 1], at[K];
    for (int k = 0; k < K; k++) nb[k] = pnetrt_tree_stack(r->first[k], r->first[k + 1], mine, NULL);
    slices(every.lo, every.hi, K, e);
    int64_t slice = e[me + 1] - e[me];
    for (int k = 0, sum = 0; k < K; sum += k == me ? 0 : nb[k], k++) at[k] = (int64_t)sum * slice;
    float *own[128]; /* this rank's partial sums, which stay in place */
    memcpy(own, bufs, (size_t)top * sizeof *own);
    pnetrt_barrier_wait(all, sense);
    if (t == 0) {
        double b = pnetrt_now_s();
        if (pnetrt_comm_exchange_slices(r->comm, own, nb, e, r->t->recv, r->err, sizeof r->err)) atomic_store(&r->failed, 1);
        /* "messages" slices: the reduce-scatter here and the all-gather after the update, in the same
         * order on every rank (bench/mpi.py pairs them to tell transfer from waiting on a slower rank). */
        pnetrt_trace_add(r->m, b, pnetrt_now_s(), PNETRT_TRACE_MESSAGES, 0, r->t->step, 0);
    }
    pnetrt_barrier_wait(all, sense);
    /* Every rank's partial sums of this rank's slice, in chunk order. A received slice is addressed
     * by the gradient's element index, so its pointer is offset back by e[me] (as an integer). The
     * blocks left, at most PNETRT_MAX_SUMS, go to the update, which adds them as it reads them. */
    pnetrt_range slice_own = {e[me], e[me + 1]};
    top = 0;
    for (int k = 0; k < K; k++) {
        int n = pnetrt_tree_stack(r->first[k], r->first[k + 1], mine, NULL);
        for (int j = 0; j < n; j++) {
            float *buf = k == me ? own[j]
                                 : (float *)((uintptr_t)(r->t->recv + at[k] + (int64_t)j * slice) -
                                             (uintptr_t)e[me] * sizeof(float));
            pnetrt_tree_push(blk, bufs, &top, mine[j], buf, &slice_own, 1, t, nth);
        }
    }
    pnetrt_tree_finish(blk, bufs, &top, PNETRT_MAX_SUMS, &slice_own, 1, t, nth);
    memcpy(sums, bufs, (size_t)top * sizeof *sums);
    return top;
}

/* The step's update on thread t of the team: with folding, over the tree's partial sums that
 * fold_finish leaves; else over the chunks' slots. */
void pnetrt_train_update(run *r, int runs, int t, int nth, pnetrt_spin_barrier *all, int *sense) {
    const pnetrt_train_desc *td = pnetrt_model_desc(r->m)->train;
    if (!r->fold_depth) {
        td->update(r->call, t, nth);
        return;
    }
    float *sums[PNETRT_MAX_SUMS];
    int n = fold_finish(r, runs, t, nth, all, sense, sums);
    if (t == 0) {
        memcpy(r->sums, sums, (size_t)n * sizeof *sums);
        r->nsums = n;
    }
    pnetrt_barrier_wait(all, sense);
    pnetrt_train_call cc = *r->call;
    cc.slots = sums[0];
    cc.nchunks = 1;
    cc.sums = sums;
    cc.nsums = n;
    int K = pnetrt_comm_size(r->comm);
    if (K < 2) {
        td->update(&cc, t, nth);
        return;
    }
    /* On ranks each updates its slice of the parameters (and of the optimizer state, which stays
     * sliced until a save gathers it), and the ranks all-gather the parameters. */
    int64_t e[K + 1];
    slices(r->call->elem_lo, r->call->elem_hi, K, e);
    int me = pnetrt_comm_rank(r->comm);
    cc.elem_lo = e[me];
    cc.elem_hi = e[me + 1];
    td->update(&cc, t, nth);
    pnetrt_barrier_wait(all, sense);
    if (t == 0) {
        double b = pnetrt_now_s();
        if (pnetrt_comm_allgather_bytes(r->comm, cc.params, 4, e, r->err, sizeof r->err)) atomic_store(&r->failed, 1);
        pnetrt_trace_add(r->m, b, pnetrt_now_s(), PNETRT_TRACE_MESSAGES, 0, r->t->step, 0);
        r->t->opt_comm = r->comm;
        r->t->opt_lo = r->call->elem_lo;
        r->t->opt_hi = r->call->elem_hi;
    }
    pnetrt_barrier_wait(all, sense);
}

/* The step's gradient, for pnetrt_train_grad: the update read the tree's last partial sums
 * without writing their sum, so it is added here, the same additions from the right. */
void pnetrt_train_keep_grad(pnetrt_trainer *t, const run *r) {
    if (!r->fold_depth) {
        t->grad = t->slots;
        t->nsums = 0;
        return;
    }
    memcpy(t->sums, r->sums, (size_t)r->nsums * sizeof *r->sums);
    t->nsums = r->nsums;
    int K = pnetrt_comm_size(r->comm);
    int64_t e[K + 1];
    slices(r->call->elem_lo, r->call->elem_hi, K, e); /* on ranks, this rank's slice is current */
    t->sums_lo = e[pnetrt_comm_rank(r->comm)];
    t->sums_hi = e[pnetrt_comm_rank(r->comm) + 1];
    t->grad_home = pnetrt_train_fold_buf(r->call, r->t->fold, 0);
    t->grad = t->grad_home;
}

const float *pnetrt_train_whole_grad(pnetrt_trainer *t) {
    if (!t->nsums) return t->grad;
    pnetrt_blk blk[PNETRT_MAX_SUMS] = {0}; /* the blocks' chunk counts do not matter to the adds */
    pnetrt_range every = {t->sums_lo, t->sums_hi};
    pnetrt_tree_finish(blk, t->sums, &t->nsums, 1, &every, 1, 0, 1);
    if (t->sums[0] != t->grad_home)
        memcpy(t->grad_home + t->sums_lo, t->sums[0] + t->sums_lo, (size_t)(t->sums_hi - t->sums_lo) * sizeof(float));
    t->nsums = 0;
    return t->grad;
}

int pnetrt_train_opt_whole(pnetrt_model *m) {
    pnetrt_trainer *t = *pnetrt_trainer_slot(m);
    if (!t || !t->opt_comm) return 0;
    const pnetrt_desc *d = pnetrt_model_desc(m);
    int K = pnetrt_comm_size(t->opt_comm);
    int64_t P = d->param_floats, e[K + 1];
    slices(t->opt_lo, t->opt_hi, K, e);
    char err[256];
    for (int64_t k = 0; k < d->train->opt_floats / (P > 0 ? P : 1); k++)
        if (pnetrt_comm_allgather_bytes(t->opt_comm, pnetrt_train_opt(t, k), 4, e, err, sizeof err))
            return pnetrt_train_failf(m, "gathering the optimizer state: %s", err);
    t->opt_comm = NULL;
    return 0;
}

/* The reduction point (transport.h) before the chunks' statistics, and with grads their parameter
 * gradients, are combined; the caller (thread t of the team) is in the group that wrote its chunks. */
void pnetrt_train_reduce_point(run *r, pnetrt_spin_barrier *all, int *sense, bool grads, int t) {
    const pnetrt_desc *d = pnetrt_model_desc(r->m);
    pnetrt_chunk_slots sets[2] = {{r->t->stats, d->train->stat_floats}, {r->t->slots, d->param_floats}};
    pnetrt_ranks ranks = {r->comm, r->first, t == 0};
    int nsets = grads && !r->fold_depth ? 2 : 1;
    if (pnetrt_reduce_point(all, sense, sets, nsets, &ranks, r->err, sizeof r->err)) atomic_store(&r->failed, 1);
}

bool pnetrt_train_folds(const pnetrt_desc *d) {
    const pnetrt_train_desc *td = d->train;
    if (td->nsegments == 1) return true;
    if (!td->grad_segment) return false;
    for (int64_t p = 0; p < d->nparams; p++)
        if (td->grad_segment[p] < -1 || td->grad_segment[p] >= td->nsegments) return false;
    return true;
}

/* Segment k's elements, in parameter order, adjacent parameters' merged (each padded to 16 floats,
 * as the buffer lays them out). */
bool pnetrt_train_segment_map(const pnetrt_desc *d, pnetrt_trainer *t) {
    if (t->seg_map) return t->seg_map > 0;
    const pnetrt_train_desc *td = d->train;
    int64_t np = d->nparams, S = td->nsegments;
    t->seg_ranges = calloc((size_t)(np > 0 ? np : 1), sizeof *t->seg_ranges);
    t->seg_first = calloc((size_t)S + 1, sizeof *t->seg_first);
    bool ok = t->seg_ranges && t->seg_first && pnetrt_train_folds(d);
    int n = 0;
    for (int64_t s = 0; ok && s < S; s++) {
        t->seg_first[s] = n;
        for (int64_t p = 0; p < np; p++)
            if (td->grad_segment[p] == s) {
                int64_t lo = d->params[p].offset, hi = lo + (pnetrt_sample_elems(&d->params[p]) + 15) / 16 * 16;
                if (n > t->seg_first[s] && t->seg_ranges[n - 1].hi == lo) t->seg_ranges[n - 1].hi = hi;
                else t->seg_ranges[n++] = (pnetrt_range){lo, hi};
            }
    }
    if (ok) t->seg_first[S] = n;
    t->seg_map = ok ? 1 : -1;
    return ok;
}
