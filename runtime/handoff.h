/* The hand-off points of a pipeline schedule, behind one small interface: stage s of a
 * replica's pipeline waits until it may start micro-batch q, and posts q when done. With threads,
 * a micro-batch's values stay in its shared arena slot and the hand-off is an atomic counter per
 * stage; a rank-based transport (MPI) would implement the same three calls by sending the
 * stage-boundary tensors of q to the next stage's rank. Internal to libpnetrt. */
#ifndef PNETRT_HANDOFF_H
#define PNETRT_HANDOFF_H
#include <stdatomic.h>
#include <stdint.h>

enum { PNETRT_HANDOFF_MAX = 64 };

typedef struct pnetrt_handoff {
    _Atomic int64_t done[PNETRT_HANDOFF_MAX]; /* micro-batches finished, per stage */
    int stages, slots;                        /* slots: micro-batches in flight at most */
} pnetrt_handoff;

/* One step of a wait loop: pause while spins is small (the wait is usually short), then yield
 * the core, so more threads than cores still progress. */
void pnetrt_spin(long spins);

void pnetrt_handoff_init(pnetrt_handoff *h, int stages, int slots);
/* Blocks until stage may run micro-batch q: its input is ready (stage > 0), or its slot is free
 * again (stage 0, once the last stage finished q - slots). */
void pnetrt_handoff_wait(pnetrt_handoff *h, int stage, int64_t q);
/* Announces that stage finished micro-batch q. */
void pnetrt_handoff_post(pnetrt_handoff *h, int stage, int64_t q);

#endif
