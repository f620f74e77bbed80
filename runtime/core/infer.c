/* The inference schedules: a call's batch split into chunks for batch-parallel replica groups, or
 * streamed in micro-batches through a pipeline of stage thread groups, on an OpenMP team; on ranks,
 * each rank's share of the batch and an all-gather of the outputs. Allocates nothing: the arenas
 * were reserved by the model (rt.c). */
#include "comm.h"
#include "model_impl.h"
#include "trace.h"
#include "transport.h"
#include "wait.h"

#include <omp.h>
#include <stdatomic.h>
#include <stdio.h>
#include <string.h>

/* The least work, in FLOPs per call, that justifies one more thread. */
#define PNETRT_FLOPS_PER_THREAD 4e6
/* Batch-parallel replicas picked by the runtime: the least FLOPs a shard's chunk must do per byte
 * of weights it streams, from the caches when the weights fit in PNETRT_CACHED_WEIGHTS bytes, from
 * memory otherwise (where one replica on the whole team reads each weight once instead), and the
 * least samples per shard. */
#define PNETRT_SHARD_FLOPS_PER_BYTE 32.0
#define PNETRT_SHARD_FLOPS_PER_DRAM_BYTE 256.0
#define PNETRT_CACHED_WEIGHTS (8.0 * 1024 * 1024)
#define PNETRT_MIN_SHARD 4

/* Small calls run on fewer threads: each thread should get PNETRT_FLOPS_PER_THREAD of work to pay
 * for the barriers between kernels (on a busy machine, each barrier may wait for a thread the
 * scheduler has not run yet). Results do not depend on the count. */
int pnetrt_work_threads(const pnetrt_model *m, double flops, int threads) {
    if (!m->adaptive || flops >= PNETRT_FLOPS_PER_THREAD * threads) return threads;
    return flops < PNETRT_FLOPS_PER_THREAD ? 1 : (int)(flops / PNETRT_FLOPS_PER_THREAD);
}

/* Ids read by embeddings must lie in [0, limit). */
static int check_ids(pnetrt_model *m, int64_t batch, const void *const *inputs) {
    for (int64_t i = 0; i < m->d->ninputs; i++) {
        const pnetrt_tensor_desc *t = &m->d->inputs[i];
        if (!t->limit) continue;
        int64_t n = pnetrt_sample_elems(t) * (t->shape[0] < 0 ? batch : 1);
        const int32_t *v = inputs[i];
        for (int64_t k = 0; k < n; k++)
            if (v[k] < 0 || v[k] >= t->limit)
                return pnetrt_failf(m, "input '%s' holds %d at element %lld, outside the vocabulary [0, %lld)", t->name,
                                    v[k], (long long)k, (long long)t->limit);
    }
    return 0;
}

typedef struct run_ctx {
    pnetrt_model *m;
    int64_t batch;
    const void *const *inputs;
    void *const *outputs;
    int replicas, groups;
} run_ctx;

void pnetrt_slice_io(const pnetrt_desc *d, const void *const *inputs, void *const *outputs, int64_t first,
                     const void **in, void **out) {
    for (int64_t i = 0; i < d->ninputs; i++) {
        const pnetrt_tensor_desc *t = &d->inputs[i];
        in[i] = (const char *)inputs[i] + (t->shape[0] < 0 ? first * pnetrt_sample_elems(t) * 4 : 0);
    }
    for (int64_t i = 0; i < d->noutputs; i++) {
        const pnetrt_tensor_desc *t = &d->outputs[i];
        out[i] = (char *)outputs[i] + (t->shape[0] < 0 ? first * pnetrt_sample_elems(t) * 4 : 0);
    }
}

static void slice_io(const run_ctx *rc, int64_t first, const void **in, void **out) {
    pnetrt_slice_io(rc->m->d, rc->inputs, rc->outputs, first, in, out);
}

/* Replica r's shard of the batch, [B*r/R, B*(r+1)/R), chunk by chunk through the forward
 * function on the calling thread's group (local index ith of nth), with the group's arena. */
static void run_replica(const run_ctx *rc, int r, char *arena, char *scratch, int ith, int nth) {
    const pnetrt_desc *d = rc->m->d;
    int64_t s0 = rc->batch * r / rc->replicas, s1 = rc->batch * (r + 1) / rc->replicas;
    const void *in[d->ninputs + 1]; /* at most PNETRT_MAX_IO each (pnetrt_infer) */
    void *out[d->noutputs + 1];
    for (int64_t s = s0; s < s1; s += d->chunk) {
        int64_t n = s1 - s < d->chunk ? s1 - s : d->chunk;
        slice_io(rc, s, in, out);
        pnetrt_call call = {n, in, out, rc->m->prepared, arena, scratch, d->chunk};
        double b = rc->m->trace ? pnetrt_now_s() : 0;
        d->forward(&call, ith, nth);
        pnetrt_barrier(); /* the group's arena is reused by the next chunk */
        if (rc->m->trace) pnetrt_trace_add(rc->m, b, pnetrt_now_s(), -1, r, (s - s0) / d->chunk, n);
    }
}

/* The claimed plan: one thread per arena, each claiming the next unit of the batch as it finishes
 * the last, through the forward function on that thread alone. No barrier joins the threads
 * between kernels, so a thread that the scheduler runs late (a busy machine, more threads than
 * cores) holds up no other: the others take its units. Same bits: a sample's outputs depend on
 * neither the chunk it is computed in nor the thread. */
static void run_claimed(const run_ctx *rc, _Atomic int64_t *next, int64_t unit, int t, char *arena, char *scratch) {
    const pnetrt_desc *d = rc->m->d;
    const void *in[d->ninputs + 1]; /* at most PNETRT_MAX_IO each (pnetrt_infer) */
    void *out[d->noutputs + 1];
    for (;;) {
        int64_t s = atomic_fetch_add_explicit(next, unit, memory_order_relaxed);
        if (s >= rc->batch) return;
        int64_t n = rc->batch - s < unit ? rc->batch - s : unit;
        slice_io(rc, s, in, out);
        pnetrt_call call = {n, in, out, rc->m->prepared, arena, scratch, d->chunk};
        double b = rc->m->trace ? pnetrt_now_s() : 0;
        d->forward(&call, 0, 1);
        if (rc->m->trace) pnetrt_trace_add(rc->m, b, pnetrt_now_s(), -1, t, s / unit, n);
    }
}

/* The claimed plan's unit: four per thread, of at least 8 samples and at most a chunk. */
static int64_t claim_unit(const pnetrt_desc *d, int64_t batch, int workers) {
    int64_t u = (batch + 4 * workers - 1) / (4 * workers);
    if (u < 2 * PNETRT_MIN_SHARD) u = 2 * PNETRT_MIN_SHARD;
    return u < d->chunk ? u : d->chunk;
}

/* The plans a call may take (plan.h), all of the same bits: the static one (auto_replicas'
 * replicas on groups joined by barriers, or a pipeline of a thread bound to each stage), the
 * claimed one (run_claimed, run_claimed_stages), and the whole call on one thread, which on a busy
 * machine beats any plan that waits for a thread the scheduler has not run: every parallel region
 * ends in a join that waits until each of its threads has had a core at least once. */
_Static_assert(PNETRT_PLANS == PNETRT_PLAN_ONE + 1, "plan.h holds a cost for each of rt.h's plans");

/* One thread's part of a pipeline: stage s of replica group rg (local index ith of nth). The
 * group walks every micro-batch of its replicas' shards in order: micro-batch q of a chunk is
 * a slice of it, lives in arena slot q mod M, and passes between stages through the hand-off
 * (transport.h): stage s starts q once stage s-1 has finished it, and stage 0 reuses a slot once
 * the last stage has finished the micro-batch before it there. GPipe: fill, stream, drain. */
static void run_stage(const run_ctx *rc, int rg, int ngroups, int s, int ith, int nth, pnetrt_handoff *h,
                      char *scratch) {
    pnetrt_model *m = rc->m;
    const pnetrt_desc *d = m->d;
    int M = m->microbatches;
    const void *in[d->ninputs + 1]; /* at most PNETRT_MAX_IO each (pnetrt_infer) */
    void *out[d->noutputs + 1];
    int64_t q = 0, streamed = 0;
    for (int r = rg; r < rc->replicas; r += ngroups) {
        int64_t s0 = rc->batch * r / rc->replicas, s1 = rc->batch * (r + 1) / rc->replicas;
        for (int64_t c0 = s0; c0 < s1; c0 += d->chunk) {
            int64_t cn = s1 - c0 < d->chunk ? s1 - c0 : d->chunk;
            for (int mb = 0; mb < M; mb++, q++) {
                int64_t a = c0 + cn * mb / M, n = c0 + cn * (mb + 1) / M - a;
                pnetrt_handoff_wait(h, PNETRT_FORWARD, s, q);
                if (n > 0) {
                    slice_io(rc, a, in, out);
                    pnetrt_call call = {n, in, out, m->prepared, m->slots[rg * M + (int)(q % M)], scratch, m->slot_cap};
                    double b = pnetrt_now_s();
                    d->stage_forward[s](&call, ith, nth);
                    pnetrt_barrier();
                    double e = pnetrt_now_s();
                    if (ith == 0 && rg == 0) m->busy[s] += e - b;
                    pnetrt_trace_add(m, b, e, s, r, q, n);
                    streamed++;
                }
                if (ith == 0) pnetrt_handoff_post(h, PNETRT_FORWARD, s, q);
            }
        }
    }
    if (ith == 0 && rg == 0 && s == 0) m->last_stream = streamed;
}

/* The claimed pipeline: S threads, none bound to a stage. A thread runs whichever stage may run its
 * next micro-batch (the later stages first, which frees slots), one thread per stage at a time, so
 * a thread that the scheduler runs late holds up only the stage it is in while the others carry
 * on. Same bits as the bound pipeline: each stage runs its micro-batches in order, in the same
 * slots. One replica; micro-batch q is slice q mod M of chunk q / M. */
typedef struct claim_pipe {
    _Atomic int64_t done[PNETRT_MAX_STAGES]; /* micro-batches each stage has finished */
    _Atomic int held[PNETRT_MAX_STAGES];     /* a thread is running the stage */
    _Atomic int progress;                    /* bumped when a stage finishes one: the futex word */
    pnetrt_waitq wq;
    _Atomic int64_t streamed;                /* stage 0's micro-batches with samples */
} claim_pipe;

static bool stage_ready(const claim_pipe *cp, int s, int S, int M, int64_t q) {
    if (s > 0) return atomic_load_explicit(&cp->done[s - 1], memory_order_acquire) > q;
    return q < M || atomic_load_explicit(&cp->done[S - 1], memory_order_acquire) > q - M; /* its slot is free */
}

static void run_claimed_stages(const run_ctx *rc, claim_pipe *cp, int64_t Q, char *scratch) {
    pnetrt_model *m = rc->m;
    const pnetrt_desc *d = m->d;
    int S = (int)d->nstages, M = m->microbatches;
    const void *in[d->ninputs + 1]; /* at most PNETRT_MAX_IO each (pnetrt_infer) */
    void *out[d->noutputs + 1];
    for (;;) {
        int seen = atomic_load_explicit(&cp->progress, memory_order_acquire);
        bool left = false, ran = false;
        for (int s = S - 1; s >= 0 && !ran; s--) {
            int64_t q = atomic_load_explicit(&cp->done[s], memory_order_acquire);
            if (q >= Q) continue;
            left = true;
            if (!stage_ready(cp, s, S, M, q)) continue;
            int free_ = 0;
            if (!atomic_compare_exchange_strong_explicit(&cp->held[s], &free_, 1, memory_order_acq_rel, memory_order_relaxed))
                continue;
            q = atomic_load_explicit(&cp->done[s], memory_order_acquire); /* stable while held */
            if (q < Q && stage_ready(cp, s, S, M, q)) {
                int64_t c0 = q / M * d->chunk, cn = rc->batch - c0 < d->chunk ? rc->batch - c0 : d->chunk, mb = q % M;
                int64_t a = c0 + cn * mb / M, n = c0 + cn * (mb + 1) / M - a;
                if (n > 0) {
                    slice_io(rc, a, in, out);
                    pnetrt_call call = {n, in, out, m->prepared, m->slots[q % M], scratch, m->slot_cap};
                    double b = pnetrt_now_s();
                    d->stage_forward[s](&call, 0, 1);
                    double e = pnetrt_now_s();
                    m->busy[s] += e - b; /* the stage's holder alone adds */
                    pnetrt_trace_add(m, b, e, s, 0, q, n);
                    if (s == 0) atomic_fetch_add_explicit(&cp->streamed, 1, memory_order_relaxed);
                }
                atomic_store_explicit(&cp->done[s], q + 1, memory_order_release);
                ran = true;
            }
            atomic_store_explicit(&cp->held[s], 0, memory_order_release);
            if (ran) {
                atomic_fetch_add_explicit(&cp->progress, 1, memory_order_acq_rel);
                pnetrt_wake(&cp->wq, &cp->progress);
            }
        }
        if (!left) return;
        if (!ran) pnetrt_wait_change(&cp->wq, &cp->progress, seen);
    }
}

/* Threads for each stage of one pipeline: one each, then one at a time to the stage with the most
 * work per thread, so that the slowest stage is as fast as whole threads allow. The work is the
 * stage's FLOPs, or the user's shares (pnetrt_set_stage_threads), which then come out exactly
 * when the pipeline has as many threads as the shares add up to. */
void pnetrt_share_threads(const pnetrt_model *m, int threads, int S, int *count) {
    for (int s = 0; s < S; s++) count[s] = 1;
    for (int left = threads - S; left > 0; left--) {
        int best = 0;
        double most = -1;
        for (int s = 0; s < S; s++) {
            double w = m->stage_shares ? (double)m->stage_shares[s] : m->stage_flops[s];
            if (w / count[s] > most) most = w / count[s], best = s;
        }
        count[best]++;
    }
}

/* The replica count of a call when neither the network (@shard(batch, R)) nor the user chose one:
 * batch-parallel for large batches, intra-op (one replica on the whole team) for small ones. A
 * replica streams every weight once per chunk, so a shard's chunk must bring enough FLOPs per
 * weight byte (far more when the weights live in memory, not the caches) and enough work for a
 * thread. The count divides the team, so the replica groups are equal. Results do not depend on it. */
static int auto_replicas(const pnetrt_model *m, int64_t batch, int team) {
    const pnetrt_desc *d = m->d;
    if (team <= 1 || m->flops_per_sample <= 0) return 1;
    double weight_bytes = 4.0 * (double)d->param_floats;
    double per_byte = weight_bytes > PNETRT_CACHED_WEIGHTS ? PNETRT_SHARD_FLOPS_PER_DRAM_BYTE : PNETRT_SHARD_FLOPS_PER_BYTE;
    double min_chunk = per_byte * weight_bytes / m->flops_per_sample; /* samples per chunk, for the weights */
    double min_shard = PNETRT_FLOPS_PER_THREAD / m->flops_per_sample;  /* samples per shard, for the work */
    if (min_shard < PNETRT_MIN_SHARD) min_shard = PNETRT_MIN_SHARD;
    int best = 1;
    for (int r = 2; r <= team && r <= m->narenas; r++) {
        int64_t shard = batch / r, chunk = shard < d->chunk ? shard : d->chunk;
        if (team % r == 0 && (double)shard >= min_shard && (double)chunk >= min_chunk) best = r;
    }
    return best;
}

int pnetrt_infer_check(pnetrt_model *m, int64_t batch, const void *const *inputs, void *const *outputs) {
    const pnetrt_desc *d = m->d;
    if (!pnetrt_ready(m)) return 1;
    if (batch < 0) return pnetrt_failf(m, "batch size %lld is negative", (long long)batch);
    if (batch == 0) return 0; /* nothing to read or write: NULL buffers will do */
    if (pnetrt_check_batch(m, batch, d->inputs, d->ninputs) || pnetrt_check_batch(m, batch, d->outputs, d->noutputs))
        return 1;
    if (!inputs && d->ninputs) return pnetrt_failf(m, "no input buffers");
    if (!outputs && d->noutputs) return pnetrt_failf(m, "no output buffers");
    for (int64_t i = 0; i < d->ninputs; i++)
        if (!inputs[i]) return pnetrt_failf(m, "input '%s' is NULL", d->inputs[i].name);
    for (int64_t i = 0; i < d->noutputs; i++)
        if (!outputs[i]) return pnetrt_failf(m, "output '%s' is NULL", d->outputs[i].name);
    if (d->ninputs > PNETRT_MAX_IO || d->noutputs > PNETRT_MAX_IO)
        return pnetrt_failf(m, "%lld inputs and %lld outputs: a network has at most %d of each", (long long)d->ninputs,
                            (long long)d->noutputs, PNETRT_MAX_IO);
    return check_ids(m, batch, inputs);
}

static int infer(pnetrt_model *m, int64_t batch, const void *const *inputs, void *const *outputs) {
    const pnetrt_desc *d = m->d;
    if (pnetrt_infer_check(m, batch, inputs, outputs)) return 1;
    if (batch == 0) return 0;
    if (m->stale) {
        if (d->prepare && m->prepared != m->params) d->prepare(m->params, m->prepared);
        m->stale = false;
    }
    int threads = pnetrt_call_threads(m);
    if (threads > m->scratch_threads) threads = m->scratch_threads;
    /* Small calls run on fewer threads: each thread should get enough work to pay for the
     * barriers between kernels. Results do not depend on the count. */
    int team = pnetrt_work_threads(m, m->flops_per_sample * (double)batch, threads);
    int S = (int)d->nstages;
    bool piped = m->pipeline && S > 1 && S <= PNETRT_MAX_STAGES;
    int replicas = pnetrt_replicas_picked(m) && !piped ? auto_replicas(m, batch, team) : m->replicas;
    m->last_replicas = replicas;
    m->last_team = team;
    int groups = pnetrt_group_count(team, replicas);
    if (groups > m->narenas) groups = m->narenas;
    run_ctx rc = {m, batch, inputs, outputs, replicas, groups};
    int pg = piped ? pnetrt_pipe_groups(team, replicas, S) : 0;
    if (pg * m->microbatches > m->nslots) pg = m->nslots / m->microbatches;
    if (pg > m->nhand) pg = m->nhand;
    /* A call that may run in several plans of the same bits takes the one measured cheapest
     * (plan.h; not with PNET_ADAPTIVE_THREADS=0 or a schedule the user set): replicas that the
     * runtime picks, static, claimed or on one thread; a one-replica pipeline of one thread per
     * stage, bound, claimed, or every stage in turn on one thread, unless the user set its
     * micro-batches or stage threads. */
    int workers = team < m->narenas ? team : m->narenas;
    bool adaptive = m->adaptive && !m->schedule_set && (pg >= 1 ? pg == 1 && replicas == 1 && team == S
                                            : !piped && pnetrt_replicas_picked(m) && workers > 1 &&
                                                  batch >= 2 * claim_unit(d, batch, workers));
    bool probe = false;
    int nplans = pg >= 1 && m->pipe_set ? PNETRT_PLAN_ONE : PNETRT_PLANS;
    int plan = adaptive ? pnetrt_plan_pick(&m->plans, batch, team, nplans, &probe) : PNETRT_PLAN_STATIC;
    m->last_plan = plan;
    double plan0 = pnetrt_now_s();
    if (plan == PNETRT_PLAN_ONE) {
        m->last_replicas = m->last_team = 1;
        pnetrt_barrier_bind(NULL);
        run_ctx one = {m, batch, inputs, outputs, 1, 1};
        run_replica(&one, 0, m->arenas[0], m->scratch, 0, 1);
        m->last_wall = 0;
        pnetrt_plan_measured(&m->plans, PNETRT_PLAN_ONE, probe, pnetrt_now_s() - plan0, batch);
        return 0;
    }
    if (pg >= 1 && plan == PNETRT_PLAN_CLAIMED) {
        claim_pipe cp;
        memset(&cp, 0, sizeof cp);
        int64_t Q = (batch + d->chunk - 1) / d->chunk * m->microbatches;
        for (int i = 0; i < PNETRT_MAX_STAGES; i++) m->busy[i] = 0;
#pragma omp parallel num_threads(S)
        {
            pnetrt_barrier_bind(NULL);
            run_claimed_stages(&rc, &cp, Q, m->scratch + (size_t)omp_get_thread_num() * (size_t)d->scratch_bytes);
        }
        m->last_wall = pnetrt_now_s() - plan0;
        m->last_stream = atomic_load(&cp.streamed);
        pnetrt_plan_measured(&m->plans, PNETRT_PLAN_CLAIMED, probe, m->last_wall, batch);
        return 0;
    }
    if (pg >= 1) {
        /* Pipeline: pg replica groups, each with a thread group per stage. */
        int per = team / pg, count[PNETRT_MAX_STAGES];
        pnetrt_share_threads(m, per, S, count); /* once, before the team reads it */
        pnetrt_spin_barrier bars[PNETRT_MAX_GROUPS];
        pnetrt_handoff *hand = m->hand;
        for (int i = 0; i < pg; i++) pnetrt_handoff_init(&hand[i], S, m->microbatches, false);
        for (int i = 0; i < PNETRT_MAX_STAGES; i++) m->busy[i] = 0;
        double wall0 = pnetrt_now_s();
#pragma omp parallel num_threads(pg * per)
        {
            int t = omp_get_thread_num();
            int nth = omp_get_num_threads();
            if (nth != pg * per) {
                /* The OpenMP runtime gave fewer threads: one runs every stage in turn. */
                if (t == 0) {
                    pnetrt_barrier_bind(NULL);
                    for (int r = 0; r < replicas; r++) run_replica(&rc, r, m->arenas[0], m->scratch, 0, 1);
                }
            } else {
                int rg = t / per, k = t % per;
                int s = 0, first = 0;
                while (k >= first + count[s]) first += count[s++];
                if (k == first) bars[rg * S + s] = PNETRT_BARRIER(count[s]);
#pragma omp barrier
                pnetrt_barrier_bind(&bars[rg * S + s]);
                char *scratch = m->scratch + (size_t)(rg * per + first) * (size_t)d->scratch_bytes;
                run_stage(&rc, rg, pg, s, k - first, count[s], &hand[rg], scratch);
                pnetrt_barrier_bind(NULL);
            }
        }
        m->last_wall = pnetrt_now_s() - wall0;
        if (adaptive) pnetrt_plan_measured(&m->plans, PNETRT_PLAN_STATIC, probe, m->last_wall, batch);
        return 0;
    }
    m->last_wall = 0;
    if (plan == PNETRT_PLAN_CLAIMED) {
        m->last_replicas = m->last_team = workers;
        int64_t unit = claim_unit(d, batch, workers);
        _Atomic int64_t next = 0;
#pragma omp parallel num_threads(workers)
        {
            int t = omp_get_thread_num();
            pnetrt_barrier_bind(NULL);
            run_claimed(&rc, &next, unit, t, m->arenas[t], m->scratch + (size_t)t * (size_t)d->scratch_bytes);
        }
        pnetrt_plan_measured(&m->plans, PNETRT_PLAN_CLAIMED, probe, pnetrt_now_s() - plan0, batch);
        return 0;
    }
    if (team <= 1) {
        pnetrt_barrier_bind(NULL);
        for (int r = 0; r < replicas; r++) run_replica(&rc, r, m->arenas[0], m->scratch, 0, 1);
        return 0;
    }
    pnetrt_spin_barrier bars[PNETRT_MAX_GROUPS];
#pragma omp parallel num_threads(team)
    {
        /* Thread t joins group g; the groups split the team as evenly as it allows. */
        int nth = omp_get_num_threads(), t = omp_get_thread_num();
        int ng = groups < nth ? groups : nth;
        int base = nth / ng, extra = nth % ng;
        int g = t < extra * (base + 1) ? t / (base + 1) : extra + (t - extra * (base + 1)) / base;
        int first = g < extra ? g * (base + 1) : extra * (base + 1) + (g - extra) * base;
        int size = base + (g < extra);
        if (t == first) bars[g] = PNETRT_BARRIER(size);
#pragma omp barrier
        pnetrt_barrier_bind(&bars[g]);
        char *scratch = m->scratch + (size_t)first * (size_t)d->scratch_bytes;
        for (int r = g; r < replicas; r += ng) run_replica(&rc, r, m->arenas[g], scratch, t - first, size);
        pnetrt_barrier_bind(NULL);
    }
    if (adaptive) pnetrt_plan_measured(&m->plans, PNETRT_PLAN_STATIC, probe, pnetrt_now_s() - plan0, batch);
    return 0;
}

/* On ranks (comm.h), each computes its contiguous share of the batch, first[r] to first[r + 1], from
 * the whole batch's inputs that every rank holds, and the ranks all-gather the outputs, so that
 * every rank returns the whole batch's outputs: those of one process, bit for bit. */
static int ranked_infer(pnetrt_model *m, int64_t batch, const void *const *inputs, void *const *outputs) {
    const pnetrt_desc *d = m->d;
    pnetrt_comm *comm = m->comm;
    int K = pnetrt_comm_size(comm), me = pnetrt_comm_rank(comm);
    if (K > 1 && m->ready && m->rank_stage >= 0) return pnetrt_stage_infer(m, batch, inputs, outputs);
    if (K < 2 || batch < 1 || !inputs || !outputs || !m->ready) return infer(m, batch, inputs, outputs);
    int64_t first[K + 1];
    for (int k = 0; k <= K; k++) first[k] = batch * k / K;
    int64_t lo = first[me], n = first[me + 1] - lo;
    const void *in[d->ninputs > 0 ? d->ninputs : 1];
    void *out[d->noutputs > 0 ? d->noutputs : 1];
    for (int64_t i = 0; i < d->ninputs; i++) {
        const pnetrt_tensor_desc *t = &d->inputs[i];
        bool batched = t->rank > 0 && t->shape[0] < 0;
        in[i] = inputs[i] && batched ? (const char *)inputs[i] + lo * pnetrt_sample_elems(t) * 4 : inputs[i];
    }
    for (int64_t o = 0; o < d->noutputs; o++) {
        const pnetrt_tensor_desc *t = &d->outputs[o];
        bool batched = t->rank > 0 && t->shape[0] < 0;
        out[o] = outputs[o] && batched ? (char *)outputs[o] + lo * pnetrt_sample_elems(t) * 4 : outputs[o];
    }
    int rc = infer(m, n, in, out);
    double b = pnetrt_now_s();
    if (!pnetrt_comm_all_ok(comm, rc == 0))
        return rc ? rc : pnetrt_failf(m, "another rank failed in this inference call");
    /* An output without a batch axis comes from the last rank, which always has samples. */
    int64_t last[K + 1];
    for (int k = 0; k <= K; k++) last[k] = k == K;
    for (int64_t o = 0; o < d->noutputs; o++) {
        const pnetrt_tensor_desc *t = &d->outputs[o];
        bool batched = t->rank > 0 && t->shape[0] < 0;
        if (pnetrt_comm_allgather_bytes(comm, outputs[o], pnetrt_sample_elems(t) * 4, batched ? first : last, m->err,
                                        sizeof m->err))
            return 1;
    }
    /* The agreement and the gathers, waits included: the trace's "messages" slice. */
    pnetrt_trace_add(m, b, pnetrt_now_s(), PNETRT_TRACE_MESSAGES, 0, 0, n);
    return 0;
}

int pnetrt_infer(pnetrt_model *m, int64_t batch, const void *const *inputs, void *const *outputs) {
    if (!m) return 1;
    pnetrt_lock(m);
    return pnetrt_unlock(m, ranked_infer(m, batch, inputs, outputs));
}
