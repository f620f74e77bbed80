/* The schedule report: per pipeline stage its layers, FLOPs, parameter and activation bytes and
 * modelled cost; the balance; the predicted pipeline bubble; the per-replica batch. The cost
 * model is shared with --auto-partition. */
#include "report.h"
#include "../support/util.h"

#include <stdlib.h>
#include <string.h>

double pn_node_cost(const pn_graph *g, const pn_node *n) {
    double flops = (double)pn_node_flops(g, n);
    double act = 4.0 * (double)pn_shape_sample_elems(&n->shape), params = 4.0 * (double)pn_node_param_count(n);
    if (flops < 0) flops = 0;
    /* Seconds per sample on one core: FLOPs at ~200 GFLOP/s, the output written at ~20 GB/s, and
     * the weights read once per PN_COST_BATCH samples. */
    return flops / PN_COST_FLOPS + (act + params / PN_COST_BATCH) / PN_COST_BYTES;
}

/* FLOPs in powers of 1000 (KFLOP, MFLOP); bytes in powers of 1024 (KiB, MiB), as `./net info`
 * prints them beside this report. */
static void human(double v, const char *unit, char *buf, size_t n) {
    bool bytes = strcmp(unit, "B") == 0;
    const char *pre[] = {"", "K", "M", "G", "T"}, *bin[] = {"", "Ki", "Mi", "Gi", "Ti"};
    double step = bytes ? 1024 : 1000;
    int k = 0;
    while (v >= step && k < 4) {
        v /= step;
        k++;
    }
    snprintf(buf, n, k ? "%.1f %s%s" : "%.0f %s%s", v, bytes ? bin[k] : pre[k], unit);
}

double pn_report_stats(const pn_graph *g, pn_stage_stats *st, int max) {
    int S = g->nstages < max ? g->nstages : max;
    for (int s = 0; s < S; s++) st[s] = (pn_stage_stats){0};
    for (int i = 0; i < g->nnodes; i++) {
        const pn_node *n = &g->nodes[i];
        if ((n->flags & PN_NODE_TRAIN) || n->stage >= S) continue;
        pn_stage_stats *x = &st[n->stage];
        x->layers += n->op != PN_OP_INPUT;
        x->flops += (double)(pn_node_flops(g, n) > 0 ? pn_node_flops(g, n) : 0);
        x->param_bytes += 4.0 * (double)pn_node_param_count(n);
        x->act_bytes += 4.0 * (double)pn_shape_sample_elems(&n->shape);
        x->cost += pn_node_cost(g, n);
    }
    double mean = 0, worst = 0;
    for (int s = 0; s < S; s++) {
        mean += st[s].cost / S;
        if (st[s].cost > worst) worst = st[s].cost;
    }
    return mean > 0 ? worst / mean : 1.0;
}

void pn_graph_report(const pn_graph *g, FILE *out) {
    int S = g->nstages, M = g->microbatches, R = g->replicas;
    pn_stage_stats *st = pn_xcalloc((size_t)S, sizeof *st);
    double balance = pn_report_stats(g, st, S);
    char a[32], b[32], c[32];
    fprintf(out, "schedule of %s: %d stage%s, %d replica%s, %d micro-batch%s (%s)\n", g->name, S, S == 1 ? "" : "s", R,
            R == 1 ? "" : "s", M, M == 1 ? "" : "es", g->schedule == PN_SCHED_1F1B ? "1f1b" : "gpipe");
    for (int s = 0; s < S; s++) {
        human(st[s].flops, "FLOP", a, sizeof a);
        human(st[s].param_bytes, "B", b, sizeof b);
        human(st[s].act_bytes, "B", c, sizeof c);
        fprintf(out, "  stage %d: %d layer%s, %s per sample, parameters %s, activations %s per sample, modelled %.3g us per sample\n",
                s, st[s].layers, st[s].layers == 1 ? "" : "s", a, b, c, st[s].cost * 1e6);
        fprintf(out, "    layers:");
        int shown = 0;
        for (int i = 0; i < g->nnodes; i++) {
            const pn_node *n = &g->nodes[i];
            if (n->stage != s || (n->flags & PN_NODE_TRAIN) || n->op == PN_OP_INPUT) continue;
            fprintf(out, "%s %s", shown ? "," : "", n->name);
            if (n->shard > 1) fprintf(out, " (features split %d ways)", n->shard);
            shown++;
        }
        fprintf(out, "%s\n", shown ? "" : " (none)");
    }
    fprintf(out, "  balance: %.2f (slowest stage over mean)\n", balance);
    if (balance > PN_BALANCE_WARN)
        fprintf(out, "  warning: stages are unbalanced: the slowest costs %.2fx the mean (more than %.1fx)\n", balance,
                PN_BALANCE_WARN);
    fprintf(out, "  predicted bubble: %.1f%% = (S-1)/(M+S-1) with S = %d, M = %d\n", 100.0 * (S - 1) / (M + S - 1), S, M);
    if (g->train.present)
        fprintf(out, "  per-replica batch: %lld (training batch %lld over %d replica%s)\n",
                (long long)((g->train.batch + R - 1) / R), (long long)g->train.batch, R, R == 1 ? "" : "s");
    else if (R == 1)
        fprintf(out, "  per-replica batch: the whole run-time batch (one replica)\n");
    else
        fprintf(out, "  per-replica batch: B/%d of a run-time batch B (the first B mod %d replicas take one more)\n", R, R);
    free(st);
}

char *pn_graph_report_text(const pn_graph *g) {
    char *text = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&text, &len);
    if (!f) return pn_xstrdup("");
    pn_graph_report(g, f);
    if (fclose(f) != 0 || !text) {
        free(text);
        return pn_xstrdup("");
    }
    return text;
}
