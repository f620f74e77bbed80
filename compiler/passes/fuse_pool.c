/* pass_fuse_pool: a maxpool2d whose windows tile its input (kernel = stride, no padding), over a
 * conv2d and its elementwise chain, is computed by the conv's kernel: the conv produces the
 * outputs of each window position in registers and keeps their maximum, so the unpooled map is
 * never stored or read back. The kernel (codegen/conv.c) reads the input rearranged into phase
 * planes, one per (row, column) remainder modulo the combined stride, so that the conv outputs
 * under one window position across neighbouring windows read consecutive floats. */
#include "passes.h"

void pass_fuse_pool(pn_graph *g) {
    pn_plan *p = &g->plan;
    int n = g->nnodes;
    int *uses = pn_arena_alloc(&g->arena, sizeof(int) * (size_t)(n ? n : 1));
    p->pool_grid = pn_arena_alloc(&g->arena, sizeof(pn_pool_grid) * (size_t)(n ? n : 1));
    for (int i = 0; i < n; i++)
        for (int k = 0; p->live[i] && k < g->nodes[i].ninputs; k++) uses[g->nodes[i].in[k]]++;
    for (int i = 0; i < n; i++) {
        const pn_node *pl = &g->nodes[i];
        if (!p->live[i] || pl->op != PN_OP_MAXPOOL2D || p->fused[i]) continue;
        int t = pl->in[0], h = pn_fused_head(g, t);
        const pn_node *tn = &g->nodes[t], *cv = &g->nodes[h];
        if (!p->live[h] || !pn_pool_tiles(g, h, i)) continue;
        if (uses[t] != 1 || (tn->flags & PN_NODE_OUTPUT) || cv->stage != pl->stage || cv->shard > 1 || pl->shard > 1 ||
            p->fuse_next[t] >= 0 || pl->dtype != PN_F32)
            continue;
        pn_pool_grid pg;
        pn_pool_grid_of(g, h, i, &pg);
        p->fuse_next[t] = i;
        p->fused[i] = true;
        p->pool_grid[h] = pg;
    }
}
