/* The backward kernels of conv2d, max/avg pooling and global average pooling (beside conv.c). */
#include "tk.h"
#include "../support/util.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* The bias gradient of channels o0 .. o0 + n - 1: each sums its P values of dy in order, a chain of
 * dependent additions; the n chains are interleaved, so that their additions overlap instead of
 * each waiting for the one before (the same additions, so the same bits, as one channel at a time).
 * The first sample writes, the others add. */
enum { BIAS_CHAINS = 8 };
static void bias_sums(cg *c, LLVMValueRef dys, LLVMValueRef gb, LLVMValueRef first, LLVMValueRef o0, int n, int64_t P) {
    LLVMValueRef sacc[BIAS_CHAINS], row[BIAS_CHAINS];
    for (int i = 0; i < n; i++) row[i] = cg_gep(c, dys, imul(c, iadd(c, o0, I(c, i)), I(c, P)));
    cg_loop q;
    cg_loop_begin(c, &q, I(c, 0), I(c, P), "q");
    for (int i = 0; i < n; i++) sacc[i] = cg_loop_acc(c, &q, F(c, 0.0));
    for (int i = 0; i < n; i++) cg_loop_next(&q, sacc[i], cg_fadd(c, sacc[i], cg_load(c, row[i], q.iv), true));
    cg_loop_end(c, &q);
    for (int i = 0; i < n; i++) {
        LLVMValueRef at = iadd(c, o0, I(c, i));
        LLVMValueRef prev = cg_load(c, gb, at);
        cg_store(c, fsel(c, first, sacc[i], cg_fadd(c, prev, sacc[i], false)), gb, at);
    }
}

/* ---- conv2d ------------------------------------------------------------------------------------
 * Per sample: colT[p][ci*KK + kh*KW + kw] = x[ci, oh*SH + kh - PH, ow*SW + kw - PW] (0 outside);
 * dW[O x CKK] += dy_s[O x P] colT; for dx, dcol[CKK x P] = W^T dy_s, then scattered back
 * (col2im). dW is split by tiles; dx by input channels, so each thread owns its dx planes. With
 * groups G, group g's weights [O/G][WK] (WK = C/G * KK) meet colT's columns of its channels and
 * dy's rows of its outputs: one GEMM per group for dW and for dcolT[P x CKK] = dy_s^T W, over the
 * same colT.
 *
 * colT's KW columns of one (p, ci, kh) are KW adjacent floats of x: one masked vector load and
 * store (KW <= VW), the lanes outside the plane zero. With stride 1 along the width (and one
 * group, and rows of at most 8 vectors), dx is dcol = W^T dy_s, W read down its columns, and a row
 * of dx takes its terms of dcol in registers, a vector at a time, then is stored once. The scalar
 * twins: colT gathered element by element where KW > VW, and dcolT scattered element by element
 * for other strides and for groups (tests: test_grad's test_conv_wide_kernel, strided and grouped
 * convolutions). Every dx element takes its additions in the same order either way, and dcol's
 * sums over o run in the same order as dcolT's: the same bits. */

LLVMValueRef cg_bwd_conv(cg *c, int node, const bool *acc) {
    const pn_graph *g = c->g;
    const pn_node *nd = &g->nodes[node];
    const pn_shape *xs = &g->nodes[nd->in[0]].shape;
    int64_t Ci = xs->d[1], H = xs->d[2], W = xs->d[3], O = nd->shape.d[1], OH = nd->shape.d[2], OW = nd->shape.d[3];
    int64_t KH = nd->ia[PN_CONV_KH], KW = nd->ia[PN_CONV_KW], SH = nd->ia[PN_CONV_SH], SW = nd->ia[PN_CONV_SW];
    int64_t PH = nd->ia[PN_CONV_PH], PW = nd->ia[PN_CONV_PW];
    int64_t KK = KH * KW, CKK = Ci * KK, P = OH * OW, G = nd->ia[PN_CONV_GROUPS], Og = O / G, WK = CKK / G;
    bool need_dx = cg_grad_edge(g, node, 0);
    cg_tk_begin(c, node, "bwd");
    cg_need_scratch(c, (P * CKK * 2 + P * O) * 4);
    LLVMValueRef colT = c->scratch, dcolT = cg_gep(c, c->scratch, I(c, P * CKK)),
                 dyT = cg_gep(c, c->scratch, I(c, 2 * P * CKK));
    LLVMValueRef dy = ctxp(c, TK_DY), x = ctxp(c, TK_X), dx = ctxp(c, TK_DX), gw = ctxp(c, TK_GPARAMS);
    LLVMValueRef clo, chi;
    cg_split(c, I(c, Ci), &clo, &chi);
    cg_loop s;
    cg_loop_begin(c, &s, I(c, 0), c->n, "s");
    LLVMValueRef xs0 = cg_gep(c, x, imul(c, s.iv, I(c, Ci * H * W)));
    LLVMValueRef dys = cg_gep(c, dy, imul(c, s.iv, I(c, O * P)));
    /* colT, by this thread in full: rows p = (oh, ow), columns j = (ci, kh, kw), zero outside.
     * With KW <= VW a (ci, kh) row's KW floats go at once, masked to the columns inside; else the
     * scalar twin, element by element. */
    bool runs = SW == 1;
    int VW0, MR0, NV0;
    cg_gemm_shape(c, &VW0, &MR0, &NV0);
    bool vec = KW <= VW0;
    LLVMTypeRef vt = LLVMVectorType(c->f32, (unsigned)VW0);
    LLVMValueRef store = cg_mask_const(c, VW0, (int)KW), lane = cg_lane_index(c, VW0);
    cg_loop ohl;
    cg_loop_begin(c, &ohl, I(c, 0), I(c, OH), "oh");
    cg_loop owl;
    cg_loop_begin(c, &owl, I(c, 0), I(c, OW), "ow");
    LLVMValueRef crow = cg_gep(c, colT, imul(c, iadd(c, imul(c, ohl.iv, I(c, OW)), owl.iv), I(c, CKK)));
    LLVMValueRef iw0 = iadd(c, imul(c, owl.iv, I(c, SW)), I(c, -PW)), cols = NULL;
    if (vec) { /* lanes l < KW with 0 <= iw0 + l < W */
        LLVMValueRef at = LLVMBuildAdd(c->b, cg_splat(c, iw0, VW0), lane, "");
        cols = LLVMBuildAnd(c->b, LLVMBuildICmp(c->b, LLVMIntSGE, at, cg_splat(c, I(c, 0), VW0), ""),
                            LLVMBuildICmp(c->b, LLVMIntSLT, at, cg_splat(c, I(c, W), VW0), ""), "");
        cols = LLVMBuildAnd(c->b, cols, store, "");
    }
    cg_loop cil;
    cg_loop_begin(c, &cil, I(c, 0), I(c, Ci), "ci");
    LLVMValueRef xplane = cg_gep(c, xs0, imul(c, cil.iv, I(c, H * W)));
    LLVMValueRef ccol = cg_gep(c, crow, imul(c, cil.iv, I(c, KK)));
    for (int64_t kh = 0; kh < KH; kh++) {
        LLVMValueRef ih = iadd(c, imul(c, ohl.iv, I(c, SH)), I(c, kh - PH));
        LLVMValueRef hok = LLVMBuildAnd(c->b, LLVMBuildICmp(c->b, LLVMIntSGE, ih, I(c, 0), ""),
                                        LLVMBuildICmp(c->b, LLVMIntSLT, ih, I(c, H), ""), "");
        if (vec) {
            LLVMValueRef m = LLVMBuildAnd(c->b, cols, cg_splat(c, hok, VW0), "");
            /* (row 0 where ih is outside; iw0 < 0 at the left edge: a plain GEP, its lanes before
             * the row masked off) */
            LLVMValueRef idx = iadd(c, imul(c, LLVMBuildSelect(c->b, hok, ih, I(c, 0), ""), I(c, W)), iw0);
            LLVMValueRef src = LLVMBuildGEP2(c->b, c->f32, xplane, &idx, 1, "");
            cg_masked_store(c, cg_masked_load(c, vt, src, m), cg_gep(c, ccol, I(c, kh * KW)), store);
            continue;
        }
        for (int64_t kw = 0; kw < KW; kw++) {
            LLVMValueRef iw = iadd(c, iw0, I(c, kw));
            LLVMValueRef inb = LLVMBuildAnd(c->b, hok, LLVMBuildAnd(c->b, LLVMBuildICmp(c->b, LLVMIntSGE, iw, I(c, 0), ""),
                                                               LLVMBuildICmp(c->b, LLVMIntSLT, iw, I(c, W), ""), ""), "");
            LLVMValueRef idx = LLVMBuildSelect(c->b, inb, iadd(c, imul(c, ih, I(c, W)), iw), I(c, 0), "");
            cg_store(c, fsel(c, inb, cg_load(c, xplane, idx), F(c, 0.0)), ccol, I(c, kh * KW + kw));
        }
    }
    cg_loop_end(c, &cil);
    cg_loop_end(c, &owl);
    cg_loop_end(c, &ohl);
    /* dW += dy_s colT (the first sample writes). */
    LLVMValueRef first = LLVMBuildICmp(c->b, LLVMIntEQ, s.iv, I(c, 0), "");
    for (int a = 0; a < 2; a++) {
        cg_if f;
        cg_if_begin(c, &f, a == 0 ? first : LLVMBuildNot(c->b, first, ""));
        if (G == 1) {
            cg_tk_gemm(c, I(c, O), I(c, 0), I(c, CKK), I(c, P), dys, I(c, P), colT, CKK, gw, I(c, CKK), a == 1, true, NULL);
        } else {
            cg_loop gl;
            cg_loop_begin(c, &gl, I(c, 0), I(c, G), "group");
            cg_tk_gemm(c, I(c, Og), I(c, 0), I(c, WK), I(c, P), cg_gep(c, dys, imul(c, gl.iv, I(c, Og * P))), I(c, P),
                       cg_gep(c, colT, imul(c, gl.iv, I(c, WK))), CKK, cg_gep(c, gw, imul(c, gl.iv, I(c, Og * WK))), I(c, WK),
                       a == 1, true, NULL);
            cg_loop_end(c, &gl);
        }
        cg_if_end(c, &f);
    }
    if (nd->ia[PN_CONV_BIAS]) {
        /* This thread's channels, BIAS_CHAINS at a time, then one at a time. */
        LLVMValueRef gb = cg_gep(c, gw, I(c, align16(O * WK)));
        LLVMValueRef lo, hi;
        cg_split(c, I(c, O), &lo, &hi);
        LLVMValueRef groups = idiv(c, isub(c, hi, lo), I(c, BIAS_CHAINS));
        cg_loop og;
        cg_loop_begin(c, &og, I(c, 0), groups, "og");
        bias_sums(c, dys, gb, first, iadd(c, lo, imul(c, og.iv, I(c, BIAS_CHAINS))), BIAS_CHAINS, P);
        cg_loop_end(c, &og);
        cg_loop o;
        cg_loop_begin(c, &o, iadd(c, lo, imul(c, groups, I(c, BIAS_CHAINS))), hi, "o");
        bias_sums(c, dys, gb, first, o.iv, 1, P);
        cg_loop_end(c, &o);
    }
    if (need_dx) {
        /* With runs (and one group): dcol's rows of this thread's channels, W^T dy_s with W read
         * down its columns. Else dyT[p][o], then dcolT for this thread's channels' columns. */
        int VW, MR, NV;
        cg_gemm_shape(c, &VW, &MR, &NV);
        int64_t nvec = (W + VW - 1) / VW;
        bool rows = runs && G == 1 && nvec <= 8;
        if (rows) {
            cg_tk_gemm_at(c, imul(c, isub(c, chi, clo), I(c, KK)), I(c, 0), I(c, P), I(c, O), cg_gep(c, c->params, imul(c, clo, I(c, KK))),
                          CKK, dys, P, cg_gep(c, dcolT, imul(c, clo, I(c, KK * P))), I(c, P), false, NULL);
        } else if (G == 1) {
            cg_tk_transpose(c, dyT, I(c, O), dys, I(c, O), P);
            cg_tk_gemm(c, I(c, P), imul(c, clo, I(c, KK)), imul(c, chi, I(c, KK)), I(c, O), dyT, I(c, O), c->params, CKK, dcolT,
                 I(c, CKK), false, false, NULL);
        } else {
            /* group g: this thread's columns of [g WK, (g + 1) WK), relative to the group */
            cg_tk_transpose(c, dyT, I(c, O), dys, I(c, O), P);
            cg_loop gl;
            cg_loop_begin(c, &gl, I(c, 0), I(c, G), "group");
            LLVMValueRef g0 = imul(c, gl.iv, I(c, WK));
            LLVMValueRef n0 = cg_smin(c, cg_smax(c, isub(c, imul(c, clo, I(c, KK)), g0), I(c, 0)), I(c, WK));
            LLVMValueRef n1 = cg_smin(c, cg_smax(c, isub(c, imul(c, chi, I(c, KK)), g0), n0), I(c, WK));
            cg_tk_gemm(c, I(c, P), n0, n1, I(c, Og), cg_gep(c, dyT, imul(c, gl.iv, I(c, Og))), I(c, O),
                       cg_gep(c, c->params, imul(c, gl.iv, I(c, Og * WK))), WK, cg_gep(c, dcolT, g0), I(c, CKK), false, false,
                       NULL);
            cg_loop_end(c, &gl);
        }
        LLVMValueRef dxs = cg_gep(c, dx, imul(c, s.iv, I(c, Ci * H * W)));
        if (rows) {
            /* col2im a row of dx at a time, in registers: row ih takes, for oh ascending (kh
             * descending, oh*SH + kh - PH = ih) and kw ascending, dcol's run of row (ci, kh, kw)
             * at oh, lanes iw = ow + kw - PW: each element's additions in the scalar loop's order,
             * the row loaded (or zero) and stored once. */
            LLVMTypeRef vt = LLVMVectorType(c->f32, (unsigned)VW);
            cg_loop cc;
            cg_loop_begin(c, &cc, clo, chi, "ci");
            cg_loop ihl;
            cg_loop_begin(c, &ihl, I(c, 0), I(c, H), "ih");
            LLVMValueRef drow = cg_gep(c, dxs, iadd(c, imul(c, cc.iv, I(c, H * W)), imul(c, ihl.iv, I(c, W))));
            LLVMValueRef accv[8], rmask[8];
            for (int64_t v = 0; v < nvec; v++) {
                rmask[v] = cg_mask_const(c, VW, (int)(W - v * VW < VW ? W - v * VW : VW));
                accv[v] = acc[0] ? cg_masked_load(c, vt, cg_gep(c, drow, I(c, v * VW)), rmask[v]) : LLVMConstNull(vt);
            }
            for (int64_t kh = KH - 1; kh >= 0; kh--) {
                LLVMValueRef t = iadd(c, ihl.iv, I(c, PH - kh)); /* oh * SH */
                LLVMValueRef oh = idiv(c, cg_smax(c, t, I(c, 0)), I(c, SH));
                LLVMValueRef ok = LLVMBuildAnd(c->b, LLVMBuildICmp(c->b, LLVMIntSGE, t, I(c, 0), ""),
                                               LLVMBuildICmp(c->b, LLVMIntSLT, oh, I(c, OH), ""), "");
                if (SH > 1) ok = LLVMBuildAnd(c->b, ok, LLVMBuildICmp(c->b, LLVMIntEQ, irem(c, cg_smax(c, t, I(c, 0)), I(c, SH)), I(c, 0), ""), "");
                oh = cg_smin(c, oh, I(c, OH - 1));
                LLVMValueRef okv = cg_splat(c, ok, VW);
                for (int64_t kw = 0; kw < KW; kw++) {
                    /* lanes iw of vector v with ow = iw - kw + PW in [0, OW) and iw < W */
                    LLVMValueRef src = cg_gep(c, dcolT, iadd(c, imul(c, iadd(c, imul(c, cc.iv, I(c, KK)), I(c, kh * KW + kw)), I(c, P)),
                                                           iadd(c, imul(c, oh, I(c, OW)), I(c, PW - kw))));
                    for (int64_t v = 0; v < nvec; v++) {
                        LLVMValueRef m[64];
                        int any = 0;
                        for (int l = 0; l < VW; l++) {
                            int64_t iw = v * VW + l, ow = iw - kw + PW;
                            int in = iw < W && ow >= 0 && ow < OW;
                            any |= in;
                            m[l] = LLVMConstInt(c->i1, (unsigned long long)in, 0);
                        }
                        if (!any) continue;
                        LLVMValueRef mk = LLVMConstVector(m, (unsigned)VW);
                        LLVMValueRef val = cg_masked_load(c, vt, cg_gep(c, src, I(c, v * VW)), mk);
                        LLVMValueRef take = LLVMBuildAnd(c->b, mk, okv, "");
                        accv[v] = cg_select(c, take, cg_fadd(c, accv[v], val, false), accv[v]);
                    }
                }
            }
            for (int64_t v = 0; v < nvec; v++) cg_masked_store(c, accv[v], cg_gep(c, drow, I(c, v * VW)), rmask[v]);
            cg_loop_end(c, &ihl);
            cg_loop_end(c, &cc);
        } else {
            if (!acc[0]) {
                cg_zero(c, dxs, imul(c, clo, I(c, H * W)), imul(c, chi, I(c, H * W)));
            }
            /* col2im: for each (oh, kh) row in range and each kw, the ow range that lands inside. */
            cg_loop cc;
            cg_loop_begin(c, &cc, clo, chi, "ci");
            LLVMValueRef dplane = cg_gep(c, dxs, imul(c, cc.iv, I(c, H * W)));
            LLVMValueRef dcol = cg_gep(c, dcolT, imul(c, cc.iv, I(c, KK)));
            cg_loop oh2;
            cg_loop_begin(c, &oh2, I(c, 0), I(c, OH), "oh2");
            for (int64_t kh = 0; kh < KH; kh++) {
                LLVMValueRef ih = iadd(c, imul(c, oh2.iv, I(c, SH)), I(c, kh - PH));
                cg_if f;
                cg_if_begin(c, &f, LLVMBuildAnd(c->b, LLVMBuildICmp(c->b, LLVMIntSGE, ih, I(c, 0), ""),
                                                LLVMBuildICmp(c->b, LLVMIntSLT, ih, I(c, H), ""), ""));
                LLVMValueRef drow = cg_gep(c, dplane, imul(c, ih, I(c, W)));
                LLVMValueRef srow = cg_gep(c, dcol, imul(c, imul(c, oh2.iv, I(c, OW)), I(c, CKK)));
                for (int64_t kw = 0; kw < KW; kw++) {
                    int64_t lo = PW - kw > 0 ? (PW - kw + SW - 1) / SW : 0;
                    int64_t hi = (W - 1 + PW - kw) >= 0 ? (W - 1 + PW - kw) / SW + 1 : 0;
                    if (hi > OW) hi = OW;
                    if (lo >= hi) continue;
                    cg_loop ow2;
                    cg_loop_begin(c, &ow2, I(c, lo), I(c, hi), "ow2");
                    LLVMValueRef iw = iadd(c, imul(c, ow2.iv, I(c, SW)), I(c, kw - PW));
                    cg_put(c, cg_load(c, srow, iadd(c, imul(c, ow2.iv, I(c, CKK)), I(c, kh * KW + kw))), drow, iw, true);
                    cg_loop_end(c, &ow2);
                }
                cg_if_end(c, &f);
            }
            cg_loop_end(c, &oh2);
            cg_loop_end(c, &cc);
        }
    }
    cg_loop_end(c, &s);
    return cg_tk_end(c);
}

/* ---- pooling ---------------------------------------------------------------------------------- */

/* Shuffle mask of lanes first, first + step, ... (n of them), as i32 constants. */
static LLVMValueRef lanes(cg *c, int n, int first, int step) {
    LLVMValueRef l[64];
    for (int i = 0; i < n; i++) l[i] = LLVMConstInt(c->i32, (unsigned long long)(first + i * step), 0);
    return LLVMConstVector(l, (unsigned)n);
}

/* Max-pool 2x2, stride 2, over a plane it tiles exactly (H = 2 OH, W = 2 OW): the scalar loop's
 * routing, VW windows at a time. A window row's two columns are the even and odd lanes of 2 VW
 * floats of x; each window's first element equal to its stored maximum takes dy, in the scalar
 * order (row 0 column 0, row 0 column 1, row 1 column 0, row 1 column 1), the others 0 (or + 0
 * with acc), so the values are the scalar loop's. */
static void pool2_bwd_vec(cg *c, LLVMValueRef xp, LLVMValueRef yp, LLVMValueRef dyp, LLVMValueRef dxp, int64_t OH,
                          int64_t OW, bool acc, bool relu) {
    int VW, MR, NV;
    cg_gemm_shape(c, &VW, &MR, &NV);
    int64_t W = 2 * OW;
    LLVMTypeRef vt = LLVMVectorType(c->f32, (unsigned)VW), vt2 = LLVMVectorType(c->f32, (unsigned)(2 * VW));
    LLVMValueRef even = lanes(c, VW, 0, 2), odd = lanes(c, VW, 1, 2), zero = LLVMConstNull(vt);
    LLVMValueRef inter[64]; /* even and odd lanes back into one row: lane 2i from a[i], 2i + 1 from b[i] */
    for (int i = 0; i < 2 * VW; i++) inter[i] = LLVMConstInt(c->i32, (unsigned long long)(i % 2 ? VW + i / 2 : i / 2), 0);
    LLVMValueRef weave = LLVMConstVector(inter, (unsigned)(2 * VW));
    cg_loop oh;
    cg_loop_begin(c, &oh, I(c, 0), I(c, OH), "oh");
    for (int64_t ob = 0; ob < OW; ob += VW) {
        int n = (int)(OW - ob < VW ? OW - ob : VW);
        LLVMValueRef m1 = cg_mask_const(c, VW, n), m2 = cg_mask_const(c, 2 * VW, 2 * n);
        LLVMValueRef at = iadd(c, imul(c, oh.iv, I(c, OW)), I(c, ob));
        LLVMValueRef d = cg_masked_load(c, vt, cg_gep(c, dyp, at), m1);
        LLVMValueRef m = cg_masked_load(c, vt, cg_gep(c, yp, at), m1);
        if (relu) d = cg_select(c, LLVMBuildFCmp(c->b, LLVMRealOGT, m, zero, ""), d, zero);
        LLVMValueRef row[2], v[4], found = NULL;
        for (int kh = 0; kh < 2; kh++) {
            row[kh] = iadd(c, imul(c, iadd(c, imul(c, oh.iv, I(c, 2)), I(c, kh)), I(c, W)), I(c, 2 * ob));
            LLVMValueRef xr = cg_masked_load(c, vt2, cg_gep(c, xp, row[kh]), m2);
            LLVMValueRef cols[2] = {LLVMBuildShuffleVector(c->b, xr, xr, even, ""), LLVMBuildShuffleVector(c->b, xr, xr, odd, "")};
            for (int kw = 0; kw < 2; kw++) {
                LLVMValueRef eq = LLVMBuildFCmp(c->b, LLVMRealOEQ, cols[kw], m, "");
                LLVMValueRef hit = found ? LLVMBuildAnd(c->b, eq, LLVMBuildNot(c->b, found, ""), "") : eq;
                found = found ? LLVMBuildOr(c->b, found, eq, "") : eq;
                v[kh * 2 + kw] = cg_select(c, hit, d, zero);
            }
        }
        for (int kh = 0; kh < 2; kh++) {
            LLVMValueRef out = LLVMBuildShuffleVector(c->b, v[kh * 2], v[kh * 2 + 1], weave, "");
            LLVMValueRef p = cg_gep(c, dxp, row[kh]);
            if (acc) out = LLVMBuildFAdd(c->b, cg_masked_load(c, vt2, p, m2), out, "");
            cg_masked_store(c, out, p, m2);
        }
    }
    cg_loop_end(c, &oh);
}

LLVMValueRef cg_bwd_pool(cg *c, int node, const bool *acc) {
    const pn_graph *g = c->g;
    const pn_node *nd = &g->nodes[node];
    const pn_shape *xs = &g->nodes[nd->in[0]].shape;
    int64_t C = xs->d[1], H = xs->d[2], W = xs->d[3], OH = nd->shape.d[2], OW = nd->shape.d[3];
    int64_t KH = nd->ia[PN_POOL_KH], KW = nd->ia[PN_POOL_KW], SH = nd->ia[PN_POOL_SH], SW = nd->ia[PN_POOL_SW];
    int64_t PH = nd->ia[PN_POOL_PH], PW = nd->ia[PN_POOL_PW];
    bool is_max = nd->op == PN_OP_MAXPOOL2D;
    /* The relu before it too (plan_train.c): a routed dy where the value it reaches is > 0, else 0
     * (what the relu's backward would make of the pool's), into the convolution's gradient. */
    bool relu = is_max && g->tplan.pool_bwd[nd->in[0]];
    cg_tk_begin(c, node, "bwd");
    LLVMValueRef dy = ctxp(c, TK_DY), x = ctxp(c, TK_X), dx = ctxp(c, TK_DX);
    LLVMValueRef lo, hi;
    cg_split(c, imul(c, c->n, I(c, C)), &lo, &hi);
    cg_loop pl;
    cg_loop_begin(c, &pl, lo, hi, "plane");
    LLVMValueRef xp = cg_gep(c, x, imul(c, pl.iv, I(c, H * W))), dxp = cg_gep(c, dx, imul(c, pl.iv, I(c, H * W)));
    LLVMValueRef dyp = cg_gep(c, dy, imul(c, pl.iv, I(c, OH * OW)));
    LLVMValueRef yp = cg_gep(c, ctxp(c, TK_Y), imul(c, pl.iv, I(c, OH * OW)));
    bool tiled = is_max && SH == KH && SW == KW && PH == 0 && PW == 0 && KH * KW <= 64;
    if (!acc[0] && (!tiled || H != OH * KH || W != OW * KW)) {
        cg_zero(c, dxp, I(c, 0), I(c, H * W));
    }
    if (tiled && KH == 2 && KW == 2 && H == 2 * OH && W == 2 * OW && c->x86) {
        pool2_bwd_vec(c, xp, yp, dyp, dxp, OH, OW, acc[0], relu);
    } else if (tiled) {
        /* Windows tile the plane: each window's maximum takes dy, the rest of it 0 (or +0). */
        cg_loop oh;
        cg_loop_begin(c, &oh, I(c, 0), I(c, OH), "oh");
        cg_loop ow;
        cg_loop_begin(c, &ow, I(c, 0), I(c, OW), "ow");
        LLVMValueRef d = cg_load(c, dyp, iadd(c, imul(c, oh.iv, I(c, OW)), ow.iv));
        LLVMValueRef corner = iadd(c, imul(c, oh.iv, I(c, KH * W)), imul(c, ow.iv, I(c, KW)));
        /* The forward pass stored the window's maximum: the first element equal to it takes dy
         * (a NaN maximum routes nothing). */
        LLVMValueRef m = cg_load(c, yp, iadd(c, imul(c, oh.iv, I(c, OW)), ow.iv));
        if (relu) d = fsel(c, LLVMBuildFCmp(c->b, LLVMRealOGT, m, F(c, 0.0), ""), d, F(c, 0.0));
        LLVMValueRef found = LLVMConstInt(c->i1, 0, 0);
        for (int64_t k = 0; k < KH * KW; k++) {
            LLVMValueRef at = iadd(c, corner, I(c, (k / KW) * W + k % KW));
            LLVMValueRef eq = LLVMBuildFCmp(c->b, LLVMRealOEQ, cg_load(c, xp, at), m, "");
            LLVMValueRef hit = LLVMBuildAnd(c->b, eq, LLVMBuildNot(c->b, found, ""), "");
            found = LLVMBuildOr(c->b, found, eq, "");
            cg_put(c, fsel(c, hit, d, F(c, 0.0)), dxp, at, acc[0]);
        }
        cg_loop_end(c, &ow);
        cg_loop_end(c, &oh);
    }
    for (int64_t oh = 0; oh < OH && !tiled; oh++) {
        cg_loop ow;
        cg_loop_begin(c, &ow, I(c, 0), I(c, OW), "ow");
        LLVMValueRef d = cg_load(c, dyp, iadd(c, I(c, oh * OW), ow.iv));
        LLVMValueRef best = F(c, -INFINITY), bidx = I(c, -1);
        for (int64_t kh = 0; kh < KH; kh++) {
            int64_t ih = oh * SH + kh - PH;
            if (ih < 0 || ih >= H) continue;
            for (int64_t kw = 0; kw < KW; kw++) {
                LLVMValueRef iw = iadd(c, imul(c, ow.iv, I(c, SW)), I(c, kw - PW));
                LLVMValueRef inb = LLVMBuildAnd(c->b, LLVMBuildICmp(c->b, LLVMIntSGE, iw, I(c, 0), ""),
                                                LLVMBuildICmp(c->b, LLVMIntSLT, iw, I(c, W), ""), "");
                LLVMValueRef idx = iadd(c, I(c, ih * W), LLVMBuildSelect(c->b, inb, iw, I(c, 0), ""));
                if (is_max) {
                    LLVMValueRef v = cg_load(c, xp, idx);
                    /* The first maximum in window order (NaN wins, as in PyTorch). */
                    LLVMValueRef better = LLVMBuildAnd(c->b, inb,
                        LLVMBuildOr(c->b, LLVMBuildFCmp(c->b, LLVMRealOGT, v, best, ""),
                                    LLVMBuildAnd(c->b, LLVMBuildFCmp(c->b, LLVMRealUNO, v, v, ""),
                                                 LLVMBuildFCmp(c->b, LLVMRealORD, best, best, ""), ""), ""), "");
                    best = fsel(c, better, v, best);
                    bidx = LLVMBuildSelect(c->b, better, idx, bidx, "");
                } else {
                    cg_if f;
                    cg_if_begin(c, &f, inb);
                    cg_put(c, cg_fmul(c, d, F(c, 1.0 / (double)(KH * KW)), false), dxp, idx, true);
                    cg_if_end(c, &f);
                }
            }
        }
        if (is_max) {
            cg_if f;
            cg_if_begin(c, &f, LLVMBuildICmp(c->b, LLVMIntSGE, bidx, I(c, 0), ""));
            if (relu) d = fsel(c, LLVMBuildFCmp(c->b, LLVMRealOGT, best, F(c, 0.0), ""), d, F(c, 0.0));
            cg_put(c, d, dxp, bidx, true);
            cg_if_end(c, &f);
        }
        cg_loop_end(c, &ow);
    }
    cg_loop_end(c, &pl);
    return cg_tk_end(c);
}

LLVMValueRef cg_bwd_global_avgpool(cg *c, int node, const bool *acc) {
    const pn_graph *g = c->g;
    const pn_shape *xs = &g->nodes[g->nodes[node].in[0]].shape;
    int64_t HW = xs->d[2] * xs->d[3];
    cg_tk_begin(c, node, "bwd");
    LLVMValueRef dy = ctxp(c, TK_DY), dx = ctxp(c, TK_DX);
    LLVMValueRef lo, hi;
    cg_split(c, numel(c, xs), &lo, &hi);
    cg_loop e;
    cg_loop_begin(c, &e, lo, hi, "e");
    cg_put(c, cg_fmul(c, cg_load(c, dy, idiv(c, e.iv, I(c, HW))), F(c, 1.0 / (double)HW), false), dx, e.iv, acc[0]);
    cg_loop_end(c, &e);
    return cg_tk_end(c);
}
