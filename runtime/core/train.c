/* Training in libpnetrt: runs the generated step functions (pnetrt_abi.h, pnetrt_train_desc) on
 * the model's threads and keeps the optimizer state; checkpoints are saved and loaded in ckpt.c,
 * the gradient tree and the update are in train_fold.c, the threads' pipeline in train_pipe.c and
 * one pipeline stage per rank in train_ranks.c.
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

/* Mapped, so that pages join the resident set only as they are written: a rank that runs one
 * pipeline stage touches only its stage's part of the optimizer state, the global area and the
 * arena, which span the whole network. */
void *pnetrt_train_zalloc(size_t bytes) { return pnetrt_zmap(bytes ? bytes : 64); }

void pnetrt_train_free(void *p) { pnetrt_zunmap(p); }

static void trainer_free(pnetrt_trainer *t) {
    if (!t) return;
    pnetrt_train_free(t->slots);
    pnetrt_train_free(t->fold);
    pnetrt_train_free(t->recv);
    free(t->stage_ranges);
    free(t->stage_first);
    free(t->seg_ranges);
    free(t->seg_first);
    pnetrt_train_free(t->stats);
    pnetrt_train_free(t->global);
    pnetrt_train_free(t->opt);
    pnetrt_train_free(t->arena);
    pnetrt_train_free(t->scratch);
    pnetrt_train_free(t->tree);
    free(t->hand);
    free(t->stage_bars);
    pnetrt_comm_free(t->stage_comm);
    pnetrt_train_free(t->sendbuf);
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

float *pnetrt_train_opt(const pnetrt_trainer *t, int64_t k) {
    return (float *)((uintptr_t)(t->opt + k * t->opt_elems) - (uintptr_t)t->opt_first * sizeof(float));
}

bool pnetrt_train_staged(pnetrt_model *m) {
    const pnetrt_train_desc *td = pnetrt_model_desc(m)->train;
    return pnetrt_model_rank_stage(m) >= 0 && td && td->nstages > 1 && td->stage_fwd_first && td->stage_eval;
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
        /* The optimizer state: of every parameter, or on a rank that trains one pipeline stage,
         * of its stage's elements alone (the span of its parameters). */
        int64_t P = d->param_floats, nopt = d->train->opt_floats / (P > 0 ? P : 1);
        t->opt_first = 0;
        t->opt_elems = P;
        if (pnetrt_train_staged(m) && pnetrt_train_stage_map(m, t)) {
            int s = pnetrt_model_rank_stage(m);
            int64_t lo = P, hi = 0;
            for (int j = t->stage_first[s]; j < t->stage_first[s + 1]; j++) {
                if (t->stage_ranges[j].lo < lo) lo = t->stage_ranges[j].lo;
                if (t->stage_ranges[j].hi > hi) hi = t->stage_ranges[j].hi;
            }
            if (hi > P) hi = P;
            t->opt_first = hi > lo ? lo : 0;
            t->opt_elems = hi > lo ? hi - lo : 0;
        }
        t->opt = pnetrt_train_zalloc((size_t)(nopt * t->opt_elems) * sizeof(float));
        t->global = pnetrt_train_zalloc((size_t)d->train->global_floats * sizeof(float));
        if (!t->opt || !t->global) {
            trainer_free(t);
            pnetrt_train_failf(m, "out of memory for the optimizer state (%.0f bytes)",
                               4.0 * (double)(nopt * t->opt_elems + d->train->global_floats));
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
int pnetrt_train_reserve(pnetrt_model *m, pnetrt_trainer *t, int64_t batch, int groups, int threads, int64_t fold_bufs,
                         int64_t fold_floats) {
    const pnetrt_desc *d = pnetrt_model_desc(m);
    const pnetrt_train_desc *td = d->train;
    int64_t C = td->chunk;
    int64_t nch = (batch + C - 1) / C;
    if (batch > t->cap_batch) {
        pnetrt_train_free(t->stats);
        t->stats = pnetrt_train_zalloc((size_t)nch * (size_t)td->stat_floats * sizeof(float));
        pnetrt_train_free(t->tree);
        t->tree = pnetrt_train_zalloc((size_t)(nch + 1) * sizeof(double));
        if (!t->stats || !t->tree) {
            t->cap_batch = 0;
            return pnetrt_train_failf(m, "out of memory for the statistics of a batch of %lld: %.0f bytes needed",
                                      (long long)batch,
                                      (double)nch * (double)td->stat_floats * 4.0 + 8.0 * (double)(nch + 1));
        }
        t->cap_batch = batch;
    }
    /* The gradients: a folded tree's buffers, or one slot per chunk (a step whose parameter
     * gradients are written in several segments: pnetrt_train_folds). */
    if (fold_bufs * fold_floats > t->fold_cap) {
        pnetrt_train_free(t->fold);
        t->fold = pnetrt_train_zalloc((size_t)fold_bufs * (size_t)fold_floats * sizeof(float));
        t->fold_cap = t->fold ? fold_bufs * fold_floats : 0;
        if (!t->fold)
            return pnetrt_train_failf(
                m, "out of memory for the gradients: %lld partial sums of %lld parameters, %.0f bytes needed",
                (long long)fold_bufs, (long long)fold_floats, (double)fold_bufs * (double)fold_floats * 4.0);
    }
    if (!fold_bufs && nch > t->slot_cap) {
        pnetrt_train_free(t->slots);
        t->slots = pnetrt_train_zalloc((size_t)nch * (size_t)d->param_floats * sizeof(float));
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
        pnetrt_train_free(t->arena);
        t->arena = pnetrt_train_zalloc(arena);
        t->arena_bytes = t->arena ? arena : 0;
        if (!t->arena) return pnetrt_train_failf(m, "out of memory for the training arena (%zu bytes)", arena);
    }
    size_t scratch = (size_t)threads * (size_t)d->scratch_bytes;
    if (scratch > t->scratch_bytes || !t->scratch) {
        pnetrt_train_free(t->scratch);
        t->scratch = pnetrt_train_zalloc(scratch);
        t->scratch_bytes = t->scratch ? scratch : 0;
        if (!t->scratch) return pnetrt_train_failf(m, "out of memory for scratch (%zu bytes)", scratch);
    }
    return 0;
}

/* The bytes reserve allocates for a batch at most (the pipeline's arena aside): checked before any
 * input is read, so that a batch larger than memory fails with a message, not a crash or the
 * kernel's out-of-memory killer. */
static double step_bytes(pnetrt_model *m, int64_t batch) {
    const pnetrt_desc *d = pnetrt_model_desc(m);
    const pnetrt_train_desc *td = d->train;
    double nch = (double)((batch + td->chunk - 1) / td->chunk);
    /* Gradients: one slot per chunk where a parameter's gradient is written in several segments,
     * else the folded tree's partial sums
     * (gradtree.h; about two stacks' worth for the groups), of a stage rank's stage's elements
     * alone (its optimizer state's). */
    double grads = !pnetrt_train_folds(d) ? nch : fmin(nch, 2.0 * pnetrt_tree_depth((int64_t)nch));
    pnetrt_trainer *const *slot = pnetrt_trainer_slot(m);
    double elems = *slot && pnetrt_train_staged(m) ? (double)(*slot)->opt_elems : (double)d->param_floats;
    double per_chunk = 4.0 * (double)td->stat_floats + 8.0;
    int64_t held = td->nsegments > 1 || batch < 256 * td->chunk ? batch : 256 * td->chunk;
    return nch * per_chunk + grads * 4.0 * elems + (double)held * (double)td->sample_bytes;
}

static int check_inputs(pnetrt_model *m, int64_t batch, const void *const *inputs) {
    const pnetrt_desc *d = pnetrt_model_desc(m);
    const pnetrt_train_desc *td = d->train;
    if (batch < 1) return pnetrt_train_failf(m, "batch size %lld must be at least 1", (long long)batch);
    if (pnetrt_check_batch(m, batch, d->inputs, d->ninputs) ||
        pnetrt_check_batch(m, batch, td->train_inputs, td->ntrain_inputs))
        return 1;
    if (step_bytes(m, batch) > pnetrt_memory_limit())
        return pnetrt_train_failf(
            m, "a training step on a batch of %lld needs %.3g GB, more than half of this machine's memory",
            (long long)batch, step_bytes(m, batch) / 1e9);
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
double pnetrt_train_tree_sum(double *a, const float *v, int64_t stride, int64_t n) {
    if (n <= 0) return 0;
    for (int64_t i = 0; i < n; i++) a[i] = v[i * stride];
    for (int64_t s = 1; s < n; s *= 2)
        for (int64_t i = 0; i + s < n; i += 2 * s) a[i] += a[i + s];
    return a[0];
}




/* Samples of chunk ch of the step (the last may be short). */
int64_t pnetrt_train_chunk_samples(const run *r, int64_t ch) {
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
    int64_t c0 = r->split[g], c1 = r->split[g + 1];
    bool own = td->nsegments == 1 || r->eval;
    char *arena = own ? r->t->arena + (size_t)g * (size_t)C * (size_t)td->sample_bytes : r->t->arena;
    bool tr = pnetrt_tracing(r->m);
    double b = tr ? pnetrt_now_s() : 0;
    if (!r->wt_ok) {
        td->prep(r->call, t, nth);
        if (tr) pnetrt_trace_slice(r->m, PNETRT_TRACE_PREP, b, pnetrt_now_s(), -1, g, 0, 0);
    }
    pnetrt_barrier_wait(all, &sense);
    int64_t nseg = r->eval ? 1 : td->nsegments;
    pnetrt_trace_kind kind = r->eval ? PNETRT_TRACE_EVAL : nseg > 1 ? PNETRT_TRACE_SEGMENT : PNETRT_TRACE_STEP_CHUNK;
    pnetrt_range every = {0, d->param_floats};
    fold_stack st = {.own = &every, .nown = 1};
    if (r->fold_depth) st.base = r->t->fold + (int64_t)g * r->fold_depth * d->param_floats; /* every element: elem_lo 0 */
    for (int64_t k = 0; k < nseg; k++) {
        pnetrt_segment_fn seg = r->eval ? td->eval : td->segments[k];
        if (r->fold_depth && nseg > 1) {
            /* Segment k folds the gradients its kernels wrote, and only those: the group's chunks
             * run in the same order in every segment, so its stack has the same blocks in the same
             * buffers at every point, and each segment's sums sit in its own elements of them. */
            st.top = 0;
            st.own = r->t->seg_ranges + r->t->seg_first[k];
            st.nown = r->t->seg_first[k + 1] - r->t->seg_first[k];
        }
        double b0 = pnetrt_now_s();
        for (int64_t ch = c0; ch < c1; ch++) {
            if (tr) b = pnetrt_now_s();
            if (r->fold_depth) { /* the chunk's gradients of this segment's parameters are whole after it */
                pnetrt_train_fold_chunk(r, &st, seg, ch, arena, own ? C : r->t->cap_batch, own ? ch * C : 0, scratch,
                                        ith, size);
            } else {
                seg(r->call, ch, arena, own ? C : r->t->cap_batch, own ? ch * C : 0, scratch, ith, size);
                pnetrt_barrier(); /* the group's arena is reused by its next chunk */
            }
            if (tr) pnetrt_trace_slice(r->m, kind, b, pnetrt_now_s(), -1, g, ch, pnetrt_train_chunk_samples(r, ch));
        }
        if (ith == 0) r->t->split.took[g] += pnetrt_now_s() - b0; /* the next steps' cut (split.h) */
        /* The chunks' statistics (batchnorm partials, loss), and after the last segment their
         * gradients, are combined next: by the sync, or by the update and the loss tree. */
        bool grads = k + 1 == nseg && !r->eval;
        if (tr) b = pnetrt_now_s();
        pnetrt_train_reduce_point(r, all, &sense, grads, t);
        if (tr) pnetrt_trace_slice(r->m, PNETRT_TRACE_REDUCE, b, pnetrt_now_s(), -1, g, k, 0);
        if (k + 1 < nseg) {
            if (tr) b = pnetrt_now_s();
            td->syncs[k](r->call, t, nth);
            pnetrt_barrier_wait(all, &sense);
            if (tr) pnetrt_trace_slice(r->m, PNETRT_TRACE_SYNC, b, pnetrt_now_s(), -1, g, k, 0);
        }
    }
    if (tr) b = pnetrt_now_s();
    if (!r->eval) pnetrt_train_update(r, groups, t, nth, all, &sense);
    if (tr && !r->eval) pnetrt_trace_slice(r->m, PNETRT_TRACE_UPDATE, b, pnetrt_now_s(), -1, g, 0, 0);
    pnetrt_barrier_bind(NULL);
}


/* "runs of 5+3 chunks by the replicas' speed": a step's runs cut by speed (split.h) among
 * `who`, for its schedule (the shortest and longest where there are many); returns the length. */
static int schedule_runs(char *out, size_t room, int groups, const int64_t *split, const char *who) {
    int at = snprintf(out, room, "runs of ");
    int64_t lo = INT64_MAX, hi = 0;
    for (int g = 0; g < groups; g++) {
        int64_t n = split[g + 1] - split[g];
        if (n < lo) lo = n;
        if (n > hi) hi = n;
        if (groups <= 4 && at >= 0 && (size_t)at < room) at += snprintf(out + at, room - (size_t)at, "%s%lld", g ? "+" : "", (long long)n);
    }
    if (groups > 4 && at >= 0 && (size_t)at < room) at += snprintf(out + at, room - (size_t)at, "%lld to %lld", (long long)lo, (long long)hi);
    if (at >= 0 && (size_t)at < room) at += snprintf(out + at, room - (size_t)at, " chunks by the %s speed", who);
    return at >= 0 && (size_t)at < room ? at : (int)room - 1;
}

/* After a training step on ranks whose runs may be cut by speed: every rank's seconds in its
 * chunks (the busiest of its groups), gathered on every rank, make the ranks' next cut, the same
 * on each (split.h). A rank that does not adapt (PNET_ADAPTIVE_THREADS=0) sends 0, which keeps
 * the runs equal. For tests (docs/testing.md), rank k reports the kth value of
 * PNET_TEST_RANK_SECONDS ("1,3") as its seconds per chunk instead of its measurement; every rank
 * still cuts by what all reported. 0, or 1 with the error set. */
static int gather_rank_speeds(pnetrt_model *m, pnetrt_trainer *t, pnetrt_comm *comm, const int64_t *first, double busy) {
    int K = pnetrt_comm_size(comm), me = pnetrt_comm_rank(comm);
    double took[K];
    int64_t at[K + 1];
    for (int k = 0; k <= K; k++) at[k] = k;
    took[me] = pnetrt_adaptive(m) ? busy : 0;
    const char *rs = getenv("PNET_TEST_RANK_SECONDS");
    char *e = (char *)(rs ? rs : "");
    for (int k = 0; *e && k <= me; k++) {
        double v = strtod(e, &e);
        if (k == me && v > 0) took[me] = v * (double)(first[me + 1] - first[me]);
        if (*e != ',') break;
        e++;
    }
    char err[256];
    if (pnetrt_comm_allgather_bytes(comm, took, sizeof(double), at, err, sizeof err))
        return pnetrt_train_failf(m, "gathering the ranks' speeds: %s", err);
    for (int k = 0; k < K && k < PNETRT_SPLIT_GROUPS; k++) t->rank_split.took[k] = took[k];
    pnetrt_split_measured(&t->rank_split, K, K, first);
    return 0;
}

/* A step's two plans, the first two slots of its pnetrt_plans (plan.h): as scheduled (a pipeline,
 * or replicas on the team's threads), or on one thread. */
enum { STEP_PIPELINE = 0, STEP_SPLIT = 0, STEP_ONE = 1, STEP_CORES = 2 };

/* Whether a step should weigh running on one thread (plan.h): once measured at this batch,
 * always; before, a pipelined step only after one whose wall time exceeded its stages' busy time
 * added up, which is about what one thread would take, and a replicas' step only while the machine
 * has more runnable threads than cores (wait.h). A quiet machine's step never does, so it is not
 * slowed by trying a plan that cannot win; a busy machine's does within a step. */
static bool one_worth(const pnetrt_trainer *t, int64_t batch, bool piped, int S) {
    if (t->try_plans || (t->plans.batch == batch && t->plans.cost[STEP_ONE] > 0)) return true;
    if (!piped) return pnetrt_machine_oversubscribed();
    double work = 0;
    for (int s = 0; s < S && s < PNETRT_MAX_STAGES; s++) work += t->busy[s];
    return t->wall > 0 && t->wall > work;
}

static int run_step(pnetrt_model *m, int64_t batch, const void *const *inputs, bool eval, double *loss_sum,
                    int64_t *correct) {
    pnetrt_trainer *t = pnetrt_trainer_get(m);
    if (!t) return 1;
    if (check_inputs(m, batch, inputs)) return 1;
    const pnetrt_desc *d = pnetrt_model_desc(m);
    const pnetrt_train_desc *td = d->train;
    if (pnetrt_model_rank_stage(m) >= 0) {
        /* One pipeline stage per rank: training and evaluation run the rank's stage; a rank that
         * holds every parameter (an embedding program's) trains a network whose stages cannot
         * pipeline as a replica. */
        if (pnetrt_train_staged(m)) {
            int rc = pnetrt_train_rank_step(m, t, batch, inputs, eval, loss_sum);
            if (!rc && correct) *correct = t->last_correct;
            return rc;
        }
        if (pnetrt_model_partial(m))
            return pnetrt_train_failf(m, "network '%s' %s its stages in turn (batchnorm needs the whole batch), so one stage "
                                         "per rank cannot run it; use --rank-layout replicas",
                                      d->name, eval ? "evaluates" : "trains");
    }
    int64_t nch = (batch + td->chunk - 1) / td->chunk;
    /* Ranks take contiguous runs of chunks, as thread groups do within a rank: rank k owns
     * [first[k], first[k + 1]); equal runs, or once every rank's speed is known, runs cut by it
     * (split.h), the same on every rank. */
    pnetrt_comm *comm = pnetrt_model_comm(m);
    int K = pnetrt_comm_size(comm), me = pnetrt_comm_rank(comm);
    int64_t first[K + 1];
    /* (A pipeline's buffers follow its run, so a network that may pipeline keeps equal runs.) A
     * rank's run is at most twice the equal one, which bounds the buffers reserved for it. */
    bool may_cut = K > 1 && K <= PNETRT_SPLIT_GROUPS && !(td->nstages > 1 && pnetrt_pipelined(m));
    int64_t cap = 2 * ((nch + K - 1) / K) < nch ? 2 * ((nch + K - 1) / K) : nch;
    bool rank_cut = may_cut && pnetrt_split_chunks(&t->rank_split, K, K, 0, nch, 0, cap, first);
    if (!may_cut)
        for (int k = 0; k <= K; k++) first[k] = nch * k / K;
    /* The team is sized by the equal run, so that a cut that moves never grows the buffers. */
    int64_t equal = nch * (me + 1) / K - nch * me / K, mine = first[me + 1] - first[me];
    int threads = pnetrt_call_threads(m);
    if (threads < 1) threads = 1;
    /* A small step runs on fewer threads, as a small inference call does (a step is about three
     * forward passes). The weights do not depend on the count. */
    threads = pnetrt_work_threads(m, (eval ? 1.0 : 3.0) * pnetrt_flops_per_sample(m) * (double)(equal * td->chunk),
                                  threads);
    bool grad_add = pnetrt_train_grad_add(m);
    int groups = pnetrt_replicas_chosen(m);
    if (groups < 1) groups = threads;
    if (groups > threads) groups = threads;
    if (groups > 256) groups = 256;
    if (groups > equal) groups = equal > 0 ? (int)equal : 1;
    int groups_eq = groups; /* (a cut run of fewer chunks than that has fewer groups, of a chunk each) */
    if (groups > mine) groups = mine > 0 ? (int)mine : 1;
    /* A network whose chunks add their gradients into their left siblings' slots (grad_add: every
     * trained parameter a dense layer's), where every group would take a single chunk, runs its
     * chunks as one group of all the threads instead: each kernel splits its weights' panels among
     * the threads, so each core streams a share of the weights rather than all of them, and the
     * chunks pair in one stack, so the update reads half the partial sums (mlp_s at batch 64 on 2
     * threads: 15% faster; docs/performance.md). Any groups fold the same tree: the same bits. */
    if (K == 1 && !eval && groups > 1 && mine <= groups && !pnetrt_replicas_chosen(m) && grad_add) groups = 1;
    pipe p;
    bool piped = !eval && mine > 0 && pnetrt_train_plan_pipe(m, mine, threads, &p);
    /* A step in this process may instead run on one thread, same bits, when that is measured
     * cheaper (plan.h): on a busy machine, a thread that waits for a core holds up the others at
     * the next reduction point, a pipeline's other stages too, and each step's join waits for
     * every thread. One thread is first tried once the step has been seen to need it (one_worth):
     * a pipeline of one replica, or replicas that the runtime picked for a training step (not
     * evaluation, whose calls would mix their costs with training's). Replicas asked for more
     * threads than the process has CPUs also weigh a third plan from the first step: one thread
     * per CPU (as many replicas), whose threads do not take turns on the cores. */
    int cpus = omp_get_num_procs(), asked = threads;
    bool over = !piped && threads > cpus && cpus >= 1;
    bool adapt = !eval && threads > 1 && K == 1 &&
                 (piped ? p.R == 1 && pnetrt_plans_free(m, true)
                        : pnetrt_plans_free(m, false) && !pnetrt_replicas_chosen(m)) &&
                 (over || one_worth(t, batch, piped, piped ? p.S : 0)),
         probe = false;
    int plan = adapt ? pnetrt_plan_pick(&t->plans, batch, asked, over ? 3 : 2, &probe) : STEP_SPLIT;
    t->last_plan = plan == STEP_ONE ? PNETRT_PLAN_ONE : PNETRT_PLAN_STATIC;
    if (plan == STEP_CORES) {
        threads = cpus;
        if (groups > threads) groups = threads;
    }
    /* Fold the gradient tree as chunks complete (gradtree.h) unless a parameter's gradient is
     * written in several segments: each group then holds its stack's deepest, not a slot per
     * chunk. A step cut into segments by batchnorm folds each segment's parameters' gradients as
     * that segment completes its chunks, in the same buffers (run_thread). */
    int depth = 0, depth1 = 0; /* buffers per group; and for one group, should OpenMP give one thread */
    /* The same choice on every rank (they must meet at the same reduction points): not for a
     * network that may run pipelined, whose stages fill the slots at different times. */
    bool fold = !eval && pnetrt_tree_depth(nch) <= 128 &&
                (td->nsegments == 1 ? !(td->nstages > 1 && pnetrt_pipelined(m)) || pnetrt_train_stage_map(m, t)
                                    : pnetrt_train_segment_map(d, t));
    /* The groups' runs of this rank's chunks (a pipeline's replicas': its stages share their
     * replica's stack): equal here; replica groups may cut them by speed below (split.h). */
    int runs = piped ? p.R : groups;
    int64_t split[(runs > PNETRT_SPLIT_GROUPS ? runs : PNETRT_SPLIT_GROUPS) + 1], whole[2] = {first[me], first[me + 1]};
    for (int g = 0; g <= runs; g++) split[g] = first[me] + mine * g / runs;
    if (fold) {
        pnetrt_blk stack[128];
        for (int g = 0; g < runs; g++) {
            int most;
            pnetrt_tree_stack(split[g], split[g + 1], stack, &most);
            if (most > depth) depth = most;
        }
        /* Two buffers more per group than equal runs need, for runs cut by the groups' speed
         * (split.h; pages that no stack reaches are never written, so they cost no memory). */
        if (!piped && groups > 1) depth = depth + 2 < pnetrt_tree_depth(mine) ? depth + 2 : pnetrt_tree_depth(mine);
        /* On ranks whose runs are cut by speed, room from the first step for the stack of any run
         * a group may get: its equal share of a rank's longest run, which the cut of the rank's
         * chunks among its groups keeps to (moving toward equal runs). */
        if (may_cut) depth = pnetrt_split_depth(&t->split, nch, (cap + groups_eq - 1) / groups_eq);
        pnetrt_tree_stack(first[me], first[me + 1], stack, &depth1);
        if (may_cut) depth1 = pnetrt_split_depth(&t->rank_split, nch, cap); /* any run the cut may give */
        if (depth < 1) depth = 1; /* a rank without chunks still folds: it receives the gradient */
        if (depth1 < 1) depth1 = 1;
    }
    int64_t fold_bufs = (int64_t)runs * depth > depth1 ? (int64_t)runs * depth : depth1;
    int bad = pnetrt_train_reserve(m, t, batch, groups, threads, fold_bufs, d->param_floats) || (piped && pnetrt_train_reserve_pipe(m, t, &p));
    if (!bad && K > 1 && fold) {
        /* The other ranks' partial sums of this rank's slice of the gradient (fold_finish). */
        int64_t blocks = 0, P = d->param_floats;
        pnetrt_blk stack[128];
        for (int k = 0; k < K; k++)
            blocks += k == me ? 0 : may_cut ? pnetrt_split_depth(&t->rank_split, nch, cap)
                                            : pnetrt_tree_stack(first[k], first[k + 1], stack, NULL);
        int64_t need = blocks * ((me + 1 == K ? P : P / 16 * (me + 1) / K * 16) - P / 16 * me / K * 16);
        if (need > t->recv_cap) {
            pnetrt_train_free(t->recv);
            t->recv = pnetrt_train_zalloc((size_t)need * sizeof(float));
            t->recv_cap = t->recv ? need : 0;
            if (!t->recv)
                bad = pnetrt_train_failf(m, "out of memory for the ranks' partial gradients: %.0f bytes needed",
                                         4.0 * (double)need);
        }
    }
    /* The transposed weights are still the parameters' when no one wrote these since (the step
     * itself writes them only through its update, which transposes W again). */
    bool wt_ok = t->wt_gen && t->wt_gen == pnetrt_params_gen(m);
    t->wt_gen = 0;
    float *params = bad ? NULL : pnetrt_params_mut(m);
    if (!bad && !params) bad = pnetrt_model_partial(m) ? 1 : pnetrt_train_failf(m, "out of memory");
    /* Every rank goes on, or none does: a rank that failed here would leave the others waiting in
     * the step's first reduction point. */
    if (!pnetrt_comm_all_ok(comm, !bad))
        return bad ? 1 : pnetrt_train_failf(m, "another rank could not start the step");
    if (!eval) t->step++;
    double b1 = td->beta1, b2 = td->beta2, st = (double)t->step;
    pnetrt_train_call call = {inputs, params, t->slots, t->stats, t->global, pnetrt_train_opt(t, 0), batch, nch, t->step,
                              (int64_t)t->seed, t->lr, t->lr / (1 - pow(b1, st)), sqrt(1 - pow(b2, st)), 0, d->param_floats,
                              t->opt_elems, NULL, 0, 0};
    run r = {.m = m, .t = t, .call = &call, .nch = nch, .lo = first[me], .hi = first[me + 1], .comm = comm,
             .first = first, .eval = eval, .fold_depth = depth, .wt_ok = wt_ok, .grad_add = grad_add};
    bool one = t->last_plan == PNETRT_PLAN_ONE;
    /* Replica groups' runs cut by their measured speed (split.h); one thread runs them all. */
    bool weighted = !piped && !one && threads > 1 && (pnetrt_adaptive(m) || t->split.fixed) &&
                    pnetrt_split_chunks(&t->split, groups, threads, first[me], first[me + 1], r.fold_depth, 0, split);
    r.split = one ? whole : split;
    pnetrt_spin_barrier bars[256], all = PNETRT_BARRIER(threads);
    for (int g = 0; g < groups; g++) {
        int base = threads / groups, extra = threads % groups;
        bars[g] = PNETRT_BARRIER(base + (g < extra));
    }
    int at = 0;
    if (K > 1) { /* "rank 0 of 2 (runs of 3+5 chunks by the ranks' speed), " (short: it fits) */
        at = snprintf(t->schedule, sizeof t->schedule, "rank %d of %d%s", me, K, rank_cut ? " (" : "");
        if (rank_cut) at += schedule_runs(t->schedule + at, sizeof t->schedule - (size_t)at, K, first, "ranks'");
        at += snprintf(t->schedule + at, sizeof t->schedule - (size_t)at, "%s, ", rank_cut ? ")" : "");
        if ((size_t)at >= sizeof t->schedule) at = (int)sizeof t->schedule - 1;
    }
    if (one)
        snprintf(t->schedule + at, sizeof t->schedule - (size_t)at, "1 thread: %lld chunk%s of %lld, %s (one runs "
                 "faster on this busy machine)", (long long)mine, mine == 1 ? "" : "s", (long long)td->chunk,
                 piped ? "unpipelined" : "one replica");
    else if (piped)
        snprintf(t->schedule + at, sizeof t->schedule - (size_t)at, "%d thread%s: %d pipeline%s of %d stages (%s, %d micro-batch%s)", threads,
                 threads == 1 ? "" : "s", p.R, p.R == 1 ? "" : "s", p.S, p.one_f_one_b ? "1f1b" : "gpipe", p.M,
                 p.M == 1 ? "" : "es");
    else {
        at += snprintf(t->schedule + at, sizeof t->schedule - (size_t)at, "%d thread%s: %d replica%s, %lld chunk%s of %lld%s",
                       threads, threads == 1 ? "" : "s", groups, groups == 1 ? "" : "s", (long long)mine, mine == 1 ? "" : "s",
                       (long long)td->chunk, plan == STEP_CORES ? " (one per CPU: faster than the threads asked for)" : "");
        if (weighted && (size_t)at + 2 < sizeof t->schedule) {
            at += snprintf(t->schedule + at, sizeof t->schedule - (size_t)at, ", ");
            schedule_runs(t->schedule + at, sizeof t->schedule - (size_t)at, groups, split, "replicas'");
        }
    }
    bool fewer = false;
    if (one) {
        t->wall = 0;
        double w0 = pnetrt_now_s();
        pnetrt_spin_barrier solo = PNETRT_BARRIER(1), single = PNETRT_BARRIER(1);
        r.fold_depth = depth1;
        run_thread(&r, 0, 1, 1, &solo, &single);
        pnetrt_plan_measured(&t->plans, STEP_ONE, probe, pnetrt_now_s() - w0, batch);
    } else if (piped) {
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
                pnetrt_train_pipe_thread(&r, &p, omp_get_thread_num(), pb, &all);
            }
        }
        t->wall = pnetrt_now_s() - w0;
        if (adapt && !alone) pnetrt_plan_measured(&t->plans, STEP_PIPELINE, probe, t->wall, batch);
        if (alone) {
            t->wall = 0;
            /* The OpenMP runtime gave fewer threads: run unpipelined on one. */
            pnetrt_spin_barrier one = PNETRT_BARRIER(1), single = PNETRT_BARRIER(1);
            r.fold_depth = depth1;
            r.split = whole;
            run_thread(&r, 0, 1, 1, &one, &single);
        }
    } else if (threads == 1) {
        t->wall = 0;
        run_thread(&r, 0, 1, 1, bars, &all);
    } else {
        t->wall = 0;
        double w0 = pnetrt_now_s();
#pragma omp parallel num_threads(threads)
        {
            if (omp_get_num_threads() != threads) {
                /* Fewer threads than asked: one thread does everything. */
#pragma omp single
                {
                    fewer = true;
                    pnetrt_spin_barrier one = PNETRT_BARRIER(1), alone = PNETRT_BARRIER(1);
                    r.fold_depth = depth1;
                    r.split = whole;
                    run_thread(&r, 0, 1, 1, &one, &alone);
                }
            } else {
                run_thread(&r, omp_get_thread_num(), threads, groups, bars, &all);
            }
        }
        if (adapt && !fewer) pnetrt_plan_measured(&t->plans, plan, probe, pnetrt_now_s() - w0, batch);
    }
    /* The seconds each group spent in its chunks: the next cut of this rank's chunks among its
     * groups, and (the busiest) of the ranks' runs (split.h). */
    double busy = pnetrt_split_busiest(&t->split, groups);
    /* (Evaluation steps, forward alone and often on fewer threads, measure nothing.) */
    pnetrt_split_measured(&t->split, !eval && !one && !piped && threads > 1 && !fewer ? groups : 1, threads, split);
    if (atomic_load(&r.failed)) return pnetrt_train_failf(m, "%s", r.err);
    if (may_cut && !eval && gather_rank_speeds(m, t, comm, first, busy)) return 1;
    if (!eval) pnetrt_train_keep_grad(t, &r);
    /* In this process alone the prep made W^T of every dense layer, or it was still valid, and
     * the update wrote it again with W (optim.c); ranks all-gather W after their updates. */
    if (K < 2) t->wt_gen = pnetrt_params_gen(m);
    if (loss_sum) *loss_sum = pnetrt_train_tree_sum(t->tree, t->stats, td->stat_floats, nch);
    t->last_correct = (int64_t)llround(pnetrt_train_tree_sum(t->tree, t->stats + 1, td->stat_floats, nch));
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

static int train_try_plans(pnetrt_model *m) {
    pnetrt_trainer *t = pnetrt_trainer_get(m);
    if (!t) return 1;
    t->try_plans = true;
    return 0;
}

int pnetrt_train_try_plans(pnetrt_model *m) {
    if (!m) return 1;
    pnetrt_lock(m);
    return pnetrt_unlock(m, train_try_plans(m));
}

static int train_fix_split(pnetrt_model *m, const double *sec, int groups) {
    pnetrt_trainer *t = pnetrt_trainer_get(m);
    if (!t) return 1;
    pnetrt_split_fix(&t->split, sec, groups);
    return 0;
}

int pnetrt_train_fix_split(pnetrt_model *m, const double *sec, int groups) {
    if (!m || (groups > 0 && !sec)) return 1;
    pnetrt_lock(m);
    return pnetrt_unlock(m, train_fix_split(m, sec, groups));
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
    return *slot && (*slot)->step > 0 ? pnetrt_train_whole_grad(*slot) : NULL;
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
