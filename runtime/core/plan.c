/* The choice among plans of the same bits by their measured cost (plan.h), shared by inference
 * (infer.c) and training steps (train.c). */
#include "plan.h"

/* One call in PNETRT_PROBE_EVERY tries a plan not in favour; up to one in PNETRT_PROBE_MAX while
 * probes keep finding it dearer. */
#define PNETRT_PROBE_EVERY 32
#define PNETRT_PROBE_MAX 512

/* Each plan's cost is its seconds per sample, measured on the calls that take it
 * (pnetrt_plan_measured); a call takes the cheapest of the first nplans, except that until each is
 * measured, and then one call in PNETRT_PROBE_EVERY, it tries another (each in turn). */
int pnetrt_plan_pick(pnetrt_plans *p, int64_t batch, int team, int nplans, bool *probe) {
    if (batch != p->batch || team != p->team) *p = (pnetrt_plans){.batch = batch, .team = team};
    *probe = true;
    for (int k = 0; k < nplans; k++)
        if (p->cost[k] == 0) return k;
    int best = 0;
    for (int k = 1; k < nplans; k++)
        if (p->cost[k] < p->cost[best]) best = k;
    *probe = false;
    if (++p->calls < (p->every ? p->every : PNETRT_PROBE_EVERY)) return best;
    p->calls = 0;
    p->next = (p->next + 1) % (nplans - 1);
    *probe = true;
    return (best + 1 + p->next) % nplans;
}

/* A plan's cost after a call: the mean with its last while it keeps being taken, the call alone
 * after a probe (the old figure is stale). A probe that finds its plan still dearer than another
 * doubles the calls until the next (up to PNETRT_PROBE_MAX), so that probes cost little where one
 * plan keeps winning; one that finds it cheapest brings them back to every PNETRT_PROBE_EVERY. */
void pnetrt_plan_measured(pnetrt_plans *p, int plan, bool probe, double seconds, int64_t batch) {
    double c = seconds / (double)batch, *cost = &p->cost[plan];
    *cost = *cost == 0 || probe ? c : 0.5 * (*cost + c);
    if (!probe) return;
    bool dearer = false;
    for (int q = 0; q < PNETRT_PLANS; q++)
        dearer |= q != plan && p->cost[q] > 0 && p->cost[q] < c;
    int every = p->every ? p->every : PNETRT_PROBE_EVERY;
    p->every = !dearer ? PNETRT_PROBE_EVERY : every * 2 < PNETRT_PROBE_MAX ? every * 2 : PNETRT_PROBE_MAX;
}
