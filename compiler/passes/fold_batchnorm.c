/* pass_fold_batchnorm: at inference a batchnorm right after a conv2d or dense (whose value
 * nothing else reads) is folded into it: the generated prepare function scales the weights by
 * gamma / sqrt(running_var + eps) and folds the shift into the bias, so the batchnorm costs
 * nothing. The batchnorm becomes the first link of the producer's epilogue chain, where it is
 * the identity. */
#include "passes.h"

void pass_fold_batchnorm(pn_graph *g) {
    pn_plan *p = &g->plan;
    int n = g->nnodes;
    int *uses = pn_arena_alloc(&g->arena, sizeof(int) * (size_t)(n ? n : 1));
    for (int i = 0; i < n; i++) {
        p->fuse_next[i] = -1;
        p->fused[i] = false;
        if (!p->live[i]) continue;
        for (int k = 0; k < g->nodes[i].ninputs; k++) uses[g->nodes[i].in[k]]++;
    }
    for (int i = 0; i < n; i++) {
        const pn_node *bn = &g->nodes[i];
        if (!p->live[i] || bn->op != PN_OP_BATCHNORM) continue;
        int src = bn->in[0];
        const pn_node *s = &g->nodes[src];
        if ((s->op != PN_OP_CONV2D && s->op != PN_OP_DENSE) || uses[src] != 1 || (s->flags & PN_NODE_OUTPUT) ||
            s->stage != bn->stage || s->shard > 1)
            continue;
        /* dense folds only when batchnorm's channel axis is dense's feature axis: [N, C]. */
        if (s->op == PN_OP_DENSE && s->shape.rank != 2) continue;
        p->fuse_next[src] = i;
        p->fused[i] = true;
    }
}
