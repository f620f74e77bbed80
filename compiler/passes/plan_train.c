/* pass_plan_train: plans a training step when the network has a train block. The step computes
 * the loss and everything it needs (tplan.live), keeps every value for the backward pass, and
 * gives a gradient buffer to each value that reaches the loss and depends on a trained parameter
 * (tplan.grad). Views (flatten, reshape) share their source's storage and gradient; a relu that
 * its convolution applies shares the convolution's storage (tplan.fused), and its gradient too
 * where a max-pool's backward computes its own (tplan.pool_bwd). Values are laid out per sample in
 * one training arena; batchnorm gets per-chunk partial statistics and step-wide (global)
 * statistics. The chunk: TRAIN_CHUNK below. */
#include "passes.h"

#include <string.h>

/* Samples per chunk: each chunk's parameter gradient is summed in sample order, then the chunks'
 * sums are combined by a fixed tree, so the result never depends on how the batch is split. Every
 * chunk passes over the trained parameters about four times (W^T and W read, its gradient slot
 * written and read back): where they outgrow a core's L2 (TRAIN_WIDE_PARAMS) those passes come
 * from memory, and TRAIN_CHUNK_WIDE samples halve them per sample, as long as that many samples'
 * kept values and gradients stay within TRAIN_WIDE_ACT. mlp_s (2.6 MiB of weights, 16 KiB a
 * sample) trains 8-15% faster so on 2 cores; networks whose activations dominate (every
 * convolutional example) keep 32, which keeps a chunk's activations in cache. */
enum { TRAIN_CHUNK = 32, TRAIN_CHUNK_WIDE = 64 };
#define TRAIN_WIDE_PARAMS (1 << 20)
#define TRAIN_WIDE_ACT (2 << 20)

static bool is_view(pn_op op) { return pn_ops[op].flags & PN_OPF_VIEW; }

/* Input k of n carries no gradient: embedding ids, labels, regression targets. */
static bool no_grad_edge(const pn_node *n, int k) { return k < 32 && (pn_ops[n->op].nograd_inputs >> k & 1); }

/* Whether every step-live reader of node v, and of the views of it, is in stage st. */
static bool read_in_stage(const pn_graph *g, const bool *live, int v, int st) {
    for (int j = v + 1; j < g->nnodes; j++)
        for (int k = 0; live[j] && k < g->nodes[j].ninputs; k++)
            if (g->nodes[j].in[k] == v &&
                (g->nodes[j].stage != st || (is_view(g->nodes[j].op) && !read_in_stage(g, live, j, st))))
                return false;
    return true;
}

static void *zalloc(pn_graph *g, size_t bytes) {
    void *p = pn_arena_alloc(&g->arena, bytes ? bytes : 1);
    memset(p, 0, bytes ? bytes : 1);
    return p;
}

void pass_plan_train(pn_graph *g) {
    pn_tplan *t = &g->tplan;
    int n = g->nnodes;
    memset(t, 0, sizeof *t);
    if (!g->train.present || g->train.loss < 0) return;
    t->present = true;
    t->loss = g->train.loss;
    t->chunk = g->train_chunk > 0 ? g->train_chunk : TRAIN_CHUNK;
    t->live = zalloc(g, sizeof(bool) * (size_t)n);
    t->grad = zalloc(g, sizeof(bool) * (size_t)n);
    t->act = zalloc(g, sizeof(int) * (size_t)n);
    t->gbuf = zalloc(g, sizeof(int) * (size_t)n);
    t->act_off = zalloc(g, sizeof(int64_t) * (size_t)n);
    t->grad_off = zalloc(g, sizeof(int64_t) * (size_t)n);
    t->stat_off = zalloc(g, sizeof(int64_t) * (size_t)n);
    t->global_off = zalloc(g, sizeof(int64_t) * (size_t)n);
    t->wp_off = zalloc(g, sizeof(int64_t) * (size_t)n);
    bool *depends = zalloc(g, sizeof(bool) * (size_t)n);
    t->live[t->loss] = true;
    for (int i = n - 1; i >= 0; i--)
        if (t->live[i])
            for (int k = 0; k < g->nodes[i].ninputs; k++) t->live[g->nodes[i].in[k]] = true;
    for (int i = 0; i < n; i++) {
        const pn_node *nd = &g->nodes[i];
        for (int k = 0; k < nd->nparams; k++) depends[i] |= nd->params[k].trainable;
        for (int k = 0; k < nd->ninputs; k++) depends[i] |= !no_grad_edge(nd, k) && depends[nd->in[k]];
        t->grad[i] = t->live[i] && depends[i];
    }
    /* A relu whose input is a convolution's value that nothing else reads (in the step) is applied
     * by the convolution's kernel as it stores (its inference epilogue), and shares its storage as
     * a view does: the relu's backward reads x > 0 there, which relu(x) > 0 answers the same. One
     * pass over the activations less, and their storage. Only where everything that reads the
     * relu is in its stage: a stage boundary sends a value's storage forward and the gradient of
     * its storage's node back (ir/bounds.c), which for a fused relu is not the relu's. */
    t->fused = zalloc(g, sizeof(bool) * (size_t)n);
    int *uses = zalloc(g, sizeof(int) * (size_t)n);
    for (int i = 0; i < n; i++)
        for (int k = 0; t->live[i] && k < g->nodes[i].ninputs; k++) uses[g->nodes[i].in[k]]++;
    for (int i = 0; i < n; i++) {
        const pn_node *nd = &g->nodes[i];
        if (!t->live[i] || i == t->loss || nd->op != PN_OP_RELU || nd->ninputs != 1) continue;
        const pn_node *s = &g->nodes[nd->in[0]];
        if (s->op == PN_OP_CONV2D && uses[nd->in[0]] == 1 && !(s->flags & PN_NODE_OUTPUT) && s->stage == nd->stage &&
            s->shard <= 1 && s->dtype == PN_F32 && nd->dtype == PN_F32 && read_in_stage(g, t->live, i, nd->stage))
            t->fused[i] = true;
    }
    /* Such a relu read by a max-pool alone: the pool's backward writes the convolution's dy itself,
     * each routed dy where its window's maximum is > 0 (the relu's x > 0, as its backward would
     * take it) and 0 elsewhere, into the convolution's gradient, which the relu's shares: a pass
     * less again, and the relu's gradient storage. */
    t->pool_bwd = zalloc(g, sizeof(bool) * (size_t)n);
    for (int i = 0; i < n; i++) {
        const pn_node *nd = &g->nodes[i];
        if (!t->live[i] || nd->op != PN_OP_MAXPOOL2D || !t->fused[nd->in[0]] || uses[nd->in[0]] != 1) continue;
        const pn_node *r = &g->nodes[nd->in[0]];
        if (!(r->flags & PN_NODE_OUTPUT) && r->stage == nd->stage) t->pool_bwd[nd->in[0]] = true;
    }
    int64_t off = 0;
    for (int i = 0; i < n; i++) {
        const pn_node *nd = &g->nodes[i];
        t->act[i] = t->gbuf[i] = -1;
        t->act_off[i] = t->grad_off[i] = t->stat_off[i] = t->global_off[i] = t->wp_off[i] = -1;
        if (!t->live[i]) continue;
        int64_t bytes = (pn_shape_sample_elems(&nd->shape) * 4 + 63) / 64 * 64;
        bool alias = is_view(nd->op) || t->fused[i];
        t->act[i] = alias ? t->act[nd->in[0]] : i;
        if (nd->op != PN_OP_INPUT && nd->op != PN_OP_CONST && !(nd->flags & PN_NODE_TRAIN) && !alias) {
            t->act_off[i] = off;
            off += bytes;
        }
        if (!t->grad[i] || i == t->loss) continue;
        t->gbuf[i] = is_view(nd->op) || t->pool_bwd[i] ? t->gbuf[nd->in[0]] : i;
        if (t->gbuf[i] == i) {
            t->grad_off[i] = off;
            off += bytes;
        }
    }
    t->sample_bytes = off;
    if (g->train_chunk <= 0) {
        int64_t pbytes = 0;
        for (int i = 0; i < n; i++)
            for (int k = 0; t->live[i] && k < g->nodes[i].nparams; k++)
                if (g->nodes[i].params[k].trainable) pbytes += pn_shape_sample_elems(&g->nodes[i].params[k].shape) * 4;
        if (pbytes > TRAIN_WIDE_PARAMS && TRAIN_CHUNK_WIDE * off <= TRAIN_WIDE_ACT) t->chunk = TRAIN_CHUNK_WIDE;
    }
    t->stat_floats = 2;
    for (int i = 0; i < n; i++) {
        if (!t->live[i] || g->nodes[i].op != PN_OP_BATCHNORM) continue;
        int64_t C = g->nodes[i].shape.d[1];
        t->stat_off[i] = t->stat_floats;
        t->stat_floats += 4 * C; /* chunk mean, M2, sum dy, sum dy*xhat */
        t->global_off[i] = t->global_floats;
        t->global_floats += 4 * C;
    }
    /* Dense weights transposed at the start of each step, for the forward GEMM, in panels
     * (pn_wt_panel, graph.h); where the input takes a gradient, W in panels too, for dx. */
    for (int i = 0; i < n; i++) {
        const pn_node *nd = &g->nodes[i];
        if (!t->live[i] || nd->op != PN_OP_DENSE) continue;
        int64_t U = nd->params[0].shape.d[0], K = nd->params[0].shape.d[1];
        t->global_off[i] = t->global_floats;
        t->global_floats += pn_wt_floats(U, K);
        if (!t->grad[nd->in[0]]) continue;
        t->wp_off[i] = t->global_floats;
        t->global_floats += pn_wt_floats(K, U);
    }
    t->stat_floats = (t->stat_floats + 15) / 16 * 16;
}
