/* Pipeline hand-offs between thread groups: an atomic counter per stage; waits spin briefly and
 * then yield, so more threads than cores still progress. */
#include "handoff.h"

#include <sched.h>

void pnetrt_handoff_init(pnetrt_handoff *h, int stages, int slots) {
    h->stages = stages;
    h->slots = slots;
    for (int s = 0; s < stages && s < PNETRT_HANDOFF_MAX; s++) atomic_init(&h->done[s], 0);
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

void pnetrt_handoff_wait(pnetrt_handoff *h, int stage, int64_t q) {
    if (stage > 0) wait_past(&h->done[stage - 1], q);
    else if (q >= h->slots) wait_past(&h->done[h->stages - 1], q - h->slots);
}

void pnetrt_handoff_post(pnetrt_handoff *h, int stage, int64_t q) {
    atomic_store_explicit(&h->done[stage], q + 1, memory_order_release);
}
