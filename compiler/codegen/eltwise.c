/* Elementwise kernels: unary activations (when not fused into a producer) and + - * / with NumPy
 * broadcasting, viewed as rows of the output's last axis; and each elementwise op's value at one
 * element (the codegen table's unary column), which its kernel and the epilogues it is fused
 * into apply. */
#include "cg.h"

/* ---- the unary column: one element v, a float or a vector of floats ---------------------------- */
LLVMValueRef cg_ew_relu(cg *c, const pn_node *op, LLVMValueRef v) {
    return cg_select(c, LLVMBuildFCmp(c->b, LLVMRealOLT, v, cg_fconst(c, v, 0.0), ""), cg_fconst(c, v, 0.0), v);
}

LLVMValueRef cg_ew_leaky_relu(cg *c, const pn_node *op, LLVMValueRef v) {
    return cg_select(c, LLVMBuildFCmp(c->b, LLVMRealOLT, v, cg_fconst(c, v, 0.0), ""),
                     cg_fmul(c, v, cg_fconst(c, v, op->fa[PN_FA_VALUE]), false), v);
}

LLVMValueRef cg_ew_sigmoid(cg *c, const pn_node *op, LLVMValueRef v) { return cg_sigmoid(c, v); }
LLVMValueRef cg_ew_tanh(cg *c, const pn_node *op, LLVMValueRef v) { return cg_tanh(c, v); }
LLVMValueRef cg_ew_gelu(cg *c, const pn_node *op, LLVMValueRef v) { return cg_gelu(c, v); }
/* silu(x) = x sigmoid(x). */
LLVMValueRef cg_ew_silu(cg *c, const pn_node *op, LLVMValueRef v) { return cg_fmul(c, v, cg_sigmoid(c, v), false); }

/* elu(x) = x > 0 ? x : alpha (exp(x) - 1). */
LLVMValueRef cg_ew_elu(cg *c, const pn_node *op, LLVMValueRef v) {
    LLVMValueRef neg = cg_fmul(c, cg_fconst(c, v, op->fa[PN_FA_VALUE]), cg_fsub(c, cg_exp(c, v), cg_fconst(c, v, 1.0)), false);
    return cg_select(c, LLVMBuildFCmp(c->b, LLVMRealOGT, v, cg_fconst(c, v, 0.0), ""), v, neg);
}

/* softplus(x) = max(x, 0) + log1p(exp(-|x|)), and x itself past PyTorch's threshold 20. For u in
 * (0, 1], log1p(u) = 2 atanh(z), z = u / (2 + u) <= 1/3: the odd series to z^13 is within 5e-8
 * relative, exact for tiny u, and vectorises (no libm call). */
LLVMValueRef cg_ew_softplus(cg *c, const pn_node *op, LLVMValueRef v) {
    LLVMValueRef u = cg_exp(c, LLVMBuildFNeg(c->b, cg_call1(c, "llvm.fabs", v), ""));
    LLVMValueRef z = cg_fdiv(c, u, cg_fadd(c, cg_fconst(c, v, 2.0), u, false)), z2 = cg_fmul(c, z, z, false);
    LLVMValueRef p = cg_fconst(c, v, 1.0 / 13.0);
    for (int k = 11; k >= 1; k -= 2) p = cg_fma(c, p, z2, cg_fconst(c, v, 1.0 / k));
    LLVMValueRef l = cg_fmul(c, cg_fmul(c, z, cg_fconst(c, v, 2.0), false), p, false);
    LLVMValueRef sp = cg_fadd(c, cg_max(c, v, cg_fconst(c, v, 0.0), false), l, false);
    return cg_select(c, LLVMBuildFCmp(c->b, LLVMRealOGT, v, cg_fconst(c, v, 20.0), ""), v, sp);
}

/* dropout at inference. */
LLVMValueRef cg_ew_identity(cg *c, const pn_node *op, LLVMValueRef v) { return v; }

/* + - * / where one operand is a scalar constant (pass_fuse checked); keeps the operand order. */
LLVMValueRef cg_ew_const_binary(cg *c, const pn_node *op, LLVMValueRef v) {
    const pn_node *a = &c->g->nodes[op->in[0]], *b = &c->g->nodes[op->in[1]];
    bool const_first = a->op == PN_OP_CONST;
    LLVMValueRef k = cg_fconst(c, v, (const_first ? a : b)->fa[PN_FA_VALUE]);
    LLVMValueRef l = const_first ? k : v, r = const_first ? v : k;
    return op->op == PN_OP_ADD ? cg_fadd(c, l, r, false) : op->op == PN_OP_SUB ? cg_fsub(c, l, r)
         : op->op == PN_OP_MUL ? cg_fmul(c, l, r, false) : cg_fdiv(c, l, r);
}

/* ---- kernels ------------------------------------------------------------------------------------ */

LLVMValueRef cg_gen_eltwise(cg *c, int node) {
    const pn_node *nd = &c->g->nodes[node];
    LLVMValueRef fn = cg_kernel_begin(c, node, 1);
    LLVMValueRef out = LLVMGetParam(fn, 0), in = LLVMGetParam(fn, 1);
    LLVMValueRef lo, hi;
    cg_split(c, cg_numel(c, &nd->shape), &lo, &hi);
    cg_loop i;
    cg_loop_begin(c, &i, lo, hi, "i");
    LLVMValueRef v = cg_unary(c, nd, cg_load(c, in, i.iv));
    cg_store(c, cg_epilogue(c, node, v), out, i.iv);
    cg_loop_end(c, &i);
    cg_kernel_end(c);
    return fn;
}

/* prelu: y = x > 0 ? x : w[ch] x, ch along axis 1. Rows are [outer][C][inner]; with inner = 1
 * (a [batch, F] input) a row is one sample's C channels, else one channel's inner elements. */
LLVMValueRef cg_gen_prelu(cg *c, int node) {
    const pn_node *nd = &c->g->nodes[node];
    const pn_shape *s = &nd->shape;
    int64_t C = s->d[1], inner = pn_shape_sample_elems(s) / (pn_shape_batched(s) ? 1 : s->d[0]) / C;
    LLVMValueRef fn = cg_kernel_begin(c, node, 1);
    LLVMValueRef out = LLVMGetParam(fn, 0), in = LLVMGetParam(fn, 1), w = c->params;
    LLVMValueRef outer = pn_shape_batched(s) ? c->n : cg_i64(c, s->d[0]);
    bool flat = inner == 1;
    LLVMValueRef lo, hi;
    cg_split(c, flat ? outer : LLVMBuildMul(c->b, outer, cg_i64(c, C), ""), &lo, &hi);
    cg_loop t;
    cg_loop_begin(c, &t, lo, hi, "row");
    int64_t width = flat ? C : inner;
    LLVMValueRef base = LLVMBuildMul(c->b, t.iv, cg_i64(c, width), "");
    LLVMValueRef irow = cg_gep(c, in, base), orow = cg_gep(c, out, base);
    LLVMValueRef slope = flat ? NULL : cg_load(c, w, LLVMBuildSRem(c->b, t.iv, cg_i64(c, C), ""));
    cg_loop j;
    cg_loop_begin(c, &j, cg_i64(c, 0), cg_i64(c, width), "j");
    LLVMValueRef v = cg_load(c, irow, j.iv), k = flat ? cg_load(c, w, j.iv) : slope;
    v = cg_select(c, LLVMBuildFCmp(c->b, LLVMRealOGT, v, cg_f32(c, 0.0), ""), v, cg_fmul(c, v, k, false));
    cg_store(c, v, orow, j.iv);
    cg_loop_end(c, &j);
    t.novec = true; /* the rows' elements are the vectors */
    cg_loop_end(c, &t);
    cg_kernel_end(c);
    return fn;
}

/* Element strides of an operand against the output's axes (0 along broadcast axes). */
static void bcast_strides(const pn_shape *in, const pn_shape *out, int64_t *st) {
    int off = out->rank - in->rank;
    int64_t s = 1;
    for (int d = out->rank - 1; d >= 0; d--) {
        int di = d - off;
        if (di < 0) {
            st[d] = 0;
            continue;
        }
        st[d] = in->d[di] == 1 && out->d[d] != 1 ? 0 : s;
        if (in->d[di] != PN_BATCH) s *= in->d[di];
    }
}

LLVMValueRef cg_gen_binary(cg *c, int node) {
    const pn_node *nd = &c->g->nodes[node];
    const pn_shape *os = &nd->shape;
    int r = os->rank;
    int64_t sa[PN_MAX_RANK] = {0}, sb[PN_MAX_RANK] = {0};
    bcast_strides(&c->g->nodes[nd->in[0]].shape, os, sa);
    bcast_strides(&c->g->nodes[nd->in[1]].shape, os, sb);
    LLVMValueRef fn = cg_kernel_begin(c, node, 2);
    LLVMValueRef out = LLVMGetParam(fn, 0), pa = LLVMGetParam(fn, 1), pb = LLVMGetParam(fn, 2);
    int64_t inner = r ? os->d[r - 1] : 1;
    if (inner == PN_BATCH) inner = 1; /* [batch]: rows of one */
    int last = r ? r - 1 : 0;
    LLVMValueRef rows = cg_i64(c, 1);
    for (int d = 0; d < r; d++) {
        if (d == last && os->d[d] != PN_BATCH) continue;
        rows = LLVMBuildMul(c->b, rows, os->d[d] == PN_BATCH ? c->n : cg_i64(c, os->d[d]), "");
    }
    int64_t ia_last = r && os->d[last] != PN_BATCH ? sa[last] : 0, ib_last = r && os->d[last] != PN_BATCH ? sb[last] : 0;
    LLVMValueRef lo, hi;
    cg_split(c, rows, &lo, &hi);
    cg_loop t;
    cg_loop_begin(c, &t, lo, hi, "row");
    /* Decompose the row index over the leading axes (the first may be the run-time batch). */
    int nlead = (r && os->d[last] != PN_BATCH) ? r - 1 : r;
    LLVMValueRef aoff = cg_i64(c, 0), boff = cg_i64(c, 0), rest = t.iv;
    for (int d = nlead - 1; d >= 0; d--) {
        LLVMValueRef idx = d == 0 ? rest : LLVMBuildSRem(c->b, rest, cg_i64(c, os->d[d]), "");
        if (d > 0) rest = LLVMBuildSDiv(c->b, rest, cg_i64(c, os->d[d]), "");
        aoff = LLVMBuildAdd(c->b, aoff, LLVMBuildMul(c->b, idx, cg_i64(c, sa[d]), ""), "");
        boff = LLVMBuildAdd(c->b, boff, LLVMBuildMul(c->b, idx, cg_i64(c, sb[d]), ""), "");
    }
    LLVMValueRef arow = cg_gep(c, pa, aoff), brow = cg_gep(c, pb, boff);
    LLVMValueRef orow = cg_gep(c, out, LLVMBuildMul(c->b, t.iv, cg_i64(c, inner), ""));
    cg_loop j;
    cg_loop_begin(c, &j, cg_i64(c, 0), cg_i64(c, inner), "j");
    LLVMValueRef x = cg_load(c, arow, LLVMBuildMul(c->b, j.iv, cg_i64(c, ia_last), ""));
    LLVMValueRef y = cg_load(c, brow, LLVMBuildMul(c->b, j.iv, cg_i64(c, ib_last), ""));
    LLVMValueRef v = nd->op == PN_OP_ADD ? cg_fadd(c, x, y, false) : nd->op == PN_OP_SUB ? cg_fsub(c, x, y)
                   : nd->op == PN_OP_MUL ? cg_fmul(c, x, y, false) : cg_fdiv(c, x, y);
    cg_store(c, cg_epilogue(c, node, v), orow, j.iv);
    cg_loop_end(c, &j);
    t.novec = true; /* the rows' elements are the vectors */
    cg_loop_end(c, &t);
    cg_kernel_end(c);
    return fn;
}
