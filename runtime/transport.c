/* The thread transport of transport.h: pipeline hand-offs are atomic counters per stage and
 * direction, and a reduction point is a barrier over the team (the slots are shared memory).
 * Waits spin briefly and then yield, so more threads than cores still progress. */
#include "transport.h"

#include <sched.h>

void pnetrt_handoff_init(pnetrt_handoff *h, int stages, int slots, bool training) {
    h->stages = stages;
    h->slots = slots;
    h->training = training;
    for (int s = 0; s < stages && s < PNETRT_HANDOFF_MAX; s++) {
        atomic_init(&h->done[PNETRT_FORWARD][s], 0);
        atomic_init(&h->done[PNETRT_BACKWARD][s], 0);
    }
}

void pnetrt_spin(long spins) {
    if (spins < 4000) {
#if defined(__x86_64__) || defined(__i386__)
        __builtin_ia32_pause();
#endif
    } else {
        sched_yield();
    }
}

static void wait_past(_Atomic int64_t *counter, int64_t q) {
    for (long spins = 0; atomic_load_explicit(counter, memory_order_acquire) <= q; spins++) pnetrt_spin(spins);
}

void pnetrt_handoff_wait(pnetrt_handoff *h, pnetrt_dir dir, int stage, int64_t q) {
    if (dir == PNETRT_BACKWARD) {
        if (stage + 1 < h->stages) wait_past(&h->done[PNETRT_BACKWARD][stage + 1], q);
    } else if (stage > 0) {
        wait_past(&h->done[PNETRT_FORWARD][stage - 1], q);
    } else if (q >= h->slots) {
        /* The slot's previous micro-batch leaves the pipeline after the last forward in
         * inference, after stage 0's backward in training. */
        wait_past(h->training ? &h->done[PNETRT_BACKWARD][0] : &h->done[PNETRT_FORWARD][h->stages - 1], q - h->slots);
    }
}

void pnetrt_handoff_post(pnetrt_handoff *h, pnetrt_dir dir, int stage, int64_t q) {
    atomic_store_explicit(&h->done[dir][stage], q + 1, memory_order_release);
}

void pnetrt_reduce_point(pnetrt_spin_barrier *team, int *sense, const pnetrt_chunk_slots *sets, int nsets, int64_t c0,
                         int64_t c1) {
    /* Every group's slots are in shared memory: once the whole team has arrived, all are written. */
    (void)sets, (void)nsets, (void)c0, (void)c1;
    pnetrt_barrier_wait(team, sense);
}
