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
    cg_loop_end(c, &t);
    cg_kernel_end(c);
    return fn;
}
