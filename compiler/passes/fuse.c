/* pass_fuse: applies a chain of elementwise activations, and of `+ - *` by a scalar constant, in
 * the epilogue of the op that produces their input (dense or conv2d, then bias, then activation,
 * in one pass), when the producer's value is needed nowhere else. */
#include "passes.h"

static bool is_unary(pn_op op) {
    return op == PN_OP_RELU || op == PN_OP_LEAKY_RELU || op == PN_OP_SIGMOID || op == PN_OP_TANH ||
           op == PN_OP_GELU || op == PN_OP_DROPOUT;
}

/* `+ - *` with a scalar constant act elementwise on their other operand, like an activation. */
static int const_operand(const pn_graph *g, const pn_node *n) {
    if (n->op != PN_OP_ADD && n->op != PN_OP_SUB && n->op != PN_OP_MUL) return -1;
    for (int k = 0; k < 2; k++)
        if (g->nodes[n->in[k]].op == PN_OP_CONST) return k;
    return -1;
}

/* The tensor an epilogue op reads (besides constants), or -1 when n cannot be an epilogue. */
static int epilogue_source(const pn_graph *g, const pn_node *n) {
    if (is_unary(n->op)) return n->in[0];
    int k = const_operand(g, n);
    if (k < 0) return -1;
    /* The result must keep the source's shape (a scalar constant never broadcasts it). */
    const pn_node *src = &g->nodes[n->in[1 - k]];
    if (src->shape.rank != n->shape.rank) return -1;
    return n->in[1 - k];
}

/* Ops whose kernels write their result through an epilogue. */
static bool has_epilogue(pn_op op) {
    return op == PN_OP_DENSE || op == PN_OP_CONV2D || op == PN_OP_MATMUL || op == PN_OP_ADD || op == PN_OP_SUB ||
           op == PN_OP_MUL || op == PN_OP_BATCHNORM || op == PN_OP_LAYERNORM || op == PN_OP_AVGPOOL2D ||
           op == PN_OP_MAXPOOL2D || op == PN_OP_GLOBAL_AVGPOOL || is_unary(op);
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
