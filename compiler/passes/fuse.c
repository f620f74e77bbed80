/* pass_fuse: applies a chain of elementwise activations in the epilogue of the op that produces
 * their input (dense or conv2d, then bias, then activation, in one pass), when the producer's
 * value is needed nowhere else. */
#include "passes.h"

static bool is_epilogue_op(pn_op op) {
    return op == PN_OP_RELU || op == PN_OP_LEAKY_RELU || op == PN_OP_SIGMOID || op == PN_OP_TANH ||
           op == PN_OP_GELU || op == PN_OP_DROPOUT;
}

/* Ops whose kernels write their result through an epilogue. */
static bool has_epilogue(pn_op op) {
    return op == PN_OP_DENSE || op == PN_OP_CONV2D || op == PN_OP_MATMUL || op == PN_OP_ADD || op == PN_OP_SUB ||
           op == PN_OP_MUL || op == PN_OP_BATCHNORM || op == PN_OP_LAYERNORM || op == PN_OP_AVGPOOL2D ||
           op == PN_OP_MAXPOOL2D || op == PN_OP_GLOBAL_AVGPOOL || is_epilogue_op(op);
}

void pass_fuse(pn_graph *g) {
    pn_plan *p = &g->plan;
    int n = g->nnodes;
    int *uses = pn_arena_alloc(&g->arena, sizeof(int) * (size_t)(n ? n : 1));
    int *user = pn_arena_alloc(&g->arena, sizeof(int) * (size_t)(n ? n : 1));
    for (int i = 0; i < n; i++) {
        if (!p->live[i]) continue;
        for (int k = 0; k < g->nodes[i].ninputs; k++) {
            uses[g->nodes[i].in[k]]++;
            user[g->nodes[i].in[k]] = i;
        }
    }
    /* Chains started by pass_fold_batchnorm stay; activations extend them. */
    for (int i = 0; i < n; i++) {
        const pn_node *e = &g->nodes[i];
        if (!p->live[i] || !is_epilogue_op(e->op)) continue;
        int src = e->in[0];
        const pn_node *s = &g->nodes[src];
        if (uses[src] != 1 || user[src] != i || (s->flags & PN_NODE_OUTPUT) || !has_epilogue(s->op) || p->fuse_next[src] >= 0 ||
            s->stage != e->stage || s->shard > 1 || s->dtype != PN_F32)
            continue;
        p->fuse_next[src] = i;
        p->fused[i] = true;
    }
}
