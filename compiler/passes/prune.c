/* pass_prune: marks the nodes that inference computes, walking back from the outputs. Nodes that
 * exist only in training, and nodes no output needs, are left out. */
#include "passes.h"

#include <string.h>

static void alloc_plan(pn_graph *g) {
    pn_plan *p = &g->plan;
    int n = g->nnodes ? g->nnodes : 1;
    p->live = pn_arena_alloc(&g->arena, sizeof(bool) * (size_t)n);
    p->fused = pn_arena_alloc(&g->arena, sizeof(bool) * (size_t)n);
    p->fuse_next = pn_arena_alloc(&g->arena, sizeof(int) * (size_t)n);
    p->param_offset = pn_arena_alloc(&g->arena, sizeof(int64_t) * (size_t)n);
    p->mem = pn_arena_alloc(&g->arena, sizeof(pn_mem) * (size_t)n);
    for (int i = 0; i < g->nnodes; i++) {
        p->fuse_next[i] = -1;
        p->param_offset[i] = -1;
    }
}

void pass_prune(pn_graph *g) {
    if (!g->plan.live) alloc_plan(g);
    bool *live = g->plan.live;
    memset(live, 0, sizeof(bool) * (size_t)g->nnodes);
    for (int i = 0; i < g->noutputs; i++) live[g->outputs[i].node] = true;
    for (int i = g->nnodes - 1; i >= 0; i--) {
        if (!live[i]) continue;
        if (g->nodes[i].flags & PN_NODE_TRAIN) {
            live[i] = false;
            continue;
        }
        for (int k = 0; k < g->nodes[i].ninputs; k++) live[g->nodes[i].in[k]] = true;
    }
    /* Inputs are part of the interface even when no output reads them. */
    for (int i = 0; i < g->nnodes; i++)
        if (g->nodes[i].op == PN_OP_INPUT && !(g->nodes[i].flags & PN_NODE_TRAIN)) live[i] = true;
}
