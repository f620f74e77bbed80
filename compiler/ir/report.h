/* The schedule report (pnetc --report) and the cost model behind it and --auto-partition. */
#ifndef PN_REPORT_H
#define PN_REPORT_H
#include "graph.h"

#include <stdio.h>

#define PN_COST_FLOPS 200e9 /* FLOP/s of one core, roughly */
#define PN_COST_BYTES 20e9  /* bytes/s from memory, roughly */
#define PN_COST_BATCH 64    /* samples that share one read of the weights */
#define PN_BALANCE_WARN 1.5 /* warn above this slowest-over-mean ratio */

typedef struct pn_stage_stats {
    int layers;
    double flops, param_bytes, act_bytes, cost;
} pn_stage_stats;

/* Modelled seconds per sample of one node. */
double pn_node_cost(const pn_graph *g, const pn_node *n);
/* Fills st[0..nstages) and returns the balance: the slowest stage's cost over the mean. */
double pn_report_stats(const pn_graph *g, pn_stage_stats *st, int max);
/* Writes the report; the same text goes into a compiled network for `./net info`. */
void pn_graph_report(const pn_graph *g, FILE *out);
/* The report as a string, which the caller frees. */
char *pn_graph_report_text(const pn_graph *g);

#endif
