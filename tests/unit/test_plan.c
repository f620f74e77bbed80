/* The choice among plans of the same bits by measured cost (runtime/core/plan.c): every plan is
 * measured first; the favourite keeps the calls unless another measured clearly cheaper (noise of
 * a few percent does not move them, a busy machine's 2-3x does); a probe tries another plan now and
 * then, for two calls of which only the second counts; a new batch or team starts over. */
#define _GNU_SOURCE
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <time.h>
#include <unistd.h>

#include "plan.h"
#include "wait.h"

/* Runs calls until the next probe; returns the plan the calls before it took (all the same). */
static int calls_until_probe(pnetrt_plans *p, int nplans, int *probed) {
    bool probe = false;
    int took = -1;
    for (int i = 0; i < 10000; i++) {
        int k = pnetrt_plan_pick(p, 256, 2, nplans, &probe);
        if (probe) {
            *probed = k;
            return took;
        }
        assert_true(took < 0 || took == k);
        took = k;
    }
    fail_msg("no probe in 10000 calls");
    return -1;
}

/* A probe of plan k: its first call is not kept (the caches and threads are the last plan's), the
 * second is; unless second < 0: the first call was clearly dearer than the favourite, and the probe
 * ends there. The caller has just picked k with probe set. */
static void finish_probe(pnetrt_plans *p, int nplans, int k, double first, double second) {
    bool probe = false;
    pnetrt_plan_measured(p, k, true, first * 256, 256);
    if (second < 0) {
        assert_int_equal(p->again, 0);
        return;
    }
    assert_int_equal(pnetrt_plan_pick(p, 256, 2, nplans, &probe), k);
    assert_true(probe);
    pnetrt_plan_measured(p, k, true, second * 256, 256);
}

/* Measures every plan, in the order they are asked for, at the given costs per sample; each
 * probe's first call costs 1.4x (a cold start), which must not count unless it already shows the
 * plan clearly dearer than the favourite. */
static void measure_all(pnetrt_plans *p, int nplans, const double *cost) {
    for (int i = 0; i < nplans; i++) {
        bool probe = false;
        int k = pnetrt_plan_pick(p, 256, 2, nplans, &probe);
        assert_true(probe);
        assert_int_equal(k, i);
        bool clear = k > 0 && 1.4 * cost[k] >= 1.5 * cost[0]; /* one call shows it dearer than plan 0 */
        finish_probe(p, nplans, k, 1.4 * cost[k], clear ? -1 : cost[k]);
    }
}

static void test_noise_does_not_move_the_favourite(void **state) {
    (void)state;
    pnetrt_plans p = {0};
    measure_all(&p, 2, (double[]){1.0, 0.97}); /* plan 1 looks 3% cheaper: within the noise */
    int probed = -1;
    assert_int_equal(calls_until_probe(&p, 2, &probed), 0);
    assert_int_equal(probed, 1);
}

static void test_a_clear_win_takes_over_and_back(void **state) {
    (void)state;
    pnetrt_plans p = {0};
    measure_all(&p, 2, (double[]){1.0, 0.5}); /* plan 0 is twice as dear: a busy machine */
    int probed = -1;
    assert_int_equal(calls_until_probe(&p, 2, &probed), 1);
    assert_int_equal(probed, 0);
    /* The probe finds plan 0 quiet again and cheaper by far (after a slow first call): it takes
     * the calls back. */
    finish_probe(&p, 2, 0, 0.6, 0.2);
    assert_int_equal(calls_until_probe(&p, 2, &probed), 0);
}

static void test_probes_back_off_while_they_lose(void **state) {
    (void)state;
    pnetrt_plans p = {0};
    measure_all(&p, 2, (double[]){1.0, 3.0});
    int gaps[4];
    for (int r = 0; r < 4; r++) {
        int n = 0;
        bool probe = false;
        while (!probe) {
            pnetrt_plan_pick(&p, 256, 2, 2, &probe);
            n++;
        }
        gaps[r] = n;
        finish_probe(&p, 2, 1, 3.0, -1); /* still dearer, clearly: one call */
    }
    assert_true(gaps[1] > gaps[0]);
    assert_true(gaps[2] > gaps[1]);
}

static void test_new_batch_starts_over(void **state) {
    (void)state;
    pnetrt_plans p = {0};
    measure_all(&p, 2, (double[]){1.0, 0.5});
    bool probe = false;
    assert_int_equal(pnetrt_plan_pick(&p, 64, 2, 2, &probe), 0);
    assert_true(probe); /* nothing measured at batch 64 */
    assert_int_equal(p.fav, 0);
}

/* The waits' reading of the machine's load (wait.c): with more busy threads than CPUs running,
 * the machine is seen oversubscribed within a few milliseconds (its answer is at most 1 ms old),
 * and a wait then still ends when the word changes. */
static _Atomic int hog_stop, word;
static pnetrt_waitq hog_q;

static void *hog(void *arg) {
    (void)arg;
    while (!atomic_load_explicit(&hog_stop, memory_order_relaxed)) {
    }
    return NULL;
}

static void *setter(void *arg) {
    (void)arg;
    struct timespec ts = {0, 20 * 1000 * 1000};
    nanosleep(&ts, NULL);
    atomic_store(&word, 1);
    pnetrt_wake(&hog_q, &word);
    return NULL;
}

static void test_oversubscription_is_seen(void **state) {
    (void)state;
    long cpus = sysconf(_SC_NPROCESSORS_ONLN);
    int n = (int)(cpus > 0 && cpus < 64 ? 2 * cpus + 1 : 9);
    pthread_t th[129];
    for (int i = 0; i < n; i++) assert_int_equal(pthread_create(&th[i], NULL, hog, NULL), 0);
    bool seen = false;
    struct timespec ts = {0, 2 * 1000 * 1000};
    for (int i = 0; i < 500 && !seen; i++) {
        seen = pnetrt_machine_oversubscribed();
        nanosleep(&ts, NULL);
    }
    assert_true(seen);
    pthread_t s;
    assert_int_equal(pthread_create(&s, NULL, setter, NULL), 0);
    pnetrt_wait_change(&hog_q, &word, 0);
    assert_int_equal(atomic_load(&word), 1);
    pthread_join(s, NULL);
    atomic_store(&hog_stop, 1);
    for (int i = 0; i < n; i++) pthread_join(th[i], NULL);
}

/* A process confined to one CPU (as mpirun binds a rank to a core): the machine-wide count says
 * nothing of that CPU, so the spinning thread's own waiting for it shows a second thread there. */
static void test_confined_contention_is_seen(void **state) {
    (void)state;
    cpu_set_t all, one;
    assert_int_equal(sched_getaffinity(0, sizeof all, &all), 0);
    CPU_ZERO(&one);
    for (int c = 0; c < CPU_SETSIZE; c++)
        if (CPU_ISSET(c, &all)) {
            CPU_SET(c, &one);
            break;
        }
    assert_int_equal(sched_setaffinity(0, sizeof one, &one), 0);
    atomic_store(&hog_stop, 0);
    pthread_t th;
    assert_int_equal(pthread_create(&th, NULL, hog, NULL), 0); /* inherits the one CPU */
    bool seen = false;
    struct timespec t0, t;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    do {
        seen = pnetrt_machine_oversubscribed();
        clock_gettime(CLOCK_MONOTONIC, &t);
    } while (!seen && (t.tv_sec - t0.tv_sec) * 1000000000L + (t.tv_nsec - t0.tv_nsec) < 2000000000L);
    atomic_store(&hog_stop, 1);
    pthread_join(th, NULL);
    assert_int_equal(sched_setaffinity(0, sizeof all, &all), 0);
    assert_true(seen);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_noise_does_not_move_the_favourite),
        cmocka_unit_test(test_a_clear_win_takes_over_and_back),
        cmocka_unit_test(test_probes_back_off_while_they_lose),
        cmocka_unit_test(test_new_batch_starts_over),
        cmocka_unit_test(test_oversubscription_is_seen),
        cmocka_unit_test(test_confined_contention_is_seen),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
