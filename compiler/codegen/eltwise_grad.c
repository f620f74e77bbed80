/* Training kernels of the elementwise ops (beside eltwise.c): dropout's training forward, the
 * derivative of each unary activation and dropout at one element (the codegen table's unary_grad
 * column), their backward kernel, and the backward of + - * / with broadcasting. */
#include "tk.h"
#include "../support/util.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* The dropout mask of element idx (global across the batch) at a step: keep with probability 1-p.
 * A counter-based hash, so forward and backward agree and no mask is stored. */
static LLVMValueRef dropout_keep(cg *c, int node, LLVMValueRef gidx, double p) {
    LLVMValueRef seed = ctxi(c, TK_SEED), step = ctxi(c, TK_STEP);
    LLVMValueRef h = LLVMBuildXor(c->b, imul(c, seed, I(c, INT64_C(0x9E3779B97F4A7C15))),
                                  imul(c, iadd(c, step, I(c, node * 65537)), I(c, INT64_C(0xBF58476D1CE4E5B9))), "");
    h = iadd(c, h, imul(c, gidx, I(c, INT64_C(0x94D049BB133111EB))));
    h = LLVMBuildXor(c->b, h, LLVMBuildLShr(c->b, h, I(c, 30), ""), "");
    h = imul(c, h, I(c, INT64_C(0xBF58476D1CE4E5B9)));
    h = LLVMBuildXor(c->b, h, LLVMBuildLShr(c->b, h, I(c, 27), ""), "");
    h = imul(c, h, I(c, INT64_C(0x94D049BB133111EB)));
    h = LLVMBuildXor(c->b, h, LLVMBuildLShr(c->b, h, I(c, 31), ""), "");
    LLVMValueRef top = LLVMBuildLShr(c->b, h, I(c, 40), ""); /* 24 bits */
    return LLVMBuildICmp(c->b, LLVMIntSGE, top, I(c, (int64_t)(p * 16777216.0 + 0.5)), "");
}

LLVMValueRef cg_gen_dropout_train(cg *c, int node) {
    const pn_node *nd = &c->g->nodes[node];
    double p = nd->fa[PN_FA_VALUE];
    cg_tk_begin(c, node, "dropout");
    LLVMValueRef y = ctxp(c, TK_Y), x = ctxp(c, TK_X);
    LLVMValueRef base = imul(c, ctxi(c, TK_S0), I(c, pn_shape_sample_elems(&nd->shape)));
    LLVMValueRef lo, hi;
    cg_split(c, numel(c, &nd->shape), &lo, &hi);
    cg_loop e;
    cg_loop_begin(c, &e, lo, hi, "e");
    LLVMValueRef keep = dropout_keep(c, node, iadd(c, base, e.iv), p);
    LLVMValueRef v = cg_fmul(c, cg_load(c, x, e.iv), F(c, p < 1 ? 1.0 / (1.0 - p) : 0.0), false);
    cg_store(c, fsel(c, keep, v, F(c, 0.0)), y, e.iv);
    cg_loop_end(c, &e);
    return cg_tk_end(c);
}

/* ---- the unary_grad column: dy times the derivative at one element ----------------------------- */
LLVMValueRef cg_ew_relu_grad(cg *c, int node, LLVMValueRef d, const cg_elt *at) {
    return fsel(c, fgt0(c, cg_load(c, at->x, at->idx)), d, F(c, 0.0));
}

LLVMValueRef cg_ew_leaky_relu_grad(cg *c, int node, LLVMValueRef d, const cg_elt *at) {
    return fsel(c, fgt0(c, cg_load(c, at->x, at->idx)), d, cg_fmul(c, d, F(c, c->g->nodes[node].fa[PN_FA_VALUE]), false));
}

LLVMValueRef cg_ew_sigmoid_grad(cg *c, int node, LLVMValueRef d, const cg_elt *at) {
    LLVMValueRef s = cg_load(c, at->y, at->idx);
    return cg_fmul(c, d, cg_fmul(c, s, cg_fsub(c, F(c, 1.0), s), false), false);
}

LLVMValueRef cg_ew_tanh_grad(cg *c, int node, LLVMValueRef d, const cg_elt *at) {
    LLVMValueRef t = cg_load(c, at->y, at->idx);
    return cg_fmul(c, d, cg_fsub(c, F(c, 1.0), cg_fmul(c, t, t, false)), false);
}

LLVMValueRef cg_ew_gelu_grad(cg *c, int node, LLVMValueRef d, const cg_elt *at) {
    return cg_fmul(c, d, cg_gelu_grad(c, cg_load(c, at->x, at->idx)), false);
}

/* silu'(x) = s (1 + x (1 - s)), s = sigmoid(x). */
LLVMValueRef cg_ew_silu_grad(cg *c, int node, LLVMValueRef d, const cg_elt *at) {
    LLVMValueRef x = cg_load(c, at->x, at->idx), s = cg_sigmoid(c, x);
    LLVMValueRef k = cg_fma(c, x, cg_fsub(c, F(c, 1.0), s), F(c, 1.0));
    return cg_fmul(c, d, cg_fmul(c, s, k, false), false);
}

/* elu'(x) = 1 above 0, alpha exp(x) below. */
LLVMValueRef cg_ew_elu_grad(cg *c, int node, LLVMValueRef d, const cg_elt *at) {
    LLVMValueRef x = cg_load(c, at->x, at->idx);
    LLVMValueRef k = cg_fmul(c, F(c, c->g->nodes[node].fa[PN_FA_VALUE]), cg_exp(c, x), false);
    return fsel(c, fgt0(c, x), d, cg_fmul(c, d, k, false));
}

/* softplus'(x) = sigmoid(x), 1 past the threshold 20. */
LLVMValueRef cg_ew_softplus_grad(cg *c, int node, LLVMValueRef d, const cg_elt *at) {
    LLVMValueRef x = cg_load(c, at->x, at->idx);
    LLVMValueRef big = LLVMBuildFCmp(c->b, LLVMRealOGT, x, F(c, 20.0), "");
    return fsel(c, big, d, cg_fmul(c, d, cg_sigmoid(c, x), false));
}

LLVMValueRef cg_ew_dropout_grad(cg *c, int node, LLVMValueRef d, const cg_elt *at) {
    double p = c->g->nodes[node].fa[PN_FA_VALUE];
    LLVMValueRef keep = dropout_keep(c, node, iadd(c, at->base, at->idx), p);
    return fsel(c, keep, cg_fmul(c, d, F(c, p < 1 ? 1.0 / (1.0 - p) : 0.0), false), F(c, 0.0));
}

/* The unary activations and dropout: dx = their unary_grad, element by element. */
LLVMValueRef cg_bwd_unary(cg *c, int node, const bool *acc) {
    const pn_node *nd = &c->g->nodes[node];
    LLVMValueRef (*grad)(cg *, int, LLVMValueRef, const cg_elt *) = cg_op(nd->op)->unary_grad;
    PN_ASSERT(grad);
    cg_tk_begin(c, node, "bwd");
    LLVMValueRef y = ctxp(c, TK_Y), dy = ctxp(c, TK_DY), x = ctxp(c, TK_X), dx = ctxp(c, TK_DX);
    LLVMValueRef base = imul(c, ctxi(c, TK_S0), I(c, pn_shape_sample_elems(&nd->shape)));
    LLVMValueRef lo, hi;
    cg_split(c, numel(c, &nd->shape), &lo, &hi);
    cg_loop e;
    cg_loop_begin(c, &e, lo, hi, "e");
    LLVMValueRef d = cg_load(c, dy, e.iv);
    cg_elt at = {x, y, e.iv, base};
    cg_put(c, grad(c, node, d, &at), dx, e.iv, acc[0]);
    cg_loop_end(c, &e);
    return cg_tk_end(c);
}

/* dy times the derivative of a binary op with respect to operand k, given the other operand's
 * value o and operand k's own value x (read only for div's divisor: d(a/b)/db = -a/b^2). */
static LLVMValueRef binary_grad(cg *c, pn_op op, int k, LLVMValueRef d, LLVMValueRef o, LLVMValueRef x) {
    switch (op) {
    case PN_OP_SUB: return k ? LLVMBuildFNeg(c->b, d, "") : d;
    case PN_OP_MUL: return cg_fmul(c, d, o, false);
    case PN_OP_DIV: return k ? LLVMBuildFNeg(c->b, cg_fdiv(c, cg_fmul(c, d, o, false), cg_fmul(c, x, x, false)), "") : cg_fdiv(c, d, o);
    default: return d;
    }
}

/* add, sub, mul, div: operands broadcast to the output (both batched, or one a constant). */
LLVMValueRef cg_bwd_binary(cg *c, int node, const bool *acc) {
    const pn_graph *g = c->g;
    const pn_node *nd = &g->nodes[node];
    const pn_shape *os = &nd->shape;
    int64_t E = pn_shape_sample_elems(os);
    cg_tk_begin(c, node, "bwd");
    LLVMValueRef dy = ctxp(c, TK_DY);
    for (int k = 0; k < 2; k++) {
        if (!cg_grad_edge(g, node, k)) continue;
        const pn_node *other = &g->nodes[nd->in[1 - k]];
        const pn_shape *ks = &g->nodes[nd->in[k]].shape;
        LLVMValueRef dx = ctxp(c, TK_DX + k), ov = ctxp(c, TK_X + 1 - k), xv = ctxp(c, TK_X + k);
        bool own = nd->op == PN_OP_DIV && k == 1; /* the derivative reads operand k's value */
        /* Strides of operand k and of the other operand along the output's sample dims. */
        int64_t ks_str[PN_MAX_RANK] = {0}, os_str[PN_MAX_RANK] = {0};
        int R = os->rank;
        const pn_shape *ss[2] = {ks, &other->shape};
        int64_t *st[2] = {ks_str, os_str};
        bool other_const = other->op == PN_OP_CONST && other->shape.rank == 0; /* a scalar */
        for (int w = 0; w < 2; w++) {
            const pn_shape *s = ss[w];
            int rs = s->rank;
            int64_t own[PN_MAX_RANK], stride = 1;
            for (int sd = rs - 1; sd >= 0; sd--) {
                own[sd] = stride;
                if (!(sd == 0 && pn_shape_batched(s))) stride *= s->d[sd];
            }
            for (int d = 1; d < R; d++) {
                int sd = d - (R - rs);
                st[w][d] = (sd >= 0 && s->d[sd] != 1 && !(sd == 0 && pn_shape_batched(s))) ? own[sd] : 0;
            }
        }
        int64_t KE = pn_shape_sample_elems(ks), OE = other_const ? 0 : pn_shape_sample_elems(&other->shape);
        bool same = ks->rank == R && memcmp(ks->d, os->d, sizeof(int64_t) * (size_t)R) == 0;
        bool osame = other_const || (other->shape.rank == R && memcmp(other->shape.d, os->d, sizeof(int64_t) * (size_t)R) == 0);
        if (same && osame) {
            LLVMValueRef lo, hi;
            cg_split(c, numel(c, os), &lo, &hi);
            cg_loop e;
            cg_loop_begin(c, &e, lo, hi, "e");
            LLVMValueRef o = other_const ? F(c, other->fa[PN_FA_VALUE]) : cg_load(c, ov, e.iv);
            LLVMValueRef d = binary_grad(c, nd->op, k, cg_load(c, dy, e.iv), o, own ? cg_load(c, xv, e.iv) : NULL);
            cg_put(c, d, dx, e.iv, acc[k]);
            cg_loop_end(c, &e);
            continue;
        }
        /* Broadcast: per sample (both batched), sum over the output elements in order. */
        LLVMValueRef lo, hi;
        cg_split(c, c->n, &lo, &hi);
        cg_loop s;
        cg_loop_begin(c, &s, lo, hi, "s");
        LLVMValueRef dxs = cg_gep(c, dx, imul(c, s.iv, I(c, KE)));
        LLVMValueRef dys = cg_gep(c, dy, imul(c, s.iv, I(c, E)));
        LLVMValueRef ovs = other_const ? NULL : pn_shape_batched(&other->shape) ? cg_gep(c, ov, imul(c, s.iv, I(c, OE))) : ov;
        LLVMValueRef xvs = pn_shape_batched(ks) ? cg_gep(c, xv, imul(c, s.iv, I(c, KE))) : xv;
        if (!acc[k]) {
            cg_zero(c, dxs, I(c, 0), I(c, KE));
        }
        cg_loop e;
        cg_loop_begin(c, &e, I(c, 0), I(c, E), "e");
        LLVMValueRef rem = e.iv, ki = I(c, 0), oi = I(c, 0);
        for (int d = R - 1; d >= 1; d--) {
            LLVMValueRef idx = irem(c, rem, I(c, os->d[d]));
            rem = idiv(c, rem, I(c, os->d[d]));
            ki = iadd(c, ki, imul(c, idx, I(c, ks_str[d])));
            oi = iadd(c, oi, imul(c, idx, I(c, os_str[d])));
        }
        LLVMValueRef o = other_const ? F(c, other->fa[PN_FA_VALUE]) : cg_load(c, ovs, oi);
        LLVMValueRef d = binary_grad(c, nd->op, k, cg_load(c, dys, e.iv), o, own ? cg_load(c, xvs, ki) : NULL);
        cg_put(c, d, dxs, ki, true);
        cg_loop_end(c, &e);
        cg_loop_end(c, &s);
    }
    return cg_tk_end(c);
}

/* prelu: dx = x > 0 ? dy : w[ch] dy, split by elements; dw[ch] = the sum of dy x over x <= 0 in
 * this chunk, split by channels, each summed in sample order. */
LLVMValueRef cg_bwd_prelu(cg *c, int node, const bool *acc) {
    const pn_graph *g = c->g;
    const pn_node *nd = &g->nodes[node];
    const pn_shape *s = &nd->shape;
    int64_t C = s->d[1], inner = pn_shape_sample_elems(s) / (pn_shape_batched(s) ? 1 : s->d[0]) / C;
    cg_tk_begin(c, node, "bwd");
    LLVMValueRef dy = ctxp(c, TK_DY), x = ctxp(c, TK_X), dx = ctxp(c, TK_DX), gw = ctxp(c, TK_GPARAMS), w = c->params;
    LLVMValueRef outer = pn_shape_batched(s) ? c->n : I(c, s->d[0]);
    if (cg_grad_edge(g, node, 0)) {
        LLVMValueRef lo, hi;
        cg_split(c, numel(c, s), &lo, &hi);
        cg_loop e;
        cg_loop_begin(c, &e, lo, hi, "e");
        LLVMValueRef k = cg_load(c, w, irem(c, idiv(c, e.iv, I(c, inner)), I(c, C)));
        LLVMValueRef d = cg_load(c, dy, e.iv);
        cg_put(c, fsel(c, fgt0(c, cg_load(c, x, e.iv)), d, cg_fmul(c, d, k, false)), dx, e.iv, acc[0]);
        cg_loop_end(c, &e);
    }
    LLVMValueRef lo, hi;
    cg_split(c, I(c, C), &lo, &hi);
    cg_loop ch;
    cg_loop_begin(c, &ch, lo, hi, "ch");
    cg_loop smp;
    cg_loop_begin(c, &smp, I(c, 0), outer, "s");
    LLVMValueRef sum = cg_loop_acc(c, &smp, F(c, 0.0));
    LLVMValueRef row = iadd(c, imul(c, smp.iv, I(c, C * inner)), imul(c, ch.iv, I(c, inner)));
    cg_loop q;
    cg_loop_begin(c, &q, I(c, 0), I(c, inner), "q");
    LLVMValueRef part = cg_loop_acc(c, &q, sum);
    LLVMValueRef xv = cg_load(c, x, iadd(c, row, q.iv));
    LLVMValueRef term = fsel(c, fgt0(c, xv), F(c, 0.0), cg_fmul(c, cg_load(c, dy, iadd(c, row, q.iv)), xv, false));
    cg_loop_next(&q, part, cg_fadd(c, part, term, true));
    cg_loop_end(c, &q);
    cg_loop_next(&smp, sum, part);
    cg_loop_end(c, &smp);
    cg_store(c, sum, gw, ch.iv);
    cg_loop_end(c, &ch);
    return cg_tk_end(c);
}
