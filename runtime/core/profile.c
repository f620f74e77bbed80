/* bench --profile: every layer's kernel timed (the descriptor's layer_forward entries, a stage's
 * layers in order as the stage runs them) on the model's threads, over one chunk of the caller's
 * inputs, after a whole forward call has filled the arena with the values each layer reads; and
 * again over a pipeline's micro-batch (an eighth of the samples for a network without stages), so
 * that a layer's time splits into a part per sample and a part per call, which a pipeline pays
 * once per micro-batch. A pipeline's neighbouring stages also run at once, a thread each, for
 * each stage's spread beside the other. Also times the barrier between kernels, a pipeline
 * hand-off between two threads (transport.h), and a read of what another core wrote. Allocates
 * its own arena and scratch: it never touches the model's, so inference after it is unchanged. */
#include "model_impl.h"
#include "pnet.h"
#include "trace.h"
#include "transport.h"

#include <omp.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* Seconds each timed round aims at; the rounds per layer (and size), at least PROFILE_MIN_ROUNDS
 * and then until the rounds have taken PROFILE_BUDGET_S, at most PROFILE_ROUNDS. Each layer keeps
 * the mean of its middle half of rounds (the interquartile mean): a slow spell that covers fewer
 * than a quarter of the rounds drops out, and so does a lucky fast one, which the least kept
 * (2026-12-07: over ten profiles of resnet_small, its stage 1 at 1.010-1.070 times stage 0 with
 * the least of 60 rounds, 1.035-1.053 with the interquartile mean). */
#define PROFILE_ROUND_S 0.004
#define PROFILE_MIN_ROUNDS 15
#define PROFILE_ROUNDS 60
#define PROFILE_BUDGET_S 4.0
/* Single calls kept per layer and round at the second size, for the spread of a call's time. */
#define PROFILE_KEEP 8
/* The buffer that times a read of what another core wrote: about a micro-batch's stage boundary
 * (resnet_small's is 4-5 samples of 64 KiB). */
#define PROFILE_XFER_BYTES (256 * 1024)

static int cmp_f64(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

/* The mean of the middle half of v[0..n) (sorted in place): with n < 4, the mean of all. */
static double interquartile_mean(double *v, int n) {
    qsort(v, (size_t)n, sizeof *v, cmp_f64);
    int lo = n / 4, hi = n - n / 4;
    double sum = 0;
    for (int i = lo; i < hi; i++) sum += v[i];
    return hi > lo ? sum / (hi - lo) : 0;
}

/* Thread 0 picks the repetitions of layer f's timed rounds over call (about PROFILE_ROUND_S each)
 * from two calls, the first of which warms the caches, the pages and the packed weights, so that
 * every thread runs the same loop. */
static void pick_reps(pnetrt_forward_fn f, const pnetrt_call *call, int ith, int nth, volatile int64_t *reps) {
    double t = pnetrt_now_s();
    f(call, ith, nth);
    pnetrt_barrier();
    f(call, ith, nth);
    pnetrt_barrier();
    if (ith == 0) {
        double one = (pnetrt_now_s() - t) / 2;
        int64_t r = one > 0 ? (int64_t)(PROFILE_ROUND_S / one) : 1000;
        *reps = r < 1 ? 1 : r > 1000 ? 1000 : r;
    }
    pnetrt_barrier();
}

/* One timed round of stage s's layers as the stage runs them: reps passes over them in order, each
 * layer reading what the one before has just written (and finding the caches as the rest of its
 * stage leaves them), each call timed on its own, after an untimed pass. Adds nothing to t[k] of
 * another stage's layer; sets each of stage s's to its seconds per call, less clock_s (what a
 * reading of the clock adds to the interval). With keep, the first PROFILE_KEEP passes' calls of
 * layer k go to keep[k * stride ...]. With slots, each pass runs in the next of them (*turn counts
 * the passes), as a pipeline's micro-batches take its arena slots in turn. */
static void time_stage_round(const pnetrt_desc *d, int64_t s, const pnetrt_call *call, int ith, int nth, int64_t reps,
                             double clock_s, double *t, double *keep, size_t stride, char *const *slots, int nslots,
                             int64_t *turn) {
    pnetrt_call c = *call;
    if (slots) c.arena = slots[(*turn)++ % nslots];
    for (int64_t k = 0; k < d->nlayers; k++)
        if (d->layer_forward[k] && d->layers[k].stage == s) {
            d->layer_forward[k](&c, ith, nth);
            pnetrt_barrier();
            t[k] = 0;
        }
    for (int64_t r = 0; r < reps; r++) {
        if (slots) c.arena = slots[(*turn)++ % nslots];
        for (int64_t k = 0; k < d->nlayers; k++)
            if (d->layer_forward[k] && d->layers[k].stage == s) {
                double b = pnetrt_now_s();
                d->layer_forward[k](&c, ith, nth);
                pnetrt_barrier();
                double e = pnetrt_now_s() - b;
                t[k] += e;
                if (keep && r < PROFILE_KEEP) keep[(size_t)k * stride + (size_t)r] = e > clock_s ? e - clock_s : 0;
            }
    }
    for (int64_t k = 0; k < d->nlayers; k++)
        if (d->layer_forward[k] && d->layers[k].stage == s) {
            t[k] = t[k] / (double)reps - clock_s;
            if (t[k] < 0) t[k] = 0;
        }
}

/* Reads every cache line of the eviction buffer (twice the last-level cache): afterwards the
 * caches hold none of what ran before. */
static void evict_caches(const char *buf, size_t bytes) {
    const volatile char *p = buf;
    unsigned sum = 0;
    for (size_t i = 0; i < bytes; i += 64) sum += (unsigned)p[i];
    volatile unsigned sink = sum;
    (void)sink;
}

/* Seconds of one call of layer f over call with the caches evicted before it, on every thread of
 * the team. */
static double time_cold(pnetrt_forward_fn f, const pnetrt_call *call, int ith, int nth, const char *evict, size_t bytes) {
    evict_caches(evict, bytes);
    pnetrt_barrier();
    double b = pnetrt_now_s();
    f(call, ith, nth);
    pnetrt_barrier();
    return pnetrt_now_s() - b;
}

typedef struct {
    double v;
    int q;
} round_at;

static int cmp_round(const void *a, const void *b) {
    double x = ((const round_at *)a)->v, y = ((const round_at *)b)->v;
    return (x > y) - (x < y);
}

/* A spread (out[0..PNETRT_PROFILE_SPREAD)) of m >= PNETRT_PROFILE_SPREAD single calls x (sorted in
 * place): sorted and averaged in equal groups, over the groups' mean, so that the factors average
 * 1 (groups of unequal counts would not). */
static void spread_groups(double *x, int m, double *out) {
    qsort(x, (size_t)m, sizeof x[0], cmp_f64);
    double mean = 0;
    for (int g = 0; g < PNETRT_PROFILE_SPREAD; g++) {
        int lo = g * m / PNETRT_PROFILE_SPREAD, hi = (g + 1) * m / PNETRT_PROFILE_SPREAD;
        double part = 0;
        for (int i = lo; i < hi; i++) part += x[i];
        out[g] = part / (hi - lo);
        mean += out[g] / PNETRT_PROFILE_SPREAD;
    }
    for (int g = 0; g < PNETRT_PROFILE_SPREAD; g++) out[g] = mean > 0 ? out[g] / mean : 0;
}

/* Layer k's spread (out[0..PNETRT_PROFILE_SPREAD)): its single calls kept in the rounds that its
 * interquartile mean at the second size counts (v: each round's mean call), over their mean,
 * sorted and averaged in PNETRT_PROFILE_SPREAD equal groups; zeros with fewer calls than groups.
 * The rounds a slow spell covered drop out, as from the mean: what is left is how much single
 * calls move about it. */
static void layer_spread(const double *calls, const int64_t *kept, const double *v, int nq, double *out) {
    round_at at[PROFILE_ROUNDS];
    double x[PROFILE_ROUNDS * PROFILE_KEEP], sum = 0;
    int m = 0;
    for (int q = 0; q < nq; q++) at[q] = (round_at){v[q], q};
    qsort(at, (size_t)nq, sizeof at[0], cmp_round);
    for (int i = nq / 4; i < nq - nq / 4; i++)
        for (int64_t r = 0; r < kept[at[i].q]; r++) sum += x[m++] = calls[at[i].q * PROFILE_KEEP + r];
    for (int g = 0; g < PNETRT_PROFILE_SPREAD; g++) out[g] = 0;
    if (m >= PNETRT_PROFILE_SPREAD && sum > 0) spread_groups(x, m, out);
}

/* What the threads of a layer profile share. */
typedef struct {
    const pnetrt_desc *d;
    const pnetrt_call *call;
    int nsizes;                   /* the sizes timed: the call's, and up to two smaller */
    int64_t size[3];              /* their samples, size[0] = call->n */
    pnetrt_spin_barrier *bar;
    volatile int64_t *reps;       /* reps[3k + i]: layer k's repetitions at size i when timed alone */
    double *at[3], *cold;         /* out: each layer's seconds per call at each size, and cold */
    double *barrier_s;            /* out */
    const char *evict;            /* NULL, or the buffer that evicts the caches */
    size_t evict_bytes;
    double *times;                /* each thread's last round at each size: [ith][3][nlayers + 1] */
    double *rounds;               /* every round's seconds per layer: [q][4][nlayers + 1], cold last */
    double *calls;                /* single calls at the second size (or the only): [k][q][PROFILE_KEEP] */
    int64_t *kept;                /* calls kept per round: [k][q] */
    double *spread;               /* out, or NULL: [k][PNETRT_PROFILE_SPREAD] */
    char **slots;                 /* NULL, or the pipeline's arena slots for the smaller sizes */
    int nslots;
    int64_t slot_cap;             /* the samples each slot holds */
    volatile int stop;            /* thread 0 has seen the rounds' time run out */
} profile_team;

/* One thread's part: the whole forward, then the layers' timed rounds at each size (and at the
 * second with the caches evicted first, into cold, when evict is given), each layer's
 * interquartile mean kept. A round runs a stage's layers in order, as the stage does, so that each
 * layer reads its inputs from where the layer before left them and finds the caches as its stage
 * leaves them; the rounds go over the stages in turn, so that a slow spell of a shared machine (or
 * a move to another core) falls on one round of many layers rather than on every round of one.
 * A stage's passes per round are its layers' least repetitions when timed alone. The single calls
 * of the second size (of the only one) are kept for the spread. */
static void profile_thread(profile_team *p, int ith, int nth) {
    const pnetrt_desc *d = p->d;
    volatile int64_t *reps = p->reps;
    size_t nl = (size_t)d->nlayers + 1;
    int ns = p->nsizes, spread_at = ns > 1 ? 1 : 0;
    double *t = p->times + (size_t)ith * 3 * nl; /* this thread's last round: t[i * nl + k] */
    pnetrt_call at[3];
    for (int i = 0; i < ns; i++) at[i] = *p->call, at[i].n = p->size[i];
    pnetrt_barrier_bind(nth > 1 ? p->bar : NULL);
    d->forward(p->call, ith, nth);
    pnetrt_barrier();
    /* Every slot holds what each layer reads, as a pipeline's slots do once a micro-batch passed. */
    for (int i = 1; i < ns && p->slots; i++) at[i].cap = p->slot_cap, at[i].arena = p->slots[0];
    for (int j = 0; j < p->nslots; j++) {
        pnetrt_call c = at[1];
        c.arena = p->slots[j];
        c.n = p->slot_cap; /* both smaller sizes then find what they read */
        d->forward(&c, ith, nth);
        pnetrt_barrier();
    }
    int64_t turn = 0;
    for (int64_t k = 0; k < d->nlayers; k++)
        for (int i = 0; d->layer_forward[k] && i < ns; i++)
            pick_reps(d->layer_forward[k], &at[i], ith, nth, &reps[3 * k + i]);
    /* What a reading of the clock adds to a timed interval. */
    double c0 = pnetrt_now_s();
    for (int i = 0; i < 1000; i++) (void)pnetrt_now_s();
    double clock_s = (pnetrt_now_s() - c0) / 1001;
    int64_t last = 0;
    for (int64_t k = 0; k < d->nlayers; k++)
        if (d->layers[k].stage > last) last = d->layers[k].stage;
    double start = pnetrt_now_s();
    int nq = 0; /* the rounds done */
    for (int q = 0; q < PROFILE_ROUNDS && !p->stop; q++, nq++) {
        for (int64_t s = 0; s <= last; s++) {
            int64_t r[3] = {0, 0, 0}; /* the stage's passes at each size: its layers' least repetitions */
            for (int64_t k = 0; k < d->nlayers; k++)
                for (int i = 0; d->layer_forward[k] && d->layers[k].stage == s && i < ns; i++)
                    r[i] = r[i] == 0 || reps[3 * k + i] < r[i] ? reps[3 * k + i] : r[i];
            if (r[0] == 0) continue;
            size_t stride = PROFILE_ROUNDS * PROFILE_KEEP;
            double *keep = ith == 0 && p->spread ? p->calls + (size_t)q * PROFILE_KEEP : NULL;
            for (int i = 0; i < ns; i++)
                time_stage_round(d, s, &at[i], ith, nth, r[i], clock_s, t + (size_t)i * nl,
                                 i == spread_at ? keep : NULL, stride, i > 0 ? p->slots : NULL, p->nslots, &turn);
            for (int64_t k = 0; keep && k < d->nlayers; k++)
                if (d->layer_forward[k] && d->layers[k].stage == s)
                    p->kept[k * PROFILE_ROUNDS + q] = r[spread_at] < PROFILE_KEEP ? r[spread_at] : PROFILE_KEEP;
            double *row = p->rounds + (size_t)q * 4 * nl;
            for (int64_t k = 0; k < d->nlayers; k++) {
                pnetrt_forward_fn f = d->layer_forward[k];
                if (!f || d->layers[k].stage != s) continue;
                double c = p->evict ? time_cold(f, &at[spread_at], ith, nth, p->evict, p->evict_bytes)
                                    : t[(size_t)spread_at * nl + (size_t)k];
                for (int i = 0; ith == 0 && i < ns; i++)
                    row[(size_t)i * nl + (size_t)k] = t[(size_t)i * nl + (size_t)k];
                if (ith == 0) row[3 * nl + (size_t)k] = c;
            }
        }
        if (ith == 0 && q + 1 >= PROFILE_MIN_ROUNDS && pnetrt_now_s() - start >= PROFILE_BUDGET_S) p->stop = 1;
        pnetrt_barrier(); /* every thread sees the same stop */
    }
    if (ith == 0) {
        double v[PROFILE_ROUNDS];
        for (int64_t k = 0; k < d->nlayers; k++) {
            double *out[4] = {p->at[0], p->at[1], p->at[2], p->cold};
            for (int i = 0; i < 4; i++) {
                if (i > 0 && i < 3 && i >= ns) continue;
                for (int q = 0; q < nq; q++) v[q] = p->rounds[((size_t)q * 4 + (size_t)i) * nl + (size_t)k];
                out[i][k] = d->layer_forward[k] ? interquartile_mean(v, nq) : 0;
            }
            if (!p->spread) continue;
            double *row = p->spread + (size_t)k * PNETRT_PROFILE_SPREAD;
            for (int g = 0; g < PNETRT_PROFILE_SPREAD; g++) row[g] = 0;
            if (!d->layer_forward[k]) continue;
            for (int q = 0; q < nq; q++) v[q] = p->rounds[((size_t)q * 4 + (size_t)spread_at) * nl + (size_t)k];
            layer_spread(p->calls + (size_t)k * PROFILE_ROUNDS * PROFILE_KEEP, p->kept + k * PROFILE_ROUNDS, v, nq,
                         row);
        }
    }
    pnetrt_barrier();
    /* The barrier alone: what each kernel of a stage adds to every micro-batch. */
    double round[PROFILE_MIN_ROUNDS];
    for (int q = 0; q < PROFILE_MIN_ROUNDS; q++) {
        double b = pnetrt_now_s();
        for (int i = 0; i < 200; i++) pnetrt_barrier();
        round[q] = (pnetrt_now_s() - b) / 200;
    }
    if (ith == 0) {
        qsort(round, PROFILE_MIN_ROUNDS, sizeof round[0], cmp_f64);
        *p->barrier_s = nth > 1 ? round[PROFILE_MIN_ROUNDS / 2] : 0;
    }
    pnetrt_barrier_bind(NULL);
}

/* A pipeline hand-off: two stages on two threads pass micro-batches back and forth through one
 * slot with nothing to compute, so that each wait is a whole hand-off that the waiter catches
 * spinning, as a stage's short waits are (a long wait sleeps, but then the hand-off is small
 * beside the micro-batch). Seconds per hand-off, or 0 when the OpenMP runtime gives fewer than two
 * threads. */
static double time_handoff(void) {
    enum { ROUNDS = 2000 };
    pnetrt_handoff h;
    pnetrt_handoff_init(&h, 2, 1, false);
    double b = 0, e = 0;
    bool two = true;
#pragma omp parallel num_threads(2)
    {
        if (omp_get_num_threads() != 2) {
            two = false;
        } else {
            int s = omp_get_thread_num();
            if (s == 0) b = pnetrt_now_s();
            for (int64_t q = 0; q < ROUNDS; q++) {
                pnetrt_handoff_wait(&h, PNETRT_FORWARD, s, q);
                pnetrt_handoff_post(&h, PNETRT_FORWARD, s, q);
            }
            if (s == 1) e = pnetrt_now_s();
        }
    }
    return two && e > b ? (e - b) / (2.0 * ROUNDS) : 0;
}

/* What a pipeline stage pays to read its input from the stage before, which another core wrote:
 * two threads take turns, one writing a buffer of `bytes`, the other reading it (a line each,
 * timed) and at once again (then from its own cache); the least of PROFILE_MIN_ROUNDS * 4 rounds of
 * each read, their difference per byte. 0 when the OpenMP runtime gives fewer than two threads. */
static double time_transfer(size_t bytes) {
    enum { ROUNDS = PROFILE_MIN_ROUNDS * 4 };
    float *buf = aligned_alloc(64, bytes);
    if (!buf) return 0;
    size_t n = bytes / sizeof *buf;
    _Atomic int turn = 0;
    double first = 0, again = 0; /* the least of each read's rounds */
    bool two = true;
#pragma omp parallel num_threads(2)
    {
        if (omp_get_num_threads() != 2) {
            two = false;
        } else {
            int me = omp_get_thread_num();
            for (int q = 0; q < ROUNDS; q++) {
                while (atomic_load_explicit(&turn, memory_order_acquire) != me) sched_yield(); /* untimed */
                if (me == 0) {
                    for (size_t i = 0; i < n; i++) buf[i] = (float)q;
                } else {
                    double t[3];
                    const volatile float *v = buf; /* every load happens */
                    for (int pass = 0; pass < 2; pass++) {
                        t[pass] = pnetrt_now_s();
                        for (size_t i = 0; i < n; i += 16) (void)v[i];
                    }
                    t[2] = pnetrt_now_s();
                    if (q == 0 || t[1] - t[0] < first) first = t[1] - t[0];
                    if (q == 0 || t[2] - t[1] < again) again = t[2] - t[1];
                }
                atomic_store_explicit(&turn, 1 - me, memory_order_release);
            }
        }
    }
    free(buf);
    return two && first > again ? (first - again) / (double)bytes : 0;
}

/* The co-run (time_stage_spreads): two neighbouring stages at once on two threads for at least
 * PROFILE_CORUN_S and PROFILE_CORUN_MIN_PASSES passes a side (at most PROFILE_CORUN_PASSES a side
 * and PROFILE_CORUN_MAX_S), its time cut into PROFILE_CORUN_BLOCKS blocks, the middle half of
 * which count (as of the rounds). */
#define PROFILE_CORUN_S 1.0
#define PROFILE_CORUN_MAX_S 10.0
#define PROFILE_CORUN_MIN_PASSES 128
#define PROFILE_CORUN_PASSES 4096
#define PROFILE_CORUN_BLOCKS 20

/* Which of the blocks of block_s seconds from t0 a pass that starts at t falls in. */
static int corun_block(double t, double t0, double block_s) {
    int b = block_s > 0 ? (int)((t - t0) / block_s) : 0;
    return b < 0 ? 0 : b >= PROFILE_CORUN_BLOCKS ? PROFILE_CORUN_BLOCKS - 1 : b;
}

/* A stage's spread (out) from its n passes (span[2i], span[2i + 1]: start and end) of a co-run
 * that began at t0: the passes of the blocks (of block_s) whose mean pass is in the middle half of
 * the blocks' (a slow spell of the machine drops out, as from the rounds); x: room for n values.
 * Zeros with fewer passes kept than factors. */
static void corun_spread(const double *span, int n, double t0, double block_s, double *x, double *out) {
    double sum[PROFILE_CORUN_BLOCKS] = {0};
    int cnt[PROFILE_CORUN_BLOCKS] = {0}, nb = 0, m = 0;
    round_at at[PROFILE_CORUN_BLOCKS];
    bool keep[PROFILE_CORUN_BLOCKS] = {false};
    for (int i = 0; i < n; i++) {
        int b = corun_block(span[2 * i], t0, block_s);
        sum[b] += span[2 * i + 1] - span[2 * i];
        cnt[b]++;
    }
    for (int b = 0; b < PROFILE_CORUN_BLOCKS; b++)
        if (cnt[b]) at[nb++] = (round_at){sum[b] / cnt[b], b};
    qsort(at, (size_t)nb, sizeof at[0], cmp_round);
    for (int i = nb / 4; i < nb - nb / 4; i++) keep[at[i].q] = true;
    for (int i = 0; i < n; i++)
        if (keep[corun_block(span[2 * i], t0, block_s)]) x[m++] = span[2 * i + 1] - span[2 * i];
    for (int g = 0; g < PNETRT_PROFILE_SPREAD; g++) out[g] = 0;
    if (m >= PNETRT_PROFILE_SPREAD) spread_groups(x, m, out);
}

/* Runs stage s's layers once over call on one thread. */
static void run_stage(const pnetrt_desc *d, int64_t s, const pnetrt_call *call) {
    for (int64_t k = 0; k < d->nlayers; k++)
        if (d->layer_forward[k] && d->layers[k].stage == s) d->layer_forward[k](call, 0, 1);
}

/* Stages s and s + 1 at once on two threads, one each, as a pipeline runs neighbouring stages
 * (with one thread a stage: a stage's team is not timed so), over micro-batches of `size` samples,
 * each stage taking its half of the arena slots in turn and its own scratch, and stage s + 1 the
 * inputs and outputs `size` samples on (at1, out1), as the pipeline gives each micro-batch its
 * own: each stage's passes (span: 2 * PROFILE_CORUN_PASSES starts and ends a side; the last pass
 * of each dropped, which may have run alone) give its spread, into stage_spread's rows s and s + 1.
 * Both stop together. False when the OpenMP runtime gives fewer than two threads. */
static bool corun_pair(const pnetrt_desc *d, const pnetrt_call *base, int64_t s, char **slots, int nslots,
                       int64_t slot_cap, int64_t size, char *scratch2, const void *const *in1, void *const *out1,
                       double *span, double *stage_spread) {
    bool two = true;
    double t0 = 0, end[2] = {0, 0};
    int passes[2] = {0, 0};
    _Atomic int done[2] = {0, 0}, stop = 0;
#pragma omp parallel num_threads(2)
    {
        if (omp_get_num_threads() != 2) {
            two = false;
        } else {
            int me = omp_get_thread_num(), half = nslots / 2;
            double *t = span + (size_t)me * 2 * PROFILE_CORUN_PASSES;
            pnetrt_call call = *base;
            call.n = size;
            call.cap = slot_cap;
            if (me) call.scratch = scratch2, call.inputs = in1, call.outputs = out1;
            pnetrt_barrier_bind(NULL);
            for (int j = 0; j < half; j++) { /* warms the slots, the scratch and the weights */
                call.arena = slots[me * half + j];
                run_stage(d, s + me, &call);
            }
#pragma omp barrier
            if (me == 0) t0 = pnetrt_now_s();
#pragma omp barrier
            int n = 0;
            while (!atomic_load_explicit(&stop, memory_order_relaxed)) {
                call.arena = slots[me * half + n % half];
                t[2 * n] = pnetrt_now_s();
                run_stage(d, s + me, &call);
                double e = t[2 * n + 1] = pnetrt_now_s();
                atomic_store_explicit(&done[me], ++n, memory_order_relaxed);
                if (n == PROFILE_CORUN_PASSES || e >= t0 + PROFILE_CORUN_MAX_S ||
                    (e >= t0 + PROFILE_CORUN_S && n >= PROFILE_CORUN_MIN_PASSES &&
                     atomic_load_explicit(&done[1 - me], memory_order_relaxed) >= PROFILE_CORUN_MIN_PASSES))
                    atomic_store_explicit(&stop, 1, memory_order_relaxed);
            }
            passes[me] = n > 1 ? n - 1 : 0;
            end[me] = n > 1 ? t[2 * (n - 1) - 1] : t0;
        }
    }
    if (!two) return false;
    double *x = span + 4 * PROFILE_CORUN_PASSES;
    double block_s = ((end[0] > end[1] ? end[0] : end[1]) - t0) / PROFILE_CORUN_BLOCKS;
    for (int me = 0; me < 2; me++)
        corun_spread(span + (size_t)me * 2 * PROFILE_CORUN_PASSES, passes[me], t0, block_s, x,
                     stage_spread + (size_t)(s + me) * PNETRT_PROFILE_SPREAD);
    return true;
}

/* Each stage's spread of a pipeline, into stage_spread (nstages rows): every two neighbouring
 * stages co-run (corun_pair: 0 and 1, 2 and 3, ..., and with an odd count the last beside the one
 * before), since a stage beside another is slowed now and then by what the other does (both
 * reading memory, a core's neighbour busy), which a stage alone is not, and a slow spell covers
 * several layers of a pass, which the layers' own spreads drawn on their own miss. Rows of zeros
 * where not timed: with fewer than two CPUs, fewer than four slots (two a stage, so that a stage
 * does not find its slot in the cache), room in the call for fewer than two micro-batches, for a
 * pair with a stage without kernels, or without the memory. */
static void time_stage_spreads(const pnetrt_desc *d, const pnetrt_call *base, char **slots, int nslots,
                               int64_t slot_cap, int64_t size, char *scratch2, double *stage_spread) {
    int64_t last = -1;
    for (int64_t k = 0; k < d->nlayers; k++)
        if (d->layer_forward[k] && d->layers[k].stage > last) last = d->layers[k].stage;
    if (!stage_spread || last < 1 || nslots < 4 || 2 * slot_cap > base->n || omp_get_num_procs() < 2) return;
    /* Both sides' passes and room for one's values, written once first: a page touched for the
     * first time while a pass is timed would add its fault to the pass. */
    double *span = malloc(5 * PROFILE_CORUN_PASSES * sizeof *span);
    const void **in1 = malloc(((size_t)d->ninputs + 1) * sizeof *in1);
    void **out1 = malloc(((size_t)d->noutputs + 1) * sizeof *out1);
    if (span && in1 && out1) {
        memset(span, 0, 5 * PROFILE_CORUN_PASSES * sizeof *span);
        pnetrt_slice_io(d, base->inputs, base->outputs, size, in1, out1);
        for (int64_t at = 0; at <= last; at += 2) {
            int64_t s = at < last ? at : last - 1;
            bool kernels[2] = {false, false};
            for (int64_t k = 0; k < d->nlayers; k++)
                if (d->layer_forward[k] && (d->layers[k].stage == s || d->layers[k].stage == s + 1))
                    kernels[d->layers[k].stage - s] = true;
            if (kernels[0] && kernels[1] &&
                !corun_pair(d, base, s, slots, nslots, slot_cap, size, scratch2, in1, out1, span, stage_spread))
                break;
        }
    }
    free(span);
    free(in1);
    free(out1);
}

/* The last-level cache's bytes, or 0 when the system does not say. */
static int64_t llc_bytes(void) {
    long b = sysconf(_SC_LEVEL3_CACHE_SIZE);
    if (b <= 0) b = sysconf(_SC_LEVEL2_CACHE_SIZE);
    return b > 0 ? (int64_t)b : 0;
}

int pnetrt_profile_layers(pnetrt_model *m, int64_t batch, const void *const *inputs, void *const *outputs, double *sec,
                          double *call_s, pnetrt_layer_profile *out) {
    const pnetrt_desc *d = m->d;
    if (!pnetrt_ready(m)) return 1;
    if (!d->layer_forward) return pnetrt_failf(m, "network '%s' has no per-layer entries to profile", d->name);
    if (pnetrt_infer_check(m, batch, inputs, outputs)) return 1;
    if (batch < 1) return pnetrt_failf(m, "a profile needs at least one sample");
    if (m->stale) {
        if (d->prepare && m->prepared != m->params) d->prepare(m->params, m->prepared);
        m->stale = false;
    }
    int64_t n = batch < d->chunk ? batch : d->chunk;
    int threads = pnetrt_call_threads(m);
    if (threads < 1) threads = 1;
    size_t abytes = (size_t)(d->arena_sample_bytes * n + d->arena_fixed_bytes) + 64;
    /* At least two threads' scratch: time_stage_spreads runs two stages at once. */
    size_t sbytes = (size_t)(threads > 2 ? threads : 2) * (size_t)d->scratch_bytes + 64;
    char *arena = aligned_alloc(64, (abytes + 63) / 64 * 64), *scratch = aligned_alloc(64, (sbytes + 63) / 64 * 64);
    if (!arena || !scratch) {
        free(arena);
        free(scratch);
        return pnetrt_failf(m, "out of memory for the profile's arena (%zu bytes)", abytes + sbytes);
    }
    memset(arena, 0, abytes);
    /* The seconds per call at the second and third sizes, cold, each thread's last round at each
     * size, every round and the single calls kept (profile_team's times, rounds and calls); reps
     * and the calls kept per round */
    double *at_n1 = calloc((3 + 3 * (size_t)threads + 4 * PROFILE_ROUNDS + PROFILE_ROUNDS * PROFILE_KEEP) *
                               ((size_t)d->nlayers + 1), sizeof *at_n1);
    int64_t *reps = calloc((3 + PROFILE_ROUNDS) * ((size_t)d->nlayers + 1), sizeof *reps);
    if (!at_n1 || !reps) {
        free(at_n1);
        free(reps);
        free(arena);
        free(scratch);
        return pnetrt_failf(m, "out of memory for a profile of %lld layers", (long long)d->nlayers);
    }
    double *at_n2 = at_n1 + d->nlayers + 1, *cold = at_n2 + d->nlayers + 1, *times = cold + d->nlayers + 1;
    double *rounds = times + 3 * (size_t)threads * ((size_t)d->nlayers + 1);
    double *calls = rounds + 4 * PROFILE_ROUNDS * ((size_t)d->nlayers + 1);
    int64_t *kept = reps + 3 * ((size_t)d->nlayers + 1);
    for (int64_t k = 0; k < d->nlayers; k++) sec[k] = call_s[k] = 0;
    *out = (pnetrt_layer_profile){
        .llc_bytes = llc_bytes(), .spread = out->spread, .micro = out->micro, .stage_spread = out->stage_spread};
    for (int64_t s = 0; out->stage_spread && s < d->nstages; s++)
        for (int g = 0; g < PNETRT_PROFILE_SPREAD; g++) out->stage_spread[s * PNETRT_PROFILE_SPREAD + g] = 0;
    /* Parameters that outgrow the last-level cache are read from memory at every call of a run,
     * whose other layers evict them: such calls are timed cold too. The buffer that evicts is
     * written once, so that its pages are real (an untouched page reads the one zero page). */
    char *evict = NULL;
    size_t evict_bytes = 2 * (size_t)out->llc_bytes;
    if (out->llc_bytes > 0 && 4 * d->prepared_floats > out->llc_bytes) {
        evict = aligned_alloc(64, evict_bytes);
        if (!evict) {
            free(at_n1);
            free(reps);
            free(arena);
            free(scratch);
            return pnetrt_failf(m, "out of memory for the profile's cache eviction buffer (%zu bytes)", evict_bytes);
        }
        memset(evict, 1, evict_bytes);
        out->cold = true;
    }
    /* The second size: a pipeline's micro-batch, whose time a stage pays per micro-batch (so that
     * the fit is exact where the prediction reads it), or an eighth of the samples. A pipeline
     * slices a chunk into micro-batches of n / M samples and one more: the third size is the
     * other of the two, so that the stages' times are exact at both. */
    int M = d->nstages > 1 ? m->microbatches : 1;
    int64_t n1 = M > 1 ? (n + M / 2) / M : n >= 16 ? n / 8 : 1;
    if (n1 < 1) n1 = 1;
    if (n1 >= n) n1 = n > 1 ? n - 1 : n;
    int64_t lo = n / M >= 1 ? n / M : 1, n2 = M > 1 && lo + 1 < n ? (n1 == lo ? lo + 1 : lo) : 0;
    out->samples = n;
    out->small = n1;
    /* A pipeline's micro-batches take its M arena slots in turn, so each writes its activations
     * where the caches no longer hold them (resnet_small: 18 slots of 2-3 samples, 3 MiB each):
     * the smaller sizes are timed so too. */
    int nslots = M > 1 && n1 < n ? M : 0;
    int64_t slot_cap = n2 > n1 ? n2 : n1;
    size_t slot_bytes = ((size_t)(d->arena_sample_bytes * slot_cap + d->arena_fixed_bytes) + 127) / 64 * 64;
    char *slot_mem = nslots ? aligned_alloc(64, (size_t)nslots * slot_bytes) : NULL;
    char **slots = nslots ? calloc((size_t)nslots, sizeof *slots) : NULL;
    if (nslots && (!slot_mem || !slots)) {
        free(slot_mem);
        free(slots);
        free(evict);
        free(reps);
        free(at_n1);
        free(arena);
        free(scratch);
        return pnetrt_failf(m, "out of memory for the profile's %d arena slots (%zu bytes)", nslots,
                            (size_t)nslots * slot_bytes);
    }
    for (int j = 0; j < nslots; j++) {
        slots[j] = slot_mem + (size_t)j * slot_bytes;
        memset(slots[j], 0, slot_bytes);
    }
    pnetrt_call call = {n, inputs, outputs, m->prepared, arena, scratch, n};
    pnetrt_spin_barrier bar = PNETRT_BARRIER(threads);
    profile_team team = {.d = d, .call = &call, .nsizes = n2 ? 3 : n1 < n ? 2 : 1, .size = {n, n1, n2}, .bar = &bar,
                         .reps = reps, .at = {sec, at_n1, at_n2}, .cold = cold, .barrier_s = &out->barrier_s,
                         .evict = evict, .evict_bytes = evict_bytes, .times = times, .rounds = rounds, .calls = calls,
                         .kept = kept, .spread = out->spread, .slots = slots, .nslots = nslots, .slot_cap = slot_cap};
    bool short_team = false;
#pragma omp parallel num_threads(threads)
    {
        if (omp_get_num_threads() != threads) {
            if (omp_get_thread_num() == 0) short_team = true;
        } else {
            profile_thread(&team, omp_get_thread_num(), threads);
        }
    }
    if (short_team)
        profile_thread(&team, 0, 1);
    /* t(n) = n * per sample + per call, the line through the two sizes. The part per call is
     * below zero where a sample costs more in a large call than in a small one (resnet_small's
     * convolutions: 40 samples of 64 KiB maps outgrow the L2 that 2 fit in, 8% a sample), and then
     * the line is still exact at both sizes; it is kept where a call of one sample costs no less
     * than nothing (t(1) >= 0; below the second size the prediction takes the samples' share of
     * its time instead), and within the whole call. What a cold call takes over a warm one
     * (reading the weights from memory) counts per call, at both sizes. */
    const double *a1 = n1 < n ? at_n1 : sec; /* the second size's, or the only one's */
    for (int64_t k = 0; k < d->nlayers; k++) {
        double c = n1 < n ? (a1[k] * (double)n - sec[k] * (double)n1) / (double)(n - n1) : 0;
        if (n > 1 && c < -sec[k] / (double)(n - 1)) c = -sec[k] / (double)(n - 1);
        if (c > sec[k]) c = sec[k];
        double miss = cold[k] > a1[k] ? cold[k] - a1[k] : 0;
        call_s[k] = c + miss;
        if (n2 && out->micro) {
            double *mk = out->micro + 2 * k;
            mk[n1 < n2 ? 0 : 1] = a1[k] + miss, mk[n1 < n2 ? 1 : 0] = at_n2[k] + miss;
        }
        sec[k] = (sec[k] + miss) / (double)n;
    }
    if (n2) out->micro_samples[0] = n1 < n2 ? n1 : n2, out->micro_samples[1] = n1 < n2 ? n2 : n1;
    time_stage_spreads(d, &call, slots, nslots, slot_cap, n1, scratch + d->scratch_bytes, out->stage_spread);
    out->handoff_s = time_handoff();
    out->xfer_byte_s = time_transfer(PROFILE_XFER_BYTES);
    free(slots);
    free(slot_mem);
    free(evict);
    free(reps);
    free(at_n1);
    free(arena);
    free(scratch);
    return 0;
}

/* While pnetrt_profile_training runs its steps: nanoseconds per descriptor layer, its forward
 * [0, nlayers) then its backward, of the model whose training calls have params step_owner;
 * NULL otherwise. Another model's steps (a library may train several at once) never touch them:
 * their calls have other parameters. step_last: the thread's last mark. */
static _Atomic(_Atomic int64_t *) step_ns;
static _Atomic(const float *) step_owner;
static _Atomic int64_t step_layers;
static _Thread_local double step_last;

void pnetrt_step_mark(const void *call, int64_t layer, int64_t part, int64_t ith) {
    _Atomic int64_t *ns = atomic_load_explicit(&step_ns, memory_order_acquire);
    if (!ns || ((const pnetrt_train_call *)call)->params != atomic_load_explicit(&step_owner, memory_order_acquire)) return;
    /* (The same on every thread of the team: neither changes during a step.) */
    if (part & 2) pnetrt_barrier(); /* the segment's last step: its team's slowest thread counts */
    if (ith != 0) return;
    double now = pnetrt_now_s();
    int64_t L = atomic_load_explicit(&step_layers, memory_order_relaxed);
    if (layer >= 0 && layer < L && step_last > 0)
        atomic_fetch_add_explicit(&ns[(part & 1 ? L : 0) + layer], (int64_t)((now - step_last) * 1e9), memory_order_relaxed);
    step_last = now;
}

/* Sums the in-memory trace's slices of one kind per stage (stage -1: the whole network, into
 * index 0): seconds and samples. */
static void trace_sums(const pnetrt_model *m, int kind, int S, double *sec, double *samples) {
    int64_t n = atomic_load(&m->ntrace);
    if (n > m->trace_cap) n = m->trace_cap;
    for (int64_t i = 0; i < n; i++) {
        const trace_event *e = &m->trace[i];
        int s = e->stage < 0 ? 0 : e->stage;
        if (e->kind != kind || s >= S) continue;
        sec[s] += e->end - e->begin;
        samples[s] += (double)e->samples;
    }
}

int pnetrt_profile_training(pnetrt_model *m, int64_t batch, const void *const *inputs, double seconds,
                            pnetrt_train_profile *out) {
    const pnetrt_desc *d = m->d;
    double *lf = out->layer_forward_s, *lb = out->layer_backward_s;
    *out = (pnetrt_train_profile){.layer_forward_s = lf, .layer_backward_s = lb};
    if (!d->train) return 0;
    int S = d->nstages > 0 && d->nstages <= PNETRT_MAX_STAGES ? (int)d->nstages : 1;
    /* The steps' own trace, in memory (no path: nothing is written), in place of the caller's. */
    trace_event *saved = m->trace;
    int64_t saved_n = atomic_load(&m->ntrace), saved_cap = m->trace_cap;
    double saved_t0 = m->t0;
    m->trace_cap = INT64_C(1) << 18;
    m->trace = malloc(sizeof(trace_event) * (size_t)m->trace_cap);
    /* The steps as planned (a pipeline as one), never a plan measured cheaper on this machine. */
    bool saved_set = m->schedule_set;
    m->schedule_set = true;
    int rc = 0;
    if (!m->trace) rc = pnetrt_failf(m, "cannot allocate the profile's trace");
    float loss;
    if (!rc) rc = pnetrt_train_step(m, batch, inputs, &loss); /* warm: the trainer's buffers */
    /* Each layer's steps, timed by pnetrt_step_mark from here to the last step. */
    _Atomic int64_t *ns = NULL;
    if (!rc && out->layer_forward_s) {
        ns = calloc(2 * ((size_t)d->nlayers + 1), sizeof *ns);
        if (!ns) rc = pnetrt_failf(m, "cannot allocate the profile's layer times");
        atomic_store(&step_layers, d->nlayers);
        atomic_store_explicit(&step_owner, m->params, memory_order_release); /* the warm step's */
        atomic_store_explicit(&step_ns, ns, memory_order_release);
    }
    atomic_store(&m->ntrace, 0);
    m->t0 = pnetrt_now_s();
    double t0 = pnetrt_now_s();
    int64_t steps = 0;
    while (!rc && (steps < 3 || pnetrt_now_s() - t0 < seconds)) {
        rc = pnetrt_train_step(m, batch, inputs, &loss);
        steps++;
    }
    atomic_store_explicit(&step_ns, NULL, memory_order_release);
    atomic_store_explicit(&step_owner, NULL, memory_order_release);
    for (int64_t k = 0; ns && !rc && k < d->nlayers; k++) {
        double per = 1e-9 / (double)(steps * batch);
        out->layer_forward_s[k] = (double)atomic_load(&ns[k]) * per;
        out->layer_backward_s[k] = (double)atomic_load(&ns[d->nlayers + k]) * per;
    }
    free((void *)ns);
    if (!rc) {
        double samples[PNETRT_MAX_STAGES] = {0}, none[PNETRT_MAX_STAGES] = {0}, whole[1] = {0}, n1[1] = {0};
        trace_sums(m, PNETRT_TRACE_FORWARD, S, out->forward_s, samples);
        for (int s = 0; s < S; s++) out->forward_s[s] = samples[s] > 0 ? out->forward_s[s] / samples[s] : 0;
        for (int s = 0; s < S; s++) samples[s] = 0;
        trace_sums(m, PNETRT_TRACE_BACKWARD, S, out->backward_s, samples);
        for (int s = 0; s < S; s++) out->backward_s[s] = samples[s] > 0 ? out->backward_s[s] / samples[s] : 0;
        out->pipelined = samples[0] > 0;
        trace_sums(m, PNETRT_TRACE_STEP_CHUNK, 1, whole, n1);
        /* A step cut at batch statistics runs every chunk once per segment, a slice each: its
         * samples count once. */
        double segs[1] = {0}, seg_n[1] = {0};
        trace_sums(m, PNETRT_TRACE_SEGMENT, 1, segs, seg_n);
        if (d->train->nsegments > 1) seg_n[0] /= (double)d->train->nsegments;
        whole[0] += segs[0];
        n1[0] += seg_n[0];
        out->step_s = n1[0] > 0 ? whole[0] / n1[0] : 0;
        double upd[PNETRT_MAX_STAGES] = {0};
        trace_sums(m, PNETRT_TRACE_UPDATE, S, upd, none);
        for (int s = 0; s < S; s++) out->update_s += upd[s] / (double)(steps * batch);
        out->steps = steps;
        out->nstages = S;
        out->threads = pnetrt_call_threads(m);
    }
    m->schedule_set = saved_set;
    free(m->trace);
    m->trace = saved;
    m->trace_cap = saved_cap;
    m->t0 = saved_t0;
    atomic_store(&m->ntrace, saved_n);
    return rc;
}
