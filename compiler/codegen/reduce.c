/* Kernels that reduce along an axis: softmax, log_softmax and causal_softmax, layernorm (last
 * axis) and batchnorm at inference (running statistics, per channel). */
#include "cg.h"

static int64_t align16(int64_t v) { return (v + 15) / 16 * 16; }

/* The axis split: [outer, A, inner]; outer may include the run-time batch. */
static LLVMValueRef axis_split(cg *c, const pn_shape *s, int axis, int64_t *A, int64_t *inner) {
    LLVMValueRef outer = cg_i64(c, 1);
    *inner = 1;
    for (int d = 0; d < s->rank; d++) {
        if (d < axis) outer = LLVMBuildMul(c->b, outer, s->d[d] == PN_BATCH ? c->n : cg_i64(c, s->d[d]), "");
        else if (d > axis) *inner *= s->d[d];
    }
    *A = s->d[axis];
    return outer;
}

LLVMValueRef cg_gen_softmax(cg *c, int node) {
    const pn_node *nd = &c->g->nodes[node];
    bool logsm = nd->op == PN_OP_LOG_SOFTMAX, causal = nd->op == PN_OP_CAUSAL_SOFTMAX;
    int64_t A, inner;
    LLVMValueRef fn = cg_kernel_begin(c, node, 1);
    LLVMValueRef out = LLVMGetParam(fn, 0), in = LLVMGetParam(fn, 1);
    LLVMValueRef outer = axis_split(c, &nd->shape, (int)nd->ia[PN_AXIS], &A, &inner);
    /* One line per (outer, inner) pair, elements `inner` apart. */
    LLVMValueRef lo, hi;
    cg_split(c, LLVMBuildMul(c->b, outer, cg_i64(c, inner), ""), &lo, &hi);
    cg_loop t;
    cg_loop_begin(c, &t, lo, hi, "line");
    LLVMValueRef o = LLVMBuildSDiv(c->b, t.iv, cg_i64(c, inner), "");
    LLVMValueRef i = LLVMBuildSRem(c->b, t.iv, cg_i64(c, inner), "");
    LLVMValueRef base = LLVMBuildAdd(c->b, LLVMBuildMul(c->b, o, cg_i64(c, A * inner), ""), i, "");
    LLVMValueRef ip = cg_gep(c, in, base), op = cg_gep(c, out, base);
    LLVMValueRef step = cg_i64(c, inner);
    /* causal_softmax (the last axis, inner = 1): line t is row t % T of its [T, A] matrix and keeps
     * columns [0, keep), keep = min(row + 1, A); the rest are stored as 0. */
    LLVMValueRef keep = cg_i64(c, A);
    if (causal) {
        LLVMValueRef row = LLVMBuildSRem(c->b, t.iv, cg_i64(c, nd->shape.d[nd->shape.rank - 2]), "");
        keep = cg_smin(c, LLVMBuildAdd(c->b, row, cg_i64(c, 1), ""), cg_i64(c, A));
    }
    cg_loop a;
    cg_loop_begin(c, &a, cg_i64(c, 0), keep, "a");
    LLVMValueRef m = cg_loop_acc(c, &a, cg_f32(c, -__builtin_inff()));
    cg_loop_next(&a, m, cg_max(c, cg_load(c, ip, LLVMBuildMul(c->b, a.iv, step, "")), m, true));
    cg_loop_end(c, &a);
    cg_loop a2;
    cg_loop_begin(c, &a2, cg_i64(c, 0), keep, "a2");
    LLVMValueRef sum = cg_loop_acc(c, &a2, cg_f32(c, 0.0));
    LLVMValueRef idx = LLVMBuildMul(c->b, a2.iv, step, "");
    LLVMValueRef e = cg_exp(c, cg_fsub(c, cg_load(c, ip, idx), m));
    if (!logsm) cg_store(c, e, op, idx);
    cg_loop_next(&a2, sum, cg_fadd(c, sum, e, true));
    cg_loop_end(c, &a2);
    /* log_softmax is (x - max) - log(sum), never x - (max + log(sum)): the rounding of a large max plus
     * the log would be the result's error (the ONNX test test_logsoftmax_large_number). */
    LLVMValueRef k = logsm ? cg_log(c, sum) : cg_fdiv(c, cg_f32(c, 1.0), sum);
    cg_loop a3;
    cg_loop_begin(c, &a3, cg_i64(c, 0), keep, "a3");
    LLVMValueRef idx3 = LLVMBuildMul(c->b, a3.iv, step, "");
    LLVMValueRef v = logsm ? cg_fsub(c, cg_fsub(c, cg_load(c, ip, idx3), m), k) : cg_fmul(c, cg_load(c, op, idx3), k, false);
    cg_store(c, v, op, idx3);
    cg_loop_end(c, &a3);
    if (causal) {
        cg_loop z;
        cg_loop_begin(c, &z, keep, cg_i64(c, A), "masked");
        cg_store(c, cg_f32(c, 0.0), op, z.iv);
        cg_loop_end(c, &z);
    }
    cg_loop_end(c, &t);
    cg_kernel_end(c);
    return fn;
}

/* layernorm over the last axis D: (x - mean) / sqrt(var + eps) * w + b, two passes. */
LLVMValueRef cg_gen_layernorm(cg *c, int node) {
    const pn_node *nd = &c->g->nodes[node];
    LLVMValueRef fn = cg_kernel_begin(c, node, 1);
    LLVMValueRef out = LLVMGetParam(fn, 0), in = LLVMGetParam(fn, 1);
    int64_t D;
    LLVMValueRef rows = cg_rows(c, &nd->shape, &D);
    LLVMValueRef w = c->params, b = cg_gep(c, c->params, cg_i64(c, align16(D)));
    LLVMValueRef lo, hi;
    cg_split(c, rows, &lo, &hi);
    cg_loop t;
    cg_loop_begin(c, &t, lo, hi, "row");
    LLVMValueRef ip = cg_gep(c, in, LLVMBuildMul(c->b, t.iv, cg_i64(c, D), ""));
    LLVMValueRef op = cg_gep(c, out, LLVMBuildMul(c->b, t.iv, cg_i64(c, D), ""));
    cg_loop k;
    cg_loop_begin(c, &k, cg_i64(c, 0), cg_i64(c, D), "k");
    LLVMValueRef s = cg_loop_acc(c, &k, cg_f32(c, 0.0));
    cg_loop_next(&k, s, cg_fadd(c, s, cg_load(c, ip, k.iv), true));
    cg_loop_end(c, &k);
    LLVMValueRef mean = cg_fmul(c, s, cg_f32(c, 1.0 / (double)D), false);
    cg_loop k2;
    cg_loop_begin(c, &k2, cg_i64(c, 0), cg_i64(c, D), "k2");
    LLVMValueRef q = cg_loop_acc(c, &k2, cg_f32(c, 0.0));
    LLVMValueRef dv = cg_fsub(c, cg_load(c, ip, k2.iv), mean);
    cg_loop_next(&k2, q, cg_fma(c, dv, dv, q));
    cg_loop_end(c, &k2);
    LLVMValueRef var = cg_fmul(c, q, cg_f32(c, 1.0 / (double)D), false);
    LLVMValueRef rstd = cg_fdiv(c, cg_f32(c, 1.0), cg_call1(c, "llvm.sqrt", cg_fadd(c, var, cg_f32(c, nd->fa[PN_FA_VALUE]), false)));
    cg_loop k3;
    cg_loop_begin(c, &k3, cg_i64(c, 0), cg_i64(c, D), "k3");
    LLVMValueRef y = cg_fmul(c, cg_fsub(c, cg_load(c, ip, k3.iv), mean), rstd, false);
    y = cg_fma(c, y, cg_load(c, w, k3.iv), cg_load(c, b, k3.iv));
    cg_store(c, cg_epilogue(c, node, y), op, k3.iv);
    cg_loop_end(c, &k3);
    cg_loop_end(c, &t);
    cg_kernel_end(c);
    return fn;
}

/* batchnorm at inference: y = (x - running_mean) / sqrt(running_var + eps) * w + b per channel. */
LLVMValueRef cg_gen_batchnorm(cg *c, int node) {
    const pn_node *nd = &c->g->nodes[node];
    const pn_shape *s = &nd->shape;
    int64_t C = s->d[1], S = 1;
    for (int d = 2; d < s->rank; d++) S *= s->d[d];
    LLVMValueRef fn = cg_kernel_begin(c, node, 1);
    LLVMValueRef out = LLVMGetParam(fn, 0), in = LLVMGetParam(fn, 1);
    int64_t a = align16(C);
    LLVMValueRef w = c->params, b = cg_gep(c, c->params, cg_i64(c, a));
    LLVMValueRef rm = cg_gep(c, c->params, cg_i64(c, 2 * a)), rv = cg_gep(c, c->params, cg_i64(c, 3 * a));
    LLVMValueRef planes = pn_shape_batched(s) ? LLVMBuildMul(c->b, c->n, cg_i64(c, C), "") : cg_i64(c, s->d[0] * C);
    LLVMValueRef lo, hi;
    cg_split(c, planes, &lo, &hi);
    cg_loop t;
    cg_loop_begin(c, &t, lo, hi, "plane");
    LLVMValueRef ch = LLVMBuildSRem(c->b, t.iv, cg_i64(c, C), "");
    LLVMValueRef scale = cg_fdiv(c, cg_load(c, w, ch),
                                 cg_call1(c, "llvm.sqrt", cg_fadd(c, cg_load(c, rv, ch), cg_f32(c, nd->fa[PN_FA_VALUE]), false)));
    LLVMValueRef mean = cg_load(c, rm, ch), shift = cg_load(c, b, ch);
    LLVMValueRef ip = cg_gep(c, in, LLVMBuildMul(c->b, t.iv, cg_i64(c, S), ""));
    LLVMValueRef op = cg_gep(c, out, LLVMBuildMul(c->b, t.iv, cg_i64(c, S), ""));
    cg_loop k;
    cg_loop_begin(c, &k, cg_i64(c, 0), cg_i64(c, S), "k");
    LLVMValueRef y = cg_fma(c, cg_fsub(c, cg_load(c, ip, k.iv), mean), scale, shift);
    cg_store(c, cg_epilogue(c, node, y), op, k.iv);
    cg_loop_end(c, &k);
    cg_loop_end(c, &t);
    cg_kernel_end(c);
    return fn;
}
