/* The schedule report (pnetc --report) and the cost model behind it and --auto-partition: per
 * node seconds per sample, measured (a bench --profile file, pn_profile) or modelled per op kind
 * (cost_table.def). The graph's profile stays its caller's. */
#ifndef PN_REPORT_H
#define PN_REPORT_H
#include "graph.h"

#include <stdio.h>

/* The op kinds of the static model: PN_COST_CONV, PN_COST_DENSE, PN_COST_POOL, PN_COST_NORM,
 * PN_COST_ELTWISE, each with its own rates (cost_table.def, which bench/calibrate_cost.py writes). */
typedef enum pn_cost_kind {
#define PN_COST_KIND(id, name, flops, bytes, call) PN_COST_##id,
#include "cost_table.def"
#undef PN_COST_KIND
    PN_COST_NKINDS
} pn_cost_kind;

typedef struct pn_cost_rate {
    const char *name;
    double flops_per_s, bytes_per_s, call_s;
} pn_cost_rate;
extern const pn_cost_rate pn_cost_rates[PN_COST_NKINDS];

#define PN_COST_BATCH 64       /* samples per kernel call: bench's default batch */
#define PN_COST_BARRIER 2e-6   /* seconds a barrier between kernels takes on a team (no profile) */
#define PN_COST_HANDOFF 3e-6   /* seconds a micro-batch's hand-off between stages takes */
#define PN_BALANCE_WARN 1.5    /* warn above this slowest-over-mean ratio */
#define PN_MAX_AUTO_MICROBATCHES 64

/* Per-layer forward seconds per sample that bench --profile measured (runtime/cli/profile_cli.c). */
typedef struct pn_profile {
    char *path, *network, *cpu;
    int threads;
    long long batch, samples;
    double barrier_s;
    int nlayers;
    char **names;
    double *forward_s;
    bool *kernel; /* the layer has a kernel of its own (else it was fused into another's) */
} pn_profile;

/* Reads a bench --profile file; NULL with a one-line reason in err. */
pn_profile *pn_profile_load(const char *path, char *err, size_t errlen);
void pn_profile_free(pn_profile *p);
/* Checks that the profile is of network g and names its layers; the reason in err when not. */
bool pn_profile_matches(const pn_profile *p, const pn_graph *g, char *err, size_t errlen);

typedef struct pn_stage_stats {
    int layers, kernels;
    double flops, param_bytes, act_bytes, cost;
    double call; /* seconds each micro-batch adds whatever its size: calls, barriers, the hand-off */
} pn_stage_stats;

/* The kind whose rates price node n, or -1 when it has no kernel (an input, a constant, a view). */
int pn_node_cost_kind(const pn_node *n);
/* Seconds per sample of one node: measured (g->profile) or modelled. */
double pn_node_cost(const pn_graph *g, const pn_node *n);
/* Fills st[0..nstages) and returns the balance: the slowest stage's cost over the mean. */
double pn_report_stats(const pn_graph *g, pn_stage_stats *st, int max);
/* The samples one pipeline pass (a chunk) streams: the profile's batch, the training batch, or
 * PN_COST_BATCH. */
long long pn_report_chunk(const pn_graph *g);
/* Predicted pipeline of S stages (st) over a chunk of C samples in M micro-batches: the seconds
 * per sample, and (when bubble is not NULL) the stages' mean idle share. */
double pn_pipeline_time(const pn_stage_stats *st, int S, long long C, int M, double *bubble);
/* The micro-batch count, 1..PN_MAX_AUTO_MICROBATCHES and at most C, that pn_pipeline_time finds
 * fastest (the least of those within 1% of the best). */
int pn_best_microbatches(const pn_stage_stats *st, int S, long long C);
/* Writes the report; the same text goes into a compiled network for `./net info`. */
void pn_graph_report(const pn_graph *g, FILE *out);
/* The report as a string, which the caller frees. */
char *pn_graph_report_text(const pn_graph *g);

#endif
