/* The thread transport of transport.h: pipeline hand-offs are atomic counters per stage and
 * direction, and a reduction point is a barrier over the team (the slots are shared memory), with
 * an all-gather of the other ranks' chunks when the run spans ranks (comm.h).
 * Waits spin briefly and then sleep (wait.h), so more threads than cores still progress. */
#include "transport.h"

#include "comm.h"

void pnetrt_handoff_init(pnetrt_handoff *h, int stages, int slots, bool training) {
    h->stages = stages;
    h->slots = slots;
    h->training = training;
    for (int s = 0; s < stages && s < PNETRT_HANDOFF_MAX; s++) {
        atomic_init(&h->done[PNETRT_FORWARD][s], 0);
        atomic_init(&h->done[PNETRT_BACKWARD][s], 0);
        for (int d = 0; d < 2; d++) {
            atomic_init(&h->posts[d][s], 0);
            h->wq[d][s] = (pnetrt_waitq){0};
        }
    }
}

/* Returns once counter > q. The post count is read first, so a post that lands between the two
 * reads ends the wait at once. */
static void wait_past(pnetrt_handoff *h, pnetrt_dir dir, int stage, int64_t q) {
    for (;;) {
        int seen = atomic_load_explicit(&h->posts[dir][stage], memory_order_acquire);
        if (atomic_load_explicit(&h->done[dir][stage], memory_order_acquire) > q) return;
        pnetrt_wait_change(&h->wq[dir][stage], &h->posts[dir][stage], seen);
    }
}

void pnetrt_handoff_wait(pnetrt_handoff *h, pnetrt_dir dir, int stage, int64_t q) {
    if (dir == PNETRT_BACKWARD) {
        if (stage + 1 < h->stages) wait_past(h, PNETRT_BACKWARD, stage + 1, q);
    } else if (stage > 0) {
        wait_past(h, PNETRT_FORWARD, stage - 1, q);
    } else if (q >= h->slots) {
        /* The slot's previous micro-batch leaves the pipeline after the last forward in
         * inference, after stage 0's backward in training. */
        if (h->training)
            wait_past(h, PNETRT_BACKWARD, 0, q - h->slots);
        else
            wait_past(h, PNETRT_FORWARD, h->stages - 1, q - h->slots);
    }
}

void pnetrt_handoff_post(pnetrt_handoff *h, pnetrt_dir dir, int stage, int64_t q) {
    atomic_store_explicit(&h->done[dir][stage], q + 1, memory_order_release);
    atomic_fetch_add_explicit(&h->posts[dir][stage], 1, memory_order_release);
    pnetrt_wake(&h->wq[dir][stage], &h->posts[dir][stage]);
}

int pnetrt_reduce_point(pnetrt_spin_barrier *team, int *sense, const pnetrt_chunk_slots *sets, int nsets,
                        const pnetrt_ranks *ranks, char *err, size_t n) {
    /* Every group's slots of this rank are in shared memory: once the whole team has arrived, all
     * are written. Other ranks' chunks arrive by an all-gather, while the team waits. */
    pnetrt_barrier_wait(team, sense);
    if (pnetrt_comm_size(ranks->comm) < 2) return 0;
    int rc = 0;
    if (ranks->leader)
        for (int k = 0; k < nsets && !rc; k++)
            rc = pnetrt_comm_allgather_chunks(ranks->comm, sets[k].base, sets[k].floats, ranks->first, err, n);
    pnetrt_barrier_wait(team, sense);
    return rc;
}
