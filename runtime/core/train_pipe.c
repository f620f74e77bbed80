/* Pipeline training on one process's threads (train_impl.h): each pipeline stage's parameter
 * elements, and R replica pipelines of thread groups, one per stage, that pass micro-batches
 * through hand-offs (transport.h) in GPipe or 1F1B order. */
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

/* Each pipeline stage's parameter elements (train_impl.h), from the parameters' names: a parameter
 * is named after its layer (LAYER.weight, LAYER.bias), and the layer descriptors give each layer's
 * stage. Returns false, once and for good, when some parameter's layer is not found. */
bool pnetrt_train_stage_map(pnetrt_model *m, pnetrt_trainer *t) {
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

void pnetrt_train_pipe_thread(run *r, const pipe *p, int t, pnetrt_spin_barrier *bars, pnetrt_spin_barrier *all) {
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
    if (!r->wt_ok) {
        td->prep(r->call, t, nth);
        if (tr) pnetrt_trace_slice(r->m, PNETRT_TRACE_PREP, b, pnetrt_now_s(), s, rg, 0, 0);
    }
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
                pnetrt_train_fold_chunk(r, &st, f, ch, slot, p->cap, q0 * C, scratch, ith, size);
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
    pnetrt_train_reduce_point(r, all, &sense, true, t);
    if (tr) pnetrt_trace_slice(r->m, PNETRT_TRACE_REDUCE, b, pnetrt_now_s(), s, rg, 0, 0);
    if (tr) b = pnetrt_now_s();
    pnetrt_train_update(r, p->R, t, nth, all, &sense);
    if (tr) pnetrt_trace_slice(r->m, PNETRT_TRACE_UPDATE, b, pnetrt_now_s(), s, rg, 0, 0);
    pnetrt_barrier_bind(NULL);
}

/* The pipeline for this step, or false when the network or the thread count does not allow one. */
bool pnetrt_train_plan_pipe(pnetrt_model *m, int64_t nch, int threads, pipe *p) {
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
int pnetrt_train_reserve_pipe(pnetrt_model *m, pnetrt_trainer *t, pipe *p) {
    const pnetrt_train_desc *td = pnetrt_model_desc(m)->train;
    size_t need = (size_t)p->R * (size_t)p->slots * (size_t)p->cap * (size_t)td->sample_bytes;
    if (need > t->arena_bytes) {
        pnetrt_train_free(t->arena);
        t->arena = pnetrt_train_zalloc(need);
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
