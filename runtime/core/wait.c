/* Spin-then-sleep waits (wait.h): a futex on Linux, a yield loop elsewhere. */
#define _GNU_SOURCE
#include "wait.h"

#include <limits.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#ifdef __linux__
#include <linux/futex.h>
#include <sys/syscall.h>
#endif

/* Spin budget, in pause instructions (tens of nanoseconds each): kernels between two barriers of
 * a small network take a few microseconds, a futex sleep and wake-up costs about as much. */
enum { SPIN_DEFAULT = 4096, SPIN_MIN = 64, SPIN_MAX = 1 << 15 };

static inline void cpu_relax(void) {
#if defined(__x86_64__) || defined(__i386__)
    __builtin_ia32_pause();
#elif defined(__aarch64__)
    __asm__ volatile("yield");
#endif
}

static void sleep_on(_Atomic int *w, int old) {
#ifdef __linux__
    syscall(SYS_futex, (int *)w, FUTEX_WAIT_PRIVATE, old, NULL, NULL, 0);
#else
    (void)w, (void)old;
    sched_yield();
#endif
}

/* PNET_WAIT_POLICY, read once: adaptive (the default: spin, then sleep), active (spin only, as
 * before waits could sleep; for a machine the run has to itself) or passive (sleep at once). */
enum { POLICY_UNREAD, POLICY_ADAPTIVE, POLICY_ACTIVE, POLICY_PASSIVE };
static _Atomic int policy;

static int wait_policy(void) {
    int p = atomic_load_explicit(&policy, memory_order_relaxed);
    if (p != POLICY_UNREAD) return p;
    const char *e = getenv("PNET_WAIT_POLICY");
    p = !e || !strcmp(e, "adaptive") ? POLICY_ADAPTIVE
        : !strcmp(e, "active")         ? POLICY_ACTIVE
        : !strcmp(e, "passive")        ? POLICY_PASSIVE
                                       : POLICY_UNREAD;
    if (p == POLICY_UNREAD) {
        fprintf(stderr, "pnet: warning: PNET_WAIT_POLICY='%s' is not active, passive or adaptive; using adaptive\n", e);
        p = POLICY_ADAPTIVE;
    }
    atomic_store_explicit(&policy, p, memory_order_relaxed);
    return p;
}

void pnetrt_wait_change(pnetrt_waitq *q, _Atomic int *w, int old) {
    if (atomic_load_explicit(w, memory_order_acquire) != old) return;
    int p = wait_policy();
    if (p == POLICY_ACTIVE) {
        while (atomic_load_explicit(w, memory_order_acquire) == old) cpu_relax();
        return;
    }
    int budget = atomic_load_explicit(&q->spin, memory_order_relaxed);
    if (budget == 0) budget = SPIN_DEFAULT;
    if (p == POLICY_PASSIVE) budget = 0;
    for (int i = 0; i < budget; i++) {
        cpu_relax();
        if (atomic_load_explicit(w, memory_order_acquire) != old) {
            /* Spinning paid off: allow waits up to twice this long next time. */
            if (2 * i > budget) atomic_store_explicit(&q->spin, budget * 2 < SPIN_MAX ? budget * 2 : SPIN_MAX, memory_order_relaxed);
            return;
        }
    }
    /* The wait outlasted the budget: sleep, and spin less next time. */
    if (p != POLICY_PASSIVE)
        atomic_store_explicit(&q->spin, budget / 2 > SPIN_MIN ? budget / 2 : SPIN_MIN, memory_order_relaxed);
    atomic_fetch_add_explicit(&q->sleepers, 1, memory_order_seq_cst);
    while (atomic_load_explicit(w, memory_order_seq_cst) == old) sleep_on(w, old);
    atomic_fetch_sub_explicit(&q->sleepers, 1, memory_order_relaxed);
}

void pnetrt_wake(pnetrt_waitq *q, _Atomic int *w) {
    /* Pairs with the sleeper's increment: either it sees the new value, or this sees it. */
    atomic_thread_fence(memory_order_seq_cst);
    if (atomic_load_explicit(&q->sleepers, memory_order_relaxed) == 0) return;
#ifdef __linux__
    syscall(SYS_futex, (int *)w, FUTEX_WAKE_PRIVATE, INT_MAX, NULL, NULL, 0);
#else
    (void)w;
#endif
}
