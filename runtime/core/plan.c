/* The choice among plans of the same bits by their measured cost (plan.h), shared by inference
 * (infer.c) and training steps (train.c). */
#include "plan.h"

/* A plan not in favour is probed after PNETRT_PROBE_EVERY calls; after up to PNETRT_PROBE_MAX
 * while its probes keep finding it dearer than the favourite (each plan on its own count, so that
 * a plan that always loses, one thread on a quiet machine, costs little). */
#define PNETRT_PROBE_EVERY 32
#define PNETRT_PROBE_MAX 512

/* Another plan takes the calls from the favourite only when it measured this much cheaper, so that
 * a few percent of noise between calls on a shared machine does not move them; a busy machine
 * moves the costs by far more (2-3x). */
#define PNETRT_PLAN_MARGIN 0.95

/* Each plan's cost is its seconds per sample, measured on the calls that take it
 * (pnetrt_plan_measured); a call takes the favourite (plan 0 at first) unless another of the first
 * nplans measured PNETRT_PLAN_MARGIN of its cost or less, which then becomes the favourite; until
 * each is measured, and then when a plan's probe is due, it tries another.
 *
 * A probe takes two calls and keeps the second: the first call after a change of plan finds the
 * caches and threads as the last plan left them (each stage's weights on another core, say), and
 * measuring it made the plans that were not in favour look dearer than they are (pipelined mlp_s
 * inference on a quiet machine ran 6% slower than with the plans fixed). Unless the first call is
 * PNETRT_PLAN_CLEAR times the favourite's cost or more: no cold start explains that, and on a busy
 * machine a second call of a plan that waits for a descheduled thread costs another time slice. */
#define PNETRT_PLAN_CLEAR 1.5
int pnetrt_plan_pick(pnetrt_plans *p, int64_t batch, int team, int nplans, bool *probe) {
    if (batch != p->batch || team != p->team) *p = (pnetrt_plans){.batch = batch, .team = team};
    *probe = true;
    if (p->again) return p->again - 1;
    for (int k = 0; k < nplans; k++)
        if (p->cost[k] == 0) return k;
    int fav = p->fav < nplans ? p->fav : 0, best = fav;
    for (int k = 0; k < nplans; k++)
        if (p->cost[k] < p->cost[best]) best = k;
    if (p->cost[best] <= PNETRT_PLAN_MARGIN * p->cost[fav]) fav = best;
    p->fav = fav;
    int due = -1;
    for (int k = 0; k < nplans; k++) {
        if (k == fav) continue;
        if (p->every[k] == 0) p->every[k] = PNETRT_PROBE_EVERY;
        if (++p->calls[k] >= p->every[k] && (due < 0 || p->calls[k] - p->every[k] > p->calls[due] - p->every[due]))
            due = k;
    }
    *probe = due >= 0;
    if (due < 0) return fav;
    p->calls[due] = 0;
    return due;
}

/* A plan's cost after a call: the mean with its last while it keeps being taken, the probe's second
 * call alone after a probe (the old figure is stale). A probe that finds its plan dearer than the
 * favourite doubles the calls until that plan's next (up to PNETRT_PROBE_MAX); one that finds it
 * as cheap brings them back to PNETRT_PROBE_EVERY. */
void pnetrt_plan_measured(pnetrt_plans *p, int plan, bool probe, double seconds, int64_t batch) {
    double c = seconds / (double)batch, *cost = &p->cost[plan];
    if (probe && !p->again && !(plan != p->fav && p->cost[p->fav] > 0 && c > PNETRT_PLAN_CLEAR * p->cost[p->fav])) {
        p->again = plan + 1; /* a probe's first call, not clearly dearer: measure the plan again */
        return;
    }
    p->again = 0;
    *cost = *cost == 0 || probe ? c : 0.5 * (*cost + c);
    if (!probe || plan == p->fav) return;
    int every = p->every[plan] ? p->every[plan] : PNETRT_PROBE_EVERY;
    bool dearer = p->cost[p->fav] > 0 && p->cost[p->fav] < c;
    p->every[plan] = !dearer ? PNETRT_PROBE_EVERY : every * 2 < PNETRT_PROBE_MAX ? every * 2 : PNETRT_PROBE_MAX;
}
