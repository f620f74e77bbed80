/* Pipeline training with one stage per rank (train_impl.h). K = R x S ranks: rank k runs stage
 * s = k mod S of pipeline r = k / S, which trains chunks [nch*r/R, nch*(r+1)/R) of each step, in the micro-batches, order (GPipe or 1F1B) and arena
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

/* One operation of the rank's schedule: the forward or the backward of micro-batch q, chunks
 * [q0, q1) (n samples) in arena slot `slot`. */
typedef struct rop {
    bool fwd;
    int64_t q, q0, q1, n;
    char *slot;
} rop;

/* The operation after nf forwards and nb backwards, in the schedule's order (GPipe, or 1F1B with
 * `warm` forwards first); false when none is left. */
static bool next_op(const run *r, const rpipe *p, int64_t nf, int64_t nb, int64_t warm, rop *o) {
    int64_t M = p->M, C = pnetrt_model_desc(r->m)->train->chunk;
    if (nb >= M && nf >= M) return false;
    o->fwd = r->eval || (p->one_f_one_b ? nf < M && (nf < warm || nf - nb == warm) : nf < M);
    o->q = o->fwd ? nf : nb;
    int64_t c0 = r->lo, nc = r->hi - r->lo;
    o->q0 = c0 + nc * o->q / M;
    o->q1 = c0 + nc * (o->q + 1) / M;
    o->n = (o->q1 * C < r->call->batch ? o->q1 * C : r->call->batch) - o->q0 * C;
    o->slot = r->t->arena + (size_t)(o->q % p->K) * (size_t)p->cap * (size_t)pnetrt_model_desc(r->m)->train->sample_bytes;
    return true;
}

/* Whether operation o receives: a forward the values of stage s - 1, a backward the gradients of s + 1. */
static bool receives(const rpipe *p, const rop *o) { return o->fwd ? p->s > 0 : p->s < p->S - 1; }

/* Posts operation o's receives into its slot (thread 0). Returns 0, or 1 with r->err set. */
static int post_recv(run *r, rpipe *p, const rop *o, int me) {
    const pnetrt_train_desc *td = pnetrt_model_desc(r->m)->train;
    int s = p->s;
    return o->fwd ? rank_msgs(r, p, td->stage_fwd, td->stage_fwd_first[s], td->stage_fwd_first[s + 1], o->slot, o->n,
                              me - 1, false, 1000, r->t->recvq)
                  : rank_msgs(r, p, td->stage_bwd, td->stage_bwd_first[s], td->stage_bwd_first[s + 1], o->slot, o->n,
                              me + 1, false, 2000, r->t->recvq);
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
    int64_t warm = S - s - 1 < p->M ? S - s - 1 : p->M;
    int64_t nf = 0, nb = r->eval ? p->M : 0; /* evaluation: forwards alone */
    fold_stack st = {0};
    st.base = r->t->fold;
    st.own = r->t->stage_ranges + r->t->stage_first[s];
    st.nown = r->t->stage_first[s + 1] - r->t->stage_first[s];
    rop cur, nxt;
    bool posted = false; /* thread 0: cur's receive went out during the operation before it */
    while (next_op(r, p, nf, nb, warm, &cur)) {
        bool fwd = cur.fwd;
        int64_t q = cur.q, q0 = cur.q0, q1 = cur.q1, n = cur.n;
        char *slot = cur.slot;
        /* Receive what this stage reads: values from s - 1, or gradients from s + 1. */
        bool in = receives(p, &cur);
        if (in && t == 0 && !atomic_load(&p->failed)) {
            double w = pnetrt_now_s();
            if ((!posted && post_recv(r, p, &cur, me)) || pnetrt_msgs_wait(r->t->recvq, r->err, sizeof r->err))
                atomic_store(&p->failed, 1);
            if (tr) pnetrt_trace_add(r->m, w, pnetrt_now_s(), PNETRT_TRACE_MESSAGES, p->r, q, n);
        }
        /* The next operation's receive goes out now, to arrive while this one computes, unless
         * it lands in this one's slot. */
        posted = false;
        if (t == 0 && !atomic_load(&p->failed) && next_op(r, p, nf + fwd, nb + !fwd, warm, &nxt) && receives(p, &nxt) &&
            nxt.slot != cur.slot) {
            if (post_recv(r, p, &nxt, me)) atomic_store(&p->failed, 1);
            else posted = true;
        }
        if (in) pnetrt_barrier_wait(team, &sense);
        if (atomic_load(&p->failed)) break;
        pnetrt_segment_fn f = r->eval ? td->stage_eval[s] : fwd ? td->stage_forward[s] : td->stage_backward[s];
        b = pnetrt_now_s();
        for (int64_t ch = q0; ch < q1; ch++) {
            if (!fwd) {
                pnetrt_train_fold_chunk(r, &st, f, ch, slot, p->cap, q0 * C, scratch, t, nth);
                continue;
            }
            f(r->call, ch, slot, p->cap, q0 * C, scratch, t, nth);
            pnetrt_barrier();
        }
        double e = pnetrt_now_s();
        if (t == 0 && !r->eval) r->t->busy[s] += e - b;
        if (tr) pnetrt_trace_slice(r->m, r->eval ? PNETRT_TRACE_EVAL : fwd ? PNETRT_TRACE_FORWARD : PNETRT_TRACE_BACKWARD, b, e, s, p->r, q, n);
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
    if (r->eval) {
        pnetrt_barrier_bind(NULL);
        return;
    }
    if (tr) b = pnetrt_now_s();
    pnetrt_train_update(r, 1, t, nth, team, &sense);
    if (tr) pnetrt_trace_slice(r->m, PNETRT_TRACE_UPDATE, b, pnetrt_now_s(), s, p->r, 0, 0);
    pnetrt_barrier_bind(NULL);
}

int pnetrt_train_rank_step(pnetrt_model *m, pnetrt_trainer *t, int64_t batch, const void *const *inputs, bool eval,
                           double *loss_sum) {
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
    if (p.K < 1 || eval) p.K = 1; /* evaluation: a slot is free again once its values are sent (copied) */
    for (int64_t j = td->stage_fwd_first[p.s]; j < td->stage_fwd_first[p.s + 1]; j++) p.fwd_bytes += td->stage_fwd[2 * j + 1];
    for (int64_t j = td->stage_bwd_first[p.s]; j < td->stage_bwd_first[p.s + 1]; j++) p.bwd_bytes += td->stage_bwd[2 * j + 1];
    int threads = pnetrt_call_threads(m);
    if (threads < 1) threads = 1;
    if (threads > 256) threads = 256;
    int bad = !pnetrt_train_stage_map(m, t) ? pnetrt_train_failf(m, "a parameter's pipeline stage is unknown") : 0;
    /* The rank's stack of partial sums (gradtree.h), and the exchange of the stage's ranks. */
    pnetrt_blk stack[128];
    int depth = 1;
    if (!bad && pnetrt_tree_depth(nch) > 128) bad = pnetrt_train_failf(m, "too many chunks (%lld) in one step", (long long)nch);
    if (!bad) pnetrt_tree_stack(lo, lo + nc, stack, &depth);
    if (depth < 1) depth = 1;
    /* The rank's elements: its stage's parameters, [lo, hi) of the buffer (pnetrt_train_stage_map
     * merges neighbours, and the compiler lays the parameters out in stage order, so one range
     * in practice; else the span from the first to the last). Its partial sums hold only these. */
    int64_t elo = P, ehi = 0;
    for (int j = bad ? 0 : t->stage_first[p.s]; !bad && j < t->stage_first[p.s + 1]; j++) {
        if (t->stage_ranges[j].lo < elo) elo = t->stage_ranges[j].lo;
        if (t->stage_ranges[j].hi > ehi) ehi = t->stage_ranges[j].hi;
    }
    if (ehi > P) ehi = P;
    if (ehi <= elo) elo = ehi = 0; /* a stage without parameters */
    /* Evaluation holds no gradient (fold_bufs -1). */
    if (!bad) bad = pnetrt_train_reserve(m, t, batch, 1, threads, eval ? -1 : depth, ehi - elo > 0 ? ehi - elo : 16);
    size_t arena = (size_t)p.K * (size_t)p.cap * (size_t)td->sample_bytes;
    if (!bad && arena > t->arena_bytes) {
        pnetrt_train_free(t->arena);
        t->arena = pnetrt_train_zalloc(arena);
        t->arena_bytes = t->arena ? arena : 0;
        if (!t->arena) bad = pnetrt_train_failf(m, "out of memory for the pipeline's arena (%zu bytes)", arena);
    }
    /* Outgoing messages of a step: every micro-batch's values forward and gradients backward. */
    int64_t out_f = 0, out_b = 0, nmsg = 0;
    if (p.s + 1 < S)
        for (int64_t j = td->stage_fwd_first[p.s + 1]; j < td->stage_fwd_first[p.s + 2]; j++) out_f += td->stage_fwd[2 * j + 1], nmsg++;
    if (p.s > 0 && !eval)
        for (int64_t j = td->stage_bwd_first[p.s - 1]; j < td->stage_bwd_first[p.s]; j++) out_b += td->stage_bwd[2 * j + 1], nmsg++;
    size_t sendb = (size_t)((out_f + out_b) * p.cap + 64 * nmsg) * (size_t)(p.M > 0 ? p.M : 1) + 64;
    if (!bad && sendb > t->sendbuf_bytes) {
        pnetrt_train_free(t->sendbuf);
        t->sendbuf = pnetrt_train_zalloc(sendb);
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
    if (!bad && p.R > 1 && !eval) {
        int64_t blocks = 0;
        for (int k = 0; k < p.R; k++) blocks += pnetrt_tree_stack(pfirst[k], pfirst[k + 1], stack, NULL);
        int64_t W = ehi - elo;
        int64_t need = blocks * ((p.r + 1 == p.R ? W : W / 16 * (p.r + 1) / p.R * 16) - W / 16 * p.r / p.R * 16);
        if (need > t->recv_cap) {
            pnetrt_train_free(t->recv);
            t->recv = pnetrt_train_zalloc((size_t)need * sizeof(float));
            t->recv_cap = t->recv ? need : 0;
            if (!t->recv)
                bad = pnetrt_train_failf(m, "out of memory for the ranks' partial gradients: %.0f bytes needed", 4.0 * (double)need);
        }
    }
    float *params = bad ? NULL : pnetrt_params_mut(m);
    if (!bad && !params) bad = pnetrt_train_failf(m, "out of memory");
    if (!pnetrt_comm_all_ok(comm, !bad)) return bad ? 1 : pnetrt_train_failf(m, "another rank could not start the step");
    if (!eval) t->step++;
    double b1 = td->beta1, b2 = td->beta2, stp = (double)t->step;
    pnetrt_train_call call = {inputs, params, t->slots, t->stats, t->global, pnetrt_train_opt(t, 0), batch, nch, t->step,
                              (int64_t)t->seed, t->lr, t->lr / (1 - pow(b1, stp)), sqrt(1 - pow(b2, stp)), elo, ehi, t->opt_elems, NULL, 0, 0};
    int64_t one_run[2] = {lo, lo + nc};
    run r = {.m = m, .t = t, .call = &call, .nch = nch, .lo = lo, .hi = lo + nc, .split = one_run,
             .comm = p.R > 1 ? t->stage_comm : NULL, .first = pfirst, .eval = eval, .fold_depth = eval ? 0 : depth,
             .grad_add = pnetrt_train_grad_add(m)};
    if (!eval) snprintf(t->schedule, sizeof t->schedule, "rank %d of %d: stage %d of pipeline %d (%d pipeline%s x %d stages, %s, %lld micro-batch%s), %d thread%s",
             me, K, p.s, p.r, p.R, p.R == 1 ? "" : "s", S, p.one_f_one_b ? "1f1b" : "gpipe", (long long)M, M == 1 ? "" : "es",
             threads, threads == 1 ? "" : "s");
    if (!eval) {
        for (int i = 0; i < PNETRT_MAX_STAGES; i++) t->busy[i] = 0;
        t->pipe_mb = p.M;
    }
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
    if (!eval) t->wall = pnetrt_now_s() - w0;
    bool ok = !atomic_load(&r.failed);
    /* The chunks' statistics come from the last stage's ranks: pipeline r's from rank r * S + S - 1. */
    int64_t fl[K + 1];
    for (int k = 0; k < K; k++) fl[k] = pfirst[k / S];
    fl[K] = nch;
    double b = pnetrt_now_s();
    if (ok && pnetrt_comm_allgather_chunks(comm, t->stats, td->stat_floats, fl, r.err, sizeof r.err)) ok = false;
    pnetrt_trace_slice(m, PNETRT_TRACE_REDUCE, b, pnetrt_now_s(), p.s, p.r, 1, 0);
    if (!pnetrt_comm_all_ok(comm, ok)) return pnetrt_train_failf(m, "%s", ok ? "another rank failed in this step" : r.err);
    if (!eval) pnetrt_train_keep_grad(t, &r);
    if (loss_sum) *loss_sum = pnetrt_train_tree_sum(t->tree, t->stats, td->stat_floats, nch);
    t->last_correct = (int64_t)llround(pnetrt_train_tree_sum(t->tree, t->stats + 1, td->stat_floats, nch));
    return 0;
}
