/* Kernels that move data: transpose, concat, slice, pad, embedding lookup, positions, and plain copies
 * into outputs. */
#include "cg.h"

/* Row-major element strides of a shape (the batch axis has the stride of one sample). */
static void strides(const pn_shape *s, int64_t *st) {
    int64_t k = 1;
    for (int d = s->rank - 1; d >= 0; d--) {
        st[d] = k;
        if (s->d[d] != PN_BATCH) k *= s->d[d];
    }
}

LLVMValueRef cg_gen_transpose(cg *c, int node) {
    const pn_node *nd = &c->g->nodes[node];
    const pn_shape *os = &nd->shape, *is = &c->g->nodes[nd->in[0]].shape;
    int r = os->rank;
    int64_t ist[PN_MAX_RANK], src[PN_MAX_RANK];
    strides(is, ist);
    for (int d = 0; d < r; d++) src[d] = ist[nd->ia[PN_PERM + d]];
    LLVMValueRef fn = cg_kernel_begin(c, node, 1);
    LLVMValueRef out = LLVMGetParam(fn, 0), in = LLVMGetParam(fn, 1);
    int64_t inner;
    LLVMValueRef rows = cg_rows(c, os, &inner);
    LLVMValueRef lo, hi;
    cg_split(c, rows, &lo, &hi);
    cg_loop t;
    cg_loop_begin(c, &t, lo, hi, "row");
    LLVMValueRef off = cg_i64(c, 0), rest = t.iv;
    int nlead = pn_shape_batched(os) && r == 1 ? 1 : r - 1;
    for (int d = nlead - 1; d >= 0; d--) {
        LLVMValueRef idx = d == 0 ? rest : LLVMBuildSRem(c->b, rest, cg_i64(c, os->d[d]), "");
        if (d > 0) rest = LLVMBuildSDiv(c->b, rest, cg_i64(c, os->d[d]), "");
        off = LLVMBuildAdd(c->b, off, LLVMBuildMul(c->b, idx, cg_i64(c, src[d]), ""), "");
    }
    LLVMValueRef irow = cg_gep(c, in, off);
    LLVMValueRef orow = cg_gep(c, out, LLVMBuildMul(c->b, t.iv, cg_i64(c, inner), ""));
    int64_t jstride = nlead == r ? 0 : src[r - 1];
    cg_loop j;
    cg_loop_begin(c, &j, cg_i64(c, 0), cg_i64(c, inner), "j");
    cg_store(c, cg_load(c, irow, LLVMBuildMul(c->b, j.iv, cg_i64(c, jstride), "")), orow, j.iv);
    cg_loop_end(c, &j);
    cg_loop_end(c, &t);
    cg_kernel_end(c);
    return fn;
}

/* concat along axis: out viewed as [outer, A_total * inner]; each input fills its columns. */
LLVMValueRef cg_gen_concat(cg *c, int node) {
    const pn_node *nd = &c->g->nodes[node];
    const pn_shape *os = &nd->shape;
    int axis = (int)nd->ia[PN_AXIS];
    LLVMValueRef fn = cg_kernel_begin(c, node, nd->ninputs);
    LLVMValueRef out = LLVMGetParam(fn, 0);
    LLVMValueRef outer = cg_i64(c, 1);
    int64_t inner = 1;
    for (int d = 0; d < os->rank; d++) {
        if (d < axis) outer = LLVMBuildMul(c->b, outer, os->d[d] == PN_BATCH ? c->n : cg_i64(c, os->d[d]), "");
        else if (d > axis) inner *= os->d[d];
    }
    int64_t width = os->d[axis] * inner;
    LLVMValueRef lo, hi;
    cg_split(c, outer, &lo, &hi);
    cg_loop t;
    cg_loop_begin(c, &t, lo, hi, "o");
    LLVMValueRef orow = cg_gep(c, out, LLVMBuildMul(c->b, t.iv, cg_i64(c, width), ""));
    int64_t col = 0;
    for (int k = 0; k < nd->ninputs; k++) {
        int64_t w = c->g->nodes[nd->in[k]].shape.d[axis] * inner;
        LLVMValueRef irow = cg_gep(c, LLVMGetParam(fn, (unsigned)k + 1), LLVMBuildMul(c->b, t.iv, cg_i64(c, w), ""));
        LLVMValueRef dst = cg_gep(c, orow, cg_i64(c, col));
        cg_loop j;
        cg_loop_begin(c, &j, cg_i64(c, 0), cg_i64(c, w), "j");
        cg_store(c, cg_load(c, irow, j.iv), dst, j.iv);
        cg_loop_end(c, &j);
        col += w;
    }
    cg_loop_end(c, &t);
    cg_kernel_end(c);
    return fn;
}

/* slice along axis: in viewed as [outer, A * inner], out as [outer, L * inner]; row o of out is
 * the L * inner floats of row o of in from start * inner. */
LLVMValueRef cg_gen_slice(cg *c, int node) {
    const pn_node *nd = &c->g->nodes[node];
    const pn_shape *os = &nd->shape;
    int axis = (int)nd->ia[PN_AXIS];
    int64_t A = c->g->nodes[nd->in[0]].shape.d[axis], L = os->d[axis], inner = 1;
    LLVMValueRef fn = cg_kernel_begin(c, node, 1);
    LLVMValueRef out = LLVMGetParam(fn, 0), in = LLVMGetParam(fn, 1);
    LLVMValueRef outer = cg_i64(c, 1);
    for (int d = 0; d < os->rank; d++) {
        if (d < axis) outer = LLVMBuildMul(c->b, outer, os->d[d] == PN_BATCH ? c->n : cg_i64(c, os->d[d]), "");
        else if (d > axis) inner *= os->d[d];
    }
    LLVMValueRef lo, hi;
    cg_split(c, outer, &lo, &hi);
    cg_loop t;
    cg_loop_begin(c, &t, lo, hi, "o");
    LLVMValueRef irow = cg_gep(c, in, LLVMBuildAdd(c->b, LLVMBuildMul(c->b, t.iv, cg_i64(c, A * inner), ""),
                                                   cg_i64(c, nd->ia[PN_SLICE_START] * inner), ""));
    LLVMValueRef orow = cg_gep(c, out, LLVMBuildMul(c->b, t.iv, cg_i64(c, L * inner), ""));
    cg_loop j;
    cg_loop_begin(c, &j, cg_i64(c, 0), cg_i64(c, L * inner), "j");
    cg_store(c, cg_load(c, irow, j.iv), orow, j.iv);
    cg_loop_end(c, &j);
    cg_loop_end(c, &t);
    cg_kernel_end(c);
    return fn;
}

/* pad: per output row (plane, oh) of OW floats, zeros left, the input row ih = oh - top (when
 * inside), zeros right; the whole row zero above and below the input. */
LLVMValueRef cg_gen_pad(cg *c, int node) {
    const pn_node *nd = &c->g->nodes[node];
    const pn_shape *xs = &c->g->nodes[nd->in[0]].shape;
    int64_t H = xs->d[2], W = xs->d[3], OH = nd->shape.d[2], OW = nd->shape.d[3];
    int64_t top = nd->ia[PN_PAD_TOP], left = nd->ia[PN_PAD_LEFT];
    LLVMValueRef fn = cg_kernel_begin(c, node, 1);
    LLVMValueRef out = LLVMGetParam(fn, 0), in = LLVMGetParam(fn, 1);
    LLVMValueRef planes = LLVMBuildMul(c->b, pn_shape_batched(xs) ? c->n : cg_i64(c, xs->d[0]), cg_i64(c, xs->d[1]), "");
    LLVMValueRef lo, hi;
    cg_split(c, LLVMBuildMul(c->b, planes, cg_i64(c, OH), ""), &lo, &hi);
    cg_loop t;
    cg_loop_begin(c, &t, lo, hi, "row");
    LLVMValueRef pl = LLVMBuildSDiv(c->b, t.iv, cg_i64(c, OH), ""), oh = LLVMBuildSRem(c->b, t.iv, cg_i64(c, OH), "");
    LLVMValueRef ih = LLVMBuildSub(c->b, oh, cg_i64(c, top), "");
    LLVMValueRef inside = LLVMBuildICmp(c->b, LLVMIntULT, ih, cg_i64(c, H), "");
    LLVMValueRef orow = cg_gep(c, out, LLVMBuildMul(c->b, t.iv, cg_i64(c, OW), ""));
    /* Outside the input, the copy is empty: [left, left) and the zeros cover the row. */
    LLVMValueRef c0 = cg_select(c, inside, cg_i64(c, left), cg_i64(c, OW)), c1 = cg_select(c, inside, cg_i64(c, left + W), cg_i64(c, OW));
    LLVMValueRef ihc = cg_select(c, inside, ih, cg_i64(c, 0));
    LLVMValueRef irow = cg_gep(c, in, LLVMBuildSub(c->b, LLVMBuildMul(c->b, LLVMBuildAdd(c->b, LLVMBuildMul(c->b, pl, cg_i64(c, H), ""), ihc, ""),
                                                                    cg_i64(c, W), ""), cg_i64(c, left), ""));
    LLVMValueRef bounds[4] = {cg_i64(c, 0), c0, c1, cg_i64(c, OW)};
    for (int part = 0; part < 3; part++) {
        cg_loop j;
        cg_loop_begin(c, &j, bounds[part], bounds[part + 1], part == 1 ? "copy" : "zero");
        cg_store(c, part == 1 ? cg_load(c, irow, j.iv) : cg_f32(c, 0.0), orow, j.iv);
        cg_loop_end(c, &j);
    }
    cg_loop_end(c, &t);
    cg_kernel_end(c);
    return fn;
}

/* embedding: out[r, :] = W[ids[r], :]. The runtime has checked every id; clamping keeps the
 * kernel memory-safe regardless. */
LLVMValueRef cg_gen_embedding(cg *c, int node) {
    const pn_node *nd = &c->g->nodes[node];
    int64_t V = nd->ia[PN_EMB_VOCAB], D = nd->ia[PN_EMB_DIM];
    LLVMValueRef fn = cg_kernel_begin(c, node, 1);
    LLVMValueRef out = LLVMGetParam(fn, 0), ids = LLVMGetParam(fn, 1);
    LLVMValueRef lo, hi;
    cg_split(c, cg_numel(c, &c->g->nodes[nd->in[0]].shape), &lo, &hi);
    cg_loop t;
    cg_loop_begin(c, &t, lo, hi, "r");
    LLVMValueRef id = LLVMBuildSExt(c->b, cg_load_i32(c, ids, t.iv), c->i64, "");
    id = cg_smin(c, cg_smax(c, id, cg_i64(c, 0)), cg_i64(c, V - 1));
    LLVMValueRef wrow = cg_gep(c, c->params, LLVMBuildMul(c->b, id, cg_i64(c, D), ""));
    LLVMValueRef orow = cg_gep(c, out, LLVMBuildMul(c->b, t.iv, cg_i64(c, D), ""));
    cg_loop j;
    cg_loop_begin(c, &j, cg_i64(c, 0), cg_i64(c, D), "j");
    cg_store(c, cg_load(c, wrow, j.iv), orow, j.iv);
    cg_loop_end(c, &j);
    cg_loop_end(c, &t);
    cg_kernel_end(c);
    return fn;
}

/* positions: i32 element e is e % T, T the output's last axis; x is not read. */
LLVMValueRef cg_gen_positions(cg *c, int node) {
    const pn_node *nd = &c->g->nodes[node];
    int64_t T = nd->shape.d[nd->shape.rank - 1];
    LLVMValueRef fn = cg_kernel_begin(c, node, 1);
    LLVMValueRef out = LLVMGetParam(fn, 0);
    LLVMValueRef lo, hi;
    cg_split(c, cg_numel(c, &nd->shape), &lo, &hi);
    cg_loop i;
    cg_loop_begin(c, &i, lo, hi, "i");
    LLVMValueRef v = LLVMBuildTrunc(c->b, LLVMBuildSRem(c->b, i.iv, cg_i64(c, T), ""), c->i32, "");
    LLVMBuildStore(c->b, v, LLVMBuildInBoundsGEP2(c->b, c->i32, out, &i.iv, 1, ""));
    cg_loop_end(c, &i);
    cg_kernel_end(c);
    return fn;
}

/* A copy of the node's first input, element for element (4-byte elements of either type). */
LLVMValueRef cg_gen_copy(cg *c, int node) {
    const pn_node *nd = &c->g->nodes[node];
    LLVMValueRef fn = cg_kernel_begin(c, node, 1);
    LLVMValueRef out = LLVMGetParam(fn, 0), in = LLVMGetParam(fn, 1);
    LLVMValueRef lo, hi;
    cg_split(c, cg_numel(c, &nd->shape), &lo, &hi);
    cg_loop i;
    cg_loop_begin(c, &i, lo, hi, "i");
    LLVMValueRef a = LLVMBuildInBoundsGEP2(c->b, c->i32, in, &i.iv, 1, "");
    LLVMValueRef b = LLVMBuildInBoundsGEP2(c->b, c->i32, out, &i.iv, 1, "");
    LLVMBuildStore(c->b, LLVMBuildLoad2(c->b, c->i32, a, ""), b);
    cg_loop_end(c, &i);
    cg_kernel_end(c);
    return fn;
}
