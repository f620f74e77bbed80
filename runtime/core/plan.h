/* Plans that adapt to the machine: a call (inference, or a training step) that may run in several
 * plans of the same bits takes the one measured cheapest, and now and then probes another, so
 * that a machine which turns busy, or quiet again, is noticed (docs/schedules.md). The plans are
 * rt.h's PNETRT_PLAN_*; what each one runs is the caller's.
 *
 * Internal to libpnetrt. The caller owns the pnetrt_plans; zeroed is ready to use. */
#ifndef PNETRT_PLAN_H
#define PNETRT_PLAN_H
#include <stdbool.h>
#include <stdint.h>

enum { PNETRT_PLANS = 3 };

/* Each plan's recent seconds per sample (0: not yet measured), the calls since its last probe and
 * after how many it is probed again (0: the default), the plan in favour, the plan a probe
 * measures again (plus one; 0: none), and the batch and team they were measured at. */
typedef struct pnetrt_plans {
    double cost[PNETRT_PLANS];
    int calls[PNETRT_PLANS], every[PNETRT_PLANS], fav, again;
    int64_t batch;
    int team;
} pnetrt_plans;

/* The plan of a call of `batch` samples on `team` threads, among the first nplans (2 or 3); a new
 * batch or team starts over. *probe: the call tries a plan that is not the cheapest. */
int pnetrt_plan_pick(pnetrt_plans *p, int64_t batch, int team, int nplans, bool *probe);
/* Records that the call took `plan` for `seconds`. */
void pnetrt_plan_measured(pnetrt_plans *p, int plan, bool probe, double seconds, int64_t batch);

#endif
