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
#define PN_COST_KIND(id, name, flops, bytes, call, param_bytes, cached, gather, gather_rows) PN_COST_##id,
#include "cost_table.def"
#undef PN_COST_KIND
    PN_COST_NKINDS
} pn_cost_kind;

typedef struct pn_cost_rate {
    const char *name;
    double flops_per_s, bytes_per_s, call_s;
    /* Each call reads the node's parameters again: those beyond param_cached bytes (what stays in
     * a core's cache between calls) at param_bytes_per_s. */
    double param_bytes_per_s, param_cached;
    /* A convolution that gathers its patches (pn_conv_gathers) pays per sample for its panel's
     * elements (input channels x taps x output pixels) and rows (one per output row of each). */
    double gather_per_s, gather_rows_per_s;
} pn_cost_rate;
extern const pn_cost_rate pn_cost_rates[PN_COST_NKINDS];

#define PN_COST_BATCH 64       /* samples per kernel call: bench's default batch */
#define PN_COST_BARRIER 2e-6   /* seconds a barrier between kernels takes on a team (no profile) */
#define PN_COST_HANDOFF 3e-6   /* seconds from a hand-off to the waiting stage's start (no profile) */
#define PN_COST_MR 8           /* the GEMM tile's rows that pn_conv_gathers assumes (AVX-512's; AVX2's are 6) */
#define PN_COST_XFER 4e-11     /* seconds a byte that another core wrote adds to a read (no profile) */
/* Seconds a byte of a stage's activations adds to a micro-batch when a pipeline's micro-batches
 * take its M > 1 arena slots in turn, which the caches no longer hold (where the profile did not
 * time the micro-batches so; 1.2-1.5e-11 measured on the Intel Xeon VM, 2026-12-07). */
#define PN_COST_SLOT_BYTE 1.3e-11
#define PN_BALANCE_WARN 1.5    /* warn above this slowest-over-mean ratio */
#define PN_MAX_AUTO_MICROBATCHES 64
#define PN_PROFILE_SPREAD 32   /* factors in a profile's spread of a call's time (PNETRT_PROFILE_SPREAD) */
#define PN_SPREAD_CALLS 32     /* calls the prediction simulates when the stages' times spread */

/* Per-layer forward seconds per sample that bench --profile measured (runtime/cli/profile_cli.c). */
typedef struct pn_profile {
    char *path, *network, *cpu;
    int threads, cpus; /* cpus: the machine's, or 0 when the profile does not say */
    long long batch, samples, small; /* small: the second size timed (0: not said) */
    long long micro_samples[2];      /* the sizes a pipeline slices into, when micro is given (else 0) */
    double barrier_s, handoff_s; /* handoff_s: 0 when the profile did not measure it */
    double xfer_byte_s;          /* a byte another core wrote, read: -1 when not measured */
    int nlayers;
    char **names;
    double *forward_s, *call_s; /* call_s: the part of a call that does not grow with its samples
                                 * (below zero where a sample costs more in large calls) */
    bool *kernel; /* the layer has a kernel of its own (else it was fused into another's) */
    /* Per layer, PN_PROFILE_SPREAD factors: its single calls' seconds over their mean, sorted and
     * averaged in equal groups (so they average 1); a row of zeros where the profile gives none. */
    double *spread;
    /* Per layer, seconds per call at micro_samples[0] and [1]; zeros where the profile gives none. */
    double *micro;
    int *stage; /* per layer, its pipeline stage in the profiled network (-1: not said) */
    /* Per stage of the profiled network (stage_spreads of them, or 0), PN_PROFILE_SPREAD factors:
     * its micro-batches' seconds while the stage beside it ran at once, as a layer's spread (a
     * slow spell covers several layers of a micro-batch, which layers drawn on their own miss). */
    int stage_spreads;
    double *stage_spread;
    /* Training steps, for a network that trains: per stage forward and backward seconds per sample
     * when the steps ran pipelined (train_nstages > 0), else step_s for both; the update's. */
    bool has_training;
    int train_threads, train_nstages;
    long long train_batch;
    double *train_forward_s, *train_backward_s, train_step_s, train_update_s;
    /* Each layer's (of names) forward and backward seconds per sample in the steps, when the
     * profile gives them (train_layers). */
    bool train_layers;
    double *train_layer_fwd, *train_layer_bwd;
} pn_profile;

/* Reads a bench --profile file; NULL with a one-line reason in err. */
pn_profile *pn_profile_load(const char *path, char *err, size_t errlen);
void pn_profile_free(pn_profile *p);
/* Checks that the profile is of network g and names its layers; the reason in err when not. */
bool pn_profile_matches(const pn_profile *p, const pn_graph *g, char *err, size_t errlen);

typedef struct pn_stage_stats {
    int layers, kernels;
    double flops, param_bytes, act_bytes, cost;
    double in_bytes; /* per sample: values of earlier stages that it reads, which other cores wrote */
    double call; /* seconds each micro-batch adds whatever its size: kernel calls, barriers (below zero
                  * where a profile measured a sample dearer in large calls than in small ones) */
    /* The part of call below zero and the profile's second size, below which a micro-batch costs
     * its samples' share of that size's time rather than the line's (which heads to zero). */
    double neg_call;
    long long neg_from;
    double wait; /* seconds from a micro-batch's hand-off to the start of a stage that waited for it */
    double slot; /* seconds per sample that a micro-batch adds when they take arena slots in turn (M > 1) */
    /* How a micro-batch's seconds spread about their mean: PN_PROFILE_SPREAD equally likely
     * factors (from the profile's layers), or zeros (the time is always the mean). */
    double spread[PN_PROFILE_SPREAD];
    /* A micro-batch of micro_n[i] samples takes micro_t[i] seconds, measured (micro_n[0] == 0: the
     * line cost * n + call); others on the line through the two, or from micro_n[1] to the chunk. */
    long long micro_n[2];
    double micro_t[2];
} pn_stage_stats;

/* The kind whose rates price node n, or -1 when it has no kernel (an input, a constant, a view). */
int pn_node_cost_kind(const pn_node *n);
/* Seconds per sample of one node: measured (g->profile) or modelled. */
double pn_node_cost(const pn_graph *g, const pn_node *n);
/* Seconds a byte that another core wrote adds to a stage's read of it: the profile's xfer_byte_s,
 * else PN_COST_XFER. */
double pn_report_xfer(const pn_graph *g);
/* Fills st[0..nstages) and returns the balance: the slowest stage's cost over the mean. */
double pn_report_stats(const pn_graph *g, pn_stage_stats *st, int max);
/* The batch of one call that the predictions are for: the profile's, the training batch, or
 * PN_COST_BATCH. */
long long pn_report_batch(const pn_graph *g);
/* The samples of one kernel call, a chunk: the profile's, or the batch capped by the memory
 * plan's chunk once the passes have run. */
long long pn_report_chunk(const pn_graph *g);
/* Predicted pipeline of S stages (st) over a call of B samples in chunks of C, M micro-batches
 * each, all streamed one after another (simulated micro-batch by micro-batch: a stage starts one
 * when it has finished the one before and, a hand-off later, the stage before has finished it):
 * the seconds per sample, and (when bubble is not NULL) the stages' mean idle share. When a stage
 * has a spread, PN_SPREAD_CALLS calls with each micro-batch's time drawn from it: the mean call's
 * seconds per sample and the median call's bubble. */
double pn_pipeline_time(const pn_stage_stats *st, int S, long long B, long long C, int M, double *bubble);
/* The same on `cores` CPUs, fewer than S: at most `cores` stages run a micro-batch at once, each at
 * a core's speed, and a stage that could start waits for a core (the one ready first gets it), as
 * threads that each run a short micro-batch and then wait take turns on a machine's cores. The
 * bubble is then the stages' idle share, waiting for a core included. cores < 1 or at least S:
 * pn_pipeline_time. */
double pn_pipeline_time_on(const pn_stage_stats *st, int S, long long B, long long C, int M, int cores, double *bubble);
/* The micro-batch count, 1..PN_MAX_AUTO_MICROBATCHES and at most C, that pn_pipeline_time finds
 * fastest (the least of those within 1% of the best). */
int pn_best_microbatches(const pn_stage_stats *st, int S, long long B, long long C);
/* The same by pn_pipeline_time_on on `cores` CPUs. */
int pn_best_microbatches_on(const pn_stage_stats *st, int S, long long B, long long C, int cores);
/* The CPUs a prediction for S stages shares (pn_pipeline_time_on): g->cores, else the profiled
 * machine's, when fewer than S; else 0 (a core per stage). */
int pn_report_cores(const pn_graph *g, int S);
/* Writes the report; the same text goes into a compiled network for `./net info`. */
void pn_graph_report(const pn_graph *g, FILE *out);
/* The report as a string, which the caller frees. */
char *pn_graph_report_text(const pn_graph *g);

#endif
