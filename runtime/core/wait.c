/* Spin-then-sleep waits (wait.h): a futex on Linux, a yield loop elsewhere. */
#define _GNU_SOURCE
#include "wait.h"

#include <fcntl.h>
#include <limits.h>
#include <stdbool.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
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

/* Whether spinning costs anyone a core, from two readings of the kernel's scheduler:
 * - the machine: more threads runnable than it has CPUs (the fourth field of /proc/loadavg counts
 *   them, spinners and the asking thread included), in two readings in a row, read at most once a
 *   millisecond and shared by every waiter. A moment's extra runnable thread (a kernel worker, an
 *   MPI launcher's progress thread: one reading in ten during a 2-rank run here) is no reason to
 *   sleep, and the threads of a busy machine stay longer than 1 ms. Not known for a process
 *   confined to some of the machine's CPUs (taskset, a cpuset, mpirun's binding of each rank to a
 *   core), whose CPUs' load the machine-wide count does not show;
 * - the asking thread: it waited for its CPU (the second field of /proc/thread-self/schedstat, the
 *   time it was runnable but not running) for more than a fifth of the time since its last
 *   reading, at least a millisecond before. A spinner that shares its core with another runnable
 *   thread is preempted for about half of every time slice.
 * A waiter whose budget runs out on a machine that neither reading finds oversubscribed spins on
 * instead of sleeping, as an active wait would: its wake-up would cost the critical path tens of
 * microseconds, and the core it holds is one that nobody else wants. Where neither can be read
 * (no /proc), the machine counts as busy and waits sleep when their budget runs out. */
enum { LOAD_UNREAD = 0, LOAD_QUIET = 1, LOAD_BUSY = 2, LOAD_UNKNOWN = 3 };
static _Atomic int load_verdict, load_over, load_fd = -2;
static _Atomic long long load_at_ns;
static long load_cpus;

static long long now_ns(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (long long)ts.tv_sec * 1000000000LL + ts.tv_nsec;
}

/* The runnable count of a /proc/loadavg line ("0.10 0.20 0.30 2/345 6789"), or -1. */
static long runnable_of(const char *line) {
    const char *s = line;
    for (int f = 0; f < 3; f++) {
        s = strchr(s, ' ');
        if (!s) return -1;
        s++;
    }
    char *end;
    long n = strtol(s, &end, 10);
    return end != s && *end == '/' ? n : -1;
}

static int load_open(void) {
    int fd = atomic_load_explicit(&load_fd, memory_order_acquire);
    if (fd != -2) return fd;
    fd = -1;
    long online = sysconf(_SC_NPROCESSORS_ONLN);
#ifdef __linux__
    cpu_set_t set;
    if (online > 0 && !sched_getaffinity(0, sizeof set, &set) && CPU_COUNT(&set) == online)
        fd = open("/proc/loadavg", O_RDONLY | O_CLOEXEC);
#endif
    load_cpus = online;
    int expect = -2;
    if (!atomic_compare_exchange_strong(&load_fd, &expect, fd)) {
        if (fd >= 0) close(fd);
        fd = expect;
    }
    return fd;
}

/* The machine's reading: LOAD_QUIET, LOAD_BUSY or LOAD_UNKNOWN. */
static int machine_load(long long now) {
    long long at = atomic_load_explicit(&load_at_ns, memory_order_relaxed);
    int v = atomic_load_explicit(&load_verdict, memory_order_relaxed);
    if (v != LOAD_UNREAD && now - at < 1000000) return v;
    /* One waiter reads; the others take the last answer meanwhile. */
    if (v != LOAD_UNREAD && !atomic_compare_exchange_strong(&load_at_ns, &at, now)) return v;
    int fd = load_open();
    char line[128];
    ssize_t n = fd >= 0 ? pread(fd, line, sizeof line - 1, 0) : -1;
    long running = -1;
    if (n > 0) {
        line[n] = 0;
        running = runnable_of(line);
    }
    if (running < 1) {
        v = LOAD_UNKNOWN;
    } else {
        bool over = running > load_cpus;
        v = atomic_exchange_explicit(&load_over, over, memory_order_relaxed) && over ? LOAD_BUSY : LOAD_QUIET;
    }
    atomic_store_explicit(&load_at_ns, now, memory_order_relaxed);
    atomic_store_explicit(&load_verdict, v, memory_order_relaxed);
    return v;
}

/* The asking thread's reading: LOAD_QUIET, LOAD_BUSY or LOAD_UNKNOWN. */
static _Thread_local long long self_at_ns, self_delay_ns;
static _Thread_local int self_verdict;

static int thread_load(long long now) {
    if (self_verdict == LOAD_UNKNOWN || (self_verdict != LOAD_UNREAD && now - self_at_ns < 1000000)) return self_verdict;
    long long delay = -1;
#ifdef __linux__
    int fd = open("/proc/thread-self/schedstat", O_RDONLY | O_CLOEXEC);
    char line[128];
    ssize_t n = fd >= 0 ? read(fd, line, sizeof line - 1) : -1;
    if (fd >= 0) close(fd);
    if (n > 0) {
        line[n] = 0;
        char *s = strchr(line, ' '), *end;
        if (s) {
            delay = strtoll(s + 1, &end, 10);
            if (end == s + 1) delay = -1;
        }
    }
#endif
    if (delay < 0) return self_verdict = LOAD_UNKNOWN;
    /* A reading more than 100 ms old says nothing of now: start again from this one. */
    bool fresh = self_verdict != LOAD_UNREAD && now - self_at_ns <= 100000000;
    int v = fresh && 5 * (delay - self_delay_ns) > now - self_at_ns ? LOAD_BUSY : LOAD_QUIET;
    self_at_ns = now;
    self_delay_ns = delay;
    return self_verdict = v;
}

bool pnetrt_machine_oversubscribed(void) {
    long long now = now_ns();
    int machine = machine_load(now);
    if (machine == LOAD_BUSY) return true;
    int self = thread_load(now);
    return self == LOAD_BUSY || (machine == LOAD_UNKNOWN && self == LOAD_UNKNOWN);
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
    /* Spin the budget; on a machine with a core for every runnable thread, go on spinning
     * (checking the load after each budget) for up to PNETRT_QUIET_SPIN_S in all. */
    long long start = 0;
    for (int round = 0;; round++) {
        for (int i = 0; i < budget; i++) {
            cpu_relax();
            if (atomic_load_explicit(w, memory_order_acquire) != old) {
                /* Spinning paid off: allow waits up to twice this long next time. */
                if (round > 0 || 2 * i > budget)
                    atomic_store_explicit(&q->spin, budget * 2 < SPIN_MAX ? budget * 2 : SPIN_MAX, memory_order_relaxed);
                return;
            }
        }
        if (budget == 0 || pnetrt_machine_oversubscribed()) break;
        if (round == 0) start = now_ns();
        else if (now_ns() - start > PNETRT_QUIET_SPIN_S * 1e9) break;
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
