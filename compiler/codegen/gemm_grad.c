/* The training kernels of dense and matmul (beside gemm.c): dense's forward over W^T and its
 * backward through the general GEMM, and matmul's backward. */
#include "tk.h"
#include "../support/util.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

LLVMValueRef cg_bwd_dense(cg *c, int node, const bool *acc) {
    const pn_graph *g = c->g;
    const pn_node *nd = &g->nodes[node];
    int64_t K, U = nd->ia[PN_DENSE_UNITS];
    cg_tk_begin(c, node, "bwd");
    LLVMValueRef rows = cg_rows(c, &g->nodes[nd->in[0]].shape, &K);
    LLVMValueRef dy = ctxp(c, TK_DY), x = ctxp(c, TK_X), gw = ctxp(c, TK_GPARAMS);
    /* dx = dy W, W read in its panels in the global area (graph.h) */
    if (cg_grad_edge(g, node, 0))
        cg_tk_gemm_wt(c, rows, K, I(c, U), dy, I(c, U), cg_gep(c, ctxp(c, TK_GLOBAL), I(c, g->tplan.wp_off[node])),
                      ctxp(c, TK_DX), I(c, K), acc[0], true, NULL);
    /* dW = dy^T x, reading dy down its columns: a tile's rows are adjacent floats of a row of dy.
     * With the call's grad_add, dW and db are added to what the slot holds (the tree's addition of
     * the left sibling's gradient and this chunk's, fl(slot + chunk's), made as they are stored). */
    LLVMValueRef gadd = LLVMBuildICmp(c->b, LLVMIntNE, ctxi(c, TK_GADD), I(c, 0), "gadd");
    cg_tk_gemm_at(c, I(c, U), I(c, 0), I(c, K), rows, dy, U, x, K, gw, I(c, K), true, gadd);
    if (nd->ia[PN_DENSE_BIAS]) {
        LLVMValueRef gb = cg_gep(c, gw, I(c, align16(U * K)));
        LLVMValueRef lo, hi;
        cg_split(c, I(c, U), &lo, &hi);
        /* db: the rows summed in order in this thread's scratch, then stored (or added). */
        LLVMValueRef s = c->scratch;
        cg_need_scratch(c, U * 4);
        cg_zero(c, s, lo, hi);
        cg_loop r;
        cg_loop_begin(c, &r, I(c, 0), rows, "r");
        LLVMValueRef drow = cg_gep(c, dy, imul(c, r.iv, I(c, U)));
        cg_loop u2;
        cg_loop_begin(c, &u2, lo, hi, "u2");
        cg_put(c, cg_load(c, drow, u2.iv), s, u2.iv, true);
        cg_loop_end(c, &u2);
        cg_loop_end(c, &r);
        cg_loop a;
        cg_loop_begin(c, &a, lo, hi, "db");
        LLVMValueRef v = cg_load(c, s, a.iv);
        cg_store(c, cg_select(c, gadd, cg_fadd(c, cg_load(c, gb, a.iv), v, false), v), gb, a.iv);
        cg_loop_end(c, &a);
    }
    return cg_tk_end(c);
}

/* The training forward of dense: y = b + x W^T, with W^T (made by cg_gen_prep) in the global area's
 * panels. */
LLVMValueRef cg_gen_dense_train(cg *c, int node) {
    const pn_graph *g = c->g;
    const pn_node *nd = &g->nodes[node];
    int64_t K, U = nd->ia[PN_DENSE_UNITS];
    cg_tk_begin(c, node, "dense");
    LLVMValueRef rows = cg_rows(c, &g->nodes[nd->in[0]].shape, &K);
    LLVMValueRef wt = cg_gep(c, ctxp(c, TK_GLOBAL), I(c, g->tplan.global_off[node]));
    LLVMValueRef bias = nd->ia[PN_DENSE_BIAS] ? cg_gep(c, c->params, I(c, align16(U * K))) : NULL;
    cg_tk_gemm_wt(c, rows, U, I(c, K), ctxp(c, TK_X), I(c, K), wt, ctxp(c, TK_Y), I(c, U), false, true, bias);
    return cg_tk_end(c);
}


/* matmul a [B.., N, K] x b [B.., K, M]: da = dy b^T, db = a^T dy, for operands whose batch dims are
 * the output's (the only ones that carry gradients); split over the gradient's elements. */
LLVMValueRef cg_bwd_matmul(cg *c, int node, const bool *acc) {
    const pn_graph *g = c->g;
    const pn_node *nd = &g->nodes[node];
    const pn_shape *sa = &g->nodes[nd->in[0]].shape, *sb = &g->nodes[nd->in[1]].shape, *so = &nd->shape;
    /* a [batch, K] times an unbatched b [K, M]: each sample is a 1 x K matrix. */
    bool rows = so->rank == 2 && sa->rank == 2 && pn_shape_batched(sa) && sb->rank == 2 && !pn_shape_batched(sb);
    for (int k = 0; k < 2; k++) {
        const pn_shape *s = k ? sb : sa;
        if (!cg_grad_edge(g, node, k) || (rows && k == 0)) continue;
        if (s->rank != so->rank || s->rank < 3 || memcmp(s->d, so->d, sizeof(int64_t) * (size_t)(s->rank - 2)) != 0) {
            cg_fail(c, node, "training: the gradient of matmul '%s' needs operand %d to have the output's batch dimensions",
                    nd->name, k + 1);
            return NULL;
        }
    }
    int R = so->rank;
    int64_t N = rows ? 1 : so->d[R - 2], M = so->d[R - 1], K = sa->rank >= 2 ? sa->d[sa->rank - 1] : sa->d[0];
    int64_t oper = pn_shape_sample_elems(so) / (N * M); /* matrices per sample */
    bool bbat = pn_shape_batched(sb) && sb->rank == R && !rows, abat = pn_shape_batched(sa) && sa->rank == R;
    int64_t bper = sb->rank >= 2 ? sb->d[sb->rank - 2] * sb->d[sb->rank - 1] : 0;
    int64_t aper = N * K;
    cg_tk_begin(c, node, "bwd");
    LLVMValueRef dy = ctxp(c, TK_DY), a = ctxp(c, TK_X), b = ctxp(c, TK_X + 1);
    for (int k = 0; k < 2; k++) {
        if (!cg_grad_edge(g, node, k)) continue;
        LLVMValueRef dx = ctxp(c, TK_DX + k);
        int64_t rows = k ? K : N, cols = k ? M : K;
        LLVMValueRef lo, hi;
        cg_split(c, imul(c, c->n, I(c, oper * rows * cols)), &lo, &hi);
        cg_loop e;
        cg_loop_begin(c, &e, lo, hi, "e");
        LLVMValueRef mat = idiv(c, e.iv, I(c, rows * cols)), rc = irem(c, e.iv, I(c, rows * cols));
        LLVMValueRef r = idiv(c, rc, I(c, cols)), col = irem(c, rc, I(c, cols));
        /* The other operand's matrix: per output matrix, or shared when it has no batch dims. */
        LLVMValueRef ob = k ? (abat ? imul(c, mat, I(c, aper)) : I(c, 0)) : (bbat ? imul(c, mat, I(c, bper)) : I(c, 0));
        LLVMValueRef dym = imul(c, mat, I(c, N * M));
        cg_loop t;
        int64_t len = k ? N : M;
        cg_loop_begin(c, &t, I(c, 0), I(c, len), "t");
        LLVMValueRef sacc = cg_loop_acc(c, &t, F(c, 0.0));
        LLVMValueRef prod;
        if (k == 0) /* da[r=i][col=kk] = sum_j dy[i][j] b[kk][j] */
            prod = cg_fmul(c, cg_load(c, dy, iadd(c, dym, iadd(c, imul(c, r, I(c, M)), t.iv))),
                           cg_load(c, b, iadd(c, ob, iadd(c, imul(c, col, I(c, M)), t.iv))), false);
        else /* db[r=kk][col=j] = sum_i a[i][kk] dy[i][j] */
            prod = cg_fmul(c, cg_load(c, a, iadd(c, ob, iadd(c, imul(c, t.iv, I(c, K)), r))),
                           cg_load(c, dy, iadd(c, dym, iadd(c, imul(c, t.iv, I(c, M)), col))), false);
        cg_loop_next(&t, sacc, cg_fadd(c, sacc, prod, true));
        cg_loop_end(c, &t);
        cg_put(c, sacc, dx, e.iv, acc[k]);
        cg_loop_end(c, &e);
    }
    return cg_tk_end(c);
}
