/* Pipeline stages on ranks: with S stages and K = R x S ranks, rank k runs stage k mod S of
 * replica pipeline k / S, which computes samples [B*r/R, B*(r+1)/R) of a call's batch. A rank
 * holds only its stage's parameters (rt.c loads no others) and a ring of PNETRT_RANK_SLOTS arena
 * slots. Its micro-batches are those of the threads' pipeline (each chunk cut into M); before it
 * runs micro-batch q, it receives from the rank of the stage before it the values that earlier
 * stages computed and it or a later stage reads (the descriptor's stage_recv), and after it, it
 * sends the next stage's share. Sends and receives are non-blocking: the receive of q + 1 is
 * posted before q runs, and a send completes while later micro-batches run. The kernels are the
 * same stage functions on the same values, so the outputs are those of one process, bit for bit;
 * the ranks that write each output all-gather it to every rank. */
#include "comm.h"
#include "model_impl.h"
#include "trace.h"

#include <omp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int pnetrt_layout_default = PNETRT_LAYOUT_AUTO;

int pnetrt_model_rank_stage(const pnetrt_model *m) { return m ? m->rank_stage : -1; }
bool pnetrt_model_partial(const pnetrt_model *m) { return m && m->partial_params; }

void pnetrt_stages_free(pnetrt_model *m) {
    for (int i = 0; i < PNETRT_RANK_SLOTS; i++) {
        free(m->rslots[i]);
        pnetrt_msgs_free(m->rsend[i]);
        pnetrt_msgs_free(m->rrecv[i]);
        m->rslots[i] = NULL;
        m->rsend[i] = m->rrecv[i] = NULL;
    }
}

static int64_t recv_count(const pnetrt_desc *d, int s) {
    return s > 0 && s < d->nstages ? d->stage_recv_first[s + 1] - d->stage_recv_first[s] : 0;
}

int pnetrt_rank_layout(pnetrt_model *m, int pref) {
    const pnetrt_desc *d = m->d;
    int K = pnetrt_comm_size(m->comm), S = (int)d->nstages;
    pnetrt_stages_free(m);
    m->rank_stage = -1;
    m->rank_pipes = 0;
    if (pref == PNETRT_LAYOUT_STAGES && S <= 1)
        return pnetrt_failf(m, "--rank-layout stages: network '%s' has no pipeline stages (give its layers @partition)",
                            d->name);
    if (K < 2 || pref == PNETRT_LAYOUT_REPLICAS || S <= 1) return 0;
    if (K % S)
        return pnetrt_failf(m,
                            "%d ranks do not fit network '%s' of %d pipeline stages: run a multiple of %d ranks (replicas x "
                            "stages, one stage per rank), or --rank-layout replicas to run every stage in each rank",
                            K, d->name, S, S);
    if (!d->stage_recv_first || !d->param_stage || !d->output_stage)
        return pnetrt_failf(m, "network '%s' has no stage boundaries in its descriptor; recompile it", d->name);
    int me = pnetrt_comm_rank(m->comm), s = me % S;
    int64_t cap = (d->chunk + m->microbatches - 1) / m->microbatches;
    size_t bytes = (size_t)(d->arena_sample_bytes * cap + d->arena_fixed_bytes);
    for (int i = 0; i < PNETRT_RANK_SLOTS; i++) {
        if (posix_memalign((void **)&m->rslots[i], 64, bytes ? bytes : 64)) m->rslots[i] = NULL;
        m->rsend[i] = pnetrt_msgs_new((int)recv_count(d, s + 1) + 1);
        m->rrecv[i] = pnetrt_msgs_new((int)recv_count(d, s) + 1);
        if (!m->rslots[i] || !m->rsend[i] || !m->rrecv[i]) {
            pnetrt_stages_free(m);
            return pnetrt_failf(m, "cannot allocate %d arena slots of %zu bytes for pipeline stage %d", PNETRT_RANK_SLOTS,
                                bytes, s);
        }
        memset(m->rslots[i], 0, bytes); /* touch every page now, not during the first call */
    }
    m->rslot_cap = cap;
    m->rank_stage = s;
    m->rank_pipes = K / S;
    return 0;
}

/* One micro-batch: samples [a, a + n) of the call, in slot `slot`. */
typedef struct mbatch {
    int64_t a, n;
} mbatch;

typedef struct stage_ctx {
    pnetrt_model *m;
    const void *const *inputs;
    void *const *outputs;
} stage_ctx;

/* Value j of stage s's boundary for micro-batch mb in slot `slot`: its address and bytes. */
static void value_at(const stage_ctx *sc, int64_t j, char *slot, mbatch mb, char **at, int64_t *bytes) {
    const pnetrt_desc *d = sc->m->d;
    int64_t kind = d->stage_recv[3 * j], off = d->stage_recv[3 * j + 1], b = d->stage_recv[3 * j + 2];
    int64_t cap = sc->m->rslot_cap;
    switch (kind) {
    case PNETRT_XFER_ARENA: *at = slot + off * cap, *bytes = b * mb.n; break;
    case PNETRT_XFER_FIXED: *at = slot + d->arena_sample_bytes * cap + off, *bytes = b; break;
    case PNETRT_XFER_OUTPUT: *at = (char *)sc->outputs[off] + mb.a * b, *bytes = b * mb.n; break;
    default: *at = (char *)sc->outputs[off], *bytes = b; break;
    }
}

/* Posts the messages of stage s's boundary (received when recv, else sent to stage s + 1's
 * rank) for micro-batch mb in slot i. The tag is the value's index, so values match in order. */
static int post(const stage_ctx *sc, int s, int i, mbatch mb, bool recv) {
    pnetrt_model *m = sc->m;
    const pnetrt_desc *d = m->d;
    int me = pnetrt_comm_rank(m->comm), b = recv ? s : s + 1;
    for (int64_t j = d->stage_recv_first[b]; j < d->stage_recv_first[b + 1]; j++) {
        char *at;
        int64_t bytes;
        value_at(sc, j, m->rslots[i], mb, &at, &bytes);
        int tag = (int)(j - d->stage_recv_first[b]);
        int rc = recv ? pnetrt_comm_irecv(m->comm, at, bytes, me - 1, tag, m->rrecv[i], m->err, sizeof m->err)
                      : pnetrt_comm_isend(m->comm, at, bytes, me + 1, tag, m->rsend[i], m->err, sizeof m->err);
        if (rc) return 1;
    }
    return 0;
}

/* Runs stage s on micro-batch mb in slot i, on a team of `team` threads. */
static void run(const stage_ctx *sc, int s, int i, mbatch mb, int team) {
    pnetrt_model *m = sc->m;
    const pnetrt_desc *d = m->d;
    const void *in[d->ninputs + 1];
    void *out[d->noutputs + 1];
    for (int64_t k = 0; k < d->ninputs; k++) {
        const pnetrt_tensor_desc *t = &d->inputs[k];
        in[k] = (const char *)sc->inputs[k] + (t->rank > 0 && t->shape[0] < 0 ? mb.a * pnetrt_sample_elems(t) * 4 : 0);
    }
    for (int64_t k = 0; k < d->noutputs; k++) {
        const pnetrt_tensor_desc *t = &d->outputs[k];
        out[k] = (char *)sc->outputs[k] + (t->rank > 0 && t->shape[0] < 0 ? mb.a * pnetrt_sample_elems(t) * 4 : 0);
    }
    pnetrt_call call = {mb.n, in, out, m->prepared, m->rslots[i], m->scratch, m->rslot_cap};
    if (team <= 1) {
        pnetrt_barrier_bind(NULL);
        d->stage_forward[s](&call, 0, 1);
        return;
    }
    pnetrt_spin_barrier bar = PNETRT_BARRIER(team);
#pragma omp parallel num_threads(team)
    {
        int nth = omp_get_num_threads();
        if (nth == team) {
            pnetrt_barrier_bind(&bar);
            d->stage_forward[s](&call, omp_get_thread_num(), nth);
        } else if (omp_get_thread_num() == 0) { /* the OpenMP runtime gave fewer threads */
            pnetrt_barrier_bind(NULL);
            d->stage_forward[s](&call, 0, 1);
        }
        pnetrt_barrier_bind(NULL);
    }
}

/* The micro-batches of replica pipeline r, in order; returns their count (mbs NULL: count only). */
static int64_t mbatches(const pnetrt_model *m, int64_t batch, int r, mbatch *mbs) {
    const pnetrt_desc *d = m->d;
    int R = m->rank_pipes, M = m->microbatches;
    int64_t s0 = batch * r / R, s1 = batch * (r + 1) / R, q = 0;
    for (int64_t c0 = s0; c0 < s1; c0 += d->chunk) {
        int64_t cn = s1 - c0 < d->chunk ? s1 - c0 : d->chunk;
        for (int k = 0; k < M; k++) {
            int64_t a = c0 + cn * k / M, n = c0 + cn * (k + 1) / M - a;
            if (n <= 0) continue;
            if (mbs) mbs[q] = (mbatch){a, n};
            q++;
        }
    }
    return q;
}

static int pipeline(const stage_ctx *sc, int64_t batch) {
    pnetrt_model *m = sc->m;
    const pnetrt_desc *d = m->d;
    int S = (int)d->nstages, s = m->rank_stage, r = pnetrt_comm_rank(m->comm) / S, W = PNETRT_RANK_SLOTS;
    int64_t Q = mbatches(m, batch, r, NULL);
    mbatch *mbs = malloc((size_t)(Q > 0 ? Q : 1) * sizeof *mbs);
    if (!mbs) return pnetrt_failf(m, "out of memory");
    mbatches(m, batch, r, mbs);
    int threads = pnetrt_call_threads(m);
    if (threads > m->scratch_threads) threads = m->scratch_threads;
    int team = pnetrt_work_threads(m, m->stage_flops[s] * (double)(batch / (m->rank_pipes ? m->rank_pipes : 1)), threads);
    m->last_team = team;
    m->last_replicas = m->rank_pipes;
    int rc = 0;
    if (s > 0 && Q > 0) rc = post(sc, s, 0, mbs[0], true);
    for (int64_t q = 0; q < Q && !rc; q++) {
        int i = (int)(q % W);
        /* Post q + 1's receive now, into a slot whose send (q + 1 - W) has completed. */
        if (s > 0 && q + 1 < Q) {
            int j = (int)((q + 1) % W);
            rc = pnetrt_msgs_wait(m->rsend[j], m->err, sizeof m->err) || post(sc, s, j, mbs[q + 1], true);
        }
        if (!rc) rc = pnetrt_msgs_wait(m->rrecv[i], m->err, sizeof m->err) || pnetrt_msgs_wait(m->rsend[i], m->err, sizeof m->err);
        if (rc) break;
        double b = pnetrt_now_s();
        run(sc, s, i, mbs[q], team);
        double e = pnetrt_now_s();
        m->busy[s] += e - b;
        pnetrt_trace_add(m, b, e, s, r, q, mbs[q].n);
        if (s < S - 1) rc = post(sc, s, i, mbs[q], false);
    }
    for (int i = 0; i < W; i++) {
        char ignored[8];
        /* After a failure the messages still pending are waited for only to free their buffers. */
        if (pnetrt_msgs_wait(m->rsend[i], rc ? ignored : m->err, rc ? sizeof ignored : sizeof m->err) && !rc) rc = 1;
        if (pnetrt_msgs_wait(m->rrecv[i], rc ? ignored : m->err, rc ? sizeof ignored : sizeof m->err) && !rc) rc = 1;
    }
    m->last_stream = Q;
    free(mbs);
    return rc;
}

int pnetrt_stage_infer(pnetrt_model *m, int64_t batch, const void *const *inputs, void *const *outputs) {
    const pnetrt_desc *d = m->d;
    pnetrt_comm *comm = m->comm;
    int K = pnetrt_comm_size(comm), S = (int)d->nstages, R = m->rank_pipes;
    int rc = pnetrt_infer_check(m, batch, inputs, outputs);
    /* Every rank checks the same call; none starts sending unless all can. */
    if (!pnetrt_comm_all_ok(comm, rc == 0)) return rc ? rc : pnetrt_failf(m, "another rank refused this inference call");
    if (batch == 0) return 0;
    if (m->stale) {
        if (d->prepare && m->prepared != m->params) d->prepare(m->params, m->prepared);
        m->stale = false;
    }
    stage_ctx sc = {m, inputs, outputs};
    for (int i = 0; i < PNETRT_MAX_STAGES; i++) m->busy[i] = 0;
    double wall0 = pnetrt_now_s();
    rc = pipeline(&sc, batch);
    m->last_wall = pnetrt_now_s() - wall0;
    double b = pnetrt_now_s();
    if (!pnetrt_comm_all_ok(comm, rc == 0)) return rc ? rc : pnetrt_failf(m, "another rank failed in this inference call");
    /* Output o comes from the ranks of stage output_stage[o]: replica r's samples from rank
     * r * S + output_stage[o]; an output without a batch axis from the last replica's. */
    int64_t first[K + 1];
    for (int64_t o = 0; o < d->noutputs; o++) {
        const pnetrt_tensor_desc *t = &d->outputs[o];
        bool batched = t->rank > 0 && t->shape[0] < 0;
        int st = (int)d->output_stage[o];
        for (int k = 0; k <= K; k++) {
            int r = k / S, s = k % S;
            if (k == K) first[k] = batched ? batch : 1;
            else if (batched) first[k] = s <= st ? batch * r / R : batch * (r + 1) / R;
            else first[k] = k <= (R - 1) * S + st ? 0 : 1;
        }
        if (pnetrt_comm_allgather_bytes(comm, outputs[o], pnetrt_sample_elems(t) * 4, first, m->err, sizeof m->err))
            return 1;
    }
    pnetrt_trace_add(m, b, pnetrt_now_s(), PNETRT_TRACE_MESSAGES, 0, 0, batch);
    return 0;
}
