/* The barrier of libpnetrt's threads (barrier.c): a sense-reversing counter that spins briefly, then sleeps
 * (wait.h). The caller owns each barrier; pnetrt_barrier_bind only points this thread at one. */
#ifndef PNETRT_CORE_BARRIER_H
#define PNETRT_CORE_BARRIER_H

#include "wait.h"

/* A sense-reversing barrier of n threads; PNETRT_BARRIER(n) is a fresh one. Waits spin, then sleep (wait.h). */
typedef struct pnetrt_spin_barrier {
    _Atomic int count;
    _Atomic int sense;
    int n;
    pnetrt_waitq q;
} pnetrt_spin_barrier;
#define PNETRT_BARRIER(threads) ((pnetrt_spin_barrier){.n = (threads)})
/* Makes b the barrier that generated code's pnetrt_barrier() waits on, on this thread (NULL: none). */
void pnetrt_barrier_bind(pnetrt_spin_barrier *b);
void pnetrt_barrier_wait(pnetrt_spin_barrier *b, int *local_sense);

#endif
