/* The waits of the schedules (barriers between kernels, pipeline hand-offs, reduction points):
 * spin while waits are short, then sleep in the kernel (a futex), adapting how long to spin to
 * how long waits have actually taken. A spinning thread on a busy or oversubscribed machine holds
 * the core that the thread it waits for needs; a sleeping one gives it back. PNET_WAIT_POLICY=active
 * spins only (as OMP_WAIT_POLICY=active), =passive sleeps at once.
 *
 * Internal to libpnetrt. */
#ifndef PNETRT_WAIT_H
#define PNETRT_WAIT_H
#include <stdatomic.h>
#include <stdbool.h>

/* Who sleeps on a word, and how long its waiters spin first. Zeroed is ready to use. */
typedef struct pnetrt_waitq {
    _Atomic int sleepers; /* threads in (or entering) the kernel wait */
    _Atomic int spin;     /* spins before sleeping; 0 means the default */
} pnetrt_waitq;

/* Returns once the 32-bit word w no longer holds old: spins up to the queue's budget, then sleeps
 * until pnetrt_wake. The budget grows when spinning succeeds and shrinks when it had to sleep. */
void pnetrt_wait_change(pnetrt_waitq *q, _Atomic int *w, int old);
/* Wakes the sleepers of w after the caller has stored its new value. */
void pnetrt_wake(pnetrt_waitq *q, _Atomic int *w);
/* Whether the machine has more runnable threads than CPUs (this process's included), as last read
 * from /proc/loadavg, at most a millisecond ago; true where that cannot be known. Waits sleep
 * only then; plans (plan.h) weigh one thread only then, until it has been measured. */
bool pnetrt_machine_oversubscribed(void);
/* How long a wait on a machine that is not oversubscribed spins (or polls) past its budget before
 * it sleeps anyway (as KMP_BLOCKTIME bounds an active OpenMP wait): a pipeline's longest waits, its
 * fill and drain, take milliseconds; a thread left waiting longer (a stage of a stream with no
 * input) gives its core back. */
#define PNETRT_QUIET_SPIN_S 0.05

#endif
