/* Kernels for conv2d (direct, NCHW), max/avg pooling and global average pooling. Work is split
 * over (sample, channel) planes; each output sums its taps in a fixed order. */
#include "cg.h"
#include "../support/util.h"

#include <stdio.h>
#include <stdlib.h>

/* Valid output range [lo, hi) along one axis for tap k: 0 <= o*s + k - p < size. */
static void tap_range(cg *c, LLVMValueRef k, int64_t s, int64_t p, int64_t size, int64_t osize, LLVMValueRef *lo,
                      LLVMValueRef *hi) {
    LLVMValueRef a = LLVMBuildSub(c->b, cg_i64(c, p), k, ""); /* o*s >= p - k */
    LLVMValueRef l = LLVMBuildSDiv(c->b, LLVMBuildAdd(c->b, a, cg_i64(c, s - 1), ""), cg_i64(c, s), "");
    *lo = cg_smax(c, l, cg_i64(c, 0));
    LLVMValueRef num = LLVMBuildSub(c->b, cg_i64(c, size - 1 + p), k, ""); /* o*s <= size-1+p-k */
    LLVMValueRef h = LLVMBuildAdd(c->b, LLVMBuildSDiv(c->b, num, cg_i64(c, s), ""), cg_i64(c, 1), "");
    h = cg_select(c, LLVMBuildICmp(c->b, LLVMIntSLT, num, cg_i64(c, 0), ""), cg_i64(c, 0), h);
    *hi = cg_smin(c, h, cg_i64(c, osize));
}

/* conv2d with stride 1 and no padding, straight from the input: on the grid q = oh*W + ow (the
 * input's width), row k = (ch, kh, kw) of the GEMM's B is the input shifted by ch*H*W + kh*W + kw,
 * so each k step loads NR contiguous floats from a constant-offset table, with no im2col. Columns
 * with ow >= OW are computed and dropped by masked stores into the NCHW output. */
static LLVMValueRef gen_conv2d_shifted(cg *c, int node) {
    const pn_node *nd = &c->g->nodes[node];
    const pn_shape *xs = &c->g->nodes[nd->in[0]].shape;
    int64_t C = xs->d[1], H = xs->d[2], W = xs->d[3];
    int64_t OC = nd->ia[PN_CONV_OUT], KH = nd->ia[PN_CONV_KH], KW = nd->ia[PN_CONV_KW];
    int64_t OH = nd->shape.d[2], OW = nd->shape.d[3], K = C * KH * KW;
    int VW, MR, NV;
    cg_gemm_shape(c, &VW, &MR, &NV);
    int64_t NR = (int64_t)VW * NV, Qmax = (OH - 1) * W + OW, NPQ = (Qmax + NR - 1) / NR;
    /* The offsets of B's rows. */
    LLVMValueRef *ov = pn_xmalloc(sizeof(LLVMValueRef) * (size_t)K);
    for (int64_t ch = 0, k = 0; ch < C; ch++)
        for (int64_t kh = 0; kh < KH; kh++)
            for (int64_t kw = 0; kw < KW; kw++) ov[k++] = cg_i64(c, ch * H * W + kh * W + kw);
    LLVMValueRef offs = cg_offset_table(c, node, ov, K);
    LLVMTypeRef vt = LLVMVectorType(c->f32, (unsigned)VW);
    LLVMValueRef fn = cg_kernel_begin(c, node, 1);
    LLVMValueRef out = LLVMGetParam(fn, 0), in = LLVMGetParam(fn, 1);
    LLVMValueRef wts = c->params;
    LLVMValueRef bias = cg_conv_bias(c, node);
    LLVMValueRef N = pn_shape_batched(xs) ? c->n : cg_i64(c, xs->d[0]);
    /* Work units: (sample, pixel panel, channel group); @shard(features, K) makes K channel
     * groups, each a slice of the output channels. */
    int64_t NOT = (OC + MR - 1) / MR, KG = nd->shard > 1 ? (nd->shard < NOT ? nd->shard : NOT) : 1;
    LLVMValueRef lo, hi;
    cg_split(c, LLVMBuildMul(c->b, N, cg_i64(c, NPQ * KG), ""), &lo, &hi);
    cg_loop u;
    cg_loop_begin(c, &u, lo, hi, "unit");
    LLVMValueRef kg = LLVMBuildSRem(c->b, u.iv, cg_i64(c, KG), "kg");
    LLVMValueRef up = LLVMBuildSDiv(c->b, u.iv, cg_i64(c, KG), "");
    LLVMValueRef smp = LLVMBuildSDiv(c->b, up, cg_i64(c, NPQ), "s");
    LLVMValueRef pp = LLVMBuildSRem(c->b, up, cg_i64(c, NPQ), "pp");
    LLVMValueRef q0 = LLVMBuildMul(c->b, pp, cg_i64(c, NR), "q0");
    LLVMValueRef ot_lo = LLVMBuildSDiv(c->b, LLVMBuildMul(c->b, kg, cg_i64(c, NOT), ""), cg_i64(c, KG), "");
    LLVMValueRef ot_hi = LLVMBuildSDiv(c->b, LLVMBuildMul(c->b, LLVMBuildAdd(c->b, kg, cg_i64(c, 1), ""), cg_i64(c, NOT), ""), cg_i64(c, KG), "");
    LLVMValueRef base = cg_gep(c, in, LLVMBuildAdd(c->b, LLVMBuildMul(c->b, smp, cg_i64(c, C * H * W), ""), q0, ""));
    /* The last panel reads only the columns it needs: never past the sample's input. */
    LLVMValueRef is_last = LLVMBuildICmp(c->b, LLVMIntEQ, pp, cg_i64(c, NPQ - 1), "");
    int last_valid = (int)(Qmax - (NPQ - 1) * NR);
    LLVMValueRef mask[8];
    cg_panel_masks(c, is_last, last_valid, mask);
    cg_grid_out go;
    cg_grid_out_init(c, &go, q0, W, OW, Qmax, NV);
    cg_loop ot;
    cg_loop_begin(c, &ot, ot_lo, ot_hi, "ot");
    LLVMValueRef oc0 = LLVMBuildMul(c->b, ot.iv, cg_i64(c, MR), "");
    LLVMValueRef arow[16], init[16][8], acc[16][8], ocs[16];
    for (int i = 0; i < MR; i++) {
        ocs[i] = cg_smin(c, LLVMBuildAdd(c->b, oc0, cg_i64(c, i), ""), cg_i64(c, OC - 1));
        arow[i] = cg_gep(c, wts, LLVMBuildMul(c->b, ocs[i], cg_i64(c, K), ""));
        for (int q = 0; q < NV; q++) init[i][q] = LLVMConstNull(vt);
    }
    cg_micro_tile_ex(c, arow, MR, base, NR, offs, mask, cg_i64(c, 0), cg_i64(c, K), init, acc);
    for (int i = 0; i < MR; i++) {
        LLVMValueRef oc = LLVMBuildAdd(c->b, oc0, cg_i64(c, i), "");
        cg_if st;
        cg_if_begin(c, &st, LLVMBuildICmp(c->b, LLVMIntSLT, oc, cg_i64(c, OC), ""));
        LLVMValueRef oplane = cg_gep(c, out, LLVMBuildMul(c->b, LLVMBuildAdd(c->b, LLVMBuildMul(c->b, smp, cg_i64(c, OC), ""), oc, ""),
                                                          cg_i64(c, OH * OW), ""));
        LLVMValueRef bv = bias ? cg_splat(c, cg_load(c, bias, ocs[i]), VW) : LLVMConstNull(vt);
        for (int q = 0; q < NV; q++) cg_grid_out_store(c, &go, q, cg_epilogue(c, node, cg_fadd(c, acc[i][q], bv, false)), oplane);
        cg_if_end(c, &st);
    }
    cg_loop_end(c, &ot);
    cg_loop_end(c, &u);
    cg_kernel_end(c);
    return fn;
}

/* A grouped conv2d whose groups have fewer output channels than a GEMM tile has rows (depthwise,
 * or a small multiplier), by direct taps: per (sample, output channel, output row), the row starts
 * at the bias and adds each tap (channel of the group, kh, kw) in order over the columns where it
 * lands inside the image, vectorised along the row, then takes the epilogue. */
static LLVMValueRef gen_conv2d_direct(cg *c, int node) {
    const pn_node *nd = &c->g->nodes[node];
    const pn_shape *xs = &c->g->nodes[nd->in[0]].shape;
    int64_t C = xs->d[1], H = xs->d[2], W = xs->d[3], G = nd->ia[PN_CONV_GROUPS], Cg = C / G;
    int64_t OC = nd->ia[PN_CONV_OUT], Og = OC / G, KH = nd->ia[PN_CONV_KH], KW = nd->ia[PN_CONV_KW];
    int64_t SH = nd->ia[PN_CONV_SH], SW = nd->ia[PN_CONV_SW], PH = nd->ia[PN_CONV_PH], PW = nd->ia[PN_CONV_PW];
    int64_t OH = nd->shape.d[2], OW = nd->shape.d[3];
    LLVMValueRef fn = cg_kernel_begin(c, node, 1);
    LLVMValueRef out = LLVMGetParam(fn, 0), in = LLVMGetParam(fn, 1), wts = c->params;
    LLVMValueRef bias = cg_conv_bias(c, node);
    LLVMValueRef N = pn_shape_batched(xs) ? c->n : cg_i64(c, xs->d[0]);
    LLVMValueRef lo, hi;
    cg_split(c, LLVMBuildMul(c->b, N, cg_i64(c, OC * OH), ""), &lo, &hi);
    cg_loop u;
    cg_loop_begin(c, &u, lo, hi, "row");
    LLVMValueRef oh = LLVMBuildSRem(c->b, u.iv, cg_i64(c, OH), ""), plane_o = LLVMBuildSDiv(c->b, u.iv, cg_i64(c, OH), "");
    LLVMValueRef oc = LLVMBuildSRem(c->b, plane_o, cg_i64(c, OC), ""), smp = LLVMBuildSDiv(c->b, plane_o, cg_i64(c, OC), "");
    LLVMValueRef ch0 = LLVMBuildAdd(c->b, LLVMBuildMul(c->b, smp, cg_i64(c, C), ""),
                                    LLVMBuildMul(c->b, LLVMBuildSDiv(c->b, oc, cg_i64(c, Og), ""), cg_i64(c, Cg), ""), "");
    LLVMValueRef orow = cg_gep(c, out, LLVMBuildMul(c->b, u.iv, cg_i64(c, OW), ""));
    LLVMValueRef b = bias ? cg_load(c, bias, oc) : cg_f32(c, 0.0);
    cg_loop j;
    cg_loop_begin(c, &j, cg_i64(c, 0), cg_i64(c, OW), "init");
    cg_store(c, b, orow, j.iv);
    cg_loop_end(c, &j);
    cg_loop ci;
    cg_loop_begin(c, &ci, cg_i64(c, 0), cg_i64(c, Cg), "ci");
    LLVMValueRef plane = cg_gep(c, in, LLVMBuildMul(c->b, LLVMBuildAdd(c->b, ch0, ci.iv, ""), cg_i64(c, H * W), ""));
    LLVMValueRef wrow = cg_gep(c, wts, LLVMBuildMul(c->b, LLVMBuildAdd(c->b, LLVMBuildMul(c->b, oc, cg_i64(c, Cg), ""), ci.iv, ""),
                                                    cg_i64(c, KH * KW), ""));
    for (int64_t kh = 0; kh < KH; kh++) {
        LLVMValueRef ih = LLVMBuildAdd(c->b, LLVMBuildMul(c->b, oh, cg_i64(c, SH), ""), cg_i64(c, kh - PH), "");
        cg_if inside;
        cg_if_begin(c, &inside, LLVMBuildICmp(c->b, LLVMIntULT, ih, cg_i64(c, H), ""));
        LLVMValueRef xrow = cg_gep(c, plane, LLVMBuildMul(c->b, ih, cg_i64(c, W), ""));
        for (int64_t kw = 0; kw < KW; kw++) {
            /* Columns whose input iw = ow*SW + kw - PW lies in [0, W). */
            int64_t olo = PW - kw > 0 ? (PW - kw + SW - 1) / SW : 0;
            int64_t ohi = W - 1 + PW - kw >= 0 ? (W - 1 + PW - kw) / SW + 1 : 0;
            if (ohi > OW) ohi = OW;
            if (olo >= ohi) continue;
            LLVMValueRef wv = cg_load(c, wrow, cg_i64(c, kh * KW + kw));
            cg_loop o;
            cg_loop_begin(c, &o, cg_i64(c, olo), cg_i64(c, ohi), "ow");
            LLVMValueRef xv = cg_load(c, xrow, LLVMBuildAdd(c->b, LLVMBuildMul(c->b, o.iv, cg_i64(c, SW), ""), cg_i64(c, kw - PW), ""));
            cg_store(c, cg_fma(c, wv, xv, cg_load(c, orow, o.iv)), orow, o.iv);
            cg_loop_end(c, &o);
        }
        cg_if_end(c, &inside);
    }
    cg_loop_end(c, &ci);
    if (c->g->plan.fuse_next[node] >= 0) {
        cg_loop e;
        cg_loop_begin(c, &e, cg_i64(c, 0), cg_i64(c, OW), "epilogue");
        cg_store(c, cg_epilogue(c, node, cg_load(c, orow, e.iv)), orow, e.iv);
        cg_loop_end(c, &e);
    }
    cg_loop_end(c, &u);
    cg_kernel_end(c);
    return fn;
}

/* The gather of cg_gen_conv2d, NAME__k<node>_gather(panel, x, pix0) for one group of one sample:
 * panel[k][j] = x[ch][oh*SH + kh - PH][ow*SW + kw - PW] for pixel pix0 + j = oh*OW + ow. A function
 * of its own: inlined, the vector constants of its loops stayed live across the GEMM loop, which
 * then spilled an accumulator (cg_helper_begin). */
static LLVMValueRef gen_conv2d_gather(cg *c, int node, int64_t NR) {
    const pn_node *nd = &c->g->nodes[node];
    const pn_shape *xs = &c->g->nodes[nd->in[0]].shape;
    int64_t groups = nd->ia[PN_CONV_GROUPS];
    int64_t C = xs->d[1] / groups, H = xs->d[2], W = xs->d[3];
    int64_t KH = nd->ia[PN_CONV_KH], KW = nd->ia[PN_CONV_KW];
    int64_t SH = nd->ia[PN_CONV_SH], SW = nd->ia[PN_CONV_SW], PH = nd->ia[PN_CONV_PH], PW = nd->ia[PN_CONV_PW];
    int64_t OH = nd->shape.d[2], OW = nd->shape.d[3], P = OH * OW, K = C * KH * KW;
    LLVMTypeRef args[3] = {c->ptr, c->ptr, c->i64};
    cg_helper h;
    LLVMValueRef fn = cg_helper_begin(c, node, "gather", args, 3, &h);
    LLVMValueRef panel = LLVMGetParam(fn, 0), xb = LLVMGetParam(fn, 1), pix0 = LLVMGetParam(fn, 2);
    /* The panel covers a few output rows; within one, consecutive ow read consecutive (stride SW)
     * inputs, so each row segment is a plain strided copy with zeros where the window leaves the
     * image. */
    LLVMValueRef pend = cg_smin(c, LLVMBuildAdd(c->b, pix0, cg_i64(c, NR), ""), cg_i64(c, P));
    LLVMValueRef oh_first = LLVMBuildSDiv(c->b, pix0, cg_i64(c, OW), "");
    LLVMValueRef oh_last = LLVMBuildSDiv(c->b, LLVMBuildSub(c->b, pend, cg_i64(c, 1), ""), cg_i64(c, OW), "");
    cg_loop lch;
    cg_loop_begin(c, &lch, cg_i64(c, 0), cg_i64(c, C), "ch");
    LLVMValueRef plane = cg_gep(c, xb, LLVMBuildMul(c->b, lch.iv, cg_i64(c, H * W), ""));
    cg_loop lkh;
    cg_loop_begin(c, &lkh, cg_i64(c, 0), cg_i64(c, KH), "kh");
    cg_loop lkw;
    cg_loop_begin(c, &lkw, cg_i64(c, 0), cg_i64(c, KW), "kw");
    LLVMValueRef kidx = LLVMBuildAdd(c->b, LLVMBuildMul(c->b, LLVMBuildAdd(c->b, LLVMBuildMul(c->b, lch.iv, cg_i64(c, KH), ""), lkh.iv, ""),
                                                        cg_i64(c, KW), ""), lkw.iv, "");
    LLVMValueRef prow = cg_gep(c, panel, LLVMBuildMul(c->b, kidx, cg_i64(c, NR), ""));
    /* Columns ow whose input iw = ow*SW + kw - PW lies in [0, W). */
    LLVMValueRef owlo, owhi;
    tap_range(c, lkw.iv, SW, PW, W, OW, &owlo, &owhi);
    cg_loop r;
    cg_loop_begin(c, &r, oh_first, LLVMBuildAdd(c->b, oh_last, cg_i64(c, 1), ""), "orow");
    LLVMValueRef rbase = LLVMBuildMul(c->b, r.iv, cg_i64(c, OW), "");
    LLVMValueRef s0 = LLVMBuildSub(c->b, cg_smax(c, pix0, rbase), rbase, "");                                  /* ow from */
    LLVMValueRef s1 = LLVMBuildSub(c->b, cg_smin(c, pend, LLVMBuildAdd(c->b, rbase, cg_i64(c, OW), "")), rbase, ""); /* ow to */
    LLVMValueRef dst = cg_gep(c, prow, LLVMBuildSub(c->b, rbase, pix0, ""));  /* panel column of ow = 0 */
    LLVMValueRef ih = LLVMBuildSub(c->b, LLVMBuildAdd(c->b, LLVMBuildMul(c->b, r.iv, cg_i64(c, SH), ""), lkh.iv, ""), cg_i64(c, PH), "");
    LLVMValueRef row_ok = LLVMBuildICmp(c->b, LLVMIntULT, ih, cg_i64(c, H), "");
    /* Valid columns: [v0, v1) within [s0, s1), and none when the input row is outside. */
    LLVMValueRef v0 = cg_smin(c, cg_smax(c, s0, owlo), s1);
    LLVMValueRef v1 = cg_select(c, row_ok, cg_smax(c, cg_smin(c, s1, owhi), v0), v0);
    LLVMValueRef src = cg_gep(c, plane, LLVMBuildSub(c->b, LLVMBuildAdd(c->b, LLVMBuildMul(c->b, cg_smin(c, cg_smax(c, ih, cg_i64(c, 0)), cg_i64(c, H - 1)), cg_i64(c, W), ""), lkw.iv, ""), cg_i64(c, PW), ""));
    LLVMValueRef bounds[4] = {s0, v0, v1, s1};
    for (int part = 0; part < 3; part++) {
        cg_loop o;
        cg_loop_begin(c, &o, bounds[part], bounds[part + 1], part == 1 ? "copy" : "zero");
        LLVMValueRef val = part == 1 ? cg_load(c, src, LLVMBuildMul(c->b, o.iv, cg_i64(c, SW), "")) : cg_f32(c, 0.0);
        cg_store(c, val, dst, o.iv);
        cg_loop_end(c, &o);
    }
    cg_loop_end(c, &r);
    cg_loop_end(c, &lkw);
    cg_loop_end(c, &lkh);
    cg_loop_end(c, &lch);
    /* Pixels past P in the last panel read as zero: each row's tail, a contiguous run. */
    cg_loop zk;
    cg_loop_begin(c, &zk, cg_i64(c, 0), cg_i64(c, K), "zk");
    cg_loop zt;
    cg_loop_begin(c, &zt, LLVMBuildSub(c->b, pend, pix0, ""), cg_i64(c, NR), "ztail");
    cg_store(c, cg_f32(c, 0.0), panel, LLVMBuildAdd(c->b, LLVMBuildMul(c->b, zk.iv, cg_i64(c, NR), ""), zt.iv, ""));
    cg_loop_end(c, &zt);
    cg_loop_end(c, &zk);
    cg_helper_end(c, &h);
    return fn;
}

/* conv2d as implicit GEMM per (sample, pixel panel): the thread gathers the panel's patches into
 * its scratch as [C*KH*KW][NR] (zero where the window leaves the image), then multiplies the
 * weight rows [OC][C*KH*KW] by it in MR x NR register tiles, adding bias and the fused epilogue
 * as it stores NCHW rows. Each output sums its taps in the same order whatever the split. With
 * groups G (only this path takes them), each group gathers its C/G channels and multiplies its
 * OC/G weight rows, one group after another; for G = 1 the group loop runs once. */
LLVMValueRef cg_gen_conv2d(cg *c, int node) {
    const pn_node *nd = &c->g->nodes[node];
    int pool = cg_fused_pool(c, node);
    int64_t groups = nd->ia[PN_CONV_GROUPS];
    if (pool >= 0) return cg_gen_conv2d_pooled(c, node, pool); /* pass_fuse_pool: groups = 1 */
    int VW0, MR0, NV0;
    cg_gemm_shape(c, &VW0, &MR0, &NV0);
    if (!pn_conv_gathers(nd, MR0)) return groups == 1 ? gen_conv2d_shifted(c, node) : gen_conv2d_direct(c, node);
    const pn_shape *xs = &c->g->nodes[nd->in[0]].shape;
    int64_t C = xs->d[1] / groups, H = xs->d[2], W = xs->d[3];
    int64_t OC = nd->ia[PN_CONV_OUT] / groups, OCT = nd->ia[PN_CONV_OUT], KH = nd->ia[PN_CONV_KH], KW = nd->ia[PN_CONV_KW];
    int64_t P = nd->shape.d[2] * nd->shape.d[3], K = C * KH * KW;
    int VW, MR, NV;
    cg_gemm_shape(c, &VW, &MR, &NV);
    int64_t NR = (int64_t)VW * NV, NPP = (P + NR - 1) / NR;
    int64_t need = (K * NR * 4 + 63) / 64 * 64; /* the panel */
    if (need > c->scratch_bytes) c->scratch_bytes = need;
    LLVMTypeRef vt = LLVMVectorType(c->f32, (unsigned)VW);
    LLVMValueRef fn = cg_kernel_begin(c, node, 1);
    LLVMValueRef out = LLVMGetParam(fn, 0), in = LLVMGetParam(fn, 1);
    LLVMValueRef wts = c->params;
    LLVMValueRef bias = cg_conv_bias(c, node);
    LLVMValueRef panel = c->scratch;
    LLVMValueRef N = pn_shape_batched(xs) ? c->n : cg_i64(c, xs->d[0]);
    LLVMValueRef lo, hi;
    cg_split(c, LLVMBuildMul(c->b, N, cg_i64(c, NPP), ""), &lo, &hi);
    cg_loop u;
    cg_loop_begin(c, &u, lo, hi, "unit");
    LLVMValueRef smp = LLVMBuildSDiv(c->b, u.iv, cg_i64(c, NPP), "s");
    LLVMValueRef pp = LLVMBuildSRem(c->b, u.iv, cg_i64(c, NPP), "pp");
    LLVMValueRef pix0 = LLVMBuildMul(c->b, pp, cg_i64(c, NR), "pix0");
    cg_loop grp;
    cg_loop_begin(c, &grp, cg_i64(c, 0), cg_i64(c, groups), "group");
    LLVMValueRef xb = cg_gep(c, in, LLVMBuildMul(c->b, LLVMBuildAdd(c->b, LLVMBuildMul(c->b, smp, cg_i64(c, groups), ""), grp.iv, ""),
                                                 cg_i64(c, C * H * W), ""));
    LLVMValueRef gw = cg_gep(c, wts, LLVMBuildMul(c->b, grp.iv, cg_i64(c, OC * K), ""));
    LLVMValueRef goc = LLVMBuildMul(c->b, grp.iv, cg_i64(c, OC), ""); /* the group's first output channel */
    /* Gather the panel's patches (gen_conv2d_gather). */
    LLVMValueRef gather = gen_conv2d_gather(c, node, NR), gargs[3] = {panel, xb, pix0};
    LLVMBuildCall2(c->b, LLVMGlobalGetValueType(gather), gather, gargs, 3, "");
    /* Multiply: MR output channels at a time. */
    int tail = (int)(P - (NPP - 1) * NR);
    LLVMValueRef is_tail = LLVMBuildICmp(c->b, LLVMIntEQ, pp, cg_i64(c, NPP - 1), "");
    LLVMValueRef mask[8];
    cg_panel_masks(c, is_tail, tail, mask);
    cg_loop ot;
    cg_loop_begin(c, &ot, cg_i64(c, 0), cg_i64(c, (OC + MR - 1) / MR), "ot");
    LLVMValueRef oc0 = LLVMBuildMul(c->b, ot.iv, cg_i64(c, MR), "");
    LLVMValueRef arow[16], init[16][8], acc[16][8], ocs[16];
    for (int i = 0; i < MR; i++) {
        ocs[i] = LLVMBuildAdd(c->b, oc0, cg_i64(c, i), "");
        arow[i] = cg_gep(c, gw, LLVMBuildMul(c->b, cg_smin(c, ocs[i], cg_i64(c, OC - 1)), cg_i64(c, K), ""));
        for (int q = 0; q < NV; q++) init[i][q] = LLVMConstNull(vt);
    }
    cg_micro_tile(c, arow, MR, panel, NR, cg_i64(c, 0), cg_i64(c, K), init, acc);
    for (int i = 0; i < MR; i++) {
        LLVMBasicBlockRef st = LLVMAppendBasicBlockInContext(c->ctx, fn, "store");
        LLVMBasicBlockRef next = LLVMAppendBasicBlockInContext(c->ctx, fn, "next");
        LLVMBuildCondBr(c->b, LLVMBuildICmp(c->b, LLVMIntSLT, ocs[i], cg_i64(c, OC), ""), st, next);
        LLVMPositionBuilderAtEnd(c->b, st);
        LLVMValueRef oc = LLVMBuildAdd(c->b, goc, ocs[i], "");
        LLVMValueRef orow = cg_gep(c, out, LLVMBuildAdd(c->b, LLVMBuildMul(c->b, LLVMBuildAdd(c->b, LLVMBuildMul(c->b, smp, cg_i64(c, OCT), ""), oc, ""),
                                                                         cg_i64(c, P), ""), pix0, ""));
        LLVMValueRef bv = bias ? cg_splat(c, cg_load(c, bias, oc), VW) : LLVMConstNull(vt);
        for (int q = 0; q < NV; q++) {
            LLVMValueRef val = cg_epilogue(c, node, cg_fadd(c, acc[i][q], bv, false));
            cg_masked_store(c, val, cg_gep(c, orow, cg_i64(c, q * VW)), mask[q]);
        }
        LLVMBuildBr(c->b, next);
        LLVMPositionBuilderAtEnd(c->b, next);
    }
    cg_loop_end(c, &ot);
    cg_loop_end(c, &grp);
    cg_loop_end(c, &u);
    cg_kernel_end(c);
    return fn;
}

/* One pooled output at (oh, ow) of the plane ip. With `inside` every tap is known to be in the
 * image, so the loads are plain affine accesses the vectoriser turns into shuffles; otherwise
 * each tap reads a clamped address and padding contributes the identity. */
static LLVMValueRef pool_point(cg *c, const pn_node *nd, LLVMValueRef ip, LLVMValueRef oh, LLVMValueRef ow, bool inside,
                               int64_t H, int64_t W) {
    bool is_max = nd->op == PN_OP_MAXPOOL2D;
    int64_t KH = nd->ia[PN_POOL_KH], KW = nd->ia[PN_POOL_KW], SH = nd->ia[PN_POOL_SH], SW = nd->ia[PN_POOL_SW];
    LLVMValueRef init = cg_f32(c, is_max ? -__builtin_inff() : 0.0);
    LLVMValueRef ih0 = LLVMBuildSub(c->b, LLVMBuildMul(c->b, oh, cg_i64(c, SH), ""), cg_i64(c, nd->ia[PN_POOL_PH]), "");
    LLVMValueRef iw0 = LLVMBuildSub(c->b, LLVMBuildMul(c->b, ow, cg_i64(c, SW), ""), cg_i64(c, nd->ia[PN_POOL_PW]), "");
    LLVMValueRef acc = init;
    for (int64_t kh = 0; kh < KH; kh++) {
        LLVMValueRef ih = LLVMBuildAdd(c->b, ih0, cg_i64(c, kh), "");
        LLVMValueRef okh = inside ? NULL : LLVMBuildICmp(c->b, LLVMIntULT, ih, cg_i64(c, H), "");
        LLVMValueRef ihc = inside ? ih : cg_smin(c, cg_smax(c, ih, cg_i64(c, 0)), cg_i64(c, H - 1));
        for (int64_t kw = 0; kw < KW; kw++) {
            LLVMValueRef iw = LLVMBuildAdd(c->b, iw0, cg_i64(c, kw), "");
            LLVMValueRef iwc = inside ? iw : cg_smin(c, cg_smax(c, iw, cg_i64(c, 0)), cg_i64(c, W - 1));
            LLVMValueRef v = cg_load(c, ip, LLVMBuildAdd(c->b, LLVMBuildMul(c->b, ihc, cg_i64(c, W), ""), iwc, ""));
            if (!inside)
                v = cg_select(c, LLVMBuildAnd(c->b, okh, LLVMBuildICmp(c->b, LLVMIntULT, iw, cg_i64(c, W), ""), ""), v, init);
            acc = is_max ? cg_max(c, v, acc, false) : cg_fadd(c, acc, v, false);
        }
    }
    if (!is_max) acc = cg_fmul(c, acc, cg_f32(c, 1.0 / (double)(KH * KW)), false);
    return acc;
}

/* Pooled outputs (oh, ow0 + i) for the lanes i < nvalid of a VW-wide vector, all taps inside the
 * image; stride 1 or 2 (loads, plus an even-lane shuffle for stride 2). Masked loads never touch
 * an element no valid lane uses. */
static LLVMValueRef pool_vector(cg *c, const pn_node *nd, LLVMValueRef ip, LLVMValueRef oh, LLVMValueRef ow0, int64_t W,
                                int VW, LLVMValueRef nvalid) {
    bool is_max = nd->op == PN_OP_MAXPOOL2D;
    int64_t KH = nd->ia[PN_POOL_KH], KW = nd->ia[PN_POOL_KW], SH = nd->ia[PN_POOL_SH], SW = nd->ia[PN_POOL_SW];
    LLVMTypeRef vt = LLVMVectorType(c->f32, (unsigned)VW), it = LLVMVectorType(c->i64, (unsigned)VW);
    LLVMValueRef even[64], lane[64], lane_hi[64];
    for (int i = 0; i < VW; i++) {
        even[i] = LLVMConstInt(c->i32, (unsigned long long)(2 * i), 0);
        lane[i] = cg_i64(c, i);
        lane_hi[i] = cg_i64(c, i + VW);
    }
    /* Elements [0, used) from the window start are read: used = (nvalid - 1) * SW + 1. */
    LLVMValueRef used = LLVMBuildAdd(c->b, LLVMBuildMul(c->b, LLVMBuildSub(c->b, nvalid, cg_i64(c, 1), ""), cg_i64(c, SW), ""), cg_i64(c, 1), "");
    LLVMValueRef usedv = LLVMBuildInsertElement(c->b, LLVMGetUndef(it), used, LLVMConstInt(c->i32, 0, 0), "");
    LLVMValueRef zero[64];
    for (int i = 0; i < VW; i++) zero[i] = LLVMConstInt(c->i32, 0, 0);
    usedv = LLVMBuildShuffleVector(c->b, usedv, LLVMGetUndef(it), LLVMConstVector(zero, (unsigned)VW), "");
    LLVMValueRef m_lo = LLVMBuildICmp(c->b, LLVMIntSLT, LLVMConstVector(lane, (unsigned)VW), usedv, "");
    LLVMValueRef m_hi = LLVMBuildICmp(c->b, LLVMIntSLT, LLVMConstVector(lane_hi, (unsigned)VW), usedv, "");
    LLVMValueRef ih0 = LLVMBuildSub(c->b, LLVMBuildMul(c->b, oh, cg_i64(c, SH), ""), cg_i64(c, nd->ia[PN_POOL_PH]), "");
    LLVMValueRef iw0 = LLVMBuildSub(c->b, LLVMBuildMul(c->b, ow0, cg_i64(c, SW), ""), cg_i64(c, nd->ia[PN_POOL_PW]), "");
    LLVMValueRef acc = NULL;
    for (int64_t kh = 0; kh < KH; kh++) {
        LLVMValueRef row = cg_gep(c, ip, LLVMBuildMul(c->b, LLVMBuildAdd(c->b, ih0, cg_i64(c, kh), ""), cg_i64(c, W), ""));
        for (int64_t kw = 0; kw < KW; kw++) {
            LLVMValueRef at = cg_gep(c, row, LLVMBuildAdd(c->b, iw0, cg_i64(c, kw), ""));
            LLVMValueRef v = cg_masked_load(c, vt, at, m_lo);
            if (SW == 2) {
                LLVMValueRef hi = cg_masked_load(c, vt, cg_gep(c, at, cg_i64(c, VW)), m_hi);
                v = LLVMBuildShuffleVector(c->b, v, hi, LLVMConstVector(even, (unsigned)VW), "");
            }
            acc = !acc ? v : is_max ? cg_max(c, v, acc, false) : cg_fadd(c, acc, v, false);
        }
    }
    if (!is_max) acc = cg_fmul(c, acc, cg_splat(c, cg_f32(c, 1.0 / (double)(KH * KW)), VW), false);
    return acc;
}

/* Interior range [lo, hi) of outputs along one axis whose taps all fall inside [0, size). */
static void interior(int64_t size, int64_t k, int64_t s, int64_t p, int64_t osize, int64_t *lo, int64_t *hi) {
    *lo = (p + s - 1) / s;
    *hi = size - k + p >= 0 ? (size - k + p) / s + 1 : 0;
    if (*hi > osize) *hi = osize;
    if (*lo > *hi) *lo = *hi;
}

/* maxpool2d pads with -inf; avgpool2d divides by the full window (count_include_pad). */
LLVMValueRef cg_gen_pool(cg *c, int node) {
    const pn_node *nd = &c->g->nodes[node];
    const pn_shape *xs = &c->g->nodes[nd->in[0]].shape;
    int64_t C = xs->d[1], H = xs->d[2], W = xs->d[3], OH = nd->shape.d[2], OW = nd->shape.d[3];
    int64_t ohlo, ohhi, owlo, owhi;
    interior(H, nd->ia[PN_POOL_KH], nd->ia[PN_POOL_SH], nd->ia[PN_POOL_PH], OH, &ohlo, &ohhi);
    interior(W, nd->ia[PN_POOL_KW], nd->ia[PN_POOL_SW], nd->ia[PN_POOL_PW], OW, &owlo, &owhi);
    LLVMValueRef fn = cg_kernel_begin(c, node, 1);
    LLVMValueRef out = LLVMGetParam(fn, 0), in = LLVMGetParam(fn, 1);
    LLVMValueRef planes = pn_shape_batched(xs) ? LLVMBuildMul(c->b, c->n, cg_i64(c, C), "") : cg_i64(c, xs->d[0] * C);
    LLVMValueRef lo, hi;
    cg_split(c, planes, &lo, &hi);
    cg_loop t;
    cg_loop_begin(c, &t, lo, hi, "plane");
    LLVMValueRef ip = cg_gep(c, in, LLVMBuildMul(c->b, t.iv, cg_i64(c, H * W), ""));
    LLVMValueRef op = cg_gep(c, out, LLVMBuildMul(c->b, t.iv, cg_i64(c, OH * OW), ""));
    cg_loop oh;
    cg_loop_begin(c, &oh, cg_i64(c, 0), cg_i64(c, OH), "oh");
    LLVMValueRef orow = cg_gep(c, op, LLVMBuildMul(c->b, oh.iv, cg_i64(c, OW), ""));
    LLVMValueRef row_in = LLVMBuildAnd(c->b, LLVMBuildICmp(c->b, LLVMIntSGE, oh.iv, cg_i64(c, ohlo), ""),
                                       LLVMBuildICmp(c->b, LLVMIntSLT, oh.iv, cg_i64(c, ohhi), ""), "");
    /* Columns [owlo, owhi) of interior rows take the fast path; everything else is clamped. */
    LLVMValueRef fast_lo = cg_select(c, row_in, cg_i64(c, owlo), cg_i64(c, OW));
    LLVMValueRef fast_hi = cg_select(c, row_in, cg_i64(c, owhi), cg_i64(c, OW));
    /* Interior columns as vectors when the stride is 1 or 2 (the last one masked); the border,
     * and other strides, one output at a time. */
    int64_t SW = nd->ia[PN_POOL_SW];
    LLVMValueRef seg[4] = {cg_i64(c, 0), fast_lo, fast_hi, cg_i64(c, OW)};
    for (int part = 0; part < 3; part++) {
        if (part == 1 && SW <= 2) {
            int VW, MR, NV;
            cg_gemm_shape(c, &VW, &MR, &NV);
            LLVMValueRef cnt = LLVMBuildSub(c->b, fast_hi, fast_lo, "");
            LLVMValueRef nvec = LLVMBuildSDiv(c->b, LLVMBuildAdd(c->b, cnt, cg_i64(c, VW - 1), ""), cg_i64(c, VW), "");
            cg_loop vv;
            cg_loop_begin(c, &vv, cg_i64(c, 0), nvec, "vow");
            LLVMValueRef ow0 = LLVMBuildAdd(c->b, fast_lo, LLVMBuildMul(c->b, vv.iv, cg_i64(c, VW), ""), "");
            LLVMValueRef nvalid = cg_smin(c, LLVMBuildSub(c->b, fast_hi, ow0, ""), cg_i64(c, VW));
            LLVMValueRef v = cg_epilogue(c, node, pool_vector(c, nd, ip, oh.iv, ow0, W, VW, nvalid));
            cg_masked_store(c, v, cg_gep(c, orow, ow0), cg_lanes_below(c, VW, cg_i64(c, 0), nvalid));
            cg_loop_end(c, &vv);
            continue;
        }
        cg_loop ow;
        cg_loop_begin(c, &ow, seg[part], seg[part + 1], "ow");
        LLVMValueRef r = pool_point(c, nd, ip, oh.iv, ow.iv, part == 1, H, W);
        cg_store(c, cg_epilogue(c, node, r), orow, ow.iv);
        cg_loop_end(c, &ow);
    }
    cg_loop_end(c, &oh);
    cg_loop_end(c, &t);
    cg_kernel_end(c);
    return fn;
}

LLVMValueRef cg_gen_global_avgpool(cg *c, int node) {
    const pn_node *nd = &c->g->nodes[node];
    const pn_shape *xs = &c->g->nodes[nd->in[0]].shape;
    int64_t C = xs->d[1], HW = xs->d[2] * xs->d[3];
    LLVMValueRef fn = cg_kernel_begin(c, node, 1);
    LLVMValueRef out = LLVMGetParam(fn, 0), in = LLVMGetParam(fn, 1);
    LLVMValueRef planes = pn_shape_batched(xs) ? LLVMBuildMul(c->b, c->n, cg_i64(c, C), "") : cg_i64(c, xs->d[0] * C);
    LLVMValueRef lo, hi;
    cg_split(c, planes, &lo, &hi);
    cg_loop t;
    cg_loop_begin(c, &t, lo, hi, "plane");
    LLVMValueRef ip = cg_gep(c, in, LLVMBuildMul(c->b, t.iv, cg_i64(c, HW), ""));
    cg_loop k;
    cg_loop_begin(c, &k, cg_i64(c, 0), cg_i64(c, HW), "k");
    LLVMValueRef acc = cg_loop_acc(c, &k, cg_f32(c, 0.0));
    cg_loop_next(&k, acc, cg_fadd(c, acc, cg_load(c, ip, k.iv), true));
    cg_loop_end(c, &k);
    LLVMValueRef r = cg_fmul(c, acc, cg_f32(c, 1.0 / (double)HW), false);
    cg_store(c, cg_epilogue(c, node, r), out, t.iv);
    cg_loop_end(c, &t);
    cg_kernel_end(c);
    return fn;
}
