/* Kernels for dense and matmul. out[r, u] = sum_k x[r, k] * W[u, k] + b[u], then the fused
 * epilogue; work is split over (row, column) tiles so any thread count gives identical sums. */
#include "cg.h"

static int64_t align16(int64_t v) { return (v + 15) / 16 * 16; }

/* dense: x [rows, K], params W [U, K] then b [U]. */
LLVMValueRef cg_gen_dense(cg *c, int node) {
    const pn_node *nd = &c->g->nodes[node];
    const pn_node *x = &c->g->nodes[nd->in[0]];
    LLVMValueRef fn = cg_kernel_begin(c, node, 1);
    LLVMValueRef out = LLVMGetParam(fn, 0), in = LLVMGetParam(fn, 1);
    int64_t K, U = nd->ia[PN_DENSE_UNITS];
    LLVMValueRef rows = cg_rows(c, &x->shape, &K);
    LLVMValueRef w = c->params;
    LLVMValueRef bias = nd->ia[PN_DENSE_BIAS] ? cg_gep(c, c->params, cg_i64(c, align16(U * K))) : NULL;
    LLVMValueRef lo, hi;
    cg_split(c, LLVMBuildMul(c->b, rows, cg_i64(c, U), ""), &lo, &hi);
    cg_loop t;
    cg_loop_begin(c, &t, lo, hi, "t");
    LLVMValueRef r = LLVMBuildSDiv(c->b, t.iv, cg_i64(c, U), "r");
    LLVMValueRef u = LLVMBuildSRem(c->b, t.iv, cg_i64(c, U), "u");
    LLVMValueRef xrow = cg_gep(c, in, LLVMBuildMul(c->b, r, cg_i64(c, K), ""));
    LLVMValueRef wrow = cg_gep(c, w, LLVMBuildMul(c->b, u, cg_i64(c, K), ""));
    /* The dot product: a reduction the vectoriser may reorder (fixed order per output). */
    cg_loop k;
    cg_loop_begin(c, &k, cg_i64(c, 0), cg_i64(c, K), "k");
    LLVMValueRef acc = cg_loop_acc(c, &k, cg_f32(c, 0.0));
    LLVMValueRef prod = cg_fmul(c, cg_load(c, xrow, k.iv), cg_load(c, wrow, k.iv), true);
    cg_loop_next(&k, acc, cg_fadd(c, acc, prod, true));
    cg_loop_end(c, &k);
    LLVMValueRef v = acc;
    if (bias) v = cg_fadd(c, v, cg_load(c, bias, u), false);
    v = cg_epilogue(c, node, v);
    cg_store(c, v, out, t.iv);
    cg_loop_end(c, &t);
    cg_kernel_end(c);
    return fn;
}

/* matmul: a [..., N, K] times b [..., K, M] with NumPy-broadcast batch dims (1-d operands are
 * promoted as in torch.matmul). out[bi, i, :] = sum_k a[bi, i, k] * b[bi, k, :]. */
LLVMValueRef cg_gen_matmul(cg *c, int node) {
    const pn_graph *g = c->g;
    const pn_node *nd = &g->nodes[node];
    pn_shape sa = g->nodes[nd->in[0]].shape, sb = g->nodes[nd->in[1]].shape;
    bool va = sa.rank == 1, vb = sb.rank == 1;
    if (va) sa = (pn_shape){2, {1, sa.d[0]}};
    if (vb) sb = (pn_shape){2, {sb.d[0], 1}};
    int64_t N = sa.d[sa.rank - 2], K = sa.d[sa.rank - 1], M = sb.d[sb.rank - 1];
    int nba = sa.rank - 2, nbb = sb.rank - 2, nb = nba > nbb ? nba : nbb;
    /* Output batch dims and the operands' strides along them (0 where broadcast). */
    int64_t ob[PN_MAX_RANK], sta[PN_MAX_RANK], stb[PN_MAX_RANK];
    for (int d = 0; d < nb; d++) {
        int da = d - (nb - nba), db = d - (nb - nbb);
        int64_t xa = da >= 0 ? sa.d[da] : 1, xb = db >= 0 ? sb.d[db] : 1;
        ob[d] = xa == 1 ? xb : xa;
        int64_t s = N * K;
        for (int e = da + 1; da >= 0 && e < nba; e++) s *= sa.d[e];
        sta[d] = (da >= 0 && xa != 1) ? s : 0;
        s = K * M;
        for (int e = db + 1; db >= 0 && e < nbb; e++) s *= sb.d[e];
        stb[d] = (db >= 0 && xb != 1) ? s : 0;
    }
    LLVMValueRef fn = cg_kernel_begin(c, node, 2);
    LLVMValueRef out = LLVMGetParam(fn, 0), pa = LLVMGetParam(fn, 1), pb = LLVMGetParam(fn, 2);
    LLVMValueRef nbatch = cg_i64(c, 1);
    for (int d = 0; d < nb; d++)
        nbatch = LLVMBuildMul(c->b, nbatch, ob[d] == PN_BATCH ? c->n : cg_i64(c, ob[d]), "");
    LLVMValueRef lo, hi;
    /* a: [batch, K] makes the batch the row axis of a single matrix. */
    LLVMValueRef Nv = N == PN_BATCH ? c->n : cg_i64(c, N);
    cg_split(c, LLVMBuildMul(c->b, nbatch, Nv, ""), &lo, &hi);
    cg_loop t;
    cg_loop_begin(c, &t, lo, hi, "t");
    LLVMValueRef bi = LLVMBuildSDiv(c->b, t.iv, Nv, "bi");
    LLVMValueRef i = LLVMBuildSRem(c->b, t.iv, Nv, "i");
    LLVMValueRef aoff = cg_i64(c, 0), boff = cg_i64(c, 0), rest = bi;
    for (int d = nb - 1; d >= 0; d--) {
        LLVMValueRef idx = d == 0 ? rest : LLVMBuildSRem(c->b, rest, cg_i64(c, ob[d]), "");
        if (d > 0) rest = LLVMBuildSDiv(c->b, rest, cg_i64(c, ob[d]), "");
        aoff = LLVMBuildAdd(c->b, aoff, LLVMBuildMul(c->b, idx, cg_i64(c, sta[d]), ""), "");
        boff = LLVMBuildAdd(c->b, boff, LLVMBuildMul(c->b, idx, cg_i64(c, stb[d]), ""), "");
    }
    LLVMValueRef arow = cg_gep(c, pa, LLVMBuildAdd(c->b, aoff, LLVMBuildMul(c->b, i, cg_i64(c, K), ""), ""));
    LLVMValueRef bmat = cg_gep(c, pb, boff);
    LLVMValueRef orow = cg_gep(c, out, LLVMBuildMul(c->b, t.iv, cg_i64(c, M), ""));
    cg_loop j0;
    cg_loop_begin(c, &j0, cg_i64(c, 0), cg_i64(c, M), "j0");
    cg_store(c, cg_f32(c, 0.0), orow, j0.iv);
    cg_loop_end(c, &j0);
    cg_loop k;
    cg_loop_begin(c, &k, cg_i64(c, 0), cg_i64(c, K), "k");
    LLVMValueRef av = cg_load(c, arow, k.iv);
    LLVMValueRef brow = cg_gep(c, bmat, LLVMBuildMul(c->b, k.iv, cg_i64(c, M), ""));
    cg_loop j;
    cg_loop_begin(c, &j, cg_i64(c, 0), cg_i64(c, M), "j");
    LLVMValueRef acc = cg_fadd(c, cg_load(c, orow, j.iv), cg_fmul(c, av, cg_load(c, brow, j.iv), false), false);
    cg_store(c, acc, orow, j.iv);
    cg_loop_end(c, &j);
    cg_loop_end(c, &k);
    if (g->plan.fuse_next[node] >= 0) {
        cg_loop j2;
        cg_loop_begin(c, &j2, cg_i64(c, 0), cg_i64(c, M), "j2");
        cg_store(c, cg_epilogue(c, node, cg_load(c, orow, j2.iv)), orow, j2.iv);
        cg_loop_end(c, &j2);
    }
    cg_loop_end(c, &t);
    cg_kernel_end(c);
    (void)va;
    (void)vb;
    return fn;
}
