/* Kernels for conv2d (direct, NCHW), max/avg pooling and global average pooling. Work is split
 * over (sample, channel) planes; each output sums its taps in a fixed order. */
#include "cg.h"

static int64_t align16(int64_t v) { return (v + 15) / 16 * 16; }

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

LLVMValueRef cg_gen_conv2d(cg *c, int node) {
    const pn_node *nd = &c->g->nodes[node];
    const pn_shape *xs = &c->g->nodes[nd->in[0]].shape;
    int64_t C = xs->d[1], H = xs->d[2], W = xs->d[3];
    int64_t OC = nd->ia[PN_CONV_OUT], KH = nd->ia[PN_CONV_KH], KW = nd->ia[PN_CONV_KW];
    int64_t SH = nd->ia[PN_CONV_SH], SW = nd->ia[PN_CONV_SW], PH = nd->ia[PN_CONV_PH], PW = nd->ia[PN_CONV_PW];
    int64_t OH = nd->shape.d[2], OW = nd->shape.d[3];
    LLVMValueRef fn = cg_kernel_begin(c, node, 1);
    LLVMValueRef out = LLVMGetParam(fn, 0), in = LLVMGetParam(fn, 1);
    LLVMValueRef bias = nd->ia[PN_CONV_BIAS] ? cg_gep(c, c->params, cg_i64(c, align16(OC * C * KH * KW))) : NULL;
    LLVMValueRef planes = pn_shape_batched(xs) ? LLVMBuildMul(c->b, c->n, cg_i64(c, OC), "") : cg_i64(c, xs->d[0] * OC);
    LLVMValueRef lo, hi;
    cg_split(c, planes, &lo, &hi);
    cg_loop t;
    cg_loop_begin(c, &t, lo, hi, "plane");
    LLVMValueRef s = LLVMBuildSDiv(c->b, t.iv, cg_i64(c, OC), "s");
    LLVMValueRef oc = LLVMBuildSRem(c->b, t.iv, cg_i64(c, OC), "oc");
    LLVMValueRef op = cg_gep(c, out, LLVMBuildMul(c->b, t.iv, cg_i64(c, OH * OW), ""));
    LLVMValueRef b0 = bias ? cg_load(c, bias, oc) : cg_f32(c, 0.0);
    cg_loop p0;
    cg_loop_begin(c, &p0, cg_i64(c, 0), cg_i64(c, OH * OW), "p0");
    cg_store(c, b0, op, p0.iv);
    cg_loop_end(c, &p0);
    cg_loop ic;
    cg_loop_begin(c, &ic, cg_i64(c, 0), cg_i64(c, C), "ic");
    LLVMValueRef ip = cg_gep(c, in, LLVMBuildMul(c->b, LLVMBuildAdd(c->b, LLVMBuildMul(c->b, s, cg_i64(c, C), ""), ic.iv, ""),
                                                  cg_i64(c, H * W), ""));
    LLVMValueRef wbase = LLVMBuildMul(c->b, LLVMBuildAdd(c->b, LLVMBuildMul(c->b, oc, cg_i64(c, C), ""), ic.iv, ""),
                                      cg_i64(c, KH * KW), "");
    cg_loop kh;
    cg_loop_begin(c, &kh, cg_i64(c, 0), cg_i64(c, KH), "kh");
    LLVMValueRef ohlo, ohhi;
    tap_range(c, kh.iv, SH, PH, H, OH, &ohlo, &ohhi);
    cg_loop kw;
    cg_loop_begin(c, &kw, cg_i64(c, 0), cg_i64(c, KW), "kw");
    LLVMValueRef owlo, owhi;
    tap_range(c, kw.iv, SW, PW, W, OW, &owlo, &owhi);
    LLVMValueRef wv = cg_load(c, c->params, LLVMBuildAdd(c->b, wbase, LLVMBuildAdd(c->b, LLVMBuildMul(c->b, kh.iv, cg_i64(c, KW), ""), kw.iv, ""), ""));
    cg_loop oh;
    cg_loop_begin(c, &oh, ohlo, ohhi, "oh");
    LLVMValueRef ih = LLVMBuildSub(c->b, LLVMBuildAdd(c->b, LLVMBuildMul(c->b, oh.iv, cg_i64(c, SH), ""), kh.iv, ""), cg_i64(c, PH), "");
    LLVMValueRef irow = cg_gep(c, ip, LLVMBuildSub(c->b, LLVMBuildMul(c->b, ih, cg_i64(c, W), ""), cg_i64(c, PW), ""));
    irow = cg_gep(c, irow, kw.iv);
    LLVMValueRef orow = cg_gep(c, op, LLVMBuildMul(c->b, oh.iv, cg_i64(c, OW), ""));
    cg_loop ow;
    cg_loop_begin(c, &ow, owlo, owhi, "ow");
    LLVMValueRef xv = cg_load(c, irow, LLVMBuildMul(c->b, ow.iv, cg_i64(c, SW), ""));
    cg_store(c, cg_fma(c, wv, xv, cg_load(c, orow, ow.iv)), orow, ow.iv);
    cg_loop_end(c, &ow);
    cg_loop_end(c, &oh);
    cg_loop_end(c, &kw);
    cg_loop_end(c, &kh);
    cg_loop_end(c, &ic);
    if (c->g->plan.fuse_next[node] >= 0) {
        cg_loop p1;
        cg_loop_begin(c, &p1, cg_i64(c, 0), cg_i64(c, OH * OW), "p1");
        cg_store(c, cg_epilogue(c, node, cg_load(c, op, p1.iv)), op, p1.iv);
        cg_loop_end(c, &p1);
    }
    cg_loop_end(c, &t);
    cg_kernel_end(c);
    return fn;
}

/* maxpool2d pads with -inf; avgpool2d divides by the full window (count_include_pad). */
LLVMValueRef cg_gen_pool(cg *c, int node) {
    const pn_node *nd = &c->g->nodes[node];
    const pn_shape *xs = &c->g->nodes[nd->in[0]].shape;
    bool is_max = nd->op == PN_OP_MAXPOOL2D;
    int64_t C = xs->d[1], H = xs->d[2], W = xs->d[3];
    int64_t KH = nd->ia[PN_POOL_KH], KW = nd->ia[PN_POOL_KW], SH = nd->ia[PN_POOL_SH], SW = nd->ia[PN_POOL_SW];
    int64_t PH = nd->ia[PN_POOL_PH], PW = nd->ia[PN_POOL_PW], OH = nd->shape.d[2], OW = nd->shape.d[3];
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
    cg_loop ow;
    cg_loop_begin(c, &ow, cg_i64(c, 0), cg_i64(c, OW), "ow");
    LLVMValueRef init = cg_f32(c, is_max ? -__builtin_inff() : 0.0);
    cg_loop kh;
    cg_loop_begin(c, &kh, cg_i64(c, 0), cg_i64(c, KH), "kh");
    LLVMValueRef acc_h = cg_loop_acc(c, &kh, init);
    LLVMValueRef ih = LLVMBuildSub(c->b, LLVMBuildAdd(c->b, LLVMBuildMul(c->b, oh.iv, cg_i64(c, SH), ""), kh.iv, ""), cg_i64(c, PH), "");
    LLVMValueRef okh = LLVMBuildICmp(c->b, LLVMIntULT, ih, cg_i64(c, H), "");
    cg_loop kw;
    cg_loop_begin(c, &kw, cg_i64(c, 0), cg_i64(c, KW), "kw");
    LLVMValueRef acc = cg_loop_acc(c, &kw, acc_h);
    LLVMValueRef iw = LLVMBuildSub(c->b, LLVMBuildAdd(c->b, LLVMBuildMul(c->b, ow.iv, cg_i64(c, SW), ""), kw.iv, ""), cg_i64(c, PW), "");
    LLVMValueRef ok = LLVMBuildAnd(c->b, okh, LLVMBuildICmp(c->b, LLVMIntULT, iw, cg_i64(c, W), ""), "");
    /* Read a clamped, always valid address; padding contributes the identity. */
    LLVMValueRef ihc = cg_smin(c, cg_smax(c, ih, cg_i64(c, 0)), cg_i64(c, H - 1));
    LLVMValueRef iwc = cg_smin(c, cg_smax(c, iw, cg_i64(c, 0)), cg_i64(c, W - 1));
    LLVMValueRef v = cg_load(c, ip, LLVMBuildAdd(c->b, LLVMBuildMul(c->b, ihc, cg_i64(c, W), ""), iwc, ""));
    v = cg_select(c, ok, v, init);
    cg_loop_next(&kw, acc, is_max ? cg_max(c, v, acc, false) : cg_fadd(c, acc, v, false));
    cg_loop_end(c, &kw);
    cg_loop_next(&kh, acc_h, acc);
    cg_loop_end(c, &kh);
    LLVMValueRef r = acc_h;
    if (!is_max) r = cg_fmul(c, r, cg_f32(c, 1.0 / (double)(KH * KW)), false);
    cg_store(c, cg_epilogue(c, node, r), op, LLVMBuildAdd(c->b, LLVMBuildMul(c->b, oh.iv, cg_i64(c, OW), ""), ow.iv, ""));
    cg_loop_end(c, &ow);
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
