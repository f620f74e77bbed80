/* The barrier between the kernels of one call: the thread-bound barrier that generated code's pnetrt_barrier()
 * waits on, and the sense-reversing wait that the schedules' reduction points share (transport.c). */
#include "barrier.h"
#include "pnet.h"

#include <stdatomic.h>

/* The barrier between kernels of one forward call: a sense-reversing counter that spins
 * briefly (kernels are short) and then sleeps (wait.h), so more threads than cores still progress. The
 * OpenMP team of the call sets it up; a call on one thread has none. */
static _Thread_local pnetrt_spin_barrier *tls_barrier;
static _Thread_local int tls_sense;

void pnetrt_barrier_bind(pnetrt_spin_barrier *b) {
    tls_barrier = b;
    tls_sense = 0;
}

void pnetrt_barrier_wait(pnetrt_spin_barrier *b, int *local_sense) {
    if (!b || b->n <= 1) return;
    int sense = *local_sense = !*local_sense;
    if (atomic_fetch_add_explicit(&b->count, 1, memory_order_acq_rel) == b->n - 1) {
        atomic_store_explicit(&b->count, 0, memory_order_relaxed);
        atomic_store_explicit(&b->sense, sense, memory_order_release);
        pnetrt_wake(&b->q, &b->sense);
        return;
    }
    pnetrt_wait_change(&b->q, &b->sense, !sense);
}

void pnetrt_barrier(void) {
    pnetrt_spin_barrier *b = tls_barrier;
    if (!b || b->n <= 1) return;
    pnetrt_barrier_wait(b, &tls_sense);
}
