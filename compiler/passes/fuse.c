/* pass_fuse: applies a chain of elementwise activations, and of `+ - * /` by a scalar constant, in
 * the epilogue of the op that produces their input (dense or conv2d, then bias, then activation,
 * in one pass), when the producer's value is needed nowhere else. */
#include "passes.h"

/* An elementwise op of one tensor (an activation, dropout). */
static bool is_unary(const pn_node *n) { return (pn_ops[n->op].flags & PN_OPF_ELTWISE) && n->ninputs == 1; }

/* `+ - * /` with a scalar constant act elementwise on their other operand, like an activation. */
static int const_operand(const pn_graph *g, const pn_node *n) {
    if (!(pn_ops[n->op].flags & PN_OPF_ELTWISE) || n->ninputs != 2) return -1;
    for (int k = 0; k < 2; k++)
        if (g->nodes[n->in[k]].op == PN_OP_CONST && g->nodes[n->in[k]].shape.rank == 0) return k;
    return -1;
}

/* The tensor an epilogue op reads (besides constants), or -1 when n cannot be an epilogue. */
static int epilogue_source(const pn_graph *g, const pn_node *n) {
    if (is_unary(n)) return n->in[0];
    int k = const_operand(g, n);
    if (k < 0) return -1;
    /* The result must keep the source's shape (a scalar constant never broadcasts it). */
    const pn_node *src = &g->nodes[n->in[1 - k]];
    if (src->shape.rank != n->shape.rank) return -1;
    return n->in[1 - k];
}

/* Ops whose kernels write their result through an epilogue. */
static bool has_epilogue(pn_op op) { return pn_ops[op].flags & (PN_OPF_EPILOGUE | PN_OPF_ELTWISE); }

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
        int src = p->live[i] ? epilogue_source(g, e) : -1;
        if (src < 0) continue;
        const pn_node *s = &g->nodes[src];
        if (uses[src] != 1 || user[src] != i || (s->flags & PN_NODE_OUTPUT) || !has_epilogue(s->op) || p->fuse_next[src] >= 0 ||
            s->stage != e->stage || s->shard > 1 || s->dtype != PN_F32)
            continue;
        p->fuse_next[src] = i;
        p->fused[i] = true;
    }
}
