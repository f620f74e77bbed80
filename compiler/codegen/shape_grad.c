/* The backward kernels of embedding, concat, transpose, slice and pad (beside shape.c). */
#include "tk.h"
#include "../support/util.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* The table's gradient: zeroed, then each id's row of dy added in sample order; split by columns. */
LLVMValueRef cg_bwd_embedding(cg *c, int node, const bool *acc) {
    const pn_graph *g = c->g;
    const pn_node *nd = &g->nodes[node];
    int64_t V = nd->ia[PN_EMB_VOCAB], D = nd->ia[PN_EMB_DIM];
    int64_t ids_per = pn_shape_sample_elems(&g->nodes[nd->in[0]].shape);
    cg_tk_begin(c, node, "bwd");
    LLVMValueRef dy = ctxp(c, TK_DY), ids = ctxp(c, TK_X), gw = ctxp(c, TK_GPARAMS);
    LLVMValueRef lo, hi;
    cg_split(c, I(c, D), &lo, &hi);
    cg_loop v;
    cg_loop_begin(c, &v, I(c, 0), I(c, V), "v");
    cg_loop j;
    cg_loop_begin(c, &j, lo, hi, "j");
    cg_store(c, F(c, 0.0), gw, iadd(c, imul(c, v.iv, I(c, D)), j.iv));
    cg_loop_end(c, &j);
    cg_loop_end(c, &v);
    cg_loop t;
    cg_loop_begin(c, &t, I(c, 0), imul(c, c->n, I(c, ids_per)), "t");
    LLVMValueRef id = LLVMBuildSExt(c->b, cg_load_i32(c, ids, t.iv), c->i64, "");
    LLVMValueRef row = cg_gep(c, gw, imul(c, id, I(c, D))), drow = cg_gep(c, dy, imul(c, t.iv, I(c, D)));
    cg_loop j2;
    cg_loop_begin(c, &j2, lo, hi, "j2");
    cg_put(c, cg_load(c, drow, j2.iv), row, j2.iv, true);
    cg_loop_end(c, &j2);
    cg_loop_end(c, &t);
    (void)acc;
    return cg_tk_end(c);
}

LLVMValueRef cg_bwd_concat(cg *c, int node, const bool *acc) {
    const pn_graph *g = c->g;
    const pn_node *nd = &g->nodes[node];
    int axis = (int)nd->ia[PN_AXIS];
    int64_t inner = 1, outer = 1;
    for (int d = axis + 1; d < nd->shape.rank; d++) inner *= nd->shape.d[d];
    for (int d = 1; d < axis; d++) outer *= nd->shape.d[d];
    int64_t OA = nd->shape.d[axis];
    cg_tk_begin(c, node, "bwd");
    LLVMValueRef dy = ctxp(c, TK_DY);
    int64_t off = 0;
    for (int k = 0; k < nd->ninputs; k++) {
        int64_t A = g->nodes[nd->in[k]].shape.d[axis];
        if (cg_grad_edge(g, node, k)) {
            LLVMValueRef dx = ctxp(c, TK_DX + k);
            LLVMValueRef lo, hi;
            cg_split(c, imul(c, c->n, I(c, outer * A * inner)), &lo, &hi);
            cg_loop e;
            cg_loop_begin(c, &e, lo, hi, "e");
            LLVMValueRef o = idiv(c, e.iv, I(c, A * inner)), r = irem(c, e.iv, I(c, A * inner));
            LLVMValueRef src = iadd(c, imul(c, o, I(c, OA * inner)), iadd(c, I(c, off * inner), r));
            cg_put(c, cg_load(c, dy, src), dx, e.iv, acc[k]);
            cg_loop_end(c, &e);
        }
        off += A;
    }
    return cg_tk_end(c);
}

/* y = transpose(x, perm): y's element at index i (in y's dims) is x's at index i[perm^-1]. */
LLVMValueRef cg_bwd_transpose(cg *c, int node, const bool *acc) {
    const pn_graph *g = c->g;
    const pn_node *nd = &g->nodes[node];
    const pn_shape *xs = &g->nodes[nd->in[0]].shape;
    int R = nd->shape.rank;
    int64_t xstr[PN_MAX_RANK];
    int64_t st = 1;
    for (int d = R - 1; d >= 0; d--) {
        xstr[d] = st;
        st *= xs->d[d] == PN_BATCH ? 1 : xs->d[d];
    }
    int64_t per = pn_shape_sample_elems(xs);
    cg_tk_begin(c, node, "bwd");
    LLVMValueRef dy = ctxp(c, TK_DY), dx = ctxp(c, TK_DX);
    LLVMValueRef lo, hi;
    cg_split(c, numel(c, &nd->shape), &lo, &hi);
    cg_loop e;
    cg_loop_begin(c, &e, lo, hi, "e");
    LLVMValueRef rem = e.iv, xi = I(c, 0);
    for (int d = R - 1; d >= 0; d--) {
        int src = (int)nd->ia[PN_PERM + d];
        LLVMValueRef idx;
        if (nd->shape.d[d] == PN_BATCH) {
            idx = rem;
        } else {
            idx = irem(c, rem, I(c, nd->shape.d[d]));
            rem = idiv(c, rem, I(c, nd->shape.d[d]));
        }
        xi = iadd(c, xi, imul(c, idx, I(c, xs->d[src] == PN_BATCH ? per : xstr[src])));
    }
    cg_put(c, cg_load(c, dy, e.iv), dx, xi, acc[0]);
    cg_loop_end(c, &e);
    return cg_tk_end(c);
}

/* slice: dx is dy scattered into zeros; x viewed as [outer, A * inner], y as [outer, L * inner].
 * Each element of dx is written (or added to, when acc) once, 0 outside the slice. */
LLVMValueRef cg_bwd_slice(cg *c, int node, const bool *acc) {
    const pn_graph *g = c->g;
    const pn_node *nd = &g->nodes[node];
    const pn_shape *xs = &g->nodes[nd->in[0]].shape;
    int axis = (int)nd->ia[PN_AXIS];
    int64_t A = xs->d[axis], L = nd->shape.d[axis], inner = 1;
    for (int d = axis + 1; d < xs->rank; d++) inner *= xs->d[d];
    int64_t lo_col = nd->ia[PN_SLICE_START] * inner, hi_col = lo_col + L * inner;
    cg_tk_begin(c, node, "bwd");
    LLVMValueRef dy = ctxp(c, TK_DY), dx = ctxp(c, TK_DX);
    LLVMValueRef lo, hi;
    cg_split(c, numel(c, xs), &lo, &hi);
    cg_loop e;
    cg_loop_begin(c, &e, lo, hi, "e");
    LLVMValueRef o = idiv(c, e.iv, I(c, A * inner)), col = irem(c, e.iv, I(c, A * inner));
    LLVMValueRef in = LLVMBuildAnd(c->b, LLVMBuildICmp(c->b, LLVMIntSGE, col, I(c, lo_col), ""),
                                   LLVMBuildICmp(c->b, LLVMIntSLT, col, I(c, hi_col), ""), "");
    /* An element outside the slice reads dy[0], a valid address, and keeps 0. */
    LLVMValueRef src = cg_select(c, in, iadd(c, imul(c, o, I(c, L * inner)), isub(c, col, I(c, lo_col))), I(c, 0));
    cg_put(c, fsel(c, in, cg_load(c, dy, src), F(c, 0.0)), dx, e.iv, acc[0]);
    cg_loop_end(c, &e);
    return cg_tk_end(c);
}

/* pad: dx is the slice of dy inside the padding; split by input rows (plane, ih). */
LLVMValueRef cg_bwd_pad(cg *c, int node, const bool *acc) {
    const pn_graph *g = c->g;
    const pn_node *nd = &g->nodes[node];
    const pn_shape *xs = &g->nodes[nd->in[0]].shape;
    int64_t H = xs->d[2], W = xs->d[3], OH = nd->shape.d[2], OW = nd->shape.d[3];
    cg_tk_begin(c, node, "bwd");
    LLVMValueRef dy = ctxp(c, TK_DY), dx = ctxp(c, TK_DX);
    LLVMValueRef lo, hi;
    cg_split(c, imul(c, pn_shape_batched(xs) ? c->n : I(c, xs->d[0]), I(c, xs->d[1] * H)), &lo, &hi);
    cg_loop t;
    cg_loop_begin(c, &t, lo, hi, "row");
    LLVMValueRef pl = idiv(c, t.iv, I(c, H)), ih = irem(c, t.iv, I(c, H));
    LLVMValueRef src = iadd(c, imul(c, iadd(c, imul(c, pl, I(c, OH)), iadd(c, ih, I(c, nd->ia[PN_PAD_TOP]))), I(c, OW)),
                            I(c, nd->ia[PN_PAD_LEFT]));
    LLVMValueRef srow = cg_gep(c, dy, src), drow = cg_gep(c, dx, imul(c, t.iv, I(c, W)));
    cg_loop j;
    cg_loop_begin(c, &j, I(c, 0), I(c, W), "j");
    cg_put(c, cg_load(c, srow, j.iv), drow, j.iv, acc[0]);
    cg_loop_end(c, &j);
    cg_loop_end(c, &t);
    return cg_tk_end(c);
}
