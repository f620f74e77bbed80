/* The points where a schedule's thread groups exchange data, behind one small interface, so that a
 * rank-based transport (MPI) can replace the threads without rewriting the schedules:
 *
 * - Hand-offs. Stage s of a pipeline waits until it may run micro-batch q in one direction
 *   (forward; or backward, in training) and posts q when it is done. With threads, a micro-batch's
 *   values stay in its shared arena slot and a hand-off is an atomic counter per stage and
 *   direction. A rank transport would send q's stage-boundary tensors (activations forward, their
 *   gradients backward) to the neighbouring stage's rank.
 * - Reduction points. In training, each replica group writes the gradient and statistics slots of
 *   its own chunks; after a reduction point, every participant sees the slots of all the chunks,
 *   and the generated code combines them by the fixed tree of docs/training.md. With threads the
 *   slots are shared and the point is a barrier over the team. A rank transport would all-gather
 *   the chunks' slots that other ranks own, so that every rank runs the same tree on the same
 *   values and gets the same bits.
 *
 * Internal to libpnetrt. */
#ifndef PNETRT_TRANSPORT_H
#define PNETRT_TRANSPORT_H
#include "barrier.h"
#include "pnetrt_abi.h"

#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

enum { PNETRT_HANDOFF_MAX = PNETRT_MAX_STAGES };

typedef enum pnetrt_dir { PNETRT_FORWARD = 0, PNETRT_BACKWARD = 1 } pnetrt_dir;

typedef struct pnetrt_handoff {
    _Atomic int64_t done[2][PNETRT_HANDOFF_MAX]; /* micro-batches finished, per direction and stage */
    _Atomic int posts[2][PNETRT_HANDOFF_MAX];    /* bumped by every post: the futex word waiters sleep on */
    pnetrt_waitq wq[2][PNETRT_HANDOFF_MAX];
    int stages, slots;                           /* slots: micro-batches in flight at most */
    bool training;                               /* a slot is freed by stage 0's backward, not the last forward */
} pnetrt_handoff;

void pnetrt_handoff_init(pnetrt_handoff *h, int stages, int slots, bool training);
/* Blocks until stage may run micro-batch q in direction dir. Forward: its input is ready (stage >
 * 0), or its slot is free again (stage 0: the micro-batch `slots` before it has left the pipeline).
 * Backward: the gradient of its output is ready (every stage but the last). */
void pnetrt_handoff_wait(pnetrt_handoff *h, pnetrt_dir dir, int stage, int64_t q);
/* Announces that stage finished micro-batch q in direction dir. */
void pnetrt_handoff_post(pnetrt_handoff *h, pnetrt_dir dir, int stage, int64_t q);

/* Slots that a reduction point completes: chunk k's are the `floats` floats at base + k * floats. */
typedef struct pnetrt_chunk_slots {
    float *base;
    int64_t floats;
} pnetrt_chunk_slots;

/* The ranks a reduction point spans (comm.h): rank r's groups wrote chunks [first[r], first[r + 1]);
 * the leader is the one thread of this rank's team that communicates. comm NULL: one process. */
typedef struct pnetrt_comm pnetrt_comm;
typedef struct pnetrt_ranks {
    pnetrt_comm *comm;
    const int64_t *first;
    bool leader;
} pnetrt_ranks;

/* A reduction point of a team (its barrier and the caller's sense): the caller's rank has written
 * its chunks of each of the nsets slot sets; on return, every chunk of every set is written and
 * visible to the caller. With several ranks, the leader all-gathers the other ranks' chunks
 * between two barriers of the team. Returns 0, or 1 (to the leader) with err set. */
int pnetrt_reduce_point(pnetrt_spin_barrier *team, int *sense, const pnetrt_chunk_slots *sets, int nsets,
                        const pnetrt_ranks *ranks, char *err, size_t n);

#endif
